#!/usr/bin/env python3
"""bench/test_clients.py: the client-process rule of bench/clients.py with
made-up measurements (no wrk, no servers); the workload selection
(WORKLOADS, its groups) and the proxy and TCP-mode verdicts of
bench/report.py; that the generated proxy and TCP-mode configs (nginx
proxy, stream and backend, HAProxy http and tcp) pass `nginx -t` and
`haproxy -c`; and that bench/tls_echo.c and bench/echo_upstream.c build
and echo through HAProxy with SHA-256 equal (each skipped where a tool is
missing). Not part of ctest: run it with `python3 bench/test_clients.py`
after changing bench/."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import clients as C  # noqa: E402
import report as R  # noqa: E402
import servers as S  # noqa: E402


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


class Selection(unittest.TestCase):
    def keys(self, spec):
        return [w.key for w in B.select_workloads(spec)]

    def test_groups(self):
        proxy = ["proxy-hello", "proxy-1m", "proxy-upload"]
        self.assertEqual(self.keys("proxy"), proxy)
        self.assertEqual(self.keys("tcp"), ["tcp-echo-1m"])
        self.assertEqual(self.keys(""), [w.key for w in B.WORKLOADS])
        self.assertEqual(self.keys("static") + proxy + ["tcp-echo-1m"], self.keys(""))
        self.assertEqual(self.keys("proxy,tls-hello"), ["tls-hello"] + proxy)
        self.assertTrue(all(w.static for w in B.select_workloads("static")))
        self.assertFalse(any(w.static for w in B.select_workloads("proxy,tcp")))

    def test_unknown_is_refused(self):
        with self.assertRaises(SystemExit):
            B.select_workloads("proxy,no-such-workload")

    def test_proxy_only_config(self):
        cfg = B.Config({"WORKLOADS": "proxy", "CLIENT_CPUS": "1", "HAPROXY": "haproxy"},
                       pin=False)
        self.assertEqual(cfg.groups, ("proxy",))
        self.assertEqual(cfg.peers(), ["ringtls", "nginx", "haproxy"])
        self.assertTrue(cfg.report_name.endswith("-proxy"))   # never the day's full report
        cfg = B.Config({"WORKLOADS": "tls-hello,proxy-1m", "CLIENT_CPUS": "1",
                        "HAPROXY": "haproxy", "H2O": "off"}, pin=False)
        self.assertEqual((cfg.groups, cfg.report_name), (("static", "proxy"), ""))

    def test_tcp_only_config(self):
        cfg = B.Config({"WORKLOADS": "tcp-echo-1m", "CLIENT_CPUS": "1", "HAPROXY": "haproxy"},
                       pin=False)
        self.assertEqual((cfg.groups, [w.key for w in cfg.tcp_wls]), (("tcp",), ["tcp-echo-1m"]))
        self.assertEqual(cfg.peers(), ["ringtls", "nginx", "haproxy"])
        self.assertTrue(cfg.report_name.endswith("-tcp"))
        cfg = B.Config({"WORKLOADS": "proxy,tcp", "CLIENT_CPUS": "1", "HAPROXY": "haproxy"},
                       pin=False)
        self.assertTrue(cfg.report_name.endswith("-proxy-tcp"))

    def test_peers(self):
        env = {"CLIENT_CPUS": "1", "H2O": "off", "WORKLOADS": "tls-hello"}
        cfg = B.Config(dict(env, PEERS="ringtls,ringtls-epoll,nginx"), pin=False)
        self.assertEqual(cfg.peers(), ["ringtls", "ringtls-epoll", "nginx"])
        srvs = B.make_servers(cfg, {})
        self.assertEqual((srvs["ringtls"].backend, srvs["ringtls-epoll"].backend),
                         ("io_uring", "epoll"))
        self.assertIsNone(B.make_servers(B.Config(env, pin=False), {})["ringtls"].backend)
        cfg = B.Config(dict(env, PEERS="ringtls,ringtls-epoll,nginx", WORKLOADS="proxy",
                            HAPROXY="haproxy"), pin=False)
        self.assertEqual(cfg.peers(), ["ringtls", "nginx", "haproxy"])   # epoll: static only
        for bad in ("ringtls-epoll,nginx", "ringtls,nginx,h2o", "ringtls,nginx,apache"):
            with self.assertRaises(SystemExit):
                B.Config(dict(env, PEERS=bad), pin=False)


def rounds(cpu_us, n=3):
    return [{"rps": 1000.0, "requests": 3000, "cpu_us_per_req": v, "server_cpu_pct": 90.0,
             "client_cpu_pct": 50.0, "client_cpu_pcts": [50.0], "error": None,
             "upstream_conns": 3, "backend_cpu_pct": 40.0, "wrk": "wrk"}
            for v in [cpu_us] * n]


class ProxyVerdicts(unittest.TestCase):
    def row(self, key, timed):
        wl = next(w for w in B.WORKLOADS if w.key == key)
        return R.ProxyRow(wl, {"timed": {key: timed}, "clients": {}})

    def test_met_and_missed(self):
        r = self.row("proxy-hello", {"ringtls": rounds(10.0), "haproxy": rounds(13.5),
                                     "nginx": rounds(12.0)})
        self.assertEqual(r.verdicts["haproxy"], "MET")
        self.assertEqual(r.verdicts["nginx"], "MISSED, 8% short")
        self.assertAlmostEqual(r.ratios["nginx"], 1.2)
        self.assertEqual(r.conns_k["ringtls"], 1.0)
        self.assertIn("9.23 µs", r.shortfall("nginx"))
        self.assertIsNone(r.shortfall("haproxy"))

    def test_a_proxy_that_did_not_start(self):
        bad = [B.not_timed("did not start: --proxy: not built yet")] * 3
        r = self.row("proxy-1m", {"ringtls": bad, "haproxy": rounds(2000.0),
                                  "nginx": rounds(2100.0)})
        self.assertEqual(r.verdicts["haproxy"], "NOT MEASURED (ringtls failed)")
        text = "\n".join(R.table_proxy([r]) + R.rounds_list([r], []))
        self.assertIn("did not start", text)


class BackendVerdicts(unittest.TestCase):
    def row(self, key, timed):
        wl = next(w for w in B.WORKLOADS if w.key == key)
        return R.BackendRow(wl, {"timed": {key: timed}, "clients": {}})

    def test_met_missed_and_cost(self):
        r = self.row("tls-hello", {"ringtls": rounds(8.0), "ringtls-epoll": rounds(10.0),
                                   "nginx": rounds(12.0)})
        self.assertEqual(r.verdicts["nginx"], "MET")
        self.assertAlmostEqual(r.cost, 1.25)
        self.assertAlmostEqual(r.cost_paired["median"], 1.25)
        r = self.row("tls-1m", {"ringtls": rounds(8.0), "ringtls-epoll": rounds(10.0),
                                "nginx": rounds(10.5)})
        self.assertEqual(r.verdicts["nginx"], "MISSED, 5% short")
        self.assertIn("ringtls-epoll would need 9.55 µs", r.shortfall("nginx"))
        text = "\n".join(R.table_backends([r]) + R.peer_summary_lines([r]))
        self.assertIn("| 8.00 | 10.00 | 10.50 | 1.05x | 1.05x (1.05-1.05) | 1.1x |", text)
        self.assertIn("/ ringtls-epoll's", text)
        r = self.row("plain-hello", {"ringtls": rounds(8.0), "ringtls-epoll": rounds(9.0),
                                     "nginx": rounds(12.0)})
        self.assertEqual((r.verdicts["nginx"], R.peer_summary_lines([r])), ("-", []))


def tcp_rounds(ms_per_mb, mbps=300.0):
    return [{"rps": mbps / 1.048576, "requests": 900, "bytes": int(mbps * 3e6),
             "mbps": mbps, "cpu_ms_per_mb": v, "cpu_us_per_req": v * 1048.576,
             "server_cpu_pct": 80.0, "client_cpu_pct": 60.0, "client_cpu_pcts": [60.0],
             "upstream_cpu_pct": 15.0, "error": None, "wrk": "tls_echo -p 1"}
            for v in ms_per_mb]


class TcpVerdicts(unittest.TestCase):
    def row(self, timed):
        wl = next(w for w in B.WORKLOADS if w.key == "tcp-echo-1m")
        return R.TcpRow(wl, {"timed": {wl.key: timed}, "clients": {}})

    def test_met_and_missed(self):
        r = self.row({"ringtls": tcp_rounds([2.0, 2.2, 1.9]),
                      "haproxy": tcp_rounds([3.0, 2.4, 3.3]),
                      "nginx": tcp_rounds([2.2, 2.1, 2.5])})
        self.assertEqual(r.cpu["ringtls"], (2.0, 1.9, 2.2))
        self.assertAlmostEqual(r.ratios["haproxy"], 1.5)
        self.assertEqual(r.verdicts["haproxy"], "MET")
        self.assertAlmostEqual(r.ratios["nginx"], 1.1)
        self.assertEqual(r.verdicts["nginx"], "MISSED, 8% short")
        self.assertIn("1.833 ms of CPU per MB instead of 2.000", r.shortfall("nginx"))
        # per round: 2.2/2.0, 2.1/2.2, 2.5/1.9
        self.assertAlmostEqual(r.paired["nginx"]["median"], 1.1)
        text = "\n".join(R.table_tcp([r]) + R.rounds_list([r], [])
                         + R.peer_summary_lines([r], "MB"))
        self.assertIn("2.000 (1.900-2.200)", text)
        self.assertIn("300 MB/s, server 80% (2.200 ms/MB)", text)

    def test_a_server_that_did_not_start(self):
        bad = [B.not_timed("did not start: --tcp-proxy: unknown option")] * 3
        r = self.row({"ringtls": bad, "haproxy": tcp_rounds([3.0] * 3),
                      "nginx": tcp_rounds([2.0] * 3)})
        self.assertEqual(r.verdicts["nginx"], "NOT MEASURED (ringtls failed)")
        self.assertIn("unknown option", "\n".join(R.table_tcp([r])))


def fake_cfg(tmp):
    """What servers.py's config writers read, for a run in tmp."""
    cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    os.makedirs(f"{tmp}/www")
    with open(f"{tmp}/www/hello.txt", "wb") as f:
        f.write(S.HELLO)
    return types.SimpleNamespace(
        tmp=tmp, cert=cert, key=key, bench_dir=os.path.dirname(os.path.abspath(__file__)),
        idle_conns=0, ktls=False, proxy_keepalive=32, backend_port=1, upstream_port=4,
        nginx=S.find_tool("nginx"), haproxy=S.find_tool("haproxy"))


@unittest.skipUnless(shutil.which("openssl"), "no openssl")
class ProxyConfigs(unittest.TestCase):
    """The configs as a run writes them; the writers run nginx -t and
    haproxy -c themselves and raise ServerError if refused."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-test.")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cfg = fake_cfg(self.tmp)

    @unittest.skipUnless(S.find_tool("nginx"), "no nginx")
    def test_nginx_proxy_and_backend(self):
        for mode in ("time", "check"):
            S.nginx_conf(self.cfg, "nginx-proxy.conf.in", f"{self.tmp}/p-{mode}.conf", mode,
                         S.proxy_subst(self.cfg, 2), name=f"p-{mode}", err_log="p.log")
        argv = S.nginx_conf(self.cfg, "nginx-backend.conf.in", f"{self.tmp}/b.conf", "time",
                            S.backend_subst(self.cfg, 3, 1), name="b", err_log="b.log")
        self.assertEqual(argv[-1], f"{self.tmp}/b.conf")
        with open(f"{self.tmp}/p-time.conf") as f:
            text = f.read()
        for want in ("keepalive 32;", "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
                     "server 127.0.0.1:1;", "listen 127.0.0.1:2 ssl;"):
            self.assertIn(want, text)

    @unittest.skipUnless(S.find_tool("haproxy"), "no haproxy")
    def test_haproxy(self):
        argv = S.haproxy_conf(self.cfg, f"{self.tmp}/h.cfg", 2)
        self.assertEqual(argv[1:], ["-db", "-f", f"{self.tmp}/h.cfg"])
        with open(f"{self.tmp}/h.cfg") as f:
            text = f.read()
        for want in ("nbthread 1", "bind 127.0.0.1:2 ssl crt", "pool-max-conn 32",
                     "ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256"):
            self.assertIn(want, text)

    @unittest.skipUnless(S.find_tool("nginx"), "no nginx")
    def test_nginx_tcp(self):
        try:
            subst = S.tcp_subst(self.cfg, 2)
        except S.ServerError as e:   # no stream module here
            self.skipTest(str(e))
        S.nginx_conf(self.cfg, "nginx-tcp.conf.in", f"{self.tmp}/t.conf", "time", subst,
                     name="t", err_log="t.log")
        with open(f"{self.tmp}/t.conf") as f:
            text = f.read()
        for want in ("stream {", "listen 127.0.0.1:2 ssl;", "server 127.0.0.1:4;",
                     "proxy_pass echo;", "ssl_protocols TLSv1.3;"):
            self.assertIn(want, text)
        self.assertNotIn("ssl_preread on", text)

    @unittest.skipUnless(S.find_tool("haproxy"), "no haproxy")
    def test_haproxy_tcp(self):
        argv = S.haproxy_conf(self.cfg, f"{self.tmp}/ht.cfg", 2, template="haproxy-tcp.cfg.in")
        self.assertEqual(argv[1:], ["-db", "-f", f"{self.tmp}/ht.cfg"])
        with open(f"{self.tmp}/ht.cfg") as f:
            text = f.read()
        for want in ("mode tcp", "nbthread 1", "bind 127.0.0.1:2 ssl crt",
                     "server echo 127.0.0.1:4"):
            self.assertIn(want, text)

    @unittest.skipUnless(S.find_tool("haproxy"), "no haproxy")
    def test_a_refused_config_raises(self):
        self.cfg.backend_port = "not-a-port"
        with self.assertRaises(S.ServerError):
            S.haproxy_conf(self.cfg, f"{self.tmp}/bad.cfg", 2)


def build(tmp, src, libs=()):
    out = f"{tmp}/{src[:-2]}"
    r = subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
                        f"{os.path.dirname(os.path.abspath(__file__))}/{src}", *libs],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"cc {src}: {r.stderr}")
    return out


@unittest.skipUnless(shutil.which("cc") and shutil.which("openssl") and S.find_tool("haproxy"),
                     "no cc, openssl or haproxy")
class TcpEcho(unittest.TestCase):
    """bench/tls_echo.c against bench/echo_upstream.c behind HAProxy (mode
    tcp, bench/haproxy-tcp.cfg.in): the whole TCP-mode path but ringtls."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-test.")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cfg = fake_cfg(self.tmp)

    def start(self, argv, port):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(p.wait)
        self.addCleanup(p.send_signal, signal.SIGUSR1 if "haproxy" in argv[0] else
                        signal.SIGTERM)
        proc = types.SimpleNamespace(alive=lambda: p.poll() is None, name=argv[0], log="-")
        S.wait_listening(proc, [port], 10)
        return p

    def test_verify_and_timed(self):
        echo = build(self.tmp, "echo_upstream.c")
        try:
            client = build(self.tmp, "tls_echo.c", ["-lssl", "-lcrypto"])
        except AssertionError as e:
            if "openssl/ssl.h" in str(e):
                self.skipTest("no OpenSSL headers (libssl-dev)")
            raise
        up, front = S.free_ports(2)
        self.cfg.upstream_port = up
        self.start([echo, str(up)], up)
        self.start(S.haproxy_conf(self.cfg, f"{self.tmp}/h.cfg", front,
                                  template="haproxy-tcp.cfg.in"), front)

        def run(*args):
            r = subprocess.run([client, "-p", str(front), "--ca", self.cfg.cert, *args],
                               capture_output=True, text=True, timeout=60)
            return r.returncode, json.loads(r.stdout.splitlines()[-1])
        rc, out = run("-c", "2", "-n", "3", "--verify", "-s", "100000")
        self.assertEqual((rc, out["error"], out["verified"], out["bytes"], out["echoes"]),
                         (0, None, 2, 600000, 6))
        self.assertEqual((out["protocol"], out["cipher"]), ("TLSv1.3", S.CIPHER))
        t0 = time.monotonic()
        rc, out = run("-c", "3", "-d", "1")
        self.assertEqual((rc, out["error"]), (0, None))
        self.assertGreater(out["bytes"], 0)
        self.assertLess(time.monotonic() - t0, 8)
        # drained before the close: every byte sent came back
        self.assertEqual(out["bytes"], out["sent"])
        self.assertGreaterEqual(out["bytes"], out["echoes"] * (1 << 20))


if __name__ == "__main__":
    unittest.main(verbosity=2)
