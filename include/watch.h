/*
 * watch: the intake of the daemon mode (thumbd --daemon), driven by Linux
 * inotify.  Single-threaded: the network thread owns it and polls
 * watch_fd() with curl's sockets; nothing here sleeps, polls or blocks.
 *
 * Inputs.  Each [daemon] watch path is either
 *   - a URL list file, followed like `tail -F`: a line counts once it ends
 *     with '\n'; truncation or a rewrite in place (the bytes before where
 *     it was read to are not those read there) reads it again from the
 *     start; when the name is
 *     renamed away, the old file is still followed until a new file appears
 *     under the name and for a grace period (1 s) after that, since writers
 *     append to it until they reopen (a deleted one is not waited for);
 *     then it is read to its end (a last line without '\n' counts there),
 *     then the file now under the name from 0.
 *     A file that does not exist yet is waited for (its directory must);
 *   - a directory: list files "*.urls" / "*.txt" (not dot-files) there at
 *     start (in name order) or arriving later (renamed in, or written in
 *     place and closed).  Such a list is complete when it arrives; a list
 *     written to again after it was read to its end (appended to and
 *     closed again while entries of it are out) is read on; once every
 *     entry of it is read and ended, and it holds no byte not read, it is
 *     moved to <dir>/done/.
 * and the hand-off directory (incoming, may be NULL) reports image files
 * other programs move or write into it (not dot-files, not *.part / *.tmp,
 * regular files only), including those already there at start.
 * Lines follow urllist's rules (urllist_line).
 *
 * Exactly once across restarts.  Every entry carries a ticket that goes back
 * through watch_done() when that entry has ended (thumbnails made, failure
 * recorded, or skipped).  Per list, everything before the first entry not
 * yet ended is committed; watch_save() writes the committed offsets to the
 * state file ("dev ino offset:fingerprint path" per line, the fingerprint
 * a 64-bit FNV-1a of the up to 256 bytes before the offset, in hex; temp
 * file + rename), and watch_new() resumes a list whose path and inode
 * match a saved line there and whose bytes before the offset still have
 * that fingerprint (a line without one, from an older version, is not
 * checked)
 * (a followed name's file rotated away with entries not ended is saved too,
 * and looked for by its inode in the name's directory).
 * Entries handed out but not ended at a stop come again after a restart:
 * the caller skips URLs already done.  Those of a followed file truncated
 * or deleted after they were read (its lines are gone) are saved by their
 * URLs ("url " and the URL, bytes below 0x20, DEL and backslash as \xHH; an
 * older version logs such a line and ignores it) and come first after a
 * restart, until they end.  Images are not in the state file:
 * the files themselves are the record, so the caller removes (or moves) an
 * image before it calls watch_done() for it.
 *
 * Kept entries.  An entry that failed because of this machine (a full
 * disk, a paused host: the caller's call) goes to watch_keep() instead: it
 * is not ended, so the state file still stops at it (an image: its file
 * stays in incoming/).  With a retry delay
 * it comes again from watch_next() once that has passed, under its own
 * ticket, as if read again, and may end then; the delay doubles each time
 * the same entry is kept again, up to WATCH_RETRY_MAX_MS.  At most
 * WATCH_RETRY_MAX of them (and 64 MB of their text) wait at once; others,
 * and all of them without a delay, wait for the next start.
 */
#ifndef THUMBD_WATCH_H
#define THUMBD_WATCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct watch watch;

#define WATCH_RETRY_MAX_MS 3600000LL    /* a kept entry's retry delay doubles up to this */
#define WATCH_RETRY_MAX    65536        /* kept entries waiting for a retry at once */

/* One entry handed out; goes back to watch_done() exactly once.  src 0 is
 * an image, any other src a list (one reading of one file). */
typedef struct {
	uint32_t src;
	uint32_t seq;
} watch_ticket;

typedef enum {
	WATCH_NONE = 0,         /* nothing ready now: poll watch_fd(), then watch_handle() */
	WATCH_URL,              /* *text is an http(s) URL */
	WATCH_BAD,              /* *text is an unusable line (cut to 80 bytes when too long), *reason "path:line: why" */
	WATCH_IMAGE,            /* *text is incoming + "/" + name */
} watch_kind;

/* paths: the [daemon] watch entries (files to follow or directories);
 * incoming: the hand-off directory or NULL; statefile: where committed
 * offsets persist (its directory must exist), e.g. incoming/.thumbd-follow.
 * Lists the directories and opens the files (resuming from the state
 * file) before it returns.  Strings are copied.  NULL + err naming the bad
 * path: missing directory, unreadable file, a path that is neither file nor
 * directory, a path listed twice or inside another watched directory that
 * would take it too, inotify limits. */
watch *watch_new(char *const *paths, int n, const char *incoming, const char *statefile,
                 char *err, size_t errlen);

/* What watch_new checks about paths and incoming before it watches
 * anything, without inotify or the state file: for --check-config.  An
 * incoming that does not exist yet passes, and so does a followed file's
 * directory that is one of made (NULL-terminated, may be NULL) or a parent
 * of one: the directories thumbd creates at start, before the watch.
 * 0 / -1 + err. */
int watch_check(char *const *paths, int n, const char *incoming, char *const *made,
                char *err, size_t errlen);
void watch_free(watch *w);                      /* accepts NULL; does not save */

/* Poll this for POLLIN (O_NONBLOCK, O_CLOEXEC). */
int watch_fd(const watch *w);

/* Read pending inotify events without blocking (a bounded number per call:
 * when more remain, the fd stays readable) and note what became ready.
 * 0, or -1 when reading the inotify fd failed (logged): fatal. */
int watch_handle(watch *w);

/* The next entry ready now: a kept entry whose retry is due (watch_keep),
 * else lists and images in turn, one line per call (a list is never read
 * into memory).  Data already read stays ready:
 * a caller whose queue is full may stop calling and come back later without
 * a new event.  *text (and *reason, set for WATCH_BAD, else NULL) stay valid
 * until the next watch_next().  Every kind but WATCH_NONE fills *t. */
watch_kind watch_next(watch *w, const char **text, const char **reason, watch_ticket *t);

/* Milliseconds until the watch has work that no event announces (a
 * replaced followed file's grace period ends, a kept entry's retry is
 * due), 0 when due, -1 when none: the caller's poll waits at most this
 * long. */
long long watch_timeout(const watch *w);

/* 1 when an entry other than self with this URL is out (handed out and not
 * ended): a second occurrence of a URL still in flight.  Compared by a
 * 64-bit hash; costs a pass over the entries out, so call it only for a
 * URL already seen in this run. */
int watch_busy(const watch *w, const char *url, watch_ticket self);

/* The entry of t has ended.  May commit an offset, and move a finished
 * directory list to done/ (logged).  Unknown or repeated tickets are logged
 * and ignored. */
void watch_done(watch *w, watch_ticket t);

/* The entry of t failed because of this machine (a write error, a full
 * disk, a paused host): it is not ended, so its list's offset is not
 * committed past it and a directory list is not moved to done/.  It no
 * longer counts for watch_busy() until it is handed out again.  An image
 * ticket too: the caller left the file in incoming/.  retry_ms > 0 and
 * text (the URL; for a WATCH_BAD line the line, with reason its reason,
 * else reason NULL; both copied; any text for an image): watch_next()
 * hands it out again, same ticket, text and reason (an image: as
 * WATCH_IMAGE, the file under its name then; none left, it ends), after
 * retry_ms, doubled for each earlier retry of this entry, at most
 * WATCH_RETRY_MAX_MS.  Returns that delay in ms, or -1 when the entry waits
 * for the next start instead: retry_ms 0, no text, the cap (WATCH_RETRY_MAX
 * entries or 64 MB waiting, logged once), out of memory (an image's ticket
 * then ends: the next start lists its file). */
long long watch_keep(watch *w, watch_ticket t, const char *text, const char *reason,
                     long long retry_ms);

/* How many times the entry of t has been kept and handed out again (0 on
 * its first hand-out, or for an unknown ticket). */
int watch_tries(const watch *w, watch_ticket t);

/* thumbd's own download just renamed to incoming/<name>: count it as handed
 * out, so the IN_MOVED_TO the rename causes is not reported as an image.
 * Call it after the rename, before the next watch_handle(); *t goes to
 * watch_done() when its job has ended.  0, or -1 when name is already
 * handed out (or out of memory). */
int watch_claim(watch *w, const char *name, watch_ticket *t);

/* Write the committed offsets to the state file when they changed since the
 * last save (a cheap no-op otherwise).  0 / -1 + err. */
int watch_save(watch *w, char *err, size_t errlen);

/* For status lines: *sources = lists followed, being read or waiting in
 * directories; *outstanding = entries handed out and not yet done. */
void watch_counts(const watch *w, long *sources, long *outstanding);

#endif
