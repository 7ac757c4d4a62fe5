/* signature.h -- Standard Webhooks (1.0.0) secrets and signatures.
 *
 * A secret is "whsec_" followed by the standard base64 of 24 to 64 random bytes; the bytes
 * are the HMAC key. A delivery is signed as "v1," followed by the base64 of
 * HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>"), the body's exact bytes. */
#ifndef WEBHOOKS_SIGNATURE_H
#define WEBHOOKS_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SECRET_PREFIX    "whsec_"
#define SECRET_MIN_BYTES 24
#define SECRET_MAX_BYTES 64
/* "whsec_" and the base64 of 64 bytes (88 characters). */
#define SECRET_MAX_LEN 94
/* "v1," and the base64 of 32 bytes (44 characters). */
#define SIGNATURE_LEN 47

/* A new secret of SECRET_MIN_BYTES bytes from the operating system's CSPRNG (getrandom).
 * Returns 0, or -EIO when the random bytes cannot be had (nothing is written then). */
__attribute__((warn_unused_result)) int secret_generate(char out[SECRET_MAX_LEN + 1]);

/* Check a secret given by a caller: the prefix, canonical base64 (with its padding), and 24
 * to 64 bytes once decoded. Returns 0, or -EINVAL and a sentence for a person in err. */
__attribute__((warn_unused_result)) int secret_check(const char *secret, char *err, size_t errlen);

/* The key bytes of a valid secret into key (SECRET_MAX_BYTES); their number, or -EINVAL. */
int secret_key(const char *secret, unsigned char key[SECRET_MAX_BYTES]);

/* Sign: write "v1,<base64 HMAC-SHA256>" of "<id>.<timestamp>.<body>" under secret into out.
 * Returns 0, or -EINVAL for a secret that is not valid. */
/* Fetch what signing needs from libcrypto (once; also done by the first signature_sign):
 * call it at start so that the first delivery does not wait for it. 0, or -EIO. */
int signature_init(void);

__attribute__((warn_unused_result)) int signature_sign(const char *secret, const char *id,
                                                       int64_t timestamp, const char *body,
                                                       size_t body_len,
                                                       char out[SIGNATURE_LEN + 1]);

#endif
