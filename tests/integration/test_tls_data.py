#!/usr/bin/env python3
"""Data over TLS: a 50 MB file verified by sha256, keep-alive, requests
pipelined in the same TCP segment as the client's Finished, and the ends
of a connection: the server's close_notify after `Connection: close` (and
HTTP/1.0, and the idle timeout), a client's close_notify answered in kind,
and a TCP close without close_notify logged as truncated."""
import hashlib
import os
import re
import ssl
import time

import rtls_test as rt
import tls_util as tu

TLS13 = ssl.TLSVersion.TLSv1_3
TLS12 = ssl.TLSVersion.TLSv1_2
BIG = 50 * 1024 * 1024


def python_download(t, s, ca, want):
    """The 50 MB file through Python's ssl, verified against the
    self-signed certificate, hashed as it streams."""
    ctx = tu.client_ctx(verify=True, cafile=ca)
    with tu.TlsConn(s.port, ctx, server_hostname="localhost", timeout=20) as c:
        c.send(tu.req("/big.bin"))
        rd = c.reader
        while b"\r\n\r\n" not in rd.buf:
            rd.buf += c.sock.recv(65536)
        head, rest = rd.buf.split(b"\r\n\r\n", 1)
        rd.buf = b""
        t.check(head.startswith(b"HTTP/1.1 200 ") and (b"Content-Length: %d" % BIG) in head,
                "python 50 MB: status and Content-Length: %r" % head)
        h = hashlib.sha256(rest)
        got = len(rest)
        while got < BIG:
            chunk = c.sock.recv(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        t.eq((got, h.hexdigest()), (BIG, want), "python ssl 50 MB: size and sha256")
        if got != BIG:
            return
        # The connection is still good for another request.
        t.eq(c.request("/hello").body, tu.HELLO, "python 50 MB: /hello after it on the same connection")


def test_big_file(t, parts):
    d = tu.temp_dir("rtls-data-")
    root = os.path.join(d, "root")
    os.makedirs(root)
    data = os.urandom(BIG)
    want = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(data)
    del data
    s = tu.TlsServer(root=root)
    ca = os.path.join(s.state_dir, "selfsigned-cert.pem")
    python_download(t, s, ca, want)
    if not parts.need("curl", "50 MB download with curl"):
        tu.stop_ok(t, s)
        return
    for version, flags in (("TLSv1.3", ["--tlsv1.3"]), ("TLSv1.2", ["--tlsv1.2", "--tls-max", "1.2"])):
        out = os.path.join(d, "got-%s.bin" % version)
        r = tu.curl_run("--max-time", "30", "--cacert", ca, *flags, "-v",
                        "-o", out, "-w", "%{http_code} %{size_download}",
                        s.url("/big.bin", host="localhost"), timeout=40)
        err = r.stderr.decode("utf-8", "replace")
        t.eq((r.returncode, r.stdout.decode()), (0, "200 %d" % BIG),
             "curl %s 50 MB: exit status, status and size (%s)" % (version, err[-300:]))
        m = tu.CURL_TLS_RE.search(err)
        t.eq(m.group(1) if m else None, version, "curl %s 50 MB: version" % version)
        h = hashlib.sha256()
        if os.path.exists(out):
            with open(out, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            os.unlink(out)
        t.eq(h.hexdigest(), want, "curl %s 50 MB: sha256" % version)
    # The same file and /hello on one connection: a file body leaves the
    # record stream in order.
    r = tu.curl_run("--max-time", "30", "--cacert", ca, "-v", "-o", "/dev/null",
                    s.url("/big.bin", host="localhost"), s.url("/hello", host="localhost"),
                    "-w", "%{size_download};", timeout=40)
    err = r.stderr.decode("utf-8", "replace")
    t.eq((r.returncode, r.stdout), (0, b"%d;Hello, World!13;" % BIG),
         "curl: 50 MB then /hello on one connection")
    t.check("Re-using existing connection" in err, "curl: the second request reused the connection")
    tu.stop_ok(t, s)


def test_keepalive(t, s):
    for version, vname in ((TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")):
        mark = s.mark()
        with tu.TlsConn(s.port, tu.client_ctx(min_version=version, max_version=version)) as c:
            port = c.local_port
            bodies = []
            for i in range(10):
                r = c.request("/hello" if i % 2 == 0 else "/")
                bodies.append(r.body if i % 2 == 0 else tu.page_cells(r.body).get("version"))
            c.sock.unwrap()
        t.eq(bodies, [tu.HELLO, vname] * 5, "%s keep-alive: 10 requests on one connection" % vname)
        hs = [l for l in s.tls_lines(port, mark) if " resumed=" in l]
        t.eq(len(hs), 1, "%s keep-alive: one handshake for the 10 requests" % vname)


def test_request_body(t, s):
    """A request body in full 16 KiB records, each longer than a receive
    buffer: a record's plaintext must not overwrite the ciphertext of the
    next one, still unread in the same buffer (in-place decryption)."""
    body = bytes(range(256)) * 1200  # 300 KiB: 19 full records
    for version, vname in ((TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")):
        with tu.TlsConn(s.port, tu.client_ctx(min_version=version, max_version=version)) as c:
            got = []
            for _ in range(3):
                c.send(rt.request("GET", "/hello", headers=["Content-Length: %d" % len(body)],
                                  body=body))
                r = c.read_response()
                got.append((r.status, r.body))
                r = c.request("/hello")
                got.append((r.status, r.body))
        t.eq(got, [(200, tu.HELLO)] * 6,
             "%s: three GETs with a 300 KiB body, each followed by a plain GET" % vname)


def pipelined_with_finished(t, s, version, vname, nreq, session=None, ctx=None):
    what = "%s%s Finished + %d pipelined requests in one segment" % (
        vname, " resumed" if session else "", nreq)
    ctx = ctx or tu.client_ctx(min_version=version, max_version=version)
    c = tu.BioClient(s.port, ctx, session=session)
    try:
        c.handshake(send_last=False)
        finished = c.pending_out()
        targets = ["/hello?%d" % i if i % 2 == 0 else "/?%d" % i for i in range(nreq)]
        for target in targets:
            c.obj.write(tu.req(target))
        app = c.pending_out()
        recs_fin, rest_fin = tu.parse_records(finished)
        recs_app, rest_app = tu.parse_records(app)
        t.check(len(recs_fin) >= 1 and not rest_fin,
                "%s: the client's last flight is pending: %d record(s)" % (what, len(recs_fin)))
        t.eq((len(recs_app), rest_app), (nreq, b""), "%s: one record per request" % what)
        if session is not None:
            t.eq(c.obj.session_reused, True, "%s: abbreviated handshake" % what)
        c.sock.sendall(finished + app)      # one send: one segment on loopback
        rd = c.reader()
        got = []
        for target in targets:
            r = rd.read_response()
            if target.startswith("/hello"):
                got.append(r.body)
            else:
                cells = tu.page_cells(r.body)
                got.append((cells.get("version"), cells.get("resumed")))
        want = [tu.HELLO if x.startswith("/hello") else (vname, "yes" if session else "no")
                for x in targets]
        t.eq(got, want, "%s: all responses, in order" % what)
    except (ssl.SSLError, EOFError, OSError) as e:
        t.check(False, "%s: %s: %s" % (what, type(e).__name__, e))
    finally:
        c.close()


def test_pipelined_finished(t, s):
    pipelined_with_finished(t, s, TLS13, "TLSv1.3", 2)
    pipelined_with_finished(t, s, TLS13, "TLSv1.3", 16)
    # TLS 1.2: the client's Finished comes last only when resuming.
    ctx = tu.client_ctx(min_version=TLS12, max_version=TLS12)
    _, _, _, sess, _ = tu.get(s.port, "/hello", ctx)
    pipelined_with_finished(t, s, TLS12, "TLSv1.2", 2, session=sess, ctx=ctx)


def close_notify_after(t, s, version, vname, request, what, status=200, body=tu.HELLO):
    """Sends one request that ends the connection; the response, then the
    server's close_notify, then TCP EOF must follow."""
    c = tu.BioClient(s.port, tu.client_ctx(min_version=version, max_version=version))
    try:
        c.handshake()
        c.write(request)
        rd = c.reader()
        try:
            r = rd.read_response()
            t.eq((r.status, r.body if body is not None else None), (status, body),
                 "%s: the response" % what)
        except (EOFError, ssl.SSLError) as e:
            t.check(False, "%s: the response: %s: %s" % (what, type(e).__name__, e))
            return
        try:
            tail = c.read_some()
            t.eq(tail, b"", "%s: close_notify right after the response" % what)
        except EOFError as e:
            t.check(False, "%s: close_notify: %s" % (what, e))
        data, how = tu.recv_until_closed(c.sock, timeout=3)
        t.eq((data, how), (b"", "eof"), "%s: then TCP EOF" % what)
    except (ssl.SSLError, EOFError, OSError) as e:
        t.check(False, "%s: %s: %s" % (what, type(e).__name__, e))
    finally:
        c.close()


def test_orderly_close(t, s):
    for version, vname in ((TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")):
        close_notify_after(t, s, version, vname, tu.req("/hello", headers=["Connection: close"]),
                           "%s Connection: close" % vname)
    close_notify_after(t, s, TLS13, "TLSv1.3", b"GET /hello HTTP/1.0\r\nHost: localhost\r\n\r\n",
                       "TLSv1.3 HTTP/1.0 request")
    # An error response closes the connection too.
    close_notify_after(t, s, TLS13, "TLSv1.3",
                       b"GET /hello HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n",
                       "TLSv1.3 malformed request (400)", status=400, body=None)

    # The client says close_notify: the server answers with its own and
    # closes, and does not call it a truncation.
    for version, vname in ((TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")):
        what = "%s client close_notify" % vname
        mark = s.mark()
        c = tu.BioClient(s.port, tu.client_ctx(min_version=version, max_version=version))
        try:
            c.handshake()
            c.write(tu.req("/hello"))
            r = c.reader().read_response()
            t.eq(r.body, tu.HELLO, "%s: a keep-alive request first" % what)
            try:
                c.obj.unwrap()
                t.check(False, "%s: unwrap finished before the server answered" % what)
            except ssl.SSLWantReadError:
                pass
            c.sock.sendall(c.pending_out())
            answered = False
            end = time.monotonic() + 3
            while time.monotonic() < end and not answered:
                try:
                    c.obj.unwrap()
                    answered = True
                except ssl.SSLWantReadError:
                    if not c.recv_raw():
                        break
            t.check(answered, "%s: the server answered with close_notify" % what)
            data, how = tu.recv_until_closed(c.sock, timeout=3)
            t.eq((data, how), (b"", "eof"), "%s: then TCP EOF" % what)
        except (ssl.SSLError, EOFError, OSError) as e:
            t.check(False, "%s: %s: %s" % (what, type(e).__name__, e))
        finally:
            c.close()
        time.sleep(0.2)
        t.eq([l for l in s.tls_lines(c.local_port, mark) if "truncated" in l], [],
             "%s: no 'truncated' line" % what)

    # s_client: stdin EOF makes it send close_notify; same outcome.
    mark = s.mark()
    r = tu.s_client(s.port, send=tu.req("/hello"), until=r"Hello, World!")
    t.check("Hello, World!" in r.out and r.rc == 0 and not r.timed_out,
            "s_client with close_notify: served and exited 0: %r" % r)
    time.sleep(0.2)
    t.eq([l for l in s.lines_since(mark) if "truncated" in l], [],
         "s_client with close_notify: no 'truncated' line")

    # A TCP close without close_notify: logged as truncated, at info.
    for version, vname in ((TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")):
        mark = s.mark()
        c = tu.TlsConn(s.port, tu.client_ctx(min_version=version, max_version=version))
        port = c.local_port
        t.eq(c.request("/hello").body, tu.HELLO, "%s truncation: a request first" % vname)
        c.close()   # SSLSocket.close(): no close_notify
        line = s.wait_line(r" tls 127\.0\.0\.1:%d: .*truncated" % port, since=mark)
        t.check(line is not None and re.search(r" info tls .*connection truncated", line),
                "%s TCP FIN without close_notify: info line 'truncated': %r"
                % (vname, s.lines_since(mark)))


def test_idle_close_notify(t):
    """A keep-alive connection the server ends (idle timeout) also ends
    with close_notify."""
    s = tu.TlsServer("--idle-timeout", "1s", log_level="info")
    c = tu.BioClient(s.port)
    try:
        c.handshake()
        c.write(tu.req("/hello"))
        t.eq(c.reader().read_response().body, tu.HELLO, "idle timeout: a request first")
        c.sock.settimeout(4)
        try:
            tail = c.read_some()
            t.eq(tail, b"", "idle timeout: the server's close_notify")
        except (EOFError, ssl.SSLError, OSError) as e:
            t.check(False, "idle timeout: close_notify: %s: %s" % (type(e).__name__, e))
    finally:
        c.close()
    tu.stop_ok(t, s)


def test(t):
    parts = tu.Parts()
    parts.ran += 1
    test_big_file(t, parts)
    s = tu.TlsServer(log_level="debug")
    test_keepalive(t, s)
    test_request_body(t, s)
    test_pipelined_finished(t, s)
    t.eq(s.alive(), True, "server still running")
    tu.stop_ok(t, s)
    s = tu.TlsServer(log_level="info")
    test_orderly_close(t, s)
    t.eq(s.alive(), True, "server still running")
    tu.stop_ok(t, s)
    test_idle_close_notify(t)
    parts.finish()


if __name__ == "__main__":
    tu.main(test)
