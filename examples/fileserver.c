/* fileserver: sends one file to every client, then closes. Shows file bodies
 * (spliced from the page cache), on_drained, and a server that starts,
 * stops and waits under signal handling of its own.
 * Run: ./fileserver PATH [127.0.0.1:7001]
 * Build against an installed librtls: cc fileserver.c $(pkg-config --cflags --libs ringtls) */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringtls/ringtls.h"

static const char *path;
static rtls_server *server;

static int on_open(rtls_conn *c, void *data)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	(void)data;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return -1; /* on_open < 0: the connection is closed at once */
	}
	ret = rtls_conn_file_ready(c); /* the splice pipe, before anything is queued */
	if (ret < 0) {
		close(fd);
		return ret;
	}
	/* fd is the engine's from here on, also if this fails. */
	ret = rtls_conn_write_file(c, fd, 0, (size_t)st.st_size);
	if (ret == 0)
		ret = rtls_conn_flush(c);
	rtls_conn_set_timer(c, RTLS_TIMER_IDLE); /* re-armed on progress: a stalled reader ends */
	return ret;
}

static void on_data(rtls_conn *c, void *data, struct rtls_buf *b)
{
	(void)data;
	rtls_buf_release(c, b); /* nothing to read: drop it */
}

/* The whole file has left: end the stream (FIN) and let on_close follow. */
static void on_drained(rtls_conn *c, void *data)
{
	(void)data;
	rtls_conn_close(c);
}

static void on_close(rtls_conn *c, void *data, int err)
{
	(void)c;
	(void)data;
	if (err) /* the peer is gone: rtls_conn_peer() would say "?" */
		rtls_log(RTLS_LOG_INFO, "a download was cut short: %s", strerror(-err));
}

/* rtls_server_stop() is async-signal-safe. The reactors block every
 * signal, so this handler runs on the thread waiting in main(). */
static void on_signal(int sig)
{
	(void)sig;
	rtls_server_stop(server);
}

int main(int argc, char **argv)
{
	static const struct rtls_handler h = { .on_open = on_open,
					       .on_data = on_data,
					       .on_drained = on_drained,
					       .on_close = on_close };
	struct rtls_listen l = { .addr = argc > 2 ? argv[2] : "127.0.0.1:7001" };
	struct rtls_config cfg = { .listeners = &l, .nlisteners = 1, .handler = &h, .threads = 2 };
	struct sigaction sa = { .sa_handler = on_signal };
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256], addr[64];
	int ret;

	if (argc < 2) {
		fprintf(stderr, "usage: fileserver PATH [ADDR:PORT]\n");
		return 2;
	}
	path = argv[1];
	if (rtls_server_create(&cfg, &server, why, sizeof(why)) < 0) {
		fprintf(stderr, "fileserver: %s\n", why);
		return 1;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	rtls_server_listen_addr(server, 0, &ss, &len);
	rtls_format_addr(&ss, addr, sizeof(addr));
	rtls_log(RTLS_LOG_INFO, "listening on %s, sending %s", addr, path);
	ret = rtls_server_start(server); /* returns at once; SIGPIPE needs no SIG_IGN */
	if (ret == 0)
		ret = rtls_server_wait(server); /* until on_signal stops it */
	rtls_server_destroy(server);
	if (ret < 0)
		fprintf(stderr, "fileserver: %s\n", strerror(-ret));
	return ret < 0;
}
