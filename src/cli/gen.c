/* Building one generation of `ringtls serve` (gen.h): everything a
 * configuration names is opened, loaded and bound here, before anything of
 * it runs, so that a start or a reload that cannot work fails whole. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "config.h"
#include "gen.h"
#include "http/accesslog.h"
#include "systemd.h"

void cli_gen_log_listeners(const struct cli_gen *g)
{
	const struct cli_opts *o = &g->o;

	for (unsigned i = 0; i < o->nlisten; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		char addr[80];
		const char *kind = o->listen[i].tls ? "https" : "http";

		if (rtls_server_listen_addr(g->s, i, &ss, &len) < 0)
			continue;
		rtls_format_addr(&ss, addr, sizeof(addr));
		if ((int)i == o->http.admin_listener)
			kind = "admin";
		rtls_log(RTLS_LOG_INFO, "listening on %s (%s)", addr, kind);
	}
}

static bool needs_tls(const struct cli_opts *o)
{
	for (unsigned i = 0; i < o->nlisten; i++)
		if (o->listen[i].tls)
			return true;
	return false;
}

/* The place an option was given, for a line about its value. */
static struct cli_at at_of(const struct cli_opts *o, const char *name)
{
	enum cli_kind kind;

	return o->at[cli_opt_find(name, &kind) - CLI_OPT_BASE];
}

/* --access-log: opened before the server runs, so that a path that
 * cannot be written stops the start with one line. */
static int open_access_log(struct cli_opts *o)
{
	struct cli_at at = at_of(o, "access-log");
	char msg[4400];
	int ret;

	if (!o->access_log)
		return 0;
	ret = rtls_http_alog_open(o->access_log,
				  o->access_log_json ? RTLS_ALOG_JSON : RTLS_ALOG_COMBINED,
				  &o->http.alog);
	if (ret == 0)
		return 0;
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
		cli_say("--admin-listen: at most %d listeners in all", CLI_MAX_LISTEN);
		return -1;
	}
	if (rtls_http_stats_init(&o->http) < 0) {
		cli_say("--admin-listen: %s", strerror(ENOMEM));
		return -1;
	}
	o->listen[o->nlisten] = (struct rtls_listen){ .addr = o->admin_listen };
	o->http.admin_listener = (int)o->nlisten++;
	o->cfg.nlisteners = o->nlisten;
	return 0;
}

/* Everything but the parse; -1 after one line. */
static int build(struct cli_gen *g, const struct cli_gen *prev)
{
	struct cli_opts *o = &g->o;
	char why[512];
	int ret;

	ret = rtls_http_config_open(&o->http);
	if (ret < 0) {
		struct cli_at at = at_of(o, "root");
		char msg[4400];

		snprintf(msg, sizeof(msg), "%s %s: %s", at.line ? "root" : "--root", o->http.root,
			 strerror(-ret));
		cli_config_say(o->config, at, msg);
		return -1;
	}
	o->cfg.handler = &rtls_http_handler;
	o->cfg.handler_ctx = &o->http;
	if (add_admin(o) < 0)
		return -1;
	if (cli_listen_fds(o, why, sizeof(why)) < 0) { /* systemd socket activation */
		cli_say("%s", why);
		return -1;
	}
	if (open_access_log(o) < 0)
		return -1;
	if (needs_tls(o)) {
		ret = rtls_tls_ctx_new(&o->tls, &g->tls, why, sizeof(why));
		if (ret < 0) {
			cli_say("%s", why);
			return -1;
		}
		o->cfg.tls = g->tls;
		o->http.live_tls = rtls_tls_live_ssl;
	}
	if (rtls_http_upstream_tls(&o->http)) {
		/* The client side follows the server side's kTLS settings. */
		o->up_tls.ktls = o->tls.ktls;
		o->up_tls.ktls_rx_no_rekey = o->tls.ktls_rx_no_rekey;
		o->up_tls.ktls_keyless = o->tls.ktls_keyless;
		o->up_tls.openssl_records = o->tls.openssl_records;
		o->up_tls.key_update_max_rate = o->tls.key_update_max_rate;
		ret = rtls_tls_client_ctx_new(&o->up_tls, &g->up_tls, why, sizeof(why));
		if (ret < 0) {
			cli_say("%s", why);
			return -1;
		}
		o->http.upstream_tls = g->up_tls;
	}
	ret = prev ? rtls_server_create_from(&o->cfg, prev->s, &g->s, why, sizeof(why))
		   : rtls_server_create(&o->cfg, &g->s, why, sizeof(why));
	if (ret < 0) {
		cli_say("%s", why);
		return -1;
	}
	o->http.server = g->s; /* for /metrics */
	return 0;
}

/* An empty --config file means the defaults at start; at a reload it is
 * far more likely a file caught half written (truncated, not yet filled):
 * serving the defaults would close every configured port. */
static bool empty_config(const struct cli_opts *o)
{
	struct stat st;

	if (!o->config || stat(o->config, &st) < 0 || st.st_size > 0)
		return false;
	cli_say("--config %s: empty; a reload keeps the running configuration (write the new "
		"file whole, then rename it into place)",
		o->config);
	return true;
}

int cli_gen_new(int argc, char **argv, const struct cli_gen *prev, unsigned id,
		struct cli_gen **out)
{
	struct cli_gen *g = calloc(1, sizeof(*g));
	int ret;

	*out = NULL;
	if (!g) {
		cli_say("%s", strerror(ENOMEM));
		return -1;
	}
	g->id = id;
	ret = cli_parse_serve(argc, argv, &g->o, false);
	if (ret == 0 && prev && empty_config(&g->o))
		ret = -1;
	/* At start, building logs at the level asked for (a reload keeps
	 * the running level until it is done). */
	if (ret == 0 && !prev)
		rtls_log_set_level(g->o.log_level);
	if (ret == 0 && build(g, prev) < 0)
		ret = -1;
	else if (ret < 0)
		ret = -2;
	if (ret != 0) {
		cli_gen_free(g);
		return ret;
	}
	*out = g;
	return 0;
}

void cli_gen_free(struct cli_gen *g)
{
	if (!g)
		return;
	rtls_server_destroy(g->s);
	rtls_http_alog_close(g->o.http.alog); /* after the reactors: every line is in */
	rtls_tls_ctx_free(g->tls);
	rtls_tls_ctx_free(g->up_tls);
	if (g->o.http.root_fd >= 0)
		close(g->o.http.root_fd);
	cli_opts_free(&g->o);
	free(g);
}
