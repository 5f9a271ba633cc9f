/* The PROXY protocol phase of an accepted connection, when the server
 * takes the header (rtls_config.proxy_protocol_from): before the handler
 * or the TLS handshake sees a byte, the phase reads the connection's first
 * bytes and decides.
 *
 *   trusted source (a CIDR matches the socket's peer):
 *     v1/v2 signature → the whole header, within RTLS_TIMER_HEADER; its
 *       source (and destination) become the connection's addresses
 *     anything else   → no header: served as it is
 *   untrusted source:
 *     a signature     → closed, one log line (a header could name anyone)
 *     anything else   → served as it is
 *   malformed header, FIN inside it, the deadline → closed
 *
 * The phase is a transport (struct rtls__transport) in front of the real
 * one, so the receive path needs no test for it: it takes each raw buffer,
 * copies header bytes into a small heap buffer (the header may come in
 * many segments) and gives the ring buffer back. Its reads are single
 * RECVs (RTLS__RX_EXACT), so when it ends no receive is outstanding and
 * the next transport picks its own receive mode: TLS reads its handshake
 * record by record when RX may go to the kernel.
 *
 * The bytes after the header, or all of them when there is none, are put
 * at the start of the provided buffer of the last read, and that buffer
 * goes to the handler (rtls__deliver) or the TLS transport (tp->on_recv)
 * as if it were the connection's first read. For TLS this is safe for the
 * kTLS hand-off: everything read here was sent before we sent a byte, so
 * it is the client's first flight, never past its Finished, where kernel
 * RX begins; the transport's record accounting (rtls__tls_in_account)
 * follows records from a buffer of any length. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "proxyproto.h"

/* A v1 line and a v2 header with a usual TLV or two fit; a longer v2
 * header grows the buffer to its announced length (RTLS__PP_V2_MAX). */
#define PHASE_START 128u

struct phase {
	uint32_t have, cap;
	bool trusted;
	unsigned char buf[];
};

static struct phase *ph_of(const struct rtls_conn *c)
{
	return c->tp_state;
}

static void say(struct rtls_conn *c, enum rtls_log_level lvl, const char *what)
{
	char peer[64];

	if (!rtls_log_enabled(lvl))
		return;
	rtls_conn_peer(c, peer, sizeof(peer));
	rtls_log(lvl, "proxy-protocol %s: %s: closed", peer, what);
}

/* The deadline, for a connection that has said nothing yet, is the one it
 * would have without the feature (a browser's preconnect is idle, not
 * slow); from its first byte, the header's (as the HTTP head's). */
static void arm_first(struct rtls_conn *c)
{
	bool tls = c->r->ls[c->listener].tls && c->r->srv->tls_attach;

	rtls__timer_arm(c, tls ? RTLS_TIMER_HANDSHAKE : RTLS_TIMER_IDLE);
}

/* While the bytes held could still turn out to be no header (a prefix
 * of a signature: at most 11 bytes), the next read may take only what
 * fits beside them, so that all can be handed on in its buffer. Once a
 * header is certain, what follows it is a suffix of the read that ends
 * it: a whole buffer may be read. */
static void set_limit(struct rtls_conn *c, const struct phase *ph)
{
	unsigned size = c->r->bufs.size;

	if (rtls__pp_sniff(ph->buf, ph->have) == RTLS__PP_INCOMPLETE)
		c->rx_limit = size - ph->have;
	else
		c->rx_limit = size;
}

/* The header's addresses, kept for rtls_conn_peer() and rtls_conn_query(). */
static int keep_addrs(struct rtls_conn *c, const struct rtls__pp_hdr *h)
{
	if (h->command != RTLS__PP_CMD_PROXY || !h->src_len)
		return 0; /* LOCAL, UNKNOWN, UNSPEC, UNIX: the socket's own */
	c->pp = malloc(sizeof(*c->pp));
	if (!c->pp)
		return -ENOMEM;
	c->pp->src = h->src;
	c->pp->src_len = h->src_len;
	c->pp->dst = h->dst;
	c->pp->dst_len = h->dst_len;
	return 0;
}

/* The phase is over: the connection goes on as it would have from its
 * accept, with `first` (bytes after the header; may be empty) as its
 * first read. */
static void finish(struct rtls_conn *c, struct rtls_buf *first)
{
	struct rtls_server *s = c->r->srv;
	int ret;

	free(c->tp_state);
	c->tp_state = NULL;
	c->tp = NULL;
	c->rx_mode = RTLS__RX_MULTISHOT;
	c->rx_limit = 0;
	rtls__timer_arm(c, RTLS_TIMER_NONE);
	if (c->r->ls[c->listener].tls && s->tls_attach) {
		ret = s->tls_attach(c);
		if (ret < 0) {
			rtls_buf_release(c, first);
			rtls__conn_kill(c, ret);
		} else if (first->len) {
			c->tp->on_recv(c, first);
		} else {
			rtls_buf_release(c, first);
		}
		return;
	}
	rtls__handler_open(c);
	if (first->len)
		rtls__deliver(c, first); /* released there if on_open closed */
	else
		rtls_buf_release(c, first);
}

/* Copies raw into the phase buffer until the bytes decide, growing it
 * once a v2 header's length is known. Returns the answer and how many
 * bytes of raw it took, or -ENOMEM. */
static int take(struct rtls_conn *c, const struct rtls_buf *raw, size_t *taken,
		struct rtls__pp_hdr *h)
{
	struct phase *ph = ph_of(c), *grown;
	enum rtls__pp_status st;
	size_t cap;

	for (;;) {
		size_t n = raw->len - *taken, room = ph->cap - ph->have;

		n = n < room ? n : room;
		memcpy(ph->buf + ph->have, raw->data + *taken, n);
		ph->have += (uint32_t)n;
		*taken += n;
		st = ph->trusted ? rtls__pp_parse(ph->buf, ph->have, h)
				 : rtls__pp_sniff(ph->buf, ph->have);
		if (st != RTLS__PP_INCOMPLETE || *taken == raw->len)
			return (int)st;
		/* Full and incomplete: only a v2 header longer than the buffer
		 * (a v1 line fits; the sniff decides within 12 bytes). */
		cap = ph->have + rtls__pp_want(ph->buf, ph->have);
		grown = realloc(ph, sizeof(*ph) + cap);
		if (!grown)
			return -ENOMEM; /* ph stays in c->tp_state: destroy frees it */
		ph = grown;
		ph->cap = (uint32_t)cap;
		c->tp_state = ph;
	}
}

static void on_header(struct rtls_conn *c, struct rtls_buf *raw, size_t before,
		      const struct rtls__pp_hdr *h)
{
	char *base = (char *)(uintptr_t)raw->data;
	size_t skip = h->len - before; /* the header ends in this read */
	int ret = keep_addrs(c, h);

	if (ret < 0) {
		rtls_buf_release(c, raw);
		rtls_conn_abort(c, ret);
		return;
	}
	memmove(base, base + skip, raw->len - skip);
	raw->len -= skip;
	finish(c, raw);
}

static void no_header(struct rtls_conn *c, struct rtls_buf *raw, size_t before)
{
	char *base = (char *)(uintptr_t)raw->data;

	/* What came before this read was a signature's first bytes: it goes
	 * in front (set_limit() kept room for it). */
	memmove(base + before, base, raw->len);
	memcpy(base, ph_of(c)->buf, before);
	raw->len += before;
	finish(c, raw);
}

static void phase_recv(struct rtls_conn *c, struct rtls_buf *raw)
{
	struct phase *ph = ph_of(c);
	size_t before = ph->have, taken = 0;
	struct rtls__pp_hdr h = { 0 };
	int st = take(c, raw, &taken, &h);

	switch (st) {
	case RTLS__PP_INCOMPLETE:
		rtls_buf_release(c, raw);
		if (before == 0)
			rtls__timer_arm(c, RTLS_TIMER_HEADER);
		set_limit(c, ph_of(c));
		return;
	case RTLS__PP_NOT_PROXY:
		no_header(c, raw, before);
		return;
	case RTLS__PP_DONE:
		if (ph_of(c)->trusted) {
			on_header(c, raw, before, &h);
			return;
		}
		say(c, RTLS_LOG_WARN, "header from an untrusted source");
		st = -EPERM;
		break;
	case RTLS__PP_BAD:
		say(c, RTLS_LOG_INFO, h.why);
		st = -EPROTO;
		break;
	default: /* -ENOMEM */
		break;
	}
	rtls_buf_release(c, raw);
	rtls__conn_kill(c, st);
}

static void phase_eof(struct rtls_conn *c)
{
	const struct phase *ph = ph_of(c);

	/* A health check that connects and closes says nothing: no line. */
	if (ph->have)
		say(c, RTLS_LOG_INFO, "the peer closed inside the header");
	rtls__conn_kill(c, ph->have ? -ECONNRESET : 0);
}

static void phase_destroy(struct rtls_conn *c)
{
	const struct phase *ph = ph_of(c);

	if (!ph)
		return;
	if (c->close_err == -ETIMEDOUT)
		say(c, ph->have ? RTLS_LOG_INFO : RTLS_LOG_DEBUG,
		    ph->have ? "header not complete in time" : "nothing received in time");
	free(c->tp_state);
	c->tp_state = NULL;
}

static const struct rtls__transport phase_transport = {
	.on_recv = phase_recv,
	.on_recv_eof = phase_eof,
	.destroy = phase_destroy,
};

int rtls__pp_begin(struct rtls_conn *c)
{
	struct rtls_server *s = c->r->srv;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct phase *ph = malloc(sizeof(*ph) + PHASE_START);

	if (!ph)
		return -ENOMEM;
	ph->have = 0;
	ph->cap = PHASE_START;
	ph->trusted = getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0 &&
		      rtls__cidr_match(s->pp_from, s->npp_from, (struct sockaddr *)&ss, len);
	c->tp = &phase_transport;
	c->tp_state = ph;
	c->rx_mode = RTLS__RX_EXACT;
	set_limit(c, ph);
	arm_first(c);
	return 0;
}
