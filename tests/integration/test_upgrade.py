#!/usr/bin/env python3
"""Upgrading the binary without dropping connections, the procedure the
README documents: while the old process (A) serves, start the new binary
(B) on the same addresses (SO_REUSEPORT puts both in one group and the
kernel spreads new connections over them), wait until B answers, then
SIGTERM A, which stops accepting, finishes what it has in flight and exits 0.

Under a client load (new plain and TLS connections, keep-alive
connections, one plain and one TLS 50 MB download from A that spans the
switch) no request may fail: no refused or reset connection, no
connection closed without its response, no timeout, both downloads
complete and intact. A keep-alive connection that A closes while idle is
not a failure: a client retries its next request on a new connection
(RFC 9112 §9.3.1), and that retry must succeed.

The only timing the checks depend on is the order of the steps; the load
runs as fast as the machine lets it.
"""
import hashlib
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import ssl
import time

import rtls_test as rt

SIZE = 50 * 1024 * 1024
IO_T = rt.scaled(15.0)        # socket timeout of every load request
NEW_PLAIN, NEW_TLS, KA_PLAIN, KA_TLS = "new-plain", "new-tls", "keepalive-plain", "keepalive-tls"
LOAD = [NEW_PLAIN] * 3 + [NEW_TLS] * 2 + [KA_PLAIN, KA_TLS]
KA_CONNS = 8                  # keep-alive connections per keep-alive worker
MAX_SAMPLES = 8
HTTPS_LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")


class Closed(Exception):
    """The server ended the connection; .got says how many response bytes came first."""

    def __init__(self, got, why):
        super().__init__("%s after %d response bytes" % (why, got))
        self.got = got


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def connect(addr, ctx, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(IO_T)
    try:
        s.connect(addr)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
    except BaseException:
        s.close()
        raise
    return s


def recv(s, n=65536):
    try:
        return s.recv(n)
    except ssl.SSLZeroReturnError:
        return b""


def read_response(s, buf):
    """One response with Content-Length: (status, headers, body, rest)."""
    got = len(buf)
    while b"\r\n\r\n" not in buf:
        try:
            d = recv(s)
        except (ConnectionResetError, ssl.SSLError) as e:
            raise Closed(got, type(e).__name__)
        if not d:
            raise Closed(got, "EOF")
        buf += d
        got += len(d)
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (l.partition(":") for l in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(buf) < n:
        try:
            d = recv(s)
        except (ConnectionResetError, ssl.SSLError) as e:
            raise Closed(got, type(e).__name__)
        if not d:
            raise Closed(got, "EOF in body")
        buf += d
        got += len(d)
    return status, headers, buf[:n], buf[n:]


REQ_CLOSE = b"GET /who.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
REQ_KA = b"GET /who.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"


class Stats:
    def __init__(self, kind):
        self.kind = kind
        self.ok = 0
        self.by = {"A": 0, "B": 0}
        self.retries = 0      # keep-alive connections closed while idle, retried
        self.failures = 0
        self.classes = {}
        self.samples = []

    def answered(self, status, body):
        who = body.decode("latin-1")
        if status == 200 and who in self.by:
            self.ok += 1
            self.by[who] += 1
        else:
            self.fail("bad response", "status %d body %r" % (status, body[:40]))

    def fail(self, cls, detail):
        self.failures += 1
        self.classes[cls] = self.classes.get(cls, 0) + 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append("%s: %s: %s" % (self.kind, cls, detail))


def classify(e, phase):
    if isinstance(e, ConnectionRefusedError):
        return "%s: refused" % phase
    if isinstance(e, ConnectionResetError):
        return "%s: reset" % phase
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "%s: timeout" % phase
    if isinstance(e, Closed):
        return "%s: closed (%s)" % (phase, str(e).split(" after")[0])
    return "%s: %s" % (phase, type(e).__name__)


def new_conn_loop(st, addr, ctx, stop):
    """A new connection per request (Connection: close)."""
    while not stop.is_set():
        phase = "connect"
        s = None
        try:
            s = connect(addr, ctx)
            phase = "request"
            s.sendall(REQ_CLOSE)
            status, _, body, _ = read_response(s, b"")
            st.answered(status, body)
        except (OSError, Closed) as e:
            st.fail(classify(e, phase), repr(e))
        finally:
            if s is not None:
                s.close()


def keepalive_loop(st, addr, ctx, stop):
    """KA_CONNS keep-alive connections used in turn, with short random
    pauses so that some are idle whenever A is told to stop."""
    conns = [None] * KA_CONNS   # [sock, leftover bytes, responses so far]
    rnd = random.Random(os.getpid())
    i = 0
    while not stop.is_set():
        i = (i + 1) % KA_CONNS
        c = conns[i]
        retried = False
        while True:
            phase = "connect"
            try:
                if c is None:
                    c = [connect(addr, ctx), b"", 0]
                phase = "request"
                c[0].sendall(REQ_KA)
                status, headers, body, c[1] = read_response(c[0], c[1])
                c[2] += 1
                st.answered(status, body)
                if headers.get("connection", "").lower() == "close":
                    c[0].close()
                    c = None
                break
            except (OSError, Closed) as e:
                got = e.got if isinstance(e, Closed) else 0
                if c is not None:
                    c[0].close()
                reused = c is not None and c[2] > 0
                c = None
                if phase == "request" and reused and got == 0 and not retried:
                    # Closed while idle, before any byte of this response:
                    # the client may and does retry on a new connection.
                    st.retries += 1
                    retried = True
                    continue
                st.fail(classify(e, phase), repr(e))
                break
        conns[i] = c
        time.sleep(rnd.random() * 0.004)
    for c in conns:
        if c is not None:
            c[0].close()


def load_worker(kind, ports, stop, q):
    st = Stats(kind)
    tls = kind in (NEW_TLS, KA_TLS)
    addr = ("127.0.0.1", ports[1] if tls else ports[0])
    ctx = client_ctx() if tls else None
    try:
        if kind in (NEW_PLAIN, NEW_TLS):
            new_conn_loop(st, addr, ctx, stop)
        else:
            keepalive_loop(st, addr, ctx, stop)
    except Exception as e:  # noqa: BLE001 - reported as a failure
        st.fail("worker crashed", repr(e))
    q.put(("load", st.__dict__))


def download_worker(kind, ports, started, release, q):
    """GET /big.bin, read slowly (a small receive buffer, pauses) until
    `release`, then at full speed; reports bytes and sha256."""
    tls = kind == "tls"
    res = {"kind": kind, "got": 0, "sha": None, "error": None, "status": None}
    h = hashlib.sha256()
    try:
        s = connect(("127.0.0.1", ports[1] if tls else ports[0]),
                    client_ctx() if tls else None, rcvbuf=64 * 1024)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = recv(s)
            if not d:
                raise Closed(len(buf), "EOF in head")
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        res["status"] = head.split(b"\r\n")[0].decode("latin-1")
        h.update(buf)
        got = len(buf)
        started.set()
        while got < SIZE:
            d = recv(s, 16384 if not release.is_set() else 1 << 20)
            if not d:
                raise Closed(got, "EOF in body")
            h.update(d)
            got += len(d)
            res["got"] = got
            if not release.is_set():
                time.sleep(0.01)
        res["sha"] = h.hexdigest()
        s.close()
    except Exception as e:  # noqa: BLE001 - reported
        res["error"] = repr(e)
        started.set()
    q.put(("download", res))


def serve_argv(binary, root, ports, state):
    return rt.WRAP + [binary, "serve",
                      "--listen", "127.0.0.1:%d" % ports[0],
                      "--tls-listen", "127.0.0.1:%d" % ports[1],
                      "--state-dir", state, "--root", root, "--threads", "2",
                      "--log-level", "info", "--shutdown-timeout", "30s"]


def who(ports, tls):
    """Which process answers a new connection ("A"/"B"), or the error."""
    try:
        s = connect(("127.0.0.1", ports[1] if tls else ports[0]),
                    client_ctx() if tls else None)
        try:
            s.sendall(REQ_CLOSE)
            status, _, body, _ = read_response(s, b"")
            return body.decode("latin-1") if status == 200 else "status %d" % status
        finally:
            s.close()
    except (OSError, Closed) as e:
        return repr(e)


def wait_answers(ports, name, timeout):
    """True once both listeners of the process `name` have answered."""
    seen = set()
    end = time.monotonic() + rt.scaled(timeout)
    while time.monotonic() < end and len(seen) < 2:
        for tls in (False, True):
            if tls not in seen and who(ports, tls) == name:
                seen.add(tls)
    return len(seen) == 2


def test(t):
    if rt.UNDER_VALGRIND:
        raise rt.Skip("a load test: not meaningful under valgrind")
    rt.need_binary(rt.RINGTLS_BIN, "ringtls")
    base = rt.temp_dir("rtls-upgrade-")
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    roots = {}
    for name in ("A", "B"):
        roots[name] = os.path.join(base, "root-" + name)
        os.makedirs(roots[name])
        rt.write_file(os.path.join(roots[name], "who.txt"), name)
    rt.write_file(os.path.join(roots["A"], "big.bin"), data)
    os.link(os.path.join(roots["A"], "big.bin"), os.path.join(roots["B"], "big.bin"))
    del data
    state = os.path.join(base, "state")
    # The "new" binary: another file, as after an upgrade.
    new_bin = os.path.join(base, "ringtls.new")
    shutil.copy2(rt.RINGTLS_BIN, new_bin)

    ports = (rt.free_port(), rt.free_port())
    while ports[1] == ports[0]:
        ports = (ports[0], rt.free_port())
    a = rt.Process(serve_argv(rt.RINGTLS_BIN, roots["A"], ports, state), name="ringtls-A")
    a.wait_ports(rt.LISTEN_RE, HTTPS_LISTEN_RE, timeout=rt.START_TIMEOUT)
    t.eq((who(ports, False), who(ports, True)), ("A", "A"), "A alone answers plain and TLS")

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    stop, release = ctx.Event(), ctx.Event()
    procs = []
    started = []
    for kind in ("plain", "tls"):
        ev = ctx.Event()
        p = ctx.Process(target=download_worker, args=(kind, ports, ev, release, q), daemon=True)
        p.start()
        procs.append(p)
        started.append(ev)
    for ev in started:
        t.check(ev.wait(rt.scaled(10)), "a download began on A")
    for kind in LOAD:
        p = ctx.Process(target=load_worker, args=(kind, ports, stop, q), daemon=True)
        p.start()
        procs.append(p)
    time.sleep(1.0)                       # load on A alone

    b = rt.Process(serve_argv(new_bin, roots["B"], ports, state), name="ringtls-B")
    b.wait_ports(rt.LISTEN_RE, HTTPS_LISTEN_RE, timeout=rt.START_TIMEOUT)
    t.check(wait_answers(ports, "B", 10), "B answers plain and TLS beside A")
    time.sleep(1.0)                       # load on both

    a.send_signal(signal.SIGTERM)
    t.check(a.wait_log(r"SIGTERM: shutting down", 5) is not None, "A: log: SIGTERM")
    time.sleep(0.5)                       # A finishes the downloads, B takes the rest
    t.check(a.alive(), "A still finishing the downloads after SIGTERM")
    release.set()
    rc_a = a.wait(20)
    t.eq(rc_a, 0, "A exits 0 once the downloads are done")
    time.sleep(1.5)                       # load on B alone
    stop.set()

    loads, downloads = [], []
    end = time.monotonic() + rt.scaled(30)
    while len(loads) + len(downloads) < len(procs) and time.monotonic() < end:
        try:
            what, res = q.get(timeout=max(0.1, end - time.monotonic()))
        except Exception:  # noqa: BLE001 - queue.Empty
            break
        (loads if what == "load" else downloads).append(res)
    for p in procs:
        p.join(timeout=rt.scaled(5))
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
    t.eq(len(loads), len(LOAD), "every load worker reported")
    t.eq(len(downloads), 2, "both downloads reported")

    for d in sorted(downloads, key=lambda d: d["kind"]):
        t.eq(d["error"], None, "%s download from A: no error" % d["kind"])
        t.eq(d["status"], "HTTP/1.1 200 OK", "%s download: status" % d["kind"])
        t.eq(d["got"], SIZE, "%s download: bytes" % d["kind"])
        t.eq(d["sha"], digest, "%s download: sha256" % d["kind"])

    total = sum(l["ok"] for l in loads)
    on_a = sum(l["by"]["A"] for l in loads)
    on_b = sum(l["by"]["B"] for l in loads)
    retries = sum(l["retries"] for l in loads)
    failures = sum(l["failures"] for l in loads)
    classes = {}
    for l in loads:
        for k, v in l["classes"].items():
            classes[l["kind"] + ": " + k] = classes.get(l["kind"] + ": " + k, 0) + v
    per_kind = {}
    for l in loads:
        per_kind[l["kind"]] = per_kind.get(l["kind"], 0) + l["ok"]
    print("load: %d requests answered (A %d, B %d; %s), %d idle keep-alive closes retried, "
          "%d failed %s" % (total, on_a, on_b, ", ".join("%s %d" % kv for kv in sorted(per_kind.items())),
                            retries, failures, classes or ""), flush=True)
    for l in loads:
        for s in l["samples"]:
            print("  " + s)
    t.eq(failures, 0, "failed requests during the switch")
    t.check(on_a > 0 and on_b > 0, "both processes served the load (A %d, B %d)" % (on_a, on_b))
    for kind in sorted(set(LOAD)):
        n = sum(l["ok"] for l in loads if l["kind"] == kind)
        t.check(n > 0, "%s: requests answered (%d)" % (kind, n))

    t.check(a.wait_log(r"deadline passed", 0) is None, "A: nothing cut at its stop")
    if os.environ.get("RTLS_TEST_VERBOSE"):
        print("A's log:\n" + a.log(), flush=True)
    t.check(b.alive(), "B still running")
    t.eq((who(ports, False), who(ports, True)), ("B", "B"), "B alone answers after A is gone")
    t.eq(b.stop(), 0, "B: exit status after SIGTERM")


if __name__ == "__main__":
    rt.main(test, watchdog=90)
