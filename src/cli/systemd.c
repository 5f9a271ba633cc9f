/* `ringtls serve` under systemd: sd_notify(3) readiness and
 * sd_listen_fds(3) socket activation, with libsystemd. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>
#include <systemd/sd-daemon.h>

#include "core/internal.h" /* rtls__parse_addr: the address syntax the listeners take */
#include "systemd.h"

/* Whether a passed socket's address, as rtls_format_addr() writes it, is
 * the one a listener names: the same family, address and port, compared
 * in that one canonical text ("localhost:80" and ":80" are parsed first).
 * A listening socket has a port, so port 0 (an ephemeral port, no
 * particular socket) never matches. */
static bool same_addr(const char *got, const char *want)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char canon[80];

	if (rtls__parse_addr(want, &ss, &len) < 0)
		return false;
	rtls_format_addr(&ss, canon, sizeof(canon));
	return strcmp(canon, got) == 0;
}

/* The first listener still without a socket whose address fd has, or -1. */
static int match(struct cli_opts *o, int fd, char *addr, size_t n)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len = sizeof(ss);

	snprintf(addr, n, "?");
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	rtls_format_addr(&ss, addr, n);
	for (unsigned i = 0; i < o->nlisten; i++)
		if (!o->listen[i].fd && same_addr(addr, o->listen[i].addr))
			return (int)i;
	return -1;
}

int cli_listen_fds(struct cli_opts *o, char *why, size_t n)
{
	/* Asked once: the sockets stay this process's for its life, and a
	 * reload matches the new configuration against them again.
	 * unset_environment: the variables name this process, not a child. */
	static int nfds = -1;
	static bool said;

	if (nfds < 0)
		nfds = sd_listen_fds(1);
	if (nfds < 0) {
		snprintf(why, n, "socket activation: LISTEN_FDS: %s", strerror(-nfds));
		nfds = -1;
		return -1;
	}
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + nfds; fd++) {
		char addr[80];
		int i;

		if (sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0) {
			snprintf(why, n, "socket activation: fd %d is not a listening TCP socket",
				 fd);
			return -1;
		}
		i = match(o, fd, addr, sizeof(addr));
		if (i < 0) {
			snprintf(why, n,
				 "socket activation: the socket passed as fd %d (%s) matches no "
				 "--listen or --tls-listen address",
				 fd, addr);
			return -1;
		}
		o->listen[i].fd = fd;
		if (!said)
			rtls_log(RTLS_LOG_INFO, "socket activation: fd %d is %s (%s)", fd, addr,
				 o->listen[i].tls ? "https" : "http");
	}
	said = true;
	return nfds;
}

/* Each of these is one datagram to $NOTIFY_SOCKET; sd_notify() does
 * nothing without it, and a manager that went away is no reason to stop
 * serving, so their results are not looked at. */
void cli_notify_ready(const char *status)
{
	(void)sd_notifyf(0, "READY=1\nSTATUS=%s", status ? status : "Serving");
}

/* MONOTONIC_USEC: Type=notify-reload (systemd 253) needs it to tell this
 * reload from an earlier one; Type=notify ignores it. */
void cli_notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	(void)sd_notifyf(0, "RELOADING=1\nSTATUS=Reloading\nMONOTONIC_USEC=%llu",
			 (unsigned long long)ts.tv_sec * 1000000ull +
				 (unsigned long long)ts.tv_nsec / 1000);
}

void cli_notify_stopping(const char *why)
{
	(void)sd_notifyf(0, "STOPPING=1\nSTATUS=%s", why);
}

void cli_notify_failed(int err)
{
	(void)sd_notifyf(0, "STATUS=Failed: %s\nERRNO=%d", strerror(-err), -err);
}
