/* libFuzzer target for the server side of a handshake as ringtls sets it
 * up: the SSL_CTX from rtls_tls_ctx_new (src/tls/ctx.c: versions, suites,
 * SNI, ALPN, tickets, client certificates, the info/msg/key-log callbacks
 * of handover.c and keyupdate.c), one SSL per input over memory BIOs, the
 * input being the client's bytes.
 *
 * Input: byte 0: bits 0-3 k, bit 6 "any read size" (else reads end at
 * record boundaries, as RX_EXACT does), bit 7 the second context (client
 * certificates optional, tickets from a fixed key); then k read sizes
 * (0: exactly what the framer wants); then the client's bytes, seeded with
 * real ClientHellos (fuzz/seeds.py --capture). Oracles:
 *  - no crash, no leak, and no SSL object left alive (rtls_tls_live_ssl);
 *  - input: the framer (rtls__tls_in_account) sees the same headers as a
 *    whole-buffer parse of what was fed, an RX_EXACT read never crosses a
 *    record boundary, and at a boundary OpenSSL has taken every byte (the
 *    kernel-RX decision relies on BIO_ctrl_pending being 0 there);
 *  - output: every OpenSSL write passes the TX framer, as through the
 *    sink BIO; OpenSSL writes whole records, so the framer is at a record
 *    boundary after each call, its record count equals a whole-buffer
 *    parse of the output, and an epoch mark lies on a record boundary. */
#include "check.h"
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/tls/internal.h"

#define MAX_OUT (1u << 20)

static struct rtls_tls_ctx *ctx[2];
static BIO_METHOD *out_method;
static SSL_CTX *cli_ctx;
static SSL_SESSION *sess[2]; /* from ctx[1]: [0] TLS 1.2, [1] TLS 1.3 */
static char state_dir[] = "/tmp/rtls-fuzz-XXXXXX";

struct out {
	struct tconn *t;
	unsigned char *buf;
	size_t len;
	struct rtls__rec_tx all; /* every record, counted as the bytes come */
};

/* Everything the server was given, for check_input. */
static unsigned char fedlog[MAX_OUT];
static size_t fedlen;

/* As the sink BIO (tls/conn.c): account, then keep the bytes. */
static int out_write(BIO *b, const char *p, int n)
{
	struct out *o = BIO_get_data(b);
	uint64_t before = o->t->out.pos;

	if (n <= 0)
		return 0;
	rtls__tls_sink_account(o->t, (const unsigned char *)p, (size_t)n);
	check(o->t->out.pos == before + (uint64_t)n);
	rtls__rec_tx_feed(&o->all, (const unsigned char *)p, (size_t)n, false);
	if (o->len + (size_t)n > MAX_OUT)
		return -1;
	memcpy(o->buf + o->len, p, (size_t)n);
	o->len += (size_t)n;
	return n;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH;
}

static int out_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

/* Everything is loaded into the contexts: nothing on disk is needed. */
static void remove_state(void)
{
	static const char *const names[] = { "selfsigned-cert.pem", "selfsigned-key.pem", "tickets" };
	char path[sizeof(state_dir) + 32];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", state_dir, names[i]);
		unlink(path);
	}
	rmdir(state_dir);
}

/* libFuzzer may end with _Exit; when it does call exit, free what we hold,
 * so LeakSanitizer's report stays about the inputs. */
static void cleanup(void)
{
	SSL_SESSION_free(sess[0]);
	SSL_SESSION_free(sess[1]);
	SSL_CTX_free(cli_ctx);
	rtls_tls_ctx_free(ctx[0]);
	rtls_tls_ctx_free(ctx[1]);
	BIO_meth_free(out_method);
}

static void make_ctxs(void)
{
	static const char key[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
				  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
				  "404142434445464748494a4b4c4d4e4f\n";
	struct rtls_tls_opts o;
	struct rtls_tls_cert cert;
	char why[256], tickets[sizeof(state_dir) + 16], cpath[sizeof(state_dir) + 32],
		kpath[sizeof(state_dir) + 32];
	FILE *f;

	check(mkdtemp(state_dir) != NULL);
	memset(&o, 0, sizeof(o));
	o.state_dir = state_dir;
	o.ktls = RTLS_KTLS_OFF;
	if (rtls_tls_ctx_new(&o, &ctx[0], why, sizeof(why)) < 0) {
		fprintf(stderr, "tls_handshake: %s\n", why);
		abort();
	}
	/* The second: the same certificate named explicitly, as its own client
	 * CA, optional client certificates, tickets from a key file. */
	snprintf(tickets, sizeof(tickets), "%s/tickets", state_dir);
	snprintf(cpath, sizeof(cpath), "%s/selfsigned-cert.pem", state_dir);
	snprintf(kpath, sizeof(kpath), "%s/selfsigned-key.pem", state_dir);
	f = fopen(tickets, "w");
	check(f && fputs(key, f) >= 0 && fclose(f) == 0);
	cert.cert_file = cpath;
	cert.key_file = kpath;
	o.certs = &cert;
	o.ncerts = 1;
	o.client_ca = cpath;
	o.client_auth = RTLS_CLIENT_AUTH_OPTIONAL;
	o.ticket_key_file = tickets;
	if (rtls_tls_ctx_new(&o, &ctx[1], why, sizeof(why)) < 0) {
		fprintf(stderr, "tls_handshake: %s\n", why);
		abort();
	}
	/* As on a host with kernel TLS: the key-log callback marks the epoch. */
	for (int i = 0; i < 2; i++)
		SSL_CTX_set_keylog_callback(ctx[i]->ssl[0], rtls__tls_keylog_cb);
	remove_state();
	out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fuzz-sink");
	check(out_method != NULL);
	BIO_meth_set_write(out_method, out_write);
	BIO_meth_set_ctrl(out_method, out_ctrl);
	BIO_meth_set_create(out_method, out_create);
	atexit(cleanup);
}

/* A real client over memory BIOs, for the resumption mode. */
static SSL *client_new(int v13, SSL_SESSION *s)
{
	int v = v13 ? TLS1_3_VERSION : TLS1_2_VERSION;
	SSL *c = SSL_new(cli_ctx);

	check(c != NULL);
	SSL_set_bio(c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_connect_state(c);
	SSL_set_min_proto_version(c, v);
	SSL_set_max_proto_version(c, v);
	if (s)
		check(SSL_set_session(c, s) == 1);
	return c;
}

/* Moves what `from` wrote into `to`'s read BIO; returns the bytes moved. */
static size_t move(SSL *from, BIO *to, unsigned char *buf, size_t cap)
{
	int n = BIO_read(SSL_get_wbio(from), buf, (int)cap);

	if (n <= 0)
		return 0;
	if (to)
		check(BIO_write(to, buf, n) == n);
	return (size_t)n;
}

/* A full handshake with ctx[1], and the session (ticket) it leaves. */
static SSL_SESSION *first_session(int v13)
{
	static unsigned char buf[65536];
	SSL *c = client_new(v13, NULL), *srv = SSL_new(ctx[1]->ssl[0]);
	unsigned char byte;
	SSL_SESSION *s;

	check(srv != NULL);
	SSL_set_bio(srv, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_accept_state(srv);
	for (int i = 0; i < 8 && !(SSL_is_init_finished(c) && SSL_is_init_finished(srv)); i++) {
		SSL_do_handshake(c);
		move(c, SSL_get_rbio(srv), buf, sizeof(buf));
		SSL_do_handshake(srv);
		move(srv, SSL_get_rbio(c), buf, sizeof(buf));
	}
	check(SSL_is_init_finished(c) && SSL_is_init_finished(srv));
	SSL_read(c, &byte, 1); /* TLS 1.3: the tickets come after the handshake */
	s = SSL_get1_session(c);
	check(s && SSL_SESSION_is_resumable(s));
	/* Freed without a shutdown, OpenSSL would mark the session spent. */
	SSL_set_shutdown(c, SSL_SENT_SHUTDOWN);
	SSL_free(c);
	SSL_free(srv);
	ERR_clear_error();
	return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	rtls_log_set_level(RTLS_LOG_ERROR);
	make_ctxs();
	cli_ctx = SSL_CTX_new(TLS_client_method());
	check(cli_ctx != NULL);
	SSL_CTX_set_session_cache_mode(cli_ctx, SSL_SESS_CACHE_CLIENT);
	sess[0] = first_session(0);
	sess[1] = first_session(1);
	return 0;
}

/* Records (with a whole header) in b[0..len), and how many start at or
 * after `from`; whether `at` is a record boundary. */
static uint32_t ref_records(const unsigned char *b, size_t len, uint64_t from, uint32_t *after,
			    uint64_t at, int *at_boundary)
{
	size_t pos = 0;
	uint32_t n = 0;

	*after = 0;
	*at_boundary = at == 0;
	while (len - pos >= 5) {
		n++;
		if (pos >= from)
			(*after)++;
		pos += 5 + (size_t)(b[pos + 3] << 8 | b[pos + 4]);
		if (pos == at)
			*at_boundary = 1;
		if (pos > len)
			break;
	}
	return n;
}

static void check_output(const struct out *o, const struct tconn *t)
{
	uint32_t after;
	int boundary;

	/* OpenSSL writes whole records: the stream is at a boundary. */
	check(rtls__rec_at_boundary(&t->out.rec) && t->out.pos == o->len);
	check(ref_records(o->buf, o->len, t->out.mark, &after, t->out.mark, &boundary) == o->all.records);
	if (t->out.mark != UINT64_MAX)
		check(boundary && t->out.records == after);
	else
		check(t->out.records == 0);
}

/* One step of the server after new input, as tls/conn.c does it. */
static int server_step(struct tconn *t)
{
	unsigned char buf[512];
	int ret;

	if (rtls__tls_established(t)) {
		ret = SSL_read(t->ssl, buf, sizeof(buf));
	} else {
		ret = SSL_do_handshake(t->ssl);
		if (ret == 1) {
			rtls__tls_set_phase(t, RTLS__TLS_ESTABLISHED);
			t->is13 = SSL_version(t->ssl) == TLS1_3_VERSION;
		}
	}
	return ret > 0 || SSL_get_error(t->ssl, ret) == SSL_ERROR_WANT_READ;
}

/* Feeds client bytes to the server in the given read sizes; returns how
 * many were fed before the server failed. */
static size_t feed(struct tconn *t, struct out *o, const uint8_t *in, size_t len,
		   const uint8_t *sizes, size_t k, int exact)
{
	static struct rtls_conn c; /* only rx_limit is used */
	size_t pos = 0, i = 0;

	if (rtls__rec_at_boundary(&t->in))
		c.rx_limit = 5;
	while (pos < len) {
		size_t n = k ? sizes[i++ % k] : 0;
		int ok;

		if (exact) {
			check(c.rx_limit > 0 && c.rx_limit == rtls__rec_want(&t->in));
			n = n && n < c.rx_limit ? n : c.rx_limit;
		} else {
			n = n ? n : 1 + (i % 300);
		}
		n = n < len - pos ? n : len - pos;
		check(BIO_write(t->rbio, in + pos, (int)n) == (int)n);
		check(fedlen + n <= sizeof(fedlog));
		memcpy(fedlog + fedlen, in + pos, n);
		fedlen += n;
		rtls__tls_in_account(&c, t, in + pos, n);
		pos += n;
		ok = server_step(t);
		check_output(o, t);
		if (!ok)
			break;
		/* At a record boundary OpenSSL holds nothing unread. */
		if (exact && rtls__rec_at_boundary(&t->in))
			check(BIO_ctrl_pending(t->rbio) == 0);
	}
	ERR_clear_error();
	return pos;
}

/* The input framer saw every header of what was fed, and stands where
 * a whole-buffer parse of it ends. */
static void check_input(const struct tconn *t, const uint8_t *in, size_t fed)
{
	size_t pos = 0;

	while (fed - pos >= 5) {
		size_t end = pos + 5 + (size_t)(in[pos + 3] << 8 | in[pos + 4]);

		if (end > fed) {
			check(t->in.hdr_len == 0 && t->in.left == end - fed);
			return;
		}
		pos = end;
	}
	check(t->in.left == 0 && t->in.hdr_len == fed - pos);
}

/* Resumption mode: a real client resumes a session of ctx[1]; its flights
 * reach the server in the fuzzer's read sizes. However they are cut, the
 * handshake must complete and resume, and for TLS 1.2 exactly one record
 * (our Finished) follows the ChangeCipherSpec that marks the epoch. */
static void resume(struct tconn *t, struct out *o, int v13, const uint8_t *sizes, size_t k,
		   int exact)
{
	static unsigned char buf[65536];
	/* A copy: a TLS 1.3 client spends the session it resumes (§C.4). */
	SSL_SESSION *s = SSL_SESSION_dup(sess[v13]);
	SSL *c = client_new(v13, s);
	size_t sent = 0, n;

	for (int i = 0; i < 6 && !(rtls__tls_established(t) && SSL_is_init_finished(c)); i++) {
		SSL_do_handshake(c);
		n = move(c, NULL, buf, sizeof(buf));
		check(feed(t, o, buf, n, sizes, k, exact) == n);
		if (o->len > sent) {
			n = o->len - sent;
			check(BIO_write(SSL_get_rbio(c), o->buf + sent, (int)n) == (int)n);
			sent = o->len;
		}
	}
	check(rtls__tls_established(t) && SSL_is_init_finished(c));
	check(SSL_session_reused(c) && SSL_session_reused(t->ssl));
	if (!v13)
		check(t->out.records == 1);
	SSL_set_shutdown(c, SSL_SENT_SHUTDOWN);
	SSL_free(c);
	SSL_SESSION_free(s);
	ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char outbuf[MAX_OUT];
	struct tconn t;
	struct out o = { .t = &t, .buf = outbuf, .all = { .mark = 0 } };
	struct rtls__rec_tx whole = { .mark = 0 };
	long live = rtls_tls_live_ssl();
	int resuming, exact;
	size_t k;
	BIO *wbio;

	if (size < 1 || size < 1 + (size_t)(data[0] & 15))
		return 0;
	k = data[0] & 15;
	resuming = data[0] & 0x20;
	exact = !(data[0] & 0x40);
	memset(&t, 0, sizeof(t));
	t.out.mark = UINT64_MAX;
	t.ssl = SSL_new(ctx[resuming || data[0] >> 7]->ssl[0]);
	t.rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(out_method);
	check(t.ssl && t.rbio && wbio);
	BIO_set_mem_eof_return(t.rbio, -1);
	BIO_set_data(wbio, &o);
	SSL_set_bio(t.ssl, t.rbio, wbio);
	SSL_set_accept_state(t.ssl);
	SSL_set_app_data(t.ssl, &t);
	fedlen = 0;

	if (resuming)
		resume(&t, &o, (data[0] >> 4) & 1, data + 1, k, exact);
	feed(&t, &o, data + 1 + k, size - 1 - k, data + 1, k, exact);
	check_input(&t, fedlog, fedlen);
	/* The counting must not depend on how OpenSSL split its writes. */
	rtls__rec_tx_feed(&whole, o.buf, o.len, false);
	check(whole.records == o.all.records);
	SSL_free(t.ssl);
	OPENSSL_cleanse(&t, sizeof(t));
	check(rtls_tls_live_ssl() == live);
	return 0;
}
