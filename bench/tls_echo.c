/* tls_echo.c: the client of bench/run.sh's TCP-mode workload (tcp-echo-1m).
 * No standard load generator speaks TLS to an echo service, so this one
 * does, with OpenSSL, as cheaply as it can: the client shares its core
 * with the echo upstream, and what is measured is the server's CPU per MB.
 *
 * It opens CONNS TLS 1.3 connections (TLS_AES_128_GCM_SHA256 only, the
 * server's certificate verified against --ca, name "localhost") and, on
 * each, again and again: sends SIZE bytes and reads SIZE bytes back,
 * writing and reading at once (the echo comes back while it is still being
 * sent), then the next SIZE. One thread, epoll, non-blocking sockets.
 *
 * Timed mode (-d SECS): until SECS have passed; then it sends nothing more
 * and reads back what is still on its way (bytes == sent in the output),
 * and the bytes read back are the result. Every read is checked at its first and last
 * byte against what was sent at that stream offset (cheap; the full check
 * is --verify). Verify mode (-n N --verify): N echoes per connection, each
 * SIZE bytes of fresh pseudo-random data; SHA-256 of everything sent and
 * of everything read back, per connection, must be equal.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"conns":8,"size":1048576,"echoes":1234,"bytes":1293942784,
 *    "sent":1293942784,"wall_s":5.001,"cpu_s":4.9,"protocol":"TLSv1.3",
 *    "cipher":"TLS_AES_128_GCM_SHA256","verified":0,"error":null}
 * Exit status 0 on success, 1 on any error (the JSON says which).
 *
 * Build: cc -O2 -o tls_echo tls_echo.c -lssl -lcrypto
 * Usage: tls_echo -p PORT [-H 127.0.0.1] [-c CONNS] [-s SIZE]
 *                 (-d SECS | -n ECHOES [--verify]) [--ca FILE]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CIPHER "TLS_AES_128_GCM_SHA256"
#define RBUF (64 * 1024)

struct conn {
	int fd;
	SSL *ssl;
	size_t sent, recvd;  /* of the current echo */
	uint64_t total_recv; /* stream offset of the next byte read */
	uint64_t total_sent;
	uint64_t echoes;        /* complete */
	int want_out;           /* the last write returned WANT_WRITE */
	int write_pending;      /* the last write did not complete */
	int done;               /* verify mode: all echoes; timed: drained */
	unsigned char *payload; /* verify mode: this connection's current data */
	EVP_MD_CTX *h_sent, *h_recv;
	uint64_t seed;
};

static struct {
	const char *host, *ca;
	int port, conns, verify;
	size_t size;
	double secs;
	long echoes; /* verify mode: per connection */
} opt = { .host = "127.0.0.1", .conns = 8, .size = 1 << 20 };

static unsigned char *pattern; /* timed mode: what every echo sends */
static int stopping;           /* timed mode: past the deadline, draining */
static char errbuf[512];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *fmt, ...)
{
	if (errbuf[0])
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	unsigned long e = ERR_peek_error();
	if (e) {
		size_t n = strlen(errbuf);
		snprintf(errbuf + n, sizeof errbuf - n, " (%s)", ERR_error_string(e, NULL));
	}
	return -1;
}

/* xorshift64*: cheap, reproducible data for verify mode */
static void fill(unsigned char *p, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i += 8) {
		*s ^= *s >> 12;
		*s ^= *s << 25;
		*s ^= *s >> 27;
		uint64_t v = *s * 0x2545F4914F6CDD1DULL;
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static void next_payload(struct conn *c)
{
	fill(c->payload, opt.size, &c->seed);
	EVP_DigestUpdate(c->h_sent, c->payload, opt.size);
}

static int connect_one(SSL_CTX *ctx, struct conn *c)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port) };
	if (inet_pton(AF_INET, opt.host, &a.sin_addr) != 1)
		return fail("bad host %s", opt.host);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)
		return fail("connect %s:%d: %s", opt.host, opt.port, strerror(errno));
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, "localhost");
	if (opt.ca)
		SSL_set1_host(c->ssl, "localhost");
	if (SSL_connect(c->ssl) != 1)
		return fail("TLS handshake with %s:%d failed", opt.host, opt.port);
	/* non-blocking from here on */
	int fl = fcntl(c->fd, F_GETFL);
	if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return fail("non-blocking: %s", strerror(errno));
	if (opt.verify) {
		c->payload = malloc(opt.size);
		c->h_sent = EVP_MD_CTX_new();
		c->h_recv = EVP_MD_CTX_new();
		EVP_DigestInit_ex(c->h_sent, EVP_sha256(), NULL);
		EVP_DigestInit_ex(c->h_recv, EVP_sha256(), NULL);
		next_payload(c);
	}
	return 0;
}

/* Moves data both ways until neither can go on. 1: this connection is done
 * (verify mode: all its echoes; timed: drained after the deadline), 0: more
 * later, -1: error. */
static int service(struct conn *c)
{
	static unsigned char rbuf[RBUF];
	const unsigned char *data = opt.verify ? c->payload : pattern;
	for (;;) {
		int progress = 0;
		c->want_out = 0;
		/* Past the deadline only a write that OpenSSL holds half done
		 * is finished (retried with the same arguments, as it must be). */
		if (c->sent < opt.size && (!stopping || c->write_pending)) {
			size_t n = 0;
			if (SSL_write_ex(c->ssl, data + c->sent, opt.size - c->sent, &n)) {
				c->sent += n;
				c->total_sent += n;
				c->write_pending = 0;
				progress = 1;
			} else {
				int e = SSL_get_error(c->ssl, 0);
				c->write_pending = 1;
				if (e == SSL_ERROR_WANT_WRITE)
					c->want_out = 1;
				else if (e != SSL_ERROR_WANT_READ)
					return fail(
						"write: SSL error %d after %llu bytes read back", e,
						(unsigned long long)c->total_recv);
			}
		}
		size_t n = 0;
		if (SSL_read_ex(c->ssl, rbuf, sizeof rbuf, &n)) {
			if (c->recvd + n > c->sent)
				return fail("read back %zu bytes more than were sent",
					    c->recvd + n - c->sent);
			if (opt.verify)
				EVP_DigestUpdate(c->h_recv, rbuf, n);
			else if (rbuf[0] != data[c->recvd] || rbuf[n - 1] != data[c->recvd + n - 1])
				return fail("echo differs from what was sent at stream offset %llu",
					    (unsigned long long)c->total_recv);
			c->recvd += n;
			c->total_recv += n;
			progress = 1;
			if (c->recvd == opt.size) {
				c->echoes++;
				c->sent = c->recvd = 0;
				if (opt.verify) {
					if ((long)c->echoes == opt.echoes)
						return 1;
					next_payload(c);
				}
			}
			if (stopping && c->recvd == c->sent && !c->write_pending)
				return 1;
		} else {
			int e = SSL_get_error(c->ssl, 0);
			if (e == SSL_ERROR_ZERO_RETURN)
				return fail("the server closed the connection (close_notify) after "
					    "%llu bytes",
					    (unsigned long long)c->total_recv);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return fail("read: SSL error %d after %llu bytes read back%s", e,
					    (unsigned long long)c->total_recv,
					    e == SSL_ERROR_SYSCALL ? " (connection closed or reset)"
								   : "");
		}
		if (!progress)
			return 0;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: tls_echo -p PORT [-H HOST] [-c CONNS] [-s SIZE] "
			"(-d SECS | -n ECHOES [--verify]) [--ca FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "verify", no_argument, NULL, 'V' },
					    { "ca", required_argument, NULL, 'A' },
					    { NULL, 0, NULL, 0 } };
	int ch;
	while ((ch = getopt_long(argc, argv, "p:H:c:s:d:n:", lo, NULL)) != -1) {
		switch (ch) {
		case 'p':
			opt.port = atoi(optarg);
			break;
		case 'H':
			opt.host = optarg;
			break;
		case 'c':
			opt.conns = atoi(optarg);
			break;
		case 's':
			opt.size = strtoul(optarg, NULL, 0);
			break;
		case 'd':
			opt.secs = atof(optarg);
			break;
		case 'n':
			opt.echoes = atol(optarg);
			break;
		case 'V':
			opt.verify = 1;
			break;
		case 'A':
			opt.ca = optarg;
			break;
		default:
			usage();
		}
	}
	if (opt.port <= 0 || opt.conns < 1 || opt.size < 1 || (opt.secs > 0) == (opt.echoes > 0) ||
	    (opt.verify && opt.echoes <= 0))
		usage();

	struct conn *cs = NULL;
	double t0 = now();
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(ctx, CIPHER);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (opt.ca) {
		if (SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1) {
			fail("cannot load --ca %s", opt.ca);
			goto out;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	pattern = malloc(opt.size);
	RAND_bytes(pattern, (int)opt.size);

	cs = calloc((size_t)opt.conns, sizeof *cs);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	t0 = now();
	for (int i = 0; i < opt.conns; i++) {
		cs[i].seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
		if (connect_one(ctx, &cs[i]) < 0)
			goto out;
		struct epoll_event e = { .events = EPOLLIN | EPOLLOUT, .data.ptr = &cs[i] };
		epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &e);
	}
	double deadline = opt.secs > 0 ? t0 + opt.secs : 0;
	int done = 0;
	struct epoll_event evs[256];
	while (done < opt.conns) {
		if (deadline && now() >= deadline && !stopping) {
			/* Send nothing more; read back what is on its way, so
			 * that nothing is in flight when the connections close
			 * and every byte sent is counted. */
			stopping = 1;
			for (int i = 0; i < opt.conns; i++) {
				struct conn *c = &cs[i];
				if (c->recvd == c->sent && !c->write_pending) {
					done++;
					c->done = 1;
					epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				}
			}
			continue;
		}
		if (stopping && now() >= deadline + 10) {
			fail("the last echoes did not come back within 10 s");
			break;
		}
		int n = epoll_wait(ep, evs, 256, 100);
		if (n < 0 && errno != EINTR) {
			fail("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->done)
				continue;
			int r = service(c);
			if (r < 0)
				goto out;
			if (r == 1) {
				done++;
				c->done = 1;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				continue;
			}
			struct epoll_event e = { .events = EPOLLIN | (c->want_out ? EPOLLOUT : 0),
						 .data.ptr = c };
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
		}
	}
out:;
	double wall = now() - t0;
	uint64_t bytes = 0, sent = 0, echoes = 0;
	int verified = 0;
	for (int i = 0; cs && i < opt.conns; i++) {
		bytes += cs[i].total_recv;
		sent += cs[i].total_sent;
		echoes += cs[i].echoes;
		if (opt.verify && !errbuf[0] && cs[i].h_sent) {
			unsigned char a[32], b[32];
			EVP_DigestFinal_ex(cs[i].h_sent, a, NULL);
			EVP_DigestFinal_ex(cs[i].h_recv, b, NULL);
			if (memcmp(a, b, 32) != 0)
				fail("connection %d: SHA-256 of the bytes read back differs from "
				     "that of the bytes sent",
				     i);
			else
				verified++;
		}
	}
	const char *proto = "?", *cipher = "?";
	if (cs && cs[0].ssl) {
		proto = SSL_get_version(cs[0].ssl);
		const SSL_CIPHER *sc = SSL_get_current_cipher(cs[0].ssl);
		if (sc)
			cipher = SSL_CIPHER_get_name(sc);
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
		     ru.ru_stime.tv_usec / 1e6;
	/* JSON first, so that the clean close below cannot hold it back */
	for (char *p = errbuf; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '\'';
	printf("{\"conns\":%d,\"size\":%zu,\"echoes\":%llu,\"bytes\":%llu,\"sent\":%llu,"
	       "\"wall_s\":%.4f,"
	       "\"cpu_s\":%.4f,\"protocol\":\"%s\",\"cipher\":\"%s\",\"verified\":%d,"
	       "\"error\":%s%s%s}\n",
	       opt.conns, opt.size, (unsigned long long)echoes, (unsigned long long)bytes,
	       (unsigned long long)sent, wall, cpu, proto, cipher, verified, errbuf[0] ? "\"" : "",
	       errbuf[0] ? errbuf : "null", errbuf[0] ? "\"" : "");
	fflush(stdout);
	/* A clean end where all went well: close_notify each way (the
	 * proxy carries ours to the upstream as a FIN and the upstream's FIN
	 * back as close_notify), at most 2 s in all. */
	for (int i = 0; cs && i < opt.conns; i++)
		if (cs[i].ssl && !errbuf[0])
			SSL_shutdown(cs[i].ssl);
	double end = now() + 2;
	for (int i = 0; cs && i < opt.conns; i++) {
		if (cs[i].ssl && !errbuf[0]) {
			int fl = fcntl(cs[i].fd, F_GETFL);
			fcntl(cs[i].fd, F_SETFL, fl & ~O_NONBLOCK);
			double left = end - now();
			struct timeval tv = { .tv_sec = 0, .tv_usec = 1000 };
			if (left > 0.001) {
				tv.tv_sec = (time_t)left;
				tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
			}
			setsockopt(cs[i].fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
			SSL_shutdown(cs[i].ssl); /* reads until the peer's close_notify */
		}
		if (cs[i].fd > 0)
			close(cs[i].fd);
	}
	return errbuf[0] ? 1 : 0;
}
