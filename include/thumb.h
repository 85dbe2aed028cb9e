/*
 * thumb: one image in, every configured thumbnail out.  The CPU work of a
 * job, run by the resize workers; no network, no shared state besides the
 * read-only config.
 */
#ifndef THUMBD_THUMB_H
#define THUMBD_THUMB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "job.h"

/* Shrink on load keeps the decoded width at least this many times the
 * largest thumbnail width (see thumb.c for why 3). */
#define THUMB_DECODE_MARGIN 3

/* Largest thumbnail edge any format here can hold (JPEG's limit). */
#define THUMB_MAX_EDGE 65500

#define THUMB_DEFERRED (-2)

/*
 * Decode j->src once, make one thumbnail per configured width and write
 * each to outgoing/<stem>_<width>.<ext> atomically.  Returns the number of
 * files written, or -1 with a short reason in err; after a failure no file
 * of this job is left in outgoing/.  Does not delete j->src.
 *
 * The decoders of all workers share resize.decode_memory.  With defer
 * NULL a decode that does not fit waits for the others; otherwise
 * thumb_make gives up at once, stores the bytes it needs in *defer and
 * returns THUMB_DEFERRED (nothing written), so the worker can do other
 * jobs meanwhile and come back when thumb_budget_fits() says so.
 */
int thumb_make(const cfg *c, const job *j, uint64_t *defer, char *err, size_t errlen);

/* 1 when a decode holding bytes would start now without waiting. */
int thumb_budget_fits(const cfg *c, uint64_t bytes);

/* Height for a thumbnail w pixels wide of a W x H picture: round(H * w / W), at least 1. */
int thumb_height(int W, int H, int w);

#endif
