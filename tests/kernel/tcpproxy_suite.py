#!/usr/bin/env python3
"""TCP mode (ringtls serve --tcp-proxy LISTEN=UPSTREAM) over kernel TLS
(python3 stdlib only; run inside a kTLS kernel by tests/kernel/run-kernel.sh).

    tcpproxy_suite.py               inside a kernel with kTLS
    tcpproxy_suite.py --only REGEX  run only the checks whose name matches

One ringtls with a --tcp-proxy listener per Python upstream in the same
guest (the upstreams, the half-closing client and the cases are those of
tests/integration/test_tcp_proxy.py):
- SIZE bytes both ways at once through an echo upstream, sha256 each
  way (TLS 1.3, and TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384);
- half-close client->upstream: the client's close_notify + FIN reach the
  upstream as a FIN; the upstream's 2 MiB after that reach the client,
  then close_notify;
- half-close upstream->client: the upstream's 1 MiB and FIN reach the
  client as data and close_notify; the client's 2 MiB after that reach
  the upstream;
- truncation: a FIN without close_notify reaches the upstream as a FIN
  after every byte, logged as "truncated (FIN without close_notify)";
- an upstream that resets mid-stream: the client's connection is reset
  (no close_notify), logged as "reset by us".
Each session's log line has the byte counts and both ends ("copied" or
"spliced" is not asserted here). Every check proves offload of both
client-side directions: /proc/net/tls_stat TlsTxSw and TlsRxSw rise by
exactly one (the client's connection; the upstream leg is plaintext),
TlsDecryptError does not move, and the server's debug line for the
connection says kernel-tx=yes kernel-rx=yes. On a kernel that cannot
rekey (6.1) the server gets --ktls-rx-no-rekey, as in ktls_suite.py.
Then a server with --ktls off: an echo session and a half-close move no
counter, the debug line says kernel-tx=no kernel-rx=no and the log line
says every byte was copied (the userspace path inside the same kernel).

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
import test_tcp_proxy as ttp  # noqa: E402

SIZE = 20 << 20
OFF_SIZE = 4 << 20       # the --ktls off session
IO_TIMEOUT = 120.0       # one wait in the slow guest
WATCHDOG = 800           # the whole suite (run-kernel.sh allows 900 s)
VERSIONS = (("1.3", None), ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"))
LISTEN_TLS_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")

ttp.WAIT = IO_TIMEOUT


class T:
    """The Checker interface test_tcp_proxy's cases use, raising on the
    first failed expectation."""

    def check(self, cond, msg):
        if not cond:
            raise Fail(msg)
        return True

    def eq(self, got, want, msg):
        expect_eq(got, want, msg)
        return True


def tcp_ports(srv, n):
    """The ports of the server's n --tcp-proxy listeners: its https
    listening lines after the --tls-listen one, in the order given."""
    end = time.monotonic() + suite_common.START_TIMEOUT
    while True:
        ports = [int(p) for p in LISTEN_TLS_RE.findall(srv.log())]
        if len(ports) >= n + 1:
            return ports[1:n + 1]
        if time.monotonic() > end or not srv.alive():
            raise Fail("the server did not log %d tcp-proxy listeners:\n%s" % (n, srv.log()))
        time.sleep(0.05)


def offload(srv, want, flags, case, *args):
    """Runs case(T(), srv, *args) (it returns the client's port, or a
    tuple that starts with it); then the tls_stat deltas must be `want`
    and the server's debug line of that connection say `flags`
    (kernel-tx, kernel-rx)."""
    ctr = suite_common.Counters()
    mark = srv.mark()
    got = case(T(), srv, *args)
    port = got[0] if isinstance(got, tuple) else got
    deltas = offload_deltas(ctr)
    expect_eq(deltas, want, "tls_stat deltas TlsTxSw/TlsRxSw/TlsDecryptError")
    lines = srv.conn_tls_lines(mark, port, 10)
    expect_eq([(l["ktx"], l["krx"]) for l in lines], [flags],
              "the server's debug line for the connection: kernel-tx, kernel-rx")
    extra = ""
    d = ttp.session(srv, port, timeout=1)
    if d and "unparsed" not in d:
        extra = ", client to upstream %s, upstream to client %s" % (d["to_up_how"],
                                                                   d["to_client_how"])
    if isinstance(got, tuple) and len(got) > 1:
        extra += ", the client saw %s" % (got[1],)
    return "TlsTxSw+%d TlsRxSw+%d TlsDecryptError+%d%s" % (deltas + (extra,))


def reset_case(t, s, port, up, what, how=None, ctx=None):
    """The upstream resets: the client's connection is reset."""
    cport, end = ttp.case_upstream_reset(t, s, port, up, what, how=how, ctx=ctx)
    t.eq(end, "reset", "%s: how the client's connection ended" % what)
    return cport, end


def off_case(t, s, port, up, what, how="copied", ctx=None):
    """--ktls off: echo, then a half-close, on the userspace path (every
    byte copied: nothing to splice without kTLS)."""
    ttp.case_echo(t, s, port[0], up[0], OFF_SIZE, what + ": echo", how=how, ctx=ctx)
    return ttp.case_half_client(t, s, port[1], up[1], what + ": half-close", how=how, ctx=ctx)


def main():
    only, full = suite_common.start_suite(__doc__, WATCHDOG)
    ups = []

    def body():
        echo = ttp.Upstream("echo", ttp.h_echo)
        sink = ttp.Upstream("sink", ttp.h_sink_then_send(ttp.HALF_BACK, 3))
        first = ttp.Upstream("first", ttp.h_send_then_sink(ttp.HALF_UP, 4))
        record = ttp.Upstream("record", ttp.h_record)
        reset = ttp.Upstream("reset", ttp.h_send_then_reset(ttp.RESET_AFTER, 7))
        ups.extend((echo, sink, first, record, reset))
        ttp.data(SIZE, 1)   # made once, outside the checks
        print("tcp-proxy suite: %s, kernel %s, server flags %s" % (
            RINGTLS_BIN, os.uname().release, full or "-"), flush=True)
        args = []
        for u in (echo, sink, first, record, reset):
            args += ["--tcp-proxy", "127.0.0.1:0=" + u.spec]
        srv = Server(*full, *args, name="ringtls-tcpproxy")
        p_echo, p_sink, p_first, p_record, p_reset = tcp_ports(srv, 5)
        on = ((1, 1, 0), ("yes", "yes"))
        for version, cipher in VERSIONS:
            what = "TLSv%s%s" % (version, " " + cipher if cipher else "")
            name = "tcp-proxy %d MB both ways via echo %s" % (SIZE >> 20, what)
            check(only, name + ": sha256 each way, log, kernel TX/RX", offload, srv, *on,
                  ttp.case_echo, p_echo, echo, SIZE, name, None, 1, client_ctx(version, cipher))
        ctx = client_ctx()
        for name, case, port, up in (
                ("half-close client->upstream", ttp.case_half_client, p_sink, sink),
                ("half-close upstream->client", ttp.case_half_upstream, p_first, first),
                ("truncation (FIN without close_notify)", ttp.case_truncation, p_record,
                 record),
                ("upstream reset -> client reset", reset_case, p_reset, reset)):
            check(only, "tcp-proxy %s TLSv1.3: data, ends, log, kernel TX/RX" % name, offload,
                  srv, *on, case, port, up, name, None, ctx)
        stop_server(srv)

        off = Server("--ktls", "off", "--tcp-proxy", "127.0.0.1:0=" + echo.spec,
                     "--tcp-proxy", "127.0.0.1:0=" + sink.spec, name="ringtls-tcpproxy-off")
        ports = tcp_ports(off, 2)
        check(only, "tcp-proxy --ktls off: %d MB echo and a half-close, no counter moves"
              % (OFF_SIZE >> 20), offload, off, (0, 0, 0), ("no", "no"), off_case, ports,
              (echo, sink), "--ktls off", "copied", ctx)
        stop_server(off)

    def cleanup():
        for u in ups:
            u.close()

    return run_suite("tcpproxy-suite-", body, cleanup)


if __name__ == "__main__":
    sys.exit(main())
