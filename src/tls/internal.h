/* Shared by the files of src/tls. */
#ifndef RTLS_TLS_INTERNAL_H
#define RTLS_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "../core/internal.h"
#include "ringtls/tls.h"

#define TLS_MAX_CERTS 16
#define TICKET_KEYS_MAX 8

/* RFC 5077-style ticket key: 16-byte name, HMAC key, AES-256 key. */
struct ticket_key {
	unsigned char name[16];
	unsigned char hmac[32];
	unsigned char aes[32];
};

struct rtls_tls_ctx {
	struct rtls__tls_hooks hooks; /* must stay first: core reads it */
	SSL_CTX *ssl[TLS_MAX_CERTS];  /* one per certificate; [0] is the default */
	unsigned nssl;
	struct ticket_key keys[TICKET_KEYS_MAX]; /* [0] encrypts; all decrypt */
	unsigned nkeys;
	char *selfsigned_path;
	enum rtls_log_level fail_level;
};

/* ctx.c */
int rtls__tls_attach(struct rtls_conn *c);

/* tickets.c */
int rtls__tickets_load(struct rtls_tls_ctx *t, const char *file, char *why, size_t n);
int rtls__tickets_generate(struct rtls_tls_ctx *t);
int rtls__tickets_install(struct rtls_tls_ctx *t, SSL_CTX *ssl);

/* selfsigned.c */
int rtls__selfsigned(const char *dir, char **cert_path, char **key_path, char *why, size_t n);

/* conn.c */
struct rtls_tls_ctx *rtls__tls_ctx_of(SSL *ssl);
int rtls__tls_conn_attach(struct rtls_conn *c, struct rtls_tls_ctx *t);

#endif
