/* Unit tests: failure classes, histograms in stats.h, the Prometheus file and the summary (metrics.c). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "metrics.h"
#include "stats.h"

static char dir[] = "/tmp/thumbd-test-metrics-XXXXXX";
static int quiet;               /* validate() on bad input on purpose: no messages */

/* Real reasons, as fetch.c, urllist.c, thumb.c, img.c, the codecs, fsutil.c,
 * name.c and main.c write them (several from tests/integration/fault_cases.py). */
static const struct {
	const char *reason;
	fail_class cls;
} reasons[] = {
	{ "HTTP 404", FAIL_HTTP },
	{ "HTTP 410", FAIL_HTTP },
	{ "HTTP 503 (after 4 attempts)", FAIL_HTTP },
	{ "HTTP 429 (after 4 attempts)", FAIL_HTTP },
	{ "too many redirects (max_redirects 5)", FAIL_HTTP },
	{ "HTTP 206 Partial Content to a request without Range (Content-Range: bytes 0-999/6412)", FAIL_HTTP },
	{ "not an HTTP response (no status line)", FAIL_HTTP },
	{ "response headers too large (a line over 100 KB)", FAIL_HTTP },
	{ "response headers too large (over 300 KB in all)", FAIL_HTTP },
	{ "malformed chunked encoding: Illegal or missing hexadecimal sequence in chunked-encoding", FAIL_HTTP },
	{ "cannot resolve host aaaa.invalid", FAIL_NETWORK },
	{ "cannot connect to 127.0.0.1 port 9: Connection refused (after 4 attempts)", FAIL_NETWORK },
	{ "cannot connect to the proxy: Failed to connect to 127.0.0.1 port 18099 after 0 ms: Couldn't connect to server", FAIL_NETWORK },
	{ "the proxy answered HTTP 403 to CONNECT (after 4 attempts)", FAIL_NETWORK },
	{ "connect timeout after 2 s (after 2 attempts)", FAIL_NETWORK },
	{ "timeout after 3 s (after 2 attempts)", FAIL_NETWORK },
	{ "no response in 3 s (after 2 attempts)", FAIL_NETWORK },
	{ "stalled: under 1024 bytes/s for 2 s (after 2 attempts)", FAIL_NETWORK },
	{ "truncated body: got 500 of 1000 bytes (after 4 attempts)", FAIL_NETWORK },
	{ "truncated body: connection closed after 50000 bytes (after 4 attempts)", FAIL_NETWORK },
	{ "connection closed: Recv failure: Connection reset by peer", FAIL_NETWORK },
	{ "TLS: SSL certificate problem: self-signed certificate", FAIL_NETWORK },
	{ "Failed sending data to the peer", FAIL_NETWORK },
	{ "too large: more than 52428800 bytes (max_bytes)", FAIL_TOO_LARGE },
	{ "too large: Content-Length 60000000 > max_bytes 52428800", FAIL_TOO_LARGE },
	{ "too large: 50000x50000 > max_pixels", FAIL_TOO_LARGE },
	{ "too large: more than 65500 pixels a side", FAIL_TOO_LARGE },
	{ "too large: 60000000 bytes > max_bytes 52428800", FAIL_TOO_LARGE },
	{ "thumbnail too large: 200x70000 (picture is 10x3500)", FAIL_TOO_LARGE },
	{ "too large for WebP: 20000x20000", FAIL_TOO_LARGE },
	{ "not an image (text/html)", FAIL_NOT_IMAGE },
	{ "not an image (unrecognised data)", FAIL_NOT_IMAGE },
	{ "unsupported format: GIF", FAIL_NOT_IMAGE },
	{ "unsupported format: TIFF", FAIL_NOT_IMAGE },
	{ "unsupported JPEG: 12-bit precision", FAIL_NOT_IMAGE },
	{ "unsupported PNG: colour type 7, depth 8", FAIL_NOT_IMAGE },
	{ "empty file", FAIL_NOT_IMAGE },
	{ "empty body (HTTP 200)", FAIL_NOT_IMAGE },
	{ "truncated JPEG", FAIL_DECODE },
	{ "truncated PNG", FAIL_DECODE },
	{ "truncated WebP", FAIL_DECODE },
	{ "corrupt PNG: IHDR: CRC error", FAIL_DECODE },
	{ "corrupt JPEG: more than 1000 scans", FAIL_DECODE },
	{ "corrupt WebP: bitstream error", FAIL_DECODE },
	{ "cannot encode PNG: out of memory", FAIL_DECODE },
	{ "invalid URL: Malformed input to a URL function", FAIL_INVALID },
	{ "not an http(s) URL", FAIL_INVALID },
	{ "line too long", FAIL_INVALID },
	/* the daemon's lists (watch.c) put the line's place first */
	{ "/var/lib/thumbd/lists/a.urls:3: not an http(s) URL", FAIL_INVALID },
	{ "/var/lib/thumbd/feed.txt:12: line too long", FAIL_INVALID },
	{ "redirect to a non-http(s) URL refused", FAIL_INVALID },
	{ "photos/: not a regular file", FAIL_INVALID },
	{ "cannot write incoming/a.jpg.part: No space left on device", FAIL_LOCAL },
	{ "cannot create outgoing/.a_32.jpg.tmp: Read-only file system", FAIL_LOCAL },
	{ "cannot rename incoming/a.jpg.part: No such file or directory", FAIL_LOCAL },
	{ "cannot open photos/x.jpg: No such file or directory", FAIL_LOCAL },
	{ "cannot write the name registry: No space left on device", FAIL_LOCAL },
	{ "cannot sync the name registry", FAIL_LOCAL },
	{ "internal error: resize queue closed", FAIL_LOCAL },
	{ "internal error: resize queue unavailable", FAIL_LOCAL },
	{ "out of memory", FAIL_LOCAL },
	{ "out of memory resizing to 200x150", FAIL_LOCAL },
	{ "no free name for http://h/a.jpg", FAIL_LOCAL },
	{ "cannot start the transfer (libcurl)", FAIL_LOCAL },
	{ "urls.txt: cannot open URL list: Permission denied", FAIL_LOCAL },
	{ "urls.txt: read error", FAIL_LOCAL },
	{ "urls.txt: read error: Input/output error", FAIL_LOCAL },
	{ "lists: cannot read URL list: Is a directory", FAIL_LOCAL },
	/* a paused host: the class of what paused it, network when that has none */
	{ "host 127.0.0.1:18098 paused after 10 consecutive failures "
	  "(last: cannot connect to 127.0.0.1 port 18098: Connection refused)", FAIL_NETWORK },
	{ "host nx.invalid:80 paused after 10 consecutive failures (last: cannot resolve host nx.invalid)",
	  FAIL_NETWORK },
	{ "host [::1]:8080 paused after 5 consecutive failures (last: HTTP 503 (after 4 attempts))", FAIL_HTTP },
	{ "host h:80 paused after 5 consecutive failures (last: Unsupported protocol)", FAIL_NETWORK },
	{ "host h:80 paused after 5 consecutive failures (last: )", FAIL_NETWORK },
	{ "bad arguments", FAIL_OTHER },
	{ "Unsupported protocol", FAIL_OTHER },
	{ "", FAIL_OTHER },
};

static void
test_classes(void)
{
	const char *seen[FAIL_NCLASS] = { 0 };

	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
		fail_class got = metrics_reason_class(reasons[i].reason);
		if (got != reasons[i].cls)
			fprintf(stderr, "reason \"%s\": class %s, expected %s\n", reasons[i].reason,
			        metrics_class_name(got), metrics_class_name(reasons[i].cls));
		CHECK_INT(got, reasons[i].cls);
	}
	CHECK_INT(metrics_reason_class(NULL), FAIL_OTHER);
	/* names: distinct, non-empty, valid label values */
	for (int c = 0; c < FAIL_NCLASS; c++) {
		const char *n = metrics_class_name((fail_class)c);
		CHECK(n && *n && strspn(n, "abcdefghijklmnopqrstuvwxyz_") == strlen(n));
		for (int d = 0; d < c; d++)
			CHECK(strcmp(seen[d], n) != 0);
		seen[c] = n;
	}
	CHECK_STR(metrics_class_name(FAIL_HTTP), "http");
	CHECK_STR(metrics_class_name(FAIL_TOO_LARGE), "too_large");
	CHECK_STR(metrics_class_name(FAIL_NCLASS), "other");
}

static void
test_counting(void)
{
	static stats st;

	stats_fail(&st, "HTTP 404");
	stats_fail(&st, "HTTP 500 (after 4 attempts)");
	stats_fail(&st, "truncated JPEG");
	stats_fail(&st, "something nobody wrote yet");
	CHECK_INT(STAT_GET(&st, failed), 4);
	CHECK_INT(STAT_GET(&st, failed_by[FAIL_HTTP]), 2);
	CHECK_INT(STAT_GET(&st, failed_by[FAIL_DECODE]), 1);
	CHECK_INT(STAT_GET(&st, failed_by[FAIL_OTHER]), 1);
	CHECK_INT(STAT_GET(&st, failed_by[FAIL_NETWORK]), 0);

	/* le is inclusive: 0.005 is in the first bucket, a little more is not */
	stats_observe(&st.download, 0.005);
	stats_observe(&st.download, 0.0051);
	stats_observe(&st.download, -1);        /* clock oddity: counts as 0 */
	stats_observe(&st.download, NAN);
	stats_observe(&st.download, 60);
	stats_observe(&st.download, 61);
	stats_observe(&st.download, 1e300);
	CHECK_INT(STAT_GET(&st, download.bucket[0]), 3);
	CHECK_INT(STAT_GET(&st, download.bucket[1]), 1);
	CHECK_INT(STAT_GET(&st, download.bucket[STATS_HIST_N - 2]), 1);
	CHECK_INT(STAT_GET(&st, download.bucket[STATS_HIST_N - 1]), 2);
	CHECK_INT(STAT_GET(&st, download.sum_us), 5000 + 5100 + 60000000LL + 61000000LL + 1000000000000000LL);
}

/* --- reading a metrics file back ---------------------------------------- */

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	size_t n;

	if (!fp)
		return NULL;
	buf = calloc(1, 65536);
	n = buf ? fread(buf, 1, 65535, fp) : 0;
	if (buf)
		buf[n] = 0;
	fclose(fp);
	return buf;
}

/* The value of the sample "key" (name with its labels), or NAN if absent. */
static double
sample(const char *text, const char *key)
{
	size_t klen = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, klen) == 0 && p[klen] == ' ')
			return strtod(p + klen + 1, NULL);
	return NAN;
}

static int
ends_with(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && strncmp(s + len - n, suffix, n) == 0;
}

/* Check the exposition format line by line: HELP then TYPE before a
 * family's samples, every sample "name{labels} value" of that family,
 * histogram buckets with increasing le, cumulative counts, +Inf last and
 * equal to _count.  Returns the number of problems (each printed). */
static int
validate(const char *text)
{
	char family[128] = "", type[32] = "", help[128] = "", families[64][128];
	int bad = 0, nfam = 0, line = 0, nbuckets = 0, have_inf = 0;
	double last_le = -1, last_cum = -1, inf_cum = -1;
	const char *p = text;

#define BAD(...) do { bad++; if (quiet) break; fprintf(stderr, "metrics line %d: ", line); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } while (0)
	if (!*text || text[strlen(text) - 1] != '\n')
		BAD("file empty or not ending in a newline");
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char l[512];

		line++;
		snprintf(l, sizeof l, "%.*s", (int)len, p);
		p += len + (eol != NULL);
		if (strncmp(l, "# HELP ", 7) == 0) {
			if (sscanf(l + 7, "%127s", help) != 1 || strlen(l) <= 8 + strlen(help))
				BAD("HELP without text: %s", l);
			continue;
		}
		if (strncmp(l, "# TYPE ", 7) == 0) {
			char name[128], t[32];
			if (strcmp(type, "histogram") == 0 && !have_inf)
				BAD("histogram %s has no +Inf bucket", family);
			if (sscanf(l + 7, "%127s %31s", name, t) != 2 || strcmp(name, help) != 0) {
				BAD("TYPE not right after the HELP of the same name: %s", l);
				continue;
			}
			if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram"))
				BAD("unknown type %s", t);
			if (strcmp(t, "counter") == 0 && !ends_with(name, strlen(name), "_total"))
				BAD("counter %s does not end in _total", name);
			for (int i = 0; i < nfam; i++)
				if (strcmp(families[i], name) == 0)
					BAD("family %s twice", name);
			if (nfam < 64)
				snprintf(families[nfam++], sizeof families[0], "%s", name);
			snprintf(family, sizeof family, "%s", name);
			snprintf(type, sizeof type, "%s", t);
			help[0] = 0;
			nbuckets = have_inf = 0;
			last_le = last_cum = inf_cum = -1;
			continue;
		}
		/* a sample */
		size_t nl = strspn(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
		const char *rest = l + nl, *le = NULL;
		char *end;
		if (nl == 0 || strncmp(l, "thumbd_", 7) != 0) {
			BAD("not a thumbd_ sample: %s", l);
			continue;
		}
		if (*rest == '{') {
			const char *close = strchr(rest, '}');
			/* labels: name="value"[,name="value"] */
			for (const char *q = rest + 1; close && q < close;) {
				size_t ln = strspn(q, "abcdefghijklmnopqrstuvwxyz_");
				const char *v = q + ln;
				if (!ln || v[0] != '=' || v[1] != '"' || !strchr(v + 2, '"')) {
					BAD("bad labels: %s", l);
					break;
				}
				if (ln == 2 && strncmp(q, "le", 2) == 0)
					le = v + 2;
				q = strchr(v + 2, '"') + 1;
				if (*q == ',')
					q++;
			}
			if (!close) {
				BAD("unclosed labels: %s", l);
				continue;
			}
			rest = close + 1;
		}
		if (*rest != ' ') {
			BAD("no space before the value: %s", l);
			continue;
		}
		double v = strtod(rest + 1, &end);
		if (end == rest + 1 || *end)
			BAD("value not a number: %s", l);
		if (!*family) {
			BAD("sample before any TYPE: %s", l);
			continue;
		}
		int is_hist = strcmp(type, "histogram") == 0;
		size_t fl = strlen(family);
		if (strncmp(l, family, fl) != 0 ||
		    !(nl == fl || (is_hist && (strncmp(l + fl, "_bucket", nl - fl) == 0 ||
		                               strncmp(l + fl, "_sum", nl - fl) == 0 ||
		                               strncmp(l + fl, "_count", nl - fl) == 0) && nl > fl))) {
			BAD("sample %s not of family %s (%s)", l, family, type);
			continue;
		}
		if (!is_hist)
			continue;
		if (nl - fl == 7 && strncmp(l + fl, "_bucket", 7) == 0) {
			double b = le ? (strncmp(le, "+Inf\"", 5) == 0 ? INFINITY : strtod(le, NULL)) : NAN;
			if (!(b > last_le))
				BAD("le not increasing: %s", l);
			if (v < last_cum)
				BAD("bucket counts not cumulative: %s", l);
			if (have_inf)
				BAD("bucket after +Inf: %s", l);
			if (isinf(b)) {
				have_inf = 1;
				inf_cum = v;
			}
			last_le = b;
			last_cum = v;
			nbuckets++;
		} else if (nl - fl == 6 && strncmp(l + fl, "_count", 6) == 0) {
			if (!have_inf || v != inf_cum)
				BAD("_count %g is not the +Inf bucket %g", v, inf_cum);
		}
	}
	if (strcmp(type, "histogram") == 0 && !have_inf)
		BAD("histogram %s has no +Inf bucket", family);
#undef BAD
	return bad;
}

/* Entries in dir other than "." and ".." (1 = only the metrics file). */
static int
dir_entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void
test_write(void)
{
	static stats st;
	metrics_gauges g = { .queue_depth = 5, .workers_busy = 3, .workers = 4 };
	char path[256], err[512], *text;
	const char *classes[FAIL_NCLASS] = { "http", "network", "too_large", "not_image", "decode",
	                                     "invalid", "local", "other" };
	FILE *old;

	snprintf(path, sizeof path, "%s/thumbd.prom", dir);
	STAT_ADD(&st, urls, 7);
	STAT_ADD(&st, images, 3);
	STAT_ADD(&st, retries, 2);
	STAT_ADD(&st, host_overloads, 4);
	STAT_ADD(&st, bytes, 123456789012LL);
	STAT_ADD(&st, thumbnails, 9);
	STAT_ADD(&st, already_done, 1);
	STAT_ADD(&st, duplicates, 2);
	STAT_ADD(&st, in_flight, 6);
	stats_fail(&st, "HTTP 404");
	stats_fail(&st, "HTTP 503 (after 4 attempts)");
	stats_fail(&st, "cannot resolve host x.invalid");
	stats_observe(&st.download, 0.3);
	stats_observe(&st.download, 0.3);
	stats_observe(&st.download, 2);
	stats_observe(&st.download, 100);
	stats_observe(&st.resize, 0.02);

	CHECK_INT(metrics_write(path, &st, &g, err, sizeof err), 0);
	text = slurp(path);
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_INT(validate(text), 0);
	CHECK_INT(dir_entries(), 1);            /* no .thumbd.prom.tmp left */
	CHECK(sample(text, "thumbd_urls_total") == 7);
	CHECK(sample(text, "thumbd_urls_done_total") == 3);
	CHECK(sample(text, "thumbd_retries_total") == 2);
	CHECK(sample(text, "thumbd_host_overloads_total") == 4);
	CHECK(sample(text, "thumbd_download_bytes_total") == 123456789012.0);
	CHECK(sample(text, "thumbd_thumbnails_written_total") == 9);
	CHECK(sample(text, "thumbd_skipped_total{why=\"already_done\"}") == 1);
	CHECK(sample(text, "thumbd_skipped_total{why=\"failed_before\"}") == 0);
	CHECK(sample(text, "thumbd_skipped_total{why=\"duplicate\"}") == 2);
	CHECK(sample(text, "thumbd_transfers_in_flight") == 6);
	CHECK(sample(text, "thumbd_queue_depth") == 5);
	CHECK(sample(text, "thumbd_workers_busy") == 3);
	CHECK(sample(text, "thumbd_workers") == 4);
	CHECK(isnan(sample(text, "thumbd_uptime_seconds")));   /* not a daemon */
	/* every class present, zeros included */
	for (int c = 0; c < FAIL_NCLASS; c++) {
		char key[128];
		snprintf(key, sizeof key, "thumbd_urls_failed_total{reason=\"%s\"}", classes[c]);
		CHECK(sample(text, key) == (c == FAIL_HTTP ? 2 : c == FAIL_NETWORK ? 1 : 0));
	}
	CHECK(sample(text, "thumbd_download_seconds_bucket{le=\"0.25\"}") == 0);
	CHECK(sample(text, "thumbd_download_seconds_bucket{le=\"0.5\"}") == 2);
	CHECK(sample(text, "thumbd_download_seconds_bucket{le=\"2.5\"}") == 3);
	CHECK(sample(text, "thumbd_download_seconds_bucket{le=\"60\"}") == 3);
	CHECK(sample(text, "thumbd_download_seconds_bucket{le=\"+Inf\"}") == 4);
	CHECK(sample(text, "thumbd_download_seconds_count") == 4);
	CHECK(fabs(sample(text, "thumbd_download_seconds_sum") - 102.6) < 1e-6);
	CHECK(sample(text, "thumbd_resize_seconds_bucket{le=\"0.01\"}") == 0);
	CHECK(sample(text, "thumbd_resize_seconds_bucket{le=\"0.025\"}") == 1);
	CHECK(sample(text, "thumbd_resize_seconds_count") == 1);
	/* the validator itself fails on what it should reject */
	quiet = 1;
	CHECK(validate("thumbd_x 1\n") > 0);
	CHECK(validate("# HELP thumbd_h h\n# TYPE thumbd_h histogram\nthumbd_h_bucket{le=\"1\"} 2\n"
	               "thumbd_h_bucket{le=\"+Inf\"} 1\nthumbd_h_count 1\n") > 0);
	CHECK(validate("# HELP thumbd_h h\n# TYPE thumbd_h histogram\nthumbd_h_bucket{le=\"1\"} 1\n"
	               "thumbd_h_bucket{le=\"+Inf\"} 2\nthumbd_h_count 3\n") > 0);
	CHECK(validate("# TYPE thumbd_c_total counter\nthumbd_c_total 1\n") > 0);
	quiet = 0;
	free(text);

	/* replaced, not rewritten in place: a reader holding the old file
	 * still reads all of the old content */
	old = fopen(path, "r");
	CHECK(old != NULL);
	g.daemon = 1;
	g.lists_watched = 2;
	g.entries_pending = 11;
	g.uptime = 12.5;
	g.start_time = 1700000000;
	STAT_ADD(&st, urls, 1);
	CHECK_INT(metrics_write(path, &st, &g, err, sizeof err), 0);
	if (old) {
		char buf[65536];
		size_t n = fread(buf, 1, sizeof buf - 1, old);
		buf[n] = 0;
		fclose(old);
		CHECK(sample(buf, "thumbd_urls_total") == 7);
		CHECK_INT(validate(buf), 0);
	}
	text = slurp(path);
	CHECK(text && sample(text, "thumbd_urls_total") == 8);
	CHECK(text && sample(text, "thumbd_lists_watched") == 2);
	CHECK(text && sample(text, "thumbd_list_entries_pending") == 11);
	CHECK(text && sample(text, "thumbd_uptime_seconds") == 12.5);
	CHECK(text && sample(text, "thumbd_start_time_seconds") == 1700000000);
	CHECK(text && validate(text) == 0);
	free(text);
	CHECK_INT(dir_entries(), 1);

	/* no gauges: still a valid file */
	CHECK_INT(metrics_write(path, &st, NULL, err, sizeof err), 0);
	text = slurp(path);
	CHECK(text && validate(text) == 0 && isnan(sample(text, "thumbd_workers")));
	free(text);

	/* errors name the path and leave the old file alone */
	char bad[300];
	snprintf(bad, sizeof bad, "%s/no/such/dir/m.prom", dir);
	err[0] = 0;
	CHECK_INT(metrics_write(bad, &st, &g, err, sizeof err), -1);
	CHECK(strstr(err, "/no/such/dir/") != NULL);
	snprintf(bad, sizeof bad, "%s/", dir);
	err[0] = 0;
	CHECK_INT(metrics_write(bad, &st, &g, err, sizeof err), -1);
	CHECK(strstr(err, dir) != NULL);
	CHECK_INT(dir_entries(), 1);
}

/* --- counting from threads while the file is written ---------------------- */

#define THREADS 4
#define PER_THREAD 200000

static stats shared;

static void *
hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		stats_observe(&shared.resize, (double)(i % 1000) / 10000.0);  /* 0 .. 0.0999 s */
		if (i % 100 == 0)
			stats_fail(&shared, i % 200 ? "HTTP 404" : "truncated JPEG");
	}
	return NULL;
}

static void
test_threads(void)
{
	pthread_t t[THREADS];
	char path[256], err[512], *text;
	int started = 0, bad = 0, writes = 0;

	snprintf(path, sizeof path, "%s/live.prom", dir);
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, hammer, NULL) == 0)
			started++;
	CHECK_INT(started, THREADS);
	/* every snapshot taken mid-count is a consistent file */
	for (int i = 0; i < 50; i++) {
		if (metrics_write(path, &shared, NULL, err, sizeof err) < 0 || !(text = slurp(path))) {
			bad++;
			continue;
		}
		bad += validate(text);
		writes++;
		free(text);
	}
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(bad, 0);
	CHECK_INT(writes, 50);
	long total = 0;
	for (int i = 0; i < STATS_HIST_N; i++)
		total += STAT_GET(&shared, resize.bucket[i]);
	CHECK_INT(total, (long)THREADS * PER_THREAD);
	CHECK_INT(STAT_GET(&shared, failed), THREADS * (PER_THREAD / 100));
	CHECK_INT(STAT_GET(&shared, failed_by[FAIL_HTTP]), THREADS * (PER_THREAD / 200));
	CHECK_INT(STAT_GET(&shared, failed_by[FAIL_DECODE]), THREADS * (PER_THREAD / 200));
	CHECK_INT(metrics_write(path, &shared, NULL, err, sizeof err), 0);
	text = slurp(path);
	CHECK(text && sample(text, "thumbd_resize_seconds_count") == (double)THREADS * PER_THREAD);
	free(text);
	unlink(path);
}

static void
test_summary(void)
{
	static stats st;
	char buf[512], small[24];

	metrics_summary(&st, buf, sizeof buf);
	CHECK_STR(buf, "");                     /* nothing but zeros: nothing to say */

	stats_fail(&st, "corrupt PNG: IDAT: invalid distance too far back");
	metrics_summary(&st, buf, sizeof buf);
	CHECK_STR(buf, "failed: decode 1");

	STAT_ADD(&st, retries, 3);
	STAT_ADD(&st, host_overloads, 2);
	STAT_ADD(&st, bytes, 12400000);
	stats_fail(&st, "HTTP 404");
	stats_fail(&st, "HTTP 500 (after 4 attempts)");
	stats_fail(&st, "timeout after 60 s");
	/* downloads: 4 in (0.1, 0.25], 6 in (0.25, 0.5]; p50 is rank 5, the
	 * first of 6 in its bucket: 0.25 + 0.25 * 1/6 = 0.29; p90 0.25 + 0.25 * 5/6 */
	for (int i = 0; i < 4; i++)
		stats_observe(&st.download, 0.2);
	for (int i = 0; i < 6; i++)
		stats_observe(&st.download, 0.4);
	/* resizes: 1 in (0.005, 0.01], 4 in (0.01, 0.025]; p50 rank 2.5 ->
	 * 0.01 + 0.015 * 1.5/4 = 0.015625; p90 rank 4.5 -> 0.023125 */
	stats_observe(&st.resize, 0.008);
	for (int i = 0; i < 4; i++)
		stats_observe(&st.resize, 0.02);
	metrics_summary(&st, buf, sizeof buf);
	CHECK_STR(buf, "retries 3, host windows halved 2, 12.4 MB downloaded; failed: http 2, network 1, decode 1; "
	               "download p50 0.29 s p90 0.46 s, resize p50 0.016 s p90 0.023 s");

	/* cut short, never overrun (ASan watches), always terminated */
	memset(small, 'x', sizeof small);
	metrics_summary(&st, small, sizeof small);
	CHECK(memchr(small, 0, sizeof small) != NULL);
	CHECK(strncmp(small, "retries 3", 9) == 0);

	/* beyond the last bound: the estimate is that bound */
	static stats slow;
	stats_observe(&slow.download, 1000);
	metrics_summary(&slow, buf, sizeof buf);
	CHECK_STR(buf, "download p50 60.00 s p90 60.00 s");
}

static void
test_bytes(void)
{
	char b[32];

	metrics_bytes(0, b, sizeof b);
	CHECK_STR(b, "0 bytes");
	metrics_bytes(1, b, sizeof b);
	CHECK_STR(b, "1 byte");
	metrics_bytes(999, b, sizeof b);
	CHECK_STR(b, "999 bytes");
	metrics_bytes(12345, b, sizeof b);      /* not "0.0 MB" */
	CHECK_STR(b, "12.3 KB");
	metrics_bytes(99999, b, sizeof b);
	CHECK_STR(b, "0.1 MB");
	metrics_bytes(100000, b, sizeof b);
	CHECK_STR(b, "0.1 MB");
	metrics_bytes(12400000, b, sizeof b);
	CHECK_STR(b, "12.4 MB");
}

int
main(void)
{
	char cmd[128];

	if (!mkdtemp(dir)) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_classes();
	test_counting();
	test_write();
	test_threads();
	test_summary();
	test_bytes();
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
	return CHECK_DONE();
}
