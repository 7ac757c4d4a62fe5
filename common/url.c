/* url.c -- webhook target URLs, with libcurl's own URL parser so that what we accept and store
 * is exactly what the dispatcher later sends to. */
#include "url.h"

#include <curl/curl.h>
#include <errno.h>
#include <idn2.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The authority of an absolute URL: from after "://" to the first '/', '?' or '#'. */
static void authority(const char *url, const char **start, size_t *len)
{
	const char *s = strstr(url, "://");
	*start = s != NULL ? s + 3 : url;
	*len = strcspn(*start, "/?#");
}

/* Checks on the text that libcurl's parser would pass over. */
static int check_text(const char *url, char *err, size_t errlen)
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
		if (c == '\\') {
			snprintf(err, errlen,
			         "targetUrl must not contain a backslash (write it as %%5C)");
			return -EINVAL;
		}
	}
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
		snprintf(err, errlen, "targetUrl must be an absolute http:// or https:// URL");
		return -EINVAL;
	}
	const char *auth;
	size_t alen;
	authority(url, &auth, &alen);
	/* libcurl reads "http:///x" as the host "x"; an empty authority names no host. */
	if (alen == 0) {
		snprintf(err, errlen, "targetUrl must name a host");
		return -EINVAL;
	}
	/* The port is after the last ':' that follows the host (past an IPv6 literal's ']');
	 * libcurl would drop an empty one silently. */
	const char *at = memrchr(auth, '@', alen);
	const char *host = at != NULL ? at + 1 : auth;
	const char *end = auth + alen;
	const char *bracket = memchr(host, ']', (size_t)(end - host));
	const char *colon = memrchr(bracket != NULL ? bracket : host, ':',
	                            (size_t)(end - (bracket != NULL ? bracket : host)));
	if (colon != NULL && colon + 1 == end) {
		snprintf(err, errlen, "targetUrl has an empty port: leave the ':' out");
		return -EINVAL;
	}
	return 0;
}

static bool is_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* Parse text into h and read back its URL (curl_free it) and host. */
static int parse(CURLU *h, const char *text, char **url, char **host, char *err, size_t errlen)
{
	*url = *host = NULL;
	CURLUcode uc = curl_url_set(h, CURLUPART_URL, text, 0);
	if (uc != CURLUE_OK) {
		snprintf(err, errlen, "targetUrl is not a valid URL: %s", curl_url_strerror(uc));
		return -EINVAL;
	}
	uc = curl_url_get(h, CURLUPART_HOST, host, 0);
	if (uc != CURLUE_OK || *host == NULL || (*host)[0] == '\0') {
		snprintf(err, errlen, "targetUrl must name a host");
		return -EINVAL;
	}
	if (curl_url_get(h, CURLUPART_URL, url, 0) != CURLUE_OK) {
		snprintf(err, errlen, "targetUrl is not a valid URL");
		return -EINVAL;
	}
	return 0;
}

int url_normalize(const char *url, const struct addr_policy *policy, char *out, size_t outlen,
                  char *err, size_t errlen)
{
	int rc = check_text(url, err, errlen);
	if (rc != 0)
		return rc;
	CURLU *h = curl_url();
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	char *text = NULL, *host = NULL, *port = NULL, *ascii = NULL;
	rc = parse(h, url, &text, &host, err, errlen);
	if (rc != 0)
		goto out;
	if (!is_ascii(host)) {
		/* What libcurl would do at send time (UTS #46 mapping, then IDNA 2008), done here
		 * with libidn2 itself so that it does not depend on the process's locale. */
		int irc = idn2_lookup_u8((const uint8_t *)host, (uint8_t **)&ascii,
		                         IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
		if (irc != IDN2_OK) {
			snprintf(err, errlen, "targetUrl's host cannot be written in ASCII: %s",
			         idn2_strerror(irc));
			rc = -EINVAL;
			goto out;
		}
		if (curl_url_set(h, CURLUPART_HOST, ascii, 0) != CURLUE_OK) {
			snprintf(err, errlen,
			         "targetUrl's host is not valid once written in ASCII");
			rc = -EINVAL;
			goto out;
		}
		curl_free(text);
		text = NULL;
		if (curl_url_get(h, CURLUPART_URL, &text, 0) != CURLUE_OK) {
			snprintf(err, errlen, "targetUrl is not a valid URL");
			rc = -EINVAL;
			goto out;
		}
		/* Parsed again: a host that became an address ("１２７.1") is normalised too. */
		char *first = text;
		curl_free(host);
		rc = parse(h, first, &text, &host, err, errlen);
		curl_free(first);
		if (rc != 0)
			goto out;
	}
	/* libcurl decodes a percent-encoded host ("3%333" is "3333") but reads the result as an
	 * address only when it parses the URL again, as it will when sending: parse until the
	 * text settles, so that the host checked is the one connected to (found by fuzz_url). */
	for (int pass = 0;; pass++) {
		char *next = NULL, *next_host = NULL;
		rc = parse(h, text, &next, &next_host, err, errlen);
		if (rc != 0) {
			curl_free(next);
			curl_free(next_host);
			goto out;
		}
		bool same = strcmp(next, text) == 0;
		curl_free(text);
		curl_free(host);
		text = next;
		host = next_host;
		if (same)
			break;
		if (pass == 3) {
			snprintf(err, errlen, "targetUrl does not settle on one form");
			rc = -EINVAL;
			goto out;
		}
	}
	if (curl_url_get(h, CURLUPART_PORT, &port, 0) == CURLUE_OK && strcmp(port, "0") == 0) {
		snprintf(err, errlen, "targetUrl must not use port 0");
		rc = -EINVAL;
		goto out;
	}
	char what[128];
	if (policy != NULL && addr_policy_refuses_literal(policy, host, what, sizeof(what))) {
		snprintf(err, errlen,
		         "targetUrl points at %s, not a public one (see ALLOW_PRIVATE_TARGETS and "
		         "TARGET_ALLOW_CIDRS)",
		         what);
		rc = -EINVAL;
		goto out;
	}
	if (strlen(text) > URL_MAX_LEN) {
		snprintf(err, errlen, "targetUrl is over %d bytes long once normalised",
		         URL_MAX_LEN);
		rc = -EINVAL;
		goto out;
	}
	if (out != NULL && (size_t)snprintf(out, outlen, "%s", text) >= outlen) {
		snprintf(err, errlen, "targetUrl is too long");
		rc = -EINVAL;
	}
out:
	idn2_free(ascii);
	curl_free(port);
	curl_free(host);
	curl_free(text);
	curl_url_cleanup(h);
	return rc;
}

int url_check(const char *url, char *err, size_t errlen)
{
	return url_normalize(url, NULL, NULL, 0, err, errlen);
}

void url_redact(const char *url, char *out, size_t outlen)
{
	const char *auth;
	size_t alen;
	authority(url, &auth, &alen);
	/* The userinfo ends at the last '@' of the authority, unless an IPv6 literal follows an
	 * '@': a zone id may hold an '@' too ("http://@[::f%25@0]/", found by fuzz_url). */
	const char *at = memmem(auth, alen, "@[", 2);
	if (at == NULL)
		at = memrchr(auth, '@', alen);
	if (at == NULL || strstr(url, "://") == NULL) {
		snprintf(out, outlen, "%s", url);
		return;
	}
	const char *colon = memchr(auth, ':', (size_t)(at - auth));
	/* An empty password is none: the user name alone is then the secret, as in
	 * "https://sk_live_...:@api.example/" (found by fuzz_url). */
	if (colon != NULL && colon + 1 == at)
		colon = NULL;
	int user = colon != NULL ? (int)(colon - auth) : 0;
	snprintf(out, outlen, "%.*s%.*s%s***%s", (int)(auth - url), url, user, auth,
	         colon != NULL ? ":" : "", at);
}

void url_redact_list(const char *urls, char *out, size_t outlen)
{
	size_t used = 0;
	out[0] = '\0';
	for (const char *p = urls; *p != '\0' && used < outlen;) {
		size_t len = strcspn(p, ",");
		char one[URL_MAX_LEN + 1], shown[URL_MAX_LEN + 1];
		snprintf(one, sizeof(one), "%.*s", (int)len, p);
		url_redact(one, shown, sizeof(shown));
		int n = snprintf(out + used, outlen - used, "%s%s", used > 0 ? "," : "", shown);
		if (n < 0)
			break;
		used += (size_t)n;
		p += len;
		if (*p == ',')
			p++;
	}
}
