#!/usr/bin/env python3
"""HTTP/2 on proxied routes (issue 16 §1: "proxied routes once the proxy
issue has landed"): a stream's request goes to an HTTP/1.1 upstream
(upstreams.py), its response comes back as the stream's frames. One
server (--access-log, short proxy deadlines), a TLS (ALPN h2) and a
plaintext (h2c) listener; every part runs over both (over TLS alone
under valgrind).

1. exchange, with curl --http2 / --http2-prior-knowledge: the echo
   backend sees the request line, Host (from :authority), one Cookie
   field joined from the crumbs (RFC 9113 §8.2.3), X-Forwarded-For and
   -Proto; a BIG download by sha256 (Content-Length), chunked and
   close-delimited ones unframed; uploads with a Content-Length and
   without one (sent chunked upstream), by the backend's sha256; HEAD,
   204 and 304; hop-by-hop response fields dropped; the access log's
   lines say HTTP/2.0 with each status.
2. streams: 40 streams at once on one connection (h2 client), each body
   checked by sha256; h2load -n 300 -c 1 -m 10: all 2xx, and the
   backend sees few connections (the pool serves HTTP/2 streams too).
3. failures, on one connection at once: a refused upstream (502), a
   response head cut by a RST (502), no response head in time (504),
   a body cut by a RST after the HEADERS (the stream is reset
   INTERNAL_ERROR); a stream beside them is served whole, the
   connection is never torn down, and each failure has one log line.
4. a client that resets its stream mid-download: the upstream is let
   go (the server's descriptors come back), the connection goes on; a
   POST whose HEADERS come with a whole window of DATA, to an upstream
   whose connect takes a second: the window is given back once the DATA
   has followed the connect, and the 1 MiB body arrives whole.
5. backpressure: a client that never reads a 200 MB response (its
   windows wide open): the backend is held to a bounded lead and the
   server's RSS to a bound; an upload to an upstream that never reads:
   the client can send only a bounded amount (windows are given back as
   the upstream takes bytes: only socket buffers' worth), and the
   server's RSS stays bounded.
6. rapid reset against a proxied route (HEADERS then RST_STREAM in a
   loop): GOAWAY, no upstream connection left behind, the server serves
   on."""
import json
import os
import re
import socket
import threading
import time

import test_h2_abuse as ha
import rtls_test as rt
import abuse_util as au
import tls_util as tu
import upstreams as up

h2 = ha.h2 if ha.HAVE_H2 else None
MB = 1 << 20
VG = rt.UNDER_VALGRIND
BIG = (2 if VG else 50) * MB
MID = (1 if VG else 8) * MB
SLOW = 200 * MB
PT = 1.0 * min(rt.TIME_SCALE, 3.0)     # --proxy-timeout
CT = 5.0 * min(rt.TIME_SCALE, 3.0)     # --proxy-connect-timeout (SlowConnect takes 1 s)
RSS_MAX_KIB = (160 if "ASAN_OPTIONS" in os.environ else 64) * 1024
# What the server itself may hold of a response its client does not read.
# The backend can be further ahead by what the kernel queues (the upstream
# socket's receive buffer autotunes up to tcp_rmem's maximum: 32 MiB on
# this host's 6.18 kernel, 6 MiB on Debian 12's 6.1), so the check
# subtracts the queues it can see. Under valgrind the reactor reads its
# completions far behind the kernel, which fills ring buffers until the
# pause's cancel lands, and its ring runs without DEFER_TASKRUN: up to
# twice the ring (1024 buffers of 16 KiB, parked on the heap; DESIGN.md
# "Backpressure").
HELD_MAX = (2 * 16 + 4 if VG else 4) * MB
UPLOAD_MAX = 24 * MB                   # what a client can push at a stalled upstream
# Under valgrind one transport: h2_proxy.c runs the same code on both,
# and the suite's valgrind passes are CI's longest (scripts/valgrind.sh).
TRANSPORTS = ("tls",) if VG else ("tls", "h2c")
# How long the backpressure parts watch: not scaled, since what they
# bound is an amount, which a slower server only makes smaller.
WATCH = 3.0


class Env:
    pass


class CpuWindow:
    """The server's CPU time over one attack, bounded as test_h2_abuse's
    Part bounds it: a fraction of one core (scaled) over the attack's
    duration, a short attack measured as if it took CPU_MIN_WINDOW."""

    def __init__(self, s):
        self.s, self.t0, self.cpu0 = s, time.monotonic(), s.cpu_seconds()

    def check(self, t, what, cpu_max=ha.CPU_MAX):
        dur = time.monotonic() - self.t0
        cpu = self.s.cpu_seconds() - self.cpu0
        bound = cpu_max * rt.TIME_SCALE * max(dur, ha.CPU_MIN_WINDOW)
        print("%s: %.2f s, server CPU %.2f s (max %.2f)" % (what, dur, cpu, bound), flush=True)
        t.check(cpu <= bound, "%s: server CPU %.2f s over %.2f s of attack (max %.2f s)"
                % (what, cpu, dur, bound))


def curl(e, transport, path, *args, timeout=60):
    """curl over HTTP/2; returns (version, status, headers, body bytes)."""
    s = e.s
    if transport == "tls":
        url = "https://localhost:%d%s" % (s.tls_port, path)
        opts = ["--http2", "--cacert", os.path.join(s.state_dir, "selfsigned-cert.pem"),
                "--resolve", "localhost:%d:127.0.0.1" % s.tls_port]
    else:
        url = "http://127.0.0.1:%d%s" % (s.port, path)
        opts = ["--http2-prior-knowledge"]
    out = os.path.join(e.tmp, "body")
    hdr = os.path.join(e.tmp, "head")
    for f in (out, hdr):
        if os.path.exists(f):
            os.unlink(f)
    p = rt.run_cmd(["curl", "-sS", "--max-time", "%g" % rt.scaled(timeout), *opts, "-D", hdr,
                    "-o", out, "-w", "%{http_version} %{http_code}", *args, url],
                   timeout=rt.scaled(timeout) + 10)
    version, _, status = p.stdout.decode().partition(" ")
    headers = {}
    if os.path.exists(hdr):
        with open(hdr, "rb") as f:
            for line in f.read().decode("latin-1").split("\r\n")[1:]:
                k, sep, v = line.partition(":")
                if sep:
                    headers.setdefault(k.strip().lower(), []).append(v.strip())
    body = b""
    if os.path.exists(out):
        with open(out, "rb") as f:
            body = f.read()
    return version, int(status or 0), headers, body, p.stderr.decode("utf-8", "replace")


def echo_of(t, what, r):
    version, status, headers, body, err = r
    if not t.check(version == "2" and status == 200, "%s: HTTP/%s %d %s" % (what, version, status,
                                                                           err[-200:])):
        return None
    try:
        return json.loads(body)
    except ValueError:
        t.check(False, "%s: not the echo: %r" % (what, body[:200]))
        return None


def fields(j, name):
    return [v for k, v in j["headers"] if k.lower() == name]


# --------------------------------------------------------------------------
# 1. exchange


def part_exchange(t, e, transport):
    w = "[%s]" % transport
    tls = transport == "tls"
    port = e.s.tls_port if tls else e.s.port
    j = echo_of(t, w + " echo", curl(e, transport, "/p/echo?x=1", "-H", "Cookie: a=1",
                                     "-H", "Cookie: b=2", "-H", "X-Custom: yes"))
    if j:
        t.check(j["method"] == "GET" and j["path"] == "/p/echo?x=1" and j["version"] == "HTTP/1.1",
                "%s echo: request line %s %s %s" % (w, j["method"], j["path"], j["version"]))
        host = ("localhost:%d" if tls else "127.0.0.1:%d") % port
        t.check(fields(j, "host") == [host], "%s echo: Host %r, want [%r]"
                % (w, fields(j, "host"), host))
        t.check(fields(j, "cookie") == ["a=1; b=2"], "%s echo: Cookie %r, want one field "
                "'a=1; b=2'" % (w, fields(j, "cookie")))
        t.check(fields(j, "x-custom") == ["yes"], "%s echo: X-Custom %r" % (w, fields(j, "x-custom")))
        t.check(fields(j, "x-forwarded-for") == ["127.0.0.1"] and
                fields(j, "x-forwarded-proto") == ["https" if tls else "http"],
                "%s echo: X-Forwarded-For %r, -Proto %r" % (w, fields(j, "x-forwarded-for"),
                                                           fields(j, "x-forwarded-proto")))
        t.check(not fields(j, "transfer-encoding") and not fields(j, "connection"),
                "%s echo: framing fields on a GET: %r" % (w, j["headers"]))
    for kind, n in (("bytes", BIG), ("chunked", MID), ("close", MID)):
        version, status, headers, body, err = curl(e, transport, "/p/%s/%d" % (kind, n))
        t.check(version == "2" and status == 200 and len(body) == n and
                rt.sha256(body) == up.pattern_sha(n),
                "%s %s/%d: HTTP/%s %d, %d bytes, sha256 %s %s" % (
                    w, kind, n, version, status, len(body),
                    "ok" if rt.sha256(body) == up.pattern_sha(n) else "wrong", err[-200:]))
        t.check("transfer-encoding" not in headers and "connection" not in headers,
                "%s %s: framing fields passed on: %r" % (w, kind, headers))
        if kind == "bytes":
            t.check(headers.get("content-length") == [str(n)],
                    "%s bytes: content-length %r" % (w, headers.get("content-length")))
    src = os.path.join(e.tmp, "upload.bin")
    with open(src, "wb") as f:
        f.write(up.pattern(MID, seed=3))
    j = echo_of(t, w + " upload", curl(e, transport, "/p/echo", "--data-binary", "@" + src,
                                       "-H", "Content-Type: application/octet-stream"))
    if j:
        t.check(j["body_len"] == MID and j["body_sha256"] == up.pattern_sha(MID, seed=3) and
                fields(j, "content-length") == [str(MID)],
                "%s upload with a length: backend read %d bytes (sha %s), Content-Length %r" % (
                    w, j["body_len"], j["body_sha256"] == up.pattern_sha(MID, seed=3),
                    fields(j, "content-length")))
    # With "Transfer-Encoding: chunked" curl sends no content-length, and
    # no TE either over HTTP/2 (which frames the body itself).
    j = echo_of(t, w + " chunked upload", curl(e, transport, "/p/echo", "--data-binary",
                                               "@" + src, "-H", "Transfer-Encoding: chunked",
                                               "-H", "Content-Type: application/octet-stream"))
    if j:
        t.check(j["body_len"] == MID and j["body_sha256"] == up.pattern_sha(MID, seed=3) and
                fields(j, "transfer-encoding") == ["chunked"] and not fields(j, "content-length"),
                "%s upload without a length: backend read %d bytes (sha %s), TE %r, CL %r" % (
                    w, j["body_len"], j["body_sha256"] == up.pattern_sha(MID, seed=3),
                    fields(j, "transfer-encoding"), fields(j, "content-length")))
    # (-I writes the head where the body would go: part_streams counts
    # the DATA of a HEAD.)
    version, status, headers, body, _ = curl(e, transport, "/p/bytes/1000", "-I")
    t.check(status == 200 and headers.get("content-length") == ["1000"],
            "%s HEAD: %d %r" % (w, status, headers.get("content-length")))
    for st in (204, 304):
        version, status, headers, body, _ = curl(e, transport, "/p/status/%d" % st)
        t.check(version == "2" and status == st and not body,
                "%s status/%d: HTTP/%s %d, %d body bytes" % (w, st, version, status, len(body)))
    version, status, headers, body, err = curl(e, transport, "/evil/204-cl")
    t.check(version == "2" and status == 204 and "content-length" not in headers,
            "%s a 204 with a Content-Length upstream: HTTP/%s %d %r %s (a length on a 204 is "
            "a stream error to curl)" % (w, version, status, headers, err[-200:]))
    j = echo_of(t, w + " Expect: 100-continue", curl(
        e, transport, "/p/echo", "--data-binary", "@" + src, "-H", "Expect: 100-continue",
        "--expect100-timeout", "30"))
    if j:
        t.check(j["body_len"] == MID, "%s Expect: 100-continue: the backend read %d bytes"
                % (w, j["body_len"]))
    version, status, headers, body, _ = curl(e, transport, "/p/hop-headers")
    t.check(status == 200 and body == b"ok" and "x-end" in headers and "x-secret" not in headers
            and "keep-alive" not in headers,
            "%s hop-by-hop response fields: %d %r %r" % (w, status, body, sorted(headers)))


def part_access_log(t, e):
    time.sleep(0.3)
    with open(e.alog) as f:
        lines = f.read().splitlines()
    want = [("GET /p/echo?x=1 HTTP/2.0", "200"), ("GET /p/bytes/%d HTTP/2.0" % BIG, "200"),
            ("POST /p/echo HTTP/2.0", "200"), ("HEAD /p/bytes/1000 HTTP/2.0", "200"),
            ("GET /p/status/304 HTTP/2.0", "304"), ("GET /evil/stall HTTP/2.0", "504")]
    want += [("GET /dead-%s/x HTTP/2.0" % tr, "502") for tr in TRANSPORTS]
    for req, status in want:
        got = [l for l in lines if '"%s" %s ' % (req, status) in l]
        t.check(got, "access log: no line for %r with %s" % (req, status))
    n = sum(1 for l in lines if '"GET /p/bytes/%d HTTP/2.0" 200 %d ' % (BIG, BIG) in l)
    t.check(n == len(TRANSPORTS), "access log: %d lines with the BIG download's byte count, "
            "want %d" % (n, len(TRANSPORTS)))


# --------------------------------------------------------------------------
# 2. streams


class Client(ha.H2):
    """h2's state machine with wide windows; per stream: status, headers,
    body (kept, or only counted and hashed), the reset code if any."""

    def __init__(self, s, tls, keep=True, window=None, rcvbuf=None):
        super().__init__(s, tls=tls, initial_window=window, rcvbuf=rcvbuf)
        self.keep = keep
        self.st = {}

    def request(self, path, method="GET", body=None, headers=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https" if self.tls else "http"),
                (":path", path), (":authority", "localhost")] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        self.st[sid] = {"status": None, "headers": {}, "body": bytearray(), "n": 0,
                        "done": False, "reset": None}
        return sid

    def feed(self, data):
        if not data:
            return
        for ev in self.conn.receive_data(data):
            sid = getattr(ev, "stream_id", None)
            s = self.st.get(sid)
            if isinstance(ev, h2.events.ResponseReceived) and s is not None:
                hd = {k.decode().lower(): v.decode() for k, v in ev.headers}
                s["status"] = int(hd.get(":status", 0))
                s["headers"] = hd
            elif isinstance(ev, h2.events.DataReceived):
                if s is not None:
                    s["n"] += len(ev.data)
                    if self.keep:
                        s["body"] += ev.data
                if ev.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    except h2.exceptions.StreamClosedError:
                        self.conn.increment_flow_control_window(ev.flow_controlled_length)
            elif isinstance(ev, h2.events.StreamEnded) and s is not None:
                s["done"] = True
            elif isinstance(ev, h2.events.StreamReset) and s is not None:
                s["done"] = True
                s["reset"] = ev.error_code
            else:
                self.events.append(ev)
        self.flush()

    def wait(self, sids, timeout):
        end = time.monotonic() + rt.scaled(timeout)
        while not self.eof and time.monotonic() < end and not all(self.st[s]["done"] for s in sids):
            self.feed(self.recv_some(min(0.2, max(0.0, end - time.monotonic()))))
        return all(self.st[s]["done"] for s in sids)


def part_streams(t, e, transport):
    w = "[%s]" % transport
    c = Client(e.s, transport == "tls")
    sizes = [1000 + i * 7919 for i in range(40)]
    sids = [c.request("/p/bytes/%d" % n) for n in sizes]
    ok = c.wait(sids, 30)
    bad = [(n, c.st[s]["status"], c.st[s]["n"], c.st[s]["reset"]) for n, s in zip(sizes, sids)
           if c.st[s]["status"] != 200 or bytes(c.st[s]["body"]) != up.pattern(n)]
    t.check(ok and not bad, "%s 40 streams at once: %s; wrong: %s" % (
        w, "all ended" if ok else "not all ended", bad[:5]))
    t.check(not c.terminated(), "%s 40 streams: connection terminated: %r" % (w, c.terminated()))
    sid = c.request("/p/bytes/1000", method="HEAD")
    t.check(c.wait([sid], 5) and c.st[sid]["status"] == 200 and c.st[sid]["n"] == 0 and
            c.st[sid]["headers"].get("content-length") == "1000",
            "%s HEAD: %r" % (w, {k: v for k, v in c.st[sid].items() if k != "body"}))
    c.close()
    if transport != TRANSPORTS[-1] or not tu.have("h2load"):
        return
    before = e.b1.counts()[0]
    url = ("https://127.0.0.1:%d" % e.s.tls_port if transport == "tls"
           else "http://127.0.0.1:%d" % e.s.port)
    p = rt.run_cmd(["h2load", "-n300", "-c1", "-m10", url + "/p/bytes/5000"],
                   timeout=rt.scaled(60))
    out = p.stdout.decode()
    m = re.search(r"status codes: (\d+) 2xx", out)
    t.check(m and int(m.group(1)) == 300, "h2load -n300 -m10: %s" % out[-400:])
    new = e.b1.counts()[0] - before
    t.check(new <= 30, "h2load -n300 -m10: the backend saw %d new connections (pooled: want "
            "<= 30)" % new)


# --------------------------------------------------------------------------
# 3. failures


def log_lines_since(s, mark):
    time.sleep(0.2)
    return s.lines_since(mark)


def part_failures(t, e, transport):
    w = "[%s]" % transport
    mark = e.s.mark()
    c = Client(e.s, transport == "tls")
    # A server per pass: a refused one is marked down for 10 s (503 after).
    cases = [("/dead-%s/x" % transport, 502, None), ("/evil/reset-head", 502, None),
             ("/evil/stall", 504, None), ("/evil/reset-body", 200, ha.INTERNAL_ERROR),
             ("/p/bytes/300000", 200, None)]
    sids = [c.request(path) for path, _, _ in cases]
    ok = c.wait(sids, PT + 10)
    t.check(ok, "%s failures: not every stream ended: %r" % (w, {p: c.st[s] for (p, _, _), s in
                                                                zip(cases, sids)
                                                                if not c.st[s]["done"]}))
    for (path, status, reset), sid in zip(cases, sids):
        s = c.st[sid]
        t.check(s["status"] == status and s["reset"] == reset,
                "%s %s: status %s, reset %s; want %d%s" % (
                    w, path, s["status"], s["reset"], status,
                    ", then RST_STREAM INTERNAL_ERROR" if reset else ""))
    s = c.st[sids[-1]]
    t.check(bytes(s["body"]) == up.pattern(300000),
            "%s the stream beside the failures: %d bytes, %s" % (w, s["n"], s["reset"]))
    t.check(not c.terminated() and not c.eof, "%s failures: connection ended: %r %r"
            % (w, c.terminated(), c.eof))
    # The connection goes on.
    sid = c.request("/p/echo")
    t.check(c.wait([sid], 5) and c.st[sid]["status"] == 200, "%s a stream after the failures: %r"
            % (w, c.st[sid]))
    lines = log_lines_since(e.s, mark)
    port_tag = "127.0.0.1:%d:" % c.local_port
    mine = [l for l in lines if port_tag in l and "truncated" not in l]
    for what in (r"502 Bad Gateway: .*connect: Connection refused",
                 r"502 Bad Gateway: .*(reset by peer|closed before|malformed)",
                 r"504 Gateway Timeout: .*no response head in time",
                 r"http2 .*stream %d: .*stream reset" % sids[3]):
        n = sum(1 for l in mine if re.search(what, l))
        t.check(n == 1, "%s log: %d lines for %r, want 1: %r" % (w, n, what, mine))
    c.close()


def fds_back(s, want, timeout):
    """Polls until the server holds at most `want` descriptors (idle
    pooled connections may close meanwhile: fewer is fine); returns the
    last count. timeout is scaled here."""
    end = time.monotonic() + rt.scaled(timeout)
    n = s.fd_count()
    while n > want and time.monotonic() < end:
        time.sleep(0.05)
        n = s.fd_count()
    return n


# --------------------------------------------------------------------------
# 4. a client that cancels


def part_cancel(t, e, transport):
    w = "[%s]" % transport
    time.sleep(0.3)
    fds0 = e.s.fd_count()
    c = Client(e.s, transport == "tls", keep=False)
    sid = c.request("/p/bytes/%d" % SLOW)
    end = time.monotonic() + rt.scaled(10)
    while c.st[sid]["n"] < MB and time.monotonic() < end and not c.eof:
        c.feed(c.recv_some(0.2))
    t.check(c.st[sid]["n"] >= MB and c.st[sid]["status"] == 200,
            "%s cancel: %d bytes before the reset" % (w, c.st[sid]["n"]))
    c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    sid2 = c.request("/p/echo")
    t.check(c.wait([sid2], 5) and c.st[sid2]["status"] == 200,
            "%s after a cancelled stream: %r" % (w, c.st[sid2]))
    c.close()
    got = fds_back(e.s, fds0, 5)
    t.check(got <= fds0, "%s cancel: the server holds %d descriptors, %d before (the upstream "
            "of the cancelled stream not let go?)" % (w, got, fds0))


class SlowConnect:
    """An upstream whose connects take about a second: its accept queue
    (listen(0)) is held full by a connection of our own until 0.5 s after
    arm(), so a connect's SYN is dropped and sent again a second later.
    It then reads each request head and Content-Length body and answers
    with their length and sha256 as JSON, as the Backend's echo."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.filler = None

    def arm(self):
        self.filler = socket.create_connection(self.sock.getsockname())
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        time.sleep(0.5)
        try:
            self.sock.accept()[0].close()      # the filler: the queue has room again
            self.filler.close()
            c = self.sock.accept()[0]
        except OSError:
            return
        with c:
            c.settimeout(20)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    buf += c.recv(65536)
                head, body = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(body) < n:
                    d = c.recv(1 << 20)
                    if not d:
                        break
                    body += d
                out = json.dumps({"body_len": len(body),
                                  "body_sha256": rt.sha256(body)}).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class OneThenClose:
    """An upstream that answers the first request of each connection,
    reads the second whole (a chunked body to its last chunk, 5 s at
    most) and closes without answering: a pooled connection's close
    racing a request. `waited` counts requests whose chunked end never
    came."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.waited = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c = self.sock.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, buf
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        if b"transfer-encoding: chunked" in head.lower():
            try:
                while b"0\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return None, buf
                    buf += d
            except socket.timeout:
                self.waited += 1
                return None, buf
            buf = buf.split(b"0\r\n\r\n", 1)[1]
        return head, buf

    def _conn(self, c):
        with c:
            c.settimeout(5)
            buf = b""
            try:
                head, buf = self._request(c, buf)
                if head is None:
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                self._request(c, buf)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def part_retry(t, e, transport):
    """A PUT whose body (empty) comes as DATA after its HEADERS goes
    upstream chunked; its pooled connection closes without answering: it
    is sent again, whole, on a new one."""
    w = "[%s]" % transport
    c = Client(e.s, transport == "tls")
    got = []
    for _ in range(2):
        sid = c.request("/retry-%s/x" % transport, method="PUT", end=False)
        c.conn.send_data(sid, b"", end_stream=True)
        c.flush()
        c.wait([sid], 10)
        got.append((c.st[sid]["status"], bytes(c.st[sid]["body"])))
    t.check(got == [(200, b"ok")] * 2 and not e.retry[transport].waited,
            "%s retry on a new connection: %r; requests whose chunked end never came: %d"
            % (w, got, e.retry[transport].waited))
    c.close()


def part_upload_at_once(t, e, transport):
    """HEADERS and a whole window of DATA in one write, to an upstream
    whose connect takes a second: the DATA waits for the connect, and its
    window must still be given back once it has gone (else the client,
    its window spent, waits until the upstream's idle deadline)."""
    w = "[%s]" % transport
    c = Client(e.s, transport == "tls")
    n = MB
    body = up.pattern(n, seed=4)
    e.fresh[transport].arm()
    sid = c.request("/fresh-%s/echo" % transport, method="POST", end=False,
                    headers=[("content-length", str(n))])
    off = 0
    end = time.monotonic() + rt.scaled(10)
    while off < n and time.monotonic() < end and not c.eof and not c.st[sid]["done"]:
        room = min(c.conn.local_flow_control_window(sid), n - off)
        while room > 0:
            k = min(room, c.conn.max_outbound_frame_size)
            c.conn.send_data(sid, body[off:off + k], end_stream=off + k == n)
            off += k
            room -= k
        c.flush()
        c.feed(c.recv_some(0.05))
    ok = c.wait([sid], 10)
    s = c.st[sid]
    j = json.loads(bytes(s["body"])) if s["status"] == 200 else {}
    t.check(ok and s["status"] == 200 and j.get("body_len") == n and
            j.get("body_sha256") == up.pattern_sha(n, seed=4),
            "%s a whole window of DATA with the HEADERS, new upstream connection: %d of %d "
            "bytes sent, status %s, backend read %s" % (w, off, n, s["status"],
                                                       j.get("body_len")))
    c.close()


# --------------------------------------------------------------------------
# 5. backpressure


def part_slow_reader(t, e, transport):
    w = "[%s]" % transport
    rss0 = e.s.rss_kib()
    sent0 = e.b1.sent
    cpu = CpuWindow(e.s)
    c = Client(e.s, transport == "tls", keep=False, window=2 ** 31 - 1, rcvbuf=4096)
    c.conn.increment_flow_control_window(2 ** 31 - 1 - 65535)
    c.flush()
    c.request("/p/bytes/%d" % SLOW)
    time.sleep(WATCH)
    lead = e.b1.sent - sent0
    queued = rt.tcp_queued({e.b1.port, c.local_port})
    grew = e.s.rss_kib() - rss0
    cpu.check(t, "%s non-reading client" % w)
    print("%s non-reading client: backend sent %d KiB, %d KiB of it in kernel queues, "
          "server RSS +%d KiB" % (w, lead >> 10, queued >> 10, grew))
    t.check(lead >= MB, "%s non-reading client: the backend sent only %d bytes" % (w, lead))
    t.check(lead - queued <= HELD_MAX,
            "%s non-reading client: the backend sent %d KiB, the kernel queues hold %d KiB, "
            "so the server holds %d KiB (max %d)"
            % (w, lead >> 10, queued >> 10, (lead - queued) >> 10, HELD_MAX >> 10))
    if not VG:
        t.check(grew <= RSS_MAX_KIB, "%s non-reading client: server RSS +%d KiB (max %d)"
                % (w, grew, RSS_MAX_KIB))
    c.close()


class Sink:
    """An upstream that accepts and never reads (nor answers)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for so in self.held:
            so.close()


def part_stalled_upstream(t, e, transport):
    w = "[%s]" % transport
    rss0 = e.s.rss_kib()
    cpu = CpuWindow(e.s)
    c = Client(e.s, transport == "tls")
    sid = c.request("/sink/x", method="POST", end=False)
    chunk = b"u" * 16384
    sent = 0
    end = time.monotonic() + WATCH
    while time.monotonic() < end and not c.eof:
        room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if room > 0:
            try:
                c.conn.send_data(sid, chunk[:room])
                c.flush()
                sent += room
            except (h2.exceptions.ProtocolError, OSError):
                break
        c.feed(c.recv_some(0.01 if room > 0 else 0.1))
        if c.st[sid]["done"]:
            break
    grew = e.s.rss_kib() - rss0
    cpu.check(t, "%s upload to a stalled upstream" % w)
    print("%s upload to a stalled upstream: %d KiB sent in %g s, server RSS +%d KiB"
          % (w, sent >> 10, WATCH, grew))
    t.check(sent >= 64 * 1024, "%s stalled upstream: only %d bytes could be sent" % (w, sent))
    t.check(sent <= UPLOAD_MAX, "%s stalled upstream: the client sent %d MiB (max %d): its "
            "window is given back though the upstream reads nothing" % (w, sent >> 20,
                                                                        UPLOAD_MAX >> 20))
    if not VG:
        t.check(grew <= RSS_MAX_KIB, "%s stalled upstream: server RSS +%d KiB" % (w, grew))
    # That stream's held window is its own: another upload on the same
    # connection goes through.
    n = 300000
    sid2 = c.request("/p/echo", method="POST", body=up.pattern(n, seed=6)[:16384], end=False,
                     headers=[("content-length", str(n))])
    off = 16384
    end = time.monotonic() + rt.scaled(10)
    while off < n and time.monotonic() < end and not c.eof and not c.st[sid2]["done"]:
        room = min(c.conn.local_flow_control_window(sid2), c.conn.max_outbound_frame_size,
                   n - off)
        if room > 0:
            c.conn.send_data(sid2, up.pattern(n, seed=6)[off:off + room], end_stream=off + room == n)
            off += room
            c.flush()
        c.feed(c.recv_some(0.05))
    ok = c.wait([sid2], 10)
    j = json.loads(bytes(c.st[sid2]["body"])) if c.st[sid2]["status"] == 200 else {}
    t.check(ok and j.get("body_len") == n, "%s an upload beside the stalled one: %d of %d bytes "
            "sent, status %s, backend read %s" % (w, off, n, c.st[sid2]["status"],
                                                 j.get("body_len")))
    c.close()


# --------------------------------------------------------------------------
# 6. rapid reset


def part_rapid_reset(t, e):
    time.sleep(0.3)
    fds0 = e.s.fd_count()
    conns = 0
    until = time.monotonic() + 1.5
    goaways = 0
    cpu = CpuWindow(e.s)
    while time.monotonic() < until:
        c = Client(e.s, conns % 2 == 0)
        conns += 1
        try:
            for _ in range(30):
                for _ in range(50):
                    sid = c.conn.get_next_available_stream_id()
                    c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                              (":path", "/p/slow-head/0.2"),
                                              (":authority", "localhost")], end_stream=True)
                    c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                c.flush()
                c.feed(c.recv_some(0))
                if c.terminated() or c.eof:
                    break
        except (OSError, h2.exceptions.ProtocolError):
            pass
        c.pump(1.0, until=lambda ev: isinstance(ev, h2.events.ConnectionTerminated))
        goaways += c.terminated() is not None
        c.close()
    # As test_h2_abuse's rapid reset: each connection's streams are
    # parsed and opened before they are reset, so more than the others.
    cpu.check(t, "rapid reset on a proxied route", cpu_max=0.9)
    got = fds_back(e.s, fds0, 8)
    print("rapid reset on a proxied route: %d connections, %d GOAWAYs, descriptors %d -> %d"
          % (conns, goaways, fds0, got))
    t.check(goaways >= 1, "rapid reset: no connection got a GOAWAY")
    t.check(got <= fds0, "rapid reset: the server holds %d descriptors, %d before" % (got, fds0))
    j = echo_of(t, "after rapid reset", curl(e, "h2c", "/p/echo"))
    t.check(j is not None, "after rapid reset: not served")


def test(t):
    rt.need_curl()
    if b"HTTP2" not in rt.run_cmd(["curl", "--version"]).stdout:
        raise rt.Skip("curl without HTTP/2 support")
    if not ha.HAVE_H2:
        raise rt.Skip("python3-h2 not installed")
    e = Env()
    e.tmp = rt.temp_dir("rtls-h2px-")
    e.alog = os.path.join(e.tmp, "access.log")
    e.b1 = up.Backend("b1")
    e.evil = up.Evil()
    dead = [refused_port() for _ in TRANSPORTS]
    e.sink = Sink()
    e.fresh = {tr: SlowConnect() for tr in TRANSPORTS}
    e.retry = {tr: OneThenClose() for tr in TRANSPORTS}
    routes = ["/p/=" + e.b1.url, "/evil/=" + e.evil.url, "/sink/=" + e.sink.url] + [
        "/fresh-%s/=%s" % (tr, b.url) for tr, b in e.fresh.items()] + [
        "/retry-%s/=%s" % (tr, b.url) for tr, b in e.retry.items()] + [
        "/dead-%s/=http://127.0.0.1:%d" % (tr, d[1]) for tr, d in zip(TRANSPORTS, dead)]
    e.s = au.DualServer("--access-log", e.alog, "--proxy-timeout", "%gms" % (PT * 1000),
                        "--proxy-connect-timeout", "%gms" % (CT * 1000),
                        "--shutdown-timeout", "3s", *up.proxy_args(routes))
    def timed(fn, *args):
        t0 = time.monotonic()
        fn(t, e, *args)
        print("%s%s: %.1f s" % (fn.__name__, " [%s]" % args[0] if args else "",
                                time.monotonic() - t0), flush=True)

    try:
        for transport in TRANSPORTS:
            for fn in (part_exchange, part_streams, part_failures, part_cancel,
                       part_upload_at_once, part_retry, part_slow_reader, part_stalled_upstream):
                timed(fn, transport)
        timed(part_access_log)
        timed(part_rapid_reset)
        t.check(e.s.alive(), "server alive")
        tu.stop_ok(t, e.s, "server")
    finally:
        e.b1.close()
        e.evil.close()
        e.sink.close()
        for b in list(e.fresh.values()) + list(e.retry.values()):
            b.close()
        for so, _ in dead:
            so.close()


def refused_port():
    """A port nothing listens on (bound, never listening: refused)."""
    so = socket.socket()
    so.bind(("127.0.0.1", 0))
    return so, so.getsockname()[1]


if __name__ == "__main__":
    tu.main(test, watchdog=240)
