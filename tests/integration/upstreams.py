"""Upstream servers for the reverse proxy tests (test_proxy.py,
tests/kernel/proxy_suite.py). Stdlib only, except the websocket echo
server, which runs as its own process under a Python that has the
`websockets` package (python3-websockets).

Backend   http.server (ThreadingHTTPServer, HTTP/1.1 keep-alive) on TCP
          or AF_UNIX; counts connections, requests and body bytes sent.
          Every response carries X-Backend: NAME. The endpoint is found
          anywhere in the path (a proxy may keep or strip its prefix):
            .../bytes/N      N pattern bytes, Content-Length
            .../chunked/N    N pattern bytes, chunked, uneven chunk sizes
            .../close/N      N pattern bytes delimited by the close
            .../status/204, .../status/304
            .../slow-head/S  waits S seconds, then answers as the echo
            .../slow-upload  reads the body at ~3 MB/s for 2 s, then at full
                             speed; answers as the echo
            .../hop-headers  a response with hop-by-hop headers (Connection:
                             X-Secret, X-Secret, Keep-Alive) and X-End
            .../expect-reject  answers an Expect: 100-continue with 417
            anything else    the echo: the request as JSON (method, path,
                             headers in order, body length and sha256)
          The request body (Content-Length or chunked) is always read.
Evil      a raw-socket upstream for failure modes, chosen by the last
          path segment: reset-head, close-head, reset-body (a
          Content-Length body), reset-chunked, reset-close (a body
          delimited by the close, cut by a RST), stall,
          stall-body, two-cl, te-cl, bad-chunk, bad-status, 204-cl (a 204
          with a Content-Length), no-reason
          (a 200 with an empty reason phrase), ok (each
          closes the connection after), pp (the connection's PROXY header
          as JSON), pp-ka (the same, kept alive). flaky=True: answers the
          first request of each connection, closes on the next.
Flood     a raw upstream whose answer never ends (a prefix, then a filler
          forever), for the abuse tests (test_abuse_upstream.py).
Nginx     Debian's nginx in its own temporary prefix, one process, on a
          port picked by binding a socket first: /nginx/FILE serves files,
          /nginx/upload answers `return 200`.
ws-echo   `python3 upstreams.py ws-echo`: a websocket echo server on
          127.0.0.1:0; prints "listening on 127.0.0.1:PORT (ws)" to stderr.
"""
import hashlib
import http.server
import json
import os
import re
import select
import shutil
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

PERIOD = 1048573        # a prime: the pattern repeats with no power-of-two period
_blocks = {}
_sha_cache = {}


def _block(seed):
    if seed not in _blocks:
        out = bytearray()
        i = 0
        while len(out) < PERIOD:
            out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
            i += 1
        del out[PERIOD:]
        _blocks[seed] = bytes(out + out[:1 << 20])   # byte i is out[i % PERIOD]
    return _blocks[seed]


def pattern_chunks(n, seed=0, chunk=1 << 20):
    """The n bytes of the deterministic pattern, as memoryviews of <= chunk."""
    blk = memoryview(_block(seed))
    off = 0
    while off < n:
        k = min(chunk, n - off, 1 << 20)
        start = off % PERIOD
        yield blk[start:start + k]
        off += k


def pattern(n, seed=0):
    return b"".join(bytes(c) for c in pattern_chunks(n, seed))


def pattern_sha(n, seed=0):
    key = (n, seed)
    if key not in _sha_cache:
        h = hashlib.sha256()
        for c in pattern_chunks(n, seed):
            h.update(c)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def proxy_args(routes):
    """`ringtls serve` arguments for routes, a list of "PREFIX=URL[,URL...]"."""
    return [a for r in routes for a in ("--proxy", r)]


def shutdown_all(lock, socks):
    """Ends every accepted connection in socks (a list guarded by lock), so
    that the threads serving them return and the proxy sees them close."""
    with lock:
        socks = list(socks)
    for so in socks:
        try:
            so.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def set_rst(sock):
    """close() will send a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --------------------------------------------------------------------------
# Backend: http.server


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120
    disable_nagle_algorithm = True   # the head and the body are two writes

    def log_message(self, *args):
        pass

    def handle_expect_100(self):
        b = self.server.backend
        with b.lock:
            b.expects += 1
        if "/expect-reject" in self.path:
            b.record(self, 0, None)
            self.send_response_only(417)
            self.send_header("X-Backend", b.name)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def _read_body(self):
        b = self.server.backend
        h = hashlib.sha256()
        n = 0
        slow_until = time.monotonic() + 2.0 if "/slow-upload" in self.path else 0

        def took(d):
            with b.lock:
                b.received += len(d)
            if slow_until and time.monotonic() < slow_until:
                time.sleep(0.02)
        te = self.headers.get("Transfer-Encoding")
        if te is not None and "chunked" in te.lower():
            while True:
                line = self.rfile.readline(4096)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    d = self.rfile.read(min(left, 1 << 20))
                    if not d:
                        raise ConnectionError("body cut short")
                    h.update(d)
                    n += len(d)
                    left -= len(d)
                    took(d)
                self.rfile.read(2)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                d = self.rfile.read1(min(left, 64 << 10) if slow_until else min(left, 1 << 20))
                if not d:
                    raise ConnectionError("body cut short")
                h.update(d)
                n += len(d)
                left -= len(d)
                took(d)
        return n, h.hexdigest()

    def _head(self, status, headers=()):
        self.send_response(status)
        self.send_header("X-Backend", self.server.backend.name)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def _write(self, n, seed=0, chunked=False):
        b = self.server.backend
        sizes = (1, 100, 4096, 65543, 1 << 20)
        i = 0
        for c in pattern_chunks(n, seed, chunk=(1 << 20)):
            while len(c):
                if chunked:
                    k = min(len(c), sizes[i % len(sizes)])
                    i += 1
                    ext = b";x=1" if i == 2 else b""
                    self.wfile.write(b"%x%s\r\n" % (k, ext) + bytes(c[:k]) + b"\r\n")
                else:
                    k = len(c)
                    self.wfile.write(c)
                c = c[k:]
                with b.lock:
                    b.sent += k
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _dispatch(self):
        b = self.server.backend
        n, digest = self._read_body()
        b.record(self, n, digest)
        path = self.path
        head_only = self.command == "HEAD"
        m = re.search(r"/slow-head/([\d.]+)", path)
        if m:
            time.sleep(float(m.group(1)))
        m = re.search(r"/(bytes|chunked|close)/(\d+)", path)
        if m:
            kind, size = m.group(1), int(m.group(2))
            if kind == "bytes":
                self._head(200, [("Content-Type", "application/octet-stream"),
                                 ("Content-Length", str(size))])
                if not head_only:
                    self._write(size)
            elif kind == "chunked":
                self._head(200, [("Content-Type", "application/octet-stream"),
                                 ("Transfer-Encoding", "chunked")])
                if not head_only:
                    self._write(size, chunked=True)
            else:
                self._head(200, [("Content-Type", "application/octet-stream"),
                                 ("Connection", "close")])
                self.close_connection = True
                if not head_only:
                    self._write(size)
            return
        if "/hop-headers" in path:
            self._head(200, [("Connection", "X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "timeout=5"),
                             ("X-End", "1"), ("Content-Length", "2")])
            self.wfile.write(b"ok")
            return
        m = re.search(r"/status/(204|304)", path)
        if m:
            st = int(m.group(1))
            self._head(st, [("ETag", '"e1"')] if st == 304 else [])
            return
        body = json.dumps({"server": b.name, "method": self.command, "path": path,
                           "version": self.request_version, "headers": list(self.headers.items()),
                           "body_len": n, "body_sha256": digest}).encode()
        self._head(200, [("Content-Type", "application/json"),
                         ("Content-Length", str(len(body)))])
        if not head_only:
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _dispatch


class _UnixHandler(_Handler):
    disable_nagle_algorithm = False


class _TCPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)   # no getfqdn(): no DNS
        self.server_name, self.server_port = "localhost", self.server_address[1]

    def process_request(self, request, client_address):
        b = self.backend
        with b.lock:
            b.conns += 1
            b.socks.append(request)
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        pass


class _TCP6Server(_TCPServer):
    address_family = socket.AF_INET6


class _UnixServer(_TCPServer):
    address_family = socket.AF_UNIX
    allow_reuse_address = False

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", 0


class Backend:
    """A keep-alive HTTP/1.1 backend on 127.0.0.1:0 (family AF_INET6:
    ::1, unix=PATH: an AF_UNIX socket). conns: TCP connections accepted;
    requests: requests read; sent, received: body bytes written and read;
    expects: Expect: 100-continue seen; log: one dict per request
    (method, path, headers)."""

    def __init__(self, name="backend", family=socket.AF_INET, host=None, unix=None):
        self.name = name
        self.lock = threading.Lock()
        self.conns = self.requests = self.sent = self.received = self.expects = 0
        self.log = []
        self.socks = []
        if unix:
            self.httpd = _UnixServer(unix, _UnixHandler)
            self.url = "unix:" + unix
        elif family == socket.AF_INET6:
            self.httpd = _TCP6Server((host or "::1", 0), _Handler)
            self.port = self.httpd.server_address[1]
            self.url = "http://[%s]:%d" % (host or "::1", self.port)
        else:
            self.httpd = _TCPServer((host or "127.0.0.1", 0), _Handler)
            self.port = self.httpd.server_address[1]
            self.url = "http://%s:%d" % (host or "127.0.0.1", self.port)
        self.httpd.backend = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def record(self, handler, n, digest):
        with self.lock:
            self.requests += 1
            self.log.append({"method": handler.command, "path": handler.path,
                             "headers": list(handler.headers.items()), "body_len": n,
                             "body_sha256": digest})

    def counts(self):
        with self.lock:
            return self.conns, self.requests

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        shutdown_all(self.lock, self.socks)


# --------------------------------------------------------------------------
# Evil: raw sockets, one failure mode a request

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def _read_proxy_header(c, buf):
    """Reads a PROXY v1 or v2 header if one starts the stream; returns
    (dict or None, rest of buf)."""
    while len(buf) < 16 and (PP2_SIG.startswith(buf[:12]) or b"PROXY ".startswith(buf[:6])):
        d = c.recv(65536)
        if not d:
            return None, buf
        buf += d
    if buf.startswith(b"PROXY "):
        while b"\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, buf
            buf += d
        line, buf = buf.split(b"\r\n", 1)
        f = line.decode("latin-1").split(" ")
        info = {"version": 1, "line": line.decode("latin-1")}
        if len(f) == 6:
            info.update(proto=f[1], src=f[2], dst=f[3], src_port=int(f[4]), dst_port=int(f[5]))
        return info, buf
    if buf.startswith(PP2_SIG):
        while len(buf) < 16:
            buf += c.recv(65536)
        ln = struct.unpack("!H", buf[14:16])[0]
        while len(buf) < 16 + ln:
            buf += c.recv(65536)
        vc, fam = buf[12], buf[13]
        body, buf = buf[16:16 + ln], buf[16 + ln:]
        info = {"version": 2, "ver_cmd": vc, "fam": fam, "len": ln}
        if fam == 0x11 and ln >= 12:
            info.update(src=socket.inet_ntop(socket.AF_INET, body[0:4]),
                        dst=socket.inet_ntop(socket.AF_INET, body[4:8]),
                        src_port=struct.unpack("!H", body[8:10])[0],
                        dst_port=struct.unpack("!H", body[10:12])[0])
        elif fam == 0x21 and ln >= 36:
            info.update(src=socket.inet_ntop(socket.AF_INET6, body[0:16]),
                        dst=socket.inet_ntop(socket.AF_INET6, body[16:32]),
                        src_port=struct.unpack("!H", body[32:34])[0],
                        dst_port=struct.unpack("!H", body[34:36])[0])
        return info, buf
    return None, buf


HEAD_200 = b"HTTP/1.1 200 OK\r\n"


class Evil:
    """A raw upstream on 127.0.0.1:0 that misbehaves on request (see the
    module doc). requests: (method, path) of each request head read;
    conns: connections accepted; pp: the PROXY headers received."""

    def __init__(self, flaky=False):
        self.flaky = flaky
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.requests = []
        self.conns = 0
        self.pp = []
        self._socks = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                self._socks.append(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _read_head(self, c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, buf
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        cl = 0
        for l in lines[1:]:
            k, _, v = l.partition(":")
            if k.strip().lower() == "content-length":
                cl = int(v.strip())
        while len(buf) < cl:
            d = c.recv(65536)
            if not d:
                break
            buf += d
        return (method, path), buf[cl:]

    def _hold(self, c):
        """Keeps the connection open until the peer or close() ends it."""
        c.settimeout(0.2)
        while not self._closed.is_set():
            try:
                if not c.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def _conn(self, c):
        try:
            c.settimeout(60)
            pp, buf = _read_proxy_header(c, b"")
            if pp is not None:
                with self.lock:
                    self.pp.append(pp)
            n = 0
            while True:
                req, buf = self._read_head(c, buf)
                if req is None:
                    return
                with self.lock:
                    self.requests.append(req)
                if self.flaky:
                    if n > 0:
                        return          # FIN, no response byte
                    c.sendall(HEAD_200 + b"Content-Length: 2\r\n\r\nok")
                    n += 1
                    continue
                mode = req[1].rstrip("/").rsplit("/", 1)[-1].split("?")[0]
                if not self._act(c, mode, pp):
                    return
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _act(self, c, mode, pp):
        if mode == "reset-head":
            c.sendall(HEAD_200 + b"Content-Len")
            time.sleep(0.05)
            set_rst(c)
        elif mode == "close-head":
            pass
        elif mode == "reset-body":
            c.sendall(HEAD_200 + b"Content-Length: 100000\r\n\r\n" + b"x" * 10000)
            time.sleep(0.1)
            set_rst(c)
        elif mode == "reset-chunked":
            c.sendall(HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + b"x" * 4096
                      + b"\r\n" + b"1000\r\n" + b"y" * 100)
            time.sleep(0.1)
            set_rst(c)
        elif mode == "reset-close":
            c.sendall(HEAD_200 + b"Connection: close\r\n\r\n" + b"x" * 10000)
            time.sleep(0.1)
            set_rst(c)
        elif mode == "stall":
            self._hold(c)
        elif mode == "stall-body":
            c.sendall(HEAD_200 + b"Content-Length: 100000\r\n\r\n" + b"x" * 10000)
            self._hold(c)
        elif mode == "two-cl":
            c.sendall(HEAD_200 + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        elif mode == "te-cl":
            c.sendall(HEAD_200 + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                      b"5\r\nhello\r\n0\r\n\r\n")
        elif mode == "bad-chunk":
            c.sendall(HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        elif mode == "bad-status":
            c.sendall(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok")
        elif mode == "204-cl":
            # A 204 must not carry a length (RFC 9110 §8.6); some do.
            c.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n"
                      b"Connection: close\r\n\r\n")
        elif mode == "no-reason":
            c.sendall(b"HTTP/1.1 200 \r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        elif mode in ("pp", "pp-ka"):
            body = json.dumps(pp).encode()
            c.sendall(HEAD_200 + b"Content-Type: application/json\r\n"
                      + (b"" if mode == "pp-ka" else b"Connection: close\r\n")
                      + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            return mode == "pp-ka"
        else:   # ok
            c.sendall(HEAD_200 + b"Connection: close\r\nContent-Length: 2\r\n\r\nok")
        return False

    def methods(self):
        with self.lock:
            return [m for m, _ in self.requests]

    def close(self):
        self._closed.set()
        self.sock.close()
        shutdown_all(self.lock, self._socks)


# --------------------------------------------------------------------------
# Flood: an answer that never ends


class Flood:
    """A raw upstream on 127.0.0.1:0 whose answer never ends: on each
    connection it reads a request head, sends `prefix`, then `filler`
    again and again, as fast as the peer takes it, until the connection
    fails or `limit` s pass. ends: one dict per connection that ended:
    sent (bytes), how it ended ("eof": a FIN, "reset": a RST or EPIPE,
    "limit": still open after `limit` s), after (s from the prefix to
    that end) and at (time.monotonic() then). conns: connections
    accepted; sent: bytes sent so far, by every connection."""

    def __init__(self, prefix, filler, limit=20.0):
        self.prefix, self.filler, self.limit = prefix, filler, limit
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.conns = self.sent = 0
        self.ends = []
        self._socks = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                self._socks.append(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        try:
            c.settimeout(self.limit)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            end = self._flood(c)
            with self.lock:
                self.ends.append(end)
        except OSError:
            pass
        finally:
            c.close()

    def _flood(self, c):
        c.setblocking(False)
        t0 = time.monotonic()
        out = memoryview(self.prefix)
        sent = 0
        while True:
            left = t0 + self.limit - time.monotonic()
            if left <= 0 or self._closed.is_set():
                how = "limit"
                break
            r, w, _ = select.select([c], [c], [], min(left, 0.2))
            try:
                if r and not c.recv(65536):
                    how = "eof"
                    break
                if w:
                    if not len(out):
                        out = memoryview(self.filler)
                    k = c.send(out)
                    sent += k
                    out = out[k:]
                    with self.lock:
                        self.sent += k
            except (BlockingIOError, InterruptedError):
                continue
            except (ConnectionResetError, BrokenPipeError):
                how = "reset"
                break
        now = time.monotonic()
        return {"sent": sent, "how": how, "after": now - t0, "at": now}

    def wait_ends(self, n, timeout):
        """The ends, once n connections have ended or timeout s passed."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.ends) >= n:
                    break
            time.sleep(0.05)
        with self.lock:
            return list(self.ends)

    def close(self):
        self._closed.set()
        self.sock.close()
        shutdown_all(self.lock, self._socks)


# --------------------------------------------------------------------------
# nginx

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid %(prefix)s/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(prefix)s/tmp/body;
    proxy_temp_path %(prefix)s/tmp/proxy;
    fastcgi_temp_path %(prefix)s/tmp/fastcgi;
    uwsgi_temp_path %(prefix)s/tmp/uwsgi;
    scgi_temp_path %(prefix)s/tmp/scgi;
    keepalive_requests 100000;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:%(port)d;
        location = /nginx/upload {
            client_max_body_size 0;
            return 200 "uploaded\\n";
        }
        location /nginx/ {
            alias %(prefix)s/www/;
        }
    }
}
"""


def nginx_binary():
    for p in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def nginx_argv(prefix, files, free_port):
    """Writes prefix/nginx.conf (a port from free_port()) and prefix/www/FILES
    ({name: bytes}); returns (argv, port)."""
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "www"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(prefix, "www", name), "wb") as f:
            f.write(data)
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF % {"prefix": prefix, "port": port})
    return [nginx_binary(), "-p", prefix + "/", "-c", conf, "-e", "stderr"], port


def wait_tcp(port, timeout, alive=lambda: True):
    end = time.monotonic() + timeout
    while time.monotonic() < end and alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# The websocket echo server (a process of its own)

WS_PROBE = "import websockets, asyncio"


def websockets_python():
    """A Python interpreter that can import websockets, or None."""
    cands = [sys.executable, "/usr/bin/python3", shutil.which("python3")]
    seen = set()
    for p in cands:
        if not p or p in seen or not os.path.exists(p):
            continue
        seen.add(p)
        try:
            r = subprocess.run([p, "-c", WS_PROBE], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return p
    return None


def ws_echo_main():
    import asyncio
    import websockets

    async def echo(ws, path=None):
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass

    async def run():
        async with websockets.serve(echo, "127.0.0.1", 0, max_size=1 << 22,
                                    compression=None) as srv:
            port = srv.sockets[0].getsockname()[1]
            sys.stderr.write("listening on 127.0.0.1:%d (ws)\n" % port)
            sys.stderr.flush()
            await asyncio.Future()

    asyncio.run(run())


if __name__ == "__main__":
    if sys.argv[1:] == ["ws-echo"]:
        ws_echo_main()
    else:
        sys.exit("usage: upstreams.py ws-echo")
