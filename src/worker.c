/*
 * worker: resize threads.
 *
 * Ownership: a job belongs to the queue until popped, then to exactly one
 * worker, which frees it.  The worker deletes the incoming file after the
 * outcome is recorded (thumbnails written or failed.tsv line), whatever the
 * outcome, so incoming/ holds only work not finished yet; but a daemon's
 * hand-off image (another program's file, nowhere else) whose failure is
 * this machine's stays for its retry.  Local files given with --files are
 * never deleted.
 *
 * Memory: freed heap is not given back while work flows (each image would
 * otherwise fault its buffers in afresh: bigmem.c); a worker that has had
 * nothing to do for WORKER_IDLE_MS hands it back (bigmem_trim: the large
 * block bigmem keeps for it and glibc's free heap), so an idle daemon does
 * not sit on its busiest moment's heap.
 *
 * Shutdown: the producer closes the queue; each worker drains what is left
 * and exits when jobq_pop() returns NULL.  Workers block every signal so
 * that signals reach the main thread, whose handler only sets flags.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bigmem.h"
#include "job.h"
#include "log.h"
#include "monotime.h"
#include "spare.h"
#include "state.h"
#include "thumb.h"

#define WORKER_IDLE_MS 2000

typedef struct wctx {
	workers *pool;
	pthread_t tid;
	int id;
	atomic_llong job_since;  /* mono_ms() when the current job started, 0 when idle */
	const cfg *_Atomic hazard; /* the config this job reads (see workers_uses) */
} wctx;

struct workers {
	const cfg *_Atomic c;     /* swapped by a reload; read once per job */
	jobq *q;
	stats *st;
	int n;
	atomic_int busy;
	atomic_int running;
	void (*on_exit)(void);
	struct timespec t0;
	wctx *threads;
};

/* The current config, published as this worker's hazard before it is
 * trusted: a reload frees an old config only when no worker has it
 * published (workers_uses).  Let go with cfg_release. */
static const cfg *
cfg_hold(workers *p, wctx *w)
{
	const cfg *c;

	do {
		c = atomic_load(&p->c);
		atomic_store(&w->hazard, c);
	} while (atomic_load(&p->c) != c);
	return c;
}

static void
cfg_release(wctx *w)
{
	atomic_store(&w->hazard, NULL);
}

/*
 * The next job: the one put aside for memory (see thumb_make's defer) as
 * soon as the decode budget has room for it, else a queued one, else the
 * one put aside after all (the queue is empty: waiting costs nothing).
 * *must_wait tells thumb_make not to put this one aside again.
 */
static job *
next_job(workers *p, wctx *w, job **aside, uint64_t aside_bytes, int *must_wait)
{
	job *j;
	int fits;

	*must_wait = 0;
	if (!*aside) {
		int idle;
		if ((j = jobq_pop_within(p->q, WORKER_IDLE_MS, &idle)) || !idle)
			return j;
		bigmem_trim();
		return jobq_pop(p->q);
	}
	fits = thumb_budget_fits(cfg_hold(p, w), aside_bytes);
	cfg_release(w);
	if (!fits && (j = jobq_trypop(p->q))) {
		*must_wait = 1;         /* one aside at a time */
		return j;
	}
	j = *aside;
	*aside = NULL;
	*must_wait = 1;
	return j;
}

/* A hand-off's name still holds the file handed off.  Moved in later, a
 * new file has another inode, or the old one's reused and a later ctime
 * (set by the move).  A file moved in between this and the unlink is lost
 * still: Linux has no unlink-if-this-inode; the window is a few syscalls. */
static int
same_file(const job *j)
{
	struct stat sb;

	return lstat(j->src, &sb) == 0 && sb.st_dev == j->hdev && sb.st_ino == j->hino
	       && sb.st_ctim.tv_sec == j->hctim.tv_sec && sb.st_ctim.tv_nsec == j->hctim.tv_nsec;
}

static void *
worker_main(void *arg)
{
	wctx *w = arg;
	workers *p = w->pool;
	char name[24], err[512];
	job *j, *aside = NULL;
	uint64_t aside_bytes = 0;
	int must_wait;

	snprintf(name, sizeof name, "worker-%d", w->id);
	log_thread_name(name);
	while ((j = next_job(p, w, &aside, aside_bytes, &must_wait))) {
		struct timespec t;
		double dt;
		int n, local = 0;

		atomic_fetch_add(&p->busy, 1);
		atomic_store(&w->job_since, mono_ms());
		clock_gettime(CLOCK_MONOTONIC, &t);
		/* a big decode that does not fit beside the others' is put aside
		 * (once) while this worker does the next job instead of idling */
		n = thumb_make(cfg_hold(p, w), j, must_wait ? NULL : &aside_bytes, err, sizeof err);
		cfg_release(w);
		dt = mono_since(&t);
		if (n == THUMB_DEFERRED) {
			log_msg(LOG_INFO, "%s: its decode needs %.0f MB, more than resize.decode_memory leaves "
			        "now; doing other images first", j->url, (double)aside_bytes / 1e6);
			aside = j;
		} else if (n >= 0) {
			stats_observe(&p->st->resize, dt);
			STAT_ADD(p->st, images, 1);
			STAT_ADD(p->st, thumbnails, n);
			log_msg(LOG_INFO, "resized %s -> %s_* (%d thumbnails, %.3f s)", j->url, j->stem,
			        n, dt);
		} else {
			stats_fail(p->st, err);
			/* not recorded in failed.tsv, or this machine's fault (a
			 * write error, a full disk): the daemon keeps the entry (and
			 * a hand-off image its file) for a retry or the next start */
			int r = state_record_failure(j->url, err, j->again);
			local = r != 0 || !state_reason_is_final(err);
			if (r < 0 && j->on_end)
				j->owned = 0;
		}
		if (n != THUMB_DEFERRED) {
			/* a hand-off is its own only copy: it stays for the retry
			 * (on_end keeps its ticket), where a download is fetched again */
			if (local && j->handoff)
				j->owned = 0;
			if (j->owned && j->handoff && !same_file(j)) {
				/* deleting by name would delete the new one unmade;
				 * the watch queues it once this job has ended */
				log_msg(LOG_INFO, "%s was replaced by another file while it was resized; "
				        "that one is done next", j->src);
				j->owned = 0;
			}
			if (j->owned && (j->recycle ? spares_put(j->recycle, j->src) : unlink(j->src)) < 0)
				log_msg(LOG_WARNING, "cannot delete %s: %s", j->src, strerror(errno));
			if (j->on_end)
				j->on_end(j->end_arg, j->ticket, local, j->url);
			job_free(j);
		}
		atomic_store(&w->job_since, 0);
		atomic_fetch_sub(&p->busy, 1);
	}
	atomic_fetch_sub(&p->running, 1);
	if (p->on_exit)
		p->on_exit();
	return NULL;
}

workers *
workers_start(const cfg *c, jobq *q, stats *st, int n, void (*on_exit)(void), char *err,
              size_t errlen)
{
	workers *p = calloc(1, sizeof *p);
	sigset_t all, old;

	if (!p || !(p->threads = calloc((size_t)n, sizeof *p->threads))) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&p->c, c);
	p->q = q;
	p->st = st;
	p->on_exit = on_exit;
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
	/* threads inherit the mask: block everything while creating them */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < n; i++) {
		p->threads[i].pool = p;
		p->threads[i].id = i + 1;
		atomic_fetch_add(&p->running, 1);
		if (pthread_create(&p->threads[i].tid, NULL, worker_main, &p->threads[i]) != 0) {
			atomic_fetch_sub(&p->running, 1);
			break;
		}
		p->n++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->n == 0) {
		snprintf(err, errlen, "cannot start resize threads");
		free(p->threads);
		free(p);
		return NULL;
	}
	if (p->n < n)
		log_msg(LOG_WARNING, "started %d of %d resize threads", p->n, n);
	return p;
}

void
workers_set_config(workers *p, const cfg *c)
{
	atomic_store(&p->c, c);
}

void
workers_join(workers *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n; i++)
		pthread_join(p->threads[i].tid, NULL);
	log_msg(LOG_INFO, "created %ld thumbnails in %.2f seconds", (long)STAT_GET(p->st, thumbnails),
	        mono_since(&p->t0));
	free(p->threads);
	free(p);
}

int
workers_busy(workers *p)
{
	return atomic_load(&p->busy);
}

int
workers_running(workers *p)
{
	return atomic_load(&p->running);
}

int
workers_uses(workers *p, const cfg *c)
{
	for (int i = 0; i < p->n; i++)
		if (atomic_load(&p->threads[i].hazard) == c)
			return 1;
	return 0;
}

double
workers_longest_job(workers *p)
{
	long long now = mono_ms(), oldest = now;

	for (int i = 0; i < p->n; i++) {
		long long t = atomic_load(&p->threads[i].job_since);
		if (t && t < oldest)
			oldest = t;
	}
	return (double)(now - oldest) / 1000.0;
}
