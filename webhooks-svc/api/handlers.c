/* handlers.c -- the service's NATS subjects: validate each request, act, reply.
 *
 * The subjects are a public API of their own (any NATS client may call them), so every field
 * is checked here again whatever the gateway already checked. Reads are answered on the
 * subscription's own thread; writes go to the group-commit writer and are answered from its
 * thread once durable. */
#include "handlers.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "ids.h"
#include "requests.h"
#include "timeutil.h"
#include "signature.h"
#include "svc_metrics.h"
#include "url.h"

/* How long start-up waits for NATS to confirm the subscriptions (see handlers_start). */
#define SUBSCRIBE_CONFIRM_MS 1000

/* The process's one service: the subscriptions' closure slot carries their route instead. */
static struct svc *the_svc;

/* Subscriptions whose last callback has returned: nothing they use may be freed before. */
static pthread_mutex_t complete_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t complete_cond = PTHREAD_COND_INITIALIZER;
static int completed;

static void on_complete(void *closure)
{
	pthread_mutex_lock(&complete_lock);
	completed++;
	pthread_cond_broadcast(&complete_cond);
	pthread_mutex_unlock(&complete_lock);
}

/* A write waiting in the writer: where to reply. */
struct pending_write {
	struct svc *svc;
	char last_id[ID_LEN + 1]; /* an event's: the greatest webhook id when it was triggered */
	char reply[];
};

static void publish(struct svc *svc, const char *reply, const char *body)
{
	if (reply == NULL || reply[0] == '\0' || body == NULL)
		return;
	natsStatus s = natsConnection_PublishString(svc->nc, reply, body);
	if (s != NATS_OK)
		log_warn("reply to %s not sent: %s", reply, natsStatus_GetText(s));
}

static void reply_json(struct svc *svc, const char *reply, json_t *body)
{
	char *text = envelope_dump(body);
	if (text == NULL)
		text = envelope_error_dump(ERR_INTERNAL, true, "cannot encode the reply");
	publish(svc, reply, text);
	free(text);
}

static void reply_error(struct svc *svc, const char *reply, enum envelope_code code,
                        const char *message)
{
	char *text = envelope_error_dump(code, true, "%s", message);
	publish(svc, reply, text);
	free(text);
}

/* Map a store error code to the error reply. */
static void reply_store_error(struct svc *svc, const char *reply, int rc, const char *err)
{
	switch (rc) {
	case -ENOENT:
		reply_error(svc, reply, ERR_NOT_FOUND, err);
		break;
	case -EAGAIN:
	case -ESHUTDOWN:
		reply_error(svc, reply, ERR_UNAVAILABLE, "the store is unavailable; try again");
		break;
	default:
		reply_error(svc, reply, ERR_INTERNAL, "the store failed; see the service log");
		break;
	}
}

/* A webhook as JSON; full adds updatedAt and its health (register replies leave them out, per
 * the contract). */
static json_t *webhook_json(const struct store_webhook *h, bool full)
{
	char created[TIME_RFC3339_LEN + 1], updated[TIME_RFC3339_LEN + 1];
	time_rfc3339(h->created_ms, created);
	char shown[URL_MAX_LEN + 1];
	url_redact(h->target_url, shown, sizeof(shown)); /* credentials are never shown */
	json_t *o =
	    json_pack("{s:s, s:s, s:s}", "id", h->id, "targetUrl", shown, "createdAt", created);
	if (o != NULL && full) {
		time_rfc3339(h->updated_ms, updated);
		bool disabled = h->disabled_reason[0] != '\0';
		if (json_object_set_new(o, "updatedAt", json_string(updated)) != 0 ||
		    json_object_set_new(o, "disabled", json_boolean(disabled)) != 0 ||
		    json_object_set_new(o, "disabledReason",
		                        disabled ? json_string(h->disabled_reason) : json_null()) !=
		        0) {
			json_decref(o); /* out of memory: the caller answers "cannot encode" */
			o = NULL;
		}
	}
	return o;
}

/* Parse a request body that must be a JSON object; on failure reply and return NULL. */
static json_t *parse_request(struct svc *svc, natsMsg *msg)
{
	struct req_error e;
	json_t *req = req_parse(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &e);
	if (req == NULL)
		reply_error(svc, natsMsg_GetReply(msg), e.code, e.message);
	return req;
}

/* Read a required string member; on failure reply and return NULL. */
static const char *want_string(struct svc *svc, const char *reply, json_t *req, const char *key)
{
	struct req_error e;
	const char *v = req_string(req, key, &e);
	if (v == NULL)
		reply_error(svc, reply, e.code, e.message);
	return v;
}

/* Read the id of an existing webhook; a string that is no UUID names no webhook (404). */
static const char *want_id(struct svc *svc, const char *reply, json_t *req)
{
	struct req_error e;
	const char *id = req_id(req, "webhook", &e);
	if (id == NULL)
		reply_error(svc, reply, e.code, e.message);
	return id;
}

/* Normalise url into out (URL_MAX_LEN + 1 bytes): what is stored and sent. */
static bool want_url(struct svc *svc, const char *reply, const char *url, char *out)
{
	struct req_error e;
	if (!req_target_url(url, &svc->targets, out, &e)) {
		reply_error(svc, reply, e.code, e.message);
		return false;
	}
	return true;
}

/* Hand a write to the group-commit writer; the reply comes from handlers_write_done. last_id is
 * an event's view of the webhooks (NULL for other writes). */
static bool submit_write(struct svc *svc, const char *reply, const struct store_op *op,
                         const char *last_id)
{
	size_t rlen = reply != NULL ? strlen(reply) : 0;
	struct pending_write *p = malloc(sizeof(*p) + rlen + 1);
	if (p == NULL) {
		reply_error(svc, reply, ERR_INTERNAL, "out of memory");
		return false;
	}
	p->svc = svc;
	snprintf(p->last_id, sizeof(p->last_id), "%s", last_id != NULL ? last_id : "");
	memcpy(p->reply, reply != NULL ? reply : "", rlen + 1);
	if (writer_submit(svc->writer, op, p) != 0) {
		reply_error(svc, reply, ERR_UNAVAILABLE, "the service is shutting down");
		free(p);
		return false;
	}
	return true;
}

/* The event's first work item is in JetStream (rc 0), or could not be put there. */
static void event_published(void *ctx, const struct store_event *ev, int rc, const char *err)
{
	struct pending_write *p = ctx;
	if (rc != 0) {
		reply_error(p->svc, p->reply, ERR_UNAVAILABLE,
		            "the delivery queue is unavailable; try again");
	} else {
		json_t *o =
		    json_pack("{s:s, s:I}", "eventId", ev->id, "targets", (json_int_t)ev->targets);
		svc_metrics_event_accepted();
		reply_json(p->svc, p->reply, o);
		json_decref(o);
	}
	free(p);
}

void handlers_write_done(void *ctx, const struct store_op *op, int batch_rc, const char *err)
{
	struct pending_write *p = ctx;
	struct svc *svc = p->svc;
	int rc = batch_rc != 0 ? batch_rc : op->result;
	if (rc == 0 && op->kind == STORE_OP_EVENT_INSERT) {
		/* Durable: answered once its work is durable too. */
		jsq_publish_event(svc->queue, &op->event, p->last_id, event_published, p);
		return;
	}
	if (rc == -EEXIST) {
		/* Ids are random UUIDs, so a clash means something is badly wrong. */
		log_error("id %s already exists",
		          op->kind == STORE_OP_EVENT_INSERT ? op->event.id : op->hook.id);
		reply_error(svc, p->reply, ERR_INTERNAL, "id collision; try again");
	} else if (rc == -ENOENT) {
		char m[128];
		snprintf(m, sizeof(m), "no webhook with id '%s'", op->hook.id);
		reply_error(svc, p->reply, ERR_NOT_FOUND, m);
	} else if (rc != 0) {
		reply_store_error(svc, p->reply, rc, err);
	} else if (op->kind == STORE_OP_DELETE) {
		json_t *o = json_pack("{s:s, s:b}", "id", op->hook.id, "deleted", 1);
		reply_json(svc, p->reply, o);
		json_decref(o);
	} else if (op->kind == STORE_OP_ROTATE) {
		json_t *o = json_pack("{s:s}", "secret", op->hook.secret);
		reply_json(svc, p->reply, o);
		json_decref(o);
	} else {
		json_t *o = webhook_json(&op->hook, op->kind == STORE_OP_UPDATE);
		/* The one reply besides webhooks.secret that carries the secret. */
		if (o != NULL && op->kind == STORE_OP_INSERT &&
		    json_object_set_new(o, "secret", json_string(op->hook.secret)) != 0) {
			json_decref(o);
			o = NULL;
		}
		reply_json(svc, p->reply, o);
		json_decref(o);
	}
	free(p);
}

/* Read the webhook counter and the greatest id; on failure reply and return false. */
static bool want_meta(struct svc *svc, const char *reply, struct store_meta *meta)
{
	char err[STORE_ERR_LEN];
	int rc = store_meta(svc->store, meta, err, sizeof(err));
	if (rc != 0)
		reply_store_error(svc, reply, rc, err);
	return rc == 0;
}

/* The optional "secret" member into out: the caller's own when valid, else a new random one.
 * On failure reply and return false. */
static bool want_secret(struct svc *svc, const char *reply, json_t *req, char *out)
{
	struct req_error e;
	const char *given;
	if (!req_secret(req, &given, &e)) {
		reply_error(svc, reply, e.code, e.message);
		return false;
	}
	if (given == NULL) {
		if (secret_generate(out) == 0)
			return true;
		reply_error(svc, reply, ERR_INTERNAL, "no random bytes for a secret; see the log");
		log_error("getrandom failed: no secret can be made");
		return false;
	}
	memcpy(out, given, strlen(given) + 1);
	return true;
}

static void on_register(struct svc *svc, const char *reply, json_t *req)
{
	const char *url = want_string(svc, reply, req, "targetUrl");
	struct store_op op = {.kind = STORE_OP_INSERT};
	if (url == NULL || !want_url(svc, reply, url, op.hook.target_url) ||
	    !want_secret(svc, reply, req, op.hook.secret))
		return;
	struct store_meta meta;
	if (!want_meta(svc, reply, &meta))
		return;
	/* Time-ordered, so new rows append to the table; and greater than every id stored
	 * before, whatever this machine's clock says, so that an event triggered before this
	 * registration (whose targets end at the greatest id then) never includes it. */
	id_generate_after(op.hook.id, meta.last_id);
	op.hook.created_ms = op.hook.updated_ms = time_now_ms();
	submit_write(svc, reply, &op, NULL);
}

/* webhooks.update: a new URL and/or "enabled". Any update enables the webhook again (a new
 * URL is a fix of the endpoint) unless it says "enabled": false. */
static void on_update(struct svc *svc, const char *reply, json_t *req)
{
	const char *id = want_id(svc, reply, req);
	if (id == NULL)
		return;
	struct req_error e;
	int enabled;
	if (!req_enabled(req, &enabled, &e)) {
		reply_error(svc, reply, e.code, e.message);
		return;
	}
	struct store_op op = {.kind = STORE_OP_UPDATE};
	const char *key = req_update_key(req);
	if (enabled < 0 || json_object_get(req, key) != NULL) {
		const char *url = want_string(svc, reply, req, key);
		if (url == NULL || !want_url(svc, reply, url, op.hook.target_url))
			return;
	}
	if (enabled == 0)
		snprintf(op.hook.disabled_reason, sizeof(op.hook.disabled_reason),
		         "disabled through the API");
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	op.hook.updated_ms = time_now_ms();
	submit_write(svc, reply, &op, NULL);
}

static void on_delete(struct svc *svc, const char *reply, json_t *req)
{
	const char *id = want_id(svc, reply, req);
	if (id == NULL)
		return;
	struct store_op op = {.kind = STORE_OP_DELETE};
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	submit_write(svc, reply, &op, NULL);
}

/* Read the webhook the request names into h (with secret: one stored by an older version is
 * given its secret first); on failure reply (404 for no such webhook) and return false. */
static bool want_webhook(struct svc *svc, const char *reply, json_t *req, bool secret,
                         struct store_webhook *h)
{
	const char *id = want_id(svc, reply, req);
	if (id == NULL)
		return false;
	char err[STORE_ERR_LEN];
	int rc = store_get(svc->store, id, h, err, sizeof(err));
	if (rc == 0 && secret)
		rc = store_give_secret(svc->store, h, err, sizeof(err));
	if (rc != 0) {
		if (rc == -ENOENT)
			snprintf(err, sizeof(err), "no webhook with id '%s'", id);
		reply_store_error(svc, reply, rc, err);
		return false;
	}
	return true;
}

static void on_get(struct svc *svc, const char *reply, json_t *req)
{
	struct store_webhook h;
	if (!want_webhook(svc, reply, req, false, &h))
		return;
	json_t *o = webhook_json(&h, true);
	reply_json(svc, reply, o);
	json_decref(o);
}

/* webhooks.secret: the webhook's current secret (one stored by an older version is given
 * its secret now). */
static void on_secret(struct svc *svc, const char *reply, json_t *req)
{
	struct store_webhook h;
	if (!want_webhook(svc, reply, req, true, &h))
		return;
	json_t *o = json_pack("{s:s}", "secret", h.secret);
	reply_json(svc, reply, o);
	json_decref(o);
}

/* webhooks.rotate: a new secret (the caller's own, or a random one); the current one keeps
 * signing beside it for SECRET_ROTATION_GRACE. */
static void on_rotate(struct svc *svc, const char *reply, json_t *req)
{
	const char *id = want_id(svc, reply, req);
	struct store_op op = {.kind = STORE_OP_ROTATE};
	if (id == NULL || !want_secret(svc, reply, req, op.hook.secret))
		return;
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	op.hook.old_until_ms = time_now_ms() + svc->cfg.rotation_grace_ms;
	submit_write(svc, reply, &op, NULL);
}

/* Read the optional paging members limit and after; on failure reply and return false. */
static bool want_page(struct svc *svc, const char *reply, json_t *req, json_int_t *limit,
                      const char **after)
{
	struct req_error e;
	if (!req_page(req, limit, after, &e)) {
		reply_error(svc, reply, e.code, e.message);
		return false;
	}
	return true;
}

/* A page of a listing, kept under the NATS server's max payload whatever the items' sizes:
 * when the next item would not fit, the page ends early and "next" carries on from the last
 * item that did. */
struct page {
	json_t *items;
	size_t used, budget, taken;
	char last[ID_LEN + 1];
	bool cut;
};

static void page_begin(struct svc *svc, struct page *p)
{
	int64_t max_payload = natsConnection_GetMaxPayload(svc->nc);
	p->items = json_array();
	p->budget = max_payload > 4096 ? (size_t)max_payload - 1024 : 64 * 1024;
	p->used = 64;
	p->taken = 0;
	p->last[0] = '\0';
	p->cut = false;
}

/* Append item (the reference is stolen); false when it did not fit and the page is done. */
static bool page_add(struct page *p, json_t *item, const char *id)
{
	size_t size = json_dumpb(item, NULL, 0, JSON_COMPACT) + 1;
	if (p->taken > 0 && p->used + size > p->budget) {
		json_decref(item);
		p->cut = true;
		return false;
	}
	if (json_array_append_new(p->items, item) != 0) {
		p->cut = true; /* out of memory (or no item): end the page here */
		return false;
	}
	p->used += size;
	snprintf(p->last, sizeof(p->last), "%s", id);
	p->taken++;
	return true;
}

static void page_reply(struct svc *svc, const char *reply, struct page *p, const char *key,
                       bool more)
{
	json_t *next = (more || p->cut) && p->taken > 0 ? json_string(p->last) : json_null();
	json_t *body = json_pack("{s:o, s:o}", key, p->items, "next", next);
	reply_json(svc, reply, body);
	json_decref(body);
}

static void on_list(struct svc *svc, const char *reply, json_t *req)
{
	json_int_t limit;
	const char *after;
	if (!want_page(svc, reply, req, &limit, &after))
		return;
	/* One more than asked tells whether another page follows. */
	size_t want = (size_t)limit + 1, n = 0;
	struct store_webhook *rows = malloc(want * sizeof(*rows));
	char err[STORE_ERR_LEN];
	if (rows == NULL) {
		reply_error(svc, reply, ERR_INTERNAL, "out of memory");
		return;
	}
	int rc = store_list(svc->store, after, want, rows, &n, err, sizeof(err));
	if (rc != 0) {
		reply_store_error(svc, reply, rc, err);
		free(rows);
		return;
	}
	struct page page;
	page_begin(svc, &page);
	for (size_t i = 0; i < n && i < (size_t)limit; i++) {
		if (!page_add(&page, webhook_json(&rows[i], true), rows[i].id))
			break;
	}
	page_reply(svc, reply, &page, "webhooks", n > (size_t)limit);
	free(rows);
}

static void on_trigger(struct svc *svc, const char *reply, json_t *req)
{
	struct req_error bad;
	const char *ip = req_ip(req, STORE_IP_LEN, &bad);
	if (ip == NULL) {
		reply_error(svc, reply, bad.code, bad.message);
		return;
	}
	/* Back-pressure: while the fleet holds more deliveries than it may, a trigger is
	 * refused for now instead of queueing more. */
	int64_t retry_after = 0;
	if (svc->pressure != NULL &&
	    !pressure_admits(svc->pressure, svc->cfg.max_pending_deliveries, &retry_after)) {
		json_t *e = envelope_error(ERR_RATE_LIMITED, true,
		                           "the service has %ld deliveries waiting or more; "
		                           "try again later",
		                           svc->cfg.max_pending_deliveries);
		if (e != NULL)
			(void)json_object_set_new(
			    json_object_get(e, "error"), "retryAfter",
			    json_integer(retry_after)); /* an object: cannot fail */
		reply_json(svc, reply, e);
		json_decref(e);
		return;
	}
	/* The counter, not a count: a trigger costs the same with a million webhooks. */
	struct store_meta meta;
	if (!want_meta(svc, reply, &meta))
		return;
	struct store_op op = {.kind = STORE_OP_EVENT_INSERT};
	id_generate_ordered(op.event.id);
	if (svc->pressure != NULL)
		pressure_accepted(svc->pressure, meta.webhooks);
	snprintf(op.event.ip, sizeof(op.event.ip), "%s", ip);
	op.event.created_ms = time_now_ms();
	op.event.targets = meta.webhooks;
	/* The event is stored, then its first work item goes to JetStream, then the reply. Its
	 * targets are the webhooks with ids up to the greatest one now: ids are handed out in
	 * order by the store's own record of them, so no clock decides who gets the event. */
	submit_write(svc, reply, &op, meta.last_id);
}

static json_t *event_json(const struct store_event *ev)
{
	char created[TIME_RFC3339_LEN + 1];
	time_rfc3339(ev->created_ms, created);
	/* Once the fan-out has counted its last item, the deliveries it made are the total;
	 * until then the number of webhooks at the trigger is the better estimate. */
	int64_t targets =
	    ev->done ? ev->fanned : (ev->fanned > ev->targets ? ev->fanned : ev->targets);
	int64_t pending = targets - ev->succeeded - ev->failed;
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "eventId", ev->id, "ipAddress",
	                 ev->ip, "createdAt", created, "targets", (json_int_t)targets, "succeeded",
	                 (json_int_t)ev->succeeded, "failed", (json_int_t)ev->failed, "pending",
	                 (json_int_t)(pending > 0 ? pending : 0));
}

/* Read the id of an existing event into ev; a string that is no UUID names no event (404).
 * On failure reply and return false. */
static bool want_event(struct svc *svc, const char *reply, json_t *req, struct store_event *ev)
{
	struct req_error e;
	const char *id = req_id(req, "event", &e);
	if (id == NULL) {
		reply_error(svc, reply, e.code, e.message);
		return false;
	}
	char err[STORE_ERR_LEN];
	int rc = store_get_event(svc->store, id, ev, err, sizeof(err));
	if (rc == -ENOENT) {
		snprintf(err, sizeof(err), "no event with id '%.40s'", id);
		reply_error(svc, reply, ERR_NOT_FOUND, err);
		return false;
	}
	if (rc != 0) {
		reply_store_error(svc, reply, rc, err);
		return false;
	}
	return true;
}

static void on_event(struct svc *svc, const char *reply, json_t *req)
{
	struct store_event ev;
	if (!want_event(svc, reply, req, &ev))
		return;
	json_t *o = event_json(&ev);
	reply_json(svc, reply, o);
	json_decref(o);
}

static const char *const status_names[] = {
    [STORE_DELIVERY_PENDING] = "pending",
    [STORE_DELIVERY_SUCCEEDED] = "succeeded",
    [STORE_DELIVERY_FAILED] = "failed",
};

static void on_deliveries(struct svc *svc, const char *reply, json_t *req)
{
	struct store_event ev;
	const char *after = NULL;
	json_int_t limit;
	if (!want_event(svc, reply, req, &ev) || !want_page(svc, reply, req, &limit, &after))
		return;
	size_t want = (size_t)limit + 1, n = 0;
	struct store_delivery *rows = calloc(want, sizeof(*rows));
	char err[STORE_ERR_LEN];
	if (rows == NULL) {
		reply_error(svc, reply, ERR_INTERNAL, "out of memory");
		return;
	}
	int rc = store_list_deliveries(svc->store, ev.id, after, want, rows, &n, err, sizeof(err));
	if (rc != 0) {
		reply_store_error(svc, reply, rc, err);
		free(rows);
		return;
	}
	struct page page;
	page_begin(svc, &page);
	for (size_t i = 0; i < n && i < (size_t)limit; i++) {
		json_error_t jerr;
		json_t *attempts = json_loads(rows[i].attempts_json, 0, &jerr);
		/* Recorded without credentials; records of older versions are redacted here. */
		char shown[URL_MAX_LEN + 1];
		url_redact(rows[i].target_url, shown, sizeof(shown));
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", rows[i].id, "webhookId",
		                      rows[i].webhook_id, "targetUrl", shown, "status",
		                      status_names[rows[i].status], "attempts",
		                      attempts != NULL ? attempts : json_array());
		if (!page_add(&page, o, rows[i].id))
			break;
	}
	page_reply(svc, reply, &page, "deliveries", n > (size_t)limit);
	store_deliveries_free(rows, n);
	free(rows);
}

/* webhooks.retry: every failed delivery of the event is sent again, as a new series of
 * attempts under its delivery id, by whichever instance takes it (jsq_replay). Answered once
 * JetStream holds every one of them. */
#define REPLAY_PAGE 1000
static void on_retry(struct svc *svc, const char *reply, json_t *req)
{
	struct store_event ev;
	if (!want_event(svc, reply, req, &ev))
		return;
	struct store_failed *page = malloc(REPLAY_PAGE * sizeof(*page));
	if (page == NULL) {
		reply_error(svc, reply, ERR_INTERNAL, "out of memory");
		return;
	}
	char after[ID_LEN + 1] = "", err[STORE_ERR_LEN];
	long retried = 0;
	for (;;) {
		size_t n = 0;
		int rc = store_failed_deliveries(svc->store, ev.id, after, REPLAY_PAGE, page, &n,
		                                 err, sizeof(err));
		if (rc != 0) {
			reply_store_error(svc, reply, rc, err);
			goto out;
		}
		long sent = n > 0 ? jsq_replay(svc->queue, &ev, page, n, err, sizeof(err)) : 0;
		if (sent < 0) {
			log_warn("event %s: replay stopped after %ld deliveries: %s", ev.id,
			         retried, err);
			reply_error(
			    svc, reply, ERR_UNAVAILABLE,
			    "the delivery queue is unavailable; try again (deliveries already "
			    "queued are not queued twice)");
			goto out;
		}
		retried += sent;
		if (n < REPLAY_PAGE)
			break;
		memcpy(after, page[n - 1].id, sizeof(after));
	}
	if (retried > 0)
		log_info("event %s: %ld failed deliveries queued again", ev.id, retried);
	json_t *o = json_pack("{s:s, s:I}", "eventId", ev.id, "retried", (json_int_t)retried);
	reply_json(svc, reply, o);
	json_decref(o);
out:
	free(page);
}

typedef void (*handler_fn)(struct svc *svc, const char *reply, json_t *req);

static const struct route {
	const char *subject;
	handler_fn fn;
} routes[] = {
    {"webhooks.register", on_register}, {"webhooks.get", on_get},
    {"webhooks.list", on_list},         {"webhooks.update", on_update},
    {"webhooks.delete", on_delete},     {"webhooks.trigger", on_trigger},
    {"webhooks.event", on_event},       {"webhooks.deliveries", on_deliveries},
    {"webhooks.secret", on_secret},     {"webhooks.rotate", on_rotate},
    {"webhooks.retry", on_retry},
};

/* Runs on the subscription's delivery thread; owns msg. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	const struct route *r = closure;
	struct svc *svc = the_svc;
	json_t *req = parse_request(svc, msg);
	if (req != NULL) {
		r->fn(svc, natsMsg_GetReply(msg), req);
		json_decref(req);
	}
	natsMsg_Destroy(msg);
}

int handlers_start(struct svc *svc, char *err, size_t errlen)
{
	the_svc = svc;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		natsSubscription *sub = NULL;
		natsStatus s = natsConnection_QueueSubscribe(
		    &sub, svc->nc, routes[i].subject, SVC_QUEUE_GROUP, on_msg, (void *)&routes[i]);
		if (s != NATS_OK) {
			snprintf(err, errlen, "cannot subscribe to %s: %s", routes[i].subject,
			         natsStatus_GetText(s));
			return -EIO;
		}
		svc->subs[svc->nsubs++] = sub;
		s = natsSubscription_SetOnCompleteCB(sub, on_complete, NULL);
		if (s != NATS_OK) {
			snprintf(err, errlen, "cannot watch the subscription to %s: %s",
			         routes[i].subject, natsStatus_GetText(s));
			return -EIO;
		}
	}
	/* The SUBs sit in the connection's write buffer until its flusher sends them: a round
	 * trip makes sure the server holds them before anyone is told we are ready, or a request
	 * sent right after "ready" finds no responder. If NATS is away now, the subscriptions
	 * are sent when it is back, and nothing is waited for: a SIGTERM waits behind this. */
	if (natsConnection_Status(svc->nc) == NATS_CONN_STATUS_CONNECTED) {
		natsStatus s = natsConnection_FlushTimeout(svc->nc, SUBSCRIBE_CONFIRM_MS);
		if (s != NATS_OK)
			log_warn("NATS has not confirmed the subscriptions yet: %s",
			         natsStatus_GetText(s));
	}
	return 0;
}

void handlers_drain(struct svc *svc, int64_t timeout_ms)
{
	/* Draining needs the server; without it, just stop the callbacks. */
	bool connected = natsConnection_Status(svc->nc) == NATS_CONN_STATUS_CONNECTED;
	for (int i = 0; i < svc->nsubs; i++) {
		if (!connected || natsSubscription_Drain(svc->subs[i]) != NATS_OK)
			natsSubscription_Unsubscribe(svc->subs[i]);
	}
	/* One deadline for all of them, not one each. */
	int64_t deadline = time_mono_ms() + timeout_ms;
	for (int i = 0; i < svc->nsubs && connected; i++) {
		int64_t left = deadline - time_mono_ms();
		natsStatus s =
		    natsSubscription_WaitForDrainCompletion(svc->subs[i], left > 1 ? left : 1);
		if (s != NATS_OK)
			log_warn("subscription drain: %s", natsStatus_GetText(s));
	}
	/* A drain that timed out leaves the subscription open: close it, which drops what is
	 * still queued, and wait until its callback thread is done with it. */
	for (int i = 0; i < svc->nsubs; i++) {
		if (natsSubscription_IsValid(svc->subs[i]))
			natsSubscription_Unsubscribe(svc->subs[i]);
	}
	pthread_mutex_lock(&complete_lock);
	while (completed < svc->nsubs)
		pthread_cond_wait(&complete_cond, &complete_lock);
	pthread_mutex_unlock(&complete_lock);
	for (int i = 0; i < svc->nsubs; i++)
		natsSubscription_Destroy(svc->subs[i]);
	svc->nsubs = 0;
}
