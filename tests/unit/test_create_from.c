/* rtls_server_create_from() (a reload), through the public API only:
 * - a listener given by the same text ("127.0.0.1:0") keeps prev's port;
 * - once the successor has taken the sockets over, prev's stop neither
 *   shuts them down nor empties their queues: a client that connects
 *   after prev stopped and before the successor runs is queued, not
 *   refused, and the successor answers it;
 * - a listener only prev had is closed by prev's stop (refused once
 *   rtls_server_stop_accepting() has returned);
 * - the successor may run more reactors than prev (a new socket joins the
 *   SO_REUSEPORT group) and every connection is answered;
 * - a successor destroyed without having run gives the sockets back:
 *   prev's stop then shuts them down again (refused after);
 * - a listener named by prev's bound address is taken over too, by a
 *   successor with fewer reactors than prev: every connection answered.
 * A hang is a failure: SIGALRM ends the test. 77 without io_uring. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringtls/ringtls.h"
#include "unit/check.h"

static int on_open_a(rtls_conn *c, void *data)
{
	(void)data;
	rtls_conn_write(c, "A", 1);
	rtls_conn_close(c);
	return 0;
}

static int on_open_b(rtls_conn *c, void *data)
{
	(void)data;
	rtls_conn_write(c, "B", 1);
	rtls_conn_close(c);
	return 0;
}

static const struct rtls_handler handler_a = { .on_open = on_open_a };
static const struct rtls_handler handler_b = { .on_open = on_open_b };

static struct rtls_config config(const struct rtls_listen *l, unsigned n, unsigned threads,
				 const struct rtls_handler *h)
{
	return (struct rtls_config){ .listeners = l,
				     .nlisteners = n,
				     .handler = h,
				     .threads = threads,
				     .max_conns = 64,
				     .buf_count = 16,
				     .ring_entries = 64,
				     .shutdown_ms = 2000 };
}

static struct sockaddr_in addr_of(rtls_server *s, unsigned i)
{
	struct sockaddr_storage ss;
	struct sockaddr_in a = { 0 };
	socklen_t len;

	if (rtls_server_listen_addr(s, i, &ss, &len) == 0 && ss.ss_family == AF_INET)
		memcpy(&a, &ss, sizeof(a));
	return a;
}

/* Connects to a: the socket, or -errno. */
static int dial(const struct sockaddr_in *a)
{
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* The byte the server wrote on fd, then EOF; 0 if none came. Closes fd. */
static char answer(int fd)
{
	char buf[4] = { 0 };
	ssize_t got = 0, r;

	/* EINTR: a read with SO_RCVTIMEO is not restarted, and io_uring's
	 * task work for this thread (its rings' files closing) interrupts it. */
	while ((size_t)got < sizeof(buf) &&
	       ((r = read(fd, buf + got, sizeof(buf) - (size_t)got)) > 0 ||
		(r < 0 && errno == EINTR)))
		got += r > 0 ? r : 0;
	if (got != 1)
		fprintf(stderr, "read: %zd bytes (%s)\n", got, r < 0 ? strerror(errno) : "EOF");
	close(fd);
	return got == 1 ? buf[0] : 0;
}

static char fetch(const struct sockaddr_in *a)
{
	int fd = dial(a);

	if (fd < 0)
		fprintf(stderr, "connect: %s\n", strerror(-fd));
	return fd < 0 ? 0 : answer(fd);
}

static rtls_server *make(const struct rtls_config *cfg, rtls_server *prev)
{
	rtls_server *s;
	char why[256];
	int ret = prev ? rtls_server_create_from(cfg, prev, &s, why, sizeof(why))
		       : rtls_server_create(cfg, &s, why, sizeof(why));

	if (ret == -ENOSYS || ret == -EPERM) {
		printf("SKIP: %s\n", why);
		exit(77);
	}
	if (ret < 0) {
		fprintf(stderr, "create: %s\n", why);
		exit(1);
	}
	return s;
}

int main(void)
{
	const struct rtls_listen la[] = { { .addr = "127.0.0.1:0" }, { .addr = "127.0.0.2:0" } };
	const struct rtls_listen lb[] = { { .addr = "127.0.0.1:0" } };
	struct rtls_config ca = config(la, 2, 2, &handler_a);
	struct rtls_config cb = config(lb, 1, 3, &handler_b);
	struct sockaddr_in a0, a1, b0;
	rtls_server *a, *b, *c;
	int queued[8];
	char port[32];
	const struct rtls_listen ld[] = { { .addr = port } };
	struct rtls_config cd;

	alarm(60);
	a = make(&ca, NULL);
	a0 = addr_of(a, 0);
	a1 = addr_of(a, 1);
	CHECK_EQ_INT(rtls_server_start(a), 0);
	CHECK_EQ_INT(fetch(&a0), 'A');
	CHECK_EQ_INT(fetch(&a1), 'A');

	b = make(&cb, a);
	b0 = addr_of(b, 0);
	CHECK(b0.sin_port == a0.sin_port && b0.sin_addr.s_addr == a0.sin_addr.s_addr);

	/* Once it returns, a accepts nothing: the listener only a had is
	 * gone, and the handed-over socket still listens with nobody
	 * accepting, so these wait in its queue. */
	CHECK_EQ_INT(rtls_server_stop_accepting(a, 5000), 0);
	CHECK_EQ_INT(dial(&a1), -ECONNREFUSED);
	for (unsigned i = 0; i < 8; i++) {
		queued[i] = dial(&a0);
		CHECK(queued[i] >= 0);
	}
	CHECK_EQ_INT(rtls_server_wait(a), 0);
	CHECK_EQ_INT(rtls_server_start(b), 0);
	for (unsigned i = 0; i < 8; i++)
		if (queued[i] >= 0)
			CHECK_EQ_INT(answer(queued[i]), 'B');
	/* Three reactors, the third on a socket of its own in the group. */
	for (unsigned i = 0; i < 64; i++)
		CHECK_EQ_INT(fetch(&a0), 'B');
	rtls_server_destroy(a);

	/* A successor that never runs gives the sockets back: b's stop shuts
	 * them down as if there had been none. */
	c = make(&cb, b);
	rtls_server_destroy(c);
	CHECK_EQ_INT(fetch(&a0), 'B');
	rtls_server_stop(b);
	CHECK_EQ_INT(rtls_server_wait(b), 0);
	CHECK_EQ_INT(dial(&a0), -ECONNREFUSED);
	rtls_server_destroy(b);

	/* Fewer reactors: the successor shares one of prev's three sockets;
	 * prev empties and closes the other two at its stop. */
	b = make(&cb, NULL);
	b0 = addr_of(b, 0);
	CHECK_EQ_INT(rtls_server_start(b), 0);
	cd = config(lb, 1, 1, &handler_a);
	cd.listeners = ld;
	snprintf(port, sizeof(port), "127.0.0.1:%u", ntohs(b0.sin_port));
	c = make(&cd, b); /* by the bound address this time */
	CHECK_EQ_INT(rtls_server_start(c), 0);
	rtls_server_stop(b);
	CHECK_EQ_INT(rtls_server_wait(b), 0);
	for (unsigned i = 0; i < 64; i++)
		CHECK_EQ_INT(fetch(&b0), 'A');
	rtls_server_destroy(b);
	rtls_server_stop(c);
	CHECK_EQ_INT(rtls_server_wait(c), 0);
	CHECK_EQ_INT(dial(&b0), -ECONNREFUSED);
	rtls_server_destroy(c);

	{
		rtls_server *x;
		char why[64];

		CHECK_EQ_INT(rtls_server_create_from(&cb, NULL, &x, why, sizeof(why)), -EINVAL);
		CHECK(x == NULL);
	}
	CHECK_DONE();
}
