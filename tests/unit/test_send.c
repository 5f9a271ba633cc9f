/* The send path (src/core/send.c) over a fake ring: partial sends resume
 * where they stopped; writes made while a side is in flight wait on the
 * other side and leave with the next round; the urgent record goes alone
 * when idle, and before the next piece of a side in flight (also between
 * two splices of one file); send errors end the connection. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>

#include "unit/fake_ring.h"

/* A transport like kernel TLS: no seal, told when the urgent record and
 * each send have gone. */
static unsigned seg_sent, sent;

static void tp_seg_sent(rtls_conn *c)
{
	(void)c;
	seg_sent++;
}

static void tp_sent(rtls_conn *c)
{
	(void)c;
	sent++;
}

static const struct rtls__transport ktx_like = {
	.on_seg_sent = tp_seg_sent,
	.on_sent = tp_sent,
};

static const char *sqe_data(const struct io_uring_sqe *sqe)
{
	return (const char *)(uintptr_t)sqe->addr;
}

static uint64_t ud(const struct rtls_conn *c, enum rtls__op op)
{
	return rtls__ud(op, c->slot, c->gen);
}

/* The urgent record's SENDMSG: its bytes, and its content type in a
 * TLS_SET_RECORD_TYPE control message. */
static void check_record(const struct io_uring_sqe *sqe, const struct rtls_conn *c,
			 const char *bytes, size_t n, uint8_t type)
{
	const struct msghdr *m;
	struct cmsghdr *cm;

	CHECK_SQE(sqe, IORING_OP_SENDMSG, c->fd, 1, ud(c, RTLS__OP_SENDMSG));
	if (!sqe)
		return;
	m = (const struct msghdr *)(uintptr_t)sqe->addr;
	CHECK_EQ_INT(m->msg_iovlen, 1);
	CHECK_EQ_INT(m->msg_iov[0].iov_len, n);
	CHECK(memcmp(m->msg_iov[0].iov_base, bytes, n) == 0);
	cm = CMSG_FIRSTHDR((struct msghdr *)(uintptr_t)m);
	CHECK(cm && cm->cmsg_level == RTLS_SOL_TLS && cm->cmsg_type == RTLS_TLS_SET_RECORD_TYPE);
	if (cm)
		CHECK_EQ_INT(*CMSG_DATA(cm), type);
}

static void test_partial_send(void)
{
	struct rtls_conn *c;
	struct io_uring_sqe *sqe;

	fake_setup();
	c = fake_conn();
	CHECK_EQ_INT(rtls_conn_write(c, "hello world", 11), 0);
	CHECK(fake_next() == NULL); /* nothing leaves before a flush */
	CHECK_EQ_INT(rtls_conn_flush(c), 0);
	sqe = fake_next();
	CHECK_SQE(sqe, IORING_OP_SEND, c->fd, 11, ud(c, RTLS__OP_SEND));
	if (sqe) {
		CHECK(memcmp(sqe_data(sqe), "hello world", 11) == 0);
		CHECK_EQ_INT(sqe->msg_flags, MSG_NOSIGNAL); /* no MSG_MORE, no MSG_WAITALL */
	}
	CHECK_EQ_INT(c->send_state, RTLS__SEND_SIDE);
	CHECK_EQ_INT(rtls_conn_pending(c), 11);

	/* A partial send goes on from where it stopped. */
	fake_complete(ud(c, RTLS__OP_SEND), 5);
	sqe = fake_next();
	CHECK_SQE(sqe, IORING_OP_SEND, c->fd, 6, ud(c, RTLS__OP_SEND));
	if (sqe)
		CHECK(memcmp(sqe_data(sqe), " world", 6) == 0);
	CHECK_EQ_INT(rtls_conn_pending(c), 6);
	CHECK_EQ_INT(F.drains, 0);
	CHECK_EQ_INT(c->tx_bytes, 5);

	fake_complete(ud(c, RTLS__OP_SEND), 6);
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(F.drains, 1);
	CHECK_EQ_INT(c->send_state, RTLS__SEND_IDLE);
	CHECK_EQ_INT(rtls_conn_pending(c), 0);
	CHECK_EQ_INT(c->tx_ops, 2);
	/* An idle connection keeps no output memory. */
	CHECK(c->w[0].cap == 0 && c->w[1].cap == 0);

	/* A flush with nothing to send drains at once. */
	CHECK_EQ_INT(rtls_conn_flush(c), 0);
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(F.drains, 2);
	fake_teardown();
}

/* Writes made while a side is in flight go to the other side: the kernel
 * never reads a buffer a later write could move. */
static void test_two_sides(void)
{
	struct rtls_conn *c;
	struct io_uring_sqe *first, *second;

	fake_setup();
	c = fake_conn();
	rtls_conn_write(c, "first", 5);
	rtls_conn_flush(c);
	first = fake_next();
	CHECK_SQE(first, IORING_OP_SEND, c->fd, 5, ud(c, RTLS__OP_SEND));
	CHECK_EQ_INT(rtls_conn_write(c, "second", 6), 0);
	CHECK_EQ_INT(rtls_conn_flush(c), 0);
	CHECK(fake_next() == NULL); /* one request at a time */
	CHECK_EQ_INT(rtls_conn_pending(c), 11);
	if (first)
		CHECK(memcmp(sqe_data(first), "first", 5) == 0); /* not moved */

	fake_complete(ud(c, RTLS__OP_SEND), 5);
	second = fake_next();
	CHECK_SQE(second, IORING_OP_SEND, c->fd, 6, ud(c, RTLS__OP_SEND));
	if (first && second) {
		CHECK(memcmp(sqe_data(second), "second", 6) == 0);
		CHECK(sqe_data(first) != sqe_data(second));
	}
	CHECK_EQ_INT(F.drains, 0); /* not before the second side has gone */
	fake_complete(ud(c, RTLS__OP_SEND), 6);
	CHECK_EQ_INT(F.drains, 1);
	CHECK_EQ_INT(c->send_state, RTLS__SEND_IDLE);
	fake_teardown();
}

static void test_urgent_idle(void)
{
	static const char ku[5] = { 24, 0, 0, 1, 0 };
	struct rtls_conn *c;

	fake_setup();
	seg_sent = 0;
	c = fake_conn();
	c->tp = &ktx_like;
	CHECK_EQ_INT(rtls__send_urgent(c, 22, ku, sizeof(ku)), 0);
	check_record(fake_next(), c, ku, sizeof(ku), 22);
	CHECK_EQ_INT(c->send_state, RTLS__SEND_URGENT);
	CHECK_EQ_INT(rtls__send_urgent(c, 22, ku, sizeof(ku)), -EBUSY); /* one at a time */
	CHECK_EQ_INT(rtls__send_urgent(c, 22, "123456789", 9), -EBUSY); /* too big */

	/* Data flushed meanwhile waits for the record, then goes. */
	rtls_conn_write(c, "data", 4);
	rtls_conn_flush(c);
	CHECK(fake_next() == NULL);
	fake_complete(ud(c, RTLS__OP_SENDMSG), 5);
	CHECK_EQ_INT(seg_sent, 1);
	CHECK_EQ_INT(c->urgent_len, 0);
	CHECK_SQE(fake_next(), IORING_OP_SEND, c->fd, 4, ud(c, RTLS__OP_SEND));
	fake_complete(ud(c, RTLS__OP_SEND), 4);
	CHECK_EQ_INT(F.drains, 1);
	CHECK_EQ_INT(c->send_state, RTLS__SEND_IDLE);

	/* EAGAIN: the same record again. Meanwhile no side is in flight, so
	 * nothing is pending (the last side's count used to wrap around). */
	CHECK_EQ_INT(rtls__send_urgent(c, 22, ku, sizeof(ku)), 0);
	check_record(fake_next(), c, ku, sizeof(ku), 22);
	CHECK_EQ_INT(rtls_conn_pending(c), 0);
	fake_complete(ud(c, RTLS__OP_SENDMSG), -EAGAIN);
	check_record(fake_next(), c, ku, sizeof(ku), 22);
	CHECK_EQ_INT(c->send_state, RTLS__SEND_URGENT);
	fake_complete(ud(c, RTLS__OP_SENDMSG), 5);
	CHECK_EQ_INT(seg_sent, 2);
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(c->send_state, RTLS__SEND_IDLE);
	fake_teardown();
}

/* Queued while a side is in flight, the urgent record goes before the
 * side's next piece, and the side goes on after it. */
static void test_urgent_mid_side(void)
{
	static const char ku[5] = { 24, 0, 0, 1, 1 };
	char body[100];
	struct rtls_conn *c;
	struct io_uring_sqe *sqe;

	fake_setup();
	seg_sent = sent = 0;
	c = fake_conn();
	c->tp = &ktx_like;
	memset(body, 'b', sizeof(body));
	rtls_conn_write(c, body, sizeof(body));
	rtls_conn_flush(c);
	CHECK_SQE(fake_next(), IORING_OP_SEND, c->fd, 100, ud(c, RTLS__OP_SEND));
	CHECK_EQ_INT(rtls__send_urgent(c, 22, ku, sizeof(ku)), 0);
	CHECK(fake_next() == NULL); /* never beside the send in flight */
	CHECK_EQ_INT(rtls__send_urgent(c, 22, ku, sizeof(ku)), -EBUSY);

	fake_complete(ud(c, RTLS__OP_SEND), 40);
	CHECK_EQ_INT(sent, 1);
	check_record(fake_next(), c, ku, sizeof(ku), 22);
	CHECK_EQ_INT(c->send_state, RTLS__SEND_SIDE_URGENT);
	CHECK_EQ_INT(seg_sent, 0);

	fake_complete(ud(c, RTLS__OP_SENDMSG), 5);
	CHECK_EQ_INT(seg_sent, 1);
	CHECK_EQ_INT(sent, 1); /* the record is not the stream's progress */
	sqe = fake_next();
	CHECK_SQE(sqe, IORING_OP_SEND, c->fd, 60, ud(c, RTLS__OP_SEND));
	if (sqe)
		CHECK(sqe_data(sqe) == c->w[c->wi ^ 1].data + 40);
	fake_complete(ud(c, RTLS__OP_SEND), 60);
	CHECK_EQ_INT(F.drains, 1);
	CHECK_EQ_INT(c->tx_bytes, 100);
	fake_teardown();
}

/* A file body leaves by splice (file → pipe → socket); the urgent record
 * goes between two splices of it. */
static void test_urgent_between_splices(void)
{
	static const char ku[5] = { 24, 0, 0, 1, 0 };
	struct rtls_conn *c;
	struct io_uring_sqe *sqe;
	int file = memfd_create("body", MFD_CLOEXEC);

	CHECK(file >= 0 && write(file, "0123456789", 10) == 10);
	fake_setup();
	seg_sent = 0;
	c = fake_conn();
	c->tp = &ktx_like;
	rtls_conn_write(c, "HEAD", 4);
	CHECK_EQ_INT(rtls_conn_write_file(c, file, 0, 10), 0);
	rtls_conn_flush(c);
	sqe = fake_next();
	CHECK_SQE(sqe, IORING_OP_SEND, c->fd, 4, ud(c, RTLS__OP_SEND));
	if (sqe)
		CHECK_EQ_INT(sqe->msg_flags, MSG_NOSIGNAL | MSG_MORE); /* a file follows */
	CHECK_EQ_INT(rtls_conn_pending(c), 14);
	fake_complete(ud(c, RTLS__OP_SEND), 4);

	sqe = fake_next();
	CHECK_SQE(sqe, IORING_OP_SPLICE, c->pipe[1], 10, ud(c, RTLS__OP_SPLICE_IN));
	if (sqe)
		CHECK_EQ_INT(sqe->splice_fd_in, file);
	CHECK_EQ_INT(rtls__send_urgent(c, 22, ku, sizeof(ku)), 0);
	CHECK(fake_next() == NULL);
	fake_complete(ud(c, RTLS__OP_SPLICE_IN), 10);
	check_record(fake_next(), c, ku, sizeof(ku), 22);
	fake_complete(ud(c, RTLS__OP_SENDMSG), 5);
	CHECK_EQ_INT(seg_sent, 1);

	sqe = fake_next();
	CHECK_SQE(sqe, IORING_OP_SPLICE, c->fd, 10, ud(c, RTLS__OP_SPLICE_OUT));
	if (sqe)
		CHECK_EQ_INT(sqe->splice_fd_in, c->pipe[0]);
	fake_complete(ud(c, RTLS__OP_SPLICE_OUT), 10);
	CHECK(fake_next() == NULL);
	CHECK_EQ_INT(F.drains, 1);
	CHECK_EQ_INT(c->pipe[0], -1); /* back to the pool, empty */
	CHECK_EQ_INT(F.r.npipes, 1);
	CHECK(fcntl(file, F_GETFD) < 0 && errno == EBADF); /* closed once sent */
	fake_teardown();
}

/* Errors: a record cut in two, a send that fails, a send that wrote
 * nothing. Each ends the connection, and the slot is freed once the
 * request is in. */
static void test_send_errors(void)
{
	static const char ku[5] = { 24, 0, 0, 1, 0 };
	struct rtls_conn *c;
	uint32_t gen;

	fake_setup();
	c = fake_conn();
	c->tp = &ktx_like;
	rtls__send_urgent(c, 22, ku, sizeof(ku));
	fake_next();
	fake_complete(ud(c, RTLS__OP_SENDMSG), 3);
	CHECK_EQ_INT(F.closes, 1);
	CHECK_EQ_INT(F.close_err, -EIO);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);

	c = fake_conn();
	gen = c->gen;
	rtls_conn_write(c, "x", 1);
	rtls_conn_flush(c);
	fake_next();
	fake_complete(ud(c, RTLS__OP_SEND), -ECONNRESET);
	CHECK_EQ_INT(F.closes, 2);
	CHECK_EQ_INT(F.close_err, -ECONNRESET);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	CHECK_EQ_INT(c->gen, gen + 1);

	c = fake_conn();
	rtls_conn_write(c, "x", 1);
	rtls_conn_flush(c);
	fake_next();
	fake_complete(ud(c, RTLS__OP_SEND), 0);
	CHECK_EQ_INT(F.closes, 3);
	CHECK_EQ_INT(F.close_err, -EPIPE);
	CHECK(fake_next() == NULL);
	fake_teardown();
}

/* A transport like kernel TLS that closes from its on_sent callback (as
 * the AEAD-limit check of keyupdate.c does): its shutdown queues a
 * close_notify record on the pending side. */
static unsigned closes_asked;

static void tp_close_shutdown(rtls_conn *c)
{
	static const char alert[2] = { 1, 0 }; /* warning, close_notify */

	CHECK_EQ_INT(rtls__wbuf_add_record(&c->w[c->wi], 21, alert, sizeof(alert)), 0);
}

static void tp_close_on_sent(rtls_conn *c)
{
	if (!closes_asked++)
		rtls_conn_close(c);
}

static const struct rtls__transport ktx_closing = {
	.shutdown = tp_close_shutdown,
	.on_sent = tp_close_on_sent,
};

/* A close from inside a send completion, between two requests of a side:
 * the side goes on to its end, then the close_notify leaves, once. (The
 * round used to start at once, swapping the sides under the one in
 * flight: the record went twice, and the old side's bytes again.) */
static void test_close_inside_completion(void)
{
	struct rtls_conn *c;
	struct io_uring_sqe *sqe;
	unsigned records = 0;

	fake_setup();
	c = fake_conn();
	c->tp = &ktx_closing;
	closes_asked = 0;
	rtls_conn_write(c, "abc", 3);
	rtls_conn_flush(c);
	CHECK_SQE(fake_next(), IORING_OP_SEND, c->fd, 3, ud(c, RTLS__OP_SEND));
	fake_complete(ud(c, RTLS__OP_SEND), 1); /* on_sent closes here */
	CHECK_EQ_INT(closes_asked, 1);
	sqe = fake_next();
	CHECK_SQE(sqe, IORING_OP_SEND, c->fd, 2, ud(c, RTLS__OP_SEND));
	if (sqe)
		CHECK(memcmp(sqe_data(sqe), "bc", 2) == 0);
	CHECK(fake_next() == NULL); /* nothing else outstanding */
	fake_complete(ud(c, RTLS__OP_SEND), 2);
	while ((sqe = fake_next()))
		if (sqe->opcode == IORING_OP_SENDMSG)
			records++;
	CHECK_EQ_INT(records, 1);
	fake_complete(ud(c, RTLS__OP_SENDMSG), 2);
	/* All sent: FIN, then linger reading until the peer's EOF. */
	CHECK_EQ_INT(c->send_state, RTLS__SEND_IDLE);
	CHECK_EQ_INT(c->state, RTLS__CONN_LINGER);
	sqe = fake_next();
	CHECK(sqe && sqe->opcode == IORING_OP_RECV);
	CHECK(fake_next() == NULL);
	fake_teardown();
}

int main(void)
{
	rtls_log_set_level(RTLS_LOG_ERROR);
	test_partial_send();
	test_two_sides();
	test_urgent_idle();
	test_urgent_mid_side();
	test_urgent_between_splices();
	test_send_errors();
	test_close_inside_completion();
	CHECK_DONE();
}
