"""bench/perfphase.py: where a server's CPU time goes, from `perf record
-e cpu-clock -g -p PID` while wrk loads it (bench.py's perf phase runs it;
report.py prints the result). cpu-clock is a software event: it works
where the hardware counters do not (virtual machines), and its period is
CPU time in nanoseconds, so samples x period / requests is CPU time per
request.

Userspace call chains are not reliable (OpenSSL, libc and nginx are built
without frame pointers), kernel ones are: the kernel buckets below are
inclusive (a sample counts in every bucket any frame of its chain
matches), the userspace ones count self time only.
"""
import os
import re
import subprocess
from collections import defaultdict

WORKLOADS = ("plain-hello", "tls-hello", "tls-1m")
SERVERS = ("ringtls", "nginx")
FREQ = 2000
TOP = 12

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
