/* envelope.h -- the JSON error envelope shared by NATS replies and HTTP responses:
 * {"error": {"code": "<word>", "message": "<sentence>", "status": <http status>}}. */
#ifndef WEBHOOKS_ENVELOPE_H
#define WEBHOOKS_ENVELOPE_H

#include <jansson.h>
#include <stdbool.h>

enum envelope_code {
	ERR_INVALID_JSON = 0,
	ERR_INVALID_ARGUMENT,
	ERR_UNAUTHORIZED,
	ERR_NOT_FOUND,
	ERR_METHOD_NOT_ALLOWED,
	ERR_PAYLOAD_TOO_LARGE,
	ERR_UNAVAILABLE,
	ERR_TIMEOUT,
	ERR_INTERNAL,
	ERR_RATE_LIMITED, /* 429, with Retry-After */
};

/* The code's word, e.g. "invalid_json". */
const char *envelope_code_name(enum envelope_code code);

/* The HTTP status that goes with the code, e.g. 400. */
int envelope_code_status(enum envelope_code code);

/* A new error envelope (caller owns the reference), or NULL when out of memory.
 * With with_status false the "status" member is left out (the HTTP body shape). */
json_t *envelope_error(enum envelope_code code, bool with_status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same, serialised compactly; the caller frees the string with free(). */
char *envelope_error_dump(enum envelope_code code, bool with_status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* When reply is an error envelope with a valid status, return that status (400..599);
 * return 0 when reply is not an error envelope. */
int envelope_reply_status(const json_t *reply);

/* Serialise compactly; the caller frees the string with free(). */
char *envelope_dump(const json_t *value);

#endif
