#!/usr/bin/env python3
"""ringtls under systemd (issue 17 section 5), without a running systemd:

1. sd_notify: on a NOTIFY_SOCKET the test binds (AF_UNIX, SOCK_DGRAM,
   SO_PASSCRED), READY=1 comes from ringtls's own pid (NotifyAccess=main),
   and the port answers then; SIGHUP (ExecReload) sends RELOADING=1 with
   MONOTONIC_USEC= (Type=notify-reload), then READY=1 once `SIGHUP:
   reloaded` is logged, the port still answering; a reload that fails (a
   bad --config) sends READY=1 too, with STATUS=Reload failed: ...;
   STOPPING=1 follows SIGTERM, in that order, and the exit status is 0.
2. Socket activation with Debian's systemd-socket-activate: a plain and a
   TLS socket passed in (matched to --listen and --tls-listen by address)
   are served, ringtls binds no socket of its own for them (/proc/net/tcp
   has one listening socket per port, the one passed as fd 3 or 4, and
   ringtls holds it once per reactor plus the original), while a listener
   with no passed socket is bound as usual; localhost:PORT and [::1]:PORT
   match too. A passed socket that matches
   no listener (port 0 never matches), and a UDP one, end ringtls at start
   with one line.
3. dist/systemd/ringtls.service and ringtls.socket pass `systemd-analyze
   verify` without a warning (ExecStart pointed at the built binary in a
   copy), and every system call ringtls makes (strace -f, serving HTTP and
   TLS, SIGHUP, SIGTERM) is one the unit's SystemCallFilter allows.

SKIP (77) where systemd-socket-activate, systemd-analyze or strace is not
installed (scripts/deps.sh test installs them), after running the rest.
"""
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import time

import rtls_test as rt

BIN = rt.RINGTLS_BIN
SRC = os.path.normpath(os.path.join(rt.HERE, "..", ".."))
UNIT_DIR = os.path.join(SRC, "dist", "systemd")
THREADS = 2
ANY_LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \((https?)\)")


class Notify:
    """The receiving end of NOTIFY_SOCKET: one datagram per sd_notify()."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, timeout):
        """(pid of the sender, {KEY: value}) of the next datagram, or None."""
        r, _, _ = select.select([self.sock], [], [], rt.scaled(timeout))
        if not r:
            return None
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        fields = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
        return pid, fields

    def close(self):
        self.sock.close()


def hello(port, timeout=rt.IO_TIMEOUT):
    """GET /hello over plain HTTP; the response body, or the error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return recv_all(s)
    except OSError as e:
        return repr(e).encode()


def hello_tls(port, timeout=rt.IO_TIMEOUT):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return recv_all(s)
    except (OSError, ssl.SSLError) as e:
        return repr(e).encode()


def recv_all(s):
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except ssl.SSLError:
            break
        if not b:
            break
        out += b
    return out


def answered(body):
    return body.startswith(b"HTTP/1.1 200 ") and body.endswith(b"Hello, World!")


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def notify_reload(t, p, n, port, what, ok):
    """SIGHUP: RELOADING=1 stamped with CLOCK_MONOTONIC between the
    signal and its receipt, then READY=1 and the outcome line; the port
    answers after."""
    mark = len(p.log_lines())
    t0 = monotonic_usec()
    p.send_signal(signal.SIGHUP)
    msg = n.recv(10)
    t1 = monotonic_usec()
    f = msg[1] if msg else {}
    t.eq(f.get("RELOADING"), "1", "%s: RELOADING=1 first (%s)" % (what, msg))
    usec = f.get("MONOTONIC_USEC", "")
    t.check(usec.isdigit() and t0 <= int(usec) <= t1,
            "%s: MONOTONIC_USEC=%r is CLOCK_MONOTONIC at the reload (%d..%d)" % (what, usec, t0, t1))
    t.check(msg is not None and msg[0] == p.pid, "%s: RELOADING=1 from the main pid" % what)
    msg = n.recv(15)
    f = msg[1] if msg else {}
    t.eq(f.get("READY"), "1", "%s: READY=1 after the reload (%s)" % (what, msg))
    status = f.get("STATUS", "")
    if ok:
        t.check(not status.startswith("Reload failed"), "%s: STATUS=%r" % (what, status))
        want = r"^\S+ info SIGHUP: reloaded \(generation \d+\)$"
    else:
        t.check(status.startswith("Reload failed: "), "%s: STATUS=Reload failed: ...: %r"
                % (what, status))
        want = r"^\S+ error SIGHUP: reload failed, still serving generation \d+: "
    lines = p.log_lines()[mark:]
    t.check(any(re.search(want, l) for l in lines), "%s: logged %r before READY=1: %r"
            % (what, want, lines))
    t.check(answered(hello(port)), "%s: the port answers after" % what)


def test_notify(t):
    tmp = rt.temp_dir()
    n = Notify(os.path.join(tmp, "notify"))
    env = dict(os.environ, NOTIFY_SOCKET=n.path)
    cfg = rt.write_file(os.path.join(tmp, "ringtls.yaml"), "listen: 127.0.0.1:0\n")
    p = rt.Process([BIN, "serve", "--config", cfg, "--threads", str(THREADS)],
                   name="ringtls", env=env)
    try:
        msg = n.recv(rt.START_TIMEOUT)
        t.check(msg is not None, "notify: a datagram after start")
        if msg is None:
            return
        pid, f = msg
        t.eq(f.get("READY"), "1", "notify: the first message is READY=1 (%s)" % f)
        t.check(f.get("STATUS"), "notify: READY=1 comes with a STATUS= line (%s)" % f)
        t.eq(pid, p.pid, "notify: READY=1 sent by ringtls's main pid (NotifyAccess=main)")
        # READY=1 means it serves: the port is in the log and answers now.
        m = p.wait_log(r"listening on 127\.0\.0\.1:(\d+) \(http\)", 0)
        t.check(m is not None, "notify: 'listening on' logged before READY=1")
        if m:
            body = hello(int(m.group(1)))
            t.check(answered(body), "notify: the port answers once READY=1 came: %r" % body[-60:])
        # SIGHUP (ExecReload=kill -HUP $MAINPID): a reload, then one that
        # fails on a bad file; the listener 127.0.0.1:0 keeps its port.
        if m:
            notify_reload(t, p, n, int(m.group(1)), "notify: reload", ok=True)
            rt.write_file(cfg, "listen: 127.0.0.1:0\nno-such-key: 1\n")
            notify_reload(t, p, n, int(m.group(1)), "notify: failed reload", ok=False)
        t.check(p.alive(), "notify: alive after SIGHUP")
        t.eq(n.recv(0.2), None, "notify: nothing more after READY=1")
        p.send_signal(signal.SIGTERM)
        msg = n.recv(rt.STOP_TIMEOUT)
        t.check(msg is not None and msg[1].get("STOPPING") == "1",
                "notify: STOPPING=1 after SIGTERM (%s)" % (msg,))
        t.eq(p.wait(rt.STOP_TIMEOUT), 0, "notify: exit status after SIGTERM")
        t.eq(n.recv(0.2), None, "notify: nothing after STOPPING=1")
    finally:
        p.stop()
        n.close()


# --------------------------------------------------------------------------
# Socket activation


def fd_inodes(pid):
    """{fd: socket inode} of the process."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m:
            out[int(fd)] = int(m.group(1))
    return out


def activate(args, env=None):
    return rt.Process(["systemd-socket-activate", *args], name="socket-activate", env=env)


def wait_for(p, pattern, what, t):
    m = p.wait_log(pattern, rt.START_TIMEOUT)
    t.check(m is not None, "%s: log %r" % (what, pattern))
    return m


def test_activation(t):
    tmp = rt.temp_dir()
    plain, tls = rt.free_port(), rt.free_port()
    p = activate(["-l", "127.0.0.1:%d" % plain, "-l", "127.0.0.1:%d" % tls, BIN, "serve",
                  "--listen", "127.0.0.1:%d" % plain, "--listen", "127.0.0.1:0",
                  "--tls-listen", "127.0.0.1:%d" % tls, "--threads", str(THREADS),
                  "--state-dir", tmp])
    try:
        # systemd-socket-activate binds, then execs ringtls at the first
        # connection, which waits in the queue meanwhile.
        if not wait_for(p, r"Listening on 127\.0\.0\.1:%d as 4" % tls, "activation", t):
            return
        body = hello(plain, timeout=rt.START_TIMEOUT)
        t.check(answered(body), "activation: plain socket passed as fd 3 serves: %r" % body[-60:])
        wait_for(p, r"socket activation: fd 3 is 127\.0\.0\.1:%d \(http\)" % plain, "activation", t)
        wait_for(p, r"socket activation: fd 4 is 127\.0\.0\.1:%d \(https\)" % tls, "activation", t)
        body = hello_tls(tls)
        t.check(answered(body), "activation: TLS socket passed as fd 4 serves: %r" % body[-60:])
        got = {}
        for line in p.log_lines():
            m = ANY_LISTEN_RE.search(line)
            if m:
                got[int(m.group(1))] = m.group(2)
        t.eq(got.get(plain), "http", "activation: rtls_server_listen_addr reports fd 3's address")
        t.eq(got.get(tls), "https", "activation: ... and fd 4's")
        own = [port for port in got if port not in (plain, tls)]
        t.eq(len(own), 1, "activation: the listener with no passed socket is bound (%s)" % got)
        if own:
            t.check(answered(hello(own[0])), "activation: ... and serves")
        fds = fd_inodes(p.pid)
        for port, fd in ((plain, 3), (tls, 4)):
            ino = rt.listen_inodes(port)
            t.eq(ino, [fds.get(fd)], "activation: port %d: one listening socket, fd %d's" % (port, fd))
            t.eq(sum(1 for i in fds.values() if ino and i == ino[0]), 1 + THREADS,
                 "activation: fd %d held by each reactor and the original" % fd)
        p.send_signal(signal.SIGTERM)
        t.eq(p.wait(rt.STOP_TIMEOUT), 0, "activation: exit status after SIGTERM")
    finally:
        p.stop()


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as so:
            so.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_address_forms(t):
    """A listener written as localhost:PORT takes the socket bound to
    127.0.0.1:PORT, and [::1]:PORT an IPv6 one."""
    forms = [("127.0.0.1", "localhost:%d", socket.AF_INET)]
    if have_ipv6_loopback():
        forms.append(("[::1]", "[::1]:%d", socket.AF_INET6))
    for host, listen, family in forms:
        port = rt.free_port()
        what = "activation, --listen %s" % (listen % port)
        p = activate(["-l", "%s:%d" % (host, port), BIN, "serve", "--listen", listen % port,
                      "--threads", "1"])
        try:
            if not wait_for(p, r"Listening on .* as 3", what, t):
                continue
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(rt.START_TIMEOUT)
                    s.connect((host.strip("[]"), port))
                    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    body = recv_all(s)
            except OSError as e:
                body = repr(e).encode()
            t.check(answered(body), "%s: serves: %r" % (what, body[-60:]))
            wait_for(p, r"socket activation: fd 3 is ", what, t)
            p.send_signal(signal.SIGTERM)
            t.eq(p.wait(rt.STOP_TIMEOUT), 0, "%s: exit status" % what)
        finally:
            p.stop()


def refused(t, what, args, want_re, trigger):
    """systemd-socket-activate ARGS execs ringtls once `trigger` has reached
    a socket; ringtls must exit 1 with exactly one line of its own."""
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="warning")  # no lines of socket-activate's
    p = activate(args, env=env)
    try:
        deadline = time.monotonic() + rt.START_TIMEOUT
        while p.alive() and time.monotonic() < deadline:
            trigger()
            if p.wait(0.2) is not None:
                break
        t.eq(p.wait(rt.STOP_TIMEOUT), 1, "%s: exit status" % what)
        lines = p.log_lines()
        t.eq(len(lines), 1, "%s: one line: %r" % (what, lines))
        t.check(lines and re.search(want_re, lines[0]), "%s: %r matches %r" % (what, lines, want_re))
    finally:
        p.stop()


def test_refusals(t):
    port, other = rt.free_port(), rt.free_port()

    def connect():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            pass

    def datagram():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", ("127.0.0.1", port))

    lport = "127.0.0.1:%d" % port
    mismatch = r"^ringtls: socket activation: the socket passed as fd 3 \(127\.0\.0\.1:%d\) " \
               r"matches no --listen or --tls-listen address$" % port
    refused(t, "another port", ["-l", lport, BIN, "serve", "--listen", "127.0.0.1:%d" % other],
            mismatch, connect)
    refused(t, "port 0", ["-l", lport, BIN, "serve", "--listen", "127.0.0.1:0"], mismatch, connect)
    refused(t, "another address", ["-l", lport, BIN, "serve", "--tls-listen", "0.0.0.0:%d" % port],
            mismatch, connect)
    refused(t, "UDP", ["-d", "-l", lport, BIN, "serve", "--listen", lport],
            r"^ringtls: socket activation: fd 3 is not a listening TCP socket$", datagram)


# --------------------------------------------------------------------------
# The units


def unit_copy(tmp):
    """The units, ExecStart naming the built binary (verify wants it to exist)."""
    paths = []
    for name in ("ringtls.service", "ringtls.socket"):
        with open(os.path.join(UNIT_DIR, name)) as f:
            text = f.read()
        text = text.replace("/usr/bin/ringtls", os.path.abspath(BIN))
        paths.append(rt.write_file(os.path.join(tmp, name), text))
    return paths, text


def unit_settings(path):
    """{key: [values]} of a unit file."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_verify(t):
    tmp = rt.temp_dir()
    (service, sock), _ = unit_copy(tmp)
    p = rt.run_cmd(["systemd-analyze", "verify", "--man=no", service, sock], timeout=60)
    out = (p.stdout + p.stderr).decode("utf-8", "replace").strip()
    t.eq(p.returncode, 0, "systemd-analyze verify: exit status (%s)" % out)
    t.eq(out, "", "systemd-analyze verify: no warning")
    u = unit_settings(service)
    for k, v in (("Type", "notify"), ("NotifyAccess", "main"), ("ProtectSystem", "strict"),
                 ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                 ("DynamicUser", "yes"), ("StateDirectory", "ringtls"),
                 ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
                 ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                 ("ExecReload", "/bin/kill -HUP $MAINPID")):
        t.eq(u.get(k), [v], "ringtls.service: %s" % k)
    t.check("--state-dir ${STATE_DIRECTORY}" in u.get("ExecStart", [""])[0],
            "ringtls.service: the certificate goes to the state directory: %s" % u.get("ExecStart"))
    allow = " ".join(u.get("SystemCallFilter", [""])[:1]).split()
    for sc in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        t.check(sc in allow, "ringtls.service: SystemCallFilter names %s" % sc)


def syscall_set(group, seen=None):
    """The system calls of a systemd syscall group, nested groups expanded."""
    seen = set() if seen is None else seen
    out = set()
    if group in seen:
        return out
    seen.add(group)
    p = rt.run_cmd(["systemd-analyze", "syscall-filter", group], timeout=30)
    for line in p.stdout.decode().splitlines()[1:]:
        w = line.strip()
        if not w or w.startswith("#"):
            continue
        out |= syscall_set(w, seen) if w.startswith("@") else {w}
    return out


def unit_allows(service):
    """What the unit's SystemCallFilter= lines let through: allow-lists
    add, ~deny-lists take away, in order."""
    allowed = set()
    for v in unit_settings(service).get("SystemCallFilter", []):
        deny = v.startswith("~")
        names = set()
        for w in v.lstrip("~").split():
            names |= syscall_set(w) if w.startswith("@") else {w}
        allowed = allowed - names if deny else allowed | names
    return allowed


def tracee(pid):
    """The child strace (pid) runs: ringtls."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def test_syscalls(t):
    """Without a systemd to run the unit, the next best thing: strace
    ringtls through a start, HTTP and TLS requests, SIGHUP and SIGTERM,
    and hold every call against the unit's filter (with
    SystemCallErrorNumber=EPERM, one outside it fails in production)."""
    if rt.WRAP:
        print("test_syscalls: not under RINGTLS_WRAP (strace would trace the wrapper)")
        return
    tmp = rt.temp_dir()
    trace = os.path.join(tmp, "strace")
    allowed = unit_allows(os.path.join(UNIT_DIR, "ringtls.service"))
    # LeakSanitizer cannot run under ptrace: in the ASan build, no leak
    # check for this one run (the rest of the suite has it).
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    t.check({"io_uring_setup", "read", "accept4"} <= allowed,
            "the filter expands (%d calls allowed)" % len(allowed))
    p = rt.Process(["strace", "-f", "-qq", "-o", trace, BIN, "serve", "--listen", "127.0.0.1:0",
                    "--tls-listen", "127.0.0.1:0", "--threads", str(THREADS),
                    "--state-dir", tmp], name="strace-ringtls", env=env)
    try:
        ports = {}
        end = time.monotonic() + rt.START_TIMEOUT
        while len(ports) < 2 and time.monotonic() < end and p.alive():
            ports = {k: int(port) for port, k in ANY_LISTEN_RE.findall(p.log())}
            time.sleep(0.05)
        t.eq(sorted(ports), ["http", "https"], "strace: both listeners up")
        pid = tracee(p.pid)
        t.check(pid, "strace: ringtls's pid")
        if "http" in ports:
            t.check(answered(hello(ports["http"])), "strace: plain request")
        if "https" in ports:
            t.check(answered(hello_tls(ports["https"])), "strace: TLS request")
        if pid:  # to ringtls: strace would not pass them on
            os.kill(pid, signal.SIGHUP)
            # Every call of a whole reload is in the trace before SIGTERM.
            t.check(p.wait_log(r"SIGHUP: reloaded \(generation 2\)", 10), "strace: SIGHUP reloaded")
            t.check(answered(hello_tls(ports["https"])) if "https" in ports else True,
                    "strace: TLS request after the reload")
            os.kill(pid, signal.SIGTERM)
        t.eq(p.wait(rt.STOP_TIMEOUT), 0, "strace: exit status")
    finally:
        p.stop()
    called = set()
    with open(trace) as f:
        for line in f:
            m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
            if m:
                called.add(m.group(1))
    # execve is strace's exec of ringtls, which runs before the filter
    # applies to it; the rest must pass.
    called.discard("execve")
    t.check(len(called) > 20, "strace: system calls seen: %d" % len(called))
    t.eq(sorted(called - allowed), [], "every system call ringtls made is allowed by the unit")


def test(t):
    rt.need_binary(BIN, "ringtls")
    test_notify(t)
    missing = [c for c in ("systemd-socket-activate", "systemd-analyze", "strace")
               if not shutil.which(c)]
    if shutil.which("systemd-socket-activate"):
        test_activation(t)
        test_address_forms(t)
        test_refusals(t)
    if shutil.which("systemd-analyze"):
        test_verify(t)
        if shutil.which("strace"):
            test_syscalls(t)
    if missing:
        raise rt.Skip("%s not installed (scripts/deps.sh test)" % ", ".join(missing))


if __name__ == "__main__":
    rt.main(test)
