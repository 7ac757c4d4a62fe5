/* ids.c -- UUID identifiers for webhooks, events and deliveries. */
#include "ids.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

void id_generate(char out[ID_LEN + 1])
{
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

void id_generate_ordered(char out[ID_LEN + 1])
{
	/* Per thread, so ids from one thread are strictly increasing without a lock. */
	static _Thread_local uint64_t last_ms;
	static _Thread_local uint16_t counter;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (ms > last_ms) {
		last_ms = ms;
		counter = 0;
	} else if (++counter > 0x0fff) {
		/* 4096 ids in one millisecond: borrow the next millisecond. */
		last_ms++;
		counter = 0;
	}
	/* The random bits come from a per-thread xorshift generator seeded from libuuid's
	 * random source: these ids are made tens of thousands of times a second, and uniqueness
	 * rests on the time and counter, with 62 random bits against other threads and hosts. */
	static _Thread_local uint64_t rng;
	if (rng == 0) {
		uuid_t seed;
		uuid_generate_random(seed);
		memcpy(&rng, seed, sizeof(rng));
		rng |= 1;
	}
	uuid_t u;
	for (int half = 0; half < 2; half++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		memcpy(u + 8 * half, &rng, 8);
	}
	for (int i = 0; i < 6; i++)
		u[i] = (unsigned char)(last_ms >> (40 - 8 * i));
	u[6] = (unsigned char)(0x70 | (counter >> 8));
	u[7] = (unsigned char)(counter & 0xff);
	u[8] = (unsigned char)(0x80 | (u[8] & 0x3f));
	uuid_unparse_lower(u, out);
}

/* The milliseconds in an ordered id's first 48 bits (12 hex digits around one dash). */
static uint64_t id_ms(const char *id)
{
	uint64_t ms = 0;
	for (size_t i = 0; i < 13; i++) {
		char c = id[i];
		if (c == '-')
			continue;
		ms = ms << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	return ms;
}

void id_generate_after(char out[ID_LEN + 1], const char *floor)
{
	id_generate_ordered(out);
	if (floor == NULL || !id_valid(floor) || strcmp(out, floor) > 0)
		return;
	uint64_t ms = id_ms(floor) + 1;
	char head[16];
	snprintf(head, sizeof(head), "%012llx", (unsigned long long)(ms & 0xffffffffffffull));
	memcpy(out, head, 8);
	memcpy(out + 9, head + 8, 4);
}

/* splitmix64's finaliser: a cheap, well-mixed 64-bit hash step. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Feed text into two differently seeded FNV-1a style hashes. */
static void hash_text(uint64_t *h1, uint64_t *h2, const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		*h1 = (*h1 ^ (unsigned char)*p) * 0x100000001b3ull;
		*h2 = ((*h2 ^ (unsigned char)*p) * 0x100000001b3ull) ^ (*h2 >> 29);
	}
}

void id_derive(char out[ID_LEN + 1], const char *event_id, const char *webhook_id)
{
	uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
	hash_text(&h1, &h2, event_id);
	hash_text(&h1, &h2, webhook_id);
	h1 = mix(h1);
	h2 = mix(h2 ^ 0x9e3779b97f4a7c15ull);
	uuid_t u;
	uint64_t ms = id_ms(webhook_id);
	for (int i = 0; i < 6; i++)
		u[i] = (unsigned char)(ms >> (40 - 8 * i));
	for (int i = 6; i < 8; i++)
		u[i] = (unsigned char)(h1 >> (8 * i));
	for (int i = 8; i < 16; i++)
		u[i] = (unsigned char)(h2 >> (8 * (i - 8)));
	/* Version 8 (custom) and the RFC 4122 variant. */
	u[6] = (unsigned char)(0x80 | (u[6] & 0x0f));
	u[8] = (unsigned char)(0x80 | (u[8] & 0x3f));
	uuid_unparse_lower(u, out);
}

bool id_valid(const char *text)
{
	if (text == NULL || strlen(text) != ID_LEN)
		return false;
	for (size_t i = 0; i < ID_LEN; i++) {
		char c = text[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}

bool id_pack(const char *text, unsigned char out[ID_BIN_LEN])
{
	uuid_t u;
	if (!id_valid(text) || uuid_parse(text, u) != 0)
		return false;
	memcpy(out, u, ID_BIN_LEN);
	return true;
}

void id_unpack(const unsigned char in[ID_BIN_LEN], char out[ID_LEN + 1])
{
	uuid_t u;
	memcpy(u, in, ID_BIN_LEN);
	uuid_unparse_lower(u, out);
}
