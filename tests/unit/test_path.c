/* rtls__path_sanitize(): every traversal spelling we know of must be
 * refused, ordinary paths must come out normalised, and nothing may be read
 * past the input or written past the output. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <unistd.h>

#include "../../src/http/static_util.h"
#include "check.h"
#include "guard.h"

static int sanitize(const char *target, size_t n, char *out, size_t outsz,
		    int *dir)
{
	return rtls__path_sanitize(guarded(target, n), n, out, outsz, dir);
}

static void expect_ok(const char *target, const char *want, int want_dir)
{
	char out[256];
	int dir = -1;
	int rc = sanitize(target, strlen(target), out, sizeof(out), &dir);

	if (rc != (int)strlen(want) || strcmp(out, want) != 0 ||
	    dir != want_dir) {
		fprintf(stderr, "FAIL %s: rc=%d out=\"%s\" dir=%d, want \"%s\" dir=%d\n",
			target, rc, rc >= 0 ? out : "", dir, want, want_dir);
		check_failures++;
	}
}

static void expect_err(const char *target, size_t n, int want)
{
	char out[256];
	int dir = -1;
	int rc;

	memset(out, 'X', sizeof(out));
	rc = sanitize(target, n, out, sizeof(out), &dir);
	if (rc != want || out[0] != '\0' || dir != 0) {
		fprintf(stderr, "FAIL %.*s: rc=%d dir=%d, want %d\n",
			(int)n, target, rc, dir, want);
		check_failures++;
	}
}

#define EXPECT_EINVAL(lit) expect_err((lit), sizeof(lit) - 1, -EINVAL)

static void test_traversal(void)
{
	EXPECT_EINVAL("/..");
	EXPECT_EINVAL("/../");
	EXPECT_EINVAL("/../etc/passwd");
	EXPECT_EINVAL("/a/../../b");
	EXPECT_EINVAL("/a/../b"); /* even one that would stay inside */
	EXPECT_EINVAL("/a/b/..");
	EXPECT_EINVAL("/a/..?x");
	EXPECT_EINVAL("/a/..#x");
	EXPECT_EINVAL("//..//");
	EXPECT_EINVAL("/./..");
	EXPECT_EINVAL("/%2e%2e");
	EXPECT_EINVAL("/%2E%2E");
	EXPECT_EINVAL("/%2e%2E/etc");
	EXPECT_EINVAL("/.%2e");
	EXPECT_EINVAL("/%2e.");
	EXPECT_EINVAL("/.%2E/");
	EXPECT_EINVAL("/a/%2e%2e/%2e%2e/b");
	/* encoded separators: refused, never decoded into a new level */
	EXPECT_EINVAL("/a%2fb");
	EXPECT_EINVAL("/a%2Fb");
	EXPECT_EINVAL("/%2e%2e%2fetc");
	EXPECT_EINVAL("/..%2f");
	EXPECT_EINVAL("/a%5cb");
	EXPECT_EINVAL("/a%5Cb");
	EXPECT_EINVAL("/..%5c..%5cwin.ini");
	EXPECT_EINVAL("/a\\b");
	EXPECT_EINVAL("/..\\..\\x");
	/* NUL, decoded or raw */
	EXPECT_EINVAL("/%00");
	EXPECT_EINVAL("/a%00.html");
	expect_err("/a\0b", 4, -EINVAL);
	expect_err("/\0", 2, -EINVAL);
}

static void test_bad_form(void)
{
	EXPECT_EINVAL("");
	EXPECT_EINVAL("a/b");
	EXPECT_EINVAL("*");
	EXPECT_EINVAL("http://host/x");
	EXPECT_EINVAL("?/x");
	/* bad escapes, including ones cut short by the end or the query */
	EXPECT_EINVAL("/%");
	EXPECT_EINVAL("/%2");
	EXPECT_EINVAL("/a%2?x=1");
	EXPECT_EINVAL("/%zz");
	EXPECT_EINVAL("/%g0");
	EXPECT_EINVAL("/%0g");
	EXPECT_EINVAL("/%%41");
	/* an error after the output would have overflowed is still -EINVAL */
	{
		char out[4];

		CHECK_EQ_INT(sanitize("/aaaaaaaa/..", 12, out, sizeof(out), NULL),
			     -EINVAL);
		CHECK_EQ_INT(out[0], '\0');
	}
	CHECK_EQ_INT(rtls__path_sanitize(NULL, 0, NULL, 0, NULL), -EINVAL);
}

static void test_normal(void)
{
	expect_ok("/index.html", "index.html", 0);
	expect_ok("/a/b/c.txt", "a/b/c.txt", 0);
	expect_ok("/a/b%20c", "a/b c", 0);
	expect_ok("/%41%42%63", "ABc", 0);
	expect_ok("/caf%C3%A9", "caf\xc3\xa9", 0);
	expect_ok("//a///b/", "a/b", 1);
	expect_ok("/a//b", "a/b", 0);
	expect_ok("/./a/./b", "a/b", 0);
	expect_ok("/a/.", "a", 1);
	expect_ok("/a/%2e", "a", 1);
	expect_ok("/%2e/a", "a", 0);
	expect_ok("/.", "", 1);
	expect_ok("/a/b/", "a/b", 1);
	expect_ok("/a?x=1", "a", 0);
	expect_ok("/a/?x=/../", "a", 1);
	expect_ok("/a#frag/..", "a", 0);
	expect_ok("/a?", "a", 0);
	expect_ok("/?x", "", 1);
	/* decoded once only: "%252e%252e" is the literal name "%2e%2e" */
	expect_ok("/%252e%252e", "%2e%2e", 0);
	/* names that merely contain dots are fine */
	expect_ok("/...", "...", 0);
	expect_ok("/..a", "..a", 0);
	expect_ok("/a..", "a..", 0);
	expect_ok("/.hidden", ".hidden", 0);
	expect_ok("/a.b/c..d/", "a.b/c..d", 1);
	expect_ok("/%3f", "?", 0);
}

static void test_root(void)
{
	char out[8];
	int dir = -1;

	memset(out, 'X', sizeof(out));
	CHECK_EQ_INT(sanitize("/", 1, out, sizeof(out), &dir), 0);
	CHECK_EQ_INT(out[0], '\0');
	CHECK_EQ_INT(dir, 1);
	expect_ok("//", "", 1);
	expect_ok("/./", "", 1);
	/* the root still needs room for the NUL */
	CHECK_EQ_INT(sanitize("/", 1, out, 1, &dir), 0);
	CHECK_EQ_INT(sanitize("/", 1, out, 0, &dir), -ENAMETOOLONG);
	/* dir_hint may be NULL */
	CHECK_EQ_INT(sanitize("/a/", 3, out, sizeof(out), NULL), 1);
}

static void test_too_small(void)
{
	char out[16];
	int dir = -1;

	/* "a/bc" needs 5 bytes with its NUL */
	memset(out, 'X', sizeof(out));
	CHECK_EQ_INT(sanitize("/a/bc", 5, out, 5, &dir), 4);
	CHECK_MEM(out, 4, "a/bc");
	CHECK_EQ_INT(out[4], '\0');
	CHECK_EQ_INT(out[5], 'X');

	memset(out, 'X', sizeof(out));
	dir = -1;
	CHECK_EQ_INT(sanitize("/a/bc", 5, out, 4, &dir), -ENAMETOOLONG);
	CHECK_EQ_INT(out[0], '\0');
	CHECK_EQ_INT(out[4], 'X'); /* nothing past outsz */
	CHECK_EQ_INT(dir, 0);

	/* what fits is the decoded length, not the raw one */
	memset(out, 'X', sizeof(out));
	CHECK_EQ_INT(sanitize("/%61%62", 7, out, 3, &dir), 2);
	CHECK_MEM(out, 2, "ab");
	CHECK_EQ_INT(out[3], 'X');

	/* dropped "." and empty segments do not count */
	CHECK_EQ_INT(sanitize("/./a/./b/.//", 12, out, 4, &dir), 3);
	CHECK_EQ_INT(dir, 1);

	memset(out, 'X', sizeof(out));
	CHECK_EQ_INT(sanitize("/abcdefghijklmnopqrstuvwxyz", 27, out, 8, &dir),
		     -ENAMETOOLONG);
	CHECK_EQ_INT(out[0], '\0');
	CHECK_EQ_INT(out[8], 'X');
	CHECK_EQ_INT(sanitize("/abc", 4, out, 0, &dir), -ENAMETOOLONG);
}

int main(void)
{
	guard_init();
	test_traversal();
	test_bad_form();
	test_normal();
	test_root();
	test_too_small();
	CHECK_DONE();
}
