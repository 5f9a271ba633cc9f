/* `ringtls serve` once its first generation is built: signals, reloads
 * and the generations they make (serve.c). */
#ifndef RTLS_CLI_SERVE_H
#define RTLS_CLI_SERVE_H

#include <signal.h>
#include "gen.h"

/* Starts *g and serves until SIGINT or SIGTERM, or until a reactor of
 * the serving generation fails. SIGHUP reloads: the next generation is
 * built from argc/argv again (the --config file, certificates, keys,
 * ticket keys, client CA) and replaces the serving one, or one line says
 * why not; SIGUSR1 reopens the access logs. Tells systemd READY=1,
 * RELOADING=1, STOPPING=1. Every generation but the last is freed here;
 * *g is then the last, for the caller to free. Returns 0, or the negated
 * errno that ended it. */
int cli_serve(struct cli_gen **g, int argc, char **argv);
/* Blocks the signals cli_serve() takes (into *set), before anything is
 * logged: a SIGTERM sent as soon as "listening on" shows would otherwise
 * kill the process before cli_serve() could take it (exit status -15, not
 * a graceful stop). Pending, it stops the server once it runs. */
void cli_serve_block_signals(sigset_t *set);

#endif
