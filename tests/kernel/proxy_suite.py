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
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (RINGTLS_BIN, Fail, Server, check, client_ctx, expect_eq,  # noqa: E402
                          offload_deltas, run_suite, stop_server)
import test_proxy as tp  # noqa: E402
import upstreams as up  # noqa: E402

SIZE = 20 << 20
IO_TIMEOUT = 60.0        # one socket wait in the slow guest
WATCHDOG = 800           # the whole suite (run-kernel.sh allows 900 s)
VERSIONS = (("1.3", None), ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"))


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
    got = offload_deltas(ctr)
    expect_eq(got, (1, 1, 0), "tls_stat deltas TlsTxSw/TlsRxSw/TlsDecryptError")
    lines = srv.conn_tls_lines(mark, port, 10)
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


def main():
    only, full = suite_common.start_suite(__doc__, WATCHDOG)
    backend = None

    def body():
        nonlocal backend
        backend = up.Backend("ktls-backend")
        up.pattern_sha(SIZE, 0)
        up.pattern_sha(SIZE, 1)
        print("proxy suite: %s, kernel %s, server flags %s, backend %s" % (
            RINGTLS_BIN, os.uname().release, full or "-", backend.url), flush=True)
        srv = Server(*full, "--proxy", "/p/=" + backend.url, name="ringtls-proxy")
        for version, cipher in VERSIONS:
            what = "TLSv%s%s" % (version, " " + cipher if cipher else "")
            check(only, "proxy %d MB download %s: sha256, kernel TX/RX" % (SIZE >> 20, what),
                  c_download, srv, version, cipher)
            check(only, "proxy %d MB upload %s: sha256 upstream, kernel TX/RX" % (SIZE >> 20, what),
                  c_upload, srv, version, cipher)
        check(only, "proxy %d MB chunked download TLSv1.3 (chunks passed through): sha256, "
              "kernel TX/RX" % (SIZE >> 20), c_download, srv, "1.3", None, "chunked")
        stop_server(srv)

    def cleanup():
        if backend:
            backend.close()

    return run_suite("proxy-suite-", body, cleanup)


if __name__ == "__main__":
    sys.exit(main())
