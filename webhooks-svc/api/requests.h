/* requests.h -- the checks on the JSON bodies of the webhooks.* requests: what handlers.c
 * refuses (400, 404) before it touches the store. Pure functions of the body, so that unit
 * tests and tests/fuzz/fuzz_requests.c run exactly what the service runs. */
#ifndef WEBHOOKS_REQUESTS_H
#define WEBHOOKS_REQUESTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "addrpolicy.h"
#include "envelope.h"

#define REQ_DEFAULT_LIMIT 100
#define REQ_MAX_LIMIT     1000

/* How a request body is read: any JSON value (one that is not an object is then refused with
 * its own message), duplicate members refused. */
#define REQ_JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* Why a request was refused: the reply's code and its sentence for a person. */
struct req_error {
	enum envelope_code code;
	char message[256];
};

/* The body (len bytes) as a JSON object, which the caller json_decref()s; NULL with e filled
 * when it is not JSON or not an object. */
json_t *req_parse(const char *data, size_t len, struct req_error *e);

/* The required string member key of req (owned by req); NULL with e filled when it is
 * missing, null or not a string. */
const char *req_string(json_t *req, const char *key, struct req_error *e);

/* The member "id" naming a what ("webhook" or "event"); NULL with e filled when it is not a
 * string (400) or not an id, which names no what (404, the same as an unknown id). */
const char *req_id(json_t *req, const char *what, struct req_error *e);

/* The member a webhooks.update names its new URL by: "newTargetUrl" when present, else
 * "targetUrl". */
const char *req_update_key(json_t *req);

/* The optional member "enabled" of a webhooks.update: *enabled is 1 (true), 0 (false) or -1
 * (missing or null). False with e filled when it is not a boolean. */
bool req_enabled(json_t *req, int *enabled, struct req_error *e);

/* url normalised into out (URL_MAX_LEN + 1 bytes), refused when policy refuses its literal
 * address; false with e filled when it is not a target URL. */
bool req_target_url(const char *url, const struct addr_policy *policy, char *out,
                    struct req_error *e);

/* The optional member "secret": *given is the caller's own (owned by req) when it is a valid
 * secret, or NULL when it is missing or null (the caller makes a random one). False with e
 * filled otherwise. */
bool req_secret(json_t *req, const char **given, struct req_error *e);

/* The optional paging members: *limit from 1 to REQ_MAX_LIMIT (REQ_DEFAULT_LIMIT without one)
 * and *after, an id or NULL (owned by req). False with e filled when either is wrong. */
bool req_page(json_t *req, json_int_t *limit, const char **after, struct req_error *e);

/* The member "ipAddress" of a webhooks.trigger: an IPv4 or IPv6 address shorter than maxlen;
 * NULL with e filled otherwise. */
const char *req_ip(json_t *req, size_t maxlen, struct req_error *e);

#endif
