/* http_routes.c -- the HTTP API: routes, auth, bodies, and the NATS request behind each.
 *
 * MHD calls gw_handle several times per request: first with headers only (route, auth and
 * Content-Length are checked then, so a refused body is never read), then with body chunks,
 * then once with no data. At that point the NATS request is sent and the connection is
 * suspended; the reply (or its timeout) resumes it from a NATS or timer thread, and MHD calls
 * gw_handle once more to send the response. No thread ever waits for NATS. */
#include "http_routes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "envelope.h"
#include "gw_metrics.h"
#include "ids.h"
#include "metrics.h"
#include "route.h"
#include "timeutil.h"

/* What each route sends on NATS and answers on success. */
static const struct route_info {
	const char *subject;
	int ok_status;
	bool admin;
	bool has_body;
} routes[] = {
    [R_REGISTER] = {"webhooks.register", 201, true, true},
    [R_LIST] = {"webhooks.list", 200, true, false},
    [R_GET] = {"webhooks.get", 200, true, false},
    [R_UPDATE] = {"webhooks.update", 200, true, true},
    [R_DELETE] = {"webhooks.delete", 204, true, false},
    [R_TRIGGER] = {"webhooks.trigger", 202, false, false},
    [R_EVENT] = {"webhooks.event", 200, true, false},
    [R_DELIVERIES] = {"webhooks.deliveries", 200, true, false},
    [R_HEALTH] = {"webhooks.list", 200, false, false},
    [R_SECRET] = {"webhooks.secret", 200, true, false},
    [R_ROTATE] = {"webhooks.rotate", 200, true, true},
    [R_RETRY] = {"webhooks.retry", 202, true, false},
    [R_METRICS] = {NULL, 200, true, false}, /* answered here, not over NATS: see gw_handle */
};

struct request {
	struct gw *gw;
	struct MHD_Connection *conn;
	enum route_id route;
	char id[ID_LEN + 1];
	const char *bad_id; /* "webhook" or "event": the path's id is malformed */
	char ip[INET6_ADDRSTRLEN];
	char *body;
	size_t body_len;
	bool too_large;
	size_t discarded;
	int64_t retry_after; /* seconds, for a Retry-After header when > 0 */
	int64_t started_us;  /* its first byte, for webhooks_http_request_duration_seconds */

	/* The handshake with the reply callback: it resumes the connection only after the
	 * handler has suspended it. */
	pthread_mutex_t lock;
	bool suspended;
	bool replied;
	enum bus_result result;
	char *reply;
	size_t reply_len;
};

/* Queue the answer to req. Once the gateway is draining, every answer also closes its
 * connection, so that keep-alive clients go elsewhere. */
static enum MHD_Result send_body(struct request *req, int status, char *body, const char *allow)
{
	size_t len = body != NULL ? strlen(body) : 0;
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	/* A header that cannot be added (out of memory) would change what the answer means:
	 * then no answer, and libmicrohttpd closes the connection. */
	char secs[24];
	snprintf(secs, sizeof(secs), "%lld", (long long)req->retry_after);
	const char *ctype =
	    req->route == R_METRICS && status == 200 ? METRICS_CONTENT_TYPE : "application/json";
	if ((len > 0 &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES) ||
	    (allow != NULL &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) ||
	    (status == MHD_HTTP_UNAUTHORIZED &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer") != MHD_YES) ||
	    (req->retry_after > 0 &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, secs) != MHD_YES) ||
	    (atomic_load(&req->gw->draining) &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned int)status, r);
	MHD_destroy_response(r);
	/* Counted once queued, before the client can see the answer: a scrape that follows it
	 * always includes it. */
	if (ret == MHD_YES)
		gw_metrics_request(req->route, status, time_mono_us() - req->started_us);
	return ret;
}

static enum MHD_Result send_error(struct request *req, enum envelope_code code, const char *allow,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(struct request *req, enum envelope_code code, const char *allow,
                                  const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	return send_body(req, envelope_code_status(code),
	                 envelope_error_dump(code, false, "%s", message), allow);
}

/* The bearer token is compared in constant time for a given token length, so that response
 * timing tells an attacker nothing about how much of a guess was right. */
static bool authorized(const struct gw *gw, struct MHD_Connection *conn)
{
	const char *h =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	return route_bearer_ok(h, gw->cfg.admin_token, gw->token_len);
}

/* The caller's address: the TCP peer, or the left-most X-Forwarded-For entry when the
 * gateway is told it sits behind a proxy it trusts. */
static void client_ip(const struct gw *gw, struct MHD_Connection *conn, char *out, size_t outlen)
{
	out[0] = '\0';
	if (gw->cfg.trust_proxy) {
		const char *xff =
		    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For");
		if (xff != NULL) {
			if (route_forwarded_ip(xff, out, outlen))
				return;
			log_debug("ignoring malformed X-Forwarded-For '%.64s'", xff);
		}
	}
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || ci->client_addr == NULL)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
		          (socklen_t)outlen);
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		/* A v4 client on a dual-stack socket shows as ::ffff:a.b.c.d; report a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(a6))
			inet_ntop(AF_INET, &a6->s6_addr[12], out, (socklen_t)outlen);
		else
			inet_ntop(AF_INET6, a6, out, (socklen_t)outlen);
	}
}

static void on_reply(void *ctx, enum bus_result result, const char *data, size_t len)
{
	struct request *req = ctx;
	pthread_mutex_lock(&req->lock);
	req->result = result;
	if (result == BUS_REPLY) {
		req->reply = malloc(len + 1);
		if (req->reply != NULL) {
			memcpy(req->reply, data, len);
			req->reply[len] = '\0';
			req->reply_len = len;
		}
	}
	req->replied = true;
	bool resume = req->suspended;
	req->suspended = false;
	struct MHD_Connection *conn = req->conn;
	pthread_mutex_unlock(&req->lock);
	/* After the unlock: once resumed, the connection may be answered and req freed (in
	 * gw_completed) on another thread at once. Until then it stays suspended, so req lives. */
	if (resume)
		MHD_resume_connection(conn);
}

/* Build the NATS request for the route; on bad input send the error and return NULL. */
static json_t *build_request(struct request *req, enum MHD_Result *sent)
{
	struct MHD_Connection *conn = req->conn;
	json_t *msg = NULL;
	if (routes[req->route].has_body) {
		json_error_t jerr;
		if (req->body_len == 0 && req->route == R_ROTATE) {
			msg = json_object(); /* no body: the same as {} (a new random secret) */
		} else if (req->body_len == 0) {
			*sent = send_error(req, ERR_INVALID_JSON, NULL,
			                   "the request body is empty; send a JSON object");
			return NULL;
		} else {
			msg = json_loadb(req->body, req->body_len,
			                 JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
			if (msg == NULL) {
				*sent =
				    send_error(req, ERR_INVALID_JSON, NULL,
				               "the request body is not valid JSON: %s (line %d)",
				               jerr.text, jerr.line);
				return NULL;
			}
		}
		if (!json_is_object(msg)) {
			json_decref(msg);
			*sent = send_error(req, ERR_INVALID_ARGUMENT, NULL,
			                   "the request body must be a JSON object");
			return NULL;
		}
	} else {
		msg = json_object();
	}
	/* Each member set below fails only for want of memory: ok keeps the answer honest. */
	bool ok = true;
	if (req->id[0] != '\0')
		ok = json_object_set_new(msg, "id", json_string(req->id)) == 0;

	if (req->route == R_LIST || req->route == R_DELIVERIES || req->route == R_HEALTH) {
		const char *limit =
		    MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
		const char *after =
		    MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after");
		long lim = 0;
		if (req->route == R_HEALTH) {
			ok = ok && json_object_set_new(msg, "limit", json_integer(1)) == 0;
		} else if (limit != NULL && !route_parse_limit(limit, &lim)) {
			json_decref(msg);
			*sent = send_error(req, ERR_INVALID_ARGUMENT, NULL,
			                   "limit must be an integer from 1 to 1000");
			return NULL;
		} else if (limit != NULL) {
			ok = ok && json_object_set_new(msg, "limit", json_integer(lim)) == 0;
		}
		if (after != NULL && after[0] != '\0') {
			if (!route_valid_after(after)) {
				json_decref(msg);
				*sent = send_error(req, ERR_INVALID_ARGUMENT, NULL,
				                   "after must be the id of the last item of the "
				                   "previous page");
				return NULL;
			}
			ok = ok && json_object_set_new(msg, "after", json_string(after)) == 0;
		}
	}
	if (req->route == R_TRIGGER)
		ok = ok && json_object_set_new(msg, "ipAddress", json_string(req->ip)) == 0;
	if (!ok) {
		json_decref(msg);
		*sent = send_error(req, ERR_INTERNAL, NULL, "out of memory");
		return NULL;
	}
	return msg;
}

/* Turn the NATS outcome into the HTTP response. */
static enum MHD_Result respond(struct request *req)
{
	switch (req->result) {
	case BUS_REPLY:
		break;
	case BUS_TIMEOUT:
		if (req->route == R_HEALTH)
			return send_error(req, ERR_UNAVAILABLE, NULL,
			                  "the webhooks service did not answer in time");
		return send_error(req, ERR_TIMEOUT, NULL,
		                  "the webhooks service did not answer in time");
	case BUS_NO_RESPONDERS:
		return send_error(req, ERR_UNAVAILABLE, NULL,
		                  "the webhooks service is not running");
	case BUS_DISCONNECTED:
	case BUS_SHUTTING_DOWN:
		return send_error(req, ERR_UNAVAILABLE, NULL, "the message bus is unavailable");
	}
	if (req->reply == NULL)
		return send_error(req, ERR_INTERNAL, NULL, "out of memory");

	/* The service's replies are compact JSON and an error is the only reply that begins
	 * with the "error" member: a success passes through as it came, unparsed, unless the
	 * route adds to it. */
	static const char error_prefix[] = "{\"error\":";
	bool error = req->reply_len >= sizeof(error_prefix) - 1 &&
	             memcmp(req->reply, error_prefix, sizeof(error_prefix) - 1) == 0;
	if (!error && req->route != R_TRIGGER && req->route != R_HEALTH) {
		int ok = routes[req->route].ok_status;
		char *body = ok == 204 ? NULL : req->reply;
		if (body != NULL)
			req->reply = NULL; /* send_body takes it */
		return send_body(req, ok, body, NULL);
	}
	json_error_t jerr;
	json_t *reply = json_loadb(req->reply, req->reply_len, 0, &jerr);
	if (reply == NULL) {
		log_error("unparseable reply on %s: %s", routes[req->route].subject, jerr.text);
		return send_error(req, ERR_INTERNAL, NULL,
		                  "the webhooks service sent a malformed reply");
	}
	int status = envelope_reply_status(reply);
	char *body = NULL;
	if (req->route == R_HEALTH) {
		json_decref(reply);
		if (status != 0)
			return send_error(req, ERR_UNAVAILABLE, NULL,
			                  "the webhooks service cannot reach its store");
		return send_body(req, 200, strdup("{\"status\":\"ok\"}"), NULL);
	}
	if (status != 0) {
		/* The HTTP error body is {"error": {code, message}}: status is in the line, and a
		 * back-pressure refusal's retryAfter in the Retry-After header. */
		json_t *what = json_object_get(reply, "error");
		json_int_t after = json_integer_value(json_object_get(what, "retryAfter"));
		if (status == 429 && after > 0)
			req->retry_after = after < 3600 ? (int64_t)after : 3600;
		(void)json_object_del(what, "retryAfter"); /* -1 when absent: nothing to remove */
		(void)json_object_del(what, "status");
	} else {
		status = routes[req->route].ok_status;
		if (req->route == R_TRIGGER &&
		    json_object_set_new(reply, "ipAddress", json_string(req->ip)) != 0) {
			json_decref(reply);
			return send_error(req, ERR_INTERNAL, NULL, "out of memory");
		}
	}
	if (status != 204)
		body = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	return send_body(req, status, body, NULL);
}

static enum MHD_Result first_call(struct gw *gw, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **req_cls)
{
	struct request *req = calloc(1, sizeof(*req));
	if (req == NULL)
		return MHD_NO;
	req->gw = gw;
	req->conn = conn;
	req->started_us = time_mono_us();
	/* glibc's init of a default mutex only stores its attributes: it cannot fail. */
	(void)pthread_mutex_init(&req->lock, NULL);
	*req_cls = req;
	pthread_mutex_lock(&gw->active_lock);
	gw->active++;
	pthread_mutex_unlock(&gw->active_lock);
	if (atomic_load(&gw->draining))
		return send_error(req, ERR_UNAVAILABLE, NULL, "the gateway is shutting down");

	struct route_match m;
	req->route = route_match(url, method, &m);
	memcpy(req->id, m.id, sizeof(req->id));
	req->bad_id = m.bad_id;
	const char *allow = m.allow;
	if (req->route == R_NONE && !m.known)
		return send_error(req, ERR_NOT_FOUND, NULL, "no such route: %s %.200s", method,
		                  url);
	if (req->route == R_NONE)
		return send_error(req, ERR_METHOD_NOT_ALLOWED, allow,
		                  "%s is not allowed here; use %s", method, allow);
	if (routes[req->route].admin && !authorized(gw, conn))
		return send_error(req, ERR_UNAUTHORIZED, NULL,
		                  "missing or wrong Authorization: Bearer token");
	if (req->bad_id != NULL)
		return send_error(req, ERR_NOT_FOUND, NULL, "no %s with that id: %s", req->bad_id,
		                  "an id is a lower-case UUID");

	/* Refuse a declared oversize body before reading any of it. */
	const char *cl =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	long declared = 0;
	if (cl != NULL && cfg_parse_long(cl, &declared) && declared > GW_MAX_BODY)
		return send_error(req, ERR_PAYLOAD_TOO_LARGE, NULL,
		                  "the request body is larger than %d bytes", GW_MAX_BODY);
	if (req->route == R_TRIGGER) {
		client_ip(gw, conn, req->ip, sizeof(req->ip));
		if (gw->limiter != NULL &&
		    (req->retry_after = ratelimit_take(gw->limiter, req->ip, time_mono_us())) > 0) {
			atomic_fetch_add(&gw->rate_limited, 1);
			log_debug("/ip from %s rate-limited for %lld s", req->ip,
			          (long long)req->retry_after);
			return send_error(req, ERR_RATE_LIMITED, NULL,
			                  "too many requests from %s; try again in %lld s", req->ip,
			                  (long long)req->retry_after);
		}
	}
	return MHD_YES;
}

/* The read deadline's record of conn (its socket context), or NULL. */
static struct rg_conn *conn_guard(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci != NULL ? ci->socket_context : NULL;
}

enum MHD_Result gw_handle(void *cls, struct MHD_Connection *conn, const char *url,
                          const char *method, const char *version, const char *upload_data,
                          size_t *upload_data_size, void **req_cls)
{
	struct gw *gw = cls;
	struct request *req = *req_cls;
	if (req == NULL)
		return first_call(gw, conn, url, method, req_cls);

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->too_large || req->body_len + n > GW_MAX_BODY) {
			/* A chunked body (no Content-Length) grew past the limit. MHD cannot
			 * answer in the middle of an upload, so the rest is discarded unread
			 * and answered 413 at its end; a client that keeps sending far beyond
			 * the limit is cut off instead. */
			req->too_large = true;
			req->discarded += n;
			return req->discarded > GW_MAX_DISCARD ? MHD_NO : MHD_YES;
		}
		char *grown = realloc(req->body, req->body_len + n + 1);
		if (grown == NULL)
			return MHD_NO;
		memcpy(grown + req->body_len, upload_data, n);
		req->body = grown;
		req->body_len += n;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	}

	/* The request has been read whole: its read deadline is met. */
	readguard_read(gw->guard, conn_guard(conn));
	if (req->too_large)
		return send_error(req, ERR_PAYLOAD_TOO_LARGE, NULL,
		                  "the request body is larger than %d bytes", GW_MAX_BODY);
	if (req->route == R_METRICS) {
		char *text = gw_metrics_render(gw);
		if (text == NULL)
			return send_error(req, ERR_INTERNAL, NULL, "out of memory");
		return send_body(req, 200, text, NULL);
	}
	pthread_mutex_lock(&req->lock);
	bool replied = req->replied;
	pthread_mutex_unlock(&req->lock);
	if (replied)
		return respond(req);

	enum MHD_Result sent = MHD_NO;
	json_t *msg = build_request(req, &sent);
	if (msg == NULL)
		return sent;
	char *data = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (data == NULL)
		return send_error(req, ERR_INTERNAL, NULL, "out of memory");

	pthread_mutex_lock(&req->lock);
	int rc =
	    bus_request(gw->bus, routes[req->route].subject, data, strlen(data), on_reply, req);
	if (rc == 0) {
		MHD_suspend_connection(conn);
		req->suspended = true;
	}
	pthread_mutex_unlock(&req->lock);
	free(data);
	if (rc != 0)
		return send_error(req, ERR_UNAVAILABLE, NULL, "the message bus is unavailable");
	return MHD_YES;
}

void gw_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                  enum MHD_RequestTerminationCode toe)
{
	struct gw *gw = cls;
	struct request *req = *req_cls;
	/* The next request on this connection is due within the read deadline. */
	readguard_next(gw->guard, conn_guard(conn));
	if (req == NULL)
		return;
	*req_cls = NULL;
	pthread_mutex_destroy(&req->lock);
	free(req->body);
	free(req->reply);
	free(req);
	pthread_mutex_lock(&gw->active_lock);
	if (--gw->active == 0)
		pthread_cond_broadcast(&gw->idle);
	pthread_mutex_unlock(&gw->active_lock);
}
