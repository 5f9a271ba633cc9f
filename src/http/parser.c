/* HTTP/1.1 request-head and response-head parsers (RFC 9112 §2-§5), the
 * response's body framing (RFC 9112 §6.3) and the chunked transfer-coding
 * decoder (RFC 9112 §7.1). No I/O, no allocation.
 *
 * The head parser is stateless: after RTLS_HTTP_PARSE_INCOMPLETE the caller
 * calls again with the same prefix plus new bytes, and we rescan from the
 * start.
 * Heads are small (max_head), so rescanning costs less than carrying state
 * and keeps every call's answer a pure function of the bytes seen.
 *
 * Strictness is deliberate: this parser sits in front of a static file
 * server and behind the reverse proxy's upstreams, and every leniency (bare
 * LF, obs-fold, whitespace before the colon) is a known smuggling vector
 * when another hop disagrees with us about where a message ends. */
#include "../core/util.h"
#include "parser.h"

#include <limits.h>
#include <string.h>

/* A scan position and the end of the bytes we may look at. */
struct cursor {
	const unsigned char *p;
	const unsigned char *end;
};

/* RFC 9110 §5.6.2: tchar. */
static int is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return 1;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
	case '+': case '-': case '.': case '^': case '_': case '`': case '|':
	case '~':
		return 1;
	default:
		return 0;
	}
}

/* RFC 9110 §5.5: field-vchar / SP / HTAB, obs-text included. Every other
 * CTL (NUL, CR, LF, DEL, ...) is not allowed inside a field value. */
static int is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Expects the byte want at the cursor. */
static int eat_byte(struct cursor *c, unsigned char want)
{
	if (c->p == c->end)
		return RTLS_HTTP_PARSE_INCOMPLETE;
	if (*c->p != want)
		return RTLS_HTTP_PARSE_BAD;
	c->p++;
	return 0;
}

/* Expects CRLF at the cursor. RFC 9112 §2.2 permits accepting a bare LF;
 * we do not, because a front end that does not would disagree with us on
 * where the head ends. */
static int eat_crlf(struct cursor *c)
{
	int rc = eat_byte(c, '\r');

	return rc ? rc : eat_byte(c, '\n');
}

/* RFC 9112 §2.2: a server SHOULD ignore at least one empty line received
 * before the request-line (a client's stray CRLF after a POST body). They
 * still count toward max_head, which bounds how many we will skip. */
static int skip_empty_lines(struct cursor *c)
{
	int rc;

	while (c->p != c->end && *c->p == '\r') {
		rc = eat_crlf(c);
		if (rc)
			return rc;
	}
	return 0;
}

/* Reads 1*tchar followed by the byte stop, which is consumed. */
static int parse_token(struct cursor *c, unsigned char stop,
		       struct rtls_http_str *out)
{
	const unsigned char *start = c->p;

	for (; c->p != c->end && is_tchar(*c->p); c->p++)
		;
	if (c->p == c->end)
		return RTLS_HTTP_PARSE_INCOMPLETE;
	if (*c->p != stop || c->p == start)
		return RTLS_HTTP_PARSE_BAD;
	out->p = (const char *)start;
	out->n = (size_t)(c->p - start);
	c->p++;
	return 0;
}

/* Reads a non-empty request-target of visible ASCII and the SP after it.
 * The length check comes before the end-of-input check so that an
 * oversized target is 414 as soon as max_target + 1 bytes of it are seen,
 * without waiting for the rest of the line. */
static int parse_target(struct cursor *c, size_t max_target,
			struct rtls_http_str *out)
{
	const unsigned char *start = c->p;

	for (;; c->p++) {
		if ((size_t)(c->p - start) > max_target)
			return RTLS_HTTP_PARSE_URI_TOO_LONG;
		if (c->p == c->end)
			return RTLS_HTTP_PARSE_INCOMPLETE;
		if (*c->p < 0x21 || *c->p > 0x7e)
			break;
	}
	if (*c->p != ' ' || c->p == start)
		return RTLS_HTTP_PARSE_BAD;
	out->p = (const char *)start;
	out->n = (size_t)(c->p - start);
	c->p++;
	return 0;
}

/* Reads "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3) and sets *minor to the
 * minor digit. Each byte is checked as it arrives so garbage is 400 before
 * the line is complete. A well-formed version with another major number is
 * 505 (RFC 9110 §15.6.6). */
static int parse_http_version(struct cursor *c, int *minor)
{
	static const char name[] = "HTTP/";
	const unsigned char *v = c->p;
	size_t i;
	int ok;

	for (i = 0; i < 8; i++) {
		if (v + i == c->end)
			return RTLS_HTTP_PARSE_INCOMPLETE;
		if (i < 5)
			ok = v[i] == (unsigned char)name[i];
		else if (i == 6)
			ok = v[i] == '.';
		else
			ok = v[i] >= '0' && v[i] <= '9';
		if (!ok)
			return RTLS_HTTP_PARSE_BAD;
	}
	if (v[5] != '1')
		return RTLS_HTTP_PARSE_BAD_VERSION;
	*minor = v[7] - '0';
	c->p += 8;
	return 0;
}

/* The request-line's version and its CRLF. HTTP/1.x with x > 1 is read as
 * 1.1, the highest minor version of the major we implement (RFC 9110
 * §2.5), as nginx and h2o do. */
static int parse_request_version(struct cursor *c, int *minor)
{
	int rc = parse_http_version(c, minor);

	if (rc)
		return rc;
	if (*minor > 1)
		*minor = 1;
	return eat_crlf(c);
}

/* Reads OWS field-value OWS CRLF; the view excludes both OWS runs. The
 * first byte that is not a value char must start the CRLF, so a NUL, DEL,
 * other CTL or bare LF in a value is 400. */
static int parse_value(struct cursor *c, struct rtls_http_str *out)
{
	const unsigned char *start, *last;

	for (; c->p != c->end && is_ows(*c->p); c->p++)
		;
	start = c->p;
	for (; c->p != c->end && is_value_char(*c->p); c->p++)
		;
	if (c->p == c->end)
		return RTLS_HTTP_PARSE_INCOMPLETE;
	for (last = c->p; last > start && is_ows(last[-1]); last--)
		;
	out->p = (const char *)start;
	out->n = (size_t)(last - start);
	return eat_crlf(c);
}

/* Reads one field line: field-name ":" OWS field-value OWS CRLF. */
static int parse_field_line(struct cursor *c, struct rtls_http_header *h)
{
	int rc;

	/* A line starting with whitespace is obs-fold (RFC 9112 §5.2), or,
	 * right after the request-line, the §2.2 case that a server MUST
	 * reject. parse_token would refuse it too; say why here. */
	if (is_ows(*c->p))
		return RTLS_HTTP_PARSE_BAD;
	/* The name must run straight into ':' (§5.1: no whitespace between
	 * name and colon, MUST be rejected with 400). */
	rc = parse_token(c, ':', &h->name);
	if (rc)
		return rc;
	return parse_value(c, &h->value);
}

/* Reads field lines up to and including the empty line into
 * headers[0..max_headers), counting them in *num. Shared by requests and
 * responses, so both refuse exactly the same field lines. */
static int parse_fields(struct cursor *c, size_t max_headers, struct rtls_http_header *headers,
			size_t *num)
{
	int rc;

	for (;;) {
		if (c->p == c->end)
			return RTLS_HTTP_PARSE_INCOMPLETE;
		if (*c->p == '\r')
			return eat_crlf(c);
		/* A new field line is starting: the count is over the limit
		 * now, whatever the rest of the line holds. */
		if (*num >= max_headers)
			return RTLS_HTTP_PARSE_HEADERS_TOO_LARGE;
		rc = parse_field_line(c, &headers[*num]);
		if (rc)
			return rc;
		(*num)++;
	}
}

static int parse_head(struct cursor *c, const struct rtls_http_limits *lim,
		      struct rtls_http_request *req)
{
	int rc;

	rc = skip_empty_lines(c);
	if (rc)
		return rc;
	rc = parse_token(c, ' ', &req->method);
	if (rc)
		return rc;
	rc = parse_target(c, lim->max_target, &req->target);
	if (rc)
		return rc;
	rc = parse_request_version(c, &req->minor_version);
	if (rc)
		return rc;
	return parse_fields(c, lim->max_headers, req->headers, &req->num_headers);
}

/* The bytes a head may take: max_head, clamped so that the returned
 * length always fits an int. */
static size_t head_limit(const struct rtls_http_limits *lim)
{
	return lim->max_head < INT_MAX ? lim->max_head : INT_MAX;
}

/* Sets c over buf[0..len), but never past max_head: a head that has not
 * ended by then is 431 whatever follows, and a huge buffer costs no extra
 * scanning. Returns 0, or the answer for an empty buffer. */
static int head_begin(struct cursor *c, const char *buf, size_t len, size_t max_head)
{
	/* Avoid NULL + 0, which is undefined in C. */
	if (len == 0)
		return max_head == 0 ? RTLS_HTTP_PARSE_HEADERS_TOO_LARGE
				     : RTLS_HTTP_PARSE_INCOMPLETE;
	c->p = (const unsigned char *)buf;
	c->end = c->p + (len < max_head ? len : max_head);
	return 0;
}

/* Turns a head parser's rc into the caller's answer: the head's length,
 * or a code, where running out of bytes at max_head is 431. */
static int head_end(int rc, const struct cursor *c, const char *buf, size_t len, size_t max_head)
{
	if (rc == RTLS_HTTP_PARSE_INCOMPLETE && len >= max_head)
		return RTLS_HTTP_PARSE_HEADERS_TOO_LARGE;
	if (rc)
		return rc;
	return (int)(c->p - (const unsigned char *)buf);
}

int rtls__http_parse_request(const char *buf, size_t len, const struct rtls_http_limits *lim,
			     struct rtls_http_request *req)
{
	size_t max_head = head_limit(lim);
	struct cursor c;
	int rc;

	req->num_headers = 0;
	rc = head_begin(&c, buf, len, max_head);
	if (rc)
		return rc;
	return head_end(parse_head(&c, lim, req), &c, buf, len, max_head);
}

/* status-code = 3DIGIT (RFC 9112 §4), 100..599: RFC 9110 §15 calls any
 * other value invalid, and framing depends on the class. */
static int parse_status_code(struct cursor *c, int *status)
{
	int i, v = 0;

	for (i = 0; i < 3; i++, c->p++) {
		if (c->p == c->end)
			return RTLS_HTTP_PARSE_INCOMPLETE;
		if (*c->p < (i == 0 ? '1' : '0') || *c->p > (i == 0 ? '5' : '9'))
			return RTLS_HTTP_PARSE_BAD;
		v = v * 10 + (*c->p - '0');
	}
	*status = v;
	return 0;
}

/* reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ), which may be absent
 * (RFC 9112 §4): the bytes of a field value, kept as they are. The first
 * other byte must start the CRLF. */
static int parse_reason(struct cursor *c, struct rtls_http_str *out)
{
	const unsigned char *start = c->p;

	for (; c->p != c->end && is_value_char(*c->p); c->p++)
		;
	if (c->p == c->end)
		return RTLS_HTTP_PARSE_INCOMPLETE;
	out->p = (const char *)start;
	out->n = (size_t)(c->p - start);
	return eat_crlf(c);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF.
 * Both SPs are required even with no reason: RFC 9112 §4 has the second
 * one outside the optional part. No empty lines before it: §2.2's leniency
 * is for servers reading requests, and an upstream's stray CRLF means it
 * disagrees with us about where its previous response ended. */
static int parse_status_line(struct cursor *c, struct rtls_http_response *resp)
{
	int rc;

	rc = parse_http_version(c, &resp->minor_version);
	if (rc)
		return rc;
	/* Only 1.0 and 1.1 say how their bodies are framed; an upstream
	 * claiming another 1.x is one we cannot frame with certainty. */
	if (resp->minor_version > 1)
		return RTLS_HTTP_PARSE_BAD_VERSION;
	rc = eat_byte(c, ' ');
	if (rc)
		return rc;
	rc = parse_status_code(c, &resp->status);
	if (rc)
		return rc;
	rc = eat_byte(c, ' ');
	if (rc)
		return rc;
	return parse_reason(c, &resp->reason);
}

int rtls__http_parse_response(const char *buf, size_t len, const struct rtls_http_limits *lim,
			      struct rtls_http_response *resp)
{
	size_t max_head = head_limit(lim);
	struct cursor c;
	int rc;

	resp->num_headers = 0;
	rc = head_begin(&c, buf, len, max_head);
	if (rc)
		return rc;
	rc = parse_status_line(&c, resp);
	if (rc == 0)
		rc = parse_fields(&c, lim->max_headers, resp->headers, &resp->num_headers);
	return head_end(rc, &c, buf, len, max_head);
}

static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

int rtls__http_str_ieq(struct rtls_http_str s, const char *lit)
{
	size_t i;

	/* ASCII folding only: tokens are ASCII, and tolower() would depend on
	 * the locale. lit[i] == '\0' stops us before reading past lit. */
	for (i = 0; i < s.n; i++) {
		if (lit[i] == '\0')
			return 0;
		if (ascii_lower((unsigned char)s.p[i]) !=
		    ascii_lower((unsigned char)lit[i]))
			return 0;
	}
	return lit[i] == '\0';
}

static bool str_eq_fold(struct rtls_http_str a, struct rtls_http_str b)
{
	if (a.n != b.n)
		return false;
	for (size_t i = 0; i < a.n; i++)
		if (ascii_lower((unsigned char)a.p[i]) != ascii_lower((unsigned char)b.p[i]))
			return false;
	return true;
}

bool rtls__http_list_has(struct rtls_http_str v, struct rtls_http_str tok)
{
	size_t i = 0, s, e;

	while (i < v.n) {
		while (i < v.n && (is_ows((unsigned char)v.p[i]) || v.p[i] == ','))
			i++;
		s = i;
		while (i < v.n && v.p[i] != ',')
			i++;
		for (e = i; e > s && is_ows((unsigned char)v.p[e - 1]); e--)
			;
		if (str_eq_fold((struct rtls_http_str){ v.p + s, e - s }, tok))
			return true;
	}
	return false;
}

bool rtls__http_has_token(struct rtls_http_str v, const char *tok)
{
	return rtls__http_list_has(v, (struct rtls_http_str){ tok, strlen(tok) });
}

/* What the framing rules need from a response's fields. */
struct framing_fields {
	size_t n_length;             /* Content-Length fields */
	size_t n_coding;             /* Transfer-Encoding fields */
	bool bad_length;             /* some Content-Length is not a length */
	uint64_t length;             /* the last Content-Length */
	struct rtls_http_str coding; /* the last Transfer-Encoding */
	bool conn_close;             /* a Connection token "close" */
	bool conn_keep_alive;        /* a Connection token "keep-alive" */
};

/* Content-Length = 1*DIGIT (RFC 9110 §8.6), at most 2^63 - 1 like a chunk
 * size, so a caller may hold it in an off_t. §8.6 lets a recipient accept
 * a list of equal values ("5, 5"); we do not, as a hop that does not
 * would frame the body differently. */
static int parse_length(struct rtls_http_str v, uint64_t *out)
{
	uint64_t n = 0;
	size_t i;
	int d;

	if (v.n == 0)
		return RTLS_HTTP_PARSE_BAD;
	for (i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return RTLS_HTTP_PARSE_BAD;
		d = v.p[i] - '0';
		if (n > ((uint64_t)INT64_MAX - (uint64_t)d) / 10)
			return RTLS_HTTP_PARSE_BAD;
		n = n * 10 + (uint64_t)d;
	}
	*out = n;
	return 0;
}

static void scan_framing_fields(const struct rtls_http_response *r, struct framing_fields *s)
{
	const struct rtls_http_header *h;
	size_t i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < r->num_headers; i++) {
		h = &r->headers[i];
		if (rtls__http_str_ieq(h->name, "content-length")) {
			s->n_length++;
			if (parse_length(h->value, &s->length))
				s->bad_length = true;
		} else if (rtls__http_str_ieq(h->name, "transfer-encoding")) {
			s->n_coding++;
			s->coding = h->value;
		} else if (rtls__http_str_ieq(h->name, "connection")) {
			s->conn_close |= rtls__http_has_token(h->value, "close");
			s->conn_keep_alive |= rtls__http_has_token(h->value, "keep-alive");
		}
	}
}

/* Transfer-Encoding = #transfer-coding (RFC 9112 §6.1), read as a list of
 * bare tokens: no empty elements, no parameters (none is defined for any
 * coding in use), since each leniency here is a place where two hops can
 * disagree about whether the body is chunked. chunked may only be the
 * final coding (§6.1: never applied twice, and it must end the message).
 * Sets *chunked when it is. */
static int parse_codings(struct rtls_http_str v, bool *chunked, const char **why)
{
	bool last_chunked = false;
	size_t i = 0, s, e;

	if (v.n == 0) {
		*why = "empty Transfer-Encoding";
		return RTLS_HTTP_PARSE_BAD;
	}
	for (;;) {
		for (; i < v.n && is_ows((unsigned char)v.p[i]); i++)
			;
		for (s = i; i < v.n && is_tchar((unsigned char)v.p[i]); i++)
			;
		for (e = i; i < v.n && is_ows((unsigned char)v.p[i]); i++)
			;
		if (s == e || (i < v.n && v.p[i] != ',')) {
			*why = "bad Transfer-Encoding";
			return RTLS_HTTP_PARSE_BAD;
		}
		if (last_chunked) {
			*why = "chunked before another transfer coding";
			return RTLS_HTTP_PARSE_BAD;
		}
		last_chunked =
			rtls__http_str_ieq((struct rtls_http_str){ v.p + s, e - s }, "chunked");
		if (i == v.n)
			break;
		i++; /* the comma */
	}
	*chunked = last_chunked;
	return 0;
}

/* RFC 9112 §6.3 rules 3 and 4, for a response with Transfer-Encoding.
 * Every combination a hop could read two ways is refused, not resolved:
 * §6.3 would let Transfer-Encoding win over Content-Length, but the
 * upstream that sent both is exactly the one a smuggling attack goes
 * through. */
static int coded_body(const struct rtls_http_response *r, const struct framing_fields *s,
		      struct rtls_http_framing *f, const char **why)
{
	bool chunked = false;
	int rc;

	if (s->n_coding > 1) {
		*why = "two Transfer-Encoding fields";
		return RTLS_HTTP_PARSE_BAD;
	}
	if (s->n_length) {
		*why = "Transfer-Encoding with Content-Length";
		return RTLS_HTTP_PARSE_BAD;
	}
	/* HTTP/1.0 has no Transfer-Encoding: a 1.0 hop reads to close. */
	if (r->minor_version == 0) {
		*why = "Transfer-Encoding in HTTP/1.0";
		return RTLS_HTTP_PARSE_BAD;
	}
	rc = parse_codings(s->coding, &chunked, why);
	if (rc)
		return rc;
	/* §6.3 rule 4: a final coding other than chunked is read to close. */
	f->body = chunked ? RTLS_HTTP_BODY_CHUNKED : RTLS_HTTP_BODY_CLOSE;
	return 0;
}

/* RFC 9112 §6.3, in its order. */
static int body_framing(const struct rtls_http_response *r, bool head_request,
			const struct framing_fields *s, struct rtls_http_framing *f,
			const char **why)
{
	/* Rule 5: an invalid Content-Length is an unrecoverable error (a
	 * proxy answers 502), checked even where rule 1 ignores it. */
	if (s->bad_length) {
		*why = "bad Content-Length";
		return RTLS_HTTP_PARSE_BAD;
	}
	/* Rule 1: no body, whatever the fields say. */
	if (head_request || r->status < 200 || r->status == 204 || r->status == 304) {
		f->body = RTLS_HTTP_BODY_NONE;
		return 0;
	}
	/* Even equal values: RFC 9110 §8.6 allows merging them, but a hop
	 * that picks one of two different ones is how bodies get split. */
	if (s->n_length > 1) {
		*why = "two Content-Length fields";
		return RTLS_HTTP_PARSE_BAD;
	}
	if (s->n_coding)
		return coded_body(r, s, f, why);
	if (s->n_length) {
		f->body = RTLS_HTTP_BODY_LENGTH;
		f->length = s->length;
		return 0;
	}
	/* Rule 8: a response without either runs to the close. */
	f->body = RTLS_HTTP_BODY_CLOSE;
	return 0;
}

int rtls__http_response_framing(const struct rtls_http_response *r, bool head_request,
				struct rtls_http_framing *f, const char **why)
{
	struct framing_fields s;
	int rc;

	memset(f, 0, sizeof(*f));
	scan_framing_fields(r, &s);
	rc = body_framing(r, head_request, &s, f, why);
	if (rc)
		return rc;
	f->upgrade = r->status == 101;
	/* RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with
	 * "keep-alive"; a body that ends at the close ends the connection. */
	f->close = s.conn_close || (r->minor_version == 0 && !s.conn_keep_alive) ||
		   f->body == RTLS_HTTP_BODY_CLOSE;
	return 0;
}

/* Chunked decoder states. SIZE_FIRST is 0 so a zeroed struct is ready.
 * Every state before CH_DATA belongs to the chunk-size line. */
enum {
	CH_SIZE_FIRST = 0, /* first hex digit of chunk-size */
	CH_SIZE,           /* more hex digits, or what ends the size */
	CH_SIZE_BWS,       /* BWS before a ';' */
	CH_EXT_NAME_BWS,   /* BWS after ';', before chunk-ext-name */
	CH_EXT_NAME,       /* in chunk-ext-name */
	CH_EXT_NAME_END,   /* BWS after the name: '=' or ';' next */
	CH_EXT_VAL_BWS,    /* BWS after '=' */
	CH_EXT_TOKEN,      /* chunk-ext-val as a token */
	CH_EXT_QUOTED,     /* chunk-ext-val as a quoted-string */
	CH_EXT_QPAIR,      /* the byte after a '\' in a quoted-string */
	CH_EXT_END,        /* after the closing DQUOTE */
	CH_SIZE_LF,        /* LF ending the chunk-size line */
	CH_DATA,           /* chunk-data, c->remaining bytes left */
	CH_DATA_CR,        /* CRLF after chunk-data */
	CH_DATA_LF,
	CH_TRAILER_START,  /* start of a trailer line, or the final CRLF */
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_FINAL_LF,
	CH_DONE,
	CH_ERROR,          /* sticky: every later call fails too */
};

/* Adds one hex digit to the chunk-size being read into c->remaining.
 * Sizes must stay below 2^63 so a caller may hold them in an off_t. */
static int size_digit(struct rtls_http_chunked *c, int d)
{
	if (c->remaining > ((uint64_t)INT64_MAX - (uint64_t)d) / 16)
		return RTLS_HTTP_PARSE_BAD;
	c->remaining = c->remaining * 16 + (uint64_t)d;
	c->state = CH_SIZE;
	return 0;
}

/* RFC 9110 §5.6.4: qdtext, and what may follow a '\' in a quoted-pair. */
static int is_qdtext(unsigned char ch)
{
	return ch == '\t' || ch == ' ' || ch == 0x21 || (ch >= 0x23 && ch <= 0x5b) ||
	       (ch >= 0x5d && ch <= 0x7e) || ch >= 0x80;
}

static int is_qpair_char(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* What may end a size, a name or a value: ';' starts another extension,
 * CR ends the line, OWS is BWS that must lead to `ows_next`. */
static int ext_boundary(struct rtls_http_chunked *c, unsigned char ch, int ows_next)
{
	if (ch == ';')
		c->state = CH_EXT_NAME_BWS;
	else if (ch == '\r')
		c->state = CH_SIZE_LF;
	else if (is_ows(ch))
		c->state = ows_next;
	else
		return RTLS_HTTP_PARSE_BAD;
	return 0;
}

/* chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * (RFC 9112 §7.1.1). Extensions are skipped, but only after the grammar
 * has accepted them: "5;" or "5;a[=x" is an error, not a chunk of 5, so
 * that we never agree to a framing another parser would refuse. */
static int step_ext(struct rtls_http_chunked *c, unsigned char ch)
{
	switch (c->state) {
	case CH_SIZE_BWS:
		if (ch == ';')
			c->state = CH_EXT_NAME_BWS;
		return ch == ';' || is_ows(ch) ? 0 : RTLS_HTTP_PARSE_BAD;
	case CH_EXT_NAME_BWS:
		if (is_tchar(ch))
			c->state = CH_EXT_NAME;
		return is_tchar(ch) || is_ows(ch) ? 0 : RTLS_HTTP_PARSE_BAD;
	case CH_EXT_NAME:
		if (is_tchar(ch))
			return 0;
		if (ch == '=') {
			c->state = CH_EXT_VAL_BWS;
			return 0;
		}
		return ext_boundary(c, ch, CH_EXT_NAME_END);
	case CH_EXT_NAME_END:
		if (ch == '=')
			c->state = CH_EXT_VAL_BWS;
		else if (ch == ';')
			c->state = CH_EXT_NAME_BWS;
		return ch == '=' || ch == ';' || is_ows(ch) ? 0 : RTLS_HTTP_PARSE_BAD;
	case CH_EXT_VAL_BWS:
		if (is_tchar(ch))
			c->state = CH_EXT_TOKEN;
		else if (ch == '"')
			c->state = CH_EXT_QUOTED;
		return is_tchar(ch) || ch == '"' || is_ows(ch) ? 0 : RTLS_HTTP_PARSE_BAD;
	case CH_EXT_TOKEN:
		return is_tchar(ch) ? 0 : ext_boundary(c, ch, CH_SIZE_BWS);
	case CH_EXT_QUOTED:
		if (ch == '"')
			c->state = CH_EXT_END;
		else if (ch == '\\')
			c->state = CH_EXT_QPAIR;
		return ch == '"' || ch == '\\' || is_qdtext(ch) ? 0 : RTLS_HTTP_PARSE_BAD;
	case CH_EXT_QPAIR:
		c->state = CH_EXT_QUOTED;
		return is_qpair_char(ch) ? 0 : RTLS_HTTP_PARSE_BAD;
	case CH_EXT_END:
		return ext_boundary(c, ch, CH_SIZE_BWS);
	default:
		return RTLS_HTTP_PARSE_BAD;
	}
}

/* chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1): 1*HEXDIG, nothing else
 * ("+5", "0x5", " 5", "1_0" are all errors), then the extensions. */
static int step_size_line(struct rtls_http_chunked *c, unsigned char ch)
{
	int d = rtls__hexval(ch);

	switch (c->state) {
	case CH_SIZE_FIRST:
		if (d < 0)
			return RTLS_HTTP_PARSE_BAD;
		c->remaining = 0;
		return size_digit(c, d);
	case CH_SIZE:
		if (d >= 0)
			return size_digit(c, d);
		return ext_boundary(c, ch, CH_SIZE_BWS);
	case CH_SIZE_LF:
		if (ch != '\n')
			return RTLS_HTTP_PARSE_BAD;
		/* A zero size is the last-chunk: trailers follow, and its
		 * line counts with them. */
		c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
		if (c->remaining)
			c->line = 0;
		return 0;
	default:
		return step_ext(c, ch);
	}
}

/* The CRLF after chunk-data, then trailer-section CRLF (RFC 9112 §7.1.2).
 * Trailer lines are checked like header lines and discarded. */
static int step_after_data(struct rtls_http_chunked *c, unsigned char ch)
{
	int next;

	switch (c->state) {
	case CH_DATA_CR:
		next = ch == '\r' ? CH_DATA_LF : CH_ERROR;
		break;
	case CH_DATA_LF:
		next = ch == '\n' ? CH_SIZE_FIRST : CH_ERROR;
		break;
	case CH_TRAILER_START:
		if (ch == '\r')
			next = CH_FINAL_LF;
		else
			next = is_tchar(ch) ? CH_TRAILER_NAME : CH_ERROR;
		break;
	case CH_TRAILER_NAME:
		if (ch == ':')
			next = CH_TRAILER_VALUE;
		else
			next = is_tchar(ch) ? CH_TRAILER_NAME : CH_ERROR;
		break;
	case CH_TRAILER_VALUE:
		if (ch == '\r')
			next = CH_TRAILER_LF;
		else
			next = is_value_char(ch) ? CH_TRAILER_VALUE : CH_ERROR;
		break;
	case CH_TRAILER_LF:
		next = ch == '\n' ? CH_TRAILER_START : CH_ERROR;
		break;
	case CH_FINAL_LF:
		if (ch != '\n')
			return RTLS_HTTP_PARSE_BAD;
		c->state = CH_DONE;
		return 1;
	default:
		return RTLS_HTTP_PARSE_BAD;
	}
	if (next == CH_ERROR)
		return RTLS_HTTP_PARSE_BAD;
	c->state = next;
	return 0;
}

/* Consumes chunk-data in bulk: it is opaque, so no per-byte work. */
static size_t take_data(struct rtls_http_chunked *c, size_t avail)
{
	size_t n = avail;

	if (n > c->remaining)
		n = (size_t)c->remaining;
	c->remaining -= n;
	if (c->remaining == 0)
		c->state = CH_DATA_CR;
	return n;
}

/* rtls__http_chunked_feed(), and with span set it stops after the first
 * run of chunk data, which is at span[0] (offset) and span[1] (length). */
static int chunked_run(struct rtls_http_chunked *c, const char *buf, size_t len, size_t *consumed,
		       uint64_t *data_bytes, size_t *span)
{
	uint64_t data = 0;
	size_t i = 0, n;
	int rc = 0;

	if (c->state == CH_DONE)
		rc = 1;
	else if (c->state == CH_ERROR)
		rc = RTLS_HTTP_PARSE_BAD;
	/* Stop right after the final LF: what follows is the next request. */
	while (rc == 0 && i < len) {
		if (c->state == CH_DATA) {
			n = take_data(c, len - i);
			if (span) {
				span[0] = i;
				span[1] = n;
				i += n;
				data += n;
				break;
			}
			i += n;
			data += n;
			continue;
		}
		if (c->state == CH_SIZE_FIRST)
			c->line = 0; /* a new chunk-size line */
		if (++c->line >
		    (c->state < CH_DATA ? RTLS_HTTP_CHUNK_LINE_MAX : RTLS_HTTP_TRAILERS_MAX))
			rc = RTLS_HTTP_PARSE_BAD;
		else if (c->state < CH_DATA)
			rc = step_size_line(c, (unsigned char)buf[i]);
		else
			rc = step_after_data(c, (unsigned char)buf[i]);
		if (rc < 0) {
			/* The bad byte is not consumed. */
			c->state = CH_ERROR;
			break;
		}
		i++;
	}
	*consumed = i;
	if (data_bytes)
		*data_bytes = data;
	return rc;
}

int rtls__http_chunked_feed(struct rtls_http_chunked *c, const char *buf, size_t len,
			    size_t *consumed, uint64_t *data_bytes)
{
	return chunked_run(c, buf, len, consumed, data_bytes, NULL);
}

int rtls__http_chunked_span(struct rtls_http_chunked *c, const char *buf, size_t len,
			    size_t *consumed, size_t *off, size_t *n)
{
	size_t span[2] = { 0, 0 };
	int rc = chunked_run(c, buf, len, consumed, NULL, span);

	*off = span[0];
	*n = span[1];
	return rc;
}
