#!/usr/bin/env python3
"""HTTP/2 over kernel TLS (python3 stdlib, curl, openssl s_client; run
inside a kTLS kernel by tests/kernel/run-kernel.sh).

    h2_suite.py               inside a kernel with kTLS
    h2_suite.py --only REGEX  run only the checks whose name matches

ringtls --ktls on --root DIR --access-log FILE serves two files (SIZE and
SIZE2 bytes, random). Every check proves what the connection did three
ways: /proc/net/tls_stat deltas (TlsTxSw and TlsRxSw +1 for the one
connection, TlsDecryptError +0; all +0 on the userspace path), the
server's debug line (alpn=h2, kernel-tx and kernel-rx) and its access log
line ("GET /PATH HTTP/2.0" 200 BYTES ... alpn=h2 tx_path= rx_path=).
File bodies leave as DATA frames whose payload is spliced from the page
cache into the kernel's records (src/http/h2.c); the engine counts no
spliced bytes for files, so what proves it is the server process's rchar
(/proc/PID/io: bytes it read(2)/pread(2) into userspace; splice is not
counted, the userspace TLS path preads every file byte): under kTLS it
rises by less than RCHAR_SLACK over a download of N file bytes (at least
N - RCHAR_SLACK spliced), with --ktls off by at least N.

- curl --http2 downloads SIZE bytes, TLS 1.3 and TLS 1.2
  (ECDHE-ECDSA-AES256-GCM-SHA384): sha256, curl's http_version 2;
- curl --http2 --parallel: both files and /hello as three streams of one
  connection (one debug line, one TlsTxSw): each sha256;
- SIGTERM while curl --http2 --limit-rate downloads SIZE bytes over kTLS:
  curl gets the whole file (sha256) and exits 0, the server exits 0 once
  the stream is done, TlsTxSw/TlsRxSw +1, no warn/error line;
- --ktls off: the same download, tls_stat deltas all zero, rchar >= SIZE,
  tx_path=userspace rx_path=userspace;
- (rekey kernels only, 7.2; a SKIP line on 6.1, which cannot rekey)
  openssl s_client -alpn h2 speaking raw HTTP/2 frames: GET /hello, `k`
  (a KeyUpdate), GET /hello, GET /big.bin held by flow control after its
  first 65535 bytes, `K` (KeyUpdate, update requested: the server answers
  with its own), then the window opened and the rest of the body read, then
  GET /hello: every response intact, TlsRxRekeyOk +2, TlsTxRekeyOk +1, no
  rekey or decrypt error;
- (7.2 only, SKIP on 6.1) --key-update-after-records REKEY_EVERY: curl
  --http2 downloads SIZE bytes while the server updates its own key in the
  middle of the spliced body: sha256, TlsTxRekeyOk rises.
On a kernel that cannot rekey (6.1) the servers get --ktls-rx-no-rekey,
as in ktls_suite.py.

Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat: no kTLS
here; never a pass without it). One line per check, then "N passed, N
failed[, N skipped]". Nothing is timed: the guest is ~100x slower.
"""
import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (HELLO, PROC_TIMEOUT, RINGTLS_BIN, STAT_PATH, WORK, Counters,  # noqa: E402
                          Fail, Server, check, expect, expect_eq, run_suite, stop_proc,
                          stop_server)

SIZE = 4 << 20           # the big file (a few MB: the guest is slow)
SIZE2 = (1 << 20) + 3    # the second file, an odd size
RCHAR_SLACK = 64 << 10   # what the server may read(2) into userspace during a spliced download
REKEY_EVERY = 64         # --key-update-after-records for the rekeying download
SIGTERM_RATE = "1M"      # curl --limit-rate of the download cut by SIGTERM,
SIGTERM_AT = 256 << 10   # which comes once this much has arrived
STEP_TIMEOUT = 30.0      # one response, one KeyUpdate, one log line
WATCHDOG = 600           # the whole suite (run-kernel.sh allows 900 s)
H2_WINDOW = 65535        # HTTP/2's initial stream window (RFC 9113 6.9.2)
TLS12 = "ECDHE-ECDSA-AES256-GCM-SHA384"
ACCESS_RE = re.compile(r'"(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" (?P<status>\d+) '
                       r'(?P<bytes>\d+|-) .* remote_port=(?P<port>\d+) .* alpn=(?P<alpn>\S+) '
                       r'resumed=\S+ tx_path=(?P<tx>\S+) rx_path=(?P<rx>\S+)$')

SKIPPED = []
_print_summary = suite_common.print_summary
suite_common.print_summary = lambda p, f, s=0: _print_summary(p, f, s + len(SKIPPED))


def skip(only, name, why):
    if only and not only.search(name):
        return
    SKIPPED.append(name)
    print("SKIP %s: %s" % (name, why), flush=True)


def short(v, limit=600):
    s = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return s if len(s) <= limit else "...(%d chars) " % len(s) + s[-limit:]


# --------------------------------------------------------------------------
# What a connection did: tls_stat, the debug line, the access log, rchar


def rchar(pid):
    """Bytes the process read(2)/pread(2) so far (/proc/PID/io)."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == "rchar":
                    return int(v)
    except OSError as e:
        raise Fail("cannot read /proc/%d/io (%s): nothing proves the file bodies were spliced"
                   % (pid, e))
    raise Fail("/proc/%d/io has no rchar" % pid)


class Watch:
    """tls_stat, the server's log and its access log, and its rchar, as
    they were when a check began."""

    def __init__(self, srv, alog):
        self.srv, self.alog = srv, alog
        self.mark = srv.mark()
        self.amark = os.path.getsize(alog) if alog else 0
        self.ctr = Counters()
        self.rchar = rchar(srv.pid)

    def deltas(self):
        d = self.ctr.delta()
        if d is None:
            raise Fail("%s is missing" % STAT_PATH)
        return d

    def read_since(self):
        return rchar(self.srv.pid) - self.rchar

    def tls_lines(self, port, n=1):
        """The debug lines of the connection from client port `port`."""
        lines = self.srv.conn_tls_lines(self.mark, port, STEP_TIMEOUT)
        expect_eq(len(lines), n, "debug lines for the connection from port %d" % port)
        return lines

    def access(self, want):
        """The access log lines since the mark, waiting until there are `want`."""
        end = time.monotonic() + STEP_TIMEOUT
        while True:
            with open(self.alog, "rb") as f:
                f.seek(self.amark)
                lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l]
            if len(lines) >= want or time.monotonic() >= end:
                break
            time.sleep(0.1)
        out = []
        for l in lines:
            m = ACCESS_RE.search(l)
            expect(m, "access log line not understood: %r" % l)
            out.append(m.groupdict())
        return out

    def warnings(self):
        return [l for l in self.srv.lines_since(self.mark) if re.search(r" (warn|error) ", l)]


def expect_offload(w, port, kernel=True, streams=None):
    """One connection from `port`: TLS over ALPN h2, kernel both ways (or
    userspace both ways), tls_stat to match; `streams`: [(path, status,
    bytes)] its access log lines must be, in any order. Returns a note."""
    d = w.deltas()
    got = (d.get("TlsTxSw", 0), d.get("TlsRxSw", 0), d.get("TlsDecryptError", 0))
    want = (1, 1, 0) if kernel else (0, 0, 0)
    expect_eq(got, want, "tls_stat TlsTxSw/TlsRxSw/TlsDecryptError deltas")
    yes = "yes" if kernel else "no"
    lines = w.tls_lines(port)
    expect_eq([(l["alpn"], l["ktx"], l["krx"]) for l in lines], [("h2", yes, yes)],
              "the server's debug line for the connection from %d: alpn, kernel-tx, kernel-rx"
              % port)
    if streams is not None:
        path = "kernel" if kernel else "userspace"
        acc = w.access(len(streams))
        expect_eq(sorted((a["path"], a["proto"], int(a["status"]), int(a["bytes"]), int(a["port"]),
                          a["alpn"], a["tx"], a["rx"]) for a in acc),
                  sorted((p, "HTTP/2.0", s, n, port, "h2", path, path) for p, s, n in streams),
                  "access log lines (path, protocol, status, bytes, port, alpn, tx_path, "
                  "rx_path)")
    return "TlsTxSw+%d TlsRxSw+%d TlsDecryptError+%d" % got


def expect_spliced(w, nbytes):
    """The server read (almost) none of the `nbytes` file bytes it sent."""
    r = w.read_since()
    expect(r < RCHAR_SLACK, "the server read %d bytes into userspace (rchar) while sending %d "
           "file bytes: the body was copied, not spliced (want < %d)" % (r, nbytes, RCHAR_SLACK))
    return "rchar+%d for %d file bytes (>= %d spliced)" % (r, nbytes, nbytes - r)


# --------------------------------------------------------------------------
# curl


def curl_argv(srv, version, extra=()):
    argv = ["curl", "-sS", "--http2", "--cacert", WORK.ca, "--max-time", "200",
            "--resolve", "localhost:%d:127.0.0.1" % srv.port,
            "-w", r"%{http_version} %{response_code} %{local_port} %{size_download}\n"]
    if version == "1.3":
        argv += ["--tlsv1.3"]
    else:
        argv += ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", TLS12]
    return argv + list(extra)


def curl(argv):
    """Runs curl to its end (bounded); (stdout lines of -w, stderr)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=PROC_TIMEOUT * 2)
    except subprocess.TimeoutExpired:
        stop_proc(p, 5)
        raise Fail("curl did not finish in %d s: %s" % (PROC_TIMEOUT * 2, " ".join(argv)))
    expect_eq(p.returncode, 0, "curl exit status (stderr %s)" % short(err))
    return out.decode().split("\n")[:-1], err


def sha_file(path):
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while True:
            d = f.read(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
    return n, h.hexdigest()


def expect_big_download(lines, out, files):
    """curl's -w line and file `out` are /big.bin, whole, over HTTP/2;
    `out` is removed. Returns curl's local port."""
    expect_eq(len(lines), 1, "curl -w lines")
    proto, code, port, n = lines[0].split()
    expect_eq((proto, code, int(n)), ("2", "200", SIZE), "curl: http_version, status, bytes")
    expect_eq(sha_file(out), (SIZE, files["big.bin"]), "the download's (bytes, sha256)")
    os.unlink(out)
    return port


def c_download(srv, alog, files, version, kernel=True):
    """curl --http2 fetches the big file on one connection."""
    w = Watch(srv, alog)
    out = os.path.join(WORK.tmp, "dl.bin")
    lines, _ = curl(curl_argv(srv, version, ["-o", out, srv.url("/big.bin")]))
    port = expect_big_download(lines, out, files)
    note = expect_offload(w, int(port), kernel, [("/big.bin", 200, SIZE)])
    r = w.read_since()
    if kernel:
        note += ", " + expect_spliced(w, SIZE)
    else:
        # The userspace path reads every file byte (pread) to seal it.
        expect(r >= SIZE, "--ktls off: the server read only %d bytes (rchar) for a %d-byte "
               "body: the rchar proof of the kernel checks would prove nothing" % (r, SIZE))
        note += ", rchar+%d (userspace reads the file)" % r
    expect_eq(w.warnings(), [], "warn/error lines (--ktls on logs every fallback)")
    return note


def c_parallel(srv, alog, files):
    """curl --http2 --parallel: three streams on one connection."""
    w = Watch(srv, alog)
    outs = [os.path.join(WORK.tmp, "p%d.bin" % i) for i in range(3)]
    paths = ["/big.bin", "/big2.bin", "/hello"]
    extra = ["--parallel", "--parallel-max", "3"]
    for o, p in zip(outs, paths):
        extra += ["-o", o, srv.url(p)]
    lines, _ = curl(curl_argv(srv, "1.3", extra))
    expect_eq(len(lines), 3, "curl -w lines")
    ports = set()
    for l in lines:
        proto, code, port, _ = l.split()
        expect_eq((proto, code), ("2", "200"), "curl: http_version, status")
        ports.add(int(port))
    expect_eq(len(ports), 1, "client ports of the three transfers (one connection)")
    expect_eq(sha_file(outs[0]), (SIZE, files["big.bin"]), "/big.bin (bytes, sha256)")
    expect_eq(sha_file(outs[1]), (SIZE2, files["big2.bin"]), "/big2.bin (bytes, sha256)")
    with open(outs[2], "rb") as f:
        expect_eq(f.read(), HELLO, "/hello")
    for o in outs:
        os.unlink(o)
    port = ports.pop()
    note = expect_offload(w, port, True, [("/big.bin", 200, SIZE), ("/big2.bin", 200, SIZE2),
                                          ("/hello", 200, len(HELLO))])
    note += ", " + expect_spliced(w, SIZE + SIZE2)
    expect_eq(w.warnings(), [], "warn/error lines")
    return note


def c_rekey_download(srv, alog, files):
    """The server updates its own key every REKEY_EVERY records, in the
    middle of the spliced body of an HTTP/2 download."""
    w = Watch(srv, alog)
    note = c_download(srv, alog, files, "1.3")
    d = w.deltas()
    want = SIZE // 16384 // REKEY_EVERY // 2
    got = (d.get("TlsTxRekeyOk", 0), d.get("TlsTxRekeyError", 0))
    expect(got[0] >= want and got[1] == 0,
           "server KeyUpdates during the body: TlsTxRekeyOk +%d (want >= %d: %d records at most "
           "%d per key), TlsTxRekeyError +%d" % (got[0], want, SIZE // 16384, REKEY_EVERY, got[1]))
    return note + ", TlsTxRekeyOk+%d" % got[0]


def c_sigterm(srv, alog, files):
    """SIGTERM in the middle of a kernel-offloaded HTTP/2 download (curl
    --limit-rate keeps it going): the server sends GOAWAY, finishes the
    stream and exits 0; curl gets the whole file and exits 0."""
    w = Watch(srv, alog)
    out = os.path.join(WORK.tmp, "term.bin")
    argv = curl_argv(srv, "1.3", ["--limit-rate", SIGTERM_RATE, "-o", out,
                                  srv.url("/big.bin")])
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < end and p.poll() is None:
            if os.path.exists(out) and os.path.getsize(out) >= SIGTERM_AT:
                break
            time.sleep(0.05)
        got = os.path.getsize(out) if os.path.exists(out) else 0
        expect(p.poll() is None and SIGTERM_AT <= got < SIZE,
               "the download under way and not done at SIGTERM (%d of %d bytes, curl %s)"
               % (got, SIZE, p.poll()))
        srv.proc.send_signal(signal.SIGTERM)
        out_b, err = p.communicate(timeout=PROC_TIMEOUT * 2)
    finally:
        stop_proc(p, 5)
    expect_eq(p.returncode, 0, "curl exit status across the server's SIGTERM (stderr %s)"
              % short(err))
    port = expect_big_download(out_b.decode().split("\n")[:-1], out, files)
    try:
        rc = srv.proc.wait(timeout=PROC_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Fail("the server did not exit after its last stream ended")
    expect_eq(rc, 0, "the server's exit status after SIGTERM")
    note = expect_offload(w, int(port), True, [("/big.bin", 200, SIZE)])
    expect_eq(w.warnings(), [], "warn/error lines")
    return note + ", got %d bytes before SIGTERM" % got


# --------------------------------------------------------------------------
# openssl s_client speaking raw HTTP/2 frames, with `k`/`K` KeyUpdates

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
T_DATA, T_HEADERS, T_RST, T_SETTINGS, T_GOAWAY, T_WINDOW = 0, 1, 3, 4, 7, 8
F_END_STREAM, F_END_HEADERS = 0x1, 0x4
KU_IN = b"<<< TLS 1.3, Handshake [length 0005], KeyUpdate"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + \
        payload


def get_frame(sid, path):
    """HEADERS GET https://localhost PATH, END_STREAM: HPACK static
    :method GET (2), :scheme https (7), literals for :path and :authority."""
    block = b"\x82\x87\x04" + bytes([len(path)]) + path + b"\x01\x09localhost"
    return frame(T_HEADERS, F_END_STREAM | F_END_HEADERS, sid, block)


def window_frame(sid, inc):
    return frame(T_WINDOW, 0, sid, struct.pack(">I", inc))


class Streams:
    """The server's frames as s_client printed them (-quiet: stdout is
    the application data alone)."""

    def __init__(self, data):
        self.heads, self.data, self.ended, self.other = {}, {}, set(), []
        i = 0
        while len(data) - i >= 9:
            n = int.from_bytes(data[i:i + 3], "big")
            if len(data) - i < 9 + n:
                break
            t, fl, sid = data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & \
                0x7fffffff
            p = data[i + 9:i + 9 + n]
            i += 9 + n
            if t == T_HEADERS:
                self.heads[sid] = p
            elif t == T_DATA:
                self.data.setdefault(sid, bytearray()).extend(p)
            elif t in (T_RST, T_GOAWAY):
                self.other.append((t, sid, bytes(p)))
            if t in (T_HEADERS, T_DATA) and fl & F_END_STREAM:
                self.ended.add(sid)

    def got(self, sid):
        return len(self.data.get(sid, b""))


class SClient:
    """openssl s_client -alpn h2 -quiet -no_ign_eof: stdin and stdout
    carry HTTP/2 frames; a read of stdin that starts with k or K sends a
    KeyUpdate (stderr says KEYUPDATE); -msgfile records the TLS messages."""

    def __init__(self, port):
        self.msgfile = os.path.join(WORK.tmp, "s_client-msg.txt")
        self.argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                     "-servername", "localhost", "-CAfile", WORK.ca, "-verify_return_error",
                     "-tls1_3", "-alpn", "h2", "-quiet", "-no_ign_eof", "-msg", "-msgfile",
                     self.msgfile]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=True)
        self.out, self.err = bytearray(), bytearray()
        self.cv = threading.Condition()
        self.eof = 0
        self.threads = [threading.Thread(target=self._read, args=(f, b), daemon=True)
                        for f, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _read(self, f, buf):
        while True:
            try:
                d = os.read(f.fileno(), 65536)
            except OSError:
                d = b""
            with self.cv:
                if not d:
                    self.eof += 1
                    self.cv.notify_all()
                    return
                buf += d
                self.cv.notify_all()

    def write(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            raise Fail("s_client's stdin: %s; stderr %s" % (e, short(bytes(self.err))))

    def wait(self, pred, what):
        """Until pred(Streams, stderr); a Fail after STEP_TIMEOUT or EOF."""
        end = time.monotonic() + STEP_TIMEOUT
        with self.cv:
            while True:
                st = Streams(bytes(self.out))
                if pred(st, bytes(self.err)):
                    return st
                left = end - time.monotonic()
                if left <= 0 or self.eof == 2:
                    raise Fail("%s: %s (stream bytes %s, ended %s, RST/GOAWAY %s, stderr %s)" % (
                        what, "s_client ended" if self.eof == 2 else "timed out",
                        {k: len(v) for k, v in st.data.items()}, sorted(st.ended), st.other,
                        short(bytes(self.err))))
                self.cv.wait(min(left, 0.5))

    def keyupdate(self, letter):
        """One `k`/`K` line, alone in its read: the frames before it were
        answered, and nothing is written until s_client says KEYUPDATE."""
        n = bytes(self.err).count(b"KEYUPDATE")
        self.write(letter + b"\n")
        self.wait(lambda st, err: err.count(b"KEYUPDATE") > n,
                  "s_client did not send KeyUpdate %s" % letter.decode())

    def msgs(self):
        try:
            with open(self.msgfile, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def finish(self):
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            rc = self.proc.wait(timeout=PROC_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_proc(self.proc, 5)
            rc = None
        for t in self.threads:
            t.join(5)
        return rc


def expect_hello(st, sid):
    # :status 200 is HPACK static entry 8: nghttp2 sends it as 0x88, first.
    expect_eq(st.heads.get(sid, b"")[:1], b"\x88", "stream %d: the response's first header "
              "field (0x88 is :status 200)" % sid)
    expect_eq(bytes(st.data.get(sid, b"")), HELLO, "stream %d: the body" % sid)


def c_keyupdate(srv, alog, files):
    w = Watch(srv, alog)
    c = SClient(srv.port)
    try:
        c.write(PREFACE + frame(T_SETTINGS, 0, 0) + window_frame(0, 1 << 30) +
                get_frame(1, b"/hello"))
        st = c.wait(lambda st, err: 1 in st.ended, "GET /hello on stream 1")
        expect_hello(st, 1)
        c.keyupdate(b"k")
        c.write(get_frame(3, b"/hello"))
        st = c.wait(lambda st, err: 3 in st.ended, "GET /hello on stream 3 after k")
        expect_hello(st, 3)
        # The big file: the stream's window lets the first 65535 bytes out,
        # then the server waits; K goes while the body is half sent.
        c.write(get_frame(5, b"/big.bin"))
        st = c.wait(lambda st, err: st.got(5) >= H2_WINDOW, "the first %d bytes of stream 5"
                    % H2_WINDOW)
        expect_eq((st.got(5), 5 in st.ended), (H2_WINDOW, False),
                  "stream 5 held by its window: (bytes, ended)")
        expect_eq(st.heads.get(5, b"")[:1], b"\x88", "stream 5: :status 200")
        ku_in = c.msgs().count(KU_IN)
        c.keyupdate(b"K")
        c.write(window_frame(5, SIZE))
        st = c.wait(lambda st, err: 5 in st.ended, "the rest of stream 5 after K")
        body = bytes(st.data[5])
        expect_eq((len(body), hashlib.sha256(body).hexdigest()), (SIZE, files["big.bin"]),
                  "stream 5 (bytes, sha256)")
        c.write(get_frame(7, b"/hello"))
        st = c.wait(lambda st, err: 7 in st.ended, "GET /hello on stream 7")
        expect_hello(st, 7)
        expect_eq(st.other, [], "RST_STREAM/GOAWAY frames")
        expect_eq(c.msgs().count(KU_IN) - ku_in, 1, "server KeyUpdates s_client received after K")
    finally:
        rc = c.finish()
    expect_eq(rc, 0, "s_client exit status (stderr %s)" % short(bytes(c.err)))
    lines = w.srv.tls_lines(w.mark)
    expect_eq([(l["version"], l["alpn"], l["ktx"], l["krx"]) for l in lines],
              [("TLSv1.3", "h2", "yes", "yes")], "the server's debug lines: version, alpn, "
              "kernel-tx, kernel-rx")
    port = int(lines[0]["port"])
    note = expect_offload(w, port, True, [("/hello", 200, len(HELLO))] * 3 +
                          [("/big.bin", 200, SIZE)])
    d = w.deltas()
    keys = ("TlsRxRekeyOk", "TlsRxRekeyReceived", "TlsTxRekeyOk", "TlsRxRekeyError",
            "TlsTxRekeyError")
    expect_eq(tuple(d.get(k, 0) for k in keys), (2, 2, 1, 0, 0), "tls_stat deltas %s" % (keys,))
    note += ", TlsRxRekeyOk+2 TlsTxRekeyOk+1, " + expect_spliced(w, SIZE)
    expect_eq(w.warnings(), [], "warn/error lines")
    return note


# --------------------------------------------------------------------------


def main():
    only, full = suite_common.start_suite(__doc__, WATCHDOG)
    rekey = not full

    def body():
        root = os.path.join(WORK.tmp, "root")
        os.makedirs(root)
        files = {}
        for name, n in (("big.bin", SIZE), ("big2.bin", SIZE2)):
            data = os.urandom(n)
            files[name] = hashlib.sha256(data).hexdigest()
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        del data
        alog = os.path.join(WORK.tmp, "access.log")
        alog_rekey = os.path.join(WORK.tmp, "access-rekey.log")
        alog_user = os.path.join(WORK.tmp, "access-user.log")
        print("h2 suite: %s, kernel %s, server flags %s" % (
            RINGTLS_BIN, os.uname().release, full or "-"), flush=True)
        srv = Server("--ktls", "on", *full, "--access-log", alog, root=root, name="ringtls-h2")
        mb = "%d MB" % (SIZE >> 20)
        check(only, "h2 curl --http2 %s download TLSv1.3: sha256, alpn h2, kernel TX/RX, "
              "body spliced" % mb, c_download, srv, alog, files, "1.3")
        check(only, "h2 curl --http2 %s download TLSv1.2 %s: sha256, alpn h2, kernel TX/RX, "
              "body spliced" % (mb, TLS12), c_download, srv, alog, files, "1.2")
        check(only, "h2 curl --parallel: %s, %d bytes and /hello as three streams of one "
              "kernel-offloaded connection, bodies spliced" % (mb, SIZE2), c_parallel, srv,
              alog, files)
        name = "h2 KeyUpdate k, K mid-connection (s_client raw frames): /hello, k, /hello, " \
            "%s with K while flow control holds it, /hello" % mb
        if rekey:
            check(only, name + ": intact, TlsRxRekeyOk+2, TlsTxRekeyOk+1, spliced", c_keyupdate,
                  srv, alog, files)
        else:
            skip(only, name, "this kernel cannot rekey TLS 1.3 (%s has no TlsRxRekeyOk; the "
                 "server runs with --ktls-rx-no-rekey)" % STAT_PATH)
        stop_server(srv)

        name = "h2 --key-update-after-records %d: our KeyUpdates mid-body of a %s download" % (
            REKEY_EVERY, mb)
        if rekey:
            rsrv = Server("--ktls", "on", "--key-update-after-records", str(REKEY_EVERY),
                          "--access-log", alog_rekey, root=root, name="ringtls-h2-rekey")
            check(only, name + ": sha256, TlsTxRekeyOk rises, spliced", c_rekey_download, rsrv,
                  alog_rekey, files)
            stop_server(rsrv)
        else:
            skip(only, name, "this kernel cannot rekey TLS 1.3 (on 6.1 the server closes at "
                 "the limit; keyupdate_suite.py checks that)")

        alog_term = os.path.join(WORK.tmp, "access-term.log")
        tsrv = Server("--ktls", "on", *full, "--shutdown-timeout", "120s", "--access-log",
                      alog_term, root=root, name="ringtls-h2-term")
        check(only, "h2 SIGTERM mid-download (curl --http2 --limit-rate %s, %s): the "
              "stream finished, sha256, curl and server exit 0, kernel TX/RX" % (SIGTERM_RATE, mb),
              c_sigterm, tsrv, alog_term, files)
        tsrv.stop()

        usrv = Server("--ktls", "off", "--access-log", alog_user, root=root,
                      name="ringtls-h2-user")
        check(only, "h2 --ktls off %s download TLSv1.3: sha256, alpn h2, tls_stat +0, "
              "userspace both ways, file read in userspace" % mb, c_download, usrv, alog_user,
              files, "1.3", False)
        stop_server(usrv)

    return run_suite("h2-suite-", body)


if __name__ == "__main__":
    sys.exit(main())
