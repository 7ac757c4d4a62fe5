/* dqueue.h -- the dispatcher's input: which delivery to make next, and what follows from
 * each outcome.
 *
 * The dispatcher knows only these calls: submit an event, take the deliveries that are due,
 * report how each attempt went. Everything else (where targets come from, when a retry is
 * due, how outcomes are recorded) lives behind them, so a durable queue (NATS JetStream) can
 * replace this in-memory one without touching the transfer loop.
 *
 * This implementation streams each event's targets from the store page by page, only as
 * many as the dispatcher can start now, so memory does not grow with the number of webhooks
 * and a delivery that has not started yet sees the store as it is when it starts. Retries
 * wait in a bounded min-heap by due time, holding no transfer slot and no socket; while the
 * heap is full no new delivery starts, so failures push back instead of growing memory. */
#ifndef WEBHOOKS_DQUEUE_H
#define WEBHOOKS_DQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* One attempt the dispatcher is to make. */
struct delivery {
	char id[ID_LEN + 1]; /* the delivery id: the webhook-id header on every attempt */
	char event_id[ID_LEN + 1];
	char webhook_id[ID_LEN + 1];
	char ip[STORE_IP_LEN];
	char target_url[URL_MAX_LEN + 1];
	int attempt; /* 1 for the first attempt */
};

/* How one attempt went. */
struct delivery_outcome {
	int http_status; /* 0 when no HTTP answer came */
	char error[128]; /* empty when an HTTP answer came */
	int64_t at_ms;   /* wall clock when the attempt was sent */
	int64_t duration_ms;
	int64_t retry_after_ms; /* from a Retry-After header, or -1 */
};

struct dq_config {
	long max_retries;
	const struct cfg_durations *schedule;
	size_t max_events;          /* events being fanned out at once; more are refused */
	size_t max_retries_waiting; /* retries waiting at once; at the cap new work pauses */
};

/* Receives every write the queue wants recorded (STORE_OP_ATTEMPT for each attempt,
 * STORE_OP_EVENT_TARGETS once an event's fan-out is complete); runs on the dispatcher's
 * thread and copies what it keeps. */
typedef void (*dq_record_fn)(void *ctx, const struct store_op *op);

struct dqueue;

/* Create a queue reading targets from store. Returns NULL when out of memory. */
struct dqueue *dq_create(struct store *store, const struct dq_config *cfg, dq_record_fn record,
                         void *record_ctx);

/* Free the queue and everything still in it. Accepts NULL. */
void dq_destroy(struct dqueue *q);

/* Reserve room for one event before it is made durable, so that an acknowledged event is
 * never refused afterwards. Returns 0, or -EBUSY when max_events are in progress. Thread-safe. */
__attribute__((warn_unused_result)) int dq_reserve(struct dqueue *q);

/* Give back a reservation whose event was not stored. Thread-safe. */
void dq_unreserve(struct dqueue *q);

/* Start fanning out a stored event, using a reservation. Thread-safe. */
void dq_submit_event(struct dqueue *q, const struct store_event *ev);

/* Fill out[0..n) with up to max deliveries due at now_ms (monotonic) and return n. *next_due_ms is
 * set to when the next waiting retry is due (INT64_MAX when none). Dispatcher thread only. */
size_t dq_take(struct dqueue *q, int64_t now_ms, struct delivery *out, size_t max,
               int64_t *next_due_ms);

/* Report how an attempt went at now_ms (monotonic): records it and schedules a retry or
 * ends the delivery.
 * Dispatcher thread only. */
void dq_report(struct dqueue *q, const struct delivery *d, const struct delivery_outcome *o,
               int64_t now_ms);

/* Record an attempt that was cut short by shutdown; the delivery stays pending. */
void dq_abandon(struct dqueue *q, const struct delivery *d, const struct delivery_outcome *o);

/* Counters for logs and tests. */
struct dq_stats {
	size_t events;          /* events still fanning out */
	size_t retries_waiting; /* retries in the heap */
};
void dq_stats(struct dqueue *q, struct dq_stats *out);

#endif
