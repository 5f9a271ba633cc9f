#!/usr/bin/env python3
"""TLS interoperability: openssl s_client, curl, gnutls-cli, Python ssl and
Node's tls each fetch the built-in page and /hello on one connection, over
TLS 1.3 with each default suite and TLS 1.2 with each default (ECDSA)
cipher. The negotiated version and cipher must show both in the client's
own report and in the page's cells. Then the refusals: a TLS 1.2-only
client against --no-tls12, TLS 1.2 clients offering only ciphers outside
the default list, and TLS 1.1 clients."""
import os
import time

import tls_util as tu

# Two pipelined requests: the page (its cells), then /hello.
SEND = tu.req("/") + tu.req("/hello")
UNTIL = tu.HELLO


def split_two(t, data, what):
    """The page cells and the /hello body from the two responses in data."""
    chunks = iter([data])
    rd = tu.HttpReader(lambda: next(chunks, b""))
    try:
        page = rd.read_response()
        hello = rd.read_response()
    except EOFError as e:
        t.check(False, "%s: two responses: %s" % (what, e))
        return {}
    t.eq((page.status, hello.status, hello.body), (200, 200, tu.HELLO),
         "%s: page and /hello status, /hello body (in %r)" % (what, data[-400:]))
    return tu.page_cells(page.body)


def check_cells(t, cells, version, cipher, what):
    t.eq((cells.get("transport"), cells.get("version"), cells.get("cipher"), cells.get("alpn")),
         ("TLS", version, cipher, "http/1.1"), "%s: page cells transport/version/cipher/alpn" % what)


def matrix():
    for s in tu.TLS13_SUITES:
        yield "TLSv1.3", s
    for c in tu.TLS12_CIPHERS:
        yield "TLSv1.2", c


def http_part(out):
    """s_client / gnutls-cli stdout: the HTTP bytes start at the status line."""
    i = out.find("HTTP/1.1 ")
    return out[i:].encode("latin-1") if i >= 0 else b""


def run_s_client(t, s):
    for version, cipher in matrix():
        what = "s_client %s %s" % (version, cipher)
        if version == "TLSv1.3":
            args = ["-tls1_3", "-ciphersuites", cipher]
        else:
            args = ["-tls1_2", "-cipher", cipher]
        r = tu.s_client(s.port, *args, "-alpn", "http/1.1", "-servername", "localhost",
                        send=SEND, until=r"Hello, World!")
        t.eq(tu.s_client_session(r.out), (version, cipher), "%s: Protocol/Cipher reported" % what)
        t.check("ALPN protocol: http/1.1" in r.out, "%s: ALPN reported: %r" % (what, r))
        check_cells(t, split_two(t, http_part(r.out), what), version, cipher, what)


def run_curl(t, s):
    for version, cipher in matrix():
        what = "curl %s %s" % (version, cipher)
        if version == "TLSv1.3":
            args = ["--tlsv1.3", "--tls-max", "1.3", "--tls13-ciphers", cipher]
        else:
            args = ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", cipher]
        r = tu.curl_run("-k", "-v", "--http1.1", *args, s.url("/"), s.url("/hello"))
        err = r.stderr.decode("utf-8", "replace")
        t.eq(r.returncode, 0, "%s: exit status (%s)" % (what, err[-400:]))
        m = tu.CURL_TLS_RE.search(err)
        t.eq(m.groups() if m else None, (version, cipher), "%s: 'SSL connection using'" % what)
        t.check("Re-using existing connection" in err, "%s: one connection for both requests" % what)
        body = r.stdout
        t.check(body.endswith(tu.HELLO), "%s: /hello body last: %r" % (what, body[-40:]))
        check_cells(t, tu.page_cells(body), version, cipher, what)


def run_gnutls(t, s):
    for version, cipher in matrix():
        what = "gnutls-cli %s %s" % (version, cipher)
        gver = version.replace("TLSv", "TLS")
        gcipher = tu.GNUTLS_CIPHER[cipher]
        prio = tu.gnutls_priority(gver, gcipher, None if gver == "TLS1.3" else "ECDHE-ECDSA")
        r = tu.gnutls_run(s.port, prio, "--alpn", "http/1.1", send=SEND, until=r"Hello, World!")
        m = tu.GNUTLS_DESC_RE.search(r.out)
        t.eq(m.groups() if m else None, (gver, gcipher), "%s: Description line (%r)" % (what, r))
        check_cells(t, split_two(t, http_part(r.out).split(b"- Peer has closed")[0], what),
                    version, cipher, what)


def run_node(t, s):
    for version, cipher in matrix():
        what = "node %s %s" % (version, cipher)
        r = tu.node_run(s.port, SEND, UNTIL, min_version=version, max_version=version,
                        ciphers=cipher)
        t.eq(r["error"], None, "%s: no error" % what)
        info = r["info"] or {}
        t.eq((info.get("version"), info.get("cipher"), info.get("alpn")),
             (version, cipher, "http/1.1"), "%s: getProtocol/getCipher/alpnProtocol" % what)
        check_cells(t, split_two(t, r["data"].encode("latin-1"), what), version, cipher, what)


def run_python(t, s):
    for version, cipher in matrix():
        what = "python %s %s" % (version, cipher)
        v = version.replace("TLSv1.", "TLSv1_")
        if version == "TLSv1.3":
            r = tu.python_run(s.port, SEND, UNTIL, min_version=v, max_version=v, suites13=cipher)
        else:
            r = tu.python_run(s.port, SEND, UNTIL, min_version=v, max_version=v, ciphers=cipher)
        t.eq(r["error"], None, "%s: no error" % what)
        info = r["info"] or {}
        t.eq((info.get("version"), info.get("cipher")), (version, cipher),
             "%s: version()/cipher()" % what)
        check_cells(t, split_two(t, r["data"].encode("latin-1"), what), version, cipher, what)


def count_failed(s, mark, reason):
    return sum(1 for l in s.lines_since(mark) if "handshake failed: " + reason in l)


def refused(t, s, parts, what, reason, s_args, curl_args, py_kw, node_kw, gnutls_prio,
            s_alert):
    """Each client must fail, with the server logging `reason` once per
    client that reached it (so a client that never sent its hello cannot
    pass for a refusal)."""
    mark = s.mark()
    expected = 0
    r = tu.s_client(s.port, *s_args, send=tu.req("/hello"), until=r"Hello, World!", timeout=5)
    t.check(r.rc != 0 and "Hello, World!" not in r.out and s_alert in r.out,
            "%s: s_client refused with '%s': %r" % (what, s_alert, r))
    expected += 1
    if curl_args is not None and parts.need("curl", what + " (curl)"):
        c = tu.curl_run("-k", *curl_args, s.url("/hello"))
        t.check(c.returncode == 35 and tu.HELLO not in c.stdout,
                "%s: curl fails with exit 35: rc=%d %r" % (what, c.returncode, c.stderr[-300:]))
        expected += 1
    if py_kw is not None:
        p = tu.python_run(s.port, tu.req("/hello"), tu.HELLO, **py_kw)
        t.check(p["error"] is not None and "SSLError" in p["error"] and p["info"] is None,
                "%s: python ssl refused: %r" % (what, p))
        expected += 1
    if node_kw is not None and parts.need("node", what + " (node)"):
        n = tu.node_run(s.port, tu.req("/hello"), tu.HELLO, **node_kw)
        t.check(n["error"] is not None and n["info"] is None and "Hello" not in n["data"],
                "%s: node refused: %r" % (what, n))
        expected += 1
    if gnutls_prio is not None and parts.need("gnutls-cli", what + " (gnutls-cli)"):
        g = tu.gnutls_run(s.port, gnutls_prio, send=tu.req("/hello"), until=r"Hello, World!",
                          timeout=5)
        t.check(g.rc != 0 and "Handshake was completed" not in g.out and "Hello" not in g.out,
                "%s: gnutls-cli refused: %r" % (what, g))
        expected += 1
    end = time.monotonic() + 3
    while count_failed(s, mark, reason) < expected and time.monotonic() < end:
        time.sleep(0.02)
    t.eq(count_failed(s, mark, reason), expected,
         "%s: server logged 'handshake failed: %s' per client (log: %r)"
         % (what, reason, s.lines_since(mark)))


def test_refusals(t, parts):
    # --no-tls12: TLS 1.2-only clients get protocol_version; 1.3 still works.
    s = tu.TlsServer("--no-tls12")
    r, version, cipher, _, _ = tu.get(s.port, "/hello")
    t.eq((r.body, version), (tu.HELLO, "TLSv1.3"), "--no-tls12: a TLS 1.3 client still works")
    refused(t, s, parts, "--no-tls12, TLS 1.2-only client", "unsupported protocol",
            ["-tls1_2"], ["--tlsv1.2", "--tls-max", "1.2"],
            {"min_version": "TLSv1_2", "max_version": "TLSv1_2"},
            {"min_version": "TLSv1.2", "max_version": "TLSv1.2"},
            "NORMAL:-VERS-ALL:+VERS-TLS1.2", "alert protocol version")
    tu.stop_ok(t, s)

    s = tu.TlsServer()
    # TLS 1.2 with only non-default ciphers: handshake_failure (40).
    for cipher, gprio in (("ECDHE-ECDSA-AES128-SHA",
                           "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA1:"
                           "-KX-ALL:+ECDHE-ECDSA"),
                          ("AES128-SHA",
                           "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA1:"
                           "-KX-ALL:+RSA")):
        refused(t, s, parts, "TLS 1.2 offering only %s" % cipher, "no shared cipher",
                ["-tls1_2", "-cipher", cipher], ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", cipher],
                {"min_version": "TLSv1_2", "max_version": "TLSv1_2", "ciphers": cipher},
                {"min_version": "TLSv1.2", "max_version": "TLSv1.2", "ciphers": cipher},
                gprio, "alert handshake failure")
    # TLS 1.1: the client is told to allow it (SECLEVEL 0, its own config
    # ignored), so the refusal is the server's: protocol_version (70).
    env = dict(os.environ, OPENSSL_CONF="/dev/null")
    mark = s.mark()
    r = tu.s_client(s.port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", send=tu.req("/hello"),
                    until=r"Hello, World!", timeout=5, env=env)
    t.check(r.rc != 0 and "Hello, World!" not in r.out and "alert protocol version" in r.out,
            "TLS 1.1 s_client refused with protocol_version: %r" % r)
    t.check(s.wait_line(r"handshake failed: unsupported protocol", since=mark) is not None,
            "TLS 1.1 s_client: server logged 'unsupported protocol': %r" % s.lines_since(mark))
    mark = s.mark()
    p = tu.python_run(s.port, tu.req("/hello"), tu.HELLO, min_version="TLSv1_1",
                      max_version="TLSv1_1", ciphers="DEFAULT:@SECLEVEL=0")
    t.check(p["info"] is None and p["error"] and "ALERT_PROTOCOL_VERSION" in p["error"],
            "TLS 1.1 python refused with protocol_version: %r" % p)
    t.check(s.wait_line(r"handshake failed: unsupported protocol", since=mark) is not None,
            "TLS 1.1 python: server logged 'unsupported protocol': %r" % s.lines_since(mark))
    if parts.need("gnutls-cli", "TLS 1.1 (gnutls-cli)"):
        mark = s.mark()
        g = tu.gnutls_run(s.port, "NORMAL:-VERS-ALL:+VERS-TLS1.1", send=tu.req("/hello"),
                          until=r"Hello, World!", timeout=5)
        t.check(g.rc != 0 and "Handshake was completed" not in g.out,
                "TLS 1.1 gnutls-cli refused: %r" % g)
        t.check(s.wait_line(r"handshake failed: unsupported protocol", since=mark) is not None,
                "TLS 1.1 gnutls-cli: server logged 'unsupported protocol': %r" % s.lines_since(mark))
    # The server is still fine.
    r, version, _, _, _ = tu.get(s.port, "/hello")
    t.eq((r.body, version), (tu.HELLO, "TLSv1.3"), "after the refusals a TLS 1.3 client works")
    tu.stop_ok(t, s)

    # Control: the same ECDHE-ECDSA-AES128-SHA clients succeed once the
    # server allows that cipher, so the refusals above were about the list.
    s = tu.TlsServer("--tls-ciphers", "ECDHE-ECDSA-AES128-SHA")
    r = tu.s_client(s.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA", send=tu.req("/hello"),
                    until=r"Hello, World!")
    t.eq(tu.s_client_session(r.out), ("TLSv1.2", "ECDHE-ECDSA-AES128-SHA"),
         "--tls-ciphers ECDHE-ECDSA-AES128-SHA: s_client negotiates it")
    t.check("Hello, World!" in r.out, "--tls-ciphers ECDHE-ECDSA-AES128-SHA: s_client gets /hello")
    tu.stop_ok(t, s)


def test(t):
    parts = tu.Parts()
    s = tu.TlsServer()
    parts.ran += 1
    run_s_client(t, s)
    run_python(t, s)
    if parts.need("curl", "curl matrix"):
        run_curl(t, s)
    if parts.need("gnutls-cli", "gnutls-cli matrix"):
        run_gnutls(t, s)
    if parts.need("node", "node matrix"):
        run_node(t, s)
    t.eq(s.alive(), True, "server still running after the matrix")
    tu.stop_ok(t, s)
    test_refusals(t, parts)
    parts.finish()


if __name__ == "__main__":
    tu.main(test)
