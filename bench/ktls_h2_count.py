#!/usr/bin/env python3
"""Userspace instructions per 1 MiB HTTP/2 response over TLS, counted
inside a kernel with kTLS (issue 16, section 5). COUNTS, NOT TIMINGS.

Run by `bash bench/ktls_count.sh --h2` inside Linux 6.1
(tests/kernel/run-kernel.sh):
    ktls_h2_count.py --out OUT.json [--tmp DIR] [--servers a,b,..]

Each server is one process under valgrind --tool=callgrind, started as
bench/h2bench.py starts it (one worker, one TLS listener with ALPN h2, TLS
1.3 TLS_AES_128_GCM_SHA256, one ECDSA P-256 certificate), not pinned:
  ringtls-ktls  ringtls --ktls on --ktls-rx-no-rekey (6.1 cannot rekey TLS
                1.3): file DATA frames spliced from the page cache
  ringtls-user  ringtls --ktls off: read and sealed by OpenSSL
  nginx-ktls    nginx with `ssl_conf_command Options KTLS;`
                (bench/nginx-h2.conf.in): OpenSSL hands the keys to the
                kernel where it can; nginx never uses sendfile for HTTP/2,
                so it read()s the file and SSL_write()s the frames, which
                the kernel encrypts. If nginx's socket is not offloaded
                (TlsTxSw +0) its row says "userspace TLS (nginx did not
                offload)" instead.
Per server: one warm-up connection (one response), then one connection of
N1 responses and one of N2 (`h2load -c 1 -m 1 -n N`, GET /file-1m.bin;
every response 200 with exactly 1 MiB of DATA, TLSv1.3, the cipher above,
ALPN h2), callgrind's counters zeroed before and dumped once the server is
idle after each. Then
  per response = (Ir(N2) - Ir(N1)) / (N2 - N1)
  per conn     = Ir(N1) - per response x N1
(handshake, SETTINGS, close are in "per conn"). Beside it: /proc/net/tls_stat
deltas per connection (TlsTxSw, TlsRxSw, TlsDecryptError) and the server
process's rchar (/proc/PID/io: bytes it read(2) from files or sockets) per
response, which is about 1 MiB where the file is read into userspace and
near 0 where it is spliced.
Fails (exit 1) unless ringtls-ktls moved TlsTxSw and TlsRxSw by exactly one
per connection, ringtls-user moved nothing, and TlsDecryptError stayed 0.
Exit 77 without /proc/net/tls_stat.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import h2bench as H  # noqa: E402
import ktls_count as K  # noqa: E402  (tls_stat, wait_idle, cg_control, mem_ir)
import servers as S  # noqa: E402

STAT_KEYS = K.STAT_KEYS
SIZE = 1 << 20
WL = next(w for w in H.WORKLOADS if w.key == "h2-1m")


def log(msg):
    print(f"ktls_count: {msg}", flush=True)


def rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise K.Fail(f"no rchar in /proc/{pid}/io")


def cg_dump(cfg, pid):
    cgdir = f"{cfg.tmp}/cg"
    before = {f for f in os.listdir(cgdir) if f".{pid}.out." in f}
    K.cg_control(pid, "-d")
    new = sorted({f for f in os.listdir(cgdir) if f".{pid}.out." in f} - before,
                 key=lambda f: int(f.rsplit(".", 1)[1]))
    if not new:
        raise K.Fail(f"callgrind_control -d {pid} wrote no dump")
    path = f"{cgdir}/{new[-1]}"
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1]), K.mem_ir(path)
    raise K.Fail(f"no summary line in {path}")


def fetch(cfg, port, n):
    argv = H.h2load_argv(cfg, port, WL, n=n, conns=1, streams=1)
    text, rc, _ = H.run_h2load(argv, limit=900)
    r = H.parse(text, WL, n)
    if rc != 0 or r["error"]:
        raise K.Fail(f"{' '.join(argv)}: exit {rc}: {r['error']}: {' '.join(text.split())[-300:]}")
    return r


def measure(cfg, name, n1, n2):
    server = "ringtls" if name.startswith("ringtls") else "nginx"
    cfg.ringtls_ktls_args = (["--ktls", "on", "--ktls-rx-no-rekey"] if name == "ringtls-ktls"
                             else ["--ktls", "off"])
    cfg.ktls = name == "nginx-ktls"
    try:
        srv = H.start(cfg, server, mode="callgrind")
    except S.ServerError as e:
        raise K.Fail(str(e))
    proc, port = srv.procs["h2"], srv.ports["h2"]
    m = {"command": proc.display, "batches": []}
    try:
        fetch(cfg, port, 1)   # first-use costs stay out
        for n in (n1, n2):
            K.wait_idle(proc.pid)
            st0, rc0 = K.tls_stat(), rchar(proc.pid)
            K.cg_control(proc.pid, "-z")
            fetch(cfg, port, n)
            K.wait_idle(proc.pid)
            ir, mem = cg_dump(cfg, proc.pid)
            st1, rc1 = K.tls_stat(), rchar(proc.pid)
            b = {"responses": n, "ir": ir, "ir_mem": mem, "rchar": rc1 - rc0,
                 "tls_stat": {k: st1.get(k, 0) - st0.get(k, 0) for k in STAT_KEYS}}
            m["batches"].append(b)
            log(f"{name:<12} {n:>3} x 1 MiB over HTTP/2: {ir:,} instructions ({mem:,} in mem*); "
                f"tls_stat {b['tls_stat']}; rchar {b['rchar']:,}")
            st = b["tls_stat"]
            if st["TlsDecryptError"]:
                raise K.Fail(f"{name}: TlsDecryptError +{st['TlsDecryptError']}")
            if name == "ringtls-ktls" and (st["TlsTxSw"], st["TlsRxSw"]) != (1, 1):
                raise K.Fail(f"{name}, {n} responses: tls_stat {st}: NOT offloaded")
            if name == "ringtls-user" and (st["TlsTxSw"], st["TlsRxSw"]) != (0, 0):
                raise K.Fail(f"{name}: tls_stat moved with --ktls off: {st}")
    finally:
        m["exit"] = srv.stop().get(proc.name)
    b1, b2 = m["batches"]
    per = (b2["ir"] - b1["ir"]) / (n2 - n1)
    m["per_response"] = round(per)
    m["mem_per_response"] = round((b2["ir_mem"] - b1["ir_mem"]) / (n2 - n1))
    m["per_conn"] = round(b1["ir"] - per * n1)
    m["rchar_per_response"] = round((b2["rchar"] - b1["rchar"]) / (n2 - n1))
    tx = [b["tls_stat"]["TlsTxSw"] for b in m["batches"]]
    rx = [b["tls_stat"]["TlsRxSw"] for b in m["batches"]]
    if name == "ringtls-ktls":
        m["tls"] = "kTLS TX and RX (kernel records); file frames spliced"
    elif name == "ringtls-user":
        m["tls"] = "OpenSSL in userspace (--ktls off)"
    elif all(t == 1 for t in tx):
        m["tls"] = ("kTLS TX" + (" and RX" if all(r == 1 for r in rx) else ", RX in userspace")
                    + " (OpenSSL Options KTLS); file read(2) into userspace, no sendfile for h2")
    else:
        m["tls"] = "userspace TLS: nginx did NOT offload (TlsTxSw +0) despite Options KTLS"
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmp")
    ap.add_argument("--servers", default="ringtls-ktls,ringtls-user,nginx-ktls")
    ap.add_argument("--n1", type=int, default=int(os.environ.get("N1", 1)))
    ap.add_argument("--n2", type=int, default=int(os.environ.get("N2", 17)))
    args = ap.parse_args()
    if not K.tls_stat():
        print("SKIP: no /proc/net/tls_stat: run inside a kTLS kernel (tests/kernel/run-kernel.sh)")
        return 77
    env = dict(os.environ, QUICK="0")
    cfg = H.Config(env, pin=False)
    tmp = args.tmp or tempfile.mkdtemp(prefix="ringtls-ktls-h2.")
    H.setup(cfg, tmp)
    out = {"kernel": os.uname().release, "n1": args.n1, "n2": args.n2, "servers": {}}
    rc = 0
    try:
        for name in args.servers.split(","):
            try:
                out["servers"][name] = measure(cfg, name, args.n1, args.n2)
            except (K.Fail, subprocess.TimeoutExpired) as e:
                out["servers"][name] = {"error": str(e)}
                log(f"{name}: FAIL: {e}")
                rc = 1
    finally:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
