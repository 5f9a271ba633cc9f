#!/usr/bin/env python3
"""ringtls under the seccomp filters of a container, built with libseccomp
by tests/integration/seccomp_run.c (as runc and containerd build theirs):

(a) --deny-io-uring: everything allowed but io_uring_setup, io_uring_enter
    and io_uring_register, which fail with EPERM, as under Docker's default
    profile (since 25.0) and containerd's RuntimeDefault (since 2.0). With
    the backend left to auto (no --backend, no RINGTLS_BACKEND): one info
    line says why epoll, the start line ends "on epoll", and plaintext, TLS
    (Python ssl, the self-signed certificate), a 1 MiB file from --root
    (sha256), a Range request and HTTP/2 over TLS (curl --http2) are
    served; SIGTERM ends it with 0. `ringtls probe` says io_uring is not
    available and epoll is, and that auto picks epoll.
(b) --deny-io-uring with --backend io_uring: one error line naming
    io_uring, exit 1.
(c) --allow-file with the names of dist/container/seccomp-io_uring.json,
    every other call failing with EPERM like that profile's defaultAction:
    --backend io_uring and --backend epoll each serve plaintext, TLS and a
    file and survive a SIGHUP reload (the profile is complete for both
    backends); the same list less the three io_uring calls with auto
    (Docker's default profile's case) falls back to epoll and serves.
    The list less `bind` cannot listen: the allow-list is really enforced.

SKIP where the launcher was not built (no libseccomp-dev) or cannot install
a filter (exit 77); (c) is skipped (a SKIP line) under valgrind and in an
ASan build, whose runtimes need calls the allow-list does not have.
"""
import json
import os
import re
import shutil
import signal
import subprocess

import rtls_test as rt
import tls_util as tu

BIN = rt.RINGTLS_BIN
RUN = os.environ.get("SECCOMP_RUN_BIN") or os.path.join(rt.BUILD, "tests", "seccomp_run")
PROFILE = os.path.normpath(os.path.join(rt.HERE, "..", "..", "dist", "container",
                                        "seccomp-io_uring.json"))
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
FALLBACK = ("io_uring is not available (io_uring_setup: Operation not permitted): "
            "using the epoll backend")
START_RE = re.compile(r"reactor\(s\), serving .* on (\w+)$", re.M)
RELOADED_RE = re.compile(r"SIGHUP: reloaded \(generation 2\)$")
BIG = rt.pattern_bytes(1 << 20, seed=18)


def profile_names(t):
    """The allowed names of the profile, after checking its shape."""
    with open(PROFILE) as f:
        prof = json.load(f)
    t.eq(prof.get("defaultAction"), "SCMP_ACT_ERRNO", "profile: defaultAction")
    t.eq(prof.get("defaultErrnoRet"), 1, "profile: defaultErrnoRet (EPERM)")
    t.check("SCMP_ARCH_X86_64" in prof.get("architectures", ()), "profile: x86_64 listed")
    names = []
    for rule in prof.get("syscalls", ()):
        t.eq(rule.get("action"), "SCMP_ACT_ALLOW", "profile: every rule allows")
        t.eq(rule["names"], sorted(set(rule["names"])), "profile: names sorted, each once")
        names += rule["names"]
    t.eq(len(names), len(set(names)), "profile: each name in one rule only")
    for n in IO_URING + ("execve", "epoll_wait"):
        t.check(n in names, "profile: allows %s" % n)
    return names


def write_list(names, name):
    return rt.write_file(os.path.join(rt.temp_dir("rtls-seccomp-"), name), "\n".join(names) + "\n")


def check_launcher(*mode):
    """Skips where the launcher is missing or cannot install its filter."""
    rt.need_binary(RUN, "seccomp_run (libseccomp-dev)")
    p = rt.run_cmd([RUN, *mode, "--", "/bin/true"], timeout=10)
    if p.returncode == rt.SKIP:
        raise rt.Skip("seccomp_run cannot install its filter: %s" % p.stderr.decode().strip())
    if p.returncode != 0:
        raise RuntimeError("seccomp_run %s -- /bin/true: exit %d: %s"
                           % (" ".join(mode), p.returncode, p.stderr.decode()))


def host_has_io_uring():
    """Whether `ringtls probe`, with no filter, finds io_uring usable."""
    p = subprocess.run([BIN, "probe"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=rt.scaled(20), env=auto_env())
    return re.search(r"^backend \(auto\):\s+io_uring\b", p.stdout.decode(), re.M) is not None


def auto_env():
    """The environment with the backend left to auto, whichever pass this is."""
    env = dict(os.environ)
    env.pop("RINGTLS_BACKEND", None)
    return env


class Filtered(rt.Process):
    """ringtls serve under seccomp_run MODE: a plaintext and a TLS listener
    on ephemeral loopback ports, --root with /big.bin (1 MiB)."""

    def __init__(self, mode, *args, env=None):
        base, self.root = rt.make_root({"big.bin": BIG, "index.html": "<p>seccomp</p>\n"})
        argv = [RUN, *mode, "--", BIN, "serve", "--listen", "127.0.0.1:0",
                "--tls-listen", "127.0.0.1:0", "--state-dir", os.path.join(base, "state"),
                "--root", self.root, "--threads", "1", *args]
        super().__init__(argv, name="ringtls", env=env)
        self.port, self.tls_port = self.wait_ports(rt.LISTEN_RE, tu.HTTPS_LISTEN_RE,
                                                   timeout=rt.START_TIMEOUT)

    def backend(self):
        m = START_RE.search(self.log())
        return m and m.group(1)

    def fallback_lines(self):
        return sum(FALLBACK in l for l in self.log_lines())


def get_plain(s, target, headers=()):
    with rt.Conn(("127.0.0.1", s.port)) as c:
        c.send(rt.request("GET", target, headers=headers))
        return c.read_response()


def get_tls(s, target):
    with tu.TlsConn(s.tls_port) as c:
        return c.request(target)


def check_serves(t, s, what, h2=False):
    """/hello in plaintext and over TLS, /big.bin whole on both, a Range;
    with h2, /big.bin again with curl --http2."""
    t.eq(get_plain(s, "/hello").body, b"Hello, World!", "%s: plaintext /hello" % what)
    r = get_tls(s, "/hello")
    t.eq((r.status_line, r.body), ("HTTP/1.1 200 OK", b"Hello, World!"), "%s: TLS /hello" % what)
    r = get_plain(s, "/big.bin")
    t.eq((r.status, rt.sha256(r.body)), (200, rt.sha256(BIG)), "%s: plaintext 1 MiB file" % what)
    r = get_tls(s, "/big.bin")
    t.eq((r.status_line, rt.sha256(r.body)), ("HTTP/1.1 200 OK", rt.sha256(BIG)),
         "%s: TLS 1 MiB file" % what)
    r = get_plain(s, "/big.bin", headers=["Range: bytes=100000-165535"])
    t.eq((r.status, r.header("Content-Range"), r.body),
         (206, "bytes 100000-165535/%d" % len(BIG), BIG[100000:165536]), "%s: Range" % what)
    if not h2:
        return
    if not shutil.which("curl"):
        t.skip("%s: HTTP/2 not checked: curl not installed" % what)
        return
    out = os.path.join(rt.temp_dir(), "h2.bin")
    p = tu.curl_run("--http2", "-k", "-o", out, "-w", "%{http_version} %{http_code}",
                    "https://127.0.0.1:%d/big.bin" % s.tls_port, timeout=30)
    t.eq((p.returncode, p.stdout), (0, b"2 200"), "%s: curl --http2: HTTP/2, 200 (%r)"
         % (what, p.stderr[-200:]))
    with open(out, "rb") as f:
        t.eq(rt.sha256(f.read()), rt.sha256(BIG), "%s: HTTP/2 1 MiB file" % what)


def check_reload(t, s, what):
    """SIGHUP: generation 2 comes up under the same filter and serves."""
    s.send_signal(signal.SIGHUP)
    t.check(s.wait_log(RELOADED_RE.pattern, 15) is not None,
            "%s: SIGHUP: reloaded (generation 2)" % what)
    t.eq(get_plain(s, "/hello").body, b"Hello, World!", "%s: plaintext after the reload" % what)
    t.eq(get_tls(s, "/hello").body, b"Hello, World!", "%s: TLS after the reload" % what)


def test_deny(t):
    """(a) and (b): the io_uring calls refused, everything else allowed."""
    mode = ("--deny-io-uring",)
    check_launcher(*mode)
    what = "io_uring denied, auto"
    s = Filtered(mode, env=auto_env())
    try:
        check_serves(t, s, what, h2=True)
        t.eq(s.fallback_lines(), 1, "%s: one line says why epoll" % what)
        t.eq(s.backend(), "epoll", "%s: the start line ends `on epoll`" % what)
    finally:
        t.eq(s.stop(), 0, "%s: exit status after SIGTERM" % what)

    p = subprocess.run(rt.wrapped([RUN, *mode, "--", BIN, "probe"]), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=rt.scaled(20), env=auto_env())
    out = p.stdout.decode()
    t.eq(p.returncode, 0, "probe under the filter: exit status")
    t.check(re.search(r"^io_uring:\s+not available \(io_uring_setup: Operation not permitted\)",
                      out, re.M), "probe: io_uring not available: %r" % out)
    t.check(re.search(r"^epoll:\s+available", out, re.M), "probe: epoll available: %r" % out)
    t.check(re.search(r"^backend \(auto\):\s+epoll\b", out, re.M), "probe: auto picks epoll: %r" % out)

    what = "io_uring denied, --backend io_uring"
    p = rt.run_cmd([RUN, *mode, "--", BIN, "serve", "--listen", "127.0.0.1:0", "--threads", "1",
                    "--backend", "io_uring"], timeout=20)
    err = p.stderr.decode()
    t.eq(p.returncode, 1, "%s: exit status" % what)
    t.eq(len(err.splitlines()), 1, "%s: exactly one line on stderr: %r" % (what, err))
    t.check("io_uring" in err and "Operation not permitted" in err, "%s: the line says why: %r"
            % (what, err))


def test_allow_list(t):
    """(c): the profile's names as an allow-list, EPERM for the rest."""
    names = profile_names(t)
    full = write_list(names, "profile.txt")
    mode = ("--allow-file", full)
    check_launcher(*mode)
    # valgrind runs inside the filter, and ASan's runtime inside ringtls:
    # both need calls that ringtls does not make. valgrind: open, readlink
    # ("aspacem Valgrind: FATAL: can't open /proc/self/maps"); ASan:
    # sigaltstack, readlink ("CHECK failed: ... sigaltstack").
    if rt.UNDER_VALGRIND or rt.ASAN:
        t.skip("the allow-list cases: %s cannot start under the profile's allow-list"
               % ("valgrind" if rt.UNDER_VALGRIND else "an ASan build"))
        return
    for backend in ("io_uring", "epoll"):
        what = "the profile, --backend %s" % backend
        if backend == "io_uring" and not host_has_io_uring():
            t.skip("%s: this machine refuses io_uring even without a filter" % what)
            continue
        s = Filtered(mode, "--backend", backend)
        try:
            check_serves(t, s, what)
            t.eq(s.backend(), backend, "%s: the start line names it" % what)
            t.eq(s.fallback_lines(), 0, "%s: no fallback line" % what)
            check_reload(t, s, what)
        finally:
            t.eq(s.stop(), 0, "%s: exit status after SIGTERM" % what)

    # Docker's default profile: the same allow-list without io_uring.
    what = "the profile less io_uring, auto"
    mode = ("--allow-file", write_list([n for n in names if n not in IO_URING], "no-uring.txt"))
    s = Filtered(mode, env=auto_env())
    try:
        check_serves(t, s, what)
        t.eq(s.fallback_lines(), 1, "%s: one line says why epoll" % what)
        t.eq(s.backend(), "epoll", "%s: the start line ends `on epoll`" % what)
        check_reload(t, s, what)
    finally:
        t.eq(s.stop(), 0, "%s: exit status after SIGTERM" % what)

    # The filter is enforced: without bind(2) nothing can listen.
    what = "the profile less bind"
    no_bind = write_list([n for n in names if n != "bind"], "no-bind.txt")
    p = rt.run_cmd([RUN, "--allow-file", no_bind, "--", BIN, "serve", "--listen", "127.0.0.1:0",
                    "--threads", "1"], timeout=20)
    err = p.stderr.decode()
    t.eq(p.returncode, 1, "%s: exit status" % what)
    t.check(re.search(r"127\.0\.0\.1:0.*Operation not permitted", err),
            "%s: the error names the listener and EPERM: %r" % (what, err))


def run(t):
    rt.need_binary(BIN, "ringtls")
    test_deny(t)
    test_allow_list(t)


if __name__ == "__main__":
    rt.main(run, watchdog=180)
