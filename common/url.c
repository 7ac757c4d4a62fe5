/* url.c -- validation of webhook target URLs, with libcurl's own URL parser so that
 * what we accept is exactly what the dispatcher can later send to. */
#include "url.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int url_check(const char *url, char *err, size_t errlen)
{
	size_t len = strlen(url);
	if (len == 0) {
		snprintf(err, errlen, "targetUrl must not be empty");
		return -EINVAL;
	}
	if (len > URL_MAX_LEN) {
		snprintf(err, errlen, "targetUrl is %zu bytes long; the limit is %d", len,
		         URL_MAX_LEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)url[i];
		if (c <= 0x20 || c == 0x7f) {
			snprintf(err, errlen,
			         "targetUrl must not contain spaces or control characters");
			return -EINVAL;
		}
	}
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
		snprintf(err, errlen, "targetUrl must be an absolute http:// or https:// URL");
		return -EINVAL;
	}
	/* libcurl reads "http:///x" as the host "x"; an empty authority names no host. */
	if (strstr(url, "://")[3] == '/') {
		snprintf(err, errlen, "targetUrl must name a host");
		return -EINVAL;
	}

	int rc = -EINVAL;
	CURLU *h = curl_url();
	char *host = NULL;
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		snprintf(err, errlen, "targetUrl is not a valid URL: %s", curl_url_strerror(uc));
		goto out;
	}
	uc = curl_url_get(h, CURLUPART_HOST, &host, 0);
	if (uc != CURLUE_OK || host == NULL || host[0] == '\0') {
		snprintf(err, errlen, "targetUrl must name a host");
		goto out;
	}
	char *port = NULL;
	if (curl_url_get(h, CURLUPART_PORT, &port, 0) == CURLUE_OK && strcmp(port, "0") == 0) {
		curl_free(port);
		snprintf(err, errlen, "targetUrl must not use port 0");
		goto out;
	}
	curl_free(port);
	rc = 0;
out:
	curl_free(host);
	curl_url_cleanup(h);
	return rc;
}
