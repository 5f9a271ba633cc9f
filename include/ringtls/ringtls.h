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
	unsigned listener;          /* index in rtls_config.listeners */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	const char *tls_version;    /* "TLSv1.3", ... */
	const char *tls_cipher;     /* IANA/OpenSSL name */
	const char *alpn;
	const char *sni;
	const char *client_subject; /* verified client certificate subject */
	int resumed;                /* 1 if the TLS session was resumed */
	enum rtls_record_path tx_path, rx_path;
};

/* Timers a connection can arm; durations come from rtls_config. */
enum rtls_timer {
	RTLS_TIMER_NONE = 0,
	RTLS_TIMER_IDLE,      /* waiting for the next request */
	RTLS_TIMER_HEADER,    /* one deadline for a whole request head */
	RTLS_TIMER_HANDSHAKE, /* TLS handshake */
	RTLS_TIMER_LINGER,    /* draining input after our side finished */
	RTLS_TIMER__COUNT
};

/* Handler callbacks, all called on the connection's reactor thread. Each
 * gets the connection and its handler data area (conn_data_size bytes,
 * zeroed at open, owned by the engine, valid until on_close returns). */
struct rtls_handler {
	size_t conn_data_size;
	/* A connection was accepted (and, on a TLS listener, its handshake
	 * completed). Return < 0 to close it at once. */
	int (*on_open)(rtls_conn *c, void *data);
	/* Plaintext arrived. Ownership of *buf passes to the handler, which
	 * releases it with rtls_buf_release() exactly once (now or later). */
	void (*on_data)(rtls_conn *c, void *data, struct rtls_buf *buf);
	/* The peer will send nothing more (TCP FIN or TLS close_notify). */
	void (*on_eof)(rtls_conn *c, void *data);
	/* Everything written so far has left (after a flush). */
	void (*on_drained)(rtls_conn *c, void *data);
	/* The armed timer expired. If NULL, the connection is closed. */
	void (*on_timeout)(rtls_conn *c, void *data, enum rtls_timer which);
	/* The server is shutting down. Return 1 if the connection is idle and
	 * may close now; 0 if the handler will close it when its response is
	 * done. If NULL, the connection closes once its output has drained. */
	int (*on_shutdown)(rtls_conn *c, void *data);
	/* The connection is gone; err is 0 or the negated errno that ended it.
	 * Release everything tied to data, including any rtls_buf still
	 * held: rtls_buf_release() stays valid until on_close returns. */
	void (*on_close)(rtls_conn *c, void *data, int err);
};

struct rtls_listen {
	const char *addr; /* "IP:PORT", "[IPv6]:PORT" or ":PORT"; port 0 = ephemeral */
	int tls;          /* 1 for a TLS listener (needs the TLS layer) */
};

enum rtls_log_level { RTLS_LOG_ERROR = 0, RTLS_LOG_WARN, RTLS_LOG_INFO, RTLS_LOG_DEBUG };

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
};

/* Fills *cfg with the defaults (all zero fields resolved). */
void rtls_config_defaults(struct rtls_config *cfg);

/* Validates cfg, probes io_uring and binds every listener on every reactor
 * (so "address in use" is reported here, before anything runs). cfg is
 * copied; the arrays it points to are borrowed. On success *out owns the
 * server; free it with rtls_server_destroy(). On failure returns a negated
 * errno, sets *out to NULL and writes one human-readable line (no newline)
 * into why[0..whylen). */
int rtls_server_create(const struct rtls_config *cfg, rtls_server **out,
		       char *why, size_t whylen);

/* Actual bound address of listener i (useful with port 0). */
int rtls_server_listen_addr(const rtls_server *s, unsigned i,
			    struct sockaddr_storage *ss, socklen_t *len);

/* Runs the reactors until SIGINT/SIGTERM or rtls_server_stop(), then shuts
 * down gracefully: stop accepting, finish responses in flight, close idle
 * connections, and return within shutdown_ms. Blocks those signals in the
 * calling thread. Returns 0, or a negated errno if a reactor failed. */
int rtls_server_run(rtls_server *s);

/* Asks a running server to shut down; callable from any thread. */
void rtls_server_stop(rtls_server *s);

void rtls_server_destroy(rtls_server *s);

/* Handler data area and the handler_ctx of the server. Borrowed. */
void *rtls_conn_data(rtls_conn *c);
void *rtls_conn_ctx(rtls_conn *c);

/* Writes the peer's address ("1.2.3.4:5", "[::1]:5") into out[0..n), or
 * "?" if it is gone. For log lines; a getpeername(2) call each time. */
int rtls_conn_peer(const rtls_conn *c, char *out, size_t n);

/* Writes an address as "1.2.3.4:5" or "[::1]:5" into out[0..n). */
int rtls_format_addr(const struct sockaddr_storage *ss, char *out, size_t n);

/* Fills *info; see struct rtls_conn_info for string lifetimes. */
int rtls_conn_query(const rtls_conn *c, struct rtls_conn_info *info);

/* Gives a received buffer back to the engine. Exactly once per buffer. */
void rtls_buf_release(rtls_conn *c, struct rtls_buf *buf);

/* Queues a copy of p[0..n) for sending. Nothing leaves before
 * rtls_conn_flush(). -EPIPE if the connection is closing. */
int rtls_conn_write(rtls_conn *c, const void *p, size_t n);

/* Reserves n bytes in the output queue and returns where to write them, or
 * NULL on allocation failure; rtls_conn_commit() then queues the first
 * `used` (<= n) of them. Saves a copy for formatted output. */
char *rtls_conn_reserve(rtls_conn *c, size_t n);
void rtls_conn_commit(rtls_conn *c, size_t used);

/* Queues len bytes of file fd from off, sent from the page cache without
 * passing through userspace. Ownership of fd is transferred: the engine
 * closes it when the bytes are sent or the connection closes, also on
 * error. Ordered with rtls_conn_write(). */
int rtls_conn_write_file(rtls_conn *c, int fd, off_t off, size_t len);

/* Takes now what sending a file on c will need (a splice pipe, unless the
 * transport encrypts in userspace), so that running out of descriptors
 * shows before a response head is queued. 0, or -EMFILE / -ENFILE. */
int rtls_conn_file_ready(rtls_conn *c);

/* Starts sending everything queued, as one send where possible. */
int rtls_conn_flush(rtls_conn *c);

/* Bytes queued or in flight, not yet acknowledged by a send completion. */
size_t rtls_conn_pending(const rtls_conn *c);

/* Arms the connection's single timer (replacing any armed one);
 * RTLS_TIMER_NONE disarms it. */
void rtls_conn_set_timer(rtls_conn *c, enum rtls_timer t);

/* Stops or restarts delivery of on_data (backpressure). */
void rtls_conn_pause_read(rtls_conn *c);
void rtls_conn_resume_read(rtls_conn *c);

/* Closes gracefully: flushes what is queued, ends the stream (TLS
 * close_notify, then TCP FIN), drains input briefly so the peer sees the
 * response rather than a reset, then closes. on_close follows. */
void rtls_conn_close(rtls_conn *c);

/* Closes at once, discarding queued output. on_close follows. */
void rtls_conn_abort(rtls_conn *c, int err);

/* Logging used by the engine; handlers may use it too. One line per call. */
void rtls_log(enum rtls_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void rtls_log_set_level(enum rtls_log_level lvl);
int rtls_log_enabled(enum rtls_log_level lvl);

#ifdef __cplusplus
}
#endif
#endif
