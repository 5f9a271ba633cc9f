"""bench/report.py: the markdown report and the gnuplot PNGs for bench.py.

Judging rule (the same for every workload with a target): the ratio of
median req/s, ringtls / nginx, unless wrk was the bottleneck, i.e. its
median CPU use reached CLIENT_BOUND percent of its core against either
server; then server CPU time per request (nginx / ringtls) decides, since
req/s then measures the client.

The reverse-proxy workloads (ProxyRow) are judged by server CPU time per
request only, peer / ringtls, against HAProxy and against nginx: their
backend shares the client CPUs with wrk, so req/s is the client side's.
The TCP-mode workload (TcpRow) the same way, by server CPU time per MB
echoed. Where the run had ringtls-epoll (PEERS; issue 18), BackendRow
judges it the same way against nginx, and gives its cost against ringtls
on io_uring.
"""
import json
import math
import os
import re
import statistics
import subprocess
import sys

EPOLL = "ringtls-epoll"   # ringtls on its epoll backend (issue 18)
SERVER_ORDER = ["ringtls", EPOLL, "nginx", "h2o"]
PROXY_ORDER = ["ringtls", "haproxy", "nginx"]   # the proxy workloads' servers
PROXY_PEERS = PROXY_ORDER[1:]
SATURATED = 85   # server CPU %, below which req/s did not use the whole core


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt(x, spec=",.0f", none="-"):
    return none if x is None else format(x, spec)


def ratio(a, b):
    return a / b if a and b else None


def median_interval(vals):
    """A distribution-free interval for the median of vals: the k-th
    smallest and k-th largest value, with the largest k for which the
    chance that the true median lies outside is at most 5% (binomial, p =
    1/2). Returns (low, high, coverage). With 5 values no k > 1 qualifies:
    the interval is the whole range, at 93.8% coverage; with 15 it is the
    4th to the 12th value, at 96.5%."""
    n = len(vals)
    xs = sorted(vals)

    def outside(k):   # P(median below x_(k) or above x_(n+1-k))
        return 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n

    k = 1
    while k + 1 <= (n + 1) // 2 and outside(k + 1) <= 0.05:
        k += 1
    return xs[k - 1], xs[n - k], 1 - outside(k)


def paired_ratios(rt_rounds, ng_rounds, key, invert):
    """The judged ratio round by round: round i of ringtls and of nginx ran
    within seconds of each other, so a slow spell of the shared machine
    hits both sides of a pair, while the ratio of the two medians can pair
    one server's fast rounds with the other's slow ones. Returns the
    per-round ratios, their median and an interval for that median
    (median_interval), or None with fewer than 3 complete pairs. The
    interval speaks for this run's rounds only: it does not cover how
    runs, or machines, differ."""
    vals = []
    for a, b in zip(rt_rounds, ng_rounds):
        if a["error"] or b["error"] or not a[key] or not b[key]:
            continue
        vals.append(b[key] / a[key] if invert else a[key] / b[key])
    if len(vals) < 3:
        return None
    low, high, cover = median_interval(vals)
    return {"ratios": vals, "median": statistics.median(vals),
            "interval": (low, high), "coverage": cover}


def paired_text(p):
    return (f"per-round pairs: median {p['median']:.2f}x, interval "
            f"{p['interval'][0]:.2f}-{p['interval'][1]:.2f}x "
            f"({100 * p['coverage']:.1f}% confidence) over {len(p['ratios'])} rounds")


class Cell:
    """Median values of one server on one workload (timed rounds)."""

    def __init__(self, rounds):
        self.rounds = rounds or []
        bad = [m["error"] for m in self.rounds if m["error"]]
        self.error = bad[0] if bad else (None if self.rounds else "not run")
        good = [m for m in self.rounds if not m["error"]]

        def med(key):
            vals = [m[key] for m in good if m[key] is not None]
            return statistics.median(vals) if vals and not self.error else None
        self.rps = med("rps")
        self.cpu_us = med("cpu_us_per_req")
        self.client = med("client_cpu_pct")
        self.server = med("server_cpu_pct")


class Row:
    """One workload: cells per server, ratios against nginx, verdict."""

    def __init__(self, wl, res, names, bound):
        self.wl = wl
        self.cells = {n: Cell(res["timed"].get(wl.key, {}).get(n)) for n in names}
        cg = res["callgrind"].get(wl.key, {})
        self.instr = {n: cg.get(n, {}).get("per_req") for n in names}
        rt, ng = self.cells["ringtls"], self.cells["nginx"]
        self.rps_ratio = ratio(rt.rps, ng.rps)
        self.cpu_ratio = ratio(ng.cpu_us, rt.cpu_us)
        self.instr_ratio = ratio(self.instr.get("nginx"), self.instr.get("ringtls"))
        self.client_bound = any(c.client is not None and c.client >= bound
                                for c in (rt, ng))
        # How many wrk processes (bench/clients.py); older runs had one.
        self.clients = res.get("clients", {}).get(wl.key) or {"k": 1}
        self.no_cpu_left = self.client_bound and self.clients["k"] >= self.clients.get("slots", 1)
        self.paired = paired_ratios(rt.rounds, ng.rounds,
                                    "cpu_us_per_req" if self.client_bound else "rps",
                                    invert=self.client_bound)
        self.verdict = self.judge()

    def basis(self):
        return self.cpu_ratio if self.client_bound else self.rps_ratio

    def judge(self):
        t = self.wl.target
        if t is None:
            return "-"
        basis = self.basis()
        if basis is None:
            who = [n for n, c in self.cells.items() if c.error and n in ("ringtls", "nginx")]
            return "NOT MEASURED (" + ", ".join(who) + " failed)"
        v = "MET" if basis >= t else f"MISSED, {100 * (1 - basis / t):.0f}% short"
        return f"{v} (by CPU/req: client-bound)" if self.client_bound else v

    def shortfall(self):
        """How far a missed target is, in the measure that judged it; None
        when it was met or not measured."""
        t, basis = self.wl.target, self.basis()
        if t is None or basis is None or basis >= t:
            return None
        rt, ng = self.cells["ringtls"], self.cells["nginx"]
        head = f"{basis:.2f}x against {t}x, {100 * (1 - basis / t):.0f}% short: "
        if self.client_bound:
            need = ng.cpu_us / t
            return head + (f"ringtls would need {need:.2f} µs of CPU per request instead of "
                           f"{rt.cpu_us:.2f} ({rt.cpu_us - need:.2f} µs, "
                           f"{100 * (1 - need / rt.cpu_us):.0f}% less)")
        need = t * ng.rps
        return head + (f"ringtls would need {need:,.0f} req/s instead of {rt.rps:,.0f} "
                       f"({100 * (need / rt.rps - 1):.0f}% more)")


class ProxyRow:
    """One proxy workload: each proxy's cells, and against each peer the
    ratio of server CPU per request (peer / ringtls) and its verdict."""
    subject = "ringtls"   # the server judged against the peers
    peers = PROXY_PEERS

    def __init__(self, wl, res):
        self.wl = wl
        timed = res["timed"].get(wl.key, {})
        self.cells = {n: Cell(timed.get(n)) for n in PROXY_ORDER}
        self.clients = res.get("clients", {}).get(wl.key) or {"k": 1}
        rt = self.cells["ringtls"]
        self.ratios = {p: ratio(self.cells[p].cpu_us, rt.cpu_us) for p in PROXY_PEERS}
        self.paired = {p: paired_ratios(rt.rounds, self.cells[p].rounds, "cpu_us_per_req",
                                        invert=True) for p in PROXY_PEERS}
        self.verdicts = {p: self.judge(p) for p in PROXY_PEERS}

        def med(n, f):
            c = self.cells[n]
            vals = [f(m) for m in c.rounds if not m["error"] and m.get("requests")]
            return statistics.median(vals) if vals and not c.error else None
        # upstream connections the proxy opened per 1000 responses; the
        # backend's CPU % of one core (it shares the client CPUs with wrk)
        self.conns_k = {n: med(n, lambda m: 1000 * m["upstream_conns"] / m["requests"])
                        for n in PROXY_ORDER}
        self.backend = {n: med(n, lambda m: m["backend_cpu_pct"]) for n in PROXY_ORDER}

    def target(self, peer):
        return self.wl.target

    def judge(self, peer):
        t, v = self.target(peer), self.ratios[peer]
        if t is None:
            return "-"
        if v is None:
            who = [n for n in (self.subject, peer) if self.cells[n].error]
            return "NOT MEASURED (" + ", ".join(who) + " failed)"
        return "MET" if v >= t else f"MISSED, {100 * (1 - v / t):.0f}% short"

    def shortfall(self, peer):
        t, v = self.target(peer), self.ratios[peer]
        if t is None or v is None or v >= t:
            return None
        rt, need = self.cells[self.subject].cpu_us, self.cells[peer].cpu_us / t
        return (f"{self.subject} would need {need:.2f} µs of CPU per request instead of "
                f"{rt:.2f} ({100 * (1 - need / rt):.0f}% less)")


class TcpRow(ProxyRow):
    """The TCP-mode workload (tcp-echo-1m): per proxy the median and range
    over the rounds of MB/s and of server CPU ms per MB echoed; against
    each peer the ratio of the medians of CPU per MB (peer / ringtls), the
    per-round pairs, and the verdict."""

    def __init__(self, wl, res):
        self.wl = wl
        timed = res["timed"].get(wl.key, {})
        self.cells = {n: Cell(timed.get(n)) for n in PROXY_ORDER}
        self.clients = res.get("clients", {}).get(wl.key) or {"k": 1}

        def stats(n, key):   # (median, low, high) over the rounds, or None
            c = self.cells[n]
            vals = [m[key] for m in c.rounds if not m["error"] and m.get(key) is not None]
            return (statistics.median(vals), min(vals), max(vals)) if vals and not c.error \
                else None
        self.mbps = {n: stats(n, "mbps") for n in PROXY_ORDER}
        self.cpu = {n: stats(n, "cpu_ms_per_mb") for n in PROXY_ORDER}
        self.server = {n: stats(n, "server_cpu_pct") for n in PROXY_ORDER}
        self.client = {n: stats(n, "client_cpu_pct") for n in PROXY_ORDER}
        self.upstream = {n: stats(n, "upstream_cpu_pct") for n in PROXY_ORDER}
        rt = self.cpu["ringtls"]
        self.ratios = {p: ratio(self.cpu[p] and self.cpu[p][0], rt and rt[0])
                       for p in PROXY_PEERS}
        self.paired = {p: paired_ratios(self.cells["ringtls"].rounds, self.cells[p].rounds,
                                        "cpu_ms_per_mb", invert=True) for p in PROXY_PEERS}
        self.verdicts = {p: self.judge(p) for p in PROXY_PEERS}

    def shortfall(self, peer):
        t, v = self.target(peer), self.ratios[peer]
        if t is None or v is None or v >= t:
            return None
        rt, need = self.cpu["ringtls"][0], self.cpu[peer][0] / t
        return (f"ringtls would need {need:.3f} ms of CPU per MB instead of {rt:.3f} "
                f"({100 * (1 - need / rt):.0f}% less)")


class BackendRow(ProxyRow):
    """One static workload of a run with ringtls-epoll (issue 18): ringtls
    on its epoll backend against nginx by server CPU per request (nginx /
    ringtls-epoll, target wl.epoll_target), and the fallback's cost: its
    CPU per request over ringtls's on io_uring (above 1: epoll costs more;
    no target)."""
    subject = EPOLL
    peers = ("nginx",)

    def __init__(self, wl, res):
        self.wl = wl
        timed = res["timed"].get(wl.key, {})
        self.cells = {n: Cell(timed.get(n)) for n in ("ringtls", EPOLL, "nginx")}
        ep, ng, rt = self.cells[EPOLL], self.cells["nginx"], self.cells["ringtls"]
        self.ratios = {"nginx": ratio(ng.cpu_us, ep.cpu_us)}
        self.paired = {"nginx": paired_ratios(ep.rounds, ng.rounds, "cpu_us_per_req",
                                              invert=True)}
        self.verdicts = {"nginx": self.judge("nginx")}
        self.cost = ratio(ep.cpu_us, rt.cpu_us)
        self.cost_paired = paired_ratios(rt.rounds, ep.rounds, "cpu_us_per_req", invert=True)

    def target(self, peer):
        return self.wl.epoll_target


def mbps(wl, rps):
    size = max(wl.body, wl.upload)
    return rps * size / 1e6 if rps and size >= 16384 else None


def x(r):
    return "-" if r is None else f"{r:.2f}x"


def table_main(rows, names, bound):
    hdr = ["workload"] + [f"{n} req/s" for n in names] + [
        "ringtls/nginx req/s", "nginx/ringtls CPU per req",
        "busiest wrk CPU % (ringtls / nginx)", "wrk processes", "target", "result"]
    out = ["| " + " | ".join(hdr) + " |", "|---" + "|---:" * (len(hdr) - 3) + "|---:|---|"]
    for r in rows:
        cells = []
        for n in names:
            c = r.cells[n]
            if c.error:
                cells.append("error")
            else:
                mb = mbps(r.wl, c.rps)
                cells.append(fmt(c.rps) + (f" ({mb:,.0f} MB/s)" if mb else ""))
        wrk = " / ".join(fmt(r.cells[n].client, ".0f") for n in ("ringtls", "nginx"))
        if r.client_bound:
            wrk = f"**{wrk}**"
        procs = str(r.clients["k"]) + (" (no free CPU)" if r.no_cpu_left else "")
        out.append("| " + " | ".join(
            [f"{r.wl.title}, -c{r.wl.conns}"] + cells
            + [x(r.rps_ratio), x(r.cpu_ratio), wrk, procs,
               f"{r.wl.target}x" if r.wl.target else "-", r.verdict]) + " |")
    return out


def table_costs(rows, names, kernel_cg):
    hdr = (["workload"] + [f"{n} CPU µs/req" for n in names]
           + [f"{n} instr/req" for n in names] + ["nginx/ringtls instr"])
    kn = [n for n in ("ringtls", "nginx") if any(
        kernel_cg.get(r.wl.key, {}).get(n, {}).get("per_req") for r in rows)]
    hdr += [f"{n} + kTLS instr/req (6.1, not a timing)" for n in kn]
    out = ["| " + " | ".join(hdr) + " |", "|---" + "|---:" * (len(hdr) - 1) + "|"]
    for r in rows:
        cells = [fmt(r.cells[n].cpu_us, ",.1f") for n in names]
        cells += [fmt(r.instr.get(n)) for n in names] + [x(r.instr_ratio)]
        cells += [fmt(kernel_cg.get(r.wl.key, {}).get(n, {}).get("per_req")) for n in kn]
        out.append("| " + " | ".join([r.wl.title] + cells) + " |")
    return out


def table_memory(res, names):
    out = ["| server | idle TLS connections | RSS before KiB | RSS after KiB | bytes/conn |",
           "|---|---:|---:|---:|---:|"]
    for n in names:
        m = res["memory"].get(n)
        if not m:
            continue
        if "error" in m:
            out.append(f"| {n} | error: {m['error']} | | | |")
        else:
            out.append(f"| {n} | {m['conns']:,} | {m['before_kib']:,} | {m['after_kib']:,} | "
                       f"{m['bytes_per_conn']:,} |")
    return out


def round_cell(m, wl):
    """One timed run, for "Every round"."""
    if m["error"]:
        return f"ERROR {m['error']}"
    pcts = "/".join(f"{p:.0f}" for p in m.get("client_cpu_pcts", [m["client_cpu_pct"]]))
    if wl.tcp:
        return (f"{m['mbps']:,.0f} MB/s, server {m['server_cpu_pct']:.0f}% "
                f"({m['cpu_ms_per_mb']:.3f} ms/MB), tls_echo {pcts}%, upstream "
                f"{m['upstream_cpu_pct']:.0f}%")
    return (f"{m['rps']:,.0f} req/s, server {m['server_cpu_pct']:.0f}% "
            f"({m['cpu_us_per_req']:,.1f} µs/req), wrk {pcts}%")


def rounds_list(rows, names):
    out = []
    for r in rows:
        for n in (PROXY_ORDER if r.wl.proxy or r.wl.tcp else names):
            ms = r.cells[n].rounds
            if ms:
                out.append(f"- {r.wl.key}, {n}: " + "; ".join(round_cell(m, r.wl) for m in ms))
    return out


def check_lines(res, names):
    out = []
    for n in names:
        c = res["checks"].get(n)
        if not c:
            continue
        out.append(f"- {n}: negotiated `{c['tls']}` (tickets port), `{c['full']}` "
                   "(no-resumption port)")
        for port, label in (("tls", "tickets port"), ("full", "no-resumption port")):
            h = c[f"{port}_handshakes"]
            err = f"; wrk: {h['error']}" if h["error"] else ""
            out.append(f"  - {label}: wrk -c4 -d1s `Connection: close`: {h['requests']} "
                       f"responses, {h['handshakes']} handshakes logged, {h['resumed']} "
                       f"resumed{err}")
    return out


def kernel_section(res, names):
    k = res["kernel"]
    if res["meta"]["ktls"]:
        return ["This host has kTLS: the numbers above already use it (ringtls `--ktls auto`, "
                "nginx `ssl_conf_command Options KTLS`)."]
    if not k:
        return ["This host has no kTLS, and the 6.1 kernel part was not run (KERNEL=0)."]
    out = ["Measured inside Linux 6.1 (User-Mode Linux, tests/kernel/run-kernel.sh), where kTLS "
           "exists. **Not a timing**: syscalls there are ~100x slower; only counts that do not "
           "depend on time are reported.", ""]
    out.append(f"Memory per idle TLS 1.3 connection, this run (`{k.get('memory_cmd')}`, "
               f"exit {k.get('memory_rc')}):")
    out += [""] + (k.get("memory_out") or ["(no output)"]) + [""]
    if k.get("latest_10k"):
        t = k["latest_10k"]
        body = [ln for ln in t["text"].splitlines() if ln.startswith("|") or
                ln.startswith("kernel ") or ln.startswith("Command")]
        out += [f"The latest 10,000-connection result, from `{t['file']}`:", ""] + body + [""]
    cg = k.get("callgrind")
    out.append(f"Userspace instructions per request with kTLS (`{k.get('callgrind_cmd')}`, "
               f"exit {k.get('callgrind_rc')}; same method as on the host):")
    out.append("")
    if not cg:
        out += ["```", k.get("callgrind_log", "(no output)"), "```"]
        return out
    out += ["| workload | ringtls + kTLS | nginx + kTLS | ringtls userspace TLS (host) | "
            "nginx userspace TLS (host) |", "|---|---:|---:|---:|---:|"]
    for wkey, per in cg.items():
        host = res["callgrind"].get(wkey, {})
        out.append(f"| {wkey} | " + " | ".join(
            [fmt(per.get(n, {}).get("per_req"), ",.0f", per.get(n, {}).get("error", "-")[:60])
             for n in ("ringtls", "nginx")]
            + [fmt(host.get(n, {}).get("per_req")) for n in ("ringtls", "nginx")]) + " |")
    ts = k.get("tls_stat", {})
    out += ["", "/proc/net/tls_stat during those runs (connections whose records the kernel "
            "made): " + "; ".join(f"{n}: TX {v['TlsTxSw']}, RX {v['TlsRxSw']}, decrypt errors "
                                  f"{v['TlsDecryptError']}" for n, v in ts.items())]
    return out


def commands(res, cfg, rows):
    out = ["```", f"{res['meta']['command']}   # the whole run", "",
           "# timed servers (nginx: bench/nginx.conf.in; h2o: bench/h2o.conf.in; proxies: "
           "bench/nginx-proxy.conf.in, bench/haproxy.cfg.in; TCP mode: bench/nginx-tcp.conf.in, "
           "bench/haproxy-tcp.cfg.in; filled in by bench/servers.py)"]
    for n, argvs in res["commands"].items():
        out += argvs
    if res["meta"].get("backend"):
        out += ["", "# the proxies' backend (bench/nginx-backend.conf.in), on the client CPUs; "
                "its /bench-status (stub_status) read before and after each proxy run",
                res["meta"]["backend"]]
    if res["meta"].get("echo_upstream"):
        out += ["", "# the TCP-mode upstream (bench/echo_upstream.c, built into the temp dir), "
                "on the client CPUs", res["meta"]["echo_upstream"]]
    out += ["", "# timed clients: per workload, its wrk processes (TCP mode: tls_echo, built "
            "from bench/tls_echo.c) at once ('&'), each pinned; server CPU from /proc/PID/stat "
            "(utime+stime) before and after, the client's CPU from each process's rusage"]
    seen = set()
    for r in rows:
        for n, c in r.cells.items():
            if c.rounds and c.rounds[-1]["wrk"]:
                cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", c.rounds[-1]["wrk"])
                cmd = re.sub(r"tls_echo -p \d+", "tls_echo -p PORT", cmd)
                if cmd not in seen:
                    seen.add(cmd)
                    out.append(cmd)
    if res["cg_commands"]:
        out += ["", "# instruction counts: servers under callgrind (ringtls with "
                "LD_PRELOAD=openat2_shim.so, see bench/openat2_shim.c)"]
        for n, argvs in res["cg_commands"].items():
            out += argvs
        out += ["# per workload and server: a warm-up batch, then for n1 and n2 requests:",
                "callgrind_control -z PID; BENCH_REQUESTS=n taskset -c "
                f"{(res['meta']['settings'].get('client_cpus') or [1])[0]} wrk -t1 -c1 "
                "-s bench/fixed_count.lua URL; callgrind_control -d PID   # 'summary:' line",
                "# instructions/request = (Ir(n2) - Ir(n1)) / (n2 - n1)"]
    if res["memory"]:
        out += ["", f"# idle connections: the timed servers' command lines, fresh; "
                f"bench/ktls_memory.py's open_conns() for 200 then {cfg.idle_conns} "
                "connections; VmRSS of the server process before and after"]
    k = res["kernel"]
    if k:
        out += ["", "# inside Linux 6.1 (not timings)", k.get("memory_cmd", ""),
                k.get("callgrind_cmd", "")] + sum(k.get("commands", {}).values(), [])
    out.append("```")
    return out


def clients_line(rows, res, bound):
    """How many wrk processes each workload used, and why not more."""
    parts = []
    for r in rows:
        rec = r.clients
        if r.no_cpu_left:
            why = "still client-bound: no free client CPU was left"
        elif r.client_bound:
            why = "still client-bound: " + rec.get("timed", {}).get("end", "?")
        else:
            why = "not client-bound"
        steps = rec.get("steps") or []
        if len(steps) > 1:
            why += "; warm-up: " + ", ".join(
                f"{st['k']} -> busiest {max(p for v in st['cpu_pct'].values() for p in v):.0f}%"
                for st in steps)
        parts.append(f"{r.wl.key} {rec['k']} ({why})")
    cpus = res["meta"]["settings"].get("client_cpus")
    if cpus is None:
        return "Client processes: one wrk process per run (this run predates more)."
    return ("Client processes (bench/clients.py): the warm-up starts each workload with one "
            "wrk process and adds one while, against some server, the busiest wrk process "
            f"used {bound:.0f}% or more of its core and a client "
            f"CPU (CLIENT_CPUS: {','.join(map(str, cpus))}) has no wrk process yet; that "
            "count then runs against every server in every round, connections split between "
            "the processes. Per workload: " + "; ".join(parts) + ".")


def perf_runs(res, key, peer="nginx"):
    """ringtls's and the peer's perf results for a workload, or None."""
    per = (res.get("perf") or {}).get("runs", {}).get(key, {})
    rt, ng = per.get("ringtls"), per.get(peer)
    if not rt or not ng or "error" in rt or "error" in ng:
        return None
    return rt, ng


def kernel_us(m):
    return m["dso"]["kernel"]["us"]


def perf_bound(res, r):
    """One line for a missed target: the split of each server's time, and
    the ratio ringtls could reach at its measured kernel cost."""
    pr = perf_runs(res, r.wl.key)
    if not pr:
        return None
    rt, ng = pr
    k = kernel_us(rt)
    return (f"ringtls {rt['us_per_req']:.2f} µs/request, {k:.2f} of it in the kernel "
            f"({rt['dso']['kernel']['share']:.0f}%); nginx {ng['us_per_req']:.2f} "
            f"({kernel_us(ng):.2f} kernel). With no userspace time at all, ringtls at its "
            f"kernel cost would reach {ng['us_per_req'] / k:.2f}x against nginx "
            f"(target {r.wl.target}x)." if k else None)


def perf_tables(per, names):
    cols = ["kernel", "libcrypto", "libssl", "libc", "server binary", "other"]
    out = ["| server | µs/req (perf) | µs/req (/proc) | " + " | ".join(cols)
           + " | TCP segments/req in / out |", "|---" + "|---:" * (len(cols) + 3) + "|"]
    for n in names:
        m = per[n]
        out.append(f"| {n} | {m['us_per_req']:.2f} | {fmt(m['cpu_us_per_req_proc'], '.2f')} | "
                   + " | ".join(f"{m['dso'][c]['us']:.2f} ({m['dso'][c]['share']:.0f}%)"
                                for c in cols)
                   + f" | {m['segs_in_per_req']:.3f} / {m['segs_out_per_req']:.3f} |")
    out += ["", "| where (kernel rows: inclusive; \"self\": own time only) | "
            + " | ".join(f"{n} µs/req | {n} %" for n in names) + " |",
            "|---" + "|---:" * (2 * len(names)) + "|"]
    for label in per[names[0]]["buckets"]:
        cells = [per[n]["buckets"][label] for n in names]
        if any(c["share"] >= 0.05 for c in cells):
            out.append(f"| {label} | " + " | ".join(f"{c['us']:.3f} | {c['share']:.1f}"
                                                    for c in cells) + " |")
    out += ["", "| # | " + " | ".join(f"{n}: self symbol (DSO) | % | µs/req" for n in names)
            + " |", "|---:" + "|---|---:|---:" * len(names) + "|"]
    for i in range(max(len(per[n]["top"]) for n in names)):
        cells = []
        for n in names:
            t = per[n]["top"]
            cells += ([f"`{t[i]['sym']}` ({t[i]['dso']})", f"{t[i]['share']:.1f}",
                       f"{t[i]['us']:.3f}"] if i < len(t) else ["", "", ""])
        out.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return out


def perf_reading(rt, ng, target, peer="nginx"):
    """The computed reading of one workload against one peer: totals,
    kernel against userspace, segments per request, and the bound they
    set."""
    k, k2 = kernel_us(rt), kernel_us(ng)
    u, u2 = rt["us_per_req"] - k, ng["us_per_req"] - k2
    text = (f"Reading ({peer}): ringtls {rt['us_per_req']:.2f} µs per request, {peer} "
            f"{ng['us_per_req']:.2f} ({peer}/ringtls {ng['us_per_req'] / rt['us_per_req']:.2f}x). "
            f"Kernel: ringtls {k:.2f} ({rt['dso']['kernel']['share']:.0f}%), {peer} {k2:.2f} "
            f"({ng['dso']['kernel']['share']:.0f}%); userspace: ringtls {u:.2f}, {peer} {u2:.2f}. "
            f"{peer} - ringtls: {k2 - k:+.2f} µs in the kernel, {u2 - u:+.2f} µs in userspace.")
    si, so = (rt["segs_in_per_req"], ng["segs_in_per_req"]), (rt["segs_out_per_req"],
                                                              ng["segs_out_per_req"])
    if all(abs(a - b) <= 0.02 * max(a, b, 1e-9) for a, b in (si, so)):
        text += (f" Both cause {si[0]:.3f} TCP segments per request in and {so[0]:.3f} out "
                 f"({peer}: " + f"{si[1]:.3f} / {so[1]:.3f}): the kernel's TCP work per request "
                 "is the same for both.")
    else:
        text += (f" TCP segments per request differ: ringtls {si[0]:.3f} in / {so[0]:.3f} out, "
                 f"{peer} {si[1]:.3f} / {so[1]:.3f}.")
    if k:
        text += (f" With no userspace time at all, ringtls at this kernel cost would reach "
                 f"{ng['us_per_req'] / k:.2f}x" + (f" (target {target}x)." if target and
                                                   peer == "nginx" else "."))
    return text


def perf_section(res, rows):
    p = res.get("perf")
    if not p:
        return ["Not run (PERF=0, or a run from before the perf phase)."]
    if p.get("skipped"):
        return [f"Skipped: {p['skipped']}."]
    out = ["Each server (one worker, pinned as above) under `perf record -e cpu-clock -F 2000 -g "
           "-p PID` while wrk loads it as in the timed rounds (same number of wrk processes): "
           "perf starts a second before wrk and stops after it, and the server is idle "
           "outside wrk's run, so µs/request = samples x period (0.5 ms of CPU) / wrk's "
           "requests; the /proc column is the same run's utime+stime per request, a check. "
           "By DSO: where each sample's own (leaf) frame was. Kernel rows of the second table "
           "are inclusive (a sample counts in every row a frame of its kernel call chain "
           "matches, so rows overlap; \"- \" rows are parts of the row above); userspace "
           "call chains are unreliable (no frame pointers in OpenSSL, libc, nginx), so "
           "userspace rows are self time. On loopback the receiving socket's TCP processing "
           "(net_rx_action -> process_backlog -> tcp_v4_rcv) runs in the sender's context: "
           "the server's samples include wrk's receiving of each response, wrk's include "
           "the server's receiving of each request. TCP segments per request: TcpInSegs and "
           "TcpOutSegs (nstat's counters, read from /proc/net/snmp) over wrk's run, divided "
           "by its requests; both ends of loopback count, so a request and its response, one "
           "segment each, read as 2 in and 2 out. "
           + ("This phase ran in a network namespace of its own (`unshare -n`): the counters "
              "saw its traffic only." if p.get("netns") else
              "This phase ran in the host's network namespace: the counters include any other "
              "traffic on the machine."), ""]
    targets = {r.wl.key: r.wl.target for r in rows}
    titles = {r.wl.key: r.wl.title for r in rows}
    for key, per in p.get("runs", {}).items():
        names = [n for n in ("ringtls", "nginx", "h2o") if n in per and "error" not in per[n]]
        k = next((m.get("client_procs") for m in per.values() if "client_procs" in m), "?")
        out += [f"### {titles.get(key, key)} ({k} wrk process(es))", ""]
        out += [f"- {n}: ERROR {m['error']}" for n, m in per.items() if "error" in m]
        if not names:
            continue
        out += perf_tables(per, names) + [""]
        for peer in ("nginx", "h2o"):
            pr = perf_runs(res, key, peer)
            if pr:
                out += [perf_reading(pr[0], pr[1], targets.get(key), peer), ""]
    if p.get("dir"):
        files = sorted({m["file"] for per in p.get("runs", {}).values() for m in per.values()
                        if "file" in m})
        out += [f"perf's own summaries (`perf report --stdio`, self and inclusive) of each "
                f"recording: `{p['dir']}/` (" + ", ".join(os.path.basename(f) for f in files)
                + ")."]
    return out


PROFILE_DSOS = [("kernel", "kernel"), ("libcrypto", "libcrypto"), ("libssl", "libssl"),
                ("libc", "libc"), ("server binary", "binary"), ("other", "other")]


def profile_summary(res, rows, names):
    """Issue 20's profile, per workload: perf's µs per request by DSO, the
    instructions per request (callgrind) and each server's top 5 self-cost
    symbols by perf and by callgrind. The long forms are in the sections
    below and in bench/results/<name>-perf/ and -callgrind/."""
    runs = (res.get("perf") or {}).get("runs", {})
    out = []
    for r in rows:
        per, cg = runs.get(r.wl.key, {}), res["callgrind"].get(r.wl.key, {})
        here = [n for n in names if ("error" not in per.get(n, {"error": 1}))
                or "per_req" in cg.get(n, {})]
        if not here:
            continue
        unit = "handshake" if r.wl.close else "request"
        out += [f"### {r.wl.title}", "",
                f"| server | µs/{unit} (perf) | " + " | ".join(c for _, c in PROFILE_DSOS)
                + f" | instructions/{unit} (callgrind) |",
                "|---" + "|---:" * (len(PROFILE_DSOS) + 2) + "|"]
        for n in here:
            m, c = per.get(n, {}), cg.get(n, {})
            cells = ([f"{m['us_per_req']:.2f}"] + [f"{m['dso'][d]['us']:.2f}" for d, _ in
                                                   PROFILE_DSOS] if "dso" in m else
                     ["-"] * (len(PROFILE_DSOS) + 1))
            out.append(f"| {n} | " + " | ".join(cells) + f" | {fmt(c.get('per_req'))} |")
        out += ["", "| server | top 5 self-cost symbols, perf (% of its samples) | top 5 "
                f"functions, callgrind (instructions/{unit}) |", "|---|---|---|"]
        for n in here:
            m, f = per.get(n, {}), cg.get(n, {}).get("functions", {})
            ptop = "; ".join(f"`{t['sym']}` {t['dso']} {t['share']:.1f}%"
                             for t in m.get("top", [])[:5]) or "-"
            ctop = "; ".join(f"`{t['fn']}` {t['obj']} {t['ir']:,}"
                             for t in f.get("top", [])[:5]) or f.get("error", "-")
            out.append(f"| {n} | {ptop} | {ctop} |")
        out.append("")
    return out


def cg_section(res, rows, names):
    """Where the instructions go: callgrind per request by object and
    bucket, from the two batches' difference function by function."""
    out = []
    for r in rows:
        cg = res["callgrind"].get(r.wl.key, {})
        here = [n for n in names if "total" in cg.get(n, {}).get("functions", {})]
        if not here:
            continue
        f0 = cg[here[0]]["functions"]
        dsos, buckets = list(f0["dso"]), list(f0["buckets"])
        out += [f"### {r.wl.title}", "",
                "| server | instructions/req | " + " | ".join(dsos + buckets) + " |",
                "|---" + "|---:" * (len(dsos) + len(buckets) + 1) + "|"]
        for n in here:
            f = cg[n]["functions"]
            out.append(f"| {n} | {f['total']:,} | " + " | ".join(
                f"{f[k][c]['ir']:,} ({f[k][c]['share'] or 0:.0f}%)" for k, cs in
                (("dso", dsos), ("buckets", buckets)) for c in cs) + " |")
        out.append("")
    if res.get("cg_dir"):
        out += ["Per server and workload, the top functions per request (perfphase.CG_TOP) and "
                f"callgrind_annotate's own list: `{res['cg_dir']}/` (<workload>-<server>.txt; "
                "no callgrind.out files). Per request = (function's Ir in the n2 batch - in "
                "the n1 batch) / (n2 - n1); glibc's mem* count `rep movsb` once per byte "
                "(the CPU: once), so their share is mostly bytes copied."]
    return out


# ---------------------------------------------------------------- plots

def dat(v):
    return "?" if v is None else f"{v:.6g}"


def gnuplot(script, path):
    with open(path, "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"gnuplot {path}: {r.stderr.strip()[-500:]}")


HIST = """set terminal pngcairo size {w},{h} font ",10"
set output "{png}"
set datafile missing "?"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set xtics rotate by -25 nomirror
"""


def plot_ratios(rows, tmp, png, date):
    with open(f"{tmp}/ratios.dat", "w") as f:
        for r in rows:
            f.write(f"{r.wl.key} {dat(r.rps_ratio)} {dat(r.cpu_ratio)} {dat(r.instr_ratio)} "
                    f"{dat(r.wl.target)}\n")
    gnuplot(HIST.format(w=1000, h=520, png=png) + f"""
set title "ringtls against nginx, {date} (above 1: ringtls ahead)"
set logscale y 2
set ylabel "ratio (log scale)"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "gray30"
plot "{tmp}/ratios.dat" using 2:xtic(1) title "req/s, ringtls / nginx" lc rgb "#2b6cb0", \\
     "" using 3 title "CPU time per request, nginx / ringtls" lc rgb "#38a169", \\
     "" using 4 title "userspace instructions per request, nginx / ringtls" lc rgb "#d69e2e", \\
     "" using 0:5 with points pt 7 ps 1.6 lc rgb "black" title "target (issues 3 and 6)"
""", f"{tmp}/ratios.gp")


def plot_costs(rows, names, kernel_cg, tmp, png, date):
    """Server CPU and userspace instructions per request, one panel each
    (a panel with no data, e.g. CALLGRIND=0, is left out)."""
    kn = [n for n in ("ringtls", "nginx") if any(
        kernel_cg.get(r.wl.key, {}).get(n, {}).get("per_req") for r in rows)]
    cols = [(n, lambda r, n=n: r.cells[n].cpu_us, 0) for n in names]
    cols += [(n, lambda r, n=n: r.instr.get(n), 1) for n in names]
    cols += [(f"{n} + kTLS (Linux 6.1, not a timing)",
              lambda r, n=n: kernel_cg.get(r.wl.key, {}).get(n, {}).get("per_req"), 1)
             for n in kn]
    colors = {"ringtls": "#2b6cb0", "nginx": "#38a169", "h2o": "#a0aec0"}
    with open(f"{tmp}/costs.dat", "w") as f:
        for r in rows:
            f.write(r.wl.key + " " + " ".join(dat(get(r)) for _, get, _ in cols) + "\n")
    panels = []
    for panel, ylabel in ((0, "server CPU µs per request"),
                          (1, "userspace instructions per request")):
        series = [(i + 2, title) for i, (title, get, p) in enumerate(cols)
                  if p == panel and any(get(r) for r in rows)]
        if not series:
            continue
        lines = []
        for k, (col, title) in enumerate(series):
            src = f'"{tmp}/costs.dat"' if k == 0 else '""'
            xtic = ":xtic(1)" if k == 0 else ""
            color = colors.get(title) or ("#90cdf4" if title.startswith("ringtls") else "#9ae6b4")
            lines.append(f'{src} using {col}{xtic} title "{title}" lc rgb "{color}"')
        panels.append(f'set ylabel "{ylabel}"\nplot ' + ", ".join(lines))
    if not panels:
        return False
    gnuplot(HIST.format(w=1200, h=450 * len(panels), png=png) + f"""
set multiplot layout {len(panels)},1 title "Cost per request, {date} (log scale; lower is better)"
set logscale y 10
""" + "\n".join(panels) + "\nunset multiplot\n", f"{tmp}/costs.gp")
    return True


def memory_rows(res):
    rows = [(f"{n} (host, userspace TLS)", m["bytes_per_conn"])
            for n, m in res["memory"].items() if "bytes_per_conn" in m]
    for ln in res["kernel"].get("memory_out") or []:
        m = re.match(r"\| (\S+) \| (\d+) \|", ln)
        if m:
            rows.append((f"{m.group(1)} (Linux 6.1)", int(m.group(2))))
    return rows


def plot_memory(res, tmp, png, date):
    rows = memory_rows(res)
    if not rows:
        return False
    with open(f"{tmp}/memory.dat", "w") as f:
        for label, v in rows:
            f.write(f"\"{label}\" {v}\n")
    gnuplot(HIST.format(w=900, h=480, png=png) + f"""
set title "Server memory per idle TLS 1.3 connection, {date}"
set ylabel "bytes per connection (RSS growth / connections)"
set yrange [0:*]
set key off
plot "{tmp}/memory.dat" using 2:xtic(1) lc rgb "#2b6cb0", \\
     "" using 0:2:(sprintf("%d", $2)) with labels offset 0,0.8 notitle
""", f"{tmp}/memory.gp")
    return True


# --------------------------------------------------------------- report

def resumption_line(res, names):
    """What fraction of wrk's handshakes each server resumed (check phase)."""
    parts = []
    for n in names:
        h = res["checks"].get(n, {}).get("tls_handshakes")
        if h and h["handshakes"]:
            parts.append(f"{n} {100 * h['resumed'] / h['handshakes']:.0f}%")
    if not parts:
        return None
    return ("Resumed handshakes (hs-resumed): wrk keeps each connection's TLS session and "
            "offers it on the next connection (OpenSSL's client uses a TLS 1.3 ticket once), "
            "so a server that sends no new ticket after a resumed handshake gets every other "
            "handshake full. Resumed share in the check run: " + ", ".join(parts) + ".")


CRYPTO_TARGET = 1.8  # a full handshake's CPU / its crypto in isolation, at most (issue 20)


def crypto_lines(res, names):
    """Each server's full handshake against its crypto measured in
    isolation in the same round (bench.crypto_round): per-round ratio of
    server CPU per handshake to the crypto's µs, median and interval."""
    rounds = res.get("crypto") or []
    timed = res.get("timed", {}).get("hs-full", {})
    if not rounds or not timed:
        return []
    failed = [c["error"] for c in rounds if "error" in c]
    us = [c["us"] for c in rounds if "error" not in c]
    if not us:
        return ["Full handshakes against their crypto in isolation: openssl speed failed in "
                "every round (" + "; ".join(failed) + ")."]
    cmd = next(c["command"] for c in rounds if "error" not in c)
    out = [f"Full handshakes against their crypto in isolation (`{cmd}` once "
           f"per round, on the server's CPU; one ECDSA P-256 signature and two X25519 "
           f"operations: median {statistics.median(us):.1f} µs over {len(us)} round(s)"
           + (", failed in " + "; ".join(failed) if failed else "")
           + "): server CPU per handshake / that, per round, median (interval):"]
    for n in names:
        vals = [m["cpu_us_per_req"] / c["us"] for m, c in zip(timed.get(n, []), rounds)
                if "error" not in c and not m.get("error") and m.get("cpu_us_per_req")]
        if len(vals) < 3:
            continue
        low, high, cover = median_interval(vals)
        v = statistics.median(vals)
        verdict = (f"; target at most {CRYPTO_TARGET}x: "
                   + ("MET" if high <= CRYPTO_TARGET else "not shown")) if n == "ringtls" else ""
        out.append(f"- {n}: {v:.2f}x ({low:.2f}-{high:.2f}, {100 * cover:.1f}%){verdict}")
    return out


CPU_TARGET = 0.75   # ringtls CPU per request / nginx's, at most (issue #6)
MEMORY_TARGET = 0.5  # ringtls RSS per idle TLS connection / nginx's, at most


def verdict_at_most(value, target):
    if value is None:
        return "not measured"
    if value <= target:
        return "MET"
    return f"MISSED, {100 * (value / target - 1):.0f}% over"


def cpu_target_lines(rows):
    """Server CPU per request, ringtls / nginx, per workload (target <= 0.75)."""
    parts = []
    for r in rows:
        rt, ng = r.cells["ringtls"].cpu_us, r.cells["nginx"].cpu_us
        v = rt / ng if rt and ng else None
        parts.append(f"{r.wl.key} {v:.2f}x {verdict_at_most(v, CPU_TARGET)}" if v is not None
                     else f"{r.wl.key} not measured")
    return [f"- server CPU per request, ringtls / nginx (target at most {CPU_TARGET}x): "
            + "; ".join(parts)]


def memory_target_lines(res):
    """RSS per idle TLS connection, ringtls / nginx (target <= 0.5): on this
    host (userspace TLS for both) and inside Linux 6.1 with kTLS."""
    out = []
    host = res.get("memory", {})
    rt, ng = (host.get(n, {}).get("bytes_per_conn") for n in ("ringtls", "nginx"))
    if rt and ng:
        out.append(f"- RSS per idle TLS connection, ringtls / nginx (target at most "
                   f"{MEMORY_TARGET}x), this host, userspace TLS for both: {rt:,} / {ng:,} "
                   f"bytes = {rt / ng:.2f}x, {verdict_at_most(rt / ng, MEMORY_TARGET)}")
    k = {}
    for ln in res.get("kernel", {}).get("memory_out") or []:
        m = re.match(r"\| (\S+) \| (\d+) \|", ln)
        if m:
            k[m.group(1)] = int(m.group(2))
    if k.get("ringtls-ktls") and k.get("nginx-ktls"):
        v = k["ringtls-ktls"] / k["nginx-ktls"]
        out.append(f"  - inside Linux 6.1, both with kTLS (memory, not a timing): "
                   f"{k['ringtls-ktls']:,} / {k['nginx-ktls']:,} bytes = {v:.2f}x, "
                   f"{verdict_at_most(v, MEMORY_TARGET)}")
    return out


def summary_lines(rows, bound, res, names):
    out = []
    for r in rows:
        if r.wl.target is None:
            continue
        basis = "CPU time per request" if r.client_bound else "req/s"
        out.append(f"- {r.wl.title}: {r.verdict} (target {r.wl.target}x; req/s ratio "
                   f"{x(r.rps_ratio)}, CPU/request ratio {x(r.cpu_ratio)}, instructions "
                   f"ratio {x(r.instr_ratio)}; judged by {basis})")
        if r.paired and not r.verdict.startswith("NOT MEASURED"):
            out.append(f"  - {paired_text(r.paired)} (not the verdict: it pairs each "
                       "round's two runs)")
        if r.shortfall():
            out.append(f"  - missed by: {r.shortfall()}")
            where = perf_bound(res, r)
            if where:
                out.append(f"  - where the time goes (perf, below): {where}")
    out += cpu_target_lines(rows) + memory_target_lines(res)
    bound_rows = [r.wl.key for r in rows if r.client_bound]
    idle = []
    for r in rows:
        low = [f"{n} {r.cells[n].server:.0f}%" for n in ("ringtls", "nginx")
               if r.cells[n].server is not None and r.cells[n].server < SATURATED]
        if low and not r.client_bound:
            idle.append(f"{r.wl.key} ({', '.join(low)})")
    out.append("")
    out.append(f"Client check: wrk's CPU is its utime+stime (rusage at exit, the counters "
               f"/proc/PID/stat shows) over the wall time of the run, on its own core. At or "
               f"above {bound:.0f}% against ringtls or nginx the workload is client-bound "
               f"(bold in the table): " + (", ".join(bound_rows) or "none") + ". There req/s "
               "measures wrk, and CPU time and instructions per request are the comparison.")
    out += ["", clients_line(rows, res, bound)]
    res_line = resumption_line(res, names)
    if res_line:
        out += ["", res_line]
    crypto = crypto_lines(res, names)
    if crypto:
        out += [""] + crypto
    if idle:
        out += ["", f"Neither side saturated (server below {SATURATED}% of its core, wrk below "
                f"{bound:.0f}%): " + ", ".join(idle) + ". There the shared machine (other "
                "processes on both cores) held both back, and req/s carries that noise; CPU "
                "time and instructions per request do not depend on it."]
    return out


def peer_summary_lines(prows, per="request"):
    """The targets of ProxyRows (TcpRows, BackendRows): r.subject against
    each of r.peers, by server CPU time per request (per MB)."""
    out = []
    for r in prows:
        t = r.target(r.peers[0])
        if t is None:
            continue
        out.append(f"- {r.wl.title}: " + "; ".join(
            f"against {p} {r.verdicts[p]}" + (f" ({x(r.ratios[p])})" if r.ratios[p] else "")
            for p in r.peers)
            + f" (target {t}x: the peer's server CPU time per {per} / {r.subject}'s)")
        for p in r.peers:
            if r.paired[p] and r.ratios[p] is not None:
                out.append(f"  - {p}: {paired_text(r.paired[p])}")
            if r.shortfall(p):
                out.append(f"  - missed against {p} by: {r.shortfall(p)}")
    return out


def table_proxy(prows):
    hdr = (["workload"] + [f"{n} CPU µs/req" for n in PROXY_ORDER]
           + [f"{p}/ringtls CPU per req" for p in PROXY_PEERS]
           + ["target"] + [f"against {p}" for p in PROXY_PEERS])
    out = ["| " + " | ".join(hdr) + " |", "|---" + "|---:" * (len(hdr) - 3) + "|---|---|"]
    for r in prows:
        cells = ["error" if r.cells[n].error else fmt(r.cells[n].cpu_us, ",.1f")
                 for n in PROXY_ORDER]
        out.append("| " + " | ".join(
            [f"{r.wl.title}, -c{r.wl.conns}"] + cells + [x(r.ratios[p]) for p in PROXY_PEERS]
            + [f"{r.wl.target}x" if r.wl.target else "-"]
            + [r.verdicts[p] for p in PROXY_PEERS]) + " |")
    out += ["", "| workload | server | req/s | server CPU % | busiest wrk CPU % | "
            "backend CPU % | upstream connections per 1000 requests | wrk processes |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in prows:
        for n in PROXY_ORDER:
            c = r.cells[n]
            if c.error:
                out.append(f"| {r.wl.key} | {n} | error: {c.error[:200]} | | | | | |")
                continue
            mb = mbps(r.wl, c.rps)
            out.append(f"| {r.wl.key} | {n} | {fmt(c.rps)}" + (f" ({mb:,.0f} MB/s)" if mb else "")
                       + f" | {fmt(c.server, '.0f')} | {fmt(c.client, '.0f')} | "
                       f"{fmt(r.backend[n], '.0f')} | {fmt(r.conns_k[n], ',.1f')} | "
                       f"{r.clients['k']} |")
    return out


def paired_cell(p):
    """'median (min-max)' of per-round ratios, for a table."""
    return f"{p['median']:.2f}x ({min(p['ratios']):.2f}-{max(p['ratios']):.2f})" if p else "-"


def table_backends(brows):
    hdr = ["workload", "ringtls (io_uring) CPU µs/req", f"{EPOLL} CPU µs/req",
           "nginx CPU µs/req", f"nginx/{EPOLL} CPU per req", "per round", "target", "result",
           "epoll/io_uring CPU per req (the fallback's cost)", "per round"]
    out = ["| " + " | ".join(hdr) + " |", "|---" + "|---:" * 6 + "|---|---:|---:|"]
    for r in brows:
        cells = ["error" if r.cells[n].error else fmt(r.cells[n].cpu_us, ",.2f")
                 for n in ("ringtls", EPOLL, "nginx")]
        t = r.target("nginx")
        out.append("| " + " | ".join(
            [f"{r.wl.title}, -c{r.wl.conns}"] + cells
            + [x(r.ratios["nginx"]), paired_cell(r.paired["nginx"]), f"{t}x" if t else "-",
               r.verdicts["nginx"], x(r.cost), paired_cell(r.cost_paired)]) + " |")
    return out


def backends_section(res, brows):
    s = res["meta"]["settings"]
    return table_backends(brows) + [
        "", f"ringtls and {EPOLL} are the same binary with the same flags, `--backend "
        f"io_uring` and `--backend epoll` (each one's start line checked to name its backend), "
        f"timed in the same interleaved rounds as nginx: median of {s['rounds']} round(s) of "
        f"{s['duration']} s. Server CPU per request as above (/proc/PID/stat utime+stime / "
        f"responses). nginx/{EPOLL} above 1: the epoll backend is cheaper than nginx (target "
        f"where given, issue 18). epoll/io_uring above 1: what falling back to epoll costs per "
        "request against io_uring (its inverse is io_uring's advantage). \"per round\": the "
        "ratio of round i's two runs, seconds apart; median (min-max)."]


def span(st, spec):
    """'median (low-high)' of a TcpRow statistic."""
    if st is None:
        return "-"
    return f"{format(st[0], spec)} ({format(st[1], spec)}-{format(st[2], spec)})"


def table_tcp(trows):
    hdr = ["workload", "server", "MB/s", "server CPU ms/MB", "peer/ringtls CPU per MB",
           "per-round ratio", "server CPU %", "busiest tls_echo CPU %", "upstream CPU %",
           "tls_echo processes", "target", "result"]
    out = ["| " + " | ".join(hdr) + " |", "|---|---" + "|---:" * 9 + "|---|"]
    for r in trows:
        for n in PROXY_ORDER:
            c = r.cells[n]
            if c.error:
                out.append(f"| {r.wl.key} | {n} | error: {c.error[:200]} |" + " |" * 9)
                continue
            peer = n in PROXY_PEERS
            p = r.paired.get(n) if peer else None
            out.append("| " + " | ".join([
                f"{r.wl.title}, {r.wl.conns} connections", n, span(r.mbps[n], ",.0f"),
                span(r.cpu[n], ".3f"), x(r.ratios[n]) if peer else "",
                paired_cell(p) if peer else "",
                span(r.server[n], ".0f"), span(r.client[n], ".0f"), span(r.upstream[n], ".0f"),
                str(r.clients["k"]), f"{r.wl.target}x" if peer else "",
                r.verdicts[n] if peer else ""]) + " |")
    return out


def tcp_section(res, trows):
    s = res["meta"]["settings"]
    wl = trows[0].wl
    out = table_tcp(trows) + [""]
    out += [f"Median (and range) of {s['rounds']} interleaved round(s) of {s['duration']} s "
            f"after {s['warmup']} s of warm-up, as above. Each server: one worker or thread "
            "pinned to the server CPU, TLS as above (same certificate, TLS 1.3, "
            "TLS_AES_128_GCM_SHA256, tickets), the plaintext passed as it is over TCP to one "
            "echo upstream (bench/echo_upstream.c, epoll, pinned to the client CPUs beside the "
            "client): ringtls `--tcp-proxy`, HAProxy `mode tcp` with `bind ... ssl crt` "
            "(bench/haproxy-tcp.cfg.in), nginx's stream module with `listen ... ssl` and "
            "`proxy_pass`, ssl_preread off (bench/nginx-tcp.conf.in). No kTLS on this host: "
            "every server does its TLS in userspace.",
            "",
            f"The client is bench/tls_echo.c (OpenSSL, one thread, epoll): {wl.conns} "
            f"persistent TLS connections, each sending {wl.body >> 20} MiB and reading it back "
            "(while it sends), again and again; at the end of the run it sends nothing more and "
            "reads back what is on its way, then closes with close_notify, so every byte the "
            "server forwarded is counted. MB/s = bytes echoed / wall time / 10^6, each byte "
            "counted once although it crossed the server both ways. Server CPU per MB = "
            "utime+stime of the server's process (/proc/PID/stat, before and after the "
            "client ran) / MB echoed. Judged by that alone, the peer's over ringtls's, as "
            "the proxy workloads are: MB/s depends as much on the client (which does as much "
            "TLS as the server) and the upstream, which share the client CPU, and on "
            "whatever else runs on the machine; CPU per MB much less. The per-round ratio "
            "pairs round i of ringtls with round i of the peer (run seconds apart); median "
            "and range over the rounds."]
    return out


def check_lines_tcp(res):
    return [f"- {n} TCP mode: " + (f"ERROR {c['error']}" if "error" in c else
                                   f"negotiated `{c['tls']}`; {c['verified']}")
            for n, c in res.get("checks_tcp", {}).items()]


def proxy_section(res, prows):
    ka = res["meta"]["settings"].get("proxy_keepalive", 32)
    s = res["meta"]["settings"]
    out = table_proxy(prows) + [""]
    out += [f"Median of {s['rounds']} interleaved round(s) of {s['duration']} s after "
            f"{s['warmup']} s of warm-up, as above. Each proxy: one worker or thread pinned to the server CPU, TLS as above (same "
            "certificate, TLS 1.3, TLS_AES_128_GCM_SHA256, tickets), plaintext HTTP/1.1 "
            f"keep-alive to one backend, at most {ka} idle upstream connections kept "
            f"(PROXY_KEEPALIVE: ringtls `--proxy-keepalive {ka}`, nginx `keepalive {ka}` "
            f"with `proxy_http_version 1.1`, HAProxy `pool-max-conn {ka}`); nginx writes no "
            "body to disk (`proxy_request_buffering off`, `proxy_max_temp_file_size 0`). "
            "The backend is one nginx (bench/nginx-backend.conf.in) pinned to the client "
            "CPUs, beside wrk: `/hello` by `return 200`, the 1 MiB file by sendfile, the "
            "1 MiB upload read whole before the answer. Its stub_status, read around each "
            "run, gives the upstream connections each proxy opened and checks that every "
            "response came from it.",
            "",
            "Judged by server CPU time per request (utime+stime of the proxy's process over "
            "the run / responses), never req/s: the backend shares the client CPUs with wrk, "
            "so req/s measures the client side. The target is met where the peer used at "
            "least target x ringtls's CPU per response."]
    return out


def check_lines_proxy(res):
    return [f"- {n} proxy: " + (f"ERROR {c['error']}" if "error" in c else
                                f"negotiated `{c['tls']}`; /hello, the 1 MiB file and the "
                                "1 MiB upload answered by the backend (X-Bench-Backend)")
            for n, c in res.get("checks_proxy", {}).items()]


def render(cfg, res, rows, names, pngs, bound, prows=(), trows=()):
    meta = res["meta"]
    m = meta["machine"]
    peers = names[1:] if rows else []
    if prows or trows:
        peers = peers + [n for n in PROXY_PEERS if n not in peers]
    who = " and ".join(peers) if len(peers) <= 2 else ", ".join(peers[:-1]) + " and " + peers[-1]
    md = [f"# ringtls vs {who}, {meta['date']}", "",
          f"Command: `{meta['command']}` ({meta.get('total_s', 0) // 60} min "
          f"{meta.get('total_s', 0) % 60} s; phases: "
          + ", ".join(f"{k} {v} s" for k, v in meta["phase_s"].items()) + ")", ""]
    if meta["ktls"]:
        md += ["This host has kernel TLS (`ringtls probe`): ringtls offloads records to "
               "the kernel and nginx runs with `ssl_conf_command Options KTLS`.", ""]
    else:
        md += ["**This host has no kernel TLS** (`ringtls probe`: `"
               + next((ln for ln in meta["probe"].splitlines() if ln.startswith("tls ULP")),
                      "?")[:80].strip() + "...`): every TLS number measured on it is "
               "userspace TLS (OpenSSL) for every server. "
               + ("kTLS numbers are in the \"Inside Linux 6.1\" section, counted there and "
                  "**not a timing**." if res["kernel"] else
                  "This run did not measure inside Linux 6.1 (KERNEL=0): it has no kTLS "
                  "numbers." if rows else
                  "The Linux 6.1 (kTLS) phase measures the static workloads only; this run "
                  "had none."), ""]
    md += ["## Against the targets", ""]
    if rows:
        md += summary_lines(rows, bound, res, names) + [""]
    brows = [BackendRow(r.wl, res) for r in rows] if EPOLL in names else []
    if brows:
        md += ([f"Backends (issue 18): ringtls on epoll ({EPOLL}) against nginx:", ""]
               + peer_summary_lines(brows)
               + [f"- the fallback's cost, {EPOLL} / ringtls (io_uring) CPU per request: "
                  + "; ".join(f"{r.wl.key} {x(r.cost)}" for r in brows), ""])
    if prows:
        md += ["Reverse proxy (issue 14):", ""] + peer_summary_lines(prows) + [""]
    if trows:
        md += ["TCP mode (issue 15):", ""] + peer_summary_lines(trows, "MB") + [""]
    if rows:
        md += static_sections(res, rows, names, pngs, bound)
    if brows:
        md += ["## Backends (issue 18)", ""] + backends_section(res, brows) + [""]
    if prows:
        md += ["## Reverse proxy", ""] + proxy_section(res, prows) + [""]
    if trows:
        md += ["## TCP mode", ""] + tcp_section(res, trows) + [""]
    md += (["## Checks", ""] + check_lines(res, names) + check_lines_proxy(res)
           + check_lines_tcp(res))
    md += ["", "## Every round", ""] + rounds_list(list(rows) + list(prows) + list(trows),
                                                   names)
    md += ["", "## Machine and versions", "",
           f"- CPUs: {m['cpus']} ({m['cpu_model']}); kernel {m['kernel']}; load average "
           f"before the run {m['load_before']} (other work shares this machine)"]
    md += [f"- {k}: {v}" for k, v in meta["versions"].items()]
    md += ["", "## Commands", ""] + commands(res, cfg, list(rows) + list(prows) + list(trows))
    if res["errors"]:
        md += ["", "## Errors", ""] + [f"- {e}" for e in res["errors"]]
    return "\n".join(md) + "\n"


def static_sections(res, rows, names, pngs, bound):
    """The static workloads' tables, plots, memory, kernel and perf."""
    meta = res["meta"]
    s = meta["settings"]
    md = table_main(rows, names, bound) + [""]
    md += [f"Median of {s['rounds']} interleaved round(s) of {s['duration']} s after "
           f"{s['warmup']} s of warm-up per server and workload; each round starts with the "
           "next server in turn. Server on CPU "
           f"{s['server_cpu']}, wrk (-t1, one or more processes) on CPU "
           + ",".join(str(c) for c in s.get("client_cpus", [s.get("client_cpu")]))
           + ". MB/s = req/s x body / 10^6. "
           "TLS everywhere: TLS 1.3, TLS_AES_128_GCM_SHA256, one ECDSA P-256 certificate "
           "made with openssl for all servers.", ""]
    if pngs.get("ratios"):
        md += [f"![ringtls against nginx]({os.path.basename(pngs['ratios'])})", ""]
    md += ["## Cost per request", "",
           "Server CPU: (utime+stime) of the server process from /proc/PID/stat before and "
           "after each timed run, divided by the responses (median of the rounds). "
           "Instructions: userspace only (callgrind), kernel work is not in them.", ""]
    md += table_costs(rows, names, res["kernel"].get("callgrind") or {}) + [""]
    if pngs.get("costs"):
        md += [f"![cost per request]({os.path.basename(pngs['costs'])})", ""]
    if res["memory"]:
        md += ["## Memory per idle TLS connection (this host)", ""] + table_memory(res, names)
        md += ["", "Each server fresh, 200 connections to warm up, then the rest, each after "
               "one GET /hello, all left open; (VmRSS after - before) / connections.", ""]
    if pngs.get("memory"):
        md += [f"![memory per connection]({os.path.basename(pngs['memory'])})", ""]
    md += ["## Inside Linux 6.1 with kTLS (not a timing)", ""] + kernel_section(res, names)
    summary = profile_summary(res, rows, names)
    if summary:
        md += ["## Where the time goes, per workload (issue 20)", "",
               "perf (cpu-clock) µs per request by the DSO of the sample's own frame, "
               "callgrind's userspace instructions per request, and the top self-cost "
               "symbols of each; the sections below have the long forms.", ""] + summary
    md += ["", "## Where the time goes (perf)", ""] + perf_section(res, rows) + [""]
    cgs = cg_section(res, rows, names)
    if cgs:
        md += ["## Where the instructions go (callgrind)", ""] + cgs + [""]
    return md


def write(cfg, res, workloads, bound):
    names = [n for n in SERVER_ORDER if n in res["commands"] or n in res["checks"]]
    rows = [Row(wl, res, names, bound) for wl in cfg.workloads if wl.static]
    prows = [ProxyRow(wl, res) for wl in cfg.workloads if wl.proxy]
    trows = [TcpRow(wl, res) for wl in cfg.workloads if wl.tcp]
    date = res["meta"]["date"][:10]
    name = cfg.report_name
    outdir = f"{cfg.bench_dir}/results" if not cfg.no_report else cfg.tmp
    os.makedirs(outdir, exist_ok=True)
    pngs = {}
    try:
        if rows:   # the plots are the static workloads'
            pngs["ratios"] = f"{outdir}/{name}-vs-nginx.png"
            plot_ratios(rows, cfg.tmp, pngs["ratios"], date)
            pngs["costs"] = f"{outdir}/{name}-per-request.png"
            if not plot_costs(rows, names, res["kernel"].get("callgrind") or {}, cfg.tmp,
                              pngs["costs"], date):
                del pngs["costs"]
            pngs["memory"] = f"{outdir}/{name}-memory.png"
            if not plot_memory(res, cfg.tmp, pngs["memory"], date):
                del pngs["memory"]
    except (RuntimeError, OSError) as e:
        res["errors"].append(f"plots: {e}")
        pngs = {k: v for k, v in pngs.items() if os.path.exists(v)}
    text = render(cfg, res, rows, names, pngs, bound, prows, trows)
    print(text)
    if cfg.no_report:
        log(f"no report file (NO_REPORT=1); plots in {outdir}")
        return
    path = f"{outdir}/{name}.md"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    with open(f"{outdir}/{name}.json", "w") as f:
        json.dump(res, f, indent=1)
    log(f"report: bench/results/{name}.md, plots: "
        + ", ".join(f"bench/results/{os.path.basename(p)}" for p in pngs.values()))


if __name__ == "__main__":
    # python3 bench/report.py RESULTS.json OUTDIR: the report and plots of a
    # saved run (bench/results/<date>.json), written again into OUTDIR.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench

    class Again:
        def __init__(self, res, outdir):
            self.tmp, self.no_report = outdir, True
            # the saved run's own name: bench/results/<name>.json
            self.report_name = os.path.splitext(os.path.basename(sys.argv[1]))[0]
            self.bench_dir = os.path.dirname(os.path.abspath(__file__))
            self.idle_conns = res["meta"]["settings"]["idle_conns"]
            keys = set(res["timed"]) | set(res["callgrind"])
            self.workloads = [w for w in bench.WORKLOADS if w.key in keys]

    with open(sys.argv[1]) as f:
        saved = json.load(f)
    os.makedirs(sys.argv[2], exist_ok=True)
    write(Again(saved, sys.argv[2]), saved, bench.WORKLOADS,
          saved["meta"]["settings"].get("client_bound_pct", bench.CLIENT_BOUND_PCT))
