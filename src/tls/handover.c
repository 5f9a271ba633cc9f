/* The hand-off to kernel TLS, and records the kernel delivers.
 *
 * Sequence numbers must be exact or the peer sees bad_record_mac:
 *  - TX: we parse our own output stream (every byte OpenSSL writes passes
 *    the sink BIO) and count the records that start after the application
 *    epoch began. TLS 1.3: the epoch starts when OpenSSL derives
 *    SERVER_TRAFFIC_SECRET_0, right after our Finished is written; what
 *    follows is NewSessionTickets. TLS 1.2: it starts after our
 *    ChangeCipherSpec; our Finished is its first record.
 *  - RX: the handshake is read record by record (RTLS__RX_EXACT), so nothing
 *    after the client's Finished has left the socket: the kernel starts at 0
 *    (1.3) or 1 (1.2: the client's Finished was record 0).
 * Validate, then commit: both directions' keys are derived before the
 * first setsockopt; once TLS_TX succeeds nothing else may fail for TX, so
 * OpenSSL never encrypts for this connection again. */
#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "ktls.h"
#include "../core/util.h"

/* Counts the records of our output stream that start at or after the mark. */
void rtls__tls_sink_account(struct tconn *t, const unsigned char *p, size_t n)
{
	rtls__rec_tx_feed(&t->out, p, n, t->ssl && SSL_version(t->ssl) == TLS1_2_VERSION);
}

/* RTLS__RX_EXACT: follows record boundaries of the input and sets the next
 * read to end exactly at the current header or body. */
void rtls__tls_in_account(struct rtls_conn *c, struct tconn *t, const unsigned char *p, size_t n)
{
	bool hdr_done;
	size_t take;

	for (; n; p += take, n -= take) {
		take = rtls__rec_step(&t->in, p, n, &hdr_done);
		if (hdr_done && t->rx_deferred)
			t->rx_records++; /* under the server's traffic key */
	}
	/* A length OpenSSL will reject still needs a bounded read. */
	c->rx_limit = rtls__rec_want(&t->in);
}

/* SSL_CTX info callback: remember the last alert we sent, so that under
 * kernel TX the same alert can be sent through the kernel. Under our
 * record layer, OpenSSL's write is dropped (sink_write), so the alert is
 * sealed here as it is written, warning or fatal: a TLS 1.2 peer's
 * renegotiation gets its no_renegotiation at once, as from OpenSSL. */
void rtls__tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct tconn *t = SSL_get_app_data(ssl);

	/* Both bits: SSL_CB_READ_ALERT shares SSL_CB_ALERT with it (a read
	 * close_notify was taken for ours, and sealed back at the peer). */
	if (!t || (where & SSL_CB_WRITE_ALERT) != SSL_CB_WRITE_ALERT)
		return;
	t->last_alert = (uint16_t)ret;
	if (t->tx == RTLS__TLS_OWN) {
		uint8_t a[2] = { (uint8_t)(ret >> 8), (uint8_t)ret };

		(void)rtls__tls_own_control(t->conn, t, &t->stage, RTLS_CT_ALERT, a, 2);
	}
}

static int unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;

	for (; s[0] && s[1] && n < max; s += 2) {
		int hi = rtls__hexval((unsigned char)s[0]), lo = rtls__hexval((unsigned char)s[1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[n++] = (unsigned char)(hi << 4 | lo);
	}
	return (int)n;
}

/* OpenSSL's key-log callback: the documented way to learn the TLS 1.3
 * traffic secrets. Only the two application secrets are kept, only until
 * the hand-off; OpenSSL wipes `line` itself. The server's secret is ours
 * on the server side, the peer's on the client side. */
void rtls__tls_keylog_cb(const SSL *ssl, const char *line)
{
	struct tconn *t = SSL_get_app_data(ssl);
	bool server_secret;
	const char *sp;
	unsigned char *dst;
	bool *have;
	int n;

	if (!t)
		return;
	if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		server_secret = true;
	else if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		server_secret = false;
	else
		return;
	if (server_secret == (t->role == RTLS__TLS_SERVER)) {
		dst = t->tx_secret;
		have = &t->have_tx_secret;
		/* Server: our Finished has been written, later records use
		 * this key. A client learns both secrets on reading the
		 * server's Finished, before writing its own: its mark is
		 * set when the handshake returns (on_established). */
		if (t->role == RTLS__TLS_SERVER)
			rtls__rec_tx_mark(&t->out);
	} else {
		dst = t->rx_secret;
		have = &t->have_rx_secret;
	}
	sp = strchr(line + 24, ' ');
	if (!sp)
		return;
	n = unhex(sp + 1, dst, 48);
	*have = n == 32 || n == 48;
}

/* Decides, once the handshake is done, which directions to try: those
 * go to RTLS__TLS_WANT_KERNEL. */
void rtls__tls_decide(struct rtls_conn *c, struct tconn *t)
{
	struct rtls_tls_ctx *x = t->ctx;
	struct rtls__ktls_suite s;
	bool tx, rx;

	if (!x->ktls_usable || rtls__ktls_suite(t->ssl, &s) < 0)
		return;
	tx = x->ktls == RTLS_KTLS_AUTO || x->ktls == RTLS_KTLS_ON || x->ktls == RTLS_KTLS_TX;
	/* RX only if the handshake was read record-exactly; TLS 1.3 RX only
	 * where the kernel can take the key a peer KeyUpdate brings, unless
	 * forced (then a KeyUpdate ends the connection). */
	rx = c->rx_mode == RTLS__RX_EXACT && rtls__rec_at_boundary(&t->in) &&
	     BIO_ctrl_pending(t->rbio) == 0 &&
	     (s.version != TLS1_3_VERSION || x->ktls_rekey || x->ktls_rx_no_rekey) &&
	     (x->ktls == RTLS_KTLS_AUTO || x->ktls == RTLS_KTLS_ON || x->ktls == RTLS_KTLS_RX);
	t->suite = s;
	if (tx)
		rtls__tls_set_tx(t, RTLS__TLS_WANT_KERNEL);
	if (rx)
		rtls__tls_set_rx(t, RTLS__TLS_WANT_KERNEL);
	/* A TLS 1.3 server sends its NewSessionTickets after our Finished,
	 * under its traffic key: the kernel would deliver them as records
	 * that only OpenSSL can turn into a session. RX stays here until
	 * the first such record has been read (rtls__tls_switch_rx_late). */
	t->rx_deferred = rx && t->role == RTLS__TLS_CLIENT && s.version == TLS1_3_VERSION &&
			 t->ctx->sessions;
}

/* A direction that was wanted stays in userspace (no key, no ULP). */
static void stay_user(struct rtls_conn *c, struct tconn *t, bool tx, bool rx,
		      enum rtls_stats_ktls_fallback why)
{
	rtls__tls_count_fallback(c, t, tx, rx, why);
	if (tx && t->tx == RTLS__TLS_WANT_KERNEL)
		rtls__tls_set_tx(t, RTLS__TLS_USERSPACE);
	if (rx && t->rx == RTLS__TLS_WANT_KERNEL)
		rtls__tls_set_rx(t, RTLS__TLS_USERSPACE);
}

/* Derives both directions' crypto_info before anything is committed. */
static void derive(struct rtls_conn *c, struct tconn *t, struct rtls__ktls_info *tx,
		   struct rtls__ktls_info *rx)
{
	struct rtls__ktls_suite s;

	if (rtls__ktls_suite(t->ssl, &s) < 0) {
		stay_user(c, t, true, true, RTLS_STATS_KTLS_CIPHER);
		return;
	}
	if (s.version == TLS1_2_VERSION) {
		/* The peer's Finished was its record 0 under these keys. */
		if (t->out.mark == UINT64_MAX ||
		    rtls__ktls_info_tls12(t->ssl, &s, t->role == RTLS__TLS_SERVER, t->out.records,
					  1, tx, rx) < 0)
			stay_user(c, t, true, true, RTLS_STATS_KTLS_KEY);
		return;
	}
	if (t->tx == RTLS__TLS_WANT_KERNEL &&
	    (!t->have_tx_secret || t->out.mark == UINT64_MAX ||
	     rtls__ktls_info_tls13(&s, t->tx_secret, t->out.records, tx) < 0))
		stay_user(c, t, true, false, RTLS_STATS_KTLS_KEY);
	if (t->rx == RTLS__TLS_WANT_KERNEL && !t->rx_deferred &&
	    (!t->have_rx_secret || rtls__ktls_info_tls13(&s, t->rx_secret, 0, rx) < 0))
		stay_user(c, t, false, true, RTLS_STATS_KTLS_KEY);
}

static void fallback(struct rtls_conn *c, const char *dir, int err)
{
	struct rtls_tls_ctx *x = ((struct tconn *)c->tp_state)->ctx;
	char peer[80];

	rtls__tls_peer(c, peer, sizeof(peer));
	rtls_log(x->ktls == RTLS_KTLS_ON ? RTLS_LOG_WARN : RTLS_LOG_DEBUG,
		 "tls %s: kernel %s not available (%s): staying in userspace", peer, dir, strerror(-err));
}

/* RX to the kernel, or (refused) stays in userspace. */
static void install_rx(struct rtls_conn *c, struct tconn *t, const struct rtls__ktls_info *rx)
{
	int ret = rtls__ktls_set(c->fd, TLS_RX, rx);

	if (ret == 0) {
		rtls__tls_set_rx(t, RTLS__TLS_KERNEL);
		rtls__rx_kernel_blocking(c);
		RTLS__COUNT_AT(c->r, ktls_offloaded, RTLS_STATS_RX);
	} else {
		fallback(c, "RX", ret);
		stay_user(c, t, false, true, RTLS_STATS_KTLS_REFUSED);
	}
}

/* Both directions in the kernel: no key material may stay in this
 * process, and OpenSSL's SSL object holds it. OpenSSL takes an SSL freed
 * without a close_notify sent for a session cut short and makes it
 * unresumable (ssl_clear_bad_session): this one is healthy, and a client
 * keeps its session to resume. */
static void free_ssl(struct tconn *t)
{
	SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN);
	SSL_free(t->ssl);
	t->ssl = NULL;
	t->rbio = NULL;
}

/* Programs the socket. Runs when the handshake's last flight has been
 * sent, with no receive armed, so both stream positions are exact. */
void rtls__tls_switch(struct rtls_conn *c, struct tconn *t)
{
	struct rtls_tls_ctx *x = t->ctx;
	struct rtls__ktls_info tx, rx;
	int ret = 0;

	rtls__tls_set_phase(t, RTLS__TLS_ESTABLISHED);
	memset(&tx, 0, sizeof(tx));
	memset(&rx, 0, sizeof(rx));
	derive(c, t, &tx, &rx);
	if ((t->tx == RTLS__TLS_WANT_KERNEL || t->rx == RTLS__TLS_WANT_KERNEL) &&
	    (ret = rtls__ktls_ulp(c->fd)) < 0) {
		fallback(c, "TLS", ret);
		stay_user(c, t, true, true, RTLS_STATS_KTLS_ULP);
	}
	if (t->tx == RTLS__TLS_WANT_KERNEL) {
		ret = rtls__ktls_set(c->fd, TLS_TX, &tx);
		if (ret == 0) {
			/* Committed: from here on only the kernel encrypts. */
			rtls__tls_set_tx(t, RTLS__TLS_KERNEL);
			RTLS__COUNT_AT(c->r, ktls_offloaded, RTLS_STATS_TX);
			c->tp = &rtls__tls_ktx;
			if (x->ktls_zerocopy) {
				int one = 1;

				if (setsockopt(c->fd, SOL_TLS, TLS_TX_ZEROCOPY_RO, &one, sizeof(one)) < 0)
					fallback(c, "TX zero-copy", -errno);
			}
		} else {
			fallback(c, "TX", ret);
			stay_user(c, t, true, false, RTLS_STATS_KTLS_REFUSED);
		}
	}
	if (t->rx == RTLS__TLS_WANT_KERNEL && !t->rx_deferred)
		install_rx(c, t, &rx);
	OPENSSL_cleanse(&tx, sizeof(tx));
	OPENSSL_cleanse(&rx, sizeof(rx));
	rtls__tls_own_tx(c, t); /* TX not in the kernel: our records */
	rtls__ku_prepare(c, t, t->have_tx_secret ? t->tx_secret : NULL,
			 t->have_rx_secret ? t->rx_secret : NULL);
	OPENSSL_cleanse(t->tx_secret, sizeof(t->tx_secret));
	t->have_tx_secret = false;
	if (t->rx != RTLS__TLS_WANT_KERNEL) {
		OPENSSL_cleanse(t->rx_secret, sizeof(t->rx_secret));
		t->have_rx_secret = false;
	}
	if (rtls__tls_tx_kernel(t) && rtls__tls_rx_kernel(t))
		free_ssl(t);
	/* A deferred RX keeps reading record by record, so that nothing
	 * after the record that lets it switch leaves the socket. */
	c->rx_mode = rtls__tls_rx_kernel(t)           ? RTLS__RX_MSG
		     : t->rx == RTLS__TLS_WANT_KERNEL ? RTLS__RX_EXACT
						      : RTLS__RX_MULTISHOT;
	c->rx_kernel_later = t->rx == RTLS__TLS_WANT_KERNEL;
	rtls__tls_log_open(c, t);
	/* A client's bytes, and its end, from during the handshake: a
	 * close_notify wanted then is the kernel's to send now. */
	if (t->close == RTLS__TLS_CLOSE_WANTED && rtls__tls_tx_kernel(t))
		rtls__tls_ktx_shutdown(c);
	/* A client closed by its handler meanwhile ends without on_open. */
	if (c->state != RTLS__CONN_OPEN) {
		rtls__kick(c);
		return;
	}
	if (rtls__handler_open(c) < 0 || c->state != RTLS__CONN_OPEN)
		return;
	if (rtls_conn_pending(c) || c->wr_shut)
		rtls__kick(c);
	if (!rtls__tls_rx_kernel(t))
		rtls__tls_read_records(c, t, NULL); /* anything OpenSSL already holds */
	if (c->state == RTLS__CONN_OPEN)
		rtls__conn_recv_arm(c);
}

/* Client, TLS 1.3: RX to the kernel once a record under the server's
 * traffic key has been read here and nothing is left inside OpenSSL or
 * behind it (called after each userspace read while RX is deferred). The
 * kernel's sequence number is the count of those records. If the server
 * updated its key meanwhile, the secret kept is stale: RX stays here. */
void rtls__tls_switch_rx_late(struct rtls_conn *c, struct tconn *t)
{
	struct rtls__ktls_info rx;

	if (t->rx != RTLS__TLS_WANT_KERNEL || !t->rx_records || c->state != RTLS__CONN_OPEN ||
	    rtls__tls_failed(t) || !t->ssl)
		return;
	/* At a record boundary, and at a message boundary too: a ticket
	 * fragmented over records is inside OpenSSL (SSL_in_init) until its
	 * last fragment has been read. */
	if (!rtls__rec_at_boundary(&t->in) || BIO_ctrl_pending(t->rbio) ||
	    SSL_has_pending(t->ssl) || SSL_in_init(t->ssl))
		return; /* the next read ends at a boundary */
	if (!t->have_rx_secret || t->peer_updated ||
	    rtls__ktls_info_tls13(&t->suite, t->rx_secret, t->rx_records, &rx) < 0) {
		stay_user(c, t, false, true, RTLS_STATS_KTLS_KEY);
	} else {
		install_rx(c, t, &rx);
	}
	OPENSSL_cleanse(&rx, sizeof(rx));
	t->rx_deferred = false;
	rtls__ku_prepare_rx(c, t, rtls__tls_rx_kernel(t) ? t->rx_secret : NULL);
	OPENSSL_cleanse(t->rx_secret, sizeof(t->rx_secret));
	t->have_rx_secret = false;
	if (rtls__tls_tx_kernel(t) && rtls__tls_rx_kernel(t))
		free_ssl(t);
	c->rx_mode = rtls__tls_rx_kernel(t) ? RTLS__RX_MSG : RTLS__RX_MULTISHOT;
	rtls__tls_log_open(c, t);
	rtls__fwd_later(c);
}

/* Our record layer takes TX over from OpenSSL's (seal.c): where the
 * kernel will not make our records, at the handshake's end (server, or
 * client) or after a refused hand-off. The key and first sequence number
 * are those the kernel would have had: OpenSSL's records after the epoch
 * began (tickets; a 1.2 Finished) are counted by the output parser, and
 * all of them are in the output already. A suite the kernel does not
 * know (or a key that cannot be derived) stays with OpenSSL. */
void rtls__tls_own_tx(struct rtls_conn *c, struct tconn *t)
{
	struct rtls__ktls_info tx, rx;
	struct rtls__ktls_suite s;
	int ret = -ENOKEY;

	if (t->tx != RTLS__TLS_USERSPACE || !t->ctx->own_records || !t->ssl ||
	    rtls__tls_failed(t) || t->out.mark == UINT64_MAX || rtls__ktls_suite(t->ssl, &s) < 0)
		return;
	memset(&tx, 0, sizeof(tx));
	memset(&rx, 0, sizeof(rx));
	if (s.version == TLS1_2_VERSION)
		ret = rtls__ktls_info_tls12(t->ssl, &s, t->role == RTLS__TLS_SERVER, t->out.records,
					    1, &tx, &rx);
	else if (t->have_tx_secret)
		ret = rtls__ktls_info_tls13(&s, t->tx_secret, t->out.records, &tx);
	if (ret == 0)
		ret = rtls__seal_init(&t->seal, &tx);
	/* TLS 1.3: the next secret, for a KeyUpdate (keyupdate.c). */
	t->suite = s;
	if (ret == 0 && s.version == TLS1_3_VERSION)
		ret = rtls__ku_prepare_own(t, t->tx_secret);
	OPENSSL_cleanse(&tx, sizeof(tx));
	OPENSSL_cleanse(&rx, sizeof(rx));
	if (ret < 0) {
		rtls__seal_free(&t->seal); /* OpenSSL goes on making them */
		return;
	}
	rtls__tls_set_tx(t, RTLS__TLS_OWN);
	RTLS__COUNT(c->r, tls_own_tx);
	/* Nothing here needs it any more: OpenSSL keeps its own copy. */
	OPENSSL_cleanse(t->tx_secret, sizeof(t->tx_secret));
	t->have_tx_secret = false;
}

/* One control record (alert, KeyUpdate) sealed by our record layer at
 * the end of w: the records before it in w, and those already sent, were
 * sealed before it, so it takes its place in the sequence. */
int rtls__tls_own_control(struct rtls_conn *c, struct tconn *t, struct rtls__wbuf *w, uint8_t type,
			  const void *p, size_t n)
{
	char *dst = rtls__wbuf_reserve(w, n + t->seal.overhead);
	int len;

	(void)c;
	if (!dst)
		return -ENOMEM;
	len = rtls__seal_record(&t->seal, type, p, n, (unsigned char *)dst);
	if (len < 0)
		return len;
	return rtls__wbuf_commit(w, (size_t)len);
}

/* Sends one alert, fatal level, where OpenSSL's would not reach the
 * wire: through the kernel (TX offloaded), or sealed by our record layer
 * ahead of the next round's data. */
void rtls__tls_alert(struct rtls_conn *c, struct tconn *t, uint8_t desc)
{
	uint8_t a[2] = { 2, desc };

	if (rtls__tls_tx_kernel(t))
		rtls__wbuf_add_record(&c->w[c->wi], RTLS_CT_ALERT, a, 2);
	else if (t->tx == RTLS__TLS_OWN)
		(void)rtls__tls_own_control(c, t, &t->stage, RTLS_CT_ALERT, a, 2);
}

void rtls__tls_ktx_shutdown(struct rtls_conn *c)
{
	static const uint8_t close_notify[2] = { 1, 0 };
	struct tconn *t = c->tp_state;

	if (rtls__tls_established(t) && !rtls__tls_failed(t)) {
		rtls__wbuf_add_record(&c->w[c->wi], RTLS_CT_ALERT, close_notify, 2);
		rtls__tls_set_close(t, RTLS__TLS_CLOSE_QUEUED);
	}
}

/* Ends the connection after a protocol error seen on kernel RX. */
static void rx_fail(struct rtls_conn *c, struct tconn *t, uint8_t alert, const char *what)
{
	char peer[80];

	rtls__tls_peer(c, peer, sizeof(peer));
	rtls_log(RTLS_LOG_INFO, "tls %s: %s", peer, what);
	rtls__tls_set_phase(t, RTLS__TLS_FAILED);
	rtls__tls_alert(c, t, alert);
	if (c->state == RTLS__CONN_OPEN)
		rtls_conn_close(c);
	else
		rtls__kick(c);
}

/* The peer's alert other than close_notify: the stream ends. */
static void on_alert(struct rtls_conn *c, struct tconn *t, const struct rtls__rec_verdict *v)
{
	char peer[80];

	rtls__tls_peer(c, peer, sizeof(peer));
	rtls_log(RTLS_LOG_INFO, "tls %s: received %s alert: %s", peer, v->level == 1 ? "warning" : "fatal",
		 SSL_alert_desc_string_long(v->desc));
	rtls__tls_set_phase(t, RTLS__TLS_FAILED);
	rtls__conn_kill(c, -ECONNRESET);
}

/* Records from kernel RX (RTLS__RX_MSG). Data goes to the handler; an alert
 * ends the stream; a post-handshake message the kernel cannot act on is
 * refused (record.c decides which alert). */
void rtls__tls_on_record(struct rtls_conn *c, struct rtls_buf *raw, int type)
{
	struct tconn *t = c->tp_state;
	struct rtls__rec_verdict v;

	if (type == RTLS_CT_HANDSHAKE && t->role == RTLS__TLS_CLIENT && t->is13 &&
	    rtls__rec_skip_tickets(&t->tickets, (const unsigned char *)raw->data, raw->len)) {
		/* More tickets after the one read in userspace: the session
		 * kept already resumes; these are dropped. */
		rtls_buf_release(c, raw);
		return;
	}
	rtls__rec_classify(type, (const unsigned char *)raw->data, raw->len, t->is13, &v);
	if (v.action == RTLS_REC_DATA) {
		rtls__deliver(c, raw);
		return;
	}
	rtls_buf_release(c, raw);
	switch (v.action) {
	case RTLS_REC_EOF: /* close_notify (RFC 8446 §6.1) */
		t->close_notify_in = true;
		rtls__deliver_eof(c);
		break;
	case RTLS_REC_PEER_ALERT:
		on_alert(c, t, &v);
		break;
	case RTLS_REC_KEY_UPDATE:
		rtls__ku_kernel_rx(c, t, v.update_requested);
		break;
	default:
		rx_fail(c, t, v.alert, v.why);
		break;
	}
}

/* Kernel RX errors (RTLS__RX_MSG): map to the alert RFC 8446 §6.2 asks for. */
int rtls__tls_on_recv_error(struct rtls_conn *c, int err)
{
	struct tconn *t = c->tp_state;

	if (!t || !rtls__tls_rx_kernel(t))
		return 0;
	switch (err) {
	case -EBADMSG:
		rx_fail(c, t, 20, "record failed authentication (bad_record_mac)");
		return 1;
	case -EMSGSIZE:
		rx_fail(c, t, 22, "record too long (record_overflow)");
		return 1;
	case -EKEYEXPIRED:
		/* A KeyUpdate passed without us installing the next key. */
		rx_fail(c, t, 10, "kernel RX key expired after a KeyUpdate");
		return 1;
	default:
		return 0;
	}
}
