/* timeutil.h -- clocks and RFC 3339 timestamps. */
#ifndef WEBHOOKS_TIMEUTIL_H
#define WEBHOOKS_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

/* "2026-11-30T03:38:26.123Z" */
#define TIME_RFC3339_LEN 24

/* Wall-clock milliseconds since the UNIX epoch. */
int64_t time_now_ms(void);

/* Monotonic milliseconds, for deadlines and durations. */
int64_t time_mono_ms(void);

/* Monotonic microseconds, for measuring short durations. */
int64_t time_mono_us(void);

/* The absolute time ms milliseconds from now on clock (CLOCK_REALTIME or CLOCK_MONOTONIC, as
 * the condition variable it is for was made), for pthread_cond_timedwait. */
struct timespec time_deadline(clockid_t clock, int64_t ms);

/* Format a wall-clock time as RFC 3339 UTC with milliseconds into out. */
void time_rfc3339(int64_t epoch_ms, char out[TIME_RFC3339_LEN + 1]);

#endif
