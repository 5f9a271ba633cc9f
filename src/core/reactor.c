/* The reactor: one thread, one ring, one loop. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define BUF_GROUP 0

static bool accepting(const struct rtls__reactor *r);
static void quiet_check(struct rtls__reactor *r);

static void accept_arm(struct rtls__reactor *r, unsigned i)
{
	struct io_uring_sqe *sqe;

	if (r->ls[i].armed || r->ls[i].fd < 0)
		return;
	sqe = rtls__sqe(r);
	io_uring_prep_multishot_accept(sqe, r->ls[i].fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_ACCEPT, i, 0));
	r->ls[i].armed = true;
}

static void wake_arm(struct rtls__reactor *r)
{
	struct io_uring_sqe *sqe = rtls__sqe(r);

	io_uring_prep_read(sqe, r->wake_fd, &r->wake_val, sizeof(r->wake_val), 0);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_WAKE, 0, 0));
}

/* Out of descriptors or memory: the connection stays in the listen queue,
 * so accepting again at once would fail again at once. Pause accepts and
 * retry every 100 ms. One line when it starts, at most one per 10 s while
 * it lasts (at the limit, each freed descriptor lets one accept through
 * before the next failure: that is still the same episode). */
static void accept_retry_later(struct rtls__reactor *r)
{
	r->accept_retry_ms = r->now_ms + 100;
	rtls__tick_arm(r);
}

static void accept_backoff(struct rtls__reactor *r, int err)
{
	/* Spare splice pipes are only a cache: give their fds back. */
	rtls__pipes_free(r);
	accept_retry_later(r);
	r->accept_failed_ms = r->now_ms;
	r->accept_fails++;
	if (!r->accept_paused_ms) {
		r->accept_paused_ms = r->accept_logged_ms = r->now_ms;
		r->accept_fails = 0;
		rtls_log(RTLS_LOG_WARN,
			 "reactor %u: accept: %s%s: pausing accepts, retrying every 100 ms", r->id,
			 strerror(-err),
			 err == -ENOSPC ? " (epoll: fs.epoll.max_user_watches reached)" : "");
	} else if (r->now_ms - r->accept_logged_ms >= 10000) {
		rtls_log(RTLS_LOG_WARN, "reactor %u: accept: still %s (%u failed accepts in %llu s)",
			 r->id, strerror(-err), r->accept_fails,
			 (unsigned long long)(r->now_ms - r->accept_logged_ms) / 1000);
		r->accept_logged_ms = r->now_ms;
		r->accept_fails = 0;
	}
}

/* An accept succeeded: the episode is over once a second has passed
 * without a failure. */
static void accept_ok(struct rtls__reactor *r)
{
	if (!r->accept_paused_ms || r->now_ms - r->accept_failed_ms < 1000)
		return;
	rtls_log(RTLS_LOG_INFO, "reactor %u: accepting again (accepts failed for %.1f s)", r->id,
		 (double)(r->accept_failed_ms - r->accept_paused_ms) / 1000.0);
	r->accept_paused_ms = 0;
}

static struct rtls_conn *adopt(struct rtls__reactor *r, unsigned li, int fd);

void rtls__handover_put(struct rtls__handover *h)
{
	if (atomic_fetch_sub(&h->refs, 1) == 1)
		free(h);
}

void rtls__handover_release(struct rtls__reactor *r)
{
	struct rtls__handover *h;

	pthread_mutex_lock(&r->srv->ls_lock);
	h = r->ho_out;
	r->ho_out = NULL;
	pthread_mutex_unlock(&r->srv->ls_lock);
	if (!h)
		return;
	atomic_fetch_sub(&h->pending, 1);
	rtls__handover_put(h);
}

/* Stopping, and accepting no more: our predecessor's side of a
 * handover is done, and rtls_server_stop_accepting() may return. Once. */
static void quiet_check(struct rtls__reactor *r)
{
	if (r->quiet || !r->stopping || accepting(r))
		return;
	rtls__handover_release(r);
	r->quiet = true;
	pthread_mutex_lock(&r->srv->quiet_lock);
	r->srv->quiet++;
	pthread_cond_broadcast(&r->srv->quiet_cond);
	pthread_mutex_unlock(&r->srv->quiet_lock);
}

/* The successor's side of struct rtls__handover: an inherited socket
 * with a connection waiting while our accept sleeps on it lost its
 * wake-up to the predecessor. Cancel the accept; on_accept() re-arms it,
 * and a new accept takes what is queued at once. A connection that just
 * came and is being accepted looks the same: re-arming costs it nothing. */
static void watch(struct rtls__reactor *r)
{
	bool last = atomic_load(&r->srv->ho_in->pending) == 0;

	for (unsigned i = 0; i < r->srv->nlisteners && !r->stopping; i++) {
		struct pollfd p = { .fd = r->ls[i].fd, .events = POLLIN };
		struct io_uring_sqe *sqe;

		if (!r->ls[i].inherited || !r->ls[i].armed || r->ls[i].fd < 0 ||
		    poll(&p, 1, 0) != 1)
			continue;
		sqe = rtls__sqe(r);
		io_uring_prep_cancel64(sqe, rtls__ud(RTLS__OP_ACCEPT, i, 0), 0);
		io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
	}
	/* Once the predecessor can hold no wake-up, one last look. */
	r->watch_ms = last || r->stopping ? 0 : r->now_ms + RTLS__WATCH_MS;
}

static void on_accept(struct rtls__reactor *r, unsigned li, struct io_uring_cqe *cqe)
{
	struct rtls_conn *c;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		r->ls[li].armed = false;
	quiet_check(r);
	if (cqe->res == -ECANCELED && !r->stopping) { /* watch() */
		accept_arm(r, li);
		return;
	}
	if (cqe->res < 0) {
		/* ENOSPC: the epoll backend could not watch the listener
		 * (fs.epoll.max_user_watches); an episode like a full fd
		 * table, logged as one, not once per retry. */
		if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOMEM ||
		    cqe->res == -ENOSPC) {
			accept_backoff(r, cqe->res);
		} else if (!r->stopping) {
			/* Stopping: begin_stop() shut the listener down, so the
			 * accept ends with ECANCELED, or with EINVAL where its
			 * task work ran before the cancel was submitted (rings
			 * without DEFER_TASKRUN: kernels before 6.1, valgrind).
			 * Otherwise the accept is over: try again on the next
			 * tick rather than spin on an error that may repeat. */
			if (cqe->res != -ECANCELED && cqe->res != -EINTR)
				rtls_log(RTLS_LOG_WARN, "accept: %s", strerror(-cqe->res));
			if (!r->ls[li].armed)
				accept_retry_later(r);
		}
		return;
	}
	accept_ok(r);
	/* A multishot accept also ends after a success, when the kernel could
	 * not post its next completion (a full completion queue under a
	 * connection burst): without a new one the listener would never
	 * accept again. (Stopping: the listener is closed, nothing to arm.) */
	if (!r->ls[li].armed && !r->accept_retry_ms)
		accept_arm(r, li);
	/* Accepted before the stop closed the listener, and completed after
	 * it: served like the connections the stop found. */
	c = adopt(r, li, cqe->res);
	if (c && r->stopping)
		rtls__conn_shutdown(c);
}

/* A new connection on listener li: a slot, then its first phase. NULL
 * when it was refused or has failed already. */
static struct rtls_conn *adopt(struct rtls__reactor *r, unsigned li, int fd)
{
	struct rtls_conn *c = rtls__conn_new(r, fd, li);

	if (!c) {
		/* At the connection limit: refuse rather than queue, and say so
		 * at most once a second. */
		close(fd);
		if (r->now_ms - r->full_logged_ms >= 1000) {
			r->full_logged_ms = r->now_ms;
			rtls_log(RTLS_LOG_WARN, "reactor %u: %u connections, the limit: refusing",
				 r->id, r->srv->cfg.max_conns);
		}
		return NULL;
	}
	if (r->srv->pp_begin) {
		/* PROXY protocol: its phase (proxyphase.c) comes first, and
		 * hands the connection to TLS or the handler itself. */
		int ret = r->srv->pp_begin(c);

		if (ret < 0) {
			rtls__conn_kill(c, ret);
			return NULL;
		}
		rtls__conn_recv_arm(c);
		return c;
	}
	if (r->ls[li].tls && r->srv->tls_attach) {
		/* The transport picks the receive mode before the first read. */
		int ret = r->srv->tls_attach(c);

		if (ret < 0) {
			rtls__conn_kill(c, ret);
			return NULL;
		}
		rtls__conn_recv_arm(c);
		return c;
	}
	rtls__conn_recv_arm(c);
	if (rtls__handler_open(c) < 0)
		return NULL;
	return c;
}

static void begin_stop(struct rtls__reactor *r)
{
	if (r->stopping)
		return;
	r->stopping = true;
	r->stop_deadline_ms = r->now_ms + r->srv->cfg.shutdown_ms;
	r->stop_grace_ms = r->now_ms + RTLS__STOP_GRACE_MS;
	/* A successor may be taking these sockets over right now. */
	pthread_mutex_lock(&r->srv->ls_lock);
	for (unsigned i = 0; i < r->srv->nlisteners; i++) {
		/* Handed over: another server accepts from it from now on, and
		 * whatever waits in its queue is that server's. */
		bool ours = !r->ls[i].adopted && !r->ls[i].handed &&
			    (!r->ls[i].inherited || atomic_load(&r->srv->own_taken));
		struct io_uring_sqe *sqe;
		int fl;

		if (r->ls[i].armed) {
			sqe = rtls__sqe(r);
			io_uring_prep_cancel64(sqe, rtls__ud(RTLS__OP_ACCEPT, i, 0), 0);
			io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_IGNORE, 0, 0));
			/* Now, before the close below: on epoll the accept waits
			 * in the epoll set under this number, and only the
			 * cancel takes it out (epoll.c). */
			rtls__ring_submit(r);
		}
		if (r->ls[i].fd >= 0 && ours && (fl = fcntl(r->ls[i].fd, F_GETFL)) >= 0 &&
		    fcntl(r->ls[i].fd, F_SETFL, fl | O_NONBLOCK) == 0) {
			/* Closing a listener resets the connections still in
			 * its accept queue (unless net.ipv4.tcp_migrate_req
			 * moves them to another socket of the SO_REUSEPORT
			 * group): take them first. Not from a socket handed
			 * over: its queue outlives us, for the next instance,
			 * and its file flags are its owner's. */
			for (unsigned n = 0; n < 4096; n++) {
				/* accept4(2) takes NULL for an address not wanted;
				 * cppcheck 2.10's gnu model says otherwise. */
				// cppcheck-suppress nullPointer
				int fd = accept4(r->ls[i].fd, NULL, NULL,
						 SOCK_CLOEXEC | rtls__ring_sock_flags(r));

				if (fd < 0)
					break;
				adopt(r, i, fd);
			}
		}
		if (r->ls[i].fd >= 0) {
			/* shutdown() stops listening now: the armed accept holds
			 * a file reference that close() alone would not drop
			 * until its cancellation runs, and new clients would
			 * queue on a socket nobody accepts from. Not a socket
			 * handed over: it would stop listening for its owner
			 * and the other reactors too, and with socket
			 * activation clients should queue there for the next
			 * instance. */
			if (ours)
				shutdown(r->ls[i].fd, SHUT_RDWR);
			close(r->ls[i].fd);
			r->ls[i].fd = -1;
		}
	}
	pthread_mutex_unlock(&r->srv->ls_lock);
	for (unsigned i = 0; i < r->srv->cfg.max_conns; i++)
		if (r->conns[i].state != RTLS__CONN_FREE)
			rtls__conn_shutdown(&r->conns[i]);
	quiet_check(r); /* no accept was armed */
	rtls__tick_arm(r);
}

/* A tick fired. Only the one armed last stands for tick_deadline_ms: an
 * earlier one (armed for a later deadline, before a nearer one replaced
 * it) leaves it be. Not a comparison of the clock with the deadline: a
 * CQE that the kernel posts while this reap is running (task work runs
 * on any syscall's way out) is read with the clock of the reap's start,
 * before the deadline, and the reactor then believed a tick was pending
 * that had gone, and never armed another: none of its timers fired again
 * (seen: a silent TLS client never cut at the handshake deadline). Such
 * a tick expires nothing; the next, armed below, does. */
static void on_tick(struct rtls__reactor *r, uint32_t seq)
{
	if (seq == r->tick_seq)
		r->tick_deadline_ms = 0;
	rtls__timers_expire(r);
	if (r->stop_grace_ms && r->now_ms >= r->stop_grace_ms) {
		/* Connections that have sent nothing since the stop close. */
		r->stop_grace_ms = 0;
		for (unsigned i = 0; i < r->srv->cfg.max_conns; i++)
			if (r->conns[i].stop_wait)
				rtls__conn_shutdown(&r->conns[i]);
	}
	if (r->watch_ms && r->now_ms >= r->watch_ms)
		watch(r);
	if (r->accept_retry_ms && r->now_ms >= r->accept_retry_ms) {
		r->accept_retry_ms = 0;
		for (unsigned i = 0; i < r->srv->nlisteners && !r->stopping; i++)
			accept_arm(r, i);
	}
	if (r->big_trim_ms && r->now_ms >= r->big_trim_ms) {
		r->big_trim_ms = 0; /* big_trim_arm() arms the next while it holds any */
		rtls__big_cache_trim(&r->big);
	}
	rtls__tick_arm(r);
}

void rtls__dispatch(struct rtls__reactor *r, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum rtls__op op = rtls__ud_op(ud);
	uint32_t slot = rtls__ud_slot(ud);
	struct rtls_conn *c;

	switch (op) {
	case RTLS__OP_ACCEPT:
		on_accept(r, slot, cqe);
		return;
	case RTLS__OP_TICK:
		on_tick(r, rtls__ud_gen(ud));
		return;
	case RTLS__OP_WAKE:
		if (atomic_load(&r->srv->stop))
			begin_stop(r);
		else
			wake_arm(r);
		return;
	case RTLS__OP_RECV:
	case RTLS__OP_RECVMSG:
	case RTLS__OP_SEND:
	case RTLS__OP_SENDMSG:
	case RTLS__OP_SPLICE_IN:
	case RTLS__OP_SPLICE_OUT:
	case RTLS__OP_CONNECT:
	case RTLS__OP_FWD_POLL:
	case RTLS__OP_FWD_IN:
	case RTLS__OP_FWD_PEEK:
	case RTLS__OP_FWD_OUT:
	case RTLS__OP_FWD_WPOLL:
	case RTLS__OP_ERR_WATCH:
		break;
	case RTLS__OP_IGNORE:
	default:
		return;
	}
	if (slot >= r->srv->cfg.max_conns)
		return;
	c = &r->conns[slot];
	if (c->state == RTLS__CONN_FREE || c->gen != rtls__ud_gen(ud)) {
		/* For a connection that no longer exists. Only a buffer it
		 * carries needs handling: it goes straight back to the ring. */
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			rtls__bufring_took(r);
			rtls__bufring_put(r, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		}
		return;
	}
	switch (op) {
	case RTLS__OP_RECV:
	case RTLS__OP_RECVMSG:
		rtls__on_recv(c, cqe, op);
		break;
	case RTLS__OP_SEND:
	case RTLS__OP_SENDMSG:
		rtls__on_send(c, cqe->res);
		break;
	case RTLS__OP_CONNECT:
		rtls__on_connect(c, cqe->res);
		break;
	case RTLS__OP_FWD_POLL:
		rtls__fwd_on_poll(c, cqe->res);
		break;
	case RTLS__OP_FWD_IN:
		rtls__fwd_on_in(c, cqe->res);
		break;
	case RTLS__OP_FWD_PEEK:
		rtls__fwd_on_peek(c, cqe->res);
		break;
	case RTLS__OP_FWD_WPOLL:
		rtls__on_fwd_writable(c, cqe->res);
		break;
	case RTLS__OP_ERR_WATCH:
		rtls__on_err_watch(c, cqe->res);
		break;
	default:
		rtls__on_splice(c, op, cqe->res);
		break;
	}
}

static int reactor_setup(struct rtls__reactor *r)
{
	const struct rtls_config *cfg = &r->srv->cfg;
	int ret;

	ret = rtls__ring_init(r, r->srv->ring_flags, r->srv->cfg.ring_entries);
	if (ret < 0)
		return ret;
	ret = rtls__bufring_init(r, cfg->buf_count, cfg->buf_size, BUF_GROUP);
	if (ret < 0)
		return ret;
	r->now_ms = rtls__now_ms();
	rtls__timers_init(r);
	wake_arm(r);
	for (unsigned i = 0; i < r->srv->nlisteners; i++)
		accept_arm(r, i);
	if (r->srv->ho_in) {
		r->watch_ms = r->now_ms + RTLS__WATCH_MS;
		rtls__tick_arm(r);
	}
	return 0;
}

static void stop_now(struct rtls__reactor *r)
{
	unsigned left = 0;

	for (unsigned i = 0; i < r->srv->cfg.max_conns; i++) {
		if (r->conns[i].state == RTLS__CONN_FREE || r->conns[i].state == RTLS__CONN_DEAD)
			continue;
		left++;
		/* A reset: whatever it was carrying is cut, and a peer that
		 * reads a FIN could take a tunnel's stream for complete. */
		rtls__conn_kill(&r->conns[i], -ECONNRESET);
	}
	if (left)
		rtls_log(RTLS_LOG_WARN, "reactor %u: shutdown deadline passed: %u connection(s) cut",
			 r->id, left);
}

/* Reads and dispatches every completion that is in, then frees the
 * slots whose last request has completed. */
static void reap_completions(struct rtls__reactor *r)
{
	r->now_ms = rtls__now_ms();
	rtls__ring_reap(r);
	if (r->nreap)
		rtls__reap(r);
}

/* After stop_now(): every connection is dead, its receive cancelled and
 * its sends cut short by shutdown(), so their completions come at once.
 * Wait for them (bounded: 1 s), so that reactor_free() frees no buffer a
 * request still reads or writes. */
static void drain(struct rtls__reactor *r)
{
	uint64_t until = rtls__now_ms() + 1000;

	while (r->nreap && rtls__now_ms() < until) {
		int ret = rtls__ring_wait(r, 50);

		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return;
		reap_completions(r);
	}
	if (r->nreap)
		rtls_log(RTLS_LOG_WARN, "reactor %u: %u connection(s) with requests still in flight at exit",
			 r->id, r->nreap);
}

/* Whether an accept is still armed. At stop its cancel is on the way,
 * and the reactor waits for it: on a socket that goes on listening (handed
 * over to a successor, or the caller's) an accept left armed in a ring
 * nobody reads would take connections that nobody then serves. */
static bool accepting(const struct rtls__reactor *r)
{
	for (unsigned i = 0; i < r->srv->nlisteners; i++)
		if (r->ls[i].armed)
			return true;
	return false;
}

/* A trim of the big-block cache (wbuf.c) each RTLS__BIG_TRIM_MS while it
 * holds blocks: on a tick, so that an idle reactor lets them go too. */
static void big_trim_arm(struct rtls__reactor *r)
{
	if (r->big.bytes && !r->big_trim_ms) {
		r->big_trim_ms = r->now_ms + RTLS__BIG_TRIM_MS;
		rtls__tick_arm(r);
	}
}

static int reactor_loop(struct rtls__reactor *r)
{
	for (;;) {
		int ret;

		rtls__bufring_publish(r);
		big_trim_arm(r);
		if (r->nstarved)
			rtls__rearm_starved(r);
		if (r->stopping &&
		    ((r->nlive == 0 && !accepting(r)) || r->now_ms >= r->stop_deadline_ms)) {
			stop_now(r);
			drain(r);
			rtls__ring_submit(r); /* the cancels begin_stop() queued */
			return 0;
		}
		ret = rtls__ring_wait(r, -1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return ret;
		reap_completions(r);
	}
}

void *rtls__reactor_main(void *arg)
{
	struct rtls__reactor *r = arg;
	int ret;

	rtls__small_cache_bind(&r->small);
	rtls__big_cache_bind(&r->big);
	rtls__stats_bind(&r->stats);
	ret = reactor_setup(r);
	pthread_mutex_lock(&r->srv->quiet_lock);
	r->srv->set_up++;
	if (ret < 0 && !r->srv->setup_err)
		r->srv->setup_err = ret;
	pthread_cond_broadcast(&r->srv->quiet_cond);
	pthread_mutex_unlock(&r->srv->quiet_lock);
	if (ret == 0)
		ret = reactor_loop(r);
	if (ret < 0) {
		rtls_log(RTLS_LOG_ERROR, "reactor %u: %s", r->id, strerror(-ret));
		r->err = ret;
		atomic_store(&r->srv->stop, true);
	}
	/* Gone: it accepts nothing more, whatever it left armed (the ring
	 * goes with the server). */
	r->stopping = true;
	for (unsigned i = 0; i < r->srv->nlisteners; i++)
		r->ls[i].armed = false;
	quiet_check(r);
	atomic_fetch_sub(&r->srv->running, 1);
	return NULL;
}
