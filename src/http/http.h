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
};

/* Defaults: 8 KiB head, 8000-byte target, 100 headers, 1 MiB body. */
void rtls_http_config_defaults(struct rtls_http_config *hc);

/* Opens hc->root (if set) into hc->root_fd. -errno on failure. */
int rtls_http_config_open(struct rtls_http_config *hc);

/* The handler; its handler_ctx must be a struct rtls_http_config. */
extern const struct rtls_handler rtls_http_handler;

#endif
