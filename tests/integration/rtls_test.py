"""Shared helpers for the ringtls integration tests (stdlib only).

Every test is a standalone program: exit 0 pass, 1 fail, 77 skip. A test
builds its files under a temporary directory, starts the real server on an
ephemeral loopback port, talks to it with real clients (curl, raw sockets),
records failed checks instead of stopping at the first one, and stops every
process it started by its PID. Nothing here may block without a bound: all
sockets have timeouts, every subprocess call has a timeout, and a watchdog
alarm ends a test that somehow runs away.
"""
import contextlib
import datetime
import hashlib
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.normpath(os.path.join(HERE, "..", "..", "build"))

RINGTLS_BIN = os.environ.get("RINGTLS_BIN") or os.path.join(BUILD, "ringtls")
ECHO_BIN = os.environ.get("ECHO_BIN") or os.path.join(BUILD, "echo")
NO_URING_BIN = os.environ.get("NO_URING_BIN") or os.path.join(BUILD, "tests", "no_uring")
HOLD_BIN = os.environ.get("HOLD_BIN") or os.path.join(BUILD, "tests", "hold")
KU_CLIENT_BIN = os.environ.get("KU_CLIENT_BIN") or os.path.join(BUILD, "tests", "ku_client")
FORWARD_BIN = os.environ.get("FORWARD_BIN") or os.path.join(BUILD, "forward")

# RINGTLS_WRAP: a command put in front of every ringtls a test starts
# (scripts/valgrind.sh runs the suite under memcheck this way), and
# RTLS_TIME_SCALE: the factor such a slow run applies to the bounds below
# and to the other waits for something that must happen. Waits for
# something that must NOT happen are not scaled. RTLS_UNDER_VALGRIND=1
# lets a test shrink or skip what cannot be meaningful under valgrind.
WRAP = shlex.split(os.environ.get("RINGTLS_WRAP", ""))
if WRAP:
    # A launcher before ringtls (no_uring, setpriv) execs it by path.
    WRAP[0] = shutil.which(WRAP[0]) or WRAP[0]
TIME_SCALE = max(1.0, float(os.environ.get("RTLS_TIME_SCALE") or 1))
UNDER_VALGRIND = os.environ.get("RTLS_UNDER_VALGRIND") == "1"


def scaled(seconds):
    """A bound on a wait for something that must happen, in this run's time."""
    return seconds * TIME_SCALE


# An ASan build (scripts/sanitize.sh sets ASAN_OPTIONS for the suite).
ASAN = "ASAN_OPTIONS" in os.environ


@contextlib.contextmanager
def asan_quarantine(mb):
    """Processes started inside keep at most `mb` MiB of freed memory in
    ASan's quarantine (256 MiB by default), so that an RSS bound measures
    the program rather than the sanitizer. Nothing without ASan."""
    old = os.environ.get("ASAN_OPTIONS")
    if old is not None:
        os.environ["ASAN_OPTIONS"] = "%s:quarantine_size_mb=%d" % (old, mb)
    try:
        yield
    finally:
        if old is not None:
            os.environ["ASAN_OPTIONS"] = old


SKIP = 77
IO_TIMEOUT = scaled(5.0)      # default socket timeout, seconds
START_TIMEOUT = scaled(10.0)  # wait for "listening on"
STOP_TIMEOUT = scaled(10.0)   # terminate -> wait, then kill
WATCHDOG = 120                # a whole test file, seconds (scaled in main)

LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(http\)")
IMF_FIXDATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$")


class Skip(Exception):
    """Raised to end a test with exit status 77."""


# --------------------------------------------------------------------------
# Checks


class Checker:
    """Records failed checks; a test keeps going and reports them all."""

    def __init__(self):
        self.failures = []
        self.passed = 0

    def check(self, cond, msg):
        if cond:
            self.passed += 1
        else:
            self.failures.append(msg)
            print("FAIL: " + msg, flush=True)
        return bool(cond)

    def eq(self, got, want, msg):
        return self.check(got == want, "%s: got %s, want %s" % (msg, _short(got), _short(want)))

    def ok(self, msg):
        self.passed += 1
        if os.environ.get("RTLS_TEST_VERBOSE"):
            print("ok: " + msg, flush=True)

    def skip(self, msg):
        """A check this machine cannot make: reported, never counted as
        passed."""
        self.skipped = getattr(self, "skipped", 0) + 1
        print("SKIP: " + msg, flush=True)


def _short(v, limit=300):
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


# --------------------------------------------------------------------------
# Processes


_live = []      # every Process started and not yet stopped
_started = []   # every Process started, for the failure report
_tmpdirs = []   # removed at exit


def wrapped(argv):
    """argv with RINGTLS_WRAP put in front of the ringtls (echo, hold, forward) binary,
    after any launcher such as no_uring, so the wrapper sees ringtls itself."""
    argv = [str(a) for a in argv]
    for i, a in enumerate(argv):
        if WRAP and a in (RINGTLS_BIN, ECHO_BIN, HOLD_BIN, FORWARD_BIN):
            return argv[:i] + WRAP + argv[i:]
    return argv


class Process:
    """A child with stderr captured to a temp file; stopped by its PID."""

    def __init__(self, argv, name=None, env=None):
        self.argv = wrapped(argv)
        self.name = name or os.path.basename(self.argv[0])
        fd, self.err_path = tempfile.mkstemp(prefix="rtls-%s-" % self.name, suffix=".log")
        self._err = os.fdopen(fd, "w+b")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err,
                                     env=env, close_fds=True)
        self.pid = self.proc.pid
        self.returncode = None
        _live.append(self)
        _started.append(self)

    def log(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self):
        return [l for l in self.log().splitlines() if l]

    def wait_ports(self, *regexes, timeout):
        """The ports (group 1) of the log lines the regexes match, once
        all have appeared; raises with the log if the process exits first
        or `timeout` seconds pass."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            log = self.log()
            found = [r.search(log) for r in regexes]
            if all(found):
                return tuple(int(m.group(1)) for m in found)
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("%s did not start (exit %s); stderr:\n%s"
                           % (self.name, self.proc.poll(), self.log()))

    def alive(self):
        return self.proc.poll() is None

    def wait_log(self, pattern, timeout=5.0):
        """Waits until a log line matches the regex; returns the match or None."""
        rx = re.compile(pattern)
        end = time.monotonic() + scaled(timeout)
        while True:
            for line in self.log_lines():
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() >= end:
                return None
            time.sleep(0.02)

    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Waits for exit; returns the status, or None if still running."""
        try:
            self.returncode = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            return None
        self._forget()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """terminate -> wait with timeout (scaled) -> kill. Returns the exit status."""
        timeout = STOP_TIMEOUT if timeout is None else scaled(timeout)
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print("%s (pid %d) did not stop in %.0f s: killing" % (self.name, self.pid, timeout))
                self.proc.kill()
                self.proc.wait(timeout=scaled(5))
        self.returncode = self.proc.returncode
        self._forget()
        return self.returncode

    def fd_count(self):
        """Open descriptors of the process (/proc/PID/fd)."""
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def rss_kib(self):
        """VmRSS of the process, in KiB."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for pid %d" % self.pid)

    def _forget(self):
        if self in _live:
            _live.remove(self)


def check_backend(proc):
    """On a pass that names a backend (RINGTLS_BACKEND=epoll or io_uring),
    the server's start line must name it too: a pass that silently ran on
    the other backend would prove nothing."""
    want = os.environ.get("RINGTLS_BACKEND", "auto")
    if want not in ("epoll", "io_uring"):
        return
    m = proc.wait_log(r"reactor\(s\), serving .* on (io_uring|epoll)$", timeout=START_TIMEOUT)
    if not m or m.group(1) != want:
        raise RuntimeError("%s: RINGTLS_BACKEND=%s but it serves on %s"
                           % (proc.name, want, m.group(1) if m else "(no start line)"))


class Server(Process):
    """ringtls serve on 127.0.0.1:0; .port is parsed from the log."""

    def __init__(self, *args, root=None, threads=1, listen="127.0.0.1:0", wait=True):
        argv = [RINGTLS_BIN, "serve", "--listen", listen]
        if root is not None:
            argv += ["--root", root]
        if threads is not None:
            argv += ["--threads", str(threads)]
        argv += list(args)
        super().__init__(argv, name="ringtls")
        self.port = None
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout=None):
        self.port, = self.wait_ports(
            LISTEN_RE, timeout=START_TIMEOUT if timeout is None else scaled(timeout))
        check_backend(self)
        return self.port

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def connect(self, timeout=IO_TIMEOUT):
        return Conn(self.addr, timeout)

    def error_lines(self, port, status=None, since=None):
        """Log lines of the server's error reporting about one client port;
        with since (time.time() when that connection began: Conn.t0), only
        those logged from then on. A port the server closed first is free
        again at once, and an earlier connection's line on it must not be
        taken for this one's (CI saw it, under valgrind)."""
        pat = r"http 127\.0\.0\.1:%d: " % port
        if status is not None:
            pat += r"%d " % status
        rx = re.compile(pat)
        return [l for l in self.log_lines() if rx.search(l)
                and (since is None or logged_at(l) is None or logged_at(l) >= since - 0.002)]


def logged_at(line):
    """A log line's UTC timestamp as seconds since the epoch, or None."""
    try:
        return datetime.datetime.strptime(line[:24], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


def run_cmd(argv, timeout=15, input=None):
    """Runs a command to completion; returns CompletedProcess (bytes)."""
    return subprocess.run(wrapped(argv), input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=scaled(timeout))


def need_binary(path, what):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise Skip("%s not built: %s" % (what, path))


def need_curl():
    if not shutil.which("curl"):
        raise Skip("curl not installed")


def curl(*args, timeout=15):
    """curl -sS with a bounded run time; returns CompletedProcess (bytes)."""
    return run_cmd(["curl", "-sS", "--max-time", "%g" % scaled(10), *args], timeout=timeout)


def free_port():
    """A port that was free a moment ago (for programs that need a fixed one)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def listen_inodes(port):
    """Inodes of the sockets listening on 127.0.0.1:port (/proc/net/tcp), sorted."""
    out = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            c = line.split()
            if c[3] == "0A" and c[1] == "0100007F:%04X" % port:
                out.append(int(c[9]))
    return sorted(out)


def tcp_queued(ports):
    """Bytes the kernel holds, unsent (tx_queue) or unread (rx_queue), in
    the established TCP sockets with either end on one of ports: both ends
    of each connection, whichever process owns them (/proc/net/tcp{,6})."""
    total = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            c = line.split()
            if c[3] != "01":
                continue
            lp = int(c[1].rsplit(":", 1)[1], 16)
            rp = int(c[2].rsplit(":", 1)[1], 16)
            if lp in ports or rp in ports:
                tx, rx = c[4].split(":")
                total += int(tx, 16) + int(rx, 16)
    return total


# --------------------------------------------------------------------------
# Files


def temp_dir(prefix="rtls-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def write_file(path, data, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def make_root(files, base=None):
    """Creates base/root with files {relpath: bytes|str}; returns (base, root)."""
    base = base or temp_dir()
    root = os.path.join(base, "root")
    os.makedirs(root, exist_ok=True)
    for rel, data in files.items():
        write_file(os.path.join(root, rel), data)
    return base, root


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def pattern_bytes(n, seed=0):
    """n deterministic, non-repeating-looking bytes (sha256 counter stream)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------
# Raw HTTP over a socket


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value) in order
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        return "<Response %s %s %s, %d body bytes>" % (self.status, self.reason,
                                                      self.headers, len(self.body))


class ConnClosed(Exception):
    pass


STATUS_LINE_RE = re.compile(r"^(HTTP/\d\.\d) (\d{3}) (.*)$")


def parse_head(raw):
    """A Response (no body yet) from a response head, raw: its bytes up to
    and including the empty line. RFC 9112 §4: status-line = HTTP-version
    SP status-code SP [ reason-phrase ]: the reason may be empty (.reason
    is then ""), the SP before it may not be missing (a server MUST send
    it). Raises AssertionError on a malformed status or field line."""
    lines = raw[:-4].decode("latin-1").split("\r\n")
    m = STATUS_LINE_RE.fullmatch(lines[0])
    if not m:
        raise AssertionError("bad status line %r" % lines[0])
    headers = []
    for l in lines[1:]:
        k, sep, v = l.partition(":")
        if not sep:
            raise AssertionError("bad header line %r" % l)
        headers.append((k, v.strip()))
    return Response(m.group(1), int(m.group(2)), m.group(3), headers, b"", raw)


class SockOwner:
    """close() and `with` for a class whose connection is self.sock."""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Conn(SockOwner):
    """A client TCP connection with a receive buffer and bounded reads."""

    def __init__(self, addr, timeout=IO_TIMEOUT, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.t0 = time.time()   # for Process.error_lines(since=)
        self.sock.connect(addr)
        self.local_port = self.sock.getsockname()[1]
        self.buf = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise ConnClosed("connection closed by peer")
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            raise ConnClosed("connection closed by peer")
        self.buf += chunk

    def read_until(self, marker):
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head=False):
        """Reads one response; head=True for a response to HEAD (no body)."""
        r = parse_head(self.read_until(b"\r\n\r\n"))
        if head or r.status in (204, 304) or 100 <= r.status < 200:
            return r
        te = r.header("Transfer-Encoding")
        if te is not None:
            raise AssertionError("unexpected Transfer-Encoding: %r" % te)
        cl = r.header("Content-Length")
        if cl is None:
            r.body = self.read_to_eof()
        else:
            r.body = self.read_exact(int(cl))
        return r

    def read_to_eof(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self.eof:
            try:
                self._fill()
            except ConnClosed:
                break
        out, self.buf = self.buf, b""
        return out

    def closed_by_peer(self, timeout=3.0):
        """True if the peer ends the connection (FIN or RST) within timeout
        (scaled) with no further bytes; False on timeout or on extra bytes."""
        if self.buf:
            return False
        end = time.monotonic() + scaled(timeout)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                return True
            if not chunk:
                self.eof = True
                return True
            self.buf += chunk
            return False

    def idle(self, wait=0.2):
        """True if nothing arrives and the connection stays open for `wait` s."""
        r, _, _ = select.select([self.sock], [], [], wait)
        return not r


def request(method="GET", target="/", version="HTTP/1.1", host="localhost", headers=(),
            body=b""):
    """Builds one request head (+ body) as bytes."""
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: " + host)
    lines += list(headers)
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + (body.encode() if isinstance(body, str) else body)


def get(server, target, method="GET", headers=(), version="HTTP/1.1", timeout=IO_TIMEOUT):
    """One request on a fresh connection; returns the Response."""
    with server.connect(timeout) as c:
        c.send(request(method, target, version, headers=headers))
        return c.read_response(head=(method == "HEAD"))


# --------------------------------------------------------------------------
# Running a test


def _cleanup():
    for p in list(_live):
        try:
            p.stop(timeout=5)
        except Exception as e:  # noqa: BLE001 - keep cleaning up
            print("cleanup of pid %d: %r" % (p.pid, e))
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


def _watchdog(signum, frame):
    raise TimeoutError("test exceeded its watchdog (%d s)" % _watchdog_s[0])


_watchdog_s = [WATCHDOG]


def main(test_fn, watchdog=WATCHDOG):
    """Runs test_fn(checker) and exits 0 / 1 / 77. On failure prints the
    stderr of every server the test started."""
    t = Checker()
    started = _started
    watchdog = int(scaled(watchdog))
    _watchdog_s[0] = watchdog
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(watchdog)
    status = 0
    name = os.path.basename(sys.argv[0])
    try:
        test_fn(t)
    except Skip as e:
        print("SKIP %s: %s" % (name, e))
        status = SKIP
    except Exception:  # noqa: BLE001 - any error is a test failure
        t.failures.append("exception:\n" + traceback.format_exc())
        print("FAIL: exception:\n" + traceback.format_exc(), flush=True)
    finally:
        signal.alarm(0)
        _cleanup()
    if status == SKIP and not t.failures:
        sys.exit(SKIP)
    if t.failures:
        for p in started:
            print("---- stderr of %s (pid %d, exit %s): %s" % (p.name, p.pid, p.returncode,
                                                              " ".join(p.argv)))
            try:
                sys.stdout.write(p.log())
            except OSError:
                pass
            print("---- end")
        print("%s: %d check(s) failed, %d passed" % (name, len(t.failures), t.passed))
        for f in t.failures:
            print("  - " + f.splitlines()[0])
    for p in started:
        try:
            os.unlink(p.err_path)
        except OSError:
            pass
    if t.failures:
        sys.exit(1)
    print("%s: all %d checks passed" % (name, t.passed))
    sys.exit(0)
