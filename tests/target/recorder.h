/* recorder.h -- what webhook-target saw: request records, counters, and their JSON. */
#ifndef TARGET_RECORDER_H
#define TARGET_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http_parse.h"

struct rec;

/*
 * Creates a recorder for requests arriving on the listening ports given (copied). With
 * keep_records zero it keeps counters only, so memory stays flat under benchmark load.
 * Returns 0 and *out (free with rec_destroy), or -ENOMEM.
 */
int rec_create(int keep_records, const uint16_t *ports, size_t nports, struct rec **out)
    __attribute__((warn_unused_result));

/* Frees the recorder and every record; accepts NULL. */
void rec_destroy(struct rec *r);

/*
 * Counts one request that arrived complete at arrival_us (wall clock) on ports[port_index], and
 * copies it when records are kept. Control requests are not passed here.
 * *path_hits gets the number of requests to this exact target since the last reset, this one
 * included. Every target is counted when records are kept; otherwise only when count_path is
 * set (the behaviours that depend on it), since benchmarks send each request to a new path.
 * Returns 0 or -ENOMEM (then nothing was counted).
 */
int rec_add(struct rec *r, const struct hp_request *req, size_t port_index, uint16_t peer_port,
            int64_t arrival_us, int count_path, uint64_t *path_hits)
    __attribute__((warn_unused_result));

/* A request starts being handled; the peak of requests in flight follows. */
void rec_begin(struct rec *r);

/* A request begun with rec_begin was answered or abandoned. */
void rec_end(struct rec *r);

/* A malformed or oversized request was refused before it could be handled. */
void rec_refuse(struct rec *r);

/*
 * Forgets every record and counter. Requests still in flight stay counted in inFlight, and the
 * peak restarts from there.
 */
void rec_reset(struct rec *r);

/* Appends the JSON array of records whose target starts with prefix (all when prefix.n is 0). */
void rec_render_requests(const struct rec *r, struct hp_slice prefix, struct buf *out);

/* Appends the stats object. */
void rec_render_stats(const struct rec *r, struct buf *out);

/* The number of requests counted since the last reset. */
uint64_t rec_total(const struct rec *r);

#endif
