/* log.h -- levelled, thread-safe logging to stderr. */
#ifndef WEBHOOKS_LOG_H
#define WEBHOOKS_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Set the process-wide threshold; messages above it are dropped. */
void log_set_level(enum log_level level);

/* Parse "error", "warn", "info" or "debug". Returns true on success. */
bool log_parse_level(const char *text, enum log_level *out);

/* True when messages of this level are printed (to skip costly formatting). */
bool log_enabled(enum log_level level);

/* Print one line "<RFC 3339 time> <LEVEL> <prog>: <message>" to stderr. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* LOG_FORMAT: "text" (the default) or "json", one object a line: {"ts", "level", "program",
 * "msg"} and, when the message names them ("event <id>", "delivery <id>", "webhook <id>"),
 * "event_id", "delivery_id" and "webhook_id". Returns false for another word. */
bool log_set_format(const char *word);

/* For the LOG_FORMAT option's check: NULL when word is valid, else what was expected. */
const char *log_check_format(const char *word);

/* The program name printed on every line; the string must outlive the process. */
void log_set_program(const char *name);

/* A warning a flood could repeat without end (refused connections, say): printed at most once
 * per every_ms, with the number held back since the last one printed. One per kind of warning,
 * made with LOG_LIMITED(every_ms). */
struct log_limited {
	pthread_mutex_t lock;
	int64_t every_ms;
	int64_t last_ms;     /* when one was last printed (monotonic), 0 for never */
	unsigned long quiet; /* held back since */
};
#define LOG_LIMITED(every)                                                                         \
	{                                                                                          \
		PTHREAD_MUTEX_INITIALIZER, (every), 0, 0                                           \
	}

/* log_warn through l: "<message> (N more since the last such line)". Thread-safe. */
void log_warn_limited(struct log_limited *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
