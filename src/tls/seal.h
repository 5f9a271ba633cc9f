/* Our own TX record layer: AEAD records sealed with EVP straight into the
 * output buffer, with the keys and sequence number that the kernel would
 * have been given (struct rtls__ktls_info). Where the kernel cannot make
 * our records, this replaces SSL_write, whose record layer seals into a
 * buffer of its own that the sink BIO then copies out (one copy of every
 * byte and about 4,500 instructions per 16 KiB record; bench/README). */
#ifndef RTLS_TLS_SEAL_H
#define RTLS_TLS_SEAL_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "ktls.h"

#define RTLS__SEAL_RECORD 16384u /* the most plaintext in one record */

struct rtls__sealer {
	EVP_CIPHER_CTX *ctx;  /* the key is in here; NULL: not in use */
	unsigned char iv[12]; /* TLS 1.3 and ChaCha20: the static IV; 1.2
			       * GCM: the 4-byte salt, then unused */
	uint64_t seq;         /* the next record's sequence number */
	uint16_t version;     /* TLS1_2_VERSION or TLS1_3_VERSION */
	uint8_t explicit_len; /* 8 for TLS 1.2 GCM, else 0 */
	uint8_t overhead;     /* bytes a record adds to its plaintext */
};

/* Keys the sealer from one direction's crypto_info (the caller wipes it).
 * A sealer already keyed is keyed again (a KeyUpdate). 0 or -errno; on
 * failure the sealer is left unkeyed (ctx NULL). */
int rtls__seal_init(struct rtls__sealer *s, const struct rtls__ktls_info *info);
/* Frees the cipher context (and the key in it) and wipes the IV. */
void rtls__seal_free(struct rtls__sealer *s);
/* Seals n (<= RTLS__SEAL_RECORD) bytes of content type `type` as one
 * record at out, which has room for n + s->overhead bytes. p may equal
 * out + 5 + s->explicit_len (in place). Returns the record's length, or
 * -EIO (the sealer must not be used again). */
int rtls__seal_record(struct rtls__sealer *s, uint8_t type, const void *p, size_t n,
		      unsigned char *out);

#endif
