/*
 * Unit tests: bigmem (large buffers in huge pages, two kept per thread).
 * What must hold whatever the build: zeroed blocks read as zero, also when
 * a block is reused, every byte is writable, blocks are aligned for SIMD
 * loads, free accepts NULL and needs no size.  What holds
 * where bigmem maps its blocks (every build but AddressSanitizer, where all
 * of it is malloc so ASan sees it): reuse by the same thread (two blocks,
 * the smallest pushed out by a third), 64-byte
 * alignment, memory given back (RSS) on free of a large block and on trim,
 * none kept by a thread that exits, and huge pages where the kernel offers
 * them to madvise.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bigmem.h"
#include "check.h"

#define MB ((size_t)1 << 20)

static int
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Resident bytes of this process. */
static long long
rss(void)
{
	long long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return -1;
	if (fscanf(f, "%lld %lld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

/* kB of AnonHugePages in this process, -1 if unreadable. */
static long long
huge_kb(void)
{
	char line[256];
	long long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "AnonHugePages: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* 1 when transparent huge pages are given to madvise(MADV_HUGEPAGE). */
static int
thp_offered(void)
{
	char line[256] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	if (!f)
		return 0;
	if (!fgets(line, sizeof line, f))
		line[0] = '\0';
	fclose(f);
	return strstr(line, "[always]") || strstr(line, "[madvise]");
}

static void *
thread_keeps(void *arg)
{
	void *p = bigmem_alloc(BIGMEM_KEEP - 64, 0);

	(void)arg;
	if (p) {
		memset(p, 1, BIGMEM_KEEP - 64);
		bigmem_free(p);     /* kept by this thread, which then exits */
	}
	return p;
}

/* Threads that trim at the same moment, then exit: what workers going
 * idle together do.  Under a sanitizer that replaces malloc, glibc's own
 * heap is never set up, and a glibc malloc call from such a thread
 * (malloc_trim) used to set it up there; racing threads then failed
 * glibc's arena assertion at exit, or crashed. */
static pthread_barrier_t trim_barrier;

static void *
thread_trims(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&trim_barrier);
	bigmem_trim();
	return NULL;
}

static int
trim_together(int n)
{
	pthread_t t[8];
	int started = 0;

	if (n > 8 || pthread_barrier_init(&trim_barrier, NULL, (unsigned)n) != 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], NULL, thread_trims, NULL) == 0)
			started++;
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&trim_barrier);
	return started;
}

int
main(void)
{
	static const size_t sizes[] = { 1, 1000, 2 * MB - 1, 2 * MB, 3 * MB + 5, 9 * MB, 20 * MB };
	int mapped = BIGMEM_MAPS;

	/* first, before this thread has allocated anything */
	CHECK_INT(trim_together(8), 8);
	bigmem_setup();
	CHECK(bigmem_alloc(0, 1) == NULL);
	bigmem_free(NULL);

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i];
		uint8_t *p = bigmem_alloc(n, 1), *q;
		CHECK(p != NULL);
		if (!p)
			continue;
		CHECK(all_zero(p, n));
		CHECK_INT((uintptr_t)p % (mapped && n >= 2 * MB ? 64 : 16), 0);
		memset(p, 0xAB, n);
		bigmem_free(p);
		/* the same size again, zeroed: a reused block must be wiped */
		q = bigmem_alloc(n, 1);
		CHECK(q != NULL);
		if (!q)
			continue;
		CHECK(all_zero(q, n));
		if (mapped && n >= 2 * MB && n + 64 <= BIGMEM_KEEP)
			CHECK(q == p);          /* kept by this thread and handed back */
		memset(q, 0x5A, n);
		bigmem_free(q);
		/* not zeroed: still every byte writable */
		q = bigmem_alloc(n, 0);
		CHECK(q != NULL);
		if (q) {
			memset(q, 0x11, n);
			CHECK(q[n - 1] == 0x11);
		}
		bigmem_free(q);
	}
	bigmem_trim();

	/* a smaller request is served by the kept larger block */
	if (mapped) {
		uint8_t *a = bigmem_alloc(6 * MB, 0), *b;
		bigmem_free(a);
		b = bigmem_alloc(3 * MB, 1);
		CHECK(b == a);
		CHECK(b && all_zero(b, 3 * MB));
		bigmem_free(b);
		bigmem_trim();
	}

	/* a picture's two blocks (its file, its decode) both come back, each
	 * to the request it fits best; a third one freed pushes out the
	 * smallest */
	if (mapped) {
		uint8_t *a = bigmem_alloc(3 * MB, 0), *b = bigmem_alloc(5 * MB, 0), *c, *q, *r;
		bigmem_free(a);
		bigmem_free(b);
		q = bigmem_alloc(3 * MB, 1);
		r = bigmem_alloc(5 * MB, 1);
		CHECK(q == a);
		CHECK(r == b);
		CHECK(q && all_zero(q, 3 * MB));
		c = bigmem_alloc(7 * MB - 64, 0);
		bigmem_free(q);
		bigmem_free(r);
		bigmem_free(c);                 /* a (3 MB) goes */
		q = bigmem_alloc(2 * MB, 0);
		r = bigmem_alloc(2 * MB, 0);
		CHECK(q == b);
		CHECK(r == c);
		bigmem_free(q);
		bigmem_free(r);
		bigmem_trim();
	}

	if (mapped) {
		long long before, touched, after;
		uint8_t *p;

		/* over BIGMEM_KEEP: unmapped at once */
		before = rss();
		p = bigmem_alloc(48 * MB, 0);
		CHECK(p != NULL);
		if (p) {
			memset(p, 7, 48 * MB);
			touched = rss();
			CHECK(touched - before >= (long long)(40 * MB));
			bigmem_free(p);
			after = rss();
			CHECK(touched - after >= (long long)(40 * MB));
		}

		/* kept: resident until trimmed */
		p = bigmem_alloc(BIGMEM_KEEP - 64, 0);
		CHECK(p != NULL);
		if (p) {
			memset(p, 7, BIGMEM_KEEP - 64);
			bigmem_free(p);
			touched = rss();
			bigmem_trim();
			after = rss();
			CHECK(touched - after >= (long long)(BIGMEM_KEEP - MB));
		}

		/* a thread that exits without trimming gives its block back */
		pthread_t t;
		void *res = NULL;
		before = rss();
		CHECK_INT(pthread_create(&t, NULL, thread_keeps, NULL), 0);
		pthread_join(t, &res);
		CHECK(res != NULL);
		after = rss();
		CHECK(after - before < (long long)(4 * MB));

		/* huge pages, where the kernel gives them to madvise */
		if (thp_offered() && huge_kb() >= 0) {
			long long h0 = huge_kb();
			p = bigmem_alloc(16 * MB, 0);
			CHECK(p != NULL);
			if (p) {
				memset(p, 3, 16 * MB);
				CHECK(huge_kb() - h0 >= 2048);
				bigmem_free(p);
			}
			bigmem_trim();
		} else {
			fprintf(stderr, "test_bigmem: transparent huge pages off here; that check not run\n");
		}
	}
	return CHECK_DONE();
}
