/* fuzz_url.c -- libFuzzer: target URL validation, normalisation and redaction (common/url.c),
 * and the literal-address check of the default address policy behind them.
 *
 * Input: the URL text. Invariants, for every input:
 * - a refusal says why (a message of one line);
 * - the address policy only ever refuses: a URL the policy accepts is accepted without one,
 *   in the same normalised form, and url_check agrees with url_normalize;
 * - a normalised URL is http:// or https://, at most URL_MAX_LEN bytes, without a backslash,
 *   space or control character, and a fixed point: normalised again it is accepted, by the
 *   policy too, and comes out the same (what is stored is what is checked and sent);
 * - its redacted form, read back by libcurl, has the same host, port, path and query and no
 *   password but "***"; the user name is kept only beside a password that is not empty
 *   (a user name alone is often a token: "https://sk_live_...:@api.example/"). */
#include <curl/curl.h>
#include <stdbool.h>

#include "fuzz_check.h"
#include "url.h"

static struct addr_policy strict;

/* A part of url as libcurl reads it (curl_free it), or NULL when it has none. */
static char *part(const char *url, CURLUPart what)
{
	CURLU *h = curl_url();
	char *v = NULL;
	CHECK(h != NULL, "out of memory");
	if (curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(h, what, &v, 0) != CURLUE_OK)
		v = NULL;
	curl_url_cleanup(h);
	return v;
}

static bool same_part(const char *a, const char *b, CURLUPart what)
{
	char *pa = part(a, what), *pb = part(b, what);
	bool same = (pa == NULL && pb == NULL) || (pa != NULL && pb != NULL && strcmp(pa, pb) == 0);
	curl_free(pa);
	curl_free(pb);
	return same;
}

static void check_redacted(const char *url)
{
	char shown[URL_MAX_LEN + 1];
	url_redact(url, shown, sizeof(shown));
	char *user = part(url, CURLUPART_USER), *password = part(url, CURLUPART_PASSWORD);
	char *suser = part(shown, CURLUPART_USER), *spassword = part(shown, CURLUPART_PASSWORD);
	if (strlen(url) + 4 < sizeof(shown)) {
		/* Not truncated: the rest of the URL is as it was. */
		CHECK(same_part(url, shown, CURLUPART_HOST) &&
		          same_part(url, shown, CURLUPART_PORT) &&
		          same_part(url, shown, CURLUPART_PATH) &&
		          same_part(url, shown, CURLUPART_QUERY),
		      "'%s' redacted as '%s'", url, shown);
		if (password != NULL && password[0] != '\0')
			CHECK(user != NULL && suser != NULL && strcmp(user, suser) == 0 &&
			          spassword != NULL && strcmp(spassword, "***") == 0,
			      "'%s' redacted as '%s'", url, shown);
		else if (user != NULL && user[0] != '\0')
			CHECK(suser != NULL && strcmp(suser, "***") == 0, "'%s' redacted as '%s'",
			      url, shown);
	}
	CHECK(spassword == NULL || spassword[0] == '\0' || strcmp(spassword, "***") == 0,
	      "'%s' redacted as '%s' keeps the password", url, shown);
	curl_free(user);
	curl_free(password);
	curl_free(suser);
	curl_free(spassword);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];
	CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, "curl_global_init");
	CHECK(addr_policy_init(&strict, false, "", err, sizeof(err)) == 0, "%s", err);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_string(data, size, URL_MAX_LEN + 64);
	if (in == NULL)
		return 0;
	char out[URL_MAX_LEN + 1], open[URL_MAX_LEN + 1], again[URL_MAX_LEN + 1];
	char err[256] = "", err2[256] = "";
	int rs = url_normalize(in, &strict, out, sizeof(out), err, sizeof(err));
	int ro = url_normalize(in, NULL, open, sizeof(open), err2, sizeof(err2));
	CHECK(rs == 0 || (err[0] != '\0' && !fuzz_has_control(err)), "'%s': message '%s'", in, err);
	CHECK(ro == 0 || (err2[0] != '\0' && !fuzz_has_control(err2)), "'%s': message '%s'", in,
	      err2);
	CHECK(rs != 0 || (ro == 0 && strcmp(out, open) == 0),
	      "'%s': '%s' with the policy, %d '%s' without", in, out, ro, open);
	CHECK((url_check(in, err2, sizeof(err2)) == 0) == (ro == 0), "'%s': url_check differs", in);
	if (ro == 0) {
		CHECK(strlen(open) <= URL_MAX_LEN, "'%s' normalised to %zu bytes", in,
		      strlen(open));
		CHECK(strncmp(open, "http://", 7) == 0 || strncmp(open, "https://", 8) == 0,
		      "'%s' normalised to '%s'", in, open);
		for (const char *p = open; *p != '\0'; p++)
			CHECK((unsigned char)*p > 0x20 && *p != 0x7f && *p != '\\',
			      "'%s' normalised to '%s'", in, open);
		int r2 = url_normalize(open, NULL, again, sizeof(again), err2, sizeof(err2));
		CHECK(r2 == 0 && strcmp(open, again) == 0,
		      "'%s' normalised to '%s', which normalises to %d '%s' (%s)", in, open, r2,
		      r2 == 0 ? again : "", err2);
		r2 = url_normalize(open, &strict, again, sizeof(again), err2, sizeof(err2));
		CHECK((r2 == 0) == (rs == 0),
		      "'%s' is %s by the policy but its normalised form '%s' is %s (%s)", in,
		      rs == 0 ? "accepted" : "refused", open, r2 == 0 ? "accepted" : "refused",
		      rs == 0 ? err2 : err);
		check_redacted(open);
	}
	free(in);
	return 0;
}
