/* test_config.c -- unit tests for common/config.c: layering, flag syntax, strict values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define ERRLEN     256
#define ARGC(argv) ((int)(sizeof(argv) / sizeof((argv)[0])))

/* The targets the option table fills; setup() poisons them so a test sees what parsing wrote. */
static const char *t_nats;
static const char *t_store;
static long t_port;
static long t_offset;
static bool t_trust;
static struct cfg_durations t_sched;
static enum log_level t_level;

static int check_calls;

static const char *check_nats(const char *value)
{
	check_calls++;
	return strncmp(value, "nats://", 7) == 0 ? NULL : "a nats:// URL";
}

/* Test-only variable names so that the real environment of the runner cannot interfere. */
static const struct cfg_option opts[] = {
    {"UT_NATS_URL", "--nats-url", CFG_STRING, "nats://127.0.0.1:4222", "NATS server URL", 0, 0,
     check_nats, &t_nats},
    {"UT_STORE_URL", "--store-url", CFG_STRING, "sqlite:data/webhooks.db", "store location", 0, 0,
     NULL, &t_store},
    {"UT_PORT", "--port", CFG_INT, "8080", "TCP port", 1, 65535, NULL, &t_port},
    {"UT_OFFSET", "--offset", CFG_INT, "-5", "signed offset", -100, 100, NULL, &t_offset},
    {"UT_TRUST_PROXY", "--trust-proxy", CFG_BOOL, "0", "trust X-Forwarded-For", 0, 0, NULL,
     &t_trust},
    {"UT_RETRY_SCHEDULE", "--retry-schedule", CFG_DURATIONS, "1s,5s,30s,2m,10m",
     "delays between attempts", 0, 0, NULL, &t_sched},
    {"UT_LOG_LEVEL", "--log-level", CFG_LOG_LEVEL, "info", "log threshold", 0, 0, NULL, &t_level},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const char *t_token;
static const struct cfg_option req_opts[] = {
    {"UT_ADMIN_TOKEN", "--admin-token", CFG_STRING, NULL, "bearer token for admin routes", 0, 0,
     NULL, &t_token},
    {"UT_PORT", "--port", CFG_INT, "8080", "TCP port", 1, 65535, NULL, &t_port},
};
#define NREQ (sizeof(req_opts) / sizeof(req_opts[0]))

static const char *const test_vars[] = {
    "UT_NATS_URL",       "UT_STORE_URL", "UT_PORT",        "UT_OFFSET", "UT_TRUST_PROXY",
    "UT_RETRY_SCHEDULE", "UT_LOG_LEVEL", "UT_ADMIN_TOKEN", "UT_ONE",
};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof(test_vars) / sizeof(test_vars[0]); i++)
		assert_int_equal(unsetenv(test_vars[i]), 0);
}

static int setup(void **state)
{
	clear_env();
	t_nats = t_store = t_token = NULL;
	t_port = t_offset = -12345;
	t_trust = true;
	memset(&t_sched, 0xab, sizeof(t_sched));
	t_level = (enum log_level)99;
	check_calls = 0;
	return 0;
}

static int teardown(void **state)
{
	clear_env();
	return 0;
}

static int parse(int argc, char **argv, char *err)
{
	err[0] = '\0';
	return cfg_parse(opts, NOPTS, argc, argv, "Unit test program.", err, ERRLEN);
}

/* Parse "--<flag>=<value>" against a one-option table. */
static int parse_flag(const struct cfg_option *o, const char *value, char *err)
{
	char arg[1024];
	snprintf(arg, sizeof(arg), "%s=%s", o->flag, value);
	char *argv[] = {"prog", arg};
	err[0] = '\0';
	return cfg_parse(o, 1, 2, argv, "one option", err, ERRLEN);
}

/* The error must be one line that starts with the variable and says what was expected. */
static void assert_error_names(const char *err, const char *var, const char *expected)
{
	size_t n = strlen(var);
	if (strncmp(err, var, n) != 0 || err[n] != ':')
		fail_msg("error '%s' does not start with '%s:'", err, var);
	if (strstr(err, expected) == NULL)
		fail_msg("error '%s' does not mention '%s'", err, expected);
	assert_null(strchr(err, '\n'));
}

static void test_defaults_applied(void **state)
{
	char err[ERRLEN];
	char *argv[] = {"prog"};
	assert_int_equal(parse(ARGC(argv), argv, err), CFG_OK);
	assert_string_equal(t_nats, "nats://127.0.0.1:4222");
	assert_string_equal(t_store, "sqlite:data/webhooks.db");
	assert_int_equal(t_port, 8080);
	assert_int_equal(t_offset, -5);
	assert_false(t_trust);
	assert_int_equal(t_sched.n, 5);
	assert_int_equal(t_sched.ms[0], 1000);
	assert_int_equal(t_sched.ms[1], 5000);
	assert_int_equal(t_sched.ms[2], 30000);
	assert_int_equal(t_sched.ms[3], 120000);
	assert_int_equal(t_sched.ms[4], 600000);
	assert_int_equal(t_level, LOG_LVL_INFO);
}

static void test_argc_zero_uses_defaults(void **state)
{
	char err[ERRLEN];
	char *argv[] = {NULL};
	assert_int_equal(parse(0, argv, err), CFG_OK);
	assert_int_equal(t_port, 8080);
}

static void test_env_overrides_default(void **state)
{
	char err[ERRLEN];
	assert_int_equal(setenv("UT_NATS_URL", "nats://10.0.0.1:4333", 1), 0);
	assert_int_equal(setenv("UT_PORT", "9000", 1), 0);
	assert_int_equal(setenv("UT_OFFSET", "-100", 1), 0);
	assert_int_equal(setenv("UT_TRUST_PROXY", "1", 1), 0);
	assert_int_equal(setenv("UT_RETRY_SCHEDULE", "250ms", 1), 0);
	assert_int_equal(setenv("UT_LOG_LEVEL", "debug", 1), 0);
	char *argv[] = {"prog"};
	assert_int_equal(parse(ARGC(argv), argv, err), CFG_OK);
	assert_string_equal(t_nats, "nats://10.0.0.1:4333");
	assert_string_equal(t_store, "sqlite:data/webhooks.db"); /* not in env: default */
	assert_int_equal(t_port, 9000);
	assert_int_equal(t_offset, -100);
	assert_true(t_trust);
	assert_int_equal(t_sched.n, 1);
	assert_int_equal(t_sched.ms[0], 250);
	assert_int_equal(t_level, LOG_LVL_DEBUG);
}

static void test_flag_overrides_env(void **state)
{
	char err[ERRLEN];
	assert_int_equal(setenv("UT_PORT", "9000", 1), 0);
	assert_int_equal(setenv("UT_LOG_LEVEL", "debug", 1), 0);
	assert_int_equal(setenv("UT_TRUST_PROXY", "yes", 1), 0);
	char *argv[] = {"prog", "--port", "9100", "--trust-proxy=false"};
	assert_int_equal(parse(ARGC(argv), argv, err), CFG_OK);
	assert_int_equal(t_port, 9100);
	assert_false(t_trust);
	assert_int_equal(t_level, LOG_LVL_DEBUG); /* env still applies where no flag is given */
}

static void test_flag_equals_and_space_forms(void **state)
{
	char err[ERRLEN];
	char *a1[] = {"prog", "--port=9200", "--store-url", "mongodb://db:27017/hooks"};
	assert_int_equal(parse(ARGC(a1), a1, err), CFG_OK);
	assert_int_equal(t_port, 9200);
	assert_string_equal(t_store, "mongodb://db:27017/hooks");

	char *a2[] = {"prog", "--port", "9300", "--store-url=mongodb://db/hooks?w=1&j=true"};
	assert_int_equal(parse(ARGC(a2), a2, err), CFG_OK);
	assert_int_equal(t_port, 9300);
	/* Only the first '=' separates the flag from its value. */
	assert_string_equal(t_store, "mongodb://db/hooks?w=1&j=true");

	char *a3[] = {"prog", "--retry-schedule", "1s,2s", "--log-level=warn"};
	assert_int_equal(parse(ARGC(a3), a3, err), CFG_OK);
	assert_int_equal(t_sched.n, 2);
	assert_int_equal(t_sched.ms[1], 2000);
	assert_int_equal(t_level, LOG_LVL_WARN);
}

static void test_flag_missing_value(void **state)
{
	char err[ERRLEN];
	char *argv[] = {"prog", "--log-level=debug", "--port"};
	assert_int_equal(parse(ARGC(argv), argv, err), -EINVAL);
	assert_error_names(err, "UT_PORT", "--port");
	assert_non_null(strstr(err, "needs a value"));

	/* "--port=" gives an empty value, which is not an integer. */
	char *a2[] = {"prog", "--port="};
	assert_int_equal(parse(ARGC(a2), a2, err), -EINVAL);
	assert_error_names(err, "UT_PORT", "an integer from 1 to 65535");
}

static void test_unknown_flag(void **state)
{
	char err[ERRLEN];
	char *a1[] = {"prog", "--bogus=1"};
	assert_int_equal(parse(ARGC(a1), a1, err), -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	assert_non_null(strstr(err, "unknown option"));

	char *a2[] = {"prog", "--port", "80", "--nope"};
	assert_int_equal(parse(ARGC(a2), a2, err), -EINVAL);
	assert_non_null(strstr(err, "--nope"));

	/* The message stays one line whatever the argument holds (found by fuzzing). */
	char *nl1[] = {"prog", "--x\ny"};
	assert_int_equal(parse(ARGC(nl1), nl1, err), -EINVAL);
	assert_null(strchr(err, '\n'));
	char *nl2[] = {"prog", "--port=8\n0"};
	assert_int_equal(parse(ARGC(nl2), nl2, err), -EINVAL);
	assert_null(strchr(err, '\n'));

	/* A prefix or an extension of a real flag is not that flag. */
	char *a3[] = {"prog", "--por=80"};
	assert_int_equal(parse(ARGC(a3), a3, err), -EINVAL);
	assert_non_null(strstr(err, "--por"));
	char *a4[] = {"prog", "--ports=80"};
	assert_int_equal(parse(ARGC(a4), a4, err), -EINVAL);
	assert_non_null(strstr(err, "--ports"));

	/* A stray positional argument is refused too. */
	char *a5[] = {"prog", "extra"};
	assert_int_equal(parse(ARGC(a5), a5, err), -EINVAL);
	assert_non_null(strstr(err, "extra"));
}

/* Run cfg_parse with stdout redirected into a temporary file; return what it printed. */
static char *capture_parse(const struct cfg_option *o, size_t n, int argc, char **argv, int *rc,
                           char *err)
{
	fflush(stdout);
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	int saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
	err[0] = '\0';
	*rc = cfg_parse(o, n, argc, argv, "Delivers webhooks for unit tests.", err, ERRLEN);
	fflush(stdout);
	assert_true(dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);

	assert_int_equal(fseek(tmp, 0, SEEK_END), 0);
	long size = ftell(tmp);
	assert_true(size >= 0);
	rewind(tmp);
	char *out = malloc((size_t)size + 1);
	assert_non_null(out);
	assert_int_equal(fread(out, 1, (size_t)size, tmp), (size_t)size);
	out[size] = '\0';
	fclose(tmp);
	return out;
}

/* The line of out that mentions flag, copied into line. */
static void help_line(const char *out, const char *flag, char *line, size_t len)
{
	const char *p = strstr(out, flag);
	if (p == NULL)
		fail_msg("help does not mention %s:\n%s", flag, out);
	const char *start = p;
	while (start > out && start[-1] != '\n')
		start--;
	const char *end = strchr(p, '\n');
	size_t n = end != NULL ? (size_t)(end - start) : strlen(start);
	assert_true(n < len);
	memcpy(line, start, n);
	line[n] = '\0';
}

static void assert_line_has(const char *line, const char *what)
{
	if (strstr(line, what) == NULL)
		fail_msg("help line '%s' does not contain '%s'", line, what);
}

static void test_help_prints_every_option(void **state)
{
	char err[ERRLEN];
	int rc = 0;
	char *argv[] = {"/usr/local/bin/webhooks-unit", "--port=1", "--help", "--bogus"};
	char *out = capture_parse(opts, NOPTS, ARGC(argv), argv, &rc, err);
	assert_int_equal(rc, CFG_HELP);
	assert_non_null(strstr(out, "Usage: webhooks-unit"));
	assert_non_null(strstr(out, "Delivers webhooks for unit tests."));
	char line[512];
	for (size_t i = 0; i < NOPTS; i++) {
		char def[128];
		snprintf(def, sizeof(def), "(default: %s)", opts[i].def);
		help_line(out, opts[i].flag, line, sizeof(line));
		assert_line_has(line, opts[i].env);
		assert_line_has(line, opts[i].help);
		assert_line_has(line, def);
	}
	help_line(out, "--help", line, sizeof(line));
	free(out);
}

static void test_help_with_required_missing(void **state)
{
	char err[ERRLEN];
	int rc = 0;
	char *argv[] = {"prog", "-h"};
	char *out = capture_parse(req_opts, NREQ, ARGC(argv), argv, &rc, err);
	/* --help must work before the required options are given. */
	assert_int_equal(rc, CFG_HELP);
	char line[512];
	help_line(out, "--admin-token", line, sizeof(line));
	assert_line_has(line, "UT_ADMIN_TOKEN");
	assert_line_has(line, "none, required");
	help_line(out, "--port", line, sizeof(line));
	assert_line_has(line, "UT_PORT");
	assert_line_has(line, "(default: 8080)");
	free(out);
}

static void test_parse_long_strict(void **state)
{
	long v = 7;
	assert_true(cfg_parse_long("0", &v));
	assert_int_equal(v, 0);
	assert_true(cfg_parse_long("12", &v));
	assert_int_equal(v, 12);
	assert_true(cfg_parse_long("-42", &v));
	assert_int_equal(v, -42);

	char buf[64];
	snprintf(buf, sizeof(buf), "%ld", LONG_MAX);
	assert_true(cfg_parse_long(buf, &v));
	assert_true(v == LONG_MAX);
	snprintf(buf, sizeof(buf), "%ld", LONG_MIN);
	assert_true(cfg_parse_long(buf, &v));
	assert_true(v == LONG_MIN);

	static const char *const bad[] = {
	    "",  " 12", "12 ", "12abc", "1e3", "0x10", "abc",
	    "-", "--1", "- 1", "\t1",   "1.0", "12\n", NULL,
	};
	for (size_t i = 0; bad[i] != NULL; i++) {
		v = 7;
		if (cfg_parse_long(bad[i], &v))
			fail_msg("cfg_parse_long accepted '%s'", bad[i]);
		assert_int_equal(v, 7);
	}
	assert_false(cfg_parse_long(NULL, &v));
	/* One past the limits, and far past them. */
	assert_false(cfg_parse_long("9223372036854775808", &v));
	assert_false(cfg_parse_long("-9223372036854775809", &v));
	assert_false(cfg_parse_long("99999999999999999999999999", &v));
	assert_int_equal(v, 7);
}

static void test_int_rejections_name_variable(void **state)
{
	static const char *const bad[] = {
	    "12abc",
	    " 12",
	    "",
	    "1e3",
	    "0",
	    "65536",
	    "-1",
	    "99999999999999999999",
	    "-99999999999999999999",
	    "9223372036854775808",
	    NULL,
	};
	char err[ERRLEN];
	for (size_t i = 0; bad[i] != NULL; i++) {
		/* From the environment... */
		setup(state);
		assert_int_equal(setenv("UT_PORT", bad[i], 1), 0);
		char *argv[] = {"prog"};
		if (parse(ARGC(argv), argv, err) != -EINVAL)
			fail_msg("UT_PORT='%s' was accepted", bad[i]);
		assert_error_names(err, "UT_PORT", "expected an integer from 1 to 65535");
		assert_int_equal(unsetenv("UT_PORT"), 0);

		/* ...and from the command line. */
		if (parse_flag(&opts[2], bad[i], err) != -EINVAL)
			fail_msg("--port='%s' was accepted", bad[i]);
		assert_error_names(err, "UT_PORT", "expected an integer from 1 to 65535");
	}
}

static void test_int_range_edges(void **state)
{
	char err[ERRLEN];
	assert_int_equal(parse_flag(&opts[2], "1", err), CFG_OK);
	assert_int_equal(t_port, 1);
	assert_int_equal(parse_flag(&opts[2], "65535", err), CFG_OK);
	assert_int_equal(t_port, 65535);
	assert_int_equal(parse_flag(&opts[3], "-100", err), CFG_OK);
	assert_int_equal(t_offset, -100);
	assert_int_equal(parse_flag(&opts[3], "100", err), CFG_OK);
	assert_int_equal(t_offset, 100);
	assert_int_equal(parse_flag(&opts[3], "-101", err), -EINVAL);
	assert_error_names(err, "UT_OFFSET", "an integer from -100 to 100");
	assert_int_equal(parse_flag(&opts[3], "101", err), -EINVAL);
	assert_error_names(err, "UT_OFFSET", "an integer from -100 to 100");
	assert_int_equal(t_offset, -5); /* the default; the bad value is not stored */
}

static void test_bools(void **state)
{
	static const struct {
		const char *text;
		bool value;
	} good[] = {
	    {"1", true},  {"true", true},   {"yes", true}, {"on", true},
	    {"0", false}, {"false", false}, {"no", false}, {"off", false},
	};
	/* No default: the target keeps what it had unless parsing writes it. */
	bool b;
	const struct cfg_option o = {"UT_ONE", "--one", CFG_BOOL, "", "a bool", 0, 0, NULL, &b};
	char err[ERRLEN];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		b = !good[i].value;
		if (parse_flag(&o, good[i].text, err) != CFG_OK)
			fail_msg("bool '%s' rejected: %s", good[i].text, err);
		assert_int_equal(b, good[i].value);

		b = !good[i].value;
		assert_int_equal(setenv("UT_ONE", good[i].text, 1), 0);
		char *argv[] = {"prog"};
		assert_int_equal(cfg_parse(&o, 1, 1, argv, "", err, ERRLEN), CFG_OK);
		assert_int_equal(b, good[i].value);
		assert_int_equal(unsetenv("UT_ONE"), 0);
	}
	static const char *const bad[] = {"2", "", "maybe", "1 ", " 1", "truee", "-1", NULL};
	for (size_t i = 0; bad[i] != NULL; i++) {
		b = true;
		if (parse_flag(&o, bad[i], err) != -EINVAL)
			fail_msg("bool '%s' accepted", bad[i]);
		assert_error_names(err, "UT_ONE", "expected 0 or 1");
		assert_true(b);
	}
}

static void test_parse_duration_units(void **state)
{
	int64_t ms = -1;
	assert_true(cfg_parse_duration("250ms", &ms));
	assert_int_equal(ms, 250);
	assert_true(cfg_parse_duration("5s", &ms));
	assert_int_equal(ms, 5000);
	assert_true(cfg_parse_duration("2m", &ms));
	assert_int_equal(ms, 120000);
	assert_true(cfg_parse_duration("1h", &ms));
	assert_int_equal(ms, 3600000);
	assert_true(cfg_parse_duration("30d", &ms));
	assert_int_equal(ms, 30LL * 86400000);
	assert_true(cfg_parse_duration("0s", &ms));
	assert_int_equal(ms, 0);
	static const char *const bad[] = {"1",
	                                  "5x",
	                                  "",
	                                  "-1s",
	                                  "s",
	                                  "ms",
	                                  "1.5s",
	                                  "1 s",
	                                  " 1s",
	                                  "1s ",
	                                  "1S",
	                                  "1sec",
	                                  "+1s",
	                                  "99999999999999999999h",
	                                  "200000000000d",
	                                  NULL};
	for (size_t i = 0; bad[i] != NULL; i++) {
		ms = -7;
		if (cfg_parse_duration(bad[i], &ms))
			fail_msg("duration '%s' accepted", bad[i]);
		assert_int_equal(ms, -7);
	}
}

static void test_duration_lists(void **state)
{
	char err[ERRLEN];
	const struct cfg_option *o = &opts[5];
	assert_int_equal(parse_flag(o, "1s,5s,30s,2m,10m", err), CFG_OK);
	assert_int_equal(t_sched.n, 5);
	const int64_t want[] = {1000, 5000, 30000, 120000, 600000};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(t_sched.ms[i], want[i]);

	assert_int_equal(parse_flag(o, "250ms", err), CFG_OK);
	assert_int_equal(t_sched.n, 1);
	assert_int_equal(t_sched.ms[0], 250);

	assert_int_equal(parse_flag(o, "1h", err), CFG_OK);
	assert_int_equal(t_sched.n, 1);
	assert_int_equal(t_sched.ms[0], 3600000);

	/* Exactly CFG_MAX_DURATIONS entries is allowed. */
	assert_int_equal(parse_flag(o,
	                            "1ms,2ms,3ms,4ms,5ms,6ms,7ms,8ms,9ms,10ms,11ms,12ms,13ms,"
	                            "14ms,15ms,16ms",
	                            err),
	                 CFG_OK);
	assert_int_equal(t_sched.n, 16);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(t_sched.ms[i], (int64_t)i + 1);
}

static void test_duration_list_rejections(void **state)
{
	static const char *const bad[] = {
	    "1",
	    "5x",
	    "1s,,2s",
	    "",
	    "1s,2s,3s,4s,5s,6s,7s,8s,9s,10s,11s,12s,13s,14s,15s,16s,17s",
	    "-1s",
	    "1s,",
	    ",1s",
	    ",",
	    "1s, 2s",
	    "1s;2s",
	    NULL,
	};
	char err[ERRLEN];
	for (size_t i = 0; bad[i] != NULL; i++) {
		if (parse_flag(&opts[5], bad[i], err) != -EINVAL)
			fail_msg("RETRY_SCHEDULE '%s' accepted", bad[i]);
		assert_error_names(err, "UT_RETRY_SCHEDULE", "durations");

		setup(state);
		assert_int_equal(setenv("UT_RETRY_SCHEDULE", bad[i], 1), 0);
		char *argv[] = {"prog"};
		if (parse(ARGC(argv), argv, err) != -EINVAL)
			fail_msg("UT_RETRY_SCHEDULE='%s' accepted from the environment", bad[i]);
		assert_error_names(err, "UT_RETRY_SCHEDULE", "units ms, s, m, h");
		assert_int_equal(unsetenv("UT_RETRY_SCHEDULE"), 0);
	}
}

static void test_log_levels(void **state)
{
	static const struct {
		const char *text;
		enum log_level level;
	} good[] = {
	    {"error", LOG_LVL_ERROR},
	    {"warn", LOG_LVL_WARN},
	    {"info", LOG_LVL_INFO},
	    {"debug", LOG_LVL_DEBUG},
	};
	char err[ERRLEN];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		t_level = (enum log_level)99;
		assert_int_equal(parse_flag(&opts[6], good[i].text, err), CFG_OK);
		assert_int_equal(t_level, good[i].level);
	}
	static const char *const bad[] = {"verbose", "", "inf", "info ", "trace", "3", NULL};
	for (size_t i = 0; bad[i] != NULL; i++) {
		t_level = (enum log_level)99;
		if (parse_flag(&opts[6], bad[i], err) != -EINVAL)
			fail_msg("log level '%s' accepted", bad[i]);
		assert_error_names(err, "UT_LOG_LEVEL", "one of error, warn, info, debug");
		assert_int_equal(t_level,
		                 LOG_LVL_INFO); /* the default; the bad value is not stored */
	}
}

static void test_required_option(void **state)
{
	char err[ERRLEN];
	char *argv[] = {"prog", "--port=81"};
	assert_int_equal(cfg_parse(req_opts, NREQ, ARGC(argv), argv, "", err, ERRLEN), -EINVAL);
	assert_error_names(err, "UT_ADMIN_TOKEN", "--admin-token");
	assert_null(t_token);

	/* Given by the environment. */
	assert_int_equal(setenv("UT_ADMIN_TOKEN", "s3cret", 1), 0);
	assert_int_equal(cfg_parse(req_opts, NREQ, ARGC(argv), argv, "", err, ERRLEN), CFG_OK);
	assert_string_equal(t_token, "s3cret");
	assert_int_equal(t_port, 81);

	/* An empty value is not a value. */
	assert_int_equal(setenv("UT_ADMIN_TOKEN", "", 1), 0);
	assert_int_equal(cfg_parse(req_opts, NREQ, ARGC(argv), argv, "", err, ERRLEN), -EINVAL);
	assert_error_names(err, "UT_ADMIN_TOKEN", "a non-empty value");
	assert_int_equal(unsetenv("UT_ADMIN_TOKEN"), 0);

	/* Given by a flag. */
	t_token = NULL;
	char *a2[] = {"prog", "--admin-token", "flag-token"};
	assert_int_equal(cfg_parse(req_opts, NREQ, ARGC(a2), a2, "", err, ERRLEN), CFG_OK);
	assert_string_equal(t_token, "flag-token");
}

/* A flag's value that reads like another flag is a value: the other option is still taken
 * from its variable, or missing (found by fuzz_config). */
static void test_value_that_looks_like_a_flag(void **state)
{
	char err[ERRLEN];
	const struct cfg_option two[] = {req_opts[0], opts[1]};
	assert_int_equal(cfg_parse(two, 2, 3, (char *[]){"prog", "--store-url", "--admin-token"},
	                           "", err, ERRLEN),
	                 -EINVAL);
	assert_error_names(err, "UT_ADMIN_TOKEN", "--admin-token");
	assert_null(t_token);

	assert_int_equal(setenv("UT_ADMIN_TOKEN", "from-env", 1), 0);
	assert_int_equal(cfg_parse(two, 2, 3, (char *[]){"prog", "--store-url", "--admin-token"},
	                           "", err, ERRLEN),
	                 CFG_OK);
	assert_string_equal(t_token, "from-env");
	assert_string_equal(t_store, "--admin-token");

	/* A bad variable is still refused when only a value names its flag. */
	assert_int_equal(setenv("UT_PORT", "x", 1), 0);
	char *a2[] = {"prog", "--store-url", "--port"};
	assert_int_equal(parse(ARGC(a2), a2, err), -EINVAL);
	assert_error_names(err, "UT_PORT", "an integer");
}

static void test_empty_string_rejected(void **state)
{
	char err[ERRLEN];
	assert_int_equal(setenv("UT_STORE_URL", "", 1), 0);
	char *argv[] = {"prog"};
	assert_int_equal(parse(ARGC(argv), argv, err), -EINVAL);
	assert_error_names(err, "UT_STORE_URL", "a non-empty value");
}

static void test_check_callback(void **state)
{
	char err[ERRLEN];
	char *a1[] = {"prog", "--nats-url=nats://broker:4222"};
	assert_int_equal(parse(ARGC(a1), a1, err), CFG_OK);
	assert_string_equal(t_nats, "nats://broker:4222");
	assert_true(check_calls >= 2); /* the default and the flag both go through it */

	check_calls = 0;
	t_nats = NULL;
	char *a2[] = {"prog", "--nats-url", "http://broker:4222"};
	assert_int_equal(parse(ARGC(a2), a2, err), -EINVAL);
	assert_true(check_calls >= 1);
	assert_error_names(err, "UT_NATS_URL", "expected a nats:// URL");
	assert_non_null(strstr(err, "http://broker:4222"));

	assert_int_equal(setenv("UT_NATS_URL", "tcp://broker", 1), 0);
	char *a3[] = {"prog"};
	assert_int_equal(parse(ARGC(a3), a3, err), -EINVAL);
	assert_error_names(err, "UT_NATS_URL", "expected a nats:// URL");

	/* A bad value is shown back without its passwords, each URL of a list alike. */
	char *a4[] = {"prog", "--nats-url", "tls://svc:s3cret@a:4222,tls://tok3n@b:4222"};
	assert_int_equal(parse(ARGC(a4), a4, err), -EINVAL);
	assert_error_names(err, "UT_NATS_URL", "expected a nats:// URL");
	assert_null(strstr(err, "s3cret"));
	assert_null(strstr(err, "tok3n"));
	assert_non_null(strstr(err, "'tls://svc:***@a:4222,tls://***@b:4222'"));
}

/* The listening-address check of GATEWAY_BIND and METRICS_BIND: IPv4 or IPv6, nothing else. */
static void test_check_address(void **state)
{
	(void)state;
	const char *good[] = {"0.0.0.0", "127.0.0.1", "::", "::1", "fe80::1", "192.0.2.7"};
	const char *bad[] = {"",      "localhost", "127.0.0.1:9090", "256.0.0.1",
	                     "[::1]", " ::1",      "1.2.3"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (cfg_check_address(good[i]) != NULL)
			fail_msg("'%s' refused", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cfg_check_address(bad[i]) == NULL)
			fail_msg("'%s' accepted", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_defaults_applied, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_argc_zero_uses_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_overrides_default, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flag_overrides_env, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flag_equals_and_space_forms, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flag_missing_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_flag, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_help_prints_every_option, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_help_with_required_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_parse_long_strict, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_int_rejections_name_variable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_int_range_edges, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bools, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_parse_duration_units, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duration_lists, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duration_list_rejections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_levels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_required_option, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_value_that_looks_like_a_flag, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_string_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_check_callback, setup, teardown),
	    cmocka_unit_test(test_check_address),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
