/* jsqueue.c -- the durable delivery queue on NATS JetStream (see jsqueue.h for the design).
 *
 * Threads and what each owns:
 *   fan-out fetcher  pulls work items one at a time while the inbox holds less than an item,
 *                    counts each item in its event, publishes the next item, reads the targets
 *                    (and, for an item taken again, what the store recorded) and queues the
 *                    deliveries; every third of ACK_WAIT it tells JetStream that the messages
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
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "prefault.h"
#include "url.h"
#include "retry_policy.h"
#include "svc_metrics.h"
#include "timeutil.h"
#include "writer.h"

#define SUBJECT_FANOUT       "webhooks.work.fanout"
#define SUBJECT_RETRY        "webhooks.work.retry"
#define CONSUMER_FANOUT      "webhooks-fanout"
#define CONSUMER_RETRY       JSQ_CONSUMER_RETRY
#define DEDUP_WINDOW_MS      (60 * 60 * 1000) /* a republished item or retry within it is dropped */
#define FETCH_WAIT_MS        500  /* a fetch long-polls this long; bounds how fast fetchers stop */
#define SETUP_RETRY_MS       1000 /* JetStream unreachable: try the setup again after this */
#define STORE_RETRY_MS       1000 /* the store failed: the message comes back after this */
#define PUBLISH_WAIT_MS      1500 /* JetStream's acknowledgement of a publish */
#define FIRST_ITEM_TRIES     2    /* a first item's publish is sent again once on a timeout */
#define MAX_NAK_DELAY_MS     (30LL * 24 * 3600 * 1000) /* no message is held back longer */
#define MAX_ITEMS            (1LL << 31)               /* items per event, beyond any store */
#define REREAD_AFTER_MS      200 /* a chunk fed later than this after its read is read again */
#define RECORDER_BATCH       512
#define ACK_WAIT_CHECK_MS    10000 /* the consumers' deadline is read this often (check_ack_wait) */
#define REFUSED_DELAY_MAX_MS 30000 /* see on_recorded */
#define HANDOFF_CAPACITY     4096
#define RETRY_INBOX_FACTOR   2 /* the retry fetcher stops at this many items' worth queued */

/* What the queue keeps of each delivery besides the delivery itself. */
struct side {
	int64_t retry_delay_ms; /* the delay chosen for its next attempt */
	bool skip;              /* its webhook was deleted before it was sent: not handed out */
};

/* One JetStream message being worked on, with its deliveries. */
struct work {
	natsMsg *msg;
	struct jsq *q;
	_Atomic int pending;          /* deliveries not yet ended, + 1 while being built or fed */
	_Atomic bool abandoned;       /* hand it back at once (nak) instead of acking */
	bool is_retry;                /* a retry message (one delivery), else a work item */
	_Atomic int64_t nak_delay_ms; /* naked with this delay: a retry due later, or a failure */
	size_t n;                     /* deliveries to send: d[0..n); hand-offs sit after them */
	size_t fed;                   /* d[0..fed) were put in the inbox (inbox lock) */
	size_t next;                  /* the next to hand out (inbox lock) */
	bool in_inbox;
	struct work *inbox_next;
	struct work *unlinked_next;    /* jsq_take's own list of what it unlinked (dispatcher) */
	struct work *prev, *next_held; /* in the list of held messages */
	int64_t read_ms;               /* when its webhooks were last read (monotonic) */
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
	char last[ID_LEN + 1];
	int64_t k;                           /* this item */
	bool more;                           /* an item follows, its range (end, last] */
	char end[ID_LEN + 1];                /* the greatest webhook id of its range */
	unsigned char members[][ID_BIN_LEN]; /* its count's members, kept with it */
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
	size_t queued; /* deliveries in the inbox */
	/* The most that a fetcher waiting in wait_for_room needs queued to go below (0: none
	 * waits): jsq_take broadcasts room only when it takes the inbox below it, rather than on
	 * every take (each broadcast woke every thread waiting on room to go back to sleep). */
	size_t room_need;
	struct work *held; /* every message taken and not finished */
	size_t nheld;
	bool ready;         /* stream and consumers exist and are subscribed */
	size_t outstanding; /* taken by the dispatcher, not reported (dispatcher thread) */

	_Atomic bool starved; /* jsq_take was held back by a full recorder */
	/* Held messages are renewed this often (ms): a third of the shorter of ACK_WAIT and the
	 * consumers' deadline as last read (check_ack_wait; keeper only, seen_ack_ms too). */
	_Atomic int64_t renew_ms;
	int64_t seen_ack_ms;

	pthread_mutex_t job_lock;
	pthread_cond_t job_ready, job_room;
	struct ring {
		struct job *jobs; /* HANDOFF_CAPACITY of them */
		size_t head, count;
	} firsts, others; /* first items go before everything else: a trigger waits on them */
	bool job_stop;

	_Atomic bool stopping;
	bool started;
	struct fetcher *fetchers[2]; /* fan-out, retry */
	pthread_t fanout_thread, retry_thread, handoff_thread, keeper_thread;
	bool running[3]; /* the fan-out fetcher, the retry fetcher, the keeper */
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
	int64_t delay = atomic_load(&w->nak_delay_ms);
	if (delay > MAX_NAK_DELAY_MS)
		delay = MAX_NAK_DELAY_MS;
	if (delay > 0)
		s = natsMsg_NakWithDelay(w->msg, delay, NULL);
	else if (atomic_load(&w->abandoned))
		s = natsMsg_Nak(w->msg, NULL);
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

/* One delivery of w (or a hold on it) is over. */
static void release(struct work *w)
{
	if (atomic_fetch_sub(&w->pending, 1) == 1)
		finish(w);
}

/* Hand w back instead of acking it, redelivered after delay_ms: 0 at shutdown (another
 * instance takes it at once), a pause after a failure, so that it does not spin. */
static void give_back(struct work *w, int64_t delay_ms)
{
	atomic_store(&w->nak_delay_ms, delay_ms);
	atomic_store(&w->abandoned, true);
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
		/* The inbox holds w until it unlinks it: its skipped deliveries are released by
		 * their records, which may come before jsq_take passes over them. */
		atomic_fetch_add(&w->pending, 1);
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
	if (s == NATS_TIMEOUT)
		return -ETIMEDOUT; /* it may have been stored: only the answer is missing */
	if (s == NATS_NO_RESPONDERS || jerr == JSStreamNotFoundErr) {
		/* The stream is gone (a new nats-server data directory): set it up again. */
		pthread_mutex_lock(&q->lock);
		q->ready = false;
		pthread_mutex_unlock(&q->lock);
	}
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
	/* A timeout leaves the outcome unknown: the same message id again either stores it or
	 * is answered as a duplicate of the stored one, which settles it either way. */
	for (int tries = 0; rc == 0 || (rc == -ETIMEDOUT && tries < FIRST_ITEM_TRIES); tries++) {
		rc = publish_item(q, j->ev.id, j->ev.ip, "", j->last_id, 0, err, sizeof(err));
		if (rc == 0)
			break;
	}
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
	if (publish_item(q, c->event_id, c->ip, c->end, c->last, c->k + 1, err, sizeof(err)) != 0) {
		/* This item comes back, is counted as a no-op and publishes the next again. */
		log_warn("event %s item %lld: publishing the next item failed (%s)", c->event_id,
		         (long long)c->k, err);
		give_back(c->w, STORE_RETRY_MS);
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
		give_back(d->work, STORE_RETRY_MS);
	}
	release(d->work);
}

long jsq_replay(struct jsq *q, const struct store_event *ev, const struct store_failed *failed,
                size_t n, char *err, size_t errlen)
{
	pthread_mutex_lock(&q->lock);
	bool ready = q->ready;
	pthread_mutex_unlock(&q->lock);
	if (!ready) {
		snprintf(err, errlen, "JetStream is not available");
		return -EAGAIN;
	}
	int64_t now = time_now_ms();
	for (size_t i = 0; i < n; i++) {
		const struct store_failed *f = &failed[i];
		json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i}", "delivery", f->id,
		                         "event", ev->id, "webhook", f->webhook_id, "ip", ev->ip,
		                         "due", (json_int_t)now, "replay", f->attempts);
		char msg_id[ID_LEN + 32];
		snprintf(msg_id, sizeof(msg_id), "x.%s.%d", f->id, f->attempts);
		int rc =
		    body != NULL ? publish(q, SUBJECT_RETRY, body, msg_id, err, errlen) : -ENOMEM;
		json_decref(body);
		if (rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		if (rc != 0)
			return rc;
	}
	return (long)n;
}

static void *handoff_main(void *arg)
{
	struct jsq *q = arg;
	for (;;) {
		pthread_mutex_lock(&q->job_lock);
		while (q->firsts.count == 0 && q->others.count == 0 && !q->job_stop)
			pthread_cond_wait(&q->job_ready, &q->job_lock);
		struct ring *r = q->firsts.count > 0 ? &q->firsts : &q->others;
		if (r->count == 0) {
			pthread_mutex_unlock(&q->job_lock);
			return NULL;
		}
		struct job j = r->jobs[r->head];
		r->head = (r->head + 1) % HANDOFF_CAPACITY;
		r->count--;
		pthread_cond_broadcast(&q->job_room);
		pthread_mutex_unlock(&q->job_lock);
		if (j.kind == JOB_FIRST_ITEM)
			run_first_item(q, &j);
		else if (j.kind == JOB_NEXT_ITEM)
			run_next_item(q, &j);
		else
			run_retry_handoff(q, &j);
	}
}

/* Queue a job; blocks while its ring is full, which pushes back on whoever hands work on,
 * until the queue is stopping: then returns -ECANCELED and the caller gives its work back. */
static int job_push(struct jsq *q, const struct job *j)
{
	struct ring *r = j->kind == JOB_FIRST_ITEM ? &q->firsts : &q->others;
	pthread_mutex_lock(&q->job_lock);
	while (r->count == HANDOFF_CAPACITY && !atomic_load(&q->stopping))
		pthread_cond_wait(&q->job_room, &q->job_lock);
	if (r->count == HANDOFF_CAPACITY) {
		pthread_mutex_unlock(&q->job_lock);
		return -ECANCELED;
	}
	r->jobs[(r->head + r->count) % HANDOFF_CAPACITY] = *j;
	r->count++;
	pthread_cond_signal(&q->job_ready);
	pthread_mutex_unlock(&q->job_lock);
	return 0;
}

static int hand_on_retry(struct jsq *q, struct delivery *d, int64_t delay_ms)
{
	struct job j = {.kind = JOB_RETRY, .d = d, .delay_ms = delay_ms};
	return job_push(q, &j);
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
	if (job_push(q, &j) != 0) {
		mark_empty(q, ev->id);
		done(ctx, ev, -ESHUTDOWN, "the service is stopping");
	}
}

/* --------------------------------------------------------------------------------------------
 * Records */

/* The recorder has room again: a dispatcher that jsq_take held back may take work now. */
static void wake_if_starved(struct jsq *q)
{
	if (atomic_load(&q->starved) && atomic_exchange(&q->starved, false))
		q->wake(q->wake_ctx);
}

static void on_recorded(void *ctx, const struct store_op *op, int batch_rc, const char *err)
{
	if (op->kind == STORE_OP_EVENT_ITEM) {
		struct chain *c = ctx;
		int rc = batch_rc != 0 ? batch_rc : op->result;
		struct jsq *q = c->w->q;
		if (rc == 0 && c->more) {
			struct job j = {.kind = JOB_NEXT_ITEM, .chain = c};
			if (job_push(q, &j) == 0)
				return;
			give_back(c->w, 0); /* stopping */
		} else if (rc == -ENOENT) {
			log_warn("event %s item %lld: no such event", c->event_id, (long long)c->k);
		} else if (rc != 0) {
			give_back(c->w, STORE_RETRY_MS); /* counted when it comes back */
		}
		release(c->w);
		free(c);
		wake_if_starved(q);
		return;
	}
	struct delivery *d = ctx;
	struct work *w = d->work;
	struct jsq *q = w->q;
	bool ended =
	    batch_rc == 0 && op->result == 0 && op->attempt.status != STORE_DELIVERY_PENDING;
	if (ended) {
		progress_note(q->cfg.progress, d->event_id,
		              op->attempt.status == STORE_DELIVERY_SUCCEEDED);
		svc_metrics_delivery_ended(op->attempt.status == STORE_DELIVERY_SUCCEEDED);
	}
	int64_t delay = w->side[d->index].retry_delay_ms;
	bool refused = batch_rc == 0 && op->result == -EALREADY;
	if (refused) {
		/* Late enough that the holder that recorded goes first (its nak, its hand-on): the
		 * acknowledgement deadline, but no more than REFUSED_DELAY_MAX_MS, since this nak
		 * of a message shared with that holder may put off its next attempt by as much. */
		int64_t least = q->cfg.ack_wait_ms < REFUSED_DELAY_MAX_MS ? q->cfg.ack_wait_ms
		                                                          : REFUSED_DELAY_MAX_MS;
		if (delay < least)
			delay = least;
		/* Another holder of the same work (after a crash or a stall) recorded this attempt
		 * first, or ended the delivery: this copy was sent twice, which the receiver's
		 * webhook-id dedup absorbs, and its outcome is not recorded. The message is shared
		 * with that holder, so it is not acked from here: the other may still need it (its
		 * nak for the next attempt, or its retry not handed on yet if it died). It goes on
		 * as a pending one below: whoever takes it next reads the delivery first and acks
		 * it if it has ended (a retry handed on again is a no-op under its message id). */
		log_info("delivery %s: attempt %d was already recorded by another holder; this "
		         "copy ends here",
		         d->id, op->attempt.number);
	}
	if (batch_rc != 0) {
		/* Not durable (only when stopping: the recorder retries until then): hand the
		 * message back, and this attempt will be made again. */
		give_back(w, 0);
	} else if (refused || op->attempt.status == STORE_DELIVERY_PENDING) {
		if (w->is_retry) {
			/* A retry message: it comes back itself when the next attempt is due. */
			atomic_store(&w->nak_delay_ms, delay > 0 ? delay : 1);
		} else if (hand_on_retry(q, d, delay) == 0) {
			wake_if_starved(q);
			return;
		} else {
			give_back(w, 0); /* stopping */
		}
	}
	release(w);
	wake_if_starved(q);
}

/* --------------------------------------------------------------------------------------------
 * The dispatcher's side */

size_t jsq_take(struct jsq *q, struct delivery *out, size_t max)
{
	/* Every outcome must find room in the recorder, beside what the fetchers submit (at most
	 * a chunk of unsent records and a count at a time). */
	size_t room = writer_room(q->recorder), keep = q->outstanding + q->cfg.max_in_flight + 16;
	room = room > keep ? room - keep : 0;
	if (max > room) {
		max = room;
		atomic_store(&q->starved, true); /* the recorder wakes us when it has room */
	}
	size_t n = 0;
	struct work *unlinked = NULL;
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
			w->in_inbox = false;
			w->inbox_next = NULL;
			/* A list of its own: once unlocked, a fetcher may link w again at once. */
			w->unlinked_next = unlinked;
			unlinked = w;
		}
	}
	q->queued -= n;
	if (q->room_need != 0 && q->queued < q->room_need) {
		q->room_need = 0;
		pthread_cond_broadcast(&q->room);
	}
	pthread_mutex_unlock(&q->lock);
	/* The inbox's holds, dropped outside the lock: finishing a work takes it. */
	while (unlinked != NULL) {
		struct work *w = unlinked;
		unlinked = w->unlinked_next;
		release(w);
	}
	q->outstanding += n;
	return n;
}

static void fill_attempt(struct store_attempt *a, const struct delivery *d,
                         const struct delivery_outcome *o)
{
	memcpy(a->delivery_id, d->id, sizeof(a->delivery_id));
	memcpy(a->event_id, d->event_id, sizeof(a->event_id));
	memcpy(a->webhook_id, d->webhook_id, sizeof(a->webhook_id));
	url_redact(d->target_url, a->target_url, sizeof(a->target_url)); /* no credentials */
	a->number = d->attempt;
	a->at_ms = o->at_ms;
	a->http_status = o->http_status;
	memcpy(a->error, o->error, sizeof(a->error));
	a->duration_ms = o->duration_ms;
	a->reopens = d->reopens;
}

/* Record op for the delivery orig (inside its work); on_recorded carries on from there. */
static void record(struct jsq *q, struct delivery *orig, const struct store_op *op)
{
	if (q->cfg.no_record) {
		on_recorded(orig, op, 0, "");
		return;
	}
	if (writer_submit(q->recorder, op, orig) != 0) {
		give_back(orig->work, 0); /* stopping: made again by whoever takes it */
		release(orig->work);
	}
}

/* End the delivery d (inside its work) without sending it: its webhook was deleted (reason
 * NULL) or is disabled for reason. */
static void record_not_sent(struct jsq *q, struct delivery *d, const char *reason)
{
	struct store_op op = {.kind = STORE_OP_ATTEMPT};
	struct store_attempt *a = &op.attempt;
	memcpy(a->delivery_id, d->id, sizeof(a->delivery_id));
	memcpy(a->event_id, d->event_id, sizeof(a->event_id));
	memcpy(a->webhook_id, d->webhook_id, sizeof(a->webhook_id));
	a->number = d->attempt;
	a->at_ms = time_now_ms();
	if (reason == NULL)
		snprintf(a->error, sizeof(a->error), "not sent: the webhook was deleted");
	else
		snprintf(a->error, sizeof(a->error), "not sent: the webhook is disabled (%s)",
		         reason);
	a->status = STORE_DELIVERY_FAILED;
	a->not_sent = true;
	a->reopens = d->reopens;
	record(q, d, &op);
}

void jsq_report(struct jsq *q, const struct delivery *d, const struct delivery_outcome *o)
{
	struct work *w = d->work;
	struct delivery *orig = &w->d[d->index];
	q->outstanding--;
	struct store_op op = {.kind = STORE_OP_ATTEMPT};
	fill_attempt(&op.attempt, d, o);
	op.attempt.disable_after_ms = q->cfg.disable_after_ms;
	/* Retries count from the start of the series (a replay starts a new one). The delay is
	 * kept whatever the outcome: a copy whose record is refused (another holder recorded
	 * first) uses it too. */
	int nth = d->attempt - d->base;
	w->side[d->index].retry_delay_ms =
	    retry_policy_delay(&q->policy, nth, o->http_status, o->retry_after_ms);
	if (o->http_status >= 200 && o->http_status <= 299) {
		op.attempt.status = STORE_DELIVERY_SUCCEEDED;
	} else if (o->http_status == 410) {
		/* Gone: the receiver asks us to stop (Standard Webhooks). No retry, and the
		 * webhook is disabled with the record. */
		op.attempt.status = STORE_DELIVERY_FAILED;
		op.attempt.gone = true;
	} else if (retry_policy_again(&q->policy, nth)) {
		op.attempt.status = STORE_DELIVERY_PENDING;
	} else {
		op.attempt.status = STORE_DELIVERY_FAILED;
	}
	record(q, orig, &op);
}

void jsq_abandon(struct jsq *q, const struct delivery *d)
{
	q->outstanding--;
	give_back(d->work, 0);
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
	cc.AckWait = q->cfg.ack_wait_ms * 1000000;
	cc.MaxDeliver = -1;
	cc.MaxAckPending = max_ack_pending;
	jsErrCode jerr = 0;
	jsConsumerInfo *ci = NULL;
	natsStatus s = js_AddConsumer(&ci, q->js, JSQ_STREAM, &cc, NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	if (jerr == JSConsumerNameExistErr) {
		/* Made by an older version, with other settings: bring it up to these. */
		ci = NULL;
		s = js_UpdateConsumer(&ci, q->js, JSQ_STREAM, &cc, NULL, &jerr);
		jsConsumerInfo_Destroy(ci);
	}
	if (s == NATS_OK)
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
	int64_t left = deadline_ms - time_mono_ms();
	if (left <= 0)
		return;
	struct timespec ts = time_deadline(CLOCK_MONOTONIC, left);
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

/* Wait until the inbox holds fewer than limit deliveries; false when stopping. */
static bool wait_for_room(struct jsq *q, size_t limit)
{
	pthread_mutex_lock(&q->lock);
	while (q->queued >= limit && !atomic_load(&q->stopping)) {
		if (limit > q->room_need)
			q->room_need = limit; /* jsq_take wakes us when queued goes below it */
		wait_room(q, time_mono_ms() + FETCH_WAIT_MS);
	}
	pthread_mutex_unlock(&q->lock);
	return !atomic_load(&q->stopping);
}

/* Take one message from sub, waiting up to FETCH_WAIT_MS; NULL when none came (*failed when
 * that was an error rather than a quiet wait). */
static natsMsg *fetch_one(natsSubscription *sub, bool *failed)
{
	natsMsgList list = {0};
	jsErrCode jerr = 0;
	natsStatus s = natsSubscription_Fetch(&list, sub, 1, FETCH_WAIT_MS, &jerr);
	*failed = s != NATS_OK && s != NATS_TIMEOUT;
	if (s != NATS_OK || list.Count == 0) {
		if (*failed)
			log_debug("fetch: %s (%d)", natsStatus_GetText(s), (int)jerr);
		natsMsgList_Destroy(&list);
		return NULL;
	}
	natsMsg *m = list.Msgs[0];
	list.Msgs[0] = NULL;
	natsMsgList_Destroy(&list);
	return m;
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

/* Drop a message for good (Term): it can never be worked on. */
static void drop(natsMsg *m, json_t *o)
{
	json_decref(o);
	(void)natsMsg_Term(m, NULL);
	natsMsg_Destroy(m);
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
	if (delay_ms > MAX_NAK_DELAY_MS)
		delay_ms = MAX_NAK_DELAY_MS;
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
	bool gone[JSQ_ITEM_SIZE]; /* a member's webhook was deleted (an item taken again) */
	struct store_item_members members; /* an item's, as its count kept them */
};

/* The secrets a delivery is signed with now: the webhook's, and the one rotated out while its
 * grace lasts. Read with the webhook, so a retry signs with the secrets current when sent. */
static void copy_secrets(struct delivery *d, const struct store_webhook *h)
{
	memcpy(d->secret, h->secret, sizeof(d->secret));
	if (h->old_secret[0] != '\0' && h->old_until_ms > time_now_ms())
		memcpy(d->old_secret, h->old_secret, sizeof(d->old_secret));
	else
		d->old_secret[0] = '\0';
}

/* A webhook stored by an older version has no secret: give it one before its first delivery
 * (only where it still has none, so that instances doing this at once agree), and read what
 * was kept. Returns 0, or a store error (the caller tries again later). */
static int give_secrets(struct jsq *q, struct store_webhook *hooks, size_t n, char *err,
                        size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (hooks[i].secret[0] != '\0')
			continue;
		int rc = store_give_secret(q->store, &hooks[i], err, errlen);
		if (rc != 0 && rc != -ENOENT)
			return rc;
		if (rc == 0)
			log_info(
			    "webhook %s (stored by an older version) was given its signing secret",
			    hooks[i].id);
	}
	return 0;
}

/* A message fetched at fetched (ms) is renewed by the keeper once work_new holds it, a third
 * of the deadline later at most: when the store reads before that took a third already, renew
 * it now, so that a slow store does not send it to another instance meanwhile. A renewal that
 * is lost leaves the message to go to another instance, as without it. */
static void renew_if_slow(struct jsq *q, natsMsg *m, int64_t fetched)
{
	if (time_mono_ms() - fetched >= atomic_load(&q->renew_ms))
		(void)natsMsg_InProgress(m, NULL);
}

/* A work item counted before (taken again after a crash): read its members as they are now into
 * f->page[0..mem->n), in the members' order, walking the store's ids from after. f->gone[i]
 * says that member i was deleted since (f->page[i] then holds only its id). Returns 0, or a
 * store error with err filled. */
static int read_members(struct fetcher *f, const char *after, const struct store_item_members *mem,
                        char *err, size_t errlen)
{
	struct jsq *q = f->q;
	size_t n = mem->n;
	if (n == 0)
		return 0;
	struct store_webhook *rows = malloc(n * sizeof(*rows));
	if (rows == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	char cursor[ID_LEN + 1], want[ID_LEN + 1];
	snprintf(cursor, sizeof(cursor), "%s", after);
	id_unpack(mem->ids[0], want);
	size_t mi = 0;
	int rc = 0;
	while (mi < n) {
		size_t got = 0;
		rc = store_list(q->store, cursor, JSQ_ITEM_SIZE, f->page, &got, err, errlen);
		if (rc != 0)
			break;
		/* The range also holds webhooks that are not members (disabled when the item was
		 * counted): passed over. A member missing from it was deleted. */
		for (size_t j = 0; mi < n && (j < got || got < JSQ_ITEM_SIZE);) {
			int c = j < got ? strcmp(f->page[j].id, want) : 1;
			if (c < 0) {
				j++;
				continue;
			}
			f->gone[mi] = c > 0;
			if (c == 0)
				rows[mi] = f->page[j++];
			else
				rows[mi] = (struct store_webhook){0};
			memcpy(rows[mi].id, want, sizeof(want));
			if (++mi < n)
				id_unpack(mem->ids[mi], want);
		}
		if (mi == n || got == 0)
			break;
		memcpy(cursor, f->page[got - 1].id, sizeof(cursor));
	}
	for (size_t i = 0; rc == 0 && i < mi; i++) {
		if (!f->gone[i])
			rc = give_secrets(q, &rows[i], 1, err, errlen);
	}
	if (rc == 0)
		memcpy(f->page, rows, n * sizeof(*rows));
	free(rows);
	return rc;
}

static void take_item(struct fetcher *f, natsMsg *m)
{
	int64_t fetched = time_mono_ms();
	struct jsq *q = f->q;
	json_t *o = parse_msg(m, "work item");
	if (o == NULL)
		return;
	const char *event_id = str_member(o, "event", true);
	const char *after = str_member(o, "after", false), *last = str_member(o, "last", true);
	json_t *jk = json_object_get(o, "item");
	int64_t k = json_is_integer(jk) ? json_integer_value(jk) : -1;
	if (event_id == NULL || after == NULL || last == NULL || k < 0 || k >= MAX_ITEMS ||
	    (after[0] != '\0' && !id_valid(after))) {
		log_error("dropping a malformed work item");
		drop(m, o);
		return;
	}
	/* The event as stored, not as the message says: a message on the subject proves
	 * nothing, and the address in the bodies comes from the stored event. */
	char err[STORE_ERR_LEN];
	struct store_event ev;
	int rc = store_get_event_head(q->store, event_id, &ev, err, sizeof(err));
	if (rc == -ENOENT || (rc == 0 && k == 0 && ev.done && ev.items > 0 && ev.fanned == 0)) {
		/* No such event, or one refused with a 503 (marked as having no deliveries) whose
		 * first item JetStream stored after all. */
		log_warn("dropping work item %lld of event %s: %s", (long long)k, event_id,
		         rc == -ENOENT ? "no such event" : "the event was refused");
		drop(m, o);
		return;
	}
	if (rc != 0) {
		log_warn("event %s item %lld: reading the event failed (%s); taken again in %d ms",
		         event_id, (long long)k, err, STORE_RETRY_MS);
		goto later;
	}
	/* Counted before a crash: its members were kept with the count, and it delivers to
	 * exactly those, so that what was counted is what gets recorded. */
	struct store_item_members *mem = &f->members;
	rc = store_item_members(q->store, event_id, k, mem, err, sizeof(err));
	if (rc == 0 && mem->found && mem->n > JSQ_ITEM_SIZE) {
		snprintf(err, sizeof(err), "%zu members, more than this version's %d", mem->n,
		         JSQ_ITEM_SIZE);
		rc = -EIO;
	}
	if (rc != 0) {
		log_warn("event %s item %lld: reading the item failed (%s); taken again in %d ms",
		         event_id, (long long)k, err, STORE_RETRY_MS);
		goto later;
	}
	bool again = mem->found;
	const char *ip = ev.ip;
	size_t n = 0;
	bool more;
	int64_t read_ms = time_mono_ms();
	if (again) {
		rc = read_members(f, after, mem, err, sizeof(err));
		n = mem->n;
		more = !mem->last;
	} else {
		size_t got = 0;
		rc = store_list(q->store, after, JSQ_ITEM_SIZE, f->page, &got, err, sizeof(err));
		if (rc == 0)
			rc = give_secrets(q, f->page, got, err, sizeof(err));
		/* The targets are the webhooks that existed at the trigger: ids up to last. */
		while (n < got && strcmp(f->page[n].id, last) <= 0)
			f->gone[n++] = false;
		more = n == JSQ_ITEM_SIZE && strcmp(f->page[n - 1].id, last) < 0;
	}
	if (rc != 0) {
		log_warn("event %s item %lld: reading targets failed (%s); taken again in %d ms",
		         event_id, (long long)k, err, STORE_RETRY_MS);
		goto later;
	}

	/* Read what was recorded whether or not JetStream says the message is new: a copy
	 * republished after its dedup window, or sent by a server that lost its consumer state,
	 * looks new too. */
	for (size_t i = 0; i < n; i++)
		id_derive(f->ids[i], event_id, f->page[i].id);
	if (store_delivery_states(q->store, event_id, (const char(*)[ID_LEN + 1]) f->ids, n,
	                          f->states, err, sizeof(err)) != 0) {
		log_warn("event %s item %lld: reading recorded deliveries failed (%s)", event_id,
		         (long long)k, err);
		goto later;
	}
	renew_if_slow(q, m, fetched);
	struct work *w = work_new(q, m, n);
	/* The chain, with room for the members its count keeps. */
	struct chain *c = calloc(1, sizeof(*c) + n * sizeof(c->members[0]));
	if (w == NULL || c == NULL) {
		log_error("out of memory: event %s item %lld taken again later", event_id,
		          (long long)k);
		free(c);
		if (w == NULL)
			goto later;
		give_back(w, STORE_RETRY_MS); /* w holds the message now */
		release(w);
		json_decref(o);
		return;
	}
	w->read_ms = read_ms;
	/* Deliveries to send fill the array from the front, those to end otherwise from the
	 * back: retries to hand on, and deliveries not sent. */
	size_t back = n, members = 0, unsent = 0;
	for (size_t i = 0; i < n; i++) {
		const struct store_delivery_state *st = &f->states[i];
		bool disabled = f->page[i].disabled_reason[0] != '\0';
		if (!again && !st->found && disabled)
			continue; /* no delivery for a disabled webhook, and not a member */
		if (!again && !id_pack(f->page[i].id, c->members[members])) {
			log_error("event %s item %lld: webhook id '%s' is not a UUID", event_id,
			          (long long)k, f->page[i].id);
			continue;
		}
		members++;
		if (st->found && st->status != STORE_DELIVERY_PENDING)
			continue; /* ended before a crash */
		bool hand_on = st->found && st->attempts > 0;
		/* Counted, then deleted or disabled before it was sent. */
		bool not_sent = !st->found && (f->gone[i] || disabled);
		size_t at = hand_on || not_sent ? --back : w->n++;
		struct delivery *d = &w->d[at];
		memcpy(d->id, f->ids[i], sizeof(d->id));
		memcpy(d->event_id, event_id, ID_LEN + 1);
		memcpy(d->webhook_id, f->page[i].id, sizeof(d->webhook_id));
		snprintf(d->ip, sizeof(d->ip), "%s", ip);
		memcpy(d->target_url, f->page[i].target_url, sizeof(d->target_url));
		copy_secrets(d, &f->page[i]);
		d->attempt = hand_on ? st->attempts + 1 : 1;
		d->work = w;
		d->index = at;
		if (not_sent) {
			atomic_fetch_add(&w->pending, 1);
			unsent++;
			record_not_sent(q, d, f->gone[i] ? NULL : f->page[i].disabled_reason);
		} else if (hand_on) {
			/* It failed before a crash, and its retry may not have been handed on
			 * (the retry's message id makes a second hand-off a no-op). */
			atomic_fetch_add(&w->pending, 1);
			if (hand_on_retry(
			        q, d, retry_policy_delay(&f->policy, st->attempts, 0, -1)) != 0) {
				give_back(w, 0);
				release(w);
			}
		}
	}
	size_t handed = n - back - unsent;
	/* Count this item, and only once that is durable publish the next one (chain), so that
	 * items are counted in order and the last one's count makes the event's total final.
	 * Sending does not wait for either; the work is not acked before both are done. */
	atomic_fetch_add(&w->pending, 1); /* the chain's hold */
	c->w = w;
	c->k = k;
	c->more = more;
	memcpy(c->event_id, event_id, sizeof(c->event_id));
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
	if (again)
		snprintf(c->end, sizeof(c->end), "%s", mem->end);
	else
		snprintf(c->end, sizeof(c->end), "%s", n > 0 ? f->page[n - 1].id : "");
	memcpy(c->last, last, sizeof(c->last));
	if (again && n > 0)
		memcpy(c->members, mem->ids, n * sizeof(c->members[0]));
	struct store_op op;
	item_op(&op, event_id, k, (int64_t)members, !more);
	memcpy(op.item.end, c->end, sizeof(op.item.end));
	op.item.members = (const unsigned char(*)[ID_BIN_LEN])c->members;
	if (writer_submit(q->recorder, &op, c) != 0) {
		atomic_store(&w->abandoned, true);
		release(w);
		free(c);
	}
	log_debug("event %s item %lld taken: %zu deliveries%s", event_id, (long long)k, n,
	          again ? " (again)" : "");
	if (again || handed > 0)
		log_info("event %s item %lld taken again: %zu retries handed on, %zu ended unsent, "
		         "%zu to send",
		         event_id, (long long)k, handed, unsent, w->n);
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
	int64_t fetched = time_mono_ms();
	struct jsq *q = f->q;
	json_t *o = parse_msg(m, "retry");
	if (o == NULL)
		return;
	const char *id = str_member(o, "delivery", true), *event_id = str_member(o, "event", true);
	const char *webhook_id = str_member(o, "webhook", true), *ip = str_member(o, "ip", false);
	json_t *jdue = json_object_get(o, "due"), *jreplay = json_object_get(o, "replay");
	char derived[ID_LEN + 1] = "";
	unsigned char bin[sizeof(struct in6_addr)];
	if (event_id != NULL && webhook_id != NULL)
		id_derive(derived, event_id, webhook_id);
	/* The delivery id must be the one its event and webhook give, and the address a real
	 * one (it goes into the body): a forged message cannot name anything else. */
	if (id == NULL || strcmp(id, derived) != 0 || ip == NULL || strlen(ip) >= STORE_IP_LEN ||
	    (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1) ||
	    !json_is_integer(jdue) ||
	    (jreplay != NULL && (!json_is_integer(jreplay) || json_integer_value(jreplay) < 0 ||
	                         json_integer_value(jreplay) > INT32_MAX))) {
		log_error("dropping a malformed retry message");
		drop(m, o);
		return;
	}
	/* Not due yet (first seen, or back early): the server holds it until it is. */
	int64_t due = json_integer_value(jdue), now = time_now_ms();
	if (due > now) {
		json_decref(o);
		nak_later(m, due - now < MAX_NAK_DELAY_MS ? due - now : MAX_NAK_DELAY_MS);
		return;
	}
	char err[STORE_ERR_LEN];
	struct store_delivery_state st;
	if (store_delivery_states(q->store, event_id, (const char(*)[ID_LEN + 1]) id, 1, &st, err,
	                          sizeof(err)) != 0) {
		log_warn("retry of delivery %s postponed: %s", id, err);
		goto later;
	}
	/* A replay (of a delivery that had failed after `replay` attempts) starts a new series
	 * of attempts while the delivery is still as it was; once started, it goes on like any
	 * retry. */
	int base = jreplay != NULL ? (int)json_integer_value(jreplay) : 0;
	bool reopens = jreplay != NULL && st.found && st.status == STORE_DELIVERY_FAILED &&
	               st.attempts == base;
	/* A retry or replay message is published only after an attempt of its delivery was
	 * recorded: with no record, the delivery's event was pruned meanwhile, and nothing of it
	 * is sent again. */
	if (!st.found || (st.status != STORE_DELIVERY_PENDING && !reopens)) {
		if (!st.found)
			log_info(
			    "retry of delivery %s dropped: nothing of it is recorded (its event "
			    "was pruned)",
			    id);
		(void)natsMsg_Ack(m, NULL); /* pruned, or it ended before a crash */
		natsMsg_Destroy(m);
		json_decref(o);
		return;
	}
	/* The webhook is read again: a retry follows an update and stops on a deletion. */
	int rc = store_get(q->store, webhook_id, &f->page[0], err, sizeof(err));
	if (rc == 0)
		rc = give_secrets(q, f->page, 1, err, sizeof(err));
	if (rc != 0 && rc != -ENOENT) {
		log_warn("retry of delivery %s postponed: %s", id, err);
		goto later;
	}
	renew_if_slow(q, m, fetched);
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
	copy_secrets(d, &f->page[0]);
	d->attempt = st.attempts + 1;
	d->base = base;
	d->reopens = reopens;
	d->work = w;
	json_decref(o);
	if (rc == -ENOENT || f->page[0].disabled_reason[0] != '\0') {
		atomic_fetch_add(&w->pending, 1);
		record_not_sent(q, d, rc == -ENOENT ? NULL : f->page[0].disabled_reason);
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
	if (time_mono_ms() - w->read_ms < REREAD_AFTER_MS) {
		/* Read a moment ago: a fast fan-out does not read every webhook twice. */
		inbox_add(w, to);
		goto fed;
	}
	w->read_ms = time_mono_ms();
	const char *end = w->d[to - 1].webhook_id;
	char after[ID_LEN + 1], err[STORE_ERR_LEN];
	memcpy(after, w->d[from - 1].webhook_id, sizeof(after));
	/* Walk the store's ids from the last one fed up to the chunk's last, page by page: the
	 * range may also hold webhooks that are not in the chunk (ended before a crash, or
	 * handed on as retries), and what is missing from it was deleted. */
	size_t i = from;
	bool failed = false;
	while (i < to) {
		size_t got = 0;
		if (store_list(q->store, after, JSQ_ITEM_SIZE, f->page, &got, err, sizeof(err)) !=
		        0 ||
		    give_secrets(q, f->page, got, err, sizeof(err)) != 0) {
			log_warn(
			    "event %s: reading targets again failed (%s); sending as read before",
			    w->d[from].event_id, err);
			failed = true;
			break;
		}
		size_t j = 0;
		for (; i < to; i++) {
			struct delivery *d = &w->d[i];
			while (j < got && strcmp(f->page[j].id, d->webhook_id) < 0)
				j++;
			if (j == got && got == JSQ_ITEM_SIZE)
				break; /* the page ended before this one: read on */
			bool found = j < got && strcmp(f->page[j].id, d->webhook_id) == 0;
			if (found && f->page[j].disabled_reason[0] == '\0') {
				memcpy(d->target_url, f->page[j].target_url, sizeof(d->target_url));
				copy_secrets(d, &f->page[j]);
			} else {
				w->side[i].skip = true;
				record_not_sent(q, d, found ? f->page[j].disabled_reason : NULL);
			}
		}
		if (got == 0 || strcmp(f->page[got - 1].id, end) >= 0)
			break;
		memcpy(after, f->page[got - 1].id, sizeof(after));
	}
	(void)failed; /* what was not read again is sent as read when the item was taken */
	inbox_add(w, to);
fed:
	if (w->fed == w->n) {
		f->cur = NULL;
		release(w); /* the feeder's hold */
	}
}

/* Wait on the room condition for up to ms, or until stopping. */
static void pause_fetching(struct jsq *q, int64_t ms)
{
	pthread_mutex_lock(&q->lock);
	if (!atomic_load(&q->stopping))
		wait_room(q, time_mono_ms() + ms);
	pthread_mutex_unlock(&q->lock);
}

static void fetch_loop(struct fetcher *f, bool fanout)
{
	struct jsq *q = f->q;
	/* The fan-out fetcher takes another item only once the last one is fed and less than an
	 * item is queued, so that an instance holds few items and the others take the rest of
	 * a big event. */
	size_t limit = fanout ? JSQ_ITEM_SIZE : RETRY_INBOX_FACTOR * JSQ_ITEM_SIZE;
	int failures = 0;
	while (!atomic_load(&q->stopping)) {
		if (!wait_ready(q, fanout))
			continue;
		if (f->cur != NULL) {
			if (wait_for_room(q, f->chunk))
				feed_more(f);
			continue;
		}
		if (!wait_for_room(q, limit))
			break;
		/* While disconnected, a pull request would wait in the library's reconnect buffer
		 * and bring a burst of messages nobody keeps alive once it is sent. */
		if (natsConnection_Status(q->nc) != NATS_CONN_STATUS_CONNECTED) {
			pause_fetching(q, FETCH_WAIT_MS);
			continue;
		}
		bool failed = false;
		natsMsg *m = fetch_one(fanout ? q->fanout_sub : q->retry_sub, &failed);
		if (m != NULL && atomic_load(&q->stopping)) {
			(void)natsMsg_Nak(m, NULL);
			natsMsg_Destroy(m);
		} else if (m != NULL) {
			failures = 0;
			if (fanout)
				take_item(f, m);
			else
				take_retry(f, m);
		} else if (failed) {
			/* The consumer may be gone (a new nats-server data directory): after a few
			 * failures in a row, set everything up again. */
			if (++failures >= 3) {
				log_warn("JetStream: fetching keeps failing; setting the queue up "
				         "again");
				pthread_mutex_lock(&q->lock);
				q->ready = false;
				pthread_mutex_unlock(&q->lock);
				failures = 0;
			}
			pause_fetching(q, FETCH_WAIT_MS);
		}
	}
}

/* The consumers' acknowledgement deadline is set by the instance that set them up last, with
 * its own ACK_WAIT: another one may have set a shorter deadline than ours since. Read it (with
 * a wait short enough not to delay the next renewal much) and renew held messages every third
 * of the shorter of the two, so that our work does not go to another instance while we hold
 * it; say so once when the two differ. */
static void check_ack_wait(struct jsq *q)
{
	jsOptions o;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	int64_t renew = q->cfg.ack_wait_ms / 3;
	jsOptions_Init(&o);
	o.Wait = renew / 2 > 100 ? renew / 2 : 100;
	natsStatus s = js_GetConsumerInfo(&ci, q->js, JSQ_STREAM, CONSUMER_FANOUT, &o, &jerr);
	int64_t server_ms =
	    s == NATS_OK && ci != NULL && ci->Config != NULL ? ci->Config->AckWait / 1000000 : 0;
	jsConsumerInfo_Destroy(ci);
	if (server_ms <= 0)
		return; /* not known now (JetStream away): as it was */
	if (server_ms != q->seen_ack_ms && server_ms != q->cfg.ack_wait_ms)
		log_warn(
		    "the JetStream consumers' acknowledgement deadline is %" PRId64
		    " ms (set by another instance), not this one's ACK_WAIT of %" PRId64
		    " ms: held work is renewed every third of the shorter; give every instance "
		    "the same ACK_WAIT",
		    server_ms, q->cfg.ack_wait_ms);
	q->seen_ack_ms = server_ms;
	if (server_ms < q->cfg.ack_wait_ms)
		renew = server_ms / 3;
	atomic_store(&q->renew_ms, renew);
}

/* The keeper: every third of the acknowledgement deadline, tells JetStream that every message held
 * is still being worked on, whatever the fetchers are blocked on. */
static void *keeper_main(void *arg)
{
	struct jsq *q = arg;
	int64_t checked = time_mono_ms();
	for (;;) {
		int64_t next = time_mono_ms() + atomic_load(&q->renew_ms);
		pthread_mutex_lock(&q->lock);
		/* The condition is broadcast for others too: wait out the whole period. */
		while (!atomic_load(&q->stopping) && time_mono_ms() < next)
			wait_room(q, next);
		pthread_mutex_unlock(&q->lock);
		if (atomic_load(&q->stopping))
			return NULL;
		keep_alive(q);
		if (time_mono_ms() >= checked + ACK_WAIT_CHECK_MS) {
			check_ack_wait(q);
			checked = time_mono_ms();
		}
	}
}

/* On the fan-out fetcher's own thread (its malloc arena): its buffers, and a whole work item's
 * worth of the heap, touched once, so that the first event's first item is not read into fresh
 * pages (about 2 ms of page faults here). The block goes back to the arena, which keeps it (see
 * main's mallopt). */
static void warm_up(struct fetcher *f)
{
	prefault(f, sizeof(*f));
	size_t n = sizeof(struct work) + JSQ_ITEM_SIZE * sizeof(struct delivery);
	void *block = malloc(n);
	if (block != NULL)
		prefault(block, n);
	free(block);
}

static void *fanout_main(void *arg)
{
	warm_up(arg);
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
	if (q->cfg.ack_wait_ms < JSQ_ACK_WAIT_MIN_MS)
		q->cfg.ack_wait_ms = JSQ_ACK_WAIT_MIN_MS;
	if (q->cfg.ack_wait_ms > JSQ_ACK_WAIT_MAX_MS)
		q->cfg.ack_wait_ms = JSQ_ACK_WAIT_MAX_MS;
	atomic_init(&q->renew_ms, q->cfg.ack_wait_ms / 3);
	q->seen_ack_ms = q->cfg.ack_wait_ms;
	retry_policy_init(&q->policy, cfg->max_retries, cfg->schedule);
	/* glibc's init of a mutex, condition or attribute with these attributes only stores
	 * them: it cannot fail. */
	(void)pthread_mutex_init(&q->lock, NULL);
	(void)pthread_mutex_init(&q->job_lock, NULL);
	pthread_condattr_t ca;
	(void)pthread_condattr_init(&ca);
	(void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	(void)pthread_cond_init(&q->room, &ca);
	pthread_condattr_destroy(&ca);
	(void)pthread_cond_init(&q->job_ready, NULL);
	(void)pthread_cond_init(&q->job_room, NULL);
	q->firsts.jobs = calloc(HANDOFF_CAPACITY, sizeof(*q->firsts.jobs));
	q->others.jobs = calloc(HANDOFF_CAPACITY, sizeof(*q->others.jobs));
	if (q->firsts.jobs == NULL || q->others.jobs == NULL)
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
	q->fetchers[0] = ff;
	q->fetchers[1] = rf;
	/* What did start is stopped by jsq_destroy. */
	if (pthread_create(&q->handoff_thread, NULL, handoff_main, q) != 0)
		goto fail;
	q->started = true;
	if (pthread_create(&q->fanout_thread, NULL, fanout_main, ff) != 0)
		goto fail;
	q->running[0] = true;
	if (pthread_create(&q->retry_thread, NULL, retry_main, rf) != 0)
		goto fail;
	q->running[1] = true;
	if (pthread_create(&q->keeper_thread, NULL, keeper_main, q) != 0)
		goto fail;
	q->running[2] = true;
	return 0;
fail:
	snprintf(err, errlen, "cannot start the delivery queue's threads");
	return -EAGAIN;
}

bool jsq_wait_ready(struct jsq *q, int64_t timeout_ms)
{
	int64_t deadline = time_mono_ms() + timeout_ms;
	pthread_mutex_lock(&q->lock);
	while (!q->ready && !atomic_load(&q->stopping) && time_mono_ms() < deadline)
		wait_room(q, deadline);
	bool ready = q->ready;
	pthread_mutex_unlock(&q->lock);
	return ready;
}

void jsq_stop_fetching(struct jsq *q)
{
	if (q == NULL)
		return;
	atomic_store(&q->stopping, true);
	pthread_mutex_lock(&q->lock);
	pthread_cond_broadcast(&q->room);
	pthread_mutex_unlock(&q->lock);
	pthread_mutex_lock(&q->job_lock);
	pthread_cond_broadcast(&q->job_room);
	pthread_mutex_unlock(&q->job_lock);
	/* A fetcher waiting for room in a full recorder (the store down) gives up now. */
	if (q->recorder != NULL)
		writer_cancel_waits(q->recorder);
}

void jsq_wait_fetchers(struct jsq *q)
{
	if (q == NULL)
		return;
	jsq_stop_fetching(q);
	pthread_t threads[3] = {q->fanout_thread, q->retry_thread, q->keeper_thread};
	for (int i = 0; i < 3; i++) {
		if (q->running[i])
			pthread_join(threads[i], NULL);
		q->running[i] = false;
	}
}

void jsq_destroy(struct jsq *q)
{
	if (q == NULL)
		return;
	jsq_wait_fetchers(q);
	/* The item being fed: what was never fed goes back with it. */
	struct work *cur = q->fetchers[0] != NULL ? q->fetchers[0]->cur : NULL;
	size_t unfed = cur != NULL ? cur->n - cur->fed : 0;
	if (cur != NULL)
		give_back(cur, 0);
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
		give_back(w, 0);
		handed_back++;
		/* Skipped ones were released by their records, flushed above. Count first: the
		 * last release frees w. One more for the inbox's own hold. */
		size_t left = 1;
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
		         "%" PRId64 " ms",
		         q->nheld, q->cfg.ack_wait_ms);
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
	free(q->firsts.jobs);
	free(q->others.jobs);
	free(q);
}

void jsq_stats(struct jsq *q, struct jsq_stats *out)
{
	pthread_mutex_lock(&q->lock);
	out->queued = q->queued;
	out->works = q->nheld;
	pthread_mutex_unlock(&q->lock);
}
