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

/* Start n threads.  NULL + err when not even one could start. */
workers *workers_start(const cfg *c, jobq *q, stats *st, int n, char *err, size_t errlen);
/* Wait for every thread; call after jobq_close().  Frees w (accepts NULL). */
void workers_join(workers *w);
/* Busy workers now (for progress display). */
int workers_busy(workers *w);

#endif
