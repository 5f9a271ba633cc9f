/* TLS records as bytes (RFC 8446 §5.1, RFC 5246 §6.2): following record
 * boundaries in a stream that arrives in arbitrary pieces, and deciding
 * what a record that kernel RX delivered asks of us. Pure: no I/O, no
 * allocation, no OpenSSL; fuzzed by fuzz/tls_records.c and
 * fuzz/tls_control.c. */
#ifndef RTLS_TLS_RECORD_H
#define RTLS_TLS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RTLS_CT_CHANGE_CIPHER_SPEC 20
#define RTLS_CT_ALERT 21
#define RTLS_CT_HANDSHAKE 22
#define RTLS_CT_APPLICATION_DATA 23

/* Where a stream stands: inside a header (hdr_len bytes of it seen) or
 * inside a body (left bytes to go). At a record boundary both are 0. hdr
 * keeps the last complete header, so its type is readable while its body
 * passes. */
struct rtls__rec {
	uint8_t hdr[5];
	uint8_t hdr_len;
	uint32_t left;
};

/* Takes the first bytes of p[0..n): at most the rest of the current
 * header or body, so one call never passes a header's end. Returns the
 * bytes taken (> 0 when n > 0). *hdr_done says whether this call completed
 * a header: its type is hdr[0], its length `left` (a zero-length record is
 * complete at once and leaves the stream at a boundary). */
size_t rtls__rec_step(struct rtls__rec *r, const unsigned char *p, size_t n, bool *hdr_done);

/* Bytes a read may take without passing the end of the current header or
 * body. Never 0. */
uint32_t rtls__rec_want(const struct rtls__rec *r);

static inline bool rtls__rec_at_boundary(const struct rtls__rec *r)
{
	return r->hdr_len == 0 && r->left == 0;
}

/* Our output stream, counted for the kernel's TX sequence number: the
 * records that start at or after `mark` (UINT64_MAX: no mark yet). */
struct rtls__rec_tx {
	struct rtls__rec rec;
	uint64_t pos;       /* bytes fed so far */
	uint64_t rec_start; /* where the current record started */
	uint64_t mark;
	uint32_t records;
};

/* Feeds n bytes of our output. tls12: a ChangeCipherSpec moves the mark to
 * the end of its own record (the next record is the first under the new
 * keys, RFC 5246 §7.1). */
void rtls__rec_tx_feed(struct rtls__rec_tx *x, const unsigned char *p, size_t n, bool tls12);

/* The application epoch starts at the next byte (TLS 1.3: our Finished
 * has just been written). */
static inline void rtls__rec_tx_mark(struct rtls__rec_tx *x)
{
	x->mark = x->pos;
	x->records = 0;
}

/* What one record from kernel RX asks for. */
enum rtls__rec_action {
	RTLS_REC_DATA,       /* application data: to the handler */
	RTLS_REC_EOF,        /* close_notify (RFC 8446 §6.1) */
	RTLS_REC_PEER_ALERT, /* the peer's alert: level, desc; the stream ends */
	RTLS_REC_KEY_UPDATE, /* a well-formed TLS 1.3 KeyUpdate (§4.6.3) */
	RTLS_REC_FAIL,       /* protocol error: send `alert`, close */
};

struct rtls__rec_verdict {
	enum rtls__rec_action action;
	uint8_t level, desc;   /* PEER_ALERT */
	bool update_requested; /* KEY_UPDATE */
	uint8_t alert;         /* FAIL: the AlertDescription to send */
	const char *why;       /* FAIL: for the log; static */
};

/* Classifies the record of content type `type` with plaintext p[0..n)
 * (is13: TLS 1.3 was negotiated). Reads no byte at or past p + n. */
void rtls__rec_classify(int type, const unsigned char *p, size_t n, bool is13,
			struct rtls__rec_verdict *v);

/* NewSessionTickets on a TLS 1.3 client's kernel RX (RFC 8446 §4.6.1):
 * the session kept already resumes, so they are skipped. A ticket may
 * span records (handshake messages are fragmented freely, §5.1): `left`
 * and the header bytes seen carry over from record to record. */
struct rtls__hs_skip {
	uint8_t hdr[4];
	uint8_t hdr_len;
	uint32_t left; /* bytes of the current ticket's body still to come */
};

/* Takes the handshake record p[0..n): true if it holds only (parts of)
 * NewSessionTickets, which are then skipped; false if anything else is in
 * it, or it is empty (*k is then meaningless: the connection fails). */
bool rtls__rec_skip_tickets(struct rtls__hs_skip *k, const unsigned char *p, size_t n);

#endif
