/* jsqueue.c -- the durable delivery queue on NATS JetStream (see jsqueue.h for the design).
 *
 * Threads and what each owns:
 *   fan-out fetcher  pulls work items one at a time while the inbox holds less than an item,
 *                    counts each item in its event, publishes the next item, reads the targets
 *                    (and, for an item taken again, what the store recorded) and queues the
 *                    deliveries; every JSQ_ACK_WAIT_MS / 3 it tells JetStream that the messages
 *                    held are still being worked on (natsMsg_InProgress);
 *   retry fetcher    pulls retry messages: one not yet due is naked with the time left; a due
 *                    one reads its delivery's state and its webhook again and is queued;
 *   hand-off         publishes, each acknowledged by JetStream before anything depends on it,
 *                    the first work item of every new event and the retry message of every
 *                    delivery of a work item that failed and has retries left;
 *   recorder         the group-commit writer of attempt records; once a record is durable its
 *                    delivery is ended, handed on or (a retry message) naked with its delay;
 *   dispatcher       (dispatch.c) takes deliveries with jsq_take, reports with jsq_report.
 * A message is finished (acked, or naked) by whichever thread ends its last delivery: each work
 * counts its deliveries not yet ended, plus one held by the thread building it. */
#include "jsqueue.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "retry_policy.h"
#include "timeutil.h"
#include "writer.h"

#define SUBJECT_FANOUT     "webhooks.work.fanout"
#define SUBJECT_RETRY      "webhooks.work.retry"
#define CONSUMER_FANOUT    "webhooks-fanout"
#define CONSUMER_RETRY     "webhooks-retry"
#define DEDUP_WINDOW_MS    (10 * 60 * 1000) /* a republished item or retry within it is dropped */
#define FETCH_WAIT_MS      500  /* a fetch long-polls this long; bounds how fast fetchers stop */
#define SETUP_RETRY_MS     1000 /* JetStream unreachable: try the setup again after this */
#define STORE_RETRY_MS     1000 /* the store failed: the message comes back after this */
#define PUBLISH_WAIT_MS    2000 /* JetStream's acknowledgement of a publish */
#define RECORDER_BATCH     512
#define HANDOFF_CAPACITY   4096
#define RETRY_INBOX_FACTOR 2 /* the retry fetcher stops at this many items' worth queued */

/* What the queue keeps of each delivery besides the delivery itself. */
struct side {
	int64_t retry_delay_ms; /* the delay chosen for its next attempt */
	bool skip;              /* its webhook was deleted before it was sent: not handed out */
};

/* One JetStream message being worked on, with its deliveries. */
struct work {
	natsMsg *msg;
	struct jsq *q;
	_Atomic int pending;    /* deliveries not yet ended, + 1 while being built or fed */
	_Atomic bool abandoned; /* hand it back at once (nak) instead of acking */
	bool is_retry;          /* a retry message (one delivery), else a work item */
	int64_t nak_delay_ms;   /* > 0: a retry message that failed again, naked with this */
	size_t n;               /* deliveries to send: d[0..n); hand-offs sit after them */
	size_t fed;             /* d[0..fed) were put in the inbox (inbox lock) */
	size_t next;            /* the next to hand out (inbox lock) */
	bool in_inbox;
	struct work *inbox_next;
	struct work *prev, *next_held; /* in the list of held messages */
	struct side *side; /* per delivery, apart from d so that the dispatcher copies less */
	struct delivery d[];
};

/* A publish for the hand-off thread. */
struct job {
	enum { JOB_FIRST_ITEM, JOB_NEXT_ITEM, JOB_RETRY } kind;
	struct store_event ev; /* JOB_FIRST_ITEM */
	char last_id[ID_LEN + 1];
	jsq_published_fn done;
	void *ctx;
	struct chain *chain; /* JOB_NEXT_ITEM */
	struct delivery *d;  /* JOB_RETRY: the delivery inside its work */
	int64_t delay_ms;
};

/* What follows the count of a work item: once the count is durable, the next item is
 * published (when the range goes on), and then the item's hold on its work is dropped. */
struct chain {
	struct work *w;
	char event_id[ID_LEN + 1];
	char ip[STORE_IP_LEN];
	char after[ID_LEN + 1]; /* the next item's range: (after, last] */
	char last[ID_LEN + 1];
	int64_t k; /* this item */
	bool more; /* an item follows */
};

struct jsq {
	natsConnection *nc;
	struct store *store;
	struct jsq_config cfg;
	struct retry_policy policy; /* dispatcher thread */
	struct writer *recorder;
	size_t recorder_capacity;
	jsCtx *js;
	natsSubscription *fanout_sub, *retry_sub;
	void (*wake)(void *);
	void *wake_ctx;

	pthread_mutex_t lock; /* the inbox, the held list, readiness */
	pthread_cond_t room;  /* the inbox went down, or stopping */
	struct work *inbox_head, *inbox_tail;
	size_t queued;     /* deliveries in the inbox */
	struct work *held; /* every message taken and not finished */
	size_t nheld;
	bool ready;         /* stream and consumers exist and are subscribed */
	size_t outstanding; /* taken by the dispatcher, not reported (dispatcher thread) */

	pthread_mutex_t job_lock;
	pthread_cond_t job_ready, job_room;
	struct job *jobs; /* a ring of HANDOFF_CAPACITY */
	size_t job_head, job_count;
	bool job_stop;

	_Atomic bool stopping;
	bool started;
	struct fetcher *fetchers[2]; /* fan-out, retry */
	pthread_t fanout_thread, retry_thread, handoff_thread;
};

struct fetcher;

/* --------------------------------------------------------------------------------------------
 * Finishing messages */

static void finish(struct work *w)
{
	struct jsq *q = w->q;
	pthread_mutex_lock(&q->lock);
	if (w->prev != NULL)
		w->prev->next_held = w->next_held;
	else
		q->held = w->next_held;
	if (w->next_held != NULL)
		w->next_held->prev = w->prev;
	q->nheld--;
	pthread_mutex_unlock(&q->lock);
	natsStatus s;
	if (atomic_load(&w->abandoned))
		s = natsMsg_Nak(w->msg, NULL);
	else if (w->nak_delay_ms > 0)
		s = natsMsg_NakWithDelay(w->msg, w->nak_delay_ms, NULL);
	else
		s = natsMsg_Ack(w->msg, NULL);
	/* A lost ack or nak only means the message comes back after the ack wait, and whoever
	 * takes it reads what was recorded first. */
	if (s != NATS_OK)
		log_debug("finishing a work message: %s", natsStatus_GetText(s));
	natsMsg_Destroy(w->msg);
	free(w->side);
	free(w);
}

/* One delivery of w (or the builder's hold) is over. */
static void release(struct work *w)
{
	if (atomic_fetch_sub(&w->pending, 1) == 1)
		finish(w);
}

static struct work *work_new(struct jsq *q, natsMsg *msg, size_t n)
{
	struct work *w = calloc(1, sizeof(*w) + n * sizeof(w->d[0]));
	struct side *side = calloc(n > 0 ? n : 1, sizeof(*side));
	if (w == NULL || side == NULL) {
		free(w);
		free(side);
		return NULL;
	}
	w->msg = msg;
	w->q = q;
	w->side = side;
	atomic_store(&w->pending, 1);
	pthread_mutex_lock(&q->lock);
	w->next_held = q->held;
	if (q->held != NULL)
		q->held->prev = w;
	q->held = w;
	q->nheld++;
	pthread_mutex_unlock(&q->lock);
	return w;
}

/* Put d[fed..upto) of w in the inbox (jsq_take passes over the skipped ones). */
static void inbox_add(struct work *w, size_t upto)
{
	struct jsq *q = w->q;
	size_t added = 0;
	for (size_t i = w->fed; i < upto; i++)
		added += !w->side[i].skip;
	pthread_mutex_lock(&q->lock);
	w->fed = upto;
	q->queued += added;
	if (!w->in_inbox && w->next < w->fed) {
		w->in_inbox = true;
		w->inbox_next = NULL;
		if (q->inbox_tail != NULL)
			q->inbox_tail->inbox_next = w;
		else
			q->inbox_head = w;
		q->inbox_tail = w;
	}
	pthread_mutex_unlock(&q->lock);
	if (added > 0)
		q->wake(q->wake_ctx);
}

/* w's deliveries d[0..n) are to be sent: count them, put the first `first` in the inbox, and
 * drop the builder's hold, unless some are left to feed: then the caller keeps feeding them
 * (feed_more) and its hold, and true is returned. */
static bool work_submit(struct work *w, size_t first)
{
	atomic_fetch_add(&w->pending, (int)w->n);
	inbox_add(w, first < w->n ? first : w->n);
	if (w->fed < w->n)
		return true;
	release(w);
	return false;
}

/* --------------------------------------------------------------------------------------------
 * Publishing (the hand-off thread) */

static int publish(struct jsq *q, const char *subject, json_t *body, const char *msg_id, char *err,
                   size_t errlen)
{
	char *text = json_dumps(body, JSON_COMPACT);
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (natsConnection_Status(q->nc) != NATS_CONN_STATUS_CONNECTED) {
		free(text);
		snprintf(err, errlen, "not connected to NATS");
		return -EAGAIN;
	}
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	po.MaxWait = PUBLISH_WAIT_MS;
	jsErrCode jerr = 0;
	jsPubAck *ack = NULL;
	natsStatus s = js_Publish(&ack, q->js, subject, text, (int)strlen(text), &po, &jerr);
	free(text);
	jsPubAck_Destroy(ack);
	if (s == NATS_OK)
		return 0;
	snprintf(err, errlen, "JetStream did not take the message: %s (%d)", natsStatus_GetText(s),
	         (int)jerr);
	return -EAGAIN;
}

/* A work item: the deliveries of event ev to the webhooks with ids in (after, last_id]. */
static json_t *item_json(const char *event_id, const char *ip, const char *after,
                         const char *last_id, int64_t k)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:I}", "event", event_id, "ip", ip, "after", after,
	                 "last", last_id, "item", (json_int_t)k);
}

static int publish_item(struct jsq *q, const char *event_id, const char *ip, const char *after,
                        const char *last_id, int64_t k, char *err, size_t errlen)
{
	json_t *body = item_json(event_id, ip, after, last_id, k);
	char msg_id[ID_LEN + 32];
	snprintf(msg_id, sizeof(msg_id), "%s.%lld", event_id, (long long)k);
	int rc = body != NULL ? publish(q, SUBJECT_FANOUT, body, msg_id, err, errlen) : -ENOMEM;
	json_decref(body);
	return rc;
}

static void item_op(struct store_op *op, const char *event_id, int64_t k, int64_t deliveries,
                    bool last)
{
	*op = (struct store_op){.kind = STORE_OP_EVENT_ITEM};
	snprintf(op->item.event_id, sizeof(op->item.event_id), "%s", event_id);
	op->item.item = k;
	op->item.deliveries = deliveries;
	op->item.last = last;
}

/* Mark an event that will have no deliveries, at once (rare: JetStream refused it, or there
 * are no webhooks). Written directly, so that the hand-off thread never waits on the
 * recorder, which may be waiting on it. */
static void mark_empty(struct jsq *q, const char *event_id)
{
	struct store_op op;
	item_op(&op, event_id, 0, 0, true);
	char err[STORE_ERR_LEN];
	if (store_apply(q->store, &op, 1, err, sizeof(err)) != 0)
		log_warn("event %s: could not mark it as having no deliveries: %s", event_id, err);
}

static void run_first_item(struct jsq *q, struct job *j)
{
	char err[256];
	int rc = atomic_load(&q->stopping) ? -ESHUTDOWN : 0;
	if (rc == 0) {
		pthread_mutex_lock(&q->lock);
		bool ready = q->ready;
		pthread_mutex_unlock(&q->lock);
		if (!ready) {
			rc = -EAGAIN;
			snprintf(err, sizeof(err), "JetStream is not available");
		}
	} else {
		snprintf(err, sizeof(err), "the service is stopping");
	}
	if (rc == 0)
		rc = publish_item(q, j->ev.id, j->ev.ip, "", j->last_id, 0, err, sizeof(err));
	if (rc != 0) {
		/* Nothing will be delivered: say so in the event, so that it shows no pending
		 * deliveries. */
		log_warn("event %s not accepted: %s", j->ev.id, err);
		mark_empty(q, j->ev.id);
	}
	j->done(j->ctx, &j->ev, rc, err);
}

static void run_next_item(struct jsq *q, struct job *j)
{
	struct chain *c = j->chain;
	char err[256];
	if (publish_item(q, c->event_id, c->ip, c->after, c->last, c->k + 1, err, sizeof(err)) !=
	    0) {
		/* This item comes back, is counted as a no-op and publishes the next again. */
		log_warn("event %s item %lld: publishing the next item failed (%s)", c->event_id,
		         (long long)c->k, err);
		atomic_store(&c->w->abandoned, true);
	}
	release(c->w);
	free(c);
}

static void run_retry_handoff(struct jsq *q, struct job *j)
{
	struct delivery *d = j->d;
	json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:I}", "delivery", d->id, "event",
	                         d->event_id, "webhook", d->webhook_id, "ip", d->ip, "due",
	                         (json_int_t)(time_now_ms() + j->delay_ms));
	char msg_id[ID_LEN + 8], err[256];
	snprintf(msg_id, sizeof(msg_id), "r.%s", d->id);
	int rc = body != NULL ? publish(q, SUBJECT_RETRY, body, msg_id, err, sizeof(err)) : -ENOMEM;
	json_decref(body);
	if (rc != 0) {
		/* The attempt is recorded as pending: whoever takes the work item again sees that
		 * and hands the retry on then. */
		log_warn("delivery %s: retry not handed on (%s); its work item will be taken again",
		         d->id, rc == -ENOMEM ? "out of memory" : err);
		atomic_store(&d->work->abandoned, true);
	}
	release(d->work);
}

static void *handoff_main(void *arg)
{
	struct jsq *q = arg;
	for (;;) {
		pthread_mutex_lock(&q->job_lock);
		while (q->job_count == 0 && !q->job_stop)
			pthread_cond_wait(&q->job_ready, &q->job_lock);
		if (q->job_count == 0) {
			pthread_mutex_unlock(&q->job_lock);
			return NULL;
		}
		struct job j = q->jobs[q->job_head];
		q->job_head = (q->job_head + 1) % HANDOFF_CAPACITY;
		q->job_count--;
		pthread_cond_signal(&q->job_room);
		pthread_mutex_unlock(&q->job_lock);
		if (j.kind == JOB_FIRST_ITEM)
			run_first_item(q, &j);
		else if (j.kind == JOB_NEXT_ITEM)
			run_next_item(q, &j);
		else
			run_retry_handoff(q, &j);
	}
}

/* Queue a job; blocks while the ring is full, which pushes back on whoever hands work on. */
static void job_push(struct jsq *q, const struct job *j)
{
	pthread_mutex_lock(&q->job_lock);
	while (q->job_count == HANDOFF_CAPACITY)
		pthread_cond_wait(&q->job_room, &q->job_lock);
	q->jobs[(q->job_head + q->job_count) % HANDOFF_CAPACITY] = *j;
	q->job_count++;
	pthread_cond_signal(&q->job_ready);
	pthread_mutex_unlock(&q->job_lock);
}

static void hand_on_retry(struct jsq *q, struct delivery *d, int64_t delay_ms)
{
	struct job j = {.kind = JOB_RETRY, .d = d, .delay_ms = delay_ms};
	job_push(q, &j);
}

void jsq_publish_event(struct jsq *q, const struct store_event *ev, const char *last_id,
                       jsq_published_fn done, void *ctx)
{
	if (last_id[0] == '\0') {
		/* No webhooks: nothing to deliver, and nothing to put in JetStream. */
		mark_empty(q, ev->id);
		done(ctx, ev, 0, "");
		return;
	}
	struct job j = {.kind = JOB_FIRST_ITEM, .ev = *ev, .done = done, .ctx = ctx};
	snprintf(j.last_id, sizeof(j.last_id), "%s", last_id);
	job_push(q, &j);
}

/* --------------------------------------------------------------------------------------------
 * Records */

static void on_recorded(void *ctx, const struct store_op *op, int batch_rc, const char *err)
{
	if (op->kind == STORE_OP_EVENT_ITEM) {
		struct chain *c = ctx;
		int rc = batch_rc != 0 ? batch_rc : op->result;
		if (rc == 0 && c->more) {
			struct job j = {.kind = JOB_NEXT_ITEM, .chain = c};
			job_push(c->w->q, &j);
			return;
		}
		if (rc == -ENOENT)
			log_warn("event %s item %lld: no such event", c->event_id, (long long)c->k);
		else if (rc != 0)
			atomic_store(&c->w->abandoned, true); /* counted when it comes back */
		release(c->w);
		free(c);
		return;
	}
	struct delivery *d = ctx;
	struct work *w = d->work;
	if (batch_rc != 0) {
		/* Not durable (only when stopping: the recorder retries until then): hand the
		 * message back, and this attempt will be made again. */
		atomic_store(&w->abandoned, true);
	} else if (op->attempt.status == STORE_DELIVERY_PENDING) {
		int64_t delay = w->side[d->index].retry_delay_ms;
		if (w->is_retry) {
			/* A retry message: it comes back itself when the next attempt is due. */
			w->nak_delay_ms = delay > 0 ? delay : 1;
		} else {
			hand_on_retry(w->q, d, delay);
			return;
		}
	}
	release(w);
}

/* --------------------------------------------------------------------------------------------
 * The dispatcher's side */

size_t jsq_take(struct jsq *q, struct delivery *out, size_t max)
{
	size_t room = writer_room(q->recorder);
	room = room > q->outstanding ? room - q->outstanding : 0;
	if (max > room)
		max = room;
	size_t n = 0;
	pthread_mutex_lock(&q->lock);
	while (n < max && q->inbox_head != NULL) {
		struct work *w = q->inbox_head;
		while (n < max && w->next < w->fed) {
			size_t i = w->next++;
			if (!w->side[i].skip)
				out[n++] = w->d[i];
		}
		if (w->next == w->fed) {
			q->inbox_head = w->inbox_next;
			if (q->inbox_head == NULL)
				q->inbox_tail = NULL;
			w->inbox_next = NULL;
			w->in_inbox = false;
		}
	}
	q->queued -= n;
	if (n > 0)
		pthread_cond_broadcast(&q->room);
	pthread_mutex_unlock(&q->lock);
	q->outstanding += n;
	return n;
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

/* Record op for the delivery orig (inside its work); on_recorded carries on from there. */
static void record(struct jsq *q, struct delivery *orig, const struct store_op *op)
{
	if (q->cfg.no_record) {
		on_recorded(orig, op, 0, "");
		return;
	}
	if (writer_submit(q->recorder, op, orig) != 0) {
		atomic_store(&orig->work->abandoned, true);
		release(orig->work);
	}
}

/* End the delivery d (inside its work) without sending it: its webhook is gone. */
static void record_not_sent(struct jsq *q, struct delivery *d)
{
	struct store_op op = {.kind = STORE_OP_ATTEMPT};
	struct store_attempt *a = &op.attempt;
	memcpy(a->delivery_id, d->id, sizeof(a->delivery_id));
	memcpy(a->event_id, d->event_id, sizeof(a->event_id));
	memcpy(a->webhook_id, d->webhook_id, sizeof(a->webhook_id));
	a->number = d->attempt;
	a->at_ms = time_now_ms();
	snprintf(a->error, sizeof(a->error), "not sent: the webhook was deleted");
	a->status = STORE_DELIVERY_FAILED;
	record(q, d, &op);
}

void jsq_report(struct jsq *q, const struct delivery *d, const struct delivery_outcome *o)
{
	struct work *w = d->work;
	struct delivery *orig = &w->d[d->index];
	q->outstanding--;
	struct store_op op = {.kind = STORE_OP_ATTEMPT};
	fill_attempt(&op.attempt, d, o);
	if (o->http_status >= 200 && o->http_status <= 299) {
		op.attempt.status = STORE_DELIVERY_SUCCEEDED;
	} else if (retry_policy_again(&q->policy, d->attempt)) {
		op.attempt.status = STORE_DELIVERY_PENDING;
		w->side[d->index].retry_delay_ms =
		    retry_policy_delay(&q->policy, d->attempt, o->http_status, o->retry_after_ms);
	} else {
		op.attempt.status = STORE_DELIVERY_FAILED;
	}
	record(q, orig, &op);
}

void jsq_abandon(struct jsq *q, const struct delivery *d)
{
	q->outstanding--;
	atomic_store(&d->work->abandoned, true);
	release(d->work);
}

/* --------------------------------------------------------------------------------------------
 * Setting up JetStream */

static bool js_ok_or_exists(natsStatus s, jsErrCode jerr)
{
	return s == NATS_OK || jerr == JSStreamNameExistErr || jerr == JSConsumerNameExistErr;
}

static int add_consumer(struct jsq *q, const char *name, const char *subject,
                        int64_t max_ack_pending, char *err, size_t errlen)
{
	jsConsumerConfig cc;
	jsConsumerConfig_Init(&cc);
	cc.Durable = name;
	cc.FilterSubject = subject;
	cc.AckPolicy = js_AckExplicit;
	cc.DeliverPolicy = js_DeliverAll;
	cc.AckWait = (int64_t)JSQ_ACK_WAIT_MS * 1000000;
	cc.MaxDeliver = -1;
	cc.MaxAckPending = max_ack_pending;
	jsErrCode jerr = 0;
	jsConsumerInfo *ci = NULL;
	natsStatus s = js_AddConsumer(&ci, q->js, JSQ_STREAM, &cc, NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	if (js_ok_or_exists(s, jerr))
		return 0;
	snprintf(err, errlen, "consumer %s: %s (%d)", name, natsStatus_GetText(s), (int)jerr);
	return -EIO;
}

static int bind_consumer(struct jsq *q, natsSubscription **sub, const char *name,
                         const char *subject, char *err, size_t errlen)
{
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = JSQ_STREAM;
	so.Consumer = name;
	so.ManualAck = true;
	jsErrCode jerr = 0;
	natsStatus s = js_PullSubscribe(sub, q->js, subject, name, NULL, &so, &jerr);
	if (s == NATS_OK)
		return 0;
	snprintf(err, errlen, "subscribing to %s: %s (%d)", name, natsStatus_GetText(s), (int)jerr);
	return -EIO;
}

/* Create the stream and the consumers when missing and subscribe to both. The stream keeps
 * its messages on disk; a message is removed once acked (work-queue retention). */
static int setup(struct jsq *q, char *err, size_t errlen)
{
	const char *subjects[] = {SUBJECT_FANOUT, SUBJECT_RETRY};
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	sc.Name = JSQ_STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 2;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	sc.Duplicates = (int64_t)DEDUP_WINDOW_MS * 1000000;
	/* Bounded, and full means refusing new work (a 503 for /ip, a retry handed on later):
	 * the default, discarding the oldest messages, would drop accepted deliveries. */
	sc.MaxBytes = JSQ_MAX_BYTES;
	sc.Discard = js_DiscardNew;
	jsErrCode jerr = 0;
	jsStreamInfo *si = NULL;
	natsStatus s = js_AddStream(&si, q->js, &sc, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	if (jerr == JSStreamNameExistErr) {
		/* Made by an older version, with other settings: bring it up to these. */
		si = NULL;
		s = js_UpdateStream(&si, q->js, &sc, NULL, &jerr);
		jsStreamInfo_Destroy(si);
	}
	if (!js_ok_or_exists(s, jerr)) {
		snprintf(err, errlen, "stream %s: %s (%d)", JSQ_STREAM, natsStatus_GetText(s),
		         (int)jerr);
		return -EIO;
	}
	/* Few items at a time per event (they are chained), but every waiting retry is a
	 * message held by its consumer until it is due. */
	if (add_consumer(q, CONSUMER_FANOUT, SUBJECT_FANOUT, 4096, err, errlen) != 0 ||
	    add_consumer(q, CONSUMER_RETRY, SUBJECT_RETRY, 1000000, err, errlen) != 0)
		return -EIO;
	if (q->fanout_sub == NULL &&
	    bind_consumer(q, &q->fanout_sub, CONSUMER_FANOUT, SUBJECT_FANOUT, err, errlen) != 0)
		return -EIO;
	if (q->retry_sub == NULL &&
	    bind_consumer(q, &q->retry_sub, CONSUMER_RETRY, SUBJECT_RETRY, err, errlen) != 0)
		return -EIO;
	return 0;
}

/* Wait on the room condition until deadline_ms (monotonic) or stopping; q->lock held. */
static void wait_room(struct jsq *q, int64_t deadline_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t left = deadline_ms - time_mono_ms();
	if (left <= 0)
		return;
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (left % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&q->room, &q->lock, &ts);
}

/* Until JetStream answers: one fetcher sets it up, the other waits for it. */
static bool wait_ready(struct jsq *q, bool does_setup)
{
	pthread_mutex_lock(&q->lock);
	bool ready = q->ready;
	pthread_mutex_unlock(&q->lock);
	if (ready)
		return true;
	if (does_setup) {
		char err[256];
		if (setup(q, err, sizeof(err)) == 0) {
			pthread_mutex_lock(&q->lock);
			q->ready = true;
			pthread_cond_broadcast(&q->room);
			pthread_mutex_unlock(&q->lock);
			log_info("JetStream: stream %s ready", JSQ_STREAM);
			return true;
		}
		log_warn("JetStream not ready (%s); trying again in %d ms", err, SETUP_RETRY_MS);
	}
	pthread_mutex_lock(&q->lock);
	if (!q->ready && !atomic_load(&q->stopping))
		wait_room(q, time_mono_ms() + SETUP_RETRY_MS);
	pthread_mutex_unlock(&q->lock);
	return false;
}

/* Tell JetStream that every message held is still being worked on. */
static void keep_alive(struct jsq *q)
{
	pthread_mutex_lock(&q->lock);
	for (struct work *w = q->held; w != NULL; w = w->next_held)
		(void)natsMsg_InProgress(w->msg, NULL); /* a lost one is sent again next round */
	pthread_mutex_unlock(&q->lock);
}

/* Wait until the inbox holds fewer than limit deliveries; false when stopping. The fan-out
 * fetcher keeps the held messages alive meanwhile. */
static bool wait_for_room(struct jsq *q, size_t limit, bool keeper, int64_t *next_keep)
{
	pthread_mutex_lock(&q->lock);
	while (q->queued >= limit && !atomic_load(&q->stopping)) {
		wait_room(q, keeper ? *next_keep : time_mono_ms() + FETCH_WAIT_MS);
		if (keeper && time_mono_ms() >= *next_keep) {
			pthread_mutex_unlock(&q->lock);
			keep_alive(q);
			*next_keep = time_mono_ms() + JSQ_ACK_WAIT_MS / 3;
			pthread_mutex_lock(&q->lock);
		}
	}
	pthread_mutex_unlock(&q->lock);
	return !atomic_load(&q->stopping);
}

/* Take one message from sub, waiting up to FETCH_WAIT_MS; NULL when none came. */
static natsMsg *fetch_one(natsSubscription *sub)
{
	natsMsgList list = {0};
	jsErrCode jerr = 0;
	natsStatus s = natsSubscription_Fetch(&list, sub, 1, FETCH_WAIT_MS, &jerr);
	if (s != NATS_OK || list.Count == 0) {
		if (s != NATS_TIMEOUT && s != NATS_OK)
			log_debug("fetch: %s", natsStatus_GetText(s));
		natsMsgList_Destroy(&list);
		return NULL;
	}
	natsMsg *m = list.Msgs[0];
	list.Msgs[0] = NULL;
	natsMsgList_Destroy(&list);
	return m;
}

static uint64_t times_delivered(natsMsg *m)
{
	jsMsgMetaData *meta = NULL;
	uint64_t n = 1;
	if (natsMsg_GetMetaData(&meta, m) == NATS_OK)
		n = meta->NumDelivered;
	jsMsgMetaData_Destroy(meta);
	return n;
}

/* A message we cannot read is dropped for good (Term), with a line saying so. */
static json_t *parse_msg(natsMsg *m, const char *what)
{
	json_error_t jerr;
	json_t *o = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &jerr);
	if (o == NULL || !json_is_object(o)) {
		log_error("dropping an unreadable %s message: %s", what,
		          o == NULL ? jerr.text : "");
		json_decref(o);
		(void)natsMsg_Term(m, NULL);
		natsMsg_Destroy(m);
		return NULL;
	}
	return o;
}

static const char *str_member(json_t *o, const char *key, bool id)
{
	const char *v = json_string_value(json_object_get(o, key));
	if (v == NULL || (id && !id_valid(v)))
		return NULL;
	return v;
}

static void nak_later(natsMsg *m, int64_t delay_ms)
{
	(void)natsMsg_NakWithDelay(m, delay_ms, NULL); /* lost: it comes back after the ack wait */
	natsMsg_Destroy(m);
}

/* The per-fetcher buffers. */
struct fetcher {
	struct jsq *q;
	struct work *cur; /* the work item being fed to the inbox a chunk at a time */
	size_t chunk;     /* deliveries fed at once: MAX_IN_FLIGHT, at most an item */
	struct retry_policy policy;
	struct store_webhook page[JSQ_ITEM_SIZE];
	char ids[JSQ_ITEM_SIZE][ID_LEN + 1];
	struct store_delivery_state states[JSQ_ITEM_SIZE];
};

static void take_item(struct fetcher *f, natsMsg *m)
{
	struct jsq *q = f->q;
	json_t *o = parse_msg(m, "work item");
	if (o == NULL)
		return;
	const char *event_id = str_member(o, "event", true), *ip = str_member(o, "ip", false);
	const char *after = str_member(o, "after", false), *last = str_member(o, "last", true);
	json_t *jk = json_object_get(o, "item");
	if (event_id == NULL || ip == NULL || after == NULL || last == NULL ||
	    !json_is_integer(jk) || strlen(ip) >= STORE_IP_LEN) {
		log_error("dropping a malformed work item");
		json_decref(o);
		(void)natsMsg_Term(m, NULL);
		natsMsg_Destroy(m);
		return;
	}
	int64_t k = json_integer_value(jk);
	char err[STORE_ERR_LEN];
	size_t got = 0;
	int rc = store_list(q->store, after, JSQ_ITEM_SIZE, f->page, &got, err, sizeof(err));
	if (rc != 0) {
		log_warn("event %s item %lld: reading targets failed (%s); taken again in %d ms",
		         event_id, (long long)k, err, STORE_RETRY_MS);
		goto later;
	}
	/* The targets are the webhooks that existed at the trigger: ids up to last. */
	size_t n = 0;
	while (n < got && strcmp(f->page[n].id, last) <= 0)
		n++;
	bool more = n == JSQ_ITEM_SIZE && strcmp(f->page[n - 1].id, last) < 0;

	bool again = times_delivered(m) > 1;
	for (size_t i = 0; i < n; i++)
		id_derive(f->ids[i], event_id, f->page[i].id);
	if (again && store_delivery_states(q->store, event_id, (const char(*)[ID_LEN + 1]) f->ids,
	                                   n, f->states, err, sizeof(err)) != 0) {
		log_warn("event %s item %lld: reading recorded deliveries failed (%s)", event_id,
		         (long long)k, err);
		goto later;
	}
	struct work *w = work_new(q, m, n);
	if (w == NULL) {
		log_error("out of memory: event %s item %lld taken again later", event_id,
		          (long long)k);
		goto later;
	}
	/* Deliveries to send fill the array from the front, retries to hand on from the back. */
	size_t back = n;
	for (size_t i = 0; i < n; i++) {
		const struct store_delivery_state *st = &f->states[i];
		if (again && st->found && st->status != STORE_DELIVERY_PENDING)
			continue; /* ended before the crash */
		bool hand_on = again && st->found && st->attempts > 0;
		size_t at = hand_on ? --back : w->n++;
		struct delivery *d = &w->d[at];
		memcpy(d->id, f->ids[i], sizeof(d->id));
		memcpy(d->event_id, event_id, ID_LEN + 1);
		memcpy(d->webhook_id, f->page[i].id, sizeof(d->webhook_id));
		snprintf(d->ip, sizeof(d->ip), "%s", ip);
		memcpy(d->target_url, f->page[i].target_url, sizeof(d->target_url));
		d->attempt = hand_on ? st->attempts + 1 : 1;
		d->work = w;
		d->index = at;
		if (hand_on) {
			/* It failed before the crash, and its retry may not have been handed on
			 * (the retry's message id makes a second hand-off a no-op). */
			atomic_fetch_add(&w->pending, 1);
			hand_on_retry(q, d, retry_policy_delay(&f->policy, st->attempts, 0, -1));
		}
	}
	size_t handed = n - back;
	/* Count this item, and only once that is durable publish the next one (chain), so that
	 * items are counted in order and the last one's count makes the event's total final.
	 * Sending does not wait for either; the work is not acked before both are done. */
	struct chain *c = calloc(1, sizeof(*c));
	atomic_fetch_add(&w->pending, 1); /* the chain's hold */
	if (c == NULL) {
		log_error("out of memory: event %s item %lld will be taken again", event_id,
		          (long long)k);
		atomic_store(&w->abandoned, true);
		release(w);
	} else {
		c->w = w;
		c->k = k;
		c->more = more;
		memcpy(c->event_id, event_id, sizeof(c->event_id));
		snprintf(c->ip, sizeof(c->ip), "%s", ip);
		snprintf(c->after, sizeof(c->after), "%s", more ? f->page[n - 1].id : "");
		memcpy(c->last, last, sizeof(c->last));
		struct store_op op;
		item_op(&op, event_id, k, (int64_t)n, !more);
		if (writer_submit(q->recorder, &op, c) != 0) {
			atomic_store(&w->abandoned, true);
			release(w);
			free(c);
		}
	}
	log_debug("event %s item %lld taken: %zu deliveries%s", event_id, (long long)k, n,
	          again ? " (again)" : "");
	if (handed > 0)
		log_info("event %s item %lld taken again: %zu retries handed on, %zu to send",
		         event_id, (long long)k, handed, w->n);
	json_decref(o);
	if (work_submit(w, f->chunk))
		f->cur = w;
	return;
later:
	json_decref(o);
	nak_later(m, STORE_RETRY_MS);
}

static void take_retry(struct fetcher *f, natsMsg *m)
{
	struct jsq *q = f->q;
	json_t *o = parse_msg(m, "retry");
	if (o == NULL)
		return;
	const char *id = str_member(o, "delivery", true), *event_id = str_member(o, "event", true);
	const char *webhook_id = str_member(o, "webhook", true), *ip = str_member(o, "ip", false);
	json_t *jdue = json_object_get(o, "due");
	if (id == NULL || event_id == NULL || webhook_id == NULL || ip == NULL ||
	    strlen(ip) >= STORE_IP_LEN || !json_is_integer(jdue)) {
		log_error("dropping a malformed retry message");
		json_decref(o);
		(void)natsMsg_Term(m, NULL);
		natsMsg_Destroy(m);
		return;
	}
	/* Not due yet (first seen, or back early): the server holds it until it is. */
	int64_t left = json_integer_value(jdue) - time_now_ms();
	if (left > 0) {
		json_decref(o);
		nak_later(m, left);
		return;
	}
	char err[STORE_ERR_LEN];
	struct store_delivery_state st;
	if (store_delivery_states(q->store, event_id, (const char(*)[ID_LEN + 1]) id, 1, &st, err,
	                          sizeof(err)) != 0) {
		log_warn("retry of delivery %s postponed: %s", id, err);
		goto later;
	}
	if (st.found && st.status != STORE_DELIVERY_PENDING) {
		(void)natsMsg_Ack(m, NULL); /* it ended before a crash */
		natsMsg_Destroy(m);
		json_decref(o);
		return;
	}
	/* The webhook is read again: a retry follows an update and stops on a deletion. */
	int rc = store_get(q->store, webhook_id, &f->page[0], err, sizeof(err));
	if (rc != 0 && rc != -ENOENT) {
		log_warn("retry of delivery %s postponed: %s", id, err);
		goto later;
	}
	struct work *w = work_new(q, m, 1);
	if (w == NULL) {
		log_error("out of memory: retry of delivery %s postponed", id);
		goto later;
	}
	w->is_retry = true;
	struct delivery *d = &w->d[0];
	memcpy(d->id, id, sizeof(d->id));
	memcpy(d->event_id, event_id, sizeof(d->event_id));
	memcpy(d->webhook_id, webhook_id, sizeof(d->webhook_id));
	snprintf(d->ip, sizeof(d->ip), "%s", ip);
	memcpy(d->target_url, f->page[0].target_url, sizeof(d->target_url));
	d->attempt = st.found ? st.attempts + 1 : 1;
	d->work = w;
	json_decref(o);
	if (rc == -ENOENT) {
		atomic_fetch_add(&w->pending, 1);
		record_not_sent(q, d);
	} else {
		w->n = 1;
	}
	work_submit(w, 1);
	return;
later:
	json_decref(o);
	nak_later(m, STORE_RETRY_MS);
}

/* Feed the next chunk of the current work item to the inbox, reading its webhooks again just
 * before, so that a delivery not started yet sees the store as it is now: a webhook deleted
 * since the item was taken ends as failed, unsent; an updated one is sent to its new URL. */
static void feed_more(struct fetcher *f)
{
	struct jsq *q = f->q;
	struct work *w = f->cur;
	size_t from = w->fed, to = w->fed + f->chunk < w->n ? w->fed + f->chunk : w->n;
	size_t got = 0;
	char err[STORE_ERR_LEN];
	/* Ids only grow, so the range (previous, last of chunk] holds no webhook but these. */
	int rc = store_list(q->store, w->d[from - 1].webhook_id, to - from, f->page, &got, err,
	                    sizeof(err));
	if (rc != 0) {
		log_warn("event %s: reading targets again failed (%s); sending as read before",
		         w->d[from].event_id, err);
	} else {
		size_t j = 0;
		for (size_t i = from; i < to; i++) {
			struct delivery *d = &w->d[i];
			while (j < got && strcmp(f->page[j].id, d->webhook_id) < 0)
				j++;
			if (j < got && strcmp(f->page[j].id, d->webhook_id) == 0) {
				memcpy(d->target_url, f->page[j].target_url, sizeof(d->target_url));
			} else {
				w->side[i].skip = true;
				record_not_sent(q, d);
			}
		}
	}
	inbox_add(w, to);
	if (w->fed == w->n) {
		f->cur = NULL;
		release(w); /* the feeder's hold */
	}
}

static void fetch_loop(struct fetcher *f, bool fanout)
{
	struct jsq *q = f->q;
	int64_t next_keep = time_mono_ms() + JSQ_ACK_WAIT_MS / 3;
	/* The fan-out fetcher takes another item only once the last one is fed and less than an
	 * item is queued, so that an instance holds few items and the others take the rest of
	 * a big event. */
	size_t limit = fanout ? JSQ_ITEM_SIZE : RETRY_INBOX_FACTOR * JSQ_ITEM_SIZE;
	while (!atomic_load(&q->stopping)) {
		if (!wait_ready(q, fanout))
			continue;
		if (f->cur != NULL) {
			if (wait_for_room(q, f->chunk, true, &next_keep))
				feed_more(f);
			continue;
		}
		if (!wait_for_room(q, limit, fanout, &next_keep))
			break;
		natsMsg *m = fetch_one(fanout ? q->fanout_sub : q->retry_sub);
		if (m != NULL && atomic_load(&q->stopping)) {
			(void)natsMsg_Nak(m, NULL);
			natsMsg_Destroy(m);
		} else if (m != NULL) {
			if (fanout)
				take_item(f, m);
			else
				take_retry(f, m);
		}
		if (fanout && time_mono_ms() >= next_keep) {
			keep_alive(q);
			next_keep = time_mono_ms() + JSQ_ACK_WAIT_MS / 3;
		}
	}
}

static void *fanout_main(void *arg)
{
	fetch_loop(arg, true);
	return NULL;
}

static void *retry_main(void *arg)
{
	fetch_loop(arg, false);
	return NULL;
}

/* --------------------------------------------------------------------------------------------
 * Lifetime */

struct jsq *jsq_create(natsConnection *nc, struct store *store, const struct jsq_config *cfg,
                       char *err, size_t errlen)
{
	struct jsq *q = calloc(1, sizeof(*q));
	if (q == NULL)
		goto nomem;
	q->nc = nc;
	q->store = store;
	q->cfg = *cfg;
	retry_policy_init(&q->policy, cfg->max_retries, cfg->schedule);
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->job_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->room, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&q->job_ready, NULL);
	pthread_cond_init(&q->job_room, NULL);
	q->jobs = calloc(HANDOFF_CAPACITY, sizeof(*q->jobs));
	if (q->jobs == NULL)
		goto nomem;
	/* Room for every transfer's outcome, an item's worth beyond, and the fetchers' counts. */
	q->recorder_capacity = 2 * cfg->max_in_flight + JSQ_ITEM_SIZE + 64;
	if (q->recorder_capacity < 1024)
		q->recorder_capacity = 1024;
	q->recorder = writer_create(store, on_recorded, q->recorder_capacity, RECORDER_BATCH, true,
	                            err, errlen);
	if (q->recorder == NULL)
		goto fail;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = PUBLISH_WAIT_MS;
	if (natsConnection_JetStream(&q->js, nc, &jo) != NATS_OK) {
		snprintf(err, errlen, "cannot create a JetStream context");
		goto fail;
	}
	return q;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	jsq_destroy(q);
	return NULL;
}

int jsq_start(struct jsq *q, void (*wake)(void *), void *ctx, char *err, size_t errlen)
{
	q->wake = wake;
	q->wake_ctx = ctx;
	struct fetcher *ff = calloc(1, sizeof(*ff)), *rf = calloc(1, sizeof(*rf));
	if (ff == NULL || rf == NULL) {
		free(ff);
		free(rf);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ff->q = rf->q = q;
	ff->chunk = q->cfg.max_in_flight < JSQ_ITEM_SIZE ? q->cfg.max_in_flight : JSQ_ITEM_SIZE;
	rf->chunk = 1;
	retry_policy_init(&ff->policy, q->cfg.max_retries, q->cfg.schedule);
	retry_policy_init(&rf->policy, q->cfg.max_retries, q->cfg.schedule);
	if (pthread_create(&q->handoff_thread, NULL, handoff_main, q) != 0) {
		free(ff);
		free(rf);
		snprintf(err, errlen, "cannot start the hand-off thread");
		return -EAGAIN;
	}
	if (pthread_create(&q->fanout_thread, NULL, fanout_main, ff) != 0) {
		free(ff);
		free(rf);
		snprintf(err, errlen, "cannot start the fan-out fetcher");
		/* The hand-off thread is stopped by jsq_destroy. */
		q->started = true;
		return -EAGAIN;
	}
	if (pthread_create(&q->retry_thread, NULL, retry_main, rf) != 0) {
		free(rf);
		snprintf(err, errlen, "cannot start the retry fetcher");
		atomic_store(&q->stopping, true);
		pthread_join(q->fanout_thread, NULL);
		free(ff);
		q->started = true;
		return -EAGAIN;
	}
	q->fetchers[0] = ff;
	q->fetchers[1] = rf;
	q->started = true;
	return 0;
}

void jsq_stop_fetching(struct jsq *q)
{
	if (q == NULL)
		return;
	atomic_store(&q->stopping, true);
	pthread_mutex_lock(&q->lock);
	pthread_cond_broadcast(&q->room);
	pthread_mutex_unlock(&q->lock);
}

void jsq_destroy(struct jsq *q)
{
	if (q == NULL)
		return;
	jsq_stop_fetching(q);
	if (q->fetchers[0] != NULL)
		pthread_join(q->fanout_thread, NULL);
	if (q->fetchers[1] != NULL)
		pthread_join(q->retry_thread, NULL);
	/* The item being fed: what was never fed goes back with it. */
	struct work *cur = q->fetchers[0] != NULL ? q->fetchers[0]->cur : NULL;
	size_t unfed = cur != NULL ? cur->n - cur->fed : 0;
	if (cur != NULL)
		atomic_store(&cur->abandoned, true);
	free(q->fetchers[0]);
	free(q->fetchers[1]);
	/* Outcomes already reported become durable and are ended or handed on. */
	writer_destroy(q->recorder);
	q->recorder = NULL;
	if (q->started) {
		pthread_mutex_lock(&q->job_lock);
		q->job_stop = true;
		pthread_cond_broadcast(&q->job_ready);
		pthread_mutex_unlock(&q->job_lock);
		pthread_join(q->handoff_thread, NULL);
	}
	/* Deliveries never started: their messages go back at once for another instance. */
	pthread_mutex_lock(&q->lock);
	struct work *w = q->inbox_head;
	q->inbox_head = q->inbox_tail = NULL;
	q->queued = 0;
	pthread_mutex_unlock(&q->lock);
	size_t handed_back = 0;
	while (w != NULL) {
		struct work *next = w->inbox_next;
		atomic_store(&w->abandoned, true);
		handed_back++;
		/* Skipped ones were released by their records, flushed above. Count first: the
		 * last release frees w. */
		size_t left = 0;
		for (size_t i = w->next; i < w->fed; i++)
			left += !w->side[i].skip;
		for (size_t i = 0; i < left; i++)
			release(w);
		w = next;
	}
	if (cur != NULL) {
		handed_back++;
		for (size_t i = 0; i < unfed + 1; i++) /* and the feeder's hold */
			release(cur);
	}
	if (handed_back > 0)
		log_info("handed %zu unfinished work message(s) back to JetStream", handed_back);
	if (q->nheld > 0)
		log_warn("%zu work message(s) still held at exit; JetStream redelivers them after "
		         "%d s",
		         q->nheld, JSQ_ACK_WAIT_MS / 1000);
	if (q->fanout_sub != NULL)
		natsSubscription_Destroy(q->fanout_sub);
	if (q->retry_sub != NULL)
		natsSubscription_Destroy(q->retry_sub);
	jsCtx_Destroy(q->js);
	pthread_mutex_destroy(&q->lock);
	pthread_mutex_destroy(&q->job_lock);
	pthread_cond_destroy(&q->room);
	pthread_cond_destroy(&q->job_ready);
	pthread_cond_destroy(&q->job_room);
	free(q->jobs);
	free(q);
}

void jsq_stats(struct jsq *q, struct jsq_stats *out)
{
	pthread_mutex_lock(&q->lock);
	out->queued = q->queued;
	out->works = q->nheld;
	pthread_mutex_unlock(&q->lock);
}
