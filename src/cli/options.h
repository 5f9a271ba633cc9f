/* Command-line options of `ringtls serve`. */
#ifndef RTLS_CLI_OPTIONS_H
#define RTLS_CLI_OPTIONS_H

#include <stdio.h>

#include "http/http.h"
#include "ringtls/ringtls.h"
#include "ringtls/tls.h"

#define CLI_MAX_LISTEN 32

struct cli_opts {
	struct rtls_config cfg;
	struct rtls_http_config http;
	struct rtls_listen listen[CLI_MAX_LISTEN];
	unsigned nlisten;
	enum rtls_log_level log_level;
	struct rtls_tls_opts tls;
	struct rtls_tls_cert certs[16];
	unsigned ncert_files, nkey_files;
	char state_dir[4096];
};

/* Parses argv (after "serve"). Returns 0, 1 if --help/--version was
 * handled (exit 0), or -1 after printing one line about the error. */
int cli_parse_serve(int argc, char **argv, struct cli_opts *o);
void cli_usage(FILE *f);

#endif
