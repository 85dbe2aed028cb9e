/*
 * metrics: the run's counters for people and for Prometheus.
 *
 * metrics_write() renders stats (include/stats.h) plus a few gauges only
 * main knows in the Prometheus text exposition format 0.0.4, for
 * node_exporter's textfile collector, and replaces the file atomically:
 * <dir>/.<base>.tmp, then rename(2).  metrics_summary() says the same
 * counters in one line for the end of a one-shot run.
 *
 * metrics_reason_class() maps a failed.tsv reason to its fail_class; the
 * table of reason texts lives in metrics.c, next to stats_fail().
 */
#ifndef THUMBD_METRICS_H
#define THUMBD_METRICS_H

#include <stddef.h>

#include "stats.h"

/* Values stats does not hold: main fills them in before each write.  The
 * daemon fields are written only when daemon is non-zero, so a zeroed
 * struct suits a one-shot run. */
typedef struct metrics_gauges {
	long queue_depth;       /* jobs waiting for a worker (jobq_len) */
	long workers_busy;      /* workers_busy() */
	long workers;           /* workers_running() */
	int daemon;             /* non-zero: the fields below are set */
	long lists_watched;     /* URL lists being followed */
	long entries_pending;   /* list entries taken but not finished yet */
	double uptime;          /* seconds since start (monotonic) */
	double start_time;      /* start, Unix time in seconds */
} metrics_gauges;

/* The class of a reason given to log_failure(); FAIL_OTHER when no entry
 * of the table matches (and for NULL). */
fail_class metrics_reason_class(const char *reason);

/* "http", "network", ...: the reason="..." label of the class. */
const char *metrics_class_name(fail_class c);

/* Write the metrics file at path (its directory must exist); g may be NULL
 * (no gauges but transfers in flight).  0, or -1 with a message naming the
 * path in err; on failure the old file, if any, is left as it was. */
int metrics_write(const char *path, const stats *st, const metrics_gauges *g, char *err,
                  size_t errlen);

/* One line for a person, e.g. "retries 3, 12.4 MB downloaded; failed: http 2,
 * network 1; download p50 0.21 s p90 0.40 s, resize p50 0.012 s", only the
 * non-zero parts; "" when there is nothing but zeros. */
void metrics_summary(const stats *st, char *buf, size_t len);

/* A byte count for a person: "1 byte", "640 bytes", "12.3 KB" (under 0.1
 * MB, where "0.0 MB" would hide them), "4.5 MB"; K and M are 1000 and 10^6. */
void metrics_bytes(long long bytes, char *buf, size_t len);

#endif
