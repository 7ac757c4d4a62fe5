/* metrics.c -- lock-free counters, gauges and histograms in the Prometheus text format (see
 * metrics.h). */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool metrics_enabled = true;

void metrics_set_enabled(bool on)
{
	metrics_enabled = on;
}

size_t metric_series(const struct metric *m)
{
	size_t n = 1;
	for (size_t l = 0; l < m->n_labels; l++)
		n *= m->labels[l].n;
	return n;
}

void metric_observe_us(struct metric *m, size_t i, uint64_t us)
{
	if (!metrics_enabled)
		return;
	/* A dozen bounds or so: a linear scan is as fast as anything here. */
	size_t b = 0;
	while (b < m->n_bounds && us > m->bounds_us[b])
		b++;
	atomic_fetch_add_explicit(&m->cells[i * (m->n_bounds + 1) + b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->sums_us[i], us, memory_order_relaxed);
}

uint64_t metric_value(const struct metric *m, size_t i)
{
	if (m->kind != METRIC_HISTOGRAM)
		return atomic_load_explicit(&m->cells[i], memory_order_relaxed);
	uint64_t n = 0;
	for (size_t b = 0; b <= m->n_bounds; b++)
		n += atomic_load_explicit(&m->cells[i * (m->n_bounds + 1) + b],
		                          memory_order_relaxed);
	return n;
}

/* --------------------------------------------------------------------------------------------
 * The buffer */

static void vappend(struct metrics_buf *b, const char *fmt, va_list ap)
{
	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_list copy;
		va_copy(copy, ap);
		int n = vsnprintf(b->data != NULL ? b->data + b->len : NULL, room, fmt, copy);
		va_end(copy);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap != 0 ? b->cap : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *grown = realloc(b->data, cap);
		if (grown == NULL) {
			b->failed = true;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
}

void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vappend(b, fmt, ap);
	va_end(ap);
}

char *metrics_buf_take(struct metrics_buf *b)
{
	char *out = b->failed ? NULL : b->data != NULL ? b->data : strdup("");
	if (b->failed)
		free(b->data);
	memset(b, 0, sizeof(*b));
	return out;
}

void metrics_buf_free(struct metrics_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* --------------------------------------------------------------------------------------------
 * Rendering */

/* text escaped as the format asks: backslash and newline everywhere, the double quote too in
 * a label value. */
static void escaped(struct metrics_buf *b, const char *text, bool quote)
{
	for (const char *p = text; *p != '\0'; p++) {
		size_t plain = strcspn(p, quote ? "\\\n\"" : "\\\n");
		if (plain > 0) {
			metrics_buf_printf(b, "%.*s", (int)plain, p);
			p += plain;
			if (*p == '\0')
				break;
		}
		metrics_buf_printf(b, "\\%c", *p == '\n' ? 'n' : *p);
	}
}

static void header(struct metrics_buf *b, enum metric_kind kind, const char *name, const char *help)
{
	static const char *const types[] = {[METRIC_COUNTER] = "counter",
	                                    [METRIC_GAUGE] = "gauge",
	                                    [METRIC_HISTOGRAM] = "histogram"};
	metrics_buf_printf(b, "# HELP %s ", name);
	escaped(b, help, false);
	metrics_buf_printf(b, "\n# TYPE %s %s\n", name, types[kind]);
}

/* Microseconds as seconds, exactly: "0.005", "1", "2.5". */
static void seconds(char *out, size_t outlen, uint64_t us)
{
	uint64_t frac = us % 1000000;
	if (frac == 0) {
		snprintf(out, outlen, "%" PRIu64, us / 1000000);
		return;
	}
	int digits = 6;
	while (frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	snprintf(out, outlen, "%" PRIu64 ".%0*" PRIu64, us / 1000000, digits, frac);
}

/* The {name="value",...} of series i, with le="..." last when le is not NULL; nothing at all
 * without labels or le. */
static void labels(struct metrics_buf *b, const struct metric *m, size_t i, const char *le)
{
	if (m->n_labels == 0 && le == NULL)
		return;
	size_t idx[METRICS_MAX_LABELS];
	for (size_t l = m->n_labels; l-- > 0;) {
		idx[l] = i % m->labels[l].n;
		i /= m->labels[l].n;
	}
	metrics_buf_printf(b, "{");
	for (size_t l = 0; l < m->n_labels; l++) {
		const char *v = m->labels[l].values[idx[l]];
		metrics_buf_printf(b, "%s%s=\"", l > 0 ? "," : "", m->labels[l].name);
		escaped(b, v != NULL ? v : "", true);
		metrics_buf_printf(b, "\"");
	}
	if (le != NULL)
		metrics_buf_printf(b, "%sle=\"%s\"", m->n_labels > 0 ? "," : "", le);
	metrics_buf_printf(b, "}");
}

static void render_histogram(struct metrics_buf *b, const struct metric *m, size_t i)
{
	size_t stride = m->n_bounds + 1;
	uint64_t total = 0;
	for (size_t k = 0; k < stride; k++)
		total += atomic_load_explicit(&m->cells[i * stride + k], memory_order_relaxed);
	if (m->skip_zero && total == 0)
		return;
	/* The lines come from a second read of each bucket, so that +Inf and _count always
	 * agree with the buckets whatever updates land meanwhile. */
	uint64_t cum = 0;
	char le[32];
	for (size_t k = 0; k < m->n_bounds; k++) {
		cum += atomic_load_explicit(&m->cells[i * stride + k], memory_order_relaxed);
		seconds(le, sizeof(le), m->bounds_us[k]);
		metrics_buf_printf(b, "%s_bucket", m->name);
		labels(b, m, i, le);
		metrics_buf_printf(b, " %" PRIu64 "\n", cum);
	}
	cum += atomic_load_explicit(&m->cells[i * stride + m->n_bounds], memory_order_relaxed);
	metrics_buf_printf(b, "%s_bucket", m->name);
	labels(b, m, i, "+Inf");
	metrics_buf_printf(b, " %" PRIu64 "\n", cum);
	char sum[32];
	seconds(sum, sizeof(sum), atomic_load_explicit(&m->sums_us[i], memory_order_relaxed));
	metrics_buf_printf(b, "%s_sum", m->name);
	labels(b, m, i, NULL);
	metrics_buf_printf(b, " %s\n%s_count", sum, m->name);
	labels(b, m, i, NULL);
	metrics_buf_printf(b, " %" PRIu64 "\n", cum);
}

void metrics_render(struct metrics_buf *b, const struct metric *m)
{
	header(b, m->kind, m->name, m->help);
	size_t n = metric_series(m);
	for (size_t i = 0; i < n; i++) {
		if (m->kind == METRIC_HISTOGRAM) {
			render_histogram(b, m, i);
			continue;
		}
		uint64_t v = atomic_load_explicit(&m->cells[i], memory_order_relaxed);
		if (m->skip_zero && v == 0)
			continue;
		metrics_buf_printf(b, "%s", m->name);
		labels(b, m, i, NULL);
		if (m->kind == METRIC_GAUGE)
			metrics_buf_printf(b, " %" PRId64 "\n", (int64_t)v);
		else
			metrics_buf_printf(b, " %" PRIu64 "\n", v);
	}
}

void metrics_render_value(struct metrics_buf *b, enum metric_kind kind, const char *name,
                          const char *help, bool has_value, int64_t value)
{
	header(b, kind, name, help);
	if (has_value)
		metrics_buf_printf(b, "%s %" PRId64 "\n", name, value);
}
