/* store_backend.h -- what a store backend implements; only store*.c include this. */
#ifndef WEBHOOKS_STORE_BACKEND_H
#define WEBHOOKS_STORE_BACKEND_H

#include "store.h"

struct store_vtable {
	const char *name;
	void (*destroy)(struct store *s);
	int (*apply)(struct store *s, struct store_op *ops, size_t n, char *err, size_t errlen);
	int (*get)(struct store *s, const char *id, struct store_webhook *out, char *err,
	           size_t errlen);
	int (*list)(struct store *s, const char *after, size_t limit, struct store_webhook *out,
	            size_t *n, char *err, size_t errlen);
	int (*meta)(struct store *s, struct store_meta *out, char *err, size_t errlen);
	int (*delivery_states)(struct store *s, const char *event_id, const char (*ids)[ID_LEN + 1],
	                       size_t n, struct store_delivery_state *out, char *err,
	                       size_t errlen);
	int (*item_members)(struct store *s, const char *event_id, int64_t item,
	                    struct store_item_members *out, char *err, size_t errlen);
	/* counts: fill succeeded and failed too (else they are 0). */
	int (*get_event)(struct store *s, const char *id, bool counts, struct store_event *out,
	                 char *err, size_t errlen);
	int (*pending)(struct store *s, int64_t *out, char *err, size_t errlen);
	int (*list_deliveries)(struct store *s, const char *event_id, const char *after,
	                       size_t limit, struct store_delivery *out, size_t *n, char *err,
	                       size_t errlen);
	int (*failed_deliveries)(struct store *s, const char *event_id, const char *after,
	                         size_t limit, struct store_failed *out, size_t *n, char *err,
	                         size_t errlen);
	int (*prune)(struct store *s, int64_t cutoff_ms, size_t max_rows, struct store_pruned *out,
	             char *err, size_t errlen);
};

/* Every backend's state begins with this header. */
struct store {
	const struct store_vtable *vt;
};

/* One attempt as the JSON object the API shows, written into out (NUL-terminated):
 * {"attempt", "at", "httpStatus" (null without an answer), "error" (null on an answer),
 * "durationMs"}. Both backends record exactly this. */
void store_attempt_json(const struct store_attempt *a, char *out, size_t outlen);

/* Events older than the retention cutoff by this much are pruned even if some of their
 * deliveries never ended (no retry waits longer). */
#define STORE_PRUNE_OPEN_AFTER_MS (30LL * 24 * 3600 * 1000)

/* Backend constructors: path is what follows "sqlite:"; url is the whole MongoDB URI. */
struct store *store_sqlite_open(const char *path, char *err, size_t errlen);
struct store *store_mongo_open(const char *url, char *err, size_t errlen);

#endif
