/*
 * name: output names and the registry of who owns them.
 *
 * The registry is an append-only text file, <incoming>/.thumbd-names, one
 * "stem<TAB>url" line per claim.  It lives in thumbd's private working
 * directory, not in outgoing/, which may be published as it is.  In memory
 * it is one hash table, stem -> owner (see RUN_BIT below), about 20 bytes
 * per URL, and no strings are kept.  Only one thread (the fetcher, or the files
 * feeder) claims names, so there is no lock.
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

#include "hashset.h"
#include "sha256.h"

#define REGISTRY ".thumbd-names"

/* An owner is a 31-bit fingerprint of the URL (two URLs with one stem
 * and one fingerprint: about 1 in 2^30) plus a bit for "claimed in this
 * run", so one table answers both "whose name is this" and "is this URL a
 * duplicate": 12 bytes a URL instead of two tables. */
#define RUN_BIT 0x80000000u

static uint32_t
fingerprint(const char *url)
{
	return (uint32_t)(hash_str(url) >> 33) | 1;     /* 31 bits, never 0 */
}

struct names {
	hashset owners;         /* hash(stem) -> fingerprint(url) | RUN_BIT */
	int fd;                 /* registry, O_APPEND */
	int dirty;              /* claims written since the last names_sync() */
	char path[4096];
};

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
		if (hashset_put(&n->owners, hash_str(line), fingerprint(tab + 1)) < 0) {
			rc = -1;
			break;
		}
	}
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
	hashset_free(&n->owners);
	free(n);
}

int
names_claim(names *n, const char *key, const char *base, char out[NAME_MAX_OUT],
            char *err, size_t errlen)
{
	static const int hexlen[] = { 0, 8, 16, 64 };
	uint32_t fp = fingerprint(key);
	char hex[65] = "";

	for (size_t i = 0; i < sizeof hexlen / sizeof hexlen[0]; i++) {
		uint64_t sh;
		uint32_t owner;
		if (hexlen[i] && !hex[0])
			sha256_hex(key, strlen(key), hex);      /* only when the plain name is taken */
		if (hexlen[i])
			snprintf(out, NAME_MAX_OUT, "%s-%.*s", base, hexlen[i], hex);
		else
			snprintf(out, NAME_MAX_OUT, "%s", base);
		sh = hash_str(out);
		owner = hashset_get(&n->owners, sh);
		if (owner && (owner & ~RUN_BIT) != fp)
			continue;               /* another URL's name */
		if (owner & RUN_BIT)
			return 1;               /* ours, already claimed in this run */
		if (hashset_put(&n->owners, sh, fp | RUN_BIT) < 0)
			goto oom;
		if (owner)
			return 0;               /* ours from an earlier run */
		if (dprintf(n->fd, "%s\t%s\n", out, key) < 0) {
			snprintf(err, errlen, "cannot write the name registry: %s", strerror(errno));
			return -1;
		}
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
	char tmp[4200], *line = NULL, *slash;
	size_t cap = 0;
	ssize_t len;
	struct stat sb;
	FILE *in = NULL, *out = NULL;
	long dropped = 0, rc = -1;
	int dfd, nfd;

	if (fstat(n->fd, &sb) < 0 || sb.st_size < min_bytes)
		return 0;
	snprintf(tmp, sizeof tmp, "%s.tmp", n->path);
	if (!(in = fopen(n->path, "r")) || !(out = fopen(tmp, "w"))) {
		snprintf(err, errlen, "cannot compact %s: %s", n->path, strerror(errno));
		goto out;
	}
	while ((len = getline(&line, &cap, in)) > 0) {
		char *tab = strchr(line, '\t');
		if (line[len - 1] != '\n' || !tab) {
			dropped++;      /* torn by a crash */
			continue;
		}
		line[len - 1] = 0;
		*tab = 0;
		if (!keep(line, tab + 1, arg)) {
			dropped++;
			continue;
		}
		fprintf(out, "%s\t%s\n", line, tab + 1);
	}
	if (fflush(out) != 0 || fdatasync(fileno(out)) < 0 || fclose(out) != 0) {
		out = NULL;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	out = NULL;
	if (rename(tmp, n->path) < 0) {
		snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
		goto out;
	}
	if ((slash = strrchr(n->path, '/'))) {
		*slash = 0;
		if ((dfd = open(n->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			fsync(dfd);
			close(dfd);
		}
		*slash = '/';
	}
	/* start over from the new file */
	if ((nfd = open(n->path, O_RDWR | O_APPEND | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", n->path, strerror(errno));
		goto out;
	}
	close(n->fd);
	n->fd = nfd;
	hashset_free(&n->owners);
	fclose(in);
	if (!(in = fopen(n->path, "r")) || load_registry(n, in) < 0) {
		snprintf(err, errlen, "cannot reload %s", n->path);
		goto out;
	}
	rc = dropped;
out:
	if (out) {
		fclose(out);
		unlink(tmp);
	}
	if (in)
		fclose(in);
	free(line);
	return rc;
}
