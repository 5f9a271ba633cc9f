/* The HTTP/1.1 server: a ringtls handler. Used by the CLI. */
#ifndef RTLS_HTTP_HTTP_H
#define RTLS_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringtls/ringtls.h"

struct rtls_http_config {
	const char *root;        /* document root, or NULL for the built-in page */
	int root_fd;             /* O_PATH directory fd of root, or -1 */
	bool follow_symlinks;    /* allow symlinks that lead out of root */
	size_t max_head;         /* request line + headers, bytes */
	size_t max_target;       /* request-target, bytes */
	unsigned max_headers;    /* header fields per request (<= 256) */
	uint64_t max_body;       /* request body bytes we accept (and discard) */
	long (*live_tls)(void);  /* for the built-in page: SSL objects alive, or NULL */
	/* HTTP/2 (h2.c): a client that opens with its preface (after ALPN
	 * "h2" on TLS, prior knowledge on plaintext) speaks it. The listeners'
	 * ALPN offer is the caller's (rtls_listen.alpn). */
	bool http2;
	/* HTTP/2: how long a stream's DATA may wait on a window the client
	 * keeps shut while the connection is otherwise busy (PINGs), in ms;
	 * 0: 60000. The CLI sets it to the idle timeout. */
	unsigned h2_stall_ms;
	/* The reverse proxy (proxy.c): routes from --proxy, owned, freed by
	 * rtls_http_proxy_clear(). */
	struct rtls_http_route *routes;
	unsigned nroutes;
	/* --tcp-proxy (tcpproxy.c): listeners whose bytes go to upstreams
	 * as they are, owned, freed by rtls_http_tcp_clear(). */
	struct rtls_http_tcp *tcp;
	unsigned ntcp;
	unsigned proxy_keepalive; /* idle upstream conns per upstream and thread */
	/* https:// and tls:// upstreams: the client context (borrowed; set
	 * when rtls_http_upstream_tls() says one is needed), and the name
	 * every TLS upstream is verified for instead of its URL's host, or
	 * NULL (--upstream-sni). */
	struct rtls_tls_ctx *upstream_tls;
	const char *upstream_sni;
	int upstream_proxy_protocol; /* 0: none, 1: v1, 2: v2 */
	/* --access-log (accesslog.h), or NULL: none, and no cost. Borrowed. */
	struct rtls_alog *alog;
	/* --admin-listen (admin.c): requests on listener admin_listener (-1:
	 * none) get /metrics, /healthz and /status.json, nothing else; server
	 * is the one /metrics reports on (set before it starts, or NULL);
	 * stats, the HTTP layer's counters (rtls_http_stats_init), or NULL. */
	int admin_listener;
	const rtls_server *server;
	struct rtls_http_stats *stats;
};

/* Defaults: 8 KiB head, 8000-byte target, 100 headers, 1 MiB body. */
void rtls_http_config_defaults(struct rtls_http_config *hc);

/* Opens hc->root (if set) into hc->root_fd. -errno on failure. */
int rtls_http_config_open(struct rtls_http_config *hc);

/* Adds a --proxy route, "PREFIX=URL[,URL...]" (resolving host names
 * now). -1 with one line in why[0..n) if it is not one. */
int rtls_http_proxy_add(struct rtls_http_config *hc, const char *spec, char *why, size_t n);
/* Whether any route or TCP proxy has a TLS upstream. */
bool rtls_http_upstream_tls(const struct rtls_http_config *hc);
/* Frees every route. */
void rtls_http_proxy_clear(struct rtls_http_config *hc);

/* A --tcp-proxy: "LISTEN=UPSTREAM[,UPSTREAM...]", each upstream
 * "HOST:PORT", "[IPv6]:PORT" or "unix:/path" (names resolved now). -1
 * with one line in why[0..n) if it is not one. The caller adds a TLS
 * listener on rtls_http_tcp_listen(hc, i) and tells its index with
 * rtls_http_tcp_bind() before the server starts. */
int rtls_http_tcp_add(struct rtls_http_config *hc, const char *spec, char *why, size_t n);
const char *rtls_http_tcp_listen(const struct rtls_http_config *hc, unsigned i);
void rtls_http_tcp_bind(struct rtls_http_config *hc, unsigned i, unsigned listener);
void rtls_http_tcp_clear(struct rtls_http_config *hc);

/* Turns on the HTTP layer's counters (requests by status class, the
 * proxy's upstream errors), kept per reactor thread for /metrics: 0 or
 * -ENOMEM. Free them after rtls_server_destroy(). */
int rtls_http_stats_init(struct rtls_http_config *hc);
void rtls_http_stats_free(struct rtls_http_config *hc);

/* The handler; its handler_ctx must be a struct rtls_http_config. */
extern const struct rtls_handler rtls_http_handler;

#endif
