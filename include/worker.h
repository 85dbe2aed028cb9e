/*
 * worker: the resize threads.  Each pops a job from the jobq, runs
 * thumb_make(), records the outcome (log line, or failed.tsv) and deletes
 * the incoming file it owned.  They never touch the network.
 */
#ifndef THUMBD_WORKER_H
#define THUMBD_WORKER_H

#include <stddef.h>

#include "config.h"
#include "jobq.h"
#include "stats.h"

typedef struct workers workers;

/* Start n threads; each calls on_exit (may be NULL) when it leaves, after
 * the queue is closed and drained.  NULL + err when not even one could start. */
workers *workers_start(const cfg *c, jobq *q, stats *st, int n, void (*on_exit)(void),
                       char *err, size_t errlen);
/* Jobs started from now on use c (a reload).  The old config must stay
 * alive while workers_uses() says a job in progress still reads it. */
void workers_set_config(workers *w, const cfg *c);
/* 1 when a job in progress reads c (call after workers_set_config). */
int workers_uses(workers *w, const cfg *c);
/* Wait for every thread; call after jobq_close().  Frees w (accepts NULL). */
void workers_join(workers *w);
/* Busy workers now (for progress display). */
int workers_busy(workers *w);
/* Threads that have not left yet. */
int workers_running(workers *w);
/* Seconds the longest job in progress has been running (0 when all idle):
 * the daemon's watchdog stops pinging when a worker looks stuck. */
double workers_longest_job(workers *w);

#endif
