/* TLS 1.3 KeyUpdate (RFC 8446 §4.6.3) with kernel TLS, the AEAD usage
 * limits (§5.5), and the KeyUpdate rate limit.
 *
 * The kernel can install a second key on a TLS 1.3 socket from Linux 6.14
 * (on RX it pauses after a KeyUpdate record with EKEYEXPIRED until then).
 * To derive the next key we keep, per direction, only the NEXT traffic
 * secret, secret_{N+1} = HKDF-Expand-Label(secret_N, "traffic upd", "",
 * Hash.length) (§7.2): it cannot decrypt any record sent so far. With
 * --ktls-keyless or on kernels that cannot rekey, nothing is kept and a
 * KeyUpdate that needs a new kernel key ends the connection cleanly. */
#include <errno.h>
#include <openssl/err.h>
#include <string.h>

#include "internal.h"

#define KEY_UPDATE 24
/* AES-GCM: 2^24.5 full records per key (RFC 8446 §5.5), rounded down. */
#define GCM_RECORD_LIMIT 23726566ull

static void queue_tx_update(struct rtls_conn *c, struct tconn *t);

static int next_secret(const struct rtls__ktls_suite *s, unsigned char *secret)
{
	unsigned char out[48];
	int ret = rtls__hkdf_expand_label(s->md, secret, s->hash_len, "traffic upd", out, s->hash_len);

	if (ret == 0)
		memcpy(secret, out, s->hash_len);
	OPENSSL_cleanse(out, sizeof(out));
	return ret;
}

/* Whether the kernel takes a second TLS_TX/TLS_RX (6.14+), and we may
 * keep the secrets that need. */
static bool can_rekey(const struct tconn *t)
{
	return t->ctx->ktls_rekey && !t->ctx->keyless && t->suite.version == TLS1_3_VERSION;
}

/* At the hand-off: keep the next generation of the secrets that went to
 * the kernel, if the kernel can ever use them. */
void rtls__ku_prepare(struct rtls_conn *c, struct tconn *t, const unsigned char *tx_secret,
		      const unsigned char *rx_secret)
{
	/* Usage of the current TX key so far: OpenSSL's records after the
	 * epoch began (tickets), then whatever the kernel sends from here. */
	t->tx_ops_base = c->tx_ops;
	t->tx_bytes_base = c->tx_bytes;
	t->pre_records = t->out.records;
	if (!can_rekey(t))
		return;
	if (tx_secret && rtls__tls_tx_kernel(t)) {
		memcpy(t->next_tx, tx_secret, t->suite.hash_len);
		if (next_secret(&t->suite, t->next_tx) == 0)
			rtls__tls_set_tx(t, RTLS__TLS_KERNEL_NEXT);
	}
	rtls__ku_prepare_rx(c, t, rx_secret);
}

/* Our record layer takes TX: keep the next generation of its secret. It
 * needs no kernel, so it follows every KeyUpdate, --ktls-keyless or not
 * (the key itself is in this process either way, as OpenSSL's was). */
int rtls__ku_prepare_own(struct tconn *t, const unsigned char *tx_secret)
{
	int ret;

	memcpy(t->next_tx, tx_secret, t->suite.hash_len);
	ret = next_secret(&t->suite, t->next_tx);
	if (ret < 0)
		OPENSSL_cleanse(t->next_tx, sizeof(t->next_tx));
	return ret;
}

/* At the start of a seal round, before any data is sealed: a peer's
 * update_requested read by OpenSSL (rtls__tls_msg_cb) is answered ahead
 * of the response to the request that came with it (RFC 8446 §4.6.3:
 * before our next application data; the read's own data went to the
 * handler before rtls__ku_after_read ran), then the AEAD limit. */
void rtls__ku_before_seal(struct rtls_conn *c, struct tconn *t)
{
	if (t->peer_asked_update && t->tx == RTLS__TLS_OWN && !t->flood) {
		t->peer_asked_update = false;
		queue_tx_update(c, t);
		if (c->state == RTLS__CONN_DEAD)
			return;
	}
	rtls__ku_check_limits(c, t);
}

void rtls__ku_prepare_rx(struct rtls_conn *c, struct tconn *t, const unsigned char *rx_secret)
{
	(void)c;
	if (!rx_secret || !rtls__tls_rx_kernel(t) || !can_rekey(t))
		return;
	memcpy(t->next_rx, rx_secret, t->suite.hash_len);
	if (next_secret(&t->suite, t->next_rx) == 0)
		rtls__tls_set_rx(t, RTLS__TLS_KERNEL_NEXT);
}

/* Installs the next key for one direction and steps the secret on. */
static int install_next(struct rtls_conn *c, struct tconn *t, int dir)
{
	unsigned char *secret = dir == TLS_TX ? t->next_tx : t->next_rx;
	enum rtls__tls_path path = dir == TLS_TX ? t->tx : t->rx;
	struct rtls__ktls_info info;
	int ret;

	if (path != RTLS__TLS_KERNEL_NEXT)
		return -ENOKEY;
	ret = rtls__ktls_info_tls13(&t->suite, secret, 0, &info);
	if (ret == 0)
		ret = rtls__ktls_set(c->fd, dir, &info);
	OPENSSL_cleanse(&info, sizeof(info));
	if (ret == 0 && next_secret(&t->suite, secret) < 0) {
		/* The key is in; the one after it cannot be made. */
		if (dir == TLS_TX)
			rtls__tls_set_tx(t, RTLS__TLS_KERNEL);
		else
			rtls__tls_set_rx(t, RTLS__TLS_KERNEL);
	}
	return ret;
}

/* Ends the connection with close_notify (the alert a kernel that cannot
 * rekey can still send correctly) and one log line. */
void rtls__tls_close_clean(struct rtls_conn *c, struct tconn *t, const char *why)
{
	char peer[80];

	rtls__tls_peer(c, peer, sizeof(peer));
	rtls_log(RTLS_LOG_INFO, "tls %s: %s: closing", peer, why);
	(void)t;
	rtls_conn_close(c); /* queues close_notify through the transport */
}

static const uint8_t key_update_msg[5] = { KEY_UPDATE, 0, 0, 1, 0 }; /* update_not_requested */

/* Our record layer: our KeyUpdate sealed under the current key into
 * `stage`, which leaves before anything sealed from now on; then the next
 * key, sequence number 0 (§5.3). Sealing is synchronous, so unlike the
 * kernel's there is no state in between. */
static void own_update(struct rtls_conn *c, struct tconn *t)
{
	struct rtls__ktls_info info;
	int ret =
		rtls__tls_own_control(c, t, &t->stage, 22, key_update_msg, sizeof(key_update_msg));

	if (ret < 0) {
		rtls__conn_kill(c, ret);
		return;
	}
	RTLS__COUNT(c->r, key_updates_sent);
	ret = rtls__ktls_info_tls13(&t->suite, t->next_tx, 0, &info);
	if (ret == 0)
		ret = rtls__seal_init(&t->seal, &info);
	OPENSSL_cleanse(&info, sizeof(info));
	if (ret == 0)
		ret = next_secret(&t->suite, t->next_tx);
	if (ret < 0) {
		char peer[80];

		/* Our KeyUpdate is sealed: nothing may follow it under the
		 * old key, so the connection must end. */
		rtls__tls_peer(c, peer, sizeof(peer));
		rtls_log(RTLS_LOG_WARN, "tls %s: the new TX key failed: %s", peer, strerror(-ret));
		rtls__conn_kill(c, ret);
		return;
	}
}

/* Queues our KeyUpdate under the current key; the new TX key goes in when
 * that record has left (rtls__ku_seg_sent), before anything queued after. */
static void queue_tx_update(struct rtls_conn *c, struct tconn *t)
{
	/* Our record layer: until close_notify is sealed, data may still
	 * follow (a close wanted waits for the queue to be sealed), and the
	 * KeyUpdate goes into `stage`, ahead of it and of close_notify. */
	if (t->tx == RTLS__TLS_OWN && t->close != RTLS__TLS_CLOSE_QUEUED) {
		own_update(c, t);
		rtls__kick(c); /* from tls_seal: that round sends it */
		return;
	}
	/* Our direction has ended (close_notify queued or sent): nothing
	 * more is encrypted under this key, and a KeyUpdate after
	 * close_notify would break the stream's end (RFC 8446 §4.6.3 asks
	 * for the reply before our next application data: there is none). */
	if (t->tx == RTLS__TLS_KERNEL_UPDATING || t->tx == RTLS__TLS_OWN || c->wr_shut ||
	    t->close != RTLS__TLS_CLOSE_NONE)
		return;
	if (!rtls__tls_tx_kernel(t)) {
		/* Userspace TX: OpenSSL sends it and switches keys itself. */
		if (t->ssl && SSL_key_update(t->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1)
			ERR_clear_error();
		t->tx_records_base = t->out.records;
		rtls__kick(c);
		return;
	}
	if (t->tx != RTLS__TLS_KERNEL_NEXT) {
		rtls__tls_close_clean(c, t, "a new TX key is needed but this kernel cannot rekey");
		return;
	}
	/* Ahead of anything not yet sent, even mid-body: the limit counts
	 * records, and one body can be millions of them. */
	if (rtls__send_urgent(c, 22, key_update_msg, sizeof(key_update_msg)) < 0)
		return; /* one is already on its way */
	rtls__tls_set_tx(t, RTLS__TLS_KERNEL_UPDATING);
}

void rtls__ku_seg_sent(struct rtls_conn *c)
{
	struct tconn *t = c->tp_state;
	int ret;

	if (!t || t->tx != RTLS__TLS_KERNEL_UPDATING)
		return;
	RTLS__COUNT(c->r, key_updates_sent);
	rtls__tls_set_tx(t, RTLS__TLS_KERNEL_NEXT);
	/* Sends are serialized per connection: our KeyUpdate has left under
	 * the old key and nothing else has, so the new key starts exactly
	 * at the next record. */
	ret = install_next(c, t, TLS_TX);
	if (ret < 0) {
		/* Our KeyUpdate is out: sending on under the old key would be
		 * a protocol violation, so the connection must end. */
		rtls_log(RTLS_LOG_WARN, "tls: installing the new TX key failed: %s", strerror(-ret));
		rtls__conn_kill(c, ret);
		return;
	}
	t->tx_ops_base = c->tx_ops;
	t->tx_bytes_base = c->tx_bytes;
	t->pre_records = 0;
}

/* Counts a peer KeyUpdate; false once they come faster than allowed. */
static bool rate_ok(const struct rtls_tls_ctx *x, struct tconn *t)
{
	uint64_t now = rtls__now_ms();

	if (now - t->ku_window_ms >= 1000) {
		t->ku_window_ms = now;
		t->ku_count = 0;
	}
	if (++t->ku_count > x->key_update_max_rate)
		t->flood = true;
	return !t->flood;
}

static void flood_close(struct rtls_conn *c, struct tconn *t)
{
	struct rtls_tls_ctx *x = t->ctx;
	char peer[80];

	rtls__tls_peer(c, peer, sizeof(peer));
	rtls_log(RTLS_LOG_INFO, "tls %s: more than %u KeyUpdates in a second: cut off", peer,
		 x->key_update_max_rate);
	rtls__tls_set_phase(t, RTLS__TLS_FAILED);
	rtls__conn_kill(c, -EPROTO);
}

/* A KeyUpdate read by the kernel (RX offloaded), well formed (record.c
 * checked it). The kernel holds further records (EKEYEXPIRED) until the
 * next RX key is in. */
void rtls__ku_kernel_rx(struct rtls_conn *c, struct tconn *t, bool update_requested)
{
	int ret;

	RTLS__COUNT(c->r, key_updates_received);
	if (!rate_ok(t->ctx, t)) {
		flood_close(c, t);
		return;
	}
	ret = install_next(c, t, TLS_RX);
	if (ret < 0) {
		/* The kernel holds the old RX key: every later record would
		 * fail to decrypt. Read nothing more; close cleanly. */
		c->rx_mode = RTLS__RX_OFF;
		rtls__tls_close_clean(c, t, ret == -ENOKEY ? "peer KeyUpdate, but RX keys cannot be renewed here"
							  : "installing the new RX key failed");
		return;
	}
	if (update_requested)
		queue_tx_update(c, t);
}

/* After userspace RX read records: a peer KeyUpdate may ask us to update
 * TX, which the kernel must do if it makes our records. */
void rtls__ku_after_read(struct rtls_conn *c, struct tconn *t)
{
	if (t->flood) {
		flood_close(c, t);
		return;
	}
	if (!t->peer_asked_update)
		return;
	t->peer_asked_update = false;
	if (!rtls__tls_tx_openssl(t))
		queue_tx_update(c, t);
	/* OpenSSL's TX: it answers on its own with its next write. */
}

/* Our own KeyUpdate before the AEAD limit for the cipher (§5.5). */
void rtls__ku_check_limits(struct rtls_conn *c, struct tconn *t)
{
	uint64_t limit, used;

	if (!t || !rtls__tls_established(t) || rtls__tls_failed(t) ||
	    t->tx == RTLS__TLS_KERNEL_UPDATING || c->state != RTLS__CONN_OPEN)
		return;
	limit = t->ctx->key_update_records;
	if (!limit) {
		if (t->suite.cipher == TLS_CIPHER_CHACHA20_POLY1305)
			return; /* its limit is beyond any connection's life */
		limit = GCM_RECORD_LIMIT;
	}
	/* Kernel TX: every send makes at least one record, and one per 16 KiB.
	 * Ours: the sequence number is the count under this key. */
	if (rtls__tls_tx_kernel(t))
		used = t->pre_records + (c->tx_ops - t->tx_ops_base) +
		       (c->tx_bytes - t->tx_bytes_base) / 16384;
	else if (t->tx == RTLS__TLS_OWN)
		used = t->seal.seq;
	else
		used = t->out.records - t->tx_records_base;
	if (used < limit)
		return;
	if (!t->is13) {
		/* Not one more record under this key (tls_seal drops what is
		 * queued): close_notify, then the end. */
		t->tx_spent = true;
		rtls__tls_close_clean(c, t, "AEAD usage limit reached and TLS 1.2 cannot update keys");
		return;
	}
	queue_tx_update(c, t);
}

/* OpenSSL's message callback: sees every KeyUpdate read in userspace. */
void rtls__tls_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		      SSL *ssl, void *arg)
{
	const unsigned char *m = buf;
	struct rtls__stats *st;
	struct tconn *t;

	(void)version;
	(void)arg;
	/* OpenSSL calls this for every record header and inner content type
	 * too: rule those out before the ex_data lookup. */
	if (content_type != SSL3_RT_HANDSHAKE || len < 5 || m[0] != KEY_UPDATE)
		return;
	t = SSL_get_app_data(ssl);
	if (!t || !rtls__tls_established(t))
		return;
	/* Ours, when OpenSSL makes our records (the kernel's are counted as
	 * they leave, rtls__ku_seg_sent; our record layer's as it seals
	 * them, own_update); the peer's read in userspace. */
	st = rtls__stats_mine();
	if (st && !(write_p && !rtls__tls_tx_openssl(t)))
		rtls__stat_add(st,
			       write_p ? RTLS__STAT(key_updates_sent)
				       : RTLS__STAT(key_updates_received),
			       1);
	if (write_p)
		return;
	t->peer_updated = true;
	rate_ok(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)), t);
	if (m[4] == 1)
		t->peer_asked_update = true;
}
