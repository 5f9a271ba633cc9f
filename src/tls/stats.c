/* The TLS layer's counters (struct rtls_stats: handshakes, failures,
 * kernel TLS offload and fallbacks), in the block of the connection's
 * reactor (core/stats.c, DESIGN.md "Metrics"). */
#include <openssl/err.h>

#include "internal.h"

static enum rtls_stats_cipher cipher_of(const struct tconn *t)
{
	switch (t->suite.cipher) {
	case TLS_CIPHER_AES_GCM_128:
		return RTLS_STATS_AES_128_GCM;
	case TLS_CIPHER_AES_GCM_256:
		return RTLS_STATS_AES_256_GCM;
	case TLS_CIPHER_CHACHA20_POLY1305:
		return RTLS_STATS_CHACHA20_POLY1305;
	default:
		return RTLS_STATS_CIPHER_OTHER; /* rtls__ktls_suite() left it 0 */
	}
}

static enum rtls_stats_tls_version version_of(const struct tconn *t)
{
	switch (t->suite.version) {
	case TLS1_2_VERSION:
		return RTLS_STATS_TLS12;
	case TLS1_3_VERSION:
		return RTLS_STATS_TLS13;
	default:
		return RTLS_STATS_TLS_OTHER;
	}
}

static bool mode_wants(enum rtls_ktls_mode m, int dir)
{
	switch (m) {
	case RTLS_KTLS_AUTO:
	case RTLS_KTLS_ON:
		return true;
	case RTLS_KTLS_TX:
		return dir == RTLS_STATS_TX;
	case RTLS_KTLS_RX:
		return dir == RTLS_STATS_RX;
	case RTLS_KTLS_OFF:
	default:
		return false;
	}
}

/* A direction the mode asks for that rtls__tls_decide() did not even
 * try: why. */
static enum rtls_stats_ktls_fallback not_tried(const struct rtls_tls_ctx *x, const struct tconn *t,
					       int dir)
{
	if (!x->ktls_usable)
		return RTLS_STATS_KTLS_UNAVAILABLE;
	if (!t->suite.cipher)
		return RTLS_STATS_KTLS_CIPHER;
	if (dir == RTLS_STATS_RX && t->is13 && !x->ktls_rekey && !x->ktls_rx_no_rekey)
		return RTLS_STATS_KTLS_REKEY;
	return RTLS_STATS_KTLS_UNALIGNED;
}

void rtls__tls_count_done(struct rtls_conn *c, const struct tconn *t)
{
	const struct rtls_tls_ctx *x = t->ctx;
	enum rtls__tls_path path[2] = { t->tx, t->rx };

	RTLS__COUNT_AT(c->r, tls_handshakes, (size_t)version_of(t) * 2 + (t->resumed ? 1 : 0));
	RTLS__COUNT_AT(c->r, tls_ciphers, cipher_of(t));
	for (int dir = RTLS_STATS_TX; dir <= RTLS_STATS_RX; dir++)
		if (mode_wants(x->ktls, dir) && path[dir] == RTLS__TLS_USERSPACE)
			RTLS__COUNT_AT(c->r, ktls_fallbacks,
				       (size_t)dir * 8 + not_tried(x, t, dir));
}

void rtls__tls_count_fallback(struct rtls_conn *c, const struct tconn *t, bool tx, bool rx,
			      enum rtls_stats_ktls_fallback why)
{
	if (tx && t->tx == RTLS__TLS_WANT_KERNEL)
		RTLS__COUNT_AT(c->r, ktls_fallbacks, RTLS_STATS_TX * 8 + why);
	if (rx && t->rx == RTLS__TLS_WANT_KERNEL)
		RTLS__COUNT_AT(c->r, ktls_fallbacks, RTLS_STATS_RX * 8 + why);
}

/* OpenSSL's reason for a failed handshake (its last error, e), in the
 * classes of enum rtls_stats_tls_fail. */
static enum rtls_stats_tls_fail fail_reason(unsigned long e)
{
	int r = ERR_GET_REASON(e);

	if (!e || ERR_GET_LIB(e) != ERR_LIB_SSL)
		return RTLS_STATS_HS_PROTOCOL;
	/* A fatal alert the peer sent is reason SSL_AD_REASON_OFFSET + its
	 * description (SSL_R_TLSV1_ALERT_UNKNOWN_CA, ...). */
	if (r >= SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256)
		return RTLS_STATS_HS_ALERT;
	switch (r) {
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
		return RTLS_STATS_HS_PLAIN_HTTP;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
		return RTLS_STATS_HS_VERSION;
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SUITABLE_KEY_SHARE:
	case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
		return RTLS_STATS_HS_CIPHER;
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
	case SSL_R_NO_CERTIFICATES_RETURNED:
		return RTLS_STATS_HS_CERT;
	default:
		return RTLS_STATS_HS_PROTOCOL;
	}
}

void rtls__tls_count_fail(struct rtls_conn *c, const struct tconn *t, unsigned long e)
{
	if (!rtls__tls_established(t) && !rtls__tls_failed(t))
		RTLS__COUNT_AT(c->r, tls_failures, fail_reason(e));
}

void rtls__tls_count_unfinished(struct rtls_conn *c, const struct tconn *t)
{
	enum rtls_stats_tls_fail why;

	if (rtls__tls_established(t) || rtls__tls_failed(t))
		return; /* counted as done, or by rtls__tls_count_fail */
	switch (c->close_err) {
	case -ETIMEDOUT:
		why = c->r->stopping ? RTLS_STATS_HS_ABORTED : RTLS_STATS_HS_TIMEOUT;
		break;
	case -ECONNRESET:
	case -EPIPE:
		why = RTLS_STATS_HS_PEER_CLOSED;
		break;
	default:
		why = RTLS_STATS_HS_ABORTED;
		break;
	}
	RTLS__COUNT_AT(c->r, tls_failures, why);
}
