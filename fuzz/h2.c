/* libFuzzer target for the HTTP server (src/http: rtls_http_handler) as a
 * client drives it, HTTP/2 above all (h2.c and the request, static-file,
 * page and admin code that answers its streams). The engine underneath is
 * a fake (below): it implements the public API the HTTP layer calls,
 * keeps the handler's data area, hands it the input as on_data chunks,
 * records what it writes, and models flush, drain, pause, timers, close
 * and abort as include/ringtls/ringtls.h says they behave. Nothing of
 * src/core is linked: the calls only a --proxy or --tcp-proxy route
 * reaches abort().
 *
 * Input: byte 0 (flags): bit 0 the client preface is prepended (bit 1:
 * and an empty SETTINGS frame), bits 2-3 the configuration (cfg_for()),
 * bit 4 a TLS connection, bit 5 the peer's end after the last byte, bit
 * 6 the admin listener, bit 7 a drain after every chunk. Byte 1: bits 0-3
 * k, bit 4 rtls_conn_file_ready() fails, on TLS what ALPN selected: bit 6
 * nothing, else bit 5 http/1.1, else h2; bit 7 a chunk arrives while
 * reading is paused, for rtls_conn_resume_read() to deliver. Then k
 * event bytes, used in turn: bits 0-5 the size of the next chunk (0: the
 * rest, 1-47 bytes, 48-63: (n - 47) * 256 bytes), bits 6-7 what follows
 * it (0 nothing, 1 the output drains, 2 the armed timer fires, 3 the
 * server shuts down). Then the client's bytes. Seeds: fuzz/h2_seeds.py.
 *
 * Oracles:
 *  - no crash, leak (memory: LeakSanitizer; descriptors: the lowest free
 *    one is the same after an input as before it) or undefined behaviour;
 *  - the engine's contract: every buffer released exactly once, by the
 *    end of on_close; a reservation committed before the next write; a
 *    file range handed to rtls_conn_write_file() lies within its file,
 *    whose descriptor is open;
 *  - on HTTP/2, the output is whole frames, and a real nghttp2 client
 *    session that opened the same streams (same ids, methods, END_STREAM)
 *    and sent as many SETTINGS takes all of it without a connection or
 *    stream error: frames well formed, HPACK decodable, responses with a
 *    :status, DATA only where allowed and as long as content-length says
 *    (none after HEAD, 304); and a RST_STREAM NO_ERROR only after the
 *    stream's complete response (RFC 9113 §8.1). What the server's
 *    session saw is observed by wrapping the nghttp2 calls that set
 *    h2.c's callbacks (the link's --wrap options, fuzz/CMakeLists.txt).
 *
 * FUZZ_H2_VERBOSE=1 prints the frames and fields the client received. */
#include "check.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accesslog.h"
#include "http.h"
#include "ringtls/tls.h"

#define MAX_OUT ((size_t)32 << 20)
#define MAX_BUFS 64
#define MAX_MIRROR 4096
#define FRAME_SIZE_MIN 16384u /* RFC 9113 §6.5.2 */

/* ---- the fake engine --------------------------------------------------- */

enum cstate { C_OPEN, C_CLOSING, C_GONE };

struct rtls_conn {
	const struct rtls_handler *h;
	void *data;
	void *ctx;
	enum cstate st;
	bool closed_done; /* on_close has returned */
	bool paused, eof, eof_pending, shut, tls, file_fail, overflow;
	bool keep;           /* a chunk may arrive while paused, */
	const uint8_t *kept; /* and waits here for resume_read */
	size_t kept_n;
	const char *alpn; /* on TLS: what ALPN selected ("" none) */
	enum rtls_timer timer;
	unsigned char *q; /* queued, not flushed */
	size_t qlen, qcap;
	size_t inflight; /* flushed, not yet acknowledged */
	char *resv;      /* an open reservation */
	size_t resv_n;
	struct rtls_buf *bufs[MAX_BUFS]; /* held by the handler */
	unsigned nbufs;
};

static struct rtls_conn conn;
static unsigned char *wire; /* everything flushed, in order */
static size_t wire_len, wire_cap;

static void grow(unsigned char **b, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : 4096;

	if (need <= *cap)
		return;
	while (n < need)
		n *= 2;
	*b = realloc(*b, n);
	check(*b != NULL);
	*cap = n;
}

static int queue(rtls_conn *c, const void *p, size_t n)
{
	if (c->qlen + wire_len + n > MAX_OUT) {
		c->overflow = true;
		return -ENOMEM;
	}
	grow(&c->q, &c->qcap, c->qlen + n);
	if (n)
		memcpy(c->q + c->qlen, p, n);
	c->qlen += n;
	return 0;
}

/* The queue goes out: onto the wire, in flight until a drain. */
static void send_queue(rtls_conn *c)
{
	grow(&wire, &wire_cap, wire_len + c->qlen);
	if (c->qlen)
		memcpy(wire + wire_len, c->q, c->qlen);
	wire_len += c->qlen;
	c->inflight += c->qlen;
	c->qlen = 0;
}

static void gone(rtls_conn *c, int err)
{
	if (c->st == C_GONE)
		return;
	c->st = C_GONE;
	c->qlen = 0;
	c->timer = RTLS_TIMER_NONE;
	c->h->on_close(c, c->data, err);
	c->closed_done = true;
	/* Every buffer comes back at the latest in on_close. */
	check(c->nbufs == 0);
	free(c->resv);
	c->resv = NULL;
}

void *rtls_conn_data(rtls_conn *c)
{
	return c->data;
}

void *rtls_conn_ctx(rtls_conn *c)
{
	return c->ctx;
}

int rtls_conn_peer(const rtls_conn *c, char *out, size_t n)
{
	(void)c;
	return snprintf(out, n, "127.0.0.1:40000") < 0 ? -EINVAL : 0;
}

int rtls_conn_query(const rtls_conn *c, struct rtls_conn_info *ci)
{
	struct sockaddr_in *peer = (struct sockaddr_in *)&ci->peer;
	struct sockaddr_in *local = (struct sockaddr_in *)&ci->local;

	memset(ci, 0, sizeof(*ci));
	ci->transport = c->tls ? RTLS_TRANSPORT_TLS : RTLS_TRANSPORT_PLAIN;
	ci->listener = 0;
	peer->sin_family = AF_INET;
	peer->sin_port = htons(40000);
	peer->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ci->peer_len = sizeof(*peer);
	local->sin_family = AF_INET;
	local->sin_port = htons(443);
	local->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ci->local_len = sizeof(*local);
	if (c->tls) {
		ci->tls_version = "TLSv1.3";
		ci->tls_cipher = "TLS_AES_128_GCM_SHA256";
		ci->alpn = *c->alpn ? c->alpn : NULL;
		ci->sni = "example.test";
		ci->tx_path = ci->rx_path = RTLS_PATH_USERSPACE;
	}
	return 0;
}

const char *rtls_conn_alpn(const rtls_conn *c)
{
	return c->tls ? c->alpn : NULL;
}

void rtls_buf_release(rtls_conn *c, struct rtls_buf *b)
{
	unsigned i;

	/* Valid until on_close returns, exactly once per buffer. */
	check(!c->closed_done);
	for (i = 0; i < c->nbufs && c->bufs[i] != b; i++)
		;
	check(i < c->nbufs);
	c->bufs[i] = c->bufs[--c->nbufs];
	free((void *)b->data);
	free(b);
}

int rtls_conn_write(rtls_conn *c, const void *p, size_t n)
{
	check(c->resv == NULL); /* no write between reserve and commit */
	if (c->st != C_OPEN)
		return -EPIPE;
	return queue(c, p, n);
}

char *rtls_conn_reserve(rtls_conn *c, size_t n)
{
	check(c->resv == NULL);
	if (c->st != C_OPEN)
		return NULL;
	c->resv = malloc(n ? n : 1); /* exactly n: ASan sees a write past it */
	c->resv_n = n;
	return c->resv;
}

void rtls_conn_commit(rtls_conn *c, size_t used)
{
	char *r = c->resv;

	check(r != NULL && used <= c->resv_n);
	c->resv = NULL;
	if (c->st == C_OPEN && queue(c, r, used) < 0) {
		free(r);
		gone(c, -ENOMEM);
		return;
	}
	free(r);
}

int rtls_conn_write_file(rtls_conn *c, int fd, off_t off, size_t len)
{
	unsigned char buf[16384];
	size_t done = 0;
	int ret = 0;

	check(c->resv == NULL);
	check(fcntl(fd, F_GETFD) >= 0); /* ours from now on: open */
	if (c->st != C_OPEN) {
		close(fd);
		return -EPIPE;
	}
	/* What the engine would splice: the range must lie within the file. */
	while (done < len && ret == 0) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);
		ssize_t k = pread(fd, buf, n, off + (off_t)done);

		check(k > 0);
		ret = queue(c, buf, (size_t)k);
		done += (size_t)k;
	}
	close(fd);
	return ret;
}

int rtls_conn_file_ready(rtls_conn *c)
{
	return c->file_fail ? -EMFILE : 0;
}

int rtls_conn_flush(rtls_conn *c)
{
	if (c->st != C_OPEN)
		return -EPIPE;
	if (!c->qlen && !c->inflight) {
		/* Nothing to send: on_drained, before flush returns. */
		if (c->h->on_drained)
			c->h->on_drained(c, c->data);
		return 0;
	}
	send_queue(c);
	return 0;
}

size_t rtls_conn_pending(const rtls_conn *c)
{
	return c->qlen + c->inflight;
}

void rtls_conn_set_timer(rtls_conn *c, enum rtls_timer t)
{
	check(t >= RTLS_TIMER_NONE && t < RTLS_TIMER__COUNT);
	if (c->st == C_OPEN || t == RTLS_TIMER_NONE)
		c->timer = t;
}

void rtls_conn_pause_read(rtls_conn *c)
{
	c->paused = true;
}

static void deliver_eof(rtls_conn *c)
{
	if (c->h->on_eof)
		c->h->on_eof(c, c->data);
	else
		rtls_conn_close(c);
}

static void deliver(rtls_conn *c, const uint8_t *p, size_t n);

void rtls_conn_resume_read(rtls_conn *c)
{
	if (!c->paused || c->st != C_OPEN)
		return;
	c->paused = false;
	/* What came while paused, then the end if it came too, all before
	 * returning; delivery stops where the handler pauses or closes. */
	if (c->kept) {
		const uint8_t *p = c->kept;

		c->kept = NULL;
		deliver(c, p, c->kept_n);
		if (c->paused || c->st != C_OPEN)
			return;
	}
	if (c->eof_pending) {
		c->eof_pending = false;
		deliver_eof(c);
	}
}

void rtls_conn_close(rtls_conn *c)
{
	if (c->st != C_OPEN)
		return;
	c->st = C_CLOSING;
	c->timer = RTLS_TIMER_NONE;
	send_queue(c);
	/* Nothing left to send and the peer has ended: on_close now. Else
	 * after the linger, at the top level (settle()). */
	if (!c->inflight && c->eof)
		gone(c, 0);
}

void rtls_conn_abort(rtls_conn *c, int err)
{
	if (c->st == C_GONE)
		return;
	c->qlen = 0; /* queued output is discarded */
	gone(c, err ? err : -ECONNABORTED);
}

int rtls_conn_eof(const rtls_conn *c)
{
	return c->eof ? RTLS_EOF_CLEAN : RTLS_EOF_NONE;
}

/* Only with an admin listener, for /metrics and /status.json. */
int rtls_server_stats(const rtls_server *s, struct rtls_stats *out, size_t size)
{
	(void)s;
	memset(out, 0, size);
	return 0;
}

static char logline[4096];

void rtls_log(enum rtls_log_level lvl, const char *fmt, ...)
{
	va_list ap;

	check(lvl >= RTLS_LOG_ERROR && lvl <= RTLS_LOG_DEBUG);
	va_start(ap, fmt);
	vsnprintf(logline, sizeof(logline), fmt, ap); /* the arguments are read */
	va_end(ap);
}

int rtls_log_enabled(enum rtls_log_level lvl)
{
	return lvl <= RTLS_LOG_INFO;
}

/* Reached only through --proxy and --tcp-proxy routes, which the
 * configurations here do not have (and which turn HTTP/2 off). */
int rtls__proxy_header_build(char *out, size_t n, int version, const struct rtls_conn_info *ci);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define UNREACHABLE(ret, name, ...)                                                   \
	ret name(__VA_ARGS__)                                                         \
	{                                                                             \
		fprintf(stderr, "fuzz_h2: %s called without a proxy route\n", #name); \
		abort();                                                              \
	}
UNREACHABLE(int, rtls_conn_connect, rtls_conn *a, const char *b, const struct rtls_handler *d,
	    void *e, rtls_conn **f)
UNREACHABLE(int, rtls_conn_connect_tls, rtls_conn *a, const char *b, struct rtls_tls_ctx *d,
	    const char *e, const struct rtls_handler *f, void *g, rtls_conn **i)
UNREACHABLE(int, rtls_conn_tls_preamble, rtls_conn *a, const void *b, size_t d)
UNREACHABLE(int, rtls__proxy_header_build, char *a, size_t b, int d, const struct rtls_conn_info *e)
UNREACHABLE(int, rtls_conn_forward, rtls_conn *a, rtls_conn *b)
UNREACHABLE(int, rtls_conn_forward_n, rtls_conn *a, rtls_conn *b, uint64_t d)
UNREACHABLE(uint64_t, rtls_conn_forwarded, const rtls_conn *a)
UNREACHABLE(int, rtls_conn_set_handler, rtls_conn *a, const struct rtls_handler *b)
UNREACHABLE(int, rtls_conn_shutdown_write, rtls_conn *a)
UNREACHABLE(int, rtls_format_addr, const struct sockaddr_storage *a, char *b, size_t d)
#pragma GCC diagnostic pop

/* ---- what the server's nghttp2 session saw ------------------------------ */

/* A request stream the server began, for the client to open too. */
struct mirror {
	int32_t id;
	bool end_stream;
	bool ended; /* the client has the response's END_STREAM */
	uint8_t mlen;
	char method[32];
};

static struct mirror mir[MAX_MIRROR];
static unsigned nmir;
static unsigned settings_seen; /* SETTINGS frames (not ACKs) received */
static uint32_t max_frame_seen;

static unsigned server_sessions; /* HTTP/2 began on this input */

static nghttp2_on_header_callback real_on_header;
static nghttp2_on_frame_recv_callback real_on_frame_recv;

int __real_nghttp2_session_server_new2(nghttp2_session **s, const nghttp2_session_callbacks *cb,
				       void *arg, const nghttp2_option *opt);
int __wrap_nghttp2_session_server_new2(nghttp2_session **s, const nghttp2_session_callbacks *cb,
				       void *arg, const nghttp2_option *opt);
int __real_nghttp2_session_callbacks_new(nghttp2_session_callbacks **cb);
int __wrap_nghttp2_session_callbacks_new(nghttp2_session_callbacks **cb);
void __real_nghttp2_session_callbacks_set_on_header_callback(nghttp2_session_callbacks *cb,
							     nghttp2_on_header_callback f);
void __wrap_nghttp2_session_callbacks_set_on_header_callback(nghttp2_session_callbacks *cb,
							     nghttp2_on_header_callback f);
void __real_nghttp2_session_callbacks_set_on_frame_recv_callback(nghttp2_session_callbacks *cb,
								 nghttp2_on_frame_recv_callback f);
void __wrap_nghttp2_session_callbacks_set_on_frame_recv_callback(nghttp2_session_callbacks *cb,
								 nghttp2_on_frame_recv_callback f);

static int spy_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *arg)
{
	(void)s, (void)arg;
	if (hd->type != NGHTTP2_HEADERS || !(hd->stream_id & 1) ||
	    (nmir && hd->stream_id <= mir[nmir - 1].id) || nmir == MAX_MIRROR)
		return 0;
	mir[nmir++] = (struct mirror){ .id = hd->stream_id,
				       .end_stream = hd->flags & NGHTTP2_FLAG_END_STREAM };
	return 0;
}

static int spy_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
		      const uint8_t *value, size_t vl, uint8_t flags, void *arg)
{
	if (fr->hd.type == NGHTTP2_HEADERS && fr->headers.cat == NGHTTP2_HCAT_REQUEST && nl == 7 &&
	    memcmp(name, ":method", 7) == 0) {
		for (unsigned i = nmir; i-- > 0;) {
			if (mir[i].id != fr->hd.stream_id)
				continue;
			mir[i].mlen =
				(uint8_t)(vl < sizeof(mir[i].method) ? vl : sizeof(mir[i].method));
			memcpy(mir[i].method, value, mir[i].mlen);
			break;
		}
	}
	return real_on_header(s, fr, name, nl, value, vl, flags, arg);
}

static int spy_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
	if (fr->hd.type == NGHTTP2_SETTINGS && !(fr->hd.flags & NGHTTP2_FLAG_ACK)) {
		settings_seen++;
		for (size_t i = 0; i < fr->settings.niv; i++)
			if (fr->settings.iv[i].settings_id == NGHTTP2_SETTINGS_MAX_FRAME_SIZE &&
			    fr->settings.iv[i].value > max_frame_seen)
				max_frame_seen = fr->settings.iv[i].value;
	}
	return real_on_frame_recv(s, fr, arg);
}

int __wrap_nghttp2_session_server_new2(nghttp2_session **s, const nghttp2_session_callbacks *cb,
				       void *arg, const nghttp2_option *opt)
{
	server_sessions++;
	return __real_nghttp2_session_server_new2(s, cb, arg, opt);
}

int __wrap_nghttp2_session_callbacks_new(nghttp2_session_callbacks **cb)
{
	int ret = __real_nghttp2_session_callbacks_new(cb);

	if (ret == 0)
		nghttp2_session_callbacks_set_on_begin_frame_callback(*cb, spy_begin_frame);
	return ret;
}

void __wrap_nghttp2_session_callbacks_set_on_header_callback(nghttp2_session_callbacks *cb,
							     nghttp2_on_header_callback f)
{
	real_on_header = f;
	__real_nghttp2_session_callbacks_set_on_header_callback(cb, spy_header);
}

void __wrap_nghttp2_session_callbacks_set_on_frame_recv_callback(nghttp2_session_callbacks *cb,
								 nghttp2_on_frame_recv_callback f)
{
	real_on_frame_recv = f;
	__real_nghttp2_session_callbacks_set_on_frame_recv_callback(cb, spy_frame_recv);
}

/* ---- the oracle: a client session takes the output ---------------------- */

struct verdict {
	bool bad;
	char why[256];
};

static void bad(struct verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bad(struct verdict *v, const char *fmt, ...)
{
	va_list ap;

	if (v->bad)
		return;
	v->bad = true;
	va_start(ap, fmt);
	vsnprintf(v->why, sizeof(v->why), fmt, ap);
	va_end(ap);
}

static ssize_t cl_send(nghttp2_session *s, const uint8_t *p, size_t n, int flags, void *arg)
{
	(void)s, (void)p, (void)flags, (void)arg;
	return (ssize_t)n;
}

static int cl_invalid(nghttp2_session *s, const nghttp2_frame *fr, int code, void *arg)
{
	(void)s;
	bad(arg, "invalid frame type %u on stream %d: %s", fr->hd.type, fr->hd.stream_id,
	    nghttp2_strerror(code));
	return 0;
}

static int cl_error(nghttp2_session *s, int code, const char *msg, size_t len, void *arg)
{
	(void)s;
	bad(arg, "client error %d: %.*s", code, (int)len, msg);
	return 0;
}

/* A client's RST_STREAM or GOAWAY with an error code: it found one. */
static int cl_frame_send(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
	(void)s;
	if (fr->hd.type == NGHTTP2_RST_STREAM && fr->rst_stream.error_code != NGHTTP2_NO_ERROR &&
	    fr->rst_stream.error_code != NGHTTP2_CANCEL)
		bad(arg, "client resets stream %d: %s", fr->hd.stream_id,
		    nghttp2_http2_strerror(fr->rst_stream.error_code));
	if (fr->hd.type == NGHTTP2_GOAWAY && fr->goaway.error_code != NGHTTP2_NO_ERROR)
		bad(arg, "client GOAWAY: %s", nghttp2_http2_strerror(fr->goaway.error_code));
	return 0;
}

static ssize_t cl_no_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			  nghttp2_data_source *src, void *arg)
{
	(void)s, (void)id, (void)buf, (void)len, (void)flags, (void)src, (void)arg;
	return NGHTTP2_ERR_DEFERRED; /* a request body that never comes */
}

static bool verbose; /* FUZZ_H2_VERBOSE=1: what the client received */

static struct mirror *find_mirror(int32_t id)
{
	unsigned lo = 0, hi = nmir;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (mir[mid].id == id)
			return &mir[mid];
		if (mir[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cl_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *arg)
{
	struct mirror *m = find_mirror(fr->hd.stream_id);

	(void)s;
	if (verbose)
		fprintf(stderr, "  frame type %u flags %#x stream %d length %zu\n", fr->hd.type,
			fr->hd.flags, fr->hd.stream_id, fr->hd.length);
	if (m && (fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
	    (fr->hd.flags & NGHTTP2_FLAG_END_STREAM))
		m->ended = true;
	/* RFC 9113 §8.1: NO_ERROR asks the client to stop sending a request
	 * whose complete response (END_STREAM) it has. */
	if (m && fr->hd.type == NGHTTP2_RST_STREAM &&
	    fr->rst_stream.error_code == NGHTTP2_NO_ERROR && !m->ended)
		bad(arg, "RST_STREAM NO_ERROR on stream %d before a complete response",
		    fr->hd.stream_id);
	return 0;
}

static int cl_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *arg)
{
	(void)s, (void)flags, (void)arg;
	fprintf(stderr, "  stream %d: %.*s: %.*s\n", fr->hd.stream_id, (int)nl, name, (int)vl,
		value);
	return 0;
}

static nghttp2_session_callbacks *cl_cb;
static nghttp2_option *cl_opt;

/* The output is whole frames (no flush leaves half of one). */
static void check_framing(const unsigned char *p, size_t n)
{
	size_t pos = 0;

	while (n - pos >= 9)
		pos += 9 + ((size_t)p[pos] << 16 | (size_t)p[pos + 1] << 8 | p[pos + 2]);
	if (pos != n) {
		fprintf(stderr, "fuzz_h2: output of %zu bytes ends inside a frame (at %zu)\n", n,
			pos);
		check_failed(__FILE__, __LINE__, "the server's output is whole HTTP/2 frames");
	}
}

static void oracle(const unsigned char *out, size_t n)
{
	struct verdict v = { 0 };
	nghttp2_session *cl;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, NGHTTP2_MAX_WINDOW_SIZE },
		{ NGHTTP2_SETTINGS_MAX_FRAME_SIZE,
		  max_frame_seen > FRAME_SIZE_MIN ? max_frame_seen : FRAME_SIZE_MIN },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
	};
	nghttp2_data_provider dp = { .read_callback = cl_no_body };
	ssize_t k;

	check_framing(out, n);
	/* Every stream opens before the server's SETTINGS are read (nghttp2
	 * would hold all but 100 back until then). */
	check(nghttp2_session_client_new2(&cl, cl_cb, &v, cl_opt) == 0);
	/* As many SETTINGS as the server acknowledges; the first with the
	 * largest windows and frames the server may have been allowed. */
	for (unsigned i = 0; i < settings_seen; i++)
		check(nghttp2_submit_settings(cl, NGHTTP2_FLAG_NONE, i ? NULL : iv,
					      i ? 0 : sizeof(iv) / sizeof(iv[0])) == 0);
	check(nghttp2_session_set_local_window_size(cl, NGHTTP2_FLAG_NONE, 0,
						    NGHTTP2_MAX_WINDOW_SIZE) == 0);
	for (unsigned i = 0; i < nmir; i++) {
		const struct mirror *m = &mir[i];
		nghttp2_nv nv[] = {
			{ (uint8_t *)":method", (uint8_t *)(m->mlen ? m->method : "GET"), 7,
			  (size_t)(m->mlen ? m->mlen : 3), 0 },
			{ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0 },
			{ (uint8_t *)":path", (uint8_t *)"/", 5, 1, 0 },
			{ (uint8_t *)":authority", (uint8_t *)"a", 10, 1, 0 },
		};

		check(nghttp2_session_set_next_stream_id(cl, m->id) == 0);
		check(nghttp2_submit_request(cl, NULL, nv, 4, m->end_stream ? NULL : &dp, NULL) ==
		      m->id);
	}
	check(nghttp2_session_send(cl) == 0 && nghttp2_session_get_outbound_queue_size(cl) == 0);
	k = nghttp2_session_mem_recv(cl, out, n);
	if (k < 0)
		bad(&v, "client mem_recv: %s", nghttp2_strerror((int)k));
	else if ((size_t)k != n)
		bad(&v, "client took %zd of %zu bytes", k, n);
	if (nghttp2_session_send(cl) != 0)
		bad(&v, "client send failed");
	nghttp2_session_del(cl);
	if (v.bad) {
		fprintf(stderr, "fuzz_h2: the server's HTTP/2 output (%zu bytes) is invalid: %s\n",
			n, v.why);
		check_failed(__FILE__, __LINE__,
			     "a client takes the server's output without an error");
	}
}

/* ---- configurations ---------------------------------------------------- */

static char root_dir[] = "/tmp/rtls-fuzz-h2-XXXXXX";
static struct rtls_http_config cfgs[8];
/* One access log: a thread keeps a ring for one log at a time, and
 * switching between two would make a new ring at every switch. */
static struct rtls_alog *alog;
static int fake_server; /* only its address: hc->server */
static int free_fd;     /* the lowest free descriptor as an input begins */

static void put_file(const char *rel, size_t size)
{
	char path[sizeof(root_dir) + 32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root_dir, rel);
	f = fopen(path, "w");
	check(f != NULL);
	for (size_t i = 0; i < size; i++)
		check(fputc("0123456789abcdefghijklmnopqrstuvwxyz\n"[i % 37], f) != EOF);
	check(fclose(f) == 0);
}

static void cleanup(void)
{
	static const char *const names[] = { "hello.txt", "index.html", "big.bin",
					     "empty",     "sub/a.css",  "sub" };
	char path[sizeof(root_dir) + 32];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root_dir, names[i]);
		if (unlink(path) < 0)
			rmdir(path);
	}
	rmdir(root_dir);
	rtls_http_alog_close(alog);
	if (cfgs[0].root_fd >= 0)
		close(cfgs[0].root_fd);
	rtls_http_stats_free(&cfgs[0]);
	nghttp2_session_callbacks_del(cl_cb);
	nghttp2_option_del(cl_opt);
	free(wire);
	free(conn.q);
}

/* bits 2-3 of byte 0: 0 --root, access log; 1 the built-in page, access
 * log; 2 --root with small limits; 3 the built-in page with small limits,
 * access log. Bit 6: the admin listener's. */
static const struct rtls_http_config *cfg_for(unsigned variant, bool admin)
{
	return &cfgs[variant << 1 | admin];
}

static void make_cfgs(void)
{
	struct rtls_http_config *hc;
	char sub[sizeof(root_dir) + 8];

	check(mkdtemp(root_dir) != NULL);
	put_file("hello.txt", 13);
	put_file("index.html", 200);
	put_file("big.bin", 70000); /* over a stream's first window */
	put_file("empty", 0);
	snprintf(sub, sizeof(sub), "%s/sub", root_dir);
	check(mkdir(sub, 0755) == 0);
	put_file("sub/a.css", 40);
	check(rtls_http_alog_open("/dev/null", RTLS_ALOG_COMBINED, &alog) == 0);
	for (unsigned i = 0; i < 8; i++) {
		unsigned variant = i >> 1;

		hc = &cfgs[i];
		rtls_http_config_defaults(hc);
		hc->http2 = true;
		if (!(variant & 1)) {
			hc->root = root_dir;
			if (i == 0)
				check(rtls_http_config_open(hc) == 0);
			else
				hc->root_fd = cfgs[0].root_fd;
		}
		if (variant & 2) {
			hc->max_head = 256;
			hc->max_target = 64;
			hc->max_headers = 8;
			hc->max_body = 64;
		}
		hc->alog = variant == 2 ? NULL : alog;
		if (i == 0)
			check(rtls_http_stats_init(hc) == 0);
		else
			hc->stats = cfgs[0].stats;
		if (i & 1) {
			hc->admin_listener = 0;
			hc->server = (const rtls_server *)&fake_server;
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	make_cfgs();
	check(__real_nghttp2_session_callbacks_new(&cl_cb) == 0);
	nghttp2_session_callbacks_set_send_callback(cl_cb, cl_send);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cl_cb, cl_invalid);
	nghttp2_session_callbacks_set_error_callback2(cl_cb, cl_error);
	nghttp2_session_callbacks_set_on_frame_send_callback(cl_cb, cl_frame_send);
	verbose = getenv("FUZZ_H2_VERBOSE") != NULL;
	/* Not the wrapped setters: those are for h2.c's callbacks. */
	__real_nghttp2_session_callbacks_set_on_frame_recv_callback(cl_cb, cl_frame_recv);
	if (verbose)
		__real_nghttp2_session_callbacks_set_on_header_callback(cl_cb, cl_header);
	check(nghttp2_option_new(&cl_opt) == 0);
	nghttp2_option_set_peer_max_concurrent_streams(cl_opt, UINT32_MAX);
	atexit(cleanup);
	return 0;
}

/* ---- driving one connection -------------------------------------------- */

static void deliver(rtls_conn *c, const uint8_t *p, size_t n)
{
	struct rtls_buf *b = calloc(1, sizeof(*b));
	char *d = malloc(n);

	check(b && d && c->nbufs < MAX_BUFS);
	memcpy(d, p, n);
	b->data = d;
	b->len = n;
	b->priv_id = c->nbufs;
	c->bufs[c->nbufs++] = b;
	c->h->on_data(c, c->data, b);
}

/* After each top-level callback: a closing connection lingers (nothing
 * is delivered), its output leaves, and on_close follows. */
static void settle(rtls_conn *c)
{
	if (c->st == C_CLOSING) {
		c->inflight = 0;
		gone(c, 0);
	}
}

/* The output in flight has left: on_drained. */
static void drain(rtls_conn *c)
{
	if (c->st != C_OPEN || !c->inflight)
		return;
	c->inflight = 0;
	if (c->h->on_drained)
		c->h->on_drained(c, c->data);
	settle(c);
}

static void fire_timer(rtls_conn *c)
{
	enum rtls_timer t = c->timer;

	if (c->st != C_OPEN || t == RTLS_TIMER_NONE)
		return;
	c->timer = RTLS_TIMER_NONE;
	if (c->h->on_timeout)
		c->h->on_timeout(c, c->data, t);
	else
		rtls_conn_abort(c, -ETIMEDOUT);
	settle(c);
}

static void shutdown_now(rtls_conn *c)
{
	if (c->st != C_OPEN || c->shut) {
		drain(c);
		return;
	}
	c->shut = true;
	if (!c->h->on_shutdown || c->h->on_shutdown(c, c->data))
		rtls_conn_close(c);
	settle(c);
}

static void event(rtls_conn *c, unsigned ev)
{
	switch (ev) {
	case 1:
		drain(c);
		break;
	case 2:
		fire_timer(c);
		break;
	case 3:
		shutdown_now(c);
		break;
	default:
		break;
	}
}

static size_t chunk_size(uint8_t e, size_t left)
{
	size_t v = e & 63, n = v == 0 ? left : v < 48 ? v : (v - 47) * 256;

	return n < left ? n : left;
}

/* The peer's end; held while reading is paused. */
static void peer_eof(rtls_conn *c)
{
	if (c->st != C_OPEN)
		return;
	c->eof = true;
	if (c->paused) {
		c->eof_pending = true;
		return;
	}
	deliver_eof(c);
	settle(c);
}

static void run(rtls_conn *c, const uint8_t *in, size_t len, const uint8_t *ev, size_t k,
		bool auto_drain, bool end)
{
	size_t pos = 0, i = 0, steps = 0;

	if (c->h->on_open(c, c->data) < 0) {
		gone(c, -ECONNABORTED);
		return;
	}
	while (pos < len && c->st == C_OPEN && steps++ < 4 * len + 64) {
		uint8_t e = k ? ev[i++ % k] : 0;
		size_t n = chunk_size(e, len - pos);

		if (c->paused) {
			/* The engine reads nothing more (but what was on its
			 * way, with byte 1 bit 7): only output leaving or a
			 * timer can move things on. */
			if (c->keep && !c->kept) {
				c->kept = in + pos;
				c->kept_n = n;
				pos += n;
			}
			if (c->inflight)
				drain(c);
			else if (c->timer != RTLS_TIMER_NONE)
				fire_timer(c);
			else
				break;
			continue;
		}
		deliver(c, in + pos, n);
		pos += n;
		settle(c);
		event(c, e >> 6);
		if (auto_drain)
			drain(c);
	}
	if (end)
		peer_eof(c);
	/* What is left to send leaves; then the armed timer fires; then a
	 * connection still open is cut, as at the end of a shutdown. */
	for (int round = 0; round < 2 && c->st == C_OPEN; round++) {
		for (int j = 0; j < 64 && c->st == C_OPEN && c->inflight; j++)
			drain(c);
		if (round == 0)
			fire_timer(c);
	}
	gone(c, -ECONNRESET);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static const uint8_t settings[9] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };
	rtls_conn *c = &conn;
	uint8_t *in;
	size_t k, len;
	unsigned flags;
	int fd;

	if (size < 2 || size < 2 + (size_t)(data[1] & 15))
		return 0;
	/* Asked per input: libFuzzer's symbolizer opens pipes between them. */
	free_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	check(free_fd >= 0);
	close(free_fd);
	flags = data[0];
	k = data[1] & 15;
	/* The preface (and SETTINGS) first, so that most inputs are frames. */
	len = size - 2 - k + (flags & 1 ? 24 + (flags & 2 ? 9 : 0) : 0);
	in = malloc(len ? len : 1);
	check(in != NULL);
	len = 0;
	if (flags & 1) {
		memcpy(in, preface, 24);
		len = 24;
		if (flags & 2) {
			memcpy(in + len, settings, 9);
			len += 9;
		}
	}
	memcpy(in + len, data + 2 + k, size - 2 - k);
	len += size - 2 - k;

	free(c->q);
	memset(c, 0, sizeof(*c));
	c->h = &rtls_http_handler;
	c->data = calloc(1, rtls_http_handler.conn_data_size);
	check(c->data != NULL);
	c->ctx = (void *)cfg_for(flags >> 2 & 3, flags & 0x40);
	c->tls = flags & 0x10;
	c->file_fail = data[1] & 0x10;
	c->keep = data[1] & 0x80;
	c->alpn = data[1] & 0x40 ? "" : data[1] & 0x20 ? "http/1.1" : "h2";
	wire_len = 0;
	nmir = 0;
	server_sessions = 0;
	settings_seen = 0;
	max_frame_seen = 0;

	run(c, in, len, data + 2, k, flags & 0x80, flags & 0x20);

	/* HTTP/2: the output is all frames. */
	check(server_sessions <= 1);
	if (server_sessions && !c->overflow)
		oracle(wire, wire_len);
	free(c->data);
	c->data = NULL;
	free(in);
	/* No descriptor left open: the lowest free one is the same. */
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd != free_fd) {
		char path[64], target[256];

		fprintf(stderr, "fuzz_h2: lowest free descriptor %d, was %d\n", fd, free_fd);
		for (int i = 0; i < 64; i++) {
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/self/fd/%d", i);
			n = readlink(path, target, sizeof(target) - 1);
			if (n > 0)
				fprintf(stderr, "  fd %d: %.*s\n", i, (int)n, target);
		}
		check_failed(__FILE__, __LINE__, "no descriptor left open");
	}
	close(fd);
	return 0;
}
