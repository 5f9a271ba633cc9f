/* Server SSL_CTX set-up: versions, ciphers, ALPN, SNI, certificates,
 * client certificates, tickets. Read-only once the server runs. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "internal.h"
#include "ktls.h"

/* Modern defaults: AEAD only, forward secrecy only. */
#define DEFAULT_SUITES13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define DEFAULT_CIPHERS12                                                            \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                 \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                 \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const unsigned char sid_ctx[] = "ringtls";

/* The last OpenSSL error as text, and the queue cleared. */
const char *rtls__ossl_err(char *buf, size_t n)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		snprintf(buf, n, "unknown error");
	else
		ERR_error_string_n(e, buf, n);
	ERR_clear_error();
	return buf;
}

/* ALPN: the listener's choice (enum rtls_alpn). HTTP/1.1 listeners
 * accept http/1.0 too, as nginx does; HTTP/2 ones prefer h2 whatever the
 * client's order. A client that offers none of ours gets
 * no_application_protocol (RFC 7301 §3.2). A listener that is not HTTP
 * (TCP mode) selects nothing and lets the handshake go on, as a server
 * without ALPN would. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1\x08http/1.0";
	static const unsigned char h2[] = "\x02h2\x08http/1.1\x08http/1.0";
	const struct tconn *t = SSL_get_app_data(ssl);
	int alpn = RTLS_ALPN_HTTP1;
	unsigned char *sel;

	(void)arg;
	if (t && t->conn && t->conn->listener < t->conn->r->srv->cfg.nlisteners)
		alpn = t->conn->r->srv->cfg.listeners[t->conn->listener].alpn;
	if (alpn == RTLS_ALPN_NONE)
		return SSL_TLSEXT_ERR_NOACK;
	/* SSL_select_next_proto() picks by the server's order. */
	if (alpn == RTLS_ALPN_H2 ? SSL_select_next_proto(&sel, outlen, h2, sizeof(h2) - 1, in,
							 inlen) != OPENSSL_NPN_NEGOTIATED
				 : SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in,
							 inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* Is name[0..n) a DNS host name (RFC 6066 §3: HostName is one, in
 * ASCII)? Labels of 1 to 63 letters, digits, '-' (RFC 1123 §2.1) and '_',
 * at most 253 bytes, and one trailing dot allowed (the name of the root
 * is implied either way). '_' is outside RFC 1123, but DNS allows it
 * (RFC 2181 §11), real internal host names use it, and nginx and browsers
 * accept it; what this check keeps out (control bytes, escapes, spaces,
 * invalid UTF-8, anything a log line or a certificate match could
 * misread) is unaffected. Nor is a hyphen at either end of a label
 * refused: such names exist and resolve. */
static bool sni_syntax_ok(const char *name, size_t n)
{
	size_t label = 0;

	if (n && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

/* SNI: switch to the first certificate whose names match; otherwise keep
 * the default (as nginx does with its default server).
 *
 * A name that is not a host name at all ends the handshake with a fatal
 * unrecognized_name alert (RFC 6066 §3). That, not illegal_parameter,
 * because it is the alert RFC 6066 gives the server for a server_name it
 * will not serve, and the one OpenSSL and BoringSSL already send for the
 * malformed names they catch themselves (an empty name, a NUL byte): one
 * alert for every bad name, whichever layer saw it. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct rtls_tls_ctx *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	size_t n;

	if (!name)
		return SSL_TLSEXT_ERR_NOACK;
	n = strlen(name);
	if (!sni_syntax_ok(name, n)) {
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	/* Certificates name hosts without the trailing dot. */
	if (name[n - 1] == '.')
		n--;
	for (unsigned i = 0; i < t->nssl; i++) {
		X509 *x = SSL_CTX_get0_certificate(t->ssl[i]);

		if (x && X509_check_host(x, name, n, 0, NULL) == 1) {
			if (i)
				SSL_set_SSL_CTX(ssl, t->ssl[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

static int check_validity(X509 *x, const char *file, char *why, size_t n)
{
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		snprintf(why, n, "certificate %s has expired", file);
		return -EKEYEXPIRED;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
		snprintf(why, n, "certificate %s is not valid yet", file);
		return -EKEYEXPIRED;
	}
	return 0;
}

/* Says "cannot read X: reason" for a file OpenSSL would only call a
 * "system lib" or "PEM lib" error. */
static int readable(const char *what, const char *path, char *why, size_t n)
{
	int ret = rtls__file_readable(path);

	if (ret < 0)
		snprintf(why, n, "cannot read %s %s: %s", what, path, strerror(-ret));
	return ret;
}

/* OpenSSL's last error for a file that did not load is "PEM lib"; the
 * cause is earlier in the queue: no PEM block of that kind, or one that
 * no decoder takes. Either way the file holds no usable `what`. */
static const char *load_err(const char *none, char *buf, size_t n)
{
	unsigned long e, last = ERR_peek_last_error();

	while ((e = ERR_get_error()) != 0) {
		if ((ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) ||
		    ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER) {
			ERR_clear_error();
			return none;
		}
		if (e == last)
			break;
	}
	snprintf(buf, n, "%s", last ? ERR_reason_error_string(last) : "unknown error");
	ERR_clear_error();
	return buf;
}

int rtls__ctx_load_pair(SSL_CTX *s, const char *cert, const char *key, char *why, size_t n)
{
	char e[256];
	int ret;

	if ((ret = readable("certificate", cert, why, n)) < 0 || (ret = readable("key", key, why, n)) < 0)
		return ret;
	if (SSL_CTX_use_certificate_chain_file(s, cert) != 1) {
		snprintf(why, n, "certificate %s: %s", cert,
			 load_err("no PEM certificate in it", e, sizeof(e)));
		return -EINVAL;
	}
	/* A key of another certificate fails here already; it is reported
	 * as a mismatch below. */
	if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1 &&
	    !(ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_X509 &&
	      ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)) {
		snprintf(why, n, "key %s: %s", key, load_err("no PEM private key in it", e, sizeof(e)));
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(s) != 1) {
		ERR_clear_error();
		snprintf(why, n, "key %s does not match certificate %s", key, cert);
		return -EINVAL;
	}
	return check_validity(SSL_CTX_get0_certificate(s), cert, why, n);
}

static int client_auth(SSL_CTX *s, const struct rtls_tls_opts *o, char *why, size_t n)
{
	STACK_OF(X509_NAME) *names;
	char e[256];
	int mode = SSL_VERIFY_PEER;

	if (o->client_auth == RTLS_CLIENT_AUTH_NONE)
		return 0;
	if (!o->client_ca) {
		snprintf(why, n, "--client-auth needs --client-ca FILE");
		return -EINVAL;
	}
	if ((mode = readable("client CA", o->client_ca, why, n)) < 0)
		return mode;
	mode = SSL_VERIFY_PEER;
	if (SSL_CTX_load_verify_locations(s, o->client_ca, NULL) != 1 ||
	    !(names = SSL_load_client_CA_file(o->client_ca))) {
		snprintf(why, n, "client CA %s: %s", o->client_ca, rtls__ossl_err(e, sizeof(e)));
		return -EINVAL;
	}
	SSL_CTX_set_client_CA_list(s, names);
	if (o->client_auth == RTLS_CLIENT_AUTH_REQUIRE)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(s, mode, NULL);
	return 0;
}

/* What both sides' SSL_CTX share: versions, AEAD-only ciphers, no
 * renegotiation or compression, and the callbacks the hand-off needs. */
int rtls__ctx_base(struct rtls_tls_ctx *t, SSL_CTX *s, bool no_tls12, const char *ciphers12,
		   const char *suites13, char *why, size_t n)
{
	char e[256];

	SSL_CTX_set_min_proto_version(s, no_tls12 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION);
	/* RELEASE_BUFFERS frees OpenSSL's record buffers between records, so
	 * an idle connection holds less memory. */
	SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_ciphersuites(s, suites13 ? suites13 : DEFAULT_SUITES13) != 1) {
		snprintf(why, n, "TLS 1.3 cipher suites '%s': %s", suites13,
			 rtls__ossl_err(e, sizeof(e)));
		return -EINVAL;
	}
	if (SSL_CTX_set_cipher_list(s, ciphers12 ? ciphers12 : DEFAULT_CIPHERS12) != 1) {
		snprintf(why, n, "TLS 1.2 ciphers '%s': %s", ciphers12,
			 rtls__ossl_err(e, sizeof(e)));
		return -EINVAL;
	}
	SSL_CTX_set_info_callback(s, rtls__tls_info_cb);
	SSL_CTX_set_msg_callback(s, rtls__tls_msg_cb);
	SSL_CTX_set_app_data(s, t);
	/* The TLS 1.3 traffic secrets, for the kernel or our record layer;
	 * and, always, where our application epoch starts: the AEAD limit
	 * counts from there, whoever makes the records (without it a
	 * kernel without kTLS never counted OpenSSL's TLS 1.3 records). */
	SSL_CTX_set_keylog_callback(s, rtls__tls_keylog_cb);
	return 0;
}

/* One SSL_CTX with every setting but the certificate. */
static int ctx_common(struct rtls_tls_ctx *t, SSL_CTX *s, const struct rtls_tls_opts *o, char *why,
		      size_t n)
{
	char e[256];
	int ret;

	ret = rtls__ctx_base(t, s, o->no_tls12, o->ciphers12, o->ciphersuites13, why, n);
	if (ret < 0)
		return ret;
	/* No 0-RTT (max_early_data 0). */
	SSL_CTX_set_options(s, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_max_early_data(s, 0);
	SSL_CTX_set_alpn_select_cb(s, alpn_cb, NULL);
	SSL_CTX_set_tlsext_servername_callback(s, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(s, t);
	/* Stateless resumption: tickets only, no server-side cache. */
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(s, sid_ctx, sizeof(sid_ctx) - 1);
	if (o->no_tickets) {
		SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(s, 0);
	} else {
		/* One TLS 1.3 ticket per handshake, not OpenSSL's two (Go's
		 * crypto/tls sends one too): each costs a resumption secret,
		 * an encryption, a MAC and a record, 6.5% of a full handshake
		 * (callgrind, 200 handshakes: 2.73 M -> 2.56 M instructions).
		 * Our tickets are stateless and may be used again, and every
		 * resumption gets a fresh one (tickets.c). */
		SSL_CTX_set_num_tickets(s, 1);
		if ((ret = rtls__tickets_install(t, s)) < 0) {
			snprintf(why, n, "session tickets: %s", rtls__ossl_err(e, sizeof(e)));
			return ret;
		}
	}
	return client_auth(s, o, why, n);
}

static int add_cert(struct rtls_tls_ctx *t, const struct rtls_tls_opts *o, const char *cert,
		    const char *key, char *why, size_t n)
{
	SSL_CTX *s;
	int ret;

	if (t->nssl == TLS_MAX_CERTS) {
		snprintf(why, n, "at most %d certificates", TLS_MAX_CERTS);
		return -E2BIG;
	}
	s = SSL_CTX_new(TLS_server_method());
	if (!s) {
		snprintf(why, n, "out of memory");
		return -ENOMEM;
	}
	t->ssl[t->nssl++] = s;
	ret = ctx_common(t, s, o, why, n);
	if (ret < 0)
		return ret;
	return rtls__ctx_load_pair(s, cert, key, why, n);
}

/* Live SSL objects, counted by OpenSSL's own allocation hooks for SSL
 * ex_data: new_func runs in every SSL_new, free_func in every SSL_free. */
static atomic_long live_ssl;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;

static void ssl_new_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent, (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
	atomic_fetch_add(&live_ssl, 1);
}

static void ssl_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent, (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
	atomic_fetch_sub(&live_ssl, 1);
}

static void live_init(void)
{
	CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, NULL, ssl_new_cb, NULL, ssl_free_cb);
}

long rtls_tls_live_ssl(void)
{
	return atomic_load(&live_ssl);
}

/* What a context of either side starts with: its kTLS settings. */
void rtls__ctx_init(struct rtls_tls_ctx *t, enum rtls_ktls_mode ktls, bool rx_no_rekey,
		    bool keyless, unsigned key_update_max_rate)
{
	pthread_once(&live_once, live_init);
	t->hooks.conn_size = sizeof(struct tconn);
	t->ktls = ktls;
	t->ktls_usable = ktls != RTLS_KTLS_OFF && rtls__ktls_available() == 0;
	if (t->ktls_usable) {
		int rekey = -EOPNOTSUPP;

		t->ktls_rekey = rtls__ktls_probe(TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, TLS_TX,
						 &rekey) == 0 &&
				rekey == 0;
	}
	t->ktls_rx_no_rekey = rx_no_rekey;
	t->keyless = keyless;
	t->key_update_max_rate = key_update_max_rate ? key_update_max_rate : 100;
}

int rtls_tls_ctx_new(const struct rtls_tls_opts *o, struct rtls_tls_ctx **out, char *why,
		     size_t whylen)
{
	struct rtls_tls_ctx *t = calloc(1, sizeof(*t));
	char *cert = NULL, *key = NULL;
	int ret = 0;

	*out = NULL;
	if (!t) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	t->hooks.attach = rtls__tls_attach;
	rtls__ctx_init(t, o->ktls, o->ktls_rx_no_rekey, o->ktls_keyless, o->key_update_max_rate);
	t->ktls_zerocopy = o->ktls_zerocopy;
	t->own_records = !o->openssl_records;
	t->key_update_records = o->key_update_records;
	t->fail_level = o->handshake_log_level ? (enum rtls_log_level)o->handshake_log_level
					       : RTLS_LOG_DEBUG;
	if (!o->no_tickets) {
		ret = o->ticket_key_file ? rtls__tickets_load(t, o->ticket_key_file, why, whylen)
					 : rtls__tickets_generate(t);
		if (ret < 0)
			goto fail;
	}
	if (o->ncerts == 0) {
		ret = rtls__selfsigned(o->state_dir, &cert, &key, why, whylen);
		if (ret < 0)
			goto fail;
		ret = add_cert(t, o, cert, key, why, whylen);
		t->selfsigned_path = cert;
		cert = NULL;
	}
	for (unsigned i = 0; ret == 0 && i < o->ncerts; i++)
		ret = add_cert(t, o, o->certs[i].cert_file, o->certs[i].key_file, why, whylen);
	if (ret < 0)
		goto fail;
	free(key);
	*out = t;
	return 0;
fail:
	free(cert);
	free(key);
	rtls_tls_ctx_free(t);
	return ret;
}

const char *rtls_tls_ctx_selfsigned_path(const struct rtls_tls_ctx *ctx)
{
	return ctx->selfsigned_path;
}

void rtls_tls_ctx_free(struct rtls_tls_ctx *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < t->nssl; i++)
		SSL_CTX_free(t->ssl[i]);
	rtls__sessions_free(t->sessions);
	OPENSSL_cleanse(t->keys, sizeof(t->keys));
	free(t->selfsigned_path);
	free(t);
}

int rtls__tls_attach(struct rtls_conn *c)
{
	return rtls__tls_conn_attach(c, (struct rtls_tls_ctx *)(void *)c->r->srv->cfg.tls,
				     RTLS__TLS_SERVER);
}

int rtls_tls_kernel_available(void)
{
	return rtls__ktls_available();
}
