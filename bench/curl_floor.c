/* curl_floor.c -- the fastest libcurl can fan out here: one thread, one multi handle, easy
 * handles reused, N POSTs with the dispatcher's body and headers, nothing else (no store, no
 * queue, no records). It is the ceiling for webhooks-svc's dispatcher, measured in the same
 * run as wrk's, so BENCHMARKS.md can say how much of the gap is libcurl and how much is ours.
 *
 *   bench-curl-floor --count N --in-flight K URL...   (URLs are used round-robin)
 *
 * Prints "RESULT transfers=N ok=M duration_s=S transfers_per_sec=R". */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every libcurl call is checked: a benchmark that goes on after a failed call measures
 * something else. CURLE_OK and CURLM_OK are both 0. */
#define CHECK(call)                                                                                \
	do {                                                                                       \
		if ((call) != 0) {                                                                 \
			fprintf(stderr, "bench-curl-floor: %s failed (line %d)\n", #call,          \
			        __LINE__);                                                         \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

struct slot {
	CURL *easy;
	char url[256];
	char body[160];
};

static size_t discard(char *data, size_t size, size_t nmemb, void *userp)
{
	(void)data;
	(void)userp;
	return size * nmemb;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Start transfer number n on slot s: a distinct path per transfer, like one per webhook. */
static void launch(CURLM *multi, struct slot *s, const char *base, long n)
{
	snprintf(s->url, sizeof(s->url), "%s/hook-%ld", base, n);
	snprintf(s->body, sizeof(s->body), "{\"ipAddress\":\"127.0.0.1\",\"timestamp\":%lld}",
	         (long long)time(NULL));
	CHECK(curl_easy_setopt(s->easy, CURLOPT_URL, s->url));
	CHECK(curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body));
	CHECK(curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body)));
	CHECK(curl_multi_add_handle(multi, s->easy));
}

static long parse_long(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v <= 0) {
		fprintf(stderr, "bench-curl-floor: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	long count = 100000, in_flight = 64;
	int first_url = argc;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = parse_long(argv[++i], "--count");
		else if (strcmp(argv[i], "--in-flight") == 0 && i + 1 < argc)
			in_flight = parse_long(argv[++i], "--in-flight");
		else {
			first_url = i;
			break;
		}
	}
	int nurls = argc - first_url;
	if (nurls <= 0) {
		fprintf(stderr, "usage: bench-curl-floor [--count N] [--in-flight K] URL...\n");
		return 2;
	}
	CHECK(curl_global_init(CURL_GLOBAL_DEFAULT));
	CURLM *multi = curl_multi_init();
	struct slot *slots = calloc((size_t)in_flight, sizeof(*slots));
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	headers = curl_slist_append(headers, "webhook-id: 00000000-0000-0000-0000-000000000000");
	if (multi == NULL || slots == NULL || headers == NULL)
		return 1;
	CHECK(curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, in_flight * 2 + 16));

	long started = 0, done = 0, ok = 0;
	double t0 = now_s();
	for (long i = 0; i < in_flight && started < count; i++) {
		struct slot *s = &slots[i];
		s->easy = curl_easy_init();
		if (s->easy == NULL)
			return 1;
		CHECK(curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s));
		CHECK(curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L));
		CHECK(curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard));
		CHECK(curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, headers));
		CHECK(curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "webhooks/floor"));
		CHECK(curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 10000L));
		launch(multi, s, argv[first_url + started % nurls], started);
		started++;
	}
	while (done < count) {
		CHECK(curl_multi_poll(multi, NULL, 0, 1000, NULL));
		int running;
		CHECK(curl_multi_perform(multi, &running));
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct slot *s;
			CURL *e = m->easy_handle;
			long status = 0;
			CHECK(curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s));
			CHECK(curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status));
			if (m->data.result == CURLE_OK && status / 100 == 2)
				ok++;
			done++;
			CHECK(curl_multi_remove_handle(multi, e));
			if (started < count) {
				launch(multi, s, argv[first_url + started % nurls], started);
				started++;
			}
		}
	}
	double dt = now_s() - t0;
	printf("RESULT transfers=%ld ok=%ld duration_s=%.3f transfers_per_sec=%.1f\n", done, ok, dt,
	       (double)done / dt);
	for (long i = 0; i < in_flight; i++)
		if (slots[i].easy != NULL)
			curl_easy_cleanup(slots[i].easy);
	curl_slist_free_all(headers);
	CHECK(curl_multi_cleanup(multi));
	free(slots);
	curl_global_cleanup();
	return ok == count ? 0 : 1;
}
