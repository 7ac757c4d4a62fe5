/* store.c -- picks the store backend from STORE_URL and forwards calls to it. */
#include "store_backend.h"

#include <stdio.h>
#include <string.h>

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
	return s->vt->apply(s, ops, n, err, errlen);
}

int store_get(struct store *s, const char *id, struct store_webhook *out, char *err, size_t errlen)
{
	return s->vt->get(s, id, out, err, errlen);
}

int store_list(struct store *s, const char *after, size_t limit, struct store_webhook *out,
               size_t *n, char *err, size_t errlen)
{
	return s->vt->list(s, after, limit, out, n, err, errlen);
}

int store_count(struct store *s, int64_t *count, char *err, size_t errlen)
{
	return s->vt->count(s, count, err, errlen);
}
