/*
 * watch: see include/watch.h for the contract; here is how, and why.
 *
 * Objects.  A follow is one followed path, a dirw one watched directory;
 * both live as long as the watch.  A source is one reading of one file:
 * the file under a followed name (follow.cur), or the list a directory is
 * reading (dirw.cur), or a directory list read to its end whose entries have
 * not all ended yet.  Its id is the src of its tickets.  When a followed
 * file is rotated or truncated, the entries still out keep their old id in
 * a "drain" source (no file, only the outstanding entries), freed when the
 * last one ends; the reading goes on under a new id.  So an offset always
 * belongs to one file and a late watch_done never moves another file's
 * offset.  A drain of a truncated or deleted file has no path: no file
 * will hold its lines again, so each entry keeps its URL's text
 * (pend.text) and watch_save writes those of such drains as "url" lines;
 * the next start hands them out first from one such drain (w->carry),
 * and they leave the state file as they end.
 *
 * Events only mark.  watch_handle() reads inotify events and only marks:
 * a source "unread" (IN_MODIFY), a follow "check" (its name changed in the
 * parent directory, or the file moved or went away), a name queued in a
 * directory or in incoming.  The work (open, stat, switch files) happens
 * after the batch, and reading happens in watch_next(), one line per call.
 * Sources stay unread until a read returns end-of-file, which is what lets
 * the caller stop calling watch_next() while its queue is full and resume
 * without a new event.  Fairness: watch_next() takes the follows, the
 * directories and incoming in turn (round robin), one entry each.
 *
 * Tickets and offsets.  A source keeps, in seq order, only its entries
 * still outstanding (seq and the offset where the line starts).  The
 * committed offset is the start of the first of them, or the end of the
 * last line read when none is out: every line before it has ended or held
 * no entry.  Memory is proportional to the entries out, not to lines read.
 *
 * Fingerprints.  An offset alone cannot tell a file rewritten in place
 * ("cmd > file" refilled past it before we read, or the same inode and
 * size at a restart) from one appended to.  So a source keeps the up to
 * FP_BYTES bytes before where it has read to (tail), and each line end and
 * entry the FNV-1a of the bytes before it (fp_here), which the state file
 * saves with the committed offset.  Reading on after an end of file
 * re-reads tail first (one small pread), and a resume hashes the bytes
 * before the saved offset; either differing starts the file over, the
 * URLs done already being skipped by the caller.
 *
 * Retries.  A kept entry stays among its source's entries out (so the
 * offset stays before it, and a drain or a finished directory list stays
 * with it); its text waits in w->rq, a min-heap on due time, so
 * watch_next() costs O(1) when nothing is due and O(log n) per retry, and
 * watch_timeout() reads the earliest due time off its top.  The heap holds
 * copies, not pointers: when a retry comes due, source_find and pend_find
 * say whether its entry is still out and kept (it may have ended some
 * other way, or its source may be gone); a stale one is dropped then.
 * The pend's tries counts the retries, for the doubling delay.  A kept
 * hand-off image stays handed out (its name taken) with kept set, and
 * its retry is handed out as the file under the name by then.  Every
 * retry asks watch_busy() (its URL was claimed in this run), so that
 * reads a count per URL of the entries out (w->busy), not the entries.
 *
 * Bounds.  Lines are assembled in a fixed URLLIST_LINE_MAX buffer (a longer
 * line is reported, its rest skipped); files are read in READ_CHUNK pieces
 * with pread(2) (regular files: never blocks, O_NONBLOCK only keeps a FIFO
 * under a watched name from blocking open); a directory queues at most
 * DIR_QUEUE_MAX names and incoming IMG_QUEUE_MAX: past that they are
 * dropped and the directory is listed again once its queue has drained;
 * one watch_handle() reads at most EVENT_READS_MAX buffers of events.
 *
 * Overflow.  IN_Q_OVERFLOW means events were lost: rescan() re-checks every
 * followed name, marks every followed file unread and lists the
 * directories and incoming again (what is queued or out is not queued
 * twice).  rescan() is also how watch_new() starts.
 *
 * Rotation.  A followed file renamed away is still followed (its inotify
 * watch is on the inode) while the name is empty and for FOLLOW_GRACE_MS
 * after a new file appears there, since writers append to it until they
 * reopen; then it is read to its end and retired (a drain while entries
 * are out).  A deleted one is read to its end at once.  A retired file
 * keeps its path, device and inode and is saved under the followed name;
 * after a restart follow_recover looks for that inode in the name's
 * directory and reads the file on from its committed offset, or logs that
 * it is gone.  watch_timeout() tells the caller when a grace period ends.
 *
 * Limits.  A rotated-away file moved to another directory while stopped is
 * not found (logged); a path holding a newline is not saved (read again
 * from 0 after a restart); a watched directory that is deleted or moved is
 * logged and no longer watched.
 */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "hashset.h"
#include "log.h"
#include "monotime.h"
#include "urllist.h"

#define PATH_CAP        4096
#define READ_CHUNK      16384
#define DIR_QUEUE_MAX   4096
#define IMG_QUEUE_MAX   65536
#define STATE_LINES_MAX 65536
#define STATE_LINE_CAP  (4 * URLLIST_LINE_MAX + 16)     /* "url " + a URL, each byte maybe \xHH */
#define EVENT_READS_MAX 64
#define DIR_SCAN_MAX    100000  /* entries looked at for a rotated-away file */
#define DONE_RACES_MAX  100     /* done/<name>.N taken under done_move's feet, in a row */
#define FOLLOW_GRACE_MS 1000    /* a replaced file is still read this long (follow_check) */
#define RETRY_BYTES_MAX ((size_t)64 << 20)      /* text of the kept entries waiting for a retry */
#define FP_BYTES        256     /* bytes before an offset that its fingerprint covers */

#define FOLLOW_DIR_MASK  (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)
#define FOLLOW_FILE_MASK (IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)
#define TAKE_MASK        (IN_MOVED_TO | IN_CLOSE_WRITE)
#define GONE_MASK        (IN_MOVE_SELF | IN_DELETE_SELF)

enum { SRC_FOLLOW, SRC_DIRLIST, SRC_DRAIN };
enum { REF_FOLLOW_DIR, REF_FOLLOW_FILE, REF_DIR, REF_INCOMING };

typedef struct pend {
	uint32_t seq;
	uint8_t live;
	uint8_t kept;           /* kept, its retry waiting in watch.rq (watch_keep) */
	uint8_t tries;          /* retries scheduled so far: the next delay doubles */
	off_t start;            /* where its line starts */
	uint64_t fp;            /* fingerprint of the bytes before start (fp_here) */
	uint64_t key;           /* hash_str of its URL (watch_busy); 0 for a bad line or a kept entry */
	char *text;             /* its URL (NULL: a bad line), saved when no file holds it (watch_save) */
} pend;

/* A kept entry's retry (watch_keep), in watch.rq: a min-heap on due. */
typedef struct retry {
	long long due;          /* ms (monotonic) */
	watch_ticket t;
	int bad;                /* WATCH_BAD: its reason follows the text's NUL */
	size_t size;            /* bytes of text, for RETRY_BYTES_MAX */
	char *text;
} retry;

struct follow;
struct dirw;

typedef struct qname {
	struct qname *next;
	char name[];
} qname;

typedef struct source {
	struct source *prev, *next;     /* watch.sources */
	uint32_t id;
	int kind;
	struct follow *fol;             /* SRC_FOLLOW */
	struct dirw *dw;                /* SRC_DIRLIST */
	char *path;                     /* the file, for messages and the state file */
	const char *name;               /* SRC_DIRLIST: the name in dw->path */
	int fd;                         /* -1 once read to its end or drained */
	int wd;                         /* SRC_FOLLOW: watch on the file itself, -1 when none */
	dev_t dev;
	ino_t ino;
	int unread;                     /* may have data not read yet */
	int complete;                   /* a last line without '\n' counts: dir lists, a rotated-away file */
	int eof;                        /* complete and read to its end */
	int stuck;                      /* dir list that cannot be finished (read error, rename failed) */
	int away;                       /* SRC_FOLLOW: renamed away, no file under the name yet */
	struct source *onext;           /* follow.olds */
	char *rbuf;                     /* file bytes [boff, boff + rlen); rpos taken */
	size_t rpos, rlen;
	off_t boff;
	char *line;                     /* the line being assembled, URLLIST_LINE_MAX + 1 */
	size_t llen;
	urllist_rest rest;              /* the line past URLLIST_LINE_MAX */
	off_t coff;                     /* end of the last whole line taken */
	uint64_t cfp;                   /* fingerprint of the bytes before coff (fp_here) */
	char tail[FP_BYTES];            /* the file's last bytes before boff, up to FP_BYTES */
	size_t tlen;
	int verify;                     /* read to its end: check tail before reading on */
	long lineno;                    /* lines taken */
	pend *out;                      /* entries out, seq ascending, from ohead */
	size_t ohead, olen, ocap, nout;
	uint32_t next_seq;
	off_t saved;                    /* committed offset at the last save; -1 never saved */
	qname *chead, *ctail;           /* w->carry: URLs of the state file not handed out yet */
} source;

typedef struct follow {
	char *path, *dir;
	const char *base;               /* the name in dir, in path */
	source *cur;                    /* the file under the name (or the rotated-away one, see follow_check) */
	source *olds;                   /* rotated-away files found again at start, read to their end first */
	long long switch_at;            /* ms (monotonic): cur was replaced; read it to its end from then */
	int check;                      /* the name may now be another file: stat it */
} follow;

typedef struct dirw {
	char *path;
	dev_t dev;
	ino_t ino;
	qname *qhead, *qtail;
	long nq;
	int relist;                     /* names were dropped (queue full): list again when drained */
	source *cur;                    /* the list being read */
} dirw;

typedef struct img {
	struct img *hnext;              /* hash chain */
	struct img *next;               /* pending FIFO, or the list of those handed out */
	uint32_t seq;                   /* 0 while pending */
	uint8_t kept;                   /* handed out, kept for a retry waiting in watch.rq (watch_keep) */
	uint8_t tries;                  /* retries scheduled so far: the next delay doubles */
	uint8_t again;                  /* handed out, and a file arrived under its name since */
	char name[];
} img;

typedef struct wref {
	int wd, what;
	void *obj;
} wref;

typedef struct saved {
	struct saved *next;
	uintmax_t dev, ino;
	off_t off;
	uint64_t fp;            /* of the bytes before off, when has_fp (older lines lack it) */
	int has_fp;
	char path[];
} saved;

struct watch {
	int fd;
	follow *fols;
	int nfol;
	dirw *dirs;
	int ndir;
	char *incoming;                 /* NULL: no hand-off directory */
	img **itab;                     /* pending and handed-out images by name */
	size_t itabsz, icount;
	img *iqhead, *iqtail, *iout;
	long niq, niout;
	int irelist;
	uint32_t iseq;
	wref *refs;
	size_t nref, refcap;
	source *sources;
	source *carry;                  /* a drain of the URLs the state file carried over (carry_next) */
	uint32_t next_id;
	saved *saved;
	char *statefile, *statedir;
	const char *statebase;
	int dirty;                      /* something to save */
	hashset busy;                   /* pend.key of the entries out -> how many (watch_busy) */
	int busy_lost;                  /* busy could not be kept (out of memory): watch_busy scans */
	retry *rq;                      /* kept entries waiting for their retry, a min-heap on due */
	size_t nrq, rqcap, rqbytes;
	int rq_full;                    /* the cap was met (logged); cleared once half empty */
	int rr;                         /* round robin: the slot to try first */
	char text[URLLIST_LINE_MAX + 1];
	char reason[PATH_CAP + 128];
};

/* --- small helpers -------------------------------------------------------- */

static int
has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

static int
is_list_name(const char *name)
{
	return name[0] != '.' && (has_suffix(name, ".urls") || has_suffix(name, ".txt"));
}

static int
is_image_name(const char *name)
{
	return name[0] != '.' && !has_suffix(name, ".part") && !has_suffix(name, ".tmp");
}

static char *
join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p;

	if (a + 1 + b >= PATH_CAP || !(p = malloc(a + b + 2)))
		return NULL;
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --- inotify watches: wd -> the objects that asked for it ----------------- */

/* Add (or extend: IN_MASK_ADD) the watch on path for obj.  The wd, or -1
 * with err (errno kept). */
static int
ref_add(watch *w, const char *path, uint32_t mask, int what, void *obj, char *err, size_t errlen)
{
	int wd = inotify_add_watch(w->fd, path, mask | IN_MASK_ADD);

	if (wd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot watch: %s%s", path, strerror(e),
		         e == ENOSPC ? " (raise fs.inotify.max_user_watches)" : "");
		errno = e;
		return -1;
	}
	for (size_t i = 0; i < w->nref; i++)
		if (w->refs[i].wd == wd && w->refs[i].what == what && w->refs[i].obj == obj)
			return wd;
	if (w->nref == w->refcap) {
		size_t cap = w->refcap ? w->refcap * 2 : 16;
		wref *r = realloc(w->refs, cap * sizeof *r);
		if (!r) {
			snprintf(err, errlen, "out of memory");
			errno = ENOMEM;
			return -1;
		}
		w->refs = r;
		w->refcap = cap;
	}
	w->refs[w->nref++] = (wref){ wd, what, obj };
	return wd;
}

/* obj no longer wants wd; the watch goes when nobody does. */
static void
ref_del(watch *w, int wd, int what, void *obj)
{
	int others = 0;

	for (size_t i = 0; i < w->nref; ) {
		if (w->refs[i].wd == wd && w->refs[i].what == what && w->refs[i].obj == obj) {
			w->refs[i] = w->refs[--w->nref];
			continue;
		}
		others += w->refs[i].wd == wd;
		i++;
	}
	if (!others)
		inotify_rm_watch(w->fd, wd);
}

/* --- sources and their outstanding entries -------------------------------- */

static off_t
committed(const source *s)
{
	return s->nout ? s->out[s->ohead].start : s->coff;
}

static uint64_t
committed_fp(const source *s)
{
	return s->nout ? s->out[s->ohead].fp : s->cfp;
}

/* The fingerprint of the offset boff + rpos (FNV-1a of the up to FP_BYTES
 * bytes before it), from tail and rbuf: no read. */
static uint64_t
fp_here(const source *s)
{
	size_t b = s->rpos < FP_BYTES ? s->rpos : FP_BYTES, a = FP_BYTES - b;

	if (a > s->tlen)
		a = s->tlen;
	return hash_fnv(hash_fnv(HASH_FNV_BASIS, s->tail + s->tlen - a, a), s->rbuf + s->rpos - b, b);
}

/* The n bytes p at boff are passed: keep the last FP_BYTES before the new boff. */
static void
tail_push(source *s, const char *p, size_t n)
{
	size_t keep = s->tlen;

	if (n >= FP_BYTES) {
		memcpy(s->tail, p + n - FP_BYTES, FP_BYTES);
		s->tlen = FP_BYTES;
		return;
	}
	if (keep + n > FP_BYTES)
		keep = FP_BYTES - n;
	memmove(s->tail, s->tail + s->tlen - keep, keep);
	memcpy(s->tail + keep, p, n);
	s->tlen = keep + n;
}

/* The want (<= FP_BYTES, <= off) bytes of fd before off into buf: how
 * many were read (fewer: the file is shorter now), -1 on a read error. */
static ssize_t
read_before(int fd, off_t off, size_t want, char *buf)
{
	ssize_t n;

	while ((n = pread(fd, buf, want, off - (off_t)want)) < 0 && errno == EINTR)
		;
	return n;
}

/* tail read again from the file, after boff moved back (none if it cannot be). */
static void
tail_load(source *s)
{
	size_t want = s->boff < FP_BYTES ? (size_t)s->boff : FP_BYTES;

	s->tlen = read_before(s->fd, s->boff, want, s->tail) == (ssize_t)want ? want : 0;
}

/* 1 when the bytes before boff are no longer those read there: the file
 * was truncated or rewritten, maybe refilled past boff already. */
static int
tail_changed(source *s)
{
	char buf[FP_BYTES];
	ssize_t n;

	if (!s->tlen)
		return 0;
	n = read_before(s->fd, s->boff, s->tlen, buf);
	return n >= 0 && ((size_t)n != s->tlen || memcmp(buf, s->tail, s->tlen) != 0);
}

static void
note_commit(watch *w, const source *s)
{
	if (committed(s) != s->saved)
		w->dirty = 1;
}

static void
pend_compact(source *s)
{
	size_t n = 0;

	for (size_t i = s->ohead; i < s->olen; i++)
		if (s->out[i].live)
			s->out[n++] = s->out[i];
	s->ohead = 0;
	s->olen = n;
}

/* text: the entry's URL, copied (NULL: a bad line).  0 / -1 (out of memory). */
static int
pend_push(source *s, off_t start, uint64_t fp, uint32_t seq, uint64_t key, const char *text)
{
	char *copy = NULL;

	if (text && !(copy = strdup(text)))
		return -1;
	if (s->olen == s->ocap) {
		pend_compact(s);
		if (s->olen * 2 > s->ocap || s->ocap == 0) {
			size_t cap = s->ocap ? s->ocap * 2 : 16;
			pend *p = realloc(s->out, cap * sizeof *p);
			if (!p) {
				free(copy);
				return -1;
			}
			s->out = p;
			s->ocap = cap;
		}
	}
	s->out[s->olen++] = (pend){ .seq = seq, .live = 1, .start = start, .fp = fp, .key = key,
	                            .text = copy };
	s->nout++;
	return 0;
}

/* seq's entry while it is out, or NULL. */
static pend *
pend_find(const source *s, uint32_t seq)
{
	size_t lo = s->ohead, hi = s->olen;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->out[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == s->olen || s->out[lo].seq != seq || !s->out[lo].live)
		return NULL;
	return &s->out[lo];
}

/* 1 when seq was out (and now is not), 0 when it was not. */
static int
pend_remove(source *s, uint32_t seq)
{
	pend *p = pend_find(s, seq);

	if (!p)
		return 0;
	p->live = 0;
	free(p->text);
	p->text = NULL;
	s->nout--;
	while (s->ohead < s->olen && !s->out[s->ohead].live)
		s->ohead++;
	if (s->ohead == s->olen)
		s->ohead = s->olen = 0;
	else if (s->olen - s->ohead > 2 * s->nout + 16)
		pend_compact(s);
	return 1;
}

/* An entry with URL key (pend.key, 0: none) is out, or no longer: the
 * count watch_busy() reads, so that a retry (which asks it each time)
 * costs O(1), not a pass over every entry out: a round of 65536 kept
 * entries coming due took seconds per round that way, with the loop
 * unanswered.  A count that could not be kept would lie both ways, so
 * once memory fails watch_busy() goes back to the pass. */
static void
busy_lost(watch *w)
{
	log_msg(LOG_WARNING, "watch: out of memory counting the URLs in flight; "
	        "duplicates are looked for the slow way from now on");
	w->busy_lost = 1;
	hashset_free(&w->busy);
}

static void
busy_add(watch *w, uint64_t key)
{
	if (key && !w->busy_lost
	    && hashset_put(&w->busy, key, hashset_get(&w->busy, key) + 1) < 0)
		busy_lost(w);
}

static void
busy_drop(watch *w, uint64_t key)
{
	uint32_t n;

	if (!key || w->busy_lost)
		return;
	if ((n = hashset_get(&w->busy, key)) <= 1)
		hashset_del(&w->busy, key);
	else if (hashset_put(&w->busy, key, n - 1) < 0)
		busy_lost(w);
}

static uint32_t
new_id(watch *w)
{
	if (w->next_id == 0)
		w->next_id = 1;         /* 0 is the images' src */
	return w->next_id++;
}

static source *
source_new(watch *w, int kind, const char *path, int fd, const struct stat *sb)
{
	source *s = calloc(1, sizeof *s);

	if (!s || !(s->path = strdup(path)) || !(s->rbuf = malloc(READ_CHUNK))
	    || !(s->line = malloc(URLLIST_LINE_MAX + 1))) {
		if (s) {
			free(s->path);
			free(s->rbuf);
			free(s);
		}
		return NULL;
	}
	s->id = new_id(w);
	s->kind = kind;
	s->fd = fd;
	s->wd = -1;
	s->dev = sb->st_dev;
	s->ino = sb->st_ino;
	s->unread = 1;
	s->saved = -1;
	s->cfp = HASH_FNV_BASIS;
	s->next = w->sources;
	if (w->sources)
		w->sources->prev = s;
	w->sources = s;
	w->dirty = 1;
	return s;
}

/* Stop reading s: close the file, drop the buffers. */
static void
source_close(watch *w, source *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->wd >= 0 && s->fol)
		ref_del(w, s->wd, REF_FOLLOW_FILE, s->fol);
	s->wd = -1;
	free(s->rbuf);
	free(s->line);
	s->rbuf = s->line = NULL;
}

static void
source_free(watch *w, source *s)
{
	source_close(w, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sources = s->next;
	if (s->next)
		s->next->prev = s->prev;
	/* a drain without a path may have had its URLs in the state file */
	if (s->saved >= 0 || s->kind != SRC_DRAIN || !s->path)
		w->dirty = 1;
	for (size_t i = s->ohead; i < s->olen; i++)
		if (s->out[i].live)
			free(s->out[i].text);
	while (s->chead) {
		qname *q = s->chead;
		s->chead = q->next;
		free(q);
	}
	if (w->carry == s)
		w->carry = NULL;
	free(s->out);
	free(s->path);
	free(s);
}

/* A drain under id (no file, no path: entries out only), in w->sources;
 * NULL when out of memory. */
static source *
drain_new(watch *w, uint32_t id)
{
	source *d = calloc(1, sizeof *d);

	if (!d)
		return NULL;
	d->id = id;
	d->kind = SRC_DRAIN;
	d->fd = d->wd = -1;
	d->saved = -1;
	d->next = w->sources;
	if (w->sources)
		w->sources->prev = d;
	w->sources = d;
	return d;
}

/* The entries out of s keep its id in a drain; s goes on under a new id.
 * Without memory for the drain they simply stay with s. */
static void
source_renew(watch *w, source *s)
{
	source *d;

	if (s->nout && (d = drain_new(w, s->id))) {
		d->out = s->out;
		d->ohead = s->ohead;
		d->olen = s->olen;
		d->ocap = s->ocap;
		d->nout = s->nout;
		s->out = NULL;
		s->ohead = s->olen = s->ocap = s->nout = 0;
		s->id = new_id(w);
		s->next_seq = 0;
	} else if (!s->nout) {
		s->id = new_id(w);
		s->next_seq = 0;
	}
	w->dirty = 1;
}

/* s was read to its end and is not read again: free it, or keep it as a
 * drain while entries are out. */
static void
source_retire(watch *w, source *s)
{
	struct stat sb;

	/* deleted: no name holds it after a restart, so its entries out are
	 * saved by their URLs (watch_save), like those of a truncated file */
	if (s->nout && s->fd >= 0 && fstat(s->fd, &sb) == 0 && sb.st_nlink == 0) {
		free(s->path);
		s->path = NULL;
	}
	source_close(w, s);
	if (!s->nout) {
		source_free(w, s);
		return;
	}
	s->kind = SRC_DRAIN;
	s->fol = NULL;
	s->dw = NULL;
	w->dirty = 1;
}

static source *
source_find(const watch *w, uint32_t id)
{
	for (source *s = w->sources; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

/* Start s where the state file says, when it names this very file: count
 * the lines before that offset, so messages still say file:line. */
static void
source_resume(watch *w, source *s, const struct stat *sb)
{
	saved **pp, **other = NULL, *e;
	off_t off, pos = 0;
	long lines = 0;
	char last = '\n';
	uint64_t fp;
	int has_fp;

	for (pp = &w->saved; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->path, s->path) != 0)
			continue;
		if ((*pp)->dev == (uintmax_t)sb->st_dev && (*pp)->ino == (uintmax_t)sb->st_ino)
			break;
		if (!other)
			other = pp;
	}
	if (!*pp) {
		/* a followed name's other file is follow_recover's to look for */
		if (other && s->kind == SRC_DIRLIST) {
			e = *other;
			*other = e->next;
			free(e);
			w->dirty = 1;
			log_msg(LOG_INFO, "watch: %s is another file than at the last stop; "
			        "reading it from the start", s->path);
		}
		return;
	}
	e = *pp;
	*pp = e->next;
	off = e->off;
	fp = e->fp;
	has_fp = e->has_fp;
	w->dirty = 1;
	free(e);
	if (off > sb->st_size) {
		log_msg(LOG_WARNING, "watch: %s is shorter than at the last stop (truncated); "
		        "reading it from the start", s->path);
		return;
	}
	while (pos < off) {
		size_t want = off - pos < READ_CHUNK ? (size_t)(off - pos) : READ_CHUNK;
		ssize_t n = pread(s->fd, s->rbuf, want, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_msg(LOG_WARNING, "watch: %s: cannot read up to the saved offset; "
			        "reading it from the start", s->path);
			goto from_start;
		}
		for (char *p = s->rbuf, *end = s->rbuf + n; (p = memchr(p, '\n', end - p)); p++)
			lines++;
		last = s->rbuf[n - 1];
		tail_push(s, s->rbuf, (size_t)n);
		pos += n;
	}
	if (last != '\n' && off != sb->st_size) {
		log_msg(LOG_WARNING, "watch: %s: the saved offset %lld is not at a line end; "
		        "reading it from the start", s->path, (long long)off);
		goto from_start;
	}
	/* same path, device and inode, long enough: still maybe another file
	 * (an inode number reused) or this one rewritten in place */
	if (has_fp && hash_fnv(HASH_FNV_BASIS, s->tail, s->tlen) != fp) {
		log_msg(LOG_WARNING, "watch: %s: the bytes before the saved offset %lld are not those "
		        "read before the stop (rewritten, or another file); reading it from the start",
		        s->path, (long long)off);
		goto from_start;
	}
	s->cfp = hash_fnv(HASH_FNV_BASIS, s->tail, s->tlen);
	s->boff = s->coff = s->saved = off;
	s->lineno = lines + (last != '\n');
	if (off > 0)
		log_msg(LOG_INFO, "watch: %s: resuming after line %ld (byte %lld)", s->path,
		        s->lineno, (long long)off);
	return;
from_start:
	s->tlen = 0;
}

/* --- reading lines -------------------------------------------------------- */

static void
source_restart(watch *w, source *s)
{
	source_renew(w, s);
	s->boff = s->coff = 0;
	s->rpos = s->rlen = s->llen = 0;
	memset(&s->rest, 0, sizeof s->rest);
	s->lineno = 0;
	s->tlen = 0;
	s->cfp = HASH_FNV_BASIS;
	s->verify = 0;
}

/* The next physical line of s into s->line, ending at *end.  1: a line;
 * 0: none now (s->unread cleared; s->eof set at the end of a complete
 * source); -1: read error (logged). */
static int
read_line(watch *w, source *s, off_t *end)
{
	for (;;) {
		struct stat sb;
		ssize_t n;

		if (s->rpos < s->rlen) {
			char *p = s->rbuf + s->rpos, *nl = memchr(p, '\n', s->rlen - s->rpos);
			size_t len = nl ? (size_t)(nl - p) : s->rlen - s->rpos;
			size_t room = URLLIST_LINE_MAX - s->llen;
			if (len > room)
				urllist_rest_add(&s->rest, p + room, len - room);
			memcpy(s->line + s->llen, p, len > room ? room : len);
			s->llen += len > room ? room : len;
			s->rpos += len;
			if (!nl)
				continue;
			s->rpos++;
			s->line[s->llen] = 0;
			*end = s->boff + (off_t)s->rpos;
			return 1;
		}
		if (s->rlen)
			tail_push(s, s->rbuf, s->rlen);
		s->boff += (off_t)s->rlen;
		s->rpos = s->rlen = 0;
		/* read to its end before: a file rewritten since ("cmd > file")
		 * may be longer than boff already, so its size cannot tell */
		if (s->verify) {
			s->verify = 0;
			if (!s->complete && tail_changed(s)) {
				log_msg(LOG_WARNING, "watch: %s was truncated or rewritten (the bytes before "
				        "byte %lld changed); reading it again from the start", s->path,
				        (long long)s->boff);
				source_restart(w, s);
				continue;
			}
		}
		n = pread(s->fd, s->rbuf, READ_CHUNK, s->boff);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_msg(LOG_ERROR, "watch: cannot read %s: %s", s->path, strerror(errno));
			s->unread = 0;
			return -1;
		}
		if (n > 0) {
			s->rlen = (size_t)n;
			continue;
		}
		if (!s->complete && fstat(s->fd, &sb) == 0 && sb.st_size < s->boff) {
			log_msg(LOG_WARNING, "watch: %s was truncated (%lld bytes, %lld read); "
			        "reading it again from the start", s->path, (long long)sb.st_size,
			        (long long)s->boff);
			source_restart(w, s);
			continue;
		}
		s->unread = 0;
		s->verify = 1;
		if (!s->complete)
			return 0;
		s->eof = 1;
		if (!s->llen && !s->rest.len)
			return 0;
		s->line[s->llen] = 0;
		*end = s->boff;
		return 1;
	}
}

/* The next entry of s, or WATCH_NONE when it has none now. */
static watch_kind
source_next(watch *w, source *s, const char **text, const char **reason, watch_ticket *t)
{
	for (;;) {
		const char *line = NULL, *why = NULL;
		urllist_kind k;
		uint64_t key;
		off_t end, start;
		uint64_t sfp;
		int r;

		if (s->next_seq == UINT32_MAX)
			source_renew(w, s);     /* 2^32 entries: go on under a new id */
		if ((r = read_line(w, s, &end)) <= 0) {
			if (r < 0 && s->kind == SRC_DIRLIST)
				s->stuck = s->eof = 1;
			return WATCH_NONE;
		}
		start = s->coff;
		sfp = s->cfp;
		s->coff = end;
		s->cfp = fp_here(s);
		s->lineno++;
		/* start 0: the file's first line, which may follow a BOM */
		k = urllist_line(s->line, s->llen, start == 0, s->rest.len ? &s->rest : NULL, &line, &why);
		s->llen = 0;
		memset(&s->rest, 0, sizeof s->rest);
		if (k == URLLIST_END) {
			note_commit(w, s);
			continue;
		}
		key = k == URLLIST_URL ? hash_str(line) : 0;
		if (pend_push(s, start, sfp, s->next_seq, key, k == URLLIST_URL ? line : NULL) < 0) {
			log_msg(LOG_ERROR, "watch: out of memory");
			s->coff = s->boff = start;      /* read it again next time */
			s->cfp = sfp;
			s->rpos = s->rlen = 0;
			tail_load(s);
			s->lineno--;
			s->eof = 0;
			return WATCH_NONE;
		}
		busy_add(w, key);
		t->src = s->id;
		t->seq = s->next_seq++;
		snprintf(w->text, sizeof w->text, "%s", line);
		*text = w->text;
		if (k == URLLIST_URL) {
			*reason = NULL;
			return WATCH_URL;
		}
		snprintf(w->reason, sizeof w->reason, "%s:%ld: %s", s->path, s->lineno, why);
		*reason = w->reason;
		return WATCH_BAD;
	}
}

/* --- followed files ------------------------------------------------------- */

/* Open the file now under f's name as f->cur.  0 (also when there is none),
 * -1 + err. */
static int
follow_open(watch *w, follow *f, char *err, size_t errlen)
{
	struct stat sb;
	source *s;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), wd;

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: cannot open URL list: %s", f->path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", f->path);
		close(fd);
		return -1;
	}
	if (!(s = source_new(w, SRC_FOLLOW, f->path, fd, &sb))) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return -1;
	}
	s->fol = f;
	if ((wd = ref_add(w, f->path, FOLLOW_FILE_MASK, REF_FOLLOW_FILE, f, err, errlen)) < 0) {
		int gone = errno == ENOENT;
		source_free(w, s);
		if (gone)
			f->check = 1;   /* renamed away already: the parent's event says so */
		return gone ? 0 : -1;
	}
	s->wd = wd;
	source_resume(w, s, &sb);
	f->cur = s;
	return 0;
}

/* f's name changed, or events were lost.  The same file: read on.  The
 * file was deleted: read it to its end, then whatever comes under the name.
 * It was renamed away (logrotate's "create"): writers may go on appending
 * to it until they are told to reopen, so, like tail -F, it is still
 * followed while the name is empty, and for FOLLOW_GRACE_MS after a new
 * file appears there; then it is read to its end and the new one from 0
 * (follow_tick, follow_next).  A first file: open it.  0 / -1 + err. */
static int
follow_check(watch *w, follow *f, char *err, size_t errlen)
{
	source *s = f->cur;
	struct stat sb, own;
	int there = stat(f->path, &sb) == 0 && S_ISREG(sb.st_mode);

	f->check = 0;
	if (!s)
		return there ? follow_open(w, f, err, errlen) : 0;
	if (s->complete)
		return 0;               /* switches when read to its end */
	s->unread = 1;
	if (there && sb.st_dev == s->dev && sb.st_ino == s->ino) {
		/* the same file (maybe renamed back): read on, and make sure the
		 * watch is on it (the name may have moved between our open and
		 * our inotify_add_watch) */
		char e2[PATH_CAP + 128];
		int wd = ref_add(w, f->path, FOLLOW_FILE_MASK, REF_FOLLOW_FILE, f, e2, sizeof e2);
		if (wd >= 0 && wd != s->wd) {
			if (s->wd >= 0)
				ref_del(w, s->wd, REF_FOLLOW_FILE, f);
			s->wd = wd;
		}
		s->away = 0;
		f->switch_at = 0;
		return 0;
	}
	if (fstat(s->fd, &own) < 0 || own.st_nlink == 0) {
		log_msg(LOG_INFO, "watch: %s was deleted; reading the old file to its end", f->path);
		s->complete = 1;
		return 0;
	}
	if (!there) {
		if (!s->away)
			log_msg(LOG_INFO, "watch: %s was moved away; still reading the old file "
			        "until a new one appears under the name", f->path);
		s->away = 1;
		return 0;
	}
	if (!f->switch_at) {
		log_msg(LOG_INFO, "watch: %s was replaced; reading the old file for %d ms more, "
		        "then to its end, then the new one", f->path, FOLLOW_GRACE_MS);
		f->switch_at = mono_ms() + FOLLOW_GRACE_MS;
	}
	return 0;
}

/* Grace periods that are over: read those old files to their end. */
static void
follow_tick(watch *w)
{
	long long now = -1;

	for (int i = 0; i < w->nfol; i++) {
		follow *f = &w->fols[i];
		if (!f->switch_at)
			continue;
		if (now < 0)
			now = mono_ms();
		if (now < f->switch_at)
			continue;
		f->switch_at = 0;
		if (f->cur) {
			f->cur->complete = 1;
			f->cur->unread = 1;
		}
	}
}

/* f's rotated-away file is read to its end: on to the one under the name. */
static void
follow_switch(watch *w, follow *f)
{
	char err[PATH_CAP + 128];

	source_retire(w, f->cur);
	f->cur = NULL;
	f->switch_at = 0;
	if (follow_open(w, f, err, sizeof err) < 0)
		log_msg(LOG_ERROR, "watch: %s", err);
	else if (f->cur)
		log_msg(LOG_INFO, "watch: now following the new %s", f->path);
}

static watch_kind
follow_next(watch *w, follow *f, const char **text, const char **reason, watch_ticket *t)
{
	while (f->olds) {
		source *s = f->olds;
		watch_kind k = s->eof ? WATCH_NONE : source_next(w, s, text, reason, t);

		if (k != WATCH_NONE)
			return k;
		if (!s->eof && s->unread)
			return WATCH_NONE;      /* out of memory: later */
		f->olds = s->onext;     /* read to its end, or a read error (logged) */
		source_retire(w, s);
	}
	for (;;) {
		source *s = f->cur;
		watch_kind k;

		if (s && s->eof) {
			follow_switch(w, f);
			continue;
		}
		if (!s || !s->unread)
			return WATCH_NONE;
		if ((k = source_next(w, s, text, reason, t)) != WATCH_NONE || !s->eof)
			return k;
	}
}

/* At start, after follow_open: saved lines of f's name that are not the
 * file under it now are files rotated away before the stop with lines not
 * read or not ended.  Look for each in f's directory (by device and inode)
 * and read it on from where it was, to its end; say so when it is gone. */
/* 1 when fd's bytes before e's offset are those read there before the
 * stop (or e, an older state line, has no fingerprint to tell). */
static int
saved_matches(int fd, const saved *e, const struct stat *sb)
{
	char buf[FP_BYTES];
	size_t want = e->off < FP_BYTES ? (size_t)e->off : FP_BYTES;

	if (!e->has_fp)
		return 1;
	if (e->off > sb->st_size)
		return 0;
	return read_before(fd, e->off, want, buf) == (ssize_t)want
	       && hash_fnv(HASH_FNV_BASIS, buf, want) == e->fp;
}

static void
follow_recover(watch *w, follow *f)
{
	saved **pp = &w->saved;

	while (*pp) {
		saved *e = *pp;
		char *found = NULL;
		struct stat sb;
		source *s;
		DIR *dp;
		int fd = -1;

		if (strcmp(e->path, f->path) != 0) {
			pp = &e->next;
			continue;
		}
		if ((dp = opendir(f->dir))) {
			struct dirent *de;
			for (long n = 0; !found && n < DIR_SCAN_MAX && (de = readdir(dp)); n++) {
				char *p;
				if ((uintmax_t)de->d_ino != e->ino || !(p = join(f->dir, de->d_name)))
					continue;
				if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)
				    && (uintmax_t)sb.st_dev == e->dev && (uintmax_t)sb.st_ino == e->ino)
					found = p;
				else
					free(p);
			}
			closedir(dp);
		}
		if (found)
			fd = open(found, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		/* the inode number alone may be a later file's (even our own
		 * state file's): its bytes before the offset must be the old ones */
		if (fd < 0 || fstat(fd, &sb) < 0 || (uintmax_t)sb.st_ino != e->ino || !saved_matches(fd, e, &sb)
		    || !(s = source_new(w, SRC_FOLLOW, f->path, fd, &sb))) {
			log_msg(LOG_WARNING, "watch: %s is another file than at the last stop, and the old "
			        "one (device %ju, inode %ju) is no longer in %s: its lines after byte %lld "
			        "are not read", f->path, e->dev, e->ino, f->dir, (long long)e->off);
			if (fd >= 0)
				close(fd);
			*pp = e->next;
			free(e);
			free(found);
			w->dirty = 1;
			continue;
		}
		log_msg(LOG_INFO, "watch: %s is another file than at the last stop; the old one is now %s: "
		        "reading it on from byte %lld to its end", f->path, found, (long long)e->off);
		free(found);
		s->fol = f;
		s->complete = 1;
		source_resume(w, s, &sb);       /* takes e off the list */
		s->onext = f->olds;
		f->olds = s;
		pp = &w->saved;
	}
}

/* --- directories of lists ------------------------------------------------- */

static void
dir_enqueue(dirw *d, const char *name)
{
	size_t len = strlen(name);
	qname *q;

	for (q = d->qhead; q; q = q->next)
		if (strcmp(q->name, name) == 0)
			return;
	if (d->nq >= DIR_QUEUE_MAX || !(q = malloc(sizeof *q + len + 1))) {
		d->relist = 1;
		return;
	}
	memcpy(q->name, name, len + 1);
	q->next = NULL;
	if (d->qtail)
		d->qtail->next = q;
	else
		d->qhead = q;
	d->qtail = q;
	d->nq++;
}

/* The names in dir that pass keep(), sorted, up to max (more: *more = 1).
 * NULL with *n = 0 when there are none; -1 when dir cannot be read. */
static int
list_dir(const char *dir, int (*keep)(const char *), long max, char ***names, long *n, int *more)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	long cap = 0;

	*names = NULL;
	*n = 0;
	if (!dp)
		return -1;
	while ((e = readdir(dp))) {
		char *dup;
		if (e->d_type == DT_DIR || !keep(e->d_name))
			continue;
		if (*n >= max) {
			*more = 1;
			break;
		}
		if (*n == cap) {
			long nc = cap ? cap * 2 : 32;
			char **p = realloc(*names, (size_t)nc * sizeof *p);
			if (!p) {
				*more = 1;
				break;
			}
			*names = p;
			cap = nc;
		}
		if (!(dup = strdup(e->d_name))) {
			*more = 1;
			break;
		}
		(*names)[(*n)++] = dup;
	}
	closedir(dp);
	if (*n)
		qsort(*names, (size_t)*n, sizeof **names, cmp_names);
	return 0;
}

static int
dir_list(dirw *d, char *err, size_t errlen)
{
	char **names;
	long n;

	if (list_dir(d->path, is_list_name, DIR_QUEUE_MAX - d->nq, &names, &n, &d->relist) < 0) {
		snprintf(err, errlen, "%s: cannot list: %s", d->path, strerror(errno));
		return -1;
	}
	for (long i = 0; i < n; i++) {
		dir_enqueue(d, names[i]);
		free(names[i]);
	}
	free(names);
	return 0;
}

/* Move src to dst unless dst exists: link(2) fails on an existing name
 * where rename(2) would replace it; a file system without hard links gets
 * a stat-then-rename.  0 moved, 1 dst is taken, -1 (errno). */
static int
move_noreplace(const char *src, const char *dst)
{
	struct stat sb;

	if (link(src, dst) == 0)
		return unlink(src) == 0 || errno == ENOENT ? 0 : -1;
	if (errno == EEXIST)
		return 1;
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS)
		return -1;
	if (lstat(dst, &sb) == 0)
		return 1;
	return errno == ENOENT ? rename(src, dst) : -1;
}

/* dst (its name ending at len, cap bytes) with suffix .i (none for 0):
 * 1 when that name is taken, 0 when free, -1 (errno). */
static int
done_taken(char *dst, size_t len, size_t cap, unsigned long i)
{
	struct stat sb;

	dst[len] = 0;
	if (i && (size_t)snprintf(dst + len, cap - len, ".%lu", i) >= cap - len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (lstat(dst, &sb) == 0)
		return 1;
	return errno == ENOENT ? 0 : -1;
}

/* Move src to dst (cap bytes), or to dst.N when a list of that name is in
 * done/ already: an earlier list is never overwritten, and there is no
 * limit on N.  Any free N will do: gallop 1, 2, 4, ... to a free one, then
 * halve the gap down to a free one just above a taken one, so a producer
 * that always uses one name costs O(log N) stats, not N.  A name taken
 * between the look and the move (link fails) starts the search again.
 * 0 / -1 (errno). */
static int
done_move(const char *src, char *dst, size_t cap)
{
	size_t len = strlen(dst);
	int r;

	if ((r = move_noreplace(src, dst)) <= 0)
		return r;
	for (int race = 0; race < DONE_RACES_MAX; race++) {
		unsigned long lo = 0, hi = 1;   /* lo taken (0: the bare name), hi free */

		while ((r = done_taken(dst, len, cap, hi)) == 1) {
			if (hi > ULONG_MAX / 2) {
				errno = EEXIST;
				return -1;
			}
			lo = hi;
			hi *= 2;
		}
		while (r == 0 && hi - lo > 1) {
			unsigned long mid = lo + (hi - lo) / 2;
			int m = done_taken(dst, len, cap, mid);
			if (m == 1)
				lo = mid;
			else if (m == 0)
				hi = mid;
			else
				r = -1;
		}
		if (r < 0 || done_taken(dst, len, cap, hi) < 0)        /* dst: name.hi again */
			return -1;
		if ((r = move_noreplace(src, dst)) <= 0)
			return r;
	}
	errno = EEXIST;
	return -1;
}

/* Every entry of s is read and ended: move it to <dir>/done/. */
static void
dir_finish(watch *w, source *s)
{
	char ddir[PATH_CAP], dst[PATH_CAP];
	struct stat sb;

	if ((size_t)snprintf(ddir, sizeof ddir, "%s/done", s->dw->path) >= sizeof ddir
	    || (size_t)snprintf(dst, sizeof dst, "%s/%s", ddir, s->name) >= sizeof dst) {
		log_msg(LOG_ERROR, "watch: %s/done/%s: path too long; the list stays", s->dw->path, s->name);
		s->stuck = 1;
		return;
	}
	if (stat(s->path, &sb) < 0 || sb.st_dev != s->dev || sb.st_ino != s->ino) {
		/* deleted, or replaced: a new file under the name is queued by its own event */
		log_msg(LOG_INFO, "watch: %s done (%ld line%s); the name no longer holds it, nothing moved",
		        s->path, s->lineno, s->lineno == 1 ? "" : "s");
		source_free(w, s);
		return;
	}
	if (sb.st_size > s->boff) {
		/* written to since it was read to its end (a writer that appends
		 * in steps, closing each time): moving it would lose the rest */
		log_msg(LOG_INFO, "watch: %s grew after it was read (%lld bytes, %lld read); reading on",
		        s->path, (long long)sb.st_size, (long long)s->boff);
		dir_enqueue(s->dw, s->name);
		return;
	}
	if ((mkdir(ddir, 0755) < 0 && errno != EEXIST) || done_move(s->path, dst, sizeof dst) < 0) {
		log_msg(LOG_ERROR, "watch: cannot move %s to %s: %s; it stays until the next start",
		        s->path, dst, strerror(errno));
		s->stuck = 1;
		return;
	}
	log_msg(LOG_INFO, "watch: %s done (%ld line%s), moved to %s", s->path, s->lineno,
	        s->lineno == 1 ? "" : "s", dst);
	source_free(w, s);
}

/* Read s, a directory list read to its end whose entries are still out,
 * on from where it stopped, through fd.  0, or -1 (out of memory). */
static int
dir_reopen(source *s, int fd)
{
	if (!(s->rbuf = malloc(READ_CHUNK)) || !(s->line = malloc(URLLIST_LINE_MAX + 1))) {
		free(s->rbuf);
		s->rbuf = NULL;
		return -1;
	}
	s->fd = fd;
	s->rpos = s->rlen = s->llen = 0;
	memset(&s->rest, 0, sizeof s->rest);
	s->eof = 0;
	s->unread = 1;
	return 0;
}

/* Open the next queued list of d as d->cur.  1 when there is one. */
static int
dir_open_next(watch *w, dirw *d)
{
	for (;;) {
		qname *q = d->qhead;
		struct stat sb;
		source *s;
		char *path;
		int fd, busy = 0;

		if (!q) {
			char err[PATH_CAP + 128];
			if (!d->relist)
				return 0;
			d->relist = 0;
			if (dir_list(d, err, sizeof err) < 0)
				log_msg(LOG_ERROR, "watch: %s", err);
			if (!d->qhead)
				return 0;
			continue;
		}
		if (!(d->qhead = q->next))
			d->qtail = NULL;
		d->nq--;
		/* one that dir_finish found grown and queued again: if the name
		 * no longer holds it, it is finished now (nothing else would) */
		for (s = w->sources; s; s = s->next)
			if (s->kind == SRC_DIRLIST && s->dw == d && s->eof && !s->nout && !s->stuck
			    && strcmp(s->name, q->name) == 0)
				break;
		path = join(d->path, q->name);
		free(q);
		if (!path)
			continue;
		if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
			if (errno != ENOENT)
				log_msg(LOG_ERROR, "watch: cannot open %s: %s", path, strerror(errno));
			else if (s)
				dir_finish(w, s);
			free(path);
			continue;
		}
		if (s && (fstat(fd, &sb) < 0 || sb.st_dev != s->dev || sb.st_ino != s->ino))
			dir_finish(w, s);
		if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
			for (s = w->sources; s; s = s->next)
				if (s->kind == SRC_DIRLIST && s->dw == d && s->dev == sb.st_dev
				    && s->ino == sb.st_ino)
					break;
			busy = s != NULL;
		} else {
			busy = 1;
			s = NULL;
		}
		if (s && s->eof && !s->stuck && sb.st_size > s->boff && dir_reopen(s, fd) == 0) {
			/* the same file written again (appended to, closed again)
			 * after it was read to its end: its entries are still out,
			 * so it is not a new list, but what was added is read on */
			log_msg(LOG_INFO, "watch: %s was written to again; reading on from byte %lld",
			        path, (long long)s->boff);
			free(path);
			d->cur = s;
			return 1;
		}
		if (busy || !(s = source_new(w, SRC_DIRLIST, path, fd, &sb))) {
			close(fd);      /* the same file again, nothing added (a second close-write) */
			free(path);
			continue;
		}
		free(path);
		s->dw = d;
		s->name = s->path + strlen(d->path) + 1;
		s->complete = 1;
		source_resume(w, s, &sb);
		d->cur = s;
		return 1;
	}
}

static watch_kind
dir_next(watch *w, dirw *d, const char **text, const char **reason, watch_ticket *t)
{
	for (;;) {
		source *s;
		watch_kind k;

		if (!d->cur && !dir_open_next(w, d))
			return WATCH_NONE;
		s = d->cur;
		k = source_next(w, s, text, reason, t);
		if (!s->eof)
			return k;       /* WATCH_NONE here only when out of memory */
		d->cur = NULL;
		source_close(w, s);
		if (!s->nout && !s->stuck)
			dir_finish(w, s);
		if (k != WATCH_NONE)
			return k;
	}
}

/* --- incoming ------------------------------------------------------------- */

static img **
img_slot(watch *w, const char *name)
{
	img **pp;

	if (!w->itabsz)
		return NULL;
	for (pp = &w->itab[hash_str(name) & (w->itabsz - 1)]; *pp; pp = &(*pp)->hnext)
		if (strcmp((*pp)->name, name) == 0)
			break;
	return pp;
}

/* A new entry for name in the table (not in any list yet), or NULL. */
static img *
img_add(watch *w, const char *name)
{
	size_t len = strlen(name);
	img *m, **pp;

	if (w->icount >= w->itabsz) {
		size_t sz = w->itabsz ? w->itabsz * 2 : 64;
		img **tab = calloc(sz, sizeof *tab);
		if (!tab)
			return NULL;
		for (size_t i = 0; i < w->itabsz; i++)
			while ((m = w->itab[i])) {
				w->itab[i] = m->hnext;
				pp = &tab[hash_str(m->name) & (sz - 1)];
				m->hnext = *pp;
				*pp = m;
			}
		free(w->itab);
		w->itab = tab;
		w->itabsz = sz;
	}
	if (!(m = calloc(1, sizeof *m + len + 1)))
		return NULL;
	memcpy(m->name, name, len + 1);
	pp = &w->itab[hash_str(name) & (w->itabsz - 1)];
	m->hnext = *pp;
	*pp = m;
	w->icount++;
	return m;
}

static void
img_drop(watch *w, img *m)
{
	img **pp = img_slot(w, m->name);

	if (pp && *pp == m)
		*pp = m->hnext;
	w->icount--;
	free(m);
}

/* Queue m (in the table, out of every list) at the end of the FIFO. */
static void
img_queue(watch *w, img *m)
{
	m->seq = 0;
	m->next = NULL;
	if (w->iqtail)
		w->iqtail->next = m;
	else
		w->iqhead = m;
	w->iqtail = m;
	w->niq++;
}

static void
img_enqueue(watch *w, const char *name)
{
	img **pp = img_slot(w, name), *m;

	if (pp && *pp) {
		/* pending: queued once.  Handed out: a new file under the name,
		 * or this one's own event late; its turn comes when the one out
		 * has ended (img_done), since only one job per name may run */
		if ((*pp)->seq)
			(*pp)->again = 1;
		return;
	}
	if (w->niq >= IMG_QUEUE_MAX || !(m = img_add(w, name))) {
		w->irelist = 1;
		return;
	}
	img_queue(w, m);
}

static int
img_list(watch *w, char *err, size_t errlen)
{
	char **names;
	long n;

	if (list_dir(w->incoming, is_image_name, IMG_QUEUE_MAX - w->niq, &names, &n, &w->irelist) < 0) {
		snprintf(err, errlen, "%s: cannot list: %s", w->incoming, strerror(errno));
		return -1;
	}
	for (long i = 0; i < n; i++) {
		img_enqueue(w, names[i]);
		free(names[i]);
	}
	free(names);
	return 0;
}

static void
img_hand_out(watch *w, img *m, watch_ticket *t)
{
	if (++w->iseq == 0)
		w->iseq = 1;
	m->seq = w->iseq;
	m->again = 0;
	m->next = w->iout;
	w->iout = m;
	w->niout++;
	t->src = 0;
	t->seq = m->seq;
}

static watch_kind
img_next(watch *w, const char **text, const char **reason, watch_ticket *t)
{
	for (;;) {
		img *m = w->iqhead;
		struct stat sb;

		if (!m) {
			char err[PATH_CAP + 128];
			if (!w->irelist || !w->incoming)
				return WATCH_NONE;
			w->irelist = 0;
			if (img_list(w, err, sizeof err) < 0)
				log_msg(LOG_ERROR, "watch: %s", err);
			if (!w->iqhead)
				return WATCH_NONE;
			continue;
		}
		if (!(w->iqhead = m->next))
			w->iqtail = NULL;
		w->niq--;
		if ((size_t)snprintf(w->text, sizeof w->text, "%s/%s", w->incoming, m->name) >= sizeof w->text
		    || lstat(w->text, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			img_drop(w, m);         /* gone already, or not a plain file */
			continue;
		}
		img_hand_out(w, m, t);
		*text = w->text;
		*reason = NULL;
		return WATCH_IMAGE;
	}
}

/* The link to seq's image among those handed out, or NULL. */
static img **
img_out(const watch *w, uint32_t seq)
{
	for (img *const *pp = &w->iout; *pp; pp = &(*pp)->next)
		if ((*pp)->seq == seq)
			return (img **)pp;
	return NULL;
}

/* seq's image has ended.  A file that arrived under its name meanwhile
 * (requeue: unless the caller leaves the name for the next start) is
 * queued now: its event came while the name was out (img_enqueue). */
static int
img_done(watch *w, uint32_t seq, int requeue)
{
	img **pp = img_out(w, seq), *m;

	if (!pp)
		return 0;
	m = *pp;
	*pp = m->next;
	w->niout--;
	if (requeue && m->again && w->niq < IMG_QUEUE_MAX) {
		m->kept = 0;
		m->tries = 0;           /* another file */
		img_queue(w, m);
		return 1;
	}
	if (requeue && m->again)
		w->irelist = 1;
	img_drop(w, m);
	return 1;
}

int
watch_claim(watch *w, const char *name, watch_ticket *t)
{
	img **pp = img_slot(w, name), *m = pp ? *pp : NULL;

	if (m && m->seq)
		return -1;
	if (m) {                        /* pending: take it out of the FIFO */
		img *prev = NULL;
		for (img *q = w->iqhead; q != m; q = q->next)
			prev = q;
		if (prev)
			prev->next = m->next;
		else
			w->iqhead = m->next;
		if (w->iqtail == m)
			w->iqtail = prev;
		w->niq--;
	} else if (!(m = img_add(w, name))) {
		return -1;
	}
	img_hand_out(w, m, t);
	return 0;
}

/* --- events --------------------------------------------------------------- */

/* Each watched thing marks what the event means for it; work comes later. */
static void
dispatch(watch *w, const struct inotify_event *ev)
{
	const char *name = ev->len ? ev->name : "";

	for (size_t i = 0; i < w->nref; i++) {
		const wref *r = &w->refs[i];
		follow *f = r->obj;
		dirw *d = r->obj;

		if (r->wd != ev->wd)
			continue;
		if (ev->mask & IN_IGNORED) {    /* the watch is gone: deleted, unmounted */
			if (r->what == REF_FOLLOW_FILE) {
				if (f->cur && f->cur->wd == ev->wd)
					f->cur->wd = -1;
				f->check = 1;
			} else {
				log_msg(LOG_WARNING, "watch: %s is gone; no longer watched",
				        r->what == REF_FOLLOW_DIR ? f->dir
				        : r->what == REF_DIR ? d->path : w->incoming);
			}
			continue;
		}
		switch (r->what) {
		case REF_FOLLOW_DIR:
			if ((ev->mask & FOLLOW_DIR_MASK) && strcmp(name, f->base) == 0)
				f->check = 1;
			break;
		case REF_FOLLOW_FILE:
			if ((ev->mask & IN_MODIFY) && f->cur)
				f->cur->unread = 1;
			if (ev->mask & (GONE_MASK | IN_ATTRIB))        /* IN_ATTRIB: maybe unlinked */
				f->check = 1;
			break;
		case REF_DIR:
			if ((ev->mask & TAKE_MASK) && !(ev->mask & IN_ISDIR) && is_list_name(name))
				dir_enqueue(d, name);
			else if (!ev->len && (ev->mask & GONE_MASK))
				log_msg(LOG_WARNING, "watch: %s was moved or deleted", d->path);
			break;
		case REF_INCOMING:
			if ((ev->mask & TAKE_MASK) && !(ev->mask & IN_ISDIR) && is_image_name(name))
				img_enqueue(w, name);
			else if (!ev->len && (ev->mask & GONE_MASK))
				log_msg(LOG_WARNING, "watch: %s was moved or deleted", w->incoming);
			break;
		}
	}
	if (!(ev->mask & IN_IGNORED))
		return;
	for (size_t i = 0; i < w->nref; ) {
		if (w->refs[i].wd == ev->wd)
			w->refs[i] = w->refs[--w->nref];
		else
			i++;
	}
}

/* Look at everything again: at start, and when events were lost.  at_start:
 * failures are returned (watch_new fails); later they are logged. */
static int
rescan(watch *w, int at_start, char *err, size_t errlen)
{
	for (int i = 0; i < w->nfol; i++) {
		follow *f = &w->fols[i];
		if (follow_check(w, f, err, errlen) < 0) {
			if (at_start)
				return -1;
			log_msg(LOG_ERROR, "watch: %s", err);
		}
		if (f->cur)
			f->cur->unread = 1;
	}
	for (int i = 0; i < w->ndir; i++)
		if (dir_list(&w->dirs[i], err, errlen) < 0) {
			if (at_start)
				return -1;
			log_msg(LOG_ERROR, "watch: %s", err);
		}
	if (w->incoming && img_list(w, err, errlen) < 0) {
		if (at_start)
			return -1;
		log_msg(LOG_ERROR, "watch: %s", err);
	}
	return 0;
}

int
watch_handle(watch *w)
{
	_Alignas(struct inotify_event) char buf[4096];
	char err[PATH_CAP + 128];
	int overflow = 0;

	for (int i = 0; i < EVENT_READS_MAX; i++) {
		ssize_t n = read(w->fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			log_msg(LOG_ERROR, "watch: cannot read inotify events: %s", strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		for (char *p = buf; p < buf + n; ) {
			const struct inotify_event *ev = (const void *)p;
			p += sizeof *ev + ev->len;
			if (ev->mask & IN_Q_OVERFLOW)
				overflow = 1;
			else
				dispatch(w, ev);
		}
	}
	if (overflow) {
		log_msg(LOG_WARNING, "watch: inotify queue overflowed (events lost); "
		        "looking at every watched path again");
		rescan(w, 0, err, sizeof err);
	}
	for (int i = 0; i < w->nfol; i++)
		if (w->fols[i].check && follow_check(w, &w->fols[i], err, sizeof err) < 0)
			log_msg(LOG_ERROR, "watch: %s", err);
	return 0;
}

/* --- kept entries waiting for a retry ------------------------------------ */

static int
rq_before(const retry *a, const retry *b)
{
	return a->due < b->due;
}

static void
rq_up(watch *w, size_t i)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		retry tmp;
		if (!rq_before(&w->rq[i], &w->rq[parent]))
			break;
		tmp = w->rq[i];
		w->rq[i] = w->rq[parent];
		w->rq[parent] = tmp;
		i = parent;
	}
}

static void
rq_down(watch *w, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, least = i;
		retry tmp;
		if (l < w->nrq && rq_before(&w->rq[l], &w->rq[least]))
			least = l;
		if (r < w->nrq && rq_before(&w->rq[r], &w->rq[least]))
			least = r;
		if (least == i)
			return;
		tmp = w->rq[i];
		w->rq[i] = w->rq[least];
		w->rq[least] = tmp;
		i = least;
	}
}

/* The earliest retry, out of the heap (the caller frees its text). */
static retry
rq_take(watch *w)
{
	retry r = w->rq[0];

	w->rq[0] = w->rq[--w->nrq];
	rq_down(w, 0);
	w->rqbytes -= r.size;
	if (w->rq_full && w->nrq < WATCH_RETRY_MAX / 2 && w->rqbytes < RETRY_BYTES_MAX / 2)
		w->rq_full = 0;
	return r;
}

/* A kept entry whose retry is due, handed out again under its own ticket,
 * or WATCH_NONE.  One that has ended meanwhile, or whose list is gone, is
 * dropped here: it is checked when it comes due, not when it goes away. */
static watch_kind
retry_next(watch *w, const char **text, const char **reason, watch_ticket *t)
{
	long long now;

	if (!w->nrq)
		return WATCH_NONE;
	now = mono_ms();
	while (w->nrq && w->rq[0].due <= now) {
		retry r = rq_take(w);
		source *s = r.t.src ? source_find(w, r.t.src) : NULL;
		pend *p = s ? pend_find(s, r.t.seq) : NULL;
		img **ip = r.t.src ? NULL : img_out(w, r.t.seq);
		struct stat sb;

		if (ip && (*ip)->kept) {
			/* an image kept in incoming/: the file under its name now */
			free(r.text);
			(*ip)->kept = 0;
			if ((size_t)snprintf(w->text, sizeof w->text, "%s/%s", w->incoming, (*ip)->name)
			    >= sizeof w->text || lstat(w->text, &sb) < 0 || !S_ISREG(sb.st_mode)) {
				img_done(w, r.t.seq, 1);        /* gone meanwhile */
				continue;
			}
			log_msg(LOG_INFO, "watch: trying a kept image again: %s", w->text);
			*t = r.t;
			*text = w->text;
			*reason = NULL;
			return WATCH_IMAGE;
		}
		if (!p || !p->kept) {
			free(r.text);
			continue;
		}
		p->kept = 0;
		/* in flight again: a second occurrence is a duplicate (watch_busy) */
		p->key = r.bad ? 0 : hash_str(r.text);
		busy_add(w, p->key);
		snprintf(w->text, sizeof w->text, "%s", r.text);
		if (r.bad)
			snprintf(w->reason, sizeof w->reason, "%s", r.text + strlen(r.text) + 1);
		free(r.text);
		log_msg(LOG_INFO, "watch: trying a kept entry again: %s", w->text);
		*t = r.t;
		*text = w->text;
		*reason = r.bad ? w->reason : NULL;
		return r.bad ? WATCH_BAD : WATCH_URL;
	}
	return WATCH_NONE;
}

/* --- URLs carried over by the state file --------------------------------- */

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A "url TEXT" line of the state file (save_url): TEXT, unescaped in
 * place, joins the URLs w->carry hands out.  0; 1 when it is not an
 * http(s) URL escaped that way; -1 out of memory. */
static int
carry_add(watch *w, char *text)
{
	char *o = text;
	size_t len;
	qname *q;

	for (const char *p = text; *p; p++) {
		int hi, lo;
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return 1;
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		if (p[1] != 'x' || (hi = hexval(p[2])) < 0 || (lo = hexval(p[3])) < 0 || !(hi | lo))
			return 1;
		*o++ = (char)(hi << 4 | lo);
		p += 3;
	}
	*o = 0;
	if ((len = (size_t)(o - text)) > URLLIST_LINE_MAX || !urllist_is_http(text))
		return 1;
	if ((!w->carry && !(w->carry = drain_new(w, new_id(w)))) || !(q = malloc(sizeof *q + len + 1)))
		return -1;
	memcpy(q->name, text, len + 1);
	q->next = NULL;
	if (w->carry->ctail)
		w->carry->ctail->next = q;
	else
		w->carry->chead = q;
	w->carry->ctail = q;
	return 0;
}

/* The next URL the state file carried over (entries out at the last stop
 * of a file truncated or deleted since), handed out like a line just read:
 * as an entry of w->carry, whose state file lines go as they end. */
static watch_kind
carry_next(watch *w, const char **text, const char **reason, watch_ticket *t)
{
	source *s = w->carry;
	qname *q = s ? s->chead : NULL;
	uint64_t key;

	if (!q)
		return WATCH_NONE;
	key = hash_str(q->name);
	if (pend_push(s, 0, HASH_FNV_BASIS, s->next_seq, key, q->name) < 0) {
		log_msg(LOG_ERROR, "watch: out of memory");
		return WATCH_NONE;      /* tried again at the next call */
	}
	if (!(s->chead = q->next))
		s->ctail = NULL;
	busy_add(w, key);
	t->src = s->id;
	t->seq = s->next_seq++;
	snprintf(w->text, sizeof w->text, "%s", q->name);
	free(q);
	*text = w->text;
	*reason = NULL;
	return WATCH_URL;
}

/* --- the API -------------------------------------------------------------- */

watch_kind
watch_next(watch *w, const char **text, const char **reason, watch_ticket *t)
{
	int n = w->nfol + w->ndir + 1;
	watch_kind k;

	/* due retries first: there are few, and each has waited already; then
	 * what was in flight at the last stop */
	if ((k = retry_next(w, text, reason, t)) != WATCH_NONE
	    || (k = carry_next(w, text, reason, t)) != WATCH_NONE)
		return k;
	follow_tick(w);
	for (int i = 0; i < n; i++) {
		int slot = (w->rr + i) % n;

		if (slot < w->nfol)
			k = follow_next(w, &w->fols[slot], text, reason, t);
		else if (slot < w->nfol + w->ndir)
			k = dir_next(w, &w->dirs[slot - w->nfol], text, reason, t);
		else
			k = img_next(w, text, reason, t);
		if (k != WATCH_NONE) {
			w->rr = (slot + 1) % n;
			return k;
		}
	}
	*text = *reason = NULL;
	return WATCH_NONE;
}

long long
watch_timeout(const watch *w)
{
	long long next = -1, now = mono_ms();

	for (int i = 0; i < w->nfol; i++) {
		long long at = w->fols[i].switch_at;
		if (at && (next < 0 || at - now < next))
			next = at > now ? at - now : 0;
	}
	if (w->nrq && (next < 0 || w->rq[0].due - now < next))
		next = w->rq[0].due > now ? w->rq[0].due - now : 0;
	return next;
}

int
watch_busy(const watch *w, const char *url, watch_ticket self)
{
	uint64_t key = hash_str(url);
	const source *self_s;
	const pend *p;

	if (!w->busy_lost) {
		uint32_t n = hashset_get(&w->busy, key);
		self_s = source_find(w, self.src);
		p = self_s ? pend_find(self_s, self.seq) : NULL;
		return n > (p && p->key == key);
	}
	for (const source *s = w->sources; s; s = s->next)
		for (size_t i = s->ohead; i < s->olen; i++)
			if (s->out[i].live && s->out[i].key == key
			    && !(s->id == self.src && s->out[i].seq == self.seq))
				return 1;
	return 0;
}

void
watch_done(watch *w, watch_ticket t)
{
	source *s;
	pend *p;

	if (t.src == 0) {
		if (!img_done(w, t.seq, 1))
			log_msg(LOG_WARNING, "watch: image ticket %" PRIu32 " is not out", t.seq);
		return;
	}
	if ((s = source_find(w, t.src)) && (p = pend_find(s, t.seq)))
		busy_drop(w, p->key);
	if (!s || !pend_remove(s, t.seq)) {
		log_msg(LOG_WARNING, "watch: ticket %" PRIu32 ":%" PRIu32 " is not out", t.src, t.seq);
		return;
	}
	note_commit(w, s);
	if (!s->path)
		w->dirty = 1;   /* its URL was, or would be, saved (save_urls) */
	if (s->nout || s->chead)
		return;
	if (s->kind == SRC_DRAIN)
		source_free(w, s);
	else if (s->kind == SRC_DIRLIST && s->eof && !s->stuck)
		dir_finish(w, s);
}

long long
watch_keep(watch *w, watch_ticket t, const char *text, const char *reason, long long retry_ms)
{
	source *s = t.src ? source_find(w, t.src) : NULL;
	pend *p = s ? pend_find(s, t.seq) : NULL;
	img **ip = t.src ? NULL : img_out(w, t.seq);
	long long delay = retry_ms;
	size_t tlen, size;
	uint8_t *kept, *tries;
	retry r;

	if (ip && !(*ip)->kept) {
		kept = &(*ip)->kept;
		tries = &(*ip)->tries;
		if (retry_ms <= 0 || !text) {
			/* its file stays in incoming/, where the next start lists it;
			 * the name is free for a new arrival meanwhile */
			img_done(w, t.seq, 0);
			return -1;
		}
	} else if (p && !p->kept) {
		kept = &p->kept;
		tries = &p->tries;
		busy_drop(w, p->key);
		p->key = 0;     /* no longer in flight: not a duplicate's first */
		if (retry_ms <= 0 || !text)
			return -1;
	} else {
		log_msg(LOG_WARNING, "watch: ticket %" PRIu32 ":%" PRIu32 " is not out", t.src, t.seq);
		return -1;
	}
	for (int i = 0; i < *tries && delay < WATCH_RETRY_MAX_MS; i++)
		delay *= 2;
	if (delay > WATCH_RETRY_MAX_MS)
		delay = WATCH_RETRY_MAX_MS;
	tlen = strlen(text);
	size = tlen + 1 + (reason ? strlen(reason) + 1 : 0);
	if (w->nrq >= WATCH_RETRY_MAX || w->rqbytes + size > RETRY_BYTES_MAX) {
		if (!w->rq_full)
			log_msg(LOG_WARNING, "watch: %zu kept entries (%zu bytes) wait for a retry, the most "
			        "there is room for; entries kept from now on wait for the next start",
			        w->nrq, w->rqbytes);
		w->rq_full = 1;
		if (ip)
			img_done(w, t.seq, 0);  /* the next start, as above */
		return -1;
	}
	if (w->nrq == w->rqcap) {
		size_t cap = w->rqcap ? w->rqcap * 2 : 16;
		retry *q = realloc(w->rq, cap * sizeof *q);
		if (!q)
			goto oom;
		w->rq = q;
		w->rqcap = cap;
	}
	if (!(r.text = malloc(size)))
		goto oom;
	memcpy(r.text, text, tlen + 1);
	if (reason)
		memcpy(r.text + tlen + 1, reason, size - tlen - 1);
	r.due = mono_ms() + delay;
	r.t = t;
	r.bad = reason != NULL;
	r.size = size;
	w->rq[w->nrq++] = r;
	w->rqbytes += size;
	rq_up(w, w->nrq - 1);
	*kept = 1;
	if (*tries < 32)
		(*tries)++;
	return delay;
oom:
	log_msg(LOG_ERROR, "watch: out of memory keeping an entry for a retry");
	if (ip)
		img_done(w, t.seq, 0);
	return -1;
}

int
watch_tries(const watch *w, watch_ticket t)
{
	source *s = t.src ? source_find((watch *)w, t.src) : NULL;
	pend *p = s ? pend_find(s, t.seq) : NULL;
	img **ip = t.src ? NULL : img_out(w, t.seq);

	return p ? p->tries : ip ? (*ip)->tries : 0;
}

static int
state_load(watch *w, char *err, size_t errlen)
{
	FILE *fp = fopen(w->statefile, "r");
	char line[STATE_LINE_CAP];
	long lineno = 0, n = 0, urls = 0;
	int rc = 0;

	if (!fp) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot read %s: %s", w->statefile, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof line, fp)) {
		size_t len = strlen(line);
		uintmax_t dev, ino;
		long long off;
		uint64_t sum = 0;
		int has_sum = 0;
		char *p = line, *e;
		saved *s;

		lineno++;
		if (len && line[len - 1] != '\n' && !feof(fp)) {
			int c;
			while ((c = getc(fp)) != EOF && c != '\n')
				;
			log_msg(LOG_WARNING, "watch: %s:%ld: line too long, ignored", w->statefile, lineno);
			continue;
		}
		if (len && line[len - 1] == '\n')
			line[--len] = 0;
		if (strncmp(line, "url ", 4) == 0) {
			int r;
			if (++n > STATE_LINES_MAX) {
				log_msg(LOG_WARNING, "watch: %s: more than %d lines; the rest is ignored",
				        w->statefile, STATE_LINES_MAX);
				break;
			}
			if ((r = carry_add(w, line + 4)) < 0) {
				snprintf(err, errlen, "out of memory");
				rc = -1;
				break;
			}
			if (r > 0)
				log_msg(LOG_WARNING, "watch: %s:%ld: not \"url\" and an escaped http(s) URL, "
				        "ignored", w->statefile, lineno);
			urls += r == 0;
			continue;
		}
		errno = 0;
		dev = strtoumax(p, &e, 10);
		if (e == p || *e != ' ')
			goto bad;
		ino = strtoumax(p = e + 1, &e, 10);
		if (e == p || *e != ' ')
			goto bad;
		off = strtoll(p = e + 1, &e, 10);
		if (e == p || off < 0 || errno)
			goto bad;
		if (*e == ':') {        /* the fingerprint; lines of older versions lack it */
			sum = strtoull(p = e + 1, &e, 16);
			if (e == p || errno)
				goto bad;
			has_sum = 1;
		}
		if (*e != ' ' || !e[1])
			goto bad;
		if (++n > STATE_LINES_MAX) {
			log_msg(LOG_WARNING, "watch: %s: more than %d lines; the rest is ignored",
			        w->statefile, STATE_LINES_MAX);
			break;
		}
		if (!(s = malloc(sizeof *s + strlen(e + 1) + 1))) {
			snprintf(err, errlen, "out of memory");
			rc = -1;
			break;
		}
		s->dev = dev;
		s->ino = ino;
		s->off = (off_t)off;
		s->fp = sum;
		s->has_fp = has_sum;
		strcpy(s->path, e + 1);
		s->next = w->saved;
		w->saved = s;
		continue;
bad:
		log_msg(LOG_WARNING, "watch: %s:%ld: not \"dev ino offset[:fingerprint] path\", ignored",
		        w->statefile, lineno);
	}
	if (!rc && ferror(fp)) {
		snprintf(err, errlen, "cannot read %s", w->statefile);
		rc = -1;
	}
	fclose(fp);
	if (!rc && urls)
		log_msg(LOG_INFO, "watch: %ld URL%s in flight at the last stop, of a followed file "
		        "truncated or deleted since, done first", urls, urls == 1 ? "" : "s");
	return rc;
}

/* After the first scan: saved lines that name no list waiting in a
 * directory are of no use any more. */
static void
state_prune(watch *w)
{
	for (saved **pp = &w->saved; *pp; ) {
		int keep = 0;
		for (int i = 0; i < w->ndir && !keep; i++) {
			dirw *d = &w->dirs[i];
			size_t dl = strlen(d->path);
			if (strncmp((*pp)->path, d->path, dl) != 0 || (*pp)->path[dl] != '/')
				continue;
			for (qname *q = d->qhead; q && !keep; q = q->next)
				keep = strcmp((*pp)->path + dl + 1, q->name) == 0;
		}
		if (keep) {
			pp = &(*pp)->next;
		} else {
			saved *s = *pp;
			*pp = s->next;
			free(s);
			w->dirty = 1;
		}
	}
}

/* One "url TEXT" line: bytes below 0x20, DEL and backslash as \xHH, so that a
 * line holds one URL whatever it contains.  An older thumbd logs such a
 * line as not "dev ino offset path" and ignores it. */
static void
save_url(FILE *m, const char *url)
{
	fputs("url ", m);
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			fprintf(m, "\\x%02x", *p);
		else
			putc(*p, m);
	putc('\n', m);
}

/* The URLs of a drain without a file: its entries out (kept ones too),
 * and, for w->carry, those not handed out yet. */
static void
save_urls(FILE *m, const source *s)
{
	for (size_t i = s->ohead; i < s->olen; i++)
		if (s->out[i].live && s->out[i].text)
			save_url(m, s->out[i].text);
	for (const qname *q = s->chead; q; q = q->next)
		save_url(m, q->name);
}

int
watch_save(watch *w, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m;
	int rc;

	if (!w->dirty)
		return 0;
	if (!(m = open_memstream(&buf, &len))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* a drain of a truncated or deleted file has no path (its lines are
	 * gone): its entries out are saved by their URLs, which the next start
	 * hands out again; one of a rotated-away file keeps its path, so that
	 * follow_recover finds the file */
	for (source *s = w->sources; s; s = s->next)
		if (s->path && !strchr(s->path, '\n'))
			fprintf(m, "%ju %ju %lld:%016" PRIx64 " %s\n", (uintmax_t)s->dev, (uintmax_t)s->ino,
			        (long long)committed(s), committed_fp(s), s->path);
		else if (!s->path)
			save_urls(m, s);
	for (saved *s = w->saved; s; s = s->next)
		if (s->has_fp)
			fprintf(m, "%ju %ju %lld:%016" PRIx64 " %s\n", s->dev, s->ino, (long long)s->off,
			        s->fp, s->path);
		else
			fprintf(m, "%ju %ju %lld %s\n", s->dev, s->ino, (long long)s->off, s->path);
	if (fclose(m) != 0 || !buf) {
		free(buf);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = fsu_write_atomic(w->statedir, w->statebase, buf, len, err, errlen);
	free(buf);
	if (rc < 0)
		return -1;
	for (source *s = w->sources; s; s = s->next)
		s->saved = committed(s);
	w->dirty = 0;
	return 0;
}

void
watch_counts(const watch *w, long *sources, long *outstanding)
{
	long src = w->nfol, out = w->niout;

	for (int i = 0; i < w->ndir; i++)
		src += w->dirs[i].nq;
	for (const source *s = w->sources; s; s = s->next) {
		src += s->kind == SRC_DIRLIST;
		out += (long)s->nout;
	}
	*sources = src;
	*outstanding = out;
}

int
watch_fd(const watch *w)
{
	return w->fd;
}

void
watch_free(watch *w)
{
	if (!w)
		return;
	while (w->sources)
		source_free(w, w->sources);
	for (int i = 0; i < w->nfol; i++) {
		free(w->fols[i].path);
		free(w->fols[i].dir);
	}
	for (int i = 0; i < w->ndir; i++) {
		qname *q;
		while ((q = w->dirs[i].qhead)) {
			w->dirs[i].qhead = q->next;
			free(q);
		}
		free(w->dirs[i].path);
	}
	for (size_t i = 0; i < w->itabsz; i++) {
		img *m;
		while ((m = w->itab[i])) {
			w->itab[i] = m->hnext;
			free(m);
		}
	}
	while (w->saved) {
		saved *s = w->saved;
		w->saved = s->next;
		free(s);
	}
	for (size_t i = 0; i < w->nrq; i++)
		free(w->rq[i].text);
	free(w->rq);
	hashset_free(&w->busy);
	if (w->fd >= 0)
		close(w->fd);
	free(w->itab);
	free(w->refs);
	free(w->fols);
	free(w->dirs);
	free(w->incoming);
	free(w->statefile);
	free(w->statedir);
	free(w);
}

/* dir and base of path ("." for a bare name); NULL when path has no name. */
static char *
split_path(const char *path, const char **base)
{
	const char *slash = strrchr(path, '/');

	*base = slash ? slash + 1 : path;
	if (!**base)
		return NULL;
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* A watched directory as watch_check and watch_new see it. */
typedef struct dirid {
	dev_t dev;
	ino_t ino;
	const char *path;
} dirid;

/* A file of ours (followed list, state file) directly inside a directory
 * that would take it as well: one of the ndir watched directories or
 * incoming (NULL: none). */
static int
check_overlap(const dirid *dirs, int ndir, const char *incoming, const char *path,
              const char *dir, const char *base, char *err, size_t errlen)
{
	struct stat pb, sb;

	if (stat(dir, &pb) < 0)
		return 0;
	for (int i = 0; i < ndir; i++)
		if (dirs[i].dev == pb.st_dev && dirs[i].ino == pb.st_ino && is_list_name(base)) {
			snprintf(err, errlen, "%s: inside the watched directory %s, which would take it too",
			         path, dirs[i].path);
			return -1;
		}
	if (incoming && stat(incoming, &sb) == 0 && sb.st_dev == pb.st_dev
	    && sb.st_ino == pb.st_ino && is_image_name(base)) {
		snprintf(err, errlen, "%s: inside the incoming directory %s, which would take it as an image",
		         path, incoming);
		return -1;
	}
	return 0;
}

/* path made lexical: no "//", "/./" or "name/.." (like Go's path.Clean;
 * symbolic links are not followed, nothing need exist).  NULL: no memory. */
static char *
clean_path(const char *path)
{
	size_t len = strlen(path), n = 0;
	char *out = malloc(len + 2), *copy = strdup(path), *save = NULL;
	int abs = path[0] == '/';

	if (!out || !copy) {
		free(out);
		free(copy);
		return NULL;
	}
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		char *slash;
		if (strcmp(c, ".") == 0)
			continue;
		out[n] = 0;
		slash = strrchr(out, '/');
		if (strcmp(c, "..") == 0 && n && strcmp(slash ? slash + 1 : out, "..") != 0) {
			n = slash ? (size_t)(slash - out) : 0;
			continue;
		}
		if (strcmp(c, "..") == 0 && abs && !n)
			continue;       /* /.. is / */
		if (n || abs)
			out[n++] = '/';
		memcpy(out + n, c, strlen(c));
		n += strlen(c);
	}
	if (!n)
		out[n++] = abs ? '/' : '.';
	out[n] = 0;
	free(copy);
	return out;
}

/* 1 when dir is one of made (or a parent of one): thumbd creates it at
 * start, before the watch. */
static int
will_be_made(const char *dir, char *const *made)
{
	char *d = clean_path(dir);
	int yes = 0;

	for (int i = 0; d && made && made[i] && !yes; i++) {
		char *m = clean_path(made[i]);
		size_t dl = strlen(d);
		yes = m && strncmp(m, d, dl) == 0 && (m[dl] == 0 || m[dl] == '/' || strcmp(d, "/") == 0);
		free(m);
	}
	free(d);
	return yes;
}

int
watch_check(char *const *paths, int n, const char *incoming, char *const *made,
            char *err, size_t errlen)
{
	dirid *dirs = calloc((size_t)n + 1, sizeof *dirs);
	struct stat sb, ib;
	int ndir = 0, rc = -1, has_in = incoming && stat(incoming, &ib) == 0;

	if (!dirs) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (incoming && has_in && !S_ISDIR(ib.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", incoming);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		const char *p = paths[i];

		for (int j = 0; j < i; j++)
			if (strcmp(paths[j], p) == 0) {
				snprintf(err, errlen, "%s: listed twice", p);
				goto out;
			}
		if (stat(p, &sb) == 0 && !S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode)) {
			snprintf(err, errlen, "%s: neither a URL list file nor a directory", p);
			goto out;
		}
		if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			for (int j = 0; j < ndir; j++)
				if (dirs[j].dev == sb.st_dev && dirs[j].ino == sb.st_ino) {
					snprintf(err, errlen, "%s: the same directory as %s", p, dirs[j].path);
					goto out;
				}
			if (has_in && ib.st_dev == sb.st_dev && ib.st_ino == sb.st_ino) {
				snprintf(err, errlen, "%s: is also the incoming directory", p);
				goto out;
			}
			dirs[ndir++] = (dirid){ sb.st_dev, sb.st_ino, p };
		} else {
			const char *base;
			char *dir = split_path(p, &base);
			struct stat pb;
			if (!dir) {
				snprintf(err, errlen, "%s: not a file path", p);
				goto out;
			}
			if ((stat(dir, &pb) < 0 || !S_ISDIR(pb.st_mode)) && !will_be_made(dir, made)) {
				snprintf(err, errlen, "%s: directory %s does not exist", p, dir);
				free(dir);
				goto out;
			}
			free(dir);
		}
	}
	/* a second pass: a file may come before the directory that holds it */
	for (int i = 0; i < n; i++) {
		const char *base;
		char *dir;
		int bad;
		if (stat(paths[i], &sb) == 0 && S_ISDIR(sb.st_mode))
			continue;
		if (!(dir = split_path(paths[i], &base)))
			continue;
		bad = check_overlap(dirs, ndir, incoming, paths[i], dir, base, err, errlen) < 0;
		free(dir);
		if (bad)
			goto out;
	}
	rc = 0;
out:
	free(dirs);
	return rc;
}

watch *
watch_new(char *const *paths, int n, const char *incoming, const char *statefile,
          char *err, size_t errlen)
{
	watch *w = calloc(1, sizeof *w);
	dirid *dirs = calloc((size_t)n + 1, sizeof *dirs);
	struct stat sb;

	if (!w || !dirs || !(w->fols = calloc((size_t)n + 1, sizeof *w->fols))
	    || !(w->dirs = calloc((size_t)n + 1, sizeof *w->dirs))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	w->fd = -1;
	w->next_id = 1;
	if (incoming && (stat(incoming, &sb) < 0 || !S_ISDIR(sb.st_mode))) {
		snprintf(err, errlen, "%s: not a directory", incoming);
		goto fail;
	}
	if (watch_check(paths, n, incoming, NULL, err, errlen) < 0)
		goto fail;
	if ((w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		snprintf(err, errlen, "inotify: %s%s", strerror(errno),
		         errno == EMFILE ? " (raise fs.inotify.max_user_instances)" : "");
		goto fail;
	}
	if (!(w->statefile = strdup(statefile))
	    || !(w->statedir = split_path(w->statefile, &w->statebase))) {
		snprintf(err, errlen, "%s: not a file path", statefile);
		goto fail;
	}
	if (stat(w->statedir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "%s: directory %s does not exist", statefile, w->statedir);
		goto fail;
	}
	if (state_load(w, err, errlen) < 0)
		goto fail;
	if (incoming) {
		if (!(w->incoming = strdup(incoming))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (ref_add(w, incoming, TAKE_MASK | GONE_MASK | IN_ONLYDIR, REF_INCOMING, NULL,
		            err, errlen) < 0)
			goto fail;
	}
	/* watch_check has looked at every path: here they are only set up */
	for (int i = 0; i < n; i++) {
		const char *p = paths[i];

		if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			dirw *d = &w->dirs[w->ndir];
			if (!(d->path = strdup(p))) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			d->dev = sb.st_dev;
			d->ino = sb.st_ino;
			dirs[w->ndir++] = (dirid){ sb.st_dev, sb.st_ino, d->path };
			if (ref_add(w, p, TAKE_MASK | GONE_MASK | IN_ONLYDIR, REF_DIR, d, err, errlen) < 0)
				goto fail;
		} else {
			follow *f = &w->fols[w->nfol];
			if (!(f->path = strdup(p)) || !(f->dir = split_path(f->path, &f->base))) {
				snprintf(err, errlen, "%s: not a file path", p);
				free(f->path);
				f->path = NULL;
				goto fail;
			}
			w->nfol++;
			if (ref_add(w, f->dir, FOLLOW_DIR_MASK | IN_ONLYDIR, REF_FOLLOW_DIR, f,
			            err, errlen) < 0)
				goto fail;
		}
	}
	if (check_overlap(dirs, w->ndir, w->incoming, w->statefile, w->statedir, w->statebase,
	                  err, errlen) < 0)
		goto fail;
	if (rescan(w, 1, err, errlen) < 0)
		goto fail;
	for (int i = 0; i < w->nfol; i++)
		follow_recover(w, &w->fols[i]);
	state_prune(w);
	free(dirs);
	return w;
fail:
	free(dirs);
	watch_free(w);
	return NULL;
}
