/* HTTP/1.1 connections: input buffering, the request loop, keep-alive,
 * pipelining, deadlines. Requests are answered in order as they are parsed;
 * all responses produced from one read leave in one flush. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Stop parsing pipelined requests while this much output is queued. */
#define OUTPUT_HIGH_WATER ((size_t)256 * 1024)

void rtls_http_config_defaults(struct rtls_http_config *hc)
{
	memset(hc, 0, sizeof(*hc));
	hc->root_fd = -1;
	hc->max_head = 8192;
	/* RFC 9112 §3 recommends request lines of at least 8000 octets.
	 * Below max_head, so an over-long target is 414, not 431. */
	hc->max_target = 8000;
	hc->max_headers = 100;
	hc->max_body = 1u << 20;
	hc->proxy_keepalive = 64;
	hc->admin_listener = -1;
	hc->http2 = true;
}

int rtls_http_config_open(struct rtls_http_config *hc)
{
	struct stat st;

	if (!hc->root)
		return 0;
	hc->root_fd = open(hc->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (hc->root_fd < 0)
		return -errno;
	if (fstat(hc->root_fd, &st) < 0)
		return -errno;
	/* O_PATH opens without any permission: a root this user cannot
	 * search would start and then answer every request with 403. */
	if (faccessat(hc->root_fd, ".", X_OK, AT_EACCESS) < 0)
		return -errno;
	return 0;
}

static int in_append(struct hconn *h, const char *p, size_t n)
{
	if (h->in_len + n > h->in_cap) {
		size_t cap = h->in_cap ? h->in_cap : 1024;
		char *q;

		while (cap < h->in_len + n)
			cap *= 2;
		q = realloc(h->in, cap);
		if (!q)
			return -ENOMEM;
		h->in = q;
		h->in_cap = cap;
	}
	memcpy(h->in + h->in_len, p, n);
	h->in_len += n;
	return 0;
}

/* Skips request body bytes; returns bytes consumed, -1 if malformed,
 * -2 if a chunked body grows past max_body. */
static long skip_body(struct hconn *h, const struct rtls_http_config *hc, const char *p, size_t n)
{
	size_t used = 0;
	uint64_t data = 0;

	if (h->body_left) {
		used = n < h->body_left ? n : (size_t)h->body_left;
		h->body_left -= used;
		return (long)used;
	}
	if (h->in_chunked) {
		int ret = rtls__http_chunked_feed(&h->chunk, p, n, &used, &data);

		if (ret == RTLS_HTTP_PARSE_BAD)
			return -1;
		h->chunked_seen += data;
		if (h->chunked_seen > hc->max_body)
			return -2;
		if (ret == 1)
			h->in_chunked = false;
	}
	return (long)used;
}

int rtls__http_request(rtls_conn *c, struct hconn *h, const struct rtls_http_config *hc,
		       const char *p, size_t n, struct rtls_http_header *hdrs);

/* A body went wrong after its request was answered (what came with the
 * head was checked before that, in request.c). A 400 or 413 now would
 * answer no request: a client that pipelined would take it as the answer
 * to its next one. So: no response, one log line, and the connection
 * closes once what is queued has gone. */
static void drop_body(rtls_conn *c, struct hconn *h, const char *why)
{
	char peer[64];

	rtls_conn_peer(c, peer, sizeof(peer));
	rtls_log(RTLS_LOG_INFO, "http %s: %s after the response: connection closed", peer, why);
	h->closing = true;
}

/* Parses and answers as many requests as p[0..n) holds. Returns the bytes
 * consumed; the caller keeps the rest for later. */
static size_t process(rtls_conn *c, struct hconn *h, const char *p, size_t n)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	struct rtls_http_header hdrs[HTTP_MAX_HEADERS];
	size_t off = 0;

	/* A resume asked for by a callback nested in here (an upstream that
	 * opened, drained or ended) waits until this loop is done: it would
	 * parse h->in under it (rtls__http_resume). */
	h->busy = true;
	while (off < n && !h->closing) {
		if (h->x.st != PX_NONE) {
			/* A proxied request's body (or tunnel) goes upstream;
			 * a pipelined request waits for its response. */
			size_t k = rtls__proxy_input(c, h, p + off, n - off);

			off += k;
			if (k == 0 || h->x.st == PX_NONE)
				break;
			continue;
		}
		if (h->body_left || h->in_chunked) {
			long k = skip_body(h, hc, p + off, n - off);

			if (k < 0) {
				drop_body(c, h, k == -2 ? "request body too large"
							: "malformed chunked body");
				break;
			}
			off += (size_t)k;
			continue;
		}
		if (rtls_conn_pending(c) > OUTPUT_HIGH_WATER) {
			h->wait_drain = true;
			break;
		}
		int ret = rtls__http_request(c, h, hc, p + off, n - off, hdrs);
		if (ret != 0)
			h->h1 = true; /* no HTTP/2 preface from now on */
		if (ret == 0) {
			/* Incomplete head: one deadline for all of it. */
			if (!h->head_timer) {
				h->head_timer = true;
				rtls_conn_set_timer(c, RTLS_TIMER_HEADER);
			}
			break;
		}
		if (ret < 0)
			break; /* error answered, connection closing */
		off += (size_t)ret;
		h->head_timer = false;
	}
	h->busy = false;
	return off;
}

/* Runs the request loop over the buffered input, then flushes once. */
static void run(rtls_conn *c, struct hconn *h)
{
	size_t used = process(c, h, h->in, h->in_len);

	if (h->gone) /* on_close freed h->in */
		return;
	if (used) {
		memmove(h->in, h->in + used, h->in_len - used);
		h->in_len -= used;
	}
	if (!h->in_len) {
		free(h->in);
		h->in = NULL;
		h->in_cap = 0;
	}
}

static void after_input(rtls_conn *c, struct hconn *h)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);

	if (h->closing) {
		rtls_conn_close(c);
		return;
	}
	rtls_conn_flush(c);
	if (h->x.st != PX_NONE) {
		/* Input held back waits for the exchange: read no more. */
		if (h->in_len)
			rtls_conn_pause_read(c);
		return;
	}
	/* The idle timer also bounds a stalled send: the engine re-arms it
	 * on every bit of progress, so only a peer that stops reading for the
	 * whole idle time is cut off. */
	if (!h->head_timer && !h->in_len && !h->body_left && !h->in_chunked)
		rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	/* A peer that pipelines faster than it reads gets paused. */
	if (h->in_len > hc->max_head * 4)
		rtls_conn_pause_read(c);
	if (h->shutting && !h->in_len && !rtls_conn_pending(c))
		rtls_conn_close(c);
}

/* A connection's first bytes. On TLS, ALPN has decided (on_open): "h2"
 * is HTTP/2 from the first byte (nghttp2 judges the preface), anything
 * else HTTP/1.x. On plaintext, HTTP/2's preface makes it HTTP/2 (prior
 * knowledge), anything else HTTP/1.x. 1 if they made it HTTP/2 (b is
 * then used up), -1 if HTTP/1.x has run over b already, 0 if HTTP/1.x
 * goes on with b. */
static int maybe_h2(rtls_conn *c, struct hconn *h, struct rtls_buf *b)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	int pre;

	if (!hc->http2 || h->h1 || h->x.st != PX_NONE || h->tls_alpn == TLS_ALPN_H1)
		return 0;
	if (h->tls_alpn == TLS_ALPN_H2) {
		if (rtls__h2_start(c, h, b->data, b->len) == 0)
			goto started;
		goto fail;
	}
	if (!h->in_len) {
		pre = rtls__h2_preface(b->data, b->len);
		if (pre == 0)
			return 0;
		if (pre > 0 && rtls__h2_start(c, h, b->data, b->len) == 0)
			goto started;
	} else {
		/* A preface that came in pieces was kept in h->in. */
		if (in_append(h, b->data, b->len) < 0)
			goto fail;
		pre = rtls__h2_preface(h->in, h->in_len);
		if (pre == 0) {
			/* Not one after all: HTTP/1.x parses what was kept. */
			run(c, h);
			return -1;
		}
		if (pre > 0) {
			int ret = rtls__h2_start(c, h, h->in, h->in_len);

			free(h->in);
			h->in = NULL;
			h->in_len = h->in_cap = 0;
			if (ret == 0)
				goto started;
			goto fail;
		}
		return 1; /* still too short to tell */
	}
	if (pre < 0 && in_append(h, b->data, b->len) == 0)
		return 1;
started:
	/* A shutdown that came while the preface was still arriving. */
	if (h->shutting && h->h2)
		rtls__h2_shutdown(c, h);
	return 1;
fail:
	rtls_log(RTLS_LOG_WARN, "http2: out of memory starting a connection");
	rtls_conn_abort(c, -ENOMEM);
	return 1;
}

static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	struct hconn *h = data;
	int h2;

	if (h->h2) {
		rtls__h2_input(c, h, b->data, b->len);
		rtls_buf_release(c, b);
		return;
	}
	h2 = maybe_h2(c, h, b);
	if (h2 > 0) {
		rtls_buf_release(c, b);
		return;
	}
	if (h2 < 0) {
		/* maybe_h2() appended b and ran HTTP/1.x over it. */
	} else if (h->in_len == 0 && !h->wait_drain) {
		/* Fast path: parse in the receive buffer, keep only a tail. */
		size_t used = process(c, h, b->data, b->len);

		if (used < b->len && !h->closing && !h->gone &&
		    in_append(h, b->data + used, b->len - used) < 0)
			h->closing = true;
	} else if (in_append(h, b->data, b->len) < 0) {
		h->closing = true;
	} else if (!h->wait_drain) {
		run(c, h);
	}
	rtls_buf_release(c, b);
	after_input(c, h);
	if (h->again && !h->gone)
		rtls__http_resume(c, h);
}

void rtls__http_resume(rtls_conn *c, struct hconn *h)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);

	if (h->gone)
		return;
	if (h->busy) {
		h->again = true;
		return;
	}
	do {
		h->again = false;
		run(c, h);
		after_input(c, h);
		if (h->gone || h->closing)
			return;
	} while (h->again);
	/* Input held for an exchange, a pipelining flood, or output over
	 * its high water keep reading paused (after_input, process). */
	if (h->wait_drain || (h->in_len && (h->x.st != PX_NONE || h->in_len > hc->max_head * 4)))
		return;
	if (h->eof && h->x.st == PX_NONE) {
		rtls_conn_close(c);
		return;
	}
	rtls_conn_resume_read(c);
}

static void on_drained(rtls_conn *c, void *data)
{
	struct hconn *h = data;

	if (h->h2) {
		rtls__h2_drained(c, h);
		return;
	}
	if (h->x.st != PX_NONE) {
		rtls__proxy_client_drained(c, h);
		return;
	}

	if (!h->wait_drain)
		goto idle;
	h->wait_drain = false;
	rtls_conn_resume_read(c);
	run(c, h);
	after_input(c, h);
	if (h->again && !h->gone)
		rtls__http_resume(c, h);
	if (h->eof && !h->wait_drain)
		rtls_conn_close(c);
	return;
idle:
	if (h->shutting && !h->in_len)
		rtls_conn_close(c);
	else if (!h->head_timer && !h->in_len && !h->body_left && !h->in_chunked)
		rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
}

static void on_eof(rtls_conn *c, void *data)
{
	struct hconn *h = data;

	h->eof = true;
	if (h->h2) {
		rtls__h2_eof(c, h);
		return;
	}
	/* Complete requests were answered as they arrived; a partial head
	 * left now can never complete. Finish sending, then close; a
	 * proxied response still to come closes when it is done. */
	if (h->x.st == PX_TUNNEL) {
		rtls__proxy_client_gone(c, h); /* the upstream closes too */
		h->closing = true;
		rtls_conn_close(c);
		return;
	}
	if (h->x.st != PX_NONE && !h->x.req_done) {
		/* The body it promised will not come: the upstream would wait
		 * for it until its deadline. */
		char peer[64];

		rtls__proxy_client_gone(c, h);
		rtls_conn_peer(c, peer, sizeof(peer));
		rtls_log(RTLS_LOG_INFO, "http %s: client closed mid-body: proxied request dropped",
			 peer);
		h->closing = true;
		rtls_conn_close(c);
		return;
	}
	if (!h->wait_drain && h->x.st == PX_NONE)
		rtls_conn_close(c);
}

static void on_timeout(rtls_conn *c, void *data, enum rtls_timer t)
{
	struct hconn *h = data;

	if (h->h2) {
		rtls__h2_timeout(c, h, t);
		return;
	}
	if (h->x.st != PX_NONE) {
		rtls__proxy_client_timeout(c, h);
		return;
	}
	if (t == RTLS_TIMER_HEADER && h->in_len) {
		const struct rtls_http_config *hc = rtls_conn_ctx(c);

		if (hc->alog) /* the line says what of the head came */
			rtls__alog_begin(h, h->in, h->in_len, NULL);
		h->closing = true;
		rtls__http_error(c, 408, "request head not received in time", false);
		return;
	}
	if (rtls_conn_pending(c)) {
		rtls_log(RTLS_LOG_INFO, "http: peer stopped reading for the idle time: connection cut");
		rtls_conn_abort(c, -ETIMEDOUT);
		return;
	}
	rtls_conn_close(c);
}

static int on_shutdown(rtls_conn *c, void *data)
{
	struct hconn *h = data;

	h->shutting = true;
	if (h->h2)
		return rtls__h2_shutdown(c, h);
	if (h->x.st != PX_NONE) {
		h->x.client_close = true;
		return 0;
	}
	return !h->in_len && !rtls_conn_pending(c) && !h->wait_drain;
}

static int on_open(rtls_conn *c, void *data)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	struct rtls_conn_info ci;
	int ret;

	/* Which listener, asked once and only where it matters: the query
	 * costs two system calls (getpeername, getsockname). */
	if (hc->ntcp || hc->admin_listener >= 0) {
		rtls_conn_query(c, &ci);
		if (rtls__tcp_open(c, ci.listener, &ret)) /* a --tcp-proxy listener's */
			return ret;
		((struct hconn *)data)->admin = rtls__http_is_admin(hc, ci.listener);
	}
	if (hc->http2) {
		const char *alpn = rtls_conn_alpn(c);

		if (alpn)
			((struct hconn *)data)->tls_alpn =
				strcmp(alpn, "h2") == 0 ? TLS_ALPN_H2 : TLS_ALPN_H1;
	}
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	return 0;
}

static void on_forwarded(rtls_conn *c, void *data)
{
	rtls__proxy_client_forwarded(c, data);
}

static void on_close(rtls_conn *c, void *data, int err)
{
	struct hconn *h = data;

	(void)err;
	h->gone = true;
	rtls__h2_close(h);
	rtls__proxy_client_gone(c, h);
	rtls__alog_forget(h);
	free(h->in);
	h->in = NULL;
	h->in_len = h->in_cap = 0;
}

/* The upstream connections of the proxy take their slots, and data
 * areas, from the same server. */
#define DATA_SIZE \
	(sizeof(struct hconn) > sizeof(struct uconn) ? sizeof(struct hconn) : sizeof(struct uconn))
/* So do the TCP proxy's, whose accepted connections are handed over. */
_Static_assert(sizeof(struct tside) <= DATA_SIZE, "a TCP proxy side fits the data area");

const struct rtls_handler rtls_http_handler = {
	.conn_data_size = DATA_SIZE,
	.on_open = on_open,
	.on_data = on_data,
	.on_eof = on_eof,
	.on_drained = on_drained,
	.on_timeout = on_timeout,
	.on_shutdown = on_shutdown,
	.on_close = on_close,
	.on_forwarded = on_forwarded,
};
