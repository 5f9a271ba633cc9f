#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/) and the pinned
regression inputs (fuzz/regressions/<target>/) of the fuzz targets whose
inputs have a layout of their own. The files are committed; run this only
to change them. Inputs a fuzz run found go to fuzz/regressions/ by hand
(scripts/fuzz.sh prints the command).

  python3 fuzz/seeds.py            everything but the captured ClientHellos
  python3 fuzz/seeds.py --capture  also capture real ClientHellos (openssl
                                   s_client against a socket that records)
"""
import os
import socket
import struct
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))


def write(kind, target, name, data):
    d = os.path.join(HERE, kind, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rec(ctype, body, version=b"\x03\x03"):
    return bytes([ctype]) + version + struct.pack(">H", len(body)) + body


# --- parser: raw bytes (its seeds in fuzz/corpus/parser are plain files) --
def head(target=b"/", headers=(b"Host: a",)):
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


PARSER_REGRESSIONS = {
    # The small limits of fuzz/parser.c: target 12, 3 headers, head 64.
    "target_at_limit": head(b"/" + b"a" * 11),
    "target_over_limit": head(b"/" + b"a" * 12),
    "headers_at_limit": head(headers=(b"Host: a", b"A: 1", b"B: 2")),
    "headers_over_limit": head(headers=(b"Host: a", b"A: 1", b"B: 2", b"C: 3")),
    "head_at_limit": head(headers=(b"Host: " + b"a" * 38,)),
    "head_over_limit": head(headers=(b"Host: " + b"a" * 39,)),
    "chunk_size_overflow": head(headers=(b"Host: a", b"Transfer-Encoding: chunked")) +
                           b"10000000000000000\r\n",
    "chunk_ext_and_trailer": head(headers=(b"Host: a", b"Transfer-Encoding: chunked")) +
                             b"3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
}


# --- response: raw bytes (its seeds in fuzz/corpus/response are plain files)
def resp(status=b"200 OK", headers=(), version=b"1.1"):
    return (b"HTTP/" + version + b" " + status + b"\r\n" +
            b"".join(h + b"\r\n" for h in headers) + b"\r\n")


RESPONSE_REGRESSIONS = {
    # The small limits of fuzz/response.c: 3 headers, head 64.
    "headers_at_limit": resp(headers=(b"A: 1", b"B: 2", b"C: 3")),
    "headers_over_limit": resp(headers=(b"A: 1", b"B: 2", b"C: 3", b"D: 4")),
    "head_at_limit": resp(headers=(b"Server: " + b"a" * 35,)),
    "head_over_limit": resp(headers=(b"Server: " + b"a" * 36,)),
    # Content-Length at 2^63 - 1 and one past it.
    "length_max": resp(headers=(b"Content-Length: 9223372036854775807",)),
    "length_overflow": resp(headers=(b"Content-Length: 9223372036854775808",)),
    "length_list": resp(headers=(b"Content-Length: 5, 5",)) + b"hello",
    # chunked twice, not last, after an empty element; an empty value.
    "chunked_twice": resp(headers=(b"Transfer-Encoding: chunked, chunked",)) + b"0\r\n\r\n",
    "chunked_not_last": resp(headers=(b"Transfer-Encoding: chunked, gzip",)),
    "chunked_empty_element": resp(headers=(b"Transfer-Encoding: gzip,,chunked",)),
    "coding_empty": resp(headers=(b"Transfer-Encoding:",)),
    "coding_http10": resp(headers=(b"Transfer-Encoding: chunked",), version=b"1.0") +
                     b"0\r\n\r\n",
    # No body whatever the fields say, but the length's syntax still counts.
    "head_304_te_and_cl": resp(b"304 x", (b"Transfer-Encoding: chunked", b"Content-Length: 5")),
    "head_204_bad_length": resp(b"204 x", (b"Content-Length: x",)),
    # The status range's edges, a reason of one SP, no SP at all.
    "status_099": resp(b"099 x"),
    "status_600": resp(b"600 x"),
    "reason_sp": resp(b"599  "),
    "reason_no_sp": b"HTTP/1.1 200\r\n\r\n",
}


# --- http_fields: parameter byte, then the field text ----------------------
# bits 0-2: path output size index (7: 4096); bits 3-5: first range size
# index (7: UINT64_MAX, 4: 1000, 3: 10); bits 6-7: second size.
def p(out=7, s1=4, s2=1):
    return bytes([out | s1 << 3 | s2 << 6])


HTTP_SEEDS = {
    "path_query": p() + b"/a/b%20c/index.html?x=1#f",
    "path_dots": p() + b"/a/./b//c/../d",
    "path_enc_dotdot": p() + b"/%2e%2E/etc/passwd",
    "path_enc_slash": p() + b"/a%2fb/%5c",
    "path_dir": p() + b"/docs/",
    "path_small_out": p(out=4) + b"/abcdefgh/ij",
    "range_int": p() + b"bytes=0-99",
    "range_open": p() + b"bytes=500-",
    "range_suffix": p() + b"bytes=-500",
    "range_ows_case": p() + b"Bytes= 1-2 \t",
    "range_set": p() + b"bytes=1-2,3-4",
    "range_huge": p(s1=7) + b"bytes=18446744073709551615-",
    "date_imf": p() + b"Sun, 06 Nov 1994 08:49:37 GMT",
    "date_rfc850": p() + b"Sunday, 06-Nov-94 08:49:37 GMT",
    "date_asctime": p() + b"Sun Nov  6 08:49:37 1994",
    "date_leap": p() + b"Wed, 31 Dec 2016 23:59:60 GMT",
}
HTTP_REGRESSIONS = {
    # The last instant the grammar can write, plus a leap second.
    "date_leap_9999": p() + b"Fri, 31 Dec 9999 23:59:60 GMT",
    "date_year_0": p() + b"Sat, 01 Jan 0000 00:00:00 GMT",
    "date_feb29_nonleap": p() + b"Mon, 29 Feb 2100 00:00:00 GMT",
    # Output exactly one byte too small, and exactly right.
    "path_out_full": p(out=3) + b"/abc",
    "path_out_fits": p(out=3) + b"/ab",
    "path_bad_after_long": p(out=1) + b"/aaaaaaaa/%zz",
    "path_pct_at_end": p() + b"/a%2",
    "path_nul": p() + b"/a%00b",
    "range_last_lt_first": p() + b"bytes=5-4",
    "range_zero_size": p(s1=0) + b"bytes=0-0",
    "range_suffix_zero": p() + b"bytes=-0",
    "range_overflow": p() + b"bytes=18446744073709551616-",
}


# --- tls_records: byte 0 (k | tls12 << 4 | mark chunk << 5), k chunk
# sizes, the stream --------------------------------------------------------
def framed(chunks, stream, tls12=False, mark=7):
    return bytes([len(chunks) | int(tls12) << 4 | mark << 5]) + bytes(chunks) + stream


FLIGHT13 = (rec(22, b"\x02" + b"\x00\x00\x46" + bytes(70)) + rec(20, b"\x01") +
            rec(23, bytes(40)) + rec(23, bytes(60)) + rec(23, bytes(200)))
FLIGHT12 = (rec(22, b"\x02" + bytes(60)) + rec(22, b"\x0b" + bytes(300)) +
            rec(20, b"\x01") + rec(22, bytes(40)) + rec(23, bytes(30)))
RECORD_SEEDS = {
    "tls13_flight_mark": framed([13, 0, 5, 1], FLIGHT13, mark=2),
    "tls12_ccs": framed([7, 64], FLIGHT12, tls12=True),
    "exact_reads": framed([0], FLIGHT13),
    "zero_length": framed([3], rec(23, b"") + rec(21, b"") + rec(23, b"x")),
    "max_length": framed([255, 0], rec(23, bytes(0xffff))[:600]),
    "partial_header": framed([2], rec(22, bytes(10)) + b"\x17\x03"),
}
RECORD_REGRESSIONS = {
    # A header split over five reads; a mark exactly at a record start.
    "header_bytewise": framed([1], FLIGHT13, mark=3),
    # Two ChangeCipherSpecs: the second one moves the mark again.
    "tls12_two_ccs": framed([9], rec(20, b"\x01") + rec(22, bytes(4)) + rec(20, b"\x01") +
                            rec(22, bytes(4)), tls12=True),
    # A mark set after the last header: nothing counted.
    "mark_after_all": framed([5, 250], rec(23, bytes(3)), mark=1),
}


# --- tls_control: type, flags (bit 0: TLS 1.3), plaintext ------------------
CONTROL_SEEDS = {
    "data": b"\x17\x01hello",
    "close_notify": b"\x15\x01\x01\x00",
    "fatal_alert": b"\x15\x01\x02\x14",
    "key_update": b"\x16\x01\x18\x00\x00\x01\x00",
    "key_update_requested": b"\x16\x01\x18\x00\x00\x01\x01",
    "new_session_ticket": b"\x16\x01\x04\x00\x00\x05abcde",
    "ccs": b"\x14\x01\x01",
    "heartbeat": b"\x18\x00\x01\x00\x10",
}
def cmsg(level, ctype, data):
    # struct cmsghdr on 64-bit Linux: size_t len, int level, int type.
    h = struct.pack("<QII", 16 + len(data), level, ctype) + data
    return h + bytes(-len(h) % 8)


CONTROL_SEEDS["cmsg_record_type"] = cmsg(282, 2, b"\x15")
CONTROL_SEEDS["cmsg_two"] = cmsg(1, 29, b"\x00\x00\x00\x00") + cmsg(282, 2, b"\x16")
CONTROL_REGRESSIONS = {
    # cmsg_len claims one data byte the buffer does not hold: the record
    # type must not be read past the end (CMSG_DATA would).
    "cmsg_len_past_end": struct.pack("<QII", 17, 282, 2),
    "cmsg_len_huge": struct.pack("<QII", 2**64 - 1, 282, 2) + b"\x15",
    "cmsg_len_zero": struct.pack("<QII", 0, 282, 2) + b"\x15",
    "alert_three_bytes": b"\x15\x01\x01\x00\x00",
    "alert_one_byte": b"\x15\x01\x02",
    "ku_bad_value": b"\x16\x01\x18\x00\x00\x01\x02",
    "ku_trailing": b"\x16\x01\x18\x00\x00\x01\x00\x18\x00\x00\x01\x00",
    "ku_one_extra_byte": b"\x16\x01\x18\x00\x00\x01\x00\x00",
    "ku_truncated": b"\x16\x01\x18\x00\x00",
    "ku_tls12": b"\x16\x00\x18\x00\x00\x01\x00",
    "ku_wrong_length": b"\x16\x01\x18\x00\x00\x02\x00\x00",
    "handshake_empty": b"\x16\x01",
}


# --- tls_handshake: captured ClientHellos ----------------------------------
def capture(args, extra_stdin=b""):
    """Runs `openssl s_client args` against a socket that records what the
    client sends and never answers; returns the bytes."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    got = bytearray()

    def serve():
        c, _ = ls.accept()
        c.settimeout(2)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got.extend(b)
        except OSError:
            pass
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    proc = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + args,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t.join(10)
    proc.kill()
    proc.wait()
    ls.close()
    return bytes(got)


HANDSHAKE_CLIENTS = {
    "s_client_default": [],
    "s_client_tls13_alpn_sni": ["-tls1_3", "-alpn", "http/1.1,h2", "-servername", "example.test"],
    "s_client_tls12": ["-tls1_2", "-servername", "localhost"],
    "s_client_tls12_chacha": ["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
    "s_client_tls13_aes256": ["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
    "s_client_no_sni": ["-noservername", "-alpn", "http/1.0"],
}


# Resumption mode (byte 0 bit 5; bit 4 TLS 1.3; bit 6 any read size; bits
# 0-3 k read sizes): a real client resumes a session, its flights cut as
# the fuzzer says; what follows is fed after the handshake.
HANDSHAKE_SEEDS = {
    "resume12": b"\x20",
    "resume13": b"\x30",
    "resume13_any_reads": b"\x72\x01\x07",
    "resume12_then_alert": b"\x20" + rec(21, b"\x02\x28"),
}
HANDSHAKE_REGRESSIONS = {
    # Three-byte reads through a resumed handshake: headers split across
    # reads, and the kernel-RX boundary check at every record.
    "resume12_3byte_reads": b"\x21\x03",
    "resume13_3byte_reads": b"\x31\x03",
    # Plain mode, a record header alone, then nothing.
    "header_only": b"\x00\x16\x03\x01\x00\x05",
}


# --- config: the YAML file's bytes (src/cli/config.c) ------------------------
CONFIG_SEEDS = {
    "flags": b"no-tls12: true\nno-tickets: yes\nktls-zerocopy: off\nfollow-symlinks: On\n"
             b"ktls-rx-no-rekey: FALSE\nktls-keyless: maybe\n",
    "values": b"threads: 4\nmax-conns: 1000\nring-entries: 256\nmax-header-bytes: 16384\n"
              b"max-uri-bytes: 4096\nmax-headers: 50\nmax-body-bytes: 0\n"
              b"header-timeout: 500ms\nidle-timeout: 2m\nshutdown-timeout: 1.5\n"
              b"handshake-timeout: 10s\nlog-level: debug\nclient-auth: optional\nktls: rx\n"
              b"key-update-max-rate: 10\nkey-update-after-records: 18446744073709551615\n"
              b"proxy-keepalive: 0\nupstream-proxy-protocol: v2\naccess-log: '-'\n"
              b"access-log-format: json\nadmin-listen: 127.0.0.1:9100\n"
              b"tls-ciphers: ECDHE-ECDSA-AES128-GCM-SHA256\n"
              b"tls13-ciphersuites: TLS_AES_128_GCM_SHA256\n",
    "bad_values": b"threads: 0\nring-entries: 100\nidle-timeout: 0ms\nlog-level: loud\n"
                  b"max-body-bytes: -1\nheader-timeout: 1h\nmax-headers: 257\nktls: maybe\n",
    "lists": b"listen:\n  - :80\n  - \"[::1]:8080\"\n  - localhost:81\ntls-listen: 0.0.0.0:443\n"
             b"proxy:\n  - /api=http://127.0.0.1:8081,http://[::1]:8082/\n"
             b"  - /sock=unix:/run/app.sock\nproxy-protocol-from: [10.0.0.0/8, \"::1\"]\n",
    "bad_lists": b"listen: [\":99999\", \"[::1\", {a: b}, [nested]]\ntls-listen: {a: b}\n"
                 b"proxy: [api=http://x:1, /x=https://a:1, /y=http://name.invalid:80]\n"
                 b"proxy-protocol-from: [10.0.0.0/33]\n",
    "certificates": b"certificates:\n  - cert: /etc/a.pem\n    key: /etc/a.key\n"
                    b"  - {cert: b.pem, key: b.key}\n",
    "bad_certificates": b"certificates:\n  - cert: a.pem\n  - {cert: a, key: b, cert: c}\n"
                        b"  - {cert: [x], key: y}\n  - {pem: x}\n  - one\ncert: x.pem\n",
    "anchor": b"root: &r /srv\nstate-dir: *r\n",
    "merge": b"base: &b {threads: 2}\n<<: *b\n",
    "deep": b"listen: " + b"[" * 20 + b"]" * 20 + b"\n",
    "huge_scalar": b"root: " + b"a" * 3000 + b"\n",
    "nul": b"root: \"/srv\\0/x\"\n\"ke\\0y\": 1\nadmin-listen: \"\\0\"\n",
    "nul_raw": b"state-dir: a\x00b\n",
    "tabs": b"listen:\n\t- :80\nthreads:\t2\n",
    "documents": b"---\nthreads: 2\n...\n---\nthreads: 3\n",
    "not_a_mapping": b"- threads: 2\n",
    "keys": b"threads: 1\nthreads: 2\nunknown: 1\n{a: 1}: 2\n[x]: y\nkey: k.pem\n? |\n  block\n: 1\n",
    "flow_crlf_bom": b"\xef\xbb\xbf{listen: [\":80\"], threads: 4,\r\n root: 'it''s'}\r\n",
    "scalars": b"root: >-\n  folded\n  text\nstate-dir: |\n  lit\naccess-log: \"\\u00e9\\x41\"\n"
               b"client-ca: !!str 12\nthreads: ~\nmax-conns:\n",
}
CONFIG_SEEDS_FILES = {"example": "examples/ringtls.yaml"}


def nested(n):
    """A document n levels deep, the top mapping counted."""
    return b"listen: " + b"[" * (n - 1) + b"]" * (n - 1) + b"\n"


CONFIG_REGRESSIONS = {
    # CLI_CONFIG_MAX_DEPTH (16): the top mapping is the first level.
    "depth_16": nested(16),
    "depth_17": nested(17),
    # The lists' bounds (options.h): one at the limit, one past it.
    "listen_32": b"listen:\n" + b"".join(b"  - :%d\n" % (8000 + i) for i in range(32)),
    "listen_33": b"listen:\n" + b"".join(b"  - :%d\n" % (8000 + i) for i in range(33)),
    "certs_16": b"certificates:\n" + b"".join(b"  - {cert: c%d, key: k%d}\n" % (i, i)
                                              for i in range(16)),
    "certs_17": b"certificates:\n" + b"".join(b"  - {cert: c%d, key: k%d}\n" % (i, i)
                                              for i in range(17)),
    "pp_from_64": b"proxy-protocol-from:\n" + b"".join(b"  - 10.0.0.%d\n" % i for i in range(64)),
    "pp_from_65": b"proxy-protocol-from:\n" + b"".join(b"  - 10.0.0.%d\n" % i for i in range(65)),
    # CLI_CONFIG_MAX_PROBLEMS (100): the 101st stops the reading.
    "problems_100": b"".join(b"x%d: 1\n" % i for i in range(100)),
    "problems_101": b"".join(b"x%d: 1\n" % i for i in range(101)),
    # A key of 63 and 64 bytes: the name buffer's edge.
    "key_63": b"a" * 63 + b": 1\n",
    "key_64": b"a" * 64 + b": 1\n",
    # NULs written as escapes: in a key, in a value, in a certificate.
    "nul_escaped": b"\"threads\\0\": 1\nroot: \"a\\0\"\ncertificates: [{cert: \"\\0\", key: k}]\n",
    # The second document is refused, an empty first one too.
    "second_document": b"threads: 1\n---\nthreads: 2\n",
    "empty_then_document": b"---\n---\nthreads: 2\n",
    # strtod reads "nan": a duration must refuse it (options.c).
    "duration_nan": b"idle-timeout: nan\nheader-timeout: NaNms\n",
}


def main():
    for name, data in PARSER_REGRESSIONS.items():
        write("regressions", "parser", name, data)
    for name, data in RESPONSE_REGRESSIONS.items():
        write("regressions", "response", name, data)
    for name, data in HTTP_SEEDS.items():
        write("corpus", "http_fields", name, data)
    for name, data in HTTP_REGRESSIONS.items():
        write("regressions", "http_fields", name, data)
    for name, data in RECORD_SEEDS.items():
        write("corpus", "tls_records", name, data)
    for name, data in RECORD_REGRESSIONS.items():
        write("regressions", "tls_records", name, data)
    for name, data in CONTROL_SEEDS.items():
        write("corpus", "tls_control", name, data)
    for name, data in CONTROL_REGRESSIONS.items():
        write("regressions", "tls_control", name, data)
    for name, data in HANDSHAKE_SEEDS.items():
        write("corpus", "tls_handshake", name, data)
    for name, data in HANDSHAKE_REGRESSIONS.items():
        write("regressions", "tls_handshake", name, data)
    for name, data in CONFIG_SEEDS.items():
        write("corpus", "config", name, data)
    for name, path in CONFIG_SEEDS_FILES.items():
        with open(os.path.join(HERE, "..", path), "rb") as f:
            write("corpus", "config", name, f.read())
    for name, data in CONFIG_REGRESSIONS.items():
        write("regressions", "config", name, data)
    if "--capture" in sys.argv:
        for name, args in HANDSHAKE_CLIENTS.items():
            hello = capture(args)
            if not hello.startswith(b"\x16\x03"):
                sys.exit("capture %s: no ClientHello (%r)" % (name, hello[:16]))
            # tls_handshake input: byte 0 picks the chunk sizes, then the
            # client's bytes (see fuzz/tls_handshake.c).
            write("corpus", "tls_handshake", name, b"\x00" + hello)


if __name__ == "__main__":
    main()
