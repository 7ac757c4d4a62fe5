/* signature.c -- Standard Webhooks secrets and signatures (see signature.h), with OpenSSL's
 * libcrypto for HMAC-SHA256 and base64. */
#include "signature.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PREFIX_LEN (sizeof(SECRET_PREFIX) - 1)

int secret_generate(char out[SECRET_MAX_LEN + 1])
{
	unsigned char key[SECRET_MIN_BYTES];
	size_t got = 0;
	while (got < sizeof(key)) {
		ssize_t n = getrandom(key + got, sizeof(key) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		got += (size_t)n;
	}
	memcpy(out, SECRET_PREFIX, PREFIX_LEN);
	EVP_EncodeBlock((unsigned char *)out + PREFIX_LEN, key, (int)sizeof(key));
	OPENSSL_cleanse(key, sizeof(key));
	return 0;
}

static bool is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* Decode canonical base64 text (padded, no spaces) into key; the byte count, or -EINVAL. */
static int decode(const char *text, unsigned char key[SECRET_MAX_BYTES])
{
	size_t len = strlen(text);
	if (len == 0 || len % 4 != 0 || len > (SECRET_MAX_BYTES + 2) / 3 * 4)
		return -EINVAL;
	size_t pad = text[len - 1] == '=' ? (text[len - 2] == '=' ? 2 : 1) : 0;
	for (size_t i = 0; i < len - pad; i++)
		if (!is_b64(text[i]))
			return -EINVAL;
	unsigned char buf[(SECRET_MAX_BYTES + 2) / 3 * 3];
	int n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
	if (n < 0)
		return -EINVAL;
	n -= (int)pad;
	if (n < 0 || n > SECRET_MAX_BYTES)
		return -EINVAL;
	/* Canonical: encoding the bytes again gives the same text (no stray low bits). */
	char again[(SECRET_MAX_BYTES + 2) / 3 * 4 + 1];
	EVP_EncodeBlock((unsigned char *)again, buf, n);
	if (strcmp(again, text) != 0)
		return -EINVAL;
	memcpy(key, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
	return n;
}

int secret_key(const char *secret, unsigned char key[SECRET_MAX_BYTES])
{
	if (strncmp(secret, SECRET_PREFIX, PREFIX_LEN) != 0)
		return -EINVAL;
	int n = decode(secret + PREFIX_LEN, key);
	return n >= SECRET_MIN_BYTES ? n : -EINVAL;
}

int secret_check(const char *secret, char *err, size_t errlen)
{
	unsigned char key[SECRET_MAX_BYTES];
	if (strncmp(secret, SECRET_PREFIX, PREFIX_LEN) != 0) {
		snprintf(err, errlen, "secret must start with \"%s\"", SECRET_PREFIX);
		return -EINVAL;
	}
	int n = decode(secret + PREFIX_LEN, key);
	OPENSSL_cleanse(key, sizeof(key));
	if (n < SECRET_MIN_BYTES) {
		snprintf(err, errlen,
		         "secret must be \"%s\" and the base64 of %d to %d random bytes",
		         SECRET_PREFIX, SECRET_MIN_BYTES, SECRET_MAX_BYTES);
		return -EINVAL;
	}
	return 0;
}

int signature_sign(const char *secret, const char *id, int64_t timestamp, const char *body,
                   size_t body_len, char out[SIGNATURE_LEN + 1])
{
	unsigned char key[SECRET_MAX_BYTES];
	int klen = secret_key(secret, key);
	if (klen < 0)
		return -EINVAL;
	char head[128];
	int hlen = snprintf(head, sizeof(head), "%s.%" PRId64 ".", id, timestamp);
	if (hlen < 0 || (size_t)hlen >= sizeof(head)) {
		OPENSSL_cleanse(key, sizeof(key));
		return -EINVAL;
	}
	/* One buffer for the one-shot HMAC(): on the stack for a webhook body, else the heap. */
	char small[512];
	size_t mlen = (size_t)hlen + body_len;
	char *msg = mlen <= sizeof(small) ? small : malloc(mlen);
	if (msg == NULL) {
		OPENSSL_cleanse(key, sizeof(key));
		return -ENOMEM;
	}
	memcpy(msg, head, (size_t)hlen);
	memcpy(msg + hlen, body, body_len);
	unsigned char mac[32];
	unsigned int maclen = 0;
	unsigned char *ok =
	    HMAC(EVP_sha256(), key, klen, (const unsigned char *)msg, mlen, mac, &maclen);
	OPENSSL_cleanse(key, sizeof(key));
	if (msg != small)
		free(msg);
	if (ok == NULL || maclen != sizeof(mac))
		return -EIO;
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)sizeof(mac));
	return 0;
}
