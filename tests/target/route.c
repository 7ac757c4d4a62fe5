/* route.c -- which behaviour a request path asks webhook-target for. */
#include "route.h"

#include <string.h>

struct cursor {
	const char *p;
	const char *end;
};

/* Takes the next "/segment"; returns 0 when the path has no more segments. */
static int next_segment(struct cursor *c, const char **seg, size_t *n)
{
	const char *slash;

	if (c->p >= c->end || *c->p != '/')
		return 0;
	c->p++;
	slash = memchr(c->p, '/', (size_t)(c->end - c->p));
	if (!slash)
		slash = c->end;
	*seg = c->p;
	*n = (size_t)(slash - c->p);
	c->p = slash;
	return 1;
}

static int seg_is(const char *seg, size_t n, const char *word)
{
	return n == strlen(word) && memcmp(seg, word, n) == 0;
}

/* Reads the next segment as a decimal number no larger than max; returns 0 or -1. */
static int next_number(struct cursor *c, uint64_t max, uint64_t *out)
{
	const char *seg;
	size_t n, i;
	uint64_t v = 0;

	if (!next_segment(c, &seg, &n) || n == 0 || n > 10)
		return -1;
	for (i = 0; i < n; i++) {
		if (seg[i] < '0' || seg[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(seg[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

void route_parse(const char *target, size_t len, struct route *r)
{
	struct cursor c = {target, target + len};
	const char *seg, *q;
	size_t n;
	uint64_t v;

	memset(r, 0, sizeof(*r));
	q = memchr(target, '?', len);
	if (q)
		c.end = q;
	if (!next_segment(&c, &seg, &n)) {
		r->kind = ROUTE_UNKNOWN;
		return;
	}
	r->kind = ROUTE_INVALID;
	if (seg_is(seg, n, "ok")) {
		r->kind = ROUTE_STATUS;
		r->status = 200;
	} else if (seg_is(seg, n, "status")) {
		/* 1xx is not a final status, so it cannot be the answer. */
		if (next_number(&c, 599, &v) == 0 && v >= 200) {
			r->kind = ROUTE_STATUS;
			r->status = (int)v;
		}
	} else if (seg_is(seg, n, "fail")) {
		if (next_number(&c, ROUTE_MAX_COUNT, &r->count) == 0)
			r->kind = ROUTE_FAIL;
	} else if (seg_is(seg, n, "retry-after")) {
		if (next_number(&c, ROUTE_MAX_COUNT, &r->seconds) == 0 &&
		    next_number(&c, ROUTE_MAX_COUNT, &r->count) == 0)
			r->kind = ROUTE_RETRY_AFTER;
	} else if (seg_is(seg, n, "slow")) {
		if (next_number(&c, ROUTE_MAX_MS, &r->ms) == 0)
			r->kind = ROUTE_SLOW;
	} else if (seg_is(seg, n, "hang")) {
		r->kind = ROUTE_HANG;
	} else if (seg_is(seg, n, "close")) {
		r->kind = ROUTE_CLOSE;
	} else {
		r->kind = ROUTE_UNKNOWN;
	}
}
