/* fuzz_ratelimit.c -- libFuzzer: IP_RATE_LIMIT as ratelimit_parse reads it, and the bucket it
 * configures (gateway/ratelimit.c).
 *
 * Input: the setting's text. Invariants:
 * - it is accepted exactly when it is "0" (off) or N/s or N/m with an optional :BURST, N and
 *   BURST decimal from 1 to 1000000 (N under 24 characters); the rate is then N per second
 *   or per minute, and the burst BURST, or else twice the rate per second rounded down and
 *   at least 1;
 * - a limiter made with them lets exactly BURST requests of one caller through at one
 *   instant (for a burst up to 256), then refuses with a wait of at least 1 s, and after
 *   that wait it lets the next one through (a Retry-After a client obeys is enough). */
#include <math.h>
#include <stdbool.h>

#include "fuzz_check.h"
#include "ratelimit.h"

static bool model_number(const char *t, size_t len, long *out)
{
	if (len == 0 || strspn(t, "0123456789") < len)
		return false;
	size_t z = 0;
	while (z + 1 < len && t[z] == '0')
		z++;
	if (len - z > 7)
		return false;
	long v = 0;
	for (size_t i = z; i < len; i++)
		v = v * 10 + (t[i] - '0');
	*out = v;
	return v >= 1 && v <= 1000000;
}

static bool model(const char *t, double *rate, double *burst)
{
	if (strcmp(t, "0") == 0) {
		*rate = *burst = 0;
		return true;
	}
	size_t nlen = strcspn(t, "/");
	long n, b;
	if (t[nlen] != '/' || nlen >= 24 || !model_number(t, nlen, &n))
		return false;
	const char *u = t + nlen + 1;
	if (u[0] != 's' && u[0] != 'm')
		return false;
	*rate = (double)n / (u[0] == 's' ? 1.0 : 60.0);
	if (u[1] == '\0') {
		*burst = fmax(1.0, floor(2.0 * *rate));
		return true;
	}
	if (u[1] != ':' || !model_number(u + 2, strlen(u + 2), &b))
		return false;
	*burst = (double)b;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size, 256);
	if (text == NULL)
		return 0;
	double rate = -1, burst = -1, wrate = -1, wburst = -1;
	bool ok = ratelimit_parse(text, &rate, &burst);
	bool want = model(text, &wrate, &wburst);
	CHECK(ok == want, "'%s' %s", text, ok ? "accepted" : "refused");
	if (!ok || rate == 0) {
		CHECK(!ok || burst == 0, "'%s': off with a burst", text);
		free(text);
		return 0;
	}
	CHECK(rate == wrate && burst == wburst, "'%s': %g/s burst %g, expected %g/s burst %g", text,
	      rate, burst, wrate, wburst);
	CHECK(burst >= 1 && burst == floor(burst), "'%s': burst %g", text, burst);

	if (burst <= 256) {
		struct ratelimit *rl = ratelimit_create(rate, burst, 16);
		CHECK(rl != NULL, "out of memory");
		int64_t now = 1000000000;
		for (int i = 0; i < (int)burst; i++)
			CHECK(ratelimit_take(rl, "192.0.2.1", now) == 0, "'%s': request %d refused",
			      text, i + 1);
		int64_t wait = ratelimit_take(rl, "192.0.2.1", now);
		CHECK(wait >= 1, "'%s': request %d let through", text, (int)burst + 1);
		CHECK(ratelimit_take(rl, "192.0.2.1", now + wait * 1000000) == 0,
		      "'%s': refused again after the %lld s it said to wait", text,
		      (long long)wait);
		ratelimit_destroy(rl);
	}
	free(text);
	return 0;
}
