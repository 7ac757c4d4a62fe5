/* ratelimit.h -- a token bucket per caller address, in a fixed amount of memory.
 *
 * Each address (an IPv6 one by its /64, what one host or customer usually holds) has a bucket
 * of burst tokens refilled at rate per second; a request takes one. The buckets live in a
 * table of a fixed number of slots, so memory is the same whatever the number of distinct
 * callers: when a new address finds no free slot among those it may use, it takes the one idle
 * longest, whose owner starts again with a full bucket when it comes back. That errs towards
 * letting a request through, never towards refusing one it should not. */
#ifndef WEBHOOKS_RATELIMIT_H
#define WEBHOOKS_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* Parse IP_RATE_LIMIT: "N/s" or "N/m", optionally ":BURST" ("10/s:20"); without a burst it is
 * twice the rate per second, at least 1. "0" turns limiting off (*rate = 0). Returns true when
 * text is valid. */
bool ratelimit_parse(const char *text, double *rate_per_s, double *burst);

/* A limiter of slots buckets (rounded up to a power of two). NULL when out of memory. */
struct ratelimit *ratelimit_create(double rate_per_s, double burst, size_t slots);

void ratelimit_destroy(struct ratelimit *rl);

/* Take a token for the address ip (text, IPv4 or IPv6) at now_us (monotonic). Returns 0 when
 * the request may go on, else the whole seconds until a token is there (at least 1). An
 * address that does not parse is limited as one shared caller. Thread-safe. */
int64_t ratelimit_take(struct ratelimit *rl, const char *ip, int64_t now_us);

#endif
