/* ticker.c -- a thread that runs a task now and then (see ticker.h). */
#include "ticker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "timeutil.h"

struct ticker {
	ticker_fn fn;
	void *ctx;
	int64_t period_ms;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
};

bool ticker_pause(struct ticker *t, int64_t ms)
{
	pthread_mutex_lock(&t->lock);
	struct timespec until = time_deadline(CLOCK_REALTIME, ms);
	while (!t->stop && pthread_cond_timedwait(&t->wake, &t->lock, &until) != ETIMEDOUT)
		;
	bool go_on = !t->stop;
	pthread_mutex_unlock(&t->lock);
	return go_on;
}

static void *run(void *arg)
{
	struct ticker *t = arg;
	do
		t->fn(t, t->ctx);
	while (ticker_pause(t, t->period_ms));
	return NULL;
}

struct ticker *ticker_start(ticker_fn fn, void *ctx, int64_t period_ms)
{
	struct ticker *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->fn = fn;
	t->ctx = ctx;
	t->period_ms = period_ms;
	/* glibc's init of a default mutex or condition only stores its attributes: it cannot
	 * fail. */
	(void)pthread_mutex_init(&t->lock, NULL);
	(void)pthread_cond_init(&t->wake, NULL);
	if (pthread_create(&t->thread, NULL, run, t) != 0) {
		pthread_cond_destroy(&t->wake);
		pthread_mutex_destroy(&t->lock);
		free(t);
		return NULL;
	}
	return t;
}

void ticker_stop(struct ticker *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->lock);
	(void)pthread_join(t->thread, NULL); /* the thread exists: nothing else can fail here */
	pthread_cond_destroy(&t->wake);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
