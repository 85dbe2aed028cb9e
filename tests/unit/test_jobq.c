/* Unit tests: the bounded queue between fetcher and workers (jobq.c). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "jobq.h"
#include "monotime.h"

#define ITEMS 20000
#define CONSUMERS 4

static atomic_long sum, count, pops_seen;

static void
on_pop(void *arg)
{
	(void)arg;
	atomic_fetch_add(&pops_seen, 1);
}

static void *
consumer(void *arg)
{
	jobq *q = arg;
	void *item;

	while ((item = jobq_pop(q))) {
		atomic_fetch_add(&sum, (long)(intptr_t)item);
		atomic_fetch_add(&count, 1);
	}
	return NULL;
}

int
main(void)
{
	jobq *q = jobq_new(3);
	pthread_t th[CONSUMERS];
	long want = 0, refused = 0;

	CHECK(q != NULL);
	CHECK(jobq_new(0) == NULL);
	CHECK_INT(jobq_capacity(q), 3);
	/* bounded, never blocking for the producer */
	CHECK_INT(jobq_push(q, (void *)1), 0);
	CHECK_INT(jobq_push(q, (void *)2), 0);
	CHECK_INT(jobq_push(q, (void *)3), 0);
	CHECK_INT(jobq_push(q, (void *)4), -1);
	CHECK_INT(jobq_len(q), 3);
	/* FIFO */
	CHECK((intptr_t)jobq_pop(q) == 1);
	CHECK((intptr_t)jobq_pop(q) == 2);
	CHECK((intptr_t)jobq_pop(q) == 3);
	CHECK_INT(jobq_len(q), 0);

	/* timed pop: an item at once; on an empty queue NULL with timed_out
	 * after about the time asked (the worker's idle trim relies on it) */
	{
		struct timespec t;
		int to = -1;
		double dt;

		CHECK_INT(jobq_push(q, (void *)7), 0);
		CHECK((intptr_t)jobq_pop_within(q, 1000, &to) == 7);
		CHECK_INT(to, 0);
		clock_gettime(CLOCK_MONOTONIC, &t);
		CHECK(jobq_pop_within(q, 150, &to) == NULL);
		dt = mono_since(&t);
		CHECK_INT(to, 1);
		CHECK(dt >= 0.149);
		CHECK(dt < 5.0);
	}

	/* many items through several consumers: each delivered exactly once */
	jobq_on_pop(q, on_pop, NULL);
	for (int i = 0; i < CONSUMERS; i++)
		CHECK_INT(pthread_create(&th[i], NULL, consumer, q), 0);
	for (long i = 1; i <= ITEMS; i++) {
		if (jobq_push_wait(q, (void *)(intptr_t)i) != 0)
			refused++;
		want += i;
	}
	CHECK_INT(refused, 0);
	jobq_close(q);
	for (int i = 0; i < CONSUMERS; i++)
		pthread_join(th[i], NULL);
	CHECK_INT(atomic_load(&count), ITEMS);
	CHECK_INT(atomic_load(&sum), want);
	CHECK_INT(atomic_load(&pops_seen), ITEMS);
	/* closed: pushes refused, pops return NULL at once */
	CHECK_INT(jobq_push(q, (void *)1), -1);
	CHECK_INT(jobq_push_wait(q, (void *)1), -1);
	CHECK(jobq_pop(q) == NULL);
	{
		/* closed and empty is not a timeout */
		int to = -1;
		CHECK(jobq_pop_within(q, 5000, &to) == NULL);
		CHECK_INT(to, 0);
	}
	jobq_free(q);
	jobq_free(NULL);
	return CHECK_DONE();
}
