/* The output queue: bytes and file ranges stay in order. */
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"
#include "unit/check.h"

/* Big sides a connection lets go are kept by the reactor, bounded, and
 * given to the next empty side that needs that much. */
static void spares(void)
{
	static struct rtls__reactor r;
	struct rtls__wbuf a = { 0 }, b = { 0 };
	char *big;

	CHECK(rtls__wbuf_append(&a, "small", 5) == 0);
	rtls__side_release(&r, &a);
	CHECK_EQ_INT(r.nspare, 0); /* small buffers are simply freed */
	CHECK(rtls__side_reserve(&r, &a, 200000) != NULL);
	big = a.data;
	rtls__side_release(&r, &a);
	CHECK_EQ_INT(r.nspare, 1);
	CHECK(a.data == NULL && a.cap == 0);
	CHECK(rtls__side_reserve(&r, &b, 1000) != NULL); /* small need: no spare */
	CHECK_EQ_INT(r.nspare, 1);
	CHECK(b.data != big);
	CHECK(rtls__wbuf_commit(&b, 3) == 0);
	CHECK(rtls__side_reserve(&r, &b, 100000) != NULL); /* not empty: no spare */
	CHECK_EQ_INT(r.nspare, 1);
	rtls__wbuf_free(&b);
	CHECK(rtls__side_reserve(&r, &b, 100000) == big);
	CHECK_EQ_INT(r.nspare, 0);
	struct rtls__wbuf t[RTLS__SPARE_SIDES + 2] = { { 0 } };

	for (unsigned i = 0; i < RTLS__SPARE_SIDES + 2; i++)
		CHECK(rtls__side_reserve(&r, &t[i], RTLS__SPARE_MIN) != NULL);
	for (unsigned i = 0; i < RTLS__SPARE_SIDES + 2; i++)
		rtls__side_release(&r, &t[i]);
	CHECK_EQ_INT(r.nspare, RTLS__SPARE_SIDES); /* bounded */
	rtls__side_release(&r, &b);
	rtls__spares_free(&r);
	CHECK_EQ_INT(r.nspare, 0);
}

/* With a cache bound, a freed side's first data block and segment array
 * go to it (bounded) and the next side takes them back; grown blocks and
 * blocks freed with no cache bound go to free(). */
static void small_blocks(void)
{
	static struct rtls__small_cache cache;
	struct rtls__wbuf a = { 0 }, b = { 0 }, many[RTLS__SMALL_KEEP + 3];
	char *data;
	struct rtls__seg *segs;

	rtls__small_cache_bind(&cache);
	CHECK(rtls__wbuf_append(&a, "hello", 5) == 0);
	CHECK_EQ_INT(a.cap, RTLS__SMALL_DATA);
	data = a.data;
	segs = a.segs;
	rtls__wbuf_free(&a);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_DATA], 1);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_SEGS], 1);
	CHECK(rtls__wbuf_append(&b, "again", 5) == 0);
	CHECK(b.data == data && b.segs == segs); /* the same blocks, no malloc */
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_DATA], 0);
	CHECK_MEM(b.data, b.len, "again");
	CHECK(rtls__wbuf_reserve(&b, 3000) != NULL); /* grown: not a small block */
	rtls__wbuf_free(&b);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_DATA], 0);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_SEGS], 1);
	memset(many, 0, sizeof(many));
	for (unsigned i = 0; i < RTLS__SMALL_KEEP + 3; i++)
		CHECK(rtls__wbuf_append(&many[i], "x", 1) == 0);
	for (unsigned i = 0; i < RTLS__SMALL_KEEP + 3; i++)
		rtls__wbuf_free(&many[i]);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_DATA], RTLS__SMALL_KEEP); /* bounded */
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_SEGS], RTLS__SMALL_KEEP);
	rtls__small_cache_bind(NULL);
	CHECK(rtls__wbuf_append(&a, "plain", 5) == 0);
	rtls__wbuf_free(&a);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_DATA], RTLS__SMALL_KEEP);
	rtls__small_cache_free(&cache);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_DATA], 0);
	CHECK_EQ_INT(cache.n[RTLS__SMALL_KIND_SEGS], 0);
}

int main(void)
{
	struct rtls__wbuf w = { 0 };
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	CHECK(fd >= 0);
	CHECK_EQ_INT(rtls__wbuf_append(&w, "head", 4), 0);
	CHECK_EQ_INT(rtls__wbuf_append(&w, "ers", 3), 0);
	CHECK_EQ_INT(w.nsegs, 1);
	CHECK_EQ_INT(rtls__wbuf_add_file(&w, fd, 10, 100), 0);
	CHECK_EQ_INT(w.nsegs, 1); /* the file attaches to the bytes before it */
	CHECK_EQ_INT(rtls__wbuf_append(&w, "next", 4), 0);
	CHECK_EQ_INT(w.nsegs, 2); /* bytes after a file start a new segment */
	CHECK_EQ_INT(w.segs[0].mem_end, 7);
	CHECK_EQ_INT(w.segs[0].fd, fd);
	CHECK_EQ_INT(w.segs[0].off, 10);
	CHECK_EQ_INT(w.segs[1].mem_end, 11);
	CHECK_EQ_INT(w.segs[1].fd, -1);
	CHECK_EQ_INT(rtls__wbuf_bytes(&w), 111);
	CHECK_MEM(w.data, w.len, "headersnext");
	/* reserve + commit formats in place */
	char *p = rtls__wbuf_reserve(&w, 100000);
	CHECK(p != NULL);
	memset(p, 'x', 100000);
	CHECK_EQ_INT(rtls__wbuf_commit(&w, 5), 0);
	CHECK_EQ_INT(w.len, 16);
	/* reset closes unsent files and keeps a round-sized buffer... */
	rtls__wbuf_reset(&w);
	CHECK_EQ_INT(w.len, 0);
	CHECK_EQ_INT(w.nsegs, 0);
	CHECK(fcntl(fd, F_GETFD) < 0);
	CHECK(w.data != NULL);
	CHECK(w.cap >= 100000);
	/* ...but not a pathological one */
	CHECK(rtls__wbuf_reserve(&w, 2 * RTLS__WBUF_KEEP_MAX) != NULL);
	rtls__wbuf_reset(&w);
	CHECK(w.data == NULL);
	rtls__wbuf_free(&w);
	/* Zero bytes on an empty buffer: a write queues nothing and
	 * succeeds; a reserve points somewhere (NULL means no memory). */
	CHECK_EQ_INT(rtls__wbuf_append(&w, "", 0), 0);
	CHECK_EQ_INT(w.nsegs, 0);
	CHECK(rtls__wbuf_reserve(&w, 0) != NULL);
	rtls__wbuf_free(&w);
	spares();
	small_blocks();
	CHECK_DONE();
}
