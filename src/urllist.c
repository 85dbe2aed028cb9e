/*
 * urllist: see include/urllist.h.  Lines are read with getc into a fixed
 * buffer rather than getline, so a hostile "list" with a gigabyte-long line
 * cannot make thumbd allocate a gigabyte.  A list is checked to be a file
 * we can read (not a directory, which fopen accepts and only the first read
 * refuses) when it is given, so that a wrong path is a usage error before
 * any work starts, not a failure in the middle of the run.
 */
#include "urllist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img.h"

/* What Windows Notepad and other editors put before the first line of a
 * UTF-8 file. */
#define UTF8_BOM "\xef\xbb\xbf"

struct urllist {
	char *const *paths;
	int n, cur;
	FILE *fp;
	int first;              /* the next line read from fp is its first */
	char errbuf[512];
	char buf[URLLIST_LINE_MAX + 1];
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

/* Open one list ("-": stdin).  NULL + err naming the path. */
static FILE *
list_open(const char *path, char *err, size_t errlen)
{
	struct stat sb = { .st_mode = 0 };
	FILE *fp;

	if (strcmp(path, "-") == 0)
		return stdin;
	if (!(fp = fopen(path, "r"))) {
		snprintf(err, errlen, "%s: cannot open URL list: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "%s: cannot read URL list: %s", path, strerror(EISDIR));
		fclose(fp);
		return NULL;
	}
	/* "thumbd photo.jpg": an image where a list belongs would be read as
	 * lines of binary, each one a failed.tsv entry; say what it is.  Only
	 * a regular file can be looked at without taking its bytes. */
	if (S_ISREG(sb.st_mode)) {
		uint8_t head[512];
		ssize_t n = pread(fileno(fp), head, sizeof head, 0);
		const char *what = NULL;
		if (n > 0) {
			img_format f = img_sniff(head, (size_t)n);
			what = f != IMG_UNKNOWN ? img_format_name(f) : img_sniff_other(head, (size_t)n);
		}
		if (what) {
			snprintf(err, errlen, "%s: an image (%s), not a URL list; for local images: thumbd --files",
			         path, what);
			fclose(fp);
			return NULL;
		}
	}
	return fp;
}

urllist *
urllist_open(char *const *paths, int n, char *err, size_t errlen)
{
	urllist *l;

	for (int i = 0; i < n; i++) {
		FILE *fp;
		if (strcmp(paths[i], "-") == 0)
			continue;
		if (!(fp = list_open(paths[i], err, errlen)))
			return NULL;
		fclose(fp);
	}
	if (!(l = calloc(1, sizeof *l))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->paths = paths;
	l->n = n;
	l->cur = -1;
	return l;
}

void
urllist_close(urllist *l)
{
	if (!l)
		return;
	if (l->fp && l->fp != stdin)
		fclose(l->fp);
	free(l);
}

/* Read one physical line into buf.  Returns its length, -1 at end of file,
 * -2 when it was longer than the buffer (the rest is skipped), or -3 on a
 * read error (errno says which; the part of the line read is dropped). */
static long
read_line(FILE *fp, char *buf, size_t cap)
{
	size_t n = 0;
	int c, too_long = 0;

	while ((c = getc(fp)) != EOF && c != '\n') {
		if (n < cap - 1)
			buf[n++] = (char)c;
		else
			too_long = 1;
	}
	buf[n] = 0;
	if (c == EOF && ferror(fp))
		return -3;
	if (c == EOF && n == 0 && !too_long)
		return -1;
	return too_long ? -2 : (long)n;
}

urllist_kind
urllist_line(char *buf, size_t len, int first, int too_long, const char **line, const char **reason)
{
	char *s = buf, *e = buf + len;
	int nul = 0;

	if (first && len >= sizeof UTF8_BOM - 1 && memcmp(buf, UTF8_BOM, sizeof UTF8_BOM - 1) == 0)
		s += sizeof UTF8_BOM - 1;
	if (too_long) {
		for (char *p = s; p < s + 80; p++)
			if (*p == 0)
				*p = 0x7f;      /* as below */
		s[80] = 0;              /* enough of it to recognise in failed.tsv */
		*line = s;
		*reason = "line too long";
		return URLLIST_BAD;
	}
	/* NUL bytes around the text are blanks (a file cut by a crash can end
	 * in zeros); inside it, read as a C string, one would end the line
	 * early and a shorter URL than the list's would be fetched.  Those
	 * become DEL, which no valid URL holds either: the line is refused
	 * whole (escaped in the log and failed.tsv), never taken for a real
	 * URL it starts with. */
	while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == 0))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == 0))
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

		if (!l->fp) {
			if (++l->cur >= l->n)
				return URLLIST_END;
			if (!(l->fp = list_open(l->paths[l->cur], l->errbuf, sizeof l->errbuf))) {
				*reason = l->errbuf;
				return URLLIST_ERROR;
			}
			l->first = 1;
		}
		len = read_line(l->fp, l->buf, sizeof l->buf);
		if (len == -1 || len == -3) {
			int e = errno;
			if (l->fp != stdin)
				fclose(l->fp);
			l->fp = NULL;
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
		if ((k = urllist_line(l->buf, len == -2 ? sizeof l->buf - 1 : (size_t)len, first, len == -2,
		                      line, reason)) != URLLIST_END)
			return k;
	}
}
