/* The run calls (issue 19): rtls_server_start / wait / run / stop /
 * run_until_signal and destroy, through the public API only.
 * - wait before start is -EINVAL, a second start -EALREADY;
 * - start leaves the caller's signal mask as it was, and every reactor
 *   thread blocks every signal;
 * - stop from another thread ends wait (0, and 0 again); a stop before
 *   start makes the server stop as soon as it starts; destroy of a server
 *   started and never waited for stops and joins it;
 * - run_until_signal takes SIGTERM sent to the calling thread.
 * A hang is a failure: SIGALRM ends the test. 77 without io_uring. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ringtls/ringtls.h"
#include "unit/check.h"

static const struct rtls_handler handler = { 0 };

static int make(rtls_server **s)
{
	static const struct rtls_listen l = { .addr = "127.0.0.1:0" };
	struct rtls_config cfg = { .listeners = &l,
				   .nlisteners = 1,
				   .handler = &handler,
				   .threads = 2,
				   .max_conns = 16,
				   .buf_count = 16,
				   .ring_entries = 64,
				   .shutdown_ms = 2000 };
	char why[256];
	int ret = rtls_server_create(&cfg, s, why, sizeof(why));

	if (ret < 0)
		fprintf(stderr, "rtls_server_create: %s\n", why);
	return ret;
}

static void *stop_later(void *arg)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 100L * 1000 * 1000 };

	nanosleep(&ts, NULL);
	rtls_server_stop(arg);
	return NULL;
}

static void *term_later(void *arg)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 100L * 1000 * 1000 };

	nanosleep(&ts, NULL);
	/* Not a kill: the caller blocks SIGTERM and takes it with sigtimedwait(). */
	pthread_kill(*(pthread_t *)arg, SIGTERM); /* NOLINT(bugprone-bad-signal-to-kill-thread) */
	return NULL;
}

/* Threads of this process other than the caller (io-wq workers aside):
 * how many, and how many block SIGINT, SIGTERM, SIGPIPE and SIGHUP. */
static void reactor_masks(int *threads, int *blocking)
{
	const unsigned long long want = 1ull << (SIGINT - 1) | 1ull << (SIGTERM - 1) |
					1ull << (SIGPIPE - 1) | 1ull << (SIGHUP - 1);
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	*threads = *blocking = 0;
	while (d && (e = readdir(d))) {
		char path[300], line[256], name[64] = "";
		unsigned long long blk = 0;
		FILE *f;

		if (e->d_name[0] == '.' || atoi(e->d_name) == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			sscanf(line, "Name:\t%63s", name);
			sscanf(line, "SigBlk:\t%llx", &blk);
		}
		fclose(f);
		if (strncmp(name, "iou-", 4) == 0)
			continue;
		(*threads)++;
		*blocking += (blk & want) == want;
	}
	if (d)
		closedir(d);
}

static int same_mask(const sigset_t *a, const sigset_t *b)
{
	for (int sig = 1; sig < 32; sig++)
		if (sigismember(a, sig) != sigismember(b, sig))
			return 0;
	return 1;
}

int main(void)
{
	sigset_t before, after, term;
	rtls_server *s;
	pthread_t t, self = pthread_self();
	int ret, threads, blocking;

	alarm(60);
	ret = make(&s);
	if (ret == -ENOSYS || ret == -EPERM)
		return 77;
	CHECK_EQ_INT(ret, 0);
	if (ret < 0)
		CHECK_DONE();

	/* start and wait: misuse, masks, stop from another thread. */
	CHECK_EQ_INT(rtls_server_wait(s), -EINVAL);
	pthread_sigmask(SIG_SETMASK, NULL, &before);
	CHECK_EQ_INT(rtls_server_start(s), 0);
	pthread_sigmask(SIG_SETMASK, NULL, &after);
	CHECK(same_mask(&before, &after));
	CHECK(!sigismember(&after, SIGINT) && !sigismember(&after, SIGPIPE));
	CHECK_EQ_INT(rtls_server_start(s), -EALREADY);
	reactor_masks(&threads, &blocking);
	CHECK_EQ_INT(threads, 2);
	CHECK_EQ_INT(blocking, 2);
	pthread_create(&t, NULL, stop_later, s);
	CHECK_EQ_INT(rtls_server_wait(s), 0);
	CHECK_EQ_INT(rtls_server_wait(s), 0);
	pthread_join(t, NULL);
	rtls_server_destroy(s);

	/* A stop before start: the server stops as soon as it starts. */
	CHECK_EQ_INT(make(&s), 0);
	rtls_server_stop(s);
	CHECK_EQ_INT(rtls_server_run(s), 0);
	rtls_server_destroy(s);

	/* Started, never waited for: destroy stops and joins. */
	CHECK_EQ_INT(make(&s), 0);
	CHECK_EQ_INT(rtls_server_start(s), 0);
	rtls_server_destroy(s);
	/* pthread_join returns once the kernel clears the thread id; the
	 * thread leaves /proc/self/task a little later: allow 2 s. */
	for (int i = 0; i < 200; i++) {
		reactor_masks(&threads, &blocking);
		if (!threads)
			break;
		usleep(10000);
	}
	CHECK_EQ_INT(threads, 0);

	/* run: start + wait. */
	CHECK_EQ_INT(make(&s), 0);
	pthread_create(&t, NULL, stop_later, s);
	CHECK_EQ_INT(rtls_server_run(s), 0);
	pthread_join(t, NULL);
	rtls_server_destroy(s);

	/* run_until_signal: SIGTERM, thread-directed at the caller, which
	 * blocks it from here on (the call's contract). */
	CHECK_EQ_INT(make(&s), 0);
	/* Blocked before the signal can come: run_until_signal blocks it
	 * too, but the thread may fire before the call gets there. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	pthread_create(&t, NULL, term_later, &self);
	CHECK_EQ_INT(rtls_server_run_until_signal(s), 0);
	pthread_join(t, NULL);
	pthread_sigmask(SIG_SETMASK, NULL, &term);
	CHECK(sigismember(&term, SIGTERM) && sigismember(&term, SIGINT));
	rtls_server_destroy(s);
	CHECK_DONE();
}
