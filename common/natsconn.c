/* natsconn.c -- the NATS connection both processes use. */
#include "natsconn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

struct drop_hook {
	natsConnectionHandler fn;
	void *closure;
};

/* One per process: each process opens one connection. */
static struct drop_hook hook;

static void on_connected(natsConnection *nc, void *closure)
{
	log_info("connected to NATS");
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	if (natsConnection_IsClosed(nc))
		return; /* our own shutdown */
	log_warn("disconnected from NATS; reconnecting");
	if (hook.fn != NULL)
		hook.fn(nc, hook.closure);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	log_info("reconnected to NATS");
}

int natsconn_open(natsConnection **nc, const char *url, const char *name,
                  natsConnectionHandler on_drop, void *closure, char *err, size_t errlen)
{
	hook.fn = on_drop;
	hook.closure = closure;
	natsOptions *opts = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, url); /* a comma-separated list is a cluster */
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, name);
	/* nats.c's flusher thread waits 1 ms before each flush to gather more messages: that
	 * would add a millisecond to every request and to every reply. Write at once instead. */
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 500);
	/* With a connected callback the first connect is retried in the background too (without
	 * one, nats.c blocks until it succeeds). */
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, 2000);
	/* Notice a dead server within about 15 s even when no traffic flows. */
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts, 5000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(opts, 3);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, on_reconnected, NULL);
	if (s == NATS_OK) {
		s = natsConnection_Connect(nc, opts);
		if (s == NATS_NOT_YET_CONNECTED) {
			log_warn("NATS at %s is not reachable yet; retrying in the background",
			         url);
			s = NATS_OK;
		}
	}
	natsOptions_Destroy(opts);
	if (s != NATS_OK) {
		snprintf(err, errlen, "NATS %s: %s", url, natsStatus_GetText(s));
		return -EIO;
	}
	return 0;
}

const char *natsconn_check_url(const char *v)
{
	static const char want[] = "nats://HOST:PORT or tls://HOST:PORT, comma-separated for a "
	                           "cluster";
	const char *p = v;
	for (;;) {
		while (*p == ' ')
			p++;
		if (strncmp(p, "nats://", 7) != 0 && strncmp(p, "tls://", 6) != 0)
			return want;
		const char *comma = strchr(p, ',');
		if (comma == NULL)
			return NULL;
		p = comma + 1;
	}
}
