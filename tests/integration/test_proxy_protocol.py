#!/usr/bin/env python3
"""The PROXY protocol (v1 text, v2 binary) in front of plaintext HTTP and
TLS, with `ringtls serve --proxy-protocol-from CIDR`:
- from a trusted source, a v1 or v2 header (whole, split byte by byte, or
  in one segment with what follows: a request, or a ClientHello) makes the
  header's source the connection's peer: the server's log line about a
  malformed request after it names that address, and the request before
  it is answered (the bytes after the header reach HTTP, or the TLS
  handshake, intact); v2 LOCAL and v1 UNKNOWN keep the socket's address;
- a trusted source that sends no header is served as usual;
- from an untrusted source (127.0.0.2 when 127.0.0.1/32 is trusted, and
  127.0.0.1 when only 10.0.0.0/8 is), a header closes the connection with
  one log line and no byte sent; other connections are served;
- malformed headers (v1: bad address, bare LF, no CRLF within 107 bytes;
  v2: bad version, family, address length, a TLV overrunning the header),
  a FIN inside the header, and a header that never completes
  (--header-timeout) close the connection, each with one log line;
- a flood of connections trickling headers is cut at the deadline, and
  the server's CPU time and RSS stay bounded;
- without --proxy-protocol-from the engine does nothing: a v1 line is
  just a malformed HTTP request from the real address;
- a bad CIDR stops `serve` and fails `check-config`, naming it."""
import os
import re
import selectors
import socket
import ssl
import struct
import time

import abuse_util as au
import rtls_test as rt
import tls_util as tu
import upstreams as up

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
BAD = b"BAD\r\n\r\n"            # a malformed request: "http PEER: 400 ..." in the log
TIMEOUT = 2                     # --header-timeout of the servers under test, seconds
EARLY, LATE = 0.5, rt.scaled(2.0)   # a cut this much before / after the deadline fails
N_FLOOD = 300
if rt.UNDER_VALGRIND:
    N_FLOOD = 20


def v1(src="203.0.113.7", dst="198.51.100.1", sport=40001, dport=80, proto="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(ver_cmd=0x21, fam=0x11, body=b""):
    return V2SIG + bytes([ver_cmd, fam]) + struct.pack("!H", len(body)) + body


def v2_inet(src, dst, sport, dport, tlvs=b""):
    return v2(0x21, 0x11, socket.inet_aton(src) + socket.inet_aton(dst) +
              struct.pack("!HH", sport, dport) + tlvs)


def v2_inet6(src, dst, sport, dport):
    return v2(0x21, 0x21, socket.inet_pton(socket.AF_INET6, src) +
              socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!HH", sport, dport))


def tlv(t, v):
    return bytes([t]) + struct.pack("!H", len(v)) + v


def connect(port, src="127.0.0.1", nodelay=True):
    so = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    so.bind((src, 0))
    so.settimeout(rt.IO_TIMEOUT)
    so.connect(("127.0.0.1", port))
    if nodelay:
        so.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return so


def send_split(so, data, pause=0.005):
    """One segment per byte (TCP_NODELAY, a pause between sends)."""
    for i in range(len(data)):
        so.sendall(data[i:i + 1])
        time.sleep(pause)


def wait_line(s, pattern, since, timeout=3.0):
    rx = re.compile(pattern)
    end = time.monotonic() + rt.scaled(timeout)
    while True:
        for line in s.lines_since(since):
            if rx.search(line):
                return line
        if time.monotonic() >= end:
            return None
        time.sleep(0.02)


def count_lines(s, pattern, since):
    rx = re.compile(pattern)
    return sum(1 for l in s.lines_since(since) if rx.search(l))


def peer_re(addr):
    """addr as the log writes it: 1.2.3.4:5 or [::1]:5."""
    return re.escape(addr)


# --------------------------------------------------------------------------
# The exchanges


def plain_after(t, s, so, peer, what):
    """After the header on `so`: a GET is answered, then a malformed
    request's log line names `peer` (and not the socket's address)."""
    mark = s.mark()
    local = "127.0.0.1:%d" % so.getsockname()[1]
    c = rt.Conn.__new__(rt.Conn)
    c.sock, c.buf, c.eof = so, b"", False
    try:
        so.sendall(GET)
        r = c.read_response()
        t.eq(r.status, 200, "%s: the request after the header is answered" % what)
        so.sendall(BAD)
        r = c.read_response()
        t.eq(r.status, 400, "%s: then a malformed request gets 400" % what)
    except (OSError, rt.ConnClosed, AssertionError) as e:
        t.check(False, "%s: exchange after the header failed: %r" % (what, e))
    t.check(wait_line(s, r" http %s: 400 " % peer_re(peer), mark),
            "%s: the 400's log line names %s" % (what, peer))
    if peer != local:
        t.eq(count_lines(s, r" http %s: " % peer_re(local), mark), 0,
             "%s: no log line names the socket's own address %s" % (what, local))
    so.close()


def tls_after(t, s, so, peer, what):
    """TLS over `so` after the header: a GET, then a malformed request
    whose log line names `peer`; the TLS layer's own line names it too."""
    mark = s.mark()
    try:
        ss = tu.client_ctx().wrap_socket(so, server_hostname="localhost")
    except (OSError, ssl.SSLError) as e:
        t.check(False, "%s: TLS handshake after the header failed: %r" % (what, e))
        so.close()
        return
    reader = tu.HttpReader(lambda: ss.recv(65536))
    try:
        ss.sendall(GET)
        t.eq(reader.read_response().status, 200, "%s: the request over TLS is answered" % what)
        ss.sendall(BAD)
        t.eq(reader.read_response().status, 400, "%s: then a malformed request gets 400" % what)
    except (OSError, EOFError, ssl.SSLError) as e:
        t.check(False, "%s: exchange over TLS failed: %r" % (what, e))
    t.check(wait_line(s, r" http %s: 400 " % peer_re(peer), mark),
            "%s: the 400's log line names %s" % (what, peer))
    t.check(wait_line(s, r" tls %s: TLSv1\.3 " % peer_re(peer), mark),
            "%s: the TLS layer's line names %s too" % (what, peer))
    ss.close()


def refused(t, s, so, data, pattern, what, split=False, fin=False):
    """Sends data; the server must close without sending a byte and log
    one `proxy-protocol PEER: ...` line matching pattern."""
    mark = s.mark()
    peer = "127.0.0.1:%d" % so.getsockname()[1] if so.getsockname()[0] == "127.0.0.1" else \
        "%s:%d" % so.getsockname()
    try:
        if split:
            send_split(so, data)
        else:
            so.sendall(data)
        if fin:
            so.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    got, how = tu.recv_until_closed(so, timeout=3.0)
    so.close()
    t.check(how in ("eof", "reset") and got == b"",
            "%s: closed with no byte sent (got %r, %s)" % (what, got[:60], how))
    line = wait_line(s, r" proxy-protocol %s: %s" % (peer_re(peer), pattern), mark)
    t.check(line, "%s: a log line 'proxy-protocol %s: %s'" % (what, peer, pattern))
    t.eq(count_lines(s, r" proxy-protocol %s: " % peer_re(peer), mark), 1,
         "%s: exactly one proxy-protocol line" % what)


# --------------------------------------------------------------------------
# The checks


def trusted_headers(t, s):
    # v1 and v2, IPv4 and IPv6, then a request in a later segment
    for hdr, peer, what in (
            (v1(), "203.0.113.7:40001", "v1 TCP4"),
            (v1("2001:db8::7", "2001:db8::1", 40002, 80, "TCP6"), "[2001:db8::7]:40002", "v1 TCP6"),
            (v2_inet("203.0.113.8", "198.51.100.1", 40003, 80), "203.0.113.8:40003", "v2 IPv4"),
            (v2_inet6("2001:db8::8", "::1", 40004, 80), "[2001:db8::8]:40004", "v2 IPv6"),
            (v2_inet("203.0.113.9", "198.51.100.1", 40005, 80,
                     tlv(1, b"h2") + tlv(2, b"a.test") + tlv(4, b"") + tlv(0xe0, b"xyz")),
             "203.0.113.9:40005", "v2 with TLVs (one unknown)")):
        so = connect(s.port)
        so.sendall(hdr)
        time.sleep(0.05)
        plain_after(t, s, so, peer, "plaintext, " + what)
    # the header and the requests in one segment
    for hdr, peer, what in ((v1("203.0.113.10", "198.51.100.1", 40010, 80), "203.0.113.10:40010", "v1"),
                            (v2_inet("203.0.113.13", "198.51.100.1", 40013, 80), "203.0.113.13:40013", "v2")):
        so = connect(s.port)
        mark = s.mark()
        so.sendall(hdr + GET + BAD)
        data, _ = tu.recv_until_closed(so, timeout=3.0)
        so.close()
        t.check(data.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 400 " in data,
                "%s header and two requests in one segment: 200, then 400 (got %r)" % (what, data[:40]))
        t.check(wait_line(s, r" http %s: 400 " % peer_re(peer), mark),
                "%s header and requests in one segment: the log line names the header's source" % what)
    # split byte by byte
    for hdr, peer, what in ((v1("203.0.113.11", "198.51.100.1", 40011, 80), "203.0.113.11:40011", "v1"),
                            (v2_inet("203.0.113.12", "198.51.100.1", 40012, 80), "203.0.113.12:40012", "v2")):
        so = connect(s.port)
        send_split(so, hdr)
        plain_after(t, s, so, peer, "plaintext, %s split byte by byte" % what)
    # LOCAL and UNKNOWN: the socket's own address
    so = connect(s.port)
    so.sendall(v2(0x20, 0x00))
    plain_after(t, s, so, "127.0.0.1:%d" % so.getsockname()[1], "v2 LOCAL")
    so = connect(s.port)
    so.sendall(b"PROXY UNKNOWN\r\n")
    plain_after(t, s, so, "127.0.0.1:%d" % so.getsockname()[1], "v1 UNKNOWN")
    # no header from a trusted source: served as usual
    so = connect(s.port)
    plain_after(t, s, so, "127.0.0.1:%d" % so.getsockname()[1], "trusted source, no header")
    no_header_split(t, s, "127.0.0.1", "trusted source")


def no_header_split(t, s, src, what):
    """A request whose first byte could begin a signature ("P"), alone in
    its segment: once "O" shows it is no header, both bytes go to HTTP.
    POST is 405 here; "OST" would be 501."""
    so = connect(s.port, src)
    send_split(so, b"POST /hello HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
    c = rt.Conn.__new__(rt.Conn)
    c.sock, c.buf, c.eof = so, b"", False
    try:
        t.eq(c.read_response().status, 405, "%s, no header, 'P' then 'O...': the whole request "
             "reaches HTTP" % what)
    except (OSError, rt.ConnClosed, AssertionError) as e:
        t.check(False, "%s, no header, split: %r" % (what, e))
    so.close()


def trusted_tls(t, s):
    for hdr, peer, what in (
            (v1("203.0.113.20", "198.51.100.1", 40020, 443), "203.0.113.20:40020", "v1"),
            (v2_inet("203.0.113.21", "198.51.100.1", 40021, 443), "203.0.113.21:40021", "v2"),
            (v2_inet6("2001:db8::21", "::1", 40022, 443), "[2001:db8::21]:40022", "v2 IPv6")):
        so = connect(s.tls_port)
        so.sendall(hdr)
        tls_after(t, s, so, peer, "TLS, " + what)
    so = connect(s.tls_port)
    send_split(so, v2_inet("203.0.113.23", "198.51.100.1", 40023, 443))
    tls_after(t, s, so, "203.0.113.23:40023", "TLS, v2 split byte by byte")
    so = connect(s.tls_port)
    tls_after(t, s, so, "127.0.0.1:%d" % so.getsockname()[1], "TLS, trusted source, no header")
    # the header and the ClientHello in one segment
    mark = s.mark()
    b = tu.BioClient(s.tls_port, nodelay=True)
    try:
        b.sock.sendall(v1("203.0.113.24", "198.51.100.1", 40024, 443) + b.client_hello())
        b.handshake()
        b.write(BAD)
        t.eq(b.reader().read_response().status, 400, "TLS, header + ClientHello in one segment: handshake, then 400")
    except (OSError, EOFError, ssl.SSLError) as e:
        t.check(False, "TLS, header + ClientHello in one segment: %r" % e)
    finally:
        b.close()
    t.check(wait_line(s, r" http 203\.0\.113\.24:40024: 400 ", mark),
            "TLS, header + ClientHello in one segment: the log line names the header's source")


def malformed(t, s):
    cases = [
        (v1("1.2.3.256"), "v1: not an IPv4 address", "v1, address out of range"),
        (v1("01.2.3.4"), "v1: not an IPv4 address", "v1, heading zero"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1: LF without CR", "v1, LF without CR"),
        (b"PROXY UNKNOWN " + b"f" * 100, "v1: no CRLF within 107 bytes", "v1, too long"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1: unknown protocol", "v1, unknown protocol"),
        (v2(0x11, 0x11, bytes(12)), "v2: unknown version", "v2, version 1"),
        (v2(0x31, 0x11, bytes(12)), "v2: unknown version", "v2, version 3"),
        (v2(0x21, 0x41, bytes(12)), "v2: unknown address family", "v2, family 4"),
        (v2(0x21, 0x11, bytes(8)), "v2: address block shorter", "v2, address length"),
        (v2_inet("1.2.3.4", "5.6.7.8", 1, 2, b"\x01\x00\x09h2"), "v2: a TLV overruns the header",
         "v2, TLV length overrunning the header"),
        (v2(0x21, 0x11, bytes(12))[:14] + b"\xff\xff", "v2: header too long", "v2, length over 16 KiB"),
    ]
    for data, pattern, what in cases:
        refused(t, s, connect(s.port), data, re.escape(pattern) + ".*: closed$", "malformed " + what)
    refused(t, s, connect(s.tls_port), v2(0x21, 0x41, bytes(12)), "v2: unknown address family: closed",
            "malformed v2 on the TLS port")
    refused(t, s, connect(s.port), v1("1.2.3.4.5"), "v1: not an IPv4 address: closed",
            "malformed v1 split byte by byte", split=True)
    refused(t, s, connect(s.port), b"PROXY TCP4 1.2.3.4 ", "the peer closed inside the header: closed",
            "FIN inside the header", fin=True)


def untrusted(t, s, src, what):
    refused(t, s, connect(s.port, src), v1(), "header from an untrusted source: closed",
            "%s: v1 header on the plaintext port" % what)
    refused(t, s, connect(s.tls_port, src), v2_inet("203.0.113.30", "198.51.100.1", 40030, 443),
            "header from an untrusted source: closed", "%s: v2 header on the TLS port" % what)
    refused(t, s, connect(s.port, src), b"PROXY ", "header from an untrusted source: closed",
            "%s: the v1 signature alone" % what, split=True)
    so = connect(s.port, src)
    plain_after(t, s, so, "%s:%d" % so.getsockname(), "%s: no header, plaintext" % what)
    no_header_split(t, s, src, what)
    so = connect(s.tls_port, src)
    tls_after(t, s, so, "%s:%d" % so.getsockname(), "%s: no header, TLS" % what)


def deadline(t, s):
    for port, what in ((s.port, "plaintext"), (s.tls_port, "TLS")):
        mark = s.mark()
        so = connect(port)
        t0 = time.monotonic()
        so.sendall(b"PROXY TCP4 1.2.3.4 ")
        got, how = tu.recv_until_closed(so, timeout=TIMEOUT + LATE + 3)
        dt = time.monotonic() - t0
        peer = "127.0.0.1:%d" % so.getsockname()[1]
        so.close()
        t.check(how in ("eof", "reset") and got == b"", "%s: an incomplete header is closed (%r, %s)"
                % (what, got[:40], how))
        t.check(TIMEOUT - EARLY <= dt <= TIMEOUT + LATE,
                "%s: cut at the header deadline: after %.2f s (--header-timeout %ds)" % (what, dt, TIMEOUT))
        t.check(wait_line(s, r" proxy-protocol %s: header not complete in time: closed" % peer_re(peer), mark),
                "%s: one log line for the deadline" % what)


def flood(t, s, what):
    """N_FLOOD connections trickle a header a byte every half second, never
    completing it before the deadline. Returns the server's CPU seconds
    and RSS growth (KiB) meanwhile."""
    base_fds = au.settled_fd_count(s)
    cpu0, rss0 = s.cpu_seconds(), s.rss_kib()
    mark = s.mark()
    sel = selectors.DefaultSelector()
    hdr = v1("203.0.113.99", "198.51.100.1", 40099, 80)
    conns = []
    for i in range(N_FLOOD):
        so = connect(s.port)
        so.setblocking(False)
        c = {"so": so, "sent": 0, "t0": None, "cut": None, "data": b""}
        conns.append(c)
        sel.register(so, selectors.EVENT_READ, c)
    t_end = time.monotonic() + TIMEOUT + LATE + 5
    next_tick, rss_max, left = time.monotonic(), rss0, len(conns)
    while left and time.monotonic() < t_end:
        if time.monotonic() >= next_tick:
            for c in conns:
                if c["cut"] is None and c["sent"] < len(hdr):
                    try:
                        c["so"].send(hdr[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                        c["t0"] = c["t0"] or time.monotonic()
                    except OSError:
                        pass
            next_tick += 0.5
            rss_max = max(rss_max, s.rss_kib())
        for key, _ in sel.select(timeout=max(0.0, next_tick - time.monotonic())):
            c = key.data
            try:
                d = c["so"].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if d:
                c["data"] += d
                continue
            c["cut"] = time.monotonic()
            sel.unregister(c["so"])
            c["so"].close()
            left -= 1
    for c in conns:
        if c["cut"] is None:
            c["so"].close()
    cpu = s.cpu_seconds() - cpu0
    never = [c for c in conns if c["cut"] is None]
    early = [c["cut"] - c["t0"] for c in conns if c["cut"] and c["cut"] - c["t0"] < TIMEOUT - EARLY]
    late = [c["cut"] - c["t0"] for c in conns if c["cut"] and c["cut"] - c["t0"] > TIMEOUT + LATE]
    print("%s: %d connections, server CPU %.2f s, RSS %d -> max %d KiB"
          % (what, N_FLOOD, cpu, rss0, rss_max))
    t.eq(len(never), 0, "%s: every trickling connection is cut by the server" % what)
    t.check(not early and not late, "%s: each cut at the deadline (early %s, late %s)"
            % (what, [round(x, 2) for x in early[:5]], [round(x, 2) for x in late[:5]]))
    t.eq([c["data"] for c in conns if c["data"]][:3], [], "%s: no byte sent to any of them" % what)
    t.eq(count_lines(s, r" proxy-protocol 127\.0\.0\.1:\d+: header not complete in time: closed", mark),
         N_FLOOD, "%s: one deadline line per connection" % what)
    t.eq(au.wait_fd_count(s, base_fds), base_fds, "%s: the server's descriptors are back to the baseline"
         % what)
    return cpu, rss_max - rss0


def floods(t, s):
    """A first flood makes resident what any load touches once (the
    receive ring's pages, the slots); the second is measured."""
    flood(t, s, "flood (warm-up)")
    cpu, rss = flood(t, s, "flood")
    if rt.UNDER_VALGRIND:
        print("note: valgrind: the flood's CPU and RSS bounds are not checked")
        return
    # A trickle costs a receive and a parse a byte: far below a second for
    # the whole flood; a busy loop would burn every second of it. The
    # phase holds ~150 bytes a connection and no receive buffer between
    # reads: 16 KiB held per connection would be over 4 MiB here.
    t.check(cpu < 1.5, "flood: the server used %.2f s of CPU (bound 1.5 s)" % cpu)
    t.check(rss < 2048, "flood: RSS grew by %d KiB (bound 2 MiB)" % rss)


def feature_off(t):
    """Without --proxy-protocol-from a PROXY line is only a bad request."""
    s = au.DualServer()
    so = connect(s.port)
    plain_after(t, s, so, "127.0.0.1:%d" % so.getsockname()[1], "no --proxy-protocol-from, no header")
    mark = s.mark()
    so = connect(s.port)
    so.sendall(v1() + GET)
    data, _ = tu.recv_until_closed(so, timeout=3.0)
    t.check(data.startswith(b"HTTP/1.1 400 "), "no --proxy-protocol-from: a v1 line is a bad request (%r)" % data[:30])
    t.check(wait_line(s, r" http 127\.0\.0\.1:%d: 400 " % so.getsockname()[1], mark),
            "no --proxy-protocol-from: the 400 names the real address")
    so.close()
    t.eq(count_lines(s, r"proxy-protocol", 0), 0, "no --proxy-protocol-from: no proxy-protocol line")
    t.eq(s.stop(), 0, "no --proxy-protocol-from: exit status after SIGTERM")


def bad_cidrs(t):
    for cidr in ("10.0.0.0/33", "bogus", "::1/129", "10.0.0.0/"):
        rc, log = tu.start_error(["--listen", "127.0.0.1:0", "--proxy-protocol-from", "127.0.0.1",
                                  "--proxy-protocol-from", cidr])
        # Refused while parsing the options, like any bad value: status 2.
        t.eq(rc, 2, "serve --proxy-protocol-from %s: exit status" % cidr)
        t.check("proxy-protocol-from: not an address or CIDR: '%s'" % cidr in log,
                "serve --proxy-protocol-from %s: says which (%r)" % (cidr, log.strip()[-200:]))
    d = rt.temp_dir("rtls-ppcfg-")
    cfg = rt.write_file(os.path.join(d, "c.yaml"), "listen: 127.0.0.1:0\n")
    p = rt.run_cmd([rt.RINGTLS_BIN, "check-config", "--config", cfg, "--proxy-protocol-from",
                    "10.0.0.0/8", "--proxy-protocol-from", "10.0.0.0/40"])
    err = p.stderr.decode()
    t.eq(p.returncode, 2, "check-config with a bad CIDR: exit status")
    t.check("not an address or CIDR: '10.0.0.0/40'" in err and "'10.0.0.0/8'" not in err,
            "check-config names the bad CIDR only (%r)" % err.strip())
    p = rt.run_cmd([rt.RINGTLS_BIN, "check-config", "--config", cfg, "--proxy-protocol-from",
                    "10.0.0.0/8", "--proxy-protocol-from", "::ffff:127.0.0.1"])
    t.eq(p.returncode, 0, "check-config with good CIDRs: exit status (%r)" % p.stderr.decode().strip())


def forwarded(t):
    """Through the reverse proxy, the upstream's X-Forwarded-For and
    Forwarded name the client the PROXY header named (they come from
    rtls_conn_query), over plaintext (v1, IPv4) and TLS (v2, IPv6)."""
    be = up.Backend("pp-backend")
    s = au.DualServer("--proxy-protocol-from", "127.0.0.1/32", "--proxy", "/=" + be.url)
    cases = ((False, v1(src="203.0.113.7"), "203.0.113.7", "for=203.0.113.7;proto=http"),
             (True, v2_inet6("2001:db8::7", "2001:db8::1", 40002, 443), "2001:db8::7",
              'for="[2001:db8::7]";proto=https'))
    for tls, hdr, ip, fwd in cases:
        what = "proxied after a %s header%s" % ("v2" if tls else "v1", " over TLS" if tls else "")
        so = connect(s.tls_port if tls else s.port)
        try:
            so.sendall(hdr)
            if tls:
                so = tu.client_ctx().wrap_socket(so, server_hostname="localhost")
            so.sendall(b"GET /pp HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                d = so.recv(65536)
                if not d:
                    break
                data += d
        except (OSError, ssl.SSLError) as e:
            t.check(False, "%s: exchange failed: %r" % (what, e))
            data = b""
        so.close()
        t.check(data.startswith(b"HTTP/1.1 200"), "%s: answered by the upstream (%r)" % (what, data[:40]))
        hdrs = dict((k.lower(), v) for k, v in be.log[-1]["headers"]) if be.log else {}
        t.eq(hdrs.get("x-forwarded-for"), ip, "%s: X-Forwarded-For" % what)
        t.check(hdrs.get("forwarded", "").startswith(fwd),
                "%s: Forwarded starts %s (%r)" % (what, fwd, hdrs.get("forwarded")))
    t.eq(s.stop(), 0, "proxy server: exit status after SIGTERM")
    be.close()


def test(t):
    if not au.raise_nofile(N_FLOOD + 512):
        raise rt.Skip("RLIMIT_NOFILE hard limit below %d" % (N_FLOOD + 512))
    s = au.DualServer("--proxy-protocol-from", "127.0.0.1/32", "--proxy-protocol-from", "2001:db8::/32",
                      "--header-timeout", "%ds" % TIMEOUT, log_level="debug")
    trusted_headers(t, s)
    trusted_tls(t, s)
    malformed(t, s)
    untrusted(t, s, "127.0.0.2", "127.0.0.2, not in 127.0.0.1/32")
    deadline(t, s)
    floods(t, s)
    t.eq(rt.get(s, "/hello").status, 200, "the server still answers")
    t.eq(s.stop(), 0, "exit status after SIGTERM")

    s2 = au.DualServer("--proxy-protocol-from", "10.0.0.0/8", log_level="debug")
    untrusted(t, s2, "127.0.0.1", "127.0.0.1, not in 10.0.0.0/8")
    t.eq(s2.stop(), 0, "10.0.0.0/8 server: exit status after SIGTERM")
    feature_off(t)
    bad_cidrs(t)
    forwarded(t)


if __name__ == "__main__":
    tu.main(test, watchdog=240)
