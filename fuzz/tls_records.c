/* libFuzzer target for the TLS record framing (src/tls/record.c), which
 * sets the kernel's sequence numbers: a record miscounted is a connection
 * lost to bad_record_mac.
 *
 * Input: byte 0: low 4 bits k, bit 4 "TLS 1.2", bits 5-7 the chunk before
 * which the epoch mark is set (7: never); then k chunk sizes; then the
 * stream. The stream is framed once by a plain whole-buffer reference,
 * then fed in the fuzzer's chunks (cycled) three ways:
 *  - rtls__rec_step in arbitrary pieces: the same headers (offset, type,
 *    length), in order, and the same final state as the reference;
 *  - as exact reads (RX_EXACT): each read is min(chunk, want), where a
 *    chunk of 0 reads exactly `want`; want is never 0, always equals the
 *    distance to the reference's next header or body end, so a read never
 *    crosses a record boundary;
 *  - rtls__rec_tx_feed with a mark set between two chunks: the same count
 *    of records at or after the mark as the reference, with TLS 1.2's
 *    ChangeCipherSpec moving the mark to the end of its record.
 * Invariant failures abort(), which libFuzzer reports as a crash. */
#include "check.h"
#include "../src/tls/record.h"

#include <stdlib.h>
#include <string.h>

struct ref_rec {
	size_t start; /* offset of the header */
	uint8_t type;
	uint32_t len;
	int whole_hdr; /* the header lies within the stream */
};

struct ref {
	struct ref_rec *r;
	size_t n;
};

/* Every record that starts in s[0..len), the last one possibly cut. */
static void ref_frame(const uint8_t *s, size_t len, struct ref *ref)
{
	size_t pos = 0;

	ref->r = calloc(len / 5 + 2, sizeof(*ref->r));
	ref->n = 0;
	check(ref->r != NULL);
	while (pos < len) {
		struct ref_rec *x = &ref->r[ref->n++];

		x->start = pos;
		x->whole_hdr = len - pos >= 5;
		if (!x->whole_hdr)
			break;
		x->type = s[pos];
		x->len = (uint32_t)s[pos + 3] << 8 | s[pos + 4];
		pos += 5 + (size_t)x->len;
	}
}

/* The reference's next boundary (header end or record end) after pos;
 * *start says whether pos is where a record starts (or would). */
static size_t ref_next(const struct ref *ref, size_t pos, int *start)
{
	size_t i, s = 0;

	for (i = 0; i < ref->n; i++) {
		s = ref->r[i].start;
		*start = pos == s;
		if (pos < s + 5)
			return s + 5;
		if (pos < s + 5 + ref->r[i].len)
			return s + 5 + ref->r[i].len;
		s += 5 + ref->r[i].len;
	}
	*start = 1; /* pos is the end of the last record */
	return s + 5;
}

static size_t chunk(const uint8_t *ch, size_t k, size_t i)
{
	return k ? ch[i % k] : 7;
}

static void fuzz_step(const uint8_t *s, size_t len, const uint8_t *ch, size_t k,
		      const struct ref *ref)
{
	struct rtls__rec r;
	size_t pos = 0, i = 0, seen = 0;

	memset(&r, 0, sizeof(r));
	while (pos < len) {
		size_t n = chunk(ch, k, i++), end;

		n = n ? n : 1;
		end = pos + (n < len - pos ? n : len - pos);
		while (pos < end) {
			bool hdr_done;
			size_t take = rtls__rec_step(&r, s + pos, end - pos, &hdr_done);

			check(take > 0 && take <= end - pos);
			pos += take;
			if (!hdr_done)
				continue;
			check(seen < ref->n && ref->r[seen].whole_hdr);
			check(ref->r[seen].start + 5 == pos);
			check(r.hdr[0] == ref->r[seen].type && r.left == ref->r[seen].len);
			seen++;
		}
	}
	/* Every whole header was reported, and the state says where we are. */
	check(seen == ref->n || (seen + 1 == ref->n && !ref->r[seen].whole_hdr));
	if (ref->n && !ref->r[ref->n - 1].whole_hdr) {
		check(r.hdr_len == len - ref->r[ref->n - 1].start && r.left == 0);
	} else if (ref->n) {
		size_t end = ref->r[ref->n - 1].start + 5 + ref->r[ref->n - 1].len;

		check(r.hdr_len == 0 && r.left == end - len);
	}
}

static void fuzz_exact(const uint8_t *s, size_t len, const uint8_t *ch, size_t k,
		       const struct ref *ref)
{
	struct rtls__rec r;
	size_t pos = 0, i = 0;
	int start;

	memset(&r, 0, sizeof(r));
	while (pos < len) {
		size_t want = rtls__rec_want(&r), n = chunk(ch, k, i++), end;

		check(want > 0 && want == ref_next(ref, pos, &start) - pos);
		check(rtls__rec_at_boundary(&r) == start);
		n = n && n < want ? n : want;
		end = pos + (n < len - pos ? n : len - pos);
		while (pos < end) {
			bool hdr_done;
			size_t take = rtls__rec_step(&r, s + pos, end - pos, &hdr_done);

			/* A read of at most `want` is taken in one step. */
			check(take == end - pos);
			pos += take;
		}
	}
	check(rtls__rec_want(&r) == ref_next(ref, pos, &start) - pos);
	check(rtls__rec_at_boundary(&r) == start);
}

/* Records the reference counts at or after the mark, set at mark_at. */
static uint32_t ref_count(const struct ref *ref, size_t mark_at, bool tls12)
{
	uint64_t mark = UINT64_MAX;
	uint32_t count = 0;
	int marked = mark_at == SIZE_MAX;
	size_t i;

	for (i = 0; i < ref->n && ref->r[i].whole_hdr; i++) {
		const struct ref_rec *x = &ref->r[i];

		/* The mark lands between feeds: headers completed by then are
		 * behind it, later ones are judged against it. */
		if (!marked && x->start + 5 > mark_at) {
			mark = mark_at;
			count = 0;
			marked = 1;
		}
		if (mark != UINT64_MAX && x->start >= mark)
			count++;
		if (tls12 && x->type == RTLS_CT_CHANGE_CIPHER_SPEC) {
			mark = x->start + 5 + x->len;
			count = 0;
		}
	}
	return marked ? count : 0;
}

static void fuzz_tx(const uint8_t *s, size_t len, const uint8_t *ch, size_t k, unsigned mark_chunk,
		    bool tls12, const struct ref *ref)
{
	struct rtls__rec_tx x;
	size_t pos = 0, i = 0, mark_at = SIZE_MAX;

	memset(&x, 0, sizeof(x));
	x.mark = UINT64_MAX;
	while (pos < len) {
		size_t n = chunk(ch, k, i), end;

		n = n ? n : 1;
		if (i++ == mark_chunk) {
			rtls__rec_tx_mark(&x);
			mark_at = pos;
		}
		end = pos + (n < len - pos ? n : len - pos);
		rtls__rec_tx_feed(&x, s + pos, end - pos, tls12);
		pos = end;
		check(x.pos == pos);
	}
	check(x.records == ref_count(ref, mark_at, tls12));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ref ref;
	size_t k;

	if (size < 1)
		return 0;
	k = data[0] & 15u;
	if (size < 1 + k)
		return 0;
	ref_frame(data + 1 + k, size - 1 - k, &ref);
	fuzz_step(data + 1 + k, size - 1 - k, data + 1, k, &ref);
	fuzz_exact(data + 1 + k, size - 1 - k, data + 1, k, &ref);
	fuzz_tx(data + 1 + k, size - 1 - k, data + 1, k, data[0] >> 5 == 7 ? ~0u : data[0] >> 5,
		(data[0] >> 4) & 1, &ref);
	free(ref.r);
	return 0;
}
