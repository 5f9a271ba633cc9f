/* The --config file: YAML read with libyaml's event parser, as h2o reads
 * its own configuration. The document is a mapping whose keys are the long
 * options of `ringtls serve` without their dashes: a flag takes a boolean,
 * an option with a value takes a scalar (the text the command line takes,
 * parsed by the same functions in options.c), listen and tls-listen take a
 * list or one address, and `certificates` a list of {cert, key} mappings.
 *
 * A config file is input: it must be a regular file of at most
 * CLI_CONFIG_MAX_BYTES; anchors and aliases are refused (no "billion
 * laughs" document is ever expanded), and nesting stops at
 * CLI_CONFIG_MAX_DEPTH. Every problem is one line, FILE:LINE:COL: what.
 * Reading goes on after a bad setting, so that all of them are listed,
 * and stops at a syntax error, an anchor or alias, or too deep a node. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "core/internal.h" /* rtls__parse_addr: the address syntax the listeners take */

struct loader {
	yaml_parser_t p;
	yaml_event_t ev; /* the current event, while have_ev */
	bool have_ev;
	bool stop; /* read no further: a syntax error, an alias, too deep */
	const char *file;
	struct cli_opts *o;
	struct cli_at seen[CLI_NOPTS + 1]; /* where each key was given; the last: certificates */
};

static struct cli_at at_of(yaml_mark_t m)
{
	return (struct cli_at){ (unsigned)m.line + 1, (unsigned)m.column + 1 };
}

/* A reload (SIGHUP) says one line whatever went wrong: while capturing,
 * the first problem is kept and the others only counted. Only the thread
 * that parses (the main thread at start, the signal thread later) says
 * anything here. */
static struct {
	char *buf;
	size_t n;
	unsigned count;
} capture;

void cli_say_capture(char *buf, size_t n)
{
	capture.buf = buf;
	capture.n = n;
	capture.count = 0;
	if (buf && n)
		buf[0] = '\0';
}

unsigned cli_say_captured(void)
{
	unsigned n = capture.count;

	capture.buf = NULL;
	capture.n = 0;
	capture.count = 0;
	return n;
}

/* Appends s to out[0..n) with control characters as '?'. */
static size_t put_clean(char *out, size_t n, size_t at, const char *s)
{
	for (; *s && at + 1 < n; s++) {
		char c = *s;

		if ((unsigned char)c < 0x20 || c == 0x7f)
			c = '?';
		out[at++] = c;
	}
	if (n)
		out[at < n ? at : n - 1] = '\0';
	return at;
}

/* One line, whatever bytes the file put into the message. */
void cli_config_say(const char *file, struct cli_at at, const char *msg)
{
	char prefix[4200], line[8400];

	if (at.line)
		snprintf(prefix, sizeof(prefix), "%s:%u:%u: ", file, at.line, at.col);
	else
		snprintf(prefix, sizeof(prefix), "%s", capture.buf ? "" : "ringtls: ");
	if (capture.buf) {
		if (capture.count++ == 0)
			put_clean(capture.buf, capture.n,
				  put_clean(capture.buf, capture.n, 0, prefix), msg);
		return;
	}
	put_clean(line, sizeof(line), put_clean(line, sizeof(line), 0, prefix), msg);
	fprintf(stderr, "%s\n", line);
}

void cli_say(const char *fmt, ...)
{
	char msg[4400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cli_config_say(NULL, (struct cli_at){ 0, 0 }, msg);
}

static void problem(struct loader *l, yaml_mark_t m, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (l->stop)
		return;
	if (l->o->problems == CLI_CONFIG_MAX_PROBLEMS) {
		if (!capture.buf)
			fprintf(stderr, "%s: more than %d problems; the rest are not listed\n",
				l->file, CLI_CONFIG_MAX_PROBLEMS);
		l->stop = true;
		return;
	}
	l->o->problems++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cli_config_say(l->file, at_of(m), msg);
}

static void syntax_error(struct loader *l)
{
	const yaml_parser_t *p = &l->p;

	if (p->error == YAML_MEMORY_ERROR)
		problem(l, p->mark, "out of memory");
	else if (p->error == YAML_READER_ERROR)
		problem(l, p->mark, "%s (byte %zu)", p->problem ? p->problem : "unreadable",
			p->problem_offset);
	else if (p->context)
		problem(l, p->problem_mark, "%s (%s at line %zu, column %zu)", p->problem,
			p->context, p->context_mark.line + 1, p->context_mark.column + 1);
	else
		problem(l, p->problem_mark, "%s", p->problem ? p->problem : "syntax error");
	l->stop = true;
}

static bool has_anchor(const yaml_event_t *e)
{
	switch (e->type) {
	case YAML_ALIAS_EVENT:
		return true;
	case YAML_SCALAR_EVENT:
		return e->data.scalar.anchor != NULL;
	case YAML_SEQUENCE_START_EVENT:
		return e->data.sequence_start.anchor != NULL;
	case YAML_MAPPING_START_EVENT:
		return e->data.mapping_start.anchor != NULL;
	default:
		return false;
	}
}

/* The next event into l->ev; false once reading has stopped. */
static bool next(struct loader *l)
{
	if (l->have_ev)
		yaml_event_delete(&l->ev);
	l->have_ev = false;
	if (l->stop)
		return false;
	if (!yaml_parser_parse(&l->p, &l->ev)) {
		syntax_error(l);
		return false;
	}
	l->have_ev = true;
	if (has_anchor(&l->ev)) {
		problem(l, l->ev.start_mark,
			"anchors and aliases (&, *) are not allowed in a ringtls config");
		l->stop = true;
		return false;
	}
	return true;
}

/* Consumes the node that starts at l->ev, up to its last event. depth:
 * how deep the node is. */
static void skip(struct loader *l, unsigned depth)
{
	unsigned d = 0;

	do {
		switch (l->ev.type) {
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (depth + ++d > CLI_CONFIG_MAX_DEPTH) {
				problem(l, l->ev.start_mark, "nested deeper than %d levels",
					CLI_CONFIG_MAX_DEPTH);
				l->stop = true;
				return;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			d--;
			break;
		default:
			break;
		}
	} while (d > 0 && next(l));
}

static const char *what(const yaml_event_t *e)
{
	switch (e->type) {
	case YAML_SEQUENCE_START_EVENT:
		return "a list";
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	default:
		return "a value";
	}
}

static bool is_scalar(const yaml_event_t *e)
{
	return e->type == YAML_SCALAR_EVENT;
}

/* A plain empty, ~ or null scalar: no value. */
static bool is_null(const yaml_event_t *e)
{
	const char *v = (const char *)e->data.scalar.value;

	return e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (!*v || strcmp(v, "~") == 0 || strcasecmp(v, "null") == 0);
}

/* The scalar's text, kept until cli_opts_free(); NULL after a problem. */
static const char *text(struct loader *l, const char *name)
{
	const yaml_event_t *e = &l->ev;
	const char *v = (const char *)e->data.scalar.value, *s;
	size_t n = e->data.scalar.length;

	if (is_null(e)) {
		problem(l, e->start_mark, "%s: needs a value", name);
		return NULL;
	}
	if (memchr(v, '\0', n)) {
		problem(l, e->start_mark, "%s: a NUL byte in the value", name);
		return NULL;
	}
	s = cli_opts_strdup(l->o, v, n);
	if (!s)
		problem(l, e->start_mark, "out of memory");
	return s;
}

static void apply(struct loader *l, int opt, const char *arg, yaml_mark_t m)
{
	char err[512];

	if (cli_opt_apply(l->o, opt, arg, false, err, sizeof(err)) < 0)
		problem(l, m, "%s", err);
	else
		l->o->at[opt - CLI_OPT_BASE] = at_of(m);
}

static void flag(struct loader *l, int opt, const char *name)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	const char *v;

	if (!is_scalar(&l->ev)) {
		problem(l, l->ev.start_mark, "%s: expected true or false, not %s", name,
			what(&l->ev));
		skip(l, 1);
		return;
	}
	v = (const char *)l->ev.data.scalar.value;
	if (memchr(v, '\0', l->ev.data.scalar.length)) { /* "yes\0x" is not yes */
		problem(l, l->ev.start_mark, "%s: a NUL byte in the value", name);
		return;
	}
	for (unsigned i = 0; i < 3; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			apply(l, opt, NULL, l->ev.start_mark);
			return;
		}
		if (strcasecmp(v, no[i]) == 0)
			return;
	}
	problem(l, l->ev.start_mark, "%s: expected true or false: '%s'", name, v);
}

static void value(struct loader *l, int opt, const char *name)
{
	const char *v;

	if (!is_scalar(&l->ev)) {
		problem(l, l->ev.start_mark, "%s: expected one value, not %s", name, what(&l->ev));
		skip(l, 1);
		return;
	}
	if ((v = text(l, name)) != NULL)
		apply(l, opt, v, l->ev.start_mark);
}

static void address(struct loader *l, int opt, const char *name)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[512];
	const char *v = text(l, name);

	if (!v)
		return;
	if (rtls__parse_addr(v, &ss, &len) < 0)
		problem(l, l->ev.start_mark,
			"%s %s: not an ADDR:PORT (like 127.0.0.1:80, [::1]:443 or :8080)", name, v);
	else if (cli_opt_apply(l->o, opt, v, false, err, sizeof(err)) < 0)
		problem(l, l->ev.start_mark, "%s", err);
	else
		l->o->listen_at[l->o->nlisten - 1] = at_of(l->ev.start_mark);
}

/* One entry of a list: listen and tls-listen take addresses; proxy and
 * proxy-protocol-from are checked by the option itself. */
static void entry(struct loader *l, int opt, const char *name, bool addr)
{
	char err[512];
	const char *v;

	if (addr) {
		address(l, opt, name);
		return;
	}
	if ((v = text(l, name)) != NULL && cli_opt_apply(l->o, opt, v, false, err, sizeof(err)) < 0)
		problem(l, l->ev.start_mark, "%s", err);
}

/* listen, tls-listen, proxy, proxy-protocol-from: a list, or one value. */
static void list(struct loader *l, int opt, const char *name)
{
	bool addr = strcmp(name, "listen") == 0 || strcmp(name, "tls-listen") == 0;
	const char *one = addr ? "an address" : "a value";
	const char *many = addr ? "a list of addresses" : "a list of values";

	if (is_scalar(&l->ev)) {
		entry(l, opt, name, addr);
		return;
	}
	if (l->ev.type != YAML_SEQUENCE_START_EVENT) {
		problem(l, l->ev.start_mark, "%s: expected %s or %s, not %s", name, one, many,
			what(&l->ev));
		skip(l, 1);
		return;
	}
	while (next(l) && l->ev.type != YAML_SEQUENCE_END_EVENT) {
		if (is_scalar(&l->ev)) {
			entry(l, opt, name, addr);
			continue;
		}
		problem(l, l->ev.start_mark, "%s: expected %s, not %s", name, one, what(&l->ev));
		skip(l, 2);
	}
}

/* One {cert: FILE, key: FILE} entry of `certificates`. */
static void pair(struct loader *l)
{
	static const char *const names[] = { "cert", "key" };
	yaml_mark_t start = l->ev.start_mark, marks[2] = { start, start };
	const char *files[2] = { NULL, NULL };
	bool given[2] = { false, false };
	enum cli_kind kind;

	while (next(l) && l->ev.type != YAML_MAPPING_END_EVENT) {
		const char *k = is_scalar(&l->ev) ? (const char *)l->ev.data.scalar.value : "";
		int i = strcmp(k, "cert") == 0 ? 0 : strcmp(k, "key") == 0 ? 1 : -1;

		if (i < 0)
			problem(l, l->ev.start_mark,
				"certificates: unknown key \"%s\" (an entry has cert and key)", k);
		else if (given[i])
			problem(l, l->ev.start_mark, "certificates: %s given twice in one entry",
				k);
		if (i < 0 || given[i]) {
			skip(l, 3);
			if (next(l))
				skip(l, 3);
			continue;
		}
		given[i] = true;
		if (!next(l))
			return;
		if (!is_scalar(&l->ev)) {
			problem(l, l->ev.start_mark,
				"certificates: %s: expected a file name, not %s", names[i],
				what(&l->ev));
			skip(l, 3);
			continue;
		}
		marks[i] = l->ev.start_mark;
		files[i] = text(l, names[i]);
	}
	if (l->stop)
		return;
	if (!given[0] || !given[1]) {
		problem(l, start, "certificates: an entry needs both cert and key");
		return;
	}
	if (!files[0] || !files[1])
		return;
	{
		unsigned before = l->o->ncert_files;

		apply(l, cli_opt_find("cert", &kind), files[0], marks[0]);
		if (l->o->ncert_files == before) /* refused: one too many */
			return;
	}
	apply(l, cli_opt_find("key", &kind), files[1], marks[1]);
	if (l->o->ncert_files == l->o->nkey_files && l->o->ncert_files > 0) {
		l->o->cert_at[l->o->ncert_files - 1] = at_of(marks[0]);
		l->o->key_at[l->o->nkey_files - 1] = at_of(marks[1]);
	}
}

static void certificates(struct loader *l)
{
	if (l->ev.type != YAML_SEQUENCE_START_EVENT) {
		problem(l, l->ev.start_mark,
			"certificates: expected a list of {cert, key} pairs, not %s",
			is_scalar(&l->ev) ? "one value" : what(&l->ev));
		skip(l, 1);
		return;
	}
	while (next(l) && l->ev.type != YAML_SEQUENCE_END_EVENT) {
		if (l->ev.type == YAML_MAPPING_START_EVENT) {
			pair(l);
			continue;
		}
		problem(l, l->ev.start_mark,
			"certificates: expected {cert: FILE, key: FILE}, not %s",
			is_scalar(&l->ev) ? "one value" : what(&l->ev));
		skip(l, 2);
	}
}

/* The value of key `name` (at km), which starts at l->ev. */
static void setting(struct loader *l, const char *name, yaml_mark_t km)
{
	enum cli_kind kind = CLI_VALUE;
	int opt = cli_opt_find(name, &kind);
	unsigned slot = opt < 0 ? CLI_NOPTS : (unsigned)(opt - CLI_OPT_BASE);

	if ((opt < 0 && strcmp(name, "certificates") != 0) || kind == CLI_PAIR) {
		problem(l, km, "unknown key \"%s\"%s", name,
			kind == CLI_PAIR ? " (certificates: a list of {cert, key} pairs)" : "");
		skip(l, 1);
		return;
	}
	if (l->seen[slot].line) {
		problem(l, km, "%s given twice (first on line %u)", name, l->seen[slot].line);
		skip(l, 1);
		return;
	}
	l->seen[slot] = at_of(km);
	if (opt < 0)
		certificates(l);
	else if (kind == CLI_FLAG)
		flag(l, opt, name);
	else if (kind == CLI_LIST)
		list(l, opt, name);
	else
		value(l, opt, name);
}

static void settings(struct loader *l)
{
	while (next(l) && l->ev.type != YAML_MAPPING_END_EVENT) {
		yaml_mark_t km = l->ev.start_mark;
		char name[64];
		size_t n;

		if (!is_scalar(&l->ev)) {
			problem(l, km, "a key must be a name, not %s", what(&l->ev));
			skip(l, 1);
			if (next(l))
				skip(l, 1);
			continue;
		}
		/* A key that does not fit, or holds a NUL, is no option's: '?'
		 * is in no option's name. */
		n = l->ev.data.scalar.length < sizeof(name) ? l->ev.data.scalar.length
							    : sizeof(name) - 1;
		memcpy(name, l->ev.data.scalar.value, n);
		name[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if (name[i] == '\0')
				name[i] = '?';
		if (n != l->ev.data.scalar.length)
			name[n - 1] = '?';
		if (!next(l))
			return;
		setting(l, name, km);
	}
}

/* The stream: nothing, or one document holding a mapping. */
static void document(struct loader *l)
{
	if (!next(l) || l->ev.type == YAML_STREAM_END_EVENT) /* an empty file */
		return;
	if (!next(l))
		return;
	if (l->ev.type == YAML_MAPPING_START_EVENT) {
		settings(l);
	} else if (!is_scalar(&l->ev) || !is_null(&l->ev)) {
		problem(l, l->ev.start_mark, "expected settings (key: value lines), not %s",
			is_scalar(&l->ev) ? "one value" : what(&l->ev));
		skip(l, 0);
	}
	if (!next(l) || !next(l)) /* document end, then stream end */
		return;
	if (l->ev.type == YAML_DOCUMENT_START_EVENT)
		problem(l, l->ev.start_mark, "a second document (---): one config per file");
}

/* The whole file, if it is a regular file of at most CLI_CONFIG_MAX_BYTES. */
static int read_config(const char *path, char **out, size_t *len)
{
	const char *bad = NULL;
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd, err = 0;

	/* O_NONBLOCK: a FIFO must not block the open; it is refused below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0)
		err = errno;
	else if (!S_ISREG(st.st_mode))
		bad = "not a regular file";
	else if (st.st_size > (off_t)CLI_CONFIG_MAX_BYTES)
		bad = "larger than 1 MiB";
	else if (!(buf = malloc(CLI_CONFIG_MAX_BYTES + 1)))
		err = ENOMEM;
	while (!err && !bad && (r = read(fd, buf + n, CLI_CONFIG_MAX_BYTES + 1 - n)) != 0) {
		if (r < 0 && errno != EINTR)
			err = errno;
		else if (r > 0 && (n += (size_t)r) > CLI_CONFIG_MAX_BYTES)
			bad = "larger than 1 MiB";
	}
	if (fd >= 0)
		close(fd);
	if (err || bad) {
		cli_say("--config %s: %s", path, bad ? bad : strerror(err));
		free(buf);
		return -1;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The first pass: well-formed YAML, without anchors or aliases, and no
 * deeper than CLI_CONFIG_MAX_DEPTH; one line if not. The settings are only
 * read from a whole file, so that no problem is reported about a value
 * that a syntax error later on makes meaningless. */
static bool well_formed(struct loader *l)
{
	unsigned depth = 0;

	while (next(l) && l->ev.type != YAML_STREAM_END_EVENT) {
		if (l->ev.type == YAML_SEQUENCE_START_EVENT ||
		    l->ev.type == YAML_MAPPING_START_EVENT) {
			if (++depth > CLI_CONFIG_MAX_DEPTH) {
				problem(l, l->ev.start_mark, "nested deeper than %d levels",
					CLI_CONFIG_MAX_DEPTH);
				l->stop = true;
			}
		} else if (l->ev.type == YAML_SEQUENCE_END_EVENT ||
			   l->ev.type == YAML_MAPPING_END_EVENT) {
			depth--;
		}
	}
	return !l->stop;
}

/* One pass over buf: well_formed() or document(). */
static int pass(struct loader *l, const char *buf, size_t len, bool first)
{
	bool ok = true;

	if (!yaml_parser_initialize(&l->p)) {
		cli_say("--config %s: out of memory", l->file);
		l->o->problems++;
		return -1;
	}
	yaml_parser_set_input_string(&l->p, (const unsigned char *)buf, len);
	if (first)
		ok = well_formed(l);
	else if (next(l)) /* the stream start */
		document(l);
	if (l->have_ev)
		yaml_event_delete(&l->ev);
	l->have_ev = false;
	yaml_parser_delete(&l->p);
	return ok ? 0 : -1;
}

int cli_config_load(const char *path, struct cli_opts *o)
{
	size_t len = 0;
	char *buf = NULL;
	int ret;

	if (read_config(path, &buf, &len) < 0) {
		o->problems++;
		return -2;
	}
	ret = cli_config_load_mem(path, buf, len, o);
	free(buf);
	return ret;
}

int cli_config_load_mem(const char *name, const char *buf, size_t len, struct cli_opts *o)
{
	struct loader l;
	unsigned before = o->problems;
	int ret;

	/* read_config() never gives more; a caller with a buffer of its own
	 * gets the same limit. */
	if (len > CLI_CONFIG_MAX_BYTES) {
		cli_say("--config %s: larger than 1 MiB", name);
		o->problems++;
		return -2;
	}
	memset(&l, 0, sizeof(l));
	l.file = name;
	l.o = o;
	ret = pass(&l, buf, len, true) < 0 ? -2 : pass(&l, buf, len, false);
	if (ret == 0 && o->problems > before)
		ret = -1;
	return ret;
}
