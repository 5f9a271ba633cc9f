#!/usr/bin/env python3
"""The HTTP/1.1 reverse proxy (issue 14: `ringtls serve --proxy`), end to
end against real upstreams (upstreams.py): Python http.server backends on
TCP, [::1], a resolved name and AF_UNIX; a raw "evil" upstream; Debian's
nginx; a websocket echo server (python3-websockets).

Server A (--listen, --tls-listen, [::1]):
- routing: longest prefix wins, unrouted paths stay built-in (/hello),
  the request target reaches the upstream unchanged; unix:, [::1] and
  NAME upstreams;
- headers: Connection-named and hop-by-hop headers dropped, Host kept,
  X-Forwarded-For (appended), -Proto, -Host and Forwarded (RFC 7239)
  right over plaintext, TLS and IPv6;
- integrity: BIG bytes down and up (Content-Length and chunked) over
  plaintext and TLS, by sha256;
- framing: HEAD, 204, 304, chunked pass-through, close-delimited, on a
  connection that keeps serving afterwards; hop-by-hop response headers
  dropped; pipelined requests (proxied and built-in) answered in order,
  Connection: close honoured;
- clients that leave mid-download or mid-upload: later requests get
  their own answers (no half-read upstream connection reused);
- Expect: 100-continue: the upstream's 100 is relayed, its 417 too (and
  then no 100);
- keep-alive: 50 requests on one client connection, 5 connections one
  after the other, 4 at once: the backend sees few connections;
- round robin over two backends: strict alternation;
- a slow client reading SLOW bytes, and a client sending SLOW bytes to
  an upstream that reads slowly: the proxy's RSS grows < 64 MiB and the
  fast side is held back (backpressure);
- websocket echo through the proxy, plaintext and TLS;
- nginx as an upstream: a file down, an upload answered by `return 200`.
Server B (short proxy timeouts): every failure mode with its status
(502/503/504) and exactly one log line naming the client (a "marked
down" line may come with a connect failure's); mid-body upstream
failures (Content-Length, chunked, close-delimited, stalled) leave the
client an incomplete response and a closed connection; passive health
(a refusing or a black-holed server among two); the retry of a GET or
DELETE that fails on a reused upstream connection, and no replay of a
POST or PUT body; an upstream's empty reason phrase is passed on, with
the SP before it (RFC 9112 section 4).
Server C: --proxy-keepalive 0, and a "/" route takes /hello too.
Server F: --proxy-keepalive 1 keeps one idle upstream connection.
Servers D/E: --upstream-proxy-protocol v1/v2, each client connection's
own header (an upstream connection opened for one client is never
reused for another, whose header it would misname).

RTLS_PROXY_PARTS=a,b runs only those parts (names in PARTS);
RTLS_TEST_VERBOSE=1 prints every server's log at the end."""
import base64
import hashlib
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
import traceback

import rtls_test as rt
import abuse_util as au
import tls_util as tu
import upstreams as up

MB = 1 << 20
VG = rt.UNDER_VALGRIND
BIG = (2 if VG else 50) * MB          # integrity transfers
MID = (1 if VG else 8) * MB           # unix, chunked upload, nginx
SLOW = (8 if VG else 200) * MB        # the slow reader's response
# ASan's quarantine keeps freed memory for a while: a bound for the
# proxy's buffers, not for the sanitizer's bookkeeping.
RSS_MAX_KIB = (160 if "ASAN_OPTIONS" in os.environ else 64) * 1024
INFLIGHT_MAX = 48 * MB                # backend bytes ahead of the slow reader
HOST = "example.test:8443"
# Server B's deadlines: a little longer under valgrind, not TIME_SCALE
# times (the waits for them are scaled in full).
SLOWER = min(rt.TIME_SCALE, 3.0)
PT = 1.0 * SLOWER                     # server B: --proxy-timeout
CT = 0.5 * SLOWER                     # server B: --proxy-connect-timeout
IDLE = 2.0 * SLOWER                   # server B: --idle-timeout
V6_RE = re.compile(r"listening on \[::1\]:(\d+) \(http\)")


# --------------------------------------------------------------------------
# A client over plaintext or TLS that reads any HTTP/1.1 framing


class Resp:
    def __init__(self, status, reason, headers, raw):
        self.status, self.reason, self.headers, self.raw = status, reason, headers, raw
        self.body = b""
        self.n = 0
        self.sha = None
        self.complete = False
        self.framing = None        # none, length, chunked, close
        self.interim = []          # 1xx heads before this one

    def header(self, name, default=None):
        vals = self.header_all(name)
        return vals[0] if vals else default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return "<Resp %s %s %d bytes %s%s>" % (self.status, self.headers, self.n, self.framing,
                                              "" if self.complete else " INCOMPLETE")


class Client(rt.SockOwner):
    """One connection to a server; tls=True: TLS (no verification unless
    ctx, an SSLContext, is given)."""

    def __init__(self, port, tls=False, host="127.0.0.1", family=socket.AF_INET,
                 timeout=rt.IO_TIMEOUT, rcvbuf=None, ctx=None):
        raw = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect((host, port))
        self.local_port = raw.getsockname()[1]
        if tls:
            self.sock = (ctx or tu.client_ctx()).wrap_socket(raw, server_hostname="localhost")
        else:
            self.sock = raw
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def settimeout(self, s):
        self.sock.settimeout(s)

    def send(self, data):
        self.sock.sendall(data.encode("latin-1") if isinstance(data, str) else data)

    def _recv(self, n=1 << 20):
        if self.eof:
            return b""
        try:
            d = self.sock.recv(n)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.reset = True
            d = b""
        if not d:
            self.eof = True
        return d

    def read_until(self, marker):
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            start = max(0, len(self.buf) - len(marker))
            d = self._recv()
            if not d:
                raise rt.ConnClosed("closed before %r (have %r)" % (marker, bytes(self.buf[:200])))
            self.buf += d

    def take(self, n):
        """Up to n bytes; b'' at EOF."""
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        return self._recv(min(n, 1 << 20))

    def read_head(self):
        h = rt.parse_head(self.read_until(b"\r\n\r\n"))
        if h.version not in ("HTTP/1.0", "HTTP/1.1"):
            raise AssertionError("bad status line version %r" % h.version)
        return Resp(h.status, h.reason, h.headers, h.raw_head)

    def read_body(self, r, method="GET", keep=True, on_progress=None):
        """Reads r's body by its framing; r.complete tells whether the
        framing ended properly (False: the connection ended, or timed out,
        first). keep=False keeps only the length and sha256."""
        h = hashlib.sha256()
        parts = []

        def got(d):
            h.update(d)
            r.n += len(d)
            if keep:
                parts.append(d)
            if on_progress:
                on_progress(r.n)

        te = r.header("Transfer-Encoding")
        cl = r.header_all("Content-Length")
        try:
            if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
                r.framing, r.complete = "none", True
            elif te is not None:
                r.framing = "chunked"
                if te.lower() != "chunked":
                    raise AssertionError("Transfer-Encoding %r" % te)
                while True:
                    line = self.read_until(b"\r\n")
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.read_until(b"\r\n") != b"\r\n":
                            pass
                        break
                    left = size
                    while left:
                        d = self.take(left)
                        if not d:
                            raise rt.ConnClosed("closed in a chunk")
                        got(d)
                        left -= len(d)
                    if self.read_until(b"\r\n") != b"\r\n":
                        raise AssertionError("chunk not followed by CRLF")
                r.complete = True
            elif cl:
                r.framing = "length"
                if len(cl) != 1:
                    raise AssertionError("Content-Length %r" % cl)
                left = int(cl[0])
                while left:
                    d = self.take(left)
                    if not d:
                        raise rt.ConnClosed("closed in the body")
                    got(d)
                    left -= len(d)
                r.complete = True
            else:
                r.framing = "close"
                while True:
                    d = self.take(1 << 20)
                    if not d:
                        break
                    got(d)
                r.complete = not self.reset
        except (rt.ConnClosed, socket.timeout, ValueError):
            r.complete = False
        r.sha = h.hexdigest()
        r.body = b"".join(parts)
        return r

    def response(self, method="GET", keep=True):
        """The next final response (1xx heads kept in .interim)."""
        interim = []
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101:
                interim.append(r)
                continue
            r.interim = interim
            return self.read_body(r, method, keep)

    def request(self, method="GET", target="/", headers=(), body=b"", host=HOST, keep=True):
        hdrs = list(headers)
        if body and not any(h.lower().startswith(("content-length:", "transfer-encoding:"))
                            for h in hdrs):
            hdrs.append("Content-Length: %d" % len(body))
        self.send(rt.request(method, target, headers=hdrs, host=host, body=body))
        return self.response(method, keep)

    def closed_by_peer(self, timeout):
        """True if the connection ends (FIN or RST) within timeout (scaled),
        whatever arrives before."""
        end = time.monotonic() + rt.scaled(timeout)
        while not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                self._recv()
            except socket.timeout:
                return False
        return True


def tls_or_plain(s, tls):
    return s.tls_port if tls else s.port


def guard(t, what, fn, *args, **kw):
    """fn(*args, **kw); an exception in it is one failed check, and the
    test goes on."""
    try:
        return fn(*args, **kw)
    except Exception as ex:  # noqa: BLE001
        traceback.print_exc()
        t.check(False, "%s: %s: %s" % (what, type(ex).__name__, ex))
        return None


# --------------------------------------------------------------------------
# Helpers: checks that more than one part makes


def download(t, c, target, n, what, seed=0):
    r = c.request("GET", target, keep=False)
    t.eq((r.status, r.complete, r.n), (200, True, n), "%s: status, complete, length" % what)
    t.eq(r.sha, up.pattern_sha(n, seed), "%s: sha256" % what)
    return r


def send_upload(c, target, n, chunked=False, seed=1, extra=()):
    hdrs = list(extra) + (["Transfer-Encoding: chunked"] if chunked else ["Content-Length: %d" % n])
    c.send(rt.request("POST", target, headers=hdrs, host=HOST))
    for piece in up.pattern_chunks(n, seed, chunk=256 << 10):
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        c.send(b"0\r\n\r\n")


def upload(t, c, target, n, what, chunked=False):
    send_upload(c, target, n, chunked)
    r = c.response()
    t.eq(r.status, 200, "%s: status" % what)
    if r.status == 200:
        j = r.json()
        t.eq((j["body_len"], j["body_sha256"]), (n, up.pattern_sha(n, 1)), "%s: length, sha256 upstream" % what)
    return r


def seen_headers(r):
    """The echo's view of the request headers: {lowercase name: [values]}."""
    out = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
QUOTED_RE = re.compile(r'^"(?:[^"\\]|\\.)*"$')


def parse_forwarded(value):
    """The last element of a Forwarded header as {param: value}, and the
    pairs whose value is neither a token nor a quoted-string."""
    elem = value.split(",")[-1]
    params, bad = {}, []
    for pair in elem.split(";"):
        k, _, v = pair.strip().partition("=")
        if not (TOKEN_RE.match(v) or QUOTED_RE.match(v)):
            bad.append(pair.strip())
        params[k.lower()] = v[1:-1] if v.startswith('"') else v
    return params, bad


def log_lines_since(s, mark, settle=0.25, timeout=3.0):
    """The server's log lines after mark, once one is there and nothing
    more has come for `settle` s (or after timeout, scaled)."""
    end = time.monotonic() + rt.scaled(timeout)
    while len(s.lines_since(mark)) == 0 and time.monotonic() < end:
        time.sleep(0.02)
    n = -1
    while n != len(s.lines_since(mark)):
        n = len(s.lines_since(mark))
        time.sleep(settle)
    return s.lines_since(mark)


DOWN_RE = re.compile(r" upstream \S+: .*marked down")


def one_log_line(t, s, mark, what, client_port):
    """Exactly one log line names the client; besides it, at most one
    line says the upstream is marked down."""
    lines = log_lines_since(s, mark)
    mine = [l for l in lines if "127.0.0.1:%d" % client_port in l]
    other = [l for l in lines if l not in mine]
    t.check(len(mine) == 1, "%s: exactly one log line names the client 127.0.0.1:%d, got %r"
            % (what, client_port, lines))
    t.check(len(other) <= 1 and all(DOWN_RE.search(l) for l in other),
            "%s: other log lines: %r" % (what, other))


# --------------------------------------------------------------------------
# Websocket (RFC 6455) by hand

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_read(c):
    def exact(n):
        out = b""
        while len(out) < n:
            d = c.take(n - len(out))
            if not d:
                raise rt.ConnClosed("websocket closed")
            out += d
        return out
    b0, b1 = exact(2)
    n = b1 & 0x7f
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    if b1 & 0x80:
        raise AssertionError("a server frame is masked")
    return b0 & 0x0f, exact(n)


def ws_session(t, c, target, what):
    key = base64.b64encode(os.urandom(16)).decode()
    c.send(rt.request("GET", target, host=HOST, headers=[
        "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
        "Sec-WebSocket-Version: 13"]))
    r = c.read_head()
    want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    t.eq(r.status, 101, "%s: status" % what)
    if r.status != 101:
        return
    t.eq((r.header("Upgrade", "").lower(), r.header("Sec-WebSocket-Accept")), ("websocket", want),
         "%s: Upgrade, Sec-WebSocket-Accept" % what)
    for op, payload in ((1, b"hello"), (2, up.pattern(200000, 3)), (1, b"x" * 300)):
        c.send(ws_frame(op, payload))
        got = ws_read(c)
        t.check(got == (op, payload), "%s: echo of a %d-byte frame" % (what, len(payload)))
    c.send(ws_frame(8, struct.pack("!H", 1000)))
    op, _ = ws_read(c)
    t.eq(op, 8, "%s: close frame back" % what)
    t.check(c.closed_by_peer(5), "%s: the tunnel closes after the close handshake" % what)


# --------------------------------------------------------------------------
# Set-up


class Env:
    pass


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def refused_port():
    """A port bound without listening (nobody else takes it): connects get RST."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def start_nginx(e):
    if not up.nginx_binary():
        print("SKIP part nginx: not installed")
        return None
    files = {"big.bin": up.pattern(MID, 5), "small.txt": b"small file\n"}
    for attempt in range(3):
        argv, port = up.nginx_argv(rt.temp_dir("rtls-nginx-"), files, rt.free_port)
        p = rt.Process(argv, name="nginx")
        if up.wait_tcp(port, rt.scaled(10), p.alive):
            return p, port
        p.stop()
        print("nginx did not start (attempt %d): %s" % (attempt + 1, p.log()))
    raise RuntimeError("nginx did not start")


def start_ws():
    py = up.websockets_python()
    if not py:
        print("SKIP part websocket: no Python here imports websockets (python3-websockets)")
        return None
    p = rt.Process([py, os.path.join(rt.HERE, "upstreams.py"), "ws-echo"], name="ws-echo")
    (port,) = p.wait_ports(re.compile(r"listening on 127\.0\.0\.1:(\d+) \(ws\)"),
                           timeout=rt.scaled(15))
    return p, port


def start_servers(e):
    e.b1 = up.Backend("b1")
    e.b2 = up.Backend("b2")
    e.b3 = up.Backend("b3")
    e.uds = up.Backend("uds", unix=os.path.join(rt.temp_dir("rtls-uds-"), "up.sock"))
    fam, _, _, _, addr = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]
    e.named = up.Backend("named", family=fam, host=addr[0])
    e.v6 = up.Backend("v6", family=socket.AF_INET6) if has_ipv6_loopback() else None
    e.evil = up.Evil()
    e.flaky = up.Evil(flaky=True)
    e.nginx = start_nginx(e)
    e.ws = start_ws()
    e.dead1_sock, e.dead1 = refused_port()
    e.dead2_sock, e.dead2 = refused_port()

    routes = ["/p/=" + e.b1.url, "/two/=%s,%s" % (e.b1.url, e.b2.url), "/api/=" + e.b2.url,
              "/api/v2/=" + e.b3.url, "/uds/=" + e.uds.url,
              "/name/=http://localhost:%d" % e.named.port]
    extra = []
    if e.v6:
        routes.append("/v6/=" + e.v6.url)
        extra += ["--listen", "[::1]:0"]
    if e.nginx:
        routes.append("/nginx/=http://127.0.0.1:%d" % e.nginx[1])
    if e.ws:
        routes.append("/ws/=http://127.0.0.1:%d" % e.ws[1])
    # A connection the proxy fails to let go of must not turn into a
    # failed stop as well: the shutdown deadline (3 s) comes before
    # rt.STOP_TIMEOUT.
    e.a = au.DualServer(*extra, "--shutdown-timeout", "3s", *up.proxy_args(routes))
    e.a_v6 = e.a.wait_ports(V6_RE, timeout=rt.START_TIMEOUT)[0] if e.v6 else None

    from test_connect import full_listener
    e.blackhole = full_listener()
    routes = ["/evil/=" + e.evil.url, "/flaky/=" + e.flaky.url,
              "/dead/=http://127.0.0.1:%d" % e.dead1,
              "/half/=http://127.0.0.1:%d,%s" % (e.dead2, e.b1.url), "/slow/=" + e.b1.url]
    if e.blackhole:
        bh = "http://127.0.0.1:%d" % e.blackhole[0].getsockname()[1]
        routes += ["/blackhole/=" + bh, "/half2/=%s,%s" % (bh, e.b1.url)]
    e.b = au.DualServer("--proxy-timeout", "%gms" % (PT * 1000),
                        "--proxy-connect-timeout", "%gms" % (CT * 1000),
                        "--idle-timeout", "%gms" % (IDLE * 1000), "--shutdown-timeout", "3s",
                        *up.proxy_args(routes))
    e.c = au.DualServer("--proxy-keepalive", "0", "--proxy", "/=" + e.b1.url)
    e.f = au.DualServer("--proxy-keepalive", "1", "--proxy", "/p/=" + e.b1.url)
    e.pp_evil = up.Evil()
    e.d = au.DualServer("--upstream-proxy-protocol", "v1", "--proxy", "/=" + e.pp_evil.url)
    e.e = au.DualServer("--upstream-proxy-protocol", "v2", "--proxy", "/=" + e.pp_evil.url)


# --------------------------------------------------------------------------
# Server A


def part_routing(t, e):
    with Client(e.a.port) as c:
        r = c.request("GET", "/hello")
        t.eq((r.status, r.body, r.header("X-Backend")), (200, b"Hello, World!", None),
             "GET /hello stays built-in")
        for target, name in (("/p/echo?q=1&r=%2F", "b1"), ("/api/x", "b2"), ("/api/v2/x?y", "b3"),
                             ("/api/v2", "b2"), ("/api/", "b2"), ("/uds/echo", "uds"),
                             ("/name/echo", "named")) + ((("/v6/echo", "v6"),) if e.v6 else ()):
            r = c.request("GET", target)
            t.eq((r.status, r.header("X-Backend")), (200, name), "GET %s: routed" % target)
            if r.status == 200:
                t.eq(r.json()["path"], target, "GET %s: the target reaches the upstream unchanged"
                     % target)
        r = c.request("GET", "/apix")
        t.eq((r.status, r.header("X-Backend")), (404, None), "GET /apix: not routed (built-in 404)")
        r = c.request("GET", "/")
        t.eq((r.status, r.header("X-Backend")), (200, None), "GET /: the built-in page")
    with Client(e.a.port, timeout=rt.scaled(20)) as c:
        download(t, c, "/uds/bytes/%d" % MID, MID, "unix upstream: download")
        upload(t, c, "/uds/upload", MID, "unix upstream: upload")


def check_forwarding(t, s, port, tls, family, what):
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    ip = host
    proto = "https" if tls else "http"
    with Client(port, tls=tls, host=host, family=family) as c:
        hop = ["Connection: keep-alive, X-Drop-Me", "X-Drop-Me: secret", "Keep-Alive: timeout=5",
               "Proxy-Connection: keep-alive", "TE: trailers", "Upgrade: foo/1", "X-Keep: yes",
               "X-Forwarded-For: 203.0.113.7"]
        r = c.request("GET", "/p/echo", headers=hop)
        t.eq(r.status, 200, "%s: status" % what)
        if r.status != 200:
            return
        h = seen_headers(r)
        for name in ("x-drop-me", "keep-alive", "proxy-connection", "te", "upgrade",
                     "transfer-encoding"):
            t.check(name not in h, "%s: %s not forwarded: %r" % (what, name, h.get(name)))
        tokens = {x.strip().lower() for v in h.get("connection", []) for x in v.split(",")}
        t.check(tokens <= {"keep-alive", "close"}, "%s: Connection forwarded as %r"
                % (what, h.get("connection")))
        t.eq(h.get("x-keep"), ["yes"], "%s: an end-to-end header" % what)
        t.eq(h.get("host"), [HOST], "%s: Host kept" % what)
        t.eq(h.get("x-forwarded-for"), ["203.0.113.7, " + ip], "%s: X-Forwarded-For appended" % what)
        t.eq(h.get("x-forwarded-proto"), [proto], "%s: X-Forwarded-Proto" % what)
        t.eq(h.get("x-forwarded-host"), [HOST], "%s: X-Forwarded-Host" % what)
        fwd = h.get("forwarded", [])
        t.eq(len(fwd), 1, "%s: one Forwarded header" % what)
        if fwd:
            params, bad = parse_forwarded(fwd[0])
            want_for = "[%s]" % ip if family == socket.AF_INET6 else ip
            t.eq((params.get("for"), params.get("proto"), params.get("host")), (want_for, proto, HOST),
                 "%s: Forwarded for/proto/host in %r" % (what, fwd[0]))
            t.eq(bad, [], "%s: Forwarded values that are neither token nor quoted-string" % what)
        r = c.request("GET", "/p/echo")   # the same connection, no X-Forwarded-For of its own
        t.eq(seen_headers(r).get("x-forwarded-for") if r.status == 200 else r.status, [ip],
             "%s: X-Forwarded-For without one from the client" % what)


def part_headers(t, e):
    check_forwarding(t, e.a, e.a.port, False, socket.AF_INET, "headers (plaintext)")
    check_forwarding(t, e.a, e.a.tls_port, True, socket.AF_INET, "headers (TLS)")
    if e.a_v6:
        check_forwarding(t, e.a, e.a_v6, False, socket.AF_INET6, "headers (IPv6 client)")


def part_integrity(t, e):
    for tls in (False, True):
        what = "TLS" if tls else "plaintext"
        with Client(tls_or_plain(e.a, tls), tls=tls, timeout=rt.scaled(30)) as c:
            download(t, c, "/p/bytes/%d" % BIG, BIG, "%s: %d MiB download" % (what, BIG >> 20))
            upload(t, c, "/p/upload", BIG, "%s: %d MiB upload" % (what, BIG >> 20))
            upload(t, c, "/p/upload", MID, "%s: %d MiB chunked upload" % (what, MID >> 20),
                   chunked=True)
            r = c.request("GET", "/p/echo")
            t.eq(r.status, 200, "%s: the connection serves on after the transfers" % what)


def part_framing(t, e):
    with Client(e.a.port) as c:
        r = c.request("HEAD", "/p/bytes/1000")
        t.eq((r.status, r.header("Content-Length"), r.n), (200, "1000", 0), "HEAD: status, length")
        r = c.request("GET", "/p/status/204")
        t.eq((r.status, r.header("Content-Length"), r.header("Transfer-Encoding")), (204, None, None),
             "204: no body framing")
        r = c.request("GET", "/p/status/304", headers=['If-None-Match: "e1"'])
        t.eq((r.status, r.header("ETag"), r.header("Transfer-Encoding")), (304, '"e1"', None),
             "304: ETag, no body framing")
        n = 300007
        r = c.request("GET", "/p/chunked/%d" % n)
        t.eq((r.status, r.framing, r.complete), (200, "chunked", True), "chunked: passed through")
        t.check(r.body == up.pattern(n), "chunked: the body (%d bytes)" % r.n)
        r = c.request("GET", "/p/hop-headers")
        t.eq((r.status, r.body, r.header("X-End")), (200, b"ok", "1"), "response hop-by-hop: status")
        t.eq([k for k, _ in r.headers if k.lower() in ("x-secret", "keep-alive")], [],
             "response hop-by-hop: Connection-named and Keep-Alive headers dropped")
        t.check(all(x.strip().lower() in ("keep-alive", "close") for v in r.header_all("Connection")
                    for x in v.split(",")), "response hop-by-hop: Connection %r"
                % r.header_all("Connection"))
        r = c.request("GET", "/p/echo")
        t.eq(r.status, 200, "the client connection serves on after HEAD/204/304/chunked")
    with Client(e.a.port) as c:
        n = 300007
        r = c.request("GET", "/p/close/%d" % n)
        t.eq((r.status, r.complete), (200, True), "close-delimited: status, complete")
        t.check(r.body == up.pattern(n), "close-delimited: the body (%d bytes, %s)" % (r.n, r.framing))
        if r.framing != "close":       # re-framed: the connection may serve on
            r = c.request("GET", "/p/echo")
            t.eq(r.status, 200, "close-delimited re-framed: the connection serves on")


def part_pipeline(t, e):
    """Pipelined requests, proxied and built-in mixed, answered in order;
    Connection: close from the client ends the connection after its response."""
    n = 100003
    with Client(e.a.port) as c:
        c.send(rt.request("GET", "/p/echo?1", host=HOST) + rt.request("GET", "/hello", host=HOST)
               + rt.request("GET", "/p/bytes/%d" % n, host=HOST)
               + rt.request("GET", "/p/chunked/5000", host=HOST)
               + rt.request("POST", "/p/upload", host=HOST, headers=["Content-Length: 3"], body=b"abc")
               + rt.request("GET", "/two/echo?6", host=HOST, headers=["Connection: close"]))
        got = []
        for _ in range(6):
            r = c.response()
            got.append((r.status, r.header("X-Backend"), r.complete))
            if len(got) == 1 and r.status == 200:
                t.eq(r.json()["path"], "/p/echo?1", "pipeline: the first response's request")
            if len(got) == 3:
                t.check(r.body == up.pattern(n), "pipeline: the third response's body")
            if len(got) == 5 and r.status == 200:
                t.eq(r.json()["body_len"], 3, "pipeline: the POST's body")
            if len(got) == 6 and r.status == 200:
                t.eq(r.json()["path"], "/two/echo?6", "pipeline: the last response's request")
        t.eq([g[0] for g in got], [200] * 6, "pipeline: statuses")
        t.eq([g[1] for g in got][:5], ["b1", None, "b1", "b1", "b1"], "pipeline: who answered")
        t.check(c.closed_by_peer(3), "pipeline: Connection: close ends the connection")


def part_client_abort(t, e):
    """Clients that go away mid-download and mid-upload: the upstream
    connections they used must not serve anyone else half-read, and the
    proxy lets go of both sides at once (not at the idle timeout)."""
    with Client(e.a.port) as c:
        c.request("GET", "/p/echo")
    fd0 = au.settled_fd_count(e.a)
    for _ in range(3):
        with Client(e.a.port) as c:
            c.send(rt.request("GET", "/p/bytes/%d" % (64 * MB), host=HOST))
            r = c.read_head()
            t.eq(r.status, 200, "client abort: head")
            c.take(1 << 20)
        with Client(e.a.port) as c:
            c.send(rt.request("POST", "/p/upload", host=HOST, headers=["Content-Length: %d" % (16 * MB)]))
            c.send(up.pattern(1 << 20))
    fds = au.wait_until(lambda: e.a.fd_count() <= fd0 and e.a.fd_count(), timeout=3.0)
    t.check(fds, "client abort: the proxy still holds %d descriptors 3 s after the clients left "
            "(%d before)" % (e.a.fd_count(), fd0))
    with Client(e.a.port) as c:
        for i in range(10):
            r = c.request("GET", "/p/echo?after-abort-%d" % i)
            ok = r.status == 200 and r.header("Content-Type") == "application/json"
            t.check(ok and r.json()["path"] == "/p/echo?after-abort-%d" % i,
                    "client abort: request %d after the aborts answered right: %r" % (i, r))
    t.check(e.a.alive(), "client abort: server alive")


def part_expect(t, e):
    n = 1000
    body = up.pattern(n, 1)
    expects0 = e.b1.expects
    with Client(e.a.port, timeout=rt.scaled(3)) as c:
        c.send(rt.request("POST", "/p/upload", host=HOST, headers=[
            "Content-Length: %d" % n, "Expect: 100-continue"]))
        try:
            r = c.read_head()
        except (socket.timeout, rt.ConnClosed) as ex:
            r = ex
        t.eq(getattr(r, "status", r), 100, "Expect: 100-continue: a 100 before the body is sent")
        if getattr(r, "status", None) == 100:
            c.send(body)
            r = c.response()
            t.eq(r.status, 200, "Expect: final status")
            if r.status == 200:
                j = r.json()
                t.eq((j["body_len"], j["body_sha256"]), (n, up.pattern_sha(n, 1)), "Expect: body upstream")
    t.eq(e.b1.expects - expects0, 1, "Expect: the upstream saw the Expect header")
    got = []
    for _ in range(5):      # the 417 and the upstream's close race in the proxy
        with Client(e.a.port, timeout=rt.scaled(3)) as c:
            c.send(rt.request("POST", "/p/expect-reject", host=HOST, headers=[
                "Content-Length: %d" % n, "Expect: 100-continue"]))
            try:
                r = c.read_head()
                got.append((r.status, r.header("X-Backend")))
            except socket.timeout:
                got.append("no answer in time")
            except rt.ConnClosed:
                got.append("closed, %s, no byte" % ("reset" if c.reset else "FIN"))
    t.eq(got, [(417, "b1")] * 5,
         "Expect: the upstream's 417 (then its close) is relayed, with no 100 before it, 5 times")


def part_keepalive(t, e):
    conns0, reqs0 = e.b1.counts()
    with Client(e.a.port) as c:
        st = [c.request("GET", "/p/echo").status for _ in range(50)]
    conns1, reqs1 = e.b1.counts()
    t.eq(st, [200] * 50, "keep-alive: 50 requests on one client connection")
    t.check(conns1 - conns0 <= 1, "keep-alive: one client connection, 50 requests: %d backend "
            "connections" % (conns1 - conns0))
    t.eq(reqs1 - reqs0, 50, "keep-alive: backend requests")
    st = []
    for _ in range(5):
        with Client(e.a.port) as c:
            st += [c.request("GET", "/p/echo").status for _ in range(10)]
    conns2, _ = e.b1.counts()
    t.eq(st, [200] * 50, "keep-alive: 5 client connections in turn")
    t.check(conns2 - conns1 <= 1, "keep-alive: 5 client connections in turn: %d backend "
            "connections" % (conns2 - conns1))
    out = {}

    def worker(i):
        try:
            with Client(e.a.port) as c:
                out[i] = [c.request("GET", "/p/echo").status for _ in range(10)]
        except Exception as ex:  # noqa: BLE001
            out[i] = repr(ex)
    ths = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(rt.scaled(20))
    conns3, _ = e.b1.counts()
    t.eq(out, {i: [200] * 10 for i in range(4)}, "keep-alive: 4 client connections at once")
    t.check(conns3 - conns2 <= 4, "keep-alive: 4 client connections at once: %d backend "
            "connections" % (conns3 - conns2))


def part_round_robin(t, e):
    with Client(e.a.port) as c:
        names = []
        for _ in range(20):
            r = c.request("GET", "/two/echo")
            names.append(r.header("X-Backend") if r.status == 200 else r.status)
    t.eq(sorted(set(names), key=str), ["b1", "b2"], "round robin: the backends answering")
    t.check(all(a != b for a, b in zip(names, names[1:])), "round robin: alternation: %s" % names)


def part_slow_reader(t, e):
    s = e.a
    rss0 = s.rss_kib()
    sent0 = e.b1.sent
    peak = [rss0]
    with Client(s.port, rcvbuf=64 << 10, timeout=rt.scaled(30)) as c:
        c.send(rt.request("GET", "/p/bytes/%d" % SLOW, host=HOST))
        r = c.read_head()
        t.eq(r.status, 200, "slow reader: status")
        h = hashlib.sha256()
        got = 0
        end = time.monotonic() + 2.0
        while time.monotonic() < end:          # ~3 MB/s
            d = c.take(64 << 10)
            if not d:
                break
            h.update(d)
            got += len(d)
            peak[0] = max(peak[0], s.rss_kib())
            time.sleep(0.02)
        time.sleep(0.5)
        ahead = (e.b1.sent - sent0) - got
        print("slow reader: the backend is %d KiB ahead of the client" % (ahead >> 10))
        t.check(ahead <= INFLIGHT_MAX, "slow reader: the backend is %d MiB ahead of the client "
                "(max %d): no backpressure" % (ahead >> 20, INFLIGHT_MAX >> 20))
        peak[0] = max(peak[0], s.rss_kib())
        nxt = [got + (16 << 20)]
        while got < SLOW:
            d = c.take(SLOW - got)
            if not d:
                break
            h.update(d)
            got += len(d)
            if got >= nxt[0]:
                peak[0] = max(peak[0], s.rss_kib())
                nxt[0] += 16 << 20
    t.eq((got, h.hexdigest()), (SLOW, up.pattern_sha(SLOW)), "slow reader: length, sha256")
    print("slow reader: proxy RSS %d KiB -> peak %d KiB" % (rss0, peak[0]))
    if not VG:
        t.check(peak[0] - rss0 <= RSS_MAX_KIB, "slow reader: proxy RSS grew %d KiB (max %d)"
                % (peak[0] - rss0, RSS_MAX_KIB))


def part_slow_upstream(t, e):
    """A client uploads SLOW bytes as fast as it can to an upstream that
    reads slowly at first: the proxy holds the client back."""
    s = e.a
    rss0 = s.rss_kib()
    recv0 = e.b1.received
    peak = [rss0]
    sent = [0]
    with Client(s.port, timeout=rt.scaled(30)) as c:
        def sender():
            c.send(rt.request("POST", "/p/slow-upload", host=HOST,
                              headers=["Content-Length: %d" % SLOW]))
            for piece in up.pattern_chunks(SLOW, 1, chunk=256 << 10):
                c.send(piece)
                sent[0] += len(piece)
        th = threading.Thread(target=lambda: _quiet(sender), daemon=True)
        th.start()
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            peak[0] = max(peak[0], s.rss_kib())
            time.sleep(0.05)
        ahead = sent[0] - (e.b1.received - recv0)
        print("slow upstream: the client is %d KiB ahead of the upstream" % (ahead >> 10))
        t.check(ahead <= INFLIGHT_MAX, "slow upstream: the client is %d MiB ahead of the upstream "
                "(max %d): no backpressure" % (ahead >> 20, INFLIGHT_MAX >> 20))
        while th.is_alive():
            peak[0] = max(peak[0], s.rss_kib())
            th.join(0.1)
        r = c.response()
    t.eq(r.status, 200, "slow upstream: status")
    if r.status == 200:
        j = r.json()
        t.eq((j["body_len"], j["body_sha256"]), (SLOW, up.pattern_sha(SLOW, 1)),
             "slow upstream: length, sha256 upstream")
    print("slow upstream: proxy RSS %d KiB -> peak %d KiB" % (rss0, peak[0]))
    if not VG:
        t.check(peak[0] - rss0 <= RSS_MAX_KIB, "slow upstream: proxy RSS grew %d KiB (max %d)"
                % (peak[0] - rss0, RSS_MAX_KIB))


def part_websocket(t, e):
    if not e.ws:
        return
    for tls in (False, True):
        with Client(tls_or_plain(e.a, tls), tls=tls) as c:
            what = "websocket (%s)" % ("TLS" if tls else "plaintext")
            guard(t, what, ws_session, t, c, "/ws/echo", what)


def part_nginx(t, e):
    if not e.nginx:
        return
    with Client(e.a.port, timeout=rt.scaled(20)) as c:
        r = c.request("GET", "/nginx/small.txt")
        t.eq((r.status, r.body), (200, b"small file\n"), "nginx: a small file")
        r = c.request("GET", "/nginx/big.bin", keep=False)
        t.eq((r.status, r.n, r.sha), (200, MID, up.pattern_sha(MID, 5)), "nginx: a %d MiB file"
             % (MID >> 20))
    with Client(e.a.port, timeout=rt.scaled(20)) as c:
        # nginx answers before it has read (discarded) the body: send it
        # from a thread while the response is read.
        th = threading.Thread(target=lambda: _quiet(send_upload, c, "/nginx/upload", MID),
                              daemon=True)
        th.start()
        r = c.response()
        t.eq((r.status, r.body), (200, b"uploaded\n"), "nginx: an upload answered by return 200")
        th.join(rt.scaled(20))
        t.check(not th.is_alive(), "nginx: the upload's body was all taken")
    with Client(e.a.port) as c:
        r = c.request("GET", "/nginx/small.txt")
        t.eq(r.status, 200, "nginx: served after the upload")


def _quiet(fn, *a):
    try:
        fn(*a)
    except OSError:
        pass


# --------------------------------------------------------------------------
# Server B: failures


def fail_case(t, s, target, want, what, method="GET", body=b"", timeout=None, took=None):
    """One request on a fresh connection that must get status `want`;
    exactly one log line. Returns the response."""
    mark = s.mark()
    t0 = time.monotonic()
    with Client(s.port, timeout=rt.scaled(timeout or 5)) as c:
        try:
            r = c.request(method, target, body=body)
        except (rt.ConnClosed, socket.timeout) as ex:
            r = None
            t.check(False, "%s: no response: %r" % (what, ex))
        dt = time.monotonic() - t0
        if r:
            t.eq(r.status, want, "%s: status" % what)
        if took and r:
            t.check(took[0] <= dt <= rt.scaled(took[1]), "%s: answered after %.2f s, want %g..%g"
                    % (what, dt, took[0], took[1]))
        one_log_line(t, s, mark, what, c.local_port)
    return r


def cut_case(t, s, target, what, wait):
    """The upstream sends a head and part of the body, then fails: the
    client gets that head, an incomplete body and a closed connection
    within `wait` s; one log line."""
    mark = s.mark()
    with Client(s.port, timeout=rt.scaled(wait + 3)) as c:
        c.send(rt.request("GET", target, host=HOST))
        r = c.read_head()
        t.eq(r.status, 200, "%s: the head went through" % what)
        c.read_body(r)
        t.check(not r.complete, "%s: the client sees an incomplete response (%r)" % (what, r))
        t.check(c.eof, "%s: the client connection is closed within %g s" % (what, rt.scaled(wait + 3)))
        one_log_line(t, s, mark, what, c.local_port)


def bad_chunk_case(t, s):
    """A bad first chunk: a 502, or, if the head went out first, a cut."""
    mark = s.mark()
    with Client(s.port) as c:
        try:
            r = c.request("GET", "/evil/bad-chunk")
        except rt.ConnClosed as ex:
            r = ex
        t.check(getattr(r, "status", None) == 502
                or (getattr(r, "status", None) == 200 and not r.complete and c.closed_by_peer(3)),
                "upstream bad chunk: a 502 or a cut response, got %r" % r)
        one_log_line(t, s, mark, "upstream bad chunk", c.local_port)


def part_failures(t, e):
    s = e.b
    for mode, what in (("reset-head", "reset in the head"), ("close-head", "closed before a byte"),
                       ("two-cl", "two Content-Lengths"), ("te-cl", "Transfer-Encoding + Content-Length"),
                       ("bad-status", "bad status line")):
        guard(t, "upstream " + what, fail_case, t, s, "/evil/" + mode, 502, "upstream " + what)
    guard(t, "upstream bad chunk", bad_chunk_case, t, s)
    guard(t, "reset mid-body", cut_case, t, s, "/evil/reset-body", "upstream reset mid-body", 1)
    guard(t, "reset mid-chunked", cut_case, t, s, "/evil/reset-chunked",
          "upstream reset mid-chunked-body", 1)
    guard(t, "reset mid-close-delimited", cut_case, t, s, "/evil/reset-close",
          "upstream reset mid-close-delimited-body", 1)
    guard(t, "stall mid-body", cut_case, t, s, "/evil/stall-body",
          "upstream stalled mid-body (--idle-timeout)", IDLE + 1)
    guard(t, "stall", fail_case, t, s, "/evil/stall", 504, "no response head within --proxy-timeout",
          timeout=PT + 5, took=(PT - 0.1, PT + 1.5))
    guard(t, "refused", fail_case, t, s, "/dead/echo", 502, "connect refused")
    guard(t, "marked down", fail_case, t, s, "/dead/echo", 503, "the only server is marked down")
    if e.blackhole:
        guard(t, "connect timeout", fail_case, t, s, "/blackhole/echo", 504, "connect timeout",
              timeout=CT + 5, took=(CT - 0.1, CT + 1.5))
    with Client(s.port, timeout=rt.scaled(5)) as c:
        r = c.request("GET", "/slow/slow-head/0.2")
        t.eq(r.status, 200, "a response head in time")
    guard(t, "slow head", fail_case, t, s, "/slow/slow-head/%g" % (PT + 2), 504,
          "a slow response head", timeout=PT + 5, took=(PT - 0.1, PT + 1.5))
    with Client(s.port) as c:
        r = c.request("GET", "/evil/no-reason")
        t.eq((r.status, r.reason, r.raw[:15], r.body), (200, "", b"HTTP/1.1 200 \r\n", b"ok"),
             "an empty reason phrase (RFC 9112 section 4) is passed on, with the SP before it")
    with Client(s.port) as c:
        r = c.request("GET", "/evil/ok")
        t.eq((r.status, r.body), (200, b"ok"), "the evil upstream's ok after the failures")
    t.check(s.alive(), "server B alive after the failures")


def part_health(t, e):
    s = e.b
    mark = s.mark()
    with Client(s.port) as c:
        st = []
        for _ in range(20):
            r = c.request("GET", "/half/echo")
            st.append((r.status, r.header("X-Backend")))
    t.eq(st, [(200, "b1")] * 20, "one server of two refuses: every request served by the other")
    lines = [l for l in s.lines_since(mark) if ":%d" % e.dead2 in l]
    print("passive health: %d log lines name the dead server: %r" % (len(lines), lines))
    t.check(len(lines) <= 2, "passive health: the dead server is tried again and again (%d log "
            "lines name it over 20 requests)" % len(lines))
    if e.blackhole:
        with Client(s.port, timeout=rt.scaled(CT + 5)) as c:
            st = []
            for _ in range(6):
                r = c.request("GET", "/half2/echo")
                st.append((r.status, r.header("X-Backend")))
        t.eq(st, [(200, "b1")] * 6, "one server of two times out on connect: every request served "
             "by the other")


def part_retry(t, e):
    s = e.b
    with Client(s.port) as c:
        r1 = c.request("GET", "/flaky/a")
        r2 = c.request("GET", "/flaky/b")
    t.eq([(r.status, r.body) for r in (r1, r2)], [(200, b"ok")] * 2,
         "a GET that fails on a reused upstream connection is retried")
    t.eq((e.flaky.conns, len(e.flaky.requests)), (2, 3),
         "the retry: upstream connections, requests")
    mark = s.mark()
    conns0 = e.flaky.conns
    with Client(s.port) as c:
        r = c.request("POST", "/flaky/c", body=b"p" * 1000)
        port = c.local_port
    posts = e.flaky.methods().count("POST")
    t.eq(posts, 1, "a POST body is never replayed")
    t.check(r.status == 502 or (r.status == 200 and e.flaky.conns > conns0),
            "POST on a failing reused connection: 502 (or a fresh connection), got %d" % r.status)
    if r.status == 502:
        one_log_line(t, s, mark, "POST on a failing reused connection", port)
    # DELETE (idempotent, no body) is retried; PUT with a body is not replayed.
    with Client(s.port) as c:
        r0 = c.request("GET", "/flaky/warm")     # leaves a pooled connection
        r1 = c.request("DELETE", "/flaky/d")
        conns0 = e.flaky.conns
        r2 = c.request("GET", "/flaky/warm2") if r1.status == 200 else None
        r3 = c.request("PUT", "/flaky/p", body=b"q" * 1000)
    t.eq((r0.status, r1.status), (200, 200), "DELETE on a failing reused connection is retried")
    t.eq(e.flaky.methods().count("PUT"), 1, "a PUT body is never replayed")
    t.check(r3.status == 502 or (r3.status == 200 and e.flaky.conns > conns0),
            "PUT on a failing reused connection: 502 (or a fresh connection), got %d (%r)"
            % (r3.status, r2))


# --------------------------------------------------------------------------
# Servers C, D, E


def part_keepalive_limit(t, e):
    """--proxy-keepalive 1: three exchanges at once, then one idle
    upstream connection kept."""
    s = e.f
    base = au.settled_fd_count(s)
    out = {}

    def one(i):
        try:
            with Client(s.port, timeout=rt.scaled(5)) as c:
                out[i] = c.request("GET", "/p/slow-head/0.3").status
        except Exception as ex:  # noqa: BLE001
            out[i] = repr(ex)
    ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(3)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(rt.scaled(10))
    t.eq(out, {0: 200, 1: 200, 2: 200}, "--proxy-keepalive 1: three at once")
    n = au.settled_fd_count(s)
    t.eq(n - base, 1, "--proxy-keepalive 1: idle upstream connections kept (descriptors over "
         "the idle server's)")


def part_keepalive_zero(t, e):
    conns0, _ = e.b1.counts()
    with Client(e.c.port) as c:
        st = [(c.request("GET", "/hello").status, c.request("GET", "/x/echo").status)
              for _ in range(5)]
        r = c.request("GET", "/hello")
    conns1, _ = e.b1.counts()
    t.eq(st, [(200, 200)] * 5, "--proxy-keepalive 0: statuses")
    t.eq(conns1 - conns0, 11, "--proxy-keepalive 0: one backend connection a request")
    t.eq(r.header("X-Backend"), "b1", 'a "/" route takes /hello too')


def part_proxy_protocol(t, e):
    for s, v in ((e.d, 1), (e.e, 2)):
        for i in range(2):
            with Client(s.port) as c:
                r = c.request("GET", "/pp-ka")
                t.eq(r.status, 200, "PROXY v%d #%d: status" % (v, i))
                if r.status != 200:
                    continue
                j = r.json() or {}
                got = (j.get("version"), j.get("src"), j.get("src_port"), j.get("dst"),
                       j.get("dst_port"))
                t.eq(got, (v, "127.0.0.1", c.local_port, "127.0.0.1", s.port),
                     "PROXY v%d #%d: version, source, destination" % (v, i))
                if v == 1:
                    t.eq(j.get("proto"), "TCP4", "PROXY v1: protocol")
                else:
                    t.eq((j.get("ver_cmd"), j.get("fam")), (0x21, 0x11), "PROXY v2: command, family")


# --------------------------------------------------------------------------


PARTS = [
    ("routing", part_routing), ("headers", part_headers), ("framing", part_framing),
    ("pipeline", part_pipeline), ("client abort", part_client_abort), ("expect", part_expect), ("keepalive", part_keepalive), ("round robin", part_round_robin),
    ("websocket", part_websocket), ("nginx", part_nginx), ("integrity", part_integrity),
    ("slow reader", part_slow_reader), ("slow upstream", part_slow_upstream), ("failures", part_failures), ("health", part_health),
    ("retry", part_retry), ("keepalive 0", part_keepalive_zero),
    ("keepalive 1", part_keepalive_limit),
    ("proxy protocol", part_proxy_protocol),
]


def test(t):
    rt.need_binary(rt.RINGTLS_BIN, "ringtls")
    e = Env()
    try:
        start_servers(e)
        only = os.environ.get("RTLS_PROXY_PARTS")
        for name, fn in PARTS:
            if only and name not in only.split(","):
                continue
            t0 = time.monotonic()
            try:
                fn(t, e)
            except Exception:  # noqa: BLE001 - one part's error is one failed check
                t.check(False, "part %s: exception:\n%s" % (name, traceback.format_exc()))
            print("part %s: %.1f s" % (name, time.monotonic() - t0), flush=True)
        for s, n in ((e.a, "A"), (e.b, "B"), (e.c, "C"), (e.d, "D"), (e.e, "E"), (e.f, "F")):
            tu.stop_ok(t, s, "server " + n)
            if os.environ.get("RTLS_TEST_VERBOSE"):
                print("---- log of server %s\n%s---- end" % (n, s.log()))
    finally:
        for x in ("b1", "b2", "b3", "uds", "named", "v6", "evil", "flaky", "pp_evil"):
            if getattr(e, x, None):
                getattr(e, x).close()


if __name__ == "__main__":
    tu.main(test, watchdog=240)
