/* Content-Type by file extension, from a small built-in table.
 *
 * A table in the binary rather than /etc/mime.types: the answer must not
 * change with the host it runs on, and the set a static server needs is
 * small. Lookup is linear; the table is a few dozen entries and each compare
 * fails on the first byte or the length almost every time. */
#include "static_util.h"

#include <string.h>

#define UTF8 "; charset=utf-8"

struct mime_entry {
	const char *ext;
	const char *type;
};

/* Text types carry a charset so browsers do not sniff one (RFC 9110
 * §8.3.2); so do JavaScript (RFC 9239 makes text/javascript the one to
 * use), JSON, SVG and XML, which browsers also decode as text. */
static const struct mime_entry mime_table[] = {
	{ "html", "text/html" UTF8 },
	{ "htm", "text/html" UTF8 },
	{ "css", "text/css" UTF8 },
	{ "js", "text/javascript" UTF8 },
	{ "mjs", "text/javascript" UTF8 },
	{ "json", "application/json" UTF8 },
	{ "map", "application/json" UTF8 }, /* source maps are JSON */
	{ "txt", "text/plain" UTF8 },
	{ "md", "text/markdown" UTF8 },
	{ "csv", "text/csv" UTF8 },
	{ "xml", "application/xml" UTF8 },
	{ "svg", "image/svg+xml" UTF8 },
	{ "png", "image/png" },
	{ "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" },
	{ "gif", "image/gif" },
	{ "webp", "image/webp" },
	{ "ico", "image/x-icon" },
	{ "avif", "image/avif" },
	{ "wasm", "application/wasm" }, /* streaming compile requires it */
	{ "pdf", "application/pdf" },
	{ "zip", "application/zip" },
	{ "gz", "application/gzip" },
	{ "tar", "application/x-tar" },
	{ "mp4", "video/mp4" },
	{ "webm", "video/webm" },
	{ "mp3", "audio/mpeg" },
	{ "ogg", "audio/ogg" },
	{ "woff", "font/woff" },
	{ "woff2", "font/woff2" },
	{ "ttf", "font/ttf" },
	{ "otf", "font/otf" },
};

static const char octet_stream[] = "application/octet-stream";

static char ascii_lower(char c)
{
	if (c >= 'A' && c <= 'Z')
		return (char)(c - 'A' + 'a');
	return c;
}

/* Case-insensitive compare of ext[0..n) against a lowercase literal.
 * Byte-wise ASCII folding, not tolower(): that would follow the locale. */
static int ext_eq(const char *ext, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (lit[i] == '\0' || ascii_lower(ext[i]) != lit[i])
			return 0;
	}
	return lit[n] == '\0';
}

/* The extension of the last path component: the bytes after its last '.'.
 * A leading dot names a hidden file (".bashrc"), not an extension. Returns
 * 0 when there is none, else sets *ext and *n. */
static int find_ext(const char *name, size_t len, const char **ext, size_t *n)
{
	size_t i = len;

	while (i > 0) {
		i--;
		if (name[i] == '/')
			return 0;
		if (name[i] != '.')
			continue;
		if (i == 0 || name[i - 1] == '/')
			return 0;
		*ext = name + i + 1;
		*n = len - i - 1;
		return *n > 0;
	}
	return 0;
}

const char *rtls__mime_type(const char *name, size_t len)
{
	const char *ext;
	size_t n, k;

	if (!name || !find_ext(name, len, &ext, &n))
		return octet_stream;
	for (k = 0; k < sizeof(mime_table) / sizeof(mime_table[0]); k++) {
		if (ext_eq(ext, n, mime_table[k].ext))
			return mime_table[k].type;
	}
	return octet_stream;
}
