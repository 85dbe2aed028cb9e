/*
 * fetch: the network side.  One thread runs a libcurl multi loop that reads
 * the URL lists lazily, keeps up to download.connections transfers in flight
 * (at most download.per_host per host name and port), streams each body into
 * incoming/.thumbd-part.<name>, renames it to incoming/.thumbd.<name> once
 * complete (name.h) and hands a job to the resize workers through the jobq.  Transient failures
 * are retried with backoff; every URL read ends in the queue, as a
 * failed.tsv record, or skipped because an earlier run finished it.
 */
#ifndef THUMBD_FETCH_H
#define THUMBD_FETCH_H

#include <stddef.h>

#include "config.h"
#include "jobq.h"
#include "name.h"
#include "state.h"
#include "stats.h"
#include "urllist.h"
#include "watch.h"

typedef struct fetch fetch;

/* Borrowed pointers must outlive the fetch.  Either lists (a one-shot run:
 * fetch_run returns when they are done) or w (the daemon: it runs until
 * fetch_stop).  NULL + err on failure. */
fetch *fetch_new(const cfg *c, urllist *lists, watch *w, names *reg, state *done, jobq *q,
                 stats *st, char *err, size_t errlen);
void fetch_free(fetch *f);                      /* accepts NULL */

/* Run the loop in the calling thread until every list is read and every
 * transfer has ended, or until fetch_stop().  0 / -1 (curl itself failed). */
int fetch_run(fetch *f);

/* From any thread (not from a signal handler): stop reading lists, abandon
 * transfers in flight and waiting retries (not recorded: they are not
 * outcomes, the next run does them), return from fetch_run. */
void fetch_stop(fetch *f);

/* From any thread: re-check whether new transfers can start (queue space
 * freed).  Shaped as a jobq pop hook. */
void fetch_wakeup(void *f);

/* From any thread: transfers started from now on use c (a reload); the old
 * config must stay alive while fetch_uses() says the loop still reads it. */
void fetch_set_config(fetch *f, const cfg *c);
/* 1 while the loop may still read c (call after fetch_set_config). */
int fetch_uses(fetch *f, const cfg *c);

/* From any thread: the loop's iteration count, and a nudge so that a live
 * loop shows a new count by the next call (the watchdog's health check). */
long fetch_heartbeat(fetch *f);

/* From any thread: the watch's counts (watch_counts) as of the loop's
 * last round; the watch itself is the fetch thread's alone. */
void fetch_watch_counts(fetch *f, long *sources, long *outstanding);

/* Daemon: hand the tickets of jobs the workers finished to the watch.  The
 * loop does it itself; call it once more after the workers have exited. */
void fetch_collect(fetch *f);

#endif
