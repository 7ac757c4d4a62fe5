/* fuzz_config.c -- libFuzzer: the configuration parsers of common/config.c: cfg_parse over a
 * fuzzed command line and environment, cfg_parse_long and cfg_parse_duration.
 *
 * Input: NUL-separated fields. The first seven are the values of the seven options'
 * environment variables (a field starting with 0x01 leaves the variable unset), the rest are
 * argv[1...]. Every field also goes through cfg_parse_long and cfg_parse_duration.
 *
 * Invariants, each against a model written here from config.h's description:
 * - cfg_parse_long accepts exactly an optional '-' and decimal digits whose value fits a
 *   long, and gives that value; cfg_parse_duration accepts exactly digits and one of ms, s,
 *   m, h, d, gives the value times the unit, and a duration printed in ms reads back the same;
 * - cfg_parse answers CFG_HELP when any argument is --help or -h; else it succeeds exactly
 *   when every flag is known and has a valid value, every variable that no flag overrides is
 *   valid, and every required option is set; it then holds, for each option, the last flag's
 *   value, else the variable's, else the default;
 * - a refusal is one line (the process prints it as its last word) that starts with the
 *   variable's name or says the option is unknown. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>

#include "config.h"
#include "fuzz_check.h"
#include "log.h"

#define NOPTS     7
#define MAX_ARGS  64
#define DUR_LIMIT 256204778801LL /* the parser's bound on a duration's number, any unit */

static const char *check_nats(const char *v)
{
	return strncmp(v, "nats://", 7) == 0 ? NULL : "a nats:// URL";
}

static const char *s_url, *s_req, *s_empty;
static long l_int;
static bool b_flag;
static struct cfg_durations d_list;
static enum log_level lvl;

static const struct cfg_option opts[NOPTS] = {
    {"FZ_URL", "--url", CFG_STRING, "nats://127.0.0.1:4222", "a checked string", 0, 0, check_nats,
     &s_url},
    {"FZ_REQ", "--req", CFG_STRING, NULL, "a required string", 0, 0, NULL, &s_req},
    {"FZ_EMPTY", "--empty", CFG_STRING, "", "a string, empty by default", 0, 0, NULL, &s_empty},
    {"FZ_INT", "--int", CFG_INT, "5", "a number", -3, 100, NULL, &l_int},
    {"FZ_BOOL", "--bool", CFG_BOOL, "0", "a flag", 0, 0, NULL, &b_flag},
    {"FZ_DUR", "--dur", CFG_DURATIONS, "1s,5s", "durations", 0, 0, NULL, &d_list},
    {"FZ_LEVEL", "--level", CFG_LOG_LEVEL, "info", "a log level", 0, 0, NULL, &lvl},
};

/* The models. */

static bool model_long(const char *t, long *out)
{
	const char *p = t + (t[0] == '-');
	if (*p == '\0')
		return false;
	long v = 0;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		int d = *p - '0';
		if (__builtin_mul_overflow(v, 10L, &v) ||
		    (t[0] == '-' ? __builtin_sub_overflow(v, (long)d, &v)
		                 : __builtin_add_overflow(v, (long)d, &v)))
			return false;
	}
	*out = v;
	return true;
}

static bool model_duration(const char *t, int64_t *ms)
{
	const char *p = t;
	long long v = 0;
	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > DUR_LIMIT)
			return false;
	}
	long long unit = strcmp(p, "ms") == 0  ? 1
	                 : strcmp(p, "s") == 0 ? 1000
	                 : strcmp(p, "m") == 0 ? 60000
	                 : strcmp(p, "h") == 0 ? 3600000
	                 : strcmp(p, "d") == 0 ? 86400000
	                                       : 0;
	if (unit == 0 || v > LLONG_MAX / unit)
		return false;
	*ms = v * unit;
	return true;
}

/* Whether text is a valid value of option i; the parsed value goes to the model's slots. */
struct value {
	const char *text;
	long l;
	bool b;
	struct cfg_durations d;
	enum log_level level;
};

static bool model_value(size_t i, const char *text, struct value *v)
{
	v->text = text;
	switch (opts[i].type) {
	case CFG_STRING:
		return text[0] != '\0' && (opts[i].check == NULL || opts[i].check(text) == NULL);
	case CFG_INT:
		return model_long(text, &v->l) && v->l >= opts[i].min && v->l <= opts[i].max;
	case CFG_BOOL:
		if (strcmp(text, "1") == 0 || strcmp(text, "true") == 0 ||
		    strcmp(text, "yes") == 0 || strcmp(text, "on") == 0)
			return v->b = true;
		v->b = false;
		return strcmp(text, "0") == 0 || strcmp(text, "false") == 0 ||
		       strcmp(text, "no") == 0 || strcmp(text, "off") == 0;
	case CFG_DURATIONS: {
		size_t len = strlen(text);
		if (len == 0 || len >= 512) /* the parser's own bound on the list */
			return false;
		v->d.n = 0;
		for (const char *f = text;;) {
			size_t flen = strcspn(f, ",");
			char one[512];
			memcpy(one, f, flen);
			one[flen] = '\0';
			if (v->d.n == CFG_MAX_DURATIONS || !model_duration(one, &v->d.ms[v->d.n]))
				return false;
			v->d.n++;
			if (f[flen] == '\0')
				return true;
			f += flen + 1;
		}
	}
	case CFG_LOG_LEVEL:
		return log_parse_level(text, &v->level);
	}
	return false;
}

static void check_target(size_t i, const struct value *want, const char *args)
{
	switch (opts[i].type) {
	case CFG_STRING: {
		const char *got = *(const char **)opts[i].target;
		CHECK(got != NULL && strcmp(got, want->text) == 0, "%s is '%s', expected '%s' (%s)",
		      opts[i].env, got != NULL ? got : "(null)", want->text, args);
		break;
	}
	case CFG_INT:
		CHECK(l_int == want->l, "%s is %ld, expected %ld (%s)", opts[i].env, l_int, want->l,
		      args);
		break;
	case CFG_BOOL:
		CHECK(b_flag == want->b, "%s is %d (%s)", opts[i].env, b_flag, args);
		break;
	case CFG_DURATIONS:
		CHECK(d_list.n == want->d.n &&
		          memcmp(d_list.ms, want->d.ms, d_list.n * sizeof(int64_t)) == 0,
		      "%s holds %zu durations, expected %zu (%s)", opts[i].env, d_list.n, want->d.n,
		      args);
		break;
	case CFG_LOG_LEVEL:
		CHECK(lvl == want->level, "%s is %d (%s)", opts[i].env, (int)lvl, args);
		break;
	}
}

static void check_numbers(const char *field)
{
	long a = 0, b = 0;
	bool ra = cfg_parse_long(field, &a), rb = model_long(field, &b);
	CHECK(ra == rb && (!ra || a == b), "cfg_parse_long('%s') = %d %ld, expected %d %ld", field,
	      ra, a, rb, b);
	int64_t ma = 0, mb = 0;
	ra = cfg_parse_duration(field, &ma);
	rb = model_duration(field, &mb);
	CHECK(ra == rb && (!ra || ma == mb), "cfg_parse_duration('%s') = %d %lld, expected %d %lld",
	      field, ra, (long long)ma, rb, (long long)mb);
	if (ra && ma <= DUR_LIMIT) {
		char text[32];
		snprintf(text, sizeof(text), "%lldms", (long long)ma);
		CHECK(cfg_parse_duration(text, &mb) && mb == ma, "'%s' read back as %lld", text,
		      (long long)mb);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* --help prints the usage on stdout: keep libFuzzer's output readable. */
	CHECK(freopen("/dev/null", "w", stdout) != NULL, "cannot open /dev/null");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char buf[4097];
	memcpy(buf, data, size);
	buf[size] = '\0';
	char *fields[NOPTS + MAX_ARGS];
	size_t nf = 0;
	for (char *p = buf; nf < NOPTS + MAX_ARGS; p += strlen(p) + 1) {
		fields[nf++] = p;
		if (p + strlen(p) >= buf + size)
			break;
	}
	for (size_t i = 0; i < nf; i++)
		check_numbers(fields[i]);

	const char *env[NOPTS];
	for (size_t i = 0; i < NOPTS; i++) {
		env[i] = i < nf && fields[i][0] != '\x01' ? fields[i] : NULL;
		if (env[i] != NULL)
			CHECK(setenv(opts[i].env, env[i], 1) == 0, "setenv %s", opts[i].env);
		else
			unsetenv(opts[i].env);
	}
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	argv[argc++] = "fuzz_config";
	for (size_t i = NOPTS; i < nf; i++)
		argv[argc++] = fields[i];
	argv[argc] = NULL;
	char args[256] = "";
	for (int a = 1, used = 0; a < argc && used < (int)sizeof(args) - 1; a++)
		used += snprintf(args + used, sizeof(args) - (size_t)used, "%s'%.40s'",
		                 a > 1 ? " " : "argv: ", argv[a]);

	/* The model's answer. */
	bool help = false, ok = true;
	const char *flag[NOPTS] = {NULL};
	for (int a = 1; a < argc; a++)
		help |= strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0;
	for (int a = 1; a < argc && ok; a++) {
		size_t len = strcspn(argv[a], "=");
		size_t i = 0;
		while (i < NOPTS &&
		       !(strlen(opts[i].flag) == len && strncmp(opts[i].flag, argv[a], len) == 0))
			i++;
		if (i == NOPTS || (argv[a][len] == '\0' && a + 1 >= argc)) {
			ok = false;
			break;
		}
		flag[i] = argv[a][len] == '=' ? argv[a] + len + 1 : argv[++a];
		struct value v;
		ok = model_value(i, flag[i], &v);
	}
	struct value want[NOPTS];
	for (size_t i = 0; i < NOPTS && ok; i++) {
		const char *text = flag[i] != NULL  ? flag[i]
		                   : env[i] != NULL ? env[i]
		                                    : opts[i].def;
		if (text == NULL)
			ok = false; /* required and not given */
		else if (opts[i].type == CFG_STRING && text[0] == '\0' && text == opts[i].def)
			want[i].text = ""; /* an empty default */
		else
			ok = model_value(i, text, &want[i]);
	}

	s_url = s_req = s_empty = NULL;
	char err[512] = "";
	int rc = cfg_parse(opts, NOPTS, argc, argv, "fuzz", err, sizeof(err));
	if (help) {
		CHECK(rc == CFG_HELP, "--help gave %d (%s)", rc, args);
	} else if (ok) {
		CHECK(rc == CFG_OK, "refused: %s (%s)", err, args);
		for (size_t i = 0; i < NOPTS; i++)
			check_target(i, &want[i], args);
	} else {
		CHECK(rc == -EINVAL, "accepted (%d), expected a refusal (%s)", rc, args);
		CHECK(err[0] != '\0' && !fuzz_has_control(err), "message '%s'", err);
		bool named = strncmp(err, "unknown option", 14) == 0;
		for (size_t i = 0; i < NOPTS; i++)
			named |= strncmp(err, opts[i].env, strlen(opts[i].env)) == 0 &&
			         err[strlen(opts[i].env)] == ':';
		CHECK(named, "message '%s' names no variable", err);
	}
	return 0;
}
