/* Running `ringtls serve`: signals, reloads and the generations they make.
 *
 * Two threads of the program's own, besides the reactors:
 * - the signal thread takes every signal (all others block them) and does
 *   what each asks: SIGINT/SIGTERM stop, SIGUSR1 reopens the access logs,
 *   SIGHUP reloads;
 * - the main thread waits for the generations' reactors: first for the
 *   stopped generations, oldest first (each ends within its
 *   --shutdown-timeout), then for the serving one, whose end (a stop, or
 *   a reactor that failed) ends the program.
 * A reload builds the next generation beside the serving one (gen.c): it
 * takes over the listening sockets the two have in common, so they never
 * stop listening. Once it runs it serves every new connection, and the old
 * one is stopped: it finishes what it has in flight and closes its idle
 * connections, as nginx's old workers do. A reload that fails changes
 * nothing and says one line. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "serve.h"
#include "systemd.h"

struct ctl {
	int argc;
	char **argv;
	sigset_t set;
	pthread_mutex_t lock;    /* cur, stopped, done, busy */
	struct cli_gen *cur;     /* serving */
	struct cli_gen *stopped; /* stopped, not yet waited for; oldest first */
	bool done;               /* the main thread is ending the program */
	/* The generation a reload is still stopping: the main thread, which
	 * may see it end first, frees it only once it is not (idle). */
	struct cli_gen *busy;
	pthread_cond_t idle;
	unsigned ids;
};

static void reopen_logs(struct ctl *t)
{
	bool any = false;

	pthread_mutex_lock(&t->lock);
	for (struct cli_gen *g = t->stopped; g; g = g->next)
		if (g->o.http.alog) {
			rtls_http_alog_reopen(g->o.http.alog);
			any = true;
		}
	if (t->cur->o.http.alog) {
		rtls_http_alog_reopen(t->cur->o.http.alog);
		any = true;
	}
	pthread_mutex_unlock(&t->lock);
	if (!any)
		rtls_log(RTLS_LOG_INFO, "SIGUSR1: no --access-log to reopen");
}

static void reload_failed(struct ctl *t, const char *why, unsigned lines)
{
	char more[96] = "", status[1100];

	if (lines > 1)
		snprintf(more, sizeof(more), " (and %u more; run ringtls check-config)", lines - 1);
	rtls_log(RTLS_LOG_ERROR, "SIGHUP: reload failed, still serving generation %u: %s%s",
		 t->cur->id, why[0] ? why : "unknown error", more);
	snprintf(status, sizeof(status), "Reload failed: %s", why);
	cli_notify_ready(status);
}

/* SIGHUP. Only this thread changes t->cur; the lock is for the main
 * thread, which reads it and may be ending the program. */
static void reload(struct ctl *t)
{
	struct cli_gen *g = NULL, *old;
	char why[1024];
	unsigned lines;
	int ret;

	cli_notify_reloading();
	cli_say_capture(why, sizeof(why));
	ret = cli_gen_new(t->argc, t->argv, t->cur, t->ids + 1, &g);
	if (ret == 0) {
		ret = rtls_server_start(g->s);
		if (ret < 0)
			cli_say("%s", strerror(-ret));
	}
	lines = cli_say_captured();
	if (ret != 0) {
		cli_gen_free(g);
		reload_failed(t, why, lines);
		return;
	}
	pthread_mutex_lock(&t->lock);
	if (t->done) { /* the serving generation ended meanwhile */
		pthread_mutex_unlock(&t->lock);
		cli_gen_free(g);
		return;
	}
	old = t->cur;
	t->cur = g;
	t->ids++;
	{
		struct cli_gen **p = &t->stopped;

		while (*p)
			p = &(*p)->next;
		*p = old;
	}
	t->busy = old;
	pthread_mutex_unlock(&t->lock);
	/* The new generation runs and listens on every socket the old one
	 * gave it. Once the old one accepts no more (its accepts cancelled,
	 * the listeners only it had closed), every new connection is the new
	 * one's: only then is the reload done. The old one finishes its work. */
	if (rtls_server_stop_accepting(old->s, 5000) < 0)
		rtls_log(RTLS_LOG_WARN, "generation %u: still accepting after 5 s", old->id);
	pthread_mutex_lock(&t->lock);
	t->busy = NULL;
	pthread_cond_broadcast(&t->idle);
	pthread_mutex_unlock(&t->lock);
	rtls_log_set_level(g->o.log_level);
	cli_gen_log_listeners(g);
	rtls_log(RTLS_LOG_INFO, "SIGHUP: reloaded (generation %u)", g->id);
	cli_notify_ready(NULL);
}

static void *signals(void *arg)
{
	struct ctl *t = arg;
	int sig = 0;

	for (;;) {
		bool done;

		if (sigwait(&t->set, &sig) != 0)
			return NULL;
		pthread_mutex_lock(&t->lock);
		done = t->done;
		pthread_mutex_unlock(&t->lock);
		if (done)
			return NULL;
		if (sig == SIGUSR1) /* logrotate's postrotate */
			reopen_logs(t);
		else if (sig == SIGHUP) /* systemctl reload */
			reload(t);
		else
			break;
	}
	rtls_log(RTLS_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	cli_notify_stopping(sig == SIGINT ? "SIGINT: shutting down" : "SIGTERM: shutting down");
	pthread_mutex_lock(&t->lock);
	rtls_server_stop(t->cur->s);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* The main thread: waits for each stopped generation, then for the
 * serving one; returns once that has ended (its result). */
static int wait_all(struct ctl *t)
{
	for (;;) {
		struct cli_gen *g;
		int ret;

		pthread_mutex_lock(&t->lock);
		g = t->stopped ? t->stopped : t->cur;
		pthread_mutex_unlock(&t->lock);
		ret = rtls_server_wait(g->s);
		pthread_mutex_lock(&t->lock);
		if (g == t->cur) {
			t->done = true;
			pthread_mutex_unlock(&t->lock);
			return ret;
		}
		t->stopped = g->next;
		while (t->busy == g)
			pthread_cond_wait(&t->idle, &t->lock);
		pthread_mutex_unlock(&t->lock);
		if (ret < 0)
			rtls_log(RTLS_LOG_WARN, "generation %u: %s", g->id, strerror(-ret));
		rtls_log(RTLS_LOG_INFO, "generation %u stopped", g->id);
		cli_gen_free(g);
	}
}

void cli_serve_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}

int cli_serve(struct cli_gen **gp, int argc, char **argv)
{
	struct cli_gen *g = *gp;
	struct ctl t = { .argc = argc, .argv = argv, .cur = g, .ids = g->id };
	pthread_t th;
	int ret;

	/* As rtls_server_run_until_signal(): the program's own writes (its
	 * log into a closed pipe) must not kill it. */
	signal(SIGPIPE, SIG_IGN);
	/* Blocked already (cli_serve_block_signals()); the reactors inherit
	 * the mask, and only sigwait() in the signal thread takes these. */
	cli_serve_block_signals(&t.set);
	pthread_mutex_init(&t.lock, NULL);
	pthread_cond_init(&t.idle, NULL);
	ret = rtls_server_start(g->s);
	if (ret < 0)
		goto out;
	ret = -pthread_create(&th, NULL, signals, &t);
	if (ret < 0) {
		rtls_server_stop(g->s);
		rtls_server_wait(g->s);
		goto out;
	}
	/* The listeners were bound (or adopted) by rtls_server_create() and
	 * queue connections from then on; each reactor accepts as soon as its
	 * ring is up. */
	cli_notify_ready(NULL);
	ret = wait_all(&t);
	/* Not a kill: every thread blocks SIGTERM, so it only wakes sigwait(). */
	pthread_kill(th, SIGTERM); /* NOLINT(bugprone-bad-signal-to-kill-thread) */
	pthread_join(th, NULL);
	/* A reload that came after the end began left its generation to us. */
	while (t.stopped) {
		struct cli_gen *s = t.stopped;

		t.stopped = s->next;
		rtls_server_stop(s->s);
		rtls_server_wait(s->s);
		rtls_log(RTLS_LOG_INFO, "generation %u stopped", s->id);
		cli_gen_free(s);
	}
	if (ret < 0)
		cli_notify_failed(ret);
out:
	pthread_mutex_destroy(&t.lock);
	pthread_cond_destroy(&t.idle);
	*gp = t.cur; /* the caller frees the last one */
	return ret;
}
