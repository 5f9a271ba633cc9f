/* The send path. A flush swaps the pending output side into flight and
 * sends its segments in order: bytes with one IORING_OP_SEND (resumed on a
 * partial send), file ranges with splice file -> pipe -> socket so file
 * bodies never enter userspace. Writes made meanwhile collect on the other
 * side and leave with the next flush. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* Pipe capacity for splice; 1 MiB is the default pipe-max-size. */
#define PIPE_BYTES (1u << 20)

static struct rtls__wbuf *inflight(struct rtls_conn *c) { return &c->w[c->wi ^ 1]; }

/* The edges of enum rtls__send_state (internal.h has the picture). */
static inline bool send_edge(enum rtls__send_state from, enum rtls__send_state to)
{
	switch (from) {
	case RTLS__SEND_IDLE:
		/* send_next() begins a side; rtls__send_urgent() (or send_next()
		 * with the record queued) sends the urgent record alone. */
		return to == RTLS__SEND_SIDE_NEXT || to == RTLS__SEND_URGENT;
	case RTLS__SEND_SIDE_NEXT:
		/* A request of the side, the urgent record before it, or the
		 * side is done. */
		return to == RTLS__SEND_SIDE || to == RTLS__SEND_SIDE_URGENT ||
		       to == RTLS__SEND_IDLE;
	case RTLS__SEND_SIDE:
	case RTLS__SEND_SIDE_URGENT:
		/* Its completion: the side goes on. */
		return to == RTLS__SEND_SIDE_NEXT;
	case RTLS__SEND_URGENT:
		/* Its completion: nothing else was in flight. */
		return to == RTLS__SEND_IDLE;
	default:
		return false;
	}
}

static void send_set(struct rtls_conn *c, enum rtls__send_state to)
{
	RTLS__EDGE_CHECK(send_edge((enum rtls__send_state)c->send_state, to), "send",
			 c->send_state, to);
	c->send_state = (uint8_t)to;
}

static bool send_side_active(const struct rtls_conn *c)
{
	return c->send_state == RTLS__SEND_SIDE || c->send_state == RTLS__SEND_SIDE_URGENT ||
	       c->send_state == RTLS__SEND_SIDE_NEXT;
}

static bool send_urgent_outstanding(const struct rtls_conn *c)
{
	return c->send_state == RTLS__SEND_URGENT || c->send_state == RTLS__SEND_SIDE_URGENT;
}

/* A completion came in: the request it ends is no longer outstanding. */
static void send_complete(struct rtls_conn *c)
{
	switch ((enum rtls__send_state)c->send_state) {
	case RTLS__SEND_URGENT:
		send_set(c, RTLS__SEND_IDLE);
		break;
	case RTLS__SEND_SIDE:
	case RTLS__SEND_SIDE_URGENT:
		send_set(c, RTLS__SEND_SIDE_NEXT);
		break;
	case RTLS__SEND_IDLE:
	case RTLS__SEND_SIDE_NEXT:
	default:
		/* Nothing was outstanding: a completion nobody asked for. */
		RTLS__EDGE_CHECK(false, "send completion", c->send_state, c->send_state);
		break;
	}
}

static int pipe_get(struct rtls_conn *c)
{
	struct rtls__reactor *r = c->r;

	if (c->pipe[0] >= 0)
		return 0;
	if (r->npipes) {
		r->npipes--;
		c->pipe[0] = r->pipe_pool[(size_t)2 * r->npipes];
		c->pipe[1] = r->pipe_pool[(size_t)2 * r->npipes + 1];
		return 0;
	}
	if (pipe2(c->pipe, O_CLOEXEC) < 0)
		return -errno;
	/* Larger pipes mean fewer splice round trips; failure only costs speed. */
	(void)fcntl(c->pipe[1], F_SETPIPE_SZ, (int)PIPE_BYTES);
	return 0;
}

int rtls_conn_file_ready(rtls_conn *c)
{
	/* A sealing transport (userspace TLS) reads files with pread. */
	if (c->tp && c->tp->seal)
		return 0;
	return pipe_get(c);
}

/* An empty pipe goes back to the reactor's pool for the next file. */
static void pipe_put(struct rtls_conn *c)
{
	struct rtls__reactor *r = c->r;

	if (c->pipe[0] < 0)
		return;
	if (c->pipe_bytes == 0 && r->npipes < r->pipecap) {
		r->pipe_pool[(size_t)2 * r->npipes] = c->pipe[0];
		r->pipe_pool[(size_t)2 * r->npipes + 1] = c->pipe[1];
		r->npipes++;
	} else {
		close(c->pipe[0]);
		close(c->pipe[1]);
	}
	c->pipe[0] = c->pipe[1] = -1;
}

void rtls__pipes_free(struct rtls__reactor *r)
{
	for (unsigned i = 0; i < 2 * r->npipes; i++)
		close(r->pipe_pool[i]);
	r->npipes = 0;
}

static void submit_send(struct rtls_conn *c, const char *p, size_t n, bool more)
{
	struct io_uring_sqe *sqe = rtls__sqe(c->r);

	/* MSG_MORE when a file range follows, so headers and body share
	 * segments. No MSG_WAITALL: kTLS rejects it and partial sends are
	 * resumed here anyway. */
	io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_SEND, c->slot, c->gen));
	send_set(c, RTLS__SEND_SIDE);
}

/* One kTLS control record: the content type rides in a control message
 * (TLS_SET_RECORD_TYPE), and the kernel seals it as its own record. `to`:
 * a piece of the side, or the urgent record. */
static void submit_record(struct rtls_conn *c, const char *p, size_t n, uint8_t type,
			  enum rtls__send_state to)
{
	struct rtls__ctl *m = rtls__conn_ctl(c);
	struct io_uring_sqe *sqe;
	struct cmsghdr *cm;

	if (!m) {
		rtls__conn_kill(c, -ENOMEM);
		return;
	}
	memset(&m->smsg, 0, sizeof(m->smsg));
	memset(&m->scbuf, 0, sizeof(m->scbuf));
	m->siov.iov_base = (void *)(uintptr_t)p;
	m->siov.iov_len = n;
	m->smsg.msg_iov = &m->siov;
	m->smsg.msg_iovlen = 1;
	m->smsg.msg_control = m->scbuf.buf;
	m->smsg.msg_controllen = CMSG_SPACE(1);
	cm = CMSG_FIRSTHDR(&m->smsg);
	cm->cmsg_level = RTLS_SOL_TLS;
	cm->cmsg_type = RTLS_TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(cm) = type;
	sqe = rtls__sqe(c->r);
	io_uring_prep_sendmsg(sqe, c->fd, &m->smsg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_SENDMSG, c->slot, c->gen));
	send_set(c, to);
}

/* The urgent record, before anything else not yet sent. */
static void submit_urgent(struct rtls_conn *c)
{
	submit_record(c, (const char *)c->urgent, c->urgent_len, c->urgent_type,
		      send_side_active(c) ? RTLS__SEND_SIDE_URGENT : RTLS__SEND_URGENT);
}

static void submit_splice(struct rtls_conn *c, enum rtls__op op, const struct rtls__seg *s)
{
	struct io_uring_sqe *sqe = rtls__sqe(c->r);

	if (op == RTLS__OP_SPLICE_IN) {
		size_t left = s->flen - c->file_sent;
		unsigned n = left < PIPE_BYTES ? (unsigned)left : PIPE_BYTES;

		io_uring_prep_splice(sqe, s->fd, (int64_t)s->off + (int64_t)c->file_sent,
				     c->pipe[1], -1, n, SPLICE_F_MOVE);
	} else {
		io_uring_prep_splice(sqe, c->pipe[0], -1, c->fd, -1,
				     (unsigned)c->pipe_bytes, SPLICE_F_MOVE);
	}
	io_uring_sqe_set_data64(sqe, rtls__ud(op, c->slot, c->gen));
	send_set(c, RTLS__SEND_SIDE);
}

/* A forward's chunk, straight from the source's pipe (fwd.c). */
static void submit_fwd_out(struct rtls_conn *c, const struct rtls__seg *s)
{
	struct io_uring_sqe *sqe = rtls__sqe(c->r);

	io_uring_prep_splice(sqe, s->fd, -1, c->fd, -1, (unsigned)(s->flen - c->file_sent),
			     SPLICE_F_MOVE);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_FWD_OUT, c->slot, c->gen));
	send_set(c, RTLS__SEND_SIDE);
}

static void send_next(struct rtls_conn *c);

/* A splice found a non-blocking socket full. io_uring runs a splice in
 * io-wq without polling for it: EAGAIN comes straight back, and sending
 * again at once would spin. Wait until the socket takes more. */
static void fwd_wait_writable(struct rtls_conn *c)
{
	struct io_uring_sqe *sqe = rtls__sqe(c->r);

	io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_FWD_WPOLL, c->slot, c->gen));
	send_set(c, RTLS__SEND_SIDE);
}

void rtls__on_fwd_writable(struct rtls_conn *c, int res)
{
	send_complete(c);
	if (c->state == RTLS__CONN_DEAD)
		return;
	if (res < 0) {
		rtls__conn_kill(c, res);
		return;
	}
	send_next(c); /* the urgent record first, if one came meanwhile */
}

static void drained(struct rtls_conn *c)
{
	const struct rtls_handler *h = c->h;

	if (c->tp && c->tp->on_drained) {
		c->tp->on_drained(c);
		if (c->state == RTLS__CONN_DEAD || rtls__send_busy(c))
			return;
	}

	if (c->state == RTLS__CONN_CLOSING) {
		/* Nothing to linger for when the peer is done, or when the
		 * transport can read nothing more (an expired kTLS RX key). */
		if (c->peer_eof || c->rx_mode == RTLS__RX_OFF) {
			rtls__conn_kill(c, 0);
			return;
		}
		/* Lingering close: FIN now, then discard input until the peer
		 * closes, so unread request bytes do not turn our close into
		 * a reset that destroys the response in flight. */
		shutdown(c->fd, SHUT_WR);
		rtls__conn_set_state(c, RTLS__CONN_LINGER);
		rtls__timer_arm(c, RTLS_TIMER_LINGER);
		c->read_paused = false;
		rtls__conn_recv_arm(c);
		return;
	}
	/* Not before on_open: a TLS client's handshake flights drain too,
	 * and its close_notify (and so the FIN) follows the handshake. */
	if (c->state == RTLS__CONN_OPEN && c->wr_shut && !c->fin_sent && c->open_called) {
		/* Half-close: our direction ends here (close_notify, if TLS,
		 * was the last record); the peer's goes on. */
		shutdown(c->fd, SHUT_WR);
		c->fin_sent = true;
	}
	if (c->state == RTLS__CONN_OPEN && c->open_called && h->on_drained)
		h->on_drained(c, c->data);
}

/* Issues the next request for the in-flight side, or finishes it. */
static void send_next(struct rtls_conn *c)
{
	struct rtls__wbuf *w = inflight(c);

	if (c->urgent_len && !send_urgent_outstanding(c)) {
		submit_urgent(c);
		return;
	}
	if (c->send_state == RTLS__SEND_IDLE)
		send_set(c, RTLS__SEND_SIDE_NEXT); /* a side begins */
	while (c->seg_done < w->nsegs) {
		struct rtls__seg *s = &w->segs[c->seg_done];

		if (c->mem_sent < s->mem_end) {
			if (s->rec_type)
				submit_record(c, w->data + c->mem_sent, s->mem_end - c->mem_sent,
					      s->rec_type, RTLS__SEND_SIDE);
			else
				submit_send(c, w->data + c->mem_sent, s->mem_end - c->mem_sent,
					    s->fd >= 0 && s->flen > 0);
			return;
		}
		if (s->fd >= 0 && c->file_sent < s->flen && s->fwd) {
			submit_fwd_out(c, s);
			return;
		}
		if (s->fd >= 0 && c->file_sent < s->flen) {
			int ret = pipe_get(c);

			if (ret < 0) {
				rtls_log(RTLS_LOG_WARN, "conn %u: no splice pipe for a file body: %s: "
					 "connection cut", c->slot, strerror(-ret));
				rtls__conn_kill(c, ret);
				return;
			}
			submit_splice(c, c->pipe_bytes ? RTLS__OP_SPLICE_OUT : RTLS__OP_SPLICE_IN,
				      s);
			return;
		}
		if (s->fd >= 0) {
			close(s->fd);
			s->fd = -1;
			if (s->fwd)
				rtls__fwd_sent(c->r, s->fwd_slot, s->fwd_gen);
			else
				pipe_put(c);
		}
		c->seg_done++;
		c->file_sent = 0;
	}
	send_set(c, RTLS__SEND_IDLE); /* the side is done */
	rtls__wbuf_reset(w);
	if (!c->w[c->wi].nsegs) {
		/* Nothing else queued: an idle connection keeps no output
		 * memory (a few hundred bytes per connection add up). */
		rtls__wbuf_free(&c->w[0]);
		rtls__wbuf_free(&c->w[1]);
	}
	if (c->flush_wanted && (rtls__wbuf_bytes(&c->w[c->wi]) || (c->tp && c->tp->seal))) {
		/* More was flushed meanwhile, or the transport may have more
		 * records to make (the rest of a file, a ticket, an alert). */
		rtls__send_start(c);
		return;
	}
	c->flush_wanted = false;
	drained(c);
}

void rtls__send_start(struct rtls_conn *c)
{
	struct rtls__wbuf *w = &c->w[c->wi];

	/* Only from IDLE. Between two requests of a side (SIDE_NEXT: inside a
	 * completion's callbacks, e.g. a close from tp->on_sent) nothing is
	 * outstanding, but the side is not done: starting a round there
	 * swapped the sides under it, and under kernel TX sent the same
	 * close_notify twice. flush_wanted carries the request to the end
	 * of the side instead. */
	if (c->send_state != RTLS__SEND_IDLE || c->state == RTLS__CONN_DEAD)
		return;
	if (c->in_seal) {
		c->flush_wanted = true;
		return;
	}
	if (c->tp && c->tp->seal) {
		/* The transport turns (some of) the pending plaintext into
		 * records on the free side; what it leaves stays pending and
		 * is sealed when this round has gone. */
		struct rtls__wbuf *out = &c->w[c->wi ^ 1];
		int ret;

		c->in_seal = true;
		ret = c->tp->seal(c, w, out);
		c->in_seal = false;
		if (ret < 0) {
			rtls__conn_kill(c, ret);
			return;
		}
		if (!out->nsegs) {
			c->flush_wanted = false;
			drained(c);
			return;
		}
	} else {
		if (!w->nsegs) {
			c->flush_wanted = false;
			drained(c);
			return;
		}
		c->wi ^= 1;
	}
	c->seg_done = 0;
	c->mem_sent = 0;
	c->file_sent = 0;
	send_next(c);
}

/* A transport has bytes of its own to send (handshake flight, alert). */
void rtls__kick(struct rtls_conn *c)
{
	c->flush_wanted = true;
	if (!rtls__send_busy(c))
		rtls__send_start(c);
}

/* Common to every send completion: 1 if res is progress to account for;
 * otherwise the send was retried or the connection ended. */
static int send_done(struct rtls_conn *c, int res, enum rtls_log_level lvl, const char *what,
		     const char *zero, int zero_err)
{
	send_complete(c);
	if (c->state == RTLS__CONN_DEAD)
		return 0;
	if (res == -EINTR || res == -EAGAIN) {
		send_next(c); /* the same piece again (the urgent record first) */
		return 0;
	}
	if (res <= 0) {
		/* A peer going away mid-response is its business: debug. */
		if (res == -EPIPE || res == -ECONNRESET)
			lvl = RTLS_LOG_DEBUG;
		rtls_log(lvl, "conn %u: %s: %s", c->slot, what, res ? strerror(-res) : zero);
		rtls__conn_kill(c, res ? res : zero_err);
		return 0;
	}
	return 1;
}

/* Bytes that reached the socket, for the AEAD usage limits. */
static void count_sent(struct rtls_conn *c, int res)
{
	c->tx_ops++;
	c->tx_bytes += (uint64_t)res;
	rtls__stat_add(&c->r->stats, RTLS__STAT(bytes_out), (uint64_t)res);
	/* Progress: a long download is not idle, a stalled reader is. */
	if (c->timer == RTLS_TIMER_IDLE)
		rtls__timer_arm(c, RTLS_TIMER_IDLE);
	if (c->tp && c->tp->on_sent)
		c->tp->on_sent(c);
}

/* The urgent record has left: the transport acts (a new TX key), then the
 * stream it interrupted goes on. */
static void urgent_done(struct rtls_conn *c, int res)
{
	if (res < c->urgent_len) {
		/* A record of a few bytes cannot be cut in two. */
		rtls__conn_kill(c, -EIO);
		return;
	}
	c->urgent_len = 0;
	if (c->tp && c->tp->on_seg_sent)
		c->tp->on_seg_sent(c);
	if (c->state == RTLS__CONN_DEAD)
		return;
	if (send_side_active(c))
		send_next(c);
	else
		rtls__send_start(c);
}

int rtls__send_urgent(struct rtls_conn *c, uint8_t type, const void *p, size_t n)
{
	if (n > sizeof(c->urgent) || c->urgent_len)
		return -EBUSY;
	memcpy(c->urgent, p, n);
	c->urgent_len = (uint8_t)n;
	c->urgent_type = type;
	/* Idle: send now. Otherwise send_next() sends it before the next
	 * piece of the stream (also when asked from inside a completion). */
	if (c->send_state == RTLS__SEND_IDLE)
		submit_urgent(c);
	return 0;
}

void rtls__on_send(struct rtls_conn *c, int res)
{
	bool urgent = send_urgent_outstanding(c);

	if (!send_done(c, res, RTLS_LOG_DEBUG, "send", "wrote nothing", -EPIPE))
		return;
	if (urgent) {
		urgent_done(c, res);
		return;
	}
	c->mem_sent += (size_t)res;
	count_sent(c, res);
	send_next(c);
}

void rtls__on_splice(struct rtls_conn *c, enum rtls__op op, int res)
{
	/* Only a non-blocking socket says EAGAIN (one of rtls_conn_connect(),
	 * or a forward's destination): wait for room. */
	if ((op == RTLS__OP_FWD_OUT || op == RTLS__OP_SPLICE_OUT) && res == -EAGAIN) {
		send_complete(c);
		if (c->state != RTLS__CONN_DEAD)
			fwd_wait_writable(c);
		return;
	}
	/* 0 from the file side means it shrank under us: the promised
	 * Content-Length cannot be met, so the connection must end. */
	if (op == RTLS__OP_FWD_OUT) {
		if (!send_done(c, res, RTLS_LOG_DEBUG, "forward", "nothing forwarded", -EPIPE))
			return;
	} else if (!send_done(c, res, RTLS_LOG_WARN, "file send", "file truncated while sending",
			      -EIO)) {
		return;
	}
	if (op == RTLS__OP_SPLICE_IN) {
		c->pipe_bytes = (size_t)res;
	} else {
		if (op == RTLS__OP_SPLICE_OUT)
			c->pipe_bytes -= (size_t)res;
		c->file_sent += (size_t)res;
		count_sent(c, res);
	}
	send_next(c);
}

int rtls_conn_write(rtls_conn *c, const void *p, size_t n)
{
	if (c->state != RTLS__CONN_OPEN || c->wr_shut)
		return -EPIPE;
	return rtls__wbuf_append(&c->w[c->wi], p, n);
}

char *rtls_conn_reserve(rtls_conn *c, size_t n)
{
	if (c->state != RTLS__CONN_OPEN || c->wr_shut)
		return NULL;
	return rtls__wbuf_reserve(&c->w[c->wi], n);
}

void rtls_conn_commit(rtls_conn *c, size_t used)
{
	if (rtls__wbuf_commit(&c->w[c->wi], used) < 0)
		rtls_conn_abort(c, -ENOMEM);
}

int rtls_conn_write_file(rtls_conn *c, int fd, off_t off, size_t len)
{
	int ret;

	if (c->state != RTLS__CONN_OPEN || c->wr_shut) {
		close(fd);
		return -EPIPE;
	}
	if (len == 0) {
		close(fd);
		return 0;
	}
	ret = rtls__wbuf_add_file(&c->w[c->wi], fd, off, len);
	if (ret < 0)
		close(fd);
	return ret;
}

int rtls_conn_flush(rtls_conn *c)
{
	if (c->state != RTLS__CONN_OPEN && c->state != RTLS__CONN_CLOSING)
		return -EPIPE;
	c->flush_wanted = true;
	if (!rtls__send_busy(c))
		rtls__send_start(c);
	return 0;
}

size_t rtls_conn_pending(const rtls_conn *c)
{
	const struct rtls__wbuf *w = &c->w[c->wi ^ 1];
	size_t n = rtls__wbuf_bytes(&c->w[c->wi]);

	/* The in-flight side only while there is one: during an urgent
	 * record sent alone (an idle KeyUpdate) the other side is reset, and
	 * subtracting mem_sent from it wrapped around. */
	if (!send_side_active(c))
		return n;
	n += w->len - c->mem_sent;
	for (unsigned i = c->seg_done; i < w->nsegs; i++)
		if (w->segs[i].fd >= 0)
			n += w->segs[i].flen - (i == c->seg_done ? c->file_sent : 0);
	return n;
}
