/* ringtls: the program. `ringtls serve` runs the HTTP server. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "http/accesslog.h"
#include "options.h"
#include "probe.h"
#include "systemd.h"

static void log_listeners(rtls_server *s, const struct cli_opts *o)
{
	for (unsigned i = 0; i < o->nlisten; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		char addr[80];
		const char *kind = o->listen[i].tls ? "https" : "http";

		if (rtls_server_listen_addr(s, i, &ss, &len) < 0)
			continue;
		rtls_format_addr(&ss, addr, sizeof(addr));
		if ((int)i == o->http.admin_listener)
			kind = "admin";
		rtls_log(RTLS_LOG_INFO, "listening on %s (%s)", addr, kind);
	}
}

/* Every connection is a descriptor, and the usual soft limit (1024) is far
 * below --max-conns: raise it to the hard limit, as nginx's
 * worker_rlimit_nofile or the Go runtime do. The hard limit stays the
 * administrator's bound; at it, accepts pause and resume (reactor.c). */
static void raise_nofile(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max ||
	    rl.rlim_max == RLIM_INFINITY)
		return;
	was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		rtls_log(RTLS_LOG_DEBUG, "descriptor limit raised from %llu to %llu",
			 (unsigned long long)was, (unsigned long long)rl.rlim_max);
}

/* Every response allocates and frees output and OpenSSL record buffers
 * (SSL_MODE_RELEASE_BUFFERS keeps idle connections small). glibc trims a
 * thread arena's top with madvise as soon as more than 128 KiB is free
 * there, and the next response faults every page back in: with 64
 * connections a 16 KiB TLS response cost 74 us of server CPU instead of
 * 32, a fifth of it in page faults (issue 20; bench/README). Setting the
 * trim threshold also turns off glibc's moving mmap threshold, so buffers
 * up to 4 MiB (a 1 MiB response's) stay in the arena too. The process
 * then keeps up to 32 MiB free per arena top instead of returning it. A
 * program's choice, not the library's: malloc settings are process-wide. */
static void tune_malloc(void)
{
	if (!mallopt(M_MMAP_THRESHOLD, 4 << 20) || !mallopt(M_TRIM_THRESHOLD, 32 << 20))
		rtls_log(RTLS_LOG_DEBUG, "mallopt refused: arena trimming left as it is");
}

static bool needs_tls(const struct cli_opts *o)
{
	for (unsigned i = 0; i < o->nlisten; i++)
		if (o->listen[i].tls)
			return true;
	return false;
}

/* --access-log: opened before the server runs, so that a path that
 * cannot be written stops the start with one line. */
static int open_access_log(struct cli_opts *o)
{
	enum cli_kind kind;
	struct cli_at at;
	char msg[4400];
	int ret;

	if (!o->access_log)
		return 0;
	ret = rtls_http_alog_open(o->access_log,
				  o->access_log_json ? RTLS_ALOG_JSON : RTLS_ALOG_COMBINED,
				  &o->http.alog);
	if (ret == 0)
		return 0;
	at = o->at[cli_opt_find("access-log", &kind) - CLI_OPT_BASE];
	snprintf(msg, sizeof(msg), "%s %s: %s", at.line ? "access-log" : "--access-log",
		 o->access_log, strerror(-ret));
	cli_config_say(o->config, at, msg);
	return -1;
}

/* --admin-listen: one more plaintext listener of the same server, whose
 * requests the HTTP layer answers itself (src/http/admin.c), and the HTTP
 * layer's counters for its /metrics (freed by cli_opts_free). */
static int add_admin(struct cli_opts *o)
{
	if (!o->admin_listen)
		return 0;
	if (o->nlisten == CLI_MAX_LISTEN) {
		fprintf(stderr, "ringtls: --admin-listen: at most %d listeners in all\n",
			CLI_MAX_LISTEN);
		return -1;
	}
	if (rtls_http_stats_init(&o->http) < 0) {
		fprintf(stderr, "ringtls: --admin-listen: %s\n", strerror(ENOMEM));
		return -1;
	}
	o->listen[o->nlisten] = (struct rtls_listen){ .addr = o->admin_listen };
	o->http.admin_listener = (int)o->nlisten++;
	o->cfg.nlisteners = o->nlisten;
	return 0;
}

static int run(struct cli_opts *o)
{
	rtls_server *s = NULL;
	struct rtls_tls_ctx *tls = NULL;
	char why[512];
	int ret;

	rtls_log_set_level(o->log_level);
	raise_nofile();
	tune_malloc();
	ret = rtls_http_config_open(&o->http);
	if (ret < 0) {
		enum cli_kind kind;
		struct cli_at at = o->at[cli_opt_find("root", &kind) - CLI_OPT_BASE];
		char msg[4400];

		snprintf(msg, sizeof(msg), "%s %s: %s", at.line ? "root" : "--root", o->http.root,
			 strerror(-ret));
		cli_config_say(o->config, at, msg);
		return 1;
	}
	o->cfg.handler = &rtls_http_handler;
	o->cfg.handler_ctx = &o->http;
	if (add_admin(o) < 0)
		return 1;
	if (cli_listen_fds(o, why, sizeof(why)) < 0) { /* systemd socket activation */
		fprintf(stderr, "ringtls: %s\n", why);
		return 1;
	}
	if (open_access_log(o) < 0)
		return 1;
	if (needs_tls(o)) {
		ret = rtls_tls_ctx_new(&o->tls, &tls, why, sizeof(why));
		if (ret < 0) {
			fprintf(stderr, "ringtls: %s\n", why);
			rtls_http_alog_close(o->http.alog);
			return 1;
		}
		o->cfg.tls = tls;
		o->http.live_tls = rtls_tls_live_ssl;
	}
	ret = rtls_server_create(&o->cfg, &s, why, sizeof(why));
	if (ret < 0) {
		fprintf(stderr, "ringtls: %s\n", why);
		rtls_tls_ctx_free(tls);
		rtls_http_alog_close(o->http.alog);
		return 1;
	}
	o->http.server = s; /* for /metrics */
	/* Only once the listeners are bound: a start that fails says one line. */
	if (tls && rtls_tls_ctx_selfsigned_path(tls))
		rtls_log(RTLS_LOG_INFO, "TLS uses the self-signed certificate %s; trust it with "
			 "curl --cacert %s, or copy it to /usr/local/share/ca-certificates/ringtls.crt "
			 "and run update-ca-certificates", rtls_tls_ctx_selfsigned_path(tls),
			 rtls_tls_ctx_selfsigned_path(tls));
	log_listeners(s, o);
	rtls_log(RTLS_LOG_INFO, "ringtls %s: %u reactor(s), serving %s", RTLS_VERSION_STRING,
		 o->cfg.threads ? o->cfg.threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
		 o->http.root ? o->http.root : "the built-in page");
	ret = cli_serve_until_signal(s, o->http.alog); /* SIGINT/SIGTERM: graceful stop, exit 0 */
	rtls_server_destroy(s);
	rtls_http_alog_close(o->http.alog); /* after the reactors: every line is in */
	rtls_tls_ctx_free(tls);
	if (o->http.root_fd >= 0)
		close(o->http.root_fd);
	if (ret < 0) {
		fprintf(stderr, "ringtls: %s\n", strerror(-ret));
		return 1;
	}
	rtls_log(RTLS_LOG_INFO, "stopped");
	return 0;
}

static int serve(int argc, char **argv)
{
	struct cli_opts o;
	int ret = cli_parse_serve(argc, argv, &o, false);

	if (ret == 0)
		ret = run(&o);
	else
		ret = ret > 0 ? 0 : 2;
	cli_opts_free(&o);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return serve(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "check-config") == 0)
		return cli_check_config(argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "probe") == 0)
		return rtls_cli_probe();
	if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
		printf("ringtls %s\n", RTLS_VERSION_STRING);
		return 0;
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		cli_usage(stdout);
		return 0;
	}
	if (argc < 2) {
		/* No arguments: serve on the defaults, as the quick start says. */
		char *args[] = { argv[0], NULL };
		return serve(1, args);
	}
	fprintf(stderr, "ringtls: unknown command '%s' (try: ringtls serve, ringtls --help)\n", argv[1]);
	return 2;
}
