#!/usr/bin/env python3
"""Every error a client can cause: exact status, Connection: close and the
connection closed, exactly one log line, and the server fine afterwards.
Also: request bodies are skipped and the request after them is answered."""
import select
import time

import rtls_test as rt

HELLO = b"Hello, World!"
REASON = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout",
          413: "Content Too Large", 414: "URI Too Long", 431: "Request Header Fields Too Large",
          501: "Not Implemented", 505: "HTTP Version Not Supported"}
HEADER_TIMEOUT = 1.0   # --header-timeout 1s
MAX_BODY = 1000        # --max-body-bytes 1000
MAX_HEADERS = 10       # --max-headers 10


def H(*lines):
    """A raw request head from lines (CRLF-joined, blank line added)."""
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


CASES = [
    # (name, bytes, status)
    ("malformed request line", b"GARBAGE\r\n\r\n", 400),
    ("request line without version", b"GET /\r\n\r\n", 400),
    ("two spaces in request line", H("GET  / HTTP/1.1", "Host: x"), 400),
    ("lower-case version", H("GET / http/1.1", "Host: x"), 400),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("target with a control byte", b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("header name with a space", H("GET / HTTP/1.1", "Host: x", "Bad Header: y"), 400),
    ("header line without colon", H("GET / HTTP/1.1", "Host: x", "NoColonHere"), 400),
    ("space before the colon", H("GET / HTTP/1.1", "Host : x"), 400),
    ("obs-fold", H("GET / HTTP/1.1", "Host: x", "X-A: 1", " folded"), 400),
    ("NUL in a header value", H("GET / HTTP/1.1", "Host: x", "X-A: a\x00b"), 400),
    ("missing Host in HTTP/1.1", H("GET /hello HTTP/1.1", "Accept: */*"), 400),
    ("missing Host in HTTP/1.9 (read as 1.1)", H("GET /hello HTTP/1.9", "Accept: */*"), 400),
    ("two Host headers", H("GET /hello HTTP/1.1", "Host: a", "Host: b"), 400),
    # RFC 9110 §4.2.1: an http URI with an empty host is invalid.
    ("empty Host", H("GET /hello HTTP/1.1", "Host:"), 400),
    ("empty Host in HTTP/1.0", H("GET /hello HTTP/1.0", "Host: "), 400),
    ("Content-Length and Transfer-Encoding",
     H("GET /hello HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n", 400),
    # RFC 9112 §6.1: an empty Transfer-Encoding is still one.
    ("empty Transfer-Encoding and Content-Length",
     H("GET /hello HTTP/1.1", "Host: x", "Transfer-Encoding:", "Content-Length: 5") + b"hello", 400),
    ("empty Transfer-Encoding", H("GET /hello HTTP/1.1", "Host: x", "Transfer-Encoding: "), 400),
    ("Content-Length not a number", H("GET /hello HTTP/1.1", "Host: x", "Content-Length: abc"), 400),
    ("negative Content-Length", H("GET /hello HTTP/1.1", "Host: x", "Content-Length: -1"), 400),
    ("conflicting Content-Lengths", H("GET /hello HTTP/1.1", "Host: x", "Content-Length: 1", "Content-Length: 2"), 400),
    ("Transfer-Encoding in HTTP/1.0", H("GET /hello HTTP/1.0", "Transfer-Encoding: chunked"), 400),
    ("target not a path", H("GET hello HTTP/1.1", "Host: x"), 400),
    ("POST", H("POST /hello HTTP/1.1", "Host: x", "Content-Length: 5") + b"hello", 405),
    ("PUT", H("PUT /x HTTP/1.1", "Host: x", "Content-Length: 0"), 405),
    ("DELETE", H("DELETE /hello HTTP/1.1", "Host: x"), 405),
    ("OPTIONS *", H("OPTIONS * HTTP/1.1", "Host: x"), 400),
    ("Content-Length over --max-body-bytes",
     H("GET /hello HTTP/1.1", "Host: x", "Content-Length: %d" % (MAX_BODY + 1)), 413),
    ("huge Content-Length", H("GET /hello HTTP/1.1", "Host: x", "Content-Length: 99999999999999999999999"), 413),
    ("request-target of 8001 bytes", H("GET /" + "a" * 8000 + " HTTP/1.1", "Host: x"), 414),
    ("request-target of 20000 bytes", H("GET /" + "a" * 20000 + " HTTP/1.1", "Host: x"), 414),
    ("%d header fields" % (MAX_HEADERS + 1),
     H("GET /hello HTTP/1.1", "Host: x", *["X-H%d: v" % i for i in range(MAX_HEADERS)]), 431),
    ("head over 8192 bytes", H("GET /hello HTTP/1.1", "Host: x", "X-Big: " + "b" * 9000), 431),
    ("head over 8192 bytes in many fields",
     H("GET /hello HTTP/1.1", "Host: x", *["X-H%d: %s" % (i, "c" * 1000) for i in range(9)]), 431),
    # RFC 9112 §6.3: chunked not final, the body length is unknowable: 400.
    ("Transfer-Encoding: gzip", H("GET /hello HTTP/1.1", "Host: x", "Transfer-Encoding: gzip"), 400),
    ("Transfer-Encoding: gzip, chunked",
     H("GET /hello HTTP/1.1", "Host: x", "Transfer-Encoding: gzip, chunked"), 501),
    ("HTTP/2.0", H("GET /hello HTTP/2.0", "Host: x"), 505),
    ("HTTP/3.0", H("GET /hello HTTP/3.0", "Host: x"), 505),
    ("HTTP/0.9 as a version", H("GET /hello HTTP/0.9", "Host: x"), 505),
]

# Just inside the limits: answered normally.
BOUNDARY_OK = [
    # RFC 9112 §3: request lines of at least 8000 octets SHOULD be served.
    ("request-target of exactly 8000 bytes", H("GET /" + "a" * 7999 + " HTTP/1.1", "Host: x"), 404),
    ("exactly %d header fields" % MAX_HEADERS,
     H("GET /hello HTTP/1.1", "Host: x", *["X-H%d: v" % i for i in range(MAX_HEADERS - 1)]), 200),
    ("Content-Length equal to --max-body-bytes",
     H("GET /hello HTTP/1.1", "Host: x", "Content-Length: %d" % MAX_BODY) + b"z" * MAX_BODY, 200),
    ("head of 8000 bytes", H("GET /hello HTTP/1.1", "Host: x", "X-Big: " + "b" * 7950), 200),
    ("HEAD", H("HEAD /hello HTTP/1.1", "Host: x"), 200),
    # A higher minor version of a major we implement is served as the
    # highest we know (RFC 9110 §2.5), as nginx and h2o do.
    ("HTTP/1.2 served as 1.1", H("GET /hello HTTP/1.2", "Host: x"), 200),
]


def after_error(t, s, c, name, status):
    """The common checks once an error response has been read from c."""
    t.check(c.closed_by_peer(3), "%s: connection closed after the %d" % (name, status))
    lines = s.error_lines(c.local_port, since=c.t0)
    t.eq(len(lines), 1, "%s: log lines about this connection (%r)" % (name, lines))
    want = "http 127.0.0.1:%d: %d %s: " % (c.local_port, status, REASON[status])
    t.check(len(lines) == 1 and want in lines[0], "%s: log line %r contains %r" % (name, lines, want))
    r = rt.get(s, "/hello")
    t.eq((r.status, r.body), (200, HELLO), "%s: another connection is served afterwards" % name)


def check_error_response(t, r, name, status):
    t.eq((r.status, r.reason), (status, REASON[status]), "%s: status" % name)
    t.eq(r.body, ("%d %s\n" % (status, REASON[status])).encode(), "%s: body" % name)
    t.eq(r.header("Connection"), "close", "%s: Connection: close" % name)
    t.eq(r.header("Content-Type"), "text/plain; charset=utf-8", "%s: Content-Type" % name)
    if status == 405:
        t.eq(r.header("Allow"), "GET, HEAD", "%s: Allow" % name)


def test_cases(t, s):
    for name, data, status in CASES:
        with s.connect() as c:
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before all of a long request is sent
            r = c.read_response()
            check_error_response(t, r, name, status)
            after_error(t, s, c, name, status)
    for name, data, status in BOUNDARY_OK:
        with s.connect() as c:
            c.send(data)
            r = c.read_response(head=data.startswith(b"HEAD"))
            t.eq(r.status, status, "%s: status" % name)
            t.eq(r.header("Connection"), None, "%s: connection kept" % name)
            t.check(c.idle(0.1), "%s: connection still open" % name)
            t.eq(s.error_lines(c.local_port, since=c.t0), [], "%s: no error log line" % name)


def test_404(t, s):
    """404 is an ordinary answer, not a client error the server logs or
    closes for (it is logged only at debug level): keep-alive goes on."""
    with s.connect() as c:
        c.send(rt.request("GET", "/nope"))
        r = c.read_response()
        t.eq((r.status, r.reason, r.body), (404, "Not Found", b"404 Not Found\n"), "404: status and body")
        t.eq(r.header("Connection"), None, "404: keep-alive")
        c.send(rt.request("GET", "/hello"))
        t.eq(c.read_response().body, HELLO, "404: connection still serves")
        t.eq(s.error_lines(c.local_port, since=c.t0), [], "404: no info log line")


def test_408(t, s):
    # A partial head, then nothing: 408 after --header-timeout.
    with s.connect() as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        r = c.read_response()
        dt = time.monotonic() - t0
        check_error_response(t, r, "partial head", 408)
        t.check(HEADER_TIMEOUT - 0.1 <= dt <= HEADER_TIMEOUT + 0.6,
                "partial head: 408 after %.2f s (timeout %.1f s)" % (dt, HEADER_TIMEOUT))
        after_error(t, s, c, "partial head", 408)
    # One byte every 300 ms: the deadline is for the whole head, so the
    # trickle does not extend it.
    req = rt.request("GET", "/hello", headers=["User-Agent: " + "t" * 40])
    with s.connect() as c:
        t0 = time.monotonic()
        got = False
        for i in range(len(req)):
            try:
                c.send(req[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([c.sock], [], [], 0.3)
            if readable:
                got = True
                break
        dt = time.monotonic() - t0
        t.check(got, "trickle: the server answered before the whole head was sent")
        t.check(dt <= 1.5, "trickle: answered %.2f s after the first byte (deadline %.1f s, "
                "one byte per 300 ms)" % (dt, HEADER_TIMEOUT))
        r = c.read_response()
        check_error_response(t, r, "trickle", 408)
        after_error(t, s, c, "trickle", 408)
    # A completed head after an earlier partial one starts afresh: the next
    # request gets its own deadline.
    with s.connect() as c:
        c.send(b"GET /hello HTTP/1.1\r\n")
        time.sleep(0.6)
        c.send(b"Host: x\r\n\r\n")
        t.eq(c.read_response().body, HELLO, "head completed within the deadline")
        time.sleep(0.6)
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.6)
        c.send(b"\r\n")
        t.eq(c.read_response().body, HELLO, "second head gets its own deadline")


def test_bodies(t, s):
    # Content-Length body, then a pipelined request.
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", headers=["Content-Length: 5"], body=b"hello") +
               rt.request("GET", "/hello"))
        for i in range(2):
            t.eq(c.read_response().body, HELLO, "Content-Length body skipped: response %d" % i)
    # Body split over writes, one that looks like a request.
    with s.connect() as c:
        fake = rt.request("GET", "/nope")
        c.send(rt.request("GET", "/hello", headers=["Content-Length: %d" % len(fake)]) + fake[:7])
        t.eq(c.read_response().body, HELLO, "split body: response to the request")
        time.sleep(0.1)
        c.send(fake[7:] + rt.request("GET", "/hello"))
        r = c.read_response()
        t.eq((r.status, r.body), (200, HELLO), "split body: body bytes not parsed as a request")
        t.check(c.idle(0.2), "split body: nothing else")
    # Chunked body with an extension and a trailer, then a pipelined request.
    chunked = b"5;ext=1\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", headers=["Transfer-Encoding: chunked"], body=chunked) +
               rt.request("GET", "/nope"))
        t.eq(c.read_response().body, HELLO, "chunked body skipped: response 0")
        t.eq(c.read_response().status, 404, "chunked body skipped: pipelined request answered")
    # The same, one byte at a time for the body.
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", headers=["Transfer-Encoding: chunked"]))
        t.eq(c.read_response().body, HELLO, "trickled chunked body: response 0")
        for i in range(len(chunked)):
            c.send(chunked[i:i + 1])
            time.sleep(0.002)
        c.send(rt.request("GET", "/hello"))
        t.eq(c.read_response().body, HELLO, "trickled chunked body: next request answered")
    # A malformed chunked body that came with its head, and a pipelined
    # request: checked before the answer, so one 400 and close; never a
    # 200 and then a 400 the client would take for the next request's.
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", headers=["Transfer-Encoding: chunked"], body=b"zz\r\n") +
               rt.request("GET", "/hello"))
        r = c.read_response()
        check_error_response(t, r, "bad chunked body", 400)
        after_error(t, s, c, "bad chunked body", 400)
        t.eq(c.buf, b"", "bad chunked body: nothing after the 400")
    # The same body arriving after the request was answered: nothing is
    # left to answer, so no response at all, only the close.
    for name, body in (("bad chunk size", b"zz\r\n"), ("chunk extension '5;'", b"5;\r\nhello\r\n0\r\n\r\n"),
                       ("chunk data without CRLF", b"5\r\nhelloXX")):
        what = "%s after the answer" % name
        with s.connect() as c:
            c.send(rt.request("GET", "/hello", headers=["Transfer-Encoding: chunked"]) + b"3\r\nabc\r\n")
            t.eq(c.read_response().body, HELLO, "%s: response to the request" % what)
            time.sleep(0.05)
            c.send(body + rt.request("GET", "/hello"))
            t.check(c.closed_by_peer(3), "%s: connection closed" % what)
            t.eq(c.buf, b"", "%s: no response that answers nothing" % what)
            lines = s.error_lines(c.local_port, since=c.t0)
            want = "http 127.0.0.1:%d: malformed chunked body after the response" % c.local_port
            t.check(len(lines) == 1 and want in lines[0], "%s: one log line %r" % (what, lines))
    # --max-body-bytes must hold for chunked bodies too: after more than
    # MAX_BODY body bytes the server must not go on to the next request.
    # Whatever part of the body came with the head is judged before the
    # answer (413); past that, the connection is closed without one.
    big = b"".join(b"1f4\r\n" + b"x" * 500 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", headers=["Transfer-Encoding: chunked"], body=big) +
               rt.request("GET", "/nope"))
        r = c.read_response()
        if r.status == 413:
            check_error_response(t, r, "chunked body over the limit", 413)
        else:
            t.eq(r.body, HELLO, "chunked body over the limit: answered before the body grew past it")
        t.check(c.closed_by_peer(3), "chunked body over the limit: connection closed")
        t.eq(c.buf, b"", "chunked body over the limit: the next request is not answered")
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", headers=["Transfer-Encoding: chunked"]))
        t.eq(c.read_response().body, HELLO, "chunked body over the limit, later: response to the request")
        time.sleep(0.05)
        c.send(big + rt.request("GET", "/nope"))
        t.check(c.closed_by_peer(3), "chunked body over the limit, later: connection closed")
        t.eq(c.buf, b"", "chunked body over the limit, later: no 413 that answers nothing")


def test_head_errors(t, s):
    """An error answering a HEAD request has no content either (RFC 9110
    §9.3.2: the server MUST NOT send content in a response to HEAD; RFC 9112
    §6.3: the response ends at the empty line after the header fields)."""
    for name, data, status in (
            ("HEAD without Host", H("HEAD /hello HTTP/1.1"), 400),
            ("HEAD with Content-Length over the limit",
             H("HEAD /hello HTTP/1.1", "Host: x", "Content-Length: %d" % (MAX_BODY + 1)), 413),
            ("HEAD with Transfer-Encoding: gzip, chunked",
             H("HEAD /hello HTTP/1.1", "Host: x", "Transfer-Encoding: gzip, chunked"), 501)):
        with s.connect() as c:
            c.send(data)
            r = c.read_response(head=True)
            t.eq(r.status, status, "%s: status" % name)
            t.eq(r.header("Connection"), "close", "%s: Connection: close" % name)
            rest = c.read_to_eof(timeout=3)
            t.eq(rest, b"", "%s: bytes after the head of the response to HEAD" % name)


def test_idle(t):
    """An idle connection (no bytes at all) is closed silently, no 408."""
    s = rt.Server("--idle-timeout", "1s", "--header-timeout", "5s", threads=1)
    with s.connect() as c:
        t0 = time.monotonic()
        t.check(c.closed_by_peer(3), "idle connection closed")
        dt = time.monotonic() - t0
        t.check(0.9 <= dt <= 1.6, "idle connection closed after %.2f s (--idle-timeout 1s)" % dt)
        t.eq(c.buf, b"", "idle connection: no 408 or other bytes")
        t.eq(s.error_lines(c.local_port, since=c.t0), [], "idle connection: no error log line")
    with s.connect() as c:
        c.send(rt.request("GET", "/hello"))
        t.eq(c.read_response().body, HELLO, "keep-alive after a response")
        t0 = time.monotonic()
        t.check(c.closed_by_peer(3), "kept-alive connection closed when idle")
        t.check(time.monotonic() - t0 <= 1.6, "kept-alive connection closed within the idle timeout")
    t.eq(s.stop(), 0, "idle server exit status")


def test(t):
    s = rt.Server("--header-timeout", "1s", "--max-body-bytes", str(MAX_BODY),
                  "--max-headers", str(MAX_HEADERS), threads=2)
    test_cases(t, s)
    test_404(t, s)
    test_408(t, s)
    test_bodies(t, s)
    test_head_errors(t, s)
    t.check(s.alive(), "server still running")
    t.eq(s.stop(), 0, "server exit status")
    test_idle(t)


if __name__ == "__main__":
    rt.main(test)
