/*
 * urllist: URL list files read lazily, one line at a time, so a list of any
 * length costs the memory of one line.  One URL per line; blank lines and
 * lines starting with '#' are skipped; surrounding whitespace (and a CR
 * from CRLF files) is trimmed, and so is a UTF-8 byte order mark at the
 * start of a file (Windows Notepad writes one).  "-" is standard input.
 */
#ifndef THUMBD_URLLIST_H
#define THUMBD_URLLIST_H

#include <stddef.h>

#define URLLIST_LINE_MAX 8192   /* longer lines are reported, not read into memory */

typedef struct urllist urllist;

/* Check that every path can be opened and is not a directory or an image
 * (so a typo fails before anything starts; "-" too when standard input is
 * a file or a directory); they are opened one after the other while
 * reading.  NULL + err naming the path. */
urllist *urllist_open(char *const *paths, int n, char *err, size_t errlen);
void urllist_close(urllist *l);

typedef enum {
	URLLIST_END = 0,        /* every list read */
	URLLIST_URL,            /* *line is an http(s) URL */
	URLLIST_BAD,            /* *line is not usable; *reason says why */
	URLLIST_ERROR,          /* a list could not be read; *reason says why, reading goes on with the next */
	URLLIST_WAIT,           /* a pipe or terminal has no whole line yet: call again once urllist_fd is readable */
} urllist_kind;

/* Next entry.  *line points into the list's buffer, valid until the next
 * call.  Never waits for a pipe's writer (URLLIST_WAIT); a regular file is
 * simply read. */
urllist_kind urllist_next(urllist *l, const char **line, const char **reason);
/* The descriptor of the list being read (after URLLIST_WAIT: the one to
 * poll), or -1. */
int urllist_fd(const urllist *l);

/* What a line held past its first URLLIST_LINE_MAX bytes, which its reader
 * skips instead of keeping: enough to tell whether the line is blank or a
 * comment, and to give it a failed.tsv key of its own.  Zeroed for each
 * line. */
typedef struct urllist_rest {
	unsigned long long len;         /* bytes skipped; 0: the line fit */
	unsigned long long start;       /* offset (in them) of the first non-blank one */
	unsigned long long end;         /* ... just past the last non-blank one; 0: all blank */
	unsigned long long hash;        /* FNV-1a of the non-blank ones */
	int first;                      /* the first non-blank one */
} urllist_rest;

/* The reader skipped n more bytes of the line. */
void urllist_rest_add(urllist_rest *r, const void *p, size_t n);

/* The rules of urllist_next for one physical line, for readers that get
 * their lines elsewhere (watch.c follows files with inotify).  buf holds the
 * len bytes of the line without its '\n', then a NUL (NUL bytes inside the
 * text make the line BAD; around it they are blanks); first says it is the
 * line at the start of its file (a UTF-8 byte order mark before it is
 * skipped); rest, when the line was cut at URLLIST_LINE_MAX bytes (len is
 * then URLLIST_LINE_MAX), says what followed (NULL: nothing).  Rewrites buf
 * in place (trims it, NULs -> DEL).
 * URLLIST_URL or URLLIST_BAD with *line (into buf) and, for BAD, *reason;
 * URLLIST_END when the line holds no entry (blank, or a comment, however
 * long).  A line whose text goes on past URLLIST_LINE_MAX is BAD ("line too
 * long"), its *line the key failed.tsv records it under: its first 80
 * bytes, then " ... (N bytes, hash H)" (N: its length, trimmed; H: a hash of
 * all of it), which no URL can be (a space) and no other line has. */
urllist_kind urllist_line(char *buf, size_t len, int first, const urllist_rest *rest,
                          const char **line, const char **reason);

/* 1 when s starts with http:// or https:// (case-insensitive) and has a host. */
int urllist_is_http(const char *s);

#endif
