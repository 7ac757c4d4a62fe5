/* dispatch.c -- the dispatcher: one thread, one libcurl multi handle, at most MAX_IN_FLIGHT
 * transfers at once.
 *
 * The thread's loop, one turn at a time:
 *   1. reap: read finished transfers from the multi handle (CURLMSG_DONE), turn each into an
 *      outcome (2xx, another status, or an error such as a timeout), report it to the queue
 *      (which records it and retries or ends the delivery, off this thread) and free its slot;
 *   2. stop check: once stopping, start nothing new; when nothing is in flight or the drain
 *      deadline has passed, abandon what is left (handed back to JetStream, not recorded)
 *      and leave the loop;
 *   3. fill: start the deliveries parked for want of room at their host that now have it, then
 *      take as many deliveries from the queue's inbox as there are free slots and start each
 *      on a reused easy handle (same connection cache, same DNS cache); one whose host already
 *      has max_per_host transfers is parked instead (at most a work item and a round of
 *      slots of them, so that the inbox is not drained into memory), so that slow or hanging
 *      hosts cannot take every slot while other hosts' deliveries wait;
 *   4. wait: curl_multi_poll() until a socket is ready, libcurl's own timer fires, or
 *      dispatch_wakeup() is called (curl_multi_wakeup: the inbox gained deliveries); then
 *      curl_multi_perform() drives the transfers.
 * No sleep-polling, and no store or JetStream I/O on this thread: the only waits are in
 * curl_multi_poll, bounded by real deadlines. Retries wait in JetStream, not here. */
#include "dispatch.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "prefault.h"
#include "signature.h"
#include "svc_metrics.h"
#include "timeutil.h"
#include "url.h"

#define USER_AGENT        "webhooks/" WEBHOOKS_VERSION
#define MAX_RESPONSE_BODY (64 * 1024) /* read and thrown away; more aborts the transfer */
#define MAX_WAIT_MS       60000 /* only a backstop: every real deadline is waited for exactly */
#define PREPARED_HANDLES  64    /* easy handles made at start (see dispatch_create) */
/* Transfers an idle dispatcher starts in its first turn (see fill): the first request of a
 * burst goes out after this many connects, not after all of them. */
#define START_BURST 8

/* One transfer slot. Its easy handle lives as long as the dispatcher and is reused. */
struct slot {
	CURL *easy;
	struct curl_slist headers[4]; /* see make_headers */
	char lines[4][64 + 2 * (SIGNATURE_LEN + 1)];
	struct delivery d;
	char body[160];
	int64_t started_us;
	int64_t at_ms;
	size_t received;
	int sends; /* requests written in this transfer: see before_send */
	bool body_capped;
	bool busy;     /* added to the multi handle */
	uint64_t host; /* host_key of its URL: counted in the host table while busy */
	const struct addr_policy *targets;
	char blocked[ADDR_TEXT_LEN]; /* an address this transfer was refused a connection to */
	char errbuf[CURL_ERROR_SIZE];
	struct slot *next_free;
};

struct dispatch {
	struct dispatch_config cfg;
	struct jsq *q;
	CURLM *multi;
	struct slot *slots;
	struct slot *free_slots;
	size_t in_flight;
	size_t reaped;          /* transfers that ended in this turn of the loop (see fill) */
	struct delivery *batch; /* max_in_flight entries, for jsq_take */
	/* Transfers in flight per host (dispatcher thread only): open addressing on host_key,
	 * an entry whose count fell to 0 stays until the table is rebuilt. */
	struct host_count {
		uint64_t key; /* 0: never used */
		size_t n;
	} * hosts;
	size_t hosts_mask, hosts_used;
	struct delivery *parked; /* max_parked entries */
	size_t nparked, max_parked;
	_Atomic size_t stat_parked;
	_Atomic bool stopping;
	_Atomic size_t stat_in_flight, stat_peak;
	_Atomic uint64_t stat_attempts;
	pthread_t thread;
};

static size_t discard_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct slot *s = userp;
	size_t n = size * nmemb;
	s->received += n;
	if (s->received > MAX_RESPONSE_BODY) {
		/* Enough: the status line is all we need. Returning short aborts the read. */
		s->body_capped = true;
		return 0;
	}
	return n;
}

/* libcurl calls this when the request is about to go out on a connection. When a reused
 * keep-alive connection turns out to be closed after the request was written, libcurl sends
 * it again on a new connection inside the same transfer: the receiver would then see more
 * POSTs than attempts are recorded. The second call within one transfer is that resend;
 * refuse it, and the attempt ends as a failure that is recorded and retried on schedule. */
static int before_send(void *userp, char *conn_primary_ip, char *conn_local_ip,
                       int conn_primary_port, int conn_local_port)
{
	struct slot *s = userp;
	return ++s->sends > 1 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

/* libcurl calls this for every connection it makes, with the address DNS gave (so a name
 * that resolves or rebinds to a refused address is caught here, and with Happy Eyeballs each
 * address is asked about). A refused one gets no socket: libcurl tries the next address or
 * fails the transfer, and outcome_of says why. */
static curl_socket_t open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct slot *s = userp;
	char text[ADDR_TEXT_LEN];
	(void)purpose;
	if (!addr_policy_allows_sockaddr(s->targets, &a->addr, text)) {
		memcpy(s->blocked, text, sizeof(s->blocked));
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype, a->protocol);
}

static int setup_easy(struct dispatch *d, struct slot *s)
{
	s->easy = curl_easy_init();
	if (s->easy == NULL)
		return -ENOMEM;
	CURL *e = s->easy;
	s->targets = d->cfg.targets;
	/* Each can fail only for want of memory or an option this libcurl lacks: either way
	 * the slot cannot send as it must, so it is not used. */
	if (curl_easy_setopt(e, CURLOPT_PRIVATE, s) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)d->cfg.timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)d->cfg.connect_timeout_ms) !=
	        CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, s) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, before_send) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PREREQDATA, s) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, s) != CURLE_OK) {
		curl_easy_cleanup(e);
		s->easy = NULL;
		return -EINVAL;
	}
	/* A proxy from the environment (http_proxy, https_proxy, no_proxy) is honoured: the
	 * address checked is then the proxy's, and an egress proxy that filters destinations
	 * itself (Smokescreen, for one) is the operator's choice. */
	return 0;
}

/* The slot's header list for this attempt: Content-Type and the three Standard Webhooks
 * headers, webhook-id (the delivery id, the same on every attempt), webhook-timestamp (the
 * attempt's, the body's timestamp) and webhook-signature (v1 under the secret, and a second
 * one under the secret rotated out while its grace lasts). The list's nodes and lines are the
 * slot's own (libcurl only reads them): nothing is allocated per attempt, and the easy handle
 * keeps pointing at the same list (set once, in setup_easy). */
static int make_headers(struct slot *s, int64_t timestamp, bool sign)
{
	size_t n = 0;
	/* No "Expect:" line is needed: libcurl asks for 100-continue only above 1 MiB, and bodies
	 * here are under 200 bytes. */
	snprintf(s->lines[n++], sizeof(s->lines[0]), "Content-Type: application/json");
	snprintf(s->lines[n++], sizeof(s->lines[0]), "webhook-id: %s", s->d.id);
	snprintf(s->lines[n++], sizeof(s->lines[0]), "webhook-timestamp: %" PRId64, timestamp);
	if (sign) {
		/* Never sent unsigned: every webhook read for a delivery has its secret. */
		char sig[SIGNATURE_LEN + 1], old[SIGNATURE_LEN + 1];
		size_t len = strlen(s->body);
		if (signature_sign(s->d.secret, s->d.id, timestamp, s->body, len, sig) != 0)
			return -EINVAL;
		if (s->d.old_secret[0] != '\0' &&
		    signature_sign(s->d.old_secret, s->d.id, timestamp, s->body, len, old) == 0)
			snprintf(s->lines[n++], sizeof(s->lines[0]), "webhook-signature: %s %s",
			         sig, old);
		else
			snprintf(s->lines[n++], sizeof(s->lines[0]), "webhook-signature: %s", sig);
	}
	for (size_t i = 0; i < n; i++) {
		s->headers[i].data = s->lines[i];
		s->headers[i].next = i + 1 < n ? &s->headers[i + 1] : NULL;
	}
	return 0;
}

/* The host a URL goes to, as a key: FNV-1a over its scheme and authority, lower-cased and
 * without the userinfo. Never 0. */
static uint64_t host_key(const char *url)
{
	const char *sep = strstr(url, "://");
	const char *auth = sep != NULL ? sep + 3 : url;
	size_t alen = strcspn(auth, "/?#");
	const char *at = memrchr(auth, '@', alen);
	const char *host = at != NULL ? at + 1 : auth;
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = url; p < auth; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	for (const char *p = host; p < auth + alen; p++) {
		unsigned char c = (unsigned char)*p;
		h = (h ^ (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c)) * 1099511628211ULL;
	}
	return h != 0 ? h : 1;
}

/* Keep only the hosts with transfers in flight (there are at most max_in_flight of them). */
static void hosts_rebuild(struct dispatch *d)
{
	size_t size = d->hosts_mask + 1;
	struct host_count *old = malloc(size * sizeof(*old));
	if (old == NULL)
		return; /* the table stays as it is, only longer to search */
	memcpy(old, d->hosts, size * sizeof(*old));
	memset(d->hosts, 0, size * sizeof(*old));
	d->hosts_used = 0;
	for (size_t i = 0; i < size; i++) {
		if (old[i].n == 0)
			continue;
		size_t j = (size_t)old[i].key & d->hosts_mask;
		while (d->hosts[j].key != 0)
			j = (j + 1) & d->hosts_mask;
		d->hosts[j] = old[i];
		d->hosts_used++;
	}
	free(old);
}

/* The count of host key, made when absent. */
static struct host_count *host_count(struct dispatch *d, uint64_t key)
{
	size_t i = (size_t)key & d->hosts_mask;
	while (d->hosts[i].key != 0) {
		if (d->hosts[i].key == key)
			return &d->hosts[i];
		i = (i + 1) & d->hosts_mask;
	}
	if (d->hosts_used + 1 > (d->hosts_mask + 1) / 2) {
		hosts_rebuild(d);
		return host_count(d, key);
	}
	d->hosts[i].key = key;
	d->hosts_used++;
	return &d->hosts[i];
}

static bool host_has_room(struct dispatch *d, const struct delivery *dl)
{
	return d->cfg.max_per_host == 0 ||
	       host_count(d, host_key(dl->target_url))->n < d->cfg.max_per_host;
}

static void start(struct dispatch *d, const struct delivery *dl)
{
	struct slot *s = d->free_slots;
	d->free_slots = s->next_free;
	s->d = *dl;
	s->received = 0;
	s->sends = 0;
	s->body_capped = false;
	s->blocked[0] = '\0';
	s->errbuf[0] = '\0';
	const char *why = "out of memory";
	if (s->easy == NULL && setup_easy(d, s) != 0)
		goto fail;

	s->at_ms = time_now_ms();
	int64_t timestamp = s->at_ms / 1000;
	snprintf(s->body, sizeof(s->body), "{\"ipAddress\":\"%s\",\"timestamp\":%" PRId64 "}",
	         s->d.ip, timestamp);
	int hrc = make_headers(s, timestamp, !d->cfg.no_sign);
	if (hrc == -EINVAL)
		why = "not sent unsigned: the webhook's signing secret is missing or unreadable";
	if (hrc != 0)
		goto fail;
	if (curl_easy_setopt(s->easy, CURLOPT_URL, s->d.target_url) != CURLE_OK ||
	    /* POSTFIELDS lets libcurl write headers and body with one send(). */
	    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body) != CURLE_OK ||
	    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body)) != CURLE_OK)
		goto fail;
	s->started_us = time_mono_us();
	if (curl_multi_add_handle(d->multi, s->easy) != CURLM_OK)
		goto fail;
	s->busy = true;
	s->host = host_key(s->d.target_url);
	host_count(d, s->host)->n++;
	d->in_flight++;
	atomic_store(&d->stat_in_flight, d->in_flight);
	if (d->in_flight > atomic_load(&d->stat_peak))
		atomic_store(&d->stat_peak, d->in_flight);
	atomic_fetch_add(&d->stat_attempts, 1);
	return;
fail : {
	struct delivery_outcome o = {.at_ms = time_now_ms(), .retry_after_ms = -1};
	snprintf(o.error, sizeof(o.error), "could not start the transfer (%s)", why);
	svc_metrics_attempt_not_started();
	jsq_report(d->q, &s->d, &o);
	s->next_free = d->free_slots;
	d->free_slots = s;
}
}

/* Describe how a finished transfer went. */
static void outcome_of(struct slot *s, CURLcode rc, struct delivery_outcome *o)
{
	memset(o, 0, sizeof(*o));
	o->at_ms = s->at_ms;
	o->duration_ms = (time_mono_us() - s->started_us) / 1000;
	o->retry_after_ms = -1;
	long status = 0;
	if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0; /* no answer to read: the attempt ends as an error below */
	/* A capped body still carries a complete status line. */
	if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && s->body_capped && status > 0)) {
		o->http_status = (int)status;
		curl_off_t after = 0;
		if (curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK &&
		    after > 0)
			/* Capped before scaling: a huge Retry-After must not overflow. The retry
			 * policy caps it again at twice the scheduled delay. */
			o->retry_after_ms =
			    after < INT64_MAX / 1000 ? (int64_t)after * 1000 : INT64_MAX;
		return;
	}
	if (s->blocked[0] != '\0')
		snprintf(o->error, sizeof(o->error), "blocked: %s is not a public address",
		         s->blocked);
	else if (rc == CURLE_ABORTED_BY_CALLBACK && s->sends > 1)
		snprintf(o->error, sizeof(o->error),
		         "the connection closed without an answer after the request was sent");
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(o->error, sizeof(o->error), "timed out: %.110s",
		         s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
	else
		snprintf(o->error, sizeof(o->error), "%.120s",
		         s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
}

static void release(struct dispatch *d, struct slot *s)
{
	/* Fails only for a handle not in this multi handle, which a busy slot's always is. */
	(void)curl_multi_remove_handle(d->multi, s->easy);
	s->busy = false;
	host_count(d, s->host)->n--;
	d->in_flight--;
	atomic_store(&d->stat_in_flight, d->in_flight);
	s->next_free = d->free_slots;
	d->free_slots = s;
}

static void reap(struct dispatch *d)
{
	CURLMsg *m;
	int left;
	d->reaped = 0;
	while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct slot *s = NULL;
		if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s) != CURLE_OK ||
		    s == NULL)
			continue; /* every handle added here has its slot as private data */
		CURLcode rc = m->data.result;
		struct delivery_outcome o;
		outcome_of(s, rc, &o);
		svc_metrics_attempt(o.http_status, rc == CURLE_OPERATION_TIMEDOUT,
		                    s->blocked[0] != '\0', s->started_us);
		if (log_enabled(LOG_LVL_DEBUG)) {
			char shown[URL_MAX_LEN + 1];
			url_redact(s->d.target_url, shown, sizeof(shown));
			log_debug("delivery %s attempt %d to %s: %d %s (%" PRId64 " ms)", s->d.id,
			          s->d.attempt, shown, o.http_status, o.error, o.duration_ms);
		}
		/* Release before reporting: m points into the handle's state. */
		release(d, s);
		d->reaped++;
		jsq_report(d->q, &s->d, &o);
	}
}

static void abandon_all(struct dispatch *d)
{
	for (size_t i = 0; i < d->cfg.max_in_flight; i++) {
		struct slot *s = &d->slots[i];
		if (!s->busy)
			continue;
		char shown[URL_MAX_LEN + 1];
		url_redact(s->d.target_url, shown, sizeof(shown));
		log_info("delivery %s attempt %d to %s cut short by shutdown; handed back", s->d.id,
		         s->d.attempt, shown);
		release(d, s);
		jsq_abandon(d->q, &s->d);
	}
	for (size_t i = 0; i < d->nparked; i++)
		jsq_abandon(d->q, &d->parked[i]);
	d->nparked = 0;
	atomic_store(&d->stat_parked, 0);
}

/* Step 3 of the loop: parked deliveries whose host has room first, in the order they came,
 * then new ones from the inbox while there are free slots and room to park. Returns true when
 * it stopped at its cap with free slots left: the loop then turns again without waiting. */
static bool fill(struct dispatch *d)
{
	/* Slow start: at most as many transfers as were in flight at the start of this turn
	 * (START_BURST from none), so that a cold burst sends its first requests early. Those that
	 * ended in this turn count: a busy dispatcher refills every slot they freed, however many
	 * ended at once. (Counting only those still in flight held a loaded dispatcher, whose
	 * turns end dozens of transfers each, to about half its slots.) */
	size_t busy = d->in_flight + d->reaped;
	size_t cap = busy > START_BURST ? busy : START_BURST;
	size_t kept = 0, burst = 0;
	for (size_t i = 0; i < d->nparked; i++) {
		if (d->free_slots != NULL && burst < cap && host_has_room(d, &d->parked[i])) {
			start(d, &d->parked[i]);
			burst++;
		} else if (kept != i)
			d->parked[kept++] = d->parked[i];
		else
			kept++;
	}
	d->nparked = kept;
	while (d->free_slots != NULL && d->nparked < d->max_parked && burst < cap) {
		size_t free_n = d->cfg.max_in_flight - d->in_flight;
		size_t room = d->max_parked - d->nparked;
		size_t want = free_n < room ? free_n : room;
		if (want > cap - burst)
			want = cap - burst;
		size_t n = jsq_take(d->q, d->batch, want);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			if (d->free_slots != NULL && host_has_room(d, &d->batch[i])) {
				start(d, &d->batch[i]);
				burst++;
			} else {
				d->parked[d->nparked++] = d->batch[i];
			}
		}
	}
	atomic_store(&d->stat_parked, d->nparked);
	/* Stopped by the burst with room left: the caller turns again without waiting. */
	return burst >= cap && d->free_slots != NULL;
}

static void *run(void *arg)
{
	struct dispatch *d = arg;
	int64_t drain_deadline = 0;
	for (;;) {
		reap(d);

		int64_t now = time_mono_ms();
		if (atomic_load(&d->stopping)) {
			if (drain_deadline == 0)
				drain_deadline = now + d->cfg.drain_ms;
			if (d->in_flight == 0 || now >= drain_deadline)
				break;
		}

		bool more = !atomic_load(&d->stopping) && fill(d);

		int64_t wait = more ? 0 : MAX_WAIT_MS;
		if (drain_deadline != 0 && drain_deadline - now < wait)
			wait = drain_deadline > now ? drain_deadline - now : 0;
		/* With free slots, jsq_take returned less only because the inbox is empty (a
		 * wakeup comes when it fills) or the recorder is full (a finished transfer makes
		 * room); a full house waits for a transfer to finish. */
		CURLMcode mc = curl_multi_poll(d->multi, NULL, 0, (int)wait, NULL);
		int running = 0;
		if (mc == CURLM_OK)
			mc = curl_multi_perform(d->multi, &running);
		if (mc != CURLM_OK) {
			/* Out of memory or a broken socket set: nothing here can repair it, and
			 * turning again at once would spin; the transfers time out by themselves.
			 */
			log_error("libcurl: %s", curl_multi_strerror(mc));
			struct timespec pause = {0, 100 * 1000 * 1000};
			nanosleep(&pause, NULL);
		}
	}
	abandon_all(d);
	return NULL;
}

struct dispatch *dispatch_create(const struct dispatch_config *cfg, struct jsq *q, char *err,
                                 size_t errlen)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	if (d == NULL)
		goto nomem;
	d->cfg = *cfg;
	d->q = q;
	d->slots = calloc(cfg->max_in_flight, sizeof(*d->slots));
	d->batch = calloc(cfg->max_in_flight, sizeof(*d->batch));
	/* A work item's worth and a round of slots: a host that hangs on a whole item of
	 * deliveries is passed over without stopping the others. */
	d->max_parked = JSQ_ITEM_SIZE + cfg->max_in_flight;
	d->parked = calloc(d->max_parked, sizeof(*d->parked));
	size_t hosts = 16;
	while (hosts < 4 * cfg->max_in_flight)
		hosts *= 2;
	d->hosts = calloc(hosts, sizeof(*d->hosts));
	d->hosts_mask = hosts - 1;
	d->multi = curl_multi_init();
	if (d->slots == NULL || d->batch == NULL || d->parked == NULL || d->hosts == NULL ||
	    d->multi == NULL)
		goto nomem;
	for (size_t i = cfg->max_in_flight; i-- > 0;) {
		d->slots[i].next_free = d->free_slots;
		d->free_slots = &d->slots[i];
	}
	/* Mapped now rather than by the first event's transfers (prefault.h). */
	prefault(d->batch, cfg->max_in_flight * sizeof(*d->batch));
	prefault(d->parked, d->max_parked * sizeof(*d->parked));
	/* The first slots' handles are made now rather than by the first event's transfers
	 * (the rest as they are first used): a failure here is only retried then. */
	for (size_t i = 0; i < cfg->max_in_flight && i < PREPARED_HANDLES; i++)
		(void)setup_easy(d, &d->slots[i]);
	/* Keep enough idle connections that every slot can reuse one. */
	/* Only the size of the connection cache: without it libcurl keeps fewer idle ones. */
	(void)curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS,
	                        (long)(cfg->max_in_flight * 2 + 16));
	if (pthread_create(&d->thread, NULL, run, d) != 0) {
		snprintf(err, errlen, "cannot start the dispatcher thread");
		goto fail;
	}
	return d;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	if (d != NULL) {
		for (size_t i = 0; d->slots != NULL && i < cfg->max_in_flight; i++)
			if (d->slots[i].easy != NULL)
				curl_easy_cleanup(d->slots[i].easy);
		if (d->multi != NULL)
			(void)curl_multi_cleanup(d->multi); /* fails only for a bad handle */
		free(d->slots);
		free(d->batch);
		free(d->parked);
		free(d->hosts);
		free(d);
	}
	return NULL;
}

void dispatch_wakeup(struct dispatch *d)
{
	/* Fails only when the wakeup pipe is full, and then a wakeup is pending anyway. */
	(void)curl_multi_wakeup(d->multi);
}

void dispatch_stop(struct dispatch *d)
{
	if (d == NULL)
		return;
	atomic_store(&d->stopping, true);
	(void)curl_multi_wakeup(d->multi); /* as in dispatch_wakeup */
}

void dispatch_destroy(struct dispatch *d)
{
	if (d == NULL)
		return;
	dispatch_stop(d);
	pthread_join(d->thread, NULL);
	for (size_t i = 0; i < d->cfg.max_in_flight; i++) {
		if (d->slots[i].easy != NULL)
			curl_easy_cleanup(d->slots[i].easy);
	}
	(void)curl_multi_cleanup(d->multi); /* fails only for a bad handle */
	free(d->slots);
	free(d->batch);
	free(d->parked);
	free(d->hosts);
	free(d);
}

void dispatch_stats(struct dispatch *d, struct dispatch_stats *out)
{
	out->in_flight = atomic_load(&d->stat_in_flight);
	out->peak_in_flight = atomic_load(&d->stat_peak);
	out->attempts = atomic_load(&d->stat_attempts);
	out->parked = atomic_load(&d->stat_parked);
}
