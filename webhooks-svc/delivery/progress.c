/* progress.c -- progress lines for big events (see progress.h).
 *
 * The recorder notes each ended delivery in a slot of its event (a short linear search under
 * a mutex held for a few instructions). The ticker takes the slots' counts, reads each event's
 * summary from the store (off every hot path) and logs a line for those that are big enough;
 * a slot with nothing new for a whole period is freed. */
#include "progress.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ticker.h"
#include "timeutil.h"

struct slot {
	char event_id[ID_LEN + 1]; /* "" when free */
	int64_t succeeded, failed; /* ended here since the last line */
	int64_t since_ms;          /* when the first of them ended (monotonic) */
	bool quiet;                /* nothing new in the last period */
};

struct progress {
	struct store *store;
	int64_t period_ms;
	struct ticker *ticker;
	pthread_mutex_t lock;
	struct slot slots[PROGRESS_EVENTS];
	size_t last; /* the slot noted last: a fan-out notes one event many times in a row */
};

void progress_note(struct progress *p, const char *event_id, bool succeeded)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	struct slot *s = &p->slots[p->last];
	if (strcmp(s->event_id, event_id) != 0) {
		struct slot *free_slot = NULL;
		s = NULL;
		for (size_t i = 0; i < PROGRESS_EVENTS && s == NULL; i++) {
			if (strcmp(p->slots[i].event_id, event_id) == 0)
				s = &p->slots[i];
			else if (free_slot == NULL && p->slots[i].event_id[0] == '\0')
				free_slot = &p->slots[i];
		}
		if (s == NULL && free_slot != NULL) {
			s = free_slot;
			*s = (struct slot){.since_ms = time_mono_ms()};
			memcpy(s->event_id, event_id, sizeof(s->event_id));
		}
		if (s != NULL)
			p->last = (size_t)(s - p->slots);
	}
	if (s != NULL) {
		if (s->succeeded + s->failed == 0 && s->quiet)
			s->since_ms = time_mono_ms(); /* news after a quiet period */
		s->succeeded += succeeded;
		s->failed += !succeeded;
	}
	pthread_mutex_unlock(&p->lock);
}

static void report(struct ticker *t, void *ctx)
{
	(void)t;
	struct progress *p = ctx;
	struct slot taken[PROGRESS_EVENTS];
	size_t n = 0;
	int64_t now = time_mono_ms();
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < PROGRESS_EVENTS; i++) {
		struct slot *s = &p->slots[i];
		if (s->event_id[0] == '\0')
			continue;
		if (s->succeeded + s->failed == 0) {
			if (s->quiet)
				s->event_id[0] = '\0'; /* a whole period without news: forget it */
			s->quiet = true;
			continue;
		}
		if (now - s->since_ms < p->period_ms / 2)
			continue; /* too short a time for a rate: counted in the next line */
		taken[n++] = *s;
		s->succeeded = s->failed = 0;
		s->since_ms = now;
		s->quiet = false;
	}
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < n; i++) {
		struct slot *s = &taken[i];
		struct store_event ev;
		char err[STORE_ERR_LEN];
		if (store_get_event(p->store, s->event_id, &ev, err, sizeof(err)) != 0)
			continue;
		int64_t total = ev.done                  ? ev.fanned
		                : ev.fanned > ev.targets ? ev.fanned
		                                         : ev.targets;
		if (total < PROGRESS_MIN_TARGETS)
			continue;
		int64_t ended = ev.succeeded + ev.failed;
		int64_t ms = now - s->since_ms > 0 ? now - s->since_ms : 1;
		log_info("event %s: %lld of %lld delivered (%.1f%%), %lld failed; here %lld/s "
		         "in the last %.1f s, %lld of them failed",
		         s->event_id, (long long)ended, (long long)total,
		         total > 0 ? 100.0 * (double)ended / (double)total : 100.0,
		         (long long)ev.failed, (long long)((s->succeeded + s->failed) * 1000 / ms),
		         (double)ms / 1000.0, (long long)s->failed);
	}
}

struct progress *progress_start(struct store *store, int64_t period_ms)
{
	struct progress *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->store = store;
	p->period_ms = period_ms;
	(void)pthread_mutex_init(&p->lock, NULL); /* a default mutex: cannot fail (glibc) */
	p->ticker = ticker_start(report, p, period_ms);
	if (p->ticker == NULL) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	return p;
}

void progress_stop(struct progress *p)
{
	if (p == NULL)
		return;
	ticker_stop(p->ticker);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
