/* test_signature.c -- unit tests for common/signature.c: the Standard Webhooks test vectors,
 * secrets made and checked, and signatures that change with every input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "signature.h"

/* The Standard Webhooks specification's example (and its reference libraries' tests). */
#define SPEC_SECRET    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID        "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TIMESTAMP 1614265330
#define SPEC_BODY      "{\"test\": 2432232314}"
#define SPEC_SIGNATURE "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void test_spec_vector(void **state)
{
	(void)state;
	char sig[SIGNATURE_LEN + 1];
	assert_int_equal(
	    signature_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, strlen(SPEC_BODY), sig),
	    0);
	assert_string_equal(sig, SPEC_SIGNATURE);
}

/* Any change to the id, the timestamp, a byte of the body or the secret changes it. */
static void test_every_input_counts(void **state)
{
	(void)state;
	char a[SIGNATURE_LEN + 1], b[SIGNATURE_LEN + 1];
	assert_int_equal(
	    signature_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, strlen(SPEC_BODY), a),
	    0);
	assert_int_equal(signature_sign(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJeK", SPEC_TIMESTAMP,
	                                SPEC_BODY, strlen(SPEC_BODY), b),
	                 0);
	assert_string_not_equal(a, b);
	assert_int_equal(signature_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY,
	                                strlen(SPEC_BODY), b),
	                 0);
	assert_string_not_equal(a, b);
	assert_int_equal(signature_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP,
	                                "{\"test\": 2432232315}", strlen(SPEC_BODY), b),
	                 0);
	assert_string_not_equal(a, b);
	assert_int_equal(signature_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx", SPEC_ID,
	                                SPEC_TIMESTAMP, SPEC_BODY, strlen(SPEC_BODY), b),
	                 0); /* the last bit of the key */
	assert_string_not_equal(a, b);
	assert_int_equal(signature_sign("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB==", SPEC_ID,
	                                SPEC_TIMESTAMP, SPEC_BODY, strlen(SPEC_BODY), b),
	                 -EINVAL); /* not canonical base64: stray bits before the padding */
	assert_int_equal(signature_sign("whsec_NfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SPEC_ID,
	                                SPEC_TIMESTAMP, SPEC_BODY, strlen(SPEC_BODY), b),
	                 0);
	assert_string_not_equal(a, b);
	/* A long body is signed too, to a signature of the same length. */
	char big[2000];
	memset(big, 'x', sizeof(big));
	assert_int_equal(signature_sign(SPEC_SECRET, SPEC_ID, 1, big, sizeof(big), b), 0);
	assert_int_equal(strlen(b), SIGNATURE_LEN);
}

static void test_generated_secrets(void **state)
{
	(void)state;
	char s1[SECRET_MAX_LEN + 1], s2[SECRET_MAX_LEN + 1], err[128];
	assert_int_equal(secret_generate(s1), 0);
	assert_int_equal(secret_generate(s2), 0);
	assert_string_not_equal(s1, s2);
	assert_int_equal(strncmp(s1, "whsec_", 6), 0);
	assert_int_equal(strlen(s1), 6 + 32); /* 24 bytes */
	assert_int_equal(secret_check(s1, err, sizeof(err)), 0);
	unsigned char key[SECRET_MAX_BYTES];
	assert_int_equal(secret_key(s1, key), 24);
}

/* The HMAC built on the fetched digest agrees with OpenSSL's own one-shot HMAC() for keys from
 * the shortest to the longest allowed (24, 32, ... 64 bytes) and bodies of several sizes. */
static void test_agrees_with_openssl_hmac(void **state)
{
	(void)state;
	assert_int_equal(signature_init(), 0);
	static char body[5000];
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (char)('a' + i % 26);
	for (int klen = SECRET_MIN_BYTES; klen <= SECRET_MAX_BYTES; klen += 8) {
		unsigned char key[SECRET_MAX_BYTES];
		for (int i = 0; i < klen; i++)
			key[i] = (unsigned char)(i * 7 + klen);
		char secret[SECRET_MAX_LEN + 1];
		memcpy(secret, SECRET_PREFIX, strlen(SECRET_PREFIX));
		EVP_EncodeBlock((unsigned char *)secret + strlen(SECRET_PREFIX), key, klen);
		static const size_t sizes[] = {0, 1, 47, 600, sizeof(body)};
		for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			char got[SIGNATURE_LEN + 1], msg[sizeof(body) + 128],
			    want[SIGNATURE_LEN + 1];
			assert_int_equal(
			    signature_sign(secret, "msg_x", 1700000000, body, sizes[j], got), 0);
			int hlen = snprintf(msg, sizeof(msg), "msg_x.1700000000.");
			memcpy(msg + hlen, body, sizes[j]);
			unsigned char mac[32];
			unsigned int maclen = 0;
			assert_non_null(HMAC(EVP_sha256(), key, klen, (unsigned char *)msg,
			                     (size_t)hlen + sizes[j], mac, &maclen));
			memcpy(want, "v1,", 3);
			EVP_EncodeBlock((unsigned char *)want + 3, mac, (int)maclen);
			assert_string_equal(got, want);
		}
	}
}

static void test_secret_check(void **state)
{
	(void)state;
	char err[128];
	const char *good[] = {
	    SPEC_SECRET,
	    /* 64 bytes */
	    "whsec_"
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
	    "Pw==",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (secret_check(good[i], err, sizeof(err)) != 0)
			fail_msg("'%s' refused: %s", good[i], err);
	const char *bad[] = {
	    "",
	    "whsec_",
	    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",       /* no prefix */
	    "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  /* another prefix */
	    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa",   /* 21 bytes */
	    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",  /* not a multiple of 4 */
	    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-w", /* base64url */
	    "whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaSw",
	    "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB==", /* stray bits */
	    "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  /* bad padding */
	    /* 65 bytes */
	    "whsec_"
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
	    "P0A=",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (secret_check(bad[i], err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_true(err[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spec_vector),
	    cmocka_unit_test(test_every_input_counts),
	    cmocka_unit_test(test_generated_secrets),
	    cmocka_unit_test(test_secret_check),
	    cmocka_unit_test(test_agrees_with_openssl_hmac),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
