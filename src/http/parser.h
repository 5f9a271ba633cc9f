/* HTTP/1.1 request-head and response-head parsers: no I/O, no allocation.
 *
 * Outputs are views (pointer + length) into the caller's buffer; they stay
 * valid as long as that buffer does. Incremental: call again with more bytes
 * (the same prefix plus new data) after RTLS_HTTP_PARSE_INCOMPLETE. */
#ifndef RTLS_HTTP_PARSER_H
#define RTLS_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What rtls__http_parse_request() and rtls__http_parse_response() return
 * instead of a head's length, and rtls__http_chunked_feed() on bad input.
 * All below -4095 (the kernel's MAX_ERRNO), so none can be taken for a
 * -errno (-1 is -EPERM) nor for a byte count. */
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

struct rtls_http_response {
	int minor_version;                /* 0 or 1 */
	int status;                       /* 100..599 */
	struct rtls_http_str reason;      /* may be empty */
	struct rtls_http_header *headers; /* caller-provided array (borrowed) */
	size_t num_headers;               /* out: number filled */
};

/* Parses one response head (status-line, fields, empty line) from
 * buf[0..len), as strictly as a request head: the same field-line rules,
 * CRLF only, and no empty lines before the status-line.
 * Returns the head's length, RTLS_HTTP_PARSE_INCOMPLETE,
 * RTLS_HTTP_PARSE_BAD, RTLS_HTTP_PARSE_HEADERS_TOO_LARGE (head over
 * lim->max_head or more than lim->max_headers fields), or
 * RTLS_HTTP_PARSE_BAD_VERSION (a well-formed version other than HTTP/1.0
 * or HTTP/1.1). lim->max_target is unused. resp->headers must point at an
 * array of at least lim->max_headers entries. */
int rtls__http_parse_response(const char *buf, size_t len, const struct rtls_http_limits *lim,
			      struct rtls_http_response *resp);

enum rtls_http_body {
	RTLS_HTTP_BODY_NONE,    /* the head is the whole message */
	RTLS_HTTP_BODY_LENGTH,  /* length bytes */
	RTLS_HTTP_BODY_CHUNKED, /* chunked: rtls__http_chunked_feed() */
	RTLS_HTTP_BODY_CLOSE,   /* everything until the upstream closes */
};

struct rtls_http_framing {
	enum rtls_http_body body;
	uint64_t length; /* RTLS_HTTP_BODY_LENGTH: at most INT64_MAX */
	bool close;      /* the upstream will close: "Connection: close", or
			  * HTTP/1.0 without "Connection: keep-alive", or
			  * RTLS_HTTP_BODY_CLOSE */
	bool upgrade;    /* status 101 */
};

/* How the body of response r, to a request that was HEAD if head_request,
 * is delimited (RFC 9112 §6.3). Any field combination that two hops could
 * frame differently (two Content-Length fields, Transfer-Encoding with
 * Content-Length, in HTTP/1.0, repeated, or with chunked not last) is
 * refused rather than resolved. Returns 0 with *f filled in, or
 * RTLS_HTTP_PARSE_BAD with *why set to a short lower-case reason for a log
 * line (a static string); *why is not touched on success. */
int rtls__http_response_framing(const struct rtls_http_response *r, bool head_request,
				struct rtls_http_framing *f, const char **why);

/* Case-insensitive token compare of a view against a NUL-terminated literal. */
int rtls__http_str_ieq(struct rtls_http_str s, const char *lit);

/* Is tok (case-insensitive) one of the comma-separated elements of v, each
 * trimmed of OWS? For list fields such as Connection (RFC 9110 §5.6.1). */
bool rtls__http_has_token(struct rtls_http_str v, const char *tok);
/* The same for a token that is itself a view (a field name). */
bool rtls__http_list_has(struct rtls_http_str v, struct rtls_http_str tok);

/* Chunked transfer-coding decoder state (RFC 9112 §7.1), used to skip a
 * request body and to find where an upstream's chunked response ends.
 * Zero-initialise before use. */
struct rtls_http_chunked {
	uint64_t remaining; /* bytes left in the current chunk's data */
	int state;          /* private */
	uint32_t line;      /* private: bytes of this chunk-size line, or of
			     * the last-chunk line and trailer section */
};

/* Caps on what is not chunk-data, which --max-body-bytes does not count:
 * a chunk-size line with its extensions (Go's net/http allows 4096 too),
 * and the last-chunk line with the whole trailer section. Past them the
 * body is malformed: endless zeros, extensions or trailers are refused,
 * not streamed. */
#define RTLS_HTTP_CHUNK_LINE_MAX 4096
#define RTLS_HTTP_TRAILERS_MAX 16384

/* Consumes bytes of a chunked body from buf[0..len). Sets *consumed to the
 * bytes used and *data_bytes to how many of them were chunk data (may be
 * NULL). Returns 1 when the body (incl. trailers) is complete, 0 when more
 * input is needed, RTLS_HTTP_PARSE_BAD on malformed input. No allocation. */
int rtls__http_chunked_feed(struct rtls_http_chunked *c, const char *buf,
			    size_t len, size_t *consumed, uint64_t *data_bytes);
/* The same, but it stops after the first run of chunk data it meets, and
 * says where that is: buf[*off..*off + *n) (*n 0 if none). For a body that
 * leaves without its framing (HTTP/2). */
int rtls__http_chunked_span(struct rtls_http_chunked *c, const char *buf, size_t len,
			    size_t *consumed, size_t *off, size_t *n);

#endif
