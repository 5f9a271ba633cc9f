#!/usr/bin/env python3
"""Userspace memory per idle TLS connection, measured inside a kTLS kernel.

Run it inside a kernel that has kTLS (not a timing: nothing here is timed):
    tests/kernel/run-kernel.sh --kernel 6.1 -- python3 bench/ktls_memory.py [N]

For each server it opens N TLS 1.3 connections (each does one GET /hello,
then stays idle), and reports (VmRSS after - VmRSS before) / N of the server
process, plus the /proc/net/tls_stat deltas that prove where the records
went. Servers:
  ringtls-ktls   both directions in the kernel (on 6.1 TLS 1.3 RX is forced
                 with --ktls-rx-no-rekey), no SSL object kept
  ringtls-user   --ktls off: OpenSSL holds every connection
  nginx-ktls     Debian's nginx, 1 worker, ssl_conf_command Options KTLS
"""
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RINGTLS = os.environ.get("RINGTLS_BIN", os.path.join(HERE, "..", "build", "ringtls"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
WARM = 200


def tls_stat():
    try:
        with open("/proc/net/tls_stat") as f:
            return {k: int(v) for k, v in (l.split() for l in f if l.strip())}
    except FileNotFoundError:
        return {}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_conns(port, cafile, n, keep):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    req = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        t = ctx.wrap_socket(s, server_hostname="localhost")
        t.sendall(req)
        got = b""
        while not got.endswith(b"Hello, World!"):
            chunk = t.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed early")
            got += chunk
        keep.append(t)


def measure(name, pid, port, cafile):
    keep = []
    open_conns(port, cafile, WARM, keep)      # warm up allocator and pages
    time.sleep(0.5)
    before, st0 = rss_kib(pid), tls_stat()
    open_conns(port, cafile, N, keep)
    time.sleep(1.0)
    after, st1 = rss_kib(pid), tls_stat()
    per = (after - before) * 1024 / N
    d = {k: st1.get(k, 0) - st0.get(k, 0) for k in ("TlsTxSw", "TlsRxSw", "TlsDecryptError")}
    for t in keep:
        t.close()
    return name, per, before, after, d


def wait_port(logfile, pattern, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        with open(logfile, errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    raise RuntimeError(f"no listening line in {logfile}")


def run_ringtls(tmp, extra):
    log = os.path.join(tmp, "ringtls.log")
    st = os.path.join(tmp, "state")
    p = subprocess.Popen([RINGTLS, "serve", "--tls-listen", "127.0.0.1:0", "--threads", "1",
                          "--state-dir", st, "--max-conns", str(N + WARM + 100),
                          "--idle-timeout", "10m"] + extra,
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    port = wait_port(log, r"listening on 127\.0\.0\.1:(\d+) \(https\)")
    return p, port, os.path.join(st, "selfsigned-cert.pem")


def run_nginx(tmp, cert, key):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        return None
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process on; worker_processes 1; user root root;
pid {tmp}/nginx.pid; error_log {tmp}/nginx.err warn;
worker_rlimit_nofile {N + WARM + 1000};
events {{ worker_connections {N + WARM + 100}; }}
http {{ access_log off; client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/px;
  fastcgi_temp_path {tmp}/fc; uwsgi_temp_path {tmp}/uw; scgi_temp_path {tmp}/sc;
  keepalive_timeout 10m; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.3; ssl_conf_command Options KTLS;
    location = /hello {{ default_type text/plain; return 200 "Hello, World!"; }} }} }}
""")
    p = subprocess.Popen([nginx, "-p", tmp, "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    worker = None
    for _ in range(50):
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        if kids:
            worker = int(kids[0])
            break
        time.sleep(0.1)
    return p, port, worker


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def main():
    if not tls_stat():
        print("SKIP: no /proc/net/tls_stat: run inside a kTLS kernel (tests/kernel/run-kernel.sh)")
        return 77
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("ringtls-ktls", ["--ktls", "on", "--ktls-rx-no-rekey"]),
                            ("ringtls-user", ["--ktls", "off"])):
            p, port, ca = run_ringtls(tmp, extra)
            try:
                rows.append(measure(name, p.pid, port, ca))
            finally:
                stop(p)
        st = os.path.join(tmp, "state")
        ng = run_nginx(tmp, os.path.join(st, "selfsigned-cert.pem"), os.path.join(st, "selfsigned-key.pem"))
        if ng and ng[2]:
            try:
                rows.append(measure("nginx-ktls", ng[2], ng[1], os.path.join(st, "selfsigned-cert.pem")))
            finally:
                stop(ng[0])
    print(f"kernel {os.uname().release}, {N} idle TLS 1.3 connections each (not a timing)")
    print("| server | bytes/conn | RSS before KiB | RSS after KiB | TlsTxSw | TlsRxSw | TlsDecryptError |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, per, b, a, d in rows:
        print(f"| {name} | {per:.0f} | {b} | {a} | {d['TlsTxSw']} | {d['TlsRxSw']} | {d['TlsDecryptError']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
