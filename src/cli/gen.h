/* A generation of `ringtls serve`: one parse of the command line and the
 * --config file, and everything built from it (the TLS context, the access
 * log, the server with its reactors and listeners). A reload (SIGHUP)
 * builds the next generation beside the running one, starts it, then
 * stops the old one, which finishes what it has in flight (src/cli/serve.c,
 * docs/DESIGN.md "Reload"). */
#ifndef RTLS_CLI_GEN_H
#define RTLS_CLI_GEN_H

#include "options.h"

struct cli_gen {
	struct cli_opts o;
	struct rtls_tls_ctx *tls;    /* NULL without a TLS listener */
	struct rtls_tls_ctx *up_tls; /* NULL without a TLS upstream */
	rtls_server *s;
	unsigned id;          /* 1 for the first, then one more per reload */
	struct cli_gen *next; /* serve.c's list of stopped generations */
};

/* Parses argv (after "serve") and builds a generation on it, bound but not
 * started: its listeners take over prev's sockets where they name the same
 * address (prev may be NULL). Every problem is said through cli_say() or
 * cli_config_say(). Returns 0 with *out set; 1 if --help or --version was
 * handled; -2 for a command line or config file that does not parse; -1
 * when what it names cannot be set up (a certificate, a port in use...). */
int cli_gen_new(int argc, char **argv, const struct cli_gen *prev, unsigned id,
		struct cli_gen **out);

/* Logs its listeners ("listening on ADDR (http)"), once it runs. */
void cli_gen_log_listeners(const struct cli_gen *g);

/* Destroys the server (stopping it first if it runs), then frees what it
 * used. NULL is fine. */
void cli_gen_free(struct cli_gen *g);

#endif
