#!/usr/bin/env python3
"""Soak: one ringtls under mixed load for N minutes.

    soak.py [--minutes N] [--workers W] [--seed S] [--bin PATH]

One server (2 reactors) on an ephemeral plaintext and an ephemeral TLS
port serves a generated tree (0 B, 1 B, 16 KiB, 1 MiB and 5 MiB of random
bytes, a page, a directory index). Worker processes loop over a random mix
of: keep-alive GETs, HEADs, Ranges, 304s, 301s and 404s over plaintext and
TLS 1.3/1.2; full and resumed handshakes; pipelined bursts; abrupt
disconnects (RST mid-response, close mid-header, close or RST mid-handshake,
close before reading); requests the server must refuse with a given status;
request bodies it must read and discard; and now and then curl and openssl
s_client. Every response's status, headers and body sha256 are checked.

Meanwhile the server's fds (/proc/PID/fd) and RSS (VmRSS) are sampled.
The run fails on: any unexpected response or client error; the server
exiting or crashing; a log line at error or warn level, or one that is not
the server's own format (a sanitizer or assert report); fds after the load
(all clients gone) different from before it; RSS after the load above 1.10
times the RSS after the warm-up (min(20% of the run, 20 s)). The warm-up
starts by streaming 1 MiB request bodies through every receive-buffer ring,
whose pages otherwise become resident bit by bit as the ring turns (up to
16 MiB per reactor, by design, not a leak).

Pipes are the one kind of fd the server keeps on purpose after the load:
each reactor pools up to 64 empty splice pipes for the next file. They are
reported apart and bounded (at most one pair per connection the clients can
have open at once); every other fd must come back exactly.

Exit 0 PASS, 1 FAIL, 77 SKIP (binary not built).
"""
import argparse
import email.utils
import hashlib
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rtls_test as rt  # noqa: E402
import tls_util as tu  # noqa: E402

IO_TIMEOUT = 30.0       # a socket op on a loaded 2-core machine
TOOL_TIMEOUT = 60       # one curl / s_client run
SAMPLE_S = 2.0          # fd/RSS sampling period
DRAIN_S = 30.0          # wait for the server's connections to go after the load
RSS_SLACK = 1.10
MAX_EXAMPLES = 6        # error descriptions kept per kind
HELLO = b"Hello, World!"
MAX_BODY = 1 << 20      # the server's default --max-body-bytes
TLS13 = ssl.TLSVersion.TLSv1_3
TLS12 = ssl.TLSVersion.TLSv1_2
MTIME = int(time.time()) - 3600
LASTMOD = email.utils.formatdate(MTIME, usegmt=True)
PLAIN_400 = b"400 Bad Request: plain HTTP was sent to an HTTPS port\n"

# name -> (size, weight for whole-file GETs); random bytes, sha256 known.
FILES = {"empty.bin": (0, 2), "one.bin": (1, 2), "k16.bin": (16384, 4),
         "m1.bin": (1 << 20, 2), "m5.bin": (5 << 20, 1), "page.txt": (3000, 2),
         "sub/index.html": (1200, 2)}
CTYPES = {"bin": "application/octet-stream", "txt": "text/plain; charset=utf-8",
          "html": "text/html; charset=utf-8"}
REASON = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
          413: "Content Too Large", 414: "URI Too Long",
          431: "Request Header Fields Too Large", 501: "Not Implemented",
          505: "HTTP Version Not Supported"}


# --------------------------------------------------------------------------
# The tree


def make_tree(root):
    """Writes FILES under root; returns {name: bytes}."""
    tree = {}
    for name, (size, _) in FILES.items():
        if name.endswith((".txt", ".html")):
            data = bytes(random.Random(name).choice(b"abcdefgh \n") for _ in range(size))
        else:
            data = os.urandom(size)
        rt.write_file(os.path.join(root, name), data, mtime=MTIME)
        tree[name] = data
    return tree


# --------------------------------------------------------------------------
# Requests and what their responses must be


class Exp:
    """One request and the response it must get."""

    def __init__(self, what, method, target, status, body=b"", headers=None, extra=()):
        self.what = what
        self.method = method
        self.target = target
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.extra = list(extra)
        self.closes = False

    def wire(self, close=False):
        hdrs = list(self.extra)
        if close:
            hdrs.append("Connection: close")
            self.closes = True
        return rt.request(self.method, self.target, headers=hdrs)

    @property
    def head(self):
        return self.method == "HEAD"


def file_headers(name, n):
    return {"Content-Type": CTYPES[name.rsplit(".", 1)[1]], "Content-Length": str(n),
            "Last-Modified": LASTMOD, "Accept-Ranges": "bytes"}


def error_exp(what, status):
    body = ("%d %s\n" % (status, REASON[status])).encode()
    return Exp(what, "GET", "/", status, body, {"Connection": "close"})


def pick_file(rnd, small):
    names = [n for n in FILES if not small or FILES[n][0] <= 16384]
    return rnd.choices(names, [FILES[n][1] for n in names])[0]


def pick_range(rnd, data, name, small):
    size = len(data)
    if size == 0:
        return Exp("Range on an empty file", "GET", "/" + name, 416,
                   b"416 Range Not Satisfiable\n", {"Content-Range": "bytes */0"},
                   ["Range: bytes=0-0"])
    if rnd.random() < 0.2:
        n = rnd.randint(1, min(size, 65536 if small else size))
        first, last, spec = size - n, size - 1, "bytes=-%d" % n
    else:
        first = rnd.randrange(size)
        span = rnd.randint(1, min(size - first, 65536 if small else size))
        last = first + span - 1
        spec = "bytes=%d-%d" % (first, last)
    h = file_headers(name, last - first + 1)
    h["Content-Range"] = "bytes %d-%d/%d" % (first, last, size)
    return Exp("Range %s of %s" % (spec, name), "GET", "/" + name, 206,
               data[first:last + 1], h, ["Range: " + spec])


def pick_request(rnd, tree, small=False):
    """A request that keeps the connection open, and its Exp."""
    name = pick_file(rnd, small)
    data = tree[name]
    r = rnd.random()
    if r < 0.34:
        return Exp("GET /" + name, "GET", "/" + name, 200, data, file_headers(name, len(data)))
    if r < 0.44:
        return Exp("GET /hello", "GET", "/hello", 200, HELLO, {"Content-Length": "13"})
    if r < 0.54:
        return Exp("HEAD /" + name, "HEAD", "/" + name, 200, b"", file_headers(name, len(data)))
    if r < 0.74:
        other = pick_file(rnd, False)   # any file; small keeps the span small
        return pick_range(rnd, tree[other], other, small)
    if r < 0.80:
        return Exp("GET /sub/", "GET", "/sub/", 200, tree["sub/index.html"],
                   file_headers("sub/index.html", len(tree["sub/index.html"])))
    if r < 0.88:
        return Exp("GET missing", "GET", "/missing-%d.bin" % rnd.randrange(100), 404,
                   b"404 Not Found\n", {"Content-Length": "14"})
    if r < 0.94:
        return Exp("If-Modified-Since /" + name, "GET", "/" + name, 304, b"",
                   {"Last-Modified": LASTMOD, "Content-Length": None},
                   ["If-Modified-Since: " + LASTMOD])
    return Exp("GET /sub", "GET", "/sub", 301, b"301 Moved Permanently\n", {"Location": "/sub/"})


def verify(r, exp):
    """What is wrong with one response, '' if nothing."""
    if r.version != "HTTP/1.1":
        return "version %r" % r.version
    if r.status != exp.status:
        return "status %d, want %d" % (r.status, exp.status)
    bad = ["%s %r, want %r" % (k, r.header(k), v) for k, v in exp.headers.items()
           if r.header(k) != v]
    if bad:
        return "; ".join(bad)
    if len(r.body) != len(exp.body):
        return "body %d bytes, want %d" % (len(r.body), len(exp.body))
    if hashlib.sha256(r.body).digest() != hashlib.sha256(exp.body).digest():
        return "body sha256 mismatch (%d bytes)" % len(r.body)
    return ""


# --------------------------------------------------------------------------
# Connections


class SockConn(rt.Conn):
    """rt.Conn's reader over a connected socket, plain or TLS; the buffer
    is a bytearray so a 5 MiB body is not copied once per recv."""

    def __init__(self, sock, label):  # noqa: super().__init__ would connect
        self.sock = sock
        self.label = label
        self.nresp = 0
        self.local_port = sock.getsockname()[1]
        self.buf = bytearray()
        self.eof = False

    def rst(self):
        rst_close(self.sock)


def rst_close(sock):
    """Closes with a TCP reset (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def plain_conn(port):
    return SockConn(socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT), "plain")


def tls_conn(port, ctx, session=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session,
                            suppress_ragged_eofs=False)
    except Exception:
        raw.close()
        raise
    return SockConn(s, "%s %s" % (s.version(), s.cipher()[0]))


# --------------------------------------------------------------------------
# The worker: one process, one connection at a time


class Worker:
    def __init__(self, idx, cfg, progress):
        self.idx = idx
        self.cfg = cfg
        self.rnd = random.Random(cfg["seed"] * 1000 + idx)
        self.tree = cfg["tree"]
        self.progress = progress
        self.stats = {}     # kind -> [requests, bytes, errors]
        self.examples = {}  # kind -> [description]
        self.printed = 0
        self.at = "start"   # what the worker was doing, for error lines
        ca = cfg["ca"]
        self.ctx = {"TLSv1.3": tu.client_ctx(True, ca, TLS13, TLS13),
                    "TLSv1.2": tu.client_ctx(True, ca, None, TLS12)}

    # -- bookkeeping

    def count(self, kind, nbytes=0):
        s = self.stats.setdefault(kind, [0, 0, 0])
        s[0] += 1
        s[1] += nbytes
        self.progress[2 * self.idx] += 1

    def error(self, kind, desc):
        s = self.stats.setdefault(kind, [0, 0, 0])
        s[2] += 1
        self.progress[2 * self.idx + 1] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(desc)
        if self.printed < 20:
            self.printed += 1
            print("ERROR worker %d %s: %s" % (self.idx, kind, desc), flush=True)

    def version(self):
        return self.rnd.choice(("TLSv1.3", "TLSv1.2"))

    def connect(self, tls, session=None, ver=None):
        self.at = "connecting (%s)" % ("tls" if tls else "plain")
        if not tls:
            return plain_conn(self.cfg["port"])
        return tls_conn(self.cfg["tls_port"], self.ctx[ver or self.version()], session)

    def exchange(self, kind, c, exp, close=False):
        """One request, one checked response; False if it went wrong."""
        c.send(exp.wire(close))
        return self.check(kind, c, exp)

    def check(self, kind, c, exp):
        self.at = "%s, response %d on %s" % (exp.what, c.nresp, c.label)
        c.nresp += 1
        r = c.read_response(head=exp.head)
        self.count(kind, len(r.body))
        why = verify(r, exp)
        if why:
            self.error(kind, "%s: %s" % (exp.what, why))
            return False
        if exp.closes and not c.closed_by_peer(IO_TIMEOUT):
            self.error(kind, "%s: not closed after Connection: close" % exp.what)
            return False
        return True

    def finish_tls(self, kind, c):
        """Half the time a clean close_notify exchange, else a bare close
        (the server logs it as truncated)."""
        if self.rnd.random() < 0.5:
            try:
                c.sock.unwrap()
            except (ssl.SSLError, OSError) as e:
                self.error(kind, "close_notify exchange: %s" % describe(e))
        c.close()

    # -- the ops

    def op_keepalive(self, kind, tls):
        c = self.connect(tls)
        try:
            n = self.rnd.randint(2, 20)
            for i in range(n):
                exp = pick_request(self.rnd, self.tree)
                close = i == n - 1 and self.rnd.random() < 0.3
                if not self.exchange(kind, c, exp, close) or close:
                    return
            if tls:
                self.finish_tls(kind, c)
        finally:
            c.close()

    def op_pipeline(self, kind, tls):
        c = self.connect(tls)
        try:
            exps = [pick_request(self.rnd, self.tree, small=True)
                    for _ in range(self.rnd.randint(2, 32))]
            close = self.rnd.random() < 0.3
            c.send(b"".join(e.wire(close and i == len(exps) - 1) for i, e in enumerate(exps)))
            for e in exps:
                if not self.check(kind, c, e):
                    return
        finally:
            c.close()

    def op_handshakes(self, kind, resume):
        """Several connections of one request each: full handshakes, or a
        chain of resumptions, each from the ticket the previous one got."""
        ver = self.version()
        session = None
        for i in range(self.rnd.randint(2, 6)):
            c = self.connect(True, session, ver)
            try:
                exp = pick_request(self.rnd, self.tree, small=True)
                if not self.exchange(kind, c, exp):
                    return
                want = resume and i > 0
                if c.sock.session_reused != want:
                    self.error(kind, "%s connection %d: session_reused %s, want %s"
                               % (ver, i, c.sock.session_reused, want))
                    return
                if c.sock.version() != ver:
                    self.error(kind, "version %s, want %s" % (c.sock.version(), ver))
                    return
                if resume:
                    session = c.sock.session
                self.finish_tls(kind, c)
            finally:
                c.close()

    def op_rst_mid_response(self, kind):
        tls = self.rnd.random() < 0.5
        c = self.connect(tls)
        name = self.rnd.choice(("m1.bin", "m5.bin"))
        c.send(rt.request("GET", "/" + name))
        c.read_until(b"\r\n\r\n")
        want = self.rnd.randint(0, 512 * 1024)
        while len(c.buf) < want:
            c._fill()
        self.count(kind, len(c.buf))
        c.rst()

    def op_close_mid_header(self, kind):
        tls = self.rnd.random() < 0.4
        c = self.connect(tls)
        head = rt.request("GET", "/k16.bin", headers=["User-Agent: soak", "Accept: */*"])
        c.send(head[:self.rnd.randint(1, len(head) - 1)])
        if self.rnd.random() < 0.5:
            time.sleep(self.rnd.random() * 0.05)
        self.count(kind)
        c.rst() if self.rnd.random() < 0.5 else c.close()

    def op_close_mid_handshake(self, kind):
        b = tu.BioClient(self.cfg["tls_port"], self.ctx[self.version()], timeout=IO_TIMEOUT)
        try:
            how = self.rnd.randrange(3)
            if how == 0:        # part of the ClientHello
                ch = b.client_hello()
                b.sock.sendall(ch[:self.rnd.randint(1, len(ch) - 1)])
            elif how == 1:      # the ClientHello, then some of the server's flight
                b.sock.sendall(b.client_hello())
                b.sock.recv(self.rnd.randint(1, 2000))
            else:               # everything but the client's Finished
                b.handshake(send_last=False)
            self.count(kind)
            if self.rnd.random() < 0.5:
                rst_close(b.sock)
        finally:
            b.close()

    def op_close_unread(self, kind):
        """A request for a big file, then close at once: the server's
        writes meet a closed socket (RST)."""
        c = self.connect(self.rnd.random() < 0.5)
        c.send(rt.request("GET", "/m5.bin"))
        self.count(kind)
        c.close()

    def op_bodies(self, kind, tls=None, n=None, size=None):
        """Requests with bodies up to --max-body-bytes, which the server
        reads and throws away: they fill whole receive buffers."""
        c = self.connect(self.rnd.random() < 0.3 if tls is None else tls)
        try:
            for _ in range(n or self.rnd.randint(1, 4)):
                sz = size or self.rnd.randint(1, MAX_BODY)
                exp = Exp("GET /hello with a body", "GET", "/hello", 200, HELLO,
                          {"Content-Length": "13"}, ["Content-Length: %d" % sz])
                c.send(exp.wire() + os.urandom(sz))
                if not self.check(kind, c, exp):
                    return
                self.stats[kind][1] += sz    # what went up counts here
        finally:
            c.close()

    def prime(self):
        """The warm-up's first act. Each reactor's provided-buffer ring
        (1024 x 16 KiB) is used in ring order, so its pages become resident
        one buffer at a time as traffic goes round it: a one-time growth of
        up to 16 MiB per reactor that is not a leak. Streaming whole
        buffers through it first puts that growth before the baseline."""
        for i in range(4):
            self.op_bodies("request bodies", tls=i == 3, n=4, size=MAX_BODY)

    def op_bad_request(self, kind):
        name, data, exp = self.rnd.choice(BAD_REQUESTS)
        tls = name != "plain HTTP on the TLS port" and self.rnd.random() < 0.4
        port = self.cfg["tls_port"] if name == "plain HTTP on the TLS port" else None
        c = plain_conn(port) if port else self.connect(tls)
        try:
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before all of a long head was sent; the answer is there
            if exp is None:     # the non-HTTP 400 of the TLS port
                body = c.read_to_eof(IO_TIMEOUT)
                self.count(kind, len(body))
                if not (body.startswith(b"HTTP/1.1 400 Bad Request\r\n")
                        and body.endswith(b"\r\n\r\n" + PLAIN_400)):
                    self.error(kind, "%s: %r" % (name, bytes(body[:120])))
                return
            exp.what = name
            self.check(kind, c, exp)
            if exp.status != 404 and not c.closed_by_peer(IO_TIMEOUT):
                self.error(kind, "%s: not closed after the %d" % (name, exp.status))
        finally:
            c.close()

    def op_curl(self, kind):
        tls = self.rnd.random() < 0.5
        names = [pick_file(self.rnd, False) for _ in range(self.rnd.randint(1, 3))]
        out = tempfile.mkdtemp(prefix="rtls-soak-curl-")
        try:
            port = self.cfg["tls_port"] if tls else self.cfg["port"]
            argv = ["curl", "-sS", "--http1.1", "--max-time", str(TOOL_TIMEOUT - 10),
                    "-w", "%{http_code}\\n"]
            if tls:
                argv += ["--cacert", self.cfg["ca"], "--resolve", "localhost:%d:127.0.0.1" % port,
                         self.rnd.choice(("--tlsv1.3", "--tls-max", "--tlsv1.2"))]
                if argv[-1] == "--tls-max":
                    argv.append("1.2")
            for i, n in enumerate(names):
                argv += ["-o", os.path.join(out, str(i)),
                         "%s://localhost:%d/%s" % ("https" if tls else "http", port, n)]
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TOOL_TIMEOUT)
            codes = p.stdout.decode().split()
            if p.returncode != 0 or codes != ["200"] * len(names):
                self.error(kind, "curl rc %d codes %s: %s" % (p.returncode, codes,
                                                              p.stderr.decode()[-200:].strip()))
                return
            for i, n in enumerate(names):
                with open(os.path.join(out, str(i)), "rb") as f:
                    got = f.read()
                self.count(kind, len(got))
                if got != self.tree[n]:
                    self.error(kind, "curl %s: %d bytes, body differs" % (n, len(got)))
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def op_s_client(self, kind):
        ver = self.rnd.choice(("-tls1_3", "-tls1_2"))
        name = pick_file(self.rnd, True)
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.cfg["tls_port"],
                "-servername", "localhost", "-verify_hostname", "localhost",
                "-CAfile", self.cfg["ca"], "-verify_return_error", "-quiet", ver]
        req = rt.request("GET", "/" + name, headers=["Connection: close"])
        p = subprocess.run(argv, input=req, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TOOL_TIMEOUT)
        head, _, body = p.stdout.partition(b"\r\n\r\n")
        self.count(kind, len(body))
        want = b"Content-Length: %d\r\n" % len(self.tree[name])
        if (p.returncode != 0 or not head.startswith(b"HTTP/1.1 200 OK\r\n")
                or want not in head + b"\r\n" or body != self.tree[name]):
            self.error(kind, "s_client %s /%s: rc %d, %r, %d body bytes; %s"
                       % (ver, name, p.returncode, head[:60], len(body),
                          p.stderr.decode("utf-8", "replace")[-200:].strip()))

    # -- the loop

    def run(self, deadline, stop):
        ops = self.ops()
        names = list(ops)
        weights = [ops[n][0] for n in names]
        try:
            self.prime()
        except Exception as e:  # noqa: BLE001 - counted like any other failure
            self.error("request bodies", "priming: %s" % describe(e))
        while time.monotonic() < deadline and not stop.is_set():
            kind = self.rnd.choices(names, weights)[0]
            self.at = "start"
            try:
                ops[kind][1](kind)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self.error(kind, "%s (at: %s)" % (describe(e), self.at))
        return {"stats": self.stats, "examples": self.examples}

    def ops(self):
        o = {
            "plain keep-alive": (20, lambda k: self.op_keepalive(k, False)),
            "tls keep-alive": (15, lambda k: self.op_keepalive(k, True)),
            "plain pipelined": (8, lambda k: self.op_pipeline(k, False)),
            "tls pipelined": (5, lambda k: self.op_pipeline(k, True)),
            "tls full handshakes": (8, lambda k: self.op_handshakes(k, False)),
            "tls resumed handshakes": (8, lambda k: self.op_handshakes(k, True)),
            "rst mid-response": (5, self.op_rst_mid_response),
            "close mid-header": (4, self.op_close_mid_header),
            "close mid-handshake": (5, self.op_close_mid_handshake),
            "close before reading": (3, self.op_close_unread),
            "bad requests": (8, self.op_bad_request),
            "request bodies": (2, self.op_bodies),
        }
        if shutil.which("curl"):
            o["curl"] = (1.5, self.op_curl)
        if shutil.which("openssl"):
            o["openssl s_client"] = (1.5, self.op_s_client)
        return o


def H(*lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _bad(name, data, status):
    return (name, data, None if status is None else
            (error_exp(name, status) if status != 404 else
             Exp(name, "GET", "/", 404, b"404 Not Found\n")))


BAD_REQUESTS = [
    _bad("garbage request line", b"NOT HTTP AT ALL\r\n\r\n", 400),
    _bad("HTTP/1.1 without Host", H("GET /hello HTTP/1.1", "Accept: */*"), 400),
    _bad("bare LF", b"GET /hello HTTP/1.1\nHost: x\n\n", 400),
    _bad("CL and TE", H("GET /hello HTTP/1.1", "Host: x", "Content-Length: 3",
                        "Transfer-Encoding: chunked") + b"0\r\n\r\n", 400),
    _bad("dot-dot", H("GET /../../etc/passwd HTTP/1.1", "Host: x"), 400),
    _bad("encoded dot-dot", H("GET /sub/%2e%2e/%2e%2e/etc/passwd HTTP/1.1", "Host: x"), 400),
    _bad("POST", H("POST /hello HTTP/1.1", "Host: x", "Content-Length: 5") + b"hello", 405),
    # RFC 9112 6.3: chunked not last leaves the body length unknowable (400);
    # a coding we do not implement before the final chunked is 501.
    _bad("TE gzip", H("GET /hello HTTP/1.1", "Host: x", "Transfer-Encoding: gzip"), 400),
    _bad("TE gzip, chunked", H("GET /hello HTTP/1.1", "Host: x",
                               "Transfer-Encoding: gzip, chunked"), 501),
    _bad("HTTP/2.0", H("GET /hello HTTP/2.0", "Host: x"), 505),
    _bad("huge Content-Length", H("GET /hello HTTP/1.1", "Host: x",
                                  "Content-Length: 99999999999999999999"), 413),
    _bad("long target", H("GET /" + "a" * 5000 + " HTTP/1.1", "Host: x"), 414),
    _bad("big head", H("GET /hello HTTP/1.1", "Host: x", "X-Big: " + "b" * 9000), 431),
    _bad("missing file", H("GET /no/such/file HTTP/1.1", "Host: x"), 404),
    _bad("plain HTTP on the TLS port", H("GET /hello HTTP/1.1", "Host: x"), None),
]


def describe(e):
    s = "%s: %s" % (type(e).__name__, e)
    return s if len(s) <= 160 else s[:160] + "..."


def worker_main(idx, cfg, deadline, stop, progress, q):
    w = Worker(idx, cfg, progress)
    try:
        res = w.run(deadline, stop)
    except BaseException as e:  # noqa: BLE001 - report it, do not hang the parent
        w.error("worker", describe(e))
        res = {"stats": w.stats, "examples": w.examples}
    q.put((idx, res))


# --------------------------------------------------------------------------
# The server and its resources


def fd_kinds(pid):
    """{'socket'|'pipe'|'anon'|'file': count} of a process's open fds."""
    kinds = {}
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue  # closed meanwhile
        k = ("socket" if t.startswith("socket:") else "pipe" if t.startswith("pipe:")
             else "anon" if t.startswith("anon_inode:") else "file")
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def non_pipe(kinds):
    return {k: v for k, v in kinds.items() if k != "pipe"}


def start_server(base, root):
    state = os.path.join(base, "state")
    s = rt.Process([rt.RINGTLS_BIN, "serve", "--listen", "127.0.0.1:0",
                    "--tls-listen", "127.0.0.1:0", "--state-dir", state, "--root", root,
                    "--threads", "2", "--log-level", "info"], name="ringtls")
    port, tls_port = s.wait_ports(rt.LISTEN_RE, tu.HTTPS_LISTEN_RE, timeout=rt.START_TIMEOUT)
    return s, port, tls_port, os.path.join(state, "selfsigned-cert.pem")


LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) (.*)$")
PEER_RE = re.compile(r"127\.0\.0\.1:\d+")


def scan_log(lines):
    """(bad lines, {message kind: count}) of the server's log: error and
    warn lines and anything not in the log's own format are bad."""
    bad, kinds = [], {}
    for line in lines:
        m = LOG_LINE_RE.match(line)
        if not m:
            bad.append("unformatted: " + line)
            continue
        if m.group(1) in ("error", "warn"):
            bad.append(line)
        msg = PEER_RE.sub("PEER", m.group(2))
        msg = re.sub(r"\d+", "N", msg)[:90]
        kinds[msg] = kinds.get(msg, 0) + 1
    return bad, kinds


# --------------------------------------------------------------------------
# The run


class Samples:
    def __init__(self, pid):
        self.pid = pid
        self.rows = []   # (t, fd kinds, rss KiB)

    def take(self, t):
        row = (t, fd_kinds(self.pid), rss_kib(self.pid))
        self.rows.append(row)
        return row


def run_load(cfg, server, workers, seconds, warm_s, samples):
    """Starts the workers, samples until they are done; returns their
    results and the failures seen on the way."""
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    progress = ctx.Array("q", 2 * workers, lock=False)
    q = ctx.Queue()
    t0 = time.monotonic()
    deadline = t0 + seconds
    procs = [ctx.Process(target=worker_main, args=(i, cfg, deadline, stop, progress, q))
             for i in range(workers)]
    for p in procs:
        p.start()
    fails, warm, next_note = [], None, t0 + 30
    while time.monotonic() < deadline:
        time.sleep(SAMPLE_S)
        if not server.alive():
            fails.append("server exited during the load (status %s)" % server.proc.poll())
            stop.set()
            break
        now = time.monotonic()
        row = samples.take(now - t0)
        if warm is None and now - t0 >= warm_s:
            warm = row
        if now >= next_note:
            next_note += 30
            print("  t=%3.0fs requests=%d errors=%d fds=%d rss=%d KiB"
                  % (now - t0, sum(progress[0::2]), sum(progress[1::2]),
                     sum(row[1].values()), row[2]), flush=True)
    results = collect(q, procs, fails)
    return results, warm, fails


def collect(q, procs, fails):
    results = {}
    end = time.monotonic() + 120
    while len(results) < len(procs) and time.monotonic() < end:
        try:
            idx, res = q.get(timeout=max(0.1, end - time.monotonic()))
        except Exception:  # noqa: BLE001 - queue.Empty
            break
        results[idx] = res
    for i, p in enumerate(procs):
        p.join(timeout=5)
        if p.is_alive():
            fails.append("worker %d did not finish: terminated" % i)
            p.terminate()
            p.join(timeout=5)
        elif i not in results:
            fails.append("worker %d exited (%s) without results" % (i, p.exitcode))
    return results


def drain(pid, pre):
    """Waits for every fd but the pipe pool to be back at its pre-load
    count; returns (seconds waited, last fd kinds)."""
    t0 = time.monotonic()
    while True:
        kinds = fd_kinds(pid)
        if non_pipe(kinds) == non_pipe(pre) or time.monotonic() - t0 > DRAIN_S:
            return time.monotonic() - t0, kinds
        time.sleep(0.2)


def merge(results):
    stats, examples = {}, {}
    for res in results.values():
        for k, (n, b, e) in res["stats"].items():
            s = stats.setdefault(k, [0, 0, 0])
            s[0] += n
            s[1] += b
            s[2] += e
        for k, ex in res["examples"].items():
            examples.setdefault(k, []).extend(ex)
    return stats, examples


def fmt_kinds(k):
    return " ".join("%s=%d" % (n, k[n]) for n in sorted(k))


def report(stats, examples, m):
    print("\n%-24s %10s %14s %7s" % ("kind", "requests", "body bytes", "errors"))
    tot = [0, 0, 0]
    for k in sorted(stats):
        n, b, e = stats[k]
        tot = [tot[0] + n, tot[1] + b, tot[2] + e]
        print("%-24s %10d %14d %7d" % (k, n, b, e))
    print("%-24s %10d %14d %7d" % ("total", tot[0], tot[1], tot[2]))
    for k in sorted(examples):
        for d in examples[k]:
            print("  error %s: %s" % (k, d))
    print("\nfds  pre-load %d (%s)  warm %d  peak %d  final %d (%s)  drained in %.1f s"
          % (sum(m["pre"].values()), fmt_kinds(m["pre"]), m["fd_warm"], m["fd_peak"],
             sum(m["final"].values()), fmt_kinds(m["final"]), m["drain_s"]))
    print("RSS  pre-load %d KiB  warm baseline %d KiB  peak %d KiB  final %d KiB (%.1f%% of baseline)"
          % (m["rss_pre"], m["rss_warm"], m["rss_peak"], m["rss_final"],
             100.0 * m["rss_final"] / max(1, m["rss_warm"])))
    return tot


def check_resources(m, workers, fails):
    if non_pipe(m["final"]) != non_pipe(m["pre"]):
        fails.append("fds after the load %s != before it %s"
                     % (fmt_kinds(non_pipe(m["final"])), fmt_kinds(non_pipe(m["pre"]))))
    pipes, pipes_pre = m["final"].get("pipe", 0), m["pre"].get("pipe", 0)
    # A pair per connection that could be sending a file at once: each
    # worker holds one connection, and one more may still be closing.
    if pipes - pipes_pre > 2 * 2 * (workers + 1):
        fails.append("pipes after the load: %d, %d before (more than the clients could use)"
                     % (pipes, pipes_pre))
    if m["rss_final"] > RSS_SLACK * m["rss_warm"]:
        fails.append("RSS after the load %d KiB > %.2f x the warm baseline %d KiB"
                     % (m["rss_final"], RSS_SLACK, m["rss_warm"]))


def soak(args, base):
    root = os.path.join(base, "root")
    tree = make_tree(root)
    server, port, tls_port, ca = start_server(base, root)
    print("soak: %s pid %d, http %d, https %d, %d workers, %.1f min, seed %d"
          % (rt.RINGTLS_BIN, server.pid, port, tls_port, args.workers, args.minutes, args.seed),
          flush=True)
    fails, m = [], {}
    try:
        time.sleep(0.5)
        m["pre"], m["rss_pre"] = fd_kinds(server.pid), rss_kib(server.pid)
        seconds = args.minutes * 60.0
        warm_s = min(0.2 * seconds, 20.0)
        cfg = {"port": port, "tls_port": tls_port, "ca": ca, "tree": tree, "seed": args.seed}
        samples = Samples(server.pid)
        results, warm, fails = run_load(cfg, server, args.workers, seconds, warm_s, samples)
        stats, examples = merge(results)
        if server.alive():
            m["drain_s"], m["final"] = drain(server.pid, m["pre"])
            time.sleep(1.0)
            m["rss_final"] = rss_kib(server.pid)
        if warm is None:
            fails.append("no sample after the warm-up (%.0f s)" % warm_s)
        if "final" in m and warm is not None:
            m["fd_warm"], m["rss_warm"] = sum(warm[1].values()), warm[2]
            m["fd_peak"] = max(sum(r[1].values()) for r in samples.rows)
            m["rss_peak"] = max(r[2] for r in samples.rows)
            tot = report(stats, examples, m)
            check_resources(m, args.workers, fails)
            if tot[2]:
                fails.append("%d unexpected error(s) in %d requests" % (tot[2], tot[0]))
            if tot[0] == 0:
                fails.append("no requests were made")
    finally:
        status = server.stop()
    if status != 0:
        fails.append("server exit status %s after SIGTERM (want 0)" % status)
    return fails, server


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--bin", help="the ringtls binary (default: $RINGTLS_BIN or build/ringtls)")
    args = ap.parse_args()
    if args.bin:
        rt.RINGTLS_BIN = os.path.abspath(args.bin)
    if not os.access(rt.RINGTLS_BIN, os.X_OK):
        print("SKIP: ringtls not built: %s" % rt.RINGTLS_BIN)
        return rt.SKIP
    base = tempfile.mkdtemp(prefix="rtls-soak-")
    server = None
    try:
        fails, server = soak(args, base)
    except Exception as e:  # noqa: BLE001 - a crash of the harness is a FAIL too
        fails = ["soak harness: %s" % describe(e)]
        for p in list(rt._live):
            p.stop(timeout=5)
    if server is not None:
        bad, kinds = scan_log(server.log_lines())
        print("server log: %d lines; most frequent:" % sum(kinds.values()))
        for msg, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:8]:
            print("  %7d  %s" % (n, msg))
        for line in bad[:20]:
            print("  BAD LOG LINE: " + line)
        if bad:
            fails.append("%d server log line(s) at error/warn level or unformatted" % len(bad))
    for f in fails:
        print("FAIL: " + f)
    if fails and server is not None:
        keep = os.path.join(tempfile.gettempdir(), "rtls-soak-%d.log" % server.pid)
        shutil.copy(server.err_path, keep)
        print("server log kept: " + keep)
    if server is not None:
        os.unlink(server.err_path)
    shutil.rmtree(base, ignore_errors=True)
    print("soak: %s" % ("FAIL" if fails else "PASS"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
