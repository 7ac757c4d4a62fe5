/* buf.c -- growable byte buffer with a sticky error, and JSON string escaping. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int buf_error(const struct buf *b)
{
	return b->err;
}

int buf_reserve(struct buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->err)
		return b->err;
	if (b->cap - b->len >= n)
		return 0;
	if (n > SIZE_MAX / 2 - b->len) {
		b->err = -ENOMEM;
		return b->err;
	}
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0 || buf_reserve(b, n) < 0)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void buf_append_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_append_u64(struct buf *b, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof(tmp);

	/* Formatting by hand: this runs for every response header on the hot path. */
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_append(b, tmp + i, sizeof(tmp) - i);
}

void buf_append_i64(struct buf *b, int64_t v)
{
	if (v < 0) {
		buf_append(b, "-", 1);
		buf_append_u64(b, (uint64_t)0 - (uint64_t)v);
		return;
	}
	buf_append_u64(b, (uint64_t)v);
}

/* Length of the valid UTF-8 sequence starting at s, or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t need, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		/* Reject overlong forms and UTF-16 surrogates, which JSON readers refuse. */
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < need + 1)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need + 1;
}

static void append_escape(struct buf *b, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

	switch (c) {
	case '"':
		buf_append(b, "\\\"", 2);
		break;
	case '\\':
		buf_append(b, "\\\\", 2);
		break;
	case '\n':
		buf_append(b, "\\n", 2);
		break;
	case '\r':
		buf_append(b, "\\r", 2);
		break;
	case '\t':
		buf_append(b, "\\t", 2);
		break;
	default:
		buf_append(b, esc, sizeof(esc));
		break;
	}
}

void buf_append_json_string(struct buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0, len;

	buf_append(b, "\"", 1);
	while (i < n) {
		unsigned char c = p[i];

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0x80 && (len = utf8_len(p + i, n - i)) > 0) {
			i += len;
			continue;
		}
		/* Copy the plain run before this byte in one go, then its escape. */
		buf_append(b, p + run, i - run);
		append_escape(b, c);
		i++;
		run = i;
	}
	buf_append(b, p + run, n - run);
	buf_append(b, "\"", 1);
}

void buf_clear(struct buf *b)
{
	b->len = 0;
	b->err = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->err = 0;
}
