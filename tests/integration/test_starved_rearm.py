#!/usr/bin/env python3
"""A connection whose receive ran out of buffers (ENOBUFS) is re-armed
when buffers come back, not on every loop iteration (issue 13, part 1).

tests/integration/hold.c runs one reactor with 8 receive buffers; its
handler keeps every buffer of a connection that starts with 'H' until
that connection has been idle for HOLD_MS. The test:
- has connection A take all 8 buffers ("held 8");
- sends "ping" on connection B, whose receive then fails with ENOBUFS;
- while A holds the buffers, the server's CPU stays near zero (it used to
  re-arm B's receive on every loop iteration: a busy loop at 100%);
- when A's buffers go back, B's "ping" is echoed (B was re-armed)."""
import re
import socket
import time

import rtls_test as rt
import abuse_util as au

HOLD_MS = int(min(rt.scaled(2500), 8000))  # room for the checks below, also under load
CPU_MAX = 0.25            # fraction of one core while B is starved
LISTEN = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def read_line(so):
    buf = b""
    while not buf.endswith(b"\n"):
        d = so.recv(1)
        if not d:
            raise rt.ConnClosed("closed")
        buf += d
    return buf.decode()


def test(t):
    rt.need_binary(rt.HOLD_BIN, "the hold test server")
    p = rt.Process([rt.HOLD_BIN, str(HOLD_MS)], name="hold")
    port, = p.wait_ports(LISTEN, timeout=rt.START_TIMEOUT)
    cpu = au.DualServer.cpu_seconds.__get__(p)   # same /proc reading

    a = socket.create_connection(("127.0.0.1", port), timeout=rt.IO_TIMEOUT)
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(1, 9):
        a.sendall(b"H")               # one segment, one receive buffer
        t.eq(read_line(a), "held %d\n" % i, "A holds buffer %d" % i)
    b = socket.create_connection(("127.0.0.1", port), timeout=rt.IO_TIMEOUT)
    b.sendall(b"ping")
    time.sleep(0.2)                   # B's receive has failed with ENOBUFS
    c0, w0 = cpu(), time.monotonic()
    time.sleep(1.0)
    frac = (cpu() - c0) / (time.monotonic() - w0)
    print("server CPU while B is starved: %.0f%% of a core" % (frac * 100))
    t.check(frac <= CPU_MAX * rt.TIME_SCALE,
            "server CPU %.0f%% of a core while a receive waits for buffers (max %.0f%%)"
            % (frac * 100, CPU_MAX * 100 * rt.TIME_SCALE))
    b.settimeout(0.05)
    try:
        early = b.recv(16)
    except socket.timeout:
        early = b""
    t.eq(early, b"", "B answered while every buffer was held")
    # A's buffers go back HOLD_MS after its last byte; then B is re-armed.
    a.settimeout(rt.scaled(HOLD_MS / 1000 + 3))
    t.eq(read_line(a), "released\n", "A's buffers given back")
    b.settimeout(rt.scaled(3.0))
    got = b""
    try:
        while len(got) < 4:
            d = b.recv(16)
            if not d:
                break
            got += d
    except socket.timeout:
        pass
    t.eq(got, b"ping", "B's input delivered once buffers came back")
    a.close()
    b.close()
    t.check(p.alive(), "server alive")


if __name__ == "__main__":
    rt.main(test)
