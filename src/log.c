/*
 * log: thumbd.log and failed.tsv.  See include/log.h for the contract.
 *
 * Both files are opened O_APPEND and every record is built in a stack
 * buffer and handed to a single write(2): the kernel appends it atomically
 * with respect to other writers of the same file, which is what keeps lines
 * from the fetch thread and the workers whole without a mutex on the hot
 * path.  Records longer than the buffer are truncated, never split.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096

static int log_fd = -1;
static int fail_fd = -1;
static _Thread_local char thread_name[24] = "main";

static const char *const level_names[] = { "DEBUG", "INFO", "WARNING", "ERROR" };

void
log_thread_name(const char *name)
{
	snprintf(thread_name, sizeof thread_name, "%s", name);
}

static int
open_append(const char *dir, const char *file, char *err, size_t errlen)
{
	char path[4096];
	int fd;

	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) {
		snprintf(err, errlen, "%s/%s: path too long", dir, file);
		return -1;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
	return fd;
}

int
log_open(const char *dir, char *err, size_t errlen)
{
	int lfd = -1, ffd = -1;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((lfd = open_append(dir, "thumbd.log", err, errlen)) < 0)
		goto fail;
	if ((ffd = open_append(dir, "failed.tsv", err, errlen)) < 0)
		goto fail;
	log_close();
	log_fd = lfd;
	fail_fd = ffd;
	return 0;
fail:
	if (lfd >= 0)
		close(lfd);
	return -1;
}

void
log_close(void)
{
	if (log_fd >= 0)
		close(log_fd);
	if (fail_fd >= 0)
		close(fail_fd);
	log_fd = fail_fd = -1;
}

static void
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;     /* a log that cannot be written must not stop the work */
		buf += n;
		len -= (size_t)n;
	}
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

void
log_msg(log_level lvl, const char *fmt, ...)
{
	char line[LINE_MAX_BYTES], msg[LINE_MAX_BYTES - 128];
	struct timeval tv;
	struct tm tm;
	size_t off;
	va_list ap;
	int n;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	n = snprintf(line, sizeof line, "[%s, %04d-%02d-%02d %02d:%02d:%02d,%03d, %s] ",
	             thread_name, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
	             level_names[lvl]);
	off = (size_t)n;
	/* messages carry URLs and server text: keep them on one line */
	append_escaped(line, sizeof line - 1, &off, msg);
	line[off++] = '\n';
	write_all(log_fd >= 0 ? log_fd : STDERR_FILENO, line, off);
}

void
log_failure(const char *url, const char *reason)
{
	char rec[LINE_MAX_BYTES];
	struct timeval tv;
	struct tm tm;
	size_t off;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	off = strftime(rec, sizeof rec, "%Y-%m-%dT%H:%M:%SZ\t", &tm);
	append_escaped(rec, sizeof rec - 2, &off, url);
	rec[off++] = '\t';
	append_escaped(rec, sizeof rec - 1, &off, reason);
	rec[off++] = '\n';
	if (fail_fd >= 0)
		write_all(fail_fd, rec, off);
	log_msg(LOG_ERROR, "failed %s: %s", url, reason);
}
