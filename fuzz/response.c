/* libFuzzer target for the response side of src/http/parser.c.
 *
 * Runs the response-head parser, the body framing and the chunked decoder
 * on the input (raw bytes, as an upstream would send them) and checks
 * invariants that hold for any bytes:
 *  - a returned length is within the input and max_head, and every view
 *    lies inside the head;
 *  - the answer is a pure function of the bytes seen: every strict prefix
 *    of an accepted head is INCOMPLETE, and once a prefix gets a final
 *    answer every longer one gets the same;
 *  - the framing agrees with an independent count of the fields: never a
 *    length or chunked body when Content-Length and Transfer-Encoding
 *    could be read two ways, never a body where RFC 9112 §6.3 rule 1 says
 *    there is none, and a BAD always has a reason;
 *  - the chunked decoder, over what follows the head, stays inside its
 *    input and gives the same result whole and split in two.
 * Invariant failures abort(), which libFuzzer reports as a crash. */
#include "check.h"
#include "../src/http/parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HDRS 16

static const struct rtls_http_limits lims[] = {
	{ .max_head = 8192, .max_target = 2048, .max_headers = MAX_HDRS },
	/* Small limits, so the 431 paths are reached by short inputs. */
	{ .max_head = 64, .max_target = 12, .max_headers = 3 },
};

static int in_buf(const char *buf, size_t len, struct rtls_http_str s)
{
	return s.p >= buf && s.n <= len && (size_t)(s.p - buf) <= len - s.n;
}

static int parse(const uint8_t *data, size_t len, const struct rtls_http_limits *lim,
		 struct rtls_http_response *resp, struct rtls_http_header *h)
{
	resp->headers = h;
	return rtls__http_parse_response((const char *)data, len, lim, resp);
}

static void check_views(const char *buf, int rc, const struct rtls_http_response *resp,
			const struct rtls_http_limits *lim)
{
	size_t i, head = (size_t)rc;

	check(resp->num_headers <= lim->max_headers);
	check(resp->minor_version == 0 || resp->minor_version == 1);
	check(resp->status >= 100 && resp->status <= 599);
	/* The reason starts right after "HTTP/1.x 200 ". */
	check(resp->reason.p == buf + 13 && in_buf(buf, head, resp->reason));
	for (i = 0; i < resp->reason.n; i++)
		check(resp->reason.p[i] != '\r' && resp->reason.p[i] != '\n');
	for (i = 0; i < resp->num_headers; i++) {
		check(resp->headers[i].name.n > 0);
		check(in_buf(buf, head, resp->headers[i].name));
		check(in_buf(buf, head, resp->headers[i].value));
	}
}

/* Parses every prefix of the input and the whole; returns the whole's
 * answer, with *resp (on h) filled from the whole. */
static int fuzz_head(const uint8_t *data, size_t len, const struct rtls_http_limits *lim,
		     struct rtls_http_response *resp, struct rtls_http_header *h)
{
	struct rtls_http_header h2[MAX_HDRS];
	struct rtls_http_response r2;
	int rc, rc2, final_seen = 0;
	size_t n;

	rc = parse(data, len, lim, resp, h);
	check(rc == RTLS_HTTP_PARSE_INCOMPLETE || rc == RTLS_HTTP_PARSE_BAD ||
	      rc == RTLS_HTTP_PARSE_HEADERS_TOO_LARGE || rc == RTLS_HTTP_PARSE_BAD_VERSION ||
	      rc > 0);
	if (rc > 0) {
		check((size_t)rc <= len && (size_t)rc <= lim->max_head);
		check_views((const char *)data, rc, resp, lim);
		/* The shortest head is "HTTP/1.1 200 " CRLF CRLF. */
		check(rc >= 17 && memcmp(data + rc - 4, "\r\n\r\n", 4) == 0);
	}
	/* Each prefix: INCOMPLETE until the first final answer, which is
	 * the whole's, and so is every later one. */
	for (n = 0; n < len; n++) {
		rc2 = parse(data, n, lim, &r2, h2);
		if (rc > 0 && n < (size_t)rc)
			check(rc2 == RTLS_HTTP_PARSE_INCOMPLETE);
		if (final_seen || rc2 != RTLS_HTTP_PARSE_INCOMPLETE)
			check(rc2 == rc);
		final_seen |= rc2 != RTLS_HTTP_PARSE_INCOMPLETE;
	}
	return rc;
}

/* The fields the framing rules look at, counted independently. */
struct counts {
	size_t length, coding;
};

static struct counts count_fields(const struct rtls_http_response *resp)
{
	struct counts k = { 0, 0 };
	size_t i;

	for (i = 0; i < resp->num_headers; i++) {
		if (rtls__http_str_ieq(resp->headers[i].name, "content-length"))
			k.length++;
		if (rtls__http_str_ieq(resp->headers[i].name, "transfer-encoding"))
			k.coding++;
	}
	return k;
}

static void fuzz_framing(const struct rtls_http_response *resp, bool head_request)
{
	struct counts k = count_fields(resp);
	struct rtls_http_framing f;
	const char *why = NULL;
	int rc, no_body;

	rc = rtls__http_response_framing(resp, head_request, &f, &why);
	check(rc == 0 || rc == RTLS_HTTP_PARSE_BAD);
	if (rc) {
		check(why != NULL && why[0] != '\0');
		return;
	}
	check(why == NULL);
	no_body = head_request || resp->status < 200 || resp->status == 204 || resp->status == 304;
	check(no_body == (f.body == RTLS_HTTP_BODY_NONE));
	check(f.upgrade == (resp->status == 101));
	if (f.body == RTLS_HTTP_BODY_CLOSE)
		check(f.close);
	if (f.body == RTLS_HTTP_BODY_LENGTH)
		check(k.length == 1 && k.coding == 0 && f.length <= (uint64_t)INT64_MAX);
	else
		check(f.length == 0);
	if (f.body == RTLS_HTTP_BODY_CHUNKED)
		check(k.length == 0 && k.coding == 1 && resp->minor_version == 1);
	/* Without either field, a body runs to the close. */
	if (!no_body && k.length == 0 && k.coding == 0)
		check(f.body == RTLS_HTTP_BODY_CLOSE);
}

/* The body after the head: whole, then split at split, must agree. */
static void fuzz_chunked(const uint8_t *data, size_t len, size_t split)
{
	struct rtls_http_chunked c = { 0, 0, 0 }, c2 = { 0, 0, 0 };
	size_t used = 0, used1 = 0, used2 = 0;
	uint64_t bytes = 0, bytes1 = 0, bytes2 = 0;
	int rc, rc2;

	rc = rtls__http_chunked_feed(&c, (const char *)data, len, &used, &bytes);
	check(rc == 0 || rc == 1 || rc == RTLS_HTTP_PARSE_BAD);
	check(used <= len && bytes <= used);
	if (rc == 0)
		check(used == len);

	split = len ? split % (len + 1) : 0;
	rc2 = rtls__http_chunked_feed(&c2, (const char *)data, split, &used1, &bytes1);
	check(used1 <= split && bytes1 <= used1);
	if (rc2 == 0 && split < len) {
		rc2 = rtls__http_chunked_feed(&c2, (const char *)data + split, len - split, &used2,
					      &bytes2);
		check(used2 <= len - split && bytes2 <= used2);
	}
	check(rc2 == rc && used1 + used2 == used && bytes1 + bytes2 == bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtls_http_header h[MAX_HDRS];
	struct rtls_http_response resp;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
		rc = fuzz_head(data, size, &lims[i], &resp, h);
		if (rc <= 0)
			continue;
		fuzz_framing(&resp, false);
		fuzz_framing(&resp, true);
		/* What follows the head, as the proxy would feed it; a
		 * byte of the head picks where to split it. */
		if (i == 0)
			fuzz_chunked(data + rc, size - (size_t)rc, (size_t)data[rc / 2]);
	}
	return 0;
}
