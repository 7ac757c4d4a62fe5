/* test_url.c -- unit tests for common/url.c: which target URLs are accepted, their normalised
 * and redacted forms, and the literal addresses the default address policy refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include "natsconn.h"
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

static void assert_normalized(const char *url, const char *want)
{
	char out[URL_MAX_LEN + 1], err[256] = "";
	struct addr_policy open;
	assert_int_equal(addr_policy_init(&open, true, "", err, sizeof(err)), 0);
	int rc = url_normalize(url, &open, out, sizeof(out), err, sizeof(err));
	if (rc != 0)
		fail_msg("'%s' rejected (%d): %s", url, rc, err);
	if (strcmp(out, want) != 0)
		fail_msg("'%s' normalised to '%s', expected '%s'", url, out, want);
}

/* What is stored and sent is libcurl's own reading of the URL. */
static void test_normalized_form(void **state)
{
	(void)state;
	assert_normalized("http://2130706433/", "http://127.0.0.1/");
	assert_normalized("http://0x7f000001/x", "http://127.0.0.1/x");
	assert_normalized("http://127.1:8080/", "http://127.0.0.1:8080/");
	assert_normalized("http://017700000001/", "http://127.0.0.1/");
	assert_normalized("http://example.com/a/../b/./c?q=1#f", "http://example.com/b/c?q=1#f");
	assert_normalized("HTTPS://example.com", "https://example.com/");
	/* International names in punycode, with UTS #46 mapping (full-width forms fold). */
	assert_normalized("http://b\xc3\xbc"
	                  "cher.example/",
	                  "http://xn--bcher-kva.example/");
	assert_normalized("http://\xef\xbc\xa5\xef\xbc\xb8.example/", "http://ex.example/");
	assert_normalized("http://\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.1/", "http://127.0.0.1/");
	assert_normalized("http://u:pw@example.com/", "http://u:pw@example.com/");
	/* Normalised until it settles: the decoded host is read as the number it is. */
	assert_normalized("https://h@3%33333333/", "https://h@1.252.160.85/");
}

/* What libcurl would send somewhere other than what a person reads, or cannot send at all. */
static void test_rejects_misleading_urls(void **state)
{
	(void)state;
	assert_rejected("http://127.0.0.1:39101\\@evil.example/");
	assert_rejected("http://example.com\\x/");
	assert_rejected("http://example.com:/x");
	assert_rejected("http://example.com:");
	assert_rejected("http://[::1]:/");
	assert_rejected("http://u:p@example.com:/");
	assert_rejected("http://\xff\xfe.example/");
}

static void assert_blocked(const char *url)
{
	char out[URL_MAX_LEN + 1], err[256] = "";
	struct addr_policy p;
	assert_int_equal(addr_policy_init(&p, false, "", err, sizeof(err)), 0);
	int rc = url_normalize(url, &p, out, sizeof(out), err, sizeof(err));
	if (rc != -EINVAL || strstr(err, "not a public one") == NULL)
		fail_msg("'%s' gave %d (%s), expected a refused address", url, rc, err);
}

static void assert_not_blocked(const char *url, const char *allow)
{
	char out[URL_MAX_LEN + 1], err[256] = "";
	struct addr_policy p;
	assert_int_equal(addr_policy_init(&p, false, allow, err, sizeof(err)), 0);
	int rc = url_normalize(url, &p, out, sizeof(out), err, sizeof(err));
	if (rc != 0)
		fail_msg("'%s' with '%s' allowed gave %d: %s", url, allow, rc, err);
}

/* Every spelling of a refused literal address is refused at registration. */
static void test_refused_literals(void **state)
{
	(void)state;
	const char *urls[] = {
	    "http://127.0.0.1/",
	    "http://2130706433/",
	    "http://0x7f000001/",
	    "http://127.1/",
	    "http://0177.0.0.1/",
	    "http://[::1]/",
	    "http://[::ffff:127.0.0.1]/",
	    "http://[::ffff:7f00:1]/",
	    "http://169.254.169.254/",
	    "http://10.0.0.1/",
	    "http://172.16.5.4/",
	    "http://192.168.1.1/",
	    "http://100.64.0.1/",
	    "http://0.0.0.0/",
	    "http://0/",
	    "http://224.0.0.1/",
	    "http://255.255.255.255/",
	    "http://240.0.0.1/",
	    "http://192.0.2.1/",
	    "http://198.18.0.1/",
	    "http://198.51.100.7/",
	    "http://203.0.113.9/",
	    "http://[fd00::1]/",
	    "http://[fe80::1%25eth0]/",
	    "http://[::]/",
	    "http://[2001:db8::1]/",
	    "http://[64:ff9b::7f00:1]/",
	    "http://[2002:7f00:1::]/",
	    "http://[ff02::1]/",
	    "http://[2001::1]/",
	    "http://\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1/",
	    "http://u:p@127.0.0.1:22/",
	    /* Percent-encoded: libcurl decodes the host, and reads it as an address when it
	     * parses the URL again to send it (found by fuzzing). */
	    "http://%32%31%33%30%37%30%36%34%33%33/",
	    "http://%31%32%37.0.0.1/",
	};
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
		assert_blocked(urls[i]);
	/* Public addresses and names pass (a name is judged where the connection is made). */
	assert_not_blocked("http://93.184.216.34/", "");
	assert_not_blocked("http://[2606:4700::1111]/", "");
	assert_not_blocked("http://localhost/", "");
	assert_not_blocked("http://127.0.0.1:9/", "127.0.0.0/8");
	assert_not_blocked("http://[::ffff:127.0.0.1]/", "127.0.0.1");
	assert_not_blocked("http://10.1.2.3/", "::ffff:10.0.0.0/104");
	assert_not_blocked("http://[::1]/", "10.0.0.0/8,::1/128");
}

static void assert_redacted(const char *url, const char *want)
{
	char out[URL_MAX_LEN + 1];
	url_redact(url, out, sizeof(out));
	if (strcmp(out, want) != 0)
		fail_msg("'%s' redacted to '%s', expected '%s'", url, out, want);
}

static void test_redaction(void **state)
{
	(void)state;
	assert_redacted("http://u:pw@example.com/x", "http://u:***@example.com/x");
	assert_redacted("https://token@example.com", "https://***@example.com");
	assert_redacted("http://u:p@ss@example.com/", "http://u:***@example.com/");
	assert_redacted("http://:pw@example.com/", "http://:***@example.com/");
	/* An empty password is none: the user name alone is the secret (found by fuzzing). */
	assert_redacted("https://sk_live_abc:@api.example.com/v1",
	                "https://***@api.example.com/v1");
	assert_redacted("http://u:@h/", "http://***@h/");
	assert_redacted("http://example.com/a@b", "http://example.com/a@b");
	assert_redacted("http://example.com/?x=a@b#c@d", "http://example.com/?x=a@b#c@d");
	assert_redacted("http://example.com", "http://example.com");
	assert_redacted("http://u:***@example.com/", "http://u:***@example.com/");
	assert_redacted("nats://a:b@h1:4222,nats://h2", "nats://a:***@h1:4222,nats://h2");
	/* An '@' in an IPv6 literal's zone id is the host's, not the userinfo's (fuzz_url). */
	assert_redacted("http://@[::f%25@0]/", "http://***@[::f%25@0]/");
	assert_redacted("http://u:pw@[::1%25@z]:8080/", "http://u:***@[::1%25@z]:8080/");
}

/* NATS_URL as logs show it: every URL of a cluster list redacted. */
static void test_nats_url_redaction(void **state)
{
	(void)state;
	char out[512];
	url_redact_list("nats://u:pw@a:4222,nats://v:pw2@b:4222,tls://c:4222", out, sizeof(out));
	assert_string_equal(out, "nats://u:***@a:4222,nats://v:***@b:4222,tls://c:4222");
	url_redact_list("nats://tok@a:4222", out, sizeof(out));
	assert_string_equal(out, "nats://***@a:4222");
	url_redact_list("nats://127.0.0.1:4222", out, sizeof(out));
	assert_string_equal(out, "nats://127.0.0.1:4222");
	assert_null(strstr(out, "pw"));
}

static void test_address_policy_parsing(void **state)
{
	(void)state;
	struct addr_policy p;
	char err[256];
	assert_int_equal(
	    addr_policy_init(&p, false, "10.0.0.0/8,fd00::/8,192.0.2.7", err, sizeof(err)), 0);
	assert_int_equal(p.n, 3);
	const char *bad[] = {"10.0.0.0/33", "10.0.0.0/",       "fd00::/129",  "10.0.0.0/8,",
	                     "example.com", "10.0.0.0/8,,::1", "10.0.0.0/-1", " 10.0.0.0/8"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (addr_policy_init(&p, false, bad[i], err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_non_null(strstr(err, "TARGET_ALLOW_CIDRS"));
	}
	/* The message stays one line whatever the entry holds (found by fuzzing). */
	assert_int_equal(addr_policy_init(&p, false, "10.0.0.0/8,\nbad\r", err, sizeof(err)),
	                 -EINVAL);
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\r'));
	unsigned char v4[4] = {8, 8, 8, 8}, lo[4] = {127, 0, 0, 1};
	assert_null(addr_special(AF_INET, v4));
	assert_string_equal(addr_special(AF_INET, lo), "loopback");
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
	    cmocka_unit_test(test_normalized_form),
	    cmocka_unit_test(test_rejects_misleading_urls),
	    cmocka_unit_test(test_refused_literals),
	    cmocka_unit_test(test_redaction),
	    cmocka_unit_test(test_address_policy_parsing),
	    cmocka_unit_test(test_nats_url_redaction),
	};
	return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
