"""bench/perfphase.py: where a server's CPU time goes, from `perf record
-e cpu-clock -g -p PID` while wrk loads it (bench.py's perf phase runs it;
report.py prints the result). cpu-clock is a software event: it works
where the hardware counters do not (virtual machines), and its period is
CPU time in nanoseconds, so samples x period / requests is CPU time per
request.

The callgrind phase's per-function summary is here too (cg_self,
cg_per_request, cg_report_text): the self cost of every function in the
two batches' dumps, their difference divided by the difference in
requests, so that each function's instructions per request are as exact
as the total.

Userspace call chains are not reliable (OpenSSL, libc and nginx are built
without frame pointers), kernel ones are: the kernel buckets below are
inclusive (a sample counts in every bucket any frame of its chain
matches), the userspace ones count self time only.
"""
import os
import re
import subprocess
from collections import defaultdict

# issue 20: TLS 16 KiB, TLS 1 MiB and full handshakes as well, and h2o
# beside nginx (where it is a peer).
WORKLOADS = ("plain-hello", "tls-hello", "tls-16k", "tls-1m", "hs-full")
SERVERS = ("ringtls", "nginx", "h2o")
FREQ = 2000
TOP = 12
CG_TOP = 25   # functions per request kept from callgrind

# (label, where, regex). where: "stack" = any kernel frame of the chain,
# inclusive; a DSO class = the sample's own (leaf) frame in that DSO.
BUCKETS = [
    ("io_uring_enter (everything under the syscall)", "stack",
     r"^(__do_sys_io_uring_enter|__x64_sys_io_uring_enter)$"),
    ("- io_uring send (io_send, io_sendmsg -> tcp_sendmsg)", "stack", r"^io_send(msg|_zc)?$"),
    ("- io_uring recv (io_recv)", "stack", r"^io_recv(msg)?$"),
    ("- io_uring poll task work (io_poll_task_func)", "stack", r"^io_poll_task_func$"),
    ("- io_uring wait (io_cqring_wait)", "stack", r"^io_cqring_wait$"),
    ("epoll_wait", "stack", r"^do_epoll_wait$"),
    ("read / recv syscalls", "stack",
     r"^(ksys_read|__sys_recvfrom|___sys_recvmsg|do_readv)$"),
    ("write / writev / send syscalls", "stack",
     r"^(ksys_write|do_writev|__sys_sendto|___sys_sendmsg)$"),
    ("sendfile / splice", "stack", r"^(do_sendfile|do_splice|io_splice|splice_direct_to_actor)$"),
    ("TCP transmit (tcp_write_xmit, __tcp_transmit_skb and below)", "stack",
     r"^(tcp_write_xmit|__tcp_transmit_skb)$"),
    ("- loopback receive softirq (net_rx_action / process_backlog)", "stack",
     r"^(net_rx_action|process_backlog)$"),
    ("TCP receive into the server (tcp_recvmsg)", "stack", r"^tcp_recvmsg(_locked)?$"),
    ("scheduler (__schedule)", "stack", r"^__schedule$"),
    ("kernel memory alloc/free (self: slab, page allocator)", "kernel",
     r"^(kmem_cache_|__kmalloc|kmalloc|kfree|__slab_free|___slab_alloc|slab_|__alloc_pages|"
     r"__alloc_frozen_pages|get_page_from_freelist|free_unref|__free_pages|__rmqueue|rmqueue)"),
    ("kernel copies to/from user (self)", "kernel",
     r"^(rep_movs_alternative|_copy_to_user|_copy_from_user|copy_user_|__copy_user|"
     r"copy_page_to_iter|copy_page_from_iter|_copy_to_iter|_copy_from_iter)"),
    # glibc's copies and fills (__memmove_avx_unaligned_erms and the like)
    ("memcpy/memmove/memset (self, libc)", "libc", r"^_*mem(cpy|move|set)"),
    ("malloc/free (self, libc)", "libc",
     r"^(__libc_)?(malloc|free|calloc|realloc|cfree)$|^_int_(malloc|free|realloc)|"
     r"^malloc_consolidate$|^unlink_chunk|^tcache"),
    # Debian's libcrypto keeps no symbols for its internal code (the
    # AES-GCM assembly among it): unnamed libcrypto code counts here too.
    ("OpenSSL record crypto (self, libcrypto: AES/GCM names and unnamed code)", "libcrypto",
     r"(?i)aes|gcm|ghash|gmult|ctr32|^\[unknown\]$"),
]
DSO_CLASSES = ["kernel", "libcrypto", "libssl", "libc", "server binary", "other"]


def unavailable(tmp, perf="perf"):
    """Why the perf phase cannot run here, or None."""
    try:
        r = subprocess.run([perf, "record", "-q", "-e", "cpu-clock", "-o", f"{tmp}/perf-probe.data",
                            "--", "true"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"perf is missing or hangs ({e}); install linux-perf"
    if r.returncode != 0:
        return ("`perf record -e cpu-clock -- true` failed: "
                + (r.stderr.strip().splitlines() or ["?"])[-1][:200])
    return None


def record_argv(pid, data, secs, perf="perf"):
    return [perf, "record", "-q", "-e", "cpu-clock", "-F", str(FREQ), "-g",
            "--no-buildid-cache", "-p", str(pid), "-o", data, "--", "sleep", str(secs)]


def tcp_segments():
    """(TcpInSegs, TcpOutSegs) of this network namespace, as nstat names
    them (read from /proc/net/snmp, which is what nstat reads)."""
    with open("/proc/net/snmp") as f:
        rows = [ln.split() for ln in f if ln.startswith("Tcp:")]
    vals = dict(zip(rows[0][1:], rows[1][1:]))
    return int(vals["InSegs"]), int(vals["OutSegs"])


HEADER = re.compile(r"^\s*(\d+)\s+(\d+)\s*$")
FRAME = re.compile(r"^\s+([0-9a-f]+) (.*) \((.*)\)$")


def parse_script(text):
    """perf script -F tid,period,ip,sym,dso: [(period, [(sym, dso), ...])],
    leaf frame first."""
    samples, cur = [], None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            cur = (int(m.group(2)), [])
            samples.append(cur)
            continue
        m = FRAME.match(line)
        if m and cur is not None:
            cur[1].append((m.group(2), m.group(3)))
    return [s for s in samples if s[1]]


def base_sym(sym):
    """do_softirq.part.0 -> do_softirq, cfree@GLIBC_2.2.5 -> cfree; strips
    +0x offsets too."""
    sym = sym.split("+0x")[0].split("@")[0]
    return re.sub(r"\.(isra|part|constprop|cold|llvm)\.?\d*.*$", "", sym)


def dso_class(dso, server_bin):
    name = os.path.basename(dso)
    if dso.startswith("[kernel"):
        return "kernel"
    for cls in ("libcrypto", "libssl"):
        if name.startswith(cls):
            return cls
    if re.match(r"libc(\.so|-)", name):
        return "libc"
    if name == server_bin:
        return "server binary"
    return "other"


def analyse(samples, requests, server_bin):
    """Shares and µs per request: by DSO of the leaf frame, the top
    self-cost symbols, and the buckets above."""
    total = sum(p for p, _ in samples)
    if not total or not requests:
        return {"error": f"{len(samples)} samples, {requests} requests: nothing to divide"}
    per_req = total / 1e3 / requests

    def cell(ns):
        return {"share": round(100 * ns / total, 2), "us": round(ns / 1e3 / requests, 3)}
    by_dso, by_sym, by_bucket = defaultdict(int), defaultdict(int), defaultdict(int)
    rx = [(label, where, re.compile(pat)) for label, where, pat in BUCKETS]
    for period, frames in samples:
        sym, dso = frames[0]
        cls = dso_class(dso, server_bin)
        by_dso[cls] += period
        short = os.path.basename(dso).split(".so")[0] if cls != "kernel" else "kernel"
        by_sym[(sym, short)] += period
        kernel_syms = {base_sym(s) for s, d in frames if dso_class(d, server_bin) == "kernel"}
        for label, where, pat in rx:
            if where == "stack":
                hit = any(pat.search(s) for s in kernel_syms)
            else:
                hit = cls == where and bool(pat.search(base_sym(sym)))
            if hit:
                by_bucket[label] += period
    top = sorted(by_sym.items(), key=lambda kv: -kv[1])[:TOP]
    return {
        "samples": len(samples), "cpu_ms": round(total / 1e6, 1), "us_per_req": round(per_req, 3),
        "dso": {c: cell(by_dso.get(c, 0)) for c in DSO_CLASSES},
        "top": [dict(sym=s, dso=d, **cell(ns)) for (s, d), ns in top],
        "buckets": {label: cell(by_bucket.get(label, 0)) for label, _, _ in BUCKETS},
    }


def report_text(data, perf="perf", lines=60):
    """perf's own summaries of a recording, shortened: self cost by DSO and
    symbol, then inclusive cost by symbol."""
    out = []
    for title, args in (
            ("self cost by shared object and symbol (perf report --no-children "
             "--sort dso,sym -g none --percent-limit 0.5)",
             ["--no-children", "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.5"]),
            ("inclusive cost by symbol, kernel call chains (perf report --children --sort sym "
             "-g none --percent-limit 2)",
             ["--children", "--sort", "sym", "-g", "none", "--percent-limit", "2"])):
        r = subprocess.run([perf, "report", "-i", data, "--stdio"] + args,
                           capture_output=True, text=True, timeout=300)
        body = [ln.rstrip() for ln in r.stdout.splitlines()
                if ln.strip() and (not ln.startswith("#") or "Samples:" in ln
                                   or "Event count" in ln or "Overhead" in ln or "Children" in ln)]
        out += [f"## {title}", ""] + body[:lines] + [""]
    return "\n".join(out)


# ----------------------------------------------------- callgrind per function

def cg_annotate_argv(path):
    """Self cost of every function (no threshold, no source), counts only."""
    return ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no",
            "--show-percs=no", path]


def cg_annotate(path, tmpdir):
    """callgrind_annotate's list of a dump. A dump taken while calls are
    still active (callgrind_control -d: the reactor loop, main, the thread
    start) writes their cost so far as `calls=0` arcs; callgrind_annotate
    3.19 reads a count of 0 as no call and books the whole callee cost as
    the caller's self cost (clone, start_thread and reactor_thread then
    show the batch's total). It reads a copy with those arcs as calls=1."""
    fixed = os.path.join(tmpdir, os.path.basename(path) + ".annotate")
    with open(path) as src, open(fixed, "w") as dst:
        for line in src:
            dst.write("calls=1 " + line[len("calls=0 "):] if line.startswith("calls=0 ")
                      else line)
    try:
        r = subprocess.run(cg_annotate_argv(fixed), capture_output=True, text=True,
                           timeout=300)
    finally:
        os.unlink(fixed)
    if r.returncode != 0:
        raise RuntimeError(f"callgrind_annotate {path}: exit {r.returncode}: {r.stderr[-300:]}")
    return r.stdout


CG_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")
CG_KIND = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
           "cfl": "fl", "fn": "fn", "cfn": "fn"}


def cg_self(path):
    """Self cost (Ir) of every function of a callgrind dump, read from the
    dump itself: {(function, object): Ir}, and the dump's `totals:` line
    (the sum of its cost lines; `summary:`, what bench.py's counts use, can
    differ from it by a few hundredths of a percent). Cost
    lines after a `calls=` line are the callee's inclusive cost and are not
    the caller's (whatever the call count, 0 included: see cg_annotate)."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    out, totals = defaultdict(int), None
    ob, fn, npos, after_call = "", None, 1, False

    def name(kind, spec):
        m = CG_NAME.match(spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), spec)
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if fn is not None and len(parts) > npos:
                    out[(fn, ob)] += int(parts[npos])
                continue
            key, _, val = line.partition("=")
            if key in CG_KIND and _:
                v = name(CG_KIND[key], val)
                if key == "ob":
                    ob = v
                elif key == "fn":
                    fn = v
            elif key == "calls" and _:
                after_call = True
            elif line.startswith("positions:"):
                npos = len(line.split()[1:])
            elif line.startswith("totals:"):
                totals = int(line.split()[1])
    return dict(out), totals


def cg_per_request(f1, f2, n1, n2, server_bin):
    """Function by function, (Ir in batch n2 - Ir in batch n1) / (n2 - n1):
    instructions per request by DSO class, by the userspace buckets of
    BUCKETS, and the top CG_TOP functions. A function whose difference is
    within a few instructions is noise of the batches' timers, not a
    per-request cost; the sums keep it so that they add up to the total."""
    d = n2 - n1
    per = defaultdict(float)
    for key in set(f1) | set(f2):
        per[key] = (f2.get(key, 0) - f1.get(key, 0)) / d
    total = sum(per.values())
    by_dso, by_bucket = defaultdict(float), defaultdict(float)
    rx = [(label, where, re.compile(pat)) for label, where, pat in BUCKETS if where != "stack"
          and where != "kernel"]
    for (fn, obj), ir in per.items():
        cls = dso_class(obj, server_bin)
        by_dso[cls] += ir
        for label, where, pat in rx:
            # unnamed code (callgrind: 0x... addresses) reads as perf's [unknown]
            sym = "[unknown]" if re.fullmatch(r"0x[0-9a-f]+", fn) else base_sym(fn)
            if cls == where and pat.search(sym):
                by_bucket[label] += ir
    top = sorted(per.items(), key=lambda kv: -kv[1])[:CG_TOP]

    def cell(ir):
        return {"ir": round(ir), "share": round(100 * ir / total, 2) if total else None}
    return {
        "total": round(total),
        "dso": {c: cell(by_dso.get(c, 0)) for c in DSO_CLASSES if c != "kernel"},
        "buckets": {label: cell(by_bucket.get(label, 0)) for label, _, _ in rx},
        "top": [dict(fn=fn, obj=os.path.basename(obj), **cell(ir)) for (fn, obj), ir in top],
    }


def cg_report_text(head, summary, annotate_text, lines=60):
    """The per-request tables, then callgrind_annotate's own list of the
    larger batch (its top `lines` functions; see cg_annotate)."""
    out = list(head) + ["", f"## instructions per request: {summary['total']:,} "
                        "(the batches' difference, function by function)", "",
                        "### by object (self cost; no kernel: callgrind counts userspace only)",
                        ""]
    out += [f"{v['ir']:>14,}  {v['share'] or 0:6.2f}%  {c}" for c, v in summary["dso"].items()]
    out += ["", "### buckets (self cost, as the perf phase's userspace ones)", ""]
    out += [f"{v['ir']:>14,}  {v['share'] or 0:6.2f}%  {label}"
            for label, v in summary["buckets"].items()]
    out += ["", f"### top {len(summary['top'])} functions per request (self cost)", ""]
    out += [f"{t['ir']:>14,}  {t['share'] or 0:6.2f}%  {t['fn']} [{t['obj']}]"
            for t in summary["top"]]
    body, started = [], False
    for line in annotate_text.splitlines():
        if "PROGRAM TOTALS" in line:
            started = True
        if started and line.strip() and not line.startswith("-"):
            body.append(line.rstrip())
    out += ["", "## callgrind_annotate --inclusive=no --auto=no --show-percs=no of the larger "
            f"batch's dump (whole batch, not per request; first {lines} functions; active "
            "calls at the dump read as calls, see perfphase.cg_annotate)", ""]
    out += body[:lines + 2]
    return "\n".join(out) + "\n"
