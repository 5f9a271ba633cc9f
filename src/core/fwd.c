/* rtls_conn_forward(): one connection's input becomes another's output
 * inside the kernel, by splice through a pipe, without entering this
 * process. The source is plain TCP or TLS whose records the kernel opens
 * (kTLS RX); the destination is plain TCP or TLS whose records the
 * kernel makes (kTLS TX).
 *
 * The source's receive is replaced by a loop of three requests:
 *   POLL_ADD (input waiting) -> SPLICE socket -> pipe (non-blocking)
 *   -> the chunk is queued on the destination as a pipe segment, which
 *   its send path splices out in order with everything else it sends
 *   (its close_notify, a KeyUpdate); once it has gone, the next POLL_ADD.
 * One chunk at a time: the destination's pace is the source's, as with
 * the copying path's backpressure.
 *
 * The poll comes first so that no io-wq worker ever blocks on an idle
 * socket: io_uring runs a splice in a worker, and a blocking splice from
 * a quiet connection would hold one per connection.
 *
 * Under kTLS RX the splice fails with EINVAL when the next record is not
 * application data (net/tls/tls_sw.c, tls_sw_splice_read(): control
 * records stay queued). That record is then read by one RECVMSG with its
 * content type, through the transport as before (close_notify, an alert,
 * a KeyUpdate), and splicing resumes.
 *
 * A plain destination socket is made non-blocking, so no io-wq worker
 * waits on a peer that does not read (see rtls_conn_forward()).
 *
 * Each chunk the destination queues is a duplicate of the pipe's read
 * end, owned by the segment: if the source goes first, the bytes it
 * already took still leave, and no descriptor number is shared with a
 * connection that may be freed meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* The pipe's default capacity: 16 pages. */
#define FWD_CHUNK (64u * 1024u)

static struct rtls_conn *fwd_dst(struct rtls_conn *c)
{
	struct rtls_conn *d;

	if (c->fwd_slot >= c->r->srv->cfg.max_conns)
		return NULL;
	d = &c->r->conns[c->fwd_slot];
	if (d->gen != c->fwd_gen || d->state != RTLS__CONN_OPEN || d->wr_shut)
		return NULL;
	return d;
}

/* bound: the bytes a bounded forward moves, or 0 for all until the end. */
static int fwd_start(rtls_conn *src, rtls_conn *dst, uint64_t bound)
{
	struct io_uring_sqe *sqe;
	int flags;

	if (src == dst || src->r != dst->r)
		return -EINVAL;
	if (src->state != RTLS__CONN_OPEN || dst->state != RTLS__CONN_OPEN || dst->wr_shut ||
	    src->peer_eof)
		return -EPIPE;
	if (src->fwd_on || src->fwd_later)
		return -EALREADY;
	/* Only where the kernel opens the source's records and makes the
	 * destination's: OpenSSL's records would have to pass through here. */
	if ((src->tp && src->rx_mode != RTLS__RX_MSG && !src->rx_kernel_later) ||
	    (dst->tp && dst->tp->seal))
		return -EOPNOTSUPP;
	if (src->read_paused || src->npaused)
		return -EBUSY;
	if (src->tp && src->rx_mode != RTLS__RX_MSG) {
		/* Not yet: the handler copies what comes until the kernel
		 * has RX (rtls__fwd_later). A bounded forward cannot wait:
		 * its bytes would be read the ordinary way meanwhile. */
		if (bound)
			return -EOPNOTSUPP;
		src->fwd_later = true;
		src->fwd_slot = dst->slot;
		src->fwd_gen = dst->gen;
		return 0;
	}
	if (pipe2(src->fwd_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		src->fwd_pipe[0] = src->fwd_pipe[1] = -1;
		return -errno;
	}
	/* A splice into a blocking socket that is full blocks an io-wq
	 * worker until the peer reads: one kernel thread per stalled
	 * reader. Non-blocking, it says EAGAIN, and the send path polls
	 * (send.c). Plain TCP only (the flag is this socket's own: an
	 * accepted socket is a file of its own). Not a kTLS socket: there
	 * io_uring's own requests can then end in EAGAIN instead of
	 * waiting (a RECVMSG while a partial record that came before
	 * TLS_RX makes 6.1 say readable: a busy loop), so a kTLS reader
	 * that stalls holds one worker, as a file download does. */
	flags = dst->tp ? 0 : fcntl(dst->fd, F_GETFL);
	if (flags < 0 || (!dst->tp && !(flags & O_NONBLOCK) &&
			  fcntl(dst->fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
		int err = -errno;

		close(src->fwd_pipe[0]);
		close(src->fwd_pipe[1]);
		src->fwd_pipe[0] = src->fwd_pipe[1] = -1;
		return err;
	}
	src->fwd_on = true;
	src->fwd_bounded = bound != 0;
	src->fwd_left = bound;
	src->fwd_slot = dst->slot;
	src->fwd_gen = dst->gen;
	if (!src->recv_armed) {
		rtls__conn_recv_arm(src);
		return 0;
	}
	/* The receive ends first; its last completion re-arms as a forward.
	 * Whatever it still brings goes to the handler, in order, before the
	 * first splice. */
	if (!src->recv_cancelling) {
		sqe = rtls__sqe(src->r);
		io_uring_prep_cancel64(
			sqe, rtls__ud((enum rtls__op)src->recv_op, src->slot, src->gen), 0);
		io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
		src->recv_cancelling = true;
	}
	return 0;
}

int rtls_conn_forward(rtls_conn *src, rtls_conn *dst)
{
	return fwd_start(src, dst, 0);
}

int rtls_conn_forward_n(rtls_conn *src, rtls_conn *dst, uint64_t n)
{
	if (!n)
		return -EINVAL;
	return fwd_start(src, dst, n);
}

void rtls__rx_kernel_blocking(struct rtls_conn *c)
{
	int flags;

	if (c->r->ep)
		return; /* epoll: every socket non-blocking */
	flags = fcntl(c->fd, F_GETFL);
	if (flags >= 0 && (flags & O_NONBLOCK))
		(void)fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
}

void rtls__fwd_later(struct rtls_conn *c)
{
	struct rtls_conn *d;

	c->rx_kernel_later = false;
	if (!c->fwd_later)
		return;
	c->fwd_later = false;
	d = fwd_dst(c);
	/* -EOPNOTSUPP if RX stayed in userspace: the handler goes on
	 * copying, as it did with what came meanwhile. Paused: again at
	 * the resume (rtls_conn_resume_read()). */
	if (d && rtls_conn_forward(c, d) == -EBUSY)
		c->fwd_later = true;
}

uint64_t rtls_conn_forwarded(const rtls_conn *c)
{
	return c->fwd_bytes;
}

void rtls__fwd_arm(struct rtls_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->fwd_wait || c->read_paused || c->recv_armed)
		return;
	sqe = rtls__sqe(c->r);
	io_uring_prep_poll_add(sqe, c->fd, POLLIN | POLLRDHUP);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_FWD_POLL, c->slot, c->gen));
	c->recv_armed = true;
	c->recv_op = RTLS__OP_FWD_POLL;
}

void rtls__fwd_on_poll(struct rtls_conn *c, int res)
{
	struct io_uring_sqe *sqe;
	unsigned len;

	c->recv_armed = false;
	c->recv_cancelling = false;
	if (c->state != RTLS__CONN_OPEN || !c->fwd_on) {
		rtls__conn_recv_arm(c); /* lingering: an ordinary receive now */
		return;
	}
	if (res < 0 && res != -ECANCELED) {
		rtls__conn_kill(c, res);
		return;
	}
	if (res < 0 || c->read_paused) {
		rtls__conn_recv_arm(c); /* a no-op while paused: resume arms */
		return;
	}
	c->fwd_hup = (res & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
	/* A bounded forward never takes a byte past its end from the
	 * socket: those are the handler's (the next request). Under kTLS
	 * too: tls_sw_splice_read() splices at most one record, and of a
	 * record longer than asked it moves what was asked and keeps the
	 * rest queued for the next read (offset and length advanced). */
	len = FWD_CHUNK;
	if (c->fwd_bounded && c->fwd_left < len)
		len = (unsigned)c->fwd_left;
	sqe = rtls__sqe(c->r);
	io_uring_prep_splice(sqe, c->fd, -1, c->fwd_pipe[1], -1, len,
			     SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_FWD_IN, c->slot, c->gen));
	c->recv_armed = true;
	c->recv_op = RTLS__OP_FWD_IN;
}

/* A bounded forward has moved its last byte (queued on the destination,
 * maybe not sent yet: that chunk's segment no longer names the source,
 * which owes it nothing). The source reads the ordinary way again; its
 * handler hears of it first. */
static void fwd_done(struct rtls_conn *c)
{
	const struct rtls_handler *h = c->h;

	c->fwd_on = false;
	c->fwd_bounded = false;
	c->fwd_ctl = false;
	c->fwd_wait = false;
	/* The chunk still queued holds a duplicate of the read end; a next
	 * forward, maybe to another destination, gets a pipe of its own. */
	close(c->fwd_pipe[0]);
	close(c->fwd_pipe[1]);
	c->fwd_pipe[0] = c->fwd_pipe[1] = -1;
	rtls__err_watch_sync(c);
	if (c->state == RTLS__CONN_OPEN && c->handler_open && h->on_forwarded)
		h->on_forwarded(c, c->data);
}

/* res bytes are in the pipe: the destination sends them next. */
static void fwd_chunk(struct rtls_conn *c, size_t n)
{
	struct rtls_conn *d = fwd_dst(c);
	bool last = c->fwd_bounded && n >= c->fwd_left;
	int fd;

	rtls__stat_add(&c->r->stats, RTLS__STAT(bytes_in), n);
	c->rx_seen = true;
	if (!d) {
		/* Nowhere for them to go: the stream is cut, and its peer
		 * must not read a clean end. */
		rtls__conn_kill(c, -ECONNRESET);
		return;
	}
	if (c->timer == RTLS_TIMER_IDLE)
		rtls__timer_arm(c, RTLS_TIMER_IDLE);
	fd = fcntl(c->fwd_pipe[0], F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		rtls__conn_kill(c, -errno);
		return;
	}
	/* The last chunk of a bounded forward names no source: its sending
	 * must not wake a source that has moved on (UINT32_MAX is no slot). */
	if (rtls__wbuf_add_pipe(&d->w[d->wi], fd, n, last ? UINT32_MAX : c->slot, c->gen) < 0) {
		close(fd);
		rtls__conn_kill(c, -ENOMEM);
		return;
	}
	c->fwd_bytes += n; /* queued on d; counted as forwarded from here */
	if (c->fwd_bounded)
		c->fwd_left -= n < c->fwd_left ? n : c->fwd_left;
	if (last) {
		rtls_conn_flush(d);
		fwd_done(c);
		if (!c->read_paused)
			rtls__conn_recv_arm(c);
		return;
	}
	c->fwd_wait = true;
	rtls__err_watch_sync(c); /* nothing armed until d has sent it */
	rtls_conn_flush(d);
}

int rtls__fwd_take(struct rtls_conn *c, struct rtls_buf *b)
{
	struct rtls_conn *d = fwd_dst(c);
	size_t k = b->len < c->fwd_left ? b->len : (size_t)c->fwd_left;

	if (!d || rtls_conn_write(d, b->data, k) < 0) {
		/* As for a spliced chunk: the stream is cut. */
		rtls_buf_release(c, b);
		rtls__conn_kill(c, -ECONNRESET);
		return 0;
	}
	c->fwd_left -= k;
	rtls_conn_flush(d);
	if (c->fwd_left) {
		rtls_buf_release(c, b);
		return 0;
	}
	if (k < b->len) { /* the rest is the handler's: to the front */
		memmove((char *)(uintptr_t)b->data, b->data + k, b->len - k);
		b->len -= k;
	} else {
		rtls_buf_release(c, b);
	}
	fwd_done(c);
	if (!b->data)
		return 0;
	if (c->state != RTLS__CONN_OPEN) {
		rtls_buf_release(c, b);
		return 0;
	}
	return 1;
}

/* One byte of the next record, left in place: the completion comes once
 * the kernel has the whole record, and tells its type. */
static void fwd_peek(struct rtls_conn *c)
{
	struct rtls__ctl *m = rtls__conn_ctl(c);
	struct io_uring_sqe *sqe;

	if (!m) {
		rtls__conn_kill(c, -ENOMEM);
		return;
	}
	memset(&m->rmsg, 0, sizeof(m->rmsg));
	memset(&m->rcbuf, 0, sizeof(m->rcbuf));
	m->riov.iov_base = &m->peek;
	m->riov.iov_len = 1;
	m->rmsg.msg_iov = &m->riov;
	m->rmsg.msg_iovlen = 1;
	m->rmsg.msg_control = m->rcbuf.buf;
	m->rmsg.msg_controllen = sizeof(m->rcbuf.buf);
	sqe = rtls__sqe(c->r);
	io_uring_prep_recvmsg(sqe, c->fd, &m->rmsg, MSG_PEEK);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_FWD_PEEK, c->slot, c->gen));
	c->recv_armed = true;
	c->recv_op = RTLS__OP_FWD_PEEK;
}

void rtls__fwd_on_peek(struct rtls_conn *c, int res)
{
	c->recv_armed = false;
	c->recv_cancelling = false;
	if (c->state != RTLS__CONN_OPEN || !c->fwd_on) {
		rtls__conn_recv_arm(c);
		return;
	}
	if (res == -EINTR) {
		fwd_peek(c);
		return;
	}
	/* A whole data record: splice it. Anything else (a control record,
	 * the end, an error) is for one ordinary RECVMSG, which reads it
	 * with its type, or reports the error, through the transport. */
	if (res <= 0 || rtls__conn_record_type(c) != 23 /* application_data */)
		c->fwd_ctl = true;
	rtls__conn_recv_arm(c);
}

void rtls__fwd_on_in(struct rtls_conn *c, int res)
{
	c->recv_armed = false;
	c->recv_cancelling = false;
	if (c->state != RTLS__CONN_OPEN || !c->fwd_on) {
		/* Closing: what the pipe holds is dropped with it. */
		rtls__conn_recv_arm(c);
		return;
	}
	if (res > 0) {
		fwd_chunk(c, (size_t)res);
		return;
	}
	if (!c->tp && (res == -EAGAIN || (res == 0 && !c->fwd_hup))) {
		/* Plain TCP said readable, but the splice took nothing: urgent
		 * data (MSG_OOB). A splice stops at its mark and never moves
		 * past it (waiting again would spin, and 0 is no end); an
		 * ordinary receive does, and hands its bytes to the handler. */
		c->fwd_ctl = true;
		rtls__conn_recv_arm(c);
		return;
	}
	if (res == 0) { /* the peer's FIN (a TLS transport judges it) */
		if (c->tp && c->tp->on_recv_eof)
			c->tp->on_recv_eof(c);
		else
			rtls__deliver_eof(c);
		return;
	}
	if (res == -EINTR) {
		rtls__conn_recv_arm(c);
		return;
	}
	if (res == -EAGAIN) {
		/* kTLS: readable, but no whole record yet. Polling again can
		 * spin: on 6.1 a partial record that arrived before TLS_RX was
		 * set makes the socket readable until the record is whole.
		 * A RECVMSG waits for the record the kernel's way; with
		 * MSG_PEEK it takes nothing, and a data record is then spliced
		 * like the others instead of passing through here. */
		fwd_peek(c);
		return;
	}
	if (res == -EINVAL && c->tp) {
		/* kTLS: the next record is not data. */
		c->fwd_ctl = true;
		rtls__conn_recv_arm(c);
		return;
	}
	if (c->tp && c->tp->on_recv_error && c->tp->on_recv_error(c, res))
		return;
	rtls__conn_kill(c, res);
}

void rtls__fwd_sent(struct rtls__reactor *r, uint32_t slot, uint32_t gen)
{
	struct rtls_conn *c;

	if (slot >= r->srv->cfg.max_conns)
		return;
	c = &r->conns[slot];
	if (c->gen != gen || c->state != RTLS__CONN_OPEN)
		return;
	c->fwd_wait = false;
	rtls__err_watch_sync(c);
	/* The source waited on a slow reader: that is progress too. */
	if (c->timer == RTLS_TIMER_IDLE)
		rtls__timer_arm(c, RTLS_TIMER_IDLE);
	rtls__conn_recv_arm(c);
}
