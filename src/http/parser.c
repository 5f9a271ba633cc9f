/* HTTP/1.1 request-head parser (RFC 9112 §2-§5) and chunked transfer-coding
 * decoder (RFC 9112 §7.1). No I/O, no allocation.
 *
 * The head parser is stateless: after RTLS_HTTP_PARSE_INCOMPLETE the caller
 * calls again with the same prefix plus new bytes, and we rescan from the
 * start.
 * Heads are small (max_head), so rescanning costs less than carrying state
 * and keeps every call's answer a pure function of the bytes seen.
 *
 * Strictness is deliberate: this parser sits in front of a static file
 * server, and every leniency (bare LF, obs-fold, whitespace before the
 * colon) is a known request-smuggling vector when a proxy disagrees with us
 * about where a message ends. */
#include "../core/util.h"
#include "parser.h"

#include <limits.h>

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

/* Expects CRLF at the cursor. RFC 9112 §2.2 permits accepting a bare LF;
 * we do not, because a front end that does not would disagree with us on
 * where the head ends. */
static int eat_crlf(struct cursor *c)
{
	if (c->p == c->end)
		return RTLS_HTTP_PARSE_INCOMPLETE;
	if (*c->p != '\r')
		return RTLS_HTTP_PARSE_BAD;
	c->p++;
	if (c->p == c->end)
		return RTLS_HTTP_PARSE_INCOMPLETE;
	if (*c->p != '\n')
		return RTLS_HTTP_PARSE_BAD;
	c->p++;
	return 0;
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

/* Reads "HTTP/" DIGIT "." DIGIT CRLF (RFC 9112 §2.3). Each byte is checked
 * as it arrives so garbage is 400 before the line is complete. A
 * well-formed version with another major number is 505 (RFC 9110 §15.6.6);
 * HTTP/1.x with x > 1 is read as 1.1, the highest minor version of the
 * major we implement (RFC 9110 §2.5), as nginx and h2o do. */
static int parse_version(struct cursor *c, int *minor)
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
	*minor = v[7] == '0' ? 0 : 1;
	c->p += 8;
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

/* Reads field lines up to and including the empty line. */
static int parse_fields(struct cursor *c, const struct rtls_http_limits *lim,
			struct rtls_http_request *req)
{
	int rc;

	for (;;) {
		if (c->p == c->end)
			return RTLS_HTTP_PARSE_INCOMPLETE;
		if (*c->p == '\r')
			return eat_crlf(c);
		/* A new field line is starting: the count is over the limit
		 * now, whatever the rest of the line holds. */
		if (req->num_headers >= lim->max_headers)
			return RTLS_HTTP_PARSE_HEADERS_TOO_LARGE;
		rc = parse_field_line(c, &req->headers[req->num_headers]);
		if (rc)
			return rc;
		req->num_headers++;
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
	rc = parse_version(c, &req->minor_version);
	if (rc)
		return rc;
	return parse_fields(c, lim, req);
}

int rtls__http_parse_request(const char *buf, size_t len,
			     const struct rtls_http_limits *lim,
			     struct rtls_http_request *req)
{
	/* Clamp so the returned length always fits an int. */
	size_t max_head = lim->max_head < INT_MAX ? lim->max_head : INT_MAX;
	struct cursor c;
	int rc;

	req->num_headers = 0;
	/* Avoid NULL + 0, which is undefined in C. */
	if (len == 0)
		return max_head == 0 ? RTLS_HTTP_PARSE_HEADERS_TOO_LARGE
				     : RTLS_HTTP_PARSE_INCOMPLETE;

	/* Never look past max_head: a head that has not ended by then is
	 * 431 whatever follows, and a huge buffer costs no extra scanning. */
	c.p = (const unsigned char *)buf;
	c.end = c.p + (len < max_head ? len : max_head);
	rc = parse_head(&c, lim, req);
	if (rc == RTLS_HTTP_PARSE_INCOMPLETE && len >= max_head)
		return RTLS_HTTP_PARSE_HEADERS_TOO_LARGE;
	if (rc)
		return rc;
	return (int)(c.p - (const unsigned char *)buf);
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
		/* A zero size is the last-chunk: trailers follow. */
		c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
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

int rtls__http_chunked_feed(struct rtls_http_chunked *c, const char *buf,
			    size_t len, size_t *consumed, uint64_t *data_bytes)
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
			i += n;
			data += n;
			continue;
		}
		if (c->state < CH_DATA)
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
