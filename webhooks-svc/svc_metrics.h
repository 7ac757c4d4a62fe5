/* svc_metrics.h -- what webhooks-svc counts for Prometheus: deliveries ended, attempts by
 * result and duration, events accepted, the store's commit times and failed records, and
 * the gauges read at scrape time (transfers in flight, retries waiting). Each instance counts
 * what it did itself; api/metrics_http.c serves the text on METRICS_BIND:METRICS_PORT.
 *
 * The counting functions are lock-free (relaxed atomic adds) and may be called from any
 * thread; with metrics_set_enabled(false) they do nothing. */
#ifndef WEBHOOKS_SVC_METRICS_H
#define WEBHOOKS_SVC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct svc;

/* One delivery attempt ended: http_status > 0 when an HTTP answer came (2xx, 4xx and 5xx
 * count as such; 1xx and 3xx, which are failures since redirects are not followed, as
 * "other"); otherwise it timed out, was blocked by the address policy, or failed to connect
 * or lost its connection ("connect_error"). started_us is time_mono_us() when it was sent. */
void svc_metrics_attempt(int http_status, bool timed_out, bool blocked, int64_t started_us);

/* An attempt that could not even be started (out of memory): result "other", no duration. */
void svc_metrics_attempt_not_started(void);

/* A delivery ended (its final outcome is durable): succeeded or failed. */
void svc_metrics_delivery_ended(bool succeeded);

/* A trigger was accepted: its event is stored and its fan-out queued. */
void svc_metrics_event_accepted(void);

/* One store_apply of a group-commit batch returned; started_us is when it was called. */
void svc_metrics_store_batch(int64_t started_us);

/* n writes were completed with an error because their batch could not be committed. */
void svc_metrics_records_failed(size_t n);

/* The Prometheus text of every metric (free it with free()), or NULL when out of memory.
 * Reads svc->dispatch and asks JetStream for the retry consumer's backlog (waiting at most
 * about a second). */
char *svc_metrics_render(struct svc *svc);

#endif
