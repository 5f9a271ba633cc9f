#!/usr/bin/env python3
"""TCP mode (`ringtls serve --tcp-proxy LISTEN=UPSTREAM[,UPSTREAM...]`):
a TLS listener whose plaintext goes to the upstream unchanged, both ways,
half-closes included, against Python upstreams in threads of this
process (userspace TLS on this machine; tests/kernel/tcpproxy_suite.py
runs the same cases inside kTLS kernels and imports the helpers here).

The client (TlsPipe) is ssl.SSLObject over MemoryBIOs on a plain
non-blocking socket, so that it can send and receive at once and end
only its own direction: close_notify then shutdown(SHUT_WR), or a bare
SHUT_WR (a truncation), and keep reading.

Server A (one reactor), one --tcp-proxy listener per upstream:
a. BIG bytes both ways through an echo upstream, sent and received at
   once, sha256 each way; the session's log line has both byte counts;
b. half-close client->upstream: the client's close_notify + FIN reach
   the upstream as a FIN, after which the upstream sends 2 MiB and
   closes: the client gets all of it (sha256), then close_notify;
c. half-close upstream->client: the upstream sends 1 MiB and shuts its
   write side at once: the client gets 1 MiB and close_notify, THEN
   sends 2 MiB and half-closes: the upstream got all of it;
d. truncation: a FIN without close_notify reaches the upstream as a FIN
   after every byte; the log says "truncated (FIN without close_notify)";
e. an upstream that refuses: the client's handshake completes, then the
   connection ends with no data and no close_notify, the log says
   "connect failed"; again while that server is marked down; the server
   serves the next session; two upstreams whose first refuses: every
   session goes to the second;
f. an upstream that resets mid-stream: the client gets no close_notify
   (a reset or a bare end), the log says "reset by us";
i. a unix:/path upstream;
k. abuse: a client that never reads while its upstream floods (FLOOD
   bytes), and a client that floods while its upstream never reads: the
   other side is held back (what got out stays under INFLIGHT_MAX), the
   server's RSS grows by at most RSS_MAX_KIB over the warm baseline, its
   CPU time over a second of the stall is at most CPU_STALL_MAX of a
   core, and an echo session meanwhile works. A reset of the side the
   server has stopped reading (the flooding upstream, the flooding
   client) ends the session within 5 s, carried to the other side as a
   reset, not only at --idle-timeout (60 s).
Server B (--idle-timeout 1s), g: a session with no traffic ends within a
bound; one side's end in the log is "idle timeout", the other's "reset
by us", and that other side sees a TCP reset.
Server C (--upstream-proxy-protocol v1), h: the upstream gets the PROXY
line (client port, the listener's port) and then exactly the data.
j: bad --tcp-proxy values are refused at start with one line naming
them and a non-zero exit.
Server D, l: the same from --config YAML (`tcp-proxy: [...]`), and
check-config accepts the file.
Every session has exactly one log line, whose byte counts and ends are
checked ("copied" on this machine: userspace TLS).

Under valgrind (RTLS_UNDER_VALGRIND=1) BIG is 4 MiB and the bounds are
scaled by RTLS_TIME_SCALE; ASan and valgrind get a larger RSS bound.
RTLS_TCP_PARTS=a,b runs only those parts."""
import hashlib
import os
import queue
import re
import selectors
import socket
import ssl
import struct
import threading
import time
import traceback

import rtls_test as rt
import tls_util as tu

MIB = 1 << 20
VG = rt.UNDER_VALGRIND
BIG = (4 if VG else 100) * MIB       # a: each way
HALF_BACK = 2 * MIB                  # b: upstream to client after the client's end
HALF_UP = 1 * MIB                    # b: client to upstream; c: upstream first
HALF_AFTER = 2 * MIB                 # c: client to upstream after the upstream's end
TRUNC = 1 * MIB                      # d
RESET_AFTER = 256 << 10              # f: the upstream's bytes before its reset
UNIX_SIZE = 1 * MIB                  # i
SMALL = 64 << 10                     # sessions that show the server still serves
FLOOD = (32 if VG else 200) * MIB    # k: the most the flooding side offers
INFLIGHT_MAX = 64 * MIB              # k: what the flooding side may get out
# k: growth over the baseline taken after part a (whose transfer touches
# every provided buffer of the reactor). ASan: its quarantine capped at
# 16 MiB (rt.asan_quarantine), and its shadow; valgrind: memcheck's queue
# of freed blocks and a warm-up too small to touch every buffer.
RSS_MAX_KIB = (48 if rt.ASAN or VG else 16) * 1024
CPU_STALL_MAX = 0.05 * (3 if rt.ASAN or VG else 1)   # fraction of a core
IDLE = 1.0                           # server B's --idle-timeout, s
# Waits for something that must happen; the kernel suite sets WAIT
# (its guest is ~100x slower).
WAIT = rt.scaled(20.0)
CHUNK = 256 << 10

LISTEN_HTTPS_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(https\)")
# How a direction's bytes were moved: "copied" or "spliced" (all one
# way), or "spliced S, copied C".
SESSION_RE = re.compile(
    r" tcp-proxy 127\.0\.0\.1:(?P<cport>\d+) -> (?P<up>\S+): (?P<secs>\d+\.\d{3}) s, "
    r"client to upstream (?P<to_up>\d+) bytes \((?P<to_up_how>[^)]*)\), "
    r"upstream to client (?P<to_client>\d+) bytes \((?P<to_client_how>[^)]*)\), "
    r"client end: (?P<cend>.*?), upstream end: (?P<uend>.*)$")
HOW_RE = re.compile(r"copied|spliced|spliced (\d+), copied (\d+)")
TRUNCATED = "truncated (FIN without close_notify)"


def data(n, seed):
    """n deterministic bytes (SHAKE-256 of the seed)."""
    return hashlib.shake_256(b"tcp-proxy-%d" % seed).digest(n)


def sha(b):
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------------------
# The client: TLS over MemoryBIOs on a plain socket


def client_ctx():
    """No verification (the server's self-signed certificate), no ALPN."""
    return tu.client_ctx(alpn=None)


class TlsPipe(rt.SockOwner):
    """A TLS client that can end one direction and keep the other:
    SSLObject over MemoryBIOs on a socket that is non-blocking after the
    handshake. What it reads is counted (.rx), hashed (.rx_sha) and kept
    up to `keep` bytes (.rx_data). .peer_end says how the server's
    direction ended: None (not yet), "close_notify", "fin" (a TCP end
    without close_notify), "reset" (a TCP reset), or "tls error: ..."."""

    def __init__(self, port, ctx=None, timeout=None, rcvbuf=None, sndbuf=None, keep=0,
                 handshake=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.timeout = WAIT if timeout is None else timeout
        self.sock.settimeout(self.timeout)
        t0 = time.time()
        self.sock.connect(("127.0.0.1", port))
        self.local_port = self.sock.getsockname()[1]
        PORT_T0[self.local_port] = t0
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = (ctx or client_ctx()).wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.pend = memoryview(b"")     # ciphertext not yet sent
        self.tx = 0                     # plaintext handed to TLS
        self.tx_wire = 0                # bytes the socket took
        self.rx = 0
        self.rx_sha = hashlib.sha256()
        self.keep = keep
        self.rx_data = bytearray()
        self.peer_end = None
        self.tcp_eof = False
        self.reset = False
        self.sent_close_notify = False
        self.shut_wr = False
        self.send_error = None
        if handshake:
            self.handshake()

    def handshake(self):
        """Blocking, bounded by the socket timeout; then non-blocking."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                out = self.out.read()
                if out:
                    self.sock.sendall(out)
                d = self.sock.recv(65536)
                if not d:
                    raise rt.ConnClosed("the server closed during the handshake")
                self.inc.write(d)
        out = self.out.read()
        if out:
            self.sock.sendall(out)
        self.sock.setblocking(False)
        # The peer's first records can come in the same recv as its
        # last handshake message: they are in self.inc already, and
        # run()'s select would not see them until more bytes came.
        self._decrypt()

    # -- receiving

    def _got(self, d):
        self.rx += len(d)
        self.rx_sha.update(d)
        if len(self.rx_data) < self.keep:
            self.rx_data += d[:self.keep - len(self.rx_data)]

    def _decrypt(self):
        while self.peer_end is None:
            try:
                d = self.obj.read(CHUNK)
            except ssl.SSLWantReadError:
                if self.tcp_eof:
                    self.peer_end = "reset" if self.reset else "fin"
                return
            except ssl.SSLZeroReturnError:
                self.peer_end = "close_notify"
                return
            except ssl.SSLEOFError:
                self.peer_end = "reset" if self.reset else "fin"
                return
            except ssl.SSLError as e:
                self.peer_end = "tls error: %s" % e
                return
            if not d:
                self.peer_end = "close_notify"
                return
            self._got(d)
        # (a KeyUpdate answer or the like would be in self.out: _fill sends it)

    def _recv(self):
        try:
            d = self.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            d = b""
        if d:
            self.inc.write(d)
        else:
            self.tcp_eof = True
            self.inc.write_eof()
        self._decrypt()

    @property
    def clean(self):
        return self.peer_end == "close_notify"

    @property
    def abrupt(self):
        """The server's direction ended without close_notify."""
        return self.peer_end is not None and self.peer_end != "close_notify"

    # -- sending

    def _fill(self, src, off):
        """More ciphertext into self.pend from src[off:]; returns the new off."""
        if len(self.pend) == 0 and off < len(src) and self.send_error is None:
            piece = src[off:off + CHUNK]
            self.obj.write(piece)
            self.tx += len(piece)
            off += len(piece)
            self.pend = memoryview(self.out.read())
        return off

    def _send(self):
        try:
            n = self.sock.send(self.pend)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, BrokenPipeError) as e:
            self.send_error = e
            self.reset = True
            self.pend = memoryview(b"")
            return
        self.pend = self.pend[n:]
        self.tx_wire += n

    def _close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass    # our close_notify is out; the peer's is not in yet
        except ssl.SSLError:
            pass
        self.sent_close_notify = True
        self.pend = memoryview(bytes(self.pend) + self.out.read())

    def run(self, src=b"", end=None, read=True, timeout=None, until=None):
        """Sends src (bytes) as application data while reading what comes,
        then ends our direction: end="close_notify" (close_notify, then
        SHUT_WR), "fin" (SHUT_WR alone: a truncation) or None. Returns True
        once all is sent and ended and, if read, the server's direction has
        ended (.peer_end), or once until() is true; False after timeout
        seconds (default: the socket's)."""
        src = memoryview(src)
        off = 0
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        try:
            while True:
                off = self._fill(src, off)
                if (len(self.pend) == 0 and off >= len(src) and end and not self.shut_wr
                        and self.send_error is None):
                    if end == "close_notify" and not self.sent_close_notify:
                        self._close_notify()
                    if len(self.pend) == 0:
                        try:
                            self.sock.shutdown(socket.SHUT_WR)
                        except OSError as e:
                            self.send_error = e
                        self.shut_wr = True
                sent = self.send_error is not None or (
                    len(self.pend) == 0 and off >= len(src) and (not end or self.shut_wr))
                if sent and (not read or self.peer_end is not None):
                    return True
                if until and until():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                ev = selectors.EVENT_READ if read and self.peer_end is None else 0
                if len(self.pend):
                    ev |= selectors.EVENT_WRITE
                if not ev:   # nothing to wait for but until()
                    time.sleep(min(left, 0.02))
                    continue
                sel.modify(self.sock, ev)
                for _, got in sel.select(min(left, 0.2)):
                    if got & selectors.EVENT_WRITE:
                        self._send()
                    if got & selectors.EVENT_READ:
                        self._recv()
        finally:
            sel.close()

    def tcp_end(self, timeout=None):
        """After the peer's close_notify: how the TCP connection ends,
        "fin", "reset", "data" (more bytes came) or None (not within
        timeout)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            d = self.sock.recv(CHUNK)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        finally:
            self.sock.setblocking(False)
        return "data" if d else "fin"

    def flood(self, stop, limit):
        """Sends application data as fast as the server takes it, never
        reading, until stop (an Event) is set, limit bytes went, or the
        connection fails; .tx_wire counts what the socket took."""
        block = os.urandom(CHUNK)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_WRITE)
        try:
            while not stop.is_set() and self.tx_wire < limit and self.send_error is None:
                if len(self.pend) == 0:
                    self.obj.write(block)
                    self.tx += len(block)
                    self.pend = memoryview(self.out.read())
                if sel.select(0.1):
                    self._send()
        finally:
            sel.close()


# --------------------------------------------------------------------------
# Upstreams: a listener in a thread, a thread per connection


def read_to_end(conn, rec, keep=0, timeout=None):
    """Reads conn until its peer's end: rec gets n, sha, head (the first
    `keep` bytes) and end ("eof", "reset", "timeout" or "error: ...")."""
    conn.settimeout(WAIT if timeout is None else timeout)
    h = hashlib.sha256()
    n = 0
    head = bytearray()
    end = None
    while end is None:
        try:
            d = conn.recv(CHUNK)
        except socket.timeout:
            end = "timeout"
            break
        except ConnectionResetError:
            end = "reset"
            break
        except OSError as e:
            end = "error: %s" % e
            break
        if not d:
            end = "eof"
            break
        n += len(d)
        h.update(d)
        if len(head) < keep:
            head += d[:keep - len(head)]
    rec.update(n=n, sha=h.hexdigest(), head=bytes(head), end=end, t_end=time.monotonic())
    return rec


def h_echo(conn, rec, up):
    """Echoes until EOF, then ends its side (FIN)."""
    conn.settimeout(WAIT)
    h = hashlib.sha256()
    n = 0
    end = None
    while end is None:
        try:
            d = conn.recv(CHUNK)
        except socket.timeout:
            end = "timeout"
            break
        except ConnectionResetError:
            end = "reset"
            break
        if not d:
            end = "eof"
            break
        n += len(d)
        h.update(d)
        try:
            conn.sendall(d)
        except OSError as e:
            end = "send: %s" % e
    if end == "eof":
        conn.shutdown(socket.SHUT_WR)
    rec.update(n=n, sha=h.hexdigest(), end=end)


def h_sink_then_send(size, seed):
    """Reads to EOF, THEN sends `size` bytes and closes (b)."""
    def handler(conn, rec, up):
        read_to_end(conn, rec)
        if rec["end"] == "eof":
            conn.sendall(data(size, seed))
            rec["sent"] = size
    return handler


def h_send_then_sink(size, seed):
    """Sends `size` bytes, shuts its write side at once, reads to EOF (c)."""
    def handler(conn, rec, up):
        conn.settimeout(WAIT)
        conn.sendall(data(size, seed))
        conn.shutdown(socket.SHUT_WR)
        rec["sent"] = size
        read_to_end(conn, rec)
    return handler


def h_record(conn, rec, up):
    """Reads to EOF (keeping the first KiB), then closes (d, g, h)."""
    read_to_end(conn, rec, keep=1024)


def h_send_then_reset(size, seed):
    """Sends `size` bytes, waits a little, then resets (SO_LINGER 0) (f)."""
    def handler(conn, rec, up):
        conn.sendall(data(size, seed))
        time.sleep(0.3)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rec["sent"] = size
    return handler


def h_flood(limit):
    """Sends as fast as the proxy takes, never reading, until `limit`
    bytes, the upstream's stop, or an error; rec["sent"] grows live. Once
    rec["cut"] is set, resets the connection (SO_LINGER 0) (k)."""
    def handler(conn, rec, up):
        block = os.urandom(CHUNK)
        rec["sent"] = 0
        conn.settimeout(0.1)
        while rec["sent"] < limit and not up.stop.is_set() and not rec["cut"].is_set():
            try:
                rec["sent"] += conn.send(block)
            except socket.timeout:
                continue
            except OSError as e:
                rec["end"] = "error: %s" % e
                break
        if rec["cut"].is_set():
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return handler


def h_hold(conn, rec, up):
    """Never reads; holds the connection until the upstream's stop (k)."""
    up.stop.wait(WAIT * 3)


class Upstream:
    """A listener on 127.0.0.1:0 (or unix=PATH) in a thread; each
    connection runs handler(conn, rec, self) in a thread of its own. rec
    is a dict, listed in .accepted at once and put in .done when the
    handler returns (the connection is then closed)."""

    def __init__(self, name, handler, unix=None):
        self.name = name
        self.handler = handler
        self.stop = threading.Event()
        self.done = queue.Queue()
        self.accepted = []
        self.conns = []
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix)
            self.spec = "unix:" + unix
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.spec = "127.0.0.1:%d" % self.port
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = {"peer": peer, "t0": time.monotonic(), "cut": threading.Event()}
            self.accepted.append(rec)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, rec), daemon=True).start()

    def _serve(self, conn, rec):
        try:
            self.handler(conn, rec, self)
        except Exception as e:  # noqa: BLE001 - reported through rec
            rec.setdefault("end", "handler: %s: %s" % (type(e).__name__, e))
        finally:
            try:
                conn.close()
            except OSError:
                pass
            self.done.put(rec)

    def drain(self):
        """Forgets the records of finished connections."""
        while True:
            try:
                self.done.get_nowait()
            except queue.Empty:
                return

    def next_done(self, timeout=None):
        """The record of the next connection to finish, or None."""
        try:
            return self.done.get(timeout=WAIT if timeout is None else timeout)
        except queue.Empty:
            return None

    def close(self):
        self.stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(2)


def refused_port():
    """A port bound without listening (nobody else takes it): connects get RST."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


# --------------------------------------------------------------------------
# The server and its log


class ProxyServer(rt.Process):
    """ringtls serve with only --tcp-proxy listeners (or a --config that
    has them), one reactor, info log; .ports are the listeners' ports in
    the order given."""

    def __init__(self, *args, ntcp, name="ringtls"):
        self.state_dir = rt.temp_dir("rtls-state-")
        argv = [rt.RINGTLS_BIN, "serve", "--state-dir", self.state_dir, "--threads", "1",
                "--log-level", "info", "--shutdown-timeout", "3s", *[str(a) for a in args]]
        super().__init__(argv, name=name)
        end = time.monotonic() + rt.START_TIMEOUT
        while True:
            ports = [int(p) for p in LISTEN_HTTPS_RE.findall(self.log())]
            if len(ports) >= ntcp:
                self.ports = ports
                return
            if not self.alive() or time.monotonic() > end:
                raise RuntimeError("%s did not start (exit %s); stderr:\n%s"
                                   % (name, self.proc.poll(), self.log()))
            time.sleep(0.02)

    def lines(self):
        return self.log_lines()


def server_lines(s):
    """The log lines of an integration server or of a kernel suite's."""
    return s.lines() if hasattr(s, "lines") else s.lines_since(0)


# When the running part began (wall clock): an earlier part's session may
# have had the same client port (the kernel reuses ephemeral ports), and
# its line must not be taken for this one's. Kernel suites set it at each
# check's start (suite_common.check). 0: no cut.
PART_T0 = 0.0
# When the latest TlsPipe from each client port began to connect: within
# one part too, a port the server closed first is free again at once.
PORT_T0 = {}


def session_lines(s, cport):
    rx = re.compile(r" tcp-proxy 127\.0\.0\.1:%d " % cport)
    since = max(PART_T0, PORT_T0.get(cport, 0.0))
    return [l for l in server_lines(s) if rx.search(l)
            and (not since or (rt.logged_at(l) or since) >= since - 0.002)]


def how_moved(paren, total):
    """A direction's "(...)" as "copied" or "spliced" (all of it one way),
    "mixed", or None if it does not parse or does not add up to total."""
    m = HOW_RE.fullmatch(paren)
    if not m:
        return None
    if m.group(1) is None:
        return paren
    spliced, copied = int(m.group(1)), int(m.group(2))
    if spliced + copied != total:
        return None
    return "spliced" if copied == 0 and spliced else "copied" if spliced == 0 else "mixed"


def session(s, cport, timeout=None):
    """The session log line of client port cport, parsed (a dict; byte
    counts as ints, how each direction was moved as how_moved() says),
    once it is there; {"unparsed": line} for a line that names the
    session but does not parse; None after timeout."""
    end = time.monotonic() + (WAIT if timeout is None else timeout)
    while True:
        for l in session_lines(s, cport):
            m = SESSION_RE.search(l)
            if not m:
                return {"unparsed": l}
            d = m.groupdict()
            d["to_up"], d["to_client"] = int(d["to_up"]), int(d["to_client"])
            d["to_up_how"] = how_moved(d["to_up_how"], d["to_up"])
            d["to_client_how"] = how_moved(d["to_client_how"], d["to_client"])
            d["line"] = l
            return d
        if time.monotonic() >= end:
            return None
        time.sleep(0.02)


def check_session(t, s, cport, what, to_up=None, to_client=None, cend=None, uend=None,
                  how="copied", up=None):
    """The one log line of the session from client port cport: its byte
    counts, ends (a string, or a regex with re.compile), "copied" or
    "spliced" (how=None: either) and upstream name, where given."""
    d = session(s, cport)
    if not t.check(d is not None, "%s: a tcp-proxy log line for client port %d; lines naming "
                   "it: %r" % (what, cport, session_lines(s, cport))):
        return None
    if not t.check("unparsed" not in d, "%s: the log line does not parse: %r"
                   % (what, d.get("unparsed"))):
        return None
    time.sleep(0.05)
    t.eq(len(session_lines(s, cport)), 1, "%s: log lines naming the client" % what)
    if to_up is not None:
        t.eq(d["to_up"], to_up, "%s: log: client to upstream bytes" % what)
    if to_client is not None:
        t.eq(d["to_client"], to_client, "%s: log: upstream to client bytes" % what)
    for key, want, name in (("cend", cend, "client end"), ("uend", uend, "upstream end")):
        if want is None:
            continue
        if isinstance(want, re.Pattern):
            t.check(want.fullmatch(d[key]), "%s: log: %s %r, want /%s/" % (what, name, d[key],
                                                                          want.pattern))
        else:
            t.eq(d[key], want, "%s: log: %s" % (what, name))
    if how:
        t.eq((d["to_up_how"], d["to_client_how"]), (how, how), "%s: log: how each direction "
             "was moved" % what)
    else:
        t.check(d["to_up_how"] and d["to_client_how"], "%s: log: how each direction was moved "
                "does not add up: %r" % (what, d["line"]))
    if up is not None:
        t.eq(d["up"], up, "%s: log: the upstream" % what)
    return d


# --------------------------------------------------------------------------
# The cases (tests/kernel/tcpproxy_suite.py runs them too; t is a Checker
# or the suite's raising stand-in, s the server, port the listener)


def case_echo(t, s, port, up, size, what, how="copied", seed=1, ctx=None):
    """Both ways at once through an echo upstream, sha256 each way."""
    src = data(size, seed)
    up.drain()
    t0 = time.monotonic()
    with TlsPipe(port, ctx=ctx) as c:
        done = c.run(src, end="close_notify", timeout=WAIT + size / (2 * MIB))
        dt = time.monotonic() - t0
        t.check(done, "%s: the exchange ended in time (sent %d of %d, got %d, end %r)"
                % (what, c.tx_wire, size, c.rx, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest()), (size, sha(src)), "%s: bytes back, sha256" % what)
        t.eq(c.peer_end, "close_notify", "%s: the server's end" % what)
        cport = c.local_port
    rec = up.next_done()
    t.check(rec is not None, "%s: the upstream connection ended" % what)
    if rec:
        t.eq((rec.get("n"), rec.get("sha"), rec.get("end")), (size, sha(src), "eof"),
             "%s: upstream got: bytes, sha256, end" % what)
    print("%s: %d KiB each way in %.2f s" % (what, size >> 10, dt), flush=True)
    check_session(t, s, cport, what, to_up=size, to_client=size, cend="close_notify",
                  uend="FIN", how=how, up=up.spec)
    return cport


def case_half_client(t, s, port, up, what, how="copied", ctx=None):
    """b: the client ends first; the upstream answers after its EOF."""
    src = data(HALF_UP, 2)
    back = data(HALF_BACK, 3)
    up.drain()
    with TlsPipe(port, ctx=ctx) as c:
        done = c.run(src, end="close_notify")
        t.check(done, "%s: ended in time (got %d, end %r)" % (what, c.rx, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest(), c.peer_end), (HALF_BACK, sha(back), "close_notify"),
             "%s: after our close_notify + FIN: bytes, sha256, then the server's end" % what)
        cport = c.local_port
    rec = up.next_done()
    if t.check(rec is not None, "%s: the upstream connection ended" % what):
        t.eq((rec.get("n"), rec.get("sha"), rec.get("end"), rec.get("sent")),
             (HALF_UP, sha(src), "eof", HALF_BACK),
             "%s: upstream got: bytes, sha256, EOF; then sent" % what)
    check_session(t, s, cport, what, to_up=HALF_UP, to_client=HALF_BACK, cend="close_notify",
                  uend="FIN", how=how)
    return cport


def case_half_upstream(t, s, port, up, what, how="copied", ctx=None):
    """c: the upstream ends first; the client sends after that."""
    first = data(HALF_UP, 4)
    after = data(HALF_AFTER, 5)
    up.drain()
    with TlsPipe(port, ctx=ctx) as c:
        done = c.run(read=True)
        t.check(done, "%s: the upstream's end reached the client in time (got %d, end %r)"
                % (what, c.rx, c.peer_end))
        t.eq((c.rx, c.rx_sha.hexdigest(), c.peer_end), (HALF_UP, sha(first), "close_notify"),
             "%s: bytes, sha256, then close_notify" % what)
        t.check(not up.accepted or "end" not in up.accepted[-1],
                "%s: the upstream is still reading after its FIN" % what)
        done = c.run(after, end="close_notify", read=False)
        t.check(done and c.send_error is None, "%s: the client sent %d bytes after the "
                "server's close_notify (error %r)" % (what, HALF_AFTER, c.send_error))
        rec = up.next_done()
        if t.check(rec is not None, "%s: the upstream connection ended" % what):
            t.eq((rec.get("sent"), rec.get("n"), rec.get("sha"), rec.get("end")),
                 (HALF_UP, HALF_AFTER, sha(after), "eof"),
                 "%s: upstream sent; then got: bytes, sha256, EOF" % what)
        t.eq(c.tcp_end(), "fin", "%s: then the server closes the connection" % what)
        cport = c.local_port
    check_session(t, s, cport, what, to_up=HALF_AFTER, to_client=HALF_UP, cend="close_notify",
                  uend="FIN", how=how)
    return cport


def case_truncation(t, s, port, up, what, how="copied", ctx=None):
    """d: a FIN without close_notify, after TRUNC bytes."""
    src = data(TRUNC, 6)
    up.drain()
    with TlsPipe(port, ctx=ctx) as c:
        done = c.run(src, end="fin")
        t.check(done, "%s: ended in time (end %r)" % (what, c.peer_end))
        t.eq((c.rx, c.peer_end), (0, "close_notify"),
             "%s: the upstream's close reaches the client: bytes, end" % what)
        cport = c.local_port
    rec = up.next_done()
    if t.check(rec is not None, "%s: the upstream connection ended" % what):
        t.eq((rec.get("n"), rec.get("sha"), rec.get("end")), (TRUNC, sha(src), "eof"),
             "%s: upstream got: every byte, sha256, then EOF" % what)
    check_session(t, s, cport, what, to_up=TRUNC, to_client=0, cend=TRUNCATED, uend="FIN",
                  how=how)
    return cport


def case_upstream_reset(t, s, port, up, what, how="copied", ctx=None):
    """f: the upstream resets after RESET_AFTER bytes."""
    sent = data(RESET_AFTER, 7)
    up.drain()
    with TlsPipe(port, keep=RESET_AFTER, ctx=ctx) as c:
        done = c.run(read=True)
        t.check(done, "%s: the connection ended in time (got %d)" % (what, c.rx))
        t.check(c.abrupt, "%s: the client sees a reset or a bare end, not close_notify: %r"
                % (what, c.peer_end))
        t.check(c.rx <= RESET_AFTER and bytes(c.rx_data) == sent[:c.rx],
                "%s: what arrived (%d bytes) is a prefix of what the upstream sent" % (what, c.rx))
        print("%s: the client got %d of %d bytes, then %s" % (what, c.rx, RESET_AFTER, c.peer_end))
        cport = c.local_port
    check_session(t, s, cport, what, to_client=None, cend="reset by us",
                  uend="error (Connection reset by peer)", how=how)
    return cport, c.peer_end


def case_client_reset(t, s, port, up, what, how="copied", ctx=None):
    """m: the client resets (SO_LINGER 0) after sending some bytes: the
    upstream must read a reset, never a clean end that would make the cut
    stream look complete (a FIN used to go first when the socket's send
    queue was empty)."""
    up.drain()
    with TlsPipe(port, ctx=ctx) as c:
        c.run(b"warm", read=False)
        time.sleep(0.05)
        # Many small records, the last ones still being written to the
        # upstream when the reset comes (a send in flight).
        for _ in range(200):
            c.run(b"y" * 2000, read=False)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
    rec = up.next_done()
    if t.check(rec is not None, "%s: the upstream connection ended" % what):
        t.eq(rec.get("end"), "reset",
             "%s: after %s bytes, the upstream reads a reset (not EOF)" % (what, rec.get("n")))


# --------------------------------------------------------------------------
# Parts


class Env:
    pass


def part_a(t, e):
    case_echo(t, e.a, e.port["echo"], e.echo, BIG, "a. %d MiB both ways via echo" % (BIG >> 20))


def part_b(t, e):
    case_half_client(t, e.a, e.port["sink"], e.sink, "b. half-close client->upstream")


def part_c(t, e):
    case_half_upstream(t, e.a, e.port["first"], e.first, "c. half-close upstream->client")


def part_d(t, e):
    case_truncation(t, e.a, e.port["record"], e.record, "d. truncation")


def refused_session(t, s, port, what):
    """A session whose upstream cannot be reached: the handshake
    completes, then the connection ends with no data, no close_notify."""
    try:
        c = TlsPipe(port)
    except (OSError, rt.ConnClosed, ssl.SSLError) as ex:
        t.check(False, "%s: the handshake did not complete: %r" % (what, ex))
        return None
    with c:
        done = c.run(read=True)
        t.check(done, "%s: the connection ended in time" % what)
        t.eq((c.rx, c.abrupt), (0, True), "%s: bytes, ended without close_notify (%r)"
             % (what, c.peer_end))
        print("%s: the client saw %s" % (what, c.peer_end))
        return c.local_port


def part_e(t, e):
    s = e.a
    what = "e. upstream refuses"
    cport = refused_session(t, s, e.port["dead"], what)
    if cport:
        check_session(t, s, cport, what, to_up=0, to_client=0, cend="reset by us",
                      uend="connect failed (Connection refused)",
                      up="127.0.0.1:%d" % e.dead_port)
    t.check(any(re.search(r"upstream 127\.0\.0\.1:%d: .*marked down" % e.dead_port, l)
                for l in s.lines()), "%s: the server is marked down in the log" % what)
    what = "e. upstream marked down"
    cport = refused_session(t, s, e.port["dead"], what)
    if cport:
        check_session(t, s, cport, what, to_up=0, to_client=0, cend="reset by us",
                      uend=re.compile(r"connect failed( \(.*\))?"))
    case_echo(t, s, e.port["echo"], e.echo, SMALL, "e. the next session")
    for i in range(2):
        case_echo(t, s, e.port["half"], e.echo, SMALL,
                  "e. two upstreams, the first refuses, #%d" % (i + 1))
    t.check(any(re.search(r"upstream 127\.0\.0\.1:%d: .*marked down" % e.dead2_port, l)
                for l in s.lines()), "e. the first of two upstreams was tried and marked down")


def part_f(t, e):
    case_upstream_reset(t, e.a, e.port["reset"], e.reset, "f. upstream resets mid-stream")


def part_g(t, e):
    s, up = e.b, e.idle_up
    what = "g. --idle-timeout %gs" % IDLE
    up.drain()
    with TlsPipe(s.ports[0]) as c:
        t0 = time.monotonic()
        done = c.run(read=True, timeout=rt.scaled(IDLE + 5))
        dt = time.monotonic() - t0
        t.check(done, "%s: the idle session ended within %g s" % (what, rt.scaled(IDLE + 5)))
        t.check(IDLE * 0.8 <= dt <= rt.scaled(IDLE + 2.5),
                "%s: the session ended after %.2f s, want %g..%g" % (what, dt, IDLE * 0.8,
                                                                    rt.scaled(IDLE + 2.5)))
        t.check(c.abrupt and c.rx == 0, "%s: the client gets no data and no close_notify: %r"
                % (what, c.peer_end))
        cport = c.local_port
    rec = up.next_done(timeout=rt.scaled(5))
    t.check(rec is not None, "%s: the upstream connection ended" % what)
    print("%s: ended after %.2f s; the client saw %s, the upstream %s"
          % (what, dt, c.peer_end, rec and rec.get("end")))
    d = check_session(t, s, cport, what, to_up=0, to_client=0)
    if d:
        ends = (d["cend"], d["uend"])
        t.check(ends in (("idle timeout", "reset by us"), ("reset by us", "idle timeout")),
                "%s: log: one end idle timeout, the other reset by us: %r" % (what, ends))
        if d["cend"] == "reset by us":
            t.eq(c.peer_end, "reset", "%s: the client's side is reset" % what)
        if d["uend"] == "reset by us" and rec:
            t.eq(rec.get("end"), "reset", "%s: the upstream's side is reset" % what)


def part_h(t, e):
    s, up = e.c, e.pp_up
    what = "h. --upstream-proxy-protocol v1"
    payload = b"hello through the tunnel\n" * 10
    up.drain()
    with TlsPipe(s.ports[0]) as c:
        done = c.run(payload, end="close_notify")
        t.check(done and c.peer_end == "close_notify", "%s: ended cleanly: %r" % (what,
                                                                                  c.peer_end))
        cport = c.local_port
    rec = up.next_done()
    want = b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, s.ports[0]) + payload
    if t.check(rec is not None, "%s: the upstream connection ended" % what):
        t.eq((rec.get("head"), rec.get("n"), rec.get("end")), (want, len(want), "eof"),
             "%s: what the upstream got: the PROXY line, then the data" % what)
    check_session(t, s, cport, what, to_up=len(payload), to_client=0, cend="close_notify",
                  uend="FIN")


def part_i(t, e):
    case_echo(t, e.a, e.port["unix"], e.uecho, UNIX_SIZE, "i. unix:/path upstream", seed=8)


def start_error(args):
    """ringtls serve ARGS that must not start: (status, stderr lines)."""
    d = rt.temp_dir("rtls-state-")
    p = rt.run_cmd([rt.RINGTLS_BIN, "serve", "--state-dir", d, *args], timeout=20)
    return p.returncode, [l for l in p.stderr.decode("utf-8", "replace").splitlines() if l]


def part_j(t, e):
    cases = (
        ("127.0.0.1:0", r"expected LISTEN=UPSTREAM"),
        # TCP mode's TLS upstream is tls://, not an HTTP URL.
        ("127.0.0.1:0=https://127.0.0.1:1", r"a path or user in an upstream URL"),
        ("=127.0.0.1:1", r"expected LISTEN=UPSTREAM"),
        ("127.0.0.1:0=no-such-host.invalid:80", r"no-such-host\.invalid"),
        ("127.0.0.1:0=127.0.0.1", r"port"),
        ("127.0.0.1:0=unix:relative.sock", r"absolute"),
        # A bad LISTEN is found where --tls-listen's is, when the
        # listeners are opened: after the self-signed certificate is
        # made (an info line), so only the error lines are counted.
        ("not-an-address=127.0.0.1:1", r"not-an-address"),
    )
    for spec, want in cases:
        what = "j. --tcp-proxy %s" % spec
        try:
            rc, lines = start_error(["--tcp-proxy", spec])
        except Exception as ex:  # noqa: BLE001 - it started, or hung
            t.check(False, "%s: did not exit: %r" % (what, ex))
            continue
        if spec.startswith("not-an-address"):
            lines = [l for l in lines if not re.match(r"\S+ info ", l)]
        t.check(rc != 0, "%s: exit status %d, want non-zero" % (what, rc))
        t.check(len(lines) == 1 and re.search(want, lines[0])
                and (spec in lines[0] or spec.startswith("not-an-address")),
                "%s: one line naming it and /%s/: %r" % (what, want, lines))


def stall_cpu(s):
    """The server's CPU over one second, as a fraction of a core."""
    a, ta = s.cpu_seconds(), time.monotonic()
    time.sleep(1.0)
    return (s.cpu_seconds() - a) / (time.monotonic() - ta)


def wait_stalled(counter, settle, timeout):
    """Waits until counter() has not grown for `settle` s; its value, or
    None if it keeps growing for `timeout` s."""
    end = time.monotonic() + timeout
    last, since = counter(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        v = counter()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= settle:
            return v
    return None


def check_stall(t, e, what, counter, rss0):
    """The flood is held back: it stops, under INFLIGHT_MAX; RSS and CPU
    are bounded; an echo session on another listener works meanwhile."""
    s = e.a
    settle = 0.5 * (3 if VG else 1)
    got = wait_stalled(counter, settle, rt.scaled(20))
    if not t.check(got is not None, "%s: the flood is never held back (%d MiB so far)"
                   % (what, counter() >> 20)):
        return
    t.check(got <= INFLIGHT_MAX, "%s: %d MiB got out before it was held back (max %d)"
            % (what, got >> 20, INFLIGHT_MAX >> 20))
    # Up to three one-second readings, the lowest counts: a server still
    # working off what it had taken in before the stall (under valgrind
    # on a busy machine that outlasts the settle time: 19% seen in CI)
    # comes down; one that spins does not.
    cpu = stall_cpu(s)
    for _ in range(2):
        if cpu <= CPU_STALL_MAX:
            break
        cpu = min(cpu, stall_cpu(s))
    rss = s.rss_kib()
    print("%s: held back after %.1f MiB; server CPU %.1f%% of a core, RSS +%d KiB"
          % (what, got / MIB, cpu * 100, rss - rss0), flush=True)
    t.check(cpu <= CPU_STALL_MAX, "%s: server CPU %.0f%% of a core while stalled (max %.0f%%)"
            % (what, cpu * 100, CPU_STALL_MAX * 100))
    t.check(rss - rss0 <= RSS_MAX_KIB, "%s: server RSS grew by %d KiB (max %d)"
            % (what, rss - rss0, RSS_MAX_KIB))
    case_echo(t, s, e.port["echo"], e.echo, 1 * MIB, "%s: an echo session meanwhile" % what,
              seed=9)
    t.check(s.rss_kib() - rss0 <= RSS_MAX_KIB, "%s: server RSS grew by %d KiB after the echo "
            "(max %d)" % (what, s.rss_kib() - rss0, RSS_MAX_KIB))


def part_k(t, e):
    s = e.a
    rss0 = s.rss_kib()
    # A client that never reads while its upstream floods.
    what = "k. a client that never reads, the upstream floods"
    with TlsPipe(e.port["flood"], rcvbuf=64 << 10) as c:
        ok = au_wait(lambda: e.flood.accepted, rt.scaled(5))
        if t.check(ok, "%s: the upstream connection is open" % what):
            rec = e.flood.accepted[-1]
            check_stall(t, e, what, lambda: rec.get("sent", 0), rss0)
        cport = c.local_port
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The client's reset, while the server is writing to it: carried upstream.
    d = check_session(t, s, cport, what, to_up=0)
    if d:
        t.eq((d["cend"], d["uend"]), ("error (Connection reset by peer)", "reset by us"),
             "%s: log: ends after the client's reset" % what)
    # The flooding upstream resets while the server holds it back.
    what = "k. the flooding upstream resets while held back"
    # Counted before the client connects: the server may open the
    # upstream connection before TlsPipe's handshake has returned here.
    n = len(e.flood.accepted)
    with TlsPipe(e.port["flood"], rcvbuf=64 << 10) as c:
        if t.check(au_wait(lambda: len(e.flood.accepted) > n, rt.scaled(5)),
                   "%s: the upstream connection is open" % what):
            rec = e.flood.accepted[-1]
            got = wait_stalled(lambda: rec.get("sent", 0), 0.5 * (3 if VG else 1),
                               rt.scaled(20))
            t.check(got is not None, "%s: the flood is never held back" % what)
            rec["cut"].set()
            d = session(s, c.local_port, timeout=rt.scaled(5))
            if t.check(d is not None, "%s: the upstream's reset does not end the session "
                       "within %g s" % (what, rt.scaled(5))):
                check_session(t, s, c.local_port, what, to_up=0, cend="reset by us",
                              uend="error (Connection reset by peer)")
                c.run(read=True, timeout=rt.scaled(10))
                t.check(c.abrupt, "%s: the client sees a reset or a bare end, not "
                        "close_notify: %r" % (what, c.peer_end))
    # A client that floods while its upstream never reads.
    what = "k. a client that floods, the upstream never reads"
    stop = threading.Event()
    with TlsPipe(e.port["hold"], sndbuf=1 << 20) as c:
        th = threading.Thread(target=c.flood, args=(stop, FLOOD), daemon=True)
        th.start()
        try:
            check_stall(t, e, what, lambda: c.tx_wire, rss0)
        finally:
            stop.set()
            th.join(rt.scaled(5))
        cport = c.local_port
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The client's reset must end the session (and reach the upstream as
    # a reset) although the server has stopped reading the client: not
    # only at --idle-timeout (60 s here).
    d = session(s, cport, timeout=rt.scaled(5))
    if t.check(d is not None, "%s: the client's reset does not end the session within %g s"
               % (what, rt.scaled(5))):
        d = check_session(t, s, cport, what, to_client=0)
        if d:
            t.eq((d["cend"], d["uend"]), ("error (Connection reset by peer)", "reset by us"),
                 "%s: log: ends after the client's reset" % what)
    t.check(s.alive(), "k. server alive")


def au_wait(fn, timeout):
    end = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def part_l(t, e):
    d = rt.temp_dir("rtls-cfg-")
    cfg = os.path.join(d, "tcp.yaml")
    rt.write_file(cfg, 'threads: 1\nlog-level: info\ntcp-proxy: ["127.0.0.1:0=%s"]\n'
                  % e.echo.spec)
    p = rt.run_cmd([rt.RINGTLS_BIN, "check-config", "--config", cfg], timeout=20)
    t.eq((p.returncode, p.stderr), (0, b""), "l. check-config accepts tcp-proxy")
    s = ProxyServer("--config", cfg, ntcp=1, name="ringtls-config")
    t.eq(len(s.ports), 1, "l. --config: listeners")
    case_echo(t, s, s.ports[0], e.echo, SMALL, "l. --config tcp-proxy: echo")
    tu.stop_ok(t, s, "l. server from --config")


def part_m(t, e):
    for i in range(10):
        case_client_reset(t, e.a, e.port["record"], e.record,
                          "m. client reset mid-stream, run %d" % (i + 1))


PARTS = [("a", part_a), ("b", part_b), ("c", part_c), ("d", part_d), ("e", part_e),
         ("f", part_f), ("g", part_g), ("h", part_h), ("i", part_i), ("j", part_j),
         ("k", part_k), ("l", part_l), ("m", part_m)]


def start(e):
    e.echo = Upstream("echo", h_echo)
    e.sink = Upstream("sink", h_sink_then_send(HALF_BACK, 3))
    e.first = Upstream("first", h_send_then_sink(HALF_UP, 4))
    e.record = Upstream("record", h_record)
    e.reset = Upstream("reset", h_send_then_reset(RESET_AFTER, 7))
    e.uecho = Upstream("uecho", h_echo, unix=os.path.join(rt.temp_dir("rtls-uds-"), "up.sock"))
    e.flood = Upstream("flood", h_flood(FLOOD))
    e.hold = Upstream("hold", h_hold)
    e.idle_up = Upstream("idle", h_record)
    e.pp_up = Upstream("pp", h_record)
    e.dead_sock, e.dead_port = refused_port()
    e.dead2_sock, e.dead2_port = refused_port()
    routes = [("echo", e.echo.spec), ("sink", e.sink.spec), ("first", e.first.spec),
              ("record", e.record.spec), ("dead", "127.0.0.1:%d" % e.dead_port),
              ("half", "127.0.0.1:%d,%s" % (e.dead2_port, e.echo.spec)),
              ("reset", e.reset.spec), ("unix", e.uecho.spec), ("flood", e.flood.spec),
              ("hold", e.hold.spec)]
    args = []
    for _, spec in routes:
        args += ["--tcp-proxy", "127.0.0.1:0=" + spec]
    with rt.asan_quarantine(16):
        e.a = ProxyServer(*args, ntcp=len(routes), name="ringtls-A")
    e.port = {name: p for (name, _), p in zip(routes, e.a.ports)}
    e.a.cpu_seconds = lambda: _cpu_seconds(e.a.pid)
    e.b = ProxyServer("--idle-timeout", "%gs" % IDLE, "--tcp-proxy",
                      "127.0.0.1:0=" + e.idle_up.spec, ntcp=1, name="ringtls-B")
    e.c = ProxyServer("--upstream-proxy-protocol", "v1", "--tcp-proxy",
                      "127.0.0.1:0=" + e.pp_up.spec, ntcp=1, name="ringtls-C")


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test(t):
    rt.need_binary(rt.RINGTLS_BIN, "ringtls")
    e = Env()
    ups = ("echo", "sink", "first", "record", "reset", "uecho", "flood", "hold", "idle_up",
           "pp_up")
    try:
        start(e)
        only = os.environ.get("RTLS_TCP_PARTS")
        global PART_T0
        for name, fn in PARTS:
            if only and name not in only.split(","):
                continue
            t0 = time.monotonic()
            PART_T0 = time.time()
            try:
                fn(t, e)
            except Exception:  # noqa: BLE001 - one part's error is one failed check
                t.check(False, "part %s: exception:\n%s" % (name, traceback.format_exc()))
            print("part %s: %.1f s" % (name, time.monotonic() - t0), flush=True)
        for s in (e.a, e.b, e.c):
            tu.stop_ok(t, s, s.name)
    finally:
        for x in ups:
            if getattr(e, x, None):
                getattr(e, x).close()
        for x in ("dead_sock", "dead2_sock"):
            if getattr(e, x, None):
                getattr(e, x).close()


if __name__ == "__main__":
    rt.main(test, watchdog=180)
