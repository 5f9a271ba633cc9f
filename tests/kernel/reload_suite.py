#!/usr/bin/env python3
"""SIGHUP reload over kernel TLS (python3 stdlib only; run inside a kTLS
kernel by tests/kernel/run-kernel.sh).

    reload_suite.py               inside a kernel with kTLS
    reload_suite.py --only REGEX  run only the checks whose name matches

ringtls --ktls on --cert FILE --key FILE serves a SIZE-byte file. For TLS
1.3 and TLS 1.2, a download starts and is offloaded both ways
(/proc/net/tls_stat TlsTxSw and TlsRxSw +1, the server's debug line says
kernel-tx=yes kernel-rx=yes); the certificate and key files are replaced
with another pair at the same paths and the server gets SIGHUP; once it
logs `SIGHUP: reloaded (generation N)`, a new connection sees the new
certificate and is offloaded too (the counters rise by one more each);
then the download, which kept the old certificate, is read to its end
without the counters moving: byte count and sha256 intact, TlsDecryptError
unmoved over the whole check, and the old generation logs `generation N-1
stopped`. The reload itself may raise TlsTxSw by one, never TlsRxSw: the
new TLS context's rekey probe (src/tls/ctx.c). On a kernel that cannot rekey
(6.1) the server gets --ktls-rx-no-rekey, as in ktls_suite.py.

Exit status: 0 pass, 1 fail, 77 skip (no /proc/net/tls_stat: no kTLS
here; never a pass without it). One line per check, then "N passed, N
failed[, N skipped]". Nothing is timed: the guest is ~100x slower.
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import suite_common  # noqa: E402
from suite_common import (HELLO, RINGTLS_BIN, WORK, Fail, Server, check, expect,  # noqa: E402
                          expect_eq, offload_deltas, run_suite, stop_server)
import tls_util as tu  # noqa: E402

SIZE = 8 << 20
IO_TIMEOUT = 60.0        # one socket wait in the slow guest
RELOAD_TIMEOUT = 120.0   # SIGHUP -> `reloaded`: a new TLS context and reactor, in the guest
WATCHDOG = 800           # the whole suite (run-kernel.sh allows 900 s)
VERSIONS = (("1.3", None), ("1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"))


def client_ctx(pki, version, cipher):
    """Verifies against the test CA; no host name check: the two
    certificates are for a.test and b.test."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca[0])
    ctx.check_hostname = False
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    if cipher:
        ctx.set_ciphers(cipher)
    return ctx


def connect(port, ctx):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(IO_TIMEOUT)
    s.connect(("127.0.0.1", port))
    try:
        return s.getsockname()[1], ctx.wrap_socket(s, server_hostname="localhost")
    except BaseException:
        s.close()
        raise


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise Fail("EOF in the response head: %r" % buf[:200])
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = None
    for l in lines[1:]:
        k, _, v = l.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    return lines[0], length, rest


def offloaded(srv, mark, port):
    """The server's debug line for the connection from `port`: kernel both ways."""
    lines = srv.conn_tls_lines(mark, port, 30)
    expect_eq([(l["ktx"], l["krx"]) for l in lines], [("yes", "yes")],
              "the server's debug line for the connection from %d: kernel-tx, kernel-rx" % port)


def put(src, dst):
    shutil.copyfile(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)


def c_reload(srv, pki, files, digest, version, cipher, old, new, gen):
    """A download offloaded both ways spans a SIGHUP that changes the
    certificate files from `old` to `new`."""
    ctx = client_ctx(pki, version, cipher)
    ctr_all = suite_common.Counters()
    mark = srv.mark()
    port, s = connect(srv.port, ctx)
    try:
        expect_eq(s.getpeercert(binary_form=True), tu.der_of(old[0]),
                  "the download's certificate (before the reload)")
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, length, rest = read_head(s)
        expect_eq((status, length), ("HTTP/1.1 200 OK", SIZE), "the download's head")
        h, got = hashlib.sha256(rest), len(rest)
        while got < 256 * 1024:
            d = s.recv(65536)
            expect(d, "EOF after %d bytes, before the reload" % got)
            h.update(d)
            got += len(d)
        offloaded(srv, mark, port)
        expect_eq(offload_deltas(ctr_all)[:2], (1, 1),
                  "tls_stat TlsTxSw/TlsRxSw: the download offloaded")

        put(new[0], files[0])
        put(new[1], files[1])
        mark2 = srv.mark()
        ctr_reload = suite_common.Counters()
        srv.proc.send_signal(signal.SIGHUP)
        line = srv.wait_line(mark2, r" (info|error) SIGHUP: ", RELOAD_TIMEOUT)
        expect(line and line.endswith("info SIGHUP: reloaded (generation %d)" % gen),
               "after SIGHUP: %r, want `SIGHUP: reloaded (generation %d)`" % (line, gen))
        # The reload itself offloads nothing but for one probe: the new TLS
        # context asks whether the kernel can rekey (src/tls/ctx.c,
        # rtls__ktls_probe) by setting TLS_TX on a socket of its own.
        tx, rx, dec = offload_deltas(ctr_reload)
        expect(tx in (0, 1) and (rx, dec) == (0, 0),
               "tls_stat TlsTxSw/TlsRxSw/TlsDecryptError during the reload: %s, want "
               "(0 or 1 for the rekey probe, 0, 0)" % ((tx, rx, dec),))

        ctr_new = suite_common.Counters()
        port2, s2 = connect(srv.port, ctx)
        try:
            expect_eq(s2.getpeercert(binary_form=True), tu.der_of(new[0]),
                      "a new connection's certificate after the reload")
            s2.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            _, n, body = read_head(s2)
            while len(body) < (n or 0):
                d = s2.recv(65536)
                if not d:
                    break
                body += d
            expect_eq(body, HELLO, "GET /hello on the new connection")
        finally:
            s2.close()
        offloaded(srv, mark2, port2)
        expect_eq(offload_deltas(ctr_new), (1, 1, 0),
                  "tls_stat TlsTxSw/TlsRxSw/TlsDecryptError for the new connection")
        ctr_rest = suite_common.Counters()

        while got < SIZE:
            d = s.recv(1 << 20)
            expect(d, "download: EOF after %d of %d bytes" % (got, SIZE))
            h.update(d)
            got += len(d)
        expect_eq(got, SIZE, "download: bytes")
        expect_eq(h.hexdigest(), digest, "download: sha256")
    finally:
        s.close()
    expect_eq(offload_deltas(ctr_rest), (0, 0, 0), "tls_stat TlsTxSw/TlsRxSw/TlsDecryptError for "
              "the rest of the download (still the old generation's kernel keys)")
    expect_eq(offload_deltas(ctr_all)[2], 0, "tls_stat TlsDecryptError over the whole check")
    line = srv.wait_line(mark2, r" info generation %d stopped$" % (gen - 1), RELOAD_TIMEOUT)
    expect(line, "`generation %d stopped` once the download is done" % (gen - 1))
    warns = [l for l in srv.lines_since(mark) if re.search(r" (warn|error) ", l)]
    expect_eq(warns, [], "warnings or errors (--ktls on logs every fallback)")
    return "download TlsTxSw+1 TlsRxSw+1, reload TlsTxSw+%d (probe), new connection " \
        "TlsTxSw+1 TlsRxSw+1, TlsDecryptError+0" % tx


def main():
    only, full = suite_common.start_suite(__doc__, WATCHDOG)

    def body():
        pki = tu.Pki(os.path.join(WORK.tmp, "pki"))
        root = os.path.join(WORK.tmp, "root")
        os.makedirs(root)
        data = os.urandom(SIZE)
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(data)
        del data
        files = (os.path.join(WORK.tmp, "cert.pem"), os.path.join(WORK.tmp, "key.pem"))
        put(pki.a[0], files[0])
        put(pki.a[1], files[1])
        print("reload suite: %s, kernel %s, server flags %s" % (
            RINGTLS_BIN, os.uname().release, full or "-"), flush=True)
        srv = Server("--ktls", "on", *full, "--cert", files[0], "--key", files[1],
                     "--shutdown-timeout", "300s", root=root, name="ringtls-reload")
        pairs = (pki.a, pki.b)
        for i, (version, cipher) in enumerate(VERSIONS):
            what = "TLSv%s%s" % (version, " " + cipher if cipher else "")
            check(only, "reload during a %d MB kTLS download %s: intact, new certificate after, "
                  "both offloaded" % (SIZE >> 20, what),
                  c_reload, srv, pki, files, digest, version, cipher, pairs[i % 2],
                  pairs[(i + 1) % 2], i + 2)
        stop_server(srv)

    return run_suite("reload-suite-", body)


if __name__ == "__main__":
    sys.exit(main())
