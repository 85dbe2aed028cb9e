/*
 * log: the run log (logs/thumbd.log, one line per event in the original
 * ThumbnailMakerService format "[thread, time, level] message") and the
 * failure record (logs/failed.tsv, "<ISO time>\t<url>\t<reason>").
 *
 * Under systemd the run log can go to stderr for journald instead
 * (LOG_TO_STDERR): "<6>[thread, INFO] message", the syslog priority first
 * as sd-daemon(3) describes (<7> DEBUG, <6> INFO, <4> WARNING, <3> ERROR),
 * no time because journald stamps each line.  failed.tsv is state, not a
 * log, and stays a file in the logs directory either way.
 *
 * A process-wide singleton like syslog(3): every thread logs, nobody passes
 * a handle around.  Lines are formatted on the caller's stack and written
 * with one write(2) to an O_APPEND descriptor, so lines from different
 * threads never interleave and the run log needs no lock; failed.tsv
 * records take one (failures are rare) so a record cut short by a full
 * disk can be taken back.
 */
#ifndef THUMBD_LOG_H
#define THUMBD_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR } log_level;
/* LOG_TO_STDERR_PLAIN: the run log to stderr in the file format (stderr
 * is not the journal: a terminal, a pipe, a file). */
typedef enum { LOG_TO_FILE, LOG_TO_STDERR, LOG_TO_STDERR_PLAIN } log_target;

/* Open <dir>/failed.tsv for appending (creating dir) and, for LOG_TO_FILE,
 * <dir>/thumbd.log; LOG_TO_STDERR writes the run log to stderr in the
 * journald form above.  Before this, and after log_close(), messages go to
 * stderr in the file format.  Call before starting threads.  0 / -1. */
int log_open_target(const char *dir, log_target t, char *err, size_t errlen);
/* log_open_target(dir, LOG_TO_FILE, ...). */
int log_open(const char *dir, char *err, size_t errlen);
/* After logrotate renamed thumbd.log away (SIGUSR1): open the path again and
 * put the new file behind the same descriptor, so threads logging meanwhile
 * lose no line and need no lock.  From main's loop, not a signal handler.
 * No-op (1: no file to reopen) with LOG_TO_STDERR or when not open;
 * failed.tsv is never reopened.  0 / -1 (the old file then stays in use). */
int log_reopen(char *err, size_t errlen);
void log_close(void);

/* Name shown in the thread field of this thread's lines ("main", "fetch", "worker-1"). */
void log_thread_name(const char *name);

void log_msg(log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One line in failed.tsv and an ERROR line in the log.  Tabs and control
 * characters in url and reason are escaped so each record stays one line.
 * The line is written whole or not at all (a part written before a full
 * disk is cut off again).  0, or -1 when it could not be written: the
 * failure is then not recorded, so the caller must not count the URL as
 * ended where that matters (the daemon keeps its watch entry, which comes
 * again at the next start).  The first of a run of such failures is
 * reported in the log and on stderr, once until a record is written again. */
int log_failure(const char *url, const char *reason);

/* s as a failed.tsv field holds it (control characters escaped as
 * log_failure() does), malloc'd; NULL when out of memory.  For looking up
 * a text with control characters among the recorded ones. */
char *log_failure_text(const char *s);

/* Failures since log_open*() that log_failure() could not record. */
long log_failures_lost(void);

#endif
