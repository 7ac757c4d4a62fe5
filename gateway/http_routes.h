/* http_routes.h -- the HTTP API: routes, auth, bodies, and the NATS request behind each. */
#ifndef WEBHOOKS_HTTP_ROUTES_H
#define WEBHOOKS_HTTP_ROUTES_H

#include <microhttpd.h>

#include "gateway.h"

/* MHD's access handler; cls is the struct gw. */
enum MHD_Result gw_handle(void *cls, struct MHD_Connection *conn, const char *url,
                          const char *method, const char *version, const char *upload_data,
                          size_t *upload_data_size, void **req_cls);

/* MHD_OPTION_NOTIFY_COMPLETED: frees the request state. */
void gw_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                  enum MHD_RequestTerminationCode toe);

#endif
