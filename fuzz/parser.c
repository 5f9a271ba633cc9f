/* libFuzzer target for src/http/parser.c.
 *
 * Runs the request-head parser and the chunked decoder on the input and
 * checks invariants that hold for any bytes:
 *  - a returned length is within the input, and every view lies inside it;
 *  - the parser's answer is a pure function of the bytes it has seen: if a
 *    prefix already gets a final answer, the whole input gets the same one,
 *    and every strict prefix of an accepted head is INCOMPLETE;
 *  - the chunked decoder gives the same result whole and byte by byte.
 * Invariant failures abort(), which libFuzzer reports as a crash. */
#include "check.h"
#include "../src/http/parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HDRS 16

static const struct rtls_http_limits lims[] = {
	{ .max_head = 8192, .max_target = 2048, .max_headers = MAX_HDRS },
	/* Small limits, so 414/431 paths are reached by short inputs. */
	{ .max_head = 64, .max_target = 12, .max_headers = 3 },
};

static int in_buf(const char *buf, size_t len, struct rtls_http_str s)
{
	return s.p >= buf && s.n <= len && (size_t)(s.p - buf) <= len - s.n;
}

static int parse(const uint8_t *data, size_t len,
		 const struct rtls_http_limits *lim,
		 struct rtls_http_request *req, struct rtls_http_header *h)
{
	req->headers = h;
	return rtls__http_parse_request((const char *)data, len, lim, req);
}

static void check_views(const char *buf, int rc,
			const struct rtls_http_request *req,
			const struct rtls_http_limits *lim)
{
	size_t i, head = (size_t)rc;

	check(req->num_headers <= lim->max_headers);
	check(req->minor_version == 0 || req->minor_version == 1);
	check(req->method.n > 0 && in_buf(buf, head, req->method));
	check(req->target.n > 0 && req->target.n <= lim->max_target);
	check(in_buf(buf, head, req->target));
	for (i = 0; i < req->num_headers; i++) {
		check(req->headers[i].name.n > 0);
		check(in_buf(buf, head, req->headers[i].name));
		check(in_buf(buf, head, req->headers[i].value));
	}
}

static void fuzz_head(const uint8_t *data, size_t len,
		      const struct rtls_http_limits *lim)
{
	struct rtls_http_header h[MAX_HDRS], h2[MAX_HDRS];
	struct rtls_http_request req, req2;
	int rc, rc2;

	rc = parse(data, len, lim, &req, h);
	check(rc == RTLS_HTTP_PARSE_INCOMPLETE || rc == RTLS_HTTP_PARSE_BAD ||
	      rc == RTLS_HTTP_PARSE_URI_TOO_LONG || rc == RTLS_HTTP_PARSE_HEADERS_TOO_LARGE ||
	      rc == RTLS_HTTP_PARSE_BAD_VERSION || rc > 0);
	if (rc > 0) {
		check((size_t)rc <= len && (size_t)rc <= lim->max_head);
		check_views((const char *)data, rc, &req, lim);
		/* The shortest head is "a b HTTP/1.1" CRLF CRLF, and every
		 * head ends with a line's CRLF and then the empty line. */
		check(rc >= 16 && memcmp(data + rc - 4, "\r\n\r\n", 4) == 0);
		rc2 = parse(data, (size_t)rc - 1, lim, &req2, h2);
		check(rc2 == RTLS_HTTP_PARSE_INCOMPLETE);
	}
	/* A final answer on a prefix must not change with more bytes. */
	rc2 = parse(data, len / 2, lim, &req2, h2);
	if (rc2 != RTLS_HTTP_PARSE_INCOMPLETE)
		check(rc2 == rc);
	/* And INCOMPLETE on the whole means INCOMPLETE on every prefix. */
	if (rc == RTLS_HTTP_PARSE_INCOMPLETE)
		check(rc2 == RTLS_HTTP_PARSE_INCOMPLETE);
}

static void fuzz_chunked(const uint8_t *data, size_t len)
{
	struct rtls_http_chunked c = { 0, 0, 0 }, c1 = { 0, 0, 0 };
	size_t used = 0, used1, total1 = 0, i;
	uint64_t bytes = 0, bytes1, sum1 = 0;
	int rc, rc1 = 0;

	rc = rtls__http_chunked_feed(&c, (const char *)data, len, &used,
				     &bytes);
	check(rc == 0 || rc == 1 || rc == RTLS_HTTP_PARSE_BAD);
	check(used <= len && bytes <= used);
	if (rc == 0)
		check(used == len);

	for (i = 0; i < len && rc1 == 0; i++) {
		rc1 = rtls__http_chunked_feed(&c1, (const char *)data + i, 1,
					      &used1, &bytes1);
		check(used1 <= 1 && bytes1 <= used1);
		total1 += used1;
		sum1 += bytes1;
	}
	check(rc1 == rc && total1 == used && sum1 == bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtls_http_header h[MAX_HDRS];
	struct rtls_http_request req;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(lims) / sizeof(lims[0]); i++)
		fuzz_head(data, size, &lims[i]);

	fuzz_chunked(data, size);
	/* Also as a body after a parsed head, as the server would see it. */
	rc = parse(data, size, &lims[0], &req, h);
	if (rc > 0)
		fuzz_chunked(data + rc, size - (size_t)rc);
	return 0;
}
