/* test_retry_policy.c -- the retry schedule: jitter bounds, the last delay repeating, a
 * believed but capped Retry-After, and the retry cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "retry_policy.h"

static struct retry_policy policy(long max_retries)
{
	struct cfg_durations sched = {.n = 3, .ms = {1000, 5000, 30000}};
	struct retry_policy p;
	retry_policy_init(&p, max_retries, &sched);
	return p;
}

static void test_jitter_stays_within_20_percent(void **state)
{
	struct retry_policy p = policy(5);
	int64_t lo = INT64_MAX, hi = 0;
	for (int i = 0; i < 10000; i++) {
		int64_t d = retry_policy_delay(&p, 1, 500, -1);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	assert_true(lo >= 800 && hi <= 1200);
	/* Jitter really spreads: not one value. */
	assert_true(hi - lo > 200);
}

static void test_schedule_by_attempt_and_last_repeats(void **state)
{
	struct retry_policy p = policy(5);
	int64_t d2 = retry_policy_delay(&p, 2, 500, -1);
	int64_t d9 = retry_policy_delay(&p, 9, 0, -1);
	assert_true(d2 >= 4000 && d2 <= 6000);
	assert_true(d9 >= 24000 && d9 <= 36000);
}

static void test_retry_after_believed_up_to_twice(void **state)
{
	struct retry_policy p = policy(5);
	assert_int_equal(retry_policy_delay(&p, 1, 503, 1500), 1500);
	assert_int_equal(retry_policy_delay(&p, 1, 429, 0), 0);
	assert_int_equal(retry_policy_delay(&p, 1, 429, 60000), 2000);
	assert_int_equal(retry_policy_delay(&p, 1, 503, INT64_MAX), 2000);
	/* Only 429 and 503 carry a meaningful Retry-After. */
	int64_t d = retry_policy_delay(&p, 1, 500, 60000);
	assert_true(d >= 800 && d <= 1200);
}

static void test_retry_cap(void **state)
{
	struct retry_policy p = policy(2);
	assert_true(retry_policy_again(&p, 1));
	assert_true(retry_policy_again(&p, 2));
	assert_false(retry_policy_again(&p, 3));
	struct retry_policy none = policy(0);
	assert_false(retry_policy_again(&none, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jitter_stays_within_20_percent),
	    cmocka_unit_test(test_schedule_by_attempt_and_last_repeats),
	    cmocka_unit_test(test_retry_after_believed_up_to_twice),
	    cmocka_unit_test(test_retry_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
