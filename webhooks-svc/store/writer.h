/* writer.h -- group commit: concurrent store writes share one durable transaction.
 *
 * Request handlers submit writes from any thread and return at once; one writer thread takes
 * every write that is waiting, applies them with one store_apply per batch_max of them, and
 * only then hands each outcome to the completion callback, which replies. A write is
 * therefore never acknowledged before it is durable, and under load many writes share the cost
 * of one commit. The queue is bounded: when it is full, writer_submit blocks its caller, which
 * pushes back on the NATS subscription instead of growing memory. */
#ifndef WEBHOOKS_WRITER_H
#define WEBHOOKS_WRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

struct writer;

/* Called on the writer thread once per submitted write, after its batch committed or failed.
 * batch_rc is 0 when the batch committed (then op->result holds this write's outcome), or the
 * negative code of the batch failure with err describing it. ctx is what was submitted; the
 * callback owns it from then on. */
typedef void (*writer_done_fn)(void *ctx, const struct store_op *op, int batch_rc, const char *err);

/* Start the writer thread. capacity bounds the queue (the writes waiting while a batch commits),
 * batch_max the writes per transaction. With retry, a batch that fails is logged and tried
 * again (100 ms, doubling up to 5 s) until it commits, so that nothing is lost while the store
 * is locked or down; only once writer_destroy has begun does it give up (after one more
 * try) and complete the writes with the error. Without retry a failed batch completes its
 * writes with the error at once. Returns NULL with err filled on failure. */
struct writer *writer_create(struct store *store, writer_done_fn done, size_t capacity,
                             size_t batch_max, bool retry, char *err, size_t errlen);

/* From now on a writer_submit that would block returns -ECANCELED instead, and a retrying
 * writer gives a failing batch one more try only: the first step of a shutdown. */
void writer_cancel_waits(struct writer *w);

/* How many writes can be submitted now without blocking. Thread-safe. */
size_t writer_room(struct writer *w);

/* Queue one write; *op is copied. Blocks while the queue is full. Returns 0, or -ESHUTDOWN
 * once writer_destroy has begun, or -ECANCELED when full after writer_cancel_waits (the
 * caller still owns ctx then). */
__attribute__((warn_unused_result)) int writer_submit(struct writer *w, const struct store_op *op,
                                                      void *ctx);

/* Apply and complete every queued write, stop the thread and free the writer. Accepts NULL. */
void writer_destroy(struct writer *w);

#endif
