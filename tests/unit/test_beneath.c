/* rtls__open_walk(), the fallback for kernels (and valgrind) without
 * openat2: "..", absolute paths and every symlink are refused, ordinary
 * paths open, nothing leaks. Then rtls__open_beneath() itself, first with
 * openat2 where the kernel has it, then with openat2 made ENOSYS by a
 * seccomp filter, as valgrind or an old seccomp profile would: it must
 * fall back to the walk. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../src/http/beneath.h"
#include "check.h"

static char base[PATH_MAX];

static void put(const char *rel, const char *data)
{
	char p[PATH_MAX + 64];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
		close(fd);
	}
}

static void link_at(const char *target, const char *rel)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	CHECK(symlink(target, p) == 0);
}

static void mkdir_at(const char *rel)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	CHECK(mkdir(p, 0755) == 0);
}

/* base/secret.txt and base/outdir/ are outside base/root. */
static int build(void)
{
	char abs[PATH_MAX + 64];

	snprintf(base, sizeof(base), "/tmp/rtls-beneath-XXXXXX");
	if (!mkdtemp(base))
		return -1;
	mkdir_at("root");
	mkdir_at("root/sub");
	mkdir_at("outdir");
	put("secret.txt", "SECRET\n");
	put("outdir/o.txt", "OUTDIR\n");
	put("root/pub.txt", "public\n");
	put("root/sub/in.txt", "inner\n");
	snprintf(abs, sizeof(abs), "%s/secret.txt", base);
	link_at("../secret.txt", "root/out-link");
	link_at(abs, "root/abs-link");
	link_at("out-link", "root/chain-link");
	link_at("../outdir", "root/out-dir");
	link_at("pub.txt", "root/in-link");
	link_at("sub", "root/in-dir-link");
	link_at("../pub.txt", "root/sub/up-link");
	snprintf(abs, sizeof(abs), "%s/root/fifo", base);
	CHECK(mkfifo(abs, 0644) == 0);
	return 0;
}

static void rm_tree(const char *rel)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	if (unlink(p) != 0)
		rmdir(p);
}

static void cleanup(void)
{
	static const char *const paths[] = {
		"root/sub/up-link", "root/sub/in.txt", "root/sub", "root/in-dir-link",
		"root/in-link", "root/out-dir", "root/chain-link", "root/abs-link",
		"root/out-link", "root/pub.txt", "root/fifo", "root", "outdir/o.txt",
		"outdir", "secret.txt",
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		rm_tree(paths[i]);
	rmdir(base);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Expects fd to be a close-on-exec fd whose content is `want`; closes it. */
static void expect_file(int fd, const char *want, const char *what)
{
	char buf[64];
	ssize_t n;

	if (fd < 0) {
		fprintf(stderr, "%s: got %d, expected a file\n", what, fd);
		check_failures++;
		return;
	}
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	if (strcmp(buf, want) != 0) {
		fprintf(stderr, "%s: read %s, expected %s", what, buf, want);
		check_failures++;
	}
	close(fd);
}

static void expect_err(int fd, int err, const char *what)
{
	if (fd != -err) {
		fprintf(stderr, "%s: got %d (%s), expected -%s\n", what, fd,
			fd < 0 ? strerror(-fd) : "an fd", strerror(err));
		check_failures++;
	}
	if (fd >= 0)
		close(fd);
}

static void expect_dir(int fd, const char *what)
{
	struct stat st;

	CHECK(fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode));
	if (fd < 0)
		fprintf(stderr, "%s: got %d, expected a directory\n", what, fd);
	else
		close(fd);
}

static void test_walk(int root)
{
	const int fl = O_RDONLY | O_NONBLOCK;
	char abs[PATH_MAX + 64], longname[NAME_MAX + 8];
	int fd;

	expect_file(rtls__open_walk(root, "pub.txt", fl), "public\n", "pub.txt");
	expect_file(rtls__open_walk(root, "sub/in.txt", fl), "inner\n", "sub/in.txt");
	expect_file(rtls__open_walk(root, "sub//in.txt", fl), "inner\n", "sub//in.txt");
	expect_file(rtls__open_walk(root, "./sub/./in.txt", fl), "inner\n", "./sub/./in.txt");
	expect_dir(rtls__open_walk(root, "", fl), "\"\" (the root)");
	expect_dir(rtls__open_walk(root, "sub", fl), "sub");
	expect_dir(rtls__open_walk(root, "sub/", fl), "sub/");
	/* Leaving the root by name. */
	expect_err(rtls__open_walk(root, "..", fl), EXDEV, "..");
	expect_err(rtls__open_walk(root, "../secret.txt", fl), EXDEV, "../secret.txt");
	expect_err(rtls__open_walk(root, "sub/../../secret.txt", fl), EXDEV, "sub/../../secret.txt");
	expect_err(rtls__open_walk(root, "sub/..", fl), EXDEV, "sub/.. (even inside)");
	expect_err(rtls__open_walk(root, "/etc/passwd", fl), EXDEV, "/etc/passwd");
	snprintf(abs, sizeof(abs), "%s/secret.txt", base);
	expect_err(rtls__open_walk(root, abs, fl), EXDEV, "absolute path to secret.txt");
	/* Every symlink, out of the root or not, last component or not. */
	expect_err(rtls__open_walk(root, "out-link", fl), ELOOP, "out-link");
	expect_err(rtls__open_walk(root, "abs-link", fl), ELOOP, "abs-link");
	expect_err(rtls__open_walk(root, "chain-link", fl), ELOOP, "chain-link");
	expect_err(rtls__open_walk(root, "out-dir/o.txt", fl), ELOOP, "out-dir/o.txt");
	expect_err(rtls__open_walk(root, "out-dir", fl), ELOOP, "out-dir");
	expect_err(rtls__open_walk(root, "out-dir/", fl), ELOOP, "out-dir/");
	expect_err(rtls__open_walk(root, "in-link", fl), ELOOP, "in-link (stricter than RESOLVE_BENEATH)");
	expect_err(rtls__open_walk(root, "in-dir-link/in.txt", fl), ELOOP, "in-dir-link/in.txt");
	expect_err(rtls__open_walk(root, "sub/up-link", fl), ELOOP, "sub/up-link");
	/* Ordinary failures. */
	expect_err(rtls__open_walk(root, "missing.txt", fl), ENOENT, "missing.txt");
	expect_err(rtls__open_walk(root, "nodir/x", fl), ENOENT, "nodir/x");
	expect_err(rtls__open_walk(root, "pub.txt/x", fl), ENOTDIR, "pub.txt/x");
	memset(longname, 'a', NAME_MAX + 1);
	longname[NAME_MAX + 1] = '\0';
	expect_err(rtls__open_walk(root, longname, fl), ENAMETOOLONG, "a name over NAME_MAX");
	/* A FIFO opens without blocking (the server refuses it after fstat). */
	fd = rtls__open_walk(root, "fifo", fl);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
}

/* rtls__open_beneath() with openat2, where this kernel has it. */
static int test_openat2(int root)
{
	long r = syscall(SYS_openat2, root, ".", NULL, 0);

	if (r < 0 && errno == ENOSYS) {
		printf("note: no openat2 here; RESOLVE_BENEATH checks skipped\n");
		return 0;
	}
	expect_file(rtls__open_beneath(root, "pub.txt", false), "public\n", "openat2: pub.txt");
	expect_file(rtls__open_beneath(root, "in-link", false), "public\n", "openat2: in-link");
	expect_err(rtls__open_beneath(root, "out-link", false), EXDEV, "openat2: out-link");
	expect_err(rtls__open_beneath(root, "abs-link", false), EXDEV, "openat2: abs-link");
	expect_err(rtls__open_beneath(root, "../secret.txt", false), EXDEV, "openat2: ../secret.txt");
	expect_file(rtls__open_beneath(root, "out-link", true), "SECRET\n", "--follow-symlinks: out-link");
	return 1;
}

/* openat2 -> ENOSYS for this process from now on. */
static int deny_openat2(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

/* rtls__open_beneath() where openat2 says ENOSYS: the walk's answers. */
static int test_fallback(int root)
{
	char abs[PATH_MAX + 64];
	int ret = deny_openat2();

	if (ret < 0) {
		printf("note: cannot install a seccomp filter (%s); fallback dispatch not checked\n",
		       strerror(-ret));
		return 0;
	}
	CHECK(syscall(SYS_openat2, root, ".", NULL, 0) < 0 && errno == ENOSYS);
	expect_file(rtls__open_beneath(root, "pub.txt", false), "public\n", "no openat2: pub.txt");
	expect_file(rtls__open_beneath(root, "sub/in.txt", false), "inner\n", "no openat2: sub/in.txt");
	expect_dir(rtls__open_beneath(root, "", false), "no openat2: the root");
	expect_err(rtls__open_beneath(root, "in-link", false), ELOOP, "no openat2: in-link");
	expect_err(rtls__open_beneath(root, "out-link", false), ELOOP, "no openat2: out-link");
	expect_err(rtls__open_beneath(root, "out-dir/o.txt", false), ELOOP, "no openat2: out-dir/o.txt");
	expect_err(rtls__open_beneath(root, "../secret.txt", false), EXDEV, "no openat2: ../secret.txt");
	snprintf(abs, sizeof(abs), "%s/secret.txt", base);
	expect_err(rtls__open_beneath(root, abs, false), EXDEV, "no openat2: absolute path");
	/* --follow-symlinks keeps its meaning: plain openat, links followed. */
	expect_file(rtls__open_beneath(root, "out-link", true), "SECRET\n", "no openat2, --follow-symlinks: out-link");
	expect_file(rtls__open_beneath(root, "in-dir-link/in.txt", true), "inner\n",
		    "no openat2, --follow-symlinks: in-dir-link/in.txt");
	return 1;
}

int main(void)
{
	char p[PATH_MAX + 64];
	int root, before, ran;

	if (build() < 0) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(p, sizeof(p), "%s/root", base);
	root = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	CHECK(root >= 0);
	before = open_fds();
	test_walk(root);
	ran = test_openat2(root);
	ran += test_fallback(root);
	CHECK_EQ_INT(open_fds(), before); /* every fd the walk opened is closed */
	close(root);
	cleanup();
	printf("open_walk checked; openat2 and fallback dispatch: %d of 2 parts ran\n", ran);
	CHECK_DONE();
}
