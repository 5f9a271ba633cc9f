/* See cmsg.h. CMSG_FIRSTHDR/CMSG_NXTHDR are not used: they check that the
 * next header fits, but not that the current one's cmsg_len does, and a
 * huge cmsg_len overflows their pointer arithmetic. Offsets cannot. */
#include <string.h>
#include <sys/socket.h>

#include "cmsg.h"

int rtls__cmsg_find_u8(const unsigned char *ctl, size_t len, int level, int type)
{
	size_t off = 0, step;
	struct cmsghdr h;

	while (len - off >= sizeof(h)) {
		memcpy(&h, ctl + off, sizeof(h)); /* ctl need not be aligned */
		if (h.cmsg_len < sizeof(h) || h.cmsg_len > len - off)
			return -1;
		if (h.cmsg_level == level && h.cmsg_type == type && h.cmsg_len >= CMSG_LEN(1))
			return ctl[off + CMSG_LEN(0)];
		step = CMSG_ALIGN(h.cmsg_len);
		if (step > len - off)
			return -1;
		off += step;
	}
	return -1;
}
