/* route.h -- which behaviour a request path asks webhook-target for. */
#ifndef TARGET_ROUTE_H
#define TARGET_ROUTE_H

#include <stddef.h>
#include <stdint.h>

enum route_kind {
	ROUTE_STATUS,      /* /ok/..., /status/NNN/...: answer status now */
	ROUTE_FAIL,        /* /fail/K/...: 503 for the first K requests to the path, then 200 */
	ROUTE_RETRY_AFTER, /* /retry-after/S/K/...: 429 with Retry-After: S, K times, then 200 */
	ROUTE_SLOW,        /* /slow/MS/...: 200 after ms milliseconds */
	ROUTE_HANG,        /* /hang/...: never answer */
	ROUTE_CLOSE,       /* /close/...: close without answering */
	ROUTE_UNKNOWN,     /* no behaviour of that name: 404 */
	ROUTE_INVALID,     /* a behaviour with a bad argument: 400 */
};

struct route {
	enum route_kind kind;
	int status;
	uint64_t count;
	uint64_t seconds;
	uint64_t ms;
};

/* Upper bounds of the numeric arguments; larger ones make the route ROUTE_INVALID. */
#define ROUTE_MAX_COUNT 1000000000ULL
#define ROUTE_MAX_MS    86400000ULL

/*
 * Reads the behaviour from a request target such as "/fail/2/hook-17?x=1". Segments after the
 * behaviour's own are a free label; the query is ignored. Fills *r; never fails.
 */
void route_parse(const char *target, size_t len, struct route *r);

#endif
