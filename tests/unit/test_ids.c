/* test_ids.c -- unit tests for common/ids.c: UUID generation and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ids.h"

#define MANY 10000

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void test_generated_shape(void **state)
{
	for (int n = 0; n < 1000; n++) {
		char id[ID_LEN + 2];
		memset(id, 'Z', sizeof(id));
		id_generate(id);
		assert_int_equal(strlen(id), 36);
		assert_int_equal(id[ID_LEN + 1], 'Z'); /* nothing written past the NUL */
		for (size_t i = 0; i < ID_LEN; i++) {
			if (i == 8 || i == 13 || i == 18 || i == 23)
				assert_int_equal(id[i], '-');
			else if (!is_lower_hex(id[i]))
				fail_msg("'%s' has '%c' at %zu", id, id[i], i);
		}
		/* Version 4 (random), RFC 4122 variant. */
		assert_int_equal(id[14], '4');
		assert_non_null(strchr("89ab", id[19]));
		assert_true(id_valid(id));
	}
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_generated_distinct(void **state)
{
	char(*ids)[ID_LEN + 1] = calloc(MANY, sizeof(*ids));
	assert_non_null(ids);
	for (size_t i = 0; i < MANY; i++)
		id_generate(ids[i]);
	qsort(ids, MANY, sizeof(*ids), cmp_id);
	for (size_t i = 1; i < MANY; i++) {
		if (strcmp(ids[i - 1], ids[i]) == 0)
			fail_msg("duplicate id %s", ids[i]);
	}
	free(ids);
}

static void test_valid_accepts_canonical(void **state)
{
	assert_true(id_valid("123e4567-e89b-42d3-a456-426614174000"));
	assert_true(id_valid("00000000-0000-0000-0000-000000000000"));
	assert_true(id_valid("ffffffff-ffff-ffff-ffff-ffffffffffff"));
}

static void test_valid_rejects(void **state)
{
	static const char *const bad[] = {
	    "123E4567-e89b-42d3-a456-426614174000",  /* upper case */
	    "123e4567-e89b-42d3-a456-42661417400A",  /* upper case at the end */
	    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",  /* all upper case */
	    "123e4567-e89b-42d3-a456-42661417400",   /* 35 characters */
	    "123e4567-e89b-42d3-a456-4266141740000", /* 37 characters */
	    "123e4567e89b42d3a456426614174000",      /* no dashes */
	    "123e4567-e89b-42d3-a456-426614174000 ", /* trailing space */
	    "123e45678-e89b-42d3-a456-42661417400",  /* first dash moved right */
	    "123e456-7e89b-42d3-a456-426614174000",  /* first dash moved left */
	    "123e4567-e89b42-d3-a456-426614174000",  /* second dash moved */
	    "123e4567-e89b-42d3a-456-426614174000",  /* third dash moved */
	    "123e4567-e89b-42d3-a4564-26614174000",  /* fourth dash moved */
	    "123e4567_e89b_42d3_a456_426614174000",  /* wrong separator */
	    "123e4567-e89b-42d3-a456-4266141740g0",  /* non-hex letter */
	    "123e4567-e89b-42d3-a456-42661417 000",  /* space */
	    "123e4567-e89b-42d3-a456-42661417-000",  /* extra dash */
	    "{23e4567-e89b-42d3-a456-426614174000",  /* punctuation */
	    "../../../../../../../../../etc/passwd", /* 36 characters of path */
	    "",
	    NULL,
	};
	for (size_t i = 0; bad[i] != NULL; i++) {
		if (id_valid(bad[i]))
			fail_msg("id_valid accepted '%s'", bad[i]);
	}
	assert_false(id_valid(NULL));
	/* An embedded NUL makes it short. */
	assert_false(id_valid("123e4567-e89b-42d3-a456-42661417\0"
	                      "000"));
}

static void test_derive_is_stable_and_distinct(void **state)
{
	const char *ev = "01a23795-383f-7000-8000-000000000001";
	const char *ev2 = "01a23795-383f-7000-8000-000000000002";
	const char *wh = "01a23700-0000-7abc-9def-0123456789ab";
	char a[ID_LEN + 1], b[ID_LEN + 1], c[ID_LEN + 1];
	id_derive(a, ev, wh);
	id_derive(b, ev, wh);
	id_derive(c, ev2, wh);
	assert_true(id_valid(a));
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	/* The webhook id's time comes first, so deliveries sort as the fan-out makes them. */
	assert_memory_equal(a, wh, 13);
	assert_int_equal(a[14], '8'); /* version 8 */
	/* 10,000 webhooks of one millisecond give 10,000 distinct delivery ids. */
	static char seen[10000][ID_LEN + 1];
	for (int i = 0; i < 10000; i++) {
		char w[ID_LEN + 1];
		snprintf(w, sizeof(w), "01a23700-0000-7%03x-8000-%012x", i % 4096, i);
		id_derive(seen[i], ev, w);
	}
	qsort(seen, 10000, sizeof(seen[0]), (int (*)(const void *, const void *))strcmp);
	for (int i = 1; i < 10000; i++)
		assert_string_not_equal(seen[i - 1], seen[i]);
}

static void test_generate_after_beats_a_clock_ahead(void **state)
{
	char id[ID_LEN + 1], now[ID_LEN + 1];
	id_generate_after(now, "");
	assert_true(id_valid(now));
	/* A floor from a clock a year ahead: the id still sorts after it. */
	const char *ahead = "ffff0000-0000-7fff-bfff-ffffffffffff";
	id_generate_after(id, ahead);
	assert_true(id_valid(id));
	assert_true(strcmp(id, ahead) > 0);
	assert_memory_equal(id, "ffff0000-0001", 13);
	/* A floor behind the clock changes nothing. */
	id_generate_after(id, "00000000-0000-7000-8000-000000000000");
	assert_true(strcmp(id, now) > 0);
}

static void test_pack_round_trips(void **state)
{
	static const char *const ids[] = {
	    "123e4567-e89b-42d3-a456-426614174000",
	    "00000000-0000-0000-0000-000000000000",
	    "ffffffff-ffff-ffff-ffff-ffffffffffff",
	    "01a23700-0000-7abc-9def-0123456789ab",
	};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		unsigned char bin[ID_BIN_LEN];
		char back[ID_LEN + 1];
		assert_true(id_pack(ids[i], bin));
		id_unpack(bin, back);
		assert_string_equal(back, ids[i]);
	}
	/* Packed ids sort as their text does: byte order is the text's order. */
	unsigned char a[ID_BIN_LEN], b[ID_BIN_LEN];
	assert_true(id_pack("01a23700-0000-7abc-9def-0123456789ab", a));
	assert_true(id_pack("01a23700-0000-7abc-9def-0123456789ac", b));
	assert_true(memcmp(a, b, ID_BIN_LEN) < 0);
	/* What id_valid refuses is not packed, and out is left as it was. */
	unsigned char keep[ID_BIN_LEN];
	memset(keep, 0x5a, sizeof(keep));
	memcpy(a, keep, sizeof(a));
	assert_false(id_pack("123E4567-e89b-42d3-a456-426614174000", a));
	assert_false(id_pack("123e4567e89b42d3a456426614174000", a));
	assert_false(id_pack("", a));
	assert_false(id_pack(NULL, a));
	assert_memory_equal(a, keep, sizeof(keep));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_generated_shape),
	    cmocka_unit_test(test_derive_is_stable_and_distinct),
	    cmocka_unit_test(test_generate_after_beats_a_clock_ahead),
	    cmocka_unit_test(test_generated_distinct),
	    cmocka_unit_test(test_valid_accepts_canonical),
	    cmocka_unit_test(test_valid_rejects),
	    cmocka_unit_test(test_pack_round_trips),
	};
	return cmocka_run_group_tests_name("ids", tests, NULL, NULL);
}
