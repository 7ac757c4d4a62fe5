/* store_mongo.c -- the MongoDB store: one document per webhook, through a libmongoc client pool.
 *
 * Layout: the collection "webhooks" of the URI's database ("webhooks" when the URI names none)
 * holds one document per webhook:
 *
 *   { _id: "<uuid, 36 lower-case characters>", targetUrl: "<url>",
 *     createdAt: <int64 ms since the epoch>, updatedAt: <int64 ms since the epoch> }
 *
 * The id is the _id itself, so MongoDB's built-in unique index on _id is the unique index on the
 * id, and the only index the store needs: get, update and delete look a document up by _id, and
 * list pages are range scans over the same index ({_id: {$gt: after}} sorted by _id), so nothing
 * is created at open. The UUID is kept as a string (not BinData) so that ids sort byte-wise exactly
 * as in the SQLite backend and read plainly in the mongo shell. Times are int64 milliseconds, the
 * interface's own unit, so they round-trip without conversion.
 *
 * Connections: open parses the URI and creates the pool but does no network I/O; the pool
 * connects on the first call. The service therefore starts while MongoDB is down, and each call
 * then fails with -EAGAIN once server selection times out (503 to the user). Every wait is
 * bounded: when the URI does not say otherwise, serverSelectionTimeoutMS=5000,
 * connectTimeoutMS=3000, socketTimeoutMS=10000 (this also bounds the wait for a majority write
 * to be acknowledged) and waitQueueTimeoutMS=5000 (waiting for a free client of the pool).
 *
 * Durability: every write uses write concern {w: "majority", j: true}, whatever the URI says,
 * so nothing is acknowledged before a majority of the replica set has it in its journal. */
#include "store_backend.h"

#include <errno.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DEFAULT_DB         "webhooks"
#define COLLECTION         "webhooks"
#define DUPLICATE_KEY_CODE 11000

struct store_mongo {
	struct store base;
	mongoc_client_pool_t *pool;
	mongoc_write_concern_t *wc;
	char *db;
};

/* A client of the pool and the collection on it, held for the length of one call. */
struct lease {
	mongoc_client_t *client;
	mongoc_collection_t *coll;
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
	l->coll = mongoc_client_get_collection(l->client, s->db, COLLECTION);
	mongoc_collection_set_write_concern(l->coll, s->wc);
	return 0;
}

static void lease_give(struct store_mongo *s, struct lease *l)
{
	mongoc_collection_destroy(l->coll);
	if (l->client != NULL)
		mongoc_client_pool_push(s->pool, l->client);
	l->coll = NULL;
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

/* Read a webhook document into out. Returns 0, or -EIO with err filled when a field is
 * missing or has the wrong type (a document not written by this backend). */
static int doc_to_hook(const bson_t *doc, struct store_webhook *out, char *err, size_t errlen)
{
	bson_iter_t it;
	unsigned seen = 0;
	if (!bson_iter_init(&it, doc))
		goto malformed;
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		if (strcmp(key, "_id") == 0) {
			if (!copy_utf8(&it, out->id, ID_LEN))
				goto malformed;
			seen |= 1;
		} else if (strcmp(key, "targetUrl") == 0) {
			if (!copy_utf8(&it, out->target_url, URL_MAX_LEN))
				goto malformed;
			seen |= 2;
		} else if (strcmp(key, "createdAt") == 0 && BSON_ITER_HOLDS_INT(&it)) {
			out->created_ms = bson_iter_as_int64(&it);
			seen |= 4;
		} else if (strcmp(key, "updatedAt") == 0 && BSON_ITER_HOLDS_INT(&it)) {
			out->updated_ms = bson_iter_as_int64(&it);
			seen |= 8;
		}
	}
	if (seen == 15)
		return 0;
malformed:
	snprintf(err, errlen, "mongodb: a document of %s is not a webhook", COLLECTION);
	return -EIO;
}

static void hook_to_doc(const struct store_webhook *h, bson_t *doc)
{
	BSON_APPEND_UTF8(doc, "_id", h->id);
	BSON_APPEND_UTF8(doc, "targetUrl", h->target_url);
	BSON_APPEND_INT64(doc, "createdAt", h->created_ms);
	BSON_APPEND_INT64(doc, "updatedAt", h->updated_ms);
}

/* The first write error of an insert reply: its index in the command and its code. */
static bool first_write_error(const bson_t *reply, int64_t *index, int32_t *code)
{
	bson_iter_t it, err_it;
	if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &err_it) || !bson_iter_next(&err_it) ||
	    !BSON_ITER_HOLDS_DOCUMENT(&err_it))
		return false;
	bson_iter_t field;
	bool has_index = false, has_code = false;
	if (!bson_iter_recurse(&err_it, &field))
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

/* Insert ops[0..n), a run of consecutive INSERTs, with one ordered insert command (libmongoc
 * splits it only past the server's batch limits), so that a group commit of many registrations
 * costs one majority write instead of n. An ordered insert stops at its first error; a duplicate
 * id there is that op's -EEXIST, and the rest are sent again in a new command. */
static int insert_run(struct lease *l, struct store_op *ops, size_t n, char *err, size_t errlen)
{
	bson_t *docs = calloc(n, sizeof(*docs));
	const bson_t **ptrs = calloc(n, sizeof(*ptrs));
	size_t done = 0;
	int rc = 0;
	if (docs == NULL || ptrs == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		bson_init(&docs[i]);
		hook_to_doc(&ops[i].hook, &docs[i]);
		ptrs[i] = &docs[i];
	}
	while (done < n) {
		bson_t reply;
		bson_error_t error;
		int64_t index = -1;
		int32_t code = 0;
		if (mongoc_collection_insert_many(l->coll, ptrs + done, n - done, NULL, &reply,
		                                  &error)) {
			for (size_t i = done; i < n; i++)
				ops[i].result = 0;
			done = n;
		} else if (first_write_error(&reply, &index, &code) && code == DUPLICATE_KEY_CODE &&
		           index >= 0 && (size_t)index < n - done &&
		           !has_write_concern_errors(&reply)) {
			for (size_t i = done; i < done + (size_t)index; i++)
				ops[i].result = 0;
			ops[done + (size_t)index].result = -EEXIST;
			done += (size_t)index + 1;
		} else {
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

/* Update with findAndModify rather than update + find: one atomic round trip that both says
 * whether the id exists and returns the unchanged createdAt, with no window in which a concurrent
 * delete could make a successful update look like -ENOENT. No upsert: an unknown id stays
 * unknown. */
static int update_one(struct lease *l, struct store_op *op, char *err, size_t errlen)
{
	mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, set, fields = BSON_INITIALIZER;
	bson_t reply;
	bson_error_t error;
	bson_iter_t it, value;
	int rc = 0;

	BSON_APPEND_UTF8(&query, "_id", op->hook.id);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_UTF8(&set, "targetUrl", op->hook.target_url);
	BSON_APPEND_INT64(&set, "updatedAt", op->hook.updated_ms);
	bson_append_document_end(&update, &set);
	BSON_APPEND_INT32(&fields, "createdAt", 1);
	mongoc_find_and_modify_opts_set_update(fam, &update);
	mongoc_find_and_modify_opts_set_fields(fam, &fields);
	mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);

	if (!mongoc_collection_find_and_modify_with_opts(l->coll, &query, fam, &reply, &error)) {
		rc = fail(&error, "update", err, errlen);
		goto cleanup;
	}
	if (!bson_iter_init_find(&it, &reply, "value") || BSON_ITER_HOLDS_NULL(&it)) {
		op->result = -ENOENT;
		goto cleanup;
	}
	if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &value) ||
	    !bson_iter_find(&value, "createdAt") || !BSON_ITER_HOLDS_INT(&value)) {
		snprintf(err, errlen, "mongodb: update: the reply has no createdAt");
		rc = -EIO;
		goto cleanup;
	}
	op->hook.created_ms = bson_iter_as_int64(&value);
	op->result = 0;
cleanup:
	bson_destroy(&reply);
	bson_destroy(&fields);
	bson_destroy(&update);
	bson_destroy(&query);
	mongoc_find_and_modify_opts_destroy(fam);
	return rc;
}

static int delete_one(struct lease *l, struct store_op *op, char *err, size_t errlen)
{
	bson_t selector = BSON_INITIALIZER;
	bson_t reply;
	bson_error_t error;
	bson_iter_t it;
	int rc = 0;

	BSON_APPEND_UTF8(&selector, "_id", op->hook.id);
	if (!mongoc_collection_delete_one(l->coll, &selector, NULL, &reply, &error)) {
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

/* Apply the ops in order, one round trip per update or delete and one per run of inserts. A
 * batch is not atomic here (that would need a replica-set transaction): when it fails midway
 * with a negative code, the ops before the failure may be applied, but none is acknowledged. */
static int mongo_apply(struct store *base, struct store_op *ops, size_t n, char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	struct lease l = {0};
	int rc;

	if (n == 0)
		return 0;
	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0;) {
		switch (ops[i].kind) {
		case STORE_OP_INSERT: {
			size_t end = i + 1;
			while (end < n && ops[end].kind == STORE_OP_INSERT)
				end++;
			rc = insert_run(&l, ops + i, end - i, err, errlen);
			i = end;
			break;
		}
		case STORE_OP_UPDATE:
			rc = update_one(&l, &ops[i++], err, errlen);
			break;
		case STORE_OP_DELETE:
			rc = delete_one(&l, &ops[i++], err, errlen);
			break;
		default:
			snprintf(err, errlen, "mongodb: unknown store op %d", (int)ops[i].kind);
			rc = -EIO;
			break;
		}
	}
	lease_give(s, &l);
	return rc;
}

/* Run a find and copy up to max documents into out[0..*n). */
static int find_hooks(struct store_mongo *s, const bson_t *filter, const bson_t *opts,
                      struct store_webhook *out, size_t max, size_t *n, char *err, size_t errlen)
{
	struct lease l = {0};
	mongoc_cursor_t *cursor = NULL;
	const bson_t *doc;
	bson_error_t error;
	int rc;

	*n = 0;
	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		return rc;
	cursor = mongoc_collection_find_with_opts(l.coll, filter, opts, NULL);
	while (*n < max && mongoc_cursor_next(cursor, &doc)) {
		rc = doc_to_hook(doc, &out[*n], err, errlen);
		if (rc != 0)
			goto cleanup;
		(*n)++;
	}
	if (mongoc_cursor_error(cursor, &error))
		rc = fail(&error, "find", err, errlen);
cleanup:
	if (rc != 0)
		*n = 0;
	mongoc_cursor_destroy(cursor);
	lease_give(s, &l);
	return rc;
}

static int mongo_get(struct store *base, const char *id, struct store_webhook *out, char *err,
                     size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
	size_t n = 0;
	int rc;

	BSON_APPEND_UTF8(&filter, "_id", id);
	BSON_APPEND_INT64(&opts, "limit", 1);
	BSON_APPEND_BOOL(&opts, "singleBatch", true);
	rc = find_hooks((struct store_mongo *)base, &filter, &opts, out, 1, &n, err, errlen);
	if (rc == 0 && n == 0) {
		snprintf(err, errlen, "no webhook with id %s", id);
		rc = -ENOENT;
	}
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

static int mongo_list(struct store *base, const char *after, size_t limit,
                      struct store_webhook *out, size_t *n, char *err, size_t errlen)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, range, sort;
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
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, "_id", 1);
	bson_append_document_end(&opts, &sort);
	BSON_APPEND_INT64(&opts, "limit", (int64_t)limit);
	/* The whole page in the first reply instead of 101 documents and then getMores. */
	BSON_APPEND_INT32(&opts, "batchSize", (int32_t)limit);
	rc = find_hooks((struct store_mongo *)base, &filter, &opts, out, limit, n, err, errlen);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

static int mongo_count(struct store *base, int64_t *count, char *err, size_t errlen)
{
	struct store_mongo *s = (struct store_mongo *)base;
	struct lease l = {0};
	bson_t filter = BSON_INITIALIZER;
	bson_error_t error;
	int64_t c;
	int rc;

	rc = lease_take(s, &l, err, errlen);
	if (rc != 0)
		goto cleanup;
	c = mongoc_collection_count_documents(l.coll, &filter, NULL, NULL, NULL, &error);
	if (c < 0) {
		rc = fail(&error, "count", err, errlen);
		goto cleanup;
	}
	*count = c;
cleanup:
	lease_give(s, &l);
	bson_destroy(&filter);
	return rc;
}

static void mongo_destroy(struct store *base)
{
	struct store_mongo *s = (struct store_mongo *)base;
	mongoc_client_pool_destroy(s->pool);
	mongoc_write_concern_destroy(s->wc);
	bson_free(s->db);
	free(s);
}

static const struct store_vtable mongo_vt = {
    .name = "mongodb",
    .destroy = mongo_destroy,
    .apply = mongo_apply,
    .get = mongo_get,
    .list = mongo_list,
    .count = mongo_count,
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
	if (!set_default(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000) ||
	    !set_default(uri, MONGOC_URI_CONNECTTIMEOUTMS, 3000) ||
	    !set_default(uri, MONGOC_URI_SOCKETTIMEOUTMS, 10000) ||
	    !set_default(uri, MONGOC_URI_WAITQUEUETIMEOUTMS, 5000)) {
		snprintf(err, errlen, "mongodb: cannot set the default timeouts on the URI");
		goto fail;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->base.vt = &mongo_vt;
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
		bson_free(s->db);
		free(s);
	}
	mongoc_uri_destroy(uri);
	return NULL;
}
