/* The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt,
 * 2020/03/05): the header a proxy puts before a relayed connection's first
 * byte to say whose connection it is. Pure: no I/O, no allocation, no
 * errno; fuzzed by fuzz/proxy_header.c. The engine's side (the phase a
 * connection goes through before its handler) is proxyphase.c. */
#ifndef RTLS_CORE_PROXYPROTO_H
#define RTLS_CORE_PROXYPROTO_H

#include "ringtls/ringtls.h"

/* The longest v1 line, CRLF included (spec §2.1: "PROXY UNKNOWN" with two
 * full IPv6 addresses and ports). */
#define RTLS__PP_V1_MAX 107
/* v2: the 12-byte signature, version/command, family/protocol, length. */
#define RTLS__PP_V2_FIXED 16
/* The longest v2 header we take, fixed part included. The length field
 * allows 16 + 65535; HAProxy reads the header into one buffer of
 * tune.bufsize (16 KiB by default) and fails a longer one, so no sender
 * that works with HAProxy sends more, and a trusted source cannot make a
 * connection hold more than this while its header arrives. */
#define RTLS__PP_V2_MAX 16384

/* PP2 TLV types we look at (spec §2.2). */
#define RTLS__PP2_TYPE_ALPN 0x01
#define RTLS__PP2_TYPE_AUTHORITY 0x02
#define RTLS__PP2_TYPE_CRC32C 0x03
#define RTLS__PP2_TYPE_NOOP 0x04
#define RTLS__PP2_TYPE_UNIQUE_ID 0x05
#define RTLS__PP2_TYPE_SSL 0x20

/* What the first bytes of a connection are. */
enum rtls__pp_status {
	RTLS__PP_NOT_PROXY,  /* not a PROXY header: the stream's own bytes */
	RTLS__PP_INCOMPLETE, /* a header (or the start of a signature) so far */
	RTLS__PP_BAD,        /* a signature, then something the spec forbids */
	RTLS__PP_DONE,       /* a whole, valid header */
};

enum rtls__pp_command {
	RTLS__PP_CMD_LOCAL = 0, /* the proxy's own connection (health check):
				 * keep the socket's addresses */
	RTLS__PP_CMD_PROXY = 1, /* relayed: the header's addresses apply */
};

/* A parsed header. Addresses are filled (src_len, dst_len > 0) only for a
 * PROXY command over TCP on IPv4 or IPv6: v1 TCP4/TCP6, v2 0x11/0x21. In
 * every other valid case (v1 UNKNOWN, v2 LOCAL, UNSPEC, UNIX, DGRAM) they
 * stay empty and the connection keeps its socket's addresses (spec §2.2:
 * a receiver falls back to UNSPEC for what it does not support). alpn and
 * authority point into the parsed bytes (v2 TLVs), or are NULL. */
struct rtls__pp_hdr {
	unsigned version; /* 1 or 2 */
	enum rtls__pp_command command;
	size_t len; /* header bytes, to skip */
	struct sockaddr_storage src, dst;
	socklen_t src_len, dst_len;
	const unsigned char *alpn, *authority;
	size_t alpn_len, authority_len;
	const char *why; /* RTLS__PP_BAD: for the log, static */
};

/* Looks at p[0..n), the first n bytes of a connection. NOT_PROXY as soon
 * as they differ from both signatures ("PROXY " and v2's 12 bytes);
 * INCOMPLETE while they could still become a valid header; BAD (with
 * h->why) as soon as they cannot; DONE with h->len the header's length,
 * which may be less than n (the rest is the stream's). The answer depends
 * only on the bytes: a prefix of an input that is BAD or DONE is
 * INCOMPLETE or the same answer. Reads nothing at or past p + n. */
enum rtls__pp_status rtls__pp_parse(const void *p, size_t n, struct rtls__pp_hdr *h);

/* Whether p[0..n) begins with a PROXY signature: NOT_PROXY, INCOMPLETE
 * (a prefix of one), or DONE (a whole one; the rest is not looked at).
 * For a source that may not send a header: seeing the signature is
 * enough to refuse it. */
enum rtls__pp_status rtls__pp_sniff(const void *p, size_t n);

/* Bytes a read may take from the stream after p[0..n) without passing the
 * end of the header, where that end is known (v2 once its length is in);
 * else the most the header can still need. Never 0; only for n where
 * rtls__pp_parse() said INCOMPLETE. */
size_t rtls__pp_want(const void *p, size_t n);

/* An address block: IPv4 or IPv6, `bits` leading bits significant. */
struct rtls__cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned bits;
	unsigned char addr[16]; /* network order; bits past `bits` are 0 */
};

/* "10.0.0.0/8", "::1/128", "192.168.1.7" (/32), "2001:db8::/32". A
 * v4-mapped IPv6 block (::ffff:a.b.c.d/n, n >= 96) is kept as the IPv4
 * block it names, as peers arrive both ways. Bits set past the prefix are
 * ignored (as nginx's set_real_ip_from). 0, or -EINVAL. */
int rtls__cidr_parse(const char *s, struct rtls__cidr *out);

/* 1 if sa (an accepted socket's peer) lies in one of list[0..n): an IPv4
 * peer that a dual-stack socket reports as ::ffff:a.b.c.d is matched as
 * a.b.c.d. 0 otherwise, also for a family other than IPv4/IPv6. */
int rtls__cidr_match(const struct rtls__cidr *list, unsigned n, const struct sockaddr *sa,
		     socklen_t len);

/* Writes a PROXY header for the connection ci describes (the client is
 * ci->peer, the address it connected to ci->local) into out[0..n), to be
 * sent first on a connection to an upstream: version 1 (text) or 2
 * (binary; with PP2_TYPE_ALPN and PP2_TYPE_AUTHORITY TLVs from ci->alpn
 * and ci->sni when set). IPv4 addresses that a dual-stack socket reports
 * as v4-mapped IPv6 go as IPv4; a mixed pair goes as IPv6. A client on a
 * Unix socket (or with no address) is sent as v1 "PROXY UNKNOWN", v2
 * command PROXY with family UNSPEC: the spec's words for a relayed
 * connection whose family it cannot carry; the receiver then keeps the
 * connection's own addresses. No NUL is written. Returns the bytes
 * written; -ENOSPC if n is too small; -EAFNOSUPPORT for an IP client
 * without an IP local address, or another family; -EINVAL for a version
 * other than 1 or 2. */
int rtls__proxy_header_build(char *out, size_t n, int version, const struct rtls_conn_info *ci);

#endif
