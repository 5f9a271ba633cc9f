/* ringtls TLS layer: server contexts for TLS listeners.
 *
 * A struct rtls_tls_ctx is created once, before rtls_server_create(), and
 * passed as rtls_config.tls; every reactor reads it and nothing changes it
 * after start. The handshake runs in userspace with OpenSSL 3 over the
 * connection's own io_uring receives and sends. None of these calls runs a
 * handler callback. */
#ifndef RINGTLS_TLS_H
#define RINGTLS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "ringtls/ringtls.h" /* RTLS_API */

#ifdef __cplusplus
extern "C" {
#endif

struct rtls_tls_ctx;

/* One certificate chain and its key, PEM. The first is the default; the
 * others are chosen by SNI against their DNS names. */
struct rtls_tls_cert {
	const char *cert_file;
	const char *key_file;
};

/* Which directions go to the kernel after the handshake. AUTO and ON try
 * both and fall back per direction (ON logs each fallback as a warning);
 * TX and RX try only that direction. */
enum rtls_ktls_mode { RTLS_KTLS_AUTO = 0, RTLS_KTLS_OFF, RTLS_KTLS_TX, RTLS_KTLS_RX, RTLS_KTLS_ON };

enum rtls_client_auth { RTLS_CLIENT_AUTH_NONE = 0, RTLS_CLIENT_AUTH_OPTIONAL, RTLS_CLIENT_AUTH_REQUIRE };

struct rtls_tls_opts {
	const struct rtls_tls_cert *certs; /* borrowed during rtls_tls_ctx_new */
	unsigned ncerts;                   /* 0: self-signed in state_dir */
	const char *state_dir;             /* where the self-signed pair lives */
	bool no_tls12;                     /* TLS 1.3 only */
	const char *ciphers12;             /* OpenSSL cipher list for TLS 1.2, or NULL */
	const char *ciphersuites13;        /* TLS 1.3 suites, or NULL */
	const char *client_ca;             /* PEM bundle, with client_auth != NONE */
	enum rtls_client_auth client_auth;
	const char *ticket_key_file;       /* shared ticket keys, or NULL: in memory */
	bool no_tickets;                   /* disable session tickets */
	unsigned handshake_log_level;      /* enum rtls_log_level for failures (debug) */
	enum rtls_ktls_mode ktls;
	bool ktls_zerocopy;                /* TLS_TX_ZEROCOPY_RO: see --help */
	bool ktls_rx_no_rekey;             /* TLS 1.3 RX to a kernel that cannot
					    * rekey: a peer KeyUpdate then ends
					    * the connection */
	bool ktls_keyless;                 /* keep no next-generation secrets */
	unsigned long long key_update_records; /* test hook: our KeyUpdate after
					    * this many records (0: RFC 8446 §5.5) */
	unsigned key_update_max_rate;      /* peer KeyUpdates per second (100) */
	bool openssl_records;              /* where the kernel does not make our
					    * records after the handshake,
					    * OpenSSL's record layer does, not
					    * ringtls's own (for comparison) */
};

/* Whether kernel TLS can be used at all here; 0, or a negated errno (ENOENT:
 * no tls ULP in this kernel). */
RTLS_API int rtls_tls_kernel_available(void);

/* Builds the context: loads and checks every certificate and key (readable,
 * matching, within validity), or creates/reuses the self-signed one. On
 * failure returns a negated errno and writes one line for the user into
 * why[0..whylen). *out is owned by the caller; free it after
 * rtls_server_destroy() of every server that uses it. */
RTLS_API int rtls_tls_ctx_new(const struct rtls_tls_opts *o, struct rtls_tls_ctx **out, char *why,
			      size_t whylen);

/* Path of the certificate in use when it was self-signed, else NULL.
 * Borrowed from ctx. */
RTLS_API const char *rtls_tls_ctx_selfsigned_path(const struct rtls_tls_ctx *ctx);

/* Frees ctx (NULL is a no-op), once no server uses it. */
RTLS_API void rtls_tls_ctx_free(struct rtls_tls_ctx *ctx);

/* The client side: TLS to servers this process connects to (a proxy's
 * upstreams), with the same hand-off to kernel TLS as the server side. */
struct rtls_tls_client_opts {
	const char *ca_file;   /* PEM bundle the servers' certificates
				      * are verified against; NULL: the
				      * system's default store. Verification
				      * is always on. */
	const char *cert_file; /* a client certificate chain, PEM, and */
	const char *key_file;  /* its key; both or neither */
	bool no_resumption;    /* keep no sessions to resume */
	enum rtls_ktls_mode ktls;
	bool ktls_rx_no_rekey; /* as in struct rtls_tls_opts */
	bool ktls_keyless;
	unsigned key_update_max_rate;
	bool openssl_records; /* as in struct rtls_tls_opts */
};

/* Builds a client context: loads the CA bundle (or the default store) and
 * the client certificate, checking them as rtls_tls_ctx_new() does. One
 * context serves every reactor; it keeps the last session of each
 * (address, name) for resumption. 0, or a negated errno with a reason in
 * why. Free it with rtls_tls_ctx_free() once no connection uses it. */
RTLS_API int rtls_tls_client_ctx_new(const struct rtls_tls_client_opts *o,
				     struct rtls_tls_ctx **out, char *why, size_t whylen);

/* rtls_conn_connect() with TLS: the connection's on_open comes once the
 * handshake is done and the server's certificate has been verified for
 * server_name (a DNS name, also sent as SNI; or an IP address, checked
 * against the certificate's IP addresses and not sent; NULL: addr's IP).
 * A failed handshake logs one warning line ("tls upstream ADDR ...: the
 * reason") and closes: on_close, with on_open never called. After the
 * handshake the directions go to the kernel as configured in client;
 * handlers read and write plaintext either way. client must come from
 * rtls_tls_client_ctx_new(). Errors as rtls_conn_connect(), and -EINVAL
 * for a server context.
 * Callbacks: none (the connect and handshake run on the loop). */
RTLS_API int rtls_conn_connect_tls(rtls_conn *near, const char *addr, struct rtls_tls_ctx *client,
				   const char *server_name, const struct rtls_handler *h, void *arg,
				   rtls_conn **out);

/* Bytes the server reads before the TLS handshake, sent as they are ahead
 * of the ClientHello: a PROXY protocol header, for a server that takes one
 * in front of TLS (nginx's "listen ... ssl proxy_protocol", HAProxy's
 * accept-proxy). Only on a connection from rtls_conn_connect_tls() whose
 * connect has not completed (call it right after); -EINVAL otherwise,
 * -ENOMEM. Callbacks: none. */
RTLS_API int rtls_conn_tls_preamble(rtls_conn *c, const void *p, size_t n);

/* OpenSSL SSL objects alive in this process, counted by OpenSSL's own
 * allocation hooks. A connection whose records are all in the kernel has
 * none: its SSL object (and the keys in it) is freed at the hand-off. */
RTLS_API long rtls_tls_live_ssl(void);

#ifdef __cplusplus
}
#endif
#endif
