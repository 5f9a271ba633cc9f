/* Counters: each reactor counts into its own struct rtls__stats (one
 * writer, relaxed atomics, internal.h says why); rtls_server_stats() sums
 * them for any thread. DESIGN.md "Metrics". */
#include <errno.h>
#include <string.h>

#include "internal.h"

_Static_assert(sizeof(struct rtls_stats) % sizeof(uint64_t) == 0, "rtls_stats is all uint64_t");
_Static_assert(sizeof(struct rtls__stats) == sizeof(struct rtls_stats), "one slot per field");
/* The arrays of struct rtls_stats have room for every value of their enums. */
_Static_assert(RTLS_STATS_CLOSE__COUNT <= 8 && RTLS_TIMER__COUNT <= 8 &&
		       RTLS_STATS_TLSV__COUNT <= 4 && RTLS_STATS_CIPHER__COUNT <= 8 &&
		       RTLS_STATS_HS__COUNT <= 16 && RTLS_STATS_KTLS__COUNT <= 8,
	       "struct rtls_stats arrays too small for their enums");

/* Who ended the connection, from the error it ends with. A graceful end
 * (err 0) is the peer's when its FIN or close_notify came first, that is
 * before ours: a connection lingering after our FIN was closed by us. */
static enum rtls_stats_close close_reason(const struct rtls_conn *c, int err)
{
	if (c->r->stopping)
		return RTLS_STATS_CLOSE_SHUTDOWN;
	switch (err) {
	case 0:
		return c->peer_eof && c->state != RTLS__CONN_LINGER ? RTLS_STATS_CLOSE_PEER
								    : RTLS_STATS_CLOSE_LOCAL;
	case -ECANCELED:
		return RTLS_STATS_CLOSE_LOCAL;
	case -ETIMEDOUT:
		return RTLS_STATS_CLOSE_TIMEOUT;
	case -ECONNRESET:
	case -EPIPE:
		return RTLS_STATS_CLOSE_RESET;
	case -ECONNABORTED:
		return RTLS_STATS_CLOSE_ABORTED;
	case -ESHUTDOWN:
		return RTLS_STATS_CLOSE_SHUTDOWN;
	default:
		return RTLS_STATS_CLOSE_ERROR;
	}
}

/* Called once per connection, before it goes DEAD. */
void rtls__stats_closed(struct rtls_conn *c, int err)
{
	RTLS__COUNT_AT(c->r, conns_closed, close_reason(c, err));
}

static _Thread_local struct rtls__stats *mine;

void rtls__stats_bind(struct rtls__stats *s)
{
	mine = s;
}

struct rtls__stats *rtls__stats_mine(void)
{
	return mine;
}

int rtls_server_stats(const rtls_server *s, struct rtls_stats *out, size_t size)
{
	uint64_t sum[RTLS__NSTATS], closed = 0, opened;
	size_t n = size < sizeof(sum) ? size : sizeof(sum);

	if (!s || !out)
		return -EINVAL;
	memset(sum, 0, sizeof(sum));
	for (unsigned r = 0; r < s->nreactors; r++)
		for (size_t i = 0; i < RTLS__NSTATS; i++)
			sum[i] += atomic_load_explicit(&s->rs[r].stats.v[i], memory_order_relaxed);
	for (size_t i = 0; i < RTLS_STATS_CLOSE__COUNT; i++)
		closed += sum[RTLS__STAT(conns_closed) + i];
	opened = sum[RTLS__STAT(conns_accepted)] + sum[RTLS__STAT(conns_outbound)];
	/* The loads are not one instant's: a close may be seen before its
	 * accept. */
	sum[RTLS__STAT(conns_open)] = opened > closed ? opened - closed : 0;
	memcpy(out, sum, n);
	if (size > n)
		memset((char *)out + n, 0, size - n);
	return (int)n;
}
