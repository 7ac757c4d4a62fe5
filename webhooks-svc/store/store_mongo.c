/* store_mongo.c -- the MongoDB store: one document per record, through a libmongoc client pool.
 *
 * Layout, in the URI's database ("webhooks" when the URI names none):
 *
 *   webhooks    { _id: "<webhook uuid>", targetUrl: "<url>",
 *                 createdAt: <int64 ms since the epoch>, updatedAt: <int64 ms>,
 *                 secret: "whsec_...", oldSecret: "whsec_..." | "", oldUntil: <int64 ms>,
 *                 disabledReason: "" | "<why>", failingSince: <int64 ms> | 0 }
 *               (secret is missing on a webhook stored before secrets existed, until
 *               STORE_OP_GIVE_SECRET gives it one; oldSecret and oldUntil until a rotation;
 *               disabledReason and failingSince until a delivery ends or an update)
 *   events      { _id: "<event uuid>", ip: "<address>", createdAt: <int64 ms>,
 *                 targets: <int64>, fanned: <int64>, items: <int64>, done: <bool>,
 *                 open: true (removed once every delivery has ended: see store_pending) }
 *   deliveries  { _id: "<event uuid>:<delivery uuid>", eventId, deliveryId, webhookId,
 *                 targetUrl, status: <int32: 0 pending, 1 succeeded, 2 failed>,
 *                 attempts: [ { attempt, at, httpStatus, error, durationMs }, ... ],
 *                 orphan: true (only on what a later attempt inserted: see refuse_orphans) }
 *   meta        { _id: "webhooks", n: <int64>, lastId: "<webhook uuid>" | "" }
 *   eventItems  { _id: "<event uuid>:<item number>", eventId, end: "<webhook uuid>" | "",
 *                 last: <bool>, members: <BinData: 16 bytes a webhook id, ascending> }
 *               (a counted work item's members: see store_item_members; kept packed, as
 *               nothing looks them up but their item)
 *
 * Every id is the _id itself, so MongoDB's built-in unique index on _id is the unique index on
 * the id: get, update and delete look a document up by _id, and pages are range scans over the
 * same index ({_id: {$gt: after}} sorted by _id). Two more: {eventId: 1, status: 1} on
 * deliveries counts an event's outcomes, and the sparse {open: 1} on events finds the events
 * whose deliveries have not all ended. A
 * delivery's _id starts with its event's id and ':', so an event's deliveries are one _id range
 * ("E:" < _id < "E;", ';' being the character after ':'), in delivery id order. UUIDs are
 * strings (not BinData) so that ids sort byte-wise exactly as in the SQLite backend and read
 * plainly in the mongo shell. Times are int64 milliseconds, the interface's own unit, so they
 * round-trip without conversion. An attempt is the document form of store_attempt_json's
 * object, so both backends show exactly the same attempts. Events written before fanned, items
 * and done existed read as 0, 0 and false.
 *
 * Outcome counts are not kept as counters: an event's succeeded and failed are counted from its
 * deliveries' statuses when the summary is read (two index range counts). A counter would be a
 * second document written after the deliveries, and without a transaction a crash between the
 * two writes would leave the event short of those outcomes for good (the restarted service does
 * not send ended deliveries again, so nothing would ever count them). Recording an attempt is
 * one idempotent statement on its delivery ($addToSet of the attempt, $set of the status, only
 * while the delivery is open for that attempt: see attempt_update), so a batch sent again after
 * a failure midway neither doubles an attempt nor miscounts. Older
 * versions kept succeeded and failed fields in the event; they are ignored.
 *
 * A later attempt (number > 1) whose delivery is gone, its event pruned meanwhile, is refused
 * as on SQLite. Its upsert inserts, as upserts do, but marks what it inserts orphan: true
 * ($setOnInsert); the batch then deletes it again ({_id, orphan: true}) and the op is
 * -EALREADY. No attempt's selector matches an orphan, so one left behind (the batch failed
 * before its delete: a write concern error, or the delete itself failed) refuses the same
 * attempt, or any later one of its delivery, with a duplicate key, and that refusal deletes
 * it: the batch sent again does so. Retention would not: it walks events, and an orphan's
 * event is gone (or being pruned, and then its pruning deletes the orphan with its
 * deliveries). That is also why readers are not misled while one exists: outcome counts,
 * event summaries and delivery lists read an event that exists, and a half-pruned event's
 * deliveries are partly gone already; store_delivery_states, which reads deliveries by id,
 * skips orphans, so that a retry of one is dropped as on SQLite (its delivery has no record).
 * An orphan stays for good only when the service gives its batch up (at shutdown, after its
 * last try) and its delivery has no later attempt: one small document, never read.
 *
 * The meta document keeps what store_meta reads, so that no request counts documents: n, the
 * number of webhooks, and lastId, the greatest webhook id ever inserted. A batch that inserts
 * webhooks first raises lastId with $max to its greatest id, then inserts, then adds what it
 * inserted less what it deleted to n with one $inc. A crash between these writes leaves lastId
 * too high (harmless: later ids are greater still) and n off by the batch, never lastId too low.
 * A database written by an older version has no meta document: the first call that needs it
 * (the first store_meta, insert or delete of the process) makes it from countDocuments and the
 * greatest _id, with $setOnInsert so that of several instances doing this at once the first
 * wins; after that it is never counted again.
 *
 * Connections: open parses the URI and creates the pool but does no network I/O; the pool
 * connects on the first call (which is also why the meta document is checked on first use and
 * not at open). The service therefore starts while MongoDB is down, and each call
 * then fails with -EAGAIN once server selection times out (503 to the user). Every wait is
 * bounded: when the URI does not say otherwise, waitQueueTimeoutMS=1000 (waiting for a free
 * client of the pool), serverSelectionTimeoutMS=1500, connectTimeoutMS=1500 and
 * socketTimeoutMS=2000 (this also bounds the wait for a majority write to be acknowledged).
 * Together they stay under the gateway's default NATS_TIMEOUT_MS of 5000, so that a primary
 * that hangs makes a call fail with 503 before the gateway gives up with 504: the caller is
 * told "not done" while the service still knows it. (A write the server applies after the
 * socket timed out is still possible; MongoDB cannot take a write back.)
 *
 * Durability: every write uses write concern {w: "majority", j: true}, whatever the URI says,
 * so nothing is acknowledged before a majority of the replica set has it in its journal. A batch
 * is applied in order but is not atomic (that would take a replica-set transaction): when it
 * fails midway, the ops before the failure may be applied although none is acknowledged. */
#include "store_backend.h"

#include <errno.h>
#include <jansson.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "timeutil.h"

#define DEFAULT_DB         "webhooks"
#define DUPLICATE_KEY_CODE 11000
#define ATTEMPT_JSON_LEN   512
/* "<event id>:<delivery id>" */
#define DELIVERY_KEY_LEN (2 * ID_LEN + 1)
/* "<event id>:<item number>" */
#define ITEM_KEY_LEN (ID_LEN + 1 + 20)

/* The _id of the meta document. */
#define META_ID "webhooks"
/* The index that counts an event's outcomes. */
#define STATUS_INDEX "eventId_1_status_1"
#define OPEN_INDEX   "open_1"
#define AGE_INDEX    "createdAt_1"
#define PRUNE_EVENTS 16 /* events a store_prune call looks at */
/* Open events store_pending looks at, oldest first. */
#define PENDING_EVENTS 1000
#define INDEX_RETRY_MS 60000
/* Delivery ids asked for by one find of store_delivery_states (about 80 KB of $in). */
#define STATES_PER_FIND 1000

enum coll { COLL_WEBHOOKS, COLL_EVENTS, COLL_DELIVERIES, COLL_META, COLL_ITEMS, COLL__COUNT };

static const char *const coll_names[COLL__COUNT] = {
    [COLL_WEBHOOKS] = "webhooks", [COLL_EVENTS] = "events",    [COLL_DELIVERIES] = "deliveries",
    [COLL_META] = "meta",         [COLL_ITEMS] = "eventItems",
};

struct store_mongo {
	struct store base;
	mongoc_client_pool_t *pool;
	mongoc_write_concern_t *wc;
	char *db;
	pthread_mutex_t meta_lock; /* held while meta_ready is checked and the document made */
	bool meta_ready;           /* the meta document is known to exist */
	/* The deliveries' {eventId, status} index: made once on first use; after a failure,
	 * tried again at most every INDEX_RETRY_MS (counting works without it, only slower). */
	pthread_mutex_t index_lock;
	bool index_ready;
	int64_t index_tried_ms;
};

/* A client of the pool and its collections, held for the length of one call. */
struct lease {
	mongoc_client_t *client;
	mongoc_collection_t *coll[COLL__COUNT];
};

/* Server error codes that mean "the server is unreachable, stepping down or shutting down now":
 * the retryable-writes specification's list. The caller may retry them later. */
static const int32_t transient_codes[] = {
    6,     /* HostUnreachable */
    7,     /* HostNotFound */
    89,    /* NetworkTimeout */
    91,    /* ShutdownInProgress */
    189,   /* PrimarySteppedDown */
    262,   /* ExceededTimeLimit */
    9001,  /* SocketException */
    10107, /* NotWritablePrimary */
    11600, /* InterruptedAtShutdown */
    11602, /* InterruptedDueToReplStateChange */
    13435, /* NotPrimaryNoSecondaryOk */
    13436, /* NotPrimaryOrSecondary */
};

/* Map a libmongoc error (error API version 2) to the store's codes and describe it in err. */
static int fail(const bson_error_t *error, const char *what, char *err, size_t errlen)
{
	int rc = -EIO;
	switch (error->domain) {
	case MONGOC_ERROR_STREAM:
	case MONGOC_ERROR_SERVER_SELECTION:
		/* A network error or timeout, or no server reachable: nothing was acknowledged. */
		rc = -EAGAIN;
		break;
	case MONGOC_ERROR_WRITE_CONCERN:
		/* The write may be applied on the primary but is not known to be majority-durable,
		 * which usually means members are down: report it as unavailable, not as done. */
		rc = -EAGAIN;
		break;
	case MONGOC_ERROR_SERVER:
		for (size_t i = 0; i < sizeof(transient_codes) / sizeof(transient_codes[0]); i++) {
			if ((int32_t)error->code == transient_codes[i])
				rc = -EAGAIN;
		}
		break;
	default:
		break;
	}
	snprintf(err, errlen, "mongodb: %s: %s", what, error->message);
	return rc;
}

static int lease_take(struct store_mongo *s, struct lease *l, char *err, size_t errlen)
{
	/* Blocks at most waitQueueTimeoutMS when every client of the pool is in use. */
	l->client = mongoc_client_pool_pop(s->pool);
	if (l->client == NULL) {
		snprintf(err, errlen, "mongodb: every connection of the pool is busy");
		return -EAGAIN;
	}
	/* Collection handles are plain structs: making them does no I/O. */
	for (int i = 0; i < COLL__COUNT; i++) {
		l->coll[i] = mongoc_client_get_collection(l->client, s->db, coll_names[i]);
		mongoc_collection_set_write_concern(l->coll[i], s->wc);
	}
	return 0;
}

static void lease_give(struct store_mongo *s, struct lease *l)
{
	for (int i = 0; i < COLL__COUNT; i++) {
		mongoc_collection_destroy(l->coll[i]);
		l->coll[i] = NULL;
	}
	if (l->client != NULL)
		mongoc_client_pool_push(s->pool, l->client);
	l->client = NULL;
}

/* Copy a UTF-8 field of at most max bytes without NULs into out (max + 1 bytes). */
static bool copy_utf8(const bson_iter_t *it, char *out, size_t max)
{
	uint32_t len;
	const char *text;
	if (!BSON_ITER_HOLDS_UTF8(it))
		return false;
	text = bson_iter_utf8(it, &len);
	if (len > max || memchr(text, '\0', len) != NULL)
		return false;
	memcpy(out, text, len);
	out[len] = '\0';
	return true;
}

static bool copy_int(const bson_iter_t *it, int64_t *out)
{
	if (!BSON_ITER_HOLDS_INT(it))
		return false;
	*out = bson_iter_as_int64(it);
	return true;
}

/* The doc_to_* readers below keep one bit per required field in seen: "ok = copy(..) &&
 * (seen |= bit)" sets it only when the field is valid, and a missing one leaves its bit clear. */
static int malformed(const char *coll, char *err, size_t errlen)
{
	snprintf(err, errlen, "mongodb: a document of %s is malformed", coll);
	return -EIO;
}

/* Read a webhook document into out. Returns 0, or -EIO with err filled when a field is
 * missing or has the wrong type (a document not written by this backend). */
static int doc_to_hook(const bson_t *doc, void *rows, size_t i, char *err, size_t errlen)
{
	struct store_webhook *out = (struct store_webhook *)rows + i;
	bson_iter_t it;
	unsigned seen = 0;
	/* Optional: a webhook stored before secrets existed has none (STORE_OP_GIVE_SECRET). */
	out->secret[0] = out->old_secret[0] = '\0';
	out->old_until_ms = 0;
	out->disabled_reason[0] = '\0';
	out->failing_since_ms = 0;
	if (!bson_iter_init(&it, doc))
		return malformed("webhooks", err, errlen);
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		bool ok = true;
		if (strcmp(key, "_id") == 0)
			ok = copy_utf8(&it, out->id, ID_LEN) && (seen |= 1);
		else if (strcmp(key, "targetUrl") == 0)
			ok = copy_utf8(&it, out->target_url, URL_MAX_LEN) && (seen |= 2);
		else if (strcmp(key, "createdAt") == 0)
			ok = copy_int(&it, &out->created_ms) && (seen |= 4);
		else if (strcmp(key, "updatedAt") == 0)
			ok = copy_int(&it, &out->updated_ms) && (seen |= 8);
		else if (strcmp(key, "secret") == 0)
			ok = copy_utf8(&it, out->secret, SECRET_MAX_LEN);
		else if (strcmp(key, "oldSecret") == 0)
			ok = copy_utf8(&it, out->old_secret, SECRET_MAX_LEN);
		else if (strcmp(key, "oldUntil") == 0)
			ok = copy_int(&it, &out->old_until_ms);
		else if (strcmp(key, "disabledReason") == 0)
			ok = copy_utf8(&it, out->disabled_reason, STORE_REASON_LEN - 1);
		else if (strcmp(key, "failingSince") == 0)
			ok = copy_int(&it, &out->failing_since_ms);
		if (!ok)
			return malformed("webhooks", err, errlen);
	}
	return seen == 15 ? 0 : malformed("webhooks", err, errlen);
}

static int doc_to_event(const bson_t *doc, void *rows, size_t i, char *err, size_t errlen)
{
	struct store_event *out = (struct store_event *)rows + i;
	bson_iter_t it;
	unsigned seen = 0;
	/* Counted from the deliveries, not read (see the top). */
	out->succeeded = 0;
	out->failed = 0;
	/* Optional: an event stored by an older version has none of the three. */
	out->fanned = 0;
	out->items = 0;
	out->done = false;
	if (!bson_iter_init(&it, doc))
		return malformed("events", err, errlen);
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		bool ok = true;
		if (strcmp(key, "_id") == 0)
			ok = copy_utf8(&it, out->id, ID_LEN) && (seen |= 1);
		else if (strcmp(key, "ip") == 0)
			ok = copy_utf8(&it, out->ip, STORE_IP_LEN - 1) && (seen |= 2);
		else if (strcmp(key, "createdAt") == 0)
			ok = copy_int(&it, &out->created_ms) && (seen |= 4);
		else if (strcmp(key, "targets") == 0)
			ok = copy_int(&it, &out->targets) && (seen |= 8);
		else if (strcmp(key, "fanned") == 0)
			ok = copy_int(&it, &out->fanned);
		else if (strcmp(key, "items") == 0)
			ok = copy_int(&it, &out->items);
		else if (strcmp(key, "done") == 0)
			ok = BSON_ITER_HOLDS_BOOL(&it) && ((out->done = bson_iter_bool(&it)), true);
		if (!ok)
			return malformed("events", err, errlen);
	}
	return seen == 15 ? 0 : malformed("events", err, errlen);
}

/* The JSON form of a BSON value of an attempt (a document written from JSON, so only JSON's
 * types occur). Returns a new reference, or NULL for any other type. */
static json_t *value_to_json(const bson_iter_t *it)
{
	switch (bson_iter_type(it)) {
	case BSON_TYPE_UTF8: {
		uint32_t len;
		const char *text = bson_iter_utf8(it, &len);
		return json_stringn(text, len);
	}
	case BSON_TYPE_INT32:
	case BSON_TYPE_INT64:
		return json_integer((json_int_t)bson_iter_as_int64(it));
	case BSON_TYPE_DOUBLE:
		return json_real(bson_iter_double(it));
	case BSON_TYPE_BOOL:
		return json_boolean(bson_iter_bool(it));
	case BSON_TYPE_NULL:
		return json_null();
	case BSON_TYPE_DOCUMENT:
	case BSON_TYPE_ARRAY: {
		bool is_array = bson_iter_type(it) == BSON_TYPE_ARRAY;
		json_t *out = is_array ? json_array() : json_object();
		bson_iter_t child;
		if (out == NULL || !bson_iter_recurse(it, &child))
			goto bad;
		while (bson_iter_next(&child)) {
			json_t *v = value_to_json(&child);
			if (v == NULL)
				goto bad;
			if ((is_array ? json_array_append_new(out, v)
			              : json_object_set_new(out, bson_iter_key(&child), v)) != 0)
				goto bad;
		}
		return out;
	bad:
		json_decref(out);
		return NULL;
	}
	default:
		return NULL;
	}
}

static int doc_to_delivery(const bson_t *doc, void *rows, size_t i, char *err, size_t errlen)
{
	struct store_delivery *out = (struct store_delivery *)rows + i;
	bson_iter_t it;
	unsigned seen = 0;
	int64_t status = 0;
	json_t *attempts = NULL;

	out->attempts_json = NULL;
	if (!bson_iter_init(&it, doc))
		goto bad;
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		bool ok = true;
		if (strcmp(key, "deliveryId") == 0)
			ok = copy_utf8(&it, out->id, ID_LEN) && (seen |= 1);
		else if (strcmp(key, "webhookId") == 0)
			ok = copy_utf8(&it, out->webhook_id, ID_LEN) && (seen |= 2);
		else if (strcmp(key, "targetUrl") == 0)
			ok = copy_utf8(&it, out->target_url, URL_MAX_LEN) && (seen |= 4);
		else if (strcmp(key, "status") == 0)
			ok = copy_int(&it, &status) && status >= STORE_DELIVERY_PENDING &&
			     status <= STORE_DELIVERY_FAILED && (seen |= 8);
		else if (strcmp(key, "attempts") == 0)
			ok = BSON_ITER_HOLDS_ARRAY(&it) &&
			     (attempts = value_to_json(&it)) != NULL && (seen |= 16);
		if (!ok)
			goto bad;
	}
	if (seen != 31)
		goto bad;
	out->status = (enum store_delivery_status)status;
	out->attempts_json = json_dumps(attempts, JSON_COMPACT);
	json_decref(attempts);
	if (out->attempts_json == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	return 0;
bad:
	json_decref(attempts);
	return malformed("deliveries", err, errlen);
}

static void hook_to_doc(const struct store_op *op, bson_t *doc)
{
	BSON_APPEND_UTF8(doc, "_id", op->hook.id);
	BSON_APPEND_UTF8(doc, "targetUrl", op->hook.target_url);
	BSON_APPEND_INT64(doc, "createdAt", op->hook.created_ms);
	BSON_APPEND_INT64(doc, "updatedAt", op->hook.updated_ms);
	if (op->hook.secret[0] != '\0')
		BSON_APPEND_UTF8(doc, "secret", op->hook.secret);
}

static void event_to_doc(const struct store_op *op, bson_t *doc)
{
	BSON_APPEND_UTF8(doc, "_id", op->event.id);
	BSON_APPEND_UTF8(doc, "ip", op->event.ip);
	BSON_APPEND_INT64(doc, "createdAt", op->event.created_ms);
	BSON_APPEND_INT64(doc, "targets", op->event.targets);
	BSON_APPEND_INT64(doc, "fanned", 0);
	BSON_APPEND_INT64(doc, "items", 0);
	BSON_APPEND_BOOL(doc, "done", false);
	BSON_APPEND_BOOL(doc, "open", true);
}

/* The first write error of an insert reply: its index in the command and its code. */
static bool first_write_error(const bson_t *reply, int64_t *index, int32_t *code)
{
	bson_iter_t it, err_it, field;
	bool has_index = false, has_code = false;
	if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &err_it) || !bson_iter_next(&err_it) ||
	    !BSON_ITER_HOLDS_DOCUMENT(&err_it) || !bson_iter_recurse(&err_it, &field))
		return false;
	while (bson_iter_next(&field)) {
		if (strcmp(bson_iter_key(&field), "index") == 0 && BSON_ITER_HOLDS_INT(&field)) {
			*index = bson_iter_as_int64(&field);
			has_index = true;
		} else if (strcmp(bson_iter_key(&field), "code") == 0 &&
		           BSON_ITER_HOLDS_INT32(&field)) {
			*code = bson_iter_int32(&field);
			has_code = true;
		}
	}
	return has_index && has_code;
}

static bool has_write_concern_errors(const bson_t *reply)
{
	bson_iter_t it;
	uint32_t len = 0;
	const uint8_t *data;
	if (!bson_iter_init_find(&it, reply, "writeConcernErrors") || !BSON_ITER_HOLDS_ARRAY(&it))
		return false;
	bson_iter_array(&it, &len, &data);
	return len > 5; /* an empty BSON array is 5 bytes */
}

/* Insert ops[0..n), a run of consecutive inserts of one kind, with one ordered insert command
 * (libmongoc splits it only past the server's batch limits), so that a group commit of many
 * registrations costs one majority write instead of n. An ordered insert stops at its first
 * error; a duplicate id there is that op's -EEXIST, and the rest are sent again. Adds to
 * *inserted the documents inserted, failure or not (as far as the replies tell). */
static int insert_run(mongoc_collection_t *coll, struct store_op *ops, size_t n,
                      void (*to_doc)(const struct store_op *, bson_t *), int64_t *inserted,
                      char *err, size_t errlen)
{
	bson_t *docs = calloc(n, sizeof(*docs));
	const bson_t **ptrs = calloc(n, sizeof(*ptrs));
	size_t done = 0;
	int rc = 0;
	if (docs == NULL || ptrs == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -EIO;
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		bson_init(&docs[i]);
		to_doc(&ops[i], &docs[i]);
		ptrs[i] = &docs[i];
	}
	while (done < n) {
		bson_t reply;
		bson_error_t error;
		int64_t index = -1;
		int32_t code = 0;
		if (mongoc_collection_insert_many(coll, ptrs + done, n - done, NULL, &reply,
		                                  &error)) {
			for (size_t i = done; i < n; i++)
				ops[i].result = 0;
			*inserted += (int64_t)(n - done);
			done = n;
		} else if (first_write_error(&reply, &index, &code) && code == DUPLICATE_KEY_CODE &&
		           index >= 0 && (size_t)index < n - done &&
		           !has_write_concern_errors(&reply)) {
			for (size_t i = done; i < done + (size_t)index; i++)
				ops[i].result = 0;
			ops[done + (size_t)index].result = -EEXIST;
			*inserted += index;
			done += (size_t)index + 1;
		} else {
			bson_iter_t it;
			/* A write concern error or a later write error: the primary has what the
			 * reply counts, acknowledged or not. */
			if (bson_iter_init_find(&it, &reply, "insertedCount") &&
			    BSON_ITER_HOLDS_INT(&it))
				*inserted += bson_iter_as_int64(&it);
			rc = fail(&error, "insert", err, errlen);
		}
		bson_destroy(&reply);
		if (rc != 0)
			goto cleanup;
	}
cleanup:
	if (docs != NULL) {
		for (size_t i = 0; i < n; i++)
			bson_destroy(&docs[i]);
	}
	free(ptrs);
	free(docs);
	return rc;
}

/* Run update_one and report how many documents matched (and, with upsert, were created). */
static int update_doc(mongoc_collection_t *coll, const bson_t *selector, const bson_t *update,
                      bool upsert, int64_t *matched, char *err, size_t errlen)
{
	bson_t opts = BSON_INITIALIZER;
	bson_t reply;
	bson_error_t error;
	bson_iter_t it;
	int rc = 0;

	if (upsert)
		BSON_APPEND_BOOL(&opts, "upsert", true);
	if (!mongoc_collection_update_one(coll, selector, update, &opts, &reply, &error)) {
		rc = fail(&error, "update", err, errlen);
		goto cleanup;
	}
	*matched = 0;
	if (bson_iter_init_find(&it, &reply, "matchedCount") && BSON_ITER_HOLDS_INT(&it))
		*matched += bson_iter_as_int64(&it);
	if (bson_iter_init_find(&it, &reply, "upsertedCount") && BSON_ITER_HOLDS_INT(&it))
		*matched += bson_iter_as_int64(&it);
cleanup:
	bson_destroy(&reply);
	bson_destroy(&opts);
	return rc;
}

/* Update with findAndModify rather than update + find: one atomic round trip that both says
 * whether the id exists and returns the webhook as updated, with no window in which a
 * concurrent delete could make a successful update look like -ENOENT. No upsert: an unknown id
 * stays unknown. */
static int update_hook(struct lease *l, struct store_op *op, char *err, size_t errlen)
{
	mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, set;
	bson_t reply, doc;
	bson_error_t error;
	bson_iter_t it;
	uint32_t len;
	const uint8_t *data;
	int rc = 0;

	BSON_APPEND_UTF8(&query, "_id", op->hook.id);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	if (op->hook.target_url[0] != '\0')
		BSON_APPEND_UTF8(&set, "targetUrl", op->hook.target_url);
	BSON_APPEND_INT64(&set, "updatedAt", op->hook.updated_ms);
	/* Any update enables the webhook again unless it disables it, and forgets its failures. */
	BSON_APPEND_UTF8(&set, "disabledReason", op->hook.disabled_reason);
	BSON_APPEND_INT64(&set, "failingSince", 0);
	bson_append_document_end(&update, &set);
	mongoc_find_and_modify_opts_set_update(fam, &update);
	mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);

	if (!mongoc_collection_find_and_modify_with_opts(l->coll[COLL_WEBHOOKS], &query, fam,
	                                                 &reply, &error)) {
		rc = fail(&error, "update", err, errlen);
		goto cleanup;
	}
	if (!bson_iter_init_find(&it, &reply, "value") || BSON_ITER_HOLDS_NULL(&it)) {
		op->result = -ENOENT;
		goto cleanup;
	}
	if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
		rc = malformed("webhooks", err, errlen);
		goto cleanup;
	}
	bson_iter_document(&it, &len, &data);
	if (!bson_init_static(&doc, data, len)) {
		rc = malformed("webhooks", err, errlen);
		goto cleanup;
	}
	rc = doc_to_hook(&doc, &op->hook, 0, err, errlen);
	if (rc == 0)
		op->result = 0;
cleanup:
	bson_destroy(&reply);
	bson_destroy(&update);
	bson_destroy(&query);
	mongoc_find_and_modify_opts_destroy(fam);
	return rc;
}

static int delete_hook(struct lease *l, struct store_op *op, char *err, size_t errlen)
{
	bson_t selector = BSON_INITIALIZER;
	bson_t reply;
	bson_error_t error;
	bson_iter_t it;
	int rc = 0;

	BSON_APPEND_UTF8(&selector, "_id", op->hook.id);
	if (!mongoc_collection_delete_one(l->coll[COLL_WEBHOOKS], &selector, NULL, &reply,
	                                  &error)) {
		rc = fail(&error, "delete", err, errlen);
		goto cleanup;
	}
	if (!bson_iter_init_find(&it, &reply, "deletedCount") || !BSON_ITER_HOLDS_INT(&it)) {
		snprintf(err, errlen, "mongodb: delete: the reply has no deletedCount");
		rc = -EIO;
		goto cleanup;
	}
	op->result = bson_iter_as_int64(&it) > 0 ? 0 : -ENOENT;
cleanup:
	bson_destroy(&reply);
	bson_destroy(&selector);
	return rc;
}

/* Copy into *out (made here, destroyed by the caller either way) the first document that a
 * find of filter with opts returns, and say in *found whether there was one. */
static int find_first(mongoc_collection_t *coll, const bson_t *filter, const bson_t *opts,
                      bson_t *out, bool *found, char *err, size_t errlen)
{
	mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
	const bson_t *doc;
	bson_error_t error;
	int rc = 0;

	*found = mongoc_cursor_next(cursor, &doc);
	if (*found)
		bson_copy_to(doc, out);
	else
		bson_init(out);
	if (mongoc_cursor_error(cursor, &error))
		rc = fail(&error, "find", err, errlen);
	mongoc_cursor_destroy(cursor);
	return rc;
}

/* The options of a find of one document: limit 1 in a single batch, and the projection when
 * one is given. */
static void first_opts(bson_t *opts, const bson_t *projection)
{
	if (projection != NULL)
		BSON_APPEND_DOCUMENT(opts, "projection", projection);
	BSON_APPEND_INT64(opts, "limit", 1);
	BSON_APPEND_BOOL(opts, "singleBatch", true);
}

/* Give a webhook stored before secrets existed its secret: only where it has none. */
static int give_secret(struct lease *l, struct store_op *op, char *err, size_t errlen)
{
	bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, absent, set;
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, fields = BSON_INITIALIZER;
	bson_t doc;
	bool found = false;
	int64_t matched = 0;
	int rc;

	BSON_APPEND_UTF8(&selector, "_id", op->hook.id);
	BSON_APPEND_DOCUMENT_BEGIN(&selector, "secret", &absent);
	BSON_APPEND_BOOL(&absent, "$exists", false);
	bson_append_document_end(&selector, &absent);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_UTF8(&set, "secret", op->hook.secret);
	bson_append_document_end(&update, &set);
	rc = update_doc(l->coll[COLL_WEBHOOKS], &selector, &update, false, &matched, err, errlen);
	if (rc == 0 && matched > 0) {
		op->result = 0;
	} else if (rc == 0) {
		BSON_APPEND_UTF8(&filter, "_id", op->hook.id);
		BSON_APPEND_INT32(&fields, "_id", 1);
		first_opts(&opts, &fields);
		rc = find_first(l->coll[COLL_WEBHOOKS], &filter, &opts, &doc, &found, err, errlen);
		bson_destroy(&doc);
		if (rc == 0)
			op->result = found ? 0 : -ENOENT;
	}
	bson_destroy(&fields);
	bson_destroy(&opts);
	bson_destroy(&filter);
	bson_destroy(&update);
	bson_destroy(&selector);
	return rc;
}

/* Rotate: the current secret becomes oldSecret (until oldUntil) and the new one is set, in one
 * update that matches only while the secret is still the one read just before, so that two
 * rotations at once cannot lose the secret in between (the loser reads again and retries). */
#define ROTATE_TRIES 5
static int rotate_secret(struct lease *l, struct store_op *op, char *err, size_t errlen)
{
	for (int attempt = 0; attempt < ROTATE_TRIES; attempt++) {
		bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER,
		       fields = BSON_INITIALIZER;
		bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, set, absent;
		bson_t doc;
		bson_iter_t it;
		bool found = false;
		char current[SECRET_MAX_LEN + 1] = "";
		int64_t matched = 0;

		BSON_APPEND_UTF8(&filter, "_id", op->hook.id);
		BSON_APPEND_INT32(&fields, "secret", 1);
		first_opts(&opts, &fields);
		int rc =
		    find_first(l->coll[COLL_WEBHOOKS], &filter, &opts, &doc, &found, err, errlen);
		bool has = found && bson_iter_init_find(&it, &doc, "secret") &&
		           copy_utf8(&it, current, SECRET_MAX_LEN);
		bson_destroy(&doc);
		if (rc == 0 && found) {
			BSON_APPEND_UTF8(&selector, "_id", op->hook.id);
			if (has) {
				BSON_APPEND_UTF8(&selector, "secret", current);
			} else {
				BSON_APPEND_DOCUMENT_BEGIN(&selector, "secret", &absent);
				BSON_APPEND_BOOL(&absent, "$exists", false);
				bson_append_document_end(&selector, &absent);
			}
			BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
			BSON_APPEND_UTF8(&set, "secret", op->hook.secret);
			BSON_APPEND_UTF8(&set, "oldSecret", current);
			BSON_APPEND_INT64(&set, "oldUntil", op->hook.old_until_ms);
			bson_append_document_end(&update, &set);
			rc = update_doc(l->coll[COLL_WEBHOOKS], &selector, &update, false, &matched,
			                err, errlen);
		}
		bson_destroy(&update);
		bson_destroy(&selector);
		bson_destroy(&fields);
		bson_destroy(&opts);
		bson_destroy(&filter);
		if (rc != 0)
			return rc;
		if (!found) {
			op->result = -ENOENT;
			return 0;
		}
		if (matched > 0) {
			op->result = 0;
			return 0;
		}
	}
	snprintf(err, errlen, "mongodb: the secret kept changing while it was rotated");
	return -EAGAIN;
}

/* Apply update to the meta document. */
static int update_meta(struct lease *l, const bson_t *update, bool upsert, char *err, size_t errlen)
{
	bson_t selector = BSON_INITIALIZER;
	int64_t matched = 0;
	int rc;

	BSON_APPEND_UTF8(&selector, "_id", META_ID);
	rc = update_doc(l->coll[COLL_META], &selector, update, upsert, &matched, err, errlen);
	bson_destroy(&selector);
	return rc;
}

/* Make the meta document of a database written before it existed, from the webhooks there:
 * their count and greatest id. $setOnInsert keeps the document that another instance may have
 * made in the meantime (its count is as good, and its counter may have moved since). */
static int make_meta(struct lease *l, char *err, size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, fields = BSON_INITIALIZER;
	bson_t update = BSON_INITIALIZER, sort, set;
	bson_t doc;
	bson_error_t error;
	bson_iter_t it;
	char last_id[ID_LEN + 1] = "";
	bool found = false;
	int64_t count;
	int rc;

	BSON_APPEND_UTF8(&filter, "_id", META_ID);
	BSON_APPEND_INT32(&fields, "_id", 1);
	first_opts(&opts, &fields);
	rc = find_first(l->coll[COLL_META], &filter, &opts, &doc, &found, err, errlen);
	bson_destroy(&doc);
	if (rc != 0 || found)
		goto cleanup;

	bson_reinit(&filter);
	count = mongoc_collection_count_documents(l->coll[COLL_WEBHOOKS], &filter, NULL, NULL, NULL,
	                                          &error);
	if (count < 0) {
		rc = fail(&error, "count", err, errlen);
		goto cleanup;
	}
	bson_reinit(&opts);
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, "_id", -1);
	bson_append_document_end(&opts, &sort);
	first_opts(&opts, &fields);
	rc = find_first(l->coll[COLL_WEBHOOKS], &filter, &opts, &doc, &found, err, errlen);
	if (rc == 0 && found &&
	    (!bson_iter_init_find(&it, &doc, "_id") || !copy_utf8(&it, last_id, ID_LEN)))
		rc = malformed("webhooks", err, errlen);
	bson_destroy(&doc);
	if (rc != 0)
		goto cleanup;

	BSON_APPEND_DOCUMENT_BEGIN(&update, "$setOnInsert", &set);
	BSON_APPEND_INT64(&set, "n", count);
	BSON_APPEND_UTF8(&set, "lastId", last_id);
	bson_append_document_end(&update, &set);
	rc = update_meta(l, &update, true, err, errlen);
	if (rc == 0)
		log_info("mongodb: made the meta document: %lld webhooks, last id \"%s\"",
		         (long long)count, last_id);
cleanup:
	bson_destroy(&update);
	bson_destroy(&fields);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/* Make sure the meta document exists before the first counter is read or written, once per
 * store (again after a failure). */
static int ensure_meta(struct store_mongo *s, struct lease *l, char *err, size_t errlen)
{
	int rc = 0;
	pthread_mutex_lock(&s->meta_lock);
	if (!s->meta_ready) {
		rc = make_meta(l, err, errlen);
		s->meta_ready = rc == 0;
	}
	pthread_mutex_unlock(&s->meta_lock);
	return rc;
}

/* Make the index that counts an event's outcomes, once per store. It is made on the first batch
 * of attempts or the first summary, while the collection is still small in a new database; in
 * an upgraded one the build may take longer than the call allows, and then it goes on in the
 * server and is asked for again later. A failure is logged and does not fail the caller:
 * counting works without the index, only by reading the event's deliveries. */
static bool create_index(mongoc_collection_t *coll, const char *field1, const char *field2,
                         const char *name, bool sparse, bson_error_t *error)
{
	bson_t cmd = BSON_INITIALIZER, indexes, index, key, reply;
	BSON_APPEND_UTF8(&cmd, "createIndexes", mongoc_collection_get_name(coll));
	BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
	BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
	BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &key);
	BSON_APPEND_INT32(&key, field1, 1);
	if (field2 != NULL)
		BSON_APPEND_INT32(&key, field2, 1);
	bson_append_document_end(&index, &key);
	BSON_APPEND_UTF8(&index, "name", name);
	if (sparse)
		BSON_APPEND_BOOL(&index, "sparse", true);
	bson_append_document_end(&indexes, &index);
	bson_append_array_end(&cmd, &indexes);
	bool ok = mongoc_collection_write_command_with_opts(coll, &cmd, NULL, &reply, error);
	bson_destroy(&reply);
	bson_destroy(&cmd);
	return ok;
}

static void ensure_index(struct store_mongo *s, struct lease *l)
{
	bson_error_t error;
	int64_t now = time_mono_ms();

	pthread_mutex_lock(&s->index_lock);
	if (s->index_ready ||
	    (s->index_tried_ms != 0 && now - s->index_tried_ms < INDEX_RETRY_MS)) {
		pthread_mutex_unlock(&s->index_lock);
		return;
	}
	s->index_tried_ms = now;
	if (create_index(l->coll[COLL_DELIVERIES], "eventId", "status", STATUS_INDEX, false,
	                 &error) &&
	    create_index(l->coll[COLL_EVENTS], "open", NULL, OPEN_INDEX, true, &error) &&
	    create_index(l->coll[COLL_EVENTS], "createdAt", NULL, AGE_INDEX, false, &error))
		s->index_ready = true;
	else
		log_warn("mongodb: making the indexes failed (%s); tried again in %d s",
		         error.message, INDEX_RETRY_MS / 1000);
	pthread_mutex_unlock(&s->index_lock);
}

/* Raise lastId to id unless it is greater already. Upserts, so it never fails for want of the
 * document. */
static int raise_last_id(struct lease *l, const char *id, char *err, size_t errlen)
{
	bson_t update = BSON_INITIALIZER, max;
	int rc;

	BSON_APPEND_DOCUMENT_BEGIN(&update, "$max", &max);
	BSON_APPEND_UTF8(&max, "lastId", id);
	bson_append_document_end(&update, &max);
	rc = update_meta(l, &update, true, err, errlen);
	bson_destroy(&update);
	return rc;
}

/* Add delta to the webhook counter. */
static int add_to_count(struct lease *l, int64_t delta, char *err, size_t errlen)
{
	bson_t update = BSON_INITIALIZER, inc;
	int rc;

	BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
	BSON_APPEND_INT64(&inc, "n", delta);
	bson_append_document_end(&update, &inc);
	rc = update_meta(l, &update, false, err, errlen);
	bson_destroy(&update);
	return rc;
}

static void item_key(const char *event_id, int64_t item, char out[ITEM_KEY_LEN + 1])
{
	snprintf(out, ITEM_KEY_LEN + 1, "%s:%lld", event_id, (long long)item);
}

/* Keep a work item's members ($setOnInsert: the first kept wins). It comes before the count,
 * so that a crash between the two leaves members without a count, which the item taken again
 * completes with these members, never a count without its members. */
static int keep_item_members(struct lease *l, const struct store_event_item *item, char *err,
                             size_t errlen)
{
	char key[ITEM_KEY_LEN + 1];
	bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, set;
	int64_t matched = 0;
	int rc;

	item_key(item->event_id, item->item, key);
	BSON_APPEND_UTF8(&selector, "_id", key);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$setOnInsert", &set);
	BSON_APPEND_UTF8(&set, "eventId", item->event_id);
	BSON_APPEND_UTF8(&set, "end", item->end);
	BSON_APPEND_BOOL(&set, "last", item->last);
	BSON_APPEND_BINARY(&set, "members", BSON_SUBTYPE_BINARY,
	                   item->deliveries > 0 ? item->members[0] : (const uint8_t *)"",
	                   (uint32_t)(item->deliveries * ID_BIN_LEN));
	bson_append_document_end(&update, &set);
	rc = update_doc(l->coll[COLL_ITEMS], &selector, &update, true, &matched, err, errlen);
	bson_destroy(&update);
	bson_destroy(&selector);
	return rc;
}

/* Count one work item of an event: one update that matches only while the event's items is
 * the item's number, so that an item taken again after a crash adds nothing. When it matches
 * nothing, a lookup tells an item counted before (0) from an unknown event (-ENOENT). */
static int count_event_item(struct lease *l, struct store_op *op, char *err, size_t errlen)
{
	const struct store_event_item *item = &op->item;
	bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, in, list, inc, set;
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, fields = BSON_INITIALIZER;
	bson_t doc;
	bool found = false;
	int64_t matched = 0;
	int rc;

	if (item->members != NULL) {
		rc = keep_item_members(l, item, err, errlen);
		if (rc != 0)
			goto cleanup;
	}
	BSON_APPEND_UTF8(&selector, "_id", item->event_id);
	if (item->item == 0) {
		/* An event stored by an older version has no items field: it counts as 0. */
		BSON_APPEND_DOCUMENT_BEGIN(&selector, "items", &in);
		BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
		BSON_APPEND_INT64(&list, "0", 0);
		BSON_APPEND_NULL(&list, "1");
		bson_append_array_end(&in, &list);
		bson_append_document_end(&selector, &in);
	} else {
		BSON_APPEND_INT64(&selector, "items", item->item);
	}
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
	BSON_APPEND_INT64(&inc, "fanned", item->deliveries);
	bson_append_document_end(&update, &inc);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_INT64(&set, "items", item->item + 1);
	BSON_APPEND_BOOL(&set, "done", item->last);
	bson_append_document_end(&update, &set);
	rc = update_doc(l->coll[COLL_EVENTS], &selector, &update, false, &matched, err, errlen);
	if (rc != 0)
		goto cleanup;
	if (matched > 0) {
		op->result = 0;
		goto cleanup;
	}

	BSON_APPEND_UTF8(&filter, "_id", item->event_id);
	BSON_APPEND_INT32(&fields, "_id", 1);
	first_opts(&opts, &fields);
	rc = find_first(l->coll[COLL_EVENTS], &filter, &opts, &doc, &found, err, errlen);
	bson_destroy(&doc);
	if (rc == 0)
		op->result = found ? 0 : -ENOENT;
cleanup:
	bson_destroy(&fields);
	bson_destroy(&opts);
	bson_destroy(&filter);
	bson_destroy(&update);
	bson_destroy(&selector);
	return rc;
}

static void delivery_key(const char *event_id, const char *delivery_id,
                         char out[DELIVERY_KEY_LEN + 1])
{
	snprintf(out, DELIVERY_KEY_LEN + 1, "%s:%s", event_id, delivery_id);
}

/* The event's deliveries: the _ids between "E:" (or "E:after") and "E;". */
static void append_event_range(bson_t *filter, const char *event_id, const char *after)
{
	char low[DELIVERY_KEY_LEN + 1], high[ID_LEN + 2];
	bson_t range;
	delivery_key(event_id, after != NULL ? after : "", low);
	snprintf(high, sizeof(high), "%s;", event_id);
	BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &range);
	BSON_APPEND_UTF8(&range, "$gt", low);
	BSON_APPEND_UTF8(&range, "$lt", high);
	bson_append_document_end(filter, &range);
}

/* The update that records one attempt: the first creates the delivery (with upsert), every one
 * adds itself and sets the status. $addToSet, not $push: the same attempt recorded again (its
 * batch sent again after a failure midway) is the same document and is not added twice. An
 * attempt without a URL (a retry dropped because its webhook was deleted) keeps the URL
 * recorded before. A later attempt (number > 1) inserts only when its delivery is gone (its
 * event pruned meanwhile): what it inserts is marked orphan: true, refused and deleted again
 * (see refuse_orphans); until then, and for good if that delete never happens, no attempt
 * takes it for a delivery. */
static int attempt_update(const struct store_attempt *a, bson_t *selector, bson_t *update,
                          char *err, size_t errlen)
{
	char key[DELIVERY_KEY_LEN + 1];
	char json[ATTEMPT_JSON_LEN];
	bson_t attempt = BSON_INITIALIZER;
	bson_t set, on_insert, add;
	bson_error_t error;

	store_attempt_json(a, json, sizeof(json));
	if (!bson_init_from_json(&attempt, json, -1, &error)) {
		snprintf(err, errlen, "mongodb: recording an attempt: %s", error.message);
		bson_destroy(&attempt);
		return -EIO;
	}
	/* Only the next attempt of an open delivery, or this very attempt recorded last (a batch
	 * sent again): {_id, $or: [{status, attempts: {$size: n - 1}, orphan: {$exists: false}},
	 * {attempts: {$size: n}, "attempts.<n - 1>": attempt, orphan: {$exists: false}}]}. A
	 * delivery that matches neither (an orphan included) makes the upsert insert its _id
	 * again, which fails with a duplicate key (see attempt_run). */
	bson_t or, open, same, size, absent;
	char last[24];
	delivery_key(a->event_id, a->delivery_id, key);
	BSON_APPEND_UTF8(selector, "_id", key);
	BSON_APPEND_ARRAY_BEGIN(selector, "$or", & or);
	BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &open);
	BSON_APPEND_INT32(&open, "status",
	                  a->reopens ? STORE_DELIVERY_FAILED : STORE_DELIVERY_PENDING);
	BSON_APPEND_DOCUMENT_BEGIN(&open, "attempts", &size);
	BSON_APPEND_INT32(&size, "$size", a->number - 1);
	bson_append_document_end(&open, &size);
	BSON_APPEND_DOCUMENT_BEGIN(&open, "orphan", &absent);
	BSON_APPEND_BOOL(&absent, "$exists", false);
	bson_append_document_end(&open, &absent);
	bson_append_document_end(& or, &open);
	BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &same);
	BSON_APPEND_DOCUMENT_BEGIN(&same, "attempts", &size);
	BSON_APPEND_INT32(&size, "$size", a->number);
	bson_append_document_end(&same, &size);
	snprintf(last, sizeof(last), "attempts.%d", a->number - 1);
	BSON_APPEND_DOCUMENT(&same, last, &attempt);
	BSON_APPEND_DOCUMENT_BEGIN(&same, "orphan", &absent);
	BSON_APPEND_BOOL(&absent, "$exists", false);
	bson_append_document_end(&same, &absent);
	bson_append_document_end(& or, &same);
	bson_append_array_end(selector, & or);
	BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
	BSON_APPEND_INT32(&set, "status", (int32_t)a->status);
	if (a->target_url[0] != '\0')
		BSON_APPEND_UTF8(&set, "targetUrl", a->target_url);
	bson_append_document_end(update, &set);
	BSON_APPEND_DOCUMENT_BEGIN(update, "$setOnInsert", &on_insert);
	BSON_APPEND_UTF8(&on_insert, "eventId", a->event_id);
	BSON_APPEND_UTF8(&on_insert, "deliveryId", a->delivery_id);
	BSON_APPEND_UTF8(&on_insert, "webhookId", a->webhook_id);
	if (a->target_url[0] == '\0')
		BSON_APPEND_UTF8(&on_insert, "targetUrl", "");
	if (a->number > 1)
		BSON_APPEND_BOOL(&on_insert, "orphan", true);
	bson_append_document_end(update, &on_insert);
	BSON_APPEND_DOCUMENT_BEGIN(update, "$addToSet", &add);
	BSON_APPEND_DOCUMENT(&add, "attempts", &attempt);
	bson_append_document_end(update, &add);
	bson_destroy(&attempt);
	return 0;
}

static int run_bulk(mongoc_bulk_operation_t *bulk, const char *what, char *err, size_t errlen)
{
	bson_t reply;
	bson_error_t error;
	int rc = 0;
	if (mongoc_bulk_operation_execute(bulk, &reply, &error) == 0)
		rc = fail(&error, what, err, errlen);
	bson_destroy(&reply);
	return rc;
}

/* Append {field: {$not: {$gt: value}}} to doc: the field is missing, or not above value (0 or
 * ""), in MongoDB's order: what an older document without the field also matches. */
static void append_not_above(bson_t *doc, const char *field, const bson_value_t *value)
{
	bson_t cond, not ;
	BSON_APPEND_DOCUMENT_BEGIN(doc, field, &cond);
	BSON_APPEND_DOCUMENT_BEGIN(&cond, "$not", &not );
	BSON_APPEND_VALUE(&not, "$gt", value);
	bson_append_document_end(&cond, &not );
	bson_append_document_end(doc, &cond);
}

/* Queue on bulk the update {_id: id, <filter>} -> {$set: {field: value}}. */
static bool health_update(mongoc_bulk_operation_t *bulk, const char *id, const bson_t *filter,
                          const char *field, const bson_value_t *value, bson_error_t *error)
{
	bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, set;
	BSON_APPEND_UTF8(&selector, "_id", id);
	bson_concat(&selector, filter);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_VALUE(&set, field, value);
	bson_append_document_end(&update, &set);
	bool ok = mongoc_bulk_operation_update_one_with_opts(bulk, &selector, &update, NULL, error);
	bson_destroy(&update);
	bson_destroy(&selector);
	return ok;
}

/* The webhook's health after a delivery of it ended (see ST_HOOK_* in store_sqlite.c): a
 * success clears failingSince; a failure sets it when clear, disables the webhook once every
 * delivery has failed for disable_after_ms, and at once on a 410. Each statement matches only
 * when it changes something. */
static bool health_updates(mongoc_bulk_operation_t *bulk, const struct store_attempt *a,
                           bson_error_t *error)
{
	bson_value_t zero = {.value_type = BSON_TYPE_INT64, .value.v_int64 = 0};
	bson_value_t empty = {.value_type = BSON_TYPE_UTF8, .value.v_utf8 = {.str = "", .len = 0}};
	bson_value_t at = {.value_type = BSON_TYPE_INT64, .value.v_int64 = a->at_ms};
	bson_t filter = BSON_INITIALIZER, range;
	bool ok;
	if (a->status == STORE_DELIVERY_SUCCEEDED) {
		BSON_APPEND_DOCUMENT_BEGIN(&filter, "failingSince", &range);
		BSON_APPEND_INT64(&range, "$gt", 0);
		bson_append_document_end(&filter, &range);
		ok = health_update(bulk, a->webhook_id, &filter, "failingSince", &zero, error);
		bson_destroy(&filter);
		return ok;
	}
	append_not_above(&filter, "failingSince", &zero);
	ok = health_update(bulk, a->webhook_id, &filter, "failingSince", &at, error);
	bson_reinit(&filter);
	if (ok && a->disable_after_ms > 0) {
		char reason[STORE_REASON_LEN];
		store_streak_reason(a->disable_after_ms, reason);
		bson_value_t why = {
		    .value_type = BSON_TYPE_UTF8,
		    .value.v_utf8 = {.str = reason, .len = (uint32_t)strlen(reason)}};
		append_not_above(&filter, "disabledReason", &empty);
		BSON_APPEND_DOCUMENT_BEGIN(&filter, "failingSince", &range);
		BSON_APPEND_INT64(&range, "$gt", 0);
		BSON_APPEND_INT64(&range, "$lte", a->at_ms - a->disable_after_ms);
		bson_append_document_end(&filter, &range);
		ok = health_update(bulk, a->webhook_id, &filter, "disabledReason", &why, error);
		bson_reinit(&filter);
	}
	if (ok && a->gone) {
		bson_value_t why = {.value_type = BSON_TYPE_UTF8,
		                    .value.v_utf8 = {.str = STORE_REASON_GONE,
		                                     .len = (uint32_t)strlen(STORE_REASON_GONE)}};
		append_not_above(&filter, "disabledReason", &empty);
		ok = health_update(bulk, a->webhook_id, &filter, "disabledReason", &why, error);
	}
	bson_destroy(&filter);
	return ok;
}

/* Whether a bulk's reply has a write concern error: what was written is not known durable. */
static bool write_concern_failed(const bson_t *reply)
{
	bson_iter_t it, child;
	return bson_iter_init_find(&it, reply, "writeConcernErrors") &&
	       BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &child) &&
	       bson_iter_next(&child);
}

/* Whether every write error of a failed bulk's reply is a duplicate key (an attempt its
 * delivery was not open for): marks those ops -EALREADY. */
static bool only_duplicates(const bson_t *reply, struct store_op *ops, size_t n)
{
	bson_iter_t it, errors;
	if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &errors))
		return false;
	size_t seen = 0;
	while (bson_iter_next(&errors)) {
		bson_iter_t code, at;
		if (!BSON_ITER_HOLDS_DOCUMENT(&errors) || !bson_iter_recurse(&errors, &code) ||
		    !bson_iter_find(&code, "code") || !BSON_ITER_HOLDS_INT(&code) ||
		    bson_iter_as_int64(&code) != 11000 || !bson_iter_recurse(&errors, &at) ||
		    !bson_iter_find(&at, "index") || !BSON_ITER_HOLDS_INT(&at))
			return false;
		int64_t i = bson_iter_as_int64(&at);
		if (i < 0 || (uint64_t)i >= n)
			return false;
		ops[i].result = -EALREADY;
		seen++;
	}
	return seen > 0;
}

static int delete_many(mongoc_collection_t *coll, const bson_t *filter, bool one, int64_t *deleted,
                       char *err, size_t errlen);

/* Mark -EALREADY the later attempts (number > 1) of a bulk's reply that its upserts inserted:
 * their deliveries were gone (their events pruned meanwhile), and SQLite refuses them too. */
static void refuse_upserted(const bson_t *reply, struct store_op *ops, size_t n)
{
	bson_iter_t it, upserted;
	if (!bson_iter_init_find(&it, reply, "upserted") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &upserted))
		return;
	while (bson_iter_next(&upserted)) {
		bson_iter_t at;
		if (!BSON_ITER_HOLDS_DOCUMENT(&upserted) || !bson_iter_recurse(&upserted, &at) ||
		    !bson_iter_find(&at, "index") || !BSON_ITER_HOLDS_INT(&at))
			continue;
		int64_t i = bson_iter_as_int64(&at);
		if (i >= 0 && (uint64_t)i < n && ops[i].attempt.number > 1)
			ops[i].result = -EALREADY;
	}
}

/* Refuse the later attempts whose upserts inserted (refuse_upserted) and delete what they
 * inserted, the documents attempt_update marked orphan: true. The delete covers every refused
 * later attempt, not only those inserted now: an orphan left behind by an earlier try of the
 * same batch (its delete failed, or the bulk failed with a write concern error) refused the
 * attempt with a duplicate key this time, and goes now. One deleteMany, {_id: {$in: [...]},
 * orphan: true}, for the run; a delivery recorded as such never has the marker, so a refused
 * attempt of a live delivery deletes nothing. */
static int refuse_orphans(struct lease *l, const bson_t *reply, struct store_op *ops, size_t n,
                          char *err, size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, in, list;
	uint32_t keys = 0;
	int64_t deleted = 0;
	int rc = 0;

	refuse_upserted(reply, ops, n);
	BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
	BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
	for (size_t i = 0; i < n; i++) {
		char key[DELIVERY_KEY_LEN + 1], index[16];
		const char *index_key;
		if (ops[i].result != -EALREADY || ops[i].attempt.number <= 1)
			continue;
		delivery_key(ops[i].attempt.event_id, ops[i].attempt.delivery_id, key);
		bson_uint32_to_string(keys++, &index_key, index, sizeof(index));
		bson_append_utf8(&list, index_key, -1, key, -1);
	}
	bson_append_array_end(&in, &list);
	bson_append_document_end(&filter, &in);
	BSON_APPEND_BOOL(&filter, "orphan", true);
	if (keys > 0)
		rc = delete_many(l->coll[COLL_DELIVERIES], &filter, false, &deleted, err, errlen);
	bson_destroy(&filter);
	return rc;
}

/* Record ops[0..n), a run of consecutive attempts, in one unordered bulk update: one statement
 * per attempt on its delivery, so that a fan-out's records cost one majority write per batch
 * rather than one per attempt. The statements are independent (a batch holds at most one
 * attempt of a delivery, or the same one twice), so the server need not stop at one refused.
 * A later attempt that found its delivery gone is refused, and what it inserted deleted, by
 * refuse_orphans. Outcomes are counted from the deliveries (see the top); after them, the
 * webhooks' health is updated by the final outcomes recorded, and a replayed delivery's event
 * is marked open again. */
static int attempt_run(struct lease *l, struct store_op *ops, size_t n, char *err, size_t errlen)
{
	bson_t opts = BSON_INITIALIZER, upsert = BSON_INITIALIZER, reply;
	bson_error_t error;
	int rc = 0;
	BSON_APPEND_BOOL(&opts, "ordered", false);
	mongoc_bulk_operation_t *deliveries =
	    mongoc_collection_create_bulk_operation_with_opts(l->coll[COLL_DELIVERIES], &opts);
	bson_destroy(&opts);
	BSON_APPEND_BOOL(&upsert, "upsert", true);
	for (size_t i = 0; i < n && rc == 0; i++) {
		bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER;
		ops[i].result = 0;
		rc = attempt_update(&ops[i].attempt, &selector, &update, err, errlen);
		if (rc == 0 && !mongoc_bulk_operation_update_one_with_opts(
		                   deliveries, &selector, &update, &upsert, &error)) {
			snprintf(err, errlen, "mongodb: recording an attempt: %s", error.message);
			rc = -EIO;
		}
		bson_destroy(&update);
		bson_destroy(&selector);
	}
	bson_destroy(&upsert);
	if (rc == 0) {
		if (mongoc_bulk_operation_execute(deliveries, &reply, &error) != 0) {
			/* every statement applied */
		} else if (write_concern_failed(&reply)) {
			snprintf(err, errlen, "mongodb: recording attempts: %s", error.message);
			rc = -EAGAIN;
		} else if (!only_duplicates(&reply, ops, n)) {
			rc = fail(&error, "recording attempts", err, errlen);
		}
		/* After a failure nothing is deleted here: a failed batch is sent again (the
		 * service's recorder retries until it commits), and an orphan this try inserted
		 * then refuses its attempt with a duplicate key and is deleted by that try. */
		if (rc == 0)
			rc = refuse_orphans(l, &reply, ops, n, err, errlen);
		bson_destroy(&reply);
	}
	mongoc_bulk_operation_destroy(deliveries);

	mongoc_bulk_operation_t *hooks = NULL, *events = NULL;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct store_attempt *a = &ops[i].attempt;
		if (ops[i].result != 0)
			continue; /* refused: it changed nothing */
		if (a->status != STORE_DELIVERY_PENDING && !a->not_sent) {
			if (hooks == NULL)
				hooks = mongoc_collection_create_bulk_operation_with_opts(
				    l->coll[COLL_WEBHOOKS], NULL);
			if (!health_updates(hooks, a, &error))
				rc = -EIO;
		}
		if (rc == 0 && a->reopens) {
			bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, set;
			if (events == NULL)
				events = mongoc_collection_create_bulk_operation_with_opts(
				    l->coll[COLL_EVENTS], NULL);
			BSON_APPEND_UTF8(&selector, "_id", a->event_id);
			BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
			BSON_APPEND_BOOL(&set, "open", true);
			bson_append_document_end(&update, &set);
			if (!mongoc_bulk_operation_update_one_with_opts(events, &selector, &update,
			                                                NULL, &error))
				rc = -EIO;
			bson_destroy(&update);
			bson_destroy(&selector);
		}
		if (rc != 0)
			snprintf(err, errlen, "mongodb: recording an outcome: %s", error.message);
	}
	if (rc == 0 && hooks != NULL)
		rc = run_bulk(hooks, "recording webhooks' health", err, errlen);
	if (rc == 0 && events != NULL)
		rc = run_bulk(events, "reopening events", err, errlen);
	if (hooks != NULL)
		mongoc_bulk_operation_destroy(hooks);
	if (events != NULL)
		mongoc_bulk_operation_destroy(events);
	return rc;
}

/* Apply the ops in order: one round trip per run of inserts into one collection or of attempts,
 * and one per other op. */
static int mongo_apply(struct store *base, struct store_op *ops, size_t n, char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	struct lease l = {0};
	const char *greatest = NULL; /* the greatest id the batch inserts */
	bool counts = false;         /* the batch inserts or deletes webhooks */
	bool attempts = false;       /* the batch records attempts */
	int64_t delta = 0, events = 0;
	int rc;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (ops[i].kind == STORE_OP_INSERT &&
		    (greatest == NULL || strcmp(ops[i].hook.id, greatest) > 0))
			greatest = ops[i].hook.id;
		counts = counts || ops[i].kind == STORE_OP_INSERT || ops[i].kind == STORE_OP_DELETE;
		attempts = attempts || ops[i].kind == STORE_OP_ATTEMPT;
	}
	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		return rc;
	if (counts)
		rc = ensure_meta(s, &l, err, errlen);
	if (attempts)
		ensure_index(s, &l);
	/* Before any insert: lastId may then run ahead of the webhooks, never behind them. */
	if (rc == 0 && greatest != NULL)
		rc = raise_last_id(&l, greatest, err, errlen);
	for (size_t i = 0; i < n && rc == 0;) {
		enum store_op_kind kind = ops[i].kind;
		if (kind == STORE_OP_INSERT || kind == STORE_OP_EVENT_INSERT ||
		    kind == STORE_OP_ATTEMPT) {
			size_t end = i + 1;
			while (end < n && ops[end].kind == kind)
				end++;
			if (kind == STORE_OP_INSERT)
				rc = insert_run(l.coll[COLL_WEBHOOKS], ops + i, end - i,
				                hook_to_doc, &delta, err, errlen);
			else if (kind == STORE_OP_EVENT_INSERT)
				rc = insert_run(l.coll[COLL_EVENTS], ops + i, end - i, event_to_doc,
				                &events, err, errlen);
			else
				rc = attempt_run(&l, ops + i, end - i, err, errlen);
			i = end;
			continue;
		}
		switch (kind) {
		case STORE_OP_UPDATE:
			rc = update_hook(&l, &ops[i], err, errlen);
			break;
		case STORE_OP_DELETE:
			rc = delete_hook(&l, &ops[i], err, errlen);
			if (rc == 0 && ops[i].result == 0)
				delta--;
			break;
		case STORE_OP_EVENT_ITEM:
			rc = count_event_item(&l, &ops[i], err, errlen);
			break;
		case STORE_OP_ROTATE:
			rc = rotate_secret(&l, &ops[i], err, errlen);
			break;
		case STORE_OP_GIVE_SECRET:
			rc = give_secret(&l, &ops[i], err, errlen);
			break;
		default:
			snprintf(err, errlen, "mongodb: unknown store op %d", (int)kind);
			rc = -EIO;
			break;
		}
		i++;
	}
	/* One $inc for the whole batch. It is sent after a failure too, for what the batch did
	 * before it, so that the counter stays right; the batch's own error is the one told. */
	if (delta != 0) {
		char inc_err[STORE_ERR_LEN];
		int inc_rc = add_to_count(&l, delta, rc == 0 ? err : inc_err,
		                          rc == 0 ? errlen : sizeof(inc_err));
		if (rc == 0)
			rc = inc_rc;
		else if (inc_rc != 0)
			log_warn("the webhook counter missed %lld after a failed batch: %s",
			         (long long)delta, inc_err);
	}
	lease_give(s, &l);
	return rc;
}

typedef int (*row_fn)(const bson_t *doc, void *rows, size_t i, char *err, size_t errlen);

/* Run a find on one collection and convert up to max documents into rows[0..*n). */
static int find_rows(struct store_mongo *s, enum coll which, const bson_t *filter,
                     const bson_t *opts, row_fn convert, void *rows, size_t max, size_t *n,
                     char *err, size_t errlen)
{
	struct lease l = {0};
	mongoc_cursor_t *cursor;
	const bson_t *doc;
	bson_error_t error;
	int rc;

	*n = 0;
	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		return rc;
	cursor = mongoc_collection_find_with_opts(l.coll[which], filter, opts, NULL);
	while (*n < max && mongoc_cursor_next(cursor, &doc)) {
		rc = convert(doc, rows, *n, err, errlen);
		if (rc != 0)
			goto cleanup;
		(*n)++;
	}
	if (mongoc_cursor_error(cursor, &error))
		rc = fail(&error, "find", err, errlen);
cleanup:
	mongoc_cursor_destroy(cursor);
	lease_give(s, &l);
	return rc;
}

/* find {_id: id} with limit 1 into *out; -ENOENT when there is none. */
static int find_by_id(struct store_mongo *s, enum coll which, const char *id, row_fn convert,
                      void *out, const char *what, char *err, size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
	size_t n = 0;
	int rc;

	BSON_APPEND_UTF8(&filter, "_id", id);
	BSON_APPEND_INT64(&opts, "limit", 1);
	BSON_APPEND_BOOL(&opts, "singleBatch", true);
	rc = find_rows(s, which, &filter, &opts, convert, out, 1, &n, err, errlen);
	if (rc == 0 && n == 0) {
		snprintf(err, errlen, "no %s with id %s", what, id);
		rc = -ENOENT;
	}
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/* The options of a page: ascending _id, at most limit documents, all in the first reply
 * (instead of 101 documents and then getMores). */
static void page_opts(bson_t *opts, size_t limit)
{
	bson_t sort;
	BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, "_id", 1);
	bson_append_document_end(opts, &sort);
	BSON_APPEND_INT64(opts, "limit", (int64_t)limit);
	BSON_APPEND_INT32(opts, "batchSize", (int32_t)limit);
}

static int mongo_get(struct store *base, const char *id, struct store_webhook *out, char *err,
                     size_t errlen)
{
	return find_by_id((struct store_mongo *)base, COLL_WEBHOOKS, id, doc_to_hook, out,
	                  "webhook", err, errlen);
}

static int mongo_list(struct store *base, const char *after, size_t limit,
                      struct store_webhook *out, size_t *n, char *err, size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, range;
	int rc;

	*n = 0;
	/* A limit of 0 means "no limit" to MongoDB, so answer it here. */
	if (limit == 0)
		return 0;
	if (limit > INT32_MAX)
		limit = INT32_MAX;
	if (after != NULL && after[0] != '\0') {
		BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &range);
		BSON_APPEND_UTF8(&range, "$gt", after);
		bson_append_document_end(&filter, &range);
	}
	page_opts(&opts, limit);
	rc = find_rows((struct store_mongo *)base, COLL_WEBHOOKS, &filter, &opts, doc_to_hook, out,
	               limit, n, err, errlen);
	if (rc != 0)
		*n = 0;
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

static int mongo_meta(struct store *base, struct store_meta *out, char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	struct lease l = {0};
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
	bson_t doc = BSON_INITIALIZER;
	bson_iter_t it;
	bool found = false;
	int rc;

	out->webhooks = 0;
	out->last_id[0] = '\0';
	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		goto cleanup;
	rc = ensure_meta(s, &l, err, errlen);
	if (rc != 0)
		goto cleanup;
	BSON_APPEND_UTF8(&filter, "_id", META_ID);
	first_opts(&opts, NULL);
	bson_destroy(&doc);
	rc = find_first(l.coll[COLL_META], &filter, &opts, &doc, &found, err, errlen);
	/* Missing after ensure_meta only when deleted by hand: then nothing is known. */
	if (rc != 0 || !found || !bson_iter_init(&it, &doc))
		goto cleanup;
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		bool ok = true;
		if (strcmp(key, "n") == 0)
			ok = copy_int(&it, &out->webhooks);
		else if (strcmp(key, "lastId") == 0)
			ok = copy_utf8(&it, out->last_id, ID_LEN);
		if (!ok) {
			out->webhooks = 0;
			out->last_id[0] = '\0';
			rc = malformed("meta", err, errlen);
			goto cleanup;
		}
	}
	/* A counter that missed an insert (a crash between the insert and its $inc) may go
	 * below 0 when the webhook is deleted; no count is negative. */
	if (out->webhooks < 0)
		out->webhooks = 0;
cleanup:
	lease_give(s, &l);
	bson_destroy(&doc);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/* A delivery id of the request and where it is in the caller's arrays. */
struct wanted {
	const char *id;
	size_t index;
};

static int cmp_wanted(const void *a, const void *b)
{
	return strcmp(((const struct wanted *)a)->id, ((const struct wanted *)b)->id);
}

/* Record in out the state that doc (a delivery projected to _id, status and the number of
 * attempts) gives to each of wanted[0..n) that it is (an id may be asked for twice). */
static int take_state(const bson_t *doc, const char *event_id, const struct wanted *wanted,
                      size_t n, struct store_delivery_state *out, char *err, size_t errlen)
{
	char key[DELIVERY_KEY_LEN + 1] = "";
	size_t prefix = strlen(event_id);
	int64_t status = -1, attempts = -1;
	bson_iter_t it;

	if (!bson_iter_init(&it, doc))
		return malformed("deliveries", err, errlen);
	while (bson_iter_next(&it)) {
		const char *name = bson_iter_key(&it);
		bool ok = true;
		if (strcmp(name, "_id") == 0)
			ok = copy_utf8(&it, key, DELIVERY_KEY_LEN);
		else if (strcmp(name, "status") == 0)
			ok = copy_int(&it, &status);
		else if (strcmp(name, "attempts") == 0)
			ok = copy_int(&it, &attempts);
		if (!ok)
			return malformed("deliveries", err, errlen);
	}
	if (strncmp(key, event_id, prefix) != 0 || key[prefix] != ':' ||
	    status < STORE_DELIVERY_PENDING || status > STORE_DELIVERY_FAILED || attempts < 0 ||
	    attempts > INT32_MAX)
		return malformed("deliveries", err, errlen);

	struct wanted probe = {.id = key + prefix + 1};
	const struct wanted *hit = bsearch(&probe, wanted, n, sizeof(*wanted), cmp_wanted);
	if (hit == NULL)
		return 0;
	while (hit > wanted && strcmp(hit[-1].id, probe.id) == 0)
		hit--;
	for (; hit < wanted + n && strcmp(hit->id, probe.id) == 0; hit++) {
		out[hit->index].found = true;
		out[hit->index].status = (enum store_delivery_status)status;
		out[hit->index].attempts = (int)attempts;
	}
	return 0;
}

/* Project a delivery's attempts to their number. A delivery always has its attempts array;
 * $ifNull only keeps $size from failing the whole find on a document that does not. */
static void append_attempts_size(bson_t *fields)
{
	bson_t size, if_null, args, empty;
	BSON_APPEND_DOCUMENT_BEGIN(fields, "attempts", &size);
	BSON_APPEND_DOCUMENT_BEGIN(&size, "$size", &if_null);
	BSON_APPEND_ARRAY_BEGIN(&if_null, "$ifNull", &args);
	BSON_APPEND_UTF8(&args, "0", "$attempts");
	BSON_APPEND_ARRAY_BEGIN(&args, "1", &empty);
	bson_append_array_end(&args, &empty);
	bson_append_array_end(&if_null, &args);
	bson_append_document_end(&size, &if_null);
	bson_append_document_end(fields, &size);
}

/* One find by _id per STATES_PER_FIND ids, projecting each delivery to its status and the
 * size of its attempts array, so that no attempt crosses the wire. */
static int doc_to_members(const bson_t *doc, void *rows, size_t i, char *err, size_t errlen)
{
	struct store_item_members *out = (struct store_item_members *)rows + i;
	bson_iter_t it;
	unsigned seen = 0;
	if (!bson_iter_init(&it, doc))
		return malformed("eventItems", err, errlen);
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		bool ok = true;
		if (strcmp(key, "end") == 0) {
			ok = copy_utf8(&it, out->end, ID_LEN) && (seen |= 1);
		} else if (strcmp(key, "last") == 0) {
			ok = BSON_ITER_HOLDS_BOOL(&it) &&
			     ((out->last = bson_iter_bool(&it)), true) && (seen |= 2);
		} else if (strcmp(key, "members") == 0) {
			bson_subtype_t subtype;
			uint32_t len = 0;
			const uint8_t *data = NULL;
			ok = BSON_ITER_HOLDS_BINARY(&it);
			if (ok)
				bson_iter_binary(&it, &subtype, &len, &data);
			ok = ok && len % ID_BIN_LEN == 0 && len / ID_BIN_LEN <= STORE_ITEM_MAX;
			if (ok) {
				out->n = len / ID_BIN_LEN;
				if (len > 0)
					memcpy(out->ids, data, len);
				seen |= 4;
			}
		}
		if (!ok)
			return malformed("eventItems", err, errlen);
	}
	if (seen != 7)
		return malformed("eventItems", err, errlen);
	out->found = true;
	return 0;
}

static int mongo_item_members(struct store *base, const char *event_id, int64_t item,
                              struct store_item_members *out, char *err, size_t errlen)
{
	char key[ITEM_KEY_LEN + 1];
	item_key(event_id, item, key);
	int rc = find_by_id((struct store_mongo *)base, COLL_ITEMS, key, doc_to_members, out,
	                    "work item", err, errlen);
	return rc == -ENOENT ? 0 : rc;
}

static int mongo_delivery_states(struct store *base, const char *event_id,
                                 const char (*ids)[ID_LEN + 1], size_t n,
                                 struct store_delivery_state *out, char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	struct wanted *wanted = calloc(n, sizeof(*wanted));
	struct lease l = {0};
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		out[i] = (struct store_delivery_state){.found = false};
	if (wanted == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	rc = lease_take(s, &l, err, errlen);
	for (size_t off = 0; off < n && rc == 0; off += STATES_PER_FIND) {
		size_t k = n - off < STATES_PER_FIND ? n - off : STATES_PER_FIND;
		bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
		bson_t range, list, fields, absent;
		mongoc_cursor_t *cursor;
		const bson_t *doc;
		bson_error_t error;

		BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &range);
		BSON_APPEND_ARRAY_BEGIN(&range, "$in", &list);
		for (size_t i = 0; i < k; i++) {
			char key[DELIVERY_KEY_LEN + 1], index[16];
			const char *index_key;
			delivery_key(event_id, ids[off + i], key);
			bson_uint32_to_string((uint32_t)i, &index_key, index, sizeof(index));
			bson_append_utf8(&list, index_key, -1, key, -1);
			wanted[i] = (struct wanted){.id = ids[off + i], .index = off + i};
		}
		bson_append_array_end(&range, &list);
		bson_append_document_end(&filter, &range);
		/* An orphan (see refuse_orphans) is no delivery: a retry of it is dropped. */
		BSON_APPEND_DOCUMENT_BEGIN(&filter, "orphan", &absent);
		BSON_APPEND_BOOL(&absent, "$exists", false);
		bson_append_document_end(&filter, &absent);
		BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &fields);
		BSON_APPEND_INT32(&fields, "status", 1);
		append_attempts_size(&fields);
		bson_append_document_end(&opts, &fields);
		BSON_APPEND_INT32(&opts, "batchSize", (int32_t)k);
		qsort(wanted, k, sizeof(*wanted), cmp_wanted);

		cursor =
		    mongoc_collection_find_with_opts(l.coll[COLL_DELIVERIES], &filter, &opts, NULL);
		while (rc == 0 && mongoc_cursor_next(cursor, &doc))
			rc = take_state(doc, event_id, wanted, k, out, err, errlen);
		if (rc == 0 && mongoc_cursor_error(cursor, &error))
			rc = fail(&error, "find", err, errlen);
		mongoc_cursor_destroy(cursor);
		bson_destroy(&opts);
		bson_destroy(&filter);
	}
	if (rc != 0) {
		for (size_t i = 0; i < n; i++)
			out[i] = (struct store_delivery_state){.found = false};
	}
	lease_give(s, &l);
	free(wanted);
	return rc;
}

/* Count the event's deliveries by status into out's succeeded and failed: one aggregation
 * that the {eventId, status} index covers. */
/* Append to pipeline, as its stage "1", {$group: {_id: "$<by>", n: {$sum: 1}}}: how many
 * documents there are of each value of by. */
static void append_count_stage(bson_t *pipeline, const char *by)
{
	bson_t stage, group, sum;
	char field[32];
	snprintf(field, sizeof(field), "$%s", by);
	BSON_APPEND_DOCUMENT_BEGIN(pipeline, "1", &stage);
	BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &group);
	BSON_APPEND_UTF8(&group, "_id", field);
	BSON_APPEND_DOCUMENT_BEGIN(&group, "n", &sum);
	BSON_APPEND_INT32(&sum, "$sum", 1);
	bson_append_document_end(&group, &sum);
	bson_append_document_end(&stage, &group);
	bson_append_document_end(pipeline, &stage);
}

static int count_outcomes(struct store_mongo *s, struct store_event *out, char *err, size_t errlen)
{
	bson_t pipeline = BSON_INITIALIZER, stage, match, opts = BSON_INITIALIZER;
	struct lease l = {0};
	mongoc_cursor_t *cursor;
	const bson_t *doc;
	bson_error_t error;
	int rc;

	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		return rc;
	ensure_index(s, &l);
	BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
	BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &match);
	BSON_APPEND_UTF8(&match, "eventId", out->id);
	bson_append_document_end(&stage, &match);
	bson_append_document_end(&pipeline, &stage);
	append_count_stage(&pipeline, "status");
	cursor = mongoc_collection_aggregate(l.coll[COLL_DELIVERIES], MONGOC_QUERY_NONE, &pipeline,
	                                     &opts, NULL);
	while (rc == 0 && mongoc_cursor_next(cursor, &doc)) {
		bson_iter_t it;
		int64_t status = -1, n = -1;
		if (bson_iter_init_find(&it, doc, "_id") && !copy_int(&it, &status))
			status = -1; /* a status of another type counts nowhere */
		if (!bson_iter_init_find(&it, doc, "n") || !copy_int(&it, &n) || n < 0)
			rc = malformed("deliveries", err, errlen);
		else if (status == STORE_DELIVERY_SUCCEEDED)
			out->succeeded = n;
		else if (status == STORE_DELIVERY_FAILED)
			out->failed = n;
	}
	if (rc == 0 && mongoc_cursor_error(cursor, &error))
		rc = fail(&error, "counting outcomes", err, errlen);
	mongoc_cursor_destroy(cursor);
	lease_give(s, &l);
	bson_destroy(&opts);
	bson_destroy(&pipeline);
	return rc;
}

/* An open event as store_pending reads it. */
struct open_event {
	char id[ID_LEN + 1];
	int64_t total; /* deliveries it has or will have */
	bool done;
	int64_t ended;
};

static int cmp_open(const void *a, const void *b)
{
	return strcmp(((const struct open_event *)a)->id, ((const struct open_event *)b)->id);
}

/* The open events (at most PENDING_EVENTS, oldest first), their deliveries that ended (one
 * aggregation over the {eventId, status} index), and the remainder summed. An event whose
 * fan-out is counted and whose deliveries all ended is closed on the way ($unset open), so
 * that the next call skips it. */
static int mongo_pending(struct store *base, int64_t *out, char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	struct open_event *evs = calloc(PENDING_EVENTS, sizeof(*evs));
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort, fields;
	bson_t pipeline = BSON_INITIALIZER, stage, match, in, list, status;
	mongoc_cursor_t *cursor = NULL;
	mongoc_bulk_operation_t *close = NULL;
	struct lease l = {0};
	const bson_t *doc;
	bson_error_t error;
	size_t n = 0, closing = 0;
	int rc;

	*out = 0;
	if (evs == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		goto cleanup;
	ensure_index(s, &l);
	BSON_APPEND_BOOL(&filter, "open", true);
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, "_id", 1);
	bson_append_document_end(&opts, &sort);
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &fields);
	BSON_APPEND_INT32(&fields, "targets", 1);
	BSON_APPEND_INT32(&fields, "fanned", 1);
	BSON_APPEND_INT32(&fields, "done", 1);
	bson_append_document_end(&opts, &fields);
	BSON_APPEND_INT64(&opts, "limit", PENDING_EVENTS);
	cursor = mongoc_collection_find_with_opts(l.coll[COLL_EVENTS], &filter, &opts, NULL);
	while (rc == 0 && n < PENDING_EVENTS && mongoc_cursor_next(cursor, &doc)) {
		struct store_event ev = {0};
		bson_iter_t it;
		int64_t targets = 0;
		if (!bson_iter_init_find(&it, doc, "_id") || !copy_utf8(&it, evs[n].id, ID_LEN)) {
			rc = malformed("events", err, errlen);
			break;
		}
		if (bson_iter_init_find(&it, doc, "targets"))
			(void)copy_int(&it, &targets); /* a malformed count counts as 0 */
		if (bson_iter_init_find(&it, doc, "fanned"))
			(void)copy_int(&it, &ev.fanned);
		ev.done = bson_iter_init_find(&it, doc, "done") && BSON_ITER_HOLDS_BOOL(&it) &&
		          bson_iter_bool(&it);
		evs[n].done = ev.done;
		evs[n].total = ev.done ? ev.fanned : (ev.fanned > targets ? ev.fanned : targets);
		n++;
	}
	if (rc == 0 && mongoc_cursor_error(cursor, &error))
		rc = fail(&error, "finding open events", err, errlen);
	mongoc_cursor_destroy(cursor);
	cursor = NULL;
	if (rc != 0 || n == 0)
		goto cleanup;

	qsort(evs, n, sizeof(*evs), cmp_open);
	BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
	BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &match);
	BSON_APPEND_DOCUMENT_BEGIN(&match, "eventId", &in);
	BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
	for (size_t i = 0; i < n; i++) {
		char index[16];
		const char *key;
		bson_uint32_to_string((uint32_t)i, &key, index, sizeof(index));
		bson_append_utf8(&list, key, -1, evs[i].id, -1);
	}
	bson_append_array_end(&in, &list);
	bson_append_document_end(&match, &in);
	BSON_APPEND_DOCUMENT_BEGIN(&match, "status", &status);
	BSON_APPEND_INT32(&status, "$gt", STORE_DELIVERY_PENDING);
	bson_append_document_end(&match, &status);
	bson_append_document_end(&stage, &match);
	bson_append_document_end(&pipeline, &stage);
	append_count_stage(&pipeline, "eventId");
	cursor = mongoc_collection_aggregate(l.coll[COLL_DELIVERIES], MONGOC_QUERY_NONE, &pipeline,
	                                     NULL, NULL);
	while (rc == 0 && mongoc_cursor_next(cursor, &doc)) {
		bson_iter_t it;
		struct open_event key = {0};
		int64_t ended = 0;
		if (!bson_iter_init_find(&it, doc, "_id") || !copy_utf8(&it, key.id, ID_LEN) ||
		    !bson_iter_init_find(&it, doc, "n") || !copy_int(&it, &ended)) {
			rc = malformed("deliveries", err, errlen);
			break;
		}
		struct open_event *e = bsearch(&key, evs, n, sizeof(*evs), cmp_open);
		if (e != NULL)
			e->ended = ended;
	}
	if (rc == 0 && mongoc_cursor_error(cursor, &error))
		rc = fail(&error, "counting ended deliveries", err, errlen);
	if (rc != 0)
		goto cleanup;

	close = mongoc_collection_create_bulk_operation_with_opts(l.coll[COLL_EVENTS], NULL);
	for (size_t i = 0; i < n; i++) {
		int64_t left = evs[i].total - evs[i].ended;
		if (left > 0) {
			*out += left;
			continue;
		}
		if (!evs[i].done)
			continue;
		bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, unset;
		BSON_APPEND_UTF8(&selector, "_id", evs[i].id);
		BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &unset);
		BSON_APPEND_UTF8(&unset, "open", "");
		bson_append_document_end(&update, &unset);
		if (mongoc_bulk_operation_update_one_with_opts(close, &selector, &update, NULL,
		                                               &error))
			closing++;
		bson_destroy(&update);
		bson_destroy(&selector);
	}
	/* Closing is only an economy: a failure leaves the events open, counted as 0 again. */
	if (closing > 0 && run_bulk(close, "closing events", err, errlen) != 0)
		log_debug("%s", err);
cleanup:
	mongoc_bulk_operation_destroy(close);
	mongoc_cursor_destroy(cursor);
	if (l.client != NULL)
		lease_give(s, &l);
	bson_destroy(&pipeline);
	bson_destroy(&opts);
	bson_destroy(&filter);
	free(evs);
	return rc;
}

static int mongo_get_event(struct store *base, const char *id, bool counts, struct store_event *out,
                           char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	int rc = find_by_id(s, COLL_EVENTS, id, doc_to_event, out, "event", err, errlen);
	if (rc == 0 && counts)
		rc = count_outcomes(s, out, err, errlen);
	return rc;
}

static int mongo_list_deliveries(struct store *base, const char *event_id, const char *after,
                                 size_t limit, struct store_delivery *out, size_t *n, char *err,
                                 size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
	int rc;

	*n = 0;
	if (limit == 0)
		return 0;
	if (limit > INT32_MAX)
		limit = INT32_MAX;
	append_event_range(&filter, event_id, after);
	page_opts(&opts, limit);
	rc = find_rows((struct store_mongo *)base, COLL_DELIVERIES, &filter, &opts, doc_to_delivery,
	               out, limit, n, err, errlen);
	if (rc != 0) {
		store_deliveries_free(out, *n);
		*n = 0;
	}
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/* A failed delivery projected to webhookId and the number of its attempts. */
static int doc_to_failed(const bson_t *doc, void *rows, size_t i, char *err, size_t errlen)
{
	struct store_failed *out = (struct store_failed *)rows + i;
	char key[DELIVERY_KEY_LEN + 1] = "";
	int64_t attempts = -1;
	bson_iter_t it;
	out->webhook_id[0] = '\0';
	if (!bson_iter_init(&it, doc))
		return malformed("deliveries", err, errlen);
	while (bson_iter_next(&it)) {
		const char *name = bson_iter_key(&it);
		bool ok = true;
		if (strcmp(name, "_id") == 0)
			ok = copy_utf8(&it, key, DELIVERY_KEY_LEN);
		else if (strcmp(name, "webhookId") == 0)
			ok = copy_utf8(&it, out->webhook_id, ID_LEN);
		else if (strcmp(name, "attempts") == 0)
			ok = copy_int(&it, &attempts);
		if (!ok)
			return malformed("deliveries", err, errlen);
	}
	const char *colon = strchr(key, ':');
	if (colon == NULL || strlen(colon + 1) != ID_LEN || out->webhook_id[0] == '\0' ||
	    attempts < 0 || attempts > INT32_MAX)
		return malformed("deliveries", err, errlen);
	memcpy(out->id, colon + 1, ID_LEN + 1);
	out->attempts = (int)attempts;
	return 0;
}

static int mongo_failed_deliveries(struct store *base, const char *event_id, const char *after,
                                   size_t limit, struct store_failed *out, size_t *n, char *err,
                                   size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, fields;
	int rc;
	if (limit == 0)
		return 0;
	if (limit > INT32_MAX)
		limit = INT32_MAX;
	append_event_range(&filter, event_id, after);
	BSON_APPEND_INT32(&filter, "status", STORE_DELIVERY_FAILED);
	page_opts(&opts, limit);
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &fields);
	BSON_APPEND_INT32(&fields, "webhookId", 1);
	append_attempts_size(&fields);
	bson_append_document_end(&opts, &fields);
	rc = find_rows((struct store_mongo *)base, COLL_DELIVERIES, &filter, &opts, doc_to_failed,
	               out, limit, n, err, errlen);
	if (rc != 0)
		*n = 0;
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/* The _ids of up to max deliveries of event_id, into a {_id: {$in: [...]}} filter; *n says how
 * many. */
static int deliveries_to_delete(struct lease *l, const char *event_id, size_t max,
                                bson_t *in_filter, size_t *n, char *err, size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, fields, in, list;
	bson_error_t error;
	const bson_t *doc;
	int rc = 0;
	*n = 0;
	append_event_range(&filter, event_id, "");
	page_opts(&opts, max);
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &fields);
	BSON_APPEND_INT32(&fields, "_id", 1);
	bson_append_document_end(&opts, &fields);
	BSON_APPEND_DOCUMENT_BEGIN(in_filter, "_id", &in);
	BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
	mongoc_cursor_t *cursor =
	    mongoc_collection_find_with_opts(l->coll[COLL_DELIVERIES], &filter, &opts, NULL);
	bson_iter_t it;
	while (*n < max && mongoc_cursor_next(cursor, &doc)) {
		char index[16];
		const char *index_key;
		if (!bson_iter_init_find(&it, doc, "_id")) {
			rc = malformed("deliveries", err, errlen);
			break;
		}
		bson_uint32_to_string((uint32_t)*n, &index_key, index, sizeof(index));
		bson_append_iter(&list, index_key, -1, &it);
		(*n)++;
	}
	if (rc == 0 && mongoc_cursor_error(cursor, &error))
		rc = fail(&error, "find", err, errlen);
	mongoc_cursor_destroy(cursor);
	bson_append_array_end(&in, &list);
	bson_append_document_end(in_filter, &in);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

static int delete_many(mongoc_collection_t *coll, const bson_t *filter, bool one, int64_t *deleted,
                       char *err, size_t errlen)
{
	bson_t reply;
	bson_error_t error;
	bson_iter_t it;
	bool ok = one ? mongoc_collection_delete_one(coll, filter, NULL, &reply, &error)
	              : mongoc_collection_delete_many(coll, filter, NULL, &reply, &error);
	int rc = ok ? 0 : fail(&error, "delete", err, errlen);
	if (ok && bson_iter_init_find(&it, &reply, "deletedCount") && BSON_ITER_HOLDS_INT(&it))
		*deleted = bson_iter_as_int64(&it);
	bson_destroy(&reply);
	return rc;
}

/* An event that retention may prune, and whether it is being pruned already: its outcomes,
 * counted from deliveries partly deleted, no longer say whether it had ended. */
struct prune_candidate {
	struct store_event ev;
	bool pruning;
};

static int doc_to_candidate(const bson_t *doc, void *rows, size_t i, char *err, size_t errlen)
{
	struct prune_candidate *c = (struct prune_candidate *)rows + i;
	bson_iter_t it;
	c->pruning = bson_iter_init_find(&it, doc, "pruning") && BSON_ITER_HOLDS_BOOL(&it) &&
	             bson_iter_bool(&it);
	return doc_to_event(doc, &c->ev, 0, err, errlen);
}

/* Mark the event as being pruned (and no longer open, so that store_pending skips it) before
 * its first delivery is deleted. */
static int mark_pruning(struct lease *l, const char *event_id, char *err, size_t errlen)
{
	bson_t selector = BSON_INITIALIZER, update = BSON_INITIALIZER, set, unset;
	int64_t matched = 0;
	BSON_APPEND_UTF8(&selector, "_id", event_id);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_BOOL(&set, "pruning", true);
	bson_append_document_end(&update, &set);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &unset);
	BSON_APPEND_UTF8(&unset, "open", "");
	bson_append_document_end(&update, &unset);
	int rc = update_doc(l->coll[COLL_EVENTS], &selector, &update, false, &matched, err, errlen);
	bson_destroy(&update);
	bson_destroy(&selector);
	return rc;
}

static int mongo_prune(struct store *base, int64_t cutoff_ms, size_t max_rows,
                       struct store_pruned *out, char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	struct prune_candidate evs[PRUNE_EVENTS];
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, range, sort;
	struct lease l = {0};
	size_t n = 0, budget = max_rows;
	int rc;

	/* The oldest events before the cutoff, through the createdAt index. */
	BSON_APPEND_DOCUMENT_BEGIN(&filter, "createdAt", &range);
	BSON_APPEND_INT64(&range, "$lt", cutoff_ms);
	bson_append_document_end(&filter, &range);
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, "createdAt", 1);
	bson_append_document_end(&opts, &sort);
	BSON_APPEND_INT64(&opts, "limit", PRUNE_EVENTS);
	rc = find_rows(s, COLL_EVENTS, &filter, &opts, doc_to_candidate, evs, PRUNE_EVENTS, &n, err,
	               errlen);
	bson_destroy(&opts);
	bson_destroy(&filter);
	if (rc == 0)
		rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		return rc;
	ensure_index(s, &l);
	for (size_t i = 0; i < n && budget > 0 && rc == 0; i++) {
		struct store_event *ev = &evs[i].ev;
		if (!evs[i].pruning && ev->created_ms >= cutoff_ms - STORE_PRUNE_OPEN_AFTER_MS) {
			/* Kept while some of its deliveries have not ended. */
			rc = count_outcomes(s, ev, err, errlen);
			if (rc != 0)
				break;
			if (!ev->done || ev->succeeded + ev->failed < ev->fanned)
				continue;
		}
		if (!evs[i].pruning && (rc = mark_pruning(&l, ev->id, err, errlen)) != 0)
			break;
		bson_t in = BSON_INITIALIZER;
		size_t found = 0;
		int64_t deleted = 0;
		rc = deliveries_to_delete(&l, ev->id, budget, &in, &found, err, errlen);
		if (rc == 0 && found > 0)
			rc =
			    delete_many(l.coll[COLL_DELIVERIES], &in, false, &deleted, err, errlen);
		bson_destroy(&in);
		if (rc != 0)
			break;
		out->deliveries += deleted;
		budget -= found < budget ? found : budget;
		if (budget == 0 && found > 0)
			break; /* it may have more: the next call goes on */
		bson_t items = BSON_INITIALIZER;
		append_event_range(&items, ev->id, NULL);
		rc = delete_many(l.coll[COLL_ITEMS], &items, false, &deleted, err, errlen);
		bson_destroy(&items);
		if (rc != 0)
			break;
		bson_t id = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&id, "_id", ev->id);
		deleted = 0;
		rc = delete_many(l.coll[COLL_EVENTS], &id, true, &deleted, err, errlen);
		bson_destroy(&id);
		out->events += deleted;
		budget--;
	}
	lease_give(s, &l);
	return rc;
}

static void mongo_destroy(struct store *base)
{
	struct store_mongo *s = (struct store_mongo *)base;
	mongoc_client_pool_destroy(s->pool);
	mongoc_write_concern_destroy(s->wc);
	pthread_mutex_destroy(&s->meta_lock);
	pthread_mutex_destroy(&s->index_lock);
	bson_free(s->db);
	free(s);
}

static const struct store_vtable mongo_vt = {
    .name = "mongodb",
    .destroy = mongo_destroy,
    .apply = mongo_apply,
    .get = mongo_get,
    .list = mongo_list,
    .meta = mongo_meta,
    .delivery_states = mongo_delivery_states,
    .item_members = mongo_item_members,
    .get_event = mongo_get_event,
    .pending = mongo_pending,
    .list_deliveries = mongo_list_deliveries,
    .failed_deliveries = mongo_failed_deliveries,
    .prune = mongo_prune,
};

/* libmongoc's own messages go to the service log instead of its default handler, which prints
 * INFO and DEBUG on stdout. */
static void log_mongoc(mongoc_log_level_t level, const char *domain, const char *message,
                       void *data)
{
	(void)data;
	switch (level) {
	case MONGOC_LOG_LEVEL_ERROR:
	case MONGOC_LOG_LEVEL_CRITICAL:
		log_error("mongoc %s: %s", domain, message);
		break;
	case MONGOC_LOG_LEVEL_WARNING:
		log_warn("mongoc %s: %s", domain, message);
		break;
	case MONGOC_LOG_LEVEL_MESSAGE:
	case MONGOC_LOG_LEVEL_INFO:
		log_info("mongoc %s: %s", domain, message);
		break;
	default:
		log_debug("mongoc %s: %s", domain, message);
		break;
	}
}

/* mongoc_init is once-only by itself; mongoc_cleanup is never called, because the library
 * cannot be initialized again after it and its global state is freed at exit anyway. */
static void init_mongoc(void)
{
	mongoc_init();
	mongoc_log_set_handler(log_mongoc, NULL);
}

static bool set_default(mongoc_uri_t *uri, const char *key, int32_t value)
{
	return mongoc_uri_has_option(uri, key) || mongoc_uri_set_option_as_int32(uri, key, value);
}

struct store *store_mongo_open(const char *url, char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct store_mongo *s = NULL;
	mongoc_uri_t *uri = NULL;
	bson_error_t error;
	const char *db;

	pthread_once(&once, init_mongoc);
	uri = mongoc_uri_new_with_error(url, &error);
	if (uri == NULL) {
		snprintf(err, errlen, "STORE_URL: expected a MongoDB URI: %s", error.message);
		goto fail;
	}
	if (!set_default(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 1500) ||
	    !set_default(uri, MONGOC_URI_CONNECTTIMEOUTMS, 1500) ||
	    !set_default(uri, MONGOC_URI_SOCKETTIMEOUTMS, 2000) ||
	    !set_default(uri, MONGOC_URI_WAITQUEUETIMEOUTMS, 1000)) {
		snprintf(err, errlen, "mongodb: cannot set the default timeouts on the URI");
		goto fail;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->base.vt = &mongo_vt;
	/* glibc's init of a mutex, condition or attribute with these attributes only stores
	 * them: it cannot fail. */
	(void)pthread_mutex_init(&s->meta_lock, NULL);
	(void)pthread_mutex_init(&s->index_lock, NULL);
	db = mongoc_uri_get_database(uri);
	s->db = bson_strdup(db != NULL && db[0] != '\0' ? db : DEFAULT_DB);
	s->wc = mongoc_write_concern_new();
	mongoc_write_concern_set_wmajority(s->wc, 0);
	mongoc_write_concern_set_journal(s->wc, true);
	/* Creates the topology only: a mongodb+srv URI resolves its DNS records here, a plain one
	 * connects nothing until the first call. */
	s->pool = mongoc_client_pool_new_with_error(uri, &error);
	if (s->pool == NULL) {
		snprintf(err, errlen, "mongodb: %s", error.message);
		goto fail;
	}
	mongoc_client_pool_set_error_api(s->pool, MONGOC_ERROR_API_VERSION_2);
	mongoc_uri_destroy(uri);
	return &s->base;
fail:
	if (s != NULL) {
		mongoc_write_concern_destroy(s->wc);
		pthread_mutex_destroy(&s->meta_lock);
		pthread_mutex_destroy(&s->index_lock);
		bson_free(s->db);
		free(s);
	}
	mongoc_uri_destroy(uri);
	return NULL;
}
