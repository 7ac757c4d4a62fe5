/* route.h -- what an HTTP request names, read from its text alone: the route of a method and
 * path, the id in the path, the paging arguments, the bearer token and the forwarded address.
 * Pure functions without libmicrohttpd or NATS, so that unit tests and fuzzers call them
 * directly; http_routes.c does the I/O around them. */
#ifndef WEBHOOKS_ROUTE_H
#define WEBHOOKS_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "ids.h"

enum route_id {
	R_NONE = 0,
	R_REGISTER,
	R_LIST,
	R_GET,
	R_UPDATE,
	R_DELETE,
	R_TRIGGER,
	R_EVENT,
	R_DELIVERIES,
	R_HEALTH,
	R_SECRET,
	R_ROTATE,
	R_RETRY,
	R_METRICS, /* served by the gateway itself, not over NATS */
};

#define ROUTE_COUNT (R_METRICS + 1)

struct route_match {
	enum route_id route; /* R_NONE for an unknown path or a wrong method */
	bool known;          /* the path is a route's, whatever the method */
	const char *allow;   /* the methods the path allows, for 405 (NULL when !known) */
	char id[ID_LEN + 1]; /* the path's webhook or event id when well-formed, else "" */
	/* "webhook" or "event" when the path is a route's but its id is malformed: that names
	 * no webhook (event), a 404 like an unknown id once the method and token are checked.
	 * NULL otherwise. */
	const char *bad_id;
};

/* Match path (without the query) and method. HEAD is allowed wherever GET is. Fills m and
 * returns m->route. The strings in m are static. */
enum route_id route_match(const char *path, const char *method, struct route_match *m);

/* The limit query argument: true when text is a decimal integer from 1 to 1000, into *limit. */
bool route_parse_limit(const char *text, long *limit);

/* The after query argument: true when text is "" (no after) or a webhook/event id. */
bool route_valid_after(const char *text);

/* Whether an Authorization header value is "Bearer <token>" with exactly this token: the
 * scheme in any case (RFC 9110), the token compared in constant time for a given token
 * length. header may be NULL. */
bool route_bearer_ok(const char *header, const char *token, size_t token_len);

/* The left-most entry of an X-Forwarded-For header when it is an IPv4 or IPv6 address,
 * written into out (outlen at least INET6_ADDRSTRLEN). Returns false otherwise. */
bool route_forwarded_ip(const char *xff, char *out, size_t outlen);

#endif
