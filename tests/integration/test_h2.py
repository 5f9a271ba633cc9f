#!/usr/bin/env python3
"""HTTP/2 (issue 16): the same answers as HTTP/1.1, over TLS (ALPN h2)
and over prior-knowledge h2c on the plaintext listener, with real clients.

Server A (--root, --admin-listen, --access-log), with curl --http2
(verified against the self-signed certificate in --state-dir) and curl
--http2-prior-knowledge:
- /hello; files under the root by sha256 (a 50 MB one too); HEAD;
  ranges (206 with the right bytes, a suffix range, 416); If-None-Match
  and If-Modified-Since (304, and 200 when they do not match); 404; a
  directory without its slash (301); a symlink out of the root (403);
  POST (405 with Allow); /metrics on the admin listener over h2c.
- 100 streams at once on one connection: Node's http2 client checks each
  body's sha256 and that the responses overlapped, the access log that
  they all came on one connection; nghttp -nas (TLS) and h2load -n100
  -c1 -m100 (h2c) count them; h2load -n 5000 -c 4 -m 10: all 2xx.
- Node's http2 client fetches the 50 MB file over TLS.
- The access log says HTTP/2.0 (and alpn=h2 over TLS).
Server B (no root): the built-in page says HTTP/2 and ALPN h2 (HTTP/1.1
for an HTTP/1.1 request).
Server C (--no-http2): curl --http2 gets HTTP/1.1 by ALPN; the h2c
preface gets an HTTP/1.1 505 and a close; the server goes on.
Server D: SIGTERM in the middle of two slow downloads (curl --http2
--limit-rate over TLS; a raw frame client over h2c that sees the GOAWAY
itself): GOAWAY NO_ERROR naming the open stream, both files whole, exit 0.
Servers E (--max-body-bytes 100, --log-level info) and F, raw frames:
a POST with a Content-Length over the limit gets 413; one without, whose
body goes past it, gets its 405 before the RST_STREAM NO_ERROR; h2load
-n2000 -c1 -m100 of POSTs (all 405): at most 2 info log lines; SIGTERM
between a stream's HEADERS and its CONTINUATION: the GOAWAY names it, it
is answered, the connection closes at once (not at --header-timeout); a
plaintext preface split across SIGTERM: its response, a GOAWAY and a
close at once (not at --shutdown-timeout), exit 0.

The raw client uses hpack and hyperframe from Debian's python3-h2
(scripts/deps.sh); a python3 without them runs this file again under
/usr/bin/python3 where that one has them, else that part is skipped."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

SYSTEM_PYTHON = "/usr/bin/python3"


def _h2_modules():
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("hpack", "hyperframe"))


if (not _h2_modules() and not os.environ.get("RTLS_H2_REEXEC") and os.access(SYSTEM_PYTHON, os.X_OK)
        and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)):
    os.environ["RTLS_H2_REEXEC"] = "1"
    os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])

import rtls_test as rt  # noqa: E402
import tls_util as tu  # noqa: E402

MIB = 1 << 20
BIG = (4 if rt.UNDER_VALGRIND else 50) * MIB      # "a 50 MB file"
SLOW = (2 if rt.UNDER_VALGRIND else 8) * MIB      # downloaded across SIGTERM
# bytes/s, each client. Under valgrind 4 s a download: at 2 s one client
# was done before the other, its TLS handshake slower, was under way (CI).
SLOW_RATE = (MIB // 2) if rt.UNDER_VALGRIND else 4 * MIB
LOAD_N = 500 if rt.UNDER_VALGRIND else 5000
NSTREAMS = 100
MTIME = 1_600_000_000                               # the files' mtime
HTTP_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(http\)")
ADMIN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(admin\)")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2Server(rt.Process):
    """ringtls serve with a plaintext, a TLS and (admin=True) an admin
    listener on ephemeral ports; not waited for until .ready()."""

    def __init__(self, *args, root=None, admin=False):
        self.state_dir = rt.temp_dir("rtls-state-")
        argv = [rt.RINGTLS_BIN, "serve", "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                "--state-dir", self.state_dir, "--threads", "1"]
        if admin:
            argv += ["--admin-listen", "127.0.0.1:0"]
        if root:
            argv += ["--root", root]
        super().__init__(argv + [str(a) for a in args], name="ringtls")
        self.admin = admin
        self.port = self.tls_port = self.admin_port = None

    def ready(self):
        res = [HTTP_RE, tu.HTTPS_LISTEN_RE] + ([ADMIN_RE] if self.admin else [])
        ports = self.wait_ports(*res, timeout=rt.START_TIMEOUT)
        self.port, self.tls_port = ports[:2]
        if self.admin:
            self.admin_port = ports[2]
        return self

    @property
    def cert(self):
        return os.path.join(self.state_dir, "selfsigned-cert.pem")

    def url(self, transport, path):
        if transport == "tls":
            return "https://localhost:%d%s" % (self.tls_port, path)
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def curl_args(self, transport):
        """curl's options for HTTP/2 on one of the listeners: TLS verified
        against the self-signed certificate, or h2c by prior knowledge."""
        if transport == "tls":
            return ["--http2", "--cacert", self.cert, "--resolve", "localhost:%d:127.0.0.1" % self.tls_port]
        return ["--http2-prior-knowledge"]


class CurlResult:
    def __init__(self, rc, version, status, headers, body_path, err):
        self.rc, self.version, self.status, self.headers = rc, version, status, headers
        self.body_path, self.err = body_path, err

    @property
    def body(self):
        with open(self.body_path, "rb") as f:
            return f.read()

    def sha256(self):
        return file_sha256(self.body_path)

    def __repr__(self):
        return "<curl rc=%d HTTP/%s %s %r %s>" % (self.rc, self.version, self.status, self.headers,
                                                  self.err[-300:])


_scratch = []


def scratch(name):
    if not _scratch:
        _scratch.append(rt.temp_dir("rtls-h2-out-"))
    return os.path.join(_scratch[0], name)


_ncurl = [0]


def curl(srv, transport, path, *args, timeout=30):
    """One request with curl over HTTP/2; the body goes to a file."""
    _ncurl[0] += 1
    hdr, body = scratch("h%d" % _ncurl[0]), scratch("b%d" % _ncurl[0])
    p = rt.run_cmd(["curl", "-sS", "--max-time", "%g" % rt.scaled(timeout), *srv.curl_args(transport),
                    "-D", hdr, "-o", body, "-w", "%{http_version} %{http_code}", *args,
                    srv.url(transport, path)], timeout=timeout + 5)
    version, _, status = p.stdout.decode().partition(" ")
    headers = {}
    if os.path.exists(hdr):
        with open(hdr, "rb") as f:
            for line in f.read().decode("latin-1").split("\r\n")[1:]:
                k, sep, v = line.partition(":")
                if sep:
                    headers[k.strip().lower()] = v.strip()
    if not os.path.exists(body):
        open(body, "wb").close()
    return CurlResult(p.returncode, version, int(status or 0), headers, body,
                      p.stderr.decode("utf-8", "replace"))


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def big_bytes(n):
    """n bytes that no two parts of share (so a misplaced frame shows)."""
    return rt.pattern_bytes(MIB, seed=7) + os.urandom(n - MIB)


# --------------------------------------------------------------------------
# Server A: files, over TLS and h2c


def test_files(t, a, files, transport):
    w = "[%s]" % transport
    r = curl(a, transport, "/hello")
    t.eq((r.rc, r.version, r.status, r.body), (0, "2", 200, tu.HELLO), "%s /hello over HTTP/2 (%r)" % (w, r))
    data = files["a.bin"]
    r = curl(a, transport, "/a.bin")
    t.eq((r.version, r.status, r.sha256(), r.headers.get("content-length")),
         ("2", 200, rt.sha256(data), str(len(data))), "%s /a.bin: 200, sha256, content-length" % w)
    etag, lm = r.headers.get("etag"), r.headers.get("last-modified")
    t.check(etag and lm and r.headers.get("accept-ranges") == "bytes",
            "%s /a.bin: ETag, Last-Modified, Accept-Ranges: %r" % (w, r.headers))
    t.check("connection" not in r.headers and "keep-alive" not in r.headers
            and "transfer-encoding" not in r.headers,
            "%s no connection-specific fields (RFC 9113 §8.2.2): %r" % (w, r.headers))
    r = curl(a, transport, "/a.bin", "-I")   # -I: the head goes to -o too
    t.eq((r.version, r.status, r.body.endswith(b"\r\n\r\n"), r.headers.get("content-length")),
         ("2", 200, True, str(len(data))), "%s HEAD /a.bin: no body" % w)
    r = curl(a, transport, "/big.bin", timeout=60)
    t.eq((r.rc, r.status, os.path.getsize(r.body_path), r.sha256()),
         (0, 200, BIG, files["big.sha256"]), "%s /big.bin (%d MiB): whole, sha256 (%s)"
         % (w, BIG >> 20, r.err[-200:]))
    os.unlink(r.body_path)

    # Ranges (RFC 9110 §14).
    for rng, lo, hi in (("10-19", 10, 19), ("-100", len(data) - 100, len(data) - 1),
                        ("65530-", 65530, len(data) - 1)):
        r = curl(a, transport, "/a.bin", "-r", rng)
        t.eq((r.status, r.body, r.headers.get("content-range")),
             (206, data[lo:hi + 1], "bytes %d-%d/%d" % (lo, hi, len(data))), "%s range %s: 206" % (w, rng))
    r = curl(a, transport, "/big.bin", "-r", "%d-%d" % (BIG - MIB - 5, BIG - MIB + 4))
    t.eq((r.status, r.sha256()), (206, files["big.mid.sha256"]), "%s range across the 50 MB file's parts" % w)
    r = curl(a, transport, "/a.bin", "-r", "%d-" % len(data))
    t.eq((r.status, r.headers.get("content-range")), (416, "bytes */%d" % len(data)),
         "%s range past the end: 416" % w)

    # Conditional requests (RFC 9110 §13).
    r = curl(a, transport, "/a.bin", "-H", "If-None-Match: %s" % etag)
    t.eq((r.status, r.body, r.headers.get("etag")), (304, b"", etag), "%s If-None-Match: its ETag: 304" % w)
    r = curl(a, transport, "/a.bin", "-H", 'If-None-Match: "other"')
    t.eq((r.status, r.sha256()), (200, rt.sha256(data)), "%s If-None-Match: another ETag: 200" % w)
    r = curl(a, transport, "/a.bin", "-H", "If-Modified-Since: %s" % lm)
    t.eq((r.status, r.body), (304, b""), "%s If-Modified-Since: its Last-Modified: 304" % w)
    r = curl(a, transport, "/a.bin", "-H", "If-Modified-Since: Sat, 12 Sep 2020 00:00:00 GMT")
    t.eq((r.status, r.sha256()), (200, rt.sha256(data)), "%s If-Modified-Since: before the mtime: 200" % w)

    r = curl(a, transport, "/missing")
    t.eq((r.version, r.status), ("2", 404), "%s /missing: 404" % w)
    r = curl(a, transport, "/dir")
    t.eq((r.status, r.headers.get("location")), (301, "/dir/"), "%s /dir: 301 to /dir/" % w)
    r = curl(a, transport, "/dir/")
    t.eq((r.status, r.body), (200, files["dir/index.html"]), "%s /dir/: its index.html" % w)
    r = curl(a, transport, "/out")
    t.eq(r.status, 403, "%s a symlink out of the root: 403" % w)
    r = curl(a, transport, "/a.bin", "-d", "x=1")
    t.eq((r.status, r.headers.get("allow")), (405, "GET, HEAD"), "%s POST: 405 with Allow" % w)
    r = curl(a, transport, "/a.bin", "-X", "DELETE")
    t.eq((r.status, r.headers.get("allow")), (405, "GET, HEAD"), "%s DELETE: 405 with Allow" % w)


def test_admin(t, a):
    r = rt.run_cmd(["curl", "-sS", "--max-time", "%g" % rt.scaled(10), "--http2-prior-knowledge",
                    "-w", "\n%{http_version} %{http_code}", "http://127.0.0.1:%d/metrics" % a.admin_port])
    body, _, tail = r.stdout.rpartition(b"\n")
    t.eq(tail, b"2 200", "admin /metrics over h2c: HTTP/2 200 (%r)" % r.stderr[-200:])
    t.check(b"ringtls_http_requests_total" in body, "admin /metrics over h2c: the metrics: %r" % body[:200])


NODE_CLIENT = r"""
// node CLIENT BASE CA|- PATH...: one HTTP/2 session, every path requested
// at once; prints JSON: per path status, length and sha256, and the most
// responses that were under way at the same time.
const http2 = require('http2'), crypto = require('crypto'), fs = require('fs');
const [base, ca, ...paths] = process.argv.slice(2);
const opts = ca === '-' ? {} : { ca: fs.readFileSync(ca), servername: 'localhost' };
const s = http2.connect(base, opts);
const out = { results: {}, maxActive: 0, alpn: null };
let active = 0, left = paths.length;
s.on('error', e => { console.log(JSON.stringify({ error: String(e) })); process.exit(2); });
s.on('connect', () => { out.alpn = s.alpnProtocol; });
function done() {
  if (--left) return;
  out.remoteSettings = s.remoteSettings;
  console.log(JSON.stringify(out));
  s.close();
}
for (const p of paths) {
  const req = s.request({ ':path': p });
  const h = crypto.createHash('sha256');
  let n = 0, status = 0, started = false;
  req.on('response', hd => { status = hd[':status']; started = true;
                             out.maxActive = Math.max(out.maxActive, ++active); });
  req.on('data', d => { h.update(d); n += d.length; });
  req.on('end', () => { if (started) active--;
                        out.results[p] = { status, len: n, sha256: h.digest('hex') }; done(); });
  req.on('error', e => { out.results[p] = { error: String(e) }; done(); });
  req.end();
}
"""


def node_fetch(t, a, transport, paths, timeout=60):
    """Node's http2 client on one session: the parsed JSON, or None."""
    script = scratch("client.js")
    if not os.path.exists(script):
        rt.write_file(script, NODE_CLIENT)
    base = ("https://127.0.0.1:%d" % a.tls_port) if transport == "tls" else ("http://127.0.0.1:%d" % a.port)
    p = rt.run_cmd(["node", script, base, a.cert if transport == "tls" else "-", *paths], timeout=timeout)
    try:
        return json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        t.check(False, "node http2 client [%s]: rc=%d %r %r" % (transport, p.returncode, p.stdout[-300:],
                                                               p.stderr[-500:]))
        return None


def alog_lines(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace").splitlines()


def test_streams(t, a, files, names, parts, alog):
    """NSTREAMS streams at once on one connection, each body by sha256."""
    paths = ["/" + n for n in names]
    if parts.need("node", "100 streams with Node's http2 client"):
        for transport in ("h2c", "tls"):
            w = "[%s]" % transport
            before = len(alog_lines(alog))
            got = node_fetch(t, a, transport, paths)
            if got is None or got.get("error"):
                t.check(False, "%s node: %r" % (w, got))
                continue
            res = got["results"]
            bad = [p for p in paths
                   if res.get(p, {}).get("status") != 200 or res[p].get("sha256") != rt.sha256(files[p[1:]])]
            t.eq(bad, [], "%s %d streams on one session: each 200 with its sha256" % (w, len(paths)))
            t.eq(got["remoteSettings"].get("maxConcurrentStreams"), NSTREAMS,
                 "%s SETTINGS_MAX_CONCURRENT_STREAMS" % w)
            # The server answers each stream as its HEADERS come: the
            # responses are under way together, their DATA interleaved.
            print("%s node: %d responses under way at once" % (w, got["maxActive"]), flush=True)
            t.check(got["maxActive"] >= NSTREAMS // 2,
                    "%s responses under way at once: %d of %d" % (w, got["maxActive"], len(paths)))
            if transport == "tls":
                t.eq(got["alpn"], "h2", "%s node: ALPN h2" % w)
            # One connection, as the server saw it: one client port.
            lines = [l for l in alog_lines(alog)[before:] if re.search(r'"GET /s\d+\.bin HTTP/2\.0" 200 ', l)]
            ports = {re.search(r"remote_port=(\d+)", l).group(1) for l in lines}
            t.eq((len(lines), len(ports)), (len(paths), 1),
                 "%s access log: %d lines, one client port" % (w, len(paths)))
        r = node_fetch(t, a, "tls", ["/big.bin"])
        if r and not r.get("error"):
            t.eq((r["results"]["/big.bin"].get("status"), r["results"]["/big.bin"].get("len"),
                  r["results"]["/big.bin"].get("sha256")), (200, BIG, files["big.sha256"]),
                 "[tls] node http2 client: /big.bin whole")
    if parts.need("nghttp", "100 streams with nghttp -nas"):
        # nghttp does not verify the certificate.
        urls = ["https://127.0.0.1:%d%s" % (a.tls_port, p) for p in paths]
        p = rt.run_cmd(["nghttp", "-nas", *urls], timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        rows = re.findall(r"^\s*(\d+)\s+\S+\s+\S+\s+\S+\s+(\d{3})\s+\S+\s+(/s\d+\.bin)$", out, re.M)
        t.eq((p.returncode, len(rows), {st for _, st, _ in rows}, len({sid for sid, _, _ in rows})),
             (0, NSTREAMS, {"200"}, NSTREAMS),
             "[tls] nghttp -nas, %d URIs: %d streams, all 200 (%r)" % (NSTREAMS, NSTREAMS, out[-300:]))
    if parts.need("h2load", "h2load"):
        p = rt.run_cmd(["h2load", "-n%d" % NSTREAMS, "-c1", "-m%d" % NSTREAMS, a.url("h2c", "/s5.bin")],
                       timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        t.check(p.returncode == 0 and "%d succeeded, 0 failed, 0 errored" % NSTREAMS in out
                and "status codes: %d 2xx" % NSTREAMS in out,
                "[h2c] h2load -n%d -c1 -m%d: all 2xx: %r" % (NSTREAMS, NSTREAMS, out[-600:]))
        p = rt.run_cmd(["h2load", "-n%d" % LOAD_N, "-c4", "-m10", a.url("tls", "/hello").replace(
            "localhost", "127.0.0.1")], timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        t.check(p.returncode == 0 and "Application protocol: h2" in out
                and "%d succeeded, 0 failed, 0 errored" % LOAD_N in out
                and "status codes: %d 2xx" % LOAD_N in out,
                "[tls] h2load -n%d -c4 -m10: all 2xx over h2: %r" % (LOAD_N, out[-600:]))


def test_access_log(t, alog):
    lines = alog_lines(alog)
    tls = [l for l in lines if '"GET /hello HTTP/2.0" 200 13 ' in l and "alpn=h2 " in l]
    h2c = [l for l in lines if '"GET /hello HTTP/2.0" 200 13 ' in l and "tls_version=- " in l]
    t.check(tls and h2c, "access log: GET /hello HTTP/2.0 over TLS (alpn=h2) and h2c: %r" % lines[:3])
    t.check(any('"POST /a.bin HTTP/2.0" 405 ' in l for l in lines), "access log: the POST's 405")
    t.check(any('"GET /a.bin HTTP/2.0" 206 10 ' in l for l in lines), "access log: a range's 206")


# --------------------------------------------------------------------------
# Servers B and C: the built-in page, --no-http2


def test_page(t, b):
    for transport, alpn in (("tls", "h2"), ("h2c", "-")):
        r = curl(b, transport, "/")
        cells = tu.page_cells(r.body)
        t.eq((r.version, r.status, cells.get("http"), cells.get("alpn")), ("2", 200, "HTTP/2", alpn),
             "[%s] built-in page: HTTP/2, ALPN %s" % (transport, alpn))
    r = curl(b, "tls", "/", "--http1.1")
    cells = tu.page_cells(r.body)
    t.eq((r.version, cells.get("http"), cells.get("alpn")), ("1.1", "HTTP/1.1", "http/1.1"),
         "[tls] built-in page over HTTP/1.1 says so")


def test_no_http2(t, c):
    r = curl(c, "tls", "/hello", "-v")
    t.check(r.rc == 0 and r.version == "1.1" and r.status == 200 and r.body == tu.HELLO
            and "ALPN: server accepted http/1.1" in r.err,
            "--no-http2: curl --http2 falls back to HTTP/1.1: %r" % r)
    r = curl(c, "tls", "/", "--http1.1")
    t.eq(tu.page_cells(r.body).get("http"), "HTTP/1.1", "--no-http2: the page says HTTP/1.1")
    # Prior knowledge: the preface is an HTTP/1.1 request line with
    # version 2.0, refused as such, and the connection closed.
    r = curl(c, "h2c", "/hello")
    t.check(r.rc != 0 and r.status != 200, "--no-http2: curl --http2-prior-knowledge fails: %r" % r)
    with rt.Conn(("127.0.0.1", c.port)) as conn:
        conn.send(PREFACE)
        resp = conn.read_response()
        t.eq((resp.version, resp.status, resp.header("Connection")), ("HTTP/1.1", 505, "close"),
             "--no-http2: the h2c preface gets an HTTP/1.1 505")
        t.check(conn.closed_by_peer(), "--no-http2: then the connection closes")
    with rt.Conn(("127.0.0.1", c.port)) as conn:
        conn.send(rt.request("GET", "/hello"))
        t.eq(conn.read_response().body, tu.HELLO, "--no-http2: HTTP/1.1 on the plaintext port after it")
    t.check(c.alive(), "--no-http2: the server is running")


# --------------------------------------------------------------------------
# Server D: graceful shutdown


class RawH2:
    """A prior-knowledge h2c client on raw frames (hyperframe, hpack), which,
    unlike python-h2's state machine, goes on reading DATA after a GOAWAY.
    Downloads one path at about `rate` bytes/s by holding back its
    WINDOW_UPDATEs."""

    def __init__(self, port, path, rate):
        from hpack import Decoder, Encoder
        from hyperframe.frame import HeadersFrame, SettingsFrame
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=rt.scaled(10))
        self.rate, self.dec = rate, Decoder()
        self.status, self.goaway, self.rst, self.error = None, None, None, None
        self.body, self.nbody = hashlib.sha256(), 0
        self.ended = self.eof = False
        settings = SettingsFrame(0)
        settings.settings = {SettingsFrame.ENABLE_PUSH: 0}
        h = HeadersFrame(1)
        h.data = Encoder().encode([(":method", "GET"), (":scheme", "http"),
                                   (":authority", "127.0.0.1:%d" % port), (":path", path)])
        h.flags.add("END_HEADERS")
        h.flags.add("END_STREAM")
        self.sock.sendall(PREFACE + settings.serialize() + h.serialize())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            d = self.sock.recv(n - len(buf))
            if not d:
                raise EOFError
            buf += d
        return buf

    def _run(self):
        from hyperframe.frame import (DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame,
                                      SettingsFrame, WindowUpdateFrame)
        t0 = time.monotonic()
        try:
            while True:
                try:
                    head = self._read(9)
                except EOFError:
                    self.eof = True
                    return
                f, length = Frame.parse_frame_header(memoryview(head))
                f.parse_body(memoryview(self._read(length)))
                if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                    self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
                elif isinstance(f, PingFrame) and "ACK" not in f.flags:
                    self.sock.sendall(PingFrame(0, opaque_data=f.opaque_data, flags=["ACK"]).serialize())
                elif isinstance(f, GoAwayFrame):
                    self.goaway = (f.last_stream_id, f.error_code, self.nbody)
                elif isinstance(f, RstStreamFrame):
                    self.rst = f.error_code
                elif isinstance(f, HeadersFrame) and f.stream_id == 1:
                    self.status = dict(self.dec.decode(f.data)).get(":status")
                elif isinstance(f, DataFrame) and f.stream_id == 1:
                    self.body.update(f.data)
                    self.nbody += len(f.data)
                    if "END_STREAM" in f.flags:
                        self.ended = True
                    elif f.flow_controlled_length:
                        # Pace: give the window back when the rate allows.
                        wait = t0 + self.nbody / self.rate - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                        self.sock.sendall(WindowUpdateFrame(1, window_increment=f.flow_controlled_length).serialize()
                                          + WindowUpdateFrame(0, window_increment=f.flow_controlled_length)
                                          .serialize())
        except (OSError, ValueError, EOFError) as e:
            self.error = "%s: %s" % (type(e).__name__, e)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def test_shutdown(t, parts, have_raw):
    data = big_bytes(SLOW)
    _, root = rt.make_root({"slow.bin": data})
    d = H2Server(root=root, admin=False).ready()
    # The raw client first, curl once it is under way: with three
    # valgrind test files at a time, the raw client (pacing in a Python
    # thread) was slowed by the load enough that curl, started with it,
    # had the whole body before the raw client had its eighth.
    raw = RawH2(d.port, "/slow.bin", SLOW_RATE) if have_raw else None
    end = time.monotonic() + rt.scaled(10)
    while raw is not None and time.monotonic() < end and raw.nbody < SLOW // 16 and not raw.ended:
        time.sleep(0.05)
    cur = None
    if parts.need("curl", "curl --limit-rate across SIGTERM"):
        out = scratch("slow-curl")
        cur = subprocess.Popen(["curl", "-sS", "--max-time", "%g" % rt.scaled(60), *d.curl_args("tls"),
                                "--limit-rate", str(SLOW_RATE), "-o", out, "-w", "%{http_version} %{http_code}",
                                d.url("tls", "/slow.bin")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # SIGTERM once both are well under way, and far from done.
    end = time.monotonic() + rt.scaled(10)
    while time.monotonic() < end:
        got_curl = cur is None or (os.path.exists(out) and os.path.getsize(out) >= SLOW // 16)
        got_raw = raw is None or raw.nbody >= SLOW // 16
        if got_curl and got_raw:
            break
        time.sleep(0.05)
    t.check(got_curl and got_raw, "both downloads under way before SIGTERM")
    t.check((cur is None or cur.poll() is None) and (raw is None or not raw.ended),
            "neither download is done at SIGTERM (curl exit %r, %s bytes; raw: ended %s, %s "
            "bytes, error %s)" % (cur and cur.poll(), cur and os.path.exists(out) and
                                  os.path.getsize(out), raw and raw.ended, raw and raw.nbody,
                                  raw and raw.error))
    d.send_signal(signal.SIGTERM)
    rc = d.wait(rt.STOP_TIMEOUT + SLOW / SLOW_RATE + 10)
    t.eq(rc, 0, "SIGTERM during two HTTP/2 downloads: exit 0 once they are done")
    if rc is None:
        d.stop()
    if cur is not None:
        try:
            so, se = cur.communicate(timeout=rt.scaled(30))
        except subprocess.TimeoutExpired:
            cur.kill()
            so, se = cur.communicate()
        t.check(cur.returncode == 0 and so == b"2 200" and file_sha256(out) == rt.sha256(data),
                "[tls] curl --http2 --limit-rate across SIGTERM: rc=%s %r, whole file: %r"
                % (cur.returncode, so, se[-300:]))
    if raw is not None:
        raw.thread.join(rt.scaled(30))
        raw.close()
        t.eq(raw.status, "200", "[h2c] raw client: 200")
        t.check(raw.goaway is not None and raw.goaway[:2] == (1, 0) and raw.goaway[2] < SLOW,
                "[h2c] raw client: GOAWAY NO_ERROR with last stream 1, mid-body: %r" % (raw.goaway,))
        t.check(raw.ended and raw.nbody == SLOW and raw.body.hexdigest() == rt.sha256(data),
                "[h2c] raw client: the whole file after the GOAWAY (%d of %d bytes, ended %s, rst %r, %s)"
                % (raw.nbody, SLOW, raw.ended, raw.rst, raw.error))
        t.check(raw.eof and raw.error is None and raw.rst is None,
                "[h2c] raw client: then a clean close (eof %s, %s)" % (raw.eof, raw.error))
    log = d.log()
    t.check("SIGTERM" in log and "GOAWAY" not in log, "server log: SIGTERM, no GOAWAY error logged")


# --------------------------------------------------------------------------
# Servers E and F: the review's fixes (commit 4f2c9c3)


class H2Frames:
    """A prior-knowledge h2c connection on raw frames, read in the test's
    own thread: for frames in an order no client library sends (a header
    block split across a SIGTERM, a preface split across one)."""

    def __init__(self, port):
        from hpack import Decoder, Encoder
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=rt.scaled(5))
        self.enc, self.dec = Encoder(), Decoder()
        self.buf = b""

    def block(self, path, method="GET", extra=()):
        """A request's header block, encoded in the order it is sent."""
        return self.enc.encode([(":method", method), (":scheme", "http"), (":authority", "localhost"),
                                (":path", path)] + list(extra))

    @staticmethod
    def settings():
        from hyperframe.frame import SettingsFrame
        return SettingsFrame(0).serialize()

    @staticmethod
    def frame(kind, sid, data, *flags):
        """A HEADERS, CONTINUATION or DATA frame (kind: its hyperframe class name)."""
        import hyperframe.frame as hf
        f = getattr(hf, kind)(sid)
        f.data = data
        for fl in flags:
            f.flags.add(fl)
        return f.serialize()

    def send(self, data):
        self.sock.sendall(data)

    def events(self, timeout, until=None):
        """What comes, as short strings ("H1:405" for a HEADERS, "END1",
        "RST1(0)", "GOAWAY(3,0)", then "EOF" or "TIMEOUT"), until one
        matches `until`, the peer closes, or `timeout` seconds pass; and
        the seconds that took."""
        from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame
        out, t0 = [], time.monotonic()
        while True:
            while len(self.buf) >= 9 and len(self.buf) >= 9 + int.from_bytes(self.buf[:3], "big"):
                f, n = Frame.parse_frame_header(memoryview(self.buf[:9]))
                f.parse_body(memoryview(self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
                ev = None
                if isinstance(f, HeadersFrame):
                    ev = "H%d:%s" % (f.stream_id, dict(self.dec.decode(f.data)).get(":status"))
                elif isinstance(f, RstStreamFrame):
                    ev = "RST%d(%d)" % (f.stream_id, f.error_code)
                elif isinstance(f, GoAwayFrame):
                    ev = "GOAWAY(%d,%d)" % (f.last_stream_id, f.error_code)
                if ev:
                    out.append(ev)
                if "END_STREAM" in f.flags and isinstance(f, (DataFrame, HeadersFrame)):
                    out.append("END%d" % f.stream_id)
                if until and out and re.fullmatch(until, out[-1]):
                    return out, time.monotonic() - t0
            left = t0 + timeout - time.monotonic()
            if left <= 0:
                return out + ["TIMEOUT"], time.monotonic() - t0
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                d = b""
            if not d:
                return out + ["EOF"], time.monotonic() - t0
            self.buf += d

    def close(self):
        self.sock.close()


def log_count(srv, pattern):
    rx = re.compile(pattern)
    return sum(1 for l in srv.log_lines() if rx.search(l))


def test_review_fixes(t, parts, have_raw):
    """Server E (--max-body-bytes 100, --log-level info): a Content-Length
    over the limit is 413; a body past it is reset only after its response;
    one info line per connection for its error responses; then SIGTERM
    while a stream's header block waits for its CONTINUATION. Server F:
    SIGTERM while a plaintext preface is half in."""
    _, root = rt.make_root({"one.txt": b"one\n", "two.txt": b"two\n"})
    # Both deadlines far over what "promptly" allows below: a connection
    # they end was held, not finished.
    slow = ["--header-timeout", "%ds" % rt.scaled(8), "--shutdown-timeout", "%ds" % rt.scaled(8)]
    e = H2Server("--max-body-bytes", 100, "--log-level", "info", *slow, root=root)
    f = H2Server(*slow, root=root) if have_raw else None
    e.ready()
    if f:
        f.ready()
    prompt = rt.scaled(3)

    if have_raw:
        # A Content-Length over --max-body-bytes: 413 (RFC 9110 §15.5.14),
        # not a reset that leaves the client without an answer.
        c = H2Frames(e.port)
        c.send(PREFACE + c.settings()
               + c.frame("HeadersFrame", 1, c.block("/one.txt", "POST", [("content-length", "5000")]), "END_HEADERS")
               + c.frame("DataFrame", 1, b"x" * 5000, "END_STREAM"))
        ev, _ = c.events(rt.scaled(3), until=r"END1|RST1\(\d+\)")
        c.close()
        t.eq(ev[:2], ["H1:413", "END1"], "[h2c] POST with Content-Length 5000 over --max-body-bytes 100: 413")
        # No Content-Length, a body past the limit: the stream's response
        # (405) first, its RST_STREAM NO_ERROR only after (the reset had
        # overtaken the queued response).
        c = H2Frames(e.port)
        c.send(PREFACE + c.settings() + c.frame("HeadersFrame", 1, c.block("/one.txt", "POST"), "END_HEADERS")
               + c.frame("DataFrame", 1, b"x" * 5000))
        ev, _ = c.events(rt.scaled(3), until=r"RST1\(\d+\)")
        c.close()
        t.eq(ev, ["H1:405", "END1", "RST1(0)"],
             "[h2c] POST body past --max-body-bytes: its 405, then RST_STREAM NO_ERROR")

    if parts.need("h2load", "one log line for a connection's error responses (h2load)"):
        body = scratch("post10")
        rt.write_file(body, b"0123456789")
        n = 200 if rt.UNDER_VALGRIND else 2000
        before = log_count(e, r" info http 127\.0\.0\.1:\d+: 405 ")
        p = rt.run_cmd(["h2load", "-n%d" % n, "-c1", "-m100", "-d", body, e.url("h2c", "/hello")], timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        t.check(p.returncode == 0 and "%d done" % n in out and "status codes: 0 2xx, 0 3xx, %d 4xx" % n in out,
                "[h2c] h2load -n%d -c1 -m100 -d: all 405: %r" % (n, out[-600:]))
        got = log_count(e, r" info http 127\.0\.0\.1:\d+: 405 ") - before
        t.check(1 <= got <= 2, "%d 405s on one connection: %d info log lines (at most 2; the rest debug)" % (n, got))

    if have_raw:
        # Stream 3's header block is cut by SIGTERM: its HEADERS came
        # before the GOAWAY (which names it), its CONTINUATION after.
        # It is answered, and the connection ends with it.
        c = H2Frames(e.port)
        c.send(PREFACE + c.settings() + c.frame("HeadersFrame", 1, c.block("/one.txt"), "END_HEADERS", "END_STREAM"))
        blk = c.block("/two.txt")
        c.send(c.frame("HeadersFrame", 3, blk[:len(blk) // 2], "END_STREAM"))
        ev, _ = c.events(rt.scaled(5), until=r"END1")
        t.eq(ev, ["H1:200", "END1"], "[h2c] stream 1 answered while stream 3's header block is open")
        e.send_signal(signal.SIGTERM)
        ev, _ = c.events(rt.scaled(5), until=r"GOAWAY.*")
        t.eq(ev, ["GOAWAY(3,0)"], "[h2c] SIGTERM: GOAWAY NO_ERROR names stream 3")
        c.send(c.frame("ContinuationFrame", 3, blk[len(blk) // 2:], "END_HEADERS"))
        ev, secs = c.events(prompt)
        c.close()
        t.eq(ev, ["H3:200", "END3", "EOF"],
             "[h2c] stream 3's header block, whole after the GOAWAY: answered, then the close (%.1f s)" % secs)
    else:
        e.send_signal(signal.SIGTERM)
    rc = e.wait(3)
    t.eq(rc, 0, "server E: SIGTERM: exit 0 within 3 s")
    if rc is None:
        e.stop()

    if f:
        # A plaintext preface split across SIGTERM: once it is whole, the
        # connection is HTTP/2 and gets its GOAWAY (it had none: held to
        # --shutdown-timeout).
        c = H2Frames(f.port)
        c.send(PREFACE[:10])
        time.sleep(rt.scaled(0.3))
        f.send_signal(signal.SIGTERM)
        t.check(f.wait_log(r"SIGTERM", timeout=5), "server F: SIGTERM logged")
        c.send(PREFACE[10:] + c.settings() + c.frame("HeadersFrame", 1, c.block("/one.txt"),
                                                      "END_HEADERS", "END_STREAM"))
        ev, secs = c.events(prompt)
        c.close()
        t.check(ev[-1] == "EOF" and {"H1:200", "END1", "GOAWAY(1,0)"} <= set(ev),
                "[h2c] preface split across SIGTERM: 200, GOAWAY NO_ERROR, close in %.1f s: %r" % (secs, ev))
        rc = f.wait(3)
        t.eq(rc, 0, "server F: exit 0 within 3 s of that")
        if rc is None:
            f.stop()


# --------------------------------------------------------------------------


def test(t):
    rt.need_curl()
    # curl in this file must speak HTTP/2.
    if b"HTTP2" not in rt.run_cmd(["curl", "--version"]).stdout:
        raise rt.Skip("curl without HTTP/2 support")
    parts = tu.Parts()
    parts.ran += 1
    have_raw = _h2_modules()
    print("python: %s (hpack, hyperframe: %s)" % (sys.executable, have_raw), flush=True)
    if not have_raw:
        parts.skip("GOAWAY seen by a raw client: python3-h2 (hpack, hyperframe) not installed")

    base = rt.temp_dir("rtls-h2-")
    names = ["s%d.bin" % i for i in range(NSTREAMS)]
    files = {n: rt.pattern_bytes(1000 + i * 2039, seed=i) for i, n in enumerate(names)}
    files["a.bin"] = rt.pattern_bytes(100_000, seed=1000)
    files["dir/index.html"] = b"<p>dir</p>\n"
    _, root = rt.make_root(files, base=base)
    big = big_bytes(BIG)
    rt.write_file(os.path.join(root, "big.bin"), big)
    files["big.sha256"] = rt.sha256(big)
    files["big.mid.sha256"] = rt.sha256(big[BIG - MIB - 5:BIG - MIB + 5])
    del big
    for n in ("a.bin", "big.bin"):
        os.utime(os.path.join(root, n), (MTIME, MTIME))
    rt.write_file(os.path.join(base, "outside.txt"), "outside the root\n")
    os.symlink(os.path.join(base, "outside.txt"), os.path.join(root, "out"))
    alog = os.path.join(base, "access.log")

    a = H2Server("--access-log", alog, root=root, admin=True)
    b = H2Server()
    c = H2Server("--no-http2")
    a.ready(), b.ready(), c.ready()

    for transport in ("tls", "h2c"):
        test_files(t, a, files, transport)
    test_admin(t, a)
    test_streams(t, a, files, names, parts, alog)
    test_access_log(t, alog)
    test_page(t, b)
    test_no_http2(t, c)
    for s, what in ((a, "A"), (b, "B (built-in page)"), (c, "C (--no-http2)")):
        t.check(s.wait_log(r"http2 .*GOAWAY", timeout=0) is None,
                "server %s: no GOAWAY error logged: %r" % (what, s.wait_log(r"http2 .*GOAWAY", timeout=0)))
        tu.stop_ok(t, s, "server " + what)
    test_shutdown(t, parts, have_raw)
    test_review_fixes(t, parts, have_raw)
    parts.finish()


if __name__ == "__main__":
    tu.main(test)
