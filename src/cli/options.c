/* Option parsing for `ringtls serve`. Every error is one line on stderr. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

void cli_usage(FILE *f)
{
	fputs("usage: ringtls serve [options]\n"
	      "       ringtls --help | --version\n"
	      "\n"
	      "Serves HTTP/1.1 on io_uring: static files under --root, or a built-in page,\n"
	      "and GET /hello -> \"Hello, World!\".\n"
	      "\n"
	      "  --listen ADDR:PORT       plaintext listener, repeatable (default 0.0.0.0:8080);\n"
	      "                           ADDR may be an IPv4 address, [IPv6], or empty; PORT 0 = any\n"
	      "  --root DIR               serve files from DIR (default: the built-in page)\n"
	      "  --follow-symlinks        allow symlinks that lead out of --root (refused by default)\n"
	      "  --threads N              reactors, one thread each (default: online CPUs)\n"
	      "  --max-conns N            connections per reactor (default 16384)\n"
	      "  --max-header-bytes N     request line + headers (default 8192)\n"
	      "  --max-uri-bytes N        request-target (default 4096)\n"
	      "  --max-headers N          header fields per request, <= 256 (default 100)\n"
	      "  --max-body-bytes N       request body accepted and discarded (default 1048576)\n"
	      "  --header-timeout T       whole request head deadline (default 10s)\n"
	      "  --idle-timeout T         keep-alive idle time (default 60s)\n"
	      "  --shutdown-timeout T     bound on graceful shutdown (default 10s)\n"
	      "  --log-level LEVEL        error, warn, info (default) or debug\n"
	      "  -h, --help               this text\n"
	      "  -V, --version            print the version\n"
	      "\n"
	      "Times T are seconds, or take a unit: 500ms, 10s, 2m.\n"
	      "SIGINT or SIGTERM stops accepting, finishes responses in flight, and exits 0.\n",
	      f);
}

static int parse_uint(const char *flag, const char *s, unsigned long long max,
		      unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v > max) {
		fprintf(stderr, "ringtls: %s: not a number in 0..%llu: '%s'\n", flag, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_duration(const char *flag, const char *s, unsigned *ms)
{
	char *end;
	double v;
	double mul = 1000;

	errno = 0;
	v = strtod(s, &end);
	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (*end && strcmp(end, "s") != 0)
		end = (char *)s;
	if (errno || end == s || v <= 0 || v * mul > 86400000.0 || v * mul < 1) {
		fprintf(stderr, "ringtls: %s: not a duration like 500ms, 10s or 2m: '%s'\n", flag, s);
		return -1;
	}
	*ms = (unsigned)(v * mul);
	return 0;
}

static int parse_level(const char *s, enum rtls_log_level *l)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (unsigned i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*l = (enum rtls_log_level)i;
			return 0;
		}
	fprintf(stderr, "ringtls: --log-level: expected error, warn, info or debug: '%s'\n", s);
	return -1;
}

enum {
	O_LISTEN = 256, O_ROOT, O_FOLLOW, O_THREADS, O_MAXCONNS, O_MAXHEAD, O_MAXURI,
	O_MAXHEADERS, O_MAXBODY, O_HDRTO, O_IDLETO, O_SHUTTO, O_LOGLEVEL,
};

static const struct option longopts[] = {
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "root", required_argument, NULL, O_ROOT },
	{ "follow-symlinks", no_argument, NULL, O_FOLLOW },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "max-conns", required_argument, NULL, O_MAXCONNS },
	{ "max-header-bytes", required_argument, NULL, O_MAXHEAD },
	{ "max-uri-bytes", required_argument, NULL, O_MAXURI },
	{ "max-headers", required_argument, NULL, O_MAXHEADERS },
	{ "max-body-bytes", required_argument, NULL, O_MAXBODY },
	{ "header-timeout", required_argument, NULL, O_HDRTO },
	{ "idle-timeout", required_argument, NULL, O_IDLETO },
	{ "shutdown-timeout", required_argument, NULL, O_SHUTTO },
	{ "log-level", required_argument, NULL, O_LOGLEVEL },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int add_listen(struct cli_opts *o, const char *addr, int tls)
{
	if (o->nlisten == CLI_MAX_LISTEN) {
		fprintf(stderr, "ringtls: at most %d listeners\n", CLI_MAX_LISTEN);
		return -1;
	}
	o->listen[o->nlisten].addr = addr;
	o->listen[o->nlisten].tls = tls;
	o->nlisten++;
	return 0;
}

static int apply(struct cli_opts *o, int opt, const char *arg)
{
	unsigned long long v = 0;

	switch (opt) {
	case O_LISTEN: return add_listen(o, arg, 0);
	case O_ROOT: o->http.root = arg; return 0;
	case O_FOLLOW: o->http.follow_symlinks = true; return 0;
	case O_THREADS:
		if (parse_uint("--threads", arg, 1024, &v) < 0)
			return -1;
		if (v == 0) {
			fprintf(stderr, "ringtls: --threads: must be at least 1\n");
			return -1;
		}
		o->cfg.threads = (unsigned)v;
		return 0;
	case O_MAXCONNS:
		if (parse_uint("--max-conns", arg, 1u << 24, &v) < 0)
			return -1;
		o->cfg.max_conns = (unsigned)v;
		return 0;
	case O_MAXHEAD:
		if (parse_uint("--max-header-bytes", arg, 1u << 20, &v) < 0)
			return -1;
		o->http.max_head = (size_t)v;
		return 0;
	case O_MAXURI:
		if (parse_uint("--max-uri-bytes", arg, 1u << 20, &v) < 0)
			return -1;
		o->http.max_target = (size_t)v;
		return 0;
	case O_MAXHEADERS:
		if (parse_uint("--max-headers", arg, 256, &v) < 0)
			return -1;
		o->http.max_headers = (unsigned)v;
		return 0;
	case O_MAXBODY:
		if (parse_uint("--max-body-bytes", arg, ULLONG_MAX, &v) < 0)
			return -1;
		o->http.max_body = v;
		return 0;
	case O_HDRTO: return parse_duration("--header-timeout", arg, &o->cfg.timeout_ms[RTLS_TIMER_HEADER]);
	case O_IDLETO: return parse_duration("--idle-timeout", arg, &o->cfg.timeout_ms[RTLS_TIMER_IDLE]);
	case O_SHUTTO: return parse_duration("--shutdown-timeout", arg, &o->cfg.shutdown_ms);
	case O_LOGLEVEL: return parse_level(arg, &o->log_level);
	default: return -1;
	}
}

int cli_parse_serve(int argc, char **argv, struct cli_opts *o)
{
	int opt;

	memset(o, 0, sizeof(*o));
	rtls_http_config_defaults(&o->http);
	o->log_level = RTLS_LOG_INFO;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			cli_usage(stdout);
			return 1;
		case 'V':
			printf("ringtls %s\n", RTLS_VERSION_STRING);
			return 1;
		case '?':
			fprintf(stderr, "ringtls: unknown option '%s' (see ringtls --help)\n", argv[optind - 1]);
			return -1;
		case ':':
			fprintf(stderr, "ringtls: option '%s' needs a value\n", argv[optind - 1]);
			return -1;
		default:
			if (apply(o, opt, optarg) < 0)
				return -1;
			break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ringtls: unexpected argument '%s' (see ringtls --help)\n", argv[optind]);
		return -1;
	}
	if (!o->nlisten)
		add_listen(o, "0.0.0.0:8080", 0);
	o->cfg.listeners = o->listen;
	o->cfg.nlisteners = o->nlisten;
	return 0;
}
