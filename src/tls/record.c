/* TLS records as bytes: framing and the classification of control records.
 * See record.h. Sequence numbers depend on the framing being exact, and
 * the classification sees bytes straight from the peer, so both are kept
 * free of connection state and fuzzed on their own. */
#include <string.h>

#include "record.h"

#define HS_NEW_SESSION_TICKET 4
#define HS_KEY_UPDATE 24

/* Alert descriptions we send (RFC 8446 §6.2). */
#define AD_UNEXPECTED_MESSAGE 10
#define AD_ILLEGAL_PARAMETER 47
#define AD_DECODE_ERROR 50

size_t rtls__rec_step(struct rtls__rec *r, const unsigned char *p, size_t n, bool *hdr_done)
{
	size_t take;

	*hdr_done = false;
	if (n == 0)
		return 0;
	if (r->left) {
		take = r->left < n ? r->left : n;
		r->left -= (uint32_t)take;
		return take;
	}
	take = 5u - r->hdr_len;
	take = take < n ? take : n;
	memcpy(r->hdr + r->hdr_len, p, take);
	r->hdr_len = (uint8_t)(r->hdr_len + take);
	if (r->hdr_len == 5) {
		/* The length is taken as sent: a record OpenSSL will refuse
		 * (over 2^14 + 256) still has to be followed, so that reads
		 * stay bounded until OpenSSL says so. */
		r->left = (uint32_t)(r->hdr[3] << 8 | r->hdr[4]);
		r->hdr_len = 0;
		*hdr_done = true;
	}
	return take;
}

uint32_t rtls__rec_want(const struct rtls__rec *r)
{
	return r->left ? r->left : 5u - r->hdr_len;
}

void rtls__rec_tx_feed(struct rtls__rec_tx *x, const unsigned char *p, size_t n, bool tls12)
{
	while (n) {
		bool hdr_done;
		size_t take;

		if (rtls__rec_at_boundary(&x->rec))
			x->rec_start = x->pos;
		take = rtls__rec_step(&x->rec, p, n, &hdr_done);
		x->pos += take;
		p += take;
		n -= take;
		if (!hdr_done)
			continue;
		if (x->mark != UINT64_MAX && x->rec_start >= x->mark)
			x->records++;
		/* TLS 1.2: the record after our CCS starts the epoch. */
		if (tls12 && x->rec.hdr[0] == RTLS_CT_CHANGE_CIPHER_SPEC) {
			x->mark = x->pos + x->rec.left;
			x->records = 0;
		}
	}
}

static void fail(struct rtls__rec_verdict *v, uint8_t alert, const char *why)
{
	v->action = RTLS_REC_FAIL;
	v->alert = alert;
	v->why = why;
}

/* An alert record holds exactly one alert (RFC 8446 §5.1); the level is
 * only logged: in TLS 1.3 the description alone decides (§6). */
static void classify_alert(const unsigned char *p, size_t n, struct rtls__rec_verdict *v)
{
	if (n != 2) {
		fail(v, AD_DECODE_ERROR, "alert record of the wrong length (decode_error)");
		return;
	}
	v->level = p[0];
	v->desc = p[1];
	v->action = p[1] == 0 ? RTLS_REC_EOF : RTLS_REC_PEER_ALERT;
}

/* Post-handshake messages. The kernel stops at a KeyUpdate's record, so
 * the message must be whole and alone in it (§5.1: handshake messages
 * must not span a key change); its body is one byte, 0 or 1 (§4.6.3).
 * Nothing else is acted on: a client sends no tickets, TLS 1.2 has no
 * KeyUpdate and renegotiation is refused. */
static void classify_handshake(const unsigned char *p, size_t n, bool is13,
			       struct rtls__rec_verdict *v)
{
	if (!is13 || n == 0 || p[0] != HS_KEY_UPDATE) {
		fail(v, AD_UNEXPECTED_MESSAGE, "unexpected post-handshake message");
		return;
	}
	if (n < 5 || p[1] != 0 || p[2] != 0 || p[3] != 1) {
		fail(v, AD_DECODE_ERROR, "malformed KeyUpdate (decode_error)");
		return;
	}
	if (n > 5) {
		fail(v, AD_UNEXPECTED_MESSAGE, "KeyUpdate not at the end of its record");
		return;
	}
	if (p[4] > 1) {
		fail(v, AD_ILLEGAL_PARAMETER, "KeyUpdate with a bad request value (illegal_parameter)");
		return;
	}
	v->action = RTLS_REC_KEY_UPDATE;
	v->update_requested = p[4] == 1;
}

void rtls__rec_classify(int type, const unsigned char *p, size_t n, bool is13,
			struct rtls__rec_verdict *v)
{
	memset(v, 0, sizeof(*v));
	switch (type) {
	case RTLS_CT_APPLICATION_DATA:
		v->action = RTLS_REC_DATA;
		break;
	case RTLS_CT_ALERT:
		classify_alert(p, n, v);
		break;
	case RTLS_CT_HANDSHAKE:
		classify_handshake(p, n, is13, v);
		break;
	default:
		fail(v, AD_UNEXPECTED_MESSAGE, "unexpected record type");
		break;
	}
}

bool rtls__rec_skip_tickets(struct rtls__hs_skip *k, const unsigned char *p, size_t n)
{
	if (n == 0)
		return false;
	while (n) {
		size_t take;

		if (k->left) { /* the rest of a ticket begun earlier */
			take = k->left < n ? k->left : n;
			k->left -= (uint32_t)take;
			p += take;
			n -= take;
			continue;
		}
		while (k->hdr_len < 4 && n) {
			k->hdr[k->hdr_len++] = *p++;
			n--;
		}
		if (k->hdr[0] != HS_NEW_SESSION_TICKET)
			return false;
		if (k->hdr_len < 4)
			break; /* the header goes on in the next record */
		k->left = (uint32_t)k->hdr[1] << 16 | (uint32_t)k->hdr[2] << 8 | k->hdr[3];
		k->hdr_len = 0;
	}
	return true;
}
