/*
 * state: see include/state.h for the design.  Loading failed.tsv costs one
 * 8-byte hash per failed URL; done-ness costs a few stat(2) calls per URL,
 * made only for URLs that are read, so neither grows with history that the
 * current lists do not touch.
 */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hashset.h"
#include "log.h"

struct state {
	hashset failed;         /* hash(url) with a final line in failed.tsv */
};

int
state_reason_is_final(const char *reason)
{
	static const char *const local[] = {
		"cannot write ", "cannot create ", "cannot rename ", "cannot open ", "out of memory",
		"interrupted", "internal error",
	};

	for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
		if (strncmp(reason, local[i], strlen(local[i])) == 0)
			return 0;
	/* fetch.c: the URL was not tried (enough), its host was paused */
	if (strncmp(reason, "host ", 5) == 0 && strstr(reason, " paused after ") != NULL)
		return 0;
	return 1;
}

static int
load_failures(state *s, const char *path)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	if (!fp)
		return errno == ENOENT ? 0 : -1;
	while ((len = getline(&line, &cap, fp)) > 0) {
		char *url, *reason;
		if (line[len - 1] == '\n')
			line[--len] = 0;
		if (!(url = strchr(line, '\t')) || !(reason = strchr(url + 1, '\t')))
			continue;
		*reason++ = 0;
		url++;
		if (state_reason_is_final(reason) && hashset_put(&s->failed, hash_str(url), 1) < 0) {
			rc = -1;
			break;
		}
	}
	free(line);
	fclose(fp);
	return rc;
}

static int
has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What a killed run leaves: incoming/<name>.part, incoming/<name> that no
 * worker finished (ours: its stem is in the registry; files other programs
 * put there are left alone), outgoing/.<name>.tmp. */
static void
clear_leftovers(const cfg *c)
{
	const char *dirs[2] = { c->incoming, c->outgoing };

	for (int i = 0; i < 2; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;
		if (!d)
			continue;
		while ((e = readdir(d))) {
			char path[4096];
			int ours;
			/* downloads and spares are NAME_OWN_PREFIX files; every
			 * other file in incoming/ belongs to whoever put it there
			 * (the daemon's hand-off, a .gitkeep), and .thumbd-* is
			 * our state */
			if (i == 1)
				ours = e->d_name[0] == '.' && has_suffix(e->d_name, ".tmp");
			else
				ours = strncmp(e->d_name, NAME_OWN_PREFIX, sizeof NAME_OWN_PREFIX - 1) == 0;
			if (!ours)
				continue;
			snprintf(path, sizeof path, "%s/%s", dirs[i], e->d_name);
			if (unlink(path) == 0)
				log_msg(LOG_INFO, "removed %s, left by an earlier run", path);
		}
		closedir(d);
	}
}

state *
state_open(const cfg *c, int retry_failed, char *err, size_t errlen)
{
	state *s = calloc(1, sizeof *s);
	char path[4096];

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(path, sizeof path, "%s/failed.tsv", c->logs);
	if (!retry_failed && load_failures(s, path) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		state_close(s);
		return NULL;
	}
	clear_leftovers(c);
	return s;
}

void
state_close(state *s)
{
	if (!s)
		return;
	hashset_free(&s->failed);
	free(s);
}

/*
 * 1 when outgoing/<stem>_<w>.<ext> exists and is whole: it ends the way its
 * format ends (JPEG EOI, PNG IEND, the length a WebP's RIFF header
 * declares).  Thumbnails are renamed into place only when written, so after
 * kill -9 one that exists is whole; after a power cut the rename may have
 * reached the disk before the data, and this check is what catches it (the
 * URL is then done again), which is why thumbnails are not fsync'd one by
 * one.
 */
static int
thumb_complete(const cfg *c, const char *stem, int w, img_format fmt)
{
	char path[4096];
	uint8_t head[12], tail[12];
	struct stat sb;
	int fd, ok = 0;

	snprintf(path, sizeof path, "%s/%s_%d.%s", c->outgoing, stem, w, img_format_ext(fmt));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size < 16
	    || pread(fd, head, sizeof head, 0) != (ssize_t)sizeof head
	    || pread(fd, tail, sizeof tail, sb.st_size - (off_t)sizeof tail) != (ssize_t)sizeof tail)
		goto out;
	switch (fmt) {
	case IMG_JPEG:
		ok = head[0] == 0xff && head[1] == 0xd8 && tail[10] == 0xff && tail[11] == 0xd9;
		break;
	case IMG_PNG:
		ok = memcmp(head, "\x89PNG", 4) == 0 && memcmp(tail + 4, "IEND", 4) == 0;
		break;
	case IMG_WEBP:
		ok = memcmp(head, "RIFF", 4) == 0 && memcmp(head + 8, "WEBP", 4) == 0
		     && (off_t)(head[4] | head[5] << 8 | head[6] << 16 | (uint32_t)head[7] << 24) + 8 == sb.st_size;
		break;
	case IMG_UNKNOWN:
		break;
	}
out:
	close(fd);
	return ok;
}

int
state_failed_before(const state *s, const char *url)
{
	return hashset_get(&s->failed, hash_str(url)) != 0;
}

state_outcome
state_lookup(const state *s, const cfg *c, const char *url, const char *stem)
{
	static const img_format formats[] = { IMG_JPEG, IMG_PNG, IMG_WEBP };

	if (state_failed_before(s, url))
		return STATE_FAILED;
	for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
		int all = 1;
		if (c->format != IMG_UNKNOWN && c->format != formats[f])
			continue;
		for (int i = 0; i < c->nsizes && all; i++)
			all = thumb_complete(c, stem, c->sizes[i], formats[f]);
		if (all)
			return STATE_DONE;
	}
	return STATE_NEW;
}

/* Names worth keeping: a thumbnail of that stem is in outgoing/ (any width,
 * any format, so a change of sizes does not release a name), or failed.tsv
 * has the URL's outcome. */
typedef struct keep_ctx {
	const state *s;
	hashset stems;
} keep_ctx;

static int
keep_name(const char *stem, const char *url, void *arg)
{
	keep_ctx *k = arg;

	return hashset_get(&k->stems, hash_str(stem)) || hashset_get(&k->s->failed, hash_str(url));
}

long
state_compact_names(const state *s, const cfg *c, names *reg, long long min_bytes, char *err,
                    size_t errlen)
{
	keep_ctx k = { .s = s };
	DIR *d = opendir(c->outgoing);
	struct dirent *e;
	long rc = -1;

	if (!d) {
		snprintf(err, errlen, "cannot read %s: %s", c->outgoing, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		/* <stem>_<width>.<ext>: the stem is what precedes the last '_' */
		char *us = strrchr(e->d_name, '_');
		if (e->d_name[0] == '.' || !us || us == e->d_name)
			continue;
		*us = 0;
		if (hashset_put(&k.stems, hash_str(e->d_name), 1) < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	rc = names_compact(reg, min_bytes, keep_name, &k, err, errlen);
	if (rc > 0)
		log_msg(LOG_INFO, "name registry compacted: %ld names released", rc);
out:
	closedir(d);
	hashset_free(&k.stems);
	return rc;
}
