/* gw_metrics.c -- the gateway's metrics (see gw_metrics.h). */
#include "gw_metrics.h"

#include "metrics.h"

/* Every route's label, never the raw path: the label set stays fixed whatever is requested. */
static const char *const route_names[] = {
    [R_NONE] = "unknown",    [R_REGISTER] = "register", [R_LIST] = "list",
    [R_GET] = "get",         [R_UPDATE] = "update",     [R_DELETE] = "delete",
    [R_TRIGGER] = "trigger", [R_EVENT] = "event",       [R_DELIVERIES] = "deliveries",
    [R_HEALTH] = "health",   [R_SECRET] = "secret",     [R_ROTATE] = "rotate",
    [R_RETRY] = "retry",     [R_METRICS] = "metrics",
};
_Static_assert(sizeof(route_names) / sizeof(route_names[0]) == ROUTE_COUNT,
               "every route needs a label in route_names");

/* The statuses the gateway answers with; anything else is counted as "other". */
static const int code_values[] = {200, 201, 202, 204, 400, 401, 404, 405, 413, 429, 500, 503, 504};
#define NCODES (sizeof(code_values) / sizeof(code_values[0]) + 1)
static const char *const code_names[NCODES] = {"200", "201", "202", "204", "400", "401", "404",
                                               "405", "413", "429", "500", "503", "504", "other"};

static _Atomic uint64_t request_cells[ROUTE_COUNT * NCODES];
static struct metric requests = {
    .kind = METRIC_COUNTER,
    .name = "webhooks_http_requests_total",
    .help = "HTTP requests answered by the gateway, by route (unknown: no route matched) and "
            "status code.",
    .n_labels = 2,
    .labels = {{"route", route_names, ROUTE_COUNT}, {"code", code_names, NCODES}},
    .skip_zero = true,
    .cells = request_cells,
};

static const uint64_t duration_bounds[] = {500,     1000,    2500,    5000,    10000,
                                           25000,   50000,   100000,  250000,  500000,
                                           1000000, 2500000, 5000000, 10000000};
#define NBOUNDS (sizeof(duration_bounds) / sizeof(duration_bounds[0]))
static _Atomic uint64_t duration_cells[ROUTE_COUNT * (NBOUNDS + 1)];
static _Atomic uint64_t duration_sums[ROUTE_COUNT];
static struct metric durations = {
    .kind = METRIC_HISTOGRAM,
    .name = "webhooks_http_request_duration_seconds",
    .help = "Time from a request's first byte to its answer, NATS round trip included, by "
            "route.",
    .n_labels = 1,
    .labels = {{"route", route_names, ROUTE_COUNT}},
    .bounds_us = duration_bounds,
    .n_bounds = NBOUNDS,
    .skip_zero = true,
    .cells = duration_cells,
    .sums_us = duration_sums,
};

static size_t code_index(int status)
{
	for (size_t i = 0; i < NCODES - 1; i++)
		if (code_values[i] == status)
			return i;
	return NCODES - 1;
}

void gw_metrics_request(enum route_id route, int status, int64_t duration_us)
{
	size_t r = (size_t)route < ROUTE_COUNT ? (size_t)route : (size_t)R_NONE;
	metric_inc(&requests, r * NCODES + code_index(status));
	metric_observe_us(&durations, r, duration_us > 0 ? (uint64_t)duration_us : 0);
}

char *gw_metrics_render(struct gw *gw)
{
	struct metrics_buf b = {0};
	metrics_render(&b, &requests);
	metrics_render(&b, &durations);
	metrics_render_value(&b, METRIC_COUNTER, "webhooks_ip_rate_limited_total",
	                     "GET /ip requests answered 429 by the per-caller rate limit "
	                     "(IP_RATE_LIMIT).",
	                     true, (int64_t)atomic_load(&gw->rate_limited));
	return metrics_buf_take(&b);
}
