/* The reverse proxy (issue 14): routes and upstreams. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

int rtls_http_proxy_add(struct rtls_http_config *hc, const char *spec, char *why, size_t n)
{
	(void)hc;
	(void)spec;
	snprintf(why, n, "not built yet");
	return -1;
}

void rtls_http_proxy_clear(struct rtls_http_config *hc)
{
	free(hc->routes);
	hc->routes = NULL;
	hc->nroutes = 0;
}
