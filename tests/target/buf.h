/* buf.h -- growable byte buffer with a sticky error, and JSON string escaping. */
#ifndef TARGET_BUF_H
#define TARGET_BUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * Appends never fail loudly: the first allocation failure is remembered in err and every
 * later append is a no-op, so a caller builds a whole response and checks buf_error() once.
 */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	int err;
};

/* Returns 0, or -ENOMEM when an earlier append could not allocate. */
int buf_error(const struct buf *b) __attribute__((warn_unused_result));

/* Makes room for n more bytes; returns 0 or -ENOMEM (also recorded in b->err). */
int buf_reserve(struct buf *b, size_t n) __attribute__((warn_unused_result));

void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
void buf_append_u64(struct buf *b, uint64_t v);
void buf_append_i64(struct buf *b, int64_t v);

/*
 * Appends s as a quoted JSON string. Bytes that are not valid UTF-8 are written as \u00XX
 * (read as Latin-1), so arbitrary request bodies still give valid JSON.
 */
void buf_append_json_string(struct buf *b, const char *s, size_t n);

/* Forgets the contents and the error but keeps the memory. */
void buf_clear(struct buf *b);

/* Frees the memory; the buffer is empty and usable afterwards. Accepts a zeroed buffer. */
void buf_free(struct buf *b);

#endif
