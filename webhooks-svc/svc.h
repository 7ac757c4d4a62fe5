/* svc.h -- the state of one webhooks-svc process, shared by its modules. */
#ifndef WEBHOOKS_SVC_H
#define WEBHOOKS_SVC_H

#include <nats/nats.h>
#include <stdbool.h>

#include "addrpolicy.h"
#include "config.h"
#include "dispatch.h"
#include "jsqueue.h"
#include "log.h"
#include "metrics_http.h"
#include "pressure.h"
#include "retention.h"
#include "store.h"
#include "writer.h"

/* The queue group every instance joins, so that each request reaches one instance. */
#define SVC_QUEUE_GROUP "webhooks-svc"

struct svc_config {
	const char *nats_url;
	const char *nats_creds;
	const char *store_url;
	long max_in_flight;
	long max_retries;
	struct cfg_durations retry_schedule;
	long delivery_timeout_ms;
	enum log_level log_level;
	const char *log_format;
	bool allow_private_targets;
	const char *target_allow_cidrs;
	long max_pending_deliveries;         /* 0: no bound */
	long max_in_flight_per_host;         /* -1: half of max_in_flight; 0: no limit */
	struct cfg_durations rotation_grace; /* one duration */
	int64_t rotation_grace_ms;
	struct cfg_durations retention;     /* one duration */
	int64_t retention_ms;               /* 0: events are kept for ever */
	struct cfg_durations disable_after; /* one duration */
	int64_t disable_after_ms;           /* 0: failures never disable a webhook */
	struct cfg_durations ack_wait;      /* one duration */
	int64_t ack_wait_ms;
	struct cfg_durations progress_interval; /* one duration */
	int64_t progress_interval_ms;           /* 0: no progress lines */
	const char *metrics_bind;
	long metrics_port; /* 0: a free port the system picks; -1: no metrics server */
};

struct svc {
	struct svc_config cfg;
	struct addr_policy targets; /* where deliveries may go: registration and connect time */
	natsConnection *nc;
	struct store *store;
	struct writer *writer; /* API writes: webhooks and events, replied when durable */
	struct jsq *queue;     /* fan-out and retries on JetStream, with its own recorder */
	struct dispatch *dispatch;
	struct pressure *pressure;   /* NULL when MAX_PENDING_DELIVERIES=0 */
	struct retention *retention; /* NULL when RETENTION=0s */
	struct progress *progress;   /* NULL when PROGRESS_INTERVAL=0s */
	/* GET /metrics on METRICS_BIND:METRICS_PORT; NULL when METRICS_PORT=-1. */
	struct metrics_http *metrics;
	natsSubscription *subs[32];
	int nsubs;
};

#endif
