/* store_mongo.c -- placeholder until the MongoDB backend lands. */
#include "store_backend.h"

#include <stdio.h>

struct store *store_mongo_open(const char *url, char *err, size_t errlen)
{
	(void)url;
	snprintf(err, errlen, "the MongoDB backend is not built yet");
	return NULL;
}
