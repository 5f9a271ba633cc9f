/* Small helpers shared by every layer. Header-only: the pure modules
 * (parser, path) stay free of link dependencies. */
#ifndef RTLS_CORE_UTIL_H
#define RTLS_CORE_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* 0 if path opens for reading and is not a directory, else -errno. For a
 * message the user can act on ("cannot read ...: Permission denied")
 * where OpenSSL would only say "system lib" or "PEM lib". O_NONBLOCK: a
 * FIFO must not hang the check. */
static inline int rtls__file_readable(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), err = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		err = errno;
	else if (S_ISDIR(st.st_mode))
		err = EISDIR;
	if (fd >= 0)
		close(fd);
	return -err;
}

/* Value of one hex digit, or -1. */
static inline int rtls__hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

#endif
