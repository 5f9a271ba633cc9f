#!/usr/bin/env python3
"""TCP urgent data (MSG_OOB) in the middle of a request head. A read
stops short at the urgent mark with the rest of the head already queued
behind it; a server that took the short read for "the socket is empty"
would wait for another wake-up that never comes (the epoll backend's
shortcut did until EPOLLPRI counted: issue 18's review). The urgent byte
itself is not part of the stream (no SO_OOBINLINE): the head is whole
without it, and the answer must come at once, not at --header-timeout.
On both backends, several times (whether all three sends are queued
before the server reads depends on the scheduler)."""
import socket
import time

import rtls_test as rt

ROUNDS = 20
ANSWER_WITHIN = 3.0  # seconds; --header-timeout is 30 s


def one(t, s, i):
    c = socket.create_connection(s.addr, timeout=rt.scaled(ANSWER_WITHIN))
    try:
        t0 = time.monotonic()
        c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        c.send(b"!", socket.MSG_OOB)
        c.sendall(b"Connection: close\r\n\r\n")
        data = b""
        try:
            while b"Hello, World!" not in data:
                d = c.recv(4096)
                if not d:
                    break
                data += d
        except socket.timeout:
            pass
        took = time.monotonic() - t0
    finally:
        c.close()
    ok = data.startswith(b"HTTP/1.1 200 ") and b"Hello, World!" in data
    t.check(ok, "round %d: urgent byte mid-head: 200 and the body within %.0f s (got %r after %.1f s)"
            % (i, ANSWER_WITHIN, data[:40], took))
    return ok


def test(t):
    s = rt.Server("--header-timeout", "30s", threads=1)
    try:
        for i in range(ROUNDS):
            if not one(t, s, i):
                break
        t.check(s.alive(), "server still running")
    finally:
        t.eq(s.stop(), 0, "exit status")


if __name__ == "__main__":
    rt.main(test)
