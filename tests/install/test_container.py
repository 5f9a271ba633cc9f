#!/usr/bin/env python3
"""The container image (dist/container/Dockerfile) under Docker's own
seccomp filters (issue 18).

    test_container.py

Builds the image from this working tree (the files git knows, as a tar
context; tag ringtls:ctest, kept as the next run's cache), then runs it
three times, each with --network host and --listen 127.0.0.1:0
--tls-listen 127.0.0.1:0 (ephemeral loopback ports, read from its
"listening on" lines), each container stopped by its ID:
- --security-opt seccomp=dist/container/seccomp-io_uring.json: serves on
  io_uring (the start line), plaintext and TLS (HTTP/2 by ALPN), survives
  docker kill -s HUP (a reload), and docker stop ends it with 0;
- the same profile less io_uring_setup, io_uring_enter and
  io_uring_register, what Docker's default profile does since 25.0: one
  info line says why epoll, the start line ends "on epoll", it serves and
  stops with 0;
- Docker's own default profile, whatever this Docker's is: it serves and
  stops with 0, on epoll with that one line, or on io_uring without it.
The build and every container use the host's network, with any daemon.
Without a daemon (docker info fails), as root, it starts its own dockerd
for the run: data-root in $RINGTLS_CONTAINER_CACHE/root (default
/var/cache/ringtls-container: the base image and the build cache stay
for the next run), exec-root and socket in a fresh directory under /tmp,
DOCKER_HOST set for every docker call; stopped by its PID at the end.
That dockerd runs with --iptables=false --ip6tables=false
--ip-forward=false --bridge=none: Docker's NAT rules would turn on
connection tracking of loopback traffic, and the connection-heavy tests
that run later would fill the conntrack table. After it stops, the
host's nftables ruleset, iptables-save and ip6tables-save, interfaces,
forwarding and br_netfilter must be as before its start, and loopback
connections must not be tracked where they were not before: else FAIL.
Without a debian:12 image that can be pulled, as root, it makes one:
debootstrap --variant=minbase bookworm from this machine's apt mirror,
then docker import.
Exit 0 pass, 1 fail, 77 skip: no docker, no daemon (and not root, or
dockerd cannot start here), no debian:12 image (local, pulled or made by
debootstrap), or no package mirror reachable from a container.
"""
import ctypes
import difflib
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import rtls_test as rt  # noqa: E402

IMAGE = "ringtls:ctest"
PROFILE = os.path.join(SRC, "dist", "container", "seccomp-io_uring.json")
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
FALLBACK = ("io_uring is not available (io_uring_setup: Operation not permitted): "
            "using the epoll backend")
START_RE = re.compile(r"reactor\(s\), serving .* on (\w+)$", re.M)
LISTEN_RE = r"listening on 127\.0\.0\.1:(\d+) \(%s\)$"
CACHE = os.environ.get("RINGTLS_CONTAINER_CACHE") or "/var/cache/ringtls-container"


def docker(*args, timeout=60, input=None):
    r = subprocess.run(["docker", *args], input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=rt.scaled(timeout))
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(nothing said)"


def _die_with_parent():
    """In the child before exec: SIGTERM when this test's process dies,
    even by SIGKILL (PR_SET_PDEATHSIG), so no dockerd outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# Our dockerd changes nothing in the host's network: no iptables rules
# (Docker's NAT rules turn on connection tracking of all traffic, loopback
# included, and the connection-heavy tests that run later then fill the
# conntrack table and lose their SYNs), no docker0 bridge, no ip_forward.
# Every build and container uses --network host instead.
DOCKERD_NET = ["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--bridge=none"]
CONNTRACK_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"


def _output(argv):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=rt.scaled(30))
    except (OSError, subprocess.TimeoutExpired) as e:
        return ["(%s)" % e]
    return r.stdout.decode("utf-8", "replace").splitlines() + ["(exit %d)" % r.returncode]


def net_state():
    """What a dockerd could leave in the host's network, as lines: the
    nftables ruleset (stateless: no counters), iptables-save and
    ip6tables-save (legacy or nft backend; comments, which carry a date,
    and chain counters dropped), the interfaces, forwarding, and whether
    br_netfilter is loaded."""
    lines = []
    if shutil.which("nft"):
        lines += ["# nft -s list ruleset"] + _output(["nft", "-s", "list", "ruleset"])
    for cmd in ("iptables-save", "ip6tables-save"):
        if shutil.which(cmd):
            lines += ["# " + cmd] + [re.sub(r"\[\d+:\d+\]", "", l) for l in _output([cmd])
                                     if not l.startswith("#")]
    lines.append("# interfaces: " + " ".join(sorted(os.listdir("/sys/class/net"))))
    for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        try:
            with open(path) as f:
                lines.append("# %s: %s" % (path, f.read().strip()))
        except OSError:
            pass
    lines.append("# br_netfilter: %s" % os.path.exists("/proc/sys/net/bridge"))
    return lines


def loopback_tracked(n=200):
    """Whether connection tracking sees loopback connections: the count
    of tracked connections grows by at least half of n connections opened
    and closed on 127.0.0.1 (a closed one stays tracked in TIME_WAIT)."""
    def count():
        try:
            with open(CONNTRACK_COUNT) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0
    with socket.socket() as ls:
        ls.settimeout(rt.IO_TIMEOUT)
        ls.bind(("127.0.0.1", 0))
        ls.listen(n)
        before = count()
        for _ in range(n):
            with socket.create_connection(ls.getsockname(), timeout=rt.IO_TIMEOUT):
                pass
            ls.accept()[0].close()
        return count() - before >= n // 2


class Dockerd:
    """This test's own dockerd, where no daemon answers: data-root and
    pidfile in CACHE (persistent), exec-root and the socket in a fresh
    temp dir, DOCKERD_NET. One at a time per CACHE (a lock file). Its
    stop checks that the host's network is as it was before the start."""

    def __init__(self, t):
        self.t = t
        self.proc = None
        self.root = os.path.join(CACHE, "root")
        os.makedirs(self.root, exist_ok=True)
        self.lock = open(os.path.join(CACHE, "lock"), "w")
        end = time.monotonic() + rt.scaled(600)
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    self.lock.close()
                    raise rt.Skip("%s is in use by another run for 600 s" % CACHE)
                time.sleep(1)
        self.pidfile = os.path.join(CACHE, "dockerd.pid")
        self._stop_leftover()
        self.net_before = net_state()
        self.tracked_before = loopback_tracked()
        run = rt.temp_dir("rtls-dockerd-")
        self.host = "unix://" + os.path.join(run, "docker.sock")
        self.log_path = os.path.join(CACHE, "dockerd.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", self.root, "--exec-root", os.path.join(run, "exec"),
                 "--pidfile", self.pidfile, "-H", self.host, "--log-level", "warn", *DOCKERD_NET],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                close_fds=True, preexec_fn=_die_with_parent)
        os.environ["DOCKER_HOST"] = self.host
        print("started dockerd (pid %d): DOCKER_HOST=%s, data-root %s, %s"
              % (self.proc.pid, self.host, self.root, " ".join(DOCKERD_NET)))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        end = time.monotonic() + rt.scaled(30)
        while docker("info", "--format", "{{.ServerVersion}}", timeout=30)[0] != 0:
            if self.proc.poll() is not None:
                raise rt.Skip("dockerd exited %d: %s" % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > end:
                raise rt.Skip("dockerd did not answer in 30 s: %s" % self.log_tail())
            time.sleep(0.5)

    def _stop_leftover(self):
        """A dockerd of an earlier run on this data-root that is still there
        (its pidfile names it): stopped by that PID; a stale pidfile goes."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pid = 0
        cmd = _cmdline(pid) if pid > 0 else []
        if cmd and os.path.basename(cmd[0]) == b"dockerd" and self.root.encode() in cmd:
            print("stopping dockerd pid %d, left by an earlier run" % pid)
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                end = time.monotonic() + rt.scaled(wait)
                while not _gone(pid) and time.monotonic() < end:
                    time.sleep(0.2)
                if _gone(pid):
                    break
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass

    def log_tail(self, n=5):
        with open(self.log_path, "rb") as f:
            return " | ".join(f.read().decode("utf-8", "replace").strip().splitlines()[-n:])

    def stop(self):
        """SIGTERM, 30 s, then SIGKILL; by its PID. Then the host's network
        against the state before the start: a difference fails the test."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=rt.scaled(30))
            except subprocess.TimeoutExpired:
                print("dockerd (pid %d) did not stop in 30 s: killing" % self.proc.pid)
                self.proc.kill()
                self.proc.wait(timeout=rt.scaled(10))
        os.environ.pop("DOCKER_HOST", None)
        if self.proc:
            diff = list(difflib.unified_diff(self.net_before, net_state(), "before dockerd",
                                             "after dockerd", lineterm="", n=1))
            self.t.check(not diff, "dockerd left the host's network changed:\n" + "\n".join(diff))
            tracked = loopback_tracked()
            if self.tracked_before:
                print("loopback connections were tracked by conntrack before dockerd started")
            else:
                self.t.check(not tracked, "loopback connections are tracked by conntrack after "
                             "dockerd, not before (%s)" % CONNTRACK_COUNT)
            print("host network after dockerd: %s, loopback tracked %s (before: %s)"
                  % ("unchanged" if not diff else "CHANGED", tracked, self.tracked_before))
        self.lock.close()


def need_docker(t):
    """None where a daemon answers; else this test's own Dockerd (as root)."""
    if not shutil.which("docker"):
        raise rt.Skip("docker not installed")
    rc, _, err = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if rc == 0:
        return None
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        raise rt.Skip("no Docker daemon, and not root with dockerd to start one: %s"
                      % last_line(err))
    return Dockerd(t)


def mirror():
    """The Debian mirror of this machine's apt sources, found as
    tests/kernel/run-kernel.sh's mirror() finds it; None if none."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            m = re.search(r"^URIs: *(\S*/debian)$", f.read(), re.M)
        if m:
            return m.group(1)
    try:
        with open("/etc/apt/sources.list") as f:
            m = re.search(r"^deb (?:\[[^]]*\] )?(\S*/debian) ", f.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def make_base_image(why):
    """debian:12 from debootstrap --variant=minbase bookworm, imported."""
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise rt.Skip("no debian:12 image, it cannot be pulled (%s), and no debootstrap "
                      "(as root) to make one" % why)
    url = mirror()
    if not url:
        raise rt.Skip("no debian:12 image, it cannot be pulled (%s), and no Debian mirror "
                      "in this machine's apt sources for debootstrap" % why)
    rootfs = os.path.join(rt.temp_dir("rtls-debootstrap-"), "rootfs")
    print("no debian:12 image (%s): debootstrap --variant=minbase bookworm from %s" % (why, url))
    start = time.monotonic()
    p = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, url],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=rt.scaled(900))
    if p.returncode != 0:
        raise rt.Skip("debootstrap bookworm %s: exit %d: %s"
                      % (url, p.returncode, p.stdout.decode("utf-8", "replace")[-500:]))
    tar = subprocess.Popen(["tar", "-C", rootfs, "--numeric-owner", "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    try:
        r = subprocess.run(["docker", "import", "--change", 'CMD ["bash"]', "--message",
                            "debootstrap --variant=minbase bookworm " + url, "-", "debian:12"],
                           stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=rt.scaled(300))
    finally:
        tar.stdout.close()
        tar.wait(timeout=rt.scaled(60))
    shutil.rmtree(rootfs, ignore_errors=True)
    if r.returncode != 0 or tar.returncode != 0:
        raise RuntimeError("tar | docker import: exit %d/%d: %s"
                           % (tar.returncode, r.returncode, r.stderr.decode("utf-8", "replace")))
    print("debian:12 made in %.0f s" % (time.monotonic() - start))


def need_image():
    if docker("image", "inspect", "debian:12")[0] != 0:
        rc, _, err = docker("pull", "debian:12", timeout=300)
        if rc != 0:
            make_base_image(last_line(err))
    rc, out, err = docker("run", "--rm", "--network", "host", "debian:12", "apt-get", "update",
                          timeout=180)
    if rc != 0 or re.search(r"^(Err|W: Failed)", out + err, re.M):
        raise rt.Skip("no Debian mirror reachable from a container: %s" % (out + err)[-300:])


def context_tar():
    """The working tree's files that git knows (tracked and not ignored),
    as a tar: no build tree goes into the context."""
    files = subprocess.run(["git", "-C", SRC, "ls-files", "-co", "--exclude-standard", "-z"],
                           stdout=subprocess.PIPE, check=True, timeout=60).stdout
    present = b"\0".join(f for f in files.split(b"\0")
                         if f and os.path.lexists(os.path.join(SRC.encode(), f)))
    return subprocess.run(["tar", "-C", SRC, "--null", "-T", "-", "-cf", "-"], input=present,
                          stdout=subprocess.PIPE, check=True, timeout=120).stdout


class Container:
    """docker run -d --network host IMAGE, listening on ephemeral loopback
    ports (the host's: --listen and --tls-listen 127.0.0.1:0 after the
    image's name), read from its log."""

    def __init__(self, *opts):
        rc, out, err = docker("run", "-d", "--network", "host", *opts, IMAGE,
                              "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                              timeout=60)
        if rc != 0:
            raise RuntimeError("docker run %s: %s" % (" ".join(opts), err))
        self.id = out.strip()
        try:
            self.port = self._port("http")
            self.tls_port = self._port("https")
        except BaseException:
            self.remove()
            raise

    def _port(self, kind):
        m = self.wait_log(LISTEN_RE % kind)
        if not m:
            raise RuntimeError("container %s: no 'listening on 127.0.0.1:PORT (%s)' line: %r"
                               % (self.id, kind, self.logs()[-1000:]))
        return int(m.group(1))

    def logs(self):
        _, out, err = docker("logs", self.id)
        return out + err

    def wait_log(self, rx, timeout=20):
        end = time.monotonic() + rt.scaled(timeout)
        while time.monotonic() < end:
            m = re.search(rx, self.logs(), re.M)
            if m:
                return m
            time.sleep(0.1)
        return None

    def stop(self):
        """docker stop (SIGTERM); the exit status."""
        docker("stop", self.id, timeout=60)
        rc, out, _ = docker("inspect", "-f", "{{.State.ExitCode}}", self.id)
        return int(out.strip()) if rc == 0 and out.strip().isdigit() else None

    def remove(self):
        docker("rm", "-f", self.id)


def check_serves(t, c, what):
    with rt.Conn(("127.0.0.1", c.port)) as conn:
        conn.send(rt.request("GET", "/hello"))
        t.eq(conn.read_response().body, b"Hello, World!", "%s: plaintext /hello" % what)
    p = rt.run_cmd(["curl", "-sS", "-k", "--max-time", "%g" % rt.scaled(10), "-o", "/dev/null",
                    "-w", "%{http_code} %{http_version}",
                    "https://127.0.0.1:%d/" % c.tls_port], timeout=20)
    t.eq(p.stdout, b"200 2", "%s: TLS, HTTP/2 by ALPN (%r)" % (what, p.stderr[-200:]))


def run_one(t, what, opts, want_backend):
    c = Container(*opts)
    try:
        m = c.wait_log(START_RE.pattern)
        if not t.check(m, "%s: the start line: %r" % (what, c.logs())):
            return
        log = c.logs()
        backend = m.group(1)
        if want_backend:
            t.eq(backend, want_backend, "%s: the backend" % what)
        t.eq(sum(FALLBACK in l for l in log.splitlines()), 1 if backend == "epoll" else 0,
             "%s: on %s, %s line saying why" % (what, backend,
                                                "one" if backend == "epoll" else "no"))
        check_serves(t, c, what)
        docker("kill", "-s", "HUP", c.id)
        t.check(c.wait_log(r"SIGHUP: reloaded \(generation 2\)$"),
                "%s: docker kill -s HUP reloads: %r" % (what, c.logs()[-500:]))
        check_serves(t, c, what + ", after the reload")
        t.eq(c.stop(), 0, "%s: exit status after docker stop" % what)
        print("%s: served on %s" % (what, backend))
    finally:
        c.remove()


def test(t):
    if not shutil.which("curl"):
        raise rt.Skip("curl not installed")
    daemon = need_docker(t)
    try:
        need_image()
        build_and_run(t)
    finally:
        if daemon:
            daemon.stop()


def build_and_run(t):
    start = time.monotonic()
    rc, out, err = docker("build", "--network", "host", "-t", IMAGE, "-f",
                          "dist/container/Dockerfile", "-", input=context_tar(), timeout=1500)
    if not t.check(rc == 0, "docker build: exit %d: %s" % (rc, (out + err)[-3000:])):
        return
    print("docker build: %.0f s" % (time.monotonic() - start))
    with open(PROFILE) as f:
        prof = json.load(f)
    for r in prof["syscalls"]:
        r["names"] = [n for n in r["names"] if n not in IO_URING]
    no_uring = os.path.join(rt.temp_dir("rtls-container-"), "no-io_uring.json")
    with open(no_uring, "w") as f:
        json.dump(prof, f)
    run_one(t, "seccomp-io_uring.json", ["--security-opt", "seccomp=" + PROFILE], "io_uring")
    run_one(t, "seccomp-io_uring.json less io_uring", ["--security-opt", "seccomp=" + no_uring],
            "epoll")
    run_one(t, "Docker's default profile", [], None)


if __name__ == "__main__":
    rt.main(test, watchdog=1700)
