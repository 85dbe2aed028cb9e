/*
 * bigmem: large buffers in huge pages, one kept per thread for reuse.
 * Why, and what it costs, in include/bigmem.h.
 *
 * Every block is [header | data]: the header (one cache line, so the data
 * stays 64-byte aligned) records the mapped length, 0 for a malloc'd
 * block, so bigmem_free needs no size and a kept block may serve a smaller
 * request than the one it was made for.  A mapping is over-allocated by one
 * huge page and trimmed so that it starts on a huge-page boundary: the
 * kernel only backs aligned 2 MB ranges with huge pages.
 *
 * The kept block is thread-specific: workers never hand pixel buffers to
 * each other, so no lock is needed, and the block a worker keeps is the
 * one its next image is most likely to need.  A kept block is handed out
 * again only for a request that fits; a larger request unmaps it first, so
 * a thread never holds two blocks because of the cache.  It lives in a
 * pthread key rather than a _Thread_local so that a thread that exits
 * without bigmem_trim() still gives it back (the key's destructor).
 */
#include "bigmem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* BIGMEM_GLIBC_HEAP: glibc's malloc is the process's allocator, so its
 * tuning (bigmem_setup) and malloc_trim apply.  Not under a sanitizer that
 * brings its own malloc: there glibc's heap is never set up by the main
 * thread, and a glibc malloc call from a worker (malloc_trim) set it up in
 * that thread, taking the main arena without counting itself in; two
 * workers doing so and exiting failed glibc's arena assertion or crashed. */
#if defined(__GLIBC__) && BIGMEM_MAPS && !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if !__has_feature(thread_sanitizer) && !__has_feature(memory_sanitizer)
#define BIGMEM_GLIBC_HEAP 1
#endif
#else
#define BIGMEM_GLIBC_HEAP 1
#endif
#endif
#ifdef BIGMEM_GLIBC_HEAP
#include <malloc.h>
#endif

#define BIGMEM_HUGE ((size_t)2 << 20)   /* transparent huge page, x86-64 and 4K-page arm64 */
#define BIGMEM_MIN  ((size_t)2 << 20)   /* smaller: malloc (glibc's heap reuses those) */
#define BIGMEM_HDR  64

typedef struct block {
	size_t maplen;          /* bytes mapped, header included */
} block;

static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;
static int kept_ok;

static int
mapped(size_t n)
{
	return BIGMEM_MAPS && n >= BIGMEM_MIN;
}

static void
unmap(block *b)
{
	if (b)
		munmap(b, b->maplen);
}

static void
kept_drop(void *b)
{
	unmap(b);
}

static void
kept_init(void)
{
	kept_ok = pthread_key_create(&kept_key, kept_drop) == 0;
}

/* This thread's kept block, taken out of the key; NULL if none. */
static block *
kept_take(void)
{
	block *b;

	pthread_once(&kept_once, kept_init);
	if (!kept_ok || !(b = pthread_getspecific(kept_key)))
		return NULL;
	pthread_setspecific(kept_key, NULL);
	return b;
}

/* maplen bytes (a multiple of BIGMEM_HUGE) on a huge-page boundary, of
 * which the first used bytes are what the caller needs now.  A last huge
 * page less than half used is not advised: it costs its touched 4 KB
 * pages rather than up to 2 MB of RSS for nothing (6 MB of the corpus
 * peak; more faults, but only in such tails). */
static block *
map(size_t maplen, size_t used)
{
	size_t len = maplen + BIGMEM_HUGE, head, tail;
	uint8_t *p, *a;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)p + BIGMEM_HUGE - 1) & ~(uintptr_t)(BIGMEM_HUGE - 1));
	head = (size_t)(a - p);
	tail = len - head - maplen;
	if (head)
		munmap(p, head);
	if (tail)
		munmap(a + maplen, tail);
#ifdef MADV_HUGEPAGE
	used = (used + BIGMEM_HUGE / 2) & ~(BIGMEM_HUGE - 1);
	if (used)               /* advice only: THP "never" ignores it */
		(void)madvise(a, used, MADV_HUGEPAGE);
#endif
	((block *)a)->maplen = maplen;
	return (block *)a;
}

void *
bigmem_alloc(size_t n, int zero)
{
	size_t maplen;
	block *b;

	if (n == 0 || n > SIZE_MAX / 2)
		return NULL;
	if (!mapped(n)) {
		if (!(b = zero ? calloc(1, n + BIGMEM_HDR) : malloc(n + BIGMEM_HDR)))
			return NULL;
		b->maplen = 0;
		return (uint8_t *)b + BIGMEM_HDR;
	}
	maplen = (n + BIGMEM_HDR + BIGMEM_HUGE - 1) & ~(BIGMEM_HUGE - 1);
	if ((b = kept_take()) && b->maplen >= maplen) {
		if (zero)
			memset((uint8_t *)b + BIGMEM_HDR, 0, n);
	} else {
		unmap(b);       /* too small for this one: do not hold two */
		if (!(b = map(maplen, n + BIGMEM_HDR)))
			return NULL;
		/* fresh anonymous pages read as zero */
	}
	return (uint8_t *)b + BIGMEM_HDR;
}

void
bigmem_free(void *p)
{
	block *b, *k, *keep;

	if (!p)
		return;
	b = (block *)((uint8_t *)p - BIGMEM_HDR);
	if (b->maplen == 0) {
		free(b);
		return;
	}
	k = kept_take();
	/* keep the larger of the two that may be kept, unmap the other */
	keep = b->maplen <= BIGMEM_KEEP ? b : NULL;
	if (k && (!keep || k->maplen >= keep->maplen))
		keep = k;
	unmap(keep == b ? k : b);
	if (keep && !(kept_ok && pthread_setspecific(kept_key, keep) == 0))
		unmap(keep);
}

void
bigmem_setup(void)
{
#ifdef BIGMEM_GLIBC_HEAP
	/* The rest of the heap's blocks of 2 MB or more (libpng's and
	 * libwebp's, say) come from mmap and go back when freed: glibc would
	 * otherwise raise its threshold to the largest block freed so far (up
	 * to 32 MB) and keep such blocks in each worker's arena, 175-210 MB
	 * peak instead of 140 MB on the benchmark corpus, for no speed. */
	if (!getenv("MALLOC_MMAP_THRESHOLD_"))     /* the user's own tuning wins */
		mallopt(M_MMAP_THRESHOLD, (int)BIGMEM_MIN);
	/* Below that size, freed memory stays with the process while work
	 * flows: trimmed after every image, the next one's buffers were
	 * faulted in afresh, page by page (a third of the system time of
	 * 2,000 small images).  An idle worker trims (bigmem_trim). */
	if (!getenv("MALLOC_TRIM_THRESHOLD_"))
		mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

void
bigmem_trim(void)
{
	unmap(kept_take());
#ifdef BIGMEM_GLIBC_HEAP
	malloc_trim(0);
#endif
}
