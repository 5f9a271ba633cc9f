#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/h2.c (fuzz/corpus/h2/): HTTP/2 request
sequences, HPACK encoded by hand (static table, literals, no Huffman), in
the target's input layout; and its pinned regressions
(fuzz/regressions/h2/). The files are committed; run this only to change
them.

  python3 fuzz/h2_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# Byte 0 (fuzz/h2.c): bit 0 preface, bit 1 and an empty SETTINGS, bits 2-3
# configuration (0 --root + access log, 1 built-in page, 2 --root with
# small limits, 3 built-in page with small limits), bit 4 TLS, bit 5 the
# peer's end, bit 6 admin listener, bit 7 drain after every chunk.
PREFACE, SETTINGS0, TLS, EOF, ADMIN, AUTODRAIN = 1, 2, 16, 32, 64, 128
ROOT, PAGE, ROOT_SMALL, PAGE_SMALL = 0, 4, 8, 12
# Byte 1: bits 0-3 k, bit 4 file_ready fails, bit 5 ALPN http/1.1, bit 6
# no ALPN, bit 7 a chunk arrives while paused. Event bytes: bits 0-5 chunk size, bits 6-7 0 none, 1 drain,
# 2 timer, 3 shutdown.
FILE_FAIL, ALPN_H1, ALPN_NONE, KEEP = 16, 32, 64, 128
NONE, DRAIN, TIMER, SHUTDOWN = 0, 1, 2, 3

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 1, 1, 4, 8, 32


def seed(frames, flags=PREFACE | SETTINGS0 | EOF | AUTODRAIN, byte1=0, events=()):
    return bytes([flags, byte1 | len(events)]) + bytes(events) + frames


def ev(size, what=NONE):
    return size | what << 6


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hint(v, bits, first=0):
    """An HPACK integer with a `bits`-bit prefix (RFC 7541 §5.1)."""
    top = (1 << bits) - 1
    if v < top:
        return bytes([first | v])
    out = [first | top]
    v -= top
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def hstr(s):
    return hint(len(s), 7) + s


def indexed(i):
    return hint(i, 7, 0x80)


def lit(name, value):
    """Literal without indexing, new name."""
    return b"\x00" + hstr(name) + hstr(value)


def lit_idx(i, value):
    """Literal without indexing, indexed name."""
    return hint(i, 4) + hstr(value)


def lit_incr(name, value):
    """Literal with incremental indexing, new name (enters the table)."""
    return b"\x40" + hstr(name) + hstr(value)


def block(method=b"GET", path=b"/hello", extra=(), authority=b"example.test"):
    b = {b"GET": indexed(2), b"POST": indexed(3)}.get(method) or lit_idx(2, method)
    b += indexed(7)  # :scheme https
    if path is not None:
        b += lit_idx(4, path)
    if authority is not None:
        b += lit_idx(1, authority)
    for name, value in extra:
        b += lit(name, value)
    return b


def req(sid, method=b"GET", path=b"/hello", extra=(), end=True):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid,
                 block(method, path, extra))


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window(sid, n):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", n))


def pad_to(n, frames):
    """frames, then an extension frame (ignored) so that with the preface
    and the empty SETTINGS the first n bytes end there."""
    return frames + frame(0x20, 0, 0, b"p" * (n - 33 - len(frames) - 9))


PREFACE_BYTES = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = settings()

SEEDS = {
    "get_hello": seed(req(1)),
    "get_files": seed(req(1, path=b"/hello.txt") + req(3, path=b"/index.html") +
                      req(5, path=b"/sub/a.css") + req(7, path=b"/empty")),
    "get_range": seed(req(1, path=b"/big.bin", extra=((b"range", b"bytes=100-199"),)) +
                      req(3, path=b"/hello.txt", extra=((b"range", b"bytes=-5"),)) +
                      req(5, path=b"/hello.txt", extra=((b"range", b"bytes=99-"),)) +
                      req(7, path=b"/big.bin", extra=((b"range", b"bytes=0-0,5-9"),))),
    "conditional": seed(req(1, path=b"/hello.txt", extra=((b"if-none-match", b"*"),)) +
                        req(3, path=b"/hello.txt",
                            extra=((b"if-modified-since", b"Fri, 31 Dec 9999 23:59:59 GMT"),)) +
                        req(5, path=b"/big.bin",
                            extra=((b"range", b"bytes=1-2"), (b"if-range", b"\"x\"")))),
    "head": seed(req(1, b"HEAD", b"/index.html") + req(3, b"HEAD", b"/hello") +
                 req(5, b"HEAD", b"/big.bin", extra=((b"range", b"bytes=1-9"),))),
    "methods": seed(req(1, b"PUT", b"/hello") + req(3, b"OPTIONS", b"*") +
                    req(5, b"BREW", b"/") + frame(HEADERS, END_HEADERS | END_STREAM, 7,
                                                 lit_idx(2, b"CONNECT") +
                                                 lit_idx(1, b"example.test:443"))),
    "errors": seed(req(1, path=b"/nope") + req(3, path=b"/sub") + req(5, path=b"/sub/") +
                   req(7, path=b"/../etc/passwd") + req(9, path=b"/a%00b") +
                   req(11, path=b"/hello", extra=((b"host", b"a b"),)) +
                   req(13, path=b"/hello", extra=((b"content-length", b"x"),))),
    "post_data": seed(req(1, b"POST", b"/hello", end=False) +
                      frame(DATA, 0, 1, b"abc") + frame(DATA, END_STREAM, 1, b"def")),
    "post_over_max_body": seed(req(1, b"POST", b"/hello", end=False) +
                               frame(DATA, 0, 1, b"x" * 50) + frame(DATA, 0, 1, b"y" * 50) +
                               frame(DATA, END_STREAM, 1, b"z"),
                               flags=PREFACE | SETTINGS0 | EOF | AUTODRAIN | ROOT_SMALL),
    "content_length_over_max_body": seed(req(1, b"POST", b"/hello", end=False,
                                             extra=((b"content-length", b"100"),)) +
                                         frame(DATA, END_STREAM, 1, b"x" * 100),
                                         flags=PREFACE | SETTINGS0 | EOF | AUTODRAIN | ROOT_SMALL),
    "trailers": seed(req(1, b"POST", b"/hello", end=False) + frame(DATA, 0, 1, b"abc") +
                     frame(HEADERS, END_HEADERS | END_STREAM, 1, lit(b"x-trailer", b"1"))),
    "many_streams": seed(b"".join(req(1 + 2 * i) for i in range(110))),
    "continuation": seed(frame(HEADERS, END_STREAM, 1, block()[:5]) +
                         frame(CONTINUATION, 0, 1, block()[5:9]) +
                         frame(CONTINUATION, END_HEADERS, 1, block()[9:])),
    "padded_priority": seed(frame(HEADERS, END_HEADERS | END_STREAM | PADDED | PRIO, 1,
                                  b"\x03" + struct.pack(">IB", 0, 15) + block() + b"\0\0\0") +
                            frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 200)) +
                            req(5, path=b"/index.html")),
    "big_file_windows": seed(settings((4, 1 << 20), (5, 1 << 20)) + window(0, 1 << 24) +
                             req(1, path=b"/big.bin") + req(3, path=b"/big.bin") +
                             req(5, path=b"/big.bin") + req(7, path=b"/big.bin"),
                             flags=PREFACE | SETTINGS0 | EOF),
    "big_file_slow_window": seed(req(1, path=b"/big.bin") + window(1, 1000) + window(0, 1000),
                                 events=(ev(9, DRAIN), ev(0, DRAIN)),
                                 flags=PREFACE | SETTINGS0),
    "zero_window": seed(settings((4, 0)) + req(1, path=b"/big.bin") + frame(PING, 0, 0, b"12345678"),
                        events=(ev(15), ev(0, TIMER)), flags=PREFACE | SETTINGS0),
    "settings_ping_goaway": seed(settings((1, 0), (2, 0), (3, 10), (6, 1000)) +
                                 frame(SETTINGS, ACK, 0) + frame(PING, 0, 0, b"abcdefgh") +
                                 req(1) + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0))),
    "hpack_table": seed(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                              block(extra=()) + lit_incr(b"x-a", b"1" * 40)) +
                        frame(HEADERS, END_HEADERS | END_STREAM, 3,
                              b"\x3f\xe1\x1f" + block() + indexed(62)) +
                        frame(HEADERS, END_HEADERS | END_STREAM, 5, block() + indexed(62))),
    "header_too_big": seed(req(1, extra=tuple((b"x-%d" % i, b"v" * 30) for i in range(12))) +
                           req(3, path=b"/" + b"a" * 100) + req(5) +
                           req(7, path=b"/" + b"a" * 70),
                           flags=PREFACE | SETTINGS0 | EOF | AUTODRAIN | ROOT_SMALL),
    "hpack_bomb": seed(frame(HEADERS, END_HEADERS, 1,
                             block() + lit_incr(b"x", b"b" * 200) + indexed(62) * 60) + req(3),
                       flags=PREFACE | SETTINGS0 | EOF | AUTODRAIN | PAGE_SMALL),
    "bad_frames": seed(frame(DATA, 0, 0, b"x") + req(1)),
    "bad_even_stream": seed(req(2)),
    "bad_window_update": seed(req(1, end=False) + window(1, 0) + req(3)),
    "rst_and_reuse": seed(req(1, end=False) + frame(RST_STREAM, 0, 1, b"\0\0\0\x08") +
                          req(1) + req(3)),
    "unknown_frame": seed(frame(0x20, 0xff, 0, b"hello") + frame(0x0a, 0, 1, b"x") + req(1)),
    "builtin_page": seed(req(1, path=b"/") + req(3, path=b"/index.html?x") + req(5, path=b"/x"),
                         flags=PREFACE | SETTINGS0 | EOF | AUTODRAIN | PAGE | TLS),
    "admin": seed(req(1, path=b"/metrics") + req(3, path=b"/healthz") +
                  req(5, path=b"/status.json") + req(7, path=b"/other"),
                  flags=PREFACE | SETTINGS0 | EOF | AUTODRAIN | ADMIN | TLS),
    "file_ready_fails": seed(req(1, path=b"/big.bin"), byte1=FILE_FAIL),
    "split_reads": seed(req(1) + req(3, path=b"/hello.txt"),
                        events=(ev(1), ev(7, DRAIN), ev(30), ev(2, TIMER))),
    "header_timeout": seed(frame(HEADERS, 0, 1, block()[:4]),
                           events=(ev(0, TIMER),), flags=PREFACE | SETTINGS0),
    "idle_timeout": seed(req(1), events=(ev(0, TIMER),), flags=PREFACE | SETTINGS0),
    "shutdown": seed(req(1, path=b"/big.bin") + req(3),
                     events=(ev(20, SHUTDOWN), ev(0, DRAIN)), flags=PREFACE | SETTINGS0),
    # Output over the high water (no drain until asked): reading pauses,
    # a chunk still arrives, and resume_read delivers it.
    "paused_kept_chunk": seed(pad_to(512, settings((4, 1 << 20)) + window(0, 1 << 24) +
                                     b"".join(req(1 + 2 * i, path=b"/big.bin")
                                              for i in range(6))) +
                              frame(PING, 0, 0, b"pingping") + req(13),
                              byte1=KEEP, events=(ev(49), ev(0), ev(0, DRAIN)),
                              flags=PREFACE | SETTINGS0 | EOF),
    "shutdown_idle": seed(b"", events=(ev(0, SHUTDOWN),), flags=PREFACE | SETTINGS0),
    # No prepended preface: the client's own bytes, in pieces.
    "preface_in_pieces": seed(PREFACE_BYTES + EMPTY_SETTINGS + req(1), flags=EOF,
                              events=(ev(5), ev(10), ev(40))),
    "tls_alpn_h2": seed(PREFACE_BYTES + EMPTY_SETTINGS + req(1), flags=EOF | TLS),
    "tls_alpn_h2_no_preface": seed(b"GET / HTTP/1.1\r\n\r\n", flags=EOF | TLS),
    "tls_alpn_h1": seed(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", flags=EOF | TLS,
                        byte1=ALPN_H1),
    "http1": seed(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nHEAD /hello.txt HTTP/1.1\r\nHost: a\r\n"
                  b"Range: bytes=1-3\r\n\r\n", flags=EOF),
    "http1_upgrade_attempt": seed(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n"
                                  b"Connection: Upgrade, HTTP2-Settings\r\n"
                                  b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n" +
                                  PREFACE_BYTES, flags=EOF | PAGE),
}


# Inputs that found a bug, replayed first by every run (scripts/fuzz.sh).
REGRESSIONS = {
    # The head and a body past --max-body-bytes in one read: the reset
    # (NO_ERROR) overtook the 405 queued for the stream, and the client
    # got no response at all (fixed in 4f2c9c3).
    "rst_no_error_before_response": SEEDS["post_over_max_body"],
}


def main():
    for kind, inputs in (("corpus", SEEDS), ("regressions", REGRESSIONS)):
        d = os.path.join(HERE, kind, "h2")
        os.makedirs(d, exist_ok=True)
        for name, data in inputs.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
