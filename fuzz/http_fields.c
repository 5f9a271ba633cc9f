/* libFuzzer target for the pure field parsers of src/http: the target path
 * (path.c), Range (range.c) and HTTP-date (date.c).
 *
 * Input: one parameter byte, then the field text, which every parser gets.
 * The parameter picks the output buffer size for the path and two
 * representation sizes for the range. Oracles:
 *  - path: equal to an independent reference (decode each '/'-segment,
 *    refuse NUL, '/', '\\', bad escapes and "..", drop "" and "."), the
 *    output free of "..", ".", empty segments, NUL and '\\', never written
 *    past its size (the buffer is allocated to size, so ASan sees it);
 *  - range: whether a range is usable does not depend on the size; a
 *    satisfiable range lies within the representation, survives a
 *    print/parse round trip, and stays satisfiable for a larger one;
 *  - date: an accepted date formats back to an instant that parses to the
 *    same value, an IMF-fixdate formats back to the same text (the weekday
 *    is not checked against the date), and nothing else is touched.
 * Invariant failures abort(), which libFuzzer reports as a crash. */
#include "check.h"
#include "../src/http/static_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATE_MIN INT64_C(-62167219200)
#define DATE_MAX INT64_C(253402300799)

/* ---- path ------------------------------------------------------------ */

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (unsigned char)(ch | 0x20);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Decodes one segment s[0..n) into d. Returns its length or -EINVAL. */
static long ref_segment(const char *s, size_t n, char *d)
{
	size_t i = 0, k = 0;

	while (i < n) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			if (n - i < 3 || hexval((unsigned char)s[i + 1]) < 0 ||
			    hexval((unsigned char)s[i + 2]) < 0)
				return -EINVAL;
			c = hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]);
			i += 3;
		} else {
			i++;
		}
		if (c == 0 || c == '/' || c == '\\')
			return -EINVAL;
		d[k++] = (char)c;
	}
	if (k == 2 && d[0] == '.' && d[1] == '.')
		return -EINVAL;
	return (long)k;
}

/* The whole path, decoded, into out (at least len + 1 bytes). */
static long ref_path(const char *t, size_t len, char *out, int *dir)
{
	size_t end = 0, s, e, n = 0;
	char *seg = malloc(len + 1);
	long k = 0;

	check(seg != NULL);
	if (len == 0 || t[0] != '/') {
		free(seg);
		return -EINVAL;
	}
	while (end < len && t[end] != '?' && t[end] != '#')
		end++;
	for (s = 1;; s = e + 1) {
		for (e = s; e < end && t[e] != '/'; e++)
			;
		k = ref_segment(t + s, e - s, seg);
		if (k < 0)
			break;
		*dir = k == 0 || (k == 1 && seg[0] == '.');
		if (!*dir) {
			if (n)
				out[n++] = '/';
			memcpy(out + n, seg, (size_t)k);
			n += (size_t)k;
		}
		if (e >= end)
			break;
	}
	free(seg);
	out[n] = '\0';
	return k < 0 ? k : (long)n;
}

static void check_clean_path(const char *p, size_t n)
{
	size_t s = 0, e;

	check(strlen(p) == n && !memchr(p, '\\', n));
	if (n == 0)
		return;
	for (;; s = e + 1) {
		for (e = s; e < n && p[e] != '/'; e++)
			;
		check(e > s);                                           /* no "//", no edge '/' */
		check(!(e - s == 1 && p[s] == '.'));                    /* no "." */
		check(!(e - s == 2 && p[s] == '.' && p[s + 1] == '.')); /* no ".." */
		if (e == n)
			break;
	}
}

static void fuzz_path(const char *t, size_t len, size_t outsz)
{
	char *out = malloc(outsz ? outsz : 1), *ref = malloc(len + 1);
	int dir = 7, rdir = 0;
	long want;
	int rc;

	check(out && ref);
	rc = rtls__path_sanitize(t, len, out, outsz, &dir);
	want = ref_path(t, len, ref, &rdir);
	if (want >= 0 && (size_t)want >= outsz)
		want = -ENAMETOOLONG;
	check(rc == want);
	if (rc >= 0) {
		check(memcmp(out, ref, (size_t)rc + 1) == 0 && dir == rdir);
		check_clean_path(out, (size_t)rc);
		check(rtls__mime_type(out, (size_t)rc) != NULL);
	} else {
		check(dir == 0 && (outsz == 0 || out[0] == '\0'));
	}
	free(out);
	free(ref);
}

/* ---- range ----------------------------------------------------------- */

static const uint64_t sizes[8] = {
	0, 1, 2, 10, 1000, UINT64_C(1) << 32, UINT64_MAX - 1, UINT64_MAX,
};

static void fuzz_range(const char *v, size_t len, uint64_t s1, uint64_t s2)
{
	enum rtls_range_result r1, r2, r3;
	uint64_t f1, l1, f2, l2, f3, l3;
	char again[64];
	int n;

	if (s1 > s2) {
		uint64_t tmp = s1;

		s1 = s2;
		s2 = tmp;
	}
	r1 = rtls__range_parse(v, len, s1, &f1, &l1);
	r2 = rtls__range_parse(v, len, s2, &f2, &l2);
	check(r1 <= RTLS_RANGE_UNSAT && r2 <= RTLS_RANGE_UNSAT);
	check((r1 == RTLS_RANGE_NONE) == (r2 == RTLS_RANGE_NONE));
	if (r1 != RTLS_RANGE_NONE)
		check(len >= 6 && strncasecmp(v, "bytes=", 6) == 0 && !memchr(v, ',', len));
	if (r1 == RTLS_RANGE_OK) {
		size_t k = 6;

		while (k < len && (v[k] == ' ' || v[k] == '\t'))
			k++;
		check(r2 == RTLS_RANGE_OK);
		/* "a-b" starts at a whatever the size; "-n" ends at the end. */
		check(v[k] == '-' ? l1 == s1 - 1 && l2 == s2 - 1 : f1 == f2);
	}
	if (r1 != RTLS_RANGE_OK) {
		check(f1 == 0 && l1 == 0);
		return;
	}
	check(s1 > 0 && f1 <= l1 && l1 < s1);
	n = snprintf(again, sizeof(again), "bytes=%" PRIu64 "-%" PRIu64, f1, l1);
	r3 = rtls__range_parse(again, (size_t)n, s1, &f3, &l3);
	check(r3 == RTLS_RANGE_OK && f3 == f1 && l3 == l1);
}

/* ---- date ------------------------------------------------------------ */

static void fuzz_date(const char *s, size_t len)
{
	char out[30];
	time_t t = (time_t)12345, t2 = 0;
	int64_t v;

	if (rtls__http_date_parse(s, len, &t) != 0) {
		check(t == (time_t)12345);
		return;
	}
	v = (int64_t)t;
	check(len == 24 || len == 29 || (len >= 30 && len <= 33));
	/* One past DATE_MAX: 9999-12-31T23:59:60, a leap second. */
	check(v >= DATE_MIN && v <= DATE_MAX + 1);
	if (v > DATE_MAX)
		return;
	check(rtls__http_date_format(t, out) == 29);
	check(rtls__http_date_parse(out, 29, &t2) == 0 && t2 == t);
	if (len == 29 && s[3] == ',' && memcmp(s + 23, "60", 2) != 0)
		check(memcmp(out + 3, s + 3, 26) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t outsz[8] = { 0, 1, 2, 3, 8, 16, 64, 4096 };
	const char *text = (const char *)data + 1;
	size_t len;

	if (size < 1)
		return 0;
	len = size - 1;
	fuzz_path(text, len, outsz[data[0] & 7]);
	fuzz_range(text, len, sizes[(data[0] >> 3) & 7], sizes[(data[0] >> 6) * 2 + 1]);
	fuzz_date(text, len);
	return 0;
}
