/* ids.c -- UUID identifiers for webhooks, events and deliveries. */
#include "ids.h"

#include <string.h>
#include <uuid/uuid.h>

void id_generate(char out[ID_LEN + 1])
{
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

bool id_valid(const char *text)
{
	if (text == NULL || strlen(text) != ID_LEN)
		return false;
	for (size_t i = 0; i < ID_LEN; i++) {
		char c = text[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}
