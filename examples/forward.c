/* forward: a plain TCP forwarder on the public API. Run: ./forward LISTEN UPSTREAM [CONNECT_MS]
 * UPSTREAM is "IP:PORT", "[IPv6]:PORT" or "unix:/path". Each client gets its own upstream
 * connection, on the same reactor; bytes flow both ways with backpressure.
 * Build against an installed librtls: cc forward.c $(pkg-config --cflags --libs ringtls) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringtls/ringtls.h"

/* Stop reading a side while the other has this much unsent. */
#define HIGH_WATER ((size_t)1024 * 1024)

struct side {
	rtls_conn *other; /* each side's data area: its partner, NULL once gone */
	int eof;          /* its peer has finished sending */
	int shut;         /* we have finished sending to it */
};
static const char *upstream;

static int on_open(rtls_conn *c, void *data)
{
	struct side *s = data;
	int ret;

	if (rtls_conn_arg(c)) { /* an upstream (arg: its client): the connect completed */
		rtls_conn_resume_read(s->other);
		/* Both ways by splice from now on, never through this process;
		 * where the engine cannot (-EOPNOTSUPP, -EBUSY), on_data copies. */
		if (s->other) {
			(void)rtls_conn_forward(s->other, c);
			(void)rtls_conn_forward(c, s->other);
		}
		return 0;
	}
	ret = rtls_conn_connect(c, upstream, NULL, c, &s->other); /* NULL: this same handler */
	if (ret < 0)
		return ret; /* closes the client */
	/* The upstream's data area is zeroed now, and on_open keeps it. */
	((struct side *)rtls_conn_data(s->other))->other = c;
	rtls_conn_pause_read(c); /* nowhere to write to until the upstream is open */
	return 0;
}

static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	struct side *s = data;

	if (s->other && rtls_conn_write(s->other, b->data, b->len) == 0)
		rtls_conn_flush(s->other); /* may end it: s->other is NULL then */
	rtls_buf_release(c, b);
	if (s->other && rtls_conn_pending(s->other) > HIGH_WATER)
		rtls_conn_pause_read(c); /* until the other side's on_drained */
}

static void on_drained(rtls_conn *c, void *data) /* c's output left: read its partner again */
{
	(void)c;
	if (((struct side *)data)->other)
		rtls_conn_resume_read(((struct side *)data)->other);
}

/* c's peer has finished: so does the partner's stream (a half-close is
 * carried through); a side closes once both of its directions are done. */
static void on_eof(rtls_conn *c, void *data)
{
	struct side *s = data;

	s->eof = 1;
	if (s->other) {
		struct side *o = rtls_conn_data(s->other);

		o->shut = 1;
		if (o->eof)
			rtls_conn_close(s->other);
		else
			rtls_conn_shutdown_write(s->other); /* what it has queued, then FIN */
	}
	if (!s->other || s->shut)
		rtls_conn_close(c);
}

static void on_close(rtls_conn *c, void *data, int err)
{
	struct side *s = data;
	rtls_conn *o = s->other;

	if (err && rtls_conn_arg(c)) /* an upstream that failed or broke */
		rtls_log(RTLS_LOG_INFO, "upstream %s: %s", upstream, strerror(-err));
	if (rtls_conn_forwarded(c))
		rtls_log(RTLS_LOG_INFO, "%s: %llu bytes spliced",
			 rtls_conn_arg(c) ? "upstream" : "client",
			 (unsigned long long)rtls_conn_forwarded(c));
	s->other = NULL;
	if (o) { /* unpair first: closing o may run its on_close now */
		((struct side *)rtls_conn_data(o))->other = NULL;
		rtls_conn_close(o); /* sends what it has queued, then FIN */
	}
}

int main(int argc, char **argv)
{
	static const struct rtls_handler h = { .conn_data_size = sizeof(struct side),
					       .on_open = on_open,
					       .on_data = on_data,
					       .on_eof = on_eof,
					       .on_drained = on_drained,
					       .on_close = on_close };
	struct rtls_listen l = { .addr = argc > 1 ? argv[1] : "" };
	struct rtls_config cfg = { .listeners = &l, .nlisteners = 1, .handler = &h };
	struct sockaddr_storage ss;
	socklen_t len;
	rtls_server *srv;
	char why[256], addr[64];

	if (argc < 3)
		return fprintf(stderr, "usage: forward LISTEN UPSTREAM [CONNECT_MS]\n"), 2;
	upstream = argv[2];
	cfg.timeout_ms[RTLS_TIMER_CONNECT] = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
	if (rtls_server_create(&cfg, &srv, why, sizeof(why)) < 0) {
		fprintf(stderr, "forward: %s\n", why);
		return 1;
	}
	rtls_server_listen_addr(srv, 0, &ss, &len);
	rtls_format_addr(&ss, addr, sizeof(addr));
	rtls_log(RTLS_LOG_INFO, "listening on %s", addr);
	int ret = rtls_server_run_until_signal(srv); /* SIGINT/SIGTERM: graceful stop */
	rtls_server_destroy(srv);
	return ret < 0;
}
