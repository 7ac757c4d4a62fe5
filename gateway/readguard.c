/* readguard.c -- a deadline for reading each request (see readguard.h). */
#include "readguard.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "timeutil.h"

/* Cut connections are logged at most this often, with a count of the others. */
#define WARN_EVERY_MS 10000

struct rg_conn {
	int fd;
	int64_t due_ms; /* monotonic; meaningful while listed */
	bool listed;
	struct rg_conn *prev, *next;
};

struct readguard {
	int64_t timeout_ms;
	pthread_mutex_t lock;
	pthread_cond_t wake;         /* on CLOCK_MONOTONIC */
	struct rg_conn *head, *tail; /* listed connections, the first due first */
	bool stop;
	pthread_t thread;
	_Atomic uint64_t cut;
	struct log_limited cut_warning;
};

static void unlink_conn(struct readguard *g, struct rg_conn *c)
{
	if (!c->listed)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		g->tail = c->prev;
	c->prev = c->next = NULL;
	c->listed = false;
}

/* Give c a deadline timeout_ms from now: at the tail, which keeps the list in due order. */
static void arm(struct readguard *g, struct rg_conn *c)
{
	unlink_conn(g, c);
	c->due_ms = time_mono_ms() + g->timeout_ms;
	c->prev = g->tail;
	c->next = NULL;
	if (g->tail != NULL)
		g->tail->next = c;
	else
		g->head = c;
	g->tail = c;
	c->listed = true;
	if (g->head == c)
		pthread_cond_signal(&g->wake); /* the thread was waiting for nothing */
}

static void *guard_main(void *arg)
{
	struct readguard *g = arg;
	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		if (g->head == NULL) {
			pthread_cond_wait(&g->wake, &g->lock);
			continue;
		}
		int64_t now = time_mono_ms();
		if (g->head->due_ms > now) {
			struct timespec until =
			    time_deadline(CLOCK_MONOTONIC, g->head->due_ms - now);
			(void)pthread_cond_timedwait(&g->wake, &g->lock, &until);
			continue;
		}
		/* Still open: its socket is closed only after readguard_closed, under this lock. */
		struct rg_conn *c = g->head;
		unlink_conn(g, c);
		atomic_fetch_add(&g->cut, 1);     /* counted before it shows */
		(void)shutdown(c->fd, SHUT_RDWR); /* fails only if the client has gone already */
		log_warn_limited(&g->cut_warning,
		                 "closing connections that did not send a whole request within "
		                 "%lld ms (GATEWAY_READ_TIMEOUT_MS)",
		                 (long long)g->timeout_ms);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

struct readguard *readguard_create(int64_t timeout_ms)
{
	struct readguard *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->timeout_ms = timeout_ms;
	pthread_condattr_t attr;
	if (pthread_condattr_init(&attr) != 0) {
		free(g);
		return NULL;
	}
	bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
	          pthread_cond_init(&g->wake, &attr) == 0;
	pthread_condattr_destroy(&attr);
	if (!ok) {
		free(g);
		return NULL;
	}
	if (pthread_mutex_init(&g->lock, NULL) != 0) {
		pthread_cond_destroy(&g->wake);
		free(g);
		return NULL;
	}
	/* glibc's init of a default mutex only stores its attributes: it cannot fail. */
	(void)pthread_mutex_init(&g->cut_warning.lock, NULL);
	g->cut_warning.every_ms = WARN_EVERY_MS;
	if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
		pthread_mutex_destroy(&g->cut_warning.lock);
		pthread_mutex_destroy(&g->lock);
		pthread_cond_destroy(&g->wake);
		free(g);
		return NULL;
	}
	return g;
}

void readguard_destroy(struct readguard *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	pthread_mutex_destroy(&g->cut_warning.lock);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->wake);
	free(g);
}

struct rg_conn *readguard_opened(struct readguard *g, int fd)
{
	if (g == NULL)
		return NULL;
	struct rg_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->fd = fd;
	pthread_mutex_lock(&g->lock);
	arm(g, c);
	pthread_mutex_unlock(&g->lock);
	return c;
}

void readguard_read(struct readguard *g, struct rg_conn *c)
{
	if (g == NULL || c == NULL)
		return;
	pthread_mutex_lock(&g->lock);
	unlink_conn(g, c);
	pthread_mutex_unlock(&g->lock);
}

void readguard_next(struct readguard *g, struct rg_conn *c)
{
	if (g == NULL || c == NULL)
		return;
	pthread_mutex_lock(&g->lock);
	arm(g, c);
	pthread_mutex_unlock(&g->lock);
}

void readguard_closed(struct readguard *g, struct rg_conn *c)
{
	if (g == NULL || c == NULL)
		return;
	pthread_mutex_lock(&g->lock);
	unlink_conn(g, c);
	pthread_mutex_unlock(&g->lock);
	free(c);
}

uint64_t readguard_cut_count(struct readguard *g)
{
	return g != NULL ? atomic_load(&g->cut) : 0;
}
