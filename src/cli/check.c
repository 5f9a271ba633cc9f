/* `ringtls check-config --config FILE [options]`, the `nginx -t` of
 * ringtls: reads the file and the command line as `ringtls serve` would,
 * then opens everything they name (the root directory, every certificate
 * and key, the client CA bundle, the ticket key file) and builds a TLS
 * context from each, with the code the server uses (rtls_tls_ctx_new), so
 * that what passes here also loads there. It binds no socket and writes
 * nothing but a temporary self-signed pair when the file names none.
 * Each problem is one line, at the setting's place in the file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "core/internal.h" /* rtls__parse_addr */
#include "core/proxyproto.h"
#include "core/util.h"

struct check {
	struct cli_opts *o;
	unsigned problems;
	char tmp[4096]; /* a temporary state directory, or "" */
};

static void say(struct check *c, struct cli_at at, const char *msg)
{
	cli_config_say(c->o->config, at, msg);
	c->problems++;
}

/* Where option `name` was set, and how to call it there: "root" in the
 * file, "--root" on the command line. */
static struct cli_at opt_at(const struct check *c, const char *name, char *flag, size_t n)
{
	enum cli_kind kind;
	int opt = cli_opt_find(name, &kind);
	struct cli_at at = { 0, 0 };

	if (opt >= CLI_OPT_BASE)
		at = c->o->at[opt - CLI_OPT_BASE];
	snprintf(flag, n, "%s%s", at.line ? "" : "--", name);
	return at;
}

static void check_root(struct check *c)
{
	struct rtls_http_config *h = &c->o->http;
	char flag[64], msg[4400];
	struct cli_at at = opt_at(c, "root", flag, sizeof(flag));
	int ret;

	if (!h->root)
		return;
	ret = rtls_http_config_open(h);
	if (h->root_fd >= 0)
		close(h->root_fd);
	h->root_fd = -1;
	if (ret < 0) {
		snprintf(msg, sizeof(msg), "%s %s: %s", flag, h->root, strerror(-ret));
		say(c, at, msg);
	}
}

/* Those from the file were checked as it was read. */
static void check_listeners(struct check *c)
{
	const struct cli_opts *o = c->o;
	struct sockaddr_storage ss;
	socklen_t len;
	char msg[512];

	for (unsigned i = 0; i < o->nlisten; i++) {
		if (o->listen_at[i].line || rtls__parse_addr(o->listen[i].addr, &ss, &len) == 0)
			continue;
		snprintf(msg, sizeof(msg), "--%s %s: not an ADDR:PORT",
			 o->listen[i].tls ? "tls-listen" : "listen", o->listen[i].addr);
		say(c, o->listen_at[i], msg);
	}
}

/* admin-listen, from the file too: config.c reads it as a plain string. */
static void check_admin(struct check *c)
{
	const char *addr = c->o->admin_listen;
	struct sockaddr_storage ss;
	socklen_t len;
	char flag[64], msg[512];
	struct cli_at at = opt_at(c, "admin-listen", flag, sizeof(flag));

	if (!addr || rtls__parse_addr(addr, &ss, &len) == 0)
		return;
	snprintf(msg, sizeof(msg), "%s %s: not an ADDR:PORT", flag, addr);
	say(c, at, msg);
}

/* The sources that may send a PROXY header, with the parser the server
 * uses (rtls_server_create refuses the same strings). Each bad one is
 * reported; a file's entries are placed at the setting (the last entry's
 * line: entries have no place of their own). */
static void check_pp_sources(struct check *c)
{
	const struct cli_opts *o = c->o;
	struct rtls__cidr cidr;
	char flag[64], msg[512];
	struct cli_at at = opt_at(c, "proxy-protocol-from", flag, sizeof(flag));

	for (unsigned i = 0; i < o->npp_from; i++) {
		if (rtls__cidr_parse(o->pp_from[i], &cidr) == 0)
			continue;
		snprintf(msg, sizeof(msg), "%s: not an address or CIDR: '%s'", flag, o->pp_from[i]);
		say(c, at, msg);
	}
}

/* Like the TLS layer's own check, so that both files of a pair are
 * reported, not only the first that fails. */
static bool readable(struct check *c, const char *what, const char *path, struct cli_at at)
{
	char msg[4400];
	int err = -rtls__file_readable(path);

	if (!err)
		return true;
	snprintf(msg, sizeof(msg), "cannot read %s %s: %s", what, path, strerror(err));
	say(c, at, msg);
	return false;
}

/* Builds (and frees) a TLS context from t; false after saying why at `at`. */
static bool try_ctx(struct check *c, const struct rtls_tls_opts *t, struct cli_at at)
{
	struct rtls_tls_ctx *ctx;
	char why[4400];

	if (rtls_tls_ctx_new(t, &ctx, why, sizeof(why)) < 0) {
		say(c, at, why);
		return false;
	}
	rtls_tls_ctx_free(ctx);
	return true;
}

/* Every certificate and its key, each in a context of its own; the index
 * of the first good pair, or -1. */
static int check_pairs(struct check *c, const struct rtls_tls_opts *base)
{
	const struct cli_opts *o = c->o;
	int good = -1;

	for (unsigned i = 0; i < o->ncert_files; i++) {
		struct rtls_tls_opts t = *base;
		struct rtls_tls_ctx *ctx;
		char why[4400];
		bool ok = readable(c, "certificate", o->certs[i].cert_file, o->cert_at[i]);

		if (!readable(c, "key", o->certs[i].key_file, o->key_at[i]) || !ok)
			continue;
		t.certs = &o->certs[i];
		t.ncerts = 1;
		if (rtls_tls_ctx_new(&t, &ctx, why, sizeof(why)) < 0) {
			/* "key FILE: ...", "key FILE does not match ...": the key's line */
			say(c, strncmp(why, "key ", 4) == 0 ? o->key_at[i] : o->cert_at[i], why);
			continue;
		}
		rtls_tls_ctx_free(ctx);
		if (good < 0)
			good = (int)i;
	}
	return good;
}

/* The settings of the TLS context, each on its own over a good pair (or a
 * temporary self-signed one), so that each problem is found at its line. */
static void check_tls_settings(struct check *c, const struct rtls_tls_opts *base)
{
	const struct rtls_tls_opts *o = &c->o->tls;
	struct rtls_tls_opts t;
	char flag[64];
	struct cli_at at;

	t = *base;
	t.ciphers12 = o->ciphers12;
	if (o->ciphers12)
		try_ctx(c, &t, opt_at(c, "tls-ciphers", flag, sizeof(flag)));
	t = *base;
	t.ciphersuites13 = o->ciphersuites13;
	if (o->ciphersuites13)
		try_ctx(c, &t, opt_at(c, "tls13-ciphersuites", flag, sizeof(flag)));
	t = *base;
	t.no_tickets = false;
	t.ticket_key_file = o->ticket_key_file;
	if (o->ticket_key_file)
		try_ctx(c, &t, opt_at(c, "ticket-key-file", flag, sizeof(flag)));
	t = *base;
	t.client_ca = o->client_ca;
	t.client_auth = o->client_auth;
	at = opt_at(c, o->client_ca ? "client-ca" : "client-auth", flag, sizeof(flag));
	if (o->client_auth != RTLS_CLIENT_AUTH_NONE)
		try_ctx(c, &t, at);
}

static void remove_tmp(struct check *c)
{
	char p[4200];

	if (!c->tmp[0])
		return;
	snprintf(p, sizeof(p), "%s/selfsigned-cert.pem", c->tmp);
	unlink(p);
	snprintf(p, sizeof(p), "%s/selfsigned-key.pem", c->tmp);
	unlink(p);
	rmdir(c->tmp);
	c->tmp[0] = '\0';
}

static void check_tls(struct check *c)
{
	const struct cli_opts *o = c->o;
	struct rtls_tls_opts base;
	bool tls = false;
	int good;

	for (unsigned i = 0; i < o->nlisten; i++)
		tls |= o->listen[i].tls != 0;
	if (!tls)
		return;
	/* Kernel TLS is decided per connection; no tickets unless asked. */
	memset(&base, 0, sizeof(base));
	base.ktls = RTLS_KTLS_OFF;
	base.no_tickets = true;
	base.state_dir = o->state_dir;
	good = check_pairs(c, &base);
	if (good >= 0) {
		base.certs = &o->certs[good];
		base.ncerts = 1;
	} else {
		const char *dir = getenv("TMPDIR");

		snprintf(c->tmp, sizeof(c->tmp), "%s/ringtls-check-XXXXXX",
			 dir && *dir ? dir : "/tmp");
		if (!mkdtemp(c->tmp)) {
			say(c, (struct cli_at){ 0, 0 },
			    "cannot make a temporary directory for a test certificate");
			c->tmp[0] = '\0';
			return;
		}
		base.state_dir = c->tmp;
	}
	check_tls_settings(c, &base);
	remove_tmp(c);
}

int cli_check_config(int argc, char **argv)
{
	struct cli_opts o;
	struct check c;
	int ret = cli_parse_serve(argc, argv, &o, true);

	memset(&c, 0, sizeof(c));
	c.o = &o;
	rtls_log_set_level(RTLS_LOG_ERROR); /* the problems, not the progress */
	if (ret == 0 && !o.config) {
		fprintf(stderr, "ringtls: check-config needs --config FILE\n");
		ret = -1;
	}
	if (ret == 0) {
		check_root(&c);
		check_listeners(&c);
		check_admin(&c);
		check_pp_sources(&c);
		check_tls(&c);
	}
	cli_opts_free(&o);
	if (ret)
		return ret > 0 ? 0 : 2;
	if (o.problems || c.problems)
		return 2;
	printf("ringtls: %s: configuration OK\n", o.config);
	return 0;
}
