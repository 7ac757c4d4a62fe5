/* metrics.h -- lock-free counters, gauges and histograms, rendered in the Prometheus text
 * format 0.0.4.
 *
 * A metric is a static struct defined where it is counted, with its label values fixed at
 * compile time: every series (one combination of label values) is a cell of an array of
 * atomics, so that an update is one relaxed atomic add and never allocates or locks. A
 * series is addressed by its index: for labels a (n_a values) and b, index i_a * n_b + i_b.
 *
 *	static const char *const results[] = {"ok", "failed"};
 *	static _Atomic uint64_t cells[2];
 *	static struct metric tries = {
 *	    .kind = METRIC_COUNTER, .name = "x_tries_total", .help = "Tries, by result.",
 *	    .n_labels = 1, .labels = {{"result", results, 2}}, .cells = cells};
 *	metric_inc(&tries, 1);
 *
 * Histograms hold, per series, one count per bucket (not cumulative: rendering adds them up)
 * plus the +Inf bucket, and the sum of what was observed in microseconds; they are rendered
 * in seconds. Rendering reads each cell once, without stopping writers: a scrape during
 * updates may see a histogram's sum a moment apart from its buckets, never a torn value. */
#ifndef WEBHOOKS_METRICS_H
#define WEBHOOKS_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_LABELS 2
/* The Content-Type of the text format. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum metric_kind {
	METRIC_COUNTER,   /* only goes up; its name ends in _total */
	METRIC_GAUGE,     /* a signed value that is set or moves both ways */
	METRIC_HISTOGRAM, /* observations of a duration, in fixed buckets */
};

struct metric_label {
	const char *name;
	const char *const *values;
	size_t n;
};

struct metric {
	enum metric_kind kind;
	const char *name;
	const char *help;
	size_t n_labels;
	struct metric_label labels[METRICS_MAX_LABELS];
	/* Histograms: the buckets' upper bounds in microseconds, ascending, without +Inf. */
	const uint64_t *bounds_us;
	size_t n_bounds;
	/* Render only the series that have moved (for sparse label products). */
	bool skip_zero;
	/* Counters and gauges: one cell a series (a gauge's holds an int64_t's bits).
	 * Histograms: n_bounds + 1 cells a series, then sums_us holds one sum a series. */
	_Atomic uint64_t *cells;
	_Atomic uint64_t *sums_us;
};

/* Whether updates count: true unless metrics_set_enabled(false) was called. Read on every
 * update without synchronisation: set it only before the threads that update start. */
extern bool metrics_enabled;

/* Turn every update into a no-op, or back (a benchmark's switch: see BENCHMARKS.md). Call
 * before starting the threads that update metrics. */
void metrics_set_enabled(bool on);

/* How many series m has: the product of its labels' value counts (1 without labels). */
size_t metric_series(const struct metric *m);

/* Add n to series i of a counter. */
static inline void metric_add(struct metric *m, size_t i, uint64_t n)
{
	if (metrics_enabled)
		atomic_fetch_add_explicit(&m->cells[i], n, memory_order_relaxed);
}

static inline void metric_inc(struct metric *m, size_t i)
{
	metric_add(m, i, 1);
}

/* Set or move series i of a gauge. */
static inline void metric_set(struct metric *m, size_t i, int64_t v)
{
	if (metrics_enabled)
		atomic_store_explicit(&m->cells[i], (uint64_t)v, memory_order_relaxed);
}

static inline void metric_move(struct metric *m, size_t i, int64_t delta)
{
	/* Two's complement: adding the bits of a negative delta subtracts. */
	if (metrics_enabled)
		atomic_fetch_add_explicit(&m->cells[i], (uint64_t)delta, memory_order_relaxed);
}

/* Record one observation of us microseconds in series i of a histogram. */
void metric_observe_us(struct metric *m, size_t i, uint64_t us);

/* Read series i: a counter's or gauge's value (a gauge's as int64_t bits), or a histogram's
 * count. For tests and logs. */
uint64_t metric_value(const struct metric *m, size_t i);

/* A growable text buffer. Zero-initialise it; after a failed allocation it stays failed. */
struct metrics_buf {
	char *data; /* NUL-terminated once anything was written */
	size_t len, cap;
	bool failed;
};

/* Append printf-style text. */
void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The text (the caller frees it with free()), or NULL when an allocation failed; either way
 * b is empty afterwards. An empty buffer gives "". */
char *metrics_buf_take(struct metrics_buf *b);

/* Free what b holds. */
void metrics_buf_free(struct metrics_buf *b);

/* Append m: # HELP, # TYPE and its series (a histogram's cumulative _bucket lines with le
 * and +Inf, _sum in seconds and _count). */
void metrics_render(struct metrics_buf *b, const struct metric *m);

/* Append an unlabelled counter or gauge whose value is read at scrape time rather than kept
 * in cells: # HELP and # TYPE, then one sample unless has_value is false (the value could not
 * be read: the family is shown without a sample). */
void metrics_render_value(struct metrics_buf *b, enum metric_kind kind, const char *name,
                          const char *help, bool has_value, int64_t value);

#endif
