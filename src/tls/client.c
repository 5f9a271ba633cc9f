/* The client side of TLS (rtls_conn_connect_tls()): a mode of this layer,
 * not a copy of it. The handshake, the sink and source BIOs, the hand-off
 * to the kernel and KeyUpdate are conn.c's, handover.c's and
 * keyupdate.c's, with the role deciding the few things that differ
 * (state.h). This file has what only a client has: its SSL_CTX, server
 * verification, and the sessions it resumes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "internal.h"

/* Sessions kept: one per (address, name), the newest; the oldest entry
 * goes when full. A proxy has few upstreams. */
#define SESSIONS_MAX 64

struct rtls__sessions {
	pthread_mutex_t mu; /* every reactor shares the context */
	unsigned next;
	struct {
		uint64_t key; /* 0: empty */
		SSL_SESSION *s;
	} e[SESSIONS_MAX];
};

/* FNV-1a: the key of an (address, name) pair. A collision would offer a
 * session the server cannot use; it answers with a full handshake. */
static uint64_t sess_key(const char *addr, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = addr; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	h = (h ^ 0xffu) * 0x100000001b3ull;
	for (const char *p = name; p && *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	return h ? h : 1;
}

/* OpenSSL's new-session callback: a session (TLS 1.2 at the end of the
 * handshake, TLS 1.3 for each NewSessionTicket) replaces the one kept. */
static int sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tconn *t = SSL_get_app_data(ssl);
	struct rtls__sessions *ss;
	unsigned i;

	if (!t || !t->ctx->sessions || !SSL_SESSION_is_resumable(sess))
		return 0;
	ss = t->ctx->sessions;
	pthread_mutex_lock(&ss->mu);
	for (i = 0; i < SESSIONS_MAX && ss->e[i].key != t->sess_hash; i++)
		;
	if (i == SESSIONS_MAX) {
		i = ss->next;
		ss->next = (ss->next + 1) % SESSIONS_MAX;
	}
	SSL_SESSION_free(ss->e[i].s);
	ss->e[i].key = t->sess_hash;
	ss->e[i].s = sess; /* the reference OpenSSL gave us */
	pthread_mutex_unlock(&ss->mu);
	return 1;
}

/* The session kept for key, with a reference of its own, or NULL. */
static SSL_SESSION *sess_get(struct rtls__sessions *ss, uint64_t key)
{
	SSL_SESSION *s = NULL;

	pthread_mutex_lock(&ss->mu);
	for (unsigned i = 0; i < SESSIONS_MAX; i++) {
		if (ss->e[i].key == key && ss->e[i].s) {
			s = ss->e[i].s;
			SSL_SESSION_up_ref(s);
			break;
		}
	}
	pthread_mutex_unlock(&ss->mu);
	return s;
}

void rtls__sessions_free(struct rtls__sessions *ss)
{
	if (!ss)
		return;
	for (unsigned i = 0; i < SESSIONS_MAX; i++)
		SSL_SESSION_free(ss->e[i].s);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
}

static int verify_store(SSL_CTX *s, const char *ca, char *why, size_t n)
{
	char e[256];
	int ret;

	if (!ca) {
		if (SSL_CTX_set_default_verify_paths(s) != 1) {
			snprintf(why, n, "the system's CA store: %s", rtls__ossl_err(e, sizeof(e)));
			return -EINVAL;
		}
		return 0;
	}
	ret = rtls__file_readable(ca);
	if (ret < 0) {
		snprintf(why, n, "cannot read upstream CA %s: %s", ca, strerror(-ret));
		return ret;
	}
	if (SSL_CTX_load_verify_locations(s, ca, NULL) != 1) {
		snprintf(why, n, "upstream CA %s: %s", ca, rtls__ossl_err(e, sizeof(e)));
		return -EINVAL;
	}
	return 0;
}

int rtls_tls_client_ctx_new(const struct rtls_tls_client_opts *o, struct rtls_tls_ctx **out,
			    char *why, size_t whylen)
{
	struct rtls_tls_ctx *t = calloc(1, sizeof(*t));
	SSL_CTX *s;
	int ret;

	*out = NULL;
	if (!t) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	t->hooks.attach_client = rtls__tls_attach_client;
	rtls__ctx_init(t, o->ktls, o->ktls_rx_no_rekey, o->ktls_keyless, o->key_update_max_rate);
	t->own_records = !o->openssl_records;
	t->client = true;
	/* An upstream that fails us is the operator's to hear about. */
	t->fail_level = RTLS_LOG_WARN;
	s = SSL_CTX_new(TLS_client_method());
	if (!s) {
		ret = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	t->ssl[t->nssl++] = s;
	ret = rtls__ctx_base(t, s, false, NULL, NULL, why, whylen);
	if (ret == 0)
		ret = verify_store(s, o->ca_file, why, whylen);
	if (ret < 0)
		goto fail;
	SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
	if (!o->cert_file != !o->key_file) {
		snprintf(why, whylen,
			 "an upstream client certificate needs both a certificate and a key");
		ret = -EINVAL;
		goto fail;
	}
	if (o->cert_file &&
	    (ret = rtls__ctx_load_pair(s, o->cert_file, o->key_file, why, whylen)) < 0)
		goto fail;
	if (!o->no_resumption) {
		t->sessions = calloc(1, sizeof(*t->sessions));
		if (!t->sessions) {
			snprintf(why, whylen, "out of memory");
			ret = -ENOMEM;
			goto fail;
		}
		pthread_mutex_init(&t->sessions->mu, NULL);
		/* Sessions live in our table, not OpenSSL's (a client has no
		 * use for its server-side lookup). */
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT |
							  SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(s, sess_new_cb);
	} else {
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
	}
	*out = t;
	return 0;
fail:
	rtls_tls_ctx_free(t);
	return ret;
}

/* The name checked in the server's certificate: a host name (also sent
 * as SNI; 0), or an IP address (checked against its IP SANs, not sent:
 * RFC 6066 §3 allows no literal addresses in server_name; 1). */
static int set_peer_name(SSL *ssl, const char *name)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 1 : -EINVAL;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1)
		return -EINVAL;
	return 0;
}

int rtls__tls_attach_client(struct rtls_conn *c, void *ctx, const char *name)
{
	struct rtls_tls_ctx *x = ctx;
	char addr[64], ip[INET6_ADDRSTRLEN];
	struct tconn *t;
	int ret;

	rtls_format_addr(&c->peer, addr, sizeof(addr));
	if (!name) {
		/* No name: the address itself, as a URL with an IP would. */
		const void *a =
			c->peer.ss_family == AF_INET6
				? (const void *)&((const struct sockaddr_in6 *)&c->peer)->sin6_addr
				: (const void *)&((const struct sockaddr_in *)&c->peer)->sin_addr;

		if (c->peer.ss_family != AF_INET && c->peer.ss_family != AF_INET6)
			return -EINVAL; /* unix: name the server */
		if (!inet_ntop(c->peer.ss_family, a, ip, sizeof(ip)))
			return -EINVAL;
		name = ip;
	}
	ret = rtls__tls_conn_attach(c, x, RTLS__TLS_CLIENT);
	if (ret < 0)
		return ret;
	t = c->tp_state;
	ret = set_peer_name(t->ssl, name);
	if (ret < 0) {
		ERR_clear_error();
		return -EINVAL;
	}
	t->no_sni = ret == 1;
	snprintf(t->sni, sizeof(t->sni), "%s", name);
	t->sess_hash = sess_key(addr, name);
	if (x->sessions) {
		SSL_SESSION *s = sess_get(x->sessions, t->sess_hash);

		if (s) {
			(void)SSL_set_session(t->ssl, s);
			SSL_SESSION_free(s);
		}
	}
	return 0;
}

/* Why the server's certificate was refused, if it was. */
void rtls__tls_verify_why(const struct tconn *t, char *buf, size_t n)
{
	long v = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;

	buf[0] = '\0';
	if (t->role == RTLS__TLS_CLIENT && v != X509_V_OK)
		snprintf(buf, n, " (%s)", X509_verify_cert_error_string(v));
}

int rtls_conn_tls_preamble(rtls_conn *c, const void *p, size_t n)
{
	struct tconn *t = c->tp_state;

	/* Before the ClientHello: the handshake starts when the connect
	 * completes (tls_on_connected) and appends it behind these. */
	if (c->state != RTLS__CONN_CONNECTING || !t || t->role != RTLS__TLS_CLIENT ||
	    t->phase != RTLS__TLS_HANDSHAKE)
		return -EINVAL;
	return rtls__wbuf_append(&t->stage, p, n) < 0 ? -ENOMEM : 0;
}
