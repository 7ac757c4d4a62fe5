/* test_ratelimit.c -- unit tests for gateway/ratelimit.c: the IP_RATE_LIMIT syntax, the
 * bucket's arithmetic, addresses that share a bucket, and memory that stays the same however
 * many callers there are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

#define SEC 1000000LL

static void test_parse(void **state)
{
	(void)state;
	double r = -1, b = -1;
	assert_true(ratelimit_parse("10/s", &r, &b));
	assert_true(r == 10.0 && b == 20.0);
	assert_true(ratelimit_parse("30/m", &r, &b));
	assert_true(r == 0.5 && b == 1.0);
	assert_true(ratelimit_parse("5/s:7", &r, &b));
	assert_true(r == 5.0 && b == 7.0);
	assert_true(ratelimit_parse("0", &r, &b));
	assert_true(r == 0.0);
	const char *bad[] = {"",       "10",    "10/h",  "/s",     "-1/s",   "0/s",  "10/s:",
	                     "10/s:0", "1e3/s", "10/ s", "10/sec", "10/s:x", " 10/s"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ratelimit_parse(bad[i], &r, &b))
			fail_msg("'%s' accepted", bad[i]);
}

/* A burst at once, then one per 1/rate; Retry-After counts whole seconds, at least 1. */
static void test_bucket(void **state)
{
	(void)state;
	struct ratelimit *rl = ratelimit_create(2.0, 4.0, 1024);
	assert_non_null(rl);
	int64_t t = 100 * SEC;
	for (int i = 0; i < 4; i++)
		assert_int_equal(ratelimit_take(rl, "192.0.2.1", t), 0);
	assert_int_equal(ratelimit_take(rl, "192.0.2.1", t), 1);
	/* Another address has its own bucket. */
	assert_int_equal(ratelimit_take(rl, "192.0.2.2", t), 0);
	/* Half a second later one token came back. */
	assert_int_equal(ratelimit_take(rl, "192.0.2.1", t + SEC / 2), 0);
	assert_int_equal(ratelimit_take(rl, "192.0.2.1", t + SEC / 2), 1);
	/* Never more than the burst, however long the wait. */
	t += 3600 * SEC;
	for (int i = 0; i < 4; i++)
		assert_int_equal(ratelimit_take(rl, "192.0.2.1", t), 0);
	assert_int_not_equal(ratelimit_take(rl, "192.0.2.1", t), 0);
	ratelimit_destroy(rl);

	/* A slow rate: the wait is rounded up to whole seconds. */
	rl = ratelimit_create(1.0 / 60.0, 1.0, 16);
	assert_int_equal(ratelimit_take(rl, "198.51.100.1", 0), 0);
	assert_int_equal(ratelimit_take(rl, "198.51.100.1", 0), 60);
	assert_int_equal(ratelimit_take(rl, "198.51.100.1", 30 * SEC), 30);
	ratelimit_destroy(rl);
}

/* An IPv6 caller is one caller for its whole /64; an IPv4-mapped address is its IPv4 one. */
static void test_address_grouping(void **state)
{
	(void)state;
	struct ratelimit *rl = ratelimit_create(1.0, 1.0, 1024);
	assert_int_equal(ratelimit_take(rl, "2001:db8:1:2::1", 0), 0);
	assert_int_not_equal(ratelimit_take(rl, "2001:db8:1:2:ffff::9", 0), 0);
	assert_int_equal(ratelimit_take(rl, "2001:db8:1:3::1", 0), 0);
	assert_int_equal(ratelimit_take(rl, "203.0.113.5", 0), 0);
	assert_int_not_equal(ratelimit_take(rl, "::ffff:203.0.113.5", 0), 0);
	ratelimit_destroy(rl);
}

/* A flood of distinct addresses, three times the table, fits in the same table; a caller that
 * keeps coming back keeps its bucket through it, because the slots idle longest go first. */
static void test_bounded_memory(void **state)
{
	(void)state;
	struct ratelimit *rl = ratelimit_create(1.0, 3.0, 65536);
	int64_t t = 0;
	assert_int_equal(ratelimit_take(rl, "192.0.2.200", t), 0);
	assert_int_equal(ratelimit_take(rl, "192.0.2.200", t), 0);
	assert_int_equal(ratelimit_take(rl, "192.0.2.200", t), 0);
	char ip[64];
	for (unsigned i = 0; i < 200000; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		t += 1; /* one microsecond apart: the flood never earns the caller a token */
		assert_int_equal(ratelimit_take(rl, ip, t), 0);
		if (i % 1000 == 0) /* the caller keeps asking, and stays limited */
			assert_int_not_equal(ratelimit_take(rl, "192.0.2.200", t), 0);
	}
	ratelimit_destroy(rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_bucket),
	    cmocka_unit_test(test_address_grouping),
	    cmocka_unit_test(test_bounded_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
