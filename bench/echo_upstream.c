/* echo_upstream.c: the upstream of bench/run.sh's TCP-mode workload
 * (tcp-echo-1m): a plain TCP echo server on 127.0.0.1:PORT that sends back
 * every byte it reads, on every connection, until the peer closes.
 *
 * One thread, epoll (level-triggered), non-blocking sockets, one 256 KiB
 * buffer per connection. While a connection's buffer is not yet sent back
 * it is not read (EPOLLOUT only): the proxy in front of it sees
 * backpressure instead of an unbounded queue. A FIN from the peer is
 * answered with a FIN once everything read has been sent back. Not a
 * server under test: bench.py pins it to the client CPUs and reports its
 * CPU but counts it for nobody.
 *
 * Build: cc -O2 -o echo_upstream echo_upstream.c
 * Usage: echo_upstream PORT   (stops on SIGTERM or SIGINT, exit 0)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (256 * 1024)

struct conn {
	int fd;
	size_t off, len; /* bytes [off, len) of buf still to send back */
	int eof;         /* the peer sent FIN */
	char buf[BUF];
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void drop(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static void watch(int ep, struct conn *c, unsigned ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Returns 0 to keep the connection, -1 to drop it. */
static int service(int ep, struct conn *c)
{
	for (;;) {
		while (c->off < c->len) {
			ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN) {
					watch(ep, c, EPOLLOUT);
					return 0;
				}
				if (errno == EINTR)
					continue;
				return -1;
			}
			c->off += (size_t)n;
		}
		c->off = c->len = 0;
		if (c->eof) {
			shutdown(c->fd, SHUT_WR);
			return -1;
		}
		ssize_t n = recv(c->fd, c->buf, BUF, 0);
		if (n < 0) {
			if (errno == EAGAIN) {
				watch(ep, c, EPOLLIN | EPOLLRDHUP);
				return 0;
			}
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			c->eof = 1;
		c->len = (size_t)n;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: echo_upstream PORT\n");
		return 2;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)atoi(argv[1])),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0) {
		perror("echo_upstream: listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event le = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &le);
	struct epoll_event evs[64];
	while (!stop) {
		int n = epoll_wait(ep, evs, 64, 500);
		if (n < 0 && errno != EINTR) {
			perror("echo_upstream: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				int fd;
				while ((fd = accept4(ls, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					c = calloc(1, sizeof *c);
					if (c == NULL) {
						close(fd);
						continue;
					}
					c->fd = fd;
					struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP,
								 .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
				}
				continue;
			}
			if (service(ep, c) < 0)
				drop(ep, c);
		}
	}
	return 0;
}
