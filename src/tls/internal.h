/* Shared by the files of src/tls. */
#ifndef RTLS_TLS_INTERNAL_H
#define RTLS_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "../core/internal.h"
#include "ringtls/tls.h"
#include "ktls.h"
#include "record.h"
#include "seal.h"
#include "state.h"

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
	bool own_records;             /* TX not in the kernel: seal.c, not OpenSSL */
	uint64_t key_update_records;  /* our KeyUpdate after this many records */
	unsigned key_update_max_rate; /* peer KeyUpdates per second */
	bool client;                  /* rtls_tls_client_ctx_new(): ssl[0] connects */
	struct rtls__sessions *sessions; /* client: sessions to resume, or NULL */
};

/* ctx.c */
int rtls__tls_attach(struct rtls_conn *c);
void rtls__ctx_init(struct rtls_tls_ctx *t, enum rtls_ktls_mode ktls, bool rx_no_rekey,
		    bool keyless, unsigned key_update_max_rate);
int rtls__ctx_base(struct rtls_tls_ctx *t, SSL_CTX *s, bool no_tls12, const char *ciphers12,
		   const char *suites13, char *why, size_t n);
int rtls__ctx_load_pair(SSL_CTX *s, const char *cert, const char *key, char *why, size_t n);
const char *rtls__ossl_err(char *buf, size_t n);

/* tickets.c */
int rtls__tickets_load(struct rtls_tls_ctx *t, const char *file, char *why, size_t n);
int rtls__tickets_generate(struct rtls_tls_ctx *t);
int rtls__tickets_install(struct rtls_tls_ctx *t, SSL_CTX *ssl);

struct tconn;

/* client.c: the client side's context, sessions and attach. */
int rtls__tls_attach_client(struct rtls_conn *c, void *ctx, const char *name);
void rtls__sessions_free(struct rtls__sessions *s);
void rtls__tls_verify_why(const struct tconn *t, char *buf, size_t n);

/* selfsigned.c */
int rtls__selfsigned(const char *dir, char **cert_path, char **key_path, char *why, size_t n);

/* Per-connection TLS state (the transport's c->tp_state). */
struct tconn {
	struct rtls_tls_ctx *ctx;  /* the listener's, or the client context */
	struct rtls_conn *conn;    /* whose state this is */
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
	/* The state (state.h); changed only through rtls__tls_set_*(). */
	enum rtls__tls_role role;
	enum rtls__tls_phase phase;
	enum rtls__tls_path tx, rx;
	enum rtls__tls_close close;
	/* Facts, not states. The peer's close_notify is the peer's half of
	 * the stream: it can come in any phase of ours, before or after our
	 * close_notify or a failure, and only decides how its FIN is logged. */
	bool close_notify_in;
	/* Fixed once, at the end of the handshake. */
	bool resumed;
	bool is13;                 /* TLS 1.3 negotiated */
	/* Whether tx_secret/rx_secret hold a secret: OpenSSL's key-log
	 * callback may report either, in its own order, during the
	 * handshake; they are wiped at the switch (or at destroy). Ours is
	 * SERVER_TRAFFIC_SECRET_0 on the server side, CLIENT_... on the
	 * client side. */
	bool have_tx_secret, have_rx_secret;
	/* Client, TLS 1.3: RX goes to the kernel only after the server's
	 * first record under its traffic key (its NewSessionTicket, kept
	 * for resumption) has been read here; rx_records counts those. */
	bool rx_deferred;
	uint32_t rx_records;
	uint64_t sess_hash;           /* client: the sessions key (address, name) */
	struct rtls__hs_skip tickets; /* client, kernel RX: tickets being skipped */
	uint16_t last_alert;       /* (level << 8) | description, last one sent */
	unsigned char tx_secret[48], rx_secret[48]; /* TLS 1.3, wiped at switch */
	/* our output stream, parsed to count records under the traffic key
	 * (out.mark: where the application epoch starts; out.records: the
	 * records sent under the traffic key) */
	struct rtls__rec_tx out;
	/* input, read record by record while RX may go to the kernel */
	struct rtls__rec in;
	/* KeyUpdate (keyupdate.c). Two events OpenSSL's message callback
	 * reports from inside SSL_read, acted on once the read has returned
	 * (rtls__ku_after_read): the phase must not change under OpenSSL. */
	bool peer_asked_update;    /* userspace RX saw update_requested */
	bool peer_updated;         /* userspace RX saw any KeyUpdate (stays set) */
	bool flood;                /* KeyUpdate rate exceeded (stays set) */
	unsigned char next_tx[48], next_rx[48]; /* next generation only: valid
				    * in tx/rx RTLS__TLS_KERNEL_NEXT, _UPDATING,
				    * and tx RTLS__TLS_OWN under TLS 1.3 */
	struct rtls__sealer seal;               /* tx RTLS__TLS_OWN: our record layer */
	bool tx_spent;                          /* TLS 1.2 at the AEAD limit: nothing but
				    * close_notify is sealed any more */
	struct rtls__ktls_suite suite;
	uint64_t ku_window_ms;
	uint32_t ku_count;
	uint64_t tx_ops_base, tx_bytes_base; /* at the last TX key install */
	uint32_t tx_records_base;
	uint32_t pre_records;      /* records OpenSSL sent under this TX key */
	const char *version, *cipher; /* static strings from OpenSSL */
	char alpn[16];
	char sni[64];              /* longer names are cut (query/log only);
				    * a client's: the name it checks */
	bool no_sni;               /* a client checking an IP: none was sent */
	struct rtls__ctl ctl;      /* RECVMSG/SENDMSG headers for kernel TLS */
	char *subject;             /* verified client certificate subject */
};

/* Transitions: the only writers of t->phase, tx, rx and close. */
static inline void rtls__tls_set_phase(struct tconn *t, enum rtls__tls_phase to)
{
	RTLS__EDGE_CHECK(rtls__tls_phase_edge(t->phase, to), "tls phase", t->phase, to);
	t->phase = to;
}

static inline void rtls__tls_set_tx(struct tconn *t, enum rtls__tls_path to)
{
	RTLS__EDGE_CHECK(rtls__tls_path_edge(t->tx, to), "tls tx", t->tx, to);
	t->tx = to;
}

static inline void rtls__tls_set_rx(struct tconn *t, enum rtls__tls_path to)
{
	/* Our KeyUpdate is a TX matter: RX never waits on one; and our
	 * record layer only seals. */
	RTLS__EDGE_CHECK(rtls__tls_path_edge(t->rx, to) && to != RTLS__TLS_KERNEL_UPDATING &&
				 to != RTLS__TLS_OWN,
			 "tls rx", t->rx, to);
	t->rx = to;
}

static inline void rtls__tls_set_close(struct tconn *t, enum rtls__tls_close to)
{
	RTLS__EDGE_CHECK(rtls__tls_close_edge(t->close, to), "tls close", t->close, to);
	t->close = to;
}

static inline bool rtls__tls_established(const struct tconn *t)
{
	return rtls__tls_phase_done(t->phase);
}

static inline bool rtls__tls_failed(const struct tconn *t)
{
	return rtls__tls_phase_failed(t->phase);
}

static inline bool rtls__tls_tx_kernel(const struct tconn *t)
{
	return rtls__tls_path_kernel(t->tx);
}

/* OpenSSL still makes our records (its writes go to the wire). */
static inline bool rtls__tls_tx_openssl(const struct tconn *t)
{
	return t->tx == RTLS__TLS_USERSPACE || t->tx == RTLS__TLS_WANT_KERNEL;
}

static inline bool rtls__tls_rx_kernel(const struct tconn *t)
{
	return rtls__tls_path_kernel(t->rx);
}

/* conn.c */
void rtls__tls_peer(const struct rtls_conn *c, char *out, size_t n);
void rtls__tls_fail(struct rtls_conn *c, struct tconn *t, const char *when);
void rtls__tls_read_records(struct rtls_conn *c, struct tconn *t, struct rtls_buf *raw);
void rtls__tls_log_open(struct rtls_conn *c, struct tconn *t);
extern const struct rtls__transport rtls__tls_user, rtls__tls_ktx;

/* keyupdate.c */
void rtls__ku_prepare(struct rtls_conn *c, struct tconn *t, const unsigned char *tx_secret,
		      const unsigned char *rx_secret);
void rtls__ku_prepare_rx(struct rtls_conn *c, struct tconn *t, const unsigned char *rx_secret);
void rtls__ku_kernel_rx(struct rtls_conn *c, struct tconn *t, bool update_requested);
void rtls__ku_after_read(struct rtls_conn *c, struct tconn *t);
void rtls__ku_seg_sent(struct rtls_conn *c);
void rtls__ku_check_limits(struct rtls_conn *c, struct tconn *t);
int rtls__ku_prepare_own(struct tconn *t, const unsigned char *tx_secret);
void rtls__ku_before_seal(struct rtls_conn *c, struct tconn *t);
void rtls__tls_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		      SSL *ssl, void *arg);
void rtls__tls_close_clean(struct rtls_conn *c, struct tconn *t, const char *why);

/* stats.c: the counters of struct rtls_stats this layer keeps. done: a
 * handshake completed (after rtls__tls_decide); fallback: the wanted
 * directions among tx, rx stay in userspace; fail: a failed handshake
 * (OpenSSL's last error e), before its phase changes; unfinished: at
 * destroy, a handshake that neither completed nor failed. */
void rtls__tls_count_done(struct rtls_conn *c, const struct tconn *t);
void rtls__tls_count_fallback(struct rtls_conn *c, const struct tconn *t, bool tx, bool rx,
			      enum rtls_stats_ktls_fallback why);
void rtls__tls_count_fail(struct rtls_conn *c, const struct tconn *t, unsigned long e);
void rtls__tls_count_unfinished(struct rtls_conn *c, const struct tconn *t);

/* handover.c */
void rtls__tls_sink_account(struct tconn *t, const unsigned char *p, size_t n);
void rtls__tls_in_account(struct rtls_conn *c, struct tconn *t, const unsigned char *p, size_t n);
void rtls__tls_decide(struct rtls_conn *c, struct tconn *t);
void rtls__tls_switch(struct rtls_conn *c, struct tconn *t);
void rtls__tls_switch_rx_late(struct rtls_conn *c, struct tconn *t);
void rtls__tls_on_record(struct rtls_conn *c, struct rtls_buf *raw, int type);
int rtls__tls_on_recv_error(struct rtls_conn *c, int err);
void rtls__tls_ktx_shutdown(struct rtls_conn *c);
void rtls__tls_own_tx(struct rtls_conn *c, struct tconn *t);
int rtls__tls_own_control(struct rtls_conn *c, struct tconn *t, struct rtls__wbuf *w, uint8_t type,
			  const void *p, size_t n);
void rtls__tls_alert(struct rtls_conn *c, struct tconn *t, uint8_t desc);
void rtls__tls_info_cb(const SSL *ssl, int where, int ret);
void rtls__tls_keylog_cb(const SSL *ssl, const char *line);
int rtls__tls_conn_attach(struct rtls_conn *c, struct rtls_tls_ctx *t, enum rtls__tls_role role);

#endif
