/* fuzz_requests.c -- libFuzzer: how webhooks-svc reads the JSON body of a webhooks.* request
 * (webhooks-svc/api/requests.c, the checks handlers.c runs before it touches the store), with
 * the jansson flags and in the order of each subject's handler.
 *
 * Input: one byte choosing the subject, then the body. Invariants:
 * - a refusal has a code the checks may give (invalid_json only for a body that is not
 *   JSON, not_found only for an id that is not one) and a message that makes an error reply
 *   jansson can encode and that carries the code's status;
 * - what is accepted is what the contract says: an id is a lower-case UUID, a limit from 1 to
 *   1000 (100 without one), an after an id, a target URL its own normalised form (at most
 *   URL_MAX_LEN bytes), a secret one secret_check accepts, an ipAddress an address inet_pton
 *   reads; each optional member is accepted exactly when absent, null or of that form;
 * - the gateway's forwarding changes nothing: the body as the gateway reads it, with the
 *   path's id set and dumped again, is valid JSON for the service, and decided the same. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>

#include "envelope.h"
#include "fuzz_check.h"
#include "ids.h"
#include "requests.h"
#include "signature.h"
#include "url.h"

enum subject {
	REGISTER,
	GET,
	LIST,
	UPDATE,
	DELETE,
	TRIGGER,
	EVENT,
	DELIVERIES,
	SECRET,
	ROTATE,
	RETRY
};
#define NSUBJECTS 11
#define IP_MAX    64 /* STORE_IP_LEN, what the service passes */

static struct addr_policy policy;

/* The outcome of a subject's checks, comparable between two runs. */
struct outcome {
	bool ok;
	struct req_error e;
	char id[ID_LEN + 1];
	char url[URL_MAX_LEN + 1];
	char secret[SECRET_MAX_LEN + 1];
	char after[ID_LEN + 1];
	char ip[IP_MAX];
	json_int_t limit;
	int enabled; /* webhooks.update's: 1, 0 or -1 (not given) */
};

static void copy(char *out, size_t outlen, const char *s)
{
	snprintf(out, outlen, "%s", s != NULL ? s : "");
}

static void check_error(const struct req_error *e, const char *body)
{
	CHECK(e->code == ERR_INVALID_JSON || e->code == ERR_INVALID_ARGUMENT ||
	          e->code == ERR_NOT_FOUND,
	      "code %d for %s", (int)e->code, body);
	CHECK(e->message[0] != '\0' && memchr(e->message, '\0', sizeof(e->message)) != NULL,
	      "message for %s", body);
	char *reply = envelope_error_dump(e->code, true, "%s", e->message);
	CHECK(reply != NULL, "no reply can be made of '%s'", e->message);
	json_t *back = json_loads(reply, 0, NULL);
	CHECK(back != NULL && envelope_reply_status(back) == envelope_code_status(e->code),
	      "reply %s", reply);
	json_decref(back);
	free(reply);
}

static void check_id(json_t *req, const char *id, const struct req_error *e, const char *body)
{
	json_t *v = json_object_get(req, "id");
	if (id != NULL) {
		CHECK(id_valid(id) && strcmp(id, json_string_value(v)) == 0, "id '%s'", id);
		return;
	}
	bool string = json_is_string(v);
	CHECK(e->code == (string ? ERR_NOT_FOUND : ERR_INVALID_ARGUMENT),
	      "code %d for the id of %s", (int)e->code, body);
	CHECK(!string || !id_valid(json_string_value(v)), "a valid id refused in %s", body);
}

static void check_page(json_t *req, bool ok, json_int_t limit, const char *after, const char *body)
{
	json_t *jl = json_object_get(req, "limit"), *ja = json_object_get(req, "after");
	bool limit_ok =
	    jl == NULL || json_is_null(jl) ||
	    (json_is_integer(jl) && json_integer_value(jl) >= 1 && json_integer_value(jl) <= 1000);
	bool after_ok = ja == NULL || json_is_null(ja) ||
	                (json_is_string(ja) && id_valid(json_string_value(ja)));
	CHECK(ok == (limit_ok && after_ok), "page of %s: %d", body, ok);
	if (ok) {
		CHECK(limit == (json_is_integer(jl) ? json_integer_value(jl) : 100), "limit %lld",
		      (long long)limit);
		CHECK(after == NULL ? !json_is_string(ja) : id_valid(after), "after");
	}
}

static void check_url(const char *url, const char *body)
{
	char again[URL_MAX_LEN + 1], err[256];
	CHECK(strlen(url) <= URL_MAX_LEN, "a URL of %zu bytes", strlen(url));
	CHECK(url_normalize(url, &policy, again, sizeof(again), err, sizeof(err)) == 0 &&
	          strcmp(again, url) == 0,
	      "'%s' (from %s) is not its own normalised form: %s", url, body, err);
}

static void check_secret(json_t *req, bool ok, const char *given, const char *body)
{
	json_t *js = json_object_get(req, "secret");
	char err[160];
	if (!ok) {
		CHECK(js != NULL && !json_is_null(js), "no secret refused in %s", body);
		CHECK(!json_is_string(js) || strlen(json_string_value(js)) > SECRET_MAX_LEN ||
		          secret_check(json_string_value(js), err, sizeof(err)) != 0,
		      "a good secret refused in %s", body);
	} else if (given == NULL) {
		CHECK(js == NULL || json_is_null(js), "secret ignored in %s", body);
	} else {
		CHECK(strlen(given) <= SECRET_MAX_LEN && strncmp(given, SECRET_PREFIX, 6) == 0 &&
		          secret_check(given, err, sizeof(err)) == 0,
		      "secret '%s' accepted", given);
	}
}

/* Run subject s's checks on req, as its handler does, into o. */
static void decide(enum subject s, json_t *req, struct outcome *o, const char *body)
{
	memset(o, 0, sizeof(*o));
	const char *id = NULL, *url = NULL, *secret = NULL, *after = NULL, *ip = NULL;
	bool ok = true;
	switch (s) {
	case REGISTER:
		ok = (url = req_string(req, "targetUrl", &o->e)) != NULL &&
		     req_target_url(url, &policy, o->url, &o->e);
		if (ok) {
			check_url(o->url, body);
			ok = req_secret(req, &secret, &o->e);
			check_secret(req, ok, secret, body);
		}
		break;
	case GET:
	case DELETE:
	case SECRET:
	case ROTATE:
	case EVENT:
	case DELIVERIES:
	case RETRY:
		id = req_id(req, s == EVENT || s == DELIVERIES || s == RETRY ? "event" : "webhook",
		            &o->e);
		check_id(req, id, &o->e, body);
		ok = id != NULL;
		if (ok && s == ROTATE) {
			ok = req_secret(req, &secret, &o->e);
			check_secret(req, ok, secret, body);
		}
		if (ok && s == DELIVERIES) {
			ok = req_page(req, &o->limit, &after, &o->e);
			check_page(req, ok, o->limit, after, body);
		}
		break;
	case UPDATE:
		id = req_id(req, "webhook", &o->e);
		check_id(req, id, &o->e, body);
		ok = id != NULL && req_enabled(req, &o->enabled, &o->e);
		if (ok) {
			json_t *v = json_object_get(req, "enabled");
			CHECK(o->enabled == (json_is_true(v)    ? 1
			                     : json_is_false(v) ? 0
			                                        : -1),
			      "enabled %d for %s", o->enabled, body);
		}
		/* A URL is needed unless "enabled" is given; given, it is checked either way. */
		if (ok && (o->enabled < 0 || json_object_get(req, req_update_key(req)) != NULL)) {
			ok = (url = req_string(req, req_update_key(req), &o->e)) != NULL &&
			     req_target_url(url, &policy, o->url, &o->e);
			if (ok)
				check_url(o->url, body);
		}
		break;
	case LIST:
		ok = req_page(req, &o->limit, &after, &o->e);
		check_page(req, ok, o->limit, after, body);
		break;
	case TRIGGER: {
		ip = req_ip(req, IP_MAX, &o->e);
		ok = ip != NULL;
		unsigned char bin[16];
		if (ok)
			CHECK(strlen(ip) < IP_MAX && (inet_pton(AF_INET, ip, bin) == 1 ||
			                              inet_pton(AF_INET6, ip, bin) == 1),
			      "ipAddress '%s'", ip);
		break;
	}
	}
	o->ok = ok;
	if (!ok) {
		CHECK(o->e.code != ERR_INVALID_JSON, "invalid_json for a parsed body %s", body);
		check_error(&o->e, body);
	}
	copy(o->id, sizeof(o->id), id);
	copy(o->secret, sizeof(o->secret), secret);
	copy(o->after, sizeof(o->after), after);
	copy(o->ip, sizeof(o->ip), ip);
	if (!ok)
		o->url[0] = '\0';
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];
	CHECK(addr_policy_init(&policy, false, "", err, sizeof(err)) == 0, "%s", err);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16384)
		return 0;
	enum subject s = (enum subject)(data[0] % NSUBJECTS);
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	char shown[128];
	snprintf(shown, sizeof(shown), "subject %d, body '%.*s'", (int)s,
	         (int)(len < 80 ? len : 80), body);

	struct req_error e;
	json_t *req = req_parse(body, len, &e);
	if (req == NULL) {
		check_error(&e, shown);
		json_t *any = json_loadb(body, len, REQ_JSON_FLAGS, NULL);
		CHECK(e.code == (any == NULL ? ERR_INVALID_JSON : ERR_INVALID_ARGUMENT),
		      "code %d for %s", (int)e.code, shown);
		CHECK(any == NULL || !json_is_object(any), "an object refused: %s", shown);
		json_decref(any);
		return 0;
	}
	struct outcome first, second;
	decide(s, req, &first, shown);

	/* What the gateway forwards: the body it read with the same flags, the path's id set
	 * when the route has one, dumped compactly. The service must decide the same. */
	if (s == REGISTER || s == UPDATE || s == ROTATE) {
		json_t *fwd = json_deep_copy(req);
		CHECK(fwd != NULL, "out of memory");
		if (s != REGISTER && first.id[0] != '\0')
			CHECK(json_object_set_new(fwd, "id", json_string(first.id)) == 0, "set id");
		char *text = json_dumps(fwd, JSON_COMPACT);
		CHECK(text != NULL, "%s cannot be dumped", shown);
		json_t *again = req_parse(text, strlen(text), &e);
		CHECK(again != NULL, "the forwarded %s is refused: %s", text, e.message);
		decide(s, again, &second, shown);
		CHECK(first.ok == second.ok && first.e.code == second.e.code &&
		          strcmp(first.e.message, second.e.message) == 0 &&
		          strcmp(first.url, second.url) == 0 &&
		          strcmp(first.secret, second.secret) == 0 &&
		          strcmp(first.id, second.id) == 0 && first.enabled == second.enabled,
		      "%s decided differently once forwarded as %s", shown, text);
		json_decref(again);
		free(text);
		json_decref(fwd);
	}
	json_decref(req);
	return 0;
}
