/* One line per event on stderr. The level is process-wide: it is set once
 * at start and read by every reactor, so an atomic is enough. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static atomic_int log_level = RTLS_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void rtls_log_set_level(enum rtls_log_level lvl)
{
	atomic_store_explicit(&log_level, (int)lvl, memory_order_relaxed);
}

int rtls_log_enabled(enum rtls_log_level lvl)
{
	return (int)lvl <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void rtls_log(enum rtls_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (!rtls_log_enabled(lvl))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		     level_names[lvl <= RTLS_LOG_DEBUG ? lvl : RTLS_LOG_DEBUG]);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write(2) per line so lines from several reactors never interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}
