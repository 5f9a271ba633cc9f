/* The access log's writer: a ring of bytes per reactor thread, filled by
 * that reactor, emptied by one writer thread (DESIGN.md, "Access log").
 *
 * Each ring has one producer and one consumer, so two counters carry it:
 * the reactor stores `head` (release) after copying a whole line in, the
 * writer stores `tail` (release) after writing bytes out; neither ever
 * waits for the other. A line that does not fit is dropped and counted,
 * never waited for: a slow disk costs lines, not latency.
 *
 * The writer batches: after a pass that wrote something it sleeps
 * BATCH_MS, so a busy server costs one write(2) per ring per pass, not
 * one per request. After an empty pass it sleeps until woken, and a
 * reactor wakes it (one eventfd write) only when it finds it so asleep or
 * its ring a quarter full. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RING_SIZE ((size_t)1 << 20) /* per reactor thread; a power of two */
#define BATCH_MS 50
#define DROP_QUIET_MS 1000 /* no drop for this long ends an episode */
#define EXIT_WAIT_S 5      /* the most close waits for a stuck file */

struct ring {
	struct ring *next;         /* in the log's list, until the log is freed */
	char *buf;                 /* RING_SIZE bytes */
	char *scratch;             /* ALOG_LINE_MAX: the line being formatted */
	_Atomic size_t head, tail; /* bytes ever queued, ever written */
	_Atomic uint64_t dropped;  /* lines that did not fit */
	atomic_bool kicked;        /* woke the writer since its last pass */
};

struct rtls_alog {
	const char *path; /* NULL: standard output */
	int fd, efd;
	enum rtls_alog_format fmt;
	uint64_t id; /* tells this log from one freed before, per thread */
	pthread_t thread;
	_Atomic(struct ring *) rings;
	_Atomic uint64_t nomem; /* lines lost for want of a ring */
	atomic_bool idle, reopen, stop;
	/* the writer's own */
	uint64_t drops_seen, drop_episode, last_drop_ms;
	uint64_t lost; /* lines a failing write took */
	int werr;      /* errno of the failing writes, 0 when they work */
	bool mid_line; /* the last byte written is not a '\n' */
	bool torn;     /* ... and the rest of that line was lost */
};

static _Atomic uint64_t next_id = 1;

static const char *name_of(const struct rtls_alog *lg)
{
	return lg->path ? lg->path : "(standard output)";
}

static void wake(struct rtls_alog *lg)
{
	uint64_t one = 1;

	/* Non-blocking; the counter cannot overflow at one per pass. */
	if (write(lg->efd, &one, sizeof(one)) < 0) {
		/* the writer wakes at its next timeout anyway */
	}
}

/* ---- the reactor side ----------------------------------------------------- */

/* This thread's ring, made on its first line: per reactor, with no lock
 * after that. The id, not the pointer, says whose ring it is: a log freed
 * and another made at the same address must not find the old ring. */
static struct ring *my_ring(struct rtls_alog *lg)
{
	static _Thread_local struct ring *mine;
	static _Thread_local uint64_t mine_id;
	struct ring *r;

	if (mine && mine_id == lg->id)
		return mine;
	r = calloc(1, sizeof(*r));
	if (r) {
		r->buf = malloc(RING_SIZE);
		r->scratch = malloc(ALOG_LINE_MAX);
	}
	if (!r || !r->buf || !r->scratch) {
		if (r) {
			free(r->buf);
			free(r->scratch);
		}
		free(r);
		atomic_fetch_add_explicit(&lg->nomem, 1, memory_order_relaxed);
		return NULL;
	}
	r->next = atomic_load(&lg->rings);
	while (!atomic_compare_exchange_weak(&lg->rings, &r->next, r))
		;
	mine = r;
	mine_id = lg->id;
	return r;
}

char *rtls__alog_scratch(struct rtls_alog *lg)
{
	struct ring *r = my_ring(lg);

	return r ? r->scratch : NULL;
}

enum rtls_alog_format rtls__alog_format(const struct rtls_alog *lg)
{
	return lg->fmt;
}

/* At most once per writer pass per ring (the writer clears the flag): a
 * kick only cuts a nap short, so a late one costs at most BATCH_MS. */
static void kick(struct rtls_alog *lg, struct ring *r)
{
	if (!atomic_exchange_explicit(&r->kicked, true, memory_order_relaxed))
		wake(lg);
}

void rtls__alog_push(struct rtls_alog *lg, const char *line, size_t len)
{
	struct ring *r = my_ring(lg);
	size_t head, tail, at, first;

	if (!r)
		return;
	head = atomic_load_explicit(&r->head, memory_order_relaxed);
	tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (len > RING_SIZE - (head - tail)) {
		atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
		kick(lg, r);
		return;
	}
	at = head & (RING_SIZE - 1);
	first = len < RING_SIZE - at ? len : RING_SIZE - at;
	memcpy(r->buf + at, line, first);
	memcpy(r->buf, line + first, len - first);
	atomic_store_explicit(&r->head, head + len, memory_order_release);
	/* Pairs with the writer's fence between setting idle and looking at
	 * the rings: either it sees this line, or this sees it idle. The
	 * exchange makes one wake-up per sleep, whichever reactor is first. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&lg->idle, memory_order_relaxed) &&
	    atomic_exchange_explicit(&lg->idle, false, memory_order_relaxed))
		wake(lg);
	else if (head + len - tail > RING_SIZE / 4)
		kick(lg, r); /* wakes it early from its BATCH_MS nap */
}

/* ---- the writer ----------------------------------------------------------- */

/* A write failed with err: the rest of the batch is lost. One line on
 * stderr for the whole episode, however many requests it lasts. */
static void write_failed(struct rtls_alog *lg, int err, const char *rest, size_t n)
{
	const char *end = rest + n;

	for (const char *p = rest; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++)
		lg->lost++;
	if (lg->werr)
		return;
	lg->werr = err;
	rtls_log(RTLS_LOG_WARN, "access log %s: %s: lines are lost until it can be written again",
		 name_of(lg), strerror(err));
}

static void write_worked(struct rtls_alog *lg)
{
	if (!lg->werr)
		return;
	rtls_log(RTLS_LOG_WARN, "access log %s: written again; %llu line(s) lost", name_of(lg),
		 (unsigned long long)lg->lost);
	lg->werr = 0;
	lg->lost = 0;
}

/* write(2), all of it. A pipe that stays full for a second counts as a
 * failure too: the writer must come back to the other rings. */
static int write_all(int fd, const char *p, size_t n, size_t *done)
{
	int full_ms = 0;

	*done = 0;
	while (*done < n) {
		ssize_t w = write(fd, p + *done, n - *done);

		if (w > 0) {
			*done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN && full_ms < 1000) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			poll(&pfd, 1, 100);
			full_ms += 100;
			continue;
		}
		return w < 0 ? errno : EIO;
	}
	return 0;
}

static void write_out(struct rtls_alog *lg, const char *p, size_t n)
{
	size_t done;
	int err;

	if (lg->torn) {
		/* A line cut by a failed write: end it, so that the next line
		 * starts on a line of its own (a JSON reader sees one broken
		 * line, not two). */
		err = write_all(lg->fd, "\n", 1, &done);
		if (err) {
			write_failed(lg, err, p, n);
			return;
		}
		lg->torn = false;
	}
	/* A ring's bytes that wrap come in two calls: the first may well
	 * end inside a line that the second goes on with. */
	err = write_all(lg->fd, p, n, &done);
	if (done)
		lg->mid_line = p[done - 1] != '\n';
	if (err) {
		lg->torn = lg->mid_line;
		write_failed(lg, err, p + done, n - done);
		return;
	}
	write_worked(lg);
}

/* Writes out what every ring holds. Returns the bytes taken. */
static size_t drain(struct rtls_alog *lg)
{
	size_t total = 0;

	for (struct ring *r = atomic_load(&lg->rings); r; r = r->next) {
		size_t head, tail, at, n, first;

		atomic_store_explicit(&r->kicked, false, memory_order_relaxed);
		head = atomic_load_explicit(&r->head, memory_order_acquire);
		tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
		at = tail & (RING_SIZE - 1);
		n = head - tail;
		first = n < RING_SIZE - at ? n : RING_SIZE - at;
		if (!n)
			continue;
		write_out(lg, r->buf + at, first);
		if (n > first)
			write_out(lg, r->buf, n - first);
		atomic_store_explicit(&r->tail, head, memory_order_release);
		total += n;
	}
	return total;
}

static bool pending(struct rtls_alog *lg)
{
	for (struct ring *r = atomic_load(&lg->rings); r; r = r->next)
		if (atomic_load(&r->head) != atomic_load_explicit(&r->tail, memory_order_relaxed))
			return true;
	return false;
}

/* Lines the reactors dropped: one line when an episode starts, one with
 * the count when it has been quiet for DROP_QUIET_MS (or at the end). */
static void note_drops(struct rtls_alog *lg, bool last)
{
	uint64_t total = atomic_load_explicit(&lg->nomem, memory_order_relaxed),
		 now = rtls__http_now_ms();

	for (struct ring *r = atomic_load(&lg->rings); r; r = r->next)
		total += atomic_load_explicit(&r->dropped, memory_order_relaxed);
	if (total > lg->drops_seen) {
		if (!lg->drop_episode)
			rtls_log(RTLS_LOG_WARN,
				 "access log %s: writing falls behind: lines are dropped",
				 name_of(lg));
		lg->drop_episode += total - lg->drops_seen;
		lg->drops_seen = total;
		lg->last_drop_ms = now;
	}
	if (lg->drop_episode && (last || now - lg->last_drop_ms >= DROP_QUIET_MS)) {
		rtls_log(RTLS_LOG_WARN,
			 "access log %s: %llu line(s) dropped while writing fell behind",
			 name_of(lg), (unsigned long long)lg->drop_episode);
		lg->drop_episode = 0;
	}
}

/* logrotate has renamed the file: what was queued went to the old one
 * (drained just before); a file that cannot be opened keeps the old. */
static void do_reopen(struct rtls_alog *lg)
{
	int fd;

	if (!lg->path) {
		rtls_log(RTLS_LOG_INFO, "access log %s: nothing to reopen", name_of(lg));
		return;
	}
	fd = open(lg->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0) {
		rtls_log(RTLS_LOG_WARN,
			 "access log %s: reopen: %s; still writing to the file open before",
			 name_of(lg), strerror(errno));
		return;
	}
	close(lg->fd);
	lg->fd = fd;
	lg->mid_line = lg->torn = false;
	rtls_log(RTLS_LOG_INFO, "access log %s: reopened", name_of(lg));
}

static void nap(struct rtls_alog *lg, int ms)
{
	struct pollfd pfd = { .fd = lg->efd, .events = POLLIN };

	poll(&pfd, 1, ms);
}

static void *writer_main(void *arg)
{
	struct rtls_alog *lg = arg;
	uint64_t junk;

	for (;;) {
		bool stop = atomic_load(&lg->stop);
		size_t n;

		/* Reset the wake-ups first: one that comes during the pass
		 * leaves the next nap short. */
		if (read(lg->efd, &junk, sizeof(junk)) < 0) {
			/* nothing was pending */
		}
		n = drain(lg);
		note_drops(lg, stop);
		if (atomic_exchange(&lg->reopen, false))
			do_reopen(lg);
		if (stop)
			break; /* the reactors are gone: nothing more comes */
		if (n) {
			nap(lg, BATCH_MS);
			continue;
		}
		atomic_store(&lg->idle, true);
		atomic_thread_fence(memory_order_seq_cst); /* see rtls__alog_push */
		if (!pending(lg))
			nap(lg, lg->drop_episode ? DROP_QUIET_MS : -1);
		atomic_store(&lg->idle, false);
	}
	if (lg->werr)
		rtls_log(RTLS_LOG_WARN, "access log %s: %llu line(s) lost in all", name_of(lg),
			 (unsigned long long)lg->lost);
	return NULL;
}

/* ---- the program's side --------------------------------------------------- */

static void alog_free(struct rtls_alog *lg)
{
	struct ring *r = atomic_load(&lg->rings), *next;

	for (; r; r = next) {
		next = r->next;
		free(r->buf);
		free(r->scratch);
		free(r);
	}
	if (lg->fd >= 0)
		close(lg->fd);
	if (lg->efd >= 0)
		close(lg->efd);
	free(lg);
}

int rtls_http_alog_open(const char *path, enum rtls_alog_format fmt, struct rtls_alog **out)
{
	struct rtls_alog *lg = calloc(1, sizeof(*lg));
	sigset_t all, old;
	int ret;

	*out = NULL;
	if (!lg)
		return -ENOMEM;
	lg->fmt = fmt;
	lg->efd = -1;
	lg->id = atomic_fetch_add(&next_id, 1);
	if (strcmp(path, "-") == 0) {
		/* A copy of standard output, so that closing is the same. */
		lg->fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	} else {
		lg->path = path;
		lg->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	}
	if (lg->fd < 0)
		goto fail;
	lg->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (lg->efd < 0)
		goto fail;
	/* The writer blocks every signal: SIGUSR1, SIGINT and SIGTERM are
	 * for the program's thread, which waits for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&lg->thread, NULL, writer_main, lg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		errno = ret;
		goto fail;
	}
	*out = lg;
	return 0;
fail:
	ret = -errno;
	alog_free(lg);
	return ret;
}

void rtls_http_alog_reopen(struct rtls_alog *lg)
{
	if (!lg)
		return;
	atomic_store(&lg->reopen, true);
	wake(lg);
}

void rtls_http_alog_close(struct rtls_alog *lg)
{
	struct timespec until;

	if (!lg)
		return;
	atomic_store(&lg->stop, true);
	wake(lg);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += EXIT_WAIT_S;
	if (pthread_timedjoin_np(lg->thread, NULL, &until) != 0) {
		/* Stuck in a write(2) that does not return (a reader that
		 * stopped reading our standard output): give it up. */
		rtls_log(RTLS_LOG_WARN, "access log %s: not written for %d s at exit: lines lost",
			 name_of(lg), EXIT_WAIT_S);
		pthread_cancel(lg->thread);
		pthread_join(lg->thread, NULL);
	}
	alog_free(lg);
}
