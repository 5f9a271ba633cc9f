#!/usr/bin/env python3
"""bench/bench.py: ringtls against nginx (and h2o) on loopback. Started by
`bash bench/run.sh`, which installs the tools and explains the settings;
this file measures, bench/report.py writes the report and the plots.

Phases, in order (each server on SERVER_CPU, wrk on CLIENT_CPUS):
  check      identical, correct bodies; TLS 1.3 + TLS_AES_128_GCM_SHA256 +
             ECDSA negotiated; Connection: close honoured; how many
             handshakes wrk resumed (servers that log it, never timed);
             for the proxy workloads, the same bodies through each proxy,
             from the backend
  timed      warm-up, which also decides how many wrk processes each
             workload gets (bench/clients.py); then wrk, interleaved
             rounds: req/s, server CPU (/proc/PID/stat before and after),
             each wrk process's CPU (its rusage)
  perf       where ringtls's, nginx's and h2o's time goes (perf record -e
             cpu-clock -g, bench/perfphase.py) and TCP segments per request,
             in a network namespace of its own where allowed
  callgrind  userspace instructions per request: each server under
             callgrind, a fixed number of requests, counters zeroed and
             dumped with callgrind_control around each batch; per function
             from callgrind_annotate of the two batches' dumps
  memory     RSS growth per idle TLS connection (as bench/ktls_memory.py)
  kernel     where this kernel has no kTLS: memory and instructions inside
             Linux 6.1 with kTLS (tests/kernel/run-kernel.sh); not timings

The reverse-proxy workloads (WORKLOADS=proxy; issue 14) run in the check
and timed phases only, against ringtls --proxy, HAProxy and an nginx
proxy, all in front of one nginx backend on the client CPUs.

The TCP-mode workload (WORKLOADS=tcp; issue 15) too, against ringtls
--tcp-proxy, HAProxy (mode tcp) and nginx (stream), all in front of one
echo upstream (bench/echo_upstream.c) on the client CPUs; its client is
bench/tls_echo.c, not wrk.
"""
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import clients as C  # noqa: E402
import perfphase as P  # noqa: E402
import servers as S  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT_BOUND_PCT = C.CLIENT_BOUND_PCT


@dataclass
class Workload:
    key: str
    title: str
    listener: str        # plain | tls | full | proxy | tcp (see servers.py)
    path: str
    conns: int
    body: int            # response body bytes
    target: float = None  # ringtls/nginx, from the issues; None: no target
    close: bool = False  # Connection: close: one handshake per request
    cg: tuple = (0, 0, 0)  # callgrind: warm-up, then two batch sizes
    script: str = None   # wrk -s bench/SCRIPT
    upload: int = 0      # request body bytes (the script sends them)
    epoll_target: float = None  # nginx/ringtls-epoll CPU per request (issue 18)

    @property
    def tls(self):
        return self.listener != "plain"

    @property
    def proxy(self):
        """Through a reverse proxy to the backend: the proxy peers (ringtls,
        HAProxy, nginx), judged by CPU per request against each."""
        return self.listener == "proxy"

    @property
    def tcp(self):
        """TLS echo through TCP mode (bench/tls_echo.c, not wrk): the proxy
        peers, judged by server CPU per MB against each."""
        return self.listener == "tcp"

    @property
    def static(self):
        """Served by the static servers (ringtls, nginx, h2o): the phases
        after the timed one (perf, callgrind, memory, kernel) are theirs."""
        return not (self.proxy or self.tcp)


WORKLOADS = [
    Workload("plain-hello", "plaintext GET /hello, keep-alive", "plain", "/hello", 64, 13,
             1.3, cg=(500, 1000, 5000)),
    Workload("tls-hello", "TLS GET /hello, keep-alive", "tls", "/hello", 64, 13,
             1.2, cg=(500, 1000, 3000), epoll_target=1.1),
    Workload("plain-16k", "plaintext GET 16 KiB file", "plain", "/file-16k.bin", 32, 16384,
             cg=(200, 500, 2500)),
    Workload("tls-16k", "TLS GET 16 KiB file", "tls", "/file-16k.bin", 32, 16384,
             cg=(200, 500, 1500)),
    Workload("plain-1m", "plaintext GET 1 MiB file", "plain", "/file-1m.bin", 8, 1 << 20,
             1.0, cg=(20, 50, 150)),
    Workload("tls-1m", "TLS GET 1 MiB file", "tls", "/file-1m.bin", 8, 1 << 20,
             1.1, cg=(10, 20, 60), epoll_target=1.1),
    # The same bodies with many connections (issue 20): the cost per
    # request must not rise from 8 to 256 connections. glibc used to trim
    # the reactor's arena after each response and fault it back in.
    Workload("tls-16k-c8", "TLS GET 16 KiB file, 8 connections", "tls", "/file-16k.bin", 8,
             16384),
    Workload("tls-16k-c64", "TLS GET 16 KiB file, 64 connections", "tls", "/file-16k.bin", 64,
             16384),
    Workload("tls-16k-c256", "TLS GET 16 KiB file, 256 connections", "tls", "/file-16k.bin",
             256, 16384),
    Workload("tls-1m-c64", "TLS GET 1 MiB file, 64 connections", "tls", "/file-1m.bin", 64,
             1 << 20),
    Workload("tls-1m-c256", "TLS GET 1 MiB file, 256 connections", "tls", "/file-1m.bin", 256,
             1 << 20),
    Workload("hs-full", "full handshakes (no resumption), Connection: close", "full",
             "/hello", 32, 13, 1.0, close=True, cg=(20, 50, 150)),
    Workload("hs-resumed", "resumed handshakes (tickets), Connection: close", "tls",
             "/hello", 32, 13, close=True, cg=(20, 50, 150)),
    # Reverse proxy (issue 14, section 6): TLS in front, plaintext HTTP/1.1
    # keep-alive to the backend. Targets: CPU per request, against HAProxy
    # and against nginx.
    Workload("proxy-hello", "TLS GET /hello through the proxy, keep-alive", "proxy", "/hello",
             64, 13, 1.3),
    Workload("proxy-1m", "TLS GET 1 MiB through the proxy", "proxy", "/file-1m.bin", 8,
             1 << 20, 1.2),
    Workload("proxy-upload", "TLS POST 1 MiB through the proxy", "proxy", "/upload", 8,
             len(b"uploaded"), 1.2, script="upload.lua", upload=1 << 20),
    # TCP mode (issue 15, section 5): TLS in front, the plaintext passed as
    # it is to an echo upstream; each of 8 connections sends 1 MiB and
    # reads it back, again and again. Target: server CPU per MB, against
    # HAProxy and against nginx. body: bytes per echo.
    Workload("tcp-echo-1m", "TLS echo of 1 MiB through TCP mode", "tcp", "", 8, 1 << 20, 1.2),
]
# Names that WORKLOADS may use for a whole set.
GROUPS = {"static": [w.key for w in WORKLOADS if w.static],
          "proxy": [w.key for w in WORKLOADS if w.proxy],
          "tcp": [w.key for w in WORKLOADS if w.tcp]}
# Inside the 6.1 kernel: the TLS workloads, kTLS on.
KERNEL_WORKLOADS = ["tls-hello", "tls-16k", "tls-1m", "hs-full"]


class Config:
    """Settings from the environment (bench/run.sh documents each)."""

    def __init__(self, env, pin=True):
        quick = env.get("QUICK") == "1"
        self.quick = quick
        self.duration = int(env.get("DURATION", 2 if quick else 3))
        self.rounds = int(env.get("ROUNDS", 1 if quick else 5))
        self.warmup = int(env.get("WARMUP", 0 if quick else 1))
        self.server_cpu = int(env.get("SERVER_CPU", 0)) if pin else None
        try:
            # Not pinned (inside the one-CPU 6.1 kernel): one unpinned wrk.
            self.client_cpus = C.client_cpus(env, self.server_cpu) if pin else [None]
        except C.ClientConfigError as e:
            raise SystemExit(f"bench: {e}") from None
        self.client_cpu = self.client_cpus[0]   # single-process runs (check, callgrind)
        self.client_procs_max = int(env.get("CLIENT_PROCS_MAX", len(self.client_cpus)))
        self.client_procs = int(env.get("CLIENT_PROCS", 0))   # 0: decided in the warm-up
        self.client_bound_pct = CLIENT_BOUND_PCT
        if env.get("CLIENT_PROCS_TEST") == "1" and env.get("CLIENT_BOUND_PCT"):
            # Test switch only: a lower bar makes the count grow on a
            # machine whose wrk never reaches 90% (e.g. a busy one).
            self.client_bound_pct = float(env["CLIENT_BOUND_PCT"])
        self.crypto_s = int(env.get("CRYPTO_S", 1 if quick else 2))
        self.perf = env.get("PERF", "1") == "1"
        self.perf_secs = int(env.get("PERF_SECS", 2 if quick else 3))
        self.perf_workloads = env.get("PERF_WORKLOADS", ",".join(P.WORKLOADS)).split(",")
        self.idle_conns = int(env.get("IDLE_CONNS", 500 if quick else 10000))
        self.cg_scale = float(env.get("CG_SCALE", 0.2 if quick else 1))
        self.callgrind = env.get("CALLGRIND", "1") == "1"
        self.kernel = env.get("KERNEL", "auto")
        self.ktls_conns = int(env.get("KTLS_CONNS", 200 if quick else 2000))
        self.no_report = env.get("NO_REPORT", "1" if quick else "0") == "1"
        self.keep_tmp = env.get("KEEP_TMP", "0") == "1"
        # bench/results/<REPORT_NAME>.md etc.; main() makes it the run's
        # (UTC) date when empty
        self.report_name = env.get("REPORT_NAME", "")
        if self.report_name and not re.fullmatch(r"[A-Za-z0-9._-]+", self.report_name):
            raise SystemExit(f"bench: REPORT_NAME may hold letters, digits and ._- only, "
                             f"not '{self.report_name}'")
        self.command = env.get("BENCH_COMMAND", "bash bench/run.sh")
        self.bench_dir = HERE
        self.repo = os.path.dirname(HERE)
        self.ringtls = env.get("RINGTLS", os.path.join(self.repo, "build", "ringtls"))
        self.nginx = env.get("NGINX") or S.find_tool("nginx")
        self.wrk = env.get("WRK") or S.find_tool("wrk")
        self.h2o = env.get("H2O", S.find_tool("h2o") or "off")
        self.haproxy = env.get("HAPROXY") or S.find_tool("haproxy")
        self.proxy_keepalive = int(env.get("PROXY_KEEPALIVE", 64))
        self.peers_spec = env.get("PEERS", "")
        self.backend = None        # servers.Backend, where proxy workloads run
        self.backend_port = None   # set when the backend starts
        self.upstream = None       # servers.EchoUpstream, where TCP workloads run
        self.upstream_port = None  # set when it starts
        self.tls_echo = self.echo_upstream = None   # built by setup()
        self.workloads = select_workloads(env.get("WORKLOADS", ""))
        self.static_wls = [w for w in self.workloads if w.static]
        self.proxy_wls = [w for w in self.workloads if w.proxy]
        self.tcp_wls = [w for w in self.workloads if w.tcp]
        # which processes Server.start() starts by default
        self.groups = tuple(g for g, wls in (("static", self.static_wls),
                                             ("proxy", self.proxy_wls),
                                             ("tcp", self.tcp_wls)) if wls)
        if not self.report_name and self.workloads and not self.static_wls:
            # never the day's full report: <date>-proxy, -tcp or -proxy-tcp
            self.report_name = "-".join([time.strftime("%Y-%m-%d", time.gmtime())]
                                        + [g for g in self.groups])
        self.ringtls_ktls_args = []
        self.tmp = self.cert = self.key = self.shim = self.h2o_openssl_conf = None
        self.ktls = False
        for name, v in (("DURATION", self.duration), ("ROUNDS", self.rounds)):
            if v < 1:
                raise SystemExit(f"bench: {name} must be at least 1")
        if self.client_procs_max < 1 or self.perf_secs < 1:
            raise SystemExit("bench: CLIENT_PROCS_MAX and PERF_SECS must be at least 1")
        if not self.workloads:
            raise SystemExit("bench: WORKLOADS selects none of: "
                             + ",".join(list(GROUPS) + [w.key for w in WORKLOADS]))
        self.peers()   # PEERS refused now, not after the setup

    def peers(self):
        """The servers: PEERS (comma-separated static servers, ringtls and
        nginx among them; ringtls-epoll is ringtls on its epoll backend) or,
        by default, ringtls, nginx and h2o where there is one; haproxy
        where proxy or TCP-mode workloads run."""
        static = ["ringtls", "nginx"] + (["h2o"] if self.h2o != "off" else [])
        if self.peers_spec.strip():
            static = [n.strip() for n in self.peers_spec.split(",") if n.strip()]
            known = ["ringtls", "ringtls-epoll", "nginx"] + (["h2o"] if self.h2o != "off" else [])
            if set(static) - set(known) or not {"ringtls", "nginx"} <= set(static):
                raise SystemExit(f"bench: PEERS must name ringtls and nginx, and only servers "
                                 f"of: {', '.join(known)} (not '{self.peers_spec}')")
        names = [n for n in static if n in ("ringtls", "nginx") or self.static_wls]
        if self.proxy_wls or self.tcp_wls:
            names.append("haproxy")
        return names


def select_workloads(spec):
    """WORKLOADS: comma-separated keys or group names (GROUPS); empty: all."""
    if not spec.strip():
        return list(WORKLOADS)
    keys = set()
    for name in spec.split(","):
        name = name.strip()
        if name in GROUPS:
            keys.update(GROUPS[name])
        elif name:
            keys.add(name)
    unknown = keys - {w.key for w in WORKLOADS}
    if unknown:
        raise SystemExit(f"bench: WORKLOADS names unknown workloads: {', '.join(sorted(unknown))}"
                         f" (known: {', '.join(list(GROUPS) + [w.key for w in WORKLOADS])})")
    return [w for w in WORKLOADS if w.key in keys]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ wrk

class WrkResult:
    def __init__(self, argv, text, rc, wall, cpu):
        self.argv, self.text, self.rc, self.wall, self.cpu = argv, text, rc, wall, cpu
        m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(\w+) read", text)
        self.requests = int(m.group(1)) if m else 0
        self.bytes = float(m.group(2)) * {"B": 1, "KB": 1024, "MB": 1024 ** 2,
                                          "GB": 1024 ** 3}.get(m.group(3), 1) if m else 0
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        self.rps = float(m.group(1)) if m else 0.0
        m = re.search(r"Socket errors: (.*)", text)
        self.socket_errors = m.group(1) if m else ""
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        self.bad_status = int(m.group(1)) if m else 0


def run_wrk(cfg, url, conns, secs, close=False, script=None, env=None, limit=None,
            cpu="first", tag=""):
    """One wrk run, pinned to `cpu` (default: the first client CPU). Its CPU
    time comes from wait4's rusage: the same utime + stime that
    /proc/PID/stat shows, but complete (wrk's own /proc entry is gone by
    the time its totals are final)."""
    if cpu == "first":
        cpu = cfg.client_cpu
    argv = [cfg.wrk, "-t1", f"-c{conns}", f"-d{secs}s"]
    if close:
        argv += ["-H", "Connection: close"]
    if script:
        argv += ["-s", script]
    argv.append(url)
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    out_path = f"{cfg.tmp}/wrk{tag}.out"
    with open(out_path, "w") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        guard = threading.Timer(limit or secs + 60, p.kill)
        guard.start()
        _, status, ru = os.wait4(p.pid, 0)
        guard.cancel()
        wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path) as f:
        text = f.read()
    return WrkResult(argv, text, p.returncode, wall, ru.ru_utime + ru.ru_stime)


def run_wrks(cfg, url, conns, secs, k, close=False, script=None):
    """k wrk processes at once, each on its own client CPU (round-robin
    over CLIENT_CPUS), the connections split between them. Each is waited
    for by its own thread (wait4 on its PID), so each process's CPU % is
    over its own wall time."""
    return run_split(cfg, conns, k, lambda i, c, cpu: run_wrk(
        cfg, url, c, secs, close=close, script=script, cpu=cpu, tag=f"-{i}"))


def run_split(cfg, conns, k, run_one):
    """run_one(i, conns_i, cpu) for k client processes at once, each in a
    thread of its own, the connections split between them, each pinned to
    its client CPU (round-robin over CLIENT_CPUS); their results in order."""
    cpus = C.cpus_for(cfg.client_cpus, k)
    results = [None] * k
    errors = []

    def one(i, c, cpu):
        try:
            results[i] = run_one(i, c, cpu)
        except Exception as e:   # re-raised below, in the caller's thread
            errors.append(e)
    threads = [threading.Thread(target=one, args=(i, c, cpu))
               for i, (c, cpu) in enumerate(zip(C.split_conns(conns, k), cpus))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class EchoResult:
    """One bench/tls_echo.c run: its JSON line, exit code, wall and CPU
    time (rusage, as for wrk)."""

    def __init__(self, argv, text, rc, wall, cpu):
        self.argv, self.text, self.rc, self.wall, self.cpu = argv, text, rc, wall, cpu
        self.out = {}
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                try:
                    self.out = json.loads(line)
                except ValueError:
                    pass
                break
        self.bytes = self.out.get("bytes", 0)
        self.echoes = self.out.get("echoes", 0)

    def error(self):
        """Why this run does not count, or None."""
        if self.out.get("error"):
            return f"tls_echo: {self.out['error']}"
        if self.rc != 0 or not self.out:
            return f"tls_echo exit {self.rc}: {self.text.strip()[-200:]}"
        if not self.bytes:
            return "tls_echo: no byte echoed"
        if self.bytes != self.out.get("sent"):
            return f"tls_echo: sent {self.out.get('sent')} bytes, {self.bytes} came back"
        return None


def run_echo(cfg, port, conns, secs=None, echoes=None, cpu="first", tag=""):
    """One bench/tls_echo.c run against 127.0.0.1:port: for secs seconds
    (timed), or `echoes` echoes per connection with SHA-256 of both
    directions compared (--verify). Pinned to `cpu` like run_wrk."""
    if cpu == "first":
        cpu = cfg.client_cpu
    argv = [cfg.tls_echo, "-p", str(port), "-c", str(conns), "--ca", cfg.cert]
    argv += ["-d", str(secs)] if secs else ["-n", str(echoes), "--verify"]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    out_path = f"{cfg.tmp}/tls_echo{tag}.out"
    with open(out_path, "w") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        guard = threading.Timer((secs or 60) + 60, p.kill)
        guard.start()
        _, status, ru = os.wait4(p.pid, 0)
        guard.cancel()
        wall = time.monotonic() - t0
    with open(out_path) as f:
        text = f.read()
    return EchoResult(argv, text, os.waitstatus_to_exitcode(status), wall,
                      ru.ru_utime + ru.ru_stime)


def echo_run(cfg, srv, wl, secs, k=1):
    """timed_run for the TCP-mode workload: k tls_echo processes against
    one server's tcp listener. A "request" is one echo of wl.body bytes;
    the measure is server CPU per MB echoed (each byte counted once,
    although it crossed the server twice, in and back out). The client
    sends nothing more at the deadline and reads back what is on its way
    before it closes, so every byte the server forwarded in the window is
    counted."""
    proc = srv.procs[wl.listener]
    up0 = cfg.upstream.cpu_ticks()
    c0 = S.cpu_ticks(proc.cpu_pid)
    t0 = time.monotonic()
    rs = run_split(cfg, wl.conns, k, lambda i, c, cpu: run_echo(
        cfg, srv.ports[wl.listener], c, secs=secs, cpu=cpu, tag=f"-{i}"))
    wall = time.monotonic() - t0
    c1 = S.cpu_ticks(proc.cpu_pid)
    up1 = cfg.upstream.cpu_ticks()
    cpu_s = (c1 - c0) / CLK_TCK
    nbytes = sum(r.bytes for r in rs)
    echoes = sum(r.echoes for r in rs)
    pcts = [round(100 * r.cpu / r.wall, 1) for r in rs]
    errs = [(i, r.error()) for i, r in enumerate(rs) if r.error()]
    error = None
    if errs:
        error = errs[0][1] if k == 1 else f"tls_echo process {errs[0][0] + 1} of {k}: {errs[0][1]}"
    mb = nbytes / 1e6
    return {
        "rps": round(echoes / wall, 2), "requests": echoes, "bytes": nbytes,
        "wall_s": round(wall, 3), "mbps": round(mb / wall, 1) if mb else None,
        "server_cpu_s": round(cpu_s, 3),
        "server_cpu_pct": round(100 * cpu_s / wall, 1),
        "cpu_us_per_req": round(1e6 * cpu_s / (nbytes / wl.body), 2) if nbytes else None,
        "cpu_ms_per_mb": round(1e3 * cpu_s / mb, 4) if mb else None,
        "client_cpu_pct": max(pcts), "client_cpu_pcts": pcts, "client_procs": k,
        "client_cpu_s": round(sum(r.cpu for r in rs), 3),
        "upstream_cpu_pct": round(100 * (up1 - up0) / CLK_TCK / wall, 1),
        "error": error, "wrk": " & ".join(shlex.join(r.argv) for r in rs),
    }


def wrk_error(r, wl):
    """Why a wrk run does not count, or None."""
    if r.rc != 0:
        return f"wrk exit {r.rc}: {r.text.strip()[-200:]}"
    if r.requests == 0:
        return f"no responses (socket errors: {r.socket_errors or 'none'})"
    if r.socket_errors:
        return f"socket errors: {r.socket_errors}"
    if r.bad_status:
        return f"{r.bad_status} responses with status >= 400"
    # wrk rounds sizes to 3 significant digits: allow 1%.
    if r.bytes / r.requests < wl.body * 0.99:
        return f"{r.bytes / r.requests:.0f} bytes per response, expected over {wl.body}"
    return None


def url_of(srv, wl):
    scheme = "https" if wl.tls else "http"
    return f"{scheme}://127.0.0.1:{srv.ports[wl.listener]}{wl.path}"


# --------------------------------------------------------------- setup

def prepare(cfg, tmp):
    """Fills the temp dir tmp (made here when None): the content, one
    ECDSA P-256 certificate for every server, h2o's OpenSSL config, the
    openat2 shim for ringtls under callgrind, and ringtls copied in.
    Shared with h2bench.py."""
    import tempfile
    cfg.tmp = tmp or tempfile.mkdtemp(prefix="ringtls-bench.", dir=os.environ.get("TMPDIR", "/tmp"))
    os.chmod(cfg.tmp, 0o755)
    os.makedirs(f"{cfg.tmp}/www", exist_ok=True)
    os.makedirs(f"{cfg.tmp}/cg", exist_ok=True)
    with open(f"{cfg.tmp}/www/hello.txt", "wb") as f:
        f.write(S.HELLO)
    for name, size in (("file-16k.bin", 16384), ("file-1m.bin", 1 << 20)):
        with open(f"{cfg.tmp}/www/{name}", "wb") as f:
            f.write(os.urandom(size))
    cfg.cert, cfg.key = f"{cfg.tmp}/cert.pem", f"{cfg.tmp}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", cfg.key, "-out", cfg.cert,
                    "-days", "7", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    cfg.h2o_openssl_conf = f"{cfg.tmp}/h2o-openssl.cnf"
    with open(cfg.h2o_openssl_conf, "w") as f:
        f.write("openssl_conf = bench_init\n[bench_init]\nssl_conf = bench_ssl\n"
                "[bench_ssl]\nsystem_default = bench_tls13\n[bench_tls13]\n"
                f"MinProtocol = TLSv1.3\nCiphersuites = {S.CIPHER}\n")
    # Every phase runs the same binary, even if build/ringtls is rebuilt
    # while the run goes on (other people share this machine and tree).
    cfg.ringtls_src = cfg.ringtls
    cfg.ringtls = f"{cfg.tmp}/ringtls"
    shutil.copy2(cfg.ringtls_src, cfg.ringtls)
    cfg.shim = f"{cfg.tmp}/openat2_shim.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", cfg.shim,
                    f"{HERE}/openat2_shim.c", "-ldl"], check=True)


def setup(cfg):
    """prepare(), then what the TCP-mode workload needs."""
    prepare(cfg, None)
    if cfg.tcp_wls:
        # The TCP-mode workload's client and upstream (no standard tool
        # does a TLS echo load)
        cfg.tls_echo, cfg.echo_upstream = f"{cfg.tmp}/tls_echo", f"{cfg.tmp}/echo_upstream"
        for out, src, libs in ((cfg.tls_echo, "tls_echo.c", ["-lssl", "-lcrypto"]),
                               (cfg.echo_upstream, "echo_upstream.c", [])):
            r = subprocess.run(["cc", "-O2", "-Wall", "-o", out, f"{HERE}/{src}"] + libs,
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"bench: cannot build bench/{src} (OpenSSL's headers: "
                                 f"apt-get install libssl-dev):\n{r.stderr}")
    probe = subprocess.run([cfg.ringtls, "probe"], capture_output=True, text=True).stdout
    cfg.ktls = bool(re.search(r"^tls ULP:\s+yes", probe, re.M))
    cfg.probe = probe.strip()


def make_servers(cfg, env):
    srvs = {name: S.SERVERS[name](cfg, env) for name in cfg.peers()}
    if "ringtls-epoll" in srvs:
        # beside the epoll peer, io_uring for sure (auto could be either)
        srvs["ringtls"].backend = "io_uring"
    return srvs


def stop_all(srvs):
    """Stops every server; a non-zero exit is a failure of the run."""
    bad = []
    for srv in srvs.values():
        for name, rc in srv.stop().items():
            if rc != 0:
                bad.append(f"{name} exited {rc}")
    return bad


# --------------------------------------------------------------- check

def http_get(port, path, tls, cafile, close=False):
    """(status, headers, body) of one GET over a fresh connection."""
    import http.client
    import ssl
    if tls:
        ctx = ssl.create_default_context(cafile=cafile)
        conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"} if close else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def tls_params(port):
    """What openssl s_client negotiates, e.g. 'TLSv1.3 TLS_AES_128_GCM_SHA256
    ECDSA X25519'."""
    r = subprocess.run(["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}",
                        "-servername", "localhost"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=20)
    text = r.stdout + r.stderr
    got = []
    for key in ("Protocol version", "Ciphersuite", "Signature type", "Server Temp Key"):
        m = re.search(rf"^{key}: ([^,\n]+)", text, re.M)
        got.append(m.group(1).strip() if m else "?")
    return " ".join(got)


def check_bodies(cfg, srv):
    want = {"/hello": S.HELLO}
    for name in ("file-16k.bin", "file-1m.bin"):
        with open(f"{cfg.tmp}/www/{name}", "rb") as f:
            want[f"/{name}"] = f.read()
    for listener in ("plain", "tls", "full"):
        for path, body in want.items():
            if listener == "full" and path != "/hello":
                continue
            st, _, got = http_get(srv.ports[listener], path, listener != "plain", cfg.cert)
            if st != 200 or got != body:
                raise SystemExit(f"bench: {srv.name} {listener} GET {path}: status {st}, "
                                 f"{len(got)} bytes: not the expected {len(body)} bytes")
        st, hdrs, _ = http_get(srv.ports[listener], "/hello", listener != "plain", cfg.cert,
                               close=True)
        if st != 200 or hdrs.get("connection", "").lower() != "close":
            raise SystemExit(f"bench: {srv.name} {listener}: a request with Connection: close "
                             f"got status {st}, Connection: {hdrs.get('connection')}")


def check_log(cfg, srv, listener):
    """The check instance's log that shows the listener's handshakes."""
    full = "full-" if listener == "full" else ""
    if isinstance(srv, S.Ringtls):
        return f"{cfg.tmp}/{srv.name}-{full}check.log"
    if srv.name == "nginx":
        return f"{cfg.tmp}/nginx-check-access.log"
    return f"{cfg.tmp}/h2o-{full}check-access.log"


def count_handshakes(cfg, srv, listener, before):
    """(handshakes, resumed) from the check instance's log since `before`
    lines: ringtls logs each handshake at debug level; nginx and h2o log
    each request, with whether its session was reused and its index on
    the connection (a first request is a new connection)."""
    lines = read_lines(check_log(cfg, srv, listener))[before:]
    if isinstance(srv, S.Ringtls):
        rows = [ln for ln in lines if re.search(r" resumed=(yes|no) ", ln)]
        return len(rows), sum(" resumed=yes " in ln for ln in rows)
    rows = [ln.split() for ln in lines]
    if srv.name == "nginx":
        firsts = [r for r in rows if len(r) == 2 and r[1] == "1"]
        return len(firsts), sum(r[0] == "r" for r in firsts)
    firsts = [r for r in rows if len(r) == 2 and r[1] in ("0", "1")]
    return len(firsts), sum(r[0] == "1" for r in firsts)


def log_lines_now(cfg, srv, listener):
    return len(read_lines(check_log(cfg, srv, listener)))


def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def http_request(port, method, path, cafile, body=None):
    """(status, headers, body) of one HTTPS request over a fresh connection."""
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=30)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_proxy(cfg, srv):
    """Each proxy workload's request through srv's proxy listener: the
    backend's status and body, with the header only the backend adds
    (X-Bench-Backend), so a proxy that answered by itself fails; and the
    TLS parameters. Returns {"tls": ...} or {"error": why}."""
    if not srv.serves(cfg.proxy_wls[0]):
        return {"error": f"did not start: {srv.proxy_error}"}
    port = srv.ports["proxy"]
    with open(f"{cfg.tmp}/www/file-1m.bin", "rb") as f:
        want = {"/hello": S.HELLO, "/file-1m.bin": f.read(), "/upload": b"uploaded"}
    for wl in cfg.proxy_wls:
        method, body = ("POST", b"x" * wl.upload) if wl.upload else ("GET", None)
        try:
            st, hdrs, got = http_request(port, method, wl.path, cfg.cert, body)
        except (OSError, ValueError) as e:   # http.client's errors are OSError or ValueError
            return {"error": f"{method} {wl.path}: {type(e).__name__}: {e}"}
        if st != 200 or got != want[wl.path] or hdrs.get("x-bench-backend") != "1":
            return {"error": f"{method} {wl.path}: status {st}, {len(got)} bytes, "
                    f"X-Bench-Backend {hdrs.get('x-bench-backend')}: not the backend's "
                    f"{len(want[wl.path])} bytes"}
    return {"tls": tls_params(port)}


CHECK_ECHO_CONNS, CHECK_ECHOES = 2, 4


def check_tcp(cfg, srv):
    """The TCP-mode listener, before any timing: tls_echo --verify (2
    connections x 4 echoes of 1 MiB of fresh data each, SHA-256 of what
    each sent and of what came back equal) and the TLS parameters.
    Returns {"tls": ..., "verified": ...} or {"error": why}."""
    wl = cfg.tcp_wls[0]
    if not srv.serves(wl):
        return {"error": f"did not start: {srv.tcp_error}"}
    port = srv.ports["tcp"]
    r = run_echo(cfg, port, CHECK_ECHO_CONNS, echoes=CHECK_ECHOES)
    if r.error():
        return {"error": r.error()}
    want = CHECK_ECHO_CONNS * CHECK_ECHOES * wl.body
    if r.out.get("verified") != CHECK_ECHO_CONNS or r.bytes != want:
        return {"error": f"verified {r.out.get('verified')} of {CHECK_ECHO_CONNS} connections, "
                f"{r.bytes} of {want} bytes echoed"}
    if (r.out.get("protocol"), r.out.get("cipher")) != ("TLSv1.3", S.CIPHER):
        return {"error": f"tls_echo negotiated {r.out.get('protocol')} {r.out.get('cipher')}"}
    return {"tls": tls_params(port),
            "verified": f"{CHECK_ECHO_CONNS} connections x {CHECK_ECHOES} echoes of "
                        f"{wl.body} bytes: SHA-256 of the bytes read back equal to that of the "
                        f"bytes sent ({shlex.join(r.argv)})"}


def check_phase(cfg, srvs, res):
    """Untimed: content, TLS parameters, and what wrk's Connection: close
    runs do on each server (one handshake per request; resumed or not);
    the proxies' answers (check_proxy); the TCP-mode echo (check_tcp)."""
    for srv in srvs.values():
        srv.start("check")
        try:
            if cfg.proxy_wls and srv.proxies:
                c = res["checks_proxy"][srv.name] = check_proxy(cfg, srv)
                log(f"check {srv.name} proxy: " + (f"ERROR {c['error']}" if "error" in c
                                                   else c["tls"]))
            if cfg.tcp_wls and srv.tcp:
                c = res["checks_tcp"][srv.name] = check_tcp(cfg, srv)
                log(f"check {srv.name} tcp: " + (f"ERROR {c['error']}" if "error" in c
                                                 else f"{c['tls']}; echo verified"))
            if "tls" not in srv.procs:
                continue
            check_bodies(cfg, srv)
            out = {"tls": tls_params(srv.ports["tls"]), "full": tls_params(srv.ports["full"])}
            for listener in ("tls", "full"):
                before = log_lines_now(cfg, srv, listener)
                wl = next(w for w in WORKLOADS if w.listener == listener and w.close)
                r = run_wrk(cfg, url_of(srv, wl), 4, 1, close=True)
                time.sleep(0.3)   # let the logs catch up
                hs, resumed = count_handshakes(cfg, srv, listener, before)
                out[f"{listener}_handshakes"] = {
                    "requests": r.requests, "handshakes": hs, "resumed": resumed,
                    "error": wrk_error(r, wl), "wrk": shlex.join(r.argv)}
            res["checks"][srv.name] = out
            log(f"check {srv.name}: {out['tls']}; resumed "
                f"{out['tls_handshakes']['resumed']}/{out['tls_handshakes']['handshakes']} "
                f"(tickets), {out['full_handshakes']['resumed']}/"
                f"{out['full_handshakes']['handshakes']} (no resumption)")
        finally:
            srv.stop()


# --------------------------------------------------------------- timed

def timed_run(cfg, srv, wl, secs, k=1):
    """k wrk processes against one server: requests, bytes and wrk CPU
    summed over them, each process's CPU % kept (the busiest one is
    client_cpu_pct: that is the core that saturates first)."""
    if wl.tcp:
        return echo_run(cfg, srv, wl, secs, k)
    proc = srv.procs[wl.listener]
    backend = cfg.backend if wl.proxy else None
    if backend:
        b0, bc0 = backend.status(), backend.cpu_ticks()
    c0 = S.cpu_ticks(proc.cpu_pid)
    t0 = time.monotonic()
    rs = run_wrks(cfg, url_of(srv, wl), wl.conns, secs, k, close=wl.close,
                  script=wl.script and f"{HERE}/{wl.script}")
    wall = time.monotonic() - t0
    c1 = S.cpu_ticks(proc.cpu_pid)
    cpu_s = (c1 - c0) / CLK_TCK
    requests = sum(r.requests for r in rs)
    pcts = [round(100 * r.cpu / r.wall, 1) for r in rs]
    errs = [(i, e) for i, e in enumerate(wrk_error(r, wl) for r in rs) if e]
    error = None
    if errs:
        error = errs[0][1] if k == 1 else f"wrk process {errs[0][0] + 1} of {k}: {errs[0][1]}"
    extra = {}
    if backend:
        bc1, b1 = backend.cpu_ticks(), backend.status()
        # b0's own connection and request are counted in b1
        conns, breqs = b1[0] - b0[0] - 1, b1[1] - b0[1] - 1
        extra = {"upstream_conns": conns, "backend_requests": breqs,
                 "backend_cpu_pct": round(100 * (bc1 - bc0) / CLK_TCK / wall, 1)}
        # Every response wrk read must have come from the backend (more
        # requests reach it: those in flight when wrk stopped, retries).
        if not error and breqs < requests:
            error = (f"{breqs} requests reached the backend for {requests} responses: "
                     "not every response came from the backend")
    return {
        "rps": round(sum(r.rps for r in rs), 2), "requests": requests,
        "bytes": sum(r.bytes for r in rs), "wall_s": round(wall, 3),
        "server_cpu_pct": round(100 * cpu_s / wall, 1),
        "cpu_us_per_req": round(1e6 * cpu_s / requests, 2) if requests else None,
        "client_cpu_pct": max(pcts), "client_cpu_pcts": pcts, "client_procs": k,
        "client_cpu_s": round(sum(r.cpu for r in rs), 3),
        "error": error, "wrk": " & ".join(shlex.join(r.argv) for r in rs), **extra,
    }


def not_timed(why):
    """A round of a server that could not run the workload."""
    return {"rps": None, "requests": 0, "server_cpu_pct": None, "cpu_us_per_req": None,
            "client_cpu_pct": None, "client_cpu_pcts": [], "error": why, "wrk": ""}


def group_checks(wl, res):
    """The check phase's results for wl's kind of workload, by server."""
    return res["checks_tcp"] if wl.tcp else res["checks_proxy"] if wl.proxy else {}


def serving(srvs, wl, res):
    """The servers that run wl: those with its listener up and, for a proxy
    or TCP-mode workload, whose process passed the check phase."""
    checks = group_checks(wl, res)
    return {n: s for n, s in srvs.items()
            if s.serves(wl) and "error" not in checks.get(n, {})}


def why_not(srv, wl, res):
    """Why srv does not run wl, or None where it is not one of its peers."""
    if not (srv.proxies if wl.proxy else srv.tcp if wl.tcp else srv.static):
        return None
    err = srv.proxy_error if wl.proxy else srv.tcp_error if wl.tcp else None
    if err:
        return f"did not start: {err}"
    checks = group_checks(wl, res)
    if "error" in checks.get(srv.name, {}):
        return "check failed: " + checks[srv.name]["error"]
    return "not started"


def choose_clients(cfg, srvs, wl):   # srvs: those that serve wl
    """The warm-up of one workload, which also decides how many wrk
    processes it gets (bench/clients.py): k = 1, 2, ... against every
    server until no run leaves its busiest wrk process at 90% or more, or
    no client CPU is left. Without warm-up and with one client CPU there is
    nothing to decide."""
    slots, conns = len(cfg.client_cpus), wl.conns
    limit = min(slots, cfg.client_procs_max, conns)
    secs = cfg.warmup or 1

    def measure(k):
        out = {}
        for name, srv in srvs.items():
            m = timed_run(cfg, srv, wl, secs, k)
            out[name] = m["client_cpu_pcts"]
            log(f"warm-up {wl.key:<10} {name:<7} {k} {'tls_echo' if wl.tcp else 'wrk'}: "
                f"{m['rps']:>10.0f} {'echoes' if wl.tcp else 'req'}/s  "
                f"{'tls_echo' if wl.tcp else 'wrk'} CPU "
                f"{'/'.join(f'{p:.0f}' for p in m['client_cpu_pcts'])}%"
                + (f"  ERROR {m['error']}" if m["error"] else ""))
        return out
    if cfg.client_procs:
        k = min(cfg.client_procs, conns)
        rec = {"k": k, "steps": [], "end": f"fixed by CLIENT_PROCS={cfg.client_procs}"}
        if cfg.warmup:
            measure(k)
    elif cfg.warmup == 0 and limit == 1:
        rec = {"k": 1, "steps": [], "end": "not measured in a warm-up (WARMUP=0, one client "
               "CPU): see the timed rounds"}
    else:
        rec = C.calibrate(measure, slots, cfg.client_procs_max, conns, cfg.client_bound_pct,
                          log=lambda m: log(f"warm-up {wl.key:<10} {m}"))
    rec.update(slots=slots, procs_max=cfg.client_procs_max,
               cpus=C.cpus_for(cfg.client_cpus, rec["k"]),
               conns=C.split_conns(conns, rec["k"]))
    return rec


def clients_after(cfg, rec, per_server):
    """Whether the timed rounds (ringtls and nginx, the judged pair) left
    wrk client-bound, by the same rule as the warm-up: the median over the
    rounds of each process's CPU %, the busiest process deciding."""
    med = {}
    for name in ("ringtls", "nginx", "haproxy"):
        rounds = [m for m in per_server.get(name, []) if m.get("client_cpu_pcts")]
        if rounds:
            med[name] = [statistics.median(m["client_cpu_pcts"][i] for m in rounds)
                         for i in range(len(rounds[0]["client_cpu_pcts"]))]
    _, why = C.decide(rec["k"], med, rec["slots"], rec["procs_max"], sum(rec["conns"]),
                      cfg.client_bound_pct)
    rec["timed"] = {"cpu_pct_median": med, "end": why, "client_bound": why != C.ENOUGH,
                    "no_cpu_left": why == C.NO_CPU}


def round_text(m, wl):
    """One timed run, for the log."""
    if m["rps"] is None:
        return f"ERROR {m['error']}"
    pcts = "/".join(f"{p:.0f}" for p in m["client_cpu_pcts"])
    if wl.tcp:
        text = (f"{m['mbps'] or 0:>8.1f} MB/s  server CPU {m['server_cpu_pct']:5.1f}% "
                f"({m['cpu_ms_per_mb'] or 0:.3f} ms/MB)  tls_echo CPU {pcts}%  upstream CPU "
                f"{m['upstream_cpu_pct']:.0f}%")
    else:
        text = (f"{m['rps']:>10.0f} req/s  server CPU {m['server_cpu_pct']:5.1f}%  "
                f"wrk CPU {pcts}%")
        if "upstream_conns" in m:
            text += (f"  backend CPU {m['backend_cpu_pct']:.0f}%, "
                     f"{m['upstream_conns']} upstream conns")
    return text + (f"  ERROR {m['error']}" if m["error"] else "")


SPEED_SIGN = re.compile(r"256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([0-9.]+)")
SPEED_X25519 = re.compile(r"253 bits ecdh \(X25519\)\s+\S+s\s+([0-9.]+)")


def crypto_round(cfg):
    """A full handshake's crypto in isolation, on the server's CPU: one
    ECDSA P-256 signature and two X25519 operations (the server's key
    share and the shared secret), from `openssl speed` (issue 20's
    handshake target is at most 1.8x this). Run once per timed round, so
    that each round's handshakes are set against the machine as it was."""
    argv = ["openssl", "speed", "-seconds", str(cfg.crypto_s), "ecdsap256", "ecdhx25519"]
    if cfg.server_cpu is not None:
        argv = ["taskset", "-c", str(cfg.server_cpu)] + argv
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60 + 4 * cfg.crypto_s,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"openssl speed: {e}"}
    sign, x = SPEED_SIGN.search(out), SPEED_X25519.search(out)
    if not sign or not x or not float(sign.group(1)) or not float(x.group(1)):
        return {"error": "openssl speed: no ecdsa/X25519 line in its output"}
    sign_s, x_s = float(sign.group(1)), float(x.group(1))
    return {"sign_per_s": sign_s, "x25519_per_s": x_s, "us": 1e6 / sign_s + 2e6 / x_s,
            "command": " ".join(argv)}


def timed_phase(cfg, srvs, res):
    """Interleaved rounds; each round starts with the next server in turn,
    so that no server always runs right after the same neighbour."""
    for srv in srvs.values():
        srv.start("time")
        res["commands"][srv.name] = [p.display for p in srv.started]
    names = list(srvs)
    for wl in cfg.workloads:
        res["clients"][wl.key] = choose_clients(cfg, serving(srvs, wl, res), wl)
    if cfg.warmup:
        log(f"warmed up ({cfg.warmup}s per server, workload and client count)")
    for rnd in range(cfg.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for wl in cfg.workloads:
            k = res["clients"][wl.key]["k"]
            ok = serving(srvs, wl, res)
            for name in order:
                if name in ok:
                    m = timed_run(cfg, srvs[name], wl, cfg.duration, k)
                elif why_not(srvs[name], wl, res):
                    m = not_timed(why_not(srvs[name], wl, res))
                else:
                    continue
                res["timed"].setdefault(wl.key, {}).setdefault(name, []).append(m)
                log(f"round {rnd + 1}/{cfg.rounds}  {wl.key:<10} {name:<7} "
                    + round_text(m, wl))
            if wl.key == "hs-full":
                c = crypto_round(cfg)
                res.setdefault("crypto", []).append(c)
                log(f"round {rnd + 1}/{cfg.rounds}  {'crypto':<10} " +
                    (c["error"] if "error" in c else
                     f"ECDSA P-256 sign {c['sign_per_s']:.0f}/s, X25519 {c['x25519_per_s']:.0f}/s:"
                     f" {c['us']:.1f} µs per handshake"))
    for wl in cfg.workloads:
        clients_after(cfg, res["clients"][wl.key], res["timed"].get(wl.key, {}))
    bad = stop_all(srvs)
    if bad:
        res["errors"].append("after the timed runs: " + ", ".join(bad))


# ---------------------------------------------------------------- perf

def perf_run(cfg, srv, wl, k, outdir):
    """perf record of the server while wrk (k processes, as in the timed
    rounds) loads it. perf starts first and stops after wrk: the server
    does nothing outside wrk's run, so every sample belongs to one of
    wrk's requests, and samples x period / wrk's requests is exact."""
    pid = srv.procs[wl.listener].cpu_pid
    data = f"{cfg.tmp}/perf-{wl.key}-{srv.name}.data"
    argv = P.record_argv(pid, data, cfg.perf_secs + 3)
    if cfg.client_cpus[0] is not None:   # keep perf's own work off the server's core
        argv = ["taskset", "-c", ",".join(str(c) for c in sorted(set(cfg.client_cpus)))] + argv
    with open(f"{cfg.tmp}/perf-record.log", "a") as errf:
        perf = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    try:
        time.sleep(1.0)   # attached
        if perf.poll() is not None:
            return {"error": f"perf record exited {perf.returncode}: "
                    + S.tail(f"{cfg.tmp}/perf-record.log", 3).strip()}
        segs0 = P.tcp_segments()
        m = timed_run(cfg, srv, wl, cfg.perf_secs, k)
        segs1 = P.tcp_segments()
        rc = perf.wait(timeout=cfg.perf_secs + 120)
    finally:
        if perf.poll() is None:
            perf.kill()
            perf.wait()
    if m["error"] or rc != 0:
        return {"error": m["error"] or f"perf record exited {rc}"}
    script = subprocess.run(["perf", "script", "-i", data, "-F", "tid,period,ip,sym,dso"],
                            capture_output=True, text=True, timeout=600)
    binary = server_binary(cfg, srv)
    out = P.analyse(P.parse_script(script.stdout), m["requests"], binary)
    out.update(requests=m["requests"], rps=m["rps"], client_procs=k,
               cpu_us_per_req_proc=m["cpu_us_per_req"], wrk=m["wrk"],
               perf=shlex.join(argv[argv.index("perf"):]).replace(data, "perf.data"),
               segs_in_per_req=round((segs1[0] - segs0[0]) / m["requests"], 3),
               segs_out_per_req=round((segs1[1] - segs0[1]) / m["requests"], 3))
    os.makedirs(outdir, exist_ok=True)
    path = f"{outdir}/{wl.key}-{srv.name}.txt"
    with open(path, "w") as f:
        f.write(f"# {srv.name}, {wl.title}: {out['perf']} (PID = the server process) while "
                f"{m['wrk']} ran\n# {m['requests']} requests in the window, "
                f"{out.get('samples')} samples, {out.get('us_per_req')} us/request by perf, "
                f"{m['cpu_us_per_req']} us/request by /proc/PID/stat\n\n")
        f.write(P.report_text(data))
    out["file"] = os.path.relpath(path, cfg.repo)
    os.unlink(data)
    return out


def server_binary(cfg, srv):
    """The basename of the server's own executable, as perf and callgrind
    name its DSO."""
    if isinstance(srv, S.Ringtls):
        return os.path.basename(cfg.ringtls)
    return os.path.basename(cfg.h2o if isinstance(srv, S.H2o) else cfg.nginx)


def perf_servers(cfg, srvs, wls, clients, outdir, errors):
    """perf_run for each server and workload, each server started fresh."""
    runs = {}
    for name, srv in srvs.items():
        srv.start("time", groups=("static",))
        try:
            for wl in wls:
                k = clients.get(wl.key, 1)
                timed_run(cfg, srv, wl, 1, k)   # a fresh server: first-use costs out
                m = perf_run(cfg, srv, wl, k, outdir)
                runs.setdefault(wl.key, {})[name] = m
                log(f"perf {wl.key:<10} {name:<7} " + (
                    f"ERROR {m['error']}" if "error" in m else
                    f"{m['us_per_req']:.2f} us/req (/proc: {m['cpu_us_per_req_proc']}), kernel "
                    f"{m['dso']['kernel']['share']:.0f}%, TCP segments/req in "
                    f"{m['segs_in_per_req']:.3f} out {m['segs_out_per_req']:.3f}"))
        finally:
            bad = srv.stop()
        if any(rc != 0 for rc in bad.values()):
            errors.append(f"after perf: {name} exited {bad}")
    return runs


def own_netns_works():
    """Whether this process may give the perf phase its own network
    namespace (root, unshare and ip present): there the TCP counters count
    the phase's own loopback traffic and nothing else on the host."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    r = subprocess.run(["unshare", "-n", "--", "ip", "link", "set", "lo", "up"],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def perf_main(spec_path, out_path):
    """bench.py --perf-run SPEC OUT, inside `unshare -n` (see perf_phase)."""
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with open(spec_path) as f:
        spec = json.load(f)
    cfg = Config(os.environ)
    for k, v in spec["cfg"].items():
        setattr(cfg, k, v)
    wls = [w for w in WORKLOADS if w.key in spec["workloads"]]
    srvs = {n: S.SERVERS[n](cfg, dict(os.environ)) for n in spec["servers"]}
    errors = []
    runs = perf_servers(cfg, srvs, wls, spec["clients"], spec["outdir"], errors)
    with open(out_path, "w") as f:
        json.dump({"runs": runs, "errors": errors}, f)
    return 0


def perf_phase(cfg, srvs, res):
    """Where the time goes: ringtls, nginx and h2o (where it is a peer)
    under perf on the workloads of PERF_WORKLOADS, with the wrk process counts of the timed rounds;
    raw summaries in bench/results/<date>-perf/. Run in a network
    namespace of its own where that is allowed (TCP segment counts)."""
    pr = res["perf"]
    # Not the proxy workloads: their backend is outside the phase's network
    # namespace.
    wls = [w for w in cfg.static_wls if w.key in cfg.perf_workloads]
    why = P.unavailable(cfg.tmp) if wls else (
        f"none of PERF_WORKLOADS ({','.join(cfg.perf_workloads)}) was run (the proxy "
        "workloads never are)")
    if why:
        pr["skipped"] = why
        log(f"perf: skipped: {why}")
        return
    outdir = (f"{cfg.tmp}/perf" if cfg.no_report
              else f"{cfg.bench_dir}/results/{cfg.report_name}-perf")
    shutil.rmtree(outdir, ignore_errors=True)   # one run's files only
    pr["dir"] = os.path.relpath(outdir, cfg.repo)
    clients = {wl.key: res["clients"].get(wl.key, {}).get("k", 1) for wl in wls}
    names = [n for n in P.SERVERS if n in srvs]
    pr["netns"] = own_netns_works()
    if not pr["netns"]:
        log("perf: no network namespace of its own (not root, or unshare -n refused): "
            "TCP segment counts include the rest of this host's traffic")
        pr["runs"] = perf_servers(cfg, {n: srvs[n] for n in names}, wls, clients, outdir,
                                  res["errors"])
        return
    spec, out = f"{cfg.tmp}/perf-spec.json", f"{cfg.tmp}/perf-out.json"
    with open(spec, "w") as f:
        json.dump({"cfg": {k: getattr(cfg, k) for k in (
            "tmp", "cert", "key", "shim", "h2o_openssl_conf", "ringtls", "nginx", "h2o", "wrk",
            "ktls", "ringtls_ktls_args")}, "workloads": [w.key for w in wls],
            "servers": names, "clients": clients, "outdir": outdir}, f)
    child = subprocess.Popen(["unshare", "-n", "--", "sh", "-c",
                              'ip link set lo up && exec "$0" "$@"', sys.executable,
                              os.path.abspath(__file__), "--perf-run", spec, out])
    try:
        rc = child.wait(timeout=600 + 60 * len(wls) * len(names))
    finally:
        if child.poll() is None:   # stopped early: let it stop its servers
            child.terminate()
            child.wait(timeout=60)
    if rc != 0 or not os.path.exists(out):
        res["errors"].append(f"perf phase (in its own network namespace) exited {rc}")
        return
    with open(out) as f:
        got = json.load(f)
    pr["runs"] = got["runs"]
    res["errors"] += got["errors"]


# ----------------------------------------------------------- callgrind

def wait_idle(pid, quiet_s=0.4, limit_s=30):
    """Waits until the process has used no CPU for quiet_s, so that the
    closing of wrk's connection is counted in its own batch."""
    end = time.monotonic() + limit_s
    last, since = S.cpu_ticks(pid), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.1)
        now = S.cpu_ticks(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    log(f"bench: pid {pid} still busy after {limit_s}s; counting anyway")


def cg_control(pid, flag):
    r = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"callgrind_control {flag} {pid}: {r.stdout}{r.stderr}")


def cg_dump(cfg, proc):
    """Dumps the counters since the last zero; returns (the Ir total, the
    dump's path)."""
    def dumps():
        return {f for f in os.listdir(f"{cfg.tmp}/cg") if f".{proc.pid}.out." in f}
    before = dumps()
    cg_control(proc.pid, "-d")
    new = sorted(dumps() - before, key=lambda f: int(f.rsplit(".", 1)[1]))
    if not new:
        raise RuntimeError(f"callgrind_control -d {proc.pid} wrote no dump")
    path = f"{cfg.tmp}/cg/{new[-1]}"
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1]), path
    raise RuntimeError(f"no summary line in {new[-1]}")


def fixed_run(cfg, url, wl, n):
    """Exactly n responses (bench/fixed_count.lua) on one connection at a
    time: with more, the requests in flight when wrk exits (half-done
    handshakes, part-sent 1 MiB bodies) differ from batch to batch."""
    env = dict(os.environ, BENCH_REQUESTS=str(n))
    r = run_wrk(cfg, url, 1, 3600, close=wl.close, script=f"{HERE}/fixed_count.lua",
                env=env, limit=900)
    if r.rc != 0 or f"fixed_count: {n} responses" not in r.text:
        raise RuntimeError(f"{' '.join(r.argv)} (BENCH_REQUESTS={n}): exit {r.rc}: "
                           f"{r.text.strip()[-300:]}")
    return r


def cg_measure(cfg, srv, wl, outdir=None):
    """Instructions per request = (Ir(n2) - Ir(n1)) / (n2 - n1): the fixed
    costs of a batch (wrk's connection and its handshake, closing it) are
    the same in both and cancel. With outdir, the same function by function
    (the self costs of both dumps) into OUTDIR/<workload>-<server>.txt."""
    proc = srv.procs[wl.listener]
    warm, n1, n2 = (max(2, round(n * cfg.cg_scale)) for n in wl.cg)
    if n2 <= n1:
        n2 = n1 + 2
    url = url_of(srv, wl)
    fixed_run(cfg, url, wl, warm)   # first-use costs (lazy init, caches) stay out
    irs, paths = [], []
    for n in (n1, n2):
        wait_idle(proc.pid)
        cg_control(proc.pid, "-z")
        r = fixed_run(cfg, url, wl, n)
        wait_idle(proc.pid)
        ir, path = cg_dump(cfg, proc)
        irs.append(ir)
        paths.append(path)
    out = {"n": [n1, n2], "ir": irs, "per_req": round((irs[1] - irs[0]) / (n2 - n1))}
    if outdir:
        try:
            out["functions"] = cg_functions(cfg, srv, wl, (n1, n2), irs, paths, r, outdir)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            out["functions"] = {"error": str(e)}   # the count stands without it
    return out


def cg_functions(cfg, srv, wl, ns, irs, paths, wrk_run, outdir):
    """Instructions per request by function, object and bucket (see
    perfphase.cg_per_request), written to OUTDIR/<workload>-<server>.txt
    with callgrind_annotate's own list of the larger batch; the dumps
    themselves stay in the temp dir."""
    selfs = [P.cg_self(p) for p in paths]
    for (fns, totals), p in zip(selfs, paths):
        if sum(fns.values()) != totals:   # every cost line read, none twice
            raise RuntimeError(f"{p}: self costs add up to {sum(fns.values()):,}, its "
                               f"totals: line says {totals}")
    summary = P.cg_per_request(selfs[0][0], selfs[1][0], *ns, server_binary(cfg, srv))
    annotated = P.cg_annotate(paths[1], cfg.tmp)
    os.makedirs(outdir, exist_ok=True)
    path = f"{outdir}/{wl.key}-{srv.name}.txt"
    cmd = next((p.display for p in srv.started if p is srv.procs[wl.listener]), "")
    wrk = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", shlex.join(wrk_run.argv))
    head = [f"# {srv.name}, {wl.title}: userspace instructions under callgrind",
            f"# server (TMP: the run's temp dir): {cmd.replace(cfg.tmp, 'TMP')}",
            f"# batches of {ns[0]} and {ns[1]} requests, each between callgrind_control -z "
            f"and -d: BENCH_REQUESTS=n {wrk}",
            f"# Ir (summary lines) {irs[0]:,} and {irs[1]:,}, (totals lines, the sums of the "
            f"functions below) {selfs[0][1]:,} and {selfs[1][1]:,}; per request = "
            f"difference / {ns[1] - ns[0]}"
            + (" (one request = one full handshake: Connection: close)" if wl.close else ""),
            "# " + " ".join(P.cg_annotate_argv("DUMP"))]
    with open(path, "w") as f:
        f.write(P.cg_report_text(head, summary, annotated))
    summary["file"] = os.path.relpath(path, cfg.repo)
    return summary


def callgrind_phase(cfg, srvs, workloads, res_cg, commands, outdir=None):
    """Static workloads and servers only (the proxy ones have no counts).
    outdir: where the per-function summaries go (None: none made)."""
    workloads = [w for w in workloads if w.static]
    for srv in srvs.values():
        if not srv.static or not workloads:
            continue
        try:
            srv.start("callgrind", groups=("static",))
        except S.ServerError as e:
            for wl in workloads:
                res_cg.setdefault(wl.key, {})[srv.name] = {"error": str(e).splitlines()[0]}
            srv.stop()
            continue
        commands[srv.name] = [p.display for p in srv.started]
        for wl in workloads:
            t0 = time.monotonic()
            try:
                m = cg_measure(cfg, srv, wl, outdir)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                m = {"error": str(e)}
            res_cg.setdefault(wl.key, {})[srv.name] = m
            log(f"callgrind {wl.key:<10} {srv.name:<7} "
                + (f"{m['per_req']:>12,} instructions/request ({time.monotonic() - t0:.0f}s)"
                   if "per_req" in m else f"ERROR {m['error']}"))
        srv.stop()


# -------------------------------------------------------------- memory

def memory_phase(cfg, srvs, res):
    """RSS growth per idle TLS connection, bench/ktls_memory.py's way:
    200 connections to warm up, then N more, each after one GET /hello."""
    argv, sys.argv = sys.argv, sys.argv[:1]   # ktls_memory reads N from argv
    try:
        import ktls_memory
    finally:
        sys.argv = argv
    warm = min(200, cfg.idle_conns)
    for srv in (s for s in srvs.values() if s.static):
        srv.start("time", groups=("static",))
        pid, port = srv.procs["tls"].cpu_pid, srv.ports["tls"]
        keep = []
        try:
            ktls_memory.open_conns(port, cfg.cert, warm, keep)
            time.sleep(0.5)
            before = S.rss_kib(pid)
            ktls_memory.open_conns(port, cfg.cert, cfg.idle_conns, keep)
            time.sleep(1.0)
            after = S.rss_kib(pid)
            res["memory"][srv.name] = {
                "conns": cfg.idle_conns, "before_kib": before, "after_kib": after,
                "bytes_per_conn": round((after - before) * 1024 / cfg.idle_conns)}
        except (OSError, RuntimeError) as e:
            res["memory"][srv.name] = {"error": str(e)}
        finally:
            for t in keep:
                t.close()
            srv.stop()
        log(f"memory {srv.name}: {res['memory'][srv.name]}")


# -------------------------------------------------------------- kernel

def tls_stat():
    try:
        with open("/proc/net/tls_stat") as f:
            return {k: int(v) for k, v in (ln.split() for ln in f if ln.strip())}
    except FileNotFoundError:
        return {}


def in_kernel_main(spec_path, out_path):
    """Runs inside Linux 6.1 (tests/kernel/run-kernel.sh): callgrind counts
    with kTLS on, for ringtls and nginx. Syscalls there are ~100x slower
    than on the host, so nothing is timed: instruction counts do not
    depend on time."""
    if not tls_stat():
        print("SKIP: no /proc/net/tls_stat: this kernel has no kTLS")
        return 77
    with open(spec_path) as f:
        spec = json.load(f)
    cfg = Config(os.environ, pin=False)   # one UML CPU: nothing to pin
    for k, v in spec.items():
        setattr(cfg, k, v)
    cfg.ktls, cfg.h2o = True, "off"
    # 6.1 cannot rekey TLS 1.3: offload RX anyway, as bench/ktls_memory.py
    cfg.ringtls_ktls_args = ["--ktls", "on", "--ktls-rx-no-rekey"]
    workloads = [w for w in WORKLOADS if w.key in KERNEL_WORKLOADS]
    out = {"kernel": os.uname().release, "callgrind": {}, "tls_stat": {}, "commands": {}}
    for name in ("ringtls", "nginx"):
        st0 = tls_stat()
        callgrind_phase(cfg, {name: S.SERVERS[name](cfg, dict(os.environ))}, workloads,
                        out["callgrind"], out["commands"])
        st1 = tls_stat()
        out["tls_stat"][name] = {k: st1.get(k, 0) - st0.get(k, 0)
                                 for k in ("TlsTxSw", "TlsRxSw", "TlsDecryptError")}
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
    return 0


def latest_10k_result(cfg):
    """The newest committed bench/results/*-ktls-memory.md, verbatim."""
    d = f"{cfg.bench_dir}/results"
    files = sorted(f for f in os.listdir(d) if f.endswith("-ktls-memory.md"))
    if not files:
        return None
    with open(f"{d}/{files[-1]}") as f:
        return {"file": f"bench/results/{files[-1]}", "text": f.read().strip()}


def kernel_phase(cfg, res):
    k = res["kernel"]
    runk = "tests/kernel/run-kernel.sh"
    py = sys.executable
    if os.path.realpath(shutil.which("python3") or "") == os.path.realpath(py):
        py = "python3"   # the same interpreter, as a person would type it
    mem_cmd = [runk, "--kernel", "6.1", "--timeout", "1500", "--", py,
               "bench/ktls_memory.py", str(cfg.ktls_conns)]
    k["memory_cmd"] = " ".join(mem_cmd)
    r = subprocess.run(mem_cmd, cwd=cfg.repo, capture_output=True, text=True, timeout=1700,
                       env=dict(os.environ, RINGTLS_BIN=cfg.ringtls))
    k["memory_rc"] = r.returncode
    k["memory_out"] = [ln for ln in r.stdout.splitlines()
                       if ln.startswith("|") or ln.startswith("kernel ") or "SKIP" in ln]
    log(f"kernel 6.1 memory ({cfg.ktls_conns} connections): exit {r.returncode}")
    spec = f"{cfg.tmp}/kernel-spec.json"
    with open(spec, "w") as f:
        json.dump({"tmp": cfg.tmp, "cert": cfg.cert, "key": cfg.key, "shim": cfg.shim,
                   "h2o_openssl_conf": cfg.h2o_openssl_conf, "ringtls": cfg.ringtls,
                   "nginx": cfg.nginx, "wrk": cfg.wrk}, f)
    out = f"{cfg.tmp}/kernel-callgrind.json"
    cg_cmd = [runk, "--kernel", "6.1", "--mem", "1G", "--timeout", "1500", "--", py,
              "bench/bench.py", "--in-kernel", spec, out]
    k["callgrind_cmd"] = " ".join(cg_cmd)
    r = subprocess.run(cg_cmd, cwd=cfg.repo, capture_output=True, text=True, timeout=1700)
    k["callgrind_rc"] = r.returncode
    if r.returncode == 0 and os.path.exists(out):
        with open(out) as f:
            k.update(json.load(f))
    else:
        k["callgrind_log"] = (r.stdout + r.stderr)[-2000:]
    log(f"kernel 6.1 callgrind: exit {r.returncode}")
    k["latest_10k"] = latest_10k_result(cfg)


# ---------------------------------------------------------------- main

def versions(cfg):
    def first(argv):
        try:
            return S.run_text(argv).splitlines()[0]
        except (OSError, IndexError):
            return "?"
    rev = subprocess.run(["git", "-C", cfg.repo, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", cfg.repo, "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True).stdout
    import hashlib
    with open(cfg.ringtls, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:12]
    v = {"ringtls": f"{first([cfg.ringtls, '--version'])}, commit {rev}"
                    + (" (uncommitted changes)" if dirty.strip() else "")
                    + f"; binary {os.path.relpath(cfg.ringtls_src, cfg.repo)} "
                    f"(sha256 {sha}...), copied to the temp dir at start",
         "nginx": first([cfg.nginx, "-v"]), "wrk": first([cfg.wrk, "-v"]),
         "valgrind": first(["valgrind", "--version"]), "openssl": first(["openssl", "version"]),
         "gnuplot": first(["gnuplot", "--version"]), "python": sys.version.split()[0]}
    if cfg.h2o != "off" and cfg.static_wls:
        v["h2o"] = first([cfg.h2o, "--version"])
    if cfg.proxy_wls or cfg.tcp_wls:
        v["haproxy"] = first([cfg.haproxy, "-v"])
    return v


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    u = os.uname()
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_before": load,
            "kernel": f"{u.sysname} {u.release} {u.machine}"}


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def count_errors(res):
    errs = list(res["errors"])
    for wkey, per in res["timed"].items():
        for name, rounds in per.items():
            errs += [f"timed {wkey} {name}: {m['error']}" for m in rounds if m["error"]]
    for wkey, per in res["callgrind"].items():
        errs += [f"callgrind {wkey} {n}: {m['error']}" for n, m in per.items() if "error" in m]
    errs += [f"memory {n}: {m['error']}" for n, m in res["memory"].items() if "error" in m]
    for wkey, per in res["perf"].get("runs", {}).items():
        errs += [f"perf {wkey} {n}: {m['error']}" for n, m in per.items() if "error" in m]
    return errs


def cg_outdir(cfg, res):
    """bench/results/<name>-callgrind/ (the temp dir's cg-functions/ with
    NO_REPORT): one run's per-function summaries only."""
    outdir = (f"{cfg.tmp}/cg-functions" if cfg.no_report
              else f"{cfg.bench_dir}/results/{cfg.report_name}-callgrind")
    shutil.rmtree(outdir, ignore_errors=True)
    res["cg_dir"] = os.path.relpath(outdir, cfg.repo)
    return outdir


def run_phases(cfg, srvs, res):
    phases = [("check", lambda: check_phase(cfg, srvs, res)),
              ("timed", lambda: timed_phase(cfg, srvs, res))]
    # The phases after these measure the static servers: a run of proxy or
    # TCP-mode workloads alone (WORKLOADS=proxy, tcp) has none of them.
    if not cfg.static_wls:
        log(f"{' and '.join(cfg.groups)} workloads only: no perf, callgrind, memory or "
            "kernel phase")
    elif cfg.perf:
        phases.append(("perf", lambda: perf_phase(cfg, srvs, res)))
    if cfg.callgrind and cfg.static_wls:
        phases.append(("callgrind", lambda: callgrind_phase(
            cfg, srvs, cfg.workloads, res["callgrind"], res["cg_commands"],
            cg_outdir(cfg, res))))
    if cfg.idle_conns > 0 and cfg.static_wls:
        phases.append(("memory", lambda: memory_phase(cfg, srvs, res)))
    if not cfg.ktls and cfg.kernel != "0" and cfg.static_wls:
        phases.append(("kernel", lambda: kernel_phase(cfg, res)))
    for name, fn in phases:
        t0 = time.monotonic()
        log(f"== {name}")
        fn()
        res["meta"]["phase_s"][name] = round(time.monotonic() - t0)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--in-kernel":
        return in_kernel_main(sys.argv[2], sys.argv[3])
    if len(sys.argv) == 4 and sys.argv[1] == "--perf-run":
        return perf_main(sys.argv[2], sys.argv[3])
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = Config(os.environ)
    if (cfg.proxy_wls or cfg.tcp_wls) and not cfg.haproxy:
        raise SystemExit("bench: the proxy and TCP-mode workloads need haproxy "
                         "(apt-get install haproxy)")
    raise_nofile(4 * cfg.idle_conns + 4096)
    t0 = time.time()
    setup(cfg)
    res = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "machine": machine(), "versions": versions(cfg), "ktls": cfg.ktls,
                    "probe": cfg.probe, "command": cfg.command, "phase_s": {},
                    "settings": {k: getattr(cfg, k) for k in (
                        "duration", "rounds", "warmup", "server_cpu", "client_cpus",
                        "client_procs_max", "client_procs", "client_bound_pct", "perf_secs",
                        "idle_conns",
                        "cg_scale", "ktls_conns")}},
           "checks": {}, "checks_proxy": {}, "checks_tcp": {}, "clients": {}, "timed": {},
           "perf": {},
           "callgrind": {}, "memory": {}, "kernel": {},
           "commands": {}, "cg_commands": {}, "errors": []}
    res["meta"]["settings"]["proxy_keepalive"] = cfg.proxy_keepalive
    cfg.report_name = cfg.report_name or res["meta"]["date"][:10]
    srvs = make_servers(cfg, dict(os.environ))
    cfg.backend = S.Backend(cfg, dict(os.environ)) if cfg.proxy_wls else None
    cfg.upstream = S.EchoUpstream(cfg, dict(os.environ)) if cfg.tcp_wls else None
    try:
        if cfg.backend:
            cfg.backend.start()
            res["meta"]["backend"] = cfg.backend.started[0].display
        if cfg.upstream:
            cfg.upstream.start()
            res["meta"]["echo_upstream"] = cfg.upstream.started[0].display
        run_phases(cfg, srvs, res)
        res["meta"]["total_s"] = round(time.time() - t0)
        import report
        report.write(cfg, res, WORKLOADS, cfg.client_bound_pct)
    finally:
        stop_all(srvs)
        if cfg.backend:
            cfg.backend.stop()
        if cfg.upstream:
            cfg.upstream.stop()
        with open(f"{cfg.tmp}/results.json", "w") as f:
            json.dump(res, f, indent=1)
        if cfg.keep_tmp:
            log(f"bench: kept {cfg.tmp}")
        else:
            shutil.rmtree(cfg.tmp, ignore_errors=True)
    errs = count_errors(res)
    for e in errs:
        log(f"bench: {e}")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
