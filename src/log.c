/*
 * log: thumbd.log (or stderr for journald) and failed.tsv.  See
 * include/log.h for the contract.
 *
 * Both files are opened O_APPEND and every record is built in a stack
 * buffer and handed to a single write(2): the kernel appends it atomically
 * with respect to other writers of the same file, which is what keeps lines
 * from the fetch thread and the workers whole without a mutex on the hot
 * path.  Records longer than the buffer are truncated, never split.  With
 * LOG_TO_STDERR the same single write goes to fd 2; under systemd that is a
 * pipe or stream socket to journald, and a line is at most LINE_MAX_BYTES
 * (= PIPE_BUF on Linux), so it arrives whole there too.
 *
 * State: log_fd, fail_fd, journal and log_path change only in log_open*()
 * and log_close(), which main calls before it starts threads and after it
 * has joined them.  While threads run, the only change is log_reopen(), and
 * it keeps log_fd's number: it swaps the file behind it with dup2(2).
 *
 * failed.tsv records are written under fail_mu: failures are rare (no hot
 * path), and a record must be whole or absent even when the disk is full.
 * A write that fails part way (ENOSPC, EFBIG) is cut off again with
 * ftruncate(2) to the size before it, which is only safe while no other
 * thread appends.  When even that fails, or the file ended in a torn record
 * when it was opened (a power cut), the next record starts with "\t\n":
 * the torn line then ends in an empty field, which no whole record has, so
 * readers (state.c) ignore it instead of taking its fields for a URL's.
 * A failure that cannot be recorded is counted (log_failures_lost) and
 * reported once per episode, in the log and on stderr: thumbd.log is
 * likely on the same full disk.
 */
#include "log.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096
/* A failed.tsv record holds its URL whole, since reruns look URLs up there
 * by their exact text: room for a list line (URLLIST_LINE_MAX, 8 KB) with
 * every byte escaped (4 bytes at most) and a reason. */
#define RECORD_MAX (4 * 8192 + LINE_MAX_BYTES)

static int log_fd = -1;         /* thumbd.log; -1 with LOG_TO_STDERR or when closed */
static int fail_fd = -1;
static int journal;             /* LOG_TO_STDERR: "<N>[thread, LEVEL] message" on fd 2 */
static char log_path[4096];     /* what log_reopen() opens again */
static char fail_path[4096];    /* failed.tsv, for messages */
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static int fail_torn;           /* the file may end in a torn record: start the next with "\t\n" */
static int fail_down;           /* the last record could not be written (an episode is on) */
static long fail_lost;          /* records not written since log_open */
static _Thread_local char thread_name[24] = "main";

static const char *const level_names[] = { "DEBUG", "INFO", "WARNING", "ERROR" };

/* syslog priorities as sd-daemon(3) SD_DEBUG, SD_INFO, SD_WARNING, SD_ERR
 * spell them: journald reads the level from this prefix of each line. */
static const char *const journal_prio[] = { "<7>", "<6>", "<4>", "<3>" };

void
log_thread_name(const char *name)
{
	snprintf(thread_name, sizeof thread_name, "%s", name);
}

/* <dir>/<file> into path (cap bytes), opened for appending.  fd / -1. */
static int
open_append(const char *dir, const char *file, char *path, size_t cap,
            char *err, size_t errlen)
{
	int fd;

	if ((size_t)snprintf(path, cap, "%s/%s", dir, file) >= cap) {
		snprintf(err, errlen, "%s/%s: path too long", dir, file);
		return -1;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
	return fd;
}

/* 1 when the regular file at path does not end with '\n' (a record cut short). */
static int
ends_torn(const char *path)
{
	struct stat sb;
	char last;
	int fd = open(path, O_RDONLY | O_CLOEXEC), torn;

	if (fd < 0)
		return 0;
	torn = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0
	       && pread(fd, &last, 1, sb.st_size - 1) == 1 && last != '\n';
	close(fd);
	return torn;
}

int
log_open_target(const char *dir, log_target t, char *err, size_t errlen)
{
	char lpath[sizeof log_path], fpath[sizeof log_path];
	int lfd = -1, ffd = -1;

	if (t != LOG_TO_FILE && t != LOG_TO_STDERR && t != LOG_TO_STDERR_PLAIN) {
		snprintf(err, errlen, "log target %d: not a log_target", (int)t);
		goto fail;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (t == LOG_TO_FILE
	    && (lfd = open_append(dir, "thumbd.log", lpath, sizeof lpath, err, errlen)) < 0)
		goto fail;
	/* failed.tsv is state the next run reads, not a log: in dir either way */
	if ((ffd = open_append(dir, "failed.tsv", fpath, sizeof fpath, err, errlen)) < 0)
		goto fail;
	log_close();
	log_fd = lfd;
	fail_fd = ffd;
	journal = t == LOG_TO_STDERR;
	if (lfd >= 0)
		memcpy(log_path, lpath, strlen(lpath) + 1);
	memcpy(fail_path, fpath, strlen(fpath) + 1);
	fail_torn = ends_torn(fpath);
	return 0;
fail:
	if (lfd >= 0)
		close(lfd);
	return -1;
}

int
log_open(const char *dir, char *err, size_t errlen)
{
	return log_open_target(dir, LOG_TO_FILE, err, errlen);
}

/*
 * Called on SIGUSR1 (from main's loop, not the handler) after logrotate has
 * renamed thumbd.log away.  The new file is opened under the old path and
 * dup2()ed onto log_fd, so log_fd keeps its number and is never closed or
 * -1, not even for an instant: dup2 closes and replaces the old descriptor
 * atomically.  That is why the write path needs no lock: a write(2) in
 * another thread that has already looked up log_fd holds its own reference
 * to the old open file and completes there (into the renamed file, whole);
 * any write that starts after dup2 returns goes to the new file.  Either
 * way the line is appended by one write to one O_APPEND file.
 *
 * dup2 does not carry O_CLOEXEC over, so it is set again right after; the
 * gap only matters to a concurrent exec, and thumbd never execs.
 */
int
log_reopen(char *err, size_t errlen)
{
	int fd;

	if (log_fd < 0)
		return 1;       /* LOG_TO_STDERR (journald has no files), or not open */
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot reopen %s: %s", log_path, strerror(errno));
		return -1;      /* log_fd still writes to the old file */
	}
	/* EBUSY: Linux, while another thread's open/dup is installing that number */
	while (dup2(fd, log_fd) < 0) {
		if (errno != EINTR && errno != EBUSY) {
			snprintf(err, errlen, "cannot reopen %s: dup2: %s", log_path, strerror(errno));
			close(fd);
			return -1;
		}
	}
	fcntl(log_fd, F_SETFD, FD_CLOEXEC);
	close(fd);
	return 0;
}

void
log_close(void)
{
	if (log_fd >= 0)
		close(log_fd);
	if (fail_fd >= 0)
		close(fail_fd);
	log_fd = fail_fd = -1;
	journal = 0;
	log_path[0] = fail_path[0] = '\0';
	fail_torn = fail_down = 0;
	fail_lost = 0;
}

/* Append src to buf at *off, turning tabs, newlines and other control bytes
 * into \t, \n, \xNN so a record stays one line with its field count intact. */
static void
append_escaped(char *buf, size_t cap, size_t *off, const char *src)
{
	for (; *src && *off + 5 < cap; src++) {
		unsigned char ch = (unsigned char)*src;
		if (ch == '\t') {
			buf[(*off)++] = '\\'; buf[(*off)++] = 't';
		} else if (ch == '\n') {
			buf[(*off)++] = '\\'; buf[(*off)++] = 'n';
		} else if (ch < 0x20 || ch == 0x7f) {
			*off += (size_t)snprintf(buf + *off, cap - *off, "\\x%02x", ch);
		} else {
			buf[(*off)++] = (char)ch;
		}
	}
}

/*
 * A URL's password never goes into a log line: "scheme://user:pw@host"
 * becomes "scheme://user:***@host" (wget shows it the same way), since
 * logs are read by more people than the lists.  Only the authority counts:
 * an '@' after the first '/', '?' or '#' is part of a path or query.
 * failed.tsv keeps the URL whole: it is the record a rerun looks URLs up
 * in, and it is no more readable than the list that held them.
 */
static void
redact_passwords(char *s, size_t cap)
{
	char *p = s;

	while ((p = strstr(p, "://"))) {
		char *auth = p + 3, *end = auth + strcspn(auth, "/?#@ \t\n"), *colon;
		size_t pw, len;
		p = auth;
		if (*end != '@' || !(colon = memchr(auth, ':', (size_t)(end - auth))) || end == colon + 1)
			continue;
		pw = (size_t)(end - colon - 1);
		len = strlen(s);
		if (pw >= 3 || len + 3 - pw < cap) {
			memmove(colon + 4, end, strlen(end) + 1);
			memcpy(colon + 1, "***", 3);
			p = colon + 4;
		} else {                /* no room to grow: as many stars as bytes */
			memset(colon + 1, '*', pw);
			p = end;
		}
	}
}

void
log_msg(log_level lvl, const char *fmt, ...)
{
	char line[LINE_MAX_BYTES], msg[LINE_MAX_BYTES - 128];
	struct timeval tv;
	struct tm tm;
	size_t off;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	redact_passwords(msg, sizeof msg);
	if (journal) {
		/* journald stamps each line itself: priority prefix, no time */
		n = snprintf(line, sizeof line, "%s[%s, %s] ", journal_prio[lvl],
		             thread_name, level_names[lvl]);
	} else {
		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		n = snprintf(line, sizeof line, "[%s, %04d-%02d-%02d %02d:%02d:%02d,%03d, %s] ",
		             thread_name, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
		             level_names[lvl]);
	}
	off = (size_t)n;
	/* messages carry URLs and server text: keep them on one line */
	append_escaped(line, sizeof line - 1, &off, msg);
	line[off++] = '\n';
	/* a log that cannot be written must not stop the work */
	(void)fsu_write_all(log_fd >= 0 ? log_fd : STDERR_FILENO, line, off);
}

/* The record in rec (len bytes, with 2 bytes of room before it) appended
 * whole, or not at all as far as readers can tell.  Under fail_mu.  0 / -1
 * with errno. */
static int
fail_append(char *rec, size_t len)
{
	off_t start;
	int e;

	if (fail_fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (fail_torn) {
		rec -= 2;
		len += 2;
		rec[0] = '\t';
		rec[1] = '\n';
	}
	start = lseek(fail_fd, 0, SEEK_END);
	if (fsu_write_all(fail_fd, rec, len) == 0) {
		fail_torn = 0;
		return 0;
	}
	e = errno;
	/* take back what did get written; shrinking needs no free space */
	if (start < 0 || ftruncate(fail_fd, start) < 0)
		fail_torn = 1;
	errno = e;
	return -1;
}

char *
log_failure_text(const char *s)
{
	size_t len = strlen(s), off = 0;
	char *t = malloc(4 * len + 6);

	if (t) {
		append_escaped(t, 4 * len + 6, &off, s);
		t[off] = 0;
	}
	return t;
}

int
log_failure(const char *url, const char *reason)
{
	char buf[RECORD_MAX + 2], *rec = buf + 2;       /* room for "\t\n" */
	struct timeval tv;
	struct tm tm;
	size_t off;
	long lost = 0;
	int rc, e = 0, began = 0;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	off = strftime(rec, RECORD_MAX, "%Y-%m-%dT%H:%M:%SZ\t", &tm);
	append_escaped(rec, RECORD_MAX - 2, &off, url);
	rec[off++] = '\t';
	append_escaped(rec, RECORD_MAX - 1, &off, reason);
	rec[off++] = '\n';
	pthread_mutex_lock(&fail_mu);
	rc = fail_append(rec, off);
	if (rc < 0) {
		e = errno;
		fail_lost++;
		began = !fail_down;
		fail_down = 1;
	} else if (fail_down) {
		fail_down = 0;
		lost = fail_lost;
	}
	pthread_mutex_unlock(&fail_mu);
	log_msg(LOG_ERROR, "failed %s: %s", url, reason);
	if (began && fail_path[0]) {
#define LOST_MSG "cannot write %s: %s; failures are not recorded there until it can be " \
	"written again (those URLs are not \"failed before\": a later run tries them again)"
		log_msg(LOG_ERROR, LOST_MSG, fail_path, strerror(e));
		/* thumbd.log is most likely on the same full disk */
		if (log_fd >= 0)
			fprintf(stderr, "thumbd: " LOST_MSG "\n", fail_path, strerror(e));
#undef LOST_MSG
	} else if (lost) {
		log_msg(LOG_WARNING, "%s can be written again; %ld failure%s since the start could not "
		        "be recorded there", fail_path, lost, lost == 1 ? "" : "s");
	}
	return rc;
}

long
log_failures_lost(void)
{
	long n;

	pthread_mutex_lock(&fail_mu);
	n = fail_lost;
	pthread_mutex_unlock(&fail_mu);
	return n;
}
