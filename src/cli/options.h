/* Command-line options of `ringtls serve`, and the settings of a --config
 * file, which name the same options (src/cli/config.c). */
#ifndef RTLS_CLI_OPTIONS_H
#define RTLS_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "http/http.h"
#include "ringtls/ringtls.h"
#include "ringtls/tls.h"

#define CLI_MAX_LISTEN 32
#define CLI_MAX_CERTS 16
#define CLI_MAX_PP_FROM 64
#define CLI_OPT_BASE 256 /* option ids are CLI_OPT_BASE .. + CLI_NOPTS - 1 */
#define CLI_NOPTS 54

/* Where a setting was given: line and column (from 1) in the --config
 * file; line 0 for the command line or a default. */
struct cli_at {
	unsigned line, col;
};

/* What a setting takes: a flag (a YAML boolean in a file), one value, a
 * list (listen, tls-listen; repeatable on the command line), or one half
 * of a certificate pair (cert, key: `certificates` in a file). */
enum cli_kind { CLI_FLAG, CLI_VALUE, CLI_LIST, CLI_PAIR };

struct cli_str; /* a string read from the --config file */

struct cli_opts {
	struct rtls_config cfg;
	struct rtls_http_config http;
	struct rtls_listen listen[CLI_MAX_LISTEN];
	unsigned nlisten;
	enum rtls_log_level log_level;
	struct rtls_tls_opts tls;
	struct rtls_tls_cert certs[CLI_MAX_CERTS];
	unsigned ncert_files, nkey_files;
	const char *pp_from[CLI_MAX_PP_FROM]; /* --proxy-protocol-from CIDRs */
	unsigned npp_from;
	const char *access_log;             /* --access-log FILE, "-", or NULL */
	bool access_log_json;               /* --access-log-format json */
	const char *admin_listen;           /* --admin-listen ADDR:PORT, or NULL */
	struct rtls_tls_client_opts up_tls; /* --upstream-ca, -cert, -key */
	char state_dir[4096];
	const char *config;          /* --config FILE, or NULL (borrowed from argv) */
	unsigned problems;           /* lines printed about the config file */
	int tls_opt;                 /* the first server-TLS option given, or 0 */
	int tls_both_opt;            /* ... of those TLS upstreams use too */
	struct cli_at at[CLI_NOPTS]; /* each option's place in the file */
	struct cli_at listen_at[CLI_MAX_LISTEN];
	struct cli_at cert_at[CLI_MAX_CERTS], key_at[CLI_MAX_CERTS];
	struct cli_str *strs; /* owned: what the pointers above borrow */
};

/* Parses argv (after "serve" or "check-config"): the --config file first,
 * then the command line on top of it; a list given on the command line
 * (--listen, --tls-listen, --cert/--key) replaces the file's. Returns 0,
 * 1 if --help/--version was handled (exit 0), or -1 after printing one
 * line per problem. With keep_going, settings the file gets wrong are
 * counted in o->problems and parsing goes on (check-config reports them
 * all). Call cli_opts_free() afterwards, whatever it returned. */
int cli_parse_serve(int argc, char **argv, struct cli_opts *o, bool keep_going);
void cli_opts_free(struct cli_opts *o);
void cli_usage(FILE *f);

/* The option a config key names (the long flag without its dashes), or
 * -1; *kind says what it takes. */
int cli_opt_find(const char *name, enum cli_kind *kind);
const char *cli_opt_name(int opt);

/* Applies one option's value (NULL for a flag). On a bad value writes one
 * line, naming the option as --NAME (dash) or NAME, into err[0..n) and
 * returns -1. arg is borrowed until cli_opts_free(). */
int cli_opt_apply(struct cli_opts *o, int opt, const char *arg, bool dash, char *err, size_t n);

/* A copy of s[0..len), NUL-terminated, freed by cli_opts_free(); NULL
 * when out of memory. */
const char *cli_opts_strdup(struct cli_opts *o, const char *s, size_t len);

#endif
