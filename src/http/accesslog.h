/* The access log: one line per request, nginx's combined format with
 * ringtls's fields appended as key=value, or one JSON object a line.
 * Reactors format their lines into a ring of their own; a writer thread
 * writes the rings out, so a reactor never waits for the disk (DESIGN.md,
 * "Access log"). accesslog.c formats, alog_writer.c writes. */
#ifndef RTLS_HTTP_ACCESSLOG_H
#define RTLS_HTTP_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parser.h"
#include "ringtls/ringtls.h"

struct rtls_alog;
struct hconn;

enum rtls_alog_format { RTLS_ALOG_COMBINED = 0, RTLS_ALOG_JSON = 1 };

/* Opens path for appending (created 0644 if missing), or standard output
 * for "-". Starts the writer thread, with every signal blocked, so that
 * the program's own thread takes SIGUSR1. -errno, *out NULL. path is
 * borrowed until rtls_http_alog_close(). */
int rtls_http_alog_open(const char *path, enum rtls_alog_format fmt, struct rtls_alog **out);

/* Asks the writer to reopen the file (logrotate renamed it): the lines
 * queued before go to the old file, the rest to the new one, and one line
 * on stderr says it is done. If the reopen fails, writing goes on into
 * the old file. Returns at once; any thread, also a signal handler (an
 * atomic store and a write(2) to an eventfd). */
void rtls_http_alog_reopen(struct rtls_alog *lg);

/* Writes out every line queued, stops the writer, closes the file and
 * frees lg. Only once no reactor can log any more (after
 * rtls_server_wait()). NULL: nothing. */
void rtls_http_alog_close(struct rtls_alog *lg);

/* ---- inside src/http ---------------------------------------------------- */

/* What a line says of the connection: asked of the engine on its first
 * logged request (rtls_conn_query() makes two system calls), kept in its
 * data area. The strings are the connection's (valid until it closes). */
struct alog_conn {
	const char *tls_version, *tls_cipher, *sni, *alpn; /* or NULL */
	char ip[46];                                       /* "-" if unknown */
	uint16_t port;
	int8_t resumed;  /* 1, 0; -1 on plaintext */
	uint8_t tx_path; /* enum rtls_record_path */
	uint8_t rx_path;
	bool known;
};

/* The request a line is about, from its head being parsed (or found bad)
 * to its response being queued whole. */
struct alog_req {
	struct rtls_http_str line, referer, ua; /* views: the input, or copy */
	char *copy;     /* owned: the views' bytes, once they outlive the input */
	uint64_t t0_ns; /* CLOCK_MONOTONIC at the head */
	bool head;      /* HEAD: no body bytes, whatever the length says */
	bool pending;   /* not logged yet */
};

/* A request head at p[0..n) was parsed (r), or found bad (r NULL: the
 * line logged is its raw first line). Call only with logging on. */
void rtls__alog_begin(struct hconn *h, const char *p, size_t n, const struct rtls_http_request *r);
/* Copies the pending request's fields out of the input: a proxied
 * request is answered after its input buffer has moved on. 0, -ENOMEM. */
int rtls__alog_keep(struct hconn *h);
/* The pending request's response is queued whole: status and body bytes.
 * Formats one line into this thread's ring; nothing if none is pending. */
void rtls__alog_done(rtls_conn *c, struct hconn *h, int status, uint64_t body_bytes);
/* The connection closes: frees what rtls__alog_keep() took. */
void rtls__alog_forget(struct hconn *h);

/* alog_writer.c, for accesslog.c: the format, and queueing one formatted
 * line (ending in '\n') without blocking; a line that does not fit is
 * dropped and counted. */
enum rtls_alog_format rtls__alog_format(const struct rtls_alog *lg);
void rtls__alog_push(struct rtls_alog *lg, const char *line, size_t len);
/* This thread's scratch buffer for one line, ALOG_LINE_MAX bytes; NULL
 * when out of memory. */
#define ALOG_LINE_MAX ((size_t)160 * 1024)
char *rtls__alog_scratch(struct rtls_alog *lg);

#endif
