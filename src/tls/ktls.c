/* Kernel TLS: traffic keys out of OpenSSL, into the socket.
 *
 * Keys come from documented OpenSSL interfaces only:
 *  - TLS 1.3: the key-log callback gives the application traffic secrets;
 *    key and IV follow by HKDF-Expand-Label (RFC 8446 §7.1, §7.3).
 *  - TLS 1.2: SSL_SESSION_get_master_key() and the randoms; the key block
 *    follows from the PRF (RFC 5246 §6.3, RFC 5288, RFC 7905).
 * Every buffer holding key bytes is wiped on every path. */
#include <errno.h>
#include <linux/tls.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ktls.h"

_Static_assert(sizeof(struct tls12_crypto_info_aes_gcm_128) == 40, "kernel ABI");
_Static_assert(sizeof(struct tls12_crypto_info_aes_gcm_256) == 56, "kernel ABI");
_Static_assert(sizeof(struct tls12_crypto_info_chacha20_poly1305) == 56, "kernel ABI");

int rtls__ktls_suite(const SSL *ssl, struct rtls__ktls_suite *s)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	uint16_t id = c ? (uint16_t)SSL_CIPHER_get_protocol_id(c) : 0;

	memset(s, 0, sizeof(*s));
	s->version = (uint16_t)SSL_version(ssl);
	if (s->version != TLS1_3_VERSION && s->version != TLS1_2_VERSION)
		return -EOPNOTSUPP;
	switch (id) {
	case 0x1301: /* TLS_AES_128_GCM_SHA256 */
	case 0xC02B: /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	case 0xC02F: /* ECDHE-RSA-AES128-GCM-SHA256 */
		s->cipher = TLS_CIPHER_AES_GCM_128;
		s->key_len = 16;
		s->md = "SHA256";
		break;
	case 0x1302: /* TLS_AES_256_GCM_SHA384 */
	case 0xC02C: /* ECDHE-ECDSA-AES256-GCM-SHA384 */
	case 0xC030: /* ECDHE-RSA-AES256-GCM-SHA384 */
		s->cipher = TLS_CIPHER_AES_GCM_256;
		s->key_len = 32;
		s->md = "SHA384";
		break;
	case 0x1303: /* TLS_CHACHA20_POLY1305_SHA256 */
	case 0xCCA8: /* ECDHE-RSA-CHACHA20-POLY1305 */
	case 0xCCA9: /* ECDHE-ECDSA-CHACHA20-POLY1305 */
		s->cipher = TLS_CIPHER_CHACHA20_POLY1305;
		s->key_len = 32;
		s->md = "SHA256";
		break;
	default:
		return -EOPNOTSUPP;
	}
	/* TLS 1.2 GCM: 4-byte implicit salt; ChaCha20 and all of 1.3: 12. */
	s->iv_len = (s->version == TLS1_2_VERSION && s->cipher != TLS_CIPHER_CHACHA20_POLY1305) ? 4 : 12;
	s->hash_len = strcmp(s->md, "SHA384") == 0 ? 48 : 32;
	return 0;
}

/* Fetching a KDF is a provider lookup that costs more than the derivation:
 * do it once per process. */
static EVP_KDF *kdf_hkdf, *kdf_prf;
static pthread_once_t kdf_once = PTHREAD_ONCE_INIT;

static void kdf_init(void)
{
	kdf_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	kdf_prf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
}

static EVP_KDF_CTX *kdf_ctx(bool prf)
{
	pthread_once(&kdf_once, kdf_init);
	if (prf ? !kdf_prf : !kdf_hkdf)
		return NULL;
	return EVP_KDF_CTX_new(prf ? kdf_prf : kdf_hkdf);
}

/* HKDF-Expand-Label(secret, label, "", n) (RFC 8446 §7.1). */
int rtls__hkdf_expand_label(const char *md, const unsigned char *secret, size_t secret_len,
			    const char *label, unsigned char *out, size_t n)
{
	unsigned char info[2 + 1 + 6 + 32 + 1];
	size_t ll = strlen(label), il = 0;
	EVP_KDF_CTX *kctx;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ret = -EIO;

	if (ll > 32 || n > 255)
		return -EINVAL;
	info[il++] = (unsigned char)(n >> 8);
	info[il++] = (unsigned char)n;
	info[il++] = (unsigned char)(6 + ll);
	memcpy(info + il, "tls13 ", 6);
	il += 6;
	memcpy(info + il, label, ll);
	il += ll;
	info[il++] = 0; /* empty context */
	kctx = kdf_ctx(false);
	if (kctx) {
		OSSL_PARAM p[] = {
			OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
			OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, il),
			OSSL_PARAM_construct_end(),
		};
		ret = EVP_KDF_derive(kctx, out, n, p) == 1 ? 0 : -EIO;
	}
	EVP_KDF_CTX_free(kctx);
	return ret;
}

/* TLS 1.2 key block: PRF(master, "key expansion", server_random +
 * client_random). AEAD suites have no MAC keys, so the block is
 * client key, server key, client IV, server IV. */
static int tls12_key_block(SSL *ssl, const struct rtls__ktls_suite *s, unsigned char *kb, size_t n)
{
	unsigned char master[48], sr[32], cr[32];
	EVP_KDF_CTX *kctx = kdf_ctx(true);
	size_t ml = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof(master));
	int ret = -EIO;

	if (kctx && ml == sizeof(master) &&
	    SSL_get_server_random(ssl, sr, sizeof(sr)) == sizeof(sr) &&
	    SSL_get_client_random(ssl, cr, sizeof(cr)) == sizeof(cr)) {
		OSSL_PARAM p[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)s->md, 0),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, master, ml),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)"key expansion", 13),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, sr, sizeof(sr)),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, cr, sizeof(cr)),
			OSSL_PARAM_construct_end(),
		};
		ret = EVP_KDF_derive(kctx, kb, n, p) == 1 ? 0 : -EIO;
	}
	OPENSSL_cleanse(master, sizeof(master));
	EVP_KDF_CTX_free(kctx);
	return ret;
}

/* Fills the kernel's crypto_info for one direction. iv is the full
 * 12-byte IV for 1.3 and ChaCha20, the 4-byte salt for 1.2 GCM. */
static void fill_info(const struct rtls__ktls_suite *s, const unsigned char *key,
		      const unsigned char *iv, uint64_t seq, struct rtls__ktls_info *out)
{
	unsigned char rec_seq[8];

	for (int i = 7; i >= 0; i--, seq >>= 8)
		rec_seq[i] = (unsigned char)seq;
	memset(out, 0, sizeof(*out));
	out->u.base.version = s->version;
	out->u.base.cipher_type = s->cipher;
	switch (s->cipher) {
	case TLS_CIPHER_AES_GCM_128:
		memcpy(out->u.gcm128.key, key, 16);
		memcpy(out->u.gcm128.salt, iv, 4);
		/* 1.3: the rest of the IV. 1.2: the first explicit nonce,
		 * which need only be unique: use the sequence number. */
		memcpy(out->u.gcm128.iv, s->iv_len == 12 ? iv + 4 : rec_seq, 8);
		memcpy(out->u.gcm128.rec_seq, rec_seq, 8);
		out->len = sizeof(out->u.gcm128);
		break;
	case TLS_CIPHER_AES_GCM_256:
		memcpy(out->u.gcm256.key, key, 32);
		memcpy(out->u.gcm256.salt, iv, 4);
		memcpy(out->u.gcm256.iv, s->iv_len == 12 ? iv + 4 : rec_seq, 8);
		memcpy(out->u.gcm256.rec_seq, rec_seq, 8);
		out->len = sizeof(out->u.gcm256);
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
	default:
		memcpy(out->u.chacha.key, key, 32);
		memcpy(out->u.chacha.iv, iv, 12);
		memcpy(out->u.chacha.rec_seq, rec_seq, 8);
		out->len = sizeof(out->u.chacha);
		break;
	}
}

int rtls__ktls_info_tls13(const struct rtls__ktls_suite *s, const unsigned char *secret,
			  uint64_t seq, struct rtls__ktls_info *out)
{
	unsigned char key[32], iv[12];
	int ret;

	ret = rtls__hkdf_expand_label(s->md, secret, s->hash_len, "key", key, s->key_len);
	if (ret == 0)
		ret = rtls__hkdf_expand_label(s->md, secret, s->hash_len, "iv", iv, 12);
	if (ret == 0)
		fill_info(s, key, iv, seq, out);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	return ret;
}

int rtls__ktls_info_tls12(SSL *ssl, const struct rtls__ktls_suite *s, bool server, uint64_t tx_seq,
			  uint64_t rx_seq, struct rtls__ktls_info *tx, struct rtls__ktls_info *rx)
{
	unsigned char kb[2 * 32 + 2 * 12];
	size_t n = 2 * (size_t)s->key_len + 2 * (size_t)s->iv_len;
	int ret = tls12_key_block(ssl, s, kb, n);

	if (ret == 0) {
		const unsigned char *ckey = kb, *skey = kb + s->key_len;
		const unsigned char *civ = kb + (size_t)2 * s->key_len, *siv = civ + s->iv_len;

		fill_info(s, server ? skey : ckey, server ? siv : civ, tx_seq, tx);
		fill_info(s, server ? ckey : skey, server ? civ : siv, rx_seq, rx);
	}
	OPENSSL_cleanse(kb, sizeof(kb));
	return ret;
}

int rtls__ktls_ulp(int fd)
{
	return setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0 ? -errno : 0;
}

int rtls__ktls_set(int fd, int dir, const struct rtls__ktls_info *info)
{
	return setsockopt(fd, SOL_TLS, dir, &info->u, info->len) < 0 ? -errno : 0;
}

/* Whether this kernel can attach the tls ULP at all: on an unconnected
 * socket a kernel with kTLS answers ENOTCONN, one without ENOENT. */
int rtls__ktls_available(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

	if (fd < 0)
		return -errno;
	ret = rtls__ktls_ulp(fd);
	close(fd);
	if (ret == 0 || ret == -ENOTCONN)
		return 0;
	return ret;
}

/* A connected loopback TCP pair; the kernel only attaches the tls ULP
 * to an established socket. */
static int tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ret = 0;

	*a = *b = -1;
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0 ||
	    (*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(*a, (struct sockaddr *)&sa, len) < 0 || (*b = accept(l, NULL, NULL)) < 0)
		ret = -errno;
	close(l);
	if (ret < 0) {
		if (*a >= 0)
			close(*a);
		*a = -1;
	}
	return ret;
}

/* Can the kernel take this version and cipher in this direction? With
 * rekey != NULL, also whether a second key can be installed (TLS 1.3
 * KeyUpdate support, Linux 6.14+). Uses throw-away zero keys. */
int rtls__ktls_probe(uint16_t version, uint16_t cipher, int dir, int *rekey)
{
	struct rtls__ktls_suite s = { .version = version, .cipher = cipher,
				      .key_len = cipher == TLS_CIPHER_AES_GCM_128 ? 16u : 32u,
				      .iv_len = 12 };
	unsigned char zero[32] = { 0 };
	struct rtls__ktls_info info;
	int a, b, ret;

	ret = tcp_pair(&a, &b);
	if (ret < 0)
		return ret;
	fill_info(&s, zero, zero, 0, &info);
	ret = rtls__ktls_ulp(a);
	if (ret == 0)
		ret = rtls__ktls_set(a, dir, &info);
	if (ret == 0 && rekey)
		*rekey = rtls__ktls_set(a, dir, &info);
	close(a);
	close(b);
	return ret;
}
