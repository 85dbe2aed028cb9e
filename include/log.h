/*
 * log: the run log (logs/thumbd.log, one line per event in the original
 * ThumbnailMakerService format "[thread, time, level] message") and the
 * failure record (logs/failed.tsv, "<ISO time>\t<url>\t<reason>").
 *
 * A process-wide singleton like syslog(3): every thread logs, nobody passes
 * a handle around.  Lines are formatted on the caller's stack and written
 * with one write(2) to an O_APPEND descriptor, so lines from different
 * threads never interleave and no lock is needed.
 */
#ifndef THUMBD_LOG_H
#define THUMBD_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR } log_level;

/* Open <dir>/thumbd.log and <dir>/failed.tsv for appending (creating dir).
 * Before this, and after log_close(), messages go to stderr.  0 / -1. */
int log_open(const char *dir, char *err, size_t errlen);
void log_close(void);

/* Name shown in the thread field of this thread's lines ("main", "fetch", "worker-1"). */
void log_thread_name(const char *name);

void log_msg(log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One line in failed.tsv and an ERROR line in the log.  Tabs and control
 * characters in url and reason are escaped so each record stays one line. */
void log_failure(const char *url, const char *reason);

#endif
