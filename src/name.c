/*
 * name: output names and the registry of who owns them.
 *
 * The registry is an append-only text file, <outgoing>/.thumbd-names, one
 * "stem<TAB>url" line per claim.  It lives beside the thumbnails it
 * describes, so wiping outgoing/ also forgets the owners.  In memory it is
 * two open-addressing tables of 64-bit hashes (stem -> owner URL, and the
 * URLs seen in this run), 16 and 8 bytes per entry: a million-URL list costs
 * tens of megabytes at most and no strings are kept.  Only one thread (the
 * fetcher, or main in --files mode) claims names, so there is no lock.
 */
#include "name.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"

#define REGISTRY ".thumbd-names"

typedef struct table {
	uint64_t *keys;         /* 0 = empty slot */
	uint64_t *vals;         /* values when is_map */
	size_t cap, used;
	int is_map;
} table;

struct names {
	table owners;           /* hash(stem) -> hash(url) */
	table seen;             /* hash(url) claimed in this run */
	int fd;                 /* registry, O_APPEND */
};

static uint64_t
hash64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h ? h : 1;
}

static int
table_grow(table *t)
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

/* Slot of key, or of the empty slot where it would go. */
static size_t
table_slot(const table *t, uint64_t key)
{
	size_t j;

	for (j = key & (t->cap - 1); t->keys[j] && t->keys[j] != key; j = (j + 1) & (t->cap - 1))
		;
	return j;
}

static int
table_put(table *t, uint64_t key, uint64_t val)
{
	size_t j;

	if ((t->used + 1) * 4 > t->cap * 3 && table_grow(t) < 0)
		return -1;
	j = table_slot(t, key);
	if (!t->keys[j])
		t->used++;
	t->keys[j] = key;
	if (t->is_map)
		t->vals[j] = val;
	return 0;
}

/* 0 when absent. */
static uint64_t
table_get(const table *t, uint64_t key)
{
	size_t j;

	if (!t->cap)
		return 0;
	j = table_slot(t, key);
	if (!t->keys[j])
		return 0;
	return t->is_map ? t->vals[j] : 1;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Split a decoded segment into a safe stem and an extension. */
static void
make_name(const char *seg, size_t len, char stem[NAME_STEM_MAX + 1], char ext[NAME_EXT_MAX + 1])
{
	size_t stem_len = len, n = 0;
	const char *dot = NULL;

	for (size_t i = len; i > 1; i--)        /* a leading dot is not an extension */
		if (seg[i - 1] == '.') {
			dot = seg + i - 1;
			break;
		}
	ext[0] = 0;
	if (dot && (size_t)(seg + len - dot - 1) <= NAME_EXT_MAX) {
		size_t elen = 0;
		for (const char *p = dot + 1; p < seg + len; p++)
			ext[elen++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
		ext[elen] = 0;
		stem_len = (size_t)(dot - seg);
	}
	for (size_t i = 0; i < stem_len && n < NAME_STEM_MAX; i++) {
		unsigned char ch = (unsigned char)seg[i];
		stem[n++] = isalnum(ch) || ch == '-' || ch == '_' || ch == '.' ? (char)ch : '_';
	}
	stem[n] = 0;
	/* never empty, never hidden (temp files are dot-files), so never "." or ".." */
	if (n == 0)
		strcpy(stem, "image");
	else if (stem[0] == '.')
		stem[0] = '_';
}

void
name_from_url(const char *url, char stem[NAME_STEM_MAX + 1], char ext[NAME_EXT_MAX + 1])
{
	char seg[1024];
	const char *p = strstr(url, "://"), *end, *last;
	size_t n = 0;

	/* path = after the authority, up to query or fragment */
	p = p ? p + 3 : url;
	p += strcspn(p, "/?#");
	end = p + strcspn(p, "?#");
	last = p;
	for (const char *q = p; q < end; q++)
		if (*q == '/')
			last = q + 1;
	for (const char *q = last; q < end && n < sizeof seg - 1; q++) {
		int hi, lo;
		if (*q == '%' && end - q > 2 && (hi = hexval(q[1])) >= 0 && (lo = hexval(q[2])) >= 0) {
			seg[n++] = (char)(hi << 4 | lo);
			q += 2;
		} else {
			seg[n++] = *q;
		}
	}
	make_name(seg, n, stem, ext);
}

void
name_from_path(const char *path, char stem[NAME_STEM_MAX + 1], char ext[NAME_EXT_MAX + 1])
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;

	make_name(base, strlen(base), stem, ext);
}

/* Each registry line is "stem\turl"; a torn last line (crash mid-write) is skipped. */
static int
load_registry(names *n, FILE *fp)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	while ((len = getline(&line, &cap, fp)) > 0) {
		char *tab = strchr(line, '\t');
		if (line[len - 1] != '\n' || !tab)
			continue;
		line[len - 1] = 0;
		*tab = 0;
		if (table_put(&n->owners, hash64(line), hash64(tab + 1)) < 0) {
			rc = -1;
			break;
		}
	}
	free(line);
	return rc;
}

names *
names_open(const char *outgoing, char *err, size_t errlen)
{
	names *n = calloc(1, sizeof *n);
	char path[4096];
	FILE *fp = NULL;

	if (!n)
		goto oom;
	n->fd = -1;
	n->owners.is_map = 1;
	if (table_grow(&n->owners) < 0 || table_grow(&n->seen) < 0)
		goto oom;
	snprintf(path, sizeof path, "%s/%s", outgoing, REGISTRY);
	n->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (n->fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!(fp = fdopen(dup(n->fd), "r"))) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	if (load_registry(n, fp) < 0)
		goto oom;
	fclose(fp);
	return n;
oom:
	snprintf(err, errlen, "out of memory loading the name registry");
fail:
	if (fp)
		fclose(fp);
	names_close(n);
	return NULL;
}

void
names_close(names *n)
{
	if (!n)
		return;
	if (n->fd >= 0)
		close(n->fd);
	free(n->owners.keys);
	free(n->owners.vals);
	free(n->seen.keys);
	free(n);
}

int
names_claim(names *n, const char *key, const char *base, char out[NAME_MAX_OUT],
            char *err, size_t errlen)
{
	static const int hexlen[] = { 0, 8, 16, 64 };
	uint64_t kh = hash64(key);
	char hex[65];

	if (table_get(&n->seen, kh))
		return 1;
	if (table_put(&n->seen, kh, 1) < 0)
		goto oom;
	sha256_hex(key, strlen(key), hex);
	for (size_t i = 0; i < sizeof hexlen / sizeof hexlen[0]; i++) {
		uint64_t sh, owner;
		if (hexlen[i])
			snprintf(out, NAME_MAX_OUT, "%s-%.*s", base, hexlen[i], hex);
		else
			snprintf(out, NAME_MAX_OUT, "%s", base);
		sh = hash64(out);
		owner = table_get(&n->owners, sh);
		if (owner == kh)
			return 0;
		if (owner)
			continue;
		if (table_put(&n->owners, sh, kh) < 0)
			goto oom;
		dprintf(n->fd, "%s\t%s\n", out, key);
		return 0;
	}
	snprintf(err, errlen, "no free name for %s", key);
	return -1;
oom:
	snprintf(err, errlen, "out of memory in the name registry");
	return -1;
}
