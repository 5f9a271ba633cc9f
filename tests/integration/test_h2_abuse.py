#!/usr/bin/env python3
"""HTTP/2 abuse (issue 16 §3), with Python's h2 (python3-h2) and, where
the h2 state machine refuses to send the bad thing, frames built by hand
or with hyperframe and hpack (installed with it). One server, one
reactor, a TLS (ALPN h2) and a plaintext (h2c) listener, a short
--idle-timeout. While each attack runs, curl --http2 asks for /hello on
a new connection every 0.25 s, alternately over TLS and h2c, and every
request must be answered; the server's CPU time over the attack is
bounded relative to its length, and so is the growth of its RSS.
1. rapid reset (CVE-2023-44487): HEADERS then RST_STREAM in a loop, on
   new connections for 2 s: each gets a GOAWAY after at most about 1000
   resets (nghttp2's reset rate limit) and is closed;
2. CONTINUATION flood (CVE-2024-28182): HEADERS without END_HEADERS then
   endless CONTINUATION frames, empty or carrying fields: GOAWAY, close;
3. HPACK bomb: a 4000-byte field put into the dynamic table and then
   referenced by 1-byte indices: a list just over --max-header-bytes
   gets a 431 on its stream and the connection goes on; one far over it
   gets GOAWAY ENHANCE_YOUR_CALM;
4. PING and SETTINGS floods from clients that never read: memory stays
   bounded and each is cut (nghttp2's outbound-ACK limit or the idle
   deadline); a SETTINGS frame with 100 entries: GOAWAY ENHANCE_YOUR_CALM;
5. too many streams: before the client has acknowledged
   SETTINGS_MAX_CONCURRENT_STREAMS, 105 at once: the first 100 are
   answered, the rest get RST_STREAM REFUSED_STREAM and the connection
   goes on; after it, 101: the 101st gets a stream error (REFUSED_STREAM
   or PROTOCOL_ERROR, RFC 9113 §5.1.2) or, nghttp2's choice (§5.4.1),
   GOAWAY PROTOCOL_ERROR naming the 100th (a NOTE says how many of the
   100 were answered before the close);
6. zero-window stall: SETTINGS_INITIAL_WINDOW_SIZE 0 and a 16 MiB file:
   no DATA is sent, and the idle deadline cuts the connection, also
   when the client keeps it busy with PINGs; a 1000-byte window gets
   exactly 1000 bytes until a WINDOW_UPDATE;
7. invalid frames from the RFC 9113 error catalogue: the right GOAWAY
   code (and one log line) or RST_STREAM PROTOCOL_ERROR (and the
   connection goes on); an invalid preface on an ALPN h2 connection is
   not answered as HTTP/1.1, nor an h2 preface on an ALPN http/1.1 one.
Exit 77 (SKIP) where no Python here imports h2 or curl lacks HTTP/2."""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time


def _reexec_with_h2():
    """The interpreter that runs the suite may not see Debian's
    python3-h2 (a pyenv one); /usr/bin/python3 then runs this file."""
    if os.environ.get("RTLS_H2_REEXEC"):
        return
    here = os.path.realpath(sys.executable)
    for py in ("/usr/bin/python3", shutil.which("python3")):
        if not py or not os.path.exists(py) or os.path.realpath(py) == here:
            continue
        try:
            r = subprocess.run([py, "-c", "import h2.connection, hpack, hyperframe"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            os.environ["RTLS_H2_REEXEC"] = "1"
            sys.stdout.flush()
            os.execv(py, [py] + sys.argv)


try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings
    import hpack
    from hyperframe import frame as hf
    HAVE_H2 = True
except ImportError:
    _reexec_with_h2()
    HAVE_H2 = False

import rtls_test as rt
import abuse_util as au

IDLE = 2.0               # --idle-timeout, seconds
CPU_MAX = 0.5            # server CPU, fraction of one core over an attack
CPU_MIN_WINDOW = 1.0     # a shorter attack is measured as if it took this
# Growth of the server's RSS over an attack: 4 non-reading PING flooders
# take 18 MiB (40 under ASan; each has 256 KiB of output queued at most,
# but memory grew by 4-5 MiB a connection).
RSS_MAX_KIB = 64 * 1024
BIG = 16 << 20           # /big.bin
HELLO = b"Hello, World!"
RR_SECONDS = 2.0         # rapid reset: new connections for this long
RR_MAX_STREAMS = 1500    # streams one connection may open before its GOAWAY
FLOOD_CUT = IDLE + 3.0   # a non-reading flooder is cut within this (scaled)
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQ = [(":method", "GET"), (":scheme", "https"), (":path", "/hello"), (":authority", "localhost")]

# RFC 9113 §7
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL = 5, 6, 7, 8
ENHANCE_YOUR_CALM = 11
ERR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
             4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
             7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
             11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
TCP_ESTABLISHED = 1


def err_name(code):
    return ERR_NAMES.get(code, str(code))


def frame(ftype, flags, sid, payload=b""):
    """One frame, as is: hyperframe refuses most of the bad ones."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid) + payload


def tcp_state(so):
    info = so.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return struct.unpack("B", info[:1])[0]


# --------------------------------------------------------------------------
# Clients


def dial(s, tls, rcvbuf=None, alpn=("h2",), timeout=None):
    """A connected socket: TLS with ALPN (verified against the server's
    self-signed certificate in --state-dir), or plain TCP for h2c."""
    so = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # bind() before connect(): a port unique among all live sockets. A
    # connect() alone picks per destination, so a TLS and an h2c client
    # could share one, and the log tells connections apart by port.
    so.bind(("127.0.0.1", 0))
    if rcvbuf:
        so.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    so.settimeout(timeout or rt.IO_TIMEOUT)
    so.connect(s.tls_addr if tls else s.addr)
    if not tls:
        return so
    ctx = ssl.create_default_context(cafile=os.path.join(s.state_dir, "selfsigned-cert.pem"))
    ctx.set_alpn_protocols(list(alpn))
    so = ctx.wrap_socket(so, server_hostname="localhost")
    if so.selected_alpn_protocol() != alpn[0]:
        raise AssertionError("ALPN: the server chose %r, want %r"
                             % (so.selected_alpn_protocol(), alpn[0]))
    return so


class Peer(rt.SockOwner):
    """A socket with bounded reads; .eof is None, "eof" or "reset"."""

    def __init__(self, s, tls, rcvbuf=None, alpn=("h2",)):
        self.tls = tls
        # The log from here on: a port closed by the server can be bound
        # again by a later peer, so a peer's lines start at its own mark.
        self.mark = s.mark()
        self.sock = dial(s, tls, rcvbuf, alpn)
        self.local_port = self.sock.getsockname()[1]
        self.eof = None
        self.raw = b""   # every byte received

    def send(self, *parts):
        self.sock.settimeout(rt.IO_TIMEOUT)
        self.sock.sendall(b"".join(p if isinstance(p, bytes) else p.serialize() for p in parts))

    def recv_some(self, timeout):
        """Bytes that came within timeout (b"" if none), or None at EOF."""
        if self.eof:
            return None
        self.sock.settimeout(max(timeout, 0.0001))
        try:
            d = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return b""
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.eof = "reset"
            return None
        if not d:
            self.eof = "eof"
            return None
        self.raw += d
        return d

    def wait_closed(self, timeout):
        """True if the server closes within timeout (scaled), reading what comes."""
        end = time.monotonic() + rt.scaled(timeout)
        while not self.eof and time.monotonic() < end:
            self.feed(self.recv_some(end - time.monotonic()))
        return bool(self.eof)

    def feed(self, data):
        pass


class Raw(Peer):
    """Raw frames: hpack for header blocks, hyperframe to parse what the
    server sends. Sends the preface and SETTINGS unless told not to."""

    def __init__(self, s, tls=True, settings=None, preface=True, rcvbuf=None):
        super().__init__(s, tls, rcvbuf)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.frames = []
        if preface:
            self.send(H2_PREFACE, hf.SettingsFrame(0, settings or {}))

    def block(self, hdrs, huffman=True):
        return self.enc.encode(hdrs, huffman=huffman)

    def headers(self, sid, hdrs=REQ, end_stream=True, end_headers=True, huffman=True):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, sid, self.block(hdrs, huffman))

    def feed(self, data):
        if not data:
            return
        self.buf += data
        while len(self.buf) >= 9:
            f, n = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + n:
                break
            f.parse_body(memoryview(self.buf[9:9 + n]))
            self.buf = self.buf[9 + n:]
            if isinstance(f, hf.HeadersFrame):
                f.fields = dict(self.dec.decode(f.data, raw=True))
            self.frames.append(f)

    def read(self, timeout=2.0, until=None):
        """Reads frames for up to timeout (scaled) s, or until until(frame)."""
        end = time.monotonic() + rt.scaled(timeout)
        while not self.eof and time.monotonic() < end:
            if until and any(until(f) for f in self.frames):
                break
            self.feed(self.recv_some(end - time.monotonic()))
        return self.frames

    def goaway(self):
        return next((f for f in self.frames if isinstance(f, hf.GoAwayFrame)), None)

    def read_goaway(self, timeout=2.0):
        self.read(timeout, until=lambda f: isinstance(f, hf.GoAwayFrame))
        return self.goaway()

    def rst(self, sid):
        return next((f.error_code for f in self.frames
                     if isinstance(f, hf.RstStreamFrame) and f.stream_id == sid), None)

    def status(self, sid):
        return next((f.fields.get(b":status") for f in self.frames
                     if isinstance(f, hf.HeadersFrame) and f.stream_id == sid), None)

    def body(self, sid):
        """(DATA bytes of the stream, whether END_STREAM came)."""
        out, done = b"", False
        for f in self.frames:
            if f.stream_id == sid and isinstance(f, (hf.DataFrame, hf.HeadersFrame)):
                if isinstance(f, hf.DataFrame):
                    out += f.data
                done = done or "END_STREAM" in f.flags
        return out, done

    def stream_done(self, sid):
        return lambda f: f.stream_id == sid and ("END_STREAM" in f.flags or
                                                 isinstance(f, hf.RstStreamFrame))

    def summary(self):
        out = []
        for f in self.frames[-6:]:
            if isinstance(f, hf.GoAwayFrame):
                out.append("GOAWAY(%s, last %d, %r)" % (err_name(f.error_code), f.last_stream_id,
                                                        f.additional_data[:60]))
            elif isinstance(f, hf.RstStreamFrame):
                out.append("RST_STREAM(%d, %s)" % (f.stream_id, err_name(f.error_code)))
            else:
                out.append("%s(%d)" % (type(f).__name__, f.stream_id))
        return ", ".join(out) + (", " + self.eof if self.eof else "")


class H2(Peer):
    """A client driven by h2's state machine (h2.connection)."""

    def __init__(self, s, tls=True, initial_window=None, rcvbuf=None):
        super().__init__(s, tls, rcvbuf)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=cfg)
        if initial_window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:
                                             initial_window,
                                             h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()
        self.events = []
        self.flush()

    def flush(self):
        d = self.conn.data_to_send()
        if d:
            self.send(d)

    def feed(self, data):
        if data:
            self.events += self.conn.receive_data(data)
            self.flush()

    def pump(self, timeout=0.0, until=None, scale=True):
        """Reads events for up to timeout s (scaled unless told: a wait
        for something that must not happen is not), or until until(event)."""
        end = time.monotonic() + (rt.scaled(timeout) if scale else timeout)
        while not self.eof:
            if until and any(until(e) for e in self.events):
                break
            d = self.recv_some(max(0.0, end - time.monotonic()))
            self.feed(d)
            if d == b"" and time.monotonic() >= end:
                break

    def terminated(self):
        return next((e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)),
                    None)

    def got(self, cls, sid=None):
        return [e for e in self.events if isinstance(e, cls)
                and (sid is None or getattr(e, "stream_id", None) == sid)]

    def data_len(self, sid):
        return sum(len(e.data) for e in self.got(h2.events.DataReceived, sid))


# --------------------------------------------------------------------------
# Watching the server


class Health(threading.Thread):
    """curl --http2 GET /hello on a new connection every 0.25 s, TLS and
    h2c in turn; each answer must be "Hello, World!" over HTTP/2 within
    3 s. Also samples the server's RSS."""

    def __init__(self, s):
        super().__init__(daemon=True)
        self.s = s
        self.cafile = os.path.join(s.state_dir, "selfsigned-cert.pem")
        self.results = []   # (start, end, ok, what)
        self.rss = []       # (time, KiB)
        self.done = threading.Event()

    def ask(self, tls):
        if tls:
            url = "https://localhost:%d/hello" % self.s.tls_port
            args = ["--http2", "--cacert", self.cafile,
                    "--resolve", "localhost:%d:127.0.0.1" % self.s.tls_port, url]
        else:
            args = ["--http2-prior-knowledge", "http://127.0.0.1:%d/hello" % self.s.port]
        try:
            r = subprocess.run(["curl", "-sS", "--max-time", "%g" % rt.scaled(3.0),
                                "-w", "\n%{http_version}", *args],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=rt.scaled(10.0))
        except subprocess.TimeoutExpired:
            return False, "curl ran past its timeout"
        want = HELLO + b"\n2"
        return (r.returncode == 0 and r.stdout == want,
                "%s rc %d %r %r" % ("tls" if tls else "h2c", r.returncode, r.stdout[-40:],
                                    r.stderr[-120:]))

    def run(self):
        i = 0
        while not self.done.is_set():
            t0 = time.monotonic()
            ok, what = self.ask(tls=i % 2 == 0)
            self.results.append((t0, time.monotonic(), ok, what))
            try:
                self.rss.append((time.monotonic(), self.s.rss_kib()))
            except (OSError, RuntimeError):
                pass
            i += 1
            self.done.wait(0.25)

    def between(self, a, b):
        return [r for r in self.results if a <= r[0] <= b]


class Part:
    """One attack's window: CPU time, RSS peak, the normal client's
    requests, and the log lines since its start."""

    def __init__(self, t, s, health, name):
        self.t, self.s, self.health, self.name = t, s, health, name
        self.mark = s.mark()
        self.t0 = time.monotonic()
        self.cpu0 = s.cpu_seconds()
        self.rss0 = s.rss_kib()
        self.rss_peak = self.rss0

    def sample(self):
        self.rss_peak = max(self.rss_peak, self.s.rss_kib())

    def lines(self, peer=None):
        """Log lines since the part began, or one peer's: those since its
        own mark that name its port. Check a peer's lines before the next
        peer is dialled (a closed port can be bound again)."""
        if peer is None:
            return self.s.lines_since(self.mark)
        tag = "127.0.0.1:%d:" % peer.local_port
        return [l for l in self.s.lines_since(peer.mark) if tag in l]

    def check(self, cond, msg):
        return self.t.check(cond, "%s: %s" % (self.name, msg))

    def end(self, cpu_max=CPU_MAX):
        """The checks every attack shares, over its window."""
        self.sample()
        t1 = time.monotonic()
        dur = t1 - self.t0
        cpu = self.s.cpu_seconds() - self.cpu0
        for when, kib in self.health.rss:
            if self.t0 <= when <= t1:
                self.rss_peak = max(self.rss_peak, kib)
        bound = cpu_max * rt.TIME_SCALE * max(dur, CPU_MIN_WINDOW)
        print("%s: %.2f s, server CPU %.2f s (max %.2f), RSS +%d KiB"
              % (self.name, dur, cpu, bound, self.rss_peak - self.rss0), flush=True)
        self.check(cpu <= bound, "server CPU %.2f s over %.2f s of attack (max %.2f s)"
                   % (cpu, dur, bound))
        if rt.UNDER_VALGRIND:
            # memcheck's own shadow memory grows with what the server allocates
            self.t.skip("%s: no RSS bound under valgrind" % self.name)
        else:
            self.check(self.rss_peak - self.rss0 <= RSS_MAX_KIB,
                       "server RSS grew by %d KiB (max %d)" % (self.rss_peak - self.rss0,
                                                               RSS_MAX_KIB))
        asked = self.health.between(self.t0, t1)
        bad = [r[3] for r in asked if not r[2]]
        self.check(not bad, "the normal client was not served during the attack: %s" % bad[:3])
        if dur >= 1.5:
            self.check(asked, "the normal client asked nothing during %.1f s" % dur)
        self.check(self.s.alive(), "server alive")


def one_line(p, c, what):
    """A connection error is logged once: one "http2 PEER:" line (its
    GOAWAY, or nghttp2's reason where none could be sent)."""
    time.sleep(0.05)
    tag = "http2 127.0.0.1:%d:" % c.local_port
    ls = [l for l in p.lines(c) if tag in l]
    return p.check(len(ls) == 1, "%s: want one log line for the connection error, got %r"
                   % (what, ls))


# --------------------------------------------------------------------------
# 1. Rapid reset


def rapid_reset(t, s, health):
    p = Part(t, s, health, "rapid reset")
    until = time.monotonic() + RR_SECONDS
    conns = []
    while time.monotonic() < until or len(conns) < 2:
        c = H2(s, tls=len(conns) % 2 == 0)
        opened = 0
        try:
            while not c.terminated() and not c.eof and opened < 10 * RR_MAX_STREAMS:
                for _ in range(100):
                    sid = c.conn.get_next_available_stream_id()
                    c.conn.send_headers(sid, REQ, end_stream=True)
                    c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                    opened += 1
                c.flush()
                c.pump(0)
                p.sample()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        c.pump(1.0, until=lambda e: isinstance(e, h2.events.ConnectionTerminated))
        closed = c.wait_closed(2.0)
        ev = c.terminated()
        conns.append((c.local_port, opened, ev, closed))
        what = "connection from port %d (%d streams opened and reset)" % (c.local_port, opened)
        if p.check(ev is not None, "%s: no GOAWAY" % what):
            took = (ev.last_stream_id + 1) // 2
            p.check(ev.error_code in (INTERNAL_ERROR, ENHANCE_YOUR_CALM),
                    "%s: GOAWAY %s, want INTERNAL_ERROR or ENHANCE_YOUR_CALM"
                    % (what, err_name(ev.error_code)))
            p.check(took <= RR_MAX_STREAMS,
                    "%s: the server took %d streams before its GOAWAY (max %d)"
                    % (what, took, RR_MAX_STREAMS))
            p.check(closed, "%s: not closed after the GOAWAY" % what)
            one_line(p, c, what)
        c.close()
    print("rapid reset: %d connections, streams before GOAWAY %s"
          % (len(conns), [(c[2].last_stream_id + 1) // 2 if c[2] else None for c in conns]))
    p.end()


# --------------------------------------------------------------------------
# 2. CONTINUATION flood


def continuation_flood(t, s, health):
    p = Part(t, s, health, "CONTINUATION flood")
    # Empty fragments: only a count of frames can stop them. Fields: each
    # 16 KiB fragment carries about 1500 literal fields, never indexed.
    field = b"\x00\x03x-c\x05hello"  # literal without indexing, new name
    kinds = [("empty", b""), ("fields", field * (16384 // len(field)))]
    for i in range(4):
        kind, frag = kinds[i % 2]
        tls = i < 2
        c = Raw(s, tls=tls)
        what = "%s CONTINUATIONs over %s" % (kind, "TLS" if tls else "h2c")
        c.send(c.headers(1, end_headers=False))
        sent, t0 = 0, time.monotonic()
        try:
            while not c.eof and not c.goaway() and time.monotonic() - t0 < rt.scaled(1.5):
                c.send(frame(CONTINUATION, 0, 1, frag) * 64)
                sent += 64
                c.read(0.001)
                p.sample()
        except OSError:
            pass
        g = c.read_goaway(1.0)
        closed = c.wait_closed(2.0)
        print("%s: %d sent in %.2f s; %s" % (what, sent, time.monotonic() - t0, c.summary()))
        p.check(g is not None and g.error_code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR),
                "%s: want GOAWAY ENHANCE_YOUR_CALM (or PROTOCOL_ERROR), got %s"
                % (what, c.summary()))
        p.check(closed, "%s: connection not closed" % what)
        one_line(p, c, what)
        c.close()
    p.end()


# --------------------------------------------------------------------------
# 3. HPACK bomb


def hpack_bomb(t, s, health):
    p = Part(t, s, health, "HPACK bomb")
    big = ("x-bomb", "b" * 4000)   # 4038 bytes in the table (RFC 7541 §4.1), 4096 max
    ref = b"\xbe"                   # indexed field 62: the newest dynamic entry
    # Just over --max-header-bytes (8192): three copies; a 431, and the
    # connection goes on.
    c = Raw(s, tls=True)
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                 c.block(REQ + [big], huffman=False) + ref * 2))
    c.read(2.0, until=c.stream_done(1))
    p.check(c.status(1) == b"431", "3 x 4 KB fields: stream answered %r, want 431 (%s)"
            % (c.status(1), c.summary()))
    c.send(c.headers(3))
    c.read(2.0, until=c.stream_done(3))
    p.check(c.status(3) == b"200" and c.body(3) == (HELLO, True) and not c.goaway(),
            "after the 431 the connection goes on: %s" % c.summary())
    c.close()
    # Far over it: 12000 references decode to 48 MB from a 16 KB frame
    # (the CONTINUATION flood with fields takes the same path).
    for i in range(4):
        tls = i % 2 == 0
        c = Raw(s, tls=tls)
        what = "12000 references over %s" % ("TLS" if tls else "h2c")
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                     c.block(REQ + [big], huffman=False) + ref * 12000))
        g = c.read_goaway(2.0)
        p.check(g is not None and g.error_code == ENHANCE_YOUR_CALM,
                "%s: want GOAWAY ENHANCE_YOUR_CALM, got %s" % (what, c.summary()))
        p.check(c.wait_closed(2.0), "%s: connection not closed" % what)
        one_line(p, c, what)
        p.check(c.status(1) is None, "%s: the stream was answered (%r)" % (what, c.status(1)))
        c.close()
        p.sample()
    p.end()


# --------------------------------------------------------------------------
# 4. PING and SETTINGS floods


class Flooder(threading.Thread):
    """Sends one kind of frame as fast as it can and never reads, with a
    4 KiB receive buffer, until the server cuts it off."""

    def __init__(self, s, tls, data, limit):
        super().__init__(daemon=True)
        self.c = Raw(s, tls=tls, rcvbuf=4096)
        self.blob = data * (65536 // len(data))
        self.limit = limit
        self.sent = 0
        self.cut_after = None

    def run(self):
        t0 = time.monotonic()
        so = self.c.sock
        so.settimeout(0.2)
        while time.monotonic() - t0 < self.limit:
            try:
                so.sendall(self.blob)
                self.sent += len(self.blob)
            except (socket.timeout, ssl.SSLWantWriteError):
                pass
            except OSError:
                break
            if tcp_state(so) != TCP_ESTABLISHED:
                break
        self.cut_after = time.monotonic() - t0


def floods(t, s, health):
    p = Part(t, s, health, "PING/SETTINGS flood")
    limit = rt.scaled(FLOOD_CUT)
    fl = [("PING over TLS", Flooder(s, True, hf.PingFrame(0, b"12345678").serialize(), limit)),
          ("SETTINGS over h2c", Flooder(s, False, hf.SettingsFrame(0, {}).serialize(), limit)),
          ("PING over h2c", Flooder(s, False, hf.PingFrame(0, b"abcdefgh").serialize(), limit)),
          ("SETTINGS over TLS", Flooder(s, True, hf.SettingsFrame(0, {}).serialize(), limit))]
    for _, f in fl:
        f.start()
    while any(f.is_alive() for _, f in fl):
        p.sample()
        time.sleep(0.05)
    for what, f in fl:
        f.join()
        state = tcp_state(f.c.sock)
        print("%s: %d KiB sent, TCP state %d after %.2f s" % (what, f.sent >> 10, state,
                                                               f.cut_after or -1))
        p.check(f.sent >= len(f.blob), "%s: only %d bytes sent: no flood" % (what, f.sent))
        p.check(state != TCP_ESTABLISHED,
                "%s: still connected after %.1f s of flooding without reading" % (what, limit))
        ls = p.lines(f.c)
        p.check(any("Flooding" in l or "ENHANCE_YOUR_CALM" in l or "stopped reading" in l
                    for l in ls), "%s: the cut is not logged: %r" % (what, ls))
        f.c.close()
    # A SETTINGS frame with more entries than nghttp2 takes (32).
    c = Raw(s, tls=True)
    c.send(hf.SettingsFrame(0, {0x100 + i: 1 for i in range(100)}))
    g = c.read_goaway(2.0)
    p.check(g is not None and g.error_code == ENHANCE_YOUR_CALM,
            "SETTINGS with 100 entries: want GOAWAY ENHANCE_YOUR_CALM, got %s" % c.summary())
    p.check(c.wait_closed(2.0), "SETTINGS with 100 entries: connection not closed")
    one_line(p, c, "SETTINGS with 100 entries")
    c.close()
    p.end()


# --------------------------------------------------------------------------
# 5. Too many concurrent streams


def too_many_streams(t, s, health):
    p = Part(t, s, health, "concurrent streams")
    n, limit = 105, 100
    # a. Before the client acknowledges SETTINGS_MAX_CONCURRENT_STREAMS:
    # streams 101-105 are refused (RFC 9113 §5.1.2, §8.7: safe to retry).
    c = Raw(s, tls=True)
    # Without END_STREAM each stays open after its answer.
    c.send(*[c.headers(1 + 2 * i, end_stream=False) for i in range(n)])
    last = 1 + 2 * (n - 1)
    c.read(3.0, until=lambda f: sum(1 for g in c.frames if isinstance(g, hf.RstStreamFrame))
           >= n - limit and all(c.body(1 + 2 * i)[1] for i in range(limit)))
    served = [i for i in range(limit) if c.status(1 + 2 * i) == b"200"
              and c.body(1 + 2 * i) == (HELLO, True)]
    p.check(len(served) == limit, "before the SETTINGS ACK: %d of the first %d streams answered"
            % (len(served), limit))
    refused = {1 + 2 * i: c.rst(1 + 2 * i) for i in range(limit, n)}
    p.check(all(v == REFUSED_STREAM for v in refused.values()),
            "before the SETTINGS ACK: streams over the limit: %s, want REFUSED_STREAM"
            % {k: err_name(v) if v is not None else None for k, v in refused.items()})
    p.check(not c.goaway(), "before the SETTINGS ACK: GOAWAY %s" % c.summary())
    # The streams end; a new one is served.
    c.send(*[frame(DATA, END_STREAM, 1 + 2 * i) for i in range(limit)])
    c.send(c.headers(last + 2))
    c.read(2.0, until=c.stream_done(last + 2))
    p.check(c.status(last + 2) == b"200", "a stream after the others ended: %s" % c.summary())
    c.close()
    # b. After it: a stream error (REFUSED_STREAM or PROTOCOL_ERROR), or
    # nghttp2's choice, a connection error PROTOCOL_ERROR (§5.4.1).
    c = Raw(s, tls=False)
    c.read(2.0, until=lambda f: isinstance(f, hf.SettingsFrame) and "ACK" not in f.flags)
    c.send(hf.SettingsFrame(0, flags=["ACK"]))
    c.send(*[c.headers(1 + 2 * i, end_stream=False) for i in range(limit + 1)])
    over = 1 + 2 * limit
    c.read(3.0, until=lambda f: isinstance(f, hf.GoAwayFrame) or f.stream_id == over)
    g = c.goaway()
    served = sum(1 for i in range(limit) if c.body(1 + 2 * i) == (HELLO, True))
    if g is not None:
        p.check(g.error_code == PROTOCOL_ERROR and g.last_stream_id <= over - 2,
                "after the SETTINGS ACK: GOAWAY %s, last stream %d; want PROTOCOL_ERROR, "
                "last stream below %d" % (err_name(g.error_code), g.last_stream_id, over))
        p.check(c.wait_closed(2.0), "after the SETTINGS ACK: not closed after the GOAWAY")
        one_line(p, c, "after the SETTINGS ACK")
        if served < limit:
            print("NOTE: after the SETTINGS ACK the 101st stream is a connection error "
                  "(nghttp2): %d of the first %d streams were answered before the close"
                  % (served, limit))
    else:
        p.check(c.rst(over) in (REFUSED_STREAM, PROTOCOL_ERROR),
                "after the SETTINGS ACK: stream %d: %s; want RST_STREAM REFUSED_STREAM or "
                "PROTOCOL_ERROR, or GOAWAY" % (over, c.summary()))
        c.read(2.0, until=lambda f: all(c.body(1 + 2 * i)[1] for i in range(limit)))
        served = sum(1 for i in range(limit) if c.body(1 + 2 * i) == (HELLO, True))
        p.check(served == limit, "after the SETTINGS ACK: %d of the first %d answered"
                % (served, limit))
    c.close()
    p.end()


# --------------------------------------------------------------------------
# 6. Zero-window stall


def zero_window(t, s, health):
    p = Part(t, s, health, "zero window")
    big = [(":method", "GET"), (":scheme", "https"), (":path", "/big.bin"),
           (":authority", "localhost")]
    fds0 = s.fd_count()
    # a: window 0, silent; b: window 0, a PING every 0.5 s.
    a = H2(s, tls=True, initial_window=0)
    b = H2(s, tls=False, initial_window=0)
    for c in (a, b):
        c.conn.send_headers(1, big, end_stream=True)
        c.flush()
    t0 = time.monotonic()
    for c in (a, b):
        c.pump(1.0, until=lambda e: isinstance(e, h2.events.ResponseReceived))
    for c, what in ((a, "silent"), (b, "PINGing")):
        rr = c.got(h2.events.ResponseReceived, 1)
        p.check(rr and dict(rr[0].headers).get(b":status") == b"200",
                "%s: no 200 response head: %s" % (what, c.events))
        p.check(c.data_len(1) == 0, "%s: %d DATA bytes past a zero window"
                % (what, c.data_len(1)))
    a_last = next_ping = time.monotonic()
    p.sample()
    rss_held = s.rss_kib() - p.rss0
    if not rt.UNDER_VALGRIND:
        p.check(rss_held < BIG // 1024, "the server's RSS grew by %d KiB holding a %d KiB "
                "file for a zero window" % (rss_held, BIG >> 10))
    # The silent one is cut at the idle deadline; the PINGing one must
    # not hold its stream any longer (--idle-timeout bounds a stall).
    end = t0 + IDLE + rt.scaled(4.0)
    a_cut = b_cut = None
    while time.monotonic() < end and (a_cut is None or b_cut is None):
        if a_cut is None:
            a.pump(0.05)
            if a.eof or a.terminated() or a.got(h2.events.StreamReset, 1):
                a_cut = time.monotonic() - a_last
        if b_cut is None:
            b.pump(0.05)
            if b.eof or b.terminated() or b.got(h2.events.StreamReset, 1):
                b_cut = time.monotonic() - t0
            elif time.monotonic() >= next_ping:
                next_ping += 0.5
                try:
                    b.conn.ping(b"keepaliv")
                    b.flush()
                except OSError:
                    pass
        p.sample()
    print("zero window: silent cut %s s after its request, PINGing one %s s after; "
          "%d DATA bytes" % (a_cut, b_cut, a.data_len(1) + b.data_len(1)))
    p.check(a_cut is not None and a_cut <= rt.scaled(IDLE + 2.0),
            "silent: not cut %.1f s after its last input (--idle-timeout %gs)"
            % (rt.scaled(IDLE + 2.0), IDLE))
    p.check(any("window" in l or "idle" in l for l in p.lines(a)),
            "silent: the cut is not logged: %r" % p.lines(a))
    p.check(b_cut is not None,
            "a client PINGing every 0.5 s holds a stream stalled on a zero window for "
            "%.1f s (--idle-timeout %gs): neither the stream nor the connection is cut"
            % (time.monotonic() - t0, IDLE))
    p.check(a.data_len(1) == 0 and b.data_len(1) == 0, "DATA past a zero window")
    # A stream's own window shut resets that stream, not the connection
    # (a browser's paused video): the connection still answers.
    for c, what in ((a, "silent"), (b, "PINGing")):
        if c.eof or c.terminated():
            p.check(False, "%s: the connection was cut, not the stalled stream reset: %s"
                    % (what, c.events[-5:]))
            continue
        # HEAD: its answer has no DATA for the zero window to hold.
        c.conn.send_headers(3, [(":method", "HEAD"), (":scheme", "https"), (":path", "/hello"),
                                (":authority", "localhost")], end_stream=True)
        c.flush()
        c.pump(1.0, until=lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 3)
        rr = c.got(h2.events.ResponseReceived, 3)
        p.check(rr and dict(rr[0].headers).get(b":status") == b"200",
                "%s: after its stalled stream was reset, a new stream got no 200: %s"
                % (what, c.events[-5:]))
    a.close()
    b.close()
    # A 1000-byte window gets exactly 1000 bytes, and 1000 more after a
    # WINDOW_UPDATE.
    c = H2(s, tls=True, initial_window=1000)
    c.conn.send_headers(1, big, end_stream=True)
    c.flush()
    c.pump(1.0, until=lambda e: c.data_len(1) >= 1000)
    c.pump(0.3, scale=False)
    got1 = c.data_len(1)
    c.conn.increment_flow_control_window(1000, stream_id=1)
    c.flush()
    c.pump(1.0, until=lambda e: c.data_len(1) >= 2000)
    c.pump(0.3, scale=False)
    got2 = c.data_len(1)
    p.check((got1, got2) == (1000, 2000), "a 1000-byte window: %d bytes, then %d after a "
            "1000-byte WINDOW_UPDATE; want 1000, 2000" % (got1, got2))
    c.close()
    # The stalled streams' files are closed with their connections.
    p.check(au.wait_until(lambda: s.fd_count() <= fds0, timeout=3.0),
            "descriptors held after the stalled streams: %d, before %d" % (s.fd_count(), fds0))
    p.end()


def tiny_frames(t, s, health):
    """100 streams of /big.bin with 1-byte windows, opened a byte at a
    time, by a client that never reads (4 KiB receive buffer): every
    DATA frame is 1 byte. The server's descriptors stay bounded. Before,
    each queued file frame held a duplicate descriptor, and this one
    connection took thousands (every descriptor the process had, given
    time): short frames are now copied."""
    p = Part(t, s, health, "1-byte frames")
    big = [(":method", "GET"), (":scheme", "http"), (":path", "/big.bin"),
           (":authority", "localhost")]
    n = 100
    fds0 = s.fd_count()
    c = H2(s, tls=False, initial_window=1, rcvbuf=4096)
    for i in range(n):
        c.conn.send_headers(1 + 2 * i, big, end_stream=True)
    c.flush()
    upd = frame(8, 0, 0, struct.pack(">I", n)) + b"".join(
        frame(8, 0, 1 + 2 * i, struct.pack(">I", 1)) for i in range(n))
    peak = s.fd_count()
    sent = 0
    for r in range(40 if rt.UNDER_VALGRIND else 400):
        try:
            c.sock.settimeout(1.0)
            c.sock.sendall(upd)   # the server stops reading once its queue is full
        except OSError:
            break
        sent += 1
        time.sleep(0.002)
        if r % 10 == 9:
            peak = max(peak, s.fd_count())
            p.sample()
    peak = max(peak, s.fd_count())
    print("1-byte frames: %d rounds of %d WINDOW_UPDATEs sent; descriptors %d before, peak %d"
          % (sent, n + 1, fds0, peak))
    # 100 streams' files, 64 duplicates (H2_HIGH_WATER / 4 KiB), slack.
    p.check(peak - fds0 < 300, "one connection made the server hold %d more descriptors"
            % (peak - fds0))
    c.close()
    p.check(au.wait_until(lambda: s.fd_count() <= fds0, timeout=3.0),
            "descriptors held after it closed: %d, before %d" % (s.fd_count(), fds0))
    p.end(cpu_max=0.9)


# --------------------------------------------------------------------------
# 7. The RFC 9113 error catalogue


def req_with(extra=(), drop=()):
    return [x for x in REQ if x[0] not in drop] + list(extra)


# (name, bytes after the preface (from the client), expected): expected is
# ("goaway", codes) for a connection error, ("rst", codes) for a stream
# error on stream 1 (the connection then serves stream 3), or ("ok",).
CATALOGUE = [
    ("DATA on stream 0 (§6.1)", lambda c: frame(DATA, 0, 0, b"x"), ("goaway", {PROTOCOL_ERROR})),
    ("HEADERS on an even stream (§5.1.1)", lambda c: c.headers(2), ("goaway", {PROTOCOL_ERROR})),
    ("HEADERS over SETTINGS_MAX_FRAME_SIZE (§4.2)",
     lambda c: c.headers(1, REQ + [("x-pad", "p" * 16400)], huffman=False),
     ("goaway", {FRAME_SIZE_ERROR})),
    ("DATA over SETTINGS_MAX_FRAME_SIZE (§4.2)",
     lambda c: c.headers(1, end_stream=False)
     + frame(DATA, END_STREAM, 1, b"d" * 16385), ("rst|goaway", {FRAME_SIZE_ERROR})),
    ("PING of 9 bytes (§6.7)", lambda c: frame(PING, 0, 0, b"123456789"),
     ("goaway", {FRAME_SIZE_ERROR})),
    ("PING on stream 1 (§6.7)", lambda c: frame(PING, 0, 1, b"12345678"),
     ("goaway", {PROTOCOL_ERROR})),
    ("WINDOW_UPDATE of 0 on the connection (§6.9)",
     lambda c: frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), ("goaway", {PROTOCOL_ERROR})),
    ("WINDOW_UPDATE of 0 on a stream (§6.9)",
     lambda c: c.headers(1, end_stream=False) + frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\0"),
     ("rst|goaway", {PROTOCOL_ERROR})),
    ("WINDOW_UPDATE past 2^31-1 on the connection (§6.9.1)",
     lambda c: frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7fffffff)),
     ("goaway", {FLOW_CONTROL_ERROR})),
    ("SETTINGS_ENABLE_PUSH 2 (§6.5.2)", lambda c: frame(SETTINGS, 0, 0, struct.pack(">HI", 2, 2)),
     ("goaway", {PROTOCOL_ERROR})),
    ("SETTINGS_INITIAL_WINDOW_SIZE 2^31 (§6.5.2)",
     lambda c: frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 31)),
     ("goaway", {FLOW_CONTROL_ERROR})),
    ("SETTINGS_MAX_FRAME_SIZE 100 (§6.5.2)",
     lambda c: frame(SETTINGS, 0, 0, struct.pack(">HI", 5, 100)), ("goaway", {PROTOCOL_ERROR})),
    ("SETTINGS of 7 bytes (§6.5)", lambda c: frame(SETTINGS, 0, 0, b"\0" * 7),
     ("goaway", {FRAME_SIZE_ERROR})),
    ("SETTINGS on stream 1 (§6.5)", lambda c: frame(SETTINGS, 0, 1, b""),
     ("goaway", {PROTOCOL_ERROR})),
    ("SETTINGS ACK with a payload (§6.5)",
     lambda c: frame(SETTINGS, ACK, 0, struct.pack(">HI", 3, 10)), ("goaway", {FRAME_SIZE_ERROR})),
    ("RST_STREAM of 3 bytes (§6.4)",
     lambda c: c.headers(1, end_stream=False) + frame(RST_STREAM, 0, 1, b"\0\0\0"),
     ("goaway", {FRAME_SIZE_ERROR})),
    ("RST_STREAM on an idle stream (§6.4)", lambda c: frame(RST_STREAM, 0, 5, b"\0\0\0\x08"),
     ("goaway", {PROTOCOL_ERROR})),
    ("CONTINUATION without HEADERS (§6.10)", lambda c: frame(CONTINUATION, END_HEADERS, 1, b""),
     ("goaway", {PROTOCOL_ERROR})),
    ("HEADERS interleaved in a header block (§6.10)",
     lambda c: c.headers(1, end_headers=False) + c.headers(3), ("goaway", {PROTOCOL_ERROR})),
    ("PUSH_PROMISE from the client (§8.4)",
     lambda c: c.headers(1, end_stream=False)
     + frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + c.block(REQ)),
     ("goaway", {PROTOCOL_ERROR})),
    # Not here: a new stream id below the last one (§5.1.1), which nghttp2
    # ignores on purpose (nghttp2_session.c: it cannot tell it from a
    # late frame of a stream it has forgotten).
    ("HEADERS on a half-closed (remote) stream (§5.1)", lambda c: c.headers(1) + c.headers(1),
     ("rst|goaway", {STREAM_CLOSED})),
    ("padding longer than the frame (§6.2)",
     lambda c: frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, b"\xff" + c.block(REQ)),
     ("goaway", {PROTOCOL_ERROR})),
    ("the first frame not SETTINGS (§3.4)", lambda c: frame(PING, 0, 0, b"12345678"),
     ("goaway-nopreface", {PROTOCOL_ERROR})),
    ("uppercase field name (§8.2.1)", lambda c: c.headers(1, req_with([("X-Upper", "1")])),
     ("rst", {PROTOCOL_ERROR})),
    ("connection: keep-alive (§8.2.2)",
     lambda c: c.headers(1, req_with([("connection", "keep-alive")])), ("rst", {PROTOCOL_ERROR})),
    ("te: gzip (§8.2.2)", lambda c: c.headers(1, req_with([("te", "gzip")])),
     ("rst", {PROTOCOL_ERROR})),
    ("pseudo-header after a regular one (§8.3)",
     lambda c: c.headers(1, [REQ[0], ("x-a", "1")] + REQ[1:]), ("rst", {PROTOCOL_ERROR})),
    ("unknown pseudo-header (§8.3)", lambda c: c.headers(1, req_with([(":foo", "1")])),
     ("rst", {PROTOCOL_ERROR})),
    ("no :method (§8.3.1)", lambda c: c.headers(1, req_with(drop=(":method",))),
     ("rst", {PROTOCOL_ERROR})),
    ("two :path (§8.3)", lambda c: c.headers(1, REQ + [(":path", "/x")]),
     ("rst", {PROTOCOL_ERROR})),
    ("DATA after END_STREAM (§5.1)",
     lambda c: c.headers(1) + frame(DATA, END_STREAM, 1, b"late"),
     ("rst|goaway", {STREAM_CLOSED})),
    ("an unknown frame type (§4.1: ignored)", lambda c: frame(0x20, 0xff, 0, b"whatever"),
     ("ok",)),
]


def catalogue(t, s, health):
    p = Part(t, s, health, "RFC 9113 errors")
    for i, (name, build, want) in enumerate(CATALOGUE):
        tls = i % 2 == 0
        what = "%s over %s" % (name, "TLS" if tls else "h2c")
        kind = want[0]
        c = Raw(s, tls=tls, preface=(kind != "goaway-nopreface"))
        try:
            if kind == "goaway-nopreface":
                c.send(H2_PREFACE + build(c))
            else:
                c.send(build(c))
        except OSError as e:
            p.check(False, "%s: sending: %s" % (what, e))
            c.close()
            continue
        if kind in ("goaway", "goaway-nopreface"):
            g = c.read_goaway(2.0)
            p.check(g is not None and g.error_code in want[1],
                    "%s: want GOAWAY %s, got %s" % (what, "/".join(err_name(x) for x in want[1]),
                                                    c.summary()))
            p.check(c.wait_closed(2.0), "%s: connection not closed after its error" % what)
            one_line(p, c, what)
        elif kind in ("rst", "rst|goaway"):
            c.read(2.0, until=lambda f: isinstance(f, (hf.GoAwayFrame, hf.RstStreamFrame))
                   and f.stream_id in (0, 1))
            g = c.goaway()
            if g is not None and kind == "rst|goaway":
                p.check(g.error_code in want[1], "%s: want RST_STREAM or GOAWAY %s, got %s"
                        % (what, "/".join(err_name(x) for x in want[1]), c.summary()))
                p.check(c.wait_closed(2.0), "%s: connection not closed after its error" % what)
                one_line(p, c, what)
            else:
                p.check(c.rst(1) in want[1] and g is None,
                        "%s: want RST_STREAM %s on stream 1, got %s"
                        % (what, "/".join(err_name(x) for x in want[1]), c.summary()))
                c.send(c.headers(3))
                c.read(2.0, until=c.stream_done(3))
                p.check(c.status(3) == b"200" and c.body(3) == (HELLO, True),
                        "%s: the connection does not go on: %s" % (what, c.summary()))
                p.check(not [l for l in p.lines(c) if "GOAWAY" in l],
                        "%s: a stream error logged as a connection error" % what)
        else:
            c.send(c.headers(1))
            c.read(2.0, until=c.stream_done(1))
            p.check(c.status(1) == b"200" and not c.goaway(),
                    "%s: want it ignored, got %s" % (what, c.summary()))
        c.close()
        p.sample()
    bad_preface(p, s)
    p.end()


def bad_preface(p, s):
    """§3.4: on a connection that chose h2 by ALPN, anything else than the
    preface is a connection error (GOAWAY optional); and an http/1.1 one
    is not HTTP/2 for a client that sends the h2 preface on it."""
    what = "an invalid preface on an ALPN h2 connection (§3.4)"
    c = Raw(s, tls=True, preface=False)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    closed = c.wait_closed(2.0)
    p.check(not c.raw.startswith(b"HTTP/"),
            "%s: answered as HTTP/1.1: %r" % (what, c.raw[:40]))
    g = c.goaway()
    p.check(closed and (g is None or g.error_code == PROTOCOL_ERROR),
            "%s: want a close (GOAWAY PROTOCOL_ERROR optional), got %s (%r)"
            % (what, c.summary(), c.raw[:40]))
    c.close()
    what = "an HTTP/1.1 request on an ALPN h2 connection (§3.4)"
    c = Raw(s, tls=True, preface=False)
    c.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    closed = c.wait_closed(2.0)
    p.check(closed and not c.raw.startswith(b"HTTP/"),
            "%s: want a close, got %r" % (what, c.raw[:40]))
    c.close()
    what = "the h2 preface on an ALPN http/1.1 connection"
    c = Peer(s, True, alpn=("http/1.1",))
    enc = hpack.Encoder()
    c.send(H2_PREFACE, hf.SettingsFrame(0, {}),
           frame(HEADERS, END_STREAM | END_HEADERS, 1, enc.encode(REQ)))
    c.wait_closed(2.0)
    p.check(not c.raw.startswith(b"\0"), "%s: answered in HTTP/2 frames: %r" % (what, c.raw[:40]))
    c.close()


# --------------------------------------------------------------------------


def need_tools():
    if not HAVE_H2:
        raise rt.Skip("no Python here imports h2, hpack and hyperframe "
                      "(python3-h2: scripts/deps.sh test)")
    rt.need_curl()
    r = rt.run_cmd(["curl", "--version"])
    if b"HTTP2" not in r.stdout:
        raise rt.Skip("curl has no HTTP/2 (nghttp2)")


def test(t):
    need_tools()
    _, root = rt.make_root({"big.bin": b"z" * BIG})
    with rt.asan_quarantine(16):
        s = au.DualServer("--idle-timeout", "%gs" % IDLE, root=root)
    health = Health(s)
    health.start()
    parts = (rapid_reset, continuation_flood, hpack_bomb, floods, too_many_streams,
             zero_window, tiny_frames, catalogue)
    only = os.environ.get("RTLS_H2_ABUSE_ONLY")   # a comma list of part names, to debug one
    try:
        for fn in parts:
            if only and fn.__name__ not in only.split(","):
                continue
            t0 = time.monotonic()
            try:
                fn(t, s, health)
            except Exception:  # noqa: BLE001 - the other parts still run
                import traceback
                t.check(False, "%s: exception:\n%s" % (fn.__name__, traceback.format_exc()))
            print("-- %s: %.1f s" % (fn.__name__, time.monotonic() - t0), flush=True)
    finally:
        health.done.set()
        health.join(timeout=rt.scaled(15))
    bad = [r[3] for r in health.results if not r[2]]
    print("normal client: %d requests, %d failed" % (len(health.results), len(bad)))
    if not only:
        t.check(len(health.results) >= 10, "the normal client made only %d requests"
                % len(health.results))
    t.check(not bad, "the normal client was not served: %s" % bad[:3])
    t.check(s.alive(), "server alive at the end")
    rc = s.stop()
    t.eq(rc, 0, "exit status after SIGTERM")


if __name__ == "__main__":
    rt.main(test)
