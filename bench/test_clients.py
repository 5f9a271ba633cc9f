#!/usr/bin/env python3
"""bench/test_clients.py: the client-process rule of bench/clients.py with
made-up measurements (no wrk, no servers). Not part of ctest: run it with
`python3 bench/test_clients.py` after changing bench/clients.py."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clients as C  # noqa: E402


def fake_client(cost_pct, servers=("ringtls", "nginx")):
    """A client that needs cost_pct[server] percent of one core in total:
    k processes share it evenly, each capped at 100%. Records each k asked."""
    asked = []

    def measure(k):
        asked.append(k)
        return {s: [min(100.0, cost_pct[s] / k)] * k for s in servers}
    return measure, asked


class Decide(unittest.TestCase):
    def test_not_bound(self):
        self.assertEqual(C.decide(1, {"a": [89.9], "b": [50]}, 4, 4, 64), (False, C.ENOUGH))

    def test_bound_grows(self):
        self.assertEqual(C.decide(1, {"a": [50], "b": [90.0]}, 4, 4, 64),
                         (True, "client-bound"))

    def test_busiest_process_counts_not_the_sum(self):
        # Two processes at 60% each: 120% in all, but neither is saturated.
        self.assertEqual(C.decide(2, {"a": [60, 60]}, 4, 4, 64), (False, C.ENOUGH))
        self.assertEqual(C.decide(2, {"a": [40, 95]}, 4, 4, 64), (True, "client-bound"))

    def test_no_cpu_left(self):
        self.assertEqual(C.decide(1, {"a": [99]}, 1, 1, 64), (False, C.NO_CPU))
        self.assertEqual(C.decide(3, {"a": [99] * 3}, 3, 8, 64), (False, C.NO_CPU))

    def test_max_and_conns(self):
        self.assertEqual(C.decide(2, {"a": [99, 99]}, 4, 2, 64), (False, C.AT_MAX))
        self.assertEqual(C.decide(2, {"a": [99, 99]}, 4, 4, 2), (False, C.AT_CONNS))

    def test_nothing_measured(self):
        self.assertEqual(C.decide(1, {"a": [], "b": None}, 4, 4, 64), (False, C.ENOUGH))


class Calibrate(unittest.TestCase):
    def test_two_cores_one_client_cpu(self):
        # This machine: server on CPU0, one client CPU: k stays 1, and the
        # record says it stayed client-bound for want of a CPU.
        measure, asked = fake_client({"ringtls": 99, "nginx": 98})
        r = C.calibrate(measure, slots=1, kmax=1, conns=64)
        self.assertEqual((r["k"], asked, r["end"]), (1, [1], C.NO_CPU))
        self.assertTrue(r["client_bound"] and r["no_cpu_left"])

    def test_grows_until_not_bound(self):
        # 250% of one core: 1 -> 250 (capped 100), 2 -> 125 (capped 100),
        # 3 -> 83: three processes suffice.
        measure, asked = fake_client({"ringtls": 250, "nginx": 180})
        r = C.calibrate(measure, slots=8, kmax=8, conns=64)
        self.assertEqual((r["k"], asked, r["end"]), (3, [1, 2, 3], C.ENOUGH))
        self.assertFalse(r["client_bound"] or r["no_cpu_left"])
        self.assertEqual([s["k"] for s in r["steps"]], [1, 2, 3])
        self.assertEqual(r["steps"][-1]["cpu_pct"]["ringtls"], [250 / 3] * 3)

    def test_one_server_is_enough_to_grow(self):
        # Only nginx's run saturates wrk: the count still grows, for both.
        measure, asked = fake_client({"ringtls": 60, "nginx": 150})
        r = C.calibrate(measure, slots=4, kmax=4, conns=64)
        self.assertEqual((r["k"], asked), (2, [1, 2]))

    def test_runs_out_of_cpus(self):
        measure, asked = fake_client({"ringtls": 500, "nginx": 500})
        r = C.calibrate(measure, slots=3, kmax=8, conns=64)
        self.assertEqual((r["k"], asked, r["end"]), (3, [1, 2, 3], C.NO_CPU))
        self.assertTrue(r["no_cpu_left"])

    def test_capped_by_max(self):
        measure, asked = fake_client({"ringtls": 500, "nginx": 500})
        r = C.calibrate(measure, slots=8, kmax=2, conns=64)
        self.assertEqual((r["k"], r["end"], r["no_cpu_left"]), (2, C.AT_MAX, False))
        self.assertTrue(r["client_bound"])

    def test_capped_by_connections(self):
        measure, _ = fake_client({"ringtls": 500, "nginx": 500})
        r = C.calibrate(measure, slots=8, kmax=8, conns=2)
        self.assertEqual((r["k"], r["end"]), (2, C.AT_CONNS))


class Settings(unittest.TestCase):
    def test_default_is_every_cpu_but_the_server(self):
        self.assertEqual(C.client_cpus({}, 0, allowed={0, 1, 2, 3}), [1, 2, 3])
        self.assertEqual(C.client_cpus({}, 2, allowed={0, 1, 2, 3}), [0, 1, 3])

    def test_client_cpu_alias(self):
        self.assertEqual(C.client_cpus({"CLIENT_CPU": "3"}, 0, allowed={0, 1}), [3])
        # CLIENT_CPUS wins over the alias.
        self.assertEqual(C.client_cpus({"CLIENT_CPU": "3", "CLIENT_CPUS": "1,2"}, 0), [1, 2])

    def test_refusals(self):
        for env, server in (({"CLIENT_CPUS": "0,1"}, 0), ({"CLIENT_CPUS": "1,x"}, 0),
                            ({"CLIENT_CPUS": ","}, 0), ({"CLIENT_CPUS": "1,1"}, 0),
                            ({"CLIENT_CPU": "0"}, 0)):
            with self.assertRaises(C.ClientConfigError, msg=str(env)):
                C.client_cpus(env, server)
        with self.assertRaises(C.ClientConfigError):
            C.client_cpus({}, 0, allowed={0})

    def test_duplicates_only_for_tests(self):
        self.assertEqual(C.client_cpus({"CLIENT_CPUS": "1,1", "CLIENT_PROCS_TEST": "1"}, 0),
                         [1, 1])

    def test_split_and_pin(self):
        self.assertEqual(C.split_conns(64, 1), [64])
        self.assertEqual(C.split_conns(64, 3), [22, 21, 21])
        self.assertEqual(C.split_conns(8, 8), [1] * 8)
        with self.assertRaises(ValueError):
            C.split_conns(2, 3)
        self.assertEqual(C.cpus_for([1, 2], 5), [1, 2, 1, 2, 1])


if __name__ == "__main__":
    unittest.main(verbosity=2)
