#!/usr/bin/env python3
"""A client that stops reading a large response is cut off after the idle
time (the idle timer also bounds a stalled send), with one log line; a
slow but steady reader is not; other connections are untouched."""
import socket
import time

import rtls_test as rt

BIG = 64 * 1024 * 1024


def get_big(srv, rcvbuf=4096):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(srv.addr)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


def closed_by_server(s, deadline):
    """Drains what is buffered until the server has closed, or deadline."""
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if not s.recv(1 << 20):
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            pass
    return False


def test(t):
    base, root = rt.make_root({"big.bin": b"\0" * BIG})
    srv = rt.Server("--idle-timeout", "1s", root=root)

    stalled = get_big(srv)
    time.sleep(0.2)
    # A steady reader: 1 MiB every 200 ms never stays idle for 1 s.
    steady = get_big(srv, rcvbuf=1 << 20)
    start = time.monotonic()
    got = 0
    steady.settimeout(5)
    while got < 8 * (1 << 20):
        chunk = steady.recv(1 << 20)
        t.check(chunk, "steady reader: data keeps coming")
        if not chunk:
            break
        got += len(chunk)
        time.sleep(0.2)
    t.check(time.monotonic() - start > 1.2, "steady reader ran longer than the idle time")

    # The stalled one has read nothing for well over the idle time.
    t.check(closed_by_server(stalled, time.monotonic() + 5), "stalled reader is cut off")
    lines = [l for l in srv.log_lines() if "stopped reading" in l]
    t.eq(len(lines), 1, "one log line for the stalled reader")
    # The steady reader is still being served.
    chunk = steady.recv(1 << 16)
    t.check(len(chunk) > 0, "steady reader still served after the other was cut")
    steady.close()
    code = rt.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", srv.url("/big.bin"),
                   "-r", "0-9").stdout
    t.eq(code.decode() if isinstance(code, bytes) else code, "206", "a new connection works")
    t.eq(srv.stop(), 0, "server exits 0")


if __name__ == "__main__":
    rt.main(test)
