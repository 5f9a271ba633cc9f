"""Servers under test for bench/bench.py: how each is started, on which
ports, and which process's CPU is its own.

Every server offers three listeners on 127.0.0.1:
  plain   HTTP/1.1
  tls     HTTPS, session resumption on (stateless tickets)
  full    HTTPS, no resumption: every handshake is a full one
ringtls and h2o need a second process for `full` (resumption is a global
setting there); nginx serves all three from its one worker.

The reverse-proxy workloads (issue 14) have a fourth, in a process of its
own (ringtls --proxy, an nginx with proxy_pass, HAProxy, which serves only
this one):
  proxy   HTTPS (tickets, as `tls`), every request forwarded over plaintext
          HTTP/1.1 to the Backend (an nginx pinned to the client CPUs)
A server whose proxy does not start keeps its static listeners: the error
is recorded (proxy_error) and the run goes on without it.

The TCP-mode workload (issue 15) has a fifth, also a process of its own
(ringtls --tcp-proxy, nginx's stream module, HAProxy in mode tcp):
  tcp     TLS, the plaintext passed as it is to the EchoUpstream (a small C
          echo server, bench/echo_upstream.c, pinned to the client CPUs)
Its errors are recorded the same way (tcp_error).

Modes: "time" (pinned, as configured), "callgrind" (under valgrind, one
process), "check" (logs whether each handshake resumed; never timed).
"""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time

CIPHER = "TLS_AES_128_GCM_SHA256"
HELLO = b"Hello, World!"


def free_ports(n):
    """n distinct free ports, held together so that they differ. Another
    process may still take one before a server binds it: start-up then
    fails loudly rather than measuring the wrong thing."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServerError(RuntimeError):
    pass


class Proc:
    """One server process that we started, and stop by its PID."""

    def __init__(self, name, argv, env, log, mode, workdir):
        self.name, self.argv, self.mode, self.log = name, argv, mode, log
        self.env = env
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(log, "ab"),
                                  stderr=subprocess.STDOUT, env=env, cwd=workdir)
        self.pid = self.p.pid
        # The command line as a person would type it, settings included.
        extra = [f"{k}={shlex.quote(env[k])}" for k in ("OPENSSL_CONF", "LD_PRELOAD")
                 if k in env and env.get(k) != os.environ.get(k)]
        self.display = " ".join(extra + [shlex.join(argv)])
        self.cpu_pid = self.pid   # the process whose CPU is the server's
        self.children = []        # PIDs recorded at start, stopped by PID
        self.stop_signal = signal.SIGTERM   # HAProxy: SIGUSR1 (SIGTERM kills it)

    def alive(self):
        return self.p.poll() is None

    def stop(self, limit=15):
        """SIGTERM (or callgrind_control -k: ringtls under valgrind ignores
        SIGTERM), then SIGKILL after `limit` seconds; returns the exit code."""
        if self.p.poll() is None:
            if self.mode == "callgrind":
                subprocess.run(["callgrind_control", "-k", str(self.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            else:
                self.p.send_signal(self.stop_signal)
        try:
            rc = self.p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return rc


def wait_listening(proc, ports, timeout):
    """Polls until every port accepts a TCP connection."""
    end = time.time() + timeout
    pending = list(ports)
    while pending:
        if not proc.alive():
            raise ServerError(f"{proc.name} exited during start-up; log: {proc.log}\n"
                              + tail(proc.log))
        try:
            socket.create_connection(("127.0.0.1", pending[0]), timeout=1).close()
            pending.pop(0)
            continue
        except OSError:
            pass
        if time.time() > end:
            raise ServerError(f"{proc.name} did not listen on {pending} within {timeout}s; "
                              f"log: {proc.log}\n" + tail(proc.log))
        time.sleep(0.1)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Server:
    """A server under test: its processes for one mode, and its ports."""
    name = ""
    static = True     # serves the plain, tls and full listeners
    proxies = False   # serves the proxy listener (start_proxy)
    tcp = False       # serves the tcp listener (start_tcp)
    # h2o and nginx get the same files; ringtls answers /hello itself.

    def __init__(self, cfg, env):
        self.cfg, self.env = cfg, env
        self.procs = {}     # listener kind -> Proc
        self.ports = {}     # listener kind -> port
        self.started = []
        self.proxy_error = None   # why the proxy process did not start
        self.tcp_error = None     # why the TCP-mode process did not start

    def start(self, mode, groups=None):
        """Starts the processes of `groups` ("static", "proxy", "tcp";
        default: those of the selected workloads, cfg.groups). A proxy or
        TCP-mode process that fails to start is recorded in proxy_error or
        tcp_error, not raised."""
        groups = self.cfg.groups if groups is None else groups
        self.ports, self.procs, self.proxy_error, self.tcp_error = {}, {}, None, None
        if "static" in groups and self.static:
            self.start_static(mode)
        if "proxy" in groups and self.proxies:
            self.proxy_error = self.start_optional(self.start_proxy, mode)
        if "tcp" in groups and self.tcp:
            self.tcp_error = self.start_optional(self.start_tcp, mode)

    def start_optional(self, start, mode):
        """start(mode); None, or why it failed (its processes stopped)."""
        n = len(self.started)
        try:
            start(mode)
        except ServerError as e:
            for proc in self.started[n:]:   # its exit code is in the error
                proc.stop()
            del self.started[n:]
            return " ".join(str(e).split())[-400:]
        return None

    def serves(self, wl):
        return wl.listener in self.procs

    def wrap(self, argv, mode, out_name):
        """The command line for a mode: pinned for timing, under callgrind
        for instruction counts."""
        cfg = self.cfg
        if mode == "callgrind":
            argv = ["valgrind", "--tool=callgrind", "--quiet",
                    f"--callgrind-out-file={cfg.tmp}/cg/{out_name}.%p.out"] + argv
        if cfg.server_cpu is not None:
            argv = ["taskset", "-c", str(cfg.server_cpu)] + argv
        return argv

    def stop(self):
        rcs = {}
        for proc in reversed(self.started):
            rcs[proc.name] = proc.stop()
        self.started = []
        self.procs = {}
        return rcs

    def start_proc(self, name, argv, kinds, mode, env=None, timeout=None):
        proc = Proc(name, argv, env or self.env, f"{self.cfg.tmp}/{name}.log", mode, self.cfg.tmp)
        self.started.append(proc)
        wait_listening(proc, [self.ports[k] for k in kinds],
                       timeout or (120 if mode == "callgrind" else 15))
        for k in kinds:
            self.procs[k] = proc
        return proc


class Ringtls(Server):
    name = "ringtls"
    proxies = True
    tcp = True
    backend = None   # --backend (issue 18); None: the default, auto

    def version(self):
        return run_text([self.cfg.ringtls, "--version"])

    def base_args(self, mode):
        cfg = self.cfg
        base = [cfg.ringtls, "serve", "--threads", "1",
                "--cert", cfg.cert, "--key", cfg.key, "--no-tls12",
                "--tls13-ciphersuites", CIPHER, "--idle-timeout", "10m",
                "--max-conns", str(max(16384, cfg.idle_conns + 1000))]
        base += cfg.ringtls_ktls_args
        if self.backend:
            base += ["--backend", self.backend]
        if mode == "check":
            base += ["--log-level", "debug"]
        return base

    def check_backend(self, proc, timeout):
        """That the start line (`... serving ROOT on BACKEND`) names the
        backend asked for: never time one backend under the other's name."""
        end = time.time() + timeout
        while True:
            m = re.search(r" serving .* on (\S+)$", tail(proc.log, 50), re.M)
            if m or time.time() > end or not proc.alive():
                break
            time.sleep(0.1)
        if not m or m.group(1) != self.backend:
            raise ServerError(f"{proc.name}: asked for --backend {self.backend}, its start "
                              f"line says {m.group(1) if m else 'nothing'}; log: {proc.log}\n"
                              + tail(proc.log))

    def start_proxy(self, mode):
        """One more process: --proxy / to the backend, upload limit and idle
        upstream connections as the nginx proxy (client_max_body_size 2m,
        keepalive PROXY_KEEPALIVE)."""
        cfg = self.cfg
        port, = free_ports(1)
        self.ports["proxy"] = port
        argv = self.base_args(mode) + [
            "--max-body-bytes", str(PROXY_MAX_BODY), "--proxy-keepalive",
            str(cfg.proxy_keepalive), "--tls-listen", f"127.0.0.1:{port}",
            "--proxy", f"/=http://127.0.0.1:{cfg.backend_port}"]
        self.start_proc(f"ringtls-proxy-{mode}", self.wrap(argv, mode, "ringtls-proxy"),
                        ["proxy"], mode)

    def start_tcp(self, mode):
        """One more process: TCP mode (--tcp-proxy) to the echo upstream."""
        cfg = self.cfg
        port, = free_ports(1)
        self.ports["tcp"] = port
        argv = self.base_args(mode) + [
            "--tcp-proxy", f"127.0.0.1:{port}=127.0.0.1:{cfg.upstream_port}"]
        self.start_proc(f"ringtls-tcp-{mode}", self.wrap(argv, mode, "ringtls-tcp"), ["tcp"],
                        mode)

    def start_static(self, mode):
        cfg = self.cfg
        plain, tls, full = free_ports(3)
        self.ports.update(plain=plain, tls=tls, full=full)
        base = self.base_args(mode) + ["--root", f"{cfg.tmp}/www"]
        env = dict(self.env)
        if mode == "callgrind":
            # valgrind 3.19 fails openat2 with ENOSYS (see openat2_shim.c).
            env["LD_PRELOAD"] = cfg.shim
        main = base + ["--listen", f"127.0.0.1:{plain}", "--tls-listen", f"127.0.0.1:{tls}"]
        nores = base + ["--tls-listen", f"127.0.0.1:{full}", "--no-tickets"]
        for name, argv, kinds in ((self.name, main, ["plain", "tls"]),
                                  (f"{self.name}-full", nores, ["full"])):
            proc = self.start_proc(f"{name}-{mode}", self.wrap(argv, mode, name), kinds, mode,
                                   env)
            if self.backend:
                self.check_backend(proc, 60 if mode == "callgrind" else 10)


class RingtlsEpoll(Ringtls):
    """The same binary and settings on the epoll backend (issue 18: what
    the fallback for a host without io_uring costs). Static workloads only."""
    name = "ringtls-epoll"
    proxies = False
    tcp = False
    backend = "epoll"


class Nginx(Server):
    name = "nginx"
    proxies = True
    tcp = True
    workers = 1   # worker_processes; the one worker is the measured process

    def version(self):
        return run_text([self.cfg.nginx, "-v"])

    def start_static(self, mode):
        cfg = self.cfg
        plain, tls, full = free_ports(3)
        self.ports.update(plain=plain, tls=tls, full=full)
        subst = {"@PORT@": str(plain), "@TLS_PORT@": str(tls), "@TLS_FULL_PORT@": str(full),
                 "@ROOT@": f"{cfg.tmp}/www"}
        if mode == "check":
            subst["access_log off;"] = (
                f'log_format bench "$ssl_session_reused $connection_requests";\n'
                f"    access_log {cfg.tmp}/nginx-check-access.log bench;")
        self.start_nginx(f"nginx-{mode}", "nginx.conf.in", subst, ["plain", "tls", "full"],
                         mode, err_log="nginx-error.log", cg_name="nginx")

    def start_proxy(self, mode):
        port, = free_ports(1)
        self.ports["proxy"] = port
        self.start_nginx(f"nginx-proxy-{mode}", "nginx-proxy.conf.in",
                         proxy_subst(self.cfg, port), ["proxy"], mode)

    def start_tcp(self, mode):
        port, = free_ports(1)
        self.ports["tcp"] = port
        self.start_nginx(f"nginx-tcp-{mode}", "nginx-tcp.conf.in", tcp_subst(self.cfg, port),
                         ["tcp"], mode)

    def start_nginx(self, name, template, subst, kinds, mode, err_log=None, cg_name=None):
        """Fills the template into TMP/NAME.conf, has nginx -t check it,
        starts it and finds its worker(s)."""
        cfg = self.cfg
        conf = f"{cfg.tmp}/{name}.conf"
        argv = nginx_conf(cfg, template, conf, mode, subst, name=name,
                          err_log=err_log or f"{name}-error.log")
        proc = self.start_proc(name, self.wrap(argv, mode, cg_name or name), kinds, mode)
        if mode != "callgrind":
            # The worker does the work: measure it, and remember it so
            # that a SIGKILLed master does not leave it running.
            kids = []
            for _ in range(50):
                kids = children_of(proc.pid)
                if len(kids) >= self.workers:
                    break
                time.sleep(0.1)
            if len(kids) != self.workers:
                raise ServerError(f"expected {self.workers} nginx worker(s) under {proc.pid}, "
                                  f"found {kids}")
            proc.cpu_pid = kids[0]
            proc.children = kids
        return proc


class Backend(Nginx):
    """The upstream of the proxy workloads: nginx (bench/nginx-backend.conf.in)
    pinned to the client CPUs, one worker per client CPU, so that the server
    under test never waits on it. Not a peer: started once per run."""
    name = "backend"
    static = False
    proxies = False

    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        self.cpus = sorted({c for c in cfg.client_cpus if c is not None})
        self.workers = max(1, len(self.cpus))

    def wrap(self, argv, mode, out_name):
        return (["taskset", "-c", ",".join(map(str, self.cpus))] if self.cpus else []) + argv

    def start(self, mode="time", groups=None):
        cfg = self.cfg
        port, = free_ports(1)
        self.ports = {"backend": port}
        self.start_nginx("backend", "nginx-backend.conf.in", backend_subst(cfg, port, self.workers),
                         ["backend"], mode)
        cfg.backend_port = port

    def cpu_ticks(self):
        return sum(cpu_ticks(pid) for pid in self.procs["backend"].children)

    def status(self):
        """(connections accepted, requests) so far: stub_status's counters.
        Each call is one connection and one request itself."""
        with socket.create_connection(("127.0.0.1", self.ports["backend"]), timeout=10) as s:
            s.sendall(b"GET /bench-status HTTP/1.1\r\nHost: backend\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        m = re.search(rb"server accepts handled requests\s+(\d+) (\d+) (\d+)", data)
        if not m:
            raise ServerError(f"backend status: {data[:200]!r}")
        return int(m.group(1)), int(m.group(3))


class EchoUpstream(Server):
    """The upstream of the TCP-mode workload: bench/echo_upstream.c (built
    into the temp dir by bench.py), one process pinned to the client CPUs,
    beside the client. Not a peer: started once per run, its CPU reported
    but counted for nobody."""
    name = "echo-upstream"
    static = False

    def __init__(self, cfg, env):
        super().__init__(cfg, env)
        self.cpus = sorted({c for c in cfg.client_cpus if c is not None})

    def wrap(self, argv, mode, out_name):
        return (["taskset", "-c", ",".join(map(str, self.cpus))] if self.cpus else []) + argv

    def start(self, mode="time", groups=None):
        port, = free_ports(1)
        self.ports = {"upstream": port}
        self.start_proc("echo-upstream", self.wrap([self.cfg.echo_upstream, str(port)], mode,
                                                   "echo-upstream"), ["upstream"], mode)
        self.cfg.upstream_port = port

    def cpu_ticks(self):
        return cpu_ticks(self.procs["upstream"].pid)


class Haproxy(Server):
    """HAProxy as a reverse-proxy and TCP-mode peer (bench/haproxy.cfg.in,
    bench/haproxy-tcp.cfg.in): one thread (nbthread 1), pinned like the
    others, in the foreground (-db)."""
    name = "haproxy"
    static = False
    proxies = True
    tcp = True

    def version(self):
        return run_text([self.cfg.haproxy, "-v"]).splitlines()[0]

    def start_proxy(self, mode):
        cfg = self.cfg
        port, = free_ports(1)
        self.ports["proxy"] = port
        conf = f"{cfg.tmp}/haproxy-{mode}.cfg"
        argv = haproxy_conf(cfg, conf, port)
        proc = self.start_proc(f"haproxy-{mode}", self.wrap(argv, mode, "haproxy"), ["proxy"],
                               mode)
        proc.stop_signal = signal.SIGUSR1   # soft stop, exit 0; SIGTERM kills it

    def start_tcp(self, mode):
        cfg = self.cfg
        port, = free_ports(1)
        self.ports["tcp"] = port
        argv = haproxy_conf(cfg, f"{cfg.tmp}/haproxy-tcp-{mode}.cfg", port,
                            template="haproxy-tcp.cfg.in")
        proc = self.start_proc(f"haproxy-tcp-{mode}", self.wrap(argv, mode, "haproxy-tcp"),
                               ["tcp"], mode)
        proc.stop_signal = signal.SIGUSR1


# The proxy workloads' request bodies are 1 MiB; every proxy accepts 2 MiB.
PROXY_MAX_BODY = 2 << 20


def nginx_common_subst(cfg, mode, name):
    conns = cfg.idle_conns + 1000
    return {
        "@TMP@": cfg.tmp, "@NAME@": name,
        "@USER_DIRECTIVE@": "user root root;" if os.geteuid() == 0
        else "# not root: the worker keeps the invoking user",
        "@MASTER@": "master_process off" if mode == "callgrind" else "master_process on",
        "@NOFILE@": str(2 * conns + 100), "@CONNS@": str(conns),
        "@CERT@": cfg.cert, "@KEY@": cfg.key,
        "@KTLS@": "ssl_conf_command Options KTLS;" if cfg.ktls else "# no kTLS here",
    }


def proxy_subst(cfg, port):
    return {"@PORT@": str(port), "@BACKEND_PORT@": str(cfg.backend_port),
            "@KEEPALIVE@": str(cfg.proxy_keepalive), "@MAX_BODY@": str(PROXY_MAX_BODY)}


def nginx_stream_module(nginx):
    """The directive that gives nginx its stream module: a load_module line
    where it is built as a dynamic module (Debian: libnginx-mod-stream), a
    comment where it is built in. ServerError where it has none."""
    text = run_text([nginx, "-V"])
    if "--with-stream=dynamic" in text:
        m = re.search(r"--modules-path=(\S+)", text)
        path = f"{m.group(1) if m else '/usr/lib/nginx/modules'}/ngx_stream_module.so"
        if not os.path.exists(path):
            raise ServerError(f"nginx's stream module is not installed ({path}; Debian: "
                              "apt-get install libnginx-mod-stream)")
        return f"load_module {path};"
    if re.search(r"--with-stream(\s|$)", text):
        return "# the stream module is built in"
    raise ServerError(f"{nginx} has no stream module (nginx -V: no --with-stream)")


def tcp_subst(cfg, port):
    return {"@PORT@": str(port), "@UPSTREAM_PORT@": str(cfg.upstream_port),
            "@LOAD_STREAM@": nginx_stream_module(cfg.nginx)}


def backend_subst(cfg, port, workers):
    return {"@PORT@": str(port), "@ROOT@": f"{cfg.tmp}/www", "@WORKERS@": str(workers),
            "@MAX_BODY@": str(PROXY_MAX_BODY)}


def nginx_conf(cfg, template, conf, mode, subst, name, err_log):
    """Writes bench/TEMPLATE filled in to CONF and checks it with nginx -t;
    returns the command line that runs it."""
    fill_template(f"{cfg.bench_dir}/{template}", conf,
                  dict(nginx_common_subst(cfg, mode, name), **subst))
    argv = [cfg.nginx, "-p", f"{cfg.tmp}/", "-e", f"{cfg.tmp}/{err_log}", "-c", conf]
    r = subprocess.run(argv + ["-t", "-q"], capture_output=True, text=True)
    if r.returncode != 0:
        raise ServerError(f"nginx rejected {conf} (from bench/{template}):\n{r.stderr}")
    return argv


def haproxy_conf(cfg, conf, port, template="haproxy.cfg.in"):
    """Writes HAProxy's config (bench/TEMPLATE: haproxy.cfg.in for the
    proxy workloads, haproxy-tcp.cfg.in for TCP mode) and its certificate
    file (certificate and key in one PEM) and checks them with haproxy -c;
    returns the command line that runs it."""
    pem = f"{cfg.tmp}/haproxy.pem"
    with open(cfg.cert) as c, open(cfg.key) as k, open(pem, "w") as out:
        out.write(c.read() + k.read())
    os.chmod(pem, 0o600)
    subst = {"@PORT@": str(port), "@PEM@": pem, "@CIPHER@": CIPHER}
    if template == "haproxy.cfg.in":
        subst.update({"@BACKEND_PORT@": str(cfg.backend_port),
                      "@KEEPALIVE@": str(cfg.proxy_keepalive)})
    else:
        subst["@UPSTREAM_PORT@"] = str(cfg.upstream_port)
    fill_template(f"{cfg.bench_dir}/{template}", conf, subst)
    argv = [cfg.haproxy, "-db", "-f", conf]
    r = subprocess.run([cfg.haproxy, "-c", "-q", "-f", conf], capture_output=True, text=True)
    if r.returncode != 0:
        raise ServerError(f"haproxy rejected {conf} (from bench/{template}):\n"
                          f"{r.stdout}{r.stderr}")
    return argv


class H2o(Server):
    name = "h2o"

    def version(self):
        return run_text([self.cfg.h2o, "--version"]).splitlines()[0]

    def start_static(self, mode):
        cfg = self.cfg
        plain, tls, plain2, full = free_ports(4)
        # The no-resumption instance needs a plaintext listener too: the
        # template has one; nothing is measured on it.
        self.ports.update(plain=plain, tls=tls, plain2=plain2, full=full)
        env = dict(self.env)
        env["OPENSSL_CONF"] = cfg.h2o_openssl_conf
        for name, res, kinds in ((f"h2o-{mode}", "ticket", ["plain", "tls"]),
                                 (f"h2o-full-{mode}", "off", ["plain2", "full"])):
            conf = f"{cfg.tmp}/{name}.conf"
            access = ""
            if mode == "check":
                access = (f"access-log:\n  path: {cfg.tmp}/{name}-access.log\n"
                          '  format: "%{ssl.session-reused}x %{http1.request-index}x"')
            fill_template(f"{cfg.bench_dir}/h2o.conf.in", conf, {
                "@TMP@": cfg.tmp, "@NAME@": name, "@PORT@": str(self.ports[kinds[0]]),
                "@TLS_PORT@": str(self.ports[kinds[1]]), "@CERT@": cfg.cert, "@KEY@": cfg.key,
                "@ROOT@": f"{cfg.tmp}/www", "@RESUMPTION@": res, "@ACCESS_LOG@": access,
                "@CONNS@": str(cfg.idle_conns + 1000),
                "@USER_DIRECTIVE@": "user: root" if os.geteuid() == 0 else ""})
            proc = self.start_proc(name, self.wrap([cfg.h2o, "-c", conf], mode, name),
                                   kinds, mode, env)
            # h2o forks a crash-report helper (perl); stop it by PID too.
            proc.children = children_of(proc.pid)


def fill_template(src, dst, subst):
    with open(src) as f:
        # Comments stay in the template: they name the placeholders.
        text = "".join(ln for ln in f if not ln.lstrip().startswith("#"))
    for k, v in subst.items():
        text = text.replace(k, v)
    left = [m for line in text.splitlines()
            for m in re.findall(r"@[A-Z_]+@", line.split("#", 1)[0])]
    if left:
        raise ServerError(f"{src}: {', '.join(left)} left unfilled in {dst}")
    with open(dst, "w") as f:
        f.write(text)


def run_text(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()


SERVERS = {"ringtls": Ringtls, "ringtls-epoll": RingtlsEpoll, "nginx": Nginx, "h2o": H2o,
           "haproxy": Haproxy}


def find_tool(name):
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK)
                                  else None)
