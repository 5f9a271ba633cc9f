#!/usr/bin/env python3
"""Pipelining: many requests in one write are answered in order; a request
trickled one byte at a time is answered correctly."""
import time

import rtls_test as rt

HELLO = b"Hello, World!"


def expect(t, c, what, status, body, head=False):
    r = c.read_response(head=head)
    t.eq(r.status, status, "%s: status" % what)
    if body is not None:
        t.eq(rt.sha256(r.body), rt.sha256(body), "%s: body sha256 (%d bytes)" % (what, len(r.body)))
    return r


def test_one_write(t, s, files):
    reqs = [
        ("GET", "/hello", 200, HELLO),
        ("GET", "/page.txt", 200, files["page.txt"]),
        ("GET", "/missing.txt", 404, b"404 Not Found\n"),
        ("HEAD", "/page.txt", 200, b""),
        ("GET", "/big.bin", 200, files["big.bin"]),
        ("GET", "/hello", 200, HELLO),
        ("GET", "/sub/", 200, files["sub/index.html"]),
        ("GET", "/page.txt", 200, files["page.txt"]),
    ]
    blob = b"".join(rt.request(m, p) for m, p, _, _ in reqs)
    with s.connect() as c:
        c.send(blob)
        for i, (m, p, st, body) in enumerate(reqs):
            r = expect(t, c, "pipelined #%d %s %s" % (i, m, p), st, body, head=(m == "HEAD"))
            if m == "HEAD":
                t.eq(r.header("Content-Length"), str(len(files["page.txt"])),
                     "pipelined HEAD Content-Length")
        t.check(c.idle(0.3), "pipelined: nothing extra, connection still open")
        # And it keeps going.
        c.send(rt.request("GET", "/hello"))
        expect(t, c, "request after the pipeline", 200, HELLO)

    # Many small pipelined requests, the last with Connection: close.
    n = 200
    blob = b"".join(rt.request("GET", "/hello" if i % 2 else "/page.txt") for i in range(n - 1))
    blob += rt.request("GET", "/hello", headers=["Connection: close"])
    with s.connect() as c:
        c.send(blob)
        for i in range(n):
            want = HELLO if (i % 2 or i == n - 1) else files["page.txt"]
            r = c.read_response()
            if r.status != 200 or r.body != want:
                t.check(False, "pipelined x%d: response %d is %r" % (n, i, r))
                break
        else:
            t.ok("pipelined x%d in order" % n)
        t.check(c.closed_by_peer(3), "pipelined x%d: closed after Connection: close" % n)

    # A pipeline that ends with a partial request: the complete ones are
    # answered now, the partial one once it is finished.
    with s.connect() as c:
        c.send(rt.request("GET", "/hello") + rt.request("GET", "/page.txt") + b"GET /hel")
        expect(t, c, "pipeline + partial: #0", 200, HELLO)
        expect(t, c, "pipeline + partial: #1", 200, files["page.txt"])
        t.check(c.idle(0.3), "pipeline + partial: the partial request is not answered yet")
        c.send(b"lo HTTP/1.1\r\nHost: x\r\n\r\n")
        expect(t, c, "pipeline + partial: completed", 200, HELLO)


def test_split_everywhere(t, s, files):
    """Two pipelined requests split at every offset into two writes."""
    blob = rt.request("GET", "/page.txt") + rt.request("GET", "/hello")
    bad = []
    with s.connect() as c:
        for cut in range(1, len(blob)):
            c.send(blob[:cut])
            time.sleep(0.002)
            c.send(blob[cut:])
            r1 = c.read_response()
            r2 = c.read_response()
            if (r1.status, r1.body, r2.status, r2.body) != (200, files["page.txt"], 200, HELLO):
                bad.append(cut)
    t.eq(bad, [], "pipelined pair split at each offset: offsets answered wrongly")


def test_trickle(t, s, files):
    req = rt.request("GET", "/page.txt", headers=["User-Agent: trickle", "Accept: */*"])
    delay = 2.0 / len(req)          # whole request in about 2 s
    with s.connect() as c:
        start = time.monotonic()
        for i in range(len(req)):
            c.send(req[i:i + 1])
            if i == len(req) // 2:
                t.check(c.idle(0.0), "trickle: no response to half a request")
            time.sleep(delay)
        t.check(time.monotonic() - start < 3.0, "trickle took under 3 s")
        expect(t, c, "one byte at a time", 200, files["page.txt"])
        # The connection is still good afterwards.
        c.send(rt.request("GET", "/hello"))
        expect(t, c, "after the trickled request", 200, HELLO)


def test(t):
    files = {
        "page.txt": b"a static page\n" * 10,
        "big.bin": rt.pattern_bytes(300 * 1024, seed=1),
        "sub/index.html": b"<p>sub index</p>\n",
    }
    _, root = rt.make_root(files)
    s = rt.Server(root=root, threads=2)
    test_one_write(t, s, files)
    test_split_everywhere(t, s, files)
    test_trickle(t, s, files)
    t.eq(s.stop(), 0, "server exit status")


if __name__ == "__main__":
    rt.main(test)
