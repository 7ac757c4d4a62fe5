/* signature.c -- Standard Webhooks secrets and signatures (see signature.h), with OpenSSL's
 * libcrypto for HMAC-SHA256 and base64. */
#include "signature.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <pthread.h>
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

/* SHA-256, fetched from the provider once: OpenSSL 3 fetches it again on every one-shot HMAC()
 * (about 3 us of an attempt's time) and the first fetch of the process takes milliseconds. */
static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int signature_init(void)
{
	(void)pthread_once(&sha256_once, fetch_sha256); /* a static once: cannot fail */
	return sha256 != NULL ? 0 : -EIO;
}

#define SHA256_BLOCK 64

/* HMAC-SHA256 (RFC 2104) of the concatenation of parts[0..n). */
static int hmac_sha256(const unsigned char *key, size_t klen, const void *const *parts,
                       const size_t *lens, size_t n, unsigned char out[32])
{
	if (signature_init() != 0)
		return -EIO;
	unsigned char k[SHA256_BLOCK] = {0}, pad[SHA256_BLOCK], inner[32];
	unsigned int len = 0;
	int ok = 1;
	if (klen > SHA256_BLOCK)
		ok = EVP_Digest(key, klen, k, &len, sha256, NULL);
	else
		memcpy(k, key, klen);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	ok = ok && c != NULL;
	for (size_t i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	ok = ok && EVP_DigestInit_ex(c, sha256, NULL) && EVP_DigestUpdate(c, pad, SHA256_BLOCK);
	for (size_t i = 0; ok && i < n; i++)
		ok = EVP_DigestUpdate(c, parts[i], lens[i]);
	ok = ok && EVP_DigestFinal_ex(c, inner, &len);
	for (size_t i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	ok = ok && EVP_DigestInit_ex(c, sha256, NULL) && EVP_DigestUpdate(c, pad, SHA256_BLOCK) &&
	     EVP_DigestUpdate(c, inner, sizeof(inner)) && EVP_DigestFinal_ex(c, out, &len);
	EVP_MD_CTX_free(c);
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	return ok && len == 32 ? 0 : -EIO;
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
	const void *parts[] = {head, body};
	const size_t lens[] = {(size_t)hlen, body_len};
	unsigned char mac[32];
	int rc = hmac_sha256(key, (size_t)klen, parts, lens, 2, mac);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc != 0)
		return rc;
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)sizeof(mac));
	return 0;
}
