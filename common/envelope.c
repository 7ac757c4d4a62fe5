/* envelope.c -- the JSON error envelope shared by NATS replies and HTTP responses. */
#include "envelope.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	int status;
} codes[] = {
    [ERR_INVALID_JSON] = {"invalid_json", 400},
    [ERR_INVALID_ARGUMENT] = {"invalid_argument", 400},
    [ERR_UNAUTHORIZED] = {"unauthorized", 401},
    [ERR_NOT_FOUND] = {"not_found", 404},
    [ERR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405},
    [ERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413},
    [ERR_UNAVAILABLE] = {"unavailable", 503},
    [ERR_TIMEOUT] = {"timeout", 504},
    [ERR_INTERNAL] = {"internal", 500},
    [ERR_RATE_LIMITED] = {"rate_limited", 429},
};

const char *envelope_code_name(enum envelope_code code)
{
	return codes[code].name;
}

int envelope_code_status(enum envelope_code code)
{
	return codes[code].status;
}

static json_t *build(enum envelope_code code, bool with_status, const char *fmt, va_list ap)
{
	char message[512];
	vsnprintf(message, sizeof(message), fmt, ap);
	/* jansson refuses text that is not UTF-8: drop a character the buffer cut in two, then
	 * replace any byte that is still not valid, so that an envelope is always made. */
	json_t *msg = json_string(message);
	size_t len = strlen(message);
	for (int i = 0; msg == NULL && i < 3 && len > 0 && (message[len - 1] & 0x80); i++) {
		message[--len] = '\0';
		msg = json_string(message);
	}
	for (char *p = message; msg == NULL && *p != '\0'; p++) {
		if (*p & 0x80)
			*p = '?';
	}
	if (msg == NULL)
		msg = json_string(message);
	json_t *inner = json_pack("{s:s, s:o}", "code", codes[code].name, "message", msg);
	if (inner == NULL)
		return NULL;
	if (with_status && json_object_set_new(inner, "status", json_integer(codes[code].status))) {
		json_decref(inner);
		return NULL;
	}
	return json_pack("{s:o}", "error", inner);
}

json_t *envelope_error(enum envelope_code code, bool with_status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_t *e = build(code, with_status, fmt, ap);
	va_end(ap);
	return e;
}

char *envelope_error_dump(enum envelope_code code, bool with_status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_t *e = build(code, with_status, fmt, ap);
	va_end(ap);
	char *s = envelope_dump(e);
	json_decref(e);
	return s;
}

int envelope_reply_status(const json_t *reply)
{
	json_t *error = json_object_get(reply, "error");
	if (!json_is_object(error))
		return 0;
	json_int_t status = json_integer_value(json_object_get(error, "status"));
	if (status < 400 || status > 599)
		return 500;
	return (int)status;
}

char *envelope_dump(const json_t *value)
{
	if (value == NULL)
		return NULL;
	return json_dumps(value, JSON_COMPACT);
}
