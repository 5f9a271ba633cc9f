#!/usr/bin/env python3
"""Basic HTTP/1.1: /hello, the built-in page, HEAD, keep-alive, HTTP/1.0."""
import datetime
import email.utils

import rtls_test as rt

HELLO = b"Hello, World!"


def check_date(t, r, what):
    d = r.header("Date")
    if not t.check(d is not None and rt.IMF_FIXDATE_RE.match(d), "%s: Date is IMF-fixdate: %r" % (what, d)):
        return
    when = email.utils.parsedate_to_datetime(d)
    now = datetime.datetime.now(datetime.timezone.utc)
    t.check(abs((now - when).total_seconds()) <= 5, "%s: Date %r is within 5 s of now (%s)" % (what, d, now))


def test_hello(t, s):
    r = rt.get(s, "/hello")
    t.eq(r.version, "HTTP/1.1", "GET /hello version")
    t.eq((r.status, r.reason), (200, "OK"), "GET /hello status")
    t.eq(r.body, HELLO, "GET /hello body")
    t.eq(r.header("Server"), "ringtls", "GET /hello Server")
    t.eq(r.header("Content-Length"), "13", "GET /hello Content-Length")
    t.eq(r.header("Content-Type"), "text/plain", "GET /hello Content-Type")
    t.eq(r.header("Connection"), None, "GET /hello (1.1, keep-alive) has no Connection header")
    for name in ("Server", "Date", "Content-Length", "Content-Type"):
        t.eq(len(r.header_all(name)), 1, "GET /hello: exactly one %s" % name)
    check_date(t, r, "GET /hello")
    # The query string is not part of the path.
    r = rt.get(s, "/hello?x=1&y=2")
    t.eq((r.status, r.body), (200, HELLO), "GET /hello?query")
    # A path that only starts with /hello is not /hello.
    r = rt.get(s, "/hellox")
    t.eq(r.status, 404, "GET /hellox")
    # absolute-form request-target (RFC 9112 §3.2.2)
    r = rt.get(s, "http://localhost/hello")
    t.eq((r.status, r.body), (200, HELLO), "GET absolute-form http://localhost/hello")


def test_builtin_page(t, s):
    for target in ("/", "/index.html", "/?q=1"):
        r = rt.get(s, target)
        t.eq(r.status, 200, "built-in page %s status" % target)
        t.eq(r.header("Content-Type"), "text/html; charset=utf-8", "built-in page %s Content-Type" % target)
        t.eq(r.header("Content-Length"), str(len(r.body)), "built-in page %s Content-Length" % target)
        t.check(r.body.startswith(b"<!doctype html>"), "built-in page %s is HTML: %r" % (target, r.body[:40]))
        t.check(b"ringtls" in r.body and b"plaintext TCP" in r.body,
                "built-in page %s names the server and the transport" % target)
        check_date(t, r, "built-in page")
    for target in ("/nope", "/index.htm", "/a/b/c", "/favicon.ico"):
        r = rt.get(s, target)
        t.eq((r.status, r.reason), (404, "Not Found"), "built-in server: %s" % target)
        t.eq(r.body, b"404 Not Found\n", "built-in server: %s body" % target)
        t.eq(r.header("Content-Length"), "14", "built-in server: %s Content-Length" % target)


def test_head(t, s):
    page = rt.get(s, "/").body
    with s.connect() as c:
        c.send(rt.request("HEAD", "/hello"))
        r = c.read_response(head=True)
        t.eq(r.status, 200, "HEAD /hello status")
        t.eq(r.header("Content-Length"), "13", "HEAD /hello Content-Length (as for GET)")
        t.eq(r.header("Content-Type"), "text/plain", "HEAD /hello Content-Type")
        t.eq(r.header("Server"), "ringtls", "HEAD /hello Server")
        check_date(t, r, "HEAD /hello")
        t.check(c.idle(0.3), "HEAD /hello: no body bytes follow the head")
        c.send(rt.request("HEAD", "/"))
        r = c.read_response(head=True)
        t.eq(r.status, 200, "HEAD / status")
        t.eq(r.header("Content-Length"), str(len(page)), "HEAD / Content-Length = GET body length")
        c.send(rt.request("HEAD", "/missing"))
        r = c.read_response(head=True)
        t.eq((r.status, r.header("Content-Length")), (404, "14"), "HEAD /missing")
        # The connection is still in step: the next response starts right here.
        c.send(rt.request("GET", "/hello"))
        r = c.read_response()
        t.eq((r.status, r.body), (200, HELLO), "GET after three HEADs on one connection")
        t.eq(c.buf, b"", "no stray bytes after the HEAD responses")


def test_keepalive_raw(t, s):
    with s.connect() as c:
        for i in range(6):
            target = ["/hello", "/", "/nope"][i % 3]
            c.send(rt.request("GET", target))
            r = c.read_response()
            want = {"/hello": 200, "/": 200, "/nope": 404}[target]
            t.eq(r.status, want, "keep-alive request %d (%s)" % (i, target))
            t.eq(r.header("Connection"), None, "keep-alive request %d: no Connection: close" % i)
        t.check(c.idle(0.3), "keep-alive: connection still open after 6 requests")
        # Connection: close on the last request ends it after the response.
        c.send(rt.request("GET", "/hello", headers=["Connection: close"]))
        r = c.read_response()
        t.eq((r.status, r.body), (200, HELLO), "1.1 Connection: close response")
        t.eq(r.header("Connection"), "close", "1.1 Connection: close is echoed")
        t.check(c.closed_by_peer(3), "1.1 Connection: close: server closes")


def test_keepalive_curl(t, s):
    p = rt.curl("-v", s.url("/hello"), s.url("/hello"))
    err = p.stderr.decode("utf-8", "replace")
    t.eq(p.returncode, 0, "curl with two URLs exit status")
    t.eq(p.stdout, HELLO + HELLO, "curl with two URLs: both bodies")
    t.check("Re-using existing connection" in err,
            "curl reused the connection for the second URL; stderr:\n" + err)
    t.eq(err.count("Connected to 127.0.0.1"), 1, "curl connected once")


def test_http10(t, s):
    # HTTP/1.0 without Connection: the server answers and closes.
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", "HTTP/1.0", host=None))
        r = c.read_response()
        t.eq((r.status, r.body), (200, HELLO), "HTTP/1.0 GET /hello")
        t.eq(r.header("Connection"), "close", "HTTP/1.0 default: Connection: close")
        t.check(c.closed_by_peer(3), "HTTP/1.0 default: server closes the connection")
    # HTTP/1.0 with Connection: keep-alive: the connection persists.
    with s.connect() as c:
        for i in range(3):
            c.send(rt.request("GET", "/hello", "HTTP/1.0", host=None,
                              headers=["Connection: keep-alive"]))
            r = c.read_response()
            t.eq((r.status, r.body), (200, HELLO), "HTTP/1.0 keep-alive request %d" % i)
            t.check(r.header("Connection") != "close",
                    "HTTP/1.0 keep-alive request %d: no Connection: close (%r)" % (i, r.header("Connection")))
        t.check(c.idle(0.3), "HTTP/1.0 keep-alive: connection still open")
        c.send(rt.request("GET", "/hello", "HTTP/1.0", host=None))
        r = c.read_response()
        t.eq(r.status, 200, "HTTP/1.0 without keep-alive on a kept connection")
        t.check(c.closed_by_peer(3), "HTTP/1.0 without keep-alive: then closed")
    # A 1.0 client's "Connection: Keep-Alive" is case-insensitive.
    with s.connect() as c:
        c.send(rt.request("GET", "/hello", "HTTP/1.0", host=None, headers=["Connection: Keep-Alive"]))
        t.eq(c.read_response().status, 200, "HTTP/1.0 Keep-Alive (mixed case)")
        t.check(c.idle(0.3), "HTTP/1.0 Keep-Alive (mixed case): connection still open")


def test(t):
    rt.need_curl()
    s = rt.Server(threads=2)
    test_hello(t, s)
    test_builtin_page(t, s)
    test_head(t, s)
    test_keepalive_raw(t, s)
    test_keepalive_curl(t, s)
    test_http10(t, s)
    t.check(s.alive(), "server still running")
    t.eq(s.stop(), 0, "server exit status after SIGTERM")


if __name__ == "__main__":
    rt.main(test)
