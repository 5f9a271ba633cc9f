/* One request: parse the head, pick out what the server acts on, validate,
 * route. Every error a client can cause gets its status here. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* Returns 0 on success or an HTTP status for a bad Content-Length. */
static int parse_length(struct rtls_http_str v, uint64_t *out)
{
	uint64_t n = 0;

	if (!v.n)
		return 400;
	for (size_t i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return 400;
		if (n > (UINT64_MAX - 9) / 10)
			return 413;
		n = n * 10 + (uint64_t)(v.p[i] - '0');
	}
	*out = n;
	return 0;
}

/* The last non-empty comma-separated element of v, trimmed. */
static struct rtls_http_str last_token(struct rtls_http_str v)
{
	size_t e = v.n, s;

	while (e && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t' || v.p[e - 1] == ','))
		e--;
	s = e;
	while (s && v.p[s - 1] != ',')
		s--;
	while (s < e && (v.p[s] == ' ' || v.p[s] == '\t'))
		s++;
	return (struct rtls_http_str){ v.p + s, e - s };
}

/* RFC 9112 §6.3: unless chunked is the final coding, and there only once
 * (§6.1), a request's body length cannot be known: 400. A coding before
 * it is one we do not implement: 501 (§6.1). */
static int transfer_coding(struct rtls_http_str te, const char **why)
{
	struct rtls_http_str last = last_token(te);
	struct rtls_http_str before = { te.p, (size_t)(last.p - te.p) };

	if (!rtls__http_str_ieq(last, "chunked") || rtls__http_has_token(before, "chunked")) {
		*why = "chunked is not the final transfer coding, once";
		return 400;
	}
	for (size_t i = 0; i < before.n; i++)
		if (before.p[i] != ' ' && before.p[i] != '\t' && before.p[i] != ',') {
			*why = "unsupported transfer coding";
			return 501;
		}
	return 0;
}

/* RFC 9112 §3.2: a Host that is not uri-host [":" port] is 400. Allowed:
 * unreserved, pct-encoded, sub-delims, ':' and the brackets of an
 * IP-literal (RFC 3986 §3.2.2). Empty is refused too: the target URI of
 * every request we serve is http(s), and RFC 9110 §4.2.1 makes an http
 * URI with an empty host invalid, so "Host:" names no origin at all. */
static bool host_ok(struct rtls_http_str h)
{
	if (h.n == 0)
		return false;
	for (size_t i = 0; i < h.n; i++) {
		unsigned char ch = (unsigned char)h.p[i];

		if (ch == 0 || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				 (ch >= '0' && ch <= '9') || strchr("-._~%!$&'()*+,;=:[]", ch)))
			return false;
	}
	return true;
}

/* Picks out the headers we act on. Returns 0 or an error status. */
int rtls__http_scan_headers(struct hreq *q, const char **why)
{
	struct rtls_http_str conn = { 0 }, te = { 0 };
	bool has_te = false;
	int hosts = 0;

	for (size_t i = 0; i < q->r.num_headers; i++) {
		struct rtls_http_header *f = &q->r.headers[i];

		if (rtls__http_str_ieq(f->name, "host")) {
			q->host = f->value;
			hosts++;
		} else if (rtls__http_str_ieq(f->name, "content-length")) {
			uint64_t n = 0;
			int st = parse_length(f->value, &n);

			if (st) {
				*why = "bad Content-Length";
				return st;
			}
			if (q->has_content_length && n != q->content_length) {
				*why = "conflicting Content-Length";
				return 400;
			}
			q->content_length = n;
			q->has_content_length = true;
		} else if (rtls__http_str_ieq(f->name, "transfer-encoding")) {
			/* Presence, not length: an empty value is still a
			 * Transfer-Encoding field (see below). */
			if (has_te) {
				*why = "repeated Transfer-Encoding";
				return 400;
			}
			te = f->value;
			has_te = true;
		} else if (rtls__http_str_ieq(f->name, "connection")) {
			conn = f->value;
		} else if (rtls__http_str_ieq(f->name, "range")) {
			q->range = f->value;
		} else if (rtls__http_str_ieq(f->name, "if-modified-since")) {
			q->if_modified_since = f->value;
		} else if (rtls__http_str_ieq(f->name, "if-range")) {
			q->if_range = f->value;
		} else if (rtls__http_str_ieq(f->name, "if-none-match")) {
			q->if_none_match = f->value;
		}
	}
	if (q->r.minor_version == 1 && hosts != 1) {
		*why = hosts ? "more than one Host" : "HTTP/1.1 request without Host";
		return 400;
	}
	if (hosts > 1 || (hosts && !host_ok(q->host))) {
		*why = hosts > 1 ? "more than one Host" : "invalid Host";
		return 400;
	}
	if (has_te) {
		/* RFC 9112 §6.1: with both, a message may be smuggling; refuse.
		 * An empty Transfer-Encoding counts: a front end that reads it
		 * as present frames the body differently from one that does
		 * not, and without Content-Length it is no valid coding (400
		 * from transfer_coding()). */
		if (q->has_content_length) {
			*why = "both Transfer-Encoding and Content-Length";
			return 400;
		}
		if (q->r.minor_version == 0) {
			*why = "Transfer-Encoding in HTTP/1.0";
			return 400;
		}
		int st = transfer_coding(te, why);

		if (st)
			return st;
		q->chunked = true;
	}
	if (q->r.minor_version == 1)
		q->keep_alive = rtls__http_has_token(conn, "close") ? CONN_CLOSE : CONN_DEFAULT;
	else
		q->keep_alive =
			rtls__http_has_token(conn, "keep-alive") ? CONN_KEEP_ALIVE : CONN_CLOSE;
	return 0;
}

/* origin-form "/p?q", or absolute-form "http://host/p": the path part. */
static int split_target(struct hreq *q)
{
	struct rtls_http_str t = q->r.target;

	if (t.n && t.p[0] == '/') {
		q->path = t;
		return 0;
	}
	for (size_t i = 0; i + 2 < t.n; i++) {
		if (t.p[i] == ':' && t.p[i + 1] == '/' && t.p[i + 2] == '/') {
			const char *s = memchr(t.p + i + 3, '/', t.n - i - 3);

			q->path = s ? (struct rtls_http_str){ s, (size_t)(t.p + t.n - s) }
				    : (struct rtls_http_str){ "/", 1 };
			return 0;
		}
	}
	return -1;
}

static int route(rtls_conn *c, const struct rtls_http_config *hc, struct hreq *q)
{
	static const char hello[] = "Hello, World!";
	struct rtls_http_str p = q->path;
	size_t plen = p.n;
	const char *qm = memchr(p.p, '?', p.n);

	if (qm)
		plen = (size_t)(qm - p.p);
	if (plen == 6 && memcmp(p.p, "/hello", 6) == 0)
		return rtls__http_simple(c, 200, q->keep_alive, "text/plain", "", hello,
					 sizeof(hello) - 1, q->head);
	if (hc->root_fd >= 0)
		return rtls__http_static(c, hc, q);
	return rtls__http_builtin_page(c, q);
}

/* The methods of RFC 9110 §9 and PATCH (RFC 5789). */
static bool known_method(struct rtls_http_str m)
{
	static const char *const names[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
					     "OPTIONS", "TRACE", "PATCH" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (m.n == strlen(names[i]) && memcmp(m.p, names[i], m.n) == 0)
			return true;
	return false;
}

/* Checks the part of a chunked body that came with its head. We answer a
 * request as soon as its head is parsed; a framing error found after that
 * could only be answered by a second response, which a client that
 * pipelined takes as the answer to its next request. So what is already
 * here is judged first, and the one response is the 400 (or 413). */
static int check_buffered_chunks(const struct rtls_http_config *hc, const char *p, size_t n,
				 const char **why)
{
	struct rtls_http_chunked ch = { 0, 0, 0 };
	uint64_t data = 0;
	size_t used;

	if (rtls__http_chunked_feed(&ch, p, n, &used, &data) == RTLS_HTTP_PARSE_BAD) {
		*why = "malformed chunked body";
		return 400;
	}
	if (data > hc->max_body) {
		*why = "request body too large";
		return 413;
	}
	return 0;
}

static int parse_status(int ret, const char **why)
{
	switch (ret) {
	case RTLS_HTTP_PARSE_URI_TOO_LONG:
		*why = "request-target too long";
		return 414;
	case RTLS_HTTP_PARSE_HEADERS_TOO_LARGE:
		*why = "request head too large or too many fields";
		return 431;
	case RTLS_HTTP_PARSE_BAD_VERSION:
		*why = "HTTP version not supported";
		return 505;
	case RTLS_HTTP_PARSE_BAD:
	default:
		*why = "malformed request";
		return 400;
	}
}

int rtls__http_dispatch(rtls_conn *c, struct hconn *h, const struct rtls_http_config *hc,
			struct hreq *q)
{
	q->head = q->r.method.n == 4 && memcmp(q->r.method.p, "HEAD", 4) == 0;
	if (!q->head && !(q->r.method.n == 3 && memcmp(q->r.method.p, "GET", 3) == 0)) {
		/* RFC 9110 §9.1: a method we do not know at all is 501; a
		 * known one other than GET and HEAD is 405 (with Allow). */
		bool known = known_method(q->r.method);

		rtls__http_error(c, known ? 405 : 501,
				 known ? "method not allowed" : "method not implemented", q->head);
		return 1;
	}
	return h->admin ? rtls__http_admin(c, hc, q) : route(c, hc, q);
}

/* Handles one request at p[0..n). Returns the bytes of its head, 0 if the
 * head is incomplete, or -1 after answering an error (connection closing). */
int rtls__http_request(rtls_conn *c, struct hconn *h, const struct rtls_http_config *hc,
		       const char *p, size_t n, struct rtls_http_header *hdrs)
{
	struct rtls_http_limits lim = { hc->max_head, hc->max_target, hc->max_headers };
	const struct rtls_http_route *rt;
	struct hreq q;
	const char *why = NULL;
	int ret, st;

	memset(&q, 0, sizeof(q));
	q.r.headers = hdrs;
	ret = rtls__http_parse_request(p, n, &lim, &q.r);
	if (ret == RTLS_HTTP_PARSE_INCOMPLETE)
		return 0;
	if (hc->alog)
		rtls__alog_begin(h, p, n, ret > 0 ? &q.r : NULL);
	h->head = ret > 0 && q.r.method.n == 4 && memcmp(q.r.method.p, "HEAD", 4) == 0;
	if (ret < 0) {
		st = parse_status(ret, &why);
		goto fail;
	}
	st = rtls__http_scan_headers(&q, &why);
	if (st)
		goto fail;
	if (split_target(&q) < 0) {
		st = 400;
		why = "request-target is not a path";
		goto fail;
	}
	if (hc->nroutes && !h->admin && (rt = rtls__proxy_route(hc, q.path)) != NULL) {
		/* Proxied: any method but CONNECT, and a body of any size,
		 * streamed. Its head has been judged like any other. */
		if (q.keep_alive == CONN_CLOSE || h->shutting)
			q.keep_alive = CONN_CLOSE;
		if (hc->alog) /* answered after p[0..n) has gone */
			rtls__alog_keep(h);
		return rtls__proxy_start(c, h, rt, &q) < 0 ? -1 : ret;
	}
	if (q.has_content_length && q.content_length > hc->max_body) {
		st = 413;
		why = "request body too large";
		goto fail;
	}
	if (q.chunked) {
		st = check_buffered_chunks(hc, p + ret, n - (size_t)ret, &why);
		if (st)
			goto fail;
	}
	if (q.keep_alive == CONN_CLOSE || h->shutting) {
		q.keep_alive = CONN_CLOSE;
		h->closing = true;
	}
	h->body_left = q.content_length;
	if (q.chunked) {
		memset(&h->chunk, 0, sizeof(h->chunk));
		h->in_chunked = true;
		h->chunked_seen = 0;
	}
	st = rtls__http_dispatch(c, h, hc, &q);
	if (st < 0)
		rtls_conn_abort(c, st);
	if (st != 0) {
		h->closing = true;
		return -1;
	}
	return ret;
fail:
	h->closing = true;
	rtls__http_error(c, st, why, h->head);
	return -1;
}
