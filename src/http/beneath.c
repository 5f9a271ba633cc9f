/* Opening a file below the document root without leaving it.
 *
 * openat2(RESOLVE_BENEATH) does it in the kernel. Where openat2 is missing
 * (ENOSYS: kernels before 5.6, valgrind, seccomp profiles that predate it)
 * the path is walked one component at a time instead, refusing every
 * symlink: stricter than RESOLVE_BENEATH, which follows a symlink that
 * stays below the root. --follow-symlinks needs neither: it opens the
 * sanitized path with plain openat(). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "beneath.h"

/* Set once openat2 has said ENOSYS: the kernel will not grow it, and
 * each failed call costs a syscall (and a warning line under valgrind). */
static atomic_bool no_openat2;

/* Opens the directory `name` in dfd for the walk: O_PATH needs only
 * search permission, as a kernel path walk does. A symlink is ELOOP
 * (O_NOFOLLOW with O_DIRECTORY reports it as ENOTDIR: tell them apart). */
static int open_dir(int dfd, const char *name)
{
	struct stat st;
	int fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno == ENOTDIR && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -ELOOP;
	return -errno;
}

int rtls__open_walk(int root_fd, const char *rel, int flags)
{
	char name[NAME_MAX + 1];
	const char *p = rel;
	int dfd = root_fd, fd;

	if (*p == '/')
		return -EXDEV; /* absolute: RESOLVE_BENEATH says EXDEV too */
	for (;;) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n > NAME_MAX) {
			fd = -ENAMETOOLONG;
			break;
		}
		memcpy(name, n ? p : ".", n ? n : 1);
		name[n ? n : 1] = '\0';
		p += n;
		while (*p == '/')
			p++;
		if (strcmp(name, "..") == 0) {
			fd = -EXDEV;
			break;
		}
		if (!*p) {
			/* The last component: the file itself, never a symlink. */
			fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				fd = -errno;
			break;
		}
		if (strcmp(name, ".") == 0)
			continue;
		fd = open_dir(dfd, name);
		if (fd < 0)
			break;
		if (dfd != root_fd)
			close(dfd);
		dfd = fd;
	}
	if (dfd != root_fd)
		close(dfd);
	return fd;
}

int rtls__open_beneath(int root_fd, const char *rel, bool follow_symlinks)
{
	struct open_how how;
	long fd;

	/* O_NONBLOCK: opening a FIFO under the root must not block the
	 * reactor; anything but a regular file is refused after fstat. */
	if (follow_symlinks) {
		fd = openat(root_fd, *rel ? rel : ".", O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		return fd < 0 ? -errno : (int)fd;
	}
	if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
		memset(&how, 0, sizeof(how));
		how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
		fd = syscall(SYS_openat2, root_fd, *rel ? rel : ".", &how, sizeof(how));
		if (fd >= 0 || errno != ENOSYS)
			return fd < 0 ? -errno : (int)fd;
		atomic_store_explicit(&no_openat2, true, memory_order_relaxed);
	}
	return rtls__open_walk(root_fd, rel, O_RDONLY | O_NONBLOCK);
}
