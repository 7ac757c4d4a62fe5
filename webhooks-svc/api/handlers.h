/* handlers.h -- the service's NATS subjects: validate each request, act, reply. */
#ifndef WEBHOOKS_HANDLERS_H
#define WEBHOOKS_HANDLERS_H

#include <stddef.h>

#include "svc.h"

/* Subscribe to every webhooks.* subject in the queue group. Returns 0 or a negative code
 * with err filled. */
__attribute__((warn_unused_result)) int handlers_start(struct svc *svc, char *err, size_t errlen);

/* Stop taking requests and wait (up to timeout_ms) until those already received are handled.
 * Writes they queued are completed by writer_destroy afterwards. */
void handlers_drain(struct svc *svc, int64_t timeout_ms);

/* The writer's completion callback: replies to the request behind ctx and frees it. */
void handlers_write_done(void *ctx, const struct store_op *op, int batch_rc, const char *err);

#endif
