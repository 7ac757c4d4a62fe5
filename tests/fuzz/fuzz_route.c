/* fuzz_route.c -- libFuzzer: how the gateway reads a request (gateway/route.c): the route of a
 * method and path, the limit and after query arguments, the bearer token and the
 * X-Forwarded-For address.
 *
 * Input: one byte choosing the method, then NUL-separated fields: the path, limit, after,
 * X-Forwarded-For, Authorization and the admin token. Invariants:
 * - a route is matched only on a known path, by a method its Allow list names (HEAD
 *   wherever GET), and every method that list names matches a route there with the same
 *   id; a known path has an Allow list, an unknown one none and no id;
 * - a matched route never carries an invalid id: it has a valid one, or none and the path's
 *   id is marked malformed (a 404 "no such webhook/event"); the route and its id spell the
 *   path back exactly;
 * - id_valid, limit (1 to 1000, decimal), after ("" or an id), the bearer check (the scheme
 *   in any case, then exactly the token) and the forwarded address (the left-most entry when
 *   it is an address) agree with models written here from the contract. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <strings.h>

#include "fuzz_check.h"
#include "route.h"

static const char *const methods[] = {"GET",   "HEAD",    "POST", "PUT", "DELETE",
                                      "PATCH", "OPTIONS", "get",  ""};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static bool model_id(const char *s)
{
	if (strlen(s) != ID_LEN)
		return false;
	for (size_t i = 0; i < ID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-'
		         : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

/* The path a route and its id (or the malformed id's text) stand for. */
static void spell(enum route_id r, const char *id, char *out, size_t outlen)
{
	switch (r) {
	case R_LIST:
	case R_REGISTER:
		snprintf(out, outlen, "/webhooks");
		break;
	case R_TRIGGER:
		snprintf(out, outlen, "/ip");
		break;
	case R_HEALTH:
		snprintf(out, outlen, "/healthz");
		break;
	case R_METRICS:
		snprintf(out, outlen, "/metrics");
		break;
	case R_GET:
	case R_UPDATE:
	case R_DELETE:
		snprintf(out, outlen, "/webhooks/%s", id);
		break;
	case R_SECRET:
		snprintf(out, outlen, "/webhooks/%s/secret", id);
		break;
	case R_ROTATE:
		snprintf(out, outlen, "/webhooks/%s/secret/rotate", id);
		break;
	case R_EVENT:
		snprintf(out, outlen, "/events/%s", id);
		break;
	case R_DELIVERIES:
		snprintf(out, outlen, "/events/%s/deliveries", id);
		break;
	case R_RETRY:
		snprintf(out, outlen, "/events/%s/retry", id);
		break;
	case R_NONE:
		out[0] = '\0';
		break;
	}
}

static bool has_id(enum route_id r)
{
	return r == R_GET || r == R_UPDATE || r == R_DELETE || r == R_SECRET || r == R_ROTATE ||
	       r == R_EVENT || r == R_DELIVERIES || r == R_RETRY;
}

/* Which methods may name route r. */
static bool method_fits(enum route_id r, const char *method)
{
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		return r == R_LIST || r == R_TRIGGER || r == R_HEALTH || r == R_METRICS ||
		       r == R_GET || r == R_EVENT || r == R_DELIVERIES || r == R_SECRET;
	if (strcmp(method, "POST") == 0)
		return r == R_REGISTER || r == R_ROTATE || r == R_RETRY;
	if (strcmp(method, "PUT") == 0)
		return r == R_UPDATE;
	if (strcmp(method, "DELETE") == 0)
		return r == R_DELETE;
	return false;
}

static bool allow_names(const char *allow, const char *method)
{
	size_t len = strlen(method);
	for (const char *p = allow; *p != '\0';) {
		size_t n = strcspn(p, ",");
		if (n == len && strncmp(p, method, len) == 0)
			return true;
		p += n;
		p += strspn(p, ", ");
	}
	return false;
}

static void check_route(const char *path, const char *method)
{
	struct route_match m;
	enum route_id r = route_match(path, method, &m);
	CHECK(r == m.route && r >= R_NONE && r < ROUTE_COUNT, "%s %s: route %d", method, path, r);
	CHECK(m.known == (m.allow != NULL), "%s %s: known %d, allow %s", method, path, m.known,
	      m.allow != NULL ? m.allow : "(null)");
	CHECK(m.id[0] == '\0' || model_id(m.id), "%s %s: id '%s'", method, path, m.id);
	if (!m.known) {
		CHECK(r == R_NONE && m.id[0] == '\0' && m.bad_id == NULL,
		      "%s %s: unknown path but %d", method, path, r);
		return;
	}
	CHECK((r != R_NONE) == allow_names(m.allow, method), "%s %s: route %d, Allow: %s", method,
	      path, r, m.allow);
	if (allow_names(m.allow, "GET"))
		CHECK(allow_names(m.allow, "HEAD"), "%s: Allow: %s lacks HEAD", path, m.allow);

	/* The id: valid, or none and marked malformed; spelled back, the path. */
	const char *seg = NULL;
	if (strncmp(path, "/webhooks/", 10) == 0)
		seg = path + 10;
	else if (strncmp(path, "/events/", 8) == 0)
		seg = path + 8;
	char segment[4096] = "";
	if (seg != NULL) {
		size_t n = strcspn(seg, "/");
		CHECK(n > 0 && n < sizeof(segment), "%s: a route with an empty id", path);
		memcpy(segment, seg, n);
		segment[n] = '\0';
		CHECK(m.bad_id != NULL
		          ? m.id[0] == '\0' && !model_id(segment) &&
		                strcmp(m.bad_id, path[1] == 'e' ? "event" : "webhook") == 0
		          : strcmp(m.id, segment) == 0 && model_id(segment),
		      "%s: id '%s', bad %s", path, m.id, m.bad_id != NULL ? m.bad_id : "no");
	} else {
		CHECK(m.id[0] == '\0' && m.bad_id == NULL, "%s: an id '%s'", path, m.id);
	}
	if (r != R_NONE) {
		CHECK(method_fits(r, method), "%s %s: route %d", method, path, r);
		CHECK(has_id(r) == (seg != NULL), "%s %s: route %d", method, path, r);
		char back[8192];
		spell(r, m.id[0] != '\0' ? m.id : segment, back, sizeof(back));
		CHECK(strcmp(back, path) == 0, "%s %s: route %d spells '%s'", method, path, r,
		      back);
	}

	/* Every method of the Allow list matches here, with the same id. */
	for (size_t i = 0; i < NMETHODS; i++) {
		struct route_match o;
		enum route_id ro = route_match(path, methods[i], &o);
		CHECK(o.known && strcmp(o.allow, m.allow) == 0 && strcmp(o.id, m.id) == 0 &&
		          o.bad_id == m.bad_id,
		      "%s %s and %s differ", methods[i], path, method);
		CHECK((ro != R_NONE) == allow_names(m.allow, methods[i]),
		      "%s %s: route %d, Allow: %s", methods[i], path, ro, m.allow);
	}
}

static void check_query(const char *limit, const char *after)
{
	long got = -1, want = 0;
	const char *p = limit + (limit[0] == '-');
	bool digits = *p != '\0' && strspn(p, "0123456789") == strlen(p);
	bool ok = false;
	if (digits && limit[0] != '-') {
		p += strspn(p, "0"); /* leading zeros */
		ok = strlen(p) <= 4;
		for (; ok && *p != '\0'; p++)
			want = want * 10 + (*p - '0');
		ok = ok && want >= 1 && want <= 1000;
	}
	bool r = route_parse_limit(limit, &got);
	CHECK(r == ok && (!ok || got == want), "limit '%s': %d %ld, expected %d %ld", limit, r, got,
	      ok, want);
	CHECK(id_valid(after) == model_id(after), "id_valid('%s')", after);
	CHECK(route_valid_after(after) == (after[0] == '\0' || model_id(after)), "after '%s'",
	      after);
}

static void check_headers(const char *xff, const char *auth, const char *token)
{
	bool want = strncasecmp(auth, "bearer ", 7) == 0 && strcmp(auth + 7, token) == 0;
	CHECK(route_bearer_ok(auth, token, strlen(token)) == want, "'%s' for token '%s'", auth,
	      token);
	CHECK(!route_bearer_ok(NULL, token, strlen(token)), "no header accepted");

	const char *first = xff + strspn(xff, " \t");
	size_t len = strcspn(first, ", \t");
	char cand[4096], out[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	memcpy(cand, first, len < sizeof(cand) ? len : 0);
	cand[len < sizeof(cand) ? len : 0] = '\0';
	bool ok = len > 0 && len < INET6_ADDRSTRLEN &&
	          (inet_pton(AF_INET, cand, bin) == 1 || inet_pton(AF_INET6, cand, bin) == 1);
	bool r = route_forwarded_ip(xff, out, sizeof(out));
	CHECK(r == ok && (!ok || strcmp(out, cand) == 0), "X-Forwarded-For '%s': %d '%s'", xff, r,
	      r ? out : "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	const char *method = methods[data[0] % NMETHODS];
	char buf[4097];
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	const char *field[6] = {"", "", "", "", "", ""};
	char *p = buf;
	for (size_t i = 0; i < 6 && p <= buf + size - 1; i++) {
		field[i] = p;
		p += strlen(p) + 1;
	}
	check_route(field[0], method);
	check_query(field[1], field[2]);
	check_headers(field[3], field[4], field[5]);
	return 0;
}
