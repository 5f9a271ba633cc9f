#!/usr/bin/env python3
"""Connection limits and connection churn: --max-conns refuses promptly and
frees slots on close; hundreds of connections ended in every way leave the
server healthy with no slot leaked."""
import socket
import struct
import time

import rtls_test as rt

HELLO = b"Hello, World!"
BIG = rt.pattern_bytes(1 << 20, seed=9)


def hello_on(t, c, what):
    c.send(rt.request("GET", "/hello"))
    r = c.read_response()
    return t.eq((r.status, r.body), (200, HELLO), what)


def rst_close(sock):
    """Close with a reset instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def connect_served(s, timeout=3.0):
    """Polls until a new connection is served; returns it (open) or None.
    A slot frees once the server has seen the previous connection end, so
    a connection made just after another one closed may still be refused."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < rt.scaled(timeout):
        c = None
        try:
            c = s.connect(timeout=1)
            c.send(rt.request("GET", "/hello"))
            if c.read_response().body == HELLO:
                return c
        except (OSError, rt.ConnClosed):
            pass
        if c:
            c.close()
        time.sleep(0.05)
    return None


def new_conn_works(s, timeout=3.0):
    """Polls until a new connection is served; returns seconds taken or None."""
    t0 = time.monotonic()
    c = connect_served(s, timeout)
    if c is None:
        return None
    c.close()
    return time.monotonic() - t0


def test_limit(t):
    s = rt.Server("--max-conns", "4", threads=1)
    conns = [s.connect() for _ in range(4)]
    for i, c in enumerate(conns):
        hello_on(t, c, "connection %d of 4 served" % (i + 1))
    # The fifth is accepted by the kernel but closed by the server at once.
    with s.connect() as c5:
        t0 = time.monotonic()
        closed = c5.closed_by_peer(2)
        t.check(closed, "5th connection is closed by the server")
        t.check(time.monotonic() - t0 < 1.0, "5th connection closed promptly (%.2f s)" % (time.monotonic() - t0))
    t.check(s.wait_log(r"reactor 0: 4 connections, the limit: refusing", 2) is not None,
            "log: the limit is reported")
    for i, c in enumerate(conns):
        hello_on(t, c, "connection %d still served after the refusal" % (i + 1))
    # Close one (FIN): a new connection then works.
    conns.pop(0).close()
    dt = new_conn_works(s)
    t.check(dt is not None, "after closing one, a new connection is served")
    t.check(dt is not None and dt < 1.0, "the freed slot is reusable promptly (%s s)" % dt)
    c = connect_served(s)
    t.check(c is not None, "replacement connection served")
    conns.append(c or s.connect())
    with s.connect() as c6:
        t.check(c6.closed_by_peer(2), "at the limit again: next connection closed")
    # Close one with a reset this time.
    rst_close(conns.pop(0).sock)
    dt = new_conn_works(s)
    t.check(dt is not None and dt < 1.0, "after a reset, the slot is reusable promptly (%s s)" % dt)
    for c in conns:
        c.close()
    t.eq(s.stop(), 0, "--max-conns 4 server exit status")


def churn_one(s, kind):
    """Opens a connection and ends it in one of several ways."""
    c = s.connect(timeout=3)
    try:
        if kind == 0:                       # connect, FIN
            c.close()
        elif kind == 1:                     # connect, RST
            rst_close(c.sock)
        elif kind == 2:                     # half a head, FIN
            c.send(b"GET /hello HTTP/1.1\r\nHo")
            c.close()
        elif kind == 3:                     # whole request, close without reading
            c.send(rt.request("GET", "/big.bin"))
            c.close()
        elif kind == 4:                     # request, response, FIN
            c.send(rt.request("GET", "/hello"))
            c.read_response()
            c.close()
        elif kind == 5:                     # half a head, RST
            c.send(b"GET /hel")
            rst_close(c.sock)
        elif kind == 6:                     # reset in the middle of a 1 MiB body
            c.send(rt.request("GET", "/big.bin"))
            c.read_exact(64 * 1024)
            rst_close(c.sock)
        elif kind == 7:                     # an error (400), not read
            c.send(b"BROKEN\r\n\r\n")
            c.close()
        elif kind == 8:                     # pipelined requests, FIN after the first answer
            c.send(rt.request("GET", "/big.bin") * 3)
            c.read_response()
            c.close()
        else:                               # half-close, then read the answer
            c.send(rt.request("GET", "/hello"))
            c.sock.shutdown(socket.SHUT_WR)
            c.read_response()
            c.read_to_eof()
            c.close()
    except OSError:
        c.close()
        raise


def test_churn(t, root):
    limit = 16
    s = rt.Server("--max-conns", str(limit), root=root, threads=1)
    errors = []
    for i in range(200):
        try:
            churn_one(s, i % 10)
        except (OSError, rt.ConnClosed) as e:
            errors.append((i, i % 10, repr(e)))
        if i % 10 == 9:
            time.sleep(0.02)
    t.eq(errors, [], "churn: client-side errors (connection, kind, error)")
    t.check(s.alive(), "churn: server still running")
    # No slot leaked: all `limit` slots can be held at once again.
    time.sleep(0.3)
    conns = []
    ok = 0
    t0 = time.monotonic()
    while len(conns) < limit and time.monotonic() - t0 < 5:
        c = s.connect()
        try:
            c.send(rt.request("GET", "/hello"))
            if c.read_response().body == HELLO:
                conns.append(c)
                ok += 1
                continue
        except (OSError, rt.ConnClosed):
            pass
        c.close()
        time.sleep(0.1)   # a slot still lingering: try again shortly
    t.eq(ok, limit, "after 200 churned connections, %d connections held at once" % limit)
    for c in conns:
        c.close()
    t.check(s.wait_log(r"limit: refusing", 0) is None, "churn: the limit was never reached")
    t.eq(s.stop(), 0, "churn server exit status")


def test_burst(t):
    """200 connections opened and closed quickly on a default server."""
    s = rt.Server(threads=None)
    conns = []
    for i in range(200):
        conns.append(s.connect())
    for i, c in enumerate(conns):
        if i % 2:
            rst_close(c.sock)
        else:
            c.close()
    r = rt.get(s, "/hello")
    t.eq((r.status, r.body), (200, HELLO), "after 200 quick connections: /hello")
    # 200 at once, every one answered.
    conns = [s.connect() for _ in range(200)]
    for c in conns:
        c.send(rt.request("GET", "/hello"))
    answered = sum(1 for c in conns if c.read_response().body == HELLO)
    t.eq(answered, 200, "200 concurrent connections answered")
    for c in conns:
        c.close()
    t.eq(rt.get(s, "/hello").body, HELLO, "still healthy afterwards")
    t.check(s.wait_log(r" (warn|error) ", 0) is None, "no warnings or errors logged")
    t.eq(s.stop(), 0, "default server exit status")


def test(t):
    _, root = rt.make_root({"big.bin": BIG})
    test_limit(t)
    test_churn(t, root)
    test_burst(t)


if __name__ == "__main__":
    rt.main(test)
