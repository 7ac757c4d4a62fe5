/* store.h -- the webhook store: one interface, two backends (SQLite and MongoDB).
 *
 * Callers never see SQL or BSON. Every function may be called from any thread at the same
 * time. Errors are negative errno-style codes:
 *   -ENOENT  no such webhook
 *   -EEXIST  the id is taken
 *   -EAGAIN  the backend is unreachable or busy now (answer 503, the caller may retry)
 *   -EIO     anything else (answer 500)
 * with a sentence for a person in the caller's err buffer. */
#ifndef WEBHOOKS_STORE_H
#define WEBHOOKS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "url.h"

#define STORE_ERR_LEN 256

struct store_webhook {
	char id[ID_LEN + 1];
	char target_url[URL_MAX_LEN + 1];
	int64_t created_ms; /* wall-clock milliseconds since the epoch */
	int64_t updated_ms;
};

enum store_op_kind {
	STORE_OP_INSERT, /* hook: every field */
	STORE_OP_UPDATE, /* hook: id, target_url, updated_ms; created_ms is filled on success */
	STORE_OP_DELETE, /* hook: id */
};

/* One write of a batch. result is set by store_apply: 0, -ENOENT or -EEXIST. */
struct store_op {
	enum store_op_kind kind;
	struct store_webhook hook;
	int result;
};

struct store;

/* Open the store named by url: "sqlite:PATH" or "mongodb://..." (also "mongodb+srv://").
 * Creates the schema or indexes when missing. Returns NULL with err filled on failure;
 * the caller frees the store with store_destroy. */
struct store *store_open(const char *url, char *err, size_t errlen);

/* Close the store and free everything it holds. Accepts NULL. */
void store_destroy(struct store *s);

/* The backend's name: "sqlite" or "mongodb". */
const char *store_backend(const struct store *s);

/* Apply a batch of writes as one durable unit where the backend allows (one SQLite
 * transaction; MongoDB applies them in order with majority-acknowledged writes).
 * Returns 0 when every op's outcome is durable and recorded in its result, or a negative
 * code when the batch as a whole failed and nothing of it may be acknowledged. */
__attribute__((warn_unused_result)) int store_apply(struct store *s, struct store_op *ops, size_t n,
                                                    char *err, size_t errlen);

/* Read one webhook by id into out. Returns 0 or -ENOENT, -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int
store_get(struct store *s, const char *id, struct store_webhook *out, char *err, size_t errlen);

/* Read up to limit webhooks with id greater than after (NULL or "" for the first page), in
 * ascending id order, into out[0..*n). Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int store_list(struct store *s, const char *after, size_t limit,
                                                   struct store_webhook *out, size_t *n, char *err,
                                                   size_t errlen);

/* Count the registered webhooks into *count. Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int store_count(struct store *s, int64_t *count, char *err,
                                                    size_t errlen);

#endif
