"""bench/clients.py: how many wrk processes a workload gets, so that the
client is not the bottleneck. No I/O here but reading the environment and
the CPU affinity: bench/test_clients.py runs the decision with made-up
measurements.

The rule (bench/README.md, "Client processes"): start with one wrk
process; while the busiest wrk process used CLIENT_BOUND percent or more of
its core against some server, and a client CPU without a wrk process is
left (and fewer than CLIENT_PROCS_MAX run), add one and measure again. The
final count is used for every server and round of that workload.
"""
import os

CLIENT_BOUND_PCT = 90.0

# Why the count stopped growing (stored in the results JSON).
ENOUGH = "not client-bound"
NO_CPU = "no free client CPU"
AT_MAX = "CLIENT_PROCS_MAX reached"
AT_CONNS = "one connection per process"


class ClientConfigError(ValueError):
    pass


def parse_cpu_list(text, name):
    try:
        cpus = [int(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise ClientConfigError(f"{name} must be a comma-separated list of CPU numbers, "
                                f"not '{text}'") from None
    if not cpus or min(cpus) < 0:
        raise ClientConfigError(f"{name} must list at least one CPU, not '{text}'")
    return cpus


def client_cpus(env, server_cpu, allowed=None):
    """The CPUs wrk processes may be pinned to: CLIENT_CPUS (comma list),
    else CLIENT_CPU (one CPU, the older setting), else every CPU this
    process may run on except SERVER_CPU. A CPU listed twice counts as two
    slots only with CLIENT_PROCS_TEST=1 (to see the count grow on a
    machine with too few CPUs; never for numbers you keep)."""
    if env.get("CLIENT_CPUS"):
        cpus = parse_cpu_list(env["CLIENT_CPUS"], "CLIENT_CPUS")
    elif env.get("CLIENT_CPU"):
        cpus = parse_cpu_list(env["CLIENT_CPU"], "CLIENT_CPU")
    else:
        pool = sorted(allowed if allowed is not None else os.sched_getaffinity(0))
        cpus = [c for c in pool if c != server_cpu]
        if not cpus:
            raise ClientConfigError(f"no CPU left for wrk besides SERVER_CPU={server_cpu}")
    if server_cpu in cpus:
        raise ClientConfigError(f"the client CPUs {cpus} include SERVER_CPU={server_cpu}")
    if len(set(cpus)) != len(cpus) and env.get("CLIENT_PROCS_TEST") != "1":
        raise ClientConfigError(f"CLIENT_CPUS lists a CPU twice ({cpus}); allowed only with "
                                "CLIENT_PROCS_TEST=1")
    return cpus


def split_conns(conns, k):
    """wrk -c for each of k processes: as equal as possible, summing to
    conns (the first ones get the remainder)."""
    if not 1 <= k <= conns:
        raise ValueError(f"cannot split {conns} connections over {k} processes")
    return [conns // k + (1 if i < conns % k else 0) for i in range(k)]


def cpus_for(cpus, k):
    """The CPU of each of k processes: round-robin over the client CPUs."""
    return [cpus[i % len(cpus)] for i in range(k)]


def busiest(pcts_by_server):
    """The highest per-process CPU % over all servers' runs (None if no
    run measured anything)."""
    vals = [p for pcts in pcts_by_server.values() for p in (pcts or []) if p is not None]
    return max(vals) if vals else None


def decide(k, pcts_by_server, slots, kmax, conns, bound=CLIENT_BOUND_PCT):
    """(grow, why) after a measurement with k processes. pcts_by_server:
    server -> CPU % of each wrk process in that server's run."""
    top = busiest(pcts_by_server)
    if top is None or top < bound:
        return False, ENOUGH
    if k >= slots:
        return False, NO_CPU
    if k >= kmax:
        return False, AT_MAX
    if k >= conns:
        return False, AT_CONNS
    return True, "client-bound"


def calibrate(measure, slots, kmax, conns, bound=CLIENT_BOUND_PCT, log=None):
    """Runs measure(k) -> {server: [CPU % per wrk process]} with k = 1, 2,
    ... until decide() says stop. Returns the record kept in the results:
    the final k, every step, why it stopped, and whether it stayed
    client-bound because no client CPU was left."""
    k, steps = 1, []
    while True:
        pcts = measure(k)
        steps.append({"k": k, "cpu_pct": pcts})
        grow, why = decide(k, pcts, slots, kmax, conns, bound)
        if log:
            log(f"clients: {k} wrk process(es), busiest {busiest(pcts)}% -> "
                + (f"add one ({why})" if grow else f"keep {k} ({why})"))
        if not grow:
            return {"k": k, "steps": steps, "end": why, "client_bound": why != ENOUGH,
                    "no_cpu_left": why == NO_CPU}
        k += 1
