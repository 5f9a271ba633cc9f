/* The PROXY protocol: the header parser, address blocks (CIDR), and the
 * header builder. See proxyproto.h; section numbers are those of HAProxy's
 * doc/proxy-protocol.txt.
 *
 * The parser is stateless, like the HTTP head parser: after INCOMPLETE the
 * caller calls again with the same bytes plus new ones, and it rescans. A
 * header is at most a few hundred bytes, so rescanning costs less than
 * carrying state, and every answer stays a function of the bytes alone.
 *
 * It is strict: the header decides whose connection this is, so anything
 * the spec does not allow is refused rather than guessed at (§2.1: "Any
 * sequence which does not exactly match the protocol must be discarded"). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "proxyproto.h"

static const unsigned char v1sig[6] = { 'P', 'R', 'O', 'X', 'Y', ' ' };
static const unsigned char v2sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* v2 address block sizes by family (§2.2): UNSPEC, INET, INET6, UNIX. */
static const unsigned v2_addr_len[4] = { 0, 12, 36, 216 };

static enum rtls__pp_status bad(struct rtls__pp_hdr *h, const char *why)
{
	h->why = why;
	return RTLS__PP_BAD;
}

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

enum rtls__pp_status rtls__pp_sniff(const void *p, size_t n)
{
	const unsigned char *b = p;

	if (n == 0)
		return RTLS__PP_INCOMPLETE;
	if (memcmp(b, v1sig, min_sz(n, sizeof(v1sig))) == 0)
		return n >= sizeof(v1sig) ? RTLS__PP_DONE : RTLS__PP_INCOMPLETE;
	if (memcmp(b, v2sig, min_sz(n, sizeof(v2sig))) == 0)
		return n >= sizeof(v2sig) ? RTLS__PP_DONE : RTLS__PP_INCOMPLETE;
	return RTLS__PP_NOT_PROXY;
}

/* --- version 1 (§2.1) ---------------------------------------------------- */

/* A decimal number of 1..maxd digits, no heading zero (§2.1: "to avoid
 * any possible confusion with octal numbers"), at most max. */
static int v1_number(const unsigned char *s, size_t n, unsigned maxd, unsigned long max,
		     unsigned long *out)
{
	unsigned long v = 0;

	if (n == 0 || n > maxd || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* Exactly four numbers 0..255, one dot between each. */
static int v1_ipv4(const unsigned char *s, size_t n, unsigned char out[4])
{
	size_t start = 0;
	unsigned k = 0;

	for (size_t i = 0; i <= n && k < 4; i++) {
		unsigned long v;

		if (i < n && s[i] != '.')
			continue;
		if (v1_number(s + start, i - start, 3, 255, &v) < 0)
			return -1;
		out[k++] = (unsigned char)v;
		start = i + 1;
		if (i == n)
			break;
	}
	return k == 4 && start == n + 1 ? 0 : -1;
}

/* Hex groups and colons, one "::" at most (§2.1); a dotted IPv4 tail as
 * inet_ntop writes a v4-mapped address, since senders built on it
 * (HAProxy among them) send that. inet_pton is pure. */
static int v1_ipv6(const unsigned char *s, size_t n, unsigned char out[16])
{
	char tmp[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof(tmp))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefABCDEF:.", s[i]) || !s[i])
			return -1;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, out) == 1 ? 0 : -1;
}

static void set_addr(struct sockaddr_storage *ss, socklen_t *len, int fam, const unsigned char *a,
		     unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (fam == AF_INET) {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		a4->sin_family = AF_INET;
		memcpy(&a4->sin_addr, a, 4);
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
	} else {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		a6->sin6_family = AF_INET6;
		memcpy(&a6->sin6_addr, a, 16);
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
	}
}

/* "SRC DST SPORT DPORT", s[0..n) the line between "TCPx " and the CRLF. */
static enum rtls__pp_status v1_tcp(const unsigned char *s, size_t n, int fam,
				   struct rtls__pp_hdr *h)
{
	const unsigned char *f[4];
	size_t fl[4], start = 0;
	unsigned char src[16], dst[16];
	unsigned long sport, dport;
	unsigned k = 0;
	int (*addr)(const unsigned char *, size_t, unsigned char *) =
		fam == AF_INET ? v1_ipv4 : v1_ipv6;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != ' ')
			continue;
		if (k == 4)
			return bad(h, "v1: more than four fields");
		f[k] = s + start;
		fl[k++] = i - start;
		start = i + 1;
	}
	if (k != 4)
		return bad(h, "v1: fewer than four fields");
	if (addr(f[0], fl[0], src) < 0 || addr(f[1], fl[1], dst) < 0)
		return bad(h,
			   fam == AF_INET ? "v1: not an IPv4 address" : "v1: not an IPv6 address");
	if (v1_number(f[2], fl[2], 5, 65535, &sport) < 0 ||
	    v1_number(f[3], fl[3], 5, 65535, &dport) < 0)
		return bad(h, "v1: not a port");
	set_addr(&h->src, &h->src_len, fam, src, (unsigned)sport);
	set_addr(&h->dst, &h->dst_len, fam, dst, (unsigned)dport);
	return RTLS__PP_DONE;
}

/* What can be said before the CRLF: the protocol word, and (TCP4/TCP6)
 * only address and port characters after it. s[0..n) follows "PROXY ". */
static enum rtls__pp_status v1_early(const unsigned char *s, size_t n, struct rtls__pp_hdr *h)
{
	static const char *const words[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };

	for (unsigned w = 0; w < 3; w++) {
		size_t wl = strlen(words[w]);

		if (memcmp(s, words[w], min_sz(n, wl)) != 0)
			continue;
		if (w == 2) /* §2.1: anything before the CRLF is ignored */
			return n > wl && s[wl] != ' ' ? bad(h, "v1: unknown protocol")
						      : RTLS__PP_INCOMPLETE;
		for (size_t i = wl; i < n; i++)
			if (!strchr("0123456789abcdefABCDEF:. ", s[i]) || !s[i])
				return bad(h, "v1: bad character in an address or port");
		return RTLS__PP_INCOMPLETE;
	}
	return bad(h, "v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)");
}

static enum rtls__pp_status v1(const unsigned char *p, size_t n, struct rtls__pp_hdr *h)
{
	size_t lim = min_sz(n, RTLS__PP_V1_MAX), i;
	const unsigned char *s = p + sizeof(v1sig);
	enum rtls__pp_status st;

	h->version = 1;
	for (i = sizeof(v1sig); i < lim && p[i] != '\r' && p[i] != '\n'; i++)
		;
	/* §2.1: a single CR or LF never ends the line. */
	if (i < lim && p[i] == '\n')
		return bad(h, "v1: LF without CR");
	if (i + 1 < lim && p[i] == '\r' && p[i + 1] != '\n')
		return bad(h, "v1: CR without LF");
	st = v1_early(s, i - sizeof(v1sig), h);
	if (st != RTLS__PP_INCOMPLETE)
		return st;
	if (i + 1 >= RTLS__PP_V1_MAX)
		return bad(h, "v1: no CRLF within 107 bytes");
	if (i + 1 >= n)
		return RTLS__PP_INCOMPLETE;
	h->len = i + 2;
	h->command = RTLS__PP_CMD_PROXY;
	i -= sizeof(v1sig); /* the line's length after "PROXY " */
	if (i >= 7 && memcmp(s, "UNKNOWN", 7) == 0)
		return RTLS__PP_DONE; /* keep the socket's addresses */
	if (i < 5 || (memcmp(s, "TCP4 ", 5) != 0 && memcmp(s, "TCP6 ", 5) != 0))
		return bad(h, "v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)");
	return v1_tcp(s + 5, i - 5, s[3] == '4' ? AF_INET : AF_INET6, h);
}

/* --- version 2 (§2.2) ---------------------------------------------------- */

/* CRC-32C (Castagnoli, RFC 4960 Appendix B), bit by bit: one header per
 * connection, and only when the sender adds the TLV. The 4 bytes at
 * `zero` count as zeros (§2.2.3: computed with the field zeroed). */
static uint32_t crc32c(const unsigned char *p, size_t n, size_t zero)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		crc ^= i >= zero && i < zero + 4 ? 0 : p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* A run of TLVs that must end exactly at n (§2.2: type, 16-bit length,
 * value). Sub-TLVs of PP2_TYPE_SSL (§2.2.6) are held to the same rule. */
static int tlv_walk(const unsigned char *p, size_t n, size_t *i, size_t *vlen)
{
	if (n - *i < 3)
		return -1;
	*vlen = (size_t)p[*i + 1] << 8 | p[*i + 2];
	if (*vlen > n - *i - 3)
		return -1;
	return 0;
}

static int ssl_subtlvs_fit(const unsigned char *v, size_t n)
{
	size_t i = 5, vlen; /* client (1), verify (4) */

	if (n < 5)
		return -1;
	while (i < n) {
		if (tlv_walk(v, n, &i, &vlen) < 0)
			return -1;
		i += 3 + vlen;
	}
	return 0;
}

/* Checks one known TLV; keeps the ALPN and authority views (the first of
 * each). NULL if fine, else why. */
static const char *tlv_one(const unsigned char *p, size_t total, size_t at, size_t vlen,
			   struct rtls__pp_hdr *h, int *crc_seen)
{
	const unsigned char *v = p + at + 3;

	switch (p[at]) {
	case RTLS__PP2_TYPE_ALPN:
		if (!h->alpn) {
			h->alpn = v;
			h->alpn_len = vlen;
		}
		return NULL;
	case RTLS__PP2_TYPE_AUTHORITY:
		/* A host name (RFC 1035: 255 at most); HAProxy's limit too. */
		if (vlen > 255)
			return "v2: authority TLV longer than 255 bytes";
		if (!h->authority) {
			h->authority = v;
			h->authority_len = vlen;
		}
		return NULL;
	case RTLS__PP2_TYPE_CRC32C:
		if (vlen != 4 || (*crc_seen)++)
			return "v2: CRC32C TLV not 4 bytes, or twice";
		if (crc32c(p, total, at + 3) !=
		    ((uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3]))
			return "v2: CRC32C mismatch";
		return NULL;
	case RTLS__PP2_TYPE_UNIQUE_ID:
		return vlen > 128 ? "v2: unique ID TLV longer than 128 bytes" : NULL;
	case RTLS__PP2_TYPE_SSL:
		return ssl_subtlvs_fit(v, vlen) < 0 ? "v2: SSL TLV's sub-TLVs do not fit" : NULL;
	default:
		return NULL; /* NOOP, and types we do not know: skipped */
	}
}

static enum rtls__pp_status v2_tlvs(const unsigned char *p, size_t at, size_t total,
				    struct rtls__pp_hdr *h)
{
	int crc_seen = 0;

	while (at < total) {
		size_t vlen;
		const char *why;

		if (tlv_walk(p, total, &at, &vlen) < 0)
			return bad(h, "v2: a TLV overruns the header");
		why = tlv_one(p, total, at, vlen, h, &crc_seen);
		if (why)
			return bad(h, why);
		at += 3 + vlen;
	}
	return RTLS__PP_DONE;
}

/* The fixed part's checks, each made as soon as its byte is in. */
static enum rtls__pp_status v2_fixed(const unsigned char *p, size_t n, struct rtls__pp_hdr *h)
{
	if (n > 12 && p[12] >> 4 != 2)
		return bad(h, "v2: unknown version");
	if (n > 12 && (p[12] & 0x0f) > RTLS__PP_CMD_PROXY)
		return bad(h, "v2: unknown command");
	if (n > 13 && p[13] >> 4 > 3)
		return bad(h, "v2: unknown address family");
	if (n > 13 && (p[13] & 0x0f) > 2)
		return bad(h, "v2: unknown transport protocol");
	if (n < RTLS__PP_V2_FIXED)
		return RTLS__PP_INCOMPLETE;
	h->len = RTLS__PP_V2_FIXED + ((size_t)p[14] << 8 | p[15]);
	if (h->len > RTLS__PP_V2_MAX)
		return bad(h, "v2: header too long");
	/* §2.2: LOCAL discards the block, family included. */
	if ((p[12] & 0x0f) == RTLS__PP_CMD_PROXY &&
	    h->len - RTLS__PP_V2_FIXED < v2_addr_len[p[13] >> 4])
		return bad(h, "v2: address block shorter than its family's");
	return RTLS__PP_DONE;
}

static enum rtls__pp_status v2(const unsigned char *p, size_t n, struct rtls__pp_hdr *h)
{
	enum rtls__pp_status st;
	unsigned fam, proto;
	const unsigned char *a = p + RTLS__PP_V2_FIXED;

	h->version = 2;
	st = v2_fixed(p, n, h);
	if (st != RTLS__PP_DONE)
		return st;
	if (n < h->len)
		return RTLS__PP_INCOMPLETE;
	h->command = (enum rtls__pp_command)(p[12] & 0x0f);
	if (h->command == RTLS__PP_CMD_LOCAL)
		return RTLS__PP_DONE;
	fam = p[13] >> 4;
	proto = p[13] & 0x0f;
	st = v2_tlvs(p, RTLS__PP_V2_FIXED + v2_addr_len[fam], h->len, h);
	if (st != RTLS__PP_DONE || proto != 1 /* STREAM */)
		return st; /* UNSPEC and DGRAM: keep the socket's addresses */
	if (fam == 1) {
		set_addr(&h->src, &h->src_len, AF_INET, a, (unsigned)(a[8] << 8 | a[9]));
		set_addr(&h->dst, &h->dst_len, AF_INET, a + 4, (unsigned)(a[10] << 8 | a[11]));
	} else if (fam == 2) {
		set_addr(&h->src, &h->src_len, AF_INET6, a, (unsigned)(a[32] << 8 | a[33]));
		set_addr(&h->dst, &h->dst_len, AF_INET6, a + 16, (unsigned)(a[34] << 8 | a[35]));
	}
	return RTLS__PP_DONE; /* UNIX: a path is no peer address for us */
}

enum rtls__pp_status rtls__pp_parse(const void *p, size_t n, struct rtls__pp_hdr *h)
{
	const unsigned char *b = p;
	enum rtls__pp_status st = rtls__pp_sniff(p, n);

	memset(h, 0, sizeof(*h));
	if (st != RTLS__PP_DONE)
		return st;
	return b[0] == 'P' ? v1(b, n, h) : v2(b, n, h);
}

size_t rtls__pp_want(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t total;

	if (n == 0)
		return RTLS__PP_V2_FIXED;
	if (b[0] == 'P')
		return n < RTLS__PP_V1_MAX ? RTLS__PP_V1_MAX - n : 1;
	if (n < RTLS__PP_V2_FIXED)
		return RTLS__PP_V2_FIXED - n;
	total = RTLS__PP_V2_FIXED + ((size_t)b[14] << 8 | b[15]);
	return total > n ? total - n : 1;
}

/* --- address blocks ------------------------------------------------------ */

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static void cidr_mask(struct rtls__cidr *c)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = c->bits > i * 8 ? c->bits - i * 8 : 0;

		if (keep < 8)
			c->addr[i] &= (unsigned char)(0xff00u >> keep);
	}
}

int rtls__cidr_parse(const char *s, struct rtls__cidr *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long bits;

	memset(out, 0, sizeof(*out));
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, host, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -EINVAL;
	out->bits = out->family == AF_INET ? 32 : 128;
	if (slash) {
		const unsigned char *b = (const unsigned char *)slash + 1;

		if (v1_number(b, strlen(slash + 1), 3, out->bits, &bits) < 0)
			return -EINVAL;
		out->bits = (unsigned)bits;
	}
	if (out->family == AF_INET6 && out->bits >= 96 && memcmp(out->addr, v4mapped, 12) == 0) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->bits -= 96;
	}
	cidr_mask(out);
	return 0;
}

static int in_block(const struct rtls__cidr *c, int fam, const unsigned char *a)
{
	unsigned whole = c->bits / 8, rest = c->bits % 8;

	if (c->family != fam || memcmp(c->addr, a, whole) != 0)
		return 0;
	return rest == 0 || ((a[whole] ^ c->addr[whole]) & (0xff00u >> rest)) == 0;
}

int rtls__cidr_match(const struct rtls__cidr *list, unsigned n, const struct sockaddr *sa,
		     socklen_t len)
{
	unsigned char v4[4], v6[16];
	int is4 = 0;

	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		memcpy(v4, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		memcpy(v6, v4mapped, 12);
		memcpy(v6 + 12, v4, 4);
		is4 = 1;
	} else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		memcpy(v6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		is4 = memcmp(v6, v4mapped, 12) == 0;
		memcpy(v4, v6 + 12, 4);
	} else {
		return 0;
	}
	/* An IPv4 peer matches IPv4 blocks, and IPv6 blocks that hold its
	 * v4-mapped form (::/0, ::ffff:0:0/96). */
	for (unsigned i = 0; i < n; i++)
		if ((is4 && in_block(&list[i], AF_INET, v4)) || in_block(&list[i], AF_INET6, v6))
			return 1;
	return 0;
}

/* --- the builder --------------------------------------------------------- */

/* An endpoint as the header carries it: IPv4 (v4-mapped IPv6 folded),
 * IPv6, or none of those (fam 0). */
struct ep {
	int fam;
	unsigned char a[16];
	unsigned port;
};

static struct ep endpoint(const struct sockaddr_storage *ss, socklen_t len)
{
	struct ep e = { 0 };

	if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)(const void *)ss;

		e.fam = AF_INET;
		memcpy(e.a, &a4->sin_addr, 4);
		e.port = ntohs(a4->sin_port);
	} else if (ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)(const void *)ss;

		e.fam = AF_INET6;
		memcpy(e.a, &a6->sin6_addr, 16);
		e.port = ntohs(a6->sin6_port);
		if (memcmp(e.a, v4mapped, 12) == 0) {
			e.fam = AF_INET;
			memmove(e.a, e.a + 12, 4);
		}
	}
	return e;
}

static void to_v6(struct ep *e)
{
	if (e->fam != AF_INET)
		return;
	memmove(e->a + 12, e->a, 4);
	memcpy(e->a, v4mapped, 12);
	e->fam = AF_INET6;
}

/* Hex groups only, the longest run of two or more zero groups as "::"
 * (§2.1's form; inet_ntop would write a v4-mapped address dotted). */
static int fmt_v6(char *out, size_t n, const unsigned char *a)
{
	unsigned g[8], best = 0, blen = 0, pos = 0;
	int w = 0;

	for (size_t i = 0; i < 8; i++)
		g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
	for (unsigned i = 0, run = 0; i < 8; i++) {
		run = g[i] ? 0 : run + 1;
		if (run > blen) {
			blen = run;
			best = i + 1 - run;
		}
	}
	for (pos = 0; pos < 8 && w >= 0 && (size_t)w < n; pos++) {
		if (blen >= 2 && pos == best) {
			w += snprintf(out + w, n - (size_t)w, pos == 0 ? "::" : ":");
			pos += blen - 1;
			continue;
		}
		w += snprintf(out + w, n - (size_t)w, "%x%s", g[pos], pos < 7 ? ":" : "");
	}
	return w;
}

static int fmt_addr(char *out, size_t n, const struct ep *e)
{
	if (e->fam == AF_INET)
		return snprintf(out, n, "%u.%u.%u.%u", e->a[0], e->a[1], e->a[2], e->a[3]);
	return fmt_v6(out, n, e->a);
}

/* Both endpoints as one family, or -EAFNOSUPPORT; 0: the client has no
 * address we can carry (Unix socket, none): UNKNOWN / UNSPEC. */
static int endpoints(const struct rtls_conn_info *ci, struct ep *src, struct ep *dst)
{
	int pf = ci->peer_len ? ci->peer.ss_family : AF_UNSPEC;

	*src = endpoint(&ci->peer, ci->peer_len);
	*dst = endpoint(&ci->local, ci->local_len);
	if (pf == AF_UNIX || pf == AF_UNSPEC)
		return 0;
	if (!src->fam || !dst->fam)
		return -EAFNOSUPPORT;
	if (src->fam != dst->fam) {
		to_v6(src);
		to_v6(dst);
	}
	return src->fam;
}

static int build_v1(char *out, size_t n, const struct rtls_conn_info *ci)
{
	char line[RTLS__PP_V1_MAX + 1], sa[48], da[48];
	struct ep src, dst;
	int fam = endpoints(ci, &src, &dst), w;

	if (fam < 0)
		return fam;
	if (fam == 0) {
		w = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	} else {
		fmt_addr(sa, sizeof(sa), &src);
		fmt_addr(da, sizeof(da), &dst);
		w = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
			     fam == AF_INET ? "TCP4" : "TCP6", sa, da, src.port, dst.port);
	}
	if (w < 0 || (size_t)w >= sizeof(line))
		return -EINVAL; /* cannot happen: 107 bytes hold the longest */
	if ((size_t)w > n)
		return -ENOSPC;
	memcpy(out, line, (size_t)w);
	return w;
}

/* Appends one TLV (v[0..vl), no NUL) at out + *at if it fits in n. */
static int put_tlv(char *out, size_t n, size_t *at, unsigned type, const void *v, size_t vl)
{
	if (!v)
		return 0;
	if (vl > 0xffff || n < *at || n - *at < 3 + vl)
		return -ENOSPC;
	out[*at] = (char)type;
	out[*at + 1] = (char)(vl >> 8);
	out[*at + 2] = (char)(vl & 0xff);
	memcpy(out + *at + 3, v, vl);
	*at += 3 + vl;
	return 0;
}

static int build_v2(char *out, size_t n, const struct rtls_conn_info *ci)
{
	struct ep src, dst;
	int fam = endpoints(ci, &src, &dst);
	size_t at = RTLS__PP_V2_FIXED, alen = fam == AF_INET ? 4 : 16;

	if (fam < 0)
		return fam;
	if (n < RTLS__PP_V2_FIXED)
		return -ENOSPC;
	memcpy(out, v2sig, sizeof(v2sig));
	out[12] = 0x21; /* version 2, PROXY: relayed, also without addresses */
	out[13] = (char)(fam == 0 ? 0x00 : fam == AF_INET ? 0x11 : 0x21);
	if (fam) {
		if (n - at < 2 * alen + 4)
			return -ENOSPC;
		memcpy(out + at, src.a, alen);
		memcpy(out + at + alen, dst.a, alen);
		at += 2 * alen;
		out[at++] = (char)(src.port >> 8);
		out[at++] = (char)(src.port & 0xff);
		out[at++] = (char)(dst.port >> 8);
		out[at++] = (char)(dst.port & 0xff);
	}
	if (put_tlv(out, n, &at, RTLS__PP2_TYPE_ALPN, ci->alpn, ci->alpn ? strlen(ci->alpn) : 0) <
		    0 ||
	    put_tlv(out, n, &at, RTLS__PP2_TYPE_AUTHORITY, ci->sni, ci->sni ? strlen(ci->sni) : 0) <
		    0)
		return -ENOSPC;
	if (at - RTLS__PP_V2_FIXED > 0xffff)
		return -ENOSPC;
	out[14] = (char)((at - RTLS__PP_V2_FIXED) >> 8);
	out[15] = (char)((at - RTLS__PP_V2_FIXED) & 0xff);
	return (int)at;
}

int rtls__proxy_header_build(char *out, size_t n, int version, const struct rtls_conn_info *ci)
{
	switch (version) {
	case 1:
		return build_v1(out, n, ci);
	case 2:
		return build_v2(out, n, ci);
	default:
		return -EINVAL;
	}
}
