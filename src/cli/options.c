/* Option parsing for `ringtls serve`. Every error is one line on stderr. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/proxyproto.h"
#include "options.h"

void cli_usage(FILE *f)
{
	fputs("usage: ringtls serve [options]\n"
	      "       ringtls check-config --config FILE [options]\n"
	      "                          load everything the options name (certificates,\n"
	      "                          keys, files), bind nothing; exit 0 if it is all good\n"
	      "       ringtls probe      what this machine offers: kernel, kTLS per cipher, io_uring\n"
	      "       ringtls --help | --version\n"
	      "\n"
	      "Serves HTTP/1.1 and HTTP/2 on io_uring (epoll where io_uring is refused):\n"
	      "static files under --root, or a built-in page, and GET /hello ->\n"
	      "\"Hello, World!\".\n"
	      "\n"
	      "  --config FILE            settings from a YAML file: the keys are the long\n"
	      "                           options without dashes (see ringtls(1)); the\n"
	      "                           command line overrides the file, and a list given\n"
	      "                           there (--listen, --tls-listen, --cert/--key)\n"
	      "                           replaces the file's\n"
	      "  --listen ADDR:PORT       plaintext listener, repeatable\n"
	      "  --tls-listen ADDR:PORT   TLS listener, repeatable\n"
	      "                           default, if neither is given: --listen 0.0.0.0:8080\n"
	      "                           --tls-listen 0.0.0.0:8443; ADDR may be IPv4, [IPv6] or\n"
	      "                           empty; PORT 0 picks a free port\n"
	      "  --cert FILE --key FILE   PEM certificate chain and its key; repeat the pair for\n"
	      "                           more certificates, chosen by SNI (the first is the\n"
	      "                           default). None: a self-signed ECDSA P-256 certificate\n"
	      "                           for localhost is made in the state directory\n"
	      "  --state-dir DIR          where the self-signed certificate lives (default\n"
	      "                           $XDG_STATE_HOME/ringtls or ~/.local/state/ringtls)\n"
	      "  --no-tls12               TLS 1.3 only\n"
	      "  --tls-ciphers LIST       TLS 1.2 cipher list (default ECDHE with AES-GCM or\n"
	      "                           CHACHA20-POLY1305)\n"
	      "  --tls13-ciphersuites L   TLS 1.3 suites (default AES-128-GCM, AES-256-GCM,\n"
	      "                           CHACHA20-POLY1305)\n"
	      "  --ticket-key-file FILE   session ticket keys shared between instances: one key\n"
	      "                           per line, newest first (openssl rand -hex 80)\n"
	      "  --no-tickets             no session resumption\n"
	      "  --client-ca FILE         CA bundle for client certificates\n"
	      "  --client-auth MODE       none (default), optional or require\n"
	      "  --handshake-timeout T    TLS handshake deadline (default 10s)\n"
	      "  --ktls MODE              kernel TLS after the handshake: auto (default: both\n"
	      "                           directions where the kernel can, else userspace,\n"
	      "                           silently), off, tx, rx, on (like auto, but every\n"
	      "                           fallback is logged as a warning)\n"
	      "  --ktls-zerocopy          TLS_TX_ZEROCOPY_RO: file bodies are encrypted straight\n"
	      "                           from the page cache; a file that changes while it is\n"
	      "                           being sent breaks that record's tag (the client sees\n"
	      "                           bad_record_mac), so use it only for immutable files\n"
	      "  --ktls-rx-no-rekey       offload TLS 1.3 RX even where the kernel cannot rekey\n"
	      "                           (Linux < 6.14): a peer KeyUpdate then closes the\n"
	      "                           connection instead of being handled in userspace\n"
	      "  --ktls-keyless           keep no next-generation traffic secrets: a KeyUpdate\n"
	      "                           that needs a new kernel key closes the connection\n"
	      "                           (records made in userspace follow KeyUpdates anyway)\n"
	      "  --openssl-records        where the kernel does not make our TLS records after\n"
	      "                           the handshake, OpenSSL's record layer does (default:\n"
	      "                           ringtls's own, which seals into the send buffer)\n"
	      "  --key-update-max-rate N  peer KeyUpdates allowed per second (default 100)\n"
	      "  --key-update-after-records N\n"
	      "                           test hook: send our own KeyUpdate after N records\n"
	      "                           (default: the AEAD limits of RFC 8446 section 5.5)\n"
	      "  --root DIR               serve files from DIR (default: the built-in page)\n"
	      "  --follow-symlinks        allow symlinks that lead out of --root (refused by default)\n"
	      "  --threads N              reactors, one thread each (default: online CPUs)\n"
	      "  --max-conns N            connections per reactor (default 16384)\n"
	      "  --ring-entries N         io_uring submission queue per reactor, a power\n"
	      "                           of two 8..32768; completions 8x (default 1024)\n"
	      "  --backend B              auto (default: io_uring, or epoll where io_uring\n"
	      "                           is refused), io_uring or epoll\n"
	      "  --max-header-bytes N     request line + headers (default 8192)\n"
	      "  --max-uri-bytes N        request-target (default 8000)\n"
	      "  --max-headers N          header fields per request, <= 256 (default 100)\n"
	      "  --max-body-bytes N       request body accepted and discarded (default 1048576)\n"
	      "  --no-http2               HTTP/1.1 only: no ALPN h2 on TLS listeners, no\n"
	      "                           prior-knowledge HTTP/2 on plaintext ones\n"
	      "  --proxy PREFIX=URL[,URL...]\n"
	      "                           reverse proxy: requests whose path starts with\n"
	      "                           PREFIX go to these upstreams (http://IP:PORT,\n"
	      "                           http://[IPv6]:PORT, http://NAME:PORT resolved at\n"
	      "                           start, unix:/path; https:// for TLS), round\n"
	      "                           robin; the longest prefix wins; repeatable\n"
	      "  --proxy-connect-timeout T\n"
	      "                           upstream connect deadline (default 5s)\n"
	      "  --proxy-timeout T        upstream response head deadline, from the end of\n"
	      "                           the request (default 60s)\n"
	      "  --proxy-keepalive N      idle upstream connections kept per upstream and\n"
	      "                           thread, 0..1024 (default 64; 0: none)\n"
	      "  --upstream-ca FILE       CA bundle that TLS upstreams (https://, tls://)\n"
	      "                           are verified against (default: the system's)\n"
	      "  --upstream-sni NAME      the name sent to TLS upstreams and checked in\n"
	      "                           their certificates (default: each URL's host)\n"
	      "  --upstream-cert FILE     client certificate for TLS upstreams, with\n"
	      "  --upstream-key FILE      its key\n"
	      "  --upstream-proxy-protocol v1|v2\n"
	      "                           send a PROXY protocol header to upstreams\n"
	      "  --proxy-protocol-from CIDR\n"
	      "                           accept a PROXY protocol header (v1 or v2) from\n"
	      "                           these sources, on every listener; repeatable\n"
	      "  --header-timeout T       whole request head deadline (default 10s)\n"
	      "  --idle-timeout T         keep-alive idle time (default 60s)\n"
	      "  --shutdown-timeout T     bound on graceful shutdown (default 10s)\n"
	      "  --log-level LEVEL        error, warn, info (default) or debug\n"
	      "  --access-log FILE|-      one line per request, to FILE or standard output;\n"
	      "                           SIGUSR1 reopens it (logrotate)\n"
	      "  --access-log-format F    combined (default) or json\n"
	      "  --tcp-proxy LISTEN=UPSTREAM[,UPSTREAM...]\n"
	      "                           a TLS listener on LISTEN whose plaintext goes to\n"
	      "                           UPSTREAM (HOST:PORT, [IPv6]:PORT, unix:/path;\n"
	      "                           tls://HOST:PORT for TLS to the upstream) as\n"
	      "                           it is, both ways, half-closes included; round\n"
	      "                           robin; --idle-timeout applies; repeatable\n"
	      "  --admin-listen ADDR:PORT serve /metrics (Prometheus), /healthz and\n"
	      "                           /status.json there (off by default; keep it on\n"
	      "                           loopback)\n"
	      "  -h, --help               this text\n"
	      "  -V, --version            print the version\n"
	      "\n"
	      "Times T are seconds, or take a unit: 500ms, 10s, 2m.\n"
	      "SIGINT or SIGTERM stops accepting, finishes responses in flight, and exits 0.\n",
	      f);
}

/* The lower bounds: 0 would mean "the default" to the engine, or a server
 * that refuses every request. A head shorter than MIN_HEAD cannot hold
 * "GET / HTTP/1.1", a Host field and a few more. */
#define MIN_HEAD 64

/* One bad value: the message for the user, without "ringtls: ". */
struct bad {
	const char *flag; /* "--threads" or "threads" */
	char *buf;
	size_t n;
};

static int parse_uint(const struct bad *e, const char *s, unsigned long long min,
		      unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	/* strtoull() skips leading space and takes a sign ("-1" is 2^64-1):
	 * only digits are a number here. */
	if (errno || end == s || *end || *s < '0' || *s > '9' || v < min || v > max) {
		snprintf(e->buf, e->n, "%s: not a number in %llu..%llu: '%s'", e->flag, min, max,
			 s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_duration(const struct bad *e, const char *s, unsigned *ms)
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
	/* !(v > 0): also NaN ("nan"), which every comparison calls false and
	 * which no unsigned can hold. */
	if (errno || end == s || !(v > 0) || v * mul > 86400000.0 || v * mul < 1) {
		snprintf(e->buf, e->n, "%s: not a duration like 500ms, 10s or 2m: '%s'", e->flag,
			 s);
		return -1;
	}
	*ms = (unsigned)(v * mul);
	return 0;
}

/* The index of s in names[0..n), or -1 after saying what was expected. */
static int parse_word(const struct bad *e, const char *s, const char *const *names, unsigned n,
		      const char *expected)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	snprintf(e->buf, e->n, "%s: expected %s: '%s'", e->flag, expected, s);
	return -1;
}

enum {
	O_LISTEN = 256,
	O_ROOT,
	O_FOLLOW,
	O_THREADS,
	O_RING,
	O_MAXCONNS,
	O_MAXHEAD,
	O_MAXURI,
	O_MAXHEADERS,
	O_MAXBODY,
	O_HDRTO,
	O_IDLETO,
	O_SHUTTO,
	O_LOGLEVEL,
	O_TLSLISTEN,
	O_CERT,
	O_KEY,
	O_STATEDIR,
	O_NOTLS12,
	O_CIPHERS,
	O_SUITES,
	O_TICKETFILE,
	O_NOTICKETS,
	O_CLIENTCA,
	O_CLIENTAUTH,
	O_HSTO,
	O_KTLS,
	O_KTLSZC,
	O_RXNOREKEY,
	O_KEYLESS,
	O_OSSLREC,
	O_KUMAX,
	O_KUAFTER,
	O_PROXY,
	O_PROXYCT,
	O_PROXYTO,
	O_PROXYKA,
	O_UPPP,
	O_PPFROM,
	O_ACCESSLOG,
	O_ACCESSFMT,
	O_ADMIN,
	O_TCPPROXY,
	O_UPCA,
	O_UPSNI,
	O_UPCERT,
	O_UPKEY,
	O_NOHTTP2,
	O_BACKEND,
};
enum { O_CONFIG = O_BACKEND + 1 }; /* not a setting of the file */
_Static_assert(O_LISTEN == CLI_OPT_BASE && O_CONFIG < CLI_OPT_BASE + CLI_NOPTS,
	       "options.h's CLI_OPT_BASE and CLI_NOPTS cover every option");

static const struct option longopts[] = {
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "root", required_argument, NULL, O_ROOT },
	{ "follow-symlinks", no_argument, NULL, O_FOLLOW },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "max-conns", required_argument, NULL, O_MAXCONNS },
	{ "ring-entries", required_argument, NULL, O_RING },
	{ "max-header-bytes", required_argument, NULL, O_MAXHEAD },
	{ "max-uri-bytes", required_argument, NULL, O_MAXURI },
	{ "max-headers", required_argument, NULL, O_MAXHEADERS },
	{ "max-body-bytes", required_argument, NULL, O_MAXBODY },
	{ "header-timeout", required_argument, NULL, O_HDRTO },
	{ "idle-timeout", required_argument, NULL, O_IDLETO },
	{ "shutdown-timeout", required_argument, NULL, O_SHUTTO },
	{ "log-level", required_argument, NULL, O_LOGLEVEL },
	{ "tls-listen", required_argument, NULL, O_TLSLISTEN },
	{ "cert", required_argument, NULL, O_CERT },
	{ "key", required_argument, NULL, O_KEY },
	{ "state-dir", required_argument, NULL, O_STATEDIR },
	{ "no-tls12", no_argument, NULL, O_NOTLS12 },
	{ "tls-ciphers", required_argument, NULL, O_CIPHERS },
	{ "tls13-ciphersuites", required_argument, NULL, O_SUITES },
	{ "ticket-key-file", required_argument, NULL, O_TICKETFILE },
	{ "no-tickets", no_argument, NULL, O_NOTICKETS },
	{ "client-ca", required_argument, NULL, O_CLIENTCA },
	{ "client-auth", required_argument, NULL, O_CLIENTAUTH },
	{ "handshake-timeout", required_argument, NULL, O_HSTO },
	{ "ktls", required_argument, NULL, O_KTLS },
	{ "ktls-zerocopy", no_argument, NULL, O_KTLSZC },
	{ "ktls-rx-no-rekey", no_argument, NULL, O_RXNOREKEY },
	{ "ktls-keyless", no_argument, NULL, O_KEYLESS },
	{ "openssl-records", no_argument, NULL, O_OSSLREC },
	{ "key-update-max-rate", required_argument, NULL, O_KUMAX },
	{ "key-update-after-records", required_argument, NULL, O_KUAFTER },
	{ "proxy", required_argument, NULL, O_PROXY },
	{ "proxy-connect-timeout", required_argument, NULL, O_PROXYCT },
	{ "proxy-timeout", required_argument, NULL, O_PROXYTO },
	{ "proxy-keepalive", required_argument, NULL, O_PROXYKA },
	{ "upstream-proxy-protocol", required_argument, NULL, O_UPPP },
	{ "proxy-protocol-from", required_argument, NULL, O_PPFROM },
	{ "access-log", required_argument, NULL, O_ACCESSLOG },
	{ "access-log-format", required_argument, NULL, O_ACCESSFMT },
	{ "admin-listen", required_argument, NULL, O_ADMIN },
	{ "tcp-proxy", required_argument, NULL, O_TCPPROXY },
	{ "upstream-ca", required_argument, NULL, O_UPCA },
	{ "upstream-sni", required_argument, NULL, O_UPSNI },
	{ "upstream-cert", required_argument, NULL, O_UPCERT },
	{ "upstream-key", required_argument, NULL, O_UPKEY },
	{ "no-http2", no_argument, NULL, O_NOHTTP2 },
	{ "backend", required_argument, NULL, O_BACKEND },
	{ "config", required_argument, NULL, O_CONFIG },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int add_listen(struct cli_opts *o, const char *addr, int tls, const struct bad *e)
{
	if (o->nlisten == CLI_MAX_LISTEN) {
		snprintf(e->buf, e->n, "at most %d listeners", CLI_MAX_LISTEN);
		return -1;
	}
	o->listen_at[o->nlisten] = (struct cli_at){ 0, 0 };
	o->listen[o->nlisten].addr = addr;
	o->listen[o->nlisten].tls = tls;
	o->nlisten++;
	return 0;
}

static int add_pair_half(struct cli_opts *o, int opt, const char *arg, const struct bad *e)
{
	unsigned *n = opt == O_CERT ? &o->ncert_files : &o->nkey_files;

	if (*n == CLI_MAX_CERTS) {
		snprintf(e->buf, e->n, "at most %d certificates", CLI_MAX_CERTS);
		return -1;
	}
	if (opt == O_CERT)
		o->certs[(*n)++].cert_file = arg;
	else
		o->certs[(*n)++].key_file = arg;
	return 0;
}

static int apply_tls(struct cli_opts *o, int opt, const char *arg, const struct bad *e)
{
	static const char *const auth[] = { "none", "optional", "require" };
	static const char *const modes[] = { "auto", "off", "tx", "rx", "on" };
	unsigned long long v;
	int i;

	switch (opt) {
	case O_TLSLISTEN:
		return add_listen(o, arg, 1, e);
	case O_CERT:
	case O_KEY:
		return add_pair_half(o, opt, arg, e);
	case O_STATEDIR: snprintf(o->state_dir, sizeof(o->state_dir), "%s", arg); return 0;
	case O_NOTLS12: o->tls.no_tls12 = true; return 0;
	case O_CIPHERS: o->tls.ciphers12 = arg; return 0;
	case O_SUITES: o->tls.ciphersuites13 = arg; return 0;
	case O_TICKETFILE: o->tls.ticket_key_file = arg; return 0;
	case O_NOTICKETS: o->tls.no_tickets = true; return 0;
	case O_NOHTTP2:
		o->http.http2 = false;
		return 0;
	case O_CLIENTCA: o->tls.client_ca = arg; return 0;
	case O_CLIENTAUTH:
		if ((i = parse_word(e, arg, auth, 3, "none, optional or require")) < 0)
			return -1;
		o->tls.client_auth = (enum rtls_client_auth)i;
		return 0;
	case O_HSTO:
		return parse_duration(e, arg, &o->cfg.timeout_ms[RTLS_TIMER_HANDSHAKE]);
	case O_KTLSZC: o->tls.ktls_zerocopy = true; return 0;
	case O_RXNOREKEY: o->tls.ktls_rx_no_rekey = true; return 0;
	case O_KEYLESS: o->tls.ktls_keyless = true; return 0;
	case O_OSSLREC:
		o->tls.openssl_records = true;
		return 0;
	case O_KUMAX:
		if (parse_uint(e, arg, 1, 1000000, &v) < 0)
			return -1;
		o->tls.key_update_max_rate = (unsigned)v;
		return 0;
	case O_KUAFTER:
		return parse_uint(e, arg, 1, ULLONG_MAX, &o->tls.key_update_records);
	case O_KTLS:
		if ((i = parse_word(e, arg, modes, 5, "auto, off, tx, rx or on")) < 0)
			return -1;
		o->tls.ktls = (enum rtls_ktls_mode)i;
		return 0;
	default:
		snprintf(e->buf, e->n, "%s: not an option", e->flag);
		return -1;
	}
}

/* The state directory: --state-dir, else XDG_STATE_HOME, else ~/.local/state. */
static void default_state_dir(struct cli_opts *o)
{
	const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (o->state_dir[0])
		return;
	if (x && *x)
		snprintf(o->state_dir, sizeof(o->state_dir), "%s/ringtls", x);
	else if (home && *home)
		snprintf(o->state_dir, sizeof(o->state_dir), "%s/.local/state/ringtls", home);
	else
		snprintf(o->state_dir, sizeof(o->state_dir), "/var/lib/ringtls");
}

/* A number option: its range and where it goes. */
static int apply_number(struct cli_opts *o, int opt, const char *arg, const struct bad *e)
{
	unsigned long long v = 0;

	switch (opt) {
	case O_THREADS:
		if (parse_uint(e, arg, 1, 1024, &v) < 0)
			return -1;
		o->cfg.threads = (unsigned)v;
		return 0;
	case O_RING:
		if (parse_uint(e, arg, 8, 32768, &v) < 0)
			return -1;
		if (v & (v - 1)) {
			snprintf(e->buf, e->n, "%s %s: not a power of two", e->flag, arg);
			return -1;
		}
		o->cfg.ring_entries = (unsigned)v;
		return 0;
	case O_MAXCONNS:
		if (parse_uint(e, arg, 1, 1u << 24, &v) < 0)
			return -1;
		o->cfg.max_conns = (unsigned)v;
		return 0;
	case O_MAXHEAD:
		if (parse_uint(e, arg, MIN_HEAD, 1u << 20, &v) < 0)
			return -1;
		o->http.max_head = (size_t)v;
		return 0;
	case O_MAXURI:
		if (parse_uint(e, arg, 1, 1u << 20, &v) < 0)
			return -1;
		o->http.max_target = (size_t)v;
		return 0;
	case O_MAXHEADERS:
		if (parse_uint(e, arg, 1, 256, &v) < 0)
			return -1;
		o->http.max_headers = (unsigned)v;
		return 0;
	case O_MAXBODY:
		if (parse_uint(e, arg, 0, ULLONG_MAX, &v) < 0)
			return -1;
		o->http.max_body = v;
		return 0;
	default:
		return apply_tls(o, opt, arg, e);
	}
}

/* The reverse proxy's options (issue 14). */
static int apply_proxy(struct cli_opts *o, int opt, const char *arg, const struct bad *e)
{
	static const char *const versions[] = { "v1", "v2" };
	static const char *const formats[] = { "combined", "json" };
	struct rtls__cidr cidr;
	unsigned long long v;
	char why[256];
	int i;

	switch (opt) {
	case O_PROXY:
		if (rtls_http_proxy_add(&o->http, arg, why, sizeof(why)) < 0) {
			snprintf(e->buf, e->n, "%s %s: %s", e->flag, arg, why);
			return -1;
		}
		return 0;
	case O_PROXYCT:
		return parse_duration(e, arg, &o->cfg.timeout_ms[RTLS_TIMER_CONNECT]);
	case O_PROXYTO:
		return parse_duration(e, arg, &o->cfg.timeout_ms[RTLS_TIMER_RESPONSE]);
	case O_PROXYKA:
		if (parse_uint(e, arg, 0, 1024, &v) < 0)
			return -1;
		o->http.proxy_keepalive = (unsigned)v;
		return 0;
	case O_UPPP:
		if ((i = parse_word(e, arg, versions, 2, "v1 or v2")) < 0)
			return -1;
		o->http.upstream_proxy_protocol = i + 1;
		return 0;
	case O_UPCA:
		o->up_tls.ca_file = arg;
		return 0;
	case O_UPSNI:
		o->http.upstream_sni = arg;
		return 0;
	case O_UPCERT:
		o->up_tls.cert_file = arg;
		return 0;
	case O_UPKEY:
		o->up_tls.key_file = arg;
		return 0;
	case O_ACCESSLOG:
		o->access_log = arg;
		return 0;
	case O_ACCESSFMT:
		if ((i = parse_word(e, arg, formats, 2, "combined or json")) < 0)
			return -1;
		o->access_log_json = i == 1;
		return 0;
	case O_ADMIN:
		o->admin_listen = arg;
		return 0;
	case O_TCPPROXY:
		if (rtls_http_tcp_add(&o->http, arg, why, sizeof(why)) < 0) {
			snprintf(e->buf, e->n, "%s %s: %s", e->flag, arg, why);
			return -1;
		}
		return 0;
	case O_PPFROM:
		if (o->npp_from == CLI_MAX_PP_FROM) {
			snprintf(e->buf, e->n, "at most %d %s", CLI_MAX_PP_FROM, e->flag);
			return -1;
		}
		if (rtls__cidr_parse(arg, &cidr) < 0) {
			snprintf(e->buf, e->n, "%s: not an address or CIDR: '%s'", e->flag, arg);
			return -1;
		}
		o->pp_from[o->npp_from++] = arg;
		return 0;
	default:
		return apply_number(o, opt, arg, e);
	}
}

static int apply(struct cli_opts *o, int opt, const char *arg, const struct bad *e)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	static const char *const backends[] = { "auto", "io_uring", "epoll" };
	int i;

	switch (opt) {
	case O_LISTEN:
		return add_listen(o, arg, 0, e);
	case O_BACKEND:
		/* In enum rtls_backend's order. */
		if ((i = parse_word(e, arg, backends, 3, "auto, io_uring or epoll")) < 0)
			return -1;
		o->cfg.backend = (enum rtls_backend)i;
		return 0;
	case O_ROOT:
		o->http.root = arg;
		return 0;
	case O_FOLLOW:
		o->http.follow_symlinks = true;
		return 0;
	case O_HDRTO:
		return parse_duration(e, arg, &o->cfg.timeout_ms[RTLS_TIMER_HEADER]);
	case O_IDLETO:
		return parse_duration(e, arg, &o->cfg.timeout_ms[RTLS_TIMER_IDLE]);
	case O_SHUTTO:
		return parse_duration(e, arg, &o->cfg.shutdown_ms);
	case O_LOGLEVEL:
		if ((i = parse_word(e, arg, levels, 4, "error, warn, info or debug")) < 0)
			return -1;
		o->log_level = (enum rtls_log_level)i;
		return 0;
	default:
		return apply_proxy(o, opt, arg, e);
	}
}

const char *cli_opt_name(int opt)
{
	for (const struct option *l = longopts; l->name; l++)
		if (l->val == opt)
			return l->name;
	return "?";
}

int cli_opt_find(const char *name, enum cli_kind *kind)
{
	for (const struct option *l = longopts; l->name; l++) {
		if (l->val < O_LISTEN || l->val == O_CONFIG || strcmp(l->name, name) != 0)
			continue;
		if (l->val == O_LISTEN || l->val == O_TLSLISTEN || l->val == O_PROXY ||
		    l->val == O_PPFROM || l->val == O_TCPPROXY)
			*kind = CLI_LIST;
		else if (l->val == O_CERT || l->val == O_KEY)
			*kind = CLI_PAIR;
		else
			*kind = l->has_arg == no_argument ? CLI_FLAG : CLI_VALUE;
		return l->val;
	}
	return -1;
}

int cli_opt_apply(struct cli_opts *o, int opt, const char *arg, bool dash, char *err, size_t n)
{
	char flag[64];
	struct bad e = { flag, err, n };

	snprintf(flag, sizeof(flag), "%s%s", dash ? "--" : "", cli_opt_name(opt));
	if (apply(o, opt, arg, &e) < 0)
		return -1;
	if (opt == O_HSTO || opt == O_KTLS || opt == O_RXNOREKEY || opt == O_KEYLESS ||
	    opt == O_OSSLREC || opt == O_KUMAX) {
		/* Also the client side's, for TLS upstreams. */
		if (!o->tls_both_opt)
			o->tls_both_opt = opt;
	} else if (!o->tls_opt && opt > O_TLSLISTEN && opt <= O_KUAFTER) {
		o->tls_opt = opt;
	}
	if (opt >= O_LISTEN && opt < O_LISTEN + CLI_NOPTS)
		o->at[opt - O_LISTEN] = (struct cli_at){ 0, 0 };
	return 0;
}

struct cli_str {
	struct cli_str *next;
	char s[];
};

const char *cli_opts_strdup(struct cli_opts *o, const char *s, size_t len)
{
	struct cli_str *c = malloc(sizeof(*c) + len + 1);

	if (!c)
		return NULL;
	memcpy(c->s, s, len);
	c->s[len] = '\0';
	c->next = o->strs;
	o->strs = c;
	return c->s;
}

void cli_opts_free(struct cli_opts *o)
{
	rtls_http_proxy_clear(&o->http);
	rtls_http_tcp_clear(&o->http);
	rtls_http_stats_free(&o->http);
	while (o->strs) {
		struct cli_str *c = o->strs;

		o->strs = c->next;
		free(c);
	}
}

/* Options that cannot all take effect are refused, not silently ignored. */
static int check_conflicts(const struct cli_opts *o)
{
	bool tls = false;

	for (unsigned i = 0; i < o->nlisten; i++)
		tls |= o->listen[i].tls != 0;
	if (o->tls_opt && o->nlisten && !tls) {
		cli_say("--%s is a TLS option, but no --tls-listen was given",
			cli_opt_name(o->tls_opt));
		return -1;
	}
	if (o->tls_both_opt && o->nlisten && !tls && !rtls_http_upstream_tls(&o->http)) {
		cli_say("--%s is a TLS option, but no --tls-listen or TLS upstream was given",
			cli_opt_name(o->tls_both_opt));
		return -1;
	}
	if (o->tls.no_tickets && o->tls.ticket_key_file) {
		cli_say("--no-tickets conflicts with --ticket-key-file: give one");
		return -1;
	}
	if (o->tls.ktls == RTLS_KTLS_OFF && (o->tls.ktls_zerocopy || o->tls.ktls_rx_no_rekey)) {
		cli_say("--%s needs kernel TLS, but --ktls off was given",
			o->tls.ktls_zerocopy ? "ktls-zerocopy" : "ktls-rx-no-rekey");
		return -1;
	}
	return 0;
}

/* The first pass: --help, --version, unknown options and missing values,
 * --config, and which lists the command line gives (bit 1: --listen,
 * 2: --tls-listen, 4: --cert/--key, 8: --proxy, 16: --proxy-protocol-from,
 * 32: --tcp-proxy). */
static int scan(int argc, char **argv, struct cli_opts *o, unsigned *lists)
{
	int opt;

	opterr = 0;
	optind = 0; /* glibc: start afresh, also for a second parse */
	while ((opt = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			cli_usage(stdout);
			return 1;
		case 'V':
			printf("ringtls %s\n", RTLS_VERSION_STRING);
			return 1;
		case '?':
			cli_say("unknown option '%s' (see ringtls --help)", argv[optind - 1]);
			return -1;
		case ':':
			cli_say("option '%s' needs a value", argv[optind - 1]);
			return -1;
		case O_CONFIG:
			if (o->config) {
				cli_say("--config given twice");
				return -1;
			}
			o->config = optarg;
			break;
		case O_LISTEN:
			*lists |= 1;
			break;
		case O_TLSLISTEN:
			*lists |= 2;
			break;
		case O_CERT:
		case O_KEY:
			*lists |= 4;
			break;
		case O_PROXY:
			*lists |= 8;
			break;
		case O_PPFROM:
			*lists |= 16;
			break;
		case O_TCPPROXY:
			*lists |= 32;
			break;
		default:
			break;
		}
	}
	if (optind < argc) {
		cli_say("unexpected argument '%s' (see ringtls --help)", argv[optind]);
		return -1;
	}
	return 0;
}

/* A list on the command line replaces the file's, as nginx and h2o do. */
static void drop_file_lists(struct cli_opts *o, unsigned lists)
{
	unsigned k = 0;

	for (unsigned i = 0; i < o->nlisten; i++) {
		if (lists & (o->listen[i].tls ? 2u : 1u))
			continue;
		o->listen_at[k] = o->listen_at[i];
		o->listen[k++] = o->listen[i];
	}
	o->nlisten = k;
	if (lists & 4) {
		o->ncert_files = o->nkey_files = 0;
		memset(o->certs, 0, sizeof(o->certs));
		memset(o->cert_at, 0, sizeof(o->cert_at));
		memset(o->key_at, 0, sizeof(o->key_at));
	}
	if (lists & 8)
		rtls_http_proxy_clear(&o->http);
	if (lists & 16)
		o->npp_from = 0;
	if (lists & 32)
		rtls_http_tcp_clear(&o->http);
}

/* Each --tcp-proxy is a TLS listener of its own, after the others. */
static int add_tcp_listeners(struct cli_opts *o)
{
	char err[256];
	struct bad e = { "--tcp-proxy", err, sizeof(err) };

	for (unsigned i = 0; i < o->http.ntcp; i++) {
		if (add_listen(o, rtls_http_tcp_listen(&o->http, i), 1, &e) < 0) {
			cli_say("%s", err);
			return -1;
		}
		/* Not HTTP: whatever protocol the client offers is the
		 * upstream's business, as with HAProxy in TCP mode. */
		o->listen[o->nlisten - 1].no_alpn = 1;
		rtls_http_tcp_bind(&o->http, i, o->nlisten - 1);
	}
	return 0;
}

/* The second pass: every option on top of what the file set. */
static int apply_argv(int argc, char **argv, struct cli_opts *o)
{
	char err[512];
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
		if (opt == O_CONFIG)
			continue;
		if (opt < O_LISTEN || cli_opt_apply(o, opt, optarg, true, err, sizeof(err)) < 0) {
			cli_say("%s", opt < O_LISTEN ? "bad option" : err);
			return -1;
		}
	}
	return 0;
}

int cli_parse_serve(int argc, char **argv, struct cli_opts *o, bool keep_going)
{
	unsigned lists = 0;
	int ret;

	memset(o, 0, sizeof(*o));
	rtls_http_config_defaults(&o->http);
	o->log_level = RTLS_LOG_INFO;
	ret = scan(argc, argv, o, &lists);
	if (ret)
		return ret;
	ret = o->config ? cli_config_load(o->config, o) : 0;
	if (ret == -2 || (ret < 0 && !keep_going))
		return -1;
	drop_file_lists(o, lists);
	if (apply_argv(argc, argv, o) < 0)
		return -1;
	if (o->ncert_files != o->nkey_files) {
		cli_say("--cert and --key come in pairs (%u --cert, %u --key)", o->ncert_files,
			o->nkey_files);
		return -1;
	}
	if (add_tcp_listeners(o) < 0 || check_conflicts(o) < 0)
		return -1;
	if (o->tls.client_ca && o->tls.client_auth == RTLS_CLIENT_AUTH_NONE)
		o->tls.client_auth = RTLS_CLIENT_AUTH_OPTIONAL;
	if (!o->nlisten) {
		o->listen[o->nlisten++] = (struct rtls_listen){ .addr = "0.0.0.0:8080" };
		o->listen[o->nlisten++] = (struct rtls_listen){ .addr = "0.0.0.0:8443", .tls = 1 };
	}
	o->http.h2_stall_ms = o->cfg.timeout_ms[RTLS_TIMER_IDLE];
	/* HTTP/2 on every HTTP listener, unless turned off. */
	for (unsigned i = 0; i < o->nlisten && o->http.http2; i++)
		if (o->listen[i].tls && o->listen[i].alpn == RTLS_ALPN_HTTP1)
			o->listen[i].alpn = RTLS_ALPN_H2;
	default_state_dir(o);
	o->tls.certs = o->certs;
	o->tls.ncerts = o->ncert_files;
	o->tls.state_dir = o->state_dir;
	o->cfg.listeners = o->listen;
	o->cfg.nlisteners = o->nlisten;
	o->cfg.proxy_protocol_from = o->pp_from;
	o->cfg.nproxy_protocol_from = o->npp_from;
	return 0;
}
