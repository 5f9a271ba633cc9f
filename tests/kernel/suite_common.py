"""What the kernel suites (ktls_suite.py, keyupdate_suite.py,
proxy_suite.py, reload_suite.py) share: the binary under test, the skip
code, the failure types and request builder their checks use, the suite's
work directory, /proc/net/tls_stat snapshots, the ringtls server they
start, a Python TLS client context, the built-in page's cells and the
summary line; and for proxy_suite.py and reload_suite.py, the frame of
their main() and the check runner."""
import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

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


# The start line, the last one: "ringtls V: N reactor(s), serving ROOT on BACKEND".
SERVING_RE = re.compile(r"reactor\(s\), serving .* on (io_uring|epoll)$", re.M)


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
            m3 = SERVING_RE.search(text)
            if m and (m2 or not plain) and m3:
                self.port = int(m.group(1))
                self.plain_port = int(m2.group(1)) if m2 else None
                # The epoll pass (RINGTLS_BACKEND=epoll) must run on epoll.
                want = os.environ.get("RINGTLS_BACKEND", "auto")
                if want in ("epoll", "io_uring") and m3.group(1) != want:
                    self.stop()
                    raise Fail("%s serves on %s, RINGTLS_BACKEND=%s" % (name, m3.group(1), want))
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

    def conn_tls_lines(self, mark, port, timeout):
        """tls_lines(mark) of the connection from client port `port`,
        waiting up to `timeout` seconds for its line; [] if none came."""
        end = time.monotonic() + timeout
        lines = []
        while time.monotonic() < end:
            lines = [l for l in self.tls_lines(mark) if int(l["port"]) == port]
            if lines:
                break
            time.sleep(0.1)
        return lines

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


def admin_metrics(srv, timeout=20.0):
    """The /metrics text of srv's admin listener (its `(admin)` listening
    line), or None where it has none."""
    m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(admin\)", srv.log())
    if not m:
        return None
    data = b""
    with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=timeout) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace")


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


# --------------------------------------------------------------------------
# The frame of proxy_suite.py and reload_suite.py: --only, the skips, the
# watchdog, one line a check, and the summary with the exit status.

RESULTS = []             # "PASS" or "FAIL", a check (or a failure outside one)


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


def expect_eq(got, want, what):
    if got != want:
        raise Fail("%s: got %s, want %s" % (what, repr(got)[:300], repr(want)[:300]))


def offload_deltas(ctr):
    """(TlsTxSw, TlsRxSw, TlsDecryptError) risen since the Counters
    snapshot `ctr`; Fail where tls_stat is missing."""
    d = ctr.delta()
    if d is None:
        raise Fail("%s is missing" % STAT_PATH)
    return d.get("TlsTxSw", 0), d.get("TlsRxSw", 0), d.get("TlsDecryptError", 0)


def start_suite(doc, watchdog):
    """The start of main(): parses --only REGEX, ends the process (exit 77)
    where there is no kernel TLS or no binary, or (exit 1) where ringtls
    probe finds no tls ULP, then arms a `watchdog`-second alarm that
    raises SystemExit. Returns (only, full): the compiled --only or None,
    and the server flags for full offload on this kernel."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--only", help="run only the checks whose name matches this regex")
    a = ap.parse_args()
    only = re.compile(a.only) if a.only else None

    stat = read_stat()
    if stat is None:
        print("SKIP all: %s is missing: no kernel TLS here (run me through "
              "tests/kernel/run-kernel.sh)" % STAT_PATH)
        print_summary(0, 0, 1)
        sys.exit(SKIP_RC)
    if not os.access(RINGTLS_BIN, os.X_OK):
        print("SKIP all: no ringtls binary at %s (set RINGTLS_BIN)" % RINGTLS_BIN)
        print_summary(0, 0, 1)
        sys.exit(SKIP_RC)
    probe = subprocess.run([RINGTLS_BIN, "probe"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=PROC_TIMEOUT).stdout.decode("utf-8", "replace")
    if not re.search(r"^tls ULP:\s+yes", probe, re.M):
        print("FAIL setup: %s exists but ringtls probe finds no tls ULP:\n%s" % (STAT_PATH, probe))
        print_summary(0, 1)
        sys.exit(1)
    full = [] if "TlsRxRekeyOk" in stat else ["--ktls-rx-no-rekey"]

    def on_alarm(signum, frame):
        raise SystemExit("the suite ran past %d s" % watchdog)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(watchdog)
    return only, full


def check(only, name, fn, *args):
    """fn(*args) unless --only leaves `name` out: PASS with what it
    returned, or FAIL with the Fail's message or the crash's trace."""
    if only and not only.search(name):
        return
    t0 = time.monotonic()
    # Session lines are found by the client's port, and the kernel may
    # give a later client the port of an earlier one (each listener port
    # is a destination with its own ephemeral sequence): a lookup sees
    # only the lines logged since this check began (CI: "log lines
    # naming the client: got 2, want 1").
    ttp = sys.modules.get("test_tcp_proxy")
    if ttp is not None:
        ttp.PART_T0 = time.time()
    try:
        detail = fn(*args)
        status = "PASS"
    except Fail as e:
        status, detail = "FAIL", str(e)
    except Exception as e:  # noqa: BLE001 - a crashed check failed
        status, detail = "FAIL", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
    if os.environ.get("KTLS_SUITE_TIMES"):
        detail = "%s [%.1f s]" % (detail or "", time.monotonic() - t0)
    RESULTS.append(status)
    print("%s %s%s" % (status, name, ("  (%s)" if status == "PASS" else ": %s") % detail
                       if detail else ""), flush=True)


def stop_server(srv):
    """SIGTERM to the suite's server: a FAIL unless it was alive and exits 0."""
    alive = srv.alive()
    rc = srv.stop()
    if not (alive and rc == 0):
        RESULTS.append("FAIL")
        print("FAIL server: alive %s, exit status %s after SIGTERM; log tail:\n%s"
              % (alive, rc, "\n".join(srv.log().splitlines()[-15:])), flush=True)


def run_suite(prefix, body, cleanup=None):
    """make_workdir(prefix), then body(): the watchdog, a Fail or a crash
    escaping it is one FAIL line. Then the alarm is disarmed, every server
    stopped, cleanup() called and the work directory removed. Prints the
    summary; returns the exit status: 1 on a failure, 0 when something
    passed, else 77."""
    make_workdir(prefix)
    try:
        body()
    except SystemExit as e:
        RESULTS.append("FAIL")
        print("FAIL watchdog: %s" % e, flush=True)
    except Fail as e:
        RESULTS.append("FAIL")
        print("FAIL setup: %s" % e, flush=True)
    except Exception as e:  # noqa: BLE001
        RESULTS.append("FAIL")
        print("FAIL suite: %s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()), flush=True)
    finally:
        signal.alarm(0)
        stop_all()
        if cleanup:
            cleanup()
        remove_workdir()
    passed, failed = RESULTS.count("PASS"), RESULTS.count("FAIL")
    print_summary(passed, failed)
    if failed:
        return 1
    return 0 if passed else SKIP_RC
