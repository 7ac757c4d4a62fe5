/* http_parse.h -- HTTP/1.x request parser over a caller's buffer, resumable by re-parsing. */
#ifndef TARGET_HTTP_PARSE_H
#define TARGET_HTTP_PARSE_H

#include <stddef.h>

/* Limits: a larger header section is refused with 431, a larger body with 413. */
#define HP_MAX_HEADERS      100
#define HP_MAX_HEADER_BYTES (16 * 1024)

struct hp_slice {
	const char *p;
	size_t n;
};

struct hp_header {
	struct hp_slice name;
	struct hp_slice value;
};

/* Every slice points into the parsed buffer, except a chunked body, which is in scratch. */
struct hp_request {
	struct hp_slice method;
	struct hp_slice target;
	int minor; /* HTTP/1.<minor> */
	struct hp_header headers[HP_MAX_HEADERS];
	size_t nheaders;
	int headers_done; /* the header section is complete (set on -EAGAIN too) */
	int expect_continue;
	int keep_alive;
	int chunked;
	size_t content_length;
	struct hp_slice body;
	size_t consumed; /* bytes of the buffer this request used, leading empty lines included */
	int status;      /* when refused: the status to answer with before closing */
};

/*
 * Parses the request at the start of buf[0..len). The parser keeps no state between calls:
 * after more bytes arrive the caller calls it again on the grown buffer, which costs little
 * because requests are small and usually arrive whole.
 * scratch must hold max_body bytes; a chunked body is decoded into it.
 * Returns 0 when a whole request is there (req->consumed bytes), -EAGAIN when more bytes are
 * needed, or -EPROTO when the request must be refused with req->status and the connection
 * closed (400, 413, 417, 431, 501, 505).
 */
int hp_parse(const char *buf, size_t len, size_t max_body, char *scratch, struct hp_request *req)
    __attribute__((warn_unused_result));

#endif
