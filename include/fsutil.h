/*
 * fsutil: the few filesystem operations thumbd needs, each with the input
 * capped and the error message naming the path.
 */
#ifndef THUMBD_FSUTIL_H
#define THUMBD_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Open path for reading without waiting: a FIFO with no writer opens at
 * once instead of blocking (a signal would not end that wait), and stays
 * non-blocking; a regular file is made blocking again (a FUSE filesystem
 * may pass O_NONBLOCK on and answer reads with EAGAIN).  *sb gets its
 * fstat.  The descriptor (O_CLOEXEC), or -1 with errno. */
struct stat;
int fsu_open_read(const char *path, struct stat *sb);

/* Whole file into a buffer the caller frees with bigmem_free (a download
 * of several MB is read into a reused huge-page block, not faulted in
 * afresh); files over max bytes are refused ("too large: N bytes >
 * max_bytes") before reading.  0 / -1. */
int fsu_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len,
                  char *err, size_t errlen);

/* Write data to dir/name atomically: a hidden temp file in the same
 * directory, then rename(2), so readers see the old file or the whole new
 * one and never a part.  0 / -1 (the temp file is removed). */
int fsu_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                     char *err, size_t errlen);

/* Replace a file durably from a stream: fsu_replace_begin opens a hidden
 * temp file beside path ("." + its name + ".tmp"; a dot-file keeps its
 * one dot), the caller writes to fsu_replace_stream(), and
 * fsu_replace_commit flushes, fdatasyncs, renames it over path and syncs
 * the directory, so a crash leaves the old file or the whole new one.
 * commit and abort free r (abort accepts NULL and removes the temp file);
 * both begin and commit give -1/NULL + err naming the file. */
typedef struct fsu_replace fsu_replace;
fsu_replace *fsu_replace_begin(const char *path, char *err, size_t errlen);
FILE *fsu_replace_stream(fsu_replace *r);
int fsu_replace_commit(fsu_replace *r, char *err, size_t errlen);
void fsu_replace_abort(fsu_replace *r);

/* All of len bytes to fd, through short writes and EINTR.  0, or -1 with
 * errno (EIO for a write that took nothing). */
int fsu_write_all(int fd, const void *buf, size_t len);

/* mkdir -p; 0 / -1. */
int fsu_mkdirs(const char *path, char *err, size_t errlen);

/* Take an exclusive flock(2) on path (created when absent) without
 * waiting, and write our pid there for the message another process gets.
 * Returns the descriptor to keep open while the lock is needed, or -1 with
 * err ("... is in use by another thumbd (pid N)", errno EWOULDBLOCK).  The lock dies with the
 * process, so a crash never leaves it behind. */
int fsu_lock(const char *path, char *err, size_t errlen);

/* The same on a directory itself, flock(2) on its descriptor, for the
 * directories without a lock file of their own: outgoing/ holds nothing but
 * thumbnails.  what names its role in the message ("outgoing"). */
int fsu_lock_dir(const char *dir, const char *what, char *err, size_t errlen);

#endif
