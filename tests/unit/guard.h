/* Inputs copied flush against a PROT_NONE page (as picohttpparser's tests
 * do), so that reading one byte past their length faults even without
 * ASan. For the parsers' unit tests; one guard area per test program. */
#ifndef RTLS_TEST_GUARD_H
#define RTLS_TEST_GUARD_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *guard_end; /* first byte of the PROT_NONE page */
static size_t guard_page;

/* Maps the guard area; on failure says why and exits 1. */
static inline void guard_init(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *p;

	if (pg > 0) {
		guard_page = (size_t)pg;
		p = mmap(NULL, 2 * guard_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
		if (p != MAP_FAILED && mprotect(p + guard_page, guard_page, PROT_NONE) == 0) {
			guard_end = p + guard_page;
			return;
		}
	}
	perror("guard page");
	exit(1);
}

/* Copies s[0..n) so that its last byte is the last readable byte. */
static inline const char *guarded(const char *s, size_t n)
{
	char *dst = guard_end - n;

	if (n > guard_page)
		abort();
	memcpy(dst, s, n);
	return dst;
}

#endif
