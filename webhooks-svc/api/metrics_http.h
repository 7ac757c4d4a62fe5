/* metrics_http.h -- a small libmicrohttpd server for Prometheus: GET (or HEAD) /metrics
 * answers the text a callback renders, every other path 404. No authentication: it listens
 * on loopback unless METRICS_BIND says otherwise. */
#ifndef WEBHOOKS_METRICS_HTTP_H
#define WEBHOOKS_METRICS_HTTP_H

#include <stddef.h>

/* Renders the whole text (the server frees it), or NULL when out of memory. Called on the
 * server's own thread, one scrape at a time. */
typedef char *(*metrics_http_render_fn)(void *ctx);

struct metrics_http;

/* Listen on bind (an IPv4 or IPv6 address) and port (0: a free port the system picks).
 * Returns NULL with err filled when it cannot. */
struct metrics_http *metrics_http_create(const char *bind, long port, metrics_http_render_fn render,
                                         void *ctx, char *err, size_t errlen);

/* The port it listens on (the one picked, for port 0). */
unsigned metrics_http_port(const struct metrics_http *h);

/* Stop the server (a scrape in progress finishes first) and free it. Accepts NULL. */
void metrics_http_destroy(struct metrics_http *h);

#endif
