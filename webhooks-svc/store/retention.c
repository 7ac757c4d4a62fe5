/* retention.c -- pruning of old events and delivery records (see retention.h). */
#include "retention.h"

#include <stdlib.h>

#include "log.h"
#include "ticker.h"
#include "timeutil.h"

struct retention {
	struct store *store;
	int64_t retention_ms;
	struct ticker *ticker;
	bool failing;
};

/* One pass: batches until nothing older is left, the store fails or the service stops. */
static void prune_pass(struct ticker *t, void *ctx)
{
	struct retention *r = ctx;
	struct store_pruned total = {0};
	int64_t cutoff = time_now_ms() - r->retention_ms;
	for (;;) {
		struct store_pruned p;
		char err[STORE_ERR_LEN];
		if (store_prune(r->store, cutoff, RETENTION_BATCH, &p, err, sizeof(err)) != 0) {
			if (!r->failing)
				log_warn("retention: pruning failed (%s); trying again later", err);
			r->failing = true;
			break;
		}
		r->failing = false;
		total.events += p.events;
		total.deliveries += p.deliveries;
		if (p.events == 0 && p.deliveries == 0)
			break;
		if (!ticker_pause(t, RETENTION_PAUSE_MS))
			break;
	}
	if (total.events > 0 || total.deliveries > 0)
		log_info(
		    "retention: pruned %lld events and %lld delivery records older than %lld s",
		    (long long)total.events, (long long)total.deliveries,
		    (long long)(r->retention_ms / 1000));
}

struct retention *retention_start(struct store *store, int64_t retention_ms, bool *failed)
{
	*failed = false;
	if (retention_ms <= 0)
		return NULL;
	struct retention *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		*failed = true;
		return NULL;
	}
	r->store = store;
	r->retention_ms = retention_ms;
	int64_t period = retention_ms / 4;
	period = period > 60000 ? 60000 : period < 100 ? 100 : period;
	r->ticker = ticker_start(prune_pass, r, period);
	if (r->ticker == NULL) {
		free(r);
		*failed = true;
		return NULL;
	}
	return r;
}

void retention_stop(struct retention *r)
{
	if (r == NULL)
		return;
	ticker_stop(r->ticker);
	free(r);
}
