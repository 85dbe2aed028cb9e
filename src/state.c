/*
 * state: see include/state.h for the design.  Loading failed.tsv costs one
 * 8-byte hash per failed URL; done-ness costs a few stat(2) calls per URL,
 * made only for URLs that are read, so neither grows with history that the
 * current lists do not touch.  A URL with a line that is done again also
 * has its stem kept until the run ends: its old line goes only once the URL
 * has ended, which its thumbnails (found by that stem) or a line this run
 * wrote say; one the run only started (a transfer abandoned by a signal, a
 * download left in the queue) keeps its line.
 *
 * failed.tsv lines are read by parse_record() only: a line counts when it
 * ends with '\n' and holds exactly a time, a URL and a non-empty reason.
 * log.c cuts a record that could not be written whole; what a power cut or
 * an older thumbd left torn does not count (log.c ends such a line with
 * "\t\n", an empty fourth field), and a torn piece run together with the
 * next record gives that record's fields, never its own.
 */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "hashset.h"
#include "log.h"

/* values in state.failed, or-ed */
enum {
	F_LINE = 1,             /* a line in failed.tsv when the run began */
	F_FINAL = 2,            /* ... with a final reason: "failed before" */
	F_AGAIN = 4,            /* done again by this run: that line goes once it ends (state_prune_failures) */
	F_NOW = 8,              /* an unusable line this run has seen (state_failed_now) */
	F_ENDED = 16,           /* F_AGAIN, and this run wrote a new line of it */
};

struct state {
	hashset failed;         /* hash(url) -> F_* for every URL failed.tsv names */
	int retry_failed;
	long again;             /* URLs marked F_AGAIN */
	hashset stems;          /* hash(url) -> 1 + offset in arena of its stem, for F_AGAIN URLs */
	char *arena;            /* their stems, NUL-terminated */
	size_t alen, acap;
	off_t loaded;           /* bytes of failed.tsv when the run began */
	char path[4096];        /* failed.tsv */
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

int
state_record_failure(const char *url, const char *reason, int again)
{
	if (again && !state_reason_is_final(reason)) {
		log_msg(LOG_ERROR, "failed %s: %s (tried again; not recorded again)", url, reason);
		return 1;
	}
	return log_failure(url, reason) < 0 ? -1 : 0;
}

/* 1 when c[0..19] is a time as log_failure writes it: YYYY-MM-DDTHH:MM:SSZ. */
static int
is_record_time(const char *c)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";

	for (int i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? c[i] < '0' || c[i] > '9' : c[i] != shape[i])
			return 0;
	return 1;
}

/*
 * One line of failed.tsv (len bytes with its '\n', NUL-terminated; changed
 * in place): 0 with *url and *reason pointing into it, or -1 when it is not
 * a whole record.  A whole record is "<time>\t<url>\t<reason>\n" with no
 * tab inside a field (log_failure escapes them).  An older thumbd could run
 * a torn record together with the next ("<torn part><time>\t<url>\t<reason>"):
 * the last three fields are then the next record's, its time at the very
 * end of the first of them, so that record is taken and the torn part is not.
 */
static int
parse_record(char *line, size_t len, char **url, char **reason)
{
	char *tab[2] = { NULL, NULL }, *t;

	if (len == 0 || line[len - 1] != '\n')
		return -1;              /* cut short at the end of the file */
	line[--len] = 0;
	/* the last two tabs: they end the time and the URL */
	for (size_t i = len; i-- > 0 && !tab[0];)
		if (line[i] == '\t')
			tab[tab[1] ? 0 : 1] = line + i;
	if (!tab[0] || tab[1] == tab[0] + 1 || !tab[1][1])
		return -1;              /* fewer than three fields, or an empty URL or reason */
	t = tab[0];
	if (t - line < 20 || !is_record_time(t - 20))
		return -1;
	*tab[0] = *tab[1] = 0;
	*url = tab[0] + 1;
	*reason = tab[1] + 1;
	return 0;
}

static int
load_failures(state *s)
{
	FILE *fp = fopen(s->path, "r");
	struct stat sb;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	if (!fp)
		return errno == ENOENT ? 0 : -1;
	/* a device (/dev/null, to keep no record) holds no records */
	if (fstat(fileno(fp), &sb) < 0 || !S_ISREG(sb.st_mode)) {
		fclose(fp);
		return 0;
	}
	while ((len = getline(&line, &cap, fp)) > 0) {
		char *url, *reason;
		uint64_t h;
		s->loaded += len;
		if (parse_record(line, (size_t)len, &url, &reason) < 0)
			continue;
		h = hash_str(url);
		/* two lines (a run killed before it removed the older): the
		 * newer, which comes later, is the URL's outcome */
		if (hashset_put(&s->failed, h, (hashset_get(&s->failed, h) & ~(uint32_t)F_FINAL) | F_LINE
		                | (state_reason_is_final(reason) ? F_FINAL : 0)) < 0) {
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

/* What a killed run leaves: in incoming/ temp files of downloads, spares
 * and downloads no worker finished (name.h's kinds; files other programs
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
			/* downloads, their temp files and spares are ours (see
			 * name.h; .thumbd.* also covers the temp files and spares
			 * of earlier builds, .thumbd.<stem>.<ext>.part and
			 * .thumbd.spare-N); every other file in incoming/
			 * belongs to whoever put it there (the daemon's hand-off,
			 * a .gitkeep), and the other .thumbd-* are our state */
			if (i == 1)
				ours = e->d_name[0] == '.' && has_suffix(e->d_name, ".tmp");
			else
				ours = strncmp(e->d_name, NAME_OWN_PREFIX, sizeof NAME_OWN_PREFIX - 1) == 0
				       || strncmp(e->d_name, NAME_PART_PREFIX, sizeof NAME_PART_PREFIX - 1) == 0
				       || strncmp(e->d_name, NAME_SPARE_PREFIX, sizeof NAME_SPARE_PREFIX - 1) == 0;
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

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->retry_failed = retry_failed;
	snprintf(s->path, sizeof s->path, "%s/failed.tsv", c->logs);
	if (load_failures(s) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", s->path, strerror(errno));
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
	hashset_free(&s->stems);
	free(s->arena);
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

/* 1 when every thumbnail of stem the config c asks for exists whole, in
 * one format. */
static int
thumbs_done(const cfg *c, const char *stem)
{
	static const img_format formats[] = { IMG_JPEG, IMG_PNG, IMG_WEBP };

	for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
		int all = 1;
		if (c->format != IMG_UNKNOWN && c->format != formats[f])
			continue;
		for (int i = 0; i < c->nsizes && all; i++)
			all = thumb_complete(c, stem, c->sizes[i], formats[f]);
		if (all)
			return 1;
	}
	return 0;
}

/* url's key in state.failed: the hash of the text failed.tsv holds for it,
 * which differs only where a control character is escaped there. */
static uint64_t
failed_key(const char *url)
{
	const unsigned char *p = (const unsigned char *)url;
	char *text;
	uint64_t h;

	while (*p >= 0x20 && *p != 0x7f)
		p++;
	if (!*p || !(text = log_failure_text(url)))
		return hash_str(url);
	h = hash_str(text);
	free(text);
	return h;
}

/* url was looked up (*key: its key): 0: go on; 1: its final failure is
 * recorded (from an earlier run, or 2: an unusable line recorded by this
 * one).  When it goes on with an old line, that line is marked to go once
 * the URL ends (its thumbnails, or its new line, are then the outcome). */
static int
skip_failed(state *s, const char *url, uint64_t *key)
{
	uint64_t h = *key = failed_key(url);
	uint32_t v = hashset_get(&s->failed, h);

	if (v & F_NOW)
		return 2;
	if (!v || (v & F_AGAIN))
		return 0;
	if ((v & F_FINAL) && !s->retry_failed)
		return 1;
	if (hashset_put(&s->failed, h, v | F_AGAIN) == 0)
		s->again++;     /* out of memory: the old line stays, which is harmless */
	return 0;
}

int
state_failed_before(state *s, const char *url)
{
	uint64_t h;

	return skip_failed(s, url, &h);
}

/* Keep the stem of F_AGAIN URL h, for state_prune_failures to find its
 * thumbnails.  Out of memory it is not kept, and the URL's old line stays
 * (harmless: it is then its outcome until a run ends it). */
static void
note_stem(state *s, uint64_t h, const char *stem)
{
	size_t n = strlen(stem) + 1;

	if (hashset_get(&s->stems, h) || s->alen + n > UINT32_MAX - 1)
		return;
	if (s->alen + n > s->acap) {
		size_t cap = s->acap ? s->acap * 2 : 4096;
		char *a;
		while (cap < s->alen + n)
			cap *= 2;
		if (!(a = realloc(s->arena, cap)))
			return;
		s->arena = a;
		s->acap = cap;
	}
	if (hashset_put(&s->stems, h, (uint32_t)s->alen + 1) < 0)
		return;
	memcpy(s->arena + s->alen, stem, n);
	s->alen += n;
}

void
state_failed_now(state *s, const char *text)
{
	uint64_t h = failed_key(text);

	/* out of memory: a second copy of the line is recorded again, harmless */
	hashset_put(&s->failed, h, hashset_get(&s->failed, h) | F_NOW);
}

state_outcome
state_lookup(state *s, const cfg *c, const char *url, const char *stem)
{
	uint64_t h;

	if (skip_failed(s, url, &h))
		return STATE_FAILED;
	if (hashset_get(&s->failed, h) & F_AGAIN)
		note_stem(s, h, stem);
	return thumbs_done(c, stem) ? STATE_DONE : STATE_NEW;
}

/* 1 when the URL of key h, marked F_AGAIN (value v), has ended in this run:
 * it has a new line, or its thumbnails. */
static int
ended(const state *s, const cfg *c, uint64_t h, uint32_t v)
{
	uint32_t at;

	if (v & F_ENDED)
		return 1;
	return (at = hashset_get(&s->stems, h)) != 0 && thumbs_done(c, s->arena + at - 1);
}

long
state_prune_failures(state *s, const cfg *c, char *err, size_t errlen)
{
	char real[PATH_MAX], *line = NULL;
	FILE *in = NULL;
	fsu_replace *out = NULL, *r;
	size_t cap = 0;
	ssize_t len;
	off_t at = 0;
	long dropped = 0, rc = -1;

	if (!s || !s->again || !s->loaded)
		return 0;       /* no line was there to remove */
	/* a symlinked failed.tsv stays a symlink: the file it names is replaced */
	if (!realpath(s->path, real) || !(in = fopen(real, "r"))) {
		snprintf(err, errlen, "cannot read %s: %s", s->path, strerror(errno));
		return -1;
	}
	/* lines written by this run (at or past s->loaded) are its outcomes:
	 * the URLs they name have ended */
	if (fseeko(in, s->loaded, SEEK_SET) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", real, strerror(errno));
		goto out;
	}
	while ((len = getline(&line, &cap, in)) > 0) {
		char *url, *reason;
		uint64_t h;
		uint32_t v;
		if (parse_record(line, (size_t)len, &url, &reason) == 0
		    && ((v = hashset_get(&s->failed, h = hash_str(url))) & F_AGAIN)
		    && hashset_put(&s->failed, h, v | F_ENDED) < 0)
			break;  /* out of memory: its old line stays, harmless */
	}
	rewind(in);
	if (!(out = fsu_replace_begin(real, err, errlen)))
		goto out;
	while ((len = getline(&line, &cap, in)) > 0) {
		char *copy = NULL, *url, *reason;
		int drop = 0;
		if (at < s->loaded && (copy = strndup(line, (size_t)len))
		    && parse_record(copy, (size_t)len, &url, &reason) == 0) {
			uint64_t h = hash_str(url);
			uint32_t v = hashset_get(&s->failed, h);
			drop = (v & F_AGAIN) && ended(s, c, h, v);
		}
		free(copy);
		at += len;
		if (drop)
			dropped++;
		else if (fwrite(line, 1, (size_t)len, fsu_replace_stream(out)) != (size_t)len)
			break;  /* the commit reports it */
	}
	if (ferror(in)) {
		snprintf(err, errlen, "cannot read %s: %s", real, strerror(errno));
		goto out;
	}
	r = out;
	out = NULL;
	if (fsu_replace_commit(r, err, errlen) < 0)
		goto out;
	s->again = 0;
	if (dropped)
		log_msg(LOG_INFO, "%s: removed %ld line%s of URLs done again by this run", s->path,
		        dropped, dropped == 1 ? "" : "s");
	rc = dropped;
out:
	fsu_replace_abort(out);
	fclose(in);
	free(line);
	return rc;
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
