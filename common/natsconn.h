/* natsconn.h -- the NATS connection both processes use: reconnect forever, start while the
 * server is down, write each message at once. */
#ifndef WEBHOOKS_NATSCONN_H
#define WEBHOOKS_NATSCONN_H

#include <nats/nats.h>
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

/* Check a NATS_URL value for cfg_load: NULL when every comma-separated URL in v is nats:// or
 * tls://, else what was expected. */
const char *natsconn_check_url(const char *v);

#endif
