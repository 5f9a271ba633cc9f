/* rtls_server_stats() through the public API: every counter 0 before
 * start; the size argument (a smaller struct gets its prefix, a bigger
 * one a zeroed tail; NULL is -EINVAL); then a running server with two
 * reactors: N connections each sending B bytes and closing count
 * exactly N accepted, N closed by the peer, N*B bytes in and the echoed
 * N*B out, and none open; and a connection whose first byte asks for
 * the IDLE timer (200 ms) counts one IDLE timeout, closed as a timeout.
 * 77 without io_uring. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ringtls/ringtls.h"
#include "unit/check.h"

#define CONNS 6
#define BYTES 1000

/* Echoes; "T" arms the IDLE timer instead (no on_timeout: it aborts). */
static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	(void)data;
	if (b->len == 1 && b->data[0] == 'T')
		rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
	else
		rtls_conn_write(c, b->data, b->len);
	rtls_buf_release(c, b);
	rtls_conn_flush(c);
}

static const struct rtls_handler handler = { .on_data = on_data };

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int dial(rtls_server *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct timeval tv = { .tv_sec = 5 }; /* every read is bounded */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    rtls_server_listen_addr(s, 0, &ss, &len) < 0 ||
	    connect(fd, (struct sockaddr *)&ss, len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Waits (at most 5 s) until cond holds for a fresh snapshot in *st. */
#define WAIT_FOR(s, st, cond)                                        \
	do {                                                         \
		for (int w_ = 0; w_ < 500; w_++) {                   \
			rtls_server_stats((s), (st), sizeof(*(st))); \
			if (cond)                                    \
				break;                               \
			sleep_ms(10);                                \
		}                                                    \
	} while (0)

static void test_sizes(rtls_server *s)
{
	struct rtls_stats st;
	unsigned char big[sizeof(st) + 16];
	bool zero = true;

	memset(&st, 0xff, sizeof(st));
	CHECK_EQ_INT(rtls_server_stats(s, &st, sizeof(st)), sizeof(st));
	for (size_t i = 0; i < sizeof(st); i++)
		zero = zero && ((unsigned char *)&st)[i] == 0;
	CHECK(zero);
	memset(&st, 0xff, sizeof(st));
	CHECK_EQ_INT(rtls_server_stats(s, &st, offsetof(struct rtls_stats, conns_open)),
		     offsetof(struct rtls_stats, conns_open));
	CHECK(st.conns_accepted == 0 && st.conns_outbound == 0 && st.conns_open == UINT64_MAX);
	memset(big, 0xff, sizeof(big));
	CHECK_EQ_INT(rtls_server_stats(s, (struct rtls_stats *)(void *)big, sizeof(big)),
		     sizeof(st));
	zero = true;
	for (size_t i = 0; i < sizeof(big); i++)
		zero = zero && big[i] == 0;
	CHECK(zero);
	CHECK_EQ_INT(rtls_server_stats(NULL, &st, sizeof(st)), -EINVAL);
	CHECK_EQ_INT(rtls_server_stats(s, NULL, sizeof(st)), -EINVAL);
}

static void test_counts(rtls_server *s)
{
	struct rtls_stats st;
	char buf[BYTES];
	int fds[CONNS];

	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < CONNS; i++) {
		size_t got = 0;

		fds[i] = dial(s);
		CHECK(fds[i] >= 0);
		if (fds[i] < 0 || write(fds[i], buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			continue;
		while (got < sizeof(buf)) { /* the echo: the bytes went out */
			ssize_t n = read(fds[i], buf, sizeof(buf) - got);

			if (n < 0 && errno == EINTR)
				continue; /* SO_RCVTIMEO makes a read EINTR, not restarted */
			if (n <= 0) {
				fprintf(stderr, "conn %d: read: %s\n", i,
					n ? strerror(errno) : "EOF");
				break;
			}
			got += (size_t)n;
		}
		CHECK_EQ_INT(got, sizeof(buf));
	}
	WAIT_FOR(s, &st, st.conns_open == CONNS);
	CHECK_EQ_INT(st.conns_accepted, CONNS);
	CHECK_EQ_INT(st.conns_open, CONNS);
	for (int i = 0; i < CONNS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	WAIT_FOR(s, &st, st.conns_open == 0);
	CHECK_EQ_INT(st.conns_accepted, CONNS);
	CHECK_EQ_INT(st.conns_open, 0);
	CHECK_EQ_INT(st.conns_closed[RTLS_STATS_CLOSE_PEER], CONNS);
	CHECK_EQ_INT(st.bytes_in, CONNS * BYTES);
	CHECK_EQ_INT(st.bytes_out, CONNS * BYTES);
	CHECK_EQ_INT(st.timeouts[RTLS_TIMER_IDLE], 0);
	CHECK_EQ_INT(st.conns_outbound, 0);
	CHECK_EQ_INT(st.tls_handshakes[RTLS_STATS_TLS13][0], 0);
}

static void test_timeout(rtls_server *s)
{
	struct rtls_stats st;
	int fd = dial(s);
	ssize_t n;
	char c;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	/* The IDLE timer (200 ms here) ends it: no on_timeout, so an abort. */
	CHECK_EQ_INT(write(fd, "T", 1), 1);
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	CHECK_EQ_INT(n, 0);
	close(fd);
	WAIT_FOR(s, &st, st.conns_open == 0);
	CHECK_EQ_INT(st.timeouts[RTLS_TIMER_IDLE], 1);
	CHECK_EQ_INT(st.conns_closed[RTLS_STATS_CLOSE_TIMEOUT], 1);
	CHECK_EQ_INT(st.conns_accepted, CONNS + 1);
}

int main(void)
{
	static const struct rtls_listen l = { .addr = "127.0.0.1:0" };
	struct rtls_config cfg = { .listeners = &l,
				   .nlisteners = 1,
				   .handler = &handler,
				   .threads = 2,
				   .max_conns = 32,
				   .buf_count = 16,
				   .ring_entries = 64,
				   .shutdown_ms = 2000 };
	struct rtls_stats st;
	rtls_server *s;
	char why[256];
	int ret;

	cfg.timeout_ms[RTLS_TIMER_IDLE] = 200;
	ret = rtls_server_create(&cfg, &s, why, sizeof(why));
	if (ret == -ENOSYS || ret == -EPERM) {
		printf("SKIP: %s\n", why);
		return 77;
	}
	CHECK_EQ_INT(ret, 0);
	if (ret < 0)
		CHECK_DONE();
	test_sizes(s);
	CHECK_EQ_INT(rtls_server_start(s), 0);
	test_counts(s);
	test_timeout(s);
	rtls_server_stop(s);
	CHECK_EQ_INT(rtls_server_wait(s), 0);
	/* Still readable after the reactors stopped, until destroy. */
	CHECK_EQ_INT(rtls_server_stats(s, &st, sizeof(st)), sizeof(st));
	CHECK_EQ_INT(st.conns_accepted, CONNS + 1);
	rtls_server_destroy(s);
	CHECK_DONE();
}
