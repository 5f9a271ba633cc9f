/* Listening sockets: address parsing and SO_REUSEPORT sockets, one per
 * reactor per address, so the kernel spreads connections across reactors
 * and no accept ever crosses a thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (!*s)
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 65535 || *s == '-' || *s == '+')
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* "1.2.3.4:80", "[::1]:80", ":80" (all IPv4 addresses), "80" likewise. */
int rtls__parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon, *port;
	uint16_t p;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		if (parse_port(rb + 2, &p) < 0 || inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return -EINVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(p);
		*len = sizeof(*a6);
		return 0;
	}
	colon = strrchr(s, ':');
	port = colon ? colon + 1 : s;
	if (colon && (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	if (parse_port(port, &p) < 0)
		return -EINVAL;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	a4->sin_family = AF_INET;
	a4->sin_port = htons(p);
	*len = sizeof(*a4);
	if (!colon || colon == s) {
		a4->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	return inet_pton(AF_INET, host, &a4->sin_addr) == 1 ? 0 : -EINVAL;
}

/* "unix:/path" (no abstract names), or what rtls__parse_addr() takes. */
int rtls__parse_connect_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	size_t n;

	if (strncmp(s, "unix:", 5) != 0)
		return rtls__parse_addr(s, ss, len);
	s += 5;
	n = strlen(s);
	if (s[0] != '/' || n >= sizeof(un->sun_path))
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, s, n + 1);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

int rtls_format_addr(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof(host));
		return snprintf(out, n, "[%s]:%u", host, ntohs(a6->sin6_port));
	}
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a4->sin_addr, host, sizeof(host));
		return snprintf(out, n, "%s:%u", host, ntohs(a4->sin_port));
	}
	return snprintf(out, n, "?");
}

/* A socket handed over (rtls_listen.fd, systemd's LISTEN_FDS) must be a
 * listening TCP socket: anything else would fail at the first accept, on
 * a reactor, long after rtls_server_create() could have said why. Its
 * address goes into *ss for rtls_server_listen_addr(). It gets
 * TCP_NODELAY, which accepted sockets inherit, as ours do. Its file
 * status flags (O_NONBLOCK) stay as they are: they belong to the open
 * file the owner shares, and an io_uring accept never blocks the ring
 * either way. -ENOTSOCK for a descriptor of the wrong kind. */
int rtls__listen_adopt(int fd, struct sockaddr_storage *ss, socklen_t *len)
{
	int type = 0, proto = 0, listening = 0, one = 1;
	socklen_t n = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &n) < 0)
		return -errno;
	n = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &n) < 0)
		return -errno;
	n = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &n) < 0)
		return -errno;
	*len = sizeof(*ss);
	if (getsockname(fd, (struct sockaddr *)ss, len) < 0)
		return -errno;
	if (type != SOCK_STREAM || proto != IPPROTO_TCP || !listening ||
	    (ss->ss_family != AF_INET && ss->ss_family != AF_INET6))
		return -ENOTSOCK;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

int rtls__listen_socket(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, fd, ret;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* TCP_NODELAY is inherited by accepted sockets: each flush is one
	 * complete batch, so Nagle would only add latency. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		goto err;
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto err;
	if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 4096) < 0)
		goto err;
	return fd;
err:
	ret = -errno;
	close(fd);
	return ret;
}
