/* pressure.c -- back-pressure for /ip (see pressure.h).
 *
 * The thread waits on a condition variable with a deadline (no sleep-polling: stopping wakes
 * it at once), reads store_pending, and publishes the count and the rate at which the backlog
 * has been going down. Triggers read both without a lock. */
#include "pressure.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "timeutil.h"

struct pressure {
	struct store *store;
	int64_t refresh_ms;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	_Atomic int64_t pending;  /* as last read, plus what was accepted since */
	_Atomic int64_t accepted; /* accepted since the last read */
	_Atomic int64_t drain;    /* deliveries ended per second, as last measured */
};

static void *run(void *arg)
{
	struct pressure *p = arg;
	int64_t last = -1, last_ms = 0;
	bool failing = false;
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		pthread_mutex_unlock(&p->lock);
		char err[STORE_ERR_LEN];
		int64_t n = 0;
		int64_t accepted = atomic_exchange(&p->accepted, 0);
		int rc = store_pending(p->store, &n, err, sizeof(err));
		int64_t now = time_mono_ms();
		if (rc == 0) {
			if (last >= 0 && now > last_ms) {
				/* Ended = what was there + what came - what is left. */
				int64_t ended = last + accepted - n;
				int64_t per_s = ended > 0 ? ended * 1000 / (now - last_ms) : 0;
				atomic_store(&p->drain, per_s);
			}
			atomic_store(&p->pending, n);
			last = n;
			last_ms = now;
			if (failing)
				log_info("back-pressure: the store answers again");
			failing = false;
		} else {
			/* Keep the last count (plus what was accepted since): better than none. */
			atomic_fetch_add(&p->accepted, accepted);
			if (!failing)
				log_warn("back-pressure: counting pending deliveries failed (%s); "
				         "using the last count",
				         err);
			failing = true;
		}
		pthread_mutex_lock(&p->lock);
		struct timespec until = time_deadline(CLOCK_REALTIME, p->refresh_ms);
		while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct pressure *pressure_create(struct store *store, int64_t refresh_ms)
{
	struct pressure *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->store = store;
	p->refresh_ms = refresh_ms;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		return NULL;
	}
	if (pthread_cond_init(&p->wake, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	if (pthread_create(&p->thread, NULL, run, p) != 0) {
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	return p;
}

void pressure_destroy(struct pressure *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	(void)pthread_join(p->thread, NULL); /* the thread exists: nothing else can fail here */
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

bool pressure_admits(struct pressure *p, int64_t bound, int64_t *retry_after_s)
{
	int64_t backlog = atomic_load(&p->pending) + atomic_load(&p->accepted);
	if (backlog < bound)
		return true;
	int64_t drain = atomic_load(&p->drain);
	int64_t wait = drain > 0 ? (backlog - bound) / drain + 1 : 60;
	*retry_after_s = wait < 1 ? 1 : wait > 60 ? 60 : wait;
	return false;
}

void pressure_accepted(struct pressure *p, int64_t deliveries)
{
	atomic_fetch_add(&p->accepted, deliveries);
}
