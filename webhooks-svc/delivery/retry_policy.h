/* retry_policy.h -- when a failed delivery is tried again, and whether it is. */
#ifndef WEBHOOKS_RETRY_POLICY_H
#define WEBHOOKS_RETRY_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct retry_policy {
	long max_retries; /* retries after the first attempt */
	struct cfg_durations schedule;
	uint64_t rng; /* jitter state; seeded by retry_policy_init */
};

/* Copy the schedule and seed the jitter. */
void retry_policy_init(struct retry_policy *p, long max_retries,
                       const struct cfg_durations *schedule);

/* True when attempt number `attempt` (1 for the first) that failed may be followed by another. */
bool retry_policy_again(const struct retry_policy *p, int attempt);

/* The delay in milliseconds before the attempt after `attempt`: the schedule's entry for it
 * (the last one repeats) within +-20% jitter, so that retries of one outage do not arrive in a
 * wave. A 429 or 503 with Retry-After (retry_after_ms >= 0) is believed, up to twice the
 * scheduled delay. Not thread-safe: one policy per thread. */
int64_t retry_policy_delay(struct retry_policy *p, int attempt, int http_status,
                           int64_t retry_after_ms);

#endif
