/* jsqueue.h -- the durable delivery queue: every event's fan-out and every waiting retry live
 * in NATS JetStream, shared by all instances of the service.
 *
 * The work stream (WEBHOOKS_WORK, work-queue retention, file storage, at most JSQ_MAX_BYTES,
 * refusing new messages when full rather than dropping old ones) holds two kinds of
 * messages, each taken by one durable pull consumer that every instance shares:
 *
 *   webhooks.work.fanout  a work item: the deliveries of one event to a range of up to
 *                         JSQ_ITEM_SIZE webhook ids. Items are chained: the instance that takes
 *                         item k counts it in the event, then publishes item k + 1 (if the range
 *                         goes on) before it sends anything, so any number of instances work
 *                         on one event at once and only the items being worked on exist.
 *   webhooks.work.retry   one delivery waiting for its next attempt. It is published with the
 *                         time it is due and naked with that delay when first seen, so the server
 *                         holds it until then; after a failed attempt it is naked again.
 *
 * A message is acked only when each of its deliveries has ended (its outcome recorded in the
 * store) or has been handed on as a retry message acknowledged by JetStream. A process that
 * dies leaves its messages unacked and the server gives them to another instance after the
 * acknowledgement deadline (ACK_WAIT, jsq_config.ack_wait_ms); whoever takes a message again first
 * reads what the store recorded, so only attempts cut short by the crash are repeated, under the
 * same delivery id.
 *
 * Threads: a fetcher per consumer pulls messages, reads targets and webhooks from the store
 * and puts deliveries into a bounded inbox; the dispatcher (libcurl) thread takes them with
 * jsq_take and reports outcomes with jsq_report, which never blocks on the store: attempts
 * go to a group-commit recorder, and what follows a durable record (ack, nak, publishing a
 * retry) happens on the recorder's and the hand-off thread. */
#ifndef WEBHOOKS_JSQUEUE_H
#define WEBHOOKS_JSQUEUE_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "progress.h"
#include "store.h"

#define JSQ_STREAM    "WEBHOOKS_WORK"
#define JSQ_ITEM_SIZE 256 /* webhooks per work item */
/* ACK_WAIT's bounds (held messages are renewed every third of it) */
#define JSQ_ACK_WAIT_MIN_MS 1000
#define JSQ_ACK_WAIT_MAX_MS (3600 * 1000)
#define JSQ_MAX_BYTES       (1024LL * 1024 * 1024) /* the stream's bound: full refuses new work */

/* The durable consumer of the retry messages (svc_metrics.c reads its backlog). */
#define JSQ_CONSUMER_RETRY "webhooks-retry"

struct work;

/* One attempt the dispatcher is to make. */
struct delivery {
	char id[ID_LEN + 1]; /* the delivery id: the webhook-id header on every attempt */
	char event_id[ID_LEN + 1];
	char webhook_id[ID_LEN + 1];
	char ip[STORE_IP_LEN];
	char target_url[URL_MAX_LEN + 1];
	char secret[SECRET_MAX_LEN + 1];     /* signs the attempt */
	char old_secret[SECRET_MAX_LEN + 1]; /* signs it too, while a rotation's grace lasts */
	int attempt;                         /* 1 for the first attempt */
	int base;          /* attempts before this series (a replay's): retries count from it */
	bool reopens;      /* the first attempt of a replay of this failed delivery */
	struct work *work; /* the message it belongs to */
	size_t index;      /* its place among the message's deliveries */
};

/* How one attempt went. */
struct delivery_outcome {
	int http_status; /* 0 when no HTTP answer came */
	char error[128]; /* empty when an HTTP answer came */
	int64_t at_ms;   /* wall clock when the attempt was sent */
	int64_t duration_ms;
	int64_t retry_after_ms; /* from a Retry-After header, or -1 */
};

struct jsq_config {
	long max_retries;
	const struct cfg_durations *schedule;
	size_t max_in_flight;     /* the dispatcher's slots: the inbox holds about an item beyond */
	bool no_record;           /* make bench only: attempts are not recorded */
	int64_t disable_after_ms; /* DISABLE_AFTER: a webhook failing this long is disabled */
	/* ACK_WAIT: a message held this long without word from its holder (an instance that
	 * crashed or stalled) goes to another instance; JSQ_ACK_WAIT_MIN_MS at least. Set on the
	 * consumers at start, so the instance started last sets it for all. */
	int64_t ack_wait_ms;
	struct progress *progress; /* told of every ended delivery (NULL: none) */
};

/* Answers the trigger that published an event: rc is 0 once JetStream has the event's first
 * work item, or a negative code (then err says why). Runs on the queue's hand-off thread, or
 * on the caller's when there is nothing to publish. */
typedef void (*jsq_published_fn)(void *ctx, const struct store_event *ev, int rc, const char *err);

struct jsq;

/* Create the queue over store and the connection nc (neither owned). Nothing talks to
 * JetStream before jsq_start. Returns NULL with err filled on failure. */
struct jsq *jsq_create(natsConnection *nc, struct store *store, const struct jsq_config *cfg,
                       char *err, size_t errlen);

/* Start the fetchers and the hand-off thread. wake(ctx) is called whenever the inbox gains
 * deliveries, from any thread (the dispatcher's curl_multi_wakeup). The stream and the
 * consumers are created when missing, once JetStream answers (at once, or after a reconnect).
 * Returns 0, or a negative code with err filled. */
__attribute__((warn_unused_result)) int jsq_start(struct jsq *q, void (*wake)(void *), void *ctx,
                                                  char *err, size_t errlen);

/* Publish the first work item of the stored event ev, whose targets are the webhooks with ids
 * up to last_id; done(ctx, ...) is called once with the outcome. When JetStream is down or
 * refuses, done gets a negative code and the event is marked as having no deliveries.
 * Thread-safe. */
void jsq_publish_event(struct jsq *q, const struct store_event *ev, const char *last_id,
                       jsq_published_fn done, void *ctx);

/* Send again, as a new series of attempts under the same delivery ids, the failed deliveries
 * failed[0..n) of event ev: one replay message each on the retry subject, due now, published
 * and acknowledged by JetStream before this returns (its message id names the delivery and its
 * attempts so far, so that asking twice before the first new attempt adds nothing). Returns
 * how many were published, or a negative code with err filled (then a part may have been).
 * Thread-safe. */
long jsq_replay(struct jsq *q, const struct store_event *ev, const struct store_failed *failed,
                size_t n, char *err, size_t errlen);

/* Fill out[0..n) with up to max deliveries from the inbox and return n. Never blocks and
 * returns 0 when the recorder has no room for their outcomes. Dispatcher thread only. */
size_t jsq_take(struct jsq *q, struct delivery *out, size_t max);

/* Report how an attempt went: it is recorded, then retried or ended. Dispatcher thread
 * only; does not wait for the store (jsq_take keeps room in the recorder for every outcome;
 * once stopping, an outcome without room is not recorded and its message goes back). */
void jsq_report(struct jsq *q, const struct delivery *d, const struct delivery_outcome *o);

/* An attempt cut short by shutdown: not recorded; its message is handed back (nak), so the
 * attempt is made again by whoever takes it next. Dispatcher thread only. */
void jsq_abandon(struct jsq *q, const struct delivery *d);

/* Wait up to timeout_ms for the stream and consumers to be set up (the fan-out fetcher does it
 * once NATS answers). True when they are: a trigger is then accepted rather than answered 503.
 * Start-up waits for this before it says it is ready. */
bool jsq_wait_ready(struct jsq *q, int64_t timeout_ms);

/* Stop taking messages: the fetchers finish what they hold and exit, and whatever waits for
 * room in the recorder or the hand-off gives up (its message goes back). Returns at once;
 * call it first at shutdown. */
void jsq_stop_fetching(struct jsq *q);

/* Stop fetching and wait until the fetchers have exited, so that nothing wakes the dispatcher
 * any more. Call before the dispatcher is destroyed. */
void jsq_wait_fetchers(struct jsq *q);

/* Flush the recorder, hand back (nak) every message not finished, stop the threads and free
 * the queue. Call after the dispatcher is destroyed, before the connection closes. Accepts
 * NULL. */
void jsq_destroy(struct jsq *q);

/* Counters for logs and tests. */
struct jsq_stats {
	size_t queued; /* deliveries in the inbox, not yet taken */
	size_t works;  /* messages held (taken and not yet acked or naked) */
};
void jsq_stats(struct jsq *q, struct jsq_stats *out);

#endif
