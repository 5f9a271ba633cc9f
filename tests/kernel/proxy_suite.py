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
Content-Length bodies go by splice (rtls_conn_forward_n(): kTLS RX ->
plain upstream, plain upstream -> kTLS TX): the server's debug line
"proxy: request|response body N bytes, spliced S" must come for the
connection, with S at least 1 MiB or half of N (a copying path logs no such
line). And a
pipelined POST whose body ends inside a TLS record that also carries the
next two requests (the bounded splice takes only the body's part of
that record; the kernel keeps the rest for the ordinary receive): three
answers in order, the body whole upstream.
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
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (RINGTLS_BIN, Fail, Server, check, client_ctx, expect_eq,  # noqa: E402
                          offload_deltas, run_suite, stop_server)
import rtls_test as rt  # noqa: E402
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


SPLICED_RE = re.compile(r"http 127\.0\.0\.1:(\d+): proxy: (request|response) body (\d+) bytes, "
                        r"spliced (\d+)")


def spliced(srv, mark, port, what, total, timeout=20.0):
    """The connection's "proxy: WHAT body TOTAL bytes, spliced S" line,
    with min(1 MiB, TOTAL / 2) <= S <= TOTAL. Not "most of it": what the multishot receive
    had already taken into ring buffers when the head was parsed, and
    what it brings until its cancel lands, is copied by the engine; in
    this slow guest, with an upstream that writes fast, that can be most
    of the 16 MiB of ring buffers (7.2, TLS 1.2 download: 4.4 MB of 20
    spliced, once; the uploads splice all but a record or two)."""
    end = time.monotonic() + timeout
    while True:
        got = [(int(m.group(3)), int(m.group(4)))
               for m in (SPLICED_RE.search(l) for l in srv.lines_since(mark))
               if m and int(m.group(1)) == port and m.group(2) == what]
        if got or time.monotonic() > end:
            break
        time.sleep(0.2)
    if not got:
        raise Fail("no \"proxy: %s body ... spliced\" line for port %d: the body was copied"
                   % (what, port))
    tot, sp = got[0]
    expect_eq(tot, total, "the %s body's length in its spliced line" % what)
    if sp < min(total // 2, 1 << 20) or sp > total:
        raise Fail("the %s body: spliced %d of %d" % (what, sp, total))
    return "%s body spliced %d of %d" % (what, sp, total)


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
    note = offload(srv, ctr, mark, port)
    if kind == "bytes":
        note += ", " + spliced(srv, mark, port, "response", SIZE)
    return note


def c_upload(srv, version, cipher):
    ctr = suite_common.Counters()
    mark = srv.mark()
    t = T()
    with connect(srv, version, cipher) as c:
        tp.upload(t, c, "/p/upload", SIZE, "upload")
        port = c.local_port
    return offload(srv, ctr, mark, port) + ", " + spliced(srv, mark, port, "request", SIZE)


PIPE_BODY = (1 << 20) + 100    # its last record also carries the next requests


def c_pipelined(srv, version, cipher):
    """POST (PIPE_BODY, Content-Length) + GET + GET: the head and 64 KiB
    of the body first, so that the splice is under way; then the rest of
    the body and both GETs in one write (Python's ssl cuts it into 16 KiB
    records: the body's last bytes and the GETs share one)."""
    ctr = suite_common.Counters()
    mark = srv.mark()
    t = T()
    body = up.pattern(PIPE_BODY, 1)
    first = 64 << 10
    with connect(srv, version, cipher) as c:
        c.send(rt.request("POST", "/p/upload", headers=["Content-Length: %d" % PIPE_BODY],
                             host=tp.HOST) + body[:first])
        time.sleep(2.0)
        c.send(body[first:] + rt.request("GET", "/p/bytes/100000", host=tp.HOST)
               + rt.request("GET", "/p/echo", host=tp.HOST))
        r1 = c.response()
        r2 = c.response(keep=False)
        r3 = c.response()
        t.eq((r1.status, r2.status, r3.status), (200, 200, 200), "three answers")
        j = r1.json()
        t.eq((j["body_len"], j["body_sha256"]), (PIPE_BODY, up.pattern_sha(PIPE_BODY, 1)),
             "the POST body whole upstream")
        t.eq((r2.n, r2.sha), (100000, up.pattern_sha(100000)), "the GET after the body")
        t.eq(r3.json()["method"], "GET", "the third request, the echo")
        port = c.local_port
    return offload(srv, ctr, mark, port) + ", " + spliced(srv, mark, port, "request", PIPE_BODY)


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
            check(only, "proxy %d MB download %s: sha256, body spliced, kernel TX/RX"
                  % (SIZE >> 20, what), c_download, srv, version, cipher)
            check(only, "proxy %d MB upload %s: sha256 upstream, body spliced, kernel TX/RX"
                  % (SIZE >> 20, what), c_upload, srv, version, cipher)
        for version, cipher in VERSIONS:
            what = "TLSv%s%s" % (version, " " + cipher if cipher else "")
            check(only, "proxy pipelined after a spliced body %s: the record split at the "
                  "body's end, three answers, kernel TX/RX" % what, c_pipelined, srv, version,
                  cipher)
        check(only, "proxy %d MB chunked download TLSv1.3 (chunks passed through): sha256, "
              "kernel TX/RX" % (SIZE >> 20), c_download, srv, "1.3", None, "chunked")
        stop_server(srv)

    def cleanup():
        if backend:
            backend.close()

    return run_suite("proxy-suite-", body, cleanup)


if __name__ == "__main__":
    sys.exit(main())
