/* The output queue: bytes and file ranges stay in order. */
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"
#include "unit/check.h"

/* With a big-block cache bound, a freed side's bigger block waits there
 * (bounded in bytes) for the next side that needs one of its size, empty
 * or growing; a trim frees what no side took since the last one. */
static void big_blocks(void)
{
	static struct rtls__big_cache cache;
	const size_t n1m = RTLS__BIG_KEEP_BYTES / RTLS__WBUF_KEEP_MAX;
	struct rtls__wbuf a = { 0 }, b = { 0 }, t[RTLS__BIG_KEEP_BYTES / RTLS__WBUF_KEEP_MAX + 2];
	char *blk;

	rtls__big_cache_bind(&cache);
	CHECK(rtls__wbuf_append(&a, "small", 5) == 0);
	rtls__wbuf_free(&a);
	CHECK_EQ_INT(cache.bytes, 0); /* the small block is not for this cache */
	CHECK(rtls__wbuf_reserve(&a, 200000) != NULL);
	CHECK_EQ_INT(a.cap, 256 * 1024);
	blk = a.data;
	rtls__wbuf_free(&a);
	CHECK_EQ_INT(cache.bytes, 256 * 1024);
	CHECK(a.data == NULL && a.cap == 0);
	CHECK(rtls__wbuf_reserve(&b, 1000) != NULL); /* another size: not it */
	CHECK(b.data != blk);
	CHECK(rtls__wbuf_append(&b, "abc", 3) == 0);
	CHECK(rtls__wbuf_reserve(&b, 140000) == blk + 3); /* grown into it */
	CHECK_MEM(b.data, b.len, "abc");
	CHECK_EQ_INT(cache.bytes, 0);
	rtls__wbuf_free(&b);
	CHECK_EQ_INT(cache.n[7], 1); /* 2 KiB << 7 */
	/* Bounded: what does not fit is freed. */
	memset(t, 0, sizeof(t));
	for (size_t i = 0; i < n1m + 2; i++)
		CHECK(rtls__wbuf_reserve(&t[i], RTLS__WBUF_KEEP_MAX) != NULL);
	for (size_t i = 0; i < n1m + 2; i++)
		rtls__wbuf_free(&t[i]);
	CHECK(cache.bytes <= RTLS__BIG_KEEP_BYTES);
	CHECK_EQ_INT(cache.n[9], n1m - 1); /* the 256 KiB block holds the rest */
	/* A trim frees what stayed unused since the last one: first the
	 * blocks that were there before it (low was 0), ... */
	rtls__big_cache_trim(&cache);
	CHECK_EQ_INT(cache.n[9], n1m - 1);
	CHECK(rtls__wbuf_reserve(&a, RTLS__WBUF_KEEP_MAX) != NULL);
	CHECK(rtls__wbuf_reserve(&b, RTLS__WBUF_KEEP_MAX) != NULL);
	rtls__wbuf_free(&a);
	/* ...then what the lists never went below: all the 1 MiB blocks but
	 * the one taken and given back. */
	rtls__big_cache_trim(&cache);
	CHECK_EQ_INT(cache.n[9], 1);
	CHECK_EQ_INT(cache.n[7], 0);
	rtls__big_cache_trim(&cache);
	CHECK_EQ_INT(cache.bytes, 0); /* idle: nothing kept */
	rtls__big_cache_bind(NULL);
	rtls__wbuf_free(&b); /* no cache: free() */
	CHECK_EQ_INT(cache.bytes, 0);
	rtls__big_cache_bind(&cache);
	memset(&a, 0, sizeof(a)); /* no hint from its 1 MiB rounds */
	CHECK(rtls__wbuf_reserve(&a, 5000) != NULL);
	rtls__wbuf_free(&a);
	CHECK_EQ_INT(cache.n[2], 1);
	rtls__big_cache_free(&cache);
	CHECK_EQ_INT(cache.bytes, 0);
	CHECK(cache.head[2] == NULL);
	rtls__big_cache_bind(NULL);
}

/* A side given back starts its next round at the size its last round
 * reached (no copy per doubling while a stream refills it), and one
 * small round later at the small size again. */
static void growth_hint(void)
{
	struct rtls__wbuf a = { 0 };
	char chunk[16384];

	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 4; i++)
		CHECK(rtls__wbuf_append(&a, chunk, sizeof(chunk)) == 0);
	CHECK_EQ_INT(a.cap, 65536);
	rtls__wbuf_free(&a);
	CHECK(a.data == NULL && a.cap == 0);
	CHECK(rtls__wbuf_append(&a, chunk, 10) == 0);
	CHECK_EQ_INT(a.cap, 65536); /* one block, as big as last time */
	rtls__wbuf_free(&a);
	CHECK(rtls__wbuf_append(&a, chunk, 10) == 0);
	CHECK_EQ_INT(a.cap, RTLS__SMALL_DATA); /* the last round was small */
	rtls__wbuf_free(&a);
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
	big_blocks();
	small_blocks();
	growth_hint();
	CHECK_DONE();
}
