/* test_route.c -- unit tests for gateway/route.c: which route a method and path name (HEAD
 * wherever GET, the Allow lists, malformed ids), the limit and after arguments, the bearer
 * token and the X-Forwarded-For address. tests/fuzz/fuzz_route.c checks the same rules on
 * generated input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "route.h"

#define ID  "01a23e97-785d-7000-81bc-6924a948a2ed"
#define BAD "01A23E97-785D-7000-81BC-6924A948A2ED"

static void assert_route(const char *method, const char *path, enum route_id want,
                         const char *allow, const char *id, const char *bad_id)
{
	struct route_match m;
	enum route_id r = route_match(path, method, &m);
	if (r != want || m.route != want)
		fail_msg("%s %s: route %d, expected %d", method, path, r, want);
	if ((allow == NULL) != (m.allow == NULL) || (allow != NULL && strcmp(allow, m.allow) != 0))
		fail_msg("%s %s: Allow %s, expected %s", method, path, m.allow ? m.allow : "none",
		         allow ? allow : "none");
	assert_int_equal(m.known, allow != NULL);
	assert_string_equal(m.id, id);
	if ((bad_id == NULL) != (m.bad_id == NULL) ||
	    (bad_id != NULL && strcmp(bad_id, m.bad_id) != 0))
		fail_msg("%s %s: bad id %s, expected %s", method, path,
		         m.bad_id ? m.bad_id : "none", bad_id ? bad_id : "none");
}

static void test_routes(void **state)
{
	(void)state;
	const char *w = "GET, HEAD, PUT, DELETE", *g = "GET, HEAD";
	assert_route("GET", "/webhooks", R_LIST, "GET, HEAD, POST", "", NULL);
	assert_route("HEAD", "/webhooks", R_LIST, "GET, HEAD, POST", "", NULL);
	assert_route("POST", "/webhooks", R_REGISTER, "GET, HEAD, POST", "", NULL);
	assert_route("PATCH", "/webhooks", R_NONE, "GET, HEAD, POST", "", NULL);
	assert_route("GET", "/ip", R_TRIGGER, g, "", NULL);
	assert_route("HEAD", "/healthz", R_HEALTH, g, "", NULL);
	assert_route("POST", "/healthz", R_NONE, g, "", NULL);
	assert_route("GET", "/metrics", R_METRICS, g, "", NULL);
	assert_route("HEAD", "/metrics", R_METRICS, g, "", NULL);
	assert_route("POST", "/metrics", R_NONE, g, "", NULL);
	assert_route("GET", "/metrics/", R_NONE, NULL, "", NULL);
	assert_route("GET", "/webhooks/" ID, R_GET, w, ID, NULL);
	assert_route("HEAD", "/webhooks/" ID, R_GET, w, ID, NULL);
	assert_route("PUT", "/webhooks/" ID, R_UPDATE, w, ID, NULL);
	assert_route("DELETE", "/webhooks/" ID, R_DELETE, w, ID, NULL);
	assert_route("POST", "/webhooks/" ID, R_NONE, w, ID, NULL);
	assert_route("HEAD", "/webhooks/" ID "/secret", R_SECRET, g, ID, NULL);
	assert_route("POST", "/webhooks/" ID "/secret/rotate", R_ROTATE, "POST", ID, NULL);
	assert_route("HEAD", "/webhooks/" ID "/secret/rotate", R_NONE, "POST", ID, NULL);
	assert_route("POST", "/events/" ID "/retry", R_RETRY, "POST", ID, NULL);
	assert_route("GET", "/events/" ID "/retry", R_NONE, "POST", ID, NULL);
	assert_route("POST", "/events/x/retry", R_RETRY, "POST", "", "event");
	assert_route("HEAD", "/events/" ID, R_EVENT, g, ID, NULL);
	assert_route("GET", "/events/" ID "/deliveries", R_DELIVERIES, g, ID, NULL);
	assert_route("DELETE", "/events/" ID, R_NONE, g, ID, NULL);
}

/* A malformed id keeps the route and its method rules, and names no webhook or event. */
static void test_malformed_ids(void **state)
{
	(void)state;
	const char *w = "GET, HEAD, PUT, DELETE", *g = "GET, HEAD";
	assert_route("GET", "/webhooks/not-a-uuid", R_GET, w, "", "webhook");
	assert_route("PUT", "/webhooks/" BAD, R_UPDATE, w, "", "webhook");
	assert_route("POST", "/webhooks/x", R_NONE, w, "", "webhook");
	assert_route("GET", "/webhooks/" ID "0/secret", R_SECRET, g, "", "webhook");
	assert_route("POST", "/webhooks/x/secret/rotate", R_ROTATE, "POST", "", "webhook");
	assert_route("GET", "/events/xyz", R_EVENT, g, "", "event");
	assert_route("HEAD", "/events/xyz/deliveries", R_DELIVERIES, g, "", "event");
	assert_route("POST", "/events/xyz/deliveries", R_NONE, g, "", "event");
	/* An unknown path stays one, whatever its id. */
	const char *unknown[] = {"/",
	                         "/webhooks/",
	                         "/events/",
	                         "/events",
	                         "/webhooks/x/other",
	                         "/webhooks/" ID "/",
	                         "/WEBHOOKS",
	                         "/ip/",
	                         "/events/" ID "/secret",
	                         "/webhooks//",
	                         "/webhooks/" ID "/deliveries"};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		assert_route("GET", unknown[i], R_NONE, NULL, "", NULL);
}

static void test_query_arguments(void **state)
{
	(void)state;
	long l = -1;
	assert_true(route_parse_limit("1", &l) && l == 1);
	assert_true(route_parse_limit("1000", &l) && l == 1000);
	assert_true(route_parse_limit("0050", &l) && l == 50);
	const char *bad[] = {"",   "0",  "1001", "-1",  "+5",
	                     " 5", "5 ", "5x",   "1e3", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		l = -1;
		if (route_parse_limit(bad[i], &l))
			fail_msg("limit '%s' accepted", bad[i]);
		assert_int_equal(l, -1);
	}
	assert_true(route_valid_after(""));
	assert_true(route_valid_after(ID));
	assert_false(route_valid_after(BAD));
	assert_false(route_valid_after(ID "0"));
	assert_false(route_valid_after("nope"));
}

static void test_bearer(void **state)
{
	(void)state;
	const char *t = "s3cret-token";
	size_t n = strlen(t);
	assert_true(route_bearer_ok("Bearer s3cret-token", t, n));
	assert_true(route_bearer_ok("bearer s3cret-token", t, n));
	assert_true(route_bearer_ok("BEARER s3cret-token", t, n));
	assert_true(route_bearer_ok("bEaReR s3cret-token", t, n));
	const char *bad[] = {"Bearer S3CRET-TOKEN",
	                     "Bearer s3cret-toke",
	                     "Bearer s3cret-tokenx",
	                     "Bearer  s3cret-token",
	                     "Bearer\ts3cret-token",
	                     "Bearers3cret-token",
	                     "Basic s3cret-token",
	                     "s3cret-token",
	                     "Bearer ",
	                     ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (route_bearer_ok(bad[i], t, n))
			fail_msg("'%s' accepted", bad[i]);
	assert_false(route_bearer_ok(NULL, t, n));
}

static void test_forwarded_ip(void **state)
{
	(void)state;
	char out[INET6_ADDRSTRLEN];
	assert_true(route_forwarded_ip("203.0.113.7", out, sizeof(out)));
	assert_string_equal(out, "203.0.113.7");
	assert_true(route_forwarded_ip(" \t2001:db8::7, 10.0.0.1", out, sizeof(out)));
	assert_string_equal(out, "2001:db8::7");
	const char *bad[] = {"", " ", "unknown, 10.0.0.1", "203.0.113.7:80", "[::1]", ",10.0.0.1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (route_forwarded_ip(bad[i], out, sizeof(out)))
			fail_msg("'%s' gave '%s'", bad[i], out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_routes),          cmocka_unit_test(test_malformed_ids),
	    cmocka_unit_test(test_query_arguments), cmocka_unit_test(test_bearer),
	    cmocka_unit_test(test_forwarded_ip),
	};
	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
