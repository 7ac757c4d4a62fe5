/* bus.h -- asynchronous NATS request/reply for the gateway.
 *
 * One wildcard subscription on a private inbox receives every reply; each request gets its
 * own reply subject under it and a deadline. The caller's callback runs exactly once per
 * accepted request: with the reply, with a timeout, or with "unavailable" when NATS drops or
 * no service listens. So an HTTP connection can wait for its reply without holding a thread. */
#ifndef WEBHOOKS_BUS_H
#define WEBHOOKS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus;

enum bus_result {
	BUS_REPLY = 0,     /* data/len hold the reply */
	BUS_TIMEOUT,       /* no reply within the timeout */
	BUS_NO_RESPONDERS, /* nobody subscribes to the subject */
	BUS_DISCONNECTED,  /* NATS connection lost while waiting */
	BUS_SHUTTING_DOWN, /* bus_destroy ran first */
};

/* Runs on a NATS or bus thread; data is valid only during the call. */
typedef void (*bus_reply_fn)(void *ctx, enum bus_result result, const char *data, size_t len);

/* Connect to nats_url (retrying forever in the background) with a per-request timeout.
 * Returns NULL with err filled on failure; free with bus_destroy. */
struct bus *bus_create(const char *nats_url, int64_t timeout_ms, char *err, size_t errlen);

/* Publish a request. Returns 0 when accepted (fn will run exactly once), or -ENOTCONN when
 * NATS is not connected now, -ENOMEM, -EIO (fn will not run). */
__attribute__((warn_unused_result)) int bus_request(struct bus *b, const char *subject,
                                                    const char *data, size_t len, bus_reply_fn fn,
                                                    void *ctx);

/* True while the NATS connection is up. */
bool bus_connected(struct bus *b);

/* Requests still waiting for their reply. */
size_t bus_pending(struct bus *b);

/* Refuse new requests (-ESHUTDOWN), close NATS and fail every waiting request with
 * BUS_SHUTTING_DOWN. The bus stays valid for bus_request and bus_connected calls until
 * bus_destroy, so HTTP threads still running may call it safely. Accepts NULL. */
void bus_shutdown(struct bus *b);

/* Shut down if not done yet and free everything. Accepts NULL. */
void bus_destroy(struct bus *b);

#endif
