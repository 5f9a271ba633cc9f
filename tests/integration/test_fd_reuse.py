#!/usr/bin/env python3
"""A closed connection's socket number is reused at once by the next
accept (the reactors share one fd table). A send, splice or receive that a
reactor had prepared for a connection it then killed in the same round must
not reach the new connection that got the same number: clients that reset
their connection right after a request run beside clients that check every
byte they get, on plaintext and TLS, with two reactors."""
import multiprocessing as mp
import os
import socket
import ssl
import struct
import time

import rtls_test as rt
import tls_util as tu

SECONDS = 15
BIG = 256 * 1024
HELLO_RESPONSE_END = b"\r\n\r\nHello, World!"


def resetter(port, tls_port, deadline, ctx):
    """Requests a file (plain or TLS), then resets the connection at once."""
    i = 0
    while time.monotonic() < deadline:
        i += 1
        raw = socket.create_connection(("127.0.0.1", tls_port if i % 3 == 0 else port), timeout=5)
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost") if i % 3 == 0 else raw
            s.sendall(rt.request("GET", "/big.bin") * (1 + i % 3))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        finally:
            raw.close()


def checker(port, tls_port, deadline, ctx, q):
    """Fresh connections, one request each; every byte must be ours."""
    bad = []
    n = 0
    while time.monotonic() < deadline and len(bad) < 3:
        n += 1
        tls = n % 2 == 0
        try:
            raw = socket.create_connection(("127.0.0.1", tls_port if tls else port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) \
                if tls else raw
            with s:
                s.sendall(rt.request("GET", "/hello", headers=["Connection: close"]))
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
            if not (data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(HELLO_RESPONSE_END)):
                bad.append("%s: got %r" % ("tls" if tls else "plain", data[:80]))
        except (OSError, ssl.SSLError) as e:
            bad.append("%s: %s: %s" % ("tls" if tls else "plain", type(e).__name__, e))
    q.put((n, bad))


def test(t):
    base, root = rt.make_root({"big.bin": os.urandom(BIG)})
    state = os.path.join(base, "state")
    s = rt.Process([rt.RINGTLS_BIN, "serve", "--listen", "127.0.0.1:0", "--tls-listen",
                    "127.0.0.1:0", "--state-dir", state, "--root", root, "--threads", "2"],
                   name="ringtls")
    m1 = s.wait_log(rt.LISTEN_RE.pattern, timeout=rt.START_TIMEOUT)
    m2 = s.wait_log(tu.HTTPS_LISTEN_RE.pattern, timeout=rt.START_TIMEOUT)
    if not (m1 and m2):
        raise RuntimeError("ringtls did not start:\n" + s.log())
    port, tls_port = int(m1.group(1)), int(m2.group(1))
    ctx = tu.client_ctx(verify=True, cafile=os.path.join(state, "selfsigned-cert.pem"))
    mpc = mp.get_context("fork")
    q = mpc.Queue()
    deadline = time.monotonic() + SECONDS
    procs = [mpc.Process(target=resetter, args=(port, tls_port, deadline, ctx)) for _ in range(3)]
    procs += [mpc.Process(target=checker, args=(port, tls_port, deadline, ctx, q)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=SECONDS + 60) for _ in range(3)]
    for p in procs:
        p.join(timeout=30)
    total = sum(n for n, _ in results)
    bad = [b for _, bs in results for b in bs]
    t.check(total > 50, "checkers made %d requests (want > 50)" % total)
    t.check(not bad, "foreign or missing bytes on a fresh connection: %s" % bad[:3])
    t.check(s.alive(), "server still running")
    t.eq(s.stop(), 0, "server exit status")


if __name__ == "__main__":
    rt.main(test, watchdog=SECONDS + 120)
