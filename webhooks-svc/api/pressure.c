/* pressure.c -- back-pressure for /ip (see pressure.h).
 *
 * A ticker (common/ticker.c) reads store_pending every refresh_ms and publishes the count and
 * the rate at which the backlog has been going down. Triggers read both without a lock. */
#include "pressure.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "log.h"
#include "ticker.h"
#include "timeutil.h"

struct pressure {
	struct store *store;
	struct ticker *ticker;
	int64_t last, last_ms; /* the ticker's: the last count and when it was read */
	bool failing;
	_Atomic int64_t pending;  /* as last read, plus what was accepted since */
	_Atomic int64_t accepted; /* accepted since the last read */
	_Atomic int64_t drain;    /* deliveries ended per second, as last measured */
};

static void refresh(struct ticker *t, void *ctx)
{
	(void)t;
	struct pressure *p = ctx;
	char err[STORE_ERR_LEN];
	int64_t n = 0;
	int64_t accepted = atomic_exchange(&p->accepted, 0);
	int rc = store_pending(p->store, &n, err, sizeof(err));
	int64_t now = time_mono_ms();
	if (rc == 0) {
		if (p->last >= 0 && now > p->last_ms) {
			/* Ended = what was there + what came - what is left. */
			int64_t ended = p->last + accepted - n;
			int64_t per_s = ended > 0 ? ended * 1000 / (now - p->last_ms) : 0;
			atomic_store(&p->drain, per_s);
		}
		atomic_store(&p->pending, n);
		p->last = n;
		p->last_ms = now;
		if (p->failing)
			log_info("back-pressure: the store answers again");
		p->failing = false;
	} else {
		/* Keep the last count (plus what was accepted since): better than none. */
		atomic_fetch_add(&p->accepted, accepted);
		if (!p->failing)
			log_warn("back-pressure: counting pending deliveries failed (%s); "
			         "using the last count",
			         err);
		p->failing = true;
	}
}

struct pressure *pressure_create(struct store *store, int64_t refresh_ms)
{
	struct pressure *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->store = store;
	p->last = -1;
	p->ticker = ticker_start(refresh, p, refresh_ms);
	if (p->ticker == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

void pressure_destroy(struct pressure *p)
{
	if (p == NULL)
		return;
	ticker_stop(p->ticker);
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
