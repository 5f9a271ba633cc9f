/* Server set-up and the reactor threads' life cycle. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include "internal.h"
#include "proxyproto.h"

/* Whether the reactor threads were started and joined: state of the
 * public run calls alone, kept beside struct rtls_server rather than in
 * it. Only the thread that owns the server (create, start, wait,
 * destroy) reads or writes it. */
enum run_state {
	RUN_IDLE,    /* created, no thread yet */
	RUN_STARTED, /* threads running or exited, not joined */
	RUN_JOINED,  /* every thread joined; result holds the outcome */
};

struct server_box {
	struct rtls_server s; /* first: a struct rtls_server * is its box */
	enum run_state run;
	int result;
};

static struct server_box *box_of(struct rtls_server *s)
{
	return (struct server_box *)(void *)s;
}

static const unsigned default_timeouts[RTLS_TIMER__COUNT] = {
	[RTLS_TIMER_IDLE] = 60000,      /* keep-alive */
	[RTLS_TIMER_HEADER] = 10000,    /* a whole request head */
	[RTLS_TIMER_HANDSHAKE] = 10000, /* TLS handshake */
	[RTLS_TIMER_LINGER] = 2000,     /* draining after our FIN */
	[RTLS_TIMER_CONNECT] = 5000,    /* rtls_conn_connect() */
	[RTLS_TIMER_RESPONSE] = 60000,  /* a proxied response head */
};

void rtls_config_defaults(struct rtls_config *cfg)
{
	long n;

	if (!cfg->threads) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->threads = n > 0 ? (unsigned)n : 1;
	}
	if (!cfg->max_conns)
		cfg->max_conns = 16384;
	if (!cfg->buf_count)
		cfg->buf_count = 1024;
	if (!cfg->buf_size)
		cfg->buf_size = 16384;
	if (!cfg->ring_entries)
		cfg->ring_entries = 1024;
	for (unsigned i = 1; i < RTLS_TIMER__COUNT; i++)
		if (!cfg->timeout_ms[i])
			cfg->timeout_ms[i] = default_timeouts[i];
	if (!cfg->shutdown_ms)
		cfg->shutdown_ms = 10000;
}

static atomic_bool fallback_said;

static int choose_backend(struct rtls_server *s, char *why, size_t whylen)
{
	int refused, ret = rtls__backend_pick(s->cfg.backend, &s->ring_flags, &refused);

	if (ret == -EINVAL) {
		const char *env = secure_getenv("RINGTLS_BACKEND");

		if (s->cfg.backend == RTLS_BACKEND_AUTO && env)
			snprintf(why, whylen, "RINGTLS_BACKEND=%.32s: not auto, io_uring or epoll",
				 env);
		else
			snprintf(why, whylen, "unknown backend %d", (int)s->cfg.backend);
		return ret;
	}
	if (ret < 0)
		return ret;
	/* Once a process: each reload makes a new server, and the reason
	 * has not changed (at debug level after the first). */
	if (refused)
		rtls_log(atomic_exchange(&fallback_said, true) ? RTLS_LOG_DEBUG : RTLS_LOG_INFO,
			 "io_uring is not available (io_uring_setup: %s): using the epoll backend",
			 strerror(-refused));
	s->backend = (enum rtls_backend)ret;
	return 0;
}

enum rtls_backend rtls_server_backend(const rtls_server *s)
{
	return s->backend;
}

static int validate(const struct rtls_config *cfg)
{
	if (!cfg->handler || !cfg->nlisteners || cfg->nlisteners > 255)
		return -EINVAL;
	if (cfg->threads > 1024 || cfg->max_conns > RTLS_MAX_SLOTS)
		return -EINVAL;
	if (cfg->buf_count & (cfg->buf_count - 1) || cfg->buf_count > 32768)
		return -EINVAL;
	if (cfg->buf_size < 512 || cfg->buf_size > (1u << 20))
		return -EINVAL;
	if (cfg->ring_entries & (cfg->ring_entries - 1) || cfg->ring_entries < 8 ||
	    cfg->ring_entries > 32768)
		return -EINVAL;
	for (unsigned i = 0; i < cfg->nlisteners; i++)
		if (cfg->listeners[i].tls && !cfg->tls)
			return -ENOPROTOOPT;
	return 0;
}

/* The sources that may send a PROXY header, parsed once. A string that
 * is not an address or CIDR fails the server, naming it; every failure
 * is described in why. */
static int pp_sources(struct rtls_server *s, char *why, size_t whylen)
{
	const struct rtls_config *cfg = &s->cfg;

	if (!cfg->nproxy_protocol_from)
		return 0;
	if (!cfg->proxy_protocol_from) {
		snprintf(why, whylen, "proxy-protocol-from: %u sources but no list",
			 cfg->nproxy_protocol_from);
		return -EINVAL;
	}
	s->pp_from = calloc(cfg->nproxy_protocol_from, sizeof(*s->pp_from));
	if (!s->pp_from) {
		snprintf(why, whylen, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	for (unsigned i = 0; i < cfg->nproxy_protocol_from; i++) {
		const char *src = cfg->proxy_protocol_from[i];

		if (!src || rtls__cidr_parse(src, &s->pp_from[i]) < 0) {
			snprintf(why, whylen, "proxy-protocol-from: not an address or CIDR: '%s'",
				 src ? src : "(null)");
			return -EINVAL;
		}
	}
	s->npp_from = cfg->nproxy_protocol_from;
	s->pp_begin = rtls__pp_begin;
	return 0;
}

/* Makes r safe for reactor_free() before anything can fail: every
 * descriptor it may close reads -1, not calloc's 0 (standard input). */
static void reactor_init(struct rtls_server *s, struct rtls__reactor *r, unsigned id)
{
	r->srv = s;
	r->id = id;
	r->wake_fd = -1;
}

static int reactor_alloc(struct rtls_server *s, struct rtls__reactor *r)
{
	const struct rtls_config *cfg = &s->cfg;

	r->ls = calloc(s->nlisteners, sizeof(*r->ls));
	if (!r->ls)
		return -ENOMEM;
	for (unsigned i = 0; i < s->nlisteners; i++)
		r->ls[i].fd = -1;
	/* calloc of large arrays maps zero pages: slots cost memory only once
	 * a connection has used them. */
	r->conns = calloc(cfg->max_conns, sizeof(*r->conns));
	r->free_slots = calloc(cfg->max_conns, sizeof(*r->free_slots));
	r->starved = calloc(cfg->max_conns, sizeof(*r->starved));
	r->reap = calloc(cfg->max_conns, sizeof(*r->reap));
	r->pipecap = 64;
	r->pipe_pool = calloc((size_t)2 * r->pipecap, sizeof(int));
	if (s->handler.conn_data_size)
		r->conn_data = calloc(cfg->max_conns, s->handler.conn_data_size);
	if (s->tls_conn_size) {
		r->tp_data = calloc(cfg->max_conns, s->tls_conn_size);
		r->tp_size = s->tls_conn_size;
	}
	if (!r->conns || !r->free_slots || !r->starved || !r->reap || !r->pipe_pool ||
	    (s->handler.conn_data_size && !r->conn_data) || (s->tls_conn_size && !r->tp_data))
		return -ENOMEM;
	/* Hand out low slots first: they are the pages already touched. */
	for (unsigned i = 0; i < cfg->max_conns; i++)
		r->free_slots[i] = cfg->max_conns - 1 - i;
	r->nfree = cfg->max_conns;
	return 0;
}

/* A connection still live here (the reactor stopped on a ring error) is
 * ended for its handler and transport first, while the ring still exists:
 * an on_close that calls rtls_conn_close() or rtls_conn_flush() reaches
 * rtls__sqe(), and after io_uring_queue_exit() the SQ ring is unmapped.
 * What it queues is never submitted.
 *
 * Then the ring goes, before any memory. A reactor cut at its shutdown
 * deadline, or stopped on a ring error, may have had sends and splices
 * reading output buffers and receives writing into the provided buffers.
 * The guarantee is the drain in reactor_loop(), which waited for the
 * completions of every request that could finish. Closing the ring does
 * not wait for anything: it removes poll-armed requests at once and
 * cancels io-wq work asynchronously; an io-wq splice holds references on
 * its files, not on our memory. Only then the memory and the descriptors
 * go. */
static void reactor_free(struct rtls_server *s, struct rtls__reactor *r)
{
	if (r->conns)
		for (unsigned i = 0; i < s->cfg.max_conns; i++)
			if (r->conns[i].state != RTLS__CONN_FREE)
				rtls__conn_orphan(&r->conns[i]);
	rtls__ring_exit(r);
	if (r->ls)
		for (unsigned i = 0; i < s->nlisteners; i++)
			if (r->ls[i].fd >= 0)
				close(r->ls[i].fd);
	rtls__pipes_free(r);
	rtls__small_cache_free(&r->small);
	rtls__big_cache_free(&r->big);
	if (r->conns)
		for (unsigned i = 0; i < s->cfg.max_conns; i++) {
			if (r->conns[i].state == RTLS__CONN_FREE)
				continue;
			if (r->conns[i].fd >= 0)
				close(r->conns[i].fd);
			rtls__wbuf_free(&r->conns[i].w[0]);
			rtls__wbuf_free(&r->conns[i].w[1]);
			free(r->conns[i].paused_q);
			free(r->conns[i].pp);
			if (!r->conns[i].ctl_borrowed)
				free(r->conns[i].ctl);
			if (r->conns[i].pipe[0] >= 0) {
				close(r->conns[i].pipe[0]);
				close(r->conns[i].pipe[1]);
			}
		}
	rtls__bufring_free(r);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	free(r->ls);
	free(r->conns);
	free(r->free_slots);
	free(r->starved);
	free(r->reap);
	free(r->pipe_pool);
	free(r->conn_data);
	free(r->tp_data);
	free(r->seal_buf);
}

/* Listener i is a socket handed over (rtls_listen.fd): each reactor
 * accepts on a duplicate of its own (close-on-exec), so each closes its
 * own at stop and the caller's stays open. Several rings' multishot
 * accepts on one listening socket work: io_uring waits for an accept
 * exclusively, so a connection wakes one reactor, whichever waits; the
 * even spread of SO_REUSEPORT is lost. */
static int adopt_listener(struct rtls_server *s, unsigned i)
{
	int fd = s->cfg.listeners[i].fd, ret;

	s->bound_len[i] = sizeof(s->bound[i]);
	ret = rtls__listen_adopt(fd, &s->bound[i], &s->bound_len[i]);
	if (ret < 0)
		return ret;
	for (unsigned k = 0; k < s->nreactors; k++) {
		ret = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (ret < 0)
			return -errno;
		s->rs[k].ls[i].fd = ret;
		s->rs[k].ls[i].tls = s->cfg.listeners[i].tls != 0;
		s->rs[k].ls[i].adopted = true;
	}
	return 0;
}

/* Binds listener i on every reactor. With port 0 the first bind picks the
 * port and the others reuse it, so all reactors share one address. */
static int bind_listener(struct rtls_server *s, unsigned i)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int ret;

	if (s->cfg.listeners[i].fd)
		return adopt_listener(s, i);
	ret = rtls__parse_addr(s->cfg.listeners[i].addr, &ss, &len);
	if (ret < 0)
		return ret;
	for (unsigned k = 0; k < s->nreactors; k++) {
		ret = rtls__listen_socket(&ss, len);
		if (ret < 0)
			return ret;
		s->rs[k].ls[i].fd = ret;
		s->rs[k].ls[i].tls = s->cfg.listeners[i].tls != 0;
		if (k == 0) {
			s->bound_len[i] = sizeof(s->bound[i]);
			if (getsockname(ret, (struct sockaddr *)&s->bound[i], &s->bound_len[i]) < 0)
				return -errno;
			ss = s->bound[i];
		}
	}
	return 0;
}

/* Whether a listener configured as addr (parsed: ss) names prev's
 * listener j: the same text (so "127.0.0.1:0" keeps its ephemeral port
 * across a reload), or the same family, address and a port that is not 0. */
static bool same_listener(const struct rtls_server *prev, unsigned j, const char *addr,
			  const struct sockaddr_storage *ss)
{
	const struct sockaddr_storage *b = &prev->bound[j];
	const char *was = prev->cfg.listeners[j].addr;

	if (was && addr && strcmp(was, addr) == 0)
		return true;
	if (ss->ss_family != b->ss_family)
		return false;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)ss, *y = (const void *)b;

		return x->sin_port && x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)ss, *y = (const void *)b;

		return x->sin6_port && x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

/* Records that our listener i takes over prev's listener j (adopted: both
 * were handed the same socket). */
static void take(struct rtls_server *s, unsigned i, unsigned j, bool adopted)
{
	s->taken[s->ntaken++] = (struct rtls__taken){ .ours = i, .prev = j, .adopted = adopted };
}

/* Listener i to be taken over from prev (recorded in s->taken), or bound. */
static int plan_listener(struct rtls_server *s, unsigned i, struct rtls_server *prev)
{
	const struct rtls_listen *l = &s->cfg.listeners[i];
	struct sockaddr_storage ss;
	socklen_t len;

	if (prev && l->fd) {
		/* A socket handed to both (socket activation): each adopts it,
		 * but the two wait on it side by side all the same, so it is
		 * watched as one taken over (struct rtls__handover). */
		int ret = bind_listener(s, i);

		for (unsigned j = 0; ret == 0 && j < prev->nlisteners; j++)
			if (prev->cfg.listeners[j].fd == l->fd) {
				take(s, i, j, true);
				break;
			}
		return ret;
	}
	if (!prev || rtls__parse_addr(l->addr, &ss, &len) < 0)
		return bind_listener(s, i);
	/* A listener of the same kind (TLS or not) first: "127.0.0.1:0"
	 * given for both keeps each its own port. */
	for (unsigned pass = 0; pass < 2; pass++)
		for (unsigned j = 0; j < prev->nlisteners; j++) {
			bool used = false;

			for (unsigned t = 0; t < s->ntaken; t++)
				used |= s->taken[t].prev == j;
			if (used || !prev->bound_len[j] || !same_listener(prev, j, l->addr, &ss) ||
			    (pass == 0 && !prev->cfg.listeners[j].tls != !l->tls))
				continue;
			take(s, i, j, false);
			s->bound[i] = prev->bound[j];
			s->bound_len[i] = prev->bound_len[j];
			return 0;
		}
	return bind_listener(s, i);
}

/* Reactor k's socket for listener i, from prev's listener j: a duplicate
 * of prev's reactor k socket, or of its one socket where it was handed one
 * (rtls_listen.fd); a new socket in the SO_REUSEPORT group where prev has
 * fewer reactors, or where prev's reactor k has stopped already. Under
 * prev->ls_lock. */
static int take_socket(struct rtls_server *s, unsigned k, unsigned i, struct rtls_server *prev,
		       unsigned j)
{
	struct rtls__listener *from = NULL;
	int fd;

	if (k < prev->nreactors && prev->rs[k].ls[j].fd >= 0)
		from = &prev->rs[k].ls[j];
	else if (prev->rs[0].ls[j].adopted && prev->rs[0].ls[j].fd >= 0)
		from = &prev->rs[0].ls[j];
	if (from) {
		fd = fcntl(from->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return -errno;
		s->rs[k].ls[i].adopted = from->adopted;
	} else {
		fd = rtls__listen_socket(&s->bound[i], s->bound_len[i]);
		if (fd < 0)
			return fd;
	}
	s->rs[k].ls[i].fd = fd;
	s->rs[k].ls[i].tls = s->cfg.listeners[i].tls != 0;
	s->rs[k].ls[i].inherited = from != NULL;
	return 0;
}

/* The commit of rtls_server_create_from(): every socket is taken, then
 * prev learns which are handed over, all under its lock, so that none of
 * its reactors shuts one down in between. Nothing changes in prev unless
 * all succeed. */
static int take_listeners(struct rtls_server *s, struct rtls_server *prev)
{
	struct rtls__handover *h = calloc(1, sizeof(*h));
	int ret = h ? 0 : -ENOMEM;

	if (h)
		atomic_init(&h->refs, 1); /* ours */
	pthread_mutex_lock(&prev->ls_lock);
	for (unsigned t = 0; t < s->ntaken && ret == 0; t++)
		for (unsigned k = 0; k < s->nreactors && ret == 0; k++) {
			const struct rtls__taken *p = &s->taken[t];

			if (p->adopted) /* adopted already */
				s->rs[k].ls[p->ours].inherited = true;
			else
				ret = take_socket(s, k, p->ours, prev, p->prev);
		}
	/* Taken over already by a server that still may run: one successor
	 * at a time (give_back() would undo the other's). */
	for (unsigned k = 0; k < prev->nreactors && ret == 0; k++)
		for (unsigned t = 0; t < s->ntaken && ret == 0; t++)
			if (prev->rs[k].ls[s->taken[t].prev].handed)
				ret = -EBUSY;
	for (unsigned k = 0; k < prev->nreactors && ret == 0; k++) {
		struct rtls__reactor *pr = &prev->rs[k];
		bool any = false;

		for (unsigned t = 0; t < s->ntaken; t++) {
			const struct rtls__taken *p = &s->taken[t];
			struct rtls__listener *l = &pr->ls[p->prev];

			/* Only what we share: where we have fewer reactors,
			 * prev's others are left its own to empty and close. */
			if (l->fd < 0 || !(p->adopted || l->adopted || k < s->nreactors))
				continue;
			any = true;
			if (!p->adopted)
				l->handed = true;
		}
		/* One handover at a time: a successor destroyed unrun gave its
		 * own back (give_back()). */
		if (any && !pr->ho_out) {
			pr->ho_out = h;
			atomic_fetch_add(&h->pending, 1);
			atomic_fetch_add(&h->refs, 1);
		}
	}
	pthread_mutex_unlock(&prev->ls_lock);
	if (ret < 0) {
		free(h);
		return ret;
	}
	s->prev = prev;
	s->ho_in = h;
	return 0;
}

/* Destroyed without having run: prev empties and shuts down its sockets
 * at its stop again, as nobody else listens on them. */
static void give_back(struct rtls_server *s)
{
	struct rtls_server *prev = s->prev;

	if (!prev)
		return;
	pthread_mutex_lock(&prev->ls_lock);
	for (unsigned k = 0; k < prev->nreactors; k++) {
		for (unsigned t = 0; t < s->ntaken; t++)
			prev->rs[k].ls[s->taken[t].prev].handed = false;
		if (s->ho_in && prev->rs[k].ho_out == s->ho_in) {
			prev->rs[k].ho_out = NULL;
			atomic_fetch_sub(&s->ho_in->pending, 1);
			rtls__handover_put(s->ho_in);
		}
	}
	pthread_mutex_unlock(&prev->ls_lock);
	s->prev = NULL;
}

static int create(const struct rtls_config *cfg, struct rtls_server *prev, rtls_server **out,
		  char *why, size_t whylen)
{
	struct server_box *b;
	struct rtls_server *s;
	int ret;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(why, whylen, "%s", strerror(ENOMEM));
		return -ENOMEM;
	}
	s = &b->s;
	pthread_mutex_init(&s->ls_lock, NULL);
	pthread_mutex_init(&s->quiet_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->quiet_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	s->cfg = *cfg;
	rtls_config_defaults(&s->cfg);
	ret = validate(&s->cfg);
	if (ret < 0)
		goto err;
	s->handler = *cfg->handler;
	s->nlisteners = s->cfg.nlisteners;
	ret = pp_sources(s, why, whylen);
	if (ret < 0)
		goto err_described;
	if (s->cfg.tls) {
		const struct rtls__tls_hooks *h = (const void *)s->cfg.tls;

		s->tls_attach = h->attach;
		s->tls_conn_size = h->conn_size;
	}
	ret = choose_backend(s, why, whylen);
	if (ret == -EINVAL)
		goto err_described;
	if (ret < 0)
		goto err;
	s->nreactors = s->cfg.threads;
	s->rs = calloc(s->nreactors, sizeof(*s->rs));
	for (unsigned k = 0; s->rs && k < s->nreactors; k++)
		reactor_init(s, &s->rs[k], k);
	s->bound = calloc(s->nlisteners, sizeof(*s->bound));
	s->bound_len = calloc(s->nlisteners, sizeof(*s->bound_len));
	s->taken = calloc((size_t)s->nlisteners + 1, sizeof(*s->taken));
	if (!s->rs || !s->bound || !s->bound_len || !s->taken) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned k = 0; k < s->nreactors; k++) {
		ret = reactor_alloc(s, &s->rs[k]);
		if (ret < 0)
			goto err;
	}
	for (unsigned i = 0; i < s->nlisteners; i++) {
		const struct rtls_listen *l = &s->cfg.listeners[i];

		ret = plan_listener(s, i, prev);
		if (ret < 0 && l->fd)
			snprintf(why, whylen, "listen fd %d (%s): %s", l->fd,
				 l->addr ? l->addr : "-",
				 ret == -ENOTSOCK ? "not a listening TCP socket" : strerror(-ret));
		else if (ret < 0)
			snprintf(why, whylen, "listen %s: %s", l->addr,
				 ret == -EINVAL ? "not an ADDR:PORT" : strerror(-ret));
		if (ret < 0)
			goto err_described;
	}
	if (s->ntaken) {
		ret = take_listeners(s, prev);
		if (ret == -EBUSY) {
			snprintf(why, whylen,
				 "the listeners are taken over by another server already");
			goto err_described;
		}
		if (ret < 0)
			goto err;
	}
	*out = s;
	return 0;
err:
	if (ret == -ENOSYS || ret == -EPERM)
		snprintf(why, whylen, "io_uring is not available (io_uring_setup: %s): the kernel "
			 "lacks it, kernel.io_uring_disabled is set, or a seccomp filter "
			 "(e.g. a container's default profile) blocks it", strerror(-ret));
	else if (ret == -ENOPROTOOPT)
		snprintf(why, whylen, "a TLS listener needs a TLS context");
	else if (ret == -EINVAL)
		snprintf(why, whylen, "invalid configuration");
	else
		snprintf(why, whylen, "%s", strerror(-ret));
err_described:
	rtls_server_destroy(s);
	*out = NULL;
	return ret;
}

int rtls_server_create(const struct rtls_config *cfg, rtls_server **out, char *why, size_t whylen)
{
	return create(cfg, NULL, out, why, whylen);
}

int rtls_server_create_from(const struct rtls_config *cfg, rtls_server *prev, rtls_server **out,
			    char *why, size_t whylen)
{
	if (!prev) {
		*out = NULL;
		snprintf(why, whylen, "%s", strerror(EINVAL));
		return -EINVAL;
	}
	return create(cfg, prev, out, why, whylen);
}

int rtls_server_listen_addr(const rtls_server *s, unsigned i,
			    struct sockaddr_storage *ss, socklen_t *len)
{
	if (i >= s->nlisteners || !s->bound_len[i])
		return -EINVAL;
	*ss = s->bound[i];
	*len = s->bound_len[i];
	return 0;
}

static void wake_all(struct rtls_server *s)
{
	uint64_t one = 1;

	for (unsigned k = 0; k < s->nreactors; k++)
		if (s->rs[k].wake_fd >= 0 && write(s->rs[k].wake_fd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: a wake-up is pending anyway */
		}
}

void rtls_server_stop(rtls_server *s)
{
	atomic_store(&s->stop, true);
	wake_all(s);
}

/* The reactor thread's body, and what a reactor that failed owes the
 * others: stop them, so that rtls_server_wait(), joining in order, does
 * not wait forever on a healthy reactor. rtls__reactor_main() has logged
 * the error and kept it in r->err. */
int rtls_server_stop_accepting(rtls_server *s, unsigned timeout_ms)
{
	struct timespec until;
	int ret = 0;

	rtls_server_stop(s);
	if (box_of(s)->run != RUN_STARTED)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->quiet_lock);
	while (s->quiet < s->nreactors && ret == 0)
		ret = -pthread_cond_timedwait(&s->quiet_cond, &s->quiet_lock, &until);
	pthread_mutex_unlock(&s->quiet_lock);
	return ret;
}

static void *reactor_thread(void *arg)
{
	struct rtls__reactor *r = arg;

	rtls__reactor_main(r);
	if (r->err)
		rtls_server_stop(r->srv);
	return NULL;
}

static void join(struct rtls_server *s, unsigned n)
{
	for (unsigned k = 0; k < n; k++)
		pthread_join(s->rs[k].thread, NULL);
}

/* The reactors run with every signal blocked, so the application's
 * signal handling stays its own: a process-directed signal is never
 * delivered to a reactor. SIGPIPE needs no SIG_IGN either. Sends carry
 * MSG_NOSIGNAL; a splice cannot, and one into a socket the peer has reset
 * raises SIGPIPE in the thread that ran it: an io-wq worker (io_uring
 * runs every splice there, 6.1 to 6.18 at least), which blocks every
 * signal itself, or, were it ever issued inline, the reactor, which
 * blocks every signal too. A blocked thread-directed signal stays
 * pending on that thread (SigPnd in /proc/PID/task/TID/status) and goes
 * with it. */
static int spawn(struct rtls_server *s)
{
	sigset_t all, old;
	unsigned k;
	int ret = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* threads inherit the mask */
	atomic_store(&s->running, s->nreactors);
	for (k = 0; k < s->nreactors; k++) {
		ret = -pthread_create(&s->rs[k].thread, NULL, reactor_thread, &s->rs[k]);
		if (ret < 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0) {
		atomic_fetch_sub(&s->running, s->nreactors - k);
		rtls_server_stop(s);
		join(s, k);
	}
	return ret;
}

int rtls_server_start(rtls_server *s)
{
	struct server_box *b = box_of(s);
	int ret = 0;

	if (b->run != RUN_IDLE)
		return -EALREADY;
	for (unsigned k = 0; k < s->nreactors; k++) {
		/* The eventfd must exist before anyone may call stop. */
		s->rs[k].wake_fd = eventfd(0, EFD_CLOEXEC);
		if (s->rs[k].wake_fd < 0) {
			ret = -errno;
			goto out;
		}
	}
	/* A stop that came before the eventfds were there wrote none. */
	if (atomic_load(&s->stop))
		rtls_server_stop(s);
	ret = spawn(s);
	if (ret == 0) {
		/* Every ring and buffer ring is set up, or start fails: a
		 * reload must not stop the old server for a new one that
		 * cannot run (no memory, no descriptor). */
		pthread_mutex_lock(&s->quiet_lock);
		while (s->set_up < s->nreactors)
			pthread_cond_wait(&s->quiet_cond, &s->quiet_lock);
		ret = s->setup_err;
		pthread_mutex_unlock(&s->quiet_lock);
		if (ret < 0) {
			rtls_server_stop(s);
			b->run = RUN_STARTED; /* threads to join: wait() or destroy() */
			b->result = ret;
			return ret;
		}
		atomic_store(&s->own_taken, true);
		s->prev = NULL; /* running: the sockets it took are its own */
	}
out:
	/* Once per server, also when it failed: wait() reports the failure. */
	b->run = ret < 0 ? RUN_JOINED : RUN_STARTED;
	b->result = ret;
	return ret;
}

int rtls_server_wait(rtls_server *s)
{
	struct server_box *b = box_of(s);
	int ret = 0;

	if (b->run == RUN_IDLE)
		return -EINVAL;
	if (b->run == RUN_JOINED)
		return b->result;
	join(s, s->nreactors);
	for (unsigned k = 0; k < s->nreactors; k++)
		if (s->rs[k].err && !ret)
			ret = s->rs[k].err;
	b->run = RUN_JOINED;
	b->result = ret;
	return ret;
}

int rtls_server_run(rtls_server *s)
{
	int ret = rtls_server_start(s);

	return ret < 0 ? ret : rtls_server_wait(s);
}

/* What `ringtls serve` has always done. The caller blocks SIGINT and
 * SIGTERM and takes them with sigtimedwait(); the tick notices a reactor
 * that failed or a stop from elsewhere. */
int rtls_server_run_until_signal(rtls_server *s)
{
	struct timespec tick = { .tv_sec = 0, .tv_nsec = 100L * 1000 * 1000 };
	sigset_t set;
	int ret;

	/* As `ringtls serve` always did; the reactors would not need it, but
	 * the program's own writes (its log into a closed pipe) do. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ret = rtls_server_start(s);
	if (ret < 0)
		return ret;
	while (!atomic_load(&s->stop) && atomic_load(&s->running) == s->nreactors) {
		int sig = sigtimedwait(&set, NULL, &tick);

		if (sig == SIGINT || sig == SIGTERM) {
			rtls_log(RTLS_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
			break;
		}
	}
	rtls_server_stop(s);
	return rtls_server_wait(s);
}

void rtls_server_destroy(rtls_server *s)
{
	if (!s)
		return;
	/* Started and never waited for: the threads still use everything. */
	if (box_of(s)->run == RUN_STARTED) {
		rtls_server_stop(s);
		rtls_server_wait(s);
	}
	give_back(s);
	if (s->rs)
		for (unsigned k = 0; k < s->nreactors; k++) {
			rtls__handover_release(&s->rs[k]);
			reactor_free(s, &s->rs[k]);
		}
	if (s->ho_in)
		rtls__handover_put(s->ho_in);
	pthread_mutex_destroy(&s->ls_lock);
	pthread_mutex_destroy(&s->quiet_lock);
	pthread_cond_destroy(&s->quiet_cond);
	free(s->taken);
	free(s->rs);
	free(s->bound);
	free(s->bound_len);
	free(s->pp_from);
	free(box_of(s));
}
