/* Entity tags for static files (RFC 9110 §8.8.3) and the two fields that
 * carry them back: If-None-Match (§13.1.2) and If-Range (§13.1.5).
 *
 * The tag is nginx's: hex mtime, '-', hex size. It costs nothing to make
 * (fstat already gave both), stays the same across restarts and across
 * servers that share the files, and a cache that saw nginx's tags for the
 * same files still matches. It is strong, as nginx's is: a file rewritten
 * to the same size within one second keeps its tag, the same trade-off
 * Last-Modified makes. */
#include "static_util.h"

#include <string.h>

/* v in lower-case hex at p (1 to 16 digits); returns the end. */
static char *put_hex(char *p, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";
	int shift = 60;

	while (shift > 0 && !(v >> shift))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		*p++ = hex[(v >> shift) & 15];
	return p;
}

/* By hand, not snprintf: every static response makes one, and snprintf
 * cost more than a thousand instructions of it. */
int rtls__etag_format(time_t mtime, uint64_t size, char *out)
{
	/* A time before 1970 would print as a huge unsigned number; clamp,
	 * so the tag is still well-formed and still changes with the size. */
	uint64_t t = mtime < 0 ? 0 : (uint64_t)mtime;
	char *p = out;

	*p++ = '"';
	p = put_hex(p, t);
	*p++ = '-';
	p = put_hex(p, size);
	*p++ = '"';
	*p = '\0';
	return (int)(p - out);
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* etagc = %x21 / %x23-7E / obs-text */
static int is_etagc(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* Reads one entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE at v[*i], leaving
 * *i after it and the opaque-tag (quotes included) in [*s, *e). */
static int take_etag(const char *v, size_t n, size_t *i, size_t *s, size_t *e)
{
	size_t k = *i;

	if (n - k >= 2 && v[k] == 'W' && v[k + 1] == '/')
		k += 2;
	if (k == n || v[k] != '"')
		return 0;
	*s = k++;
	while (k < n && is_etagc((unsigned char)v[k]))
		k++;
	if (k == n || v[k] != '"')
		return 0;
	*e = ++k;
	*i = k;
	return 1;
}

int rtls__etag_none_match(const char *v, size_t n, const char *etag, size_t elen)
{
	size_t i = 0, s, e;
	int found = 0;

	if (n == 1 && v[0] == '*')
		return 1; /* any current representation: there is one */
	/* #entity-tag: elements separated by commas and OWS; empty elements
	 * are allowed (RFC 9110 §5.6.1.2). A field that does not parse
	 * matches nothing, so the client gets the full response, which is
	 * never wrong. */
	while (i < n) {
		if (is_ows(v[i]) || v[i] == ',') {
			i++;
			continue;
		}
		if (!take_etag(v, n, &i, &s, &e))
			return 0;
		/* Weak comparison (§8.8.3.2): the opaque-tags alone. */
		if (e - s == elen && memcmp(v + s, etag, elen) == 0)
			found = 1;
		while (i < n && is_ows(v[i]))
			i++;
		if (i < n && v[i] != ',')
			return 0;
	}
	return found;
}

int rtls__if_range_match(const char *v, size_t n, const char *etag, size_t elen,
			 const char *last_modified, size_t lmlen)
{
	/* An entity-tag must match by the strong comparison, a date must be
	 * Last-Modified exactly (§13.1.5). Our tags are all strong, so both
	 * are plain byte equality: a weak "W/..." tag equals neither, and a
	 * tag (starting with '"') can never be mistaken for a date. */
	return (n == elen && memcmp(v, etag, n) == 0) ||
	       (n == lmlen && memcmp(v, last_modified, n) == 0);
}
