#!/usr/bin/env python3
"""A connection flood past the descriptor limit. The server runs under
RLIMIT_NOFILE 256 (soft and hard: `ringtls serve` raises its soft limit to
the hard one) with a plaintext and a TLS listener; 400 connections are
opened and held, more than fit. Then:
- accepts back off instead of spinning: the server's CPU time over 3 s
  saturated is under 10% of one core, and the log says so once (no line
  per retry);
- a static file asked for while descriptors are out is 503, not 404/500:
  with one descriptor left (open works, the splice pipe does not) on
  plaintext, and with none left on plaintext and on TLS;
- the server stays up; once the held connections close, new plaintext
  and TLS requests are served within 2 s, the log says accepting resumed,
  and the descriptor count is back to its baseline."""
import shutil
import socket
import time

import abuse_util as au
import rtls_test as rt
import tls_util as tu

LIMIT = 256
FLOOD = 400
BODY = rt.pattern_bytes(64 * 1024, seed=7)


def get_on(c, target):
    c.send(rt.request("GET", target))
    return c.read_response()


def expect_503(t, r, what):
    t.eq((r.status if r else None, r.body if r else None), (503, b"503 Service Unavailable\n"),
         "%s: 503 Service Unavailable" % what)


def fill_to(t, s, want, socks):
    """Opens plain connections one at a time until the server holds `want`
    descriptors (no connection left waiting in the listen queue)."""
    n = s.fd_count()
    while n < want:
        so = socket.create_connection(s.addr, timeout=5)
        socks.append(so)
        n = au.wait_until(lambda: s.fd_count() > n and s.fd_count(), 2.0) or s.fd_count()
    return t.eq(s.fd_count(), want, "filled the server to %d descriptors" % want)


def test(t):
    if not shutil.which("prlimit"):
        raise rt.Skip("prlimit (util-linux) not installed")
    if rt.UNDER_VALGRIND:
        # Valgrind keeps a dozen descriptors of its own at the top of the
        # process's RLIMIT_NOFILE and lowers the limit ringtls sees, so
        # "exactly one descriptor left" cannot be arranged from outside.
        raise rt.Skip("valgrind: its own descriptors share the server's RLIMIT_NOFILE")
    base, root = rt.make_root({"f.bin": BODY})
    s = au.DualServer(root=root, launcher=["prlimit", "--nofile=%d:%d" % (LIMIT, LIMIT)])
    t.eq(s.nofile_limit(), (LIMIT, LIMIT), "the server runs under RLIMIT_NOFILE %d" % LIMIT)

    # Probes, connected while there is room: two plaintext, one TLS.
    p1, p2 = s.connect(), s.connect()
    t1 = s.tls_connect()
    for what, c in (("plaintext probe", p1), ("plaintext probe 2", p2)):
        t.eq(get_on(c, "/hello").body, b"Hello, World!", "%s: served before the flood" % what)
    r = t1.request("/f.bin")
    t.eq((r.status, r.body == BODY), (200, True), "TLS probe: the file before the flood")
    base_fds = au.settled_fd_count(s)
    held = []

    # One descriptor left: the file opens, its splice pipe cannot. No
    # plaintext file was sent yet, so the reactor has no spare pipe.
    if fill_to(t, s, LIMIT - 1, held):
        mark = s.mark()
        r = get_on(p1, "/f.bin")
        expect_503(t, r, "one descriptor left, plaintext file (no splice pipe)")
        t.check(p1.closed_by_peer(3), "one descriptor left: the connection is closed after the 503")
        lines = [l for l in s.lines_since(mark) if " 503 " in l]
        t.check(len(lines) == 1 and "splice pipe" in lines[0],
                "one descriptor left: one log line naming the splice pipe: %r" % lines)
    p1.close()

    # The flood: more connections than descriptors.
    mark = s.mark()
    for _ in range(FLOOD):
        so = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        so.settimeout(5)
        so.connect(s.addr if len(held) % 4 else s.tls_addr)
        held.append(so)
    t.eq(au.wait_fd_count(s, LIMIT, 5), LIMIT, "the server filled its %d descriptors" % LIMIT)
    t.check(au.wait_until(lambda: any("pausing accepts" in l for l in s.lines_since(mark)), 3),
            "log: accepts paused")

    # Out of descriptors: open() fails. 503 on plaintext and on TLS.
    r = get_on(p2, "/f.bin")
    expect_503(t, r, "no descriptor left, plaintext file")
    t.check(p2.closed_by_peer(3), "no descriptor left: the connection is closed after the 503")
    p2.close()
    time.sleep(0.3)    # the freed descriptor goes to the next queued connection
    t.eq(au.wait_fd_count(s, LIMIT, 2), LIMIT, "the descriptors are all taken again")
    try:
        r = t1.request("/f.bin")
        expect_503(t, r, "no descriptor left, TLS file")
    except (OSError, EOFError) as e:
        t.check(False, "no descriptor left, TLS file: %s: %s" % (type(e).__name__, e))
    t1.close()

    # Saturated: the server backs off. CPU over 3 s, and the log.
    time.sleep(0.5)
    cpu0, w0 = s.cpu_seconds(), time.monotonic()
    time.sleep(3.0)
    cpu, wall = s.cpu_seconds() - cpu0, time.monotonic() - w0
    t.check(cpu < 0.10 * wall, "saturated: server CPU %.2f s over %.1f s (< 10%% of a core)" % (cpu, wall))
    t.check(s.alive(), "saturated: the server is running")
    accept_lines = [l for l in s.lines_since(mark) if "accept" in l]
    t.eq(len(accept_lines), 1, "saturated: accept lines in the log, not one per retry nor per "
         "freed descriptor: %r" % accept_lines[:5])
    t.eq(s.fd_count(), LIMIT, "saturated: still at the limit")

    # Release: service resumes.
    mark = s.mark()
    for so in held:
        so.close()
    t0 = time.monotonic()
    ok = None
    while ok is None and time.monotonic() - t0 < 2.0:
        try:
            with s.connect(timeout=1) as c:
                if get_on(c, "/f.bin").body == BODY:
                    ok = time.monotonic() - t0
        except (OSError, rt.ConnClosed):
            time.sleep(0.05)
    t.check(ok is not None, "after release: a plaintext file is served within 2 s (%s)" % ok)
    try:
        with s.tls_connect() as c:
            t.eq(c.request("/f.bin").body, BODY, "after release: a TLS file is served")
    except (OSError, EOFError) as e:
        t.check(False, "after release: TLS: %s: %s" % (type(e).__name__, e))
    # The episode ends at the first accept a second after the last failure.
    time.sleep(1.1)
    with s.connect() as c:
        t.eq(get_on(c, "/hello").status, 200, "after release: a request 1 s later")
    resumed = [l for l in s.lines_since(mark) if "accept" in l]
    t.check(len(resumed) == 1 and "accepting again" in resumed[0],
            "log: one line says accepting resumed: %r" % resumed)
    # The probes are closed; what is left are the listeners and friends
    # plus, now, one pooled splice pipe (2 descriptors).
    n = au.wait_fd_count(s, base_fds - 3 + 2, 5)
    t.check(n in (base_fds - 3, base_fds - 3 + 2),
            "after release: descriptors back to the baseline (%d, baseline %d without the 3 probes)"
            % (n, base_fds - 3))
    t.eq(s.stop(), 0, "exit status after SIGTERM")


if __name__ == "__main__":
    tu.main(test)
