/* config.h -- configuration from environment variables and command-line flags.
 *
 * Each process describes its options in a table; cfg_parse fills the targets from, in order of
 * precedence, the command line (--flag VALUE or --flag=VALUE), the environment, and the
 * default. Parsing is strict: a value that is not exactly what the option expects is an error
 * naming the variable and what it expected. */
#ifndef WEBHOOKS_CONFIG_H
#define WEBHOOKS_CONFIG_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_MAX_DURATIONS 16

enum cfg_type {
	CFG_STRING,    /* const char **: points into argv, environ or the default */
	CFG_INT,       /* long *: a decimal integer within [min, max] */
	CFG_BOOL,      /* bool *: 0/1, true/false, yes/no */
	CFG_DURATIONS, /* struct cfg_durations *: comma-separated, each with ms, s, m, h or d */
	CFG_LOG_LEVEL, /* enum log_level *: error, warn, info or debug */
};

struct cfg_durations {
	size_t n;
	int64_t ms[CFG_MAX_DURATIONS];
};

struct cfg_option {
	const char *env;  /* environment variable, e.g. "NATS_URL" */
	const char *flag; /* command-line flag, e.g. "--nats-url" */
	enum cfg_type type;
	const char *def; /* default as text; NULL means the option is required */
	const char *help;
	long min, max; /* CFG_INT range, inclusive */
	/* For CFG_STRING: NULL when value is acceptable, else what was expected. */
	const char *(*check)(const char *value);
	void *target;
};

enum {
	CFG_OK = 0,
	CFG_HELP = 1, /* --help was given and printed; the caller exits 0 */
};

/* Parse argv and the environment into the options' targets. Returns CFG_OK, CFG_HELP
 * (usage printed to stdout), or -EINVAL with one line for a person in err. */
__attribute__((warn_unused_result)) int cfg_parse(const struct cfg_option *opts, size_t n, int argc,
                                                  char **argv, const char *summary, char *err,
                                                  size_t errlen);

/* The start of every main(): cfg_parse, with the program's name on its log lines and on the
 * one stderr line that reports a bad value. Returns CFG_OK, CFG_HELP (the caller exits 0) or
 * -EINVAL after printing "program: <what was wrong>" (the caller exits 2). */
__attribute__((warn_unused_result)) int cfg_load(const struct cfg_option *opts, size_t n, int argc,
                                                 char **argv, const char *program,
                                                 const char *summary);

/* Block SIGTERM and SIGINT in the calling thread and every thread it starts afterwards, so that
 * only a sigwait() on *stop sees them, and ignore SIGPIPE (a peer that hangs up is an error
 * return, not a death) and SIGXFSZ (so is a write past the file size limit). Call before
 * starting any thread. */
void cfg_block_stop_signals(sigset_t *stop);

/* Parse one duration such as "250ms", "5s", "2m" or "1h" into milliseconds.
 * Returns true on success. */
bool cfg_parse_duration(const char *text, int64_t *ms);

/* Parse a strict decimal integer (no spaces, no trailing text) into out. Returns true on
 * success. Use it wherever a string becomes a number. */
bool cfg_parse_long(const char *text, long *out);

/* A CFG_STRING check for a listening address: NULL when v is an IPv4 or IPv6 address, else
 * what was expected. */
const char *cfg_check_address(const char *v);

#endif
