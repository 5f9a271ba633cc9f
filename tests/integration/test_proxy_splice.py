#!/usr/bin/env python3
"""The reverse proxy splices bodies of known length (issue 15 section 2:
rtls_conn_forward_n()). On plain TCP both sides, a Content-Length body
goes from one socket to the other by splice once its head has been
parsed: the request body client -> upstream, the response body upstream
-> client. Each one logs (--log-level debug) "proxy: request body N
bytes, spliced S" or "proxy: response body N bytes, spliced S"; the
copying path logs no such line, so every "spliced" check here fails if
the copying path were taken.

- downloads of 0, 1, 64 KiB + 1 and 20 MB, one keep-alive client
  connection, by sha256; the 20 MB one logged as spliced (1 MiB at least:
  what the multishot receive took before its cancel landed is copied by
  the engine, and on a slow machine that can be much);
- uploads of the same sizes (the echo upstream's sha256); 20 MB spliced;
- a pipelined POST (spliced body) + two GETs in one stream: three
  answers in order, the GETs' bytes never swallowed by the forward;
- keep-alive after spliced bodies: one client connection, a 20 MB
  download, a 20 MB upload and a GET: the upstream saw one connection
  (the upstream connection went back to the pool after each body);
- a client that stops mid-upload (FIN, and RST): the upstream connection
  is dropped (the backend reads a cut body and records no request) and
  the next request gets a new one; a client that leaves mid-download:
  the same;
- an upstream that resets mid-body (and one that closes mid-body) after
  2 MB of 8 MB: the client reads fewer bytes and a closed connection;
- an upstream that stalls mid-body: cut after --idle-timeout; a client
  that stalls mid-upload: 408 after --idle-timeout;
- userspace TLS on the client side (the host kernel has no kTLS): the
  copying path, no "spliced" line, the bytes right."""
import hashlib
import re
import socket
import threading
import time

import rtls_test as rt
import abuse_util as au
import tls_util as tu
import upstreams as up

MB = 1 << 20
VG = rt.UNDER_VALGRIND
BIG = (4 if VG else 20) * MB
SIZES = (0, 1, 64 * 1024 + 1, BIG)
IDLE = 1.5 * min(rt.TIME_SCALE, 3.0)
SPLICED_RE = re.compile(r"http 127\.0\.0\.1:(\d+): proxy: (request|response) body (\d+) bytes, "
                        r"spliced (\d+)")


def spliced_lines(s, port, what, since):
    """[(total, spliced)] of the log lines about client port `port` logged
    from `since` (time.time() when that connection began) on: a port the
    server closed first is free again at once, and an earlier client's
    line on it must not be taken for this one's."""
    out = []
    for l in s.log_lines():
        m = SPLICED_RE.search(l)
        at = rt.logged_at(l)
        if m and int(m.group(1)) == port and m.group(2) == what \
                and (at is None or at >= since - 0.002):
            out.append((int(m.group(3)), int(m.group(4))))
    return out


def wait_lines(s, c, what, n, timeout=5.0):
    end = time.monotonic() + rt.scaled(timeout)
    while True:
        got = spliced_lines(s, c.local_port, what, c.t0)
        if len(got) >= n or time.monotonic() > end:
            return got
        time.sleep(0.05)


class Client(rt.SockOwner):
    """A keep-alive client that hashes bodies as they come (a 20 MB body
    read into one bytes object chunk by chunk would be quadratic)."""

    def __init__(self, port, timeout=rt.IO_TIMEOUT, sock=None):
        self.t0 = time.time()   # for spliced_lines(since=)
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.local_port = self.sock.getsockname()[1]
        self.buf = b""

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise rt.ConnClosed("closed by peer")
        self.buf += d

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n\r\n") + 4
        raw, self.buf = self.buf[:i], self.buf[i:]
        return rt.parse_head(raw)

    def body(self, n, limit=None):
        """(sha256 hex, bytes read) of an n-byte body; stops early at EOF
        or after `limit` bytes."""
        h = hashlib.sha256()
        got = 0
        want = n if limit is None else min(n, limit)
        while got < want:
            if not self.buf:
                try:
                    self._fill()
                except (rt.ConnClosed, ConnectionResetError):
                    break
            k = min(len(self.buf), want - got)
            h.update(self.buf[:k])
            self.buf = self.buf[k:]
            got += k
        return h.hexdigest(), got

    def response(self, head_only=False):
        r = self.head()
        n = int(r.header("Content-Length") or 0)
        if head_only or r.status in (204, 304):
            return r, None, 0
        sha, got = self.body(n)
        return r, sha, got

    def request(self, method, target, body=b"", size=None, headers=()):
        """Sends a request; body is bytes, or size: that many pattern bytes
        (seed 7) streamed."""
        n = len(body) if size is None else size
        hd = ["Content-Length: %d" % n] if n or method in ("POST", "PUT") else []
        self.sock.sendall(rt.request(method, target, headers=[*hd, *headers]))
        if size is None:
            if body:
                self.sock.sendall(body)
            return
        for c in up.pattern_chunks(size, seed=7):
            self.sock.sendall(c)


class Raw:
    """A raw upstream: answers each connection with a Content-Length
    head for TOTAL bytes, sends SENT of them in 64 KiB writes, then acts:
    "reset" (RST), "close" (FIN) or "stall" (holds the connection)."""

    def __init__(self, total, sent, act):
        self.total, self.sent, self.act = total, sent, act
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.url = "http://127.0.0.1:%d" % self.ls.getsockname()[1]
        self.held = []
        self.done = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.done:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.total)
            time.sleep(0.05)   # the head alone: the body comes after it
            for ch in up.pattern_chunks(self.sent, seed=3, chunk=64 * 1024):
                c.sendall(ch)
            time.sleep(0.3)
            if self.act == "reset":
                up.set_rst(c)
                c.close()
            elif self.act == "close":
                c.close()
            else:
                self.held.append(c)
        except OSError:
            pass

    def close(self):
        self.done = True
        self.ls.close()
        for c in self.held:
            try:
                c.close()
            except OSError:
                pass


def downloads(t, s, b):
    with Client(s.port) as c:
        for n in SIZES:
            c.request("GET", "/b/bytes/%d" % n)
            r, sha, got = c.response()
            t.eq((r.status, got), (200, n), "download %d: status, bytes" % n)
            t.eq(sha, up.pattern_sha(n), "download %d: sha256" % n)
        got = wait_lines(s, c, "response", 3)
    by = dict(got)
    t.check(0 not in by, "download 0: no body, no splice line: %r" % got)
    # Under valgrind the receive that is being cancelled takes most of
    # the body first: the line must be there, the share is not checked.
    t.check(BIG in by and (VG or MB <= by[BIG]) and by[BIG] <= BIG,
            "download %d: logged as spliced (1 MiB at least): %r" % (BIG, got))
    t.check(all(sp <= tot for tot, sp in got), "spliced <= total: %r" % got)


def uploads(t, s, b):
    with Client(s.port) as c:
        for n in SIZES:
            c.request("POST", "/b/echo", size=n)
            r = c.head()
            c.body(int(r.header("Content-Length")))
            t.eq(r.status, 200, "upload %d: status" % n)
        got = wait_lines(s, c, "request", 3)
    # what the backend saw
    with b.lock:
        log = list(b.log[-len(SIZES):])
    for n, e in zip(SIZES, log):
        t.eq((e["body_len"], e["body_sha256"]), (n, up.pattern_sha(n, seed=7)),
             "upload %d: the upstream read the body whole" % n)
    by = dict(got)
    t.check(BIG in by and (VG or MB <= by[BIG]) and by[BIG] <= BIG,
            "upload %d: logged as spliced (1 MiB at least): %r" % (BIG, got))


def pipelined(t, s, b):
    body = up.pattern(MB, seed=7)
    with Client(s.port) as c:
        data = (rt.request("POST", "/b/echo", headers=["Content-Length: %d" % len(body)])
                + bytes(body) + rt.request("GET", "/b/bytes/100000")
                + rt.request("GET", "/b/bytes/5"))
        c.sock.sendall(data[:300])     # the head and a little body first
        time.sleep(0.2)
        c.sock.sendall(data[300:])
        r1 = c.head()
        _, n1 = c.body(int(r1.header("Content-Length")))
        r2, sha2, got2 = c.response()
        r3, sha3, got3 = c.response()
        t.eq((r1.status, r2.status, r3.status), (200, 200, 200), "pipelined: three answers")
        t.eq((got2, sha2), (100000, up.pattern_sha(100000)), "pipelined: 2nd, after the body")
        t.eq((got3, sha3), (5, up.pattern_sha(5)), "pipelined: 3rd")
        req = wait_lines(s, c, "request", 1)
    with b.lock:
        e = [x for x in b.log if x["method"] == "POST"][-1]
    t.eq((e["body_len"], e["body_sha256"]), (MB, up.pattern_sha(MB, seed=7)),
         "pipelined: the POST body whole upstream")
    t.check(req and req[0][0] == MB and (VG or req[0][1] > 0),
            "pipelined: the POST body spliced (part of it): %r" % req)


def keepalive(t, s, b):
    conns0, _ = b.counts()
    with Client(s.port) as c:
        c.request("GET", "/k/bytes/%d" % BIG)
        r, sha, got = c.response()
        t.eq((got, sha), (BIG, up.pattern_sha(BIG)), "keep-alive: download")
        c.request("POST", "/k/echo", size=BIG)
        r = c.head()
        c.body(int(r.header("Content-Length")))
        t.eq(r.status, 200, "keep-alive: upload")
        c.request("GET", "/k/bytes/7")
        r, sha, got = c.response()
        t.eq((got, sha), (7, up.pattern_sha(7)), "keep-alive: a GET after both")
        down = wait_lines(s, c, "response", 2)
        upl = wait_lines(s, c, "request", 1)
    conns1, _ = b.counts()
    t.eq(conns1 - conns0, 1, "keep-alive: one upstream connection for the three requests")
    t.check(any(tot == BIG and (VG or sp > 0) for tot, sp in down),
            "keep-alive: download spliced %r" % down)
    t.check(any(tot == BIG and (VG or sp > 0) for tot, sp in upl),
            "keep-alive: upload spliced %r" % upl)


def client_leaves(t, s, b):
    for how in ("fin", "rst"):
        conns0, reqs0 = b.counts()
        mark = len(s.log_lines())
        c = Client(s.port)
        c.sock.sendall(rt.request("POST", "/k/echo", headers=["Content-Length: %d" % BIG]))
        sent = 0
        # Less than the body (BIG is 4 MiB under valgrind).
        for ch in up.pattern_chunks(min(4 * MB, BIG // 2), seed=7):
            c.sock.sendall(ch)
            sent += len(ch)
        time.sleep(rt.scaled(0.3))
        if how == "rst":
            up.set_rst(c.sock)
        c.close()
        time.sleep(rt.scaled(0.5))
        t.check(s.alive(), "client leaves mid-upload (%s): server alive" % how)
        lines = s.log_lines()[mark:]
        t.check(any("client closed mid-body" in l or "499" in l or "reset" in l.lower()
                    for l in lines) or how == "rst",
                "client leaves mid-upload (%s): logged: %r" % (how, lines[-5:]))
        _, reqs1 = b.counts()
        t.eq(reqs1, reqs0, "client leaves mid-upload (%s): the backend recorded no request "
             "(its body was cut)" % how)
        with Client(s.port) as c2:
            c2.request("GET", "/k/bytes/1000")
            r, sha, got = c2.response()
            t.eq((got, sha), (1000, up.pattern_sha(1000)),
                 "client leaves mid-upload (%s): the next request served" % how)
        conns1, _ = b.counts()
        t.check(conns1 > conns0, "client leaves mid-upload (%s): the cut upstream connection "
                "was not reused (%d -> %d)" % (how, conns0, conns1))
    # mid-download
    conns0, _ = b.counts()
    c = Client(s.port)
    c.request("GET", "/k/bytes/%d" % BIG)
    r = c.head()
    _, got = c.body(BIG, limit=2 * MB)
    up.set_rst(c.sock)
    c.close()
    time.sleep(rt.scaled(0.5))
    with Client(s.port) as c2:
        c2.request("GET", "/k/bytes/1000")
        r, sha, got = c2.response()
        t.eq((got, sha), (1000, up.pattern_sha(1000)), "client leaves mid-download: next served")
    conns1, _ = b.counts()
    t.check(conns1 > conns0, "client leaves mid-download: upstream connection not reused "
            "(%d -> %d)" % (conns0, conns1))


def upstream_cut(t, s, path, total, what, timeout):
    with Client(s.port, timeout=rt.scaled(timeout)) as c:
        t0 = time.monotonic()
        c.request("GET", path)
        r = c.head()
        t.eq(r.status, 200, "%s: the head came" % what)
        _, got = c.body(total)
        t.check(got < total, "%s: the client read less than the length (%d < %d)"
                % (what, got, total))
        t.check(got >= 2 * MB - 64 * 1024, "%s: and what was sent (%d)" % (what, got))
        try:
            d = c.sock.recv(1)
        except (ConnectionResetError, socket.timeout):
            d = b""
        t.eq(d, b"", "%s: the client connection ended" % what)
        return time.monotonic() - t0


def client_stalls(t, s, b):
    """A client that stops sending mid-body while it is spliced: the
    client's idle deadline still runs (each spliced chunk re-arms it):
    408 after --idle-timeout, and the upstream connection is dropped."""
    _, reqs0 = b.counts()
    with Client(s.port, timeout=rt.scaled(IDLE + 10)) as c:
        c.sock.sendall(rt.request("POST", "/k/echo", headers=["Content-Length: %d" % BIG]))
        for ch in up.pattern_chunks(2 * MB, seed=7):
            c.sock.sendall(ch)
        t0 = time.monotonic()
        try:
            r = c.head()
            status = r.status
        except (rt.ConnClosed, ConnectionResetError):
            status = None
        took = time.monotonic() - t0
    t.eq(status, 408, "client stalls mid-upload: 408")
    t.check(IDLE - 0.3 <= took <= IDLE + rt.scaled(5), "client stalls mid-upload: after "
            "--idle-timeout (%.2f s, idle %.2f s)" % (took, IDLE))
    time.sleep(0.3)
    _, reqs1 = b.counts()
    t.eq(reqs1, reqs0, "client stalls mid-upload: the upstream read no whole request")


def tls_copies(t, s):
    n = 2 * MB
    t0 = time.time()
    with tu.TlsConn(s.tls_port) as c:
        sock = c.sock
        cl = Client(None, sock=sock)
        cl.request("GET", "/b/bytes/%d" % n)
        r, sha, got = cl.response()
        t.eq((got, sha), (n, up.pattern_sha(n)), "TLS client: download by sha256")
        cl.request("POST", "/b/echo", size=n)
        r = cl.head()
        cl.body(int(r.header("Content-Length")))
        t.eq(r.status, 200, "TLS client: upload")
        port = sock.getsockname()[1]
    time.sleep(0.2)
    t.eq(spliced_lines(s, port, "response", t0) + spliced_lines(s, port, "request", t0), [],
         "TLS client (userspace TLS): nothing spliced, the copying path")


def test(t):
    b = up.Backend("b")
    k = up.Backend("k")
    reset = Raw(8 * MB, 2 * MB, "reset")
    close = Raw(8 * MB, 2 * MB, "close")
    stall = Raw(8 * MB, 2 * MB, "stall")
    try:
        s = au.DualServer("--log-level", "debug", "--idle-timeout", "%gms" % (IDLE * 1000),
                          *up.proxy_args(["/b/=" + b.url, "/k/=" + k.url,
                                          "/reset/=" + reset.url, "/close/=" + close.url,
                                          "/stall/=" + stall.url]))
        downloads(t, s, b)
        uploads(t, s, b)
        pipelined(t, s, b)
        keepalive(t, s, k)
        client_leaves(t, s, k)
        client_stalls(t, s, k)
        upstream_cut(t, s, "/reset/x", 8 * MB, "upstream reset mid-body", 10)
        upstream_cut(t, s, "/close/x", 8 * MB, "upstream closed mid-body", 10)
        took = upstream_cut(t, s, "/stall/x", 8 * MB, "upstream stalled mid-body", IDLE + 10)
        t.check(took >= IDLE - 0.1, "upstream stalled mid-body: cut after --idle-timeout "
                "(%.2f s >= %.2f s)" % (took, IDLE))
        tls_copies(t, s)
        t.check(s.alive(), "the server is still running")
    finally:
        for x in (b, k, reset, close, stall):
            x.close()


if __name__ == "__main__":
    rt.main(test)
