/* `ringtls probe`: what this machine offers ringtls. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "core/internal.h"
#include "probe.h"
#include "tls/ktls.h"

static const struct {
	uint16_t id;
	const char *name;
} ciphers[] = {
	{ TLS_CIPHER_AES_GCM_128, "AES-128-GCM" },
	{ TLS_CIPHER_AES_GCM_256, "AES-256-GCM" },
	{ TLS_CIPHER_CHACHA20_POLY1305, "CHACHA20-POLY1305" },
};

static void print_ulp(void)
{
	char avail[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
	int ret = rtls__ktls_available();

	if (f) {
		if (!fgets(avail, sizeof(avail), f))
			avail[0] = '\0';
		fclose(f);
		avail[strcspn(avail, "\n")] = '\0';
	}
	printf("tls ULP:        %s", ret == 0 ? "yes" : "no");
	if (ret == -ENOENT)
		printf(" (TCP_ULP \"tls\": %s: this kernel was built without CONFIG_TLS, or the "
		       "tls module cannot be loaded)", strerror(-ret));
	else if (ret < 0)
		printf(" (TCP_ULP \"tls\": %s)", strerror(-ret));
	printf("; available ULPs: %s\n", avail[0] ? avail : "-");
}

static void print_ciphers(void)
{
	int rekey13 = -EOPNOTSUPP;

	for (int v = 0; v < 2; v++) {
		uint16_t ver = v ? TLS_1_2_VERSION : TLS_1_3_VERSION;

		for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
			int rk = -EOPNOTSUPP;
			int tx = rtls__ktls_probe(ver, ciphers[i].id, TLS_TX, v ? NULL : &rk);
			int rx = rtls__ktls_probe(ver, ciphers[i].id, TLS_RX, NULL);

			if (!v && i == 0)
				rekey13 = tx == 0 ? rk : tx;
			printf("  TLS %s %-18s TX %-3s RX %s\n", v ? "1.2" : "1.3", ciphers[i].name,
			       tx == 0 ? "yes" : "no", rx == 0 ? "yes" : "no");
		}
	}
	printf("TLS 1.3 rekey:  %s\n", rekey13 == 0 ? "yes (KeyUpdate can stay in the kernel)"
						: "no (KeyUpdate needs userspace RX; Linux >= 6.14 has it)");
}

/* What --backend auto comes to here, and why. */
static void print_backend(void)
{
	const char *env = secure_getenv("RINGTLS_BACKEND");
	unsigned flags;
	int refused, b = rtls__backend_pick(RTLS_BACKEND_AUTO, &flags, &refused);

	printf("backend (auto): ");
	if (b == -EINVAL)
		printf("none: RINGTLS_BACKEND=%s is not auto, io_uring or epoll\n", env ? env : "");
	else if (b < 0)
		printf("none: io_uring: %s\n", strerror(-b));
	else if (env && *env && strcmp(env, "auto") != 0)
		printf("%s (RINGTLS_BACKEND=%s)\n", b == RTLS_BACKEND_EPOLL ? "epoll" : "io_uring",
		       env);
	else if (refused)
		printf("epoll (io_uring is not available: io_uring_setup: %s)\n",
		       strerror(-refused));
	else
		printf("%s\n", b == RTLS_BACKEND_EPOLL ? "epoll" : "io_uring");
}

int rtls_cli_probe(void)
{
	struct utsname u;
	char ring[1024];

	uname(&u);
	printf("kernel:         %s %s\n", u.sysname, u.release);
	print_ulp();
	if (rtls__ktls_available() == 0) {
		printf("kernel TLS per cipher:\n");
		print_ciphers();
	} else {
		printf("kernel TLS:     not available: TLS stays in userspace (OpenSSL)\n");
	}
	rtls__ring_describe(ring, sizeof(ring));
	printf("io_uring:       %s\n", ring);
	rtls__ep_describe(ring, sizeof(ring));
	printf("epoll:          %s\n", ring);
	print_backend();
	return 0;
}
