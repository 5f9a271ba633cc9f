#!/usr/bin/env python3
"""SIGHUP reload over kernel TLS (python3 stdlib only; run inside a kTLS
kernel by tests/kernel/run-kernel.sh).

    reload_suite.py               inside a kernel with kTLS
    reload_suite.py --only REGEX  run only the checks whose name matches

ringtls --ktls on --cert FILE --key FILE serves a SIZE-byte file. For TLS
1.3 and TLS 1.2, a download starts and is offloaded both ways
(/proc/net/tls_stat TlsTxSw and TlsRxSw +1, the server's debug line says
kernel-tx=yes kernel-rx=yes); the certificate and key files are replaced
with another pair at the same paths and the server gets SIGHUP; once it
logs `SIGHUP: reloaded (generation N)`, a new connection sees the new
certificate and is offloaded too (the counters rise by one more each);
then the download, which kept the old certificate, is read to its end
without the counters moving: byte count and sha256 intact, TlsDecryptError
unmoved over the whole check, and the old generation logs `generation N-1
stopped`. The reload itself may raise TlsTxSw by one, never TlsRxSw: the
new TLS context's rekey probe (src/tls/ctx.c). On a kernel that cannot rekey
(6.1) the server gets --ktls-rx-no-rekey, as in ktls_suite.py.

Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat: no kTLS
here; never a pass without it). One line per check, then "N passed, N
failed[, N skipped]". Nothing is timed: the guest is ~100x slower.
"""
import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (HELLO, PROC_TIMEOUT, RINGTLS_BIN, SKIP_RC, STAT_PATH, WORK, Fail,  # noqa: E402
                          Server, make_workdir, print_summary, read_stat, remove_workdir,
                          stop_all)
import tls_util as tu  # noqa: E402

SIZE = 8 << 20
IO_TIMEOUT = 60.0        # one socket wait in the slow guest
RELOAD_TIMEOUT = 120.0   # SIGHUP -> `reloaded`: a new TLS context and reactor, in the guest
WATCHDOG = 800           # the whole suite (run-kernel.sh allows 900 s)
VERSIONS = (("1.3", None), ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"))

FULL = []                # server flags for full offload on this kernel
results = []


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


def expect_eq(got, want, what):
    if got != want:
        raise Fail("%s: got %s, want %s" % (what, repr(got)[:300], repr(want)[:300]))


def client_ctx(pki, version, cipher):
    """Verifies against the test CA; no host name check: the two
    certificates are for a.test and b.test."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca[0])
    ctx.check_hostname = False
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    if cipher:
        ctx.set_ciphers(cipher)
    return ctx


def connect(port, ctx):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(IO_TIMEOUT)
    s.connect(("127.0.0.1", port))
    try:
        return s.getsockname()[1], ctx.wrap_socket(s, server_hostname="localhost")
    except BaseException:
        s.close()
        raise


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise Fail("EOF in the response head: %r" % buf[:200])
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = None
    for l in lines[1:]:
        k, _, v = l.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    return lines[0], length, rest


def offloaded(srv, mark, port):
    """The server's debug line for the connection from `port`: kernel both ways."""
    end = time.monotonic() + 30
    lines = []
    while time.monotonic() < end:
        lines = [l for l in srv.tls_lines(mark) if int(l["port"]) == port]
        if lines:
            break
        time.sleep(0.1)
    expect_eq([(l["ktx"], l["krx"]) for l in lines], [("yes", "yes")],
              "the server's debug line for the connection from %d: kernel-tx, kernel-rx" % port)


def deltas(ctr):
    d = ctr.delta()
    if d is None:
        raise Fail("%s is missing" % STAT_PATH)
    return d.get("TlsTxSw", 0), d.get("TlsRxSw", 0), d.get("TlsDecryptError", 0)


def put(src, dst):
    shutil.copyfile(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)


def c_reload(srv, pki, files, digest, version, cipher, old, new, gen):
    """A download offloaded both ways spans a SIGHUP that changes the
    certificate files from `old` to `new`."""
    ctx = client_ctx(pki, version, cipher)
    ctr_all = suite_common.Counters()
    mark = srv.mark()
    port, s = connect(srv.port, ctx)
    try:
        expect_eq(s.getpeercert(binary_form=True), tu.der_of(old[0]),
                  "the download's certificate (before the reload)")
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, length, rest = read_head(s)
        expect_eq((status, length), ("HTTP/1.1 200 OK", SIZE), "the download's head")
        h, got = hashlib.sha256(rest), len(rest)
        while got < 256 * 1024:
            d = s.recv(65536)
            expect(d, "EOF after %d bytes, before the reload" % got)
            h.update(d)
            got += len(d)
        offloaded(srv, mark, port)
        expect_eq(deltas(ctr_all)[:2], (1, 1), "tls_stat TlsTxSw/TlsRxSw: the download offloaded")

        put(new[0], files[0])
        put(new[1], files[1])
        mark2 = srv.mark()
        ctr_reload = suite_common.Counters()
        srv.proc.send_signal(signal.SIGHUP)
        line = srv.wait_line(mark2, r" (info|error) SIGHUP: ", RELOAD_TIMEOUT)
        expect(line and line.endswith("info SIGHUP: reloaded (generation %d)" % gen),
               "after SIGHUP: %r, want `SIGHUP: reloaded (generation %d)`" % (line, gen))
        # The reload itself offloads nothing but for one probe: the new TLS
        # context asks whether the kernel can rekey (src/tls/ctx.c,
        # rtls__ktls_probe) by setting TLS_TX on a socket of its own.
        tx, rx, dec = deltas(ctr_reload)
        expect(tx in (0, 1) and (rx, dec) == (0, 0),
               "tls_stat TlsTxSw/TlsRxSw/TlsDecryptError during the reload: %s, want "
               "(0 or 1 for the rekey probe, 0, 0)" % ((tx, rx, dec),))

        ctr_new = suite_common.Counters()
        port2, s2 = connect(srv.port, ctx)
        try:
            expect_eq(s2.getpeercert(binary_form=True), tu.der_of(new[0]),
                      "a new connection's certificate after the reload")
            s2.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            _, n, body = read_head(s2)
            while len(body) < (n or 0):
                d = s2.recv(65536)
                if not d:
                    break
                body += d
            expect_eq(body, HELLO, "GET /hello on the new connection")
        finally:
            s2.close()
        offloaded(srv, mark2, port2)
        expect_eq(deltas(ctr_new), (1, 1, 0),
                  "tls_stat TlsTxSw/TlsRxSw/TlsDecryptError for the new connection")
        ctr_rest = suite_common.Counters()

        while got < SIZE:
            d = s.recv(1 << 20)
            expect(d, "download: EOF after %d of %d bytes" % (got, SIZE))
            h.update(d)
            got += len(d)
        expect_eq(got, SIZE, "download: bytes")
        expect_eq(h.hexdigest(), digest, "download: sha256")
    finally:
        s.close()
    expect_eq(deltas(ctr_rest), (0, 0, 0), "tls_stat TlsTxSw/TlsRxSw/TlsDecryptError for the "
              "rest of the download (still the old generation's kernel keys)")
    expect_eq(deltas(ctr_all)[2], 0, "tls_stat TlsDecryptError over the whole check")
    line = srv.wait_line(mark2, r" info generation %d stopped$" % (gen - 1), RELOAD_TIMEOUT)
    expect(line, "`generation %d stopped` once the download is done" % (gen - 1))
    warns = [l for l in srv.lines_since(mark) if re.search(r" (warn|error) ", l)]
    expect_eq(warns, [], "warnings or errors (--ktls on logs every fallback)")
    return "download TlsTxSw+1 TlsRxSw+1, reload TlsTxSw+%d (probe), new connection " \
        "TlsTxSw+1 TlsRxSw+1, TlsDecryptError+0" % tx


def check(only, name, fn, *args):
    if only and not only.search(name):
        return
    t0 = time.monotonic()
    try:
        detail = fn(*args)
        status = "PASS"
    except Fail as e:
        status, detail = "FAIL", str(e)
    except Exception as e:  # noqa: BLE001 - a crashed check failed
        status, detail = "FAIL", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
    if os.environ.get("KTLS_SUITE_TIMES"):
        detail = "%s [%.1f s]" % (detail or "", time.monotonic() - t0)
    results.append(status)
    print("%s %s%s" % (status, name, ("  (%s)" if status == "PASS" else ": %s") % detail
                       if detail else ""), flush=True)


def main():
    global FULL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="run only the checks whose name matches this regex")
    a = ap.parse_args()
    only = re.compile(a.only) if a.only else None

    stat = read_stat()
    if stat is None:
        print("SKIP all: %s is missing: no kernel TLS here (run me through "
              "tests/kernel/run-kernel.sh)" % STAT_PATH)
        print_summary(0, 0, 1)
        return SKIP_RC
    if not os.access(RINGTLS_BIN, os.X_OK):
        print("SKIP all: no ringtls binary at %s (set RINGTLS_BIN)" % RINGTLS_BIN)
        print_summary(0, 0, 1)
        return SKIP_RC
    probe = subprocess.run([RINGTLS_BIN, "probe"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=PROC_TIMEOUT).stdout.decode("utf-8", "replace")
    if not re.search(r"^tls ULP:\s+yes", probe, re.M):
        print("FAIL setup: %s exists but ringtls probe finds no tls ULP:\n%s" % (STAT_PATH, probe))
        print_summary(0, 1)
        return 1
    FULL = [] if "TlsRxRekeyOk" in stat else ["--ktls-rx-no-rekey"]

    def on_alarm(signum, frame):
        raise SystemExit("the suite ran past %d s" % WATCHDOG)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WATCHDOG)
    make_workdir("reload-suite-")
    try:
        pki = tu.Pki(os.path.join(WORK.tmp, "pki"))
        root = os.path.join(WORK.tmp, "root")
        os.makedirs(root)
        data = os.urandom(SIZE)
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(data)
        del data
        files = (os.path.join(WORK.tmp, "cert.pem"), os.path.join(WORK.tmp, "key.pem"))
        put(pki.a[0], files[0])
        put(pki.a[1], files[1])
        print("reload suite: %s, kernel %s, server flags %s" % (
            RINGTLS_BIN, os.uname().release, FULL or "-"), flush=True)
        srv = Server("--ktls", "on", *FULL, "--cert", files[0], "--key", files[1],
                     "--shutdown-timeout", "300s", root=root, name="ringtls-reload")
        pairs = (pki.a, pki.b)
        for i, (version, cipher) in enumerate(VERSIONS):
            what = "TLSv%s%s" % (version, " " + cipher if cipher else "")
            check(only, "reload during a %d MB kTLS download %s: intact, new certificate after, "
                  "both offloaded" % (SIZE >> 20, what),
                  c_reload, srv, pki, files, digest, version, cipher, pairs[i % 2],
                  pairs[(i + 1) % 2], i + 2)
        alive = srv.alive()
        rc = srv.stop()
        if not (alive and rc == 0):
            results.append("FAIL")
            print("FAIL server: alive %s, exit status %s after SIGTERM; log tail:\n%s"
                  % (alive, rc, "\n".join(srv.log().splitlines()[-15:])), flush=True)
    except SystemExit as e:
        results.append("FAIL")
        print("FAIL watchdog: %s" % e, flush=True)
    except Fail as e:
        results.append("FAIL")
        print("FAIL setup: %s" % e, flush=True)
    except Exception as e:  # noqa: BLE001
        results.append("FAIL")
        print("FAIL suite: %s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()), flush=True)
    finally:
        signal.alarm(0)
        stop_all()
        remove_workdir()
    passed, failed = results.count("PASS"), results.count("FAIL")
    print_summary(passed, failed)
    if failed:
        return 1
    return 0 if passed else SKIP_RC


if __name__ == "__main__":
    sys.exit(main())
