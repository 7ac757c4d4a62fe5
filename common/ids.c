/* ids.c -- UUID identifiers for webhooks, events and deliveries. */
#include "ids.h"

#include <stdint.h>
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
