/* test_metrics.c -- unit tests for common/metrics.c: the exact Prometheus text of counters,
 * gauges and histograms (labels, escaping, cumulative buckets with +Inf, sums in seconds),
 * sparse series, the run-time switch, exact counts under concurrent updates, and a buffer
 * that grows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* Render m alone and compare with want. */
static void assert_renders(const struct metric *m, const char *want)
{
	struct metrics_buf b = {0};
	metrics_render(&b, m);
	char *got = metrics_buf_take(&b);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static const char *const results[] = {"ok", "failed", "timeout"};

static void test_counter_with_a_label(void **state)
{
	(void)state;
	static _Atomic uint64_t cells[3];
	struct metric m = {.kind = METRIC_COUNTER,
	                   .name = "t_tries_total",
	                   .help = "Tries, by result.",
	                   .n_labels = 1,
	                   .labels = {{"result", results, 3}},
	                   .cells = cells};
	assert_int_equal(metric_series(&m), 3);
	metric_inc(&m, 0);
	metric_inc(&m, 0);
	metric_add(&m, 2, 40);
	assert_renders(&m, "# HELP t_tries_total Tries, by result.\n"
	                   "# TYPE t_tries_total counter\n"
	                   "t_tries_total{result=\"ok\"} 2\n"
	                   "t_tries_total{result=\"failed\"} 0\n"
	                   "t_tries_total{result=\"timeout\"} 40\n");
	assert_int_equal(metric_value(&m, 2), 40);
}

static void test_two_labels_sparse(void **state)
{
	(void)state;
	static const char *const codes[] = {"200", "404", "other"};
	static _Atomic uint64_t cells[3 * 3];
	struct metric m = {.kind = METRIC_COUNTER,
	                   .name = "t_requests_total",
	                   .help = "Requests.",
	                   .n_labels = 2,
	                   .labels = {{"route", results, 3}, {"code", codes, 3}},
	                   .skip_zero = true,
	                   .cells = cells};
	assert_int_equal(metric_series(&m), 9);
	metric_inc(&m, 1 * 3 + 2); /* failed, other */
	metric_inc(&m, 2 * 3 + 0); /* timeout, 200 */
	metric_inc(&m, 2 * 3 + 0);
	assert_renders(&m, "# HELP t_requests_total Requests.\n"
	                   "# TYPE t_requests_total counter\n"
	                   "t_requests_total{route=\"failed\",code=\"other\"} 1\n"
	                   "t_requests_total{route=\"timeout\",code=\"200\"} 2\n");
}

static void test_gauge(void **state)
{
	(void)state;
	static _Atomic uint64_t cells[1];
	struct metric m = {
	    .kind = METRIC_GAUGE, .name = "t_in_flight", .help = "In flight.", .cells = cells};
	metric_set(&m, 0, 5);
	metric_move(&m, 0, -7);
	assert_renders(&m, "# HELP t_in_flight In flight.\n"
	                   "# TYPE t_in_flight gauge\n"
	                   "t_in_flight -2\n");
	metric_move(&m, 0, 3);
	assert_int_equal((int64_t)metric_value(&m, 0), 1);
}

static const uint64_t bounds[] = {1000, 5000, 2500000};

static void test_histogram(void **state)
{
	(void)state;
	static _Atomic uint64_t cells[4], sums[1];
	struct metric m = {.kind = METRIC_HISTOGRAM,
	                   .name = "t_duration_seconds",
	                   .help = "Durations.",
	                   .bounds_us = bounds,
	                   .n_bounds = 3,
	                   .cells = cells,
	                   .sums_us = sums};
	metric_observe_us(&m, 0, 500);
	metric_observe_us(&m, 0, 1000); /* on a bound: in that bucket (le is "less or equal") */
	metric_observe_us(&m, 0, 1001);
	metric_observe_us(&m, 0, 3000000);
	metric_observe_us(&m, 0, 10000000);
	assert_int_equal(metric_value(&m, 0), 5);
	assert_renders(&m, "# HELP t_duration_seconds Durations.\n"
	                   "# TYPE t_duration_seconds histogram\n"
	                   "t_duration_seconds_bucket{le=\"0.001\"} 2\n"
	                   "t_duration_seconds_bucket{le=\"0.005\"} 3\n"
	                   "t_duration_seconds_bucket{le=\"2.5\"} 3\n"
	                   "t_duration_seconds_bucket{le=\"+Inf\"} 5\n"
	                   "t_duration_seconds_sum 13.002501\n"
	                   "t_duration_seconds_count 5\n");
}

static void test_histogram_with_a_label(void **state)
{
	(void)state;
	static _Atomic uint64_t cells[3 * 4], sums[3];
	struct metric m = {.kind = METRIC_HISTOGRAM,
	                   .name = "t_d_seconds",
	                   .help = "D.",
	                   .n_labels = 1,
	                   .labels = {{"result", results, 3}},
	                   .bounds_us = bounds,
	                   .n_bounds = 3,
	                   .skip_zero = true,
	                   .cells = cells,
	                   .sums_us = sums};
	metric_observe_us(&m, 1, 2000000);
	assert_renders(&m, "# HELP t_d_seconds D.\n"
	                   "# TYPE t_d_seconds histogram\n"
	                   "t_d_seconds_bucket{result=\"failed\",le=\"0.001\"} 0\n"
	                   "t_d_seconds_bucket{result=\"failed\",le=\"0.005\"} 0\n"
	                   "t_d_seconds_bucket{result=\"failed\",le=\"2.5\"} 1\n"
	                   "t_d_seconds_bucket{result=\"failed\",le=\"+Inf\"} 1\n"
	                   "t_d_seconds_sum{result=\"failed\"} 2\n"
	                   "t_d_seconds_count{result=\"failed\"} 1\n");
}

static void test_escaping(void **state)
{
	(void)state;
	static const char *const odd[] = {"a\"b\\c\nd"};
	static _Atomic uint64_t cells[1];
	struct metric m = {.kind = METRIC_COUNTER,
	                   .name = "t_odd_total",
	                   .help = "Back\\slash and\nnewline \"kept\".",
	                   .n_labels = 1,
	                   .labels = {{"v", odd, 1}},
	                   .cells = cells};
	assert_renders(&m, "# HELP t_odd_total Back\\\\slash and\\nnewline \"kept\".\n"
	                   "# TYPE t_odd_total counter\n"
	                   "t_odd_total{v=\"a\\\"b\\\\c\\nd\"} 0\n");
}

static void test_render_value(void **state)
{
	(void)state;
	struct metrics_buf b = {0};
	metrics_render_value(&b, METRIC_COUNTER, "t_limited_total", "Limited.", true, 7);
	metrics_render_value(&b, METRIC_GAUGE, "t_waiting", "Waiting.", false, 0);
	char *got = metrics_buf_take(&b);
	assert_string_equal(got, "# HELP t_limited_total Limited.\n"
	                         "# TYPE t_limited_total counter\n"
	                         "t_limited_total 7\n"
	                         "# HELP t_waiting Waiting.\n"
	                         "# TYPE t_waiting gauge\n");
	free(got);
	/* Nothing written: an empty string, not NULL. */
	got = metrics_buf_take(&b);
	assert_string_equal(got, "");
	free(got);
}

static void test_disabled_updates_nothing(void **state)
{
	(void)state;
	static _Atomic uint64_t cells[4], sums[1];
	static _Atomic uint64_t ccells[1];
	struct metric h = {.kind = METRIC_HISTOGRAM,
	                   .name = "t_h_seconds",
	                   .help = "H.",
	                   .bounds_us = bounds,
	                   .n_bounds = 3,
	                   .cells = cells,
	                   .sums_us = sums};
	struct metric c = {
	    .kind = METRIC_COUNTER, .name = "t_c_total", .help = "C.", .cells = ccells};
	metrics_set_enabled(false);
	metric_inc(&c, 0);
	metric_observe_us(&h, 0, 10);
	metrics_set_enabled(true);
	assert_int_equal(metric_value(&c, 0), 0);
	assert_int_equal(metric_value(&h, 0), 0);
	assert_int_equal(atomic_load(&sums[0]), 0);
	metric_inc(&c, 0);
	assert_int_equal(metric_value(&c, 0), 1);
}

#define THREADS 4
#define ROUNDS  200000

static _Atomic uint64_t race_cells[3], race_hcells[4], race_sums[1];
static struct metric race_counter = {.kind = METRIC_COUNTER,
                                     .name = "t_race_total",
                                     .help = "R.",
                                     .n_labels = 1,
                                     .labels = {{"result", results, 3}},
                                     .cells = race_cells};
static struct metric race_hist = {.kind = METRIC_HISTOGRAM,
                                  .name = "t_race_seconds",
                                  .help = "R.",
                                  .bounds_us = bounds,
                                  .n_bounds = 3,
                                  .cells = race_hcells,
                                  .sums_us = race_sums};

static void *hammer(void *arg)
{
	size_t k = (size_t)(uintptr_t)arg;
	for (int i = 0; i < ROUNDS; i++) {
		metric_inc(&race_counter, k % 3);
		metric_observe_us(&race_hist, 0, (uint64_t)(i % 4) * 1000);
	}
	return NULL;
}

/* No update is lost between threads: the totals are exact. */
static void test_concurrent_updates_are_exact(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	for (size_t i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)(uintptr_t)i), 0);
	for (size_t i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	uint64_t total = 0;
	for (size_t i = 0; i < 3; i++)
		total += metric_value(&race_counter, i);
	assert_int_equal(total, (uint64_t)THREADS * ROUNDS);
	/* Threads 0 and 3 count under "ok". */
	assert_int_equal(metric_value(&race_counter, 0), 2ULL * ROUNDS);
	assert_int_equal(metric_value(&race_hist, 0), (uint64_t)THREADS * ROUNDS);
	/* 0, 1000, 2000, 3000 us in turn: 1500 us on average. */
	assert_int_equal(atomic_load(&race_sums[0]), (uint64_t)THREADS * ROUNDS * 1500);
	/* 0 and 1000 are at most 0.001 s; 2000 and 3000 at most 0.005 s. */
	assert_int_equal(atomic_load(&race_hcells[0]), (uint64_t)THREADS * ROUNDS / 2);
	assert_int_equal(atomic_load(&race_hcells[1]), (uint64_t)THREADS * ROUNDS / 2);
}

/* Many series: the buffer grows past its first allocation and keeps every line. */
static void test_buffer_grows(void **state)
{
	(void)state;
	static const char *values[100];
	static char names[100][8];
	for (int i = 0; i < 100; i++) {
		snprintf(names[i], sizeof(names[i]), "v%d", i);
		values[i] = names[i];
	}
	static _Atomic uint64_t cells[100 * 100];
	struct metric m = {.kind = METRIC_COUNTER,
	                   .name = "t_big_total",
	                   .help = "Big.",
	                   .n_labels = 2,
	                   .labels = {{"a", values, 100}, {"b", values, 100}},
	                   .cells = cells};
	metric_add(&m, 100 * 100 - 1, 12345);
	struct metrics_buf b = {0};
	metrics_render(&b, &m);
	char *got = metrics_buf_take(&b);
	assert_non_null(got);
	size_t lines = 0;
	for (const char *p = got; *p != '\0'; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 2 + 100 * 100);
	assert_non_null(strstr(got, "\nt_big_total{a=\"v0\",b=\"v0\"} 0\n"));
	const char *last = "t_big_total{a=\"v99\",b=\"v99\"} 12345\n";
	assert_string_equal(got + strlen(got) - strlen(last), last);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counter_with_a_label),
	    cmocka_unit_test(test_two_labels_sparse),
	    cmocka_unit_test(test_gauge),
	    cmocka_unit_test(test_histogram),
	    cmocka_unit_test(test_histogram_with_a_label),
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_render_value),
	    cmocka_unit_test(test_disabled_updates_nothing),
	    cmocka_unit_test(test_concurrent_updates_are_exact),
	    cmocka_unit_test(test_buffer_grows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
