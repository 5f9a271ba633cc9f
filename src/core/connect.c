/* Outbound connections: rtls_conn_connect() opens a socket, takes a slot
 * on the caller's reactor and issues IORING_OP_CONNECT; the completion
 * turns the slot into an ordinary connection (DESIGN.md, "Outbound
 * connections").
 *
 *   FREE --rtls_conn_connect()--> CONNECTING --completion 0--> OPEN
 *   CONNECTING --completion < 0, RTLS_TIMER_CONNECT, close/abort--> DEAD
 *
 * The on_close of the new connection is owed from the moment the connect
 * is issued, so a caller that pairs it with another connection always
 * hears of its end. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "ringtls/tls.h"

/* Non-blocking, so the kernel polls for the handshake rather than
 * parking an io-wq worker on it for as long as it takes. Once its RX is
 * kTLS it blocks, on io_uring (rtls__rx_kernel_blocking()). */
static int connect_socket(const struct sockaddr_storage *ss)
{
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* As on accepted sockets (listen_socket): each flush is one batch. */
	if (ss->ss_family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int connect_start(rtls_conn *near, const char *addr, const struct rtls_handler *h, void *arg,
			 const struct rtls__tls_hooks *tls, const char *name, rtls_conn **out)
{
	struct rtls__reactor *r = near->r;
	struct sockaddr_storage ss;
	struct io_uring_sqe *sqe;
	struct rtls_conn *c;
	socklen_t len;
	int fd, ret;

	*out = NULL;
	if (!h)
		h = &r->srv->handler;
	if (!addr || h->conn_data_size > r->srv->handler.conn_data_size ||
	    rtls__parse_connect_addr(addr, &ss, &len) < 0)
		return -EINVAL;
	if (r->stopping)
		return -ESHUTDOWN;
	if (!r->nfree)
		return -ENOBUFS;
	if (tls && (ret = rtls__reactor_tls_area(r, tls->conn_size)) < 0)
		return ret;
	fd = connect_socket(&ss);
	if (fd < 0)
		return fd;
	c = rtls__conn_new_outbound(r, fd, h);
	if (!c) {
		close(fd);
		return -ENOBUFS;
	}
	c->arg = arg;
	/* The address must outlive the request: the kernel may read it only
	 * when the SQE is submitted, after this returns. */
	c->peer = ss;
	c->peer_len = len;
	if (c->data)
		memset(c->data, 0, r->srv->handler.conn_data_size);
	if (tls && (ret = tls->attach_client(c, (void *)(uintptr_t)tls, name)) < 0) {
		/* Nothing was issued: the slot goes back as if never taken. */
		rtls__conn_kill(c, ret);
		return ret;
	}
	c->handler_open = true;
	sqe = rtls__sqe(r);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->peer, c->peer_len);
	io_uring_sqe_set_data64(sqe, rtls__ud(RTLS__OP_CONNECT, c->slot, c->gen));
	c->connect_armed = true;
	rtls__timer_arm(c, RTLS_TIMER_CONNECT);
	*out = c;
	return 0;
}

int rtls_conn_connect(rtls_conn *near, const char *addr, const struct rtls_handler *h, void *arg,
		      rtls_conn **out)
{
	return connect_start(near, addr, h, arg, NULL, NULL, out);
}

int rtls_conn_connect_tls(rtls_conn *near, const char *addr, struct rtls_tls_ctx *client,
			  const char *server_name, const struct rtls_handler *h, void *arg,
			  rtls_conn **out)
{
	const struct rtls__tls_hooks *tls = (const void *)client;

	*out = NULL;
	if (!client || !tls->attach_client)
		return -EINVAL; /* no context, or a server's */
	return connect_start(near, addr, h, arg, tls, server_name, out);
}

void rtls__on_connect(struct rtls_conn *c, int res)
{
	c->connect_armed = false;
	if (c->state != RTLS__CONN_CONNECTING)
		return; /* killed meanwhile: the reaper frees the slot */
	if (res < 0) {
		rtls_log(RTLS_LOG_DEBUG, "conn %u: connect: %s", c->slot, strerror(-res));
		rtls__conn_kill(c, res);
		return;
	}
	rtls__timer_arm(c, RTLS_TIMER_NONE);
	rtls__conn_set_state(c, RTLS__CONN_OPEN);
	if (c->tp && c->tp->on_connected) {
		/* TLS: the handshake first; it opens the handler when done. */
		c->tp->on_connected(c);
		if (c->state == RTLS__CONN_OPEN && !c->read_paused)
			rtls__conn_recv_arm(c);
		return;
	}
	/* on_open first: it may pause reading, or forward the input
	 * (rtls_conn_forward()), and a receive armed before it would take
	 * the peer's first bytes the ordinary way (an upstream that speaks
	 * first had its banner copied, not spliced). Then the receive, if
	 * nothing else arms one and the connection is still there. */
	rtls__handler_open(c);
	if (c->state == RTLS__CONN_OPEN && !c->read_paused)
		rtls__conn_recv_arm(c);
}
