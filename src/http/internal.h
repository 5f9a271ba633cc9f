/* Shared by the files of src/http. */
#ifndef RTLS_HTTP_INTERNAL_H
#define RTLS_HTTP_INTERNAL_H

#include <sys/stat.h>

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
	int keep_alive;              /* CONN_* below */
};

/* What the Connection header of a response says. */
enum { CONN_CLOSE = 0, CONN_DEFAULT = 1, CONN_KEEP_ALIVE = 2 /* HTTP/1.0 */ };
#define NO_CONTENT_LENGTH UINT64_MAX

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
	bool head;               /* the current request is HEAD */
	uint64_t chunked_seen;   /* chunked body bytes so far */
};

/* response.c */
const char *rtls__http_reason(int status);
const char *rtls__http_date_now(void);
/* Writes a status line and the common headers (Server, Date, Connection)
 * plus `extra` (already CRLF-terminated lines, may be ""), then
 * Content-Length unless NO_CONTENT_LENGTH, then the blank line. */
int rtls__http_head(rtls_conn *c, int status, int keep_alive, const char *extra,
		    uint64_t content_length);
/* A complete small response with a text body. */
int rtls__http_simple(rtls_conn *c, int status, int keep_alive, const char *ctype,
		      const char *extra, const char *body, size_t body_len, bool head);
/* An error response; always Connection: close; no body after HEAD. Logs
 * one line. */
void rtls__http_error(rtls_conn *c, int status, const char *why, bool head);

/* static.c and page.c: 0 when answered, 1 when answered with an error and
 * the connection is closing, < 0 on a failure to write. */
int rtls__http_static(rtls_conn *c, const struct rtls_http_config *hc, const struct hreq *q);

/* page.c */
int rtls__http_builtin_page(rtls_conn *c, const struct hreq *q);

#endif
