/* HTTP/2 (RFC 9113) on a connection, with libnghttp2 doing the framing,
 * HPACK and flow control. A request is judged and answered by the same
 * code as an HTTP/1.1 one (request.c rtls__http_dispatch): while a stream
 * is answered, h2->cur is the response sink that response.c writes to.
 * Its body leaves as DATA frames that nghttp2 does not copy
 * (NGHTTP2_DATA_FLAG_NO_COPY): the 9-byte frame head goes into the
 * output queue and the payload after it, a file range straight from the
 * page cache (spliced under kTLS, read and sealed on the userspace path).
 * Every frame one input produces leaves in one flush. DESIGN.md "HTTP/2". */
#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h2_int.h"
#include "internal.h"
#include "static_util.h"

#define H2_MAX_STREAMS 100
/* The connection's receive window where proxied streams give theirs
 * back by hand: 16 streams' worth. What the client may have sent and we
 * have not passed upstream is bounded by it. */
#define H2_CONN_WINDOW (16 * 65535)
/* File DATA frames shorter than this are copied into the output queue;
 * longer ones hold a duplicate descriptor until sent. With H2_HIGH_WATER
 * that bounds the duplicates one connection holds to 64 (+ the streams'
 * own descriptors), whatever frame sizes the client's windows make. */
#define H2_COPY_BELOW 4096u
/* A header list decoded past this many times the limit is an attack (an
 * HPACK bomb), not a big request: the connection ends. Under it, the
 * stream gets a 431. */
#define H2_BOMB_FACTOR 4

int rtls__h2_preface(const char *p, size_t n)
{
	size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;

	if (memcmp(p, H2_PREFACE, k) != 0)
		return 0;
	return n >= H2_PREFACE_LEN ? 1 : -1;
}

void rtls__h2_log(struct h2conn *x, enum rtls_log_level lv, const char *what)
{
	char peer[64];

	rtls_conn_peer(x->c, peer, sizeof(peer));
	rtls_log(lv, "http2 %s: %s", peer, what);
}

/* --- streams --- */

/* What a stream holds, freed; live false when the session itself is
 * going. */
static void stream_release(struct h2conn *x, struct h2s *st, bool live)
{
	if (st->px)
		rtls__h2px_release(x, st, live);
	if (st->fd >= 0)
		close(st->fd);
	free(st->hb);
	free(st->f);
	free(st->rh);
	free(st->body);
	free(st);
}

static void stream_free(struct h2conn *x, struct h2s *st)
{
	if (x->cur == st)
		x->cur = NULL;
	if (st->in_head)
		x->heads--;
	if (st->prev)
		st->prev->next = st->next;
	else
		x->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	stream_release(x, st, true);
}

static int hb_put(struct h2s *st, const uint8_t *p, size_t n, uint32_t *off)
{
	if (st->hb_len + n > st->hb_cap) {
		size_t cap = st->hb_cap ? st->hb_cap : 256;
		char *q;

		while (cap < st->hb_len + n)
			cap *= 2;
		q = realloc(st->hb, cap);
		if (!q)
			return -ENOMEM;
		st->hb = q;
		st->hb_cap = cap;
	}
	memcpy(st->hb + st->hb_len, p, n);
	*off = (uint32_t)st->hb_len;
	st->hb_len += n;
	return 0;
}

static struct rtls_http_str field(const struct h2s *st, uint32_t o, uint32_t n)
{
	return (struct rtls_http_str){ st->hb + o, n };
}

/* --- nghttp2's callbacks --- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *p, size_t n, int flags, void *arg)
{
	struct h2conn *x = arg;

	(void)s;
	(void)flags;
	if (rtls_conn_write(x->c, p, n) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)n;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
	struct h2conn *x = arg;
	struct h2s *st;

	if (fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (fr->headers.cat != NGHTTP2_HCAT_REQUEST) {
		/* Trailers: bounded by the HEADER deadline too. */
		st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
		if (st && !st->in_head) {
			st->in_head = true;
			x->heads++;
		}
		return 0;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
	st->id = fr->hd.stream_id;
	st->fd = -1;
	st->in_head = true;
	x->heads++;
	st->next = x->streams;
	if (x->streams)
		x->streams->prev = st;
	x->streams = st;
	nghttp2_session_set_stream_user_data(s, st->id, st);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *arg)
{
	struct h2conn *x = arg;
	const struct rtls_http_config *hc = rtls_conn_ctx(x->c);
	struct h2s *st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	struct h2f f = { 0 };

	(void)flags;
	if (!st || st->answered || fr->hd.type != NGHTTP2_HEADERS ||
	    fr->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* trailers: nothing we act on */
	st->seen += nl + vl + 32;
	if (st->seen > (uint64_t)hc->max_head * H2_BOMB_FACTOR) {
		/* Decoding goes on for as long as the frames do; stop it. The
		 * GOAWAY's log line says why (on_frame_send). */
		snprintf(x->why, sizeof(x->why),
			 "header list far over --max-header-bytes (HPACK bomb?)");
		nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
		x->goaway = x->terminated = true;
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (st->too_big || st->seen > hc->max_head || st->nf >= hc->max_headers ||
	    st->nf >= HTTP_MAX_HEADERS) {
		st->too_big = true; /* answered with 431 at the end of the block */
		return 0;
	}
	if (hb_put(st, name, nl, &f.no) < 0 || hb_put(st, value, vl, &f.vo) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	f.nl = (uint32_t)nl;
	f.vl = (uint32_t)vl;
	/* nghttp2 has checked the pseudo-headers (RFC 9113 §8.3): known,
	 * once each, before the others. */
	if (nl && name[0] == ':') {
		if (nl == 7 && memcmp(name, ":method", 7) == 0)
			st->method = f;
		else if (nl == 5 && memcmp(name, ":path", 5) == 0)
			st->path = f;
		else if (nl == 10 && memcmp(name, ":authority", 10) == 0)
			st->authority = f;
		return 0;
	}
	if (st->nf == st->fcap) {
		unsigned cap = st->fcap ? st->fcap * 2 : 16;
		struct h2f *q = realloc(st->f, cap * sizeof(*q));

		if (!q)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		st->f = q;
		st->fcap = cap;
	}
	st->f[st->nf++] = f;
	return 0;
}

/* The request line the access log shows: "METHOD PATH HTTP/2.0", laid
 * out as an HTTP/1.1 parser would leave it (accesslog.c reads it so). */
static int request_line(struct h2s *st, struct rtls_http_request *r)
{
	uint32_t mo, po, sp;
	size_t need = st->hb_len + st->method.vl + st->path.vl + 10;

	/* Room first: the copies below read from hb itself. */
	if (need > st->hb_cap) {
		char *q = realloc(st->hb, need);

		if (!q)
			return -ENOMEM;
		st->hb = q;
		st->hb_cap = need;
	}
	if (hb_put(st, (const uint8_t *)st->hb + st->method.vo, st->method.vl, &mo) < 0 ||
	    hb_put(st, (const uint8_t *)" ", 1, &sp) < 0 ||
	    hb_put(st, (const uint8_t *)st->hb + st->path.vo, st->path.vl, &po) < 0 ||
	    hb_put(st, (const uint8_t *)" HTTP/2.0", 9, &sp) < 0)
		return -ENOMEM;
	r->method = field(st, mo, st->method.vl);
	r->target = field(st, po, st->path.vl);
	return 0;
}

/* Submits what the sink received for st: HEADERS, and DATA frames that
 * pump() sends as the windows allow. */
static ssize_t on_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *arg);

int rtls__h2_submit(struct h2conn *x, struct h2s *st)
{
	nghttp2_nv nv[40];
	size_t n = 0;
	char status[4], clen[24];
	int ret;

#define NV(name, v, vlen)                                                                    \
	nv[n++] = (nghttp2_nv){ (uint8_t *)(name), (uint8_t *)(v), sizeof(name) - 1, (vlen), \
				NGHTTP2_NV_FLAG_NO_COPY_NAME }
	status[0] = (char)('0' + st->status / 100 % 10);
	status[1] = (char)('0' + st->status / 10 % 10);
	status[2] = (char)('0' + st->status % 10);
	NV(":status", status, 3);
	NV("server", "ringtls", 7);
	NV("date", rtls__http_date_now(), 29);
	/* The extra lines, their names lower-cased in place (RFC 9113
	 * §8.2.2); HTTP/1.1's connection fields have no place here. */
	for (char *p = st->rh; p && *p && n < sizeof(nv) / sizeof(nv[0]) - 1;) {
		char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");
		char *v;

		if (!colon || !eol || colon > eol)
			break;
		for (char *q = p; q < colon; q++)
			if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
		v = colon + 1;
		while (*v == ' ')
			v++;
		nv[n++] = (nghttp2_nv){ (uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
					(size_t)(eol - v), NGHTTP2_NV_FLAG_NONE };
		p = eol + 2;
	}
	if (st->clen != NO_CONTENT_LENGTH) {
		char *e = rtls__http_put_u64(clen, st->clen);

		NV("content-length", clen, (size_t)(e - clen));
	}
#undef NV
	ret = rtls__h2_submit_nv(x, st, nv, n, st->has_body);
	/* nghttp2 has copied the values (NGHTTP2_NV_FLAG_NONE): the lines
	 * need not live as long as a stream the client leaves open. */
	free(st->rh);
	st->rh = NULL;
	return ret;
}

int rtls__h2_submit_nv(struct h2conn *x, struct h2s *st, const nghttp2_nv *nv, size_t n, bool body)
{
	nghttp2_data_provider dp = { .source.ptr = st, .read_callback = on_read };

	st->has_body = body;
	return nghttp2_submit_response(x->s, st->id, nv, n, body ? &dp : NULL);
}

/* Answers st once its head is whole. */
static void answer(struct h2conn *x, struct h2s *st)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(x->c);
	struct rtls_http_header hdrs[HTTP_MAX_HEADERS + 1];
	const struct rtls_http_route *rt;
	struct hreq q;
	const char *why = NULL;
	bool host = false;
	int st_code, ret;

	st->answered = true;
	memset(&q, 0, sizeof(q));
	q.h2 = true;
	q.r.headers = hdrs;
	q.r.minor_version = 1;
	x->cur = st;
	if (st->method.vl && st->path.vl && request_line(st, &q.r) < 0) {
		nghttp2_submit_rst_stream(x->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		goto out;
	}
	for (unsigned i = 0; i < st->nf; i++) {
		struct rtls_http_header f = { field(st, st->f[i].no, st->f[i].nl),
					      field(st, st->f[i].vo, st->f[i].vl) };

		host = host || rtls__http_str_ieq(f.name, "host");
		hdrs[q.r.num_headers++] = f;
	}
	/* :authority stands in for Host (RFC 9113 §8.3.1), unless both came. */
	if (st->authority.vl && !host)
		hdrs[q.r.num_headers++] =
			(struct rtls_http_header){ { "host", 4 },
						   field(st, st->authority.vo, st->authority.vl) };
	if (hc->alog && q.r.method.n)
		rtls__alog_begin(x->h, q.r.method.p, q.r.method.n, &q.r);
	q.head = q.r.method.n == 4 && memcmp(q.r.method.p, "HEAD", 4) == 0;
	if (st->too_big) {
		st_code = 431;
		why = "request head too large or too many fields";
		goto fail;
	}
	/* A CONNECT has no :path (RFC 9113 §8.5): not a method we serve. */
	if (!st->path.vl) {
		st_code = q.r.method.n ? 405 : 400;
		why = q.r.method.n ? "method not allowed" : "malformed request";
		goto fail;
	}
	if (q.r.target.n > hc->max_target) {
		st_code = 414;
		why = "request-target too long";
		goto fail;
	}
	st_code = rtls__http_scan_headers(&q, &why);
	if (st_code)
		goto fail;
	if (q.r.target.p[0] != '/') {
		/* "*" (OPTIONS) is the only other form a server sees. */
		st_code = 400;
		why = "request-target is not a path";
		goto fail;
	}
	q.path = q.r.target;
	q.keep_alive = CONN_DEFAULT;
	if (hc->nroutes && !x->h->admin && (rt = rtls__proxy_route(hc, q.path)) != NULL) {
		/* Proxied: a body of any size, streamed (h2_proxy.c). */
		rtls__h2px_start(x, st, rt, &q);
		goto out;
	}
	if (q.has_content_length && q.content_length > hc->max_body) {
		st_code = 413;
		why = "request body too large";
		goto fail;
	}
	ret = rtls__http_dispatch(x->c, x->h, hc, &q);
	if (ret < 0) {
		nghttp2_submit_rst_stream(x->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		goto out;
	}
	goto submit;
fail:
	rtls__http_error(x->c, st_code, why, q.head);
submit:
	if (st->status && rtls__h2_submit(x, st) != 0)
		nghttp2_submit_rst_stream(x->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
out:
	x->cur = NULL;
	/* A stream reset without a response has no access log line; its
	 * views into hb must not outlive it (the next line would read them). */
	x->h->lreq.pending = false;
	/* The request head is no longer needed; the response keeps its own. */
	free(st->hb);
	free(st->f);
	st->hb = NULL;
	st->f = NULL;
	st->hb_len = st->hb_cap = 0;
	st->nf = st->fcap = 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
	struct h2conn *x = arg;
	struct h2s *st;

	if (fr->hd.type != NGHTTP2_HEADERS && fr->hd.type != NGHTTP2_DATA)
		return 0;
	st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	if (!st)
		return 0;
	if (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) {
		st->remote_done = true;
		if (st->px)
			rtls__h2px_req_end(x, st);
	}
	if (fr->hd.type == NGHTTP2_HEADERS && st->in_head) {
		st->in_head = false; /* the block is whole */
		x->heads--;
	}
	/* Answered at the end of its head, as HTTP/1.1 is: a body (which
	 * only a proxied route would want) is read and dropped. A stream
	 * the shutdown GOAWAY covers is still answered; none once the
	 * session is being terminated. */
	if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_REQUEST &&
	    !st->answered && !x->terminated)
		answer(x, st);
	return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
	struct h2s *st;

	/* A body past --max-body-bytes: its stream is reset once our
	 * response has gone whole (on_data_chunk). */
	if ((fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
	    (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id)) && st->too_long &&
	    !st->reset && !st->remote_done) {
		st->reset = true;
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
	}
	/* The whole response has gone: a body copy need not live as long as
	 * a stream the client leaves half-open (it never sends END_STREAM). */
	if (fr->hd.type == NGHTTP2_DATA && (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (st = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id)) && st->body) {
		free(st->body);
		st->body = NULL;
	}
	if (fr->hd.type == NGHTTP2_GOAWAY && fr->goaway.error_code != NGHTTP2_NO_ERROR) {
		struct h2conn *x = arg;
		char line[160];

		snprintf(line, sizeof(line), "GOAWAY %s sent%s%s",
			 nghttp2_http2_strerror(fr->goaway.error_code), x->why[0] ? ": " : "",
			 x->why);
		rtls__h2_log(x, RTLS_LOG_INFO, line);
		x->logged = true;
	}
	return 0;
}

/* A request body: a proxied stream's goes to its upstream (h2_proxy.c);
 * any other is dropped, as HTTP/1.1 drops one after answering, and its
 * window given back at once. Past --max-body-bytes the
 * stream is reset (NO_ERROR: its response has been made, RFC 9113 §8.1)
 * once the response has gone whole (on_frame_send), not sooner: a reset
 * would overtake the queued response, and curl 7.88 discards a response
 * whose stream is reset while it is still sending. Only a body that goes
 * on far past that is reset at once. */
static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
			 void *arg)
{
	struct h2conn *x = arg;
	const struct rtls_http_config *hc = rtls_conn_ctx(x->c);
	struct h2s *st = nghttp2_session_get_stream_user_data(s, id);

	(void)flags;
	if (st && st->px) {
		rtls__h2px_data(x, st, p, n);
		return 0;
	}
	if (x->windows) /* dropped: its window comes back at once */
		nghttp2_session_consume(s, id, n);
	if (!st || st->reset)
		return 0;
	st->dropped += n;
	if (st->dropped <= hc->max_body)
		return 0;
	st->too_long = true;
	if (st->answered && !st->status) /* reset already, or no response */
		return 0;
	if (st->dropped > 2 * hc->max_body + H2_HIGH_WATER) {
		st->reset = true;
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
	struct h2s *st = nghttp2_session_get_stream_user_data(s, id);

	(void)code;
	if (st) {
		nghttp2_session_set_stream_user_data(s, id, NULL);
		stream_free(arg, st);
	}
	return 0;
}

static int on_error(nghttp2_session *s, int code, const char *msg, size_t len, void *arg)
{
	struct h2conn *x = arg;

	(void)s;
	(void)code;
	if (len >= sizeof(x->why))
		len = sizeof(x->why) - 1;
	memcpy(x->why, msg, len);
	x->why[len] = '\0';
	return 0;
}

/* The response body bytes st has still to send (a proxied stream's: of
 * those that have come from its upstream). */
static uint64_t body_left(const struct h2s *st)
{
	if (st->px)
		return rtls__h2px_left(st);
	return st->fd >= 0 ? st->fleft : st->body_len - st->body_off;
}

static ssize_t on_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *arg)
{
	struct h2conn *x = arg;
	struct h2s *st = src->ptr;
	uint64_t left;

	(void)s;
	(void)id;
	if (st->px)
		return rtls__h2px_read(x, st, buf, len, flags);
	left = body_left(st);
	if (left && rtls_conn_pending(x->c) > H2_HIGH_WATER) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (len > left)
		len = (size_t)left;
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (len == left)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)len;
}

/* DATA payloads of 16375 bytes: with its 9-byte head a frame is one
 * full 16 KiB TLS record. At nghttp2's 16384 each frame spilled its last
 * 9 bytes into a record of their own (seen in the kernel suite: 64 full
 * and 64 tiny records per MiB), twice the records to seal and open. */
static ssize_t on_read_length(nghttp2_session *s, uint8_t type, int32_t id, int32_t conn_win,
			      int32_t stream_win, uint32_t max_frame, void *arg)
{
	ssize_t n = 16384 - 9;

	(void)s;
	(void)type;
	(void)id;
	(void)arg;
	if (n > conn_win)
		n = conn_win;
	if (n > stream_win)
		n = stream_win;
	if ((uint32_t)n > max_frame)
		n = (ssize_t)max_frame;
	return n > 0 ? n : 1;
}

/* A DATA frame: its head, then its payload from where the body is. A
 * file range needs a descriptor of its own per frame, since the engine
 * closes it once that range has been sent. */
static int on_send_data(nghttp2_session *s, nghttp2_frame *fr, const uint8_t *head, size_t len,
			nghttp2_data_source *src, void *arg)
{
	struct h2conn *x = arg;
	struct h2s *st = src->ptr;
	int ret;

	(void)s;
	if (rtls_conn_write(x->c, head, 9) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (!len)
		return 0;
	(void)fr; /* no padding: we never ask for it */
	if (st->fd >= 0 && len < H2_COPY_BELOW && len != st->fleft) {
		/* A short frame is read into the queue, not given a duplicate
		 * descriptor: the client sets the frame sizes (a window of 1
		 * byte makes 1-byte frames), and a descriptor per frame let
		 * one connection that never read take every descriptor the
		 * process had within H2_HIGH_WATER (test_h2_abuse). */
		char *dst = rtls_conn_reserve(x->c, len);
		ssize_t got;

		if (!dst)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		got = pread(st->fd, dst, len, (off_t)st->foff);
		if (got != (ssize_t)len)
			return NGHTTP2_ERR_CALLBACK_FAILURE; /* the file shrank */
		rtls_conn_commit(x->c, len);
		st->foff += len;
		st->fleft -= len;
		ret = 0;
	} else if (st->fd >= 0) {
		bool last = len == st->fleft;
		int fd = last ? st->fd : fcntl(st->fd, F_DUPFD_CLOEXEC, 0);

		if (fd < 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		if (last)
			st->fd = -1; /* the engine's now */
		ret = rtls_conn_write_file(x->c, fd, (off_t)st->foff, len);
		st->foff += len;
		st->fleft -= len;
	} else {
		ret = rtls_conn_write(x->c, st->body + st->body_off, len);
		st->body_off += len;
	}
	return ret < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* --- the sink (response.c) --- */

enum rtls_log_level rtls__h2_error_level(struct hconn *h)
{
	/* One info line per connection: a client can make a stream error
	 * per frame, and each would otherwise be a line. */
	return h->h2->errors++ ? RTLS_LOG_DEBUG : RTLS_LOG_INFO;
}

/* GCC 12's analyzer (scripts/lint.sh analyzer) loses track of the
 * stream behind h->h2->cur and calls the copies below leaked: a false
 * positive (stream_release() frees them). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
int rtls__h2_head(rtls_conn *c, struct hconn *h, int status, const char *extra,
		  uint64_t content_length)
{
	struct h2s *st = h->h2->cur;

	(void)c;
	if (!st || st->status)
		return -EINVAL; /* a second head for one request: a bug */
	st->rh = strdup(extra);
	if (!st->rh)
		return -ENOMEM;
	st->status = status;
	st->clen = content_length;
	return 0;
}

int rtls__h2_body(struct hconn *h, const void *p, size_t n)
{
	struct h2s *st = h->h2->cur;

	if (!st || st->has_body)
		return -EINVAL;
	if (!n)
		return 0;
	st->body = malloc(n);
	if (!st->body)
		return -ENOMEM;
	memcpy(st->body, p, n);
	st->body_len = n;
	st->has_body = true;
	return 0;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

int rtls__h2_body_file(struct hconn *h, int fd, off_t off, size_t len)
{
	struct h2s *st = h->h2->cur;

	if (!st || st->has_body || !len) {
		close(fd);
		return st && !st->has_body ? 0 : -EINVAL;
	}
	st->fd = fd;
	st->foff = (uint64_t)off;
	st->fleft = len;
	st->has_body = true;
	return 0;
}

/* --- the connection --- */

/* Sends what nghttp2 has (frames into the output queue, then one flush),
 * and closes once neither side has anything more to say. */
void rtls__h2_pump(struct h2conn *x)
{
	rtls_conn *c = x->c;
	int ret;

	if (x->busy)
		return;
	x->busy = true;
	ret = nghttp2_session_send(x->s);
	x->busy = false;
	if (ret != 0) {
		rtls__h2_log(x, RTLS_LOG_INFO, nghttp2_strerror(ret));
		rtls_conn_abort(c, -EPROTO);
		return;
	}
	if (!nghttp2_session_want_read(x->s) && !nghttp2_session_want_write(x->s)) {
		rtls_conn_close(c); /* flushes what is queued first */
		return;
	}
	rtls_conn_flush(c);
}

/* Whether st's response has DATA left that its stream window holds back
 * (the connection's window may hold it back too). */
static bool stream_waits(struct h2conn *x, const struct h2s *st)
{
	return st->has_body && body_left(st) && !st->reset &&
	       nghttp2_session_get_stream_remote_window_size(x->s, st->id) <= 0;
}

/* Whether a response's DATA waits on the connection's window, which the
 * client keeps at zero. */
static bool conn_stalled(struct h2conn *x)
{
	if (nghttp2_session_get_remote_window_size(x->s) > 0)
		return false;
	for (struct h2s *st = x->streams; st; st = st->next)
		if (st->has_body && body_left(st) && !st->reset)
			return true;
	return false;
}

/* Resets st, whose window has stayed shut for the idle time: the stream
 * ends and its file is closed; the connection's other streams go on. */
static void stall_reset(struct h2conn *x, struct h2s *st)
{
	char line[96];

	snprintf(line, sizeof(line),
		 "stream %d: client kept its flow-control window shut for the idle time: "
		 "stream reset",
		 (int)st->id);
	rtls__h2_log(x, rtls__h2_error_level(x->h), line);
	st->reset = true;
	nghttp2_submit_rst_stream(x->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
}

/* A client that keeps a window shut but sends something now and then
 * (PINGs, whose answers also count as progress for the idle deadline)
 * would hold its streams, and their files, for ever: a window must open
 * within h2_stall_ms, as nginx's send_timeout bounds a stalled send. A
 * stream's own window shut that long resets that stream (a browser's
 * paused video does this; its page's other streams go on); the
 * connection's window shut that long cuts the connection. 1 if it was
 * cut. */
static int stall_check(rtls_conn *c, struct h2conn *x)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	uint64_t now, limit = hc->h2_stall_ms ? hc->h2_stall_ms : 60000;
	struct hconn *h = x->h; /* x is gone if pump() closes */
	bool reset = false;

	if (!x->streams) {
		x->stall_ms = 0;
		return 0;
	}
	now = rtls__http_now_ms();
	if (!conn_stalled(x)) {
		x->stall_ms = 0;
	} else if (!x->stall_ms) {
		x->stall_ms = now;
	} else if (now - x->stall_ms >= limit) {
		rtls__h2_log(x, RTLS_LOG_INFO,
			     "client kept a flow-control window shut for the idle time: "
			     "connection cut");
		rtls_conn_abort(c, -ETIMEDOUT);
		return 1;
	}
	for (struct h2s *st = x->streams; st; st = st->next) {
		if (!stream_waits(x, st)) {
			st->stall_ms = 0;
		} else if (!st->stall_ms) {
			st->stall_ms = now;
		} else if (now - st->stall_ms >= limit) {
			stall_reset(x, st);
			reset = true;
		}
	}
	if (reset)
		rtls__h2_pump(x);
	return h->gone;
}

void rtls__h2_input(rtls_conn *c, struct hconn *h, const char *p, size_t n)
{
	struct h2conn *x = h->h2;
	ssize_t k = nghttp2_session_mem_recv(x->s, (const uint8_t *)p, n);

	if (k < 0) {
		/* nghttp2 gives up on the connection; tell the client why with
		 * a GOAWAY (it queues none itself for every error), then close.
		 * One log line: the GOAWAY's (on_frame_send), or this one. */
		bool calm = k == NGHTTP2_ERR_FLOODED || k == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ||
			    k == NGHTTP2_ERR_TOO_MANY_SETTINGS;

		snprintf(x->why, sizeof(x->why), "%s", nghttp2_strerror((int)k));
		nghttp2_session_terminate_session(x->s, calm ? NGHTTP2_ENHANCE_YOUR_CALM
							     : NGHTTP2_PROTOCOL_ERROR);
		nghttp2_session_send(x->s);
		if (!x->logged)
			rtls__h2_log(x, RTLS_LOG_INFO, x->why);
		rtls_conn_close(c);
		return;
	}
	if (h->gone)
		return;
	if (x->windows)
		rtls__h2px_after_input(x);
	rtls__h2_pump(x);
	if (h->gone)
		return;
	/* A header block that has begun must be whole within the HEADER
	 * deadline, however slowly it trickles in (as an HTTP/1.1 head).
	 * Otherwise the idle deadline runs from the last input, and the
	 * engine re-arms it on every bit of progress sending: a client that
	 * stops reading, or keeps a window at zero, is cut off after it. */
	if (stall_check(c, x))
		return;
	if (x->heads) {
		if (!x->head_timer)
			rtls_conn_set_timer(c, RTLS_TIMER_HEADER);
		x->head_timer = true;
	} else {
		x->head_timer = false;
		rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	}
	if (rtls_conn_pending(c) > H2_HIGH_WATER && !x->paused) {
		/* A client that sends faster than it reads (PINGs, SETTINGS,
		 * requests) waits for its answers to leave. */
		x->paused = true;
		rtls_conn_pause_read(c);
	}
}

void rtls__h2_drained(rtls_conn *c, struct hconn *h)
{
	struct h2conn *x = h->h2;

	if (x->busy)
		return;
	for (struct h2s *st = x->streams; st; st = st->next) {
		/* A proxied stream waits for its upstream as well: resumed
		 * before that has sent more, it would defer again, and this
		 * pump's flush come straight back here. */
		if (st->deferred && (!st->px || rtls__h2px_ready(st))) {
			st->deferred = false;
			nghttp2_session_resume_data(x->s, st->id);
		}
	}
	if (nghttp2_session_want_write(x->s))
		rtls__h2_pump(x);
	else if (!nghttp2_session_want_read(x->s))
		rtls_conn_close(c);
	if (h->gone)
		return;
	if (x->paused && rtls_conn_pending(c) <= H2_HIGH_WATER) {
		x->paused = false;
		rtls_conn_resume_read(c);
	}
}

void rtls__h2_eof(rtls_conn *c, struct hconn *h)
{
	(void)h;
	/* Nothing more can be asked; what is queued still leaves. */
	rtls_conn_close(c);
}

void rtls__h2_timeout(rtls_conn *c, struct hconn *h, enum rtls_timer t)
{
	struct h2conn *x = h->h2;

	if (t == RTLS_TIMER_HEADER && x->heads) {
		rtls__h2_log(x, RTLS_LOG_INFO, "request head not received in time: GOAWAY");
		nghttp2_session_terminate_session(x->s, NGHTTP2_NO_ERROR);
		x->goaway = x->terminated = true;
		rtls__h2_pump(x);
		return;
	}
	if (!rtls_conn_pending(c) && !conn_stalled(x)) {
		/* A stream that waits on its upstream is bounded by the
		 * upstream's deadlines, not by the client's silence. */
		for (struct h2s *st = x->streams; st; st = st->next) {
			if (rtls__h2px_waits_upstream(st)) {
				rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
				return;
			}
		}
	}
	if (!rtls_conn_pending(c) && x->streams && !conn_stalled(x)) {
		/* Quiet for the idle time, reading all it was sent: streams
		 * held by their own shut windows are reset, and the
		 * connection goes on (idle again; GOAWAY at the next). */
		bool all = true, any = false;

		for (struct h2s *st = x->streams; st; st = st->next) {
			bool waits = stream_waits(x, st);

			all = all && waits;
			any = any || waits;
		}
		if (any && all) {
			for (struct h2s *st = x->streams; st; st = st->next)
				if (!st->reset)
					stall_reset(x, st);
			rtls__h2_pump(x);
			if (!h->gone)
				rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
			return;
		}
	}
	if (rtls_conn_pending(c) || x->streams) {
		const char *why = rtls_conn_pending(c) ? "client stopped reading"
				  : conn_stalled(x)    ? "client kept a flow-control window shut"
						       : "client went quiet with streams open";
		char line[96];

		snprintf(line, sizeof(line), "%s for the idle time: connection cut", why);
		rtls__h2_log(x, RTLS_LOG_INFO, line);
		rtls_conn_abort(c, -ETIMEDOUT);
		return;
	}
	nghttp2_session_terminate_session(x->s, NGHTTP2_NO_ERROR);
	x->goaway = x->terminated = true;
	rtls__h2_pump(x);
}

int rtls__h2_shutdown(rtls_conn *c, struct hconn *h)
{
	struct h2conn *x = h->h2;

	(void)c;
	/* GOAWAY naming the last stream we took: those finish, no new ones
	 * start, and pump() closes when nothing is left. */
	if (!x->goaway) {
		nghttp2_submit_goaway(x->s, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(x->s),
				      NGHTTP2_NO_ERROR, NULL, 0);
		x->goaway = true;
	}
	rtls__h2_pump(x);
	return 0;
}

void rtls__h2_close(struct hconn *h)
{
	struct h2conn *x = h->h2;

	if (!x)
		return;
	h->h2 = NULL;
	nghttp2_session_del(x->s); /* no callbacks: it only frees */
	for (struct h2s *st = x->streams, *next; st; st = next) {
		next = st->next;
		stream_release(x, st, false);
	}
	free(x);
}

/* One set of callbacks for every session (nghttp2 copies it in). */
static nghttp2_session_callbacks *h2_cb;

static void callbacks_init(void)
{
	if (nghttp2_session_callbacks_new(&h2_cb) != 0)
		return;
	nghttp2_session_callbacks_set_send_callback(h2_cb, on_send);
	nghttp2_session_callbacks_set_on_begin_headers_callback(h2_cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(h2_cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(h2_cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(h2_cb, on_frame_send);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2_cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(h2_cb, on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(h2_cb, on_error);
	nghttp2_session_callbacks_set_send_data_callback(h2_cb, on_send_data);
	nghttp2_session_callbacks_set_data_source_read_length_callback(h2_cb, on_read_length);
}

static nghttp2_session_callbacks *callbacks(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, callbacks_init);
	return h2_cb;
}

int rtls__h2_start(rtls_conn *c, struct hconn *h, const char *p, size_t n)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	nghttp2_session_callbacks *cb = callbacks();
	nghttp2_option *opt = NULL;
	struct h2conn *x;
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)hc->max_head },
	};
	int ret;

	if (!cb || !(x = calloc(1, sizeof(*x))))
		return -ENOMEM;
	x->c = c;
	x->h = h;
	if (nghttp2_option_new(&opt) != 0) {
		free(x);
		return -ENOMEM;
	}
	/* nghttp2's own defaults bound the rest: streams over our
	 * SETTINGS_MAX_CONCURRENT_STREAMS are refused even before the client
	 * has acknowledged them, resets are rate-limited (CVE-2023-44487),
	 * CONTINUATION frames per header block are bounded (CVE-2024-28182),
	 * and so are the PING and SETTINGS acknowledgements a client that
	 * does not read can make us queue. */
	/* A proxied stream's upload must not outrun its upstream: its
	 * window is given back as the upstream takes the bytes. */
	x->windows = hc->nroutes > 0;
	if (x->windows)
		nghttp2_option_set_no_auto_window_update(opt, 1);
	ret = nghttp2_session_server_new2(&x->s, cb, x, opt);
	nghttp2_option_del(opt);
	if (ret != 0) {
		free(x);
		return -ENOMEM;
	}
	if (nghttp2_submit_settings(x->s, NGHTTP2_FLAG_NONE, set, sizeof(set) / sizeof(set[0])) !=
	    0) {
		nghttp2_session_del(x->s);
		free(x);
		return -ENOMEM;
	}
	/* With windows given back by hand, one stalled upload would hold
	 * the default 64 KiB connection window, and every other stream's
	 * body with it: the connection's is larger, so that a stream's own
	 * window (64 KiB) is what holds it back. */
	if (x->windows && nghttp2_session_set_local_window_size(x->s, NGHTTP2_FLAG_NONE, 0,
								H2_CONN_WINDOW) != 0) {
		nghttp2_session_del(x->s);
		free(x);
		return -ENOMEM;
	}
	h->h2 = x;
	rtls__h2_input(c, h, p, n);
	return 0;
}
