/* Response heads, the cached Date header, and error responses. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "static_util.h"

const char *rtls__http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 416: return "Range Not Satisfiable";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* Formatting a date costs more than the rest of a /hello response, so each
 * reactor thread formats it once per second. */
const char *rtls__http_date_now(void)
{
	static _Thread_local char date[32];
	static _Thread_local time_t last;
	time_t now = time(NULL);

	if (now != last) {
		rtls__http_date_format(now, date);
		last = now;
	}
	return date;
}

/* Appends without formatting: a response head is built for every request,
 * and snprintf cost more than the rest of a /hello response. */
static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

char *rtls__http_put_str(char *p, const char *s)
{
	return put(p, s, strlen(s));
}

char *rtls__http_put_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* What every response does once its head is made: the status counters
 * and the access log line. Every response but a proxied one has its head
 * made here, and its body (if any) queued right after, in the same
 * callback. */
static void head_done(rtls_conn *c, struct hconn *h, int status, uint64_t content_length)
{
	rtls__http_count_status(c, status);
	if (h->lreq.pending)
		rtls__alog_done(c, h, status,
				content_length == NO_CONTENT_LENGTH ? 0 : content_length);
}

int rtls__http_head(rtls_conn *c, int status, int keep_alive, const char *extra,
		    uint64_t content_length)
{
	static const char *const conn_hdr[] = {
		[CONN_CLOSE] = "Connection: close\r\n",
		[CONN_DEFAULT] = "",
		[CONN_KEEP_ALIVE] = "Connection: keep-alive\r\n",
	};
	struct hconn *h = rtls_conn_data(c);
	const char *reason = rtls__http_reason(status), *conn;
	size_t elen = strlen(extra), cap = 160 + strlen(reason) + elen;
	char *start, *p;

	if (h->h2) {
		int ret = rtls__h2_head(c, h, status, extra, content_length);

		if (ret == 0)
			head_done(c, h, status, content_length);
		return ret;
	}
	start = p = rtls_conn_reserve(c, cap);
	if (!p)
		return -ENOMEM;
	conn = conn_hdr[keep_alive >= CONN_CLOSE && keep_alive <= CONN_KEEP_ALIVE ? keep_alive : 0];
	p = PUT_LIT(p, "HTTP/1.1 ");
	p = rtls__http_put_u64(p, (uint64_t)status);
	*p++ = ' ';
	p = put(p, reason, strlen(reason));
	p = PUT_LIT(p, "\r\nServer: ringtls\r\nDate: ");
	p = put(p, rtls__http_date_now(), 29);
	p = PUT_LIT(p, "\r\n");
	p = put(p, conn, strlen(conn));
	p = put(p, extra, elen);
	/* A 304 must not claim a length other than the full one (RFC 9110
	 * §8.6): it sends none. */
	if (content_length != NO_CONTENT_LENGTH) {
		p = PUT_LIT(p, "Content-Length: ");
		p = rtls__http_put_u64(p, content_length);
		p = PUT_LIT(p, "\r\n");
	}
	p = PUT_LIT(p, "\r\n");
	rtls_conn_commit(c, (size_t)(p - start));
	head_done(c, h, status, content_length);
	return 0;
}

int rtls__http_body(rtls_conn *c, const void *p, size_t n)
{
	struct hconn *h = rtls_conn_data(c);

	return h->h2 ? rtls__h2_body(h, p, n) : rtls_conn_write(c, p, n);
}

int rtls__http_body_file(rtls_conn *c, int fd, off_t off, size_t len)
{
	struct hconn *h = rtls_conn_data(c);

	return h->h2 ? rtls__h2_body_file(h, fd, off, len) : rtls_conn_write_file(c, fd, off, len);
}

int rtls__http_simple(rtls_conn *c, int status, int keep_alive, const char *ctype,
		      const char *extra, const char *body, size_t body_len, bool head)
{
	size_t clen = strlen(ctype), elen = strlen(extra);
	char hdr[512], *p = hdr;
	int ret;

	/* Not snprintf: it was an eighth of a plaintext /hello's instructions. */
	if (clen + elen + sizeof("Content-Type: \r\n") > sizeof(hdr))
		return -EOVERFLOW;
	p = PUT_LIT(p, "Content-Type: ");
	p = put(p, ctype, clen);
	p = PUT_LIT(p, "\r\n");
	memcpy(p, extra, elen + 1); /* its NUL too */
	ret = rtls__http_head(c, status, keep_alive, hdr, body_len);
	if (ret < 0 || head)
		return ret;
	return rtls__http_body(c, body, body_len);
}

void rtls__http_error(rtls_conn *c, int status, const char *why, bool head)
{
	struct hconn *h = rtls_conn_data(c);

	rtls__http_error_at(c, status, why, head, h->h2 ? rtls__h2_error_level(h) : RTLS_LOG_INFO);
}

void rtls__http_error_at(rtls_conn *c, int status, const char *why, bool head,
			 enum rtls_log_level lv)
{
	struct hconn *h = rtls_conn_data(c);
	char peer[64], body[96];
	int n;

	if (rtls_log_enabled(lv)) {
		rtls_conn_peer(c, peer, sizeof(peer));
		rtls_log(lv, "http %s: %d %s: %s", peer, status, rtls__http_reason(status), why);
	}
	n = snprintf(body, sizeof(body), "%d %s\n", status, rtls__http_reason(status));
	rtls__http_simple(c, status, CONN_CLOSE, "text/plain; charset=utf-8",
			  status == 405 ? "Allow: GET, HEAD\r\n" : "", body, (size_t)n, head);
	/* HTTP/2: the stream ends with its response; the others go on. */
	if (!h->h2)
		rtls_conn_close(c);
}
