/*
 * bigmem: large buffers in huge pages, two kept per thread for reuse.
 * Why, and what it costs, in include/bigmem.h.
 *
 * Every block is [header | data]: the header (one cache line, so the data
 * stays 64-byte aligned) records the mapped length, 0 for a malloc'd
 * block, so bigmem_free needs no size and a kept block may serve a smaller
 * request than the one it was made for; a kept block's header also links
 * it to the thread's next kept one.  A mapping is over-allocated by one
 * huge page and trimmed so that it starts on a huge-page boundary: the
 * kernel only backs aligned 2 MB ranges with huge pages.
 *
 * The kept blocks are thread-specific: workers never hand pixel buffers to
 * each other, so no lock is needed, and the blocks a worker keeps are the
 * ones its next image is most likely to need.  Two, since an image holds
 * two at once (its file, then its decode; with one kept, every image
 * mapped, and so faulted in and zeroed, at least one block afresh).  A
 * request is served by the smallest kept block it fits; one that fits none
 * unmaps them first, so the cache never adds to what a thread holds while
 * it works on larger pictures.  They are chained through their headers,
 * the chain's head in a pthread key rather than a _Thread_local, so that
 * a thread that exits without bigmem_trim() still gives them back (the
 * key's destructor).
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

#define BIGMEM_KEEP_N 2         /* blocks a thread keeps (file comment) */

typedef struct block {
	size_t maplen;          /* bytes mapped, header included */
	struct block *next;     /* while kept: the thread's next kept block */
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

/* Unmap a chain of kept blocks. */
static void
kept_drop(void *head)
{
	block *b = head, *next;

	for (; b; b = next) {
		next = b->next;
		unmap(b);
	}
}

static void
kept_init(void)
{
	kept_ok = pthread_key_create(&kept_key, kept_drop) == 0;
}

/* This thread's kept blocks, taken out of the key; NULL if none. */
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

/* Give a chain back to the key; unmapped if the key cannot hold it. */
static void
kept_put(block *head)
{
	if (head && !(kept_ok && pthread_setspecific(kept_key, head) == 0))
		kept_drop(head);
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
	block *head = kept_take(), **pick = NULL;
	for (block **pp = &head; *pp; pp = &(*pp)->next)
		if ((*pp)->maplen >= maplen && (!pick || (*pp)->maplen < (*pick)->maplen))
			pick = pp;
	if (pick) {
		b = *pick;
		*pick = b->next;
		kept_put(head);
		if (zero)
			memset((uint8_t *)b + BIGMEM_HDR, 0, n);
	} else {
		kept_drop(head);        /* none fits: do not hold them beside it */
		if (!(b = map(maplen, n + BIGMEM_HDR)))
			return NULL;
		/* fresh anonymous pages read as zero */
	}
	return (uint8_t *)b + BIGMEM_HDR;
}

void
bigmem_free(void *p)
{
	block *b, *head, **small;
	int n = 1;

	if (!p)
		return;
	b = (block *)((uint8_t *)p - BIGMEM_HDR);
	if (b->maplen == 0) {
		free(b);
		return;
	}
	if (b->maplen > BIGMEM_KEEP) {
		unmap(b);
		return;
	}
	head = kept_take();
	b->next = head;
	head = b;
	/* over BIGMEM_KEEP_N: the smallest goes */
	small = &head;
	for (block **pp = &head->next; *pp; pp = &(*pp)->next, n++)
		if ((*pp)->maplen < (*small)->maplen)
			small = pp;
	if (n > BIGMEM_KEEP_N) {
		block *s = *small;
		*small = s->next;
		unmap(s);
	}
	kept_put(head);
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
	kept_drop(kept_take());
#ifdef BIGMEM_GLIBC_HEAP
	malloc_trim(0);
#endif
}
