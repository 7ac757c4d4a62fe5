/* timeutil.c -- clocks and RFC 3339 timestamps. */
#include "timeutil.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t time_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void time_rfc3339(int64_t epoch_ms, char out[TIME_RFC3339_LEN + 1])
{
	time_t secs = (time_t)(epoch_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	/* The wide buffer keeps the compiler's truncation check quiet for absurd years. */
	char buf[64];
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)(epoch_ms % 1000));
	memcpy(out, buf, TIME_RFC3339_LEN);
	out[TIME_RFC3339_LEN] = '\0';
}

struct timespec time_deadline(clockid_t clock, int64_t ms)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}
