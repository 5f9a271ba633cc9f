#!/usr/bin/env python3
"""Our own TX record layer (src/tls/seal.c). Where the kernel does not take
TX after the handshake (always, on a host without kTLS), ringtls seals its
records itself instead of OpenSSL's record layer; --openssl-records turns
that off. Every check runs on both, and the metric
ringtls_tls_own_record_layer_connections_total proves which one made the records.

1. every suite (TLS 1.3 and 1.2 x AES-128-GCM, AES-256-GCM,
   ChaCha20-Poly1305), through curl: a 3 MB file by sha256 and /hello; the
   metric counts each connection (0 with --openssl-records);
2. our KeyUpdate in the middle of a body (--key-update-after-records 40):
   3 MB over TLS 1.3 crosses four key generations, each suite, by sha256,
   with the KeyUpdates counted; TLS 1.2, which cannot update keys, ends
   the connection at the limit with close_notify;
3. a peer KeyUpdate with update_requested (openssl s_client's K): ours
   answers it, and the response sealed under our next key reads; and with
   the request in the same segment (ku_client.c), keep-alive and
   Connection: close, ours comes before the response (RFC 8446 §4.6.3);
4. close_notify after a Connection: close response, each version: the
   client reads a clean end, not a truncation;
5. an alert from our record layer: a client record whose tag does not
   verify gets bad_record_mac, which the client decrypts and names;
6. gnutls-cli (nettle's AEAD, not OpenSSL's) reads /hello, each version;
7. a TLS 1.2 client's renegotiation gets OpenSSL's no_renegotiation
   warning at once (our record layer seals the alerts OpenSSL writes),
   not silence until a timeout."""
import hashlib
import os
import re
import ssl

import rtls_test as rt
import tls_util as tu
import test_metrics as tm

MB = 1 << 20
BIG = 3 * MB
SUITES = (
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256", "AES-128-GCM"),
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384", "AES-256-GCM"),
    ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"),
    ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "AES-128-GCM"),
    ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", "AES-256-GCM"),
    ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305", "CHACHA20-POLY1305"),
)
OWN = "ringtls_tls_own_record_layer_connections_total"
KU = "ringtls_tls_key_updates_total"


class Server:
    """ringtls serving ROOT over TLS, with an admin listener to scrape."""

    def __init__(self, root, *args):
        self.s = tu.TlsServer("--admin-listen", "127.0.0.1:0", "--root", root, *args)
        admin, = self.s.wait_ports(tm.ADMIN_RE, timeout=rt.START_TIMEOUT)
        self.scrape = tm.Scrape(admin)
        self.port = self.s.port

    def settled(self, m0):
        """The metrics once every connection since m0 has closed."""
        return tm.wait_for(self.scrape, lambda m: tm.val(m, "ringtls_connections_open") ==
                           tm.val(m0, "ringtls_connections_open"))

    def stop(self, t, what):
        self.scrape.close()
        tu.stop_ok(t, self.s, what)


def curl_get(port, path, version, cipher, *extra):
    """curl over one suite; (exit status, sha256 and length of the body,
    stderr)."""
    flags = (["--tlsv1.3", "--tls-max", "1.3", "--tls13-ciphers", cipher] if version == "TLSv1.3"
             else ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", cipher])
    r = tu.curl_run("-k", *flags, *extra, "https://127.0.0.1:%d%s" % (port, path), timeout=30)
    return r.returncode, hashlib.sha256(r.stdout).hexdigest(), len(r.stdout), r.stderr.decode(
        "utf-8", "replace").strip()


def part_suites(t, srv, mode, want_sha):
    m0 = srv.scrape.get()
    for version, cipher, _ in SUITES:
        what = "[%s] %s %s" % (mode, version, cipher)
        rc, sha, n, err = curl_get(srv.port, "/big.bin", version, cipher)
        t.eq((rc, n, sha), (0, BIG, want_sha), "%s: 3 MB by sha256 (%s)" % (what, err))
        rc, _, n, err = curl_get(srv.port, "/hello", version, cipher)
        t.eq((rc, n), (0, len(tu.HELLO)), "%s: /hello (%s)" % (what, err))
    m1 = srv.settled(m0)
    tm.delta(t, m0, m1, OWN, 2 * len(SUITES) if mode == "ringtls" else 0,
             "[%s] %d connections" % (mode, 2 * len(SUITES)))


def part_our_key_update(t, srv, mode, want_sha):
    for version, cipher, _ in SUITES:
        what = "[%s] --key-update-after-records 40, %s %s" % (mode, version, cipher)
        m0 = srv.scrape.get()
        mark = srv.s.mark()
        rc, sha, n, err = curl_get(srv.port, "/big.bin", version, cipher)
        m1 = srv.settled(m0)
        sent = tm.val(m1, KU, direction="sent") - tm.val(m0, KU, direction="sent")
        if version == "TLSv1.3":
            t.eq((rc, n, sha), (0, BIG, want_sha), "%s: 3 MB by sha256 (%s)" % (what, err))
            # 3 MB is 192 records. The limit is looked at once per seal
            # round (up to 16 records): a KeyUpdate after 40 to 55.
            t.check(sent >= 3, "%s: our KeyUpdates counted: %d, want 3 or more" % (what, sent))
        else:
            # No KeyUpdate in 1.2: the connection ends cleanly at the
            # limit (curl: partial body, 18), and says why.
            t.check(rc != 0 and n < BIG, "%s: the body ends early (curl %d, %d bytes)"
                    % (what, rc, n))
            t.check(srv.s.wait_line(r"AEAD usage limit reached and TLS 1\.2 cannot update keys",
                                    since=mark) is not None,
                    "%s: log line: %r" % (what, srv.s.lines_since(mark)))
            t.eq(sent, 0, "%s: no KeyUpdate sent" % what)


def part_peer_key_update(t, srv, mode):
    what = "[%s] a peer KeyUpdate (update_requested)" % mode
    m0 = srv.scrape.get()
    out = tm.key_update(srv.port)
    t.check("KEYUPDATE" in out and "Hello, World!" in out,
            "%s: s_client sent it, then the response read: %r" % (what, out[-1500:]))
    m1 = srv.settled(m0)
    tm.delta(t, m0, m1, KU, 1, what + ": ours answering it", direction="sent")
    tm.delta(t, m0, m1, KU, 1, what, direction="received")


def part_update_then_request(t, srv, mode):
    """A KeyUpdate with update_requested and a request read together: the
    KeyUpdate that answers it comes first, also when the response is the
    connection's last (a close wanted does not skip it)."""
    if not t.check(os.access(rt.KU_CLIENT_BIN, os.X_OK), "the KeyUpdate client is built: %s"
                   % rt.KU_CLIENT_BIN):
        return
    for extra in ([], ["close"]):
        what = "[%s] KeyUpdate and a request in one segment%s" % (
            mode, ", Connection: close" if extra else "")
        r = rt.run_cmd([rt.KU_CLIENT_BIN, str(srv.port)] + extra, timeout=15)
        out = r.stdout.decode("utf-8", "replace")
        seq = [l for l in out.splitlines() if l in ("keyupdate", "data")]
        t.check(r.returncode == 0 and "response HTTP/1.1 200" in out,
                "%s: the response read: %r %r" % (what, out, r.stderr[-300:]))
        t.check(seq[:2] == ["keyupdate", "data"],
                "%s: the server's records in order, want our KeyUpdate first: %r" % (what, seq))


def part_renegotiation(t, srv, mode):
    what = "[%s] TLS 1.2 renegotiation (s_client R)" % mode
    r = tu.s_client(srv.port, "-tls1_2", "-msg", send=b"R\n", until=r"no_renegotiation",
                    timeout=8.0)
    t.check(re.search(r"<<< TLS 1\.2, Alert \[length 0002\], warning no_renegotiation", r.out),
            "%s: the client read the warning: %s" % (what, r.out[-800:]))


def part_close_notify(t, srv, mode):
    for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        what = "[%s] %s: Connection: close" % (mode, v.name)
        c = tu.BioClient(srv.port, tu.client_ctx(min_version=v, max_version=v))
        try:
            c.handshake()
            c.write(tu.req("/hello", headers=("Connection: close",)))
            got, end = b"", None
            while end is None:
                try:
                    d = c.read_some()
                except EOFError:
                    end = "truncated (TCP FIN without close_notify)"
                    break
                if not d:
                    end = "close_notify"
                got += d
            t.check(tu.HELLO in got, "%s: the response: %r" % (what, got[-200:]))
            t.eq(end, "close_notify", "%s: how the server's direction ended" % what)
        except (OSError, ssl.SSLError) as e:
            t.check(False, "%s: %r" % (what, e))
        finally:
            c.close()


def part_alert(t, srv, mode):
    for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        what = "[%s] %s: a record whose tag does not verify" % (mode, v.name)
        c = tu.BioClient(srv.port, tu.client_ctx(min_version=v, max_version=v))
        try:
            c.handshake()
            c.write(tu.req("/hello"))
            r = c.reader().read_response()
            t.eq(r.body, tu.HELLO, "%s: the session works before" % what)
            c.obj.write(tu.req("/hello"))
            rec = bytearray(c.out.read())
            rec[-1] ^= 1  # the last byte of the tag
            c.sock.sendall(bytes(rec))
            got, how = tu.recv_until_closed(c.sock)
            t.check(how in ("eof", "reset"), "%s: the server closed (%s)" % (what, how))
            alert = c.alert_in(got).upper().replace(" ", "_")
            t.check("BAD_RECORD_MAC" in alert, "%s: the alert the client read: %s" % (what, alert))
        except (OSError, ssl.SSLError, EOFError) as e:
            t.check(False, "%s: %r" % (what, e))
        finally:
            c.close()


def part_gnutls(t, srv, mode):
    for version, cipher, gname in SUITES:
        what = "[%s] gnutls-cli %s %s" % (mode, version, cipher)
        prio = tu.gnutls_priority(version.replace("v", ""), gname)
        r = tu.gnutls_run(srv.port, prio, "--alpn", "http/1.1", send=tu.req("/hello"),
                          until=r"Hello, World!")
        t.check("Hello, World!" in r.out, "%s: /hello read: %s" % (what, r.out[-600:]))


def test(t):
    data = os.urandom(BIG)
    want_sha = hashlib.sha256(data).hexdigest()
    _, root = rt.make_root({"big.bin": data, "hello": tu.HELLO})
    parts = tu.Parts()
    for mode, flags in (("ringtls", ()), ("openssl", ("--openssl-records",))):
        srv = Server(root, "--ktls", "off", *flags)
        try:
            if parts.need("curl", "every suite through curl"):
                part_suites(t, srv, mode, want_sha)
            if parts.need("openssl", "a peer KeyUpdate through s_client"):
                part_peer_key_update(t, srv, mode)
            part_update_then_request(t, srv, mode)
            if tu.have("openssl"):
                part_renegotiation(t, srv, mode)
            part_close_notify(t, srv, mode)
            part_alert(t, srv, mode)
            if parts.need("gnutls-cli", "records read by gnutls"):
                part_gnutls(t, srv, mode)
        finally:
            srv.stop(t, "server [%s]" % mode)
        if not tu.have("curl"):
            continue
        srv = Server(root, "--ktls", "off", "--key-update-after-records", "40", *flags)
        try:
            part_our_key_update(t, srv, mode, want_sha)
        finally:
            srv.stop(t, "server [%s] --key-update-after-records 40" % mode)
    parts.finish()


if __name__ == "__main__":
    tu.main(test, watchdog=240)
