/* Output buffer: bytes plus an ordered list of file ranges between them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Each reactor is one thread: a thread-local pointer finds its cache
 * without threading the reactor through every wbuf call. */
static _Thread_local struct rtls__small_cache *small;

void rtls__small_cache_bind(struct rtls__small_cache *c) { small = c; }

void rtls__small_cache_free(struct rtls__small_cache *c)
{
	while (c->ndata)
		free(c->data[--c->ndata]);
	while (c->nsegs)
		free(c->segs[--c->nsegs]);
}

/* A block of `size` bytes, from the cache when it is a small one. */
static void *small_take(void **stack, unsigned *n, size_t size, size_t small_size)
{
	if (size == small_size && small && *n)
		return stack[--*n];
	return malloc(size);
}

static void small_give(void **stack, unsigned *n, void *p, size_t size, size_t small_size)
{
	if (p && size == small_size && small && *n < RTLS__SMALL_KEEP)
		stack[(*n)++] = p;
	else
		free(p);
}

static int grow(struct rtls__wbuf *w, size_t need)
{
	/* 1 KiB first: a typical response fits, and it comes from the
	 * reactor's small-block cache, so idle connections can give their
	 * buffers back at little cost. */
	size_t cap = w->cap ? w->cap : RTLS__SMALL_DATA;
	char *p;

	while (cap < need)
		cap *= 2;
	if (!w->cap)
		p = small ? small_take(small->data, &small->ndata, cap, RTLS__SMALL_DATA) : malloc(cap);
	else
		p = realloc(w->data, cap);
	if (!p)
		return -ENOMEM;
	w->data = p;
	w->cap = cap;
	return 0;
}

static struct rtls__seg *new_seg(struct rtls__wbuf *w)
{
	struct rtls__seg *s;

	if (w->nsegs == w->segcap) {
		unsigned cap = w->segcap ? w->segcap * 2 : RTLS__SMALL_SEGS;
		struct rtls__seg *n;

		if (!w->segcap && small)
			n = small_take(small->segs, &small->nsegs, cap * sizeof(*n),
				       RTLS__SMALL_SEGS * sizeof(*n));
		else
			n = realloc(w->segs, cap * sizeof(*n));

		if (!n)
			return NULL;
		w->segs = n;
		w->segcap = cap;
	}
	s = &w->segs[w->nsegs++];
	s->mem_end = w->len;
	s->rec_type = 0;
	s->fd = -1;
	s->off = 0;
	s->flen = 0;
	return s;
}

/* The segment new bytes or a file attach to: the last one, unless it
 * already ends with a file or is a control record. */
static struct rtls__seg *tail_seg(struct rtls__wbuf *w)
{
	struct rtls__seg *s = w->nsegs ? &w->segs[w->nsegs - 1] : NULL;

	if (s && s->fd < 0 && !s->rec_type)
		return s;
	return new_seg(w);
}

char *rtls__wbuf_reserve(struct rtls__wbuf *w, size_t n)
{
	if (w->len + n > w->cap && grow(w, w->len + n) < 0)
		return NULL;
	return w->data + w->len;
}

/* Commits bytes written after rtls__wbuf_reserve(). */
static int commit(struct rtls__wbuf *w, size_t n)
{
	struct rtls__seg *s = tail_seg(w);

	if (!s)
		return -ENOMEM;
	w->len += n;
	s->mem_end = w->len;
	return 0;
}

int rtls__wbuf_append(struct rtls__wbuf *w, const void *p, size_t n)
{
	char *dst = rtls__wbuf_reserve(w, n);

	if (!dst)
		return -ENOMEM;
	memcpy(dst, p, n);
	return commit(w, n);
}

int rtls__wbuf_commit(struct rtls__wbuf *w, size_t n)
{
	return commit(w, n);
}

int rtls__wbuf_add_file(struct rtls__wbuf *w, int fd, off_t off, size_t len)
{
	struct rtls__seg *s = tail_seg(w);

	if (!s)
		return -ENOMEM;
	s->fd = fd;
	s->off = off;
	s->flen = len;
	return 0;
}

int rtls__wbuf_add_record(struct rtls__wbuf *w, uint8_t type, const void *p, size_t n)
{
	char *dst = rtls__wbuf_reserve(w, n);
	struct rtls__seg *s;

	if (!dst || !(s = new_seg(w)))
		return -ENOMEM;
	memcpy(dst, p, n);
	w->len += n;
	s->mem_end = w->len;
	s->rec_type = type;
	return 0;
}

size_t rtls__wbuf_bytes(const struct rtls__wbuf *w)
{
	size_t n = w->len;

	for (unsigned i = 0; i < w->nsegs; i++)
		if (w->segs[i].fd >= 0)
			n += w->segs[i].flen;
	return n;
}

/* Empties the buffer, closing any file not yet sent. Keeps the memory for
 * the next round: a TLS file body is sealed 256 KiB a round, and freeing
 * that between rounds made malloc map, fault in and unmap it every time.
 * Only a pathological buffer goes now; the rest goes when the connection
 * is idle (send.c frees both sides then). */
void rtls__wbuf_reset(struct rtls__wbuf *w)
{
	for (unsigned i = 0; i < w->nsegs; i++)
		if (w->segs[i].fd >= 0)
			close(w->segs[i].fd);
	w->nsegs = 0;
	w->len = 0;
	if (w->cap > RTLS__WBUF_KEEP_MAX) {
		free(w->data);
		w->data = NULL;
		w->cap = 0;
	}
}

void rtls__wbuf_free(struct rtls__wbuf *w)
{
	rtls__wbuf_reset(w);
	if (small) {
		small_give(small->data, &small->ndata, w->data, w->cap, RTLS__SMALL_DATA);
		small_give(small->segs, &small->nsegs, w->segs, w->segcap * sizeof(*w->segs),
			   RTLS__SMALL_SEGS * sizeof(*w->segs));
	} else {
		free(w->data);
		free(w->segs);
	}
	memset(w, 0, sizeof(*w));
}

void rtls__wbuf_consume(struct rtls__wbuf *w, unsigned segs, size_t mem, size_t file)
{
	size_t cut;

	for (unsigned i = 0; i < segs && i < w->nsegs; i++)
		if (w->segs[i].fd >= 0)
			close(w->segs[i].fd);
	if (segs >= w->nsegs) {
		w->nsegs = 0;
		w->len = 0;
		return;
	}
	/* Byte offset where the remaining data starts. */
	cut = (segs ? w->segs[segs - 1].mem_end : 0) + mem;
	memmove(w->segs, w->segs + segs, (w->nsegs - segs) * sizeof(*w->segs));
	w->nsegs -= segs;
	if (file) {
		w->segs[0].off += (off_t)file;
		w->segs[0].flen -= file;
	}
	memmove(w->data, w->data + cut, w->len - cut);
	w->len -= cut;
	for (unsigned i = 0; i < w->nsegs; i++)
		w->segs[i].mem_end -= cut;
}
