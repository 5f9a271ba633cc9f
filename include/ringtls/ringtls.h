/* ringtls: a TLS-terminating server engine on io_uring.
 *
 * The engine runs one reactor per thread. Each reactor owns an io_uring, a
 * provided-buffer ring, its own SO_REUSEPORT listening socket per configured
 * address, and the connections it accepted; a connection never moves to
 * another thread. A handler is a set of callbacks that run on the reactor
 * thread that owns the connection. Handlers read and write plaintext: the
 * transport underneath (plain TCP, userspace TLS, kernel TLS) is invisible
 * unless the handler asks with rtls_conn_query().
 *
 * Conventions: functions return 0 on success, a count >= 0 where stated, or
 * a negated errno. Pointers are borrowed for the duration of the call unless
 * the comment says the ownership is transferred.
 *
 * Threads and signals: rtls_server_start() runs the reactors on threads
 * of their own, with every signal blocked; the application's signal
 * handling is its own (rtls_server_run_until_signal() is the one call that
 * takes SIGINT and SIGTERM). Every rtls_conn_* and rtls_buf_* call is made
 * on the reactor thread that owns the connection, that is from inside one
 * of its handler's callbacks.
 *
 * Callbacks inside calls: some calls run handler callbacks before they
 * return (libuv documents the same); each function below says which,
 * under "Callbacks:". A call that may run on_close can end the connection
 * before it returns. After that, c itself and the bytes of its data area
 * stay readable until the callback the call was made from returns (slots
 * are freed and reused only between callbacks), and calls on c are
 * harmless: writes return -EPIPE, close and abort do nothing. What
 * on_close released is gone, though; a handler that carries on after such
 * a call keeps a flag in its data area, set in on_close. A buffer the
 * handler still holds is released exactly once: in on_close, or before
 * the call that may close, never both.
 */
#ifndef RINGTLS_RINGTLS_H
#define RINGTLS_RINGTLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks what librtls exports; everything else in it is hidden. */
#ifndef RTLS_API
#if defined(__GNUC__)
#define RTLS_API __attribute__((visibility("default")))
#else
#define RTLS_API
#endif
#endif

#define RTLS_VERSION_STRING "0.1.0"

typedef struct rtls_server rtls_server;
typedef struct rtls_conn rtls_conn;

/* A received chunk of plaintext. data/len are valid until the buffer is
 * released. The handler owns it from on_data() on and must give it back
 * with rtls_buf_release() exactly once; until then the underlying provided
 * buffer is out of the reactor's receive ring. */
struct rtls_buf {
	const char *data;
	size_t len;
	/* private to the engine */
	uint32_t priv_id;
	uint32_t priv_kind;
};

/* What carries a connection's bytes. */
enum rtls_transport {
	RTLS_TRANSPORT_PLAIN = 0,
	RTLS_TRANSPORT_TLS = 1,
};

/* Where TLS records are made and opened, per direction. */
enum rtls_record_path {
	RTLS_PATH_NONE = 0,      /* plaintext connection */
	RTLS_PATH_USERSPACE = 1, /* OpenSSL in this process */
	RTLS_PATH_KERNEL = 2,    /* kernel TLS (kTLS) */
};

/* Snapshot returned by rtls_conn_query(). Strings point into storage owned
 * by the connection and stay valid until the connection closes; they are
 * NULL when not applicable. */
struct rtls_conn_info {
	enum rtls_transport transport;
	unsigned listener; /* index in rtls_config.listeners; UINT_MAX: outbound */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	const char *tls_version;    /* "TLSv1.3", ... */
	const char *tls_cipher;     /* IANA/OpenSSL name */
	const char *alpn;
	const char *sni;
	const char *client_subject; /* verified client certificate subject */
	int resumed;                /* 1 if the TLS session was resumed */
	enum rtls_record_path tx_path, rx_path;
	/* The address the peer connected to (getsockname), or, after a
	 * PROXY protocol header, the destination the header names. */
	struct sockaddr_storage local;
	socklen_t local_len;
};

/* Timers a connection can arm; durations come from rtls_config. */
enum rtls_timer {
	RTLS_TIMER_NONE = 0,
	RTLS_TIMER_IDLE,      /* waiting for the next request */
	RTLS_TIMER_HEADER,    /* one deadline for a whole request head */
	RTLS_TIMER_HANDSHAKE, /* TLS handshake */
	RTLS_TIMER_LINGER,    /* draining input after our side finished */
	RTLS_TIMER_CONNECT,   /* rtls_conn_connect(): the TCP connect (armed
			       * by the engine, disarmed when it completes) */
	RTLS_TIMER_RESPONSE,  /* waiting for the peer's answer (a proxy's
			       * upstream response head) */
	RTLS_TIMER__COUNT
};

/* Handler callbacks, all called on the connection's reactor thread. Each
 * gets the connection and its handler data area (conn_data_size bytes,
 * zeroed at open, owned by the engine, valid until on_close returns).
 * Callbacks may call any rtls_conn_* function on c, and some of those run
 * other callbacks of c before they return (see "Callbacks inside calls"
 * above). on_close runs exactly once for each connection that reached
 * on_open (also when on_open is NULL or failed); a TLS connection whose
 * handshake failed reaches neither. */
struct rtls_handler {
	size_t conn_data_size;
	/* A connection was accepted (and, on a TLS listener, its handshake
	 * completed), or the connect of rtls_conn_connect() completed.
	 * Return < 0 to close it at once: on_close then runs with that error
	 * before the engine goes on. */
	int (*on_open)(rtls_conn *c, void *data);
	/* Plaintext arrived. Ownership of *buf passes to the handler, which
	 * releases it with rtls_buf_release() exactly once (now or later). */
	void (*on_data)(rtls_conn *c, void *data, struct rtls_buf *buf);
	/* The peer will send nothing more (TCP FIN or TLS close_notify).
	 * If NULL, the connection is closed (rtls_conn_close()). Not called
	 * while reading is paused: it waits for rtls_conn_resume_read(). */
	void (*on_eof)(rtls_conn *c, void *data);
	/* Everything written so far has left (after a flush). Also runs
	 * inside rtls_conn_flush() when there was nothing to send. */
	void (*on_drained)(rtls_conn *c, void *data);
	/* The armed timer expired. If NULL, the connection is aborted
	 * (on_close with -ETIMEDOUT). */
	void (*on_timeout)(rtls_conn *c, void *data, enum rtls_timer which);
	/* The server is shutting down. Return 1 if the connection is idle and
	 * may close now; 0 if the handler will close it when its response is
	 * done. If NULL, the connection closes once its output has drained.
	 * Connections still open at shutdown_ms are reset
	 * (on_close with -ECONNRESET). */
	int (*on_shutdown)(rtls_conn *c, void *data);
	/* The connection is gone; err is 0 or the negated errno that ended it.
	 * Release everything tied to data, including any rtls_buf still
	 * held: rtls_buf_release() stays valid until on_close returns. May
	 * run nested inside an rtls_conn_* call made from another callback
	 * of c. Inside it, writes fail with -EPIPE; rtls_conn_query() and
	 * rtls_conn_peer() still work. */
	void (*on_close)(rtls_conn *c, void *data, int err);
	/* A bounded forward from c (rtls_conn_forward_n()) has moved its
	 * last byte: all n are queued on its destination, in order. c
	 * reads the ordinary way again, and on_data brings what follows
	 * them. Optional. */
	void (*on_forwarded)(rtls_conn *c, void *data);
};

/* What a TLS listener's ALPN selects from the client's offer (RFC 7301);
 * a client that offers protocols but none of these gets the
 * no_application_protocol alert. */
enum rtls_alpn {
	RTLS_ALPN_HTTP1 = 0, /* http/1.1, else http/1.0 */
	RTLS_ALPN_NONE = 1,  /* nothing, whatever is offered: a listener whose
			      * bytes go on as they are, not HTTP */
	RTLS_ALPN_H2 = 2,    /* h2, else as RTLS_ALPN_HTTP1 */
};

struct rtls_listen {
	const char *addr; /* "IP:PORT", "[IPv6]:PORT" or ":PORT"; port 0 = ephemeral */
	int tls;          /* 1 for a TLS listener (needs the TLS layer) */
	/* TLS: what ALPN selects (enum rtls_alpn). no_alpn is its first
	 * name, kept for source compatibility: 1 is RTLS_ALPN_NONE. */
	union {
		int alpn;
		int no_alpn;
	};
	/* An already bound, listening TCP socket to serve (socket
	 * activation), or 0 to bind addr; descriptors handed over this way
	 * start at 3. Borrowed: every reactor accepts on a duplicate of its
	 * own, and the caller's descriptor stays the caller's, still
	 * listening after the server has stopped. addr then only names it
	 * in messages (may be NULL). On the epoll backend the socket is
	 * made non-blocking (O_NONBLOCK is the file's, shared with the
	 * caller's descriptor): reactors share its wake-ups, and the one
	 * that loses a race must not sleep in accept(). */
	int fd;
};

enum rtls_log_level { RTLS_LOG_ERROR = 0, RTLS_LOG_WARN, RTLS_LOG_INFO, RTLS_LOG_DEBUG };

/* What a reactor waits with (rtls_config.backend). */
enum rtls_backend {
	/* io_uring; epoll where io_uring_setup() or the probe of the
	 * operations fails with EPERM, ENOSYS or EACCES (a seccomp filter,
	 * kernel.io_uring_disabled, no io_uring in the kernel), with one
	 * info line. The environment variable RINGTLS_BACKEND=io_uring or
	 * =epoll chooses instead, as if it had been set here. */
	RTLS_BACKEND_AUTO = 0,
	RTLS_BACKEND_IO_URING,
	/* readiness and non-blocking system calls: every feature, limit and
	 * the kTLS handover work the same; costs more CPU per request */
	RTLS_BACKEND_EPOLL,
};

struct rtls_config {
	const struct rtls_listen *listeners; /* borrowed until rtls_server_destroy */
	unsigned nlisteners;
	unsigned threads;           /* reactors; 0 = one per online CPU */
	unsigned max_conns;         /* per reactor; 0 = 16384 */
	unsigned buf_count;         /* provided receive buffers per reactor; 0 = 1024 */
	unsigned buf_size;          /* bytes per receive buffer; 0 = 16384 */
	unsigned ring_entries;      /* submission queue entries per reactor, a power
				     * of two up to 32768 (the completion queue holds
				     * 8 times as many); 0 = 1024 */
	unsigned timeout_ms[RTLS_TIMER__COUNT]; /* 0 = defaults (see rtls_config_defaults) */
	unsigned shutdown_ms;       /* bound on graceful shutdown; 0 = 10000 */
	const struct rtls_handler *handler; /* borrowed */
	void *handler_ctx;          /* borrowed, passed through rtls_conn_ctx() */
	struct rtls_tls_ctx *tls;   /* TLS layer context for TLS listeners, or NULL */
	/* PROXY protocol (v1 and v2) on every listener, from these sources
	 * only: CIDR strings ("10.0.0.0/8", "::1/128", "127.0.0.1"),
	 * borrowed until rtls_server_destroy. The header must arrive whole,
	 * before anything else, within RTLS_TIMER_HEADER; its source address
	 * is then the connection's peer. A header from any other source, or
	 * a malformed one, closes the connection with one log line. */
	const char *const *proxy_protocol_from;
	unsigned nproxy_protocol_from;
	enum rtls_backend backend;
};

/* Fills the zero fields of *cfg with the defaults.
 * Callbacks: none. */
RTLS_API void rtls_config_defaults(struct rtls_config *cfg);

/* Validates cfg, probes io_uring and binds every listener on every reactor
 * (so "address in use" is reported here, before anything runs). cfg is
 * copied; the arrays it points to are borrowed. On success *out owns the
 * server; free it with rtls_server_destroy(). On failure returns a negated
 * errno, sets *out to NULL and writes one human-readable line (no newline)
 * into why[0..whylen). No thread is started yet.
 * Callbacks: none. */
RTLS_API int rtls_server_create(const struct rtls_config *cfg, rtls_server **out, char *why,
				size_t whylen);

/* A reload: creates a server as rtls_server_create() does, but each
 * listener of cfg (without rtls_listen.fd) whose address is one that the
 * running server prev listens on, by the same text or the same bound
 * address, takes over prev's sockets instead of binding new ones. The
 * sockets never stop listening, so no connection is refused or reset in
 * the switch: start *out, then stop prev, which finishes what it has in
 * flight and no longer empties those sockets' accept queues. Listeners
 * only prev has are closed by its stop; new ones are bound. prev must
 * stay alive until *out has been started or destroyed (a server that is
 * destroyed without having run gives the sockets back).
 * Callbacks: none. */
RTLS_API int rtls_server_create_from(const struct rtls_config *cfg, rtls_server *prev,
				     rtls_server **out, char *why, size_t whylen);

/* Actual bound address of listener i (useful with port 0). -EINVAL if i is
 * out of range.
 * Callbacks: none. */
/* The backend the server's reactors use: RTLS_BACKEND_IO_URING or
 * RTLS_BACKEND_EPOLL, never AUTO.
 * Callbacks: none. */
RTLS_API enum rtls_backend rtls_server_backend(const rtls_server *s);

RTLS_API int rtls_server_listen_addr(const rtls_server *s, unsigned i, struct sockaddr_storage *ss,
				     socklen_t *len);

/* Why connections ended (struct rtls_stats.conns_closed). */
enum rtls_stats_close {
	RTLS_STATS_CLOSE_PEER = 0, /* the peer ended the stream first (FIN, close_notify) */
	RTLS_STATS_CLOSE_LOCAL,    /* the handler closed it, or cancelled a connect */
	RTLS_STATS_CLOSE_TIMEOUT,  /* a timer expired (-ETIMEDOUT) */
	RTLS_STATS_CLOSE_RESET,    /* a reset: -ECONNRESET or -EPIPE */
	RTLS_STATS_CLOSE_ABORTED,  /* rtls_conn_abort() with no reason (-ECONNABORTED) */
	RTLS_STATS_CLOSE_SHUTDOWN, /* during the server's shutdown */
	RTLS_STATS_CLOSE_ERROR,    /* any other error (no memory, TLS, a failed connect) */
	RTLS_STATS_CLOSE__COUNT
};

/* Negotiated TLS versions (struct rtls_stats.tls_handshakes). */
enum rtls_stats_tls_version {
	RTLS_STATS_TLS12 = 0,
	RTLS_STATS_TLS13,
	RTLS_STATS_TLS_OTHER,
	RTLS_STATS_TLSV__COUNT
};

/* The AEAD of a negotiated cipher suite (struct rtls_stats.tls_ciphers). */
enum rtls_stats_cipher {
	RTLS_STATS_AES_128_GCM = 0,
	RTLS_STATS_AES_256_GCM,
	RTLS_STATS_CHACHA20_POLY1305,
	RTLS_STATS_CIPHER_OTHER,
	RTLS_STATS_CIPHER__COUNT
};

/* Why a TLS handshake did not complete (struct rtls_stats.tls_failures). */
enum rtls_stats_tls_fail {
	RTLS_STATS_HS_PROTOCOL = 0, /* a malformed or unexpected message; any error not below */
	RTLS_STATS_HS_VERSION,      /* no protocol version in common */
	RTLS_STATS_HS_CIPHER,       /* no cipher suite, group or signature scheme in common */
	RTLS_STATS_HS_CERT,         /* the client certificate was missing or refused */
	RTLS_STATS_HS_ALERT,        /* the peer sent a fatal alert */
	RTLS_STATS_HS_PLAIN_HTTP,   /* plaintext HTTP on a TLS listener */
	RTLS_STATS_HS_PEER_CLOSED,  /* the peer closed or reset the connection */
	RTLS_STATS_HS_TIMEOUT,      /* RTLS_TIMER_HANDSHAKE expired */
	RTLS_STATS_HS_ABORTED,      /* ended by this side: shutdown, no memory */
	RTLS_STATS_HS__COUNT
};

/* Why a direction that kernel TLS was asked for stayed in userspace
 * (struct rtls_stats.ktls_fallbacks). */
enum rtls_stats_ktls_fallback {
	RTLS_STATS_KTLS_UNAVAILABLE = 0, /* no tls ULP in this kernel */
	RTLS_STATS_KTLS_CIPHER,          /* a version or cipher kernel TLS does not take */
	RTLS_STATS_KTLS_REKEY,           /* TLS 1.3 RX: this kernel cannot follow a KeyUpdate */
	RTLS_STATS_KTLS_UNALIGNED,       /* RX: bytes past the handshake were read already */
	RTLS_STATS_KTLS_KEY,             /* the keys could not be derived */
	RTLS_STATS_KTLS_ULP,             /* the socket did not take the tls ULP */
	RTLS_STATS_KTLS_REFUSED,         /* the kernel refused the key (TLS_TX, TLS_RX) */
	RTLS_STATS_KTLS__COUNT
};

/* Directions (struct rtls_stats.ktls_offloaded, ktls_fallbacks). */
enum rtls_stats_dir { RTLS_STATS_TX = 0, RTLS_STATS_RX = 1 };

/* Counters of a server, summed over its reactors by rtls_server_stats().
 * Every field but conns_open counts up from rtls_server_create(). The
 * arrays are indexed by the enums above and have room for values added
 * later; new fields go at the end, so a caller built against an older
 * header passes a smaller size and gets the fields it knows. */
struct rtls_stats {
	uint64_t conns_accepted;
	uint64_t conns_outbound;       /* rtls_conn_connect() */
	uint64_t conns_open;           /* now: accepted + outbound - closed */
	uint64_t conns_closed[8];      /* by enum rtls_stats_close */
	uint64_t bytes_in, bytes_out;  /* on the sockets (TLS records included) */
	uint64_t timeouts[8];          /* expired timers, by enum rtls_timer */
	uint64_t tls_handshakes[4][2]; /* completed: [enum rtls_stats_tls_version][resumed] */
	uint64_t tls_ciphers[8];       /* completed, by enum rtls_stats_cipher */
	uint64_t tls_failures[16];     /* by enum rtls_stats_tls_fail */
	uint64_t ktls_offloaded[2];    /* directions the kernel took, by enum rtls_stats_dir */
	uint64_t ktls_fallbacks[2][8]; /* [enum rtls_stats_dir][enum rtls_stats_ktls_fallback] */
	uint64_t key_updates_received; /* TLS 1.3 KeyUpdate messages */
	uint64_t key_updates_sent;
	/* Connections whose records after the handshake ringtls's own
	 * record layer sealed (the kernel did not take TX). */
	uint64_t tls_own_tx;
};

/* Fills out[0..size) with the server's counters (struct rtls_stats, or
 * its first size bytes; bytes past it are zeroed), summed over the
 * reactors. Any thread, while the server exists, also while it runs:
 * each reactor counts into its own block without a lock, and this reads
 * them with relaxed atomic loads, so the sum is not one instant's (a
 * connection may show as closed before it shows as accepted; conns_open
 * does not go below 0). Returns the bytes filled from the struct, or
 * -EINVAL for a NULL s or out.
 * Callbacks: none. */
RTLS_API int rtls_server_stats(const rtls_server *s, struct rtls_stats *out, size_t size);

/* Starts the reactor threads and returns once each has set up its ring
 * (a reactor that could not, for want of memory or descriptors, makes it
 * return that error after asking the others to stop; rtls_server_wait()
 * or rtls_server_destroy() joins them). They run with every
 * signal blocked (the caller's mask is restored before this returns), so
 * no signal of the application's is taken over, and SIGPIPE needs no
 * SIG_IGN: one raised by a splice to a reset socket stays pending, blocked,
 * on the thread that ran it (a reactor or its io-wq worker). Stop the server with rtls_server_stop() (from
 * a signal handler, another thread or a callback), then reap it with
 * rtls_server_wait(). Once per server, also when it failed: -EALREADY
 * after that. On failure (-errno from eventfd or pthread_create) no
 * reactor is left running, and rtls_server_wait() returns the same error.
 * Callbacks: none in the caller; from now on every handler callback runs
 * on a reactor thread, concurrently with the caller. */
RTLS_API int rtls_server_start(rtls_server *s);

/* Waits until every reactor has stopped: after rtls_server_stop() and the
 * graceful shutdown (bounded by shutdown_ms), or after a reactor failed,
 * which stops the others. Returns 0, or the negated errno of the first
 * reactor that failed; later calls return the same. -EINVAL if the server
 * was never started. Call it from one thread, never from a callback.
 * Callbacks: none in the caller (the reactors run theirs until they
 * stop). */
RTLS_API int rtls_server_wait(rtls_server *s);

/* rtls_server_start(), then rtls_server_wait(): runs until
 * rtls_server_stop() or a reactor fails. Takes over no signal: an
 * application that wants SIGINT to stop the server installs a handler
 * that calls rtls_server_stop(), or uses rtls_server_run_until_signal().
 * Callbacks: as rtls_server_start(). */
RTLS_API int rtls_server_run(rtls_server *s);

/* What `ringtls serve` does: blocks SIGINT and SIGTERM in the calling
 * thread (and leaves them blocked), ignores SIGPIPE in the whole process,
 * starts the reactors and waits for either signal, rtls_server_stop() or
 * a failed reactor; logs "SIGINT: shutting down" (or SIGTERM), stops
 * gracefully and waits. Other threads of the application must block
 * SIGINT and SIGTERM too, or one of them may take the signal instead.
 * Returns as rtls_server_wait().
 * Callbacks: as rtls_server_start(). */
RTLS_API int rtls_server_run_until_signal(rtls_server *s);

/* Asks a running server to shut down: every reactor stops accepting, asks
 * its connections' handlers (on_shutdown) and exits when they are closed
 * or at shutdown_ms. Returns at once. Callable from any thread, from a
 * callback, and from a signal handler (async-signal-safe: an atomic store
 * and write(2) to an eventfd). Before rtls_server_start(), the server
 * stops as soon as it starts.
 * Callbacks: none in the caller; on_shutdown and on_close follow on the
 * reactor threads. */
RTLS_API void rtls_server_stop(rtls_server *s);

/* rtls_server_stop(), then waits until no reactor accepts any more: each
 * has seen its accepts end and has closed the listeners that were only
 * this server's (those taken over by a successor go on listening there).
 * Connections still open go on closing after it returns. For a reload:
 * from then on every new connection is the successor's. Not from a
 * callback of s. Returns 0, or -ETIMEDOUT after timeout_ms (a reactor
 * stuck in a callback).
 * Callbacks: as rtls_server_stop(). */
RTLS_API int rtls_server_stop_accepting(rtls_server *s, unsigned timeout_ms);

/* Frees the server: closes the listeners and every descriptor it holds.
 * A server started and not yet waited for is stopped and waited for
 * first. NULL is a no-op. s is invalid afterwards; the TLS context and
 * handler_ctx are the caller's to free, after this.
 * Callbacks: on_close, on the calling thread with err -ECANCELED, for each
 * connection still open on a reactor that stopped on a ring error (its
 * connections could not be closed through the ring). */
RTLS_API void rtls_server_destroy(rtls_server *s);

/* Handler data area and the handler_ctx of the server. Borrowed.
 * Callbacks: none. */
RTLS_API void *rtls_conn_data(rtls_conn *c);
RTLS_API void *rtls_conn_ctx(rtls_conn *c);

/* Writes the peer's address ("1.2.3.4:5", "[::1]:5") into out[0..n), or
 * "?" if it is gone. For log lines; a getpeername(2) call each time, or,
 * after a PROXY protocol header (rtls_config.proxy_protocol_from), the
 * client the header named.
 * Callbacks: none. */
RTLS_API int rtls_conn_peer(const rtls_conn *c, char *out, size_t n);

/* Writes an address as "1.2.3.4:5" or "[::1]:5" into out[0..n). Any thread.
 * Callbacks: none. */
RTLS_API int rtls_format_addr(const struct sockaddr_storage *ss, char *out, size_t n);

/* Fills *info; see struct rtls_conn_info for string lifetimes.
 * Callbacks: none. */
RTLS_API int rtls_conn_query(const rtls_conn *c, struct rtls_conn_info *info);
/* The protocol ALPN selected on a TLS connection ("h2", "http/1.1"),
 * "" on a TLS connection without one (or before its handshake is done),
 * NULL on a plaintext one. Unlike rtls_conn_query(), no system call: a
 * handler can ask it on every on_open. Valid until on_close returns.
 * Callbacks: none. */
RTLS_API const char *rtls_conn_alpn(const rtls_conn *c);

/* Gives a received buffer back to the engine. Exactly once per buffer, and
 * at the latest in on_close; a second release, or one of a buffer never
 * received, aborts the process (it would corrupt the receive ring).
 * Callbacks: none. */
RTLS_API void rtls_buf_release(rtls_conn *c, struct rtls_buf *buf);

/* Queues a copy of p[0..n) for sending. Nothing leaves before
 * rtls_conn_flush(). -EPIPE if the connection is closing or closed,
 * -ENOMEM.
 * Callbacks: none. */
RTLS_API int rtls_conn_write(rtls_conn *c, const void *p, size_t n);

/* Reserves n bytes in the output queue and returns where to write them, or
 * NULL on allocation failure or when the connection is closing;
 * rtls_conn_commit() then queues the first `used` (<= n) of them. Saves a
 * copy for formatted output. The pointer is valid until the commit, and
 * no other write may come between.
 * Callbacks: none. */
RTLS_API char *rtls_conn_reserve(rtls_conn *c, size_t n);

/* Queues `used` bytes of the last reservation.
 * Callbacks: on_close, if recording them fails for want of memory: the
 * connection is then aborted with -ENOMEM. */
RTLS_API void rtls_conn_commit(rtls_conn *c, size_t used);

/* Queues len bytes of file fd from off, sent from the page cache without
 * passing through userspace. Ownership of fd is transferred: the engine
 * closes it when the bytes are sent or the connection closes, also on
 * error (-EPIPE if closing, -ENOMEM). Ordered with rtls_conn_write().
 * Callbacks: none. */
RTLS_API int rtls_conn_write_file(rtls_conn *c, int fd, off_t off, size_t len);

/* Takes now what sending a file on c will need (a splice pipe, unless the
 * transport encrypts in userspace), so that running out of descriptors
 * shows before a response head is queued. 0, or -EMFILE / -ENFILE.
 * Callbacks: none. */
RTLS_API int rtls_conn_file_ready(rtls_conn *c);

/* Starts sending everything queued, as one send where possible; on_drained
 * follows when it has left. -EPIPE once the connection is lingering or
 * closed.
 * Callbacks: on_drained, before it returns, when nothing was queued and
 * nothing is in flight; on_close when sending cannot start (no splice
 * pipe for a file, no memory, a TLS error), or, on a connection already
 * closing, when its output is done and the peer had closed too. */
RTLS_API int rtls_conn_flush(rtls_conn *c);

/* Bytes queued or in flight, not yet acknowledged by a send completion.
 * Callbacks: none. */
RTLS_API size_t rtls_conn_pending(const rtls_conn *c);

/* Arms the connection's single timer (replacing any armed one);
 * RTLS_TIMER_NONE disarms it. Ignored, except NONE, once the connection
 * is closing. The timer fires later, from the reactor loop.
 * Callbacks: none. */
RTLS_API void rtls_conn_set_timer(rtls_conn *c, enum rtls_timer t);

/* Stops delivery of on_data and on_eof (backpressure). Input that was
 * already on its way is kept for rtls_conn_resume_read(), off the
 * receive ring.
 * Callbacks: none. */
RTLS_API void rtls_conn_pause_read(rtls_conn *c);

/* Restarts delivery after rtls_conn_pause_read(); does nothing if reading
 * was not paused.
 * Callbacks: on_data for each chunk kept while paused, in order, then
 * on_eof if the peer finished meanwhile (or, without on_eof, the close
 * that stands in for it: on_close may follow), all before it returns;
 * any of them may pause again or end the connection, and delivery stops
 * there. on_close also when re-arming the receive fails (-ENOMEM). */
RTLS_API void rtls_conn_resume_read(rtls_conn *c);

/* Closes gracefully: flushes what is queued, ends the stream (TLS
 * close_notify, then TCP FIN), drains input briefly so the peer sees the
 * response rather than a reset, then closes. on_close follows, at the
 * latest after the linger timer. Writes fail with -EPIPE from now on;
 * nothing more is delivered. Does nothing if already closing.
 * Callbacks: on_close, before it returns, when nothing is left to send
 * and the peer has already closed its side (the usual case in on_eof),
 * or when sending fails at once; see "Callbacks inside calls". On a
 * connection of rtls_conn_connect() still connecting: cancels the
 * connect, and on_close(-ECANCELED) runs before it returns. */
RTLS_API void rtls_conn_close(rtls_conn *c);

/* Half-close: ends our direction gracefully and keeps reading. What is
 * queued is sent, then the stream's end (TLS close_notify, then TCP FIN);
 * on_drained follows once the FIN is out. on_data and on_eof go on as
 * before. From now on writes fail with -EPIPE (a flush of nothing is
 * still allowed). rtls_conn_close() later sends no second close_notify.
 * 0, or -EPIPE if the connection is not open.
 * Callbacks: as rtls_conn_flush(). */
RTLS_API int rtls_conn_shutdown_write(rtls_conn *c);

/* How the peer's direction ended (rtls_conn_eof()). */
enum rtls_eof {
	RTLS_EOF_NONE = 0,      /* the peer's end has not arrived */
	RTLS_EOF_CLEAN = 1,     /* TCP FIN; on TLS, close_notify came first */
	RTLS_EOF_TRUNCATED = 2, /* TLS: a FIN without close_notify (a cut, or an
				 * attacker: the data so far may be incomplete) */
};

/* enum rtls_eof for c: whether the peer's end was clean, from the moment
 * it arrives (so in on_eof; while reading is paused, already before the
 * on_eof that resume will bring). Judged while the connection is open:
 * an end that arrives while it is closing reads as clean.
 * Callbacks: none. */
RTLS_API int rtls_conn_eof(const rtls_conn *c);

/* Gives c another handler from now on, sharing its data area (not
 * cleared: the caller sets it up for h). Typically from the server
 * handler's on_open, to serve a listener with another protocol (a TCP
 * proxy, an ALPN choice). h is borrowed until its on_close returns; its
 * conn_data_size may not exceed the server handler's. -EINVAL for a NULL
 * h or a larger data size, -EPIPE if c is closing or closed.
 * Callbacks: none (the callback running now is the old handler's; every
 * later one is h's, on_close included). */
RTLS_API int rtls_conn_set_handler(rtls_conn *c, const struct rtls_handler *h);

/* Forwards src's input to dst inside the kernel from now on: splice
 * moves it from src's socket through a pipe into dst's socket, without
 * entering this process. on_eof comes once everything before the end has
 * been queued on dst, in order with what was written to dst before (so a
 * handler that answers on_eof with rtls_conn_shutdown_write(dst) ends
 * dst's stream after the last byte). on_data still comes for what the
 * engine must read the ordinary way: bytes the receive being cancelled
 * still brings, a kTLS record read by RECVMSG (a control record, or one
 * the kernel had not completed when asked), data after TCP urgent data;
 * the handler writes those to dst as before. The pace is dst's: src reads
 * the next chunk (64 KiB at most) once the last has left. Only where no
 * userspace record layer is involved: src plain or TLS with kernel RX,
 * dst plain or TLS with kernel TX; else -EOPNOTSUPP, and the handler goes
 * on copying. A plain dst socket is made non-blocking (O_NONBLOCK), so a
 * reader that stalls holds no io-wq worker. Both on the same reactor
 * (rtls_conn_connect() from src or dst). If dst ends, src's forwarding
 * stops (its next chunk, or the chunk queued on dst, is dropped, and src
 * waits): the handler closes or aborts src from dst's on_close.
 * 0; -EINVAL (same connection, other reactor), -EPIPE (either is not
 * open, dst shut for writing, src at its end), -EALREADY, -EOPNOTSUPP,
 * -EBUSY (src is paused or holds input kept while paused: resume first),
 * or -errno from pipe2(2) or fcntl(2).
 * Callbacks: none (splicing starts on the loop). */
RTLS_API int rtls_conn_forward(rtls_conn *src, rtls_conn *dst);

/* As rtls_conn_forward(), but for exactly n (> 0) bytes of src's input
 * (an HTTP body of known length), and then src reads the ordinary way
 * again. A splice never takes more than the bytes still owed from the
 * socket (under kTLS RX too: of a longer record the rest stays queued),
 * so what follows them (the next request) comes through on_data. Input
 * the engine must read the ordinary way meanwhile (what the receive
 * being cancelled still brings, a kTLS record read by RECVMSG) is not
 * handed to on_data as long as it belongs to the n bytes: the engine
 * writes that part to dst itself, and on_data gets only what follows.
 * Bytes the handler already holds are its own to write to dst first;
 * n counts only those still on the socket. Once the n-th byte is queued
 * on dst, src's on_forwarded runs (the last chunk may still be leaving
 * dst, in order with what the handler writes to dst next). An end
 * before that comes as on_eof, as ever. Errors as rtls_conn_forward(),
 * and -EINVAL for n == 0.
 * Callbacks: none (splicing starts on the loop). */
RTLS_API int rtls_conn_forward_n(rtls_conn *src, rtls_conn *dst, uint64_t n);

/* Bytes of c's input moved by rtls_conn_forward() or
 * rtls_conn_forward_n() by splice, never seen here (bytes the engine
 * wrote for a bounded forward do not count).
 * Callbacks: none. */
RTLS_API uint64_t rtls_conn_forwarded(const rtls_conn *c);

/* Closes at once, discarding queued output; err (0: -ECONNABORTED) is
 * passed to on_close. With -ECONNRESET the peer gets a TCP reset
 * (SO_LINGER 0) rather than a FIN, so it can tell that what it received
 * is incomplete (a proxy whose upstream died mid-body). Does nothing if
 * the connection is already gone.
 * Callbacks: on_close, always before it returns (input kept while
 * paused is released first). */
RTLS_API void rtls_conn_abort(rtls_conn *c, int err);

/* Opens a TCP (or Unix-domain) connection from the reactor that owns
 * `near`, the connection whose callback makes the call; the new one lives
 * on that reactor too. addr is "IP:PORT", "[IPv6]:PORT" or "unix:/path"
 * (borrowed). h is the new connection's handler (borrowed until its
 * on_close returns; NULL: the server's); its conn_data_size may not exceed
 * the server handler's. arg is kept for rtls_conn_arg(). On success *out is
 * the new connection: its data area is zeroed now (the caller may fill it
 * at once, on_open does not clear it again), and on_open runs when the
 * connect completes; from then on it is an ordinary connection. A
 * connection returned here always gets exactly one on_close: a failed
 * connect (refused, unreachable, the RTLS_TIMER_CONNECT deadline) runs
 * on_close(-ECONNREFUSED, -ETIMEDOUT, ...) without on_open. Before on_open,
 * writes fail with -EPIPE, timers cannot be set, and rtls_conn_close()
 * cancels the connect (on_close with -ECANCELED). Returns -EINVAL for a
 * bad address or data size, -ENOBUFS when the reactor has no free slot
 * (max_conns), -ESHUTDOWN once the server is stopping, or -errno from
 * socket(2).
 * Callbacks: none (the connect completes later, on the loop). */
RTLS_API int rtls_conn_connect(rtls_conn *near, const char *addr, const struct rtls_handler *h,
			       void *arg, rtls_conn **out);

/* The arg given to rtls_conn_connect(); NULL for an accepted connection.
 * Borrowed.
 * Callbacks: none. */
RTLS_API void *rtls_conn_arg(rtls_conn *c);

/* Logging used by the engine; handlers may use it too. One line per call
 * on stderr, from any thread. The level is process-wide.
 * Callbacks: none. */
RTLS_API void rtls_log(enum rtls_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
RTLS_API void rtls_log_set_level(enum rtls_log_level lvl);
RTLS_API int rtls_log_enabled(enum rtls_log_level lvl);

#ifdef __cplusplus
}
#endif
#endif
