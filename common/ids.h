/* ids.h -- UUID identifiers for webhooks, events and deliveries. */
#ifndef WEBHOOKS_IDS_H
#define WEBHOOKS_IDS_H

#include <stdbool.h>
#include <stddef.h>

#define ID_LEN 36

/* An id packed into its 16 bytes (id_pack), for records that keep many ids. */
#define ID_BIN_LEN 16

/* Write a new random (version 4) UUID, lower-case and NUL-terminated, into out. */
void id_generate(char out[ID_LEN + 1]);

/* Write a new time-ordered UUID (the version 7 layout: milliseconds since the epoch, then a
 * counter, then random bits) into out. Ids made later by the same thread sort after earlier
 * ones, so records keyed by them are appended to a B-tree instead of scattered across it. */
void id_generate_ordered(char out[ID_LEN + 1]);

/* Write a time-ordered UUID greater than floor (a canonical UUID, or "" for none) into out:
 * when this machine's clock is behind the time in floor, the id takes floor's millisecond
 * plus one. So an id made after floor was read sorts after it whatever the clocks say. */
void id_generate_after(char out[ID_LEN + 1], const char *floor);

/* Write the id of the delivery of event_id to webhook_id into out: the same two ids always
 * give the same delivery id, so a work item taken again after a crash sends its deliveries
 * under the ids they had. The first 48 bits are those of the webhook id (deliveries of one
 * event sort by webhook, as the fan-out makes them); the other 74 are a hash of both ids. */
void id_derive(char out[ID_LEN + 1], const char *event_id, const char *webhook_id);

/* True when text is exactly a lower-case canonical UUID of ID_LEN characters. */
bool id_valid(const char *text);

/* Pack the canonical id text into out. Returns false, out unchanged, when text is not one. */
bool id_pack(const char *text, unsigned char out[ID_BIN_LEN]);

/* Write the packed id in as canonical lower-case text into out. */
void id_unpack(const unsigned char in[ID_BIN_LEN], char out[ID_LEN + 1]);

#endif
