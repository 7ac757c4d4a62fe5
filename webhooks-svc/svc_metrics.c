/* svc_metrics.c -- what webhooks-svc counts for Prometheus (see svc_metrics.h). */
#include "svc_metrics.h"

#include <nats/nats.h>

#include "log.h"
#include "metrics.h"
#include "svc.h"
#include "timeutil.h"

/* How long a scrape waits for JetStream's answer about the retry consumer. */
#define JS_INFO_WAIT_MS 1000

static const char *const outcomes[] = {"succeeded", "failed"};
static _Atomic uint64_t delivery_cells[2];
static struct metric deliveries = {
    .kind = METRIC_COUNTER,
    .name = "webhooks_deliveries_total",
    .help = "Deliveries this instance ended, by outcome (a replayed delivery that ends again "
            "counts again).",
    .n_labels = 1,
    .labels = {{"outcome", outcomes, 2}},
    .cells = delivery_cells,
};

enum result { RES_2XX, RES_4XX, RES_5XX, RES_TIMEOUT, RES_CONNECT, RES_BLOCKED, RES_OTHER, NRES };
static const char *const results[NRES] = {
    [RES_2XX] = "2xx",
    [RES_4XX] = "4xx",
    [RES_5XX] = "5xx",
    [RES_TIMEOUT] = "timeout",
    [RES_CONNECT] = "connect_error",
    [RES_BLOCKED] = "blocked",
    [RES_OTHER] = "other",
};
static _Atomic uint64_t attempt_cells[NRES];
static struct metric attempts = {
    .kind = METRIC_COUNTER,
    .name = "webhooks_delivery_attempts_total",
    .help = "Delivery attempts this instance made, by result: the HTTP status class, timeout, "
            "connect_error (no answer: DNS, refused, reset, closed), blocked (a refused "
            "address) or other (1xx, 3xx, or not started).",
    .n_labels = 1,
    .labels = {{"result", results, NRES}},
    .cells = attempt_cells,
};

static const uint64_t attempt_bounds[] = {1000,    5000,     10000,    25000,   50000,
                                          100000,  250000,   500000,   1000000, 2500000,
                                          5000000, 10000000, 30000000, 60000000};
#define NATTEMPT_BOUNDS (sizeof(attempt_bounds) / sizeof(attempt_bounds[0]))
static _Atomic uint64_t attempt_duration_cells[NATTEMPT_BOUNDS + 1], attempt_duration_sum[1];
static struct metric attempt_durations = {
    .kind = METRIC_HISTOGRAM,
    .name = "webhooks_delivery_duration_seconds",
    .help = "Time each delivery attempt took, from the request's start to its end.",
    .bounds_us = attempt_bounds,
    .n_bounds = NATTEMPT_BOUNDS,
    .cells = attempt_duration_cells,
    .sums_us = attempt_duration_sum,
};

static _Atomic uint64_t event_cells[1];
static struct metric events = {
    .kind = METRIC_COUNTER,
    .name = "webhooks_events_total",
    .help = "Events accepted by triggers (GET /ip) on this instance.",
    .cells = event_cells,
};

static const uint64_t batch_bounds[] = {500,    1000,   2500,   5000,    10000,   25000,  50000,
                                        100000, 250000, 500000, 1000000, 2500000, 5000000};
#define NBATCH_BOUNDS (sizeof(batch_bounds) / sizeof(batch_bounds[0]))
static _Atomic uint64_t batch_cells[NBATCH_BOUNDS + 1], batch_sum[1];
static struct metric batches = {
    .kind = METRIC_HISTOGRAM,
    .name = "webhooks_store_batch_duration_seconds",
    .help = "Time each group-commit batch took to apply in the store (one transaction).",
    .bounds_us = batch_bounds,
    .n_bounds = NBATCH_BOUNDS,
    .cells = batch_cells,
    .sums_us = batch_sum,
};

static _Atomic uint64_t records_failed_cells[1];
static struct metric records_failed = {
    .kind = METRIC_COUNTER,
    .name = "webhooks_records_failed_total",
    .help = "Store writes completed with an error because their batch could not be committed.",
    .cells = records_failed_cells,
};

static uint64_t since(int64_t started_us)
{
	int64_t d = time_mono_us() - started_us;
	return d > 0 ? (uint64_t)d : 0;
}

void svc_metrics_attempt(int http_status, bool timed_out, bool blocked, int64_t started_us)
{
	enum result r;
	if (http_status > 0)
		r = http_status / 100 == 2   ? RES_2XX
		    : http_status / 100 == 4 ? RES_4XX
		    : http_status / 100 == 5 ? RES_5XX
		                             : RES_OTHER; /* 1xx as a final answer, 3xx */
	else if (blocked)
		r = RES_BLOCKED;
	else if (timed_out)
		r = RES_TIMEOUT;
	else
		r = RES_CONNECT;
	metric_inc(&attempts, r);
	metric_observe_us(&attempt_durations, 0, since(started_us));
}

void svc_metrics_attempt_not_started(void)
{
	metric_inc(&attempts, RES_OTHER);
}

void svc_metrics_delivery_ended(bool succeeded)
{
	metric_inc(&deliveries, succeeded ? 0 : 1);
}

void svc_metrics_event_accepted(void)
{
	metric_inc(&events, 0);
}

void svc_metrics_store_batch(int64_t started_us)
{
	metric_observe_us(&batches, 0, since(started_us));
}

void svc_metrics_records_failed(size_t n)
{
	metric_add(&records_failed, 0, n);
}

/* The retry consumer's messages not yet acknowledged, delivered or not: every delivery that
 * waits for its next attempt, over all instances (one JetStream request). */
static bool retries_waiting(natsConnection *nc, int64_t *out)
{
	if (nc == NULL)
		return false;
	jsOptions o;
	jsCtx *js = NULL;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	if (jsOptions_Init(&o) != NATS_OK)
		return false;
	o.Wait = JS_INFO_WAIT_MS;
	natsStatus s = natsConnection_JetStream(&js, nc, &o);
	if (s == NATS_OK)
		s = js_GetConsumerInfo(&ci, js, JSQ_STREAM, JSQ_CONSUMER_RETRY, NULL, &jerr);
	if (s == NATS_OK)
		*out = (int64_t)ci->NumPending + ci->NumAckPending;
	else
		log_debug("metrics: no retry consumer info: %s (%d)", natsStatus_GetText(s),
		          (int)jerr);
	jsConsumerInfo_Destroy(ci);
	jsCtx_Destroy(js);
	return s == NATS_OK;
}

char *svc_metrics_render(struct svc *svc)
{
	struct metrics_buf b = {0};
	metrics_render(&b, &deliveries);
	metrics_render(&b, &attempts);
	metrics_render(&b, &attempt_durations);
	struct dispatch_stats ds = {0};
	if (svc->dispatch != NULL)
		dispatch_stats(svc->dispatch, &ds);
	metrics_render_value(&b, METRIC_GAUGE, "webhooks_in_flight",
	                     "Delivery transfers in flight on this instance now.",
	                     svc->dispatch != NULL, (int64_t)ds.in_flight);
	int64_t waiting = 0;
	bool known = retries_waiting(svc->nc, &waiting);
	metrics_render_value(&b, METRIC_GAUGE, "webhooks_retries_waiting",
	                     "Deliveries waiting in JetStream for their next attempt, over all "
	                     "instances (absent when JetStream does not answer).",
	                     known, waiting);
	metrics_render(&b, &events);
	metrics_render(&b, &batches);
	metrics_render(&b, &records_failed);
	return metrics_buf_take(&b);
}
