/* What h2.c and h2_proxy.c share: a connection's and a stream's state
 * (DESIGN.md "HTTP/2"). Private to those two files. */
#ifndef RTLS_HTTP_H2_INT_H
#define RTLS_HTTP_H2_INT_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

/* Stop producing DATA while this much output is queued: a client that
 * does not read holds no more than this, whatever its windows say. */
#define H2_HIGH_WATER ((size_t)256 * 1024)

struct h2px;

/* One header field, as offsets into its stream's hb. */
struct h2f {
	uint32_t no, nl, vo, vl;
};

/* A stream: its request head, then its response. */
struct h2s {
	struct h2s *next, *prev; /* in h2conn.streams */
	int32_t id;
	char *hb; /* header bytes: names and values */
	size_t hb_len, hb_cap;
	struct h2f *f;
	unsigned nf, fcap;
	struct h2f method, path, authority; /* pseudo-headers (nl 0: absent) */
	uint64_t seen;                      /* RFC 9113 §6.5.2 size so far */
	bool too_big;                       /* over max_head or max_headers */
	bool remote_done;                   /* END_STREAM received */
	bool answered;
	bool in_head;     /* its header block is still coming (h2conn.heads) */
	bool deferred;    /* its data waits for the output to drain */
	bool reset;       /* we reset it: a request body too long */
	bool too_long;    /* its body went past --max-body-bytes */
	uint64_t dropped; /* request body bytes dropped */
	/* The response, as the sink received it. */
	int status;
	char *rh; /* the extra header lines ("Name: value\r\n"...) */
	uint64_t clen;
	bool has_body;
	char *body; /* a body in memory, or */
	size_t body_len, body_off;
	int fd; /* a file range */
	uint64_t foff, fleft;
	uint64_t stall_ms; /* since when its DATA waits on its own shut window, or 0 */
	struct h2px *px;   /* a proxied stream's exchange (h2_proxy.c), or NULL */
};

struct h2conn {
	nghttp2_session *s;
	rtls_conn *c;
	struct hconn *h;
	struct h2s *streams;
	struct h2s *cur;      /* the stream being answered (the sink) */
	bool busy;            /* inside pump(): a nested drain waits */
	bool paused;          /* reading paused: output over its high water */
	bool goaway;          /* a GOAWAY has been submitted */
	bool terminated;      /* the session is ending: no stream is answered */
	bool head_timer;      /* the HEADER deadline is armed */
	bool logged;          /* the connection's error has had its log line */
	bool windows;         /* we give back request DATA windows ourselves
			    * (proxied routes: as an upstream takes it) */
	unsigned up_flushing; /* inside an upstream's flush (h2_proxy.c) */
	uint64_t stall_ms;    /* since when DATA waits on a shut window, or 0 */
	unsigned errors;      /* error responses on its streams so far */
	unsigned heads;       /* streams whose header block is not whole yet */
	char why[96];         /* nghttp2's last error message, for the log line */
};

/* h2.c */
/* Sends what nghttp2 has, then one flush; closes once neither side has
 * more to say. */
void rtls__h2_pump(struct h2conn *x);
/* Submits the response the sink received for st (HEADERS, and its DATA
 * as the windows allow). 0, or nghttp2's error. */
int rtls__h2_submit(struct h2conn *x, struct h2s *st);
void rtls__h2_log(struct h2conn *x, enum rtls_log_level lv, const char *what);
/* Submits a response whose HEADERS are nv (nghttp2 copies them) and,
 * with body, DATA from st's provider (a proxied stream's buffer). */
int rtls__h2_submit_nv(struct h2conn *x, struct h2s *st, const nghttp2_nv *nv, size_t n, bool body);

/* h2_proxy.c: a stream on a --proxy route (DESIGN.md "HTTP/2 through the
 * proxy"). */
struct rtls_http_route;
/* Starts st's exchange; 0, or -1 once st has been answered with an
 * error. The request head is in q, whose views may go after this. */
int rtls__h2px_start(struct h2conn *x, struct h2s *st, const struct rtls_http_route *rt,
		     const struct hreq *q);
/* Request DATA for st (its flow-control window is given back as the
 * upstream takes it), and the end of it (END_STREAM). */
void rtls__h2px_data(struct h2conn *x, struct h2s *st, const uint8_t *p, size_t n);
void rtls__h2px_req_end(struct h2conn *x, struct h2s *st);
/* After an input: queued request bytes leave for the upstreams, and the
 * windows of what they took are given back. */
void rtls__h2px_after_input(struct h2conn *x);
/* st's DATA provider: copies the response body that has come. */
ssize_t rtls__h2px_read(struct h2conn *x, struct h2s *st, uint8_t *buf, size_t len,
			uint32_t *flags);
/* Response body bytes st holds for the client; whether its provider has
 * something to give (bytes, or the body's end). */
uint64_t rtls__h2px_left(const struct h2s *st);
bool rtls__h2px_ready(const struct h2s *st);
/* Whether st waits on its upstream (connect, response head, body bytes)
 * rather than on the client. */
bool rtls__h2px_waits_upstream(const struct h2s *st);
/* st ends (closed, reset, or its connection gone: live false when the
 * session itself is going), or its exchange failed before a response:
 * the exchange lets go of its upstream, and st->px is freed. */
void rtls__h2px_release(struct h2conn *x, struct h2s *st, bool live);

#endif
