/* hold: a test server (public API only) whose handler can keep receive
 * buffers, to run a reactor out of them on purpose (test_starved_rearm.py).
 *
 *   hold [IDLE_MS]
 *
 * One reactor, 8 provided receive buffers of 4 KiB, a plaintext listener
 * on an ephemeral loopback port ("listening on 127.0.0.1:PORT" on stderr).
 * A connection whose first byte is 'H' keeps every buffer it receives and
 * answers "held N\n"; IDLE_MS (default 2000) after its last input it gives
 * them all back and answers "released\n". Any other connection echoes. */
#include <stdio.h>
#include <stdlib.h>

#include "ringtls/ringtls.h"

#define MAX_HELD 64

struct hold_conn {
	int holding;
	unsigned n;
	struct rtls_buf held[MAX_HELD];
};

static void say(rtls_conn *c, const char *fmt, unsigned n)
{
	char line[64];
	int len = snprintf(line, sizeof(line), fmt, n);

	rtls_conn_write(c, line, (size_t)len);
	rtls_conn_flush(c);
}

static void give_back(rtls_conn *c, struct hold_conn *h)
{
	for (unsigned i = 0; i < h->n; i++)
		rtls_buf_release(c, &h->held[i]);
	h->n = 0;
}

static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	struct hold_conn *h = data;

	if (b->len && b->data[0] == 'H')
		h->holding = 1;
	if (!h->holding || h->n == MAX_HELD) {
		rtls_conn_write(c, b->data, b->len);
		rtls_buf_release(c, b);
		rtls_conn_flush(c);
		return;
	}
	h->held[h->n++] = *b;
	say(c, "held %u\n", h->n);
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
}

static void on_timeout(rtls_conn *c, void *data, enum rtls_timer t)
{
	struct hold_conn *h = data;

	(void)t;
	if (!h->holding) {
		rtls_conn_close(c);
		return;
	}
	give_back(c, h);
	h->holding = 0;
	say(c, "released%.0u\n", 0);
}

static void on_eof(rtls_conn *c, void *data)
{
	(void)data;
	rtls_conn_close(c);
}

static void on_close(rtls_conn *c, void *data, int err)
{
	(void)err;
	give_back(c, data);
}

int main(int argc, char **argv)
{
	static const struct rtls_handler h = { .conn_data_size = sizeof(struct hold_conn),
		.on_data = on_data, .on_eof = on_eof, .on_timeout = on_timeout,
		.on_close = on_close };
	struct rtls_listen l = { .addr = "127.0.0.1:0" };
	struct rtls_config cfg = { .listeners = &l, .nlisteners = 1, .handler = &h,
				   .threads = 1, .buf_count = 8, .buf_size = 4096 };
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256], addr[64];
	rtls_server *s;
	int ret;

	cfg.timeout_ms[RTLS_TIMER_IDLE] = argc > 1 ? (unsigned)atoi(argv[1]) : 2000;
	if (rtls_server_create(&cfg, &s, why, sizeof(why)) < 0) {
		fprintf(stderr, "hold: %s\n", why);
		return 1;
	}
	rtls_server_listen_addr(s, 0, &ss, &len);
	rtls_format_addr(&ss, addr, sizeof(addr));
	fprintf(stderr, "listening on %s\n", addr);
	ret = rtls_server_run_until_signal(s);
	rtls_server_destroy(s);
	return ret < 0;
}
