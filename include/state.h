/*
 * state: what earlier runs already finished, so running the same command
 * again does only what is left.  There is no separate journal file: the
 * thumbnails are the record of success (written temp + rename, and checked
 * whole before they count), logs/failed.tsv is the record of failure
 * (one line per URL, one write(2) each; the lines of URLs a run did again
 * are removed at its end, once those URLs ended), and the names registry keeps
 * every URL's output name.  state_open() reads failed.tsv and clears the
 * leftovers a killed run may have left (.tmp files in outgoing/, and the
 * files of name.h's kinds in incoming/: temp files of downloads, downloads
 * no worker got to, recycled spares).  Other files in incoming/ are not thumbd's: the
 * daemon takes them as hand-off images, a one-shot run leaves them alone.
 */
#ifndef THUMBD_STATE_H
#define THUMBD_STATE_H

#include <stddef.h>

#include "config.h"
#include "name.h"

typedef struct state state;

typedef enum {
	STATE_NEW,              /* not done: download it */
	STATE_DONE,             /* every thumbnail exists */
	STATE_FAILED,           /* failed.tsv holds its final outcome */
} state_outcome;

/* retry_failed: do the URLs failed.tsv has final outcomes for again
 * instead of skipping them.  NULL + err. */
state *state_open(const cfg *c, int retry_failed, char *err, size_t errlen);
void state_close(state *s);                     /* accepts NULL */

/* c: the config in effect now (its sizes and format say what "done" is).
 * A URL with a line in failed.tsv that is not skipped now (a local
 * failure, or --retry-failed) is noted for state_prune_failures().  One
 * thread only. */
state_outcome state_lookup(state *s, const cfg *c, const char *url, const char *stem);

/* 1 when failed.tsv holds url's final outcome from an earlier run, 2 when
 * this run has seen it already (state_failed_now), else 0: the part of
 * state_lookup for list lines that never become a URL to fetch (not
 * http(s), not parseable, too long: url is then the text failed.tsv was
 * given). */
int state_failed_before(state *s, const char *url);

/* This run recorded text (an unusable line) in failed.tsv, or found it
 * there: a second copy of it in this run is a duplicate (2 above). */
void state_failed_now(state *s, const char *text);

/* At the end of a run, when nothing logs failures any more: rewrite
 * failed.tsv (temp file, fsync, rename) without the lines that were there
 * at state_open() of the URLs looked up again since and ended: this run
 * wrote a new line of the URL, or its thumbnails (as c asks for them)
 * exist.  So each URL keeps one line, its latest outcome: the line this
 * run wrote, or none when it succeeded; a URL the run did not finish (a
 * transfer abandoned by a signal) keeps its old one.  Lines this run
 * wrote stay.  Returns the number of lines removed (0 without a rewrite
 * when there is nothing to remove), or -1 with err (failed.tsv is then
 * unchanged). */
long state_prune_failures(state *s, const cfg *c, char *err, size_t errlen);

/* When the names registry has grown to min_bytes, release the names of
 * URLs that have neither a thumbnail in outgoing/ nor a failed.tsv line.
 * Returns the number released, or -1 with err. */
long state_compact_names(const state *s, const cfg *c, names *reg, long long min_bytes, char *err,
                         size_t errlen);

/* 0 for a failure that says nothing final about the URL (this machine's
 * write errors, an interrupted transfer, a paused host): the next run
 * tries it again. */
int state_reason_is_final(const char *reason);

/* Record url's failure in failed.tsv (log_failure), except the retry of a
 * daemon entry kept for this machine's failure (again) failing for this
 * machine once more: its first try's line is enough, a line a try would
 * grow failed.tsv for as long as a host is down; that one is only logged.
 * 0 recorded, 1 not recorded on purpose (that retry), -1 could not be
 * recorded. */
int state_record_failure(const char *url, const char *reason, int again);

#endif
