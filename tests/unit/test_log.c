/* Unit tests: the run log and failed.tsv (log.c): file and journald (stderr)
 * targets, log_reopen after a rename, reopen while threads log, failure
 * records whole or absent when the file cannot grow. */
#include <errno.h>
#include <fcntl.h>
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

#include "check.h"
#include "log.h"

static char dir[] = "/tmp/thumbd-test-log-XXXXXX";

/* The whole of <dir>/<name>, NUL-terminated (caller frees); NULL if absent. */
static char *
slurp(const char *name, size_t *lenp)
{
	char path[512], *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if ((fd = open(path, O_RDONLY)) < 0)
		return NULL;
	for (;;) {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536 * 2;
			buf = realloc(buf, cap + 1);
		}
		n = read(fd, buf + len, cap - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
}

static int
exists(const char *name)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void
remove_file(const char *name)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
}

static int
rename_file(const char *from, const char *to)
{
	char a[512], b[512];

	snprintf(a, sizeof a, "%s/%s", dir, from);
	snprintf(b, sizeof b, "%s/%s", dir, to);
	return rename(a, b);
}

/* Does line start "[thread, YYYY-MM-DD HH:MM:SS,mmm, level] msg" + end? */
static int
file_line_starts(const char *line, const char *thread, const char *level,
                 const char *msg, const char *end)
{
	static const char stamp[] = "0000-00-00 00:00:00,000";
	char want[512];
	size_t n;

	n = (size_t)snprintf(want, sizeof want, "[%s, ", thread);
	if (strncmp(line, want, n) != 0)
		return 0;
	line += n;
	for (const char *s = stamp; *s; s++, line++)
		if (*s == '0' ? (*line < '0' || *line > '9') : *line != *s)
			return 0;
	n = (size_t)snprintf(want, sizeof want, ", %s] %s%s", level, msg, end);
	return strncmp(line, want, n) == 0;
}

/* Is line, up to its '\n', "[thread, YYYY-MM-DD HH:MM:SS,mmm, level] msg"? */
static int
file_line_is(const char *line, const char *thread, const char *level, const char *msg)
{
	return file_line_starts(line, thread, level, msg, "\n");
}

/* Line number i (from 0) of text, or NULL. */
static const char *
nth_line(const char *text, int i)
{
	while (text && *text && i-- > 0)
		text = (text = strchr(text, '\n')) ? text + 1 : NULL;
	return text && *text ? text : NULL;
}

static int
count_lines(const char *text)
{
	int n = 0;

	for (; text && *text; text++)
		n += *text == '\n';
	return n;
}

/* A URL's password is never written to the log (failed.tsv keeps the URL
 * whole); a user without one, an '@' in a path or query, are left alone. */
static void
test_redacted_passwords(void)
{
	char err[256] = "", *text;
	const char *line;

	CHECK_INT(log_open_target(dir, LOG_TO_FILE, err, sizeof err), 0);
	log_thread_name("fetch");
	log_msg(LOG_INFO, "downloaded http://ann:s3cret@127.0.0.1:8080/a.jpg and https://bo:x@h/b");
	log_msg(LOG_INFO, "kept https://ann@h/c.jpg http://h/p?q=a:b@c http://h/x:y@z");
	log_failure("http://ann:s3cret@127.0.0.1/d.jpg", "HTTP 404");
	log_close();
	text = slurp("thumbd.log", NULL);
	CHECK(text != NULL);
	line = text ? nth_line(text, 0) : NULL;
	CHECK(line && file_line_is(line, "fetch", "INFO",
	                           "downloaded http://ann:***@127.0.0.1:8080/a.jpg and https://bo:***@h/b"));
	line = text ? nth_line(text, 1) : NULL;
	CHECK(line && file_line_is(line, "fetch", "INFO", "kept https://ann@h/c.jpg http://h/p?q=a:b@c http://h/x:y@z"));
	CHECK(text && !strstr(text, "s3cret"));
	free(text);
	text = slurp("failed.tsv", NULL);
	CHECK(text && strstr(text, "\thttp://ann:s3cret@127.0.0.1/d.jpg\tHTTP 404\n"));
	free(text);
	remove_file("thumbd.log");
	remove_file("failed.tsv");
}

static void
test_file_target(void)
{
	char err[256] = "", *text;

	CHECK_INT(log_open_target(dir, LOG_TO_FILE, err, sizeof err), 0);
	log_thread_name("fetch");
	log_msg(LOG_INFO, "hello %d", 42);
	log_msg(LOG_WARNING, "a\tb\nc");        /* escaped: still one line */
	log_thread_name("main");
	log_msg(LOG_DEBUG, "d");
	log_msg(LOG_ERROR, "e");
	log_close();
	text = slurp("thumbd.log", NULL);
	CHECK(text != NULL);
	CHECK_INT(count_lines(text), 4);
	CHECK(file_line_is(nth_line(text, 0) ? nth_line(text, 0) : "", "fetch", "INFO", "hello 42"));
	CHECK(file_line_is(nth_line(text, 1) ? nth_line(text, 1) : "", "fetch", "WARNING", "a\\tb\\nc"));
	CHECK(file_line_is(nth_line(text, 2) ? nth_line(text, 2) : "", "main", "DEBUG", "d"));
	CHECK(file_line_is(nth_line(text, 3) ? nth_line(text, 3) : "", "main", "ERROR", "e"));
	free(text);
	text = slurp("failed.tsv", NULL);
	CHECK(text != NULL && text[0] == '\0');  /* opened (created), nothing failed */
	free(text);

	/* log_open is the same thing, appending to what is there */
	CHECK_INT(log_open(dir, err, sizeof err), 0);
	log_msg(LOG_INFO, "again");
	log_close();
	text = slurp("thumbd.log", NULL);
	CHECK_INT(count_lines(text), 5);
	CHECK(file_line_is(nth_line(text, 4) ? nth_line(text, 4) : "", "main", "INFO", "again"));
	free(text);
	remove_file("thumbd.log");
	remove_file("failed.tsv");

	/* a bad target is refused with a message, and opens nothing */
	err[0] = '\0';
	CHECK_INT(log_open_target(dir, (log_target)7, err, sizeof err), -1);
	CHECK(strstr(err, "target") != NULL);
	CHECK(!exists("thumbd.log") && !exists("failed.tsv"));
}

/* Runs body with fd 2 sent to <dir>/stderr.txt; returns what it wrote. */
static char *
capture_stderr(void (*body)(void))
{
	char path[512];
	int saved, fd;

	snprintf(path, sizeof path, "%s/stderr.txt", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	saved = dup(STDERR_FILENO);
	if (fd < 0 || saved < 0)
		return NULL;
	dup2(fd, STDERR_FILENO);
	close(fd);
	body();
	dup2(saved, STDERR_FILENO);
	close(saved);
	return slurp("stderr.txt", NULL);
}

static int stderr_open_rc = -1, stderr_reopen_rc = -1;   /* set by stderr_body */

static void
stderr_body(void)
{
	char err[256];

	stderr_open_rc = log_open_target(dir, LOG_TO_STDERR, err, sizeof err);
	log_thread_name("fetch");
	log_msg(LOG_DEBUG, "dbg %s", "x");
	log_msg(LOG_INFO, "info");
	log_msg(LOG_WARNING, "warn");
	log_msg(LOG_ERROR, "err\nor");
	log_thread_name("worker-2");
	log_failure("http://a.example/x.jpg", "HTTP 404");
	stderr_reopen_rc = log_reopen(err, sizeof err);    /* no-op: nothing to reopen */
	log_msg(LOG_INFO, "after reopen");
	log_close();
	log_thread_name("main");
	log_msg(LOG_INFO, "closed");            /* closed: stderr, file format again */
}

static void
test_stderr_target(void)
{
	static const char journal[] =
		"<7>[fetch, DEBUG] dbg x\n"
		"<6>[fetch, INFO] info\n"
		"<4>[fetch, WARNING] warn\n"
		"<3>[fetch, ERROR] err\\nor\n"
		"<3>[worker-2, ERROR] failed http://a.example/x.jpg: HTTP 404\n"
		"<6>[worker-2, INFO] after reopen\n";
	static const char stamp[] = "0000-00-00T00:00:00Z";
	char *out = capture_stderr(stderr_body), *tsv;
	const char *last = nth_line(out, 6), *p;
	int stamp_ok = 1;

	CHECK_INT(stderr_open_rc, 0);
	CHECK_INT(stderr_reopen_rc, 1);        /* nothing to reopen: says so */
	CHECK(out != NULL);
	CHECK_INT(count_lines(out), 7);
	if (last) {
		CHECK(file_line_is(last, "main", "INFO", "closed"));
		out[last - out] = '\0';
	}
	CHECK_STR(out, journal);
	free(out);
	/* no thumbd.log with this target; failed.tsv as always */
	CHECK(!exists("thumbd.log"));
	tsv = slurp("failed.tsv", NULL);
	CHECK(tsv != NULL);
	if (tsv) {
		for (p = tsv; p - tsv < (long)sizeof stamp - 1; p++)
			if (stamp[p - tsv] == '0' ? (*p < '0' || *p > '9') : *p != stamp[p - tsv])
				stamp_ok = 0;
		CHECK(stamp_ok);
		CHECK_STR(tsv + strnlen(tsv, sizeof stamp - 1), "\thttp://a.example/x.jpg\tHTTP 404\n");
	}
	free(tsv);
	remove_file("failed.tsv");
	remove_file("stderr.txt");
}

/* How many of this process's descriptors are open on <dir>/<name>; *cloexec
 * is cleared when one of them lacks FD_CLOEXEC. */
static int
fds_on(const char *name, int *cloexec)
{
	char path[512];
	struct stat want, st;
	int n = 0;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (stat(path, &want) < 0)
		return -1;
	for (int fd = 0; fd < 1024; fd++) {
		if (fstat(fd, &st) < 0 || st.st_dev != want.st_dev || st.st_ino != want.st_ino)
			continue;
		n++;
		if (cloexec && !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
			*cloexec = 0;
	}
	return n;
}

static void
test_reopen(void)
{
	char err[256] = "", moved[sizeof dir + 8], *text;
	int cloexec = 1, rc;

	CHECK_INT(log_open(dir, err, sizeof err), 0);
	log_msg(LOG_INFO, "before");
	CHECK_INT(rename_file("thumbd.log", "thumbd.log.1"), 0);   /* what logrotate does */
	log_msg(LOG_INFO, "between");           /* still the renamed file */
	CHECK(!exists("thumbd.log"));
	CHECK_INT(log_reopen(err, sizeof err), 0);
	CHECK(exists("thumbd.log"));
	/* the new file behind one descriptor, close-on-exec; the old one closed */
	CHECK_INT(fds_on("thumbd.log", &cloexec), 1);
	CHECK(cloexec);
	CHECK_INT(fds_on("thumbd.log.1", NULL), 0);
	log_msg(LOG_INFO, "after");

	/* the directory gone: -1 naming the path, and the current file stays in use */
	snprintf(moved, sizeof moved, "%s.moved", dir);
	CHECK_INT(rename(dir, moved), 0);
	err[0] = '\0';
	rc = log_reopen(err, sizeof err);
	CHECK_INT(rc, -1);
	CHECK(strstr(err, "thumbd.log") != NULL);
	log_msg(LOG_INFO, "still");
	CHECK_INT(rename(moved, dir), 0);
	log_close();

	text = slurp("thumbd.log.1", NULL);
	CHECK_INT(count_lines(text), 2);
	CHECK(file_line_is(nth_line(text, 0) ? nth_line(text, 0) : "", "main", "INFO", "before"));
	CHECK(file_line_is(nth_line(text, 1) ? nth_line(text, 1) : "", "main", "INFO", "between"));
	free(text);
	text = slurp("thumbd.log", NULL);
	CHECK_INT(count_lines(text), 2);
	CHECK(file_line_is(nth_line(text, 0) ? nth_line(text, 0) : "", "main", "INFO", "after"));
	CHECK(file_line_is(nth_line(text, 1) ? nth_line(text, 1) : "", "main", "INFO", "still"));
	free(text);
	/* failed.tsv is not rotated: still the one file, never reopened */
	CHECK(exists("failed.tsv"));
	CHECK(!exists("failed.tsv.1"));
	remove_file("thumbd.log");
	remove_file("thumbd.log.1");
	remove_file("failed.tsv");
}

/* ---- reopen while threads log ---- */

#define NTHREADS 4
#define PER_THREAD 20000
#define MAX_ROTATIONS 400
#define PAD "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

static atomic_int written, finished;

static void *
writer(void *arg)
{
	int t = (int)(long)arg;
	char name[8];

	snprintf(name, sizeof name, "w%d", t);
	log_thread_name(name);
	for (int i = 0; i < PER_THREAD; i++) {
		log_msg(LOG_INFO, "w%d %d " PAD, t, i);
		atomic_fetch_add(&written, 1);
	}
	atomic_fetch_add(&finished, 1);
	return NULL;
}

/* Parses "[wT, <time>, INFO] wT I PAD\n" at *pp; advances *pp past it.
 * Returns T * PER_THREAD + I, or -1 for anything else (a torn line). */
static long
parse_writer_line(const char **pp)
{
	char msg[64];
	const char *p = *pp, *nl = strchr(p, '\n');
	int t, i, n;

	*pp = nl ? nl + 1 : p + strlen(p);
	if (!nl || sscanf(p, "[w%d, ", &t) != 1 || t < 0 || t >= NTHREADS)
		return -1;
	if (sscanf(p + 5, "%*4d-%*2d-%*2d %*2d:%*2d:%*2d,%*3d, INFO] w%*d %d %n", &i, &n) != 1
	    || i < 0 || i >= PER_THREAD)
		return -1;
	snprintf(msg, sizeof msg, "w%d %d ", t, i);
	if (!file_line_starts(p, (const char []){ 'w', (char)('0' + t), '\0' }, "INFO", msg, ""))
		return -1;
	p += 5 + n;
	if (nl - p != (long)sizeof PAD - 1 || strncmp(p, PAD, sizeof PAD - 1) != 0)
		return -1;
	return (long)t * PER_THREAD + i;
}

static void
test_reopen_under_load(void)
{
	static unsigned char seen[NTHREADS * PER_THREAD];
	struct timespec ms = { 0, 1000000 }, tick = { 0, 100000 };
	pthread_t th[NTHREADS];
	char err[256] = "", name[64];
	int rotations = 0, reopen_failed = 0, torn = 0, twice = 0, missing = 0;
	int files_used = 0, total = 0;

	CHECK_INT(log_open(dir, err, sizeof err), 0);
	for (long t = 0; t < NTHREADS; t++)
		CHECK_INT(pthread_create(&th[t], NULL, writer, (void *)t), 0);
	while (atomic_load(&written) < 1000)
		nanosleep(&tick, NULL);
	while (atomic_load(&finished) < NTHREADS && rotations < MAX_ROTATIONS) {
		snprintf(name, sizeof name, "thumbd.log.%d", ++rotations);
		if (rename_file("thumbd.log", name) < 0 || log_reopen(err, sizeof err) < 0)
			reopen_failed++;
		nanosleep(&ms, NULL);
	}
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	log_close();
	CHECK_INT(reopen_failed, 0);
	CHECK(rotations >= 1);

	for (int k = 1; k <= rotations + 1; k++) {
		const char *p;
		char *text;
		int lines = 0;

		if (k <= rotations)
			snprintf(name, sizeof name, "thumbd.log.%d", k);
		else
			snprintf(name, sizeof name, "thumbd.log");
		text = slurp(name, NULL);
		for (p = text; p && *p; lines++) {
			long id = parse_writer_line(&p);
			if (id < 0)
				torn++;
			else if (seen[id]++)
				twice++;
		}
		total += lines;
		files_used += lines > 0;
		free(text);
		remove_file(name);
	}
	for (long id = 0; id < NTHREADS * PER_THREAD; id++)
		missing += !seen[id];
	CHECK_INT(total, NTHREADS * PER_THREAD);
	CHECK_INT(torn, 0);
	CHECK_INT(twice, 0);
	CHECK_INT(missing, 0);
	CHECK(files_used >= 2);                 /* the reopens really happened mid-stream */
	remove_file("failed.tsv");
}

static void
put_file(const char *name, const char *text)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fp = fopen(path, "w");
	CHECK(fp != NULL);
	if (fp) {
		fputs(text, fp);
		fclose(fp);
	}
}

static long
file_size(const char *name)
{
	char path[512];
	struct stat sb;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static int
count_str(const char *text, const char *needle)
{
	int n = 0;

	for (; text && (text = strstr(text, needle)); text++)
		n++;
	return n;
}

/* set by full_body */
static long full_size0, full_size1, full_size2, full_lost;
static int full_rc[3] = { 9, 9, 9 }, full_limit_set;

/* failed.tsv may grow by 30 bytes only (RLIMIT_FSIZE, SIGXFSZ ignored, so
 * a write past it is cut short and the next one gets EFBIG, like a full
 * disk), then by any amount again. */
static void
full_body(void)
{
	struct rlimit saved, rl;
	char err[256];

	if (log_open(dir, err, sizeof err) < 0)
		return;
	full_size0 = file_size("failed.tsv");
	signal(SIGXFSZ, SIG_IGN);
	if (getrlimit(RLIMIT_FSIZE, &saved) == 0) {
		rl = saved;
		rl.rlim_cur = (rlim_t)full_size0 + 30;
		full_limit_set = setrlimit(RLIMIT_FSIZE, &rl) == 0;
	}
	full_rc[0] = log_failure("http://h/torn_1.jpg?a-long-enough-query", "HTTP 404");
	full_size1 = file_size("failed.tsv");
	full_rc[1] = log_failure("http://h/torn_2.jpg", "HTTP 410");
	full_size2 = file_size("failed.tsv");
	if (full_limit_set)
		setrlimit(RLIMIT_FSIZE, &saved);
	signal(SIGXFSZ, SIG_DFL);
	full_rc[2] = log_failure("http://h/after_free.jpg", "HTTP 404");
	full_lost = log_failures_lost();
	log_close();
}

static void
test_failure_file_full(void)
{
	char rec[200], *text, *out, *log;
	size_t off = 0;

	/* an earlier run's records, so failed.tsv is larger than the new
	 * thumbd.log and stderr.txt: only failed.tsv reaches the limit */
	text = malloc(8192);
	if (!text)
		return;
	text[0] = 0;
	for (int i = 0; i < 40; i++)
		off += (size_t)snprintf(text + off, 8192 - off,
		                        "2026-01-01T00:00:00Z\thttp://h/earlier-%02d.jpg\tHTTP 404\n", i);
	put_file("failed.tsv", text);
	out = capture_stderr(full_body);
	CHECK(full_limit_set);
	CHECK_INT(full_rc[0], -1);
	CHECK_INT(full_size1, full_size0);      /* the part that fit was taken back */
	CHECK_INT(full_rc[1], -1);
	CHECK_INT(full_size2, full_size0);
	CHECK_INT(full_rc[2], 0);
	CHECK_INT(full_lost, 2);
	/* the file holds the old records and the new one, each whole */
	log = slurp("failed.tsv", NULL);
	snprintf(rec, sizeof rec, "\thttp://h/after_free.jpg\tHTTP 404\n");
	CHECK(log && strncmp(log, text, off) == 0);
	CHECK(log && strlen(log) == off + 20 + strlen(rec) && strcmp(log + off + 20, rec) == 0);
	CHECK_INT(count_lines(log), 41);
	free(log);
	free(text);
	/* said once for the episode, on stderr and in the log, and its end */
	CHECK_INT(count_str(out, "cannot write "), 1);
	CHECK(out && strstr(out, "failed.tsv: File too large; failures are not recorded") != NULL);
	free(out);
	log = slurp("thumbd.log", NULL);
	CHECK_INT(count_str(log, "ERROR] cannot write "), 1);
	CHECK_INT(count_str(log, "failed.tsv can be written again; 2 failures since the start"), 1);
	CHECK_INT(count_str(log, "ERROR] failed http://h/torn_2.jpg: HTTP 410"), 1);
	free(log);
	remove_file("thumbd.log");
	remove_file("failed.tsv");
	remove_file("stderr.txt");
}

/* A record cut short before this run (a power cut): the next one ends
 * its line with an empty field, so readers ignore it, and starts afresh. */
static void
test_failure_after_torn_tail(void)
{
	static const char torn[] = "2026-01-01T00:00:00Z\thttp://h/torn.jpg\tHT";
	char err[256], *text;

	put_file("failed.tsv", torn);
	CHECK_INT(log_open(dir, err, sizeof err), 0);
	CHECK_INT(log_failure("http://h/next.jpg", "HTTP 404"), 0);
	CHECK_INT(log_failure("http://h/third.jpg", "HTTP 404"), 0);
	log_close();
	text = slurp("failed.tsv", NULL);
	CHECK(text && strncmp(text, torn, sizeof torn - 1) == 0);
	CHECK(text && strncmp(text + sizeof torn - 1, "\t\n", 2) == 0);
	CHECK(text && strncmp(text + sizeof torn + 1 + 20, "\thttp://h/next.jpg\tHTTP 404\n", 28) == 0);
	CHECK_INT(count_lines(text), 3);
	CHECK_INT(count_str(text, "\t\n"), 1);  /* only the torn line gets one */
	free(text);
	remove_file("thumbd.log");
	remove_file("failed.tsv");
}

int
main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_file_target();
	test_redacted_passwords();
	test_stderr_target();
	test_reopen();
	test_reopen_under_load();
	test_failure_file_full();
	test_failure_after_torn_tail();
	rmdir(dir);
	return CHECK_DONE();
}
