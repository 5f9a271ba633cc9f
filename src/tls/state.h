/* The state of a TLS connection (struct tconn) as enums with named
 * transitions, as h2o keeps its kTLS offload state: a combination that
 * cannot happen cannot be written down. Three parts that change apart:
 *
 *   phase   where the session is: handshake, hand-off, established, failed
 *   tx, rx  where each direction's records are made or read (OpenSSL,
 *           the kernel, or for TX our own record layer), with the
 *           KeyUpdate states of a kernel direction
 *   close   our close_notify
 *
 * Every change goes through rtls__tls_set_*(), which checks the edge in
 * debug builds. The role (server, or client for rtls_conn_connect_tls())
 * is a field of its own, so it does not double these states: the
 * differences are which secret is ours, where our application epoch
 * starts, and when a TLS 1.3 client's RX may go to the kernel. DESIGN.md has the
 * picture. */
#ifndef RTLS_TLS_STATE_H
#define RTLS_TLS_STATE_H

#include <stdbool.h>

#include "../core/internal.h"

enum rtls__tls_role {
	RTLS__TLS_SERVER = 0,
	RTLS__TLS_CLIENT, /* rtls_conn_connect_tls() */
};

enum rtls__tls_phase {
	RTLS__TLS_HANDSHAKE = 0,    /* SSL_do_handshake until it returns 1 */
	RTLS__TLS_HANDSHAKE_FAILED, /* a fatal error before its end: the alert
				     * is queued, the connection closes */
	RTLS__TLS_SWITCH_PENDING,   /* done; kTLS wanted: no read until the
				     * last flight is out (rtls__tls_switch) */
	RTLS__TLS_ESTABLISHED,      /* application data */
	RTLS__TLS_FAILED,           /* a fatal error after the handshake: no
				     * SSL_write or close_notify any more */
};

/* One direction's record path. */
enum rtls__tls_path {
	RTLS__TLS_USERSPACE = 0,   /* OpenSSL */
	RTLS__TLS_WANT_KERNEL,     /* decided at the handshake's end;
				    * rtls__tls_switch installs it or falls back */
	RTLS__TLS_KERNEL,          /* the kernel; no next secret kept: a
				    * KeyUpdate that needs a key ends the connection */
	RTLS__TLS_KERNEL_NEXT,     /* the kernel, and the next traffic secret is
				    * kept (next_tx/next_rx) to follow a KeyUpdate */
	RTLS__TLS_KERNEL_UPDATING, /* TX only: our KeyUpdate is queued (urgent);
				    * the next key goes in when it has left */
	RTLS__TLS_OWN,             /* TX only: ringtls seals the records itself
				    * (seal.c) with the keys the kernel would
				    * have had; OpenSSL's writes are dropped.
				    * TLS 1.3 keeps next_tx for KeyUpdate */
};

/* Our close_notify. */
enum rtls__tls_close {
	RTLS__TLS_CLOSE_NONE = 0,
	RTLS__TLS_CLOSE_WANTED, /* userspace TX: after the pending data (tls_seal) */
	RTLS__TLS_CLOSE_QUEUED, /* in the output */
};

/* The handshake has completed (whatever happened since). */
static inline bool rtls__tls_phase_done(enum rtls__tls_phase p)
{
	return p == RTLS__TLS_SWITCH_PENDING || p == RTLS__TLS_ESTABLISHED || p == RTLS__TLS_FAILED;
}

static inline bool rtls__tls_phase_failed(enum rtls__tls_phase p)
{
	return p == RTLS__TLS_HANDSHAKE_FAILED || p == RTLS__TLS_FAILED;
}

/* The kernel makes (TX) or reads (RX) this direction's records. */
static inline bool rtls__tls_path_kernel(enum rtls__tls_path p)
{
	return p == RTLS__TLS_KERNEL || p == RTLS__TLS_KERNEL_NEXT ||
	       p == RTLS__TLS_KERNEL_UPDATING;
}

static inline bool rtls__tls_phase_edge(enum rtls__tls_phase from, enum rtls__tls_phase to)
{
	switch (from) {
	case RTLS__TLS_HANDSHAKE:
		/* SSL_do_handshake failed; returned 1 with kTLS wanted; or
		 * with both directions staying in userspace. */
		return to == RTLS__TLS_HANDSHAKE_FAILED || to == RTLS__TLS_SWITCH_PENDING ||
		       to == RTLS__TLS_ESTABLISHED;
	case RTLS__TLS_SWITCH_PENDING:
		return to == RTLS__TLS_ESTABLISHED; /* the switch, offloaded or not */
	case RTLS__TLS_ESTABLISHED:
		/* SSL_read failed, a bad record or an alert on kernel RX,
		 * too many KeyUpdates. */
		return to == RTLS__TLS_FAILED;
	case RTLS__TLS_HANDSHAKE_FAILED:
	case RTLS__TLS_FAILED:
		return to == from; /* a second error changes nothing */
	default:
		return false;
	}
}

static inline bool rtls__tls_path_edge(enum rtls__tls_path from, enum rtls__tls_path to)
{
	switch (from) {
	case RTLS__TLS_USERSPACE:
		/* rtls__tls_decide; or (TX) our record layer takes over
		 * from OpenSSL's at the handshake's end (rtls__tls_own_tx) */
		return to == RTLS__TLS_WANT_KERNEL || to == RTLS__TLS_OWN;
	case RTLS__TLS_WANT_KERNEL:
		/* The setsockopt succeeded; or a key, the ULP or the
		 * setsockopt failed and the direction stays in userspace. */
		return to == RTLS__TLS_KERNEL || to == RTLS__TLS_USERSPACE;
	case RTLS__TLS_KERNEL:
		return to == RTLS__TLS_KERNEL_NEXT; /* the next secret derived */
	case RTLS__TLS_KERNEL_NEXT:
		/* Our KeyUpdate queued (TX); or a new key went in and the
		 * secret could not be stepped on. */
		return to == RTLS__TLS_KERNEL_UPDATING || to == RTLS__TLS_KERNEL;
	case RTLS__TLS_KERNEL_UPDATING:
		return to == RTLS__TLS_KERNEL_NEXT; /* our KeyUpdate has left */
	case RTLS__TLS_OWN: /* for the connection's life (KeyUpdate rekeys in place) */
	default:
		return false;
	}
}

static inline bool rtls__tls_close_edge(enum rtls__tls_close from, enum rtls__tls_close to)
{
	switch (from) {
	case RTLS__TLS_CLOSE_NONE:
		/* Userspace TX seals it after the pending data; kernel TX
		 * queues it as a control record at once. */
		return to == RTLS__TLS_CLOSE_WANTED || to == RTLS__TLS_CLOSE_QUEUED;
	case RTLS__TLS_CLOSE_WANTED:
		return to == RTLS__TLS_CLOSE_QUEUED; /* tls_seal made it */
	case RTLS__TLS_CLOSE_QUEUED:
	default:
		return false;
	}
}

#endif
