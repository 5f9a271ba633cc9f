/* Unit test for src/core/proxyproto.c: the PROXY protocol header parser
 * (v1 and v2), the address blocks of --proxy-protocol-from, and the header
 * builder, round trips included.
 *
 * Every input is copied flush against a PROT_NONE guard page, so reading
 * one byte past it crashes the test; and every input is also parsed at
 * each of its prefixes, which must answer INCOMPLETE or the same as the
 * whole (the parser's answer is a function of the bytes it has seen). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/un.h>

#include "../../src/core/proxyproto.h"
#include "check.h"
#include "guard.h"

static struct rtls__pp_hdr hdr;

static const char V2SIG[] = "\r\n\r\n\0\r\nQUIT\n";

/* Parses p[0..n) guarded, after checking every prefix. */
static enum rtls__pp_status parse(const void *p, size_t n)
{
	enum rtls__pp_status whole = rtls__pp_parse(guarded(p, n), n, &hdr);
	struct rtls__pp_hdr h2;

	for (size_t k = 0; k < n; k++) {
		enum rtls__pp_status st = rtls__pp_parse(guarded(p, k), k, &h2);

		if (st != RTLS__PP_INCOMPLETE && st != whole) {
			fprintf(stderr, "prefix %zu of %zu answers %d, the whole %d\n", k, n, st,
				whole);
			check_failures++;
			break;
		}
		if (st == RTLS__PP_DONE && h2.len > k) {
			fprintf(stderr, "prefix %zu: DONE with len %zu\n", k, h2.len);
			check_failures++;
		}
	}
	/* again, for the views in hdr to point into the guarded copy */
	return rtls__pp_parse(guarded(p, n), n, &hdr);
}

#define PARSE(lit) parse((lit), sizeof(lit) - 1)

static const char *addr_str(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char h[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, h, sizeof(h));
		port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof(h));
		port = ntohs(a->sin6_port);
	}
	snprintf(out, n, "%s|%u", h, port);
	return out;
}

#define CHECK_ADDR(ss, want)                                                                       \
	do {                                                                                       \
		char b_[80];                                                                       \
		const char *g_ = addr_str(&(ss), b_, sizeof(b_));                                  \
		if (strcmp(g_, (want)) != 0) {                                                     \
			fprintf(stderr, "%s:%d: %s is %s, expected %s\n", __FILE__, __LINE__, #ss, \
				g_, (want));                                                       \
			check_failures++;                                                          \
		}                                                                                  \
	} while (0)

#define CHECK_BAD(lit, reason)                              \
	do {                                                \
		CHECK_EQ_INT(PARSE(lit), RTLS__PP_BAD);     \
		CHECK(hdr.why &&strstr(hdr.why, (reason))); \
	} while (0)

/* --- sniff ---------------------------------------------------------------- */

static void test_sniff(void)
{
	CHECK_EQ_INT(rtls__pp_sniff("", 0), RTLS__PP_INCOMPLETE);
	CHECK_EQ_INT(rtls__pp_sniff("PROX", 4), RTLS__PP_INCOMPLETE);
	CHECK_EQ_INT(rtls__pp_sniff("PROXY", 5), RTLS__PP_INCOMPLETE);
	CHECK_EQ_INT(rtls__pp_sniff("PROXY ", 6), RTLS__PP_DONE);
	CHECK_EQ_INT(rtls__pp_sniff("PROXYZ", 6), RTLS__PP_NOT_PROXY);
	CHECK_EQ_INT(rtls__pp_sniff("PROPFIND / HTTP/1.1", 19), RTLS__PP_NOT_PROXY);
	CHECK_EQ_INT(rtls__pp_sniff("GET / HTTP/1.1\r\n", 16), RTLS__PP_NOT_PROXY);
	CHECK_EQ_INT(rtls__pp_sniff("\x16\x03\x01\x02\x00", 5), RTLS__PP_NOT_PROXY);
	CHECK_EQ_INT(rtls__pp_sniff(V2SIG, 11), RTLS__PP_INCOMPLETE);
	CHECK_EQ_INT(rtls__pp_sniff(V2SIG, 12), RTLS__PP_DONE);
	CHECK_EQ_INT(rtls__pp_sniff("\r\n\r\nX", 5), RTLS__PP_NOT_PROXY);
	/* not a header either: the parser says the same */
	CHECK_EQ_INT(PARSE("GET / HTTP/1.1\r\n\r\n"), RTLS__PP_NOT_PROXY);
	CHECK_EQ_INT(PARSE("\x16\x03\x01\x00\x05hello"), RTLS__PP_NOT_PROXY);
}

/* --- version 1 -------------------------------------------------------------- */

static void test_v1_good(void)
{
	static const char tcp4[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /";

	CHECK_EQ_INT(PARSE(tcp4), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.version, 1);
	CHECK_EQ_INT(hdr.command, RTLS__PP_CMD_PROXY);
	CHECK_EQ_INT(hdr.len, sizeof(tcp4) - 1 - 5);
	CHECK_ADDR(hdr.src, "192.168.0.1|56324");
	CHECK_ADDR(hdr.dst, "192.168.0.11|443");
	CHECK_EQ_INT(hdr.src_len, sizeof(struct sockaddr_in));

	CHECK_EQ_INT(PARSE("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"), RTLS__PP_DONE);
	CHECK_ADDR(hdr.src, "0.0.0.0|0");
	CHECK_ADDR(hdr.dst, "255.255.255.255|65535");

	CHECK_EQ_INT(PARSE("PROXY TCP6 2001:db8::1 ::1 1 2\r\n"), RTLS__PP_DONE);
	CHECK_ADDR(hdr.src, "2001:db8::1|1");
	CHECK_ADDR(hdr.dst, "::1|2");
	CHECK_EQ_INT(hdr.src_len, sizeof(struct sockaddr_in6));
	/* as inet_ntop writes a v4-mapped address (HAProxy sends that) */
	CHECK_EQ_INT(PARSE("PROXY TCP6 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1 2\r\n"), RTLS__PP_DONE);
	CHECK_ADDR(hdr.src, "::ffff:1.2.3.4|1");

	/* UNKNOWN: the socket's addresses; the rest of the line is ignored */
	CHECK_EQ_INT(PARSE("PROXY UNKNOWN\r\n"), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.len, 15);
	CHECK_EQ_INT(hdr.src_len, 0);
	CHECK_EQ_INT(PARSE("PROXY UNKNOWN whatever 1 2 3\r\nrest"), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.len, 30);
	CHECK_EQ_INT(hdr.src_len, 0);
}

/* The longest line the spec allows (107 bytes with CRLF) is accepted; a
 * line one byte longer is refused, at the byte that makes it so. */
static void test_v1_length(void)
{
	static const char f[] = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
	char line[160];
	int n = snprintf(line, sizeof(line), "PROXY UNKNOWN %s %s 65535 65535\r\n", f, f);

	CHECK_EQ_INT(n, 107);
	CHECK_EQ_INT(parse(line, (size_t)n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.len, 107);
	n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s 65535 65535\r\n", f, f);
	CHECK_EQ_INT(parse(line, (size_t)n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.len, 104);
	n = snprintf(line, sizeof(line), "PROXY UNKNOWN %s %s 65535 655350\r\n", f, f);
	CHECK_EQ_INT(n, 108);
	CHECK_EQ_INT(parse(line, (size_t)n), RTLS__PP_BAD);
	CHECK(strstr(hdr.why, "107"));
	/* 106 bytes without a CR can no longer end in time */
	CHECK_EQ_INT(parse(line, 106), RTLS__PP_BAD);
	CHECK_EQ_INT(parse(line, 105), RTLS__PP_INCOMPLETE);
	memset(line + 6, 'x', 150);
	memcpy(line + 6, "UNKNOWN ", 8);
	CHECK_EQ_INT(parse(line, 156), RTLS__PP_BAD);
}

static void test_v1_bad(void)
{
	CHECK_BAD("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "IPv4");
	CHECK_BAD("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "IPv4");
	CHECK_BAD("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "IPv4");
	CHECK_BAD("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "IPv4");
	CHECK_BAD("PROXY TCP4 1.2..4 5.6.7.8 1 2\r\n", "IPv4");
	CHECK_BAD("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port");
	CHECK_BAD("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "port");
	CHECK_BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "port");
	CHECK_BAD("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "field");
	CHECK_BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "fewer");
	CHECK_BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "more");
	CHECK_BAD("PROXY TCP4 ::1 ::1 1 2\r\n", "IPv4");
	CHECK_BAD("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "IPv6");
	CHECK_BAD("PROXY TCP6 1::2::3 ::1 1 2\r\n", "IPv6");
	CHECK_BAD("PROXY TCP6 ::g ::1 1 2\r\n", "character");
	CHECK_BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR");
	CHECK_BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n", "CR without LF");
	CHECK_BAD("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "character");
	CHECK_BAD("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol");
	CHECK_BAD("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol");
	CHECK_BAD("PROXY UNKNOWNX\r\n", "unknown protocol");
	CHECK_BAD("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol");
	CHECK_BAD("PROXY \r\n", "unknown protocol");
	/* decided before the CRLF, as soon as the bytes cannot be right */
	CHECK_EQ_INT(PARSE("PROXY TCP9"), RTLS__PP_BAD);
	CHECK_EQ_INT(PARSE("PROXY TCP4 1.2.3.4 x"), RTLS__PP_BAD);
	CHECK_EQ_INT(PARSE("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), RTLS__PP_INCOMPLETE);
	CHECK_EQ_INT(PARSE("PROXY TCP4 1.2.3.4"), RTLS__PP_INCOMPLETE);
}

/* --- version 2 -------------------------------------------------------------- */

/* A v2 header: fixed part, then `body` (addresses and TLVs). */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *body, size_t n)
{
	memcpy(out, V2SIG, 12);
	out[12] = (unsigned char)ver_cmd;
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(n >> 8);
	out[15] = (unsigned char)n;
	memcpy(out + 16, body, n);
	return 16 + n;
}

static const unsigned char inet_block[12] = { 10, 1, 2, 3, 192, 0, 2, 1, 0x1f, 0x90, 0x01, 0xbb };

static void test_v2_inet(void)
{
	unsigned char b[512], body[64], a6[36] = { 0 };
	size_t n = v2(b, 0x21, 0x11, inet_block, 12);

	memcpy(b + n, "GET", 3);
	CHECK_EQ_INT(parse(b, n + 3), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.version, 2);
	CHECK_EQ_INT(hdr.len, 28);
	CHECK_EQ_INT(hdr.command, RTLS__PP_CMD_PROXY);
	CHECK_ADDR(hdr.src, "10.1.2.3|8080");
	CHECK_ADDR(hdr.dst, "192.0.2.1|443");

	a6[15] = 1;                   /* ::1 */
	a6[16] = 0x20, a6[17] = 0x01; /* 2001:db8:: */
	a6[18] = 0x0d, a6[19] = 0xb8;
	a6[32] = 0, a6[33] = 7, a6[34] = 0, a6[35] = 9;
	n = v2(b, 0x21, 0x21, a6, 36);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	CHECK_ADDR(hdr.src, "::1|7");
	CHECK_ADDR(hdr.dst, "2001:db8::|9");

	/* TLVs: ALPN, authority, NOOP, an unknown type, SSL with sub-TLVs */
	memcpy(body, inet_block, 12);
	memcpy(body + 12,
	       "\x01\x00\x02h2"
	       "\x02\x00\x0b"
	       "example.com"
	       "\x04\x00\x00"
	       "\xe0\x00\x01Z"
	       "\x20\x00\x0b\x01\x00\x00\x00\x00\x21\x00\x03TLS",
	       5 + 14 + 3 + 4 + 14);
	n = v2(b, 0x21, 0x11, body, 12 + 40);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	CHECK_MEM(hdr.alpn, hdr.alpn_len, "h2");
	CHECK_MEM(hdr.authority, hdr.authority_len, "example.com");
	CHECK_ADDR(hdr.src, "10.1.2.3|8080");

	/* an address block longer than the family's is fine if the rest is TLVs */
	memcpy(body + 12, "\x04\x00\x01X", 4);
	n = v2(b, 0x21, 0x11, body, 16);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
}

/* LOCAL, UNSPEC, UNIX and DGRAM keep the socket's addresses. */
static void test_v2_no_addresses(void)
{
	unsigned char b[512], unx[216 + 6] = { 0 };
	size_t n = v2(b, 0x20, 0x00, "", 0);

	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.command, RTLS__PP_CMD_LOCAL);
	CHECK_EQ_INT(hdr.len, 16);
	CHECK_EQ_INT(hdr.src_len, 0);
	/* LOCAL discards its block, whatever it holds (§2.2) */
	n = v2(b, 0x20, 0x11, "\xff\xff\xff", 3);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.src_len, 0);
	/* PROXY over UNSPEC: TLVs straight after the fixed part */
	n = v2(b, 0x21, 0x00, "\x02\x00\x01x", 4);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.src_len, 0);
	CHECK_MEM(hdr.authority, hdr.authority_len, "x");
	/* UNIX: two 108-byte paths, then TLVs */
	memcpy(unx, "/a", 2);
	memcpy(unx + 216, "\x01\x00\x03h2c", 6);
	n = v2(b, 0x21, 0x31, unx, sizeof(unx));
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.src_len, 0);
	CHECK_MEM(hdr.alpn, hdr.alpn_len, "h2c");
	/* UDP over IPv4: valid, but no TCP peer to take */
	n = v2(b, 0x21, 0x12, inet_block, 12);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.src_len, 0);
}

/* An independent CRC-32C: table-driven, checked against RFC 3720's
 * vector before use. */
static uint32_t crc_table[256];

static uint32_t crc32c_ref(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	if (!crc_table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t r = i;

			for (int k = 0; k < 8; k++)
				r = r & 1 ? (r >> 1) ^ 0x82f63b78u : r >> 1;
			crc_table[i] = r;
		}
	for (size_t i = 0; i < n; i++)
		c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return ~c;
}

static void test_v2_crc(void)
{
	unsigned char b[128], body[32];
	uint32_t crc;
	size_t n;

	CHECK_EQ_INT(crc32c_ref((const unsigned char *)"123456789", 9), 0xe3069283u);
	memcpy(body, inet_block, 12);
	memcpy(body + 12, "\x03\x00\x04\0\0\0\0", 7);
	n = v2(b, 0x21, 0x11, body, 19);
	crc = crc32c_ref(b, n);
	b[31] = (unsigned char)(crc >> 24);
	b[32] = (unsigned char)(crc >> 16);
	b[33] = (unsigned char)(crc >> 8);
	b[34] = (unsigned char)crc;
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	b[34] ^= 1;
	CHECK_EQ_INT(parse(b, n), RTLS__PP_BAD);
	CHECK(strstr(hdr.why, "CRC32C mismatch"));
	b[34] ^= 1;
	b[20] ^= 0x80; /* an address bit: the checksum covers the whole header */
	CHECK_EQ_INT(parse(b, n), RTLS__PP_BAD);
	/* 3 bytes long */
	memcpy(body + 12, "\x03\x00\x03\0\0\0", 6);
	n = v2(b, 0x21, 0x11, body, 18);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_BAD);
}

static void test_v2_bad(void)
{
	unsigned char b[512], body[64] = { 0 };
	size_t n;

#define V2BAD(vc, fam, body_, len_, reason)                 \
	do {                                                \
		n = v2(b, (vc), (fam), (body_), (len_));    \
		CHECK_EQ_INT(parse(b, n), RTLS__PP_BAD);    \
		CHECK(hdr.why &&strstr(hdr.why, (reason))); \
	} while (0)

	V2BAD(0x11, 0x11, inet_block, 12, "unknown version");
	V2BAD(0x31, 0x11, inet_block, 12, "unknown version");
	V2BAD(0x01, 0x11, inet_block, 12, "unknown version");
	V2BAD(0x22, 0x11, inet_block, 12, "unknown command");
	V2BAD(0x2f, 0x11, inet_block, 12, "unknown command");
	V2BAD(0x21, 0x41, inet_block, 12, "unknown address family");
	V2BAD(0x21, 0xf1, inet_block, 12, "unknown address family");
	V2BAD(0x21, 0x13, inet_block, 12, "unknown transport");
	V2BAD(0x21, 0x11, inet_block, 11, "shorter");
	V2BAD(0x21, 0x21, inet_block, 12, "shorter");
	V2BAD(0x21, 0x31, body, 64, "shorter");
	/* TLVs that do not fit: a header cut short, a length past the end */
	memcpy(body, inet_block, 12);
	memcpy(body + 12, "\x01\x00", 2);
	V2BAD(0x21, 0x11, body, 14, "overruns");
	memcpy(body + 12, "\x01\x00\x05h2", 5);
	V2BAD(0x21, 0x11, body, 17, "overruns");
	memcpy(body + 12, "\x01\x00\x01h2", 5); /* one byte left over */
	V2BAD(0x21, 0x11, body, 17, "overruns");
	memcpy(body + 12, "\x20\x00\x04\x01\x00\x00\x00", 7); /* SSL shorter than 5 */
	V2BAD(0x21, 0x11, body, 19, "SSL");
	memcpy(body + 12, "\x20\x00\x09\x01\x00\x00\x00\x00\x21\x00\x05T", 12);
	V2BAD(0x21, 0x11, body, 24, "SSL");
	/* the bad version is seen at its byte, before the rest arrives */
	n = v2(b, 0x31, 0x11, inet_block, 12);
	CHECK_EQ_INT(rtls__pp_parse(guarded((char *)b, 13), 13, &hdr), RTLS__PP_BAD);
#undef V2BAD
}

/* Limits: authority 255, unique ID 128, the whole header 16 KiB. */
static void test_v2_limits(void)
{
	static unsigned char b[4096], body[1024];
	size_t n;

	memcpy(body, inet_block, 12);
	body[12] = RTLS__PP2_TYPE_AUTHORITY;
	body[13] = 0;
	body[14] = 255;
	memset(body + 15, 'a', 256);
	n = v2(b, 0x21, 0x11, body, 12 + 3 + 255);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	body[13] = 1, body[14] = 0;
	n = v2(b, 0x21, 0x11, body, 12 + 3 + 256);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_BAD);
	body[12] = RTLS__PP2_TYPE_UNIQUE_ID;
	body[13] = 0, body[14] = 128;
	n = v2(b, 0x21, 0x11, body, 12 + 3 + 128);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_DONE);
	body[14] = 129;
	n = v2(b, 0x21, 0x11, body, 12 + 3 + 129);
	CHECK_EQ_INT(parse(b, n), RTLS__PP_BAD);
	/* too long is known from the fixed part alone */
	memcpy(b, V2SIG, 12);
	b[12] = 0x21, b[13] = 0x11;
	b[14] = (RTLS__PP_V2_MAX - 16 + 1) >> 8;
	b[15] = (RTLS__PP_V2_MAX - 16 + 1) & 0xff;
	CHECK_EQ_INT(parse(b, 16), RTLS__PP_BAD);
	CHECK(strstr(hdr.why, "too long"));
	b[14] = 0xff, b[15] = 0xff;
	CHECK_EQ_INT(parse(b, 16), RTLS__PP_BAD);
	b[14] = (RTLS__PP_V2_MAX - 16) >> 8;
	b[15] = (RTLS__PP_V2_MAX - 16) & 0xff;
	CHECK_EQ_INT(parse(b, 16), RTLS__PP_INCOMPLETE);
	CHECK_EQ_INT(rtls__pp_want(b, 16), RTLS__PP_V2_MAX - 16);
}

static void test_want(void)
{
	unsigned char b[64];
	size_t n = v2(b, 0x21, 0x11, inet_block, 12);

	CHECK_EQ_INT(rtls__pp_want("", 0), 16);
	CHECK_EQ_INT(rtls__pp_want(b, 5), 11);
	CHECK_EQ_INT(rtls__pp_want(b, 16), 12);
	CHECK_EQ_INT(rtls__pp_want(b, 20), 8);
	CHECK_EQ_INT(rtls__pp_want(b, n - 1), 1);
	CHECK_EQ_INT(rtls__pp_want("PROXY TCP4 ", 11), 96);
	CHECK_EQ_INT(rtls__pp_want("P", 1), 106);
}

/* --- address blocks ----------------------------------------------------------- */

static struct sockaddr_storage sa4(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *a = (void *)&ss;

	a->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &a->sin_addr);
	return ss;
}

static struct sockaddr_storage sa6(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in6 *a = (void *)&ss;

	a->sin6_family = AF_INET6;
	inet_pton(AF_INET6, ip, &a->sin6_addr);
	return ss;
}

static int match1(const char *cidr, struct sockaddr_storage ss)
{
	struct rtls__cidr c;
	socklen_t len =
		ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

	if (rtls__cidr_parse(cidr, &c) < 0)
		return -1;
	return rtls__cidr_match(&c, 1, (struct sockaddr *)&ss, len);
}

static void test_cidr(void)
{
	static const char *const bad[] = {
		"",
		"/8",
		"10.0.0.0/",
		"10.0.0.0/33",
		"10.0.0.0/08",
		"10.0.0.0/-1",
		"10.0.0.0/ 8",
		"10.0.0.0/8/9",
		"::1/129",
		"10.0.0",
		"abc",
		"10.0.0.0/8x",
		"localhost",
		"[::1]/128",
		"1.2.3.4:80",
	};
	struct rtls__cidr c;
	struct sockaddr_un un = { .sun_family = AF_UNIX };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (rtls__cidr_parse(bad[i], &c) != -EINVAL) {
			fprintf(stderr, "cidr '%s' was accepted\n", bad[i]);
			check_failures++;
		}
	CHECK_EQ_INT(rtls__cidr_parse("192.168.1.7", &c), 0);
	CHECK_EQ_INT(c.family, AF_INET);
	CHECK_EQ_INT(c.bits, 32);
	CHECK_EQ_INT(rtls__cidr_parse("::1", &c), 0);
	CHECK_EQ_INT(c.bits, 128);
	CHECK_EQ_INT(rtls__cidr_parse("::ffff:10.0.0.0/104", &c), 0);
	CHECK_EQ_INT(c.family, AF_INET);
	CHECK_EQ_INT(c.bits, 8);

	CHECK_EQ_INT(match1("10.0.0.0/8", sa4("10.255.0.1")), 1);
	CHECK_EQ_INT(match1("10.0.0.0/8", sa4("11.0.0.1")), 0);
	CHECK_EQ_INT(match1("10.1.2.3/8", sa4("10.9.9.9")), 1); /* host bits ignored */
	CHECK_EQ_INT(match1("192.168.1.7", sa4("192.168.1.7")), 1);
	CHECK_EQ_INT(match1("192.168.1.7", sa4("192.168.1.6")), 0);
	CHECK_EQ_INT(match1("192.168.1.6/31", sa4("192.168.1.7")), 1);
	CHECK_EQ_INT(match1("192.168.1.6/31", sa4("192.168.1.8")), 0);
	CHECK_EQ_INT(match1("172.16.0.0/12", sa4("172.31.255.255")), 1);
	CHECK_EQ_INT(match1("172.16.0.0/12", sa4("172.32.0.0")), 0);
	CHECK_EQ_INT(match1("0.0.0.0/0", sa4("8.8.8.8")), 1);
	/* an IPv4 peer on a dual-stack socket */
	CHECK_EQ_INT(match1("127.0.0.1", sa6("::ffff:127.0.0.1")), 1);
	CHECK_EQ_INT(match1("10.0.0.0/8", sa6("::ffff:10.0.0.1")), 1);
	CHECK_EQ_INT(match1("10.0.0.0/8", sa6("::ffff:11.0.0.1")), 0);
	CHECK_EQ_INT(match1("::ffff:10.0.0.0/104", sa4("10.1.1.1")), 1);
	CHECK_EQ_INT(match1("::/0", sa4("10.1.1.1")), 1);
	CHECK_EQ_INT(match1("::ffff:0:0/96", sa4("10.1.1.1")), 1);
	CHECK_EQ_INT(match1("::1/128", sa6("::1")), 1);
	CHECK_EQ_INT(match1("::1/128", sa6("::2")), 0);
	CHECK_EQ_INT(match1("::1/128", sa4("127.0.0.1")), 0);
	CHECK_EQ_INT(match1("127.0.0.1", sa6("::1")), 0);
	CHECK_EQ_INT(match1("2001:db8::/33", sa6("2001:db8:7fff::1")), 1);
	CHECK_EQ_INT(match1("2001:db8::/33", sa6("2001:db8:8000::1")), 0);
	/* other families never match; a list matches on any entry */
	CHECK_EQ_INT(rtls__cidr_parse("0.0.0.0/0", &c), 0);
	CHECK_EQ_INT(rtls__cidr_match(&c, 1, (struct sockaddr *)&un, sizeof(un)), 0);
	{
		struct rtls__cidr l[2];
		struct sockaddr_storage ss = sa4("10.0.0.1");

		CHECK_EQ_INT(rtls__cidr_parse("192.168.0.0/16", &l[0]), 0);
		CHECK_EQ_INT(rtls__cidr_parse("10.0.0.0/8", &l[1]), 0);
		CHECK_EQ_INT(
			rtls__cidr_match(l, 2, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)),
			1);
		CHECK_EQ_INT(
			rtls__cidr_match(l, 1, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)),
			0);
		CHECK_EQ_INT(rtls__cidr_match(l, 2, (struct sockaddr *)&ss, 4), 0); /* short */
	}
}

/* --- the builder ------------------------------------------------------------------ */

static struct rtls_conn_info info(struct sockaddr_storage peer, unsigned pport,
				  struct sockaddr_storage local, unsigned lport)
{
	struct rtls_conn_info ci = { 0 };

	ci.peer = peer;
	ci.local = local;
	if (peer.ss_family == AF_INET) {
		((struct sockaddr_in *)&ci.peer)->sin_port = htons((uint16_t)pport);
		ci.peer_len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&ci.peer)->sin6_port = htons((uint16_t)pport);
		ci.peer_len = sizeof(struct sockaddr_in6);
	}
	if (local.ss_family == AF_INET) {
		((struct sockaddr_in *)&ci.local)->sin_port = htons((uint16_t)lport);
		ci.local_len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&ci.local)->sin6_port = htons((uint16_t)lport);
		ci.local_len = sizeof(struct sockaddr_in6);
	}
	return ci;
}

#define CHECK_V1(ci, want)                                                                      \
	do {                                                                                    \
		char o_[128];                                                                   \
		int n_ = rtls__proxy_header_build(o_, sizeof(o_), 1, &(ci));                    \
		CHECK_EQ_INT(n_, (int)strlen(want));                                            \
		if (n_ > 0 && ((size_t)n_ != strlen(want) || memcmp(o_, (want), (size_t)n_))) { \
			fprintf(stderr, "%s:%d: built %.*s\n", __FILE__, __LINE__, n_, o_);     \
			check_failures++;                                                       \
		}                                                                               \
	} while (0)

static void test_build_v1(void)
{
	struct rtls_conn_info ci = info(sa4("1.2.3.4"), 5, sa4("10.0.0.1"), 443);
	char o[128];

	CHECK_V1(ci, "PROXY TCP4 1.2.3.4 10.0.0.1 5 443\r\n");
	ci = info(sa6("2001:db8::1"), 65535, sa6("::1"), 0);
	CHECK_V1(ci, "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
	ci = info(sa6("1:0:2:0:0:3:0:4"), 1, sa6("1:2:3:4:5:6:7:8"), 2);
	CHECK_V1(ci, "PROXY TCP6 1:0:2::3:0:4 1:2:3:4:5:6:7:8 1 2\r\n");
	ci = info(sa6("::"), 1, sa6("1::"), 2);
	CHECK_V1(ci, "PROXY TCP6 :: 1:: 1 2\r\n");
	/* both v4-mapped (a dual-stack listener): IPv4 */
	ci = info(sa6("::ffff:1.2.3.4"), 7, sa6("::ffff:5.6.7.8"), 8);
	CHECK_V1(ci, "PROXY TCP4 1.2.3.4 5.6.7.8 7 8\r\n");
	/* mixed: IPv6, the IPv4 one mapped, in hex groups */
	ci = info(sa4("1.2.3.4"), 7, sa6("2001:db8::2"), 8);
	CHECK_V1(ci, "PROXY TCP6 ::ffff:102:304 2001:db8::2 7 8\r\n");
	/* a Unix-socket client, or none */
	memset(&ci, 0, sizeof(ci));
	ci.peer.ss_family = AF_UNIX;
	ci.peer_len = sizeof(struct sockaddr_un);
	CHECK_V1(ci, "PROXY UNKNOWN\r\n");
	ci.peer_len = 0;
	CHECK_V1(ci, "PROXY UNKNOWN\r\n");
	/* an IP client without an IP local address, a version not 1 or 2 */
	ci = info(sa4("1.2.3.4"), 5, sa4("10.0.0.1"), 443);
	ci.local_len = 0;
	CHECK_EQ_INT(rtls__proxy_header_build(o, sizeof(o), 1, &ci), -EAFNOSUPPORT);
	CHECK_EQ_INT(rtls__proxy_header_build(o, sizeof(o), 2, &ci), -EAFNOSUPPORT);
	ci = info(sa4("1.2.3.4"), 5, sa4("10.0.0.1"), 443);
	CHECK_EQ_INT(rtls__proxy_header_build(o, sizeof(o), 3, &ci), -EINVAL);
	CHECK_EQ_INT(rtls__proxy_header_build(o, sizeof(o), 0, &ci), -EINVAL);
	/* exactly enough room, and one byte less */
	CHECK_EQ_INT(rtls__proxy_header_build(o, 35, 1, &ci), 35);
	CHECK_EQ_INT(rtls__proxy_header_build(o, 34, 1, &ci), -ENOSPC);
}

static void test_build_v2(void)
{
	struct rtls_conn_info ci = info(sa4("10.1.2.3"), 8080, sa4("192.0.2.1"), 443);
	unsigned char o[256], want[64];
	size_t wn = v2(want, 0x21, 0x11, inet_block, 12);
	int n = rtls__proxy_header_build((char *)o, sizeof(o), 2, &ci);

	CHECK_EQ_INT(n, (int)wn);
	CHECK(n > 0 && memcmp(o, want, wn) == 0);
	CHECK_EQ_INT(rtls__proxy_header_build((char *)o, wn, 2, &ci), (int)wn);
	CHECK_EQ_INT(rtls__proxy_header_build((char *)o, wn - 1, 2, &ci), -ENOSPC);
	CHECK_EQ_INT(rtls__proxy_header_build((char *)o, 15, 2, &ci), -ENOSPC);

	/* ALPN and SNI as TLVs; the parser reads back what was built */
	ci.alpn = "h2";
	ci.sni = "example.com";
	n = rtls__proxy_header_build((char *)o, sizeof(o), 2, &ci);
	CHECK_EQ_INT(n, 28 + 5 + 14);
	CHECK_EQ_INT(rtls__proxy_header_build((char *)o, (size_t)n - 1, 2, &ci), -ENOSPC);
	CHECK_EQ_INT(parse(o, (size_t)n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.len, (size_t)n);
	CHECK_ADDR(hdr.src, "10.1.2.3|8080");
	CHECK_ADDR(hdr.dst, "192.0.2.1|443");
	CHECK_MEM(hdr.alpn, hdr.alpn_len, "h2");
	CHECK_MEM(hdr.authority, hdr.authority_len, "example.com");

	ci = info(sa6("2001:db8::1"), 1, sa6("::1"), 2);
	n = rtls__proxy_header_build((char *)o, sizeof(o), 2, &ci);
	CHECK_EQ_INT(n, 52);
	CHECK_EQ_INT(o[13], 0x21);
	CHECK_EQ_INT(parse(o, (size_t)n), RTLS__PP_DONE);
	CHECK_ADDR(hdr.src, "2001:db8::1|1");
	CHECK_ADDR(hdr.dst, "::1|2");

	/* a Unix-socket client: PROXY over UNSPEC, TLVs kept */
	memset(&ci, 0, sizeof(ci));
	ci.peer.ss_family = AF_UNIX;
	ci.peer_len = sizeof(struct sockaddr_un);
	ci.sni = "a";
	n = rtls__proxy_header_build((char *)o, sizeof(o), 2, &ci);
	CHECK_EQ_INT(n, 16 + 4);
	CHECK_EQ_INT(o[12], 0x21);
	CHECK_EQ_INT(o[13], 0x00);
	CHECK_EQ_INT(parse(o, (size_t)n), RTLS__PP_DONE);
	CHECK_EQ_INT(hdr.command, RTLS__PP_CMD_PROXY);
	CHECK_EQ_INT(hdr.src_len, 0);
	CHECK_MEM(hdr.authority, hdr.authority_len, "a");
}

/* v1 round trips, the parser reading what the builder wrote. */
static void test_round_trip_v1(void)
{
	static const char *const ips[][2] = {
		{ "1.2.3.4", "5.6.7.8" },
		{ "::1", "::2" },
		{ "ffff::ffff", "1:2:3:4:5:6:7:8" },
		{ "::ffff:9.9.9.9", "2001:db8::" },
	};

	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		struct sockaddr_storage a =
			strchr(ips[i][0], ':') ? sa6(ips[i][0]) : sa4(ips[i][0]);
		struct sockaddr_storage b =
			strchr(ips[i][1], ':') ? sa6(ips[i][1]) : sa4(ips[i][1]);
		struct rtls_conn_info ci = info(a, 1000 + (unsigned)i, b, 80);
		char o[128];
		int n = rtls__proxy_header_build(o, sizeof(o), 1, &ci);

		CHECK(n > 0);
		if (n <= 0)
			continue;
		CHECK_EQ_INT(parse(o, (size_t)n), RTLS__PP_DONE);
		CHECK_EQ_INT(hdr.len, (size_t)n);
		CHECK_EQ_INT(((struct sockaddr_in *)&hdr.src)->sin_port,
			     htons((uint16_t)(1000 + i)));
		CHECK_EQ_INT(((struct sockaddr_in *)&hdr.dst)->sin_port, htons(80));
	}
}

int main(void)
{
	guard_init();
	test_sniff();
	test_v1_good();
	test_v1_length();
	test_v1_bad();
	test_v2_inet();
	test_v2_no_addresses();
	test_v2_crc();
	test_v2_bad();
	test_v2_limits();
	test_want();
	test_cidr();
	test_build_v1();
	test_build_v2();
	test_round_trip_v1();
	CHECK_DONE();
}
