/*
 * hashset: linear probing over power-of-two tables, grown at 75% load.
 * Deletion is not needed by any user (URLs are only ever added during a
 * run), which is what keeps this small.
 */
#include "hashset.h"

#include <stdlib.h>

uint64_t
hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h ? h : 1;
}

static int
grow(hashset *t)
{
	size_t ncap = t->cap ? t->cap * 2 : 1024;
	uint64_t *nk = calloc(ncap, sizeof *nk), *nv = NULL;

	if (!nk || (t->is_map && !(nv = calloc(ncap, sizeof *nv)))) {
		free(nk);
		return -1;
	}
	for (size_t i = 0; i < t->cap; i++) {
		size_t j;
		if (!t->keys[i])
			continue;
		for (j = t->keys[i] & (ncap - 1); nk[j]; j = (j + 1) & (ncap - 1))
			;
		nk[j] = t->keys[i];
		if (nv)
			nv[j] = t->vals[i];
	}
	free(t->keys);
	free(t->vals);
	t->keys = nk;
	t->vals = nv;
	t->cap = ncap;
	return 0;
}

static size_t
slot(const hashset *t, uint64_t key)
{
	size_t j;

	for (j = key & (t->cap - 1); t->keys[j] && t->keys[j] != key; j = (j + 1) & (t->cap - 1))
		;
	return j;
}

int
hashset_put(hashset *t, uint64_t key, uint64_t val)
{
	size_t j;

	if ((t->used + 1) * 4 > t->cap * 3 && grow(t) < 0)
		return -1;
	j = slot(t, key);
	if (!t->keys[j])
		t->used++;
	t->keys[j] = key;
	if (t->is_map)
		t->vals[j] = val;
	return 0;
}

uint64_t
hashset_get(const hashset *t, uint64_t key)
{
	size_t j;

	if (!t->cap)
		return 0;
	j = slot(t, key);
	if (!t->keys[j])
		return 0;
	return t->is_map ? t->vals[j] : 1;
}

void
hashset_free(hashset *t)
{
	free(t->keys);
	free(t->vals);
	t->keys = t->vals = NULL;
	t->cap = t->used = 0;
}
