/* Static files under --root. Paths are sanitized first, then opened with
 * openat2(RESOLVE_BENEATH) so that neither ".." nor a symlink can leave
 * the root, whatever the sanitizer missed (beneath.c; without openat2, a
 * walk that refuses every symlink). Bodies go out with
 * rtls_conn_write_file(): page cache to socket, no userspace copy. */
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

static bool not_modified(const struct hreq *q, const struct stat *st)
{
	time_t ims;

	if (!q->if_modified_since.n ||
	    rtls__http_date_parse(q->if_modified_since.p, q->if_modified_since.n, &ims) < 0)
		return false;
	return st->st_mtime <= ims;
}

/* Serves an open regular file: 200, 206, 304 or 416. Takes ownership of fd. */
static int send_file(rtls_conn *c, const struct hreq *q, int fd, const struct stat *st,
		     const char *name)
{
	char lm[32], extra[256];
	uint64_t size = (uint64_t)st->st_size, first = 0, last = size ? size - 1 : 0;
	int status = 200, n, ret;

	rtls__http_date_format(st->st_mtime, lm);
	if (not_modified(q, st)) {
		close(fd);
		snprintf(extra, sizeof(extra), "Last-Modified: %s\r\n", lm);
		return bodiless(c, q, 304, extra);
	}
	/* If-Range with another date means the client's copy is stale: send
	 * the whole file (RFC 9110 §13.1.5). */
	if (q->range.n && (!q->if_range.n || (q->if_range.n == strlen(lm) &&
					      memcmp(q->if_range.p, lm, q->if_range.n) == 0))) {
		switch (rtls__range_parse(q->range.p, q->range.n, size, &first, &last)) {
		case RTLS_RANGE_OK:
			status = 206;
			break;
		case RTLS_RANGE_UNSAT:
			close(fd);
			snprintf(extra, sizeof(extra), "Content-Range: bytes */%" PRIu64 "\r\n", size);
			return bodiless(c, q, 416, extra);
		case RTLS_RANGE_NONE:
		default:
			/* Ignored Range (RFC 9110 §14.2): the whole file. */
			first = 0;
			last = size ? size - 1 : 0;
			break;
		}
	}
	n = snprintf(extra, sizeof(extra), "Content-Type: %s\r\nLast-Modified: %s\r\nAccept-Ranges: bytes\r\n",
		     rtls__mime_type(name, strlen(name)), lm);
	if (status == 206)
		snprintf(extra + n, sizeof(extra) - (size_t)n,
			 "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", first, last, size);
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
	return rtls_conn_write_file(c, fd, (off_t)first, (size_t)len);
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
		strcat(rel, *rel ? "/index.html" : "index.html");
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
