/* The PROXY protocol phase (src/core/proxyphase.c) over the fake ring:
 * what each read asks for (single RECVs, never past what the buffer can
 * hold beside the bytes kept), where the bytes after the header go (to
 * the handler, intact, in the last read's buffer), what the connection
 * reports afterwards (rtls_conn_peer, rtls_conn_query's peer and local),
 * the timers (the usual one until the first byte, then the header's), and
 * the ends: an untrusted header, a malformed one, a FIN inside one. Every
 * provided buffer goes back exactly once. The sockets are real TCP on
 * loopback, so the trust decision sees a real peer address. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>

#include "unit/fake_ring.h"
#include "proxyproto.h"

static struct rtls__listener lis[1];
static const struct rtls_listen cfg_lis[1] = { { .addr = "127.0.0.1:0" } };
static struct rtls__cidr cidr;
static int lfd = -1, client = -1;
static uint16_t next_bid;

static void setup(const char *trusted)
{
	fake_setup();
	lis[0].fd = -1;
	lis[0].tls = false;
	F.r.ls = lis;
	F.srv.cfg.listeners = cfg_lis;
	F.srv.cfg.nlisteners = 1;
	CHECK_EQ_INT(rtls__cidr_parse(trusted, &cidr), 0);
	F.srv.pp_from = &cidr;
	F.srv.npp_from = 1;
	F.srv.pp_begin = rtls__pp_begin;
	next_bid = 0;
}

/* An accepted TCP connection in the phase, its first receive armed. */
static struct rtls_conn *accept_one(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	struct rtls_conn *c;
	int fd;

	if (lfd < 0) {
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    listen(lfd, 8) < 0 || getsockname(lfd, (struct sockaddr *)&a, &len) < 0) {
			perror("listen");
			exit(1);
		}
	}
	getsockname(lfd, (struct sockaddr *)&a, &len);
	client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (client < 0 || connect(client, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		exit(1);
	}
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	c = rtls__conn_new(&F.r, fd, 0);
	CHECK(c != NULL);
	CHECK_EQ_INT(F.srv.pp_begin(c), 0);
	rtls__conn_recv_arm(c);
	return c;
}

static uint64_t ud(const struct rtls_conn *c)
{
	return rtls__ud(RTLS__OP_RECV, c->slot, c->gen);
}

/* The next SQE is a single RECV (buffer select, not multishot) of len. */
static void check_single_recv(const struct rtls_conn *c, unsigned len)
{
	struct io_uring_sqe *sqe = fake_next();

	CHECK_SQE(sqe, IORING_OP_RECV, c->fd, len, ud(c));
	if (sqe) {
		CHECK(!(sqe->ioprio & IORING_RECV_MULTISHOT));
		CHECK(sqe->flags & IOSQE_BUFFER_SELECT);
	}
}

static void check_multishot(const struct rtls_conn *c)
{
	struct io_uring_sqe *sqe = fake_next();

	CHECK_SQE(sqe, IORING_OP_RECV, c->fd, 0, ud(c));
	if (sqe)
		CHECK(sqe->ioprio & IORING_RECV_MULTISHOT);
}

/* A single-shot receive completes with p[0..n) in the next buffer. */
static void feed(struct rtls_conn *c, const void *p, size_t n)
{
	uint16_t bid = next_bid++ % FAKE_BUFS;

	memcpy(rtls__bufring_addr(&F.r, bid), p, n);
	fake_complete_flags(ud(c), (int)n,
			    IORING_CQE_F_BUFFER | ((uint32_t)bid << IORING_CQE_BUFFER_SHIFT));
}

/* Ends c (if live) and frees its slot, as the loop would. */
static void finish(struct rtls_conn *c)
{
	if (c->state != RTLS__CONN_DEAD && c->state != RTLS__CONN_FREE)
		rtls_conn_abort(c, 0);
	if (c->recv_armed)
		fake_complete(ud(c), -ECANCELED);
	rtls__reap(&F.r);
	CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
	close(client);
	client = -1;
}

static const char *peer_of(const struct rtls_conn *c)
{
	static char s[64];

	rtls_conn_peer(c, s, sizeof(s));
	return s;
}

static size_t v2_inet(unsigned char *b, const char *src, const char *dst, unsigned sp, unsigned dp,
		      size_t tlv_bytes)
{
	static const unsigned char sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					       0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	size_t len = 12 + tlv_bytes;

	memcpy(b, sig, 12);
	b[12] = 0x21;
	b[13] = 0x11;
	b[14] = (unsigned char)(len >> 8);
	b[15] = (unsigned char)len;
	inet_pton(AF_INET, src, b + 16);
	inet_pton(AF_INET, dst, b + 20);
	b[24] = (unsigned char)(sp >> 8), b[25] = (unsigned char)sp;
	b[26] = (unsigned char)(dp >> 8), b[27] = (unsigned char)dp;
	if (tlv_bytes) { /* one NOOP TLV filling the rest */
		b[28] = RTLS__PP2_TYPE_NOOP;
		b[29] = (unsigned char)((tlv_bytes - 3) >> 8);
		b[30] = (unsigned char)(tlv_bytes - 3);
		memset(b + 31, 0xa5, tlv_bytes - 3);
	}
	return 28 + tlv_bytes;
}

/* A v1 header in three reads, the last with a request after it. */
static void test_v1_split(void)
{
	static const char hdr[] = "PROXY TCP4 203.0.113.7 198.51.100.1 40001 8080\r\n";
	struct rtls_conn_info ci;
	struct rtls_conn *c;
	char all[128];

	setup("127.0.0.1");
	c = accept_one();
	check_single_recv(c, FAKE_BUF_SIZE);
	CHECK_EQ_INT(c->timer, RTLS_TIMER_IDLE); /* nothing yet: as without the feature */
	CHECK_EQ_INT(F.opens, 0);
	feed(c, hdr, 5);
	CHECK_EQ_INT(c->timer, RTLS_TIMER_HEADER);
	check_single_recv(c, FAKE_BUF_SIZE - 5);
	feed(c, hdr + 5, 20);
	check_single_recv(c, FAKE_BUF_SIZE); /* a header for sure: a whole buffer */
	CHECK_EQ_INT(F.puts, 2);             /* each read's buffer went back at once */
	snprintf(all, sizeof(all), "%sGET / HTTP/1.1\r\n", hdr + 25);
	feed(c, all, strlen(all));
	CHECK_EQ_INT(F.opens, 1);
	CHECK_MEM(F.got, F.got_len, "GET / HTTP/1.1\r\n");
	CHECK_EQ_INT(F.puts, 3);
	CHECK_EQ_INT(c->timer, RTLS_TIMER_NONE);
	CHECK(c->tp == NULL && c->tp_state == NULL);
	check_multishot(c);
	CHECK(strcmp(peer_of(c), "203.0.113.7:40001") == 0);
	rtls_conn_query(c, &ci);
	CHECK_EQ_INT(ci.peer_len, sizeof(struct sockaddr_in));
	CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&ci.peer)->sin_port), 40001);
	CHECK_EQ_INT(ci.local_len, sizeof(struct sockaddr_in));
	CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&ci.local)->sin_port), 8080);
	CHECK_EQ_INT(((struct sockaddr_in *)&ci.local)->sin_addr.s_addr, htonl(0xc6336401));
	finish(c);
	fake_teardown();
}

/* v2 with a header longer than the phase's first buffer, byte by byte
 * through its fixed part; nothing follows it. */
static void test_v2_long(void)
{
	unsigned char b[600];
	size_t n = v2_inet(b, "192.0.2.5", "192.0.2.1", 7, 443, 400);
	struct rtls_conn *c;

	setup("127.0.0.0/8");
	c = accept_one();
	fake_next();
	/* room for what is held while it may be no header (11 bytes of the
	 * signature), a whole buffer once it is one */
	for (size_t i = 0; i < 16; i++) {
		feed(c, b + i, 1);
		check_single_recv(c, i < 11 ? FAKE_BUF_SIZE - (unsigned)i - 1 : FAKE_BUF_SIZE);
	}
	feed(c, b + 16, 200);
	CHECK_EQ_INT(F.opens, 0);
	check_single_recv(c, FAKE_BUF_SIZE);
	feed(c, b + 216, n - 216);
	CHECK_EQ_INT(F.opens, 1);
	CHECK_EQ_INT(F.got_len, 0);
	CHECK_EQ_INT(F.puts, 18);
	CHECK(strcmp(peer_of(c), "192.0.2.5:7") == 0);
	check_multishot(c);
	feed(c, "after", 5); /* now straight to the handler */
	CHECK_MEM(F.got, F.got_len, "after");
	finish(c);
	fake_teardown();
}

/* No header: the bytes held while they could have been a signature go in
 * front of the rest, in the last read's buffer. */
static void test_no_header(void)
{
	struct rtls_conn *c;
	char self[64];

	setup("127.0.0.1");
	c = accept_one();
	fake_next();
	feed(c, "PR", 2);
	CHECK_EQ_INT(F.opens, 0);
	check_single_recv(c, FAKE_BUF_SIZE - 2);
	feed(c, "OPFIND / HTTP/1.1\r\n", 19);
	CHECK_EQ_INT(F.opens, 1);
	CHECK_MEM(F.got, F.got_len, "PROPFIND / HTTP/1.1\r\n");
	CHECK_EQ_INT(F.puts, 2);
	/* the socket's own address */
	snprintf(self, sizeof(self), "%s", peer_of(c));
	CHECK(strncmp(self, "127.0.0.1:", 10) == 0);
	CHECK(c->pp == NULL);
	finish(c);
	fake_teardown();
}

/* v2 LOCAL: valid, the socket's addresses kept. */
static void test_local(void)
{
	static const unsigned char b[16] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
					     0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00 };
	struct rtls_conn *c;
	unsigned char in[32];

	setup("127.0.0.1");
	c = accept_one();
	fake_next();
	memcpy(in, b, 16);
	memcpy(in + 16, "x", 1);
	feed(c, in, 17);
	CHECK_EQ_INT(F.opens, 1);
	CHECK_MEM(F.got, F.got_len, "x");
	CHECK(c->pp == NULL);
	CHECK(strncmp(peer_of(c), "127.0.0.1:", 10) == 0);
	finish(c);
	fake_teardown();
}

/* The ends: each closes before the handler opens, and gives every
 * buffer back. */
static void test_refusals(void)
{
	static const struct {
		const char *trusted, *in;
		int fin;
	} cases[] = {
		{ "10.0.0.0/8", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET", 0 }, /* untrusted */
		{ "10.0.0.0/8", "PROXY ", 0 }, /* the signature alone */
		{ "127.0.0.1", "PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", 0 }, /* malformed */
		{ "127.0.0.1", "PROXY TCP4 1.2", 1 },                       /* FIN inside */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rtls_conn *c;

		setup(cases[i].trusted);
		c = accept_one();
		fake_next();
		feed(c, cases[i].in, strlen(cases[i].in));
		if (cases[i].fin)
			fake_complete(ud(c), 0);
		/* killed, and freed at once: no request was outstanding */
		CHECK_EQ_INT(c->state, RTLS__CONN_FREE);
		CHECK_EQ_INT(F.opens, 0);
		CHECK_EQ_INT(F.closes, 0);
		CHECK_EQ_INT(F.puts, 1);
		CHECK_EQ_INT(c->nheld, 0);
		finish(c);
		fake_teardown();
	}
	/* untrusted without a header: served */
	{
		struct rtls_conn *c;

		setup("10.0.0.0/8");
		c = accept_one();
		fake_next();
		feed(c, "GET / HTTP/1.1\r\n", 16);
		CHECK_EQ_INT(F.opens, 1);
		CHECK_MEM(F.got, F.got_len, "GET / HTTP/1.1\r\n");
		finish(c);
		fake_teardown();
	}
}

int main(void)
{
	(void)fake_conn; /* this test's connections are real TCP ones */
	test_v1_split();
	test_v2_long();
	test_no_header();
	test_local();
	test_refusals();
	if (lfd >= 0)
		close(lfd);
	CHECK_DONE();
}
