#!/usr/bin/env python3
"""TLS to upstreams (issue 15, sections 3 and 4): `--proxy
PREFIX=https://HOST:PORT` and `--tcp-proxy LISTEN=tls://HOST:PORT`, with
--upstream-ca, --upstream-sni, --upstream-cert/--upstream-key, against
Debian's nginx as the TLS upstream (http servers, and stream servers in
front of Python echo/sink upstreams for TCP mode) and a Python ssl server
that requires a client certificate (CERT_REQUIRED: a missing certificate
fails the handshake itself, which nginx never does).

The PKI is made at start with the openssl CLI in a temporary directory:
CA, an unrelated CA2, a server certificate from CA for localhost,
alt.test and IP 127.0.0.1, one from CA for DNS:localhost only, one from
CA2 for localhost and 127.0.0.1, and a client certificate from CA.

a. https:// upstreams verified with --upstream-ca, TLS 1.3 and TLS 1.2
   (an nginx server each), by name (SNI "localhost") and by IP literal
   (no SNI, the IP SAN): a BIG file down (sha256), a BIG PUT up, stored
   by nginx's dav module and compared by sha256 on disk; the connection
   keeps serving.
b. verification failure: --upstream-ca CA2 and an upstream with CA's
   certificate: 502, one "tls upstream" warning with "certificate verify
   failed" and "unable to get local issuer certificate"; a route to an
   upstream with CA2's certificate, and a client connection opened
   before the failure, keep working; the same in TCP mode (the client's
   connection ends with no data, one tcp-proxy line); under
   --upstream-ca CA an upstream with CA2's certificate fails the same.
c. names: --upstream-sni wrong.example: 502, "hostname mismatch" (HTTP
   and TCP mode), a plaintext route keeps working; an IP-literal URL to
   a certificate without that IP SAN: 502, "IP address mismatch";
   --upstream-sni alt.test on an IP-literal URL: 200, and nginx saw SNI
   alt.test.
d. client certificates: nginx with ssl_verify_client on, no
   --upstream-cert: nginx completes the handshake and answers 400 "No
   required SSL certificate was sent" (nginx's way: it checks after the
   handshake), which the proxy relays as any answer; the Python server
   (CERT_REQUIRED) fails the handshake: 502 and one "tls upstream"
   line, TLS 1.2 and 1.3; TCP mode to it: the client's connection ends
   with no data. With --upstream-cert/--upstream-key: 200 and the
   upstream saw the client's subject (nginx $ssl_client_s_dn, the Python
   server's getpeercert()), HTTP over 1.3 and 1.2, and TCP mode to an
   nginx stream server with ssl_verify_client on.
e. resumption: --proxy-keepalive 0, RESUME requests one after the
   other to a TLS 1.3 and a TLS 1.2 nginx: each on a new upstream
   connection, the first a full handshake, the later ones resumed
   (nginx's $ssl_session_reused "r"); the same for TCP-mode sessions
   (nginx stream log). Python's own ssl client resumes against the same
   servers first (the fixture works).
f. TCP mode: TCP_MID bytes both ways to a Python TLS echo (which ends
   with close_notify: the client must get one), and EARLY_RUNS clients
   that send 1 KiB and end (close_notify + FIN) at once, before the
   server's upstream handshake is done; TCP_BIG bytes both ways through
   tls://127.0.0.1:P (TLS 1.3, no SNI: nginx's log) to nginx stream ->
   a Python echo, and TCP_MID over TLS 1.2 by name, sha256 each way
   (nginx, with the proxy_half_close an echo needs, ends its TLS side
   with a bare FIN: the client's end is printed, not checked);
   half-close: the client's close_notify + FIN reach the upstream (a
   Python TLS sink; nginx -> a plain sink) as its end, after which it
   sends HALF_BACK bytes that the client gets in full; one tcp-proxy
   line per session. nginx's half-close is first checked with a Python
   client straight to it.
g. an upstream that speaks plaintext HTTP (nginx) on an https:// route
   and a tls:// TCP route: 502 / a connection ended with no data,
   within FAIL_FAST s, one "tls upstream" line.
h. --upstream-proxy-protocol v1 and v2 with TLS upstreams: the PROXY
   header goes ahead of the ClientHello, in the clear. nginx with
   `listen ... ssl proxy_protocol` (an http server that returns
   $proxy_protocol_addr:$proxy_protocol_port, a stream server that
   `return`s them) saw the client's address and port; a Python upstream
   that reads the header raw gets exactly the v1 line / v2 block naming
   client and listener, then a TLS record (0x16), then serves over TLS;
   HTTP and TCP mode each. The fixture rejects what the old behaviour
   sent: Python's TLS client straight to nginx without a header fails,
   with a v1 header in front it works; ringtls without
   --upstream-proxy-protocol gets a 502 / a connection ended with no data
   and one "tls upstream" line.
i. --handshake-timeout 1s and an upstream that accepts and never says a
   word: https:// gets a 504 after about 1 s (not --proxy-timeout's 60 s),
   one warning "tls upstream ...: handshake timed out", the upstream is
   marked down and the next request is a prompt 503 that does not reach
   it; a route with a silent and a good upstream answers 200, marks the
   silent one down once and then only uses the good one; TCP mode: the
   client's connection is reset after about 1 s, the session line says
   "reset by us" / "connect failed (Connection timed out)".

RTLS_UPTLS_PARTS=a,b runs only those parts. Without nginx the test
SKIPs; without nginx's stream module (libnginx-mod-stream) the TCP-mode
checks are reported SKIP and the rest runs. Under valgrind
(RTLS_UNDER_VALGRIND=1) the sizes shrink."""
import hashlib
import os
import re
import socket
import ssl
import struct
import threading
import time
import traceback

import rtls_test as rt
import tls_util as tu
import upstreams as up
import test_tcp_proxy as tp
from test_proxy import Client

MIB = 1 << 20
VG = rt.UNDER_VALGRIND
BIG = (1 if VG else 8) * MIB           # a: down and up, per route
TCP_BIG = (4 if VG else 100) * MIB     # f: each way
TCP_MID = (1 if VG else 8) * MIB       # f: TLS 1.2 by name
SMALL = 64 << 10
RESUME = 4                             # e: requests / sessions per upstream
EARLY_RUNS = 5                         # f: sessions that end before the upstream handshake
FAIL_FAST = 3.0                        # g: a handshake failure is answered within (scaled)
HS_TIMEOUT = 3.0 if VG else 1.0        # i: --handshake-timeout (clients' handshakes too)
HS_LATE = HS_TIMEOUT + 3.0             # i: a handshake timeout is answered within (scaled)
PROMPT = 0.5                           # i: a request that skips a marked-down upstream (scaled)
WAIT = rt.scaled(20.0)
HOST = "example.test"
SMALL_TXT = b"small file over tls\n"
NO_CERT_400 = b"No required SSL certificate was sent"
CLIENT_CN = "ringtls upstream client"
PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PP_OK = b"pp ok\n"

TLS_LINE_RE = re.compile(r"^\S+ warn tls upstream ")
ANY_TLS_LINE_RE = re.compile(r"\btls upstream ")
HTTP_LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(http\)")
HTTPS_LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")
STREAM_MOD = "/usr/lib/nginx/modules/ngx_stream_module.so"


# --------------------------------------------------------------------------
# The PKI (openssl CLI)


def openssl(*args):
    p = rt.run_cmd(["openssl", *args], timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))


class Pki:
    """Files under d: NAME.pem / NAME.key for ca, ca2, srv (CA: localhost,
    alt.test, IP 127.0.0.1), srv_dns (CA: DNS:localhost only), srv2 (CA2:
    localhost, 127.0.0.1) and client (CA, clientAuth)."""

    def __init__(self, d):
        self.d = d
        self._ca("ca", "ringtls test CA")
        self._ca("ca2", "ringtls unrelated CA")
        self._leaf("srv", "ca", "/CN=localhost", "serverAuth",
                   "DNS:localhost,DNS:alt.test,IP:127.0.0.1", 2)
        self._leaf("srv_dns", "ca", "/CN=localhost", "serverAuth", "DNS:localhost", 3)
        self._leaf("srv2", "ca2", "/CN=localhost", "serverAuth", "DNS:localhost,IP:127.0.0.1", 4)
        self._leaf("client", "ca", "/O=ringtls tests/CN=%s" % CLIENT_CN, "clientAuth", None, 5)

    def pem(self, name):
        return os.path.join(self.d, name + ".pem")

    def key(self, name):
        return os.path.join(self.d, name + ".key")

    def _ca(self, name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key(name), "-out", self.pem(name), "-days", "2", "-subj",
                "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _leaf(self, name, ca, subj, eku, san, serial):
        ext = os.path.join(self.d, name + ".ext")
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature",
                 "extendedKeyUsage=" + eku, "subjectKeyIdentifier=hash",
                 "authorityKeyIdentifier=keyid"]
        if san:
            lines.append("subjectAltName=" + san)
        rt.write_file(ext, "\n".join(lines) + "\n")
        csr = os.path.join(self.d, name + ".csr")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key(name), "-out", csr, "-subj", subj)
        openssl("x509", "-req", "-in", csr, "-CA", self.pem(ca), "-CAkey", self.key(ca),
                "-set_serial", str(serial), "-days", "2", "-extfile", ext, "-out", self.pem(name))


# --------------------------------------------------------------------------
# nginx: http servers (files, PUT) and stream servers (TLS in front of
# Python upstreams)

NGINX_CONF = """\
%(load_stream)s
daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid %(p)s/nginx.pid;
events { worker_connections 512; }
http {
    log_format t '$server_port|$ssl_protocol|$ssl_session_reused|$ssl_server_name|'
                 '$request_method|$request_uri|$status|$connection|$ssl_client_s_dn';
    access_log %(p)s/logs/http.log t;
    client_body_temp_path %(p)s/tmp/body;
    proxy_temp_path %(p)s/tmp/proxy;
    fastcgi_temp_path %(p)s/tmp/fastcgi;
    uwsgi_temp_path %(p)s/tmp/uwsgi;
    scgi_temp_path %(p)s/tmp/scgi;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_max_body_size 0;
    ssl_protocols TLSv1.2 TLSv1.3;   # 1.22's default lacks TLSv1.3
    ssl_session_cache shared:H:1m;
    ssl_certificate %(pki)s/srv.pem;
    ssl_certificate_key %(pki)s/srv.key;
    server { listen 127.0.0.1:%(h13)d ssl; ssl_protocols TLSv1.3; include %(p)s/files.conf; }
    server { listen 127.0.0.1:%(h12)d ssl; ssl_protocols TLSv1.2; include %(p)s/files.conf; }
    server {
        listen 127.0.0.1:%(hdns)d ssl;
        ssl_certificate %(pki)s/srv_dns.pem;
        ssl_certificate_key %(pki)s/srv_dns.key;
        include %(p)s/files.conf;
    }
    server {
        listen 127.0.0.1:%(hca2)d ssl;
        ssl_certificate %(pki)s/srv2.pem;
        ssl_certificate_key %(pki)s/srv2.key;
        include %(p)s/files.conf;
    }
    server {
        listen 127.0.0.1:%(hm13)d ssl;
        ssl_protocols TLSv1.3;
        ssl_verify_client on;
        ssl_client_certificate %(pki)s/ca.pem;
        location / { return 200 "dn=$ssl_client_s_dn\\n"; }
    }
    server {
        listen 127.0.0.1:%(hm12)d ssl;
        ssl_protocols TLSv1.2;
        ssl_verify_client on;
        ssl_client_certificate %(pki)s/ca.pem;
        location / { return 200 "dn=$ssl_client_s_dn\\n"; }
    }
    server { listen 127.0.0.1:%(hplain)d; include %(p)s/files.conf; }
    server {
        listen 127.0.0.1:%(hpp)d ssl proxy_protocol;
        location / { return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port\n"; }
    }
}
%(stream)s
"""

# Every route's prefix is one path segment (/t13/), which reaches nginx
# unchanged: /PREFIX/put/NAME is stored under put/, /PREFIX/NAME served
# from www/NAME.
FILES_CONF = """\
location ~ ^/[^/]+/put/ {
    root %(p)s/put;
    dav_methods PUT;
    create_full_put_path on;
}
location ~ ^/[^/]+/(?<f>[^/]+)$ {
    root %(p)s/www;
    try_files /$f =404;
}
"""

STREAM_CONF = """\
stream {
    log_format s '$server_port|$ssl_protocol|$ssl_session_reused|$ssl_server_name|'
                 '$bytes_received|$bytes_sent|$status|$ssl_client_s_dn';
    access_log %(p)s/logs/stream.log s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:S:1m;
    ssl_certificate %(pki)s/srv.pem;
    ssl_certificate_key %(pki)s/srv.key;
    proxy_half_close on;
    server { listen 127.0.0.1:%(se13)d ssl; ssl_protocols TLSv1.3; proxy_pass %(echo)s; }
    server { listen 127.0.0.1:%(se12)d ssl; ssl_protocols TLSv1.2; proxy_pass %(echo)s; }
    server { listen 127.0.0.1:%(ssink)d ssl; proxy_pass %(sink)s; }
    server {
        listen 127.0.0.1:%(sca2)d ssl;
        ssl_certificate %(pki)s/srv2.pem;
        ssl_certificate_key %(pki)s/srv2.key;
        proxy_pass %(echo)s;
    }
    server {
        listen 127.0.0.1:%(sm)d ssl;
        ssl_verify_client on;
        ssl_client_certificate %(pki)s/ca.pem;
        proxy_pass %(echo)s;
    }
    server {
        listen 127.0.0.1:%(spp)d ssl proxy_protocol;
        return "pp=$proxy_protocol_addr:$proxy_protocol_port\n";
    }
}
"""

HTTP_PORTS = ("h13", "h12", "hdns", "hca2", "hm13", "hm12", "hplain", "hpp")
STREAM_PORTS = ("se13", "se12", "ssink", "sca2", "sm", "spp")


def distinct_ports(n):
    """n ports that were free a moment ago, all different: each socket
    stays bound until the last is picked (rt.free_port() one after the
    other can give the same port twice, and two nginx server blocks then
    share it: a CI failure under the sanitizer suite)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()

class Nginx:
    """One nginx (one process) with every server above on ports from
    rt.free_port(); .port[NAME]; .stream: whether the stream servers are
    there. Retried with new ports if a port was taken meanwhile."""

    def __init__(self, pki, echo, sink):
        self.stream = os.path.exists(STREAM_MOD)
        for attempt in range(3):
            self.p = rt.temp_dir("rtls-nginx-")
            self.proc = self._start(pki, echo, sink)
            ports = [self.port[n] for n in HTTP_PORTS + (STREAM_PORTS if self.stream else ())]
            if all(up.wait_tcp(pt, rt.scaled(10), self.proc.alive) for pt in ports):
                return
            self.proc.stop()
            print("nginx did not start (attempt %d): %s" % (attempt + 1, self.proc.log()))
        raise RuntimeError("nginx did not start")

    def _start(self, pki, echo, sink):
        p = self.p
        for sub in ("tmp", "www", "logs", "put"):
            os.makedirs(os.path.join(p, sub), exist_ok=True)
        rt.write_file(os.path.join(p, "www", "big.bin"), up.pattern(BIG, 5))
        rt.write_file(os.path.join(p, "www", "small.txt"), SMALL_TXT)
        rt.write_file(os.path.join(p, "files.conf"), FILES_CONF % {"p": p})
        names = HTTP_PORTS + STREAM_PORTS
        self.port = dict(zip(names, distinct_ports(len(names))))
        v = dict(self.port, p=p, pki=pki.d, echo=echo.spec, sink=sink.spec,
                 load_stream="load_module %s;" % STREAM_MOD if self.stream else "")
        v["stream"] = STREAM_CONF % v if self.stream else ""
        conf = os.path.join(p, "nginx.conf")
        rt.write_file(conf, NGINX_CONF % v)
        return rt.Process([up.nginx_binary(), "-p", p + "/", "-c", conf, "-e", "stderr"],
                          name="nginx")

    def put_path(self, target):
        return os.path.join(self.p, "put", target.lstrip("/"))

    def _log(self, name, fields):
        try:
            with open(os.path.join(self.p, "logs", name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [l.split("|", fields - 1) for l in text.splitlines() if l]

    def http_log(self):
        """[port, protocol, reused, sni, method, uri, status, connection, client dn]"""
        return self._log("http.log", 9)

    def stream_log(self):
        """[port, protocol, reused, sni, bytes in, bytes out, status, client dn]"""
        return self._log("stream.log", 8)

    def http_entry(self, uri, timeout=5.0):
        """The access log entry of the request for uri (unique), once written."""
        end = time.monotonic() + rt.scaled(timeout)
        while True:
            got = [e for e in self.http_log() if e[5] == uri]
            if got or time.monotonic() >= end:
                return got[0] if got else None
            time.sleep(0.02)

    def stream_entries(self, port, n, timeout=5.0):
        """The stream log entries of server `port`, once there are n."""
        end = time.monotonic() + rt.scaled(timeout)
        while True:
            got = [e for e in self.stream_log() if e[0] == str(port)]
            if len(got) >= n or time.monotonic() >= end:
                return got
            time.sleep(0.02)


# --------------------------------------------------------------------------
# A Python TLS upstream that requires a client certificate


class StrictTls:
    """ssl server on 127.0.0.1:0 with CERT_REQUIRED (CA), TLS at most
    `version`. After the handshake it answers one HTTP request with
    "subject=CN" of the client's certificate and closes. .results: per
    connection, "ok CN" or "handshake: ERROR"."""

    def __init__(self, pki, version):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.pem("srv"), pki.key("srv"))
        self.ctx.load_verify_locations(pki.pem("ca"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.minimum_version = self.ctx.maximum_version = version
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.results = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, raw):
        raw.settimeout(WAIT)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.results.append("handshake: %s" % e)
            raw.close()
            return
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    # TLS 1.3: the client's certificate is checked after
                    # the client's side of the handshake ended.
                    self.results.append("no request")
                    return
                buf += d
            cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
            self.results.append("ok " + cn)
            body = ("subject=%s\n" % cn).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body)
            s.unwrap()
        except (ssl.SSLError, OSError) as e:
            self.results.append("after handshake: %s" % e)
        finally:
            s.close()

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------
# Python TLS upstreams for TCP mode that end cleanly (nginx stream, with
# the proxy_half_close that an echo needs, ends its TLS side with a bare
# FIN, never a close_notify)


def server_ctx(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.pem("srv"), pki.key("srv"))
    return ctx


def _tls_read_to_end(s, rec, echo):
    """Reads (and echoes) until the peer's close_notify ("close_notify"),
    a bare FIN ("eof") or an error; fills rec n, sha, end."""
    h = hashlib.sha256()
    n = 0
    end = None
    while end is None:
        try:
            d = s.recv(tp.CHUNK)
        except ssl.SSLEOFError:
            end = "eof"
            break
        except socket.timeout:
            end = "timeout"
            break
        except (ssl.SSLError, OSError) as e:
            end = "error: %s" % e
            break
        if not d:
            end = "close_notify"
            break
        n += len(d)
        h.update(d)
        if echo:
            s.sendall(d)
    rec.update(n=n, sha=h.hexdigest(), end=end)


def _tls_close(s, rec):
    """Our close_notify, then the TCP close."""
    try:
        s.unwrap().close()
        rec["closed"] = "close_notify"
    except (ssl.SSLError, OSError) as e:
        rec["closed"] = "error: %s" % e
        s.close()


def h_tls_echo(ctx):
    """TLS server: echoes until the client's close_notify, then sends its own."""
    def handler(conn, rec, upst):
        conn.settimeout(WAIT)
        s = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
        rec["version"] = s.version()
        _tls_read_to_end(s, rec, echo=True)
        _tls_close(s, rec)
    return handler


def h_tls_sink_then_send(ctx, size, seed):
    """TLS server: reads to the client's close_notify, THEN sends `size`
    bytes, then its close_notify (a half-close over TLS)."""
    def handler(conn, rec, upst):
        conn.settimeout(WAIT)
        s = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
        _tls_read_to_end(s, rec, echo=False)
        if rec["end"] == "close_notify":
            s.sendall(tp.data(size, seed))
            rec["sent"] = size
        _tls_close(s, rec)
    return handler


# --------------------------------------------------------------------------
# A Python TLS upstream that reads a PROXY header raw, ahead of the TLS
# handshake (h)


def _recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        d = conn.recv(n - len(buf))
        if not d:
            raise ConnectionError("closed after %d of %d bytes: %r" % (len(buf), n, buf))
        buf += d
    return buf


def read_pp(conn):
    """The PROXY header at the start of conn, read and nothing after it:
    (version or None, (src, sport, dst, dport) or None, the raw bytes).
    v2: PROXY command, TCP over IPv4 only (TLVs after the addresses are
    read, not parsed)."""
    raw = _recv_exact(conn, 1)
    if raw == b"P":
        while not raw.endswith(b"\r\n") and len(raw) < 108:
            raw += _recv_exact(conn, 1)
        f = raw[:-2].decode("ascii", "replace").split(" ")
        if len(f) != 6 or f[:2] != ["PROXY", "TCP4"] or not raw.endswith(b"\r\n"):
            return 1, None, raw
        return 1, (f[2], int(f[4]), f[3], int(f[5])), raw
    raw += _recv_exact(conn, 15)
    if raw[:12] != PP2_SIG:
        return None, None, raw
    n = struct.unpack("!H", raw[14:16])[0]
    body = _recv_exact(conn, n)
    raw += body
    if raw[12] != 0x21 or raw[13] != 0x11 or n < 12:
        return 2, None, raw
    sport, dport = struct.unpack("!HH", body[8:12])
    return 2, (socket.inet_ntoa(body[0:4]), sport, socket.inet_ntoa(body[4:8]), dport), raw


def h_pp_tls(ctx):
    """The PROXY header (rec["pp"]), a peek at the byte after it
    (rec["next"]: a TLS handshake record is 0x16), then TLS: an HTTP GET
    gets 200 PP_OK and Connection: close; anything else its first piece
    echoed. rec["end"] = "served"."""
    def handler(conn, rec, upst):
        conn.settimeout(WAIT)
        rec["pp"] = read_pp(conn)
        rec["next"] = conn.recv(1, socket.MSG_PEEK)
        s = ctx.wrap_socket(conn, server_side=True)
        buf = s.recv(65536)
        if buf.startswith(b"GET "):
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                      % len(PP_OK) + PP_OK)
        else:
            s.sendall(buf)
        rec["end"] = "served"
        try:
            s.unwrap()
        except (ssl.SSLError, OSError):
            pass
    return handler


# --------------------------------------------------------------------------
# ringtls


class Rtls(rt.Process):
    """ringtls serve --listen 127.0.0.1:0 (.port) and ntcp --tcp-proxy
    listeners (.tcp, in the order given), one reactor, info log."""

    def __init__(self, name, *args, ntcp=0):
        # (--state-dir, for the self-signed certificate of the TCP-mode
        # listeners, is refused without a TLS listener)
        state = ["--state-dir", rt.temp_dir("rtls-state-")] if ntcp else []
        argv = [rt.RINGTLS_BIN, "serve", "--listen", "127.0.0.1:0", *state, "--threads", "1",
                "--log-level", "info", "--shutdown-timeout", "3s", *[str(a) for a in args]]
        super().__init__(argv, name=name)
        end = time.monotonic() + rt.START_TIMEOUT
        while True:
            log = self.log()
            m = HTTP_LISTEN_RE.search(log)
            tcp = [int(p) for p in HTTPS_LISTEN_RE.findall(log)]
            if m and len(tcp) >= ntcp:
                self.port, self.tcp = int(m.group(1)), tcp
                return
            if not self.alive() or time.monotonic() > end:
                raise RuntimeError("%s did not start (exit %s); stderr:\n%s"
                                   % (name, self.proc.poll(), log))
            time.sleep(0.02)

    def lines(self):
        return self.log_lines()

    def mark(self):
        return len(self.log_lines())

    def since(self, mark):
        return self.log_lines()[mark:]


def tls_lines(s, mark, settle=0.3, timeout=5.0):
    """The "tls upstream" lines after mark, once one is there and no more
    has come for `settle` s (or after timeout, scaled)."""
    end = time.monotonic() + rt.scaled(timeout)
    last, since = None, time.monotonic()
    while True:
        got = [l for l in s.since(mark) if ANY_TLS_LINE_RE.search(l)]
        now = time.monotonic()
        if len(got) != last:
            last, since = len(got), now
        if (got and now - since >= settle) or now >= end:
            return got
        time.sleep(0.02)


def check_tls_line(t, s, mark, what, *wants):
    """Exactly one warning "tls upstream ..." line after mark, containing
    every string in wants (OpenSSL's words for the reason)."""
    got = tls_lines(s, mark)
    if not t.check(len(got) == 1, "%s: exactly one 'tls upstream' log line, got %r (all lines "
                   "since: %r)" % (what, got, s.since(mark))):
        if not got:
            return None
    line = got[0]
    t.check(TLS_LINE_RE.search(line), "%s: the line is a warning starting 'tls upstream ': %r"
            % (what, line))
    for w in wants:
        alts = w if isinstance(w, tuple) else (w,)
        t.check(any(a in line for a in alts), "%s: the line says %s: %r"
                % (what, " or ".join(repr(a) for a in alts), line))
    print("%s: %s" % (what, line), flush=True)
    return line


def get(s, target, timeout=None):
    """One GET on a fresh client connection: (Response or None, seconds, client port)."""
    t0 = time.monotonic()
    with Client(s.port, timeout=rt.scaled(timeout or 10)) as c:
        try:
            r = c.request("GET", target, host=HOST)
        except (rt.ConnClosed, socket.timeout, OSError) as ex:
            print("GET %s: %r" % (target, ex))
            r = None
        return r, time.monotonic() - t0, c.local_port


def fail_502(t, s, target, what, *wants):
    """A GET that must get a 502 promptly and one "tls upstream" line."""
    mark = s.mark()
    r, dt, _ = get(s, target, timeout=FAIL_FAST + 5)
    t.eq(r and r.status, 502, "%s: status" % what)
    t.check(dt <= rt.scaled(FAIL_FAST), "%s: answered after %.2f s, want <= %g"
            % (what, dt, rt.scaled(FAIL_FAST)))
    return check_tls_line(t, s, mark, what, *wants)


def ok_small(t, s, target, what):
    r, _, _ = get(s, target)
    t.eq((r and r.status, r and r.body), (200, SMALL_TXT), "%s: status, body" % what)
    return r


def put_big(c, target, n, seed):
    """PUT n pattern bytes, sent from a thread; returns the response."""
    c.send(rt.request("PUT", target, headers=["Content-Length: %d" % n], host=HOST))
    err = []

    def send():
        try:
            for piece in up.pattern_chunks(n, seed, chunk=256 << 10):
                c.send(piece)
        except OSError as e:
            err.append(e)

    th = threading.Thread(target=send, daemon=True)
    th.start()
    r = c.response()
    th.join(rt.scaled(10))
    return r, err


# --------------------------------------------------------------------------
# TCP mode


def session_start():
    """The tcp-proxy line a session check reads is logged after this: an
    earlier session of the same server may have had the same client port
    (a port the server closed first is free again at once), and its line
    must not be taken for this one's (test_tcp_proxy.PART_T0). CI saw it:
    a TCP-mode check of part d and part f's fifth session, one port."""
    tp.PART_T0 = time.time()


def tcp_closed_no_data(t, s, port, what):
    """A session whose upstream handshake fails: the client's own
    handshake completes, then the connection ends with no data, within
    FAIL_FAST s; one tcp-proxy line. Returns the client's port."""
    session_start()
    t0 = time.monotonic()
    try:
        c = tp.TlsPipe(port)
    except (OSError, rt.ConnClosed, ssl.SSLError) as ex:
        t.check(False, "%s: the client's handshake did not complete: %r" % (what, ex))
        return None
    with c:
        done = c.run(read=True, timeout=rt.scaled(FAIL_FAST + 5))
        dt = time.monotonic() - t0
        t.check(done, "%s: the connection ended" % what)
        t.eq(c.rx, 0, "%s: bytes the client got" % what)
        t.check(dt <= rt.scaled(FAIL_FAST), "%s: ended after %.2f s, want <= %g"
                % (what, dt, rt.scaled(FAIL_FAST)))
        print("%s: the client saw %s after %.2f s" % (what, c.peer_end, dt), flush=True)
        cport = c.local_port
    d = tp.session(s, cport)
    t.check(d is not None and "unparsed" not in d, "%s: a tcp-proxy line for client port %d: %r"
            % (what, cport, tp.session_lines(s, cport)))
    time.sleep(0.05)
    t.eq(len(tp.session_lines(s, cport)), 1, "%s: tcp-proxy lines naming the client" % what)
    if d and "unparsed" not in d:
        t.eq((d["to_up"], d["to_client"]), (0, 0), "%s: log: bytes each way" % what)
        print("%s: %s" % (what, d["line"]), flush=True)
    return cport


def tcp_fail(t, s, port, what, *wants):
    mark = s.mark()
    cport = tcp_closed_no_data(t, s, port, what)
    line = check_tls_line(t, s, mark, what, *wants)
    return cport, line


# How the upstream's side ended, in the session line: an upstream that
# ends with close_notify (the Python TLS upstreams), and one that ends
# with a bare FIN (nginx stream), where the test takes what the log says.
UP_END_CLEAN = re.compile(r"close_notify|FIN")
UP_END_ANY = re.compile(r".+")


def tcp_echo(t, s, port, echo, size, what, seed=1, up_port=None, clean=False, early=False):
    """size bytes both ways through a TLS upstream, sha256 each way; one
    tcp-proxy line. clean: the upstream is a Python TLS echo, which ends
    with close_notify after the client's: the client must get
    close_notify; else it is nginx stream in front of a plain echo, whose
    TLS side ends with a bare FIN: the client's end is only printed.
    early: the client sends everything and ends (close_notify + FIN) at
    once, for small sizes before the server's upstream handshake is
    done; else it ends once all came back."""
    src = tp.data(size, seed)
    echo.drain()
    session_start()
    t0 = time.monotonic()
    with tp.TlsPipe(port) as c:
        limit = WAIT + size / (2 * MIB)
        if early:
            done = c.run(src, end="close_notify", timeout=limit)
        else:
            done = (c.run(src, until=lambda: c.rx >= size or c.peer_end, timeout=limit)
                    and c.run(b"", end="close_notify", timeout=WAIT))
        dt = time.monotonic() - t0
        t.check(done, "%s: the exchange ended in time (sent %d of %d, got %d, end %r)"
                % (what, c.tx_wire, size, c.rx, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest()), (size, tp.sha(src)), "%s: bytes back, sha256" % what)
        if clean:
            t.eq(c.peer_end, "close_notify", "%s: the server's end" % what)
        else:
            t.check(c.peer_end in ("close_notify", "fin"), "%s: the server's end: %r"
                    % (what, c.peer_end))
        cport = c.local_port
        # (nothing came back: the echo may never have had a connection)
        rec = echo.next_done(timeout=None if c.rx else rt.scaled(2))
    if t.check(rec is not None, "%s: the echo's connection ended" % what):
        t.eq((rec.get("n"), rec.get("sha"), rec.get("end")),
             (size, tp.sha(src), "close_notify" if clean else "eof"),
             "%s: the echo got: bytes, sha256, end" % what)
    print("%s: %d KiB each way in %.2f s, the client saw %s" % (what, size >> 10, dt, c.peer_end),
          flush=True)
    d = tp.check_session(t, s, cport, what, to_up=size, to_client=size, cend="close_notify",
                         uend=UP_END_CLEAN if clean else UP_END_ANY, how="copied")
    if d:
        print("%s: %s" % (what, d["line"]), flush=True)
        if up_port:
            t.check(str(up_port) in d["up"], "%s: log: the upstream %r names port %d"
                    % (what, d["up"], up_port))
    return d


def tcp_half_close(t, s, port, sink, what, clean):
    """The client sends HALF_UP bytes, close_notify and FIN; the sink
    reads to its end, THEN sends HALF_BACK bytes, which the client gets
    in full."""
    src, back = tp.data(tp.HALF_UP, 2), tp.data(tp.HALF_BACK, 3)
    sink.drain()
    session_start()
    with tp.TlsPipe(port) as c:
        done = c.run(src, end="close_notify")
        t.check(done, "%s: ended in time (got %d, end %r)" % (what, c.rx, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest()), (tp.HALF_BACK, tp.sha(back)),
             "%s: after our close_notify + FIN: bytes, sha256" % what)
        if clean:
            t.eq(c.peer_end, "close_notify", "%s: then the server's end" % what)
        print("%s: the client saw %s" % (what, c.peer_end), flush=True)
        cport = c.local_port
    rec = sink.next_done()
    if t.check(rec is not None, "%s: the sink's connection ended" % what):
        t.eq((rec.get("n"), rec.get("sha"), rec.get("end"), rec.get("sent")),
             (tp.HALF_UP, tp.sha(src), "close_notify" if clean else "eof", tp.HALF_BACK),
             "%s: the sink got: bytes, sha256, end; then sent" % what)
    d = tp.check_session(t, s, cport, what, to_up=tp.HALF_UP, to_client=tp.HALF_BACK,
                         cend="close_notify", uend=UP_END_CLEAN if clean else UP_END_ANY,
                         how="copied")
    if d:
        print("%s: %s" % (what, d["line"]), flush=True)


# --------------------------------------------------------------------------
# Fixture self-checks: nginx does what the cases rely on, with Python's
# own TLS client (so that a failure below is ringtls's)


def py_ctx(pki, version=None, cert=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.pem("ca"))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(pki.pem("client"), pki.key("client"))
    return ctx


def py_get(ctx, port, target, session=None):
    """GET over Python's TLS to nginx; (status line, session, reused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=rt.IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                      % target.encode())
            buf = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            return buf.split(b"\r\n", 1)[0], s.session, s.session_reused


def selfcheck_resume(t, e):
    for name, ver in (("h13", ssl.TLSVersion.TLSv1_3), ("h12", ssl.TLSVersion.TLSv1_2)):
        ctx = py_ctx(e.pki, ver)
        st, sess, _ = py_get(ctx, e.ng.port[name], "/x/small.txt")
        st2, _, reused = py_get(ctx, e.ng.port[name], "/x/small.txt", session=sess)
        t.check(st == st2 == b"HTTP/1.1 200 OK" and reused,
                "fixture: nginx %s resumes a Python client's session (%r %r %r)"
                % (name, st, st2, reused))


def selfcheck_half_close(t, e):
    """A TLS client straight to nginx stream -> sink: after its
    close_notify + FIN it still gets HALF_BACK bytes (proxy_half_close,
    and nginx writes after the peer's close_notify)."""
    src = tp.data(tp.HALF_UP, 2)
    e.sink.drain()
    with tp.TlsPipe(e.ng.port["ssink"]) as c:
        c.run(src, end="close_notify")
        got = (c.rx, c.peer_end)
    rec = e.sink.next_done()
    # nginx ends its side with a bare FIN: proxy_half_close shuts the
    # socket, no close_notify.
    t.check(got[0] == tp.HALF_BACK and got[1] in ("close_notify", "fin") and rec is not None
            and (rec.get("n"), rec.get("end")) == (tp.HALF_UP, "eof"),
            "fixture: nginx stream half-close: the client got %r, the sink %r"
            % (got, rec and {k: rec.get(k) for k in ("n", "end", "sent")}))


# --------------------------------------------------------------------------
# Parts


def part_a(t, e):
    s = e.server("good")
    for route, proto, sni in (("/t13/", "TLSv1.3", "localhost"), ("/t12/", "TLSv1.2", "localhost"),
                              ("/ip/", "TLSv1.3", "-")):
        what = "a. %s (%s, SNI %s)" % (route, proto, sni)
        with Client(s.port, timeout=WAIT) as c:
            uri = route + "big.bin?a"
            r = c.request("GET", uri, host=HOST, keep=False)
            t.eq((r.status, r.n, r.sha), (200, BIG, up.pattern_sha(BIG, 5)),
                 "%s: GET big.bin: status, length, sha256" % what)
            ent = e.ng.http_entry(uri)
            if t.check(ent is not None, "%s: nginx logged the GET" % what):
                t.eq((ent[1], ent[3], ent[6]), (proto, sni, "200"),
                     "%s: nginx saw: protocol, SNI, status" % what)
            target = route + "put/up.bin"
            r, err = put_big(c, target, BIG, 11)
            t.check(r.status in (201, 204) and not err, "%s: PUT %d bytes: status %d, send "
                    "error %r" % (what, BIG, r.status, err))
            try:
                with open(e.ng.put_path(target), "rb") as f:
                    got = f.read()
            except OSError as ex:
                got = b""
                print("%s: %r" % (what, ex))
            t.eq((len(got), rt.sha256(got)), (BIG, up.pattern_sha(BIG, 11)),
                 "%s: what nginx stored: length, sha256" % what)
            r = c.request("GET", route + "small.txt", host=HOST)
            t.eq((r.status, r.body), (200, SMALL_TXT), "%s: the connection serves on" % what)
    t.check(not tls_lines(s, 0, settle=0, timeout=0), "a. no 'tls upstream' line: %r"
            % tls_lines(s, 0, settle=0, timeout=0))


def part_b(t, e):
    s = e.server("ca2")
    with Client(s.port, timeout=WAIT) as before:
        r = before.request("GET", "/good/small.txt", host=HOST)
        t.eq((r.status, r.body), (200, SMALL_TXT), "b. a connection before: first request")
        fail_502(t, s, "/bad/small.txt", "b. --upstream-ca CA2, upstream from CA",
                 "certificate verify failed", "unable to get local issuer certificate")
        t.check(not e.ng.http_entry("/bad/small.txt", timeout=0.3),
                "b. no request reached the upstream that failed verification")
        r = before.request("GET", "/good/small.txt", host=HOST)
        t.eq((r.status, r.body), (200, SMALL_TXT), "b. the connection from before serves on")
    ok_small(t, s, "/good/small.txt", "b. a route to an upstream from CA2, after")
    r, dt, _ = get(s, "/bad/small.txt", timeout=FAIL_FAST + 5)
    t.check(r is not None and r.status in (502, 503) and dt <= rt.scaled(FAIL_FAST),
            "b. the failing route again: a prompt 502/503, got %r after %.2f s" % (r, dt))
    print("b. the failing route again: %s" % (r and r.status))
    fail_502(t, e.server("good"), "/ca2/small.txt", "b. --upstream-ca CA, upstream from CA2",
             "certificate verify failed", "unable to get local issuer certificate")
    if not e.ng.stream:
        t.skip("b. TCP mode: no nginx stream module")
        return
    tcp_fail(t, s, s.tcp[0], "b. TCP mode, --upstream-ca CA2, upstream from CA",
             "certificate verify failed", "unable to get local issuer certificate")
    tcp_echo(t, s, s.tcp[1], e.echo, SMALL, "b. TCP mode, an upstream from CA2, after",
             up_port=e.ng.port["sca2"])


def part_c(t, e):
    s = e.server("sni")
    fail_502(t, s, "/x/small.txt", "c. --upstream-sni wrong.example", "certificate verify failed",
             "hostname mismatch")
    ok_small(t, s, "/http/small.txt", "c. a plaintext route of that server")
    fail_502(t, e.server("good"), "/dnsonly/small.txt",
             "c. an IP-literal URL, no IP SAN in the certificate", "certificate verify failed",
             "IP address mismatch")
    s = e.server("alt")
    ok_small(t, s, "/alt/small.txt?c", "c. --upstream-sni alt.test, IP-literal URL")
    ent = e.ng.http_entry("/alt/small.txt?c")
    t.check(ent is not None and ent[3] == "alt.test", "c. nginx saw SNI alt.test: %r" % ent)
    if not e.ng.stream:
        t.skip("c. TCP mode: no nginx stream module")
        return
    s = e.server("sni")
    tcp_fail(t, s, s.tcp[0], "c. TCP mode, --upstream-sni wrong.example",
             "certificate verify failed", "hostname mismatch")


def part_d(t, e):
    s = e.server("good")
    what = "d. nginx ssl_verify_client on, no --upstream-cert"
    uri = "/mtls/small.txt?d"
    mark = s.mark()
    r, _, _ = get(s, uri)
    # nginx requests a certificate but does not fail the handshake
    # without one: it answers 400 over TLS, which the proxy relays.
    t.eq(r and r.status, 400, "%s: nginx's answer relayed: status" % what)
    t.check(r is not None and NO_CERT_400 in r.body, "%s: body says %r: %r"
            % (what, NO_CERT_400, r and r.body[:200]))
    ent = e.ng.http_entry(uri)
    t.check(ent is not None and ent[6] == "400" and ent[8] == "-",
            "%s: nginx logged a 400 with no client DN: %r" % (what, ent))
    t.check(not tls_lines(s, mark, settle=0.2, timeout=0.5),
            "%s: no 'tls upstream' line (the handshake succeeded)" % what)
    fail_502(t, s, "/strict12/x", "d. CERT_REQUIRED, TLS 1.2, no --upstream-cert",
             ("alert", "certificate"))
    fail_502(t, s, "/strict13/x", "d. CERT_REQUIRED, TLS 1.3, no --upstream-cert",
             ("alert", "certificate"))
    print("d. the strict servers saw: %r %r" % (e.strict12.results, e.strict13.results))
    if e.ng.stream:
        tcp_fail(t, s, s.tcp[4], "d. TCP mode, CERT_REQUIRED TLS 1.2, no --upstream-cert",
                 ("alert", "certificate"))
    else:
        t.skip("d. TCP mode: no nginx stream module")
    s = e.server("cert")
    for route in ("/mtls13/", "/mtls12/"):
        what = "d. --upstream-cert, nginx %s" % route
        r, _, _ = get(s, route + "x?d")
        t.eq(r and r.status, 200, "%s: status" % what)
        t.check(r is not None and r.body.startswith(b"dn=")
                and ("CN=%s" % CLIENT_CN).encode() in r.body,
                "%s: nginx saw the client's subject: %r" % (what, r and r.body))
    for route in ("/strict12/", "/strict13/"):
        what = "d. --upstream-cert, CERT_REQUIRED %s" % route
        r, _, _ = get(s, route + "x")
        t.eq((r and r.status, r and r.body), (200, ("subject=%s\n" % CLIENT_CN).encode()),
             "%s: status, the subject the upstream saw" % what)
    if not e.ng.stream:
        t.skip("d. TCP mode with --upstream-cert: no nginx stream module")
        return
    n0 = len(e.ng.stream_entries(e.ng.port["sm"], 0, timeout=0))
    tcp_echo(t, s, s.tcp[0], e.echo, SMALL, "d. TCP mode, --upstream-cert, nginx "
             "ssl_verify_client on", up_port=e.ng.port["sm"])
    ents = e.ng.stream_entries(e.ng.port["sm"], n0 + 1)
    t.check(len(ents) > n0 and "CN=%s" % CLIENT_CN in ents[-1][7],
            "d. TCP mode: nginx stream saw the client's subject: %r" % ents[n0:])


def part_e(t, e):
    selfcheck_resume(t, e)
    s = e.server("resume")
    for route, proto in (("/t13/", "TLSv1.3"), ("/t12/", "TLSv1.2")):
        what = "e. --proxy-keepalive 0, %s %s" % (route, proto)
        ents = []
        for i in range(RESUME):
            uri = "%ssmall.txt?e%d" % (route, i)
            ok_small(t, s, uri, "%s #%d" % (what, i + 1))
            ents.append(e.ng.http_entry(uri))
        if not t.check(all(ents), "%s: nginx logged every request: %r" % (what, ents)):
            continue
        t.eq(len({x[7] for x in ents}), RESUME, "%s: upstream connections used" % what)
        t.eq([(x[1], x[2]) for x in ents], [(proto, ".")] + [(proto, "r")] * (RESUME - 1),
             "%s: nginx's (protocol, $ssl_session_reused) per connection" % what)
    if not e.ng.stream:
        t.skip("e. TCP mode: no nginx stream module")
        return
    for i, (name, proto) in enumerate((("se13", "TLSv1.3"), ("se12", "TLSv1.2"))):
        what = "e. TCP mode %s" % proto
        n0 = len(e.ng.stream_entries(e.ng.port[name], 0, timeout=0))
        for k in range(RESUME):
            tcp_echo(t, s, s.tcp[i], e.echo, 1024, "%s #%d" % (what, k + 1), seed=20 + k)
        ents = e.ng.stream_entries(e.ng.port[name], n0 + RESUME)[n0:]
        t.eq([(x[1], x[2]) for x in ents], [(proto, ".")] + [(proto, "r")] * (RESUME - 1),
             "%s: nginx stream's (protocol, $ssl_session_reused) per session" % what)


def part_f(t, e):
    s = e.server("good")
    tcp_echo(t, s, s.tcp[5], e.techo, TCP_MID, "f. tls://127.0.0.1 to a Python TLS echo, %d MiB "
             "both ways" % (TCP_MID >> 20), seed=3, up_port=e.techo.port, clean=True)
    for i in range(EARLY_RUNS):
        tcp_echo(t, s, s.tcp[5], e.techo, 1024, "f. a client that sends 1 KiB and ends at once, "
                 "Python TLS echo, #%d" % (i + 1), seed=30 + i, clean=True, early=True)
    tcp_half_close(t, s, s.tcp[6], e.tsink, "f. half-close client->upstream, Python TLS sink",
                   clean=True)
    if not e.ng.stream:
        t.skip("f. TCP mode through nginx: no nginx stream module")
        return
    selfcheck_half_close(t, e)
    n0 = len(e.ng.stream_entries(e.ng.port["se13"], 0, timeout=0))
    tcp_echo(t, s, s.tcp[0], e.echo, TCP_BIG, "f. tls://127.0.0.1 to nginx TLS 1.3, %d MiB both "
             "ways" % (TCP_BIG >> 20), seed=1, up_port=e.ng.port["se13"], early=True)
    ents = e.ng.stream_entries(e.ng.port["se13"], n0 + 1)[n0:]
    t.check(len(ents) == 1 and ents[0][1:4:2] == ["TLSv1.3", "-"],
            "f. tls://127.0.0.1: nginx saw TLS 1.3 and no SNI: %r" % ents)
    tcp_echo(t, s, s.tcp[1], e.echo, TCP_MID, "f. tls://localhost to nginx TLS 1.2, %d MiB both "
             "ways" % (TCP_MID >> 20), seed=2, up_port=e.ng.port["se12"])
    tcp_half_close(t, s, s.tcp[2], e.sink, "f. half-close client->upstream, nginx", clean=False)


def part_g(t, e):
    s = e.server("good")
    fail_502(t, s, "/plain/small.txt", "g. https:// to a plaintext HTTP upstream")
    ok_small(t, s, "/http/small.txt", "g. the same upstream over http://")
    tcp_fail(t, s, s.tcp[3], "g. tls:// to a plaintext HTTP upstream")
    tcp_echo(t, s, s.tcp[5], e.techo, SMALL, "g. TCP mode serves on", up_port=e.techo.port,
             clean=True)


def py_pp_fetch(ctx, port, header, http):
    """Python's TLS client straight to nginx, `header` sent raw first: all
    it got (an HTTP GET first if http), or "failed: ..."."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=rt.IO_TIMEOUT) as raw:
            if header:
                raw.sendall(header)
            with ctx.wrap_socket(raw, server_hostname="localhost") as so:
                if http:
                    so.sendall(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                buf = b""
                while True:
                    d = so.recv(65536)
                    if not d:
                        return buf
                    buf += d
    except (ssl.SSLError, OSError) as ex:
        return "failed: %r" % ex


def selfcheck_pp(t, e):
    """nginx's proxy_protocol listeners refuse a TLS client that sends no
    header (which is what a header inside TLS looks like to them: a
    ClientHello first) and serve one with a v1 header in front."""
    ctx = py_ctx(e.pki)
    for name, http in (("hpp", True), ("spp", False)):
        if name == "spp" and not e.ng.stream:
            continue
        port = e.ng.port[name]
        bare = py_pp_fetch(ctx, port, None, http)
        t.check(isinstance(bare, str), "fixture: nginx %s refuses a TLS client without a PROXY "
                "header: %r" % (name, bare))
        got = py_pp_fetch(ctx, port, b"PROXY TCP4 127.0.0.1 127.0.0.1 11111 443\r\n", http)
        t.check(isinstance(got, bytes) and got.endswith(b"pp=127.0.0.1:11111\n"),
                "fixture: nginx %s with a v1 header first: %r" % (name, got))


def check_pp_rec(t, rec, v, cport, lport, what):
    """The Python upstream's record: the v1 line / v2 block naming client
    127.0.0.1:cport and listener 127.0.0.1:lport, then a TLS record."""
    if not t.check(rec is not None and "pp" in rec, "%s: the upstream's record: %r"
                   % (what, rec)):
        return
    ver, addrs, raw = rec["pp"]
    want = ("127.0.0.1", cport, "127.0.0.1", lport)
    t.eq((ver, addrs), (int(v[1]), want), "%s: the PROXY header: version, (src, sport, dst, "
         "dport) (raw %r)" % (what, raw))
    if v == "v1":
        t.eq(raw, b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, lport),
             "%s: the v1 line" % what)
    t.eq(rec.get("next"), b"\x16", "%s: after the header: a TLS handshake record" % what)
    t.eq(rec.get("end"), "served", "%s: then served over TLS" % what)
    print("%s: the upstream got %r, then %r" % (what, raw, rec.get("next")), flush=True)


def part_h(t, e):
    selfcheck_pp(t, e)
    for v in ("v1", "v2"):
        s = e.server("pp" + v[1])
        what = "h. %s, https:// to nginx ssl proxy_protocol" % v
        r, _, cport = get(s, "/ng/x?h" + v)
        t.eq((r and r.status, r and r.body), (200, b"pp=127.0.0.1:%d\n" % cport),
             "%s: status, the client address nginx saw" % what)
        what = "h. %s, https:// to a Python upstream that reads the header raw" % v
        e.ppy.drain()
        r, _, cport = get(s, "/py/x")
        t.eq((r and r.status, r and r.body), (200, PP_OK), "%s: status, body" % what)
        check_pp_rec(t, e.ppy.next_done(), v, cport, s.port, what)
        if e.ng.stream:
            what = "h. %s, tls:// to nginx stream ssl proxy_protocol" % v
            with tp.TlsPipe(s.tcp[0], keep=256) as c:
                done = c.run(read=True, timeout=WAIT)
                cport = c.local_port
            t.check(done, "%s: nginx's answer and end came (got %d, end %r)"
                    % (what, c.rx, c.peer_end))
            t.eq(bytes(c.rx_data), b"pp=127.0.0.1:%d\n" % cport,
                 "%s: the client address nginx saw" % what)
            d = tp.session(s, cport)
            print("%s: %s" % (what, d and d.get("line", d)), flush=True)
        else:
            t.skip("h. %s, TCP mode to nginx: no nginx stream module" % v)
        what = "h. %s, tls:// to a Python upstream that reads the header raw" % v
        e.ppy.drain()
        with tp.TlsPipe(s.tcp[1], keep=64) as c:
            done = (c.run(b"ping\n", until=lambda: c.rx >= 5 or c.peer_end, timeout=WAIT)
                    and c.run(b"", end="close_notify", timeout=WAIT))
            cport = c.local_port
        t.check(done, "%s: the exchange ended (got %d, end %r)" % (what, c.rx, c.peer_end))
        t.eq(bytes(c.rx_data), b"ping\n", "%s: echoed" % what)
        check_pp_rec(t, e.ppy.next_done(), v, cport, s.tcp[1], what)
    # Without the header (what nginx also sees from a header inside TLS):
    # nginx reads the ClientHello as a broken header and drops the
    # connection (a reset: unread data), so there is no TLS failure to log.
    s = e.server("good")
    what = "h. no --upstream-proxy-protocol, https:// to nginx ssl proxy_protocol"
    n0 = nginx_broken_headers(e)
    r, dt, _ = get(s, "/pp/x", timeout=FAIL_FAST + 5)
    t.eq(r and r.status, 502, "%s: status" % what)
    t.check(dt <= rt.scaled(FAIL_FAST), "%s: answered after %.2f s, want <= %g"
            % (what, dt, rt.scaled(FAIL_FAST)))
    t.check(wait_for(lambda: nginx_broken_headers(e) > n0),
            "%s: nginx logged a broken PROXY header" % what)
    if e.ng.stream:
        what = "h. no --upstream-proxy-protocol, tls:// to nginx stream ssl proxy_protocol"
        n0 = nginx_broken_headers(e)
        tcp_closed_no_data(t, s, s.tcp[7], what)
        t.check(wait_for(lambda: nginx_broken_headers(e) > n0),
                "%s: nginx logged a broken PROXY header" % what)


def nginx_broken_headers(e):
    return e.ng.proc.log().count("broken header")


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + rt.scaled(timeout)
    while not cond():
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


def marked_down_lines(s, mark, port):
    rx = re.compile(r"upstream \S*:%d: .*marked down" % port)
    return [l for l in s.since(mark) if rx.search(l)]


def part_i(t, e):
    s = e.server("hsto")
    silent, two, tcp = e.silent
    what = "i. https:// to an upstream that never speaks, --handshake-timeout %gs" % HS_TIMEOUT
    mark = s.mark()
    n0 = len(silent.accepted)
    r, dt, _ = get(s, "/silent/x", timeout=HS_LATE + 10)
    t.eq(r and r.status, 504, "%s: status" % what)
    t.check(HS_TIMEOUT * 0.8 <= dt <= rt.scaled(HS_LATE), "%s: answered after %.2f s, want "
            "%g..%g" % (what, dt, HS_TIMEOUT, rt.scaled(HS_LATE)))
    check_tls_line(t, s, mark, what, "handshake timed out")
    t.eq(len(marked_down_lines(s, mark, silent.port)), 1, "%s: 'marked down' lines: %r"
         % (what, s.since(mark)))
    t.eq(len(silent.accepted) - n0, 1, "%s: connections the upstream got" % what)
    what = "i. the same route, its upstream marked down"
    mark = s.mark()
    r, dt, _ = get(s, "/silent/x", timeout=HS_LATE + 10)
    t.eq(r and r.status, 503, "%s: status" % what)
    t.check(dt <= rt.scaled(PROMPT), "%s: answered after %.2f s" % (what, dt))
    t.eq(len(silent.accepted) - n0, 1, "%s: connections the upstream got, in all" % what)
    t.check(not tls_lines(s, mark, settle=0, timeout=0.3), "%s: no 'tls upstream' line" % what)

    what = "i. a route to a silent and a good upstream"
    mark = s.mark()
    n0 = len(two.accepted)
    slow = []
    for k in range(3):
        r, dt, _ = get(s, "/two/small.txt?i%d" % k, timeout=HS_LATE + 10)
        t.eq((r and r.status, r and r.body), (200, SMALL_TXT), "%s: request %d: status, body"
             % (what, k + 1))
        if dt >= HS_TIMEOUT * 0.8:
            slow.append((k + 1, round(dt, 2)))
        if marked_down_lines(s, mark, two.port):
            break
    t.eq(len(slow), 1, "%s: requests that waited for the handshake timeout: %r" % (what, slow))
    check_tls_line(t, s, mark, what, "handshake timed out")
    t.eq(len(marked_down_lines(s, mark, two.port)), 1, "%s: the silent one marked down: %r"
         % (what, s.since(mark)))
    for k in range(4):
        r, dt, _ = get(s, "/two/small.txt?j%d" % k, timeout=HS_LATE + 10)
        t.check(r is not None and (r.status, r.body) == (200, SMALL_TXT)
                and dt <= rt.scaled(PROMPT), "%s: then request %d: 200 at once, got %r after "
                "%.2f s" % (what, k + 1, r, dt))
    t.eq(len(two.accepted) - n0, 1, "%s: connections the silent upstream got" % what)

    what = "i. tls:// to an upstream that never speaks, --handshake-timeout %gs" % HS_TIMEOUT
    mark = s.mark()
    n0 = len(tcp.accepted)
    session_start()
    t0 = time.monotonic()
    try:
        c = tp.TlsPipe(s.tcp[0])
    except (OSError, rt.ConnClosed, ssl.SSLError) as ex:
        t.check(False, "%s: the client's handshake did not complete: %r" % (what, ex))
        return
    with c:
        done = c.run(read=True, timeout=rt.scaled(HS_LATE + 5))
        dt = time.monotonic() - t0
        cport = c.local_port
    t.check(done, "%s: the connection ended" % what)
    t.eq((c.rx, c.peer_end), (0, "reset"), "%s: bytes the client got, its end" % what)
    t.check(HS_TIMEOUT * 0.8 <= dt <= rt.scaled(HS_LATE), "%s: ended after %.2f s, want "
            "%g..%g" % (what, dt, HS_TIMEOUT, rt.scaled(HS_LATE)))
    d = tp.check_session(t, s, cport, what, to_up=0, to_client=0, cend="reset by us",
                         uend="connect failed (Connection timed out)", how=None)
    if d:
        print("%s: %s" % (what, d["line"]), flush=True)
    check_tls_line(t, s, mark, what, "handshake timed out")
    t.eq(len(marked_down_lines(s, mark, tcp.port)), 1, "%s: 'marked down' lines: %r"
         % (what, s.since(mark)))
    t.eq(len(tcp.accepted) - n0, 1, "%s: connections the upstream got" % what)


PARTS = [("a", part_a), ("b", part_b), ("c", part_c), ("d", part_d), ("e", part_e),
         ("f", part_f), ("g", part_g), ("h", part_h), ("i", part_i)]


# --------------------------------------------------------------------------
# Set-up


class Env:
    def __init__(self):
        self.servers = {}

    def server(self, name):
        """The ringtls server `name`, started on first use (a start that
        failed fails again at once)."""
        if name not in self.servers:
            try:
                self.servers[name] = self._start(name)
            except Exception as ex:  # noqa: BLE001 - kept, raised for each part that needs it
                self.servers[name] = ex
        got = self.servers[name]
        if isinstance(got, Exception):
            raise RuntimeError("ringtls-%s did not start: %s" % (name, str(got).splitlines()[0]))
        return got

    def _start(self, name):
        ng, pki = self.ng, self.pki
        p = ng.port
        ca = ["--upstream-ca", pki.pem("ca")]
        routes, tcp, extra = [], [], list(ca)
        if name == "good":
            routes = ["/t13/=https://localhost:%d" % p["h13"],
                      "/t12/=https://localhost:%d" % p["h12"],
                      "/ip/=https://127.0.0.1:%d" % p["h13"],
                      "/mtls/=https://localhost:%d" % p["hm13"],
                      "/strict12/=https://localhost:%d" % self.strict12.port,
                      "/strict13/=https://localhost:%d" % self.strict13.port,
                      "/ca2/=https://localhost:%d" % p["hca2"],
                      "/dnsonly/=https://127.0.0.1:%d" % p["hdns"],
                      "/plain/=https://127.0.0.1:%d" % p["hplain"],
                      "/http/=http://127.0.0.1:%d" % p["hplain"],
                      "/pp/=https://localhost:%d" % p["hpp"]]
            tcp = ["tls://127.0.0.1:%d" % p["se13"], "tls://localhost:%d" % p["se12"],
                   "tls://localhost:%d" % p["ssink"], "tls://127.0.0.1:%d" % p["hplain"],
                   "tls://localhost:%d" % self.strict12.port,
                   "tls://127.0.0.1:%d" % self.techo.port, "tls://localhost:%d" % self.tsink.port,
                   "tls://localhost:%d" % p["spp"]]
        elif name == "ca2":
            extra = ["--upstream-ca", pki.pem("ca2")]
            routes = ["/bad/=https://localhost:%d" % p["h13"],
                      "/good/=https://localhost:%d" % p["hca2"]]
            tcp = ["tls://localhost:%d" % p["se13"], "tls://localhost:%d" % p["sca2"]]
        elif name == "sni":
            extra += ["--upstream-sni", "wrong.example"]
            routes = ["/x/=https://localhost:%d" % p["h13"],
                      "/http/=http://127.0.0.1:%d" % p["hplain"]]
            tcp = ["tls://localhost:%d" % p["se13"]]
        elif name == "alt":
            extra += ["--upstream-sni", "alt.test"]
            routes = ["/alt/=https://127.0.0.1:%d" % p["h13"]]
        elif name == "cert":
            extra += ["--upstream-cert", pki.pem("client"), "--upstream-key", pki.key("client")]
            routes = ["/mtls13/=https://localhost:%d" % p["hm13"],
                      "/mtls12/=https://localhost:%d" % p["hm12"],
                      "/strict12/=https://localhost:%d" % self.strict12.port,
                      "/strict13/=https://localhost:%d" % self.strict13.port]
            tcp = ["tls://localhost:%d" % p["sm"]]
        elif name == "resume":
            extra += ["--proxy-keepalive", "0"]
            routes = ["/t13/=https://localhost:%d" % p["h13"],
                      "/t12/=https://localhost:%d" % p["h12"]]
            tcp = ["tls://localhost:%d" % p["se13"], "tls://localhost:%d" % p["se12"]]
        elif name in ("pp1", "pp2"):
            extra += ["--upstream-proxy-protocol", "v" + name[2]]
            routes = ["/ng/=https://localhost:%d" % p["hpp"],
                      "/py/=https://localhost:%d" % self.ppy.port]
            tcp = ["tls://localhost:%d" % p["spp"], "tls://localhost:%d" % self.ppy.port]
        elif name == "hsto":
            silent, two, tcpsilent = self.silent
            extra += ["--handshake-timeout", "%gs" % HS_TIMEOUT]
            routes = ["/silent/=https://localhost:%d" % silent.port,
                      "/two/=https://localhost:%d,https://localhost:%d" % (two.port, p["h13"])]
            tcp = ["tls://localhost:%d" % tcpsilent.port]
        else:
            raise ValueError(name)
        # Without the stream module nginx's stream ports stay unused: the
        # listeners to them are there, and the parts skip them.
        args = extra + up.proxy_args(routes)
        for spec in tcp:
            args += ["--tcp-proxy", "127.0.0.1:0=" + spec]
        return Rtls("ringtls-" + name, *args, ntcp=len(tcp))


def test(t):
    rt.need_binary(rt.RINGTLS_BIN, "ringtls")
    if not up.nginx_binary():
        raise rt.Skip("nginx not installed (scripts/deps.sh test)")
    if not tu.have("openssl"):
        raise rt.Skip("openssl CLI not installed")
    fam, _, _, _, addr = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]
    if addr[0] != "127.0.0.1":
        raise rt.Skip("localhost resolves to %s first; the upstreams listen on 127.0.0.1"
                      % addr[0])
    e = Env()
    try:
        e.pki = Pki(rt.temp_dir("rtls-pki-"))
        e.echo = tp.Upstream("echo", tp.h_echo)
        e.sink = tp.Upstream("sink", tp.h_sink_then_send(tp.HALF_BACK, 3))
        e.techo = tp.Upstream("techo", h_tls_echo(server_ctx(e.pki)))
        e.tsink = tp.Upstream("tsink", h_tls_sink_then_send(server_ctx(e.pki), tp.HALF_BACK, 3))
        e.strict12 = StrictTls(e.pki, ssl.TLSVersion.TLSv1_2)
        e.strict13 = StrictTls(e.pki, ssl.TLSVersion.TLSv1_3)
        e.ppy = tp.Upstream("ppy", h_pp_tls(server_ctx(e.pki)))
        e.silent = [tp.Upstream("silent%d" % i, tp.h_hold) for i in range(3)]
        e.ng = Nginx(e.pki, e.echo, e.sink)
        if not e.ng.stream:
            print("SKIP TCP-mode checks: %s missing (libnginx-mod-stream)" % STREAM_MOD)
        only = os.environ.get("RTLS_UPTLS_PARTS")
        for name, fn in PARTS:
            if only and name not in only.split(","):
                continue
            t0 = time.monotonic()
            try:
                fn(t, e)
            except Exception:  # noqa: BLE001 - one part's error is one failed check
                t.check(False, "part %s: exception:\n%s" % (name, traceback.format_exc()))
            print("part %s: %.1f s" % (name, time.monotonic() - t0), flush=True)
        for name, s in e.servers.items():
            if isinstance(s, Exception):
                continue
            t.check(s.alive(), "ringtls-%s alive at the end" % name)
            tu.stop_ok(t, s, s.name)
    finally:
        for x in ("echo", "sink", "techo", "tsink", "strict12", "strict13", "ppy"):
            if getattr(e, x, None):
                getattr(e, x).close()
        for x in getattr(e, "silent", ()):
            x.close()


if __name__ == "__main__":
    rt.main(test, watchdog=240)
