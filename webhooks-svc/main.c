/* main.c -- webhooks-svc: owns the store, answers the webhooks.* NATS subjects.
 *
 * The main thread does no request work. Its loop:
 *   1. parse the configuration (a bad value stops the process with one line);
 *   2. block SIGTERM/SIGINT in every thread, so that only the main thread sees them;
 *   3. open the store and the API's group-commit writer, connect to NATS (retrying forever in
 *      the background when the server is down), create the JetStream delivery queue and the
 *      dispatcher thread, start the queue's fetchers (which set up the stream and consumers
 *      once JetStream answers), start the metrics server (METRICS_PORT) and subscribe to the
 *      API subjects in the queue group;
 *   4. wait in sigwait() until SIGTERM or SIGINT: requests are handled meanwhile on the NATS
 *      library's delivery threads, writes on the writer thread, work messages on the queue's
 *      fetcher threads, transfers on the dispatcher's thread, scrapes on the metrics thread;
 *   5. drain, within 5 s in all: stop the metrics server, stop fetching work, stop taking
 *      requests and finish the ones received (DRAIN_MS), complete the queued writes and reply,
 *      let in-flight deliveries finish (DISPATCH_DRAIN_MS) and hand the rest back to
 *      JetStream, make the recorded outcomes durable and ack what they finish, nak every
 *      message not finished, close NATS and the store, exit 0.
 */
#include <errno.h>
#include <malloc.h>
#include <curl/curl.h>
#include <limits.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "natsconn.h"
#include "signature.h"
#include "svc.h"
#include "svc_metrics.h"
#include "url.h"

#define WRITER_CAPACITY   1024
#define WRITER_BATCH      512
#define DRAIN_MS          1000
#define DISPATCH_DRAIN_MS 2500
/* How often the fleet's pending deliveries are read for back-pressure. */
#define PRESSURE_REFRESH_MS 1000
#define QUEUE_READY_WAIT_MS 2000 /* how long "ready" waits for the delivery queue */

static const char *check_store_url(const char *v)
{
	if ((strncmp(v, "sqlite:", 7) == 0 && v[7] != '\0') || strncmp(v, "mongodb://", 10) == 0 ||
	    strncmp(v, "mongodb+srv://", 14) == 0)
		return NULL;
	return "sqlite:PATH or mongodb://HOST:PORT/DB";
}

static const char *check_cidrs(const char *v)
{
	static struct addr_policy scratch; /* only main's thread parses the configuration */
	char err[160];
	if (addr_policy_init(&scratch, false, v, err, sizeof(err)) != 0)
		return "comma-separated CIDRs such as 10.0.0.0/8,fd00::/8 (at most 64)";
	return NULL;
}

static void wake_dispatcher(void *ctx)
{
	dispatch_wakeup(ctx);
}

static char *render_metrics(void *ctx)
{
	return svc_metrics_render(ctx);
}

int main(int argc, char **argv)
{
	/* Work items (about 600 KiB each) come from the heap and what is freed stays there for
	 * the next, instead of a fresh mmap whose every page faults on first touch; memory stays
	 * bounded by the queue's own bounds. Fails only for a bad value. */
	(void)mallopt(M_MMAP_THRESHOLD, 4 << 20);
	(void)mallopt(M_TRIM_THRESHOLD, 32 << 20);
	struct svc svc = {0};
	struct svc_config *c = &svc.cfg;
	const struct cfg_option options[] = {
	    {"NATS_URL", "--nats-url", CFG_STRING, "nats://127.0.0.1:4222", "NATS server URL", 0, 0,
	     natsconn_check_url, &c->nats_url},
	    {"NATS_CREDS", "--nats-creds", CFG_STRING, "",
	     "a .creds file (user JWT and nkey seed) for NATS", 0, 0, natsconn_check_creds,
	     &c->nats_creds},
	    {"STORE_URL", "--store-url", CFG_STRING, "sqlite:data/webhooks.db",
	     "where webhooks are stored: sqlite:PATH or mongodb://HOST:PORT/DB", 0, 0,
	     check_store_url, &c->store_url},
	    {"MAX_IN_FLIGHT", "--max-in-flight", CFG_INT, "10", "most deliveries in flight at once",
	     1, 100000, NULL, &c->max_in_flight},
	    {"MAX_RETRIES", "--max-retries", CFG_INT, "5",
	     "retries after a failed delivery attempt", 0, 100, NULL, &c->max_retries},
	    {"RETRY_SCHEDULE", "--retry-schedule", CFG_DURATIONS, "1s,5s,30s,2m,10m",
	     "delays before each retry; the last repeats", 0, 0, NULL, &c->retry_schedule},
	    {"DELIVERY_TIMEOUT_MS", "--delivery-timeout-ms", CFG_INT, "10000",
	     "time limit for one delivery attempt", 100, 600000, NULL, &c->delivery_timeout_ms},
	    {"LOG_LEVEL", "--log-level", CFG_LOG_LEVEL, "info", "error, warn, info or debug", 0, 0,
	     NULL, &c->log_level},
	    {"LOG_FORMAT", "--log-format", CFG_STRING, "text",
	     "text, or json for one JSON object a line", 0, 0, log_check_format, &c->log_format},
	    {"ALLOW_PRIVATE_TARGETS", "--allow-private-targets", CFG_BOOL, "0",
	     "deliver to loopback, private and other non-public addresses too", 0, 0, NULL,
	     &c->allow_private_targets},
	    {"MAX_IN_FLIGHT_PER_HOST", "--max-in-flight-per-host", CFG_INT, "-1",
	     "transfers to one host at once, so that slow hosts cannot take every slot "
	     "(-1: half the in-flight limit, at least 1; 0: no limit)",
	     -1, 100000, NULL, &c->max_in_flight_per_host},
	    {"SECRET_ROTATION_GRACE", "--secret-rotation-grace", CFG_DURATIONS, "24h",
	     "how long a rotated-out secret keeps signing beside the new one", 0, 0, NULL,
	     &c->rotation_grace},
	    {"MAX_PENDING_DELIVERIES", "--max-pending-deliveries", CFG_INT, "1000000",
	     "deliveries accepted and not yet ended, over every instance, above which /ip answers "
	     "429 (0: no bound)",
	     0, LONG_MAX, NULL, &c->max_pending_deliveries},
	    {"TARGET_ALLOW_CIDRS", "--target-allow-cidrs", CFG_STRING, "",
	     "comma-separated CIDRs that deliveries may reach although not public", 0, 0,
	     check_cidrs, &c->target_allow_cidrs},
	    {"RETENTION", "--retention", CFG_DURATIONS, "30d",
	     "events and their delivery records older than this are pruned (0s: kept for ever)", 0,
	     0, NULL, &c->retention},
	    {"PROGRESS_INTERVAL", "--progress-interval", CFG_DURATIONS, "5s",
	     "how often progress is logged while an event of 1000 or more deliveries is "
	     "delivered (0s: never)",
	     0, 0, NULL, &c->progress_interval},
	    {"DISABLE_AFTER", "--disable-after", CFG_DURATIONS, "5d",
	     "a webhook whose deliveries have all failed for this long is disabled (0s: never)", 0,
	     0, NULL, &c->disable_after},
	    {"ACK_WAIT", "--ack-wait", CFG_DURATIONS, "30s",
	     "work an instance holds without word this long (it crashed or stalled) goes to "
	     "another instance; 1s to 1h, the same on every instance",
	     0, 0, NULL, &c->ack_wait},
	    {"METRICS_BIND", "--metrics-bind", CFG_STRING, "127.0.0.1",
	     "address of the Prometheus endpoint GET /metrics (no authentication: keep it private)",
	     0, 0, cfg_check_address, &c->metrics_bind},
	    {"METRICS_PORT", "--metrics-port", CFG_INT, "9090",
	     "port of GET /metrics (0 picks a free one, logged at start; -1 serves no metrics)", -1,
	     65535, NULL, &c->metrics_port},
	};
	int rc = cfg_load(options, sizeof(options) / sizeof(options[0]), argc, argv, "webhooks-svc",
	                  "webhooks-svc: stores webhooks and delivers events, answering the "
	                  "webhooks.* NATS subjects.");
	if (rc != CFG_OK)
		return rc == CFG_HELP ? 0 : 2;
	log_set_level(c->log_level);
	(void)log_set_format(c->log_format); /* checked by cfg_load */
	char err[512];
	if (c->rotation_grace.n != 1) {
		fprintf(stderr,
		        "webhooks-svc: SECRET_ROTATION_GRACE: expected one duration such as "
		        "24h, got %zu\n",
		        c->rotation_grace.n);
		return 2;
	}
	c->rotation_grace_ms = c->rotation_grace.ms[0];
	if (c->retention.n != 1 || c->disable_after.n != 1 || c->progress_interval.n != 1) {
		fprintf(stderr, "webhooks-svc: %s: expected one duration such as 5d\n",
		        c->retention.n != 1       ? "RETENTION"
		        : c->disable_after.n != 1 ? "DISABLE_AFTER"
		                                  : "PROGRESS_INTERVAL");
		return 2;
	}
	if (c->ack_wait.n != 1 || c->ack_wait.ms[0] < JSQ_ACK_WAIT_MIN_MS ||
	    c->ack_wait.ms[0] > JSQ_ACK_WAIT_MAX_MS) {
		fprintf(stderr,
		        "webhooks-svc: ACK_WAIT: expected one duration from 1s to 1h such as "
		        "30s\n");
		return 2;
	}
	c->ack_wait_ms = c->ack_wait.ms[0];
	c->progress_interval_ms = c->progress_interval.ms[0];
	c->retention_ms = c->retention.ms[0];
	c->disable_after_ms = c->disable_after.ms[0];
	if (addr_policy_init(&svc.targets, c->allow_private_targets, c->target_allow_cidrs, err,
	                     sizeof(err)) != 0) {
		fprintf(stderr, "webhooks-svc: %s\n",
		        err); /* check_cidrs passed it: cannot happen */
		return 2;
	}
	if (c->allow_private_targets)
		log_warn("ALLOW_PRIVATE_TARGETS=1: webhooks may point at loopback and private "
		         "addresses, this host's and its network's services included");
	/* For make bench only: measures what recording deliveries costs the fan-out. */
	bool no_record = getenv("WEBHOOKS_BENCH_NO_RECORD") != NULL;
	if (no_record)
		log_warn("WEBHOOKS_BENCH_NO_RECORD is set: deliveries are not recorded");
	/* For make bench only: measures what signing costs the fan-out. */
	bool no_sign = getenv("WEBHOOKS_BENCH_NO_SIGN") != NULL;
	if (no_sign)
		log_warn("WEBHOOKS_BENCH_NO_SIGN is set: deliveries are not signed");
	/* For make bench only: measures what counting costs (GET /metrics then shows zeros). */
	if (getenv("WEBHOOKS_BENCH_NO_METRICS") != NULL) {
		metrics_set_enabled(false);
		log_warn("WEBHOOKS_BENCH_NO_METRICS is set: metrics are not counted");
	}

	/* libmongoc initialises itself before main() and, unless MONGOC_DISABLE_SHM is set,
	 * keeps its counters in /dev/shm/mongoc-<pid>. Unlink it at once: the mapping stays
	 * valid, and a kill -9 then leaves nothing behind for a later process with our pid to
	 * trip over. */
	char shm[64];
	snprintf(shm, sizeof(shm), "/dev/shm/mongoc-%d", (int)getpid());
	unlink(shm);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "webhooks-svc: libcurl failed to initialise\n");
		return 1;
	}
	/* Now rather than at the first delivery, which it would hold up by milliseconds. */
	if (signature_init() != 0) {
		fprintf(stderr, "webhooks-svc: libcrypto has no SHA-256 for the signatures\n");
		return 1;
	}
	sigset_t stop;
	cfg_block_stop_signals(&stop);

	int exit_code = 1;
	svc.store = store_open(c->store_url, err, sizeof(err));
	if (svc.store == NULL) {
		char shown[URL_MAX_LEN + 1];
		url_redact_list(c->store_url, shown, sizeof(shown));
		log_error("cannot open the store %s: %s", shown, err);
		goto out;
	}
	if (c->max_pending_deliveries > 0 &&
	    (svc.pressure = pressure_create(svc.store, PRESSURE_REFRESH_MS)) == NULL) {
		log_error("cannot start the back-pressure thread");
		goto out;
	}
	bool failed;
	svc.retention = retention_start(svc.store, c->retention_ms, &failed);
	if (failed) {
		log_error("cannot start the retention thread");
		goto out;
	}
	if (c->progress_interval_ms > 0 &&
	    (svc.progress = progress_start(svc.store, c->progress_interval_ms)) == NULL) {
		log_error("cannot start the progress thread");
		goto out;
	}
	svc.writer = writer_create(svc.store, handlers_write_done, WRITER_CAPACITY, WRITER_BATCH,
	                           false, err, sizeof(err));
	if (svc.writer == NULL) {
		log_error("%s", err);
		goto out;
	}
	natsconn_set_creds(c->nats_creds);
	if (natsconn_open(&svc.nc, c->nats_url, "webhooks-svc", NULL, NULL, err, sizeof(err)) !=
	    0) {
		log_error("%s", err);
		goto out;
	}
	const struct jsq_config qcfg = {
	    .max_retries = c->max_retries,
	    .schedule = &c->retry_schedule,
	    .max_in_flight = (size_t)c->max_in_flight,
	    .no_record = no_record,
	    .disable_after_ms = c->disable_after_ms,
	    .ack_wait_ms = c->ack_wait_ms,
	    .progress = svc.progress,
	};
	svc.queue = jsq_create(svc.nc, svc.store, &qcfg, err, sizeof(err));
	if (svc.queue == NULL) {
		log_error("%s", err);
		goto out;
	}
	const struct dispatch_config dcfg = {
	    .max_in_flight = (size_t)c->max_in_flight,
	    .timeout_ms = c->delivery_timeout_ms,
	    .connect_timeout_ms =
	        c->delivery_timeout_ms / 2 < 3000 ? c->delivery_timeout_ms / 2 : 3000,
	    .drain_ms = DISPATCH_DRAIN_MS,
	    .targets = &svc.targets,
	    .no_sign = no_sign,
	    .max_per_host = c->max_in_flight_per_host >= 0
	                        ? (size_t)c->max_in_flight_per_host
	                        : (size_t)(c->max_in_flight > 1 ? c->max_in_flight / 2 : 1),
	};
	svc.dispatch = dispatch_create(&dcfg, svc.queue, err, sizeof(err));
	if (svc.dispatch == NULL) {
		log_error("%s", err);
		goto out;
	}
	if (jsq_start(svc.queue, wake_dispatcher, svc.dispatch, err, sizeof(err)) != 0) {
		log_error("%s", err);
		goto out;
	}
	if (c->metrics_port >= 0) {
		svc.metrics = metrics_http_create(c->metrics_bind, c->metrics_port, render_metrics,
		                                  &svc, err, sizeof(err));
		if (svc.metrics == NULL) {
			log_error("%s", err);
			goto out;
		}
		log_info("metrics on %s port %u", c->metrics_bind, metrics_http_port(svc.metrics));
	} else {
		log_info("metrics: not served (METRICS_PORT=-1)");
	}
	if (handlers_start(&svc, err, sizeof(err)) != 0) {
		if (!natsconn_check_refused(svc.nc))
			log_error("%s", err);
		goto out;
	}
	/* Triggers need the delivery queue: with NATS up, it is set up in milliseconds, and
	 * "ready" waits for it (a while at most: without JetStream it is retried in the
	 * background, and triggers are answered 503 meanwhile). */
	if (natsConnection_Status(svc.nc) == NATS_CONN_STATUS_CONNECTED &&
	    !jsq_wait_ready(svc.queue, QUEUE_READY_WAIT_MS))
		log_warn("the delivery queue is not set up yet; /ip answers 503 until it is");
	char nats_shown[1024];
	url_redact_list(c->nats_url, nats_shown, sizeof(nats_shown));
	log_info("ready: store %s, NATS %s, queue group %s, at most %ld deliveries in flight",
	         store_backend(svc.store), nats_shown, SVC_QUEUE_GROUP, c->max_in_flight);

	int sig = 0;
	sigwait(&stop, &sig);
	if (natsconn_refused())
		sig = SIGTERM; /* stopping because NATS refused us: exit 1 below */
	log_info("received %s; draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	exit_code = natsconn_refused() ? 1 : 0;
out:
	/* The metrics server first: what it reads goes away below. */
	metrics_http_destroy(svc.metrics);
	/* Everything that takes new work stops at once; the drains run side by side. */
	jsq_stop_fetching(svc.queue);
	dispatch_stop(svc.dispatch);
	if (svc.nc != NULL)
		handlers_drain(&svc, DRAIN_MS);
	/* Complete queued writes while NATS is still open, so their replies go out. */
	writer_destroy(svc.writer);
	jsq_wait_fetchers(svc.queue);
	dispatch_destroy(svc.dispatch);
	jsq_destroy(svc.queue);
	if (svc.nc != NULL) {
		if (natsConnection_Status(svc.nc) == NATS_CONN_STATUS_CONNECTED)
			natsConnection_FlushTimeout(svc.nc, 500);
		natsConnection_Close(svc.nc);
		natsConnection_Destroy(svc.nc);
	}
	pressure_destroy(svc.pressure);
	retention_stop(svc.retention);
	progress_stop(svc.progress);
	store_destroy(svc.store);
	nats_CloseAndWait(2000);
	curl_global_cleanup();
	if (exit_code == 0)
		log_info("stopped");
	return exit_code;
}
