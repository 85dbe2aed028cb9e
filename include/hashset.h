/*
 * hashset: open-addressing tables of 64-bit keys (optionally with a 64-bit
 * value), for the per-URL bookkeeping that must stay small: a million URLs
 * cost 16-32 MB, and no strings are kept.  Key 0 is reserved (hash_str never
 * returns it).  Not thread-safe: each table has one owning thread.
 */
#ifndef THUMBD_HASHSET_H
#define THUMBD_HASHSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct hashset {
	uint64_t *keys;         /* 0 = empty slot */
	uint64_t *vals;         /* only when is_map */
	size_t cap, used;
	int is_map;
} hashset;

/* FNV-1a of a string, never 0. */
uint64_t hash_str(const char *s);

/* A zeroed hashset is an empty set; set is_map = 1 before the first put for a map. */
int hashset_put(hashset *t, uint64_t key, uint64_t val);        /* 0 / -1 (out of memory) */
uint64_t hashset_get(const hashset *t, uint64_t key);            /* value (1 for a set), 0 when absent */
void hashset_free(hashset *t);

#endif
