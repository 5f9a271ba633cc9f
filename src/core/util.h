/* Small helpers shared by every layer. Header-only: the pure modules
 * (parser, path) stay free of link dependencies. */
#ifndef RTLS_CORE_UTIL_H
#define RTLS_CORE_UTIL_H

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
