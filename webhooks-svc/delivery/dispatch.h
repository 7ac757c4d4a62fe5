/* dispatch.h -- the dispatcher: one thread, one libcurl multi handle, at most MAX_IN_FLIGHT
 * transfers at once, fed by the delivery queue. */
#ifndef WEBHOOKS_DISPATCH_H
#define WEBHOOKS_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "addrpolicy.h"
#include "jsqueue.h"

struct dispatch_config {
	size_t max_in_flight;
	int64_t timeout_ms;         /* whole attempt */
	int64_t connect_timeout_ms; /* connection set-up, shorter */
	int64_t drain_ms;           /* at shutdown, how long in-flight transfers may finish */
	const struct addr_policy *targets; /* addresses connections may be made to */
	size_t max_per_host; /* transfers to one host (scheme, name, port) at once; 0: no limit */
	bool no_sign;        /* make bench only: no webhook-signature header */
};

struct dispatch;

/* Start the dispatcher thread over queue q (which it does not own). Returns NULL with err
 * filled on failure. */
struct dispatch *dispatch_create(const struct dispatch_config *cfg, struct jsq *q, char *err,
                                 size_t errlen);

/* Wake the dispatcher because new work was submitted to the queue. Thread-safe. */
void dispatch_wakeup(struct dispatch *d);

/* Stop starting transfers and start the drain (drain_ms from now); returns at once. The
 * thread goes on until dispatch_destroy. Thread-safe. */
void dispatch_stop(struct dispatch *d);

/* Stop starting transfers, let in-flight ones finish for up to drain_ms, hand the rest back to
 * the queue (jsq_abandon), stop the thread and free everything. Accepts NULL. */
void dispatch_destroy(struct dispatch *d);

/* Transfers in flight now and the most seen at once, for tests and logs. */
struct dispatch_stats {
	size_t in_flight;
	size_t peak_in_flight;
	uint64_t attempts;
	size_t parked; /* taken, waiting for their host to have room */
};
void dispatch_stats(struct dispatch *d, struct dispatch_stats *out);

#endif
