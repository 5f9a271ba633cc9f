/* A text writer for the admin listener (admin.c): the Prometheus text
 * exposition format, version 0.0.4, and JSON strings, into a buffer that
 * grows. No I/O; an allocation that fails sets `oom` and later writes do
 * nothing, so a caller checks once at the end. */
#ifndef RTLS_HTTP_PROM_H
#define RTLS_HTTP_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rtls__text {
	char *buf; /* owned; NUL-terminated while len > 0 */
	size_t len, cap;
	bool oom;
};

/* Appends printf-style text. */
void rtls__text_printf(struct rtls__text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string, quotes included (control characters and
 * bytes past ASCII as \u00XX, so the output is ASCII whatever s holds). */
void rtls__text_json_str(struct rtls__text *t, const char *s);
void rtls__text_free(struct rtls__text *t);

/* "# HELP name help" (help escaped as the format asks: \\ and \n) and
 * "# TYPE name type" (counter, gauge, untyped). */
void rtls__prom_family(struct rtls__text *t, const char *name, const char *type, const char *help);
/* One sample, "name{k1="v1",k2="v2"} value": labels is NULL or
 * k1, v1, k2, v2, ..., NULL; label values are escaped (\\, \", \n). */
void rtls__prom_sample(struct rtls__text *t, const char *name, const char *const *labels,
		       uint64_t value);

#endif
