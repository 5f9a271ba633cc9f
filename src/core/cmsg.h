/* Control messages from a RECVMSG, read without trusting their lengths.
 * Pure: no I/O; fuzzed by fuzz/tls_control.c. */
#ifndef RTLS_CORE_CMSG_H
#define RTLS_CORE_CMSG_H

#include <stddef.h>

/* The first data byte of the first control message of (level, type) that
 * has one, in ctl[0..len) (len: the msg_controllen the kernel wrote back,
 * at most the buffer's size). Returns 0..255, or -1 where there is none.
 * Reads no byte at or past ctl + len, whatever the headers claim. */
int rtls__cmsg_find_u8(const unsigned char *ctl, size_t len, int level, int type);

#endif
