/* seccomp_run [--deny-io-uring] [--allow-file FILE] -- PROG [ARGS...]
 *
 * Runs PROG under a seccomp filter built with libseccomp, the library
 * runc and containerd build a container's filter with:
 *
 *   --deny-io-uring     every system call allowed except io_uring_setup,
 *                       io_uring_enter and io_uring_register, which fail
 *                       with EPERM: what Docker's default profile (since
 *                       25.0) and containerd's RuntimeDefault (since 2.0)
 *                       do to io_uring.
 *   --allow-file FILE   an allow-list, like a Docker/OCI profile: only the
 *                       system calls named in FILE (one per line; blank
 *                       lines and lines from '#' ignored) are allowed, every
 *                       other one fails with EPERM (defaultErrnoRet 1). A
 *                       name this libseccomp does not know is skipped with
 *                       a warning. With --deny-io-uring too, the three
 *                       io_uring calls fail even if FILE names them.
 *
 * no_new_privs is set, the filter loaded, PROG exec'd by path. Exits 77
 * when the filter cannot be built or installed, 2 on a usage error or a
 * failed exec or an unreadable FILE. */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define SKIP 77

static const char *const io_uring_calls[] = {
	"io_uring_setup",
	"io_uring_enter",
	"io_uring_register",
};

static int is_io_uring(const char *name)
{
	for (size_t i = 0; i < sizeof(io_uring_calls) / sizeof(io_uring_calls[0]); i++)
		if (strcmp(name, io_uring_calls[i]) == 0)
			return 1;
	return 0;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name)
{
	int nr = seccomp_syscall_resolve_name(name);
	int rc;

	if (nr == __NR_SCMP_ERROR) {
		fprintf(stderr, "seccomp_run: warning: %s: unknown to this libseccomp, skipped\n",
			name);
		return 0;
	}
	rc = seccomp_rule_add(ctx, action, nr, 0);
	if (rc < 0)
		fprintf(stderr, "seccomp_run: %s: %s\n", name, strerror(-rc));
	return rc;
}

/* One rule per name in FILE; the io_uring calls left out when deny is set. */
static int allow_from_file(scmp_filter_ctx ctx, const char *path, int deny_io_uring)
{
	char line[128];
	FILE *f = fopen(path, "r");
	int rc = 0;

	if (!f) {
		fprintf(stderr, "seccomp_run: %s: %s\n", path, strerror(errno));
		return -EBADF; /* a usage error, not a missing feature */
	}
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char *name = line + strspn(line, " \t");

		name[strcspn(name, " \t\r\n#")] = '\0';
		if (name[0] == '\0' || (deny_io_uring && is_io_uring(name)))
			continue;
		rc = add_rule(ctx, SCMP_ACT_ALLOW, name);
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "seccomp_run: %s: read error\n", path);
		rc = -EBADF;
	}
	fclose(f);
	return rc;
}

/* The filter in *out; 0, or the exit status: 2 when FILE cannot be
 * read, SKIP when libseccomp cannot build the filter. */
static int build(const char *allow_file, int deny_io_uring, scmp_filter_ctx *out)
{
	scmp_filter_ctx ctx = seccomp_init(allow_file ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_ALLOW);
	int rc = 0;

	if (!ctx) {
		fprintf(stderr, "seccomp_run: seccomp_init failed\n");
		return SKIP;
	}
	if (allow_file)
		rc = allow_from_file(ctx, allow_file, deny_io_uring);
	else if (deny_io_uring)
		for (size_t i = 0;
		     rc == 0 && i < sizeof(io_uring_calls) / sizeof(io_uring_calls[0]); i++)
			rc = add_rule(ctx, SCMP_ACT_ERRNO(EPERM), io_uring_calls[i]);
	if (rc < 0) {
		seccomp_release(ctx);
		return rc == -EBADF ? 2 : SKIP;
	}
	*out = ctx;
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: seccomp_run [--deny-io-uring] [--allow-file FILE] -- PROG [ARGS...]\n");
}

int main(int argc, char **argv)
{
	const char *allow_file = NULL;
	int deny_io_uring = 0, i, rc;
	scmp_filter_ctx ctx = NULL;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--deny-io-uring") == 0) {
			deny_io_uring = 1;
		} else if (strcmp(argv[i], "--allow-file") == 0 && i + 1 < argc) {
			allow_file = argv[++i];
		} else {
			usage();
			return 2;
		}
	}
	if (i + 1 >= argc) {
		usage();
		return 2;
	}
	rc = build(allow_file, deny_io_uring, &ctx);
	if (rc != 0)
		return rc;
	/* libseccomp sets no_new_privs itself by default; say it anyway, so
	 * that an unprivileged caller can load the filter whatever it does. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		perror("seccomp_run: PR_SET_NO_NEW_PRIVS");
		seccomp_release(ctx);
		return SKIP;
	}
	rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) {
		fprintf(stderr, "seccomp_run: seccomp_load: %s\n", strerror(-rc));
		return SKIP;
	}
	execv(argv[i + 1], argv + i + 1);
	/* Under an allow-list without execve, this is where it ends. */
	perror("seccomp_run: exec");
	return 2;
}
