/* url.h -- validation of webhook target URLs. */
#ifndef WEBHOOKS_URL_H
#define WEBHOOKS_URL_H

#include <stddef.h>

/* The longest target URL accepted, in bytes. */
#define URL_MAX_LEN 2048

/* Check that url is an absolute http or https URL of at most URL_MAX_LEN bytes with a host.
 * Returns 0 when it is; otherwise -EINVAL and a sentence for a person in err. */
__attribute__((warn_unused_result)) int url_check(const char *url, char *err, size_t errlen);

#endif
