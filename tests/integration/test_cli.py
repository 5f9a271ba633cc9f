#!/usr/bin/env python3
"""The command line: --version, --help, and every start-up error is exactly
one line on stderr with a non-zero exit status."""
import os
import re
import socket
import time

import rtls_test as rt

BIN = rt.RINGTLS_BIN


def one_line_error(t, what, argv, want_re=None, code=None, launcher=()):
    """Runs ringtls (which must fail before serving) and checks: non-zero
    exit, nothing on stdout, exactly one line on stderr."""
    p = rt.run_cmd([*launcher, BIN, *argv], timeout=10)
    err = p.stderr.decode("utf-8", "replace")
    lines = err.splitlines()
    if code is None:
        t.check(p.returncode not in (0, None) and p.returncode > 0,
                "%s: exits non-zero (got %s)" % (what, p.returncode))
    else:
        t.eq(p.returncode, code, "%s: exit status" % what)
    t.eq(p.stdout, b"", "%s: nothing on stdout" % what)
    t.eq(len(lines), 1, "%s: exactly one line on stderr %r" % (what, err))
    t.check(err.endswith("\n"), "%s: the line ends with a newline" % what)
    if want_re and lines:
        t.check(re.search(want_re, lines[0]) is not None, "%s: %r matches %r" % (what, lines[0], want_re))
    return p


def test_version_help(t):
    for argv in (["--version"], ["-V"], ["serve", "--version"]):
        p = rt.run_cmd([BIN, *argv])
        t.eq(p.returncode, 0, "%s: exit status" % " ".join(argv))
        t.check(re.fullmatch(rb"ringtls \d+\.\d+\.\d+\n", p.stdout) is not None,
                "%s: prints the version: %r" % (" ".join(argv), p.stdout))
        t.eq(p.stderr, b"", "%s: nothing on stderr" % " ".join(argv))
    for argv in (["--help"], ["-h"], ["serve", "--help"]):
        p = rt.run_cmd([BIN, *argv])
        out = p.stdout.decode()
        t.eq(p.returncode, 0, "%s: exit status" % " ".join(argv))
        t.check(out.startswith("usage: ringtls serve"), "%s: usage first: %r" % (" ".join(argv), out[:40]))
        for opt in ("--listen", "--root", "--follow-symlinks", "--threads", "--max-conns",
                    "--max-header-bytes", "--max-uri-bytes", "--max-headers", "--max-body-bytes",
                    "--header-timeout", "--idle-timeout", "--shutdown-timeout", "--log-level"):
            t.check(opt in out, "%s mentions %s" % (" ".join(argv), opt))
        t.eq(p.stderr, b"", "%s: nothing on stderr" % " ".join(argv))


def test_errors(t):
    tmp = rt.temp_dir()
    afile = rt.write_file(os.path.join(tmp, "plain-file"), b"x")
    L = ["--listen", "127.0.0.1:0"]
    one_line_error(t, "unknown flag", ["serve", *L, "--no-such-flag"], r"--no-such-flag", 2)
    one_line_error(t, "unknown short flag", ["serve", *L, "-x"], r"-x", 2)
    one_line_error(t, "unknown command", ["bogus"], r"bogus", 2)
    one_line_error(t, "unknown top-level flag", ["--bogus"], r"--bogus", 2)
    one_line_error(t, "stray argument", ["serve", *L, "extra"], r"extra", 2)
    one_line_error(t, "flag without its value", ["serve", *L, "--root"], r"--root", 2)
    one_line_error(t, "missing --root directory",
                   ["serve", *L, "--root", os.path.join(tmp, "does-not-exist")],
                   r"--root .*does-not-exist.*No such file or directory", 1)
    one_line_error(t, "--root is a file", ["serve", *L, "--root", afile], r"--root .*Not a directory", 1)
    one_line_error(t, "--threads 0", ["serve", *L, "--threads", "0"], r"--threads", 2)
    one_line_error(t, "--threads -1", ["serve", *L, "--threads", "-1"], r"--threads", 2)
    one_line_error(t, "--threads abc", ["serve", *L, "--threads", "abc"], r"--threads", 2)
    one_line_error(t, "--threads 1025", ["serve", *L, "--threads", "1025"], r"--threads", 2)
    one_line_error(t, "--max-headers 257", ["serve", *L, "--max-headers", "257"], r"--max-headers", 2)
    one_line_error(t, "--header-timeout 0", ["serve", *L, "--header-timeout", "0"], r"--header-timeout", 2)
    one_line_error(t, "--idle-timeout 5x", ["serve", *L, "--idle-timeout", "5x"], r"--idle-timeout", 2)
    one_line_error(t, "--log-level loud", ["serve", *L, "--log-level", "loud"], r"--log-level", 2)
    for bad in ("nonsense", "127.0.0.1:99999", "127.0.0.1:", "999.1.1.1:80", "[::1]80"):
        one_line_error(t, "--listen %s" % bad, ["serve", "--listen", bad], r"listen", None)


def test_address_in_use(t):
    # A listening socket WITHOUT SO_REUSEPORT: ringtls's SO_REUSEPORT bind
    # must then fail with EADDRINUSE.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        one_line_error(t, "address in use", ["serve", "--listen", "127.0.0.1:%d" % port, "--threads", "2"],
                       r"127\.0\.0\.1:%d.*Address already in use" % port, 1)
    finally:
        s.close()


def test_no_uring(t):
    """io_uring_setup refused with EPERM, as a container's default seccomp
    profile does: --backend auto (the default) serves on epoll, with one
    info line saying why; --backend io_uring fails with one line."""
    rt.need_binary(rt.NO_URING_BIN, "no_uring launcher")
    # Does the launcher work here at all (seccomp may be unavailable)?
    p = rt.run_cmd([rt.NO_URING_BIN, "/bin/true"], timeout=10)
    if p.returncode == 77:
        raise rt.Skip("no_uring cannot install its seccomp filter: %s" % p.stderr.decode().strip())
    p = one_line_error(t, "io_uring unavailable, --backend io_uring",
                       ["serve", "--listen", "127.0.0.1:0", "--backend", "io_uring"],
                       r"io_uring is not available \(io_uring_setup: Operation not permitted\)", 1,
                       launcher=[rt.NO_URING_BIN])
    if p.returncode == 77:
        raise rt.Skip("no_uring returned 77")
    env = dict(os.environ)
    env.pop("RINGTLS_BACKEND", None)  # auto's own choice, whichever pass this is
    s = rt.Process([rt.NO_URING_BIN, BIN, "serve", "--listen", "127.0.0.1:0", "--threads", "1"],
                   name="ringtls", env=env)
    try:
        port, = s.wait_ports(rt.LISTEN_RE, timeout=rt.START_TIMEOUT)
        with rt.Conn(("127.0.0.1", port), rt.IO_TIMEOUT) as c:
            c.send(rt.request("GET", "/hello"))
            body = c.read_response().body
        t.eq(body, b"Hello, World!", "io_uring refused, auto: served on epoll")
        log = s.log()
        t.eq(sum("io_uring is not available (io_uring_setup: Operation not permitted): "
                 "using the epoll backend" in l for l in log.splitlines()), 1,
             "io_uring refused, auto: one line says why epoll")
        t.check(re.search(r"reactor\(s\), serving .* on epoll$", log, re.M) is not None,
                "io_uring refused, auto: the start line names epoll")
    finally:
        t.eq(s.stop(), 0, "io_uring refused, auto: exit status")


def test_serves_with_options(t):
    """Every option accepted together, and the server starts and answers."""
    _, root = rt.make_root({"f.txt": b"file\n"})
    s = rt.Server("--follow-symlinks", "--max-conns", "64", "--max-header-bytes", "4096",
                  "--max-uri-bytes", "1024", "--max-headers", "20", "--max-body-bytes", "10",
                  "--header-timeout", "500ms", "--idle-timeout", "2m", "--shutdown-timeout", "5s",
                  "--log-level", "debug", root=root, threads=1)
    t.eq(rt.get(s, "/f.txt").body, b"file\n", "server with every option: serves")
    t.eq(rt.get(s, "/" + "a" * 1100).status, 414, "--max-uri-bytes 1024 applies")
    t.eq(s.stop(), 0, "server with every option: exit status")
    # Two listeners on one server.
    s = rt.Server("--listen", "127.0.0.1:0", threads=1)
    time.sleep(0.1)
    ports = [int(p) for p in rt.LISTEN_RE.findall(s.log())]
    t.eq(len(ports), 2, "two --listen: two listening lines")
    for p in ports:
        with rt.Conn(("127.0.0.1", p)) as c:
            c.send(rt.request("GET", "/hello"))
            t.eq(c.read_response().body, b"Hello, World!", "listener %d serves" % p)
    t.eq(s.stop(), 0, "two listeners: exit status")
    # An IPv6 listener beside the IPv4 one, where the host has IPv6.
    if not have_ipv6_loopback():
        print("note: no IPv6 loopback here; IPv6 listener not checked")
        return
    s = rt.Server("--listen", "[::1]:0", threads=1)
    m = s.wait_log(r"listening on \[::1\]:(\d+) \(http\)", 3)
    t.check(m is not None, "--listen [::1]:0: listening line")
    if m:
        with socket.create_connection(("::1", int(m.group(1))), timeout=5) as so:
            so.sendall(rt.request("GET", "/hello"))
            so.settimeout(5)
            data = b""
            while not data.endswith(b"Hello, World!"):
                chunk = so.recv(4096)
                if not chunk:
                    break
                data += chunk
            t.check(data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nHello, World!"),
                    "IPv6 listener serves /hello: %r" % data[-60:])
    t.eq(s.stop(), 0, "IPv6 listener: exit status")


def test_tls_option_scope(t):
    """--handshake-timeout also applies to TLS upstreams: taken with a plain
    listener and an https:// upstream, refused with neither; an option of
    the TLS listener alone (--no-tls12) stays refused without one."""
    L = ["--listen", "127.0.0.1:0"]
    one_line_error(t, "--handshake-timeout, a plain listener only",
                   ["serve", *L, "--handshake-timeout", "3s"],
                   r"--handshake-timeout is a TLS option, but no --tls-listen or TLS upstream "
                   r"was given", 2)
    one_line_error(t, "--handshake-timeout, a plain listener and an http:// upstream",
                   ["serve", *L, "--handshake-timeout", "3s", "--proxy", "/=http://127.0.0.1:1"],
                   r"--handshake-timeout is a TLS option, but no --tls-listen or TLS upstream "
                   r"was given", 2)
    one_line_error(t, "--no-tls12, a plain listener and an https:// upstream",
                   ["serve", *L, "--no-tls12", "--proxy", "/=https://127.0.0.1:1"],
                   r"--no-tls12 is a TLS option, but no --tls-listen was given$", 2)
    what = "--handshake-timeout, a plain listener and an https:// upstream"
    try:
        s = rt.Server("--handshake-timeout", "3s", "--proxy", "/=https://127.0.0.1:1", threads=1)
    except RuntimeError as ex:
        t.check(False, "%s: the server starts: %s" % (what, ex))
        return
    # Port 1 refuses: the proxy answers 502 (or 503 once it is marked down).
    r = rt.get(s, "/x")
    t.check(r.status in (502, 503), "%s: serves (the upstream refuses): status %d"
            % (what, r.status))
    t.eq(s.stop(), 0, "%s: exit status" % what)


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as so:
            so.bind(("::1", 0))
        return True
    except OSError:
        return False


def test(t):
    rt.need_binary(BIN, "ringtls")
    test_version_help(t)
    test_errors(t)
    test_address_in_use(t)
    test_serves_with_options(t)
    test_tls_option_scope(t)
    test_no_uring(t)


if __name__ == "__main__":
    rt.main(test)
