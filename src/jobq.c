/*
 * jobq: a ring buffer of pointers under one mutex and two condition
 * variables.  See include/jobq.h for why it is bounded and why the producer
 * side does not block.  Items are opaque; ownership moves with the pointer:
 * the pusher gives it up on success, the popper owns it afterwards.
 */
#include "jobq.h"

#include <pthread.h>
#include <stdlib.h>

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
	jobq *q;

	if (capacity == 0 || !(q = calloc(1, sizeof *q)))
		return NULL;
	if (!(q->ring = calloc(capacity, sizeof *q->ring))) {
		free(q);
		return NULL;
	}
	q->cap = capacity;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->nonempty, NULL);
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

static void *
pop(jobq *q, int wait)
{
	void *item = NULL;
	void (*hook)(void *);
	void *arg;

	pthread_mutex_lock(&q->mu);
	while (wait && q->len == 0 && !q->closed)
		pthread_cond_wait(&q->nonempty, &q->mu);
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
	return item;
}

void *
jobq_pop(jobq *q)
{
	return pop(q, 1);
}

void *
jobq_trypop(jobq *q)
{
	return pop(q, 0);
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
