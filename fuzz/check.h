/* The fuzz targets' assertion: a failed invariant names itself on stderr
 * and aborts, which libFuzzer reports as a crash (and keeps the input). */
#ifndef RTLS_FUZZ_CHECK_H
#define RTLS_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static inline void check_failed(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, what);
	abort();
}

#define check(x) ((x) ? (void)0 : check_failed(__FILE__, __LINE__, #x))

#endif
