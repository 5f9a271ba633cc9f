#!/usr/bin/env python3
"""The container image (dist/container/Dockerfile) under Docker's own
seccomp filters (issue 18).

    test_container.py

Builds the image from this working tree (the files git knows, as a tar
context; tag ringtls:ctest, kept as the next run's cache), then runs it
three times, each on ephemeral loopback ports (-p 127.0.0.1::8080), each
container stopped by its ID:
- --security-opt seccomp=dist/container/seccomp-io_uring.json: serves on
  io_uring (the start line), plaintext and TLS (HTTP/2 by ALPN), survives
  docker kill -s HUP (a reload), and docker stop ends it with 0;
- the same profile less io_uring_setup, io_uring_enter and
  io_uring_register, what Docker's default profile does since 25.0: one
  info line says why epoll, the start line ends "on epoll", it serves and
  stops with 0;
- Docker's own default profile, whatever this Docker's is: it serves and
  stops with 0, on epoll with that one line, or on io_uring without it.
Exit 0 pass, 1 fail, 77 skip: no docker, no daemon, no debian:12 image
(local or pulled), or no package mirror reachable from a container.
"""
import json
import os
import re
import shutil
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


def docker(*args, timeout=60, input=None):
    r = subprocess.run(["docker", *args], input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=rt.scaled(timeout))
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(nothing said)"


def need_docker():
    if not shutil.which("docker"):
        raise rt.Skip("docker not installed")
    rc, _, err = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if rc != 0:
        raise rt.Skip("no Docker daemon: %s" % last_line(err))
    if docker("image", "inspect", "debian:12")[0] != 0:
        rc, _, err = docker("pull", "debian:12", timeout=300)
        if rc != 0:
            raise rt.Skip("no debian:12 image, and it cannot be pulled: %s" % last_line(err))
    rc, out, err = docker("run", "--rm", "debian:12", "apt-get", "update", timeout=180)
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
    """docker run -d IMAGE with its two ports on ephemeral loopback ports."""

    def __init__(self, *opts):
        rc, out, err = docker("run", "-d", "-p", "127.0.0.1::8080", "-p", "127.0.0.1::8443",
                              *opts, IMAGE, timeout=60)
        if rc != 0:
            raise RuntimeError("docker run %s: %s" % (" ".join(opts), err))
        self.id = out.strip()
        self.port = self._port("8080")
        self.tls_port = self._port("8443")

    def _port(self, p):
        rc, out, err = docker("port", self.id, p)
        m = re.search(r"127\.0\.0\.1:(\d+)", out)
        if not m:
            raise RuntimeError("docker port %s %s: %r %r" % (self.id, p, out, err))
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
    need_docker()
    if not shutil.which("curl"):
        raise rt.Skip("curl not installed")
    rc, out, err = docker("build", "-t", IMAGE, "-f", "dist/container/Dockerfile", "-",
                          input=context_tar(), timeout=1500)
    if not t.check(rc == 0, "docker build: exit %d: %s" % (rc, (out + err)[-3000:])):
        return
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
    rt.main(test, watchdog=1800)
