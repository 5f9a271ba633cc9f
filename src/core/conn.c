/* Connection slots: life cycle, receive path and close.
 *
 * State machine (DESIGN.md has the picture):
 *   CONNECTING --connected--> OPEN (outbound: rtls_conn_connect(), connect.c)
 *   OPEN --close()--> CLOSING --output drained--> LINGER --EOF/timer--> DEAD
 *   any  --abort()/error/timeout------------------------------------> DEAD
 *   DEAD --recv and send completions all in--> FREE (generation + 1)
 * A slot is reused only when FREE, and its generation changes then, so a
 * late completion for the old connection is recognised and dropped. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmsg.h"
#include "internal.h"

/* The edges of enum rtls__conn_state (the picture above). */
static inline bool conn_edge(enum rtls__conn_state from, enum rtls__conn_state to)
{
	switch (from) {
	case RTLS__CONN_FREE:
		/* accepted into the slot, or an outbound connect issued */
		return to == RTLS__CONN_OPEN || to == RTLS__CONN_CONNECTING;
	case RTLS__CONN_CONNECTING:
		/* the connect completed; or it failed, timed out, was killed */
		return to == RTLS__CONN_OPEN || to == RTLS__CONN_DEAD;
	case RTLS__CONN_OPEN:
		/* rtls_conn_close(); or abort, an error, a timeout */
		return to == RTLS__CONN_CLOSING || to == RTLS__CONN_DEAD;
	case RTLS__CONN_CLOSING:
		/* Drained: FIN sent and lingering; or drained with nothing
		 * to linger for, or killed on the way. */
		return to == RTLS__CONN_LINGER || to == RTLS__CONN_DEAD;
	case RTLS__CONN_LINGER:
		return to == RTLS__CONN_DEAD; /* the peer's FIN, or the linger timer */
	case RTLS__CONN_DEAD:
		return to == RTLS__CONN_FREE; /* every request has completed */
	default:
		return false;
	}
}

void rtls__conn_set_state(struct rtls_conn *c, enum rtls__conn_state to)
{
	RTLS__EDGE_CHECK(conn_edge((enum rtls__conn_state)c->state, to), "conn", c->state, to);
	c->state = (uint8_t)to;
}

static struct rtls_conn *conn_alloc(struct rtls__reactor *r, int fd, unsigned listener,
				    enum rtls__conn_state state, const struct rtls_handler *h)
{
	/* The slot's data area is sized by the server's handler (see
	 * rtls_conn_connect()'s check). */
	size_t dsize = r->srv->handler.conn_data_size;
	struct rtls_conn *c;
	uint32_t slot, gen;
	bool starved;

	if (!r->nfree)
		return NULL;
	slot = r->free_slots[--r->nfree];
	c = &r->conns[slot];
	gen = c->gen;
	starved = c->recv_starved;
	memset(c, 0, sizeof(*c));
	c->r = r;
	c->slot = slot;
	c->gen = gen;
	/* The starved list names slots: an entry left by the slot's last
	 * occupant stays valid (re-arming an armed receive does nothing), and
	 * keeping the flag keeps each slot on the list at most once. */
	c->recv_starved = starved;
	c->fd = fd;
	c->listener = (uint8_t)listener;
	c->h = h;
	rtls__conn_set_state(c, state);
	c->pipe[0] = c->pipe[1] = -1;
	c->fwd_pipe[0] = c->fwd_pipe[1] = -1;
	c->tlink.prev = c->tlink.next = &c->tlink;
	c->data = dsize ? r->conn_data + (size_t)slot * dsize : NULL;
	c->tp_area = r->tp_data ? r->tp_data + (size_t)slot * r->tp_size : NULL;
	r->nlive++;
	return c;
}

/* The per-slot TLS area of a reactor with no TLS listener, made by its
 * first rtls_conn_connect_tls(); freed with the reactor. */
int rtls__reactor_tls_area(struct rtls__reactor *r, size_t size)
{
	if (r->tp_data)
		return r->tp_size == size ? 0 : -EINVAL;
	r->tp_data = calloc(r->srv->cfg.max_conns, size);
	if (!r->tp_data)
		return -ENOMEM;
	r->tp_size = size;
	return 0;
}

/* The userspace TLS seal round's pack (tls/conn.c), made at first use:
 * a reactor that never seals does not carry it. Freed with the reactor. */
char *rtls__reactor_seal_buf(struct rtls__reactor *r)
{
	if (!r->seal_buf)
		r->seal_buf = malloc(RTLS__SEAL_PACK);
	return r->seal_buf;
}

struct rtls_conn *rtls__conn_new(struct rtls__reactor *r, int fd, unsigned listener)
{
	struct rtls_conn *c = conn_alloc(r, fd, listener, RTLS__CONN_OPEN, &r->srv->handler);

	if (c)
		RTLS__COUNT(r, conns_accepted);
	return c;
}

struct rtls_conn *rtls__conn_new_outbound(struct rtls__reactor *r, int fd,
					  const struct rtls_handler *h)
{
	struct rtls_conn *c = conn_alloc(r, fd, RTLS__LISTENER_NONE, RTLS__CONN_CONNECTING, h);

	if (c)
		RTLS__COUNT(r, conns_outbound);
	return c;
}

/* GCC 12's analyzer (scripts/lint.sh analyzer) loses track of c->ctl when
 * this runs inside the loop of rtls__rearm_starved() and calls the calloc
 * leaked: a false positive (conn_free() frees it). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
struct rtls__ctl *rtls__conn_ctl(struct rtls_conn *c)
{
	if (!c->ctl)
		c->ctl = calloc(1, sizeof(*c->ctl));
	return c->ctl;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* RECVMSG with a provided buffer and room for one control message: kTLS
 * reports each record's content type there (TLS_GET_RECORD_TYPE). */
static int prep_recvmsg(struct rtls_conn *c, struct io_uring_sqe *sqe)
{
	struct rtls__ctl *m = rtls__conn_ctl(c);

	if (!m)
		return -ENOMEM;
	memset(&m->rmsg, 0, sizeof(m->rmsg));
	memset(&m->rcbuf, 0, sizeof(m->rcbuf));
	m->riov.iov_base = NULL;
	m->riov.iov_len = c->r->bufs.size;
	m->rmsg.msg_iov = &m->riov;
	m->rmsg.msg_iovlen = 1;
	m->rmsg.msg_control = m->rcbuf.buf;
	m->rmsg.msg_controllen = sizeof(m->rcbuf.buf);
	io_uring_prep_recvmsg(sqe, c->fd, &m->rmsg, 0);
	return 0;
}

void rtls__conn_recv_arm(struct rtls_conn *c)
{
	struct io_uring_sqe *sqe;
	enum rtls__op op = RTLS__OP_RECV;

	if (c->recv_armed || c->state == RTLS__CONN_DEAD || c->peer_eof ||
	    c->rx_mode == RTLS__RX_OFF)
		return;
	if (c->fwd_on && !c->fwd_ctl) {
		rtls__fwd_arm(c); /* input goes by splice (fwd.c) */
		return;
	}
	sqe = rtls__sqe(c->r);
	switch (c->rx_mode) {
	case RTLS__RX_EXACT:
		io_uring_prep_recv(sqe, c->fd, NULL,
				   c->rx_limit < c->r->bufs.size ? c->rx_limit : c->r->bufs.size, 0);
		break;
	case RTLS__RX_MSG:
		if (prep_recvmsg(c, sqe) < 0) {
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
			rtls__conn_kill(c, -ENOMEM);
			return;
		}
		op = RTLS__OP_RECVMSG;
		break;
	case RTLS__RX_MULTISHOT:
	default:
		if (c->fwd_on) /* one receive between splices (fwd.c) */
			io_uring_prep_recv(sqe, c->fd, NULL, c->r->bufs.size, 0);
		else
			io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
		break;
	}
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = c->r->bufs.bgid;
	io_uring_sqe_set_data64(sqe, rtls__ud(op, c->slot, c->gen));
	c->recv_armed = true;
	c->recv_op = (uint8_t)op;
}

int rtls__handler_open(struct rtls_conn *c)
{
	const struct rtls_handler *h = c->h;
	int ret = 0;

	/* An outbound connection's area was zeroed when its on_close became
	 * owed (at connect), and its caller may have filled it since. */
	if (c->data && !c->handler_open)
		memset(c->data, 0, h->conn_data_size);
	c->handler_open = true;
	c->open_called = true;
	if (h->on_open)
		ret = h->on_open(c, c->data);
	if (ret < 0)
		rtls_conn_abort(c, ret);
	return ret;
}

/* Keeps input that arrives while the handler has paused reading, to hand
 * over in order on resume. A paused connection holds none of the ring's
 * buffers: a ring buffer is copied to the heap and goes back at once.
 * Otherwise a peer that pipelines and never reads would fill the ring
 * (the receive is cancelled on pause, but everything the kernel had
 * already taken off the socket still arrives) and starve every other
 * connection. The copies are bounded by what the kernel took off the
 * socket before the cancel landed: the completions not yet read at the
 * pause, at most the ring's buffers, or twice that without DEFER_TASKRUN
 * (DESIGN.md "Backpressure"; a reactor far behind its completions, under
 * valgrind, parks megabytes; one that keeps up, a few records). */
static int park(struct rtls_conn *c, struct rtls_buf *b)
{
	if (c->npaused == c->paused_cap) {
		unsigned cap = c->paused_cap ? c->paused_cap * 2 : 4;
		struct rtls_buf *q = realloc(c->paused_q, cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		c->paused_q = q;
		c->paused_cap = cap;
	}
	if (b->priv_kind == RTLS__BUF_RING) {
		char *copy = malloc(b->len ? b->len : 1);

		if (!copy)
			return -ENOMEM;
		memcpy(copy, b->data, b->len);
		rtls__bufring_put(c->r, (uint16_t)b->priv_id);
		b->data = copy;
		b->priv_id = 0;
		b->priv_kind = RTLS__BUF_HEAP; /* still held: nheld unchanged */
	}
	c->paused_q[c->npaused++] = *b;
	return 0;
}

void rtls__deliver(struct rtls_conn *c, struct rtls_buf *b)
{
	const struct rtls_handler *h = c->h;

	if (c->state != RTLS__CONN_OPEN || !c->handler_open || !h->on_data) {
		rtls_buf_release(c, b);
		return;
	}
	c->rx_seen = true;
	if (!c->read_paused && c->fwd_on && c->fwd_bounded) {
		/* A bounded forward's bytes that came the ordinary way. */
		if (rtls__fwd_take(c, b))
			rtls__deliver(c, b); /* it has ended: the rest, afresh */
		return;
	}
	if (c->read_paused) {
		if (park(c, b) < 0) {
			rtls_buf_release(c, b);
			rtls_conn_abort(c, -ENOMEM);
		}
		return;
	}
	h->on_data(c, c->data, b);
	/* The first request of a connection the stop found fresh is in the
	 * handler now: it finishes that, then closes. */
	if (c->stop_wait)
		rtls__conn_shutdown(c);
}

void rtls__deliver_eof(struct rtls_conn *c)
{
	const struct rtls_handler *h = c->h;

	c->peer_eof = true;
	if (c->state == RTLS__CONN_LINGER) {
		rtls__conn_kill(c, 0);
		return;
	}
	if (c->state != RTLS__CONN_OPEN)
		return;
	if (c->handler_open && h->on_eof && !c->read_paused)
		h->on_eof(c, c->data);
	else if (!c->read_paused)
		rtls_conn_close(c);
}

void rtls_buf_release(rtls_conn *c, struct rtls_buf *b)
{
	switch (b->priv_kind) {
	case RTLS__BUF_RING:
		rtls__bufring_put(c->r, (uint16_t)b->priv_id);
		break;
	case RTLS__BUF_HEAP:
		free((void *)(uintptr_t)b->data);
		break;
	default:
		rtls_log(RTLS_LOG_ERROR, "rtls_buf_release: buffer released twice or never received");
		abort();
	}
	c->nheld--;
	b->priv_kind = 0;
	b->data = NULL;
	b->len = 0;
}

static void recv_error(struct rtls_conn *c, int res)
{
	switch (res) {
	case -ENOBUFS:
		/* The ring ran dry: re-arm once buffers come back. */
		if (!c->recv_starved) {
			c->recv_starved = true;
			c->r->starved[c->r->nstarved++] = c->slot;
		}
		break;
	case -ECANCELED:
	case -EINTR:
		/* rtls_conn_pause_read() or a forward's start stopped it, or
		 * the connection died; a resume that came meanwhile re-arms
		 * here. A receive that was waiting in an io-wq worker (a
		 * blocking kTLS socket whose record was not yet whole) ends
		 * in -EINTR when cancelled, not -ECANCELED: fwd.c's splice
		 * completions already take it so. */
		if (!c->read_paused)
			rtls__conn_recv_arm(c);
		break;
	default:
		if (c->tp && c->tp->on_recv_error && c->state != RTLS__CONN_DEAD &&
		    c->tp->on_recv_error(c, res))
			break;
		if (c->state != RTLS__CONN_DEAD) {
			rtls_log(RTLS_LOG_DEBUG, "conn %u: recv: %s", c->slot, strerror(-res));
			rtls__conn_kill(c, res);
		}
		break;
	}
}

/* The content type kTLS put in the control message; data if none. */
int rtls__conn_record_type(struct rtls_conn *c)
{
	size_t len = c->ctl->rmsg.msg_controllen;
	int type;

	/* The kernel writes msg_controllen back; the buffer was zeroed, so
	 * a kernel that did not still reads as "no control message". */
	if (len > sizeof(c->ctl->rcbuf.buf))
		len = sizeof(c->ctl->rcbuf.buf);
	type = rtls__cmsg_find_u8((const unsigned char *)c->ctl->rcbuf.buf, len, RTLS_SOL_TLS,
				  RTLS_TLS_GET_RECORD_TYPE);
	return type < 0 ? 23 /* application_data */ : type;
}

void rtls__on_recv(struct rtls_conn *c, struct io_uring_cqe *cqe, enum rtls__op op)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more) {
		c->recv_armed = false;
		c->recv_cancelling = false;
		c->fwd_ctl = false; /* the control record is in: splice again */
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		rtls__bufring_took(c->r);
		struct rtls_buf b = {
			.data = rtls__bufring_addr(c->r, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT)),
			.len = (size_t)(cqe->res > 0 ? cqe->res : 0),
			.priv_id = cqe->flags >> IORING_CQE_BUFFER_SHIFT,
			.priv_kind = RTLS__BUF_RING,
		};

		c->nheld++;
		rtls__stat_add(&c->r->stats, RTLS__STAT(bytes_in), b.len);
		if (cqe->res <= 0 || c->state == RTLS__CONN_DEAD || c->state == RTLS__CONN_LINGER)
			rtls_buf_release(c, &b);
		else if (op == RTLS__OP_RECVMSG)
			c->tp->on_record(c, &b, rtls__conn_record_type(c));
		else if (c->tp)
			c->tp->on_recv(c, &b);
		else
			rtls__deliver(c, &b);
	} else if (cqe->res == 0) {
		if (c->tp && c->tp->on_recv_eof)
			c->tp->on_recv_eof(c);
		else
			rtls__deliver_eof(c);
		return;
	} else if (cqe->res < 0) {
		recv_error(c, cqe->res);
		return;
	}
	if (!more && !c->read_paused)
		rtls__conn_recv_arm(c);
}

/* Re-arms connections whose receive ended on ENOBUFS, oldest first, but
 * only as many as there are buffers in the ring: with none there, a
 * re-armed receive would only fail again, and re-arming on every loop
 * iteration is a busy loop (a reactor whose buffers a few peers hold
 * would spin at 100%). The count is an upper bound (the kernel may
 * already have taken buffers whose completions are not yet read); a
 * receive that fails again joins the list again and waits for the next
 * buffers to come back, so the reactor never spins on it. */
void rtls__rearm_starved(struct rtls__reactor *r)
{
	unsigned budget = rtls__bufring_avail(r);
	unsigned i, keep = 0;

	for (i = 0; i < r->nstarved && budget; i++) {
		struct rtls_conn *c = &r->conns[r->starved[i]];

		c->recv_starved = false;
		if (c->state == RTLS__CONN_FREE || c->state == RTLS__CONN_DEAD || c->read_paused ||
		    c->recv_armed)
			continue; /* resume or the next occupant arms its own */
		rtls__conn_recv_arm(c);
		budget--;
	}
	for (; i < r->nstarved; i++)
		r->starved[keep++] = r->starved[i];
	r->nstarved = keep;
}

/* A paused connection stops receiving, as nginx stops reading a
 * connection whose output is blocked: its multishot receive is cancelled
 * (a single-shot one, RTLS__RX_EXACT or RTLS__RX_MSG, takes at most one buffer and is
 * not re-armed while paused). What arrives before the cancel lands is
 * parked off the ring (park()). Resume arms it again, or the cancel's
 * completion does if resume came first. */
static void recv_stop(struct rtls_conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->recv_armed || c->recv_cancelling || c->rx_mode != RTLS__RX_MULTISHOT ||
	    c->recv_op != RTLS__OP_RECV || c->state == RTLS__CONN_DEAD)
		return;
	sqe = rtls__sqe(c->r);
	io_uring_prep_cancel64(sqe, rtls__ud(RTLS__OP_RECV, c->slot, c->gen), 0);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
	c->recv_cancelling = true;
}

static void err_watch_cancel(struct rtls_conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->err_watch || c->err_cancel)
		return;
	sqe = rtls__sqe(c->r);
	io_uring_prep_cancel64(sqe, rtls__ud(RTLS__OP_ERR_WATCH, c->slot, c->gen), 0);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
	c->err_cancel = true;
}

/* Events 0: only what io_uring always reports wakes it (POLLERR,
 * POLLHUP, and POLLRDHUP: a FIN too). Wanted while nothing else reads
 * the socket: reading paused, or a forward waiting for its destination. */
void rtls__err_watch_sync(struct rtls_conn *c)
{
	struct io_uring_sqe *sqe;
	bool on = c->read_paused || (c->fwd_on && c->fwd_wait);

	if (c->state != RTLS__CONN_OPEN)
		return;
	c->err_want = on;
	if (!on) {
		err_watch_cancel(c);
		return;
	}
	if (c->err_watch)
		return; /* one outstanding; re-armed if it was being cancelled */
	sqe = rtls__sqe(c->r);
	io_uring_prep_poll_add(sqe, c->fd, 0);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_ERR_WATCH, c->slot, c->gen));
	c->err_watch = true;
}

void rtls__on_err_watch(struct rtls_conn *c, int res)
{
	int err = 0;
	socklen_t len = sizeof(err);

	c->err_watch = false;
	c->err_cancel = false;
	if (c->state != RTLS__CONN_OPEN)
		return;
	if (res < 0) { /* cancelled; wanted again meanwhile: arm anew */
		rtls__err_watch_sync(c);
		return;
	}
	c->err_want = false;
	/* No error: a FIN (POLLRDHUP), or both directions shut (POLLHUP).
	 * The peer's data is still to be read, and the next receive sees
	 * the end. Not re-armed: it would wake again at once. A reset after
	 * that FIN is seen at the next receive, or the idle deadline. */
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || !err)
		return;
	rtls_log(RTLS_LOG_DEBUG, "conn %u: %s while not reading", c->slot, strerror(err));
	rtls__conn_kill(c, -err);
}

void rtls_conn_pause_read(rtls_conn *c)
{
	c->read_paused = true;
	recv_stop(c);
	rtls__err_watch_sync(c);
}

void rtls_conn_resume_read(rtls_conn *c)
{
	unsigned i;

	if (!c->read_paused)
		return;
	c->read_paused = false;
	rtls__err_watch_sync(c);
	/* Hand over what arrived meanwhile, in order, unless the handler
	 * pauses again or the connection ends on the way. paused_next
	 * counts what was handed over, so a teardown inside on_data (which
	 * releases the rest, drop_paused()) does not release those twice. */
	while (c->paused_next < c->npaused && !c->read_paused && c->state == RTLS__CONN_OPEN) {
		i = c->paused_next++;
		if (c->fwd_on && c->fwd_bounded && !rtls__fwd_take(c, &c->paused_q[i]))
			continue;
		if (c->read_paused) { /* paused as the forward ended: kept */
			c->paused_next--;
			break;
		}
		c->h->on_data(c, c->data, &c->paused_q[i]);
	}
	if (c->paused_next && c->paused_next == c->npaused) {
		c->npaused = c->paused_next = 0;
	} else if (c->paused_next) {
		memmove(c->paused_q, c->paused_q + c->paused_next,
			(c->npaused - c->paused_next) * sizeof(*c->paused_q));
		c->npaused -= c->paused_next;
		c->paused_next = 0;
	}
	if (c->read_paused || c->state != RTLS__CONN_OPEN)
		return;
	if (c->peer_eof) {
		c->peer_eof = false; /* let deliver_eof run the handler now */
		rtls__deliver_eof(c);
		return;
	}
	if (c->fwd_later && !c->rx_kernel_later)
		rtls__fwd_later(c); /* it came while paused */
	rtls__conn_recv_arm(c);
}

void rtls_conn_close(rtls_conn *c)
{
	/* Nothing can be queued before the connect completes: nothing to
	 * close gracefully. */
	if (c->state == RTLS__CONN_CONNECTING) {
		rtls__conn_kill(c, -ECANCELED);
		return;
	}
	if (c->state != RTLS__CONN_OPEN)
		return;
	rtls__conn_set_state(c, RTLS__CONN_CLOSING);
	c->fwd_on = false; /* nothing more is delivered, nor forwarded */
	/* A peer that never reads must not hold a closing connection. */
	if (c->timer == RTLS_TIMER_NONE)
		rtls__timer_arm(c, RTLS_TIMER_IDLE);
	if (c->tp && c->tp->shutdown)
		c->tp->shutdown(c);
	c->flush_wanted = true;
	if (!rtls__send_busy(c))
		rtls__send_start(c);
}

int rtls_conn_shutdown_write(rtls_conn *c)
{
	if (c->state != RTLS__CONN_OPEN)
		return -EPIPE;
	if (c->wr_shut)
		return 0;
	c->wr_shut = true;
	/* close_notify after what is queued (the transport keeps it to
	 * one), then the FIN once it has all gone (drained(), send.c). */
	if (c->tp && c->tp->shutdown)
		c->tp->shutdown(c);
	c->flush_wanted = true;
	if (!rtls__send_busy(c))
		rtls__send_start(c);
	return 0;
}

int rtls_conn_eof(const rtls_conn *c)
{
	if (!c->peer_eof)
		return RTLS_EOF_NONE;
	return c->eof_truncated ? RTLS_EOF_TRUNCATED : RTLS_EOF_CLEAN;
}

int rtls_conn_set_handler(rtls_conn *c, const struct rtls_handler *h)
{
	if (!h || h->conn_data_size > c->r->srv->handler.conn_data_size)
		return -EINVAL;
	if (c->state != RTLS__CONN_OPEN && c->state != RTLS__CONN_CONNECTING)
		return -EPIPE;
	c->h = h;
	return 0;
}

void rtls_conn_abort(rtls_conn *c, int err)
{
	rtls__conn_kill(c, err ? err : -ECONNABORTED);
}

static void drop_paused(struct rtls_conn *c)
{
	for (unsigned i = c->paused_next; i < c->npaused; i++)
		rtls_buf_release(c, &c->paused_q[i]);
	c->npaused = c->paused_next = 0;
	free(c->paused_q);
	c->paused_q = NULL;
	c->paused_cap = 0;
}

/* The end of a connection for its handler and its transport: held input
 * goes back, on_close runs, and the transport is destroyed (TLS wipes its
 * keys there). At most once: both are cleared. */
static void conn_teardown(struct rtls_conn *c, int err)
{
	const struct rtls_handler *h = c->h;

	drop_paused(c);
	if (c->handler_open) {
		c->handler_open = false;
		if (h->on_close)
			h->on_close(c, c->data, err);
	}
	if (c->tp && c->tp->destroy)
		c->tp->destroy(c);
	c->tp = NULL;
}

void rtls__conn_orphan(struct rtls_conn *c)
{
	if (c->state != RTLS__CONN_FREE && c->state != RTLS__CONN_DEAD)
		conn_teardown(c, -ECANCELED);
}

/* Ends the connection now. Outstanding requests are cancelled; the slot is
 * freed by rtls__reap() once their completions are in. */
void rtls__conn_kill(struct rtls_conn *c, int err)
{
	struct rtls__reactor *r = c->r;
	bool reset_sent = false;

	if (c->state == RTLS__CONN_DEAD || c->state == RTLS__CONN_FREE)
		return;
	if (err == 0 && c->fail_err)
		err = c->fail_err;
	rtls__stats_closed(c, err);
	rtls__conn_set_state(c, RTLS__CONN_DEAD);
	c->close_err = err;
	rtls__timer_arm(c, RTLS_TIMER_NONE);
	if (c->recv_armed) {
		struct io_uring_sqe *sqe = rtls__sqe(r);

		io_uring_prep_cancel64(sqe, rtls__ud((enum rtls__op)c->recv_op, c->slot, c->gen), 0);
		io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
	}
	err_watch_cancel(c);
	if (c->connect_armed) {
		struct io_uring_sqe *sqe = rtls__sqe(r);

		io_uring_prep_cancel64(sqe, rtls__ud(RTLS__OP_CONNECT, c->slot, c->gen), 0);
		io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
	}
	/* A send or splice blocked on a full socket completes at once after
	 * shutdown. The fd itself stays open until conn_free(): a request
	 * prepared but not yet submitted, or a splice queued to io-wq, looks
	 * the number up only when it runs, and after a close the next accept
	 * (either reactor: one fd table) may already own that number. */
	if (err == -ECONNRESET && c->fd >= 0) {
		/* Asked for by the handler (or the peer's own reset): the
		 * close sends RST, so the peer can tell what it got is cut.
		 * A FIN that shutdown() below queues behind unsent data never
		 * leaves: the close discards both. */
		struct linger lg = { 1, 0 };
		struct sockaddr sa = { .sa_family = AF_UNSPEC };

		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		/* The reset now, not at the close: shutdown() below would send
		 * a FIN first whenever the send queue is already empty (a
		 * send completes in the kernel before its completion is
		 * read), and the peer would read a clean end. A TCP
		 * disconnect (connect to AF_UNSPEC) sends the RST at once,
		 * wakes every request with an error, and keeps the number.
		 * kTLS sockets refuse it (EOPNOTSUPP on newer kernels): they
		 * get the RST at the close, as before. */
		reset_sent = connect(c->fd, &sa, sizeof(sa)) == 0;
	}
	if (rtls__send_busy(c) && !reset_sent)
		shutdown(c->fd, SHUT_RDWR);
	conn_teardown(c, err);
	if (!c->reaping) {
		c->reaping = true;
		r->reap[r->nreap++] = c->slot;
	}
}

static void conn_free(struct rtls_conn *c)
{
	struct rtls__reactor *r = c->r;

	rtls__wbuf_free(&c->w[0]);
	rtls__wbuf_free(&c->w[1]);
	if (!c->ctl_borrowed)
		free(c->ctl);
	c->ctl = NULL;
	free(c->pp);
	c->pp = NULL;
	if (c->pipe[0] >= 0) {
		close(c->pipe[0]);
		close(c->pipe[1]);
	}
	if (c->fwd_pipe[0] >= 0) {
		close(c->fwd_pipe[0]);
		close(c->fwd_pipe[1]);
	}
	close(c->fd);
	c->fd = -1;
	rtls__conn_set_state(c, RTLS__CONN_FREE);
	c->gen++;
	r->free_slots[r->nfree++] = c->slot;
	r->nlive--;
}

/* Frees dead slots whose requests have all completed. */
void rtls__reap(struct rtls__reactor *r)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < r->nreap; i++) {
		struct rtls_conn *c = &r->conns[r->reap[i]];

		if (c->recv_armed || c->connect_armed || c->err_watch || rtls__send_busy(c)) {
			r->reap[keep++] = c->slot;
			continue;
		}
		c->reaping = false;
		conn_free(c);
	}
	r->nreap = keep;
}

void rtls__conn_timeout(struct rtls_conn *c, enum rtls_timer t)
{
	const struct rtls_handler *h = c->h;

	if (c->state == RTLS__CONN_LINGER) {
		rtls__conn_kill(c, 0);
		return;
	}
	/* Before on_open (a connect, a TLS client's handshake) the deadline
	 * is the engine's: the connection ends, and on_close says why. */
	if (c->state != RTLS__CONN_OPEN || !c->open_called || !h->on_timeout) {
		rtls__conn_kill(c, -ETIMEDOUT);
		return;
	}
	h->on_timeout(c, c->data, t);
}

/* Server shutdown: idle connections close now, busy ones when done.
 * An accepted connection that has delivered nothing yet (a TLS or PROXY
 * handshake under way, or no request byte so far) is not idle: its client
 * may be sending the first request this very moment, one the kernel had
 * queued before the listener closed. It gets until the reactor's
 * stop_grace_ms to deliver it (rtls__deliver calls this again then), and
 * is treated as below after that (on_tick in reactor.c). */
void rtls__conn_shutdown(struct rtls_conn *c)
{
	const struct rtls_handler *h = c->h;

	if (c->state == RTLS__CONN_OPEN && !c->rx_seen && !c->stop_wait &&
	    c->listener != RTLS__LISTENER_NONE && c->r->stop_grace_ms) {
		c->stop_wait = true;
		return;
	}
	c->stop_wait = false;
	if (c->state == RTLS__CONN_CONNECTING) {
		rtls__conn_kill(c, -ESHUTDOWN); /* nothing to finish yet */
		return;
	}
	if (c->state != RTLS__CONN_OPEN)
		return;
	if (!c->handler_open) {
		rtls__conn_kill(c, -ESHUTDOWN);
		return;
	}
	if (!h->on_shutdown || h->on_shutdown(c, c->data))
		rtls_conn_close(c);
}

void *rtls_conn_data(rtls_conn *c)
{
	return c->data;
}

void *rtls_conn_arg(rtls_conn *c)
{
	return c->arg;
}

void *rtls_conn_ctx(rtls_conn *c)
{
	return c->r->srv->cfg.handler_ctx;
}

void rtls_conn_set_timer(rtls_conn *c, enum rtls_timer t)
{
	if (c->state == RTLS__CONN_OPEN || t == RTLS_TIMER_NONE)
		rtls__timer_arm(c, t);
}

int rtls_conn_query(const rtls_conn *c, struct rtls_conn_info *info)
{
	memset(info, 0, sizeof(*info));
	if (c->listener == RTLS__LISTENER_NONE) {
		/* Outbound: TLS from rtls_conn_connect_tls(), else plain. */
		info->transport = c->tp ? RTLS_TRANSPORT_TLS : RTLS_TRANSPORT_PLAIN;
		info->listener = UINT_MAX;
	} else {
		info->transport = c->r->srv->cfg.listeners[c->listener].tls ? RTLS_TRANSPORT_TLS
									    : RTLS_TRANSPORT_PLAIN;
		info->listener = c->listener;
	}
	info->peer_len = sizeof(info->peer);
	if (c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&info->peer, &info->peer_len) < 0)
		info->peer_len = 0;
	info->local_len = sizeof(info->local);
	if (c->fd < 0 || getsockname(c->fd, (struct sockaddr *)&info->local, &info->local_len) < 0)
		info->local_len = 0;
	if (c->pp) {
		/* A PROXY header named the connection's two ends. */
		info->peer = c->pp->src;
		info->peer_len = c->pp->src_len;
		info->local = c->pp->dst;
		info->local_len = c->pp->dst_len;
	}
	if (c->tp && c->tp->query)
		c->tp->query(c, info);
	return 0;
}

const char *rtls_conn_alpn(const rtls_conn *c)
{
	struct rtls_conn_info ci;
	bool tls = c->listener == RTLS__LISTENER_NONE ? c->tp != NULL
						      : c->r->srv->cfg.listeners[c->listener].tls;

	if (!tls)
		return NULL;
	/* The transport's part of rtls_conn_query(): no system call. */
	memset(&ci, 0, sizeof(ci));
	if (c->tp && c->tp->query)
		c->tp->query(c, &ci);
	return ci.alpn ? ci.alpn : "";
}

int rtls_conn_peer(const rtls_conn *c, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (c->pp) { /* the client a PROXY header named */
		rtls_format_addr(&c->pp->src, out, n);
		return 0;
	}
	if (c->listener == RTLS__LISTENER_NONE && c->peer_len) {
		/* Outbound: where it connected to, also once the peer is gone. */
		rtls_format_addr(&c->peer, out, n);
		return 0;
	}
	if (c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(out, n, "?");
		return c->fd < 0 ? -EBADF : -errno;
	}
	rtls_format_addr(&ss, out, n);
	return 0;
}
