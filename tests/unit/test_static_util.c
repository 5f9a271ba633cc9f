/* MIME lookup, HTTP-date format/parse and Range parsing: the pure helpers
 * behind static file responses. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <locale.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "../../src/http/static_util.h"
#include "check.h"
#include "guard.h"

/* ---- MIME ------------------------------------------------------------ */

static void expect_mime(const char *name, const char *want)
{
	size_t n = strlen(name);
	const char *got = rtls__mime_type(guarded(name, n), n);

	if (!got || strcmp(got, want) != 0) {
		fprintf(stderr, "FAIL mime(\"%s\") = \"%s\", want \"%s\"\n",
			name, got ? got : "(null)", want);
		check_failures++;
	}
}

static void test_mime(void)
{
	static const struct {
		const char *name, *type;
	} all[] = {
		{ "a.html", "text/html; charset=utf-8" },
		{ "a.htm", "text/html; charset=utf-8" },
		{ "a.css", "text/css; charset=utf-8" },
		{ "a.js", "text/javascript; charset=utf-8" },
		{ "a.mjs", "text/javascript; charset=utf-8" },
		{ "a.json", "application/json; charset=utf-8" },
		{ "a.txt", "text/plain; charset=utf-8" },
		{ "a.xml", "application/xml; charset=utf-8" },
		{ "a.svg", "image/svg+xml; charset=utf-8" },
		{ "a.png", "image/png" },
		{ "a.jpg", "image/jpeg" },
		{ "a.jpeg", "image/jpeg" },
		{ "a.gif", "image/gif" },
		{ "a.webp", "image/webp" },
		{ "a.ico", "image/x-icon" },
		{ "a.avif", "image/avif" },
		{ "a.wasm", "application/wasm" },
		{ "a.pdf", "application/pdf" },
		{ "a.zip", "application/zip" },
		{ "a.gz", "application/gzip" },
		{ "a.tar", "application/x-tar" },
		{ "a.mp4", "video/mp4" },
		{ "a.webm", "video/webm" },
		{ "a.mp3", "audio/mpeg" },
		{ "a.ogg", "audio/ogg" },
		{ "a.woff", "font/woff" },
		{ "a.woff2", "font/woff2" },
		{ "a.ttf", "font/ttf" },
		{ "a.otf", "font/otf" },
		{ "a.csv", "text/csv; charset=utf-8" },
		{ "a.md", "text/markdown; charset=utf-8" },
		{ "a.map", "application/json; charset=utf-8" },
	};
	const char *oct = "application/octet-stream";
	size_t k;

	for (k = 0; k < sizeof(all) / sizeof(all[0]); k++)
		expect_mime(all[k].name, all[k].type);

	/* case-insensitive, and only the last extension counts */
	expect_mime("INDEX.HTML", "text/html; charset=utf-8");
	expect_mime("Photo.JpEg", "image/jpeg");
	expect_mime("dir/app.min.js", "text/javascript; charset=utf-8");
	expect_mime("x.tar.gz", "application/gzip");
	expect_mime("a.js.map", "application/json; charset=utf-8");

	/* unknown, none, dotfiles, and near misses on table entries */
	expect_mime("a.unknown", oct);
	expect_mime("a.exe", oct);
	expect_mime("Makefile", oct);
	expect_mime("", oct);
	expect_mime("a.", oct);
	expect_mime(".", oct);
	expect_mime(".bashrc", oct);
	expect_mime(".html", oct);
	expect_mime("dir/.html", oct);
	expect_mime("dir.html/file", oct);
	expect_mime("dir.d/", oct);
	expect_mime("a.h", oct);
	expect_mime("a.htmlx", oct);
	expect_mime("a.woff3", oct);
	expect_mime("a.j", oct);
	expect_mime("a.jsx", oct);
	expect_mime("a.\xc3\xa9", oct);

	/* len bounds the name; it need not be NUL-terminated */
	CHECK(strcmp(rtls__mime_type("a.html.gz", 6),
		     "text/html; charset=utf-8") == 0);
	CHECK(strcmp(rtls__mime_type("a.css", 4), oct) == 0);
	CHECK(strcmp(rtls__mime_type(NULL, 0), oct) == 0);
}

/* ---- dates ----------------------------------------------------------- */

#define RFC_EXAMPLE ((time_t)784111777) /* Sun, 06 Nov 1994 08:49:37 GMT */

static void expect_format(time_t t, const char *want)
{
	char out[32];

	memset(out, 'X', sizeof(out));
	CHECK_EQ_INT(rtls__http_date_format(t, out), 29);
	if (out[29] != '\0' || strcmp(out, want) != 0 || out[30] != 'X') {
		fprintf(stderr, "FAIL format(%lld) = \"%.29s\", want \"%s\"\n",
			(long long)t, out, want);
		check_failures++;
	}
}

static int parse(const char *s, time_t *t)
{
	size_t n = strlen(s);

	return rtls__http_date_parse(guarded(s, n), n, t);
}

static void expect_parse(const char *s, time_t want)
{
	time_t t = 12345;
	int rc = parse(s, &t);

	if (rc != 0 || t != want) {
		fprintf(stderr, "FAIL parse(\"%s\") rc=%d t=%lld, want %lld\n",
			s, rc, (long long)t, (long long)want);
		check_failures++;
	}
}

static void expect_bad_date(const char *s, size_t n)
{
	time_t t = 12345;
	int rc = rtls__http_date_parse(guarded(s, n), n, &t);

	if (rc != -EINVAL || t != 12345) {
		fprintf(stderr, "FAIL parse(\"%.*s\") rc=%d, want -EINVAL\n",
			(int)n, s, rc);
		check_failures++;
	}
}

#define BAD_DATE(lit) expect_bad_date((lit), sizeof(lit) - 1)

static void test_date_format(void)
{
	expect_format(RFC_EXAMPLE, "Sun, 06 Nov 1994 08:49:37 GMT");
	expect_format(0, "Thu, 01 Jan 1970 00:00:00 GMT");
	expect_format(-1, "Wed, 31 Dec 1969 23:59:59 GMT");
	expect_format(951782400, "Tue, 29 Feb 2000 00:00:00 GMT");
	expect_format(1700000000, "Tue, 14 Nov 2023 22:13:20 GMT");
	expect_format((time_t)2147483648LL, "Tue, 19 Jan 2038 03:14:08 GMT");
	expect_format((time_t)253402300799LL, "Fri, 31 Dec 9999 23:59:59 GMT");
	/* out of the 4-digit-year range: clamped, still well-formed */
	expect_format((time_t)253402300800LL, "Fri, 31 Dec 9999 23:59:59 GMT");
	expect_format((time_t)INT64_MAX, "Fri, 31 Dec 9999 23:59:59 GMT");
	expect_format((time_t)INT64_MIN, "Sat, 01 Jan 0000 00:00:00 GMT");

	/* Names come from our tables, not LC_TIME. Try a few locales that
	 * may be installed; with none there is nothing more to show. */
	if (setlocale(LC_ALL, "de_DE.UTF-8") || setlocale(LC_ALL, "fr_FR.UTF-8") ||
	    setlocale(LC_ALL, "C.UTF-8"))
		expect_format(RFC_EXAMPLE, "Sun, 06 Nov 1994 08:49:37 GMT");
	setlocale(LC_ALL, "C");
}

static void test_date_roundtrip(void)
{
	static const long long times[] = {
		0, 1, -1, 784111777, 951782400, 951868799, 978307200,
		1700000000, 2147483647LL, 2147483648LL, 4102444800LL,
		-2208988800LL, 253402300799LL, -62167219200LL,
	};
	size_t k;

	for (k = 0; k < sizeof(times) / sizeof(times[0]); k++) {
		char buf[32];
		time_t t = 0;

		CHECK_EQ_INT(rtls__http_date_format((time_t)times[k], buf), 29);
		CHECK_EQ_INT(rtls__http_date_parse(guarded(buf, 29), 29, &t), 0);
		CHECK_EQ_INT(t, times[k]);
	}
}

/* RFC 850's two-digit year: the result must end in yy and lie no more
 * than 50 years ahead of now (RFC 9110 §5.6.7), and the rest must match. */
static void expect_rfc850(const char *s, int yy, int mon, int mday)
{
	time_t t = 0, now = time(NULL);
	struct tm tm, cur;
	int year;

	CHECK_EQ_INT(parse(s, &t), 0);
	CHECK(gmtime_r(&t, &tm) != NULL && gmtime_r(&now, &cur) != NULL);
	year = tm.tm_year + 1900;
	CHECK_EQ_INT(year % 100, yy);
	CHECK(year <= cur.tm_year + 1900 + 50);
	CHECK(year > cur.tm_year + 1900 + 50 - 100);
	CHECK_EQ_INT(tm.tm_mon, mon);
	CHECK_EQ_INT(tm.tm_mday, mday);
	if (year == 1994 && mon == 10 && mday == 6)
		CHECK_EQ_INT(t, RFC_EXAMPLE);
}

static void test_date_parse(void)
{
	/* the three forms of RFC 9110 §5.6.7's example */
	expect_parse("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE);
	expect_parse("Sun Nov  6 08:49:37 1994", RFC_EXAMPLE);
	expect_parse("Sun Nov 06 08:49:37 1994", RFC_EXAMPLE);
	expect_rfc850("Sunday, 06-Nov-94 08:49:37 GMT", 94, 10, 6);
	expect_rfc850("Thursday, 01-Jan-70 00:00:00 GMT", 70, 0, 1);
	expect_rfc850("Saturday, 01-Jan-00 00:00:00 GMT", 0, 0, 1);
	expect_rfc850("Wednesday, 09-Jun-21 10:18:14 GMT", 21, 5, 9);

	expect_parse("Thu, 01 Jan 1970 00:00:00 GMT", 0);
	expect_parse("Wed, 31 Dec 1969 23:59:59 GMT", -1);
	expect_parse("Tue, 29 Feb 2000 00:00:00 GMT", 951782400);
	expect_parse("Thu Feb 29 23:59:59 2000", 951868799);
	/* leap second: allowed by the grammar, lands on the next second */
	expect_parse("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800);
	/* the weekday is not cross-checked */
	expect_parse("Mon, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE);
}

static void test_date_bad(void)
{
	static const char good[] = "Sun, 06 Nov 1994 08:49:37 GMT";
	static const char good_asc[] = "Sun Nov  6 08:49:37 1994";
	static const char good_850[] = "Sunday, 06-Nov-94 08:49:37 GMT";
	size_t n;

	/* every truncation of each form */
	for (n = 0; n < sizeof(good) - 1; n++)
		expect_bad_date(good, n);
	for (n = 0; n < sizeof(good_asc) - 1; n++)
		expect_bad_date(good_asc, n);
	for (n = 0; n < sizeof(good_850) - 1; n++)
		expect_bad_date(good_850, n);

	BAD_DATE("Sun, 06 Nov 1994 08:49:37 GMT ");
	BAD_DATE(" Sun, 06 Nov 1994 08:49:37 GMT");
	expect_bad_date("Sun, 06 Nov 1994 08:49:37 GMT\0", 30);
	BAD_DATE("Sun, 06 Nov 1994 08:49:37 UTC");
	BAD_DATE("Sun, 06 Nov 1994 08:49:37 gmt");
	BAD_DATE("Sun, 06 Nov 1994 08:49:37 +0000");
	BAD_DATE("Sun, 06 nov 1994 08:49:37 GMT");
	BAD_DATE("sun, 06 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun, 06 Foo 1994 08:49:37 GMT");
	BAD_DATE("Sux, 06 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun, 6 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun,  6 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun, 06 Nov 94 08:49:37 GMT");
	BAD_DATE("Sun, 06 Nov 1994 8:49:37 GMT");
	BAD_DATE("Sun, 06 Nov 1994 08:4a:37 GMT");
	BAD_DATE("Sun, 06 Nov 1994 08-49-37 GMT");
	BAD_DATE("Sun, 06 Nov +994 08:49:37 GMT");
	BAD_DATE("Sun,06 Nov 1994 08:49:37 GMT");
	/* out of range */
	BAD_DATE("Sun, 00 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun, 32 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun, 31 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun, 30 Feb 2000 08:49:37 GMT");
	BAD_DATE("Sun, 29 Feb 1900 08:49:37 GMT");
	BAD_DATE("Sun, 29 Feb 2023 08:49:37 GMT");
	BAD_DATE("Sun, 06 Nov 1994 24:00:00 GMT");
	BAD_DATE("Sun, 06 Nov 1994 08:60:37 GMT");
	BAD_DATE("Sun, 06 Nov 1994 08:49:61 GMT");
	BAD_DATE("Sun, 06 Nov 1994 99:99:99 GMT");
	/* forms mixed up */
	BAD_DATE("Sunday, 06 Nov 1994 08:49:37 GMT");
	BAD_DATE("Sun, 06-Nov-94 08:49:37 GMT");
	BAD_DATE("Sundae, 06-Nov-94 08:49:37 GMT");
	BAD_DATE("Sunday, 06-Nov-1994 08:49:37 GMT");
	BAD_DATE("Sunday, 6-Nov-94 08:49:37 GMT");
	BAD_DATE("Sunday, 31-Apr-94 08:49:37 GMT");
	BAD_DATE("Sun Nov  6 08:49:37 1994 GMT");
	BAD_DATE("Sun Nov 6 08:49:37 1994");
	BAD_DATE("Sun Nov  6 8:49:37 1994");
	BAD_DATE("Sun Nov  6 08:49:37 94");
	BAD_DATE("Sun Nov 31 08:49:37 1994");
	BAD_DATE("Sun Nov  0 08:49:37 1994");
	BAD_DATE("Sunday Nov  6 08:49:37 1994");
	BAD_DATE("0");
	BAD_DATE("784111777");
	CHECK_EQ_INT(rtls__http_date_parse(NULL, 0, NULL), -EINVAL);
}

/* ---- ranges ---------------------------------------------------------- */

static void expect_range(const char *v, uint64_t size, enum rtls_range_result want,
			 uint64_t want_first, uint64_t want_last)
{
	size_t n = strlen(v);
	uint64_t first = 777, last = 777;
	enum rtls_range_result r;

	r = rtls__range_parse(guarded(v, n), n, size, &first, &last);
	if (want != RTLS_RANGE_OK)
		want_first = want_last = 0;
	if (r != want || first != want_first || last != want_last) {
		fprintf(stderr,
			"FAIL range(\"%s\", %llu) = %d [%llu, %llu], want %d [%llu, %llu]\n",
			v, (unsigned long long)size, (int)r,
			(unsigned long long)first, (unsigned long long)last,
			(int)want, (unsigned long long)want_first,
			(unsigned long long)want_last);
		check_failures++;
	}
}

#define RANGE_OK(v, size, a, b) expect_range((v), (size), RTLS_RANGE_OK, (a), (b))
#define RANGE_NONE(v, size) expect_range((v), (size), RTLS_RANGE_NONE, 0, 0)
#define RANGE_UNSAT(v, size) expect_range((v), (size), RTLS_RANGE_UNSAT, 0, 0)

static void test_range_ok(void)
{
	/* RFC 9110 §14.1.2's examples on a 10000-byte representation */
	RANGE_OK("bytes=0-499", 10000, 0, 499);
	RANGE_OK("bytes=500-999", 10000, 500, 999);
	RANGE_OK("bytes=-500", 10000, 9500, 9999);
	RANGE_OK("bytes=9500-", 10000, 9500, 9999);
	RANGE_OK("bytes=0-0", 10000, 0, 0);
	RANGE_OK("bytes=-1", 10000, 9999, 9999);
	RANGE_OK("bytes=0-", 10000, 0, 9999);
	RANGE_OK("bytes=9999-9999", 10000, 9999, 9999);
	/* last-pos past the end is clamped */
	RANGE_OK("bytes=0-10000", 10000, 0, 9999);
	RANGE_OK("bytes=100-99999999", 10000, 100, 9999);
	RANGE_OK("bytes=0-18446744073709551615", 100, 0, 99);
	/* suffix longer than the representation: all of it */
	RANGE_OK("bytes=-10000", 10000, 0, 9999);
	RANGE_OK("bytes=-20000", 10000, 0, 9999);
	RANGE_OK("bytes=-18446744073709551615", 10000, 0, 9999);
	/* one-byte representation */
	RANGE_OK("bytes=0-", 1, 0, 0);
	RANGE_OK("bytes=-1", 1, 0, 0);
	RANGE_OK("bytes=-5", 1, 0, 0);
	RANGE_OK("bytes=0-5", 1, 0, 0);
	/* unit is case-insensitive; OWS around the range-spec is tolerated */
	RANGE_OK("Bytes=0-1", 10, 0, 1);
	RANGE_OK("BYTES=0-1", 10, 0, 1);
	RANGE_OK("bytes= 0-1", 10, 0, 1);
	RANGE_OK("bytes=0-1 ", 10, 0, 1);
	RANGE_OK("bytes=\t 2-3 \t", 10, 2, 3);
	RANGE_OK("bytes= -3", 10, 7, 9);
	/* leading zeros do not count towards overflow */
	RANGE_OK("bytes=000000000000000000000000001-000000000000000000000002",
		 10, 1, 2);
	/* huge but representable sizes */
	RANGE_OK("bytes=18446744073709551613-", UINT64_MAX, UINT64_MAX - 2,
		 UINT64_MAX - 1);
	RANGE_OK("bytes=-2", UINT64_MAX, UINT64_MAX - 2, UINT64_MAX - 1);
}

static void test_range_unsat(void)
{
	RANGE_UNSAT("bytes=10000-", 10000);
	RANGE_UNSAT("bytes=10000-10005", 10000);
	RANGE_UNSAT("bytes=20000-30000", 10000);
	RANGE_UNSAT("bytes=1-", 1);
	RANGE_UNSAT("bytes=-0", 10000);
	RANGE_UNSAT("bytes=-000", 10000);
	RANGE_UNSAT("bytes=18446744073709551615-", UINT64_MAX);
	/* an empty representation has no satisfiable range */
	RANGE_UNSAT("bytes=0-", 0);
	RANGE_UNSAT("bytes=0-0", 0);
	RANGE_UNSAT("bytes=0-100", 0);
	RANGE_UNSAT("bytes=-5", 0);
	RANGE_UNSAT("bytes=-0", 0);
	RANGE_UNSAT("Bytes= 5-", 0);
}

static void test_range_none(void)
{
	/* last-pos < first-pos is malformed, not unsatisfiable */
	RANGE_NONE("bytes=5-4", 10000);
	RANGE_NONE("bytes=5-4", 0);
	RANGE_NONE("bytes=20000-10000", 10000);
	/* multi-range sets are ignored */
	RANGE_NONE("bytes=0-1,5-6", 10000);
	RANGE_NONE("bytes=0-1, 5-6", 10000);
	RANGE_NONE("bytes=0-1,", 10000);
	RANGE_NONE("bytes=,0-1", 10000);
	RANGE_NONE("bytes=-1,-2", 10000);
	/* other units, or no "=" right after the unit */
	RANGE_NONE("items=0-1", 10000);
	RANGE_NONE("byte=0-1", 10000);
	RANGE_NONE("bytesx=0-1", 10000);
	RANGE_NONE("bytes", 10000);
	RANGE_NONE("bytes 0-1", 10000);
	RANGE_NONE("bytes =0-1", 10000);
	RANGE_NONE(" bytes=0-1", 10000);
	RANGE_NONE("", 10000);
	/* malformed specs */
	RANGE_NONE("bytes=", 10000);
	RANGE_NONE("bytes=  ", 10000);
	RANGE_NONE("bytes=-", 10000);
	RANGE_NONE("bytes=--1", 10000);
	RANGE_NONE("bytes=1", 10000);
	RANGE_NONE("bytes=1-2-3", 10000);
	RANGE_NONE("bytes=a-b", 10000);
	RANGE_NONE("bytes=1-b", 10000);
	RANGE_NONE("bytes=+1-2", 10000);
	RANGE_NONE("bytes=-+1", 10000);
	RANGE_NONE("bytes=0x10-20", 10000);
	RANGE_NONE("bytes=1.5-2", 10000);
	RANGE_NONE("bytes=0 -1", 10000);
	RANGE_NONE("bytes=0- 1", 10000);
	RANGE_NONE("bytes=- 1", 10000);
	RANGE_NONE("bytes=0-1;x", 10000);
	/* digits that overflow uint64_t */
	RANGE_NONE("bytes=18446744073709551616-", 10000);
	RANGE_NONE("bytes=0-18446744073709551616", 10000);
	RANGE_NONE("bytes=-18446744073709551616", 10000);
	RANGE_NONE("bytes=99999999999999999999-", 10000);
	RANGE_NONE("bytes=-99999999999999999999999999999999", 10000);
	RANGE_NONE("bytes=18446744073709551616-", 0);
	CHECK_EQ_INT(rtls__range_parse(NULL, 0, 10, &(uint64_t){ 0 },
				       &(uint64_t){ 0 }),
		     RTLS_RANGE_NONE);
}

/* ---- entity tags ----------------------------------------------------- */

static void test_etag_format(void)
{
	char out[RTLS_ETAG_MAX];

	CHECK_EQ_INT(rtls__etag_format(1577934245, 1000, out), 14);
	CHECK(strcmp(out, "\"5e0d5da5-3e8\"") == 0);
	CHECK_EQ_INT(rtls__etag_format(0, 0, out), 5);
	CHECK(strcmp(out, "\"0-0\"") == 0);
	/* The longest: both 64-bit fields in full. */
	CHECK_EQ_INT(rtls__etag_format((time_t)INT64_MAX, UINT64_MAX, out), 35);
	CHECK(strcmp(out, "\"7fffffffffffffff-ffffffffffffffff\"") == 0);
	/* Before 1970: clamped, still well-formed. */
	CHECK_EQ_INT(rtls__etag_format(-5, 1, out), 5);
	CHECK(strcmp(out, "\"0-1\"") == 0);
}

static int inm(const char *v)
{
	static const char tag[] = "\"5e0d5da5-3e8\"";
	size_t n = strlen(v);

	return rtls__etag_none_match(guarded(v, n), n, tag, sizeof(tag) - 1);
}

static void test_etag_none_match(void)
{
	CHECK_EQ_INT(inm("\"5e0d5da5-3e8\""), 1);
	CHECK_EQ_INT(inm("W/\"5e0d5da5-3e8\""), 1);     /* weak comparison */
	CHECK_EQ_INT(inm("*"), 1);
	CHECK_EQ_INT(inm("\"a\", \"5e0d5da5-3e8\""), 1);
	CHECK_EQ_INT(inm("\"a\",W/\"5e0d5da5-3e8\",\"b\""), 1);
	CHECK_EQ_INT(inm(" , ,\"5e0d5da5-3e8\" ,, "), 1); /* empty elements */
	CHECK_EQ_INT(inm("\"\", \"5e0d5da5-3e8\""), 1);
	CHECK_EQ_INT(inm("\"a\""), 0);
	CHECK_EQ_INT(inm("\"5e0d5da5-3e9\""), 0);
	CHECK_EQ_INT(inm("\"5e0d5da5-3e8"), 0);          /* unterminated */
	CHECK_EQ_INT(inm("5e0d5da5-3e8"), 0);            /* no quotes */
	CHECK_EQ_INT(inm("w/\"5e0d5da5-3e8\""), 0);      /* "W/" is case-sensitive */
	CHECK_EQ_INT(inm("\"5e0d5da5-3e8\" x"), 0);      /* garbage: nothing matches */
	CHECK_EQ_INT(inm("\"5e0d5da5-3e8\"\"a\""), 0);
	CHECK_EQ_INT(inm("\"a b\", \"5e0d5da5-3e8\""), 0); /* SP is not etagc */
	CHECK_EQ_INT(inm("**"), 0);
	CHECK_EQ_INT(inm("*, \"a\""), 0);
	CHECK_EQ_INT(inm(""), 0);
}

static int if_range(const char *v)
{
	static const char tag[] = "\"5e0d5da5-3e8\"", lm[] = "Thu, 02 Jan 2020 03:04:05 GMT";
	size_t n = strlen(v);

	return rtls__if_range_match(guarded(v, n), n, tag, sizeof(tag) - 1, lm, sizeof(lm) - 1);
}

static void test_if_range(void)
{
	CHECK_EQ_INT(if_range("\"5e0d5da5-3e8\""), 1);
	CHECK_EQ_INT(if_range("Thu, 02 Jan 2020 03:04:05 GMT"), 1);
	CHECK_EQ_INT(if_range("W/\"5e0d5da5-3e8\""), 0);  /* strong comparison */
	CHECK_EQ_INT(if_range("\"5e0d5da5-3e8\", \"a\""), 0); /* one tag, not a list */
	CHECK_EQ_INT(if_range("\"a\""), 0);
	CHECK_EQ_INT(if_range("Wed, 01 Jan 2020 03:04:05 GMT"), 0);
	CHECK_EQ_INT(if_range("Thursday, 02-Jan-20 03:04:05 GMT"), 0); /* exact match only */
	CHECK_EQ_INT(if_range(""), 0);
}

int main(void)
{
	guard_init();
	test_mime();
	test_date_format();
	test_date_roundtrip();
	test_date_parse();
	test_date_bad();
	test_range_ok();
	test_range_unsat();
	test_range_none();
	test_etag_format();
	test_etag_none_match();
	test_if_range();
	CHECK_DONE();
}
