/* log.c -- levelled, thread-safe logging to stderr. */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "timeutil.h"

static _Atomic int threshold = LOG_LVL_INFO;
static _Atomic bool json_lines;
static const char *program = "webhooks";

static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void log_set_level(enum log_level level)
{
	atomic_store(&threshold, (int)level);
}

void log_set_program(const char *name)
{
	program = name;
}

bool log_parse_level(const char *text, enum log_level *out)
{
	static const char *const words[] = {"error", "warn", "info", "debug"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcmp(text, words[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

bool log_set_format(const char *word)
{
	if (strcmp(word, "text") != 0 && strcmp(word, "json") != 0)
		return false;
	atomic_store(&json_lines, strcmp(word, "json") == 0);
	return true;
}

const char *log_check_format(const char *word)
{
	return strcmp(word, "text") == 0 || strcmp(word, "json") == 0 ? NULL : "text or json";
}

/* The id after "<noun> " in msg, when there is one, into key of o. */
static void add_id(json_t *o, const char *msg, const char *noun, const char *key)
{
	size_t nlen = strlen(noun);
	for (const char *p = strstr(msg, noun); p != NULL; p = strstr(p + 1, noun)) {
		if ((p != msg && p[-1] != ' ' && p[-1] != '(') || p[nlen] != ' ')
			continue;
		char id[ID_LEN + 1];
		memcpy(id, p + nlen + 1, ID_LEN);
		id[ID_LEN] = '\0';
		if (strnlen(p + nlen + 1, ID_LEN) == ID_LEN && id_valid(id)) {
			(void)json_object_set_new(o, key, json_string(id)); /* a line without it is
			                                                     * still a line */
			return;
		}
	}
}

static void print_json(const char *stamp, enum log_level level, const char *msg)
{
	static const char *const words[] = {"error", "warn", "info", "debug"};
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ts", stamp, "level", words[level], "program",
	                      program, "msg", msg);
	char *text = NULL;
	if (o != NULL) {
		add_id(o, msg, "event", "event_id");
		add_id(o, msg, "delivery", "delivery_id");
		add_id(o, msg, "webhook", "webhook_id");
		text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		json_decref(o);
	}
	if (text != NULL)
		fprintf(stderr, "%s\n", text);
	else /* out of memory: the line in text form rather than none */
		fprintf(stderr, "%s %s %s: %s\n", stamp, names[level], program, msg);
	free(text);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&threshold);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char stamp[TIME_RFC3339_LEN + 1];
	time_rfc3339(time_now_ms(), stamp);

	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* One fprintf per line keeps lines from different threads whole. */
	if (atomic_load(&json_lines))
		print_json(stamp, level, line);
	else
		fprintf(stderr, "%s %s %s: %s\n", stamp, names[level], program, line);
}

void log_warn_limited(struct log_limited *l, const char *fmt, ...)
{
	int64_t now = time_mono_ms();
	pthread_mutex_lock(&l->lock);
	bool say = l->last_ms == 0 || now - l->last_ms >= l->every_ms;
	unsigned long before = l->quiet;
	if (say) {
		l->last_ms = now;
		l->quiet = 0;
	} else {
		l->quiet++;
	}
	pthread_mutex_unlock(&l->lock);
	if (!say || !log_enabled(LOG_LVL_WARN))
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n >= 0)
		log_warn("%s (%lu more since the last such line)", line, before);
}
