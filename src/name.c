/*
 * name: output names and the registry of who owns them.
 *
 * The registry is an append-only text file, <incoming>/.thumbd-names, one
 * "stem<TAB>url" line per claim.  It lives in thumbd's private working
 * directory, not in outgoing/, which may be published as it is.  In memory
 * it is one hash table, stem -> owner (see RUN_BIT below), about 20 bytes
 * per URL, and no strings are kept: the owner is where its line starts in
 * the file, and "is this name key's?" is answered by reading that line
 * back (pread, from the page cache), exactly.  A fingerprint of the URL
 * would have saved the read but not the doubt: with 31 bits, a million
 * URLs sharing a stem (img?id=N) had a 1 in 1000 chance that one of them
 * passed for another and was skipped unseen.  Only one thread (the
 * fetcher, or the files feeder) claims names, so there is no lock.
 *
 * Durability: a claim must reach the disk before any file of that name is
 * written, or after a power cut another URL could take the name and
 * overwrite the first one's thumbnails.  The producer calls names_sync()
 * before it hands a job to the workers; that is one fdatasync per batch of
 * claims, not one per URL.
 */
#include "name.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "hashset.h"
#include "sha256.h"

#define REGISTRY ".thumbd-names"

/* An owner is 1 + the offset of its registry line (31 bits: the file is
 * capped at 2 GB, some 20 million names, and compacted long before) plus
 * a bit for "claimed in this run", so one table answers both "whose name is
 * this" and "is this URL a duplicate": 12 bytes a URL instead of two
 * tables. */
#define RUN_BIT 0x80000000u
#define REGISTRY_MAX ((off_t)RUN_BIT - 2)

struct names {
	hashset owners;         /* hash(stem) -> (1 + line offset) | RUN_BIT */
	int fd;                 /* registry, O_APPEND */
	int dirty;              /* claims written since the last names_sync() */
	off_t size;             /* where the next line goes */
	char path[4096];
};

/* 1 when the registry line at owner (a hashset value) is "stem\tkey\n",
 * 0 when it is another's, -1 when it cannot be read. */
static int
owned_by(const names *n, uint32_t owner, const char *stem, const char *key)
{
	size_t sl = strlen(stem), kl = strlen(key), want = sl + kl + 2;
	char buf[512], *line = want <= sizeof buf ? buf : malloc(want);
	ssize_t got;
	int rc = -1;

	if (!line)
		return -1;
	got = pread(n->fd, line, want, (off_t)((owner & ~RUN_BIT) - 1));
	if (got >= 0)
		rc = (size_t)got == want && memcmp(line, stem, sl) == 0 && line[sl] == '\t'
		     && memcmp(line + sl + 1, key, kl) == 0 && line[want - 1] == '\n';
	if (line != buf)
		free(line);
	return rc;
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

/* Each registry line is "stem\turl"; a torn last line (crash mid-write) is
 * skipped.  0, -1 (out of memory), -2 (past REGISTRY_MAX). */
static int
load_registry(names *n, FILE *fp)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	off_t at = 0;
	int rc = 0;

	for (; (len = getline(&line, &cap, fp)) > 0; at += len) {
		char *tab = strchr(line, '\t');
		if (line[len - 1] != '\n' || !tab)
			continue;
		if (at > REGISTRY_MAX) {
			rc = -2;
			break;
		}
		*tab = 0;
		if (hashset_put(&n->owners, hash_str(line), (uint32_t)(at + 1)) < 0) {
			rc = -1;
			break;
		}
	}
	n->size = at;
	free(line);
	return rc;
}

names *
names_open(const char *dir, char *err, size_t errlen)
{
	names *n = calloc(1, sizeof *n);
	char path[4096];
	FILE *fp = NULL;

	if (!n)
		goto oom;
	n->fd = -1;
	snprintf(path, sizeof path, "%s/%s", dir, REGISTRY);
	snprintf(n->path, sizeof n->path, "%s", path);
	n->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (n->fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!(fp = fdopen(dup(n->fd), "r"))) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	switch (load_registry(n, fp)) {
	case -1:
		goto oom;
	case -2:
		snprintf(err, errlen, "%s is over 2 GB: move it aside (thumbnails done keep their names "
		         "only while it lists them)", path);
		goto fail;
	}
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
	hashset_free(&n->owners);
	free(n);
}

int
names_claim(names *n, const char *key, const char *base, char out[NAME_MAX_OUT],
            char *err, size_t errlen)
{
	static const int hexlen[] = { 0, 8, 16, 64 };
	char hex[65] = "";

	for (size_t i = 0; i < sizeof hexlen / sizeof hexlen[0]; i++) {
		uint64_t sh;
		uint32_t owner;
		off_t end;
		int w;
		if (hexlen[i] && !hex[0])
			sha256_hex(key, strlen(key), hex);      /* only when the plain name is taken */
		if (hexlen[i])
			snprintf(out, NAME_MAX_OUT, "%s-%.*s", base, hexlen[i], hex);
		else
			snprintf(out, NAME_MAX_OUT, "%s", base);
		sh = hash_str(out);
		if ((owner = hashset_get(&n->owners, sh))) {
			switch (owned_by(n, owner, out, key)) {
			case 0:
				continue;       /* another URL's name */
			case -1:
				snprintf(err, errlen, "cannot read the name registry %s: %s", n->path,
				         errno ? strerror(errno) : "short read");
				return -1;
			}
			if (owner & RUN_BIT)
				return 1;       /* ours, already claimed in this run */
			if (hashset_put(&n->owners, sh, owner | RUN_BIT) < 0)
				goto oom;
			return 0;               /* ours from an earlier run */
		}
		if (n->size >= REGISTRY_MAX) {
			snprintf(err, errlen, "cannot write the name registry %s: full (2 GB)", n->path);
			return -1;
		}
		/* O_APPEND: the line lands at the end, wherever a torn write
		 * left it, and the file offset then says where that was */
		if ((w = dprintf(n->fd, "%s\t%s\n", out, key)) < 0 || (end = lseek(n->fd, 0, SEEK_CUR)) < w) {
			snprintf(err, errlen, "cannot write the name registry: %s", strerror(errno));
			return -1;
		}
		n->size = end;
		if (hashset_put(&n->owners, sh, (uint32_t)(end - w + 1) | RUN_BIT) < 0)
			goto oom;
		n->dirty = 1;
		return 0;
	}
	snprintf(err, errlen, "no free name for %s", key);
	return -1;
oom:
	snprintf(err, errlen, "out of memory in the name registry");
	return -1;
}

int
names_sync(names *n)
{
	if (!n->dirty)
		return 0;
	n->dirty = 0;
	return fdatasync(n->fd);
}

int
names_owned(const names *n, const char *stem)
{
	return hashset_get(&n->owners, hash_str(stem)) != 0;
}

/*
 * Compaction.  The registry only ever holds one line per URL, so it has no
 * garbage in the usual sense; what accumulates over months of runs are
 * names of URLs whose thumbnails were since deleted.  Past min_bytes the
 * file is rewritten with the claims keep() still wants (temp file, fsync,
 * rename, fsync of the directory), which releases the other names.
 */
long
names_compact(names *n, long long min_bytes, int (*keep)(const char *stem, const char *url, void *arg),
              void *arg, char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	struct stat sb;
	FILE *in = NULL;
	fsu_replace *out = NULL, *r;
	long dropped = 0, rc = -1;
	int nfd;

	if (fstat(n->fd, &sb) < 0 || sb.st_size < min_bytes)
		return 0;
	if (!(in = fopen(n->path, "r"))) {
		snprintf(err, errlen, "cannot compact %s: %s", n->path, strerror(errno));
		goto out;
	}
	if (!(out = fsu_replace_begin(n->path, err, errlen)))
		goto out;
	while ((len = getline(&line, &cap, in)) > 0) {
		char *tab = strchr(line, '\t');
		if (line[len - 1] != '\n' || !tab) {
			dropped++;      /* torn by a crash */
			continue;
		}
		line[len - 1] = *tab = 0;
		if (!keep(line, tab + 1, arg)) {
			dropped++;
			continue;
		}
		line[len - 1] = '\n';
		*tab = '\t';
		if (fwrite(line, 1, (size_t)len, fsu_replace_stream(out)) != (size_t)len)
			break;          /* the commit reports it */
	}
	if (ferror(in)) {
		snprintf(err, errlen, "cannot read %s: %s", n->path, strerror(errno));
		goto out;
	}
	r = out;
	out = NULL;
	if (fsu_replace_commit(r, err, errlen) < 0)
		goto out;
	/* start over from the new file */
	if ((nfd = open(n->path, O_RDWR | O_APPEND | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", n->path, strerror(errno));
		goto out;
	}
	close(n->fd);
	n->fd = nfd;
	hashset_free(&n->owners);
	fclose(in);
	if (!(in = fopen(n->path, "r")) || load_registry(n, in) != 0) {
		snprintf(err, errlen, "cannot reload %s", n->path);
		goto out;
	}
	rc = dropped;
out:
	fsu_replace_abort(out);
	if (in)
		fclose(in);
	free(line);
	return rc;
}
