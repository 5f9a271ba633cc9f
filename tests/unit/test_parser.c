/* Unit test for src/http/parser.c: request heads and the chunked decoder.
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
	struct rtls_http_chunked c = { 0, 0 };
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

static void test_chunked_bytewise(void)
{
	const size_t n = sizeof(chunked_body) - 1;
	struct rtls_http_chunked c = { 0, 0 };
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
	struct rtls_http_chunked c = { 0, 0 };
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
	struct rtls_http_chunked c = { 0, 0 };
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
	struct rtls_http_chunked c = { 0, 0 };
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
	CHECK_DONE();
}
