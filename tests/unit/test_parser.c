/* Unit test for src/http/parser.c: request heads, response heads and their
 * body framing, and the chunked decoder.
 *
 * Every input is copied flush against the end of a page that is followed
 * by a PROT_NONE guard page, so reading even one byte past the end of the
 * input crashes the test instead of passing by luck. */
#include "../../src/http/parser.h"
#include "check.h"
#include "guard.h"

#include <stdint.h>

#define MAX_HDRS 64

static struct rtls_http_header hdrs[MAX_HDRS];
static struct rtls_http_request req;

static const struct rtls_http_limits def_lim = {
	.max_head = 4096, .max_target = 1024, .max_headers = 32,
};

static int parse_lim(const char *s, size_t n,
		     const struct rtls_http_limits *lim)
{
	memset(&req, 0, sizeof(req));
	req.headers = hdrs;
	return rtls__http_parse_request(guarded(s, n), n, lim, &req);
}

#define PARSE(lit) parse_lim((lit), sizeof(lit) - 1, &def_lim)

static void test_simple_get(void)
{
	static const char r[] = "GET /index.html HTTP/1.1\r\n"
				"Host: example.com\r\n"
				"Accept: */*\r\n"
				"\r\n";

	CHECK_EQ_INT(PARSE(r), sizeof(r) - 1);
	CHECK_MEM(req.method.p, req.method.n, "GET");
	CHECK_MEM(req.target.p, req.target.n, "/index.html");
	CHECK_EQ_INT(req.minor_version, 1);
	CHECK_EQ_INT(req.num_headers, 2);
	CHECK_MEM(hdrs[0].name.p, hdrs[0].name.n, "Host");
	CHECK_MEM(hdrs[0].value.p, hdrs[0].value.n, "example.com");
	CHECK_MEM(hdrs[1].name.p, hdrs[1].name.n, "Accept");
	CHECK_MEM(hdrs[1].value.p, hdrs[1].value.n, "*/*");

	/* A higher minor version is read as 1.1 (RFC 9110 §2.5). */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.2\r\n\r\n"), 18);
	CHECK_EQ_INT(req.minor_version, 1);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.9\r\n\r\n"), 18);
	CHECK_EQ_INT(req.minor_version, 1);
	CHECK_EQ_INT(PARSE("HEAD * HTTP/1.0\r\n\r\n"), 19);
	CHECK_MEM(req.method.p, req.method.n, "HEAD");
	CHECK_MEM(req.target.p, req.target.n, "*");
	CHECK_EQ_INT(req.minor_version, 0);
	CHECK_EQ_INT(req.num_headers, 0);

	/* Trailing body bytes are not part of the head. */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\n\r\nbody"), 18);
	/* Methods are any token, case-sensitive, not a fixed list. */
	CHECK_EQ_INT(PARSE("M-SEARCH!~ / HTTP/1.1\r\n\r\n"), 25);
	CHECK_MEM(req.method.p, req.method.n, "M-SEARCH!~");
}

static void test_leading_crlf(void)
{
	static const char r[] = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";

	CHECK_EQ_INT(PARSE(r), sizeof(r) - 1);
	CHECK_MEM(req.method.p, req.method.n, "GET");
	CHECK_EQ_INT(PARSE("\r\n"), RTLS_HTTP_PARSE_INCOMPLETE);
	CHECK_EQ_INT(PARSE("\r"), RTLS_HTTP_PARSE_INCOMPLETE);
	CHECK_EQ_INT(PARSE("\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("\r\nGET"), RTLS_HTTP_PARSE_INCOMPLETE);
	CHECK_EQ_INT(PARSE("\rGET"), RTLS_HTTP_PARSE_BAD);
}

static void test_many_headers(void)
{
	char buf[2048];
	size_t n = 0;
	int i;

	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "GET / HTTP/1.1\r\n");
	for (i = 0; i < 32; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				      "X-H%d: value %d\r\n", i, i);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");

	/* Exactly max_headers is fine. */
	CHECK_EQ_INT(parse_lim(buf, n, &def_lim), n);
	CHECK_EQ_INT(req.num_headers, 32);
	CHECK_MEM(hdrs[0].name.p, hdrs[0].name.n, "X-H0");
	CHECK_MEM(hdrs[31].name.p, hdrs[31].name.n, "X-H31");
	CHECK_MEM(hdrs[31].value.p, hdrs[31].value.n, "value 31");
}

static void test_ows(void)
{
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: \t a \t b \t\r\n"
			   "B:c\r\nC:\r\nD:  \t \r\n\r\n"), 49);
	CHECK_EQ_INT(req.num_headers, 4);
	CHECK_MEM(hdrs[0].value.p, hdrs[0].value.n, "a \t b");
	CHECK_MEM(hdrs[1].value.p, hdrs[1].value.n, "c");
	CHECK_EQ_INT(hdrs[2].value.n, 0);
	CHECK_EQ_INT(hdrs[3].value.n, 0);
	/* obs-text is allowed in values. */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n"), 28);
	CHECK_MEM(hdrs[0].value.p, hdrs[0].value.n, "caf\xc3\xa9");
}

static void test_bad_request_line(void)
{
	CHECK_EQ_INT(PARSE(" / HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GE(T / HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET\t/ HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET  HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /  HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /a\tb HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /\x7f HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /\x80 HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1 \r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTX/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / http/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.x\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/11.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.10\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\rX\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /\n"), RTLS_HTTP_PARSE_BAD);
}

static void test_bad_nul(void)
{
	/* sizeof - 1 keeps the embedded NUL in the input. */
	CHECK_EQ_INT(PARSE("G\0T / HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /\0 HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\0\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA\0: b\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\r\n\0\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("\0"), RTLS_HTTP_PARSE_BAD);
}

static void test_bad_fields(void)
{
	/* Whitespace between name and colon (RFC 9112 §5.1). */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	/* obs-fold, and whitespace before the first field (§5.2, §2.2). */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\n A: b\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	/* CTLs in values; HTAB is the one allowed. */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\x1b[0m\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	/* Names: empty, non-token, no colon. */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\n: b\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA@B: c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA(B): c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nHost\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nHost example\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\n\xc3\xa9: c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	/* Bare LF: ending a field line, as the final line, as a field line. */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\r\n\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\n\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\n\rX"), RTLS_HTTP_PARSE_BAD);
}

/* A bad byte is reported as soon as it is seen, not when the head ends. */
static void test_bad_incomplete(void)
{
	CHECK_EQ_INT(PARSE("G\x01"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET /a\x01"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTX"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: \x01"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA : "), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\nA: b\r\n "), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PARSE("GET / HTTP/2.0"), RTLS_HTTP_PARSE_BAD_VERSION);
}

static void test_version(void)
{
	CHECK_EQ_INT(PARSE("GET / HTTP/2.0\r\n\r\n"), RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PARSE("GET / HTTP/0.9\r\n\r\n"), RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PARSE("GET / HTTP/3.0\r\n\r\n"), RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PARSE("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
		     RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PARSE("GET / HTTP/1.0\r\n\r\n"), 18);
	CHECK_EQ_INT(req.minor_version, 0);
}

static void test_uri_limit(void)
{
	static const struct rtls_http_limits lim = {
		.max_head = 4096, .max_target = 8, .max_headers = 4,
	};

	CHECK_EQ_INT(parse_lim("GET /2345678 HTTP/1.1\r\n\r\n", 25, &lim), 25);
	CHECK_MEM(req.target.p, req.target.n, "/2345678");
	CHECK_EQ_INT(parse_lim("GET /23456789 HTTP/1.1\r\n\r\n", 26, &lim),
		     RTLS_HTTP_PARSE_URI_TOO_LONG);
	/* Known before the line, or even the target, is complete. */
	CHECK_EQ_INT(parse_lim("GET /23456789", 13, &lim), RTLS_HTTP_PARSE_URI_TOO_LONG);
	CHECK_EQ_INT(parse_lim("GET /2345678", 12, &lim),
		     RTLS_HTTP_PARSE_INCOMPLETE);
}

static void test_header_count_limit(void)
{
	static const struct rtls_http_limits lim = {
		.max_head = 4096, .max_target = 1024, .max_headers = 2,
	};
	static const struct rtls_http_limits zero = {
		.max_head = 4096, .max_target = 1024, .max_headers = 0,
	};
	static const char two[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
	static const char three[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";

	CHECK_EQ_INT(parse_lim(two, sizeof(two) - 1, &lim), sizeof(two) - 1);
	CHECK_EQ_INT(parse_lim(three, sizeof(three) - 1, &lim),
		     RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	/* Known at the first byte of the third field line (offset 28). */
	CHECK_EQ_INT(parse_lim(three, 29, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	CHECK_EQ_INT(parse_lim(three, 28, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
	CHECK_EQ_INT(parse_lim("GET / HTTP/1.1\r\n\r\n", 18, &zero), 18);
	CHECK_EQ_INT(parse_lim(two, sizeof(two) - 1, &zero),
		     RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
}

static void test_head_size_limit(void)
{
	static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"; /* 27 */
	struct rtls_http_limits lim = {
		.max_head = 27, .max_target = 1024, .max_headers = 4,
	};

	/* A head of exactly max_head bytes is fine. */
	CHECK_EQ_INT(parse_lim(r, 27, &lim), 27);
	/* Incomplete, and len < max_head: wait for more. */
	CHECK_EQ_INT(parse_lim(r, 26, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
	lim.max_head = 26;
	/* Complete head over the limit. */
	CHECK_EQ_INT(parse_lim(r, 27, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	/* Incomplete head that already fills max_head. */
	CHECK_EQ_INT(parse_lim(r, 26, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	CHECK_EQ_INT(parse_lim(r, 25, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
	/* Leading empty lines count toward the limit. */
	lim.max_head = 28;
	CHECK_EQ_INT(parse_lim("\r\n" "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 29,
			       &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	/* max_head 0: nothing fits, not even an empty buffer. */
	lim.max_head = 0;
	CHECK_EQ_INT(parse_lim(r, 0, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	CHECK_EQ_INT(parse_lim(r, 27, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	/* Huge max_head is clamped, not trusted. */
	lim.max_head = SIZE_MAX;
	CHECK_EQ_INT(parse_lim(r, 27, &lim), 27);
	CHECK_EQ_INT(parse_lim(r, 0, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
}

/* Every strict prefix is INCOMPLETE, the whole is accepted; with the guard
 * page any read past len faults. */
static void test_prefixes(void)
{
	static const char r[] = "\r\nPOST /upload?a=b HTTP/1.1\r\n"
				"Host: example.com\r\n"
				"Content-Type:  text/plain \r\n"
				"Transfer-Encoding: chunked\r\n"
				"X-Empty:\r\n"
				"\r\n";
	size_t n;

	for (n = 0; n < sizeof(r) - 1; n++)
		CHECK_EQ_INT(parse_lim(r, n, &def_lim), RTLS_HTTP_PARSE_INCOMPLETE);
	CHECK_EQ_INT(parse_lim(r, n, &def_lim), sizeof(r) - 1);
	CHECK_EQ_INT(req.num_headers, 4);
	CHECK_MEM(hdrs[1].value.p, hdrs[1].value.n, "text/plain");
	CHECK_MEM(req.target.p, req.target.n, "/upload?a=b");
}

/* Once an error is visible, every longer prefix gives the same error. */
static void test_error_prefixes(void)
{
	static const char r[] = "GET / HTTP/1.1\r\nA: b\x01" "c\r\n\r\n";
	const size_t bad = 20; /* offset of \x01 */
	size_t n;

	for (n = 0; n < sizeof(r); n++)
		CHECK_EQ_INT(parse_lim(r, n, &def_lim),
			     n <= bad ? RTLS_HTTP_PARSE_INCOMPLETE : RTLS_HTTP_PARSE_BAD);
}

static void test_pipelined(void)
{
	static const char r[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
				"GET /b HTTP/1.0\r\n\r\n";
	const char *g = guarded(r, sizeof(r) - 1);
	int first, second;

	memset(&req, 0, sizeof(req));
	req.headers = hdrs;
	first = rtls__http_parse_request(g, sizeof(r) - 1, &def_lim, &req);
	CHECK_EQ_INT(first, 28);
	CHECK_MEM(req.target.p, req.target.n, "/a");
	CHECK_EQ_INT(req.num_headers, 1);
	if (first <= 0)
		return;
	second = rtls__http_parse_request(g + first,
					  sizeof(r) - 1 - (size_t)first,
					  &def_lim, &req);
	CHECK_EQ_INT(second, 19);
	CHECK_MEM(req.target.p, req.target.n, "/b");
	CHECK_EQ_INT(req.minor_version, 0);
	CHECK_EQ_INT(req.num_headers, 0);
}

static void test_str_ieq(void)
{
	struct rtls_http_str s = { "Chunked", 7 };

	CHECK(rtls__http_str_ieq(s, "chunked"));
	CHECK(rtls__http_str_ieq(s, "CHUNKED"));
	CHECK(!rtls__http_str_ieq(s, "chunk"));
	CHECK(!rtls__http_str_ieq(s, "chunkedx"));
	CHECK(!rtls__http_str_ieq(s, "chunkes"));
	s.n = 0;
	CHECK(rtls__http_str_ieq(s, ""));
	CHECK(!rtls__http_str_ieq(s, "a"));
	/* '@' + 32 is '`': no folding outside A-Z. */
	s.p = "@";
	s.n = 1;
	CHECK(!rtls__http_str_ieq(s, "`"));
}

static const char chunked_body[] = "5\r\nhello\r\n"
				   "6;name=val;x=\"q\"\r\n world\r\n"
				   "00A \t;ext\r\n0123456789\r\n"
				   "0\r\n"
				   "Trailer: x\r\n"
				   "Other:\r\n"
				   "\r\n";
#define CHUNKED_DATA 21

static void test_chunked_whole(void)
{
	static const char in[] = "5\r\nhello\r\n"
				 "6;name=val;x=\"q\"\r\n world\r\n"
				 "00A \t;ext\r\n0123456789\r\n"
				 "0\r\n"
				 "Trailer: x\r\n"
				 "Other:\r\n"
				 "\r\n"
				 "GET";
	struct rtls_http_chunked c = { 0, 0, 0 };
	size_t used = 99;
	uint64_t data = 99;
	const char *g = guarded(in, sizeof(in) - 1);

	CHECK_EQ_INT(rtls__http_chunked_feed(&c, g, sizeof(in) - 1, &used,
					     &data), 1);
	CHECK_EQ_INT(used, sizeof(chunked_body) - 1);
	CHECK_EQ_INT(data, CHUNKED_DATA);
	/* Done is sticky and consumes nothing more. */
	CHECK_EQ_INT(rtls__http_chunked_feed(&c, g, 3, &used, NULL), 1);
	CHECK_EQ_INT(used, 0);

	/* Without trailers. */
	memset(&c, 0, sizeof(c));
	g = guarded("0\r\n\r\n", 5);
	CHECK_EQ_INT(rtls__http_chunked_feed(&c, g, 5, &used, &data), 1);
	CHECK_EQ_INT(used, 5);
	CHECK_EQ_INT(data, 0);
}

/* Feeds n bytes made by fill(i) in 1000-byte pieces after prefix; the
 * first non-zero result and how many bytes were taken in all. */
static int chunked_stream(const char *prefix, char fill, size_t n, size_t *taken)
{
	struct rtls_http_chunked c = { 0, 0, 0 };
	char piece[1000];
	size_t used, plen = strlen(prefix);
	int rc = rtls__http_chunked_feed(&c, prefix, plen, &used, NULL);

	*taken = used;
	memset(piece, fill, sizeof(piece));
	for (size_t done = 0; rc == 0 && done < n; done += sizeof(piece)) {
		rc = rtls__http_chunked_feed(&c, piece, sizeof(piece), &used, NULL);
		*taken += used;
	}
	return rc;
}

/* What is not chunk-data has caps: a chunk-size line of endless zeros or
 * extension bytes, and an endless trailer section, are malformed once
 * past them; right up to them they are fine. */
static void test_chunked_caps(void)
{
	struct rtls_http_chunked c = { 0, 0, 0 };
	static char big[RTLS_HTTP_TRAILERS_MAX + 64];
	size_t taken, used, n;

	CHECK_EQ_INT(chunked_stream("", '0', 1 << 20, &taken), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(taken, RTLS_HTTP_CHUNK_LINE_MAX);
	CHECK_EQ_INT(chunked_stream("1;a=", 'b', 1 << 20, &taken), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(taken, RTLS_HTTP_CHUNK_LINE_MAX);
	CHECK_EQ_INT(chunked_stream("0\r\nX-T: ", 'v', 1 << 20, &taken), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(taken, RTLS_HTTP_TRAILERS_MAX);
	/* A size line of exactly the cap: "1" and zeros before it, CRLF. */
	n = RTLS_HTTP_CHUNK_LINE_MAX;
	memset(big, '0', n - 3);
	memcpy(big + n - 3, "1\r\n", 3);
	memcpy(big + n, "x\r\n0\r\n\r\n", 8);
	CHECK_EQ_INT(rtls__http_chunked_feed(&c, big, n + 8, &used, NULL), 1);
	CHECK_EQ_INT(used, n + 8);
	/* Many chunks: each line has its own cap. */
	memset(&c, 0, sizeof(c));
	for (unsigned k = 0; k < 10000; k++)
		CHECK_EQ_INT(rtls__http_chunked_feed(&c, "1;e=v\r\nx\r\n", 10, &used, NULL), 0);
	CHECK_EQ_INT(rtls__http_chunked_feed(&c, "0\r\n\r\n", 5, &used, NULL), 1);
}

static void test_chunked_bytewise(void)
{
	const size_t n = sizeof(chunked_body) - 1;
	struct rtls_http_chunked c = { 0, 0, 0 };
	const char *g = guarded(chunked_body, n);
	uint64_t total = 0, data;
	size_t i, used;
	int rc = 0;

	for (i = 0; i < n; i++) {
		rc = rtls__http_chunked_feed(&c, g + i, 1, &used, &data);
		CHECK_EQ_INT(used, 1);
		total += data;
		CHECK_EQ_INT(rc, i + 1 == n ? 1 : 0);
		if (rc != 0)
			break;
	}
	CHECK_EQ_INT(rc, 1);
	CHECK_EQ_INT(total, CHUNKED_DATA);

	/* Every split point gives the same result as the whole. */
	for (i = 0; i <= n; i++) {
		size_t u1 = 0, u2 = 0;
		uint64_t d1 = 0, d2 = 0;
		int r1, r2 = 0;

		memset(&c, 0, sizeof(c));
		r1 = rtls__http_chunked_feed(&c, guarded(chunked_body, i), i,
					     &u1, &d1);
		CHECK_EQ_INT(r1, i == n ? 1 : 0);
		CHECK_EQ_INT(u1, i);
		if (i < n)
			r2 = rtls__http_chunked_feed(&c,
						     guarded(chunked_body + i,
							     n - i),
						     n - i, &u2, &d2);
		CHECK_EQ_INT(i < n ? r2 : 1, 1);
		CHECK_EQ_INT(u1 + u2, n);
		CHECK_EQ_INT(d1 + d2, CHUNKED_DATA);
	}
}

/* Feeds s whole and byte by byte; both must fail, at the same offset. */
static void chunked_bad(const char *s, size_t n, size_t bad_at, int line)
{
	struct rtls_http_chunked c = { 0, 0, 0 };
	size_t used = 0, i;
	int rc;

	rc = rtls__http_chunked_feed(&c, guarded(s, n), n, &used, NULL);
	if (rc != RTLS_HTTP_PARSE_BAD || used != bad_at) {
		fprintf(stderr, "line %d: rc %d used %zu\n", line, rc, used);
		check_failures++;
	}
	/* Errors are sticky. */
	CHECK_EQ_INT(rtls__http_chunked_feed(&c, "0\r\n\r\n", 5, &used, NULL),
		     RTLS_HTTP_PARSE_BAD);

	memset(&c, 0, sizeof(c));
	for (i = 0; i < n; i++) {
		rc = rtls__http_chunked_feed(&c, guarded(s + i, 1), 1, &used,
					     NULL);
		if (rc != 0)
			break;
	}
	if (rc != RTLS_HTTP_PARSE_BAD || i != bad_at || used != 0) {
		fprintf(stderr, "line %d: bytewise rc %d at %zu\n", line, rc, i);
		check_failures++;
	}
}

#define CHUNKED_BAD(lit, at) chunked_bad((lit), sizeof(lit) - 1, (at), __LINE__)

static void test_chunked_errors(void)
{
	CHUNKED_BAD("g\r\n", 0);
	CHUNKED_BAD("\r\n", 0);
	CHUNKED_BAD(";x\r\n", 0);
	CHUNKED_BAD(" 5\r\n", 0);
	CHUNKED_BAD("-1\r\n", 0);
	CHUNKED_BAD("5g\r\n", 1);
	CHUNKED_BAD("5 \r\n", 2);    /* BWS only before ';' */
	CHUNKED_BAD("5\n", 1);       /* bare LF */
	CHUNKED_BAD("5\rx", 2);
	CHUNKED_BAD("5;a\x01\r\n", 3);
	CHUNKED_BAD("5;a\n", 3);
	CHUNKED_BAD("5\r\nhelloX", 8);
	CHUNKED_BAD("5\r\nhello\rX", 9);
	CHUNKED_BAD("5\r\nhello\n", 8);
	CHUNKED_BAD("0\r\n\n", 3);
	CHUNKED_BAD("0\r\n\rX", 4);
	CHUNKED_BAD("0\r\n T: x\r\n\r\n", 3);   /* obs-fold */
	CHUNKED_BAD("0\r\nT : x\r\n\r\n", 4);
	CHUNKED_BAD("0\r\nT\r\n\r\n", 4);
	CHUNKED_BAD("0\r\nT: x\x7f\r\n\r\n", 7);
	CHUNKED_BAD("0\r\nT: x\n\r\n", 7);
	CHUNKED_BAD("0\r\nT: x\r\n\n", 9);
	/* 2^63 overflows; 2^63 - 1 and leading zeros are fine. */
	CHUNKED_BAD("8000000000000000\r\n", 15);
	CHUNKED_BAD("10000000000000000\r\n", 16);
	CHUNKED_BAD("ffffffffffffffffffff\r\n", 15);
}

/* The size forms conformance suites send, and chunk-ext (RFC 9112 §7.1.1):
 * every one of these is a framing error, found at the offset given. */
static void test_chunked_size_and_ext_errors(void)
{
	CHUNKED_BAD("+5\r\n", 0);
	CHUNKED_BAD("0x5\r\n", 1);
	CHUNKED_BAD("1_0\r\n", 1);
	CHUNKED_BAD("FFFFFFFFFFFFFFFF0\r\n", 15);
	CHUNKED_BAD("5;\r\n", 2);          /* empty chunk-ext-name */
	CHUNKED_BAD("5;bad[=x\r\n", 5);    /* '[' is not a tchar */
	CHUNKED_BAD("5;;a\r\n", 2);
	CHUNKED_BAD("5;=x\r\n", 2);
	CHUNKED_BAD("5;a=\r\n", 4);        /* empty chunk-ext-val */
	CHUNKED_BAD("5;a \r\n", 4);        /* BWS only before ';' or '=' */
	CHUNKED_BAD("5;a=b \r\n", 6);
	CHUNKED_BAD("5;a=b c\r\n", 6);
	CHUNKED_BAD("5;a=b=c\r\n", 5);
	CHUNKED_BAD("5;a\0\r\n", 3);       /* NUL */
	CHUNKED_BAD("5;a\rb\n", 4);        /* bare CR */
	CHUNKED_BAD("5;a=\"x\r\n", 6);     /* CR inside a quoted-string */
	CHUNKED_BAD("5;a=\"x\"y\r\n", 7);
	CHUNKED_BAD("5;a=\"\x01\"\r\n", 5);
	CHUNKED_BAD("5;a=\"\\\x7f\"\r\n", 6);
	CHUNKED_BAD("5;a=x\"\r\n", 5);
}

/* Fed whole and byte by byte, s must be one complete chunked body. */
static void chunked_good(const char *s, size_t n, int line)
{
	struct rtls_http_chunked c = { 0, 0, 0 };
	size_t used = 0, i;
	int rc;

	rc = rtls__http_chunked_feed(&c, guarded(s, n), n, &used, NULL);
	if (rc != 1 || used != n) {
		fprintf(stderr, "line %d: rc %d used %zu\n", line, rc, used);
		check_failures++;
	}
	memset(&c, 0, sizeof(c));
	for (i = 0, rc = 0; i < n && rc == 0; i++)
		rc = rtls__http_chunked_feed(&c, guarded(s + i, 1), 1, &used, NULL);
	if (rc != 1 || i != n) {
		fprintf(stderr, "line %d: bytewise rc %d at %zu\n", line, rc, i);
		check_failures++;
	}
}

#define CHUNKED_GOOD(lit) chunked_good((lit), sizeof(lit) - 1, __LINE__)

static void test_chunked_ext_good(void)
{
	CHUNKED_GOOD("5;a\r\nhello\r\n0\r\n\r\n");
	CHUNKED_GOOD("5;a;b;c=d\r\nhello\r\n0;last\r\n\r\n");
	CHUNKED_GOOD("5 \t; a = b ;c= \"q\\\"x\"\r\nhello\r\n0\r\n\r\n");
	CHUNKED_GOOD("5;a=\"\"\r\nhello\r\n0\r\n\r\n");
	CHUNKED_GOOD("5;a=\"\x80\xff\\\x80 \t\"\r\nhello\r\n0\r\n\r\n");
	CHUNKED_GOOD("5;a=\"x\";b\r\nhello\r\n0\r\n\r\n");
	CHUNKED_GOOD("5;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_max_size(void)
{
	static const char s[] = "0007fffffffffffffff;x\r\nab";
	struct rtls_http_chunked c = { 0, 0, 0 };
	size_t used;
	uint64_t data;

	CHECK_EQ_INT(rtls__http_chunked_feed(&c, guarded(s, sizeof(s) - 1),
					     sizeof(s) - 1, &used, &data), 0);
	CHECK_EQ_INT(used, sizeof(s) - 1);
	CHECK_EQ_INT(data, 2);
	CHECK(c.remaining == (uint64_t)INT64_MAX - 2);
	/* An empty feed is a no-op. */
	CHECK_EQ_INT(rtls__http_chunked_feed(&c, NULL, 0, &used, &data), 0);
	CHECK_EQ_INT(used, 0);
	CHECK_EQ_INT(data, 0);
}

/* Response heads: the reverse proxy reads these from its upstreams. */

static struct rtls_http_response resp;

static int presp_lim(const char *s, size_t n, const struct rtls_http_limits *lim)
{
	memset(&resp, 0, sizeof(resp));
	resp.headers = hdrs;
	return rtls__http_parse_response(guarded(s, n), n, lim, &resp);
}

#define PRESP(lit) presp_lim((lit), sizeof(lit) - 1, &def_lim)

static void test_resp_simple(void)
{
	static const char r[] = "HTTP/1.1 200 OK\r\n"
				"Content-Length: 5\r\n"
				"Server:  up \t\r\n"
				"\r\n"
				"hello";

	CHECK_EQ_INT(PRESP(r), sizeof(r) - 1 - 5);
	CHECK_EQ_INT(resp.minor_version, 1);
	CHECK_EQ_INT(resp.status, 200);
	CHECK_MEM(resp.reason.p, resp.reason.n, "OK");
	CHECK_EQ_INT(resp.num_headers, 2);
	CHECK_MEM(hdrs[0].name.p, hdrs[0].name.n, "Content-Length");
	CHECK_MEM(hdrs[0].value.p, hdrs[0].value.n, "5");
	CHECK_MEM(hdrs[1].name.p, hdrs[1].name.n, "Server");
	CHECK_MEM(hdrs[1].value.p, hdrs[1].value.n, "up");

	CHECK_EQ_INT(PRESP("HTTP/1.0 404 Not Found\r\n\r\n"), 26);
	CHECK_EQ_INT(resp.minor_version, 0);
	CHECK_EQ_INT(resp.status, 404);
	CHECK_MEM(resp.reason.p, resp.reason.n, "Not Found");
	CHECK_EQ_INT(resp.num_headers, 0);
	/* An empty reason, after the required SP. */
	CHECK_EQ_INT(PRESP("HTTP/1.1 204 \r\n\r\n"), 17);
	CHECK_EQ_INT(resp.status, 204);
	CHECK_EQ_INT(resp.reason.n, 0);
	/* HTAB, SP and obs-text are reason bytes, kept as they are. */
	CHECK_EQ_INT(PRESP("HTTP/1.1 200  O\tK \xc3\xa9 \r\n\r\n"), 25);
	CHECK_MEM(resp.reason.p, resp.reason.n, " O\tK \xc3\xa9 ");
	/* The bounds of the status range. */
	CHECK_EQ_INT(PRESP("HTTP/1.1 100 \r\n\r\n"), 17);
	CHECK_EQ_INT(resp.status, 100);
	CHECK_EQ_INT(PRESP("HTTP/1.1 599 x\r\n\r\n"), 18);
	CHECK_EQ_INT(resp.status, 599);
}

static void test_resp_bad_status_line(void)
{
	/* RFC 9112 §4 requires the SP before an absent reason. */
	CHECK_EQ_INT(PRESP("HTTP/1.1 200\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1  200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1\t200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200\tOK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 20 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 2000 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 20a OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 +20 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 099 x\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 000 x\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 600 x\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 999 x\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("http/1.1 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.x 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/2 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP(" HTTP/1.1 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	/* No empty lines before the status-line, unlike a request-line. */
	CHECK_EQ_INT(PRESP("\r\nHTTP/1.1 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	/* CTLs in the reason; bare CR or LF ending it. */
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 O\0K\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 O\x01K\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 O\x7fK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 O\rK\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\n\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 \n"), RTLS_HTTP_PARSE_BAD);
	/* A request is not a response. */
	CHECK_EQ_INT(PRESP("GET / HTTP/1.1\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("\0"), RTLS_HTTP_PARSE_BAD);
}

static void test_resp_version(void)
{
	CHECK_EQ_INT(PRESP("HTTP/2.0 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PRESP("HTTP/0.9 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD_VERSION);
	/* Unlike a request's, another 1.x is not read as 1.1. */
	CHECK_EQ_INT(PRESP("HTTP/1.2 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PRESP("HTTP/1.9 200 OK\r\n\r\n"), RTLS_HTTP_PARSE_BAD_VERSION);
	/* Known as soon as the version is. */
	CHECK_EQ_INT(PRESP("HTTP/1.2"), RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PRESP("HTTP/3.0"), RTLS_HTTP_PARSE_BAD_VERSION);
	CHECK_EQ_INT(PRESP("HTTP/1."), RTLS_HTTP_PARSE_INCOMPLETE);
	CHECK_EQ_INT(PRESP("HTTP/1.0 200 OK\r\n\r\n"), 19);
	CHECK_EQ_INT(resp.minor_version, 0);
}

/* The field-line rules are the request parser's, byte for byte. */
static void test_resp_bad_fields(void)
{
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA : b\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA\t: b\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\n A: b\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\n: b\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA@B: c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA\0: c\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nServer\r\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\n\r\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: b\r\n\n"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\n\rX"), RTLS_HTTP_PARSE_BAD);
	/* Known before the head ends. */
	CHECK_EQ_INT(PRESP("HTTP/1.1 200 OK\r\nA: \x01"), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(PRESP("HTTP/1.1 2x"), RTLS_HTTP_PARSE_BAD);
}

/* Every strict prefix is INCOMPLETE, the whole is accepted (the guard page
 * faults on any read past len); the body after it is not part of it. */
static void test_resp_prefixes(void)
{
	static const char r[] = "HTTP/1.1 200 Fine \t\xff\r\n"
				"Content-Type:  text/plain \r\n"
				"Transfer-Encoding: chunked\r\n"
				"X-Empty:\r\n"
				"\r\n"
				"0\r\n\r\n";
	const size_t head = sizeof(r) - 1 - 5;
	size_t n;

	for (n = 0; n < head; n++)
		CHECK_EQ_INT(presp_lim(r, n, &def_lim), RTLS_HTTP_PARSE_INCOMPLETE);
	for (; n < sizeof(r); n++)
		CHECK_EQ_INT(presp_lim(r, n, &def_lim), head);
	CHECK_EQ_INT(resp.status, 200);
	CHECK_MEM(resp.reason.p, resp.reason.n, "Fine \t\xff");
	CHECK_EQ_INT(resp.num_headers, 3);
	CHECK_MEM(hdrs[0].value.p, hdrs[0].value.n, "text/plain");
	CHECK_EQ_INT(hdrs[2].value.n, 0);
}

/* Once an error is visible, every longer prefix gives the same error. */
static void test_resp_error_prefixes(void)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nA: b\x01"
				"c\r\n\r\n";
	const size_t bad = 21; /* offset of \x01 */
	size_t n;

	for (n = 0; n < sizeof(r); n++)
		CHECK_EQ_INT(presp_lim(r, n, &def_lim),
			     n <= bad ? RTLS_HTTP_PARSE_INCOMPLETE : RTLS_HTTP_PARSE_BAD);
}

static void test_resp_limits(void)
{
	static const char three[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"; /* 37 */
	struct rtls_http_limits lim = { .max_head = 4096, .max_target = 0, .max_headers = 3 };

	/* max_target plays no part; exactly max_headers is fine. */
	CHECK_EQ_INT(presp_lim(three, 37, &lim), 37);
	CHECK_EQ_INT(resp.num_headers, 3);
	lim.max_headers = 2;
	CHECK_EQ_INT(presp_lim(three, 37, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	/* Known at the first byte of the third field line (offset 29). */
	CHECK_EQ_INT(presp_lim(three, 30, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	CHECK_EQ_INT(presp_lim(three, 29, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
	lim.max_headers = 0;
	CHECK_EQ_INT(presp_lim("HTTP/1.1 200 OK\r\n\r\n", 19, &lim), 19);
	CHECK_EQ_INT(presp_lim(three, 37, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);

	lim.max_headers = 3;
	lim.max_head = 37; /* a head of exactly max_head bytes */
	CHECK_EQ_INT(presp_lim(three, 37, &lim), 37);
	CHECK_EQ_INT(presp_lim(three, 36, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
	lim.max_head = 36;
	CHECK_EQ_INT(presp_lim(three, 37, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	CHECK_EQ_INT(presp_lim(three, 36, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	CHECK_EQ_INT(presp_lim(three, 35, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
	/* A bad byte within the limit is still BAD, not 431. */
	lim.max_head = 12;
	CHECK_EQ_INT(presp_lim("HTTP/1.1 2x", 11, &lim), RTLS_HTTP_PARSE_BAD);
	CHECK_EQ_INT(presp_lim("HTTP/1.1 200", 12, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	lim.max_head = 0;
	CHECK_EQ_INT(presp_lim(three, 0, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	CHECK_EQ_INT(presp_lim(three, 37, &lim), RTLS_HTTP_PARSE_HEADERS_TOO_LARGE);
	lim.max_head = SIZE_MAX;
	CHECK_EQ_INT(presp_lim(three, 37, &lim), 37);
	CHECK_EQ_INT(presp_lim(three, 0, &lim), RTLS_HTTP_PARSE_INCOMPLETE);
}

/* A 1xx interim response, then the final one, in one buffer. */
static void test_resp_interim(void)
{
	static const char r[] = "HTTP/1.1 100 Continue\r\n\r\n"
				"HTTP/1.1 201 Created\r\nLocation: /x\r\n\r\n";
	const char *g = guarded(r, sizeof(r) - 1);
	int first, second;

	memset(&resp, 0, sizeof(resp));
	resp.headers = hdrs;
	first = rtls__http_parse_response(g, sizeof(r) - 1, &def_lim, &resp);
	CHECK_EQ_INT(first, 25);
	CHECK_EQ_INT(resp.status, 100);
	if (first <= 0)
		return;
	second = rtls__http_parse_response(g + first, sizeof(r) - 1 - (size_t)first, &def_lim,
					   &resp);
	CHECK_EQ_INT(second, 38);
	CHECK_EQ_INT(resp.status, 201);
	CHECK_EQ_INT(resp.num_headers, 1);
	CHECK_MEM(hdrs[0].value.p, hdrs[0].value.n, "/x");
}

static struct rtls_http_framing fr;
static const char *why;

/* Parses the head (which must be good), then frames it. */
static int frame(const char *s, size_t n, bool head_request, int line)
{
	int rc = presp_lim(s, n, &def_lim);

	if (rc != (int)n) {
		fprintf(stderr, "line %d: head rc %d\n", line, rc);
		check_failures++;
		return 1;
	}
	memset(&fr, 0xa5, sizeof(fr));
	why = "untouched";
	return rtls__http_response_framing(&resp, head_request, &fr, &why);
}

#define FRAME(lit) frame((lit), sizeof(lit) - 1, false, __LINE__)
#define FRAME_HEAD(lit) frame((lit), sizeof(lit) - 1, true, __LINE__)
#define H11 "HTTP/1.1 200 OK\r\n"
#define H10 "HTTP/1.0 200 OK\r\n"

/* Frames s; it must be BAD, for the reason given. */
static void frame_bad(const char *s, size_t n, bool head_request, const char *reason, int line)
{
	int rc = frame(s, n, head_request, line);

	if (rc != RTLS_HTTP_PARSE_BAD || strcmp(why, reason) != 0) {
		fprintf(stderr, "line %d: framing rc %d why \"%s\", expected \"%s\"\n", line, rc,
			why, reason);
		check_failures++;
	}
}

#define FRAME_BAD(lit, reason) frame_bad((lit), sizeof(lit) - 1, false, (reason), __LINE__)
#define FRAME_HEAD_BAD(lit, reason) frame_bad((lit), sizeof(lit) - 1, true, (reason), __LINE__)

static void test_framing_length(void)
{
	CHECK_EQ_INT(FRAME(H11 "Content-Length: 42\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_LENGTH);
	CHECK_EQ_INT(fr.length, 42);
	CHECK_EQ_INT(fr.close, 0);
	CHECK_EQ_INT(fr.upgrade, 0);
	CHECK(strcmp(why, "untouched") == 0);
	CHECK_EQ_INT(FRAME(H11 "content-LENGTH: 0\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_LENGTH);
	CHECK_EQ_INT(fr.length, 0);
	CHECK_EQ_INT(FRAME(H11 "Content-Length: 007\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.length, 7);
	/* 2^63 - 1 is the largest, as for a chunk size. */
	CHECK_EQ_INT(FRAME(H11 "Content-Length: 9223372036854775807\r\n\r\n"), 0);
	CHECK(fr.length == (uint64_t)INT64_MAX);
	FRAME_BAD(H11 "Content-Length: 9223372036854775808\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: 18446744073709551616\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: 99999999999999999999999\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length:\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: +5\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: -1\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: 0x5\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: 5 5\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: 5,5\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: 5, 5\r\n\r\n", "bad Content-Length");
	FRAME_BAD(H11 "Content-Length: 5,\r\n\r\n", "bad Content-Length");
	/* Two fields, even with equal values. */
	FRAME_BAD(H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
		  "two Content-Length fields");
	FRAME_BAD(H11 "Content-Length: 5\r\nX: y\r\ncontent-length: 6\r\n\r\n",
		  "two Content-Length fields");
	/* Not confused with a longer or shorter name. */
	CHECK_EQ_INT(FRAME(H11 "Content-Lengths: 5\r\nContent-Lengt: 5\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CLOSE);
}

static void test_framing_chunked(void)
{
	CHECK_EQ_INT(FRAME(H11 "Transfer-Encoding: chunked\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CHUNKED);
	CHECK_EQ_INT(fr.close, 0);
	CHECK_EQ_INT(fr.length, 0);
	CHECK_EQ_INT(FRAME(H11 "transfer-encoding: CHUNKED\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CHUNKED);
	CHECK_EQ_INT(FRAME(H11 "Transfer-Encoding: gzip, chunked\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CHUNKED);
	CHECK_EQ_INT(FRAME(H11 "Transfer-Encoding: gzip \t,\t chunked\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CHUNKED);
	/* A final coding other than chunked: read to the close. */
	CHECK_EQ_INT(FRAME(H11 "Transfer-Encoding: gzip\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CLOSE);
	CHECK_EQ_INT(fr.close, 1);
	CHECK_EQ_INT(FRAME(H11 "Transfer-Encoding: xchunked\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CLOSE);
	CHECK_EQ_INT(FRAME(H11 "Transfer-Encoding: chunkedx\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CLOSE);
	/* chunked only once, and only last. */
	FRAME_BAD(H11 "Transfer-Encoding: chunked, chunked\r\n\r\n",
		  "chunked before another transfer coding");
	FRAME_BAD(H11 "Transfer-Encoding: chunked, gzip\r\n\r\n",
		  "chunked before another transfer coding");
	/* Empty elements, parameters, non-tokens. */
	FRAME_BAD(H11 "Transfer-Encoding:\r\n\r\n", "empty Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: \t \r\n\r\n", "empty Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: chunked,\r\n\r\n", "bad Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: ,chunked\r\n\r\n", "bad Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: gzip,,chunked\r\n\r\n", "bad Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: chunked;x=1\r\n\r\n", "bad Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: gzip chunked\r\n\r\n", "bad Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: \"chunked\"\r\n\r\n", "bad Transfer-Encoding");
	FRAME_BAD(H11 "Transfer-Encoding: chunked\xff\r\n\r\n", "bad Transfer-Encoding");
	/* Repeated, with Content-Length (either order), in HTTP/1.0. */
	FRAME_BAD(H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		  "two Transfer-Encoding fields");
	FRAME_BAD(H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
		  "two Transfer-Encoding fields");
	FRAME_BAD(H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		  "Transfer-Encoding with Content-Length");
	FRAME_BAD(H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		  "Transfer-Encoding with Content-Length");
	FRAME_BAD(H11 "Content-Length: 0\r\nTransfer-Encoding: gzip\r\n\r\n",
		  "Transfer-Encoding with Content-Length");
	FRAME_BAD(H10 "Transfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in HTTP/1.0");
	FRAME_BAD(H10 "Transfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding in HTTP/1.0");
}

/* RFC 9112 §6.3 rule 1: these have no body, whatever the fields say; only
 * the Content-Length syntax is still checked. */
static void test_framing_no_body(void)
{
	static const int none[] = { 100, 101, 102, 103, 199, 204, 304 };
	char buf[128];
	size_t i;
	int n;

	for (i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		n = snprintf(buf, sizeof(buf),
			     "HTTP/1.1 %d x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
			     "Transfer-Encoding: gzip\r\nContent-Length: 6\r\n\r\n",
			     none[i]);
		CHECK_EQ_INT(frame(buf, (size_t)n, false, __LINE__), 0);
		CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_NONE);
		CHECK_EQ_INT(fr.length, 0);
		CHECK_EQ_INT(fr.close, 0);
		CHECK_EQ_INT(fr.upgrade, none[i] == 101);
	}
	CHECK_EQ_INT(FRAME("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			   "Connection: Upgrade\r\n\r\n"),
		     0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_NONE);
	CHECK_EQ_INT(fr.upgrade, 1);
	CHECK_EQ_INT(fr.close, 0);
	/* Any response to HEAD. */
	CHECK_EQ_INT(FRAME_HEAD(H11 "Content-Length: 5\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_NONE);
	CHECK_EQ_INT(fr.length, 0);
	CHECK_EQ_INT(FRAME_HEAD(H11 "Transfer-Encoding: chunked\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_NONE);
	CHECK_EQ_INT(fr.close, 0);
	CHECK_EQ_INT(FRAME_HEAD("HTTP/1.1 500 x\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_NONE);
	CHECK_EQ_INT(fr.close, 0);
	/* Not 205 or 2xx in general: they are framed as usual. */
	CHECK_EQ_INT(FRAME("HTTP/1.1 205 x\r\nContent-Length: 0\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_LENGTH);
	/* The syntax check still applies. */
	FRAME_BAD("HTTP/1.1 304 x\r\nContent-Length: 5, 5\r\n\r\n", "bad Content-Length");
	FRAME_BAD("HTTP/1.1 204 x\r\nContent-Length: abc\r\n\r\n", "bad Content-Length");
	FRAME_BAD("HTTP/1.1 100 x\r\nContent-Length: 5\r\nContent-Length:\r\n\r\n",
		  "bad Content-Length");
	FRAME_HEAD_BAD(H11 "Content-Length: 99999999999999999999\r\n\r\n", "bad Content-Length");
}

static void test_framing_connection(void)
{
	CHECK_EQ_INT(FRAME(H11 "Content-Length: 0\r\nConnection: close\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_LENGTH);
	CHECK_EQ_INT(fr.close, 1);
	CHECK_EQ_INT(FRAME(H11 "Content-Length: 0\r\nConnection: keep-alive , CLOSE\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.close, 1);
	CHECK_EQ_INT(FRAME(H11 "Content-Length: 0\r\nConnection: x\r\nConnection: close\r\n\r\n"),
		     0);
	CHECK_EQ_INT(fr.close, 1);
	CHECK_EQ_INT(FRAME(H11 "Content-Length: 0\r\nConnection: closed, upgrade\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.close, 0);
	/* No body framing: the body runs to the close. */
	CHECK_EQ_INT(FRAME(H11 "\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CLOSE);
	CHECK_EQ_INT(fr.close, 1);
	/* HTTP/1.0: close unless keep-alive, and close wins. */
	CHECK_EQ_INT(FRAME(H10 "Content-Length: 3\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_LENGTH);
	CHECK_EQ_INT(fr.length, 3);
	CHECK_EQ_INT(fr.close, 1);
	CHECK_EQ_INT(FRAME(H10 "Content-Length: 3\r\nConnection: Keep-Alive\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.close, 0);
	CHECK_EQ_INT(FRAME(H10 "Content-Length: 3\r\nConnection: keep-alive, close\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.close, 1);
	CHECK_EQ_INT(FRAME(H10 "Connection: keep-alive\r\n\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_CLOSE);
	CHECK_EQ_INT(fr.close, 1);
	CHECK_EQ_INT(FRAME_HEAD(H10 "\r\n"), 0);
	CHECK_EQ_INT(fr.body, RTLS_HTTP_BODY_NONE);
	CHECK_EQ_INT(fr.close, 1);
}

static void test_has_token(void)
{
	struct rtls_http_str v = { " a , Close,,\tb\t", 15 };

	CHECK(rtls__http_has_token(v, "close"));
	CHECK(rtls__http_has_token(v, "a"));
	CHECK(rtls__http_has_token(v, "b"));
	CHECK(!rtls__http_has_token(v, "clos"));
	CHECK(!rtls__http_has_token(v, "a , close"));
	CHECK(!rtls__http_has_token(v, ""));
	v.n = 0;
	CHECK(!rtls__http_has_token(v, "close"));
}

int main(void)
{
	guard_init();
	test_simple_get();
	test_leading_crlf();
	test_many_headers();
	test_ows();
	test_bad_request_line();
	test_bad_nul();
	test_bad_fields();
	test_bad_incomplete();
	test_version();
	test_uri_limit();
	test_header_count_limit();
	test_head_size_limit();
	test_prefixes();
	test_error_prefixes();
	test_pipelined();
	test_str_ieq();
	test_chunked_whole();
	test_chunked_bytewise();
	test_chunked_errors();
	test_chunked_size_and_ext_errors();
	test_chunked_ext_good();
	test_chunked_max_size();
	test_chunked_caps();
	test_resp_simple();
	test_resp_bad_status_line();
	test_resp_version();
	test_resp_bad_fields();
	test_resp_prefixes();
	test_resp_error_prefixes();
	test_resp_limits();
	test_resp_interim();
	test_framing_length();
	test_framing_chunked();
	test_framing_no_body();
	test_framing_connection();
	test_has_token();
	CHECK_DONE();
}
