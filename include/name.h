/*
 * name: the file names thumbd writes.  `outgoing/<stem>_<width>.<ext>` as in
 * the original, where <stem> comes from the URL's last path segment and is
 * made safe (only [A-Za-z0-9._-], never empty, never a dot-file, at most
 * NAME_STEM_MAX bytes), and a registry makes sure one stem belongs to one
 * URL, in this run and across runs: a later URL with a taken stem gets
 * "-" and the first 8 hex digits of sha256(URL).
 */
#ifndef THUMBD_NAME_H
#define THUMBD_NAME_H

#include <stddef.h>

#define NAME_STEM_MAX 100
#define NAME_EXT_MAX 15
#define NAME_MAX_OUT (NAME_STEM_MAX + 1 + 64 + 1)   /* stem, "-", hash, NUL */

/* thumbd's own files in incoming/, told apart from anything else there
 * (images handed off by other programs, a .gitkeep, the .thumbd-names,
 * -lock and -follow state files), and from each other by construction:
 * a finished download is NAME_OWN_PREFIX<stem>, its temp file while it
 * downloads NAME_PART_PREFIX<stem>, a recycled spare NAME_SPARE_PREFIX<N>.
 * Stems are unique per URL (the registry) and never start with a dot, so
 * no stem makes one kind's name another's, and no URL shares another's
 * file.  (The URL's extension is left out: <stem>.<ext> was ambiguous, as
 * stems may hold dots: x.jpg + part was x + jpg's temp file.) */
#define NAME_OWN_PREFIX ".thumbd."
#define NAME_PART_PREFIX ".thumbd-part."
#define NAME_SPARE_PREFIX ".thumbd-spare-"

/* Stem and extension (without the dot, lower-cased, "" if none) of the last
 * path segment of url (query and fragment ignored, percent-decoded). */
void name_from_url(const char *url, char stem[NAME_STEM_MAX + 1], char ext[NAME_EXT_MAX + 1]);
/* The same for a local file's base name (no percent-decoding). */
void name_from_path(const char *path, char stem[NAME_STEM_MAX + 1], char ext[NAME_EXT_MAX + 1]);

typedef struct names names;

/* Load the registry kept in <dir>/.thumbd-names (dir = the incoming
 * directory; created when absent).  NULL + err on failure. */
names *names_open(const char *dir, char *err, size_t errlen);
void names_close(names *n);

/*
 * The unique stem for key (a URL, or a local file's absolute path) whose
 * natural stem is base: base itself when free or already key's, else
 * base-<sha256 hex prefix>.  Returns 0 with out filled, 1 when key was
 * already claimed earlier in this run (a duplicate: do it once), -1 on error.
 */
int names_claim(names *n, const char *key, const char *base, char out[NAME_MAX_OUT],
                char *err, size_t errlen);

/* Make the claims written so far durable (fdatasync when there are new ones).  0 / -1. */
int names_sync(names *n);

/*
 * When the registry file is at least min_bytes, rewrite it keeping only the
 * claims for which keep(stem, url, arg) returns 1; the others' names are
 * released.  Call before the run's first names_claim.  Returns the number
 * of claims dropped (0 when the file was small), or -1 with err.
 */
long names_compact(names *n, long long min_bytes,
                   int (*keep)(const char *stem, const char *url, void *arg), void *arg,
                   char *err, size_t errlen);

/* 1 when some URL owns stem (in this run or an earlier one). */
int names_owned(const names *n, const char *stem);

#endif
