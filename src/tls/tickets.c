/* Session ticket keys. The first key encrypts new tickets; every key
 * decrypts, so instances sharing a key file resume each other's sessions
 * and a rotated-out key still resumes (with a fresh ticket).
 *
 * Key file: one key per line, 160 hex digits = 80 bytes (16-byte name,
 * 32-byte HMAC-SHA256 key, 32-byte AES-256 key), newest first; blank lines
 * and lines starting with '#' are ignored. Make one with
 *   openssl rand -hex 80 */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "../core/util.h"
#include "internal.h"

static int parse_line(const char *line, struct ticket_key *k)
{
	unsigned char raw[sizeof(*k)];
	size_t i;

	for (i = 0; i < sizeof(raw); i++) {
		int hi = rtls__hexval((unsigned char)line[2 * i]);
		int lo = hi < 0 ? -1 : rtls__hexval((unsigned char)line[2 * i + 1]);

		if (lo < 0)
			return -EINVAL;
		raw[i] = (unsigned char)(hi << 4 | lo);
	}
	line += 2 * sizeof(raw);
	while (*line == ' ' || *line == '\t' || *line == '\r' || *line == '\n')
		line++;
	if (*line)
		return -EINVAL;
	memcpy(k, raw, sizeof(*k));
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int rtls__tickets_load(struct rtls_tls_ctx *t, const char *file, char *why, size_t n)
{
	char line[512];
	unsigned lineno = 0;
	int ret = 0;
	FILE *f = fopen(file, "r");

	if (!f) {
		snprintf(why, n, "cannot read ticket key file %s: %s", file, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (line[0] == '#' || line[0] == '\n' || line[0] == '\r')
			continue;
		if (t->nkeys == TICKET_KEYS_MAX) {
			snprintf(why, n, "%s: more than %d keys", file, TICKET_KEYS_MAX);
			ret = -E2BIG;
			break;
		}
		if (parse_line(line, &t->keys[t->nkeys]) < 0) {
			snprintf(why, n, "%s:%u: expected 160 hex digits (openssl rand -hex 80)", file, lineno);
			ret = -EINVAL;
			break;
		}
		t->nkeys++;
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (!ret && !t->nkeys) {
		snprintf(why, n, "%s: no keys", file);
		ret = -EINVAL;
	}
	return ret;
}

int rtls__tickets_generate(struct rtls_tls_ctx *t)
{
	if (RAND_bytes((unsigned char *)&t->keys[0], sizeof(t->keys[0])) != 1)
		return -EIO;
	t->nkeys = 1;
	return 0;
}

static int mac_init(EVP_MAC_CTX *hctx, struct ticket_key *k)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, sizeof(k->hmac)),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};

	return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb):
 * returns 1 (use), 2 (use and renew), 0 (unknown key: full handshake),
 * -1 (error). */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
		     EVP_MAC_CTX *hctx, int enc)
{
	struct rtls_tls_ctx *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
	unsigned i;

	if (enc) {
		struct ticket_key *k = &t->keys[0];

		if (RAND_bytes(iv, 16) != 1)
			return -1;
		memcpy(name, k->name, sizeof(k->name));
		if (EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
		    mac_init(hctx, k) < 0)
			return -1;
		return 1;
	}
	for (i = 0; i < t->nkeys; i++)
		if (memcmp(name, t->keys[i].name, sizeof(t->keys[i].name)) == 0)
			break;
	if (i == t->nkeys)
		return 0;
	if (mac_init(hctx, &t->keys[i]) < 0 ||
	    EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, t->keys[i].aes, iv) != 1)
		return -1;
	/* Always renew: after a TLS 1.3 resumption OpenSSL sends a new ticket
	 * only when asked, and clients use a ticket once (RFC 8446 §C.4), so
	 * without one every other connection would be a full handshake. An
	 * old key's ticket is renewed under the newest key. */
	return 2;
}

int rtls__tickets_install(struct rtls_tls_ctx *t, SSL_CTX *ssl)
{
	(void)t; /* the SSL_CTX's app data is the context (ctx.c) */
	return SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl, ticket_cb) == 1 ? 0 : -EINVAL;
}
