/* The output queue: bytes and file ranges stay in order. */
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"
#include "unit/check.h"

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
	/* reset closes unsent files and frees an oversized buffer */
	rtls__wbuf_reset(&w);
	CHECK_EQ_INT(w.len, 0);
	CHECK_EQ_INT(w.nsegs, 0);
	CHECK(fcntl(fd, F_GETFD) < 0);
	CHECK(w.data == NULL);
	rtls__wbuf_free(&w);
	CHECK_DONE();
}
