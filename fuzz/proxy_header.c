/* libFuzzer target for src/core/proxyproto.c: the PROXY protocol header
 * parser (v1 and v2), the --proxy-protocol-from address blocks, and the
 * header builder.
 *
 * The input is the first bytes of a connection. Invariants, for any bytes:
 *  - a DONE header lies within the input, is 15..107 bytes (v1) or 16..16
 *    KiB (v2), and its ALPN and authority views lie inside it; a BAD one
 *    has a reason; addresses are IPv4/IPv6 or absent, both or neither;
 *  - the answer is a function of the bytes seen: every prefix answers
 *    INCOMPLETE or the whole's answer, a DONE prefix the same length, and
 *    the strict prefixes of a DONE header are INCOMPLETE;
 *  - sniff and parse agree on NOT_PROXY; rtls__pp_want() is never 0 and
 *    never reads past a v2 header's end;
 *  - the builder's output, from addresses and names taken from the input,
 *    parses back to the same header (v1 and v2), and one byte less room
 *    is -ENOSPC;
 *  - the first bytes as a CIDR string: if accepted, the block holds its
 *    own network address.
 * Invariant failures abort(), which libFuzzer reports as a crash. */
#include "check.h"
#include "../src/core/proxyproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

/* Prefixes checked one by one up to here; past it, a few. */
#define PREFIX_ALL 320

static int in_input(const uint8_t *d, size_t n, const unsigned char *p, size_t len)
{
	return !p || (p >= d && len <= n && (size_t)(p - d) <= n - len);
}

static void check_hdr(const uint8_t *d, size_t n, enum rtls__pp_status st,
		      const struct rtls__pp_hdr *h)
{
	check(st == RTLS__PP_NOT_PROXY || st == RTLS__PP_INCOMPLETE || st == RTLS__PP_BAD ||
	      st == RTLS__PP_DONE);
	check((st == RTLS__PP_NOT_PROXY) == (rtls__pp_sniff(d, n) == RTLS__PP_NOT_PROXY));
	if (st == RTLS__PP_BAD)
		check(h->why && h->why[0]);
	if (st != RTLS__PP_DONE)
		return;
	check(h->len <= n);
	check(h->version == 1 || h->version == 2);
	if (h->version == 1)
		check(h->len >= 15 && h->len <= RTLS__PP_V1_MAX &&
		      memcmp(d + h->len - 2, "\r\n", 2) == 0);
	else
		check(h->len >= RTLS__PP_V2_FIXED && h->len <= RTLS__PP_V2_MAX);
	check(in_input(d, h->len, h->alpn, h->alpn_len));
	check(in_input(d, h->len, h->authority, h->authority_len));
	check((h->src_len == 0) == (h->dst_len == 0));
	check(h->src_len == 0 || h->command == RTLS__PP_CMD_PROXY);
	check(h->src_len == 0 || h->src.ss_family == AF_INET || h->src.ss_family == AF_INET6);
	check(h->src.ss_family == h->dst.ss_family);
}

static void check_prefix(const uint8_t *d, size_t k, enum rtls__pp_status whole,
			 const struct rtls__pp_hdr *hw)
{
	struct rtls__pp_hdr h;
	enum rtls__pp_status st = rtls__pp_parse(d, k, &h);

	check(st == RTLS__PP_INCOMPLETE || st == whole);
	if (st == RTLS__PP_DONE)
		check(h.len == hw->len);
	if (whole == RTLS__PP_DONE && k < hw->len)
		check(st == RTLS__PP_INCOMPLETE);
	if (st == RTLS__PP_INCOMPLETE) {
		size_t w = rtls__pp_want(d, k);

		check(w > 0);
		if (whole == RTLS__PP_DONE && k >= RTLS__PP_V2_FIXED && d[0] != 'P')
			check(k + w == hw->len);
	}
}

static void fuzz_parse(const uint8_t *d, size_t n)
{
	struct rtls__pp_hdr h;
	enum rtls__pp_status st = rtls__pp_parse(d, n, &h);

	check_hdr(d, n, st, &h);
	for (size_t k = 0; k < n && k <= PREFIX_ALL; k++)
		check_prefix(d, k, st, &h);
	if (n > PREFIX_ALL) {
		check_prefix(d, n / 2, st, &h);
		check_prefix(d, n - 1, st, &h);
	}
	if (st == RTLS__PP_DONE)
		check_prefix(d, h.len, st, &h);
}

/* --- the builder's output parses back ------------------------------------ */

static socklen_t put_addr(struct sockaddr_storage *ss, const uint8_t *d, int v6, unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, d, 16);
		a->sin6_port = htons((uint16_t)port);
		return sizeof(*a);
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;

	a->sin_family = AF_INET;
	memcpy(&a->sin_addr, d, 4);
	a->sin_port = htons((uint16_t)port);
	return sizeof(*a);
}

/* The address as 16 bytes, v4-mapped for IPv4, and its port. */
static void canon(const struct sockaddr_storage *ss, unsigned char out[16], unsigned *port)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		memcpy(out, mapped, 12);
		memcpy(out + 12, &a->sin_addr, 4);
		*port = ntohs(a->sin_port);
	} else {
		const struct sockaddr_in6 *a = (const void *)ss;

		memcpy(out, &a->sin6_addr, 16);
		*port = ntohs(a->sin6_port);
	}
}

static void same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	unsigned char x[16], y[16];
	unsigned px, py;

	canon(a, x, &px);
	canon(b, y, &py);
	check(memcmp(x, y, 16) == 0 && px == py);
}

/* Layout: [0] flags (bit 0: peer IPv6, 1: local IPv6, 2: ALPN, 3: SNI,
 * 4: a Unix-socket client), [1..4] ports, [5..20] peer, [21..36] local,
 * then the ALPN and SNI text (NUL-separated, printable or not). */
static void fuzz_build(const uint8_t *d, size_t n)
{
	struct rtls_conn_info ci;
	char alpn[64] = "", sni[300] = "", out[1024];
	struct rtls__pp_hdr h;
	size_t i = 37;

	if (n < 37)
		return;
	memset(&ci, 0, sizeof(ci));
	ci.peer_len = put_addr(&ci.peer, d + 5, d[0] & 1, (unsigned)(d[1] << 8 | d[2]));
	ci.local_len = put_addr(&ci.local, d + 21, d[0] & 2, (unsigned)(d[3] << 8 | d[4]));
	if (d[0] & 16)
		ci.peer.ss_family = AF_UNIX;
	for (size_t k = 0; i < n && d[i] && k + 1 < sizeof(alpn); i++)
		alpn[k++] = (char)d[i];
	for (size_t k = 0, j = i + 1; j < n && d[j] && k + 1 < sizeof(sni); j++)
		sni[k++] = (char)d[j];
	ci.alpn = d[0] & 4 ? alpn : NULL;
	ci.sni = d[0] & 8 ? sni : NULL;
	for (int v = 1; v <= 2; v++) {
		int len = rtls__proxy_header_build(out, sizeof(out), v, &ci);

		check(len > 0);
		check(rtls__proxy_header_build(out, (size_t)len - 1, v, &ci) == -ENOSPC);
		len = rtls__proxy_header_build(out, sizeof(out), v, &ci);
		if (v == 2 && strlen(sni) > 255 && ci.sni) {
			check(rtls__pp_parse(out, (size_t)len, &h) == RTLS__PP_BAD);
			continue;
		}
		check(rtls__pp_parse(out, (size_t)len, &h) == RTLS__PP_DONE);
		check(h.len == (size_t)len && (int)h.version == v);
		check(h.command == RTLS__PP_CMD_PROXY);
		if (d[0] & 16) {
			check(h.src_len == 0);
		} else {
			check(h.src_len > 0);
			same_addr(&h.src, &ci.peer);
			same_addr(&h.dst, &ci.local);
		}
		if (v == 2 && ci.alpn)
			check(h.alpn && h.alpn_len == strlen(alpn) &&
			      !memcmp(h.alpn, alpn, h.alpn_len));
		if (v == 2 && ci.sni)
			check(h.authority && h.authority_len == strlen(sni) &&
			      !memcmp(h.authority, sni, h.authority_len));
	}
}

/* --- CIDR ------------------------------------------------------------------ */

static void fuzz_cidr(const uint8_t *d, size_t n)
{
	char s[80];
	struct rtls__cidr c;
	struct sockaddr_storage ss;
	size_t k = n < sizeof(s) - 1 ? n : sizeof(s) - 1;
	socklen_t len;

	memcpy(s, d, k);
	s[k] = '\0';
	if (rtls__cidr_parse(s, &c) < 0)
		return;
	check(c.family == AF_INET ? c.bits <= 32 : c.family == AF_INET6 && c.bits <= 128);
	len = put_addr(&ss, c.addr, c.family == AF_INET6, 0);
	check(rtls__cidr_match(&c, 1, (struct sockaddr *)&ss, len) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parse(data, size);
	fuzz_build(data, size);
	fuzz_cidr(data, size);
	return 0;
}
