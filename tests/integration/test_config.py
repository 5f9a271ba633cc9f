#!/usr/bin/env python3
"""--config FILE and `ringtls check-config` (issue 17, section 1).

A server started from a YAML file listens, serves its root and chooses
between its certificates by SNI; the command line overrides the file (a
list given there replaces the file's); check-config accepts a good file
and examples/ringtls.yaml, and lists every problem of a bad one, each as
FILE:LINE:COL: what, with exit status 2; anchors and aliases, oversized,
deep and non-regular files are refused quickly and in bounded memory."""
import os
import re
import ssl
import stat
import subprocess
import sys

import rtls_test as rt
import tls_util as tu

BIN = rt.RINGTLS_BIN
EXAMPLE = os.path.normpath(os.path.join(rt.HERE, "..", "..", "examples", "ringtls.yaml"))


def write(d, name, text):
    return rt.write_file(os.path.join(d, name), text)


def check_config(path, *args, timeout=20):
    """ringtls check-config --config PATH ARGS: (status, stdout, stderr lines)."""
    p = rt.run_cmd([BIN, "check-config", "--config", path, *args], timeout=timeout)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace").splitlines())


def expect_lines(t, what, lines, want):
    """Each line is PREFIX + message, in order: want is [(prefix, regex)]."""
    t.eq(len(lines), len(want), "%s: one line per problem: %r" % (what, lines))
    for i, (prefix, rx) in enumerate(want):
        line = lines[i] if i < len(lines) else ""
        t.check(line.startswith(prefix) and re.fullmatch(rx, line[len(prefix):]) is not None,
                "%s: line %d is %s%s: %r" % (what, i + 1, prefix, rx, line))


def start(cfg, *args):
    """ringtls serve --config CFG ARGS, and its (http, https) ports."""
    s = rt.Process([BIN, "serve", "--config", cfg, *args], name="ringtls")
    return s, s.wait_ports(rt.LISTEN_RE, tu.HTTPS_LISTEN_RE, timeout=rt.START_TIMEOUT)


def served_der(port, host):
    with tu.TlsConn(port, tu.client_ctx(), server_hostname=host) as c:
        return c.sock.getpeercert(binary_form=True)


def test_serve(t, pki, d):
    _, root = rt.make_root({"f.txt": "from the file's root\n"}, base=os.path.join(d, "a"))
    _, root2 = rt.make_root({"f.txt": "from the command line's root\n"}, base=os.path.join(d, "b"))
    cfg = write(d, "serve.yaml", """\
# a comment
listen: 127.0.0.1:0
tls-listen:
  - 127.0.0.1:0
root: %s
threads: 2
no-tls12: true
follow-symlinks: off
state-dir: %s
certificates:
  - cert: %s
    key: %s
  - {cert: %s, key: %s}
""" % (root, os.path.join(d, "state"), pki.a[0], pki.a[1], pki.b[0], pki.b[1]))
    s, (port, tport) = start(cfg)
    r = rt.curl("http://127.0.0.1:%d/f.txt" % port)
    t.eq((r.returncode, r.stdout), (0, b"from the file's root\n"), "curl over http: root from the file")
    r = rt.curl("--cacert", pki.ca[0], "--resolve", "a.test:%d:127.0.0.1" % tport,
                "https://a.test:%d/f.txt" % tport)
    t.eq((r.returncode, r.stdout), (0, b"from the file's root\n"),
         "curl over https, verified against the test CA (%r)" % r.stderr[-200:])
    for host, pair in (("a.test", pki.a), ("b.test", pki.b), ("other.test", pki.a)):
        t.eq(served_der(tport, host), tu.der_of(pair[0]),
             "SNI %s: the certificate from the file's list" % host)
    t.check(s.wait_log(r"2 reactor\(s\)") is not None, "threads: 2 from the file")
    try:
        with tu.TlsConn(tport, tu.client_ctx(max_version=ssl.TLSVersion.TLSv1_2), server_hostname="a.test"):
            refused = False
    except (ssl.SSLError, OSError):
        refused = True
    t.check(refused, "no-tls12: true from the file: a TLS 1.2 client is refused")
    tu.stop_ok(t, s, "server from a config file")

    # The command line wins: a value replaces the file's, a list replaces
    # the file's list (the file's other list stays).
    cfg2 = write(d, "serve2.yaml", open(cfg).read().replace(
        "listen: 127.0.0.1:0\n", "listen: [127.0.0.1:0, 127.0.0.1:0]\n", 1))
    s, (port, tport) = start(cfg2, "--root", root2, "--threads", "1", "--listen", "127.0.0.1:0")
    r = rt.curl("http://127.0.0.1:%d/f.txt" % port)
    t.eq((r.returncode, r.stdout), (0, b"from the command line's root\n"), "--root overrides the file's root")
    log = s.log()
    t.eq(len(re.findall(r"listening on \S+ \(http\)", log)), 1,
         "--listen replaces the file's two listeners with one")
    t.eq(len(re.findall(r"listening on \S+ \(https\)", log)), 1, "the file's tls-listen stays")
    t.check(s.wait_log(r"1 reactor\(s\)") is not None, "--threads 1 overrides threads: 2")
    tu.stop_ok(t, s, "server with overrides")

    s, (port, tport) = start(cfg, "--cert", pki.b[0], "--key", pki.b[1])
    t.eq(served_der(tport, "a.test"), tu.der_of(pki.b[0]),
         "--cert/--key replace the file's certificates")
    tu.stop_ok(t, s, "server with --cert/--key")


def example_copy(pki, d):
    """examples/ringtls.yaml with its paths pointing at files made here."""
    root = os.path.join(d, "www")
    os.makedirs(root, exist_ok=True)
    keys = write(d, "tickets.keys", os.urandom(80).hex() + "\n")
    text = open(EXAMPLE).read()
    for old, new in (("/etc/ringtls/example.com.pem", pki.a[0]), ("/etc/ringtls/example.com.key", pki.a[1]),
                     ("/etc/ringtls/example.org.pem", pki.b[0]), ("/etc/ringtls/example.org.key", pki.b[1]),
                     ("/etc/ringtls/tickets.keys", keys), ("/etc/ringtls/clients-ca.pem", pki.ca[0]),
                     ("/var/lib/ringtls", os.path.join(d, "state")), ("/srv/www", root)):
        if old not in text:
            raise AssertionError("examples/ringtls.yaml no longer names %s" % old)
        text = text.replace(old, new)
    return write(d, "example.yaml", text)


def test_check_ok(t, pki, d):
    _, root = rt.make_root({"index.html": "x"}, base=os.path.join(d, "ok"))
    good = write(d, "good.yaml", "tls-listen: [127.0.0.1:0]\nroot: %s\ncertificates:\n"
                 "  - {cert: %s, key: %s}\n" % (root, pki.a[0], pki.a[1]))
    rc, out, err = check_config(good)
    t.eq((rc, out, err), (0, "ringtls: %s: configuration OK\n" % good, []), "check-config: a good file")
    empty = write(d, "empty.yaml", "# nothing set: the defaults\n")
    rc, out, err = check_config(empty)
    t.eq((rc, out, err), (0, "ringtls: %s: configuration OK\n" % empty, []), "check-config: an empty file")
    # The command line is checked on top of the file.
    missing = os.path.join(d, "no-such-dir")
    rc, out, err = check_config(good, "--root", missing)
    t.eq((rc, err), (2, ["ringtls: --root %s: No such file or directory" % missing]),
         "check-config: --root on the command line is checked")
    t.eq(rt.run_cmd([BIN, "check-config"]).returncode, 2, "check-config without --config: usage error")

    # The example covers every option of ringtls serve and is valid.
    text = open(EXAMPLE).read()
    keys = set(re.findall(r"^([a-z0-9-]+):", text, re.M))
    helptext = rt.run_cmd([BIN, "--help"]).stdout.decode()
    flags = set(re.findall(r"--([a-z0-9-]+)", helptext)) - {"help", "version", "config", "cert", "key"}
    t.eq(sorted(flags - keys), [], "examples/ringtls.yaml sets every option of --help")
    t.check("certificates" in keys, "examples/ringtls.yaml has certificates")
    ex = example_copy(pki, d)
    rc, out, err = check_config(ex)
    t.eq((rc, out, err), (0, "ringtls: %s: configuration OK\n" % ex, []),
         "check-config: examples/ringtls.yaml (its paths made real)")


# A file with every kind of mistake the reader finds, and where each is.
BAD = """\
lsten: 127.0.0.1:0
root: [a, b]
listen:
  - {a: 1}
  - 127.0.0.1:0
threads: 0
idle-timeout: 5x
no-tls12: maybe
tls-listen: nonsense
ktls: [on]
log-level: loud
root: /tmp
follow-symlinks: [true]
cert: a.pem
certificates:
  - cert: a.pem
  - crt: x
    key: y
  - key: [k]
  - just-a-string
max-body-bytes: -1
"""
BAD_LINES = [
    ("1:1", r'unknown key "lsten"'),
    ("2:7", r"root: expected one value, not a list"),
    ("4:5", r"listen: expected an address, not a mapping"),
    ("6:10", r"threads: not a number in 1\.\.1024: '0'"),
    ("7:15", r"idle-timeout: not a duration like 500ms, 10s or 2m: '5x'"),
    ("8:11", r"no-tls12: expected true or false: 'maybe'"),
    ("9:13", r"tls-listen nonsense: not an ADDR:PORT .*"),
    ("10:7", r"ktls: expected one value, not a list"),
    ("11:12", r"log-level: expected error, warn, info or debug: 'loud'"),
    ("12:1", r"root given twice \(first on line 2\)"),
    ("13:18", r"follow-symlinks: expected true or false, not a list"),
    ("14:1", r'unknown key "cert" \(certificates: a list of \{cert, key\} pairs\)'),
    ("16:5", r"certificates: an entry needs both cert and key"),
    ("17:5", r'certificates: unknown key "crt" .*'),
    ("17:5", r"certificates: an entry needs both cert and key"),
    ("19:10", r"certificates: key: expected a file name, not a list"),
    ("19:5", r"certificates: an entry needs both cert and key"),
    ("20:5", r"certificates: expected \{cert: FILE, key: FILE\}, not one value"),
    ("21:17", r"max-body-bytes: not a number in 0\.\.\d+: '-1'"),
]


def test_bad_settings(t, d):
    bad = write(d, "bad.yaml", BAD)
    want = [("%s:%s: " % (bad, pos), rx) for pos, rx in BAD_LINES]
    rc, out, err = check_config(bad)
    t.eq((rc, out), (2, ""), "check-config: a bad file exits 2")
    expect_lines(t, "check-config, bad settings", err, want)
    s = rt.Process([BIN, "serve", "--config", bad], name="ringtls-bad")
    rc = s.wait(10)
    if rc is None:
        s.stop()
    t.eq(rc, 2, "serve --config with a bad file exits 2")
    expect_lines(t, "serve, bad settings", s.log_lines(), want)

    # A scalar where a list is expected.
    f = write(d, "scalar.yaml", "certificates: a.pem\nlisten: {a: b}\n")
    rc, _, err = check_config(f)
    t.eq(rc, 2, "certificates: one value: exit 2")
    expect_lines(t, "scalars and lists", err, [
        (f + ":1:15: ", r"certificates: expected a list of \{cert, key\} pairs, not one value"),
        (f + ":2:9: ", r"listen: expected an address or a list of addresses, not a mapping")])


def test_bad_files(t, pki, d):
    keys = write(d, "bad.keys", "hello, this is not a key\n")
    m = {k: os.path.join(d, k.replace("_", ".")) for k in ("missing_dir", "missing_pem", "missing_key", "missing_ca")}
    f = write(d, "files.yaml", """\
tls-listen: 127.0.0.1:0
root: {missing_dir}
certificates:
  - cert: {a_cert}
    key: {b_key}
  - cert: {missing_pem}
    key: {missing_key}
  - cert: {b_cert}
    key: {b_key}
client-ca: {missing_ca}
ticket-key-file: {keys}
tls-ciphers: NO-SUCH-CIPHER
tls13-ciphersuites: TLS_NO_SUCH
""".format(a_cert=pki.a[0], b_cert=pki.b[0], b_key=pki.b[1], keys=keys, **m))
    rc, out, err = check_config(f)
    t.eq((rc, out), (2, ""), "check-config: unreadable and mismatched files exit 2")
    enoent = re.escape(os.strerror(2))
    expect_lines(t, "check-config, files", err, [
        (f + ":2:7: ", r"root %s: %s" % (re.escape(m["missing_dir"]), enoent)),
        (f + ":5:10: ", r"key %s does not match certificate %s" % (re.escape(pki.b[1]), re.escape(pki.a[0]))),
        (f + ":6:11: ", r"cannot read certificate %s: %s" % (re.escape(m["missing_pem"]), enoent)),
        (f + ":7:10: ", r"cannot read key %s: %s" % (re.escape(m["missing_key"]), enoent)),
        (f + ":12:14: ", r"TLS 1\.2 ciphers 'NO-SUCH-CIPHER': .*"),
        (f + ":13:21: ", r"TLS 1\.3 cipher suites 'TLS_NO_SUCH': .*"),
        (f + ":11:18: ", r"%s:1: expected 160 hex digits .*" % re.escape(keys)),
        (f + ":10:12: ", r"cannot read client CA %s: %s" % (re.escape(m["missing_ca"]), enoent)),
    ])


def test_syntax(t, d):
    """One line each: libyaml's problem, where it is, and its context."""
    for name, text, rx in (
            ("unclosed", "root: /tmp\nlisten: [127.0.0.1:0\nthreads: 1\n",
             r"3:8: did not find expected ',' or '\]' \(while parsing a flow sequence at line 2, column 9\)"),
            ("mapping-in-value", "root: a: b\n", r"1:8: mapping values are not allowed in this context"),
            ("two-documents", "threads: 1\n---\nthreads: 2\n", r"2:1: a second document .*"),
            ("top-level-list", "- listen\n", r"1:1: expected settings \(key: value lines\), not a list"),
            ("bad-utf8", "root: \xff\n", r"\d+:\d+: invalid leading UTF-8 octet \(byte 6\)"),
    ):
        f = write(d, name + ".yaml", text.encode("latin-1"))
        rc, out, err = check_config(f)
        t.eq(rc, 2, "syntax %s: exit 2" % name)
        t.eq(len(err), 1, "syntax %s: one line: %r" % (name, err))
        line = err[0] if err else ""
        t.check(line.startswith(f + ":") and re.fullmatch(rx, line[len(f) + 1:]) is not None,
                "syntax %s: %s:%s: %r" % (name, f, rx, line))


RUSAGE = """\
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.buffer.write(p.stderr)
print(p.returncode, r.ru_maxrss, r.ru_utime + r.ru_stime)
"""


def measured(cfg):
    """check-config --config CFG in a child of its own: (status, max RSS in
    KiB, CPU seconds, stderr lines)."""
    p = subprocess.run([sys.executable, "-c", RUSAGE, *rt.wrapped([BIN, "check-config", "--config", cfg])],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=rt.scaled(30))
    rc, rss, cpu = p.stdout.split()
    return int(rc), int(rss), float(cpu), p.stderr.decode("utf-8", "replace").splitlines()


def test_hostile(t, d):
    small = write(d, "small.yaml", "listen: 127.0.0.1:0\n")
    rc, base_rss, base_cpu, err = measured(small)
    t.eq((rc, err), (0, []), "baseline: a small file is OK")
    lol = ["a: &a [" + ", ".join(['"lol"'] * 10) + "]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lol.append("%s: &%s [%s]" % (cur, cur, ", ".join(["*" + prev] * 10)))
    bomb = write(d, "bomb.yaml", "\n".join(lol) + "\n")
    big = os.path.join(d, "big.yaml")
    with open(big, "w") as f:
        line = "# " + "x" * 97 + "\n"
        f.write(line * (10 * 1024 * 1024 // len(line)))
    deep = write(d, "deep.yaml", "root: " + "[" * 200000 + "\n")
    many = write(d, "many.yaml", "".join("k%d: 1\n" % i for i in range(5000)))
    fifo = os.path.join(d, "fifo.yaml")
    os.mkfifo(fifo)
    for what, cfg, prefix, rx in (
            ("alias bomb", bomb, bomb + ":1:4: ", r"anchors and aliases \(&, \*\) are not allowed .*"),
            ("10 MB file", big, "ringtls: --config %s: " % big, r"larger than 1 MiB"),
            ("deep nesting", deep, deep + ":1:", r"\d+: (root: expected one value, not a list|"
                                                 r"nested deeper than 16 levels)"),
            ("5000 unknown keys", many, many + ":", r".*"),
            ("a FIFO", fifo, "ringtls: --config %s: " % fifo, r"not a regular file"),
            ("a directory", d, "ringtls: --config %s: " % d, r"not a regular file"),
            ("/dev/zero", "/dev/zero", "ringtls: --config /dev/zero: ", r"not a regular file"),
            ("missing", os.path.join(d, "nope.yaml"), "ringtls: --config %s: " % os.path.join(d, "nope.yaml"),
             re.escape(os.strerror(2)))):
        rc, rss, cpu, err = measured(cfg)
        t.eq(rc, 2, "%s: exit 2" % what)
        t.check(err and all(l.startswith(prefix) and re.fullmatch(rx, l[len(prefix):]) for l in err[:2]),
                "%s: %s%s: %r" % (what, prefix, rx, err[:3]))
        t.check(rss <= base_rss + 16 * 1024, "%s: max RSS %d KiB (a small file: %d KiB)" % (what, rss, base_rss))
        t.check(cpu <= base_cpu + rt.scaled(1.0), "%s: %.2f s of CPU (a small file: %.2f s)" % (what, cpu, base_cpu))
        if what == "alias bomb":
            t.eq(len(err), 1, "alias bomb: one line")
        if what == "deep nesting":
            t.check(any(l.endswith("nested deeper than 16 levels") for l in err), "deep nesting: said so")
        if what == "5000 unknown keys":
            t.eq(len(err), 101, "5000 problems: 100 lines and one saying the rest are not listed")
    t.check(stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO is still there")


def test(t):
    rt.need_binary(BIN, "ringtls")
    rt.need_curl()
    pki = tu.Pki()
    d = rt.temp_dir("rtls-config-")
    test_serve(t, pki, d)
    test_check_ok(t, pki, d)
    test_bad_settings(t, d)
    test_bad_files(t, pki, d)
    test_syntax(t, d)
    test_hostile(t, d)


if __name__ == "__main__":
    rt.main(test, watchdog=240)
