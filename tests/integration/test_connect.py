#!/usr/bin/env python3
"""examples/forward: outbound connections (rtls_conn_connect, issue 14
part 1) end to end.
- 8 MB both ways through the forwarder to a Python echo upstream on
  127.0.0.1, on [::1] (skipped without an IPv6 loopback) and on a unix
  socket: the sha256 of what comes back is the one sent;
- a refused upstream: the client is closed within 2 s, and the forwarder
  serves again once the upstream is back;
- a connect that never completes (an upstream whose accept queue is full:
  its SYNs are dropped): the client is closed after about CONNECT_MS, and
  nothing alarming is logged;
- a client that never reads while the upstream floods: the upstream stalls
  (backpressure), the forwarder's memory stays bounded, others are served;
- an upstream that does not read while a client floods: no busy loop,
  nothing lost;
- 20 clients that never read: no io-wq worker parked per client;
- a half-close: the client's FIN reaches the upstream, whose answer still
  comes back; both directions by splice (rtls_conn_forward);
- 50 clients at once, each forwarded correctly."""
import os
import re
import socket
import threading
import time

import rtls_test as rt

FORWARD_BIN = rt.FORWARD_BIN
BIG = 8 << 20
LISTEN_RE = r"listening on 127\.0\.0\.1:(\d+)"
FLOOD_MAX = 512 << 20   # what the flooding upstream would send, unchecked
FLOOD_SENT_MAX = 64 << 20
RSS_MAX_KIB = 64 * 1024


class Upstream:
    """A threaded echo server. A connection whose first bytes are FLOOD
    gets FLOOD_MAX bytes instead of an echo (self.flood_sent counts them)."""

    def __init__(self, family=socket.AF_INET, addr=("127.0.0.1", 0), backlog=128):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(addr)
        self.sock.listen(backlog)
        self.flood_sent = 0
        self.conns = []
        if family == socket.AF_UNIX:
            self.addr = "unix:" + addr
        elif family == socket.AF_INET6:
            self.addr = "[::1]:%d" % self.sock.getsockname()[1]
        else:
            self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]

    def serve(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        try:
            first = c.recv(65536)
            if first.startswith(b"FLOOD"):
                chunk = b"f" * 65536
                while self.flood_sent < FLOOD_MAX:
                    c.sendall(chunk)
                    self.flood_sent += len(chunk)
                return
            while first:
                c.sendall(first)
                first = c.recv(65536)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def start_forward(upstream, connect_ms=None):
    argv = [FORWARD_BIN, "127.0.0.1:0", upstream] + ([str(connect_ms)] if connect_ms else [])
    p = rt.Process(argv, name="forward")
    (port,) = p.wait_ports(re.compile(LISTEN_RE), timeout=rt.START_TIMEOUT)
    return p, port


def round_trip(port, data, out=None, key=None):
    """Sends data from a thread while reading the same length back."""
    got, err = b"", []
    try:
        with rt.Conn(("127.0.0.1", port), timeout=rt.scaled(20)) as c:
            def sender():
                try:
                    c.sock.sendall(data)
                except OSError as e:
                    err.append(e)
            th = threading.Thread(target=sender, daemon=True)
            th.start()
            got = c.read_exact(len(data))
            th.join(rt.scaled(20))
    except (OSError, rt.ConnClosed) as e:
        err.append(e)
    if out is not None:
        out[key] = (got, err)
    return got, err


def check_big(t, upstream, what):
    p, port = start_forward(upstream.addr)
    data = os.urandom(BIG)
    got, err = round_trip(port, data)
    t.eq(err, [], "%s: errors" % what)
    t.eq(len(got), BIG, "%s: bytes back" % what)
    t.eq(rt.sha256(got), rt.sha256(data), "%s: sha256" % what)
    t.eq(p.stop(), 0, "%s: forward exit status" % what)


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_families(t):
    up = Upstream().serve()
    check_big(t, up, "IPv4")
    up.close()
    if has_ipv6_loopback():
        up = Upstream(socket.AF_INET6, ("::1", 0)).serve()
        check_big(t, up, "IPv6")
        up.close()
    else:
        print("SKIP case IPv6: no IPv6 loopback on this host")
    path = os.path.join(rt.temp_dir(), "up.sock")
    up = Upstream(socket.AF_UNIX, path).serve()
    check_big(t, up, "unix")
    up.close()


def test_refused(t):
    up = Upstream()
    port_up = up.sock.getsockname()[1]
    up.close()  # nobody listens there now
    p, port = start_forward("127.0.0.1:%d" % port_up)
    for i in range(3):
        with rt.Conn(("127.0.0.1", port)) as c:
            c.send(b"hello")
            t.check(c.closed_by_peer(2.0), "refused %d: client closed within 2 s" % i)
    up = Upstream(addr=("127.0.0.1", port_up)).serve()  # back again
    got, err = round_trip(port, b"again" * 1000)
    t.eq((err, got), ([], b"again" * 1000), "refused: served once the upstream is back")
    t.check(p.wait_log(r"Connection refused", 3) is not None, "log: Connection refused")
    t.eq(p.stop(), 0, "refused: forward exit status")
    up.close()


def full_listener():
    """A listener with backlog 0 whose accept queue is full: a connect to
    it gets no answer (Linux drops the SYN). None if the host answers."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fill = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(ls.getsockname())
        fill.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(1.0)
    try:
        probe.connect(ls.getsockname())
        ok = False
    except socket.timeout:
        ok = True
    except OSError:
        ok = False
    probe.close()
    if not ok:
        for s in fill + [ls]:
            s.close()
        return None
    return ls, fill


def test_timeout(t):
    got = full_listener()
    if got is None:
        print("SKIP case connect timeout: a full accept queue does not drop SYNs here")
        return
    ls, fill = got
    ms = 500
    p, port = start_forward("127.0.0.1:%d" % ls.getsockname()[1], ms)
    with rt.Conn(("127.0.0.1", port)) as c:
        start = time.monotonic()
        t.check(c.closed_by_peer(ms / 1000.0 + 3.0), "timeout: client closed")
        took = time.monotonic() - start
    t.check(ms / 1000.0 - 0.1 <= took <= rt.scaled(ms / 1000.0 + 1.5),
            "timeout: closed after %.2f s (connect deadline %d ms)" % (took, ms))
    t.check(p.wait_log(r"Connection timed out", 3) is not None, "log: Connection timed out")
    bad = [l for l in p.log_lines() if re.search(r" (error|warn) ", l)]
    t.eq(bad, [], "timeout: nothing alarming in the log")
    t.eq(p.stop(), 0, "timeout: forward exit status")
    for s in fill + [ls]:
        s.close()


def test_nonreader(t):
    up = Upstream().serve()
    p, port = start_forward(up.addr)
    round_trip(port, b"warm" * 1000)
    rss0 = p.rss_kib()
    c = rt.Conn(("127.0.0.1", port), rcvbuf=4096)
    c.send(b"FLOOD")
    time.sleep(rt.scaled(3.0))
    sent1 = up.flood_sent
    others = {}
    for i in range(5):
        round_trip(port, os.urandom(100000), others, i)
    time.sleep(1.0)
    sent2 = up.flood_sent
    t.check(0 < sent2 <= FLOOD_SENT_MAX, "nonreader: upstream stalled after %d bytes" % sent2)
    t.check(sent2 - sent1 <= 8 << 20, "nonreader: upstream still stalled (%d more)" % (sent2 - sent1))
    if not rt.UNDER_VALGRIND:
        grew = p.rss_kib() - rss0
        t.check(grew <= RSS_MAX_KIB, "nonreader: RSS grew %d KiB" % grew)
    for i, (got, err) in others.items():
        t.eq((err, len(got)), ([], 100000), "nonreader: other client %d served" % i)
    c.close()
    t.eq(p.stop(), 0, "nonreader: forward exit status")
    up.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_stalled_upstream(t):
    """A client floods an upstream that does not read: the splice into
    the upstream's (non-blocking) socket finds it full and must wait for
    it, not retry at once (EAGAIN from io-wq is a busy loop); nothing is
    lost once it reads."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    p, port = start_forward("127.0.0.1:%d" % ls.getsockname()[1])
    n = (8 if rt.UNDER_VALGRIND else 50) << 20
    data = os.urandom(n)
    c = socket.create_connection(("127.0.0.1", port))
    u, _ = ls.accept()
    th = threading.Thread(target=lambda: c.sendall(data), daemon=True)
    th.start()
    time.sleep(rt.scaled(1.0))
    cpu0 = cpu_seconds(p.proc.pid)
    time.sleep(2.0)
    spent = cpu_seconds(p.proc.pid) - cpu0
    if not rt.UNDER_VALGRIND:
        t.check(spent < 0.3, "stalled upstream: forward used %.2f s CPU in 2 s" % spent)
    got = []
    u.settimeout(rt.scaled(20))
    while sum(map(len, got)) < n:
        d = u.recv(1 << 20)
        if not d:
            break
        got.append(d)
    t.eq(rt.sha256(b"".join(got)), rt.sha256(data), "stalled upstream: sha256 once it reads")
    th.join(rt.scaled(10))
    c.close()
    u.close()
    ls.close()
    t.eq(p.stop(), 0, "stalled upstream: forward exit status")


def iowq_workers(pid):
    n = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                n += f.read().startswith("iou-wrk")
        except OSError:
            pass
    return n


def test_stalled_readers(t):
    """20 clients that never read while their upstreams send: a splice into
    a full blocking socket would park one io-wq worker (a kernel thread of
    this process) per client for as long as it stalls; the forward makes
    the destination non-blocking and polls, so the workers idle out."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(32)
    p, port = start_forward("127.0.0.1:%d" % ls.getsockname()[1])
    n = 20
    cs, us = [], []
    for _ in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(("127.0.0.1", port))
        cs.append(c)
        u, _ = ls.accept()
        u.setblocking(False)
        us.append(u)
    chunk = b"s" * 65536
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        for u in us:
            try:
                u.send(chunk)
            except BlockingIOError:
                pass
        time.sleep(0.01)
    time.sleep(6.5)  # io-wq lets an idle worker go after 5 s
    w = iowq_workers(p.proc.pid)
    t.check(w < n // 2, "stalled readers: %d io-wq workers left for %d stalled clients" % (w, n))
    for s_ in cs + us + [ls]:
        s_.close()
    t.eq(p.stop(), 0, "stalled readers: forward exit status")


def test_half_close(t):
    """The client's FIN reaches the upstream as a FIN while the upstream's
    answer still flows back (the echo upstream answers until it sees EOF);
    both directions went by splice (the log line counts the bytes)."""
    up = Upstream().serve()
    p, port = start_forward(up.addr)
    data = os.urandom(4 << 20)
    c = socket.create_connection(("127.0.0.1", port))
    c.settimeout(rt.scaled(20))
    got = []

    def reader():
        while True:
            try:
                d = c.recv(1 << 20)
            except OSError:
                return
            if not d:
                return
            got.append(d)
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    th.join(rt.scaled(20))
    t.eq(rt.sha256(b"".join(got)), rt.sha256(data), "half-close: all of the echo after our FIN")
    c.close()
    # What the client sent before the upstream's connect completed was
    # parked and is copied; the rest is spliced (under valgrind the
    # connect is slow and the share copied larger).
    m = p.wait_log(r"client: (\d+) bytes spliced", 3)
    t.check(m is not None and int(m.group(1)) > 0,
            "half-close: the client's bytes went by splice (%s)" % (m and m.group(0)))
    t.check(p.wait_log(r"upstream: %d bytes spliced" % len(data), 3) is not None,
            "half-close: the upstream's bytes went by splice")
    t.eq(p.stop(), 0, "half-close: forward exit status")
    up.close()


def test_many(t):
    up = Upstream().serve()
    p, port = start_forward(up.addr)
    n = 10 if rt.UNDER_VALGRIND else 50
    datas = {i: os.urandom(64 * 1024 + i * 512) for i in range(n)}
    out = {}
    threads = [threading.Thread(target=round_trip, args=(port, d, out, i), daemon=True)
               for i, d in datas.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join(rt.scaled(30))
    bad = [i for i, d in datas.items()
           if out.get(i, (b"", ["none"]))[1] or rt.sha256(out[i][0]) != rt.sha256(d)]
    t.eq(bad, [], "%d concurrent clients: the ones not forwarded correctly" % n)
    t.eq(p.stop(), 0, "many: forward exit status")
    up.close()


def test(t):
    rt.need_binary(FORWARD_BIN, "forward")
    test_families(t)
    test_refused(t)
    test_timeout(t)
    test_nonreader(t)
    test_stalled_upstream(t)
    test_stalled_readers(t)
    test_half_close(t)
    test_many(t)


if __name__ == "__main__":
    rt.main(test)
