/* Unit tests: the daemon's intake (watch.c), on real files in a temp
 * directory with real inotify.  A test that waits for an event polls the
 * watch's fd for at most 2 s. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "urllist.h"
#include "watch.h"

static char root[] = "/tmp/thumbd-test-watch-XXXXXX";

/* root/<fmt...> into a static ring of buffers, so a few can be in use at once. */
static const char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *
P(const char *fmt, ...)
{
	static char bufs[8][1024];
	static int next;
	char *b = bufs[next++ % 8];
	va_list ap;
	int n = snprintf(b, sizeof bufs[0], "%s/", root);

	va_start(ap, fmt);
	vsnprintf(b + n, sizeof bufs[0] - (size_t)n, fmt, ap);
	va_end(ap);
	return b;
}

static void
write_file(const char *path, const char *text, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	size_t len = strlen(text);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, text, len) == (ssize_t)len);
	close(fd);
}

static void put(const char *path, const char *text) { write_file(path, text, O_TRUNC); }
static void append(const char *path, const char *text) { write_file(path, text, O_APPEND); }

static int
exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* The next entry, waiting up to wait_ms for events when none is ready. */
static watch_kind
next_within(watch *w, int wait_ms, const char **text, const char **reason, watch_ticket *t)
{
	long long deadline = now_ms() + wait_ms;

	for (;;) {
		struct pollfd pfd = { .fd = watch_fd(w), .events = POLLIN };
		long long left, due;
		watch_kind k = watch_next(w, text, reason, t);

		if (k != WATCH_NONE || (left = deadline - now_ms()) <= 0)
			return k;
		if ((due = watch_timeout(w)) >= 0 && due < left) {
			/* a grace period ends first: wait for it like fetch.c does */
			if (poll(&pfd, 1, (int)due) > 0)
				CHECK_INT(watch_handle(w), 0);
			continue;
		}
		if (poll(&pfd, 1, (int)left) <= 0)
			return watch_next(w, text, reason, t);
		CHECK_INT(watch_handle(w), 0);
	}
}

/* Expect one entry of kind with text want (reason want_reason when given). */
static watch_ticket
expect(watch *w, watch_kind kind, const char *want, const char *want_reason)
{
	const char *text = NULL, *reason = NULL;
	watch_ticket t = { 0, 0 };
	watch_kind k = next_within(w, 2000, &text, &reason, &t);

	CHECK_INT(k, kind);
	if (want)
		CHECK_STR(text, want);
	if (want_reason)
		CHECK_STR(reason, want_reason);
	if (k != kind)
		fprintf(stderr, "  (wanted %s, got %s)\n", want ? want : "?", text ? text : "nothing");
	return t;
}

static void
expect_done(watch *w, watch_kind kind, const char *want)
{
	watch_done(w, expect(w, kind, want, NULL));
}

/* Nothing comes, not even after the events so far are read. */
static void
expect_none(watch *w)
{
	const char *text = NULL, *reason = NULL;
	watch_ticket t;
	watch_kind k = next_within(w, 150, &text, &reason, &t);

	CHECK_INT(k, WATCH_NONE);
	if (k != WATCH_NONE)
		fprintf(stderr, "  (unexpected %s)\n", text ? text : "?");
}

static int
log_has(const char *needle)
{
	static char buf[1 << 20];
	FILE *fp = fopen(P("logs/thumbd.log"), "r");
	size_t n;

	if (!fp)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, fp);
	fclose(fp);
	buf[n] = 0;
	return strstr(buf, needle) != NULL;
}

static long
outstanding(const watch *w)
{
	long src, out;

	watch_counts(w, &src, &out);
	return out;
}

static int
state_line(const char *state, const char *path, long long *off)
{
	char line[1200], p[1024];
	FILE *fp = fopen(state, "r");
	int found = 0;

	if (!fp)
		return 0;
	while (fgets(line, sizeof line, fp)) {
		uintmax_t dev, ino;
		struct stat sb;
		long long o;
		int n = 0;
		char *q;
		/* "dev ino offset:fingerprint path" */
		if (sscanf(line, "%ju %ju %lld%n", &dev, &ino, &o, &n) != 3 || line[n] != ':')
			continue;
		strtoull(line + n + 1, &q, 16);
		if (sscanf(q, " %1023[^\n]", p) != 1)
			continue;
		if (strcmp(p, path) == 0 && stat(path, &sb) == 0 && (uintmax_t)sb.st_dev == dev
		    && (uintmax_t)sb.st_ino == ino) {
			*off = o;
			found = 1;
		}
	}
	fclose(fp);
	return found;
}

/* --- a followed file ------------------------------------------------------ */

static void
test_follow(void)
{
	char *paths[1], err[512], reason[600], *big;
	const char *list = P("f/list.txt"), *old = P("f/list.txt.1");
	watch *w;
	size_t n;

	CHECK_INT(mkdir(P("f"), 0755), 0);
	put(list, "http://a/1\n# a comment\n\n  http://a/2 \r\nnot-a-url\n");
	paths[0] = (char *)list;
	w = watch_new(paths, 1, NULL, P("f/.state"), err, sizeof err);
	CHECK(w != NULL);
	if (!w) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	/* what is there at start, with urllist's rules */
	expect_done(w, WATCH_URL, "http://a/1");
	expect_done(w, WATCH_URL, "http://a/2");
	snprintf(reason, sizeof reason, "%s:5: not an http(s) URL", list);
	watch_done(w, expect(w, WATCH_BAD, "not-a-url", reason));
	expect_none(w);

	/* appended lines come as soon as their event does; a partial line waits */
	append(list, "http://a/3\nhttp://a/4");
	expect_done(w, WATCH_URL, "http://a/3");
	expect_none(w);
	append(list, "\n");
	expect_done(w, WATCH_URL, "http://a/4");

	/* a line over the cap is reported by file:line, not held; the next one reads */
	big = malloc(URLLIST_LINE_MAX * 2 + 64);
	strcpy(big, "http://x.example/");
	n = strlen(big);
	memset(big + n, 'a', URLLIST_LINE_MAX * 2);
	strcpy(big + n + URLLIST_LINE_MAX * 2, "\nhttp://a/5\n");
	append(list, big);
	free(big);
	snprintf(reason, sizeof reason, "%s:8: line too long", list);
	watch_done(w, expect(w, WATCH_BAD, NULL, reason));
	expect_done(w, WATCH_URL, "http://a/5");
	expect_none(w);

	/* truncation: from the start again, logged */
	CHECK_INT(truncate(list, 0), 0);
	append(list, "http://a/6\n");
	expect_done(w, WATCH_URL, "http://a/6");
	CHECK(log_has("was truncated"));

	/* rotation: the rest of the old file (a last line without '\n' too), then the new one */
	append(list, "http://a/7\n");
	expect_done(w, WATCH_URL, "http://a/7");
	CHECK_INT(rename(list, old), 0);
	append(old, "http://a/8\nhttp://a/8b");
	put(list, "http://a/9\n");
	expect_done(w, WATCH_URL, "http://a/8");
	expect_done(w, WATCH_URL, "http://a/8b");
	expect_done(w, WATCH_URL, "http://a/9");
	expect_none(w);
	/* the new file is the one followed now */
	append(list, "http://a/10\n");
	expect_done(w, WATCH_URL, "http://a/10");
	append(old, "http://a/old-after-switch\n");
	expect_none(w);

	/* rotation by delete, new file later */
	CHECK_INT(unlink(list), 0);
	expect_none(w);
	put(list, "http://a/11\n");
	expect_done(w, WATCH_URL, "http://a/11");
	CHECK_INT(outstanding(w), 0);
	watch_free(w);
}

/* Entries of a file rotated while they are out end after the switch: no
 * harm to the new file's offsets, and nothing leaks (ASan). */
static void
test_follow_late_done(void)
{
	char *paths[1], err[512];
	const char *list = P("fl/list.txt");
	watch_ticket t1, t2;
	watch *w;

	CHECK_INT(mkdir(P("fl"), 0755), 0);
	put(list, "http://l/1\nhttp://l/2\n");
	paths[0] = (char *)list;
	w = watch_new(paths, 1, NULL, P("fl/.state"), err, sizeof err);
	CHECK(w != NULL);
	if (!w)
		return;
	t1 = expect(w, WATCH_URL, "http://l/1", NULL);
	t2 = expect(w, WATCH_URL, "http://l/2", NULL);
	CHECK_INT(unlink(list), 0);
	put(list, "http://l/3\n");
	watch_done(w, t1);
	expect_done(w, WATCH_URL, "http://l/3");
	CHECK_INT(outstanding(w), 1);
	watch_done(w, t2);
	watch_done(w, t2);      /* twice: logged, ignored */
	CHECK(log_has("is not out"));
	CHECK_INT(outstanding(w), 0);

	/* truncated while an entry is out: that entry ending later does not
	 * move the new content's committed offset */
	{
		char e2[512];
		long long off = -1;
		expect_none(w);
		append(list, "http://l/4\n");
		t1 = expect(w, WATCH_URL, "http://l/4", NULL);
		CHECK_INT(truncate(list, 0), 0);
		append(list, "http://l/555\n");
		expect_done(w, WATCH_URL, "http://l/555");
		CHECK_INT(outstanding(w), 1);
		CHECK_INT(watch_save(w, e2, sizeof e2), 0);
		CHECK(state_line(P("fl/.state"), list, &off));
		CHECK_INT(off, 13);
		watch_done(w, t1);
		CHECK_INT(outstanding(w), 0);
		CHECK_INT(watch_save(w, e2, sizeof e2), 0);
		CHECK(state_line(P("fl/.state"), list, &off));
		CHECK_INT(off, 13);
	}
	watch_free(w);
}

/* logrotate's "create": the followed file is renamed away and writers go
 * on appending to it until told to reopen.  Like tail -F, the old file is
 * still read while the name is empty and for the grace period after a new
 * file appears; then the new one from 0. */
static void
test_follow_rotate_create(void)
{
	char *paths[1], err[512];
	const char *list = P("fc/feed.txt"), *old = P("fc/feed.txt.1");
	long long t0;
	watch *w;

	CHECK_INT(mkdir(P("fc"), 0755), 0);
	put(list, "http://c/1\n");
	paths[0] = (char *)list;
	if (!(w = watch_new(paths, 1, NULL, P("fc/.state"), err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	expect_done(w, WATCH_URL, "http://c/1");
	CHECK_INT(rename(list, old), 0);
	expect_none(w);
	CHECK_INT(watch_timeout(w), -1);        /* no new file: no deadline either */
	append(old, "http://c/q1\n");           /* a writer that has not reopened yet */
	expect_done(w, WATCH_URL, "http://c/q1");
	CHECK(log_has("moved away; still reading the old file"));
	t0 = now_ms();
	put(list, "http://c/m\n");
	expect_none(w);
	CHECK(watch_timeout(w) >= 0);
	append(old, "http://c/q2\nhttp://c/q3");        /* within the grace period */
	expect_done(w, WATCH_URL, "http://c/q2");
	/* then the old file to its end (a last line without '\n' counts), then the new */
	expect_done(w, WATCH_URL, "http://c/q3");
	CHECK(now_ms() - t0 >= 900);
	expect_done(w, WATCH_URL, "http://c/m");
	CHECK_INT(watch_timeout(w), -1);
	append(old, "http://c/too-late\n");
	append(list, "http://c/n\n");
	expect_done(w, WATCH_URL, "http://c/n");
	expect_none(w);

	/* renamed away and then deleted (IN_ATTRIB): read to its end, not held open */
	CHECK_INT(rename(list, old), 0);
	append(old, "http://c/o\n");
	expect_done(w, WATCH_URL, "http://c/o");
	CHECK_INT(unlink(old), 0);
	expect_none(w);
	put(list, "http://c/p\n");
	expect_done(w, WATCH_URL, "http://c/p");
	CHECK(log_has("was deleted; reading the old file to its end"));
	CHECK_INT(outstanding(w), 0);
	watch_free(w);
}

/* A stop while entries of a rotated-away file are out: they are saved and
 * read again after a restart from the file's new name; a rotated-away file
 * that is gone by then is named in the log. */
static void
test_restart_rotated(void)
{
	char *paths[1], err[512];
	const char *list = P("rr/feed.txt"), *old = P("rr/feed.txt.1"), *state = P("rr/.state");
	watch_ticket t[4];
	watch *w;

	CHECK_INT(mkdir(P("rr"), 0755), 0);
	put(list, "http://rr/1\nhttp://rr/2\nhttp://rr/3\n");
	paths[0] = (char *)list;
	if (!(w = watch_new(paths, 1, NULL, state, err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	t[0] = expect(w, WATCH_URL, "http://rr/1", NULL);
	t[1] = expect(w, WATCH_URL, "http://rr/2", NULL);
	t[2] = expect(w, WATCH_URL, "http://rr/3", NULL);
	watch_done(w, t[0]);
	CHECK_INT(rename(list, old), 0);
	put(list, "http://rr/new1\n");
	t[3] = expect(w, WATCH_URL, "http://rr/new1", NULL);
	watch_done(w, t[2]);
	watch_done(w, t[3]);
	CHECK_INT(outstanding(w), 1);   /* rr/2 of the old file */
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	watch_free(w);

	/* restart: 2 and 3 of the old file again (3 was after 2), the new file on */
	append(list, "http://rr/new2\n");
	if (!(w = watch_new(paths, 1, NULL, state, err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	CHECK(log_has("the old one is now"));
	t[1] = expect(w, WATCH_URL, "http://rr/2", NULL);
	expect_done(w, WATCH_URL, "http://rr/3");
	expect_done(w, WATCH_URL, "http://rr/new2");
	expect_none(w);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	watch_free(w);

	/* stopped again with rr/2 out; the old file is deleted meanwhile */
	CHECK_INT(unlink(old), 0);
	if (!(w = watch_new(paths, 1, NULL, state, err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	CHECK(log_has("is no longer in"));
	expect_none(w);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	watch_free(w);
}

/* The rotated-away file's inode number, found again at a restart, may be
 * another file's by then (ext4 reuses freed ones; once it was our own
 * state file's): the bytes before the saved offset tell, and a stranger is
 * "no longer there", not read from its start as a list. */
static void
test_restart_rotated_reused(void)
{
	char *paths[1], err[512];
	const char *list = P("ru/feed.txt"), *old = P("ru/feed.txt.1"), *state = P("ru/.state");
	watch_ticket t[3];
	watch *w;
	int fd;

	CHECK_INT(mkdir(P("ru"), 0755), 0);
	put(list, "http://ru/1\nhttp://ru/2\n");
	paths[0] = (char *)list;
	if (!(w = watch_new(paths, 1, NULL, state, err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	t[0] = expect(w, WATCH_URL, "http://ru/1", NULL);
	t[1] = expect(w, WATCH_URL, "http://ru/2", NULL);
	watch_done(w, t[0]);
	CHECK_INT(rename(list, old), 0);
	put(list, "http://ru/new1\n");
	t[2] = expect(w, WATCH_URL, "http://ru/new1", NULL);
	watch_done(w, t[2]);
	CHECK_INT(watch_save(w, err, sizeof err), 0);   /* ru/2 of the old file out */
	watch_free(w);

	/* the same inode, other bytes: what a reused inode looks like */
	fd = open(old, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	if (fd >= 0) {
		static const char other[] = "http://xx/a\nhttp://xx/b\nhttp://xx/c\n";
		CHECK_INT(write(fd, other, sizeof other - 1), (long)(sizeof other - 1));
		close(fd);
	}
	if (!(w = watch_new(paths, 1, NULL, state, err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	CHECK(log_has("is another file than at the last stop, and the old one"));
	expect_none(w);         /* none of xx/: that file is not the list */
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	watch_free(w);
}

/* watch_busy: a URL is a duplicate while another entry of it is out */
static void
test_busy(void)
{
	char *paths[1], err[512];
	const char *list = P("b/list.txt");
	watch_ticket t1, t2;
	watch *w;

	CHECK_INT(mkdir(P("b"), 0755), 0);
	put(list, "http://b/1\nhttp://b/1\n");
	paths[0] = (char *)list;
	if (!(w = watch_new(paths, 1, NULL, P("b/.state"), err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	t1 = expect(w, WATCH_URL, "http://b/1", NULL);
	CHECK_INT(watch_busy(w, "http://b/1", t1), 0);
	t2 = expect(w, WATCH_URL, "http://b/1", NULL);
	CHECK_INT(watch_busy(w, "http://b/1", t2), 1);
	CHECK_INT(watch_busy(w, "http://b/2", t2), 0);
	/* kept (a local failure): still out, its offset not committed, no longer busy */
	CHECK_INT(watch_keep(w, t1, "http://b/1", NULL, 0), -1);
	CHECK_INT(watch_busy(w, "http://b/1", t2), 0);
	CHECK_INT(outstanding(w), 2);
	watch_done(w, t2);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	{
		long long off = -1;
		CHECK(state_line(P("b/.state"), list, &off));
		CHECK_INT(off, 0);
	}
	watch_free(w);
}

/* watch_check: what --check-config reports, the same as watch_new */
static void
test_check(void)
{
	char *paths[3], err[512];

	CHECK_INT(mkdir(P("ck"), 0755), 0);
	paths[0] = (char *)P("ck");
	paths[1] = (char *)P("ck-nodir/later.txt");
	CHECK_INT(watch_check(paths, 2, P("ck-in"), NULL, err, sizeof err), -1);
	CHECK(strstr(err, "does not exist") != NULL);
	{
		/* a directory thumbd makes at start (or a parent of one) passes */
		char *made[] = { (char *)P("ck/../ck-nodir/./in"), NULL }, *made2[] = { (char *)P("ck-no"), NULL };
		CHECK_INT(watch_check(paths, 2, NULL, made, err, sizeof err), 0);
		CHECK_INT(watch_check(paths, 2, NULL, made2, err, sizeof err), -1);
	}
	CHECK(watch_new(paths, 2, NULL, P("ck/.state"), err, sizeof err) == NULL);
	paths[0] = (char *)P("ck");
	paths[1] = (char *)P("ck/x.txt");
	CHECK_INT(watch_check(paths, 2, NULL, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "inside the watched directory") != NULL);
	paths[0] = (char *)P("ck");     /* P's buffers are a ring of 8 */
	paths[1] = (char *)P("later.txt");
	paths[2] = (char *)P("later.txt");
	CHECK_INT(watch_check(paths, 3, NULL, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "listed twice") != NULL);
	CHECK_INT(watch_check(paths, 2, P("ck-in"), NULL, err, sizeof err), 0);
}

static void
test_follow_created_later(void)
{
	char *paths[2], err[512];
	const char *list = P("c/later.urls");
	watch *w;

	CHECK_INT(mkdir(P("c"), 0755), 0);
	paths[0] = (char *)list;
	w = watch_new(paths, 1, NULL, P("c/.state"), err, sizeof err);
	CHECK(w != NULL);
	if (!w)
		return;
	expect_none(w);
	put(list, "http://c/1\n");
	expect_done(w, WATCH_URL, "http://c/1");
	watch_free(w);

	/* a file whose directory does not exist fails, naming the path */
	paths[0] = (char *)P("nope/list.txt");
	CHECK(watch_new(paths, 1, NULL, P("c/.state"), err, sizeof err) == NULL);
	CHECK(strstr(err, paths[0]) != NULL);
	/* a list inside a watched directory would be taken twice */
	paths[0] = (char *)P("c");
	paths[1] = (char *)P("c/x.txt");
	CHECK(watch_new(paths, 2, NULL, P("c/.state"), err, sizeof err) == NULL);
	CHECK(strstr(err, paths[1]) != NULL);
	paths[1] = (char *)P("c");
	CHECK(watch_new(paths, 2, NULL, P("c/.state"), err, sizeof err) == NULL);
	CHECK(strstr(err, "listed twice") != NULL);
	/* so would a state file named like a list */
	CHECK(watch_new(paths, 1, NULL, P("c/state.txt"), err, sizeof err) == NULL);
	CHECK(strstr(err, "c/state.txt") != NULL);
}

/* Lists take turns, one entry each; what is read stays ready for a caller
 * that stopped calling watch_next (full queue) and comes back without a new
 * event. */
static void
test_turns_and_backpressure(void)
{
	char *paths[2], err[512];
	const char *a = P("bp/a.txt"), *b = P("bp/b.txt");
	struct pollfd pfd;
	watch *w;

	CHECK_INT(mkdir(P("bp"), 0755), 0);
	put(a, "http://a/1\nhttp://a/2\nhttp://a/3\n");
	put(b, "http://b/1\nhttp://b/2\n");
	paths[0] = (char *)a;
	paths[1] = (char *)b;
	w = watch_new(paths, 2, NULL, P("bp/.state"), err, sizeof err);
	CHECK(w != NULL);
	if (!w)
		return;
	expect_done(w, WATCH_URL, "http://a/1");
	expect_done(w, WATCH_URL, "http://b/1");
	expect_done(w, WATCH_URL, "http://a/2");
	expect_done(w, WATCH_URL, "http://b/2");
	expect_done(w, WATCH_URL, "http://a/3");
	expect_none(w);

	append(a, "http://a/4\nhttp://a/5\nhttp://a/6\n");
	pfd = (struct pollfd){ .fd = watch_fd(w), .events = POLLIN };
	CHECK_INT(poll(&pfd, 1, 2000), 1);
	CHECK_INT(watch_handle(w), 0);
	CHECK_INT(poll(&pfd, 1, 0), 0);         /* no event left */
	expect_done(w, WATCH_URL, "http://a/4");
	/* ... the caller's queue is full for a while; then: */
	CHECK_INT(poll(&pfd, 1, 0), 0);
	for (int i = 5; i <= 6; i++) {
		const char *text = NULL, *reason = NULL;
		watch_ticket t;
		char url[32];
		snprintf(url, sizeof url, "http://a/%d", i);
		CHECK_INT(watch_next(w, &text, &reason, &t), WATCH_URL);
		CHECK_STR(text, url);
		watch_done(w, t);
	}
	watch_free(w);
}

/* --- a directory of lists ------------------------------------------------- */

static void
test_dir(void)
{
	char *paths[1], err[512], reason[600];
	watch_ticket t1, t2, t3, t4, t5;
	watch *w;
	int fd;

	CHECK_INT(mkdir(P("d"), 0755), 0);
	CHECK_INT(mkdir(P("d/done"), 0755), 0);
	CHECK_INT(mkdir(P("d/sub.txt"), 0755), 0);
	put(P("d/b.urls"), "http://d/4\n");
	put(P("d/a.txt"), "http://d/1\nbad line\nhttp://d/3");
	put(P("d/c.tmp"), "http://d/x1\n");
	put(P("d/.hidden.txt"), "http://d/x2\n");
	put(P("d/e.jpg"), "http://d/x3\n");
	put(P("d/done/b.urls"), "an older b.urls\n");
	paths[0] = (char *)P("d");
	w = watch_new(paths, 1, NULL, P("d/.state"), err, sizeof err);
	CHECK(w != NULL);
	if (!w) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	/* in name order; the last line without '\n' counts */
	t1 = expect(w, WATCH_URL, "http://d/1", NULL);
	snprintf(reason, sizeof reason, "%s:2: not an http(s) URL", P("d/a.txt"));
	t2 = expect(w, WATCH_BAD, "bad line", reason);
	t3 = expect(w, WATCH_URL, "http://d/3", NULL);
	t4 = expect(w, WATCH_URL, "http://d/4", NULL);
	expect_none(w);

	/* done/ only once every entry has ended */
	watch_done(w, t1);
	watch_done(w, t3);
	CHECK(exists(P("d/a.txt")));
	CHECK(!exists(P("d/done/a.txt")));
	watch_done(w, t2);
	CHECK(!exists(P("d/a.txt")));
	CHECK(exists(P("d/done/a.txt")));
	CHECK(log_has("a.txt done (3 lines), moved to"));
	CHECK(exists(P("d/b.urls")));
	watch_done(w, t4);
	CHECK(!exists(P("d/b.urls")));
	/* a list of that name in done/ already is kept: the new one gets .1 */
	for (int i = 0; i < 2; i++) {
		char buf[64] = "";
		FILE *fp = fopen(P(i ? "d/done/b.urls.1" : "d/done/b.urls"), "r");
		CHECK(fp != NULL);
		if (fp) {
			CHECK(fgets(buf, sizeof buf, fp) != NULL);
			fclose(fp);
		}
		CHECK_STR(buf, i ? "http://d/4\n" : "an older b.urls\n");
	}
	CHECK(log_has("b.urls done (1 line), moved to"));
	CHECK(log_has("d/done/b.urls.1"));
	/* not lists: left alone */
	CHECK(exists(P("d/c.tmp")));
	CHECK(exists(P("d/.hidden.txt")));
	CHECK(exists(P("d/e.jpg")));

	/* renamed in later; written in place; a temp name is not taken */
	put(P("d/.incoming.tmp"), "http://d/5\n");
	CHECK_INT(rename(P("d/.incoming.tmp"), P("d/e.urls")), 0);
	t5 = expect(w, WATCH_URL, "http://d/5", NULL);
	put(P("d/f.txt"), "http://d/6\n");
	put(P("d/g.txt.tmp"), "http://d/x4\n");
	t1 = expect(w, WATCH_URL, "http://d/6", NULL);
	/* a second close-write of a list being worked on is not a second list */
	fd = open(P("d/f.txt"), O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	close(fd);
	expect_none(w);
	CHECK_INT(outstanding(w), 2);
	watch_done(w, t1);
	watch_done(w, t5);
	CHECK(exists(P("d/done/e.urls")));
	CHECK(exists(P("d/done/f.txt")));
	CHECK(exists(P("d/g.txt.tmp")));
	/* an empty list is finished at once */
	put(P("d/h.txt"), "# nothing\n\n");
	expect_none(w);
	CHECK(exists(P("d/done/h.txt")));
	CHECK_INT(outstanding(w), 0);
	watch_free(w);
}

/* --- the hand-off directory ----------------------------------------------- */

static void
test_incoming(void)
{
	char err[512];
	watch_ticket t1, t2, tc;
	watch *w;
	int fd;

	CHECK_INT(mkdir(P("in"), 0755), 0);
	CHECK_INT(mkdir(P("in/sub"), 0755), 0);
	put(P("in/old.jpg"), "jpeg");
	put(P("in/.x.part"), "part");
	put(P("in/y.jpg.part"), "part");
	put(P("in/z.tmp"), "tmp");
	put(P("in/.thumbd-names"), "names");
	put(P("outside.png"), "png");
	CHECK_INT(symlink(P("outside.png"), P("in/link.png")), 0);
	w = watch_new(NULL, 0, P("in"), P("in/.thumbd-follow"), err, sizeof err);
	CHECK(w != NULL);
	if (!w) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	/* there at start: only the plain image file */
	t1 = expect(w, WATCH_IMAGE, P("in/old.jpg"), NULL);
	expect_none(w);

	/* moved in: once, even when it is closed after writing again */
	CHECK_INT(rename(P("outside.png"), P("in/new.png")), 0);
	t2 = expect(w, WATCH_IMAGE, P("in/new.png"), NULL);
	fd = open(P("in/new.png"), O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	close(fd);
	put(P("in/.dot.jpg"), "x");
	put(P("in/w.jpg.part"), "x");
	put(P("in/t.tmp"), "x");
	expect_none(w);
	CHECK_INT(outstanding(w), 2);

	/* thumbd's own download renamed into place is claimed, not reported */
	put(P("in/.mine.jpg.part"), "x");
	CHECK_INT(rename(P("in/.mine.jpg.part"), P("in/mine.jpg")), 0);
	CHECK_INT(watch_claim(w, "mine.jpg", &tc), 0);
	CHECK_INT(watch_claim(w, "mine.jpg", &tc), -1);
	expect_none(w);
	CHECK_INT(unlink(P("in/mine.jpg")), 0);        /* the caller's, before watch_done */
	watch_done(w, tc);

	/* once ended (and removed by the caller), the same name may come again */
	CHECK_INT(unlink(P("in/new.png")), 0);
	watch_done(w, t2);
	watch_done(w, t1);
	CHECK_INT(outstanding(w), 0);
	put(P("in/new.png"), "again");
	t2 = expect(w, WATCH_IMAGE, P("in/new.png"), NULL);
	CHECK_INT(unlink(P("in/new.png")), 0);
	watch_done(w, t2);

	/* moved in under a name still handed out (its job would delete the
	 * new file by name): it comes once that one has ended, not lost */
	put(P("in/same.jpg"), "first");
	t1 = expect(w, WATCH_IMAGE, P("in/same.jpg"), NULL);
	put(P("second.jpg"), "second");
	CHECK_INT(rename(P("second.jpg"), P("in/same.jpg")), 0);
	expect_none(w);
	watch_done(w, t1);      /* the first was replaced: nothing to remove */
	t1 = expect(w, WATCH_IMAGE, P("in/same.jpg"), NULL);
	CHECK_INT(unlink(P("in/same.jpg")), 0);
	watch_done(w, t1);
	expect_none(w);
	watch_free(w);
}

/* --- restart ---------------------------------------------------------------- */

static watch *
open_one(const char *path, const char *state)
{
	char *paths[1] = { (char *)path }, err[512];
	watch *w = watch_new(paths, 1, NULL, state, err, sizeof err);

	CHECK(w != NULL);
	if (!w)
		fprintf(stderr, "  %s\n", err);
	return w;
}

static void
test_restart(void)
{
	const char *list = P("r/list.txt"), *state = P("r/.state"), *fresh = P("r/fresh");
	char err[512], reason[600];
	watch_ticket t[6];
	struct stat a, b;
	long long off = -1;
	watch *w;

	CHECK_INT(mkdir(P("r"), 0755), 0);
	put(list, "http://r/1\nhttp://r/2\nhttp://r/3\n# four\nhttp://r/4\nhttp://r/5\nbad\n");
	if (!(w = open_one(list, state)))
		return;
	t[0] = expect(w, WATCH_URL, "http://r/1", NULL);
	t[1] = expect(w, WATCH_URL, "http://r/2", NULL);
	t[2] = expect(w, WATCH_URL, "http://r/3", NULL);
	t[3] = expect(w, WATCH_URL, "http://r/4", NULL);
	t[4] = expect(w, WATCH_URL, "http://r/5", NULL);
	/* ended out of order: 1, 2 and 4; 3 holds the committed offset at its start */
	watch_done(w, t[3]);
	watch_done(w, t[0]);
	watch_done(w, t[1]);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, list, &off));
	CHECK_INT(off, 22);
	/* nothing changed: no new file */
	CHECK_INT(stat(state, &a), 0);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK_INT(stat(state, &b), 0);
	CHECK_INT(a.st_ino, b.st_ino);
	watch_free(w);

	/* after a restart: from 3 on (4 again, as it was not committed), line numbers right */
	if (!(w = open_one(list, state)))
		return;
	t[2] = expect(w, WATCH_URL, "http://r/3", NULL);
	t[3] = expect(w, WATCH_URL, "http://r/4", NULL);
	t[4] = expect(w, WATCH_URL, "http://r/5", NULL);
	snprintf(reason, sizeof reason, "%s:7: not an http(s) URL", list);
	t[5] = expect(w, WATCH_BAD, "bad", reason);
	expect_none(w);
	for (int i = 2; i < 6; i++)
		watch_done(w, t[i]);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, list, &off));
	CHECK_INT(off, 66);
	watch_free(w);

	/* everything committed: nothing comes again */
	if (!(w = open_one(list, state)))
		return;
	expect_none(w);
	watch_free(w);

	/* truncated while down: from 0 */
	put(list, "http://r/short\n");
	if (!(w = open_one(list, state)))
		return;
	expect_done(w, WATCH_URL, "http://r/short");
	CHECK(log_has("is shorter than at the last stop"));
	append(list, "http://r/6\nhttp://r/7\nhttp://r/8\nhttp://r/9\nhttp://r/10\n");
	for (int i = 6; i <= 10; i++) {
		char url[32];
		snprintf(url, sizeof url, "http://r/%d", i);
		expect_done(w, WATCH_URL, url);
	}
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, list, &off));
	CHECK_INT(off, 15 + 4 * 11 + 12);
	watch_free(w);

	/* rotated while down (another inode, longer than the saved offset): from 0 */
	put(fresh, "http://r/new-1\nhttp://r/new-2\nhttp://r/new-3\nhttp://r/new-4\nhttp://r/new-5\nhttp://r/new-6\n");
	CHECK_INT(rename(fresh, list), 0);
	if (!(w = open_one(list, state)))
		return;
	expect_done(w, WATCH_URL, "http://r/new-1");
	watch_free(w);
	CHECK(log_has("is another file than at the last stop"));
}

/* 1 when the file at path has the line want (without its '\n'). */
static int
has_line(const char *path, const char *want)
{
	char line[1024];
	FILE *fp = fopen(path, "r");
	int found = 0;

	if (!fp)
		return 0;
	while (!found && fgets(line, sizeof line, fp))
		found = strcspn(line, "\n") == strlen(want) && strncmp(line, want, strlen(want)) == 0;
	fclose(fp);
	return found;
}

/* A stop while entries of a followed file truncated (logrotate's
 * copytruncate) or deleted are out, one of them kept: the state file keeps
 * their URLs (escaped), the next start hands them out first, and their
 * lines go once they have ended. */
static void
test_restart_truncated(void)
{
	const char *list = P("rt/feed.txt"), *state = P("rt/.state");
	const char *odd = "http://rt/3\\q\001r", *odd_saved = "url http://rt/3\\x5cq\\x01r";
	char err[512];
	watch_ticket t[4];
	watch *w;
	FILE *fp;

	CHECK_INT(mkdir(P("rt"), 0755), 0);
	put(list, "http://rt/1\nhttp://rt/2\nhttp://rt/3\\q\001r\n");
	if (!(w = open_one(list, state)))
		return;
	t[0] = expect(w, WATCH_URL, "http://rt/1", NULL);
	t[1] = expect(w, WATCH_URL, "http://rt/2", NULL);
	t[2] = expect(w, WATCH_URL, odd, NULL);
	watch_done(w, t[0]);
	CHECK_INT(watch_keep(w, t[2], odd, NULL, 0), -1);       /* for the next start */
	CHECK_INT(truncate(list, 0), 0);
	append(list, "http://rt/4\n");
	expect_done(w, WATCH_URL, "http://rt/4");
	CHECK_INT(outstanding(w), 2);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(!has_line(state, "url http://rt/1"));
	CHECK(has_line(state, "url http://rt/2"));
	CHECK(has_line(state, odd_saved));
	watch_free(w);

	/* lines it cannot take are logged and ignored */
	if ((fp = fopen(state, "a"))) {
		fputs("url ftp://rt/5\nurl http://rt/6\\x0\nurl http://rt/7\\x00\n", fp);
		fclose(fp);
	}
	CHECK(fp != NULL);
	if (!(w = open_one(list, state)))
		return;
	CHECK(log_has("2 URLs in flight at the last stop"));
	CHECK(log_has("not \"url\" and an escaped http(s) URL, ignored"));
	t[1] = expect(w, WATCH_URL, "http://rt/2", NULL);
	t[2] = expect(w, WATCH_URL, odd, NULL);
	expect_none(w);                 /* rt/4 was done */
	CHECK_INT(watch_busy(w, "http://rt/2", t[2]), 1);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	watch_done(w, t[1]);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(!has_line(state, "url http://rt/2"));
	CHECK(has_line(state, odd_saved));      /* still out */
	watch_done(w, t[2]);
	CHECK_INT(outstanding(w), 0);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(!has_line(state, odd_saved));
	watch_free(w);

	/* deleted with an entry out, then a new file: the same by its URL */
	if (!(w = open_one(list, state)))
		return;
	expect_none(w);
	append(list, "http://rt/8\n");
	t[3] = expect(w, WATCH_URL, "http://rt/8", NULL);
	CHECK_INT(unlink(list), 0);
	put(list, "http://rt/9\n");
	expect_done(w, WATCH_URL, "http://rt/9");
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(has_line(state, "url http://rt/8"));
	watch_free(w);
	if (!(w = open_one(list, state)))
		return;
	expect_done(w, WATCH_URL, "http://rt/8");
	expect_none(w);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(!has_line(state, "url http://rt/8"));
	watch_free(w);
}

static void
test_restart_dir(void)
{
	const char *state = P("rd-state"), *x = P("rd/x.txt");
	char err[512];
	watch_ticket t1, t2;
	long long off = -1;
	watch *w;

	CHECK_INT(mkdir(P("rd"), 0755), 0);
	put(x, "http://x/1\nhttp://x/2\nhttp://x/3\n");
	if (!(w = open_one(P("rd"), state)))
		return;
	t1 = expect(w, WATCH_URL, "http://x/1", NULL);
	t2 = expect(w, WATCH_URL, "http://x/2", NULL);
	watch_done(w, t2);
	watch_done(w, t1);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, x, &off));
	CHECK_INT(off, 22);
	watch_free(w);

	/* a half-read dir list resumes; once moved to done/ it leaves the state */
	if (!(w = open_one(P("rd"), state)))
		return;
	t1 = expect(w, WATCH_URL, "http://x/3", NULL);
	expect_none(w);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, x, &off));
	CHECK_INT(off, 22);
	CHECK(!exists(P("rd/done/x.txt")));
	watch_done(w, t1);
	CHECK(exists(P("rd/done/x.txt")));
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(!state_line(state, x, &off));
	{
		struct stat sb;
		CHECK_INT(stat(state, &sb), 0);
		CHECK_INT(sb.st_size, 0);
	}
	watch_free(w);
}

/* A list written in place in steps: lines added after it was read to its
 * end are read on, with a close-write or without one (a writer that has
 * not closed yet), and it moves to done/ only once every byte is read. */
static void
test_dir_grows(void)
{
	watch_ticket t1, t2;
	watch *w;
	int fd;

	CHECK_INT(mkdir(P("dg"), 0755), 0);
	if (!(w = open_one(P("dg"), P("dg-state"))))
		return;
	append(P("dg/a.urls"), "http://g/1\n");
	t1 = expect(w, WATCH_URL, "http://g/1", NULL);
	expect_none(w);
	append(P("dg/a.urls"), "http://g/2\n");
	t2 = expect(w, WATCH_URL, "http://g/2", NULL);
	expect_none(w);
	fd = open(P("dg/a.urls"), O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK(write(fd, "http://g/3\n", 11) == 11);
	watch_done(w, t1);
	watch_done(w, t2);
	CHECK(!exists(P("dg/done/a.urls")));
	CHECK(log_has("a.urls grew after it was read (33 bytes, 22 read); reading on"));
	t1 = expect(w, WATCH_URL, "http://g/3", NULL);
	close(fd);
	expect_none(w);
	CHECK(exists(P("dg/a.urls")));
	watch_done(w, t1);
	CHECK(exists(P("dg/done/a.urls")));
	CHECK_INT(outstanding(w), 0);
	expect_none(w);
	watch_free(w);
}

/* The bytes before an offset are checked, not only the inode and size: a
 * followed file rewritten in place is read again from the start, while
 * followed (longer than the offset already) and across a restart (the same
 * length); a state line of an older version, without the fingerprint,
 * still resumes. */
static void
test_rewritten(void)
{
	const char *list = P("rw/list.txt"), *state = P("rw/.state");
	char err[512];
	struct stat sb;
	watch *w;
	FILE *fp;
	int fd;

	CHECK_INT(mkdir(P("rw"), 0755), 0);
	put(list, "http://w/1\n");
	if (!(w = open_one(list, state)))
		return;
	expect_done(w, WATCH_URL, "http://w/1");
	expect_none(w);
	fd = open(list, O_WRONLY);
	CHECK(fd >= 0);
	CHECK(write(fd, "http://v/1\nhttp://v/2\n", 22) == 22);
	close(fd);
	expect_done(w, WATCH_URL, "http://v/1");
	expect_done(w, WATCH_URL, "http://v/2");
	expect_none(w);
	CHECK(log_has("list.txt was truncated or rewritten (the bytes before byte 11 changed)"));
	/* appended to: read on, not again */
	append(list, "http://v/3\n");
	expect_done(w, WATCH_URL, "http://v/3");
	expect_none(w);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	watch_free(w);

	fd = open(list, O_WRONLY);
	CHECK(fd >= 0);
	CHECK(write(fd, "http://u/1\nhttp://u/2\nhttp://u/3\n", 33) == 33);
	close(fd);
	if (!(w = open_one(list, state)))
		return;
	expect_done(w, WATCH_URL, "http://u/1");
	expect_done(w, WATCH_URL, "http://u/2");
	expect_done(w, WATCH_URL, "http://u/3");
	expect_none(w);
	CHECK(log_has("are not those read before the stop"));
	watch_free(w);

	/* "dev ino offset path", as older versions wrote it */
	CHECK_INT(stat(list, &sb), 0);
	fp = fopen(state, "w");
	CHECK(fp != NULL);
	if (!fp)
		return;
	fprintf(fp, "%ju %ju 22 %s\n", (uintmax_t)sb.st_dev, (uintmax_t)sb.st_ino, list);
	fclose(fp);
	if (!(w = open_one(list, state)))
		return;
	expect_done(w, WATCH_URL, "http://u/3");
	expect_none(w);
	watch_free(w);
}

/* --- lost events ---------------------------------------------------------- */

static void
test_overflow(void)
{
	const char *in = P("ov");
	char err[512];
	long max = 0;
	FILE *fp = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
	watch *w;

	if (fp) {
		if (fscanf(fp, "%ld", &max) != 1)
			max = 0;
		fclose(fp);
	}
	CHECK_INT(mkdir(in, 0755), 0);
	w = watch_new(NULL, 0, in, P("ov/.state"), err, sizeof err);
	CHECK(w != NULL);
	if (!w)
		return;
	CHECK(max > 0);
	if (max <= 0 || max > 1000000) {
		fprintf(stderr, "  max_queued_events %ld: overflow not tried\n", max);
		watch_free(w);
		return;
	}
	/* fill the queue with events for ignored names (alternating, so the
	 * kernel cannot merge them), then drop an image in: its event is lost */
	for (long i = 0; i < max + 10; i++) {
		int fd = open(P(i % 2 ? "ov/.a" : "ov/.b"), O_WRONLY | O_CREAT, 0644);
		if (fd >= 0)
			close(fd);
	}
	put(P("ov/late.jpg"), "x");
	expect_done(w, WATCH_IMAGE, P("ov/late.jpg"));
	CHECK(log_has("inotify queue overflowed"));
	expect_none(w);
	watch_free(w);
}

/* --- kept entries tried again (watch_keep with a delay) ------------------- */

static int
same_ticket(watch_ticket a, watch_ticket b)
{
	return a.src == b.src && a.seq == b.seq;
}

/* A followed file: a kept URL is not handed out before its delay, then
 * comes again under its own ticket, busy again; kept again it waits twice
 * as long; a kept bad line comes again with its reason; the offset stays
 * at the first kept entry until it ends. */
static void
test_retry_kept(void)
{
	char *paths[1], err[512], reason[600];
	const char *list = P("k/list.txt"), *state = P("k/.state");
	const char *text = "http://k/1\nbad line\nhttp://k/3\n";
	watch_ticket t1, t2, t3, again, none = { 0, 0 };
	long long off = -1, due, at;
	watch *w;

	CHECK_INT(mkdir(P("k"), 0755), 0);
	put(list, text);
	paths[0] = (char *)list;
	if (!(w = watch_new(paths, 1, NULL, state, err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	snprintf(reason, sizeof reason, "%s:2: not an http(s) URL", list);
	t1 = expect(w, WATCH_URL, "http://k/1", NULL);
	t2 = expect(w, WATCH_BAD, "bad line", reason);
	t3 = expect(w, WATCH_URL, "http://k/3", NULL);
	CHECK_INT(watch_timeout(w), -1);

	/* kept with a retry in 500 ms: the poll wakes for it, nothing before */
	at = now_ms();
	CHECK_INT(watch_keep(w, t1, "http://k/1", NULL, 500), 500);
	due = watch_timeout(w);
	CHECK(due > 300 && due <= 500);
	CHECK_INT(watch_busy(w, "http://k/1", none), 0);
	CHECK_INT(outstanding(w), 3);
	watch_done(w, t3);
	expect_none(w);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, list, &off));
	CHECK_INT(off, 0);

	/* due: the same ticket and URL, in flight again */
	again = expect(w, WATCH_URL, "http://k/1", NULL);
	CHECK(now_ms() - at >= 500);
	CHECK(same_ticket(again, t1));
	CHECK_INT(watch_busy(w, "http://k/1", none), 1);
	CHECK_INT(watch_busy(w, "http://k/1", again), 0);
	CHECK_INT(watch_timeout(w), -1);
	CHECK(log_has("watch: trying a kept entry again: http://k/1"));

	/* kept again: twice the delay; a bad line keeps its reason */
	CHECK_INT(watch_keep(w, again, "http://k/1", NULL, 500), 1000);
	CHECK_INT(watch_keep(w, t2, "bad line", reason, 100), 100);
	due = watch_timeout(w);
	CHECK(due >= 0 && due <= 100);
	again = expect(w, WATCH_BAD, "bad line", reason);
	CHECK(same_ticket(again, t2));
	watch_done(w, again);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, list, &off));
	CHECK_INT(off, 0);
	due = watch_timeout(w);
	CHECK(due > 500 && due <= 1000);

	/* done at last: the offset goes past every line */
	again = expect(w, WATCH_URL, "http://k/1", NULL);
	CHECK(same_ticket(again, t1));
	watch_done(w, again);
	CHECK_INT(outstanding(w), 0);
	CHECK_INT(watch_save(w, err, sizeof err), 0);
	CHECK(state_line(state, list, &off));
	CHECK_INT(off, (long long)strlen(text));

	/* without a delay it waits for the next start, as before */
	append(list, "http://k/4\n");
	t1 = expect(w, WATCH_URL, "http://k/4", NULL);
	CHECK_INT(watch_keep(w, t1, "http://k/4", NULL, 0), -1);
	CHECK_INT(watch_timeout(w), -1);
	expect_none(w);
	CHECK_INT(outstanding(w), 1);
	watch_free(w);
}

/* A directory list with a kept entry stays until the retry ends it, then
 * moves to done/; a retry whose entry ended some other way meanwhile is
 * dropped; one of a followed file truncated meanwhile still comes, from
 * the old reading (a drain), and ends there. */
static void
test_retry_kept_dir(void)
{
	char *paths[2], err[512], fol[1024];
	watch_ticket t1, t2, again;
	watch *w;

	snprintf(fol, sizeof fol, "%s", P("kd/follow.txt"));    /* P's buffers are reused */

	CHECK_INT(mkdir(P("kd"), 0755), 0);
	CHECK_INT(mkdir(P("kd/q"), 0755), 0);
	put(P("kd/q/a.urls"), "http://kd/1\nhttp://kd/2\n");
	put(fol, "http://kd/f1\n");
	paths[0] = (char *)P("kd/q");
	paths[1] = (char *)fol;
	if (!(w = watch_new(paths, 2, NULL, P("kd/.state"), err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	/* round robin: the followed file, then the directory */
	again = expect(w, WATCH_URL, "http://kd/f1", NULL);
	t1 = expect(w, WATCH_URL, "http://kd/1", NULL);
	t2 = expect(w, WATCH_URL, "http://kd/2", NULL);
	expect_none(w);

	/* the followed file's entry kept, then the file truncated and rewritten */
	CHECK_INT(watch_keep(w, again, "http://kd/f1", NULL, 200), 200);
	CHECK_INT(truncate(fol, 0), 0);
	append(fol, "http://k/f2\n");        /* shorter: seen as truncated */
	expect_done(w, WATCH_URL, "http://k/f2");

	/* the list's first entry kept, the second done: the list stays */
	CHECK_INT(watch_keep(w, t1, "http://kd/1", NULL, 300), 300);
	watch_done(w, t2);
	CHECK(exists(P("kd/q/a.urls")));
	CHECK(!exists(P("kd/done/a.urls")));
	CHECK(!exists(P("kd/q/done/a.urls")));

	t2 = expect(w, WATCH_URL, "http://kd/f1", NULL);
	CHECK(same_ticket(t2, again));
	watch_done(w, t2);
	again = expect(w, WATCH_URL, "http://kd/1", NULL);
	CHECK(same_ticket(again, t1));
	CHECK(exists(P("kd/q/a.urls")));
	watch_done(w, again);
	CHECK(!exists(P("kd/q/a.urls")));
	CHECK(exists(P("kd/q/done/a.urls")));
	CHECK_INT(outstanding(w), 0);

	/* ended some other way before its retry: nothing comes when it is due */
	append(fol, "http://kd/f3\n");
	t1 = expect(w, WATCH_URL, "http://kd/f3", NULL);
	CHECK_INT(watch_keep(w, t1, "http://kd/f3", NULL, 100), 100);
	watch_done(w, t1);
	CHECK(watch_timeout(w) >= 0);
	expect_none(w);
	expect_none(w);
	CHECK_INT(watch_timeout(w), -1);
	CHECK_INT(outstanding(w), 0);
	watch_free(w);
}

/* At most WATCH_RETRY_MAX kept entries wait for a retry; one more waits for
 * the next start (logged once). */
static void
test_retry_kept_cap(void)
{
	char *paths[1], err[512], url[64];
	const char *list = P("kc/list.txt");
	watch_ticket t;
	const char *text, *reason;
	long long due;
	FILE *fp;
	watch *w;
	int n = WATCH_RETRY_MAX + 2, got = 0, scheduled = 0;

	CHECK_INT(mkdir(P("kc"), 0755), 0);
	if (!(fp = fopen(list, "w"))) {
		CHECK(fp != NULL);
		return;
	}
	for (int i = 0; i < n; i++)
		fprintf(fp, "http://kc/%d\n", i);
	fclose(fp);
	paths[0] = (char *)list;
	if (!(w = watch_new(paths, 1, NULL, P("kc/.state"), err, sizeof err))) {
		CHECK(w != NULL);
		return;
	}
	while (got < n && watch_next(w, &text, &reason, &t) == WATCH_URL) {
		snprintf(url, sizeof url, "http://kc/%d", got++);
		scheduled += watch_keep(w, t, url, NULL, 60000) == 60000;
	}
	CHECK_INT(got, n);
	CHECK_INT(scheduled, WATCH_RETRY_MAX);
	CHECK(log_has("65536 kept entries"));
	CHECK(log_has("entries kept from now on wait for the next start"));
	CHECK_INT(outstanding(w), n);
	due = watch_timeout(w);
	CHECK(due > 50000 && due <= 60000);
	watch_free(w);
}

/* A round of n kept entries coming due, in dir: each retry asks
 * watch_busy() (fetch.c, the URL was claimed in this run), and it still
 * tells: a later entry of the first URL, read while the first was kept,
 * makes its retry a duplicate, and stops doing so once it has ended.  The
 * seconds the round took, or -1. */
static double
busy_round(int n, const char *dir)
{
	char *paths[1], err[512], url[64];
	const char *list = P("%s/list.txt", dir);
	watch_ticket t, dup = { 0, 0 }, first = { 0, 0 };
	const char *text, *reason;
	struct timespec a, b;
	long long due;
	FILE *fp;
	watch *w;
	int got = 0, busy = 0, again = 0, wrong = 0;
	watch_ticket *ts = malloc((size_t)n * sizeof *ts);
	double took;

	CHECK_INT(mkdir(P("%s", dir), 0755), 0);
	if (!ts || !(fp = fopen(list, "w"))) {
		CHECK(!"out of memory or cannot write the list");
		free(ts);
		return -1;
	}
	/* the first URL twice: its second entry is read while the first is kept */
	fprintf(fp, "http://kb/0\n");
	for (int i = 0; i < n; i++)
		fprintf(fp, "http://kb/%d\n", i);
	fclose(fp);
	paths[0] = (char *)list;
	if (!(w = watch_new(paths, 1, NULL, P("%s/.state", dir), err, sizeof err))) {
		CHECK(w != NULL);
		free(ts);
		return -1;
	}
	/* its retry comes due after every other entry is read and kept */
	first = expect(w, WATCH_URL, "http://kb/0", NULL);
	CHECK_INT(watch_keep(w, first, "http://kb/0", NULL, 2000), 2000);
	dup = expect(w, WATCH_URL, "http://kb/0", NULL);
	CHECK_INT(watch_busy(w, "http://kb/0", dup), 0);        /* the first is kept */
	/* all read before any is kept: a retry due would come first */
	got = 1;
	while (ts && got < n && watch_next(w, &text, &reason, &ts[got]) == WATCH_URL) {
		snprintf(url, sizeof url, "http://kb/%d", got++);
		wrong += strcmp(text, url) != 0;
	}
	CHECK_INT(got, n);
	for (int i = 1; i < got; i++) {
		snprintf(url, sizeof url, "http://kb/%d", i);
		wrong += watch_keep(w, ts[i], url, NULL, 1) != 1;
	}
	CHECK_INT(wrong, 0);    /* every line in order, every keep scheduled (one check, not n) */
	due = watch_timeout(w);          /* the first's, the latest */
	CHECK(due >= 0 && due <= 2000);
	nanosleep(&(struct timespec){ 2, 50 * 1000 * 1000 }, NULL);
	clock_gettime(CLOCK_MONOTONIC, &a);
	while (watch_next(w, &text, &reason, &t) == WATCH_URL) {
		int is = watch_busy(w, text, t);
		again++;
		if (t.src == first.src && t.seq == first.seq)
			CHECK_INT(is, 1);       /* the later one is in flight */
		busy += is;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	CHECK_INT(again, n);
	CHECK_INT(busy, 1);
	CHECK_INT(watch_busy(w, "http://kb/0", dup), 1);        /* the first is out again */
	watch_done(w, first);
	CHECK_INT(watch_busy(w, "http://kb/0", dup), 0);
	watch_done(w, dup);
	watch_free(w);
	free(ts);
	return took;
}

/* watch_busy() must not be a pass over every entry out: a round of 65536
 * retries was 65536 x 65536 steps, seconds of a loop that does not answer
 * its watchdog.  Judged by how the round grows, not by a time limit (the
 * linear round takes 2 s under ThreadSanitizer on a slow machine, the
 * quadratic one 3.6 s in a plain build): 16 times the entries take 16
 * times as long when each question is O(1), 256 times when it is a pass. */
static void
test_retry_kept_busy_cost(void)
{
	int small = WATCH_RETRY_MAX / 16;
	double ts = busy_round(small, "kb1"), tb = busy_round(WATCH_RETRY_MAX, "kb2");

	CHECK(ts >= 0 && tb >= 0);
	CHECK(tb < 64 * ts + 0.05);
	if (!(tb < 64 * ts + 0.05))
		fprintf(stderr, "a round of %d retries took %.3f s, one of %d %.3f s\n",
		        WATCH_RETRY_MAX, tb, small, ts);
}

int
main(void)
{
	char err[512], cmd[256];

	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	CHECK_INT(log_open(P("logs"), err, sizeof err), 0);
	test_follow();
	test_follow_late_done();
	test_follow_rotate_create();
	test_restart_rotated();
	test_restart_rotated_reused();
	test_busy();
	test_check();
	test_follow_created_later();
	test_turns_and_backpressure();
	test_dir();
	test_incoming();
	test_restart();
	test_restart_truncated();
	test_restart_dir();
	test_dir_grows();
	test_rewritten();
	test_overflow();
	test_retry_kept();
	test_retry_kept_dir();
	test_retry_kept_cap();
	test_retry_kept_busy_cost();
	watch_free(NULL);
	log_close();
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	CHECK_INT(system(cmd), 0);
	return CHECK_DONE();
}
