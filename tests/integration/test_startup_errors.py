#!/usr/bin/env python3
"""Start-up errors, one table: every invalid flag, number, duration,
address, file, certificate, key, permission and combination of flags makes
`ringtls serve` exit non-zero with exactly one line on stderr, starting
'ringtls: ' and naming the problem (the flag, the file, the address), and
nothing listening. test_cli.py and test_tls_config.py check some of these
in more detail (exit codes 2/1, ticket-file line numbers, cipher lists,
not-yet-valid certificates); this table covers every kind in one place.

Permission rows need a user other than root: as root they run through
setpriv as nobody (65534); the privileged-port row likewise."""
import datetime
import os
import shutil
import socket

import rtls_test as rt
import tls_util as tu

NOBODY = 65534


def can_drop_to_nobody():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def as_user_prefix():
    """argv prefix that runs a command as an unprivileged user, [] when
    this test already is one, None when neither is possible."""
    if os.geteuid() != 0:
        return []
    if rt.UNDER_VALGRIND:
        # valgrind would run as nobody too, and cannot read a binary or
        # write its log in a build tree under a 0700 directory (mktemp -d,
        # as CI's clone is); the same rows run natively.
        return None
    if can_drop_to_nobody():
        return ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]
    return None


def run_serve(argv, prefix=(), timeout=10):
    """Runs `ringtls serve ARGV`; returns (exit status or None, stdout, stderr)."""
    p = rt.Process([*prefix, rt.RINGTLS_BIN, "serve", *argv], name="ringtls-start")
    rc = p.wait(timeout)
    if rc is None:
        p.stop()
    return rc, p.log()


def check_row(t, name, argv, must=(), any_of=(), code=None, prefix=()):
    rc, err = run_serve(argv, prefix)
    lines = [l for l in err.splitlines() if l.strip()]
    if not t.check(rc not in (None, 0), "%s: refuses to start (exit %s): %r" % (name, rc, err[-300:])):
        return
    if code is not None:
        t.eq(rc, code, "%s: exit status" % name)
    t.eq(len(lines), 1, "%s: exactly one line on stderr: %r" % (name, lines))
    line = lines[0] if lines else ""
    t.check(line.startswith("ringtls: "), "%s: the line starts 'ringtls: ': %r" % (name, line))
    for m in must:
        t.check(m in line, "%s: the line names %r: %r" % (name, m, line))
    if any_of:
        t.check(any(a.lower() in line.lower() for a in any_of),
                "%s: the line says one of %r: %r" % (name, list(any_of), line))
    t.check("listening" not in err, "%s: nothing was listening" % name)


def user_dir():
    """A directory an unprivileged user can enter (temp dirs are 0700)."""
    d = rt.temp_dir("rtls-startup-")
    os.chmod(d, 0o755)
    return d


def copy_mode(src, dst, mode):
    shutil.copyfile(src, dst)
    os.chmod(dst, mode)
    return dst


def flag_rows(L):
    """(name, argv, must, any_of, exit code)"""
    P = ["--listen", L]
    rows = [
        ("unknown flag", P + ["--no-such-flag"], ["--no-such-flag"], (), 2),
        ("unknown short flag", P + ["-q"], ["-q"], (), 2),
        ("stray argument", P + ["extra"], ["extra"], (), 2),
        ("missing argument (--threads last)", P + ["--threads"], ["--threads"], ["needs a value"], 2),
        ("missing argument (--cert last)", ["--tls-listen", L, "--cert"], ["--cert"], ["needs a value"], 2),
        ("bad number --threads abc", P + ["--threads", "abc"], ["--threads", "abc"], (), 2),
        ("bad number --max-conns 12k", P + ["--max-conns", "12k"], ["--max-conns", "12k"], (), 2),
        ("bad number --max-body-bytes -5", P + ["--max-body-bytes", "-5"], ["--max-body-bytes"], (), 2),
        ("bad duration --header-timeout 5x", P + ["--header-timeout", "5x"], ["--header-timeout", "5x"], (), 2),
        ("bad duration --idle-timeout ''", P + ["--idle-timeout", ""], ["--idle-timeout"], (), 2),
        ("bad duration --handshake-timeout 10parsecs", ["--tls-listen", L, "--handshake-timeout", "10parsecs"],
         ["--handshake-timeout", "10parsecs"], (), 2),
        ("bad --log-level", P + ["--log-level", "loud"], ["--log-level", "loud"], (), 2),
        ("bad --client-auth", ["--tls-listen", L, "--client-auth", "sometimes"], ["--client-auth", "sometimes"],
         (), 2),
        ("bad --ktls value", ["--tls-listen", L, "--ktls", "maybe"], ["--ktls", "maybe"], (), 2),
        ("--ring-entries not a power of two", P + ["--ring-entries", "1000"], ["--ring-entries", "1000"],
         ["power of two"], 2),
    ]
    for flag, val in (("--threads", "0"), ("--threads", "1025"), ("--max-conns", "0"),
                      ("--max-conns", "99999999"), ("--max-headers", "0"), ("--max-headers", "257"),
                      ("--max-uri-bytes", "0"), ("--max-header-bytes", "10"),
                      ("--idle-timeout", "0"), ("--header-timeout", "0.1ms"),
                      ("--shutdown-timeout", "25h"), ("--shutdown-timeout", "-1s"),
                      ("--ring-entries", "4"), ("--ring-entries", "65536")):
        rows.append(("out of range %s %s" % (flag, val), P + [flag, val], [flag], (), 2))
    for flag, val in (("--key-update-max-rate", "0"), ("--key-update-after-records", "0"),
                      ("--handshake-timeout", "0")):
        rows.append(("out of range %s %s" % (flag, val), ["--tls-listen", L, flag, val], [flag], (), 2))
    return rows


def address_rows():
    rows = []
    for bad in ("nonsense", "127.0.0.1:99999", "127.0.0.1:", "999.1.1.1:80", "[::1]80",
                "example.com:80", "127.0.0.1:-1"):
        rows.append(("bad --listen %s" % bad, ["--listen", bad], [bad], ["not an ADDR:PORT"], 1))
    rows.append(("bad --tls-listen 1.2.3:443", ["--tls-listen", "1.2.3:443"], ["1.2.3:443"],
                 ["not an ADDR:PORT"], 1))
    return rows


def test_flags_and_addresses(t, state):
    L = "127.0.0.1:0"
    for name, argv, must, any_of, code in flag_rows(L) + address_rows():
        # TLS rows get a state directory that already holds the
        # self-signed certificate: nothing to generate, nothing to log.
        if "--tls-listen" in argv:
            argv = ["--state-dir", state] + argv
        check_row(t, name, argv, must, any_of, code)

    # In use: a listening socket without SO_REUSEPORT.
    so = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    so.bind(("127.0.0.1", 0))
    so.listen(1)
    port = so.getsockname()[1]
    addr = "127.0.0.1:%d" % port
    check_row(t, "address in use (--listen)", ["--listen", addr], [addr], ["in use"], 1)
    check_row(t, "address in use (--tls-listen, self-signed certificate already made)",
              ["--tls-listen", addr, "--state-dir", state], [addr], ["in use"], 1)
    check_row(t, "address in use (second listener)", ["--listen", "127.0.0.1:0", "--listen", addr],
              [addr], ["in use"], 1)
    so.close()
    # Not an address of this machine (TEST-NET-1, RFC 5737).
    addr = "192.0.2.1:%d" % port
    check_row(t, "address not available", ["--listen", addr], [addr], ["assign", "not available"], 1)


def test_privileged_port(t, parts):
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        start = int(f.read())
    prefix = as_user_prefix()
    if start <= 80:
        parts.skip("privileged port: ip_unprivileged_port_start is %d here" % start)
        return
    if prefix is None:
        parts.skip("privileged port: running as root without setpriv")
        return
    check_row(t, "privileged port as an unprivileged user", ["--listen", "127.0.0.1:80"],
              ["127.0.0.1:80"], ["permission denied"], 1, prefix=prefix)


def test_files(t, parts, pki, state):
    L = ["--listen", "127.0.0.1:0"]
    TL = ["--tls-listen", "127.0.0.1:0"]
    d = rt.temp_dir("rtls-files-")
    missing = os.path.join(d, "missing")
    afile = rt.write_file(os.path.join(d, "afile"), b"x")
    junk = rt.write_file(os.path.join(d, "junk.pem"), b"this is not PEM\n")
    cert, key = pki.a
    ok = ["--cert", cert, "--key", key]
    rows = [
        ("--root missing", L + ["--root", missing], ["--root", missing], ["no such file"]),
        ("--root not a directory", L + ["--root", afile], ["--root", afile], ["not a directory"]),
        ("--cert missing", TL + ["--cert", missing, "--key", key], [missing], ["cannot read"]),
        ("--cert a directory", TL + ["--cert", d, "--key", key], [d], ["cannot read"]),
        ("--cert not PEM", TL + ["--cert", junk, "--key", key], [junk], ["no PEM certificate"]),
        ("--cert is a key", TL + ["--cert", key, "--key", key], [key], ["no PEM certificate"]),
        ("--key missing", TL + ["--cert", cert, "--key", missing], [missing], ["cannot read"]),
        ("--key not a key", TL + ["--cert", cert, "--key", junk], [junk], ["no PEM private key"]),
        ("--key is a certificate", TL + ["--cert", cert, "--key", cert], ["key " + cert],
         ["no PEM private key"]),
        ("--key of another certificate", TL + ["--cert", cert, "--key", pki.b[1]], [pki.b[1], cert],
         ["does not match"]),
        ("--cert without --key", TL + ["--cert", cert], ["--cert", "--key"], ()),
        ("--client-ca missing", TL + ok + ["--client-ca", missing, "--client-auth", "require"], [missing],
         ["cannot read"]),
        ("--client-ca without certificates", TL + ok + ["--client-ca", key], [key], ()),
        ("--client-auth require without --client-ca", TL + ok + ["--client-auth", "require"],
         ["--client-ca"], ()),
        ("--ticket-key-file missing", TL + ok + ["--ticket-key-file", missing], [missing], ["cannot read"]),
        ("--ticket-key-file malformed", TL + ok + ["--ticket-key-file", junk], [junk + ":1:"],
         ["160 hex digits"]),
        ("--tls-ciphers bogus", TL + ok + ["--tls-ciphers", "NO-SUCH-CIPHER"], ["NO-SUCH-CIPHER"], ()),
        ("--tls13-ciphersuites bogus", TL + ok + ["--tls13-ciphersuites", "TLS_NO_SUCH"], ["TLS_NO_SUCH"], ()),
        ("--state-dir a regular file", TL + ["--state-dir", afile], [afile], ()),
        # Flags that cannot all take effect.
        ("TLS option without --tls-listen", L + ok, ["--cert", "--tls-listen"], ()),
        ("--no-tickets with --ticket-key-file", TL + ok + ["--no-tickets", "--ticket-key-file", junk],
         ["--no-tickets", "--ticket-key-file"], ()),
        ("--ktls off with --ktls-zerocopy", TL + ok + ["--ktls", "off", "--ktls-zerocopy"],
         ["--ktls-zerocopy", "--ktls off"], ()),
        ("--ktls off with --ktls-rx-no-rekey", TL + ok + ["--ktls", "off", "--ktls-rx-no-rekey"],
         ["--ktls-rx-no-rekey", "--ktls off"], ()),
    ]
    now = datetime.datetime.now(datetime.timezone.utc)
    fmt = "%Y%m%d%H%M%SZ"
    try:
        exp = pki.make_dated("expired", "/O=ringtls-test/CN=expired.test",
                             (now - datetime.timedelta(days=30)).strftime(fmt),
                             (now - datetime.timedelta(days=1)).strftime(fmt), san="DNS:expired.test")
        rows.append(("expired certificate", TL + ["--cert", exp[0], "--key", exp[1]], [exp[0]], ["expired"]))
    except RuntimeError as e:
        parts.skip("expired certificate: openssl ca cannot set the dates here (%s)" % e)
    for name, argv, must, any_of in rows:
        if "--tls-listen" in argv and "--state-dir" not in argv:
            argv = ["--state-dir", state] + argv
        check_row(t, name, argv, must, any_of)


def test_permissions(t, parts, pki):
    """Files and directories this user may not read or write."""
    prefix = as_user_prefix()
    if prefix is None:
        parts.skip("permission rows: no unprivileged user here (root without setpriv, or under valgrind)")
        return
    d = user_dir()
    noroot = os.path.join(d, "noroot")
    os.mkdir(noroot, 0o000)
    os.chmod(noroot, 0o000)
    cert = copy_mode(pki.a[0], os.path.join(d, "cert.pem"), 0o644)
    key = copy_mode(pki.a[1], os.path.join(d, "key.pem"), 0o644)
    cert0 = copy_mode(pki.a[0], os.path.join(d, "cert-private.pem"), 0o600)
    key0 = copy_mode(pki.a[1], os.path.join(d, "key-private.pem"), 0o600)
    ca0 = copy_mode(pki.ca[0], os.path.join(d, "ca-private.pem"), 0o600)
    tk0 = rt.write_file(os.path.join(d, "tickets-private"), os.urandom(80).hex() + "\n")
    os.chmod(tk0, 0o600)
    ro = os.path.join(d, "readonly")
    os.mkdir(ro, 0o755)
    os.chmod(ro, 0o755)
    if os.geteuid() == 0:
        for p in (noroot, cert0, key0, ca0, tk0, ro):
            os.chown(p, 0, 0)     # owned by root: nobody gets only the "other" bits
    L = ["--listen", "127.0.0.1:0"]
    TL = ["--tls-listen", "127.0.0.1:0", "--state-dir", os.path.join(d, "unused-state")]
    for name, argv, must in (
            ("--root not searchable", L + ["--root", noroot], ["--root", noroot]),
            ("--cert unreadable", TL + ["--cert", cert0, "--key", key], [cert0]),
            ("--key unreadable", TL + ["--cert", cert, "--key", key0], [key0]),
            ("--client-ca unreadable", TL + ["--cert", cert, "--key", key, "--client-ca", ca0], [ca0]),
            ("--ticket-key-file unreadable", TL + ["--cert", cert, "--key", key, "--ticket-key-file", tk0],
             [tk0]),
            ("--state-dir not writable", ["--tls-listen", "127.0.0.1:0", "--state-dir", ro], [ro]),
            ("--state-dir under a directory not writable",
             ["--tls-listen", "127.0.0.1:0", "--state-dir", os.path.join(ro, "state")],
             [os.path.join(ro, "state")])):
        check_row(t, name + " (as uid %d)" % (NOBODY if prefix else os.geteuid()), argv, must,
                  ["permission denied"], 1, prefix=prefix)
    # Control: the same user starts with the readable copies.
    p = rt.Process([*prefix, rt.RINGTLS_BIN, "serve", "--tls-listen", "127.0.0.1:0", "--threads", "1",
                    "--cert", cert, "--key", key, "--state-dir", os.path.join(d, "unused-state")],
                   name="ringtls-user")
    m = p.wait_log(r"listening on 127\.0\.0\.1:\d+ \(https\)", 10)
    t.check(m is not None, "control: the unprivileged user starts with readable files: %r" % p.log()[-300:])
    p.stop()
    t.check(not os.path.exists(os.path.join(ro, "state")), "nothing was created in the read-only directory")
    os.chmod(noroot, 0o755)


def test(t):
    parts = tu.Parts()
    parts.ran += 1
    pki = tu.Pki()
    state = rt.temp_dir("rtls-state-")
    # Make the self-signed certificate once, so TLS rows have nothing to log.
    s = tu.TlsServer(state_dir=state, log_level="info")
    s.stop()
    t.check(os.path.isfile(os.path.join(state, "selfsigned-cert.pem")), "state directory prepared")
    test_flags_and_addresses(t, state)
    test_privileged_port(t, parts)
    test_files(t, parts, pki, state)
    test_permissions(t, parts, pki)
    parts.finish()


if __name__ == "__main__":
    tu.main(test)
