#!/usr/bin/env python3
"""Kernel-TLS suite for ringtls (python3 stdlib only).

    ktls_suite.py                 inside a kernel with kTLS (tests/kernel/run-kernel.sh)
    ktls_suite.py --host-fallback on a kernel without kTLS: the userspace path
    ktls_suite.py --only REGEX    run only the checks whose name matches

Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat; in host mode:
this kernel has kTLS). One line per check (PASS/FAIL/SKIP name), then
"N passed, N failed[, N skipped]". KTLS_SUITE_TIMES=1 adds each check's
wall time (for budgeting the guest's run; nothing is asserted on time).

Kernel mode proves that connections really were offloaded: every check
snapshots /proc/net/tls_stat before and after and asserts the deltas
(TlsTxSw/TlsRxSw rise by exactly one per offloaded connection the check
made, TlsDecryptError does not move unless the check provokes it), and
cross-checks the server's debug line "tls PEER: ... kernel-tx=yes
kernel-rx=yes" for each connection. A check whose counters did not rise
fails. On a kernel that cannot rekey (6.1; no Tls*RekeyOk counters) TLS 1.3
RX stays in userspace by default (DESIGN.md, "KeyUpdate"), so the servers
of the offload checks get --ktls-rx-no-rekey; the --ktls mode checks run
without it and assert that default policy.

Checks: versions x ciphers with s_client, curl and gnutls-cli (two requests
on one connection); ticket resumption (TLS 1.3 and 1.2); client
certificates; the first requests in the same send as the client's Finished;
a record split across the switch; pipelining; 20 MB downloads (spliced into
the kernel's records; also --ktls-zerocopy, and with our own KeyUpdates on
rekey kernels); close_notify both ways, a client fatal alert, a garbage
record; --ktls auto/off/tx/rx/on, and Connection: close under each mode.

Host-fallback mode runs the same clients against the userspace path
(curl only for the matrix, 1 MB downloads): kernel-tx=no kernel-rx=no, the
page says userspace, the counters (if the file exists at all) do not move.

Servers are started here (ephemeral port parsed from the log) and stopped
by PID. Every wait is bounded. Guest syscalls are slow: nothing is timed.
"""
import argparse
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import traceback

import suite_common
from suite_common import (HELLO, admin_metrics, LOG_WAIT, PROC_TIMEOUT, RINGTLS_BIN, SERVERS, SKIP_RC, STAT_PATH,
                          WORK, Fail, Server, SkipCheck, client_ctx, make_workdir, page_cells,
                          print_summary, read_stat, remove_workdir, req, stop_all)

IO_TIMEOUT = 20.0        # any single socket wait (the guest is slow)
WATCHDOG = 600           # the whole suite

BIG_SIZE = 20 * 1024 * 1024
REKEY_EVERY = 64         # --key-update-after-records for the rekeying download
MID_SIZE = 1024 * 1024
INDEX = b"<!doctype html><title>ktls</title><h1>ringtls kTLS suite</h1>\n"

TLS13 = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
TLS12 = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
         "ECDHE-ECDSA-CHACHA20-POLY1305"]
GNUTLS_CIPHER = {
    "TLS_AES_128_GCM_SHA256": "AES-128-GCM", "TLS_AES_256_GCM_SHA384": "AES-256-GCM",
    "TLS_CHACHA20_POLY1305_SHA256": "CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "AES-128-GCM", "ECDHE-ECDSA-AES256-GCM-SHA384": "AES-256-GCM",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "CHACHA20-POLY1305",
}

HOST = False             # --host-fallback
REKEY = False            # the kernel can take a second key (TLS 1.3 KeyUpdate, 6.14+)
FULL = []                # server flags for full offload on this kernel


def short(v, limit=400):
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


def expect_eq(got, want, what):
    if got != want:
        raise Fail("%s: got %s, want %s" % (what, short(got), short(want)))


# --------------------------------------------------------------------------
# /proc/net/tls_stat


class Counters(suite_common.Counters):
    """A snapshot of tls_stat; .check() asserts the deltas since."""

    def check(self, conns, tx=None, rx=None, decrypt_errors=0):
        """conns: connections the check made. Kernel mode: TlsTxSw must rise
        by `tx` (default conns) and TlsRxSw by `rx` (default conns).
        Host mode: nothing may move."""
        d = self.delta()
        if HOST:
            if d is not None:
                moved = {k: v for k, v in d.items() if v}
                expect(not moved, "host mode: tls_stat moved: %s" % moved)
            return "tls_stat absent" if self.after is None else "tls_stat unchanged"
        expect(d is not None, "%s is missing" % STAT_PATH)
        want_tx = conns if tx is None else tx
        want_rx = conns if rx is None else rx
        got = (d.get("TlsTxSw", 0), d.get("TlsRxSw", 0), d.get("TlsDecryptError", 0))
        want = (want_tx, want_rx, decrypt_errors)
        expect(got == want, "tls_stat deltas TlsTxSw/TlsRxSw/TlsDecryptError = %s, want %s" %
               (got, want))
        return "TlsTxSw+%d TlsRxSw+%d TlsDecryptError+%d" % got


# --------------------------------------------------------------------------
# Client processes (the servers: suite_common.Server)


def run(argv, timeout=PROC_TIMEOUT, input=None):
    try:
        return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Fail("%s timed out after %.0f s" % (argv[0], timeout)) from e


def interact(argv, data, want_responses=None, timeout=PROC_TIMEOUT):
    """Runs an interactive client (s_client, gnutls-cli): writes `data` to
    its stdin and keeps stdin open until `want_responses` complete HTTP
    responses have appeared on stdout (or stdout ends), then closes stdin
    and waits for it. Returns (rc, stdout, stderr)."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, close_fds=True)
    out, err = b"", b""
    try:
        p.stdin.write(data)
        p.stdin.flush()
        fds = {p.stdout.fileno(): "out", p.stderr.fileno(): "err"}
        end = time.monotonic() + timeout
        while fds and time.monotonic() < end:
            if want_responses is not None and count_responses(out, True) >= want_responses:
                break
            r, _, _ = select.select(list(fds), [], [], max(0.0, end - time.monotonic()))
            for fd in r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    del fds[fd]
                elif fds[fd] == "out":
                    out += chunk
                else:
                    err += chunk
        try:
            p.stdin.close()
        except BrokenPipeError:
            pass
        p.stdin = None  # communicate() must not touch it again
        try:
            rest_out, rest_err = p.communicate(timeout=max(5.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            rest_out, rest_err = p.communicate(timeout=10)
            err += b"\n[killed: did not exit]"
        return p.returncode, out + rest_out, err + rest_err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


# --------------------------------------------------------------------------
# HTTP


def parse_responses(data, lenient=False):
    """Complete HTTP/1.1 responses in `data` (Content-Length framing) from
    the first "HTTP/1.1 " on: [(status, headers, body)], rest. Strict: they
    must follow each other directly (a decrypted stream). lenient: skip
    what lies between them (a chatty client's stdout)."""
    out = []
    i = data.find(b"HTTP/1.1 ")
    if i < 0:
        return [], data
    data = data[i:]
    while data.startswith(b"HTTP/1.1 "):
        h = data.find(b"\r\n\r\n")
        if h < 0:
            break
        head = data[:h].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if len(data) < h + 4 + n:
            break
        out.append((status, headers, data[h + 4:h + 4 + n]))
        data = data[h + 4 + n:]
        if lenient and not data.startswith(b"HTTP/1.1 ") and b"HTTP/1.1 " in data:
            data = data[data.find(b"HTTP/1.1 "):]
    return out, data


def count_responses(data, lenient=False):
    return len(parse_responses(data, lenient)[0])


def expect_bodies(data, bodies, what, lenient=False):
    resps, _ = parse_responses(data, lenient)
    got = [(s, b) for s, _, b in resps]
    want = [(200, b) for b in bodies]
    expect_eq(got, want, what + ": responses")
    return resps


# --------------------------------------------------------------------------
# Log cross-checks


def kernel_words(tx=True, rx=True):
    if HOST:
        return "no", "no"
    return ("yes" if tx else "no"), ("yes" if rx else "no")


def check_tls_lines(srv, mark, n, version=None, cipher=None, tx=True, rx=True, resumed=None,
                    ports=None, client=None):
    """The server's debug lines since `mark`: exactly n TLS connections,
    each with the expected version/cipher and kernel-tx/rx words."""
    end = time.monotonic() + LOG_WAIT
    lines = srv.tls_lines(mark)
    while len(lines) < n and time.monotonic() < end:
        time.sleep(0.05)
        lines = srv.tls_lines(mark)
    if ports is not None:
        lines = [l for l in lines if int(l["port"]) in ports]
    expect_eq(len(lines), n, "debug 'tls PEER:' lines")
    ktx, krx = kernel_words(tx, rx)
    for i, l in enumerate(lines):
        if version:
            expect_eq(l["version"], version, "log line %d version" % i)
        if cipher:
            expect_eq(l["cipher"], cipher, "log line %d cipher" % i)
        expect_eq((l["ktx"], l["krx"]), (ktx, krx), "log line %d kernel-tx/kernel-rx" % i)
        if resumed is not None:
            r = resumed[i] if isinstance(resumed, (list, tuple)) else resumed
            expect_eq(l["resumed"], "yes" if r else "no", "log line %d resumed" % i)
        if client is not None:
            expect(client in l["client"], "log line %d client=%r lacks %r" % (i, l["client"], client))
    return lines


# --------------------------------------------------------------------------
# A TLS client driven by hand (ssl.MemoryBIO + SSLObject)


class MemTLS:
    def __init__(self, port, ctx, session=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.sock.getsockname()[1]
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost", session=session)
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)
        return data

    def recv_raw(self, timeout=IO_TIMEOUT):
        """One recv into `inc`; False on EOF/reset."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            self.inc.write_eof()
            return False
        self.inc.write(d)
        return True

    def handshake(self, flush_last=True):
        end = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                if time.monotonic() > end or not self.recv_raw(max(0.1, end - time.monotonic())):
                    raise Fail("server closed or stalled during the handshake")
        if flush_last:
            self.flush()

    def read_until(self, responses=None, timeout=IO_TIMEOUT):
        """Reads plaintext until `responses` complete responses (None: until
        the stream ends). Returns (data, end): end is 'responses',
        'close_notify', 'eof' (no close_notify), 'timeout' or an SSLError."""
        data = b""
        end = time.monotonic() + timeout
        while True:
            try:
                chunk = self.obj.read(65536)
                if not chunk:
                    # SSLObject.read() returns b"" (rather than raising
                    # SSLZeroReturnError) once the peer's close_notify
                    # has been read; a bare TCP FIN raises SSLEOFError.
                    return data, "close_notify"
                data += chunk
                if responses is not None and count_responses(data) >= responses:
                    return data, "responses"
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return data, "close_notify"
            except ssl.SSLEOFError:
                return data, "eof"
            except ssl.SSLError as e:
                return data, e
            self.flush()
            left = end - time.monotonic()
            if left <= 0:
                return data, "timeout"
            try:
                self.recv_raw(left)
            except socket.timeout:
                return data, "timeout"

    def wait_closed(self, timeout=IO_TIMEOUT):
        """Reads raw bytes until the server closes; True if it did."""
        end = time.monotonic() + timeout
        while not self.eof and time.monotonic() < end:
            try:
                self.recv_raw(max(0.1, end - time.monotonic()))
            except socket.timeout:
                break
            except OSError:
                self.eof = True
        return self.eof


def split_records(data):
    """TLS records in a raw byte stream: [(type, bytes)], rest."""
    recs = []
    while len(data) >= 5:
        n = 5 + (data[3] << 8 | data[4])
        if len(data) < n:
            break
        recs.append((data[0], data[:n]))
        data = data[n:]
    return recs, data


# --------------------------------------------------------------------------
# Clients


def curl(srv, paths, version="1.3", cipher=None, extra=(), timeout=PROC_TIMEOUT):
    argv = ["curl", "-sS", "--http1.1", "--cacert", WORK.ca, "--max-time", str(int(timeout)),
            "--resolve", "localhost:%d:127.0.0.1" % srv.port]
    if version == "1.3":
        argv += ["--tlsv1.3"]
        if cipher:
            argv += ["--tls13-ciphers", cipher]
    else:
        argv += ["--tlsv1.2", "--tls-max", "1.2"]
        if cipher:
            argv += ["--ciphers", cipher]
    argv += list(extra) + [srv.url(p) for p in paths]
    return run(argv, timeout=timeout + 10)


def s_client_argv(srv, version, cipher=None, quiet=True, extra=()):
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, "-servername", "localhost",
            "-CAfile", WORK.ca, "-verify_return_error", "-verify_hostname", "localhost", "-nocommands"]
    if quiet:
        argv.append("-quiet")
    argv.append("-no_ign_eof")  # after -quiet, which implies -ign_eof: stdin EOF ends it
    if version == "1.3":
        argv.append("-tls1_3")
        if cipher:
            argv += ["-ciphersuites", cipher]
    else:
        argv.append("-tls1_2")
        if cipher:
            argv += ["-cipher", cipher]
    return argv + list(extra)


def gnutls_argv(srv, version, cipher):
    prio = "NORMAL:-VERS-ALL:+VERS-TLS%s:-CIPHER-ALL:+%s" % (version, GNUTLS_CIPHER[cipher])
    if version == "1.2":
        prio += ":-KX-ALL:+ECDHE-ECDSA"
    return ["gnutls-cli", "--x509cafile", WORK.ca, "--priority", prio, "-p", str(srv.port), "localhost"]


def page_paths(srv, version="1.3"):
    """GET / of the built-in page: {tx, rx, version, cipher}."""
    r = curl(srv, ["/"], version=version)
    expect_eq(r.returncode, 0, "curl / exit status (stderr %s)" % short(r.stderr))
    return page_cells(r.stdout.decode("utf-8", "replace"))


# --------------------------------------------------------------------------
# The checks

results = []
ONLY = None


def check(name, fn, *args, **kw):
    if ONLY and not ONLY.search(name):
        return
    servers_before = list(SERVERS)
    t0 = time.monotonic()
    try:
        detail = fn(*args, **kw)
        status = "PASS"
    except SkipCheck as e:
        status, detail = "SKIP", str(e)
    except Fail as e:
        status, detail = "FAIL", str(e)
    except Exception as e:  # a bug in a check is a failure, with its trace
        status, detail = "FAIL", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
    for s in servers_before:
        if s in SERVERS and not s.alive():
            status = "FAIL"
            detail = "%s; server %s died (exit %s); log tail:\n%s" % (
                detail, s.name, s.proc.returncode, "\n".join(s.log().splitlines()[-15:]))
            SERVERS.remove(s)
    if os.environ.get("KTLS_SUITE_TIMES"):  # for budgeting the guest's run, not a measurement
        detail = "%s [%.1f s]" % (detail or "", time.monotonic() - t0)
    record(status, name, detail)


def record(status, name, detail=None):
    results.append((status, name, detail))
    line = "%s %s" % (status, name)
    if detail:
        line += ("  (%s)" if status == "PASS" else ": %s") % detail
    print(line, flush=True)


def c_matrix(srv, client, version, cipher):
    ctr = Counters()
    mark = srv.mark()
    if client == "curl":
        r = curl(srv, ["/hello", "/hello"], version, cipher)
        expect_eq(r.returncode, 0, "curl exit status (stderr %s)" % short(r.stderr))
        expect_eq(r.stdout, HELLO + HELLO, "curl output (two requests, one connection)")
    elif client == "s_client":
        rc, out, err = interact(s_client_argv(srv, version, cipher), req() + req(), 2)
        expect_bodies(out, [HELLO, HELLO], "s_client (stderr %s)" % short(err), lenient=True)
    else:
        rc, out, err = interact(gnutls_argv(srv, version, cipher), req() + req(), 2)
        expect_bodies(out, [HELLO, HELLO], "gnutls-cli (stderr %s)" % short(err), lenient=True)
    c = ctr.check(1)
    check_tls_lines(srv, mark, 1, "TLSv" + version, cipher)
    return c


def c_resume(srv, version):
    sess = os.path.join(WORK.tmp, "sess-%s.pem" % version)
    if os.path.exists(sess):
        os.unlink(sess)
    ctr = Counters()
    mark = srv.mark()
    rc, out1, err1 = interact(s_client_argv(srv, version, quiet=False, extra=["-sess_out", sess]),
                              req(), 1)
    expect_bodies(out1, [HELLO], "first connection (stderr %s)" % short(err1), lenient=True)
    expect(re.search(rb"^New, TLSv", out1, re.M), "first connection not 'New': %s" % short(out1[-600:]))
    expect(os.path.exists(sess) and os.path.getsize(sess) > 0, "s_client wrote no session")
    rc, out2, err2 = interact(s_client_argv(srv, version, quiet=False, extra=["-sess_in", sess]),
                              req(), 1)
    expect_bodies(out2, [HELLO], "resumed connection (stderr %s)" % short(err2), lenient=True)
    m = re.search(rb"^(New|Reused), (TLSv[\d.]+)", out2, re.M)
    expect(m and m.group(1) == b"Reused", "second connection not 'Reused': %s" %
           short(m.group(0) if m else out2[-600:]))
    expect_eq(m.group(2).decode(), "TLSv" + version, "resumed version")
    c = ctr.check(2)
    check_tls_lines(srv, mark, 2, "TLSv" + version, resumed=[False, True])
    return c


def make_client_pki():
    d = os.path.join(WORK.tmp, "pki")
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)
    steps = [
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=ktls-suite-ca"],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", p("client.key"), "-out", p("client.csr"), "-subj", "/CN=ktls-suite-client"],
        ["openssl", "x509", "-req", "-in", p("client.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p("client.pem"), "-days", "2"],
    ]
    for argv in steps:
        r = run(argv)
        expect_eq(r.returncode, 0, "%s (stderr %s)" % (" ".join(argv[:3]), short(r.stderr)))
    return p("ca.pem"), p("client.pem"), p("client.key")


def c_client_cert(srv, pki, version):
    ca, cert, key = pki
    ctr = Counters()
    mark = srv.mark()
    r = curl(srv, ["/hello", "/hello"], version, extra=["--cert", cert, "--key", key])
    expect_eq(r.returncode, 0, "curl with a client certificate (stderr %s)" % short(r.stderr))
    expect_eq(r.stdout, HELLO + HELLO, "curl output")
    # Python too, with a request right behind its Finished (after the
    # client's Certificate and CertificateVerify).
    t = MemTLS(srv.port, client_ctx(version, cert=(cert, key)))
    try:
        t.handshake(flush_last=False)
        t.obj.write(req())
        t.flush()
        data, end = t.read_until(1)
        expect_eq(end, "responses", "python client: end of stream")
        expect_bodies(data, [HELLO], "python client")
    finally:
        t.close()
    c = ctr.check(2)
    check_tls_lines(srv, mark, 2, "TLSv" + version, client="ktls-suite-client")
    # No certificate: refused in the handshake, nothing offloaded.
    ctr = Counters()
    r = curl(srv, ["/hello"], version)
    expect(r.returncode != 0 or r.stdout != HELLO, "a client without a certificate was served")
    ctr.check(0)
    return c


def session_first(srv, ctx):
    """A session from one full handshake and a /hello, to resume: in TLS 1.2
    only an abbreviated handshake ends with the client's Finished."""
    t = MemTLS(srv.port, ctx)
    try:
        t.handshake()
        t.obj.write(req())
        t.flush()
        data, end = t.read_until(1)
        expect_bodies(data, [HELLO], "session-making connection")
        return t.obj.session
    finally:
        t.close()


def c_first_flight(srv, version, resumed=False):
    """The client's Finished and two pipelined requests in one sendall."""
    ctr = Counters()
    mark = srv.mark()
    ctx = client_ctx(version)
    session, conns, resumed_flags = None, 0, []
    if resumed:
        session = session_first(srv, ctx)
        conns += 1
        resumed_flags.append(False)
    t = MemTLS(srv.port, ctx, session=session)
    try:
        t.handshake(flush_last=False)
        if resumed:
            expect(t.obj.session_reused, "the session was not resumed")
        tail = t.out.read()
        expect(tail, "no client Finished left to send")
        t.obj.write(req() + req("/index.html"))
        t.sock.sendall(tail + t.out.read())
        data, end = t.read_until(2)
        expect_eq(end, "responses", "end of stream")
        expect_bodies(data, [HELLO, INDEX], "pipelined first-flight requests")
        port = t.port
    finally:
        t.close()
    conns += 1
    resumed_flags.append(resumed)
    c = ctr.check(conns)
    check_tls_lines(srv, mark, conns, "TLSv" + version, resumed=resumed_flags)
    expect(srv.tls_lines(mark)[-1]["port"] == str(port), "last log line is not this connection")
    return c


def c_partial(srv, version, where, resumed=False):
    """Finished + part of the next record in one send, the rest 100 ms later."""
    ctr = Counters()
    mark = srv.mark()
    ctx = client_ctx(version)
    session, conns, resumed_flags = None, 0, []
    if resumed:
        session = session_first(srv, ctx)
        conns += 1
        resumed_flags.append(False)
    t = MemTLS(srv.port, ctx, session=session)
    try:
        t.handshake(flush_last=False)
        tail = t.out.read()
        expect(tail, "no client Finished left to send")
        t.obj.write(req())
        rec = t.out.read()
        recs, rest = split_records(rec)
        expect(len(recs) == 1 and not rest and recs[0][0] == 23,
               "the request is not one application-data record: %s" % short(rec[:8]))
        cut = 3 if where == "header" else 5 + (len(rec) - 5) // 2
        t.sock.sendall(tail + rec[:cut])
        time.sleep(0.1)
        t.sock.sendall(rec[cut:])
        data, end = t.read_until(1)
        expect_eq(end, "responses", "end of stream")
        expect_bodies(data, [HELLO], "response")
    finally:
        t.close()
    conns += 1
    resumed_flags.append(resumed)
    c = ctr.check(conns)
    check_tls_lines(srv, mark, conns, "TLSv" + version, resumed=resumed_flags)
    return c


def c_pipelined(srv, version, one_record):
    ctr = Counters()
    mark = srv.mark()
    paths = ["/hello", "/index.html", "/hello", "/", "/hello"]
    want = [HELLO, INDEX, HELLO, INDEX, HELLO]
    t = MemTLS(srv.port, client_ctx(version))
    try:
        t.handshake()
        if one_record:
            t.obj.write(b"".join(req(p) for p in paths))
        else:
            for p in paths:
                t.obj.write(req(p))
        t.flush()  # five requests, one write
        data, end = t.read_until(5)
        expect_eq(end, "responses", "end of stream")
        expect_bodies(data, want, "five pipelined requests")
        # and the connection still serves afterwards
        t.obj.write(req())
        t.flush()
        data2, end = t.read_until(1)
        expect_bodies(data2, [HELLO], "request after the pipeline")
    finally:
        t.close()
    c = ctr.check(1)
    check_tls_lines(srv, mark, 1, "TLSv" + version)
    return c


def c_download(srv, name, size, digest, version="1.3", cipher=None, tx_rekeys=False):
    """curl fetches the file; its sha256 must match. tx_rekeys: the server
    sends KeyUpdates of its own (--key-update-after-records): the kernel's
    TlsTxRekeyOk must rise."""
    ctr = Counters()
    mark = srv.mark()
    argv = ["curl", "-sS", "--http1.1", "--cacert", WORK.ca, "--max-time", "200",
            "--resolve", "localhost:%d:127.0.0.1" % srv.port]
    if version == "1.3":
        argv += ["--tlsv1.3"] + (["--tls13-ciphers", cipher] if cipher else [])
    else:
        argv += ["--tlsv1.2", "--tls-max", "1.2"] + (["--ciphers", cipher] if cipher else [])
    argv.append(srv.url("/" + name))
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h, n = hashlib.sha256(), 0
    try:
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        err = p.stderr.read()
        rc = p.wait(timeout=PROC_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    expect_eq(rc, 0, "curl exit status (stderr %s)" % short(err))
    expect_eq(n, size, "bytes received")
    expect_eq(h.hexdigest(), digest, "sha256")
    d = ctr.delta()
    c = ctr.check(1)
    check_tls_lines(srv, mark, 1, "TLSv" + version, cipher)
    if tx_rekeys and not HOST:
        # The body alone is at least size/16 KiB records; the server must
        # have updated its key before every REKEY_EVERY of them (half that
        # count leaves room for how it estimates records under kernel TX).
        want = size // 16384 // REKEY_EVERY // 2
        got = (d.get("TlsTxRekeyOk", 0), d.get("TlsTxRekeyError", 0))
        expect(got[0] >= want and got[1] == 0,
               "server KeyUpdates during the body: TlsTxRekeyOk +%d (want >= %d: %d records at "
               "most %d per key), TlsTxRekeyError +%d" % (got[0], want, size // 16384, REKEY_EVERY,
                                                          got[1]))
        c += "; TlsTxRekeyOk+%d" % got[0]
    if tx_rekeys:
        lines = [l for l in srv.lines_since(mark) if " warn " in l or " error " in l]
        expect(not lines, "warnings during the rekeying download: %s" % lines)
    return c


def c_server_close_notify(srv, version, tx=True, rx=True):
    """Connection: close -> the response, then a clean TLS EOF."""
    ctr = Counters()
    mark = srv.mark()
    t = MemTLS(srv.port, client_ctx(version))
    try:
        t.handshake()
        t.obj.write(req(close=True))
        t.flush()
        data, end = t.read_until(None)
        resps, _ = parse_responses(data)
        expect_eq([(s, b) for s, _, b in resps], [(200, HELLO)],
                  "response to 'Connection: close' (stream ended with %s)" % end)
        expect_eq(end, "close_notify", "how the stream ended (SSLZeroReturnError = close_notify)")
    finally:
        t.close()
    c = ctr.check(1, tx=1 if tx else 0, rx=1 if rx else 0)
    check_tls_lines(srv, mark, 1, "TLSv" + version, tx=tx, rx=rx)
    return c


def c_server_close_notify_s_client(srv, version):
    ctr = Counters()
    rc, out, err = interact(s_client_argv(srv, version, quiet=False), req(close=True), None)
    expect_bodies(out, [HELLO], "s_client (stderr %s)" % short(err), lenient=True)
    expect(b"unexpected eof" not in err.lower(), "s_client saw no close_notify: %s" % short(err))
    expect(re.search(rb"^closed$", out, re.M) or b"DONE" in out + err,
           "s_client did not report a clean close: %s / %s" % (short(out[-300:]), short(err)))
    return ctr.check(1)


def c_client_close_notify(srv, version):
    ctr = Counters()
    mark = srv.mark()
    # With close_notify.
    t = MemTLS(srv.port, client_ctx(version))
    try:
        t.handshake()
        t.obj.write(req())
        t.flush()
        data, end = t.read_until(1)
        expect_bodies(data, [HELLO], "response")
        try:
            t.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        sent = t.flush()
        expect(sent, "python wrote no close_notify")
        expect(t.wait_closed(), "the server did not close after the client's close_notify")
        port1 = t.port
    finally:
        t.close()
    # Without (control): a bare FIN is logged as truncation.
    t = MemTLS(srv.port, client_ctx(version))
    try:
        t.handshake()
        t.obj.write(req())
        t.flush()
        data, end = t.read_until(1)
        expect_bodies(data, [HELLO], "response (control)")
        port2 = t.port
        t.sock.shutdown(socket.SHUT_WR)
        t.wait_closed()
    finally:
        t.close()
    line = srv.wait_line(mark, r"tls 127\.0\.0\.1:%d: .*truncated" % port2)
    expect(line, "control: a FIN without close_notify was not logged as truncation")
    bad = [l for l in srv.lines_since(mark) if re.search(r"127\.0\.0\.1:%d\b.*truncated" % port1, l)]
    expect(not bad, "close_notify from the client was logged as truncation: %s" % bad)
    c = ctr.check(2)
    check_tls_lines(srv, mark, 2, "TLSv" + version)
    return c


def next_conn_works(srv, version):
    r = curl(srv, ["/hello"], version)
    expect_eq((r.returncode, r.stdout), (0, HELLO), "the next connection (stderr %s)" % short(r.stderr))


def c_client_fatal_alert(srv, version):
    """A real, properly encrypted fatal alert from the client: corrupt the
    server's first record after the handshake so the client's OpenSSL
    answers with bad_record_mac."""
    ctr = Counters()
    mark = srv.mark()
    t = MemTLS(srv.port, client_ctx(version))
    try:
        t.handshake()
        t.obj.write(req())
        t.flush()
        raw = b""
        t.sock.settimeout(IO_TIMEOUT)
        while not split_records(raw)[0]:
            d = t.sock.recv(65536)
            expect(d, "server closed before sending a record")
            raw += d
        recs, rest = split_records(raw)
        first = bytearray(recs[0][1])
        first[-1] ^= 0x55  # the tag
        t.inc.write(bytes(first) + b"".join(r for _, r in recs[1:]) + rest)
        data, end = t.read_until(1, timeout=2)
        expect(isinstance(end, ssl.SSLError) and "BAD_RECORD_MAC" in str(end).upper(),
               "the client did not reject the corrupted record: %r" % (end,))
        alert = t.flush()
        expect(alert and alert[0] in (21, 23), "the client wrote no alert record: %s" % short(alert))
        closed = t.wait_closed()
        port = t.port
    finally:
        t.close()
    expect(closed, "the server did not close after a fatal alert")
    line = srv.wait_line(mark, r"tls 127\.0\.0\.1:%d: .*alert.*bad record mac" % port)
    expect(line, "no log line for the client's fatal alert; log: %s" % short(srv.lines_since(mark)))
    next_conn_works(srv, version)
    c = ctr.check(2)
    check_tls_lines(srv, mark, 2, "TLSv" + version)
    return c


def c_garbage_record(srv, version):
    """An application-data record that cannot authenticate."""
    ctr = Counters()
    mark = srv.mark()
    t = MemTLS(srv.port, client_ctx(version))
    try:
        t.handshake()
        t.obj.write(req())
        t.flush()
        data, end = t.read_until(1)
        expect_bodies(data, [HELLO], "response before the garbage")
        t.sock.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))
        data, end = t.read_until(None)
        closed = t.eof or t.wait_closed()
        port = t.port
    finally:
        t.close()
    expect(closed, "the server did not close after a bad record")
    alert = isinstance(end, ssl.SSLError) and "BAD_RECORD_MAC" in str(end).upper()
    if HOST:
        expect(alert, "the client did not get a bad_record_mac alert (stream ended with %r)" % (end,))
    else:
        # Under kernel RX the failed decrypt leaves the socket in error
        # (sk_err = EBADMSG): the kernel refuses the alert the server then
        # tries to send ("send: Bad message"), so the client may see a
        # reset instead of bad_record_mac. Either is a prompt, clean end.
        expect(alert or end in ("eof", "close_notify") or isinstance(end, ssl.SSLError) or t.eof,
               "the stream did not end after the bad record: %r" % (end,))
    line = srv.wait_line(mark, r"tls 127\.0\.0\.1:%d: .*(bad_record_mac|bad record mac)" % port)
    expect(line, "no log line for the bad record; log: %s" % short(srv.lines_since(mark)))
    next_conn_works(srv, version)
    c = ctr.check(2, decrypt_errors=0 if HOST else 1)
    check_tls_lines(srv, mark, 2, "TLSv" + version)
    return "%s; client saw %s" % (c, "the bad_record_mac alert" if alert else "no alert (%s)" % (end,))


def c_stray_handshake(srv):
    """A client's handshake message after the hand-off (TLS 1.2
    renegotiation: s_client's `R` sends a ClientHello under the traffic
    keys). Kernel RX hands it over as a handshake record; the server must
    refuse it with unexpected_message, log one line and close, with no
    decrypt error."""
    ctr = Counters()
    mark = srv.mark()
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.port, "-servername", "localhost",
            "-CAfile", WORK.ca, "-tls1_2", "-msg"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, close_fds=True)
    try:
        p.stdin.write(req())
        p.stdin.flush()
        time.sleep(1.0)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        time.sleep(1.5)
        out, _ = p.communicate(timeout=PROC_TIMEOUT)  # closes stdin
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode(errors="replace")
    expect(HELLO.decode() in text, "no response before the renegotiation: %s" % short(text))
    expect("RENEGOTIATING" in text, "s_client did not renegotiate: %s" % short(text))
    expect(re.search(r"Alert.*\n.*02 0a", text) or "unexpected message" in text.lower(),
           "the client did not get an unexpected_message alert: %s" % short(text[-1500:]))
    line = srv.wait_line(mark, r"unexpected post-handshake message")
    expect(line, "no log line for the stray handshake message: %s" % short(srv.lines_since(mark)))
    next_conn_works(srv, "1.2")
    return ctr.check(2)


def mode_paths(mode, version, no_rekey=False):
    """(tx, rx) in the kernel for a connection under --ktls MODE."""
    if HOST or mode == "off":
        return False, False
    tx = mode in ("auto", "on", "tx")
    rx = mode in ("auto", "on", "rx")
    if version == "1.3" and not (REKEY or no_rekey):
        rx = False  # policy: userspace RX, where OpenSSL can take a KeyUpdate
    return tx, rx


def offload_metrics(srv, mode, tx, rx, conns):
    """/metrics of the admin listener agrees with tls_stat: each direction
    of each handshake that --ktls MODE asks for is offloaded or counted as
    a fallback (ringtls_ktls_offloaded_total, ringtls_ktls_fallbacks_total)."""
    text, got, want = admin_metrics(srv, IO_TIMEOUT), {}, {}
    expect(text is not None, "no admin listener in the log")
    for d, n in (("tx", tx), ("rx", rx)):
        off = re.search(r'^ringtls_ktls_offloaded_total\{direction="%s"\} (\d+)$' % d, text, re.M)
        fb = re.findall(r'^ringtls_ktls_fallbacks_total\{direction="%s",reason="\w+"\} (\d+)$' % d,
                        text, re.M)
        got[d] = (int(off.group(1)) if off else None, sum(int(v) for v in fb))
        asked = mode in ("auto", "on", d)
        want[d] = (n, conns - n if asked else 0)
    expect_eq(got, want, "/metrics (offloaded, fallbacks) per direction")


def c_mode(mode):
    """--ktls MODE (default policy otherwise): counters, page cells, log,
    and the admin listener's offload counters."""
    srv = Server("--ktls", mode, "--admin-listen", "127.0.0.1:0", name="ringtls-ktls-" + mode)
    try:
        ctr = Counters()
        want_tx = want_rx = 0
        for version, cipher in (("1.3", "TLS_AES_128_GCM_SHA256"),
                                ("1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")):
            tx, rx = mode_paths(mode, version)
            want_tx += tx
            want_rx += rx
            mark = srv.mark()
            cells = page_paths(srv, version)
            word = lambda k: "kernel (kTLS)" if k else "userspace (OpenSSL)"
            expect_eq({k: cells.get(k) for k in ("tx", "rx", "version", "cipher")},
                      {"tx": word(tx), "rx": word(rx), "version": "TLSv" + version, "cipher": cipher},
                      "page cells over TLS %s" % version)
            check_tls_lines(srv, mark, 1, "TLSv" + version, cipher, tx=tx, rx=rx)
        c = ctr.check(2, tx=want_tx, rx=want_rx)
        offload_metrics(srv, mode, want_tx, want_rx, 2)
        if mode == "on" and not HOST:
            warns = [l for l in srv.log().splitlines() if " warn " in l]
            expect(not warns, "--ktls on logged fallbacks: %s" % warns)
        return c
    finally:
        srv.stop()


def c_mode_close(mode, version):
    srv = Server("--ktls", mode, name="ringtls-close-" + mode)
    try:
        tx, rx = mode_paths(mode, version)
        return c_server_close_notify(srv, version, tx=tx, rx=rx)
    finally:
        srv.stop()


# --------------------------------------------------------------------------


def ktls_on_host():
    s = socket.socket()
    try:
        s.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_ULP", 31), b"tls")
        return True
    except OSError as e:
        return e.errno == 107  # ENOTCONN: the tls ULP exists
    finally:
        s.close()


def main():
    global HOST, ONLY, REKEY, FULL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host-fallback", action="store_true",
                    help="run on a kernel without kTLS: prove the userspace path")
    ap.add_argument("--only", help="run only checks whose name matches this regex")
    a = ap.parse_args()
    HOST = a.host_fallback
    ONLY = re.compile(a.only) if a.only else None

    if not os.access(RINGTLS_BIN, os.X_OK):
        print("SKIP: no ringtls binary at %s (set RINGTLS_BIN)" % RINGTLS_BIN)
        return SKIP_RC
    missing = [t for t in ("openssl", "curl", "gnutls-cli") if not shutil.which(t)]
    if missing:
        print("SKIP: missing clients: %s" % " ".join(missing))
        return SKIP_RC
    if HOST:
        if ktls_on_host():
            print("SKIP: this kernel has kTLS (the tls ULP attaches): the fallback path "
                  "cannot be shown here")
            return SKIP_RC
    elif read_stat() is None:
        print("SKIP: %s is missing: no kernel TLS here (run me through "
              "tests/kernel/run-kernel.sh, or pass --host-fallback)" % STAT_PATH)
        return SKIP_RC
    else:
        # The rekey counters came with TLS 1.3 rekey support (6.14).
        REKEY = "TlsRxRekeyOk" in read_stat()
        # Where the kernel cannot rekey, TLS 1.3 RX stays in userspace by
        # default (DESIGN.md, KeyUpdate); the checks below prove full
        # offload, so they force it. c_mode checks the default policy.
        FULL = [] if REKEY else ["--ktls-rx-no-rekey"]

    def on_alarm(signum, frame):
        raise SystemExit("FAIL watchdog: the suite ran past %d s" % WATCHDOG)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WATCHDOG)
    make_workdir("ktls-suite-")
    try:
        root = os.path.join(WORK.tmp, "root")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "wb") as f:
            f.write(INDEX)
        big = os.urandom(MID_SIZE if HOST else BIG_SIZE)
        big_name = "big.bin"
        with open(os.path.join(root, big_name), "wb") as f:
            f.write(big)
        big_sum = hashlib.sha256(big).hexdigest()
        del big
        print("ktls suite: %s mode, %s, kernel %s%s" % (
            "host-fallback" if HOST else "kernel", RINGTLS_BIN, os.uname().release,
            "" if HOST else ", rekey %s, server flags %s" % ("yes" if REKEY else "no", FULL or "-")),
            flush=True)

        srv = Server(*FULL, root=root, name="ringtls-main")
        clients = ["curl"] if HOST else ["openssl", "curl", "gnutls"]
        for client in clients:
            for version, ciphers in (("1.3", TLS13), ("1.2", TLS12)):
                for cipher in ciphers:
                    cl = "s_client" if client == "openssl" else client
                    check("matrix %s TLSv%s %s" % (cl, version, cipher), c_matrix, srv, cl, version,
                          cipher)
        for version in ("1.3", "1.2"):
            check("resumption s_client TLSv%s (tickets)" % version, c_resume, srv, version)
        check("first flight TLSv1.3: Finished + 2 requests in one send", c_first_flight, srv, "1.3")
        check("first flight TLSv1.2 resumed: Finished + 2 requests in one send", c_first_flight, srv,
              "1.2", resumed=True)
        check("partial record at the switch TLSv1.3 (split in the body)", c_partial, srv, "1.3", "body")
        check("partial record at the switch TLSv1.3 (split in the header)", c_partial, srv, "1.3",
              "header")
        check("partial record at the switch TLSv1.2 resumed (split in the body)", c_partial, srv, "1.2",
              "body", resumed=True)
        check("pipelined 5 requests TLSv1.3 (one record)", c_pipelined, srv, "1.3", True)
        check("pipelined 5 requests TLSv1.3 (five records)", c_pipelined, srv, "1.3", False)
        check("pipelined 5 requests TLSv1.2 (five records)", c_pipelined, srv, "1.2", False)
        size = MID_SIZE if HOST else BIG_SIZE
        check("integrity %d MB download TLSv1.3 sha256" % (size >> 20), c_download, srv, big_name, size,
              big_sum)
        check("integrity %d MB download TLSv1.3 TLS_CHACHA20_POLY1305_SHA256 sha256" % (size >> 20),
              c_download, srv, big_name, size, big_sum, "1.3", "TLS_CHACHA20_POLY1305_SHA256")
        check("integrity %d MB download TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384 sha256" % (size >> 20),
              c_download, srv, big_name, size, big_sum, "1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
        for version in ("1.3", "1.2"):
            check("close: server close_notify after Connection: close TLSv%s" % version,
                  c_server_close_notify, srv, version)
        check("close: server close_notify seen by s_client TLSv1.3", c_server_close_notify_s_client, srv,
              "1.3")
        for version in ("1.3", "1.2"):
            check("close: client close_notify is EOF, not truncation TLSv%s" % version,
                  c_client_close_notify, srv, version)
        for version in ("1.3", "1.2"):
            check("close: client fatal alert (bad_record_mac) TLSv%s" % version, c_client_fatal_alert,
                  srv, version)
        for version in ("1.3", "1.2"):
            check("close: garbage record -> bad_record_mac, server closes TLSv%s" % version,
                  c_garbage_record, srv, version)
        if not HOST:
            check("close: stray handshake message (TLS 1.2 renegotiation) -> unexpected_message",
                  c_stray_handshake, srv)
        srv.stop()

        if not ONLY or ONLY.search("client cert"):
            try:
                pki = make_client_pki()
            except Fail as e:
                pki = None
                record("FAIL", "client certificates: making a CA and a client certificate", str(e))
            if pki:
                srv = Server("--client-ca", pki[0], "--client-auth", "require", *FULL, root=root,
                             name="ringtls-client-auth")
                for version in ("1.3", "1.2"):
                    check("client certificate required TLSv%s" % version, c_client_cert, srv, pki,
                          version)
                srv.stop()

        if not HOST and (not ONLY or ONLY.search("zerocopy")):
            srv = Server("--ktls-zerocopy", *FULL, root=root, name="ringtls-zerocopy")
            check("integrity %d MB download TLSv1.3 sha256 --ktls-zerocopy" % (size >> 20), c_download,
                  srv, big_name, size, big_sum)
            srv.stop()

        # Our own KeyUpdates in the middle of one large spliced body (the
        # peer-driven KeyUpdate cases live in keyupdate_suite.py).
        if (HOST or REKEY) and (not ONLY or ONLY.search("integrity")):
            srv = Server("--key-update-after-records", str(REKEY_EVERY), *FULL, root=root,
                         name="ringtls-rekey")
            check("integrity %d MB download TLSv1.3 sha256 with --key-update-after-records %d" %
                  (size >> 20, REKEY_EVERY), c_download, srv, big_name, size, big_sum, tx_rekeys=True)
            srv.stop()

        for mode in ("auto", "off", "tx", "rx", "on"):
            policy = ""
            if mode in ("auto", "on", "rx") and not HOST and not REKEY:
                policy = " (TLS 1.3 RX userspace: no rekey here)"
            check("--ktls %s: counters, page cells, log%s" % (mode, policy), c_mode, mode)

        # Connection: close under each --ktls mode: kernel TX sends the
        # close_notify itself, userspace TX through our record layer (seal.c).
        for mode in () if HOST else ("off", "tx", "rx"):
            for version in ("1.3", "1.2"):
                tx, rx = mode_paths(mode, version)
                check("close: server close_notify after Connection: close, --ktls %s TLSv%s "
                      "(TX %s, RX %s)" % (mode, version, "kernel" if tx else "userspace",
                                          "kernel" if rx else "userspace"),
                      c_mode_close, mode, version)
    except SystemExit as e:
        record("FAIL", "watchdog", str(e))
    except Fail as e:  # a server that would not start
        record("FAIL", "server start", str(e))
    except Exception as e:
        record("FAIL", "suite", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
    finally:
        signal.alarm(0)
        stop_all()
        remove_workdir()

    passed = sum(1 for r in results if r[0] == "PASS")
    failed = sum(1 for r in results if r[0] == "FAIL")
    skipped = sum(1 for r in results if r[0] == "SKIP")
    print_summary(passed, failed, skipped)
    if failed:
        return 1
    if not passed:
        return SKIP_RC
    return 0


if __name__ == "__main__":
    sys.exit(main())
