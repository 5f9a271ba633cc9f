/* ringtls: the program. `ringtls serve` runs the HTTP server. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "gen.h"
#include "probe.h"
#include "serve.h"

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

/* glibc trims a thread arena's top with madvise as soon as more than 128
 * KiB is free there, and the next allocation faults every page back in.
 * The engine's own output blocks no longer go through malloc for every
 * response (the reactor's block caches, wbuf.c; with 64 connections a 16
 * KiB TLS response took 2.6-3.8 faults and 70-110 us of server CPU before
 * them instead of about 30, issue 20), but what those bounded caches do
 * not hold still does: OpenSSL's record buffers (SSL_MODE_RELEASE_BUFFERS
 * keeps idle connections small), and a busy reactor's output beyond the
 * cache's 8 MiB (64 connections of 1 MiB TLS responses have 32 MiB in
 * flight: 0.1 to 12 faults per response without these settings). Setting
 * the trim threshold also turns off glibc's moving mmap threshold, so
 * buffers up to 4 MiB stay in the arena too. The process then keeps up to
 * 32 MiB free per arena top instead of returning it. A program's choice,
 * not the library's: malloc settings are process-wide. */
static void tune_malloc(void)
{
	if (!mallopt(M_MMAP_THRESHOLD, 4 << 20) || !mallopt(M_TRIM_THRESHOLD, 32 << 20))
		rtls_log(RTLS_LOG_DEBUG, "mallopt refused: arena trimming left as it is");
}

static int serve(int argc, char **argv)
{
	struct cli_gen *g;
	sigset_t set;
	int ret;

	/* The first generation: its lines go to stderr as they come, and a
	 * configuration that does not parse exits 2, one that cannot be set
	 * up 1. cli_gen_new() sets the log level before it builds. */
	raise_nofile(); /* before the listeners and rings take descriptors */
	tune_malloc();
	/* Before the listeners exist: "listening on" may be what a script
	 * waits for before it sends SIGTERM. */
	cli_serve_block_signals(&set);
	ret = cli_gen_new(argc, argv, NULL, 1, &g);
	if (ret)
		return ret == 1 ? 0 : ret == -2 ? 2 : 1;
	/* Only once the listeners are bound: a start that fails says one line. */
	if (g->tls && rtls_tls_ctx_selfsigned_path(g->tls))
		rtls_log(
			RTLS_LOG_INFO,
			"TLS uses the self-signed certificate %s; trust it with "
			"curl --cacert %s, or copy it to /usr/local/share/ca-certificates/ringtls.crt "
			"and run update-ca-certificates",
			rtls_tls_ctx_selfsigned_path(g->tls), rtls_tls_ctx_selfsigned_path(g->tls));
	cli_gen_log_listeners(g);
	rtls_log(RTLS_LOG_INFO, "ringtls %s: %u reactor(s), serving %s on %s", RTLS_VERSION_STRING,
		 g->o.cfg.threads ? g->o.cfg.threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN),
		 g->o.http.root ? g->o.http.root : "the built-in page",
		 rtls_server_backend(g->s) == RTLS_BACKEND_EPOLL ? "epoll" : "io_uring");
	ret = cli_serve(&g, argc, argv); /* SIGINT/SIGTERM: graceful stop, exit 0 */
	cli_gen_free(g);
	if (ret < 0) {
		fprintf(stderr, "ringtls: %s\n", strerror(-ret));
		return 1;
	}
	rtls_log(RTLS_LOG_INFO, "stopped");
	return 0;
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
