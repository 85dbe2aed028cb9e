/*
 * stats: the run's counters, shared by the fetch thread, the workers and
 * the main thread's progress line and summary.  Plain atomics: every field
 * has one writer side and is read only for display, so relaxed ordering is
 * enough and no lock is taken on the hot path.
 */
#ifndef THUMBD_STATS_H
#define THUMBD_STATS_H

#include <stdatomic.h>

typedef struct stats {
	atomic_long urls;               /* URLs (or files) taken from the input */
	atomic_long duplicates;         /* repeated URLs, done once */
	atomic_long already_done;       /* skipped: thumbnails from an earlier run */
	atomic_long failed_before;      /* skipped: failed.tsv has their outcome */
	atomic_long retries;            /* attempts after the first */
	atomic_long abandoned;          /* transfers dropped by a stop, for the next run */
	atomic_long downloaded;         /* complete bodies handed to the queue */
	atomic_long images;             /* images fully thumbnailed */
	atomic_long thumbnails;         /* files written to outgoing/ */
	atomic_long failed;             /* lines in failed.tsv */
	atomic_long in_flight;          /* transfers running now */
	atomic_llong bytes;             /* body bytes received */
} stats;

#define STAT_ADD(s, field, n) atomic_fetch_add_explicit(&(s)->field, (n), memory_order_relaxed)
#define STAT_GET(s, field) atomic_load_explicit(&(s)->field, memory_order_relaxed)

#endif
