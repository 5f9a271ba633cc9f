/* libFuzzer target for what kernel RX hands us besides data: the record
 * type in the RECVMSG control buffer (src/core/cmsg.c) and the decision
 * on each control record (rtls__rec_classify in src/tls/record.c).
 *
 * Input: byte 0 the record type, byte 1 bit 0 "TLS 1.3", the rest the
 * record's plaintext, flush against the end of libFuzzer's allocation so
 * ASan sees a read past it. Oracles for the decision:
 *  - data exactly for type 23; EOF exactly for a 2-byte alert with
 *    description 0; a peer alert keeps the record's level and description;
 *  - a KeyUpdate is accepted exactly when TLS 1.3 and the record is one
 *    whole message 24, 0, 0, 1, v with v 0 or 1, and update_requested = v;
 *  - everything else fails, with a reason and an alert from RFC 8446 §6.
 * The whole input is also read as a control buffer (unaligned, exact
 * size), and as a list of well-formed control messages built with the
 * CMSG macros, whose first TLS record-type byte must be found. */
#include "check.h"
#include "../src/core/cmsg.h"
#include "../src/tls/record.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SOL_TLS_ 282
#define TLS_GET_RECORD_TYPE_ 2

static int valid_alert(uint8_t a)
{
	static const uint8_t codes[] = {
		0,  10, 20, 21, 22, 30, 40,  41,  42,  43,  44,  45,  46,  47,  48,  49, 50,
		51, 60, 70, 71, 80, 86, 90, 100, 109, 110, 111, 112, 113, 114, 115, 116, 120,
	};

	return memchr(codes, a, sizeof(codes)) != NULL && a != 0;
}

static void fuzz_classify(int type, const uint8_t *p, size_t n, bool is13)
{
	struct rtls__rec_verdict v;
	int ku = is13 && type == RTLS_CT_HANDSHAKE && n == 5 && p[0] == 24 && p[1] == 0 &&
		 p[2] == 0 && p[3] == 1 && p[4] <= 1;

	rtls__rec_classify(type, p, n, is13, &v);
	/* Tickets only: a record that starts a message starts a ticket. */
	{
		struct rtls__hs_skip k = { 0 };

		if (rtls__rec_skip_tickets(&k, p, n))
			check(n >= 1 && p[0] == 4 && k.hdr_len < 4);
	}
	check((v.action == RTLS_REC_DATA) == (type == RTLS_CT_APPLICATION_DATA));
	check((v.action == RTLS_REC_EOF) == (type == RTLS_CT_ALERT && n == 2 && p[1] == 0));
	check((v.action == RTLS_REC_KEY_UPDATE) == ku);
	switch (v.action) {
	case RTLS_REC_DATA:
	case RTLS_REC_EOF:
		break;
	case RTLS_REC_PEER_ALERT:
		check(type == RTLS_CT_ALERT && n == 2 && v.level == p[0] && v.desc == p[1]);
		break;
	case RTLS_REC_KEY_UPDATE:
		check(v.update_requested == (p[4] == 1));
		break;
	case RTLS_REC_FAIL:
		check(valid_alert(v.alert) && v.why && v.why[0]);
		/* The alert a malformed message asks for (§6.2), not a
		 * generic one. */
		if (type == RTLS_CT_ALERT)
			check(v.alert == 50); /* decode_error */
		else if (type == RTLS_CT_HANDSHAKE && is13 && n && p[0] == 24)
			check(v.alert == 10 || v.alert == 47 || v.alert == 50);
		else
			check(v.alert == 10); /* unexpected_message */
		break;
	default:
		check(0);
	}
}

/* Control messages built the way the kernel writes them: (level byte,
 * type byte, data length byte, data) from the input, 0 meaning SOL_TLS. */
static void fuzz_cmsg_built(const uint8_t *d, size_t size)
{
	union {
		unsigned char buf[512];
		struct cmsghdr align;
	} u;
	struct msghdr m;
	struct cmsghdr *cm;
	size_t used = 0, i = 0;
	int want = -1;

	memset(&u, 0, sizeof(u));
	memset(&m, 0, sizeof(m));
	m.msg_control = u.buf;
	m.msg_controllen = sizeof(u.buf);
	cm = CMSG_FIRSTHDR(&m);
	while (cm && i + 3 <= size) {
		int level = d[i] ? d[i] : SOL_TLS_, type = d[i + 1] & 3;
		size_t dl = d[i + 2] & 15;

		if (i + 3 + dl > size || used + CMSG_SPACE(dl) > sizeof(u.buf))
			break;
		cm->cmsg_level = level;
		cm->cmsg_type = type;
		cm->cmsg_len = CMSG_LEN(dl);
		memcpy(CMSG_DATA(cm), d + i + 3, dl);
		if (want < 0 && level == SOL_TLS_ && type == TLS_GET_RECORD_TYPE_ && dl >= 1)
			want = d[i + 3];
		used += CMSG_SPACE(dl);
		i += 3 + dl;
		cm = CMSG_NXTHDR(&m, cm);
	}
	check(rtls__cmsg_find_u8(u.buf, used, SOL_TLS_, TLS_GET_RECORD_TYPE_) == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int t;

	if (size >= 2)
		fuzz_classify(data[0], data + 2, size - 2, data[1] & 1);
	/* Raw bytes as a control buffer: whatever the headers claim. */
	t = rtls__cmsg_find_u8(data, size, SOL_TLS_, TLS_GET_RECORD_TYPE_);
	check(t >= -1 && t <= 255);
	fuzz_cmsg_built(data, size);
	return 0;
}
