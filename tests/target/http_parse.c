/* http_parse.c -- HTTP/1.x request parser over a caller's buffer, resumable by re-parsing. */
#include "http_parse.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* A chunk-size line longer than this is not a real client. */
#define MAX_CHUNK_LINE 1024

static int refuse(struct hp_request *req, int status)
{
	req->status = status;
	return -EPROTO;
}

static int is_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return 1;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int slice_is(struct hp_slice s, const char *word)
{
	size_t n = strlen(word);

	return s.n == n && strncasecmp(s.p, word, n) == 0;
}

/* Finds the empty line that ends the header section; *end is the offset just after it. */
static int find_header_end(const char *p, size_t len, size_t *end)
{
	const char *nl = p, *stop = p + len;

	while (nl < stop && (nl = memchr(nl, '\n', (size_t)(stop - nl))) != NULL) {
		const char *q = nl + 1;

		if (q < stop && *q == '\r')
			q++;
		if (q >= stop)
			return -EAGAIN;
		if (*q == '\n') {
			*end = (size_t)(q + 1 - p);
			return 0;
		}
		nl++;
	}
	return -EAGAIN;
}

/* Cuts the line starting at *pos (known to end before limit) and moves *pos past it. */
static struct hp_slice next_line(const char *buf, size_t *pos, size_t limit)
{
	const char *start = buf + *pos;
	const char *nl = memchr(start, '\n', limit - *pos);
	struct hp_slice line = {start, (size_t)(nl - start)};

	*pos += line.n + 1;
	if (line.n > 0 && start[line.n - 1] == '\r')
		line.n--;
	return line;
}

static int parse_request_line(struct hp_slice line, struct hp_request *req)
{
	const char *p = line.p, *end = line.p + line.n, *sp;
	size_t i;

	sp = memchr(p, ' ', line.n);
	if (!sp || sp == p)
		return refuse(req, 400);
	for (i = 0; p + i < sp; i++)
		if (!is_tchar((unsigned char)p[i]))
			return refuse(req, 400);
	req->method = (struct hp_slice){p, (size_t)(sp - p)};

	p = sp + 1;
	sp = memchr(p, ' ', (size_t)(end - p));
	if (!sp || sp == p)
		return refuse(req, 400);
	for (i = 0; p + i < sp; i++)
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return refuse(req, 400);
	req->target = (struct hp_slice){p, (size_t)(sp - p)};

	p = sp + 1;
	if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' ||
	    p[7] < '0' || p[7] > '9')
		return refuse(req, 400);
	if (p[5] != '1' || p[7] > '1')
		return refuse(req, 505);
	req->minor = p[7] - '0';
	return 0;
}

/* Parses "Content-Length"; several headers must agree, and a list is refused. */
static int parse_content_length(struct hp_slice v, size_t max_body, int *seen, int *too_big,
                                struct hp_request *req)
{
	size_t n = 0, i;
	int big = 0;

	if (v.n == 0)
		return refuse(req, 400);
	for (i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return refuse(req, 400);
		/* Stop growing once past the limit: the exact value no longer matters. */
		if (!big) {
			n = n * 10 + (size_t)(v.p[i] - '0');
			if (n > max_body)
				big = 1;
		}
	}
	if (*seen && (big != *too_big || n != req->content_length))
		return refuse(req, 400);
	*seen = 1;
	*too_big = big;
	req->content_length = n;
	return 0;
}

/* Reads the Connection header's comma-separated tokens. */
static void parse_connection(struct hp_slice v, int *close, int *keep)
{
	size_t i = 0;

	while (i < v.n) {
		struct hp_slice tok;

		while (i < v.n && (is_ows(v.p[i]) || v.p[i] == ','))
			i++;
		tok.p = v.p + i;
		while (i < v.n && v.p[i] != ',' && !is_ows(v.p[i]))
			i++;
		tok.n = (size_t)(v.p + i - tok.p);
		if (slice_is(tok, "close"))
			*close = 1;
		else if (slice_is(tok, "keep-alive"))
			*keep = 1;
	}
}

static int parse_headers(const char *buf, size_t pos, size_t hdr_end, size_t max_body,
                         struct hp_request *req)
{
	int cl_seen = 0, too_big = 0, te_seen = 0, conn_close = 0, conn_keep = 0;
	int r;

	/* The last line before hdr_end is the empty one. */
	for (;;) {
		struct hp_slice line = next_line(buf, &pos, hdr_end);
		struct hp_header *h;
		const char *colon, *v, *vend;
		size_t i;

		if (line.n == 0)
			break;
		if (req->nheaders == HP_MAX_HEADERS)
			return refuse(req, 431);
		/* Obsolete line folding and whitespace before the colon are refused (RFC 9112). */
		colon = memchr(line.p, ':', line.n);
		if (!colon || colon == line.p)
			return refuse(req, 400);
		for (i = 0; line.p + i < colon; i++)
			if (!is_tchar((unsigned char)line.p[i]))
				return refuse(req, 400);
		v = colon + 1;
		vend = line.p + line.n;
		while (v < vend && is_ows(*v))
			v++;
		while (vend > v && is_ows(vend[-1]))
			vend--;
		for (i = 0; v + i < vend; i++) {
			unsigned char ch = (unsigned char)v[i];

			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return refuse(req, 400);
		}
		h = &req->headers[req->nheaders++];
		h->name = (struct hp_slice){line.p, (size_t)(colon - line.p)};
		h->value = (struct hp_slice){v, (size_t)(vend - v)};

		if (slice_is(h->name, "content-length")) {
			r = parse_content_length(h->value, max_body, &cl_seen, &too_big, req);
			if (r < 0)
				return r;
		} else if (slice_is(h->name, "transfer-encoding")) {
			/* Only a lone "chunked" is understood; gzip and friends are refused. */
			if (te_seen || !slice_is(h->value, "chunked"))
				return refuse(req, 501);
			te_seen = 1;
			req->chunked = 1;
		} else if (slice_is(h->name, "expect")) {
			if (!slice_is(h->value, "100-continue"))
				return refuse(req, 417);
			req->expect_continue = req->minor >= 1;
		} else if (slice_is(h->name, "connection")) {
			parse_connection(h->value, &conn_close, &conn_keep);
		}
	}
	/* Both framings at once is how request smuggling starts: refuse rather than pick one. */
	if (cl_seen && te_seen)
		return refuse(req, 400);
	if (too_big)
		return refuse(req, 413);
	req->keep_alive = req->minor >= 1 ? !conn_close : conn_keep && !conn_close;
	return 0;
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Skips the CRLF (or bare LF) that ends a chunk's data. */
static int skip_crlf(const char *buf, size_t len, size_t *pos, struct hp_request *req)
{
	if (*pos == len)
		return -EAGAIN;
	if (buf[*pos] == '\n') {
		*pos += 1;
		return 0;
	}
	if (buf[*pos] != '\r')
		return refuse(req, 400);
	if (*pos + 1 == len)
		return -EAGAIN;
	if (buf[*pos + 1] != '\n')
		return refuse(req, 400);
	*pos += 2;
	return 0;
}

/* Skips the trailer section after the last chunk: lines up to an empty one. */
static int skip_trailers(const char *buf, size_t len, size_t *pos)
{
	for (;;) {
		const char *start = buf + *pos;
		const char *nl = memchr(start, '\n', len - *pos);
		size_t n;

		if (!nl)
			return -EAGAIN;
		n = (size_t)(nl - start);
		*pos += n + 1;
		if (n == 0 || (n == 1 && start[0] == '\r'))
			return 0;
	}
}

static int decode_chunked(const char *buf, size_t len, size_t pos, size_t max_body, char *scratch,
                          struct hp_request *req)
{
	size_t out = 0;
	int r;

	for (;;) {
		size_t size = 0, digits = 0;
		const char *nl;
		int v;

		while (pos < len && (v = hex_value(buf[pos])) >= 0) {
			size = size * 16 + (size_t)v;
			if (size > max_body)
				return refuse(req, 413);
			digits++;
			pos++;
		}
		if (pos == len)
			return -EAGAIN;
		if (digits == 0)
			return refuse(req, 400);
		if (buf[pos] != ';' && buf[pos] != '\r' && buf[pos] != '\n' && !is_ows(buf[pos]))
			return refuse(req, 400);
		/* Chunk extensions are allowed and ignored. */
		nl = memchr(buf + pos, '\n', len - pos);
		if (!nl)
			return len - pos > MAX_CHUNK_LINE ? refuse(req, 400) : -EAGAIN;
		pos = (size_t)(nl - buf) + 1;

		if (size == 0) {
			r = skip_trailers(buf, len, &pos);
			if (r < 0)
				return r;
			req->body = (struct hp_slice){scratch, out};
			req->consumed = pos;
			return 0;
		}
		if (out + size > max_body)
			return refuse(req, 413);
		if (len - pos < size)
			return -EAGAIN;
		memcpy(scratch + out, buf + pos, size);
		out += size;
		pos += size;
		r = skip_crlf(buf, len, &pos, req);
		if (r < 0)
			return r;
	}
}

int hp_parse(const char *buf, size_t len, size_t max_body, char *scratch, struct hp_request *req)
{
	size_t skip = 0, hdr_end, pos;
	int r;

	req->nheaders = 0;
	req->headers_done = 0;
	req->expect_continue = 0;
	req->keep_alive = 0;
	req->chunked = 0;
	req->content_length = 0;
	req->body = (struct hp_slice){buf, 0};
	req->consumed = 0;
	req->status = 0;

	/* Empty lines before a request are ignored, as RFC 9112 section 2.2 asks. */
	while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
		skip++;
	if (find_header_end(buf + skip, len - skip, &hdr_end) < 0)
		return len >= HP_MAX_HEADER_BYTES ? refuse(req, 431) : -EAGAIN;
	hdr_end += skip;
	if (hdr_end > HP_MAX_HEADER_BYTES)
		return refuse(req, 431);

	pos = skip;
	r = parse_request_line(next_line(buf, &pos, hdr_end), req);
	if (r < 0)
		return r;
	r = parse_headers(buf, pos, hdr_end, max_body, req);
	if (r < 0)
		return r;
	req->headers_done = 1;

	if (req->chunked)
		return decode_chunked(buf, len, hdr_end, max_body, scratch, req);
	if (len - hdr_end < req->content_length)
		return -EAGAIN;
	req->body = (struct hp_slice){buf + hdr_end, req->content_length};
	req->consumed = hdr_end + req->content_length;
	return 0;
}
