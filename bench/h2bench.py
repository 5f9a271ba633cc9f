#!/usr/bin/env python3
"""HTTP/2 workloads (issue 16, section 5): h2load against ringtls, nginx and
h2o over TLS, server CPU per request. Run by bench/run.sh when WORKLOADS
names h2 workloads (h2, h2-hello, h2-16k, h2-1m; also part of a full run),
or on its own: RINGTLS=build/ringtls python3 bench/h2bench.py.

Every server: one worker (ringtls --threads 1, nginx worker_processes 1,
h2o num-threads 1) pinned to SERVER_CPU, one TLS listener that selects h2 by
ALPN, TLS 1.3 TLS_AES_128_GCM_SHA256 only, one ECDSA P-256 certificate made
at the start (bench/README.md, "HTTP/2"). h2load (Debian's nghttp2-client,
one thread) is pinned to the first client CPU.

Per workload: a warm-up (h2load -D WARMUP against each server) gives each
server's request rate; the timed runs then all fetch the same fixed number
of requests, N = the median rate x DURATION (h2load -n N: every request
completes, so the server's CPU over h2load's life is the CPU of exactly N
responses, N connections' handshakes included, which are few). ROUNDS
interleaved rounds, each starting with the next server in turn. Server
CPU: utime+stime of the worker from /proc/PID/stat before and after;
h2load's CPU from its rusage. Every run must say TLSv1.3,
TLS_AES_128_GCM_SHA256 and ALPN h2, and N succeeded 2xx with N x size DATA
bytes; anything else is an error of that run (exit status 1 at the end).
"""
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import servers as S  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Workload:
    def __init__(self, key, path, size, conns, streams, targets, what):
        self.key, self.path, self.size = key, path, size
        self.conns, self.streams, self.targets, self.what = conns, streams, targets, what


# targets: peer -> wanted ratio peer CPU per request / ringtls CPU per request
WORKLOADS = [
    Workload("h2-hello", "/hello", len(S.HELLO), 16, 10, {"nginx": 1.3, "h2o": 1.2},
             "GET /hello (13 bytes)"),
    Workload("h2-16k", "/file-16k.bin", 16384, 8, 10, {}, "GET a 16 KiB file"),
    Workload("h2-1m", "/file-1m.bin", 1 << 20, 4, 10, {"nginx": 1.2, "h2o": 1.2},
             "GET a 1 MiB file"),
]
KEYS = [w.key for w in WORKLOADS]


def log(msg):
    print(f"h2bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ servers

class Config:
    """What servers.py's Server classes read, plus our own settings."""

    def __init__(self, env, pin=True):
        quick = env.get("QUICK") == "1"
        self.duration = int(env.get("DURATION", 2 if quick else 3))
        self.rounds = int(env.get("ROUNDS", 1 if quick else 5))
        self.warmup = int(env.get("WARMUP", 1))
        self.server_cpu = int(env.get("SERVER_CPU", 0)) if pin else None
        cpus = env.get("CLIENT_CPUS") or env.get("CLIENT_CPU")
        if pin:
            if cpus:
                self.client_cpu = int(cpus.split(",")[0])
            else:
                others = sorted(os.sched_getaffinity(0) - {self.server_cpu})
                if not others:
                    raise SystemExit("h2bench: needs 2 CPUs (server and h2load)")
                self.client_cpu = others[0]
        else:
            self.client_cpu = None
        self.ringtls = env.get("RINGTLS", os.path.join(os.path.dirname(HERE), "build", "ringtls"))
        self.nginx = env.get("NGINX") or S.find_tool("nginx")
        self.h2o = env.get("H2O") or S.find_tool("h2o") or "off"
        self.h2load = env.get("H2LOAD") or S.find_tool("h2load")
        self.no_report = env.get("NO_REPORT", "1" if quick else "0") == "1"
        self.keep_tmp = env.get("KEEP_TMP", "0") == "1"
        self.report_name = env.get("REPORT_NAME") or time.strftime("%Y-%m-%d-h2", time.gmtime())
        self.command = env.get("BENCH_COMMAND", "python3 bench/h2bench.py")
        spec = env.get("WORKLOADS", "")
        names = {n.strip() for n in spec.split(",") if n.strip()} if spec.strip() else {"h2"}
        if "h2" in names:
            names |= set(KEYS)
        self.workloads = [w for w in WORKLOADS if w.key in names]
        if not self.workloads:
            raise SystemExit(f"h2bench: WORKLOADS names no HTTP/2 workload ({', '.join(KEYS)})")
        self.bench_dir = HERE
        self.idle_conns = 0
        self.ktls = False               # nginx: Options KTLS (inside a kTLS kernel)
        self.ringtls_ktls_args = []     # ringtls: --ktls ... (idem)
        self.tmp = self.cert = self.key = self.shim = self.h2o_openssl_conf = None


def setup(cfg, tmp=None):
    """bench.py's temp dir: the files, the certificate, h2o's OpenSSL
    config, the openat2 shim; ringtls copied in."""
    import bench
    bench.prepare(cfg, tmp)


class H2Ringtls(S.Ringtls):
    def start_h2(self, mode):
        cfg = self.cfg
        port, = S.free_ports(1)
        self.ports["h2"] = port
        argv = self.base_args(mode) + ["--root", f"{cfg.tmp}/www",
                                       "--tls-listen", f"127.0.0.1:{port}"]
        env = dict(self.env)
        if mode == "callgrind":
            env["LD_PRELOAD"] = cfg.shim   # valgrind 3.19 lacks openat2
        self.start_proc(f"ringtls-h2-{mode}", self.wrap(argv, mode, "ringtls-h2"), ["h2"],
                        mode, env)


class H2Nginx(S.Nginx):
    def start_h2(self, mode):
        port, = S.free_ports(1)
        self.ports["h2"] = port
        self.start_nginx(f"nginx-h2-{mode}", "nginx-h2.conf.in",
                         {"@PORT@": str(port), "@ROOT@": f"{self.cfg.tmp}/www"}, ["h2"], mode,
                         cg_name="nginx-h2")


class H2H2o(S.H2o):
    def start_h2(self, mode):
        """bench/h2o.conf.in as for HTTP/1.1 (its TLS listener offers h2 by
        ALPN), tickets on; its plaintext listener is not used."""
        cfg = self.cfg
        plain, port = S.free_ports(2)
        self.ports.update(plain=plain, h2=port)
        env = dict(self.env)
        env["OPENSSL_CONF"] = cfg.h2o_openssl_conf
        name = f"h2o-h2-{mode}"
        conf = f"{cfg.tmp}/{name}.conf"
        S.fill_template(f"{HERE}/h2o.conf.in", conf, {
            "@TMP@": cfg.tmp, "@NAME@": name, "@PORT@": str(plain), "@TLS_PORT@": str(port),
            "@CERT@": cfg.cert, "@KEY@": cfg.key, "@ROOT@": f"{cfg.tmp}/www",
            "@RESUMPTION@": "ticket", "@ACCESS_LOG@": "", "@CONNS@": "1000",
            "@USER_DIRECTIVE@": "user: root" if os.geteuid() == 0 else ""})
        proc = self.start_proc(name, self.wrap([cfg.h2o, "-c", conf], mode, name),
                               ["plain", "h2"], mode, env)
        proc.children = S.children_of(proc.pid)


CLASSES = {"ringtls": H2Ringtls, "nginx": H2Nginx, "h2o": H2H2o}


def start(cfg, name, mode="time"):
    # nginx reads NGINX from its environment as a list of inherited
    # sockets (and complains about a path there): never pass ours on.
    env = {k: v for k, v in os.environ.items() if k != "NGINX"}
    srv = CLASSES[name](cfg, env)
    srv.ports, srv.procs = {}, {}
    try:
        srv.start_h2(mode)
    except S.ServerError:
        srv.stop()
        raise
    return srv


# ------------------------------------------------------------ h2load

H2LOAD_RE = {
    "requests": re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                           r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M),
    "status": re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M),
    "traffic": re.compile(r"^traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?\((\d+)\) data",
                          re.M),
    "finished": re.compile(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", re.M),
    "protocol": re.compile(r"^TLS Protocol: (\S+)", re.M),
    "cipher": re.compile(r"^Cipher: (\S+)", re.M),
    "alpn": re.compile(r"^Application protocol: (\S+)", re.M),
}


def h2load_argv(cfg, port, wl, n=None, secs=None, conns=None, streams=None):
    argv = [cfg.h2load, "-t", "1", "-c", str(conns or wl.conns), "-m", str(streams or wl.streams)]
    argv += ["-D", str(secs)] if secs else ["-n", str(n)]
    argv.append(f"https://127.0.0.1:{port}{wl.path}")
    if cfg.client_cpu is not None:
        argv = ["taskset", "-c", str(cfg.client_cpu)] + argv
    return argv


def run_h2load(argv, limit):
    """(stdout+stderr, exit code, wall seconds). h2load's CPU is the
    change of RUSAGE_CHILDREN around it (children_cpu)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        return out.decode(errors="replace") + f"\n(killed after {limit}s)", -9, limit
    wall = time.monotonic() - t0
    # communicate() reaped it; the children's rusage now holds its CPU.
    return out.decode(errors="replace"), p.returncode, wall


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def parse(text, wl, n=None):
    """The numbers of one h2load run, and the first thing wrong with it.
    n: the requests asked for (-n); None for a -D run, whose last
    responses are cut off (counted neither as done nor as failed, but
    their DATA bytes are in the traffic line): only failures count there."""
    m = {k: rx.search(text) for k, rx in H2LOAD_RE.items()}
    res = {"error": None}
    if not m["requests"] or not m["status"] or not m["traffic"]:
        res["error"] = "no h2load summary: " + " ".join(text.split())[-300:]
        return res
    total, started, done, ok, failed, errored, timeout = map(int, m["requests"].groups())
    s2xx = int(m["status"].group(1))
    res.update(done=done, succeeded=ok, failed=failed, errored=errored, timeout=timeout,
               status_2xx=s2xx, data_bytes=int(m["traffic"].group(3)),
               header_bytes=int(m["traffic"].group(2)),
               protocol=m["protocol"] and m["protocol"].group(1),
               cipher=m["cipher"] and m["cipher"].group(1), alpn=m["alpn"] and m["alpn"].group(1))
    if m["finished"]:
        res["h2load_rps"] = float(m["finished"].group(3))
    want = n if n is not None else done
    if (res["protocol"], res["cipher"], res["alpn"]) != ("TLSv1.3", S.CIPHER, "h2"):
        res["error"] = (f"negotiated {res['protocol']} {res['cipher']} ALPN {res['alpn']}, "
                        f"not TLSv1.3 {S.CIPHER} h2")
    elif failed or errored or timeout or ok != want or (n is not None and s2xx != n):
        res["error"] = (f"{want} requests: {done} done, {ok} succeeded, {failed} failed, "
                        f"{errored} errored, {timeout} timeout, {s2xx} 2xx")
    elif n is not None and res["data_bytes"] != want * wl.size:
        res["error"] = f"{res['data_bytes']} DATA bytes for {want} x {wl.size}"
    return res


def timed(cfg, srv, wl, n):
    proc = srv.procs["h2"]
    argv = h2load_argv(cfg, srv.ports["h2"], wl, n=n)
    cc0 = children_cpu()
    c0 = S.cpu_ticks(proc.cpu_pid)
    text, rc, wall = run_h2load(argv, limit=max(60, 20 * cfg.duration))
    c1 = S.cpu_ticks(proc.cpu_pid)
    ccpu = children_cpu() - cc0
    cpu_s = (c1 - c0) / CLK_TCK
    r = parse(text, wl, n)
    if rc != 0 and not r["error"]:
        r["error"] = f"h2load exited {rc}"
    if not proc.alive() and not r["error"]:
        r["error"] = f"{proc.name} exited"
    r.update(n=n, wall_s=round(wall, 3), rps=round(n / wall, 1),
             server_cpu_pct=round(100 * cpu_s / wall, 1),
             cpu_us_per_req=round(1e6 * cpu_s / n, 3),
             client_cpu_pct=round(100 * ccpu / wall, 1),
             h2load=shlex.join(argv))
    if r["error"]:
        r["output_tail"] = text[-1500:]
    return r


def warm(cfg, srv, wl):
    """h2load -D WARMUP: the rate that sizes the timed runs."""
    argv = h2load_argv(cfg, srv.ports["h2"], wl, secs=max(1, cfg.warmup))
    text, rc, wall = run_h2load(argv, limit=60)
    r = parse(text, wl)
    if rc != 0 and not r["error"]:
        r["error"] = f"h2load exited {rc}"
    if r["error"]:
        r["output_tail"] = text[-1500:]
        log(f"{wl.key} warm-up {srv.name}: {r['error']}")
    return r


def check(cfg, srv):
    """curl --http2 fetches each path once: HTTP/2, 200, the exact bytes."""
    want = {"/hello": S.HELLO}
    for name in ("file-16k.bin", "file-1m.bin"):
        with open(f"{cfg.tmp}/www/{name}", "rb") as f:
            want[f"/{name}"] = f.read()
    port = srv.ports["h2"]
    for path, body in want.items():
        out = f"{cfg.tmp}/check.body"
        r = subprocess.run(["curl", "-sS", "--http2", "--cacert", cfg.cert, "--tlsv1.3",
                            "-o", out, "-w", "%{http_version} %{http_code}",
                            f"https://127.0.0.1:{port}{path}"],
                           capture_output=True, text=True, timeout=60)
        with open(out, "rb") as f:
            got = f.read() if os.path.exists(out) else b""
        if r.returncode != 0 or r.stdout.strip() != "2 200" or got != body:
            return (f"{path}: curl exit {r.returncode}, '{r.stdout.strip()}', "
                    f"{len(got)} bytes (want HTTP/2 200, {len(body)} bytes) {r.stderr.strip()}")
    return None


# ------------------------------------------------------------ the run

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def versions(cfg, names):
    def first(argv):
        try:
            return S.run_text(argv).splitlines()[0]
        except (OSError, IndexError):
            return "?"
    import hashlib
    repo = os.path.dirname(HERE)
    rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    with open(cfg.ringtls, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:12]
    v = {"ringtls": f"{first([cfg.ringtls, '--version'])}, commit {rev}"
                    + (" (uncommitted changes in the tree)" if dirty else "")
                    + f"; binary {cfg.ringtls_src} (sha256 {sha}...)",
         "h2load": first([cfg.h2load, "--version"]), "openssl": first(["openssl", "version"])}
    if "nginx" in names:
        v["nginx"] = first([cfg.nginx, "-v"])
    if "h2o" in names:
        v["h2o"] = first([cfg.h2o, "--version"])
    return v


def machine():
    """bench.py's description of the machine, under this report's keys."""
    import bench
    m = bench.machine()
    m["load"] = m.pop("load_before")
    return m


def run(cfg):
    names = ["ringtls", "nginx"] + ([] if cfg.h2o == "off" else ["h2o"])
    res = {"command": cfg.command, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "machine": machine(), "versions": versions(cfg, names), "servers": names,
           "duration": cfg.duration, "rounds": cfg.rounds, "server_cpu": cfg.server_cpu,
           "client_cpu": cfg.client_cpu, "start_errors": {}, "checks": {}, "commands": {},
           "workloads": {}}
    srvs = {}
    for name in names:
        try:
            srvs[name] = start(cfg, name)
            res["commands"][name] = srvs[name].procs["h2"].display
            err = check(cfg, srvs[name])
        except S.ServerError as e:
            err = str(e)
        res["checks"][name] = err or "ok"
        if err:
            log(f"{name}: not timed: {err}")
            res["start_errors"][name] = err
    try:
        for wl in cfg.workloads:
            live = [n for n in names if n in srvs and not res["start_errors"].get(n)]
            rec = {"what": wl.what, "conns": wl.conns, "streams": wl.streams,
                   "targets": wl.targets, "warmup": {}, "rounds": {n: [] for n in live}}
            for name in live:
                rec["warmup"][name] = warm(cfg, srvs[name], wl)
            rates = [w.get("h2load_rps") for w in rec["warmup"].values() if not w["error"]]
            n = max(wl.conns * wl.streams,
                    int(median(rates) * cfg.duration) if rates else 1000)
            rec["n"] = n
            log(f"{wl.key}: {n} requests per run (warm-up rates "
                + ", ".join(f"{k} {w.get('h2load_rps')}" for k, w in rec["warmup"].items()) + ")")
            for i in range(cfg.rounds):
                order = live[i % len(live):] + live[:i % len(live)]
                for name in order:
                    r = timed(cfg, srvs[name], wl, n)
                    rec["rounds"][name].append(r)
                    log(f"{wl.key} round {i + 1} {name}: {r['rps']} req/s, "
                        f"{r['cpu_us_per_req']} us/req, server {r['server_cpu_pct']}%, "
                        f"h2load {r['client_cpu_pct']}%" + (f" ERROR {r['error']}" if r["error"]
                                                            else ""))
            summarize(rec, live)
            res["workloads"][wl.key] = rec
    finally:
        res["exits"] = {}
        for name, srv in srvs.items():
            res["exits"].update(srv.stop())
    return res


def summarize(rec, live):
    rec["median"] = {}
    for name in live:
        rs = [r for r in rec["rounds"][name] if not r["error"]]
        us = [r["cpu_us_per_req"] for r in rs]
        rec["median"][name] = {
            "cpu_us_per_req": median(us), "cpu_min": min(us) if us else None,
            "cpu_max": max(us) if us else None, "rps": median([r["rps"] for r in rs]),
            "server_cpu_pct": median([r["server_cpu_pct"] for r in rs]),
            "client_cpu_pct": median([r["client_cpu_pct"] for r in rs]),
            "errors": sum(1 for r in rec["rounds"][name] if r["error"])}
    rec["ratios"] = {}
    base = rec["median"].get("ringtls", {}).get("cpu_us_per_req")
    for peer in live:
        if peer == "ringtls" or not base:
            continue
        pm = rec["median"][peer]["cpu_us_per_req"]
        per_round = [p["cpu_us_per_req"] / r["cpu_us_per_req"]
                     for r, p in zip(rec["rounds"]["ringtls"], rec["rounds"][peer])
                     if not r["error"] and not p["error"] and r["cpu_us_per_req"]]
        rec["ratios"][peer] = {
            "of_medians": round(pm / base, 3) if pm else None,
            "per_round": [round(x, 3) for x in per_round],
            "per_round_median": round(median(per_round), 3) if per_round else None,
            "target": rec["targets"].get(peer)}


def fmt(x, d=2):
    return "-" if x is None else f"{x:,.{d}f}"


def report(cfg, res):
    out = []
    w = out.append
    w(f"# HTTP/2 benchmark, {res['started']}\n")
    w(f"Command: `{res['command']}`\n")
    m = res["machine"]
    w(f"Machine: {m['cpus']} CPUs, {m['cpu_model']}, {m['kernel']}; load average at start "
      f"{m['load']}. Servers pinned to CPU {res['server_cpu']}, h2load (`-t 1`) to CPU "
      f"{res['client_cpu']}. **Timings on a shared machine: compare only ratios of one run.**\n")
    for k, v in res["versions"].items():
        w(f"- {k}: {v}")
    w("")
    for k, v in res["commands"].items():
        w(f"- {k}: `{v}`")
    w("")
    for k, v in res["checks"].items():
        w(f"- check {k} (curl --http2, bodies): {v}")
    w(f"\nServer CPU per request = (utime+stime of the server's worker, /proc/PID/stat, over "
      f"h2load's run) / N; {res['rounds']} interleaved rounds, median (min-max). "
      f"Ratio = peer / ringtls (above 1: ringtls uses less CPU per request); the per-round "
      f"ratio pairs round i of ringtls with round i of the peer.\n")
    w("| workload | h2load | N per run | server | req/s | server CPU % | h2load CPU % | "
      "CPU µs/req | peer / ringtls (medians) | per-round ratio median (min-max) | target |")
    w("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for key, rec in res["workloads"].items():
        for name, md in rec["median"].items():
            ratio = rec["ratios"].get(name)
            rtxt = rr = tg = ""
            if ratio:
                rtxt = f"{fmt(ratio['of_medians'])}x"
                pr = ratio["per_round"]
                rr = (f"{fmt(ratio['per_round_median'])}x ({fmt(min(pr))}-{fmt(max(pr))})"
                      if pr else "-")
                if ratio["target"]:
                    ok = ratio["of_medians"] and ratio["of_medians"] >= ratio["target"]
                    tg = f"{ratio['target']}x: {'met' if ok else 'MISSED'}"
                else:
                    tg = "-"
            err = f" ({md['errors']} rounds FAILED)" if md["errors"] else ""
            w(f"| {key} | -c{rec['conns']} -m{rec['streams']} | {rec['n']:,} | {name}{err} | "
              f"{fmt(md['rps'], 0)} | {fmt(md['server_cpu_pct'], 0)} | "
              f"{fmt(md['client_cpu_pct'], 0)} | {fmt(md['cpu_us_per_req'])} "
              f"({fmt(md['cpu_min'])}-{fmt(md['cpu_max'])}) | {rtxt} | {rr} | {tg} |")
    w("\nRounds (CPU µs per request):\n")
    for key, rec in res["workloads"].items():
        for name, rs in rec["rounds"].items():
            w(f"- {key} {name}: " + ", ".join(
                "ERROR" if r["error"] else fmt(r["cpu_us_per_req"]) for r in rs))
    errs = [(key, name, i + 1, r["error"]) for key, rec in res["workloads"].items()
            for name, rs in rec["rounds"].items() for i, r in enumerate(rs) if r["error"]]
    if errs or res["start_errors"]:
        w("\nFailures:\n")
        for name, e in res["start_errors"].items():
            w(f"- {name}: {e}")
        for key, name, i, e in errs:
            w(f"- {key} {name} round {i}: {e}")
    return "\n".join(out) + "\n"


def main():
    cfg = Config(os.environ)
    for tool, what in ((cfg.h2load, "h2load (Debian: nghttp2-client)"), (cfg.nginx, "nginx")):
        if not tool:
            raise SystemExit(f"h2bench: {what} is missing (scripts/deps.sh bench installs it)")
    if not os.access(cfg.ringtls, os.X_OK):
        raise SystemExit(f"h2bench: no ringtls binary at {cfg.ringtls}")
    setup(cfg)
    try:
        res = run(cfg)
        text = report(cfg, res)
        print(text)
        if not cfg.no_report:
            d = os.path.join(HERE, "results")
            os.makedirs(d, exist_ok=True)
            with open(f"{d}/{cfg.report_name}.md", "w") as f:
                f.write(text)
            with open(f"{d}/{cfg.report_name}.json", "w") as f:
                json.dump(res, f, indent=1)
            log(f"wrote bench/results/{cfg.report_name}.md and .json")
    finally:
        if cfg.keep_tmp:
            log(f"kept {cfg.tmp}")
        else:
            shutil.rmtree(cfg.tmp, ignore_errors=True)
    bad = res["start_errors"] or any(r["error"] for rec in res["workloads"].values()
                                     for rs in rec["rounds"].values() for r in rs)
    bad = bad or any(rc != 0 for rc in res["exits"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
