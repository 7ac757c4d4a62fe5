/* connlimit.h -- open connections per client address, so that one address cannot take every
 * connection the gateway can hold.
 *
 * libmicrohttpd asks connlimit_allows from its accept policy callback, and reports each
 * connection's start and end (connlimit_opened, connlimit_closed) from its connection
 * notifications. The counts live in a fixed table; an address that finds no slot is let in
 * uncounted (the global connection limit still holds), so the table can never lock anyone out
 * by itself. */
#ifndef WEBHOOKS_CONNLIMIT_H
#define WEBHOOKS_CONNLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct connlimit;

/* A limit of per_ip open connections per address, with room for slots addresses. */
struct connlimit *connlimit_create(unsigned per_ip, size_t slots);
void connlimit_destroy(struct connlimit *cl);

/* Whether a new connection from sa may be accepted. Thread-safe. */
bool connlimit_allows(struct connlimit *cl, const struct sockaddr *sa);

/* A connection from sa was opened or closed. Thread-safe. */
void connlimit_opened(struct connlimit *cl, const struct sockaddr *sa);
void connlimit_closed(struct connlimit *cl, const struct sockaddr *sa);

#endif
