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
	for (unsigned k = 0; k < RTLS__SMALL_KINDS; k++)
		while (c->n[k])
			free(c->blk[k][--c->n[k]]);
}

/* The byte size of each kind's small block. */
static const size_t small_size[RTLS__SMALL_KINDS] = {
	[RTLS__SMALL_KIND_DATA] = RTLS__SMALL_DATA,
	[RTLS__SMALL_KIND_SEGS] = RTLS__SMALL_SEGS * sizeof(struct rtls__seg),
};

/* A first block of `size` bytes: from the cache when it is the small one. */
static void *small_take(unsigned kind, size_t size)
{
	if (small && size == small_size[kind] && small->n[kind])
		return small->blk[kind][--small->n[kind]];
	return malloc(size);
}

/* Gives a block back: to the cache when it is the small one and there is
 * room, else to free(). */
static void small_give(unsigned kind, void *p, size_t size)
{
	if (p && small && size == small_size[kind] && small->n[kind] < RTLS__SMALL_KEEP)
		small->blk[kind][small->n[kind]++] = p;
	else
		free(p);
}

/* Bigger data blocks go through the reactor's big-block cache, bound the
 * same way. */
static _Thread_local struct rtls__big_cache *big;

void rtls__big_cache_bind(struct rtls__big_cache *c)
{
	big = c;
}

/* The cache list for a block of `size` bytes, or -1 for a size it does not
 * keep (grow() makes every block 1 KiB times a power of two). */
static int big_class(size_t size)
{
	if (size <= RTLS__SMALL_DATA || size > RTLS__WBUF_KEEP_MAX || (size & (size - 1)))
		return -1;
	return __builtin_ctzl(size) - __builtin_ctzl(RTLS__SMALL_DATA) - 1;
}

static size_t big_size(unsigned k)
{
	return (size_t)RTLS__SMALL_DATA << (k + 1);
}

static struct rtls__big_blk *big_pop(struct rtls__big_cache *c, unsigned k)
{
	struct rtls__big_blk *b = c->head[k];

	c->head[k] = b->next;
	c->n[k]--;
	c->bytes -= big_size(k);
	return b;
}

/* A cached block of `size` bytes, or NULL. */
static void *big_take(size_t size)
{
	int k = big_class(size);
	struct rtls__big_blk *b;

	if (!big || k < 0 || !big->head[k])
		return NULL;
	b = big_pop(big, (unsigned)k);
	if (big->n[k] < big->low[k])
		big->low[k] = big->n[k];
	return b;
}

/* Keeps a block of `size` bytes if it is one the cache holds and there is
 * room; false: the caller frees it. */
static bool big_give(void *p, size_t size)
{
	int k = big_class(size);
	struct rtls__big_blk *b = p;

	if (!p || !big || k < 0 || big->bytes + size > RTLS__BIG_KEEP_BYTES)
		return false;
	b->next = big->head[k];
	big->head[k] = b;
	big->n[k]++;
	big->bytes += size;
	return true;
}

/* What the list never went below since the last trim, no side needed:
 * free that many, so a steady load keeps what it cycles through and an
 * idle reactor keeps nothing after two trims. */
void rtls__big_cache_trim(struct rtls__big_cache *c)
{
	for (unsigned k = 0; k < RTLS__BIG_CLASSES; k++) {
		for (; c->low[k] && c->head[k]; c->low[k]--)
			free(big_pop(c, k));
		c->low[k] = c->n[k];
	}
}

void rtls__big_cache_free(struct rtls__big_cache *c)
{
	for (unsigned k = 0; k < RTLS__BIG_CLASSES; k++) {
		while (c->head[k])
			free(big_pop(c, k));
		c->low[k] = 0;
	}
}

/* A data block goes back to whichever cache keeps its size, else to free(). */
static void data_give(void *p, size_t size)
{
	if (!big_give(p, size))
		small_give(RTLS__SMALL_KIND_DATA, p, size);
}

static int grow(struct rtls__wbuf *w, size_t need)
{
	/* 1 KiB first: a typical response fits, and it comes from the
	 * reactor's small-block cache, so idle connections can give their
	 * buffers back at little cost. */
	size_t cap = w->cap ? w->cap : RTLS__SMALL_DATA;
	char *p;

	/* A side's first block: as big as the last round needed. */
	if (!w->cap)
		while (cap < w->hint && cap < RTLS__WBUF_KEEP_MAX)
			cap *= 2;
	while (cap < need)
		cap *= 2;
	p = big_take(cap);
	if (p) {
		/* A cached block instead of realloc: its pages are already
		 * faulted in. */
		if (w->len)
			memcpy(p, w->data, w->len);
		data_give(w->data, w->cap);
	} else {
		p = w->cap ? realloc(w->data, cap) : small_take(RTLS__SMALL_KIND_DATA, cap);
	}
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
		struct rtls__seg *n = w->segcap ? realloc(w->segs, cap * sizeof(*n))
					       : small_take(RTLS__SMALL_KIND_SEGS, cap * sizeof(*n));

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
	s->fwd = false;
	return s;
}

/* The segment new bytes or a file attach to: the last one, unless it
 * already ends with a file or is a control record. */
static struct rtls__seg *tail_seg(struct rtls__wbuf *w)
{
	if (w->nsegs) {
		struct rtls__seg *s = &w->segs[w->nsegs - 1];

		if (s->fd < 0 && !s->rec_type)
			return s;
	}
	return new_seg(w);
}

char *rtls__wbuf_reserve(struct rtls__wbuf *w, size_t n)
{
	/* Even 0 bytes need somewhere to point: NULL means out of memory,
	 * and an empty buffer has no data yet. */
	size_t need = w->len + (n ? n : 1);

	if (need > w->peak)
		w->peak = need;
	if (need > w->cap && grow(w, need) < 0)
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
	char *dst;

	if (!n)
		return 0; /* nothing to queue */
	dst = rtls__wbuf_reserve(w, n);

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

int rtls__wbuf_add_pipe(struct rtls__wbuf *w, int fd, size_t len, uint32_t slot, uint32_t gen)
{
	struct rtls__seg *s = tail_seg(w);

	if (!s)
		return -ENOMEM;
	s->fd = fd;
	s->flen = len;
	s->fwd = true;
	s->fwd_slot = slot;
	s->fwd_gen = gen;
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
	size_t hint = w->peak;

	rtls__wbuf_reset(w);
	data_give(w->data, w->cap);
	small_give(RTLS__SMALL_KIND_SEGS, w->segs, w->segcap * sizeof(*w->segs));
	memset(w, 0, sizeof(*w));
	w->hint = hint; /* the next round's first block (grow()) */
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
