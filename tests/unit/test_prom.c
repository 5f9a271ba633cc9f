/* The admin listener's text writer (src/http/prom.c): the Prometheus text
 * exposition format 0.0.4 exactly (HELP and TYPE lines, label sets,
 * escapes of HELP text and label values), JSON strings that stay ASCII
 * and valid whatever the input, growth past the first block, and no
 * write at all once an allocation has failed. */
#include "../../src/http/prom.h"
#include "check.h"

static void expect(struct rtls__text *t, const char *want)
{
	if (t->oom || !t->buf || strcmp(t->buf, want) != 0) {
		fprintf(stderr, "FAIL: got\n%s\nwant\n%s\n", t->buf ? t->buf : "(null)", want);
		check_failures++;
	}
	CHECK_EQ_INT(t->len, strlen(want));
}

static void test_family(void)
{
	struct rtls__text t = { 0 };

	rtls__prom_family(&t, "x_total", "counter", "Things, counted.");
	rtls__prom_sample(&t, "x_total", NULL, 0);
	rtls__prom_sample(&t, "x_total", (const char *[]){ NULL }, 18446744073709551615ull);
	rtls__prom_sample(&t, "x_total", (const char *[]){ "a", "1", NULL }, 7);
	rtls__prom_sample(&t, "x_total", (const char *[]){ "a", "1", "b", "two", NULL }, 8);
	/* An odd list stops at the last whole pair. */
	rtls__prom_sample(&t, "x_total", (const char *[]){ "a", "1", "b", NULL }, 9);
	expect(&t, "# HELP x_total Things, counted.\n"
		   "# TYPE x_total counter\n"
		   "x_total 0\n"
		   "x_total 18446744073709551615\n"
		   "x_total{a=\"1\"} 7\n"
		   "x_total{a=\"1\",b=\"two\"} 8\n"
		   "x_total{a=\"1\"} 9\n");
	rtls__text_free(&t);
	CHECK(t.buf == NULL && t.len == 0 && t.cap == 0);
}

static void test_escapes(void)
{
	struct rtls__text t = { 0 };

	/* HELP: backslash and newline escaped, a quote kept as it is. */
	rtls__prom_family(&t, "y", "gauge", "a \\ b\n\"c\"");
	/* Label values: backslash, quote and newline escaped. */
	rtls__prom_sample(&t, "y", (const char *[]){ "v", "C:\\dir\n\"q\"", NULL }, 1);
	expect(&t, "# HELP y a \\\\ b\\n\"c\"\n"
		   "# TYPE y gauge\n"
		   "y{v=\"C:\\\\dir\\n\\\"q\\\"\"} 1\n");
	rtls__text_free(&t);
}

static void test_json(void)
{
	struct rtls__text t = { 0 };

	rtls__text_json_str(&t, "");
	rtls__text_printf(&t, ",");
	rtls__text_json_str(&t, "plain \"q\" \\ \n\t\x01\x7f\xc3\xa9");
	expect(&t, "\"\",\"plain \\\"q\\\" \\\\ \\u000a\\u0009\\u0001\\u007f\\u00c3\\u00a9\"");
	rtls__text_free(&t);
}

static void test_growth(void)
{
	struct rtls__text t = { 0 };
	char want[64];
	size_t at = 0;
	bool ok = true;

	for (unsigned i = 0; i < 5000; i++)
		rtls__prom_sample(&t, "z", (const char *[]){ "i", "k", NULL }, i);
	CHECK(!t.oom && t.cap > 4096 && t.buf[t.len] == '\0');
	for (unsigned i = 0; i < 5000 && ok; i++) {
		int n = snprintf(want, sizeof(want), "z{i=\"k\"} %u\n", i);

		ok = at + (size_t)n <= t.len && memcmp(t.buf + at, want, (size_t)n) == 0;
		at += (size_t)n;
	}
	CHECK(ok && at == t.len);
	rtls__text_free(&t);
}

static void test_oom(void)
{
	struct rtls__text t = { 0 };

	rtls__text_printf(&t, "kept");
	t.oom = true; /* as after a realloc that failed */
	rtls__prom_family(&t, "n", "counter", "h");
	rtls__prom_sample(&t, "n", (const char *[]){ "a", "b", NULL }, 1);
	rtls__text_json_str(&t, "x");
	rtls__text_printf(&t, "%d", 5);
	CHECK_EQ_INT(t.len, 4);
	CHECK(strcmp(t.buf, "kept") == 0);
	rtls__text_free(&t);
}

int main(void)
{
	test_family();
	test_escapes();
	test_json();
	test_growth();
	test_oom();
	CHECK_DONE();
}
