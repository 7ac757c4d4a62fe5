/* prefault.h -- touch memory once, at start, so that the first event does not pay for it.
 *
 * A large calloc is fresh zero pages from the kernel: each is mapped on its first touch, a page
 * fault of several microseconds in a VM. Buffers of a few hundred kilobytes touched for the first
 * time by the first event's fan-out cost it milliseconds before its first delivery; touched at
 * start, nothing is lost later. */
#ifndef WEBHOOKS_PREFAULT_H
#define WEBHOOKS_PREFAULT_H

#include <stddef.h>

/* Write back one byte of each page of p[0..n) as it is: the write maps the page, and what the
 * memory holds is unchanged. */
static inline void prefault(void *p, size_t n)
{
	volatile char *c = p;
	for (size_t i = 0; i < n; i += 4096)
		c[i] = c[i];
	if (n > 0)
		c[n - 1] = c[n - 1];
}

#endif
