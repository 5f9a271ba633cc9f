#!/usr/bin/env python3
"""KeyUpdate and keyless-connection suite for ringtls (python3 stdlib only).

Runs INSIDE a kernel with kTLS (tests/kernel/run-kernel.sh --kernel 6.1|7.2).
Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat). One line per
check (PASS/FAIL/SKIP name), then "N passed, N failed[, N skipped]".

    keyupdate_suite.py [--only REGEX]

Checks (docs/DESIGN.md, "KeyUpdate" and "What a fully offloaded connection
holds"); the kernel's rekey ability comes from `ringtls probe`:

  1 rekey kernels (7.2): peer KeyUpdates k, K, K on a fully offloaded TLS 1.3
    connection: every response arrives, RX rekeyed 3 times, TX twice. The
    same with our record layer making the server's records (TX not in the
    kernel): with kernel RX (--ktls rx, 7.2; RX rekeyed 3 times, TX never)
    and with --ktls off (both kernels; tls_stat unmoved).
  2 kernels without rekey (6.1): k is handled by userspace RX, K ends the
    connection cleanly ("cannot rekey"); with --ktls-rx-no-rekey RX is
    offloaded and k ends the connection cleanly.
  3 a KeyUpdate flood is cut off ("KeyUpdates in a second"), on both.
  4 our own KeyUpdate (--key-update-after-records 3) with openssl s_client
    and gnutls-cli: rekeys on 7.2; on 6.1 a clean close at the limit; and
    (--no-tickets, where only responses use traffic key 0) the KeyUpdate or
    the close comes after exactly 3 responses.
  5 keyless: 40 idle fully offloaded connections hold no SSL object
    (live_ssl 0); with --ktls off the same 40 hold 40.

Servers are started here on ephemeral ports and stopped by PID. Every
/proc/net/tls_stat baseline is taken after the server printed its listening
line (the start-up rekey probe moves TlsTxSw and TlsTxRekeyOk). Every wait is
bounded; nothing is timed (guest syscalls are ~100x slower).
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from suite_common import (HELLO, admin_metrics, PROC_TIMEOUT, RINGTLS_BIN, SKIP_RC, STAT_PATH, WORK, Counters,
                          Fail, Server, SkipCheck, client_ctx, make_workdir, page_cells,
                          print_summary, remove_workdir, req, stop_all, stop_proc)

STEP_TIMEOUT = 20.0      # one response, one KEYUPDATE echo, one log line
WATCHDOG = 420           # the whole suite

# One complete, correct /hello response in a client's output.
RESP_RE = re.compile(rb"HTTP/1\.1 200 OK\r\n(?:[^\r\n]+\r\n)*?Content-Length: 13\r\n"
                     rb"(?:[^\r\n]+\r\n)*?\r\nHello, World!")
# Any response head (to see partial or unexpected ones).
HEAD_RE = re.compile(rb"HTTP/1\.[01] \d\d\d ")
# s_client -msg: a KeyUpdate received from the server.
KU_IN = b"<<< TLS 1.3, Handshake [length 0005], KeyUpdate"

REKEY = False            # the kernel can take a second TLS 1.3 key (6.14+)
KVER = "?"


def short(v, limit=600):
    s = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return s if len(s) <= limit else "...(%d chars) " % len(s) + s[-limit:]


class Check:
    """Collects every failed expectation of one check, so that a FAIL line
    says all that went wrong, not only the first thing."""

    def __init__(self):
        self.errors = []
        self.notes = []

    def expect(self, cond, msg):
        if not cond:
            self.errors.append(msg)
        return bool(cond)

    def eq(self, got, want, what):
        return self.expect(got == want, "%s: got %r, want %r" % (what, got, want))

    def note(self, s):
        self.notes.append(s)


# --------------------------------------------------------------------------
# /proc/net/tls_stat


def fmt_delta(d, keys):
    return " ".join("%s%+d" % (k, d.get(k, 0)) for k in keys)


BASE_KEYS = ["TlsTxSw", "TlsRxSw", "TlsDecryptError"]
REKEY_KEYS = ["TlsTxRekeyOk", "TlsRxRekeyOk", "TlsRxRekeyReceived", "TlsTxRekeyError",
              "TlsRxRekeyError"]


def expect_counters(ck, d, want):
    """want: {counter: exact delta, or (min, max)}."""
    for k, w in want.items():
        got = d.get(k, 0)
        if isinstance(w, tuple):
            ck.expect(w[0] <= got <= w[1], "tls_stat %s rose by %d, want %d..%d" % (k, got, w[0], w[1]))
        else:
            ck.expect(got == w, "tls_stat %s rose by %d, want %d" % (k, got, w))


# --------------------------------------------------------------------------
# Processes

_clients = []            # client processes, stopped by cleanup()


class Client:
    """A client process (openssl s_client, gnutls-cli) on pipes; its stdout
    and stderr are collected by a thread, so every wait is bounded."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, close_fds=True)
        _clients.append(self.proc)
        self.buf = bytearray()
        self.eof = False
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                d = os.read(fd, 65536)
            except OSError:
                d = b""
            with self.cv:
                if not d:
                    self.eof = True
                    self.cv.notify_all()
                    return
                self.buf += d
                self.cv.notify_all()

    def out(self):
        with self.cv:
            return bytes(self.buf)

    def write(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def wait(self, pred, timeout=STEP_TIMEOUT):
        """Until pred(output) or the output ends; returns pred(output)."""
        end = time.monotonic() + timeout
        with self.cv:
            while not pred(bytes(self.buf)) and not self.eof:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(min(left, 0.5))
            return pred(bytes(self.buf))

    def responses(self):
        return len(RESP_RE.findall(self.out()))

    def heads(self):
        return len(HEAD_RE.findall(self.out()))

    def wait_responses(self, n, timeout=STEP_TIMEOUT):
        return self.wait(lambda b: len(RESP_RE.findall(b)) >= n, timeout)

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def finish(self, timeout=PROC_TIMEOUT, close_stdin=True):
        """Waits for the process to end by itself (closing stdin first when
        asked); kills it by PID only if it does not. Returns its status, or
        None if it had to be killed."""
        if close_stdin:
            self.close_stdin()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_proc(self.proc, 5)
            rc = None
        self.t.join(5)
        return rc

    def ended(self, timeout=STEP_TIMEOUT):
        """True if the process exits by itself within timeout (stdin left open)."""
        try:
            self.proc.wait(timeout=timeout)
            self.t.join(5)
            return True
        except subprocess.TimeoutExpired:
            return False


def s_client(port, *extra):
    # No -ign_eof/-quiet: a line "k"/"K" on stdin sends a KeyUpdate. -msg
    # shows the records received (close_notify, the server's KeyUpdate).
    return Client(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", WORK.ca,
                   "-msg"] + list(extra))


def keyupdates(c):
    return c.out().count(b"KEYUPDATE")


def send_keyupdate(c, letter):
    """Feeds one "k"/"K" line and waits until s_client has acted on it, so
    that the next line is a separate read (a read that starts with k/K is
    consumed whole: a request in it would be lost)."""
    n = keyupdates(c)
    ok = c.write(letter + b"\n")
    return ok and c.wait(lambda b: b.count(b"KEYUPDATE") > n)


def got_close_notify(out):
    # s_client -msg: "<<< TLS 1.3, Alert [length 0002], warning close_notify";
    # s_client prints "closed" when SSL_read returns 0 (close_notify seen).
    return re.search(rb"<<< [^\n]*Alert[^\n]*close_notify", out) is not None


def fetch_page(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
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


class TLSConn:
    """A Python ssl client connection kept open (keep-alive)."""

    def __init__(self, port, version):
        ctx = client_ctx(version)
        raw = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.version = self.s.version()
        self.buf = b""

    def get(self, path):
        self.s.sendall(req(path))
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise Fail("connection closed before a response head")
            self.buf += d
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"\r\nContent-Length: (\d+)", head)
        if not m:
            raise Fail("no Content-Length: %r" % head)
        n = int(m.group(1))
        while len(rest) < n:
            d = self.s.recv(65536)
            if not d:
                raise Fail("connection closed inside a body")
            rest += d
        self.buf = rest[n:]
        return head, rest[:n]

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# Checks

def opened(srv):
    """(version, kernel-tx, kernel-rx) of each connection the server logged."""
    return [(l["version"], l["ktx"] == "yes", l["krx"] == "yes") for l in srv.tls_lines()]


def expect_opened(ck, srv, want):
    ck.eq(opened(srv), want, "connections opened (version, kernel-tx, kernel-rx)")


def tls13_session(srv, ck, letters):
    """Common script: request, then for each letter a KeyUpdate and a
    request (the last one with Connection: close). Returns the client after
    the script, whatever happened."""
    c = s_client(srv.port)
    ck.expect(c.write(req()), "s_client: cannot write the first request")
    ck.expect(c.wait_responses(1), "no response to the first request: %s" % short(c.out()))
    for i, letter in enumerate(letters):
        if not ck.expect(send_keyupdate(c, letter),
                         "s_client did not send KeyUpdate %d (%s): %s" % (i + 1, letter, short(c.out()))):
            break
        last = i == len(letters) - 1
        c.write(req(close=last))
        ck.expect(c.wait_responses(i + 2),
                  "no response after KeyUpdate %d (%s): %s" % (i + 1, letter, short(c.out())))
    return c


def expect_kKK(ck, c):
    """The client side of tls13_session(.., [k, K, K]) with Connection:
    close last: four responses, our two KeyUpdates, close_notify."""
    # s_client ends by itself on the close_notify (closing its stdin
    # first would race with reading it).
    ck.expect(c.ended(), "s_client did not end after the Connection: close response")
    rc = c.finish(timeout=10)
    out = c.out()
    ck.eq(c.responses(), 4, "correct /hello responses")
    ck.eq(c.heads(), 4, "response heads")
    ck.eq(keyupdates(c), 3, "KeyUpdates s_client sent")
    ck.eq(out.count(KU_IN), 2, "server KeyUpdates s_client received")
    ck.expect(got_close_notify(out), "no close_notify after Connection: close: %s" % short(out, 1500))
    ck.eq(rc, 0, "s_client exit status")


def check_rekey_peer_updates():
    """1: k, K, K on a fully offloaded TLS 1.3 connection (rekey kernel)."""
    if not REKEY:
        raise SkipCheck("this kernel cannot rekey (checked by the 6.1 checks)")
    ck = Check()
    srv = Server()
    try:
        ctr = Counters()
        expect_kKK(ck, tls13_session(srv, ck, [b"k", b"K", b"K"]))
        expect_opened(ck, srv, [("TLSv1.3", True, True)])
        d = ctr.delta()
        expect_counters(ck, d, {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0,
                                "TlsRxRekeyOk": 3, "TlsTxRekeyOk": 2, "TlsRxRekeyReceived": 3,
                                "TlsTxRekeyError": 0, "TlsRxRekeyError": 0})
        ck.note(fmt_delta(d, BASE_KEYS + REKEY_KEYS))
        ck.eq(srv.info_lines(), [], "server info/warn/error lines")
    finally:
        srv.stop()
    return ck


def own_records_peer_updates(mode):
    """k, K, K on TLS 1.3 where our record layer makes the server's records
    (TX not in the kernel) and RX is the kernel's (--ktls rx, a rekey
    kernel) or OpenSSL's (--ktls off): each K is answered by a KeyUpdate
    we seal, and the responses after it, sealed under our next key, read."""
    ck = Check()
    srv = Server("--ktls", mode, "--admin-listen", "127.0.0.1:0")
    try:
        ctr = Counters()
        expect_kKK(ck, tls13_session(srv, ck, [b"k", b"K", b"K"]))
        krx = mode == "rx"
        expect_opened(ck, srv, [("TLSv1.3", False, krx)])
        d = ctr.delta()
        want = {"TlsTxSw": 0, "TlsRxSw": 1 if krx else 0, "TlsDecryptError": 0}
        if REKEY:
            want.update({"TlsRxRekeyOk": 3 if krx else 0, "TlsTxRekeyOk": 0,
                         "TlsRxRekeyReceived": 3 if krx else 0, "TlsRxRekeyError": 0})
        expect_counters(ck, d, want)
        ck.note(fmt_delta(d, BASE_KEYS + (REKEY_KEYS if REKEY else [])))
        ck.eq(own_records(srv), 1, "ringtls_tls_own_record_layer_connections_total: our "
              "record layer made the server's records")
        ck.eq(srv.info_lines(), [], "server info/warn/error lines")
    finally:
        srv.stop()
    return ck


def own_records(srv):
    """ringtls_tls_own_record_layer_connections_total from the admin listener, or None."""
    text = admin_metrics(srv, STEP_TIMEOUT)
    v = re.search(r"^ringtls_tls_own_record_layer_connections_total (\d+)$", text or "", re.M)
    return int(v.group(1)) if v else None


def check_own_records_kernel_rx():
    """1b: --ktls rx on a rekey kernel."""
    if not REKEY:
        raise SkipCheck("this kernel cannot rekey: TLS 1.3 RX stays in userspace (1c covers that)")
    return own_records_peer_updates("rx")


def check_own_records_userspace():
    """1c: --ktls off."""
    return own_records_peer_updates("off")


def check_norekey_userspace_rx():
    """2a: 6.1 default policy: k handled by userspace RX, K closes cleanly."""
    if REKEY:
        raise SkipCheck("this kernel can rekey (check 1 covers it)")
    ck = Check()
    srv = Server()
    try:
        ctr = Counters()
        c = s_client(srv.port)
        c.write(req())
        ck.expect(c.wait_responses(1), "no response to the first request: %s" % short(c.out()))
        ck.expect(send_keyupdate(c, b"k"), "s_client did not send k")
        c.write(req())
        ck.expect(c.wait_responses(2), "no response after k: %s" % short(c.out()))
        ck.expect(send_keyupdate(c, b"K"), "s_client did not send K")
        ck.expect(srv.wait_line(0, "cannot rekey", STEP_TIMEOUT), "no 'cannot rekey' log line after K")
        ended = c.ended()
        ck.expect(ended, "s_client still running: the server did not close after K")
        rc = c.finish(timeout=10)
        out = c.out()
        ck.eq(c.responses(), 2, "correct /hello responses (before k, after k)")
        ck.eq(c.heads(), 2, "response heads")
        ck.expect(got_close_notify(out), "s_client saw no close_notify after K: %s" % short(out))
        ck.expect(b"\nclosed" in out, "s_client did not report 'closed'")
        expect_opened(ck, srv, [("TLSv1.3", True, False)])
        d = ctr.delta()
        expect_counters(ck, d, {"TlsTxSw": 1, "TlsRxSw": 0, "TlsDecryptError": 0})
        ck.note(fmt_delta(d, BASE_KEYS))
        lines = srv.info_lines()
        ck.eq(len([x for x in lines if "cannot rekey" in x]), 1, "log lines with 'cannot rekey'")
        ck.eq(len(lines), 1, "server info/warn/error lines (%r)" % lines)
        ck.note("s_client rc=%s" % rc)
    finally:
        srv.stop()
    return ck


def check_norekey_forced_rx():
    """2b: 6.1 --ktls-rx-no-rekey: RX offloaded; k ends it cleanly."""
    if REKEY:
        raise SkipCheck("this kernel can rekey")
    ck = Check()
    srv = Server("--ktls-rx-no-rekey")
    try:
        ctr = Counters()
        c = s_client(srv.port)
        c.write(req())
        ck.expect(c.wait_responses(1), "no response to the first request: %s" % short(c.out()))
        ck.expect(send_keyupdate(c, b"k"), "s_client did not send k")
        ck.expect(srv.wait_line(0, r"cannot rekey|cannot be renewed", STEP_TIMEOUT),
                  "no 'cannot rekey'/'cannot be renewed' log line after k")
        ck.expect(c.ended(), "s_client still running: the server did not close after k")
        rc = c.finish(timeout=10)
        out = c.out()
        ck.eq(c.responses(), 1, "correct /hello responses")
        ck.expect(got_close_notify(out), "s_client saw no close_notify after k: %s" % short(out))
        time.sleep(0.5)  # let any late log line land (not a timing measurement)
        expect_opened(ck, srv, [("TLSv1.3", True, True)])
        d = ctr.delta()
        expect_counters(ck, d, {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0})
        ck.note(fmt_delta(d, BASE_KEYS))
        lines = srv.info_lines()
        ck.eq(len(lines), 1, "server info/warn/error lines, want exactly the one clean-close line (%r)" % lines)
        ck.note("s_client rc=%s" % rc)
    finally:
        srv.stop()
    return ck


def check_flood():
    """3: a KeyUpdate flood is cut off; a fresh connection works."""
    ck = Check()
    srv = Server("--key-update-max-rate", "20")
    try:
        ctr = Counters()
        c = s_client(srv.port)
        c.write(req())
        ck.expect(c.wait_responses(1), "no response to the first request: %s" % short(c.out()))
        # ~300 "k" lines as fast as they go, each its own write: s_client
        # sends one KeyUpdate per read of its stdin, so it floods as fast as
        # its loop turns (lines it reads together count once).
        sent_lines = 0
        for _ in range(300):
            if c.proc.poll() is not None or not c.write(b"k\n"):
                break
            sent_lines += 1
            time.sleep(0.001)
        ck.expect(srv.wait_line(0, r"KeyUpdates in a second", STEP_TIMEOUT),
                  "no 'KeyUpdates in a second' log line")
        ck.expect(c.ended(), "s_client still connected after the flood")
        c.finish(timeout=10)
        ck.note("k lines written %d, KeyUpdates sent %d" % (sent_lines, keyupdates(c)))
        ck.expect(keyupdates(c) > 20, "s_client sent only %d KeyUpdates" % keyupdates(c))
        lines = srv.info_lines()
        ck.eq(len([x for x in lines if "KeyUpdates in a second" in x]), 1,
              "log lines with 'KeyUpdates in a second'")
        # A fresh connection afterwards works.
        c2 = s_client(srv.port)
        c2.write(req(close=True))
        ck.expect(c2.wait_responses(1), "fresh connection: no response: %s" % short(c2.out()))
        c2.finish()
        expect_opened(ck, srv, [("TLSv1.3", True, REKEY)] * 2)
        d = ctr.delta()
        want = {"TlsTxSw": 2, "TlsRxSw": 2 if REKEY else 0, "TlsDecryptError": 0}
        if REKEY:
            # Every KeyUpdate the kernel read was installed but the one that
            # tipped the rate over; k asks for nothing, so TX never rekeys.
            want.update({"TlsRxRekeyOk": (20, 300), "TlsTxRekeyError": 0, "TlsRxRekeyError": 0,
                         "TlsTxRekeyOk": 0})
            ck.eq(d.get("TlsRxRekeyReceived", 0), d.get("TlsRxRekeyOk", 0) + 1,
                  "TlsRxRekeyReceived delta (TlsRxRekeyOk delta + the one cut off)")
        expect_counters(ck, d, want)
        ck.note(fmt_delta(d, BASE_KEYS + (REKEY_KEYS if REKEY else [])))
    finally:
        srv.stop()
    return ck


LIMIT = 3
NREQ = 10


def own_keyupdate(tool):
    ck = Check()
    srv = Server("--key-update-after-records", str(LIMIT))
    try:
        ctr = Counters()
        if tool == "s_client":
            c = s_client(srv.port)
        else:
            c = Client(["gnutls-cli", "--x509cafile", WORK.ca, "-p", str(srv.port), "127.0.0.1"])
        got = 0
        for i in range(NREQ):
            if not c.write(req()):
                break
            if not c.wait_responses(i + 1):
                break
            got = i + 1
        if REKEY:
            ck.eq(got, NREQ, "correct responses in sequence")
            rc = c.finish()
            ck.eq(c.responses(), NREQ, "correct /hello responses")
            ck.eq(c.heads(), NREQ, "response heads")
            d = ctr.delta()
            expect_counters(ck, d, {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0,
                                    "TlsTxRekeyOk": (2, NREQ), "TlsTxRekeyError": 0,
                                    "TlsRxRekeyError": 0, "TlsRxRekeyOk": 0})
            ck.note(fmt_delta(d, BASE_KEYS + REKEY_KEYS))
            ck.eq(srv.info_lines(), [], "server info/warn/error lines")
            expect_opened(ck, srv, [("TLSv1.3", True, True)])
        else:
            # The kernel cannot take a new TX key: a clean close at the limit.
            ck.expect(srv.wait_line(0, "cannot rekey", STEP_TIMEOUT), "no 'cannot rekey' log line")
            ck.expect(c.ended(), "%s still connected: the server did not close at the limit" % tool)
            rc = c.finish(timeout=10)
            out = c.out()
            n = c.responses()
            ck.expect(1 <= n <= LIMIT, "correct responses before the limit: %d, want 1..%d" % (n, LIMIT))
            ck.eq(c.heads(), n, "response heads (no partial response)")
            ck.eq(got, n, "responses in sequence")
            if tool == "s_client":
                ck.expect(got_close_notify(out), "s_client saw no close_notify: %s" % short(out))
            else:
                ck.expect(b"Peer has closed the GnuTLS connection" in out,
                          "gnutls-cli did not see a clean close: %s" % short(out))
            lines = srv.info_lines()
            ck.eq(len([x for x in lines if "cannot rekey" in x]), 1, "log lines with 'cannot rekey'")
            ck.eq(len(lines), 1, "server info/warn/error lines (%r)" % lines)
            d = ctr.delta()
            expect_counters(ck, d, {"TlsTxSw": 1, "TlsRxSw": 0, "TlsDecryptError": 0})
            ck.note("responses before the close: %d; " % n + fmt_delta(d, BASE_KEYS))
            expect_opened(ck, srv, [("TLSv1.3", True, False)])
        ck.note("%s rc=%s" % (tool, rc))
    finally:
        srv.stop()
    return ck


def check_own_keyupdate_s_client():
    """4a: our own KeyUpdate every 3 records, openssl s_client."""
    return own_keyupdate("s_client")


def check_own_keyupdate_gnutls():
    """4b: our own KeyUpdate every 3 records, gnutls-cli."""
    if not shutil.which("gnutls-cli"):
        raise SkipCheck("gnutls-cli not installed")
    return own_keyupdate("gnutls")


def check_own_keyupdate_app_records():
    """4c: the limit counts records under the application key only. With
    --no-tickets nothing but our responses (one record each) is sent under
    traffic key 0, so the first KeyUpdate (7.2) or the clean close (6.1)
    must come after exactly LIMIT responses."""
    ck = Check()
    srv = Server("--key-update-after-records", str(LIMIT), "--no-tickets")
    try:
        c = s_client(srv.port)
        got = 0
        for i in range(2 * LIMIT):
            if not c.write(req()) or not c.wait_responses(i + 1):
                break
            got = i + 1
        if REKEY:
            rc = c.finish()
            out = c.out()
            ck.eq(got, 2 * LIMIT, "correct responses in sequence")
            at = out.find(KU_IN)
            if ck.expect(at >= 0, "s_client received no KeyUpdate from the server"):
                ck.eq(len(RESP_RE.findall(out[:at])), LIMIT,
                      "responses (= records under traffic key 0) before the server's first KeyUpdate")
            ck.eq(srv.info_lines(), [], "server info/warn/error lines")
        else:
            ck.expect(srv.wait_line(0, "cannot rekey", STEP_TIMEOUT), "no 'cannot rekey' log line")
            ck.expect(c.ended(), "s_client still connected: the server did not close at the limit")
            rc = c.finish(timeout=10)
            ck.eq(c.responses(), LIMIT,
                  "responses (= records under traffic key 0) before the clean close at the limit")
            ck.expect(got_close_notify(c.out()), "s_client saw no close_notify")
        ck.note("s_client rc=%s; responses %d" % (rc, c.responses()))
    finally:
        srv.stop()
    return ck


NCONN = 20


def keyless(offload):
    ck = Check()
    extra = [] if offload else ["--ktls", "off"]
    if offload and not REKEY:
        extra.append("--ktls-rx-no-rekey")  # TLS 1.3 RX in the kernel on 6.1
    srv = Server(*extra, plain=True)
    conns = []
    try:
        ctr = Counters()
        for version in ("1.2", "1.3"):
            for _ in range(NCONN):
                c = TLSConn(srv.port, version)
                conns.append(c)
                # The page over TLS: the connection's own paths.
                head, body = c.get("/")
                page = body.decode("utf-8", "replace")
                want = "kernel (kTLS)" if offload else "userspace (OpenSSL)"
                cells = page_cells(page)
                ck.eq((cells.get("tx"), cells.get("rx")), (want, want),
                      "%s connection %d: page tx/rx" % (c.version, len(conns)))
        versions = sorted(set(c.version for c in conns))
        ck.eq(versions, ["TLSv1.2", "TLSv1.3"], "negotiated versions")
        page = fetch_page(srv.plain_port)
        live = page_cells(page).get("live_ssl")
        ck.eq(live, "0" if offload else str(2 * NCONN),
              "live_ssl with %d idle connections open" % (2 * NCONN))
        opens = opened(srv)
        ck.eq(len(opens), 2 * NCONN, "connections logged")
        ck.eq(sorted(set((o[1], o[2]) for o in opens)), [(offload, offload)],
              "(kernel-tx, kernel-rx) of every connection")
        d = ctr.delta()
        n = 2 * NCONN if offload else 0
        expect_counters(ck, d, {"TlsTxSw": n, "TlsRxSw": n, "TlsDecryptError": 0})
        ck.note("live_ssl=%s; %s" % (live, fmt_delta(d, BASE_KEYS)))
        # Still alive and usable after the page was read.
        for c in (conns[0], conns[-1]):
            head, body = c.get("/hello")
            ck.eq(body, HELLO, "%s connection still serves /hello" % c.version)
    finally:
        for c in conns:
            c.close()
        srv.stop()
    return ck


def check_keyless_offloaded():
    """5a: 20 TLS 1.2 + 20 TLS 1.3 fully offloaded idle connections: live_ssl 0."""
    return keyless(True)


def check_keyless_counter_counts():
    """5b: the same 40 with --ktls off: live_ssl 40."""
    return keyless(False)


CHECKS = [
    ("1 rekey kernel: peer k, K, K on an offloaded TLS 1.3 connection", check_rekey_peer_updates),
    ("1b rekey kernel, --ktls rx: peer k, K, K; kernel RX rekeys, our record layer answers",
     check_own_records_kernel_rx),
    ("1c --ktls off: peer k, K, K; OpenSSL reads, our record layer answers",
     check_own_records_userspace),
    ("2a no-rekey kernel: k via userspace RX, K closes cleanly", check_norekey_userspace_rx),
    ("2b no-rekey kernel, --ktls-rx-no-rekey: RX offloaded, k closes cleanly", check_norekey_forced_rx),
    ("3 KeyUpdate flood cut off (--key-update-max-rate 20), fresh connection works", check_flood),
    ("4a own KeyUpdate after 3 records: openssl s_client", check_own_keyupdate_s_client),
    ("4b own KeyUpdate after 3 records: gnutls-cli", check_own_keyupdate_gnutls),
    ("4c own KeyUpdate: the limit counts application-key records only (--no-tickets)",
     check_own_keyupdate_app_records),
    ("5a keyless: 40 fully offloaded idle connections, live_ssl 0", check_keyless_offloaded),
    ("5b keyless: --ktls off, the same 40 connections, live_ssl 40", check_keyless_counter_counts),
]


def cleanup():
    stop_all()
    for p in _clients:
        try:
            stop_proc(p, 5)
        except Exception:
            pass


def main():
    global REKEY, KVER
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only the checks whose name matches this regex")
    args = ap.parse_args()

    if not os.path.exists(STAT_PATH):
        print("SKIP all: %s is missing (no kernel TLS here; run inside run-kernel.sh)" % STAT_PATH)
        print_summary(0, 0, 1)
        return SKIP_RC
    if not os.access(RINGTLS_BIN, os.X_OK):
        print("FAIL setup: no ringtls binary at %s (set RINGTLS_BIN)" % RINGTLS_BIN)
        print_summary(0, 1)
        return 1
    if not shutil.which("openssl"):
        print("SKIP all: openssl is missing")
        print_summary(0, 0, 1)
        return SKIP_RC

    def watchdog(signum, frame):
        print("FAIL watchdog: the suite ran past %ds" % WATCHDOG, flush=True)
        cleanup()
        os._exit(1)
    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG)

    probe = subprocess.run([RINGTLS_BIN, "probe"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=PROC_TIMEOUT).stdout.decode("utf-8", "replace")
    m = re.search(r"^kernel:\s+(.*)$", probe, re.M)
    KVER = m.group(1) if m else "?"
    REKEY = re.search(r"^TLS 1\.3 rekey:\s+yes", probe, re.M) is not None
    if not re.search(r"^tls ULP:\s+yes", probe, re.M):
        print("FAIL setup: /proc/net/tls_stat exists but ringtls probe finds no tls ULP:\n" + probe)
        print_summary(0, 1)
        return 1
    print("kernel %s; TLS 1.3 rekey: %s; ringtls %s" % (KVER, "yes" if REKEY else "no", RINGTLS_BIN),
          flush=True)

    make_workdir("ringtls-keyupdate-")
    try:
        # The first server makes the self-signed certificate all share.
        Server().stop()
    except Fail as e:
        print("FAIL setup: %s" % e)
        print_summary(0, 1)
        remove_workdir()
        return 1

    passed = failed = skipped = 0
    try:
        for name, fn in CHECKS:
            if args.only and not re.search(args.only, name):
                continue
            try:
                ck = fn()
            except SkipCheck as e:
                print("SKIP %s: %s" % (name, e), flush=True)
                skipped += 1
                continue
            except Exception as e:  # noqa: BLE001 - a check that crashed failed
                detail = str(e) if isinstance(e, Fail) else traceback.format_exc()
                print("FAIL %s: %s" % (name, detail.rstrip()), flush=True)
                failed += 1
                continue
            note = (" (%s)" % "; ".join(ck.notes)) if ck.notes else ""
            if ck.errors:
                print("FAIL %s%s:\n    %s" % (name, note, "\n    ".join(ck.errors)), flush=True)
                failed += 1
            else:
                print("PASS %s%s" % (name, note), flush=True)
                passed += 1
    finally:
        cleanup()
        remove_workdir()
    print_summary(passed, failed, skipped)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
