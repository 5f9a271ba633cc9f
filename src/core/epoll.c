/* The epoll backend (issue 18): where io_uring is refused (a container's
 * seccomp profile, kernel.io_uring_disabled), the reactor's requests are
 * carried out here, with readiness and non-blocking system calls, and
 * their results come back as the same completions.
 *
 * The seam. Core writes every request as an io_uring SQE, whichever
 * backend runs (rtls__sqe()), and learns every result from a CQE
 * (rtls__dispatch()). Only ring.c knows which backend that is. On epoll
 * the SQE is a plain description of a system call: this file reads it,
 * tries the call at once (as io_uring does), and when the call would
 * block parks the request on its descriptor until epoll reports the
 * descriptor ready, then tries again. So the connection, TLS, HTTP/2 and
 * proxy code above is the same code on both backends.
 *
 * Edge-triggered, input and output in one registration, added when the
 * first request parks on a descriptor and deleted when the last leaves:
 * a descriptor is registered only while a request waits on it, so one
 * that core closes is never still registered here under a number the
 * next accept reuses. A keep-alive connection keeps its multishot
 * receive parked, so the pair of epoll_ctl calls comes once per
 * connection, not once per request. Every request is tried before it
 * parks: an edge that came while nothing waited is never needed.
 *
 * io_uring's semantics that core relies on, kept here:
 * - multishot receive and accept post one completion per buffer or
 *   socket, with IORING_CQE_F_MORE while they go on; with no provided
 *   buffer left a receive ends with -ENOBUFS;
 * - provided buffers come from the buffer ring core fills (bufring.c),
 *   in ring order; a receive that brings no byte takes none;
 * - a cancel completes its target with -ECANCELED and itself with 0, or
 *   itself with -ENOENT when the target is gone;
 * - a one-shot poll reports POLLERR, POLLHUP and POLLRDHUP whatever it
 *   asks for; a timeout ends with -ETIME.
 * Sends and splices may complete short (every socket is non-blocking
 * here); core resumes partial sends on both backends.
 *
 * The exact RX handover (a receive of at most rx_limit bytes, never past
 * the client's Finished) is a recv(2) of that length: nothing here reads
 * ahead. Regular files (splice's input) never block for readiness; a read
 * from disk blocks the reactor as sendfile(2) blocks nginx's worker. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* GCC 12's analyzer (scripts/lint.sh analyzer) loses track of the arrays
 * that grow() reallocates once they are stored in r->ep's fields, and
 * calls each later call leaked: false positives (rtls__ep_exit() frees
 * them), as in conn.c and h2.c. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif

/* Completions one ready multishot request may post before the others get
 * their turn; it goes on in the next round without waiting for an edge. */
#define EP_BATCH 16u
#define EP_EVENTS 64

/* A request waiting for its descriptor. */
struct ep_op {
	struct io_uring_sqe sqe;
	int fd;        /* what it waits on: for a splice, the side that blocks */
	int pfd;       /* the descriptor it is parked on */
	uint32_t want; /* EPOLLIN or EPOLLOUT: the events that retry it */
	bool started;  /* issued once: a connect's retry asks SO_ERROR */
	bool retried;  /* one retry after EINTR */
	/* The descriptor's waiters. No pointer into ep->fds: it moves. */
	struct ep_op *next, *prev;
	struct ep_op *hnext, **hpprev; /* by user_data, for cancels */
};

struct ep_fd {
	struct ep_op *head;
	bool reg;   /* in the epoll set */
	bool again; /* on the again list */
};

struct ep_timer {
	uint64_t ud, at_ms;
};

struct rtls__ep {
	int epfd;
	struct io_uring_sqe *sq; /* written by core, issued at the next wait */
	unsigned nsq, sqcap;
	struct io_uring_cqe *cq; /* posted, read by rtls__ep_reap() */
	unsigned ncq, cqcap;
	struct ep_fd *fds; /* by descriptor number */
	unsigned nfds;
	struct ep_op **hash;
	unsigned hmask, nhash;
	struct ep_op *free_ops;
	int *again; /* descriptors with a request stopped at EP_BATCH */
	unsigned nagain, againcap;
	struct ep_timer *timers;
	unsigned ntimers, timercap;
	uint16_t buf_head; /* the next provided buffer to take */
	struct epoll_event ev[EP_EVENTS];
};

/* p's array, grown (doubling from 16) to hold need elements of elem
 * bytes; NULL without memory, p then unchanged and still the caller's. */
static void *grow(void *p, unsigned *cap, unsigned need, size_t elem)
{
	unsigned n = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return p;
	while (n < need)
		n *= 2;
	q = realloc(p, (size_t)n * elem);
	if (q)
		*cap = n;
	return q;
}

/* Completions must not be lost: without memory for one the reactor
 * cannot go on, and says so the way a ring error does (reactor_loop). */
static void post(struct rtls__reactor *r, uint64_t ud, int res, uint32_t flags)
{
	struct rtls__ep *ep = r->ep;
	struct io_uring_cqe *cq = grow(ep->cq, &ep->cqcap, ep->ncq + 1, sizeof(*cq));

	if (!cq) {
		r->err = -ENOMEM;
		return;
	}
	ep->cq = cq;
	ep->cq[ep->ncq].user_data = ud;
	ep->cq[ep->ncq].res = res;
	ep->cq[ep->ncq].flags = flags;
	ep->ncq++;
}

static unsigned hash_of(const struct rtls__ep *ep, uint64_t ud)
{
	return (unsigned)((ud * 0x9e3779b97f4a7c15ull) >> 40) & ep->hmask;
}

static void hash_link(struct rtls__ep *ep, struct ep_op *o)
{
	struct ep_op **b = &ep->hash[hash_of(ep, o->sqe.user_data)];

	o->hnext = *b;
	if (*b)
		(*b)->hpprev = &o->hnext;
	*b = o;
	o->hpprev = b;
	ep->nhash++;
}

static void hash_unlink(struct rtls__ep *ep, struct ep_op *o)
{
	*o->hpprev = o->hnext;
	if (o->hnext)
		o->hnext->hpprev = o->hpprev;
	ep->nhash--;
}

/* Doubles the table once it holds twice as many requests as buckets. */
static int hash_grow(struct rtls__ep *ep)
{
	unsigned n = (ep->hmask + 1) * 2;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct ep_op **old = ep->hash, **h = calloc(n, sizeof(*h));
	unsigned oldn = ep->hmask + 1;

	if (!h)
		return -ENOMEM;
	ep->hash = h;
	ep->hmask = n - 1;
	ep->nhash = 0;
	for (unsigned i = 0; i < oldn; i++)
		while (old[i]) {
			struct ep_op *o = old[i];

			old[i] = o->hnext;
			hash_link(ep, o);
		}
	free(old);
	return 0;
}

static struct ep_op *hash_find(struct rtls__ep *ep, uint64_t ud)
{
	for (struct ep_op *o = ep->hash[hash_of(ep, ud)]; o; o = o->hnext)
		if (o->sqe.user_data == ud)
			return o;
	return NULL;
}

static struct ep_fd *fd_slot(struct rtls__ep *ep, int fd)
{
	if (fd < 0)
		return NULL;
	if ((unsigned)fd >= ep->nfds) {
		unsigned old = ep->nfds, cap = ep->nfds;
		struct ep_fd *fds = grow(ep->fds, &cap, (unsigned)fd + 1, sizeof(*fds));

		if (!fds)
			return NULL;
		ep->fds = fds;
		memset(ep->fds + old, 0, (size_t)(cap - old) * sizeof(*ep->fds));
		ep->nfds = cap;
	}
	return &ep->fds[fd];
}

/* Parks o on its descriptor. 0, or an error for its completion. */
static int park(struct rtls__ep *ep, struct ep_op *o)
{
	struct ep_fd *f = fd_slot(ep, o->fd);

	if (!f)
		return -ENOMEM;
	if (ep->nhash >= 2 * (ep->hmask + 1) && hash_grow(ep) < 0)
		return -ENOMEM;
	if (!f->reg) {
		struct epoll_event e = {
			.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET,
			.data.u64 = (uint64_t)o->fd,
		};

		if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, o->fd, &e) < 0)
			return -errno;
		f->reg = true;
	}
	o->pfd = o->fd;
	o->prev = NULL;
	o->next = f->head;
	if (f->head)
		f->head->prev = o;
	f->head = o;
	hash_link(ep, o);
	return 0;
}

static void unpark(struct rtls__ep *ep, struct ep_op *o)
{
	struct ep_fd *f = &ep->fds[o->pfd];

	if (o->prev)
		o->prev->next = o->next;
	else
		f->head = o->next;
	if (o->next)
		o->next->prev = o->prev;
	hash_unlink(ep, o);
	if (!f->head && f->reg) {
		/* Nothing waits on it any more: out of the set, so that a
		 * close by core leaves nothing behind under this number. */
		(void)epoll_ctl(ep->epfd, EPOLL_CTL_DEL, o->pfd, NULL);
		f->reg = false;
	}
}

static void op_free(struct rtls__ep *ep, struct ep_op *o)
{
	o->next = ep->free_ops;
	ep->free_ops = o;
}

/* false: no memory to remember it, and the caller must go on now (an
 * edge may never come: the peer may be waiting for our answer). */
static bool again_add(struct rtls__ep *ep, int fd)
{
	struct ep_fd *f = fd_slot(ep, fd);
	int *again;

	if (!f)
		return false;
	if (f->again)
		return true;
	again = grow(ep->again, &ep->againcap, ep->nagain + 1, sizeof(*again));
	if (!again)
		return false;
	ep->again = again;
	f->again = true;
	ep->again[ep->nagain++] = fd;
	return true;
}

/* The next provided buffer, not yet taken; NULL when the ring is empty. */
static char *buf_peek(struct rtls__reactor *r, uint16_t *bid, unsigned *len)
{
	struct io_uring_buf_ring *br = r->bufs.br;
	uint16_t tail = __atomic_load_n(&br->tail, __ATOMIC_ACQUIRE);
	struct io_uring_buf *b;

	if (tail == r->ep->buf_head)
		return NULL;
	b = &br->bufs[r->ep->buf_head & r->bufs.mask];
	*bid = b->bid;
	*len = b->len;
	return (char *)(uintptr_t)b->addr;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

enum { EP_DONE = 1, EP_WAIT = 0 };

/* RECV and RECVMSG, single or multishot, into a given or a provided
 * buffer. events: as for try_poll(). */
static int try_recv(struct rtls__reactor *r, struct ep_op *o, uint32_t events)
{
	struct io_uring_sqe *s = &o->sqe;
	bool multi = s->opcode == IORING_OP_RECV && (s->ioprio & IORING_RECV_MULTISHOT);
	bool sel = s->flags & IOSQE_BUFFER_SELECT;
	struct msghdr *m = s->opcode == IORING_OP_RECVMSG ? (void *)(uintptr_t)s->addr : NULL;

	for (unsigned n = 0;; n++) {
		char *p = (char *)(uintptr_t)s->addr;
		unsigned len = s->len, blen = 0;
		uint16_t bid = 0;
		uint32_t flags = 0;
		ssize_t got;

		if (n == EP_BATCH && again_add(r->ep, o->fd))
			return EP_WAIT;
		if (sel) {
			p = buf_peek(r, &bid, &blen);
			if (!p) {
				post(r, s->user_data, -ENOBUFS, 0);
				return EP_DONE;
			}
			if (m)
				len = (unsigned)m->msg_iov[0].iov_len;
			if (!len || len > blen)
				len = blen;
		}
		if (m) {
			if (sel) {
				m->msg_iov[0].iov_base = p;
				m->msg_iov[0].iov_len = len;
			}
			got = recvmsg(s->fd, m, (int)s->msg_flags | MSG_DONTWAIT);
		} else {
			got = recv(s->fd, p, len, (int)s->msg_flags | MSG_DONTWAIT);
		}
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return EP_WAIT;
		if (got <= 0) {
			post(r, s->user_data, got < 0 ? -errno : 0, 0);
			return EP_DONE;
		}
		if (sel) {
			r->ep->buf_head++;
			flags = IORING_CQE_F_BUFFER | ((uint32_t)bid << IORING_CQE_BUFFER_SHIFT);
		}
		if (!multi) {
			post(r, s->user_data, (int)got, flags);
			return EP_DONE;
		}
		post(r, s->user_data, (int)got, flags | IORING_CQE_F_MORE);
		/* Woken by an edge, a short read emptied the socket: more input
		 * makes a new edge, so the read that would say EAGAIN is saved
		 * (one system call per request). Not when the edge brought a
		 * FIN or an error, which only a read of 0 or -1 reports, nor
		 * urgent data (EPOLLPRI: a read stops short at its mark with
		 * bytes behind it), nor on a first try, whose edge may have
		 * gone by unseen. */
		if (events && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) &&
		    (size_t)got < len)
			return EP_WAIT;
	}
}

static int try_accept(struct rtls__reactor *r, struct ep_op *o)
{
	struct io_uring_sqe *s = &o->sqe;
	bool multi = s->ioprio & IORING_ACCEPT_MULTISHOT;
	int ret;

	if (!o->started) {
		/* Several reactors wait on one listening socket: the one that
		 * loses the race must get EAGAIN, not sleep in accept4(). */
		o->started = true;
		ret = set_nonblock(s->fd);
		if (ret < 0) {
			post(r, s->user_data, ret, 0);
			return EP_DONE;
		}
	}
	for (unsigned n = 0;; n++) {
		int fd;

		if (n == EP_BATCH && again_add(r->ep, o->fd))
			return EP_WAIT;
		/* io_uring_prep_accept() puts the address length's pointer
		 * in off. */
		fd = accept4(s->fd, (struct sockaddr *)(uintptr_t)s->addr,
			     (socklen_t *)(uintptr_t)s->off, (int)s->accept_flags | SOCK_NONBLOCK);
		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return EP_WAIT;
		if (fd < 0) {
			post(r, s->user_data, -errno, 0);
			return EP_DONE;
		}
		post(r, s->user_data, fd, multi ? IORING_CQE_F_MORE : 0);
		if (!multi)
			return EP_DONE;
	}
}

static int try_connect(struct rtls__reactor *r, struct ep_op *o, uint32_t events)
{
	struct io_uring_sqe *s = &o->sqe;
	int err = 0;
	socklen_t len = sizeof(err);

	if (!o->started) {
		o->started = true;
		err = set_nonblock(s->fd);
		if (err == 0 && connect(s->fd, (const struct sockaddr *)(uintptr_t)s->addr,
					(socklen_t)s->off) < 0)
			err = -errno;
		if (err == -EINPROGRESS || err == -EINTR)
			return EP_WAIT;
		post(r, s->user_data, err, 0);
		return EP_DONE;
	}
	if (!events) {
		struct pollfd p = { .fd = s->fd, .events = POLLOUT };

		if (poll(&p, 1, 0) <= 0)
			return EP_WAIT;
	} else if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		return EP_WAIT;
	}
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	post(r, s->user_data, -err, 0);
	return EP_DONE;
}

/* One-shot poll. events: what epoll reported, or 0 when not known (a
 * new request, or a retry from the again list): then poll(2) says. */
static int try_poll(struct rtls__reactor *r, struct ep_op *o, uint32_t events)
{
	uint32_t want = o->sqe.poll32_events | POLLERR | POLLHUP | POLLRDHUP;
	uint32_t got;

	if (!events) {
		struct pollfd p = { .fd = o->sqe.fd, .events = (short)want };

		if (poll(&p, 1, 0) < 0)
			return EP_WAIT;
		got = (uint16_t)p.revents;
		if (got & POLLNVAL) {
			post(r, o->sqe.user_data, -EBADF, 0);
			return EP_DONE;
		}
	} else {
		got = events;
	}
	got &= want;
	if (!got)
		return EP_WAIT;
	post(r, o->sqe.user_data, (int)got, 0);
	return EP_DONE;
}

/* Tries o's system call. EP_DONE: its (last) completion is posted;
 * EP_WAIT: it would block on o->fd. events as for try_poll(). */
static int try_op(struct rtls__reactor *r, struct ep_op *o, uint32_t events)
{
	struct io_uring_sqe *s = &o->sqe;
	ssize_t got;

	switch (s->opcode) {
	case IORING_OP_RECV:
	case IORING_OP_RECVMSG:
		return try_recv(r, o, events);
	case IORING_OP_ACCEPT:
		return try_accept(r, o);
	case IORING_OP_CONNECT:
		return try_connect(r, o, events);
	case IORING_OP_POLL_ADD:
		return try_poll(r, o, events);
	case IORING_OP_SEND:
		got = send(s->fd, (const void *)(uintptr_t)s->addr, s->len,
			   (int)s->msg_flags | MSG_DONTWAIT);
		break;
	case IORING_OP_SENDMSG:
		got = sendmsg(s->fd, (const struct msghdr *)(uintptr_t)s->addr,
			      (int)s->msg_flags | MSG_DONTWAIT);
		break;
	case IORING_OP_SPLICE: {
		loff_t in = (loff_t)s->splice_off_in, out = (loff_t)s->off;
		bool fwd_in = rtls__ud_op(s->user_data) == RTLS__OP_FWD_IN;

		got = splice(s->splice_fd_in, s->splice_off_in == (uint64_t)-1 ? NULL : &in, s->fd,
			     s->off == (uint64_t)-1 ? NULL : &out, s->len, s->splice_flags);
		/* A socket read into a forward's pipe waits for input; every
		 * other splice here writes a pipe into a socket. */
		o->fd = fwd_in ? s->splice_fd_in : s->fd;
		o->want = fwd_in ? EPOLLIN : EPOLLOUT;
		/* A forward's read never waits here: FWD_POLL (or FWD_PEEK)
		 * did, and EAGAIN after it means urgent data or, on kTLS, a
		 * record not yet whole, which core handles (fwd.c). Parked,
		 * it would stop at the urgent mark again at every edge. */
		if (fwd_in && got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			post(r, s->user_data, -EAGAIN, 0);
			return EP_DONE;
		}
		break;
	}
	case IORING_OP_READ:
		if (!o->started) {
			o->started = true; /* the reactor's eventfd: see rtls__ep_init */
			(void)set_nonblock(s->fd);
		}
		got = read(s->fd, (void *)(uintptr_t)s->addr, s->len);
		break;
	default:
		post(r, s->user_data, -EINVAL, 0);
		return EP_DONE;
	}
	if (got < 0 && errno == EINTR && !o->retried) {
		o->retried = true; /* reactors block signals: not to be met */
		return try_op(r, o, events);
	}
	o->retried = false;
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return EP_WAIT;
	post(r, s->user_data, got < 0 ? -errno : (int)got, 0);
	return EP_DONE;
}

static void cancel(struct rtls__reactor *r, const struct io_uring_sqe *s)
{
	struct rtls__ep *ep = r->ep;
	struct ep_op *o = hash_find(ep, s->addr);

	if (o) {
		unpark(ep, o);
		op_free(ep, o);
		post(r, s->addr, -ECANCELED, 0);
		post(r, s->user_data, 0, 0);
		return;
	}
	for (unsigned i = 0; i < ep->ntimers; i++)
		if (ep->timers[i].ud == s->addr) {
			ep->timers[i] = ep->timers[--ep->ntimers];
			post(r, s->addr, -ECANCELED, 0);
			post(r, s->user_data, 0, 0);
			return;
		}
	post(r, s->user_data, -ENOENT, 0);
}

static void add_timer(struct rtls__reactor *r, const struct io_uring_sqe *s)
{
	struct rtls__ep *ep = r->ep;
	const struct __kernel_timespec *ts = (const void *)(uintptr_t)s->addr;
	uint64_t ms = (uint64_t)ts->tv_sec * 1000u + ((uint64_t)ts->tv_nsec + 999999u) / 1000000u;
	struct ep_timer *t = grow(ep->timers, &ep->timercap, ep->ntimers + 1, sizeof(*t));

	if (!t) {
		post(r, s->user_data, -ENOMEM, 0);
		return;
	}
	ep->timers = t;
	ep->timers[ep->ntimers].ud = s->user_data;
	ep->timers[ep->ntimers].at_ms =
		(s->timeout_flags & IORING_TIMEOUT_ABS) ? ms : rtls__now_ms() + ms;
	ep->ntimers++;
}

/* clang's analyzer loses o once park() links it into its descriptor's
 * list and the hash, and calls it leaked: a false positive (op_free()
 * or rtls__ep_exit() frees it). */
// NOLINTBEGIN(clang-analyzer-unix.Malloc)
static void issue(struct rtls__reactor *r, const struct io_uring_sqe *s)
{
	struct rtls__ep *ep = r->ep;
	struct ep_op *o;
	int ret;

	switch (s->opcode) {
	case IORING_OP_NOP:
		post(r, s->user_data, 0, 0);
		return;
	case IORING_OP_ASYNC_CANCEL:
		cancel(r, s);
		return;
	case IORING_OP_TIMEOUT:
		add_timer(r, s);
		return;
	default:
		break;
	}
	o = ep->free_ops;
	if (o)
		ep->free_ops = o->next;
	else if (!(o = malloc(sizeof(*o)))) {
		post(r, s->user_data, -ENOMEM, 0);
		return;
	}
	o->sqe = *s;
	o->fd = s->fd;
	o->started = false;
	o->retried = false;
	switch (s->opcode) {
	case IORING_OP_SEND:
	case IORING_OP_SENDMSG:
	case IORING_OP_CONNECT:
		o->want = EPOLLOUT;
		break;
	case IORING_OP_POLL_ADD:
		o->want = ~0u;
		break;
	default:
		o->want = EPOLLIN | EPOLLRDHUP;
		break;
	}
	if (try_op(r, o, 0) == EP_DONE) {
		op_free(ep, o);
		return;
	}
	ret = park(ep, o);
	if (ret < 0) {
		post(r, s->user_data, ret, 0);
		op_free(ep, o);
		/* Without its wake read nothing can stop the reactor (and
		 * re-arming it would fail again at once): it ends, as on a
		 * ring error. A connection's request fails alone. */
		if (rtls__ud_op(s->user_data) == RTLS__OP_WAKE)
			r->err = ret;
	}
}

// NOLINTEND(clang-analyzer-unix.Malloc)

/* Issues what core queued since the last call, in order. */
void rtls__ep_submit(struct rtls__reactor *r)
{
	struct rtls__ep *ep = r->ep;

	/* issue() never queues: the index is stable. */
	for (unsigned i = 0; i < ep->nsq; i++)
		issue(r, &ep->sq[i]);
	ep->nsq = 0;
}

struct io_uring_sqe *rtls__ep_sqe(struct rtls__reactor *r)
{
	struct rtls__ep *ep = r->ep;
	struct io_uring_sqe *s;

	if (ep->nsq == ep->sqcap)
		rtls__ep_submit(r); /* as a full SQ ring is submitted */
	s = &ep->sq[ep->nsq++];
	memset(s, 0, sizeof(*s));
	return s;
}

/* Retries the requests parked on fd. events: as for try_poll(). */
static void ready(struct rtls__reactor *r, int fd, uint32_t events)
{
	struct rtls__ep *ep = r->ep;
	struct ep_op *o, *next;

	if (fd < 0 || (unsigned)fd >= ep->nfds)
		return;
	for (o = ep->fds[fd].head; o; o = next) {
		next = o->next;
		/* An edge of the other direction only: not for this one. */
		if (events && !(events & (o->want | EPOLLERR | EPOLLHUP)))
			continue;
		if (try_op(r, o, events) == EP_DONE) {
			unpark(ep, o);
			op_free(ep, o);
		} else if (o->fd != o->pfd) {
			/* A splice that now waits on its other side. */
			unpark(ep, o);
			if (park(ep, o) < 0) {
				post(r, o->sqe.user_data, -ENOMEM, 0);
				op_free(ep, o);
			}
		}
	}
}

static int next_timeout(const struct rtls__ep *ep, int timeout_ms)
{
	uint64_t now = rtls__now_ms();

	for (unsigned i = 0; i < ep->ntimers; i++) {
		uint64_t d = ep->timers[i].at_ms > now ? ep->timers[i].at_ms - now : 0;

		if (d > INT_MAX)
			d = INT_MAX;
		if (timeout_ms < 0 || d < (uint64_t)timeout_ms)
			timeout_ms = (int)d;
	}
	return timeout_ms;
}

int rtls__ep_wait(struct rtls__reactor *r, int timeout_ms)
{
	struct rtls__ep *ep = r->ep;
	unsigned nagain;
	uint64_t now;
	int n;

	rtls__ep_submit(r);
	/* Completions or retries at hand: only a look at what else is
	 * ready, no sleep. */
	n = epoll_wait(ep->epfd, ep->ev, EP_EVENTS,
		       ep->ncq || ep->nagain ? 0 : next_timeout(ep, timeout_ms));
	if (n < 0 && errno != EINTR)
		return -errno;
	for (int i = 0; i < n; i++)
		ready(r, (int)ep->ev[i].data.u64, ep->ev[i].events);
	/* Those stopped at EP_BATCH, before now or by the events above; any
	 * stopped again here wait for the next round. */
	nagain = ep->nagain;
	for (unsigned i = 0; i < nagain; i++) {
		int fd = ep->again[i];

		ep->fds[fd].again = false;
		ready(r, fd, 0);
	}
	if (nagain) {
		memmove(ep->again, ep->again + nagain, (ep->nagain - nagain) * sizeof(*ep->again));
		ep->nagain -= nagain;
	}
	now = rtls__now_ms();
	for (unsigned i = 0; i < ep->ntimers;) {
		if (ep->timers[i].at_ms <= now) {
			post(r, ep->timers[i].ud, -ETIME, 0);
			ep->timers[i] = ep->timers[--ep->ntimers];
		} else {
			i++;
		}
	}
	if (r->err)
		return r->err;
	if (n < 0)
		return -EINTR;
	/* An edge that completed nothing is not a timeout: -ETIME only
	 * when a bounded wait found nothing, as io_uring's. */
	return ep->ncq || timeout_ms < 0 ? 0 : -ETIME;
}

void rtls__ep_reap(struct rtls__reactor *r)
{
	struct rtls__ep *ep = r->ep;

	/* By value and by index: a handler's request may fill the SQ and
	 * issue it (rtls__ep_sqe), which posts more and may move cq. */
	for (unsigned i = 0; i < ep->ncq; i++) {
		struct io_uring_cqe c = ep->cq[i];

		rtls__dispatch(r, &c);
	}
	ep->ncq = 0;
}

int rtls__ep_init(struct rtls__reactor *r, unsigned entries)
{
	struct rtls__ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return -ENOMEM;
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	ep->sq = calloc(entries, sizeof(*ep->sq));
	ep->sqcap = entries;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	ep->hash = calloc(1024, sizeof(*ep->hash));
	ep->hmask = 1023;
	r->ep = ep;
	if (ep->epfd < 0) {
		int err = -errno;

		rtls__ep_exit(r);
		return err;
	}
	if (!ep->sq || !ep->hash) {
		rtls__ep_exit(r);
		return -ENOMEM;
	}
	return 0;
}

/* Requests still parked are dropped without completions, as closing a
 * ring drops its own (reactor_free). */
void rtls__ep_exit(struct rtls__reactor *r)
{
	struct rtls__ep *ep = r->ep;
	struct ep_op *o;

	if (!ep)
		return;
	for (unsigned i = 0; ep->hash && i <= ep->hmask; i++)
		while ((o = ep->hash[i])) {
			ep->hash[i] = o->hnext;
			free(o);
		}
	while ((o = ep->free_ops)) {
		ep->free_ops = o->next;
		free(o);
	}
	if (ep->epfd >= 0)
		close(ep->epfd);
	free(ep->hash);
	free(ep->sq);
	free(ep->cq);
	free(ep->fds);
	free(ep->again);
	free(ep->timers);
	free(ep);
	r->ep = NULL;
}

/* `ringtls probe`: whether an epoll instance can be had here. */
int rtls__ep_describe(char *out, size_t n)
{
	int fd = epoll_create1(EPOLL_CLOEXEC);

	if (fd < 0)
		return snprintf(out, n, "not available (epoll_create1: %s)", strerror(errno));
	close(fd);
	return snprintf(out, n, "available (edge-triggered, %d events per wait)", EP_EVENTS);
}
