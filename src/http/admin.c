/* The admin listener (--admin-listen): /metrics (Prometheus text format
 * 0.0.4), /healthz and /status.json, and 404 for anything else; routes
 * and --root never apply there. Also the HTTP layer's own counters
 * (responses by status class, the proxy's upstream errors): like the
 * engine's (core/stats.c), each reactor thread counts into a block of its
 * own, with no lock, and /metrics sums the blocks with relaxed atomic
 * loads. DESIGN.md "Metrics". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "prom.h"

/* Why the proxy answered 502, 503 or 504 (or cut a response). */
enum up_cause { UP_REFUSED, UP_TIMEOUT, UP_INVALID, UP_MID_BODY, UP_UNAVAILABLE, UP__COUNT };
static const char *const up_causes[UP__COUNT] = { "refused", "timeout", "invalid_response",
						  "reset_mid_body", "unavailable" };
static const int up_status[] = { 502, 503, 504 };
#define UP_STATUSES (sizeof(up_status) / sizeof(up_status[0]))

/* One reactor thread's counters; one writer, readers on any thread. */
struct http_tstats {
	struct http_tstats *next; /* set before the block is published, then fixed */
	const struct rtls_http_stats *owner;
	_Atomic uint64_t status[5]; /* 1xx .. 5xx */
	_Atomic uint64_t upstream[UP_STATUSES][UP__COUNT];
};

struct rtls_http_stats {
	_Atomic(struct http_tstats *) head; /* every thread's block, pushed once */
	struct timespec started;            /* CLOCK_MONOTONIC, for the uptime */
};

/* This thread's block. A thread serves one server all its life, but the
 * owner check keeps a block from outliving a registry it was not in. */
static _Thread_local struct http_tstats *mine;

int rtls_http_stats_init(struct rtls_http_config *hc)
{
	hc->stats = calloc(1, sizeof(*hc->stats));
	if (!hc->stats)
		return -ENOMEM;
	clock_gettime(CLOCK_MONOTONIC, &hc->stats->started);
	return 0;
}

void rtls_http_stats_free(struct rtls_http_config *hc)
{
	struct http_tstats *b, *next;

	if (!hc->stats)
		return;
	for (b = atomic_load(&hc->stats->head); b; b = next) {
		next = b->next;
		free(b);
	}
	free(hc->stats);
	hc->stats = NULL;
}

/* The calling thread's block, made and pushed on first use (the push is
 * the one atomic read-modify-write, once per thread); NULL without
 * counters or memory. */
static struct http_tstats *block(const struct rtls_http_config *hc)
{
	struct rtls_http_stats *reg = hc->stats;
	struct http_tstats *b = mine;

	if (!reg)
		return NULL;
	if (b && b->owner == reg)
		return b;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->owner = reg;
	b->next = atomic_load(&reg->head);
	while (!atomic_compare_exchange_weak(&reg->head, &b->next, b))
		;
	mine = b;
	return b;
}

/* One writer: a relaxed load and store, not an atomic add. */
static void bump(_Atomic uint64_t *p)
{
	atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

void rtls__http_count_status(rtls_conn *c, int status)
{
	struct http_tstats *b = block(rtls_conn_ctx(c));

	if (b && status >= 100 && status < 600)
		bump(&b->status[status / 100 - 1]);
}

void rtls__http_count_upstream(rtls_conn *c, int status, int st)
{
	struct http_tstats *b = block(rtls_conn_ctx(c));
	enum up_cause why;
	size_t i = 0;

	while (i < UP_STATUSES && up_status[i] != status)
		i++;
	if (!b || i == UP_STATUSES)
		return; /* a client's error (400), not the upstream's */
	if (st == PX_BODY || st == PX_TUNNEL)
		why = UP_MID_BODY; /* the client's connection is reset */
	else if (status == 504)
		why = UP_TIMEOUT;
	else if (status == 503)
		why = UP_UNAVAILABLE;
	else if (st == PX_CONNECT)
		why = UP_REFUSED;
	else
		why = UP_INVALID;
	bump(&b->upstream[i][why]);
}

bool rtls__http_is_admin(const struct rtls_http_config *hc, unsigned listener)
{
	return hc->admin_listener >= 0 && listener == (unsigned)hc->admin_listener;
}

/* ---- /metrics ------------------------------------------------------------ */

static void counter(struct rtls__text *t, const char *name, const char *help, uint64_t v)
{
	rtls__prom_family(t, name, "counter", help);
	rtls__prom_sample(t, name, NULL, v);
}

/* A family with one label, a sample per name in names[0..n). */
static void by_label(struct rtls__text *t, const char *name, const char *help, const char *label,
		     const char *const *names, const uint64_t *v, size_t n)
{
	rtls__prom_family(t, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		rtls__prom_sample(t, name, (const char *[]){ label, names[i], NULL }, v[i]);
}

static void conn_metrics(struct rtls__text *t, const struct rtls_stats *s)
{
	static const char *const reasons[] = { "peer",    "local",    "timeout", "reset",
					       "aborted", "shutdown", "error" };
	static const char *const timers[] = { "none",   "idle",    "header",  "handshake",
					      "linger", "connect", "response" };
	_Static_assert(sizeof(reasons) / sizeof(reasons[0]) == RTLS_STATS_CLOSE__COUNT, "reasons");
	_Static_assert(sizeof(timers) / sizeof(timers[0]) == RTLS_TIMER__COUNT, "timers");

	counter(t, "ringtls_connections_accepted_total", "Connections accepted.",
		s->conns_accepted);
	counter(t, "ringtls_connections_outbound_total",
		"Connections opened to upstreams (the reverse proxy).", s->conns_outbound);
	rtls__prom_family(t, "ringtls_connections_open", "gauge", "Connections open now.");
	rtls__prom_sample(t, "ringtls_connections_open", NULL, s->conns_open);
	by_label(t, "ringtls_connections_closed_total",
		 "Connections ended, by who or what ended them.", "reason", reasons,
		 s->conns_closed, RTLS_STATS_CLOSE__COUNT);
	counter(t, "ringtls_received_bytes_total",
		"Bytes read from sockets (TLS records included).", s->bytes_in);
	counter(t, "ringtls_sent_bytes_total", "Bytes written to sockets (TLS records included).",
		s->bytes_out);
	by_label(t, "ringtls_timeouts_total", "Connection timers that expired, by kind.", "kind",
		 timers + 1, s->timeouts + 1, RTLS_TIMER__COUNT - 1);
}

static void tls_metrics(struct rtls__text *t, const struct rtls_stats *s)
{
	static const char *const versions[] = { "TLSv1.2", "TLSv1.3", "other" };
	static const char *const ciphers[] = { "AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305",
					       "other" };
	static const char *const fails[] = { "protocol",    "version", "cipher",
					     "certificate", "alert",   "plain_http",
					     "peer_closed", "timeout", "aborted" };
	static const char *const kinds[] = { "full", "resumed" };
	const char *name = "ringtls_tls_handshakes_total";
	_Static_assert(sizeof(versions) / sizeof(versions[0]) == RTLS_STATS_TLSV__COUNT,
		       "versions");
	_Static_assert(sizeof(ciphers) / sizeof(ciphers[0]) == RTLS_STATS_CIPHER__COUNT, "ciphers");
	_Static_assert(sizeof(fails) / sizeof(fails[0]) == RTLS_STATS_HS__COUNT, "fails");

	rtls__prom_family(
		t, name, "counter",
		"TLS handshakes completed, by version, full or resumed (a session ticket).");
	for (size_t v = 0; v < RTLS_STATS_TLSV__COUNT; v++)
		for (size_t k = 0; k < 2; k++)
			rtls__prom_sample(
				t, name,
				(const char *[]){ "version", versions[v], "kind", kinds[k], NULL },
				s->tls_handshakes[v][k]);
	by_label(t, "ringtls_tls_handshake_ciphers_total",
		 "TLS handshakes completed, by the AEAD of the cipher suite.", "cipher", ciphers,
		 s->tls_ciphers, RTLS_STATS_CIPHER__COUNT);
	by_label(t, "ringtls_tls_handshake_failures_total", "TLS handshakes that did not complete.",
		 "reason", fails, s->tls_failures, RTLS_STATS_HS__COUNT);
	rtls__prom_family(t, "ringtls_tls_key_updates_total", "counter",
			  "TLS 1.3 KeyUpdate messages, received and sent.");
	rtls__prom_sample(t, "ringtls_tls_key_updates_total",
			  (const char *[]){ "direction", "received", NULL },
			  s->key_updates_received);
	rtls__prom_sample(t, "ringtls_tls_key_updates_total",
			  (const char *[]){ "direction", "sent", NULL }, s->key_updates_sent);
	rtls__prom_family(t, "ringtls_tls_own_record_layer_connections_total", "counter",
			  "TLS connections whose records after the handshake ringtls's own record "
			  "layer sealed (kernel TLS did not take TX; --openssl-records: none).");
	rtls__prom_sample(t, "ringtls_tls_own_record_layer_connections_total", NULL, s->tls_own_tx);
}

static void ktls_metrics(struct rtls__text *t, const struct rtls_stats *s)
{
	static const char *const dirs[] = { "tx", "rx" };
	static const char *const why[] = { "unavailable", "cipher", "rekey",  "unaligned",
					   "key",         "ulp",    "refused" };
	const char *name = "ringtls_ktls_fallbacks_total";
	_Static_assert(sizeof(why) / sizeof(why[0]) == RTLS_STATS_KTLS__COUNT, "fallbacks");

	by_label(t, "ringtls_ktls_offloaded_total",
		 "TLS connection directions handed to kernel TLS.", "direction", dirs,
		 s->ktls_offloaded, 2);
	rtls__prom_family(t, name, "counter",
			  "TLS connection directions that stayed in userspace although kernel TLS "
			  "was asked for, by reason.");
	for (size_t d = 0; d < 2; d++)
		for (size_t i = 0; i < RTLS_STATS_KTLS__COUNT; i++)
			rtls__prom_sample(
				t, name,
				(const char *[]){ "direction", dirs[d], "reason", why[i], NULL },
				s->ktls_fallbacks[d][i]);
}

static void http_metrics(struct rtls__text *t, const struct rtls_http_stats *reg)
{
	static const char *const classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
	/* The series a cause can have; any other that is not 0 shows too. */
	static const bool natural[UP_STATUSES][UP__COUNT] = {
		[0] = { [UP_REFUSED] = true, [UP_INVALID] = true, [UP_MID_BODY] = true },
		[1] = { [UP_UNAVAILABLE] = true },
		[2] = { [UP_TIMEOUT] = true, [UP_MID_BODY] = true },
	};
	uint64_t st[5] = { 0 }, up[UP_STATUSES][UP__COUNT];
	const char *name = "ringtls_proxy_upstream_errors_total";

	memset(up, 0, sizeof(up));
	for (struct http_tstats *b = reg ? atomic_load(&reg->head) : NULL; b; b = b->next) {
		for (size_t i = 0; i < 5; i++)
			st[i] += atomic_load_explicit(&b->status[i], memory_order_relaxed);
		for (size_t i = 0; i < UP_STATUSES; i++)
			for (size_t k = 0; k < UP__COUNT; k++)
				up[i][k] += atomic_load_explicit(&b->upstream[i][k],
								 memory_order_relaxed);
	}
	by_label(t, "ringtls_http_requests_total",
		 "HTTP requests answered, by the status class of the final response.", "class",
		 classes, st, 5);
	rtls__prom_family(t, name, "counter",
			  "Proxied requests answered 502, 503 or 504, or cut mid-body, by cause.");
	for (size_t i = 0; i < UP_STATUSES; i++)
		for (size_t k = 0; k < UP__COUNT; k++) {
			char code[8];

			if (!natural[i][k] && !up[i][k])
				continue;
			snprintf(code, sizeof(code), "%d", up_status[i]);
			rtls__prom_sample(
				t, name,
				(const char *[]){ "status", code, "cause", up_causes[k], NULL },
				up[i][k]);
		}
}

/* /proc/net/tls_stat (Linux 5.3+): "TlsCurrTxSw  0" lines, passed through
 * as ringtls_kernel_tls_stat{name="TlsCurrTxSw"} 0. No file: no lines. */
static void kernel_tls_stat(struct rtls__text *t)
{
	const char *name = "ringtls_kernel_tls_stat";
	FILE *f = fopen("/proc/net/tls_stat", "re");
	char key[64];
	unsigned long long v;
	bool any = false;

	if (!f)
		return;
	while (fscanf(f, "%63s %llu", key, &v) == 2) {
		if (strspn(key,
			   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
		    strlen(key))
			continue;
		if (!any)
			rtls__prom_family(t, name, "untyped",
					  "The kernel's TLS statistics (/proc/net/tls_stat), "
					  "as the kernel names them.");
		any = true;
		rtls__prom_sample(t, name, (const char *[]){ "name", key, NULL }, v);
	}
	fclose(f);
}

static double uptime(const struct rtls_http_stats *reg)
{
	struct timespec now;

	if (!reg)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - reg->started.tv_sec) +
	       (double)(now.tv_nsec - reg->started.tv_nsec) / 1e9;
}

static void metrics(struct rtls__text *t, const struct rtls_http_config *hc)
{
	struct rtls_stats s;

	memset(&s, 0, sizeof(s));
	if (hc->server)
		rtls_server_stats(hc->server, &s, sizeof(s));
	rtls__prom_family(t, "ringtls_info", "gauge", "The version of ringtls serving.");
	rtls__prom_sample(t, "ringtls_info",
			  (const char *[]){ "version", RTLS_VERSION_STRING, NULL }, 1);
	rtls__prom_family(t, "ringtls_uptime_seconds", "gauge",
			  "Seconds since the server started.");
	rtls__text_printf(t, "ringtls_uptime_seconds %.3f\n", uptime(hc->stats));
	conn_metrics(t, &s);
	tls_metrics(t, &s);
	ktls_metrics(t, &s);
	rtls__prom_family(t, "ringtls_tls_sessions_userspace", "gauge",
			  "OpenSSL SSL objects alive in the process (connections whose records are "
			  "all in the kernel hold none).");
	rtls__prom_sample(t, "ringtls_tls_sessions_userspace", NULL,
			  hc->live_tls ? (uint64_t)hc->live_tls() : 0);
	http_metrics(t, hc->stats);
	kernel_tls_stat(t);
}

/* ---- /status.json ---------------------------------------------------------- */

static const char *path_name(enum rtls_record_path p)
{
	switch (p) {
	case RTLS_PATH_USERSPACE:
		return "userspace";
	case RTLS_PATH_KERNEL:
		return "kernel";
	case RTLS_PATH_NONE:
	default:
		return "none";
	}
}

/* "key":"value" (or null), with a comma first unless it opens the object. */
static void json_field(struct rtls__text *t, const char *key, const char *v)
{
	rtls__text_printf(t, "%s\"%s\":", t->len && t->buf[t->len - 1] == '{' ? "" : ",", key);
	if (v)
		rtls__text_json_str(t, v);
	else
		rtls__text_printf(t, "null");
}

/* The built-in page's facts (page.c), about the connection that asks,
 * and the server's. */
static void status_json(struct rtls__text *t, rtls_conn *c, const struct rtls_http_config *hc)
{
	struct rtls_conn_info ci;
	struct rtls_stats s;
	bool tls;

	memset(&s, 0, sizeof(s));
	if (hc->server)
		rtls_server_stats(hc->server, &s, sizeof(s));
	rtls_conn_query(c, &ci);
	tls = ci.transport == RTLS_TRANSPORT_TLS;
	rtls__text_printf(t, "{");
	json_field(t, "version", RTLS_VERSION_STRING);
	rtls__text_printf(
		t,
		",\"uptime_seconds\":%.3f,\"tls_sessions_userspace\":%ld,"
		"\"connections_open\":%llu,\"connections_accepted\":%llu,\"connection\":{",
		uptime(hc->stats), hc->live_tls ? hc->live_tls() : 0L,
		(unsigned long long)s.conns_open, (unsigned long long)s.conns_accepted);
	json_field(t, "transport", tls ? "TLS" : "plaintext TCP");
	json_field(t, "tls_version", ci.tls_version);
	json_field(t, "cipher", ci.tls_cipher);
	json_field(t, "alpn", ci.alpn);
	json_field(t, "sni", ci.sni);
	rtls__text_printf(t, ",\"resumed\":%s", tls ? (ci.resumed ? "true" : "false") : "null");
	json_field(t, "client_certificate", ci.client_subject);
	json_field(t, "records_sent_by", path_name(ci.tx_path));
	json_field(t, "records_received_by", path_name(ci.rx_path));
	rtls__text_printf(t, "}}\n");
}

/* ---- the requests ---------------------------------------------------------- */

int rtls__http_admin(rtls_conn *c, const struct rtls_http_config *hc, const struct hreq *q)
{
	const char *qm = memchr(q->path.p, '?', q->path.n), *ctype;
	size_t plen = qm ? (size_t)(qm - q->path.p) : q->path.n;
	struct rtls__text t = { 0 };
	int ret;

#define IS(lit) (plen == sizeof(lit) - 1 && memcmp(q->path.p, lit, plen) == 0)
	if (IS("/healthz"))
		return rtls__http_simple(c, 200, q->keep_alive, "text/plain; charset=utf-8", "",
					 "ok", 2, q->head);
	if (IS("/metrics")) {
		metrics(&t, hc);
		ctype = "text/plain; version=0.0.4; charset=utf-8";
	} else if (IS("/status.json")) {
		status_json(&t, c, hc);
		ctype = "application/json";
	} else {
		return rtls__http_simple(c, 404, q->keep_alive, "text/plain; charset=utf-8", "",
					 "404 Not Found\n", 14, q->head);
	}
#undef IS
	ret = t.oom ? -ENOMEM
		    : rtls__http_simple(c, 200, q->keep_alive, ctype, "Cache-Control: no-store\r\n",
					t.buf, t.len, q->head);
	rtls__text_free(&t);
	return ret;
}
