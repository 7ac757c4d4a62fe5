/* test_url.c -- unit tests for common/url.c: which target URLs are accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

static void assert_accepted(const char *url)
{
	char err[256] = "";
	int rc = url_check(url, err, sizeof(err));
	if (rc != 0)
		fail_msg("'%s' rejected (%d): %s", url, rc, err);
}

static void assert_rejected(const char *url)
{
	char err[256] = "";
	int rc = url_check(url, err, sizeof(err));
	if (rc != -EINVAL)
		fail_msg("'%s' gave %d, expected -EINVAL", url, rc);
	if (err[0] == '\0')
		fail_msg("'%s' rejected without a message", url);
	assert_null(strchr(err, '\n'));
}

static void test_accepts_http_and_https(void **state)
{
	assert_accepted("http://example.com");
	assert_accepted("https://example.com");
	assert_accepted("http://example.com/");
	assert_accepted("https://hooks.example.com/in");
	assert_accepted("http://localhost");
	assert_accepted("http://127.0.0.1/");
}

static void test_scheme_any_case(void **state)
{
	assert_accepted("HTTP://example.com/");
	assert_accepted("HTTPS://example.com/");
	assert_accepted("Http://example.com/");
	assert_accepted("hTtPs://example.com/x");
}

static void test_ports_paths_query(void **state)
{
	assert_accepted("http://example.com:8080");
	assert_accepted("https://example.com:443/");
	assert_accepted("http://127.0.0.1:3000/webhook");
	assert_accepted("https://example.com/a/b/c.json");
	assert_accepted("https://example.com/hook?token=abc&x=1");
	assert_accepted("https://example.com:8443/a/b?x=%20y#frag");
	assert_accepted("http://example.com/path%2Fwith%2Fescapes");
}

static void test_ipv6_hosts(void **state)
{
	assert_accepted("http://[::1]/");
	assert_accepted("http://[::1]:8080/hook");
	assert_accepted("https://[2001:db8::1]/x?y=z");
	assert_rejected("http://[::1/");
	assert_rejected("http://[not-an-address]/");
}

static void test_userinfo(void **state)
{
	assert_accepted("https://user:pass@example.com/");
	assert_accepted("http://user@example.com:8080/x");
	assert_rejected("http://user:pass@/x");
}

static void test_rejects_empty(void **state)
{
	assert_rejected("");
}

static void test_rejects_other_schemes(void **state)
{
	assert_rejected("ftp://example.com/file");
	assert_rejected("file:///etc/passwd");
	assert_rejected("javascript:alert(1)");
	assert_rejected("mailto:someone@example.com");
	assert_rejected("ws://example.com/");
	assert_rejected("httpx://example.com/");
	assert_rejected("nats://127.0.0.1:4222");
}

static void test_rejects_relative_and_scheme_only(void **state)
{
	assert_rejected("/relative/path");
	assert_rejected("relative/path");
	assert_rejected("example.com/hook");
	assert_rejected("//example.com/hook");
	assert_rejected("http:");
	assert_rejected("https:");
	assert_rejected("http:/example.com");
	assert_rejected("http:example.com");
}

static void test_rejects_missing_host(void **state)
{
	assert_rejected("http://");
	assert_rejected("https://");
	assert_rejected("http:///");
	assert_rejected("http:///path");
	assert_rejected("https:///example.com/x");
	assert_rejected("http://:8080/");
	assert_rejected("http://?q=1");
	assert_rejected("http://#frag");
	assert_rejected("http://@/");
}

static void test_rejects_spaces_and_controls(void **state)
{
	assert_rejected("http://exa mple.com/");
	assert_rejected(" http://example.com/");
	assert_rejected("http://example.com/ ");
	assert_rejected("http://example.com/a b");
	assert_rejected("http://example.com/\n");
	assert_rejected("http://example.com/\r\nX-Injected: 1");
	assert_rejected("http://example.com/\t");
	assert_rejected("http://ex\x01"
	                "ample.com/");
	assert_rejected("http://example.com/\x7f");
	assert_rejected("http://example.com/\x1b[0m");
}

/* An https URL of exactly len bytes. */
static char *url_of_length(size_t len)
{
	static const char prefix[] = "https://example.com/";
	char *u = malloc(len + 1);
	assert_non_null(u);
	memcpy(u, prefix, sizeof(prefix) - 1);
	memset(u + sizeof(prefix) - 1, 'a', len - (sizeof(prefix) - 1));
	u[len] = '\0';
	assert_int_equal(strlen(u), len);
	return u;
}

static void test_length_limit(void **state)
{
	assert_int_equal(URL_MAX_LEN, 2048);
	char *u = url_of_length(2047);
	assert_accepted(u);
	free(u);

	u = url_of_length(2048);
	assert_accepted(u);
	free(u);

	u = url_of_length(2049);
	assert_rejected(u);
	char err[256] = "";
	assert_int_equal(url_check(u, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "2048"));
	free(u);

	u = url_of_length(100000);
	assert_rejected(u);
	free(u);
}

static void test_small_error_buffer(void **state)
{
	/* The message is cut to the buffer, never written past it. */
	char err[8];
	memset(err, 'X', sizeof(err));
	assert_int_equal(url_check("ftp://example.com/", err, 4), -EINVAL);
	assert_int_equal(strlen(err), 3);
	assert_int_equal(err[4], 'X');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepts_http_and_https),
	    cmocka_unit_test(test_scheme_any_case),
	    cmocka_unit_test(test_ports_paths_query),
	    cmocka_unit_test(test_ipv6_hosts),
	    cmocka_unit_test(test_userinfo),
	    cmocka_unit_test(test_rejects_empty),
	    cmocka_unit_test(test_rejects_other_schemes),
	    cmocka_unit_test(test_rejects_relative_and_scheme_only),
	    cmocka_unit_test(test_rejects_missing_host),
	    cmocka_unit_test(test_rejects_spaces_and_controls),
	    cmocka_unit_test(test_length_limit),
	    cmocka_unit_test(test_small_error_buffer),
	};
	return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
