/* echo: the whole ringtls API in one page. Run: ./echo 127.0.0.1:7000
 * Build against an installed librtls: cc echo.c $(pkg-config --cflags --libs ringtls) */
#include <stdio.h>

#include "ringtls/ringtls.h"

struct echo_conn { unsigned long bytes; }; /* per-connection state, in the engine's data area */

static int on_open(rtls_conn *c, void *data)
{
	struct rtls_conn_info info;

	(void)data;
	rtls_conn_query(c, &info); /* what is underneath: only when we ask */
	rtls_log(RTLS_LOG_INFO, "open (%s)", info.transport == RTLS_TRANSPORT_TLS ? "tls" : "plain");
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	return 0;
}

static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	struct echo_conn *e = data;

	e->bytes += b->len;
	rtls_conn_write(c, b->data, b->len); /* copies the plaintext into the output queue */
	rtls_buf_release(c, b);              /* the buffer goes back to the ring, once */
	rtls_conn_flush(c);                  /* one send for everything queued */
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE); /* idle again from now */
}

static void on_eof(rtls_conn *c, void *data) { (void)data; rtls_conn_close(c); /* flush, FIN */ }

static void on_close(rtls_conn *c, void *data, int err)
{
	struct echo_conn *e = data;

	(void)c;
	rtls_log(RTLS_LOG_INFO, "closed after %lu bytes (%d)", e->bytes, err);
}

int main(int argc, char **argv)
{
	static const struct rtls_handler h = { .conn_data_size = sizeof(struct echo_conn),
		.on_open = on_open, .on_data = on_data, .on_eof = on_eof, .on_close = on_close };
	struct rtls_listen l = { .addr = argc > 1 ? argv[1] : "127.0.0.1:7000" };
	struct rtls_config cfg = { .listeners = &l, .nlisteners = 1, .handler = &h };
	struct sockaddr_storage ss;
	socklen_t len;
	rtls_server *s;
	char why[256], addr[64];

	if (rtls_server_create(&cfg, &s, why, sizeof(why)) < 0) {
		fprintf(stderr, "echo: %s\n", why);
		return 1;
	}
	rtls_server_listen_addr(s, 0, &ss, &len); /* the real port, with port 0 */
	rtls_format_addr(&ss, addr, sizeof(addr));
	rtls_log(RTLS_LOG_INFO, "listening on %s", addr);
	int ret = rtls_server_run_until_signal(s); /* SIGINT/SIGTERM: graceful stop */
	rtls_server_destroy(s);
	return ret < 0;
}
