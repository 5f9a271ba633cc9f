/* A TLS 1.3 client for test_tls_records.py: once the handshake is done,
 * one TCP send carries a KeyUpdate with update_requested and a request
 * (so that the server reads both in one go), then it prints, in the order
 * they arrive, "keyupdate" for each KeyUpdate the server sends and "data N"
 * for each application record, and the response's status line. RFC 8446
 * §4.6.3: the server's KeyUpdate must come before its response.
 *
 *   ku_client PORT [close]    (close: the request says Connection: close)
 *
 * Exit 0 once the response's status line was read, 1 otherwise. */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int sock_fd;
static BIO *net_in, *net_out;

static int send_out(void)
{
	char buf[16384];
	int n;

	while ((n = BIO_read(net_out, buf, sizeof(buf))) > 0)
		if (send(sock_fd, buf, (size_t)n, 0) != n)
			return -1;
	return 0;
}

/* One recv (5 s at most) into OpenSSL's input; -1 at EOF or timeout. */
static int recv_in(void)
{
	struct pollfd p = { .fd = sock_fd, .events = POLLIN };
	char buf[65536];
	ssize_t n;

	if (poll(&p, 1, 5000) != 1)
		return -1;
	n = recv(sock_fd, buf, sizeof(buf), 0);
	if (n <= 0)
		return -1;
	BIO_write(net_in, buf, (int)n);
	return 0;
}

static void on_msg(int write_p, int version, int type, const void *buf, size_t len, SSL *ssl,
		   void *arg)
{
	const unsigned char *m = buf;

	(void)version;
	(void)ssl;
	(void)arg;
	if (write_p || !len)
		return;
	if (type == SSL3_RT_HANDSHAKE && m[0] == 24)
		printf("keyupdate\n");
	else if (type == SSL3_RT_INNER_CONTENT_TYPE && m[0] == SSL3_RT_APPLICATION_DATA)
		printf("data\n");
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *req = argc > 2 && strcmp(argv[2], "close") == 0
				  ? "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
				  : "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char got[4096];
	size_t have = 0;
	SSL *ssl;
	int n;

	if (argc < 2 || !ctx)
		return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_num_tickets(ctx, 0);
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sock_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (sock_fd < 0 || connect(sock_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return 2;
	ssl = SSL_new(ctx);
	net_in = BIO_new(BIO_s_mem());
	net_out = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(net_in, -1);
	SSL_set_bio(ssl, net_in, net_out);
	SSL_set_connect_state(ssl);
	while ((n = SSL_do_handshake(ssl)) != 1) {
		if (send_out() < 0 || SSL_get_error(ssl, n) != SSL_ERROR_WANT_READ ||
		    recv_in() < 0) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
	}
	if (send_out() < 0)
		return 1;
	/* The server's tickets come after its Finished: read them first, so
	 * that what is printed is only what answers the send below. */
	usleep(200000);
	if (recv_in() == 0)
		(void)SSL_read(ssl, got, sizeof(got));
	SSL_set_msg_callback(ssl, on_msg);
	if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1 ||
	    SSL_write(ssl, req, (int)strlen(req)) <= 0 || send_out() < 0)
		return 1;
	while (have < 12) {
		n = SSL_read(ssl, got + have, (int)(sizeof(got) - 1 - have));
		if (n > 0) {
			have += (size_t)n;
			continue;
		}
		if (SSL_get_error(ssl, n) != SSL_ERROR_WANT_READ || send_out() < 0 || recv_in() < 0)
			break;
	}
	got[have] = '\0';
	printf("response %.12s\n", got);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(sock_fd);
	return have >= 12 ? 0 : 1;
}
