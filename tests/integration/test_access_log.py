#!/usr/bin/env python3
"""The access log (issue 17 section 3): --access-log FILE|- and
--access-log-format combined|json, end to end.

- combined and json, over plaintext and TLS: one line per request with
  the exact status, body bytes, request line, Referer, User-Agent, peer
  port, and for TLS the version, cipher, SNI, ALPN, resumption and the
  record path of each direction (the built-in page says which the server
  used: userspace on a host without kTLS);
- HEAD (0 body bytes), 404, 400, 414 and 408 get their line;
- a client's quotes, backslashes, control bytes, bare LF and invalid
  UTF-8 in the request line and headers can neither forge a line nor
  break one: every combined line parses, every JSON line json.loads,
  and the fields decode back to what the client sent;
- SIGUSR1 with Debian's logrotate (create, no copytruncate, postrotate
  kill -USR1): lines written while requests keep coming all land in the
  old or the new file, none lost, none twice, and those after the reopen
  in the new file;
- a log that cannot be written: /dev/full, a directory removed before a
  reopen, a file made read-only before a reopen (as nobody, through
  setpriv, when run as root), a file over RLIMIT_FSIZE that is then
  truncated (the episode ends, "written again"): requests are served,
  one stderr line per episode; an unopenable log at start is one line
  and exit 1;
- a writer that cannot keep up (a FIFO nobody reads): requests are
  still answered at once, lines are dropped and counted in one line
  when the episode ends;
- a proxied request (200 with the upstream's bytes, 502 from a broken
  upstream): one line each;
- --access-log - writes to standard output; SIGUSR1 without a log and
  SIGHUP leave the server running."""
import codecs
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time

import rtls_test as rt
import tls_util as tu
import upstreams

HELLO = b"Hello, World!"

CLF_RE = re.compile(
    r'^(?P<ip>\S+) - - \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
    r'"(?P<request>(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\x[0-9a-f]{2})*)" (?P<status>\d{3}) '
    r'(?P<bytes>\d+) "(?P<referer>(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\x[0-9a-f]{2})*)" '
    r'"(?P<ua>(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\x[0-9a-f]{2})*)"'
    r'(?P<kv>(?: [a-z_]+=(?:[\x21\x23-\x5b\x5d-\x7e]|\\x[0-9a-f]{2})+)*)$')
KV_KEYS = ["remote_port", "request_time_us", "tls_version", "tls_cipher", "sni", "alpn",
           "resumed", "tx_path", "rx_path"]
JSON_KEYS = ["time", "remote_addr", "remote_port", "request", "status", "body_bytes_sent",
             "referer", "user_agent", "request_time_us", "tls_version", "tls_cipher", "sni",
             "alpn", "resumed", "tx_path", "rx_path"]
PATH_OF = {"userspace (OpenSSL)": "userspace", "kernel (kTLS)": "kernel"}


def unclf(s):
    """A combined field's bytes: \\xHH decoded."""
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), s.encode("ascii"))


def parse_clf(line):
    """A combined line as a dict (the key=value fields included), or None."""
    m = CLF_RE.match(line)
    if not m:
        return None
    d = m.groupdict()
    kv = dict(p.split("=", 1) for p in d.pop("kv").split())
    if list(kv) != KV_KEYS:
        return None
    d.update(kv)
    return d


def json_of(raw):
    """What the server's JSON string for raw bytes decodes to: valid UTF-8
    as itself, every other byte as U+00XX."""
    return raw.decode("utf-8", errors="alog")


def _byte_chars(e):
    return "".join(chr(b) for b in e.object[e.start:e.end]), e.end


codecs.register_error("alog", _byte_chars)


# --------------------------------------------------------------------------
# The server and its log


class Server(rt.Process):
    """ringtls serve on a plain and a TLS port, with --access-log."""

    def __init__(self, log, *args, fmt=None, threads=1, launcher=(), tls=True, wait=True,
                 state_dir=None):
        argv = list(launcher) + [rt.RINGTLS_BIN, "serve", "--listen", "127.0.0.1:0",
                                 "--threads", str(threads)]
        if tls:
            argv += ["--tls-listen", "127.0.0.1:0", "--state-dir",
                     state_dir or rt.temp_dir("rtls-alog-state-")]
        if log is not None:
            argv += ["--access-log", log]
        if fmt:
            argv += ["--access-log-format", fmt]
        argv += list(args)
        super().__init__(argv, name="ringtls")
        self.port = self.tls_port = None
        if wait:
            if tls:
                self.port, self.tls_port = self.wait_ports(rt.LISTEN_RE, tu.HTTPS_LISTEN_RE,
                                                           timeout=rt.START_TIMEOUT)
            else:
                self.port, = self.wait_ports(rt.LISTEN_RE, timeout=rt.START_TIMEOUT)

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def matching(self, pattern):
        rx = re.compile(pattern)
        return [l for l in self.log_lines() if rx.search(l)]


def read_lines(path, enc="latin-1"):
    """The log's lines; enc="utf-8" also checks that it is UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode(enc).split("\n")[:-1]


def wait_lines(path, n, timeout=5.0):
    """The log's lines once it has at least n (or what it has at the bound)."""
    end = time.monotonic() + rt.scaled(timeout)
    while True:
        lines = read_lines(path)
        if len(lines) >= n or time.monotonic() >= end:
            return lines
        time.sleep(0.02)


def plain_get(s, target, headers=(), method="GET"):
    with rt.Conn(s.addr) as c:
        c.send(rt.request(method, target, headers=headers))
        r = c.read_response(head=(method == "HEAD"))
        return r, c.local_port


def tls_get(s, target, method="GET", headers=()):
    with tu.TlsConn(s.tls_port, tu.client_ctx(), server_hostname="localhost") as c:
        c.send(tu.req(target, method=method, headers=headers))
        if method == "HEAD":
            raw = b""
            while b"\r\n\r\n" not in raw:
                raw += c.sock.recv(65536)
            r = tu.Resp(raw.split(b"\r\n")[0].decode(), [], b"")
        else:
            r = c.read_response()
        return r, c.local_port, c.sock.version(), c.sock.cipher()[0]


def raw_send(s, data, wait_close=True):
    """Sends bytes on a fresh plain connection; returns what came back."""
    with rt.Conn(s.addr) as c:
        c.send(data)
        return c.read_to_eof(timeout=rt.IO_TIMEOUT) if wait_close else b""


def server_paths(s):
    """The record paths the server reports for a TLS connection (the
    built-in page): ('userspace', 'userspace') on a host without kTLS."""
    r, _, _, _ = tls_get(s, "/")
    cells = tu.page_cells(r.body)
    return PATH_OF.get(cells.get("tx")), PATH_OF.get(cells.get("rx"))


# --------------------------------------------------------------------------
# The formats


def check_tls_fields(t, what, get, version, cipher, paths, resumed):
    t.eq(get("tls_version"), version, what + ": tls_version")
    t.eq(get("tls_cipher"), cipher, what + ": tls_cipher")
    t.eq(get("sni"), "localhost", what + ": sni")
    t.eq(get("alpn"), "http/1.1", what + ": alpn")
    t.eq(get("resumed"), resumed, what + ": resumed")
    t.eq((get("tx_path"), get("rx_path")), paths, what + ": tx_path, rx_path")


def test_combined(t, d):
    log = os.path.join(d, "combined.log")
    s = Server(log)
    paths = server_paths(s)
    t.check(paths in (("userspace", "userspace"), ("userspace", "kernel"), ("kernel", "userspace"),
                      ("kernel", "kernel")), "the built-in page names the record paths: %r" % (paths,))
    r1, p1 = plain_get(s, "/hello?x=1", headers=("Referer: http://example.test/a b",
                                                 "User-Agent: test/1.0"))
    t.eq(r1.body, HELLO, "plain /hello")
    r2, p2, ver, cipher = tls_get(s, "/hello")
    t.eq(r2.body, HELLO, "TLS /hello")
    r3, p3, _, _ = tls_get(s, "/hello", method="HEAD")
    r4, p4 = plain_get(s, "/nope")
    t.eq(r4.status, 404, "plain /nope")
    lines = wait_lines(log, 5)
    t.eq(len(lines), 5, "combined: one line per request (page, 4 requests)")
    recs = [parse_clf(l) for l in lines]
    t.check(all(recs), "combined: every line parses: %r" % lines)
    if len(recs) != 5 or not all(recs):
        return
    page, a, b, c, e = recs
    t.eq((page["request"], page["status"]), ("GET / HTTP/1.1", "200"), "combined: the page")
    t.eq((a["ip"], a["remote_port"], a["request"], a["status"], a["bytes"]),
         ("127.0.0.1", str(p1), "GET /hello?x=1 HTTP/1.1", "200", "13"), "combined: plain /hello")
    t.eq((unclf(a["referer"]), a["ua"]), (b"http://example.test/a b", "test/1.0"),
         "combined: Referer and User-Agent")
    t.eq([a[k] for k in ("tls_version", "tls_cipher", "sni", "alpn", "resumed", "tx_path",
                         "rx_path")], ["-"] * 7, "combined: plaintext has no TLS fields")
    t.check(0 <= int(a["request_time_us"]) < 5000000, "combined: request_time_us %s" % a["request_time_us"])
    t.eq((b["remote_port"], b["request"], b["status"], b["bytes"], b["referer"]),
         (str(p2), "GET /hello HTTP/1.1", "200", "13", "-"), "combined: TLS /hello")
    check_tls_fields(t, "combined TLS", b.get, ver, cipher, paths, "0")
    t.eq((c["request"], c["status"], c["bytes"], c["remote_port"]),
         ("HEAD /hello HTTP/1.1", "200", "0", str(p3)), "combined: HEAD has 0 body bytes")
    t.eq((e["request"], e["status"], e["bytes"]), ("GET /nope HTTP/1.1", "404", "14"),
         "combined: 404")
    tu.stop_ok(t, s, "combined server")


def test_json(t, d):
    log = os.path.join(d, "json.log")
    s = Server(log, fmt="json")
    paths = server_paths(s)
    r1, p1 = plain_get(s, "/hello", headers=("User-Agent: j/2",))
    r2, p2, ver, cipher = tls_get(s, "/hello", headers=("Referer: https://r.test/",))
    lines = wait_lines(log, 3)
    t.eq(len(lines), 3, "json: one line per request")
    try:
        recs = [json.loads(l) for l in lines]
    except ValueError as ex:
        t.check(False, "json: every line loads: %s" % ex)
        return
    if len(recs) != 3:
        return
    _, a, b = recs
    t.eq(list(a), JSON_KEYS, "json: the keys, in order")
    t.eq((a["remote_addr"], a["remote_port"], a["request"], a["status"], a["body_bytes_sent"],
          a["referer"], a["user_agent"]),
         ("127.0.0.1", p1, "GET /hello HTTP/1.1", 200, 13, None, "j/2"), "json: plain /hello")
    t.eq([a[k] for k in ("tls_version", "tls_cipher", "sni", "alpn", "resumed", "tx_path",
                         "rx_path")], [None] * 7, "json: plaintext has null TLS fields")
    t.check(isinstance(a["request_time_us"], int) and 0 <= a["request_time_us"] < 5000000,
            "json: request_time_us is an integer: %r" % a["request_time_us"])
    t.check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", a["time"]) is not None,
            "json: ISO 8601 time: %r" % a["time"])
    t.eq((b["remote_port"], b["request"], b["status"], b["body_bytes_sent"], b["referer"],
          b["user_agent"]), (p2, "GET /hello HTTP/1.1", 200, 13, "https://r.test/", None),
         "json: TLS /hello")
    check_tls_fields(t, "json TLS", b.get, ver, cipher, paths, False)
    tu.stop_ok(t, s, "json server")


def test_proxy_protocol(t, d):
    """After a PROXY protocol header, the address is the client it names."""
    log = os.path.join(d, "pp.log")
    s = Server(log, "--proxy-protocol-from", "127.0.0.1", fmt="json", tls=False)
    with rt.Conn(s.addr) as c:
        c.send(b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n" + rt.request("GET", "/hello"))
        t.eq(c.read_response().body, HELLO, "PROXY v1 then /hello")
    recs = [json.loads(l) for l in wait_lines(log, 1)]
    t.eq([(x["remote_addr"], x["remote_port"]) for x in recs], [("192.0.2.9", 5555)],
         "PROXY protocol: the header's client is the line's address")
    tu.stop_ok(t, s, "PROXY protocol server")


# --------------------------------------------------------------------------
# What a client can put into a line


EVIL_UA = b'x" 200 0 "-" "forged" \\ \t\xff\xfe\xc3\x28 caf\xc3\xa9 \xe2\x82 \xf0\x9f\x98\x80 \xed\xa0\x80 end'
EVIL_REF = b'"}\n{"status":200,"forged":true}'.replace(b"\n", b" ")
# Each: (bytes sent, the request line as the server saw it, status).
HOSTILE = [
    (b'GET /a"b\x01c\xff\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n', b'GET /a"b\x01c\xff\xc3\xa9 HTTP/1.1', 400),
    (b'GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: ' + EVIL_UA + b'\r\nReferer: ' + EVIL_REF
     + b'\r\n\r\n', b"GET /x HTTP/1.1", 404),
    (b'GET /line\nGET /forged HTTP/1.1\r\nHost: x\r\n\r\n', b"GET /line", 400),
    (b'GET /q\\"\x1b[31m HTTP/1.1\r\n\r\n', b'GET /q\\"\x1b[31m HTTP/1.1', 400),
    (b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (b"GET /" + b"u" * 9000)[:8192], 414),
]


def test_hostile(t, d, fmt):
    log = os.path.join(d, "hostile-%s.log" % fmt)
    s = Server(log, fmt=fmt, tls=False)
    for data, _, _ in HOSTILE:
        raw_send(s, data)
    wait_lines(log, len(HOSTILE))
    time.sleep(0.2)
    try:
        lines = read_lines(log, "utf-8")
    except UnicodeDecodeError as ex:
        t.check(False, "%s: the log is valid UTF-8: %s" % (fmt, ex))
        lines = read_lines(log)
    t.eq(len(lines), len(HOSTILE), "%s: one line per hostile request, none forged" % fmt)
    for i, (line, (_, want_line, want_status)) in enumerate(zip(lines, HOSTILE)):
        t.check(all(0x20 <= ord(ch) < 0x7f for ch in line) or fmt == "json",
                "%s line %d: printable ASCII only" % (fmt, i))
        if fmt == "json":
            try:
                rec = json.loads(line)
            except ValueError as ex:
                t.check(False, "json line %d loads: %s: %r" % (i, ex, line))
                continue
            t.eq(list(rec), JSON_KEYS, "json line %d: keys" % i)
            if want_status == 414:
                t.check(json_of(want_line).startswith(rec["request"]) and len(rec["request"]) > 8000,
                        "json line %d: the 414's line, cut (%d)" % (i, len(rec["request"])))
            else:
                t.eq(rec["request"], json_of(want_line), "json line %d: request decodes back" % i)
            t.eq(rec["status"], want_status, "json line %d: status" % i)
            if i == 1:
                t.eq(rec["user_agent"], json_of(EVIL_UA), "json: User-Agent decodes back")
                t.eq(rec["referer"], json_of(EVIL_REF), "json: Referer decodes back")
        else:
            rec = parse_clf(line)
            if not t.check(rec is not None, "combined line %d parses: %r" % (i, line)):
                continue
            got = unclf(rec["request"])
            if want_status == 414:
                # The raw line as far as it had come when the target
                # passed its limit, cut at the log's 8192 bytes.
                t.check(want_line.startswith(got) and len(got) > 8000,
                        "combined line %d: the 414's line, cut (%d bytes)" % (i, len(got)))
            else:
                t.eq(got, want_line, "combined line %d: request decodes back" % i)
            t.eq(int(rec["status"]), want_status, "combined line %d: status" % i)
            if i == 1:
                t.eq(unclf(rec["ua"]), EVIL_UA, "combined: User-Agent decodes back")
                t.eq(unclf(rec["referer"]), EVIL_REF, "combined: Referer decodes back")
    tu.stop_ok(t, s, "hostile %s server" % fmt)


def test_timeout_408(t, d):
    log = os.path.join(d, "408.log")
    s = Server(log, "--header-timeout", "300ms", fmt="json", tls=False)
    with rt.Conn(s.addr) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        r = c.read_response()
    t.eq(r.status, 408, "a head that does not complete: 408")
    lines = wait_lines(log, 1)
    recs = [json.loads(l) for l in lines]
    t.eq([(x["request"], x["status"], x["body_bytes_sent"]) for x in recs],
         [("GET /slow HTTP/1.1", 408, len(r.body))], "408: one line with the partial request line")
    tu.stop_ok(t, s, "408 server")


# --------------------------------------------------------------------------
# Rotation


LOGROTATE_CONF = """\
%(log)s {
    rotate 3
    nocompress
    nocopytruncate
    create 0644
    missingok
    postrotate
        kill -USR1 %(pid)d
    endscript
}
"""


class Hammer:
    """Requests /hello?tag-N one after another on keep-alive connections
    until stopped; .sent are the N that got their 200."""

    def __init__(self, s, tag):
        self.s, self.tag, self.sent, self.errors = s, tag, [], []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        n = 0
        try:
            while not self._stop.is_set():
                with rt.Conn(self.s.addr) as c:
                    for _ in range(20):
                        c.send(rt.request("GET", "/hello?%s-%d" % (self.tag, n)))
                        if c.read_response().status == 200:
                            self.sent.append(n)
                        n += 1
        except Exception as ex:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(ex))

    def stop(self):
        self._stop.set()
        self._t.join(rt.scaled(10))


def tags_in(lines, tag):
    rx = re.compile(r"GET /hello\?%s-(\d+) " % tag)
    return [int(m.group(1)) for m in map(rx.search, lines) if m]


def test_rotate(t, d):
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not os.access(logrotate, os.X_OK):
        t.check(False, "logrotate is not installed (scripts/deps.sh test)")
        return
    ld = os.path.join(d, "rot")
    os.makedirs(ld)
    log = os.path.join(ld, "access.log")
    s = Server(log, threads=2, tls=False)
    for i in range(40):
        plain_get(s, "/hello?before-%d" % i)
    t.eq(len(wait_lines(log, 40)), 40, "rotate: 40 lines before")
    conf = rt.write_file(os.path.join(d, "logrotate.conf"), LOGROTATE_CONF % {"log": log, "pid": s.pid})
    os.chmod(conf, 0o644)
    h = Hammer(s, "during")
    time.sleep(0.3)
    r = rt.run_cmd([logrotate, "-f", "-s", os.path.join(d, "logrotate.state"), conf], timeout=20)
    t.eq(r.returncode, 0, "logrotate -f: exit status (stderr %r)" % r.stderr[-300:])
    t.check(s.wait_log(r"access log %s: reopened" % re.escape(log), 5) is not None,
            "rotate: the server says it reopened the log")
    time.sleep(0.3)
    h.stop()
    t.eq(h.errors, [], "rotate: requests during the rotation all answered")
    for i in range(30):
        plain_get(s, "/hello?after-%d" % i)
    old = log + ".1"
    t.check(os.path.exists(old) and os.path.exists(log), "rotate: access.log.1 and a new access.log")
    want = 40 + len(h.sent) + 30
    end = time.monotonic() + rt.scaled(5)
    while len(read_lines(old)) + len(read_lines(log)) < want and time.monotonic() < end:
        time.sleep(0.05)
    lo, ln = read_lines(old), read_lines(log)
    t.eq(len(lo) + len(ln), want, "rotate: every line in one of the two files (%d during)" % len(h.sent))
    t.eq(sorted(tags_in(lo, "before")), list(range(40)), "rotate: the lines before, in the old file")
    t.eq(sorted(tags_in(lo, "during") + tags_in(ln, "during")), sorted(h.sent),
         "rotate: the lines during, each once, none lost")
    t.eq(sorted(tags_in(ln, "after")), list(range(30)), "rotate: the lines after, in the new file")
    t.eq(oct(stat.S_IMODE(os.stat(log).st_mode)), oct(0o644), "rotate: logrotate created the new file")
    tu.stop_ok(t, s, "rotate server")


# --------------------------------------------------------------------------
# Logs that cannot be written


def serve_some(t, s, n, what):
    ok = 0
    for i in range(n):
        r, _ = plain_get(s, "/hello?%d" % i)
        ok += r.status == 200 and r.body == HELLO
    t.eq(ok, n, "%s: every request answered" % what)


def test_dev_full(t, d):
    s = Server("/dev/full", tls=False)
    serve_some(t, s, 30, "/dev/full")
    s.wait_log(r"access log /dev/full", 5)
    serve_some(t, s, 10, "/dev/full, later")
    time.sleep(0.3)
    got = s.matching(r"access log /dev/full")
    t.eq(len(got), 1, "/dev/full: one stderr line for the episode: %r" % got)
    t.check(any("No space left on device" in l for l in got), "/dev/full: it says why")
    tu.stop_ok(t, s, "/dev/full server")


def test_dir_removed(t, d):
    ld = os.path.join(d, "gone")
    os.makedirs(ld)
    log = os.path.join(ld, "access.log")
    s = Server(log, tls=False)
    serve_some(t, s, 3, "dir removed, before")
    wait_lines(log, 3)
    shutil.rmtree(ld)
    s.send_signal(signal.SIGUSR1)
    t.check(s.wait_log(r"access log .*: reopen: No such file or directory", 5) is not None,
            "dir removed: the failed reopen is one line")
    serve_some(t, s, 10, "dir removed, after")
    time.sleep(0.3)
    t.eq(len(s.matching(r"access log ")), 1, "dir removed: one stderr line in all")
    t.check(s.alive(), "dir removed: still serving")
    tu.stop_ok(t, s, "dir removed server")


def test_readonly(t, d):
    """A file made read-only, then SIGUSR1: the reopen fails, writing goes
    on into the file open before. Root ignores file modes: then as nobody."""
    launcher = ()
    ld = os.path.join(d, "ro")
    os.makedirs(ld)
    log = os.path.join(ld, "access.log")
    rt.write_file(log, b"")
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            t.skip("read-only: root without setpriv")
            return
        launcher = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        # A build in a directory only root can enter (mktemp -d makes
        # one) cannot be run as nobody, nor read by valgrind as nobody.
        probe = subprocess.run(list(launcher) + ["/bin/sh", "-c", 'test -x "$1" && test -r "$1"',
                                                 "sh", rt.RINGTLS_BIN])
        if probe.returncode != 0:
            t.skip("read-only: nobody cannot run %s (a private build directory)" % rt.RINGTLS_BIN)
            return
        os.chmod(d, 0o755)
        os.chown(ld, 65534, 65534)
        os.chown(log, 65534, 65534)
    # At start: a read-only file is one line and exit 1.
    os.chmod(log, 0o444)
    p = rt.Process(list(launcher) + [rt.RINGTLS_BIN, "serve", "--listen", "127.0.0.1:0",
                                     "--access-log", log], name="ringtls-ro")
    rc = p.wait(10)
    if rc is None:
        p.stop()
    t.eq((rc, p.log_lines()), (1, ["ringtls: --access-log %s: Permission denied" % log]),
         "read-only at start: exit 1, one line")
    os.chmod(log, 0o644)
    s = Server(log, launcher=launcher, tls=False)
    serve_some(t, s, 3, "read-only, before")
    t.eq(len(wait_lines(log, 3)), 3, "read-only: 3 lines before")
    os.chmod(log, 0o444)
    s.send_signal(signal.SIGUSR1)
    t.check(s.wait_log(r"access log .*: reopen: Permission denied; still writing", 5) is not None,
            "read-only: the failed reopen is one line")
    serve_some(t, s, 5, "read-only, after")
    t.eq(len(wait_lines(log, 8)), 8, "read-only: the lines after go on into the file open before")
    t.eq(len(s.matching(r"access log ")), 1, "read-only: one stderr line in all")
    tu.stop_ok(t, s, "read-only server")


def test_fsize(t, d):
    """Writes that fail (EFBIG past RLIMIT_FSIZE) and then work again (the
    file truncated): one line when they start failing, one when they work
    again with the count lost, and the next line starts on a line of its
    own."""
    if not shutil.which("prlimit"):
        t.skip("fsize: no prlimit")
        return
    log = os.path.join(d, "fsize.log")
    # stderr is a file too: the limit leaves it room.
    s = Server(log, fmt="json", tls=False, launcher=("prlimit", "--fsize=60000"))
    for i in range(400):
        plain_get(s, "/hello?%d" % i, headers=("User-Agent: " + "u" * 200,))
    t.check(s.wait_log(r"access log .*: File too large: lines are lost", 5) is not None,
            "fsize: the failing writes are one line")
    # Until the writer has been through its backlog (which would fill the
    # file up again).
    time.sleep(rt.scaled(0.5))
    with open(log, "r+b") as f:
        f.truncate(0)
    time.sleep(0.2)
    serve_some(t, s, 5, "fsize, after truncation")
    t.check(s.wait_log(r"access log .*: written again; \d+ line\(s\) lost", 5) is not None,
            "fsize: writing again is one line, with the count")
    lines = wait_lines(log, 5)
    good = 0
    for l in lines:
        try:
            json.loads(l)
            good += 1
        except ValueError:
            pass
    t.check(good >= 5 and good >= len(lines) - 1,
            "fsize: after the episode every line but a cut one loads (%d of %d)" % (good, len(lines)))
    t.eq(len(s.matching(r"access log ")), 2, "fsize: two stderr lines in all")
    tu.stop_ok(t, s, "fsize server")


def test_falls_behind(t, d):
    """A FIFO that nobody reads: the writer blocks, the reactor does not."""
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        s = Server(fifo, tls=False)
        ua = "User-Agent: " + "b" * 2000
        t0 = time.monotonic()
        n = 800 if rt.UNDER_VALGRIND else 1500   # the ring holds ~480 of these
        with rt.Conn(s.addr) as c:
            for i in range(n):
                c.send(rt.request("GET", "/hello?%d" % i, headers=(ua,)))
                c.read_response()
        took = time.monotonic() - t0
        t.check(took < rt.scaled(30), "falls behind: %d requests answered while nothing reads "
                "the log (%.1f s)" % (n, took))
        # Read it all now: the writer wakes and says what it dropped.
        got = b""
        end = time.monotonic() + rt.scaled(8)
        while time.monotonic() < end and not s.matching(r"line\(s\) dropped"):
            try:
                got += os.read(rfd, 1 << 20)
            except BlockingIOError:
                time.sleep(0.05)
        t.check(len(s.matching(r"writing falls behind: lines are dropped")) == 1,
                "falls behind: one line when dropping starts")
        m = [re.search(r"(\d+) line\(s\) dropped", l) for l in s.matching(r"line\(s\) dropped")]
        t.check(len(m) == 1 and int(m[0].group(1)) > 0,
                "falls behind: one line with the count when it ends: %r" % s.matching("dropped"))
        idle = 0
        while idle < 3:
            try:
                chunk = os.read(rfd, 1 << 20)
                got += chunk
                idle = 0 if chunk else idle + 1
            except BlockingIOError:
                idle += 1
                time.sleep(0.1)
        kept = got.count(b"\n")
        if len(m) == 1 and m[0]:
            t.eq(kept + int(m[0].group(1)), n, "falls behind: lines written + dropped (%d kept)" % kept)
        tu.stop_ok(t, s, "falls-behind server")
    finally:
        os.close(rfd)


def test_start_errors(t, d):
    missing = os.path.join(d, "no", "such", "dir", "a.log")
    rc, err = tu.start_error(["--listen", "127.0.0.1:0", "--access-log", missing])
    t.eq((rc, err.strip()), (1, "ringtls: --access-log %s: No such file or directory" % missing),
         "an access log that cannot be opened: exit 1, one line")
    rc, err = tu.start_error(["--listen", "127.0.0.1:0", "--access-log-format", "xml"])
    t.eq(rc, 2, "--access-log-format xml: a usage error")


# --------------------------------------------------------------------------
# Proxied requests, standard output, signals


def test_proxy(t, d):
    be = upstreams.Backend("b1")
    evil = upstreams.Evil()
    log = os.path.join(d, "proxy.log")
    try:
        s = Server(log, "--proxy", "/up=" + be.url, "--proxy", "/evil=" + evil.url, fmt="json",
                   tls=False)
        r, p1 = plain_get(s, "/up/bytes/1000", headers=("User-Agent: px",))
        t.eq((r.status, len(r.body)), (200, 1000), "proxy: 1000 bytes through")
        r2, p2 = plain_get(s, "/evil/close-head")
        t.eq(r2.status, 502, "proxy: a broken upstream is 502")
        with rt.Conn(s.addr) as c:
            c.send(rt.request("POST", "/up/echo", headers=("Content-Length: 5",), body=b"hello"))
            r3 = c.read_response()
            c.send(rt.request("GET", "/up/chunked/3000"))
            raw = c.read_until(b"0\r\n\r\n")
        t.eq(r3.status, 200, "proxy: a POST through")
        lines = wait_lines(log, 4)
        time.sleep(0.2)
        lines = read_lines(log)
        recs = [json.loads(l) for l in lines]
        t.eq([(x["request"], x["status"]) for x in recs],
             [("GET /up/bytes/1000 HTTP/1.1", 200), ("GET /evil/close-head HTTP/1.1", 502),
              ("POST /up/echo HTTP/1.1", 200), ("GET /up/chunked/3000 HTTP/1.1", 200)],
             "proxy: one line per proxied request")
        if len(recs) == 4:
            t.eq((recs[0]["body_bytes_sent"], recs[0]["remote_port"], recs[0]["user_agent"]),
                 (1000, p1, "px"), "proxy: the upstream's body bytes")
            t.eq(recs[1]["body_bytes_sent"], len(r2.body), "proxy: the 502's body bytes")
            t.eq(recs[2]["body_bytes_sent"], len(r3.body), "proxy: the POST's response bytes")
            t.eq(recs[3]["body_bytes_sent"], 3000, "proxy: a chunked body's data bytes")
        t.check(len(raw) > 3000, "proxy: the chunked body came")
        tu.stop_ok(t, s, "proxy server")
    finally:
        be.close()


def test_stdout(t, d):
    out = os.path.join(d, "stdout.txt")
    p = rt.Process(["sh", "-c", 'exec "$0" "$@" >"%s"' % out, rt.RINGTLS_BIN, "serve", "--listen",
                    "127.0.0.1:0", "--threads", "1", "--access-log", "-"], name="ringtls")
    p.port, = p.wait_ports(rt.LISTEN_RE, timeout=rt.START_TIMEOUT)
    p.addr = ("127.0.0.1", p.port)
    plain_get(p, "/hello")
    lines = wait_lines(out, 1)
    t.check(len(lines) == 1 and parse_clf(lines[0]) is not None,
            "--access-log -: a combined line on standard output: %r" % lines)
    # SIGUSR1 on standard output: nothing to reopen, still running.
    p.send_signal(signal.SIGUSR1)
    t.check(p.wait_log(r"nothing to reopen", 5) is not None, "SIGUSR1 with -: nothing to reopen")
    tu.stop_ok(t, p, "stdout server")


def test_signals(t, d):
    s = Server(None, tls=False)
    s.send_signal(signal.SIGUSR1)
    t.check(s.wait_log(r"SIGUSR1: no --access-log to reopen", 5) is not None,
            "SIGUSR1 without --access-log: one line")
    s.send_signal(signal.SIGHUP)
    t.check(s.wait_log(r"SIGHUP", 5) is not None, "SIGHUP: one line")
    r, _ = plain_get(s, "/hello")
    t.eq(r.body, HELLO, "after SIGUSR1 and SIGHUP: still serving")
    tu.stop_ok(t, s, "server without a log")


def test(t):
    rt.need_binary(rt.RINGTLS_BIN, "ringtls")
    d = rt.temp_dir("rtls-alog-")
    for fn in (test_combined, test_json, test_proxy_protocol, test_timeout_408, test_start_errors, test_signals,
               test_stdout, test_dev_full, test_dir_removed, test_readonly, test_fsize,
               test_proxy, test_rotate, test_falls_behind):
        fn(t, d)
    test_hostile(t, d, "combined")
    test_hostile(t, d, "json")


if __name__ == "__main__":
    rt.main(test, watchdog=240)
