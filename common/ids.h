/* ids.h -- UUID identifiers for webhooks, events and deliveries. */
#ifndef WEBHOOKS_IDS_H
#define WEBHOOKS_IDS_H

#include <stdbool.h>
#include <stddef.h>

#define ID_LEN 36

/* Write a new random (version 4) UUID, lower-case and NUL-terminated, into out. */
void id_generate(char out[ID_LEN + 1]);

/* Write a new time-ordered UUID (the version 7 layout: milliseconds since the epoch, then a
 * counter, then random bits) into out. Ids made later by the same thread sort after earlier
 * ones, so records keyed by them are appended to a B-tree instead of scattered across it. */
void id_generate_ordered(char out[ID_LEN + 1]);

/* True when text is exactly a lower-case canonical UUID of ID_LEN characters. */
bool id_valid(const char *text);

#endif
