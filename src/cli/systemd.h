/* `ringtls serve` under systemd: readiness notification (sd_notify) and
 * socket activation (sd_listen_fds). Without NOTIFY_SOCKET and LISTEN_FDS
 * in the environment each of these does nothing. The program's, not
 * librtls's: the library takes over no process-wide state. */
#ifndef RTLS_CLI_SYSTEMD_H
#define RTLS_CLI_SYSTEMD_H

#include <stddef.h>

#include "http/accesslog.h"
#include "options.h"

/* Socket activation: gives each listener of o (--listen, --tls-listen)
 * the passed socket whose address is the listener's (family, address
 * and port; port 0 never matches), in o->listen[i].fd. A listener that
 * no passed socket matches is bound as usual; TLS or plain is the
 * option's. Returns the number of sockets taken (0 without LISTEN_FDS
 * for this process), or -1 after writing one line into why[0..n): a
 * passed socket that is not a listening TCP socket, or matches no
 * listener. The passed descriptors stay open: the server's reactors
 * accept on duplicates of them. */
int cli_listen_fds(struct cli_opts *o, char *why, size_t n);

/* READY=1: every listener is bound and the reactors run; also after a
 * reload, following cli_notify_reloading(), with STATUS=status (NULL:
 * "Serving"). */
void cli_notify_ready(const char *status);

/* RELOADING=1, for a SIGHUP reload (ExecReload=kill -HUP $MAINPID):
 * cli_notify_ready() follows when it has succeeded or failed. */
void cli_notify_reloading(void);

/* STOPPING=1 with STATUS=why. */
void cli_notify_stopping(const char *why);

/* STATUS= and ERRNO= for a server that failed (err: a negated errno). */
void cli_notify_failed(int err);

#endif
