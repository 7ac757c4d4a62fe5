/* writer.c -- group commit: concurrent store writes share one durable transaction. */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "svc_metrics.h"
#include "timeutil.h"

#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS   5000
#define STOP_TRIES     1

/* Writes and the context each completes with, capacity slots of each. */
struct buffer {
	struct store_op *ops;
	void **ctxs;
};

/* Two buffers: submitters append to one while the writer thread commits the other, and the
 * writer swaps them under the lock, so the lock is never held for longer than one append or
 * one swap whatever the batch size. */
struct writer {
	struct store *store;
	writer_done_fn done;
	pthread_mutex_t lock;
	pthread_cond_t not_empty;
	pthread_cond_t not_full;
	pthread_cond_t stop_cond; /* signalled once by writer_destroy */
	struct buffer fill;       /* where submitters append */
	size_t count;             /* writes in fill */
	struct buffer batch;      /* what the writer thread is committing */
	size_t capacity, batch_max;
	bool retry; /* a failed batch is tried again instead of failing its writes */
	bool stopping;
	bool cancel; /* writer_cancel_waits: a submit that would block fails instead */
	pthread_t thread;
};

/* Sleep for ms on the writer's lock, woken early only by writer_destroy. */
static void pause_ms(struct writer *w, int64_t ms)
{
	struct timespec ts = time_deadline(CLOCK_REALTIME, ms);
	pthread_mutex_lock(&w->lock);
	if (!w->stopping && !w->cancel)
		pthread_cond_timedwait(&w->stop_cond, &w->lock, &ts);
	pthread_mutex_unlock(&w->lock);
}

static bool is_stopping(struct writer *w)
{
	pthread_mutex_lock(&w->lock);
	bool stopping = w->stopping || w->cancel;
	pthread_mutex_unlock(&w->lock);
	return stopping;
}

/* Apply one batch. A retrying writer tries a failed batch again, with a growing pause, until it
 * commits; once stopping, it gives up after STOP_TRIES more tries. */
static int apply_batch(struct writer *w, struct store_op *ops, size_t m, char *err, size_t errlen)
{
	int64_t pause = RETRY_FIRST_MS;
	int tries_left = STOP_TRIES;
	for (;;) {
		err[0] = '\0';
		int64_t t0 = time_mono_us();
		int rc = store_apply(w->store, ops, m, err, errlen);
		svc_metrics_store_batch(t0);
		if (rc == 0)
			return 0;
		if (!w->retry || (is_stopping(w) && tries_left-- <= 0)) {
			log_error("store write of %zu op(s) failed: %s", m, err);
			return rc;
		}
		log_warn("store write of %zu op(s) failed (%s); trying again in %lld ms", m, err,
		         (long long)pause);
		pause_ms(w, pause);
		pause = pause * 2 < RETRY_MAX_MS ? pause * 2 : RETRY_MAX_MS;
	}
}

static void *run(void *arg)
{
	struct writer *w = arg;
	char err[STORE_ERR_LEN];
	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (w->count == 0 && !w->stopping)
			pthread_cond_wait(&w->not_empty, &w->lock);
		if (w->count == 0 && w->stopping) {
			pthread_mutex_unlock(&w->lock);
			return NULL;
		}
		/* Take everything that arrived while the last batch was committing. */
		struct buffer b = w->fill;
		w->fill = w->batch;
		w->batch = b;
		size_t n = w->count;
		w->count = 0;
		pthread_cond_broadcast(&w->not_full);
		pthread_mutex_unlock(&w->lock);

		for (size_t i = 0; i < n; i += w->batch_max) {
			size_t m = n - i < w->batch_max ? n - i : w->batch_max;
			int rc = apply_batch(w, b.ops + i, m, err, sizeof(err));
			if (rc != 0)
				svc_metrics_records_failed(m);
			for (size_t j = i; j < i + m; j++)
				w->done(b.ctxs[j], &b.ops[j], rc, err);
		}
	}
}

static int buffer_init(struct buffer *b, size_t capacity)
{
	b->ops = calloc(capacity, sizeof(*b->ops));
	b->ctxs = calloc(capacity, sizeof(*b->ctxs));
	return b->ops != NULL && b->ctxs != NULL ? 0 : -ENOMEM;
}

static void buffer_free(struct buffer *b)
{
	free(b->ops);
	free(b->ctxs);
}

static void free_writer(struct writer *w)
{
	buffer_free(&w->fill);
	buffer_free(&w->batch);
	free(w);
}

struct writer *writer_create(struct store *store, writer_done_fn done, size_t capacity,
                             size_t batch_max, bool retry, char *err, size_t errlen)
{
	struct writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		goto nomem;
	w->store = store;
	w->done = done;
	w->capacity = capacity;
	w->batch_max = batch_max;
	w->retry = retry;
	if (buffer_init(&w->fill, capacity) != 0 || buffer_init(&w->batch, capacity) != 0)
		goto nomem; /* w was zeroed: free_writer frees what was allocated */
	/* glibc's init of a mutex, condition or attribute with these attributes only stores
	 * them: it cannot fail. */
	(void)pthread_mutex_init(&w->lock, NULL);
	(void)pthread_cond_init(&w->not_empty, NULL);
	(void)pthread_cond_init(&w->not_full, NULL);
	(void)pthread_cond_init(&w->stop_cond, NULL);
	int rc = pthread_create(&w->thread, NULL, run, w);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the writer thread: error %d", rc);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->not_empty);
		pthread_cond_destroy(&w->not_full);
		pthread_cond_destroy(&w->stop_cond);
		goto fail;
	}
	return w;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	if (w != NULL)
		free_writer(w);
	return NULL;
}

int writer_submit(struct writer *w, const struct store_op *op, void *ctx)
{
	pthread_mutex_lock(&w->lock);
	while (w->count == w->capacity && !w->stopping && !w->cancel)
		pthread_cond_wait(&w->not_full, &w->lock);
	if (w->stopping || w->count == w->capacity) {
		pthread_mutex_unlock(&w->lock);
		return w->stopping ? -ESHUTDOWN : -ECANCELED;
	}
	w->fill.ops[w->count] = *op;
	w->fill.ctxs[w->count] = ctx;
	w->count++;
	pthread_cond_signal(&w->not_empty);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

void writer_cancel_waits(struct writer *w)
{
	pthread_mutex_lock(&w->lock);
	w->cancel = true;
	pthread_cond_broadcast(&w->not_full);
	pthread_cond_broadcast(&w->stop_cond);
	pthread_mutex_unlock(&w->lock);
}

size_t writer_room(struct writer *w)
{
	pthread_mutex_lock(&w->lock);
	size_t room = w->capacity - w->count;
	pthread_mutex_unlock(&w->lock);
	return room;
}

void writer_destroy(struct writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->not_empty);
	pthread_cond_broadcast(&w->not_full);
	pthread_cond_broadcast(&w->stop_cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->not_empty);
	pthread_cond_destroy(&w->not_full);
	pthread_cond_destroy(&w->stop_cond);
	free_writer(w);
}
