/*
 * jobq: the bounded queue between the fetch thread and the resize workers,
 * the only place where the two sides meet.
 *
 * Bounded so a slow resize side pushes back on the network side instead of
 * filling incoming/ and memory.  The producer never blocks in jobq_push (the
 * fetch thread must keep serving its transfers); it checks jobq_len() before
 * starting work and is woken through the pop hook when space frees up.
 */
#ifndef THUMBD_JOBQ_H
#define THUMBD_JOBQ_H

#include <stddef.h>

typedef struct jobq jobq;

jobq *jobq_new(size_t capacity);
void jobq_free(jobq *q);                /* accepts NULL; items still queued are not freed */

/* Add an item; 0, or -1 when the queue is full or closed (never blocks). */
int jobq_push(jobq *q, void *item);
/* Add an item, waiting for space; -1 when closed. */
int jobq_push_wait(jobq *q, void *item);
/* Next item, waiting for one; NULL once the queue is closed and empty. */
void *jobq_pop(jobq *q);
/* Next item, waiting at most ms milliseconds; NULL with *timed_out = 1 when
 * none came in time, NULL with *timed_out = 0 once closed and empty. */
void *jobq_pop_within(jobq *q, long ms, int *timed_out);
/* Next item if there is one now, else NULL. */
void *jobq_trypop(jobq *q);
/* No more pushes; poppers drain what is left, then get NULL. */
void jobq_close(jobq *q);

size_t jobq_len(jobq *q);
size_t jobq_capacity(const jobq *q);

/* Called (outside the lock) after every pop: how the fetcher learns that room freed up. */
void jobq_on_pop(jobq *q, void (*fn)(void *), void *arg);

#endif
