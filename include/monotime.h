/*
 * monotime: the monotonic clock, as the few shapes thumbd uses it (retry
 * deadlines in ms, durations in seconds for logs and the summary).  Header
 * only: three one-line functions shared by fetch, the workers and main.
 */
#ifndef THUMBD_MONOTIME_H
#define THUMBD_MONOTIME_H

#include <time.h>

static inline long long
mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static inline double
mono_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Seconds since t (taken with clock_gettime(CLOCK_MONOTONIC)). */
static inline double
mono_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

#endif
