#!/usr/bin/env python3
"""TCP mode (ringtls serve --tcp-proxy LISTEN=UPSTREAM) over kernel TLS
(python3 stdlib only; run inside a kTLS kernel by tests/kernel/run-kernel.sh).

    tcpproxy_suite.py               inside a kernel with kTLS
    tcpproxy_suite.py --only REGEX  run only the checks whose name matches

One ringtls with a --tcp-proxy listener per Python upstream in the same
guest (the upstreams, the half-closing client and the cases are those of
tests/integration/test_tcp_proxy.py):
- SIZE bytes both ways at once through an echo upstream, sha256 each
  way (TLS 1.3, and TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384);
- half-close client->upstream: the client's close_notify + FIN reach the
  upstream as a FIN; the upstream's 2 MiB after that reach the client,
  then close_notify;
- half-close upstream->client: the upstream's 1 MiB and FIN reach the
  client as data and close_notify; the client's 2 MiB after that reach
  the upstream;
- truncation: a FIN without close_notify reaches the upstream as a FIN
  after every byte, logged as "truncated (FIN without close_notify)";
- an upstream that resets mid-stream: the client's connection is reset
  (no close_notify), logged as "reset by us".
Each session's log line has the byte counts and both ends ("copied" or
"spliced" is not asserted here, but see the half-close below). Every check proves offload of both
client-side directions: /proc/net/tls_stat TlsTxSw and TlsRxSw rise by
exactly one (the client's connection; the upstream leg is plaintext),
TlsDecryptError does not move, and the server's debug line for the
connection says kernel-tx=yes kernel-rx=yes. On a kernel that cannot
rekey (6.1) the server gets --ktls-rx-no-rekey, as in ktls_suite.py.
Then the splice path itself (issue #15, section 4), TLS 1.3, the same
server:
- zero copy: an upstream that speaks first (a banner the client waits
  for before it sends), then ZC_SIZE bytes each way through it (echo),
  sha256 each way: the log line says "spliced TOTAL, copied 0" in BOTH
  directions;
- the half-close client->upstream above says copied 0 upstream to
  client; and a close_notify mid-splice: the client sends MID_SENT
  bytes, the upstream answers with MID_FIRST, the client sends its
  close_notify + FIN once it has MID_READ of them (the rest still on its
  way), and the upstream sends MID_AFTER more after that FIN: all of it
  reaches the client (sha256, close_notify), copied 0 upstream to
  client;
- KeyUpdate mid-splice (rekey kernels only, 7.2; a SKIP line on 6.1,
  which cannot rekey): openssl s_client -tls1_3 through the echo
  upstream, KU_PHASE bytes, `k`, KU_PHASE more, `K`, KU_PHASE more: every
  byte comes back (s_client's output and the log line's totals),
  TlsRxRekeyOk rises by >= 2, TlsTxRekeyOk by >= 1 (the answer to K), no
  rekey or decrypt error, copied 0 upstream to client;
- a record with a bad MAC mid-stream (one ciphertext byte of an
  application-data record flipped after BAD_BEFORE bytes went both ways):
  the session ends within END_TIMEOUT s, TlsDecryptError rises by exactly
  one, the client gets no close_notify, the upstream a reset or EOF after
  exactly the good bytes, the log's client end is an error; then the
  next session is served;
- a partial record: the client sends the first PARTIAL_HEAD bytes of a
  record (right behind its Finished, in the same segment: at the switch
  to kTLS; and after 1 MiB has been spliced: mid-stream), waits
  PARTIAL_WAIT s, then the rest: the server's CPU time (utime + stime
  of /proc/PID/stat) grows by less than PARTIAL_CPU_MAX s over the wait
  (no busy loop on a partial kTLS record), nothing arrives meanwhile,
  and the data arrives intact.
Every one of these proves offload as above (TlsTxSw+1, TlsRxSw+1, the
debug line kernel-tx=yes kernel-rx=yes), so a run without kTLS FAILs.

Then a server with --ktls off: an echo session and a half-close move no
counter, the debug line says kernel-tx=no kernel-rx=no and the log line
says every byte was copied (the userspace path inside the same kernel).

Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat: no kTLS
here; never a pass without it). One line per check, then "N passed, N
failed[, N skipped]". Nothing is timed but the partial record's CPU
bound and the bad MAC's end (generous bounds: the guest is ~100x slower).
"""
import fcntl
import os
import re
import select
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (RINGTLS_BIN, WORK, Fail, Server, check, client_ctx,  # noqa: E402
                          expect_eq, offload_deltas, run_suite, stop_proc, stop_server)
import test_tcp_proxy as ttp  # noqa: E402

SIZE = 20 << 20
OFF_SIZE = 4 << 20       # the --ktls off session
IO_TIMEOUT = 120.0       # one wait in the slow guest
WATCHDOG = 800           # the whole suite (run-kernel.sh allows 900 s)
VERSIONS = (("1.3", None), ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"))
MIB = 1 << 20
ZC_SIZE = 8 << 20        # zero copy: each way after the banner
BANNER = b"220 tcpproxy-suite upstream ready\r\n"
MID_SENT = 64 << 10      # close_notify mid-splice: the client's bytes first
MID_READ = 64 << 10      # ... what it has received when it sends close_notify
MID_FIRST = 1 << 20      # ... the upstream's bytes before that FIN reaches it
MID_AFTER = 1 << 20      # ... and after
KU_PHASE = 1 << 20       # KeyUpdate: s_client's bytes before k, between, after K
KU_STEP = 60.0           # one KeyUpdate acted on, one phase echoed
BAD_BEFORE = 256 << 10   # bad MAC: good bytes both ways first
BAD_RECORD = 1000        # ... plaintext of the record whose MAC is broken
END_TIMEOUT = 15.0       # ... the session ends within (a reset, an alert)
NEXT_SIZE = 1 << 20      # ... then the next session, each way
PARTIAL_RECORD = 4000    # partial record: its plaintext
PARTIAL_HEAD = 100       # ... the bytes of it sent first
PARTIAL_WAIT = 2.0       # ... the pause before the rest
PARTIAL_CPU_MAX = 0.3    # ... the server's CPU seconds over the pause, at most
PARTIAL_BEFORE = 1 << 20  # ... mid-stream: spliced both ways first
LISTEN_TLS_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")

ttp.WAIT = IO_TIMEOUT


class T:
    """The Checker interface test_tcp_proxy's cases use, raising on the
    first failed expectation."""

    def check(self, cond, msg):
        if not cond:
            raise Fail(msg)
        return True

    def eq(self, got, want, msg):
        expect_eq(got, want, msg)
        return True


def tcp_ports(srv, n):
    """The ports of the server's n --tcp-proxy listeners: its https
    listening lines after the --tls-listen one, in the order given."""
    end = time.monotonic() + suite_common.START_TIMEOUT
    while True:
        ports = [int(p) for p in LISTEN_TLS_RE.findall(srv.log())]
        if len(ports) >= n + 1:
            return ports[1:n + 1]
        if time.monotonic() > end or not srv.alive():
            raise Fail("the server did not log %d tcp-proxy listeners:\n%s" % (n, srv.log()))
        time.sleep(0.05)


def offload(srv, want, flags, case, *args):
    """Runs case(T(), srv, *args) (it returns the client's port, or a
    tuple that starts with it); then the tls_stat deltas must be `want`
    and the server's debug line of that connection say `flags`
    (kernel-tx, kernel-rx)."""
    ctr = suite_common.Counters()
    mark = srv.mark()
    got = case(T(), srv, *args)
    port = got[0] if isinstance(got, tuple) else got
    deltas = offload_deltas(ctr)
    expect_eq(deltas, want, "tls_stat deltas TlsTxSw/TlsRxSw/TlsDecryptError")
    lines = srv.conn_tls_lines(mark, port, 10)
    expect_eq([(l["ktx"], l["krx"]) for l in lines], [flags],
              "the server's debug line for the connection: kernel-tx, kernel-rx")
    extra = ""
    d = ttp.session(srv, port, timeout=1)
    if d and "unparsed" not in d:
        extra = ", client to upstream %s, upstream to client %s" % (d["to_up_how"],
                                                                   d["to_client_how"])
    if isinstance(got, tuple) and len(got) > 1:
        extra += ", %s" % (got[1],)
    return "TlsTxSw+%d TlsRxSw+%d TlsDecryptError+%d%s" % (deltas + (extra,))


def reset_case(t, s, port, up, what, how=None, ctx=None):
    """The upstream resets: the client's connection is reset."""
    cport, end = ttp.case_upstream_reset(t, s, port, up, what, how=how, ctx=ctx)
    t.eq(end, "reset", "%s: how the client's connection ended" % what)
    return cport, "the client saw %s" % end


def off_case(t, s, port, up, what, how="copied", ctx=None):
    """--ktls off: echo, then a half-close, on the userspace path (every
    byte copied: nothing to splice without kTLS)."""
    ttp.case_echo(t, s, port[0], up[0], OFF_SIZE, what + ": echo", how=how, ctx=ctx)
    return ttp.case_half_client(t, s, port[1], up[1], what + ": half-close", how=how, ctx=ctx)


# --------------------------------------------------------------------------
# The splice path (issue #15, section 4)

MOVED_RE = re.compile(r"spliced (\d+), copied (\d+)")


def moved(d):
    """((spliced, copied) client to upstream, (spliced, copied) upstream
    to client) of a parsed session line (ttp.session())."""
    m = ttp.SESSION_RE.search(d["line"])
    out = []
    for key in ("to_up_how", "to_client_how"):
        mm = MOVED_RE.fullmatch(m.group(key))
        if not mm:
            raise Fail("the log line does not say spliced S, copied C: %r" % d["line"])
        out.append((int(mm.group(1)), int(mm.group(2))))
    return tuple(out)


def expect_zero_copy(d, what, to_up=True, to_client=True):
    """The session's log line says every byte of the direction(s) was
    spliced, none copied; returns a note of both directions."""
    up, back = moved(d)
    if to_up:
        expect_eq(up, (d["to_up"], 0), "%s: log: client to upstream (spliced, copied) in %r"
                  % (what, d["line"]))
    if to_client:
        expect_eq(back, (d["to_client"], 0), "%s: log: upstream to client (spliced, copied) "
                  "in %r" % (what, d["line"]))
    return "client to upstream spliced %d copied %d, upstream to client spliced %d copied %d" % (
        up + back)


def wait_for(fn, timeout, step=0.02):
    end = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


def upstream_rec(up, n, timeout=None):
    """The record of up's connection number n (0-based: len(up.accepted)
    before the client connected) once its handler has finished; None if
    it does not within timeout. Records of other connections (one a
    failed check left behind) are passed over."""
    end = time.monotonic() + (IO_TIMEOUT if timeout is None else timeout)
    if not wait_for(lambda: len(up.accepted) > n, timeout or IO_TIMEOUT):
        return None
    rec = up.accepted[n]
    while True:
        r = up.next_done(timeout=max(0.0, end - time.monotonic()))
        if r is None or r is rec:
            return r


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread, io-wq workers
    included), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h_banner_echo(conn, rec, up):
    """Speaks first (BANNER), then echoes until EOF and ends its side."""
    conn.sendall(BANNER)
    ttp.h_echo(conn, rec, up)


def h_send_eof_send(conn, rec, up):
    """Reads the client's MID_SENT bytes (so that it speaks once both
    directions are spliced: zero_copy_case is the one that speaks
    first), sends MID_FIRST bytes, reads to EOF, then sends MID_AFTER
    more and closes: it is still sending when the client's end reaches
    it. rec["n"] and ["sha"] are of everything it read."""
    conn.settimeout(IO_TIMEOUT)
    head = bytearray()
    while len(head) < MID_SENT:
        d = conn.recv(MID_SENT - len(head))
        if not d:
            break
        head += d
    conn.sendall(ttp.data(MID_FIRST, 12))
    rec["sent"] = MID_FIRST
    ttp.read_to_end(conn, rec, keep=1)
    rec["n"] += len(head)
    rec["sha"] = ttp.sha(bytes(head)) if rec["n"] == len(head) else "more after %d" % len(head)
    if rec["end"] == "eof":
        conn.sendall(ttp.data(MID_AFTER, 13))
        rec["sent"] += MID_AFTER


def zero_copy_case(t, s, port, up, what, ctx=None):
    """1: banner, then ZC_SIZE each way; spliced TOTAL, copied 0 both ways.
    The banner leaves as soon as the upstream accepts: an ordinary
    receive on the upstream side that is still armed when it arrives
    (rtls_conn_forward() cancels it, what it brings goes through
    on_data) shows here as "copied 35"."""
    src = ttp.data(ZC_SIZE, 11)
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=ctx, keep=len(BANNER)) as c:
        ok = c.run(read=True, until=lambda: c.rx >= len(BANNER), timeout=IO_TIMEOUT)
        t.check(ok and c.rx == len(BANNER) and bytes(c.rx_data) == BANNER,
                "%s: the banner, before the client sends (got %d bytes %r, end %r)"
                % (what, c.rx, bytes(c.rx_data), c.peer_end))
        done = c.run(src, end="close_notify", timeout=IO_TIMEOUT + ZC_SIZE / MIB)
        t.check(done, "%s: the exchange ended in time (sent %d of %d, got %d, end %r)"
                % (what, c.tx_wire, ZC_SIZE, c.rx, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest(), c.peer_end),
             (len(BANNER) + ZC_SIZE, ttp.sha(BANNER + src), "close_notify"),
             "%s: the client got: bytes, sha256 (banner and echo), end" % what)
        cport = c.local_port
    rec = upstream_rec(up, n)
    t.check(rec is not None, "%s: the upstream connection ended" % what)
    t.eq((rec.get("n"), rec.get("sha"), rec.get("end")), (ZC_SIZE, ttp.sha(src), "eof"),
         "%s: upstream got: bytes, sha256, end" % what)
    d = ttp.check_session(t, s, cport, what, to_up=ZC_SIZE, to_client=ZC_SIZE + len(BANNER),
                          cend="close_notify", uend="FIN", how=None, up=up.spec)
    return cport, expect_zero_copy(d, what)


def half_client_spliced_case(t, s, port, up, what, how=None, ctx=None):
    """The half-close client->upstream, and copied 0 upstream to client."""
    cport = ttp.case_half_client(t, s, port, up, what, how=None, ctx=ctx)
    d = ttp.session(s, cport)
    return cport, expect_zero_copy(d, what, to_up=False)


def mid_close_case(t, s, port, up, what, ctx=None):
    """The client's close_notify + FIN while the upstream's bytes are
    being spliced to it, and the upstream sends more after that FIN."""
    src = ttp.data(MID_SENT, 14)
    back = ttp.data(MID_FIRST, 12) + ttp.data(MID_AFTER, 13)
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=ctx) as c:
        t.check(wait_for(lambda: len(up.accepted) > n, IO_TIMEOUT),
                "%s: the upstream connection was not opened" % what)
        # The upstream answers once it has all of src.
        ok = c.run(src, read=True, timeout=IO_TIMEOUT,
                   until=lambda: c.tx >= len(src) and not len(c.pend) and c.rx >= MID_READ)
        t.check(ok and c.peer_end is None, "%s: %d bytes out and %d in before the end (got %d, "
                "end %r)" % (what, MID_SENT, MID_READ, c.rx, c.peer_end))
        at = c.rx
        t.check(at < MID_FIRST, "%s: the client had %d bytes, all of the upstream's first %d, "
                "before its close_notify: nothing was in flight" % (what, at, MID_FIRST))
        done = c.run(end="close_notify", timeout=IO_TIMEOUT)
        t.check(done, "%s: ended in time (got %d, end %r)" % (what, c.rx, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest(), c.peer_end), (len(back), ttp.sha(back), "close_notify"),
             "%s: after our close_notify + FIN at %d bytes: bytes, sha256, then the server's end"
             % (what, at))
        cport = c.local_port
    rec = upstream_rec(up, n)
    t.check(rec is not None, "%s: the upstream connection ended" % what)
    t.eq((rec.get("n"), rec.get("sha"), rec.get("end"), rec.get("sent")),
         (MID_SENT, ttp.sha(src), "eof", MID_FIRST + MID_AFTER),
         "%s: upstream got: bytes, sha256, EOF; it sent" % what)
    d = ttp.check_session(t, s, cport, what, to_up=MID_SENT, to_client=len(back),
                          cend="close_notify", uend="FIN", how=None, up=up.spec)
    return cport, "close_notify at %d of %d bytes; %s" % (at, len(back),
                                                          expect_zero_copy(d, what, to_up=False))


class SClient:
    """openssl s_client -tls1_3 on pipes; stdout (what the server sent,
    after s_client's own lines) and stderr (KEYUPDATE, DONE) apart, each
    collected by a thread; stdin non-blocking, so every write is bounded."""

    def __init__(self, port):
        self.argv = ["openssl", "s_client", "-tls1_3", "-connect", "127.0.0.1:%d" % port,
                     "-servername", "localhost", "-CAfile", WORK.ca]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=True, bufsize=0)
        self.fd = self.proc.stdin.fileno()
        fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.out, self.err = bytearray(), bytearray()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(f, b), daemon=True)
                        for f, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for th in self.threads:
            th.start()

    def _read(self, f, buf):
        while True:
            try:
                d = os.read(f.fileno(), 65536)
            except OSError:
                d = b""
            if not d:
                return
            with self.lock:
                buf += d

    def stdout(self):
        with self.lock:
            return bytes(self.out)

    def stderr(self):
        with self.lock:
            return bytes(self.err)

    def queued(self):
        """Bytes written to s_client's stdin that it has not read yet."""
        buf = fcntl.ioctl(self.fd, termios.FIONREAD, struct.pack("i", 0))
        return struct.unpack("i", buf)[0]

    def write(self, data, timeout):
        """All of data into stdin within timeout; False if not."""
        view = memoryview(data)
        end = time.monotonic() + timeout
        while len(view):
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                return False
            _, w, _ = select.select([], [self.fd], [], min(left, 0.2))
            if not w:
                continue
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                return False
        return True

    def command(self, letter, timeout):
        """A "k"/"K" line read on its own (what s_client took before has
        all been read, and it reads stdin again only once that is out),
        then s_client's KEYUPDATE line: whether both happened in time."""
        n = self.stderr().count(b"KEYUPDATE")
        if not wait_for(lambda: self.queued() == 0, timeout):
            return False
        return self.write(letter + b"\n", timeout) and wait_for(
            lambda: self.stderr().count(b"KEYUPDATE") > n, timeout)

    def finish(self, timeout):
        """Closes stdin (s_client: DONE, close_notify) and waits for its
        exit; kills it by PID if it does not. Its status, or None."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_proc(self.proc, 5)
            rc = None
        for th in self.threads:
            th.join(5)
        return rc

    def kill(self):
        stop_proc(self.proc, 5)


def hex_lines(n, seed):
    """n bytes of lowercase hex lines: no read of them starts with one of
    s_client's command letters (Q, R, k, K)."""
    out = bytearray()
    h = ttp.data(n // 2 + 64, seed).hex().encode()
    i = 0
    while len(out) < n:
        out += h[i:i + 63] + b"\n"
        i += 63
    return bytes(out[:n - 1]) + b"\n"


def keyupdate_check(srv, port, up):
    """2 (rekey kernels): k and K from openssl s_client while its bytes
    flow through the echo upstream, spliced."""
    what = "KeyUpdate mid-splice"
    ctr = suite_common.Counters()
    mark = srv.mark()
    n = len(up.accepted)
    phases = [hex_lines(KU_PHASE, 20 + i) for i in range(3)]
    c = SClient(port)
    try:
        expect_eq(wait_for(lambda: len(up.accepted) > n, IO_TIMEOUT), True,
                  "%s: the upstream connection opened (s_client: %r)" % (what, c.stderr()[-400:]))
        sent = b""
        for i, data in enumerate(phases):
            if i:
                letter = b"k" if i == 1 else b"K"
                expect_eq(c.command(letter, KU_STEP), True,
                          "%s: s_client took %r as a command and sent its KeyUpdate (stderr %r)"
                          % (what, letter, c.stderr()[-400:]))
            expect_eq(c.write(data, KU_STEP), True, "%s: phase %d into s_client" % (what, i + 1))
            sent += data
            # Every byte so far echoed back: the stream is flowing on
            # both sides when the next KeyUpdate comes.
            ok = wait_for(lambda: c.stdout().endswith(sent), KU_STEP, 0.05)
            expect_eq(ok, True, "%s: phase %d echoed back in full (s_client's output %d bytes, "
                      "its end %r)" % (what, i + 1, len(c.stdout()), c.stdout()[-80:]))
        rc = c.finish(IO_TIMEOUT)
    finally:
        c.kill()
    err = c.stderr()
    expect_eq(err.count(b"KEYUPDATE"), 2, "%s: KeyUpdates s_client sent" % what)
    expect_eq(c.stdout().count(sent), 1, "%s: s_client's output has the echo once" % what)
    lines = srv.tls_lines(mark)
    expect_eq([(l["version"], l["ktx"], l["krx"]) for l in lines], [("TLSv1.3", "yes", "yes")],
              "%s: the server's debug line(s): version, kernel-tx, kernel-rx" % what)
    cport = int(lines[0]["port"])
    rec = upstream_rec(up, n)
    expect_eq(rec is not None, True, "%s: the upstream connection ended" % what)
    expect_eq((rec.get("n"), rec.get("sha"), rec.get("end")), (len(sent), ttp.sha(sent), "eof"),
              "%s: upstream got: bytes, sha256, end" % what)
    d = ttp.session(srv, cport)
    expect_eq(d is not None and "unparsed" not in d, True,
              "%s: a log line for client port %d: %r" % (what, cport,
                                                         ttp.session_lines(srv, cport)))
    expect_eq((d["to_up"], d["to_client"], d["cend"]), (len(sent), len(sent), "close_notify"),
              "%s: log: client to upstream, upstream to client bytes, client end" % what)
    note = expect_zero_copy(d, what, to_up=False)
    delta = ctr.delta()
    if delta is None:
        raise Fail("%s is missing" % suite_common.STAT_PATH)
    got = {k: delta.get(k, 0) for k in ("TlsTxSw", "TlsRxSw", "TlsDecryptError",
                                        "TlsRxRekeyOk", "TlsTxRekeyOk", "TlsRxRekeyError",
                                        "TlsTxRekeyError")}
    want_exact = {"TlsTxSw": 1, "TlsRxSw": 1, "TlsDecryptError": 0, "TlsRxRekeyError": 0,
                  "TlsTxRekeyError": 0}
    expect_eq({k: got[k] for k in want_exact}, want_exact, "%s: tls_stat deltas" % what)
    for k, lo in (("TlsRxRekeyOk", 2), ("TlsTxRekeyOk", 1)):
        if got[k] < lo:
            raise Fail("%s: tls_stat %s rose by %d, want >= %d (all: %r)" % (what, k, got[k], lo,
                                                                           got))
    return "%s; %d bytes each way; s_client exit %s; %s" % (
        " ".join("%s%+d" % kv for kv in got.items()), len(sent), rc, note)


def bad_mac_case(t, s, port, up, what, ctx=None):
    """3: a record whose ciphertext has one byte flipped, mid-stream."""
    src = ttp.data(BAD_BEFORE, 15)
    n = len(up.accepted)
    with ttp.TlsPipe(port, ctx=ctx) as c:
        t.check(wait_for(lambda: len(up.accepted) > n, IO_TIMEOUT),
                "%s: the upstream connection was not opened" % what)
        ok = c.run(src, read=True, timeout=IO_TIMEOUT,
                   until=lambda: c.tx >= len(src) and not len(c.pend) and c.rx >= len(src))
        t.check(ok and (c.rx, c.rx_sha.hexdigest(), c.peer_end) == (len(src), ttp.sha(src), None),
                "%s: %d bytes both ways first (got %d, end %r)" % (what, len(src), c.rx,
                                                                   c.peer_end))
        c.obj.write(b"x" * BAD_RECORD)
        rec = bytearray(c.out.read())
        # TLS 1.3: a 5-byte header, the data, its content type, a 16-byte tag.
        t.eq((len(rec), rec[0]), (5 + BAD_RECORD + 1 + 16, 23),
             "%s: the record made: length, outer type" % what)
        rec[5 + BAD_RECORD // 2] ^= 0x40
        c.pend = memoryview(bytes(rec))
        t0 = time.monotonic()
        done = c.run(read=True, timeout=END_TIMEOUT)
        dt = time.monotonic() - t0
        t.check(done, "%s: the session did not end within %g s of the bad record (end %r)"
                % (what, END_TIMEOUT, c.peer_end))
        t.check(c.abrupt, "%s: the client sees an alert, a reset or a bare end, not "
                "close_notify: %r" % (what, c.peer_end))
        t.eq(c.rx, len(src), "%s: bytes the client got in all" % what)
        cport = c.local_port
    rec = upstream_rec(up, n, END_TIMEOUT)
    t.check(rec is not None, "%s: the upstream connection did not end within %g s"
            % (what, END_TIMEOUT))
    t.check(rec.get("end") in ("reset", "eof"), "%s: the upstream's end %r, want a reset or EOF"
            % (what, rec.get("end")))
    t.eq((rec.get("n"), rec.get("sha")), (len(src), ttp.sha(src)),
         "%s: upstream got: exactly the good bytes, sha256" % what)
    d = ttp.check_session(t, s, cport, what, to_up=len(src), to_client=len(src), how=None,
                          up=up.spec)
    t.check(re.fullmatch(r"error( \(.*\))?", d["cend"]), "%s: log: client end %r, want an error"
            % (what, d["cend"]))
    return cport, "ended %.2f s after the bad record; the client saw %s, the upstream %s; log: " \
        "client end %s, upstream end %s; %s" % (dt, c.peer_end, rec.get("end"), d["cend"],
                                                d["uend"], expect_zero_copy(d, what, False, False))


def partial_case(t, s, port, up, what, at_switch, ctx=None):
    """4: PARTIAL_HEAD bytes of a record, PARTIAL_WAIT s, then the rest:
    the server does not spin meanwhile, and the data arrives intact."""
    piece = ttp.data(PARTIAL_RECORD, 16)
    before = b"" if at_switch else ttp.data(PARTIAL_BEFORE, 17)
    n = len(up.accepted)
    mark = s.mark()
    with ttp.TlsPipe(port, ctx=ctx, handshake=not at_switch) as c:
        if at_switch:
            # The handshake by hand, so that the record's first bytes
            # go in the same segment as the client's Finished.
            while True:
                try:
                    c.obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    out = c.out.read()
                    if out:
                        c.sock.sendall(out)
                    d = c.sock.recv(65536)
                    t.check(d, "%s: the server closed during the handshake" % what)
                    c.inc.write(d)
            fin = c.out.read()
        else:
            fin = b""
            t.check(wait_for(lambda: len(up.accepted) > n, IO_TIMEOUT),
                    "%s: the upstream connection was not opened" % what)
            ok = c.run(before, read=True, timeout=IO_TIMEOUT + PARTIAL_BEFORE / MIB,
                       until=lambda: (c.tx >= len(before) and not len(c.pend)
                                      and c.rx >= len(before)))
            t.check(ok and c.rx == len(before), "%s: %d bytes both ways first (got %d, end %r)"
                    % (what, len(before), c.rx, c.peer_end))
        c.obj.write(piece)
        c.tx += len(piece)
        rec = c.out.read()
        t.check(len(rec) > PARTIAL_HEAD + 16, "%s: one record of %d bytes" % (what, len(rec)))
        c.sock.setblocking(True)
        c.sock.sendall(fin + rec[:PARTIAL_HEAD])
        c.sock.setblocking(False)
        # From the server's debug line (the handshake is done) on.
        lines = s.conn_tls_lines(mark, c.local_port, IO_TIMEOUT)
        t.check(lines, "%s: no debug tls line for the connection" % what)
        rx0 = c.rx
        cpu0, t0 = cpu_seconds(s.pid), time.monotonic()
        c.run(read=True, timeout=PARTIAL_WAIT, until=lambda: False)
        cpu = cpu_seconds(s.pid) - cpu0
        dt = time.monotonic() - t0
        t.eq((c.rx, c.peer_end), (rx0, None), "%s: nothing arrives while the record is partial: "
             "bytes, end" % what)
        c.pend = memoryview(rec[PARTIAL_HEAD:])
        total = len(before) + len(piece)
        ok = c.run(read=True, timeout=IO_TIMEOUT, until=lambda: c.rx >= total)
        t.check(ok and c.rx == total, "%s: the record's echo after the rest of it (got %d of %d, "
                "end %r)" % (what, c.rx, total, c.peer_end))
        done = c.run(end="close_notify", timeout=IO_TIMEOUT)
        t.check(done, "%s: ended in time (end %r)" % (what, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest(), c.peer_end),
             (total, ttp.sha(before + piece), "close_notify"),
             "%s: the client got: bytes, sha256, end" % what)
        cport = c.local_port
    rec = upstream_rec(up, n)
    t.check(rec is not None, "%s: the upstream connection ended" % what)
    t.eq((rec.get("n"), rec.get("sha"), rec.get("end")), (total, ttp.sha(before + piece), "eof"),
         "%s: upstream got: bytes, sha256, end" % what)
    d = ttp.check_session(t, s, cport, what, to_up=total, to_client=total, cend="close_notify",
                          uend="FIN", how=None, up=up.spec)
    # Last, so that a FAIL here says the data arrived intact all the same.
    t.check(cpu < PARTIAL_CPU_MAX, "%s: the server used %.2f s of CPU in %.2f s while a "
            "partial record waited (max %.2f s): a busy loop (the data then arrived intact: %s)"
            % (what, cpu, dt, PARTIAL_CPU_MAX, d["line"]))
    return cport, "server CPU %.3f s over %.2f s; %s" % (cpu, dt, expect_zero_copy(d, what, False,
                                                                                    False))


SKIPPED = []


def skip(only, name, why):
    """A SKIP line for a check this kernel cannot run (never a PASS)."""
    if only and not only.search(name):
        return
    SKIPPED.append(name)
    print("SKIP %s: %s" % (name, why), flush=True)


# run_suite()'s summary line, with this suite's skips counted.
_print_summary = suite_common.print_summary
suite_common.print_summary = lambda p, f, s=0: _print_summary(p, f, s + len(SKIPPED))


def main():
    only, full = suite_common.start_suite(__doc__, WATCHDOG)
    rekey = not full     # start_suite: the kernel can rekey TLS 1.3 keys
    ups = []

    def body():
        echo = ttp.Upstream("echo", ttp.h_echo)
        sink = ttp.Upstream("sink", ttp.h_sink_then_send(ttp.HALF_BACK, 3))
        first = ttp.Upstream("first", ttp.h_send_then_sink(ttp.HALF_UP, 4))
        record = ttp.Upstream("record", ttp.h_record)
        reset = ttp.Upstream("reset", ttp.h_send_then_reset(ttp.RESET_AFTER, 7))
        banner = ttp.Upstream("banner", h_banner_echo)
        midup = ttp.Upstream("mid", h_send_eof_send)
        ups.extend((echo, sink, first, record, reset, banner, midup))
        ttp.data(SIZE, 1)   # made once, outside the checks
        print("tcp-proxy suite: %s, kernel %s, server flags %s" % (
            RINGTLS_BIN, os.uname().release, full or "-"), flush=True)
        args = []
        for u in (echo, sink, first, record, reset, banner, midup):
            args += ["--tcp-proxy", "127.0.0.1:0=" + u.spec]
        srv = Server(*full, *args, name="ringtls-tcpproxy")
        p_echo, p_sink, p_first, p_record, p_reset, p_banner, p_mid = tcp_ports(srv, 7)
        on = ((1, 1, 0), ("yes", "yes"))
        for version, cipher in VERSIONS:
            what = "TLSv%s%s" % (version, " " + cipher if cipher else "")
            name = "tcp-proxy %d MB both ways via echo %s" % (SIZE >> 20, what)
            check(only, name + ": sha256 each way, log, kernel TX/RX", offload, srv, *on,
                  ttp.case_echo, p_echo, echo, SIZE, name, None, 1, client_ctx(version, cipher))
        ctx = client_ctx()
        for name, case, port, up in (
                ("half-close client->upstream", half_client_spliced_case, p_sink, sink),
                ("half-close upstream->client", ttp.case_half_upstream, p_first, first),
                ("truncation (FIN without close_notify)", ttp.case_truncation, p_record,
                 record),
                ("upstream reset -> client reset", reset_case, p_reset, reset)):
            check(only, "tcp-proxy %s TLSv1.3: data, ends, log, kernel TX/RX" % name, offload,
                  srv, *on, case, port, up, name, None, ctx)

        # The splice path (issue #15, section 4).
        name = "tcp-proxy zero copy: banner first, then %d MB each way" % (ZC_SIZE >> 20)
        check(only, name + ": sha256, log spliced all, copied 0 both ways, kernel TX/RX",
              offload, srv, *on, zero_copy_case, p_banner, banner, name, ctx)
        name = "tcp-proxy close_notify mid-splice, the upstream still sending"
        check(only, name + ": data, ends, log copied 0 upstream to client, kernel TX/RX",
              offload, srv, *on, mid_close_case, p_mid, midup, name, ctx)
        name = "tcp-proxy KeyUpdate mid-splice (s_client k, K)"
        if rekey:
            check(only, name + ": echoed in full, rekey counters, log copied 0 upstream to "
                  "client, kernel TX/RX", keyupdate_check, srv, p_echo, echo)
        else:
            skip(only, name, "this kernel cannot rekey TLS 1.3 (%s has no TlsRxRekeyOk; the "
                 "server runs with --ktls-rx-no-rekey)" % suite_common.STAT_PATH)
        name = "tcp-proxy bad record MAC from the client mid-stream"
        check(only, name + ": prompt end, TlsDecryptError+1, upstream reset/EOF, log error, "
              "kernel TX/RX", offload, srv, (1, 1, 1), ("yes", "yes"), bad_mac_case, p_echo,
              echo, name, ctx)
        # NEXT_SIZE, not a few KiB: a client whose data, close_notify
        # and FIN are all in before the server's handshake ends makes the
        # kernel refuse the tls ULP (ENOTCONN: not ESTABLISHED, but
        # CLOSE_WAIT), and the server rightly stays in userspace.
        check(only, name + ": the next session is served", offload, srv, *on, ttp.case_echo,
              p_echo, echo, NEXT_SIZE, name + ": the next session", None, 2, ctx)
        for at_switch, where in ((True, "behind the Finished (at the switch)"),
                                 (False, "after %d MB spliced" % (PARTIAL_BEFORE >> 20))):
            name = "tcp-proxy partial record %s" % where
            check(only, name + ": %d of it, %g s, the rest: no busy loop, data intact, kernel "
                  "TX/RX" % (PARTIAL_HEAD, PARTIAL_WAIT), offload, srv, *on, partial_case,
                  p_echo, echo, name, at_switch, ctx)
        stop_server(srv)

        off = Server("--ktls", "off", "--tcp-proxy", "127.0.0.1:0=" + echo.spec,
                     "--tcp-proxy", "127.0.0.1:0=" + sink.spec, name="ringtls-tcpproxy-off")
        ports = tcp_ports(off, 2)
        check(only, "tcp-proxy --ktls off: %d MB echo and a half-close, no counter moves"
              % (OFF_SIZE >> 20), offload, off, (0, 0, 0), ("no", "no"), off_case, ports,
              (echo, sink), "--ktls off", "copied", ctx)
        stop_server(off)

    def cleanup():
        for u in ups:
            u.close()

    return run_suite("tcpproxy-suite-", body, cleanup)


if __name__ == "__main__":
    sys.exit(main())
