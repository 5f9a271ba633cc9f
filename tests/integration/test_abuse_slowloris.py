#!/usr/bin/env python3
"""Slowloris: 1,000 connections trickle one byte a second (500 a
ClientHello on the TLS port, 500 a request head on the plaintext port),
from one selectors-based process, against one reactor run with
--handshake-timeout 8s --header-timeout 8s. Checks:
- each deadline is for the whole handshake or head, not per read (a byte
  a second would keep a per-read timer alive forever): every attacker is
  cut no earlier than 8 s minus slack and no later than 8 s plus slack
  after its connect (TLS) or its first byte (HTTP: a 408, then EOF); the
  server logs one line for each;
- a normal keep-alive client, in a process of its own, asking at a steady
  5,000 requests a second, keeps at least 80% of its baseline rate
  measured just before, in the same run;
- the defaults, read from `ringtls serve --help`, are at most 30 s, and a
  second server started without those flags cuts its trickling
  connections at that default;
- afterwards the server's descriptors are back to the baseline.
The client and the attackers are this file run with --client / --attack."""
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import time

DEADLINE = 8.0          # --handshake-timeout and --header-timeout of the server under test
EARLY = 0.5             # a cut this much before the deadline is a failure
LATE = 3.0              # and this much after it
N_TLS = N_HTTP = 500
# The normal client's pace. A client that runs flat out measures the
# machine: on two shared cores its rate swings by a quarter between two
# quiet windows. At a fifth or so of what one reactor serves here, the
# rate drops only if the attack starves the server.
CLIENT_RATE = 5000
if os.environ.get("RTLS_UNDER_VALGRIND") == "1":   # rt.UNDER_VALGRIND; rt is imported below
    # Memcheck runs the server 20-50 times slower: fewer attackers, a
    # client it can keep up with, and no rate comparison (below).
    N_TLS = N_HTTP = 20
    CLIENT_RATE = 50
HEAD = (b"GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slowloris-" + b"s" * 200 + b"\r\n\r\n")


# --------------------------------------------------------------------------
# Child processes


def client_main(port, seconds, out_path):
    """Keep-alive GET /hello at a steady CLIENT_RATE (one at a time,
    catching up at most 50 ms when late); writes the completion times."""
    req = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
    done, errors = [], 0
    end = time.monotonic() + seconds
    so = None
    buf = b""
    due = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        due = max(due + 1.0 / CLIENT_RATE, time.monotonic() - 0.05)
        try:
            if so is None:
                so = socket.create_connection(("127.0.0.1", port), timeout=5)
                so.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
            so.sendall(req)
            while True:
                i = buf.find(b"\r\n\r\n")
                if i >= 0:
                    m = re.search(rb"Content-Length: (\d+)", buf[:i])
                    n = i + 4 + int(m.group(1))
                    if len(buf) >= n:
                        buf = buf[n:]
                        break
                d = so.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                buf += d
            done.append(time.monotonic())
        except (OSError, ConnectionError, AttributeError):
            errors += 1
            if so:
                so.close()
            so = None
            time.sleep(0.01)
    with open(out_path, "w") as f:
        json.dump({"done": done, "errors": errors}, f)


def attack_main(cfg_path, out_path):
    """Connects every attacker, then sends each one byte a second, and
    records when and how the server ends each connection."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    sel = selectors.DefaultSelector()
    conns = []
    for g in cfg["groups"]:
        payload = bytes.fromhex(g["payload"])
        for _ in range(g["n"]):
            so = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            so.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            so.settimeout(10)
            so.connect(("127.0.0.1", g["port"]))
            so.setblocking(False)
            c = {"group": g["name"], "t_connect": time.monotonic(), "sent": 0, "t_first_byte": None,
                 "t_first_data": None, "t_closed": None, "how": None, "data": b"", "payload": payload,
                 "so": so}
            conns.append(c)
            sel.register(so, selectors.EVENT_READ, c)
    t_all = time.monotonic()
    end = t_all + cfg["max_seconds"]
    open_n = len(conns)
    next_tick = time.monotonic()
    while open_n and time.monotonic() < end:
        now = time.monotonic()
        if now >= next_tick:
            for c in conns:
                if c["t_closed"] is None and c["sent"] < len(c["payload"]) and c["t_first_data"] is None:
                    try:
                        c["so"].send(c["payload"][c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                        if c["t_first_byte"] is None:
                            c["t_first_byte"] = time.monotonic()
                    except (BlockingIOError, OSError):
                        pass
            next_tick += 1.0
        for key, _ in sel.select(timeout=max(0.0, min(next_tick, end) - time.monotonic())):
            c = key.data
            try:
                d = c["so"].recv(65536)
                how = "eof"
            except BlockingIOError:
                continue
            except ConnectionResetError:
                d, how = b"", "reset"
            now = time.monotonic()
            if d:
                if c["t_first_data"] is None:
                    c["t_first_data"] = now
                c["data"] = (c["data"] + d)[:4096]
                continue
            c["t_closed"], c["how"] = now, how
            sel.unregister(c["so"])
            c["so"].close()
            open_n -= 1
    out = []
    for c in conns:
        if c["t_closed"] is None:
            c["so"].close()
        out.append({k: (v.hex() if isinstance(v, bytes) else v) for k, v in c.items()
                    if k not in ("so", "payload")})
    with open(out_path, "w") as f:
        json.dump({"t_all_connected": t_all, "conns": out}, f)


if len(sys.argv) > 1 and sys.argv[1] == "--client":
    client_main(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "--attack":
    attack_main(sys.argv[2], sys.argv[3])
    sys.exit(0)


# --------------------------------------------------------------------------
# The test

import abuse_util as au   # noqa: E402
import rtls_test as rt    # noqa: E402
import tls_util as tu     # noqa: E402


def help_default(flag):
    """The default of a duration flag, in seconds, from `ringtls serve --help`."""
    p = rt.run_cmd([rt.RINGTLS_BIN, "serve", "--help"])
    m = re.search(re.escape(flag) + r" T\s.*?\(default (\d+)(ms|s|m)\)", p.stdout.decode(), re.S)
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def rate(times, t0, t1):
    n = sum(1 for x in times if t0 <= x < t1)
    return n / (t1 - t0) if t1 > t0 else 0.0


def check_cuts(t, conns, group, deadline, what):
    """Every attacker of `group` was cut at its deadline, within slack."""
    cs = [c for c in conns if c["group"] == group]
    late, early, never, wrong = [], [], [], []
    for c in cs:
        if group.endswith("tls"):
            start, cut = c["t_connect"], c["t_closed"]
        else:
            start, cut = c["t_first_byte"], c["t_first_data"] or c["t_closed"]
        if cut is None or c["t_closed"] is None:
            never.append(c)
            continue
        dt = cut - start
        if dt < deadline - EARLY:
            early.append(dt)
        elif dt > deadline + LATE:
            late.append(dt)
        if group.endswith("http"):
            data = bytes.fromhex(c["data"])
            if not data.startswith(b"HTTP/1.1 408 Request Timeout\r\n") or c["how"] != "eof":
                wrong.append((data[:40], c["how"]))
        elif c["data"]:
            wrong.append((bytes.fromhex(c["data"])[:40], c["how"]))
    t.eq(len(never), 0, "%s: connections never cut by the server (of %d)" % (what, len(cs)))
    t.check(not early, "%s: none cut before %.1f s: %d were, e.g. after %s s"
            % (what, deadline - EARLY, len(early), [round(x, 2) for x in early[:5]]))
    t.check(not late, "%s: none cut after %.1f s: %d were, e.g. after %s s"
            % (what, deadline + LATE, len(late), [round(x, 2) for x in late[:5]]))
    if group.endswith("http"):
        t.eq(wrong[:3], [], "%s: each got '408 Request Timeout' and then EOF" % what)
    else:
        t.eq(wrong[:3], [], "%s: no bytes before the close" % what)
    sent = [c["sent"] for c in cs]
    t.check(cs and min(sent) >= int(deadline) - 1,
            "%s: each sent a byte a second until cut (fewest bytes sent: %s)" % (what, min(sent) if cs else None))


def test(t):
    need = N_TLS + N_HTTP + 512
    if not au.raise_nofile(need):
        raise rt.Skip("RLIMIT_NOFILE hard limit below %d" % need)
    d_hs, d_hdr = help_default("--handshake-timeout"), help_default("--header-timeout")
    t.check(d_hs is not None and d_hs <= 30, "--help: default --handshake-timeout %s s is at most 30 s" % d_hs)
    t.check(d_hdr is not None and d_hdr <= 30, "--help: default --header-timeout %s s is at most 30 s" % d_hdr)
    if d_hs is None or d_hdr is None:
        return
    tmp = rt.temp_dir("rtls-slowloris-")
    s = au.DualServer("--handshake-timeout", "%ds" % DEADLINE, "--header-timeout", "%ds" % DEADLINE,
                      log_level="debug")
    sd = au.DualServer(state_dir=s.state_dir)     # the defaults
    r = rt.get(s, "/hello")
    t.eq(r.status, 200, "server answers before the attack")
    base_fds = au.settled_fd_count(s)

    hello = tu.client_hello_bytes()
    t.check(len(hello) > 2 * DEADLINE + 10, "the ClientHello (%d bytes) outlasts the trickle" % len(hello))
    groups = [
        {"name": "tls", "port": s.tls_port, "n": N_TLS, "payload": hello.hex()},
        {"name": "http", "port": s.port, "n": N_HTTP, "payload": HEAD.hex()},
        {"name": "default-tls", "port": sd.tls_port, "n": 2, "payload": hello.hex()},
        {"name": "default-http", "port": sd.port, "n": 2, "payload": HEAD.hex()},
    ]
    cfg = os.path.join(tmp, "attack.json")
    with open(cfg, "w") as f:
        json.dump({"groups": groups, "max_seconds": max(d_hs, d_hdr, DEADLINE) + LATE + 5}, f)

    baseline_s = 3.0
    total = baseline_s + 0.5 + DEADLINE + LATE + 4.0
    client_out, attack_out = os.path.join(tmp, "client.json"), os.path.join(tmp, "attack-out.json")
    me = os.path.abspath(__file__)
    t_client = time.monotonic()
    client = subprocess.Popen([sys.executable, me, "--client", str(s.port), str(total), client_out])
    time.sleep(baseline_s + 0.5)
    mark = s.mark()
    t_attack = time.monotonic()
    attack = subprocess.Popen([sys.executable, me, "--attack", cfg, attack_out])
    try:
        attack.wait(timeout=max(d_hs, d_hdr, DEADLINE) + LATE + 60)
        client.wait(timeout=total + 30)
    finally:
        for p in (attack, client):
            if p.poll() is None:
                p.kill()
                p.wait()
    with open(client_out) as f:
        cl = json.load(f)
    with open(attack_out) as f:
        at = json.load(f)
    conns = at["conns"]
    t_all = at["t_all_connected"]
    print("attackers connected in %.2f s" % (t_all - t_attack))

    check_cuts(t, conns, "tls", DEADLINE, "TLS, --handshake-timeout %gs" % DEADLINE)
    check_cuts(t, conns, "http", DEADLINE, "HTTP, --header-timeout %gs" % DEADLINE)
    check_cuts(t, conns, "default-tls", d_hs, "TLS, default handshake timeout (%g s)" % d_hs)
    check_cuts(t, conns, "default-http", d_hdr, "HTTP, default header timeout (%g s)" % d_hdr)

    # The normal client's rate: before, during (all 1,000 trickling), after.
    done = cl["done"]
    base = rate(done, t_client + 0.5, t_attack)
    during = rate(done, t_all + 0.5, t_all + DEADLINE - EARLY - 0.5)
    cut_end = max((c["t_closed"] or 0) for c in conns if c["group"] in ("tls", "http"))
    after = rate(done, cut_end + 0.2, t_client + total - 0.2)
    print("normal client: %.0f req/s before, %.0f during the attack, %.0f after; %d reconnects"
          % (base, during, after, cl["errors"]))
    t.check(base > 0, "the normal client made requests before the attack")
    if rt.UNDER_VALGRIND:
        print("note: valgrind: the normal client's rate is not compared (a speed claim)")
    else:
        t.check(during >= 0.8 * base, "the normal client keeps at least 80%% of its rate during the attack: "
                "%.0f vs %.0f req/s (%.0f%%)" % (during, base, 100 * during / base if base else 0))
    t.eq(cl["errors"], 0, "the normal client's connection was never broken")

    # One log line per cut connection, naming it.
    lines = s.lines_since(mark)
    t.eq(sum(1 for l in lines if "408 Request Timeout" in l), N_HTTP, "one 408 log line per HTTP attacker")
    t.eq(sum(1 for l in lines if "handshake timed out" in l), N_TLS, "one log line per TLS attacker")
    t.eq(au.wait_fd_count(s, base_fds), base_fds, "the server's descriptors are back to the baseline")
    t.eq(rt.get(s, "/hello").status, 200, "server answers after the attack")
    t.eq(s.stop(), 0, "exit status after SIGTERM")
    t.eq(sd.stop(), 0, "default-timeout server: exit status after SIGTERM")


if __name__ == "__main__":
    tu.main(test)
