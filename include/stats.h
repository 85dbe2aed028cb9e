/*
 * stats: the run's counters, shared by the fetch thread, the workers and
 * the main thread's progress line, summary and metrics file.  Plain
 * atomics: every field has one writer side and is read only for display,
 * so relaxed ordering is enough and no lock is taken on the hot path.
 *
 * Failures are counted twice: in `failed` and in one of a few fixed
 * classes (failed_by[]), chosen from the failed.tsv reason by
 * metrics_reason_class() (include/metrics.h).  Durations go into
 * histograms with fixed bucket bounds, the Prometheus way: one relaxed
 * increment per observation, quantiles estimated only when read.
 */
#ifndef THUMBD_STATS_H
#define THUMBD_STATS_H

#include <stdatomic.h>

/* Why a URL or file failed, coarsely; the reason text has the detail. */
typedef enum {
	FAIL_HTTP,              /* the server answered 4xx/5xx, or redirected in a loop */
	FAIL_NETWORK,           /* DNS, connect, TLS, timeout, stall, reset, truncated body */
	FAIL_TOO_LARGE,         /* max_bytes, max_pixels, dimension caps */
	FAIL_NOT_IMAGE,         /* not an image, or a format/variant thumbd does not read */
	FAIL_DECODE,            /* a supported format with corrupt or truncated data */
	FAIL_INVALID,           /* bad URL or list line, redirect to another scheme */
	FAIL_LOCAL,             /* this machine: write errors, disk full, memory, registry */
	FAIL_OTHER,
	FAIL_NCLASS
} fail_class;

/* Upper bounds (le) of the histogram buckets in seconds; one more bucket
 * after them is +Inf.  Shared by stats_observe() and the metrics writer. */
#define STATS_HIST_BOUNDS 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
#define STATS_HIST_N 14         /* the bounds above and +Inf */

typedef struct stats_hist {
	atomic_long bucket[STATS_HIST_N]; /* per bucket, not cumulative; the total is the count */
	atomic_llong sum_us;            /* sum of the observations, microseconds */
} stats_hist;

typedef struct stats {
	atomic_long urls;               /* URLs (or files) taken from the input */
	atomic_long duplicates;         /* repeated URLs, done once */
	atomic_long already_done;       /* skipped: thumbnails from an earlier run */
	atomic_long failed_before;      /* skipped: failed.tsv has their outcome */
	atomic_long retries;            /* attempts after the first */
	atomic_long host_overloads;     /* host windows halved (fetch.c) */
	atomic_long abandoned;          /* transfers dropped by a stop, for the next run */
	atomic_long downloaded;         /* complete bodies handed to the queue */
	atomic_long images;             /* images fully thumbnailed */
	atomic_long thumbnails;         /* files written to outgoing/ */
	atomic_long failed;             /* lines in failed.tsv; use stats_fail() */
	atomic_long failed_by[FAIL_NCLASS]; /* the same, by class */
	atomic_long in_flight;          /* transfers running now */
	atomic_llong bytes;             /* body bytes received */
	stats_hist download;            /* successful attempt: start to complete body */
	stats_hist resize;              /* thumb_make(): decode, resize, write all sizes */
} stats;

#define STAT_ADD(s, field, n) atomic_fetch_add_explicit(&(s)->field, (n), memory_order_relaxed)
#define STAT_GET(s, field) atomic_load_explicit(&(s)->field, memory_order_relaxed)

/* Count one failure: `failed` and the class of reason, which should be the
 * text given to log_failure() at the same spot.  Defined in metrics.c,
 * next to the table that classifies reasons. */
void stats_fail(stats *st, const char *reason);

/* Count one duration in h (negative counts as 0, over 1e9 s as 1e9 s). */
static inline void
stats_observe(stats_hist *h, double seconds)
{
	static const double le[] = { STATS_HIST_BOUNDS };
	int i = 0;

	_Static_assert(sizeof le / sizeof le[0] + 1 == STATS_HIST_N, "STATS_HIST_N");
	if (!(seconds > 0))
		seconds = 0;            /* also NaN */
	if (seconds > 1e9)
		seconds = 1e9;          /* keeps the conversion to microseconds defined */
	while (i < STATS_HIST_N - 1 && seconds > le[i])
		i++;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (long long)(seconds * 1e6 + 0.5), memory_order_relaxed);
}

#endif
