/* progress.h -- progress lines for big events: while an event with at least
 * PROGRESS_MIN_TARGETS deliveries is being delivered, every PROGRESS_INTERVAL (5 s by default)
 * the service logs how far it is (ended / total over the fleet, from the store), how fast this
 * instance ends its deliveries, and how many failed. */
#ifndef WEBHOOKS_PROGRESS_H
#define WEBHOOKS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

#define PROGRESS_MIN_TARGETS 1000
#define PROGRESS_EVENTS      32 /* events followed at once; more are not reported */

struct progress;

/* Start the ticker that logs every period_ms. NULL when out of resources. */
struct progress *progress_start(struct store *store, int64_t period_ms);

/* A delivery of event_id ended here (succeeded or failed). Thread-safe and cheap. Accepts a
 * NULL p. */
void progress_note(struct progress *p, const char *event_id, bool succeeded);

/* Stop and free. Accepts NULL. */
void progress_stop(struct progress *p);

#endif
