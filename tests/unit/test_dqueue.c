/* test_dqueue.c -- the delivery queue: streaming targets, retry schedule, jitter, Retry-After,
 * the retry cap's back-pressure, and what it records. Runs against a real SQLite store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dqueue.h"
#include "ids.h"
#include "store.h"
#include "timeutil.h"

#define MAX_RECORDS 4096

struct fixture {
	char path[256];
	struct store *store;
	struct dqueue *q;
	struct cfg_durations schedule;
	struct store_op records[MAX_RECORDS];
	size_t nrecords;
};

static void record(void *ctx, const struct store_op *op)
{
	struct fixture *f = ctx;
	assert_true(f->nrecords < MAX_RECORDS);
	f->records[f->nrecords++] = *op;
}

static void add_hooks(struct fixture *f, int n, int64_t created_ms)
{
	struct store_op *ops = calloc((size_t)n, sizeof(*ops));
	for (int i = 0; i < n; i++) {
		ops[i].kind = STORE_OP_INSERT;
		id_generate(ops[i].hook.id);
		snprintf(ops[i].hook.target_url, sizeof(ops[i].hook.target_url),
		         "http://127.0.0.1:9/hook/%d", i);
		ops[i].hook.created_ms = ops[i].hook.updated_ms = created_ms;
	}
	char err[STORE_ERR_LEN];
	assert_int_equal(store_apply(f->store, ops, (size_t)n, err, sizeof(err)), 0);
	free(ops);
}

static struct fixture *make(long max_retries, const char *schedule, size_t retry_cap)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	snprintf(f->path, sizeof(f->path), "sqlite:%s/dq-%d-%ld.db", tmp ? tmp : "/tmp", getpid(),
	         (long)time_mono_us());
	char err[STORE_ERR_LEN];
	f->store = store_open(f->path, err, sizeof(err));
	assert_non_null(f->store);
	/* Parse the schedule the way the service does. */
	f->schedule.n = 0;
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", schedule);
	for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
		assert_true(cfg_parse_duration(tok, &f->schedule.ms[f->schedule.n++]));
	struct dq_config cfg = {.max_retries = max_retries,
	                        .schedule = &f->schedule,
	                        .max_events = 4,
	                        .max_retries_waiting = retry_cap};
	f->q = dq_create(f->store, &cfg, record, f);
	assert_non_null(f->q);
	return f;
}

static void destroy(struct fixture *f)
{
	dq_destroy(f->q);
	store_destroy(f->store);
	const char *db = f->path + strlen("sqlite:");
	char p[300];
	unlink(db);
	snprintf(p, sizeof(p), "%s-wal", db);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db);
	unlink(p);
	free(f);
}

static struct store_event event_now(int64_t targets)
{
	struct store_event ev = {.targets = targets};
	id_generate(ev.id);
	snprintf(ev.ip, sizeof(ev.ip), "192.0.2.7");
	ev.created_ms = time_now_ms();
	return ev;
}

static void submit(struct fixture *f, const struct store_event *ev)
{
	assert_int_equal(dq_reserve(f->q), 0);
	dq_submit_event(f->q, ev);
}

static struct delivery_outcome status_outcome(int status)
{
	struct delivery_outcome o = {
	    .http_status = status, .at_ms = time_now_ms(), .retry_after_ms = -1};
	return o;
}

/* Every target is handed out once, in pages no bigger than asked, and the event ends. */
static void test_streams_every_target_once(void **state)
{
	struct fixture *f = make(5, "1s", 1000);
	add_hooks(f, 25, time_now_ms() - 1000);
	struct store_event ev = event_now(25);
	submit(f, &ev);
	struct delivery out[7];
	char seen[25][ID_LEN + 1];
	size_t total = 0;
	int64_t next_due;
	for (int round = 0; round < 10; round++) {
		size_t n = dq_take(f->q, time_mono_ms(), out, 7, &next_due);
		assert_true(n <= 7);
		for (size_t i = 0; i < n; i++) {
			assert_string_equal(out[i].event_id, ev.id);
			assert_string_equal(out[i].ip, "192.0.2.7");
			assert_int_equal(out[i].attempt, 1);
			assert_true(id_valid(out[i].id));
			for (size_t j = 0; j < total; j++)
				assert_string_not_equal(seen[j], out[i].webhook_id);
			memcpy(seen[total++], out[i].webhook_id, ID_LEN + 1);
			struct delivery_outcome o = status_outcome(200);
			dq_report(f->q, &out[i], &o, time_mono_ms());
		}
	}
	assert_int_equal(total, 25);
	struct dq_stats st;
	dq_stats(f->q, &st);
	assert_int_equal(st.events, 0);
	assert_int_equal(next_due, INT64_MAX);
	/* 25 successes recorded, and no target-count fix since the count was right. */
	assert_int_equal(f->nrecords, 25);
	for (size_t i = 0; i < f->nrecords; i++) {
		assert_int_equal(f->records[i].kind, STORE_OP_ATTEMPT);
		assert_int_equal(f->records[i].attempt.status, STORE_DELIVERY_SUCCEEDED);
	}
	destroy(f);
}

/* Webhooks registered after the event do not receive it, and the count is corrected. */
static void test_later_webhooks_skipped(void **state)
{
	struct fixture *f = make(5, "1s", 1000);
	add_hooks(f, 3, time_now_ms() - 1000);
	struct store_event ev = event_now(5);
	add_hooks(f, 4, ev.created_ms + 1000);
	submit(f, &ev);
	struct delivery out[16];
	int64_t next_due;
	size_t n = dq_take(f->q, time_mono_ms(), out, 16, &next_due);
	assert_int_equal(n, 3);
	assert_int_equal(f->nrecords, 1);
	assert_int_equal(f->records[0].kind, STORE_OP_EVENT_TARGETS);
	assert_int_equal(f->records[0].event.targets, 3);
	assert_string_equal(f->records[0].event.id, ev.id);
	destroy(f);
}

/* Failures retry after the schedule (±20%), the last delay repeats, and after max_retries
 * retries the delivery fails for good; the delivery id stays the same throughout. */
static void test_retry_schedule_and_final_failure(void **state)
{
	struct fixture *f = make(3, "100ms,1s", 1000);
	add_hooks(f, 1, time_now_ms() - 1000);
	struct store_event ev = event_now(1);
	submit(f, &ev);
	struct delivery d[1];
	int64_t next_due, now = 1000000;
	assert_int_equal(dq_take(f->q, now, d, 1, &next_due), 1);
	char id[ID_LEN + 1];
	memcpy(id, d[0].id, sizeof(id));
	const int64_t expect[] = {100, 1000, 1000};
	for (int attempt = 1; attempt <= 4; attempt++) {
		assert_int_equal(d[0].attempt, attempt);
		assert_string_equal(d[0].id, id);
		struct delivery_outcome o = status_outcome(500);
		dq_report(f->q, &d[0], &o, now);
		if (attempt == 4)
			break;
		/* Nothing is due before the jittered delay's lower bound... */
		int64_t lo = expect[attempt - 1] * 8 / 10, hi = expect[attempt - 1] * 12 / 10;
		assert_int_equal(dq_take(f->q, now + lo - 1, d, 1, &next_due), 0);
		assert_true(next_due >= now + lo && next_due <= now + hi);
		/* ...and it is due by the upper bound. */
		now += hi;
		assert_int_equal(dq_take(f->q, now, d, 1, &next_due), 1);
	}
	assert_int_equal(dq_take(f->q, now + 100000, d, 1, &next_due), 0);
	assert_int_equal(f->nrecords, 4);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f->records[i].attempt.status, STORE_DELIVERY_PENDING);
	assert_int_equal(f->records[3].attempt.status, STORE_DELIVERY_FAILED);
	assert_int_equal(f->records[3].attempt.http_status, 500);
	assert_int_equal(f->records[3].attempt.number, 4);
	destroy(f);
}

/* The jitter really varies, within ±20%. */
static void test_jitter_spread(void **state)
{
	struct fixture *f = make(1, "1s", 1000);
	add_hooks(f, 200, time_now_ms() - 1000);
	struct store_event ev = event_now(200);
	submit(f, &ev);
	struct delivery d[200];
	int64_t next_due, now = 5000000;
	assert_int_equal(dq_take(f->q, now, d, 200, &next_due), 200);
	for (int i = 0; i < 200; i++) {
		struct delivery_outcome o = status_outcome(503);
		dq_report(f->q, &d[i], &o, now);
	}
	int64_t lo = INT64_MAX, hi = 0, t = now;
	size_t got = 0;
	while (got < 200) {
		size_t n = dq_take(f->q, t, d, 200, &next_due);
		if (n > 0) {
			lo = t - now < lo ? t - now : lo;
			hi = t - now;
			got += n;
		}
		assert_true(next_due != INT64_MAX || got == 200);
		if (got < 200)
			t = next_due;
	}
	assert_true(lo >= 800 && hi <= 1200);
	assert_true(hi - lo >= 200); /* 200 uniform draws cover more than half the range */
	destroy(f);
}

/* Retry-After on 429/503 is honoured, but no longer than twice the scheduled delay; on other
 * statuses it is ignored. */
static void test_retry_after(void **state)
{
	struct fixture *f = make(5, "1s", 1000);
	add_hooks(f, 3, time_now_ms() - 1000);
	struct store_event ev = event_now(3);
	submit(f, &ev);
	struct delivery d[3];
	int64_t next_due, now = 1000000;
	assert_int_equal(dq_take(f->q, now, d, 3, &next_due), 3);
	struct delivery_outcome o = status_outcome(429);
	o.retry_after_ms = 300;
	dq_report(f->q, &d[0], &o, now); /* due at +300 */
	o = status_outcome(503);
	o.retry_after_ms = 60000;
	dq_report(f->q, &d[1], &o, now); /* capped at +2000 */
	o = status_outcome(500);
	o.retry_after_ms = 60000;
	dq_report(f->q, &d[2], &o, now); /* ignored: 800..1200 */
	assert_int_equal(dq_take(f->q, now + 299, d, 3, &next_due), 0);
	assert_int_equal(next_due, now + 300);
	assert_int_equal(dq_take(f->q, now + 300, d, 3, &next_due), 1);
	assert_true(next_due >= now + 800 && next_due <= now + 1200);
	assert_int_equal(dq_take(f->q, now + 1200, d, 3, &next_due), 1);
	assert_int_equal(next_due, now + 2000);
	assert_int_equal(dq_take(f->q, now + 1999, d, 3, &next_due), 0);
	assert_int_equal(dq_take(f->q, now + 2000, d, 3, &next_due), 1);
	destroy(f);
}

/* With the retry heap's room used up by outstanding and waiting work, no new delivery starts;
 * it resumes when room frees. */
static void test_retry_cap_backpressure(void **state)
{
	struct fixture *f = make(5, "10s", 4);
	add_hooks(f, 10, time_now_ms() - 1000);
	struct store_event ev = event_now(10);
	submit(f, &ev);
	struct delivery d[10];
	int64_t next_due, now = 1000000;
	assert_int_equal(dq_take(f->q, now, d, 10, &next_due), 4);
	for (int i = 0; i < 4; i++) {
		struct delivery_outcome o = status_outcome(500);
		dq_report(f->q, &d[i], &o, now);
	}
	struct dq_stats st;
	dq_stats(f->q, &st);
	assert_int_equal(st.retries_waiting, 4);
	assert_int_equal(dq_take(f->q, now + 1, d, 10, &next_due), 0);
	/* The retries come due; once they succeed, new deliveries may start again. */
	now += 12000;
	assert_int_equal(dq_take(f->q, now, d, 10, &next_due), 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(d[i].attempt, 2);
		struct delivery_outcome o = status_outcome(200);
		dq_report(f->q, &d[i], &o, now);
	}
	assert_int_equal(dq_take(f->q, now, d, 10, &next_due), 4);
	destroy(f);
}

/* A retry whose webhook was deleted is not sent; it fails with a reason. An updated webhook's
 * retry goes to the new URL. */
static void test_retry_reads_store_again(void **state)
{
	struct fixture *f = make(5, "100ms", 100);
	add_hooks(f, 2, time_now_ms() - 1000);
	struct store_event ev = event_now(2);
	submit(f, &ev);
	struct delivery d[2];
	int64_t next_due, now = 1000000;
	assert_int_equal(dq_take(f->q, now, d, 2, &next_due), 2);
	for (int i = 0; i < 2; i++) {
		struct delivery_outcome o = status_outcome(500);
		dq_report(f->q, &d[i], &o, now);
	}
	struct store_op ops[2] = {{.kind = STORE_OP_DELETE}, {.kind = STORE_OP_UPDATE}};
	memcpy(ops[0].hook.id, d[0].webhook_id, ID_LEN + 1);
	memcpy(ops[1].hook.id, d[1].webhook_id, ID_LEN + 1);
	snprintf(ops[1].hook.target_url, sizeof(ops[1].hook.target_url), "http://127.0.0.1:9/new");
	char err[STORE_ERR_LEN];
	assert_int_equal(store_apply(f->store, ops, 2, err, sizeof(err)), 0);
	size_t before = f->nrecords;
	struct delivery r[2];
	assert_int_equal(dq_take(f->q, now + 1000, r, 2, &next_due), 1);
	assert_string_equal(r[0].webhook_id, d[1].webhook_id);
	assert_string_equal(r[0].target_url, "http://127.0.0.1:9/new");
	assert_int_equal(f->nrecords, before + 1);
	const struct store_attempt *a = &f->records[before].attempt;
	assert_string_equal(a->delivery_id, d[0].id);
	assert_int_equal(a->status, STORE_DELIVERY_FAILED);
	assert_non_null(strstr(a->error, "deleted"));
	destroy(f);
}

/* Reservations bound the events in progress. */
static void test_event_reservations(void **state)
{
	struct fixture *f = make(5, "1s", 100);
	for (int i = 0; i < 4; i++)
		assert_int_equal(dq_reserve(f->q), 0);
	assert_int_equal(dq_reserve(f->q), -EBUSY);
	dq_unreserve(f->q);
	assert_int_equal(dq_reserve(f->q), 0);
	for (int i = 0; i < 4; i++)
		dq_unreserve(f->q);
	destroy(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_streams_every_target_once),
	    cmocka_unit_test(test_later_webhooks_skipped),
	    cmocka_unit_test(test_retry_schedule_and_final_failure),
	    cmocka_unit_test(test_jitter_spread),
	    cmocka_unit_test(test_retry_after),
	    cmocka_unit_test(test_retry_cap_backpressure),
	    cmocka_unit_test(test_retry_reads_store_again),
	    cmocka_unit_test(test_event_reservations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
