/*
 * target.c -- webhook-target: the HTTP server that tests and benchmarks deliver webhooks to.
 *
 * One thread runs one level-triggered epoll loop. Each turn:
 *   1. epoll_wait, at most until the earliest timer (a slow answer or a lingering close);
 *   2. for each ready descriptor: accept on a listener, stop on SIGTERM/SIGINT (a signalfd),
 *      or read, answer and write on a connection;
 *   3. fire the timers that are due.
 * A connection answers its requests in order, as HTTP/1.1 requires: while one request is
 * deferred (slow, hang) the pipelined requests behind it wait in the read buffer.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http_parse.h"
#include "recorder.h"
#include "route.h"

#define MAX_BODY  (64 * 1024)
#define RBUF_INIT (16 * 1024)
/* Room for the largest acceptable request, with chunked framing around the body. */
#define RBUF_MAX (256 * 1024)
/* Stop answering pipelined requests while this much output waits for a slow reader. */
#define WBUF_PAUSE (256 * 1024)
/* Output buffers that grew past this (a big /_control/requests) are given back once sent. */
#define WBUF_KEEP (1024 * 1024)
/* How long a closing connection keeps reading, so that unread input does not turn our FIN
 * into a reset that destroys the last answer before the client reads it. */
#define LINGER_US  (2 * 1000 * 1000)
#define MAX_EVENTS 256

static const char BODY_OK[] = "{\"ok\":true}";

enum kind { KIND_LISTENER, KIND_SIGNAL, KIND_CONN };

/* The first member of everything registered with epoll, so data.ptr says what woke up. */
struct handle {
	enum kind kind;
	int fd;
};

struct listener {
	struct handle h;
	uint16_t port;
};

enum conn_state {
	ST_READ,    /* reading and answering requests */
	ST_SLOW,    /* a request waits for its timer */
	ST_HANG,    /* a request is never answered */
	ST_CLOSING, /* writing what is left; then our side shuts */
	ST_LINGER,  /* shut; discarding input until the peer closes or the timer fires */
};

struct conn {
	struct handle h;
	struct conn *prev;
	struct conn *next;
	size_t port_index;
	uint16_t peer_port;
	enum conn_state state;
	uint32_t events; /* what epoll watches now */
	char *rbuf;
	size_t rpos;
	size_t rlen;
	size_t rcap;
	struct buf out;
	size_t wpos;
	int peer_eof;
	int sent_continue;
	/* Of the request being answered. */
	int keep_alive;
	int minor;
	int head;
	int64_t arrival_us;  /* wall clock of the last read */
	int64_t deadline_us; /* monotonic */
	size_t heap_index;   /* SIZE_MAX when no timer is set */
};

struct options {
	uint16_t *ports;
	size_t nports;
	int quiet;
	int no_record;
};

struct target {
	int epfd;
	struct listener *listeners;
	size_t nlisteners;
	struct handle sig;
	struct conn *conns;
	size_t nconns;
	/* A binary min-heap of the connections with a timer, by deadline. */
	struct conn **heap;
	size_t heap_len;
	size_t heap_cap;
	struct rec *rec;
	char *scratch;  /* a decoded chunked body */
	struct buf tmp; /* a control response body */
	int quiet;
	int stop;
};

static int64_t clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int slice_eq(struct hp_slice s, const char *word)
{
	return s.n == strlen(word) && memcmp(s.p, word, s.n) == 0;
}

/* ---- timers ---- */

static void heap_place(struct target *t, size_t i, struct conn *c)
{
	t->heap[i] = c;
	c->heap_index = i;
}

static void heap_up(struct target *t, size_t i)
{
	struct conn *c = t->heap[i];

	while (i > 0 && t->heap[(i - 1) / 2]->deadline_us > c->deadline_us) {
		heap_place(t, i, t->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_place(t, i, c);
}

static void heap_down(struct target *t, size_t i)
{
	struct conn *c = t->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= t->heap_len)
			break;
		if (child + 1 < t->heap_len &&
		    t->heap[child + 1]->deadline_us < t->heap[child]->deadline_us)
			child++;
		if (t->heap[child]->deadline_us >= c->deadline_us)
			break;
		heap_place(t, i, t->heap[child]);
		i = child;
	}
	heap_place(t, i, c);
}

static void timer_clear(struct target *t, struct conn *c)
{
	size_t i = c->heap_index;
	struct conn *last;

	if (i == SIZE_MAX)
		return;
	c->heap_index = SIZE_MAX;
	last = t->heap[--t->heap_len];
	if (last == c)
		return;
	heap_place(t, i, last);
	heap_down(t, i);
	heap_up(t, last->heap_index);
}

/* Cannot fail: conn_open reserved a heap slot for every connection. */
static void timer_set(struct target *t, struct conn *c, int64_t deadline_us)
{
	timer_clear(t, c);
	c->deadline_us = deadline_us;
	t->heap[t->heap_len] = c;
	c->heap_index = t->heap_len++;
	heap_up(t, c->heap_index);
}

/* The epoll_wait timeout in milliseconds, rounded up so a timer is never fired early. */
static int next_timeout(const struct target *t)
{
	int64_t left;

	if (t->heap_len == 0)
		return -1;
	left = t->heap[0]->deadline_us - clock_us(CLOCK_MONOTONIC);
	if (left <= 0)
		return 0;
	left = (left + 999) / 1000;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- answers ---- */

static const char *reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "Content Too Large";
	case 417:
		return "Expectation Failed";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Status";
	}
}

/*
 * Queues an answer to the current request. extra is whole header lines or NULL. An answer
 * without keep-alive moves the connection to ST_CLOSING.
 */
static void respond(struct conn *c, int status, const char *extra, const char *body,
                    size_t body_len)
{
	struct buf *o = &c->out;
	int has_body = status != 204 && status != 304;

	buf_append_str(o, "HTTP/1.1 ");
	buf_append_u64(o, (uint64_t)status);
	buf_append(o, " ", 1);
	buf_append_str(o, reason(status));
	buf_append_str(o, "\r\nServer: webhook-target\r\n");
	if (has_body) {
		buf_append_str(o, "Content-Type: application/json\r\nContent-Length: ");
		buf_append_u64(o, body_len);
		buf_append(o, "\r\n", 2);
	}
	if (extra)
		buf_append_str(o, extra);
	if (!c->keep_alive)
		buf_append_str(o, "Connection: close\r\n");
	else if (c->minor == 0)
		buf_append_str(o, "Connection: keep-alive\r\n");
	buf_append(o, "\r\n", 2);
	if (has_body && !c->head)
		buf_append(o, body, body_len);
	if (!c->keep_alive)
		c->state = ST_CLOSING;
}

static void respond_status(struct conn *c, int status, const char *extra)
{
	char body[32];
	int n;

	if (status == 200) {
		respond(c, 200, extra, BODY_OK, sizeof(BODY_OK) - 1);
		return;
	}
	n = snprintf(body, sizeof(body), "{\"status\":%d}", status);
	respond(c, status, extra, body, (size_t)n);
}

static void respond_error(struct conn *c, int status, const char *extra, const char *message)
{
	struct buf body = {0};

	buf_append_str(&body, "{\"error\":");
	buf_append_json_string(&body, message, strlen(message));
	buf_append(&body, "}", 1);
	if (buf_error(&body) < 0)
		c->out.err = -ENOMEM;
	else
		respond(c, status, extra, body.data, body.len);
	buf_free(&body);
}

/* Answers a request the parser refused, and closes: the rest of the stream cannot be trusted. */
static void refuse(struct target *t, struct conn *c, int status)
{
	c->keep_alive = 0;
	c->head = 0;
	c->minor = 1;
	respond_error(c, status, NULL, reason(status));
	rec_refuse(t->rec);
	c->rpos = c->rlen;
}

/* ---- control API ---- */

/* Finds the raw (not percent-decoded) value of name in a query string. */
static struct hp_slice query_param(struct hp_slice query, const char *name)
{
	size_t n = strlen(name), i = 0;
	struct hp_slice v = {NULL, 0};

	while (i < query.n) {
		const char *amp = memchr(query.p + i, '&', query.n - i);
		size_t end = amp ? (size_t)(amp - query.p) : query.n;

		if (end - i > n && memcmp(query.p + i, name, n) == 0 && query.p[i + n] == '=') {
			v.p = query.p + i + n + 1;
			v.n = end - i - n - 1;
			return v;
		}
		i = end + 1;
	}
	return v;
}

static void control(struct target *t, struct conn *c, const struct hp_request *req)
{
	struct hp_slice path = req->target, query = {NULL, 0};
	const char *q = memchr(path.p, '?', path.n);
	int get = slice_eq(req->method, "GET") || slice_eq(req->method, "HEAD");
	int post = slice_eq(req->method, "POST");

	if (q) {
		query.p = q + 1;
		query.n = (size_t)(path.p + path.n - query.p);
		path.n = (size_t)(q - path.p);
	}
	buf_clear(&t->tmp);
	if (slice_eq(path, "/_control/requests")) {
		if (!get)
			goto not_get;
		rec_render_requests(t->rec, query_param(query, "path"), &t->tmp);
	} else if (slice_eq(path, "/_control/stats")) {
		if (!get)
			goto not_get;
		rec_render_stats(t->rec, &t->tmp);
	} else if (slice_eq(path, "/_control/reset")) {
		if (!post) {
			respond_error(c, 405, "Allow: POST\r\n", "use POST");
			return;
		}
		rec_reset(t->rec);
		buf_append(&t->tmp, BODY_OK, sizeof(BODY_OK) - 1);
	} else {
		respond_error(c, 404, NULL, "unknown control endpoint");
		return;
	}
	if (buf_error(&t->tmp) < 0) {
		respond_error(c, 500, NULL, "out of memory");
		return;
	}
	respond(c, 200, NULL, t->tmp.data, t->tmp.len);
	if (t->tmp.cap > WBUF_KEEP)
		buf_free(&t->tmp);
	return;

not_get:
	respond_error(c, 405, "Allow: GET, HEAD\r\n", "use GET");
}

/* ---- behaviours ---- */

static void handle(struct target *t, struct conn *c, const struct hp_request *req)
{
	static const char control_prefix[] = "/_control";
	struct route rt;
	uint64_t hits;
	char extra[48];

	c->keep_alive = req->keep_alive;
	c->minor = req->minor;
	c->head = slice_eq(req->method, "HEAD");
	if (req->target.n >= sizeof(control_prefix) - 1 &&
	    memcmp(req->target.p, control_prefix, sizeof(control_prefix) - 1) == 0 &&
	    (req->target.n == sizeof(control_prefix) - 1 ||
	     req->target.p[sizeof(control_prefix) - 1] == '/' ||
	     req->target.p[sizeof(control_prefix) - 1] == '?')) {
		control(t, c, req);
		return;
	}

	route_parse(req->target.p, req->target.n, &rt);
	if (rec_add(t->rec, req, c->port_index, c->peer_port, c->arrival_us,
	            rt.kind == ROUTE_FAIL || rt.kind == ROUTE_RETRY_AFTER, &hits) < 0) {
		respond_error(c, 500, NULL, "out of memory");
		return;
	}
	rec_begin(t->rec);
	switch (rt.kind) {
	case ROUTE_STATUS:
		respond_status(c, rt.status, NULL);
		break;
	case ROUTE_FAIL:
		respond_status(c, hits <= rt.count ? 503 : 200, NULL);
		break;
	case ROUTE_RETRY_AFTER:
		if (hits <= rt.count) {
			snprintf(extra, sizeof(extra), "Retry-After: %llu\r\n",
			         (unsigned long long)rt.seconds);
			respond_status(c, 429, extra);
		} else {
			respond_status(c, 200, NULL);
		}
		break;
	case ROUTE_SLOW:
		c->state = ST_SLOW;
		timer_set(t, c, clock_us(CLOCK_MONOTONIC) + (int64_t)rt.ms * 1000);
		return;
	case ROUTE_HANG:
		c->state = ST_HANG;
		return;
	case ROUTE_CLOSE:
		c->keep_alive = 0;
		c->state = ST_CLOSING;
		break;
	case ROUTE_UNKNOWN:
		respond_error(c, 404, NULL, "unknown behaviour");
		break;
	case ROUTE_INVALID:
		respond_error(c, 400, NULL, "bad behaviour argument");
		break;
	}
	rec_end(t->rec);
}

/*
 * Answers the complete requests in the read buffer until one is deferred or the output backs
 * up. Returns 1 when it stopped because of the output, with requests possibly left.
 */
static int process_requests(struct target *t, struct conn *c)
{
	struct hp_request req;
	int r;

	while (c->state == ST_READ && c->rpos < c->rlen) {
		if (c->out.len - c->wpos >= WBUF_PAUSE)
			return 1;
		r = hp_parse(c->rbuf + c->rpos, c->rlen - c->rpos, MAX_BODY, t->scratch, &req);
		if (r == -EAGAIN && c->rlen - c->rpos >= RBUF_MAX) {
			req.status = req.headers_done ? 413 : 431;
			r = -EPROTO;
		}
		if (r == -EAGAIN) {
			/* The client waits for this before sending the body (RFC 9110 10.1.1). */
			if (req.headers_done && req.expect_continue && !c->sent_continue) {
				buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
				c->sent_continue = 1;
			}
			break;
		}
		if (r < 0) {
			refuse(t, c, req.status);
			break;
		}
		/* The request still points into rbuf, which handle() does not touch. */
		handle(t, c, &req);
		c->rpos += req.consumed;
		c->sent_continue = 0;
	}
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	return 0;
}

/* ---- connections ---- */

static void conn_close(struct target *t, struct conn *c)
{
	/* A deferred request whose connection goes away was abandoned. */
	if (c->state == ST_SLOW || c->state == ST_HANG)
		rec_end(t->rec);
	timer_clear(t, c);
	close(c->h.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	t->nconns--;
	free(c->rbuf);
	buf_free(&c->out);
	free(c);
}

static int conn_open(struct target *t, size_t port_index, int fd, uint16_t peer_port)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct conn *c;
	int one = 1;

	/* Every connection may hold a timer; reserving here lets timer_set never fail. */
	if (t->heap_cap < t->nconns + 1) {
		size_t cap = t->heap_cap ? t->heap_cap * 2 : 256;
		struct conn **heap = realloc(t->heap, cap * sizeof(*heap));

		if (!heap)
			return -ENOMEM;
		t->heap = heap;
		t->heap_cap = cap;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->h.kind = KIND_CONN;
	c->h.fd = fd;
	c->port_index = port_index;
	c->peer_port = peer_port;
	c->state = ST_READ;
	c->events = EPOLLIN;
	c->heap_index = SIZE_MAX;
	/* Answers are written whole; Nagle would only delay the next one on a kept-alive link. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.data.ptr = c;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		free(c);
		return err;
	}
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	t->nconns++;
	return 0;
}

/* Reads once; returns 0 (bytes or the end of the stream), -EAGAIN, -ENOBUFS when the buffer
 * is full, or another negative errno when the connection failed. */
static int conn_read(struct conn *c)
{
	ssize_t n;

	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->rlen == c->rcap) {
		size_t cap = c->rcap ? c->rcap * 2 : RBUF_INIT;
		char *p;

		if (c->rcap >= RBUF_MAX)
			return -ENOBUFS;
		if (cap > RBUF_MAX)
			cap = RBUF_MAX;
		p = realloc(c->rbuf, cap);
		if (!p)
			return -ENOMEM;
		c->rbuf = p;
		c->rcap = cap;
	}
	n = recv(c->h.fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
	if (n > 0) {
		c->rlen += (size_t)n;
		c->arrival_us = clock_us(CLOCK_REALTIME);
		return 0;
	}
	if (n == 0) {
		c->peer_eof = 1;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return -EAGAIN;
	return -errno;
}

/* Discards input while lingering; returns -EAGAIN while the peer is still there. */
static int conn_drain(struct conn *c)
{
	char sink[16 * 1024];
	ssize_t n = recv(c->h.fd, sink, sizeof(sink), 0);

	if (n > 0)
		return -EAGAIN;
	if (n == 0)
		return -EPIPE;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return -EAGAIN;
	return -errno;
}

/* Writes queued output; returns 0 when all is sent, -EAGAIN, or a negative errno. */
static int conn_flush(struct conn *c)
{
	while (c->wpos < c->out.len) {
		ssize_t n =
		    send(c->h.fd, c->out.data + c->wpos, c->out.len - c->wpos, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -EAGAIN;
			return -errno;
		}
		c->wpos += (size_t)n;
	}
	c->wpos = 0;
	if (c->out.cap > WBUF_KEEP)
		buf_free(&c->out);
	else
		buf_clear(&c->out);
	return 0;
}

/* Tells epoll what this connection waits for, touching it only on a change. */
static void conn_watch(struct target *t, struct conn *c)
{
	struct epoll_event ev = {0};
	uint32_t want = 0;

	switch (c->state) {
	case ST_READ:
	case ST_SLOW:
	case ST_HANG:
		/* A full buffer still needs to hear about the peer leaving. */
		if (!c->peer_eof)
			want = c->rlen - c->rpos < RBUF_MAX ? EPOLLIN : EPOLLRDHUP;
		break;
	case ST_LINGER:
		want = EPOLLIN;
		break;
	case ST_CLOSING:
		break;
	}
	if (c->wpos < c->out.len)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->h.fd, &ev) == 0)
		c->events = want;
}

/* Moves a connection on after anything happened to it: answer, write, close or linger. */
static void conn_advance(struct target *t, struct conn *c)
{
	int paused = 0, r = 0;

	for (;;) {
		if (c->state == ST_READ)
			paused = process_requests(t, c);
		if (buf_error(&c->out) < 0)
			goto close;
		if (c->peer_eof) {
			/* A client that leaves abandons what it waits for (its timeout, usually).
			 */
			if (c->state == ST_SLOW || c->state == ST_HANG)
				goto close;
			if (c->state == ST_READ && !paused)
				c->state = ST_CLOSING;
		}
		r = conn_flush(c);
		if (r < 0 && r != -EAGAIN)
			goto close;
		if (r == 0 && paused && c->state == ST_READ)
			continue;
		break;
	}
	if (r == 0 && c->state == ST_CLOSING) {
		shutdown(c->h.fd, SHUT_WR);
		if (c->peer_eof)
			goto close;
		c->state = ST_LINGER;
		timer_set(t, c, clock_us(CLOCK_MONOTONIC) + LINGER_US);
	}
	conn_watch(t, c);
	return;

close:
	conn_close(t, c);
}

static void on_conn(struct target *t, struct conn *c, uint32_t events)
{
	int r;

	if (c->state == ST_LINGER) {
		if (conn_drain(c) != -EAGAIN)
			conn_close(t, c);
		return;
	}
	if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && c->state != ST_CLOSING &&
	    !c->peer_eof) {
		r = conn_read(c);
		if (r == -ENOBUFS) {
			if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->peer_eof = 1;
		} else if (r < 0 && r != -EAGAIN) {
			conn_close(t, c);
			return;
		}
	}
	conn_advance(t, c);
}

static void on_listener(struct target *t, struct listener *l)
{
	int i;

	/* A bounded batch, so a flood of connections cannot starve the established ones. */
	for (i = 0; i < 64; i++) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		int fd =
		    accept4(l->h.fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED && !t->quiet)
				fprintf(stderr, "webhook-target: accept: %s\n", strerror(errno));
			return;
		}
		if (conn_open(t, (size_t)(l - t->listeners), fd, ntohs(peer.sin_port)) < 0)
			close(fd);
	}
}

static void on_signal(struct target *t)
{
	struct signalfd_siginfo si;

	if (read(t->sig.fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		t->stop = 1;
}

static void fire_timers(struct target *t)
{
	int64_t now = clock_us(CLOCK_MONOTONIC);

	while (t->heap_len > 0 && t->heap[0]->deadline_us <= now) {
		struct conn *c = t->heap[0];

		timer_clear(t, c);
		if (c->state == ST_LINGER) {
			conn_close(t, c);
		} else if (c->state == ST_SLOW) {
			c->state = ST_READ;
			respond_status(c, 200, NULL);
			rec_end(t->rec);
			conn_advance(t, c);
		}
	}
}

static int run(struct target *t)
{
	struct epoll_event events[MAX_EVENTS];
	int n, i;

	while (!t->stop) {
		n = epoll_wait(t->epfd, events, MAX_EVENTS, next_timeout(t));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* Handling an event closes at most its own connection, so later events stay valid.
		 */
		for (i = 0; i < n; i++) {
			struct handle *h = events[i].data.ptr;

			switch (h->kind) {
			case KIND_LISTENER:
				on_listener(t, (struct listener *)h);
				break;
			case KIND_SIGNAL:
				on_signal(t);
				break;
			case KIND_CONN:
				on_conn(t, (struct conn *)h, events[i].events);
				break;
			}
		}
		fire_timers(t);
	}
	return 0;
}

/* ---- setup ---- */

static int watch(struct target *t, struct handle *h)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = h};

	return epoll_ctl(t->epfd, EPOLL_CTL_ADD, h->fd, &ev) < 0 ? -errno : 0;
}

/* Listens on 127.0.0.1 only: the target must never be reachable from outside. */
static int listen_on(struct target *t, struct listener *l, uint16_t port, char *err, size_t errlen)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
	socklen_t len = sizeof(addr);
	int one = 1, r;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->h.kind = KIND_LISTENER;
	l->h.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->h.fd < 0)
		goto fail;
	if (setsockopt(l->h.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(l->h.fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		goto fail;
	if (listen(l->h.fd, 4096) < 0)
		goto fail;
	if (getsockname(l->h.fd, (struct sockaddr *)&addr, &len) < 0)
		goto fail;
	l->port = ntohs(addr.sin_port);
	r = watch(t, &l->h);
	if (r < 0) {
		errno = -r;
		goto fail;
	}
	return 0;

fail:
	r = -errno;
	snprintf(err, errlen, "cannot listen on 127.0.0.1:%u: %s", (unsigned)port, strerror(errno));
	return r;
}

static void target_fini(struct target *t)
{
	size_t i;

	while (t->conns)
		conn_close(t, t->conns);
	for (i = 0; i < t->nlisteners; i++)
		if (t->listeners[i].h.fd >= 0)
			close(t->listeners[i].h.fd);
	free(t->listeners);
	if (t->sig.fd >= 0)
		close(t->sig.fd);
	if (t->epfd >= 0)
		close(t->epfd);
	rec_destroy(t->rec);
	free(t->heap);
	free(t->scratch);
	buf_free(&t->tmp);
}

static int target_init(struct target *t, const struct options *opt, char *err, size_t errlen)
{
	uint16_t *ports = NULL;
	sigset_t mask;
	size_t i;
	int r;

	t->epfd = -1;
	t->sig.fd = -1;
	t->quiet = opt->quiet;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epfd < 0) {
		r = -errno;
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		return r;
	}
	t->scratch = malloc(MAX_BODY);
	t->listeners = calloc(opt->nports, sizeof(*t->listeners));
	ports = calloc(opt->nports, sizeof(*ports));
	if (!t->scratch || !t->listeners || !ports) {
		r = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < opt->nports; i++) {
		t->listeners[i].h.fd = -1;
		t->nlisteners++;
		r = listen_on(t, &t->listeners[i], opt->ports[i], err, errlen);
		if (r < 0)
			goto out;
		ports[i] = t->listeners[i].port;
	}
	r = rec_create(!opt->no_record, ports, opt->nports, &t->rec);
	if (r < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}

	/* Signals arrive as readable events, so shutdown happens between two events. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	t->sig.kind = KIND_SIGNAL;
	t->sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (t->sig.fd < 0 || (r = watch(t, &t->sig)) < 0) {
		r = -errno;
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		goto out;
	}
	r = 0;
out:
	free(ports);
	return r;
}

/* ---- options ---- */

static void usage(FILE *f)
{
	fputs("usage: webhook-target [--port N]... [--no-record] [--quiet]\n"
	      "  --port N     listen on 127.0.0.1:N (repeatable; 0 picks a free port; default 0);\n"
	      "               prints one line 'listening <port>' per port on stdout\n"
	      "  --no-record  keep counters only (for benchmarks), not the requests\n"
	      "  --quiet      print nothing on stderr but errors\n"
	      "paths: /ok/..  /status/NNN/..  /fail/K/..  /retry-after/S/K/..  /slow/MS/..\n"
	      "       /hang/..  /close/..\n"
	      "control: GET /_control/requests[?path=PREFIX]  GET /_control/stats\n"
	      "         POST /_control/reset\n",
	      f);
}

static int parse_port(const char *s, uint16_t *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < 0 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

static int add_port(struct options *opt, uint16_t port)
{
	uint16_t *p = realloc(opt->ports, (opt->nports + 1) * sizeof(*p));

	if (!p)
		return -ENOMEM;
	p[opt->nports++] = port;
	opt->ports = p;
	return 0;
}

/* Returns 0, 1 after --help, or -EINVAL with err filled. */
static int parse_options(int argc, char **argv, struct options *opt, char *err, size_t errlen)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *value = NULL;
		uint16_t port;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		if (strcmp(a, "--quiet") == 0) {
			opt->quiet = 1;
			continue;
		}
		if (strcmp(a, "--no-record") == 0) {
			opt->no_record = 1;
			continue;
		}
		if (strcmp(a, "--port") == 0 && i + 1 < argc)
			value = argv[++i];
		else if (strncmp(a, "--port=", 7) == 0)
			value = a + 7;
		if (!value) {
			snprintf(err, errlen, "unknown option '%s' (try --help)", a);
			return -EINVAL;
		}
		if (parse_port(value, &port) < 0) {
			snprintf(err, errlen, "--port expects a number from 0 to 65535, got '%s'",
			         value);
			return -EINVAL;
		}
		if (add_port(opt, port) < 0) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	if (opt->nports == 0 && add_port(opt, 0) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* Tests open many connections at once (hang, peak in flight); the soft limit may be low. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct options opt = {0};
	struct target t = {0};
	char err[256] = "";
	size_t i;
	int rc = 1, r;

	r = parse_options(argc, argv, &opt, err, sizeof(err));
	if (r == 1) {
		usage(stdout);
		rc = 0;
		goto out;
	}
	if (r < 0) {
		fprintf(stderr, "webhook-target: %s\n", err);
		rc = 2;
		goto out;
	}
	raise_fd_limit();
	if (target_init(&t, &opt, err, sizeof(err)) < 0) {
		fprintf(stderr, "webhook-target: %s\n", err);
		goto fini;
	}
	/* The harness reads these lines to learn the ports, so they go out at once. */
	for (i = 0; i < t.nlisteners; i++)
		printf("listening %u\n", (unsigned)t.listeners[i].port);
	fflush(stdout);
	if (!t.quiet)
		fprintf(stderr, "webhook-target: ready (%s)\n",
		        opt.no_record ? "counters only" : "recording requests");
	r = run(&t);
	if (r < 0) {
		fprintf(stderr, "webhook-target: epoll_wait: %s\n", strerror(-r));
		goto fini;
	}
	if (!t.quiet)
		fprintf(stderr, "webhook-target: stopping after %llu requests\n",
		        (unsigned long long)rec_total(t.rec));
	rc = 0;
fini:
	target_fini(&t);
out:
	free(opt.ports);
	return rc;
}
