/*
 * const_server.c -- bench-const-server: libmicrohttpd answering {"ok":true} to everything.
 *
 * It is the ceiling for the gateway's throughput: the same HTTP library, threading and wrk
 * run, minus NATS and the service, measured on the same machine in the same benchmark.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

static const char BODY[] = "{\"ok\":true}";

/* Stands in *req_cls for a request whose first call has been seen. */
static int seen_marker;

/*
 * The usual MHD pattern: the first call only announces the request, calls with upload data
 * consume the body, and the last call (no data left) queues the answer. Answering on the first
 * call would make MHD close the connection of every POST instead of keeping it alive.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
	struct MHD_Response *response = cls;

	if (*req_cls == NULL) {
		*req_cls = &seen_marker;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	return MHD_queue_response(conn, MHD_HTTP_OK, response);
}

static void usage(FILE *f)
{
	fputs("usage: bench-const-server [--port N] [--threads N]\n"
	      "  --port N     listen on 127.0.0.1:N (default 0: a free port)\n"
	      "  --threads N  thread pool size (default: the number of online CPUs)\n"
	      "Prints 'listening <port>' on stdout when ready; stops on SIGTERM or SIGINT.\n",
	      f);
}

static int parse_uint(const char *s, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < 0 || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	struct MHD_Response *response = NULL;
	struct MHD_Daemon *daemon = NULL;
	const union MHD_DaemonInfo *info;
	long port = 0, threads = sysconf(_SC_NPROCESSORS_ONLN);
	sigset_t mask;
	int i, sig, rc = 1;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			if (parse_uint(argv[++i], 65535, &port) < 0) {
				fprintf(stderr, "bench-const-server: --port expects 0..65535\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			if (parse_uint(argv[++i], 1024, &threads) < 0 || threads == 0) {
				fprintf(stderr, "bench-const-server: --threads expects 1..1024\n");
				return 2;
			}
		} else {
			fprintf(stderr, "bench-const-server: unknown option '%s' (try --help)\n",
			        argv[i]);
			return 2;
		}
	}
	if (threads < 1)
		threads = 1;

	/* Block the stop signals before MHD starts its threads, so they inherit the mask and
	 * sigwait below is the only place the signals are taken. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* One shared, never-freed-until-exit response: its body is static. */
	response =
	    MHD_create_response_from_buffer(sizeof(BODY) - 1, (void *)BODY, MHD_RESPMEM_PERSISTENT);
	if (!response ||
	    MHD_add_response_header(response, "Content-Type", "application/json") != MHD_YES) {
		fprintf(stderr, "bench-const-server: cannot build the response\n");
		goto out;
	}

	addr.sin_port = htons((uint16_t)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	daemon = MHD_start_daemon(
	    MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
	    on_request, response, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned int)10000, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)4096,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_END);
	if (!daemon) {
		fprintf(stderr, "bench-const-server: cannot listen on 127.0.0.1:%ld\n", port);
		goto out;
	}
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	printf("listening %u\n", info ? (unsigned)info->port : (unsigned)port);
	fflush(stdout);

	sigwait(&mask, &sig);
	rc = 0;
out:
	if (daemon)
		MHD_stop_daemon(daemon);
	if (response)
		MHD_destroy_response(response);
	return rc;
}
