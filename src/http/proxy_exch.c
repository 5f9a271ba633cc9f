/* One proxied HTTP/1.1 exchange: the client's request goes to an
 * upstream, its response comes back, both streamed with backpressure
 * (DESIGN.md, "Reverse proxy"). The exchange lives in the client's data
 * area (struct pexch); the upstream connection's data area (struct
 * uconn) points back at the client while it serves one.
 *
 *   CONNECT --on_open, or a pooled connection--> HEAD --response head--> BODY
 *   HEAD --101--> TUNNEL;  BODY --body complete--> (pool or close) NONE
 *   CONNECT --refused/timed out--> CONNECT on another server, once; or 502/504
 *   HEAD --reused connection closed, idempotent, no body sent--> CONNECT, once
 *
 * Failure before the response head reached the client answers 502, 503
 * or 504; after it, the client connection is reset: a short body must
 * not pass for a complete one. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/proxyproto.h"
#include "internal.h"

/* Stop reading one side while the other has this much unsent. */
#define PROXY_HIGH_WATER ((size_t)256 * 1024)

/* ---- the request head for the upstream ---------------------------------- */

/* Headers that describe one hop (RFC 9110 §7.6.1) and are not forwarded;
 * Transfer-Encoding is, as the body is forwarded in the framing it came
 * in. The X-Forwarded- pair we set ourselves. */
static bool hop_by_hop(struct rtls_http_str n)
{
	/* By length first: it runs for every field of every request and
	 * response, and most fields are turned away without a comparison. */
	switch (n.n) {
	case 2:
		return rtls__http_str_ieq(n, "te");
	case 7:
		return rtls__http_str_ieq(n, "upgrade");
	case 10:
		return rtls__http_str_ieq(n, "connection") || rtls__http_str_ieq(n, "keep-alive");
	case 16:
		return rtls__http_str_ieq(n, "proxy-connection") ||
		       rtls__http_str_ieq(n, "x-forwarded-host");
	case 17:
		return rtls__http_str_ieq(n, "x-forwarded-proto");
	default:
		return false;
	}
}

/* Fields the body's framing and the origin depend on: a Connection
 * header may not make us drop them (that would desynchronise the
 * upstream's idea of where this request ends). */
static bool framing_field(struct rtls_http_str n)
{
	return rtls__http_str_ieq(n, "host") || rtls__http_str_ieq(n, "content-length") ||
	       rtls__http_str_ieq(n, "transfer-encoding");
}

/* Is field name n listed in any Connection field of hdrs? */
static bool named_by_connection(const struct rtls_http_header *hdrs, size_t nh,
				struct rtls_http_str n)
{
	if (framing_field(n))
		return false;
	for (size_t i = 0; i < nh; i++)
		if (rtls__http_str_ieq(hdrs[i].name, "connection") &&
		    rtls__http_list_has(hdrs[i].value, n))
			return true;
	return false;
}

bool rtls__proxy_forwarded_field(const struct rtls_http_header *hdrs, size_t nh, size_t i)
{
	return !hop_by_hop(hdrs[i].name) && !named_by_connection(hdrs, nh, hdrs[i].name);
}

/* The client's address without its port ("192.0.2.1", "2001:db8::1";
 * a v4-mapped IPv6 address as IPv4; "unknown" if there is none) and
 * whether it came over TLS: asked of the engine once per connection (two
 * system calls), kept in the data area for its later requests. */
static const struct hfwd *client_of(rtls_conn *c, struct hconn *h)
{
	struct hfwd *f = &h->fwd;
	struct rtls_conn_info ci;

	if (f->known)
		return f;
	f->known = true;
	snprintf(f->ip, sizeof(f->ip), "unknown");
	if (rtls_conn_query(c, &ci) < 0)
		return f;
	f->tls = ci.transport == RTLS_TRANSPORT_TLS;
	if (ci.peer_len && ci.peer.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ci.peer)->sin_addr, f->ip,
			  sizeof(f->ip));
	} else if (ci.peer_len && ci.peer.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ci.peer)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			inet_ntop(AF_INET, &a->s6_addr[12], f->ip, sizeof(f->ip));
		} else {
			inet_ntop(AF_INET6, a, f->ip, sizeof(f->ip));
			f->v6 = true;
		}
	}
	return f;
}

/* Is every byte of s a token character (RFC 9110 §5.6.2)? Forwarded's
 * values that are not must be quoted (RFC 7239 §4). */
static bool is_token(struct rtls_http_str s)
{
	for (size_t i = 0; i < s.n; i++) {
		unsigned char ch = (unsigned char)s.p[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch)))
			return false;
	}
	return s.n > 0;
}

struct out {
	char *p, *end;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->p > o->end || (size_t)(o->end - o->p) < n) {
		o->p = o->end + 1; /* overflow: noticed by the caller */
		return;
	}
	memcpy(o->p, s, n);
	o->p += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putv(struct out *o, struct rtls_http_str v)
{
	put(o, v.p, v.n);
}

/* The field values of name in hdrs, joined by ", " (for the lists we
 * append to). */
static void put_joined(struct out *o, const struct rtls_http_header *hdrs, size_t nh,
		       const char *name)
{
	for (size_t i = 0; i < nh; i++) {
		if (!rtls__http_str_ieq(hdrs[i].name, name) || !hdrs[i].value.n)
			continue;
		putv(o, hdrs[i].value);
		puts_(o, ", ");
	}
}

/* Builds the head the upstream gets: the request line in origin-form,
 * the client's fields less the hop-by-hop ones, and the forwarding
 * fields. Returns its length, or -1 if it does not fit n. */
long rtls__proxy_build_head(char *buf, size_t n, rtls_conn *c, const struct hreq *q, bool upgrade,
			    struct rtls_http_str upgrade_v)
{
	const struct rtls_http_header *hd = q->r.headers;
	size_t nh = q->r.num_headers;
	const struct hfwd *f = client_of(c, rtls_conn_data(c));
	struct out o = { buf, buf + n };
	bool v6 = f->v6, tls = f->tls;
	const char *ip = f->ip;

	putv(&o, q->r.method);
	puts_(&o, " ");
	putv(&o, q->r.target.n && q->r.target.p[0] == '/' ? q->r.target : q->path);
	puts_(&o, q->r.minor_version ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
	for (size_t i = 0; i < nh; i++) {
		if (!rtls__proxy_forwarded_field(hd, nh, i) ||
		    rtls__http_str_ieq(hd[i].name, "forwarded") ||
		    rtls__http_str_ieq(hd[i].name, "x-forwarded-for") ||
		    (q->h2 && rtls__http_str_ieq(hd[i].name, "cookie")))
			continue;
		putv(&o, hd[i].name);
		puts_(&o, ": ");
		putv(&o, hd[i].value);
		puts_(&o, "\r\n");
	}
	puts_(&o, "X-Forwarded-For: ");
	put_joined(&o, hd, nh, "x-forwarded-for");
	puts_(&o, ip);
	puts_(&o, tls ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
	if (q->host.n) {
		puts_(&o, "X-Forwarded-Host: ");
		putv(&o, q->host);
		puts_(&o, "\r\n");
	}
	puts_(&o, "Forwarded: ");
	put_joined(&o, hd, nh, "forwarded");
	puts_(&o, v6 ? "for=\"[" : "for=");
	puts_(&o, ip);
	puts_(&o, v6 ? "]\"" : "");
	puts_(&o, tls ? ";proto=https" : ";proto=http");
	if (q->host.n) {
		bool quote = !is_token(q->host);

		puts_(&o, quote ? ";host=\"" : ";host=");
		putv(&o, q->host);
		puts_(&o, quote ? "\"" : "");
	}
	puts_(&o, "\r\n");
	if (q->h2) {
		/* HTTP/2 may split Cookie into one field per crumb (RFC 9113
		 * §8.2.3); HTTP/1.1 wants them as one. A body of no stated
		 * length goes chunked: HTTP/2 frames it, HTTP/1.1 cannot
		 * without. */
		bool first = true;

		for (size_t i = 0; i < nh; i++) {
			if (!rtls__http_str_ieq(hd[i].name, "cookie"))
				continue;
			puts_(&o, first ? "Cookie: " : "; ");
			putv(&o, hd[i].value);
			first = false;
		}
		if (!first)
			puts_(&o, "\r\n");
		if (q->chunked)
			puts_(&o, "Transfer-Encoding: chunked\r\n");
	}
	if (upgrade) {
		puts_(&o, "Connection: upgrade\r\nUpgrade: ");
		putv(&o, upgrade_v);
		puts_(&o, "\r\n");
	} else if (!q->r.minor_version) {
		/* HTTP/1.0 is not persistent unless asked for. */
		puts_(&o, "Connection: keep-alive\r\n");
	}
	puts_(&o, "\r\n");
	return o.p > o.end ? -1 : (long)(o.p - buf);
}

/* ---- ending an exchange -------------------------------------------------- */

/* What becomes of the upstream when an exchange lets go of it. */
enum up_fate { UP_REUSE, UP_CLOSE, UP_ABORT };

/* Lets go of the upstream: back to the pool if it may carry another
 * request (and no PROXY header tied it to one client), closed gracefully
 * after a tunnel, aborted after a failure. */
static void release_up(struct hconn *h, const struct rtls_http_config *hc, enum up_fate fate)
{
	struct pexch *x = &h->x;
	rtls_conn *u = x->up;

	if (!u)
		return;
	x->up = NULL;
	((struct uconn *)rtls_conn_data(u))->client = NULL;
	if (fate == UP_REUSE && hc->proxy_keepalive && !hc->upstream_proxy_protocol && !h->shutting)
		rtls__pool_put(u, hc);
	else if (fate != UP_ABORT)
		rtls_conn_close(u);
	else
		rtls_conn_abort(u, -ECONNABORTED);
}

static void exch_clear(struct pexch *x)
{
	free(x->head);
	free(x->rin);
	memset(x, 0, sizeof(*x));
}

/* ---- bodies moved by splice ---------------------------------------------- */

/* Where the engine can (plain TCP or kTLS on both sides: else
 * -EOPNOTSUPP, and the copying goes on), the rest of a body of known
 * length goes from one socket to the other by splice, never through
 * here (rtls_conn_forward_n()); the source reads the ordinary way again
 * once it has gone, and on_forwarded says so. Only once nothing of the
 * body is held here: what came with the head, or in the same read, was
 * written first. A source that is paused (-EBUSY) is tried again with
 * its next input. */
static void body_spliced_log(rtls_conn *c, const char *what, uint64_t total, uint64_t spliced)
{
	char peer[64];

	if (!rtls_log_enabled(RTLS_LOG_DEBUG))
		return;
	rtls_conn_peer(c, peer, sizeof(peer));
	rtls_log(RTLS_LOG_DEBUG, "http %s: proxy: %s body %llu bytes, spliced %llu", peer, what,
		 (unsigned long long)total, (unsigned long long)spliced);
}

/* The response body bytes moved so far by a forward still running: for
 * the access log of an exchange that ends before it did. */
static void resp_fwd_fold(struct pexch *x)
{
	if (!x->resp_fwd)
		return;
	x->resp_fwd = false;
	if (x->up)
		x->resp_bytes += rtls_conn_forwarded(x->up) - x->resp_fwd0;
}

/* Answers status (the response head has not gone out) or resets the
 * client (it has). One log line either way. */
static void fail(rtls_conn *c, struct hconn *h, int status, const char *what)
{
	struct pexch *x = &h->x;
	char why[320];
	bool head = x->head_req;

	rtls__http_count_upstream(c, status, (int)x->st);
	if (x->srv)
		snprintf(why, sizeof(why), "upstream %s: %s", x->srv->name, what);
	else
		snprintf(why, sizeof(why), "route %s: %s", x->route ? x->route->prefix : "-", what);
	resp_fwd_fold(x);
	release_up(h, rtls_conn_ctx(c), UP_ABORT);
	if (x->st == PX_BODY || x->st == PX_TUNNEL) {
		char peer[64];

		rtls_conn_peer(c, peer, sizeof(peer));
		rtls_log(RTLS_LOG_INFO, "http %s: %s: client connection reset", peer, why);
		rtls__alog_done(c, h, x->status, x->resp_bytes);
		exch_clear(x);
		h->closing = true;
		rtls_conn_abort(c, -ECONNRESET);
		return;
	}
	exch_clear(x);
	h->closing = true;
	rtls__http_error(c, status, why, head);
}

/* The response has been queued for the client, whole. */
static void finish(rtls_conn *c, struct hconn *h)
{
	struct pexch *x = &h->x;
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	/* An upstream still owed part of the body cannot take another
	 * request, and the client's next request would start mid-body. */
	bool reuse = !x->up_close && x->req_done;
	bool close = x->client_close || !x->req_done;

	release_up(h, hc, reuse ? UP_REUSE : UP_CLOSE);
	rtls__alog_done(c, h, x->status, x->resp_bytes);
	exch_clear(x);
	if (close) {
		h->closing = true;
		rtls_conn_close(c);
		return;
	}
	rtls__http_resume(c, h);
}

/* ---- connecting ---------------------------------------------------------- */

static void send_head(rtls_conn *c, struct hconn *h);

/* Attaches an upstream connection for x's server: from the pool, or a
 * new connect. 0, or -1 after failing the exchange. */
static int connect_next(rtls_conn *c, struct hconn *h, struct rtls_http_upstream *skip)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	struct pexch *x = &h->x;
	struct uconn *ud;
	rtls_conn *u = NULL;
	int ret;

	x->srv = rtls__proxy_pick(x->route, skip);
	if (!x->srv) {
		x->srv = skip;
		fail(c, h, 503, "no upstream server is up");
		return -1;
	}
	x->tries++;
	x->st = PX_CONNECT;
	if (hc->proxy_keepalive && !hc->upstream_proxy_protocol)
		u = rtls__pool_take(x->srv);
	if (u) {
		ud = rtls_conn_data(u);
		ud->client = c;
		ud->stream = NULL;
		x->up = u;
		x->reused = true;
		send_head(c, h);
		return 0;
	}
	ret = rtls__upstream_connect(c, hc, x->srv, &rtls__upstream_handler, NULL, &u);
	if (ret < 0) {
		/* No slot, or the server is stopping: not the upstream's fault. */
		fail(c, h, ret == -ENOBUFS || ret == -ESHUTDOWN ? 503 : 502,
		     ret == -ENOBUFS ? "no free connection slot" : strerror(-ret));
		return -1;
	}
	ud = rtls_conn_data(u);
	ud->self = u;
	ud->client = c;
	ud->srv = x->srv;
	x->up = u;
	x->reused = false;
	return 0;
}

int rtls__proxy_pp_send(rtls_conn *c, rtls_conn *u, const struct rtls_http_config *hc,
			const struct rtls_http_upstream *srv, bool reused)
{
	struct rtls_conn_info ci;
	char pp[512];
	int n = -EINVAL;

	if (!hc->upstream_proxy_protocol || reused || srv->tls) /* TLS: at connect */
		return 0;
	if (rtls_conn_query(c, &ci) == 0)
		n = rtls__proxy_header_build(pp, sizeof(pp), hc->upstream_proxy_protocol, &ci);
	if (n < 0 || rtls_conn_write(u, pp, (size_t)n) < 0)
		return -1;
	return 0;
}

/* The connection is open: the PROXY header (a new connection only), the
 * request head, and then whatever body the client has sent. */
static void send_head(rtls_conn *c, struct hconn *h)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	struct pexch *x = &h->x;
	rtls_conn *u = x->up;

	x->st = PX_HEAD;
	if (rtls__proxy_pp_send(c, u, hc, x->srv, x->reused) < 0) {
		fail(c, h, 502, "cannot build the PROXY protocol header");
		return;
	}
	if (rtls_conn_write(u, x->head, x->head_len) < 0) {
		if (x->reused && x->tries < 2) { /* it was closing: another */
			release_up(h, hc, UP_ABORT);
			connect_next(c, h, NULL);
			return;
		}
		fail(c, h, 502, "cannot queue the request");
		return;
	}
	/* The response deadline counts from the end of the request: an
	 * upload is bounded by its progress (IDLE, re-armed as it is sent). */
	rtls_conn_set_timer(u, x->req_done ? RTLS_TIMER_RESPONSE : RTLS_TIMER_IDLE);
	rtls_conn_flush(u); /* may end u: its on_close then retries or fails */
	if (x->st == PX_HEAD && x->up == u)
		rtls__http_resume(c, h); /* the body the client sent meanwhile */
}

/* ---- the client side ----------------------------------------------------- */

static bool method_is(struct rtls_http_str m, const char *s)
{
	return m.n == strlen(s) && memcmp(m.p, s, m.n) == 0;
}

int rtls__proxy_start(rtls_conn *c, struct hconn *h, const struct rtls_http_route *rt,
		      const struct hreq *q)
{
	struct pexch *x = &h->x;
	struct rtls_http_str m = q->r.method, up = { 0 }, conn = { 0 };
	bool upgrade = false;
	size_t cap = 1024;
	long len;

	memset(x, 0, sizeof(*x));
	x->route = rt;
	x->head_req = method_is(m, "HEAD");
	if (method_is(m, "CONNECT")) {
		h->closing = true;
		rtls__http_error(c, 501, "CONNECT is not proxied", false);
		return -1;
	}
	x->idempotent = x->head_req || method_is(m, "GET") || method_is(m, "PUT") ||
			method_is(m, "DELETE") || method_is(m, "OPTIONS") || method_is(m, "TRACE");
	x->client10 = q->r.minor_version == 0;
	x->client_close = q->keep_alive == CONN_CLOSE || h->shutting;
	for (size_t i = 0; i < q->r.num_headers; i++) {
		const struct rtls_http_header *f = &q->r.headers[i];

		cap += f->name.n + f->value.n + 4;
		if (rtls__http_str_ieq(f->name, "upgrade"))
			up = f->value;
		else if (rtls__http_str_ieq(f->name, "connection") &&
			 rtls__http_has_token(f->value, "upgrade"))
			conn = f->value;
	}
	upgrade = up.n && conn.n && !x->client10;
	x->upgrade = upgrade;
	x->req_left = q->has_content_length ? q->content_length : 0;
	x->req_chunked = q->chunked;
	x->req_done = !x->req_left && !x->req_chunked;
	cap += q->r.method.n + q->r.target.n + q->host.n * 2 + up.n;
	x->head = malloc(cap);
	if (!x->head) {
		rtls_conn_abort(c, -ENOMEM);
		return -1;
	}
	len = rtls__proxy_build_head(x->head, cap, c, q, upgrade, up);
	if (len < 0) {
		free(x->head);
		x->head = NULL;
		h->closing = true;
		rtls__http_error(c, 431, "request head too large to forward", x->head_req);
		return -1;
	}
	x->head_len = (size_t)len;
	/* The upstream's deadlines bound the wait from here; the client's
	 * idle timer comes back with the response (or its body bytes). */
	rtls_conn_set_timer(c, RTLS_TIMER_NONE);
	return connect_next(c, h, NULL) < 0 ? -1 : 0;
}

/* Request body bytes: forwarded as they came (chunked stays chunked).
 * Returns how many of p[0..n) belong to the body and were sent. */
static size_t body_input(rtls_conn *c, struct hconn *h, const char *p, size_t n)
{
	struct pexch *x = &h->x;
	size_t k = 0;

	if (x->req_left) {
		k = n < x->req_left ? n : (size_t)x->req_left;
		x->req_left -= k;
		x->req_done = !x->req_left;
	} else {
		int ret = rtls__http_chunked_feed(&x->req_chunk, p, n, &k, NULL);

		if (ret == RTLS_HTTP_PARSE_BAD) {
			fail(c, h, 400, "the client sent a malformed chunked body");
			return 0;
		}
		x->req_done = ret == 1;
	}
	if (k && rtls_conn_write(x->up, p, k) < 0) {
		fail(c, h, 502, "cannot queue the request body");
		return 0;
	}
	x->req_sent += k;
	return k;
}

size_t rtls__proxy_input(rtls_conn *c, struct hconn *h, const char *p, size_t n)
{
	struct pexch *x = &h->x;
	rtls_conn *u = x->up;
	size_t k;

	if (!u || x->wait_up_drain || x->st == PX_CONNECT || (x->req_done && x->st != PX_TUNNEL))
		return 0;
	if (x->st == PX_TUNNEL) {
		k = n;
		if (rtls_conn_write(u, p, n) < 0) {
			fail(c, h, 502, "cannot queue tunnel bytes");
			return 0;
		}
		rtls_conn_set_timer(c, RTLS_TIMER_IDLE); /* either way counts */
	} else {
		k = body_input(c, h, p, n);
		if (x->st == PX_NONE)
			return 0;
		if (k == n && !x->req_done && x->req_left && !x->req_fwd &&
		    rtls_conn_forward_n(c, u, x->req_left) == 0) {
			/* The rest comes by splice: on_forwarded ends it. The
			 * client's idle deadline bounds it alone (each chunk
			 * re-arms it once the upstream has taken it), as
			 * while the copying path holds its input for a slow
			 * upstream: the upstream's, re-armed by the same
			 * sends just before, would expire first when the
			 * client stalls, and a stalled upload is the
			 * client's 408, not a 504. */
			x->req_fwd = true;
			x->req_fwd0 = rtls_conn_forwarded(c);
			if (x->st == PX_HEAD)
				rtls_conn_set_timer(u, RTLS_TIMER_NONE);
		}
		/* A client that stops mid-body is cut off after the idle time;
		 * once the body is whole, the upstream's deadlines take over. */
		/* Once the response is flowing, the client's idle timer bounds
		 * its reading, so it stays. */
		if (!x->req_done || x->st == PX_BODY)
			rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
		else
			rtls_conn_set_timer(c, RTLS_TIMER_NONE);
		if (x->req_done && x->st == PX_HEAD)
			rtls_conn_set_timer(u, RTLS_TIMER_RESPONSE);
	}
	rtls_conn_flush(u); /* may end u, and with it the exchange */
	if (x->up == u && rtls_conn_pending(u) > PROXY_HIGH_WATER)
		x->wait_up_drain = true;
	return k;
}

void rtls__proxy_client_drained(rtls_conn *c, struct hconn *h)
{
	struct pexch *x = &h->x;

	(void)c;
	if (!x->wait_client_drain || !x->up)
		return;
	x->wait_client_drain = false;
	rtls_conn_set_timer(x->up, RTLS_TIMER_IDLE);
	rtls_conn_resume_read(x->up);
}

void rtls__proxy_client_gone(rtls_conn *c, struct hconn *h)
{
	(void)c;
	if (h->x.st == PX_NONE)
		return;
	/* 499, as nginx: the client left before its response head. */
	resp_fwd_fold(&h->x);
	rtls__alog_done(c, h, h->x.status ? h->x.status : 499, h->x.resp_bytes);
	release_up(h, rtls_conn_ctx(c), h->x.st == PX_TUNNEL ? UP_CLOSE : UP_ABORT);
	exch_clear(&h->x);
}

void rtls__proxy_client_timeout(rtls_conn *c, struct hconn *h)
{
	struct pexch *x = &h->x;
	char peer[64];

	if (x->st == PX_CONNECT || x->st == PX_HEAD) {
		/* Only a body still to come arms the client's timer here. */
		bool head = x->head_req;

		release_up(h, rtls_conn_ctx(c), UP_ABORT);
		exch_clear(x);
		h->closing = true;
		rtls__http_error(c, 408, "request body not received in time", head);
		return;
	}
	rtls_conn_peer(c, peer, sizeof(peer));
	rtls_log(RTLS_LOG_INFO, "http %s: peer idle for the idle time in a proxied %s: cut", peer,
		 x->st == PX_TUNNEL ? "tunnel" : "response");
	resp_fwd_fold(x);
	rtls__alog_done(c, h, x->status, x->resp_bytes);
	release_up(h, rtls_conn_ctx(c), x->st == PX_TUNNEL ? UP_CLOSE : UP_ABORT);
	exch_clear(x);
	h->closing = true;
	rtls_conn_abort(c, -ETIMEDOUT);
}

void rtls__proxy_client_forwarded(rtls_conn *c, struct hconn *h)
{
	struct pexch *x = &h->x;
	rtls_conn *u = x->up;

	if (!x->req_fwd || !u)
		return;
	x->req_fwd = false;
	body_spliced_log(c, "request", x->req_sent + x->req_left,
			 rtls_conn_forwarded(c) - x->req_fwd0);
	x->req_sent += x->req_left;
	x->req_left = 0;
	x->req_done = true;
	/* As rtls__proxy_input() once a body is whole: the upstream's
	 * response deadline, and the client's idle timer only while its
	 * response flows. */
	rtls_conn_set_timer(c, x->st == PX_BODY ? RTLS_TIMER_IDLE : RTLS_TIMER_NONE);
	if (x->st == PX_HEAD)
		rtls_conn_set_timer(u, RTLS_TIMER_RESPONSE);
}

/* ---- the response -------------------------------------------------------- */

/* Writes the response head for the client: the upstream's status line
 * and fields, less the hop-by-hop ones, with our Connection. */
static int client_head(rtls_conn *c, struct pexch *x, const struct rtls_http_response *r)
{
	size_t cap = 160 + r->reason.n;
	struct out o;
	char *buf, num[8];

	for (size_t i = 0; i < r->num_headers; i++)
		cap += r->headers[i].name.n + r->headers[i].value.n + 4;
	buf = rtls_conn_reserve(c, cap);
	if (!buf)
		return -ENOMEM;
	o = (struct out){ buf, buf + cap };
	snprintf(num, sizeof(num), "%d ", r->status);
	puts_(&o, "HTTP/1.1 ");
	puts_(&o, num);
	putv(&o, r->reason);
	puts_(&o, "\r\n");
	for (size_t i = 0; i < r->num_headers; i++) {
		const struct rtls_http_header *f = &r->headers[i];

		if (rtls__http_str_ieq(f->name, "upgrade") && r->status == 101) {
			/* kept: the client needs to see what it switched to */
		} else if (!rtls__proxy_forwarded_field(r->headers, r->num_headers, i)) {
			continue;
		}
		putv(&o, f->name);
		puts_(&o, ": ");
		putv(&o, f->value);
		puts_(&o, "\r\n");
	}
	if (x->rechunk)
		puts_(&o, "Transfer-Encoding: chunked\r\n");
	if (r->status == 101)
		puts_(&o, "Connection: upgrade\r\n");
	else if (r->status >= 200 && x->client_close)
		puts_(&o, "Connection: close\r\n");
	else if (r->status >= 200 && x->client10)
		puts_(&o, "Connection: keep-alive\r\n");
	puts_(&o, "\r\n");
	if (o.p > o.end) {
		rtls_conn_commit(c, 0);
		return -EOVERFLOW;
	}
	rtls_conn_commit(c, (size_t)(o.p - buf));
	return 0;
}

/* p[0..n) as one chunk of a chunked body (n > 0), or the last chunk
 * (n == 0): in one reservation, so it costs the copy a write would. */
static int write_chunk(rtls_conn *c, const char *p, size_t n)
{
	char *b = rtls_conn_reserve(c, n + 24);
	int len;

	if (!b)
		return -ENOMEM;
	len = sprintf(b, n ? "%zx\r\n" : "0\r\n", n);
	memcpy(b + len, p, n);
	b[(size_t)len + n] = '\r';
	b[(size_t)len + n + 1] = '\n';
	rtls_conn_commit(c, (size_t)len + n + 2);
	return 0;
}

/* Response body bytes for the client; returns how many belong to the
 * body. Bytes past its end are the upstream's fault: it is not reused. */
static size_t body_output(rtls_conn *c, struct hconn *h, const char *p, size_t n)
{
	struct pexch *x = &h->x;
	size_t k = n;
	uint64_t data = UINT64_MAX; /* a chunked body's data bytes */

	if (x->body == RTLS_HTTP_BODY_LENGTH) {
		k = n < x->resp_left ? n : (size_t)x->resp_left;
		x->resp_left -= k;
		x->resp_done = !x->resp_left;
	} else if (x->body == RTLS_HTTP_BODY_CHUNKED) {
		int ret = rtls__http_chunked_feed(&x->resp_chunk, p, n, &k, &data);

		if (ret == RTLS_HTTP_PARSE_BAD) {
			fail(c, h, 502, "malformed chunked response body");
			return 0;
		}
		x->resp_done = ret == 1;
	} else if (x->body == RTLS_HTTP_BODY_NONE) {
		k = 0;
		x->resp_done = true;
	}
	if (k < n)
		x->up_close = true;
	if (k && (x->rechunk ? write_chunk(c, p, k) : rtls_conn_write(c, p, k)) < 0) {
		fail(c, h, 502, "cannot queue the response");
		return 0;
	}
	x->resp_bytes += data != UINT64_MAX ? data : k;
	return k;
}

/* Does r carry a Transfer-Encoding field? */
static bool has_te(const struct rtls_http_response *r)
{
	for (size_t i = 0; i < r->num_headers; i++)
		if (rtls__http_str_ieq(r->headers[i].name, "transfer-encoding"))
			return true;
	return false;
}

/* A complete response head, with the body bytes that came after it in
 * the same read, p[0..n): judge it, pass it on. Returns 0, or -1 when the
 * exchange ended. */
/* A tunnel (after a 101) is bytes both ways: where the kernel handles a
 * direction's records (plaintext, kTLS), the engine splices it from now
 * on, and those bytes never pass through here (rtls_conn_forward()). What
 * either side sent before keeps its order: it is already queued. A
 * direction the engine cannot splice (userspace TLS, client input still
 * waiting in h->in) goes on through on_data. */
static void tunnel_forward(rtls_conn *c, struct hconn *h)
{
	rtls_conn *u = h->x.up;
	int down, up = -EBUSY;

	if (h->x.st != PX_TUNNEL || !u || h->gone)
		return;
	down = rtls_conn_forward(u, c);
	if (!h->in_len && h->x.up == u && !h->gone)
		up = rtls_conn_forward(c, u);
	rtls_log(RTLS_LOG_DEBUG,
		 "proxy: tunnel spliced upstream to client: %s, client to upstream: %s",
		 down ? strerror(-down) : "yes", up ? strerror(-up) : "yes");
}

static int response_head(rtls_conn *c, struct hconn *h, const struct rtls_http_response *r,
			 const char *p, size_t n)
{
	struct pexch *x = &h->x;
	struct rtls_http_framing fr;
	const char *why = NULL;

	if (r->status >= 100 && r->status < 200 && r->status != 101) {
		/* Interim (100 Continue, 103): relayed to an HTTP/1.1 client
		 * (RFC 9110 §15.2); the final response follows. */
		if (!x->client10 && client_head(c, x, r) < 0) {
			fail(c, h, 502, "cannot queue an interim response");
			return -1;
		}
		rtls_conn_flush(c);
		return x->st == PX_HEAD ? 0 : -1;
	}
	if (rtls__http_response_framing(r, x->head_req, &fr, &why) < 0) {
		fail(c, h, 502, why ? why : "invalid response framing");
		return -1;
	}
	if (r->status == 101 && !x->upgrade) {
		fail(c, h, 502, "101 to a request that asked for no upgrade");
		return -1;
	}
	if (fr.body == RTLS_HTTP_BODY_CHUNKED && x->client10) {
		fail(c, h, 502, "chunked response to an HTTP/1.0 request");
		return -1;
	}
	if (fr.body == RTLS_HTTP_BODY_CHUNKED && n) {
		/* What came with the head is judged before the head goes out:
		 * a bad chunk found now can still be a 502 (as request.c does
		 * for the chunks that come with a request head). */
		struct rtls_http_chunked ch = { 0, 0, 0 };
		size_t used;

		if (rtls__http_chunked_feed(&ch, p, n, &used, NULL) == RTLS_HTTP_PARSE_BAD) {
			fail(c, h, 502, "malformed chunked response body");
			return -1;
		}
	}
	x->body = (int)fr.body;
	x->status = r->status;
	x->resp_left = fr.length;
	x->up_close = fr.close;
	if (fr.body == RTLS_HTTP_BODY_CLOSE && !x->client10 && !has_te(r)) {
		/* Its end is the upstream's close: re-framed as chunked, the
		 * client can tell a whole body from a cut one (a missing last
		 * chunk), and keep its connection. */
		x->rechunk = true;
	} else if (fr.body == RTLS_HTTP_BODY_CLOSE) {
		x->client_close = true; /* the end of the body is our close */
	}
	if (client_head(c, x, r) < 0) {
		fail(c, h, 502, "response head too large to pass on");
		return -1;
	}
	if (h->gone) /* the commit failed for memory: c was aborted */
		return -1;
	rtls__http_count_status(c, r->status);
	x->st = r->status == 101 ? PX_TUNNEL : PX_BODY;
	free(x->head);
	x->head = NULL;
	x->resp_done =
		fr.body == RTLS_HTTP_BODY_NONE || (fr.body == RTLS_HTTP_BODY_LENGTH && !fr.length);
	/* From here a stalled upstream is cut after the idle time; the
	 * client's idle timer runs while its response is sent. */
	rtls_conn_set_timer(x->up, RTLS_TIMER_IDLE);
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	if (x->st == PX_TUNNEL) {
		rtls__alog_done(c, h, 101, 0); /* the response is its head */
		rtls__http_resume(c, h);       /* what the client sent before the 101 */
		tunnel_forward(c, h);
	}
	return x->st == PX_NONE ? -1 : 0;
}

long rtls__proxy_head_feed(char **rin, size_t *rin_len, const char *p, size_t n,
			   const struct rtls_http_limits *lim, struct rtls_http_response *r)
{
	const char *buf = p;
	size_t len = n, from_rin = 0;
	int ret;

	if (*rin_len) { /* a head split across reads */
		size_t take = n < PROXY_MAX_RESP_HEAD + 1 - *rin_len
				      ? n
				      : PROXY_MAX_RESP_HEAD + 1 - *rin_len;

		memcpy(*rin + *rin_len, p, take);
		from_rin = *rin_len;
		*rin_len += take;
		buf = *rin;
		len = *rin_len;
	}
	ret = rtls__http_parse_response(buf, len, lim, r);
	if (ret == RTLS_HTTP_PARSE_INCOMPLETE) {
		if (!*rin && !(*rin = malloc(PROXY_MAX_RESP_HEAD + 1)))
			return -ENOMEM;
		if (!from_rin && !*rin_len) {
			memcpy(*rin, p, n);
			*rin_len = n;
		}
		return 0;
	}
	if (ret < 0)
		return ret;
	*rin_len = 0;
	return (long)((size_t)ret - from_rin);
}

const char *rtls__proxy_head_error(long err)
{
	return err == -ENOMEM                             ? "out of memory for the response head"
	       : err == RTLS_HTTP_PARSE_HEADERS_TOO_LARGE ? "response head too large"
	       : err == RTLS_HTTP_PARSE_BAD_VERSION       ? "not an HTTP/1.x response"
							  : "malformed response head";
}

/* Upstream bytes: the response head (accumulated in x->rin when it spans
 * reads), then the body. */
static void response_input(rtls_conn *c, struct hconn *h, const char *p, size_t n)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	struct rtls_http_limits lim = { PROXY_MAX_RESP_HEAD, 0, hc->max_headers };
	struct rtls_http_header hdrs[HTTP_MAX_HEADERS];
	struct pexch *x = &h->x;

	while (x->st == PX_HEAD && n) {
		struct rtls_http_response r = { .headers = hdrs };
		long ret = rtls__proxy_head_feed(&x->rin, &x->rin_len, p, n, &lim, &r);

		if (ret == 0)
			return;
		if (ret < 0) {
			fail(c, h, 502, rtls__proxy_head_error(ret));
			return;
		}
		/* What of this read the head took; the rest is body. */
		p += ret;
		n -= (size_t)ret;
		if (response_head(c, h, &r, p, n) < 0)
			return;
	}
	if (x->st == PX_TUNNEL && n) {
		if (rtls_conn_write(c, p, n) < 0)
			fail(c, h, 502, "cannot queue tunnel bytes");
		return;
	}
	if (x->st == PX_BODY && (n || x->resp_done))
		body_output(c, h, p, n);
}

/* ---- the upstream connections' handler ----------------------------------- */

static int up_open(rtls_conn *u, void *data)
{
	struct uconn *ud = data;

	ud->opened = true;
	if (ud->stream) {
		rtls__h2px_up_open(u, ud);
		return 0;
	}
	if (!ud->client)
		return -ECANCELED;
	send_head(ud->client, rtls_conn_data(ud->client));
	return 0;
}

static void up_data(rtls_conn *u, void *data, struct rtls_buf *b)
{
	struct uconn *ud = data;
	rtls_conn *c = ud->client;
	struct hconn *h;

	if (!c) { /* an idle connection has nothing to say */
		rtls_buf_release(u, b);
		rtls__pool_remove(ud);
		rtls_conn_abort(u, -EPROTO);
		return;
	}
	if (ud->stream) {
		rtls__h2px_up_data(u, ud, b);
		return;
	}
	h = rtls_conn_data(c);
	if (h->x.st == PX_BODY || h->x.st == PX_TUNNEL)
		rtls_conn_set_timer(u, RTLS_TIMER_IDLE);
	response_input(c, h, b->data, b->len);
	rtls_buf_release(u, b);
	if (h->x.up != u)
		return;
	if (h->x.st == PX_BODY && h->x.resp_done) {
		rtls_conn_flush(c);
		if (h->x.st == PX_BODY)
			finish(c, h);
		return;
	}
	if (h->x.st == PX_BODY && h->x.body == RTLS_HTTP_BODY_LENGTH && h->x.resp_left &&
	    !h->x.resp_fwd && rtls_conn_forward_n(u, c, h->x.resp_left) == 0) {
		/* All of this read was body (else resp_done): the rest
		 * comes by splice, at the client's pace. */
		h->x.resp_fwd = true;
		h->x.resp_fwd0 = rtls_conn_forwarded(u);
		rtls_conn_flush(c);
		return;
	}
	rtls_conn_flush(c);
	if (h->x.up == u && rtls_conn_pending(c) > PROXY_HIGH_WATER) {
		h->x.wait_client_drain = true;
		rtls_conn_set_timer(u, RTLS_TIMER_NONE); /* the client's timer runs */
		rtls_conn_pause_read(u);
	}
}

static void up_forwarded(rtls_conn *u, void *data)
{
	struct uconn *ud = data;
	rtls_conn *c = ud->client;
	struct hconn *h;
	struct pexch *x;

	if (!c || ud->stream) /* HTTP/2 bodies are framed: never forwarded */
		return;
	h = rtls_conn_data(c);
	x = &h->x;
	if (!x->resp_fwd || x->up != u || x->st != PX_BODY)
		return;
	x->resp_fwd = false;
	body_spliced_log(c, "response", x->resp_bytes + x->resp_left,
			 rtls_conn_forwarded(u) - x->resp_fwd0);
	x->resp_bytes += x->resp_left;
	x->resp_left = 0;
	x->resp_done = true;
	finish(c, h); /* u reads the ordinary way again: it may be pooled */
}

/* May this request go again, on a new connection? Only if nothing of it
 * can have been acted on: not a byte of body sent, and either the
 * connect failed or a reused connection closed before answering an
 * idempotent request (RFC 9110 §9.2.2). */
static bool retriable(const struct pexch *x)
{
	if (x->tries >= 2 || x->req_sent || x->req_fwd)
		return false;
	return x->st == PX_CONNECT ||
	       (x->st == PX_HEAD && x->reused && x->idempotent && !x->rin_len);
}

static void up_eof(rtls_conn *u, void *data)
{
	struct uconn *ud = data;
	rtls_conn *c = ud->client;
	struct hconn *h;

	if (!c) {
		rtls__pool_remove(ud); /* closing: never to be handed out */
		rtls_conn_close(u);
		return;
	}
	if (ud->stream) {
		rtls__h2px_up_eof(u, ud);
		return;
	}
	h = rtls_conn_data(c);
	switch (h->x.st) {
	case PX_BODY:
		if (h->x.body == RTLS_HTTP_BODY_CLOSE) {
			h->x.up_close = true;
			if (h->x.rechunk && write_chunk(c, "", 0) < 0) {
				fail(c, h, 502, "cannot queue the response");
				return;
			}
			rtls_conn_flush(c);
			if (h->x.st == PX_BODY)
				finish(c, h);
		} else {
			fail(c, h, 502, "closed mid-body");
		}
		return;
	case PX_TUNNEL:
		release_up(h, rtls_conn_ctx(c), UP_CLOSE);
		exch_clear(&h->x);
		h->closing = true;
		rtls_conn_close(c);
		return;
	default:
		if (retriable(&h->x)) {
			release_up(h, rtls_conn_ctx(c), UP_ABORT);
			connect_next(c, h, NULL);
			return;
		}
		fail(c, h, 502, "closed before the response head");
	}
}

static void up_timeout(rtls_conn *u, void *data, enum rtls_timer t)
{
	struct uconn *ud = data;
	rtls_conn *c = ud->client;

	if (!c) {
		rtls__pool_remove(ud);
		rtls_conn_close(u);
		return;
	}
	if (ud->stream) {
		rtls__h2px_up_timeout(u, ud, t);
		return;
	}
	if (t == RTLS_TIMER_RESPONSE)
		fail(c, rtls_conn_data(c), 504, "no response head in time");
	else
		fail(c, rtls_conn_data(c), 504, "stalled for the idle time");
}

static int up_shutdown(rtls_conn *u, void *data)
{
	struct uconn *ud = data;

	(void)u;
	if (ud->client)
		return 0; /* its client closes it when its exchange is done */
	rtls__pool_remove(ud);
	return 1;
}

static void up_close(rtls_conn *u, void *data, int err)
{
	struct uconn *ud = data;
	rtls_conn *c = ud->client;
	struct hconn *h;
	char what[96];

	rtls__pool_remove(ud);
	if (!c)
		return;
	if (ud->stream) {
		rtls__h2px_up_close(u, ud, err);
		return;
	}
	ud->client = NULL;
	h = rtls_conn_data(c);
	resp_fwd_fold(&h->x);
	h->x.up = NULL;
	if (h->x.st == PX_CONNECT) {
		/* Passive health: a server that refuses or does not answer is
		 * skipped for a while, by every thread. */
		if ((err == -ECONNREFUSED || err == -ETIMEDOUT || err == -EHOSTUNREACH ||
		     err == -ENETUNREACH) &&
		    rtls__proxy_mark_down(h->x.srv))
			rtls_log(RTLS_LOG_WARN, "upstream %s: connect: %s: marked down for 10 s",
				 h->x.srv->name, strerror(-err));
		if (retriable(&h->x) && h->x.route->nups > 1) {
			connect_next(c, h, h->x.srv);
			return;
		}
		if (err == -EKEYREJECTED || err == -EPROTO) /* rtls_conn_connect_tls() */
			snprintf(what, sizeof(what), "TLS handshake failed%s",
				 err == -EKEYREJECTED ? ": certificate not accepted" : "");
		else
			snprintf(what, sizeof(what), "connect: %s",
				 strerror(err ? -err : ECONNABORTED));
		fail(c, h, err == -ETIMEDOUT ? 504 : 502, what);
		return;
	}
	if (h->x.st == PX_HEAD && retriable(&h->x)) {
		connect_next(c, h, NULL);
		return;
	}
	if (h->x.st == PX_TUNNEL) {
		exch_clear(&h->x);
		h->closing = true;
		rtls_conn_close(c);
		return;
	}
	snprintf(what, sizeof(what), "%s", err ? strerror(-err) : "closed");
	fail(c, h, 502, what);
}

static void up_drained(rtls_conn *u, void *data)
{
	struct uconn *ud = data;
	struct hconn *h;

	if (!ud->client)
		return;
	if (ud->stream) {
		rtls__h2px_up_drained(u, ud);
		return;
	}
	h = rtls_conn_data(ud->client);
	if (!h->x.wait_up_drain || h->x.up != u)
		return;
	h->x.wait_up_drain = false;
	rtls__http_resume(ud->client, h);
}

const struct rtls_handler rtls__upstream_handler = {
	.conn_data_size = sizeof(struct uconn),
	.on_open = up_open,
	.on_data = up_data,
	.on_eof = up_eof,
	.on_drained = up_drained,
	.on_timeout = up_timeout,
	.on_shutdown = up_shutdown,
	.on_close = up_close,
	.on_forwarded = up_forwarded,
};
