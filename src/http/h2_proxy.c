/* A proxied HTTP/2 stream: its request goes to an upstream as HTTP/1.1,
 * its response comes back as the stream's HEADERS and DATA (DESIGN.md
 * "HTTP/2 through the proxy"). The same upstream connections, pool and
 * deadlines serve HTTP/1.1 exchanges (proxy_exch.c); a connection's
 * uconn.stream says which stream it serves, and its callbacks come here.
 *
 *   CONNECT --on_open, or a pooled connection--> HEAD --response head--> BODY
 *   BODY --body whole--> NONE (upstream pooled or closed; the stream
 *   sends what it holds, then ends)
 *   CONNECT --refused/timed out--> CONNECT on another server, once
 *   HEAD --reused connection closed, idempotent, no body sent--> CONNECT, once
 *
 * Backpressure, both ways and per stream:
 * - the request body's flow-control window is given back only as the
 *   upstream takes the bytes (NGHTTP2_OPT_NO_AUTO_WINDOW_UPDATE), so a
 *   slow upstream holds at most a window of it here;
 * - the response body waits in the stream's buffer for its DATA frames,
 *   and the upstream is not read while that holds PX_HIGH_WATER.
 *
 * Failure before the response HEADERS answers the stream 502, 503 or
 * 504; after them, the stream is reset (INTERNAL_ERROR): a short body
 * must not pass for a whole one. The connection's other streams go on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2_int.h"
#include "internal.h"

/* Response body a stream holds before its upstream is paused. */
#define PX_HIGH_WATER ((size_t)64 * 1024)
/* Request bytes queued for an upstream before the window is held back:
 * with the stream's 64 KiB window, a stream holds at most about 128 KiB
 * of upload, and a connection's 100 streams about 13 MiB. */
#define PX_UP_HIGH_WATER ((size_t)64 * 1024)

struct h2px {
	enum pstate st;
	rtls_conn *up;
	const struct rtls_http_route *route;
	struct rtls_http_upstream *srv;
	char *head; /* the request head for the upstream, until sent */
	size_t head_len;
	char *qb; /* request body that came before the upstream was ready */
	size_t qb_len;
	char *rin; /* a response head split across reads */
	size_t rin_len;
	char *pb; /* response body waiting for DATA frames: pb[pb_off..pb_len) */
	size_t pb_off, pb_len, pb_cap;
	struct rtls_http_chunked resp_chunk;
	uint64_t resp_left; /* Content-Length bytes still to come */
	uint64_t req_sent, resp_bytes;
	size_t unacked; /* request DATA taken whose window is not given back */
	int body;       /* enum rtls_http_body of the response */
	int status;
	uint8_t tries;
	bool req_chunked, req_done, head_req, idempotent, reused;
	bool resp_done;       /* the whole body has come from the upstream */
	bool up_close;        /* the upstream cannot take another request */
	bool up_paused;       /* its reading stopped: pb is full */
	bool submitted;       /* the response HEADERS are queued */
	bool dirty;           /* bytes queued for the upstream, not flushed */
	bool wait_drain;      /* windows held until the upstream drains */
	struct alog_req lreq; /* the access log's, moved out of the hconn */
};

enum up_fate { UP_REUSE, UP_CLOSE, UP_ABORT };

static const struct rtls_http_config *cfg(struct h2conn *x)
{
	return rtls_conn_ctx(x->c);
}

/* The stream's own log line: "http2 PEER: stream N: what". */
static void stream_log(struct h2conn *x, struct h2s *st, enum rtls_log_level lv, const char *what)
{
	char line[400];

	if (!rtls_log_enabled(lv))
		return;
	snprintf(line, sizeof(line), "stream %d: %s", (int)st->id, what);
	rtls__h2_log(x, lv, line);
}

/* The access log line of st's request: its fields were moved out of the
 * connection's single slot (other streams use it meanwhile). */
static void alog_done(struct h2conn *x, struct h2px *p, int status)
{
	struct alog_req keep = x->h->lreq;

	if (!p->lreq.pending)
		return;
	x->h->lreq = p->lreq;
	rtls__alog_done(x->c, x->h, status, p->resp_bytes);
	rtls__alog_forget(x->h);
	x->h->lreq = keep;
	memset(&p->lreq, 0, sizeof(p->lreq));
}

/* Lets go of the upstream: pooled if it may carry another request,
 * closed, or aborted after a failure. */
static void let_go(struct h2conn *x, struct h2px *p, enum up_fate fate)
{
	const struct rtls_http_config *hc = cfg(x);
	rtls_conn *u = p->up;
	struct uconn *ud;

	if (!u)
		return;
	p->up = NULL;
	ud = rtls_conn_data(u);
	ud->client = NULL;
	ud->stream = NULL;
	if (p->up_paused) {
		p->up_paused = false;
		rtls_conn_resume_read(u);
	}
	if (fate == UP_REUSE && hc->proxy_keepalive && !hc->upstream_proxy_protocol &&
	    !x->h->shutting)
		rtls__pool_put(u, hc);
	else if (fate != UP_ABORT)
		rtls_conn_close(u);
	else
		rtls_conn_abort(u, -ECONNABORTED);
}

/* Gives back the window of the request bytes the upstream has taken. */
static void give_window(struct h2conn *x, struct h2s *st)
{
	struct h2px *p = st->px;

	if (!p->unacked)
		return;
	nghttp2_session_consume(x->s, st->id, p->unacked);
	p->unacked = 0;
}

/* The exchange is over as far as the upstream goes. */
static void exch_end(struct h2conn *x, struct h2s *st, enum up_fate fate)
{
	struct h2px *p = st->px;

	let_go(x, p, fate);
	free(p->head);
	free(p->qb);
	free(p->rin);
	p->head = p->qb = p->rin = NULL;
	p->head_len = p->qb_len = p->rin_len = 0;
	p->st = PX_NONE;
	/* What the client still sends is dropped: its window comes back. */
	give_window(x, st);
}

/* Answers status (no response HEADERS yet) or resets the stream. One log
 * line either way. */
static void fail(struct h2conn *x, struct h2s *st, int status, const char *what)
{
	struct h2px *p = st->px;
	char why[320];

	if (status >= 500) /* a 408 is the client's */
		rtls__http_count_upstream(x->c, status, (int)p->st);
	if (p->srv && status >= 500)
		snprintf(why, sizeof(why), "upstream %s: %s", p->srv->name, what);
	else
		snprintf(why, sizeof(why), "route %s: %s", p->route->prefix, what);
	exch_end(x, st, UP_ABORT);
	if (p->submitted) {
		char line[352];

		snprintf(line, sizeof(line), "%s: stream reset", why);
		stream_log(x, st, RTLS_LOG_INFO, line);
		alog_done(x, p, p->status);
		p->resp_done = true;
		st->reset = true;
		nghttp2_submit_rst_stream(x->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	/* The error response, made by the same code as every other one, on
	 * this stream (the sink) with this request's access log fields. The
	 * exchange is over: the stream is an ordinary one from here (what
	 * the client still sends is dropped), and st->px is gone. */
	{
		struct alog_req keep = x->h->lreq;
		struct h2s *cur = x->cur;
		bool head = p->head_req;

		x->h->lreq = p->lreq;
		memset(&p->lreq, 0, sizeof(p->lreq));
		rtls__h2px_release(x, st, true);
		x->cur = st;
		rtls__http_error_at(x->c, status, why, head, RTLS_LOG_INFO);
		if (st->status && rtls__h2_submit(x, st) != 0)
			nghttp2_submit_rst_stream(x->s, NGHTTP2_FLAG_NONE, st->id,
						  NGHTTP2_INTERNAL_ERROR);
		x->cur = cur;
		rtls__alog_forget(x->h);
		x->h->lreq = keep;
	}
}

/* ---- the request --------------------------------------------------------- */

static void send_head(struct h2conn *x, struct h2s *st);

/* Attaches an upstream connection: from the pool, or a new connect. */
static void connect_next(struct h2conn *x, struct h2s *st, struct rtls_http_upstream *skip)
{
	const struct rtls_http_config *hc = cfg(x);
	struct h2px *p = st->px;
	struct uconn *ud;
	rtls_conn *u = NULL;
	int ret;

	p->srv = rtls__proxy_pick(p->route, skip);
	if (!p->srv) {
		p->srv = skip;
		fail(x, st, 503, "no upstream server is up");
		return;
	}
	p->tries++;
	p->st = PX_CONNECT;
	if (hc->proxy_keepalive && !hc->upstream_proxy_protocol)
		u = rtls__pool_take(p->srv);
	if (u) {
		ud = rtls_conn_data(u);
		ud->client = x->c;
		ud->stream = st;
		p->up = u;
		p->reused = true;
		send_head(x, st);
		return;
	}
	ret = rtls__upstream_connect(x->c, hc, p->srv, &rtls__upstream_handler, NULL, &u);
	if (ret < 0) {
		fail(x, st, ret == -ENOBUFS || ret == -ESHUTDOWN ? 503 : 502,
		     ret == -ENOBUFS ? "no free connection slot" : strerror(-ret));
		return;
	}
	ud = rtls_conn_data(u);
	ud->self = u;
	ud->client = x->c;
	ud->stream = st;
	ud->srv = p->srv;
	p->up = u;
	p->reused = false;
}

/* Request body bytes for the upstream: queued on it once its head has
 * gone, kept in qb before. Chunked when the client stated no length. */
static int req_put(struct h2px *p, const void *b, size_t n)
{
	char *q;

	if (p->st != PX_CONNECT)
		return rtls_conn_write(p->up, b, n);
	q = realloc(p->qb, p->qb_len + n);
	if (!q)
		return -ENOMEM;
	p->qb = q;
	memcpy(p->qb + p->qb_len, b, n);
	p->qb_len += n;
	return 0;
}

static int req_body(struct h2px *p, const void *b, size_t n)
{
	char sz[24];
	int len;

	if (!p->req_chunked)
		return req_put(p, b, n);
	len = snprintf(sz, sizeof(sz), "%zx\r\n", n);
	if (req_put(p, sz, (size_t)len) < 0 || req_put(p, b, n) < 0 || req_put(p, "\r\n", 2) < 0)
		return -ENOMEM;
	return 0;
}

/* The connection is open: the PROXY header (a new connection only), the
 * head, and what the client has sent of the body meanwhile. */
static void send_head(struct h2conn *x, struct h2s *st)
{
	const struct rtls_http_config *hc = cfg(x);
	struct h2px *p = st->px;
	rtls_conn *u = p->up;

	p->st = PX_HEAD;
	if (rtls__proxy_pp_send(x->c, u, hc, p->srv, p->reused) < 0) {
		fail(x, st, 502, "cannot build the PROXY protocol header");
		return;
	}
	/* The chunked body's end goes here if the request has ended (also
	 * on a retry, which has no body bytes to send again, else it would
	 * not be one: only the end), and from rtls__h2px_req_end() if not. */
	if (rtls_conn_write(u, p->head, p->head_len) < 0 ||
	    (p->qb_len && rtls_conn_write(u, p->qb, p->qb_len) < 0) ||
	    (p->req_chunked && p->req_done && rtls_conn_write(u, "0\r\n\r\n", 5) < 0)) {
		if (p->reused && p->tries < 2) { /* it was closing: another */
			let_go(x, p, UP_ABORT);
			connect_next(x, st, NULL);
			return;
		}
		fail(x, st, 502, "cannot queue the request");
		return;
	}
	p->req_sent += p->qb_len;
	free(p->qb);
	p->qb = NULL;
	p->qb_len = 0;
	/* The response deadline counts from the end of the request: an
	 * upload is bounded by its progress (IDLE, re-armed as it is sent). */
	rtls_conn_set_timer(u, p->req_done ? RTLS_TIMER_RESPONSE : RTLS_TIMER_IDLE);
	p->dirty = true;
}

static bool method_is(struct rtls_http_str m, const char *s)
{
	return m.n == strlen(s) && memcmp(m.p, s, m.n) == 0;
}

int rtls__h2px_start(struct h2conn *x, struct h2s *st, const struct rtls_http_route *rt,
		     const struct hreq *q0)
{
	const struct rtls_http_config *hc = cfg(x);
	struct hreq q = *q0;
	struct rtls_http_str m = q.r.method;
	struct h2px *p;
	size_t cap = 1024;
	long len;

	p = calloc(1, sizeof(*p));
	if (!p) {
		nghttp2_submit_rst_stream(x->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		return -1;
	}
	st->px = p;
	p->route = rt;
	if (hc->alog) {
		/* Answered after the head's bytes have gone, and the
		 * connection's slot serves the other streams meanwhile. */
		rtls__alog_keep(x->h);
		p->lreq = x->h->lreq;
		memset(&x->h->lreq, 0, sizeof(x->h->lreq));
	}
	p->head_req = method_is(m, "HEAD");
	p->idempotent = p->head_req || method_is(m, "GET") || method_is(m, "PUT") ||
			method_is(m, "DELETE") || method_is(m, "OPTIONS") || method_is(m, "TRACE");
	p->req_done = st->remote_done;
	p->req_chunked = !p->req_done && !q.has_content_length;
	q.chunked = p->req_chunked;
	for (size_t i = 0; i < q.r.num_headers; i++)
		cap += q.r.headers[i].name.n + q.r.headers[i].value.n + 4;
	cap += q.r.method.n + q.r.target.n + q.host.n * 2;
	p->head = malloc(cap);
	if (!p->head) {
		fail(x, st, 500, "out of memory");
		return -1;
	}
	len = rtls__proxy_build_head(p->head, cap, x->c, &q, false, (struct rtls_http_str){ 0 });
	if (len < 0) {
		fail(x, st, 431, "request head too large to forward");
		return -1;
	}
	p->head_len = (size_t)len;
	connect_next(x, st, NULL);
	return st->px ? 0 : -1;
}

void rtls__h2px_data(struct h2conn *x, struct h2s *st, const uint8_t *b, size_t n)
{
	struct h2px *p = st->px;

	if (p->st == PX_NONE || p->req_done) {
		nghttp2_session_consume(x->s, st->id, n); /* dropped */
		return;
	}
	p->unacked += n;
	if (req_body(p, b, n) < 0) {
		fail(x, st, 502, "cannot queue the request body");
		return;
	}
	if (p->st != PX_CONNECT) {
		p->req_sent += n;
		p->dirty = true;
	}
}

void rtls__h2px_req_end(struct h2conn *x, struct h2s *st)
{
	struct h2px *p = st->px;

	if (p->st == PX_NONE || p->req_done)
		return;
	p->req_done = true;
	if (p->st == PX_CONNECT)
		return; /* send_head() writes the chunked body's end */
	if (p->req_chunked && rtls_conn_write(p->up, "0\r\n\r\n", 5) < 0) {
		fail(x, st, 502, "cannot queue the request body");
		return;
	}
	if (p->st == PX_HEAD)
		rtls_conn_set_timer(p->up, RTLS_TIMER_RESPONSE);
	p->dirty = true;
}

/* Flushes what st queued for its upstream, and gives back the window of
 * what the upstream has room for (or waits for it to drain). Not from
 * inside nghttp2's callbacks: a flush can end an upstream, and with it
 * the exchange. */
static void flush_up(struct h2conn *x, struct h2s *st)
{
	struct h2px *p = st->px;
	rtls_conn *u;

	if (!p || !(u = p->up) || p->st == PX_CONNECT)
		return;
	if (p->dirty) {
		/* The flush may end u at once (on_close inside it: no memory,
		 * a TLS error), and fail the exchange: nothing pumps the
		 * session meanwhile (settle()), so st lives on, though st->px
		 * may not. */
		p->dirty = false;
		x->up_flushing++;
		rtls_conn_flush(u);
		x->up_flushing--;
	}
	if (st->px != p || p->up != u) /* the flush ended it */
		return;
	if (rtls_conn_pending(u) <= PX_UP_HIGH_WATER)
		give_window(x, st);
	else
		p->wait_drain = true;
}

void rtls__h2px_after_input(struct h2conn *x)
{
	for (struct h2s *st = x->streams, *next; st; st = next) {
		next = st->next;
		flush_up(x, st);
	}
}

/* ---- the response -------------------------------------------------------- */

/* The upstream's response head as the stream's HEADERS: its fields less
 * the hop-by-hop ones and the framing (HTTP/2 frames the body itself),
 * names lower-cased (RFC 9113 §8.2.2). */
static int submit_head(struct h2conn *x, struct h2s *st, const struct rtls_http_response *r,
		       bool final, bool body)
{
	struct h2px *p = st->px;
	nghttp2_nv nv[HTTP_MAX_HEADERS + 2];
	char status[4], names[PROXY_MAX_RESP_HEAD], *np = names;
	size_t n = 0;

	status[0] = (char)('0' + r->status / 100 % 10);
	status[1] = (char)('0' + r->status / 10 % 10);
	status[2] = (char)('0' + r->status % 10);
	nv[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)status, 7, 3,
				NGHTTP2_NV_FLAG_NO_COPY_NAME };
	for (size_t i = 0; i < r->num_headers && n < sizeof(nv) / sizeof(nv[0]); i++) {
		const struct rtls_http_header *f = &r->headers[i];

		/* A length stays where it is the body's, or the one a GET
		 * would have (HEAD, 304); a chunked or close-delimited body
		 * has none (nor should it have had one). */
		if (!rtls__proxy_forwarded_field(r->headers, r->num_headers, i) ||
		    rtls__http_str_ieq(f->name, "transfer-encoding") ||
		    ((!final || r->status == 204 || p->body == RTLS_HTTP_BODY_CHUNKED ||
		      p->body == RTLS_HTTP_BODY_CLOSE) &&
		     rtls__http_str_ieq(f->name, "content-length")))
			continue;
		for (size_t k = 0; k < f->name.n; k++) {
			char ch = f->name.p[k];

			np[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
		}
		nv[n++] = (nghttp2_nv){ (uint8_t *)np, (uint8_t *)f->value.p, f->name.n, f->value.n,
					NGHTTP2_NV_FLAG_NONE };
		np += f->name.n;
	}
	if (!final) /* 100, 103: HEADERS that do not end the response */
		return nghttp2_submit_headers(x->s, NGHTTP2_FLAG_NONE, st->id, NULL, nv, n, NULL);
	return rtls__h2_submit_nv(x, st, nv, n, body);
}

static int response_head(struct h2conn *x, struct h2s *st, const struct rtls_http_response *r)
{
	struct h2px *p = st->px;
	struct rtls_http_framing fr;
	const char *why = NULL;
	bool body;

	if (r->status >= 100 && r->status < 200 && r->status != 101) {
		/* Interim (100 Continue, 103 Early Hints): passed on as HEADERS
		 * of their own; the final response follows. */
		if (submit_head(x, st, r, false, false) != 0) {
			fail(x, st, 502, "cannot queue an interim response");
			return -1;
		}
		return 0;
	}
	if (r->status == 101) {
		fail(x, st, 502, "101 to a request that asked for no upgrade");
		return -1;
	}
	if (rtls__http_response_framing(r, p->head_req, &fr, &why) < 0) {
		fail(x, st, 502, why ? why : "invalid response framing");
		return -1;
	}
	p->body = (int)fr.body;
	p->status = r->status;
	p->resp_left = fr.length;
	p->up_close = fr.close;
	p->resp_done =
		fr.body == RTLS_HTTP_BODY_NONE || (fr.body == RTLS_HTTP_BODY_LENGTH && !fr.length);
	body = !p->resp_done;
	if (submit_head(x, st, r, true, body) != 0) {
		fail(x, st, 502, "cannot queue the response head");
		return -1;
	}
	p->submitted = true;
	rtls__http_count_status(x->c, r->status);
	p->st = PX_BODY;
	free(p->head);
	p->head = NULL;
	/* From here a stalled upstream is cut after the idle time. */
	rtls_conn_set_timer(p->up, RTLS_TIMER_IDLE);
	return 0;
}

/* Response body bytes into pb, for the stream's DATA frames. */
static int pb_put(struct h2px *p, const char *b, size_t n)
{
	if (!n)
		return 0;
	if (p->pb_off && p->pb_len + n > p->pb_cap) {
		memmove(p->pb, p->pb + p->pb_off, p->pb_len - p->pb_off);
		p->pb_len -= p->pb_off;
		p->pb_off = 0;
	}
	if (p->pb_len + n > p->pb_cap) {
		size_t cap = p->pb_cap ? p->pb_cap : 16384;
		char *q;

		while (cap < p->pb_len + n)
			cap *= 2;
		q = realloc(p->pb, cap);
		if (!q)
			return -ENOMEM;
		p->pb = q;
		p->pb_cap = cap;
	}
	memcpy(p->pb + p->pb_len, b, n);
	p->pb_len += n;
	p->resp_bytes += n;
	return 0;
}

/* The body bytes of one read: unframed (chunked) into pb. Bytes past its
 * end are the upstream's fault: it is not reused. 0, or -1 after failing. */
static int body_input(struct h2conn *x, struct h2s *st, const char *b, size_t n)
{
	struct h2px *p = st->px;
	int ret = 0;

	if (p->body == RTLS_HTTP_BODY_LENGTH) {
		size_t k = n < p->resp_left ? n : (size_t)p->resp_left;

		ret = pb_put(p, b, k);
		p->resp_left -= k;
		p->resp_done = !p->resp_left;
		p->up_close = p->up_close || k < n;
	} else if (p->body == RTLS_HTTP_BODY_CHUNKED) {
		while (n && ret == 0 && !p->resp_done) {
			size_t used, off, len;
			int rc = rtls__http_chunked_span(&p->resp_chunk, b, n, &used, &off, &len);

			if (rc == RTLS_HTTP_PARSE_BAD) {
				fail(x, st, 502, "malformed chunked response body");
				return -1;
			}
			ret = pb_put(p, b + off, len);
			b += used;
			n -= used;
			p->resp_done = rc == 1;
		}
		p->up_close = p->up_close || n;
	} else if (p->body == RTLS_HTTP_BODY_CLOSE) {
		ret = pb_put(p, b, n);
	} else {
		p->up_close = p->up_close || n;
	}
	if (ret < 0) {
		fail(x, st, 502, "out of memory for the response body");
		return -1;
	}
	return 0;
}

/* The stream has DATA to send again: nghttp2 asks for it. */
static void wake(struct h2conn *x, struct h2s *st)
{
	if (!st->deferred || rtls_conn_pending(x->c) > H2_HIGH_WATER)
		return; /* rtls__h2_drained() resumes it */
	st->deferred = false;
	nghttp2_session_resume_data(x->s, st->id);
}

/* The whole body has come: the upstream can go (back to the pool if
 * the request went whole too); the stream still sends what pb holds. */
static void resp_complete(struct h2conn *x, struct h2s *st)
{
	struct h2px *p = st->px;

	exch_end(x, st, !p->up_close && p->req_done ? UP_REUSE : UP_CLOSE);
	alog_done(x, p, p->status);
	wake(x, st);
}

ssize_t rtls__h2px_read(struct h2conn *x, struct h2s *st, uint8_t *buf, size_t len, uint32_t *flags)
{
	struct h2px *p = st->px;
	size_t avail = p->pb_len - p->pb_off;

	if (!avail && p->resp_done) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	if (!avail || rtls_conn_pending(x->c) > H2_HIGH_WATER) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (len > avail)
		len = avail;
	memcpy(buf, p->pb + p->pb_off, len);
	p->pb_off += len;
	avail -= len;
	if (!avail) {
		p->pb_off = p->pb_len = 0;
		if (p->resp_done)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
	}
	if (p->up_paused && avail < PX_HIGH_WATER / 2) {
		p->up_paused = false;
		rtls_conn_set_timer(p->up, RTLS_TIMER_IDLE);
		rtls_conn_resume_read(p->up);
	}
	return (ssize_t)len;
}

uint64_t rtls__h2px_left(const struct h2s *st)
{
	return st->px->pb_len - st->px->pb_off;
}

bool rtls__h2px_ready(const struct h2s *st)
{
	return st->px->pb_len > st->px->pb_off || st->px->resp_done;
}

bool rtls__h2px_waits_upstream(const struct h2s *st)
{
	const struct h2px *p = st->px;

	if (!p || st->reset)
		return false;
	return p->st == PX_CONNECT || p->st == PX_HEAD ||
	       (p->st == PX_BODY && !p->up_paused && p->pb_len == p->pb_off);
}

void rtls__h2px_release(struct h2conn *x, struct h2s *st, bool live)
{
	struct h2px *p = st->px;

	if (p->st != PX_NONE) {
		/* The client reset the stream or left: 499, as nginx, before
		 * the response head; the status sent so far after it. */
		alog_done(x, p, p->submitted ? p->status : 499);
		p->resp_done = true;
		if (!live)
			p->unacked = 0; /* the session is going: no windows */
		exch_end(x, st, UP_ABORT);
	}
	if (live && p->unacked) /* the stream is closed: the connection's part */
		nghttp2_session_consume_connection(x->s, p->unacked);
	free(p->head);
	free(p->qb);
	free(p->rin);
	free(p->pb);
	free(p->lreq.copy);
	free(p);
	st->px = NULL;
}

/* ---- the upstream's callbacks -------------------------------------------- */

/* Each ends with settle(): what it queued for the upstream is flushed,
 * windows given back, and the stream's frames are sent. st->px may be gone by then (an
 * exchange that failed before its response is an ordinary stream), and
 * after the pump st itself may be. */
static void settle(struct h2conn *x, struct h2s *st)
{
	/* The window too: DATA that waited in qb for the connect may be a
	 * whole window, and the client sends nothing more until it is
	 * given back. */
	flush_up(x, st);
	if (!x->up_flushing) /* the outer flush_up()'s caller pumps */
		rtls__h2_pump(x);
}

static struct h2conn *conn_of(struct uconn *ud)
{
	return ((struct hconn *)rtls_conn_data(ud->client))->h2;
}

void rtls__h2px_up_open(rtls_conn *u, struct uconn *ud)
{
	struct h2conn *x = conn_of(ud);
	struct h2s *st = ud->stream;

	(void)u;
	send_head(x, st);
	settle(x, st);
}

void rtls__h2px_up_data(rtls_conn *u, struct uconn *ud, struct rtls_buf *b)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(ud->client);
	struct rtls_http_limits lim = { PROXY_MAX_RESP_HEAD, 0, hc->max_headers };
	struct rtls_http_header hdrs[HTTP_MAX_HEADERS];
	struct h2conn *x = conn_of(ud);
	struct h2s *st = ud->stream;
	struct h2px *p = st->px;
	const char *d = b->data;
	size_t n = b->len;

	if (p->st == PX_BODY)
		rtls_conn_set_timer(u, RTLS_TIMER_IDLE);
	while ((p = st->px) && p->st == PX_HEAD && n) {
		struct rtls_http_response r = { .headers = hdrs };
		long ret = rtls__proxy_head_feed(&p->rin, &p->rin_len, d, n, &lim, &r);

		if (ret == 0)
			break;
		if (ret < 0) {
			fail(x, st, 502, rtls__proxy_head_error(ret));
			break;
		}
		d += ret;
		n -= (size_t)ret;
		if (response_head(x, st, &r) < 0)
			break;
	}
	if ((p = st->px) && p->st == PX_BODY && n)
		body_input(x, st, d, n);
	rtls_buf_release(u, b);
	if ((p = st->px) && p->st == PX_BODY && p->resp_done) {
		resp_complete(x, st);
	} else if (p && p->st == PX_BODY) {
		wake(x, st);
		if (p->pb_len - p->pb_off >= PX_HIGH_WATER && !p->up_paused) {
			/* The client's DATA frames bound its idle time. */
			p->up_paused = true;
			rtls_conn_set_timer(u, RTLS_TIMER_NONE);
			rtls_conn_pause_read(u);
		}
	}
	settle(x, st);
}

/* May this request go again, on a new connection? Only if nothing of it
 * can have been acted on (as proxy_exch.c's). */
static bool retriable(const struct h2px *p)
{
	if (p->tries >= 2 || p->req_sent)
		return false;
	return p->st == PX_CONNECT ||
	       (p->st == PX_HEAD && p->reused && p->idempotent && !p->rin_len);
}

void rtls__h2px_up_eof(rtls_conn *u, struct uconn *ud)
{
	struct h2conn *x = conn_of(ud);
	struct h2s *st = ud->stream;
	struct h2px *p = st->px;

	(void)u;
	if (p->st == PX_BODY && p->body == RTLS_HTTP_BODY_CLOSE) {
		p->resp_done = p->up_close = true;
		resp_complete(x, st);
	} else if (p->st == PX_BODY) {
		fail(x, st, 502, "closed mid-body");
	} else if (retriable(p)) {
		let_go(x, p, UP_ABORT);
		connect_next(x, st, NULL);
	} else {
		fail(x, st, 502, "closed before the response head");
	}
	settle(x, st);
}

void rtls__h2px_up_timeout(rtls_conn *u, struct uconn *ud, enum rtls_timer t)
{
	struct h2conn *x = conn_of(ud);
	struct h2s *st = ud->stream;
	struct h2px *p = st->px;

	if (t != RTLS_TIMER_RESPONSE && p->st == PX_HEAD && !p->req_done && !p->wait_drain &&
	    !rtls_conn_pending(u))
		/* The upstream took all it was given; the client stopped
		 * mid-body: its 408, as HTTP/1.1's. */
		fail(x, st, 408, "request body not received in time");
	else
		fail(x, st, 504,
		     t == RTLS_TIMER_RESPONSE ? "no response head in time"
					      : "stalled for the idle time");
	settle(x, st);
}

void rtls__h2px_up_close(rtls_conn *u, struct uconn *ud, int err)
{
	struct h2conn *x = conn_of(ud);
	struct h2s *st = ud->stream;
	struct h2px *p = st->px;
	char what[96];

	(void)u;
	ud->client = NULL;
	ud->stream = NULL;
	p->up = NULL;
	p->up_paused = false;
	if (p->st == PX_CONNECT) {
		/* Passive health: a server that refuses or does not answer is
		 * skipped for a while, by every thread. */
		if ((err == -ECONNREFUSED || err == -ETIMEDOUT || err == -EHOSTUNREACH ||
		     err == -ENETUNREACH) &&
		    rtls__proxy_mark_down(p->srv))
			rtls_log(RTLS_LOG_WARN, "upstream %s: connect: %s: marked down for 10 s",
				 p->srv->name, strerror(-err));
		if (retriable(p) && p->route->nups > 1) {
			connect_next(x, st, p->srv);
		} else {
			if (err == -EKEYREJECTED || err == -EPROTO) /* rtls_conn_connect_tls() */
				snprintf(what, sizeof(what), "TLS handshake failed%s",
					 err == -EKEYREJECTED ? ": certificate not accepted" : "");
			else
				snprintf(what, sizeof(what), "connect: %s",
					 strerror(err ? -err : ECONNABORTED));
			fail(x, st, err == -ETIMEDOUT ? 504 : err == -ESHUTDOWN ? 503 : 502, what);
		}
	} else if (p->st == PX_HEAD && retriable(p)) {
		connect_next(x, st, NULL);
	} else if (p->st != PX_NONE) {
		snprintf(what, sizeof(what), "%s", err ? strerror(-err) : "closed");
		fail(x, st, 502, what);
	}
	settle(x, st);
}

void rtls__h2px_up_drained(rtls_conn *u, struct uconn *ud)
{
	struct h2conn *x = conn_of(ud);
	struct h2s *st = ud->stream;
	struct h2px *p = st->px;

	if (!p->wait_drain || p->up != u)
		return;
	p->wait_drain = false;
	give_window(x, st);
	settle(x, st);
}
