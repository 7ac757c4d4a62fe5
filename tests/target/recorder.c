/* recorder.c -- what webhook-target saw: request records, counters, and their JSON. */
#include "recorder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One request, with its strings packed in a single allocation. */
struct record {
	int64_t arrival_us;
	uint16_t port;
	uint16_t peer_port;
	size_t nheaders;
	size_t body_len;
	char *blob; /* method\0 target\0 (lower-case name\0 value\0)... body\0 */
};

struct path_slot {
	char *key; /* NULL when the slot is free */
	size_t len;
	uint64_t hash;
	uint64_t hits;
};

/* Open addressing with linear probing, kept at most half full. */
struct path_map {
	struct path_slot *slots;
	size_t cap;
	size_t used;
};

struct port_count {
	uint16_t port;
	uint64_t hits;
};

struct rec {
	int keep_records;
	struct record *records;
	size_t nrecords;
	size_t cap_records;
	struct path_map paths;
	struct port_count *ports;
	size_t nports;
	uint64_t total;
	uint64_t refused;
	uint64_t in_flight;
	uint64_t peak_in_flight;
	int64_t first_us;
	int64_t last_us;
};

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static struct path_slot *map_find(struct path_slot *slots, size_t cap, const char *key, size_t len,
                                  uint64_t hash)
{
	size_t i = (size_t)hash & (cap - 1);

	while (slots[i].key) {
		if (slots[i].hash == hash && slots[i].len == len &&
		    memcmp(slots[i].key, key, len) == 0)
			break;
		i = (i + 1) & (cap - 1);
	}
	return &slots[i];
}

static int map_grow(struct path_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64, i;
	struct path_slot *slots = calloc(cap, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (i = 0; i < m->cap; i++) {
		struct path_slot *s = &m->slots[i];

		if (s->key)
			*map_find(slots, cap, s->key, s->len, s->hash) = *s;
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	return 0;
}

/* Adds one hit to key; returns 0 and the new count, or -ENOMEM. */
static int map_hit(struct path_map *m, const char *key, size_t len, uint64_t *hits)
{
	uint64_t hash = hash_bytes(key, len);
	struct path_slot *s;

	if ((m->used + 1) * 2 > m->cap && map_grow(m) < 0)
		return -ENOMEM;
	s = map_find(m->slots, m->cap, key, len, hash);
	if (!s->key) {
		s->key = malloc(len + 1);
		if (!s->key)
			return -ENOMEM;
		memcpy(s->key, key, len);
		s->key[len] = '\0';
		s->len = len;
		s->hash = hash;
		s->hits = 0;
		m->used++;
	}
	*hits = ++s->hits;
	return 0;
}

static void map_clear(struct path_map *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		free(m->slots[i].key);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

static char *put(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = '\0';
	return dst + n + 1;
}

static int record_fill(struct record *rc, const struct hp_request *req)
{
	size_t size = req->method.n + req->target.n + req->body.n + 3, i, j;
	char *p;

	for (i = 0; i < req->nheaders; i++)
		size += req->headers[i].name.n + req->headers[i].value.n + 2;
	rc->blob = malloc(size);
	if (!rc->blob)
		return -ENOMEM;
	p = put(rc->blob, req->method.p, req->method.n);
	p = put(p, req->target.p, req->target.n);
	for (i = 0; i < req->nheaders; i++) {
		const struct hp_header *h = &req->headers[i];
		char *name = p;

		p = put(p, h->name.p, h->name.n);
		/* Names are case-insensitive; lower case makes them usable as JSON keys. */
		for (j = 0; j < h->name.n; j++)
			if (name[j] >= 'A' && name[j] <= 'Z')
				name[j] = (char)(name[j] - 'A' + 'a');
		p = put(p, h->value.p, h->value.n);
	}
	put(p, req->body.p, req->body.n);
	rc->nheaders = req->nheaders;
	rc->body_len = req->body.n;
	return 0;
}

int rec_create(int keep_records, const uint16_t *ports, size_t nports, struct rec **out)
{
	struct rec *r = calloc(1, sizeof(*r));
	size_t i;

	if (!r)
		return -ENOMEM;
	r->ports = calloc(nports ? nports : 1, sizeof(*r->ports));
	if (!r->ports)
		goto fail;
	for (i = 0; i < nports; i++)
		r->ports[i].port = ports[i];
	r->nports = nports;
	r->keep_records = keep_records;
	*out = r;
	return 0;

fail:
	free(r);
	return -ENOMEM;
}

static void free_records(struct rec *r)
{
	size_t i;

	for (i = 0; i < r->nrecords; i++)
		free(r->records[i].blob);
	free(r->records);
	r->records = NULL;
	r->nrecords = 0;
	r->cap_records = 0;
}

void rec_destroy(struct rec *r)
{
	if (!r)
		return;
	free_records(r);
	map_clear(&r->paths);
	free(r->ports);
	free(r);
}

int rec_add(struct rec *r, const struct hp_request *req, size_t port_index, uint16_t peer_port,
            int64_t arrival_us, int count_path, uint64_t *path_hits)
{
	struct record *rc;

	*path_hits = 0;
	if (r->keep_records) {
		if (r->nrecords == r->cap_records) {
			size_t cap = r->cap_records ? r->cap_records * 2 : 1024;
			struct record *p = realloc(r->records, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			r->records = p;
			r->cap_records = cap;
		}
		rc = &r->records[r->nrecords];
		if (record_fill(rc, req) < 0)
			return -ENOMEM;
		rc->arrival_us = arrival_us;
		rc->port = r->ports[port_index].port;
		rc->peer_port = peer_port;
		count_path = 1;
	}
	if (count_path && map_hit(&r->paths, req->target.p, req->target.n, path_hits) < 0) {
		if (r->keep_records)
			free(r->records[r->nrecords].blob);
		return -ENOMEM;
	}
	if (r->keep_records)
		r->nrecords++;
	if (r->total == 0)
		r->first_us = arrival_us;
	r->last_us = arrival_us;
	r->total++;
	r->ports[port_index].hits++;
	return 0;
}

void rec_begin(struct rec *r)
{
	r->in_flight++;
	if (r->in_flight > r->peak_in_flight)
		r->peak_in_flight = r->in_flight;
}

void rec_end(struct rec *r)
{
	r->in_flight--;
}

void rec_refuse(struct rec *r)
{
	r->refused++;
}

void rec_reset(struct rec *r)
{
	size_t i;

	free_records(r);
	map_clear(&r->paths);
	for (i = 0; i < r->nports; i++)
		r->ports[i].hits = 0;
	r->total = 0;
	r->refused = 0;
	r->peak_in_flight = r->in_flight;
	r->first_us = 0;
	r->last_us = 0;
}

uint64_t rec_total(const struct rec *r)
{
	return r->total;
}

static void render_headers(const struct record *rc, const char *first, struct buf *out)
{
	const char *h = first, *v, *other;
	size_t i, j, emitted = 0;

	buf_append(out, "{", 1);
	for (i = 0; i < rc->nheaders; i++) {
		size_t name_len = strlen(h);
		int repeated = 0;

		v = h + name_len + 1;
		/* A repeated name becomes one key whose values are joined, as RFC 9110 5.3 allows.
		 */
		for (other = first, j = 0; j < i && !repeated; j++) {
			repeated = strcmp(other, h) == 0;
			other += strlen(other) + 1;
			other += strlen(other) + 1;
		}
		if (!repeated) {
			const char *later = v + strlen(v) + 1;

			if (emitted++)
				buf_append(out, ",", 1);
			buf_append_json_string(out, h, name_len);
			buf_append(out, ":", 1);
			if (i + 1 == rc->nheaders) {
				buf_append_json_string(out, v, strlen(v));
			} else {
				struct buf joined = {0};

				buf_append_str(&joined, v);
				for (j = i + 1; j < rc->nheaders; j++) {
					const char *lv = later + strlen(later) + 1;

					if (strcmp(later, h) == 0) {
						buf_append(&joined, ", ", 2);
						buf_append_str(&joined, lv);
					}
					later = lv + strlen(lv) + 1;
				}
				if (buf_error(&joined) < 0)
					out->err = -ENOMEM;
				else
					buf_append_json_string(out, joined.data ? joined.data : "",
					                       joined.len);
				buf_free(&joined);
			}
		}
		h = v + strlen(v) + 1;
	}
	buf_append(out, "}", 1);
}

void rec_render_requests(const struct rec *r, struct hp_slice prefix, struct buf *out)
{
	size_t i, n = 0;

	buf_append(out, "[", 1);
	for (i = 0; i < r->nrecords; i++) {
		const struct record *rc = &r->records[i];
		const char *method = rc->blob;
		const char *target = method + strlen(method) + 1;
		const char *headers = target + strlen(target) + 1;
		const char *body = headers;
		size_t j, target_len = strlen(target);

		if (prefix.n && (target_len < prefix.n || memcmp(target, prefix.p, prefix.n) != 0))
			continue;
		for (j = 0; j < rc->nheaders * 2; j++)
			body += strlen(body) + 1;
		if (n++)
			buf_append(out, ",", 1);
		buf_append_str(out, "{\"arrivalUs\":");
		buf_append_i64(out, rc->arrival_us);
		buf_append_str(out, ",\"method\":");
		buf_append_json_string(out, method, strlen(method));
		buf_append_str(out, ",\"path\":");
		buf_append_json_string(out, target, target_len);
		buf_append_str(out, ",\"port\":");
		buf_append_u64(out, rc->port);
		buf_append_str(out, ",\"peerPort\":");
		buf_append_u64(out, rc->peer_port);
		buf_append_str(out, ",\"headers\":");
		render_headers(rc, headers, out);
		buf_append_str(out, ",\"body\":");
		buf_append_json_string(out, body, rc->body_len);
		buf_append(out, "}", 1);
	}
	buf_append(out, "]", 1);
}

static void render_time(struct buf *out, const char *key, int64_t us, int have)
{
	buf_append_str(out, key);
	if (have)
		buf_append_i64(out, us);
	else
		buf_append_str(out, "null");
}

void rec_render_stats(const struct rec *r, struct buf *out)
{
	size_t i, n = 0;

	buf_append_str(out, "{\"total\":");
	buf_append_u64(out, r->total);
	buf_append_str(out, ",\"inFlight\":");
	buf_append_u64(out, r->in_flight);
	buf_append_str(out, ",\"peakInFlight\":");
	buf_append_u64(out, r->peak_in_flight);
	buf_append_str(out, ",\"refused\":");
	buf_append_u64(out, r->refused);
	buf_append_str(out, r->keep_records ? ",\"recording\":true" : ",\"recording\":false");
	buf_append_str(out, ",\"records\":");
	buf_append_u64(out, r->nrecords);
	render_time(out, ",\"firstArrivalUs\":", r->first_us, r->total > 0);
	render_time(out, ",\"lastArrivalUs\":", r->last_us, r->total > 0);
	buf_append_str(out, ",\"byPort\":{");
	for (i = 0; i < r->nports; i++) {
		if (i)
			buf_append(out, ",", 1);
		buf_append(out, "\"", 1);
		buf_append_u64(out, r->ports[i].port);
		buf_append(out, "\":", 2);
		buf_append_u64(out, r->ports[i].hits);
	}
	buf_append_str(out, "},\"byPath\":{");
	for (i = 0; i < r->paths.cap; i++) {
		const struct path_slot *s = &r->paths.slots[i];

		if (!s->key)
			continue;
		if (n++)
			buf_append(out, ",", 1);
		buf_append_json_string(out, s->key, s->len);
		buf_append(out, ":", 1);
		buf_append_u64(out, s->hits);
	}
	buf_append_str(out, "}}");
}
