/*
 * bigmem: the few large buffers of a resize (decoded pictures, progressive
 * JPEG coefficient arrays, the downloaded file read into memory), taken
 * from the kernel in huge pages and reused by the thread that freed them.
 *
 * Why not plain malloc: glibc maps every block over its mmap threshold
 * (2 MB, bigmem_setup) afresh and the kernel faults it in page by page, zeroed,
 * 4 KB at a time.  On the virtual machines thumbd was measured on a fault
 * costs 10-15 us: a 1024x819 decode (2.5 MB, 610 faults) cost more in
 * faults than in decoding, and the 88 MB coefficient array of a large
 * progressive JPEG 0.3 s (bench/NOTES.md).  Here a block is mapped on a
 * 2 MB boundary with MADV_HUGEPAGE (one fault per 2 MB where transparent
 * huge pages are "madvise" or "always"), and the last two blocks a thread
 * frees, each up to BIGMEM_KEEP, stay with that thread for its next image
 * (its file and its decode), so a run of similar images maps nothing at all.  Raising glibc's threshold instead
 * would keep every such block in the arenas, fragmented: a higher peak on
 * large images for the same speed.
 *
 * Blocks under BIGMEM_MIN come from malloc; under AddressSanitizer every
 * block does, so its checks still see them.
 */
#ifndef THUMBD_BIGMEM_H
#define THUMBD_BIGMEM_H

#include <stddef.h>

/* BIGMEM_MAPS: 1 when blocks of 2 MB and more are mapped by bigmem, 0 under
 * AddressSanitizer, where every block comes from malloc so ASan sees it. */
#if defined(__SANITIZE_ADDRESS__)
#define BIGMEM_MAPS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BIGMEM_MAPS 0
#endif
#endif
#ifndef BIGMEM_MAPS
#define BIGMEM_MAPS 1
#endif

/* The largest block a thread keeps for its next image (mapped length):
 * a 1200x1600 decode, a downloaded photo of several MB.  Per worker, two
 * of them are also what an idle-looking worker may hold until it trims. */
#define BIGMEM_KEEP ((size_t)8 << 20)

/* n bytes, zeroed when zero is set; NULL when out of memory (or n == 0). */
void *bigmem_alloc(size_t n, int zero);
/* Free a block from bigmem_alloc (never one from malloc); accepts NULL. */
void bigmem_free(void *p);
/* Once, before any thread starts: glibc's heap tuned to go with bigmem
 * (blocks of 2 MB and more from mmap, freed memory kept while work flows),
 * unless MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ say otherwise. */
void bigmem_setup(void);
/* Give back the block this thread keeps for reuse, and the heap's free
 * memory (an idle worker; at thread exit the kept blocks go by themselves). */
void bigmem_trim(void);

#endif
