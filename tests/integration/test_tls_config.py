#!/usr/bin/env python3
"""TLS configuration: every start error is one line on stderr and a
non-zero exit (unreadable, mismatched, expired or not-yet-valid
certificates, --cert without --key, bad ticket key files, bad cipher
lists, client-auth mistakes); and the self-signed flow: the first run
makes the certificate in --state-dir and says how to trust it, the next
run reuses it, and curl --cacert verifies https://localhost with it."""
import datetime
import hashlib
import os
import re
import stat

import tls_util as tu


def one_line_error(t, args, what, must=(), any_of=()):
    """The server must refuse to start: non-zero exit, exactly one line on
    stderr, starting 'ringtls: ', containing every string in `must` and,
    if given, one of `any_of` (case-insensitive)."""
    rc, err = tu.start_error(["--tls-listen", "127.0.0.1:0", *args])
    lines = [l for l in err.splitlines() if l.strip()]
    if not t.check(rc not in (None, 0), "%s: refuses to start (exit %s): %r" % (what, rc, err)):
        return
    t.eq(len(lines), 1, "%s: one line on stderr: %r" % (what, lines))
    line = lines[0] if lines else ""
    t.check(line.startswith("ringtls: "), "%s: the line starts 'ringtls: ': %r" % (what, line))
    for m in must:
        t.check(m in line, "%s: the line names %r: %r" % (what, m, line))
    if any_of:
        t.check(any(a.lower() in line.lower() for a in any_of),
                "%s: the line says one of %r: %r" % (what, list(any_of), line))
    t.check("listening" not in err, "%s: no listener was reported" % what)


def dated_cert(pki, name, start, end):
    """A certificate with explicit dates through `openssl ca`; None if
    this openssl cannot make one."""
    try:
        return pki.make_dated(name, "/O=ringtls-test/CN=%s.test" % name, start, end,
                              san="DNS:%s.test" % name)
    except RuntimeError as e:
        print("note: openssl ca -startdate/-enddate failed: %s" % e)
        return None


def test_start_errors(t, parts, pki):
    d = tu.temp_dir("rtls-conf-")
    state = os.path.join(d, "state")
    a_cert, a_key = pki.a
    ok = ["--cert", a_cert, "--key", a_key, "--state-dir", state]
    missing = os.path.join(d, "no-such-file.pem")

    # Files that cannot be read: say so (not an OpenSSL code).
    one_line_error(t, ["--cert", missing, "--key", a_key], "--cert: nonexistent file",
                   must=[missing], any_of=["cannot read", "no such file"])
    one_line_error(t, ["--cert", d, "--key", a_key], "--cert: a directory",
                   must=[d], any_of=["cannot read", "is a directory"])
    one_line_error(t, ["--cert", a_cert, "--key", missing], "--key: nonexistent file",
                   must=[missing], any_of=["cannot read", "no such file"])
    one_line_error(t, ["--cert", a_cert, "--key", d], "--key: a directory",
                   must=[d], any_of=["cannot read", "is a directory"])
    # Files that are not what they should be.
    junk = os.path.join(d, "junk.pem")
    with open(junk, "w") as f:
        f.write("this is not PEM\n")
    one_line_error(t, ["--cert", junk, "--key", a_key], "--cert: not a certificate", must=[junk])
    one_line_error(t, ["--cert", a_key, "--key", a_key], "--cert: a key file", must=[a_key])
    one_line_error(t, ["--cert", a_cert, "--key", junk], "--key: not a key", must=[junk])
    one_line_error(t, ["--cert", a_cert, "--key", pki.b[1]], "--key of another certificate",
                   must=[pki.b[1]], any_of=["does not match", "mismatch"])
    # The second pair is checked like the first.
    one_line_error(t, ["--cert", a_cert, "--key", a_key, "--cert", pki.b[0], "--key", pki.a[1]],
                   "second --cert/--key pair mismatched", must=[pki.a[1]],
                   any_of=["does not match", "mismatch"])
    one_line_error(t, ["--cert", a_cert], "--cert without --key", must=["--cert", "--key"])
    one_line_error(t, ["--key", a_key], "--key without --cert", must=["--cert", "--key"])

    # Expired / not yet valid.
    now = datetime.datetime.now(datetime.timezone.utc)
    fmt = "%Y%m%d%H%M%SZ"
    exp = dated_cert(pki, "expired", (now - datetime.timedelta(days=30)).strftime(fmt),
                     (now - datetime.timedelta(days=1)).strftime(fmt))
    fut = dated_cert(pki, "future", (now + datetime.timedelta(days=2)).strftime(fmt),
                     (now + datetime.timedelta(days=30)).strftime(fmt))
    if exp is None or fut is None:
        parts.skip("expired / not-yet-valid certificate: openssl ca cannot set the dates here")
    else:
        one_line_error(t, ["--cert", exp[0], "--key", exp[1]], "expired certificate",
                       must=[exp[0]], any_of=["expired"])
        one_line_error(t, ["--cert", fut[0], "--key", fut[1]], "not-yet-valid certificate",
                       must=[fut[0]], any_of=["not valid yet", "not yet valid"])

    # Ticket key files.
    def keyfile(name, text):
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    good = os.urandom(80).hex()
    for name, text, line_no, say in (
            ("garbage", "hello, this is not a key\n", 1, "160 hex digits"),
            ("short", good[:-2] + "\n", 1, "160 hex digits"),
            ("long", good + "00\n", 1, "160 hex digits"),
            ("nonhex", good[:-1] + "g\n", 1, "160 hex digits"),
            ("second-bad", good + "\n" + "zz" * 80 + "\n", 2, "160 hex digits"),
            ("empty", "", None, "no keys"),
            ("comments", "# only a comment\n\n", None, "no keys"),
            ("too-many", "".join(os.urandom(80).hex() + "\n" for _ in range(9)), None, "more than")):
        p = keyfile(name, text)
        must = [p + (":%d:" % line_no if line_no else "")]
        one_line_error(t, ok + ["--ticket-key-file", p], "--ticket-key-file %s" % name,
                       must=must, any_of=[say])
    one_line_error(t, ok + ["--ticket-key-file", missing], "--ticket-key-file nonexistent",
                   must=[missing], any_of=["cannot read", "no such file"])
    # A good key file starts (control for the cases above).
    s = tu.TlsServer(*ok[:-2], "--ticket-key-file", keyfile("good", "# key\n" + good + "\n"),
                     state_dir=state)
    r, _, _, _, _ = tu.get(s.port, "/hello")
    t.eq(r.body, tu.HELLO, "a good ticket key file: the server starts and serves")
    tu.stop_ok(t, s)

    # Cipher lists and client authentication.
    one_line_error(t, ok + ["--tls-ciphers", "NO-SUCH-CIPHER"], "--tls-ciphers bogus",
                   must=["NO-SUCH-CIPHER"])
    one_line_error(t, ok + ["--tls13-ciphersuites", "TLS_NO_SUCH"], "--tls13-ciphersuites bogus",
                   must=["TLS_NO_SUCH"])
    one_line_error(t, ok + ["--client-auth", "require"], "--client-auth require without --client-ca",
                   must=["--client-ca"])
    one_line_error(t, ok + ["--client-auth", "sometimes", "--client-ca", pki.ca[0]],
                   "--client-auth bogus", must=["--client-auth"])
    one_line_error(t, ok + ["--client-ca", missing, "--client-auth", "require"],
                   "--client-ca nonexistent", must=[missing], any_of=["cannot read", "no such file"])
    one_line_error(t, ok + ["--client-ca", a_key, "--client-auth", "require"],
                   "--client-ca without certificates", must=[a_key])
    # A state directory that cannot hold the self-signed certificate.
    plain = keyfile("plainfile", "x\n")
    one_line_error(t, ["--state-dir", plain], "--state-dir is a regular file", must=[plain])


def fingerprint(pem_path):
    return hashlib.sha256(tu.der_of(pem_path)).hexdigest()


def served_der(port, host="localhost"):
    ctx = tu.client_ctx()
    with tu.TlsConn(port, ctx, server_hostname=host) as c:
        return c.sock.getpeercert(binary_form=True)


def test_selfsigned(t, parts):
    state = os.path.join(tu.temp_dir("rtls-ss-"), "nested", "state")
    cert = os.path.join(state, "selfsigned-cert.pem")
    key = os.path.join(state, "selfsigned-key.pem")

    s = tu.TlsServer(state_dir=state, log_level="info")
    log = s.log()
    t.check(("generated a self-signed certificate for localhost: %s" % cert) in log,
            "first run: logs that it generated %s" % cert)
    t.check(("curl --cacert %s" % cert) in log, "first run: says how to trust it (curl --cacert)")
    t.check(os.path.isfile(cert) and os.path.isfile(key), "first run: cert and key files exist")
    if not (os.path.isfile(cert) and os.path.isfile(key)):
        tu.stop_ok(t, s)
        return
    t.eq(stat.S_IMODE(os.stat(key).st_mode) & 0o077, 0, "the key file is private (no group/other bits)")
    text = tu.openssl("x509", "-in", cert, "-noout", "-text").decode()
    t.check("prime256v1" in text or "P-256" in text, "the certificate is ECDSA P-256")
    t.check(re.search(r"DNS:localhost", text) and "IP Address:127.0.0.1" in text and
            re.search(r"IP Address:0:0:0:0:0:0:0:1|IP Address:::1", text),
            "the certificate names localhost, 127.0.0.1 and ::1")
    fp1 = fingerprint(cert)
    t.eq(hashlib.sha256(served_der(s.port)).hexdigest(), fp1, "first run serves the file's certificate")

    # Verified by curl and python with that file as the only trust anchor.
    if parts.need("curl", "curl --cacert with the self-signed certificate"):
        for host in ("localhost", "127.0.0.1"):
            r = tu.curl_run("--cacert", cert, s.url("/hello", host=host))
            t.eq((r.returncode, r.stdout), (0, tu.HELLO),
                 "curl --cacert %s https://%s:PORT/hello verifies (%r)" % (cert, host, r.stderr[-200:]))
        r = tu.curl_run(s.url("/hello", host="localhost"))
        t.eq(r.returncode, 60, "control: curl without --cacert rejects the certificate")
    ctx = tu.client_ctx(verify=True, cafile=cert)
    with tu.TlsConn(s.port, ctx, server_hostname="localhost") as c:
        t.eq(c.request("/hello").body, tu.HELLO, "python ssl verifies localhost with the file")
    tu.stop_ok(t, s)

    # Second run: the same certificate, nothing generated.
    s = tu.TlsServer(state_dir=state, log_level="info")
    log = s.log()
    t.check("generated a self-signed certificate" not in log, "second run: nothing generated")
    t.check(("TLS uses the self-signed certificate %s" % cert) in log, "second run: names the certificate")
    t.eq(fingerprint(cert), fp1, "second run: the file is unchanged (same fingerprint)")
    t.eq(hashlib.sha256(served_der(s.port)).hexdigest(), fp1, "second run serves the same certificate")
    if parts.need("curl", "curl --cacert on the second run"):
        r = tu.curl_run("--cacert", cert, s.url("/hello", host="localhost"))
        t.eq((r.returncode, r.stdout), (0, tu.HELLO), "second run: curl --cacert verifies")
    tu.stop_ok(t, s)

    # A certificate that has run out is replaced.
    pki = tu.Pki()
    now = datetime.datetime.now(datetime.timezone.utc)
    fmt = "%Y%m%d%H%M%SZ"
    exp = dated_cert(pki, "oldself", (now - datetime.timedelta(days=30)).strftime(fmt),
                     (now - datetime.timedelta(days=1)).strftime(fmt))
    if exp is None:
        parts.skip("expired self-signed certificate replaced: openssl ca cannot set the dates")
        return
    with open(exp[0], "rb") as f, open(cert, "wb") as g:
        g.write(f.read())
    with open(exp[1], "rb") as f, open(key, "wb") as g:
        g.write(f.read())
    fp_old = fingerprint(cert)
    s = tu.TlsServer(state_dir=state, log_level="info")
    t.check("generated a self-signed certificate" in s.log(),
            "an expired self-signed certificate is regenerated")
    t.check(fingerprint(cert) not in (fp_old, fp1), "the regenerated certificate is new")
    t.eq(hashlib.sha256(served_der(s.port)).hexdigest(), fingerprint(cert),
         "the regenerated certificate is served")
    tu.stop_ok(t, s)


def test(t):
    parts = tu.Parts()
    parts.ran += 1
    pki = tu.Pki()
    test_start_errors(t, parts, pki)
    test_selfsigned(t, parts)
    parts.finish()


if __name__ == "__main__":
    tu.main(test)
