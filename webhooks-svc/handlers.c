/* handlers.c -- the service's NATS subjects: validate each request, act, reply.
 *
 * The subjects are a public API of their own (any NATS client may call them), so every field
 * is checked here again whatever the gateway already checked. Reads are answered on the
 * subscription's own thread; writes go to the group-commit writer and are answered from its
 * thread once durable. */
#include "handlers.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "ids.h"
#include "timeutil.h"
#include "url.h"

#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT     1000

/* The svc pointer for the writer's completion callback, which has no slot of its own. */
static struct svc *the_svc;

/* A write waiting in the writer: where to reply. */
struct pending_write {
	struct svc *svc;
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

/* A webhook as JSON; full adds updatedAt (register replies leave it out, per the contract). */
static json_t *webhook_json(const struct store_webhook *h, bool full)
{
	char created[TIME_RFC3339_LEN + 1], updated[TIME_RFC3339_LEN + 1];
	time_rfc3339(h->created_ms, created);
	json_t *o = json_pack("{s:s, s:s, s:s}", "id", h->id, "targetUrl", h->target_url,
	                      "createdAt", created);
	if (o != NULL && full) {
		time_rfc3339(h->updated_ms, updated);
		json_object_set_new(o, "updatedAt", json_string(updated));
	}
	return o;
}

/* Parse a request body that must be a JSON object; on failure reply and return NULL. */
static json_t *parse_request(struct svc *svc, natsMsg *msg)
{
	const char *reply = natsMsg_GetReply(msg);
	json_error_t jerr;
	json_t *req = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
	                         JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		char m[256];
		snprintf(m, sizeof(m), "the request is not valid JSON: %s", jerr.text);
		reply_error(svc, reply, ERR_INVALID_JSON, m);
		return NULL;
	}
	if (!json_is_object(req)) {
		reply_error(svc, reply, ERR_INVALID_ARGUMENT, "the request must be a JSON object");
		json_decref(req);
		return NULL;
	}
	return req;
}

/* Read a required string member; on failure reply and return NULL. */
static const char *want_string(struct svc *svc, const char *reply, json_t *req, const char *key)
{
	json_t *v = json_object_get(req, key);
	char m[128];
	if (v == NULL || json_is_null(v)) {
		snprintf(m, sizeof(m), "%s is required", key);
		reply_error(svc, reply, ERR_INVALID_ARGUMENT, m);
		return NULL;
	}
	if (!json_is_string(v)) {
		snprintf(m, sizeof(m), "%s must be a string", key);
		reply_error(svc, reply, ERR_INVALID_ARGUMENT, m);
		return NULL;
	}
	return json_string_value(v);
}

/* Read the id of an existing webhook; a string that is no UUID names no webhook (404). */
static const char *want_id(struct svc *svc, const char *reply, json_t *req)
{
	const char *id = want_string(svc, reply, req, "id");
	if (id == NULL)
		return NULL;
	if (!id_valid(id)) {
		char m[128];
		snprintf(m, sizeof(m), "no webhook with id '%.40s'", id);
		reply_error(svc, reply, ERR_NOT_FOUND, m);
		return NULL;
	}
	return id;
}

static bool want_url(struct svc *svc, const char *reply, const char *url)
{
	char err[256];
	if (url_check(url, err, sizeof(err)) != 0) {
		reply_error(svc, reply, ERR_INVALID_ARGUMENT, err);
		return false;
	}
	return true;
}

/* Hand a write to the group-commit writer; the reply comes from handlers_write_done. */
static void submit_write(struct svc *svc, const char *reply, const struct store_op *op)
{
	size_t rlen = reply != NULL ? strlen(reply) : 0;
	struct pending_write *p = malloc(sizeof(*p) + rlen + 1);
	if (p == NULL) {
		reply_error(svc, reply, ERR_INTERNAL, "out of memory");
		return;
	}
	p->svc = svc;
	memcpy(p->reply, reply != NULL ? reply : "", rlen + 1);
	if (writer_submit(svc->writer, op, p) != 0) {
		reply_error(svc, reply, ERR_UNAVAILABLE, "the service is shutting down");
		free(p);
	}
}

void handlers_write_done(void *ctx, const struct store_op *op, int batch_rc, const char *err)
{
	struct pending_write *p = ctx;
	struct svc *svc = p->svc;
	int rc = batch_rc != 0 ? batch_rc : op->result;
	if (rc == -EEXIST) {
		/* Ids are random UUIDs, so a clash means something is badly wrong. */
		log_error("id %s already exists", op->hook.id);
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
	} else {
		json_t *o = webhook_json(&op->hook, op->kind == STORE_OP_UPDATE);
		reply_json(svc, p->reply, o);
		json_decref(o);
	}
	free(p);
}

static void on_register(struct svc *svc, const char *reply, json_t *req)
{
	const char *url = want_string(svc, reply, req, "targetUrl");
	if (url == NULL || !want_url(svc, reply, url))
		return;
	struct store_op op = {.kind = STORE_OP_INSERT};
	id_generate(op.hook.id);
	snprintf(op.hook.target_url, sizeof(op.hook.target_url), "%s", url);
	op.hook.created_ms = op.hook.updated_ms = time_now_ms();
	submit_write(svc, reply, &op);
}

static void on_update(struct svc *svc, const char *reply, json_t *req)
{
	const char *id = want_id(svc, reply, req);
	if (id == NULL)
		return;
	/* The seed calls it newTargetUrl; targetUrl is accepted too. */
	const char *key =
	    json_object_get(req, "newTargetUrl") != NULL ? "newTargetUrl" : "targetUrl";
	const char *url = want_string(svc, reply, req, key);
	if (url == NULL || !want_url(svc, reply, url))
		return;
	struct store_op op = {.kind = STORE_OP_UPDATE};
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	snprintf(op.hook.target_url, sizeof(op.hook.target_url), "%s", url);
	op.hook.updated_ms = time_now_ms();
	submit_write(svc, reply, &op);
}

static void on_delete(struct svc *svc, const char *reply, json_t *req)
{
	const char *id = want_id(svc, reply, req);
	if (id == NULL)
		return;
	struct store_op op = {.kind = STORE_OP_DELETE};
	snprintf(op.hook.id, sizeof(op.hook.id), "%s", id);
	submit_write(svc, reply, &op);
}

static void on_get(struct svc *svc, const char *reply, json_t *req)
{
	const char *id = want_id(svc, reply, req);
	if (id == NULL)
		return;
	struct store_webhook h;
	char err[STORE_ERR_LEN];
	int rc = store_get(svc->store, id, &h, err, sizeof(err));
	if (rc != 0) {
		if (rc == -ENOENT)
			snprintf(err, sizeof(err), "no webhook with id '%s'", id);
		reply_store_error(svc, reply, rc, err);
		return;
	}
	json_t *o = webhook_json(&h, true);
	reply_json(svc, reply, o);
	json_decref(o);
}

static void on_list(struct svc *svc, const char *reply, json_t *req)
{
	json_int_t limit = LIST_DEFAULT_LIMIT;
	json_t *jl = json_object_get(req, "limit");
	if (jl != NULL && !json_is_null(jl)) {
		if (!json_is_integer(jl) || json_integer_value(jl) < 1 ||
		    json_integer_value(jl) > LIST_MAX_LIMIT) {
			reply_error(svc, reply, ERR_INVALID_ARGUMENT,
			            "limit must be an integer from 1 to 1000");
			return;
		}
		limit = json_integer_value(jl);
	}
	const char *after = NULL;
	json_t *ja = json_object_get(req, "after");
	if (ja != NULL && !json_is_null(ja)) {
		if (!json_is_string(ja) || !id_valid(json_string_value(ja))) {
			reply_error(
			    svc, reply, ERR_INVALID_ARGUMENT,
			    "after must be the id of the last webhook of the previous page");
			return;
		}
		after = json_string_value(ja);
	}

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
	/* A page must fit in one NATS message, whatever the URLs' lengths: stop early and let
	 * "next" carry on from the last webhook that fit. */
	int64_t max_payload = natsConnection_GetMaxPayload(svc->nc);
	size_t budget = max_payload > 4096 ? (size_t)max_payload - 1024 : 64 * 1024;
	json_t *arr = json_array();
	size_t used = 64, taken = 0;
	bool more = n > (size_t)limit;
	for (size_t i = 0; i < n && i < (size_t)limit; i++) {
		json_t *o = webhook_json(&rows[i], true);
		size_t size = json_dumpb(o, NULL, 0, JSON_COMPACT) + 1;
		if (taken > 0 && used + size > budget) {
			json_decref(o);
			more = true;
			break;
		}
		used += size;
		json_array_append_new(arr, o);
		taken++;
	}
	json_t *next = more && taken > 0 ? json_string(rows[taken - 1].id) : json_null();
	json_t *body = json_pack("{s:o, s:o}", "webhooks", arr, "next", next);
	reply_json(svc, reply, body);
	json_decref(body);
	free(rows);
}

static void on_trigger(struct svc *svc, const char *reply, json_t *req)
{
	const char *ip = want_string(svc, reply, req, "ipAddress");
	if (ip == NULL)
		return;
	if (ip[0] == '\0' || strlen(ip) > 64) {
		reply_error(svc, reply, ERR_INVALID_ARGUMENT, "ipAddress must be an IP address");
		return;
	}
	int64_t count = 0;
	char err[STORE_ERR_LEN];
	int rc = store_count(svc->store, &count, err, sizeof(err));
	if (rc != 0) {
		reply_store_error(svc, reply, rc, err);
		return;
	}
	char event_id[ID_LEN + 1];
	id_generate(event_id);
	json_t *o = json_pack("{s:s, s:I}", "eventId", event_id, "targets", (json_int_t)count);
	reply_json(svc, reply, o);
	json_decref(o);
}

typedef void (*handler_fn)(struct svc *svc, const char *reply, json_t *req);

static const struct route {
	const char *subject;
	handler_fn fn;
} routes[] = {
    {"webhooks.register", on_register}, {"webhooks.get", on_get},
    {"webhooks.list", on_list},         {"webhooks.update", on_update},
    {"webhooks.delete", on_delete},     {"webhooks.trigger", on_trigger},
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
	}
	return 0;
}

void handlers_drain(struct svc *svc, int64_t timeout_ms)
{
	for (int i = 0; i < svc->nsubs; i++)
		natsSubscription_Drain(svc->subs[i]);
	for (int i = 0; i < svc->nsubs; i++) {
		natsStatus s = natsSubscription_WaitForDrainCompletion(svc->subs[i], timeout_ms);
		if (s != NATS_OK)
			log_warn("subscription drain: %s", natsStatus_GetText(s));
	}
	for (int i = 0; i < svc->nsubs; i++)
		natsSubscription_Destroy(svc->subs[i]);
	svc->nsubs = 0;
}
