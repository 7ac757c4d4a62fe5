/* dqueue.c -- the in-memory delivery queue: events stream their targets from the store,
 * retries wait in a bounded min-heap. */
#include "dqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "timeutil.h"

/* The most targets read from the store at once; dq_take asks for no more than it can start. */
#define PAGE_MAX 256

struct active_event {
	struct store_event ev;
	char cursor[ID_LEN + 1]; /* the last webhook id read; "" before the first page */
	int64_t started;         /* deliveries begun */
	struct active_event *next;
};

/* A delivery waiting for its next attempt. It keeps the webhook's id, not its URL: the URL
 * is read again when the retry is due, so it follows updates and stops on deletion. */
struct retry {
	int64_t due_ms;
	int attempt;
	char id[ID_LEN + 1];
	char event_id[ID_LEN + 1];
	char webhook_id[ID_LEN + 1];
	char ip[STORE_IP_LEN];
};

struct dqueue {
	struct store *store;
	long max_retries;
	struct cfg_durations schedule;
	size_t max_events;
	dq_record_fn record;
	void *record_ctx;

	/* Shared with the threads that submit events. */
	pthread_mutex_t lock;
	struct active_event *head, *tail;
	size_t nevents, reserved;

	/* Dispatcher thread only. */
	struct retry *heap;
	size_t nheap, heap_cap;
	size_t outstanding; /* taken and not yet reported */
	uint64_t rng;
	struct store_webhook page[PAGE_MAX];
};

struct dqueue *dq_create(struct store *store, const struct dq_config *cfg, dq_record_fn record,
                         void *record_ctx)
{
	struct dqueue *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->heap = calloc(cfg->max_retries_waiting, sizeof(*q->heap));
	if (q->heap == NULL) {
		free(q);
		return NULL;
	}
	q->store = store;
	q->max_retries = cfg->max_retries;
	q->schedule = *cfg->schedule;
	q->max_events = cfg->max_events;
	q->heap_cap = cfg->max_retries_waiting;
	q->record = record;
	q->record_ctx = record_ctx;
	q->rng = (uint64_t)time_mono_us() * 0x9e3779b97f4a7c15ull | 1;
	pthread_mutex_init(&q->lock, NULL);
	return q;
}

void dq_destroy(struct dqueue *q)
{
	if (q == NULL)
		return;
	while (q->head != NULL) {
		struct active_event *e = q->head;
		q->head = e->next;
		free(e);
	}
	pthread_mutex_destroy(&q->lock);
	free(q->heap);
	free(q);
}

int dq_reserve(struct dqueue *q)
{
	pthread_mutex_lock(&q->lock);
	int rc = q->nevents + q->reserved < q->max_events ? 0 : -EBUSY;
	if (rc == 0)
		q->reserved++;
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void dq_unreserve(struct dqueue *q)
{
	pthread_mutex_lock(&q->lock);
	q->reserved--;
	pthread_mutex_unlock(&q->lock);
}

void dq_submit_event(struct dqueue *q, const struct store_event *ev)
{
	/* The reservation guarantees room; the allocation is the only way to fail. */
	struct active_event *e = calloc(1, sizeof(*e));
	pthread_mutex_lock(&q->lock);
	q->reserved--;
	if (e != NULL) {
		e->ev = *ev;
		if (q->tail != NULL)
			q->tail->next = e;
		else
			q->head = e;
		q->tail = e;
		q->nevents++;
	}
	pthread_mutex_unlock(&q->lock);
	if (e == NULL)
		log_error("out of memory: event %s not dispatched", ev->id);
}

static void heap_push(struct dqueue *q, const struct retry *r)
{
	size_t i = q->nheap++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (q->heap[parent].due_ms <= r->due_ms)
			break;
		q->heap[i] = q->heap[parent];
		i = parent;
	}
	q->heap[i] = *r;
}

static void heap_pop(struct dqueue *q, struct retry *out)
{
	*out = q->heap[0];
	struct retry last = q->heap[--q->nheap];
	size_t i = 0;
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= q->nheap)
			break;
		if (child + 1 < q->nheap && q->heap[child + 1].due_ms < q->heap[child].due_ms)
			child++;
		if (last.due_ms <= q->heap[child].due_ms)
			break;
		q->heap[i] = q->heap[child];
		i = child;
	}
	if (q->nheap > 0)
		q->heap[i] = last;
}

/* xorshift64*: jitter needs speed, not cryptographic strength. */
static double uniform(struct dqueue *q)
{
	q->rng ^= q->rng >> 12;
	q->rng ^= q->rng << 25;
	q->rng ^= q->rng >> 27;
	return (double)((q->rng * 0x2545F4914F6CDD1Dull) >> 11) / (double)(1ull << 53);
}

static void record_final(struct dqueue *q, const struct retry *r, const char *why,
                         enum store_delivery_status status)
{
	struct store_op op = {.kind = STORE_OP_ATTEMPT};
	struct store_attempt *a = &op.attempt;
	memcpy(a->delivery_id, r->id, sizeof(a->delivery_id));
	memcpy(a->event_id, r->event_id, sizeof(a->event_id));
	memcpy(a->webhook_id, r->webhook_id, sizeof(a->webhook_id));
	a->number = r->attempt;
	a->at_ms = time_now_ms();
	snprintf(a->error, sizeof(a->error), "%s", why);
	a->status = status;
	q->record(q->record_ctx, &op);
}

/* Turn due retries into deliveries, reading each webhook as it is now. */
static size_t take_retries(struct dqueue *q, int64_t now_ms, struct delivery *out, size_t max)
{
	size_t n = 0;
	char err[STORE_ERR_LEN];
	while (n < max && q->nheap > 0 && q->heap[0].due_ms <= now_ms) {
		struct retry r;
		heap_pop(q, &r);
		int rc = store_get(q->store, r.webhook_id, &q->page[0], err, sizeof(err));
		if (rc == -ENOENT) {
			record_final(q, &r, "not sent: the webhook was deleted",
			             STORE_DELIVERY_FAILED);
			continue;
		}
		if (rc != 0) {
			/* The store is unwell: try this retry again in a second. */
			log_warn("retry of delivery %s postponed: %s", r.id, err);
			r.due_ms = now_ms + 1000;
			heap_push(q, &r);
			break;
		}
		struct delivery *d = &out[n++];
		memcpy(d->id, r.id, sizeof(d->id));
		memcpy(d->event_id, r.event_id, sizeof(d->event_id));
		memcpy(d->webhook_id, r.webhook_id, sizeof(d->webhook_id));
		memcpy(d->ip, r.ip, sizeof(d->ip));
		memcpy(d->target_url, q->page[0].target_url, sizeof(d->target_url));
		d->attempt = r.attempt;
	}
	return n;
}

/* The event has no targets left to read: drop it, and fix its target count if webhooks came
 * or went between the trigger and the fan-out. */
static void finish_event(struct dqueue *q, struct active_event *e)
{
	pthread_mutex_lock(&q->lock);
	q->head = e->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->nevents--;
	pthread_mutex_unlock(&q->lock);
	if (e->started != e->ev.targets) {
		struct store_op op = {.kind = STORE_OP_EVENT_TARGETS};
		op.event = e->ev;
		op.event.targets = e->started;
		q->record(q->record_ctx, &op);
	}
	log_debug("event %s: fan-out complete, %lld deliveries", e->ev.id, (long long)e->started);
	free(e);
}

/* Move the head event to the tail, so that concurrent events share the slots. */
static void rotate(struct dqueue *q)
{
	pthread_mutex_lock(&q->lock);
	struct active_event *e = q->head;
	if (e != NULL && e->next != NULL) {
		q->head = e->next;
		e->next = NULL;
		q->tail->next = e;
		q->tail = e;
	}
	pthread_mutex_unlock(&q->lock);
}

static size_t take_fresh(struct dqueue *q, struct delivery *out, size_t max, bool *store_failed)
{
	size_t n = 0;
	char err[STORE_ERR_LEN];
	*store_failed = false;
	while (n < max && q->nheap + q->outstanding + n < q->heap_cap) {
		pthread_mutex_lock(&q->lock);
		struct active_event *e = q->head;
		pthread_mutex_unlock(&q->lock);
		if (e == NULL)
			break;
		size_t want = max - n, got = 0;
		if (want > PAGE_MAX)
			want = PAGE_MAX;
		if (want > q->heap_cap - q->nheap - q->outstanding - n)
			want = q->heap_cap - q->nheap - q->outstanding - n;
		int rc = store_list(q->store, e->cursor, want, q->page, &got, err, sizeof(err));
		if (rc != 0) {
			log_warn("event %s: reading targets failed: %s", e->ev.id, err);
			*store_failed = true;
			break;
		}
		for (size_t i = 0; i < got; i++) {
			const struct store_webhook *h = &q->page[i];
			memcpy(e->cursor, h->id, sizeof(e->cursor));
			/* Webhooks registered after the event do not receive it. */
			if (h->created_ms > e->ev.created_ms)
				continue;
			struct delivery *d = &out[n++];
			id_generate_ordered(d->id);
			memcpy(d->event_id, e->ev.id, sizeof(d->event_id));
			memcpy(d->webhook_id, h->id, sizeof(d->webhook_id));
			memcpy(d->ip, e->ev.ip, sizeof(d->ip));
			memcpy(d->target_url, h->target_url, sizeof(d->target_url));
			d->attempt = 1;
			e->started++;
		}
		if (got < want)
			finish_event(q, e);
		else
			rotate(q);
	}
	return n;
}

size_t dq_take(struct dqueue *q, int64_t now_ms, struct delivery *out, size_t max,
               int64_t *next_due_ms)
{
	size_t n = take_retries(q, now_ms, out, max);
	/* Count the retries as outstanding before taking fresh work, which is bounded by it. */
	q->outstanding += n;
	bool store_failed = false;
	size_t fresh = take_fresh(q, out + n, max - n, &store_failed);
	q->outstanding += fresh;
	n += fresh;
	*next_due_ms = q->nheap > 0 ? q->heap[0].due_ms : INT64_MAX;
	/* After a store failure, come back in a second rather than spin. */
	if (store_failed && *next_due_ms > now_ms + 1000)
		*next_due_ms = now_ms + 1000;
	return n;
}

static int64_t retry_delay(struct dqueue *q, const struct delivery *d,
                           const struct delivery_outcome *o)
{
	size_t i = (size_t)(d->attempt - 1);
	if (i >= q->schedule.n)
		i = q->schedule.n - 1;
	int64_t scheduled = q->schedule.ms[i];
	/* A server that says when to come back is believed, within twice our own delay. */
	if (o->retry_after_ms >= 0 && (o->http_status == 429 || o->http_status == 503))
		return o->retry_after_ms < 2 * scheduled ? o->retry_after_ms : 2 * scheduled;
	return (int64_t)((double)scheduled * (0.8 + 0.4 * uniform(q)));
}

static void fill_attempt(struct store_attempt *a, const struct delivery *d,
                         const struct delivery_outcome *o)
{
	memcpy(a->delivery_id, d->id, sizeof(a->delivery_id));
	memcpy(a->event_id, d->event_id, sizeof(a->event_id));
	memcpy(a->webhook_id, d->webhook_id, sizeof(a->webhook_id));
	memcpy(a->target_url, d->target_url, sizeof(a->target_url));
	a->number = d->attempt;
	a->at_ms = o->at_ms;
	a->http_status = o->http_status;
	memcpy(a->error, o->error, sizeof(a->error));
	a->duration_ms = o->duration_ms;
}

void dq_report(struct dqueue *q, const struct delivery *d, const struct delivery_outcome *o,
               int64_t now_ms)
{
	struct store_op op = {.kind = STORE_OP_ATTEMPT};
	fill_attempt(&op.attempt, d, o);
	q->outstanding--;
	if (o->http_status >= 200 && o->http_status <= 299) {
		op.attempt.status = STORE_DELIVERY_SUCCEEDED;
	} else if (d->attempt > q->max_retries) {
		op.attempt.status = STORE_DELIVERY_FAILED;
	} else {
		op.attempt.status = STORE_DELIVERY_PENDING;
		struct retry r = {.due_ms = now_ms + retry_delay(q, d, o),
		                  .attempt = d->attempt + 1};
		memcpy(r.id, d->id, sizeof(r.id));
		memcpy(r.event_id, d->event_id, sizeof(r.event_id));
		memcpy(r.webhook_id, d->webhook_id, sizeof(r.webhook_id));
		memcpy(r.ip, d->ip, sizeof(r.ip));
		/* Room is certain: fresh work is taken only while heap + outstanding < cap. */
		heap_push(q, &r);
	}
	q->record(q->record_ctx, &op);
}

void dq_abandon(struct dqueue *q, const struct delivery *d, const struct delivery_outcome *o)
{
	struct store_op op = {.kind = STORE_OP_ATTEMPT};
	fill_attempt(&op.attempt, d, o);
	op.attempt.status = STORE_DELIVERY_PENDING;
	q->outstanding--;
	q->record(q->record_ctx, &op);
}

void dq_stats(struct dqueue *q, struct dq_stats *out)
{
	pthread_mutex_lock(&q->lock);
	out->events = q->nevents;
	pthread_mutex_unlock(&q->lock);
	out->retries_waiting = q->nheap;
}
