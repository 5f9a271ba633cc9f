#!/usr/bin/env python3
"""HTTP/2 in a real browser (issue 16 §4): headless Chromium (Debian's
chromium, scripts/deps.sh) loads ringtls's built-in page over TLS, and the
page it renders says HTTP/2 and ALPN h2.

- Server A (TLS, self-signed certificate in a temporary --state-dir,
  --access-log): chromium --dump-dom https://127.0.0.1:PORT/ renders
  <td id=http>HTTP/2</td> and <td id=alpn>h2</td>; /hello renders
  "Hello, World!"; the access log has both requests as HTTP/2.0 with
  alpn=h2 from HeadlessChrome.
- Server B (the same with --no-http2), the control: the page chromium
  renders says HTTP/1.1 and ALPN http/1.1, and so does the access log.

Chromium trusts exactly the server's key: --ignore-certificate-errors-spki-list
with the sha256 of the certificate's SubjectPublicKeyInfo (computed with
the openssl CLI), which Chromium honours only with --user-data-dir (a fresh
temporary one per run). It runs as root here, so --no-sandbox.

Every chromium run is bounded: it starts in its own session, and on the
timeout its process group is killed (SIGKILL) while the leader is still
unreaped, so that the group id cannot have been reused; chromium's crashpad
handlers make sessions of their own, so a marker put in chromium's
environment finds them in /proc and they are killed by PID. A test checks
that nothing of a run is left.

SKIP (77), never PASS: chromium not installed, or the first page fails
to load and chromium cannot render a data: URL here either (it cannot
start on this machine); if it can, the failure is ringtls's: FAIL."""
import base64
import hashlib
import html
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import rtls_test as rt
import tls_util as tu

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium")
RUN_TIMEOUT = rt.scaled(20.0)   # one chromium run, seconds
CELL_RE = re.compile(r'<td id="?(\w+)"?>(.*?)</td>')
PRE_RE = re.compile(r"<pre[^>]*>(.*?)</pre>", re.S)
PROBE_URL = "data:text/html,<p id=probe>chromium runs</p>"
PROBE_DOM = '<p id="probe">chromium runs</p>'


def spki_sha256(cert_path):
    """base64(sha256(SubjectPublicKeyInfo DER)) of a PEM certificate: the
    body of `openssl x509 -pubkey`'s PUBLIC KEY block is that DER."""
    p = rt.run_cmd(["openssl", "x509", "-in", cert_path, "-noout", "-pubkey"])
    pem = p.stdout.decode()
    m = re.search(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", pem, re.S)
    if p.returncode != 0 or not m:
        raise RuntimeError("openssl x509 -pubkey %s: %r" % (cert_path, p.stderr))
    der = base64.b64decode("".join(m.group(1).split()))
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class ChromiumRun:
    def __init__(self, rc, timed_out, dom, err, leftover):
        self.rc = rc
        self.timed_out = timed_out
        self.dom = dom
        self.err = err
        self.leftover = leftover    # PIDs of the run still alive after cleanup

    def cells(self):
        return {k: html.unescape(v) for k, v in CELL_RE.findall(self.dom)}

    def pre_text(self):
        m = PRE_RE.search(self.dom)
        return html.unescape(m.group(1)) if m else None

    def __repr__(self):
        errs = [l for l in self.err.splitlines() if "dbus" not in l.lower()]
        return "<chromium rc=%s timed_out=%s dom=%r stderr tail=%r>" % (
            self.rc, self.timed_out, self.dom[-600:], errs[-8:])


class Chromium:
    """Runs `chromium --headless=new ... --dump-dom URL`, bounded."""

    def __init__(self, base):
        self.base = base
        self.n = 0

    def _tagged(self, tag):
        """PIDs of live processes whose environment has the run's marker."""
        want = ("RTLS_CHROMIUM_RUN=" + tag).encode()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    if want in f.read().split(b"\0"):
                        pids.append(int(d))
            except OSError:
                pass
        return pids

    def _reap_group(self, proc, deadline):
        """Waits for the leader to exit without reaping it (WNOWAIT), until
        deadline; then kills what is left of its process group and reaps
        it. True if it exited by itself."""
        exited = False
        while True:
            try:
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    exited = True
                    break
            except ChildProcessError:
                exited = True
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        # The unreaped leader keeps its PID, and so its group id, ours.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=rt.scaled(5))
        return exited

    def dump_dom(self, url, spki=None):
        self.n += 1
        d = os.path.join(self.base, "chromium-%d" % self.n)
        home = os.path.join(d, "home")
        os.makedirs(home)
        tag = uuid.uuid4().hex
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"), RTLS_CHROMIUM_RUN=tag)
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--user-data-dir=" + os.path.join(d, "profile"),
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage"]
        if spki:
            argv.append("--ignore-certificate-errors-spki-list=" + spki)
        argv += ["--dump-dom", url]
        out_path, err_path = os.path.join(d, "stdout"), os.path.join(d, "stderr")
        # Files, not pipes: a straggler holding a pipe open would block us.
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=env, close_fds=True, start_new_session=True)
        exited = False
        try:
            exited = self._reap_group(proc, time.monotonic() + RUN_TIMEOUT)
        finally:
            if proc.returncode is None:     # an exception (the watchdog) came first
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait(timeout=rt.scaled(5))
            for pid in self._tagged(tag):   # crashpad: sessions of its own
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        leftover = []
        end = time.monotonic() + rt.scaled(3)
        while True:
            leftover = self._tagged(tag)
            if not leftover or time.monotonic() >= end:
                break
            time.sleep(0.05)
        with open(out_path, "rb") as f:
            dom = f.read().decode("utf-8", "replace")
        with open(err_path, "rb") as f:
            errtext = f.read().decode("utf-8", "replace")
        return ChromiumRun(proc.returncode, not exited, dom, errtext, leftover)


def bounded(t, what, r):
    t.check(not r.timed_out, "%s: chromium finished within %.0f s: %r" % (what, RUN_TIMEOUT, r))
    t.check(not r.leftover, "%s: no chromium process left after the run: %r" % (what, r.leftover))


def alog_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test(t):
    if not (CHROMIUM and os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise rt.Skip("chromium not installed (%s; scripts/deps.sh test installs Debian's chromium)"
                      % (CHROMIUM or "not on PATH"))
    base = rt.temp_dir("rtls-h2-browser-")
    chromium = Chromium(base)

    alog_a = os.path.join(base, "a-access.log")
    alog_b = os.path.join(base, "b-access.log")
    a = tu.TlsServer("--access-log", alog_a)
    b = tu.TlsServer("--access-log", alog_b, "--no-http2")
    cert = os.path.join(a.state_dir, "selfsigned-cert.pem")
    spki_a = spki_sha256(cert)
    spki_b = spki_sha256(os.path.join(b.state_dir, "selfsigned-cert.pem"))

    # A: HTTP/2 by ALPN.
    r = chromium.dump_dom(a.url("/"), spki=spki_a)
    if r.timed_out or r.rc != 0 or not r.cells():
        # Did chromium fail, or can it not start here? It must render a
        # data: URL, else SKIP.
        p = chromium.dump_dom(PROBE_URL)
        if p.timed_out or p.rc != 0 or PROBE_DOM not in p.dom:
            raise rt.Skip("chromium (%s) cannot render a data: URL here: %r" % (CHROMIUM, p))
        bounded(t, "probe (data: URL)", p)
    bounded(t, "A /", r)
    cells = r.cells()
    t.check(r.rc == 0 and cells.get("http") == "HTTP/2" and cells.get("alpn") == "h2"
            and cells.get("transport") == "TLS",
            "A: the built-in page chromium renders says HTTP/2 and ALPN h2 over TLS: %r %r"
            % (cells, r))
    r = chromium.dump_dom(a.url("/hello"), spki=spki_a)
    bounded(t, "A /hello", r)
    t.check(r.rc == 0 and r.pre_text() == tu.HELLO.decode(),
            "A: chromium renders /hello as %r: %r" % (tu.HELLO, r))

    # B, the control: --no-http2, so HTTP/1.1 by ALPN.
    r = chromium.dump_dom(b.url("/"), spki=spki_b)
    bounded(t, "B /", r)
    cells = r.cells()
    t.check(r.rc == 0 and cells.get("http") == "HTTP/1.1" and cells.get("alpn") == "http/1.1"
            and cells.get("transport") == "TLS",
            "B (--no-http2): the page chromium renders says HTTP/1.1 and ALPN http/1.1: %r %r"
            % (cells, r))

    tu.stop_ok(t, a, "server A")
    tu.stop_ok(t, b, "server B (--no-http2)")

    # The server's side of it: what each request came as, from whom.
    lines = alog_lines(alog_a)
    for path, tail in (("/", ""), ("/hello", " 13")):
        t.check(any(('"GET %s HTTP/2.0" 200%s ' % (path, tail)) in l and "HeadlessChrome/" in l
                    and " alpn=h2 " in l for l in lines),
                "A: access log: GET %s HTTP/2.0 200 from HeadlessChrome, alpn=h2: %r"
                % (path, lines))
    t.check(not any("HTTP/1." in l for l in lines), "A: access log: no HTTP/1.x request: %r" % lines)
    lines = alog_lines(alog_b)
    t.check(any('"GET / HTTP/1.1" 200 ' in l and "HeadlessChrome/" in l and " alpn=http/1.1 " in l
                for l in lines),
            "B: access log: GET / HTTP/1.1 200 from HeadlessChrome, alpn=http/1.1: %r" % lines)
    t.check(not any("HTTP/2" in l for l in lines), "B: access log: no HTTP/2 request: %r" % lines)


if __name__ == "__main__":
    tu.main(test, watchdog=90)
