/* Minimal test helpers: each unit test is a standalone main() that exits
 * 0 on pass, 1 on failure, 77 on skip (CTest SKIP_RETURN_CODE). */
#ifndef RTLS_TEST_CHECK_H
#define RTLS_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",       \
				__FILE__, __LINE__, #cond);                \
			check_failures++;                                  \
		}                                                          \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                 \
	do {                                                               \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
		if (check_a_ != check_b_) {                                \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", \
				__FILE__, __LINE__, #a, check_a_, check_b_); \
			check_failures++;                                  \
		}                                                          \
	} while (0)

#define CHECK_MEM(p, n, lit)                                               \
	CHECK((n) == strlen(lit) && memcmp((p), (lit), (n)) == 0)

#define CHECK_DONE()                                                       \
	do {                                                               \
		if (check_failures) {                                      \
			fprintf(stderr, "%d check(s) failed\n", check_failures); \
			return 1;                                          \
		}                                                          \
		return 0;                                                  \
	} while (0)

#endif
