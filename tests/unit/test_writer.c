/* test_writer.c -- group commit: concurrent writes share batches, every write completes once
 * with its own result, a failed batch fails all of its writes, and destroy completes what is
 * queued. The store is a fake backend that counts batches and takes time to "commit". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_backend.h"
#include "writer.h"

struct fake {
	struct store base;
	_Atomic int batches;
	_Atomic int ops;
	_Atomic int max_batch;
	_Atomic bool fail;
};

static int fake_apply(struct store *s, struct store_op *ops, size_t n, char *err, size_t errlen)
{
	struct fake *f = (struct fake *)s;
	/* A commit takes a while, as an fsync does: writes pile up behind it. */
	nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
	atomic_fetch_add(&f->batches, 1);
	atomic_fetch_add(&f->ops, (int)n);
	if ((int)n > atomic_load(&f->max_batch))
		atomic_store(&f->max_batch, (int)n);
	if (atomic_load(&f->fail)) {
		snprintf(err, errlen, "disk on fire");
		return -EIO;
	}
	/* Odd ids do not exist: each op gets its own result. */
	for (size_t i = 0; i < n; i++)
		ops[i].result = (ops[i].hook.id[0] - '0') % 2 ? -ENOENT : 0;
	return 0;
}

static const struct store_vtable fake_vt = {.name = "fake", .apply = fake_apply};

#define THREADS    8
#define PER_THREAD 200
#define TOTAL      (THREADS * PER_THREAD)

struct result {
	_Atomic int done;
	_Atomic int ok, enoent, failed;
};

static void on_done(void *ctx, const struct store_op *op, int batch_rc, const char *err)
{
	struct result *r = ctx;
	if (batch_rc != 0) {
		assert_string_equal(err, "disk on fire");
		atomic_fetch_add(&r->failed, 1);
	} else if (op->result == -ENOENT) {
		atomic_fetch_add(&r->enoent, 1);
	} else {
		assert_int_equal(op->result, 0);
		atomic_fetch_add(&r->ok, 1);
	}
	atomic_fetch_add(&r->done, 1);
}

struct submitter {
	struct writer *w;
	struct result *r;
	int base;
};

static void *submit_many(void *arg)
{
	struct submitter *s = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		struct store_op op = {.kind = STORE_OP_DELETE};
		op.hook.id[0] = (char)('0' + (s->base + i) % 10);
		assert_int_equal(writer_submit(s->w, &op, s->r), 0);
	}
	return NULL;
}

static void run_threads(struct writer *w, struct result *r)
{
	pthread_t t[THREADS];
	struct submitter s[THREADS];
	for (int i = 0; i < THREADS; i++) {
		s[i] = (struct submitter){w, r, i * PER_THREAD};
		pthread_create(&t[i], NULL, submit_many, &s[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
}

static void test_group_commit(void **state)
{
	struct fake f = {.base.vt = &fake_vt};
	struct result r = {0};
	char err[128];
	/* A small queue also exercises blocking submitters (back-pressure). */
	struct writer *w = writer_create(&f.base, on_done, 64, 512, false, err, sizeof(err));
	assert_non_null(w);
	run_threads(w, &r);
	writer_destroy(w);
	assert_int_equal(atomic_load(&r.done), TOTAL);
	assert_int_equal(atomic_load(&f.ops), TOTAL);
	assert_int_equal(atomic_load(&r.ok), TOTAL / 2);
	assert_int_equal(atomic_load(&r.enoent), TOTAL / 2);
	/* 1600 writes at 2 ms a commit would take 3.2 s one by one; batching must have shared. */
	assert_true(atomic_load(&f.batches) < TOTAL / 4);
	assert_true(atomic_load(&f.max_batch) > 1);
	assert_true(atomic_load(&f.max_batch) <= 64);
}

static void test_failed_batch_fails_every_write(void **state)
{
	struct fake f = {.base.vt = &fake_vt};
	atomic_store(&f.fail, true);
	struct result r = {0};
	char err[128];
	struct writer *w = writer_create(&f.base, on_done, 1024, 16, false, err, sizeof(err));
	assert_non_null(w);
	run_threads(w, &r);
	writer_destroy(w);
	assert_int_equal(atomic_load(&r.failed), TOTAL);
	assert_int_equal(atomic_load(&r.ok), 0);
	assert_true(atomic_load(&f.max_batch) <= 16);
}

static void test_destroy_completes_queued_writes(void **state)
{
	struct fake f = {.base.vt = &fake_vt};
	struct result r = {0};
	char err[128];
	struct writer *w = writer_create(&f.base, on_done, 8, 8, false, err, sizeof(err));
	struct store_op op = {.kind = STORE_OP_DELETE};
	op.hook.id[0] = '2';
	for (int i = 0; i < 8; i++)
		assert_int_equal(writer_submit(w, &op, &r), 0);
	writer_destroy(w); /* completes all 8 before returning */
	assert_int_equal(atomic_load(&r.done), 8);
	assert_int_equal(atomic_load(&r.ok), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_failed_batch_fails_every_write),
	    cmocka_unit_test(test_destroy_completes_queued_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
