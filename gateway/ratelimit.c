/* ratelimit.c -- a token bucket per caller address, in a fixed amount of memory (see
 * ratelimit.h).
 *
 * The table is split into shards, each with its own lock, so that the HTTP threads rarely wait
 * on each other. An address hashes (with a per-process random key, so that nobody can aim
 * many addresses at one slot) to a shard and a home slot in it, and may use the PROBE slots
 * from there: its own if one holds it, else a free one, else the one idle longest. */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"

#define SHARDS 64
#define PROBE  8

struct bucket {
	unsigned char key[16]; /* IPv4 in the first 4 bytes, or an IPv6 /64 in the first 8 */
	bool used;
	double tokens;
	int64_t last_us;
};

struct shard {
	pthread_mutex_t lock;
	struct bucket *slots;
};

struct ratelimit {
	double rate, burst;
	size_t per_shard; /* a power of two */
	uint64_t seed[2];
	struct shard shards[SHARDS];
};

bool ratelimit_parse(const char *text, double *rate_per_s, double *burst)
{
	long n = 0, b = 0;
	char num[24];
	if (strcmp(text, "0") == 0) {
		*rate_per_s = 0;
		*burst = 0;
		return true;
	}
	size_t len = strcspn(text, "/");
	if (len == 0 || len >= sizeof(num) || text[len] != '/')
		return false;
	memcpy(num, text, len);
	num[len] = '\0';
	if (!cfg_parse_long(num, &n) || n < 1 || n > 1000000)
		return false;
	const char *unit = text + len + 1;
	double per;
	if (unit[0] == 's')
		per = 1.0;
	else if (unit[0] == 'm')
		per = 60.0;
	else
		return false;
	*rate_per_s = (double)n / per;
	if (unit[1] == '\0') {
		*burst = fmax(1.0, floor(2.0 * *rate_per_s));
		return true;
	}
	if (unit[1] != ':' || !cfg_parse_long(unit + 2, &b) || b < 1 || b > 1000000)
		return false;
	*burst = (double)b;
	return true;
}

struct ratelimit *ratelimit_create(double rate_per_s, double burst, size_t slots)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));
	if (rl == NULL)
		return NULL;
	rl->rate = rate_per_s;
	rl->burst = burst;
	size_t per = 16;
	while (per * SHARDS < slots)
		per *= 2;
	rl->per_shard = per;
	if (getrandom(rl->seed, sizeof(rl->seed), 0) != (ssize_t)sizeof(rl->seed)) {
		/* Only the hash's resistance to chosen addresses depends on it. */
		rl->seed[0] = (uint64_t)(uintptr_t)rl ^ 0x9e3779b97f4a7c15ULL;
		rl->seed[1] = ~rl->seed[0];
	}
	for (int i = 0; i < SHARDS; i++) {
		rl->shards[i].slots = calloc(per, sizeof(struct bucket));
		if (rl->shards[i].slots == NULL ||
		    pthread_mutex_init(&rl->shards[i].lock, NULL) != 0) {
			free(rl->shards[i].slots);
			for (int j = 0; j < i; j++) {
				pthread_mutex_destroy(&rl->shards[j].lock);
				free(rl->shards[j].slots);
			}
			free(rl);
			return NULL;
		}
	}
	return rl;
}

void ratelimit_destroy(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (int i = 0; i < SHARDS; i++) {
		pthread_mutex_destroy(&rl->shards[i].lock);
		free(rl->shards[i].slots);
	}
	free(rl);
}

/* The address as a key: IPv4 (an IPv4-mapped IPv6 address too) in full, IPv6 by its /64. */
static void make_key(const char *ip, unsigned char key[16])
{
	unsigned char a[16];
	memset(key, 0, 16);
	if (inet_pton(AF_INET, ip, a) == 1) {
		memcpy(key, a, 4);
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a)) {
			memcpy(key, a + 12, 4);
		} else {
			memcpy(key, a, 8);
			key[15] = 6; /* apart from every IPv4 key */
		}
	} else {
		key[15] = 0xff; /* one shared bucket for whatever does not parse */
	}
}

/* A keyed 64-bit mix of the 16-byte key (SipHash-like rounds are overkill here; this is
 * splitmix64 over key words xor-ed with the secret seed). */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t hash_key(const struct ratelimit *rl, const unsigned char key[16])
{
	uint64_t w0, w1;
	memcpy(&w0, key, 8);
	memcpy(&w1, key + 8, 8);
	return mix(mix(w0 ^ rl->seed[0]) ^ w1 ^ rl->seed[1]);
}

int64_t ratelimit_take(struct ratelimit *rl, const char *ip, int64_t now_us)
{
	unsigned char key[16];
	make_key(ip, key);
	uint64_t h = hash_key(rl, key);
	struct shard *sh = &rl->shards[h % SHARDS];
	size_t mask = rl->per_shard - 1, home = (size_t)(h / SHARDS) & mask;

	pthread_mutex_lock(&sh->lock);
	struct bucket *b = NULL, *free_slot = NULL, *oldest = NULL;
	for (size_t i = 0; i < PROBE; i++) {
		struct bucket *s = &sh->slots[(home + i) & mask];
		if (s->used && memcmp(s->key, key, 16) == 0) {
			b = s;
			break;
		}
		if (!s->used) {
			if (free_slot == NULL)
				free_slot = s;
		} else if (oldest == NULL || s->last_us < oldest->last_us) {
			oldest = s;
		}
	}
	struct bucket *victim = free_slot != NULL ? free_slot : oldest;
	if (b == NULL) {
		b = victim;
		memcpy(b->key, key, 16);
		b->used = true;
		b->tokens = rl->burst;
		b->last_us = now_us;
	}
	if (now_us > b->last_us) {
		b->tokens =
		    fmin(rl->burst, b->tokens + (double)(now_us - b->last_us) / 1e6 * rl->rate);
		b->last_us = now_us;
	}
	int64_t wait = 0;
	if (b->tokens >= 1.0)
		b->tokens -= 1.0;
	else
		wait = (int64_t)fmax(1.0, ceil((1.0 - b->tokens) / rl->rate));
	pthread_mutex_unlock(&sh->lock);
	return wait;
}
