/* test_envelope.c -- unit tests for common/envelope.c: the contract's error envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "envelope.h"

/* The table in CONTRACT.md, "Every error is ...". */
static const struct {
	enum envelope_code code;
	const char *name;
	int status;
} contract[] = {
    {ERR_INVALID_JSON, "invalid_json", 400},
    {ERR_INVALID_ARGUMENT, "invalid_argument", 400},
    {ERR_UNAUTHORIZED, "unauthorized", 401},
    {ERR_NOT_FOUND, "not_found", 404},
    {ERR_METHOD_NOT_ALLOWED, "method_not_allowed", 405},
    {ERR_PAYLOAD_TOO_LARGE, "payload_too_large", 413},
    {ERR_UNAVAILABLE, "unavailable", 503},
    {ERR_TIMEOUT, "timeout", 504},
    {ERR_INTERNAL, "internal", 500},
    {ERR_RATE_LIMITED, "rate_limited", 429},
};
#define NCODES (sizeof(contract) / sizeof(contract[0]))

/* Parse text and compare it with the expected JSON value, which is released. */
static void assert_json_text(const char *text, json_t *want)
{
	assert_non_null(text);
	assert_non_null(want);
	json_error_t jerr;
	json_t *got = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (got == NULL)
		fail_msg("not valid JSON (%s): %s", jerr.text, text);
	if (!json_equal(got, want)) {
		char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
		fail_msg("got %s, want %s", text, w);
	}
	json_decref(got);
	json_decref(want);
}

static void test_code_names_and_statuses(void **state)
{
	assert_int_equal(NCODES, ERR_RATE_LIMITED + 1);
	for (size_t i = 0; i < NCODES; i++) {
		assert_string_equal(envelope_code_name(contract[i].code), contract[i].name);
		assert_int_equal(envelope_code_status(contract[i].code), contract[i].status);
	}
}

static void test_error_without_status(void **state)
{
	for (size_t i = 0; i < NCODES; i++) {
		json_t *e = envelope_error(contract[i].code, false, "webhook %s not found", "abc");
		assert_non_null(e);
		char *text = envelope_dump(e);
		json_decref(e);
		assert_json_text(text,
		                 json_pack("{s:{s:s, s:s}}", "error", "code", contract[i].name,
		                           "message", "webhook abc not found"));
		free(text);
	}
}

static void test_error_with_status(void **state)
{
	for (size_t i = 0; i < NCODES; i++) {
		json_t *e = envelope_error(contract[i].code, true, "%d things went %s", 3, "wrong");
		assert_non_null(e);
		/* status is a JSON integer, not a string or a real. */
		json_t *status = json_object_get(json_object_get(e, "error"), "status");
		assert_true(json_is_integer(status));
		char *text = envelope_dump(e);
		json_decref(e);
		assert_json_text(text, json_pack("{s:{s:s, s:s, s:i}}", "error", "code",
		                                 contract[i].name, "message", "3 things went wrong",
		                                 "status", contract[i].status));
		free(text);
	}
}

static void test_error_dump(void **state)
{
	char *text = envelope_error_dump(ERR_TIMEOUT, true, "no reply within %d ms", 5000);
	assert_json_text(text, json_pack("{s:{s:s, s:s, s:i}}", "error", "code", "timeout",
	                                 "message", "no reply within 5000 ms", "status", 504));
	free(text);

	text = envelope_error_dump(ERR_UNAUTHORIZED, false, "missing bearer token");
	assert_json_text(text, json_pack("{s:{s:s, s:s}}", "error", "code", "unauthorized",
	                                 "message", "missing bearer token"));
	/* Compact: no spaces or newlines between tokens. */
	assert_string_equal(
	    text, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"missing bearer token\"}}");
	free(text);
}

static void test_message_with_quotes_and_newlines(void **state)
{
	const char *msg = "he said \"hi\"\nthen\\left\ttab \x01 end";
	char *text = envelope_error_dump(ERR_INVALID_ARGUMENT, false, "%s", msg);
	assert_non_null(text);
	assert_null(strchr(text, '\n')); /* escaped, not raw */
	assert_json_text(
	    text, json_pack("{s:{s:s, s:s}}", "error", "code", "invalid_argument", "message", msg));
	free(text);
}

static void test_message_non_ascii(void **state)
{
	/* Valid UTF-8 is kept as it is. */
	char *text = envelope_error_dump(ERR_INVALID_ARGUMENT, false, "caf\xc3\xa9 \xe2\x9c\x93");
	assert_json_text(text, json_pack("{s:{s:s, s:s}}", "error", "code", "invalid_argument",
	                                 "message", "caf\xc3\xa9 \xe2\x9c\x93"));
	free(text);

	/* A message that is not UTF-8 (say it quotes a client's bytes) still gives an envelope. */
	json_t *e = envelope_error(ERR_INVALID_ARGUMENT, true, "bad byte \xff here");
	assert_non_null(e);
	json_t *inner = json_object_get(e, "error");
	assert_string_equal(json_string_value(json_object_get(inner, "code")), "invalid_argument");
	assert_non_null(json_string_value(json_object_get(inner, "message")));
	assert_int_equal(envelope_reply_status(e), 400);
	json_decref(e);

	/* A long message is cut short, and never in the middle of a character. */
	char long_msg[2001];
	for (size_t i = 0; i < 1000; i++)
		memcpy(long_msg + 2 * i, "\xc3\xa9", 2);
	long_msg[2000] = '\0';
	e = envelope_error(ERR_INTERNAL, true, "%s", long_msg);
	assert_non_null(e);
	const char *m = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
	assert_non_null(m);
	assert_true(strlen(m) > 0);
	assert_true(strlen(m) < 2000);
	assert_int_equal(strlen(m) % 2, 0);
	assert_memory_equal(m, long_msg, strlen(m));
	json_decref(e);
}

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);
	if (v == NULL)
		fail_msg("bad test JSON %s: %s", text, jerr.text);
	return v;
}

static void assert_reply_status(const char *text, int want)
{
	json_t *v = parse(text);
	int got = envelope_reply_status(v);
	json_decref(v);
	if (got != want)
		fail_msg("envelope_reply_status(%s) = %d, want %d", text, got, want);
}

static void test_reply_status_success(void **state)
{
	assert_reply_status("{}", 0);
	assert_reply_status("{\"id\":\"x\",\"targetUrl\":\"http://a\"}", 0);
	assert_reply_status("{\"webhooks\":[],\"next\":null}", 0);
	assert_reply_status("{\"errors\":{\"status\":404}}", 0);
	assert_reply_status("[]", 0);
	assert_int_equal(envelope_reply_status(NULL), 0);
}

static void test_reply_status_errors(void **state)
{
	for (size_t i = 0; i < NCODES; i++) {
		json_t *e = envelope_error(contract[i].code, true, "x");
		assert_int_equal(envelope_reply_status(e), contract[i].status);
		json_decref(e);
	}
	assert_reply_status("{\"error\":{\"code\":\"not_found\",\"message\":\"m\",\"status\":404}}",
	                    404);
	assert_reply_status("{\"error\":{\"status\":400}}", 400);
	assert_reply_status("{\"error\":{\"status\":599}}", 599);
}

static void test_reply_status_malformed(void **state)
{
	/* An error envelope whose status is missing or unusable becomes 500. */
	static const char *const bad[] = {
	    "{\"error\":{\"code\":\"not_found\",\"message\":\"m\"}}",
	    "{\"error\":{}}",
	    "{\"error\":{\"status\":\"404\"}}",
	    "{\"error\":{\"status\":404.0}}",
	    "{\"error\":{\"status\":null}}",
	    "{\"error\":{\"status\":true}}",
	    "{\"error\":{\"status\":200}}",
	    "{\"error\":{\"status\":399}}",
	    "{\"error\":{\"status\":600}}",
	    "{\"error\":{\"status\":-404}}",
	    "{\"error\":{\"status\":4294967700}}",
	    NULL,
	};
	for (size_t i = 0; bad[i] != NULL; i++)
		assert_reply_status(bad[i], 500);

	/* Without a status the HTTP-shaped envelope also maps to 500. */
	json_t *e = envelope_error(ERR_NOT_FOUND, false, "x");
	assert_int_equal(envelope_reply_status(e), 500);
	json_decref(e);
}

static void test_dump_null(void **state)
{
	assert_null(envelope_dump(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_code_names_and_statuses),
	    cmocka_unit_test(test_error_without_status),
	    cmocka_unit_test(test_error_with_status),
	    cmocka_unit_test(test_error_dump),
	    cmocka_unit_test(test_message_with_quotes_and_newlines),
	    cmocka_unit_test(test_message_non_ascii),
	    cmocka_unit_test(test_reply_status_success),
	    cmocka_unit_test(test_reply_status_errors),
	    cmocka_unit_test(test_reply_status_malformed),
	    cmocka_unit_test(test_dump_null),
	};
	return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
