/* Shared by the files of src/http. */
#ifndef RTLS_HTTP_INTERNAL_H
#define RTLS_HTTP_INTERNAL_H

#include <stdatomic.h>
#include <sys/stat.h>

#include "accesslog.h"
#include "http.h"
#include "parser.h"

#define HTTP_MAX_HEADERS 256

/* A parsed request with the headers the server acts on picked out. */
struct hreq {
	struct rtls_http_request r;
	struct rtls_http_str path;   /* target without scheme/authority */
	struct rtls_http_str host;
	struct rtls_http_str range;
	struct rtls_http_str if_modified_since;
	struct rtls_http_str if_range;
	struct rtls_http_str if_none_match;
	uint64_t content_length;
	bool has_content_length;
	bool chunked;
	bool head;                   /* HEAD: no body in the response */
	bool h2;                     /* came on an HTTP/2 stream (h2.c) */
	int keep_alive;              /* CONN_* below */
};

/* What a connection's ALPN says of HTTP/2 (hconn.tls_alpn): nothing
 * (plaintext: the client's first bytes decide), or, on TLS, h2 or not. */
enum { TLS_ALPN_NONE = 0, TLS_ALPN_H2 = 1, TLS_ALPN_H1 = 2 };

/* What the Connection header of a response says. */
enum { CONN_CLOSE = 0, CONN_DEFAULT = 1, CONN_KEEP_ALIVE = 2 /* HTTP/1.0 */ };
#define NO_CONTENT_LENGTH UINT64_MAX

/* One upstream server of a route (proxy.c). */
struct rtls_http_upstream {
	char addr[128];                 /* for rtls_conn_connect(): "IP:PORT", "unix:/path" */
	char name[128];                 /* as the URL gave it, for log lines */
	char host[128];                 /* https://, tls://: the URL's host, the
					 * name verified (and sent as SNI) */
	bool tls;                       /* https:// or tls:// */
	_Atomic uint64_t down_until_ms; /* passive health: skipped until then */
};

/* A --proxy route. */
struct rtls_http_route {
	char *prefix;
	size_t prefix_len;
	struct rtls_http_upstream *ups;
	unsigned nups;
	_Atomic unsigned rr; /* round robin */
};

/* A --tcp-proxy listener (proxy.c parses it, tcpproxy.c serves it). */
struct rtls_http_tcp {
	char *listen;              /* LISTEN, owned */
	int listener;              /* its index in rtls_config.listeners, or -1 */
	struct rtls_http_route rt; /* its upstreams (no prefix) */
};

/* How one side of a --tcp-proxy session ended (tcpproxy.c). */
enum tend {
	TEND_NONE = 0,     /* still open */
	TEND_CLOSE_NOTIFY, /* a TLS peer: close_notify, then FIN */
	TEND_FIN,          /* a plain upstream: FIN */
	TEND_TRUNCATED,    /* the client: FIN without close_notify */
	TEND_CLOSED,       /* we closed it, both directions done */
	TEND_TIMEOUT,      /* the idle deadline */
	TEND_REFUSED,      /* the upstream: the connect failed */
	TEND_RESET,        /* we reset it: the other side ended abnormally */
	TEND_ERROR,        /* an error ended it (err says which) */
};

/* A --tcp-proxy session's record, for its one log line: kept by the
 * client's side, handed to the upstream's if the client goes first. */
struct tsess {
	char client[64];
	const struct rtls_http_upstream *up;
	uint64_t t0_ms;
	uint64_t to_up, to_client;                 /* plaintext bytes copied each way */
	uint64_t to_up_spliced, to_client_spliced; /* moved by splice */
	uint8_t client_end, up_end;                /* enum tend */
	int client_err, up_err;
};

/* Either side's data area in a --tcp-proxy session (tcpproxy.c). */
struct tside {
	rtls_conn *self;
	rtls_conn *other;                  /* the partner; NULL once it has gone */
	const struct rtls_http_tcp *route; /* the client's */
	struct rtls_http_upstream *srv;    /* the upstream's server */
	struct tsess s;                    /* valid while logs */
	uint8_t tries;                     /* the client's connects so far */
	bool upstream;                     /* this side is the upstream connection */
	bool opened;                       /* the upstream: its connect completed */
	bool logs;                         /* this side holds the record and logs it */
	bool eof_in;                       /* its peer ended its direction */
	bool wr_shut;                      /* we ended our direction to its peer */
	bool fwd_retry;                    /* its forward found it paused: again
					    * once the other side has drained */
};

/* The HTTP handler's on_open hands a --tcp-proxy listener's connection
 * over to the TCP proxy: 1 if c is one (*ret: its on_open result), 0 if
 * it is not. */
int rtls__tcp_open(rtls_conn *c, unsigned listener, int *ret);

/* An upstream connection's data area (proxy_exch.c). */
struct uconn {
	struct uconn *next, *prev; /* in its thread's idle pool */
	rtls_conn *self;
	rtls_conn *client; /* whose exchange uses it; NULL when idle */
	void *stream;      /* and, for HTTP/2, which stream's (struct h2s) */
	const struct rtls_http_upstream *srv;
	bool pooled;
	bool opened; /* its connect completed */
};

/* Where a proxied exchange is (proxy_exch.c, DESIGN.md "Reverse proxy"). */
enum pstate {
	PX_NONE = 0, /* no exchange */
	PX_CONNECT,  /* waiting for an upstream connection */
	PX_HEAD,     /* request head sent; waiting for the response head */
	PX_BODY,     /* response head sent to the client; body streaming */
	PX_TUNNEL,   /* after a 101: bytes both ways */
};

/* A proxied request in flight, inside the client's data area: it stays
 * readable until the callback that ended either side returns. */
struct pexch {
	enum pstate st;
	rtls_conn *up; /* the upstream connection, or NULL */
	const struct rtls_http_route *route;
	struct rtls_http_upstream *srv;
	char *head; /* request head for the upstream (owned) */
	size_t head_len;
	char *rin; /* partial response head (owned) */
	size_t rin_len;
	/* request body */
	uint64_t req_left; /* Content-Length bytes still to forward */
	struct rtls_http_chunked req_chunk;
	uint64_t req_sent; /* body bytes written upstream */
	/* response body */
	uint64_t resp_left;
	struct rtls_http_chunked resp_chunk;
	int body; /* enum rtls_http_body of the response */
	uint8_t tries;
	bool req_chunked, req_done;
	bool reused; /* the upstream came from the pool */
	bool idempotent, head_req, client10, client_close, upgrade;
	bool up_close; /* the upstream will not keep the connection */
	bool rechunk;  /* a close-delimited body sent to the client chunked */
	bool resp_done;
	bool wait_up_drain;     /* client input held until the upstream drains */
	bool wait_client_drain; /* upstream paused until the client drains */
	int status;             /* the response's, for the access log */
	uint64_t resp_bytes;    /* response body bytes queued for the client */
	/* Bodies of known length moved by splice (rtls_conn_forward_n()):
	 * the rest of the request body, client to upstream, and of the
	 * response body, upstream to client. *_fwd0: the source's
	 * rtls_conn_forwarded() when it began. */
	bool req_fwd, resp_fwd;
	uint64_t req_fwd0, resp_fwd0;
};

/* What the forwarding fields say of a client, found on its first
 * proxied request (proxy_exch.c). */
struct hfwd {
	char ip[46]; /* INET6_ADDRSTRLEN */
	bool v6, tls, known;
};

/* Per-connection state (the engine's handler data area). */
struct hconn {
	char *in;                /* unparsed input kept across reads */
	size_t in_len, in_cap;
	uint64_t body_left;      /* Content-Length body bytes still to skip */
	struct rtls_http_chunked chunk;
	bool in_chunked;
	bool head_timer;         /* HEADER deadline armed for this request */
	bool wait_drain;         /* stopped parsing until output drains */
	bool closing;            /* last response written; close after it */
	bool shutting;           /* server shutdown asked us to finish */
	bool eof;
	bool gone;               /* on_close ran */
	bool busy;               /* process() is running */
	bool again;              /* a resume was asked for while busy */
	bool head;               /* the current request is HEAD */
	bool admin;              /* on the admin listener (admin.c) */
	bool h1;                 /* a request has been parsed as HTTP/1.x */
	uint8_t tls_alpn;        /* TLS_ALPN_*: what ALPN decided, on TLS */
	struct h2conn *h2;       /* HTTP/2 (h2.c): the session, or NULL */
	uint64_t chunked_seen;   /* chunked body bytes so far */
	struct pexch x;          /* a proxied request in flight (x.st != PX_NONE) */
	struct hfwd fwd;
	struct alog_req lreq; /* the access log's (accesslog.h) */
	struct alog_conn lconn;
};

/* request.c: the part of answering a request that HTTP/1.1 and HTTP/2
 * share, once its head is judged: the method, then the admin listener,
 * /hello, a file or the built-in page. 0 when answered, 1 when answered
 * with an error (on HTTP/1.1 the connection is then closing), < 0 on a
 * failure to write. */
int rtls__http_dispatch(rtls_conn *c, struct hconn *h, const struct rtls_http_config *hc,
			struct hreq *q);
/* Picks out the fields the server acts on (Host, Content-Length, ...):
 * 0, or a status (400, 413, 501) with *why. */
int rtls__http_scan_headers(struct hreq *q, const char **why);

/* response.c */
const char *rtls__http_reason(int status);
const char *rtls__http_date_now(void);
/* Writes v in decimal (at most 20 digits, no terminator) at p; returns
 * the end of what it wrote. */
char *rtls__http_put_u64(char *p, uint64_t v);
/* Copies s without its NUL; returns the end. The caller has made room. */
char *rtls__http_put_str(char *p, const char *s);
/* Writes a status line and the common headers (Server, Date, Connection)
 * plus `extra` (already CRLF-terminated lines, may be ""), then
 * Content-Length unless NO_CONTENT_LENGTH, then the blank line. */
int rtls__http_head(rtls_conn *c, int status, int keep_alive, const char *extra,
		    uint64_t content_length);
/* A complete small response with a text body. */
int rtls__http_simple(rtls_conn *c, int status, int keep_alive, const char *ctype,
		      const char *extra, const char *body, size_t body_len, bool head);
/* An error response; no body after HEAD. Logs one line. On HTTP/1.1
 * always Connection: close, and the connection closes; on HTTP/2 only the
 * stream ends. */
void rtls__http_error(rtls_conn *c, int status, const char *why, bool head);
/* The same, its line at lv: an upstream's failure is logged each time,
 * not only as a connection's first stream error. */
void rtls__http_error_at(rtls_conn *c, int status, const char *why, bool head,
			 enum rtls_log_level lv);
/* A response body after rtls__http_head(): bytes (copied), or len bytes
 * of file fd from off (fd owned from now on, as rtls_conn_write_file()).
 * On HTTP/2 they become the stream's DATA frames. */
int rtls__http_body(rtls_conn *c, const void *p, size_t n);
int rtls__http_body_file(rtls_conn *c, int fd, off_t off, size_t len);

/* h2.c: HTTP/2 on a connection (DESIGN.md "HTTP/2"). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24
/* Whether p[0..n) begins the client preface: 1 whole, 0 not, -1 too
 * short to tell. */
int rtls__h2_preface(const char *p, size_t n);
/* Turns c into an HTTP/2 connection and feeds it p[0..n) (the preface
 * first). 0, or -ENOMEM (the caller closes). */
int rtls__h2_start(rtls_conn *c, struct hconn *h, const char *p, size_t n);
/* The handler's callbacks while h->h2 is set (server.c passes them on). */
void rtls__h2_input(rtls_conn *c, struct hconn *h, const char *p, size_t n);
void rtls__h2_drained(rtls_conn *c, struct hconn *h);
void rtls__h2_eof(rtls_conn *c, struct hconn *h);
void rtls__h2_timeout(rtls_conn *c, struct hconn *h, enum rtls_timer t);
int rtls__h2_shutdown(rtls_conn *c, struct hconn *h);
void rtls__h2_close(struct hconn *h);
/* The response sink of the stream being answered (response.c). */
int rtls__h2_head(rtls_conn *c, struct hconn *h, int status, const char *extra,
		  uint64_t content_length);
int rtls__h2_body(struct hconn *h, const void *p, size_t n);
int rtls__h2_body_file(struct hconn *h, int fd, off_t off, size_t len);
/* The level of an error response's log line: info for a connection's
 * first, debug after. */
enum rtls_log_level rtls__h2_error_level(struct hconn *h);

/* static.c and page.c: 0 when answered, 1 when answered with an error and
 * the connection is closing, < 0 on a failure to write. */
int rtls__http_static(rtls_conn *c, const struct rtls_http_config *hc, const struct hreq *q);

/* proxy.c */
/* The route whose prefix is the longest that starts path, or NULL. */
const struct rtls_http_route *rtls__proxy_route(const struct rtls_http_config *hc,
						struct rtls_http_str path);
/* A server of rt to try next: round robin over those not marked down,
 * skipping `skip` (the one that just failed). NULL if none is up. */
struct rtls_http_upstream *rtls__proxy_pick(const struct rtls_http_route *rt,
					    const struct rtls_http_upstream *skip);
/* Marks srv down for a while, after a refused or timed-out connect;
 * true if it was up until now. */
bool rtls__proxy_mark_down(struct rtls_http_upstream *srv);
/* The idle pool of this thread: an open upstream connection to srv, or
 * NULL; and giving one back (closed if the pool is full). */
rtls_conn *rtls__pool_take(const struct rtls_http_upstream *srv);
void rtls__pool_put(rtls_conn *u, const struct rtls_http_config *hc);
void rtls__pool_remove(struct uconn *u);

/* proxy_exch.c */
struct hreq;
/* Starts proxying request q (its head is p[0..head_len)) to route rt.
 * Returns 0 (the exchange runs; its body follows through
 * rtls__proxy_input), or -1 after answering an error. */
int rtls__proxy_start(rtls_conn *c, struct hconn *h, const struct rtls_http_route *rt,
		      const struct hreq *q);
/* Client bytes while an exchange runs (request body, tunnel). Returns
 * how many it took; the caller keeps the rest for later. */
size_t rtls__proxy_input(rtls_conn *c, struct hconn *h, const char *p, size_t n);
/* The client's on_drained, on_eof, on_close, on_shutdown parts. */
void rtls__proxy_client_drained(rtls_conn *c, struct hconn *h);
void rtls__proxy_client_gone(rtls_conn *c, struct hconn *h);
/* The client's timer expired while an exchange runs. */
void rtls__proxy_client_timeout(rtls_conn *c, struct hconn *h);
/* The client's on_forwarded: the request body has gone upstream. */
void rtls__proxy_client_forwarded(rtls_conn *c, struct hconn *h);
/* The upstream connections' handler. */
extern const struct rtls_handler rtls__upstream_handler;
/* What the HTTP/1.1 and HTTP/2 exchanges share. The largest upstream
 * response head: */
#define PROXY_MAX_RESP_HEAD ((size_t)32 * 1024)
/* The head the upstream gets for q (rtls__proxy_build_head: its length,
 * or -1 if it does not fit n); whether field i of hdrs is forwarded (not
 * hop-by-hop); the PROXY header ahead of a new plaintext upstream's
 * first request (0, or -1). */
long rtls__proxy_build_head(char *buf, size_t n, rtls_conn *c, const struct hreq *q, bool upgrade,
			    struct rtls_http_str upgrade_v);
bool rtls__proxy_forwarded_field(const struct rtls_http_header *hdrs, size_t nh, size_t i);
int rtls__proxy_pp_send(rtls_conn *c, rtls_conn *u, const struct rtls_http_config *hc,
			const struct rtls_http_upstream *srv, bool reused);
/* Feeds upstream bytes p[0..n) to a response head, kept in *rin (up to
 * PROXY_MAX_RESP_HEAD) while it spans reads. Returns how many bytes of p
 * the head took (r is parsed), 0 if more is needed, or < 0 (a parse
 * error, -ENOMEM): rtls__proxy_head_error() says it for the log. */
long rtls__proxy_head_feed(char **rin, size_t *rin_len, const char *p, size_t n,
			   const struct rtls_http_limits *lim, struct rtls_http_response *r);
const char *rtls__proxy_head_error(long err);
/* h2_proxy.c: the upstream callbacks of a connection serving an HTTP/2
 * stream (uconn.stream set). */
void rtls__h2px_up_open(rtls_conn *u, struct uconn *ud);
void rtls__h2px_up_data(rtls_conn *u, struct uconn *ud, struct rtls_buf *b);
void rtls__h2px_up_eof(rtls_conn *u, struct uconn *ud);
void rtls__h2px_up_timeout(rtls_conn *u, struct uconn *ud, enum rtls_timer t);
void rtls__h2px_up_close(rtls_conn *u, struct uconn *ud, int err);
void rtls__h2px_up_drained(rtls_conn *u, struct uconn *ud);

/* server.c: carries on with input held back while an exchange ran. */
void rtls__http_resume(rtls_conn *c, struct hconn *h);

/* page.c */
int rtls__http_builtin_page(rtls_conn *c, const struct hreq *q);

/* admin.c: whether c came in on the admin listener (asked once, at
 * on_open); a request there (as static.c answers); and the counters:
 * a response's status, an exchange that failed with status in state st. */
bool rtls__http_is_admin(const struct rtls_http_config *hc, unsigned listener);
/* CLOCK_MONOTONIC in milliseconds (proxy.c). */
uint64_t rtls__http_now_ms(void);
/* rtls_conn_connect() to u, with TLS for an https:// or tls:// upstream. */
int rtls__upstream_connect(rtls_conn *near, const struct rtls_http_config *hc,
			   const struct rtls_http_upstream *u, const struct rtls_handler *h,
			   void *arg, rtls_conn **out);
int rtls__http_admin(rtls_conn *c, const struct rtls_http_config *hc, const struct hreq *q);
void rtls__http_count_status(rtls_conn *c, int status);
void rtls__http_count_upstream(rtls_conn *c, int status, int st);

#endif
