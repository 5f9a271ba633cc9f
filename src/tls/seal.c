/* Our own TX record layer (seal.h): one AEAD record at a time, as RFC 8446
 * §5.2 (TLS 1.3) and RFC 5288 / RFC 7905 (TLS 1.2 AES-GCM, ChaCha20-
 * Poly1305) lay records out. The keys and the first sequence number are
 * those the kernel would have been given (ktls.c derives them; its
 * tls_stat-checked hand-off proves them exact), so the peer cannot tell
 * which of the two made a record. */
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "seal.h"

/* Fetching a cipher is a provider lookup: once per process, not per
 * connection (as ktls.c does for its KDFs). */
static EVP_CIPHER *aes128gcm, *aes256gcm, *chacha;
static pthread_once_t cipher_once = PTHREAD_ONCE_INIT;

static void cipher_init(void)
{
	aes128gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	aes256gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

int rtls__seal_init(struct rtls__sealer *s, const struct rtls__ktls_info *info)
{
	const unsigned char *key, *rec_seq;
	const EVP_CIPHER *c;
	bool tls13 = info->u.base.version == TLS_1_3_VERSION;

	pthread_once(&cipher_once, cipher_init);
	switch (info->u.base.cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		c = aes128gcm;
		key = info->u.gcm128.key;
		rec_seq = info->u.gcm128.rec_seq;
		memcpy(s->iv, info->u.gcm128.salt, 4);
		memcpy(s->iv + 4, info->u.gcm128.iv, 8); /* 1.2: not used */
		break;
	case TLS_CIPHER_AES_GCM_256:
		c = aes256gcm;
		key = info->u.gcm256.key;
		rec_seq = info->u.gcm256.rec_seq;
		memcpy(s->iv, info->u.gcm256.salt, 4);
		memcpy(s->iv + 4, info->u.gcm256.iv, 8);
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		c = chacha;
		key = info->u.chacha.key;
		rec_seq = info->u.chacha.rec_seq;
		memcpy(s->iv, info->u.chacha.iv, 12);
		break;
	default:
		rtls__seal_free(s);
		return -EOPNOTSUPP;
	}
	if (!c || (!s->ctx && !(s->ctx = EVP_CIPHER_CTX_new())) ||
	    EVP_EncryptInit_ex(s->ctx, c, NULL, key, NULL) != 1) {
		rtls__seal_free(s);
		return -EIO;
	}
	s->seq = 0;
	for (int i = 0; i < 8; i++)
		s->seq = s->seq << 8 | rec_seq[i];
	s->version = tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
	s->explicit_len = !tls13 && c != chacha ? 8 : 0;
	s->overhead = (uint8_t)(5 + s->explicit_len + 16 + (tls13 ? 1 : 0));
	return 0;
}

void rtls__seal_free(struct rtls__sealer *s)
{
	EVP_CIPHER_CTX_free(s->ctx); /* cleanses the key schedule */
	OPENSSL_cleanse(s, sizeof(*s));
	s->ctx = NULL;
}

int rtls__seal_record(struct rtls__sealer *s, uint8_t type, const void *p, size_t n,
		      unsigned char *out)
{
	bool tls13 = s->version == TLS1_3_VERSION;
	unsigned char nonce[12], aad[13], *body = out + 5 + s->explicit_len;
	size_t len = n + s->overhead - 5, aad_len;
	uint64_t seq = s->seq;
	int outl;

	if (!s->ctx || n > RTLS__SEAL_RECORD)
		return -EIO;
	/* TLS 1.3 hides the type inside (§5.2): outside, every record is
	 * application_data with legacy version 1.2. */
	out[0] = tls13 ? 23 : type;
	out[1] = 3;
	out[2] = 3;
	out[3] = (unsigned char)(len >> 8);
	out[4] = (unsigned char)len;
	memcpy(nonce, s->iv, 12);
	for (int i = 7; i >= 0; i--, seq >>= 8) {
		if (s->explicit_len) {
			/* 1.2 GCM: salt + explicit nonce, sent in the record;
			 * the sequence number is unique, as it must be. */
			out[5 + i] = (unsigned char)seq;
			nonce[4 + i] = (unsigned char)seq;
		} else {
			nonce[4 + i] ^= (unsigned char)seq; /* §5.3 */
		}
		aad[i] = (unsigned char)seq;
	}
	if (tls13) {
		/* The additional data is the record header itself. */
		memcpy(aad, out, 5);
		aad_len = 5;
	} else {
		/* seq_num + type + version + plaintext length (RFC 5246 §6.2.3.3). */
		aad[8] = type;
		aad[9] = 3;
		aad[10] = 3;
		aad[11] = (unsigned char)(n >> 8);
		aad[12] = (unsigned char)n;
		aad_len = 13;
	}
	if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(s->ctx, NULL, &outl, aad, (int)aad_len) != 1 ||
	    (n && EVP_EncryptUpdate(s->ctx, body, &outl, p, (int)n) != 1) ||
	    (tls13 && EVP_EncryptUpdate(s->ctx, body + n, &outl, &type, 1) != 1) ||
	    EVP_EncryptFinal_ex(s->ctx, body + n + tls13, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_GET_TAG, 16, body + n + tls13) != 1)
		return -EIO;
	s->seq++;
	return (int)(n + s->overhead);
}
