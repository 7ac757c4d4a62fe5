/* metrics_http.c -- the Prometheus endpoint of webhooks-svc (see metrics_http.h). One
 * libmicrohttpd thread polls the listening socket and the connections. A request is answered
 * once it has been read whole (a body, if any, is dropped), which keeps its connection open
 * for the next scrape. */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"

#define IDLE_TIMEOUT_S  10
#define MAX_CONNECTIONS 64

struct metrics_http {
	struct MHD_Daemon *daemon;
	metrics_http_render_fn render;
	void *ctx;
	unsigned port;
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned int status, char *body,
                              const char *ctype, const char *allow)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES ||
	    (allow != NULL &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
	static char seen; /* *req_cls after the first call: the headers were read */
	struct metrics_http *h = cls;
	(void)version;
	(void)upload_data;
	if (*req_cls == NULL) {
		*req_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	char *body;
	if (strcmp(url, "/metrics") != 0) {
		body = strdup("not found: the metrics are at /metrics\n");
		return body != NULL ? answer(conn, MHD_HTTP_NOT_FOUND, body, "text/plain", NULL)
		                    : MHD_NO;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		body = strdup("method not allowed: use GET\n");
		return body != NULL ? answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, body, "text/plain",
		                             "GET, HEAD")
		                    : MHD_NO;
	}
	body = h->render(h->ctx);
	if (body == NULL)
		return MHD_NO; /* out of memory: libmicrohttpd closes the connection */
	return answer(conn, MHD_HTTP_OK, body, METRICS_CONTENT_TYPE, NULL);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("metrics: libmicrohttpd: %s", line);
}

struct metrics_http *metrics_http_create(const char *bind, long port, metrics_http_render_fn render,
                                         void *ctx, char *err, size_t errlen)
{
	struct metrics_http *h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->render = render;
	h->ctx = ctx;
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	unsigned int flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	if (inet_pton(AF_INET, bind, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, bind, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		flags |= MHD_USE_IPv6;
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			flags |= MHD_USE_DUAL_STACK; /* "::" serves IPv4 clients too */
	} else {
		snprintf(err, errlen, "METRICS_BIND: not an IPv4 or IPv6 address: %s", bind);
		free(h);
		return NULL;
	}
	errno = 0;
	h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER,
	                             mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
	                             MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MAX_CONNECTIONS,
	                             MHD_OPTION_END);
	if (h->daemon == NULL) {
		snprintf(err, errlen, "cannot serve metrics on %s port %ld: %s", bind, port,
		         errno != 0 ? strerror(errno) : "libmicrohttpd failed");
		free(h);
		return NULL;
	}
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : (unsigned)port;
	return h;
}

unsigned metrics_http_port(const struct metrics_http *h)
{
	return h->port;
}

void metrics_http_destroy(struct metrics_http *h)
{
	if (h == NULL)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
