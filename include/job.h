/*
 * job: one image on its way from a source (a finished download in
 * incoming/, or a local file given with --files) to its thumbnails.
 * Created by the producer, handed over through the jobq, freed by the
 * worker that finishes it.
 */
#ifndef THUMBD_JOB_H
#define THUMBD_JOB_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "name.h"

typedef struct job {
	char *url;              /* what the user asked for (URL or file path), for logs and failed.tsv */
	char *src;              /* file to read */
	char *ctype;            /* Content-Type the server sent, or NULL */
	int owned;              /* 1: src is thumbd's incoming file, delete it when done */
	int again;              /* a retry of a kept daemon entry: a failure of this machine
	                           is not recorded in failed.tsv again (the first try's is) */
	int handoff;            /* src is an image another program put into incoming/ (daemon):
	                           a failure of this machine leaves it there for its retry */
	dev_t hdev;             /* handoff: the file handed off; only it is deleted, not */
	ino_t hino;             /* a file moved in under its name meanwhile */
	struct timespec hctim;  /* (its inode may be the old one's, freed and reused) */
	/* Called by the worker once the outcome is recorded and src deleted
	 * (the daemon's intake learns that an entry has ended); may be NULL.
	 * local: it failed because of this machine (state_reason_is_final()
	 * is 0: a write error, a full disk), or failed.tsv could not take it,
	 * so it is done again (the daemon's retry, or a later run); url is
	 * the job's url, valid during the call only. */
	void (*on_end)(void *arg, uint64_t ticket, int local, const char *url);
	struct spares *recycle; /* owned src goes back here instead of being unlinked */
	void *end_arg;
	uint64_t ticket;
	char stem[NAME_MAX_OUT];
} job;

/* NULL when out of memory; ctype may be NULL. */
job *job_new(const char *url, const char *src, const char *ctype, int owned, const char *stem);
void job_free(job *j);          /* accepts NULL */

#endif
