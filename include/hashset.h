/*
 * hashset: hash tables of 64-bit keys with a 32-bit value (1 for a plain
 * set), for the per-URL bookkeeping that must stay small: a slot is 12
 * bytes, the table is at most 80% full and grows by half, and while it grows
 * the old table is given back piece by piece, so a million URLs peak at
 * about 18 bytes each (`make bench`) and no strings are kept.  Key 0 and value 0 are reserved
 * (hash_str never returns 0).  Not thread-safe: each table has one owner.
 */
#ifndef THUMBD_HASHSET_H
#define THUMBD_HASHSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct hashset {
	struct hs_slot **segs;  /* cap / HS_SEG_SLOTS segments */
	size_t nsegs, cap, used;
} hashset;

/* FNV-1a of a string, mixed for a table index, never 0. */
uint64_t hash_str(const char *s);

/* Plain 64-bit FNV-1a of n bytes, going on from h (HASH_FNV_BASIS to
 * start): for fingerprints and keys that only need to differ. */
#define HASH_FNV_BASIS 0xcbf29ce484222325ULL
static inline uint64_t
hash_fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/* A zeroed hashset is empty.  val must not be 0.  0 / -1 (out of memory). */
int hashset_put(hashset *t, uint64_t key, uint32_t val);
/* The value, or 0 when key is absent. */
uint32_t hashset_get(const hashset *t, uint64_t key);
/* key is absent afterwards (it may have been already).  The table does not
 * shrink. */
void hashset_del(hashset *t, uint64_t key);
void hashset_free(hashset *t);

#endif
