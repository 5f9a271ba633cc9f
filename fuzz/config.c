/* libFuzzer target for the --config loader: src/cli/config.c (libyaml's
 * event parser) and the option parsing it shares with the command line
 * (cli_opt_apply, src/cli/options.c).
 *
 * The input is the config file's bytes, fed to cli_config_load_mem() on a
 * fresh struct cli_opts, as `ringtls serve --config` would (before the
 * command line). Invariants, for any bytes:
 *  - the answer is 0, -1 or -2; 0 exactly when no problem was counted;
 *    -2 (not read at all) counts one problem and sets nothing else;
 *    never more than CLI_CONFIG_MAX_PROBLEMS;
 *  - every list is within its CLI_MAX_* bound, certificates come in
 *    pairs, and every entry has its place (line and column) in the file;
 *  - every string the loader stored is one it kept in o->strs, and fills
 *    its allocation exactly: NUL-terminated, with no NUL inside (ASan
 *    knows each allocation's size);
 *  - what the option parsers accepted is in range: listeners and CIDRs
 *    parse again, enums hold a named value, proxy routes are well formed;
 *  - nothing leaks once cli_opts_free() ran (LeakSanitizer).
 * Invariant failures abort(), which libFuzzer reports as a crash.
 *
 * The loader prints one line per problem on stderr: those go to
 * /dev/null, by pointing the stdio stream elsewhere during the call only,
 * so that libFuzzer's own lines (scripts/fuzz.sh reads its statistics),
 * the sanitizers' reports (fd 2) and failed checks still print.
 *
 * I/O: the loader opens nothing it is handed a name of (root, cert, key,
 * client-ca, ticket-key-file and access-log are only stored), but a proxy
 * upstream's host is resolved with getaddrinfo(). Linked with
 * -Wl,--wrap=getaddrinfo, that takes numeric hosts only here: a name is
 * EAI_NONAME, never a DNS query. */
#include "check.h"
#include "cli/config.h"
#include "cli/options.h"
#include "core/internal.h" /* rtls__parse_addr */
#include "core/proxyproto.h"
#include "http/internal.h" /* struct rtls_http_route */

#include <netdb.h>
#include <sanitizer/allocator_interface.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz.yaml"

int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res)
{
	struct addrinfo h = { 0 };

	if (hints)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
	return __real_getaddrinfo(node, service, &h, res);
}

/* options.c's struct cli_str, mirrored: a kept string is the tail of one
 * allocation. */
struct kept {
	struct kept *next;
	char s[];
};

static FILE *devnull;
static struct cli_opts fresh; /* what cli_parse_serve() loads the file into */

/* cli_parse_serve()'s start, which options.c keeps to itself. */
static void opts_init(struct cli_opts *o)
{
	memset(o, 0, sizeof(*o));
	rtls_http_config_defaults(&o->http);
	o->log_level = RTLS_LOG_INFO;
}

static int load(const char *buf, size_t len, struct cli_opts *o)
{
	FILE *err = stderr;
	int ret;

	stderr = devnull; /* glibc: stderr is a variable, as stdin and stdout */
	ret = cli_config_load_mem(NAME, buf, len, o);
	stderr = err;
	return ret;
}

/* Every kept string fills its allocation: no NUL inside, one at the end. */
static void check_kept(const struct cli_opts *o)
{
	for (const struct kept *k = (const void *)o->strs; k; k = k->next) {
		check(__sanitizer_get_ownership(k));
		check(__sanitizer_get_allocated_size(k) ==
		      offsetof(struct kept, s) + strlen(k->s) + 1);
	}
}

/* A string setting: NULL, or one of the kept strings. */
static void check_str(const struct cli_opts *o, const char *s)
{
	const struct kept *k = (const void *)o->strs;

	if (!s)
		return;
	while (k && k->s != s)
		k = k->next;
	check(k != NULL);
}

/* A place in the file: a line and column within its bytes. */
static void check_at(struct cli_at at, size_t size, bool given)
{
	check(!given || at.line > 0);
	check(at.line <= size + 1 && at.col <= size + 1);
	check((at.line == 0) == (at.col == 0));
}

static void check_lists(const struct cli_opts *o, size_t size)
{
	struct sockaddr_storage ss;
	struct rtls__cidr cidr;
	socklen_t len;

	check(o->nlisten <= CLI_MAX_LISTEN && o->npp_from <= CLI_MAX_PP_FROM);
	check(o->ncert_files <= CLI_MAX_CERTS && o->ncert_files == o->nkey_files);
	for (unsigned i = 0; i < o->nlisten; i++) {
		check_str(o, o->listen[i].addr);
		check(o->listen[i].addr && rtls__parse_addr(o->listen[i].addr, &ss, &len) == 0);
		check(o->listen[i].tls == 0 || o->listen[i].tls == 1);
		check_at(o->listen_at[i], size, true);
	}
	for (unsigned i = 0; i < o->ncert_files; i++) {
		check(o->certs[i].cert_file && o->certs[i].key_file);
		check_str(o, o->certs[i].cert_file);
		check_str(o, o->certs[i].key_file);
		check_at(o->cert_at[i], size, true);
		check_at(o->key_at[i], size, true);
	}
	for (unsigned i = 0; i < o->npp_from; i++) {
		check_str(o, o->pp_from[i]);
		check(o->pp_from[i] && rtls__cidr_parse(o->pp_from[i], &cidr) == 0);
	}
	for (unsigned i = 0; i < CLI_NOPTS; i++)
		check_at(o->at[i], size, false);
}

static void check_routes(const struct rtls_http_config *hc)
{
	check((hc->nroutes == 0) == (hc->routes == NULL));
	for (unsigned i = 0; i < hc->nroutes; i++) {
		const struct rtls_http_route *rt = &hc->routes[i];

		check(rt->prefix && strlen(rt->prefix) == rt->prefix_len && rt->prefix[0] == '/');
		check(rt->nups >= 1 && rt->nups <= 64);
		for (unsigned j = 0; j < rt->nups; j++)
			check(memchr(rt->ups[j].addr, 0, sizeof(rt->ups[j].addr)) &&
			      memchr(rt->ups[j].name, 0, sizeof(rt->ups[j].name)) &&
			      rt->ups[j].name[0]);
	}
}

/* What cli_opt_apply() accepted, each value in the range it checks. */
static void check_values(const struct cli_opts *o)
{
	check_str(o, o->http.root);
	check_str(o, o->tls.ciphers12);
	check_str(o, o->tls.ciphersuites13);
	check_str(o, o->tls.ticket_key_file);
	check_str(o, o->tls.client_ca);
	check_str(o, o->access_log);
	check_str(o, o->admin_listen);
	check(memchr(o->state_dir, 0, sizeof(o->state_dir)));
	check(o->log_level <= RTLS_LOG_DEBUG);
	check(o->tls.client_auth <= RTLS_CLIENT_AUTH_REQUIRE && o->tls.ktls <= RTLS_KTLS_ON);
	check(o->http.upstream_proxy_protocol >= 0 && o->http.upstream_proxy_protocol <= 2);
	check(o->cfg.threads <= 1024 && o->http.max_headers >= 1 && o->http.max_headers <= 256);
	check(o->http.max_head >= 64 && o->http.max_head <= 1u << 20);
	check(o->cfg.ring_entries == 0 ||
	      (o->cfg.ring_entries >= 8 && o->cfg.ring_entries <= 32768 &&
	       !(o->cfg.ring_entries & (o->cfg.ring_entries - 1))));
	check(o->http.proxy_keepalive <= 1024 && o->tls.key_update_max_rate <= 1000000);
	for (unsigned i = 0; i < RTLS_TIMER__COUNT; i++)
		check(o->cfg.timeout_ms[i] <= 86400000u);
	check(o->cfg.shutdown_ms <= 86400000u);
}

/* Over CLI_CONFIG_MAX_BYTES is refused before it is parsed; at the limit
 * it is read (a comment). */
static void check_limit(void)
{
	char *big = malloc(CLI_CONFIG_MAX_BYTES + 1);
	struct cli_opts o;

	check(big != NULL);
	memset(big, '#', CLI_CONFIG_MAX_BYTES + 1);
	opts_init(&o);
	check(load(big, CLI_CONFIG_MAX_BYTES + 1, &o) == -2 && o.problems == 1);
	cli_opts_free(&o);
	opts_init(&o);
	check(load(big, CLI_CONFIG_MAX_BYTES, &o) == 0 && o.problems == 0);
	cli_opts_free(&o);
	free(big);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	devnull = fopen("/dev/null", "w");
	check(devnull != NULL);
	opts_init(&fresh);
	check_limit();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cli_opts o;
	int ret;

	opts_init(&o);
	ret = load((const char *)data, size, &o);
	check(ret == 0 || ret == -1 || ret == -2);
	check((ret == 0) == (o.problems == 0));
	check(o.problems <= CLI_CONFIG_MAX_PROBLEMS);
	if (ret == -2) {
		/* Not read: one problem, and the settings as they were. */
		check(o.problems == 1);
		o.problems = 0;
		check(memcmp(&o, &fresh, sizeof(o)) == 0);
	}
	check_kept(&o);
	check_lists(&o, size);
	check_routes(&o.http);
	check_values(&o);
	cli_opts_free(&o);
	return 0;
}
