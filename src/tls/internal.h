/* Shared by the files of src/tls. */
#ifndef RTLS_TLS_INTERNAL_H
#define RTLS_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "../core/internal.h"
#include "ringtls/tls.h"
#include "ktls.h"
#include "record.h"

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
	enum rtls_ktls_mode ktls;
	bool ktls_usable;             /* the tls ULP exists in this kernel */
	bool ktls_zerocopy;
	bool ktls_rekey;              /* the kernel can rekey (6.14+) */
	bool ktls_rx_no_rekey;        /* force TLS 1.3 RX offload without rekey */
	bool keyless;                 /* keep no next secrets: KeyUpdate closes */
	uint64_t key_update_records;  /* our KeyUpdate after this many records */
	unsigned key_update_max_rate; /* peer KeyUpdates per second */
};

/* ctx.c */
int rtls__tls_attach(struct rtls_conn *c);

/* tickets.c */
int rtls__tickets_load(struct rtls_tls_ctx *t, const char *file, char *why, size_t n);
int rtls__tickets_generate(struct rtls_tls_ctx *t);
int rtls__tickets_install(struct rtls_tls_ctx *t, SSL_CTX *ssl);

/* selfsigned.c */
int rtls__selfsigned(const char *dir, char **cert_path, char **key_path, char *why, size_t n);

/* Per-connection TLS state (the transport's c->tp_state). */
struct tconn {
	SSL *ssl;                  /* NULL once both directions are in the kernel */
	BIO *rbio;                 /* network → OpenSSL (the source BIO) */
	/* The source BIO reads the received buffer in place: `src` points
	 * into it while tls_on_recv runs; bytes OpenSSL has not taken when
	 * the buffer goes back or to the handler move to `spill`. */
	const unsigned char *src;
	size_t src_len;
	BIO *spill;                /* memory BIO, NULL until first needed */
	struct rtls__wbuf *sink;   /* where the sink BIO writes now */
	struct rtls__wbuf stage;   /* OpenSSL's own bytes made outside seal */
	bool established;
	bool close_notify_in;      /* peer's close_notify seen */
	bool failed;               /* fatal error: no more SSL_write/shutdown */
	bool shutdown_wanted;      /* close_notify once pending data is sealed */
	bool resumed;
	bool is13;                 /* TLS 1.3 negotiated */
	/* kernel offload */
	bool want_ktx, want_krx;   /* policy and kernel allow it */
	bool switch_pending;       /* handshake done; switch once output drained */
	bool ktx, krx;             /* direction is in the kernel */
	bool have_srv_secret, have_cli_secret;
	uint16_t last_alert;       /* (level << 8) | description, last one sent */
	unsigned char srv_secret[48], cli_secret[48]; /* TLS 1.3, wiped at switch */
	/* our output stream, parsed to count records under the traffic key
	 * (out.mark: where the application epoch starts; out.records: the
	 * records sent under the traffic key) */
	struct rtls__rec_tx out;
	/* input, read record by record while RX may go to the kernel */
	struct rtls__rec in;
	/* KeyUpdate (keyupdate.c) */
	bool can_rekey;            /* kernel takes a second TLS_TX/TLS_RX (6.14+) */
	bool have_next_tx, have_next_rx;
	bool tx_update_pending;    /* our KeyUpdate queued; new key after it */
	bool peer_asked_update;    /* userspace RX saw update_requested */
	bool flood;                /* KeyUpdate rate exceeded */
	unsigned char next_tx[48], next_rx[48]; /* next generation only */
	struct rtls__ktls_suite suite;
	uint64_t ku_window_ms;
	uint32_t ku_count;
	uint64_t tx_ops_base, tx_bytes_base; /* at the last TX key install */
	uint32_t tx_records_base;
	uint32_t pre_records;      /* records OpenSSL sent under this TX key */
	const char *version, *cipher; /* static strings from OpenSSL */
	char alpn[16];
	char sni[64];              /* longer names are cut (query/log only) */
	struct rtls__ctl ctl;      /* RECVMSG/SENDMSG headers for kernel TLS */
	char *subject;             /* verified client certificate subject */
};

/* conn.c */
void rtls__tls_fail(struct rtls_conn *c, struct tconn *t, const char *when);
void rtls__tls_read_records(struct rtls_conn *c, struct tconn *t, struct rtls_buf *raw);
void rtls__tls_log_open(struct rtls_conn *c, struct tconn *t);
extern const struct rtls__transport rtls__tls_user, rtls__tls_ktx;

/* keyupdate.c */
void rtls__ku_prepare(struct rtls_conn *c, struct tconn *t, const unsigned char *tx_secret,
		      const unsigned char *rx_secret);
void rtls__ku_kernel_rx(struct rtls_conn *c, struct tconn *t, bool update_requested);
void rtls__ku_after_read(struct rtls_conn *c, struct tconn *t);
void rtls__ku_seg_sent(struct rtls_conn *c);
void rtls__ku_check_limits(struct rtls_conn *c, struct tconn *t);
void rtls__tls_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		      SSL *ssl, void *arg);
void rtls__tls_close_clean(struct rtls_conn *c, struct tconn *t, const char *why);

/* handover.c */
void rtls__tls_sink_account(struct tconn *t, const unsigned char *p, size_t n);
void rtls__tls_in_account(struct rtls_conn *c, struct tconn *t, const unsigned char *p, size_t n);
void rtls__tls_decide(struct rtls_conn *c, struct tconn *t);
void rtls__tls_switch(struct rtls_conn *c, struct tconn *t);
void rtls__tls_on_record(struct rtls_conn *c, struct rtls_buf *raw, int type);
int rtls__tls_on_recv_error(struct rtls_conn *c, int err);
void rtls__tls_ktx_shutdown(struct rtls_conn *c);
void rtls__tls_alert(struct rtls_conn *c, struct tconn *t, uint8_t desc);
void rtls__tls_info_cb(const SSL *ssl, int where, int ret);
void rtls__tls_keylog_cb(const SSL *ssl, const char *line);
int rtls__tls_conn_attach(struct rtls_conn *c, struct rtls_tls_ctx *t);

#endif
