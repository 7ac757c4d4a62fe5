/* retry_policy.c -- the retry schedule with jitter and a believed Retry-After. */
#include "retry_policy.h"

#include "timeutil.h"

void retry_policy_init(struct retry_policy *p, long max_retries,
                       const struct cfg_durations *schedule)
{
	p->max_retries = max_retries;
	p->schedule = *schedule;
	p->rng = ((uint64_t)time_mono_us() * 0x9e3779b97f4a7c15ull) | 1;
}

bool retry_policy_again(const struct retry_policy *p, int attempt)
{
	return attempt <= p->max_retries;
}

/* xorshift64*: jitter needs speed, not cryptographic strength. */
static double uniform(struct retry_policy *p)
{
	p->rng ^= p->rng >> 12;
	p->rng ^= p->rng << 25;
	p->rng ^= p->rng >> 27;
	return (double)((p->rng * 0x2545F4914F6CDD1Dull) >> 11) / (double)(1ull << 53);
}

int64_t retry_policy_delay(struct retry_policy *p, int attempt, int http_status,
                           int64_t retry_after_ms)
{
	size_t i = attempt > 0 ? (size_t)(attempt - 1) : 0;
	if (i >= p->schedule.n)
		i = p->schedule.n - 1;
	int64_t scheduled = p->schedule.ms[i];
	if (retry_after_ms >= 0 && (http_status == 429 || http_status == 503))
		return retry_after_ms < 2 * scheduled ? retry_after_ms : 2 * scheduled;
	return (int64_t)((double)scheduled * (0.8 + 0.4 * uniform(p)));
}
