/* Timer lists and completion tags: deadlines expire in order per kind,
 * re-arming moves a connection, disarming removes it, a tag keeps slot
 * and generation apart, and the reactor's tick is armed again whenever
 * the last one armed has fired, whatever the clock read then. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"
#include "unit/check.h"

int main(void)
{
	static struct rtls_server srv;
	static struct rtls__reactor r;
	static struct rtls_conn conns[4];
	uint32_t reap[4];
	uint64_t ud = rtls__ud(RTLS__OP_SEND, 0xabcdef, 0xfffffffe);

	CHECK_EQ_INT(rtls__ud_op(ud), RTLS__OP_SEND);
	CHECK_EQ_INT(rtls__ud_slot(ud), 0xabcdef);
	CHECK_EQ_INT(rtls__ud_gen(ud), 0xfffffffe);
	CHECK(rtls__ud(RTLS__OP_RECV, 1, 1) != rtls__ud(RTLS__OP_RECV, 1, 2)); /* reused slot */

	srv.cfg.timeout_ms[RTLS_TIMER_IDLE] = 1000;
	srv.cfg.timeout_ms[RTLS_TIMER_HEADER] = 100;
	r.srv = &srv;
	r.reap = reap;
	if (io_uring_queue_init(8, &r.ring, 0) < 0)
		return 77; /* no io_uring here */
	r.now_ms = 5000;
	rtls__timers_init(&r);
	for (unsigned i = 0; i < 4; i++) {
		conns[i].r = &r;
		conns[i].slot = i;
		conns[i].fd = -1;
		conns[i].state = RTLS__CONN_LINGER; /* expiry ends it: observable */
		conns[i].tlink.prev = conns[i].tlink.next = &conns[i].tlink;
	}
	rtls__timer_arm(&conns[0], RTLS_TIMER_IDLE);   /* 6000 */
	r.now_ms = 5050;
	rtls__timer_arm(&conns[1], RTLS_TIMER_HEADER); /* 5150 */
	rtls__timer_arm(&conns[2], RTLS_TIMER_IDLE);   /* 6050 */
	rtls__timer_arm(&conns[3], RTLS_TIMER_HEADER); /* 5150 */
	rtls__timer_arm(&conns[3], RTLS_TIMER_NONE);   /* disarmed */
	CHECK(r.tick_deadline_ms != 0 && r.tick_deadline_ms <= 5150);

	r.now_ms = 5149;
	rtls__timers_expire(&r);
	CHECK_EQ_INT(r.nreap, 0);
	r.now_ms = 5150;
	rtls__timers_expire(&r);
	CHECK_EQ_INT(r.nreap, 1);
	CHECK_EQ_INT(reap[0], 1);
	CHECK_EQ_INT(conns[1].state, RTLS__CONN_DEAD);
	CHECK_EQ_INT(conns[3].state, RTLS__CONN_LINGER); /* disarmed: untouched */

	/* Re-arming conns[0] moves it behind conns[2]. */
	r.now_ms = 5100;
	rtls__timer_arm(&conns[0], RTLS_TIMER_IDLE);   /* 6100 */
	r.now_ms = 6060;
	rtls__timers_expire(&r);
	CHECK_EQ_INT(r.nreap, 2);
	CHECK_EQ_INT(reap[1], 2);
	CHECK_EQ_INT(conns[0].state, RTLS__CONN_LINGER);
	r.now_ms = 6100;
	rtls__timers_expire(&r);
	CHECK_EQ_INT(r.nreap, 3);
	CHECK_EQ_INT(reap[2], 0);

	/* The reactor tick: each tick carries its sequence number, and only
	 * the one armed last clears tick_deadline_ms when it fires. */
	{
		struct io_uring_cqe cqe = { .res = -ETIME };
		uint32_t seq;

		/* conns[0] and [2] are gone: conns[3] at 7100 is the only timer. */
		r.now_ms = 7000;
		r.tick_deadline_ms = 0;
		rtls__timer_arm(&conns[3], RTLS_TIMER_HEADER); /* 7100 */
		CHECK_EQ_INT(r.tick_deadline_ms, 7100);
		seq = r.tick_seq;
		/* An older tick fires: the one armed last still stands,
		 * nothing new is armed. */
		cqe.user_data = rtls__ud(RTLS__OP_TICK, 0, seq - 1);
		rtls__dispatch(&r, &cqe);
		CHECK_EQ_INT(r.tick_deadline_ms, 7100);
		CHECK_EQ_INT(r.tick_seq, seq);
		/* The last tick fires, read with a clock from before its deadline
		 * (a CQE posted while a reap runs): nothing expires, and the
		 * reactor arms the next tick rather than wait for one that has
		 * gone. */
		r.now_ms = 7095;
		cqe.user_data = rtls__ud(RTLS__OP_TICK, 0, seq);
		rtls__dispatch(&r, &cqe);
		CHECK_EQ_INT(conns[3].state, RTLS__CONN_LINGER);
		CHECK_EQ_INT(r.tick_seq, seq + 1);
		CHECK_EQ_INT(r.tick_deadline_ms, 7100);
		/* That one fires on time: conns[3] expires. */
		r.now_ms = 7101;
		cqe.user_data = rtls__ud(RTLS__OP_TICK, 0, seq + 1);
		rtls__dispatch(&r, &cqe);
		CHECK_EQ_INT(conns[3].state, RTLS__CONN_DEAD);
		CHECK_EQ_INT(r.tick_deadline_ms, 0);
	}
	io_uring_queue_exit(&r.ring);
	CHECK_DONE();
}
