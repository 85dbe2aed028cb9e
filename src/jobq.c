/*
 * jobq: a ring buffer of pointers under one mutex and two condition
 * variables.  See include/jobq.h for why it is bounded and why the producer
 * side does not block.  Items are opaque; ownership moves with the pointer:
 * the pusher gives it up on success, the popper owns it afterwards.
 */
#include "jobq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct jobq {
	pthread_mutex_t mu;
	pthread_cond_t nonempty, nonfull;
	void **ring;
	size_t cap, head, len;
	int closed;
	void (*on_pop)(void *);
	void *on_pop_arg;
};

jobq *
jobq_new(size_t capacity)
{
	pthread_condattr_t ca;
	jobq *q;

	if (capacity == 0 || !(q = calloc(1, sizeof *q)))
		return NULL;
	if (!(q->ring = calloc(capacity, sizeof *q->ring))) {
		free(q);
		return NULL;
	}
	q->cap = capacity;
	pthread_mutex_init(&q->mu, NULL);
	/* timed pops measure on the monotonic clock: setting the wall clock
	 * must not make an idle worker wake early or sleep for hours */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->nonempty, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&q->nonfull, NULL);
	return q;
}

void
jobq_free(jobq *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->nonfull);
	free(q->ring);
	free(q);
}

static int
push(jobq *q, void *item, int wait)
{
	int rc = -1;

	pthread_mutex_lock(&q->mu);
	while (wait && !q->closed && q->len == q->cap)
		pthread_cond_wait(&q->nonfull, &q->mu);
	if (!q->closed && q->len < q->cap) {
		q->ring[(q->head + q->len) % q->cap] = item;
		q->len++;
		pthread_cond_signal(&q->nonempty);
		rc = 0;
	}
	pthread_mutex_unlock(&q->mu);
	return rc;
}

int
jobq_push(jobq *q, void *item)
{
	return push(q, item, 0);
}

int
jobq_push_wait(jobq *q, void *item)
{
	return push(q, item, 1);
}

/* wait_ms: 0 = do not wait, < 0 = wait for an item or the close, else at
 * most that long (*timed_out then says whether the time ran out). */
static void *
pop(jobq *q, long wait_ms, int *timed_out)
{
	void *item = NULL;
	void (*hook)(void *);
	void *arg;
	struct timespec until;
	int expired = 0;

	if (wait_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += (wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&q->mu);
	while (wait_ms != 0 && q->len == 0 && !q->closed && !expired) {
		if (wait_ms < 0)
			pthread_cond_wait(&q->nonempty, &q->mu);
		else if (pthread_cond_timedwait(&q->nonempty, &q->mu, &until) == ETIMEDOUT)
			expired = 1;
	}
	if (q->len > 0) {
		item = q->ring[q->head];
		q->head = (q->head + 1) % q->cap;
		q->len--;
		pthread_cond_signal(&q->nonfull);
	}
	hook = q->on_pop;
	arg = q->on_pop_arg;
	pthread_mutex_unlock(&q->mu);
	if (item && hook)
		hook(arg);
	if (timed_out)
		*timed_out = !item && expired;
	return item;
}

void *
jobq_pop(jobq *q)
{
	return pop(q, -1, NULL);
}

void *
jobq_pop_within(jobq *q, long ms, int *timed_out)
{
	return pop(q, ms > 0 ? ms : 1, timed_out);
}

void *
jobq_trypop(jobq *q)
{
	return pop(q, 0, NULL);
}

void
jobq_close(jobq *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = 1;
	pthread_cond_broadcast(&q->nonempty);
	pthread_cond_broadcast(&q->nonfull);
	pthread_mutex_unlock(&q->mu);
}

size_t
jobq_len(jobq *q)
{
	size_t n;

	pthread_mutex_lock(&q->mu);
	n = q->len;
	pthread_mutex_unlock(&q->mu);
	return n;
}

size_t
jobq_capacity(const jobq *q)
{
	return q->cap;
}

void
jobq_on_pop(jobq *q, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&q->mu);
	q->on_pop = fn;
	q->on_pop_arg = arg;
	pthread_mutex_unlock(&q->mu);
}
