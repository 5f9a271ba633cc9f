/* Connection slots (src/core/conn.c) over a fake ring: an abort or a close
 * while a send is in flight (the slot waits for every request, the socket
 * is shut down at once and closed only when the slot is freed); a
 * completion for the slot's previous occupant (the generation check in
 * rtls__dispatch); pausing parks input off the ring; a starved receive is
 * re-armed only when buffers are back; outbound connections: the
 * connect's SQE, its completion (on_open, or on_close without it), the
 * deadline, and a kill while it is outstanding; a bounded forward
 * (rtls_conn_forward_n()): input it must read the ordinary way split at
 * the body's end, splices never asked for more than is owed, the end. */
#include <limits.h>
#include <poll.h>
#include <stdint.h>

#include "unit/fake_ring.h"

static uint64_t ud(const struct rtls_conn *c, enum rtls__op op)
{
	return rtls__ud(op, c->slot, c->gen);
}

static void check_recv_sqe(const struct io_uring_sqe *sqe, const struct rtls_conn *c)
{
	CHECK_SQE(sqe, IORING_OP_RECV, c->fd, 0, ud(c, RTLS__OP_RECV));
	if (sqe) {
		CHECK(sqe->ioprio & IORING_RECV_MULTISHOT);
		CHECK(sqe->flags & IOSQE_BUFFER_SELECT);
	}
}

/* The cancel of c's receive, fire-and-forget. */
static void check_cancel_sqe(const struct io_uring_sqe *sqe, uint64_t target)
{
	CHECK(sqe != NULL);
	if (!sqe)
		return;
	CHECK_EQ_INT(sqe->opcode, IORING_OP_ASYNC_CANCEL);
	CHECK_EQ_INT(sqe->addr, target);
	CHECK_EQ_INT(sqe->user_data, rtls__ud(RTLS__OP_IGNORE, 0, 0));
}

/* While reading is paused: a poll that only an error or hangup wakes. */
static void check_watch_sqe(const struct io_uring_sqe *sqe, const struct rtls_conn *c)
{
	CHECK_SQE(sqe, IORING_OP_POLL_ADD, c->fd, 0, ud(c, RTLS__OP_ERR_WATCH));
	if (sqe)
		CHECK_EQ_INT(sqe->poll32_events, 0);
}

/* What the peer reads now: 0 is EOF (our side shut down). */
static ssize_t peer_read(const struct rtls_conn *c)
{
	char b[16];

	return recv(F.peer[c->slot], b, sizeof(b), MSG_DONTWAIT);
}

static void test_abort_while_sending(void)
{
	struct rtls_conn *c;
	uint64_t recv_ud, send_ud;
	uint32_t gen;

	fake_setup();
	c = fake_conn();
	gen = c->gen;
	rtls__conn_recv_arm(c);
	check_recv_sqe(fake_next(), c);
	rtls_conn_write(c, "response", 8);
	rtls_conn_flush(c);
	CHECK_SQE(fake_next(), IORING_OP_SEND, c->fd, 8, ud(c, RTLS__OP_SEND));
	recv_ud = ud(c, RTLS__OP_RECV);
	send_ud = ud(c, RTLS__OP_SEND);
	CHECK_EQ_INT(peer_read(c), -1); /* nothing yet, not EOF */

	rtls_conn_abort(c, 0);
	CHECK_EQ_INT(c->state, RTLS__CONN_DEAD);
	CHECK_EQ_INT(F.closes, 1);
	CHECK_EQ_INT(F.close_err, -ECONNABORTED);
	check_cancel_sqe(fake_next(), recv_ud);
	/* The send blocked on a full socket must complete: shut down now... */
	CHECK_EQ_INT(peer_read(c), 0);
	/* ...but the fd stays ours until the slot is free. */
	CHECK(c->fd >= 0);
	CHECK_EQ_INT(rtls_conn_write(c, "x", 1), -EPIPE);

	rtls__reap(&F.r);
	CHECK_EQ_INT(c->state, RTLS__CONN_DEAD);
	CHECK_EQ_INT(F.r.nfree, FAKE_CONNS - 1);
	fake_complete(recv_ud, -ECANCELED);
	CHECK_EQ_INT(c->state, RTLS__CONN_DEAD); /* the send is still out */
	CHECK(fake_next() == NULL);              /* and nothing is re-armed */
	fake_complete(send_ud, -EPIPE);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	CHECK_EQ_INT(c->gen, gen + 1);
	CHECK_EQ_INT(c->fd, -1);
	CHECK_EQ_INT(F.r.nfree, FAKE_CONNS);
	CHECK_EQ_INT(F.r.nlive, 0);
	CHECK_EQ_INT(F.closes, 1); /* on_close ran once */
	CHECK(fake_next() == NULL);
	fake_teardown();
}

/* A graceful close waits for the output, shuts down our side, lingers
 * (discarding input) until the peer's FIN. */
static void test_close_while_sending(void)
{
	struct rtls_conn *c;
	uint64_t recv_ud;

	fake_setup();
	c = fake_conn();
	rtls__conn_recv_arm(c);
	check_recv_sqe(fake_next(), c);
	recv_ud = ud(c, RTLS__OP_RECV);
	rtls_conn_write(c, "bye", 3);
	rtls_conn_flush(c);
	CHECK_SQE(fake_next(), IORING_OP_SEND, c->fd, 3, ud(c, RTLS__OP_SEND));

	rtls_conn_close(c);
	CHECK_EQ_INT(c->state, RTLS__CONN_CLOSING);
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(rtls_conn_write(c, "x", 1), -EPIPE);
	CHECK_EQ_INT(peer_read(c), -1);

	fake_complete(ud(c, RTLS__OP_SEND), 3);
	CHECK_EQ_INT(c->state, RTLS__CONN_LINGER);
	CHECK_EQ_INT(c->timer, RTLS_TIMER_LINGER);
	CHECK_EQ_INT(peer_read(c), 0); /* FIN sent */
	CHECK_EQ_INT(F.drains, 0);     /* the handler is not told: it closed */
	CHECK(fake_next() == NULL);    /* the receive was still armed */

	fake_recv(recv_ud, 1, "late input", true);
	CHECK_EQ_INT(F.got_len, 0); /* discarded... */
	CHECK_EQ_INT(F.puts, 1);    /* ...and its buffer is back */
	fake_complete(recv_ud, 0);  /* the peer's FIN */
	CHECK_EQ_INT(F.closes, 1);
	CHECK_EQ_INT(F.close_err, 0);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	fake_teardown();
}

/* Completions tagged for the slot's previous occupant change nothing for
 * the new one; a buffer one carries goes back to the ring. */
static void test_reused_slot(void)
{
	struct rtls_conn *a, *b;
	uint64_t old_recv, old_send;
	uint32_t slot, gen;

	fake_setup();
	a = fake_conn();
	slot = a->slot;
	gen = a->gen;
	rtls__conn_recv_arm(a);
	rtls_conn_write(a, "old", 3);
	rtls_conn_flush(a);
	old_recv = ud(a, RTLS__OP_RECV);
	old_send = ud(a, RTLS__OP_SEND);
	rtls_conn_abort(a, -ECONNRESET);
	fake_complete(old_recv, -ECANCELED);
	fake_complete(old_send, -EPIPE);
	CHECK_EQ_INT(a->state, RTLS__CONN_FREE);

	b = fake_conn();
	CHECK(b == a);
	CHECK_EQ_INT(b->slot, slot);
	CHECK_EQ_INT(b->gen, gen + 1);
	while (fake_next())
		;
	rtls__conn_recv_arm(b);
	check_recv_sqe(fake_next(), b);
	rtls_conn_write(b, "new", 3);
	rtls_conn_flush(b);
	CHECK_SQE(fake_next(), IORING_OP_SEND, b->fd, 3, ud(b, RTLS__OP_SEND));
	CHECK(old_send != ud(b, RTLS__OP_SEND));

	/* The old receive's data: not the new connection's. */
	fake_recv(old_recv, 2, "stale", true);
	CHECK_EQ_INT(F.got_len, 0);
	CHECK_EQ_INT(F.puts, 1);
	CHECK_EQ_INT(F.last_put, 2);
	CHECK_EQ_INT(b->nheld, 0);
	/* The old send's completion: b's send is still the one in flight. */
	fake_complete(old_send, 3);
	CHECK_EQ_INT(b->send_state, RTLS__SEND_SIDE);
	CHECK_EQ_INT(b->mem_sent, 0);
	CHECK_EQ_INT(b->tx_ops, 0);
	CHECK_EQ_INT(F.drains, 0);
	CHECK(fake_next() == NULL);
	/* The old receive's error: b stays open. */
	fake_complete(old_recv, -ECONNRESET);
	CHECK_EQ_INT(b->state, RTLS__CONN_OPEN);
	CHECK(b->recv_armed);
	CHECK_EQ_INT(F.closes, 1);

	/* A slot never used, and one beyond the table: ignored. */
	fake_recv(rtls__ud(RTLS__OP_RECV, FAKE_CONNS - 1, 0), 3, "x", false);
	CHECK_EQ_INT(F.puts, 2);
	fake_complete(rtls__ud(RTLS__OP_SEND, 1000, 0), 1);

	/* b's own completions still work. */
	fake_complete(ud(b, RTLS__OP_SEND), 3);
	CHECK_EQ_INT(F.drains, 1);
	fake_recv(ud(b, RTLS__OP_RECV), 5, "fresh", true);
	CHECK(F.got_len == 5 && memcmp(F.got, "fresh", 5) == 0);
	CHECK_EQ_INT(F.puts, 3);
	fake_teardown();
}

/* A fresh connection with its multishot receive armed, then paused: the
 * cancel of that receive is the last SQE issued. */
static struct rtls_conn *paused_conn(uint64_t *recv_ud)
{
	struct rtls_conn *c;

	fake_setup();
	c = fake_conn();
	rtls__conn_recv_arm(c);
	check_recv_sqe(fake_next(), c);
	*recv_ud = ud(c, RTLS__OP_RECV);
	rtls_conn_pause_read(c);
	check_cancel_sqe(fake_next(), *recv_ud);
	check_watch_sqe(fake_next(), c);
	CHECK(c->err_watch);
	return c;
}

/* Pausing cancels the multishot receive; what still arrives is copied
 * off the ring (the buffer goes back at once) and handed over on resume. */
static void test_pause_parks(void)
{
	struct rtls_conn *c;
	uint64_t recv_ud;

	c = paused_conn(&recv_ud);
	CHECK(c->recv_cancelling);

	fake_recv(recv_ud, 4, "abc", true);
	CHECK_EQ_INT(F.got_len, 0);
	CHECK_EQ_INT(F.puts, 1); /* the ring buffer is back */
	CHECK_EQ_INT(c->npaused, 1);
	CHECK_EQ_INT(c->nheld, 1); /* the copy is still held */
	fake_complete(recv_ud, -ECANCELED);
	CHECK(!c->recv_armed && !c->recv_cancelling);
	CHECK(fake_next() == NULL); /* paused: not re-armed */

	rtls_conn_resume_read(c);
	CHECK(F.got_len == 3 && memcmp(F.got, "abc", 3) == 0);
	CHECK_EQ_INT(c->nheld, 0);
	check_cancel_sqe(fake_next(), ud(c, RTLS__OP_ERR_WATCH));
	check_recv_sqe(fake_next(), c);
	fake_teardown();
}

/* A handler that ends the connection from on_data. */
static void abort_on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	fake_on_data(c, data, b);
	rtls_conn_abort(c, 0);
}

/* The handler ends the connection while a resume hands over parked
 * input: what it was given is its own (released once, by it), and only
 * what it was not given is released by the teardown. Before the fix, the
 * teardown released the handed-over buffer a second time, which aborts. */
static void test_abort_while_resuming(void)
{
	static const struct rtls_handler h = { .on_data = abort_on_data,
					       .on_close = fake_on_close };
	struct rtls_conn *c;
	uint64_t recv_ud;

	c = paused_conn(&recv_ud);
	fake_recv(recv_ud, 4, "abc", true);
	fake_recv(recv_ud, 5, "defg", true);
	CHECK_EQ_INT(c->npaused, 2);
	CHECK_EQ_INT(c->nheld, 2);
	fake_complete(recv_ud, -ECANCELED);
	c->h = &h;
	rtls_conn_resume_read(c);
	CHECK(F.got_len == 3 && memcmp(F.got, "abc", 3) == 0); /* not "defg" */
	CHECK_EQ_INT(F.closes, 1);
	CHECK_EQ_INT(c->nheld, 0);
	CHECK_EQ_INT(c->npaused, 0);
	fake_teardown();
}

/* Resume before the cancel has landed: nothing is armed twice; the
 * cancel's -ECANCELED re-arms the receive. */
static void test_resume_before_cancel(void)
{
	struct rtls_conn *c;
	uint64_t recv_ud;

	c = paused_conn(&recv_ud);
	rtls_conn_resume_read(c);
	check_cancel_sqe(fake_next(), ud(c, RTLS__OP_ERR_WATCH));
	CHECK(fake_next() == NULL); /* still armed until the cancel lands */
	rtls_conn_pause_read(c);
	CHECK(fake_next() == NULL); /* one cancel is enough */
	rtls_conn_resume_read(c);
	fake_complete(recv_ud, -ECANCELED);
	check_recv_sqe(fake_next(), c);
	CHECK(c->recv_armed && !c->recv_cancelling);
	fake_teardown();
}

/* ENOBUFS on a paused connection: it leaves the starved list without
 * being re-armed, and resume arms it. */
static void test_starved_while_paused(void)
{
	struct rtls_conn *c;

	fake_setup();
	c = fake_conn();
	c->rx_mode = RTLS__RX_EXACT; /* single-shot: pause cancels nothing */
	c->rx_limit = 100;
	rtls__conn_recv_arm(c);
	CHECK(fake_next() != NULL);
	rtls_conn_pause_read(c);
	check_watch_sqe(fake_next(), c);
	CHECK(fake_next() == NULL);
	fake_complete(ud(c, RTLS__OP_RECV), -ENOBUFS);
	CHECK_EQ_INT(F.r.nstarved, 1);
	rtls__rearm_starved(&F.r); /* buffers there, but the connection is paused */
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(F.r.nstarved, 0);
	CHECK(!c->recv_starved && !c->recv_armed);
	rtls_conn_resume_read(c);
	check_cancel_sqe(fake_next(), ud(c, RTLS__OP_ERR_WATCH));
	CHECK(fake_next() != NULL && c->recv_armed);
	fake_teardown();
}

/* The watch of a paused connection: a hangup without a socket error (both
 * directions shut, the peer's data still unread) ends nothing and is not
 * re-armed (it would wake at once again); a watch cancelled by a resume
 * and wanted again by a pause before its completion is armed anew. */
static void test_err_watch(void)
{
	struct rtls_conn *c;
	uint64_t recv_ud;

	c = paused_conn(&recv_ud);
	fake_complete(recv_ud, -ECANCELED);
	fake_complete(ud(c, RTLS__OP_ERR_WATCH), POLLHUP);
	CHECK(c->state == RTLS__CONN_OPEN && !c->err_watch);
	CHECK(fake_next() == NULL);
	rtls_conn_resume_read(c);
	check_recv_sqe(fake_next(), c); /* nothing to cancel */
	rtls_conn_pause_read(c);
	check_cancel_sqe(fake_next(), recv_ud);
	check_watch_sqe(fake_next(), c);
	rtls_conn_resume_read(c);
	check_cancel_sqe(fake_next(), ud(c, RTLS__OP_ERR_WATCH));
	rtls_conn_pause_read(c);
	CHECK(fake_next() == NULL); /* the one outstanding serves */
	fake_complete(ud(c, RTLS__OP_ERR_WATCH), -ECANCELED);
	check_watch_sqe(fake_next(), c); /* wanted again: armed anew */
	fake_teardown();
}

/* ENOBUFS: the receive waits on the starved list until the ring has
 * buffers again, instead of failing again at once. */
static void test_starved(void)
{
	struct rtls_conn *c;

	fake_setup();
	c = fake_conn();
	rtls__conn_recv_arm(c);
	check_recv_sqe(fake_next(), c);
	fake_complete(ud(c, RTLS__OP_RECV), -ENOBUFS);
	CHECK(!c->recv_armed && c->recv_starved);
	CHECK_EQ_INT(F.r.nstarved, 1);
	CHECK(fake_next() == NULL);

	F.r.bufs.out = FAKE_BUFS; /* every buffer is out */
	rtls__rearm_starved(&F.r);
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(F.r.nstarved, 1);
	F.r.bufs.out = FAKE_BUFS - 1;
	rtls__rearm_starved(&F.r);
	check_recv_sqe(fake_next(), c);
	CHECK_EQ_INT(F.r.nstarved, 0);
	CHECK(!c->recv_starved);
	F.r.bufs.out = 0;
	fake_teardown();
}

/* --- outbound connections (src/core/connect.c) ------------------------- */

static int marker;

/* A connect from `near`'s callback: CONNECTING, its SQE and deadline. */
static struct rtls_conn *connect_out(struct rtls_conn *near, const char *addr)
{
	struct rtls_conn *c = NULL;

	CHECK_EQ_INT(rtls_conn_connect(near, addr, NULL, &marker, &c), 0);
	CHECK(c != NULL);
	if (!c)
		exit(1);
	CHECK_EQ_INT(c->state, RTLS__CONN_CONNECTING);
	CHECK_EQ_INT(c->timer, RTLS_TIMER_CONNECT);
	CHECK(rtls_conn_arg(c) == &marker);
	CHECK(rtls_conn_arg(near) == NULL);
	CHECK_SQE(fake_next(), IORING_OP_CONNECT, c->fd, 0, ud(c, RTLS__OP_CONNECT));
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(rtls_conn_write(c, "x", 1), -EPIPE); /* not open yet */
	return c;
}

static void test_connect_ok(void)
{
	struct rtls_conn *near, *c;
	struct rtls_conn_info info;

	fake_setup();
	near = fake_conn();
	c = connect_out(near, "127.0.0.1:9");
	CHECK(c != near);
	CHECK_EQ_INT(F.opens, 1); /* near's only: no callback inside connect */
	CHECK_EQ_INT(F.closes, 0);
	CHECK_EQ_INT(c->peer.ss_family, AF_INET);
	rtls__reap(&F.r);
	CHECK_EQ_INT(c->state, RTLS__CONN_CONNECTING); /* not reaped */

	fake_complete(ud(c, RTLS__OP_CONNECT), 0);
	CHECK_EQ_INT(F.opens, 2);
	CHECK_EQ_INT(c->state, RTLS__CONN_OPEN);
	CHECK_EQ_INT(c->timer, RTLS_TIMER_NONE);
	check_recv_sqe(fake_next(), c);
	CHECK_EQ_INT(rtls_conn_query(c, &info), 0);
	CHECK_EQ_INT(info.transport, RTLS_TRANSPORT_PLAIN);
	CHECK(info.listener == UINT_MAX);
	CHECK_EQ_INT(rtls_conn_write(c, "hi", 2), 0);
	CHECK_EQ_INT(rtls_conn_flush(c), 0);
	CHECK_SQE(fake_next(), IORING_OP_SEND, c->fd, 2, ud(c, RTLS__OP_SEND));
	fake_teardown();
}

static void test_connect_refused(void)
{
	struct rtls_conn *c;

	fake_setup();
	c = connect_out(fake_conn(), "[::1]:9");
	CHECK_EQ_INT(c->peer.ss_family, AF_INET6);
	fake_complete(ud(c, RTLS__OP_CONNECT), -ECONNREFUSED);
	CHECK_EQ_INT(F.opens, 1);
	CHECK_EQ_INT(F.closes, 1);
	CHECK_EQ_INT(F.close_err, -ECONNREFUSED);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	CHECK_EQ_INT(F.r.nlive, 1);
	CHECK(fake_next() == NULL);
	fake_teardown();
}

/* Killed while connecting: the connect is cancelled, on_close runs at
 * once, and the slot waits for the connect's completion. */
static void test_connect_kill(void)
{
	struct rtls_conn *c;
	uint64_t cud;

	fake_setup();
	c = connect_out(fake_conn(), "unix:/nonexistent/sock");
	CHECK_EQ_INT(c->peer.ss_family, AF_UNIX);
	cud = ud(c, RTLS__OP_CONNECT);
	rtls_conn_abort(c, 0);
	CHECK_EQ_INT(F.closes, 1);
	CHECK_EQ_INT(F.close_err, -ECONNABORTED);
	CHECK_EQ_INT(F.opens, 1);
	check_cancel_sqe(fake_next(), cud);
	rtls__reap(&F.r);
	CHECK_EQ_INT(c->state, RTLS__CONN_DEAD);
	CHECK(c->fd >= 0);
	fake_complete(cud, -ECANCELED);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	CHECK_EQ_INT(F.closes, 1);
	CHECK(fake_next() == NULL);
	fake_teardown();
}

/* The connect deadline: on_close(-ETIMEDOUT), no on_open; a close before
 * the connect completes cancels it (-ECANCELED). */
static void test_connect_deadline(void)
{
	struct rtls_conn *near, *c;
	uint64_t cud;

	fake_setup();
	near = fake_conn();
	c = connect_out(near, "127.0.0.1:9");
	cud = ud(c, RTLS__OP_CONNECT);
	F.r.now_ms += 1001;
	rtls__timers_expire(&F.r);
	CHECK_EQ_INT(F.closes, 1);
	CHECK_EQ_INT(F.close_err, -ETIMEDOUT);
	check_cancel_sqe(fake_next(), cud);
	fake_complete(cud, -ECANCELED);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	CHECK_EQ_INT(F.opens, 1);

	c = connect_out(near, "127.0.0.1:9");
	rtls_conn_close(c);
	CHECK_EQ_INT(F.closes, 2);
	CHECK_EQ_INT(F.close_err, -ECANCELED);
	fake_complete(ud(c, RTLS__OP_CONNECT), 0); /* raced the cancel: ignored */
	CHECK_EQ_INT(F.opens, 1);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	fake_teardown();
}

/* Refused before anything is taken. */
static void test_connect_errors(void)
{
	static const struct rtls_handler big = { .conn_data_size = 8 };
	struct rtls_conn *near, *c = &F.conns[0];

	fake_setup();
	near = fake_conn();
	CHECK_EQ_INT(rtls_conn_connect(near, "nohost:80", NULL, NULL, &c), -EINVAL);
	CHECK(c == NULL);
	CHECK_EQ_INT(rtls_conn_connect(near, "127.0.0.1:99999", NULL, NULL, &c), -EINVAL);
	CHECK_EQ_INT(rtls_conn_connect(near, "unix:relative", NULL, NULL, &c), -EINVAL);
	CHECK_EQ_INT(rtls_conn_connect(near, "127.0.0.1:9", &big, NULL, &c), -EINVAL);
	for (unsigned i = 1; i < FAKE_CONNS; i++)
		CHECK_EQ_INT(rtls_conn_connect(near, "127.0.0.1:9", NULL, NULL, &c), 0);
	CHECK_EQ_INT(rtls_conn_connect(near, "127.0.0.1:9", NULL, NULL, &c), -ENOBUFS);
	CHECK_EQ_INT(F.r.nlive, FAKE_CONNS);
	CHECK_EQ_INT(F.closes, 0);
	fake_teardown();
}

/* rtls_conn_forward_n(): what the handler sees. */
static unsigned fwd_done_calls;

static void count_forwarded(rtls_conn *c, void *data)
{
	(void)c;
	(void)data;
	fwd_done_calls++;
}

static const struct rtls_handler fwd_handler = {
	.on_data = fake_on_data,
	.on_close = fake_on_close,
	.on_forwarded = count_forwarded,
};

/* A bounded forward started while the multishot receive is armed: what
 * that receive still brings is split at the body's end by the engine. The
 * body's part is written to the destination (one SEND), on_forwarded
 * runs, and only the bytes after it reach on_data; the pipe is closed and
 * the source reads the ordinary way. */
static void test_forward_n_split(void)
{
	struct rtls_conn *a, *b;
	uint64_t recv_ud;

	fake_setup();
	fwd_done_calls = 0;
	a = fake_conn();
	b = fake_conn();
	a->h = &fwd_handler;
	rtls__conn_recv_arm(a);
	check_recv_sqe(fake_next(), a);
	recv_ud = ud(a, RTLS__OP_RECV);
	CHECK_EQ_INT(rtls_conn_forward_n(a, b, 0), -EINVAL);
	CHECK_EQ_INT(rtls_conn_forward_n(a, b, 10), 0);
	CHECK_EQ_INT(rtls_conn_forward_n(a, b, 10), -EALREADY);
	check_cancel_sqe(fake_next(), recv_ud);
	fake_recv(recv_ud, 1, "0123", true); /* all body: to b, nothing for the handler */
	CHECK_EQ_INT(F.got_len, 0);
	CHECK_EQ_INT(fwd_done_calls, 0);
	CHECK_EQ_INT(a->fwd_left, 6);
	CHECK_SQE(fake_next(), IORING_OP_SEND, b->fd, 4, ud(b, RTLS__OP_SEND));
	fake_recv(recv_ud, 2, "456789NEXT", true);
	CHECK_EQ_INT(fwd_done_calls, 1);
	CHECK(F.got_len == 4 && memcmp(F.got, "NEXT", 4) == 0);
	CHECK(!a->fwd_on && !a->fwd_bounded && a->fwd_pipe[0] < 0);
	CHECK_EQ_INT(rtls_conn_forwarded(a), 0);   /* copied by the engine, not spliced */
	CHECK_EQ_INT(rtls_conn_pending(b), 6 + 4); /* behind the send in flight */
	CHECK_EQ_INT(F.puts, 2);
	/* The cancelled receive ends: an ordinary receive again. */
	fake_complete(recv_ud, -ECANCELED);
	check_recv_sqe(fake_next(), a);
	fake_teardown();
}

/* The next SQE tagged ud issued since the last look (the others, an error
 * watch or its cancel, are skipped); NULL if none. */
static struct io_uring_sqe *next_tagged(uint64_t tag)
{
	struct io_uring_sqe *sqe;

	while ((sqe = fake_next()))
		if (sqe->user_data == tag)
			return sqe;
	return NULL;
}

/* Spliced: the splice never asks for more than the bytes still owed; the
 * last chunk's segment names no source, and the source reads the ordinary
 * way at once. */
static void test_forward_n_splice(void)
{
	struct rtls_conn *a, *b;
	struct io_uring_sqe *sqe;
	uint64_t poll, in, out;

	fake_setup();
	fwd_done_calls = 0;
	a = fake_conn();
	b = fake_conn();
	a->h = &fwd_handler;
	poll = ud(a, RTLS__OP_FWD_POLL);
	in = ud(a, RTLS__OP_FWD_IN);
	out = ud(b, RTLS__OP_FWD_OUT);
	CHECK_EQ_INT(rtls_conn_forward_n(a, b, 70000), 0);
	CHECK(next_tagged(poll) != NULL);
	fake_complete(poll, POLLIN);
	sqe = next_tagged(in);
	CHECK(sqe && sqe->len == 65536);
	fake_complete(in, 65536);
	CHECK_EQ_INT(a->fwd_left, 70000 - 65536);
	CHECK(a->fwd_wait);
	sqe = next_tagged(out); /* b splices the chunk out */
	CHECK(sqe && sqe->len == 65536 && sqe->fd == b->fd);
	fake_complete(out, 65536);
	CHECK(!a->fwd_wait);
	CHECK(next_tagged(poll) != NULL);
	fake_complete(poll, POLLIN);
	sqe = next_tagged(in);
	CHECK(sqe && sqe->len == 70000 - 65536);
	fake_complete(in, 1000); /* a short splice */
	sqe = next_tagged(out);
	CHECK(sqe && sqe->len == 1000);
	fake_complete(out, 1000);
	CHECK(next_tagged(poll) != NULL);
	fake_complete(poll, POLLIN);
	sqe = next_tagged(in);
	CHECK(sqe && sqe->len == 70000 - 66536);
	fake_complete(in, 70000 - 66536);
	/* The last chunk: done once queued, an ordinary receive at once. */
	CHECK_EQ_INT(fwd_done_calls, 1);
	CHECK(!a->fwd_on && a->fwd_pipe[0] < 0 && !a->fwd_wait);
	CHECK_EQ_INT(rtls_conn_forwarded(a), 70000);
	CHECK(a->recv_armed && a->recv_op == RTLS__OP_RECV);
	sqe = next_tagged(out);
	CHECK(sqe && sqe->len == 70000 - 66536);
	/* That chunk's leaving wakes no one (a is receiving already). */
	fake_complete(out, 70000 - 66536);
	CHECK(a->recv_armed && a->recv_op == RTLS__OP_RECV && !a->fwd_on);
	CHECK(next_tagged(poll) == NULL);
	fake_teardown();
}

int main(void)
{
	rtls_log_set_level(RTLS_LOG_ERROR);
	test_abort_while_sending();
	test_close_while_sending();
	test_reused_slot();
	test_pause_parks();
	test_starved();
	test_resume_before_cancel();
	test_abort_while_resuming();
	test_starved_while_paused();
	test_err_watch();
	test_connect_ok();
	test_connect_refused();
	test_connect_kill();
	test_connect_deadline();
	test_connect_errors();
	test_forward_n_split();
	test_forward_n_splice();
	CHECK_DONE();
}
