/* ticker.h -- a thread that runs a task now and then: the background work of the service
 * (back-pressure counts, retention, progress lines) without sleep-polling. The thread waits on
 * a condition variable with a deadline, so that ticker_stop wakes it at once. */
#ifndef WEBHOOKS_TICKER_H
#define WEBHOOKS_TICKER_H

#include <stdbool.h>
#include <stdint.h>

struct ticker;

/* What the thread runs: once at start, then period_ms after each run returns. */
typedef void (*ticker_fn)(struct ticker *t, void *ctx);

/* Start the thread. NULL when out of resources. */
struct ticker *ticker_start(ticker_fn fn, void *ctx, int64_t period_ms);

/* For fn, between steps of a long run: wait ms, or less when the ticker is stopping. Returns
 * false when it is stopping (fn should return). */
bool ticker_pause(struct ticker *t, int64_t ms);

/* Stop the thread (a run in progress finishes first; its pauses end at once) and free.
 * Accepts NULL. */
void ticker_stop(struct ticker *t);

#endif
