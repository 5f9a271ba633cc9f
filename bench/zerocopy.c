/* bench/zerocopy.c: does MSG_ZEROCOPY pay off for our sealed output here?
 *
 * Issue 20 asks whether zero-copy sends (MSG_ZEROCOPY, or io_uring's
 * SEND_ZC, which pins the pages and reports completion the same way) would
 * cut the cost of sending the sealed records. The bench, and every client
 * on these machines, talks over loopback. This sends COUNT buffers of
 * BYTES over a loopback TCP connection, once with plain send() and once
 * with MSG_ZEROCOPY (reaping the error queue's notifications and
 * counting those the kernel marked SO_EE_CODE_ZEROCOPY_COPIED), and prints
 * the sender's CPU per buffer for each, and their ratio. The receiver is
 * a child on the other CPU that reads and discards.
 *
 *   gcc -O2 -o /tmp/zerocopy bench/zerocopy.c
 *   taskset -c 0 /tmp/zerocopy 16384 40000
 *   taskset -c 0 /tmp/zerocopy 1048576 2000
 */
#define _GNU_SOURCE
#include <errno.h>
#include <time.h> /* before errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A connected loopback pair: *tx for us, the other end to a reader child
 * pinned to CPU 1 that discards what it reads. */
static pid_t pair(int *tx)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	pid_t pid;

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		die("listen");
	*tx = socket(AF_INET, SOCK_STREAM, 0);
	if (*tx < 0 || setsockopt(*tx, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)) < 0 ||
	    connect(*tx, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect (SO_ZEROCOPY)");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		static char buf[1 << 20];
		cpu_set_t set;
		int rx = accept(l, NULL, NULL);

		close(*tx); /* else our copy of it keeps the reader from its EOF */
		CPU_ZERO(&set);
		CPU_SET(1, &set);
		sched_setaffinity(0, sizeof(set), &set);
		while (rx >= 0 && read(rx, buf, sizeof(buf)) > 0)
			;
		_exit(0);
	}
	close(l);
	return pid;
}

/* Reaps zero-copy notifications; returns how many sends they cover and
 * adds those the kernel copied anyway to *copied. */
static unsigned reap(int fd, unsigned *copied, int wait)
{
	unsigned done = 0;

	for (;;) {
		char ctl[128];
		struct msghdr m = { .msg_control = ctl, .msg_controllen = sizeof(ctl) };
		struct pollfd p = { .fd = fd, .events = 0 };

		if (recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
			if (errno != EAGAIN || !wait || done)
				return done;
			poll(&p, 1, 100); /* POLLERR, always polled */
			continue;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			struct sock_extended_err *e = (struct sock_extended_err *)CMSG_DATA(c);
			unsigned n;

			if (e->ee_origin != SO_EE_ORIGIN_ZEROCOPY)
				continue;
			n = e->ee_data - e->ee_info + 1; /* a range of send ids */
			done += n;
			if (e->ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
				*copied += n;
		}
	}
}

/* CPU seconds for count sends of size bytes; zc: with MSG_ZEROCOPY, at
 * most `ring` in flight (each buffer is reused only once notified). */
static double run(size_t size, unsigned count, int zc, unsigned *copied)
{
	enum { RING = 8 };
	char *bufs = malloc(size * RING);
	unsigned inflight = 0;
	int fd, st;
	pid_t pid = pair(&fd);
	double t0;

	if (!bufs)
		die("malloc");
	memset(bufs, 'x', size * RING);
	t0 = cpu_s();
	for (unsigned i = 0; i < count; i++) {
		char *p = bufs + (size_t)(i % RING) * size;
		size_t off = 0;

		while (zc && inflight >= RING)
			inflight -= reap(fd, copied, 1);
		while (off < size) {
			ssize_t n = send(fd, p + off, size - off, zc ? MSG_ZEROCOPY : 0);

			if (n < 0 && errno == ENOBUFS && zc && inflight) {
				/* optmem for notifications: wait for one */
				inflight -= reap(fd, copied, 1);
				continue;
			}
			if (n < 0 && errno == ENOBUFS && zc) {
				/* Nothing in flight to wait for: the pages cannot be
				 * pinned at all (RLIMIT_MEMLOCK, optmem_max). */
				fprintf(stderr,
					"MSG_ZEROCOPY send: ENOBUFS with nothing in flight: "
					"raise RLIMIT_MEMLOCK or net.core.optmem_max\n");
				exit(1);
			}
			if (n < 0)
				die("send");
			off += (size_t)n;
			inflight += zc; /* each send call is one notification id */
		}
		if (zc)
			inflight -= reap(fd, copied, 0);
	}
	while (zc && inflight)
		inflight -= reap(fd, copied, 1);
	t0 = cpu_s() - t0;
	close(fd);
	waitpid(pid, &st, 0);
	free(bufs);
	return t0;
}

int main(int argc, char **argv)
{
	size_t size = argc > 1 ? strtoul(argv[1], NULL, 0) : 16384;
	unsigned count = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 20000, copied = 0;
	double plain, zc;

	signal(SIGPIPE, SIG_IGN);
	if (!size || !count) {
		fprintf(stderr, "usage: %s BYTES COUNT\n", argv[0]);
		return 2;
	}
	run(size, count / 10 + 1, 0, &copied); /* warm up */
	plain = run(size, count, 0, &copied);
	copied = 0;
	zc = run(size, count, 1, &copied);
	printf("%zu-byte sends over loopback, %u each: send() %.2f us, MSG_ZEROCOPY %.2f us of "
	       "sender CPU per send (ratio %.2f); %u of the zero-copy sends' notifications say "
	       "the kernel copied\n",
	       size, count, 1e6 * plain / count, 1e6 * zc / count, zc / plain, copied);
	return 0;
}
