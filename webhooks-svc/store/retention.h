/* retention.h -- RETENTION: events and their delivery records older than the retention are
 * pruned in the background, a small batch at a time with a pause between batches, so that
 * neither the API nor the fan-out waits on a long delete. Every instance prunes; they share
 * the work through the store (each batch is one transaction or a few idempotent deletes). */
#ifndef WEBHOOKS_RETENTION_H
#define WEBHOOKS_RETENTION_H

#include <stdint.h>

#include "store.h"

#define RETENTION_BATCH    500 /* records removed per store_prune call */
#define RETENTION_PAUSE_MS 20  /* between two batches of one pass */

struct retention;

/* Start pruning what is older than retention_ms: a pass at once, then one every
 * min(retention_ms / 4, 60 s) (at least 100 ms). NULL with nothing started when
 * retention_ms is 0 (records are kept for ever) or out of resources (then *failed is set). */
struct retention *retention_start(struct store *store, int64_t retention_ms, bool *failed);

/* Stop (a batch in progress finishes) and free. Accepts NULL. */
void retention_stop(struct retention *r);

#endif
