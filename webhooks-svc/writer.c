/* writer.c -- group commit: concurrent store writes share one durable transaction. */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

struct job {
	struct store_op op;
	void *ctx;
};

struct writer {
	struct store *store;
	writer_done_fn done;
	pthread_mutex_t lock;
	pthread_cond_t not_empty;
	pthread_cond_t not_full;
	struct job *ring; /* capacity slots; head is the oldest */
	size_t capacity, head, count;
	size_t batch_max;
	struct store_op *ops; /* batch_max slots, owned by the writer thread */
	void **ctxs;
	bool stopping;
	pthread_t thread;
};

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
		size_t n = w->count < w->batch_max ? w->count : w->batch_max;
		for (size_t i = 0; i < n; i++) {
			w->ops[i] = w->ring[w->head].op;
			w->ctxs[i] = w->ring[w->head].ctx;
			w->head = (w->head + 1) % w->capacity;
		}
		w->count -= n;
		pthread_cond_broadcast(&w->not_full);
		pthread_mutex_unlock(&w->lock);

		err[0] = '\0';
		int rc = store_apply(w->store, w->ops, n, err, sizeof(err));
		if (rc != 0)
			log_error("store write of %zu op(s) failed: %s", n, err);
		for (size_t i = 0; i < n; i++)
			w->done(w->ctxs[i], &w->ops[i], rc, err);
	}
}

struct writer *writer_create(struct store *store, writer_done_fn done, size_t capacity,
                             size_t batch_max, char *err, size_t errlen)
{
	struct writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		goto nomem;
	w->store = store;
	w->done = done;
	w->capacity = capacity;
	w->batch_max = batch_max;
	w->ring = calloc(capacity, sizeof(*w->ring));
	w->ops = calloc(batch_max, sizeof(*w->ops));
	w->ctxs = calloc(batch_max, sizeof(*w->ctxs));
	if (w->ring == NULL || w->ops == NULL || w->ctxs == NULL)
		goto nomem;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->not_empty, NULL);
	pthread_cond_init(&w->not_full, NULL);
	int rc = pthread_create(&w->thread, NULL, run, w);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the writer thread: error %d", rc);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->not_empty);
		pthread_cond_destroy(&w->not_full);
		goto fail;
	}
	return w;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	if (w != NULL) {
		free(w->ring);
		free(w->ctxs);
		free(w->ops);
		free(w);
	}
	return NULL;
}

int writer_submit(struct writer *w, const struct store_op *op, void *ctx)
{
	pthread_mutex_lock(&w->lock);
	while (w->count == w->capacity && !w->stopping)
		pthread_cond_wait(&w->not_full, &w->lock);
	if (w->stopping) {
		pthread_mutex_unlock(&w->lock);
		return -ESHUTDOWN;
	}
	struct job *j = &w->ring[(w->head + w->count) % w->capacity];
	j->op = *op;
	j->ctx = ctx;
	w->count++;
	pthread_cond_signal(&w->not_empty);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

void writer_destroy(struct writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->not_empty);
	pthread_cond_broadcast(&w->not_full);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->not_empty);
	pthread_cond_destroy(&w->not_full);
	free(w->ring);
	free(w->ctxs);
	free(w->ops);
	free(w);
}
