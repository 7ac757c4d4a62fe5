/* fuzz_check.h -- what the harnesses of tests/fuzz share: an invariant that fails prints what
 * was wrong and aborts, which libFuzzer reports as a crash, keeping the input that did it. */
#ifndef WEBHOOKS_FUZZ_CHECK_H
#define WEBHOOKS_FUZZ_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "invariant failed at %s:%d: %s\n  ", __FILE__, __LINE__,   \
			        #cond);                                                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The input as a NUL-terminated string the caller frees, or NULL when it is longer than max
 * or holds a NUL itself (argv, the environment, headers and JSON strings cannot). */
static inline char *fuzz_string(const uint8_t *data, size_t size, size_t max)
{
	if (size > max || memchr(data, '\0', size) != NULL)
		return NULL;
	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Whether text holds a byte below 0x20 or 0x7f: a message with one is not one line. */
static inline int fuzz_has_control(const char *text)
{
	for (; *text != '\0'; text++)
		if ((unsigned char)*text < 0x20 || *text == 0x7f)
			return 1;
	return 0;
}

#endif
