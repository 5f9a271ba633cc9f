/* rtls_listen.fd (socket activation), through the public API only:
 * - a listening TCP socket handed over is served by every reactor, each
 *   on a duplicate of its own (close-on-exec); rtls_server_listen_addr()
 *   reports its address;
 * - after the server has stopped and been destroyed, the caller's socket
 *   still listens: connections made then wait in its queue;
 * - a UDP socket, a TCP socket that does not listen, a file and a closed
 *   descriptor are refused by rtls_server_create() with one line.
 * A hang is a failure: SIGALRM ends the test. 77 without io_uring. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringtls/ringtls.h"
#include "unit/check.h"

#define THREADS 3

static int on_open(rtls_conn *c, void *data)
{
	(void)data;
	rtls_conn_write(c, "ok", 2);
	rtls_conn_close(c);
	return 0;
}

static const struct rtls_handler handler = { .on_open = on_open };

static int create(int fd, rtls_server **s, char *why, size_t n)
{
	const struct rtls_listen l = { .addr = "activated", .fd = fd };
	struct rtls_config cfg = { .listeners = &l,
				   .nlisteners = 1,
				   .handler = &handler,
				   .threads = THREADS,
				   .max_conns = 16,
				   .buf_count = 16,
				   .ring_entries = 64,
				   .shutdown_ms = 2000 };

	return rtls_server_create(&cfg, s, why, n);
}

static int tcp_socket(bool listening, struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof(*a)) < 0 ||
	    (listening && listen(fd, 16) < 0) || getsockname(fd, (struct sockaddr *)a, &len) < 0) {
		perror("socket");
		exit(1);
	}
	return fd;
}

/* Descriptors of this process that are the socket fd is, fd included,
 * and how many of them are close-on-exec. */
static int count_same(int fd, int *cloexec)
{
	struct stat want, st;
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	*cloexec = 0;
	if (!d || fstat(fd, &want) < 0)
		return -1;
	while ((e = readdir(d))) {
		int k = atoi(e->d_name);

		if (e->d_name[0] == '.' || k == dirfd(d) || fstat(k, &st) < 0)
			continue;
		if (st.st_ino == want.st_ino && st.st_dev == want.st_dev) {
			n++;
			*cloexec += (fcntl(k, F_GETFD) & FD_CLOEXEC) != 0;
		}
	}
	closedir(d);
	return n;
}

/* Connects to a and reads what comes until EOF. */
static ssize_t fetch(const struct sockaddr_in *a, char *buf, size_t n)
{
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t got = 0, r;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0) {
		close(fd);
		return -errno;
	}
	/* EINTR: a read with SO_RCVTIMEO is not restarted, and io_uring's
	 * task work for this thread (its rings' files closing) interrupts it. */
	while ((size_t)got < n &&
	       ((r = read(fd, buf + got, n - (size_t)got)) > 0 || (r < 0 && errno == EINTR)))
		got += r > 0 ? r : 0;
	close(fd);
	return got;
}

static void serves(void)
{
	struct sockaddr_in a, b;
	struct sockaddr_storage ss;
	socklen_t len;
	rtls_server *s;
	char why[256], buf[16];
	int fd = tcp_socket(true, &a), cloexec;

	CHECK_EQ_INT(create(fd, &s, why, sizeof(why)), 0);
	if (!s) {
		fprintf(stderr, "rtls_server_create: %s\n", why);
		exit(1);
	}
	CHECK_EQ_INT(rtls_server_listen_addr(s, 0, &ss, &len), 0);
	memcpy(&b, &ss, sizeof(b));
	CHECK(len == sizeof(b) && b.sin_port == a.sin_port &&
	      b.sin_addr.s_addr == a.sin_addr.s_addr);
	/* The caller's descriptor and one duplicate per reactor. */
	CHECK_EQ_INT(count_same(fd, &cloexec), 1 + THREADS);
	CHECK_EQ_INT(cloexec, 1 + THREADS);
	CHECK_EQ_INT(rtls_server_start(s), 0);
	for (int i = 0; i < 8; i++) {
		memset(buf, 0, sizeof(buf));
		CHECK_EQ_INT(fetch(&a, buf, sizeof(buf)), 2);
		CHECK(memcmp(buf, "ok", 2) == 0);
	}
	rtls_server_stop(s);
	CHECK_EQ_INT(rtls_server_wait(s), 0);
	rtls_server_destroy(s);
	/* The duplicates are gone; the socket still listens (not shut down
	 * at stop): a connect completes into its queue. */
	CHECK_EQ_INT(count_same(fd, &cloexec), 1);
	{
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 0;
		socklen_t n = sizeof(on);

		CHECK(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &n) == 0 && on == 1);
		CHECK(connect(c, (const struct sockaddr *)&a, sizeof(a)) == 0);
		close(c);
	}
	close(fd);
}

static void refused(const char *what, int fd, int want_err, const char *want_why)
{
	rtls_server *s = (rtls_server *)&s;
	char why[256] = "";
	int ret = create(fd, &s, why, sizeof(why));

	if (ret != want_err || s || !strstr(why, want_why) || strchr(why, '\n')) {
		fprintf(stderr, "%s: got %d (%s), want %d (%s)\n", what, ret, why, want_err,
			want_why);
		check_failures++;
	}
}

int main(void)
{
	struct sockaddr_in a;
	int fd;

	alarm(30);
	fd = tcp_socket(true, &a);
	{
		rtls_server *s;
		char why[256] = "";

		if (create(fd, &s, why, sizeof(why)) < 0 && strstr(why, "io_uring")) {
			printf("SKIP: %s\n", why);
			return 77;
		}
		rtls_server_destroy(s);
		close(fd);
	}
	serves();

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	refused("UDP socket", fd, -ENOTSOCK, "not a listening TCP socket");
	close(fd);
	fd = tcp_socket(false, &a);
	refused("TCP socket not listening", fd, -ENOTSOCK, "not a listening TCP socket");
	close(fd);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	refused("a file", fd, -ENOTSOCK, "not a listening TCP socket");
	close(fd);
	refused("a closed descriptor", fd, -EBADF, "Bad file descriptor");
	CHECK_DONE();
}
