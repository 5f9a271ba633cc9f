#!/usr/bin/env python3
"""Churn: 10,000 connections open at once, then all closed, 10 times over,
against one reactor with a plaintext and a TLS listener. Each round mixes
complete requests on keep-alive connections, connections that send
nothing, half a request head, TLS handshakes with a request (half closed
with close_notify, half without), and about 5% closed with a reset
(SO_LINGER 0). After a warm-up round of the same mix (so that what the
allocator keeps is in the baseline), the server's descriptor count must
come back exactly to the baseline after every round, and its RSS end
within 10% of the baseline.

Each round connects from its own 127.0.0.x source address, so ephemeral
ports never run out however long TIME_WAIT lasts."""
import socket
import ssl
import struct
import time

import abuse_util as au
import rtls_test as rt
import tls_util as tu

N = 10000
ROUNDS = 10
N_TLS = 300          # TLS handshakes per round
N_SILENT = 500       # connect, send nothing
N_HALF = 500         # half a request head
RST_EVERY = 20       # every 20th connection closes with a reset
if rt.UNDER_VALGRIND:
    # The same mix, smaller: memcheck runs the server 20-50 times slower.
    N, ROUNDS, N_TLS, N_SILENT, N_HALF = 400, 2, 20, 40, 40
IP_BIND_ADDRESS_NO_PORT = 24
REQ = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
HALF = b"GET /hello HTTP/1.1\r\nHo"
RESP_END = b"Hello, World!"


def connect(addr, src):
    so = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    so.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    so.bind((src, 0))
    so.settimeout(10)
    so.connect(addr)
    return so


def read_response(so):
    data = b""
    while not data.endswith(RESP_END):
        d = so.recv(4096)
        if not d:
            break
        data += d
    return data


def one_round(t, s, rnd, ctx):
    """Opens N connections (all held at once), then closes them all.
    Returns (seconds, problems)."""
    src = "127.0.0.%d" % (10 + rnd)
    t0 = time.monotonic()
    plain, tls = [], []
    bad = []
    n_plain = N - N_TLS
    for i in range(n_plain):
        so = connect(s.addr, src)
        if i < N_SILENT:
            pass
        elif i < N_SILENT + N_HALF:
            so.sendall(HALF)
        else:
            so.sendall(REQ)
        plain.append(so)
    for i in range(N_TLS):
        raw = connect(s.tls_addr, src)
        try:
            c = ctx.wrap_socket(raw, server_hostname="localhost")
            c.sendall(REQ)
            r = read_response(c)
            if not r.startswith(b"HTTP/1.1 200 OK\r\n"):
                bad.append("tls response %r" % r[:40])
            tls.append(c)
        except (ssl.SSLError, OSError) as e:
            bad.append("tls: %s" % e)
            raw.close()
    for so in plain[N_SILENT + N_HALF:]:
        r = read_response(so)
        if not r.startswith(b"HTTP/1.1 200 OK\r\n"):
            bad.append("plain response %r" % r[:40])
    opened = time.monotonic() - t0
    peak = s.fd_count()
    # Close everything: every RST_EVERY-th with a reset; TLS half with
    # close_notify first.
    for i, so in enumerate(plain):
        if i % RST_EVERY == 0:
            so.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        so.close()
    for i, c in enumerate(tls):
        try:
            if i % 2 == 0:
                c = c.unwrap()
            elif i % RST_EVERY == 1:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (ssl.SSLError, OSError) as e:
            bad.append("tls close: %s" % e)
        c.close()
    return opened, time.monotonic() - t0, peak, bad


def test(t):
    need = N + 1024
    if not au.raise_nofile(need):
        raise rt.Skip("RLIMIT_NOFILE hard limit below %d" % need)
    with open("/proc/sys/net/ipv4/tcp_tw_reuse") as f:
        print("net.ipv4.tcp_tw_reuse = %s (not needed: one source address per round)" % f.read().strip())
    # One reactor; default timeouts are far longer than a round.
    s = au.DualServer()
    ctx = tu.client_ctx()
    t_start = time.monotonic()
    opened, took, peak, bad = one_round(t, s, 0, ctx)
    t.eq(bad[:3], [], "warm-up round: every request answered")
    t.check(peak >= N, "warm-up round: the server held all %d connections at once (%d fds)" % (N, peak))
    base_fds = au.settled_fd_count(s, quiet=0.5, timeout=20)
    base_rss = s.rss_kib()
    print("warm-up: %d connections open in %.1f s, round %.1f s; baseline %d fds, %d KiB RSS"
          % (N, opened, took, base_fds, base_rss))
    rss = []
    for rnd in range(1, ROUNDS + 1):
        opened, took, peak, bad = one_round(t, s, rnd, ctx)
        t.eq(bad[:3], [], "round %d: every request answered" % rnd)
        t.check(peak >= base_fds + N * 9 // 10, "round %d: the server held the connections at once (%d fds)"
                % (rnd, peak))
        n = au.wait_fd_count(s, base_fds, 20)
        rss.append(s.rss_kib())
        t.eq(n, base_fds, "round %d: descriptors back to the baseline" % rnd)
        print("round %d: open in %.1f s, round %.1f s, peak %d fds, RSS %d KiB" % (rnd, opened, took, peak, rss[-1]))
        if not s.alive():
            break
    t.check(s.alive(), "the server is running after %d rounds" % ROUNDS)
    final = au.settled_fd_count(s, quiet=0.5)
    t.eq(final, base_fds, "after %d rounds: descriptors exactly at the baseline" % ROUNDS)
    end_rss = s.rss_kib()
    if tu.asan_build(s):
        print("note: ASan build: its quarantine holds freed memory, RSS not compared")
    elif rt.UNDER_VALGRIND:
        print("note: valgrind: memcheck's own memory is in the RSS, not compared"
              " (memcheck's leak check runs at exit)")
    else:
        t.check(end_rss <= base_rss * 1.10, "after %d rounds: RSS %d KiB within 10%% of the baseline %d KiB"
                % (ROUNDS, end_rss, base_rss))
    with s.connect() as c:
        c.send(REQ)
        t.eq(c.read_response().body, RESP_END, "a request after the churn")
    print("total %.1f s" % (time.monotonic() - t_start))
    t.eq(s.stop(), 0, "exit status after SIGTERM")


if __name__ == "__main__":
    tu.main(test, watchdog=280)
