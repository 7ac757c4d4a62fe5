/* main.c -- webhooks-svc: owns the store, answers the webhooks.* NATS subjects.
 *
 * The main thread does no request work. Its loop:
 *   1. parse the configuration (a bad value stops the process with one line);
 *   2. block SIGTERM/SIGINT in every thread, so that only the main thread sees them;
 *   3. open the store, start the group-commit writer, connect to NATS (retrying forever in
 *      the background when the server is down) and subscribe in the queue group;
 *   4. wait in sigwait() until SIGTERM or SIGINT: requests are handled meanwhile on the NATS
 *      library's delivery threads and the writer thread;
 *   5. drain: stop taking requests, finish the ones received, complete every queued write,
 *      flush the replies, close NATS and the store, exit 0.
 */
#include <errno.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "handlers.h"
#include "log.h"
#include "svc.h"

#define WRITER_CAPACITY 4096
#define WRITER_BATCH    512
#define DRAIN_MS        4000

static const char *check_store_url(const char *v)
{
	if ((strncmp(v, "sqlite:", 7) == 0 && v[7] != '\0') || strncmp(v, "mongodb://", 10) == 0 ||
	    strncmp(v, "mongodb+srv://", 14) == 0)
		return NULL;
	return "sqlite:PATH or mongodb://HOST:PORT/DB";
}

static const char *check_nats_url(const char *v)
{
	if (strncmp(v, "nats://", 7) == 0 || strncmp(v, "tls://", 6) == 0)
		return NULL;
	return "a nats://HOST:PORT URL (comma-separated for a cluster)";
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	log_warn("disconnected from NATS; reconnecting");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	log_info("reconnected to NATS");
}

static natsStatus connect_nats(struct svc *svc)
{
	natsOptions *opts = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(opts, (const char *[]){svc->cfg.nats_url}, 1);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, "webhooks-svc");
	/* Reconnect forever, including at start: the service comes up before NATS does. */
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 500);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(opts, true, NULL, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts, 5000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(opts, 3);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, on_reconnected, NULL);
	if (s == NATS_OK) {
		s = natsConnection_Connect(&svc->nc, opts);
		if (s == NATS_NOT_YET_CONNECTED) {
			log_warn("NATS at %s is not reachable yet; retrying in the background",
			         svc->cfg.nats_url);
			s = NATS_OK;
		}
	}
	natsOptions_Destroy(opts);
	return s;
}

int main(int argc, char **argv)
{
	struct svc svc = {0};
	struct svc_config *c = &svc.cfg;
	const struct cfg_option options[] = {
	    {"NATS_URL", "--nats-url", CFG_STRING, "nats://127.0.0.1:4222", "NATS server URL", 0, 0,
	     check_nats_url, &c->nats_url},
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
	};
	char err[512];
	log_set_program("webhooks-svc");
	int rc = cfg_parse(options, sizeof(options) / sizeof(options[0]), argc, argv,
	                   "webhooks-svc: stores webhooks and delivers events, answering the "
	                   "webhooks.* NATS subjects.",
	                   err, sizeof(err));
	if (rc == CFG_HELP)
		return 0;
	if (rc != 0) {
		fprintf(stderr, "webhooks-svc: %s\n", err);
		return 2;
	}
	log_set_level(c->log_level);

	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	int exit_code = 1;
	svc.store = store_open(c->store_url, err, sizeof(err));
	if (svc.store == NULL) {
		log_error("cannot open the store %s: %s", c->store_url, err);
		goto out;
	}
	svc.writer = writer_create(svc.store, handlers_write_done, WRITER_CAPACITY, WRITER_BATCH,
	                           err, sizeof(err));
	if (svc.writer == NULL) {
		log_error("%s", err);
		goto out;
	}
	natsStatus ns = connect_nats(&svc);
	if (ns != NATS_OK) {
		log_error("cannot connect to NATS at %s: %s", c->nats_url, natsStatus_GetText(ns));
		goto out;
	}
	if (handlers_start(&svc, err, sizeof(err)) != 0) {
		log_error("%s", err);
		goto out;
	}
	log_info("ready: store %s, NATS %s, queue group %s", store_backend(svc.store), c->nats_url,
	         SVC_QUEUE_GROUP);

	int sig = 0;
	sigwait(&stop, &sig);
	log_info("received %s; draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	exit_code = 0;
out:
	if (svc.nc != NULL)
		handlers_drain(&svc, DRAIN_MS);
	/* Complete queued writes while NATS is still open, so their replies go out. */
	writer_destroy(svc.writer);
	if (svc.nc != NULL) {
		natsConnection_FlushTimeout(svc.nc, 1000);
		natsConnection_Close(svc.nc);
		natsConnection_Destroy(svc.nc);
	}
	store_destroy(svc.store);
	nats_CloseAndWait(2000);
	if (exit_code == 0)
		log_info("stopped");
	return exit_code;
}
