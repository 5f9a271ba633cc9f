#!/usr/bin/env python3
"""A reactor whose ring fails stops the server cleanly, live connections
and all. strace injects EIO into io_uring_enter from its Nth call on,
while TLS keep-alive connections are open: ringtls must log the error once,
exit 1 (not a crash), and free every connection it still held on the way
out, its TLS state and keys included (rtls__conn_orphan). The freeing is
what valgrind.integration checks here: a connection's SSL object left
behind is a definitely lost block there, and fails it.

Needs strace (a SKIP without it)."""
import os
import shutil
import signal
import socket
import ssl
import tempfile

import rtls_test as rt
import tls_util as tu

# io_uring_enter calls before the failure: start-up takes a few, each
# request one or two (more under valgrind, which waits in poll(2) and
# submits separately); enough for several connections either way.
FAIL_AT = 120 if rt.UNDER_VALGRIND else 40
MAX_CONNS = 200


def test(t):
    if not shutil.which("strace"):
        raise rt.Skip("strace is not installed")
    env = dict(os.environ)
    # LeakSanitizer cannot run under ptrace; ASan's other checks still do.
    env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS", ""), "detect_leaks=0") if x)
    state = tempfile.mkdtemp(prefix="rtls-ring-error-")
    # The backend's wait: io_uring_enter, or epoll_wait on the epoll pass.
    call = "epoll_wait" if os.environ.get("RINGTLS_BACKEND") == "epoll" else "io_uring_enter"
    p = rt.Process(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=" + call,
                    "-e", "inject=%s:error=EIO:when=%d+" % (call, FAIL_AT),
                    rt.RINGTLS_BIN, "serve", "--threads", "1", "--listen", "127.0.0.1:0",
                    "--tls-listen", "127.0.0.1:0", "--state-dir", state, "--log-level", "info"],
                   name="ringtls", env=env)
    _, tls_port = p.wait_ports(rt.LISTEN_RE, tu.HTTPS_LISTEN_RE, timeout=rt.START_TIMEOUT)
    ctx = tu.client_ctx(verify=False)
    held, served = [], 0
    # ringtls is strace's child: stopping strace (the test's cleanup) would
    # leave it running, detached. Its PID, to stop it too.
    traced = []
    try:
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            traced = [int(x) for x in f.read().split()]
    except OSError:
        pass
    try:
        for _ in range(MAX_CONNS):
            try:
                s = socket.create_connection(("127.0.0.1", tls_port), timeout=rt.scaled(3))
                c = ctx.wrap_socket(s, server_hostname="localhost")
                held.append(c)
                c.sendall(tu.req("/hello"))
                if tu.HELLO not in c.recv(4096):
                    break
                served += 1
            except (OSError, ssl.SSLError):
                break
        rc = p.wait(20)
    finally:
        for c in held:
            c.close()
        # Only while strace runs: it has not reaped ringtls, so the PID
        # is still ringtls's, not reused.
        for pid in traced if p.alive() else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    log = p.log()
    t.check(served >= 2, "TLS connections served and held open before the ring failed: %d" % served)
    t.eq(rc, 1, "exit status after the ring error")
    t.eq(sum("error reactor 0: Input/output error" in l for l in log.splitlines()), 1,
         "log lines naming the reactor's ring error")
    t.check("AddressSanitizer" not in log and "runtime error" not in log,
            "no sanitizer report: %s" % log[-600:])


if __name__ == "__main__":
    rt.main(test)
