#!/usr/bin/env python3
"""Metrics and health (issue 17 section 4): `ringtls serve --admin-listen`.

Server A (--listen, --tls-listen, --admin-listen, two reactors, short
handshake and header deadlines, a --proxy route to a refusing port, one
that never answers and one that answers garbage, a --root):
- /healthz is 200 "ok" (GET and HEAD); /status.json parses, with the
  built-in page's facts; /metrics is text format 0.0.4 that Debian's
  `promtool check metrics` passes (SKIP of that one check, never a pass,
  without promtool), every sample under its HELP and TYPE;
- counters rise by exactly what was done: N GETs (2xx, accepted, closed
  by the peer), N 404s (4xx), full TLS 1.3 and 1.2 handshakes and ones
  resumed with a session ticket (by version and cipher), kernel TLS
  offloaded or fallen back once per direction and handshake, TLS
  handshake failures by reason (plain HTTP, peer closed, timeout), the
  HANDSHAKE and HEADER timeouts, the proxy's 502 (refused, invalid
  response), 503 (no server up) and 504 (timeout);
- /proc/net/tls_stat passed through line by line, or no such lines;
- the admin paths are not special on the other listeners (404 there, or
  --root's files); routes and --root do not apply on the admin listener
  (404); POST there is 405, an unknown method 501, as everywhere.
Server B (--ktls off): a TLS 1.3 KeyUpdate from openssl s_client counts
one received and, as the server answers it, one sent.
Server C (one reactor, --header-timeout 2s): a flood on the admin
listener: 200 connections send part of a request head and never finish,
while a client asks for /metrics flat out on one keep-alive connection:
- a well-behaved client, a fresh connection every 100 ms, gets every
  /metrics (parsed) from the admin listener and every /hello from the
  plaintext one, none slower than 1 s;
- every slow connection is cut at the header deadline (a 408, then the
  end, between 2 s - 0.5 and 2 s + 3 after its bytes), one log line each,
  and ringtls_timeouts_total{kind="header"} rises by exactly 200;
- the server's CPU while the 200 only wait: under 5% of a core; while
  the flood and the scraping go on: at most 2 ms a /metrics answered
  (about 0.07 ms in a Debug build, 0.25 ms with ASan); RSS growth at most 16 MiB (ASan, its
  quarantine capped at 8 MiB, and valgrind: 40 MiB); afterwards its
  descriptors are back to the baseline."""
import json
import select
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import rtls_test as rt
import abuse_util as au
import tls_util as tu

ADMIN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(admin\)")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
N = 5
CIPHER_LABEL = {"TLS_AES_128_GCM_SHA256": "AES-128-GCM", "TLS_AES_256_GCM_SHA384": "AES-256-GCM",
                "TLS_CHACHA20_POLY1305_SHA256": "CHACHA20-POLY1305",
                "ECDHE-ECDSA-AES128-GCM-SHA256": "AES-128-GCM",
                "ECDHE-ECDSA-AES256-GCM-SHA384": "AES-256-GCM",
                "ECDHE-ECDSA-CHACHA20-POLY1305": "CHACHA20-POLY1305"}


def parse(text):
    """{(name, ((label, value), ...)): value} of an exposition, and the
    problems found: a sample without its family's HELP and TYPE before it,
    a counter not named _total, a line that is no sample."""
    samples, problems, help_, type_ = {}, [], set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            help_.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            f = line.split()
            type_[f[2]] = f[3]
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            problems.append("not a sample: %r" % line)
            continue
        name = m.group(1)
        if name not in help_ or name not in type_:
            problems.append("%s: no HELP or TYPE before it" % name)
        if type_.get(name) == "counter" and not name.endswith("_total"):
            problems.append("%s: a counter not named _total" % name)
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        samples[(name, labels)] = float(m.group(3))
    return samples, problems


class Scrape:
    """GET /metrics on one keep-alive connection to the admin listener, so
    scraping adds no connection; each scrape's own 200 shows in the next
    one's 2xx count (`fetches` says how many came since a snapshot)."""

    def __init__(self, port):
        self.conn = rt.Conn(("127.0.0.1", port))
        self.fetches = 0

    def raw(self):
        self.conn.send(rt.request("GET", "/metrics"))
        r = self.conn.read_response()
        self.fetches += 1
        return r

    def get(self):
        return parse(self.raw().body.decode())[0]

    def close(self):
        self.conn.close()


def val(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def total(m, name, **labels):
    """The sum over every sample of name whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))


def wait_for(scrape, cond, timeout=5.0):
    """Scrapes until cond(metrics) holds (bounded); the last scrape."""
    end = time.monotonic() + rt.scaled(timeout)
    while True:
        m = scrape.get()
        if cond(m) or time.monotonic() >= end:
            return m
        time.sleep(0.05)


def delta(t, before, after, name, want, what, **labels):
    t.eq(val(after, name, **labels) - val(before, name, **labels), want,
         "%s: %s%s rises by" % (what, name, labels or ""))


# --------------------------------------------------------------------------
# Upstreams for the proxy's errors


def silent_upstream():
    """A listening socket that never accepts: connects succeed (the
    backlog), no response ever comes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


class GarbageUpstream:
    """Answers every connection with bytes that are no HTTP response."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.settimeout(2)
                c.recv(65536)
                c.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


# --------------------------------------------------------------------------
# Server A


def test_health(t, a):
    r = rt.get(a, "/healthz")
    t.eq((r.status, r.body), (200, b"ok"), "admin GET /healthz")
    t.check((r.header("Content-Type") or "").startswith("text/plain"),
            "admin /healthz is text/plain: %r" % r.header("Content-Type"))
    r = rt.get(a, "/healthz", method="HEAD")
    t.eq((r.status, r.header("Content-Length"), r.body), (200, "2", b""), "admin HEAD /healthz")
    r = rt.get(a, "/healthz?probe=1")
    t.eq(r.status, 200, "admin /healthz?query")


def test_status_json(t, a):
    r = rt.get(a, "/status.json")
    t.eq(r.status, 200, "admin /status.json status")
    t.eq(r.header("Content-Type"), "application/json", "admin /status.json Content-Type")
    try:
        j = json.loads(r.body)
    except ValueError as e:
        t.check(False, "/status.json parses: %s: %r" % (e, r.body[:300]))
        return
    ver = rt.run_cmd([rt.RINGTLS_BIN, "--version"]).stdout.decode().split()[-1]
    t.eq(j.get("version"), ver, "/status.json version")
    c = j.get("connection") or {}
    t.eq((c.get("transport"), c.get("tls_version"), c.get("resumed"), c.get("records_sent_by")),
         ("plaintext TCP", None, None, "none"), "/status.json: the asking connection's facts")
    for k in ("cipher", "alpn", "sni", "client_certificate", "records_received_by"):
        t.check(k in c, "/status.json connection has %s" % k)
    for k in ("uptime_seconds", "tls_sessions_userspace", "connections_open",
              "connections_accepted"):
        t.check(isinstance(j.get(k), (int, float)), "/status.json %s is a number: %r" % (k, j.get(k)))
    t.check(j.get("connections_open", 0) >= 1, "/status.json counts its own connection open")


def test_format(t, scrape):
    r = scrape.raw()
    t.eq(r.status, 200, "admin /metrics status")
    t.eq(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8",
         "/metrics Content-Type (text format 0.0.4)")
    text = r.body.decode()
    m, problems = parse(text)
    t.eq(problems, [], "/metrics: every sample under its HELP and TYPE, counters _total")
    for name in ("ringtls_connections_accepted_total", "ringtls_connections_open",
                 "ringtls_http_requests_total", "ringtls_tls_handshakes_total",
                 "ringtls_ktls_offloaded_total", "ringtls_timeouts_total",
                 "ringtls_proxy_upstream_errors_total", "ringtls_tls_key_updates_total"):
        t.check(any(n == name for n, _ in m), "/metrics has %s" % name)
    promtool = shutil.which("promtool")
    if not promtool:
        print("SKIP (one check): promtool not installed (scripts/deps.sh test: prometheus)")
    else:
        p = subprocess.run([promtool, "check", "metrics"], input=r.body, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=rt.scaled(30))
        t.eq((p.returncode, p.stdout.decode()), (0, ""), "promtool check metrics")
    # /proc/net/tls_stat, line by line, or nothing.
    kern = {k: v for (n, ls), v in m.items() if n == "ringtls_kernel_tls_stat" for _, k in ls}
    try:
        with open("/proc/net/tls_stat") as f:
            want = {l.split()[0]: float(l.split()[1]) for l in f if len(l.split()) == 2}
    except OSError:
        want = None
    if want is None:
        t.eq(kern, {}, "no /proc/net/tls_stat: no ringtls_kernel_tls_stat")
    else:
        t.eq(sorted(kern), sorted(want), "ringtls_kernel_tls_stat names /proc/net/tls_stat's")


def test_requests(t, a, scrape):
    m0 = scrape.get()
    f0 = scrape.fetches
    for _ in range(N):
        t.eq(rt.get(a, "/hello").status, 200, "GET /hello")
    for _ in range(N):
        t.eq(rt.get(a, "/nope").status, 404, "GET /nope")
    m1 = wait_for(scrape, lambda m: val(m, "ringtls_connections_open") ==
                  val(m0, "ringtls_connections_open"))
    what = "%d GETs and %d 404s, each on its own connection" % (N, N)
    # Each scrape's 200 is counted once it has been sent: m0's and those
    # of wait_for() before m1.
    delta(t, m0, m1, "ringtls_http_requests_total", N + scrape.fetches - f0, what,
          **{"class": "2xx"})
    delta(t, m0, m1, "ringtls_http_requests_total", N, what, **{"class": "4xx"})
    delta(t, m0, m1, "ringtls_http_requests_total", 0, what, **{"class": "5xx"})
    delta(t, m0, m1, "ringtls_connections_accepted_total", 2 * N, what)
    delta(t, m0, m1, "ringtls_connections_closed_total", 2 * N, what, reason="peer")
    t.check(val(m1, "ringtls_received_bytes_total") > val(m0, "ringtls_received_bytes_total") and
            val(m1, "ringtls_sent_bytes_total") > val(m0, "ringtls_sent_bytes_total"),
            "%s: bytes in and out rise" % what)


def tls_get(t, port, what, **kw):
    r, version, cipher, session, reused = tu.get(port, "/hello", **kw)
    t.eq(r.status, 200, "%s: GET /hello" % what)
    return version, cipher, session, reused


def test_tls(t, a, scrape, https):
    m0 = scrape.get()
    ctx13 = tu.client_ctx(min_version=tu.ssl.TLSVersion.TLSv1_3)
    ctx12 = tu.client_ctx(max_version=tu.ssl.TLSVersion.TLSv1_2)
    ciphers = {}
    sessions = []
    for _ in range(N):
        version, cipher, session, reused = tls_get(t, https, "TLS 1.3 full", ctx=ctx13)
        t.eq((version, reused), ("TLSv1.3", False), "TLS 1.3 full handshake")
        ciphers[CIPHER_LABEL.get(cipher, "other")] = ciphers.get(CIPHER_LABEL.get(cipher, "other"), 0) + 1
        sessions.append(session)
    resumed = 0
    for s in sessions[:3]:
        version, cipher, _, reused = tls_get(t, https, "TLS 1.3 resumed", ctx=ctx13, session=s)
        t.check(reused, "TLS 1.3 with a session ticket resumes")
        resumed += bool(reused)
        ciphers[CIPHER_LABEL.get(cipher, "other")] = ciphers.get(CIPHER_LABEL.get(cipher, "other"), 0) + 1
    version, cipher, _, reused = tls_get(t, https, "TLS 1.2 full", ctx=ctx12)
    t.eq((version, reused), ("TLSv1.2", False), "TLS 1.2 full handshake")
    ciphers[CIPHER_LABEL.get(cipher, "other")] = ciphers.get(CIPHER_LABEL.get(cipher, "other"), 0) + 1
    m1 = wait_for(scrape, lambda m: val(m, "ringtls_connections_open") ==
                  val(m0, "ringtls_connections_open"))
    hs = "ringtls_tls_handshakes_total"
    delta(t, m0, m1, hs, N, "TLS 1.3 full", version="TLSv1.3", kind="full")
    delta(t, m0, m1, hs, resumed, "TLS 1.3 resumed", version="TLSv1.3", kind="resumed")
    delta(t, m0, m1, hs, 1, "TLS 1.2 full", version="TLSv1.2", kind="full")
    delta(t, m0, m1, hs, 0, "TLS 1.2", version="TLSv1.2", kind="resumed")
    for label, n in ciphers.items():
        delta(t, m0, m1, "ringtls_tls_handshake_ciphers_total", n, "handshakes by cipher",
              cipher=label)
    done = N + resumed + 1
    # --ktls auto: each direction of each handshake is either offloaded or
    # counted as a fallback with its reason, whatever this kernel can do.
    for d in ("tx", "rx"):
        moved = (val(m1, "ringtls_ktls_offloaded_total", direction=d) -
                 val(m0, "ringtls_ktls_offloaded_total", direction=d) +
                 total(m1, "ringtls_ktls_fallbacks_total", direction=d) -
                 total(m0, "ringtls_ktls_fallbacks_total", direction=d))
        t.eq(moved, done, "kTLS %s: offloaded + fallbacks = handshakes" % d)
    delta(t, m0, m1, "ringtls_connections_accepted_total", done, "TLS connections")


def test_tls_failures(t, a, scrape, https):
    m0 = scrape.get()
    with rt.Conn(("127.0.0.1", https)) as c:     # plain HTTP on the TLS port
        c.send(rt.request("GET", "/"))
        r = c.read_response()
        t.eq(r.status, 400, "plain HTTP on the TLS port is answered 400")
    c = rt.Conn(("127.0.0.1", https))           # a ClientHello cut short, then FIN
    c.send(tu.client_hello_bytes()[:20])
    c.close()
    with rt.Conn(("127.0.0.1", https)) as c:     # nothing at all: the handshake deadline
        t.check(c.closed_by_peer(timeout=5), "silent TLS client cut at the handshake deadline")
    m1 = wait_for(scrape, lambda m: val(m, "ringtls_connections_open") ==
                  val(m0, "ringtls_connections_open"))
    f = "ringtls_tls_handshake_failures_total"
    delta(t, m0, m1, f, 1, "plain HTTP on TLS", reason="plain_http")
    delta(t, m0, m1, f, 1, "peer closed mid-handshake", reason="peer_closed")
    delta(t, m0, m1, f, 1, "handshake deadline", reason="timeout")
    delta(t, m0, m1, "ringtls_timeouts_total", 1, "handshake deadline", kind="handshake")
    delta(t, m0, m1, "ringtls_connections_closed_total", 1, "handshake deadline", reason="timeout")
    delta(t, m0, m1, "ringtls_tls_handshakes_total", 0, "failed handshakes", version="TLSv1.3",
          kind="full")


def test_header_timeout(t, a, scrape):
    m0 = scrape.get()
    f0 = scrape.fetches
    with a.connect() as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        r = c.read_response()
        t.eq(r.status, 408, "a request head cut short: 408 at the header deadline")
    m1 = wait_for(scrape, lambda m: val(m, "ringtls_connections_open") ==
                  val(m0, "ringtls_connections_open"))
    delta(t, m0, m1, "ringtls_timeouts_total", 1, "header deadline", kind="header")
    delta(t, m0, m1, "ringtls_timeouts_total", 0, "header deadline", kind="idle")
    delta(t, m0, m1, "ringtls_http_requests_total", 1, "header deadline", **{"class": "4xx"})
    delta(t, m0, m1, "ringtls_http_requests_total", scrape.fetches - f0, "header deadline",
          **{"class": "2xx"})


def test_proxy_errors(t, a, scrape):
    m0 = scrape.get()
    r = rt.get(a, "/dead/x")
    t.eq(r.status, 502, "proxy to a refusing port: 502")
    r = rt.get(a, "/dead/x")
    t.eq(r.status, 503, "proxy to a server marked down: 503")
    r = rt.get(a, "/silent/x")
    t.eq(r.status, 504, "proxy to a server that never answers: 504")
    r = rt.get(a, "/garbage/x")
    t.eq(r.status, 502, "proxy to a server answering garbage: 502")
    m1 = wait_for(scrape, lambda m: val(m, "ringtls_connections_open") ==
                  val(m0, "ringtls_connections_open"))
    e = "ringtls_proxy_upstream_errors_total"
    delta(t, m0, m1, e, 1, "refused", status="502", cause="refused")
    delta(t, m0, m1, e, 1, "marked down", status="503", cause="unavailable")
    delta(t, m0, m1, e, 1, "no answer", status="504", cause="timeout")
    delta(t, m0, m1, e, 1, "garbage", status="502", cause="invalid_response")
    delta(t, m0, m1, "ringtls_http_requests_total", 4, "proxy errors", **{"class": "5xx"})
    delta(t, m0, m1, "ringtls_timeouts_total", 1, "no answer", kind="response")
    # refused, silent, garbage: three upstream connections, all ended.
    delta(t, m0, m1, "ringtls_connections_outbound_total", 3, "proxy errors")


def test_paths(t, a, admin):
    for p in ("/metrics", "/status.json"):  # (--root has a healthz: below)
        r = rt.get(a, p)
        t.eq(r.status, 404, "%s on the plaintext listener is not special" % p)
    r = rt.get(a, "/file.txt")
    t.eq((r.status, r.body), (200, b"a file\n"), "--root serves on the plaintext listener")
    for p in ("/file.txt", "/hello", "/", "/dead/x", "/metricsx", "/healthz/"):
        r = rt.get(admin, p)
        t.eq(r.status, 404, "admin listener: %s is 404 (no --root, no routes)" % p)
    for method, want in (("POST", 405), ("PUT", 405), ("DELETE", 405), ("BREW", 501)):
        with admin.connect() as c:
            c.send(rt.request(method, "/metrics", headers=("Content-Length: 0",)))
            r = c.read_response()
            t.eq(r.status, want, "admin listener: %s /metrics" % method)
            if want == 405:
                t.eq(r.header("Allow"), "GET, HEAD", "admin listener: %s Allow" % method)


class Addr:
    """rt.get's server argument for a port."""

    def __init__(self, port):
        self.addr = ("127.0.0.1", port)

    def connect(self, timeout=rt.IO_TIMEOUT):
        return rt.Conn(self.addr, timeout)


def server_a(t):
    base, root = rt.make_root({"file.txt": "a file\n", "healthz": "not special\n"})
    silent = silent_upstream()
    garbage = GarbageUpstream()
    dead = rt.free_port()
    a = rt.Server("--tls-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                  "--state-dir", rt.temp_dir("rtls-state-"), "--root", root,
                  "--handshake-timeout", "1s", "--header-timeout", "1s",
                  "--proxy", "/dead=http://127.0.0.1:%d" % dead,
                  "--proxy", "/silent=http://127.0.0.1:%d" % silent.getsockname()[1],
                  "--proxy", "/garbage=http://127.0.0.1:%d" % garbage.port,
                  "--proxy-timeout", "1s", threads=2)
    https, admin_port = a.wait_ports(tu.HTTPS_LISTEN_RE, ADMIN_RE, timeout=rt.START_TIMEOUT)
    admin = Addr(admin_port)
    scrape = Scrape(admin_port)
    try:
        test_health(t, admin)
        test_status_json(t, admin)
        test_format(t, scrape)
        test_requests(t, a, scrape)
        test_tls(t, a, scrape, https)
        test_tls_failures(t, a, scrape, https)
        test_header_timeout(t, a, scrape)
        test_proxy_errors(t, a, scrape)
        test_paths(t, a, admin)
        r = rt.get(a, "/healthz")
        t.eq((r.status, r.body), (200, b"not special\n"), "--root's healthz on the plaintext listener")
    finally:
        scrape.close()
        garbage.close()
        silent.close()
    tu.stop_ok(t, a, "server A")


def key_update(port):
    """openssl s_client: once the handshake is done, its K command (a
    KeyUpdate with update_requested), then a request, so that the server
    writes and its own KeyUpdate goes first. s_client's output."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out = b""
    end = time.monotonic() + rt.scaled(10)
    steps = [(b"Verify return code", b"K\n"),
             (b"KEYUPDATE", b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"),
             (b"Hello, World!", None)]
    try:
        os.set_blocking(p.stdout.fileno(), False)
        while steps and time.monotonic() < end:
            r, _, _ = select.select([p.stdout], [], [], 0.1)
            if r:
                out += p.stdout.read() or b""
            if steps[0][0] in out:
                if steps[0][1]:
                    p.stdin.write(steps[0][1])
                    p.stdin.flush()
                steps.pop(0)
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=rt.scaled(5))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        out += p.stdout.read() or b""
    return out.decode("utf-8", "replace")


def server_b(t):
    """A KeyUpdate both ways, with the records in userspace (--ktls off)."""
    if not tu.have("openssl"):
        print("SKIP (one part): no openssl client for the KeyUpdate")
        return
    b = tu.TlsServer("--admin-listen", "127.0.0.1:0", "--ktls", "off")
    admin_port, = b.wait_ports(ADMIN_RE, timeout=rt.START_TIMEOUT)
    scrape = Scrape(admin_port)
    try:
        m0 = scrape.get()
        out = key_update(b.port)
        t.check("KEYUPDATE" in out and "Hello, World!" in out,
                "s_client sent a KeyUpdate, then a request answered: %r" % out[-1500:])
        m1 = wait_for(scrape, lambda m: val(m, "ringtls_connections_open") ==
                      val(m0, "ringtls_connections_open"))
        k = "ringtls_tls_key_updates_total"
        delta(t, m0, m1, k, 1, "a peer KeyUpdate (update_requested)", direction="received")
        delta(t, m0, m1, k, 1, "the KeyUpdate answering it", direction="sent")
        delta(t, m0, m1, "ringtls_ktls_offloaded_total", 0, "--ktls off", direction="tx")
        t.eq(total(m1, "ringtls_ktls_fallbacks_total"), 0, "--ktls off: no fallback counted")
    finally:
        scrape.close()
    tu.stop_ok(t, b, "server B")


# --------------------------------------------------------------------------
# Server C: a flood on the admin listener

SLOW_N = 20 if rt.UNDER_VALGRIND else 200
HDR_T = 2.0                  # server C's --header-timeout
CUT_EARLY, CUT_LATE = 0.5, 3.0
# ASan: its quarantine capped at 8 MiB (rt.asan_quarantine), and its
# shadow; valgrind: memcheck's queue of freed blocks (20 MB).
FLOOD_RSS_MAX_KIB = (40 if rt.ASAN or rt.UNDER_VALGRIND else 16) * 1024
CPU_PER_SCRAPE = 0.002       # s of server CPU a /metrics answered
GOOD_MAX = 1.0               # s, the well-behaved client's slowest answer
PARTIAL = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"


class Slow(threading.Thread):
    """SLOW_N connections to port that send PARTIAL and wait. ends: per
    connection, (seconds from its bytes to the end, what came before it)
    or None while open."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.socks, self.t_sent, self.got = [], [], []
        for _ in range(SLOW_N):
            so = socket.create_connection(("127.0.0.1", port), timeout=rt.IO_TIMEOUT)
            so.sendall(PARTIAL)
            self.t_sent.append(time.monotonic())
            so.setblocking(False)
            self.socks.append(so)
            self.got.append(b"")
        self.ends = [None] * SLOW_N
        self.deadline = time.monotonic() + rt.scaled(HDR_T + CUT_LATE + 1)

    def open_count(self):
        return sum(1 for e in self.ends if e is None)

    def run(self):
        while self.open_count() and time.monotonic() < self.deadline:
            live = [i for i, e in enumerate(self.ends) if e is None]
            r, _, _ = select.select([self.socks[i] for i in live], [], [], 0.1)
            for so in r:
                i = self.socks.index(so)
                try:
                    d = so.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    d = b""
                if d:
                    self.got[i] += d
                    continue
                self.ends[i] = (time.monotonic() - self.t_sent[i], self.got[i])
                so.close()

    def close(self):
        for so in self.socks:
            so.close()


class Hammer(threading.Thread):
    """GET /metrics on one keep-alive connection, flat out, until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.n = 0
        self.errors = []

    def run(self):
        scrape = Scrape(self.port)
        try:
            while not self.stop.is_set():
                r = scrape.raw()
                if r.status != 200:
                    self.errors.append(r)
                self.n += 1
        except (OSError, rt.ConnClosed, AssertionError) as e:
            self.errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            scrape.close()


def good_round(t, c, admin, slowest):
    """The well-behaved client: /metrics from the admin listener and
    /hello from the plaintext one, each on a fresh connection. False if
    either was wrong."""
    ok = True
    for srv, target in ((admin, "/metrics"), (c, "/hello")):
        t0 = time.monotonic()
        try:
            r = rt.get(srv, target, timeout=rt.scaled(5))
            good = r.status == 200 and (
                parse(r.body.decode())[0].get(("ringtls_connections_open", ())) is not None
                if target == "/metrics" else r.body == b"Hello, World!")
        except (OSError, rt.ConnClosed, AssertionError, ValueError) as e:
            r, good = "%s: %s" % (type(e).__name__, e), False
        slowest[0] = max(slowest[0], time.monotonic() - t0)
        if not good:
            t.check(False, "admin flood: the well-behaved client's %s: %r" % (target, r))
            ok = False
    return ok


def server_c(t):
    au.raise_nofile(4 * SLOW_N + 256)
    with rt.asan_quarantine(8):
        c = au.DualServer("--admin-listen", "127.0.0.1:0", "--header-timeout", "%gs" % HDR_T)
    admin_port, = c.wait_ports(ADMIN_RE, timeout=rt.START_TIMEOUT)
    admin = Addr(admin_port)
    scrape = Scrape(admin_port)
    slowest = [0.0]
    slow = hammer = None
    try:
        for _ in range(3):
            good_round(t, c, admin, slowest)
        m0 = scrape.get()
        fd0, rss0 = au.settled_fd_count(c), c.rss_kib()
        mark = c.mark()
        slow = Slow(admin_port)
        slow.start()
        # The 200 only wait: the server should not spin on them.
        time.sleep(0.2)
        cpu0, w0 = c.cpu_seconds(), time.monotonic()
        time.sleep(0.5)
        idle_cpu, idle_wall = c.cpu_seconds() - cpu0, time.monotonic() - w0
        hammer = Hammer(admin_port)
        cpu0 = c.cpu_seconds()
        hammer.start()
        rounds = good = 0
        rss_peak = rss0
        while slow.is_alive() and slow.open_count():
            rounds += 1
            good += good_round(t, c, admin, slowest)
            rss_peak = max(rss_peak, c.rss_kib())
            time.sleep(0.1)
        hammer.stop.set()
        hammer.join(rt.scaled(5))
        cpu = c.cpu_seconds() - cpu0
        scrapes = hammer.n + rounds
        slow.join(rt.scaled(5))
        rss_peak = max(rss_peak, c.rss_kib())
        cuts = [e[0] for e in slow.ends if e]
        print("admin flood: %d slow connections cut after %.2f..%.2f s; %d scrapes flat out, %d "
              "well-behaved rounds (slowest answer %.3f s); server CPU %.3f s over %.2f s idle, "
              "%.3f s (%.2f ms a scrape) under the flood; RSS +%d KiB"
              % (len(cuts), min(cuts or [0]), max(cuts or [0]), hammer.n, rounds, slowest[0],
                 idle_cpu, idle_wall, cpu, 1000 * cpu / max(scrapes, 1), rss_peak - rss0))
        t.eq(good, rounds, "admin flood: the well-behaved client's rounds all right")
        t.check(rounds >= 5, "admin flood: the well-behaved client got %d rounds in" % rounds)
        t.check(slowest[0] <= rt.scaled(GOOD_MAX), "admin flood: the well-behaved client's "
                "slowest answer %.3f s (max %g)" % (slowest[0], rt.scaled(GOOD_MAX)))
        t.check(hammer.n >= 20 and not hammer.errors, "admin flood: /metrics flat out: %d "
                "answers, errors %r" % (hammer.n, hammer.errors[:3]))
        late = [(i, e) for i, e in enumerate(slow.ends)
                if e is None or not (HDR_T - CUT_EARLY <= e[0] <= rt.scaled(HDR_T + CUT_LATE))
                or not e[1].startswith(b"HTTP/1.1 408 ")]
        t.check(not late, "admin flood: every slow connection gets a 408 and its end %g..%g s "
                "after its bytes; not: %d, e.g. %r" % (HDR_T - CUT_EARLY, rt.scaled(HDR_T + CUT_LATE),
                                                       len(late), late[:3]))
        t.check(idle_cpu <= 0.05 * idle_wall, "admin flood: server CPU %.3f s over %.2f s while "
                "%d connections wait (max 5%% of a core)" % (idle_cpu, idle_wall, SLOW_N))
        t.check(cpu <= rt.scaled(CPU_PER_SCRAPE) * max(scrapes, 1),
                "admin flood: server CPU %.3f s for %d scrapes (max %g ms each)"
                % (cpu, scrapes, 1000 * rt.scaled(CPU_PER_SCRAPE)))
        t.check(rss_peak - rss0 <= FLOOD_RSS_MAX_KIB, "admin flood: server RSS grew by %d KiB "
                "(max %d)" % (rss_peak - rss0, FLOOD_RSS_MAX_KIB))
        lines = [l for l in c.lines_since(mark) if " 408 " in l]
        t.eq(len(lines), SLOW_N, "admin flood: 408 log lines, one a slow connection")
        m1 = scrape.get()
        delta(t, m0, m1, "ringtls_timeouts_total", SLOW_N, "admin flood", kind="header")
        t.eq(au.wait_fd_count(c, fd0), fd0, "admin flood: the server's descriptors back to the "
             "baseline")
    finally:
        if hammer:
            hammer.stop.set()
        if slow:
            slow.close()
        scrape.close()
    tu.stop_ok(t, c, "server C")


def test(t):
    rt.need_binary(rt.RINGTLS_BIN, "ringtls")
    server_a(t)
    server_b(t)
    server_c(t)


if __name__ == "__main__":
    rt.main(test)
