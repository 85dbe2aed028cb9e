/*
 * urllist: see include/urllist.h.  Lines are cut from read()s into a fixed
 * buffer rather than taken with getline, so a hostile "list" with a
 * gigabyte-long line cannot make thumbd allocate a gigabyte, and a pipe is
 * polled before each read, so a writer that pauses never stops the loop
 * that reads it (which drives the transfers too).  What a line holds past
 * that buffer is only summed up (urllist_rest): whether it is blank, its
 * length and a hash, which is all a comment needs to be skipped and a line
 * too long needs to be recorded under a failed.tsv key of its own, found
 * again by the next run and never equal to a URL.  A list is checked to be
 * a file we can read (not a directory, not an image) when it is given, so
 * that a wrong path is a usage error before any work starts, not a failure
 * in the middle of the run.
 */
#include "urllist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "hashset.h"
#include "img.h"

/* What Windows Notepad and other editors put before the first line of a
 * UTF-8 file. */
#define UTF8_BOM "\xef\xbb\xbf"

struct urllist {
	char *const *paths;
	int n, cur;
	int fd;                 /* the list being read, -1 between lists */
	int stream;             /* fd is a pipe, socket or terminal: poll before reading */
	int first;              /* the next line read from fd is its first */
	size_t llen;            /* bytes of the current line in buf so far */
	urllist_rest rest;      /* the current line past URLLIST_LINE_MAX */
	size_t rpos, rlen;      /* unread bytes: rbuf[rpos..rlen) */
	char errbuf[512];
	char buf[URLLIST_LINE_MAX + 1];
	unsigned char rbuf[64 * 1024];
};

int
urllist_is_http(const char *s)
{
	const char *host;

	if (strncasecmp(s, "http://", 7) == 0)
		host = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		host = s + 8;
	else
		return 0;
	return *host && *host != '/' && *host != '?' && *host != '#';
}

/* Open one list ("-": standard input).  The descriptor, *stream set when
 * it is not a regular file; -1 + err naming the path ("standard input"). */
static int
list_open(const char *path, int *stream, char *err, size_t errlen)
{
	const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
	struct stat sb;
	int fd;

	/* a named pipe opens without waiting for its writer, since the loop
	 * that reads lists must not wait (see read_line); poll then says when
	 * the writer has written, and when it has gone */
	if (strcmp(path, "-") == 0) {
		fd = STDIN_FILENO;
		if (fstat(fd, &sb) < 0)
			sb.st_mode = 0;
	} else if ((fd = fsu_open_read(path, &sb)) < 0) {
		snprintf(err, errlen, "%s: cannot open URL list: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "%s: cannot read URL list: %s", name, strerror(EISDIR));
		goto fail;
	}
	*stream = !S_ISREG(sb.st_mode);
	/* "thumbd photo.jpg": an image where a list belongs would be read as
	 * lines of binary, each one a failed.tsv entry; say what it is.  Only
	 * a regular file can be looked at without taking its bytes. */
	if (S_ISREG(sb.st_mode)) {
		uint8_t head[512];
		ssize_t n = pread(fd, head, sizeof head, 0);
		const char *what = NULL;
		if (n > 0) {
			img_format f = img_sniff(head, (size_t)n);
			what = f != IMG_UNKNOWN ? img_format_name(f) : img_sniff_other(head, (size_t)n);
		}
		if (what) {
			snprintf(err, errlen, "%s: an image (%s), not a URL list; for local images: thumbd --files",
			         name, what);
			goto fail;
		}
	}
	return fd;
fail:
	if (fd != STDIN_FILENO)
		close(fd);
	return -1;
}

urllist *
urllist_open(char *const *paths, int n, char *err, size_t errlen)
{
	urllist *l;

	for (int i = 0; i < n; i++) {
		struct stat sb;
		int fd, stream;
		/* standard input redirected from a file or a directory (`thumbd -
		 * < photo.jpg`) is checked like a named one (pread takes none of
		 * a file's bytes); a pipe or a terminal has nothing to look at */
		if (strcmp(paths[i], "-") == 0) {
			if (fstat(STDIN_FILENO, &sb) == 0 && (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))
			    && list_open(paths[i], &stream, err, errlen) < 0)
				return NULL;
			continue;
		}
		/* a named pipe is only looked at: opening and closing it here
		 * would let a writer waiting for a reader write into a pipe
		 * that nobody reads any more (SIGPIPE, or lines lost) */
		if (stat(paths[i], &sb) == 0 && S_ISFIFO(sb.st_mode)) {
			if (access(paths[i], R_OK) < 0) {
				snprintf(err, errlen, "%s: cannot open URL list: %s", paths[i], strerror(errno));
				return NULL;
			}
			continue;
		}
		if ((fd = list_open(paths[i], &stream, err, errlen)) < 0)
			return NULL;
		close(fd);
	}
	if (!(l = calloc(1, sizeof *l))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->paths = paths;
	l->n = n;
	l->cur = -1;
	l->fd = -1;
	return l;
}

static void
list_close(urllist *l)
{
	if (l->fd > STDIN_FILENO)
		close(l->fd);
	l->fd = -1;
	l->llen = l->rpos = l->rlen = 0;
	memset(&l->rest, 0, sizeof l->rest);
}

void
urllist_close(urllist *l)
{
	if (!l)
		return;
	list_close(l);
	free(l);
}

int
urllist_fd(const urllist *l)
{
	return l ? l->fd : -1;
}

/*
 * One physical line into l->buf, from l->rbuf, refilled by read().  A
 * list on a pipe or a terminal (`generate | thumbd -`) may pause for as
 * long as its writer likes; the loop that reads it also drives every
 * transfer, so it must not wait there: when no byte is ready it returns
 * -4 and keeps the part of the line it has.  Returns the line's length,
 * -1 at end of file, -2 when it was longer than the buffer (the rest is
 * skipped, summed up in l->rest for the caller to clear), -3 on a read
 * error (errno says which; the part read is dropped) or -4 (come back when
 * l->fd is readable).
 */
static long
read_line(urllist *l)
{
	for (;;) {
		while (l->rpos < l->rlen) {
			unsigned char c = l->rbuf[l->rpos++];
			if (c == '\n')
				goto line;
			if (l->llen < URLLIST_LINE_MAX)
				l->buf[l->llen++] = (char)c;
			else
				urllist_rest_add(&l->rest, &c, 1);
		}
		if (l->stream) {
			struct pollfd p = { .fd = l->fd, .events = POLLIN };
			int r = poll(&p, 1, 0);
			if (r == 0 || (r < 0 && errno == EINTR))
				return -4;
		}
		ssize_t n = read(l->fd, l->rbuf, sizeof l->rbuf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -4;      /* someone else made it non-blocking */
		if (n < 0)
			return -3;
		if (n == 0) {
			if (l->llen == 0 && !l->rest.len)
				return -1;
			goto line;      /* the last line, without its '\n' */
		}
		l->rpos = 0;
		l->rlen = (size_t)n;
	}
line:
	l->buf[l->llen] = 0;
	{
		long len = l->rest.len ? -2 : (long)l->llen;
		l->llen = 0;
		return len;
	}
}

/* The blanks a line is trimmed of. */
static int
is_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == 0;
}


void
urllist_rest_add(urllist_rest *r, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++, r->len++) {
		if (is_blank(b[i]))
			continue;
		if (!r->end) {
			r->start = r->len;
			r->first = b[i];
			r->hash = HASH_FNV_BASIS;
		}
		r->hash = hash_fnv(r->hash, &b[i], 1);
		r->end = r->len + 1;
	}
}

/*
 * A line whose text goes on past the buffer: s..e is the part kept (the
 * buffer is len + 1 bytes from buf), rest the part skipped.  The text is
 * never whole in memory, so its failed.tsv key is made of what is known of
 * all of it: the first 80 bytes, its trimmed length and a hash of its
 * non-blank bytes (the same whether the list has CRLF or LF ends).  The
 * space before the " ... (" makes it a line no URL can be: a short URL that
 * is those 80 bytes is never taken for it.
 */
static urllist_kind
long_line(char *buf, size_t len, char *s, char *e, const urllist_rest *rest, const char **line,
          const char **reason)
{
	unsigned long long h = HASH_FNV_BASIS, n;
	size_t plen;

	while (s < e && is_blank((unsigned char)*s))
		s++;
	if ((s < e ? *s : rest->first) == '#')
		return URLLIST_END;
	n = s < e ? (unsigned long long)(e - s) + rest->end : rest->end - rest->start;
	for (char *p = s; p < e; p++)
		if (!is_blank((unsigned char)*p))
			h = hash_fnv(h, p, 1);
	for (int i = 0; i < 8; i++) {
		unsigned char byte = (unsigned char)(rest->hash >> (8 * i));
		h = hash_fnv(h, &byte, 1);
	}
	plen = (size_t)(e - s) < 80 ? (size_t)(e - s) : 80;
	if (plen + 64 > len + 1)
		plen = len + 1 > 64 ? len + 1 - 64 : 0;
	memmove(buf, s, plen);
	for (size_t i = 0; i < plen; i++)
		if (buf[i] == 0)
			buf[i] = 0x7f;  /* as in urllist_line */
	snprintf(buf + plen, len + 1 - plen, " ... (%llu bytes, hash %016llx)", n, h);
	*line = buf;
	*reason = "line too long";
	return URLLIST_BAD;
}

urllist_kind
urllist_line(char *buf, size_t len, int first, const urllist_rest *rest, const char **line,
             const char **reason)
{
	char *s = buf, *e = buf + len;
	int nul = 0;

	if (first && len >= sizeof UTF8_BOM - 1 && memcmp(buf, UTF8_BOM, sizeof UTF8_BOM - 1) == 0)
		s += sizeof UTF8_BOM - 1;
	/* text past the buffer (only blanks there: the line is what it holds) */
	if (rest && rest->end)
		return long_line(buf, len, s, e, rest, line, reason);
	/* NUL bytes around the text are blanks (a file cut by a crash can end
	 * in zeros); inside it, read as a C string, one would end the line
	 * early and a shorter URL than the list's would be fetched.  Those
	 * become DEL, which no valid URL holds either: the line is refused
	 * whole (escaped in the log and failed.tsv), never taken for a real
	 * URL it starts with. */
	while (s < e && is_blank((unsigned char)*s))
		s++;
	while (e > s && is_blank((unsigned char)e[-1]))
		e--;
	*e = 0;
	for (char *p = s; p < e; p++)
		if (*p == 0) {
			*p = 0x7f;
			nul = 1;
		}
	if (!*s || *s == '#')
		return URLLIST_END;
	*line = s;
	if (!urllist_is_http(s)) {
		*reason = "not an http(s) URL";
		return URLLIST_BAD;
	}
	if (nul) {
		*reason = "invalid URL: a NUL byte in the line";
		return URLLIST_BAD;
	}
	return URLLIST_URL;
}

urllist_kind
urllist_next(urllist *l, const char **line, const char **reason)
{
	for (;;) {
		urllist_kind k;
		long len;
		int first;

		if (l->fd < 0) {
			if (++l->cur >= l->n)
				return URLLIST_END;
			if ((l->fd = list_open(l->paths[l->cur], &l->stream, l->errbuf, sizeof l->errbuf)) < 0) {
				*reason = l->errbuf;
				return URLLIST_ERROR;
			}
			l->first = 1;
		}
		len = read_line(l);
		if (len == -4)
			return URLLIST_WAIT;
		if (len == -1 || len == -3) {
			int e = errno;
			list_close(l);
			if (len == -3) {
				snprintf(l->errbuf, sizeof l->errbuf, "%s: read error: %s", l->paths[l->cur],
				         strerror(e));
				*reason = l->errbuf;
				return URLLIST_ERROR;
			}
			continue;
		}
		first = l->first;
		l->first = 0;
		k = urllist_line(l->buf, len == -2 ? sizeof l->buf - 1 : (size_t)len, first,
		                 len == -2 ? &l->rest : NULL, line, reason);
		memset(&l->rest, 0, sizeof l->rest);
		if (k != URLLIST_END)
			return k;
	}
}
