#!/usr/bin/env python3
"""Userspace instructions per MB forwarded in TCP mode, counted inside a
kernel with kTLS (issue 15, section 5). Not a timing: nothing is timed.

Run by bench/ktls_count.sh inside Linux 6.1 (tests/kernel/run-kernel.sh):
    ktls_count.py --spec SPEC.json --out OUT.json

SPEC (written by ktls_count.sh): tmp, cert, key, ringtls, haproxy,
tls_echo, echo_upstream, size, n1, n2. For each server, one process under
valgrind --tool=callgrind, in front of one echo upstream
(bench/echo_upstream.c, not under valgrind):
  ringtls-ktls  ringtls --tcp-proxy --ktls on --ktls-rx-no-rekey (6.1
                cannot rekey TLS 1.3): both directions spliced in the kernel
  ringtls-user  ringtls --tcp-proxy --ktls off: OpenSSL, copied through
  haproxy       Debian's HAProxy, mode tcp (bench/haproxy-tcp.cfg.in):
                userspace TLS (its Debian build has no kTLS)
Each gets one warm-up connection (one echo), then two batches, each one
fresh TLS connection echoing n1 (then n2) x SIZE bytes (bench/tls_echo.c
--verify: SHA-256 of what came back equals that of what was sent).
callgrind's counters are zeroed (callgrind_control -z) before a batch and
dumped (-d) once the server is idle after it; Ir is every instruction the
server process ran in userspace over the batch (the kernel's work, kTLS
crypto and splice included, is not counted: that is the point). Then

  per MB   = (Ir(n2) - Ir(n1)) / (bytes echoed in n2 - in n1) x 10^6
  per conn = Ir(n1) - per MB x bytes echoed in n1 / 10^6

so the handshake, connect, close and start-up cost is in "per conn" and
not in "per MB". A MB echoed is 10^6 bytes client -> upstream and the same
10^6 bytes back (bench/README.md's TCP-mode convention).

Proof of the path, per batch (fails loudly otherwise):
  ringtls-ktls  /proc/net/tls_stat TlsTxSw +1, TlsRxSw +1, TlsDecryptError
                +0; the session's log line: at least SIZE x (n - 1) bytes
                spliced each way (the bytes that came with the handshake
                are copied: they are in OpenSSL's buffer already)
  others        no tls_stat counter moves; ringtls-user's line: all copied
Exit status 0, 1 on a failure, 77 without /proc/net/tls_stat.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import servers as S  # noqa: E402  (bench/servers.py: Proc, ports, haproxy's config)

STAT_KEYS = ("TlsTxSw", "TlsRxSw", "TlsDecryptError")
SESSION_RE = re.compile(r"tcp-proxy \S+ -> \S+: [\d.]+ s, client to upstream (\d+) bytes "
                        r"\(([^)]*)\), upstream to client (\d+) bytes \(([^)]*)\)")


class Fail(RuntimeError):
    pass


def log(msg):
    print(f"ktls_count: {msg}", flush=True)


def tls_stat():
    try:
        with open("/proc/net/tls_stat") as f:
            return {k: int(v) for k, v in (ln.split() for ln in f if ln.strip())}
    except FileNotFoundError:
        return {}


def wait_idle(pid, quiet_s=1.0, limit_s=120):
    """Until the process used no CPU for quiet_s (the batch's close is
    counted in the batch)."""
    end = time.monotonic() + limit_s
    last, since = S.cpu_ticks(pid), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.1)
        now = S.cpu_ticks(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise Fail(f"pid {pid} still busy after {limit_s}s")


def cg_control(pid, flag):
    r = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        raise Fail(f"callgrind_control {flag} {pid}: {r.stdout}{r.stderr}")


MEM_RE = re.compile(r"^\s*([\d,]+) +\(\s*[\d.]+%\)\s+\S*:(__mem(?:cpy|move|set)\w*) \[\S*libc\.so")


def mem_ir(path):
    """Ir in glibc's memcpy/memmove/memset (leaves: inclusive = self) of a
    dump. glibc copies and fills larger blocks with `rep movsb`/`rep
    stosb`, which callgrind counts once per byte, the CPU once."""
    r = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", path],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise Fail(f"callgrind_annotate {path}: {r.stderr[-300:]}")
    return sum(int(m.group(1).replace(",", "")) for m in map(MEM_RE.match, r.stdout.splitlines())
               if m)


def cg_dump(cgdir, pid):
    """Dumps the counters since the last zero; returns (Ir total, Ir in
    glibc's mem* functions)."""
    def dumps():
        return {f for f in os.listdir(cgdir) if f".{pid}.out." in f}
    before = dumps()
    cg_control(pid, "-d")
    new = sorted(dumps() - before, key=lambda f: int(f.rsplit(".", 1)[1]))
    if not new:
        raise Fail(f"callgrind_control -d {pid} wrote no dump")
    with open(f"{cgdir}/{new[-1]}") as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1]), mem_ir(f"{cgdir}/{new[-1]}")
    raise Fail(f"no summary line in {new[-1]}")


def echo(spec, port, n):
    """One tls_echo connection, n echoes of SIZE bytes, verified."""
    argv = [spec["tls_echo"], "-p", str(port), "-c", "1", "-s", str(spec["size"]),
            "-n", str(n), "--verify", "--ca", spec["cert"]]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Fail(f"{' '.join(argv)}: exit {r.returncode}: {(r.stdout + r.stderr)[-300:]}")
    want = n * spec["size"]
    if r.returncode != 0 or out.get("error") or out.get("bytes") != want or not out.get("verified"):
        raise Fail(f"{' '.join(argv)}: exit {r.returncode}: {r.stdout.strip()} {r.stderr[-200:]}")
    if (out.get("protocol"), out.get("cipher")) != ("TLSv1.3", S.CIPHER):
        raise Fail(f"negotiated {out.get('protocol')} {out.get('cipher')}")
    return out


def moved(how, total):
    """(spliced, copied) of one direction of a session line."""
    if how == "copied":
        return 0, total
    if how == "spliced":
        return total, 0
    m = re.fullmatch(r"spliced (\d+), copied (\d+)", how)
    if not m:
        raise Fail(f"cannot read '{how}' in a session line")
    return int(m.group(1)), int(m.group(2))


def session_lines(logfile):
    with open(logfile, errors="replace") as f:
        return [m for m in map(SESSION_RE.search, f) if m]


def start(name, spec, upstream_port):
    tmp = spec["tmp"]
    port, = S.free_ports(1)
    if name.startswith("ringtls"):
        argv = [spec["ringtls"], "serve", "--threads", "1", "--cert", spec["cert"],
                "--key", spec["key"], "--no-tls12", "--tls13-ciphersuites", S.CIPHER,
                "--idle-timeout", "10m",
                "--tcp-proxy", f"127.0.0.1:{port}=127.0.0.1:{upstream_port}"]
        argv += (["--ktls", "on", "--ktls-rx-no-rekey"] if name == "ringtls-ktls"
                 else ["--ktls", "off"])
    else:
        cfg = argparse.Namespace(tmp=tmp, cert=spec["cert"], key=spec["key"],
                                 upstream_port=upstream_port, bench_dir=HERE,
                                 haproxy=spec["haproxy"])
        argv = S.haproxy_conf(cfg, f"{tmp}/haproxy-tcp-count.cfg", port,
                              template="haproxy-tcp.cfg.in")
    argv = ["valgrind", "--tool=callgrind", "--quiet",
            f"--callgrind-out-file={tmp}/cg/{name}.%p.out"] + argv
    proc = S.Proc(name, argv, dict(os.environ), f"{tmp}/{name}.log", "callgrind", tmp)
    if name == "haproxy":
        proc.stop_signal = S.signal.SIGUSR1
    try:
        S.wait_listening(proc, [port], 300)
    except S.ServerError as e:
        proc.stop()
        raise Fail(str(e))
    return proc, port


def measure(name, spec, upstream_port):
    ktls = name == "ringtls-ktls"
    size, ns = spec["size"], (spec["n1"], spec["n2"])
    proc, port = start(name, spec, upstream_port)
    m = {"command": proc.display, "batches": []}
    try:
        echo(spec, port, 1)   # first-use costs (lazy init, allocator) stay out
        for n in ns:
            wait_idle(proc.pid)
            lines0 = len(session_lines(proc.log)) if name != "haproxy" else 0
            st0 = tls_stat()
            cg_control(proc.pid, "-z")
            echo(spec, port, n)
            wait_idle(proc.pid)
            ir, mem = cg_dump(f"{spec['tmp']}/cg", proc.pid)
            st1 = tls_stat()
            b = {"echoes": n, "bytes": n * size, "ir": ir, "ir_mem": mem,
                 "tls_stat": {k: st1.get(k, 0) - st0.get(k, 0) for k in STAT_KEYS}}
            want = {"TlsTxSw": 1, "TlsRxSw": 1} if ktls else {"TlsTxSw": 0, "TlsRxSw": 0}
            want["TlsDecryptError"] = 0
            if b["tls_stat"] != want:
                raise Fail(f"{name}, {n} echoes: /proc/net/tls_stat deltas {b['tls_stat']}, "
                           f"expected {want}" + (": NOT offloaded" if ktls else ""))
            if name != "haproxy":
                new = session_lines(proc.log)[lines0:]
                if len(new) != 1:
                    raise Fail(f"{name}: {len(new)} session lines for one connection")
                s = new[0]
                up = moved(s.group(2), int(s.group(1)))
                back = moved(s.group(4), int(s.group(3)))
                b["spliced_copied"] = {"to_upstream": up, "to_client": back}
                if int(s.group(1)) != n * size or int(s.group(3)) != n * size:
                    raise Fail(f"{name}: session line says {s.group(0)}")
                if ktls and min(up[0], back[0]) < (n - 1) * size:
                    raise Fail(f"{name}: not spliced: {s.group(0)}")
                if not ktls and (up[0] or back[0]):
                    raise Fail(f"{name}: spliced with --ktls off: {s.group(0)}")
            m["batches"].append(b)
            log(f"{name:<12} {n:>3} x {size} bytes echoed: {ir:,} instructions ({mem:,} in mem*); tls_stat "
                f"{b['tls_stat']}" + (f"; (spliced, copied) {b['spliced_copied']}"
                                      if "spliced_copied" in b else ""))
    finally:
        m["exit"] = proc.stop(limit=120)
    (b1, b2) = m["batches"]
    per_byte = (b2["ir"] - b1["ir"]) / (b2["bytes"] - b1["bytes"])
    m["per_mb"] = round(per_byte * 1e6)
    m["per_conn"] = round(b1["ir"] - per_byte * b1["bytes"])
    m["mem_per_mb"] = round((b2["ir_mem"] - b1["ir_mem"]) / (b2["bytes"] - b1["bytes"]) * 1e6)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not tls_stat():
        print("SKIP: no /proc/net/tls_stat: run inside a kTLS kernel (tests/kernel/run-kernel.sh)")
        return 77
    with open(args.spec) as f:
        spec = json.load(f)
    os.makedirs(f"{spec['tmp']}/cg", exist_ok=True)
    uport, = S.free_ports(1)
    up = S.Proc("echo_upstream", [spec["echo_upstream"], str(uport)], dict(os.environ),
                f"{spec['tmp']}/echo_upstream.log", "time", spec["tmp"])
    out = {"kernel": os.uname().release, "servers": {}}
    rc = 0
    try:
        S.wait_listening(up, [uport], 30)
        for name in spec["servers"]:
            try:
                out["servers"][name] = measure(name, spec, uport)
            except (Fail, subprocess.TimeoutExpired) as e:
                out["servers"][name] = {"error": str(e)}
                log(f"{name}: FAIL: {e}")
                rc = 1
    finally:
        up.stop()
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
