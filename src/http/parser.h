/* HTTP/1.1 request-head parser: no I/O, no allocation.
 *
 * Outputs are views (pointer + length) into the caller's buffer; they stay
 * valid as long as that buffer does. Incremental: call again with more bytes
 * (the same prefix plus new data) after RTLS_HTTP_PARSE_INCOMPLETE. */
#ifndef RTLS_HTTP_PARSER_H
#define RTLS_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

/* What rtls__http_parse_request() returns instead of a head's length, and
 * rtls__http_chunked_feed() on bad input. All below -4095 (the kernel's
 * MAX_ERRNO), so none can be taken for a -errno (-1 is -EPERM) nor for a
 * byte count. */
enum rtls_http_parse_code {
	RTLS_HTTP_PARSE_INCOMPLETE = -0x10000,              /* need more bytes */
	RTLS_HTTP_PARSE_BAD = -0x10000 - 400,               /* malformed: 400 */
	RTLS_HTTP_PARSE_URI_TOO_LONG = -0x10000 - 414,      /* request-target too long: 414 */
	RTLS_HTTP_PARSE_HEADERS_TOO_LARGE = -0x10000 - 431, /* head or field count: 431 */
	RTLS_HTTP_PARSE_BAD_VERSION = -0x10000 - 505,       /* not HTTP/1.x: 505 */
};

struct rtls_http_str {
	const char *p;
	size_t n;
};

struct rtls_http_header {
	struct rtls_http_str name;
	struct rtls_http_str value; /* leading/trailing OWS stripped */
};

struct rtls_http_limits {
	size_t max_head;     /* bytes in request line + headers + final CRLF */
	size_t max_target;   /* bytes in the request-target */
	size_t max_headers;  /* number of header fields (<= capacity of headers[]) */
};

struct rtls_http_request {
	struct rtls_http_str method;
	struct rtls_http_str target;
	int minor_version;                 /* 0 or 1 */
	struct rtls_http_header *headers;  /* caller-provided array (borrowed) */
	size_t num_headers;                /* out: number filled */
};

/* Parses one request head from buf[0..len).
 * Returns the number of bytes of the head (through the empty line) on
 * success, RTLS_HTTP_PARSE_INCOMPLETE if the head is not complete yet (and
 * len is still within the limits), or another RTLS_HTTP_PARSE_* code.
 * req->headers must point at an array of at least lim->max_headers entries. */
int rtls__http_parse_request(const char *buf, size_t len,
			     const struct rtls_http_limits *lim,
			     struct rtls_http_request *req);

/* Case-insensitive token compare of a view against a NUL-terminated literal. */
int rtls__http_str_ieq(struct rtls_http_str s, const char *lit);

/* Chunked transfer-coding decoder state (RFC 9112 §7.1), used to skip a
 * request body. Zero-initialise before use. */
struct rtls_http_chunked {
	uint64_t remaining; /* bytes left in the current chunk's data */
	int state;          /* private */
};

/* Consumes bytes of a chunked body from buf[0..len). Sets *consumed to the
 * bytes used and *data_bytes to how many of them were chunk data (may be
 * NULL). Returns 1 when the body (incl. trailers) is complete, 0 when more
 * input is needed, RTLS_HTTP_PARSE_BAD on malformed input. No allocation. */
int rtls__http_chunked_feed(struct rtls_http_chunked *c, const char *buf,
			    size_t len, size_t *consumed, uint64_t *data_bytes);

#endif
