/*
 * metrics: failure classes, the Prometheus text file and the summary line.
 * See include/metrics.h for the API; here is how, and why.
 *
 * Classes.  Reasons are free text made where the failure happens (fetch.c,
 * thumb.c, the codecs, fsutil.c, name.c, urllist.c, main.c).  Rather than
 * thread an enum through every error path, one table here maps the texts'
 * fixed beginnings (or, for messages that start with a path, a fixed
 * middle) to a class; first match wins, so more specific entries come
 * first.  A reason nobody listed lands in "other", which is the signal to
 * add a line here; tests/unit/test_metrics.c holds real reasons so a
 * reworded message that changes class fails there.
 *
 * Threads.  Both writers only read stats with relaxed loads while the
 * fetch thread and the workers go on counting, so a file is a snapshot
 * that may be a few increments apart between series.  Histogram counts
 * are therefore derived from the buckets of the same snapshot, never read
 * separately: the +Inf bucket always equals _count, and buckets are
 * cumulative by construction.
 *
 * File.  One buffer, formatted first, then written to <dir>/.<base>.tmp
 * and renamed over the target, so the textfile collector never reads a
 * half-written file.  No fsync: the file is rewritten every few seconds
 * and a lost one after a crash is harmless.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fsutil.h"

/* --- failure classes ----------------------------------------------------- */

typedef struct reason_rule {
	const char *text;
	int anywhere;           /* 0: reason starts with text; 1: contains it */
	fail_class cls;
} reason_rule;

static const reason_rule rules[] = {
	/* fetch.c describe_failure(); " (after N attempts)" may follow */
	{ "HTTP ", 0, FAIL_HTTP },
	{ "too many redirects", 0, FAIL_HTTP },
	/* answers that break HTTP itself: the remote's, and not retried */
	{ "not an HTTP response", 0, FAIL_HTTP },
	{ "response headers too large", 0, FAIL_HTTP },
	{ "malformed chunked encoding", 0, FAIL_HTTP },
	{ "empty body (HTTP", 0, FAIL_NOT_IMAGE },      /* 2xx with nothing in it */
	{ "cannot resolve host", 0, FAIL_NETWORK },
	{ "cannot connect to", 0, FAIL_NETWORK },     /* "... to the proxy" too */
	{ "the proxy answered", 0, FAIL_NETWORK },
	{ "connect timeout", 0, FAIL_NETWORK },
	{ "timeout after", 0, FAIL_NETWORK },
	{ "no response in", 0, FAIL_NETWORK },
	{ "stalled:", 0, FAIL_NETWORK },
	{ "truncated body", 0, FAIL_NETWORK },
	{ "connection closed", 0, FAIL_NETWORK },
	{ "TLS:", 0, FAIL_NETWORK },
	/* curl_easy_strerror() texts of the transient codes without a case of their own */
	{ "Failed sending data to the peer", 0, FAIL_NETWORK },
	{ "Failure when receiving data from the peer", 0, FAIL_NETWORK },
	{ "Error in the HTTP2 framing layer", 0, FAIL_NETWORK },
	{ "Stream error in the HTTP/2 framing layer", 0, FAIL_NETWORK },
	{ "Weird server reply", 0, FAIL_NETWORK },
	{ "redirect to a non-http(s) URL", 0, FAIL_INVALID },
	/* limits: fetch.c, fsutil.c, the codecs, thumb.c */
	{ "too large", 0, FAIL_TOO_LARGE },
	{ "thumbnail too large", 0, FAIL_TOO_LARGE },
	/* what the body is: img.c, thumb.c, the codecs */
	{ "not an image", 0, FAIL_NOT_IMAGE },
	{ "unsupported format", 0, FAIL_NOT_IMAGE },
	{ "unsupported JPEG", 0, FAIL_NOT_IMAGE },
	{ "unsupported PNG", 0, FAIL_NOT_IMAGE },
	{ "empty file", 0, FAIL_NOT_IMAGE },
	{ "corrupt ", 0, FAIL_DECODE },
	{ "truncated JPEG", 0, FAIL_DECODE },
	{ "truncated PNG", 0, FAIL_DECODE },
	{ "truncated WebP", 0, FAIL_DECODE },
	{ "bad image", 0, FAIL_DECODE },
	{ "cannot encode", 0, FAIL_DECODE },           /* codec errors either way */
	/* the input itself: urllist.c, fetch.c, fsutil.c */
	{ "invalid URL", 0, FAIL_INVALID },
	{ "not an http(s) URL", 0, FAIL_INVALID },
	{ "line too long", 0, FAIL_INVALID },
	/* the same two from a daemon's list, with its place: "path:line: why" (watch.c) */
	{ ": not an http(s) URL", 1, FAIL_INVALID },
	{ ": line too long", 1, FAIL_INVALID },
	{ ": not a regular file", 1, FAIL_INVALID },   /* --files given a directory */
	/* this machine: fsutil.c, name.c, fetch.c, main.c, urllist.c */
	{ "out of memory", 0, FAIL_LOCAL },
	{ "cannot write", 0, FAIL_LOCAL },
	{ "cannot create", 0, FAIL_LOCAL },
	{ "cannot rename", 0, FAIL_LOCAL },
	{ "cannot open", 0, FAIL_LOCAL },
	{ "cannot read", 0, FAIL_LOCAL },
	{ "cannot sync the name registry", 0, FAIL_LOCAL },
	{ "cannot start the transfer", 0, FAIL_LOCAL },
	{ "no free name", 0, FAIL_LOCAL },
	{ "internal error", 0, FAIL_LOCAL },
	{ ": cannot open URL list", 1, FAIL_LOCAL },
	{ ": cannot read URL list", 1, FAIL_LOCAL },
	{ ": read error", 1, FAIL_LOCAL },
	{ ": path too long", 1, FAIL_LOCAL },
};

static const char *const class_names[FAIL_NCLASS] = {
	[FAIL_HTTP] = "http",
	[FAIL_NETWORK] = "network",
	[FAIL_TOO_LARGE] = "too_large",
	[FAIL_NOT_IMAGE] = "not_image",
	[FAIL_DECODE] = "decode",
	[FAIL_INVALID] = "invalid",
	[FAIL_LOCAL] = "local",
	[FAIL_OTHER] = "other",
};

fail_class
metrics_reason_class(const char *reason)
{
	const char *last;

	if (!reason)
		return FAIL_OTHER;
	/* fetch.c: "host H:P paused after N consecutive failures (last: R)"
	 * is in the class of what paused the host, R; a host stops being
	 * tried for want of answers, so network when R has none */
	if (strncmp(reason, "host ", 5) == 0 && strstr(reason, " paused after ")
	    && (last = strstr(reason, "(last: "))) {
		fail_class c = metrics_reason_class(last + 7);
		return c == FAIL_OTHER ? FAIL_NETWORK : c;
	}
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
		const reason_rule *r = &rules[i];
		if (r->anywhere ? strstr(reason, r->text) != NULL
		                : strncmp(reason, r->text, strlen(r->text)) == 0)
			return r->cls;
	}
	return FAIL_OTHER;
}

const char *
metrics_class_name(fail_class c)
{
	return (unsigned)c < FAIL_NCLASS ? class_names[c] : "other";
}

void
stats_fail(stats *st, const char *reason)
{
	STAT_ADD(st, failed, 1);
	STAT_ADD(st, failed_by[metrics_reason_class(reason)], 1);
}

/* --- histograms ----------------------------------------------------------- */

static const double hist_le[] = { STATS_HIST_BOUNDS };

/* A histogram read once: cumulative bucket counts, the last one the count. */
typedef struct hist_snap {
	long cum[STATS_HIST_N];
	double sum;
} hist_snap;

static void
hist_read(const stats_hist *h, hist_snap *s)
{
	long run = 0;

	for (int i = 0; i < STATS_HIST_N; i++) {
		run += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		s->cum[i] = run;
	}
	s->sum = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
}

/* The q-quantile estimated from the buckets as Prometheus'
 * histogram_quantile() does: linear inside the bucket holding rank q*count,
 * the first bucket starting at 0; in the +Inf bucket, the last finite
 * bound (so a p90 of "60 s" means "60 s or more").  An estimate with the
 * buckets' resolution, not a measured quantile. */
static double
hist_quantile(const hist_snap *s, double q)
{
	long n = s->cum[STATS_HIST_N - 1];
	double rank = q * (double)n, lo = 0, below = 0;

	for (int i = 0; i < STATS_HIST_N - 1; i++) {
		if ((double)s->cum[i] >= rank) {
			double in = (double)s->cum[i] - below;
			return in > 0 ? lo + (hist_le[i] - lo) * (rank - below) / in : hist_le[i];
		}
		lo = hist_le[i];
		below = (double)s->cum[i];
	}
	return hist_le[STATS_HIST_N - 2];
}

/* --- the text file -------------------------------------------------------- */

/* An output buffer that remembers it overflowed instead of checking every call. */
typedef struct outbuf {
	char *p;
	size_t len, cap;
	int full;
} outbuf;

static void put(outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(outbuf *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->full = 1;
		o->p[o->len] = 0;
		return;
	}
	o->len += (size_t)n;
}

static void
head(outbuf *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP thumbd_%s %s\n# TYPE thumbd_%s %s\n", name, help, name, type);
}

static void
counter(outbuf *o, const char *name, long v, const char *help)
{
	head(o, name, "counter", help);
	put(o, "thumbd_%s %ld\n", name, v);
}

static void
gauge(outbuf *o, const char *name, double v, const char *help)
{
	head(o, name, "gauge", help);
	put(o, "thumbd_%s %.17g\n", name, v);
}

static void
histogram(outbuf *o, const char *name, const stats_hist *h, const char *help)
{
	hist_snap s;

	hist_read(h, &s);
	head(o, name, "histogram", help);
	for (int i = 0; i < STATS_HIST_N - 1; i++)
		put(o, "thumbd_%s_bucket{le=\"%g\"} %ld\n", name, hist_le[i], s.cum[i]);
	put(o, "thumbd_%s_bucket{le=\"+Inf\"} %ld\n", name, s.cum[STATS_HIST_N - 1]);
	put(o, "thumbd_%s_sum %.6f\n", name, s.sum);
	put(o, "thumbd_%s_count %ld\n", name, s.cum[STATS_HIST_N - 1]);
}

static void
render(outbuf *o, const stats *st, const metrics_gauges *g)
{
	static const char *const why[3] = { "already_done", "failed_before", "duplicate" };
	long skipped[3] = { (long)STAT_GET(st, already_done), (long)STAT_GET(st, failed_before),
	                    (long)STAT_GET(st, duplicates) };

	counter(o, "urls_total", (long)STAT_GET(st, urls), "URLs or files taken from the input.");
	counter(o, "urls_done_total", (long)STAT_GET(st, images),
	        "URLs or files whose thumbnails were all written.");
	head(o, "urls_failed_total", "counter",
	     "URLs or files that failed (failed.tsv lines), by class of reason.");
	for (int c = 0; c < FAIL_NCLASS; c++)
		put(o, "thumbd_urls_failed_total{reason=\"%s\"} %ld\n", class_names[c],
		    (long)STAT_GET(st, failed_by[c]));
	counter(o, "retries_total", (long)STAT_GET(st, retries), "Download attempts after the first.");
	counter(o, "host_overloads_total", (long)STAT_GET(st, host_overloads),
	        "Times a host's window of requests in flight was halved (408, 429, 502-504, timeout, refused).");
	counter(o, "download_bytes_total", (long)STAT_GET(st, bytes), "Body bytes received.");
	counter(o, "thumbnails_written_total", (long)STAT_GET(st, thumbnails),
	        "Thumbnail files written to outgoing/.");
	head(o, "skipped_total", "counter", "URLs or files not processed, by why.");
	for (int i = 0; i < 3; i++)
		put(o, "thumbd_skipped_total{why=\"%s\"} %ld\n", why[i], skipped[i]);
	gauge(o, "transfers_in_flight", (double)STAT_GET(st, in_flight), "Downloads running now.");
	if (g) {
		gauge(o, "queue_depth", (double)g->queue_depth, "Downloaded images waiting for a worker.");
		gauge(o, "workers_busy", (double)g->workers_busy, "Resize workers working now.");
		gauge(o, "workers", (double)g->workers, "Resize workers running.");
		if (g->daemon) {
			gauge(o, "lists_watched", (double)g->lists_watched, "URL lists being followed.");
			gauge(o, "list_entries_pending", (double)g->entries_pending,
			      "List entries taken but not finished yet.");
			gauge(o, "uptime_seconds", g->uptime, "Seconds since the daemon started.");
			gauge(o, "start_time_seconds", g->start_time,
			      "Start time of the daemon, seconds since the Unix epoch.");
		}
	}
	histogram(o, "download_seconds", &st->download,
	          "Successful download attempts, from start to complete body.");
	histogram(o, "resize_seconds", &st->resize,
	          "Resize jobs: decode, resize and write every size.");
}

int
metrics_write(const char *path, const stats *st, const metrics_gauges *g, char *err, size_t errlen)
{
	char text[16384], dir[4096];
	outbuf o = { text, 0, sizeof text, 0 };
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	if (!*base) {
		snprintf(err, errlen, "metrics file %s: not a file name", path);
		return -1;
	}
	if (base == path)
		snprintf(dir, sizeof dir, ".");
	else if (snprintf(dir, sizeof dir, "%.*s", (int)(base - 1 - path), path) >= (int)sizeof dir) {
		snprintf(err, errlen, "metrics file %s: path too long", path);
		return -1;
	}
	if (!dir[0])
		snprintf(dir, sizeof dir, "/");
	text[0] = 0;
	render(&o, st, g);
	if (o.full) {
		snprintf(err, errlen, "metrics file %s: text longer than %zu bytes", path, sizeof text);
		return -1;
	}
	/* <dir>/.<base>.tmp, then rename(2): the collector never reads a part */
	return fsu_write_atomic(dir, base, text, o.len, err, errlen);
}

/* --- the summary line ----------------------------------------------------- */

/* "p50 0.21 s p90 0.40 s" into o. */
static void
put_quantiles(outbuf *o, const hist_snap *s)
{
	double p50 = hist_quantile(s, 0.5), p90 = hist_quantile(s, 0.9);

	/* three decimals below 0.1 s, where resize times live */
	put(o, p50 < 0.1 ? "p50 %.3f s" : "p50 %.2f s", p50);
	put(o, p90 < 0.1 ? " p90 %.3f s" : " p90 %.2f s", p90);
}

void
metrics_bytes(long long bytes, char *buf, size_t len)
{
	if (bytes < 1000)
		snprintf(buf, len, "%lld byte%s", bytes, bytes == 1 ? "" : "s");
	else if (bytes < 99950)         /* 99,950 would read "100.0 KB" */
		snprintf(buf, len, "%.1f KB", (double)bytes / 1e3);
	else
		snprintf(buf, len, "%.1f MB", (double)bytes / 1e6);
}

void
metrics_summary(const stats *st, char *buf, size_t len)
{
	outbuf o = { buf, 0, len, 0 };
	long retries = (long)STAT_GET(st, retries), failed = 0;
	long halved = (long)STAT_GET(st, host_overloads);
	long long bytes = (long long)STAT_GET(st, bytes);
	hist_snap dl, rs;
	const char *sep = "";

	if (!len)
		return;
	buf[0] = 0;
	if (retries)
		put(&o, "retries %ld", retries);
	if (halved)
		put(&o, "%shost windows halved %ld", o.len ? ", " : "", halved);
	if (bytes) {
		char b[32];
		metrics_bytes(bytes, b, sizeof b);
		put(&o, "%s%s downloaded", o.len ? ", " : "", b);
	}
	for (int c = 0; c < FAIL_NCLASS; c++)
		failed += (long)STAT_GET(st, failed_by[c]);
	if (failed) {
		put(&o, "%sfailed: ", o.len ? "; " : "");
		for (int c = 0; c < FAIL_NCLASS; c++) {
			long n = (long)STAT_GET(st, failed_by[c]);
			if (n) {
				put(&o, "%s%s %ld", sep, class_names[c], n);
				sep = ", ";
			}
		}
	}
	hist_read(&st->download, &dl);
	hist_read(&st->resize, &rs);
	sep = o.len ? "; " : "";
	if (dl.cum[STATS_HIST_N - 1]) {
		put(&o, "%sdownload ", sep);
		put_quantiles(&o, &dl);
		sep = ", ";
	}
	if (rs.cum[STATS_HIST_N - 1]) {
		put(&o, "%sresize ", sep);
		put_quantiles(&o, &rs);
	}
}
