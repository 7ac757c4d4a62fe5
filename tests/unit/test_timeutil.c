/* test_timeutil.c -- unit tests for common/timeutil.c: RFC 3339 formatting and clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "timeutil.h"

static void assert_rfc3339(int64_t epoch_ms, const char *want)
{
	char out[TIME_RFC3339_LEN + 2];
	memset(out, 'Z', sizeof(out));
	time_rfc3339(epoch_ms, out);
	assert_string_equal(out, want);
	assert_int_equal(strlen(out), TIME_RFC3339_LEN);
	assert_int_equal(out[TIME_RFC3339_LEN + 1], 'Z'); /* nothing written past the NUL */
}

static void test_rfc3339_known_epochs(void **state)
{
	assert_int_equal(TIME_RFC3339_LEN, 24);
	assert_rfc3339(0, "1970-01-01T00:00:00.000Z");
	assert_rfc3339(1700000000123, "2023-11-14T22:13:20.123Z");
	assert_rfc3339(1, "1970-01-01T00:00:00.001Z");
	assert_rfc3339(999, "1970-01-01T00:00:00.999Z");
	assert_rfc3339(1000, "1970-01-01T00:00:01.000Z");
	assert_rfc3339(951782400999, "2000-02-29T00:00:00.999Z"); /* leap day */
	assert_rfc3339(946684799999, "1999-12-31T23:59:59.999Z");
	assert_rfc3339(4102444800000, "2100-01-01T00:00:00.000Z"); /* past 2038 */
}

static void test_now_is_wall_clock(void **state)
{
	int64_t before = (int64_t)time(NULL) * 1000;
	int64_t now = time_now_ms();
	int64_t after = ((int64_t)time(NULL) + 1) * 1000;
	assert_in_range(now, before, after);
}

static void test_monotonic_never_backwards(void **state)
{
	int64_t prev_ms = time_mono_ms();
	int64_t prev_us = time_mono_us();
	for (int i = 0; i < 200000; i++) {
		int64_t ms = time_mono_ms();
		int64_t us = time_mono_us();
		if (ms < prev_ms || us < prev_us)
			fail_msg("clock went back: %lld -> %lld ms, %lld -> %lld us",
			         (long long)prev_ms, (long long)ms, (long long)prev_us,
			         (long long)us);
		prev_ms = ms;
		prev_us = us;
	}
}

static void test_monotonic_advances(void **state)
{
	int64_t ms0 = time_mono_ms();
	int64_t us0 = time_mono_us();
	struct timespec nap = {0, 30 * 1000 * 1000};
	while (nanosleep(&nap, &nap) != 0) {
	}
	int64_t dms = time_mono_ms() - ms0;
	int64_t dus = time_mono_us() - us0;
	assert_in_range(dms, 29, 5000);
	assert_in_range(dus, 29000, 5000000);
	/* The two clocks agree with each other. */
	assert_in_range(time_mono_us() / 1000 - time_mono_ms(), 0, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc3339_known_epochs),
	    cmocka_unit_test(test_now_is_wall_clock),
	    cmocka_unit_test(test_monotonic_never_backwards),
	    cmocka_unit_test(test_monotonic_advances),
	};
	return cmocka_run_group_tests_name("timeutil", tests, NULL, NULL);
}
