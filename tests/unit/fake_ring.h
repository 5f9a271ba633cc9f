/* A fake ring for the unit tests of src/core/send.c and conn.c. The test
 * compiles the core's sources itself, minus ring.c and bufring.c: this
 * file provides rtls__sqe() (SQEs from a static array the test inspects:
 * opcode, fd, len, user_data), the provided-buffer ring, and ring setup.
 * Completions are driven through rtls__dispatch() with chosen results, as
 * the reactor loop would, followed by its rtls__reap(). Sockets are real
 * (socketpair), so shutdown() and close() can be observed from the peer. */
#ifndef RTLS_TEST_FAKE_RING_H
#define RTLS_TEST_FAKE_RING_H

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "unit/check.h"

#define FAKE_SQES 256
#define FAKE_CONNS 4
#define FAKE_BUFS 8
#define FAKE_BUF_SIZE 256

static struct io_uring_sqe fake_sqe[FAKE_SQES];
static unsigned fake_nsqe, fake_seen;

static struct {
	struct rtls_server srv;
	struct rtls__reactor r;
	struct rtls_conn conns[FAKE_CONNS];
	uint32_t free_slots[FAKE_CONNS], reap[FAKE_CONNS], starved[FAKE_CONNS];
	int pipe_pool[2 * 4];
	char bufmem[FAKE_BUFS * FAKE_BUF_SIZE];
	unsigned puts;        /* buffers given back to the ring */
	uint16_t last_put;
	/* what the handler saw */
	unsigned opens, drains, closes, eofs;
	int close_err;
	char got[4096];
	size_t got_len;
	int peer[FAKE_CONNS]; /* the other end of each slot's socket */
} F;

/* --- the fakes: what ring.c and bufring.c would do --------------------- */

struct io_uring_sqe *rtls__sqe(struct rtls__reactor *r)
{
	struct io_uring_sqe *sqe;

	(void)r;
	if (fake_nsqe == FAKE_SQES) {
		fprintf(stderr, "fake ring: out of SQEs\n");
		exit(1);
	}
	sqe = &fake_sqe[fake_nsqe++];
	memset(sqe, 0, sizeof(*sqe));
	return sqe;
}

int rtls__ring_init(struct rtls__reactor *r, unsigned flags, unsigned entries)
{
	(void)r;
	(void)flags;
	(void)entries;
	return -ENOSYS;
}

int rtls__ring_wait(struct rtls__reactor *r, int timeout_ms)
{
	(void)r;
	(void)timeout_ms;
	return -ENOSYS;
}

/* The tests complete requests themselves (fake_complete): the loop's
 * submit and reap are never reached. */
void rtls__ring_submit(struct rtls__reactor *r)
{
	(void)r;
}
void rtls__ring_reap(struct rtls__reactor *r)
{
	(void)r;
}
int rtls__ring_sock_flags(const struct rtls__reactor *r)
{
	(void)r;
	return 0;
}

int rtls__bufring_init(struct rtls__reactor *r, unsigned count, unsigned size, uint16_t bgid)
{
	(void)r;
	(void)count;
	(void)size;
	(void)bgid;
	return -ENOSYS;
}

void rtls__bufring_free(struct rtls__reactor *r) { (void)r; }

char *rtls__bufring_addr(struct rtls__reactor *r, uint16_t bid)
{
	return r->bufs.mem + (size_t)bid * r->bufs.size;
}

void rtls__bufring_put(struct rtls__reactor *r, uint16_t bid)
{
	r->bufs.to_advance++;
	F.puts++;
	F.last_put = bid;
}

void rtls__bufring_publish(struct rtls__reactor *r)
{
	r->bufs.out -= r->bufs.to_advance;
	r->bufs.to_advance = 0;
}

/* --- a handler that records what it sees -------------------------------- */

static int fake_on_open(rtls_conn *c, void *data)
{
	(void)c;
	(void)data;
	F.opens++;
	return 0;
}

static void fake_on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	(void)data;
	if (F.got_len + b->len <= sizeof(F.got)) {
		memcpy(F.got + F.got_len, b->data, b->len);
		F.got_len += b->len;
	}
	rtls_buf_release(c, b);
}

static void fake_on_drained(rtls_conn *c, void *data)
{
	(void)c;
	(void)data;
	F.drains++;
}

static void fake_on_close(rtls_conn *c, void *data, int err)
{
	(void)c;
	(void)data;
	F.closes++;
	F.close_err = err;
}

static const struct rtls_handler fake_handler = {
	.on_open = fake_on_open,
	.on_data = fake_on_data,
	.on_drained = fake_on_drained,
	.on_close = fake_on_close,
};

/* --- setting up and driving ----------------------------------------------- */

static void fake_setup(void)
{
	struct rtls__reactor *r = &F.r;

	for (unsigned i = 0; i < FAKE_CONNS; i++)
		if (F.peer[i] > 0)
			close(F.peer[i]);
	memset(&F, 0, sizeof(F));
	fake_nsqe = fake_seen = 0;
	F.srv.handler = fake_handler;
	F.srv.cfg.max_conns = FAKE_CONNS;
	for (unsigned t = 1; t < RTLS_TIMER__COUNT; t++)
		F.srv.cfg.timeout_ms[t] = 1000;
	r->srv = &F.srv;
	r->conns = F.conns;
	r->free_slots = F.free_slots;
	r->reap = F.reap;
	r->starved = F.starved;
	r->pipe_pool = F.pipe_pool;
	r->pipecap = 4;
	r->bufs.mem = F.bufmem;
	r->bufs.count = FAKE_BUFS;
	r->bufs.size = FAKE_BUF_SIZE;
	r->now_ms = 1000;
	/* Slot 0 is taken first, and a freed slot is the next one taken. */
	for (unsigned i = 0; i < FAKE_CONNS; i++)
		F.free_slots[r->nfree++] = FAKE_CONNS - 1 - i;
	rtls__timers_init(r);
}

static void fake_teardown(void)
{
	rtls__pipes_free(&F.r);
	rtls__small_cache_free(&F.r.small);
	rtls__big_cache_free(&F.r.big);
	for (unsigned i = 0; i < FAKE_CONNS; i++) {
		struct rtls_conn *c = &F.conns[i];

		if (c->state != RTLS__CONN_FREE) {
			/* Still live when the test ended: what conn_free and
			 * conn_teardown would release. */
			rtls__wbuf_free(&c->w[0]);
			rtls__wbuf_free(&c->w[1]);
			for (unsigned k = 0; k < c->npaused; k++)
				rtls_buf_release(c, &c->paused_q[k]);
			free(c->paused_q);
			free(c->ctl);
			if (c->pipe[0] >= 0) {
				close(c->pipe[0]);
				close(c->pipe[1]);
			}
			if (c->fd >= 0)
				close(c->fd);
		}
		if (F.peer[i] > 0)
			close(F.peer[i]);
		F.peer[i] = 0;
	}
}

/* A connection on a real socket; its handler is open, no receive armed. */
static struct rtls_conn *fake_conn(void)
{
	int sv[2];
	struct rtls_conn *c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		exit(1);
	}
	c = rtls__conn_new(&F.r, sv[0], 0);
	if (!c) {
		fprintf(stderr, "fake ring: no free slot\n");
		exit(1);
	}
	if (F.peer[c->slot] > 0)
		close(F.peer[c->slot]);
	F.peer[c->slot] = sv[1];
	rtls__handler_open(c);
	return c;
}

/* The next SQE issued since the last call, skipping timer ticks; NULL if
 * none. */
static struct io_uring_sqe *fake_next(void)
{
	while (fake_seen < fake_nsqe) {
		struct io_uring_sqe *sqe = &fake_sqe[fake_seen++];

		if (rtls__ud_op(sqe->user_data) != RTLS__OP_TICK)
			return sqe;
	}
	return NULL;
}

/* One completion, dispatched as the reactor loop does, then its reap. */
static void fake_complete_flags(uint64_t ud, int res, uint32_t flags)
{
	struct io_uring_cqe cqe;

	memset(&cqe, 0, sizeof(cqe));
	cqe.user_data = ud;
	cqe.res = res;
	cqe.flags = flags;
	rtls__dispatch(&F.r, &cqe);
	if (F.r.nreap)
		rtls__reap(&F.r);
}

static void fake_complete(uint64_t ud, int res)
{
	fake_complete_flags(ud, res, 0);
}

/* A receive completion carrying provided buffer `bid` filled with s. */
static inline void fake_recv(uint64_t ud, uint16_t bid, const char *s, bool more)
{
	size_t n = strlen(s);

	memcpy(rtls__bufring_addr(&F.r, bid), s, n);
	fake_complete_flags(ud, (int)n,
			    IORING_CQE_F_BUFFER | ((uint32_t)bid << IORING_CQE_BUFFER_SHIFT) |
				    (more ? IORING_CQE_F_MORE : 0));
}

/* Checks one SQE: opcode, fd, length and tag. */
#define CHECK_SQE(sqe, opc, fd_, len_, ud_)                                        \
	do {                                                                       \
		const struct io_uring_sqe *s_ = (sqe);                             \
		CHECK(s_ != NULL);                                                 \
		if (s_) {                                                          \
			CHECK_EQ_INT(s_->opcode, (opc));                           \
			CHECK_EQ_INT(s_->fd, (fd_));                               \
			CHECK_EQ_INT(s_->len, (len_));                             \
			CHECK_EQ_INT(s_->user_data, (ud_));                        \
		}                                                                  \
	} while (0)

#endif
