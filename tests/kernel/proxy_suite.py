#!/usr/bin/env python3
"""The reverse proxy (ringtls serve --proxy) over kernel TLS (python3
stdlib only; run inside a kTLS kernel by tests/kernel/run-kernel.sh).

    proxy_suite.py               inside a kernel with kTLS
    proxy_suite.py --only REGEX  run only the checks whose name matches

ringtls --tls-listen with --proxy /p/= a Python http.server backend in
the same guest (tests/integration/upstreams.py). For TLS 1.3 and TLS 1.2:
- SIZE bytes down through the proxy, then a second request on the same
  connection (X-Forwarded-Proto https);
- SIZE bytes up (Content-Length), the backend's sha256 of what it got;
and SIZE bytes down chunked (TLS 1.3), the chunks passed through.
Every check proves offload: /proc/net/tls_stat TlsTxSw and TlsRxSw rise
by exactly one (the client's connection; the upstream leg is plaintext),
TlsDecryptError does not move, and the server's debug line for the
connection says kernel-tx=yes kernel-rx=yes. On a kernel that cannot
rekey (6.1) the server gets --ktls-rx-no-rekey, as in ktls_suite.py.

Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat: no kTLS
here; never a pass without it). One line per check, then "N passed, N
failed[, N skipped]". Nothing is timed: the guest is ~100x slower.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (PROC_TIMEOUT, RINGTLS_BIN, SKIP_RC, STAT_PATH, Fail,  # noqa: E402
                          Server, client_ctx, make_workdir, print_summary, read_stat,
                          remove_workdir, stop_all)
import test_proxy as tp  # noqa: E402
import upstreams as up  # noqa: E402

SIZE = 20 << 20
IO_TIMEOUT = 60.0        # one socket wait in the slow guest
WATCHDOG = 800           # the whole suite (run-kernel.sh allows 900 s)
VERSIONS = (("1.3", None), ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"))

FULL = []                # server flags for full offload on this kernel
results = []


def expect_eq(got, want, what):
    if got != want:
        raise Fail("%s: got %s, want %s" % (what, repr(got)[:300], repr(want)[:300]))


class T:
    """The Checker interface test_proxy's helpers use, raising on the
    first failed expectation."""

    def check(self, cond, msg):
        if not cond:
            raise Fail(msg)
        return True

    def eq(self, got, want, msg):
        expect_eq(got, want, msg)
        return True


def offload(srv, ctr, mark, port):
    """The tls_stat deltas and the debug line of the client's connection."""
    d = ctr.delta()
    if d is None:
        raise Fail("%s is missing" % STAT_PATH)
    got = (d.get("TlsTxSw", 0), d.get("TlsRxSw", 0), d.get("TlsDecryptError", 0))
    expect_eq(got, (1, 1, 0), "tls_stat deltas TlsTxSw/TlsRxSw/TlsDecryptError")
    end = time.monotonic() + 10
    lines = []
    while time.monotonic() < end:
        lines = [l for l in srv.tls_lines(mark) if int(l["port"]) == port]
        if lines:
            break
        time.sleep(0.1)
    expect_eq([(l["ktx"], l["krx"]) for l in lines], [("yes", "yes")],
              "the server's debug line for the connection: kernel-tx, kernel-rx")
    return "TlsTxSw+%d TlsRxSw+%d TlsDecryptError+%d" % got


def connect(srv, version, cipher):
    return tp.Client(srv.port, tls=True, timeout=IO_TIMEOUT, ctx=client_ctx(version, cipher))


def c_download(srv, version, cipher, kind="bytes"):
    ctr = suite_common.Counters()
    mark = srv.mark()
    t = T()
    with connect(srv, version, cipher) as c:
        r = tp.download(t, c, "/p/%s/%d" % (kind, SIZE), SIZE, "download")
        t.eq(r.framing, "chunked" if kind == "chunked" else "length", "the response's framing")
        r = c.request("GET", "/p/echo")
        t.eq(r.status, 200, "a second request on the connection")
        t.eq(tp.seen_headers(r).get("x-forwarded-proto"), ["https"], "X-Forwarded-Proto upstream")
        port = c.local_port
    return offload(srv, ctr, mark, port)


def c_upload(srv, version, cipher):
    ctr = suite_common.Counters()
    mark = srv.mark()
    t = T()
    with connect(srv, version, cipher) as c:
        tp.upload(t, c, "/p/upload", SIZE, "upload")
        port = c.local_port
    return offload(srv, ctr, mark, port)


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
    make_workdir("proxy-suite-")
    backend = None
    try:
        backend = up.Backend("ktls-backend")
        up.pattern_sha(SIZE, 0)
        up.pattern_sha(SIZE, 1)
        print("proxy suite: %s, kernel %s, server flags %s, backend %s" % (
            RINGTLS_BIN, os.uname().release, FULL or "-", backend.url), flush=True)
        srv = Server(*FULL, "--proxy", "/p/=" + backend.url, name="ringtls-proxy")
        for version, cipher in VERSIONS:
            what = "TLSv%s%s" % (version, " " + cipher if cipher else "")
            check(only, "proxy %d MB download %s: sha256, kernel TX/RX" % (SIZE >> 20, what),
                  c_download, srv, version, cipher)
            check(only, "proxy %d MB upload %s: sha256 upstream, kernel TX/RX" % (SIZE >> 20, what),
                  c_upload, srv, version, cipher)
        check(only, "proxy %d MB chunked download TLSv1.3 (chunks passed through): sha256, "
              "kernel TX/RX" % (SIZE >> 20), c_download, srv, "1.3", None, "chunked")
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
        if backend:
            backend.close()
        remove_workdir()
    passed, failed = results.count("PASS"), results.count("FAIL")
    print_summary(passed, failed)
    if failed:
        return 1
    return 0 if passed else SKIP_RC


if __name__ == "__main__":
    sys.exit(main())
