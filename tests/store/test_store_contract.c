/* test_store_contract.c -- what every store backend promises, run against the one STORE_URL names.
 *
 * Usage: test_store_contract [ENV]. The store URL is read from the environment variable ENV
 * (STORE_URL by default); when it is unset the suite exits 77, which ctest reports as skipped
 * where the registration allows it. Every test uses fresh random ids and deletes what it wrote,
 * and no assertion on webhooks depends on rows it did not write, so the suite also runs against a
 * shared MongoDB database (events and deliveries, which the interface cannot delete, stay). The
 * store_meta assertions compare with the values read at the start of the test, so they hold on
 * such a database too, as long as nothing else writes webhooks to it during the run. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ids.h"
#include "store.h"
#include "timeutil.h"

#define PAGE        100
#define MANY        263 /* rows for the pagination test: more than two full pages */
#define THREADS     8
#define PER_THREAD  25
#define BATCH_LIMIT 100

static const char *store_url;

struct ctx {
	struct store *store;
	char err[STORE_ERR_LEN];
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	c->store = store_open(store_url, c->err, sizeof(c->err));
	if (c->store == NULL) {
		print_error("store_open(%s): %s\n", store_url, c->err);
		free(c);
		return -1;
	}
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	store_destroy(c->store);
	free(c);
	return 0;
}

static struct store_webhook hook(const char *url, int64_t created, int64_t updated)
{
	struct store_webhook h;
	memset(&h, 0, sizeof(h));
	id_generate(h.id);
	snprintf(h.target_url, sizeof(h.target_url), "%s", url);
	h.created_ms = created;
	h.updated_ms = updated;
	return h;
}

static struct store_op op_insert(const struct store_webhook *h)
{
	struct store_op op = {.kind = STORE_OP_INSERT, .hook = *h, .result = 1};
	return op;
}

static struct store_op op_update(const char *id, const char *url, int64_t updated)
{
	struct store_op op = {.kind = STORE_OP_UPDATE, .result = 1};
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	snprintf(op.hook.target_url, sizeof(op.hook.target_url), "%s", url);
	op.hook.updated_ms = updated;
	op.hook.created_ms = -1;
	return op;
}

static struct store_op op_delete(const char *id)
{
	struct store_op op = {.kind = STORE_OP_DELETE, .result = 1};
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	return op;
}

/* Apply one op, assert the batch as a whole succeeded, and return the op's own result. */
static int apply1(struct ctx *c, struct store_op *op)
{
	int rc = store_apply(c->store, op, 1, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_apply: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
	return op->result;
}

static void insert_ok(struct ctx *c, const struct store_webhook *h)
{
	struct store_op op = op_insert(h);
	assert_int_equal(apply1(c, &op), 0);
}

static void delete_quietly(struct ctx *c, const char *id)
{
	struct store_op op = op_delete(id);
	(void)apply1(c, &op);
}

static void assert_get_equal(struct ctx *c, const struct store_webhook *want)
{
	struct store_webhook got;
	memset(&got, 0x5a, sizeof(got));
	int rc = store_get(c->store, want->id, &got, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_get(%s): %d %s\n", want->id, rc, c->err);
	assert_int_equal(rc, 0);
	assert_string_equal(got.id, want->id);
	assert_string_equal(got.target_url, want->target_url);
	assert_int_equal(got.created_ms, want->created_ms);
	assert_int_equal(got.updated_ms, want->updated_ms);
	assert_string_equal(got.secret, want->secret);
	assert_string_equal(got.old_secret, want->old_secret);
	assert_int_equal(got.old_until_ms, want->old_until_ms);
}

static struct store_op op_secret(enum store_op_kind kind, const char *id, const char *secret,
                                 int64_t until)
{
	struct store_op op = {.kind = kind, .result = 1};
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	snprintf(op.hook.secret, sizeof(op.hook.secret), "%s", secret);
	op.hook.old_until_ms = until;
	return op;
}

static void assert_absent(struct ctx *c, const char *id)
{
	struct store_webhook got;
	c->err[0] = '\0';
	assert_int_equal(store_get(c->store, id, &got, c->err, sizeof(c->err)), -ENOENT);
	assert_true(c->err[0] != '\0');
}

static struct store_meta meta_of(struct ctx *c)
{
	struct store_meta m;
	memset(&m, 0x5a, sizeof(m));
	int rc = store_meta(c->store, &m, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_meta: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
	assert_true(m.webhooks >= 0);
	assert_true(strlen(m.last_id) == 0 || strlen(m.last_id) == ID_LEN);
	return m;
}

static int64_t count_of(struct ctx *c)
{
	return meta_of(c).webhooks;
}

static void assert_meta(struct ctx *c, int64_t webhooks, const char *last_id)
{
	struct store_meta m = meta_of(c);
	if (m.webhooks != webhooks || strcmp(m.last_id, last_id) != 0)
		print_error("meta: webhooks %lld last_id '%s', want %lld '%s'\n",
		            (long long)m.webhooks, m.last_id, (long long)webhooks, last_id);
	assert_int_equal(m.webhooks, webhooks);
	assert_string_equal(m.last_id, last_id);
}

/* Write into out an id greater than floor ("" for none) and than every id id_generate makes
 * below it: floor with its last hex digit below 'f' raised by one and the digits after it 0. */
static void id_above(const char *floor, char out[ID_LEN + 1])
{
	if (floor[0] == '\0') {
		id_generate(out);
		return;
	}
	memcpy(out, floor, ID_LEN + 1);
	int i = ID_LEN - 1;
	while (i >= 0 && (out[i] == '-' || out[i] == 'f'))
		i--;
	if (i < 0) {
		fail_msg("no id is above %s", floor);
		return;
	}
	out[i] = out[i] == '9' ? 'a' : (char)(out[i] + 1);
	for (int j = i + 1; j < ID_LEN; j++) {
		if (out[j] != '-')
			out[j] = '0';
	}
}

static const char *max_id(const char *a, const char *b)
{
	return strcmp(a, b) >= 0 ? a : b;
}

static void test_insert_get_round_trip(void **state)
{
	struct ctx *c = *state;
	struct store_webhook h =
	    hook("https://example.com/hooks/a?x=1&y=%C3%A9", 1700000000123, 1700000000456);
	insert_ok(c, &h);
	assert_get_equal(c, &h);
	delete_quietly(c, h.id);
}

static void test_get_unknown(void **state)
{
	struct ctx *c = *state;
	char id[ID_LEN + 1];
	id_generate(id);
	assert_absent(c, id);
}

static void test_update_existing(void **state)
{
	struct ctx *c = *state;
	struct store_webhook h = hook("https://example.com/old", 1000, 1000);
	insert_ok(c, &h);

	struct store_op op = op_update(h.id, "https://example.org/new/path", 2000);
	assert_int_equal(apply1(c, &op), 0);
	assert_int_equal(op.hook.created_ms, 1000); /* filled in from the stored row */

	snprintf(h.target_url, sizeof(h.target_url), "https://example.org/new/path");
	h.updated_ms = 2000;
	assert_get_equal(c, &h);
	delete_quietly(c, h.id);
}

static void test_update_unknown(void **state)
{
	struct ctx *c = *state;
	char id[ID_LEN + 1];
	id_generate(id);
	struct store_op op = op_update(id, "https://example.com/x", 5);
	assert_int_equal(apply1(c, &op), -ENOENT);
	assert_absent(c, id); /* no upsert */
}

static void test_delete_existing(void **state)
{
	struct ctx *c = *state;
	struct store_webhook h = hook("https://example.com/d", 1, 2);
	insert_ok(c, &h);
	struct store_op op = op_delete(h.id);
	assert_int_equal(apply1(c, &op), 0);
	assert_absent(c, h.id);
	op = op_delete(h.id);
	assert_int_equal(apply1(c, &op), -ENOENT);
}

static void test_delete_unknown(void **state)
{
	struct ctx *c = *state;
	char id[ID_LEN + 1];
	id_generate(id);
	struct store_op op = op_delete(id);
	assert_int_equal(apply1(c, &op), -ENOENT);
}

static void test_duplicate_insert(void **state)
{
	struct ctx *c = *state;
	struct store_webhook first = hook("https://example.com/first", 10, 11);
	insert_ok(c, &first);

	struct store_webhook second = hook("https://example.com/second", 20, 21);
	memcpy(second.id, first.id, sizeof(first.id));
	struct store_op op = op_insert(&second);
	assert_int_equal(apply1(c, &op), -EEXIST);
	assert_get_equal(c, &first); /* unchanged */
	delete_quietly(c, first.id);
}

/* One batch whose ops each get their own outcome, applied in order: later ops see earlier ones
 * of the same batch, and a failed op does not undo the others. */
static void test_batch_mixed_results(void **state)
{
	struct ctx *c = *state;
	struct store_webhook x = hook("https://example.com/x", 100, 100);
	struct store_webhook y = hook("https://example.com/y", 200, 200);
	struct store_webhook a = hook("https://example.com/a", 300, 300);
	struct store_webhook b = hook("https://example.com/b", 400, 400);
	struct store_webhook a_again = hook("https://example.com/a-again", 301, 301);
	char unknown[ID_LEN + 1];
	id_generate(unknown);
	memcpy(a_again.id, a.id, sizeof(a.id));
	insert_ok(c, &x);
	insert_ok(c, &y);

	struct store_op ops[] = {
	    op_insert(&a),                                    /* 0: new */
	    op_insert(&x),                                    /* -EEXIST: stored before */
	    op_insert(&a_again),                              /* -EEXIST: op 0 */
	    op_insert(&b),                                    /* 0: after two failures */
	    op_update(unknown, "https://example.com/u", 500), /* -ENOENT */
	    op_update(y.id, "https://example.com/y2", 600),   /* 0, created 200 */
	    op_delete(x.id),                                  /* 0 */
	    op_delete(unknown),                               /* -ENOENT */
	    op_update(x.id, "https://example.com/x2", 700),   /* -ENOENT: op 6 */
	    op_insert(&x),                                    /* 0: op 6 freed the id */
	    op_delete(b.id),                                  /* 0: op 3 */
	};
	const int want[] = {0, -EEXIST, -EEXIST, 0, -ENOENT, 0, 0, -ENOENT, -ENOENT, 0, 0};
	size_t n = sizeof(ops) / sizeof(ops[0]);
	assert_int_equal(store_apply(c->store, ops, n, c->err, sizeof(c->err)), 0);
	for (size_t i = 0; i < n; i++) {
		if (ops[i].result != want[i])
			print_error("op %zu: result %d, want %d\n", i, ops[i].result, want[i]);
		assert_int_equal(ops[i].result, want[i]);
	}
	assert_int_equal(ops[5].hook.created_ms, 200);

	assert_get_equal(c, &a); /* not overwritten by op 2 */
	assert_get_equal(c, &x); /* re-inserted by op 9 */
	snprintf(y.target_url, sizeof(y.target_url), "https://example.com/y2");
	y.updated_ms = 600;
	assert_get_equal(c, &y);
	assert_absent(c, b.id);
	assert_absent(c, unknown);
	delete_quietly(c, a.id);
	delete_quietly(c, x.id);
	delete_quietly(c, y.id);
}

static void test_empty_batch(void **state)
{
	struct ctx *c = *state;
	struct store_op op;
	assert_int_equal(store_apply(c->store, &op, 0, c->err, sizeof(c->err)), 0);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(((const struct store_webhook *)a)->id, ((const struct store_webhook *)b)->id);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Pages of PAGE over more than MANY rows visit every row exactly once, in ascending id order. */
static void test_list_pagination(void **state)
{
	struct ctx *c = *state;
	struct store_webhook *mine = calloc(MANY, sizeof(*mine));
	struct store_webhook *page = calloc(PAGE, sizeof(*page));
	struct store_op *ops = calloc(BATCH_LIMIT, sizeof(*ops));
	int *seen = calloc(MANY, sizeof(*seen));
	assert_non_null(mine);
	assert_non_null(page);
	assert_non_null(ops);
	assert_non_null(seen);

	for (size_t i = 0; i < MANY; i++)
		mine[i] = hook("https://example.com/page", (int64_t)i, (int64_t)i + 1);
	for (size_t i = 0; i < MANY; i += BATCH_LIMIT) {
		size_t n = MANY - i < BATCH_LIMIT ? MANY - i : BATCH_LIMIT;
		for (size_t j = 0; j < n; j++)
			ops[j] = op_insert(&mine[i + j]);
		assert_int_equal(store_apply(c->store, ops, n, c->err, sizeof(c->err)), 0);
		for (size_t j = 0; j < n; j++)
			assert_int_equal(ops[j].result, 0);
	}
	int64_t total = count_of(c);
	qsort(mine, MANY, sizeof(*mine), cmp_id);

	char after[ID_LEN + 1] = "";
	int64_t visited = 0;
	size_t pages = 0;
	for (;;) {
		size_t n = (size_t)-1;
		int rc = store_list(c->store, after, PAGE, page, &n, c->err, sizeof(c->err));
		if (rc != 0)
			print_error("store_list: %d %s\n", rc, c->err);
		assert_int_equal(rc, 0);
		assert_true(n <= PAGE);
		if (n == 0)
			break;
		pages++;
		for (size_t i = 0; i < n; i++) {
			/* Strictly ascending across pages: no row twice, none skipped back. */
			if (after[0] != '\0')
				assert_true(strcmp(page[i].id, after) > 0);
			memcpy(after, page[i].id, sizeof(after));
			const struct store_webhook *m =
			    bsearch(&page[i], mine, MANY, sizeof(*mine), cmp_id);
			if (m != NULL) {
				seen[m - mine]++;
				assert_string_equal(page[i].target_url, m->target_url);
				assert_int_equal(page[i].created_ms, m->created_ms);
				assert_int_equal(page[i].updated_ms, m->updated_ms);
			}
			visited++;
		}
		if (n < PAGE)
			break;
	}
	for (size_t i = 0; i < MANY; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(visited, total);
	assert_true(pages >= (MANY + PAGE - 1) / PAGE);

	/* After the last id there is nothing. */
	size_t n = (size_t)-1;
	assert_int_equal(store_list(c->store, after, PAGE, page, &n, c->err, sizeof(c->err)), 0);
	assert_int_equal(n, 0);
	/* A limit of 0 reads nothing (it must not mean "no limit"). */
	n = (size_t)-1;
	assert_int_equal(store_list(c->store, NULL, 0, page, &n, c->err, sizeof(c->err)), 0);
	assert_int_equal(n, 0);

	for (size_t i = 0; i < MANY; i += BATCH_LIMIT) {
		size_t k = MANY - i < BATCH_LIMIT ? MANY - i : BATCH_LIMIT;
		for (size_t j = 0; j < k; j++)
			ops[j] = op_delete(mine[i + j].id);
		assert_int_equal(store_apply(c->store, ops, k, c->err, sizeof(c->err)), 0);
		for (size_t j = 0; j < k; j++)
			assert_int_equal(ops[j].result, 0);
	}
	free(seen);
	free(ops);
	free(page);
	free(mine);
}

static void test_list_after_last_possible_id(void **state)
{
	struct ctx *c = *state;
	struct store_webhook page[2];
	size_t n = (size_t)-1;
	assert_int_equal(store_list(c->store, "ffffffff-ffff-ffff-ffff-ffffffffffff", 2, page, &n,
	                            c->err, sizeof(c->err)),
	                 0);
	assert_int_equal(n, 0);
}

/* The counter follows inserts and deletes that took effect, and no other op; last_id is the
 * greatest id ever inserted, whatever the order of the inserts, and stays when it is deleted. */
static void test_meta_counts_and_last_id(void **state)
{
	struct ctx *c = *state;
	struct store_meta before = meta_of(c);
	struct store_webhook lo = hook("https://example.com/meta/lo", 1, 1);
	struct store_webhook hi = hook("https://example.com/meta/hi", 2, 2);
	struct store_webhook x = hook("https://example.com/meta/x", 3, 3);
	struct store_webhook y = hook("https://example.com/meta/y", 4, 4);
	char unknown[ID_LEN + 1];
	id_generate(unknown);
	id_above(max_id(before.last_id, lo.id), hi.id);

	insert_ok(c, &hi);
	assert_meta(c, before.webhooks + 1, hi.id);
	insert_ok(c, &lo); /* a lower id does not lower last_id */
	assert_meta(c, before.webhooks + 2, hi.id);

	struct store_webhook again = hook("https://example.com/meta/again", 5, 5);
	memcpy(again.id, lo.id, sizeof(lo.id));
	struct store_op ops[] = {op_insert(&again), op_delete(unknown),
	                         op_update(lo.id, "https://example.com/meta/lo2", 6),
	                         op_update(unknown, "https://example.com/meta/u", 6)};
	const int want[] = {-EEXIST, -ENOENT, 0, -ENOENT};
	assert_int_equal(store_apply(c->store, ops, 4, c->err, sizeof(c->err)), 0);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(ops[i].result, want[i]);
	assert_meta(c, before.webhooks + 2, hi.id); /* none of them counts */

	struct store_op del = op_delete(hi.id);
	assert_int_equal(apply1(c, &del), 0);
	assert_meta(c, before.webhooks + 1, hi.id); /* ever inserted: deleting keeps it */

	/* One batch: its inserts and deletes add up, and its greatest id is the last_id (y, made
	 * above x, whose id is random, and above every id before). */
	id_above(max_id(hi.id, x.id), y.id);
	struct store_op batch[] = {op_insert(&y), op_insert(&x), op_delete(lo.id), op_delete(x.id),
	                           op_delete(lo.id)};
	const int want_batch[] = {0, 0, 0, 0, -ENOENT};
	assert_int_equal(store_apply(c->store, batch, 5, c->err, sizeof(c->err)), 0);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(batch[i].result, want_batch[i]);
	assert_meta(c, before.webhooks + 1, y.id);
	assert_absent(c, lo.id);
	assert_absent(c, x.id);
	assert_get_equal(c, &y);

	del = op_delete(y.id);
	assert_int_equal(apply1(c, &del), 0);
	assert_meta(c, before.webhooks, y.id);
}

/* The counter and last_id are stored, not kept by the open store. */
static void test_meta_survives_reopen(void **state)
{
	struct ctx *c = *state;
	struct store_meta before = meta_of(c);
	struct store_webhook h = hook("https://example.com/meta/reopen", 1, 1);
	id_above(before.last_id, h.id);
	insert_ok(c, &h);
	assert_meta(c, before.webhooks + 1, h.id);

	store_destroy(c->store);
	c->store = store_open(store_url, c->err, sizeof(c->err));
	if (c->store == NULL)
		print_error("store_open(%s): %s\n", store_url, c->err);
	assert_non_null(c->store);
	assert_meta(c, before.webhooks + 1, h.id);
	delete_quietly(c, h.id);
	assert_meta(c, before.webhooks, h.id);
}

static void test_url_of_max_length(void **state)
{
	struct ctx *c = *state;
	static const char prefix[] = "https://example.com/";
	struct store_webhook h = hook("", 7, 8);
	memcpy(h.target_url, prefix, sizeof(prefix) - 1);
	for (size_t i = sizeof(prefix) - 1; i < URL_MAX_LEN; i++)
		h.target_url[i] = (char)('a' + i % 26);
	h.target_url[URL_MAX_LEN] = '\0';
	assert_int_equal(strlen(h.target_url), 2048);
	insert_ok(c, &h);
	assert_get_equal(c, &h);

	struct store_op op = op_update(h.id, h.target_url, 9);
	op.hook.target_url[URL_MAX_LEN - 1] = 'Z';
	assert_int_equal(apply1(c, &op), 0);
	h.target_url[URL_MAX_LEN - 1] = 'Z';
	h.updated_ms = 9;
	assert_get_equal(c, &h);
	delete_quietly(c, h.id);
}

struct worker {
	struct store *store;
	int failures;
	char ids[PER_THREAD][ID_LEN + 1];
};

/* Writes and reads from one thread; counts what went wrong (cmocka asserts are not
 * thread-safe, so the main thread checks the count). */
static void *work(void *arg)
{
	struct worker *w = arg;
	char err[STORE_ERR_LEN];
	for (int i = 0; i < PER_THREAD; i++) {
		struct store_webhook h = hook("https://example.com/thread", i, i);
		struct store_op op = op_insert(&h);
		struct store_webhook got;
		struct store_meta m;
		memcpy(w->ids[i], h.id, sizeof(h.id));
		if (store_apply(w->store, &op, 1, err, sizeof(err)) != 0 || op.result != 0)
			w->failures++;
		else if (store_get(w->store, h.id, &got, err, sizeof(err)) != 0 ||
		         strcmp(got.target_url, h.target_url) != 0)
			w->failures++;
		/* Once an insert is acknowledged, last_id is at least its id, whatever the
		 * other threads insert at the same time. */
		else if (store_meta(w->store, &m, err, sizeof(err)) != 0 || m.webhooks < 1 ||
		         strcmp(m.last_id, h.id) < 0)
			w->failures++;
	}
	return NULL;
}

static void test_concurrent_calls(void **state)
{
	struct ctx *c = *state;
	struct worker *workers = calloc(THREADS, sizeof(*workers));
	pthread_t threads[THREADS];
	assert_non_null(workers);
	int64_t before = count_of(c);
	for (int i = 0; i < THREADS; i++) {
		workers[i].store = c->store;
		assert_int_equal(pthread_create(&threads[i], NULL, work, &workers[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(threads[i], NULL), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(workers[i].failures, 0);
	assert_int_equal(count_of(c), before + THREADS * PER_THREAD);
	for (int i = 0; i < THREADS; i++) {
		for (int j = 0; j < PER_THREAD; j++)
			delete_quietly(c, workers[i].ids[j]);
	}
	assert_int_equal(count_of(c), before);
	free(workers);
}

/* Events and deliveries. */

static void apply_all_ok(struct ctx *c, struct store_op *ops, size_t n, const int *want)
{
	int rc = store_apply(c->store, ops, n, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_apply: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ops[i].result, want != NULL ? want[i] : 0);
}

static struct store_op op_event(const char *ip, int64_t created, int64_t targets)
{
	struct store_op op = {.kind = STORE_OP_EVENT_INSERT, .result = 1};
	id_generate(op.event.id);
	snprintf(op.event.ip, sizeof(op.event.ip), "%s", ip);
	op.event.created_ms = created;
	op.event.targets = targets;
	return op;
}

static struct store_op op_attempt(const char *event_id, const char *delivery_id,
                                  const char *webhook_id, const char *url, int number, int http,
                                  const char *error, enum store_delivery_status status)
{
	struct store_op op = {.kind = STORE_OP_ATTEMPT, .result = 1};
	struct store_attempt *a = &op.attempt;
	snprintf(a->event_id, sizeof(a->event_id), "%s", event_id);
	snprintf(a->delivery_id, sizeof(a->delivery_id), "%s", delivery_id);
	snprintf(a->webhook_id, sizeof(a->webhook_id), "%s", webhook_id);
	snprintf(a->target_url, sizeof(a->target_url), "%s", url);
	a->number = number;
	a->at_ms = 1700000000000 + number;
	a->http_status = http;
	snprintf(a->error, sizeof(a->error), "%s", error);
	a->duration_ms = 10 * number;
	a->status = status;
	return op;
}

static void assert_event(struct ctx *c, const struct store_event *want)
{
	struct store_event got;
	memset(&got, 0x5a, sizeof(got));
	int rc = store_get_event(c->store, want->id, &got, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_get_event(%s): %d %s\n", want->id, rc, c->err);
	assert_int_equal(rc, 0);
	assert_string_equal(got.id, want->id);
	assert_string_equal(got.ip, want->ip);
	assert_int_equal(got.created_ms, want->created_ms);
	assert_int_equal(got.targets, want->targets);
	assert_int_equal(got.succeeded, want->succeeded);
	assert_int_equal(got.failed, want->failed);
	assert_int_equal(got.fanned, want->fanned);
	assert_int_equal(got.items, want->items);
	assert_int_equal(got.done, want->done);
}

/* A webhook's secret is stored with it; a rotation keeps the one before as old_secret until the
 * time given; a webhook stored before secrets existed is given one only once. */
static void test_secrets(void **state)
{
	struct ctx *c = *state;
	char s1[SECRET_MAX_LEN + 1], s2[SECRET_MAX_LEN + 1], s3[SECRET_MAX_LEN + 1];
	assert_int_equal(secret_generate(s1), 0);
	assert_int_equal(secret_generate(s2), 0);
	assert_int_equal(secret_generate(s3), 0);
	struct store_webhook h = hook("https://example.com/signed", 5, 5);
	snprintf(h.secret, sizeof(h.secret), "%s", s1);
	insert_ok(c, &h);
	assert_get_equal(c, &h);

	struct store_op rot = op_secret(STORE_OP_ROTATE, h.id, s2, 1700000086400000);
	assert_int_equal(apply1(c, &rot), 0);
	snprintf(h.secret, sizeof(h.secret), "%s", s2);
	snprintf(h.old_secret, sizeof(h.old_secret), "%s", s1);
	h.old_until_ms = 1700000086400000;
	assert_get_equal(c, &h);
	/* Giving a secret to a webhook that has one changes nothing. */
	struct store_op give = op_secret(STORE_OP_GIVE_SECRET, h.id, s3, 0);
	assert_int_equal(apply1(c, &give), 0);
	assert_get_equal(c, &h);
	/* A second rotation pushes the first secret out. */
	rot = op_secret(STORE_OP_ROTATE, h.id, s3, 1700000090000000);
	assert_int_equal(apply1(c, &rot), 0);
	snprintf(h.secret, sizeof(h.secret), "%s", s3);
	snprintf(h.old_secret, sizeof(h.old_secret), "%s", s2);
	h.old_until_ms = 1700000090000000;
	assert_get_equal(c, &h);
	char unknown[ID_LEN + 1];
	id_generate(unknown);
	rot = op_secret(STORE_OP_ROTATE, unknown, s1, 1);
	assert_int_equal(apply1(c, &rot), -ENOENT);
	give = op_secret(STORE_OP_GIVE_SECRET, unknown, s1, 0);
	assert_int_equal(apply1(c, &give), -ENOENT);

	/* A webhook without a secret (as an older version stored it) gets one, once. */
	struct store_webhook legacy = hook("https://example.com/legacy", 6, 6);
	insert_ok(c, &legacy);
	assert_get_equal(c, &legacy);
	give = op_secret(STORE_OP_GIVE_SECRET, legacy.id, s1, 0);
	assert_int_equal(apply1(c, &give), 0);
	snprintf(legacy.secret, sizeof(legacy.secret), "%s", s1);
	assert_get_equal(c, &legacy);
	give = op_secret(STORE_OP_GIVE_SECRET, legacy.id, s2, 0);
	assert_int_equal(apply1(c, &give), 0);
	assert_get_equal(c, &legacy);
	delete_quietly(c, h.id);
	delete_quietly(c, legacy.id);
}

/* An event starts with nothing fanned, no item counted and not done, whatever the caller put in
 * those fields; a second event with its id changes nothing. */
static void test_event_insert_get(void **state)
{
	struct ctx *c = *state;
	struct store_op ops[] = {
	    op_event("203.0.113.7", 1700000000999, 3),
	    op_event("2001:db8::42", 1700000001000, 0),
	};
	ops[0].event.fanned = 7;
	ops[0].event.items = 2;
	ops[0].event.done = true;
	apply_all_ok(c, ops, 2, NULL);
	struct store_event e0 = ops[0].event, e1 = ops[1].event;
	e0.succeeded = e0.failed = e1.succeeded = e1.failed = 0;
	e0.fanned = e0.items = e1.fanned = e1.items = 0;
	e0.done = e1.done = false;
	assert_event(c, &e0);
	assert_event(c, &e1);

	struct store_op dup = op_event("198.51.100.1", 5, 5);
	memcpy(dup.event.id, e0.id, sizeof(e0.id));
	const int want[] = {-EEXIST};
	apply_all_ok(c, &dup, 1, want);
	assert_event(c, &e0); /* unchanged */

	char unknown[ID_LEN + 1];
	struct store_event got;
	id_generate(unknown);
	c->err[0] = '\0';
	assert_int_equal(store_get_event(c->store, unknown, &got, c->err, sizeof(c->err)), -ENOENT);
	assert_true(c->err[0] != '\0');
}

static struct store_op op_item(const char *event_id, int64_t item, int64_t deliveries, bool last)
{
	struct store_op op = {.kind = STORE_OP_EVENT_ITEM, .result = 1};
	snprintf(op.item.event_id, sizeof(op.item.event_id), "%s", event_id);
	op.item.item = item;
	op.item.deliveries = deliveries;
	op.item.last = last;
	return op;
}

/* Work items are counted once each and in chain order: a repeated or early item changes
 * nothing and still succeeds; the last one marks the event done. */
static void test_event_items_count_once_in_order(void **state)
{
	struct ctx *c = *state;
	struct store_op ev = op_event("192.0.2.10", 42, 9);
	apply_all_ok(c, &ev, 1, NULL);
	struct store_event want = ev.event;
	want.succeeded = want.failed = want.fanned = want.items = 0;
	want.done = false;
	const char *id = ev.event.id;

	struct store_op first = op_item(id, 0, 5, false);
	apply_all_ok(c, &first, 1, NULL);
	want.fanned = 5;
	want.items = 1;
	assert_event(c, &want);

	struct store_op again = op_item(id, 0, 5, false); /* taken twice: counted once */
	apply_all_ok(c, &again, 1, NULL);
	assert_event(c, &want);

	struct store_op early[] = {op_item(id, 2, 100, true), op_item(id, -1, 100, false),
	                           op_item(id, 5, 100, false)};
	apply_all_ok(c, early, 3, NULL);
	assert_event(c, &want); /* out of order: nothing */

	/* In one batch: items 1 and 2 count, the repeat of 1 between them does not. */
	struct store_op run[] = {op_item(id, 1, 0, false), op_item(id, 1, 50, false),
	                         op_item(id, 2, 4, true)};
	apply_all_ok(c, run, 3, NULL);
	want.fanned = 9;
	want.items = 3;
	want.done = true;
	assert_event(c, &want);

	struct store_op late = op_item(id, 2, 4, true); /* the last item taken again */
	apply_all_ok(c, &late, 1, NULL);
	assert_event(c, &want);
}

/* An item of an unknown event is -ENOENT, and neither it nor an attempt mixes with another
 * event's counters. */
static void test_event_item_unknown_event(void **state)
{
	struct ctx *c = *state;
	struct store_op ev = op_event("192.0.2.11", 43, 1);
	apply_all_ok(c, &ev, 1, NULL);
	char unknown[ID_LEN + 1], d[ID_LEN + 1], w[ID_LEN + 1];
	id_generate(unknown);
	id_generate(d);
	id_generate(w);
	struct store_op ops[] = {
	    op_item(unknown, 0, 3, true),
	    op_item(ev.event.id, 0, 1, true),
	    op_item(unknown, 0, 3, true),
	    op_attempt(ev.event.id, d, w, "https://example.com/i", 1, 200, "",
	               STORE_DELIVERY_SUCCEEDED),
	};
	const int want_results[] = {-ENOENT, 0, -ENOENT, 0};
	apply_all_ok(c, ops, 4, want_results);
	struct store_event want = ev.event;
	want.succeeded = 1;
	want.failed = 0;
	want.fanned = 1;
	want.items = 1;
	want.done = true;
	assert_event(c, &want);
	struct store_event got;
	assert_int_equal(store_get_event(c->store, unknown, &got, c->err, sizeof(c->err)), -ENOENT);
}

/* The attempts of a delivery as the API shows them: what store_attempt_json writes. */
static json_t *attempt_object(int number, int http, const char *error)
{
	char at[TIME_RFC3339_LEN + 1];
	time_rfc3339(1700000000000 + number, at);
	return json_pack("{s:i, s:s, s:o, s:o, s:I}", "attempt", number, "at", at, "httpStatus",
	                 http > 0 ? json_integer(http) : json_null(), "error",
	                 error[0] != '\0' ? json_string(error) : json_null(), "durationMs",
	                 (json_int_t)(10 * number));
}

static void assert_attempts(const char *text, json_t *want)
{
	json_error_t jerr;
	json_t *got = json_loads(text, 0, &jerr);
	if (got == NULL || !json_equal(got, want)) {
		char *w = json_dumps(want, JSON_COMPACT);
		print_error("attempts %s, want %s\n", text, w != NULL ? w : "?");
		free(w);
	}
	assert_non_null(got);
	assert_true(json_equal(got, want));
	json_decref(got);
	json_decref(want);
}

/* Attempts create the delivery, append in order, set its status, and count final outcomes in
 * the event; an attempt without a URL keeps the recorded one. */
static void test_attempts_and_deliveries(void **state)
{
	struct ctx *c = *state;
	struct store_op ev = op_event("192.0.2.1", 1, 2);
	apply_all_ok(c, &ev, 1, NULL);
	char d1[ID_LEN + 1], d2[ID_LEN + 1], w1[ID_LEN + 1], w2[ID_LEN + 1];
	id_generate(d1);
	id_generate(d2);
	id_generate(w1);
	id_generate(w2);
	const char *id = ev.event.id;
	struct store_op ops[] = {
	    op_attempt(id, d1, w1, "https://example.com/1", 1, 500, "", STORE_DELIVERY_PENDING),
	    op_attempt(id, d2, w2, "https://example.com/2", 1, 0, "connection refused",
	               STORE_DELIVERY_PENDING),
	    op_attempt(id, d1, w1, "https://example.com/1", 2, 204, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(id, d2, w2, "", 2, 0, "not sent: the webhook was deleted",
	               STORE_DELIVERY_FAILED),
	};
	apply_all_ok(c, ops, 4, NULL);
	struct store_event want_ev = ev.event;
	want_ev.succeeded = 1;
	want_ev.failed = 1;
	assert_event(c, &want_ev);
	struct store_event head;
	memset(&head, 0x5a, sizeof(head));
	assert_int_equal(store_get_event_head(c->store, id, &head, c->err, sizeof(c->err)), 0);
	assert_string_equal(head.ip, "192.0.2.1");
	assert_int_equal(head.targets, 2);
	assert_int_equal(head.succeeded, 0); /* the head leaves the counts out */
	assert_int_equal(head.failed, 0);

	struct store_delivery rows[3];
	size_t n = (size_t)-1;
	int rc = store_list_deliveries(c->store, id, NULL, 3, rows, &n, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_list_deliveries: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
	assert_int_equal(n, 2);
	bool d1_first = strcmp(d1, d2) < 0;
	struct store_delivery *r1 = &rows[d1_first ? 0 : 1], *r2 = &rows[d1_first ? 1 : 0];
	assert_string_equal(r1->id, d1);
	assert_string_equal(r1->webhook_id, w1);
	assert_string_equal(r1->target_url, "https://example.com/1");
	assert_int_equal(r1->status, STORE_DELIVERY_SUCCEEDED);
	assert_attempts(r1->attempts_json, json_pack("[o, o]", attempt_object(1, 500, ""),
	                                             attempt_object(2, 204, "")));
	assert_string_equal(r2->id, d2);
	assert_string_equal(r2->webhook_id, w2);
	assert_string_equal(r2->target_url, "https://example.com/2");
	assert_int_equal(r2->status, STORE_DELIVERY_FAILED);
	assert_attempts(r2->attempts_json,
	                json_pack("[o, o]", attempt_object(1, 0, "connection refused"),
	                          attempt_object(2, 0, "not sent: the webhook was deleted")));
	store_deliveries_free(rows, n);
}

static int64_t pending(struct ctx *c)
{
	int64_t n = -1;
	int rc = store_pending(c->store, &n, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_pending: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
	return n;
}

/* Deliveries accepted and not ended: an event's webhooks until its fan-out is counted, then
 * what it fanned out, less what ended; an event with nothing left counts nothing. */
static void test_pending_deliveries(void **state)
{
	struct ctx *c = *state;
	/* The store is shared with the other tests, whose events may still be open. */
	int64_t base = pending(c);
	struct store_op a = op_event("192.0.2.3", 1, 3), b = op_event("192.0.2.4", 2, 0);
	apply_all_ok(c, &a, 1, NULL);
	assert_int_equal(pending(c) - base, 3);
	apply_all_ok(c, &b, 1, NULL);
	struct store_op item_b = op_item(b.event.id, 0, 0, true);
	apply_all_ok(c, &item_b, 1, NULL);
	assert_int_equal(pending(c) - base, 3);
	/* Two of the three webhooks were left when the fan-out ran. */
	struct store_op item_a = op_item(a.event.id, 0, 2, true);
	apply_all_ok(c, &item_a, 1, NULL);
	assert_int_equal(pending(c) - base, 2);
	char d1[ID_LEN + 1], d2[ID_LEN + 1], w[ID_LEN + 1];
	id_generate(d1);
	id_generate(d2);
	id_generate(w);
	struct store_op ops[] = {
	    op_attempt(a.event.id, d1, w, "https://example.com/", 1, 200, "",
	               STORE_DELIVERY_SUCCEEDED),
	    op_attempt(a.event.id, d2, w, "https://example.com/", 1, 503, "",
	               STORE_DELIVERY_PENDING),
	};
	apply_all_ok(c, ops, 2, NULL);
	assert_int_equal(pending(c) - base, 1);
	struct store_op last = op_attempt(a.event.id, d2, w, "https://example.com/", 2, 0,
	                                  "timed out", STORE_DELIVERY_FAILED);
	apply_all_ok(c, &last, 1, NULL);
	assert_int_equal(pending(c) - base, 0);
	assert_int_equal(pending(c) - base, 0); /* and again, once the event is closed */
	struct store_op more = op_event("192.0.2.5", 3, 7);
	apply_all_ok(c, &more, 1, NULL);
	assert_int_equal(pending(c) - base, 7);
}

static struct store_webhook get_ok(struct ctx *c, const char *id)
{
	struct store_webhook got;
	memset(&got, 0x5a, sizeof(got));
	int rc = store_get(c->store, id, &got, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_get(%s): %d %s\n", id, rc, c->err);
	assert_int_equal(rc, 0);
	return got;
}

/* One ended (or pending) delivery of webhook w at at_ms, for its health. */
static void ended(struct ctx *c, const char *w, enum store_delivery_status status, int64_t at_ms,
                  int64_t disable_after_ms, bool gone, bool not_sent)
{
	char e[ID_LEN + 1], d[ID_LEN + 1];
	id_generate(e);
	id_generate(d);
	struct store_op op = op_attempt(e, d, w, "https://example.com/h", 1, 500, "", status);
	op.attempt.at_ms = at_ms;
	op.attempt.disable_after_ms = disable_after_ms;
	op.attempt.gone = gone;
	op.attempt.not_sent = not_sent;
	apply_all_ok(c, &op, 1, NULL);
}

/* A webhook's health: failing_since is set by the first failed delivery after a success and
 * cleared by a success; a failure that finds the run DISABLE_AFTER long disables it, a 410
 * (gone) at once; pending attempts and deliveries not sent change nothing; an update enables it
 * again (keeping the URL when given none) or disables it with the reason it gives. */
static void test_webhook_health(void **state)
{
	struct ctx *c = *state;
	struct store_webhook h = hook("https://example.com/health", 1, 1);
	insert_ok(c, &h);
	struct store_webhook got = get_ok(c, h.id);
	assert_string_equal(got.disabled_reason, "");
	assert_int_equal(got.failing_since_ms, 0);

	ended(c, h.id, STORE_DELIVERY_PENDING, 500, 500, false, false);
	assert_int_equal(get_ok(c, h.id).failing_since_ms, 0);
	ended(c, h.id, STORE_DELIVERY_FAILED, 1000, 500, false, false);
	assert_int_equal(get_ok(c, h.id).failing_since_ms, 1000);
	ended(c, h.id, STORE_DELIVERY_FAILED, 1400, 500, false, false);
	got = get_ok(c, h.id);
	assert_int_equal(got.failing_since_ms, 1000);
	assert_string_equal(got.disabled_reason, "");
	ended(c, h.id, STORE_DELIVERY_FAILED, 1600, 500, false, true); /* not sent: no change */
	assert_string_equal(get_ok(c, h.id).disabled_reason, "");
	ended(c, h.id, STORE_DELIVERY_SUCCEEDED, 1450, 500, false, false);
	assert_int_equal(get_ok(c, h.id).failing_since_ms, 0);
	ended(c, h.id, STORE_DELIVERY_FAILED, 2000, 500, false, false);
	ended(c, h.id, STORE_DELIVERY_FAILED, 2400, 0, false, false); /* DISABLE_AFTER=0s: never */
	assert_string_equal(get_ok(c, h.id).disabled_reason, "");
	ended(c, h.id, STORE_DELIVERY_FAILED, 2500, 500, false, false);
	got = get_ok(c, h.id);
	assert_int_equal(got.failing_since_ms, 2000);
	assert_string_equal(got.disabled_reason, "every delivery failed for 500ms (DISABLE_AFTER)");
	ended(c, h.id, STORE_DELIVERY_FAILED, 2600, 0, true, false); /* the first reason stays */
	assert_string_equal(get_ok(c, h.id).disabled_reason,
	                    "every delivery failed for 500ms (DISABLE_AFTER)");

	/* Enabled again by an update without a URL: the URL stays, the failures are forgotten. */
	struct store_op up = op_update(h.id, "", 3000);
	assert_int_equal(apply1(c, &up), 0);
	assert_string_equal(up.hook.target_url, h.target_url);
	assert_int_equal(up.hook.created_ms, 1);
	assert_string_equal(up.hook.disabled_reason, "");
	got = get_ok(c, h.id);
	assert_string_equal(got.target_url, h.target_url);
	assert_int_equal(got.updated_ms, 3000);
	assert_string_equal(got.disabled_reason, "");
	assert_int_equal(got.failing_since_ms, 0);

	/* A 410 disables at once, whatever DISABLE_AFTER says. */
	ended(c, h.id, STORE_DELIVERY_FAILED, 3100, 0, true, false);
	got = get_ok(c, h.id);
	assert_string_equal(got.disabled_reason, STORE_REASON_GONE);
	assert_int_equal(got.failing_since_ms, 3100);

	/* An update that disables: its reason, and the new URL. */
	up = op_update(h.id, "https://example.com/health2", 3200);
	snprintf(up.hook.disabled_reason, sizeof(up.hook.disabled_reason), "by hand");
	assert_int_equal(apply1(c, &up), 0);
	got = get_ok(c, h.id);
	assert_string_equal(got.target_url, "https://example.com/health2");
	assert_string_equal(got.disabled_reason, "by hand");
	assert_int_equal(got.failing_since_ms, 0);
	/* A success neither enables it nor breaks anything; an unknown webhook is no error. */
	ended(c, h.id, STORE_DELIVERY_SUCCEEDED, 3300, 500, false, false);
	assert_string_equal(get_ok(c, h.id).disabled_reason, "by hand");
	char nobody[ID_LEN + 1];
	id_generate(nobody);
	ended(c, nobody, STORE_DELIVERY_FAILED, 3400, 1, true, false);
	assert_absent(c, nobody);
}

static void failed_of(struct ctx *c, const char *event_id, const char *after, size_t limit,
                      struct store_failed *out, size_t *n)
{
	int rc = store_failed_deliveries(c->store, event_id, after, limit, out, n, c->err,
	                                 sizeof(c->err));
	if (rc != 0)
		print_error("store_failed_deliveries: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
}

static int cmp_failed(const void *a, const void *b)
{
	return strcmp(((const struct store_failed *)a)->id, ((const struct store_failed *)b)->id);
}

/* A replay: the failed deliveries are listed in id order with their webhook and attempts; the
 * first attempt of a replay (reopens) uncounts the failure once, and the delivery then ends
 * like any other. */
static void test_failed_deliveries_and_replay(void **state)
{
	struct ctx *c = *state;
	struct store_op ev = op_event("192.0.2.9", 9, 3);
	apply_all_ok(c, &ev, 1, NULL);
	struct store_op item = op_item(ev.event.id, 0, 3, true);
	apply_all_ok(c, &item, 1, NULL);
	struct store_failed want[2];
	char ok_id[ID_LEN + 1];
	id_generate(ok_id);
	for (int i = 0; i < 2; i++) {
		id_generate(want[i].id);
		id_generate(want[i].webhook_id);
		want[i].attempts = 2;
	}
	qsort(want, 2, sizeof(want[0]), cmp_failed);
	struct store_op ops[] = {
	    op_attempt(ev.event.id, want[0].id, want[0].webhook_id, "https://a/", 1, 500, "",
	               STORE_DELIVERY_PENDING),
	    op_attempt(ev.event.id, want[0].id, want[0].webhook_id, "https://a/", 2, 500, "",
	               STORE_DELIVERY_FAILED),
	    op_attempt(ev.event.id, want[1].id, want[1].webhook_id, "https://b/", 1, 0, "refused",
	               STORE_DELIVERY_PENDING),
	    op_attempt(ev.event.id, want[1].id, want[1].webhook_id, "https://b/", 2, 0, "refused",
	               STORE_DELIVERY_FAILED),
	    op_attempt(ev.event.id, ok_id, ok_id, "https://c/", 1, 200, "",
	               STORE_DELIVERY_SUCCEEDED),
	};
	apply_all_ok(c, ops, 5, NULL);
	struct store_event e = ev.event;
	e.fanned = 3;
	e.items = 1;
	e.done = true;
	e.succeeded = 1;
	e.failed = 2;
	assert_event(c, &e);

	struct store_failed got[4];
	size_t n = 0;
	failed_of(c, ev.event.id, NULL, 4, got, &n);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_string_equal(got[i].id, want[i].id);
		assert_string_equal(got[i].webhook_id, want[i].webhook_id);
		assert_int_equal(got[i].attempts, 2);
	}
	failed_of(c, ev.event.id, want[0].id, 4, got, &n);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].id, want[1].id);
	failed_of(c, ev.event.id, "", 1, got, &n);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].id, want[0].id);

	/* The replay's first attempt: pending again, no longer failed. */
	struct store_op re = op_attempt(ev.event.id, want[0].id, want[0].webhook_id, "https://a/",
	                                3, 503, "", STORE_DELIVERY_PENDING);
	re.attempt.reopens = true;
	apply_all_ok(c, &re, 1, NULL);
	e.failed = 1;
	assert_event(c, &e);
	failed_of(c, ev.event.id, NULL, 4, got, &n);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].id, want[1].id);
	/* A reopening attempt that ends at once: counted once, either way. */
	struct store_op re2 = op_attempt(ev.event.id, want[1].id, want[1].webhook_id, "https://b/",
	                                 3, 410, "", STORE_DELIVERY_FAILED);
	re2.attempt.reopens = true;
	apply_all_ok(c, &re2, 1, NULL);
	assert_event(c, &e);
	struct store_op fin = op_attempt(ev.event.id, want[0].id, want[0].webhook_id, "https://a/",
	                                 4, 200, "", STORE_DELIVERY_SUCCEEDED);
	apply_all_ok(c, &fin, 1, NULL);
	e.succeeded = 2;
	assert_event(c, &e);
	failed_of(c, ev.event.id, NULL, 4, got, &n);
	assert_int_equal(n, 1);
	assert_int_equal(got[0].attempts, 3);
}

static struct store_pruned prune(struct ctx *c, int64_t cutoff, size_t max_rows)
{
	struct store_pruned p = {-1, -1};
	int rc = store_prune(c->store, cutoff, max_rows, &p, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_prune: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
	return p;
}

static void assert_no_event(struct ctx *c, const char *id)
{
	struct store_event got;
	assert_int_equal(store_get_event(c->store, id, &got, c->err, sizeof(c->err)), -ENOENT);
}

/* Retention: the ended events before the cutoff go, their deliveries a batch at a time and
 * then the event; an open one stays until 30 days past the cutoff; younger ones stay. The
 * times are far below every other test's, which share the store. */
static void test_prune(void **state)
{
	struct ctx *c = *state;
	const int64_t t0 = -3000000000000LL;
	struct store_op old = op_event("192.0.2.10", t0, 3), open = op_event("192.0.2.11", t0, 1),
	                young = op_event("192.0.2.12", t0 + 5000, 1);
	struct store_op evs[] = {old, open, young, op_item(old.event.id, 0, 3, true),
	                         op_item(young.event.id, 0, 1, true)};
	apply_all_ok(c, evs, 5, NULL);
	char w[ID_LEN + 1], ids[4][ID_LEN + 1];
	id_generate(w);
	for (int i = 0; i < 4; i++)
		id_generate(ids[i]);
	struct store_op ops[] = {
	    op_attempt(old.event.id, ids[0], w, "https://a/", 1, 200, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(old.event.id, ids[1], w, "https://a/", 1, 200, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(old.event.id, ids[2], w, "https://a/", 1, 0, "x", STORE_DELIVERY_FAILED),
	    op_attempt(young.event.id, ids[3], w, "https://a/", 1, 200, "",
	               STORE_DELIVERY_SUCCEEDED),
	};
	apply_all_ok(c, ops, 4, NULL);

	struct store_pruned p = prune(c, t0 + 1000, 2);
	assert_int_equal(p.deliveries, 2);
	assert_int_equal(p.events, 0);
	p = prune(c, t0 + 1000, 2);
	assert_int_equal(p.deliveries, 1);
	assert_int_equal(p.events, 1);
	assert_no_event(c, old.event.id);
	p = prune(c, t0 + 1000, 100);
	assert_int_equal(p.deliveries + p.events, 0); /* the open one stays */
	struct store_event got;
	assert_int_equal(store_get_event(c->store, open.event.id, &got, c->err, sizeof(c->err)), 0);
	assert_int_equal(store_get_event(c->store, young.event.id, &got, c->err, sizeof(c->err)),
	                 0);

	/* 30 days past the cutoff, an event goes whatever its state; the young one, ended, goes
	 * with a cutoff above it. */
	p = prune(c, t0 + (30LL * 24 * 3600 * 1000) + 1, 100);
	assert_int_equal(p.events, 2);
	assert_int_equal(p.deliveries, 1);
	assert_no_event(c, open.event.id);
	assert_no_event(c, young.event.id);
	size_t n = 0;
	struct store_delivery rows[2];
	assert_int_equal(store_list_deliveries(c->store, young.event.id, NULL, 2, rows, &n, c->err,
	                                       sizeof(c->err)),
	                 0);
	assert_int_equal(n, 0);
}

static void assert_members(struct ctx *c, const char *event_id, int64_t item, bool found,
                           const unsigned char (*ids)[ID_BIN_LEN], size_t n, const char *end,
                           bool last)
{
	static struct store_item_members got;
	memset(&got, 0x5a, sizeof(got));
	int rc = store_item_members(c->store, event_id, item, &got, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_item_members: %s\n", c->err);
	assert_int_equal(rc, 0);
	assert_int_equal(got.found, found);
	if (!found)
		return;
	assert_int_equal(got.n, n);
	if (n > 0)
		assert_memory_equal(got.ids, ids, n * ID_BIN_LEN);
	assert_string_equal(got.end, end);
	assert_int_equal(got.last, last);
}

/* A work item's members are kept with its count, the first kept for good; an item counted
 * without members keeps none; they go with the event when it is pruned. */
static void test_event_item_members(void **state)
{
	struct ctx *c = *state;
	const int64_t t0 = -3000000000000LL;
	struct store_op ev = op_event("192.0.2.20", t0, 600);
	apply_all_ok(c, &ev, 1, NULL);
	const char *id = ev.event.id;
	static unsigned char a[STORE_ITEM_MAX][ID_BIN_LEN], b[3][ID_BIN_LEN];
	char text[ID_LEN + 1], end[ID_LEN + 1];
	for (size_t i = 0; i < STORE_ITEM_MAX; i++) {
		id_generate_ordered(text);
		assert_true(id_pack(text, a[i]));
	}
	for (size_t i = 0; i < 3; i++) {
		id_generate_ordered(text);
		assert_true(id_pack(text, b[i]));
	}
	id_unpack(a[STORE_ITEM_MAX - 1], end);
	assert_members(c, id, 0, false, NULL, 0, "", false);

	/* The most an item may have. */
	struct store_op first = op_item(id, 0, STORE_ITEM_MAX, false);
	memcpy(first.item.end, end, sizeof(end));
	first.item.members = (const unsigned char(*)[ID_BIN_LEN])a;
	apply_all_ok(c, &first, 1, NULL);
	assert_members(c, id, 0, true, (const unsigned char(*)[ID_BIN_LEN])a, STORE_ITEM_MAX, end,
	               false);

	/* Taken again with other members: counted once, and the first members stay. */
	struct store_op again = op_item(id, 0, 3, true);
	snprintf(again.item.end, sizeof(again.item.end), "%s", "");
	again.item.members = (const unsigned char(*)[ID_BIN_LEN])b;
	apply_all_ok(c, &again, 1, NULL);
	assert_members(c, id, 0, true, (const unsigned char(*)[ID_BIN_LEN])a, STORE_ITEM_MAX, end,
	               false);
	struct store_event got;
	assert_int_equal(store_get_event(c->store, id, &got, c->err, sizeof(c->err)), 0);
	assert_int_equal(got.fanned, STORE_ITEM_MAX);

	/* Counted without members: none kept. Then an empty last item. */
	struct store_op none = op_item(id, 1, 7, false);
	apply_all_ok(c, &none, 1, NULL);
	assert_members(c, id, 1, false, NULL, 0, "", false);
	struct store_op empty = op_item(id, 2, 0, true);
	empty.item.members = (const unsigned char(*)[ID_BIN_LEN])b; /* 0 of them */
	apply_all_ok(c, &empty, 1, NULL);
	assert_members(c, id, 2, true, NULL, 0, "", true);
	assert_members(c, id, 3, false, NULL, 0, "", false);

	/* One more than the most is refused, and nothing of its batch is applied. */
	struct store_op other = op_event("192.0.2.21", t0, 1);
	apply_all_ok(c, &other, 1, NULL);
	struct store_op big[] = {op_item(other.event.id, 0, 1, true),
	                         op_item(other.event.id, 0, STORE_ITEM_MAX + 1, true)};
	big[0].item.members = (const unsigned char(*)[ID_BIN_LEN])b;
	big[1].item.members = (const unsigned char(*)[ID_BIN_LEN])a;
	assert_int_equal(store_apply(c->store, big, 2, c->err, sizeof(c->err)), -EIO);
	assert_members(c, other.event.id, 0, false, NULL, 0, "", false);

	/* Pruned with the event. */
	struct store_pruned p = prune(c, t0 + (30LL * 24 * 3600 * 1000) + 1, 100000);
	assert_int_equal(p.events, 2);
	assert_no_event(c, id);
	assert_members(c, id, 0, false, NULL, 0, "", false);
	assert_members(c, id, 2, false, NULL, 0, "", false);
}

/* An event's deliveries page in ascending id order, and only that event's. */
static void test_deliveries_pagination(void **state)
{
	struct ctx *c = *state;
	enum { N = 7 };
	struct store_op evs[] = {op_event("192.0.2.2", 1, N), op_event("192.0.2.3", 1, 2)};
	apply_all_ok(c, evs, 2, NULL);
	char ids[N][ID_LEN + 1], hook_id[ID_LEN + 1];
	struct store_op ops[N + 2];
	id_generate(hook_id);
	for (int i = 0; i < N; i++) {
		id_generate(ids[i]);
		ops[i] = op_attempt(evs[0].event.id, ids[i], hook_id, "https://example.com/p", 1,
		                    200, "", STORE_DELIVERY_SUCCEEDED);
	}
	for (int i = N; i < N + 2; i++) {
		char other[ID_LEN + 1];
		id_generate(other);
		ops[i] = op_attempt(evs[1].event.id, other, hook_id, "https://example.com/q", 1,
		                    200, "", STORE_DELIVERY_SUCCEEDED);
	}
	apply_all_ok(c, ops, N + 2, NULL);
	qsort(ids, N, sizeof(ids[0]), cmp_str);

	struct store_delivery rows[3];
	char after[ID_LEN + 1] = "";
	int seen = 0;
	for (;;) {
		size_t n = (size_t)-1;
		assert_int_equal(store_list_deliveries(c->store, evs[0].event.id, after, 3, rows,
		                                       &n, c->err, sizeof(c->err)),
		                 0);
		assert_true(n <= 3);
		for (size_t i = 0; i < n; i++) {
			assert_true(seen < N);
			assert_string_equal(rows[i].id, ids[seen]);
			seen++;
		}
		if (n > 0)
			memcpy(after, rows[n - 1].id, sizeof(after));
		store_deliveries_free(rows, n);
		if (n < 3)
			break;
	}
	assert_int_equal(seen, N);
	size_t n = (size_t)-1;
	assert_int_equal(store_list_deliveries(c->store, evs[0].event.id, ids[N - 1], 3, rows, &n,
	                                       c->err, sizeof(c->err)),
	                 0);
	assert_int_equal(n, 0);
	char unknown[ID_LEN + 1];
	id_generate(unknown);
	n = (size_t)-1;
	assert_int_equal(
	    store_list_deliveries(c->store, unknown, NULL, 3, rows, &n, c->err, sizeof(c->err)), 0);
	assert_int_equal(n, 0);
}

static void states_of(struct ctx *c, const char *event_id, const char (*ids)[ID_LEN + 1], size_t n,
                      struct store_delivery_state *out)
{
	for (size_t i = 0; i < n; i++)
		memset(&out[i], 0x5a, sizeof(out[i]));
	int rc = store_delivery_states(c->store, event_id, ids, n, out, c->err, sizeof(c->err));
	if (rc != 0)
		print_error("store_delivery_states: %d %s\n", rc, c->err);
	assert_int_equal(rc, 0);
}

static void assert_state(const struct store_delivery_state *got, bool found,
                         enum store_delivery_status status, int attempts)
{
	assert_int_equal(got->found, found);
	if (found) {
		assert_int_equal(got->status, status);
		assert_int_equal(got->attempts, attempts);
	}
}

/* Only the next attempt of an open delivery is recorded: one sent twice (two holders of the
 * same work, each reading the delivery before either recorded) is refused with -EALREADY and
 * changes nothing, so a delivery never has two outcomes; the very attempt recorded last,
 * recorded again (a batch sent again), changes nothing and is 0. */
static void test_attempts_recorded_once(void **state)
{
	struct ctx *c = *state;
	struct store_op ev = op_event("192.0.2.30", 50, 5);
	struct store_op item = op_item(ev.event.id, 0, 5, true);
	apply_all_ok(c, &ev, 1, NULL);
	apply_all_ok(c, &item, 1, NULL);
	char w[ID_LEN + 1], d[5][ID_LEN + 1];
	id_generate(w);
	for (int i = 0; i < 5; i++)
		id_generate(d[i]);
	const char *e = ev.event.id, *u = "https://example.com/once";
	struct store_op first[] = {
	    op_attempt(e, d[0], w, u, 1, 200, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(e, d[1], w, u, 1, 0, "x", STORE_DELIVERY_FAILED),
	    op_attempt(e, d[2], w, u, 1, 500, "", STORE_DELIVERY_PENDING),
	    op_attempt(e, d[3], w, u, 1, 500, "", STORE_DELIVERY_PENDING),
	    op_attempt(e, d[4], w, u, 1, 0, "x", STORE_DELIVERY_FAILED),
	};
	apply_all_ok(c, first, 5, NULL);
	struct store_op again[] = {
	    /* Ended: no second outcome, whatever its number. */
	    op_attempt(e, d[0], w, u, 2, 200, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(e, d[0], w, u, 1, 201, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(e, d[1], w, u, 1, 200, "", STORE_DELIVERY_SUCCEEDED),
	    /* The same attempt as recorded: nothing changes. */
	    op_attempt(e, d[1], w, u, 1, 0, "x", STORE_DELIVERY_FAILED),
	    /* Pending: the next attempt once, then no other with its number. */
	    op_attempt(e, d[2], w, u, 2, 200, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(e, d[2], w, u, 2, 503, "", STORE_DELIVERY_PENDING),
	    /* Not the next attempt: one ahead, or one already made. */
	    op_attempt(e, d[3], w, u, 3, 200, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(e, d[3], w, u, 1, 200, "", STORE_DELIVERY_SUCCEEDED),
	    /* A replay's first attempt reopens a failed delivery, once. */
	    op_attempt(e, d[4], w, u, 2, 503, "", STORE_DELIVERY_PENDING),
	    op_attempt(e, d[4], w, u, 2, 200, "", STORE_DELIVERY_SUCCEEDED),
	    /* A reopening attempt of a delivery that is not failed. */
	    op_attempt(e, d[3], w, u, 2, 200, "", STORE_DELIVERY_SUCCEEDED),
	};
	again[8].attempt.reopens = true;
	again[9].attempt.reopens = true;
	again[10].attempt.reopens = true;
	const int want[] = {-EALREADY, -EALREADY, -EALREADY, 0,         0,        -EALREADY,
	                    -EALREADY, -EALREADY, 0,         -EALREADY, -EALREADY};
	apply_all_ok(c, again, 11, want);
	/* A later attempt of a delivery with no record (its event pruned meanwhile): refused,
	 * and no record made. So is the same attempt twice in a batch (a pending second one: a
	 * record made by the first would be open for it), and so is the batch sent again. */
	char gone[2][ID_LEN + 1];
	id_generate(gone[0]);
	id_generate(gone[1]);
	struct store_op orphans[] = {
	    op_attempt(e, gone[0], w, u, 2, 200, "", STORE_DELIVERY_SUCCEEDED),
	    op_attempt(e, gone[1], w, u, 2, 503, "", STORE_DELIVERY_PENDING),
	    op_attempt(e, gone[1], w, u, 2, 503, "", STORE_DELIVERY_PENDING),
	};
	const int refused[] = {-EALREADY, -EALREADY, -EALREADY};
	struct store_delivery_state st[5];
	for (int i = 0; i < 2; i++) {
		apply_all_ok(c, orphans, 3, refused);
		states_of(c, e, (const char(*)[ID_LEN + 1]) gone, 2, st);
		assert_state(&st[0], false, STORE_DELIVERY_PENDING, 0);
		assert_state(&st[1], false, STORE_DELIVERY_PENDING, 0);
	}
	states_of(c, e, (const char(*)[ID_LEN + 1]) d, 5, st);
	assert_state(&st[0], true, STORE_DELIVERY_SUCCEEDED, 1);
	assert_state(&st[1], true, STORE_DELIVERY_FAILED, 1);
	assert_state(&st[2], true, STORE_DELIVERY_SUCCEEDED, 2);
	assert_state(&st[3], true, STORE_DELIVERY_PENDING, 1);
	assert_state(&st[4], true, STORE_DELIVERY_PENDING, 2);
	struct store_event want_ev = ev.event;
	want_ev.succeeded = 2;
	want_ev.failed = 1;
	want_ev.fanned = 5;
	want_ev.items = 1;
	want_ev.done = true;
	assert_event(c, &want_ev);
	/* What the first attempts recorded is unchanged by the refused ones. */
	struct store_delivery got[5];
	size_t n = 0;
	int rc = store_list_deliveries(c->store, e, NULL, 5, got, &n, c->err, sizeof(c->err));
	assert_int_equal(rc, 0);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(got[i].id, d[0]) == 0)
			assert_non_null(strstr(got[i].attempts_json, "\"httpStatus\":200"));
		if (strcmp(got[i].id, d[0]) == 0)
			assert_null(strstr(got[i].attempts_json, "\"httpStatus\":201"));
		if (strcmp(got[i].id, d[2]) == 0)
			assert_null(strstr(got[i].attempts_json, "\"httpStatus\":503"));
	}
	store_deliveries_free(got, n);
}

/* A batch of attempts applied again, whole or in part (sent again after a failure midway),
 * neither doubles an attempt nor miscounts; an attempt the delivery has moved past is refused. */
static void test_attempts_applied_again(void **state)
{
	struct ctx *c = *state;
	struct store_op ev = op_event("192.0.2.2", 1, 3);
	apply_all_ok(c, &ev, 1, NULL);
	char d[3][ID_LEN + 1], w[ID_LEN + 1];
	for (int i = 0; i < 3; i++)
		id_generate(d[i]);
	id_generate(w);
	const char *id = ev.event.id;
	struct store_op ops[] = {
	    op_attempt(id, d[0], w, "https://example.com/1", 1, 500, "", STORE_DELIVERY_PENDING),
	    op_attempt(id, d[1], w, "https://example.com/1", 1, 410, "", STORE_DELIVERY_FAILED),
	    op_attempt(id, d[2], w, "https://example.com/1", 1, 503, "", STORE_DELIVERY_PENDING),
	};
	struct store_op next =
	    op_attempt(id, d[0], w, "https://example.com/1", 2, 200, "", STORE_DELIVERY_SUCCEEDED);
	apply_all_ok(c, ops, 3, NULL);
	apply_all_ok(c, ops, 3, NULL);
	apply_all_ok(c, ops + 1, 2, NULL);
	apply_all_ok(c, &next, 1, NULL);
	apply_all_ok(c, &next, 1, NULL);
	const int want[] = {-EALREADY, 0, 0};
	apply_all_ok(c, ops, 3, want);
	struct store_event want_ev = ev.event;
	want_ev.succeeded = 1;
	want_ev.failed = 1;
	assert_event(c, &want_ev);
	struct store_delivery_state st[3];
	states_of(c, id, (const char(*)[ID_LEN + 1]) d, 3, st);
	assert_state(&st[0], true, STORE_DELIVERY_SUCCEEDED, 2);
	assert_state(&st[1], true, STORE_DELIVERY_FAILED, 1);
	assert_state(&st[2], true, STORE_DELIVERY_PENDING, 1);
}

/* Each delivery's state is what its attempts made it, found only under its own event, in the
 * order asked (a repeated id answered each time). */
static void test_delivery_states(void **state)
{
	struct ctx *c = *state;
	struct store_op evs[] = {op_event("192.0.2.20", 1, 3), op_event("192.0.2.21", 1, 1)};
	apply_all_ok(c, evs, 2, NULL);
	const char *e = evs[0].event.id, *other = evs[1].event.id;
	char ids[5][ID_LEN + 1], w[ID_LEN + 1];
	for (int i = 0; i < 4; i++)
		id_generate(ids[i]);
	memcpy(ids[4], ids[0], sizeof(ids[0]));
	id_generate(w);
	struct store_delivery_state out[5];

	states_of(c, e, ids, 5, out);
	for (int i = 0; i < 5; i++)
		assert_state(&out[i], false, 0, 0);

	struct store_op ops[] = {
	    op_attempt(e, ids[0], w, "https://example.com/s0", 1, 500, "", STORE_DELIVERY_PENDING),
	    op_attempt(e, ids[1], w, "https://example.com/s1", 1, 0, "timeout",
	               STORE_DELIVERY_PENDING),
	    op_attempt(e, ids[0], w, "https://example.com/s0", 2, 503, "", STORE_DELIVERY_PENDING),
	    op_attempt(e, ids[1], w, "https://example.com/s1", 2, 0, "timeout",
	               STORE_DELIVERY_FAILED),
	    op_attempt(e, ids[0], w, "https://example.com/s0", 3, 200, "",
	               STORE_DELIVERY_SUCCEEDED),
	    op_attempt(e, ids[2], w, "https://example.com/s2", 1, 0, "refused",
	               STORE_DELIVERY_PENDING),
	    /* Another event's delivery under an id asked for below. */
	    op_attempt(other, ids[3], w, "https://example.com/s3", 1, 200, "",
	               STORE_DELIVERY_SUCCEEDED),
	};
	apply_all_ok(c, ops, sizeof(ops) / sizeof(ops[0]), NULL);

	states_of(c, e, ids, 5, out);
	assert_state(&out[0], true, STORE_DELIVERY_SUCCEEDED, 3);
	assert_state(&out[1], true, STORE_DELIVERY_FAILED, 2);
	assert_state(&out[2], true, STORE_DELIVERY_PENDING, 1);
	assert_state(&out[3], false, 0, 0);
	assert_state(&out[4], true, STORE_DELIVERY_SUCCEEDED, 3);

	states_of(c, other, ids + 3, 1, out);
	assert_state(&out[0], true, STORE_DELIVERY_SUCCEEDED, 1);

	char unknown[ID_LEN + 1];
	id_generate(unknown);
	states_of(c, unknown, ids, 2, out);
	assert_state(&out[0], false, 0, 0);
	assert_state(&out[1], false, 0, 0);
	/* Nothing to ask: nothing written. */
	out[0].found = true;
	assert_int_equal(store_delivery_states(c->store, e, ids, 0, out, c->err, sizeof(c->err)),
	                 0);
	assert_true(out[0].found);
}

/* A work item's worth of deliveries at once, more than a backend may ask for in one query. */
static void test_delivery_states_many(void **state)
{
	struct ctx *c = *state;
	enum { N = 2100 };
	struct store_op ev = op_event("192.0.2.22", 1, N);
	apply_all_ok(c, &ev, 1, NULL);
	char(*ids)[ID_LEN + 1] = calloc(N, sizeof(*ids));
	struct store_delivery_state *out = calloc(N, sizeof(*out));
	struct store_op *ops = calloc(BATCH_LIMIT, sizeof(*ops));
	char w[ID_LEN + 1];
	assert_non_null(ids);
	assert_non_null(out);
	assert_non_null(ops);
	id_generate(w);
	for (size_t i = 0; i < N; i++)
		id_generate(ids[i]);
	/* Every third delivery has an attempt; status and attempt number vary with its place. */
	size_t k = 0;
	for (size_t i = 0; i < N; i += 3) {
		enum store_delivery_status st = (enum store_delivery_status)(i % 2);
		ops[k++] =
		    op_attempt(ev.event.id, ids[i], w, "https://example.com/m", 1, 200, "", st);
		if (k == BATCH_LIMIT || i + 3 >= N) {
			apply_all_ok(c, ops, k, NULL);
			k = 0;
		}
	}
	states_of(c, ev.event.id, ids, N, out);
	for (size_t i = 0; i < N; i++)
		assert_state(&out[i], i % 3 == 0, (enum store_delivery_status)(i % 2), 1);
	free(ops);
	free(out);
	free(ids);
}

int main(int argc, char **argv)
{
	const char *env = argc > 1 ? argv[1] : "STORE_URL";
	store_url = getenv(env);
	if (store_url == NULL || store_url[0] == '\0') {
		printf("%s is not set: skipping the store contract suite for it\n", env);
		return 77;
	}
	printf("store contract suite against %s=%s\n", env, store_url);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_insert_get_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update_existing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_existing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duplicate_insert, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_mixed_results, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_pagination, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_after_last_possible_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_meta_counts_and_last_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_meta_survives_reopen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_url_of_max_length, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_calls, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_insert_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_items_count_once_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_item_unknown_event, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_item_members, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_attempts_recorded_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_attempts_applied_again, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_attempts_and_deliveries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deliveries_pagination, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delivery_states, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delivery_states_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pending_deliveries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_webhook_health, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_deliveries_and_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
