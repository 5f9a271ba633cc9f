/* Address parsing and listening sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <unistd.h>

#include "internal.h"
#include "unit/check.h"

static int parse(const char *s)
{
	struct sockaddr_storage ss;
	socklen_t len;

	return rtls__parse_addr(s, &ss, &len);
}

int main(void)
{
	struct sockaddr_storage ss, got;
	socklen_t len, glen = sizeof(got);
	char out[64];
	int a, b;

	CHECK_EQ_INT(parse("127.0.0.1:8080"), 0);
	CHECK_EQ_INT(parse("[::1]:443"), 0);
	CHECK_EQ_INT(parse(":80"), 0);
	CHECK_EQ_INT(parse("8080"), 0);
	CHECK_EQ_INT(parse("localhost:1"), 0);
	CHECK_EQ_INT(parse("127.0.0.1:65536"), -EINVAL);
	CHECK_EQ_INT(parse("127.0.0.1:"), -EINVAL);
	CHECK_EQ_INT(parse("127.0.0.1:-1"), -EINVAL);
	CHECK_EQ_INT(parse("300.0.0.1:80"), -EINVAL);
	CHECK_EQ_INT(parse("[::1:80"), -EINVAL);
	CHECK_EQ_INT(parse("host.example:80"), -EINVAL);
	CHECK_EQ_INT(parse(""), -EINVAL);

	CHECK_EQ_INT(rtls__parse_addr("127.0.0.1:0", &ss, &len), 0);
	a = rtls__listen_socket(&ss, len);
	CHECK(a >= 0);
	CHECK(getsockname(a, (struct sockaddr *)&got, &glen) == 0);
	rtls_format_addr(&got, out, sizeof(out));
	CHECK(strncmp(out, "127.0.0.1:", 10) == 0);
	/* A second SO_REUSEPORT socket may share the port (one per reactor). */
	b = rtls__listen_socket(&got, glen);
	CHECK(b >= 0);
	close(a);
	close(b);
	CHECK_DONE();
}
