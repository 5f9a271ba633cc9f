"""TLS helpers for the ringtls integration tests (stdlib only).

Builds on rtls_test (Checker, Process, main, temp dirs): a TLS server on
an ephemeral loopback port, a test PKI made with the openssl CLI, bounded
runs of the external clients (openssl s_client, curl, gnutls-cli, node,
python), a small HTTP reader over a TLS socket, and a hand-driven client
(ssl.MemoryBIO + SSLObject) for byte-exact tests. Every wait has a bound.
"""
import html
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import rtls_test as rt

SKIP = rt.SKIP
Skip = rt.Skip
temp_dir = rt.temp_dir
IO_TIMEOUT = rt.IO_TIMEOUT   # scaled by RTLS_TIME_SCALE, as every bound below
HELLO = b"Hello, World!"

HTTPS_LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")

# The defaults the server documents (src/tls/ctx.c); the self-signed
# certificate is ECDSA, so the TLS 1.2 list is the ECDSA half.
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
TLS12_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                 "ECDHE-ECDSA-CHACHA20-POLY1305")


def have(tool):
    return shutil.which(tool) is not None


# --------------------------------------------------------------------------
# The server


class TlsServer(rt.Process):
    """ringtls serve --tls-listen 127.0.0.1:0 with a temporary --state-dir;
    .port is parsed from the `listening on ... (https)` line."""

    def __init__(self, *args, state_dir=None, root=None, threads=1, log_level="debug",
                 wait=True, env=None):
        self.state_dir = state_dir or temp_dir("rtls-state-")
        argv = [rt.RINGTLS_BIN, "serve", "--tls-listen", "127.0.0.1:0",
                "--state-dir", self.state_dir]
        if threads is not None:
            argv += ["--threads", str(threads)]
        if log_level:
            argv += ["--log-level", log_level]
        if root is not None:
            argv += ["--root", root]
        argv += [str(a) for a in args]
        super().__init__(argv, name="ringtls", env=env)
        self.port = None
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout=10.0):
        self.port, = self.wait_ports(HTTPS_LISTEN_RE, timeout=rt.scaled(timeout))
        return self.port

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def url(self, path="/", host="127.0.0.1"):
        return "https://%s:%d%s" % (host, self.port, path)

    def mark(self):
        """A position in the log; lines_since(mark) are the lines after it."""
        return len(self.log_lines())

    def lines_since(self, mark):
        return self.log_lines()[mark:]

    def wait_line(self, pattern, since=0, timeout=3.0):
        """The first log line after `since` matching the regex, or None."""
        rx = re.compile(pattern)
        end = time.monotonic() + rt.scaled(timeout)
        while True:
            for line in self.lines_since(since):
                if rx.search(line):
                    return line
            if time.monotonic() >= end:
                return None
            time.sleep(0.02)

    def tls_lines(self, peer_port, since=0):
        rx = re.compile(r" tls 127\.0\.0\.1:%d: " % peer_port)
        return [l for l in self.lines_since(since) if rx.search(l)]


def asan_build(server):
    """True if the running server is an AddressSanitizer build."""
    try:
        with open("/proc/%d/maps" % server.pid) as f:
            if "libasan" in f.read():
                return True
    except OSError:
        pass
    return "ASAN_OPTIONS" in os.environ   # scripts/sanitize.sh sets it


def stop_ok(t, server, what="server"):
    """Stops the server (SIGTERM) and checks it exited 0: a graceful stop,
    and in a sanitizer build no leak report (exit 23)."""
    rc = server.stop()
    t.eq(rc, 0, "%s: exit status after SIGTERM" % what)
    return rc


def start_error(args, timeout=10):
    """Runs `ringtls serve ARGS` expecting it to refuse to start; returns
    (exit status, stderr text). A server that starts anyway is stopped."""
    p = rt.Process([rt.RINGTLS_BIN, "serve", *[str(a) for a in args]], name="ringtls-start")
    rc = p.wait(timeout)
    if rc is None:
        p.stop()
        return None, p.log()
    return rc, p.log()


# --------------------------------------------------------------------------
# A test PKI, made with the openssl CLI

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ca]
default_ca = testca
[testca]
dir = %(dir)s
database = %(dir)s/index.txt
serial = %(dir)s/serial
new_certs_dir = %(dir)s/newcerts
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
organizationName = optional
"""


def openssl(*args, timeout=20, env=None):
    r = subprocess.run(["openssl", *[str(a) for a in args]], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode,
                                                          r.stderr.decode(errors="replace")))
    return r.stdout


class Pki:
    """Certificates for the tests, under dir:
    ca / other_ca        two test CAs
    a, b                 server certificates for a.test and b.test (by ca)
    client               client certificate by ca, subject /O=ringtls-test/CN=client-good
    client_other         client certificate by other_ca, /O=ringtls-test/CN=client-other
    Each attribute is a (cert_path, key_path) pair."""

    CLIENT_SUBJECT = "/O=ringtls-test/CN=client-good"

    def __init__(self, d=None):
        self.dir = d or temp_dir("rtls-pki-")
        self.cnf = os.path.join(self.dir, "openssl.cnf")
        os.makedirs(os.path.join(self.dir, "newcerts"), exist_ok=True)
        with open(self.cnf, "w") as f:
            f.write(_OPENSSL_CNF % {"dir": self.dir})
        with open(os.path.join(self.dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self._serial = 1
        self.ca = self.make_ca("ca", "/O=ringtls-test/CN=ringtls test CA")
        self.other_ca = self.make_ca("other_ca", "/O=ringtls-other/CN=other test CA")
        self.a = self.make_leaf("a", "/O=ringtls-test/CN=a.test", self.ca, san="DNS:a.test")
        self.b = self.make_leaf("b", "/O=ringtls-test/CN=b.test", self.ca, san="DNS:b.test")
        self.client = self.make_leaf("client", self.CLIENT_SUBJECT, self.ca, client=True)
        self.client_other = self.make_leaf("client_other", "/O=ringtls-test/CN=client-other",
                                           self.other_ca, client=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _newkey(self, name):
        key = self.path(name + ".key")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        return key

    def make_ca(self, name, subject):
        key = self._newkey(name)
        cert = self.path(name + ".pem")
        openssl("req", "-config", self.cnf, "-x509", "-new", "-key", key, "-subj", subject,
                "-days", "30", "-extensions", "v3_ca", "-out", cert)
        return cert, key

    def _csr(self, name, subject):
        key = self._newkey(name)
        csr = self.path(name + ".csr")
        openssl("req", "-config", self.cnf, "-new", "-key", key, "-subj", subject, "-out", csr)
        return key, csr

    def _extfile(self, name, san, client):
        ext = self.path(name + ".ext")
        lines = ["basicConstraints = CA:FALSE", "keyUsage = critical,digitalSignature",
                 "extendedKeyUsage = %s" % ("clientAuth" if client else "serverAuth")]
        if san:
            lines.append("subjectAltName = " + san)
        with open(ext, "w") as f:
            f.write("[ext]\n" + "\n".join(lines) + "\n")
        return ext

    def make_leaf(self, name, subject, ca, san=None, client=False, days=30):
        key, csr = self._csr(name, subject)
        cert = self.path(name + ".pem")
        self._serial += 1
        openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                "-set_serial", self._serial, "-days", days, "-sha256",
                "-extfile", self._extfile(name, san, client), "-extensions", "ext", "-out", cert)
        return cert, key

    def make_dated(self, name, subject, start, end, san=None):
        """A server certificate by ca with explicit validity dates
        (YYYYMMDDHHMMSSZ), through `openssl ca -startdate/-enddate`, since
        `openssl x509 -req` cannot backdate. Returns (cert, key)."""
        key, csr = self._csr(name, subject)
        cert = self.path(name + ".pem")
        openssl("ca", "-batch", "-config", self.cnf, "-cert", self.ca[0], "-keyfile", self.ca[1],
                "-in", csr, "-out", cert, "-notext", "-startdate", start, "-enddate", end,
                "-extfile", self._extfile(name, san, False), "-extensions", "ext")
        return cert, key


def der_of(pem_path):
    with open(pem_path) as f:
        pem = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
    return ssl.PEM_cert_to_DER_cert(m.group(0))


def cert_subject(pem_path):
    """The subject in OpenSSL's one-line form (/O=.../CN=...)."""
    out = openssl("x509", "-in", pem_path, "-noout", "-subject", "-nameopt", "compat")
    return out.decode().strip().split("=", 1)[1].strip()


# --------------------------------------------------------------------------
# HTTP over a Python TLS socket


class Resp:
    def __init__(self, status_line, headers, body):
        self.status_line = status_line
        m = re.match(r"^HTTP/\d\.\d (\d{3}) ", status_line)
        self.status = int(m.group(1)) if m else None
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def __repr__(self):
        return "<Resp %r %r %d body bytes>" % (self.status_line, self.headers, len(self.body))


def req(target="/", host="localhost", headers=(), method="GET"):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpReader:
    """Parses responses out of bytes fed by a `fill()` callable that returns
    the next chunk (b'' at EOF)."""

    def __init__(self, fill):
        self._fill = fill
        self.buf = b""
        self.eof = False

    def _more(self):
        if self.eof:
            raise EOFError("connection closed before the response was complete: %r" % self.buf[:200])
        chunk = self._fill()
        if not chunk:
            self.eof = True
            raise EOFError("connection closed before the response was complete: %r" % self.buf[:200])
        self.buf += chunk

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = []
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers.append((k, v.strip()))
        r = Resp(lines[0], headers, b"")
        n = int(r.header("Content-Length", "0"))
        while len(self.buf) < n:
            self._more()
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r


def client_ctx(verify=False, cafile=None, min_version=None, max_version=None, ciphers=None,
               alpn=("http/1.1",), cert=None, check_hostname=None):
    """An SSLContext for one test client. cert is a (cert, key) pair."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile)
        ctx.check_hostname = True if check_hostname is None else check_hostname
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


class TlsConn(rt.SockOwner):
    """A client TLS connection (ssl.SSLSocket) with an HTTP reader."""

    def __init__(self, port, ctx=None, server_hostname="localhost", session=None,
                 timeout=IO_TIMEOUT):
        ctx = ctx or client_ctx()
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session,
                                        suppress_ragged_eofs=False)
        except Exception:
            raw.close()
            raise
        self.reader = HttpReader(lambda: self.sock.recv(65536))

    def send(self, data):
        self.sock.sendall(data)

    def request(self, target="/", **kw):
        self.send(req(target, **kw))
        return self.reader.read_response()

    def read_response(self):
        return self.reader.read_response()

    @property
    def session(self):
        return self.sock.session


def get(port, target="/", ctx=None, **kw):
    """One request on a fresh TLS connection: (response, version, cipher,
    session, session_reused)."""
    with TlsConn(port, ctx, **kw) as c:
        r = c.request(target)
        # A TLS 1.3 ticket arrives after the handshake: read() has seen it
        # once a response is in.
        return r, c.sock.version(), c.sock.cipher()[0], c.sock.session, c.sock.session_reused


PAGE_CELL_RE = re.compile(r"<td id=(\w+)>(.*?)</td>")


def page_cells(body):
    """The built-in page's cells as {id: text}."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return {k: html.unescape(v) for k, v in PAGE_CELL_RE.findall(body)}


# --------------------------------------------------------------------------
# A hand-driven client: SSLObject over MemoryBIOs on a plain socket


def _first_flight(obj, out):
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def client_hello_bytes(ctx=None):
    """A real ClientHello from `ctx` (default client_ctx()), as bytes on the
    wire, without a connection."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = (ctx or client_ctx()).wrap_bio(inc, out, server_hostname="localhost")
    return _first_flight(obj, out)


class BioClient(rt.SockOwner):
    """Every byte in and out passes through the test: handshake steps,
    record boundaries and TCP segments are the test's choice."""

    def __init__(self, port, ctx=None, server_hostname="localhost", session=None,
                 timeout=IO_TIMEOUT, nodelay=False):
        self.ctx = ctx or client_ctx()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = self.ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname,
                                     session=session)
        self.tcp_eof = False
        self.plain = b""

    def pending_out(self):
        return self.out.read()

    def recv_raw(self):
        """One recv into the incoming BIO; False at TCP EOF/reset."""
        try:
            d = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.tcp_eof = True
            self.inc.write_eof()
            return False
        self.inc.write(d)
        return True

    def client_hello(self):
        """The ClientHello bytes (not yet sent)."""
        return _first_flight(self.obj, self.out)

    def alert_in(self, data):
        """Feeds the server's last bytes (then EOF) to the client; the alert
        it reports (its SSLError text), or what came instead."""
        self.inc.write(data)
        self.inc.write_eof()
        try:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return "no alert: the handshake wanted more"
            got = self.obj.read(65536)
            return "no alert: read %r" % got[:60]
        except ssl.SSLError as e:
            return str(e)

    def handshake(self, send_last=True):
        """Drives the handshake to completion. The client's last flight
        (its Finished) is sent only if send_last; otherwise it stays in the
        outgoing BIO for the caller."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = self.out.read()
                if data:
                    self.sock.sendall(data)
                if not self.recv_raw():
                    raise EOFError("server closed during the handshake")
        if send_last:
            data = self.out.read()
            if data:
                self.sock.sendall(data)

    def write(self, data):
        self.obj.write(data)
        self.sock.sendall(self.out.read())

    def read_some(self):
        """Plaintext from the next record(s); b'' once the server's
        close_notify is in. Raises ssl.SSLError on an alert, EOFError on a
        TCP close without close_notify."""
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                out = self.out.read()
                if out:
                    self.sock.sendall(out)
                if self.tcp_eof:
                    raise EOFError("TCP EOF without close_notify")
                self.recv_raw()
            except ssl.SSLZeroReturnError:
                return b""

    def reader(self):
        return HttpReader(self.read_some)


def parse_records(data):
    """Splits raw bytes into TLS records [(type, version, payload)] and the
    leftover partial bytes."""
    recs = []
    i = 0
    while i + 5 <= len(data):
        n = int.from_bytes(data[i + 3:i + 5], "big")
        if i + 5 + n > len(data):
            break
        recs.append((data[i], data[i + 1:i + 3], data[i + 5:i + 5 + n]))
        i += 5 + n
    return recs, data[i:]


def recv_until_closed(sock, timeout=3.0, limit=1 << 20):
    """Everything the peer sends until it closes: (bytes, how) with how in
    'eof', 'reset' or 'timeout' (the bound is scaled)."""
    end = time.monotonic() + rt.scaled(timeout)
    data = b""
    while len(data) < limit:
        left = end - time.monotonic()
        if left <= 0:
            return data, "timeout"
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        if not d:
            return data, "eof"
        data += d
    return data, "limit"


# --------------------------------------------------------------------------
# External clients, each run with a bound


class Run:
    def __init__(self, rc, out, timed_out):
        self.rc = rc
        self.out = out
        self.timed_out = timed_out

    def __repr__(self):
        return "<Run rc=%s timed_out=%s out=%r>" % (self.rc, self.timed_out, self.out[-1500:])


def interact(argv, send=b"", until=None, timeout=8.0, env=None):
    """Runs an interactive client: writes `send` to its stdin, keeps stdin
    open until `until` (a regex over stdout+stderr) shows up or the client
    exits, then closes stdin (the client's cue to close the connection,
    with close_notify) and waits for it to exit. Never longer than
    timeout + 5 s (scaled)."""
    timeout = rt.scaled(timeout)
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=out,
                             stderr=subprocess.STDOUT, env=env, close_fds=True)
        try:
            if send:
                p.stdin.write(send)
                p.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        end = time.monotonic() + timeout
        rx = re.compile(until) if until else None
        while rx and p.poll() is None and time.monotonic() < end:
            # pread: the child shares this file's offset; moving it would
            # make the child's next writes overwrite what it wrote before.
            size = os.fstat(out.fileno()).st_size
            if rx.search(os.pread(out.fileno(), size, 0).decode("utf-8", "replace")):
                break
            time.sleep(0.02)
        try:
            p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        timed_out = False
        try:
            p.wait(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            p.kill()
            p.wait(timeout=5)
        size = os.fstat(out.fileno()).st_size
        return Run(p.returncode, os.pread(out.fileno(), size, 0).decode("utf-8", "replace"), timed_out)


def s_client(port, *args, send=b"", until=None, timeout=8.0, env=None):
    return interact(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, *args],
                    send, until, timeout, env)


def s_client_session(out):
    """(Protocol, Cipher) from s_client's SSL-Session block."""
    p = re.search(r"^\s*Protocol\s*:\s*(\S+)", out, re.M)
    c = re.search(r"^\s*Cipher\s*:\s*(\S+)", out, re.M)
    return (p.group(1) if p else None, c.group(1) if c else None)


def curl_run(*args, timeout=15):
    r = subprocess.run(["curl", "-sS", "--max-time", "%g" % rt.scaled(10), *[str(a) for a in args]],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=rt.scaled(timeout))
    return r


CURL_TLS_RE = re.compile(r"SSL connection using (\S+) / (\S+)")


# Node: connect, print the session facts, send the requests, read until the
# marker, end with close_notify, print what came. Bounded by its own timer.
NODE_CLIENT = r"""
const tls = require('tls');
const cfg = JSON.parse(process.argv[1]);
const res = {info: null, data: '', error: null};
const done = (code) => { console.log(JSON.stringify(res)); process.exit(code); };
setTimeout(() => { res.error = 'timeout'; done(2); }, cfg.timeout_ms);
const opts = {host: '127.0.0.1', port: cfg.port, rejectUnauthorized: false,
              servername: cfg.servername || 'localhost'};
if (cfg.min) opts.minVersion = cfg.min;
if (cfg.max) opts.maxVersion = cfg.max;
if (cfg.ciphers) opts.ciphers = cfg.ciphers;
if (cfg.alpn) opts.ALPNProtocols = cfg.alpn;
const s = tls.connect(opts, () => {
  const c = s.getCipher();
  res.info = {version: s.getProtocol(), cipher: c.name, standard: c.standardName,
              alpn: s.alpnProtocol || null};
  s.write(cfg.send);
});
s.setEncoding('latin1');
s.on('data', (d) => { res.data += d; if (res.data.includes(cfg.until)) s.end(); });
s.on('error', (e) => { res.error = (e.code || '') + ' ' + e.message; done(1); });
s.on('close', () => done(res.error ? 1 : 0));
"""


def node_run(port, send, until, min_version=None, max_version=None, ciphers=None,
             alpn=("http/1.1",), timeout=8.0):
    timeout = rt.scaled(timeout)
    cfg = {"port": port, "send": send.decode("latin-1"), "until": until.decode("latin-1"),
           "min": min_version, "max": max_version, "ciphers": ciphers,
           "alpn": list(alpn) if alpn else None, "timeout_ms": int(timeout * 1000)}
    r = subprocess.run(["node", "-e", NODE_CLIENT, json.dumps(cfg)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    try:
        res = json.loads(r.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"info": None, "data": "", "error": "no result: %r %r" % (r.stdout, r.stderr)}
    res["rc"] = r.returncode
    return res


# Python in a child process, so that an OPENSSL_CONF can pick the TLS 1.3
# suites (the ssl module has no call for them).
PY_CLIENT = r"""
import json, socket, ssl, sys
cfg = json.loads(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if cfg['min']: ctx.minimum_version = getattr(ssl.TLSVersion, cfg['min'])
if cfg['max']: ctx.maximum_version = getattr(ssl.TLSVersion, cfg['max'])
if cfg['ciphers']: ctx.set_ciphers(cfg['ciphers'])
ctx.set_alpn_protocols(['http/1.1'])
res = {'info': None, 'data': '', 'error': None}
try:
    raw = socket.create_connection(('127.0.0.1', cfg['port']), timeout=cfg['timeout'])
    s = ctx.wrap_socket(raw, server_hostname='localhost')
    res['info'] = {'version': s.version(), 'cipher': s.cipher()[0]}
    s.sendall(cfg['send'].encode('latin-1'))
    data = b''
    while cfg['until'].encode('latin-1') not in data:
        d = s.recv(65536)
        if not d:
            break
        data += d
    res['data'] = data.decode('latin-1')
    s.unwrap()
    raw.close()
except Exception as e:
    res['error'] = repr(e)
print(json.dumps(res))
"""

_TLS13_CONF = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = %s
"""


def python_run(port, send, until, min_version=None, max_version=None, ciphers=None,
               suites13=None, timeout=8.0):
    """min/max_version: ssl.TLSVersion member names ('TLSv1_2'). suites13:
    the TLS 1.3 suites, set through an OPENSSL_CONF file."""
    timeout = rt.scaled(timeout)
    env = dict(os.environ)
    if suites13:
        conf = os.path.join(temp_dir("rtls-pyconf-"), "openssl.cnf")
        with open(conf, "w") as f:
            f.write(_TLS13_CONF % suites13)
        env["OPENSSL_CONF"] = conf
    cfg = {"port": port, "send": send.decode("latin-1"), "until": until.decode("latin-1"),
           "min": min_version, "max": max_version, "ciphers": ciphers, "timeout": timeout}
    r = subprocess.run([sys.executable, "-c", PY_CLIENT, json.dumps(cfg)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5, env=env)
    try:
        res = json.loads(r.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"info": None, "data": "", "error": "no result: %r %r" % (r.stdout, r.stderr)}
    res["rc"] = r.returncode
    return res


# gnutls-cli names: TLS 1.3 suite or OpenSSL TLS 1.2 cipher -> its cipher name.
GNUTLS_CIPHER = {
    "TLS_AES_128_GCM_SHA256": "AES-128-GCM",
    "TLS_AES_256_GCM_SHA384": "AES-256-GCM",
    "TLS_CHACHA20_POLY1305_SHA256": "CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "AES-128-GCM",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "AES-256-GCM",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "CHACHA20-POLY1305",
}
GNUTLS_DESC_RE = re.compile(r"^- Description: \((TLS1\.\d)[^)]*\)-.*-\(([A-Z0-9-]+)\)\s*$", re.M)


def gnutls_priority(version, gcipher, kx=None):
    """version 'TLS1.3'/'TLS1.2'/'TLS1.1'; gcipher a gnutls cipher name."""
    p = "NORMAL:-VERS-ALL:+VERS-%s:-CIPHER-ALL:+%s" % (version, gcipher)
    if kx:
        p += ":-KX-ALL:+%s" % kx
    return p


def gnutls_run(port, priority, *args, send=b"", until=None, timeout=8.0):
    return interact(["gnutls-cli", "--insecure", "--priority", priority, *args, "-p", str(port),
                     "127.0.0.1"], send, until, timeout)


# --------------------------------------------------------------------------
# Running a test


class Parts:
    """Counts what ran and what was skipped (a missing client tool), so
    that a file with nothing runnable exits 77 instead of passing."""

    def __init__(self):
        self.ran = 0
        self.skipped = []

    def need(self, tool, what):
        if have(tool):
            self.ran += 1
            return True
        msg = "%s: %s not installed" % (what, tool)
        self.skipped.append(msg)
        print("SKIP part: " + msg, flush=True)
        return False

    def skip(self, msg):
        self.skipped.append(msg)
        print("SKIP part: " + msg, flush=True)

    def finish(self):
        if self.skipped:
            print("skipped parts: " + "; ".join(self.skipped))
        if not self.ran:
            raise Skip("nothing could run: " + "; ".join(self.skipped))


def main(test_fn, watchdog=120):
    if not (os.path.isfile(rt.RINGTLS_BIN) and os.access(rt.RINGTLS_BIN, os.X_OK)):
        print("SKIP: ringtls not built: %s" % rt.RINGTLS_BIN)
        sys.exit(SKIP)
    if not have("openssl"):
        print("SKIP: the openssl CLI is needed to make test certificates")
        sys.exit(SKIP)
    rt.main(test_fn, watchdog=watchdog)
