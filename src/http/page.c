/* The built-in page served when no --root is given: it shows the visitor
 * what carried their request (transport, and for TLS the version, cipher,
 * ALPN, SNI, resumption, client certificate and record paths). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const char *path_name(enum rtls_record_path p)
{
	switch (p) {
	case RTLS_PATH_USERSPACE: return "userspace (OpenSSL)";
	case RTLS_PATH_KERNEL: return "kernel (kTLS)";
	case RTLS_PATH_NONE:
	default: return "none";
	}
}

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

/* Minimal HTML escaping for values a client controls (SNI, subject). */
static void esc(char *out, size_t n, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < n; s++) {
		const char *r = NULL;

		switch (*s) {
		case '<': r = "&lt;"; break;
		case '>': r = "&gt;"; break;
		case '&': r = "&amp;"; break;
		case '"': r = "&quot;"; break;
		default: out[o++] = *s; continue;
		}
		o += (size_t)snprintf(out + o, n - o, "%s", r);
	}
	out[o] = '\0';
}

int rtls__http_builtin_page(rtls_conn *c, const struct hreq *q)
{
	struct rtls_conn_info ci;
	char body[4096], sni[300], subj[600];
	size_t plen = q->path.n;
	const char *qm = memchr(q->path.p, '?', q->path.n);
	int n;

	if (qm)
		plen = (size_t)(qm - q->path.p);
	if (!(plen == 1 || (plen == 11 && memcmp(q->path.p, "/index.html", 11) == 0)))
		return rtls__http_simple(c, 404, q->keep_alive, "text/plain; charset=utf-8", "",
					 "404 Not Found\n", 14, q->head);
	const struct rtls_http_config *hc = rtls_conn_ctx(c);

	rtls_conn_query(c, &ci);
	esc(sni, sizeof(sni), or_dash(ci.sni));
	esc(subj, sizeof(subj), or_dash(ci.client_subject));
	n = snprintf(
		body, sizeof(body),
		"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ringtls</title></head>\n"
		"<body><h1>ringtls " RTLS_VERSION_STRING " is serving</h1>\n"
		"<p>This is the built-in page; start with <code>--root DIR</code> to serve files.</p>\n"
		"<table>\n"
		"<tr><th align=left>HTTP version</th><td id=http>%s</td></tr>\n"
		"<tr><th align=left>transport</th><td id=transport>%s</td></tr>\n"
		"<tr><th align=left>TLS version</th><td id=version>%s</td></tr>\n"
		"<tr><th align=left>cipher</th><td id=cipher>%s</td></tr>\n"
		"<tr><th align=left>ALPN</th><td id=alpn>%s</td></tr>\n"
		"<tr><th align=left>SNI</th><td id=sni>%s</td></tr>\n"
		"<tr><th align=left>session resumed</th><td id=resumed>%s</td></tr>\n"
		"<tr><th align=left>client certificate</th><td id=client>%s</td></tr>\n"
		"<tr><th align=left>records sent by</th><td id=tx>%s</td></tr>\n"
		"<tr><th align=left>records received by</th><td id=rx>%s</td></tr>\n"
		"<tr><th align=left>TLS sessions held in userspace (process)</th><td id=live_ssl>%ld</td></tr>\n"
		"</table>\n<p><a href=\"/hello\">/hello</a></p>\n</body></html>\n",
		q->h2                ? "HTTP/2"
		: q->r.minor_version ? "HTTP/1.1"
				     : "HTTP/1.0",
		ci.transport == RTLS_TRANSPORT_TLS ? "TLS" : "plaintext TCP",
		or_dash(ci.tls_version), or_dash(ci.tls_cipher), or_dash(ci.alpn), sni,
		ci.transport == RTLS_TRANSPORT_TLS ? (ci.resumed ? "yes" : "no") : "-", subj,
		path_name(ci.tx_path), path_name(ci.rx_path), hc->live_tls ? hc->live_tls() : 0L);
	if (n < 0 || (size_t)n >= sizeof(body))
		return -EOVERFLOW;
	return rtls__http_simple(c, 200, q->keep_alive, "text/html; charset=utf-8", "", body,
				 (size_t)n, q->head);
}
