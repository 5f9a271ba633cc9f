/* Connection timers. Every timer kind has one fixed duration per server,
 * so appending to the tail of that kind's list keeps each list sorted by
 * deadline: arming, disarming and expiring are O(1). One IORING_OP_TIMEOUT
 * per reactor wakes the loop at the earliest head. */
#include <time.h>

#include "internal.h"

uint64_t rtls__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void list_init(struct rtls__link *h) { h->prev = h->next = h; }

static void list_del(struct rtls__link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

static void list_add_tail(struct rtls__link *h, struct rtls__link *l)
{
	l->prev = h->prev;
	l->next = h;
	h->prev->next = l;
	h->prev = l;
}

#define conn_of(l) ((struct rtls_conn *)((char *)(l) - offsetof(struct rtls_conn, tlink)))

void rtls__timers_init(struct rtls__reactor *r)
{
	for (unsigned i = 0; i < RTLS_TIMER__COUNT; i++)
		list_init(&r->timers[i]);
}

void rtls__timer_arm(struct rtls_conn *c, enum rtls_timer t)
{
	struct rtls__reactor *r = c->r;

	if (c->timer != RTLS_TIMER_NONE)
		list_del(&c->tlink);
	c->timer = (uint8_t)t;
	if (t == RTLS_TIMER_NONE || t >= RTLS_TIMER__COUNT) {
		c->timer = RTLS_TIMER_NONE;
		return;
	}
	c->deadline_ms = r->now_ms + r->srv->cfg.timeout_ms[t];
	list_add_tail(&r->timers[t], &c->tlink);
	if (!r->tick_deadline_ms || c->deadline_ms < r->tick_deadline_ms)
		rtls__tick_arm(r);
}

/* Arms the reactor tick for the earliest deadline, unless one already
 * fires no later than that. A tick that is early just re-arms. */
void rtls__tick_arm(struct rtls__reactor *r)
{
	uint64_t earliest = 0;
	struct io_uring_sqe *sqe;

	for (unsigned i = 1; i < RTLS_TIMER__COUNT; i++) {
		struct rtls__link *h = &r->timers[i];

		if (h->next != h) {
			uint64_t d = conn_of(h->next)->deadline_ms;

			if (!earliest || d < earliest)
				earliest = d;
		}
	}
	if (r->stopping && (!earliest || r->stop_deadline_ms < earliest))
		earliest = r->stop_deadline_ms;
	if (r->stop_grace_ms && (!earliest || r->stop_grace_ms < earliest))
		earliest = r->stop_grace_ms;
	/* Accepts paused by EMFILE resume on a tick too: without it they
	 * would wait for some connection's timer, or forever. */
	if (r->accept_retry_ms && (!earliest || r->accept_retry_ms < earliest))
		earliest = r->accept_retry_ms;
	if (r->watch_ms && (!earliest || r->watch_ms < earliest))
		earliest = r->watch_ms;
	if (r->big_trim_ms && (!earliest || r->big_trim_ms < earliest))
		earliest = r->big_trim_ms;
	if (!earliest || (r->tick_deadline_ms && r->tick_deadline_ms <= earliest))
		return;
	/* A later tick may still be pending; it will only cause a scan,
	 * which is idempotent. */
	r->tick_deadline_ms = earliest;
	uint64_t delta = earliest > r->now_ms ? earliest - r->now_ms : 0;
	r->tick_ts.tv_sec = (long long)(delta / 1000u);
	r->tick_ts.tv_nsec = (long long)(delta % 1000u) * 1000000ll + 1000000ll;
	sqe = rtls__sqe(r);
	io_uring_prep_timeout(sqe, &r->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_TICK, 0, ++r->tick_seq));
}

void rtls__timers_expire(struct rtls__reactor *r)
{
	for (unsigned i = 1; i < RTLS_TIMER__COUNT; i++) {
		struct rtls__link *h = &r->timers[i];

		while (h->next != h) {
			struct rtls_conn *c = conn_of(h->next);

			if (c->deadline_ms > r->now_ms)
				break;
			list_del(&c->tlink);
			c->timer = RTLS_TIMER_NONE;
			RTLS__COUNT_AT(r, timeouts, i);
			rtls__conn_timeout(c, (enum rtls_timer)i);
		}
	}
}
