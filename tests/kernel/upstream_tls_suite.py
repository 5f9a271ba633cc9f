#!/usr/bin/env python3
"""TLS to the upstream (issue #15, sections 3 and 4: ringtls as a TLS
client, both directions of the upstream connection in the kernel) over
kernel TLS (python3 stdlib and the openssl CLI only; run inside a kTLS
kernel by tests/kernel/run-kernel.sh).

    upstream_tls_suite.py               inside a kernel with kTLS
    upstream_tls_suite.py --only REGEX  run only the checks whose name matches

A test CA and an upstream certificate (SAN IP:127.0.0.1 and
DNS:upstream.test) made here with the openssl CLI; Python ssl upstreams
(userspace TLS, threads of this process) that hold it; ringtls serve with
--upstream-ca CA and a --tcp-proxy 127.0.0.1:0=tls://127.0.0.1:PORT
listener per upstream (the URL's host is an IP literal: no SNI, the IP
SAN is checked). Clients are Python ssl (userspace), so every kTLS
socket /proc/net/tls_stat counts is one of ringtls's:
1. TCP mode, SIZE bytes both ways at once through a TLS echo upstream,
   sha256 each way, TLS 1.3 and TLS 1.2 (the upstream's maximum
   version): tls_stat TlsTxSw +2 and TlsRxSw +2 (the client's connection
   and the upstream's), TlsDecryptError +0; ringtls's debug line of the
   client's connection and its "tls upstream" line(s) of the upstream
   connection say kernel-tx=yes kernel-rx=yes (TLS 1.3: a first line at
   the handshake's end may say kernel-rx=no (rx after the first record));
   the upstream got no SNI (the URL's host is an IP literal). The
   session's log line must say "copied 0" upstream to client; client to
   upstream, the bytes that arrive while the upstream is still being
   connected are read in userspace and copied (by design), so:
   - zero copy: an upstream that sends a banner (after its session
     tickets) and a client that waits for it before it sends: "spliced
     N, copied 0" BOTH ways. The upstreams here send their tickets before
     any data, so the TLS 1.3 caveat (a data record the upstream sends
     before its first ticket is read in userspace) never applies: any
     copied byte FAILs;
   - early: SMALL bytes and close_notify sent right after the client's
     handshake, before the upstream is connected (and once with the FIN
     too): every byte reaches the upstream and comes back, both ends
     clean, the upstream's side offloaded;
   - split records: an upstream (TLS 1.3) that sends each of SPLIT_N
     16 KiB records in two TCP segments SPLIT_PAUSE apart (its first
     SPLIT_HEAD bytes, then the rest), so that the upstream's socket
     holds a partial record at each read: sha256, copied 0 upstream to
     client, +2/+2. (While a kTLS source that forwards was left
     non-blocking, io_uring ended the splice, and then the peek that
     waits for the record, in EAGAIN: the forward spun until the record
     was whole and read it the ordinary way, copied; CI saw it on 7.2
     under load.)
   - keyless: a TLS 1.3 and a TLS 1.2 session held open, idle, after
     bytes went both ways: the built-in page says live_ssl 0 (no SSL
     object, no key, in the process for the four sockets).
2. The reverse proxy to an https:// upstream (http.server wrapped in
   ssl, TLS 1.3 and TLS 1.2): HTTP_SIZE bytes down and up, Python clients
   over TLS, sha256; tls_stat TlsTxSw and
   TlsRxSw rise by 1 + the upstream connections the backend accepted
   (one at least: a fresh server), the upstream debug lines say
   kernel-tx=yes kernel-rx=yes. And an https:// upstream (TLS 1.3,
   SSLObject) whose response (head, then SPLIT_N records of body) comes
   with every record in two TCP segments SPLIT_PAUSE apart: 200, the
   whole body (sha256), +2/+2, both sides offloaded, no warn or error
   line, and the body spliced whole (the proxy's debug line "spliced N"
   of N; 6.1 saw 81920 of 131072 while a tls:// upstream's socket was
   non-blocking). And the client on HTTP/2 (curl --http2, ALPN h2; a
   server of its own, so that it opens an upstream connection): the same
   bytes down and up through an https:// upstream (tls_stat +1 + the new
   upstream connections, both legs' debug lines kernel yes, alpn h2) and
   through an http:// one (+1/+1). (This caught a test bug: a request that came in the same recv
   as ringtls's Finished sat in the upstream's TlsPipe unread; about
   half the runs ended in 504.)
3. Resumption, TLS 1.3 and 1.2: two sessions one after the other
   through an upstream of its own (a fresh ticket key): the first says
   resumed=no, the second resumed=yes in ringtls's "tls upstream" line
   AND the upstream's SSL object says session_reused; both offloaded
   (TlsTxSw +2, TlsRxSw +2 each).
4. Half-close through the upstream leg (TLS 1.3): the upstream sends
   HALF_UP bytes, then close_notify + FIN and keeps reading: the client
   gets every byte, then close_notify; it sends HALF_AFTER bytes after
   that, which the upstream reads up to the client's close_notify. And
   the reverse: the client sends, then close_notify + FIN; the upstream
   reads to close_notify, then sends HALF_BACK bytes and its own
   close_notify + FIN, all of which reach the client. Offloaded both
   sides, "copied 0" in the direction that was spliced throughout
   (upstream to client), except that in the second case one whole
   RECORD-byte record of the upstream's answer may be copied: on 7.2
   (the server without --ktls-rx-no-rekey) 3 runs of 4 copied 16384
   bytes there even with the MSG_PEEK wait for a partial record; 6.1
   copied 0 in 4 of 4. The check says which it saw.
5. (Rekey kernels only, 7.2; a SKIP line on 6.1, which cannot rekey.)
   openssl s_server -tls1_3 as the upstream: KU_PHASE bytes each way,
   `k` on its stdin (a KeyUpdate to ringtls), KU_PHASE more, `K` (a
   KeyUpdate that asks for ringtls's), KU_PHASE more: every byte arrives
   both ways (sha256 at the client, s_server's output), tls_stat
   TlsRxRekeyOk +2, TlsTxRekeyOk >= 1, no rekey or decrypt error,
   TlsTxSw +2, TlsRxSw +2, "copied 0" upstream to client.
6. Verification failure: ringtls with --upstream-ca of another CA: the
   client's handshake completes, its connection then ends without data
   or close_notify, exactly one warn line names "tls upstream", no
   "tls upstream" debug line (no handshake), and tls_stat rises only for
   the client's connection (TlsTxSw +1, TlsRxSw +1: nothing for the
   upstream side).
7. --upstream-sni: wrong.example (not in the upstream's certificate):
   the upstream gets that name; TCP mode: the client's connection is
   reset without data, the reverse proxy: 502 (one upstream handshake,
   no retry); each time exactly one warn line "tls upstream ...
   hostname mismatch", no "tls upstream" debug line, tls_stat TlsTxSw
   +1 TlsRxSw +1 (the client's side only). And upstream.test (the
   certificate's DNS name): the upstream gets it, bytes both ways,
   offloaded (+2/+2), copied 0 both ways.
8. Client certificates: Python upstreams (TLS 1.3, TLS 1.2) that
   require one from the test CA. Without --upstream-cert: the client's
   connection is reset without data, one warn line names "tls upstream";
   TLS 1.2 fails in the handshake (tls_stat +1/+1, no "tls upstream"
   debug line); TLS 1.3 fails on ringtls's first read after ITS
   handshake is done (the server's certificate_required alert), so the
   upstream's TX is already in the kernel: TlsTxSw +2, TlsRxSw +1, one
   "tls upstream" line kernel-tx=yes kernel-rx=no (rx after the first
   record). With --upstream-cert/--upstream-key (RSA 4096): SMALL bytes
   both ways after a banner, sha256, the upstream saw the certificate's
   CN, +2/+2, copied 0 both ways.
9. tls:// to a bound port nobody listens on (RST): the client is reset
   without data; the session line says "upstream end: connect failed
   (Connection refused)" and lasted under half the 30 s
   --proxy-connect-timeout (the refusal ended it); +1/+1.
10. Session tickets over several records: --proxy / to openssl
   s_server -tls1_3 -www -max_send_frag 512 -Verify 1 with ringtls's
   RSA 4096 client certificate, which makes each NewSessionTicket over
   1 KB (checked with s_client -msg first: over 512 bytes, or FAIL).
   Two requests on two client connections: 200 with s_server's page,
   which says "New, TLSv1.3" then "Reused, TLSv1.3" (-www ends each
   connection, so the second request is a second upstream connection);
   ringtls's "tls upstream" lines resumed=no then resumed=yes, both
   kernel-tx=yes kernel-rx=yes; +2/+2 each. (A build that cannot
   reassemble a post-handshake message across records answered 502,
   "unexpected post-handshake message".)
Every kTLS check fails if offload did not happen; checks this kernel
cannot run print a SKIP line. On a kernel that cannot rekey (6.1)
ringtls gets --ktls-rx-no-rekey, as in ktls_suite.py.

Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat: no kTLS
here; never a pass without it). One line per check, then "N passed, N
failed[, N skipped]". Nothing is timed (the guest is ~100x slower).
"""
import fcntl
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (RINGTLS_BIN, STAT_PATH, WORK, Counters, Fail, Server,  # noqa: E402
                          check, client_ctx, expect, expect_eq, page_cells, run_suite,
                          stop_proc, stop_server)
import test_tcp_proxy as ttp  # noqa: E402
import tcpproxy_suite as tps  # noqa: E402
import test_proxy as tp  # noqa: E402
import upstreams as ups  # noqa: E402

MIB = 1 << 20
SIZE = 16 << 20          # 1: each way
HTTP_SIZE = 4 << 20      # 2: down and up
HALF_UP = 1 << 20        # 4: the upstream's bytes before its close_notify
HALF_AFTER = 2 << 20     # 4: the client's bytes after that
HALF_BACK = 2 << 20      # 4: the upstream's bytes after the client's close_notify
KU_PHASE = 256 << 10     # 5: each way, before k, between, after K
KU_STEP = 60.0           # 5: one phase through, one command read
SMALL = 64 << 10         # 1 (keyless), 3, 6: bytes each way
RECORD = 16384           # 4: a whole TLS record's plaintext
IO_TIMEOUT = 120.0       # one wait in the slow guest
WATCHDOG = 820           # the whole suite (run-kernel.sh allows 900 s)
VERSIONS = ("1.3", "1.2")
UP_SNI = "upstream.test"  # the DNS SAN of the upstream certificate
WRONG_SNI = "wrong.example"  # 7: a name the upstream certificate does not have
CLIENT_CN = "ringtls upstream client"  # 8, 10: ringtls's client certificate
FRAG = 512               # 10: s_server -max_send_frag
CONNECT_TIMEOUT = 30     # 9: --proxy-connect-timeout, seconds
BANNER = b"220 upstream-tls-suite echo ready\r\n"
SPLIT_N = 8              # 1, split records: records, 16 KiB each
SPLIT_HEAD = 100         # the bytes of each record in its first segment
SPLIT_PAUSE = 0.05       # seconds between a record's two segments

ttp.WAIT = IO_TIMEOUT

# ringtls's line at the end of each upstream handshake: "tls upstream
# ADDR: VERSION CIPHER key=value ... kernel-tx=.. kernel-rx=..".
UP_LINE_RE = re.compile(r" debug tls upstream (?P<addr>\S+): (?P<version>\S+) (?P<cipher>\S+)"
                        r"(?P<rest>.*)$")
KV_RE = re.compile(r"(\S+?)=(\S*)")
# The upstream's clean end in the session line: it sent close_notify and
# a FIN. ("close_notify" is what a TLS upstream's clean end should be
# called; FIN is accepted until the log settles on one word.)
UEND_CLEAN = re.compile(r"close_notify|FIN")


class T(tps.T):
    pass


# --------------------------------------------------------------------------
# The test PKI: a CA, the upstream's certificate, and another CA


class Pki:
    ca = cert = key = other_ca = None
    client_cert = client_key = None   # 7, 9: CLIENT_CN, RSA 4096, signed by ca


PKI = Pki()


def openssl(*args, cwd=None):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=suite_common.PROC_TIMEOUT)
    if r.returncode != 0:
        raise Fail("openssl %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                 r.stdout.decode("utf-8", "replace")))


def make_pki():
    d = os.path.join(WORK.tmp, "pki")
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for name, cn in (("ca", "ringtls upstream test CA"), ("other-ca", "ringtls other test CA")):
        openssl("req", "-x509", *ec, "-keyout", name + ".key", "-out", name + ".pem", "-days",
                "3", "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-new", *ec, "-keyout", "up.key", "-out", "up.csr", "-subj",
            "/CN=" + UP_SNI, cwd=d)
    with open(os.path.join(d, "up.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n" % UP_SNI)
    openssl("x509", "-req", "-in", "up.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "up.pem", "-days", "3", "-extfile", "up.ext", cwd=d)
    PKI.ca, PKI.other_ca = os.path.join(d, "ca.pem"), os.path.join(d, "other-ca.pem")
    PKI.cert, PKI.key = os.path.join(d, "up.pem"), os.path.join(d, "up.key")
    # ringtls's client certificate: RSA 4096, so that a TLS 1.3 session
    # ticket that holds it is over 1 KB (10: several FRAG-byte records).
    openssl("req", "-new", "-newkey", "rsa:4096", "-nodes", "-keyout", "client.key", "-out",
            "client.csr", "-subj", "/CN=" + CLIENT_CN, cwd=d)
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.pem", "-days", "3", "-extfile", "client.ext",
            cwd=d)
    PKI.client_cert, PKI.client_key = os.path.join(d, "client.pem"), os.path.join(d, "client.key")


def up_ctx(version, client_auth=False):
    """The upstreams' server context: TLS 1.3 only, or at most TLS 1.2.
    Each context has its own session ticket key; Python's defaults
    otherwise (two TLS 1.3 tickets, sent right after the handshake).
    client_auth: a client certificate from the test CA is required.
    .rtls_snis lists the name each ClientHello carried (None: none),
    handshakes that then fail included."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(PKI.cert, PKI.key)
    if version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if client_auth:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(PKI.ca)
    ctx.rtls_snis = []

    def sni(obj, name, _ctx):
        obj.rtls_sni = name
        ctx.rtls_snis.append(name)
    ctx.sni_callback = sni
    return ctx


# --------------------------------------------------------------------------
# TLS upstreams: test_tcp_proxy's Upstream (a listener in a thread, a
# thread per connection), the connection wrapped in TLS by the handler.
# rec["end"] is "eof" for the upstream's clean TLS end (close_notify),
# "fin" for a FIN without it, else "reset", "timeout", "tls error: ..."
# or "handshake: ..."; rec also gets version, resumed (the upstream's
# session_reused) and sni (the name the client sent, or None).


class TlsUpstream(ttp.Upstream):
    def __init__(self, name, handler, version, banner=False, client_auth=False):
        self.ctx = up_ctx(version, client_auth)
        self.version = version
        self.banner = banner
        super().__init__(name, lambda conn, rec, up: handler(conn, rec, up, up.ctx))
        self.spec = "tls://127.0.0.1:%d" % self.port


def peer_cn(obj):
    """The commonName of the client certificate the peer sent, or None."""
    cert = obj.getpeercert() or {}
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def note_session(rec, obj):
    rec.update(version=obj.version(), resumed=obj.session_reused,
               sni=getattr(obj, "rtls_sni", None), client=peer_cn(obj))


def h_tls_echo(conn, rec, up, ctx):
    """Sends BANNER where up.banner (after its session tickets: Python's
    server sends them at the end of the handshake), then echoes until the
    client's
    close_notify, then sends its own close_notify and a FIN (SSLSocket:
    unwrap(), shutdown())."""
    conn.settimeout(IO_TIMEOUT)
    try:
        s = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
    except (ssl.SSLError, OSError) as e:
        rec.update(end="handshake: %s" % e)
        return
    try:
        note_session(rec, s)
        h = hashlib.sha256()
        n = 0
        end = None
        try:
            if up.banner:
                s.sendall(BANNER)
        except OSError as e:
            end = "banner: %s" % e
        while end is None:
            try:
                d = s.recv(ttp.CHUNK)
            except ssl.SSLEOFError:
                end = "fin"
                break
            except socket.timeout:
                end = "timeout"
                break
            except ConnectionResetError:
                end = "reset"
                break
            except ssl.SSLError as e:
                end = "tls error: %s" % e
                break
            except OSError as e:
                end = "error: %s" % e
                break
            if not d:
                end = "eof"
                break
            n += len(d)
            h.update(d)
            try:
                s.sendall(d)
            except OSError as e:
                end = "send: %s" % e
        if end == "eof":
            try:
                s.unwrap().shutdown(socket.SHUT_WR)
                rec["closed"] = "close_notify"
            except (ssl.SSLError, OSError) as e:
                rec["closed"] = "unwrap: %s" % e
        rec.update(n=n, sha=h.hexdigest(), end=end)
    finally:
        s.close()


class UpPipe(ttp.TlsPipe):
    """test_tcp_proxy's TlsPipe on the server side of an accepted
    connection (SSLObject over MemoryBIOs): .run() sends, reads and ends
    one direction (close_notify, then SHUT_WR) as the client does."""

    def __init__(self, conn, ctx, keep=0):
        self.sock = conn
        self.timeout = IO_TIMEOUT
        conn.settimeout(self.timeout)
        self.local_port = conn.getsockname()[1]
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.pend = memoryview(b"")
        self.tx = self.tx_wire = self.rx = 0
        self.rx_sha = hashlib.sha256()
        self.keep = keep
        self.rx_data = bytearray()
        self.peer_end = None
        self.tcp_eof = self.reset = self.sent_close_notify = self.shut_wr = False
        self.send_error = None
        self.handshake()


def open_pipe(conn, ctx, rec, keep=0):
    """An UpPipe on conn with its session noted in rec, or None (rec's
    end says why) if the handshake failed."""
    try:
        c = UpPipe(conn, ctx, keep=keep)
    except (ssl.SSLError, OSError, ConnectionError) as e:
        rec.update(end="handshake: %s" % e)
        return None
    note_session(rec, c.obj)
    return c


def pipe_end(c):
    """A UpPipe's peer_end in rec["end"]'s words."""
    return {"close_notify": "eof", None: "timeout"}.get(c.peer_end, c.peer_end)


def h_tls_refuse_hold(conn, rec, up, ctx):
    """A handshake (SSLObject over MemoryBIOs on the connection) that
    the upstream's context refuses (a client certificate it requires and
    does not get): its alert goes out, then the connection is held, the
    upstream reading, until the client ends it (rec["after"]: "fin",
    "reset", "timeout" or "data"). Without the hold, the upstream's FIN
    can come in before ringtls has put its side of a TLS 1.3 upstream in
    the kernel (a handshake that is done on ringtls's side), and the tls
    ULP then refuses the socket (ENOTCONN): the hold makes what ringtls
    does with the alert the same every time."""
    conn.settimeout(IO_TIMEOUT)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=True)
    try:
        while True:
            try:
                obj.do_handshake()
                rec["end"] = "handshake done"
                note_session(rec, obj)
                break
            except ssl.SSLWantReadError:
                d = out.read()
                if d:
                    conn.sendall(d)
                d = conn.recv(65536)
                if not d:
                    rec["end"] = "handshake: the client ended"
                    return
                inc.write(d)
            except ssl.SSLError as e:
                d = out.read()
                if d:
                    conn.sendall(d)     # the alert
                rec["end"] = "handshake: %s" % e
                break
        while True:
            d = conn.recv(65536)
            if not d:
                rec["after"] = "fin"
                return
            rec["after"] = "data"
    except socket.timeout:
        rec["after"] = "timeout"
    except (ConnectionResetError, BrokenPipeError):
        rec["after"] = "reset"


def send_split(c, conn, data):
    """data as TLS records (c's SSLObject), 16 KiB of plaintext each,
    every record in two TCP segments: its first SPLIT_HEAD bytes, then,
    SPLIT_PAUSE later, the rest."""
    for i in range(0, len(data), 1 << 14):
        c.obj.write(data[i:i + (1 << 14)])
        raw = c.out.read()
        conn.sendall(raw[:SPLIT_HEAD])
        time.sleep(SPLIT_PAUSE)
        conn.sendall(raw[SPLIT_HEAD:])


def h_tls_split(conn, rec, up, ctx):
    """SPLIT_N records of 16 KiB, each in two TCP segments SPLIT_PAUSE
    apart, once the client's side has had time to take the tickets
    (RX in the kernel); then close_notify + FIN, and it reads to the
    client's end."""
    c = open_pipe(conn, ctx, rec)
    if c is None:
        return
    src = ttp.data(SPLIT_N << 14, 12)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(IO_TIMEOUT)
    time.sleep(0.3)
    try:
        send_split(c, conn, src)
        rec["sent"] = len(src)
    except OSError as e:
        rec["sent"] = "send: %s" % e
    conn.setblocking(False)
    c.run(end="close_notify", read=True)
    rec["closed"] = "close_notify" if c.sent_close_notify and c.shut_wr else None
    rec.update(n=c.rx, sha=c.rx_sha.hexdigest(), end=pipe_end(c))


def h_tls_first(size, seed):
    """Sends `size` bytes, then close_notify + FIN at once, then reads to
    the client's end."""
    def handler(conn, rec, up, ctx):
        c = open_pipe(conn, ctx, rec)
        if c is None:
            return
        ok = c.run(ttp.data(size, seed), end="close_notify", read=False)
        rec["sent"] = size if ok and c.send_error is None else -1
        rec["closed"] = "close_notify" if c.sent_close_notify and c.shut_wr else None
        c.run(read=True)
        rec.update(n=c.rx, sha=c.rx_sha.hexdigest(), end=pipe_end(c))
    return handler


def h_tls_sink_then_send(size, seed):
    """Reads to the client's close_notify, then sends `size` bytes and
    its own close_notify + FIN."""
    def handler(conn, rec, up, ctx):
        c = open_pipe(conn, ctx, rec)
        if c is None:
            return
        c.run(read=True)
        rec.update(n=c.rx, sha=c.rx_sha.hexdigest(), end=pipe_end(c))
        if rec["end"] == "eof":
            ok = c.run(ttp.data(size, seed), end="close_notify", read=False)
            rec["sent"] = size if ok and c.send_error is None else -1
            rec["closed"] = "close_notify" if c.sent_close_notify and c.shut_wr else None
    return handler


# --------------------------------------------------------------------------
# ringtls's log


def up_lines(srv, mark, port=None):
    """ringtls's "tls upstream" debug lines since mark (of the upstream
    on `port` only, where given), as dicts: addr, version, cipher and the
    key=value words (resumed, kernel-tx, kernel-rx, ...)."""
    out = []
    for l in srv.lines_since(mark):
        m = UP_LINE_RE.search(l)
        if not m:
            continue
        d = dict(KV_RE.findall(m.group("rest")))
        d.update(addr=m.group("addr"), version=m.group("version"), cipher=m.group("cipher"),
                 line=l)
        if port is None or d["addr"].endswith(":%d" % port):
            out.append(d)
    return out


RX_LATER = "(rx after the first record)"


def expect_up_offload(srv, mark, port, version, n=1, what="", resumed=None):
    """n upstream connections to `port` since mark, each offloaded both
    ways: exactly n "tls upstream" lines that say the version,
    kernel-tx=yes kernel-rx=yes (and resumed=, where given). TLS 1.3
    connections may have one line more each, at the handshake's end,
    that says kernel-tx=yes kernel-rx=no (rx after the first record):
    RX goes to the kernel once the upstream's first record (its ticket)
    has been read. Returns the n lines."""
    def split(lines):
        done = [l for l in lines if (l.get("kernel-tx"), l.get("kernel-rx")) == ("yes", "yes")]
        early = [l for l in lines if version == "1.3" and l["line"].endswith(RX_LATER)
                 and (l.get("kernel-tx"), l.get("kernel-rx")) == ("yes", "no")]
        return done, early
    end = time.monotonic() + 10
    while True:
        lines = up_lines(srv, mark, port)
        done, early = split(lines)
        if len(done) >= n or time.monotonic() > end:
            break
        time.sleep(0.05)
    want = ("TLSv" + version,) + ((resumed,) if resumed else ())
    got = [(l["version"],) + ((l.get("resumed"),) if resumed else ()) for l in done]
    msg = "%s: ringtls's \"tls upstream\" lines for 127.0.0.1:%d: %r" % (
        what, port, [l["line"] for l in lines])
    expect_eq(len(done), n, msg + ": lines with kernel-tx=yes kernel-rx=yes")
    expect_eq(len(done) + len(early), len(lines), msg + ": every line says kernel-tx=yes and "
              "kernel-rx=yes (or, TLS 1.3, kernel-rx=no %s)" % RX_LATER)
    expect(len(early) <= n, msg + ": more handshake-end lines than connections")
    expect_eq(got, [want] * n, msg + ": version%s" % (", resumed" if resumed else ""))
    return done


def expect_front_offload(srv, mark, cport, what):
    lines = srv.conn_tls_lines(mark, cport, 10)
    expect_eq([(l["ktx"], l["krx"]) for l in lines], [("yes", "yes")],
              "%s: ringtls's debug line for the client's connection: kernel-tx, kernel-rx" % what)


LOG_TAIL = 30


def log_fail(e, srv, mark):
    """Fail e with the tail of srv's log since mark."""
    tail = srv.lines_since(mark)[-LOG_TAIL:]
    return Fail("%s\n  ringtls's log since the check began (last %d lines):\n    %s"
                % (e, len(tail), "\n    ".join(tail)))


def with_log(srv, fn):
    """fn, whose Fail gets the tail of srv's log since the call began."""
    def run(*args):
        mark = srv.mark()
        try:
            return fn(*args)
        except Fail as e:
            raise log_fail(e, srv, mark) from None
    return run


def deltas(ctr, keys=("TlsTxSw", "TlsRxSw", "TlsDecryptError")):
    d = ctr.delta()
    if d is None:
        raise Fail("%s is missing" % STAT_PATH)
    return {k: d.get(k, 0) for k in keys}


def expect_deltas(ctr, want, what):
    got = deltas(ctr, tuple(want))
    expect_eq(got, want, "%s: tls_stat deltas" % what)
    return " ".join("%s%+d" % kv for kv in got.items())


def session(srv, cport, what, to_up, to_client, cend="close_notify", uend=UEND_CLEAN,
            up=None):
    """The session's one log line: byte counts and ends, parsed."""
    d = ttp.check_session(T(), srv, cport, what, to_up=to_up, to_client=to_client, cend=cend,
                          uend=uend, how=None, up=up)
    return d


def tcp_ports(srv, n):
    return tps.tcp_ports(srv, n)


# --------------------------------------------------------------------------
# 1. Echo both ways; keyless


def echo_case(srv, port, up, size, version, what, seed=1, resumed=None, ctx=None, sni=None):
    """size bytes both ways at once through the TLS echo upstream on
    `port`: sha256 each way, both ends clean, both sockets offloaded,
    copied 0 upstream to client, and client to upstream too where the
    upstream sends a banner first (the client waits for it before it
    sends: a client that sends at once has its first bytes read in
    userspace while the upstream is being connected, and copied).
    Returns (note, the upstream's record)."""
    src = ttp.data(size, seed)
    head = BANNER if up.banner else b""
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=ctx or client_ctx("1.3"), keep=len(BANNER)) as c:
        if head:
            wait_banner(c, what)
        done = c.run(src, end="close_notify", timeout=IO_TIMEOUT + size / MIB)
        expect(done, "%s: the exchange ended in time (sent %d of %d, got %d, end %r)"
               % (what, c.tx_wire, size, c.rx, c.peer_end))
        expect_eq((c.rx, c.rx_sha.hexdigest(), c.peer_end),
                  (len(head) + size, ttp.sha(head + src), "close_notify"),
                  "%s: the client got: bytes, sha256 (%secho), end"
                  % (what, "banner and " if head else ""))
        cport = c.local_port
    rec = tps.upstream_rec(up, n)
    expect(rec is not None, "%s: the upstream connection ended" % what)
    expect_eq((rec.get("version"), rec.get("n"), rec.get("sha"), rec.get("end"),
               rec.get("closed"), rec.get("sni")),
              ("TLSv" + version, size, ttp.sha(src), "eof", "close_notify", sni),
              "%s: the upstream: version, bytes, sha256, end, its own end, SNI" % what)
    d = session(srv, cport, what, size, len(head) + size)
    note = tps.expect_zero_copy(d, what, to_up=bool(head))
    stat = expect_deltas(ctr, {"TlsTxSw": 2, "TlsRxSw": 2, "TlsDecryptError": 0}, what)
    expect_front_offload(srv, mark, cport, what)
    lines = expect_up_offload(srv, mark, up.port, version, resumed=resumed,
                              what="%s (the upstream's session_reused: %s)"
                              % (what, rec.get("resumed")))
    return "%s; %s; upstream %s %s resumed=%s" % (stat, note, lines[0]["version"],
                                                  lines[0]["cipher"], lines[0].get("resumed")), rec


def c_early(srv, port, up, version, fin):
    """SMALL bytes and close_notify sent right after the client's
    handshake (fin: and a FIN), all in before the upstream is connected:
    every byte reaches the upstream, then its close_notify; the echo and
    close_notify reach the client. Without the FIN the client's
    connection is offloaded as always; with it the kernel may refuse the
    tls ULP (a socket in CLOSE_WAIT: ENOTCONN) and the client's side
    stays in userspace, as ringtls's debug line then says. The upstream's
    side is offloaded either way."""
    what = "early %s%s" % (version, ", FIN" if fin else "")
    src = ttp.data(SMALL, 8)
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=client_ctx("1.3")) as c:
        if fin:
            c.run(src, end="close_notify", timeout=IO_TIMEOUT)
        else:
            c.run(src, read=False, timeout=IO_TIMEOUT)
            c._close_notify()
            c.run(read=True, timeout=IO_TIMEOUT)
        got = (c.rx, c.rx_sha.hexdigest(), c.peer_end)
        cport = c.local_port
    ok = got == (SMALL, ttp.sha(src), "close_notify")
    rec = tps.upstream_rec(up, n, IO_TIMEOUT if ok else 10)
    expect(ok, "%s: the client got: bytes, sha256, end: got %r, want %r; the upstream: %r"
           % (what, got, (SMALL, ttp.sha(src), "close_notify"),
              rec and {k: rec.get(k) for k in ("version", "n", "end", "closed")}))
    expect(rec is not None, "%s: the upstream connection ended" % what)
    expect_eq((rec.get("version"), rec.get("n"), rec.get("sha"), rec.get("end"),
               rec.get("closed")), ("TLSv" + version, SMALL, ttp.sha(src), "eof", "close_notify"),
              "%s: the upstream: version, bytes, sha256, end, its own end" % what)
    d = session(srv, cport, what, SMALL, SMALL)
    front = srv.conn_tls_lines(mark, cport, 10)
    expect_eq(len(front), 1, "%s: ringtls's debug lines for the client's connection" % what)
    fx, fr = (int(front[0][k] == "yes") for k in ("ktx", "krx"))
    if not fin:
        expect_eq((fx, fr), (1, 1), "%s: the client's connection in the kernel: TX, RX" % what)
    expect_up_offload(srv, mark, up.port, version, what=what)
    stat = expect_deltas(ctr, {"TlsTxSw": fx + 1, "TlsRxSw": fr + 1, "TlsDecryptError": 0},
                         what)
    return "%s; client side kernel-tx=%s kernel-rx=%s; client to upstream %s, upstream to " \
        "client %s" % (stat, front[0]["ktx"], front[0]["krx"],
                       *tps.MOVED_RE.findall(d["line"]))


def wait_banner(c, what):
    """The upstream's BANNER, before the client sends anything: by then
    the upstream connection is up and both of its directions are in the
    kernel (its tickets came before the banner), so every byte after
    can be spliced (what a client sends while the upstream is still
    being connected is read in userspace and copied)."""
    ok = c.run(read=True, until=lambda: c.rx >= len(BANNER), timeout=IO_TIMEOUT)
    expect(ok and c.rx == len(BANNER) and bytes(c.rx_data) == BANNER,
           "%s: the upstream's banner, before the client sends (got %d bytes %r, end %r)"
           % (what, c.rx, bytes(c.rx_data), c.peer_end))


def c_echo(srv, port, up, version):
    return echo_case(srv, port, up, SIZE, version, "%secho %s"
                     % ("banner, then " if up.banner else "", version))[0]


def fetch_page(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    return data.decode("utf-8", "replace")


def c_split(srv, port, up):
    """The split upstream's records (h_tls_split) reach the client
    whole and spliced: sha256, both ends clean, copied 0 upstream to
    client, +2/+2, both sides offloaded."""
    what = "split records"
    src = ttp.data(SPLIT_N << 14, 12)
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=client_ctx("1.3")) as c:
        done = c.run(read=True, timeout=IO_TIMEOUT + SPLIT_N * SPLIT_PAUSE)
        expect(done, "%s: the upstream's end reached the client in time (got %d, end %r)"
               % (what, c.rx, c.peer_end))
        expect_eq((c.rx, c.rx_sha.hexdigest(), c.peer_end), (len(src), ttp.sha(src),
                                                              "close_notify"),
                  "%s: the client got: bytes, sha256, end" % what)
        done = c.run(end="close_notify", read=False, timeout=IO_TIMEOUT)
        expect(done and c.send_error is None, "%s: the client's close_notify went (error %r)"
               % (what, c.send_error))
        cport = c.local_port
    rec = tps.upstream_rec(up, n)
    expect(rec is not None, "%s: the upstream connection ended" % what)
    expect_eq((rec.get("version"), rec.get("sent"), rec.get("closed"), rec.get("n"),
               rec.get("end")), ("TLSv1.3", len(src), "close_notify", 0, "eof"),
              "%s: the upstream: version, sent, its end, then got: bytes, end" % what)
    d = session(srv, cport, what, 0, len(src))
    note = tps.expect_zero_copy(d, what)
    stat = expect_deltas(ctr, {"TlsTxSw": 2, "TlsRxSw": 2, "TlsDecryptError": 0}, what)
    expect_front_offload(srv, mark, cport, what)
    expect_up_offload(srv, mark, up.port, "1.3", what=what)
    return "%s; %s" % (stat, note)


def c_keyless(srv, targets):
    """A session per (port, upstream, version) held open after SMALL
    bytes went both ways: live_ssl 0 meanwhile; then each ends cleanly."""
    what = "keyless"
    ctr = Counters()
    mark = srv.mark()
    pipes = []
    try:
        for port, up, version in targets:
            src = ttp.data(SMALL, 30)
            c = ttp.TlsPipe(port, ctx=client_ctx("1.3"), keep=len(BANNER))
            pipes.append(c)
            wait_banner(c, "%s %s" % (what, version))
            want = len(BANNER) + len(src)
            ok = c.run(src, read=True, timeout=IO_TIMEOUT,
                       until=lambda: c.tx >= len(src) and not len(c.pend) and c.rx >= want)
            expect(ok and c.rx == want, "%s %s: %d bytes both ways (got %d, end %r)"
                   % (what, version, len(src), c.rx - len(BANNER), c.peer_end))
            expect_up_offload(srv, mark, up.port, version, what="%s %s" % (what, version))
            expect_front_offload(srv, mark, c.local_port, "%s %s" % (what, version))
        live = page_cells(fetch_page(srv.plain_port)).get("live_ssl")
        expect_eq(live, "0", "%s: live_ssl with %d idle sessions open (%d offloaded sockets)"
                  % (what, len(pipes), 2 * len(pipes)))
        for c in pipes:
            ok = c.run(end="close_notify", timeout=IO_TIMEOUT)
            expect(ok and c.peer_end == "close_notify", "%s: the session ends cleanly (end %r)"
                   % (what, c.peer_end))
    finally:
        for c in pipes:
            c.close()
    stat = expect_deltas(ctr, {"TlsTxSw": 2 * len(pipes), "TlsRxSw": 2 * len(pipes),
                               "TlsDecryptError": 0}, what)
    return "live_ssl 0 with %d sessions open; %s" % (len(pipes), stat)


# --------------------------------------------------------------------------
# 2. The reverse proxy to an https:// upstream


class _TlsTCPServer(ups._TCPServer):
    """upstreams.py's backend server, each connection wrapped in TLS in
    its own thread."""
    ctx = None

    def finish_request(self, request, client_address):
        request.settimeout(IO_TIMEOUT)
        b = self.backend
        try:
            s = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with b.lock:
                b.tls.append({"error": str(e)})
            return
        with b.lock:
            b.tls.append({"version": s.version(), "resumed": s.session_reused,
                          "sni": getattr(s, "rtls_sni", None)})
        try:
            super().finish_request(s, client_address)
        finally:
            s.close()


class TlsBackend(ups.Backend):
    """upstreams.Backend over TLS (up_ctx(version)); .tls lists each
    connection's version, resumed and SNI (or its handshake error)."""

    def __init__(self, name, version):
        self.name = name
        self.lock = threading.Lock()
        self.conns = self.requests = self.sent = self.received = self.expects = 0
        self.log = []
        self.socks = []
        self.tls = []
        self.httpd = _TlsTCPServer(("127.0.0.1", 0), ups._Handler)
        self.httpd.ctx = up_ctx(version)
        self.port = self.httpd.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.httpd.backend = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()


def h_https_split(conn, rec, up, ctx):
    """One HTTP/1.1 request, answered 200 with SPLIT_N << 14 bytes of
    upstreams.pattern(), the head its own record, each record in two
    segments (send_split); Connection: close, then close_notify + FIN."""
    c = open_pipe(conn, ctx, rec, keep=1 << 16)
    if c is None:
        return
    c.run(read=True, until=lambda: b"\r\n\r\n" in c.rx_data, timeout=IO_TIMEOUT)
    rec["request"] = bytes(c.rx_data).split(b"\r\n", 1)[0].decode("latin-1")
    body = ups.pattern(SPLIT_N << 14)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(IO_TIMEOUT)
    try:
        send_split(c, conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        send_split(c, conn, body)
        rec["sent"] = len(body)
    except OSError as e:
        rec["sent"] = "send: %s" % e
    conn.setblocking(False)
    c.run(end="close_notify", read=True)
    rec.update(end=pipe_end(c))


def c_https_split(srv, up):
    """GET through --proxy /s/ to h_https_split: 200, the body whole,
    +2/+2, both sides offloaded, no warn or error line."""
    what = "https upstream, split records"
    t = T()
    n = SPLIT_N << 14
    ctr = Counters()
    mark = srv.mark()
    k = len(up.accepted)
    with tp.Client(srv.port, tls=True, timeout=IO_TIMEOUT + 2 * SPLIT_N * SPLIT_PAUSE,
                   ctx=client_ctx("1.3")) as c:
        tp.download(t, c, "/s/x", n, what)
        cport = c.local_port
    rec = tps.upstream_rec(up, k)
    expect(rec is not None, "%s: the upstream connection ended" % what)
    expect_eq((rec.get("version"), rec.get("request"), rec.get("sent")),
              ("TLSv1.3", "GET /s/x HTTP/1.1", n),
              "%s: the upstream: version, request line, body bytes sent" % what)
    stat = expect_deltas(ctr, {"TlsTxSw": 2, "TlsRxSw": 2, "TlsDecryptError": 0}, what)
    expect_front_offload(srv, mark, cport, what)
    expect_up_offload(srv, mark, up.port, "1.3", what=what)
    bad = [l for l in srv.lines_since(mark) if " warn " in l or " error " in l]
    expect_eq(bad, [], "%s: warn or error lines" % what)
    # The body went by splice, every byte: on a non-blocking kTLS
    # upstream io_uring ended the forward's splice and peek in EAGAIN on
    # a partial record, and the forward read those records the ordinary
    # way (6.1: "spliced 81920" of 131072).
    sp = [m.groups() for m in (re.search(r"http 127\.0\.0\.1:%d: proxy: response body (\d+) "
                                         r"bytes, spliced (\d+)" % cport, l)
                               for l in srv.lines_since(mark)) if m]
    expect_eq(sp, [(str(n), str(n))], "%s: response body bytes, spliced" % what)
    return stat


def c_http(srv, backend, version):
    """HTTP_SIZE down and HTTP_SIZE up, one client connection each."""
    what = "https upstream %s" % version
    t = T()
    notes = []
    for i, (kind, path) in enumerate((("download", "/p/bytes/%d" % HTTP_SIZE),
                                      ("upload", "/p/upload"))):
        ctr = Counters()
        mark = srv.mark()
        conns0 = backend.counts()[0]
        ntls0 = len(backend.tls)
        with tp.Client(srv.port, tls=True, timeout=IO_TIMEOUT, ctx=client_ctx("1.3")) as c:
            if kind == "download":
                tp.download(t, c, path, HTTP_SIZE, "%s: download" % what)
            else:
                tp.upload(t, c, path, HTTP_SIZE, "%s: upload" % what)
            cport = c.local_port
        new = backend.counts()[0] - conns0
        if i == 0:
            expect(new >= 1, "%s: %s: the backend accepted %d connections (a fresh server "
                   "must open one)" % (what, kind, new))
        with backend.lock:
            tls = backend.tls[ntls0:]
        expect_eq([x.get("version") for x in tls], ["TLSv" + version] * new,
                  "%s: %s: the backend's TLS connections (%r)" % (what, kind, tls))
        stat = expect_deltas(ctr, {"TlsTxSw": 1 + new, "TlsRxSw": 1 + new,
                                   "TlsDecryptError": 0}, "%s: %s" % (what, kind))
        expect_front_offload(srv, mark, cport, "%s: %s" % (what, kind))
        if new:
            expect_up_offload(srv, mark, backend.port, version, n=new,
                              what="%s: %s" % (what, kind))
        notes.append("%s: %d new upstream connection(s), %s" % (kind, new, stat))
    return "; ".join(notes)


def curl_h2(srv, path, out, extra=()):
    """curl --http2 over TLS 1.3 to srv (ALPN h2); (http_version, status,
    client port)."""
    p = subprocess.run(["curl", "-sS", "--http2", "--tlsv1.3", "--cacert", WORK.ca,
                        "--max-time", "300", "--resolve", "localhost:%d:127.0.0.1" % srv.port,
                        "-o", out, "-w", "%{http_version} %{response_code} %{local_port}",
                        *extra, "https://localhost:%d%s" % (srv.port, path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=330)
    expect_eq(p.returncode, 0, "curl --http2 exit status (stderr %r)" % p.stderr[-300:])
    version, status, port = p.stdout.decode().split()
    return version, int(status), int(port)


def c_http2(srv, backend, version):
    """HTTP_SIZE down and HTTP_SIZE up through the proxy with HTTP/2 on
    the client's side (curl --http2, one connection each), the upstream
    leg HTTP/1.1 over TLS `version` (backend.tls), or plaintext."""
    what = "HTTP/2 client, %s upstream%s" % ("https" if hasattr(backend, "tls") else "http",
                                              " " + version if hasattr(backend, "tls") else "")
    notes = []
    src = os.path.join(WORK.tmp, "h2-up.bin")
    with open(src, "wb") as f:
        f.write(ups.pattern(HTTP_SIZE, 5))
    out = os.path.join(WORK.tmp, "h2-out.bin")
    for i, (kind, path, extra) in enumerate((
            ("download", "/p/bytes/%d" % HTTP_SIZE, ()),
            ("upload", "/p/upload", ("--data-binary", "@" + src)))):
        ctr = Counters()
        mark = srv.mark()
        conns0 = backend.counts()[0]
        ntls0 = len(getattr(backend, "tls", []))
        hv, status, cport = curl_h2(srv, path, out, extra)
        expect_eq((hv, status), ("2", 200), "%s: %s: curl's http_version, status" % (what, kind))
        with open(out, "rb") as f:
            data = f.read()
        if kind == "download":
            expect_eq((len(data), hashlib.sha256(data).hexdigest()),
                      (HTTP_SIZE, ups.pattern_sha(HTTP_SIZE)), "%s: download (bytes, sha256)"
                      % what)
        else:
            j = json.loads(data)
            expect_eq((j["body_len"], j["body_sha256"]), (HTTP_SIZE, ups.pattern_sha(HTTP_SIZE, 5)),
                      "%s: upload: what the backend read (bytes, sha256)" % what)
        new = backend.counts()[0] - conns0
        if i == 0:
            expect(new >= 1, "%s: %s: the backend accepted %d connections (a fresh server "
                   "must open one)" % (what, kind, new))
        up_tls = new if hasattr(backend, "tls") else 0
        if up_tls:
            with backend.lock:
                tls = backend.tls[ntls0:]
            expect_eq([x.get("version") for x in tls], ["TLSv" + version] * new,
                      "%s: %s: the backend's TLS connections (%r)" % (what, kind, tls))
        stat = expect_deltas(ctr, {"TlsTxSw": 1 + up_tls, "TlsRxSw": 1 + up_tls,
                                   "TlsDecryptError": 0}, "%s: %s" % (what, kind))
        lines = srv.conn_tls_lines(mark, cport, 10)
        expect_eq([(l["ktx"], l["krx"], l.get("alpn")) for l in lines], [("yes", "yes", "h2")],
                  "%s: %s: ringtls's debug line for the client's connection: kernel-tx, "
                  "kernel-rx, alpn" % (what, kind))
        if up_tls:
            expect_up_offload(srv, mark, backend.port, version, n=new,
                              what="%s: %s" % (what, kind))
        notes.append("%s: %d new upstream connection(s), %s" % (kind, new, stat))
    os.unlink(out)
    return "; ".join(notes)


# --------------------------------------------------------------------------
# 3. Resumption


def c_resume(srv, port, up, version):
    """Two sessions one after the other: resumed=no, then resumed=yes
    (ringtls's line and the upstream's session_reused)."""
    notes = []
    for i, want in enumerate(("no", "yes")):
        what = "resumption %s, session %d" % (version, i + 1)
        note, rec = echo_case(srv, port, up, SMALL, version, what, seed=40 + i, resumed=want)
        expect_eq(rec.get("resumed"), want == "yes",
                  "%s: the upstream's session_reused" % what)
        notes.append("%d: %s" % (i + 1, note))
    return " | ".join(notes)


# --------------------------------------------------------------------------
# 4. Half-close through the upstream leg


def c_half_upstream_first(srv, port, up):
    """The upstream: HALF_UP bytes, close_notify + FIN, then it reads;
    the client: all of it, close_notify, then HALF_AFTER bytes and its
    own close_notify + FIN."""
    what = "half-close upstream->client"
    first, after = ttp.data(HALF_UP, 4), ttp.data(HALF_AFTER, 5)
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=client_ctx("1.3")) as c:
        done = c.run(read=True, timeout=IO_TIMEOUT)
        expect(done, "%s: the upstream's end reached the client in time (got %d, end %r)"
               % (what, c.rx, c.peer_end))
        expect_eq((c.rx, c.rx_sha.hexdigest(), c.peer_end),
                  (HALF_UP, ttp.sha(first), "close_notify"),
                  "%s: the client got: bytes, sha256, then close_notify" % what)
        expect(len(up.accepted) > n and "end" not in up.accepted[n],
               "%s: the upstream is still reading after its close_notify + FIN" % what)
        done = c.run(after, end="close_notify", read=False, timeout=IO_TIMEOUT)
        expect(done and c.send_error is None, "%s: the client sent %d bytes after the "
               "server's close_notify (error %r)" % (what, HALF_AFTER, c.send_error))
        rec = tps.upstream_rec(up, n)
        expect(rec is not None, "%s: the upstream connection ended" % what)
        expect_eq((rec.get("sent"), rec.get("closed"), rec.get("n"), rec.get("sha"),
                   rec.get("end")),
                  (HALF_UP, "close_notify", HALF_AFTER, ttp.sha(after), "eof"),
                  "%s: the upstream sent, ended with; then got: bytes, sha256, end" % what)
        tcp_end = c.tcp_end()
        expect_eq(tcp_end, "fin", "%s: then ringtls closes the client's connection" % what)
        cport = c.local_port
    d = session(srv, cport, what, HALF_AFTER, HALF_UP)
    note = tps.expect_zero_copy(d, what, to_up=False)
    stat = expect_deltas(ctr, {"TlsTxSw": 2, "TlsRxSw": 2, "TlsDecryptError": 0}, what)
    expect_front_offload(srv, mark, cport, what)
    expect_up_offload(srv, mark, up.port, "1.3", what=what)
    return "%s; %s; log ends: client %s, upstream %s" % (stat, note, d["cend"], d["uend"])


def c_half_client_first(srv, port, up):
    """The client: HALF_UP bytes, close_notify + FIN; the upstream reads
    to close_notify, then sends HALF_BACK bytes and close_notify + FIN:
    the client gets every byte, then close_notify."""
    what = "half-close client->upstream"
    src, back = ttp.data(HALF_UP, 2), ttp.data(HALF_BACK, 3)
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=client_ctx("1.3")) as c:
        done = c.run(src, end="close_notify", timeout=IO_TIMEOUT)
        expect(done, "%s: ended in time (got %d, end %r)" % (what, c.rx, c.peer_end))
        expect_eq((c.rx, c.rx_sha.hexdigest(), c.peer_end),
                  (HALF_BACK, ttp.sha(back), "close_notify"),
                  "%s: after our close_notify + FIN: bytes, sha256, then ringtls's end" % what)
        cport = c.local_port
    rec = tps.upstream_rec(up, n)
    expect(rec is not None, "%s: the upstream connection ended" % what)
    expect_eq((rec.get("n"), rec.get("sha"), rec.get("end"), rec.get("sent"), rec.get("closed")),
              (HALF_UP, ttp.sha(src), "eof", HALF_BACK, "close_notify"),
              "%s: the upstream got: bytes, sha256, end (close_notify); then sent, ended with"
              % what)
    d = session(srv, cport, what, HALF_UP, HALF_BACK)
    (sp, cp), (sb, cb) = tps.moved(d)
    expect(sb + cb == HALF_BACK and cb in (0, RECORD), "%s: log: upstream to client (spliced, "
           "copied) (%d, %d): want (%d, 0), or one %d-byte record copied (%r)"
           % (what, sb, cb, HALF_BACK, RECORD, d["line"]))
    note = "client to upstream spliced %d copied %d, upstream to client spliced %d copied " \
        "%d%s" % (sp, cp, sb, cb, " (one record copied: tolerated, see section 4)" if cb else "")
    stat = expect_deltas(ctr, {"TlsTxSw": 2, "TlsRxSw": 2, "TlsDecryptError": 0}, what)
    expect_front_offload(srv, mark, cport, what)
    expect_up_offload(srv, mark, up.port, "1.3", what=what)
    return "%s; %s; log ends: client %s, upstream %s" % (stat, note, d["cend"], d["uend"])


# --------------------------------------------------------------------------
# 5. KeyUpdate from the upstream (openssl s_server), rekey kernels


class SServer(tps.SClient):
    """openssl s_server -tls1_3 -naccept 1 on pipes (tcpproxy_suite's
    SClient machinery): stdin goes to the client, what the client sends
    comes out on stdout among s_server's own lines."""

    def __init__(self, port):
        self.argv = ["openssl", "s_server", "-tls1_3", "-naccept", "1",
                     "-accept", "127.0.0.1:%d" % port, "-cert", PKI.cert, "-key", PKI.key]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=True, bufsize=0)
        self.fd = self.proc.stdin.fileno()
        fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.out, self.err = bytearray(), bytearray()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(f, b), daemon=True)
                        for f, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for th in self.threads:
            th.start()

    def received(self):
        """stdout without s_server's "SSL_do_handshake -> N" (after k, K)
        and "Read BLOCK" (an SSL_read that took a record with no data in
        it, such as ringtls's KeyUpdate) lines: stdio writes them out
        wherever it flushes, even inside the raw data."""
        return re.sub(rb"SSL_do_handshake -> -?\d+\n|Read BLOCK\n|Write BLOCK\n", b"",
                      self.stdout())

    def command(self, letter, timeout):
        """A "k"/"K" line read on its own: what s_server took before has
        all been read, and the next write waits until this one is read
        (s_server drops the rest of a read that starts with a command)."""
        return (tps.wait_for(lambda: self.queued() == 0, timeout)
                and self.write(letter + b"\n", timeout)
                and tps.wait_for(lambda: self.queued() == 0, timeout))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ku_lines(n, seed):
    """n bytes of hex lines that never give s_server a command: no q, Q,
    P or S, and the byte before each newline is a digit (no "c\\n",
    "r\\n", ...)."""
    out = bytearray()
    h = ttp.data(n // 2 + 64, seed).hex().encode()
    i = 0
    while len(out) < n:
        out += h[i:i + 62] + b"0\n"
        i += 62
    return bytes(out[:n - 2]) + b"0\n"


def c_keyupdate(full):
    what = "KeyUpdate from the upstream"
    sport = free_port()
    ss = SServer(sport)
    srv = None
    try:
        expect(tps.wait_for(lambda: b"ACCEPT" in ss.stdout() or ss.proc.poll() is not None,
                            IO_TIMEOUT, 0.05) and ss.proc.poll() is None,
               "%s: s_server did not start: %r %r" % (what, ss.stdout()[-300:],
                                                      ss.stderr()[-300:]))
        srv = Server(*full, "--upstream-ca", PKI.ca,
                     "--tcp-proxy", "127.0.0.1:0=tls://127.0.0.1:%d" % sport,
                     name="ringtls-keyupdate")
        port, = tcp_ports(srv, 1)
        keys = ("TlsTxSw", "TlsRxSw", "TlsDecryptError", "TlsRxRekeyOk", "TlsTxRekeyOk",
                "TlsRxRekeyError", "TlsTxRekeyError")
        ctr = Counters()
        mark = srv.mark()
        down = [ku_lines(KU_PHASE, 50 + i) for i in range(3)]
        upd = [ku_lines(KU_PHASE, 60 + i) for i in range(3)]
        with ttp.TlsPipe(port, ctx=client_ctx("1.3")) as c:
            cport = c.local_port
            got_down, sent_up = b"", b""
            for i in range(3):
                if i:
                    letter = b"k" if i == 1 else b"K"
                    expect(ss.command(letter, KU_STEP), "%s: s_server took %r alone (stderr %r)"
                           % (what, letter, ss.stderr()[-300:]))
                got_down += down[i]
                sent_up += upd[i]
                wr = threading.Thread(target=ss.write, args=(down[i], KU_STEP), daemon=True)
                wr.start()
                ok = c.run(upd[i], read=True, timeout=KU_STEP,
                           until=lambda: (c.tx >= len(sent_up) and not len(c.pend)
                                          and c.rx >= len(got_down)))
                wr.join(KU_STEP)
                expect(ok and c.rx == len(got_down) and c.peer_end is None,
                       "%s: phase %d from s_server to the client (got %d of %d, end %r)"
                       % (what, i + 1, c.rx, len(got_down), c.peer_end))
                ok = tps.wait_for(lambda: ss.received().count(sent_up) == 1, KU_STEP, 0.05)
                expect(ok, "%s: phase %d from the client reached s_server (its output: %d "
                       "bytes, ends %r)" % (what, i + 1, len(ss.stdout()), ss.stdout()[-120:]))
            expect_eq(c.rx_sha.hexdigest(), ttp.sha(got_down), "%s: sha256 of what the client "
                      "got" % what)
            c.run(end="close_notify", timeout=IO_TIMEOUT)
            client_end = c.peer_end
        rc = ss.finish(IO_TIMEOUT)
        out = ss.stdout()
        expect_eq(out.count(b"SSL_do_handshake -> 1"), 2,
                  "%s: s_server's KeyUpdates done (\"SSL_do_handshake -> 1\" lines)" % what)
        expect_eq(ss.received().count(sent_up), 1, "%s: s_server's output has the client's "
                  "bytes once" % what)
        d = ttp.session(srv, cport)
        expect(d is not None and "unparsed" not in d, "%s: a log line for client port %d: %r"
               % (what, cport, ttp.session_lines(srv, cport)))
        expect_eq((d["to_up"], d["to_client"]), (len(sent_up), len(got_down)),
                  "%s: log: client to upstream, upstream to client bytes" % what)
        note = tps.expect_zero_copy(d, what, to_up=False)
        got = deltas(ctr, keys)
        want_exact = {"TlsTxSw": 2, "TlsRxSw": 2, "TlsDecryptError": 0, "TlsRxRekeyOk": 2,
                      "TlsRxRekeyError": 0, "TlsTxRekeyError": 0}
        expect_eq({k: got[k] for k in want_exact}, want_exact, "%s: tls_stat deltas (all: %r)"
                  % (what, got))
        expect(got["TlsTxRekeyOk"] >= 1, "%s: tls_stat TlsTxRekeyOk rose by %d, want >= 1 "
               "(ringtls's answer to K; all: %r)" % (what, got["TlsTxRekeyOk"], got))
        expect_front_offload(srv, mark, cport, what)
        expect_up_offload(srv, mark, sport, "1.3", what=what)
        stop_server(srv)
        srv = None
        return "%s; %d bytes each way; client end %s; log ends: client %s, upstream %s; " \
            "s_server exit %s; %s" % (" ".join("%s%+d" % kv for kv in got.items()),
                                      len(got_down), client_end, d["cend"], d["uend"], rc, note)
    except Fail as e:
        if srv:
            raise log_fail(e, srv, 0) from None
        raise
    finally:
        ss.kill()
        if srv:
            srv.stop()


# --------------------------------------------------------------------------
# 6. Verification failure


def c_wrong_ca(full, up):
    what = "wrong CA"
    srv = Server(*full, "--upstream-ca", PKI.other_ca, "--tcp-proxy", "127.0.0.1:0=" + up.spec,
                 name="ringtls-wrong-ca")
    try:
        port, = tcp_ports(srv, 1)
        ctr = Counters()
        mark = srv.mark()
        n = len(up.accepted)
        with ttp.TlsPipe(port, ctx=client_ctx("1.3")) as c:
            c.run(ttp.data(SMALL, 70), read=True, timeout=IO_TIMEOUT)
            expect(c.peer_end is not None, "%s: the client's connection did not end (got %d)"
                   % (what, c.rx))
            expect(c.abrupt and c.rx == 0, "%s: the client's connection ends with no data and "
                   "no close_notify: got %d bytes, end %r" % (what, c.rx, c.peer_end))
            cport = c.local_port
        rec = tps.upstream_rec(up, n, IO_TIMEOUT)
        expect(rec is not None and str(rec.get("end", "")).startswith("handshake:"),
               "%s: the upstream's handshake failed: %r" % (what, rec))
        time.sleep(0.5)
        warns = [l for l in srv.lines_since(mark) if re.search(r"^\S+ warn .*tls upstream", l)]
        expect_eq(len(warns), 1, "%s: warn lines naming \"tls upstream\": %r (all lines: %r)"
                  % (what, warns, srv.lines_since(mark)))
        expect_eq(up_lines(srv, mark), [], "%s: \"tls upstream\" debug lines (no handshake)"
                  % what)
        expect_front_offload(srv, mark, cport, what)
        stat = expect_deltas(ctr, {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0}, what)
        d = ttp.session(srv, cport, timeout=5)
        line = d.get("line") or d.get("unparsed") if d else None
        stop_server(srv)
        return "%s; the client saw %s; upstream: %s; warn: %s; session: %s" % (
            stat, c.peer_end, rec.get("end"), warns[0].split(" ", 1)[1], line)
    except Fail as e:
        raise log_fail(e, srv, 0) from None
    finally:
        if srv.alive():
            srv.stop()


# --------------------------------------------------------------------------
# 7-10: a failing upstream (name, client certificate, refused), and
# session tickets that span several records


def warn_lines(srv, mark):
    """The warn lines since mark that name "tls upstream"."""
    return [l for l in srv.lines_since(mark) if re.search(r"^\S+ warn .*tls upstream", l)]


def one_warn(srv, mark, what, want=None):
    """Exactly one warn line naming "tls upstream" (that says `want`,
    where given), once it is there; returns it without its time."""
    tps.wait_for(lambda: warn_lines(srv, mark), 10, 0.05)
    time.sleep(0.5)
    warns = warn_lines(srv, mark)
    expect_eq(len(warns), 1, "%s: warn lines naming \"tls upstream\": %r (all lines: %r)"
              % (what, warns, srv.lines_since(mark)[-LOG_TAIL:]))
    if want:
        expect(want in warns[0], "%s: the warn line says %r: %r" % (what, want, warns[0]))
    return warns[0].split(" ", 1)[1]


def failed_client(port, what, want_end="reset"):
    """A TLS 1.3 client that sends SMALL bytes and reads: its connection
    must end with no data and no close_notify (want_end: "reset", or
    None for any abrupt end). Returns (client port, its end)."""
    with ttp.TlsPipe(port, ctx=client_ctx("1.3")) as c:
        c.run(ttp.data(SMALL, 70), read=True, timeout=IO_TIMEOUT)
        expect(c.peer_end is not None, "%s: the client's connection did not end (got %d)"
               % (what, c.rx))
        expect(c.abrupt and c.rx == 0, "%s: the client's connection ends with no data and "
               "no close_notify: got %d bytes, end %r" % (what, c.rx, c.peer_end))
        if want_end:
            expect_eq(c.peer_end, want_end, "%s: how the client's connection ends" % what)
        return c.local_port, c.peer_end


def http_get(port, what, path="/"):
    """GET path over TLS 1.3 on a connection of its own: (response,
    client port)."""
    with tp.Client(port, tls=True, timeout=IO_TIMEOUT, ctx=client_ctx("1.3")) as c:
        try:
            r = c.request("GET", path, headers=["Connection: close"])
        except (OSError, ssl.SSLError, AssertionError, tp.rt.ConnClosed) as e:
            raise Fail("%s: GET %s: %s: %s" % (what, path, type(e).__name__, e)) from None
        return r, c.local_port


def c_wrong_name_tcp(srv, port, up):
    """--upstream-sni WRONG_SNI, TCP mode: the upstream gets that name
    in its ClientHello and ringtls refuses its certificate (IP:127.0.0.1
    and DNS:upstream.test): the client's connection is reset, one warn
    line says hostname mismatch, no "tls upstream" debug line, and only
    the client's socket is offloaded (TlsTxSw +1, TlsRxSw +1)."""
    what = "wrong name, tcp-proxy"
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    nsni = len(up.ctx.rtls_snis)
    cport, end = failed_client(port, what)
    rec = tps.upstream_rec(up, n, IO_TIMEOUT)
    expect(rec is not None and str(rec.get("end", "")).startswith("handshake:"),
           "%s: the upstream's handshake failed: %r" % (what, rec))
    expect_eq(up.ctx.rtls_snis[nsni:], [WRONG_SNI], "%s: the names the upstream got" % what)
    warn = one_warn(srv, mark, what, "hostname mismatch")
    expect_eq(up_lines(srv, mark), [], "%s: \"tls upstream\" debug lines (no handshake)" % what)
    expect_front_offload(srv, mark, cport, what)
    stat = expect_deltas(ctr, {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0}, what)
    d = ttp.session(srv, cport, timeout=10)
    expect(d is not None and "unparsed" not in d, "%s: a session line for client port %d: %r"
           % (what, cport, ttp.session_lines(srv, cport)))
    expect_eq((d["to_client"], d["uend"].startswith("connect failed")), (0, True),
              "%s: session line: upstream to client bytes, upstream end \"connect failed\" "
              "(%r)" % (what, d["line"]))
    return "%s; the client saw %s; upstream: %s; warn: %s; session: client end %s, upstream " \
        "end %s" % (stat, end, rec.get("end"), warn, d["cend"], d["uend"])


def c_wrong_name_http(srv, up):
    """--upstream-sni WRONG_SNI, the reverse proxy: 502, one warn line
    (hostname mismatch), one upstream handshake (no retry), only the
    client's socket offloaded."""
    what = "wrong name, --proxy"
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    nsni = len(up.ctx.rtls_snis)
    r, cport = http_get(srv.port, what)
    expect_eq(r.status, 502, "%s: status" % what)
    rec = tps.upstream_rec(up, n, IO_TIMEOUT)
    expect(rec is not None and str(rec.get("end", "")).startswith("handshake:"),
           "%s: the upstream's handshake failed: %r" % (what, rec))
    time.sleep(0.5)
    expect_eq((len(up.accepted) - n, up.ctx.rtls_snis[nsni:]), (1, [WRONG_SNI]),
              "%s: the upstream's connections, the names it got" % what)
    warn = one_warn(srv, mark, what, "hostname mismatch")
    expect_eq(up_lines(srv, mark), [], "%s: \"tls upstream\" debug lines (no handshake)" % what)
    expect_front_offload(srv, mark, cport, what)
    stat = expect_deltas(ctr, {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0}, what)
    return "%s; 502; upstream: %s; warn: %s" % (stat, rec.get("end"), warn)


def c_right_name(srv, port, up):
    """--upstream-sni UP_SNI (the certificate's DNS name): the upstream
    (banner first) gets it, the session goes through, offloaded, copied
    0 both ways."""
    return echo_case(srv, port, up, SMALL, "1.3", "right --upstream-sni", seed=72,
                     sni=UP_SNI)[0]


def c_no_client_cert(srv, port, up, version):
    """An upstream that requires a client certificate, ringtls without
    --upstream-cert: the client's connection is reset with no data, one
    warn line names "tls upstream".
    TLS 1.2: the upstream refuses during the handshake: no "tls
    upstream" debug line, only the client's socket offloaded (TlsTxSw
    +1, TlsRxSw +1).
    TLS 1.3: a client's handshake is done once it has sent its
    (empty) Certificate and Finished, before the server has looked at
    them; the server's refusal (an alert) is the first record ringtls
    reads after it. So ringtls's side of the upstream is done and its TX
    in the kernel ("tls upstream" line kernel-tx=yes kernel-rx=no (rx
    after the first record)); RX would go to the kernel after the first
    record, which is the alert: TlsTxSw +2, TlsRxSw +1. (The upstream
    holds the connection after its alert, h_tls_refuse_hold: one that
    closes at once can have its FIN in before ringtls sets the tls ULP,
    which then fails with ENOTCONN: kernel-tx=no, TlsTxSw +1.)
    Either way ringtls then ends the upstream connection (rec["after"]:
    "fin" or "reset")."""
    what = "no client certificate %s" % version
    ctr = Counters()
    mark = srv.mark()
    n = len(up.accepted)
    cport, end = failed_client(port, what)
    rec = tps.upstream_rec(up, n, IO_TIMEOUT)
    expect(rec is not None and str(rec.get("end", "")).startswith("handshake:")
           and "CERTIFICATE" in rec["end"].upper() and rec.get("after") in ("fin", "reset"),
           "%s: the upstream's handshake failed for want of a certificate, then ringtls ended "
           "the connection: %r" % (what, rec))
    warn = one_warn(srv, mark, what)
    lines = up_lines(srv, mark, up.port)
    if version == "1.3":
        expect_eq([(l["version"], l.get("kernel-tx"), l.get("kernel-rx"),
                    l["line"].endswith(RX_LATER)) for l in lines],
                  [("TLSv1.3", "yes", "no", True)],
                  "%s: ringtls's \"tls upstream\" lines: version, kernel-tx, kernel-rx, "
                  "rx after the first record (%r)" % (what, [l["line"] for l in lines]))
        want = {"TlsTxSw": 2, "TlsRxSw": 1, "TlsDecryptError": 0}
    else:
        expect_eq(lines, [], "%s: \"tls upstream\" debug lines (no handshake)" % what)
        want = {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0}
    expect_front_offload(srv, mark, cport, what)
    stat = expect_deltas(ctr, want, what)
    d = ttp.session(srv, cport, timeout=10)
    expect(d is not None and "unparsed" not in d, "%s: a session line for client port %d: %r"
           % (what, cport, ttp.session_lines(srv, cport)))
    expect_eq(d["to_client"], 0, "%s: session line: upstream to client bytes" % what)
    return "%s; the client saw %s; upstream: %s, then %s; warn: %s; session: %d bytes to the " \
        "upstream, client end %s, upstream end %s" % (stat, end, rec.get("end"), rec["after"],
                                                      warn, d["to_up"], d["cend"], d["uend"])


def c_client_cert(srv, port, up, version):
    """--upstream-cert/--upstream-key: SMALL bytes both ways (after the
    upstream's banner), sha256, the upstream saw CLIENT_CN, both sides
    offloaded (TlsTxSw +2, TlsRxSw +2), copied 0 both ways."""
    what = "client certificate %s" % version
    note, rec = echo_case(srv, port, up, SMALL, version, what, seed=73)
    expect_eq(rec.get("client"), CLIENT_CN, "%s: the client certificate's CN the upstream "
              "saw" % what)
    return "%s; the upstream saw CN=%s" % (note, rec.get("client"))


def c_refused(srv, port, uport):
    """tls:// to a port nobody listens on: the client's connection is
    reset without data, the session line says "upstream end: connect
    failed (Connection refused)" and lasted less than the connect
    deadline (the refusal ended it, not the timer); only the client's
    socket offloaded."""
    what = "refused upstream"
    ctr = Counters()
    mark = srv.mark()
    cport, end = failed_client(port, what)
    d = ttp.session(srv, cport, timeout=10)
    expect(d is not None and "unparsed" not in d, "%s: a session line for client port %d: %r"
           % (what, cport, ttp.session_lines(srv, cport)))
    expect_eq((d["to_client"], d["uend"]), (0, "connect failed (Connection refused)"),
              "%s: session line: upstream to client bytes, upstream end (%r)" % (what, d["line"]))
    expect(float(d["secs"]) < CONNECT_TIMEOUT / 2, "%s: the session lasted %s s: the refusal "
           "must end it, not the %d s connect deadline" % (what, d["secs"], CONNECT_TIMEOUT))
    expect_eq(up_lines(srv, mark), [], "%s: \"tls upstream\" debug lines (no handshake)" % what)
    expect_front_offload(srv, mark, cport, what)
    stat = expect_deltas(ctr, {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0}, what)
    warns = warn_lines(srv, mark)
    return "%s; the client saw %s after %s s (session line); client end %s; warn lines naming " \
        "tls upstream: %d" % (stat, end, d["secs"], d["cend"], len(warns))


class WwwServer:
    """openssl s_server -tls1_3 -www -max_send_frag FRAG -Verify 1 (a
    client certificate from the test CA required), its output in a file;
    every connection gets one HTTP/1.0 page that says "New, TLSv1.3" or
    "Reused, TLSv1.3", then the end."""

    def __init__(self):
        self.port = free_port()
        self.log_path = os.path.join(WORK.tmp, "s_server-www-%d.log" % self.port)
        self._log = open(self.log_path, "wb")
        self.argv = ["openssl", "s_server", "-tls1_3", "-accept", "127.0.0.1:%d" % self.port,
                     "-cert", PKI.cert, "-key", PKI.key, "-Verify", "1", "-CAfile", PKI.ca,
                     "-www", "-max_send_frag", str(FRAG)]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=self._log,
                                     stderr=subprocess.STDOUT, close_fds=True)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self):
        stop_proc(self.proc, 10, "s_server")
        self._log.close()


TICKET_RE = re.compile(r"<<< TLS 1\.3, Handshake \[length ([0-9a-f]{4})\], NewSessionTicket")


def ticket_sizes(ss):
    """The NewSessionTicket messages' sizes that openssl s_client -msg
    (with ringtls's client certificate) gets from ss."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % ss.port,
                        "-tls1_3", "-cert", PKI.client_cert, "-key", PKI.client_key,
                        "-CAfile", PKI.ca, "-msg", "-ign_eof"],
                       input=b"GET / HTTP/1.0\r\n\r\n", stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=suite_common.PROC_TIMEOUT)
    out = r.stdout.decode("utf-8", "replace")
    return [int(x, 16) for x in TICKET_RE.findall(out)], out


def c_frag_tickets(full):
    """--proxy / to s_server -www -max_send_frag FRAG: its session
    tickets (ringtls's client certificate in them) are over FRAG bytes,
    so each spans several records (checked with s_client -msg). Two
    requests, one client connection each: 200 with s_server's page, which
    says New, then Reused (s_server -www ends each connection: the second
    request opens a second upstream connection); ringtls's "tls
    upstream" lines resumed=no, then resumed=yes, kernel-tx=yes
    kernel-rx=yes; TlsTxSw +2, TlsRxSw +2 each (the client's socket and
    the upstream's)."""
    what = "fragmented tickets"
    ss = WwwServer()
    srv = None
    try:
        expect(tps.wait_for(lambda: "ACCEPT" in ss.log() or ss.proc.poll() is not None,
                            IO_TIMEOUT, 0.05) and ss.proc.poll() is None,
               "%s: s_server did not start: %r" % (what, ss.log()[-300:]))
        sizes, out = ticket_sizes(ss)
        expect(sizes and min(sizes) > FRAG, "%s: s_server's NewSessionTicket sizes %r must be "
               "over %d (one record each otherwise); s_client said: %s"
               % (what, sizes, FRAG, out[-400:]))
        srv = Server(*full, "--upstream-ca", PKI.ca, "--upstream-cert", PKI.client_cert,
                     "--upstream-key", PKI.client_key, "--proxy",
                     "/=https://127.0.0.1:%d" % ss.port, name="ringtls-frag")
        notes = []
        for i, (resumed, word) in enumerate((("no", "New"), ("yes", "Reused"))):
            step = "%s, request %d" % (what, i + 1)
            ctr = Counters()
            mark = srv.mark()
            r, cport = http_get(srv.port, step)
            body = r.body.decode("utf-8", "replace")
            expect_eq((r.status, r.complete), (200, True), "%s: status, complete (body %r)"
                      % (step, body[:200]))
            expect("s_server" in body and "%s, TLSv1.3" % word in body,
                   "%s: s_server's page says \"%s, TLSv1.3\": %r" % (step, word, body[:600]))
            expect_front_offload(srv, mark, cport, step)
            expect_up_offload(srv, mark, ss.port, "1.3", resumed=resumed, what=step)
            stat = expect_deltas(ctr, {"TlsTxSw": 2, "TlsRxSw": 2, "TlsDecryptError": 0}, step)
            notes.append("%d: 200, %d bytes, page says %s, resumed=%s, %s"
                         % (i + 1, len(r.body), word, resumed, stat))
        stop_server(srv)
        srv = None
        return "tickets %r bytes in %d-byte records; %s" % (sizes, FRAG, " | ".join(notes))
    except Fail as e:
        if srv:
            raise log_fail(e, srv, 0) from None
        raise
    finally:
        ss.close()
        if srv:
            srv.stop()


# --------------------------------------------------------------------------

SKIPPED = []


def skip(only, name, why):
    if only and not only.search(name):
        return
    SKIPPED.append(name)
    print("SKIP %s: %s" % (name, why), flush=True)


# run_suite()'s summary line, with this suite's skips counted.
suite_common.print_summary = lambda p, f, s=0: tps._print_summary(p, f, s + len(SKIPPED))


def main():
    only, full = suite_common.start_suite(__doc__, WATCHDOG)
    rekey = not full
    ups_ = []
    backends = []

    def body():
        make_pki()
        echo = {v: TlsUpstream("echo" + v, h_tls_echo, v) for v in VERSIONS}
        banner = {v: TlsUpstream("banner" + v, h_tls_echo, v, banner=True) for v in VERSIONS}
        resume = {v: TlsUpstream("resume" + v, h_tls_echo, v, banner=True) for v in VERSIONS}
        split = TlsUpstream("split", h_tls_split, "1.3")
        first = TlsUpstream("first", h_tls_first(HALF_UP, 4), "1.3")
        sink = TlsUpstream("sink", h_tls_sink_then_send(HALF_BACK, 3), "1.3")
        bad = TlsUpstream("badca", h_tls_echo, "1.3")
        named = [("echo" + v, echo[v]) for v in VERSIONS] + \
            [("banner" + v, banner[v]) for v in VERSIONS] + \
            [("resume" + v, resume[v]) for v in VERSIONS] + [("first", first), ("sink", sink),
                                                              ("split", split)]
        ups_.extend([u for _, u in named] + [bad])
        ttp.data(SIZE, 1)   # made once, outside the checks
        print("upstream-tls suite: %s, kernel %s, server flags %s" % (
            RINGTLS_BIN, os.uname().release, full or "-"), flush=True)
        help_text = subprocess.run([RINGTLS_BIN, "serve", "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=60).stdout
        if b"--upstream-ca" not in help_text:
            raise Fail("%s serve --help has no --upstream-ca: TLS to upstreams is not built "
                       "in" % RINGTLS_BIN)
        args = []
        for _, u in named:
            args += ["--tcp-proxy", "127.0.0.1:0=" + u.spec]
        srv = Server(*full, "--upstream-ca", PKI.ca, *args, plain=True, name="ringtls-up")
        ports = dict(zip([n for n, _ in named], tcp_ports(srv, len(named))))

        # 1
        for v in VERSIONS:
            check(only, "1 tcp-proxy tls:// %d MB both ways TLSv%s, sent at once: sha256, "
                  "copied 0 upstream to client, tls_stat TX+2 RX+2, both debug lines kernel yes"
                  % (SIZE >> 20, v), with_log(srv, c_echo), srv, ports["echo" + v], echo[v], v)
        for v, fin in (("1.3", False), ("1.2", False), ("1.3", True)):
            check(only, "1 tcp-proxy tls:// %d KB and close_notify%s sent at once TLSv%s (all "
                  "in before the upstream is connected): sha256 each way, both ends clean, "
                  "tls_stat" % (SMALL >> 10, " and FIN" if fin else "", v),
                  with_log(srv, c_early), srv, ports["echo" + v], echo[v], v, fin)
        for v in VERSIONS:
            check(only, "1 tcp-proxy tls:// zero copy TLSv%s: banner, then %d MB each way: "
                  "sha256, copied 0 both ways, tls_stat TX+2 RX+2, both debug lines kernel yes"
                  % (v, SIZE >> 20), with_log(srv, c_echo), srv, ports["banner" + v],
                  banner[v], v)
        check(only, "1 tcp-proxy tls:// split records: %d records of 16 KB, each in two TCP "
              "segments %d ms apart: sha256, copied 0 upstream to client, tls_stat TX+2 RX+2"
              % (SPLIT_N, SPLIT_PAUSE * 1000), with_log(srv, c_split), srv, ports["split"],
              split)
        check(only, "1 keyless: TLSv1.3 and TLSv1.2 sessions open, live_ssl 0",
              with_log(srv, c_keyless), srv, [(ports["banner" + v], banner[v], v)
                                              for v in VERSIONS])
        # 3
        for v in VERSIONS:
            check(only, "3 resumption TLSv%s: resumed=no then resumed=yes (ringtls and the "
                  "upstream), both offloaded" % v, with_log(srv, c_resume), srv,
                  ports["resume" + v], resume[v], v)
        # 4
        check(only, "4 half-close upstream->client through the TLS upstream: data, "
              "close_notify, then the client's bytes, offloaded",
              with_log(srv, c_half_upstream_first), srv, ports["first"], first)
        check(only, "4 half-close client->upstream through the TLS upstream: close_notify "
              "reaches it, its answer and close_notify reach the client, offloaded",
              with_log(srv, c_half_client_first), srv, ports["sink"], sink)
        stop_server(srv)

        # 2
        for v in VERSIONS:
            b = TlsBackend("tls-backend" + v, v)
            backends.append(b)
            psrv = Server(*full, "--upstream-ca", PKI.ca, "--proxy", "/p/=" + b.url,
                          name="ringtls-proxy" + v)
            check(only, "2 --proxy https:// TLSv%s: %d MB down and up, sha256, tls_stat, "
                  "upstream debug line kernel yes" % (v, HTTP_SIZE >> 20),
                  with_log(psrv, c_http), psrv, b, v)
            stop_server(psrv)
            # A server of its own: a fresh one must open an upstream
            # connection (c_http's would be pooled).
            psrv = Server(*full, "--upstream-ca", PKI.ca, "--proxy", "/p/=" + b.url,
                          name="ringtls-proxy-h2-" + v)
            check(only, "2 --proxy https:// TLSv%s, the client on HTTP/2 (curl --http2): %d MB "
                  "down and up, sha256, tls_stat, alpn h2, both legs kernel yes"
                  % (v, HTTP_SIZE >> 20), with_log(psrv, c_http2), psrv, b, v)
            stop_server(psrv)
        plain = ups.Backend("plain-backend")
        backends.append(plain)
        psrv = Server(*full, "--proxy", "/p/=" + plain.url, name="ringtls-proxy-plain")
        check(only, "2 --proxy http://, the client on HTTP/2 (curl --http2): %d MB down and up, "
              "sha256, tls_stat +1/+1, alpn h2, kernel yes" % (HTTP_SIZE >> 20),
              with_log(psrv, c_http2), psrv, plain, "1.3")
        stop_server(psrv)

        name = ("2 --proxy https:// TLSv1.3, split records: a response whose every record "
                "comes in two TCP segments %d ms apart: 200, sha256, tls_stat, offloaded, no "
                "warn" % (SPLIT_PAUSE * 1000))
        hsplit = TlsUpstream("https-split", h_https_split, "1.3")
        ups_.append(hsplit)
        psrv = Server(*full, "--upstream-ca", PKI.ca, "--proxy-timeout", "10s", "--proxy",
                      "/s/=https://127.0.0.1:%d" % hsplit.port, name="ringtls-proxy-split")
        check(only, name, with_log(psrv, c_https_split), psrv, hsplit)
        stop_server(psrv)

        # 5
        name = "5 KeyUpdate k, K from the upstream (openssl s_server) mid-stream"
        if rekey:
            check(only, name + ": bytes both ways, TlsRxRekeyOk+2, TlsTxRekeyOk>=1, copied 0",
                  c_keyupdate, full)
        else:
            skip(only, name, "this kernel cannot rekey TLS 1.3 (%s has no TlsRxRekeyOk; the "
                 "server runs with --ktls-rx-no-rekey)" % STAT_PATH)

        # 6
        check(only, "6 wrong --upstream-ca: the client's connection ends, one warn line, no "
              "tls_stat rise for the upstream", c_wrong_ca, full, bad)

        # 7
        wrong = TlsUpstream("wrongname", h_tls_echo, "1.3")
        right = TlsUpstream("rightname", h_tls_echo, "1.3", banner=True)
        ups_.extend([wrong, right])
        nsrv = Server(*full, "--upstream-ca", PKI.ca, "--upstream-sni", WRONG_SNI,
                      "--tcp-proxy", "127.0.0.1:0=" + wrong.spec,
                      "--proxy", "/=https://127.0.0.1:%d" % wrong.port, name="ringtls-wrong-name")
        nport, = tcp_ports(nsrv, 1)
        check(only, "7 --upstream-sni %s, tcp-proxy: the client is reset, one warn line "
              "(hostname mismatch), tls_stat TX+1 RX+1 (the client's side only)" % WRONG_SNI,
              with_log(nsrv, c_wrong_name_tcp), nsrv, nport, wrong)
        check(only, "7 --upstream-sni %s, --proxy https://: 502, one warn line (hostname "
              "mismatch), tls_stat TX+1 RX+1 (the client's side only)" % WRONG_SNI,
              with_log(nsrv, c_wrong_name_http), nsrv, wrong)
        stop_server(nsrv)
        nsrv = Server(*full, "--upstream-ca", PKI.ca, "--upstream-sni", UP_SNI,
                      "--tcp-proxy", "127.0.0.1:0=" + right.spec, name="ringtls-right-name")
        nport, = tcp_ports(nsrv, 1)
        check(only, "7 --upstream-sni %s (the certificate's DNS name), tcp-proxy: the upstream "
              "gets it, sha256 each way, tls_stat TX+2 RX+2" % UP_SNI,
              with_log(nsrv, c_right_name), nsrv, nport, right)
        stop_server(nsrv)

        # 8
        for cert in (False, True):
            if cert:
                auth = {v: TlsUpstream("clientauth" + v, h_tls_echo, v, banner=True,
                                       client_auth=True) for v in VERSIONS}
                extra = ["--upstream-cert", PKI.client_cert, "--upstream-key", PKI.client_key]
            else:
                auth = {v: TlsUpstream("certreq" + v, h_tls_refuse_hold, v, client_auth=True)
                        for v in VERSIONS}
                extra = []
            ups_.extend(auth.values())
            args = []
            for v in VERSIONS:
                args += ["--tcp-proxy", "127.0.0.1:0=" + auth[v].spec]
            asrv = Server(*full, "--upstream-ca", PKI.ca, *extra, *args,
                          name="ringtls-client-cert" if cert else "ringtls-no-client-cert")
            aports = dict(zip(VERSIONS, tcp_ports(asrv, len(VERSIONS))))
            for v in VERSIONS:
                if cert:
                    check(only, "8 client certificate required TLSv%s, --upstream-cert given: "
                          "sha256 each way, the upstream saw its CN, tls_stat TX+2 RX+2" % v,
                          with_log(asrv, c_client_cert), asrv, aports[v], auth[v], v)
                else:
                    check(only, "8 client certificate required TLSv%s, none given: the client "
                          "is reset, one warn line, tls_stat %s" % (
                              v, "TX+2 RX+1 (TLS 1.3: refused after ringtls's handshake)"
                              if v == "1.3" else "TX+1 RX+1"),
                          with_log(asrv, c_no_client_cert), asrv, aports[v], auth[v], v)
            stop_server(asrv)

        # 9
        rsock, rport = ttp.refused_port()
        try:
            fsrv = Server(*full, "--upstream-ca", PKI.ca, "--proxy-connect-timeout",
                          "%ds" % CONNECT_TIMEOUT,
                          "--tcp-proxy", "127.0.0.1:0=tls://127.0.0.1:%d" % rport,
                          name="ringtls-refused")
            fport, = tcp_ports(fsrv, 1)
            check(only, "9 tls:// to a closed port: the client is reset at once, upstream end "
                  "connect failed (Connection refused), tls_stat TX+1 RX+1",
                  with_log(fsrv, c_refused), fsrv, fport, rport)
            stop_server(fsrv)
        finally:
            rsock.close()

        # 10
        check(only, "10 --proxy to s_server -tls1_3 -max_send_frag %d (session tickets over "
              "several records): 200, offloaded, the second connection resumes" % FRAG,
              c_frag_tickets, full)

    def cleanup():
        for u in ups_:
            u.close()
        for b in backends:
            b.close()

    return run_suite("upstream-tls-suite-", body, cleanup)


if __name__ == "__main__":
    sys.exit(main())
