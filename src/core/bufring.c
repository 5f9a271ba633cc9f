/* The per-reactor provided-buffer ring that multishot receives pick from.
 *
 * Ownership: a buffer belongs to the kernel while it sits in the ring, to
 * the connection from the CQE that names it until rtls_buf_release(), and
 * back to the ring after rtls__bufring_put(). Returns are batched and made
 * visible to the kernel once per loop iteration (rtls__bufring_publish). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

int rtls__bufring_init(struct rtls__reactor *r, unsigned count, unsigned size, uint16_t bgid)
{
	struct rtls__bufring *b = &r->bufs;
	struct io_uring_buf_reg reg;
	size_t ring_bytes = count * sizeof(struct io_uring_buf);
	int ret;

	/* The kernel requires a power-of-two entry count. */
	if (count == 0 || (count & (count - 1)) || count > 32768)
		return -EINVAL;
	b->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (b->br == MAP_FAILED) {
		b->br = NULL;
		return -ENOMEM;
	}
	/* mmap, not malloc: the kernel fills these buffers behind the back
	 * of tools such as valgrind's memcheck, which would take malloc'd
	 * bytes written by a RECV completion for uninitialised; a mapping
	 * counts as initialised (zero pages). Page-aligned as a bonus. */
	b->mem = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
		      MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (b->mem == MAP_FAILED) {
		b->mem = NULL;
		ret = -ENOMEM;
		goto err_unmap;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)b->br;
	reg.ring_entries = count;
	reg.bgid = bgid;
	/* On epoll the ring is ours alone: epoll.c takes from it. */
	ret = r->ep ? 0 : io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (ret < 0)
		goto err_free;
	io_uring_buf_ring_init(b->br);
	b->count = count;
	b->size = size;
	b->mask = count - 1; /* io_uring_buf_ring_mask(), without its int */
	b->bgid = bgid;
	b->to_advance = 0;
	b->out = count; /* none in the ring until the first publish */
	for (unsigned i = 0; i < count; i++)
		rtls__bufring_put(r, (uint16_t)i);
	rtls__bufring_publish(r);
	return 0;

err_free:
	munmap(b->mem, (size_t)count * size);
	b->mem = NULL;
err_unmap:
	munmap(b->br, ring_bytes);
	b->br = NULL;
	return ret;
}

void rtls__bufring_free(struct rtls__reactor *r)
{
	struct rtls__bufring *b = &r->bufs;

	if (!b->br)
		return;
	if (r->ring_ok)
		io_uring_unregister_buf_ring(&r->ring, b->bgid);
	munmap(b->br, b->count * sizeof(struct io_uring_buf));
	munmap(b->mem, (size_t)b->count * b->size);
	memset(b, 0, sizeof(*b));
}

char *rtls__bufring_addr(struct rtls__reactor *r, uint16_t bid)
{
	return r->bufs.mem + (size_t)bid * r->bufs.size;
}

void rtls__bufring_put(struct rtls__reactor *r, uint16_t bid)
{
	struct rtls__bufring *b = &r->bufs;

	io_uring_buf_ring_add(b->br, rtls__bufring_addr(r, bid), b->size, bid,
			      (int)b->mask, (int)b->to_advance);
	b->to_advance++;
}

void rtls__bufring_publish(struct rtls__reactor *r)
{
	struct rtls__bufring *b = &r->bufs;

	if (b->to_advance) {
		io_uring_buf_ring_advance(b->br, (int)b->to_advance);
		b->out -= b->to_advance;
		b->to_advance = 0;
	}
}
