/* gateway.h -- the state of one webhooks-gateway process, shared by its modules. */
#ifndef WEBHOOKS_GATEWAY_H
#define WEBHOOKS_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "connlimit.h"
#include "log.h"
#include "ratelimit.h"
#include "readguard.h"

/* Request bodies above this size are refused with 413. */
#define GW_MAX_BODY (64 * 1024)
/* How much of an oversize chunked body is read and dropped before the connection is cut. */
#define GW_MAX_DISCARD (1024 * 1024)

struct gw_config {
	const char *nats_url;
	const char *bind;
	long port;
	const char *admin_token;
	const char *admin_token_file;
	const char *nats_creds;
	bool trust_proxy;
	long nats_timeout_ms;
	const char *ip_rate_limit;
	long max_conns_per_ip;
	long read_timeout_ms;
	enum log_level log_level;
	const char *log_format;
};

struct gw {
	struct gw_config cfg;
	size_t token_len;
	struct bus *bus;
	struct MHD_Daemon *daemon;
	struct ratelimit *limiter;     /* /ip per caller address; NULL when IP_RATE_LIMIT=0 */
	_Atomic uint64_t rate_limited; /* /ip requests answered 429 by the limiter */
	struct connlimit *conns;       /* open connections per address; NULL when unlimited */
	unsigned max_conns;            /* all open connections, below the file descriptor limit */
	_Atomic unsigned open_conns;   /* connections open now */
	struct readguard *guard;       /* each request read within GATEWAY_READ_TIMEOUT_MS */
	/* Requests between their first byte and their completion; shutdown waits for zero. */
	pthread_mutex_t active_lock;
	pthread_cond_t idle;
	size_t active;
	/* Set on SIGTERM: new requests are answered 503 and every answer closes its connection. */
	_Atomic bool draining;
};

#endif
