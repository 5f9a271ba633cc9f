"""Helpers for the abuse tests (test_abuse_*.py, test_catalogue.py): one
server with a plaintext and a TLS listener, and readings of its
descriptors, memory and CPU time from /proc. Builds on rtls_test and
tls_util; stdlib only."""
import os
import re
import resource
import time

import rtls_test as rt
import tls_util as tu

HTTP_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(http\)")
HTTPS_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class DualServer(rt.Process):
    """ringtls serve --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0, one
    reactor unless told; .port (plaintext) and .tls_port. `launcher` is an
    argv prefix that execs the server (prlimit), so .pid is the server's."""

    def __init__(self, *args, root=None, threads=1, log_level="info", launcher=(), state_dir=None):
        self.state_dir = state_dir or rt.temp_dir("rtls-state-")
        argv = [*launcher, rt.RINGTLS_BIN, "serve", "--listen", "127.0.0.1:0",
                "--tls-listen", "127.0.0.1:0", "--state-dir", self.state_dir,
                "--threads", str(threads), "--log-level", log_level]
        if root:
            argv += ["--root", root]
        argv += [str(a) for a in args]
        super().__init__(argv, name="ringtls")
        self.port, self.tls_port = self.wait_ports(HTTP_RE, HTTPS_RE, timeout=rt.START_TIMEOUT)
        if log_level in ("info", "debug"):
            # The start's last line comes just after the listeners': a test
            # that counts log lines from here on must not count it (seen
            # under valgrind, where it came after the first request).
            self.wait_log(r"reactor\(s\), serving", timeout=10.0)

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    @property
    def tls_addr(self):
        return ("127.0.0.1", self.tls_port)

    def connect(self, timeout=rt.IO_TIMEOUT):
        return rt.Conn(self.addr, timeout)

    def tls_connect(self, timeout=rt.IO_TIMEOUT):
        return tu.TlsConn(self.tls_port, timeout=timeout)

    def mark(self):
        return len(self.log_lines())

    def lines_since(self, mark):
        return self.log_lines()[mark:]

    def cpu_seconds(self):
        """utime + stime of all the server's threads, in seconds."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def nofile_limit(self):
        with open("/proc/%d/limits" % self.pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return int(soft), int(hard)
        return None


def wait_fd_count(s, want, timeout=5.0):
    """Polls until the server holds `want` descriptors; returns the last count."""
    end = time.monotonic() + rt.scaled(timeout)
    n = s.fd_count()
    while n != want and time.monotonic() < end:
        time.sleep(0.05)
        n = s.fd_count()
    return n


def settled_fd_count(s, quiet=0.3, timeout=5.0):
    """The server's descriptor count once it has not changed for `quiet` s
    (a client's close reaches the server a moment later)."""
    end = time.monotonic() + rt.scaled(timeout)
    n, since = s.fd_count(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        m = s.fd_count()
        if m != n:
            n, since = m, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return n


def wait_until(fn, timeout=5.0, step=0.05):
    end = time.monotonic() + rt.scaled(timeout)
    while True:
        v = fn()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def raise_nofile(need):
    """Raises this process's soft RLIMIT_NOFILE to `need` (children inherit
    it); False if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return True
    if hard != resource.RLIM_INFINITY and hard < need:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return True
