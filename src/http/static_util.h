/* Pure helpers for static files: paths, MIME types, dates, ranges,
 * entity tags.
 * No I/O (except none), no allocation. */
#ifndef RTLS_HTTP_STATIC_UTIL_H
#define RTLS_HTTP_STATIC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Turns a request-target's path ("/a/b%20c?x=1") into a relative path under
 * the root ("a/b c"), written NUL-terminated into out[0..outsz).
 * Strips the query and fragment, percent-decodes, collapses "//" and "./",
 * and REJECTS (returns -EINVAL) any ".." segment (before or after
 * decoding, e.g. "%2e%2e"), any decoded NUL or '\\', a bad %-escape, or a
 * target that does not start with '/'. Returns -ENAMETOOLONG if out is too
 * small. On success returns the length of out (0 for the root itself, in
 * which case out is ""). A trailing '/' in the target is reported by
 * setting *dir_hint = 1 (else 0); out never ends in '/'. */
int rtls__path_sanitize(const char *target, size_t len, char *out, size_t outsz,
			int *dir_hint);

/* MIME type for a file name by its extension (case-insensitive), from a
 * built-in table; "application/octet-stream" when unknown. Text types carry
 * "; charset=utf-8". Never NULL. */
const char *rtls__mime_type(const char *name, size_t len);

/* Writes the IMF-fixdate for t ("Sun, 06 Nov 1994 08:49:37 GMT", 29 chars)
 * into out (>= 30 bytes, NUL-terminated). Returns 29. */
int rtls__http_date_format(time_t t, char *out);

/* Parses an HTTP-date in any of the three RFC 9110 §5.6.7 forms (IMF-fixdate,
 * RFC 850, asctime). Returns 0 and sets *t, or -EINVAL. */
int rtls__http_date_parse(const char *s, size_t len, time_t *t);

/* Result of rtls__range_parse(). */
enum rtls_range_result {
	RTLS_RANGE_NONE = 0,     /* no usable range: serve the whole body (200) */
	RTLS_RANGE_OK = 1,       /* single satisfiable range: 206 */
	RTLS_RANGE_UNSAT = 2,    /* syntactically valid but unsatisfiable: 416 */
};

/* Parses a Range header value against a representation of `size` bytes.
 * Only a single "bytes=" range is honoured ("a-b", "a-", "-n"); a multi-range
 * set, another unit or a malformed value gives RTLS_RANGE_NONE (RFC 9110
 * §14.2 allows ignoring Range). On RTLS_RANGE_OK sets [*first, *last]
 * inclusive, clamped to size-1. */
enum rtls_range_result rtls__range_parse(const char *v, size_t len, uint64_t size,
					 uint64_t *first, uint64_t *last);

/* Room for a tag from rtls__etag_format(), NUL included. */
#define RTLS_ETAG_MAX 40

/* Writes the strong ETag of a file of `size` bytes last modified at mtime,
 * in nginx's form, quotes included ("5f3a1b2c-1a"), NUL-terminated into
 * out[0..RTLS_ETAG_MAX). Returns its length. */
int rtls__etag_format(time_t mtime, uint64_t size, char *out);

/* If-None-Match (RFC 9110 §13.1.2): 1 if v[0..n) is "*" or a list of
 * entity-tags one of which matches etag[0..elen) by weak comparison, else
 * 0 (also for a value that does not parse). */
int rtls__etag_none_match(const char *v, size_t n, const char *etag, size_t elen);

/* If-Range (RFC 9110 §13.1.5): 1 if v[0..n) is an entity-tag strongly
 * equal to etag, or a date equal to last_modified byte for byte; else 0,
 * and the Range is to be ignored. */
int rtls__if_range_match(const char *v, size_t n, const char *etag, size_t elen,
			 const char *last_modified, size_t lmlen);

#endif
