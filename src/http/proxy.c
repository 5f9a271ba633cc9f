/* The reverse proxy's routes and upstream servers: --proxy parsing,
 * longest-prefix routing, round robin with passive health, and the idle
 * pool of upstream connections of each reactor thread. The exchange
 * itself is proxy_exch.c. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "core/proxyproto.h"
#include "internal.h"
#include "ringtls/tls.h"

/* How long a server that refused or timed out is skipped (nginx's
 * fail_timeout default). */
#define DOWN_MS 10000
#define MAX_UPSTREAMS 64

uint64_t rtls__http_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "http://HOST:PORT[/]", "https://HOST:PORT[/]" or "unix:/path" into u;
 * for a TCP proxy (tcp), "HOST:PORT", "tls://HOST:PORT" or "unix:/path".
 * Host names are resolved now, once: the first address getaddrinfo()
 * gives. A TLS upstream keeps its host for SNI and verification. */
static int parse_url(const char *s, size_t n, bool tcp, struct rtls_http_upstream *u, char *why,
		     size_t wn)
{
	char host[128], port[16];
	const char *h, *end = s + n, *colon;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	struct sockaddr_storage ss;
	size_t hl;
	int ret;

	if (n >= sizeof(u->name))
		return snprintf(why, wn, "upstream URL too long"), -1;
	memcpy(u->name, s, n);
	u->name[n] = '\0';
	if (n > 5 && memcmp(s, "unix:", 5) == 0) {
		if (s[5] != '/' || n - 5 >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return snprintf(why, wn, "'%s': unix: needs an absolute path", u->name), -1;
		snprintf(u->addr, sizeof(u->addr), "%s", u->name);
		return 0;
	}
	if (tcp && n > 6 && memcmp(s, "tls://", 6) == 0) {
		u->tls = true;
		h = s + 6;
	} else if (tcp) {
		h = s;
	} else if (n > 8 && memcmp(s, "https://", 8) == 0) {
		u->tls = true;
		h = s + 8;
	} else if (n < 7 || memcmp(s, "http://", 7) != 0) {
		return snprintf(why, wn,
				"'%s': expected http://HOST:PORT, https://HOST:PORT or unix:/path",
				u->name),
		       -1;
	} else {
		h = s + 7;
	}
	if (!tcp && end > h && end[-1] == '/')
		end--;
	if (memchr(h, '/', (size_t)(end - h)) || memchr(h, '@', (size_t)(end - h)))
		return snprintf(why, wn, "'%s': a path or user in an upstream URL is not supported",
				u->name),
		       -1;
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (!rb || rb + 1 >= end || rb[1] != ':')
			return snprintf(why, wn, "'%s': expected [IPv6]:PORT", u->name), -1;
		hl = (size_t)(rb - h - 1);
		colon = rb + 1;
		h++;
	} else {
		colon = memrchr(h, ':', (size_t)(end - h));
		if (!colon)
			return snprintf(why, wn, "'%s': the port is missing", u->name), -1;
		hl = (size_t)(colon - h);
	}
	if (!hl || hl >= sizeof(host) || (size_t)(end - colon - 1) >= sizeof(port) ||
	    end - colon - 1 < 1)
		return snprintf(why, wn, "'%s': bad host or port", u->name), -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(u->host, sizeof(u->host), "%s", host);
	memcpy(port, colon + 1, (size_t)(end - colon - 1));
	port[end - colon - 1] = '\0';
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9')
			return snprintf(why, wn, "'%s': bad port", u->name), -1;
	ret = getaddrinfo(host, port, &hints, &ai);
	if (ret)
		return snprintf(why, wn, "'%s': %s", u->name, gai_strerror(ret)), -1;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	rtls_format_addr(&ss, u->addr, sizeof(u->addr));
	return 0;
}

int rtls__upstream_connect(rtls_conn *near, const struct rtls_http_config *hc,
			   const struct rtls_http_upstream *u, const struct rtls_handler *h,
			   void *arg, rtls_conn **out)
{
	struct rtls_conn_info ci;
	char pp[512];
	int ret, n = 0;

	if (!u->tls)
		return rtls_conn_connect(near, u->addr, h, arg, out);
	/* A TLS server that takes a PROXY header reads it before the
	 * handshake: ahead of the ClientHello, not inside the stream. */
	if (hc->upstream_proxy_protocol) {
		n = -EINVAL;
		if (rtls_conn_query(near, &ci) == 0)
			n = rtls__proxy_header_build(pp, sizeof(pp), hc->upstream_proxy_protocol,
						     &ci);
		if (n < 0) {
			rtls_log(RTLS_LOG_WARN,
				 "upstream %s: cannot build the PROXY protocol header", u->name);
			return n;
		}
	}
	ret = rtls_conn_connect_tls(near, u->addr, hc->upstream_tls,
				    hc->upstream_sni ? hc->upstream_sni : u->host, h, arg, out);
	if (ret == 0 && n > 0 && (ret = rtls_conn_tls_preamble(*out, pp, (size_t)n)) < 0) {
		rtls_conn_abort(*out, ret); /* on_close sees a connection never used */
		*out = NULL;
	}
	return ret;
}

bool rtls_http_upstream_tls(const struct rtls_http_config *hc)
{
	for (unsigned i = 0; i < hc->nroutes; i++)
		for (unsigned j = 0; j < hc->routes[i].nups; j++)
			if (hc->routes[i].ups[j].tls)
				return true;
	for (unsigned i = 0; i < hc->ntcp; i++)
		for (unsigned j = 0; j < hc->tcp[i].rt.nups; j++)
			if (hc->tcp[i].rt.ups[j].tls)
				return true;
	return false;
}

static void route_free(struct rtls_http_route *rt)
{
	free(rt->prefix);
	free(rt->ups);
}

/* "URL[,URL...]" into rt->ups. */
static int parse_ups(const char *list, bool tcp, struct rtls_http_route *rt, char *why, size_t n)
{
	rt->ups = calloc(MAX_UPSTREAMS, sizeof(*rt->ups));
	if (!rt->ups)
		return snprintf(why, n, "out of memory"), -1;
	for (const char *p = list;; p++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (rt->nups == MAX_UPSTREAMS)
			return snprintf(why, n, "at most %d upstreams per route", MAX_UPSTREAMS),
			       -1;
		if (!len)
			return snprintf(why, n, "an empty upstream address"), -1;
		if (parse_url(p, len, tcp, &rt->ups[rt->nups], why, n) < 0)
			return -1;
		rt->nups++;
		if (!comma)
			return 0;
		p = comma;
	}
}

int rtls_http_proxy_add(struct rtls_http_config *hc, const char *spec, char *why, size_t n)
{
	const char *eq = strchr(spec, '=');
	struct rtls_http_route rt, *grown;

	memset(&rt, 0, sizeof(rt));
	if (!eq || eq == spec || spec[0] != '/')
		return snprintf(why, n, "expected PREFIX=URL[,URL...] with PREFIX starting with /"),
		       -1;
	for (unsigned i = 0; i < hc->nroutes; i++)
		if (hc->routes[i].prefix_len == (size_t)(eq - spec) &&
		    memcmp(hc->routes[i].prefix, spec, hc->routes[i].prefix_len) == 0)
			return snprintf(why, n, "prefix given twice"), -1;
	rt.prefix_len = (size_t)(eq - spec);
	rt.prefix = strndup(spec, rt.prefix_len);
	if (!rt.prefix) {
		snprintf(why, n, "out of memory");
		goto fail;
	}
	if (parse_ups(eq + 1, false, &rt, why, n) < 0)
		goto fail;
	grown = realloc(hc->routes, (hc->nroutes + 1) * sizeof(*grown));
	if (!grown) {
		snprintf(why, n, "out of memory");
		goto fail;
	}
	hc->routes = grown;
	hc->routes[hc->nroutes++] = rt;
	return 0;
fail:
	route_free(&rt);
	return -1;
}

int rtls_http_tcp_add(struct rtls_http_config *hc, const char *spec, char *why, size_t n)
{
	const char *eq = strchr(spec, '=');
	struct rtls_http_tcp t, *grown;

	memset(&t, 0, sizeof(t));
	t.listener = -1;
	if (!eq || eq == spec || !eq[1])
		return snprintf(why, n, "expected LISTEN=UPSTREAM[,UPSTREAM...]"), -1;
	t.listen = strndup(spec, (size_t)(eq - spec));
	if (!t.listen) {
		snprintf(why, n, "out of memory");
		goto fail;
	}
	if (parse_ups(eq + 1, true, &t.rt, why, n) < 0)
		goto fail;
	grown = realloc(hc->tcp, (hc->ntcp + 1) * sizeof(*grown));
	if (!grown) {
		snprintf(why, n, "out of memory");
		goto fail;
	}
	hc->tcp = grown;
	hc->tcp[hc->ntcp++] = t;
	return 0;
fail:
	free(t.listen);
	route_free(&t.rt);
	return -1;
}

const char *rtls_http_tcp_listen(const struct rtls_http_config *hc, unsigned i)
{
	return i < hc->ntcp ? hc->tcp[i].listen : NULL;
}

void rtls_http_tcp_bind(struct rtls_http_config *hc, unsigned i, unsigned listener)
{
	if (i < hc->ntcp)
		hc->tcp[i].listener = (int)listener;
}

void rtls_http_tcp_clear(struct rtls_http_config *hc)
{
	for (unsigned i = 0; i < hc->ntcp; i++) {
		free(hc->tcp[i].listen);
		route_free(&hc->tcp[i].rt);
	}
	free(hc->tcp);
	hc->tcp = NULL;
	hc->ntcp = 0;
}

void rtls_http_proxy_clear(struct rtls_http_config *hc)
{
	for (unsigned i = 0; i < hc->nroutes; i++)
		route_free(&hc->routes[i]);
	free(hc->routes);
	hc->routes = NULL;
	hc->nroutes = 0;
}

const struct rtls_http_route *rtls__proxy_route(const struct rtls_http_config *hc,
						struct rtls_http_str path)
{
	const struct rtls_http_route *best = NULL;

	for (unsigned i = 0; i < hc->nroutes; i++) {
		const struct rtls_http_route *rt = &hc->routes[i];

		if (rt->prefix_len <= path.n && memcmp(path.p, rt->prefix, rt->prefix_len) == 0 &&
		    (!best || rt->prefix_len > best->prefix_len))
			best = rt;
	}
	return best;
}

struct rtls_http_upstream *rtls__proxy_pick(const struct rtls_http_route *rt,
					    const struct rtls_http_upstream *skip)
{
	struct rtls_http_route *w = (struct rtls_http_route *)rt;
	unsigned start = atomic_fetch_add_explicit(&w->rr, 1, memory_order_relaxed);
	uint64_t now = 0;

	for (unsigned k = 0; k < rt->nups; k++) {
		struct rtls_http_upstream *u = &rt->ups[(start + k) % rt->nups];
		uint64_t down = atomic_load_explicit(&u->down_until_ms, memory_order_relaxed);

		if (u == skip)
			continue;
		if (down) {
			if (!now)
				now = rtls__http_now_ms();
			if (now < down)
				continue;
		}
		return u;
	}
	return NULL;
}

bool rtls__proxy_mark_down(struct rtls_http_upstream *srv)
{
	uint64_t now = rtls__http_now_ms();
	uint64_t was =
		atomic_exchange_explicit(&srv->down_until_ms, now + DOWN_MS, memory_order_relaxed);

	return was <= now; /* it was up: worth a log line */
}

/* The idle pool: a list per reactor thread, most recently used first, so
 * the connection taken is the one least likely to have been closed by
 * its server. Its entries are the data areas of idle upstream
 * connections; they leave it when taken or closed. */
static _Thread_local struct uconn pool;

static void pool_unlink(struct uconn *u)
{
	u->prev->next = u->next;
	u->next->prev = u->prev;
	u->next = u->prev = NULL;
	u->pooled = false;
}

void rtls__pool_remove(struct uconn *u)
{
	if (u->pooled)
		pool_unlink(u);
}

rtls_conn *rtls__pool_take(const struct rtls_http_upstream *srv)
{
	if (!pool.next)
		return NULL;
	for (struct uconn *u = pool.next; u != &pool; u = u->next) {
		if (u->srv == srv) {
			pool_unlink(u);
			return u->self;
		}
	}
	return NULL;
}

void rtls__pool_put(rtls_conn *c, const struct rtls_http_config *hc)
{
	struct uconn *u = rtls_conn_data(c);
	unsigned same = 0;

	if (!pool.next)
		pool.next = pool.prev = &pool;
	for (struct uconn *o = pool.next; o != &pool; o = o->next)
		same += o->srv == u->srv;
	if (same >= hc->proxy_keepalive) {
		rtls_conn_close(c);
		return;
	}
	u->client = NULL;
	u->pooled = true;
	u->next = pool.next;
	u->prev = &pool;
	pool.next->prev = u;
	pool.next = u;
	/* An idle upstream is closed after the idle time, as a client is. */
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE);
}
