/* Request-target path -> relative file path under the document root.
 *
 * This is the only thing standing between a request and openat(root_fd, ...),
 * so it is deliberately strict: anything that could mean "leave the root" or
 * that two layers could read differently is refused, not repaired.
 *
 * The target is decoded exactly once, one '/'-separated segment at a time,
 * and each segment is judged after decoding. That single rule catches "..",
 * "%2e%2e", ".%2E" and every other spelling of a parent reference, because
 * they all decode to the same two bytes. Encoded separators ("%2f", "%5c")
 * are refused rather than decoded: a segment must never grow a separator
 * after it has been checked. "%252e" decodes once to the literal name
 * "%2e", which is harmless. */
#include "../core/util.h"
#include "static_util.h"

#include <errno.h>
#include <limits.h>

/* Output cursor. n counts every byte we meant to write, even past the end
 * of the buffer, so that running out of room does not stop validation:
 * a bad target is -EINVAL whatever its length. Only bytes that leave room
 * for the final NUL are stored. */
struct sink {
	char *p;
	size_t cap;
	size_t n;
};

static void sink_put(struct sink *o, char c)
{
	if (o->n + 1 < o->cap)
		o->p[o->n] = c;
	o->n++;
}

/* Where the path ends: RFC 3986 §3.3, the query starts at the first '?'
 * and the fragment at the first '#' (clients should not send one, but
 * nothing after it is part of the path either). */
static size_t path_end(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '?' || s[i] == '#')
			break;
	}
	return i;
}

/* Decodes one byte of the segment at s[*i], advancing *i.
 * Returns the byte (0..255) or -EINVAL. */
static int decode_byte(const char *s, size_t end, size_t *i)
{
	int hi, lo, c;

	if (s[*i] != '%') {
		c = (unsigned char)s[(*i)++];
	} else {
		if (end - *i < 3)
			return -EINVAL;
		hi = rtls__hexval(s[*i + 1]);
		lo = rtls__hexval(s[*i + 2]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		c = hi * 16 + lo;
		*i += 3;
	}
	/* NUL would truncate the name at openat(); '/' would add a level we
	 * never checked; '\\' is a separator to some tools and proxies that
	 * may sit in front of us, so its meaning is ambiguous. */
	if (c == '\0' || c == '/' || c == '\\')
		return -EINVAL;
	return c;
}

/* Decodes the segment starting at s[*i] (just after a '/') up to the next
 * '/' or end, appending it to o. Empty and "." segments are dropped again
 * (collapsing "//" and "./"); ".." is refused. *is_dir says whether the
 * segment was one of the dropped kinds, which at the end of the path means
 * the client named a directory. Returns 0 or -EINVAL. */
static int take_segment(const char *s, size_t end, size_t *i, struct sink *o,
			int *is_dir)
{
	size_t mark = o->n, seglen = 0;
	char head[2] = { 0, 0 };
	int c;

	if (o->n > 0)
		sink_put(o, '/');
	while (*i < end && s[*i] != '/') {
		c = decode_byte(s, end, i);
		if (c < 0)
			return c;
		if (seglen < sizeof(head))
			head[seglen] = (char)c;
		seglen++;
		sink_put(o, (char)c);
	}

	if (seglen == 2 && head[0] == '.' && head[1] == '.')
		return -EINVAL;
	*is_dir = seglen == 0 || (seglen == 1 && head[0] == '.');
	if (*is_dir)
		o->n = mark;
	return 0;
}

int rtls__path_sanitize(const char *target, size_t len, char *out, size_t outsz,
			int *dir_hint)
{
	struct sink o = { out, outsz, 0 };
	size_t i = 0, end;
	int is_dir = 0, rc;

	/* Leave nothing half-written behind on failure. */
	if (outsz > 0)
		out[0] = '\0';
	if (dir_hint)
		*dir_hint = 0;
	/* Origin-form only (RFC 9112 §3.2.1); the caller turns absolute-form
	 * into origin-form before calling, and "*" is not a file. */
	if (!target || len == 0 || target[0] != '/')
		return -EINVAL;

	end = path_end(target, len);
	while (i < end) {
		i++; /* the '/' that starts every segment */
		rc = take_segment(target, end, &i, &o, &is_dir);
		if (rc < 0) {
			if (outsz > 0)
				out[0] = '\0';
			return rc;
		}
	}

	if (o.n >= outsz || o.n > (size_t)INT_MAX) {
		if (outsz > 0)
			out[0] = '\0';
		return -ENAMETOOLONG;
	}
	out[o.n] = '\0';
	if (dir_hint)
		*dir_hint = is_dir;
	return (int)o.n;
}
