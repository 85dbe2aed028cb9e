/*
 * hashset: linear probing over a table cut into fixed segments.
 *
 * Why segments: a table that doubles in one block holds the old and the new
 * block at once while it rehashes, which is where the memory peak of a long
 * URL list would be.  Here the old table is walked segment by segment and
 * each segment is freed as soon as its entries have moved, so the peak is
 * the new table plus one segment.  That holds because a key's slot is
 * its hash scaled to the table's size (multiply-shift): the keys keep their
 * order, so the old table's first segments fill the new table's first
 * ones, and the new table's pages are touched no faster than the old
 * one's are given back.  Growth is by half (not doubling), which keeps
 * the table between 53% and 80% full.
 *
 * Segments are mapped, not taken from malloc: glibc's mmap threshold is
 * 2 MB in thumbd (bigmem_setup), so a freed 192 KiB block stayed in the
 * heap, resident, and the peak was the old table and the new one (30
 * bytes per URL of a 1,000,000-URL list instead of 18; bench/NOTES.md).
 * Under AddressSanitizer they come from calloc, so that it sees them.
 */
#include "hashset.h"
#include "bigmem.h"             /* BIGMEM_MAPS: 0 under AddressSanitizer */

#include <stdlib.h>
#include <sys/mman.h>

#define HS_SEG_SLOTS 16384      /* 192 KiB: a mapping of its own, given back when freed */

struct hs_slot {
	uint64_t key;
	uint32_t val;
} __attribute__((packed));

uint64_t
hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	/* FNV's low bits are weak; mix so every bit counts for the index */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h ? h : 1;
}

/* A zeroed segment; NULL when out of memory. */
static struct hs_slot *
seg_new(void)
{
	size_t len = HS_SEG_SLOTS * sizeof(struct hs_slot);
	void *p;

	if (!BIGMEM_MAPS)
		return calloc(1, len);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
#ifdef MADV_NOHUGEPAGE
	/* where transparent huge pages are "always", neighbouring segments
	 * could share a huge page, which a segment's munmap only splits:
	 * its memory would go back later, not as the growth moves on */
	(void)madvise(p, len, MADV_NOHUGEPAGE);
#endif
	return p;
}

static void
seg_free(struct hs_slot *seg)
{
	if (!BIGMEM_MAPS)
		free(seg);
	else if (seg)
		munmap(seg, HS_SEG_SLOTS * sizeof(struct hs_slot));
}

static struct hs_slot *
slot_at(const hashset *t, size_t i)
{
	return &t->segs[i / HS_SEG_SLOTS][i % HS_SEG_SLOTS];
}

/* key's first slot: Fibonacci hashing first, since keys need not be
 * hashes (the index takes the high bits, which sequential keys alone
 * would leave at zero) */
static size_t
home(const hashset *t, uint64_t key)
{
	uint64_t mixed = key * 0x9e3779b97f4a7c15ULL;

	return (size_t)(((unsigned __int128)mixed * t->cap) >> 64);
}

/* The index of the slot holding key, or of the empty one where it would go. */
static size_t
find_at(const hashset *t, uint64_t key)
{
	size_t i = home(t, key);
	struct hs_slot *s;

	while ((s = slot_at(t, i))->key && s->key != key)
		if (++i == t->cap)
			i = 0;
	return i;
}

static struct hs_slot *
find(const hashset *t, uint64_t key)
{
	return slot_at(t, find_at(t, key));
}

static int
grow(hashset *t)
{
	hashset n = { 0 };

	n.nsegs = t->nsegs ? t->nsegs + (t->nsegs + 1) / 2 : 1;
	n.cap = n.nsegs * HS_SEG_SLOTS;
	if (!(n.segs = calloc(n.nsegs, sizeof *n.segs)))
		return -1;
	for (size_t i = 0; i < n.nsegs; i++)
		if (!(n.segs[i] = seg_new())) {
			hashset_free(&n);
			return -1;
		}
	for (size_t g = 0; g < t->nsegs; g++) {
		for (size_t j = 0; j < HS_SEG_SLOTS; j++) {
			struct hs_slot *from = &t->segs[g][j];
			if (from->key)
				*find(&n, from->key) = *from;
		}
		seg_free(t->segs[g]);   /* moved: give it back before the next one */
		t->segs[g] = NULL;
	}
	n.used = t->used;
	free(t->segs);
	*t = n;
	return 0;
}

int
hashset_put(hashset *t, uint64_t key, uint32_t val)
{
	struct hs_slot *s;

	if ((t->used + 1) * 5 > t->cap * 4 && grow(t) < 0)
		return -1;
	s = find(t, key);
	if (!s->key)
		t->used++;
	s->key = key;
	s->val = val;
	return 0;
}

uint32_t
hashset_get(const hashset *t, uint64_t key)
{
	if (!t->cap)
		return 0;
	return find(t, key)->val;
}

/* Backward shift, not a tombstone: each later key of the probe run that
 * may sit in the hole (its home is not cyclically after the hole and up
 * to where it is) moves up, so find() still stops at the first empty slot
 * and a table of keys that come and go does not fill with dead slots. */
void
hashset_del(hashset *t, uint64_t key)
{
	size_t i, j;

	if (!t->cap || !slot_at(t, i = find_at(t, key))->key)
		return;
	for (j = i;;) {
		struct hs_slot *s;
		size_t h;
		if (++j == t->cap)
			j = 0;
		if (!(s = slot_at(t, j))->key)
			break;
		h = home(t, s->key);
		if (i <= j ? h > i && h <= j : h > i || h <= j)
			continue;
		*slot_at(t, i) = *s;
		i = j;
	}
	slot_at(t, i)->key = 0;
	slot_at(t, i)->val = 0;
	t->used--;
}

void
hashset_free(hashset *t)
{
	for (size_t i = 0; i < t->nsegs; i++)
		seg_free(t->segs[i]);
	free(t->segs);
	t->segs = NULL;
	t->nsegs = t->cap = t->used = 0;
}
