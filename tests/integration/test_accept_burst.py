#!/usr/bin/env python3
"""A burst of connections larger than the completion queue: the multishot
accept may end after a success when the kernel cannot post its next
completion, and the listener must then be armed again, or the server never
accepts another connection. The server runs with --ring-entries 8 (64
completions) and is stopped (SIGSTOP) while the burst queues in the
listen backlog; after SIGCONT every connection must be answered."""
import os
import selectors
import signal
import socket
import time

import rtls_test as rt

N = 200 if os.environ.get("RTLS_UNDER_VALGRIND") else 1500
REQ = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
HELLO = b"Hello, World!"


def answered(socks, deadline):
    """Reads until every socket has its response or the deadline passes;
    returns how many got one."""
    sel = selectors.DefaultSelector()
    got = {}
    for so in socks:
        so.setblocking(False)
        sel.register(so, selectors.EVENT_READ)
        got[so] = b""
    done = 0
    while done < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            so = key.fileobj
            try:
                d = so.recv(4096)
            except OSError:
                d = b""
            got[so] += d
            if not d or got[so].endswith(HELLO):
                sel.unregister(so)
                done += got[so].endswith(HELLO)
                if not d:
                    continue
    sel.close()
    return sum(1 for v in got.values() if v.endswith(HELLO))


def test(t):
    s = rt.Server("--ring-entries", "8")
    with s.connect() as c:
        c.send(REQ)
        t.eq(c.read_response().body, HELLO, "served before the burst")
    os.kill(s.pid, signal.SIGSTOP)
    socks = []
    try:
        for _ in range(N):
            so = socket.create_connection(s.addr, timeout=10)
            so.sendall(REQ)
            socks.append(so)
    finally:
        os.kill(s.pid, signal.SIGCONT)
    n = answered(socks, time.monotonic() + rt.scaled(30))
    t.eq(n, N, "every connection of the burst answered")
    for so in socks:
        so.close()
    with s.connect() as c:
        c.send(REQ)
        t.eq(c.read_response().body, HELLO, "a new connection after the burst is served")
    t.eq([l for l in s.log_lines() if " warn " in l or " error " in l], [],
         "no warning or error logged")
    t.eq(s.stop(), 0, "clean exit")


if __name__ == "__main__":
    rt.main(test)
