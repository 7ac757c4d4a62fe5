/* bus.c -- asynchronous NATS request/reply for the gateway.
 *
 * Waiting requests live in a hash table by token (to find them when their reply comes) and
 * in a list ordered by deadline. Every request has the same timeout, so appending keeps the
 * list sorted and the timer thread only ever looks at its head: it sleeps on a condition
 * variable until that deadline or until woken, never polling. */
#include "bus.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "natsconn.h"
#include "timeutil.h"
#include "url.h"

#define BUCKETS 16384 /* power of two */

struct waiter {
	uint64_t token;
	int64_t deadline_ms;
	bus_reply_fn fn;
	void *ctx;
	struct waiter *hnext;       /* hash chain */
	struct waiter *prev, *next; /* deadline order */
};

struct bus {
	natsConnection *nc;
	natsSubscription *sub;
	char inbox[64];
	int64_t timeout_ms;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct waiter *buckets[BUCKETS];
	struct waiter *head, *tail;
	size_t pending;
	uint64_t next_token;
	bool stopping;
	pthread_t timer;
	bool timer_started;
	bool sub_complete; /* the reply subscription's last callback has returned */
	pthread_cond_t completed;
};

static void unlink_waiter(struct bus *b, struct waiter *w)
{
	struct waiter **pp = &b->buckets[w->token & (BUCKETS - 1)];
	while (*pp != w)
		pp = &(*pp)->hnext;
	*pp = w->hnext;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		b->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		b->tail = w->prev;
	b->pending--;
}

static struct waiter *find_waiter(struct bus *b, uint64_t token)
{
	struct waiter *w = b->buckets[token & (BUCKETS - 1)];
	while (w != NULL && w->token != token)
		w = w->hnext;
	return w;
}

/* Detach every waiter under the lock, then call them outside it. */
static void fail_all(struct bus *b, enum bus_result result)
{
	pthread_mutex_lock(&b->lock);
	struct waiter *list = b->head;
	b->head = b->tail = NULL;
	memset(b->buckets, 0, sizeof(b->buckets));
	b->pending = 0;
	pthread_mutex_unlock(&b->lock);
	while (list != NULL) {
		struct waiter *w = list;
		list = w->next;
		w->fn(w->ctx, result, NULL, 0);
		free(w);
	}
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct bus *b = closure;
	const char *subject = natsMsg_GetSubject(msg);
	const char *dot = strrchr(subject, '.');
	uint64_t token = dot != NULL ? strtoull(dot + 1, NULL, 10) : 0;

	pthread_mutex_lock(&b->lock);
	struct waiter *w = find_waiter(b, token);
	if (w != NULL)
		unlink_waiter(b, w);
	pthread_mutex_unlock(&b->lock);

	if (w == NULL) {
		log_debug("late or unknown reply on %s dropped", subject);
	} else if (natsMsg_IsNoResponders(msg)) {
		w->fn(w->ctx, BUS_NO_RESPONDERS, NULL, 0);
	} else {
		w->fn(w->ctx, BUS_REPLY, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	}
	free(w);
	natsMsg_Destroy(msg);
}

static void *run_timer(void *arg)
{
	struct bus *b = arg;
	pthread_mutex_lock(&b->lock);
	while (!b->stopping) {
		if (b->head == NULL) {
			pthread_cond_wait(&b->wake, &b->lock);
			continue;
		}
		int64_t now = time_mono_ms();
		if (b->head->deadline_ms > now) {
			struct timespec ts =
			    time_deadline(CLOCK_MONOTONIC, b->head->deadline_ms - now);
			pthread_cond_timedwait(&b->wake, &b->lock, &ts);
			continue;
		}
		struct waiter *w = b->head;
		unlink_waiter(b, w);
		pthread_mutex_unlock(&b->lock);
		w->fn(w->ctx, BUS_TIMEOUT, NULL, 0);
		free(w);
		pthread_mutex_lock(&b->lock);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

static void on_sub_complete(void *closure)
{
	struct bus *b = closure;
	pthread_mutex_lock(&b->lock);
	b->sub_complete = true;
	pthread_cond_broadcast(&b->completed);
	pthread_mutex_unlock(&b->lock);
}

/* Replies to requests sent before a drop will not come: fail them now rather than let each
 * wait for its timeout. */
static void on_drop(natsConnection *nc, void *closure)
{
	fail_all(closure, BUS_DISCONNECTED);
}

struct bus *bus_create(const char *nats_url, int64_t timeout_ms, char *err, size_t errlen)
{
	struct bus *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	b->timeout_ms = timeout_ms;
	b->next_token = 1;
	/* glibc's init of a mutex, condition or attribute with these attributes only stores
	 * them: it cannot fail. */
	(void)pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_t ca;
	(void)pthread_condattr_init(&ca);
	(void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	(void)pthread_cond_init(&b->wake, &ca);
	pthread_condattr_destroy(&ca);
	(void)pthread_cond_init(&b->completed, NULL);

	natsInbox *inbox = NULL;
	natsStatus s = natsInbox_Create(&inbox);
	if (s == NATS_OK)
		snprintf(b->inbox, sizeof(b->inbox), "%s", (const char *)inbox);
	natsInbox_Destroy(inbox);
	if (s != NATS_OK) {
		snprintf(err, errlen, "NATS inbox: %s", natsStatus_GetText(s));
		goto fail;
	}
	if (natsconn_open(&b->nc, nats_url, "webhooks-gateway", on_drop, b, err, errlen) != 0)
		goto fail;
	char wildcard[80];
	snprintf(wildcard, sizeof(wildcard), "%s.*", b->inbox);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&b->sub, b->nc, wildcard, on_reply, b);
	/* Replies are small and many: lift the default pending limits' message count. */
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(b->sub, 1000000, 256 * 1024 * 1024);
	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(b->sub, on_sub_complete, b);
	if (s != NATS_OK) {
		char shown[1024];
		url_redact_list(nats_url, shown, sizeof(shown));
		snprintf(err, errlen, "NATS %s: %s", shown, natsStatus_GetText(s));
		(void)natsconn_check_refused(b->nc); /* says why, when that is why */
		goto fail;
	}
	if (pthread_create(&b->timer, NULL, run_timer, b) != 0) {
		snprintf(err, errlen, "cannot start the timer thread");
		goto fail;
	}
	b->timer_started = true;
	return b;
fail:
	bus_destroy(b);
	return NULL;
}

bool bus_connected(struct bus *b)
{
	return natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

size_t bus_pending(struct bus *b)
{
	pthread_mutex_lock(&b->lock);
	size_t n = b->pending;
	pthread_mutex_unlock(&b->lock);
	return n;
}

int bus_request(struct bus *b, const char *subject, const char *data, size_t len, bus_reply_fn fn,
                void *ctx)
{
	if (!bus_connected(b))
		return -ENOTCONN;
	struct waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->fn = fn;
	w->ctx = ctx;
	w->deadline_ms = time_mono_ms() + b->timeout_ms;

	pthread_mutex_lock(&b->lock);
	if (b->stopping) {
		pthread_mutex_unlock(&b->lock);
		free(w);
		return -ESHUTDOWN;
	}
	w->token = b->next_token++;
	struct waiter **bucket = &b->buckets[w->token & (BUCKETS - 1)];
	w->hnext = *bucket;
	*bucket = w;
	w->prev = b->tail;
	if (b->tail != NULL)
		b->tail->next = w;
	else
		b->head = w;
	b->tail = w;
	b->pending++;
	if (w->prev == NULL)
		pthread_cond_signal(&b->wake);
	uint64_t token = w->token;
	pthread_mutex_unlock(&b->lock);

	char reply[96];
	snprintf(reply, sizeof(reply), "%s.%" PRIu64, b->inbox, token);
	natsStatus s = natsConnection_PublishRequest(b->nc, subject, reply, data, (int)len);
	if (s == NATS_OK)
		return 0;

	/* Not sent: withdraw the waiter unless a disconnect already failed it (then its
	 * callback ran or is running, and the request counts as accepted). */
	pthread_mutex_lock(&b->lock);
	w = find_waiter(b, token);
	if (w != NULL)
		unlink_waiter(b, w);
	pthread_mutex_unlock(&b->lock);
	if (w == NULL)
		return 0;
	free(w);
	log_warn("NATS publish to %s failed: %s", subject, natsStatus_GetText(s));
	return s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED ? -ENOTCONN : -EIO;
}

void bus_shutdown(struct bus *b)
{
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->lock);
	bool first = !b->stopping;
	b->stopping = true;
	pthread_cond_broadcast(&b->wake);
	pthread_mutex_unlock(&b->lock);
	if (!first)
		return;
	if (b->timer_started)
		pthread_join(b->timer, NULL);
	b->timer_started = false;
	if (b->sub != NULL && natsSubscription_Unsubscribe(b->sub) == NATS_OK) {
		/* A reply callback may still be running: b must outlive it. */
		pthread_mutex_lock(&b->lock);
		while (!b->sub_complete)
			pthread_cond_wait(&b->completed, &b->lock);
		pthread_mutex_unlock(&b->lock);
	}
	if (b->nc != NULL)
		natsConnection_Close(b->nc);
	fail_all(b, BUS_SHUTTING_DOWN);
}

void bus_destroy(struct bus *b)
{
	if (b == NULL)
		return;
	bus_shutdown(b);
	natsSubscription_Destroy(b->sub);
	natsConnection_Destroy(b->nc);
	pthread_cond_destroy(&b->wake);
	pthread_cond_destroy(&b->completed);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
