"""What both kernel suites (ktls_suite.py, keyupdate_suite.py) share: the
binary under test, the skip code, the failure types and request builder
their checks use, the suite's work directory, /proc/net/tls_stat snapshots,
the ringtls server they start, a Python TLS client context, the built-in
page's cells and the summary line."""
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RINGTLS_BIN = os.environ.get("RINGTLS_BIN") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build", "ringtls"))
STAT_PATH = "/proc/net/tls_stat"
SKIP_RC = 77             # CTest's SKIP_RETURN_CODE
HELLO = b"Hello, World!"

START_TIMEOUT = 30.0     # a server's "listening on" lines
PROC_TIMEOUT = 60.0      # any client process
LOG_WAIT = 5.0           # a log line that must already be on its way


class Fail(Exception):
    pass


class SkipCheck(Exception):
    pass


def req(path="/hello", close=False):
    return ("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" %
            (path, "Connection: close\r\n" if close else "")).encode()


def print_summary(passed, failed, skipped=0):
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""),
          flush=True)


# --------------------------------------------------------------------------
# The work directory: the suite's temp directory, the --state-dir every
# server shares, and the self-signed certificate the first server writes
# there (the clients' trust anchor).


class Work:
    tmp = None
    state = None
    ca = None


WORK = Work()


def make_workdir(prefix):
    WORK.tmp = tempfile.mkdtemp(prefix=prefix)
    WORK.state = os.path.join(WORK.tmp, "state")
    os.makedirs(WORK.state)
    WORK.ca = os.path.join(WORK.state, "selfsigned-cert.pem")
    return WORK.tmp


def remove_workdir():
    if WORK.tmp:
        shutil.rmtree(WORK.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# /proc/net/tls_stat


def read_stat():
    """{counter: value}, or None where the file is missing (no kernel TLS)."""
    try:
        with open(STAT_PATH) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


class Counters:
    """A snapshot of tls_stat; .delta() is what each counter rose by since."""

    def __init__(self):
        self.before = read_stat()
        self.after = None

    def delta(self):
        """{counter: after - before}; None where either read found no file."""
        self.after = read_stat()
        if self.before is None or self.after is None:
            return None
        return {k: self.after.get(k, 0) - self.before.get(k, 0)
                for k in set(self.after) | set(self.before)}


# --------------------------------------------------------------------------
# The server under test

LISTEN_TLS_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")
LISTEN_TCP_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(http\)")
TLS_LINE_RE = re.compile(
    r" debug tls 127\.0\.0\.1:(?P<port>\d+): (?P<version>\S+) (?P<cipher>\S+) alpn=(?P<alpn>\S+) "
    r"sni=(?P<sni>\S+) resumed=(?P<resumed>yes|no) client=(?P<client>.*?) "
    r"kernel-tx=(?P<ktx>yes|no) kernel-rx=(?P<krx>yes|no)$")
INFO_LINE_RE = re.compile(r"^\S+ (info|warn|error) (.*)$", re.M)

SERVERS = []             # the servers running, for stop_all()


def stop_proc(p, timeout=10.0, name=None):
    """SIGTERM -> wait -> SIGKILL, by this process object (its PID) only."""
    if p.poll() is None:
        try:
            p.terminate()
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if name:
                print("  %s (pid %d) ignored SIGTERM: killing" % (name, p.pid), flush=True)
            p.kill()
            p.wait(timeout=10)
        except ProcessLookupError:
            pass
    return p.returncode


class Server:
    """ringtls serve --tls-listen 127.0.0.1:0 (plain: and --listen
    127.0.0.1:0) with the shared --state-dir, its debug log in a file in
    the work directory; the ports come from its listening lines."""

    def __init__(self, *extra, root=None, plain=False, name="ringtls"):
        self.name = name
        argv = [RINGTLS_BIN, "serve", "--tls-listen", "127.0.0.1:0", "--state-dir", WORK.state,
                "--threads", "1", "--log-level", "debug"]
        if root:
            argv += ["--root", root]
        if plain:
            argv += ["--listen", "127.0.0.1:0"]
        argv += list(extra)
        self.argv = argv
        fd, self.log_path = tempfile.mkstemp(prefix=name + "-", suffix=".log", dir=WORK.tmp)
        self._log = os.fdopen(fd, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, close_fds=True)
        self.pid = self.proc.pid
        SERVERS.append(self)
        self.port = self.plain_port = None
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            text = self.log()
            m = LISTEN_TLS_RE.search(text)
            m2 = LISTEN_TCP_RE.search(text)
            if m and (m2 or not plain):
                self.port = int(m.group(1))
                self.plain_port = int(m2.group(1)) if m2 else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        rc = self.proc.poll()
        self.stop()
        raise Fail("%s did not start (exit %s): %s\n%s" % (name, rc, " ".join(argv), self.log()))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def mark(self):
        return os.path.getsize(self.log_path)

    def lines_since(self, mark=0):
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return [l for l in f.read().decode("utf-8", "replace").splitlines() if l]

    def tls_lines(self, mark=0):
        """The debug line of each TLS connection opened since `mark`, as a
        dict: port, version, cipher, alpn, sni, resumed, client, ktx, krx."""
        return [m.groupdict() for m in (TLS_LINE_RE.search(l) for l in self.lines_since(mark)) if m]

    def wait_line(self, mark, pattern, timeout=LOG_WAIT):
        """The first line since `mark` that matches; None after `timeout`."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            for l in self.lines_since(mark):
                if rx.search(l):
                    return l
            if time.monotonic() >= end:
                return None
            time.sleep(0.05)

    def info_lines(self):
        """Log lines at info or above, after start-up."""
        return [m.group(2) for m in INFO_LINE_RE.finditer(self.log())
                if not re.match(r"(listening on|ringtls \d|TLS uses|generated a self-signed|"
                                r"SIGTERM|stopped)", m.group(2))]

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        stop_proc(self.proc, 15, self.name)
        if self in SERVERS:
            SERVERS.remove(self)
        try:
            self._log.close()
        except OSError:
            pass
        return self.proc.returncode

    def url(self, path="/hello"):
        return "https://localhost:%d%s" % (self.port, path)


def stop_all():
    for s in list(SERVERS):
        try:
            s.stop()
        except Exception:
            pass


# --------------------------------------------------------------------------
# Clients


def client_ctx(version="1.3", cipher=None, cert=None):
    """A Python client context trusting the servers' certificate: TLS 1.3
    (cipher: ignored), or TLS 1.2 only (cipher: an OpenSSL cipher list)."""
    ctx = ssl.create_default_context(cafile=WORK.ca)
    if version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cipher:
            ctx.set_ciphers(cipher)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def page_cells(page):
    """The built-in page's <td id=NAME>VALUE</td> cells: {NAME: VALUE}."""
    return dict(re.findall(r"<td id=(\w+)>([^<]*)</td>", page))
