/* Unit tests: what earlier runs finished (state.c) and the hash tables under it (hashset.c). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "bigmem.h"
#include "config.h"
#include "hashset.h"
#include "name.h"
#include "state.h"

static char dir[] = "/tmp/thumbd-test-state-XXXXXX";

/* Enough of a JPEG for the "whole file" check: SOI ... EOI. */
#define WHOLE_JPEG "\xff\xd8\xff\xe0 not really pixels \xff\xd9"

static void
put(const char *sub, const char *name, const char *text)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
	fp = fopen(path, "w");
	CHECK(fp != NULL);
	if (fp) {
		fputs(text, fp);
		fclose(fp);
	}
}

static int
exists(const char *sub, const char *name)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
	return access(path, F_OK) == 0;
}

static void
test_hashset(void)
{
	hashset set = { 0 }, map = { 0 };
	int bad = 0;

	CHECK(hash_str("") != 0);
	CHECK(hash_str("a") != hash_str("b"));
	/* enough keys for several growths: nothing lost while segments move */
	for (uint64_t k = 1; k <= 200000; k++)
		if (hashset_put(&set, k * 7919, 1) < 0 || (k <= 50000 && hashset_put(&map, k, (uint32_t)k * 3) < 0))
			bad++;
	CHECK_INT(bad, 0);
	for (uint64_t k = 1; k <= 200000; k++)
		if (hashset_get(&set, k * 7919) != 1)
			bad++;
	CHECK_INT(bad, 0);
	CHECK_INT(set.used, 200000);
	CHECK(set.used * 5 <= set.cap * 4);     /* at most 80% full */
	CHECK(hashset_get(&set, 7919) == 1);
	CHECK(hashset_get(&set, 7918) == 0);
	CHECK(hashset_get(&map, 40000) == 120000);
	CHECK(hashset_get(&map, 50001) == 0);
	CHECK_INT(map.used, 50000);
	hashset_put(&map, 5, 99);               /* overwrite keeps the count */
	CHECK(hashset_get(&map, 5) == 99);
	CHECK_INT(map.used, 50000);
	hashset_free(&set);
	hashset_free(&map);
	CHECK(hashset_get(&set, 7919) == 0);
}

/* RSS_EXACT: 0 under a sanitizer whose own memory moves the resident set
 * (AddressSanitizer's quarantine keeps freed blocks, ThreadSanitizer maps
 * shadow memory for every page touched). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_EXACT 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define RSS_EXACT 0
#endif
#endif
#ifndef RSS_EXACT
#define RSS_EXACT 1
#endif

/* A value from /proc/self/status in kB ("VmRSS:", "VmHWM:"); -1 if none. */
static long
status_kb(const char *field)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (kb < 0 && fgets(line, sizeof line, f))
		if (strncmp(line, field, strlen(field)) == 0)
			kb = atol(line + strlen(field));
	fclose(f);
	return kb;
}

/*
 * While a table grows, the old one goes back piece by piece as the new one
 * fills: the peak is the new table and a few segments, not both tables
 * (with thumbd's heap tuning, bigmem_setup, freed segments that came from
 * malloc stayed resident).  Here from 27 segments (5.3 MB) to 41 (8 MB),
 * the peak resident set is reset just before the put that grows it.
 */
static void
test_hashset_peak(void)
{
	hashset t = { 0 };
	long before, peak, seg_kb = 16384 * 12 / 1024;
	FILE *f;
	uint64_t k = 1;
	int bad = 0;

	bigmem_setup();
	while (t.nsegs < 27 || (t.used + 1) * 5 <= t.cap * 4)     /* until the next put grows it */
		bad += hashset_put(&t, hash_str("seed") + k++ * 0x9e3779b97f4a7c15ULL, 1) < 0;
	CHECK_INT(bad, 0);
	CHECK_INT(t.nsegs, 27);
	if (!RSS_EXACT) {
		fprintf(stderr, "test_state: under a sanitizer the growth's peak is not checked\n");
		hashset_free(&t);
		return;
	}
	f = fopen("/proc/self/clear_refs", "w");
	CHECK(f != NULL && fputs("5", f) >= 0);  /* 5: reset VmHWM to VmRSS */
	if (f)
		CHECK(fclose(f) == 0);
	before = status_kb("VmRSS:");
	CHECK_INT(hashset_put(&t, 42, 1), 0);
	CHECK_INT(t.nsegs, 41);
	peak = status_kb("VmHWM:");
	CHECK(before > 0 && peak > 0);
	/* 41 - 27 segments more, and what is touched before it is given back */
	if (peak - before > (41 - 27 + 4) * seg_kb)
		fprintf(stderr, "  growth 27 -> 41 segments: peak %ld kB over %ld before, a segment %ld kB\n",
		        peak - before, before, seg_kb);
	CHECK(peak - before <= (41 - 27 + 4) * seg_kb);
	CHECK_INT(t.used, (size_t)(k - 1) + 1);
	hashset_free(&t);
}

/* hashset_del: keys that come and go (watch.c's entries out); deleting
 * from the middle of probe runs (a near-full table, keys that wrap at the
 * end) loses none of the others. */
static void
test_hashset_del(void)
{
	hashset t = { 0 };
	int bad = 0;

	hashset_del(&t, 5);                     /* empty: nothing to do */
	for (uint64_t k = 1; k <= 13000; k++)   /* 13000 of 16384 slots: long runs */
		if (hashset_put(&t, k, (uint32_t)k) < 0)
			bad++;
	CHECK_INT(bad, 0);
	for (uint64_t k = 1; k <= 13000; k += 3)
		hashset_del(&t, k);
	hashset_del(&t, 99999);                 /* absent */
	for (uint64_t k = 1; k <= 13000; k++)
		if (hashset_get(&t, k) != (k % 3 == 1 ? 0 : (uint32_t)k))
			bad++;
	CHECK_INT(bad, 0);
	CHECK_INT(t.used, 13000 - 4334);
	/* churn: a table of about 1000 keys stays one segment */
	for (uint64_t k = 1; k <= 13000; k++)
		hashset_del(&t, k);
	CHECK_INT(t.used, 0);
	for (uint64_t k = 1; k <= 1000000; k++) {
		if (hashset_put(&t, k, 1) < 0)
			bad++;
		if (k > 1000)
			hashset_del(&t, k - 1000);
	}
	CHECK_INT(bad, 0);
	CHECK_INT(t.used, 1000);
	CHECK_INT(t.nsegs, 1);
	for (uint64_t k = 999001; k <= 1000000; k++)
		if (hashset_get(&t, k) != 1)
			bad++;
	CHECK_INT(bad, 0);
	hashset_free(&t);
}

static char *
slurp(const char *sub, const char *name)
{
	char path[512], *buf;
	long n;
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
	if (!(fp = fopen(path, "r")))
		return NULL;
	buf = calloc(1, 65536);
	n = buf ? (long)fread(buf, 1, 65535, fp) : 0;
	(void)n;
	fclose(fp);
	return buf;
}

/* Torn records: never read as another URL's; of two whole records of one
 * URL, the newer counts. */
static void
test_torn_records(const cfg *c)
{
	char err[512];
	state *s;

	put("logs", "failed.tsv",
	    "2026-01-01T00:00:00Z\thttp://h/whole.jpg\tHTTP 404\n"
	    /* an older thumbd ran a torn record into the next one */
	    "2026-01-01T00:00:00Z\thttp://h/torn_1.jpg\tHT2026-01-01T00:00:01Z\thttp://h/after_free.jpg\tHTTP 404\n"
	    "2026-01-01T00:00:00Z\thttp://h/torn_2.jpg\tHTTP 4" "2026-01-01T00:00:01Z\thttp://h/after_2.jpg\tHTTP 410\n"
	    "2026-01-01T00:00:00Z\thttp://h/to" "2026-01-01T00:00:01Z\thttp://h/after_3.jpg\tHTTP 410\n"
	    /* log.c ends a torn line with an empty field */
	    "2026-01-01T00:00:00Z\thttp://h/torn_4.jpg\tHTTP 40\t\n"
	    "2026-01-01T00:00:00Z\thttp://h/torn_5.jpg\t\t\n"
	    "2026-01-01T00:00:00Z\thttp://h/torn_6.jpg\t\n"
	    "2026-01-01T00:00\t\n"
	    "\thttp://h/no_time.jpg\tHTTP 404\n"
	    "2026-01-01T00:00:00Z\t\tHTTP 404\n"
	    /* two lines of one URL: the newer (later) one counts */
	    "2026-01-01T00:00:00Z\thttp://h/final_then_not.jpg\tHTTP 404\n"
	    "2026-01-01T00:00:01Z\thttp://h/final_then_not.jpg\thost h:80 paused after 1 consecutive failures (last: HTTP 503)\n"
	    "2026-01-01T00:00:00Z\thttp://h/not_then_final.jpg\tcannot write /x/in/a.part: No space left on device\n"
	    "2026-01-01T00:00:01Z\thttp://h/not_then_final.jpg\tHTTP 404\n"
	    /* cut short at the end of the file */
	    "2026-01-01T00:00:00Z\thttp://h/torn_7.jpg\tHTTP 404");
	s = state_open(c, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(state_failed_before(s, "http://h/whole.jpg"), 1);
	CHECK_INT(state_failed_before(s, "http://h/after_free.jpg"), 1);
	CHECK_INT(state_failed_before(s, "http://h/after_2.jpg"), 1);
	CHECK_INT(state_failed_before(s, "http://h/after_3.jpg"), 1);
	for (int i = 1; i <= 7; i++) {
		char url[64];
		snprintf(url, sizeof url, "http://h/torn_%d.jpg", i);
		CHECK_INT(state_failed_before(s, url), 0);
	}
	CHECK_INT(state_failed_before(s, "http://h/no_time.jpg"), 0);
	CHECK_INT(state_failed_before(s, "http://h/final_then_not.jpg"), 0);
	CHECK_INT(state_failed_before(s, "http://h/not_then_final.jpg"), 1);
	state_close(s);
}

/* The thumbnails of stem, as the default config asks for them. */
static void
put_thumbs(const char *stem)
{
	static const int widths[] = { 32, 64, 200 };
	char name[128];

	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof name, "%s_%d.jpg", stem, widths[i]);
		put("out", name, WHOLE_JPEG);
	}
}

/* A run that does a URL again leaves one line for it, its latest outcome;
 * one it did not finish (interrupted) keeps its old line. */
static void
test_prune(const cfg *c)
{
	static const char old[] =
	    "2026-01-01T00:00:00Z\thttp://h/404.jpg\tHTTP 404\n"
	    "2026-01-01T00:00:00Z\thttp://h/disk.jpg\tcannot write /x/in/a.part: No space left on device\n"
	    "2026-01-01T00:00:00Z\thttp://h/other.jpg\tHTTP 404\n"
	    "2026-01-01T00:00:00Z\thttp://h/fixed.jpg\tHTTP 503 (after 4 attempts)\n"
	    "2026-01-01T00:00:00Z\tftp://h/x.jpg\tnot an http(s) URL\n"
	    "some line thumbd did not write\n";
	static const char again[] = "2026-01-02T00:00:00Z\thttp://h/404.jpg\tHTTP 404\n";
	char err[512], path[512], *text;
	state *s;
	FILE *fp;

	/* a plain run: final failures are skipped, the local one is done again */
	put("logs", "failed.tsv", old);
	s = state_open(c, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(state_lookup(s, c, "http://h/404.jpg", "404"), STATE_FAILED);
	CHECK_INT(state_lookup(s, c, "http://h/disk.jpg", "disk"), STATE_NEW);
	CHECK_INT(state_failed_before(s, "ftp://h/x.jpg"), 1);
	/* not done (an interrupted run): the line stays */
	CHECK_INT(state_prune_failures(s, c, err, sizeof err), 0);
	state_close(s);
	text = slurp("logs", "failed.tsv");
	CHECK_STR(text, old);
	free(text);
	s = state_open(c, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(state_lookup(s, c, "http://h/disk.jpg", "disk"), STATE_NEW);
	put_thumbs("disk");     /* done by the time the run ends */
	CHECK_INT(state_prune_failures(s, c, err, sizeof err), 1);
	state_close(s);
	text = slurp("logs", "failed.tsv");
	CHECK(text && strstr(text, "disk.jpg") == NULL);
	CHECK(text && strstr(text, "http://h/404.jpg\tHTTP 404\n") != NULL);
	CHECK(text && strstr(text, "some line thumbd did not write\n") != NULL);
	free(text);

	/* --retry-failed: 404 fails again (this run's line stays), fixed is
	 * done now, the bad line is recorded again; other is not in this run;
	 * disk (its thumbnails exist) is found done */
	put("logs", "failed.tsv", old);
	s = state_open(c, 1, err, sizeof err);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(state_lookup(s, c, "http://h/404.jpg", "404"), STATE_NEW);
	CHECK_INT(state_lookup(s, c, "http://h/fixed.jpg", "fixed"), STATE_NEW);
	CHECK_INT(state_lookup(s, c, "http://h/disk.jpg", "disk"), STATE_DONE);
	CHECK_INT(state_failed_before(s, "ftp://h/x.jpg"), 0);
	CHECK_INT(state_lookup(s, c, "http://h/new.jpg", "new"), STATE_NEW);
	snprintf(path, sizeof path, "%s/logs/failed.tsv", dir);
	if ((fp = fopen(path, "a"))) {         /* what log_failure appends meanwhile */
		fputs(again, fp);
		fputs("2026-01-02T00:00:00Z\tftp://h/x.jpg\tnot an http(s) URL\n", fp);
		fclose(fp);
	}
	put_thumbs("fixed");
	CHECK_INT(state_prune_failures(s, c, err, sizeof err), 4);
	CHECK_INT(state_prune_failures(s, c, err, sizeof err), 0);     /* once */
	state_close(s);
	text = slurp("logs", "failed.tsv");
	CHECK_STR(text,
	          "2026-01-01T00:00:00Z\thttp://h/other.jpg\tHTTP 404\n"
	          "some line thumbd did not write\n"
	          "2026-01-02T00:00:00Z\thttp://h/404.jpg\tHTTP 404\n"
	          "2026-01-02T00:00:00Z\tftp://h/x.jpg\tnot an http(s) URL\n");
	free(text);
	CHECK_INT(exists("logs", ".failed.tsv.tmp"), 0);

	/* nothing done again: the file is not rewritten */
	s = state_open(c, 0, err, sizeof err);
	CHECK(s != NULL);
	if (s) {
		struct stat a, b;
		stat(path, &a);
		CHECK_INT(state_lookup(s, c, "http://h/404.jpg", "404"), STATE_FAILED);
		CHECK_INT(state_prune_failures(s, c, err, sizeof err), 0);
		stat(path, &b);
		CHECK(a.st_ino == b.st_ino);
	}
	state_close(s);
	unlink(path);
}

int
main(void)
{
	cfg *c = cfg_new();
	char err[512], path[512], name[NAME_MAX_OUT];
	names *reg;
	state *s;

	test_hashset();
	test_hashset_peak();
	test_hashset_del();
	CHECK_INT(state_reason_is_final("HTTP 404"), 1);
	CHECK_INT(state_reason_is_final("HTTP 503 (after 4 attempts)"), 1);
	CHECK_INT(state_reason_is_final("cannot write /x/incoming/a.part: No space left on device"), 0);
	CHECK_INT(state_reason_is_final("cannot create /x/outgoing/.a_32.jpg.tmp: Read-only file system"), 0);
	CHECK_INT(state_reason_is_final("interrupted before the download finished"), 0);
	/* the URL was not tried for itself: its host was paused */
	CHECK_INT(state_reason_is_final("host 127.0.0.1:8080 paused after 10 consecutive failures "
	                                "(last: HTTP 429)"), 0);

	if (!c || !mkdtemp(dir))
		return 1;
	free(c->incoming);
	free(c->outgoing);
	free(c->logs);
	snprintf(path, sizeof path, "%s/in", dir);
	c->incoming = strdup(path);
	snprintf(path, sizeof path, "%s/out", dir);
	c->outgoing = strdup(path);
	snprintf(path, sizeof path, "%s/logs", dir);
	c->logs = strdup(path);
	mkdir(c->incoming, 0755);
	mkdir(c->outgoing, 0755);
	mkdir(c->logs, 0755);

	/* an earlier run: a done URL, a failed one, a local failure, and leftovers */
	reg = names_open(c->incoming, err, sizeof err);
	CHECK(reg != NULL);
	if (!reg)
		return CHECK_DONE();
	CHECK_INT(names_claim(reg, "http://h/done.jpg", "done", name, err, sizeof err), 0);
	CHECK_INT(names_claim(reg, "http://h/half.jpg", "half", name, err, sizeof err), 0);
	CHECK_INT(names_claim(reg, "http://h/stale.png", "stale", name, err, sizeof err), 0);
	CHECK_INT(names_sync(reg), 0);
	names_close(reg);
	put("out", "done_32.jpg", WHOLE_JPEG);
	put("out", "done_64.jpg", WHOLE_JPEG);
	put("out", "done_200.jpg", WHOLE_JPEG);
	put("out", "torn_32.jpg", WHOLE_JPEG);
	put("out", "torn_64.jpg", WHOLE_JPEG);
	put("out", "torn_200.jpg", "\xff\xd8\xff\xe0 cut short by a power failure");
	put("out", "half_32.png", "x");         /* killed before the other widths */
	put("out", ".half_64.png.tmp", "x");
	put("in", ".thumbd.half.jpg.part", "x");
	put("in", ".thumbd.stale.png", "x");    /* downloaded, never resized */
	put("in", ".thumbd.spare-3", "");       /* a recycled download file */
	put("in", ".thumbd-part.half2", "x");   /* the same in today's names (name.h) */
	put("in", ".thumbd-spare-4", "");
	put("in", ".gitkeep", "");              /* someone else's dot-file */
	put("in", "foreign.jpg", "x");          /* put there by another program */
	put("logs", "failed.tsv",
	    "2026-01-01T00:00:00Z\thttp://h/404.jpg\tHTTP 404\n"
	    "2026-01-01T00:00:00Z\thttp://h/disk.jpg\tcannot write /x/in/disk.jpg.part: No space left on device\n"
	    "2026-01-01T00:00:00Z\tftp://h/x.jpg\tnot an http(s) URL\n"
	    "a torn line without tabs\n");

	reg = names_open(c->incoming, err, sizeof err);
	CHECK(reg != NULL);
	s = state_open(c, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!s || !reg)
		return CHECK_DONE();
	CHECK_INT(state_lookup(s, c, "http://h/done.jpg", "done"), STATE_DONE);
	CHECK_INT(state_lookup(s, c, "http://h/torn.jpg", "torn"), STATE_NEW);    /* a torn thumbnail */
	CHECK_INT(state_lookup(s, c, "http://h/half.jpg", "half"), STATE_NEW);
	CHECK_INT(state_lookup(s, c, "http://h/404.jpg", "404"), STATE_FAILED);
	CHECK_INT(state_lookup(s, c, "http://h/disk.jpg", "disk"), STATE_NEW);     /* local: retried */
	CHECK_INT(state_lookup(s, c, "http://h/new.jpg", "new"), STATE_NEW);
	/* list lines that never became a URL: only failed.tsv counts */
	CHECK_INT(state_failed_before(s, "ftp://h/x.jpg"), 1);
	CHECK_INT(state_failed_before(s, "http://h/404.jpg"), 1);
	CHECK_INT(state_failed_before(s, "http://h/disk.jpg"), 0);
	CHECK_INT(state_failed_before(s, "http://h/done.jpg"), 0);
	/* leftovers of the killed run are gone, other programs' files stay */
	CHECK_INT(exists("in", ".thumbd.half.jpg.part"), 0);
	CHECK_INT(exists("out", ".half_64.png.tmp"), 0);
	CHECK_INT(exists("in", ".thumbd.stale.png"), 0);
	CHECK_INT(exists("in", ".thumbd.spare-3"), 0);
	CHECK_INT(exists("in", ".thumbd-part.half2"), 0);
	CHECK_INT(exists("in", ".thumbd-spare-4"), 0);
	CHECK_INT(exists("in", ".gitkeep"), 1);
	CHECK_INT(exists("in", "foreign.jpg"), 1);
	CHECK_INT(exists("out", "half_32.png"), 1);
	CHECK_INT(exists("in", ".thumbd-names"), 1);
	/* with another format configured, the JPEG thumbnails do not count */
	c->format = IMG_WEBP;
	CHECK_INT(state_lookup(s, c, "http://h/done.jpg", "done"), STATE_NEW);
	c->format = IMG_UNKNOWN;

	/* compaction: small files are left alone; past the size, names of URLs
	 * with no thumbnail and no failure line are released */
	CHECK_INT(state_compact_names(s, c, reg, 1 << 20, err, sizeof err), 0);
	CHECK_INT(names_claim(reg, "http://h/404.jpg", "404", name, err, sizeof err), 0);
	CHECK_INT(names_claim(reg, "http://h/gone.jpg", "gone", name, err, sizeof err), 0);
	CHECK_INT(names_sync(reg), 0);
	names_close(reg);
	reg = names_open(c->incoming, err, sizeof err);
	CHECK(reg != NULL);
	if (!reg)
		return CHECK_DONE();
	/* done (thumbnails), half (one thumbnail), 404 (failed.tsv) stay; stale, gone go */
	CHECK_INT(state_compact_names(s, c, reg, 0, err, sizeof err), 2);
	CHECK_INT(names_owned(reg, "done"), 1);
	CHECK_INT(names_owned(reg, "half"), 1);
	CHECK_INT(names_owned(reg, "404"), 1);
	CHECK_INT(names_owned(reg, "gone"), 0);
	CHECK_INT(names_owned(reg, "stale"), 0);
	/* a released name goes to the next URL that wants it, plainly */
	CHECK_INT(names_claim(reg, "http://other/gone.jpg", "gone", name, err, sizeof err), 0);
	CHECK_STR(name, "gone");
	/* kept names still belong to their URLs */
	CHECK_INT(names_claim(reg, "http://other/done.jpg", "done", name, err, sizeof err), 0);
	CHECK(strncmp(name, "done-", 5) == 0);
	/* both new claims have no thumbnail yet: released again (which is why
	 * thumbd compacts only at start, before any claim) */
	CHECK_INT(state_compact_names(s, c, reg, 0, err, sizeof err), 2);
	state_close(s);

	/* --retry-failed forgets the failures */
	s = state_open(c, 1, err, sizeof err);
	CHECK(s != NULL);
	if (s)
		CHECK_INT(state_lookup(s, c, "http://h/404.jpg", "404"), STATE_NEW);
	state_close(s);
	state_close(NULL);
	names_close(reg);

	test_torn_records(c);
	test_prune(c);

	snprintf(err, sizeof err, "rm -rf %s", dir);
	CHECK_INT(system(err), 0);
	cfg_free(c);
	return CHECK_DONE();
}
