/* rtls_server_create() under allocation failure (issue 13, part 2).
 *
 * This program's malloc, calloc and realloc stand in front of glibc's
 * (__libc_*) and can be told to fail the Nth call. For N = 0, 1, 2, ...
 * server creation runs with the Nth allocation failing, until one run
 * needs fewer than N allocations and succeeds. Every failing run must:
 *   - return a negated errno, set *out to NULL and say why;
 *   - close no descriptor it did not open (it used to close standard
 *     input: reactors it never reached kept calloc's wake_fd of 0), and
 *     leave none of its own open.
 * Run under valgrind (ctest unit.test_server_create.valgrind) it also
 * proves that no failure path leaks.
 *
 * Three reactors, two listeners, a handler data area and a fake TLS
 * layer's per-connection area, so every allocation of server creation
 * is reached. Exit 0 pass, 1 fail. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringtls/ringtls.h"
#include "core/internal.h"

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);

static long countdown = -1; /* allocations left before the one that fails */
static unsigned failed;

static int fail_now(void)
{
	if (countdown < 0)
		return 0;
	if (countdown-- == 0) {
		failed++;
		return 1;
	}
	return 0;
}

void *malloc(size_t n)
{
	return fail_now() ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	return fail_now() ? NULL : __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __libc_realloc(p, n);
}

#define MAX_FDS 256

/* The open descriptors, as a bitmap over 0..MAX_FDS-1. Not while failing. */
static void open_fds(unsigned char *set)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int self = d ? dirfd(d) : -1;

	memset(set, 0, MAX_FDS);
	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != self && fd < MAX_FDS)
			set[fd] = 1;
	}
	if (d)
		closedir(d);
}

static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	(void)data;
	rtls_buf_release(c, b);
}

int main(void)
{
	static const struct rtls_handler h = { .conn_data_size = 64, .on_data = on_data };
	/* Server creation takes only conn_size from the TLS layer's hooks. */
	static const struct rtls__tls_hooks fake_tls = { .attach = NULL, .conn_size = 128 };
	struct rtls_listen ls[2] = { { .addr = "127.0.0.1:0" }, { .addr = "127.0.0.1:0" } };
	struct rtls_config cfg = { .listeners = ls, .nlisteners = 2, .handler = &h, .threads = 3,
				   .max_conns = 64, .buf_count = 8,
				   .tls = (struct rtls_tls_ctx *)(uintptr_t)&fake_tls };
	unsigned char before[MAX_FDS], after[MAX_FDS];
	int errors = 0, runs = 0;

	/* Standard input must be open: a stray close(0) has to be visible. */
	if (fcntl(0, F_GETFD) < 0 && open("/dev/null", O_RDONLY) != 0) {
		perror("open /dev/null");
		return 1;
	}
	for (long n = 0; n < 10000; n++) {
		rtls_server *s = (rtls_server *)(uintptr_t)1; /* must become NULL */
		char why[256] = "";
		int ret;

		open_fds(before);
		failed = 0;
		countdown = n;
		ret = rtls_server_create(&cfg, &s, why, sizeof(why));
		countdown = -1;
		runs++;
		if (!failed) {
			if (ret == -ENOSYS || ret == -EPERM) {
				/* No io_uring here (a seccomp profile, or
				 * kernel.io_uring_disabled): nothing to test. */
				printf("SKIP: io_uring unavailable: %s\n", why);
				return 77;
			}
			if (ret < 0) {
				fprintf(stderr, "FAIL: no allocation failed, yet create: %s (%d)\n", why, ret);
				errors++;
			}
			rtls_server_destroy(s);
			open_fds(after);
			if (memcmp(before, after, MAX_FDS)) {
				fprintf(stderr, "FAIL: create and destroy changed the open descriptors\n");
				errors++;
			}
			break;
		}
		open_fds(after);
		if (ret >= 0) {
			/* An allocation that may fail without failing creation
			 * (a cache): fine, as long as it cleans up. */
			rtls_server_destroy(s);
			open_fds(after);
		} else {
			if (s != NULL) {
				fprintf(stderr, "FAIL: allocation %ld failed: *out not NULL\n", n);
				errors++;
			}
			if (!why[0]) {
				fprintf(stderr, "FAIL: allocation %ld failed: no reason given\n", n);
				errors++;
			}
		}
		for (int fd = 0; fd < MAX_FDS; fd++)
			if (before[fd] != after[fd]) {
				fprintf(stderr, "FAIL: allocation %ld failed (%s): fd %d %s\n", n, why, fd,
					before[fd] ? "closed" : "left open");
				errors++;
			}
		/* Put a closed standard input back, so the next run can show
		 * the same fault again. */
		if (fcntl(0, F_GETFD) < 0 && open("/dev/null", O_RDONLY) != 0)
			return 1;
	}
	printf("%d runs, %d error(s)\n", runs, errors);
	if (runs < 10) {
		fprintf(stderr, "FAIL: only %d allocations in server creation: injection not working\n",
			runs - 1);
		return 1;
	}
	return errors ? 1 : 0;
}
