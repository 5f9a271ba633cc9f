/* Range request header (RFC 9110 §14.2), single byte range only.
 *
 * Anything we do not fully understand gives RTLS_RANGE_NONE: §14.2 lets a
 * server ignore Range, and a 200 with the whole body is always correct,
 * whereas a wrong 206 or 416 is not. Multi-range sets are ignored for the
 * same reason (and because multipart/byteranges is a known amplifier). */
#include "static_util.h"

#include <stdint.h>

struct span {
	const char *p;
	size_t n;
};

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* range-unit "=" with no whitespace around "=" (the grammar has none);
 * range units are case-insensitive (§14.1). */
static int take_bytes_unit(struct span *s)
{
	static const char unit[] = "bytes=";
	size_t k, n = sizeof(unit) - 1;

	if (s->n < n)
		return 0;
	for (k = 0; k < n; k++) {
		char c = s->p[k];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != unit[k])
			return 0;
	}
	s->p += n;
	s->n -= n;
	return 1;
}

/* Drops OWS on both ends of the range set: clients and proxies add it
 * after "=" or at the end, and it cannot change the meaning. */
static void trim_ows(struct span *s)
{
	while (s->n > 0 && is_ows(s->p[0])) {
		s->p++;
		s->n--;
	}
	while (s->n > 0 && is_ows(s->p[s->n - 1]))
		s->n--;
}

/* 1*DIGIT at the front of s, advancing past it. Returns 0 on no digit or
 * on a value that does not fit uint64_t: such a value cannot describe a
 * real offset, and wrapping it would turn garbage into a valid range. */
static int take_u64(struct span *s, uint64_t *v)
{
	size_t k = 0;

	*v = 0;
	while (k < s->n && s->p[k] >= '0' && s->p[k] <= '9') {
		uint64_t d = (uint64_t)(s->p[k] - '0');

		if (*v > (UINT64_MAX - d) / 10)
			return 0;
		*v = *v * 10 + d;
		k++;
	}
	s->p += k;
	s->n -= k;
	return k > 0;
}

/* suffix-range = "-" suffix-length: the last n bytes (§14.1.2). */
static enum rtls_range_result suffix_range(struct span *s, uint64_t size,
					   uint64_t *first, uint64_t *last)
{
	uint64_t n;

	if (!take_u64(s, &n) || s->n != 0)
		return RTLS_RANGE_NONE;
	/* A zero-length suffix selects nothing; an empty representation
	 * has no byte range we could report in Content-Range. */
	if (n == 0 || size == 0)
		return RTLS_RANGE_UNSAT;
	/* Longer than the representation: all of it (§14.1.2). */
	*first = n >= size ? 0 : size - n;
	*last = size - 1;
	return RTLS_RANGE_OK;
}

/* int-range = first-pos "-" [ last-pos ] (§14.1.2). */
static enum rtls_range_result int_range(struct span *s, uint64_t size,
					uint64_t *first, uint64_t *last)
{
	uint64_t a, b = UINT64_MAX;

	if (!take_u64(s, &a) || s->n == 0 || s->p[0] != '-')
		return RTLS_RANGE_NONE;
	s->p++;
	s->n--;
	if (s->n != 0 && (!take_u64(s, &b) || s->n != 0))
		return RTLS_RANGE_NONE;
	/* last-pos < first-pos makes the whole field invalid (§14.1.2). */
	if (a > b)
		return RTLS_RANGE_NONE;
	if (a >= size)
		return RTLS_RANGE_UNSAT;
	*first = a;
	*last = b < size - 1 ? b : size - 1;
	return RTLS_RANGE_OK;
}

enum rtls_range_result rtls__range_parse(const char *v, size_t len, uint64_t size,
					 uint64_t *first, uint64_t *last)
{
	struct span s = { v, len };
	size_t k;

	*first = 0;
	*last = 0;
	if (!v || !take_bytes_unit(&s))
		return RTLS_RANGE_NONE;
	trim_ows(&s);
	for (k = 0; k < s.n; k++) {
		if (s.p[k] == ',')
			return RTLS_RANGE_NONE; /* a set: ignored, see above */
	}
	if (s.n == 0)
		return RTLS_RANGE_NONE;
	if (s.p[0] == '-') {
		s.p++;
		s.n--;
		return suffix_range(&s, size, first, last);
	}
	return int_range(&s, size, first, last);
}
