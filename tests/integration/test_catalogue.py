#!/usr/bin/env python3
"""Runs every entry of the bad-input catalogue (tests/catalogue/catalogue.json)
against one server with a plaintext and a TLS listener, and checks for
each: the outcome the catalogue expects (an HTTP status and then the
close, a fatal TLS alert and then the close, or a close with nothing
sent), at most one log line, and that the server then still serves a
normal request (plaintext, and TLS for the TLS entries). The catalogue's
`about` says how entries are written."""
import json
import os
import socket
import ssl
import struct
import time

import abuse_util as au
import rtls_test as rt
import tls_util as tu

CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "catalogue", "catalogue.json")
WAIT = 3.0        # an outcome must show within this many seconds

# RFC 8446 §6 (and RFC 7301 for no_application_protocol).
ALERTS = {"close_notify": 0, "unexpected_message": 10, "bad_record_mac": 20, "record_overflow": 22,
          "handshake_failure": 40, "bad_certificate": 42, "illegal_parameter": 47, "decode_error": 50,
          "decrypt_error": 51, "protocol_version": 70, "insufficient_security": 71,
          "internal_error": 80, "missing_extension": 109, "unsupported_extension": 110,
          "unrecognized_name": 112, "no_application_protocol": 120}
KINDS = ("plain", "tls", "tls-raw", "tls-record", "tls12-record")


# --------------------------------------------------------------------------
# Building the bytes


def record(rtype, body, version="0303", length=None):
    return bytes([rtype]) + bytes.fromhex(version) + struct.pack(">H", len(body) if length is None
                                                                 else length) + body


def sni_ext(name):
    """A server_name extension (RFC 6066 §3) naming one host_name, given
    as latin-1 text so that any byte can be written."""
    host = name.encode("latin-1")
    entry = b"\x00" + struct.pack(">H", len(host)) + host
    body = struct.pack(">H", len(entry)) + entry
    return b"\x00\x00" + struct.pack(">H", len(body)) + body


def hand_hello(h):
    """A ClientHello handshake message in a record (version 0301), from
    hex fields: version, suites, compression, session_id, extensions
    (absent: no extension block at all); sni (text) puts a server_name
    extension first."""
    sid = bytes.fromhex(h.get("session_id", ""))
    suites = bytes.fromhex(h["suites"])
    comp = bytes.fromhex(h.get("compression", "00"))
    body = (bytes.fromhex(h["version"]) + bytes(32) + bytes([len(sid)]) + sid +
            struct.pack(">H", len(suites)) + suites + bytes([len(comp)]) + comp)
    if "extensions" in h or "sni" in h:
        ext = (sni_ext(h["sni"]) if "sni" in h else b"") + bytes.fromhex(h.get("extensions", ""))
        body += struct.pack(">H", len(ext)) + ext
    return record(22, b"\x01" + struct.pack(">I", len(body))[1:] + body, "0301")


def python_hello(version, alpn):
    v = ssl.TLSVersion.TLSv1_3 if version == "tls13" else ssl.TLSVersion.TLSv1_2
    return tu.client_hello_bytes(tu.client_ctx(min_version=v, max_version=v, alpn=tuple(alpn)))


def validators(t, s, path):
    """The ETag and Last-Modified the server gives for path now; for one
    it does not send, a value that matches nothing (an empty one could
    read as no condition at all, and pass for the wrong reason)."""
    with s.connect() as c:
        c.send(rt.request("HEAD", path))
        r = c.read_response(head=True)
    t.eq(r.status, 200, "HEAD %s for its validators" % path)
    return {"etag_of": r.header("ETag") or '"none"',
            "last_modified_of": r.header("Last-Modified") or "Thu, 01 Jan 1970 00:00:00 GMT"}


def build(parts, fetch=None):
    """The bytes of an entry's send parts; fetch(path) gives the validators
    for {etag_of} and {last_modified_of}."""
    out = b""
    for p in parts:
        if isinstance(p, str):
            out += p.encode("latin-1")
        elif "repeat" in p:
            out += p["repeat"].encode("latin-1") * p["n"]
        elif "headers" in p:
            out += b"".join(b"X-H%d: v\r\n" % i for i in range(p["headers"]))
        elif "record" in p:
            body = bytes.fromhex(p.get("hex", "")) + bytes(p.get("zeros", 0)) + os.urandom(p.get("random", 0))
            out += record(p["record"], body, p.get("version", "0303"), p.get("length"))
        elif "hello" in p:
            out += hand_hello(p["hello"])
        elif "clienthello" in p:
            h = python_hello(p["clienthello"], p.get("alpn", ["http/1.1"]))
            out += h[:p["cut"]] if "cut" in p else h
        elif "hex" in p:
            out += bytes.fromhex(p["hex"])
        elif "etag_of" in p or "last_modified_of" in p:
            key = "etag_of" if "etag_of" in p else "last_modified_of"
            out += fetch(p[key])[key].encode("latin-1")
        else:
            raise ValueError("unknown send part %r" % p)
    return out


# --------------------------------------------------------------------------
# Reading what comes back


def responses(data):
    """HTTP responses in data: [(status, head)], and the bytes left over."""
    out = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        line = head.split(b"\r\n", 1)[0]
        if not line.startswith(b"HTTP/1.1 ") or len(line) < 12:
            break
        n = 0
        for h in head.split(b"\r\n")[1:]:
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v.strip())
        if len(rest) < n:
            break
        out.append((int(line[9:12]), head))
        data = rest[n:]
    return out, data


def read_all(recv, timeout=WAIT):
    """Calls recv() until EOF; returns (bytes, how: eof/reset/timeout)."""
    end = time.monotonic() + timeout
    data = b""
    while time.monotonic() < end:
        try:
            d = recv()
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        except ssl.SSLError as e:
            return data, "ssl: %s" % e.reason
        if not d:
            return data, "eof"
        data += d
    return data, "timeout"


def sock_recv(so):
    so.settimeout(0.2)
    return lambda: so.recv(65536)


def tls_recv(c):
    c.sock.settimeout(0.2)
    return lambda: c.sock.recv(65536)


def check_http(t, name, exp, data, how):
    want = exp["statuses"] if "statuses" in exp else [exp["status"]]
    got, rest = responses(data)
    t.eq([st for st, _ in got], want, "%s: response status(es)" % name)
    t.eq(rest, b"", "%s: nothing after the response(s)" % name)
    if got:
        t.check(b"\r\nConnection: close" in got[-1][1], "%s: the last response says Connection: close" % name)
    t.check(how in ("eof", "reset"), "%s: closed after the response (%s)" % (name, how))


# --------------------------------------------------------------------------
# One entry


def send_raw(so, data, then):
    try:
        so.sendall(data)
        if then == "fin":
            so.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass   # the server may answer and close before all of it is sent


def run_plainish(t, s, e, data):
    """plain and tls-raw: bytes on a fresh TCP connection."""
    port = s.port if e["port"] == "plain" else s.tls_port
    so = socket.create_connection(("127.0.0.1", port), timeout=5)
    local = so.getsockname()[1]
    send_raw(so, data, e.get("then"))
    got, how = read_all(sock_recv(so))
    so.close()
    exp, name = e["expect"], e["name"]
    if "status" in exp or "statuses" in exp:
        check_http(t, name, exp, got, how)
    elif "alert" in exp:
        recs, rest = tu.parse_records(got)
        t.eq(([(r[0], r[2]) for r in recs], rest), ([(21, bytes([2, ALERTS[exp["alert"]]]))], b""),
             "%s: one fatal %s alert" % (name, exp["alert"]))
        t.check(how in ("eof", "reset"), "%s: closed after the alert (%s)" % (name, how))
    else:
        t.eq((got, how in ("eof", "reset")), (b"", True), "%s: closed with nothing sent (%s)" % (name, how))
    return local


def run_tls(t, s, e, data):
    """HTTP bytes inside an established TLS session."""
    c = tu.TlsConn(s.tls_port)
    local = c.local_port
    try:
        c.sock.sendall(data)
        if e.get("then") == "fin":
            c.sock.unwrap()
    except (ssl.SSLError, OSError):
        pass
    got, how = read_all(tls_recv(c))
    c.close()
    exp = e["expect"]
    if "status" in exp or "statuses" in exp:
        check_http(t, e["name"], exp, got, how)
    else:
        t.eq((got, how in ("eof", "reset")), (b"", True), "%s: closed with nothing sent (%s)" % (e["name"], how))
    return local


def run_record(t, s, e, data):
    """Raw records after a completed handshake; the alert read through the
    session."""
    v = ssl.TLSVersion.TLSv1_2 if e["port"] == "tls12-record" else ssl.TLSVersion.TLSv1_3
    c = tu.BioClient(s.tls_port, tu.client_ctx(min_version=v, max_version=v))
    local = c.local_port
    name = e["name"]
    try:
        c.handshake()
        c.write(tu.req("/hello"))
        t.eq(c.reader().read_response().body, tu.HELLO, "%s: the session works before" % name)
        send_raw(c.sock, data, e.get("then"))
        got, how = read_all(sock_recv(c.sock))
        t.check(how in ("eof", "reset"), "%s: closed (%s)" % (name, how))
        exp = e["expect"]
        if "alert" in exp:
            a = c.alert_in(got).upper().replace(" ", "_")
            t.check("ALERT_" + exp["alert"].upper() in a, "%s: a %s alert: %r" % (name, exp["alert"], a))
        else:
            t.eq(got, b"", "%s: closed with nothing sent" % name)
    except (ssl.SSLError, EOFError, OSError) as ex:
        t.check(False, "%s: %s: %s" % (name, type(ex).__name__, ex))
    finally:
        c.close()
    return local


def healthy(t, s, name, tls):
    try:
        with s.connect() as c:
            c.send(rt.request("GET", "/hello"))
            t.eq(c.read_response().body, tu.HELLO, "%s: a plaintext request afterwards" % name)
        if tls:
            with s.tls_connect() as c:
                t.eq(c.request("/hello").body, tu.HELLO, "%s: a TLS request afterwards" % name)
                c.sock.unwrap()
    except (OSError, EOFError, rt.ConnClosed, ssl.SSLError) as ex:
        t.check(False, "%s: the server after it: %s: %s" % (name, type(ex).__name__, ex))


def test(t):
    with open(CATALOGUE) as f:
        cat = json.load(f)
    entries = cat["entries"]
    names = [e["name"] for e in entries]
    t.eq(len(names), len(set(names)), "catalogue: entry names are unique")
    t.check(len(entries) >= 40, "catalogue: %d entries" % len(entries))
    for e in entries:
        t.check(e["port"] in KINDS and len(e["expect"]) == 1 and e.get("why"),
                "catalogue entry %r: a known port kind, one expected outcome, a why" % e["name"])
        if "alert" in e["expect"]:
            t.check(e["expect"]["alert"] in ALERTS, "%r: a known alert name" % e["name"])
    _, root = rt.make_root({"hello.txt": b"hello\n", "sub/index.html": b"<p>sub</p>\n"})
    args = [root if a == "ROOT" else a for a in cat["server"]]
    i = args.index("--threads")
    s = au.DualServer(*(args[:i] + args[i + 2:]), threads=int(args[i + 1]))
    ran = {k: 0 for k in KINDS}
    for e in entries:
        name = "[%s] %s" % (e["port"], e["name"])
        data = build(e["send"], lambda path: validators(t, s, path))
        mark = s.mark()
        kind = e["port"]
        if kind in ("plain", "tls-raw"):
            local = run_plainish(t, s, e, data)
        elif kind == "tls":
            local = run_tls(t, s, e, data)
        else:
            local = run_record(t, s, e, data)
        ran[kind] += 1
        time.sleep(0.05)
        lines = s.lines_since(mark)
        t.check(len(lines) <= 1, "%s: at most one log line: %r" % (name, lines))
        if lines:
            t.check(":%d:" % local in lines[0], "%s: the log line names the client (port %d): %r"
                    % (name, local, lines[0]))
        t.check(s.alive(), "%s: the server is running" % name)
        healthy(t, s, name, kind != "plain")
    print("ran %d entries: %s" % (sum(ran.values()), ", ".join("%s %d" % kv for kv in ran.items())))
    t.eq(sum(ran.values()), len(entries), "every entry ran")
    t.eq(s.stop(), 0, "exit status after SIGTERM")


if __name__ == "__main__":
    tu.main(test)
