/* Kernel TLS helpers: suite selection, key derivation, crypto_info. */
#ifndef RTLS_TLS_KTLS_H
#define RTLS_TLS_KTLS_H

#include <linux/tls.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

/* What the kernel needs to know about a negotiated suite. */
struct rtls__ktls_suite {
	uint16_t version;  /* TLS1_2_VERSION or TLS1_3_VERSION */
	uint16_t cipher;   /* TLS_CIPHER_* of <linux/tls.h> */
	unsigned key_len;
	unsigned iv_len;   /* key-block IV bytes: 4 (1.2 GCM) or 12 */
	unsigned hash_len; /* traffic secret length (1.3) */
	const char *md;    /* "SHA256" or "SHA384" */
};

/* One direction's crypto_info, ready for setsockopt(SOL_TLS). */
struct rtls__ktls_info {
	union {
		struct tls_crypto_info base;
		struct tls12_crypto_info_aes_gcm_128 gcm128;
		struct tls12_crypto_info_aes_gcm_256 gcm256;
		struct tls12_crypto_info_chacha20_poly1305 chacha;
	} u;
	unsigned len;
};

/* 0 if the negotiated version and cipher can go to the kernel. */
int rtls__ktls_suite(const SSL *ssl, struct rtls__ktls_suite *s);
int rtls__hkdf_expand_label(const char *md, const unsigned char *secret, size_t secret_len,
			    const char *label, unsigned char *out, size_t n);
int rtls__ktls_info_tls13(const struct rtls__ktls_suite *s, const unsigned char *secret,
			  uint64_t seq, struct rtls__ktls_info *out);
/* server: our side's role (which half of the key block is ours). */
int rtls__ktls_info_tls12(SSL *ssl, const struct rtls__ktls_suite *s, bool server, uint64_t tx_seq,
			  uint64_t rx_seq, struct rtls__ktls_info *tx, struct rtls__ktls_info *rx);
int rtls__ktls_ulp(int fd);
/* dir: TLS_TX or TLS_RX. Irreversible on success. */
int rtls__ktls_set(int fd, int dir, const struct rtls__ktls_info *info);
int rtls__ktls_available(void);
int rtls__ktls_probe(uint16_t version, uint16_t cipher, int dir, int *rekey);

#endif
