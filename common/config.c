/* config.c -- configuration from environment variables and command-line flags. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "url.h"

const char *cfg_check_address(const char *v)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1)
		return NULL;
	return "an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1 or ::";
}

bool cfg_parse_long(const char *text, long *out)
{
	if (text == NULL || text[0] == '\0')
		return false;
	if (!(text[0] == '-' || (text[0] >= '0' && text[0] <= '9')))
		return false;
	char *end = NULL;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return false;
	*out = v;
	return true;
}

bool cfg_parse_duration(const char *text, int64_t *ms)
{
	const char *p = text;
	if (*p < '0' || *p > '9')
		return false;
	int64_t v = 0;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (*p - '0');
		if (v > INT64_MAX / 3600000 / 10)
			return false;
		p++;
	}
	int64_t unit;
	if (strcmp(p, "ms") == 0)
		unit = 1;
	else if (strcmp(p, "s") == 0)
		unit = 1000;
	else if (strcmp(p, "m") == 0)
		unit = 60 * 1000;
	else if (strcmp(p, "h") == 0)
		unit = 3600 * 1000;
	else if (strcmp(p, "d") == 0)
		unit = 24 * 3600 * 1000;
	else
		return false;
	if (v > INT64_MAX / unit)
		return false;
	*ms = v * unit;
	return true;
}

static bool parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (strcmp(text, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(text, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool parse_durations(const char *text, struct cfg_durations *out)
{
	char buf[512];
	size_t len = strlen(text);
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, text, len + 1);
	out->n = 0;
	char *save = NULL;
	/* strtok_r would skip empty fields; an empty field is an error, so walk by hand. */
	char *field = buf;
	for (;;) {
		char *comma = strchr(field, ',');
		if (comma != NULL)
			*comma = '\0';
		if (out->n == CFG_MAX_DURATIONS || !cfg_parse_duration(field, &out->ms[out->n]))
			return false;
		out->n++;
		if (comma == NULL)
			break;
		field = comma + 1;
	}
	(void)save;
	return true;
}

/* Apply one textual value to an option; on error describe what was expected. */
/* text for an error message: at most outlen - 1 bytes, control characters as '?', so that the
 * message stays one line (found by fuzz_config). */
static void one_line(const char *text, char *out, size_t outlen)
{
	size_t i = 0;
	for (; text[i] != '\0' && i + 1 < outlen; i++)
		out[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
	out[i] = '\0';
}

static int apply(const struct cfg_option *o, const char *value, const char *source, char *err,
                 size_t errlen)
{
	const char *expected = NULL;
	char range[96];
	switch (o->type) {
	case CFG_STRING:
		if (value[0] == '\0')
			expected = "a non-empty value";
		else if (o->check != NULL)
			expected = o->check(value);
		if (expected == NULL)
			*(const char **)o->target = value;
		break;
	case CFG_INT: {
		long v;
		if (!cfg_parse_long(value, &v) || v < o->min || v > o->max) {
			snprintf(range, sizeof(range), "an integer from %ld to %ld", o->min,
			         o->max);
			expected = range;
		} else {
			*(long *)o->target = v;
		}
		break;
	}
	case CFG_BOOL:
		if (!parse_bool(value, (bool *)o->target))
			expected = "0 or 1 (or true/false, yes/no)";
		break;
	case CFG_DURATIONS:
		if (!parse_durations(value, (struct cfg_durations *)o->target))
			expected =
			    "a comma-separated list of up to 16 durations such as 1s,5s,30s,2m "
			    "(units ms, s, m, h)";
		break;
	case CFG_LOG_LEVEL:
		if (!log_parse_level(value, (enum log_level *)o->target))
			expected = "one of error, warn, info, debug";
		break;
	}
	if (expected != NULL) {
		/* A URL's password is not shown back (NATS_URL, STORE_URL). */
		char redacted[URL_MAX_LEN + 1], shown[101];
		url_redact_list(value, redacted, sizeof(redacted));
		one_line(redacted, shown, sizeof(shown));
		snprintf(err, errlen, "%s: expected %s, got '%s' (from %s)", o->env, expected,
		         shown, source);
		return -EINVAL;
	}
	return 0;
}

static void usage(const struct cfg_option *opts, size_t n, const char *prog, const char *summary)
{
	printf("Usage: %s [OPTIONS]\n%s\n\nEvery option can also be set by its environment "
	       "variable; a flag wins over the variable.\n\nOptions:\n",
	       prog, summary);
	for (size_t i = 0; i < n; i++) {
		const struct cfg_option *o = &opts[i];
		printf("  %-24s %-20s %s (default: %s)\n", o->flag, o->env, o->help,
		       o->def != NULL ? (o->def[0] ? o->def : "empty") : "none, required");
	}
	printf("  %-24s %-20s %s\n", "--help", "", "print this help and exit");
}

static const struct cfg_option *find_flag(const struct cfg_option *opts, size_t n, const char *arg,
                                          size_t len)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, arg, len) == 0)
			return &opts[i];
	}
	return NULL;
}

int cfg_parse(const struct cfg_option *opts, size_t n, int argc, char **argv, const char *summary,
              char *err, size_t errlen)
{
	const char *prog = argc > 0 ? argv[0] : "webhooks";
	const char *slash = strrchr(prog, '/');
	if (slash != NULL)
		prog = slash + 1;

	/* --help wins over everything, even a bad value elsewhere. */
	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
			usage(opts, n, prog, summary);
			return CFG_HELP;
		}
	}
	/* Defaults first, then the environment, then flags: each layer overrides. */
	for (size_t i = 0; i < n; i++) {
		if (opts[i].type == CFG_STRING && opts[i].def != NULL && opts[i].def[0] == '\0')
			*(const char **)opts[i].target = ""; /* an empty default is "" (not NULL) */
		else if (opts[i].def != NULL && opts[i].def[0] != '\0' &&
		         apply(&opts[i], opts[i].def, "default", err, errlen) != 0)
			return -EINVAL;
	}
	bool *seen = calloc(n, sizeof(*seen));
	if (seen == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* A variable that a flag overrides is not even parsed: a bad value in the environment
	 * must not stop a process that was told the right one on its command line. */
	for (int a = 1; a < argc; a++) {
		size_t len = strcspn(argv[a], "=");
		const struct cfg_option *o = find_flag(opts, n, argv[a], len);
		if (o == NULL)
			continue;
		seen[o - opts] = true;
		/* "--flag VALUE": the value is not a flag, even when it reads like one
		 * ("--nats-url --admin-token" names no admin token; found by fuzz_config). */
		if (argv[a][len] == '\0')
			a++;
	}
	for (size_t i = 0; i < n; i++) {
		const char *v = getenv(opts[i].env);
		if (v != NULL && !seen[i] && apply(&opts[i], v, "environment", err, errlen) != 0) {
			free(seen);
			return -EINVAL;
		}
	}
	int rc = 0;
	for (int a = 1; a < argc && rc == 0; a++) {
		const char *arg = argv[a];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage(opts, n, prog, summary);
			rc = CFG_HELP;
			break;
		}
		const char *eq = strchr(arg, '=');
		size_t name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
		const struct cfg_option *o = find_flag(opts, n, arg, name_len);
		if (o == NULL) {
			char shown[101];
			one_line(arg, shown, sizeof(shown));
			snprintf(err, errlen, "unknown option '%s' (see --help)", shown);
			rc = -EINVAL;
			break;
		}
		const char *value = eq != NULL ? eq + 1 : NULL;
		if (value == NULL) {
			if (a + 1 >= argc) {
				snprintf(err, errlen, "%s: option %s needs a value", o->env,
				         o->flag);
				rc = -EINVAL;
				break;
			}
			value = argv[++a];
		}
		seen[o - opts] = true;
		rc = apply(o, value, "command line", err, errlen);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (opts[i].def == NULL && !seen[i] && getenv(opts[i].env) == NULL) {
			snprintf(err, errlen,
			         "%s: expected a value (set %s or pass %s); it has no "
			         "default",
			         opts[i].env, opts[i].env, opts[i].flag);
			rc = -EINVAL;
		}
	}
	free(seen);
	return rc;
}

int cfg_load(const struct cfg_option *opts, size_t n, int argc, char **argv, const char *program,
             const char *summary)
{
	char err[512];
	log_set_program(program);
	int rc = cfg_parse(opts, n, argc, argv, summary, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", program, err);
	return rc;
}

void cfg_block_stop_signals(sigset_t *stop)
{
	sigemptyset(stop);
	sigaddset(stop, SIGTERM);
	sigaddset(stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Past a file size limit (RLIMIT_FSIZE) a write fails with EFBIG, which the store reports
	 * and retries like a full disk, instead of the signal killing the process. */
	signal(SIGXFSZ, SIG_IGN);
}
