/* natsconn.h -- the NATS connection both processes use: reconnect forever, start while the
 * server is down, write each message at once. */
#ifndef WEBHOOKS_NATSCONN_H
#define WEBHOOKS_NATSCONN_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>

/* Connect to url as client name. Returns at once even when the server is not reachable yet
 * (the library keeps trying in the background, forever, as it does after a drop). Logs
 * connects, drops and reconnects; on a drop that is not our own close, also calls
 * on_drop(nc, closure) when given. Returns 0 with *nc set (the caller destroys it), or -EIO
 * with err filled. */
__attribute__((warn_unused_result)) int natsconn_open(natsConnection **nc, const char *url,
                                                      const char *name,
                                                      natsConnectionHandler on_drop, void *closure,
                                                      char *err, size_t errlen);

/* True once the server has refused our credentials for good: the process has been sent
 * SIGTERM and should exit 1. */
bool natsconn_refused(void);

/* When nc's last error is an authorization error, say so (once) and mark the process as
 * refused (as above); returns natsconn_refused(). For a caller whose first use of a closed
 * connection failed, so that its error line says why. */
bool natsconn_check_refused(natsConnection *nc);

/* Use the credentials in the .creds file at path (NATS_CREDS: a user JWT and its nkey seed)
 * for every connection natsconn_open makes; NULL or "" for none. Call before natsconn_open. */
void natsconn_set_creds(const char *path);

/* For NATS_CREDS's check: NULL when path is empty or a readable file, else what was expected. */
const char *natsconn_check_creds(const char *path);

/* Check a NATS_URL value for cfg_load: NULL when every comma-separated URL in v is nats:// or
 * tls://, else what was expected. */
const char *natsconn_check_url(const char *v);

#endif
