#!/usr/bin/env python3
"""examples/echo: the engine API end to end. 100 KB round trip, several
clients at once, half-close, and a clean exit on SIGTERM."""
import os
import socket
import threading
import time

import rtls_test as rt

SIZE = 100 * 1024


def start_echo():
    """echo needs a fixed ADDR:PORT: take a port that was free a moment ago
    (a small race, retried) and wait until it accepts connections."""
    for _ in range(3):
        port = rt.free_port()
        p = rt.Process([rt.ECHO_BIN, "127.0.0.1:%d" % port], name="echo")
        end = time.monotonic() + rt.START_TIMEOUT
        while time.monotonic() < end and p.alive():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return p, port
            except OSError:
                time.sleep(0.02)
        rc = p.stop(timeout=5)
        if "Address already in use" not in p.log():
            raise RuntimeError("echo did not start (exit %s):\n%s" % (rc, p.log()))
    raise RuntimeError("echo: no free port after 3 tries")


def round_trip(port, data, chunk=4096, results=None, key=None):
    """Sends data from a thread while reading; half-closes; reads to EOF."""
    c = rt.Conn(("127.0.0.1", port), timeout=10)
    err = []

    def sender():
        try:
            for i in range(0, len(data), chunk):
                c.sock.sendall(data[i:i + chunk])
            c.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    got = c.read_to_eof()
    th.join(10)
    c.close()
    out = (got, err, c.local_port)
    if results is not None:
        results[key] = out
    return out


def test(t):
    rt.need_binary(rt.ECHO_BIN, "echo")
    p, port = start_echo()
    data = os.urandom(SIZE)
    got, err, lport = round_trip(port, data)
    t.eq(err, [], "100 KB: sender errors")
    t.eq(len(got), SIZE, "100 KB: bytes echoed")
    t.eq(rt.sha256(got), rt.sha256(data), "100 KB: sha256 of the echo")
    t.check(p.wait_log(r"closed after %d bytes \(0\)" % SIZE, 3) is not None,
            "log: closed after %d bytes (0)" % SIZE)

    # Several clients at once, each with its own data and write size.
    results = {}
    datas = {i: os.urandom(SIZE + i * 1000) for i in range(6)}
    threads = [threading.Thread(target=round_trip, args=(port, datas[i], 1000 + 3000 * i, results, i),
                                daemon=True) for i in datas]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    for i, d in datas.items():
        got, err, _ = results.get(i, (b"", ["no result"], 0))
        t.eq((err, len(got)), ([], len(d)), "client %d: errors and length" % i)
        t.eq(rt.sha256(got), rt.sha256(d), "client %d: sha256" % i)

    # Small exchanges on one connection, interleaved.
    with rt.Conn(("127.0.0.1", port)) as c:
        for i in range(20):
            msg = b"ping %d\n" % i
            c.send(msg)
            t.eq(c.read_exact(len(msg)), msg, "ping %d echoed" % i)
    t.eq(p.stop(), 0, "echo exit status after SIGTERM")
    t.check("open (plain)" in p.log(), "log: open (plain)")


if __name__ == "__main__":
    rt.main(test)
