/*
 * urllist: see include/urllist.h.  Lines are read with getc into a fixed
 * buffer rather than getline, so a hostile "list" with a gigabyte-long line
 * cannot make thumbd allocate a gigabyte.
 */
#include "urllist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct urllist {
	char *const *paths;
	int n, cur;
	FILE *fp;
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

urllist *
urllist_open(char *const *paths, int n, char *err, size_t errlen)
{
	urllist *l;

	for (int i = 0; i < n; i++) {
		FILE *fp;
		if (strcmp(paths[i], "-") == 0)
			continue;
		if (!(fp = fopen(paths[i], "r"))) {
			snprintf(err, errlen, "%s: cannot open URL list: %s", paths[i], strerror(errno));
			return NULL;
		}
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
 * or -2 when it was longer than the buffer (the rest is skipped). */
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
	if (c == EOF && n == 0 && !too_long)
		return -1;
	return too_long ? -2 : (long)n;
}

urllist_kind
urllist_line(char *buf, int too_long, const char **line, const char **reason)
{
	char *s, *e;

	if (too_long) {
		buf[80] = 0;            /* enough of it to recognise in failed.tsv */
		*line = buf;
		*reason = "line too long";
		return URLLIST_BAD;
	}
	for (s = buf; *s == ' ' || *s == '\t' || *s == '\r'; s++)
		;
	for (e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'); e--)
		;
	*e = 0;
	if (!*s || *s == '#')
		return URLLIST_END;
	*line = s;
	if (!urllist_is_http(s)) {
		*reason = "not an http(s) URL";
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

		if (!l->fp) {
			if (++l->cur >= l->n)
				return URLLIST_END;
			if (strcmp(l->paths[l->cur], "-") == 0) {
				l->fp = stdin;
			} else if (!(l->fp = fopen(l->paths[l->cur], "r"))) {
				snprintf(l->errbuf, sizeof l->errbuf, "%s: cannot open URL list: %s",
				         l->paths[l->cur], strerror(errno));
				*reason = l->errbuf;
				return URLLIST_ERROR;
			}
		}
		len = read_line(l->fp, l->buf, sizeof l->buf);
		if (len == -1) {
			int bad = ferror(l->fp);
			if (l->fp != stdin)
				fclose(l->fp);
			l->fp = NULL;
			if (bad) {
				snprintf(l->errbuf, sizeof l->errbuf, "%s: read error", l->paths[l->cur]);
				*reason = l->errbuf;
				return URLLIST_ERROR;
			}
			continue;
		}
		if ((k = urllist_line(l->buf, len == -2, line, reason)) != URLLIST_END)
			return k;
	}
}
