/* url.h -- webhook target URLs: validation, the normalised form that is stored and sent, and
 * the redacted form that is shown. */
#ifndef WEBHOOKS_URL_H
#define WEBHOOKS_URL_H

#include <stddef.h>

#include "addrpolicy.h"

/* The longest target URL accepted, in bytes. */
#define URL_MAX_LEN 2048

/* Check that url is an absolute http or https URL of at most URL_MAX_LEN bytes with a host that
 * libcurl sends to exactly as written, and write its normalised form into out (outlen at least
 * URL_MAX_LEN + 1): libcurl's own, with the path's dot segments resolved, any IPv4 spelling
 * ("2130706433", "0x7f000001", "127.1") as a dotted quad and an international host in
 * punycode (IDNA 2008 with UTS #46 mapping, so full-width digits become digits). Refused: a
 * backslash anywhere (libcurl and browsers read it differently: "http://a\@b/" goes to b), an
 * empty port or port 0, a host that cannot be converted to ASCII, and, when policy is not
 * NULL, a literal address that policy refuses. Returns 0, or -EINVAL (-ENOMEM) and a sentence
 * for a person in err. */
__attribute__((warn_unused_result)) int url_normalize(const char *url,
                                                      const struct addr_policy *policy, char *out,
                                                      size_t outlen, char *err, size_t errlen);

/* url_normalize without the address policy and without keeping the normalised form. */
__attribute__((warn_unused_result)) int url_check(const char *url, char *err, size_t errlen);

/* url with its credentials hidden, for replies, records and logs: "user:***@" when it has a
 * password, "***@" when it has only a user name (often a token; an empty password counts as
 * none, "token:@"), else url unchanged. out has
 * room for URL_MAX_LEN + 1 bytes, or is truncated to outlen. */
void url_redact(const char *url, char *out, size_t outlen);

/* url_redact on each of a comma-separated list (NATS_URL may name several servers), or on any
 * setting's text before it is shown: text that is no URL is shown as it is. */
void url_redact_list(const char *urls, char *out, size_t outlen);

#endif
