/* The Prometheus text exposition format 0.0.4 and JSON strings, written
 * into a growing buffer (prom.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

/* Room for n more bytes and the NUL. */
static bool reserve(struct rtls__text *t, size_t n)
{
	size_t cap = t->cap ? t->cap : 4096;
	char *p;

	if (t->oom)
		return false;
	if (t->len + n + 1 <= t->cap)
		return true;
	while (cap < t->len + n + 1)
		cap *= 2;
	p = realloc(t->buf, cap);
	if (!p) {
		t->oom = true;
		return false;
	}
	t->buf = p;
	t->cap = cap;
	return true;
}

static void put(struct rtls__text *t, const char *s, size_t n)
{
	if (!reserve(t, n))
		return;
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

void rtls__text_printf(struct rtls__text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(t, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

void rtls__text_json_str(struct rtls__text *t, const char *s)
{
	put(t, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char esc[8];

		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			put(t, esc, 2);
		} else if (ch < 0x20 || ch >= 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			put(t, esc, 6);
		} else {
			put(t, s, 1);
		}
	}
	put(t, "\"", 1);
}

void rtls__text_free(struct rtls__text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

/* s with the escapes the format asks for: \\ and \n always, \" in a
 * label value (the format's HELP text keeps its quotes). */
static void escaped(struct rtls__text *t, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			put(t, "\\\\", 2);
		else if (*s == '\n')
			put(t, "\\n", 2);
		else if (*s == '"' && quote)
			put(t, "\\\"", 2);
		else
			put(t, s, 1);
	}
}

void rtls__prom_family(struct rtls__text *t, const char *name, const char *type, const char *help)
{
	rtls__text_printf(t, "# HELP %s ", name);
	escaped(t, help, false);
	rtls__text_printf(t, "\n# TYPE %s %s\n", name, type);
}

void rtls__prom_sample(struct rtls__text *t, const char *name, const char *const *labels,
		       uint64_t value)
{
	put(t, name, strlen(name));
	if (labels && labels[0]) {
		put(t, "{", 1);
		for (size_t i = 0; labels[i] && labels[i + 1]; i += 2) {
			if (i)
				put(t, ",", 1);
			rtls__text_printf(t, "%s=\"", labels[i]);
			escaped(t, labels[i + 1], true);
			put(t, "\"", 1);
		}
		put(t, "}", 1);
	}
	rtls__text_printf(t, " %llu\n", (unsigned long long)value);
}
