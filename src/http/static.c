/* Static files under --root. Paths are sanitized first, then opened with
 * openat2(RESOLVE_BENEATH) so that neither ".." nor a symlink can leave
 * the root, whatever the sanitizer missed (beneath.c; without openat2, a
 * walk that refuses every symlink). Bodies go out with
 * rtls_conn_write_file() (HTTP/2: as DATA frames, the same way): page
 * cache to socket, no userspace copy. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "beneath.h"
#include "internal.h"
#include "static_util.h"

static int open_beneath(const struct rtls_http_config *hc, const char *rel)
{
	return rtls__open_beneath(hc->root_fd, rel, hc->follow_symlinks);
}

static int open_status(int err, const char **why)
{
	switch (err) {
	case -ENOENT:
	case -ENOTDIR:
	case -ENAMETOOLONG:
		*why = "no such file";
		return 404;
	case -EXDEV:
	case -ELOOP:
		*why = "path leads out of the root (symlink refused)";
		return 403;
	case -EACCES:
	case -EPERM:
		*why = "permission denied";
		return 403;
	case -EMFILE:
	case -ENFILE:
	case -ENOMEM:
		/* The server's trouble, and passing: not 404, not 500. */
		*why = err == -ENOMEM ? "out of memory" : "out of file descriptors";
		return 503;
	default:
		*why = "cannot open file";
		return 500;
	}
}

/* Sends a non-error status response without a file (304, 301, 416). */
static int bodiless(rtls_conn *c, const struct hreq *q, int status, const char *extra)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, rtls__http_reason(status));

	if (status == 304)
		return rtls__http_head(c, status, q->keep_alive, extra, NO_CONTENT_LENGTH);
	return rtls__http_simple(c, status, q->keep_alive, "text/plain; charset=utf-8", extra,
				 body, (size_t)n, q->head);
}

/* If-Modified-Since: the file is not newer than the date. A date later
 * than our clock is invalid (RFC 7232 §3.3) and ignored, as nginx does:
 * otherwise a client that sent a date from the future would be told
 * "not modified" for a file changed after it asked. */
static bool unchanged_since(struct rtls_http_str v, time_t mtime)
{
	time_t ims;

	if (rtls__http_date_parse(v.p, v.n, &ims) < 0 || ims > time(NULL))
		return false;
	return mtime <= ims;
}

/* RFC 9110 §13.2.2, steps 3 and 4 (we have no If-Match or
 * If-Unmodified-Since to act on): If-None-Match decides when present, and
 * If-Modified-Since is then not looked at. Only GET and HEAD reach here. */
static bool not_modified(const struct hreq *q, const struct stat *st, const char *etag)
{
	if (q->if_none_match.n)
		return rtls__etag_none_match(q->if_none_match.p, q->if_none_match.n, etag,
					     strlen(etag)) == 1;
	return q->if_modified_since.n && unchanged_since(q->if_modified_since, st->st_mtime);
}

/* Picks what to send: 206 with [*first, *last], 416, or 200. A Range
 * under an If-Range that does not match means the client's copy is stale:
 * the whole file (RFC 9110 §13.1.5). */
static int pick_range(const struct hreq *q, uint64_t size, const char *etag, const char *lm,
		      uint64_t *first, uint64_t *last)
{
	if (!q->range.n || (q->if_range.n && !rtls__if_range_match(q->if_range.p, q->if_range.n,
								    etag, strlen(etag), lm, strlen(lm))))
		return 200;
	switch (rtls__range_parse(q->range.p, q->range.n, size, first, last)) {
	case RTLS_RANGE_OK:
		return 206;
	case RTLS_RANGE_UNSAT:
		return 416;
	case RTLS_RANGE_NONE:
	default:
		/* Ignored Range (RFC 9110 §14.2): the whole file. */
		*first = 0;
		*last = size ? size - 1 : 0;
		return 200;
	}
}

/* Serves an open regular file: 200, 206, 304 or 416. Takes ownership of fd. */
static int send_file(rtls_conn *c, const struct hreq *q, int fd, const struct stat *st,
		     const char *name)
{
	char lm[32], etag[RTLS_ETAG_MAX], extra[320], *p;
	uint64_t size = (uint64_t)st->st_size, first = 0, last = size ? size - 1 : 0;
	int status, ret;

	rtls__http_date_format(st->st_mtime, lm);
	rtls__etag_format(st->st_mtime, size, etag);
	if (not_modified(q, st, etag)) {
		close(fd);
		/* A 304 carries the ETag a 200 would have (§15.4.5). */
		snprintf(extra, sizeof(extra), "Last-Modified: %s\r\nETag: %s\r\n", lm, etag);
		return bodiless(c, q, 304, extra);
	}
	status = pick_range(q, size, etag, lm, &first, &last);
	if (status == 416) {
		close(fd);
		snprintf(extra, sizeof(extra), "Content-Range: bytes */%" PRIu64 "\r\n", size);
		return bodiless(c, q, 416, extra);
	}
	/* Appended, not snprintf'd (a thousand instructions of every file
	 * response). The most it takes: 14 + a MIME type (mime.c's longest
	 * is 42) + 17 + 29 + 8 + 39 + 24 + 21 + three 20-digit numbers and
	 * their separators + 3, under 300 of extra's 320. */
	p = rtls__http_put_str(extra, "Content-Type: ");
	p = rtls__http_put_str(p, rtls__mime_type(name, strlen(name)));
	p = rtls__http_put_str(p, "\r\nLast-Modified: ");
	p = rtls__http_put_str(p, lm);
	p = rtls__http_put_str(p, "\r\nETag: ");
	p = rtls__http_put_str(p, etag);
	p = rtls__http_put_str(p, "\r\nAccept-Ranges: bytes\r\n");
	if (status == 206) {
		p = rtls__http_put_str(p, "Content-Range: bytes ");
		p = rtls__http_put_u64(p, first);
		*p++ = '-';
		p = rtls__http_put_u64(p, last);
		*p++ = '/';
		p = rtls__http_put_u64(p, size);
		p = rtls__http_put_str(p, "\r\n");
	}
	*p = '\0';
	uint64_t len = size ? last - first + 1 : 0;
	/* The splice pipe is taken now: out of descriptors is then a 503,
	 * not a head promising a body that never comes. */
	if (!q->head && len && rtls_conn_file_ready(c) < 0) {
		close(fd);
		rtls__http_error(c, 503, "out of file descriptors (splice pipe)", q->head);
		return 1;
	}
	ret = rtls__http_head(c, status, q->keep_alive, extra, len);
	if (ret < 0 || q->head || len == 0) {
		close(fd);
		return ret;
	}
	return rtls__http_body_file(c, fd, (off_t)first, (size_t)len);
}

static bool is_index(const char *rel)
{
	size_t n = strlen(rel);

	return n >= 10 && strcmp(rel + n - 10, "index.html") == 0 && (n == 10 || rel[n - 11] == '/');
}

/* "Location: /<rel>/" with rel percent-encoded (RFC 3986 path chars). */
static int location(char *out, size_t n, const char *rel)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = (size_t)snprintf(out, n, "Location: /");

	for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
		if (o + 4 >= n)
			return -1;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~/!$&'()*+,;=:@", *p)) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o + 4 >= n)
		return -1;
	memcpy(out + o, "/\r\n", 4);
	return 0;
}

int rtls__http_static(rtls_conn *c, const struct rtls_http_config *hc, const struct hreq *q)
{
	char rel[4096], loc[4200];
	const char *why = NULL;
	struct stat st;
	int dir_hint = 0, fd, ret;
	size_t rl;

	ret = rtls__path_sanitize(q->path.p, q->path.n, rel, sizeof(rel) - 16, &dir_hint);
	if (ret < 0) {
		rtls__http_error(c, ret == -ENAMETOOLONG ? 414 : 400,
				 ret == -ENAMETOOLONG ? "path too long" : "path refused (traversal or bad escape)",
				 q->head);
		return 1;
	}
	fd = open_beneath(hc, rel);
	if (fd >= 0 && fstat(fd, &st) < 0) {
		close(fd);
		fd = -errno;
	}
	if (fd >= 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		if (!dir_hint) {
			/* "/dir" -> "/dir/" so relative links in its index work. */
			if (location(loc, sizeof(loc), rel) < 0) {
				rtls__http_error(c, 414, "path too long", q->head);
				return 1;
			}
			return bodiless(c, q, 301, loc);
		}
		/* Fits: rtls__path_sanitize() left 16 bytes of rel free. */
		rl = strlen(rel);
		snprintf(rel + rl, sizeof(rel) - rl, "%s", rl ? "/index.html" : "index.html");
		fd = open_beneath(hc, rel);
		if (fd >= 0 && fstat(fd, &st) < 0) {
			close(fd);
			fd = -errno;
		}
	}
	if (fd < 0) {
		int status = open_status(fd, &why);

		if (status == 404) {
			/* Not an error worth a log line at info level. */
			rtls_log(RTLS_LOG_DEBUG, "http: 404 %s", rel);
			return bodiless(c, q, 404, "");
		}
		rtls__http_error(c, status, why, q->head);
		return 1;
	}
	/* Not a regular file, or "file/" asked as if it were a directory. */
	if (!S_ISREG(st.st_mode) || (dir_hint && !is_index(rel))) {
		close(fd);
		return bodiless(c, q, 404, "");
	}
	return send_file(c, q, fd, &st, rel);
}
