/* HTTP-date (RFC 9110 §5.6.7): formatting for Date/Last-Modified, parsing
 * for If-Modified-Since/If-Unmodified-Since/If-Range.
 *
 * Day and month names are written and matched here, never through
 * strftime/strptime: those follow LC_TIME, and an HTTP-date is always
 * English and always GMT. */
#include "static_util.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static const char wday_short[7][4] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
};

static const char *const wday_long[7] = {
	"Sunday", "Monday", "Tuesday", "Wednesday",
	"Thursday", "Friday", "Saturday",
};

static const char month_short[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* The instants whose year still fits the grammar's 4DIGIT:
 * 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z. */
#define DATE_MIN INT64_C(-62167219200)
#define DATE_MAX INT64_C(253402300799)

/* ---- formatting ---------------------------------------------------- */

static char *put_str(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

static char *put_digits(char *p, int v, int width)
{
	int k;

	for (k = width - 1; k >= 0; k--) {
		p[k] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

int rtls__http_date_format(time_t t, char *out)
{
	static const char epoch[] = "Thu, 01 Jan 1970 00:00:00 GMT";
	struct tm tm;
	int64_t v = (int64_t)t;
	char *p = out;

	/* A file time past year 9999 (or before year 0) cannot be written as
	 * an IMF-fixdate. Clamping keeps the output well-formed and the return
	 * value fixed, so callers can use it as a length without a check. */
	if (v < DATE_MIN)
		t = (time_t)DATE_MIN;
	else if (v > DATE_MAX)
		t = (time_t)DATE_MAX;
	if (!gmtime_r(&t, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		/* Only reachable where time_t or gmtime_r is narrower than
		 * the clamp assumes; still never return a malformed date. */
		memcpy(out, epoch, sizeof(epoch));
		return 29;
	}

	p = put_str(p, wday_short[tm.tm_wday], 3);
	p = put_str(p, ", ", 2);
	p = put_digits(p, tm.tm_mday, 2);
	*p++ = ' ';
	p = put_str(p, month_short[tm.tm_mon], 3);
	*p++ = ' ';
	p = put_digits(p, tm.tm_year + 1900, 4);
	*p++ = ' ';
	p = put_digits(p, tm.tm_hour, 2);
	*p++ = ':';
	p = put_digits(p, tm.tm_min, 2);
	*p++ = ':';
	p = put_digits(p, tm.tm_sec, 2);
	p = put_str(p, " GMT", 4);
	*p = '\0';
	return (int)(p - out);
}

/* ---- parsing ------------------------------------------------------- */

struct cursor {
	const char *s;
	size_t len;
	size_t i;
};

/* Matches the literal lit at the cursor and advances past it. The grammar
 * makes names and "GMT" case-sensitive (%s"..." in RFC 9110). */
static int take_lit(struct cursor *c, const char *lit)
{
	size_t n = strlen(lit);

	if (c->len - c->i < n || memcmp(c->s + c->i, lit, n) != 0)
		return 0;
	c->i += n;
	return 1;
}

/* Exactly n ASCII digits (n <= 4). */
static int take_digits(struct cursor *c, int n, int *v)
{
	int k;

	if (c->len - c->i < (size_t)n)
		return 0;
	*v = 0;
	for (k = 0; k < n; k++) {
		char d = c->s[c->i + (size_t)k];

		if (d < '0' || d > '9')
			return 0;
		*v = *v * 10 + (d - '0');
	}
	c->i += (size_t)n;
	return 1;
}

static int take_month(struct cursor *c, int *mon)
{
	int k;

	for (k = 0; k < 12; k++) {
		if (take_lit(c, month_short[k])) {
			*mon = k;
			return 1;
		}
	}
	return 0;
}

/* The weekday is checked for spelling only, not against the date: RFC 9110
 * does not ask for that, and a mismatch tells us nothing a recipient could
 * act on. */
static int take_wday(struct cursor *c, int longform)
{
	int k;

	for (k = 0; k < 7; k++) {
		if (take_lit(c, longform ? wday_long[k] : wday_short[k]))
			return 1;
	}
	return 0;
}

/* time-of-day = hour ":" minute ":" second */
static int take_time(struct cursor *c, struct tm *tm)
{
	return take_digits(c, 2, &tm->tm_hour) && take_lit(c, ":") &&
	       take_digits(c, 2, &tm->tm_min) && take_lit(c, ":") &&
	       take_digits(c, 2, &tm->tm_sec);
}

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
static int parse_imf(struct cursor *c, struct tm *tm)
{
	return take_wday(c, 0) && take_lit(c, ", ") &&
	       take_digits(c, 2, &tm->tm_mday) && take_lit(c, " ") &&
	       take_month(c, &tm->tm_mon) && take_lit(c, " ") &&
	       take_digits(c, 4, &tm->tm_year) && take_lit(c, " ") &&
	       take_time(c, tm) && take_lit(c, " GMT");
}

/* RFC 9110 §5.6.7: a two-digit year more than 50 years in the future
 * means the most recent past year with the same last two digits. */
static int expand_year(int yy)
{
	time_t now = time(NULL);
	struct tm tm;
	int cur, year;

	if (now == (time_t)-1 || !gmtime_r(&now, &tm))
		return 1900 + yy; /* no clock: the historical reading */
	cur = tm.tm_year + 1900;
	year = cur - cur % 100 + yy;
	if (year > cur + 50)
		year -= 100;
	return year;
}

/* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT" */
static int parse_rfc850(struct cursor *c, struct tm *tm)
{
	int yy;

	if (!(take_wday(c, 1) && take_lit(c, ", ") &&
	      take_digits(c, 2, &tm->tm_mday) && take_lit(c, "-") &&
	      take_month(c, &tm->tm_mon) && take_lit(c, "-") &&
	      take_digits(c, 2, &yy) && take_lit(c, " ") &&
	      take_time(c, tm) && take_lit(c, " GMT")))
		return 0;
	tm->tm_year = expand_year(yy);
	return 1;
}

/* asctime-date: "Sun Nov  6 08:49:37 1994"; the day is 2DIGIT or
 * SP DIGIT. */
static int parse_asctime(struct cursor *c, struct tm *tm)
{
	if (!(take_wday(c, 0) && take_lit(c, " ") &&
	      take_month(c, &tm->tm_mon) && take_lit(c, " ")))
		return 0;
	if (!take_digits(c, 2, &tm->tm_mday) &&
	    !(take_lit(c, " ") && take_digits(c, 1, &tm->tm_mday)))
		return 0;
	return take_lit(c, " ") && take_time(c, tm) && take_lit(c, " ") &&
	       take_digits(c, 4, &tm->tm_year);
}

static int is_leap(int year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Range checks timegm() would otherwise "normalise" away (Feb 30 ->
 * Mar 2). tm_year holds the full year here. Second 60 is allowed: the
 * grammar's second is 2DIGIT and RFC 5322 permits a leap second. */
static int tm_valid(const struct tm *tm)
{
	static const int mdays[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
	};
	int dim = mdays[tm->tm_mon];

	if (tm->tm_mon == 1 && is_leap(tm->tm_year))
		dim = 29;
	return tm->tm_mday >= 1 && tm->tm_mday <= dim &&
	       tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60;
}

int rtls__http_date_parse(const char *s, size_t len, time_t *t)
{
	struct cursor c = { s, len, 0 };
	struct tm tm;
	time_t r;
	int ok, saved_errno;

	if (!s || len < 4)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	/* The fourth byte tells the forms apart: ',' after a short day name
	 * (IMF-fixdate), ' ' (asctime), or a letter of a long day name. */
	switch (s[3]) {
	case ',':
		ok = parse_imf(&c, &tm);
		break;
	case ' ':
		ok = parse_asctime(&c, &tm);
		break;
	default:
		ok = parse_rfc850(&c, &tm);
		break;
	}
	if (!ok || c.i != len || !tm_valid(&tm))
		return -EINVAL;

	tm.tm_year -= 1900;
	saved_errno = errno;
	errno = 0;
	r = timegm(&tm);
	/* -1 is also a real instant (1969-12-31T23:59:59Z); only errno
	 * (EOVERFLOW where time_t is 32 bits) says it failed. */
	ok = !(r == (time_t)-1 && errno != 0);
	errno = saved_errno;
	if (!ok)
		return -EINVAL;
	*t = r;
	return 0;
}
