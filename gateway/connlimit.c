/* connlimit.c -- open connections per client address (see connlimit.h).
 *
 * One lock over a small open-addressing table: an address may use the PROBE slots from its
 * hash; a slot whose count fell to zero is free again. Accepting a connection is rare next to
 * the work of a request, so one lock is enough. */
#include "connlimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PROBE 16

struct slot {
	unsigned char key[16];
	unsigned count; /* 0: free */
};

struct connlimit {
	pthread_mutex_t lock;
	unsigned per_ip;
	size_t mask;
	struct slot *slots;
};

struct connlimit *connlimit_create(unsigned per_ip, size_t slots)
{
	struct connlimit *cl = calloc(1, sizeof(*cl));
	size_t n = 64;
	while (n < slots)
		n *= 2;
	if (cl == NULL || (cl->slots = calloc(n, sizeof(struct slot))) == NULL ||
	    pthread_mutex_init(&cl->lock, NULL) != 0) {
		if (cl != NULL)
			free(cl->slots);
		free(cl);
		return NULL;
	}
	cl->per_ip = per_ip;
	cl->mask = n - 1;
	return cl;
}

void connlimit_destroy(struct connlimit *cl)
{
	if (cl == NULL)
		return;
	pthread_mutex_destroy(&cl->lock);
	free(cl->slots);
	free(cl);
}

/* The address as 16 bytes: IPv4 (an IPv4-mapped IPv6 address too) in full, IPv6 by its /64,
 * as the rate limiter counts callers: one host is usually given a whole /64, and counting its
 * addresses apart would give it 2^64 limits. False for another family. */
static bool key_of(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			memcpy(key, a->s6_addr + 12, 4);
		else
			memcpy(key, a->s6_addr, 8);
		return true;
	}
	return false;
}

static size_t hash(const unsigned char key[16])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 32));
}

/* The slot holding key, or with create the first free one of its probe (NULL when none). */
static struct slot *find(struct connlimit *cl, const unsigned char key[16], bool create)
{
	size_t home = hash(key);
	struct slot *free_slot = NULL;
	for (size_t i = 0; i < PROBE; i++) {
		struct slot *s = &cl->slots[(home + i) & cl->mask];
		if (s->count > 0 && memcmp(s->key, key, 16) == 0)
			return s;
		if (s->count == 0 && free_slot == NULL)
			free_slot = s;
	}
	if (create && free_slot != NULL)
		memcpy(free_slot->key, key, 16);
	return create ? free_slot : NULL;
}

bool connlimit_allows(struct connlimit *cl, const struct sockaddr *sa)
{
	unsigned char key[16];
	if (!key_of(sa, key))
		return true;
	pthread_mutex_lock(&cl->lock);
	struct slot *s = find(cl, key, false);
	bool ok = s == NULL || s->count < cl->per_ip;
	pthread_mutex_unlock(&cl->lock);
	return ok;
}

void connlimit_opened(struct connlimit *cl, const struct sockaddr *sa)
{
	unsigned char key[16];
	if (!key_of(sa, key))
		return;
	pthread_mutex_lock(&cl->lock);
	struct slot *s = find(cl, key, true);
	if (s != NULL)
		s->count++;
	pthread_mutex_unlock(&cl->lock);
}

void connlimit_closed(struct connlimit *cl, const struct sockaddr *sa)
{
	unsigned char key[16];
	if (!key_of(sa, key))
		return;
	pthread_mutex_lock(&cl->lock);
	struct slot *s = find(cl, key, false);
	if (s != NULL)
		s->count--;
	pthread_mutex_unlock(&cl->lock);
}
