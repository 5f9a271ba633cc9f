/* TLS on a connection: the handshake over the ring, and the userspace
 * record path. A transport (struct rtls__transport) between core and the
 * handler:
 *
 *   receive: raw bytes → source BIO (reads the provided buffer in place)
 *            → SSL_do_handshake / SSL_read → plaintext delivered to the
 *            handler in the same provided buffer when the record started
 *            in it (OpenSSL has then read more of it than the plaintext
 *            fills), else in heap chunks; bytes not yet read are spilled
 *            before the buffer goes to the handler or back to the ring
 *   send:    handler plaintext → SSL_write → records appended straight to
 *            the free output side by a sink BIO (no second copy); bytes
 *            OpenSSL makes on its own (handshake flights, tickets, alerts,
 *            close_notify) wait in `stage` and go out first.
 *
 * State (state.h): HANDSHAKE → [SWITCH_PENDING →] ESTABLISHED; a fatal
 * error (HANDSHAKE_FAILED, FAILED) sends OpenSSL's alert and closes; our
 * close_notify goes after the pending data. DESIGN.md has more. */
#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* File bytes encrypted per send round: bounds memory for a large file. */
#define SEAL_FILE_BUDGET ((size_t)256 * 1024)
#define READ_CHUNK 16384u


/* --- the sink and source BIOs ----------------------------------------------- */

static BIO_METHOD *sink_method, *source_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int sink_write(BIO *b, const char *p, int n)
{
	struct tconn *t = BIO_get_data(b);

	if (n <= 0)
		return 0;
	/* Once the kernel or our record layer makes our records, OpenSSL's
	 * write state is stale: anything it still writes (a KeyUpdate, an
	 * alert) must never reach the wire; we send our own. */
	if (!rtls__tls_tx_openssl(t))
		return n;
	rtls__tls_sink_account(t, (const unsigned char *)p, (size_t)n);
	return rtls__wbuf_append(t->sink, p, (size_t)n) < 0 ? -1 : n;
}

static long sink_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* records leave when the connection next sends */
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

/* The source BIO: OpenSSL reads the received bytes where they lie
 * (t->src), after any spilled from an earlier buffer. An empty source
 * means "wait for more", never end of stream: the FIN arrives separately
 * (tls_on_recv_eof). */

static size_t spilled(const struct tconn *t)
{
	return t->spill ? BIO_ctrl_pending(t->spill) : 0;
}

static int source_read(BIO *b, char *out, int n)
{
	struct tconn *t = BIO_get_data(b);
	size_t take;

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	if (spilled(t))
		return BIO_read(t->spill, out, n);
	if (!t->src_len) {
		BIO_set_retry_read(b);
		return -1;
	}
	take = t->src_len < (size_t)n ? t->src_len : (size_t)n;
	memcpy(out, t->src, take);
	t->src += take;
	t->src_len -= take;
	return (int)take;
}

static long source_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tconn *t = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)(t->src_len + spilled(t));
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

/* Bytes OpenSSL has not taken yet stop pointing into the received buffer:
 * called before the buffer goes back to the ring or to the handler. */
static int source_done(struct tconn *t)
{
	size_t n = t->src_len;

	t->src_len = 0;
	if (!n)
		return 0;
	if (!t->spill) {
		t->spill = BIO_new(BIO_s_mem());
		if (!t->spill)
			return -ENOMEM;
		BIO_set_mem_eof_return(t->spill, -1);
	}
	return BIO_write(t->spill, t->src, (int)n) == (int)n ? 0 : -ENOMEM;
}

static void bio_methods_init(void)
{
	sink_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringtls-sink");
	if (sink_method) {
		BIO_meth_set_write(sink_method, sink_write);
		BIO_meth_set_ctrl(sink_method, sink_ctrl);
		BIO_meth_set_create(sink_method, bio_create);
	}
	source_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringtls-source");
	if (source_method) {
		BIO_meth_set_read(source_method, source_read);
		BIO_meth_set_ctrl(source_method, source_ctrl);
		BIO_meth_set_create(source_method, bio_create);
	}
}

/* --- helpers --------------------------------------------------------------- */

static struct tconn *tc(const struct rtls_conn *c) { return c->tp_state; }


/* A plain HTTP request on the TLS port gets a plain HTTP answer, as nginx
 * does, instead of an alert the browser cannot show. */
static void plain_http_answer(struct tconn *t)
{
	static const char msg[] =
		"HTTP/1.1 400 Bad Request\r\nServer: ringtls\r\nContent-Type: text/plain\r\n"
		"Content-Length: 54\r\nConnection: close\r\n\r\n"
		"400 Bad Request: plain HTTP was sent to an HTTPS port\n";

	rtls__wbuf_append(&t->stage, msg, sizeof(msg) - 1);
}

/* The peer for log lines: "ADDR", or "upstream ADDR" on the client side. */
void rtls__tls_peer(const struct rtls_conn *c, char *out, size_t n)
{
	const struct tconn *t = c->tp_state;
	int k = 0;

	if (t && t->role == RTLS__TLS_CLIENT)
		k = snprintf(out, n, "upstream ");
	if (k >= 0 && (size_t)k < n)
		rtls_conn_peer(c, out + k, n - (size_t)k);
}

/* Logs a fatal TLS error once and closes; OpenSSL has already queued its
 * alert in `stage`, which the close sends. */
void rtls__tls_fail(struct rtls_conn *c, struct tconn *t, const char *when)
{
	struct rtls_tls_ctx *x = t->ctx;
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	char peer[80], verify[128];

	rtls__tls_peer(c, peer, sizeof(peer));
	rtls__tls_count_fail(c, t, e);
	if (e && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST && t->role == RTLS__TLS_SERVER)
		plain_http_answer(t);
	rtls__tls_verify_why(t, verify, sizeof(verify));
	if (t->role == RTLS__TLS_CLIENT && !rtls__tls_established(t))
		c->fail_err = verify[0] ? -EKEYREJECTED : -EPROTO; /* for on_close */
	/* A client's failures are the operator's business at any phase: a
	 * TLS 1.3 server refuses our certificate only after our handshake
	 * is done, on our first read. */
	if (t->role == RTLS__TLS_CLIENT)
		rtls_log(x->fail_level, "tls %s (%s): %s failed: %s%s", peer, t->sni, when,
			 reason ? reason : "connection error", verify);
	else
		rtls_log(rtls__tls_established(t) ? RTLS_LOG_INFO : x->fail_level,
			 "tls %s: %s failed: %s", peer, when, reason ? reason : "connection error");
	ERR_clear_error();
	rtls__tls_set_phase(t, rtls__tls_established(t) ? RTLS__TLS_FAILED
						       : RTLS__TLS_HANDSHAKE_FAILED);
	/* OpenSSL's alert did not reach the wire: the kernel sends it (our
	 * record layer sealed it as OpenSSL wrote it, rtls__tls_info_cb). */
	if (rtls__tls_tx_kernel(t) && (t->last_alert & 0xff))
		rtls__tls_alert(c, t, (uint8_t)(t->last_alert & 0xff));
	rtls_conn_close(c);
}

static void on_established(struct rtls_conn *c, struct tconn *t)
{
	const unsigned char *alpn;
	const char *sni;
	unsigned alen;
	X509 *peer;

	t->version = SSL_get_version(t->ssl);     /* static strings: they */
	t->cipher = SSL_get_cipher_name(t->ssl);  /* outlive the SSL object */
	t->resumed = SSL_session_reused(t->ssl);
	t->is13 = SSL_version(t->ssl) == TLS1_3_VERSION;
	(void)rtls__ktls_suite(t->ssl, &t->suite); /* for the AEAD limits */
	SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
	if (alen && alen < sizeof(t->alpn)) {
		memcpy(t->alpn, alpn, alen);
		t->alpn[alen] = '\0';
	}
	sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
	if (sni)
		snprintf(t->sni, sizeof(t->sni), "%s", sni);
	peer = SSL_get1_peer_certificate(t->ssl);
	if (peer) {
		if (SSL_get_verify_result(t->ssl) == X509_V_OK)
			t->subject = X509_NAME_oneline(X509_get_subject_name(peer), NULL, 0);
		X509_free(peer);
	}
	/* A client's application epoch starts after its Finished, which
	 * the handshake has just written (TLS 1.2: at its ChangeCipherSpec,
	 * found by the output parser). */
	if (t->role == RTLS__TLS_CLIENT && t->is13)
		rtls__rec_tx_mark(&t->out);
	rtls__timer_arm(c, RTLS_TIMER_NONE);
	rtls__tls_decide(c, t);
	rtls__tls_count_done(c, t);
	if (t->tx == RTLS__TLS_WANT_KERNEL || t->rx == RTLS__TLS_WANT_KERNEL) {
		rtls__tls_set_phase(t, RTLS__TLS_SWITCH_PENDING);
		/* Hand-off once the last flight is out; no read until then. */
		c->rx_mode = RTLS__RX_OFF;
		return;
	}
	rtls__tls_set_phase(t, RTLS__TLS_ESTABLISHED); /* userspace both ways */
	rtls__tls_own_tx(c, t);
	/* No kernel direction: no secret is needed from here on. */
	OPENSSL_cleanse(t->tx_secret, sizeof(t->tx_secret));
	OPENSSL_cleanse(t->rx_secret, sizeof(t->rx_secret));
	t->have_tx_secret = t->have_rx_secret = false;
	if (c->rx_mode == RTLS__RX_EXACT)
		c->rx_mode = RTLS__RX_MULTISHOT;
	rtls__tls_log_open(c, t);
	if (c->state != RTLS__CONN_OPEN) { /* a client closed meanwhile: no on_open */
		rtls__kick(c);
		return;
	}
	if (rtls__handler_open(c) == 0 && c->state == RTLS__CONN_OPEN &&
	    (rtls_conn_pending(c) || c->wr_shut))
		rtls__kick(c); /* a client's bytes (and end) from during the handshake */
}

void rtls__tls_log_open(struct rtls_conn *c, struct tconn *t)
{
	char ps[80];

	if (!rtls_log_enabled(RTLS_LOG_DEBUG))
		return;
	rtls__tls_peer(c, ps, sizeof(ps));
	rtls_log(RTLS_LOG_DEBUG,
		 "tls %s: %s %s alpn=%s sni=%s resumed=%s %s=%s kernel-tx=%s kernel-rx=%s%s", ps,
		 t->version, t->cipher, t->alpn[0] ? t->alpn : "-", t->sni[0] ? t->sni : "-",
		 t->resumed ? "yes" : "no", t->role == RTLS__TLS_CLIENT ? "server" : "client",
		 t->subject ? t->subject : "-", rtls__tls_tx_kernel(t) ? "yes" : "no",
		 rtls__tls_rx_kernel(t) ? "yes" : "no",
		 t->rx == RTLS__TLS_WANT_KERNEL ? " (rx after the first record)" : "");
}

/* Returns 1 when established, 0 when more input is needed, -1 on failure. */
static int handshake(struct rtls_conn *c, struct tconn *t)
{
	int ret = SSL_do_handshake(t->ssl);

	if (ret == 1) {
		on_established(c, t);
		return c->state == RTLS__CONN_OPEN ? 1 : -1;
	}
	switch (SSL_get_error(t->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return 0;
	default:
		rtls__tls_fail(c, t, "handshake");
		return -1;
	}
}

/* Whether the unread input is exactly one whole record. */
static bool one_record(const struct tconn *t)
{
	return t->src_len >= 5 && (size_t)5 + ((size_t)t->src[3] << 8 | t->src[4]) == t->src_len;
}

/* Decrypts everything buffered and hands it to the handler. The first
 * chunk reuses `raw` (its ciphertext is already in the BIO). */
void rtls__tls_read_records(struct rtls_conn *c, struct tconn *t, struct rtls_buf *raw)
{
	size_t ring_cap = c->r->bufs.size;
	struct rtls_buf *hold = NULL;

	/* In place only when the record this read decrypts starts in `raw`:
	 * then it takes more bytes from `raw` than its plaintext fills. A
	 * record begun in an earlier buffer (part of it inside OpenSSL, or
	 * spilled) can decrypt to more than it takes from `raw`, and its
	 * plaintext would overwrite ciphertext not yet read. One partial
	 * record SSL_has_pending() does not report is safe: a bare 5-byte
	 * header, whose whole body is then in `raw` and longer than its
	 * plaintext (AEAD tag, TLS 1.3 type byte). Otherwise `raw` stays
	 * OpenSSL's source (`hold`) while the records are read into chunks
	 * of their own, and goes back at the end: in a bulk stream, where
	 * records straddle buffers, that is most reads, and spilling the
	 * rest of each buffer first copied nearly every byte received. So
	 * does a buffer with more than one record: in place, the rest would
	 * have to be spilled before the buffer goes to the handler. */
	if (raw && (SSL_has_pending(t->ssl) || spilled(t) || !one_record(t))) {
		hold = raw;
		raw = NULL;
	}
	while (c->state == RTLS__CONN_OPEN) {
		struct rtls_buf b;
		char *dst;
		size_t cap = raw ? ring_cap : READ_CHUNK;
		int n, err;

		/* Most reads are one record: once it is out, do not allocate a
		 * chunk only to hear WANT_READ. */
		if (!raw && !SSL_has_pending(t->ssl) && !t->src_len && !spilled(t))
			break;
		dst = raw ? (char *)(uintptr_t)raw->data : malloc(READ_CHUNK);
		if (!dst) {
			rtls_conn_abort(c, -ENOMEM);
			break;
		}
		n = SSL_read(t->ssl, dst, (int)cap);
		if (n > 0) {
			if (raw) {
				/* The handler may give the buffer back at once. */
				if (source_done(t) < 0) {
					rtls_buf_release(c, raw);
					rtls_conn_abort(c, -ENOMEM);
					return;
				}
				b = *raw;
				raw = NULL;
			} else {
				b.priv_kind = RTLS__BUF_HEAP;
				b.priv_id = 0;
				c->nheld++;
			}
			b.data = dst;
			b.len = (size_t)n;
			rtls__deliver(c, &b);
			continue;
		}
		err = SSL_get_error(t->ssl, n);
		if (raw) {
			(void)source_done(t); /* WANT_READ took it all; else moot */
			rtls_buf_release(c, raw);
		} else {
			free(dst);
		}
		raw = NULL;
		if (err == SSL_ERROR_ZERO_RETURN) {
			t->close_notify_in = true;
			rtls__deliver_eof(c);
		} else if (err != SSL_ERROR_WANT_READ) {
			rtls__tls_fail(c, t, "read");
		}
		break;
	}
	if (raw) {
		(void)source_done(t); /* the connection is closing */
		rtls_buf_release(c, raw);
	}
	if (hold) {
		(void)source_done(t); /* a partial record's first bytes, if any */
		rtls_buf_release(c, hold);
	}
}

/* --- transport hooks --------------------------------------------------- */

static void tls_on_recv(struct rtls_conn *c, struct rtls_buf *raw)
{
	struct tconn *t = tc(c);

	if (rtls__tls_failed(t) || !t->ssl) {
		rtls_buf_release(c, raw);
		return;
	}
	t->src = (const unsigned char *)raw->data;
	t->src_len = raw->len;
	if (c->rx_mode == RTLS__RX_EXACT)
		rtls__tls_in_account(c, t, (const unsigned char *)raw->data, raw->len);
	if (!rtls__tls_established(t) && handshake(c, t) <= 0) {
		(void)source_done(t); /* WANT_READ took it all; else moot */
		rtls_buf_release(c, raw);
		if (c->tp)
			rtls__kick(c); /* the next flight, or the alert */
		return;
	}
	if (t->phase == RTLS__TLS_SWITCH_PENDING) {
		/* A first request may follow the Finished in this buffer. */
		int ret = source_done(t);

		rtls_buf_release(c, raw);
		if (ret < 0)
			rtls_conn_abort(c, ret);
		else
			rtls__kick(c); /* the hand-off follows when this has gone */
		return;
	}
	rtls__tls_read_records(c, t, raw);
	if (c->tp)
		rtls__ku_after_read(c, tc(c));
	if (c->tp && tc(c)->rx_deferred)
		rtls__tls_switch_rx_late(c, tc(c));
	/* After a read OpenSSL may have made bytes of its own: the flight
	 * after a client Finished (session tickets), a KeyUpdate reply, an
	 * alert. They go now, even if the handler wrote nothing. */
	if (c->tp && tc(c)->stage.len)
		rtls__kick(c);
}

static void tls_on_record_user(struct rtls_conn *c, struct rtls_buf *raw, int type)
{
	rtls__tls_on_record(c, raw, type);
}

static void tls_on_recv_eof(struct rtls_conn *c)
{
	struct tconn *t = tc(c);
	char peer[80];

	if (!rtls__tls_established(t)) {
		if (!rtls__tls_failed(t)) {
			rtls__tls_peer(c, peer, sizeof(peer));
			rtls_log(RTLS_LOG_DEBUG, "tls %s: peer closed during the handshake", peer);
		}
		rtls__conn_kill(c, rtls__tls_failed(t) ? 0 : -ECONNRESET);
		return;
	}
	if (!t->close_notify_in && c->state == RTLS__CONN_OPEN) {
		/* No close_notify: the stream may have been cut short by an
		 * attacker or a crash; say so, unlike a clean close. An
		 * upstream's is the proxy's to log (rtls_conn_eof()). */
		rtls__tls_peer(c, peer, sizeof(peer));
		rtls_log(t->role == RTLS__TLS_CLIENT ? RTLS_LOG_DEBUG : RTLS_LOG_INFO,
			 "tls %s: connection truncated (TCP FIN without close_notify)", peer);
		c->eof_truncated = true;
	}
	rtls__deliver_eof(c);
}

/* A seal round packs what it seals into full records: a piece of the
 * queue smaller than a record (a response head, an HTTP/2 frame head, the
 * tail of a file range) goes into the same record as what follows it,
 * not into a record of its own. File bytes are read straight into the
 * pack, up to four records per pread (a 1 MiB response was 64 preads of
 * one record each; see bench/README, issue 20); bytes in memory are
 * copied in only up to the next record boundary, and whole records of
 * them are sealed where they are. An HTTP/2 16 KiB file response was
 * four records (HEADERS, DATA head, the payload, the last DATA head and
 * payload), now two. The pack is the reactor's (one seal at a time). */
#define RECORD 16384u

struct pack {
	struct tconn *t;
	struct rtls__wbuf *out;
	size_t len;
	char *buf; /* RTLS__SEAL_PACK bytes: whole records' plaintext */
};

/* n bytes as records at the end of the output: by our record layer
 * straight into it, or by OpenSSL's through the sink BIO. */
static int seal_bytes(struct pack *k, const char *p, size_t n)
{
	struct tconn *t = k->t;

	if (t->tx != RTLS__TLS_OWN)
		return SSL_write(t->ssl, p, (int)n) == (int)n ? 0 : -EIO;
	while (n) {
		size_t m = n < RECORD ? n : RECORD;
		char *dst = rtls__wbuf_reserve(k->out, m + t->seal.overhead);
		int len;

		if (!dst)
			return -ENOMEM;
		len = rtls__seal_record(&t->seal, 23, p, m, (unsigned char *)dst);
		if (len < 0)
			return len;
		/* The sequence number has moved on: a record lost here
		 * would break the stream, so the error ends it. */
		if (rtls__wbuf_commit(k->out, (size_t)len) < 0)
			return -ENOMEM;
		p += m;
		n -= m;
	}
	return 0;
}

static int pack_flush(struct pack *k)
{
	if (k->len && seal_bytes(k, k->buf, k->len) < 0)
		return -EIO;
	k->len = 0;
	return 0;
}

static int pack_mem(struct pack *k, const char *p, size_t n)
{
	while (n) {
		size_t m, part = k->len % RECORD;

		if (!part && n >= RECORD) {
			/* What is packed is whole records: out first, in order. */
			if (pack_flush(k) < 0)
				return -EIO;
			m = n - n % RECORD; /* whole records, in place */
			if (seal_bytes(k, p, m) < 0)
				return -EIO;
		} else {
			m = RECORD - part < n ? RECORD - part : n;
			memcpy(k->buf + k->len, p, m);
			k->len += m;
			if (k->len == RTLS__SEAL_PACK && pack_flush(k) < 0)
				return -EIO;
		}
		p += m;
		n -= m;
	}
	return 0;
}

static int pack_file(struct pack *k, struct rtls__seg *s, size_t *done, size_t *budget)
{
	while (*done < s->flen && *budget) {
		size_t want = s->flen - *done;
		ssize_t n;

		if (want > RTLS__SEAL_PACK - k->len)
			want = RTLS__SEAL_PACK - k->len;
		n = pread(s->fd, k->buf + k->len, want, s->off + (off_t)*done);
		if (n <= 0)
			return n < 0 ? -errno : -EIO; /* the file shrank under us */
		k->len += (size_t)n;
		if (k->len == RTLS__SEAL_PACK && pack_flush(k) < 0)
			return -EIO;
		*done += (size_t)n;
		*budget = *budget > (size_t)n ? *budget - (size_t)n : 0;
	}
	return 0;
}

/* Bytes one seal round makes: the buffered plaintext, a budget's worth of
 * file, and a record's overhead per 16 KiB (TLS 1.2 GCM's 29 is the most). */
static size_t seal_estimate(const struct rtls__wbuf *in, size_t budget)
{
	size_t n = in->len, files = 0;

	for (unsigned i = 0; i < in->nsegs; i++)
		if (in->segs[i].fd >= 0)
			files += in->segs[i].flen;
	n += files < budget ? files : budget;
	return n + (n / RECORD + 2u) * 32u;
}

static int tls_seal(struct rtls_conn *c, struct rtls__wbuf *in, struct rtls__wbuf *out)
{
	struct pack pk, *k = &pk;
	struct tconn *t = tc(c);
	size_t budget = SEAL_FILE_BUDGET, pos = 0, file_done = 0;
	unsigned i = 0;
	int ret = 0;

	/* First: our record layer seals a KeyUpdate into stage, which must
	 * leave before this round's records under the next key. */
	if (in->nsegs && rtls__tls_established(t) && !rtls__tls_failed(t) && t->ssl) {
		rtls__ku_before_seal(c, t);
		if (c->state == RTLS__CONN_DEAD)
			return -EIO; /* our KeyUpdate could not be made */
	}
	if (t->stage.len) {
		if (rtls__wbuf_append(out, t->stage.data, t->stage.len) < 0)
			return -ENOMEM;
		/* Mostly the handshake flight: do not keep its capacity. */
		rtls__wbuf_free(&t->stage);
	}
	if (!rtls__tls_established(t) || rtls__tls_failed(t) || !t->ssl)
		return 0;
	if (t->tx_spent)
		rtls__wbuf_consume(in, in->nsegs, 0, 0); /* the key may seal no more */
	if (!in->nsegs)
		goto done;
	/* One allocation for the round instead of realloc doubling per record
	 * (from the reactor's cache: a ~260 KiB file round, a 32 KiB block
	 * for a 16 KiB response). */
	if (!rtls__wbuf_reserve(out, seal_estimate(in, budget)))
		return -ENOMEM;
	k->buf = rtls__reactor_seal_buf(c->r);
	if (!k->buf)
		return -ENOMEM;
	t->sink = out;
	k->t = t;
	k->out = out;
	k->len = 0;
	for (; i < in->nsegs && ret == 0; i++) {
		struct rtls__seg *s = &in->segs[i];

		if (s->mem_end > pos)
			ret = pack_mem(k, in->data + pos, s->mem_end - pos);
		pos = s->mem_end;
		file_done = 0;
		if (ret == 0 && s->fd >= 0)
			ret = pack_file(k, s, &file_done, &budget);
		if (ret == 0 && s->fd >= 0 && file_done < s->flen)
			break; /* budget spent: the rest of this file next round */
	}
	if (ret == 0)
		ret = pack_flush(k); /* the round's last, partial record */
	t->sink = &t->stage;
	if (ret < 0) {
		ERR_clear_error();
		return ret;
	}
	if (i < in->nsegs)
		rtls__wbuf_consume(in, i, in->segs[i].mem_end - (i ? in->segs[i - 1].mem_end : 0),
				   file_done);
	else
		rtls__wbuf_consume(in, in->nsegs, 0, 0);
done:
	if (t->close == RTLS__TLS_CLOSE_WANTED && !in->nsegs) {
		/* close_notify after the last data (RFC 8446 §6.1). */
		rtls__tls_set_close(t, RTLS__TLS_CLOSE_QUEUED);
		if (t->tx == RTLS__TLS_OWN) {
			static const uint8_t close_notify[2] = { 1, 0 };

			if (rtls__tls_own_control(c, t, out, RTLS_CT_ALERT, close_notify, 2) < 0)
				return -ENOMEM;
			/* As SSL_shutdown would have: OpenSSL keeps the
			 * session of a connection that ended cleanly. */
			SSL_set_shutdown(t->ssl, SSL_get_shutdown(t->ssl) | SSL_SENT_SHUTDOWN);
		} else {
			t->sink = out;
			if (SSL_shutdown(t->ssl) < 0)
				ERR_clear_error();
			t->sink = &t->stage;
		}
	}
	return 0;
}

static void tls_shutdown(struct rtls_conn *c)
{
	struct tconn *t = tc(c);

	/* Once: a close after rtls_conn_shutdown_write() has queued it. */
	if (t->close != RTLS__TLS_CLOSE_NONE)
		return;
	/* Queue close_notify (RFC 8446 §6.1); it leaves with the last data. */
	if (rtls__tls_tx_kernel(t)) {
		rtls__tls_ktx_shutdown(c);
		return;
	}
	/* After whatever the handler queued: tls_seal sends it once the
	 * pending plaintext has been sealed. */
	rtls__tls_set_close(t, RTLS__TLS_CLOSE_WANTED);
}

static void tls_query(const struct rtls_conn *c, struct rtls_conn_info *ci)
{
	struct tconn *t = tc(c);

	if (!rtls__tls_established(t))
		return;
	ci->tls_version = t->version;
	ci->tls_cipher = t->cipher;
	ci->alpn = t->alpn[0] ? t->alpn : NULL;
	ci->sni = t->sni[0] ? t->sni : NULL;
	ci->resumed = t->resumed;
	ci->client_subject = t->subject;
	ci->tx_path = rtls__tls_tx_kernel(t) ? RTLS_PATH_KERNEL : RTLS_PATH_USERSPACE;
	ci->rx_path = rtls__tls_rx_kernel(t) ? RTLS_PATH_KERNEL : RTLS_PATH_USERSPACE;
}

static void tls_destroy(struct rtls_conn *c)
{
	struct tconn *t = tc(c);

	if (!t)
		return;
	rtls__tls_count_unfinished(c, t);
	if (!rtls__tls_established(t) && c->close_err == -ETIMEDOUT) {
		char peer[80];

		rtls__tls_peer(c, peer, sizeof(peer));
		/* An upstream that does not finish is the operator's news. */
		rtls_log(t->role == RTLS__TLS_CLIENT ? t->ctx->fail_level : RTLS_LOG_DEBUG,
			 "tls %s: handshake timed out", peer);
	}
	/* A client's healthy session stays resumable: OpenSSL spoils the
	 * session of an SSL freed without our close_notify. */
	if (t->ssl && t->role == RTLS__TLS_CLIENT && rtls__tls_established(t) &&
	    !rtls__tls_failed(t))
		SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN);
	rtls__seal_free(&t->seal);
	SSL_free(t->ssl); /* frees both BIOs */
	BIO_free(t->spill);
	rtls__wbuf_free(&t->stage);
	OPENSSL_free(t->subject);
	/* The slot's area: wipe it (secrets, if the switch never came). */
	OPENSSL_cleanse(t, sizeof(*t));
	c->tp_state = NULL;
	c->ctl = NULL;
	c->ctl_borrowed = false;
}

/* Outbound: the TCP connection is up; the ClientHello goes out. */
static void tls_on_connected(struct rtls_conn *c)
{
	struct tconn *t = tc(c);

	rtls__timer_arm(c, RTLS_TIMER_HANDSHAKE);
	if (handshake(c, t) == 0)
		rtls__kick(c);
}

static void tls_on_drained(struct rtls_conn *c)
{
	struct tconn *t = tc(c);

	if (t->phase == RTLS__TLS_SWITCH_PENDING)
		rtls__tls_switch(c, t);
}

static void ktx_on_sent(struct rtls_conn *c)
{
	rtls__ku_check_limits(c, tc(c));
}

/* Userspace records both ways (or kernel RX only). */
const struct rtls__transport rtls__tls_user = {
	.on_recv = tls_on_recv,
	.on_recv_eof = tls_on_recv_eof,
	.destroy = tls_destroy,
	.query = tls_query,
	.seal = tls_seal,
	.shutdown = tls_shutdown,
	.on_record = tls_on_record_user,
	.on_drained = tls_on_drained,
	.on_recv_error = rtls__tls_on_recv_error,
	.on_connected = tls_on_connected,
};

/* The kernel makes our records: plaintext goes straight to the socket
 * (no seal), file bodies are spliced into the kernel's records. */
const struct rtls__transport rtls__tls_ktx = {
	.on_recv = tls_on_recv,
	.on_recv_eof = tls_on_recv_eof,
	.destroy = tls_destroy,
	.query = tls_query,
	.seal = NULL,
	.shutdown = tls_shutdown,
	.on_record = tls_on_record_user,
	.on_drained = NULL,
	.on_recv_error = rtls__tls_on_recv_error,
	.on_seg_sent = rtls__ku_seg_sent,
	.on_sent = ktx_on_sent,
};

int rtls__tls_conn_attach(struct rtls_conn *c, struct rtls_tls_ctx *x, enum rtls__tls_role role)
{
	struct tconn *t;
	BIO *wbio;

	pthread_once(&bio_once, bio_methods_init);
	if (!sink_method || !source_method)
		return -ENOMEM;
	t = c->tp_area; /* zeroed: calloc'd, and wiped by the last destroy */
	if (!t)
		return -ENOMEM;
	t->sink = &t->stage;
	t->ctx = x;
	t->conn = c;
	t->role = role; /* phase, tx, rx, close: zero, their first states */
	c->ctl = &t->ctl;
	c->ctl_borrowed = true;
	t->ssl = SSL_new(x->ssl[0]);
	t->rbio = BIO_new(source_method);
	wbio = BIO_new(sink_method);
	if (!t->ssl || !t->rbio || !wbio) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(wbio);
		memset(t, 0, sizeof(*t));
		return -ENOMEM;
	}
	BIO_set_data(t->rbio, t);
	BIO_set_data(wbio, t);
	SSL_set_bio(t->ssl, t->rbio, wbio);
	if (role == RTLS__TLS_CLIENT)
		SSL_set_connect_state(t->ssl);
	else
		SSL_set_accept_state(t->ssl);
	SSL_set_app_data(t->ssl, t);
	t->out.mark = UINT64_MAX;
	c->tp = &rtls__tls_user;
	c->tp_state = t;
	if (x->ktls_usable && (x->ktls == RTLS_KTLS_AUTO || x->ktls == RTLS_KTLS_ON ||
			       x->ktls == RTLS_KTLS_RX)) {
		/* RX may go to the kernel: read the handshake record by record,
		 * so nothing after the client's Finished leaves the socket. */
		c->rx_mode = RTLS__RX_EXACT;
		c->rx_limit = 5;
	}
	/* A client's deadline starts when the TCP connect is done
	 * (tls_on_connected). */
	if (role == RTLS__TLS_SERVER)
		rtls__timer_arm(c, RTLS_TIMER_HANDSHAKE);
	return 0;
}
