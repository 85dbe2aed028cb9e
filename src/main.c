/*
 * main: command line, config, and the supervisor thread.
 *
 * Threads of a run:
 *   main      parses, sets up, then only watches: signal flags, the progress
 *             line, the end of the run.  Signal handlers only set a flag;
 *             main acts on it here, outside the handler.
 *   producer  "fetch" (the curl multi loop over URL lists) or "files"
 *             (--files: local images straight into the queue).
 *   worker-N  resize threads, fed by the bounded jobq.
 * The producer closes nothing itself: when it returns, main closes the
 * queue, the workers drain it and exit, and main prints the summary.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>     /* after stdio.h, which it needs */
#include <lcms2.h>
#include <png.h>
#include <webp/decode.h>

#include "bigmem.h"
#include "config.h"
#include "fetch.h"
#include "fsutil.h"
#include "job.h"
#include "jobq.h"
#include "log.h"
#include "metrics.h"
#include "monotime.h"
#include "name.h"
#include "notify.h"
#include "state.h"
#include "stats.h"
#include "urllist.h"
#include "watch.h"
#include "worker.h"

#define EXIT_PARTIAL 1          /* some URLs or files failed */
/* After a stop signal the images already downloaded are resized for this
 * long; what is still queued then is left for the next run, so a stop is
 * prompt whatever the queue holds (connections images of any size, and
 * systemd's TimeoutStopSec kills a slower one). */
#define STOP_DRAIN_MS 5000
#define EXIT_USAGE 2            /* usage or config error: nothing started */
#define EXIT_BUSY 75            /* EX_TEMPFAIL: another thumbd holds incoming/; a service
                                   manager restarts on it, where 2 stops it for good */
/* A job running this long is stuck, not slow: the largest image max_pixels
 * allows decodes in seconds.  The daemon then stops its watchdog pings, so
 * systemd restarts it (the job's URL is done again after the restart). */
#define STUCK_JOB_S 300.0
/* Past this size the names registry sheds the names of URLs whose
 * thumbnails are gone (about 300,000 URLs of 100 bytes). */
#define REGISTRY_COMPACT_BYTES (32LL << 20)

static volatile sig_atomic_t signals_seen, hup_seen, usr1_seen, stop_signal;

/* The other threads tell main that something ended (the producer, a
 * worker) by writing a byte here, so main sleeps in poll(2) instead of
 * checking on a timer: a run ends the moment its work does. */
static int wake_pipe[2] = { -1, -1 };

static void
wake_main(void)
{
	char c = 1;

	if (write(wake_pipe[1], &c, 1) < 0) {
		/* full (main is already awake) or closed: nothing to do */
	}
}

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		hup_seen = 1;
	else if (sig == SIGUSR1)
		usr1_seen = 1;
	else {
		stop_signal = sig;
		signals_seen++;
	}
}

/*
 * A one-shot run stopped by SIGINT or SIGTERM ends killed by that signal,
 * once its files are consistent and its summary is out: a shell waiting on
 * it sees 130 or 143 and stops too (`for l in *.txt; do thumbd "$l"; done`
 * ends at ^C instead of going on with the next list), where an ordinary
 * exit status tells it the child handled the signal and it may go on.
 */
static void
die_by_signal(int sig)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
}

static const char synopsis[] =
"usage: thumbd [-c FILE] [--set SECTION.KEY=VALUE]... LIST...\n"
"       thumbd [-c FILE] [--set SECTION.KEY=VALUE]... --files IMAGE...\n"
"       thumbd [-c FILE] [--set ...]... --daemon\n"
"       thumbd [-c FILE] [--set ...]... --check-config\n"
"       thumbd --help | --version\n";

/* A usage error gets the synopsis and a pointer to --help on stderr, not
 * thirty lines of help burying the one line that says what was wrong. */
static void
usage_error(void)
{
	fprintf(stderr, "%sTry 'thumbd --help' for more information.\n", synopsis);
}

static void
usage(void)
{
	fputs(synopsis, stdout);
	fputs(
"\n"
"Download every URL in the LIST files ('-' = standard input), write thumbnails\n"
"(default widths 32, 64, 200) to outgoing/<stem>_<width>.<ext>, and exit.\n"
"\n"
"  -c, --config FILE    config file (default: $THUMBD_CONFIG, ./config/thumbd.ini,\n"
"                       then " SYSCONFDIR "/thumbd/thumbd.ini)\n"
"      --set S.K=V      override one config key, e.g. --set download.connections=8\n"
"      --files          the arguments are local image files, not URL lists (no network;\n"
"                       the files are not deleted)\n"
"      --retry-failed   also try URLs that failed in an earlier run (see failed.tsv)\n"
"      --daemon         run as a service: follow the [daemon] watch lists and take images\n"
"                       moved into incoming/; SIGHUP reloads, SIGTERM drains, SIGUSR1\n"
"                       reopens the log (systemd Type=notify with watchdog)\n"
"      --check-config   validate the config, print \"configuration OK\" or the errors\n"
"  -h, --help           this text\n"
"  -V, --version        version\n"
"\n"
"A LIST has one http(s) URL per line; blank lines and lines starting with #\n"
"are ignored.  Failures are recorded in logs/failed.tsv; the run goes on.\n"
"URLs whose thumbnails exist, or that failed before, are skipped: running the\n"
"same command again finishes an interrupted run.\n"
"\n"
"Exit status: 0 every URL or file produced its thumbnails, 1 some failed, 2 usage\n"
"or config error (nothing was started), 75 another thumbd uses the same incoming,\n"
"outgoing or logs directory (nothing was started; try again later).  Stopped by\n"
"SIGINT or SIGTERM, it prints its summary and ends killed by that signal (status\n"
"130 or 143 in a shell), so a shell loop around it stops too.\n"
"See thumbd(1) and thumbd.ini(5).\n", stdout);
}

#define THUMBD_STR2(x) #x
#define THUMBD_STR(x) THUMBD_STR2(x)

/* As curl -V: the libraries that do the work, for bug reports.  libjpeg
 * has no run-time version call, so its version is the headers'. */
static void
version(void)
{
	int w = WebPGetDecoderVersion();
	int l = cmsGetEncodedCMMversion();

	printf("thumbd %s\n%s\n", THUMBD_VERSION, curl_version());
#ifdef LIBJPEG_TURBO_VERSION
	printf("libjpeg-turbo/%s ", THUMBD_STR(LIBJPEG_TURBO_VERSION));
#else
	printf("libjpeg/%d ", JPEG_LIB_VERSION);
#endif
	printf("libpng/%s libwebp/%d.%d.%d lcms2/%d.%d\n", png_get_libpng_ver(NULL),
	       (w >> 16) & 0xff, (w >> 8) & 0xff, w & 0xff, l / 1000, l % 1000 / 10);
}

typedef struct run {
	cfg *c;
	jobq *q;
	stats st;
	names *reg;
	state *done;
	fetch *f;               /* URL mode */
	char **files;           /* --files mode */
	int nfiles;
	char cwd[4096];
	watch *w;               /* --daemon */
	const char *cfgpath;
	char **sets;
	int nsets;
	cfg *retired[64];       /* configs replaced by reloads, freed once no thread reads them */
	int nretired;
	atomic_int producer_done;
	atomic_int stop_files;
	int producer_rc;
	int connections;        /* download.connections as configured, before raise_nofile */
	double start_wall;      /* the start, on the wall clock (metrics) */
} run;

/* Stopping, STOP_DRAIN_MS after the signal: take the queued jobs from the
 * workers and leave them for the next run, like the transfers in flight.
 * thumbd's own download goes (the next run fetches it again); an image
 * another program handed off stays, with its daemon entry, for the next
 * start; --files inputs are the user's and stay. */
static void
abandon_queued(run *r)
{
	const char *base;
	job *j;
	long n = 0;

	while ((j = jobq_trypop(r->q))) {
		base = strrchr(j->src, '/');
		base = base ? base + 1 : j->src;
		if (j->owned && strncmp(base, NAME_OWN_PREFIX, strlen(NAME_OWN_PREFIX)) == 0
		    && unlink(j->src) < 0 && errno != ENOENT)
			log_msg(LOG_WARNING, "cannot delete %s: %s", j->src, strerror(errno));
		if (j->on_end)
			j->on_end(j->end_arg, j->ticket, 1, j->url);
		job_free(j);
		n++;
	}
	if (n) {
		STAT_ADD(&r->st, abandoned, n);
		log_msg(LOG_WARNING, "stopping: %ld queued image%s left for the next %s", n,
		        n == 1 ? "" : "s", r->w ? "start" : "run");
	}
}

static void *
fetch_thread(void *arg)
{
	run *r = arg;

	log_thread_name("fetch");
	r->producer_rc = fetch_run(r->f);
	atomic_store(&r->producer_done, 1);
	wake_main();
	return NULL;
}

#define FILES_BATCH 32

/*
 * A file's key: its absolute path as given, with "." components and
 * repeated slashes dropped, so that a.jpg, ./a.jpg and $PWD/a.jpg are one
 * file in this run and the next (else the second spelling is a new key,
 * done again under a name with a hash).  Symlinks are not resolved and
 * ".." is kept, which could only be resolved through them: two links are
 * two names, like the user typed them.  -1 when it does not fit.
 */
static int
file_key(const char *cwd, const char *path, char *key, size_t keylen)
{
	char full[8192];
	size_t n = 0;
	int len;

	if (path[0] == '/' || !cwd[0])
		len = snprintf(full, sizeof full, "%s", path);
	else
		len = snprintf(full, sizeof full, "%s/%s", cwd, path);
	if (len < 0 || (size_t)len >= sizeof full || keylen < 2)
		return -1;
	for (const char *p = full; *p; ) {
		const char *e = strchr(p, '/');
		size_t c = e ? (size_t)(e - p) : strlen(p);
		if (c == 0 || (c == 1 && p[0] == '.')) {
			if (p == full && c == 0)
				key[n++] = '/';         /* the root */
		} else {
			if (n > 0 && key[n - 1] != '/')
				key[n++] = '/';
			if (n + c + 1 > keylen)
				return -1;
			memcpy(key + n, p, c);
			n += c;
		}
		p += c + (e != NULL);
	}
	if (n == 0)
		key[n++] = '.';                 /* "." with no cwd */
	key[n] = '\0';
	return 0;
}

/* Name the next batch of files; returns how many jobs it made. */
static int
files_batch(run *r, int *next, job **batch)
{
	char err[256], stem[NAME_STEM_MAX + 1], ext[NAME_EXT_MAX + 1], uniq[NAME_MAX_OUT];
	int n = 0;

	for (; *next < r->nfiles && n < FILES_BATCH; (*next)++) {
		const char *path = r->files[*next];
		char key[8192];
		int rc;

		STAT_ADD(&r->st, urls, 1);
		name_from_path(path, stem, ext);
		if (file_key(r->cwd, path, key, sizeof key) < 0) {
			snprintf(err, sizeof err, "path too long");
			rc = -1;
		} else {
			rc = names_claim(r->reg, key, stem, uniq, err, sizeof err);
		}
		if (rc == 1) {
			STAT_ADD(&r->st, duplicates, 1);
			log_msg(LOG_INFO, "duplicate %s: already in this run, done once", path);
		} else if (rc < 0 || !(batch[n] = job_new(path, path, NULL, 0, uniq))) {
			log_failure(path, rc < 0 ? err : "out of memory");
			stats_fail(&r->st, rc < 0 ? err : "out of memory");
		} else {
			n++;
		}
	}
	return n;
}

static void *
files_thread(void *arg)
{
	run *r = arg;
	job *batch[FILES_BATCH];
	int next = 0;

	log_thread_name("files");
	while (next < r->nfiles && !atomic_load(&r->stop_files)) {
		int n = files_batch(r, &next, batch);
		/* the names must be durable before a worker writes files under
		 * them: one sync per batch, not one per file */
		int synced = names_sync(r->reg) == 0;
		for (int i = 0; i < n; i++) {
			if (!synced || jobq_push_wait(r->q, batch[i]) < 0) {
				const char *why = synced ? "internal error: resize queue closed"
				                         : "cannot sync the name registry";
				log_failure(batch[i]->url, why);
				stats_fail(&r->st, why);
				job_free(batch[i]);
			}
		}
	}
	atomic_store(&r->producer_done, 1);
	wake_main();
	return NULL;
}

/* " (3 already done, 1 failed before, 2 duplicates skipped)", only the non-zero parts. */
static void
summary_notes(stats *st, char *out, size_t outlen)
{
	long v[3] = { (long)STAT_GET(st, already_done), (long)STAT_GET(st, failed_before),
	              (long)STAT_GET(st, duplicates) };
	const char *what[3] = { "already done", "failed before", "duplicate" };
	size_t off = 0;

	out[0] = 0;
	for (int i = 0; i < 3; i++) {
		if (!v[i])
			continue;
		off += (size_t)snprintf(out + off, outlen - off, "%s%ld %s%s", off ? ", " : " (", v[i],
		                        what[i], i == 2 ? (v[i] == 1 ? " skipped" : "s skipped") : "");
		if (off >= outlen)
			off = outlen - 1;
	}
	if (off && off + 1 < outlen) {
		out[off++] = ')';
		out[off] = 0;
	}
}

static void
progress(run *r, workers *w, double t0)
{
	double dt = mono_s() - t0;

	fprintf(stderr, "\r\033[K%ld downloaded, %ld resized, %ld failed, %ld in flight, %zu queued, "
	        "%d busy, %.1f MB/s",
	        (long)STAT_GET(&r->st, downloaded), (long)STAT_GET(&r->st, images),
	        (long)STAT_GET(&r->st, failed), (long)STAT_GET(&r->st, in_flight),
	        jobq_len(r->q), workers_busy(w),
	        dt > 0 ? (double)STAT_GET(&r->st, bytes) / 1e6 / dt : 0.0);
	fflush(stderr);
}

/*
 * Descriptors 0, 1 and 2 open, on /dev/null where the caller closed one
 * (`thumbd list >&- 2>&-`, some cron and init setups).  Otherwise the first
 * files thumbd opens take those numbers, and the summary and the messages
 * for stdout and stderr land in them: in failed.tsv, say, which later runs
 * read as state.  As git and OpenSSH do, before anything else is opened.
 */
static void
open_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		/* open() takes the lowest free number: this one */
		if (open("/dev/null", O_RDWR) < 0)
			return;         /* no /dev/null: nothing better to do */
	}
}

/*
 * Enough descriptors for every connection (its socket, its .part file and
 * curl's own), the workers' files and the rest.  Where the hard limit is
 * lower, fewer connections: past it, a transfer would fail with "Too many
 * open files", or as a connect failure that does not say why, each one a
 * URL failed for this machine's setting.  As nginx warns when its
 * worker_connections exceed the open-file limit.
 */
static void
raise_nofile(cfg *c)
{
	struct rlimit rl;
	rlim_t fixed = (rlim_t)c->workers * 4 + 64, want = (rlim_t)c->connections * 3 + fixed;
	int fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur >= want)
		return;
	fit = rl.rlim_cur > fixed + 3 ? (int)((rl.rlim_cur - fixed) / 3) : 1;
	fprintf(stderr, "thumbd: warning: open files limited to %llu (ulimit -n): %d connections "
	        "instead of %d\n", (unsigned long long)rl.rlim_cur, fit, c->connections);
	log_msg(LOG_WARNING, "open files limited to %llu (ulimit -n): %d connections instead of %d",
	        (unsigned long long)rl.rlim_cur, fit, c->connections);
	c->connections = fit;
}

/* A directory lock is a safeguard, not a need: where flock(2) does not
 * work on a directory (NFS emulates it with write locks, which a directory
 * opened read-only cannot take), say so and go on without it. */
static void
dir_unlocked(const char *why)
{
	fprintf(stderr, "thumbd: warning: %s; a second thumbd sharing it will not be refused\n", why);
}

/*
 * One thumbd per set of directories, each lock held until exit.  incoming/
 * has a lock file (with the holder's pid for the message): two processes
 * would delete each other's downloads as leftovers and race on the names
 * registry.  outgoing/ and logs/ are locked as
 * directories, since names are claimed in incoming/'s registry and
 * failed.tsv is rewritten whole: two runs with different incoming/ but one
 * outgoing/ could give two images one name, and two sharing logs/ could
 * drop each other's failures.  fds[3] get the descriptors to keep open.
 * 0, or -1 with err and errno (EWOULDBLOCK: another thumbd holds one).
 */
static int
lock_dirs(const cfg *c, int fds[3], char *err, size_t errlen)
{
	char path[4200];
	struct stat so, sl;

	snprintf(path, sizeof path, "%s/.thumbd-lock", c->incoming);
	if ((fds[0] = fsu_lock(path, err, errlen)) < 0)
		return -1;
	if ((fds[1] = fsu_lock_dir(c->outgoing, "outgoing", err, errlen)) < 0 && errno == EWOULDBLOCK)
		return -1;
	if (fds[1] < 0)
		dir_unlocked(err);
	/* logs/ may be outgoing/ itself: a second flock of it would be ours */
	if (fds[1] >= 0 && fstat(fds[1], &so) == 0 && stat(c->logs, &sl) == 0
	    && so.st_dev == sl.st_dev && so.st_ino == sl.st_ino)
		return 0;
	if ((fds[2] = fsu_lock_dir(c->logs, "logs", err, errlen)) < 0 && errno == EWOULDBLOCK)
		return -1;
	if (fds[2] < 0)
		dir_unlocked(err);
	return 0;
}

/* Defaults, the file, the --set overrides, validated.  NULL + err, which
 * is "file:line: ..." lines when the file was at fault (*in_file set). */
static cfg *
load_config(const char *path, char **sets, int nsets, int *in_file, char *err, size_t errlen)
{
	cfg *c = cfg_new();

	*in_file = 0;
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (cfg_load(c, path, err, errlen) < 0) {
		*in_file = 1;
		goto fail;
	}
	for (int i = 0; i < nsets; i++)
		if (cfg_set(c, sets[i], err, errlen) < 0)
			goto fail;
	if (cfg_finish(c, err, errlen) < 0)
		goto fail;
	return c;
fail:
	cfg_free(c);
	return NULL;
}

/* A restart-only string key: the running value wins (copied, since the old
 * config is read by other threads and must not change).  0 / -1. */
static int
keep_str(char **now, const char *running, const char *name)
{
	char *k;

	if (strcmp(*now, running) != 0)
		log_msg(LOG_WARNING, "reload: %s changed; it takes effect at the next restart", name);
	if (!(k = strdup(running)))
		return -1;
	free(*now);
	*now = k;
	return 0;
}

/*
 * SIGHUP: read the config again.  Keys the running pipeline is built
 * around (paths, connections, per_host, workers, watch, log) keep their
 * old values until a restart, with a warning; every other key applies to
 * the transfers and jobs that start after the reload.  An invalid file
 * changes nothing.  An old config is freed once no thread reads it any
 * more (workers_uses, fetch_uses).
 */
static void
reload(run *r, workers *w)
{
	char err[CFG_ERRLEN];
	cfg *n, *o = r->c;
	int same_watch, in_file;

	notify_reloading();
	if (!(n = load_config(r->cfgpath, r->sets, r->nsets, &in_file, err, sizeof err))) {
		log_msg(LOG_ERROR, "reload: keeping the running configuration: %s", err);
		goto out;
	}
	if (r->nretired == (int)(sizeof r->retired / sizeof r->retired[0])) {
		/* only when 64 old configs are all still read: a stuck thread */
		log_msg(LOG_ERROR, "reload: %d old configurations still in use; restart thumbd", r->nretired);
		cfg_free(n);
		goto out;
	}
	same_watch = n->nwatch == o->nwatch;
	for (int i = 0; same_watch && i < n->nwatch; i++)
		same_watch = strcmp(n->watch[i], o->watch[i]) == 0;
#define KEEP(field, name) do { if (n->field != o->field) log_msg(LOG_WARNING, \
	"reload: %s changed; it takes effect at the next restart", name); n->field = o->field; } while (0)
#define KEEP_STR(field, name) do { if (keep_str(&n->field, o->field, name) < 0) goto oom; } while (0)
	KEEP_STR(incoming, "paths.incoming");
	KEEP_STR(outgoing, "paths.outgoing");
	KEEP_STR(logs, "paths.logs");
	/* against the value asked for: the running one may be lower (raise_nofile) */
	if (n->connections != r->connections)
		log_msg(LOG_WARNING, "reload: download.connections changed; it takes effect at the next restart");
	n->connections = o->connections;
	KEEP(per_host, "download.per_host");
	KEEP(workers, "resize.workers");
	KEEP(log_target, "daemon.log");
#undef KEEP
#undef KEEP_STR
	/* the old config is read by other threads: copied from, never changed */
	if (!same_watch)
		log_msg(LOG_WARNING, "reload: daemon.watch changed; it takes effect at the next restart");
	/* metrics_path again, against the logs directory kept above */
	if (cfg_finish(n, err, sizeof err) < 0) {
		log_msg(LOG_ERROR, "reload: keeping the running configuration: %s", err);
		cfg_free(n);
		goto out;
	}
	/* a metrics file no longer written would be scraped with its last
	 * values for ever: it goes (only this thread writes it) */
	if (o->metrics_path && (!n->metrics_path || strcmp(o->metrics_path, n->metrics_path) != 0)) {
		if (unlink(o->metrics_path) == 0)
			log_msg(LOG_INFO, "reload: %s removed (daemon.metrics %s)", o->metrics_path,
			        n->metrics_path ? "moved" : "turned off");
		else if (errno != ENOENT)
			log_msg(LOG_WARNING, "reload: cannot remove %s: %s", o->metrics_path, strerror(errno));
	}
	fetch_set_config(r->f, n);
	workers_set_config(w, n);
	r->retired[r->nretired++] = o;
	r->c = n;
	/* free the configs no thread reads any more (hazard pointers, see
	 * workers_uses): o itself usually survives until the next reload */
	for (int i = 0; i < r->nretired;) {
		if (!workers_uses(w, r->retired[i]) && !fetch_uses(r->f, r->retired[i])) {
			cfg_free(r->retired[i]);
			r->retired[i] = r->retired[--r->nretired];
		} else {
			i++;
		}
	}
	log_msg(LOG_INFO, "reloaded %s: sizes %d..%d, format %s", r->cfgpath, n->sizes[0],
	        n->sizes[n->nsizes - 1], n->format == IMG_UNKNOWN ? "source" : img_format_name(n->format));
	goto out;
oom:
	log_msg(LOG_ERROR, "reload: out of memory; keeping the running configuration");
	cfg_free(n);
out:
	notify("READY=1\nSTATUS=reloaded");
}

static void
write_metrics(run *r, workers *w, double t0, double start_wall)
{
	metrics_gauges g = { 0 };
	long sources = 0, outstanding = 0;
	char err[512];

	if (!r->c->metrics_path)
		return;
	g.queue_depth = (long)jobq_len(r->q);
	g.workers_busy = w ? workers_busy(w) : 0;
	g.workers = w ? workers_running(w) : 0;
	if (r->w && r->f) {
		fetch_watch_counts(r->f, &sources, &outstanding);
		g.daemon = 1;
		g.lists_watched = sources;
		g.entries_pending = outstanding;
		g.uptime = mono_s() - t0;
		g.start_time = start_wall;
	}
	if (metrics_write(r->c->metrics_path, &r->st, &g, err, sizeof err) < 0)
		log_msg(LOG_WARNING, "%s", err);
}

/* The end of a one-shot run: one summary line on stdout, the counters on
 * stderr (stdout is that one line: thumbd(1), and the integration tests
 * hold it to that), both in the log.  The exit status. */
static int
summarize(run *r, int files_mode, int interrupted, long lost, double t0)
{
	long failed = (long)STAT_GET(&r->st, failed), before = (long)STAT_GET(&r->st, failed_before);
	long urls = (long)STAT_GET(&r->st, urls), thumbs = (long)STAT_GET(&r->st, thumbnails);
	char notes[160], mb[40] = "", more[512];

	if (isatty(STDERR_FILENO))
		fprintf(stderr, "\r\033[K");
	summary_notes(&r->st, notes, sizeof notes);
	if (!files_mode) {
		mb[0] = ',';
		mb[1] = ' ';
		metrics_bytes((long long)STAT_GET(&r->st, bytes), mb + 2, sizeof mb - 2);
	}
	printf("thumbd: %ld %s%s%s: %ld done, %ld failed; %ld thumbnail%s%s in %.1f s%s\n",
	       urls, files_mode ? "file" : "URL", urls == 1 ? "" : "s", notes,
	       (long)STAT_GET(&r->st, images), failed, thumbs, thumbs == 1 ? "" : "s",
	       mb, mono_s() - t0, interrupted ? " (interrupted: run again to finish)" : "");
	metrics_summary(&r->st, more, sizeof more);
	if (more[0])
		fprintf(stderr, "thumbd: %s\n", more);
	if (lost)
		fprintf(stderr, "thumbd: %ld failure%s could not be recorded in %s/failed.tsv (see "
		        "the log); the next run tries those URLs again\n", lost, lost == 1 ? "" : "s",
		        r->c->logs);
	log_msg(LOG_INFO, "finished: %ld done, %ld failed", (long)STAT_GET(&r->st, images), failed);
	if (more[0])
		log_msg(LOG_INFO, "%s", more);
	return failed || before || interrupted || r->producer_rc || lost ? EXIT_PARTIAL : 0;
}

/*
 * As coreutils' close_stdout: output lost to a full disk or a bad
 * descriptor (`thumbd ... > /dev/full`) is an error, not silence, so the
 * summary line or --help that was not written turns a 0 into a 1.  A
 * reader that went away (EPIPE; SIGPIPE is ignored for the sockets' sake)
 * is not: `thumbd ... | head -1` is fine.
 */
static int stdout_close(int status)
{
	int bad = ferror(stdout);

	errno = 0;
	if (fflush(stdout) != 0)
		bad = 1;
	if (!bad || errno == EPIPE)
		return status;
	fprintf(stderr, "thumbd: cannot write to standard output: %s\n",
	        errno ? strerror(errno) : "write error");
	return status == 0 ? EXIT_PARTIAL : status;
}

/* The daemon's signs of life, from the main loop: watchdog pings at a
 * quarter of systemd's interval, only when the fetch loop has gone round
 * since the last one (fetch_heartbeat) and no worker thread is gone or
 * stuck; a STATUS= line when it changed; the metrics file. */
typedef struct pulse {
	uint64_t wd_usec;               /* systemd's watchdog interval; 0 = none */
	long last_beat;                 /* fetch_heartbeat() at the last ping */
	long long next_wd, next_status, next_metrics;
	char last_status[200];
	double t0, start_wall;
} pulse;

static void
daemon_pulse(pulse *p, run *r, workers *w, int phase, int interrupted, long long now)
{
	if (p->wd_usec && now >= p->next_wd) {
		long beat = phase == 0 && r->f ? fetch_heartbeat(r->f) : p->last_beat + 1;
		double longest = workers_longest_job(w);
		if (beat != p->last_beat && (phase > 0 || workers_running(w) == r->c->workers)
		    && longest < STUCK_JOB_S)
			notify("WATCHDOG=1");
		else
			log_msg(LOG_WARNING, "watchdog: %s; not pinging",
			        beat == p->last_beat ? "the fetch loop does not answer"
			        : longest >= STUCK_JOB_S ? "a resize job has run for 5 minutes"
			        : "a worker thread is gone");
		p->last_beat = beat;
		p->next_wd = now + (long long)(p->wd_usec / 4000);
	}
	if (now >= p->next_status) {
		char st[200];
		snprintf(st, sizeof st, "STATUS=%s%ld done, %ld failed, %ld in flight, %zu queued, %d busy",
		         interrupted ? "stopping: " : "", (long)STAT_GET(&r->st, images),
		         (long)STAT_GET(&r->st, failed), (long)STAT_GET(&r->st, in_flight),
		         jobq_len(r->q), workers_busy(w));
		if (strcmp(st, p->last_status) != 0)       /* idle: nothing to say */
			notify("%s", st);
		snprintf(p->last_status, sizeof p->last_status, "%s", st);
		p->next_status = now + 2000;
	}
	if (now >= p->next_metrics) {
		write_metrics(r, w, p->t0, p->start_wall);
		p->next_metrics = now + r->c->metrics_interval_ms;
	}
}

/* --check-config: 0 and "configuration OK", or the exit status after
 * printing what is wrong. */
static int
check_config(const cfg *c, int extra_args)
{
	char err[CFG_ERRLEN];

	if (extra_args) {
		fprintf(stderr, "thumbd: --check-config takes no other arguments\n");
		return EXIT_USAGE;
	}
	/* what --daemon would refuse at its start (watch_new), which comes
	 * after it has made these directories */
	char *made[] = { c->incoming, c->outgoing, c->logs, NULL };
	if (c->nwatch > 0 && watch_check(c->watch, c->nwatch, c->incoming, made, err, sizeof err) < 0) {
		fprintf(stderr, "thumbd: %s\n", err);
		return EXIT_USAGE;
	}
	printf("configuration OK\n");
	return 0;
}

/* The run's directories made and locked, its log, name registry and state
 * opened: 0, or the exit status after printing why not. */
static int
open_work(run *r, int daemon, int retry_failed, int lock_fds[3])
{
	const cfg *c = r->c;
	char err[CFG_ERRLEN];

	if (fsu_mkdirs(c->incoming, err, sizeof err) < 0 || fsu_mkdirs(c->outgoing, err, sizeof err) < 0
	    || fsu_mkdirs(c->logs, err, sizeof err) < 0)
		goto fail;
	if (lock_dirs(c, lock_fds, err, sizeof err) < 0) {
		if (errno == EWOULDBLOCK) {
			fprintf(stderr, "thumbd: %s\n", err);
			return EXIT_BUSY;
		}
		goto fail;
	}
	if (log_open_target(c->logs, !daemon || !(c->log_target == CFG_LOG_STDERR
	                       || (c->log_target == CFG_LOG_AUTO && notify_under_systemd()))
	                       ? LOG_TO_FILE : notify_stderr_is_journal() ? LOG_TO_STDERR
	                       : LOG_TO_STDERR_PLAIN, err, sizeof err) < 0
	    || !(r->reg = names_open(c->incoming, err, sizeof err))
	    || !(r->done = state_open(c, retry_failed, err, sizeof err))
	    || state_compact_names(r->done, c, r->reg, REGISTRY_COMPACT_BYTES, err, sizeof err) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "thumbd: %s\n", err);
	return EXIT_USAGE;
}

/* Signal handlers only set flags (and wake the supervisor loop). */
static void
catch_signals(int daemon)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (daemon) {
		sigaction(SIGHUP, &sa, NULL);
		sigaction(SIGUSR1, &sa, NULL);
	}
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* a file size limit is a write error for the job at hand, not death */
	sigaction(SIGXFSZ, &sa, NULL);
}

/*
 * The main thread while the work runs: it owns no work of its own, only the
 * signal flags, the reloads, the daemon's pings and the progress line, and
 * it sees the run through its phases: producer running, then workers
 * finishing the queue, then done.  Returns 1 when a signal stopped the run.
 */
static int
supervise(run *r, workers *w, pthread_t producer, int *producer_started, int daemon, double t0)
{
	int tty = isatty(STDERR_FILENO) && !daemon, interrupted = 0;
	pulse pl = { .wd_usec = daemon ? notify_watchdog_usec() : 0, .last_beat = -1, .t0 = t0,
	             .start_wall = r->start_wall };
	long long stop_at = 0;
	char err[CFG_ERRLEN];

	if (daemon) {
		log_msg(LOG_INFO, "daemon ready: watching %d path%s and %s", r->c->nwatch,
		        r->c->nwatch == 1 ? "" : "s", r->c->incoming);
		notify("READY=1\nSTATUS=ready");
	}
	for (int phase = 0; phase < 2;) {
		struct pollfd pfd = { .fd = wake_pipe[0], .events = POLLIN };
		char drain[64];
		long long now, tick = tty ? 200 : 1000;
		if (daemon) {
			tick = 2000;
			if (pl.wd_usec && (long long)(pl.wd_usec / 4000) < tick)
				tick = pl.wd_usec / 4000 > 0 ? (long long)(pl.wd_usec / 4000) : 1;
			if (r->c->metrics_path && r->c->metrics_interval_ms < tick)
				tick = r->c->metrics_interval_ms;
		}
		/* a signal interrupts the poll (main does not block signals) */
		poll(&pfd, 1, (int)tick);
		while (read(wake_pipe[0], drain, sizeof drain) > 0)
			;
		now = mono_ms();
		if (daemon && hup_seen && !interrupted) {
			hup_seen = 0;
			reload(r, w);
		}
		if (usr1_seen) {
			usr1_seen = 0;
			int rc = log_reopen(err, sizeof err);
			if (rc < 0)
				log_msg(LOG_ERROR, "%s", err);
			else
				log_msg(LOG_INFO, rc == 0 ? "log file reopened"
				        : "SIGUSR1: no log file to reopen (logging to stderr)");
		}
		if (daemon)
			daemon_pulse(&pl, r, w, phase, interrupted, now);
		if (interrupted && r->q && now - stop_at >= STOP_DRAIN_MS)
			abandon_queued(r);
		if (signals_seen && !interrupted) {
			interrupted = 1;
			stop_at = now;
			if (daemon)
				notify("STOPPING=1\nSTATUS=stopping: finishing the images already downloaded");
			log_msg(LOG_WARNING, "%s: stopping (signal again to quit at once)",
			        daemon ? "terminating" : "interrupted");
			if (r->f)
				fetch_stop(r->f);
			atomic_store(&r->stop_files, 1);
		} else if (signals_seen > 1) {
			log_msg(LOG_WARNING, "second signal: quitting at once");
			if (!daemon)
				die_by_signal(stop_signal);
			_exit(EXIT_PARTIAL);
		}
		if (tty)
			progress(r, w, t0);
		if (phase == 0 && atomic_load(&r->producer_done)) {
			pthread_join(producer, NULL);
			*producer_started = 0;
			jobq_on_pop(r->q, NULL, NULL);
			jobq_close(r->q);
			phase = 1;
		}
		if (phase == 1 && workers_running(w) == 0)
			phase = 2;
	}
	return interrupted;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "files", no_argument, NULL, 'f' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "retry-failed", no_argument, NULL, 'r' },
		{ "daemon", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cfgpath = NULL;
	char **sets = NULL, err[CFG_ERRLEN];
	int nsets = 0, files_mode = 0, check = 0, retry_failed = 0, daemon = 0, opt, status = EXIT_USAGE;
	run r = { 0 };
	urllist *lists = NULL;
	workers *w = NULL;
	pthread_t producer;
	int producer_started = 0, interrupted = 0, in_file, rc, lock_fds[3] = { -1, -1, -1 };
	long lost;
	double t0;

	open_std_fds();
	bigmem_setup();
	if (!(sets = calloc((size_t)argc, sizeof *sets))) {
		fprintf(stderr, "thumbd: out of memory\n");
		return EXIT_USAGE;
	}
	while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': cfgpath = optarg; break;
		case 's': sets[nsets++] = optarg; break;
		case 'f': files_mode = 1; break;
		case 'k': check = 1; break;
		case 'r': retry_failed = 1; break;
		case 'D': daemon = 1; break;
		case 'h': usage(); status = 0; goto out;
		case 'V': version(); status = 0; goto out;
		default: usage_error(); goto out;
		}
	}

	/* the arguments first: `thumbd` alone is a usage error wherever it runs,
	 * not a complaint about a config file it would not have needed yet */
	if (!check && daemon && (files_mode || optind < argc)) {
		fprintf(stderr, "thumbd: --daemon takes its work from [daemon] watch, not from arguments\n");
		goto out;
	}
	if (!check && !daemon && optind >= argc) {
		fprintf(stderr, "thumbd: no %s given\n", files_mode ? "image file" : "URL list");
		usage_error();
		goto out;
	}
	if (!cfgpath && !(cfgpath = cfg_default_path(err, sizeof err))) {
		fprintf(stderr, "thumbd: %s\n", err);
		goto out;
	}
	if (!(r.c = load_config(cfgpath, sets, nsets, &in_file, err, sizeof err))) {
		fprintf(stderr, "%s%s\n", in_file ? "" : "thumbd: ", err);
		goto out;
	}
	r.cfgpath = cfgpath;
	r.sets = sets;
	r.nsets = nsets;
	if (check) {
		status = check_config(r.c, optind < argc);
		goto out;
	}
	if (!daemon && !files_mode && !(lists = urllist_open(argv + optind, argc - optind, err, sizeof err))) {
		fprintf(stderr, "thumbd: %s\n", err);
		goto out;
	}
	if ((rc = open_work(&r, daemon, retry_failed, lock_fds)) != 0) {
		status = rc;
		goto out;
	}

	catch_signals(daemon);
	r.connections = r.c->connections;
	raise_nofile(r.c);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "thumbd: cannot initialise libcurl\n");
		goto out;
	}

	status = EXIT_PARTIAL;
	t0 = mono_s();
	r.start_wall = (double)time(NULL);
	log_msg(LOG_INFO, "thumbd %s starting: config %s, %d workers, %d connections, sizes %d..%d",
	        THUMBD_VERSION, r.c->file, r.c->workers, r.c->connections, r.c->sizes[0],
	        r.c->sizes[r.c->nsizes - 1]);
	/* every transfer in flight holds a queue slot (see fetch.c), plus a
	 * couple of jobs per worker so no worker waits between images */
	r.q = jobq_new((size_t)(files_mode ? 0 : r.c->connections) + 2 * (size_t)r.c->workers);
	if (pipe(wake_pipe) < 0 || fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK) < 0
	    || fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK) < 0) {
		fprintf(stderr, "thumbd: cannot create a pipe: %s\n", strerror(errno));
		goto out;
	}
	if (!r.q || !(w = workers_start(r.c, r.q, &r.st, r.c->workers, wake_main, err, sizeof err))) {
		fprintf(stderr, "thumbd: %s\n", r.q ? err : "out of memory");
		goto out;
	}
	if (files_mode) {
		r.files = argv + optind;
		r.nfiles = argc - optind;
		if (!getcwd(r.cwd, sizeof r.cwd))
			r.cwd[0] = 0;
	} else {
		if (daemon) {
			char statefile[4200];
			snprintf(statefile, sizeof statefile, "%s/.thumbd-follow", r.c->incoming);
			if (!(r.w = watch_new(r.c->watch, r.c->nwatch, r.c->incoming, statefile, err, sizeof err))) {
				fprintf(stderr, "thumbd: %s\n", err);
				log_msg(LOG_ERROR, "%s", err);
				status = EXIT_USAGE;
				goto drain;
			}
		}
		if (!(r.f = fetch_new(r.c, lists, r.w, r.reg, r.done, r.q, &r.st, err, sizeof err))) {
			fprintf(stderr, "thumbd: %s\n", err);
			log_msg(LOG_ERROR, "%s", err);
			r.producer_rc = -1;     /* nothing done: not a success (exit 1) */
			goto drain;
		}
		jobq_on_pop(r.q, fetch_wakeup, r.f);
	}
	{
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		producer_started = pthread_create(&producer, NULL, files_mode ? files_thread : fetch_thread, &r) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (!producer_started) {
		fprintf(stderr, "thumbd: cannot start the %s thread\n", files_mode ? "files" : "fetch");
		log_msg(LOG_ERROR, "cannot start the %s thread", files_mode ? "files" : "fetch");
		r.producer_rc = -1;
		goto drain;
	}

	interrupted = supervise(&r, w, producer, &producer_started, daemon, t0);
drain:
	if (producer_started)
		pthread_join(producer, NULL);
	if (r.q) {
		jobq_on_pop(r.q, NULL, NULL);
		jobq_close(r.q);
	}
	workers_join(w);
	w = NULL;
	if (r.w) {
		/* tickets of the jobs finished while draining, then the offsets */
		fetch_collect(r.f);
		if (watch_save(r.w, err, sizeof err) < 0)
			log_msg(LOG_ERROR, "%s", err);
	}
	if (daemon && r.q && status == EXIT_PARTIAL) {
		write_metrics(&r, NULL, t0, r.start_wall);
		log_msg(LOG_INFO, "daemon stopped: %ld done, %ld failed, %ld left for the next start",
		        (long)STAT_GET(&r.st, images), (long)STAT_GET(&r.st, failed),
		        (long)STAT_GET(&r.st, abandoned));
		status = r.producer_rc ? EXIT_PARTIAL : 0;
	}
	/* one line per URL in failed.tsv: what this run did again (and ended) loses its old line */
	if (r.done && state_prune_failures(r.done, r.c, err, sizeof err) < 0)
		log_msg(LOG_WARNING, "%s (a URL done again may have two lines there)", err);
	lost = log_failures_lost();
	if (lost)
		log_msg(LOG_ERROR, "%ld failure%s could not be recorded in %s/failed.tsv: %s", lost,
		        lost == 1 ? "" : "s", r.c->logs, daemon ? "their entries come again at the next start"
		        : "the next run tries those URLs again");
	if (status == EXIT_PARTIAL && r.q)
		status = summarize(&r, files_mode, interrupted, lost, t0);
out:
	fetch_free(r.f);
	watch_free(r.w);
	for (int i = 0; i < r.nretired; i++)
		cfg_free(r.retired[i]);
	jobq_free(r.q);
	state_close(r.done);
	names_close(r.reg);
	urllist_close(lists);
	cfg_free(r.c);
	free(sets);
	log_close();
	curl_global_cleanup();
	for (int i = 0; i < 2; i++)
		if (wake_pipe[i] >= 0)
			close(wake_pipe[i]);
	for (int i = 0; i < 3; i++)
		if (lock_fds[i] >= 0)
			close(lock_fds[i]);
	status = stdout_close(status);
	if (signals_seen && !daemon)
		die_by_signal(stop_signal);
	return status;
}
