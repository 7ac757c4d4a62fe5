/* log.c -- levelled, thread-safe logging to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "timeutil.h"

static _Atomic int threshold = LOG_LVL_INFO;
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
	fprintf(stderr, "%s %s %s: %s\n", stamp, names[level], program, line);
}
