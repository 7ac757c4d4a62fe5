/* store.c -- picks the store backend from STORE_URL and forwards calls to it. */
#include "store_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "timeutil.h"

struct store *store_open(const char *url, char *err, size_t errlen)
{
	if (strncmp(url, "sqlite:", 7) == 0)
		return store_sqlite_open(url + 7, err, errlen);
	if (strncmp(url, "mongodb://", 10) == 0 || strncmp(url, "mongodb+srv://", 14) == 0)
		return store_mongo_open(url, err, errlen);
	snprintf(err, errlen, "STORE_URL must start with sqlite: or mongodb://");
	return NULL;
}

void store_destroy(struct store *s)
{
	if (s != NULL)
		s->vt->destroy(s);
}

const char *store_backend(const struct store *s)
{
	return s->vt->name;
}

int store_apply(struct store *s, struct store_op *ops, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const struct store_event_item *item = &ops[i].item;
		if (ops[i].kind == STORE_OP_EVENT_ITEM && item->members != NULL &&
		    (item->deliveries < 0 || item->deliveries > STORE_ITEM_MAX)) {
			snprintf(err, errlen, "a work item of %lld members (at most %d)",
			         (long long)item->deliveries, STORE_ITEM_MAX);
			return -EIO;
		}
	}
	return s->vt->apply(s, ops, n, err, errlen);
}

int store_get(struct store *s, const char *id, struct store_webhook *out, char *err, size_t errlen)
{
	return s->vt->get(s, id, out, err, errlen);
}

int store_give_secret(struct store *s, struct store_webhook *h, char *err, size_t errlen)
{
	if (h->secret[0] != '\0')
		return 0;
	struct store_op op = {.kind = STORE_OP_GIVE_SECRET};
	memcpy(op.hook.id, h->id, sizeof(op.hook.id));
	if (secret_generate(op.hook.secret) != 0) {
		snprintf(err, errlen, "no random bytes for a secret");
		return -EIO;
	}
	int rc = store_apply(s, &op, 1, err, errlen);
	if (rc == 0 && op.result != 0) {
		snprintf(err, errlen, "no webhook with id %s", h->id);
		rc = op.result;
	}
	return rc == 0 ? store_get(s, op.hook.id, h, err, errlen) : rc;
}

int store_list(struct store *s, const char *after, size_t limit, struct store_webhook *out,
               size_t *n, char *err, size_t errlen)
{
	return s->vt->list(s, after, limit, out, n, err, errlen);
}

int store_meta(struct store *s, struct store_meta *out, char *err, size_t errlen)
{
	return s->vt->meta(s, out, err, errlen);
}

int store_delivery_states(struct store *s, const char *event_id, const char (*ids)[ID_LEN + 1],
                          size_t n, struct store_delivery_state *out, char *err, size_t errlen)
{
	return n == 0 ? 0 : s->vt->delivery_states(s, event_id, ids, n, out, err, errlen);
}

int store_item_members(struct store *s, const char *event_id, int64_t item,
                       struct store_item_members *out, char *err, size_t errlen)
{
	out->found = false;
	out->n = 0;
	return s->vt->item_members(s, event_id, item, out, err, errlen);
}

int store_get_event(struct store *s, const char *id, struct store_event *out, char *err,
                    size_t errlen)
{
	return s->vt->get_event(s, id, true, out, err, errlen);
}

int store_pending(struct store *s, int64_t *out, char *err, size_t errlen)
{
	*out = 0;
	return s->vt->pending(s, out, err, errlen);
}

int store_get_event_head(struct store *s, const char *id, struct store_event *out, char *err,
                         size_t errlen)
{
	return s->vt->get_event(s, id, false, out, err, errlen);
}

int store_list_deliveries(struct store *s, const char *event_id, const char *after, size_t limit,
                          struct store_delivery *out, size_t *n, char *err, size_t errlen)
{
	*n = 0;
	return s->vt->list_deliveries(s, event_id, after, limit, out, n, err, errlen);
}

int store_failed_deliveries(struct store *s, const char *event_id, const char *after, size_t limit,
                            struct store_failed *out, size_t *n, char *err, size_t errlen)
{
	*n = 0;
	return s->vt->failed_deliveries(s, event_id, after, limit, out, n, err, errlen);
}

int store_prune(struct store *s, int64_t cutoff_ms, size_t max_rows, struct store_pruned *out,
                char *err, size_t errlen)
{
	*out = (struct store_pruned){0};
	return s->vt->prune(s, cutoff_ms, max_rows, out, err, errlen);
}

void store_streak_reason(int64_t after_ms, char *out)
{
	static const struct {
		int64_t ms;
		const char *unit;
	} units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
	size_t i = 0;
	while (i + 1 < sizeof(units) / sizeof(units[0]) && after_ms % units[i].ms != 0)
		i++;
	snprintf(out, STORE_REASON_LEN, "every delivery failed for %lld%s (DISABLE_AFTER)",
	         (long long)(after_ms / units[i].ms), units[i].unit);
}

void store_deliveries_free(struct store_delivery *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(out[i].attempts_json);
		out[i].attempts_json = NULL;
	}
}

void store_attempt_json(const struct store_attempt *a, char *out, size_t outlen)
{
	char at[TIME_RFC3339_LEN + 1];
	time_rfc3339(a->at_ms, at);
	json_t *o =
	    json_pack("{s:i, s:s, s:o, s:o, s:I}", "attempt", a->number, "at", at, "httpStatus",
	              a->http_status > 0 ? json_integer(a->http_status) : json_null(), "error",
	              a->error[0] != '\0' ? json_string(a->error) : json_null(), "durationMs",
	              (json_int_t)a->duration_ms);
	size_t n = o != NULL ? json_dumpb(o, out, outlen - 1, JSON_COMPACT) : 0;
	if (n == 0 || n >= outlen)
		snprintf(out, outlen, "{\"attempt\":%d}", a->number);
	else
		out[n] = '\0';
	json_decref(o);
}
