/* src/tls/record.c and src/core/cmsg.c without a fuzzer: the decision on
 * each record kernel RX delivers (one case per outcome and per alert),
 * the framer's TX count and RX_EXACT read sizes on a known stream, and
 * the record type read from a control buffer that lies about its length.
 * fuzz/tls_records.c and fuzz/tls_control.c search the rest. */
#include <stdint.h>
#include <sys/socket.h>

#include "../../src/core/cmsg.h"
#include "../../src/tls/record.h"
#include "check.h"

struct ccase {
	const char *what;
	int type;
	bool is13;
	const char *p;
	size_t n;
	enum rtls__rec_action action;
	uint8_t alert; /* RTLS_REC_FAIL */
};

static const struct ccase cases[] = {
	{ "data", 23, true, "abc", 3, RTLS_REC_DATA, 0 },
	{ "close_notify", 21, true, "\x01\x00", 2, RTLS_REC_EOF, 0 },
	{ "fatal alert", 21, true, "\x02\x14", 2, RTLS_REC_PEER_ALERT, 0 },
	/* RFC 8446 §5.1: exactly one alert per record. */
	{ "alert, 3 bytes", 21, true, "\x01\x00\x00", 3, RTLS_REC_FAIL, 50 },
	{ "alert, 1 byte", 21, true, "\x02", 1, RTLS_REC_FAIL, 50 },
	{ "KeyUpdate", 22, true, "\x18\x00\x00\x01\x00", 5, RTLS_REC_KEY_UPDATE, 0 },
	{ "KeyUpdate, requested", 22, true, "\x18\x00\x00\x01\x01", 5, RTLS_REC_KEY_UPDATE, 0 },
	/* §4.6.3: any other request value is illegal_parameter. */
	{ "KeyUpdate, value 2", 22, true, "\x18\x00\x00\x01\x02", 5, RTLS_REC_FAIL, 47 },
	{ "KeyUpdate, truncated", 22, true, "\x18\x00\x00\x01", 4, RTLS_REC_FAIL, 50 },
	{ "KeyUpdate, length 2", 22, true, "\x18\x00\x00\x02\x00\x00", 6, RTLS_REC_FAIL, 50 },
	/* §5.1: the message that changes keys ends its record. */
	{ "KeyUpdate, then more", 22, true, "\x18\x00\x00\x01\x00\x00", 6, RTLS_REC_FAIL, 10 },
	{ "KeyUpdate in TLS 1.2", 22, false, "\x18\x00\x00\x01\x00", 5, RTLS_REC_FAIL, 10 },
	{ "ClientHello (renegotiation)", 22, false, "\x01\x00\x00\x00", 4, RTLS_REC_FAIL, 10 },
	{ "empty handshake record", 22, true, "", 0, RTLS_REC_FAIL, 10 },
	{ "ChangeCipherSpec", 20, true, "\x01", 1, RTLS_REC_FAIL, 10 },
	{ "heartbeat", 24, false, "\x01", 1, RTLS_REC_FAIL, 10 },
};

/* A TLS 1.3 client's kernel RX skips NewSessionTickets, whole or
 * fragmented over records, and nothing else. */
static bool skip1(const char *p, size_t n)
{
	struct rtls__hs_skip k = { 0 };

	return rtls__rec_skip_tickets(&k, (const unsigned char *)p, n);
}

static void test_skip_tickets(void)
{
	struct rtls__hs_skip k = { 0 };

	CHECK(skip1("\x04\x00\x00\x02\xaa\xbb", 6));
	CHECK(skip1("\x04\x00\x00\x00\x04\x00\x00\x01\x01", 9));
	CHECK(!skip1("", 0));
	/* a ticket, then a KeyUpdate: the KeyUpdate must not be lost */
	CHECK(!skip1("\x04\x00\x00\x00\x18\x00\x00\x01\x00", 9));
	CHECK(!skip1("\x18\x00\x00\x01\x00", 5));
	CHECK(!skip1("\x02", 1)); /* a partial header of something else */
	/* one ticket of 6 bytes over three records, the header split too */
	CHECK(rtls__rec_skip_tickets(&k, (const unsigned char *)"\x04\x00", 2));
	CHECK(rtls__rec_skip_tickets(&k, (const unsigned char *)"\x00\x06\x01\x02", 4));
	CHECK(k.left == 4);
	CHECK(rtls__rec_skip_tickets(&k, (const unsigned char *)"\x03\x04\x05\x06", 4));
	CHECK(k.left == 0 && k.hdr_len == 0);
	/* then a KeyUpdate in a record of its own is not a ticket */
	CHECK(!rtls__rec_skip_tickets(&k, (const unsigned char *)"\x18\x00\x00\x01\x00", 5));
}

static void test_classify(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ccase *c = &cases[i];
		struct rtls__rec_verdict v;

		rtls__rec_classify(c->type, (const unsigned char *)c->p, c->n, c->is13, &v);
		if (v.action != c->action || v.alert != c->alert) {
			fprintf(stderr, "FAIL %s: action %d alert %u, want %d %u\n", c->what,
				(int)v.action, v.alert, (int)c->action, c->alert);
			check_failures++;
		}
		if (v.action == RTLS_REC_FAIL)
			CHECK(v.why && v.why[0]);
	}
}

static size_t rec(unsigned char *p, uint8_t type, size_t len)
{
	p[0] = type;
	p[1] = 3;
	p[2] = 3;
	p[3] = (unsigned char)(len >> 8);
	p[4] = (unsigned char)len;
	memset(p + 5, 0, len);
	return 5 + len;
}

/* TLS 1.2 server flight: ServerHello, CCS | Finished, then two records
 * under the traffic key; fed a byte at a time and whole. */
static void test_tx_count(void)
{
	unsigned char s[200];
	size_t n = 0;

	n += rec(s + n, 22, 40);
	n += rec(s + n, 20, 1);
	n += rec(s + n, 22, 16);
	n += rec(s + n, 23, 0);
	n += rec(s + n, 23, 30);
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		struct rtls__rec_tx x = { .mark = UINT64_MAX };

		if (bytewise)
			for (size_t i = 0; i < n; i++)
				rtls__rec_tx_feed(&x, s + i, 1, true);
		else
			rtls__rec_tx_feed(&x, s, n, true);
		CHECK_EQ_INT(x.mark, 45 + 6);
		CHECK_EQ_INT(x.records, 3);
		CHECK(rtls__rec_at_boundary(&x.rec) && x.pos == n);
	}
	/* TLS 1.3: the mark set between writes; a CCS does not move it. */
	{
		struct rtls__rec_tx x = { .mark = UINT64_MAX };

		rtls__rec_tx_feed(&x, s, 45, false);
		rtls__rec_tx_mark(&x);
		rtls__rec_tx_feed(&x, s + 45, n - 45, false);
		CHECK_EQ_INT(x.mark, 45);
		CHECK_EQ_INT(x.records, 4);
	}
}

/* RX_EXACT: the read size is the rest of the header, then the body. */
static void test_want(void)
{
	unsigned char s[64];
	struct rtls__rec r = { { 0 }, 0, 0 };
	bool hdr;
	size_t n = rec(s, 22, 10);

	CHECK_EQ_INT(rtls__rec_want(&r), 5);
	CHECK_EQ_INT(rtls__rec_step(&r, s, 2, &hdr), 2);
	CHECK(!hdr && rtls__rec_want(&r) == 3);
	CHECK_EQ_INT(rtls__rec_step(&r, s + 2, n - 2, &hdr), 3); /* stops at the header's end */
	CHECK(hdr && r.hdr[0] == 22 && rtls__rec_want(&r) == 10);
	CHECK_EQ_INT(rtls__rec_step(&r, s + 5, 4, &hdr), 4);
	CHECK(!hdr && rtls__rec_want(&r) == 6 && !rtls__rec_at_boundary(&r));
	CHECK_EQ_INT(rtls__rec_step(&r, s + 9, 6, &hdr), 6);
	CHECK(rtls__rec_at_boundary(&r) && rtls__rec_want(&r) == 5);
}

static void test_cmsg(void)
{
	union {
		unsigned char b[64];
		struct cmsghdr align;
	} u;
	struct cmsghdr h = { .cmsg_len = CMSG_LEN(1), .cmsg_level = 282, .cmsg_type = 2 };

	memset(&u, 0, sizeof(u));
	memcpy(u.b, &h, sizeof(h));
	u.b[CMSG_LEN(0)] = 21;
	CHECK_EQ_INT(rtls__cmsg_find_u8(u.b, CMSG_SPACE(1), 282, 2), 21);
	/* The header claims a data byte beyond msg_controllen. */
	CHECK_EQ_INT(rtls__cmsg_find_u8(u.b, CMSG_LEN(0), 282, 2), -1);
	h.cmsg_len = SIZE_MAX;
	memcpy(u.b, &h, sizeof(h));
	CHECK_EQ_INT(rtls__cmsg_find_u8(u.b, sizeof(u.b), 282, 2), -1);
	/* Zeroed (no control message): data. */
	memset(&u, 0, sizeof(u));
	CHECK_EQ_INT(rtls__cmsg_find_u8(u.b, sizeof(u.b), 282, 2), -1);
}

int main(void)
{
	test_classify();
	test_skip_tickets();
	test_tx_count();
	test_want();
	test_cmsg();
	CHECK_DONE();
}
