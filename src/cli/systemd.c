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
	/* unset_environment: the variables name this process, not a child. */
	int nfds = sd_listen_fds(1);

	if (nfds < 0) {
		snprintf(why, n, "socket activation: LISTEN_FDS: %s", strerror(-nfds));
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
		rtls_log(RTLS_LOG_INFO, "socket activation: fd %d is %s (%s)", fd, addr,
			 o->listen[i].tls ? "https" : "http");
	}
	return nfds;
}

/* Each of these is one datagram to $NOTIFY_SOCKET; sd_notify() does
 * nothing without it, and a manager that went away is no reason to stop
 * serving, so their results are not looked at. */
void cli_notify_ready(void)
{
	(void)sd_notify(0, "READY=1\nSTATUS=Serving");
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

struct sigwaiter {
	rtls_server *s;
	struct rtls_alog *alog;
	sigset_t set;
	atomic_bool done; /* the server has stopped: a signal now only wakes us */
};

/* SIGINT and SIGTERM, on a thread of their own, so that the main thread
 * can wait for the reactors in rtls_server_wait() and still hear at once
 * of one that failed. Every thread blocks them: sigwait() here is the
 * only place they are taken. SIGHUP too, which would otherwise end the
 * process: `systemctl reload` (ExecReload=kill -HUP) must not stop a
 * server that has no reload yet. */
static void *wait_signal(void *arg)
{
	struct sigwaiter *w = arg;
	int sig = 0;

	for (;;) {
		if (sigwait(&w->set, &sig) != 0 || atomic_load(&w->done))
			return NULL;
		if (sig == SIGUSR1) { /* logrotate's postrotate */
			if (w->alog)
				rtls_http_alog_reopen(w->alog);
			else
				rtls_log(RTLS_LOG_INFO, "SIGUSR1: no --access-log to reopen");
			continue;
		}
		if (sig != SIGHUP)
			break;
		rtls_log(RTLS_LOG_WARN, "SIGHUP: ringtls cannot reload its settings yet; "
					"restart it to apply new ones");
	}
	rtls_log(RTLS_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	(void)sd_notifyf(0, "STOPPING=1\nSTATUS=%s: shutting down",
			 sig == SIGINT ? "SIGINT" : "SIGTERM");
	rtls_server_stop(w->s);
	return NULL;
}

int cli_serve_until_signal(rtls_server *s, struct rtls_alog *alog)
{
	struct sigwaiter w = { .s = s, .alog = alog };
	pthread_t t;
	int ret;

	/* As rtls_server_run_until_signal(): the program's own writes (its
	 * log into a closed pipe) must not kill it. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&w.set);
	sigaddset(&w.set, SIGINT);
	sigaddset(&w.set, SIGTERM);
	sigaddset(&w.set, SIGHUP);
	sigaddset(&w.set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &w.set, NULL);
	ret = rtls_server_start(s);
	if (ret < 0)
		return ret;
	ret = -pthread_create(&t, NULL, wait_signal, &w);
	if (ret < 0) {
		rtls_server_stop(s);
		rtls_server_wait(s);
		return ret;
	}
	/* The listeners were bound (or adopted) by rtls_server_create() and
	 * queue connections from then on; each reactor accepts as soon as its
	 * ring is up. */
	cli_notify_ready();
	ret = rtls_server_wait(s);
	atomic_store(&w.done, true);
	/* Not a kill: every thread blocks SIGTERM, so it only wakes sigwait(). */
	pthread_kill(t, SIGTERM); /* NOLINT(bugprone-bad-signal-to-kill-thread) */
	pthread_join(t, NULL);
	if (ret < 0)
		(void)sd_notifyf(0, "STATUS=Failed: %s\nERRNO=%d", strerror(-ret), -ret);
	return ret;
}
