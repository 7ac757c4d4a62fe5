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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gateway.h"
#include "http_routes.h"
#include "log.h"
#include "metrics.h"
#include "natsconn.h"
#include "timeutil.h"
#include "url.h"

#define DRAIN_MS 4000
/* Open connections at most (fewer when the file descriptor limit is lower), and what is kept
 * of that limit for everything else. */
#define MAX_CONNECTIONS 10000
#define FD_RESERVE      64
/* libmicrohttpd's own limit sits this far above ours (accept_policy): its workers may each
 * accept one more before the count catches up. Within FD_RESERVE. */
#define CONN_SLACK 16
/* A connection that sends nothing for this long is closed; one that sends slowly is closed by
 * its read deadline (GATEWAY_READ_TIMEOUT_MS, readguard.h). */
#define IDLE_TIMEOUT_S 10
/* Refused connections are logged at most this often. */
#define WARN_EVERY_MS 10000
/* Buckets of the /ip rate limiter: 2.5 MiB (40 bytes each), whatever the number of callers. */
#define RATE_SLOTS (64 * 1024)

/* The admin token: ADMIN_TOKEN, or the contents of ADMIN_TOKEN_FILE (one trailing newline
 * dropped), exactly one of the two. A token given on the command line shows in ps: warn. */
static int load_token(struct gw_config *c, int argc, char **argv)
{
	static char from_file[4096];
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--admin-token") == 0 ||
		    strncmp(argv[i], "--admin-token=", 14) == 0)
			log_warn(
			    "--admin-token puts the token where ps shows it to every user of this "
			    "machine; use ADMIN_TOKEN_FILE or the ADMIN_TOKEN variable");
	if (c->admin_token[0] != '\0' && c->admin_token_file[0] != '\0') {
		fprintf(stderr, "webhooks-gateway: ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set; "
		                "give one\n");
		return -EINVAL;
	}
	if (c->admin_token_file[0] != '\0') {
		FILE *f = fopen(c->admin_token_file, "r");
		size_t n = f != NULL ? fread(from_file, 1, sizeof(from_file) - 1, f) : 0;
		bool whole = f != NULL && feof(f) && !ferror(f);
		if (f != NULL)
			fclose(f);
		from_file[n] = '\0';
		if (n > 0 && from_file[n - 1] == '\n')
			from_file[--n] = '\0';
		if (n > 0 && from_file[n - 1] == '\r')
			from_file[--n] = '\0';
		if (!whole || n == 0 || strlen(from_file) != n) {
			fprintf(
			    stderr,
			    "webhooks-gateway: ADMIN_TOKEN_FILE: expected a readable file holding "
			    "the token (one line, at most %zu bytes): %s\n",
			    sizeof(from_file) - 2, c->admin_token_file);
			return -EINVAL;
		}
		c->admin_token = from_file;
	}
	if (c->admin_token[0] == '\0') {
		fprintf(stderr,
		        "webhooks-gateway: ADMIN_TOKEN (or ADMIN_TOKEN_FILE) is required\n");
		return -EINVAL;
	}
	return 0;
}

static const char *check_rate(const char *v)
{
	double rate, burst;
	return ratelimit_parse(v, &rate, &burst) ? NULL : "N/s or N/m, optionally :BURST, or 0";
}

/* libmicrohttpd's messages are debug lines, except those saying that connections are being
 * refused or cannot be accepted: an operator must see those, but a flood must not flood the
 * log, so they are warnings at most once per WARN_EVERY_MS, with a count of the others. */
static struct log_limited refusals = LOG_LIMITED(WARN_EVERY_MS);

static void warn_refused(const char *what)
{
	log_warn_limited(&refusals, "refusing connections: %s", what);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	if (strstr(line, "connection limit") != NULL || strstr(line, "resource limit") != NULL ||
	    strstr(line, "Error accepting") != NULL)
		warn_refused(line);
	else
		log_debug("libmicrohttpd: %s", line);
}

/* The accept policy: refuse an address that already holds its share of the connections. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct gw *gw = cls;
	(void)addrlen;
	/* The global limit is kept here rather than by libmicrohttpd alone, which at its limit
	 * stops accepting: new clients would wait unseen in the listen backlog. Here they are
	 * closed at once, and the operator is told. */
	if (atomic_load(&gw->open_conns) >= gw->max_conns) {
		char what[160];
		snprintf(what, sizeof(what), "%u connections open, the most this gateway holds",
		         gw->max_conns);
		warn_refused(what);
		return MHD_NO;
	}
	if (gw->conns == NULL || connlimit_allows(gw->conns, addr))
		return MHD_YES;
	char ip[INET6_ADDRSTRLEN] = "?", what[160];
	if (addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, ip,
		          sizeof(ip));
	else if (addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr,
		          ip, sizeof(ip));
	snprintf(what, sizeof(what), "%s holds %ld connections (GATEWAY_MAX_CONNECTIONS_PER_IP)",
	         ip, gw->cfg.max_conns_per_ip);
	warn_refused(what);
	return MHD_NO;
}

/* A connection's start and end: counted for its address, and given its read deadline (the
 * socket context holds the guard's record of it). */
static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
	struct gw *gw = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&gw->open_conns, 1);
	else
		atomic_fetch_sub(&gw->open_conns, 1);
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *fd =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		*socket_context = fd != NULL ? readguard_opened(gw->guard, fd->connect_fd) : NULL;
	} else {
		readguard_closed(gw->guard, *socket_context);
		*socket_context = NULL;
	}
	if (gw->conns == NULL)
		return;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || ci->client_addr == NULL)
		return;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		connlimit_opened(gw->conns, ci->client_addr);
	else
		connlimit_closed(gw->conns, ci->client_addr);
}

/* Raise the soft limit on open files to the hard one, and keep the connections well below
 * it: NATS, the epoll descriptors and the log need some too, and accept() failing with
 * EMFILE would leave new clients waiting in the backlog instead of being refused. */
static unsigned connection_budget(void)
{
	struct rlimit rl;
	unsigned budget = MAX_CONNECTIONS;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 256;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
		struct rlimit raised = {want, rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl.rlim_cur = want;
	}
	rlim_t usable = rl.rlim_cur > 2 * FD_RESERVE ? rl.rlim_cur - FD_RESERVE : rl.rlim_cur / 2;
	if (usable < budget)
		budget = (unsigned)usable;
	return budget;
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
	/* No MHD_OPTION_LISTENING_ADDRESS_REUSE: it sets SO_REUSEPORT, and a second gateway on
	 * the same port would then start and share the connections silently. libmicrohttpd's
	 * default (SO_REUSEADDR) still allows a quick restart over TIME_WAIT connections. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int threads = cores > 0 ? (unsigned int)cores : 1;
	struct MHD_Daemon *d = MHD_start_daemon(
	    flags, 0, accept_policy, gw, gw_handle, gw, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, threads,
	    MHD_OPTION_NOTIFY_COMPLETED, gw_completed, gw, MHD_OPTION_NOTIFY_CONNECTION,
	    notify_connection, gw, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_LIMIT, gw->max_conns + CONN_SLACK, MHD_OPTION_END);
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
	     cfg_check_address, &c->bind},
	    {"GATEWAY_PORT", "--port", CFG_INT, "8080", "port to listen on (0 picks one)", 0, 65535,
	     NULL, &c->port},
	    {"ADMIN_TOKEN", "--admin-token", CFG_STRING, "",
	     "bearer token for the admin routes (this or ADMIN_TOKEN_FILE is required)", 0, 0, NULL,
	     &c->admin_token},
	    {"ADMIN_TOKEN_FILE", "--admin-token-file", CFG_STRING, "",
	     "read the admin token from this file (Docker secrets)", 0, 0, NULL,
	     &c->admin_token_file},
	    {"NATS_CREDS", "--nats-creds", CFG_STRING, "",
	     "a .creds file (user JWT and nkey seed) for NATS", 0, 0, natsconn_check_creds,
	     &c->nats_creds},
	    {"TRUST_PROXY", "--trust-proxy", CFG_BOOL, "0",
	     "take the client IP from X-Forwarded-For", 0, 0, NULL, &c->trust_proxy},
	    {"NATS_TIMEOUT_MS", "--nats-timeout-ms", CFG_INT, "5000",
	     "how long to wait for the service's reply", 1, 600000, NULL, &c->nats_timeout_ms},
	    {"LOG_LEVEL", "--log-level", CFG_LOG_LEVEL, "info", "error, warn, info or debug", 0, 0,
	     NULL, &c->log_level},
	    {"LOG_FORMAT", "--log-format", CFG_STRING, "text",
	     "text, or json for one JSON object a line", 0, 0, log_check_format, &c->log_format},
	    {"GATEWAY_MAX_CONNECTIONS_PER_IP", "--max-connections-per-ip", CFG_INT, "128",
	     "open connections one client address may hold (0: no limit; behind a proxy, set it "
	     "above what the proxy opens)",
	     0, 1000000, NULL, &c->max_conns_per_ip},
	    {"GATEWAY_READ_TIMEOUT_MS", "--read-timeout-ms", CFG_INT, "30000",
	     "a connection must send each whole request (headers and body) within this long of "
	     "its start or its previous response, or it is closed",
	     100, 3600000, NULL, &c->read_timeout_ms},
	    {"IP_RATE_LIMIT", "--ip-rate-limit", CFG_STRING, "10/s",
	     "/ip requests per caller address: N/s or N/m, with :BURST (default twice the rate "
	     "per second); 0 turns it off",
	     0, 0, check_rate, &c->ip_rate_limit},
	};
	int rc =
	    cfg_load(options, sizeof(options) / sizeof(options[0]), argc, argv, "webhooks-gateway",
	             "webhooks-gateway: the HTTP API of the webhook service; every route "
	             "becomes a NATS request to webhooks-svc.");
	if (rc != CFG_OK)
		return rc == CFG_HELP ? 0 : 2;
	log_set_level(c->log_level);
	(void)log_set_format(c->log_format); /* checked by cfg_load */
	char err[512];
	if (load_token(c, argc, argv) != 0)
		return 2;
	natsconn_set_creds(c->nats_creds);
	/* For make bench only: measures what counting costs (GET /metrics then shows zeros). */
	if (getenv("WEBHOOKS_BENCH_NO_METRICS") != NULL) {
		metrics_set_enabled(false);
		log_warn("WEBHOOKS_BENCH_NO_METRICS is set: metrics are not counted");
	}
	gw.token_len = strlen(c->admin_token);
	if (gw.token_len < 16)
		log_warn("ADMIN_TOKEN is shorter than 16 characters; use a long random token");

	double rate = 0, burst = 0;
	if (ratelimit_parse(c->ip_rate_limit, &rate, &burst) && rate > 0) {
		gw.limiter = ratelimit_create(rate, burst, RATE_SLOTS);
		if (gw.limiter == NULL) {
			log_error("out of memory for the rate limiter");
			return 1;
		}
	}

	gw.max_conns = connection_budget();
	if (c->max_conns_per_ip > 0) {
		gw.conns =
		    connlimit_create((unsigned)c->max_conns_per_ip, 2 * (size_t)gw.max_conns);
		if (gw.conns == NULL) {
			log_error("out of memory for the connection limit");
			return 1;
		}
	}

	sigset_t stop;
	cfg_block_stop_signals(&stop);
	/* glibc's init of a default mutex or condition only stores its attributes: it cannot
	 * fail. */
	(void)pthread_mutex_init(&gw.active_lock, NULL);
	(void)pthread_cond_init(&gw.idle, NULL);

	int exit_code = 1;
	/* After the signals are blocked: its thread inherits the mask. */
	gw.guard = readguard_create(c->read_timeout_ms);
	if (gw.guard == NULL) {
		log_error("out of resources for the read deadline's thread");
		goto out;
	}
	gw.bus = bus_create(c->nats_url, c->nats_timeout_ms, err, sizeof(err));
	if (gw.bus == NULL) {
		if (!natsconn_refused()) /* when it did, it said so already */
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
	char shown[1024];
	url_redact_list(c->nats_url, shown, sizeof(shown));
	log_info("listening on %s port %u, NATS %s; at most %u connections, %ld per address",
	         c->bind, info != NULL ? (unsigned int)info->port : (unsigned int)c->port, shown,
	         gw.max_conns, c->max_conns_per_ip);

	int sig = 0;
	sigwait(&stop, &sig);
	if (natsconn_refused())
		sig = SIGTERM; /* stopping because NATS refused us: exit 1 below */
	log_info("received %s; draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	exit_code = natsconn_refused() ? 1 : 0;

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
	ratelimit_destroy(gw.limiter);
	connlimit_destroy(gw.conns);
	readguard_destroy(gw.guard); /* MHD is stopped: every connection is closed */
	pthread_cond_destroy(&gw.idle);
	pthread_mutex_destroy(&gw.active_lock);
	nats_CloseAndWait(2000);
	if (exit_code == 0)
		log_info("stopped");
	return exit_code;
}
