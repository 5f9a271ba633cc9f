/* TCP mode (--tcp-proxy LISTEN=UPSTREAM): a TLS listener whose plaintext
 * goes to an upstream as it is, both ways, and the upstream's back.
 *
 * Each client gets its own upstream connection on the same reactor; both
 * sides run this handler, each with a struct tside in its data area. The
 * accepted connection is handed over from the HTTP handler in its on_open
 * (rtls_conn_set_handler()).
 *
 * Each direction ends on its own (a half-close is carried through): the
 * client's close_notify and FIN, or a FIN alone (truncation, logged as
 * such), shut the upstream's write side while the upstream's data keeps
 * coming back; the upstream's FIN becomes our close_notify and FIN while
 * the client can still send. A side closes once both of its directions
 * are done. A client's FIN without close_notify (truncation) is passed
 * on as a FIN too, as the issue asks, and the log line says it was one.
 * An abnormal end of either side (a reset, an error, the idle deadline)
 * is carried to both as a reset, never as a clean end that would make a
 * cut stream look complete.
 *
 * One log line per connection, at the end of the later side. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/proxyproto.h"
#include "internal.h"

/* Stop reading a side while the other has this much unsent (as the
 * reverse proxy does). */
#define HIGH_WATER ((size_t)256 * 1024)

static const struct rtls_http_tcp *route_of(const struct rtls_http_config *hc, unsigned listener)
{
	for (unsigned i = 0; i < hc->ntcp; i++)
		if (hc->tcp[i].listener >= 0 && (unsigned)hc->tcp[i].listener == listener)
			return &hc->tcp[i];
	return NULL;
}

static struct tside *side(rtls_conn *c)
{
	return rtls_conn_data(c);
}

/* The session's record: the client's, or the upstream's once the client
 * has gone first and handed it over. */
static struct tsess *sess(struct tside *t)
{
	if (t->logs)
		return &t->s;
	return t->other ? &side(t->other)->s : &t->s;
}

static const char *end_name(enum tend e)
{
	switch (e) {
	case TEND_CLOSE_NOTIFY:
		return "close_notify";
	case TEND_FIN:
		return "FIN";
	case TEND_TRUNCATED:
		return "truncated (FIN without close_notify)";
	case TEND_CLOSED:
		return "closed by us";
	case TEND_TIMEOUT:
		return "idle timeout";
	case TEND_REFUSED:
		return "connect failed";
	case TEND_RESET:
		return "reset by us";
	case TEND_ERROR:
		return "error";
	case TEND_NONE:
	default:
		return "open";
	}
}

static void log_session(const struct tsess *s)
{
	char cerr[64] = "", uerr[64] = "";

	if (s->client_err)
		snprintf(cerr, sizeof(cerr), " (%s)", strerror(-s->client_err));
	if (s->up_err)
		snprintf(uerr, sizeof(uerr), " (%s)", strerror(-s->up_err));
	rtls_log(RTLS_LOG_INFO,
		 "tcp-proxy %s -> %s: %.3f s, client to upstream %llu bytes (spliced %llu, "
		 "copied %llu), upstream to client %llu bytes (spliced %llu, copied %llu), "
		 "client end: %s%s, upstream end: %s%s",
		 s->client, s->up ? s->up->name : "-",
		 (double)(rtls__http_now_ms() - s->t0_ms) / 1000.0,
		 (unsigned long long)s->to_up + s->to_up_spliced,
		 (unsigned long long)s->to_up_spliced, (unsigned long long)s->to_up,
		 (unsigned long long)s->to_client + s->to_client_spliced,
		 (unsigned long long)s->to_client_spliced, (unsigned long long)s->to_client,
		 end_name((enum tend)s->client_end), cerr, end_name((enum tend)s->up_end), uerr);
}

static void set_end(struct tside *t, enum tend e, int err)
{
	struct tsess *s = sess(t);
	uint8_t *end = t->upstream ? &s->up_end : &s->client_end;
	int *e_err = t->upstream ? &s->up_err : &s->client_err;

	if (*end != TEND_NONE)
		return; /* the first reason stands */
	*end = (uint8_t)e;
	*e_err = err;
}

extern const struct rtls_handler rtls__tcp_handler;

/* A connection to the next upstream that is up, skipping `skip`. */
static int connect_next(rtls_conn *c, struct tside *t, const struct rtls_http_upstream *skip)
{
	struct rtls_http_upstream *srv;
	struct tside *u;
	rtls_conn *up;
	int ret;

	while ((srv = rtls__proxy_pick(&t->route->rt, skip)) != NULL) {
		t->tries++;
		t->s.up = srv;
		ret = rtls__upstream_connect(c, rtls_conn_ctx(c), srv, &rtls__tcp_handler, c, &up);
		if (ret == 0) {
			u = side(up);
			u->self = up;
			u->other = c;
			u->upstream = true;
			u->srv = srv;
			t->other = up;
			return 0;
		}
		/* No slot, no socket, the server stopping: not the
		 * upstream's fault, so no other server either. */
		rtls_log(RTLS_LOG_WARN, "tcp-proxy: upstream %s: %s", srv->name, strerror(-ret));
		return ret;
	}
	rtls_log(RTLS_LOG_WARN, "tcp-proxy: no upstream of %s is up", t->route->listen);
	return -EHOSTUNREACH;
}

/* The HTTP handler's on_open hands a --tcp-proxy listener's connection
 * over here. 1: it is one (and ret says how it went), 0: it is not. */
int rtls__tcp_open(rtls_conn *c, unsigned listener, int *ret)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	const struct rtls_http_tcp *rt = route_of(hc, listener);
	struct tside *t = side(c);

	if (!rt)
		return 0;
	*ret = rtls_conn_set_handler(c, &rtls__tcp_handler);
	if (*ret < 0)
		return 1;
	memset(t, 0, sizeof(*t));
	t->self = c;
	t->route = rt;
	t->logs = true;
	t->s.t0_ms = rtls__http_now_ms();
	rtls_conn_peer(c, t->s.client, sizeof(t->s.client));
	/* Nowhere to write to until the upstream is open. */
	rtls_conn_pause_read(c);
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	*ret = connect_next(c, t, NULL);
	if (*ret < 0) {
		t->s.up_end = TEND_REFUSED;
		t->s.up_err = *ret;
		t->s.client_end = TEND_RESET;
		*ret = -ECONNRESET; /* the engine resets the client */
	}
	return 1;
}

/* The upstream's connect completed. */
static int on_open(rtls_conn *c, void *data)
{
	const struct rtls_http_config *hc = rtls_conn_ctx(c);
	struct tside *t = data;
	rtls_conn *cl = t->other;

	t->opened = true;
	if (!cl)
		return -ECANCELED;
	if (hc->upstream_proxy_protocol && !t->srv->tls) { /* TLS: sent at connect */
		struct rtls_conn_info ci;
		char pp[512];
		int n = -EINVAL;

		if (rtls_conn_query(cl, &ci) == 0)
			n = rtls__proxy_header_build(pp, sizeof(pp), hc->upstream_proxy_protocol,
						     &ci);
		if (n < 0 || rtls_conn_write(c, pp, (size_t)n) < 0 || rtls_conn_flush(c) < 0) {
			rtls_log(RTLS_LOG_WARN, "tcp-proxy: cannot send the PROXY protocol header");
			return n < 0 ? n : -EIO;
		}
	}
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	rtls_conn_resume_read(cl); /* what the client sent meanwhile, then more */
	/* From here on, each direction whose records the kernel handles
	 * (kTLS) is spliced; the others go on through on_data. */
	if (t->other == cl) {
		/* -EBUSY: the client's early bytes filled c past the high
		 * water and paused it; on_drained tries again. */
		side(cl)->fwd_retry = rtls_conn_forward(cl, c) == -EBUSY;
		(void)rtls_conn_forward(c, cl);
	}
	return 0;
}

static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	struct tside *t = data;
	rtls_conn *o = t->other;
	size_t n = b->len;

	if (!o) {
		rtls_buf_release(c, b);
		return;
	}
	if (t->upstream)
		sess(t)->to_client += n;
	else
		sess(t)->to_up += n;
	/* Either side's progress keeps both alive: a side paused for a slow
	 * reader on the other sees no input of its own meanwhile. */
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	rtls_conn_set_timer(o, RTLS_TIMER_IDLE);
	if (rtls_conn_write(o, b->data, n) < 0) {
		rtls_buf_release(c, b);
		set_end(t, TEND_RESET, -EPIPE);
		rtls_conn_abort(c, -ECONNRESET);
		return;
	}
	rtls_buf_release(c, b);
	rtls_conn_flush(o); /* may end o: t->other is NULL then */
	if (t->other && rtls_conn_pending(t->other) > HIGH_WATER)
		rtls_conn_pause_read(c); /* until the other side's on_drained */
}

/* c's output has left: read its partner again. */
static void on_drained(rtls_conn *c, void *data)
{
	struct tside *t = data;

	if (!t->other)
		return;
	rtls_conn_resume_read(t->other);
	if (t->other && side(t->other)->fwd_retry)
		side(t->other)->fwd_retry = rtls_conn_forward(t->other, c) == -EBUSY;
}

/* c has nothing more to read from and nothing more to write to. */
static void maybe_done(rtls_conn *c, struct tside *t)
{
	if (t->eof_in && t->wr_shut)
		rtls_conn_close(c);
}

/* c's peer ended its direction: end the same direction on the other
 * side (close_notify and FIN to the client, FIN to the upstream). */
static void on_eof(rtls_conn *c, void *data)
{
	struct tside *t = data;
	rtls_conn *o = t->other;

	t->eof_in = true;
	/* A TLS peer's end (the client; a tls:// upstream): close_notify
	 * or a truncation. */
	if (!t->upstream || t->srv->tls)
		set_end(t,
			rtls_conn_eof(c) == RTLS_EOF_TRUNCATED ? TEND_TRUNCATED : TEND_CLOSE_NOTIFY,
			0);
	else
		set_end(t, TEND_FIN, 0);
	if (!o) {
		rtls_conn_close(c);
		return;
	}
	side(o)->wr_shut = true;
	if (side(o)->eof_in) {
		rtls_conn_close(o);
	} else if (rtls_conn_shutdown_write(o) < 0) {
		rtls_conn_close(c);
		return;
	}
	/* That may have ended o, and with it c: c's callbacks then still
	 * see its data area, and closing twice does nothing. */
	maybe_done(c, t);
}

static void on_timeout(rtls_conn *c, void *data, enum rtls_timer which)
{
	struct tside *t = data;

	(void)which;
	set_end(t, TEND_TIMEOUT, 0);
	/* Both peers see a reset: an idle stream cut short is not a clean end. */
	rtls_conn_abort(c, -ECONNRESET);
}

/* Server shutdown: a stream has no request boundary to stop at. It goes
 * on until it ends, or until the shutdown deadline aborts it. */
static int on_shutdown(rtls_conn *c, void *data)
{
	(void)c;
	(void)data;
	return 0;
}

static bool connect_failure(int err)
{
	return err == -ECONNREFUSED || err == -ETIMEDOUT || err == -ENETUNREACH ||
	       err == -EHOSTUNREACH || err == -ENOENT;
}

/* The upstream's connect failed before a byte went: mark its server down
 * and try another, once; or reset the client. */
static void connect_failed(struct tside *t, rtls_conn *cl, int err)
{
	struct tside *ct = side(cl);

	if (rtls__proxy_mark_down(t->srv))
		rtls_log(RTLS_LOG_WARN, "tcp-proxy: upstream %s: %s: marked down for 10 s",
			 t->srv->name, strerror(-err));
	ct->other = NULL;
	if (ct->tries < 2) {
		ct->s.up_end = TEND_NONE;
		ct->s.up_err = 0;
		if (connect_next(cl, ct, t->srv) == 0)
			return;
	}
	ct->s.up_end = TEND_REFUSED;
	ct->s.up_err = err;
	set_end(ct, TEND_RESET, 0);
	rtls_conn_abort(cl, -ECONNRESET);
}

static void on_close(rtls_conn *c, void *data, int err)
{
	struct tside *t = data;
	rtls_conn *o = t->other;
	bool clean;

	if (t->upstream)
		sess(t)->to_client_spliced += rtls_conn_forwarded(c);
	else
		sess(t)->to_up_spliced += rtls_conn_forwarded(c);
	if (t->upstream && !t->opened && o && connect_failure(err)) {
		t->other = NULL;
		connect_failed(t, o, err);
		return;
	}
	/* Clean only once both of its directions were done (or its partner
	 * had gone): the engine also ends a connection with 0 on its own
	 * (a TLS failure after its alert, a key it cannot renew), and that
	 * is no clean end of the stream. */
	clean = err == 0 && ((t->eof_in && t->wr_shut) || !o);
	if (clean)
		set_end(t, TEND_CLOSED, 0);
	else
		set_end(t, t->upstream && !t->opened ? TEND_REFUSED : TEND_ERROR,
			err ? err : -EPROTO);
	t->other = NULL;
	if (o) {
		struct tside *ot = side(o);

		ot->other = NULL;
		if (t->logs) { /* the later side logs */
			ot->s = t->s;
			ot->logs = true;
			t->logs = false;
		}
		if (clean) {
			rtls_conn_close(o); /* what it has queued, then its end */
		} else {
			/* A cut on one side must not look like a clean end on
			 * the other: a reset, not close_notify. */
			set_end(ot, TEND_RESET, 0);
			rtls_conn_abort(o, -ECONNRESET);
		}
	}
	if (t->logs)
		log_session(&t->s);
}

const struct rtls_handler rtls__tcp_handler = {
	.conn_data_size = sizeof(struct tside),
	.on_open = on_open,
	.on_data = on_data,
	.on_eof = on_eof,
	.on_drained = on_drained,
	.on_timeout = on_timeout,
	.on_shutdown = on_shutdown,
	.on_close = on_close,
};
