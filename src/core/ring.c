/* io_uring set-up, and every kernel feature probe the engine depends on.
 * Compatibility lives here and nowhere else: the rest of core asks for the
 * flags this file found usable at start. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* RUNNING_ON_VALGRIND is a no-op instruction sequence outside valgrind.
 * Builds without valgrind's header never take the valgrind path. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* Flags we would like, newest first to drop. DEFER_TASKRUN (6.1) needs
 * SINGLE_ISSUER (6.0); COOP_TASKRUN is 5.19. Each reactor thread is the only
 * submitter of its ring, which is what SINGLE_ISSUER promises. */
static const unsigned flag_sets[] = {
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
	IORING_SETUP_COOP_TASKRUN,
	0,
};

/* Opcodes ringtls issues; a kernel without one of them cannot run it. */
static const struct {
	int op;
	const char *name;
} needed_ops[] = {
	{ IORING_OP_ACCEPT, "ACCEPT" },
	{ IORING_OP_RECV, "RECV" },
	{ IORING_OP_SEND, "SEND" },
	{ IORING_OP_SPLICE, "SPLICE" },
	{ IORING_OP_TIMEOUT, "TIMEOUT" },
	{ IORING_OP_READ, "READ" },
	{ IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL" },
	{ IORING_OP_PROVIDE_BUFFERS, "PROVIDE_BUFFERS" },
	{ IORING_OP_RECVMSG, "RECVMSG" },
	{ IORING_OP_SENDMSG, "SENDMSG" },
};

/* Finds the richest flag set this kernel accepts, by creating and
 * destroying a tiny ring with each. Also checks the opcodes we use. */
int rtls__probe_ring_flags(unsigned *flags)
{
	struct io_uring ring;
	struct io_uring_probe *probe;
	int ret = -ENOSYS;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		/* Under valgrind the reactor waits in poll(2) (rtls__ring_wait),
		 * which deferred task work would not wake. */
		if ((flag_sets[i] & IORING_SETUP_DEFER_TASKRUN) && RUNNING_ON_VALGRIND)
			continue;
		ret = io_uring_queue_init(4, &ring, flag_sets[i]);
		if (ret == 0) {
			*flags = flag_sets[i];
			break;
		}
		if (ret != -EINVAL)
			return ret; /* ENOSYS, EPERM, ENOMEM: no io_uring at all */
	}
	if (ret < 0)
		return ret;
	probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		/* io_uring_register refused while io_uring_setup was allowed:
		 * a filter, most likely; a refusal all the same. */
		io_uring_queue_exit(&ring);
		return -EPERM;
	}
	for (size_t i = 0; i < sizeof(needed_ops) / sizeof(needed_ops[0]); i++) {
		if (!io_uring_opcode_supported(probe, needed_ops[i].op)) {
			rtls_log(RTLS_LOG_ERROR, "io_uring lacks IORING_OP_%s: kernel too old",
				 needed_ops[i].name);
			ret = -EOPNOTSUPP;
		}
	}
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return ret;
}

int rtls__backend_pick(enum rtls_backend want, unsigned *flags, int *refused)
{
	const char *env = secure_getenv("RINGTLS_BACKEND");
	int ret;

	*refused = 0;
	if (want == RTLS_BACKEND_AUTO && env && *env && strcmp(env, "auto") != 0) {
		if (strcmp(env, "epoll") == 0)
			want = RTLS_BACKEND_EPOLL;
		else if (strcmp(env, "io_uring") == 0)
			want = RTLS_BACKEND_IO_URING;
		else
			return -EINVAL;
	}
	if (want == RTLS_BACKEND_EPOLL)
		return RTLS_BACKEND_EPOLL;
	if (want != RTLS_BACKEND_AUTO && want != RTLS_BACKEND_IO_URING)
		return -EINVAL;
	ret = rtls__probe_ring_flags(flags);
	if (ret == 0)
		return RTLS_BACKEND_IO_URING;
	if (ret == -EINVAL) /* no flag set accepted; -EINVAL means a bad name here */
		ret = -EOPNOTSUPP;
	/* Refused, not broken: a filter, a sysctl, a kernel without it. A
	 * kernel whose io_uring lacks an operation we use stays an error. */
	if (want == RTLS_BACKEND_AUTO && (ret == -EPERM || ret == -ENOSYS || ret == -EACCES)) {
		*refused = ret;
		return RTLS_BACKEND_EPOLL;
	}
	return ret;
}

int rtls__ring_init(struct rtls__reactor *r, unsigned flags, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	if (r->srv->backend == RTLS_BACKEND_EPOLL)
		return rtls__ep_init(r, entries);
	memset(&p, 0, sizeof(p));
	p.flags = flags | IORING_SETUP_CQSIZE;
	/* Multishot receive and accept post many CQEs per SQE: size the CQ
	 * well above the SQ so a busy tick does not overflow it. */
	p.cq_entries = entries * 8;
	ret = io_uring_queue_init_params(entries, &r->ring, &p);
	if (ret < 0)
		return ret;
	r->ring_ok = true;
	r->wait_in_poll = RUNNING_ON_VALGRIND;
	return 0;
}

/* Submits what is queued and waits for at least one completion, or
 * for timeout_ms (-1: no limit; -ETIME when it passes).
 *
 * Valgrind runs one thread at a time and lets the others run only while
 * a thread sits in a syscall it knows may block; 3.19 does not count
 * io_uring_enter() among them. A reactor waiting there would stop every
 * other thread: the other reactors and the main thread's signal wait.
 * Under valgrind the reactor therefore submits without waiting and
 * sleeps in poll(2) instead; the ring has no DEFER_TASKRUN there, so a
 * completion's task work interrupts the poll (EINTR) and posts its CQE on
 * the way out. Outside valgrind this is io_uring_submit_and_wait(). */
int rtls__ring_wait(struct rtls__reactor *r, int timeout_ms)
{
	struct pollfd p = { .fd = r->ring.ring_fd, .events = POLLIN };
	int ret;

	if (r->ep)
		return rtls__ep_wait(r, timeout_ms);
	if (!r->wait_in_poll) {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};
		struct io_uring_cqe *cqe;

		if (timeout_ms < 0)
			return io_uring_submit_and_wait(&r->ring, 1);
		return io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
	}
	ret = io_uring_submit(&r->ring);
	if (ret < 0 || io_uring_cq_ready(&r->ring))
		return ret;
	ret = poll(&p, 1, timeout_ms);
	if (ret < 0)
		return -errno;
	if (ret == 0)
		return -ETIME;
	return io_uring_get_events(&r->ring);
}

/* An SQE, submitting what is queued first if the SQ is full. */
struct io_uring_sqe *rtls__sqe(struct rtls__reactor *r)
{
	struct io_uring_sqe *sqe;

	if (r->ep)
		return rtls__ep_sqe(r);
	sqe = io_uring_get_sqe(&r->ring);
	while (!sqe) {
		io_uring_submit(&r->ring);
		sqe = io_uring_get_sqe(&r->ring);
	}
	return sqe;
}

void rtls__ring_submit(struct rtls__reactor *r)
{
	if (r->ep)
		rtls__ep_submit(r);
	else if (r->ring_ok)
		io_uring_submit(&r->ring);
}

int rtls__ring_sock_flags(const struct rtls__reactor *r)
{
	return r->ep ? SOCK_NONBLOCK : 0;
}

void rtls__ring_reap(struct rtls__reactor *r)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	if (r->ep) {
		rtls__ep_reap(r);
		return;
	}
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		rtls__dispatch(r, cqe);
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
}

void rtls__ring_exit(struct rtls__reactor *r)
{
	rtls__ep_exit(r);
	if (r->ring_ok) {
		io_uring_queue_exit(&r->ring);
		r->ring_ok = false; /* the buffer ring went with it */
	}
}

/* One line for `ringtls probe`: setup flags and the opcodes we use. */
int rtls__ring_describe(char *out, size_t n)
{
	struct io_uring ring;
	struct io_uring_probe *probe;
	unsigned flags = 0;
	size_t o = 0;
	int ret = rtls__probe_ring_flags(&flags);

	if (ret < 0 && ret != -EOPNOTSUPP)
		return snprintf(out, n, "not available (io_uring_setup: %s)", strerror(-ret));
	o += (size_t)snprintf(out + o, n - o, "setup flags:%s%s%s",
			      flags & IORING_SETUP_SINGLE_ISSUER ? " SINGLE_ISSUER" : "",
			      flags & IORING_SETUP_DEFER_TASKRUN ? " DEFER_TASKRUN" : "",
			      flags & IORING_SETUP_COOP_TASKRUN ? " COOP_TASKRUN" : "");
	if (!(flags & (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN)))
		o += (size_t)snprintf(out + o, n - o, " (none)");
	if (io_uring_queue_init(4, &ring, 0) < 0)
		return (int)o;
	probe = io_uring_get_probe_ring(&ring);
	o += (size_t)snprintf(out + o, n - o, "; ops:");
	for (size_t i = 0; probe && i < sizeof(needed_ops) / sizeof(needed_ops[0]) && o < n; i++)
		o += (size_t)snprintf(out + o, n - o, " %s%s", needed_ops[i].name,
				      io_uring_opcode_supported(probe, needed_ops[i].op) ? "" : "(missing)");
	if (probe)
		io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return (int)o;
}
