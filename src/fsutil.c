/*
 * fsutil: reading inputs with a size cap and writing outputs atomically.
 * Temp files are dot-files ("." + name + ".tmp") in the target directory:
 * same filesystem, so rename(2) is atomic, and hidden from globs such as
 * "outgoing/ *.jpg", so nobody picks up half a thumbnail.  Thumbnails are
 * not synced (a crash loses at most files the next run makes again); the
 * files that record what was done (fsu_replace) are.  The locks that keep
 * one thumbd per directory live here too: a lock file for incoming/, the
 * directory itself for outgoing/ and logs/, which get no file of ours.
 */
#include "fsutil.h"
#include "bigmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int
fsu_open_read(const char *path, struct stat *sb)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return -1;
	if (fstat(fd, sb) < 0 || (S_ISREG(sb->st_mode) && fcntl(fd, F_SETFL, 0) < 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int
fsu_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len,
              char *err, size_t errlen)
{
	struct stat sb;
	uint8_t *b = NULL;
	size_t off = 0;
	int fd, rc = -1;

	*buf = NULL;
	*len = 0;
	/* a FIFO (or a device) opens at once and is refused here */
	if ((fd = fsu_open_read(path, &sb)) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)sb.st_size > max) {
		snprintf(err, errlen, "too large: %lld bytes > max_bytes %llu",
		         (long long)sb.st_size, (unsigned long long)max);
		goto out;
	}
	if (!(b = bigmem_alloc(sb.st_size ? (size_t)sb.st_size : 1, 0))) {
		snprintf(err, errlen, "out of memory reading %s", path);
		goto out;
	}
	while (off < (size_t)sb.st_size) {
		ssize_t n = read(fd, b + off, (size_t)sb.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;          /* shrank under us: take what is there */
		off += (size_t)n;
	}
	*buf = b;
	*len = off;
	b = NULL;
	rc = 0;
out:
	bigmem_free(b);
	close(fd);
	return rc;
}

int
fsu_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
fsu_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                 char *err, size_t errlen)
{
	char tmp[4096], dst[4096];
	int fd = -1, rc = -1;

	if ((size_t)snprintf(dst, sizeof dst, "%s/%s", dir, name) >= sizeof dst
	    || (size_t)snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= sizeof tmp) {
		snprintf(err, errlen, "%s/%s: path too long", dir, name);
		return -1;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (fsu_write_all(fd, data, len) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, dst) < 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, dst, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

struct fsu_replace {
	FILE *fp;
	char path[4096];
	char tmp[4096 + 8];
};

fsu_replace *
fsu_replace_begin(const char *path, char *err, size_t errlen)
{
	const char *base = strrchr(path, '/');
	fsu_replace *r = calloc(1, sizeof *r);
	int fd = -1, dirlen;

	base = base ? base + 1 : path;
	dirlen = (int)(base - path);
	if (!r) {
		snprintf(err, errlen, "out of memory replacing %s", path);
		return NULL;
	}
	if ((size_t)snprintf(r->path, sizeof r->path, "%s", path) >= sizeof r->path
	    || (size_t)snprintf(r->tmp, sizeof r->tmp, "%.*s%s%s.tmp", dirlen, path,
	                        *base == '.' ? "" : ".", base) >= sizeof r->tmp) {
		snprintf(err, errlen, "%s: path too long", path);
		goto fail;
	}
	if ((fd = open(r->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0
	    || !(r->fp = fdopen(fd, "w"))) {
		snprintf(err, errlen, "cannot create %s: %s", r->tmp, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(r->tmp);
		}
		goto fail;
	}
	return r;
fail:
	free(r);
	return NULL;
}

FILE *
fsu_replace_stream(fsu_replace *r)
{
	return r->fp;
}

int
fsu_replace_commit(fsu_replace *r, char *err, size_t errlen)
{
	char *slash;
	int rc = -1, dfd;

	if (fflush(r->fp) != 0 || ferror(r->fp) || fdatasync(fileno(r->fp)) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", r->tmp, strerror(errno));
		goto out;
	}
	if (fclose(r->fp) != 0) {
		r->fp = NULL;
		snprintf(err, errlen, "cannot write %s: %s", r->tmp, strerror(errno));
		goto out;
	}
	r->fp = NULL;
	if (rename(r->tmp, r->path) < 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", r->tmp, r->path, strerror(errno));
		goto out;
	}
	/* the rename itself reaches the disk with the directory */
	slash = strrchr(r->path, '/');
	if (slash)
		*slash = 0;
	if ((dfd = open(slash ? (slash == r->path ? "/" : r->path) : ".",
	                O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	r->tmp[0] = 0;          /* renamed: nothing left to remove */
	rc = 0;
out:
	fsu_replace_abort(r);
	return rc;
}

void
fsu_replace_abort(fsu_replace *r)
{
	if (!r)
		return;
	if (r->fp)
		fclose(r->fp);
	if (r->tmp[0])
		unlink(r->tmp);
	free(r);
}

int
fsu_lock(const char *path, char *err, size_t errlen)
{
	char pid[32] = "";
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	ssize_t n;

	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if ((n = pread(fd, pid, sizeof pid - 1, 0)) > 0)
			pid[strcspn(pid, "\n")] = 0;
		if (e == EWOULDBLOCK)
			snprintf(err, errlen, "%s is in use by another thumbd%s%s%s: one process per "
			         "incoming directory", path, *pid ? " (pid " : "", pid, *pid ? ")" : "");
		else
			snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
		close(fd);
		errno = e;
		return -1;
	}
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		/* the lock holds without the pid; only the message loses it */
	}
	return fd;
}

int
fsu_lock_dir(const char *dir, const char *what, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK)
			snprintf(err, errlen, "%s is the %s directory of another running thumbd: one thumbd "
			         "per directory, since output names and failed.tsv are kept for one", dir, what);
		else
			snprintf(err, errlen, "cannot lock %s: %s", dir, strerror(e));
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int
fsu_mkdirs(const char *path, char *err, size_t errlen)
{
	char buf[4096];
	size_t len = strlen(path);
	struct stat sb;

	if (len == 0 || len >= sizeof buf) {
		snprintf(err, errlen, "bad directory path \"%s\"", path);
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char saved = *p;
			*p = 0;
			if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
				snprintf(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
				return -1;
			}
			*p = saved;
			if (!saved)
				break;
		}
	}
	/* EEXIST above is also a file of that name, which is no directory
	 * to write in: say so now, not at the first thing written there */
	if (stat(path, &sb) < 0) {
		snprintf(err, errlen, "cannot use %s as a directory: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "cannot use %s as a directory: %s", path, strerror(ENOTDIR));
		return -1;
	}
	return 0;
}
