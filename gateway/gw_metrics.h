/* gw_metrics.h -- the gateway's metrics, served on its own port at GET /metrics: requests by
 * route and status code, how long they took, and /ip requests refused by the per-caller rate
 * limit. */
#ifndef WEBHOOKS_GW_METRICS_H
#define WEBHOOKS_GW_METRICS_H

#include <stdint.h>

#include "gateway.h"
#include "route.h"

/* Count one answered request: its route (R_NONE: no route matched, a 404 or 405), the status
 * it was answered with and the microseconds from its first byte to its answer being queued.
 * Lock-free; any thread. */
void gw_metrics_request(enum route_id route, int status, int64_t duration_us);

/* The Prometheus text of every gateway metric (free it with free()), or NULL when out of
 * memory. */
char *gw_metrics_render(struct gw *gw);

#endif
