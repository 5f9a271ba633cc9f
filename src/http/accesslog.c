/* Access log lines: what a request was, gathered when its head is parsed,
 * and its answer, when the response is queued whole; formatted on the
 * reactor thread into its scratch buffer and queued for the writer
 * (alog_writer.c).
 *
 * Whatever a client sent (request line, Referer, User-Agent, SNI) is
 * escaped so that it can neither end the line nor break out of its field:
 * in the combined format every byte outside printable ASCII, '"' and '\'
 * become \xHH (space too, in a key=value), as nginx does; in JSON, '"',
 * '\' and control bytes are escaped, valid UTF-8 passes, and each byte
 * that is not part of valid UTF-8 is written as \u00XX. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* The most of each client field a line carries: a line stays bounded
 * (ALOG_LINE_MAX) whatever max_head allows. Longer fields are cut. */
#define FIELD_MAX ((size_t)8192)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the request ---------------------------------------------------------- */

/* The first line of a head that did not parse: leading empty lines
 * skipped, up to CR, LF or the end of what came. */
static struct rtls_http_str first_line(const char *p, size_t n)
{
	size_t s = 0, e;

	while (s < n && (p[s] == '\r' || p[s] == '\n'))
		s++;
	for (e = s; e < n && p[e] != '\r' && p[e] != '\n'; e++)
		;
	return (struct rtls_http_str){ p + s, e - s };
}

void rtls__alog_begin(struct hconn *h, const char *p, size_t n, const struct rtls_http_request *r)
{
	struct alog_req *q = &h->lreq;

	free(q->copy); /* an earlier request's, if its connection was cut */
	memset(q, 0, sizeof(*q));
	q->t0_ns = now_ns();
	q->pending = true;
	if (!r) {
		q->line = first_line(p, n);
		return;
	}
	q->head = r->method.n == 4 && memcmp(r->method.p, "HEAD", 4) == 0;
	/* A parsed request line is method SP target SP "HTTP/1.x" (the
	 * parser takes single spaces only): contiguous, 9 bytes past the
	 * target. */
	q->line = (struct rtls_http_str){ r->method.p,
					  (size_t)(r->target.p + r->target.n + 9 - r->method.p) };
	for (size_t i = 0; i < r->num_headers; i++) {
		const struct rtls_http_header *f = &r->headers[i];

		if (!q->referer.p && rtls__http_str_ieq(f->name, "referer"))
			q->referer = f->value;
		else if (!q->ua.p && rtls__http_str_ieq(f->name, "user-agent"))
			q->ua = f->value;
	}
}

static struct rtls_http_str cut(struct rtls_http_str s)
{
	if (s.n > FIELD_MAX)
		s.n = FIELD_MAX;
	return s;
}

int rtls__alog_keep(struct hconn *h)
{
	struct alog_req *q = &h->lreq;
	struct rtls_http_str *f[3] = { &q->line, &q->referer, &q->ua };
	size_t len = 0;
	char *p;

	if (!q->pending || q->copy)
		return 0;
	for (int i = 0; i < 3; i++) {
		*f[i] = cut(*f[i]);
		len += f[i]->n;
	}
	p = malloc(len ? len : 1);
	if (!p) {
		q->pending = false; /* this request goes unlogged */
		return -ENOMEM;
	}
	q->copy = p;
	for (int i = 0; i < 3; i++) {
		if (!f[i]->p)
			continue;
		memcpy(p, f[i]->p, f[i]->n);
		f[i]->p = p;
		p += f[i]->n;
	}
	return 0;
}

void rtls__alog_forget(struct hconn *h)
{
	free(h->lreq.copy);
	h->lreq.copy = NULL;
	h->lreq.pending = false;
}

/* ---- the connection ------------------------------------------------------- */

/* The peer's address and port apart, as nginx's $remote_addr and
 * $remote_port; after a PROXY header, the client it named. */
static void peer_of(const struct rtls_conn_info *ci, struct alog_conn *k)
{
	if (ci->peer_len && ci->peer.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ci->peer;

		inet_ntop(AF_INET, &a->sin_addr, k->ip, sizeof(k->ip));
		k->port = ntohs(a->sin_port);
	} else if (ci->peer_len && ci->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ci->peer;

		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
			inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], k->ip, sizeof(k->ip));
		else
			inet_ntop(AF_INET6, &a->sin6_addr, k->ip, sizeof(k->ip));
		k->port = ntohs(a->sin6_port);
	}
}

static void conn_info(rtls_conn *c, struct alog_conn *k)
{
	struct rtls_conn_info ci;

	k->known = true;
	k->resumed = -1;
	strcpy(k->ip, "-");
	if (rtls_conn_query(c, &ci) < 0)
		return;
	peer_of(&ci, k);
	if (ci.transport != RTLS_TRANSPORT_TLS)
		return;
	k->tls_version = ci.tls_version;
	k->tls_cipher = ci.tls_cipher;
	k->sni = ci.sni;
	k->alpn = ci.alpn;
	k->resumed = (int8_t)(ci.resumed ? 1 : 0);
	k->tx_path = (uint8_t)ci.tx_path;
	k->rx_path = (uint8_t)ci.rx_path;
}

/* ---- writing a line ------------------------------------------------------- */

/* The line being formatted; room for every field is reserved up front
 * (ALOG_LINE_MAX bounds the worst case of the escaping), so no append
 * checks for space. */
struct out {
	char *p;
};

static const char hexd[] = "0123456789abcdef";

static void put(struct out *o, const char *s, size_t n)
{
	memcpy(o->p, s, n);
	o->p += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_hex(struct out *o, const char *pre, unsigned char ch)
{
	puts_(o, pre);
	*o->p++ = hexd[ch >> 4];
	*o->p++ = hexd[ch & 15];
}

/* Combined: printable ASCII but '"' and '\' as they are (and space,
 * unless in a key=value), the rest \xHH. At most 4 bytes per byte. */
static void put_clf(struct out *o, struct rtls_http_str s, bool kv)
{
	s = cut(s);
	for (size_t i = 0; i < s.n; i++) {
		unsigned char ch = (unsigned char)s.p[i];

		if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' || (kv && ch == ' '))
			put_hex(o, "\\x", ch);
		else
			*o->p++ = (char)ch;
	}
}

/* The length of the valid UTF-8 sequence at p[0..n) (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned lo = 0x80, hi = 0xbf;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0; /* overlong */
	else if (p[0] == 0xed)
		hi = 0x9f; /* surrogates */
	else if (p[0] == 0xf0)
		lo = 0x90; /* overlong */
	else if (p[0] == 0xf4)
		hi = 0x8f; /* past U+10FFFF */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* A JSON string (RFC 8259 §7), quotes included. At most 6 bytes per byte. */
static void put_json(struct out *o, struct rtls_http_str s)
{
	const unsigned char *p = (const unsigned char *)s.p;

	s = cut(s);
	*o->p++ = '"';
	for (size_t i = 0; i < s.n;) {
		unsigned char ch = p[i];
		size_t k;

		if (ch == '"' || ch == '\\') {
			*o->p++ = '\\';
			*o->p++ = (char)ch;
			i++;
		} else if (ch >= 0x20 && ch < 0x7f) {
			*o->p++ = (char)ch;
			i++;
		} else if (ch >= 0x80 && (k = utf8_len(p + i, s.n - i)) != 0) {
			put(o, s.p + i, k);
			i += k;
		} else {
			put_hex(o, "\\u00", ch); /* control, DEL, not UTF-8 */
			i++;
		}
	}
	*o->p++ = '"';
}

/* One of the connection's strings: SNI and ALPN come from the client
 * (at most 255 bytes each, RFC 6066 §3, RFC 7301 §3.1); the cap keeps
 * the line's worst case known whatever the TLS layer lets through. */
static struct rtls_http_str str_of(const char *s)
{
	return (struct rtls_http_str){ s, s ? strnlen(s, 255) : 0 };
}

static const char *path_name(uint8_t p)
{
	switch (p) {
	case RTLS_PATH_KERNEL:
		return "kernel";
	case RTLS_PATH_USERSPACE:
		return "userspace";
	case RTLS_PATH_NONE:
	default:
		return NULL;
	}
}

/* The time of the line, in each format, made once a second per thread:
 * local time, as nginx's $time_local and $time_iso8601. */
struct stamp {
	time_t sec;
	char clf[64]; /* 06/Dec/2026:10:00:00 +0000 */
	char iso[64]; /* 2026-12-06T10:00:00+00:00 */
};

static const struct stamp *stamp_now(void)
{
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	static _Thread_local struct stamp st;
	time_t now = time(NULL);
	struct tm tm;
	long off, oh, om;
	char sign;

	if (now == st.sec && st.clf[0])
		return &st;
	st.sec = now;
	localtime_r(&now, &tm);
	off = tm.tm_gmtoff;
	sign = off < 0 ? '-' : '+';
	off = off < 0 ? -off : off;
	oh = off / 3600;
	om = off / 60 % 60;
	snprintf(st.clf, sizeof(st.clf), "%02d/%s/%04d:%02d:%02d:%02d %c%02ld%02ld", tm.tm_mday,
		 mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, oh,
		 om);
	snprintf(st.iso, sizeof(st.iso), "%04d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 sign, oh, om);
	return &st;
}

struct fields {
	const struct alog_conn *k;
	const struct alog_req *q;
	int status;
	uint64_t bytes, us;
};

/* A client field in quotes, "-" when absent or empty. */
static void clf_quoted(struct out *o, struct rtls_http_str s)
{
	*o->p++ = '"';
	if (s.n)
		put_clf(o, s, false);
	else
		*o->p++ = '-';
	*o->p++ = '"';
}

static void clf_kv(struct out *o, const char *key, const char *v)
{
	*o->p++ = ' ';
	puts_(o, key);
	*o->p++ = '=';
	if (v && *v)
		put_clf(o, str_of(v), true);
	else
		*o->p++ = '-';
}

/* nginx's combined format, then the fields it lacks as key=value. */
static void line_combined(struct out *o, const struct fields *f)
{
	const struct alog_conn *k = f->k;
	bool tls = k->resumed >= 0;

	puts_(o, k->ip);
	puts_(o, " - - [");
	puts_(o, stamp_now()->clf);
	puts_(o, "] ");
	clf_quoted(o, f->q->line);
	*o->p++ = ' ';
	o->p = rtls__http_put_u64(o->p, (uint64_t)f->status);
	*o->p++ = ' ';
	o->p = rtls__http_put_u64(o->p, f->bytes);
	*o->p++ = ' ';
	clf_quoted(o, f->q->referer);
	*o->p++ = ' ';
	clf_quoted(o, f->q->ua);
	puts_(o, " remote_port=");
	o->p = rtls__http_put_u64(o->p, k->port);
	puts_(o, " request_time_us=");
	o->p = rtls__http_put_u64(o->p, f->us);
	clf_kv(o, "tls_version", k->tls_version);
	clf_kv(o, "tls_cipher", k->tls_cipher);
	clf_kv(o, "sni", k->sni);
	clf_kv(o, "alpn", k->alpn);
	clf_kv(o, "resumed", tls ? (k->resumed ? "1" : "0") : NULL);
	clf_kv(o, "tx_path", tls ? path_name(k->tx_path) : NULL);
	clf_kv(o, "rx_path", tls ? path_name(k->rx_path) : NULL);
	*o->p++ = '\n';
}

/* ,"key":"value" (or null when absent). */
static void json_kv(struct out *o, const char *key, struct rtls_http_str v, bool present)
{
	*o->p++ = ',';
	*o->p++ = '"';
	puts_(o, key);
	puts_(o, "\":");
	if (present)
		put_json(o, v);
	else
		puts_(o, "null");
}

static void json_num(struct out *o, const char *key, uint64_t v)
{
	*o->p++ = ',';
	*o->p++ = '"';
	puts_(o, key);
	puts_(o, "\":");
	o->p = rtls__http_put_u64(o->p, v);
}

static void line_json(struct out *o, const struct fields *f)
{
	const struct alog_conn *k = f->k;
	const struct alog_req *q = f->q;
	bool tls = k->resumed >= 0;

	puts_(o, "{\"time\":\"");
	puts_(o, stamp_now()->iso);
	*o->p++ = '"';
	json_kv(o, "remote_addr", str_of(k->ip), true);
	json_num(o, "remote_port", k->port);
	json_kv(o, "request", q->line, true);
	json_num(o, "status", (uint64_t)f->status);
	json_num(o, "body_bytes_sent", f->bytes);
	json_kv(o, "referer", q->referer, q->referer.p != NULL);
	json_kv(o, "user_agent", q->ua, q->ua.p != NULL);
	json_num(o, "request_time_us", f->us);
	json_kv(o, "tls_version", str_of(k->tls_version), k->tls_version);
	json_kv(o, "tls_cipher", str_of(k->tls_cipher), k->tls_cipher);
	json_kv(o, "sni", str_of(k->sni), k->sni);
	json_kv(o, "alpn", str_of(k->alpn), k->alpn);
	puts_(o, ",\"resumed\":");
	puts_(o, !tls ? "null" : k->resumed ? "true" : "false");
	json_kv(o, "tx_path", str_of(path_name(k->tx_path)), tls && path_name(k->tx_path));
	json_kv(o, "rx_path", str_of(path_name(k->rx_path)), tls && path_name(k->rx_path));
	puts_(o, "}\n");
}

/* The worst case of a line: three client fields at 6 bytes per byte, the
 * connection's strings (SNI at most 255 bytes, RFC 6066 §3; the others
 * short and ours) and the fixed text. */
_Static_assert(ALOG_LINE_MAX >= 3 * FIELD_MAX * 6 + (size_t)4 * 256 * 6 + 1024,
	       "a line fits the scratch buffer");

void rtls__alog_done(rtls_conn *c, struct hconn *h, int status, uint64_t body_bytes)
{
	const struct rtls_http_config *hc;
	struct alog_req *q = &h->lreq;
	struct fields f;
	struct out o;
	uint64_t t1;
	char *line;

	if (!q->pending) /* and never, without --access-log */
		return;
	hc = rtls_conn_ctx(c);
	if (!hc->alog)
		return;
	t1 = now_ns(); /* the time is the request's, not the log's */
	q->pending = false;
	line = rtls__alog_scratch(hc->alog);
	if (line) {
		if (!h->lconn.known)
			conn_info(c, &h->lconn);
		f = (struct fields){ .k = &h->lconn,
				     .q = q,
				     .status = status,
				     .bytes = q->head ? 0 : body_bytes,
				     .us = (t1 - q->t0_ns) / 1000 };
		o.p = line;
		if (rtls__alog_format(hc->alog) == RTLS_ALOG_JSON)
			line_json(&o, &f);
		else
			line_combined(&o, &f);
		rtls__alog_push(hc->alog, line, (size_t)(o.p - line));
	}
	free(q->copy);
	q->copy = NULL;
}
