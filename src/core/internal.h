/* Engine internals shared by src/core (and the transport hooks of src/tls).
 * Nothing here is public API. */
#ifndef RTLS_CORE_INTERNAL_H
#define RTLS_CORE_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ringtls/ringtls.h"

/* --- completion tags -------------------------------------------------
 * Every SQE's user_data is  [op:8][slot:24][gen:32].  A completion whose
 * generation differs from the slot's current one belongs to a connection
 * that has since closed and must not touch the slot's new occupant. */
enum rtls__op {
	RTLS__OP_IGNORE = 0, /* cancels and other fire-and-forget requests */
	RTLS__OP_ACCEPT,     /* slot = listener index */
	RTLS__OP_RECV,
	RTLS__OP_SEND,
	RTLS__OP_SPLICE_IN,  /* file -> pipe */
	RTLS__OP_SPLICE_OUT, /* pipe -> socket */
	RTLS__OP_RECVMSG,    /* kTLS receive with record-type control messages */
	RTLS__OP_SENDMSG,    /* kTLS control record (alert, KeyUpdate) */
	RTLS__OP_TICK,       /* reactor timer tick */
	RTLS__OP_WAKE,       /* eventfd read: stop requested */
	RTLS__OP_CONNECT,    /* rtls_conn_connect(): the address is c->peer */
	RTLS__OP_FWD_POLL,   /* rtls_conn_forward(): wait for the source's input */
	RTLS__OP_FWD_IN,     /* rtls_conn_forward(): source socket -> its pipe */
	RTLS__OP_FWD_OUT,    /* a forwarded pipe segment -> socket */
	RTLS__OP_FWD_WPOLL,  /* that socket was full: wait until it is writable */
	RTLS__OP_ERR_WATCH,  /* no receive armed: a reset still ends it (conn.c) */
	RTLS__OP_FWD_PEEK,   /* kTLS source: wait for a whole record (fwd.c) */
};

static inline uint64_t rtls__ud(enum rtls__op op, uint32_t slot, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(slot & 0xffffffu) << 32) | gen;
}
static inline enum rtls__op rtls__ud_op(uint64_t ud) { return (enum rtls__op)(ud >> 56); }
static inline uint32_t rtls__ud_slot(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffffu; }
static inline uint32_t rtls__ud_gen(uint64_t ud) { return (uint32_t)ud; }

#define RTLS_MAX_SLOTS (1u << 24)

/* From <linux/tls.h>; spelled out so core needs no TLS headers. */
#define RTLS_SOL_TLS 282
#define RTLS_TLS_SET_RECORD_TYPE 1
#define RTLS_TLS_GET_RECORD_TYPE 2

/* rtls_buf.priv_kind: where a buffer goes back to. */
enum rtls__buf_kind {
	RTLS__BUF_RING = 1, /* provided buffer: back to the reactor's ring */
	RTLS__BUF_HEAP = 2, /* malloc'd by a transport: freed */
};

/* --- intrusive list, used for timers ------------------------------------ */
struct rtls__link {
	struct rtls__link *prev, *next;
};

/* --- output queue ---------------------------------------------------------
 * Writes go to the pending side while the other side is in flight, so a
 * buffer the kernel is reading is never reallocated. A side is a byte
 * buffer split into segments; each segment is some bytes of the buffer
 * followed by an optional file range. */
struct rtls__seg {
	size_t mem_end; /* buffer offset where this segment's bytes end */
	uint8_t rec_type; /* non-zero: the bytes are one kTLS record of this
			   * content type, sent with TLS_SET_RECORD_TYPE */
	int fd;         /* -1: no file part */
	off_t off;
	size_t flen;
	bool fwd; /* fd is a forward's pipe (a duplicate of its read
			 * end, owned), not a file: spliced out as it is,
			 * then the source connection (fwd_slot, fwd_gen)
			 * may read on (fwd.c) */
	uint32_t fwd_slot, fwd_gen;
};

/* A side keeps its memory between rounds up to this much (wbuf.c). */
#define RTLS__WBUF_KEEP_MAX ((size_t)1024 * 1024)

/* A reactor's cache of the smallest output blocks (wbuf.c): a side's
 * first data block and its first segment array. Every keep-alive
 * response takes one of each per side and gives them back when the
 * connection goes idle; from here that is a pointer pop, not malloc. */
#define RTLS__SMALL_DATA 1024u
#define RTLS__SMALL_SEGS 4u
#define RTLS__SMALL_KEEP 64u
enum { RTLS__SMALL_KIND_DATA, RTLS__SMALL_KIND_SEGS, RTLS__SMALL_KINDS };
struct rtls__small_cache {
	void *blk[RTLS__SMALL_KINDS][RTLS__SMALL_KEEP];
	unsigned n[RTLS__SMALL_KINDS];
};

/* A reactor's cache of the bigger output data blocks (wbuf.c). A side's
 * block is always 1 KiB times a power of two (grow() doubles), so there
 * is one LIFO list per size, 2 KiB to RTLS__WBUF_KEEP_MAX. A connection
 * that goes idle gives its blocks here and the next response takes them,
 * already faulted in: with dozens of userspace-TLS responses in flight,
 * malloc and free of their 32 KiB sealed sides made glibc trim the arena
 * and fault it back in (issue 20). Bounded twice: RTLS__BIG_KEEP_BYTES in
 * all, and each RTLS__BIG_TRIM_MS the reactor frees the blocks no side
 * took in the interval before (`low`), so an idle reactor holds none. */
#define RTLS__BIG_CLASSES 10u /* 2 KiB .. 1 MiB */
#define RTLS__BIG_KEEP_BYTES ((size_t)8 << 20)
#define RTLS__BIG_TRIM_MS 1000u
struct rtls__big_blk {
	struct rtls__big_blk *next;
};
struct rtls__big_cache {
	struct rtls__big_blk *head[RTLS__BIG_CLASSES];
	unsigned n[RTLS__BIG_CLASSES];
	unsigned low[RTLS__BIG_CLASSES]; /* fewest in the list since the last trim */
	size_t bytes;
};

struct rtls__wbuf {
	char *data;
	size_t len, cap;
	struct rtls__seg *segs;
	unsigned nsegs, segcap;
	/* The most this side held in its last round (peak: in this one).
	 * A side given back between rounds starts the next at that size
	 * (grow()), not at 1 KiB: a stream that queues 64 KiB a round
	 * copied its bytes again at each doubling. */
	size_t peak, hint;
};

/* --- transport hooks --------------------------------------------------
 * A transport sits between the socket and the handler. NULL means plain
 * TCP. The TLS layer installs one per connection; core never calls into
 * TLS except through these. */
struct rtls__transport {
	/* Raw bytes arrived (a provided buffer, owned by the callee). */
	void (*on_recv)(rtls_conn *c, struct rtls_buf *raw);
	/* Peer sent FIN. */
	void (*on_recv_eof)(rtls_conn *c);
	/* The connection is being freed: release transport state. */
	void (*destroy)(rtls_conn *c);
	/* Fill *info's TLS fields. */
	void (*query)(const rtls_conn *c, struct rtls_conn_info *info);
	/* Called when the connection can send: turn plaintext from `in` (the
	 * pending side) into records appended to `out` (empty, not in flight),
	 * consuming what it used from `in`, and add any bytes of its own
	 * (handshake, alerts, close_notify). Leaving `out` empty means nothing
	 * to send. NULL when the kernel makes the records, or for plain TCP. */
	int (*seal)(rtls_conn *c, struct rtls__wbuf *in, struct rtls__wbuf *out);
	/* Orderly end of our side (TLS: queue close_notify). */
	void (*shutdown)(rtls_conn *c);
	/* RTLS__RX_MSG: one or more records of content `type` arrived
	 * (decrypted by the kernel). Owns raw. */
	void (*on_record)(rtls_conn *c, struct rtls_buf *raw, int type);
	/* Everything queued has been sent (before the handler sees it). */
	void (*on_drained)(rtls_conn *c);
	/* A receive failed with err; return 1 if the transport dealt with
	 * it, 0 to let core end the connection. */
	int (*on_recv_error)(rtls_conn *c, int err);
	/* The urgent record (rtls__send_urgent) has been sent; nothing
	 * after it has been sent yet. */
	void (*on_seg_sent)(rtls_conn *c);
	/* Bytes reached the socket (after every send or splice). */
	void (*on_sent)(rtls_conn *c);
	/* Outbound: the TCP connect completed; the transport starts its
	 * handshake, and calls rtls__handler_open() when it is done. */
	void (*on_connected)(rtls_conn *c);
};

/* How a connection receives. Changed only while no receive is armed. */
enum rtls__rx_mode {
	RTLS__RX_MULTISHOT = 0, /* multishot RECV into provided buffers */
	RTLS__RX_EXACT,         /* single RECV of at most rx_limit bytes: never
				 * reads past a boundary the transport names */
	RTLS__RX_MSG,           /* RECVMSG with control messages (kTLS RX) */
	RTLS__RX_OFF,           /* nothing armed until the transport says */
};

/* Message headers for RECVMSG/SENDMSG, allocated on first use: most
 * connections never need them. */
struct rtls__ctl {
	struct msghdr rmsg;
	struct iovec riov;
	unsigned char peek; /* MSG_PEEK's one byte (fwd.c) */
	union {
		char buf[64];
		struct cmsghdr align;
	} rcbuf;
	struct msghdr smsg;
	struct iovec siov;
	union {
		char buf[64];
		struct cmsghdr align;
	} scbuf;
};

/* struct rtls_tls_ctx (opaque to core) begins with this, so core can hand
 * TLS connections to the TLS layer without depending on it. */
struct rtls__tls_hooks {
	int (*attach)(struct rtls_conn *c);
	/* The client side (a client context, rtls_conn_connect_tls()):
	 * name is the server's name to send and check, or NULL. */
	int (*attach_client)(struct rtls_conn *c, void *ctx, const char *name);
	/* Bytes of per-connection state the TLS layer wants in a slot-indexed
	 * array (c->tp_area), so long-lived state never sits on the heap
	 * between the handshake's short-lived allocations. */
	size_t conn_size;
};

enum rtls__conn_state {
	RTLS__CONN_FREE = 0,
	RTLS__CONN_CONNECTING, /* outbound: the connect is outstanding */
	RTLS__CONN_OPEN,       /* handler attached (or transport handshaking) */
	RTLS__CONN_CLOSING,    /* graceful: draining output, then FIN */
	RTLS__CONN_LINGER,     /* FIN sent; discarding input until EOF or timeout */
	RTLS__CONN_DEAD,       /* fd closed; waiting for in-flight ops to complete */
};

/* What a connection's output is doing (send.c). At most one request
 * (send, splice, control record) is outstanding: records must reach the
 * kernel in order, and a KeyUpdate must change the key between two of
 * them. The urgent record (rtls__send_urgent) goes before the next piece
 * of the side in flight, never beside it.
 *
 *   IDLE ──send_start: a side begins──► SIDE_NEXT ──request──► SIDE
 *   SIDE ──its completion──► SIDE_NEXT ──the side is done──► IDLE
 *   SIDE_NEXT ──urgent record queued──► SIDE_URGENT ──completion──► SIDE_NEXT
 *   IDLE ──rtls__send_urgent──► URGENT ──its completion──► IDLE */
enum rtls__send_state {
	RTLS__SEND_IDLE = 0,    /* no side in flight, nothing outstanding */
	RTLS__SEND_URGENT,      /* the urgent record outstanding; no side in flight */
	RTLS__SEND_SIDE,        /* a side in flight, one of its requests outstanding */
	RTLS__SEND_SIDE_URGENT, /* a side in flight, the urgent record outstanding
				 * before the side's next piece */
	RTLS__SEND_SIDE_NEXT,   /* a side in flight, nothing outstanding: a
				 * completion is being handled and send_next()
				 * picks the next request (or the connection died
				 * meanwhile) */
};

/* A transition its machine does not list is a bug: debug builds say which
 * and stop; release builds carry on (the state is set as asked). */
#ifndef NDEBUG
#define RTLS__EDGE_CHECK(ok, machine, from, to)                                            \
	do {                                                                               \
		if (!(ok)) {                                                               \
			rtls_log(RTLS_LOG_ERROR, "%s: illegal transition %d -> %d", machine, \
				 (int)(from), (int)(to));                                   \
			abort();                                                           \
		}                                                                          \
	} while (0)
#else
/* Never evaluated, but the edge functions stay used (clang warns). */
#define RTLS__EDGE_CHECK(ok, machine, from, to) ((void)(0 && (ok)))
#endif

/* --- counters (stats.c; DESIGN.md "Metrics") -------------------------------
 * Each reactor counts into its own block: one writer, no lock in the data
 * path. The fields are atomics only so that rtls_server_stats() may read
 * them from another thread without a data race: the writer does a relaxed
 * load and a relaxed store (no read-modify-write: it is the only writer),
 * which compiles to the plain add it would be without them. The block has
 * the layout of struct rtls_stats, one slot per uint64_t. */
#define RTLS__NSTATS (sizeof(struct rtls_stats) / sizeof(uint64_t))
struct rtls__stats {
	_Atomic uint64_t v[RTLS__NSTATS];
};
/* The slot of a field of struct rtls_stats (an array's first element). */
#define RTLS__STAT(field) (offsetof(struct rtls_stats, field) / sizeof(uint64_t))
static inline void rtls__stat_add(struct rtls__stats *s, size_t slot, uint64_t n)
{
	atomic_store_explicit(&s->v[slot],
			      atomic_load_explicit(&s->v[slot], memory_order_relaxed) + n,
			      memory_order_relaxed);
}
/* One more in field (an array's element i) of reactor r's block. */
#define RTLS__COUNT(r, field) rtls__stat_add(&(r)->stats, RTLS__STAT(field), 1)
#define RTLS__COUNT_AT(r, field, i) rtls__stat_add(&(r)->stats, RTLS__STAT(field) + (size_t)(i), 1)

struct rtls__reactor;
struct rtls__cidr; /* proxyproto.h */

/* The addresses a PROXY protocol header gave a connection (proxyphase.c):
 * what rtls_conn_peer() and rtls_conn_query() report instead of the
 * socket's. */
struct rtls__pp_addrs {
	struct sockaddr_storage src, dst;
	socklen_t src_len, dst_len;
};

/* c->listener of a connection that rtls_conn_connect() opened: never an
 * index, as a server has at most 255 listeners (0..254). */
#define RTLS__LISTENER_NONE 0xffu

struct rtls_conn {
	struct rtls__reactor *r;
	const struct rtls_handler *h; /* the server's, or rtls_conn_connect()'s */
	void *arg;                    /* rtls_conn_connect()'s, for rtls_conn_arg() */
	uint32_t slot, gen;
	int fd;
	uint8_t state;
	uint8_t listener;
	uint8_t timer;          /* enum rtls_timer armed */
	bool recv_armed;        /* a receive is outstanding */
	uint8_t rx_mode;        /* enum rtls__rx_mode */
	uint8_t recv_op;        /* RTLS__OP_RECV or RTLS__OP_RECVMSG, while armed */
	uint32_t rx_limit;      /* RTLS__RX_EXACT: bytes the next read may take */
	uint64_t tx_ops;        /* sends completed, for AEAD usage limits */
	uint64_t tx_bytes;
	uint8_t send_state;     /* enum rtls__send_state */
	uint8_t urgent_type, urgent_len; /* urgent_len: 0, or the urgent
				 * record is queued or outstanding */
	uint8_t urgent[8];      /* one control record that goes before
				 * anything else not yet sent (KeyUpdate) */
	struct rtls__ctl *ctl;
	bool ctl_borrowed;      /* ctl lives in the transport's area */
	void *tp_area;          /* this slot's share of the transport area */
	bool read_paused;
	bool peer_eof;
	bool eof_truncated;     /* TLS: the peer's FIN came without
				 * close_notify (rtls_conn_eof()) */
	bool wr_shut;           /* rtls_conn_shutdown_write(): no more
				 * writes; FIN once the output has gone */
	bool fin_sent;          /* that FIN is out (shutdown(SHUT_WR)) */
	bool handler_open;      /* on_open ran, or an outbound connect was
				 * issued: on_close owed */
	bool open_called;       /* on_open ran: the handler hears of output
				 * draining only from then (a TLS client's
				 * handshake flights are the transport's) */
	bool connect_armed;     /* the connect is outstanding (the slot
				 * cannot be freed) */
	bool in_seal;           /* inside tp->seal: a kick or close from it
				 * only sets flush_wanted (send_start would
				 * nest); the round under way sends it */
	bool flush_wanted;      /* the handler or transport asked for output
				 * to go; kept until a round finds nothing
				 * more (a request, not a state: it can come
				 * in any send_state) */
	bool recv_starved;      /* on the starved list: re-arm when buffers
				 * come back (the slot, not the connection:
				 * kept across reuse, see rtls__conn_new) */
	bool recv_cancelling;   /* a cancel of the armed receive is queued */
	bool reaping;           /* on the reactor's reap list */
	bool rx_seen;           /* application data was delivered */
	bool stop_wait;         /* graceful stop: given until the reactor's
				 * stop_grace_ms for its first input */
	int close_err;
	/* The transport's reason for a graceful close it started (a TLS
	 * client's failed handshake), given to on_close instead of 0. */
	int fail_err;
	uint64_t deadline_ms;
	struct rtls__link tlink; /* timer list of `timer` */
	struct rtls__wbuf w[2];  /* w[wi] takes writes; the other may be in flight */
	uint8_t wi;
	unsigned seg_done;       /* in-flight side: segments fully sent */
	size_t mem_sent;         /* in-flight side: bytes of data sent */
	size_t file_sent;        /* current segment's file bytes sent */
	size_t pipe_bytes;       /* bytes sitting in the pipe */
	int pipe[2];             /* for splice; -1 when none */
	/* rtls_conn_forward() (fwd.c): this connection's input goes to the
	 * connection (fwd_slot, fwd_gen) by splice through fwd_pipe. */
	bool err_watch;  /* an RTLS__OP_ERR_WATCH poll is outstanding */
	bool err_want;   /* ... and wanted (cleared: being cancelled) */
	bool err_cancel; /* its cancel is queued */
	bool fwd_on;
	bool fwd_ctl;     /* one ordinary receive before splicing again:
			* kTLS RX, a control record is next (one RECVMSG);
			* plain TCP, urgent data stopped the splice (one
			* single-shot RECV) */
	bool fwd_hup;     /* the last poll saw the peer's end (or an error) */
	bool fwd_wait;    /* a chunk is queued on the destination */
	bool fwd_bounded; /* rtls_conn_forward_n(): ends after fwd_left bytes */
	/* The transport moves RX to the kernel after more records (a TLS
	 * 1.3 client: after the server's first record); a forward asked for
	 * meanwhile waits for that (fwd_later) and then starts; if the
	 * source is paused then, at its resume. */
	bool rx_kernel_later;
	bool fwd_later;
	uint32_t fwd_slot, fwd_gen;
	int fwd_pipe[2];
	uint64_t fwd_bytes; /* bytes moved by splice */
	uint64_t fwd_left;  /* a bounded forward's bytes still to move */
	const struct rtls__transport *tp;
	void *tp_state;
	unsigned nheld;          /* buffers handed out and not yet released */
	struct rtls_buf *paused_q; /* bufs received while paused */
	unsigned npaused, paused_cap;
	unsigned paused_next; /* of those, handed over by a resume in progress */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	struct rtls__pp_addrs *pp; /* from a PROXY header, or NULL */
	void *data;              /* handler area */
};

struct rtls__listener {
	int fd;
	bool tls;
	bool armed;
	bool adopted; /* fd is a duplicate of rtls_listen.fd: never shut down */
	/* A successor server took this socket over (rtls_server_create_from):
	 * at stop it is closed, neither drained nor shut down. Under the
	 * server's ls_lock, with fd. */
	bool handed;
	bool inherited; /* taken over from a predecessor: watched (reactor.c) */
};

/* A handover of listening sockets (rtls_server_create_from), shared by
 * the two servers. While both wait on one socket, the kernel wakes one
 * waiter per connection; the predecessor's accept, cancelled at its
 * stop, may have taken a wake-up for a connection it never accepted, and
 * the successor would not hear of that connection until the next one
 * came. So until every predecessor reactor has seen its accepts on the
 * handed sockets end (pending reaches 0), the successor's reactors look
 * at those sockets every RTLS__WATCH_MS and re-arm an accept that sleeps
 * beside a waiting connection. */
struct rtls__handover {
	atomic_uint pending; /* predecessor reactors still accepting there */
	atomic_uint refs;    /* those, and the successor */
};

#define RTLS__WATCH_MS 20

struct rtls__bufring {
	struct io_uring_buf_ring *br;
	char *mem;
	unsigned count, size, mask;
	unsigned to_advance; /* buffers added but not yet published */
	unsigned out;        /* taken by completions and not yet published
			      * back: the kernel can pick from count - out */
	uint16_t bgid;
};

struct rtls_server;

/* Graceful stop: how long an accepted connection that has sent nothing
 * yet may take to deliver its first request (rtls__conn_shutdown). */
#define RTLS__STOP_GRACE_MS 1000

/* A userspace TLS seal round reads files this much at a time: four
 * 16 KiB records per pread (tls/conn.c). */
#define RTLS__SEAL_PACK ((size_t)64 * 1024)

struct rtls__reactor {
	struct rtls_server *srv;
	unsigned id;
	pthread_t thread;
	struct io_uring ring;
	bool ring_ok;
	struct rtls__ep *ep;        /* the epoll backend's state, or NULL
				     * on io_uring (epoll.c) */
	bool wait_in_poll;          /* under valgrind: see rtls__ring_wait() */
	struct rtls__bufring bufs;
	struct rtls__listener *ls;  /* srv->nlisteners */
	struct rtls_conn *conns;    /* max_conns slots */
	uint32_t *free_slots;
	unsigned nfree, nlive;
	struct rtls__link timers[RTLS_TIMER__COUNT];
	uint64_t tick_deadline_ms;  /* 0: no tick armed */
	uint32_t tick_seq;          /* of the tick armed last (its CQE's gen) */
	struct __kernel_timespec tick_ts;
	int wake_fd;
	uint64_t wake_val;
	bool stopping;
	uint64_t stop_deadline_ms;
	uint64_t stop_grace_ms;     /* connections waiting for their first
				     * input at stop close then, or 0 */
	uint32_t *starved;          /* slots waiting for receive buffers */
	unsigned nstarved;
	uint32_t *reap;             /* slots to free once their ops complete */
	unsigned nreap;
	uint64_t accept_retry_ms;   /* re-arm accepts after EMFILE, or 0 */
	uint64_t watch_ms;          /* next look at inherited listeners, or 0 */
	struct rtls__handover *ho_out; /* handed sockets: ours to release
					* (under srv->ls_lock) */
	bool quiet;                    /* counted in srv->quiet */
	uint64_t accept_paused_ms;  /* when accepts began failing, or 0 */
	uint64_t accept_failed_ms;  /* the last failure */
	uint64_t accept_logged_ms;  /* last line about it */
	unsigned accept_fails;      /* failed accepts since that line */
	uint64_t full_logged_ms;
	char *conn_data;            /* max_conns * handler.conn_data_size */
	char *tp_data;              /* max_conns * tp_size; allocated at start
				     * for TLS listeners, else by the first
				     * rtls_conn_connect_tls() */
	size_t tp_size;
	char *seal_buf;             /* the TLS seal round's plaintext pack
				     * (RTLS__SEAL_PACK bytes), made at first
				     * use (tls/conn.c) */
	int *pipe_pool;             /* spare pipes, pairs */
	unsigned npipes, pipecap;
	struct rtls__small_cache small; /* small idle output blocks */
	struct rtls__big_cache big;     /* bigger idle output blocks */
	uint64_t big_trim_ms;           /* next trim of `big`, or 0 */
	struct rtls__stats stats;       /* this reactor's counters (stats.c) */
	int err;
	uint64_t now_ms;
};

struct rtls_server {
	struct rtls_config cfg;
	struct rtls_handler handler;
	unsigned nlisteners;
	struct rtls__reactor *rs;
	unsigned nreactors;
	unsigned ring_flags;        /* flags the probe found usable */
	enum rtls_backend backend;  /* IO_URING or EPOLL, chosen at create */
	atomic_bool stop;
	atomic_uint running;
	/* The TLS layer's entry point for a connection accepted on a TLS
	 * listener (from cfg.tls, see struct rtls__tls_hooks), or NULL. */
	int (*tls_attach)(struct rtls_conn *c);
	size_t tls_conn_size;
	struct sockaddr_storage *bound; /* per listener, actual address */
	socklen_t *bound_len;
	/* PROXY protocol: the sources that may send a header (parsed from
	 * cfg.proxy_protocol_from), and the phase every accepted connection
	 * goes through first: rtls__pp_begin, or NULL when there are none,
	 * so that accepting costs nothing more without the feature. */
	struct rtls__cidr *pp_from;
	unsigned npp_from;
	int (*pp_begin)(struct rtls_conn *c);
	/* Guards every reactor's ls[].fd and .handed against a successor
	 * taking the sockets over while a reactor stops: taken by
	 * begin_stop() and rtls_server_create_from() only. */
	pthread_mutex_t ls_lock;
	/* Created from prev and not run yet: the listeners it took over,
	 * given back if it is destroyed unrun. */
	struct rtls_server *prev;
	struct rtls__taken {
		unsigned ours, prev; /* listener indexes */
		bool adopted;        /* both were handed the same socket */
	} * taken;
	unsigned ntaken;
	struct rtls__handover *ho_in; /* the handover we take, or NULL */
	/* Reactors that no longer accept (rtls_server_stop_accepting), and
	 * reactors whose setup is done, with the first error
	 * (rtls_server_start waits for them). */
	pthread_mutex_t quiet_lock;
	pthread_cond_t quiet_cond;
	unsigned quiet;
	unsigned set_up;
	int setup_err;
	/* Started: the sockets taken from prev are ours to empty and shut
	 * down at our stop. Before (a start that failed half way), they
	 * are still prev's, which serves on them. */
	atomic_bool own_taken;
};

/* reactor.c */
void *rtls__reactor_main(void *arg);
/* Drops one reference; frees it with the last. */
void rtls__handover_put(struct rtls__handover *h);
/* A predecessor reactor's accepts on handed sockets have ended (or it
 * goes away): the successor need not watch for it any more. Idempotent. */
void rtls__handover_release(struct rtls__reactor *r);
/* Hands one completion to its listener, timer or connection; one for a
 * connection that has closed (its generation is not the slot's) is
 * dropped, and a receive buffer it carries goes back to the ring. */
void rtls__dispatch(struct rtls__reactor *r, struct io_uring_cqe *cqe);

/* ring.c: the backend seam. Core writes requests as SQEs (rtls__sqe)
 * and reads results as CQEs (rtls__dispatch) on either backend; these
 * are the only calls that differ, and only ring.c looks at which one
 * runs (r->ep). */
/* The backend `want` comes to here (AUTO: RINGTLS_BACKEND's, then
 * io_uring where it works): RTLS_BACKEND_IO_URING (with *flags, the ring
 * flags to use) or RTLS_BACKEND_EPOLL; *refused: why io_uring was not
 * usable when AUTO fell back (else 0). -EINVAL: an unknown backend, here
 * or in the environment; another negated errno: io_uring was asked for
 * and cannot be had. */
int rtls__backend_pick(enum rtls_backend want, unsigned *flags, int *refused);
int rtls__ring_init(struct rtls__reactor *r, unsigned flags, unsigned entries);
int rtls__probe_ring_flags(unsigned *flags);
struct io_uring_sqe *rtls__sqe(struct rtls__reactor *r);
/* Issues what is queued and waits up to timeout_ms (-1: no limit) for a
 * completion: 0, -ETIME when none came, -EINTR, or a fatal error. */
int rtls__ring_wait(struct rtls__reactor *r, int timeout_ms);
/* Issues what is queued, without waiting. */
void rtls__ring_submit(struct rtls__reactor *r);
/* accept4() flags for a socket the reactor accepts itself (the drain at
 * stop): SOCK_NONBLOCK on epoll, whose requests must never block. */
int rtls__ring_sock_flags(const struct rtls__reactor *r);
/* Hands every completion that is in to rtls__dispatch(). */
void rtls__ring_reap(struct rtls__reactor *r);
/* Closes the ring or the epoll instance: requests still in flight are
 * dropped without completions. */
void rtls__ring_exit(struct rtls__reactor *r);
int rtls__ring_describe(char *out, size_t n);

/* epoll.c: the epoll backend behind the same calls. */
struct rtls__ep;
int rtls__ep_init(struct rtls__reactor *r, unsigned entries);
void rtls__ep_exit(struct rtls__reactor *r);
struct io_uring_sqe *rtls__ep_sqe(struct rtls__reactor *r);
void rtls__ep_submit(struct rtls__reactor *r);
int rtls__ep_wait(struct rtls__reactor *r, int timeout_ms);
void rtls__ep_reap(struct rtls__reactor *r);
int rtls__ep_describe(char *out, size_t n);

/* bufring.c */
int rtls__bufring_init(struct rtls__reactor *r, unsigned count, unsigned size, uint16_t bgid);
void rtls__bufring_free(struct rtls__reactor *r);
void rtls__bufring_put(struct rtls__reactor *r, uint16_t bid);
/* A completion handed us one of the ring's buffers. */
static inline void rtls__bufring_took(struct rtls__reactor *r) { r->bufs.out++; }
void rtls__bufring_publish(struct rtls__reactor *r);
/* Buffers the kernel can pick from now (at most; see rtls__rearm_starved). */
static inline unsigned rtls__bufring_avail(const struct rtls__reactor *r)
{
	return r->bufs.count - r->bufs.out;
}
char *rtls__bufring_addr(struct rtls__reactor *r, uint16_t bid);

/* listener.c */
int rtls__parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);
int rtls__listen_socket(const struct sockaddr_storage *ss, socklen_t len);
/* Checks a socket handed over (rtls_listen.fd) and reads its address. */
int rtls__listen_adopt(int fd, struct sockaddr_storage *ss, socklen_t *len);
/* rtls__parse_addr(), or "unix:/path" (an AF_UNIX address). */
int rtls__parse_connect_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* timer.c */
uint64_t rtls__now_ms(void);
void rtls__timers_init(struct rtls__reactor *r);
void rtls__timer_arm(struct rtls_conn *c, enum rtls_timer t);
void rtls__timers_expire(struct rtls__reactor *r);
void rtls__tick_arm(struct rtls__reactor *r);

/* send.c: a request of the connection's output is outstanding (the slot
 * cannot be freed, and a new round cannot start). */
static inline bool rtls__send_busy(const struct rtls_conn *c)
{
	switch ((enum rtls__send_state)c->send_state) {
	case RTLS__SEND_URGENT:
	case RTLS__SEND_SIDE:
	case RTLS__SEND_SIDE_URGENT:
		return true;
	case RTLS__SEND_IDLE:
	case RTLS__SEND_SIDE_NEXT:
	default:
		return false;
	}
}

/* conn.c */
/* Every change of c->state goes through here (debug builds check the edge). */
void rtls__conn_set_state(struct rtls_conn *c, enum rtls__conn_state to);
struct rtls_conn *rtls__conn_new(struct rtls__reactor *r, int fd, unsigned listener);
/* A slot for an outbound connection (connect.c): CONNECTING, handler h. */
struct rtls_conn *rtls__conn_new_outbound(struct rtls__reactor *r, int fd,
					  const struct rtls_handler *h);
/* connect.c: the connect's completion. */
void rtls__on_connect(struct rtls_conn *c, int res);
void rtls__conn_recv_arm(struct rtls_conn *c);
void rtls__on_recv(struct rtls_conn *c, struct io_uring_cqe *cqe, enum rtls__op op);
struct rtls__ctl *rtls__conn_ctl(struct rtls_conn *c);
void rtls__on_send(struct rtls_conn *c, int res);
void rtls__on_splice(struct rtls_conn *c, enum rtls__op op, int res);
void rtls__conn_timeout(struct rtls_conn *c, enum rtls_timer t);
void rtls__conn_shutdown(struct rtls_conn *c);
void rtls__conn_kill(struct rtls_conn *c, int err);
/* For reactor_free, when a reactor stopped on an error with connections
 * still live: their handler and transport end here, on the main thread. */
void rtls__conn_orphan(struct rtls_conn *c);
void rtls__reap(struct rtls__reactor *r);
void rtls__rearm_starved(struct rtls__reactor *r);
void rtls__send_start(struct rtls_conn *c);
void rtls__kick(struct rtls_conn *c);
/* Sends one small control record before anything not yet sent, even in
 * the middle of a body; tp->on_seg_sent follows when it has left. */
int rtls__send_urgent(struct rtls_conn *c, uint8_t type, const void *p, size_t n);
/* A reactor's TLS areas, made at first use (conn.c). */
int rtls__reactor_tls_area(struct rtls__reactor *r, size_t size);
char *rtls__reactor_seal_buf(struct rtls__reactor *r);
/* rtls_conn_forward() (fwd.c): arms the source's wait for input; the
 * source's splice completions; a destination has sent a chunk. */
void rtls__fwd_arm(struct rtls_conn *c);
void rtls__fwd_on_peek(struct rtls_conn *c, int res);
int rtls__conn_record_type(struct rtls_conn *c);
/* The transport has decided where RX stays: a forward that waited for it
 * (rtls_conn_forward() with rx_kernel_later) starts now, or never. */
void rtls__fwd_later(struct rtls_conn *c);
/* Makes c's socket blocking (io_uring only) once the kernel opens its
 * records (TLS_RX installed): rtls_conn_connect()'s sockets are
 * non-blocking, accepted ones blocking. On a non-blocking kTLS socket
 * io_uring ends a receive armed while a record is not yet whole (the
 * socket polls readable on its first bytes) in EAGAIN, and so a
 * forward's splice and its peek: the forward read the record the
 * ordinary way (copied; upstream_tls_suite's split records, 6.1), and an
 * ordinary receive's EAGAIN would end the connection. Blocking, io_uring
 * waits for the record in a poll or a worker. */
void rtls__rx_kernel_blocking(struct rtls_conn *c);
void rtls__fwd_on_poll(struct rtls_conn *c, int res);
void rtls__fwd_on_in(struct rtls_conn *c, int res);
void rtls__fwd_sent(struct rtls__reactor *r, uint32_t slot, uint32_t gen);
/* Input that reached c the ordinary way while a bounded forward runs:
 * the part that belongs to it is written to its destination here. 1 if
 * b still holds bytes for the handler (the forward has ended), 0 if it
 * was used up (and released). */
int rtls__fwd_take(struct rtls_conn *c, struct rtls_buf *b);
void rtls__on_fwd_writable(struct rtls_conn *c, int res); /* send.c */
/* While no receive is armed (reading paused, a forward waiting for its
 * destination), a poll that only errors wake: the peer's reset ends the
 * connection now, not at its idle deadline (conn.c). */
void rtls__err_watch_sync(struct rtls_conn *c);
void rtls__on_err_watch(struct rtls_conn *c, int res);
void rtls__pipes_free(struct rtls__reactor *r);
/* Delivery of plaintext to the handler; transports call these. */
void rtls__deliver(struct rtls_conn *c, struct rtls_buf *b);
void rtls__deliver_eof(struct rtls_conn *c);
int rtls__handler_open(struct rtls_conn *c);

/* stats.c: a connection ends (rtls__conn_kill), counted by reason; and
 * the calling reactor thread's block, for code that has no connection at
 * hand (OpenSSL's message callback): NULL on other threads. */
void rtls__stats_closed(struct rtls_conn *c, int err);
void rtls__stats_bind(struct rtls__stats *s);
struct rtls__stats *rtls__stats_mine(void);

/* proxyphase.c: puts an accepted connection into the PROXY protocol
 * phase (a transport of its own) before its handler or TLS. 0 or -ENOMEM. */
int rtls__pp_begin(struct rtls_conn *c);

/* wbuf.c */
int rtls__wbuf_append(struct rtls__wbuf *w, const void *p, size_t n);
char *rtls__wbuf_reserve(struct rtls__wbuf *w, size_t n);
int rtls__wbuf_commit(struct rtls__wbuf *w, size_t n);
int rtls__wbuf_add_file(struct rtls__wbuf *w, int fd, off_t off, size_t len);
/* A forward's chunk: len bytes in the pipe fd (owned), from the source
 * connection (slot, gen), told when they have gone. */
int rtls__wbuf_add_pipe(struct rtls__wbuf *w, int fd, size_t len, uint32_t slot, uint32_t gen);
/* Appends one control record (kTLS TX): a segment of its own. */
int rtls__wbuf_add_record(struct rtls__wbuf *w, uint8_t type, const void *p, size_t n);
void rtls__wbuf_reset(struct rtls__wbuf *w);
void rtls__wbuf_free(struct rtls__wbuf *w);
/* The calling thread's wbufs take and return small blocks through `c`
 * (NULL: plain malloc/free). A reactor binds its own cache at start;
 * rtls__small_cache_free empties one, from any thread. */
void rtls__small_cache_bind(struct rtls__small_cache *c);
void rtls__small_cache_free(struct rtls__small_cache *c);
/* The same for bigger blocks. rtls__big_cache_trim frees the blocks that
 * stayed in `c` since the last trim; rtls__big_cache_free all of them. */
void rtls__big_cache_bind(struct rtls__big_cache *c);
void rtls__big_cache_trim(struct rtls__big_cache *c);
void rtls__big_cache_free(struct rtls__big_cache *c);
size_t rtls__wbuf_bytes(const struct rtls__wbuf *w);
/* Drops the first `segs` whole segments, plus `mem` bytes and `file`
 * file bytes of the next one (what a transport consumed). */
void rtls__wbuf_consume(struct rtls__wbuf *w, unsigned segs, size_t mem, size_t file);

#endif
