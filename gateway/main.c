/* main.c -- webhooks-gateway: the HTTP API in front of the webhooks.* NATS subjects.
 *
 * The main thread does no request work. Its loop:
 *   1. parse the configuration (a bad value stops the process with one line);
 *   2. block SIGTERM/SIGINT in every thread, so that only the main thread sees them;
 *   3. connect to NATS (retrying forever in the background) and start libmicrohttpd with
 *      one epoll event loop per core; each loop accepts, reads, routes, sends the NATS
 *      request, suspends the connection and goes on, and resumes it when the reply comes;
 *   4. wait in sigwait() until SIGTERM or SIGINT;
 *   5. drain: answer new requests 503 (closing their connections), wait up to DRAIN_MS for
 *      requests in progress, fail what is still waiting on NATS with 503, stop MHD, close
 *      NATS, exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gateway.h"
#include "http_routes.h"
#include "log.h"
#include "natsconn.h"
#include "timeutil.h"

#define DRAIN_MS 4000

static const char *check_bind(const char *v)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1)
		return NULL;
	return "an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1 or ::";
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("libmicrohttpd: %s", line);
}

static struct MHD_Daemon *start_http(struct gw *gw, char *err, size_t errlen)
{
	struct sockaddr_storage ss = {0};
	unsigned int flags =
	    MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, gw->cfg.bind, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)gw->cfg.port);
	} else {
		inet_pton(AF_INET6, gw->cfg.bind, &sin6->sin6_addr);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)gw->cfg.port);
		flags |= MHD_USE_IPv6;
		/* "::" serves IPv4 clients too. */
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			flags |= MHD_USE_DUAL_STACK;
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int threads = cores > 0 ? (unsigned int)cores : 1;
	struct MHD_Daemon *d = MHD_start_daemon(
	    flags, 0, NULL, NULL, gw_handle, gw, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, threads,
	    MHD_OPTION_NOTIFY_COMPLETED, gw_completed, gw, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)10000,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1, MHD_OPTION_END);
	if (d == NULL)
		snprintf(err, errlen, "cannot listen on %s port %ld: %s", gw->cfg.bind,
		         gw->cfg.port, errno != 0 ? strerror(errno) : "libmicrohttpd failed");
	return d;
}

/* Wait until no request is in progress or the deadline passes. */
static void wait_idle(struct gw *gw, int64_t ms)
{
	struct timespec ts = time_deadline(CLOCK_REALTIME, ms);
	pthread_mutex_lock(&gw->active_lock);
	while (gw->active > 0) {
		if (pthread_cond_timedwait(&gw->idle, &gw->active_lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&gw->active_lock);
}

int main(int argc, char **argv)
{
	struct gw gw = {0};
	struct gw_config *c = &gw.cfg;
	const struct cfg_option options[] = {
	    {"NATS_URL", "--nats-url", CFG_STRING, "nats://127.0.0.1:4222", "NATS server URL", 0, 0,
	     natsconn_check_url, &c->nats_url},
	    {"GATEWAY_BIND", "--bind", CFG_STRING, "0.0.0.0", "address to listen on", 0, 0,
	     check_bind, &c->bind},
	    {"GATEWAY_PORT", "--port", CFG_INT, "8080", "port to listen on (0 picks one)", 0, 65535,
	     NULL, &c->port},
	    {"ADMIN_TOKEN", "--admin-token", CFG_STRING, NULL, "bearer token for the admin routes",
	     0, 0, NULL, &c->admin_token},
	    {"TRUST_PROXY", "--trust-proxy", CFG_BOOL, "0",
	     "take the client IP from X-Forwarded-For", 0, 0, NULL, &c->trust_proxy},
	    {"NATS_TIMEOUT_MS", "--nats-timeout-ms", CFG_INT, "5000",
	     "how long to wait for the service's reply", 1, 600000, NULL, &c->nats_timeout_ms},
	    {"LOG_LEVEL", "--log-level", CFG_LOG_LEVEL, "info", "error, warn, info or debug", 0, 0,
	     NULL, &c->log_level},
	};
	int rc =
	    cfg_load(options, sizeof(options) / sizeof(options[0]), argc, argv, "webhooks-gateway",
	             "webhooks-gateway: the HTTP API of the webhook service; every route "
	             "becomes a NATS request to webhooks-svc.");
	if (rc != CFG_OK)
		return rc == CFG_HELP ? 0 : 2;
	log_set_level(c->log_level);
	char err[512];
	gw.token_len = strlen(c->admin_token);
	if (gw.token_len < 16)
		log_warn("ADMIN_TOKEN is shorter than 16 characters; use a long random token");

	sigset_t stop;
	cfg_block_stop_signals(&stop);
	pthread_mutex_init(&gw.active_lock, NULL);
	pthread_cond_init(&gw.idle, NULL);

	int exit_code = 1;
	gw.bus = bus_create(c->nats_url, c->nats_timeout_ms, err, sizeof(err));
	if (gw.bus == NULL) {
		log_error("%s", err);
		goto out;
	}
	gw.daemon = start_http(&gw, err, sizeof(err));
	if (gw.daemon == NULL) {
		log_error("%s", err);
		goto out;
	}
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(gw.daemon, MHD_DAEMON_INFO_BIND_PORT);
	log_info("listening on %s port %u, NATS %s", c->bind,
	         info != NULL ? (unsigned int)info->port : (unsigned int)c->port, c->nats_url);

	int sig = 0;
	sigwait(&stop, &sig);
	log_info("received %s; draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	exit_code = 0;

	/* Not MHD_quiesce_daemon: on an epoll thread pool, libmicrohttpd 0.9.75 races its own
	 * workers removing the listen socket and aborts the process now and then ("Failed to
	 * remove listen FD from epoll set"). The listen socket stays open until MHD stops;
	 * what arrives meanwhile is answered 503 on a connection that then closes. */
	atomic_store(&gw.draining, true);
	wait_idle(&gw, DRAIN_MS);
out:
	/* Whatever still waits on NATS is answered 503 now; MHD can then stop cleanly. The bus
	 * itself is freed only after MHD's threads are gone. */
	bus_shutdown(gw.bus);
	if (gw.daemon != NULL) {
		wait_idle(&gw, 500);
		MHD_stop_daemon(gw.daemon);
	}
	bus_destroy(gw.bus);
	pthread_cond_destroy(&gw.idle);
	pthread_mutex_destroy(&gw.active_lock);
	nats_CloseAndWait(2000);
	if (exit_code == 0)
		log_info("stopped");
	return exit_code;
}
