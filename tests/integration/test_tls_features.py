#!/usr/bin/env python3
"""TLS features: ALPN, SNI with two certificates and the syntax of the
name (RFC 6066 §3), session resumption
(tickets, shared and rotated ticket keys, --no-tickets) and client
certificates (--client-auth require / optional)."""
import os
import re
import ssl

import tls_util as tu

TLS13 = ssl.TLSVersion.TLSv1_3
TLS12 = ssl.TLSVersion.TLSv1_2
VERSIONS = ((TLS13, "TLSv1.3"), (TLS12, "TLSv1.2"))


def attempt(port, ctx, target="/", **kw):
    """('ok', response, sslsocket facts) or ('error', text). A TLS 1.3
    client finishes its side before the server has judged its
    certificate, so the refusal may only show on the first read."""
    try:
        with tu.TlsConn(port, ctx, **kw) as c:
            r = c.request(target)
            return "ok", r, (c.sock.version(), c.sock.session_reused)
    except (ssl.SSLError, EOFError, ConnectionError, OSError) as e:
        return "error", "%s: %s" % (type(e).__name__, e), None


def has_alert(why, name):
    """Python names an alert either way: [SSL: TLSV1_ALERT_UNKNOWN_CA] or
    'tlsv1 alert no application protocol'."""
    return name in why.upper().replace(" ", "_")


def s_client_hello(port, *args, env=None):
    return tu.s_client(port, *args, send=tu.req("/hello"), until=r"Hello, World!", env=env)


# --------------------------------------------------------------------------


def alpn_refused(t, s, protos, what):
    """A client offering only `protos` gets no_application_protocol (120,
    RFC 7301 §3.2) in TLS 1.3 and 1.2, and the server logs it."""
    for version, vname in VERSIONS:
        mark = s.mark()
        st, why, _ = attempt(s.port, tu.client_ctx(alpn=protos, min_version=version,
                                                   max_version=version))
        t.check(st == "error" and has_alert(why, "NO_APPLICATION_PROTOCOL"),
                "%s %s: no_application_protocol alert: %s %r" % (what, vname, st, why))
        t.check(s.wait_line(r"handshake failed: no application protocol", since=mark) is not None,
                "%s %s: server log: %r" % (what, vname, s.lines_since(mark)))


def selected(t, s, protos, want, what):
    """The protocol the server picks from a client's list (Python's client)."""
    with tu.TlsConn(s.port, tu.client_ctx(alpn=protos)) as c:
        got = c.sock.selected_alpn_protocol()
        t.eq(got, want, "%s: ALPN %s selected" % (what, ",".join(protos)))
        if got == "http/1.1":
            page = c.request("/")
            t.eq(tu.page_cells(page.body).get("alpn"), "http/1.1", "%s: page alpn cell" % what)


def s_client_alert(t, s, alpn, what):
    r = tu.s_client(s.port, "-alpn", alpn, send=tu.req("/hello"), until=r"Hello, World!")
    t.check(r.rc != 0 and "alert no application protocol" in r.out and "SSL alert number 120" in r.out
            and "Hello, World!" not in r.out, "%s: s_client -alpn %s: alert 120: %r" % (what, alpn, r))


def test_alpn(t, parts):
    s = tu.TlsServer()
    r = tu.s_client(s.port, "-alpn", "http/1.1", send=tu.req("/"), until=r"</html>")
    t.check("ALPN protocol: http/1.1" in r.out, "s_client -alpn http/1.1: ALPN shown: %r" % r)
    t.eq(tu.page_cells(r.out).get("alpn"), "http/1.1", "s_client -alpn http/1.1: page alpn cell")
    # HTTP/2 is preferred (test_h2.py speaks it): h2 whichever the
    # client lists first, and h2 alone is taken.
    selected(t, s, ("h2", "http/1.1"), "h2", "default")
    selected(t, s, ("http/1.1", "h2"), "h2", "default")
    selected(t, s, ("h2",), "h2", "default")
    r = tu.s_client(s.port, "-alpn", "h2", send=b"", until=r"ALPN protocol")
    t.check("ALPN protocol: h2" in r.out, "s_client -alpn h2: ALPN shown: %r" % r)
    # An unknown protocol before a known one: the known one.
    selected(t, s, ("spdy/3", "http/1.1"), "http/1.1", "default")
    # No ALPN at all is fine: the page says "-".
    with tu.TlsConn(s.port, tu.client_ctx(alpn=None)) as c:
        page = c.request("/")
        t.eq(c.sock.selected_alpn_protocol(), None, "no ALPN offered: none selected")
        t.eq(tu.page_cells(page.body).get("alpn"), "-", "no ALPN offered: page alpn cell")
    r = tu.s_client(s.port, send=tu.req("/hello"), until=r"Hello, World!")
    t.check("No ALPN negotiated" in r.out and "Hello, World!" in r.out,
            "s_client without -alpn: no ALPN, request served: %r" % r)
    # Only http/1.0 (what curl --http1.0 offers): the server answers
    # HTTP/1.0 requests, so it should take it, as nginx does, rather than
    # refuse the handshake.
    st, why, _ = attempt(s.port, tu.client_ctx(alpn=("http/1.0",)), target="/hello")
    t.check(st != "error" or not has_alert(why, "NO_APPLICATION_PROTOCOL"),
            "ALPN http/1.0 only (curl --http1.0): handshake accepted: %s %r" % (st, why))
    # Only protocols the server does not speak: no_application_protocol.
    alpn_refused(t, s, ("spdy/3",), "default, ALPN spdy/3 only")
    alpn_refused(t, s, ("foo", "h2c"), "default, ALPN foo,h2c")
    s_client_alert(t, s, "spdy/3", "default")
    if parts.need("curl", "ALPN with curl --http2"):
        c = tu.curl_run("-k", "-v", "--http2", s.url("/hello"))
        err = c.stderr.decode("utf-8", "replace")
        t.check(c.returncode == 0 and c.stdout == tu.HELLO and
                "ALPN: server accepted h2" in err and "< HTTP/2 200" in err,
                "curl --http2 gets HTTP/2 by ALPN: rc=%d %r" % (c.returncode, err[-500:]))
    tu.stop_ok(t, s)

    # --no-http2: http/1.1 only, as before HTTP/2 came.
    s = tu.TlsServer("--no-http2")
    selected(t, s, ("h2", "http/1.1"), "http/1.1", "--no-http2")
    alpn_refused(t, s, ("h2",), "--no-http2, ALPN h2 only")
    s_client_alert(t, s, "h2", "--no-http2")
    if parts.need("curl", "ALPN with curl --http2 and --no-http2"):
        c = tu.curl_run("-k", "-v", "--http2", s.url("/hello"))
        err = c.stderr.decode("utf-8", "replace")
        t.check(c.returncode == 0 and c.stdout == tu.HELLO and
                "ALPN: server accepted http/1.1" in err and "< HTTP/1.1 200" in err,
                "--no-http2: curl --http2 falls back to http/1.1 by ALPN: rc=%d %r"
                % (c.returncode, err[-500:]))
    tu.stop_ok(t, s)


def test_sni(t, pki):
    s = tu.TlsServer("--cert", pki.a[0], "--key", pki.a[1], "--cert", pki.b[0], "--key", pki.b[1])
    der_a, der_b = tu.der_of(pki.a[0]), tu.der_of(pki.b[0])
    # "b.test." is the same host (RFC 6066 §3 asks for no trailing dot,
    # but some clients send it): certificate b, and the name shown as sent.
    for name, want, verify in (("b.test", der_b, True), ("a.test", der_a, True), ("b.test.", der_b, False),
                               ("unknown.test", der_a, False), (None, der_a, False)):
        ctx = tu.client_ctx(verify=verify, cafile=pki.ca[0])
        with tu.TlsConn(s.port, ctx, server_hostname=name) as c:
            got = c.sock.getpeercert(binary_form=True)
            page = c.request("/")
        cells = tu.page_cells(page.body)
        t.check(got == want, "SNI %r: got certificate %s" % (name, "a" if got == der_a else
                                                             "b" if got == der_b else "other"))
        t.eq((cells.get("sni"), cells.get("alpn")), (name or "-", "http/1.1"),
             "SNI %r: page sni/alpn cells" % name)
    for name, cn in (("b.test", "b.test"), ("a.test", "a.test"), ("c.test", "a.test")):
        r = tu.s_client(s.port, "-servername", name, "-CAfile", pki.ca[0], "-verify_hostname", cn,
                        send=tu.req("/"), until=r"</html>")
        m = re.search(r"^subject=(.*)$", r.out, re.M)
        t.check(m is not None and m.group(1).endswith("CN = " + cn),
                "s_client -servername %s: certificate of %s: %r" % (name, cn, m and m.group(1)))
        t.check("Verify return code: 0 (ok)" in r.out, "s_client -servername %s: verifies" % name)
        t.eq(tu.page_cells(r.out).get("sni"), name, "s_client -servername %s: page sni cell" % name)
    tu.stop_ok(t, s)


def test_sni_syntax(t):
    """A server_name that is not a DNS host name ends the handshake with a
    fatal unrecognized_name (RFC 6066 §3); every host name, including the
    forms a strict reading would trip on, still gets a handshake."""
    s = tu.TlsServer()
    long_name = ".".join(["a" * 63] * 3) + "." + "b" * 61     # 253 bytes
    good = ("localhost", "localhost.", "a-b.example.com", "under_score.example", "xn--bcher-kva.example",
            "UPPER.Example", "0.example", long_name)
    # Python's client refuses empty labels itself; the catalogue has those.
    bad = ("a b.example", "bad\x01name", "\x1b[31mred\x1b[0m", "a/b", "%41.example")
    for version, vname in VERSIONS:
        def ctx():
            return tu.client_ctx(min_version=version, max_version=version)
        for name in good:
            st, r, _ = attempt(s.port, ctx(), server_hostname=name)
            t.check(st == "ok" and r.status == 200, "%s SNI %r: served: %s %r" % (vname, name, st, r))
            if st == "ok":
                # The connection keeps 63 bytes of the name (src/tls/internal.h).
                t.eq(tu.page_cells(r.body).get("sni"), name[:63], "%s SNI %r: page sni cell" % (vname, name))
        for name in bad:
            st, why, _ = attempt(s.port, ctx(), server_hostname=name)
            t.check(st == "error" and has_alert(why, "UNRECOGNIZED_NAME"),
                    "%s SNI %r: unrecognized_name alert: %s %r" % (vname, name, st, why))
    r = tu.s_client(s.port, "-servername", "a b.example", send=tu.req("/"), until=r"</html>")
    t.check(r.rc != 0 and "SSL alert number 112" in r.out and "</html>" not in r.out,
            "s_client -servername 'a b.example': alert 112: %r" % r)
    r = tu.s_client(s.port, "-servername", "a-b.example.com", send=tu.req("/"), until=r"</html>")
    t.eq(tu.page_cells(r.out).get("sni"), "a-b.example.com", "s_client -servername a-b.example.com: served")
    t.check(s.alive(), "server alive after the bad names")
    tu.stop_ok(t, s)


# --------------------------------------------------------------------------
# Resumption


def s_client_resume(t, s, vflag, vname, what, expect_reuse=True):
    sess = os.path.join(tu.temp_dir("rtls-sess-"), "sess.pem")
    r1 = s_client_hello(s.port, vflag, "-sess_out", sess)
    t.check(("New, %s" % vname) in r1.out and "Hello, World!" in r1.out,
            "%s %s: first connection is new: %r" % (what, vname, r1))
    t.check(os.path.exists(sess), "%s %s: -sess_out wrote the session" % (what, vname))
    if not os.path.exists(sess):
        return
    mark = s.mark()
    r2 = s_client_hello(s.port, vflag, "-sess_in", sess)
    word = "Reused" if expect_reuse else "New"
    t.check(("%s, %s" % (word, vname)) in r2.out and "Hello, World!" in r2.out,
            "%s %s: second connection says '%s': %r" % (what, vname, word, r2))
    line = s.wait_line(r"tls 127\.0\.0\.1:\d+: %s " % re.escape(vname), since=mark)
    t.check(line is not None and ("resumed=%s" % ("yes" if expect_reuse else "no")) in line,
            "%s %s: server log resumed=%s: %r" % (what, vname, "yes" if expect_reuse else "no", line))


def resumes(t, port_from, port_to, version, what, expect=True, ctx=None):
    """A session from port_from offered to port_to; checks the page's
    resumed cell and session_reused. Returns the session the second
    connection ended with (a fresh ticket where one was issued)."""
    ctx = ctx or tu.client_ctx(min_version=version, max_version=version)
    r1, _, _, sess, reused1 = tu.get(port_from, "/", ctx)
    t.eq((tu.page_cells(r1.body).get("resumed"), reused1), ("no", False),
         "%s: first connection is a full handshake" % what)
    r2, _, _, sess2, reused2 = tu.get(port_to, "/", ctx, session=sess)
    want = "yes" if expect else "no"
    t.eq((tu.page_cells(r2.body).get("resumed"), reused2), (want, expect),
         "%s: page resumed cell and session_reused" % what)
    return sess, sess2


def test_resumption(t, parts):
    s = tu.TlsServer()
    for version, vname in VERSIONS:
        s_client_resume(t, s, "-tls1_3" if version == TLS13 else "-tls1_2", vname, "s_client")
        resumes(t, s.port, s.port, version, "python %s resumption" % vname)
    tu.stop_ok(t, s)

    d = tu.temp_dir("rtls-keys-")
    k_old, k_new, k_other = (os.urandom(80).hex() for _ in range(3))

    def keyfile(name, *lines):
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        return p

    f_old = keyfile("old", k_old)
    f_both = keyfile("both", "# rotated: new key first", k_new, "", k_old)
    f_new = keyfile("new", k_new.upper())   # hex digits in either case
    f_other = keyfile("other", k_other)
    s1 = tu.TlsServer("--ticket-key-file", f_old)
    s1b = tu.TlsServer("--ticket-key-file", f_old)
    s2 = tu.TlsServer("--ticket-key-file", f_both)
    s3 = tu.TlsServer("--ticket-key-file", f_new)
    s4 = tu.TlsServer("--ticket-key-file", f_other)
    s5 = tu.TlsServer()
    for version, vname in VERSIONS:
        ctx = tu.client_ctx(min_version=version, max_version=version)
        # Shared key file: a ticket from one process resumes on another.
        resumes(t, s1.port, s1b.port, version, "%s same key file, server 1 -> server 2" % vname,
                ctx=ctx)
        # Rotation: the old key (second line) still decrypts...
        _, renewed = resumes(t, s1.port, s2.port, version,
                             "%s old ticket -> server with [new, old]" % vname, ctx=ctx)
        # ...and the ticket issued then is under the new key (renewed).
        r, _, _, _, reused = tu.get(s3.port, "/", ctx, session=renewed)
        t.eq((tu.page_cells(r.body).get("resumed"), reused), ("yes", True),
             "%s ticket renewed by [new, old] resumes on a server with only [new]" % vname)
        # A key file without the old key: full handshake.
        resumes(t, s1.port, s3.port, version, "%s old ticket -> server with [new] only" % vname,
                expect=False, ctx=ctx)
        resumes(t, s1.port, s4.port, version, "%s ticket -> server with another key" % vname,
                expect=False, ctx=ctx)
        resumes(t, s1.port, s5.port, version, "%s ticket -> server with random keys" % vname,
                expect=False, ctx=ctx)
        # s_client across processes, too.
        sess = os.path.join(d, "s_client-%s.pem" % vname)
        s_client_hello(s1.port, "-tls1_3" if version == TLS13 else "-tls1_2", "-sess_out", sess)
        r = s_client_hello(s1b.port, "-tls1_3" if version == TLS13 else "-tls1_2", "-sess_in", sess)
        t.check(("Reused, %s" % vname) in r.out, "%s s_client ticket of server 1 reused on server 2: %r"
                % (vname, r))
    for p in (s1, s1b, s2, s3, s4, s5):
        tu.stop_ok(t, p)

    # --no-tickets: no NewSessionTicket, nothing resumes.
    s = tu.TlsServer("--no-tickets")
    for version, vname in VERSIONS:
        sess, _ = resumes(t, s.port, s.port, version, "%s --no-tickets" % vname, expect=False)
        t.eq(sess.has_ticket, False, "%s --no-tickets: the session has no ticket" % vname)
    sess_file = os.path.join(tu.temp_dir("rtls-sess-"), "sess.pem")
    s_client_hello(s.port, "-tls1_2", "-sess_out", sess_file)
    if os.path.exists(sess_file):
        r = s_client_hello(s.port, "-tls1_2", "-sess_in", sess_file)
        t.check("New, TLSv1.2" in r.out and "Reused" not in r.out,
                "--no-tickets: s_client TLS 1.2 session id is not resumed: %r" % r)
    tu.stop_ok(t, s)


# --------------------------------------------------------------------------
# Client certificates


def test_client_auth(t, pki):
    good = tu.Pki.CLIENT_SUBJECT
    s = tu.TlsServer("--client-ca", pki.ca[0], "--client-auth", "require")
    for version, vname in VERSIONS:
        def ctx(cert=None):
            return tu.client_ctx(min_version=version, max_version=version, cert=cert)
        # No certificate: certificate_required (116) in 1.3, handshake_failure (40) in 1.2.
        mark = s.mark()
        st, why, _ = attempt(s.port, ctx())
        alert = "ALERT_CERTIFICATE_REQUIRED" if version == TLS13 else "ALERT_HANDSHAKE_FAILURE"
        t.check(st == "error" and has_alert(why, alert), "require, %s, no cert: %s alert: %s %r"
                % (vname, alert, st, why))
        t.check(s.wait_line(r"handshake failed: peer did not return a certificate", since=mark)
                is not None, "require, %s, no cert: server log: %r" % (vname, s.lines_since(mark)))
        # A certificate from the CA: served, the page names it.
        st, r, facts = attempt(s.port, ctx(pki.client))
        t.check(st == "ok" and r.status == 200, "require, %s, good cert: served: %s %r" % (vname, st, r))
        if st == "ok":
            t.eq(tu.page_cells(r.body).get("client"), good, "require, %s, good cert: page client cell"
                 % vname)
        # From another CA: unknown_ca (48).
        mark = s.mark()
        st, why, _ = attempt(s.port, ctx(pki.client_other))
        t.check(st == "error" and has_alert(why, "ALERT_UNKNOWN_CA"), "require, %s, other CA's cert: unknown_ca: %s %r"
                % (vname, st, why))
        t.check(s.wait_line(r"handshake failed: certificate verify failed", since=mark) is not None,
                "require, %s, other CA's cert: server log: %r" % (vname, s.lines_since(mark)))
        # A resumed session keeps its verified client.
        c1 = ctx(pki.client)
        r1, _, _, sess, _ = tu.get(s.port, "/", c1)
        r2, _, _, _, reused = tu.get(s.port, "/", c1, session=sess)
        cells = tu.page_cells(r2.body)
        t.eq((reused, cells.get("resumed"), cells.get("client")), (True, "yes", good),
             "require, %s, resumed session: page resumed/client cells" % vname)
    # s_client: the CertificateRequest names our CA; without a cert, alert 116.
    r = s_client_hello(s.port)
    t.check("Acceptable client certificate CA names" in r.out and
            "O = ringtls-test, CN = ringtls test CA" in r.out, "require: CA names sent: %r" % r)
    t.check("alert certificate required" in r.out and "Hello, World!" not in r.out,
            "require: s_client without a cert gets certificate_required: %r" % r)
    r = tu.s_client(s.port, "-cert", pki.client[0], "-key", pki.client[1], send=tu.req("/"),
                    until=r"</html>")
    t.eq(tu.page_cells(r.out).get("client"), good, "require: s_client with a good cert: page client cell")
    line = s.wait_line(r"client=/O=ringtls-test/CN=client-good ", timeout=1)
    t.check(line is not None, "require: the handshake log line names the client")
    tu.stop_ok(t, s)

    s = tu.TlsServer("--client-ca", pki.ca[0], "--client-auth", "optional")
    for version, vname in VERSIONS:
        def ctx(cert=None):
            return tu.client_ctx(min_version=version, max_version=version, cert=cert)
        st, r, _ = attempt(s.port, ctx())
        t.check(st == "ok" and r.status == 200, "optional, %s, no cert: served: %s %r" % (vname, st, r))
        if st == "ok":
            t.eq(tu.page_cells(r.body).get("client"), "-", "optional, %s, no cert: page client cell" % vname)
        st, r, _ = attempt(s.port, ctx(pki.client))
        t.check(st == "ok" and r.status == 200, "optional, %s, good cert: served: %s %r" % (vname, st, r))
        if st == "ok":
            t.eq(tu.page_cells(r.body).get("client"), good, "optional, %s, good cert: page client cell"
                 % vname)
    tu.stop_ok(t, s)

    # Without --client-auth nothing is asked for.
    s = tu.TlsServer()
    r = s_client_hello(s.port)
    t.check("No client certificate CA names sent" in r.out and "Hello, World!" in r.out,
            "default: no CertificateRequest: %r" % r)
    tu.stop_ok(t, s)


def test(t):
    parts = tu.Parts()
    parts.ran += 1
    pki = tu.Pki()
    test_alpn(t, parts)
    test_sni(t, pki)
    test_sni_syntax(t)
    test_resumption(t, parts)
    test_client_auth(t, pki)
    parts.finish()


if __name__ == "__main__":
    tu.main(test)
