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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "signature.h"
#include "url.h"

#define STORE_ERR_LEN 256

/* Why a webhook is disabled ("" while it is enabled). */
#define STORE_REASON_LEN 128

struct store_webhook {
	char id[ID_LEN + 1];
	char target_url[URL_MAX_LEN + 1];
	int64_t created_ms; /* wall-clock milliseconds since the epoch */
	int64_t updated_ms;
	char secret[SECRET_MAX_LEN + 1];        /* signs every delivery ("whsec_...") */
	char old_secret[SECRET_MAX_LEN + 1];    /* the one rotated out, or "" */
	int64_t old_until_ms;                   /* it signs beside secret until then */
	char disabled_reason[STORE_REASON_LEN]; /* "" while enabled: a disabled one gets nothing */
	int64_t failing_since_ms; /* when the first of its latest run of failed deliveries
	                           * ended, 0 when the latest delivery succeeded */
};

/* The address of the visitor whose /ip call started an event (IPv6 text is at most 45). */
#define STORE_IP_LEN 64

/* An event: one /ip call, delivered to every webhook registered at the time.
 *
 * Its fan-out runs as a chain of work items, each a range of webhook ids (see
 * delivery/jsqueue.c). Each item is counted once, in chain order, by STORE_OP_EVENT_ITEM:
 * fanned is then the number of deliveries the counted items created, and done says that
 * the last item has been counted, so that fanned is final. Until then targets (the webhook
 * count when the event was triggered) is the best estimate of the total. */
struct store_event {
	char id[ID_LEN + 1];
	char ip[STORE_IP_LEN];
	int64_t created_ms;
	int64_t targets;   /* webhooks registered when the event was triggered (an estimate) */
	int64_t succeeded; /* deliveries that ended with a 2xx (0 from store_get_event_head) */
	int64_t failed;    /* deliveries that ran out of retries (0 from store_get_event_head) */
	int64_t fanned;    /* deliveries created by the work items counted so far */
	int64_t items;     /* work items counted so far: the next one to count is number items */
	bool done;         /* the last work item is counted: fanned is the final total */
};

/* One work item of an event's fan-out, counted by STORE_OP_EVENT_ITEM. */
struct store_event_item {
	char event_id[ID_LEN + 1];
	int64_t item;         /* its place in the event's chain, from 0 */
	int64_t deliveries;   /* deliveries it creates */
	bool last;            /* no item follows it */
	char end[ID_LEN + 1]; /* the greatest webhook id of its range ("" for none) */
	/* The webhooks its deliveries go to, deliveries of them in ascending order, kept with
	 * the count (see store_item_members), or NULL to keep none. Read while the op is
	 * applied: it must live until then. */
	const unsigned char (*members)[ID_BIN_LEN];
};

/* The most members one work item may have (STORE_OP_EVENT_ITEM). */
#define STORE_ITEM_MAX 512

/* A counted work item's membership, as STORE_OP_EVENT_ITEM kept it: which webhooks it
 * delivers to. An item taken again after a crash delivers to exactly these, whatever was
 * deleted, disabled or registered since, so that its count and its records agree. */
struct store_item_members {
	bool found; /* false: none kept (not counted yet, or counted by an older version) */
	bool last;
	char end[ID_LEN + 1];
	size_t n;
	unsigned char ids[STORE_ITEM_MAX][ID_BIN_LEN];
};

/* What is known of the registered webhooks without counting them. */
struct store_meta {
	int64_t webhooks;         /* how many are registered: a counter kept by insert and delete */
	char last_id[ID_LEN + 1]; /* the greatest id ever inserted ("" when none): ids given out
	                           * later are greater, so a trigger's view is a range of ids */
};

enum store_delivery_status {
	STORE_DELIVERY_PENDING = 0,
	STORE_DELIVERY_SUCCEEDED,
	STORE_DELIVERY_FAILED,
};

/* What is recorded of one delivery, for a work item that is taken again after a crash. */
struct store_delivery_state {
	bool found;                        /* false: no attempt of it was recorded */
	enum store_delivery_status status; /* when found */
	int attempts;                      /* attempts recorded, when found */
};

/* One attempt of one delivery, as recorded. */
struct store_attempt {
	char delivery_id[ID_LEN + 1];
	char event_id[ID_LEN + 1];
	char webhook_id[ID_LEN + 1];
	char target_url[URL_MAX_LEN + 1];
	int number;      /* 1 for the first attempt */
	int64_t at_ms;   /* when it was sent, wall clock */
	int http_status; /* 0 when no HTTP answer came */
	char error[128]; /* empty on an HTTP answer, else what went wrong */
	int64_t duration_ms;
	enum store_delivery_status status; /* the delivery's status after this attempt */
	bool reopens;             /* the first attempt of a replay of a failed delivery: it is
	                           * no longer counted as failed */
	bool gone;                /* the target answered 410: the webhook is disabled at once */
	bool not_sent;            /* ended unsent (its webhook deleted or disabled): its
	                           * health is left as it is */
	int64_t disable_after_ms; /* a final failure disables the webhook when every delivery
	                           * has failed for this long (0: never) */
};

/* A delivery as listed: attempts is a JSON array text owned by the struct. */
struct store_delivery {
	char id[ID_LEN + 1];
	char webhook_id[ID_LEN + 1];
	char target_url[URL_MAX_LEN + 1];
	enum store_delivery_status status;
	char *attempts_json; /* free with store_deliveries_free */
};

enum store_op_kind {
	STORE_OP_INSERT,       /* hook: id, target_url, times, secret; counts the webhook and raises
	                        * last_id (store_meta) */
	STORE_OP_ROTATE,       /* hook: id, secret (the new one), old_until_ms: the current secret
	                        * becomes old_secret until then; -ENOENT when there is no such webhook */
	STORE_OP_GIVE_SECRET,  /* hook: id, secret: set only when the webhook has none (stored by
	                        * an older version); 0 either way, -ENOENT for no such webhook */
	STORE_OP_UPDATE,       /* hook: id, target_url ("": kept), updated_ms, disabled_reason (""
	                        * enables it and forgets its failures); on success hook is filled
	                        * with the webhook as stored */
	STORE_OP_DELETE,       /* hook: id; uncounts the webhook */
	STORE_OP_EVENT_INSERT, /* event: id, ip, created_ms, targets (fanned, items 0; not done) */
	STORE_OP_EVENT_ITEM,   /* item: adds deliveries to fanned and sets items = item + 1 and
	                        * done = last, only when the event's items equals item, so that an
	                        * item taken twice is counted once (result 0 either way; -ENOENT
	                        * when there is no such event); keeps its members, end and last
	                        * when it has members and none are kept yet for the item, counted
	                        * or not (in the same transaction as the count on SQLite, just
	                        * before it on MongoDB) */
	STORE_OP_ATTEMPT,      /* attempt: creates the delivery on its first attempt, appends the
	                        * attempt, sets the status, and counts a final status in the event;
	                        * a final status also updates the webhook's health (see
	                        * store_attempt: failing_since_ms, gone, disable_after_ms). Only
	                        * the next attempt of an open delivery is recorded: number is one
	                        * more than the attempts recorded, and the delivery is pending (or
	                        * failed, when reopens). Otherwise the attempt was sent twice and
	                        * the result is -EALREADY, with nothing changed; the very attempt
	                        * recorded last, recorded again, changes nothing and gives 0. */
};

/* One write of a batch. result is set by store_apply: 0, -ENOENT, -EEXIST or -EALREADY. */
struct store_op {
	enum store_op_kind kind;
	union {
		struct store_webhook hook;
		struct store_event event;
		struct store_attempt attempt;
		struct store_event_item item;
	};
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

/* A webhook stored by an older version has no secret: give it one (only where it still has
 * none, so that callers doing this at once agree) and read the webhook again into h, which
 * holds it as read before. Returns 0 (h->secret then set), or -ENOENT, -EAGAIN, -EIO. Does
 * nothing when h has a secret. */
__attribute__((warn_unused_result)) int store_give_secret(struct store *s, struct store_webhook *h,
                                                          char *err, size_t errlen);

/* Read up to limit webhooks with id greater than after (NULL or "" for the first page), in
 * ascending id order, into out[0..*n). Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int store_list(struct store *s, const char *after, size_t limit,
                                                   struct store_webhook *out, size_t *n, char *err,
                                                   size_t errlen);

/* Read the webhook counter and the greatest webhook id into out, without counting rows.
 * Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int store_meta(struct store *s, struct store_meta *out,
                                                   char *err, size_t errlen);

/* Read what is recorded of the deliveries ids[0..n) of event_id into out[0..n) (found is
 * false for one with no recorded attempt). Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int
store_delivery_states(struct store *s, const char *event_id, const char (*ids)[ID_LEN + 1],
                      size_t n, struct store_delivery_state *out, char *err, size_t errlen);

/* Read the membership kept for work item `item` of event_id into out (out->found false when
 * none is kept). Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int store_item_members(struct store *s, const char *event_id,
                                                           int64_t item,
                                                           struct store_item_members *out,
                                                           char *err, size_t errlen);

/* Read an event's summary by id. Returns 0 or -ENOENT, -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int
store_get_event(struct store *s, const char *id, struct store_event *out, char *err, size_t errlen);

/* The same without the outcome counts (succeeded and failed read 0): what the fan-out reads
 * for every work item. MongoDB counts an event's outcomes from its deliveries, which costs in
 * proportion to them; SQLite keeps counters, and both calls cost the same there. */
__attribute__((warn_unused_result)) int store_get_event_head(struct store *s, const char *id,
                                                             struct store_event *out, char *err,
                                                             size_t errlen);

/* Deliveries accepted and not yet ended, over every event (for back-pressure): a trigger's
 * webhooks until its fan-out is counted, then what it fanned out, less what ended. Costs in
 * proportion to the events still open, not to all events. MongoDB looks at the 1,000 oldest
 * open events at most, so with more than that open it counts low. Returns 0 or -EAGAIN,
 * -EIO. */
__attribute__((warn_unused_result)) int store_pending(struct store *s, int64_t *out, char *err,
                                                      size_t errlen);

/* Read up to limit deliveries of an event with id greater than after (NULL or "" for the
 * first page), in ascending id order, into out[0..*n). The caller frees the attempts with
 * store_deliveries_free(out, *n). Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int store_list_deliveries(struct store *s, const char *event_id,
                                                              const char *after, size_t limit,
                                                              struct store_delivery *out, size_t *n,
                                                              char *err, size_t errlen);

/* Free what store_list_deliveries allocated in out[0..n). */
void store_deliveries_free(struct store_delivery *out, size_t n);

/* A failed delivery, for a replay. */
struct store_failed {
	char id[ID_LEN + 1];
	char webhook_id[ID_LEN + 1];
	int attempts; /* recorded so far */
};

/* Read up to limit failed deliveries of event_id with id greater than after (NULL or "" for
 * the first), in ascending id order, into out[0..*n). Returns 0 or -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int
store_failed_deliveries(struct store *s, const char *event_id, const char *after, size_t limit,
                        struct store_failed *out, size_t *n, char *err, size_t errlen);

/* What one store_prune call removed. */
struct store_pruned {
	int64_t events;
	int64_t deliveries;
};

/* Remove up to about max_rows records of the events created before cutoff_ms whose
 * deliveries have all ended (and of any created before cutoff_ms less 30 days), oldest first:
 * their delivery records, then each event once it has none left. Small enough a step to run
 * beside the API and the fan-out; call it again while it removes something. Returns 0 or
 * -EAGAIN, -EIO. */
__attribute__((warn_unused_result)) int store_prune(struct store *s, int64_t cutoff_ms,
                                                    size_t max_rows, struct store_pruned *out,
                                                    char *err, size_t errlen);

/* The reason a webhook is disabled for after every delivery failed for after_ms, into out
 * (STORE_REASON_LEN bytes). */
void store_streak_reason(int64_t after_ms, char *out);

/* The reason a webhook is disabled for when its target answered 410. */
#define STORE_REASON_GONE "the target answered 410 Gone"

#endif
