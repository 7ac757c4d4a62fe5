/* pressure.h -- back-pressure for /ip: how many deliveries the fleet has accepted and not yet
 * ended, read from the store once a second by a thread of its own, so that a trigger never
 * waits for the count. Every instance reads the same store, so each sees the whole fleet's
 * backlog within about a second. */
#ifndef WEBHOOKS_PRESSURE_H
#define WEBHOOKS_PRESSURE_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct pressure;

/* Start the thread that reads store_pending every refresh_ms. NULL when out of resources. */
struct pressure *pressure_create(struct store *store, int64_t refresh_ms);

/* Stop the thread and free. Accepts NULL. */
void pressure_destroy(struct pressure *p);

/* Whether a trigger may be accepted under bound pending deliveries. When not, *retry_after_s
 * is the seconds after which the backlog should be under the bound at the rate it has been
 * going down (1 to 60). An accepted trigger is counted at once by pressure_accepted, so
 * that a burst between two reads is not let through whole. */
bool pressure_admits(struct pressure *p, int64_t bound, int64_t *retry_after_s);
void pressure_accepted(struct pressure *p, int64_t deliveries);

#endif
