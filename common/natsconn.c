/* natsconn.c -- the NATS connection both processes use. */
#include "natsconn.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "url.h"

struct drop_hook {
	natsConnectionHandler fn;
	void *closure;
};

/* One per process: each process opens one connection. */
static struct drop_hook hook;
static const char *creds_path;
static _Atomic bool refused; /* the server refused our credentials */

bool natsconn_refused(void)
{
	return atomic_load(&refused);
}

static bool is_auth(natsStatus s, const char *why)
{
	return s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED ||
	       (why != NULL &&
	        (strstr(why, "uthorization") != NULL || strstr(why, "uthentication") != NULL));
}

/* The server refused us for good (nats.c closes the connection after repeated authorization
 * errors): say so once, and stop the process (SIGTERM to itself, so it shuts down as usual;
 * the mains then exit 1 because natsconn_refused() says so). kill(), not raise(): this runs
 * on nats.c's threads too, and raise() there would leave the signal pending on a thread
 * that blocks it, never seen by the main thread's sigwait(). */
static void refuse(const char *why)
{
	if (atomic_exchange(&refused, true))
		return;
	log_error("NATS refused our credentials (%s): check the user and password in NATS_URL, "
	          "or NATS_CREDS; stopping",
	          why);
	kill(getpid(), SIGTERM);
}

static char probe_url[4096];

/* nats.c reports a connection it closed after authorization errors only as "no server
 * available": ask the servers once more, plainly, and see whether they refuse us. */
static bool probe_refused(void)
{
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, probe_url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, 0);
	if (s == NATS_OK && creds_path != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(opts, creds_path, NULL);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, opts);
	natsStatus code = NATS_OK;
	const char *why = nats_GetLastError(&code);
	bool auth = is_auth(s, why);
	if (auth)
		refuse(why != NULL && why[0] != '\0' ? why : natsStatus_GetText(s));
	natsConnection_Destroy(nc);
	natsOptions_Destroy(opts);
	return auth;
}

bool natsconn_check_refused(natsConnection *nc)
{
	if (nc == NULL || atomic_load(&refused))
		return atomic_load(&refused);
	const char *why = NULL;
	natsStatus last = natsConnection_GetLastError(nc, &why);
	if (is_auth(last, why))
		refuse(why != NULL && why[0] != '\0' ? why : natsStatus_GetText(last));
	else if (natsConnection_IsClosed(nc))
		(void)probe_refused();
	return atomic_load(&refused);
}

static void on_closed(natsConnection *nc, void *closure)
{
	(void)closure;
	(void)natsconn_check_refused(nc);
}

void natsconn_set_creds(const char *path)
{
	creds_path = path != NULL && path[0] != '\0' ? path : NULL;
}

const char *natsconn_check_creds(const char *path)
{
	if (path[0] == '\0')
		return NULL;
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return "the path of a readable .creds file";
	fclose(f);
	return NULL;
}

/* Errors the server sends (an authorization violation among them) and the library's own. */
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	log_error("NATS: %s", natsStatus_GetText(err));
}

static void on_connected(natsConnection *nc, void *closure)
{
	log_info("connected to NATS");
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	if (natsConnection_IsClosed(nc))
		return; /* our own shutdown */
	const char *why = NULL;
	natsStatus last = natsConnection_GetLastError(nc, &why);
	if (last == NATS_CONNECTION_AUTH_FAILED || last == NATS_NOT_PERMITTED ||
	    (why != NULL && strstr(why, "uthoriz") != NULL))
		log_error(
		    "NATS refused our credentials (%s): check NATS_URL's user and password or "
		    "NATS_CREDS; retrying",
		    why != NULL && why[0] != '\0' ? why : natsStatus_GetText(last));
	else
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
	snprintf(probe_url, sizeof(probe_url), "%s", url);
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
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(opts, on_error, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(opts, on_closed, NULL);
	if (s == NATS_OK && creds_path != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(opts, creds_path, NULL);
	if (s == NATS_OK) {
		s = natsConnection_Connect(nc, opts);
		if (s == NATS_NOT_YET_CONNECTED) {
			char shown[1024];
			url_redact_list(url, shown, sizeof(shown));
			natsStatus code = NATS_OK;
			const char *why = nats_GetLastError(&code);
			if (is_auth(code, why))
				refuse(why != NULL && why[0] != '\0' ? why
				                                     : natsStatus_GetText(code));
			else
				log_warn(
				    "NATS at %s is not reachable yet; retrying in the background",
				    shown);
			s = NATS_OK;
		}
	}
	natsOptions_Destroy(opts);
	if (s != NATS_OK) {
		char shown[1024];
		url_redact_list(url, shown, sizeof(shown));
		snprintf(err, errlen, "NATS %s: %s", shown, natsStatus_GetText(s));
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
