/* The self-signed certificate `ringtls serve` uses when given none: ECDSA
 * P-256, for localhost, 127.0.0.1 and ::1, made on first run in the state
 * directory and reused while it is valid. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define VALID_DAYS 365

static int mkdirs(const char *dir)
{
	char p[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, dir, n + 1);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Usable: readable, parses, and valid for at least another day. */
static bool reusable(const char *cert, const char *key)
{
	FILE *f = fopen(cert, "r");
	X509 *x;
	bool ok = false;

	if (!f)
		return false;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x) {
		time_t tomorrow = time(NULL) + 86400;

		ok = X509_cmp_time(X509_get0_notAfter(x), &tomorrow) > 0 && access(key, R_OK) == 0;
		X509_free(x);
	}
	return ok;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!e)
		return -1;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *pk)
{
	X509 *x = X509_new();
	X509_NAME *name;
	unsigned char serial[16];
	BIGNUM *bn = NULL;

	if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto fail;
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)VALID_DAYS * 86400);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"ringtls", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, pk);
	/* Self-signed and trusted directly (curl --cacert), like
	 * `openssl req -x509` makes them. */
	if (add_ext(x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
	    add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    !X509_sign(x, pk, EVP_sha256()))
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

/* Writes atomically: a temporary file renamed into place. */
static int write_pem(const char *path, mode_t mode, X509 *x, EVP_PKEY *pk)
{
	char tmp[4200];
	FILE *f;
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return -errno;
	}
	ok = x ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	if (fclose(f) != 0 || !ok) {
		unlink(tmp);
		return -EIO;
	}
	return rename(tmp, path) < 0 ? -errno : 0;
}

int rtls__selfsigned(const char *dir, char **cert_path, char **key_path, char *why, size_t n)
{
	EVP_PKEY *pk = NULL;
	X509 *x = NULL;
	int ret;

	if (!dir) {
		snprintf(why, n, "no certificate given and no state directory for a self-signed one");
		return -EINVAL;
	}
	if (asprintf(cert_path, "%s/selfsigned-cert.pem", dir) < 0 ||
	    asprintf(key_path, "%s/selfsigned-key.pem", dir) < 0) {
		snprintf(why, n, "out of memory");
		return -ENOMEM;
	}
	if (reusable(*cert_path, *key_path))
		return 0;
	ret = mkdirs(dir);
	if (ret < 0) {
		snprintf(why, n, "state directory %s: %s", dir, strerror(-ret));
		return ret;
	}
	pk = EVP_EC_gen("P-256");
	x = pk ? make_cert(pk) : NULL;
	if (!x) {
		snprintf(why, n, "cannot generate a self-signed certificate");
		ret = -EIO;
		goto out;
	}
	ret = write_pem(*key_path, 0600, NULL, pk);
	if (ret == 0)
		ret = write_pem(*cert_path, 0644, x, NULL);
	if (ret < 0)
		snprintf(why, n, "cannot write the self-signed certificate into %s: %s", dir, strerror(-ret));
	else
		rtls_log(RTLS_LOG_INFO, "generated a self-signed certificate for localhost: %s", *cert_path);
out:
	X509_free(x);
	EVP_PKEY_free(pk);
	return ret;
}
