/* requests.c -- the checks on the JSON bodies of the webhooks.* requests (see requests.h). */
#include "requests.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ids.h"
#include "signature.h"
#include "url.h"

static void refuse(struct req_error *e, enum envelope_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(struct req_error *e, enum envelope_code code, const char *fmt, ...)
{
	va_list ap;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

json_t *req_parse(const char *data, size_t len, struct req_error *e)
{
	json_error_t jerr;
	json_t *req = json_loadb(data, len, REQ_JSON_FLAGS, &jerr);
	if (req == NULL) {
		refuse(e, ERR_INVALID_JSON, "the request is not valid JSON: %s", jerr.text);
		return NULL;
	}
	if (!json_is_object(req)) {
		refuse(e, ERR_INVALID_ARGUMENT, "the request must be a JSON object");
		json_decref(req);
		return NULL;
	}
	return req;
}

const char *req_string(json_t *req, const char *key, struct req_error *e)
{
	json_t *v = json_object_get(req, key);
	if (v == NULL || json_is_null(v)) {
		refuse(e, ERR_INVALID_ARGUMENT, "%s is required", key);
		return NULL;
	}
	if (!json_is_string(v)) {
		refuse(e, ERR_INVALID_ARGUMENT, "%s must be a string", key);
		return NULL;
	}
	return json_string_value(v);
}

const char *req_id(json_t *req, const char *what, struct req_error *e)
{
	const char *id = req_string(req, "id", e);
	if (id == NULL)
		return NULL;
	if (!id_valid(id)) {
		refuse(e, ERR_NOT_FOUND, "no %s with id '%.40s'", what, id);
		return NULL;
	}
	return id;
}

const char *req_update_key(json_t *req)
{
	/* The seed calls it newTargetUrl; targetUrl is accepted too. */
	return json_object_get(req, "newTargetUrl") != NULL ? "newTargetUrl" : "targetUrl";
}

bool req_enabled(json_t *req, int *enabled, struct req_error *e)
{
	json_t *v = json_object_get(req, "enabled");
	*enabled = -1;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_boolean(v)) {
		e->code = ERR_INVALID_ARGUMENT;
		snprintf(e->message, sizeof(e->message), "enabled must be true or false");
		return false;
	}
	*enabled = json_is_true(v) ? 1 : 0;
	return true;
}

bool req_target_url(const char *url, const struct addr_policy *policy, char *out,
                    struct req_error *e)
{
	e->code = ERR_INVALID_ARGUMENT;
	return url_normalize(url, policy, out, URL_MAX_LEN + 1, e->message, sizeof(e->message)) ==
	       0;
}

bool req_secret(json_t *req, const char **given, struct req_error *e)
{
	*given = NULL;
	json_t *js = json_object_get(req, "secret");
	if (js == NULL || json_is_null(js))
		return true;
	const char *text = json_string_value(js);
	if (text == NULL) {
		refuse(e, ERR_INVALID_ARGUMENT, "secret must be a string");
		return false;
	}
	char err[160];
	if (strlen(text) > SECRET_MAX_LEN) {
		refuse(e, ERR_INVALID_ARGUMENT, "secret is longer than %d characters",
		       SECRET_MAX_LEN);
		return false;
	}
	if (secret_check(text, err, sizeof(err)) != 0) {
		refuse(e, ERR_INVALID_ARGUMENT, "%s", err);
		return false;
	}
	*given = text;
	return true;
}

bool req_page(json_t *req, json_int_t *limit, const char **after, struct req_error *e)
{
	*limit = REQ_DEFAULT_LIMIT;
	*after = NULL;
	json_t *jl = json_object_get(req, "limit");
	if (jl != NULL && !json_is_null(jl)) {
		if (!json_is_integer(jl) || json_integer_value(jl) < 1 ||
		    json_integer_value(jl) > REQ_MAX_LIMIT) {
			refuse(e, ERR_INVALID_ARGUMENT, "limit must be an integer from 1 to 1000");
			return false;
		}
		*limit = json_integer_value(jl);
	}
	json_t *ja = json_object_get(req, "after");
	if (ja != NULL && !json_is_null(ja)) {
		if (!json_is_string(ja) || !id_valid(json_string_value(ja))) {
			refuse(e, ERR_INVALID_ARGUMENT,
			       "after must be the id of the last item of the previous page");
			return false;
		}
		*after = json_string_value(ja);
	}
	return true;
}

const char *req_ip(json_t *req, size_t maxlen, struct req_error *e)
{
	const char *ip = req_string(req, "ipAddress", e);
	if (ip == NULL)
		return NULL;
	/* The address goes into every delivery's body: accept only a real IP address. */
	unsigned char bin[sizeof(struct in6_addr)];
	if (strlen(ip) >= maxlen ||
	    (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1)) {
		refuse(e, ERR_INVALID_ARGUMENT, "ipAddress must be an IPv4 or IPv6 address");
		return NULL;
	}
	return ip;
}
