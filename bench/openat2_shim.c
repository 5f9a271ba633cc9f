/* openat2_shim.c: LD_PRELOAD for ringtls under valgrind only.
 *
 * Valgrind 3.19 (Debian 12) does not know openat2 (syscall 437, Linux
 * 5.6): it fails it with ENOSYS, and ringtls, which opens every static file
 * with openat2(RESOLVE_BENEATH), then answers 500. bench/run.sh counts
 * instructions under callgrind, so for those runs only this shim turns an
 * ENOSYS from openat2 into openat(dirfd, path, flags | O_NOFOLLOW, mode).
 * That drops the RESOLVE_* checks, which is fine for the benchmark's own
 * root (regular files, no symlinks), and costs a few dozen instructions per
 * file opened: noise next to the request it serves. Never use it to serve.
 *
 * Build: cc -O2 -shared -fPIC -o openat2_shim.so openat2_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef long (*syscall_fn)(long, ...);

long syscall(long nr, ...)
{
	static syscall_fn real;
	long a[6];
	va_list ap;
	long ret;

	/* Every syscall takes at most six register arguments: passing six
	 * on is what glibc's own syscall() does with whatever it is given. */
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (!real)
		real = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	ret = real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (ret == -1 && errno == ENOSYS && nr == SYS_openat2) {
		const struct open_how *how = (const struct open_how *)a[2];

		ret = openat((int)a[0], (const char *)a[1], (int)how->flags | O_NOFOLLOW,
			     (mode_t)how->mode);
	}
	return ret;
}
