/* Opening a path below the document root's directory fd (beneath.c). */
#ifndef RTLS_HTTP_BENEATH_H
#define RTLS_HTTP_BENEATH_H

#include <stdbool.h>

/* Opens rel (a sanitized relative path, "" for the root itself) below
 * root_fd, read-only, non-blocking, close-on-exec. Without
 * follow_symlinks nothing may lead out of the root: openat2 with
 * RESOLVE_BENEATH, or rtls__open_walk() where openat2 is ENOSYS. With
 * follow_symlinks, plain openat(). Returns the fd or -errno; EXDEV or
 * ELOOP mean the path was refused. */
int rtls__open_beneath(int root_fd, const char *rel, bool follow_symlinks);

/* The fallback walk: each component of rel opened from root_fd with
 * O_NOFOLLOW (directories as O_PATH), the last one with `flags` (plus
 * O_NOFOLLOW | O_CLOEXEC). Refuses any symlink component (ELOOP), ".."
 * and an absolute path (EXDEV); skips "." and empty components.
 * Returns the fd or -errno. Exposed for its unit test. */
int rtls__open_walk(int root_fd, const char *rel, int flags);

#endif
