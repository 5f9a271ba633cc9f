#!/usr/bin/env python3
"""Static files under --root: index files, MIME types, Content-Length,
Last-Modified / If-Modified-Since, ETag / If-None-Match / If-Range, Range,
redirects, a 1 MiB body."""
import os
import re
import time
import urllib.parse

import rtls_test as rt

# All files get this mtime: 2020-01-02 03:04:05 UTC.
MTIME = 1577934245
MTIME_HTTP = "Thu, 02 Jan 2020 03:04:05 GMT"

FILES = {
    "index.html": b"<!doctype html><title>root index</title>\n",
    "style.css": b"body { color: red; }\n",
    "app.js": b"console.log('hi');\n",
    "img.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "data.zzunknown": b"opaque\x00\x01\x02",
    "README": b"no extension\n",
    "UPPER.HTML": b"<p>upper-case extension</p>\n",
    "digits.txt": b"0123456789" * 100,                 # 1000 bytes
    "empty.txt": b"",
    "sub/index.html": b"<p>sub index</p>\n",
    "sub/page.html": b"<p>sub page</p>\n",
    "sub/deeper/leaf.txt": b"leaf\n",
    "noindex/file.txt": b"x\n",
    "big.bin": rt.pattern_bytes(1 << 20, seed=7),       # 1 MiB
    "my dir/index.html": b"<p>a directory with a space</p>\n",
    "what?/index.html": b"<p>a directory with a question mark</p>\n",
}

MIME = {
    "/index.html": "text/html; charset=utf-8",
    "/style.css": "text/css; charset=utf-8",
    "/app.js": "text/javascript; charset=utf-8",
    "/img.png": "image/png",
    "/data.zzunknown": "application/octet-stream",
    "/README": "application/octet-stream",
    "/UPPER.HTML": "text/html; charset=utf-8",
    "/digits.txt": "text/plain; charset=utf-8",
}


def body_of(path):
    return FILES[path.lstrip("/")]


def check_file(t, r, path, what=None):
    what = what or "GET " + path
    want = body_of(path)
    t.eq(r.status, 200, "%s: status" % what)
    t.eq(r.header("Content-Length"), str(len(want)), "%s: Content-Length" % what)
    t.eq(rt.sha256(r.body), rt.sha256(want), "%s: body sha256" % what)
    t.eq(r.header("Last-Modified"), MTIME_HTTP, "%s: Last-Modified" % what)
    t.eq(r.header("Accept-Ranges"), "bytes", "%s: Accept-Ranges" % what)


def test_index_and_mime(t, s):
    r = rt.get(s, "/")
    check_file(t, r, "/index.html", "GET /")
    t.eq(r.header("Content-Type"), "text/html; charset=utf-8", "GET / Content-Type")
    for target, path in (("/sub/", "/sub/index.html"), ("/sub/?x=1", "/sub/index.html"),
                         ("/sub/./", "/sub/index.html"), ("//sub//", "/sub/index.html"),
                         ("/sub/page.html", "/sub/page.html"),
                         ("/sub/deeper/leaf.txt", "/sub/deeper/leaf.txt"),
                         ("/%73ub/page.html", "/sub/page.html")):
        check_file(t, rt.get(s, target), path, "GET " + target)
    for path, ctype in MIME.items():
        r = rt.get(s, path)
        check_file(t, r, path)
        t.eq(r.header("Content-Type"), ctype, "GET %s: Content-Type" % path)
    r = rt.get(s, "/empty.txt")
    t.eq((r.status, r.header("Content-Length"), r.body), (200, "0", b""), "GET /empty.txt")
    for target in ("/missing.html", "/sub/missing", "/noindex/", "/sub/page.html/x", "/sub/deeper/leaf.txt/x"):
        r = rt.get(s, target)
        t.eq((r.status, r.body), (404, b"404 Not Found\n"), "GET %s" % target)
    # HEAD: the GET headers without a body.
    with s.connect() as c:
        c.send(rt.request("HEAD", "/big.bin"))
        r = c.read_response(head=True)
        t.eq((r.status, r.header("Content-Length")), (200, str(1 << 20)), "HEAD /big.bin")
        t.eq(r.header("Last-Modified"), MTIME_HTTP, "HEAD /big.bin Last-Modified")
        t.check(c.idle(0.3), "HEAD /big.bin: no body bytes")
        c.send(rt.request("GET", "/style.css"))
        check_file(t, c.read_response(), "/style.css", "GET after HEAD on one connection")


def test_conditional(t, s):
    path = "/digits.txt"
    for ims, what in ((MTIME_HTTP, "equal"), ("Fri, 03 Jan 2020 00:00:00 GMT", "later"),
                      ("Friday, 03-Jan-20 00:00:00 GMT", "later, RFC 850 form"),
                      ("Fri Jan  3 00:00:00 2020", "later, asctime form")):
        with s.connect() as c:
            c.send(rt.request("GET", path, headers=["If-Modified-Since: " + ims]))
            r = c.read_response()
            t.eq(r.status, 304, "If-Modified-Since %s (%s): status" % (what, ims))
            t.eq(r.header("Last-Modified"), MTIME_HTTP, "304 (%s): Last-Modified" % what)
            t.eq(r.header("Content-Type"), None, "304 (%s): no Content-Type" % what)
            # RFC 9110 §8.6: a server MUST NOT send Content-Length in a 304
            # unless it equals the length a 200 would have had.
            cl = r.header("Content-Length")
            t.check(cl in (None, str(len(body_of(path)))),
                    "304 (%s): Content-Length must be absent or %d (RFC 9110 §8.6), got %r"
                    % (what, len(body_of(path)), cl))
            t.check(c.idle(0.3), "304 (%s): no body bytes follow" % what)
            c.send(rt.request("GET", "/hello"))
            r2 = c.read_response()
            t.eq((r2.status, r2.body), (200, b"Hello, World!"), "304 (%s): connection stays usable" % what)
    # A date later than the server's clock is invalid (RFC 7232 §3.3):
    # ignored, as nginx does, never a 304.
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 86400))
    for ims, what in (("Wed, 01 Jan 2020 03:04:05 GMT", "a day stale"),
                      ("Thu, 02 Jan 2020 03:04:04 GMT", "a second stale"),
                      ("not a date", "invalid date"),
                      (future, "tomorrow, later than the server's clock"),
                      ("Fri, 31 Dec 9999 23:59:59 GMT", "in year 9999")):
        r = rt.get(s, path, headers=["If-Modified-Since: " + ims])
        check_file(t, r, path, "If-Modified-Since %s (%s)" % (ims, what))
    r = rt.get(s, path, method="HEAD", headers=["If-Modified-Since: " + MTIME_HTTP])
    t.eq(r.status, 304, "HEAD with If-Modified-Since equal: 304")
    # curl's own conditional GET agrees.
    p = rt.curl("-o", "/dev/null", "-w", "%{http_code}", "-z", MTIME_HTTP, s.url(path))
    t.eq(p.stdout, b"304", "curl -z <Last-Modified>")
    p = rt.curl("-o", "/dev/null", "-w", "%{http_code}", "-z", "Wed, 01 Jan 2020 00:00:00 GMT", s.url(path))
    t.eq(p.stdout, b"200", "curl -z <stale date>")


def etag_of(path):
    """nginx's strong ETag: hex mtime, '-', hex size."""
    return '"%x-%x"' % (MTIME, len(body_of(path)))


def test_etag(t, s, root):
    path = "/digits.txt"
    etag = etag_of(path)
    data = body_of(path)
    for method in ("GET", "HEAD"):
        r = rt.get(s, path, method=method)
        t.eq((r.status, r.header("ETag")), (200, etag), "%s %s: ETag from mtime and size" % (method, path))
    t.eq(rt.get(s, "/empty.txt").header("ETag"), etag_of("/empty.txt"), "empty file: ETag")
    t.eq(rt.get(s, path, headers=["Range: bytes=0-1"]).header("ETag"), etag, "206: ETag")
    # RFC 9110 §13.1.2: weak comparison, "*", lists; a 304 carries the ETag.
    for inm, what in ((etag, "the ETag"), ("W/" + etag, "its weak form"), ("*", "*"),
                      ('"a", ' + etag, "a list holding it"), (' ,"a" ,, W/%s ' % etag, "a list with empty elements")):
        for method in ("GET", "HEAD"):
            r = rt.get(s, path, method=method, headers=["If-None-Match: " + inm])
            t.eq((r.status, r.header("ETag"), r.body), (304, etag, b""),
                 "%s If-None-Match %s: 304 with the ETag" % (method, what))
    for inm, what in (('"a"', "another tag"), ('"%x-%x"' % (MTIME, 1), "another size"),
                      ('W/"a", "b"', "a list without it"), (etag[:-1], "an unterminated tag"),
                      (etag + " x", "garbage after the tag"), (etag.strip('"'), "no quotes")):
        r = rt.get(s, path, headers=["If-None-Match: " + inm])
        check_file(t, r, path, "If-None-Match %s (%r)" % (what, inm))
    # RFC 9110 §13.2.2: If-None-Match takes precedence over
    # If-Modified-Since, both ways.
    r = rt.get(s, path, headers=['If-None-Match: "a"', "If-Modified-Since: " + MTIME_HTTP])
    check_file(t, r, path, "If-None-Match not matching, If-Modified-Since matching")
    r = rt.get(s, path, headers=["If-None-Match: " + etag, "If-Modified-Since: Wed, 01 Jan 2020 00:00:00 GMT"])
    t.eq(r.status, 304, "If-None-Match matching, If-Modified-Since stale: 304")
    # RFC 9110 §13.1.5: If-Range with an entity-tag is the strong comparison.
    r = rt.get(s, path, headers=["Range: bytes=1-3", "If-Range: " + etag])
    t.eq((r.status, r.body), (206, data[1:4]), "If-Range with the ETag: 206")
    for ir, what in (("W/" + etag, "its weak form"), ('"a"', "another tag")):
        r = rt.get(s, path, headers=["Range: bytes=1-3", "If-Range: " + ir])
        check_file(t, r, path, "If-Range with %s: the whole file" % what)
    # A new mtime or size is a new tag.
    full = os.path.join(root, "etag.txt")
    rt.write_file(full, b"one", mtime=MTIME)
    old = rt.get(s, "/etag.txt").header("ETag") or '"none"'
    rt.write_file(full, b"two!", mtime=MTIME)
    r = rt.get(s, "/etag.txt", headers=["If-None-Match: " + old])
    t.eq((r.status, r.body), (200, b"two!"), "If-None-Match after the size changed: 200")
    os.utime(full, (MTIME + 1, MTIME + 1))
    r = rt.get(s, "/etag.txt", headers=["If-None-Match: " + (r.header("ETag") or '"none"')])
    t.eq(r.status, 200, "If-None-Match after the mtime changed: 200")
    # curl revalidates with the ETag it saved.
    etag_file = os.path.join(rt.temp_dir(), "etag")
    p = rt.curl("-o", "/dev/null", "--etag-save", etag_file, s.url(path))
    p = rt.curl("-o", "/dev/null", "-w", "%{http_code}", "--etag-compare", etag_file, s.url(path))
    t.eq(p.stdout, b"304", "curl --etag-save, then --etag-compare: 304")


def test_range(t, s):
    path = "/digits.txt"
    data = body_of(path)
    size = len(data)
    cases = [
        ("bytes=10-19", 10, 19),            # single range
        ("bytes=0-0", 0, 0),
        ("bytes=-100", size - 100, size - 1),   # suffix
        ("bytes=-5000", 0, size - 1),       # suffix longer than the file
        ("bytes=900-", 900, size - 1),      # open-ended
        ("bytes=999-", 999, size - 1),
        ("bytes=990-5000", 990, size - 1),  # last-pos clamped
        ("BYTES=1-2", 1, 2),                # unit is case-insensitive
    ]
    for rng, first, last in cases:
        r = rt.get(s, path, headers=["Range: " + rng])
        t.eq(r.status, 206, "Range %s: status" % rng)
        t.eq(r.header("Content-Range"), "bytes %d-%d/%d" % (first, last, size), "Range %s: Content-Range" % rng)
        t.eq(r.header("Content-Length"), str(last - first + 1), "Range %s: Content-Length" % rng)
        t.eq(r.body, data[first:last + 1], "Range %s: body" % rng)
    for rng in ("bytes=1000-", "bytes=5000-6000", "bytes=-0"):
        r = rt.get(s, path, headers=["Range: " + rng])
        t.eq(r.status, 416, "Range %s: status" % rng)
        t.eq(r.header("Content-Range"), "bytes */%d" % size, "Range %s: Content-Range" % rng)
        t.eq(r.body, b"416 Range Not Satisfiable\n", "Range %s: body" % rng)
    # A Range the server does not honour (a multi-range set, a syntax it
    # does not understand, another unit) must give the whole file with 200
    # (RFC 9110 §14.2: a server MAY ignore Range).
    for rng in ("bytes=0-1,5-6", "bytes=0-0,-1", "bytes=5-2", "bytes=abc", "items=0-5"):
        r = rt.get(s, path, headers=["Range: " + rng])
        t.eq(r.status, 200, "ignored Range %r: status" % rng)
        t.eq(r.header("Content-Range"), None, "ignored Range %r: no Content-Range" % rng)
        t.eq(r.header("Content-Length"), str(size), "ignored Range %r: Content-Length" % rng)
        t.eq(rt.sha256(r.body), rt.sha256(data), "ignored Range %r: whole body" % rng)
    # If-Range: a matching date honours the range, another one gives 200.
    r = rt.get(s, path, headers=["Range: bytes=1-3", "If-Range: " + MTIME_HTTP])
    t.eq((r.status, r.body), (206, data[1:4]), "If-Range matching Last-Modified")
    r = rt.get(s, path, headers=["Range: bytes=1-3", "If-Range: Wed, 01 Jan 2020 00:00:00 GMT"])
    t.eq((r.status, len(r.body)), (200, size), "If-Range with another date: whole file")
    # curl -r on the 1 MiB file.
    big = body_of("/big.bin")
    p = rt.curl("-r", "123456-654320", "-D", "-", "-o", "/dev/null", s.url("/big.bin"))
    t.check(b"206 Partial Content" in p.stdout and
            b"Content-Range: bytes 123456-654320/1048576" in p.stdout,
            "curl -r 123456-654320: 206 with Content-Range; got %r" % p.stdout)
    p = rt.curl("-r", "123456-654320", s.url("/big.bin"))
    t.eq(rt.sha256(p.stdout), rt.sha256(big[123456:654321]), "curl -r 123456-654320: bytes")


def follow_location(t, s, target, want_path):
    r = rt.get(s, target)
    t.eq(r.status, 301, "GET %s: status" % target)
    loc = r.header("Location")
    t.check(loc is not None, "GET %s: has Location" % target)
    if loc is None:
        return
    # A Location is a URI-reference (RFC 9110 §10.2.2, RFC 3986): no raw
    # spaces, and a '?' in a name must be %3F or it starts a query.
    t.check(re.fullmatch(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%?#]+", loc) is not None,
            "GET %s: Location %r is a valid URI-reference" % (target, loc))
    path = urllib.parse.urlsplit(loc).path
    t.eq(urllib.parse.unquote(path), want_path, "GET %s: Location %r names the directory" % (target, loc))
    try:
        r2 = rt.get(s, loc)
    except Exception as e:  # noqa: BLE001 - report any failure to follow
        t.check(False, "GET %s: following Location %r: %r" % (target, loc, e))
        return
    t.eq(r2.status, 200, "GET %s: following Location %r: status" % (target, loc))
    t.eq(r2.body, body_of(want_path + "index.html"), "GET %s: following Location %r: body" % (target, loc))


def test_redirect(t, s):
    r = rt.get(s, "/sub")
    t.eq((r.status, r.reason), (301, "Moved Permanently"), "GET /sub")
    t.eq(r.header("Location"), "/sub/", "GET /sub: Location")
    r = rt.get(s, "/sub/deeper")
    t.eq((r.status, r.header("Location")), (301, "/sub/deeper/"), "GET /sub/deeper")
    r = rt.get(s, "/sub", method="HEAD")
    t.eq((r.status, r.header("Location")), (301, "/sub/"), "HEAD /sub")
    # curl -L ends up at the index.
    p = rt.curl("-L", s.url("/sub"))
    t.eq(p.stdout, body_of("/sub/index.html"), "curl -L /sub")
    # Directory names that need percent-encoding in a Location.
    follow_location(t, s, "/my%20dir", "/my dir/")
    follow_location(t, s, "/what%3F", "/what?/")


def test_big(t, s):
    big = body_of("/big.bin")
    p = rt.curl(s.url("/big.bin"))
    t.eq((p.returncode, len(p.stdout)), (0, len(big)), "curl /big.bin: exit status and length")
    t.eq(rt.sha256(p.stdout), rt.sha256(big), "curl /big.bin: sha256")
    # Raw: twice on one connection, then a small file after it.
    with s.connect() as c:
        c.send(rt.request("GET", "/big.bin") * 2 + rt.request("GET", "/app.js"))
        for i in range(2):
            r = c.read_response()
            t.eq((r.status, r.header("Content-Length")), (200, str(len(big))), "raw /big.bin #%d" % i)
            t.eq(rt.sha256(r.body), rt.sha256(big), "raw /big.bin #%d: sha256" % i)
        check_file(t, c.read_response(), "/app.js", "GET after two 1 MiB bodies")


def test_fifo(t, root):
    """A named pipe under the root must not block the server: open() on a
    FIFO waits for a writer unless O_NONBLOCK is given."""
    fifo = os.path.join(root, "fifo")
    os.mkfifo(fifo)
    s = rt.Server(root=root, threads=1)
    try:
        r = rt.get(s, "/fifo", timeout=3)
        t.eq(r.status, 404, "GET /fifo (a named pipe): status")
    except Exception as e:  # noqa: BLE001
        t.check(False, "GET /fifo (a named pipe) is answered within 3 s: %r" % e)
    try:
        r = rt.get(s, "/hello", timeout=3)
        t.eq(r.status, 200, "GET /hello after GET /fifo")
    except Exception as e:  # noqa: BLE001
        t.check(False, "server still answers after GET /fifo: %r" % e)
    # If the server is stuck in open(), give it its writer so it can stop.
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass
    t.eq(s.stop(), 0, "server with a FIFO under the root: exit status")


def test(t):
    rt.need_curl()
    base, root = rt.make_root(FILES)
    for dirpath, _, names in os.walk(root):
        for n in names:
            os.utime(os.path.join(dirpath, n), (MTIME, MTIME))
    s = rt.Server(root=root, threads=2)
    test_index_and_mime(t, s)
    test_conditional(t, s)
    test_etag(t, s, root)
    test_range(t, s)
    test_redirect(t, s)
    test_big(t, s)
    t.check(s.alive(), "server still running")
    t.eq(s.stop(), 0, "server exit status")
    test_fifo(t, root)


if __name__ == "__main__":
    rt.main(test)
