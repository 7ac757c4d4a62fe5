/* readguard.h -- a deadline for reading each request, so that slow clients cannot hold
 * connections for ever.
 *
 * libmicrohttpd's connection timeout is an inactivity timeout: a client that sends one byte
 * every few seconds (slow headers or a slow body) keeps its connection open as long as it
 * likes, and enough of them keep everyone else out. Here each connection must have sent a whole
 * request within timeout_ms of its start, or of the end of its previous response (keep-alive);
 * one that has not is shut down (shutdown(2) on its socket, which libmicrohttpd then sees as the
 * client leaving and closes). While a request is being answered it has no deadline: the reply
 * from the service has a timeout of its own.
 *
 * Deadlines are kept in one list in the order they fall due (each is now + timeout_ms, so
 * appending keeps it sorted), and one thread waits for the first of them: no polling. */
#ifndef WEBHOOKS_READGUARD_H
#define WEBHOOKS_READGUARD_H

#include <stdint.h>

struct readguard;
struct rg_conn;

/* Start the guard's thread. NULL when out of resources. */
struct readguard *readguard_create(int64_t timeout_ms);

/* Stop the thread and free. Every connection must have been closed first. Accepts NULL. */
void readguard_destroy(struct readguard *g);

/* A connection on socket fd was opened: its first request is due within the timeout. NULL when
 * out of memory (the connection then has no deadline). Thread-safe, like the calls below; each
 * accepts a NULL guard or connection and then does nothing. */
struct rg_conn *readguard_opened(struct readguard *g, int fd);

/* Its current request has been read whole: no deadline until its response is done. */
void readguard_read(struct readguard *g, struct rg_conn *c);

/* Its response is done: the next request on it is due within the timeout. */
void readguard_next(struct readguard *g, struct rg_conn *c);

/* It was closed (before its socket is): forget and free it. Accepts NULL. */
void readguard_closed(struct readguard *g, struct rg_conn *c);

/* How many connections have been cut so far. */
uint64_t readguard_cut_count(struct readguard *g);

#endif
