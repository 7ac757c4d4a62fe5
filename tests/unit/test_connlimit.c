/* test_connlimit.c -- unit tests for gateway/connlimit.c: the per-address limit, a closed
 * connection giving its place back, and what counts as one address (IPv4 and its IPv4-mapped
 * IPv6 form alike, an IPv6 /64 as one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "connlimit.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &v6->sin6_addr), 1);
		v6->sin6_family = AF_INET6;
	}
	return ss;
}

/* Open connections from text while allowed, up to n; returns how many were. */
static int fill(struct connlimit *cl, const char *text, int n)
{
	struct sockaddr_storage ss = addr(text);
	int opened = 0;
	while (opened < n && connlimit_allows(cl, (struct sockaddr *)&ss)) {
		connlimit_opened(cl, (struct sockaddr *)&ss);
		opened++;
	}
	return opened;
}

static bool allows(struct connlimit *cl, const char *text)
{
	struct sockaddr_storage ss = addr(text);
	return connlimit_allows(cl, (struct sockaddr *)&ss);
}

static void test_limit_per_address(void **state)
{
	(void)state;
	struct connlimit *cl = connlimit_create(3, 64);
	assert_non_null(cl);
	assert_int_equal(fill(cl, "192.0.2.1", 10), 3);
	assert_false(allows(cl, "192.0.2.1"));
	assert_true(allows(cl, "192.0.2.2"));
	/* One closed: one place back. */
	struct sockaddr_storage ss = addr("192.0.2.1");
	connlimit_closed(cl, (struct sockaddr *)&ss);
	assert_true(allows(cl, "192.0.2.1"));
	connlimit_destroy(cl);
}

static void test_what_is_one_address(void **state)
{
	(void)state;
	struct connlimit *cl = connlimit_create(2, 64);
	/* An IPv4 address and its IPv4-mapped form are one. */
	assert_int_equal(fill(cl, "198.51.100.7", 1), 1);
	assert_int_equal(fill(cl, "::ffff:198.51.100.7", 10), 1);
	assert_false(allows(cl, "198.51.100.7"));
	/* Every address of an IPv6 /64 is one; the next /64 is another. */
	assert_int_equal(fill(cl, "2001:db8:1:2::1", 1), 1);
	assert_int_equal(fill(cl, "2001:db8:1:2:ffff:ffff:ffff:ffff", 10), 1);
	assert_false(allows(cl, "2001:db8:1:2:abcd::9"));
	assert_true(allows(cl, "2001:db8:1:3::1"));
	connlimit_destroy(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limit_per_address),
	    cmocka_unit_test(test_what_is_one_address),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
