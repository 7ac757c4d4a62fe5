/* route.c -- what an HTTP request names, read from its text alone (see route.h). */
#include "route.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"

enum route_id route_match(const char *path, const char *method, struct route_match *m)
{
	memset(m, 0, sizeof(*m));
	/* HEAD is answered wherever GET is, with the same status and headers and no body
	 * (libmicrohttpd leaves the body out of a HEAD response itself). */
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	m->known = true;
	if (strcmp(path, "/webhooks") == 0) {
		m->allow = "GET, HEAD, POST";
		return m->route = get ? R_LIST : strcmp(method, "POST") == 0 ? R_REGISTER : R_NONE;
	}
	if (strcmp(path, "/ip") == 0) {
		m->allow = "GET, HEAD";
		return m->route = get ? R_TRIGGER : R_NONE;
	}
	if (strcmp(path, "/healthz") == 0) {
		m->allow = "GET, HEAD";
		return m->route = get ? R_HEALTH : R_NONE;
	}
	if (strcmp(path, "/metrics") == 0) {
		m->allow = "GET, HEAD";
		return m->route = get ? R_METRICS : R_NONE;
	}
	const char *rest = NULL;
	bool events = false;
	if (strncmp(path, "/webhooks/", 10) == 0) {
		rest = path + 10;
	} else if (strncmp(path, "/events/", 8) == 0) {
		rest = path + 8;
		events = true;
	}
	if (rest != NULL) {
		const char *slash = strchr(rest, '/');
		size_t idlen = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
		if (idlen == 0) {
			m->known = false; /* "/webhooks/": no id at all is no route */
			return m->route = R_NONE;
		}
		/* A malformed id names nothing: the route's rules apply, and then it is a 404 for
		 * the webhook or event, the same as an unknown id. */
		if (idlen == ID_LEN) {
			memcpy(m->id, rest, ID_LEN);
			m->id[ID_LEN] = '\0';
		}
		if (!id_valid(m->id)) {
			m->id[0] = '\0';
			m->bad_id = events ? "event" : "webhook";
		}
		if (!events && slash == NULL) {
			m->allow = "GET, HEAD, PUT, DELETE";
			return m->route = get                             ? R_GET
			                  : strcmp(method, "PUT") == 0    ? R_UPDATE
			                  : strcmp(method, "DELETE") == 0 ? R_DELETE
			                                                  : R_NONE;
		}
		if (events && slash == NULL) {
			m->allow = "GET, HEAD";
			return m->route = get ? R_EVENT : R_NONE;
		}
		if (events && strcmp(slash, "/deliveries") == 0) {
			m->allow = "GET, HEAD";
			return m->route = get ? R_DELIVERIES : R_NONE;
		}
		if (events && strcmp(slash, "/retry") == 0) {
			m->allow = "POST";
			return m->route = strcmp(method, "POST") == 0 ? R_RETRY : R_NONE;
		}
		if (!events && strcmp(slash, "/secret") == 0) {
			m->allow = "GET, HEAD";
			return m->route = get ? R_SECRET : R_NONE;
		}
		if (!events && strcmp(slash, "/secret/rotate") == 0) {
			m->allow = "POST";
			return m->route = strcmp(method, "POST") == 0 ? R_ROTATE : R_NONE;
		}
	}
	memset(m, 0, sizeof(*m)); /* an unknown path: no id, bad or good */
	return R_NONE;
}

bool route_parse_limit(const char *text, long *limit)
{
	long v = 0;
	if (!cfg_parse_long(text, &v) || v < 1 || v > 1000)
		return false;
	*limit = v;
	return true;
}

bool route_valid_after(const char *text)
{
	return text[0] == '\0' || id_valid(text);
}

bool route_bearer_ok(const char *header, const char *token, size_t token_len)
{
	/* The scheme's name is case-insensitive (RFC 9110); the token is not. */
	if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	const char *given = header + 7;
	size_t glen = strlen(given);
	unsigned char diff = glen != token_len;
	for (size_t i = 0; i < token_len; i++)
		diff |= (unsigned char)token[i] ^ (unsigned char)(i < glen ? given[i] : 0);
	return diff == 0;
}

bool route_forwarded_ip(const char *xff, char *out, size_t outlen)
{
	while (*xff == ' ' || *xff == '\t')
		xff++;
	size_t len = strcspn(xff, ", \t");
	char cand[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	if (len == 0 || len >= sizeof(cand))
		return false;
	memcpy(cand, xff, len);
	cand[len] = '\0';
	if (inet_pton(AF_INET, cand, bin) != 1 && inet_pton(AF_INET6, cand, bin) != 1)
		return false;
	return (size_t)snprintf(out, outlen, "%s", cand) < outlen;
}
