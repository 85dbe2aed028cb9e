/* Unit tests: config parsing, validation and error messages (config.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static char tmpdir[] = "/tmp/thumbd-test-config-XXXXXX";

static const char *
write_ini(const char *name, const char *text)
{
	static char path[256];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	CHECK(fp != NULL);
	if (fp) {
		fputs(text, fp);
		fclose(fp);
	}
	return path;
}

static void
test_defaults(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN];

	CHECK(c != NULL);
	CHECK_INT(c->connections, 128);
	CHECK_INT(c->per_host, 128);
	CHECK_INT(c->per_host_start, 8);
	CHECK_INT(c->nsizes, 3);
	CHECK_INT(c->sizes[0], 32);
	CHECK_INT(c->sizes[1], 64);
	CHECK_INT(c->sizes[2], 200);
	CHECK_INT(c->format, IMG_UNKNOWN);
	CHECK(c->max_bytes == 50ULL << 20);
	CHECK(c->max_pixels == 100000000ULL);
	CHECK_INT(c->workers, 0);
	CHECK_INT(c->retries, 3);
	CHECK_INT(c->retry_delay_ms, 1000);
	CHECK_INT(c->max_retry_wait_ms, 60000);
	CHECK_INT(c->host_delay_ms, 0);
	CHECK_INT(c->host_max_failures, 10);
	CHECK(c->ca_file == NULL);
	CHECK_STR(c->user_agent, "thumbd/" THUMBD_VERSION);     /* what the docs say is sent */
	CHECK(c->nwatch == 0 && c->watch == NULL);              /* daemon.watch: none */
	CHECK_INT(c->retry_kept_ms, 60000);
	CHECK_INT(cfg_finish(c, err, sizeof err), 0);
	CHECK(c->workers >= 1);
	/* no file read: the paths' defaults against the current directory */
	CHECK_STR(c->incoming, "../incoming");
	CHECK_STR(c->outgoing, "../outgoing");
	CHECK_STR(c->logs, "../logs");
	cfg_free(c);
	cfg_free(NULL);
}

/* paths.* left out of the file default to ../incoming etc. beside the file,
 * resolved like a value written there, not against the current directory. */
static void
test_default_paths(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN], want[512];
	const char *p = write_ini("nopaths.ini", "[paths]\noutgoing = out\n[download]\nretries = 1\n");

	CHECK_INT(cfg_load(c, p, err, sizeof err), 0);
	snprintf(want, sizeof want, "%s/../incoming", tmpdir);
	CHECK_STR(c->incoming, want);
	snprintf(want, sizeof want, "%s/out", tmpdir);
	CHECK_STR(c->outgoing, want);
	snprintf(want, sizeof want, "%s/../logs", tmpdir);
	CHECK_STR(c->logs, want);
	CHECK_INT(cfg_set(c, "paths.logs=here", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), 0);
	CHECK_STR(c->logs, "here");                     /* --set: the current directory */
	snprintf(want, sizeof want, "%s/../incoming", tmpdir);
	CHECK_STR(c->incoming, want);                   /* cfg_finish keeps the file's */
	cfg_free(c);
}

static void
test_shipped_config(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN];

	/* the commented config in the tree must parse and keep the defaults */
	CHECK_INT(cfg_load(c, "config/thumbd.ini", err, sizeof err), 0);
	if (err[0])
		fprintf(stderr, "%s\n", err);
	CHECK_INT(c->connections, 128);
	CHECK_INT(c->per_host, 128);
	CHECK_INT(c->per_host_start, 8);
	CHECK(c->max_bytes == 50ULL << 20);
	CHECK_STR(c->user_agent, "thumbd/" THUMBD_VERSION);
	CHECK(strstr(c->outgoing, "/config/../outgoing") != NULL);
	CHECK(c->outgoing[0] == '/');
	cfg_free(c);
}

static void
test_values(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN];
	const char *p = write_ini("ok.ini",
		"; comment\n# another\n[paths]\noutgoing = /srv/thumbs\nincoming = in\n"
		"[download]\nconnections = 8 ; inline comment\nmax_bytes = 2M\n"
		"[thumbnails]\nsizes = 50, 100 ,300\nformat = webp\n[image]\nmax_pixels = 1K\n");

	CHECK_INT(cfg_load(c, p, err, sizeof err), 0);
	CHECK_STR(c->outgoing, "/srv/thumbs");
	CHECK(strlen(c->incoming) > 3 && strcmp(c->incoming + strlen(c->incoming) - 3, "/in") == 0);
	CHECK(strncmp(c->incoming, tmpdir, strlen(tmpdir)) == 0);   /* relative to the file */
	CHECK_INT(c->connections, 8);
	CHECK(c->max_bytes == 2ULL << 20);
	CHECK_INT(c->nsizes, 3);
	CHECK_INT(c->sizes[1], 100);
	CHECK_INT(c->sizes[2], 300);
	CHECK_INT(c->format, IMG_WEBP);
	CHECK(c->max_pixels == 1024);
	cfg_free(c);
}

static void
test_errors(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN];
	const char *p = write_ini("bad.ini",
		"[download]\nconnections = abc\nper_host = 0\nbogus = 1\n[nosuch]\n[thumbnails]\n"
		"format = gif\nsizes = 32,,64\n");

	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	/* every problem reported, each with file:line and the key */
	CHECK(strstr(err, "bad.ini:2: download.connections: \"abc\" is not a whole number") != NULL);
	CHECK(strstr(err, "bad.ini:3: download.per_host: 0 is out of range (1..1024)") != NULL);
	CHECK(strstr(err, "bad.ini:4: unknown key \"bogus\" in [download]") != NULL);
	CHECK(strstr(err, "bad.ini:5: unknown section [nosuch]") != NULL);
	CHECK(strstr(err, "bad.ini:7: thumbnails.format: \"gif\"") != NULL);
	CHECK(strstr(err, "bad.ini:8: thumbnails.sizes") != NULL);
	CHECK_INT(c->connections, 128);         /* bad values change nothing */
	cfg_free(c);

	c = cfg_new();
	p = write_ini("syntax.ini", "[download]\nthis line has no equals sign\nconnections = 8\n");
	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	/* the line that has it, not the file's last */
	CHECK(strstr(err, "syntax.ini:2: syntax error") != NULL);
	CHECK(strstr(err, "syntax.ini:3:") == NULL);
	CHECK_INT(cfg_load(c, "/nonexistent/thumbd.ini", err, sizeof err), -1);
	CHECK(strstr(err, "/nonexistent/thumbd.ini") != NULL);
	cfg_free(c);

	/* a directory opens, then its first read fails: an error, never an
	 * empty file of defaults */
	c = cfg_new();
	CHECK_INT(cfg_load(c, tmpdir, err, sizeof err), -1);
	CHECK(strstr(err, tmpdir) == err);
	CHECK(strstr(err, ": cannot read config file: Is a directory") != NULL);
	cfg_free(c);

	/* a key before any [section] is reported, like an unknown one */
	c = cfg_new();
	p = write_ini("nosection.ini", "retries = 0\n[download]\nconnections = 8\n");
	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	CHECK(strstr(err, "nosection.ini:1: key \"retries\" before any [section]") != NULL);
	CHECK_INT(c->retries, 3);
	cfg_free(c);

	/* the unknown-section message lists every section of the key table */
	c = cfg_new();
	p = write_ini("sections.ini", "[daemon]\nlog = file\n[deamon]\n");
	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	CHECK(strstr(err, "sections.ini:3: unknown section [deamon] "
	              "(known: paths, download, resize, thumbnails, image, daemon)") != NULL);
	CHECK_INT(c->log_target, CFG_LOG_FILE);         /* [daemon] is known */
	cfg_free(c);
}

static void
test_set(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN];

	CHECK_INT(cfg_set(c, "download.connections=4", err, sizeof err), 0);
	CHECK_INT(c->connections, 4);
	CHECK_INT(cfg_set(c, "paths.outgoing=/srv/t", err, sizeof err), 0);
	CHECK_STR(c->outgoing, "/srv/t");
	CHECK_INT(cfg_set(c, "thumbnails.sizes=10", err, sizeof err), 0);
	CHECK_INT(c->nsizes, 1);
	CHECK_INT(cfg_set(c, "download.nope=1", err, sizeof err), -1);
	CHECK(strstr(err, "download.nope") != NULL);
	CHECK_INT(cfg_set(c, "connections=4", err, sizeof err), -1);
	CHECK_INT(cfg_set(c, "download.connections=2000", err, sizeof err), -1);
	CHECK(strstr(err, "out of range") != NULL);
	CHECK_INT(cfg_set(c, "thumbnails.sizes=32,32", err, sizeof err), -1);
	CHECK_INT(cfg_set(c, "download.max_bytes=10X", err, sizeof err), -1);
	/* seconds with decimals, kept as milliseconds */
	CHECK_INT(cfg_set(c, "download.retry_delay=0.25", err, sizeof err), 0);
	CHECK_INT(c->retry_delay_ms, 250);
	CHECK_INT(cfg_set(c, "download.host_delay=2", err, sizeof err), 0);
	CHECK_INT(c->host_delay_ms, 2000);
	CHECK_INT(cfg_set(c, "download.max_retry_wait=1.5", err, sizeof err), 0);
	CHECK_INT(c->max_retry_wait_ms, 1500);
	CHECK_INT(cfg_set(c, "download.host_delay=-1", err, sizeof err), -1);
	CHECK_INT(cfg_set(c, "download.host_delay=1.2.3", err, sizeof err), -1);
	CHECK(strstr(err, "not a number of seconds") != NULL);
	CHECK_INT(cfg_set(c, "daemon.retry_kept=0.5", err, sizeof err), 0);
	CHECK_INT(c->retry_kept_ms, 500);
	CHECK_INT(cfg_set(c, "daemon.retry_kept=0", err, sizeof err), 0);
	CHECK_INT(c->retry_kept_ms, 0);
	CHECK_INT(cfg_set(c, "daemon.retry_kept=3601", err, sizeof err), -1);
	CHECK(strstr(err, "out of range") != NULL);
	CHECK_INT(cfg_set(c, "download.retries=21", err, sizeof err), -1);
	CHECK_INT(cfg_set(c, "download.retries=0", err, sizeof err), 0);
	CHECK_INT(c->retries, 0);
	/* an empty ca_file means the system store */
	CHECK_INT(cfg_set(c, "download.ca_file=/etc/ssl/x.pem", err, sizeof err), 0);
	CHECK_STR(c->ca_file, "/etc/ssl/x.pem");
	CHECK_INT(cfg_set(c, "download.ca_file=", err, sizeof err), 0);
	CHECK(c->ca_file == NULL);
	CHECK_INT(c->connections, 4);
	/* one directory cannot be both scratch space and product */
	CHECK_INT(cfg_set(c, "paths.incoming=/tmp/same", err, sizeof err), 0);
	CHECK_INT(cfg_set(c, "paths.outgoing=/tmp/same/", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), -1);
	CHECK(strstr(err, "paths.incoming and paths.outgoing") != NULL);
	CHECK_INT(cfg_set(c, "paths.outgoing=/tmp/other", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), 0);
	cfg_free(c);
}

/* [daemon]: watch lists, log target, metrics path against the logs dir. */
static void
test_daemon_keys(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN], want[512];
	const char *p = write_ini("daemon.ini",
		"[paths]\nlogs = /var/log/t\n[daemon]\nwatch = lists  /abs/feed.urls\tmore\n"
		"log = stderr\nmetrics = m/t.prom\nmetrics_interval = 2.5\n");

	CHECK_INT(cfg_load(c, p, err, sizeof err), 0);
	CHECK_INT(c->nwatch, 3);
	snprintf(want, sizeof want, "%s/lists", tmpdir);
	CHECK_STR(c->watch[0], want);                   /* relative to the file */
	CHECK_STR(c->watch[1], "/abs/feed.urls");
	CHECK(c->watch[3] == NULL);
	CHECK_INT(c->log_target, CFG_LOG_STDERR);
	CHECK_INT(c->metrics_interval_ms, 2500);
	CHECK_INT(cfg_finish(c, err, sizeof err), 0);
	CHECK_STR(c->metrics_path, "/var/log/t/m/t.prom");  /* relative to [paths] logs */
	CHECK_INT(cfg_set(c, "daemon.metrics=/run/thumbd/t.prom", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), 0);
	CHECK_STR(c->metrics_path, "/run/thumbd/t.prom");
	CHECK_INT(cfg_set(c, "daemon.metrics=", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), 0);
	CHECK(c->metrics_path == NULL);                 /* empty: no metrics file */
	CHECK_INT(cfg_set(c, "daemon.watch=", err, sizeof err), 0);
	CHECK_INT(c->nwatch, 0);
	CHECK_INT(cfg_set(c, "daemon.log=syslog", err, sizeof err), -1);
	CHECK(strstr(err, "not auto, file or stderr") != NULL);
	CHECK_INT(cfg_set(c, "daemon.metrics_interval=0.05", err, sizeof err), -1);
	CHECK(strstr(err, "out of range (0.1..3600 s)") != NULL);
	cfg_free(c);
}

/* Numbers at their edges: suffixes, values too large for any key (out of
 * range, not "not a number"), width lists, a line longer than the reader
 * takes, a config named without a directory, and where the default config
 * is looked for. */
static void
test_edges(void)
{
	cfg *c = cfg_new();
	char err[CFG_ERRLEN], cwd[512], want[600], line[9000];
	const char *p;

	static const struct { const char *set; unsigned long long bytes; } taken[] = {
		{ "download.max_bytes=3G", 3ULL << 30 },
		{ "download.max_bytes=2MiB", 2ULL << 20 },
		{ "download.max_bytes=5kb", 5ULL << 10 },
		{ "download.max_bytes=1T", 1ULL << 40 },
	};
	/* each refused with err holding the text (NULL: any message) */
	static const struct { const char *set, *says; } refused[] = {
		{ "download.max_bytes=2T", "out of range" },
		{ "download.max_bytes=99999999999T", "99999999999T is out of range" },
		{ "download.connections=99999999999999999999999", "is out of range (1..1024)" },
		{ "download.max_bytes=2 M", "is not a number" },
		{ "download.max_bytes=-1", NULL },
		{ "download.connections=4K", "not a whole number" },    /* counts take no suffix */
		{ "thumbnails.sizes=0", "width 0 is out of range (1..8192)" },
		{ "thumbnails.sizes=64,8193", "width 8193 is out of range" },
		{ "thumbnails.sizes=32,99999999999999999999", "width 99999999999999999999 is out of range" },
		{ "thumbnails.sizes=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "more than 16 widths" },
		{ "thumbnails.sizes=32,", "ends with a comma" },
		{ "thumbnails.sizes=", "needs at least one width" },
	};

	for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++) {
		CHECK_INT(cfg_set(c, taken[i].set, err, sizeof err), 0);
		CHECK(c->max_bytes == taken[i].bytes);
	}
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		CHECK_INT(cfg_set(c, refused[i].set, err, sizeof err), -1);
		if (refused[i].says) {
			CHECK(strstr(err, refused[i].says) != NULL);
			if (!strstr(err, refused[i].says))
				fprintf(stderr, "  %s: got \"%s\"\n", refused[i].set, err);
		}
	}
	CHECK(c->max_bytes == 1ULL << 40);              /* refused values change nothing */
	CHECK_INT(cfg_set(c, "thumbnails.sizes= 16 ,\t300", err, sizeof err), 0);
	CHECK_INT(c->nsizes, 2);
	CHECK_INT(c->sizes[1], 300);
	CHECK_INT(cfg_set(c, "thumbnails.sizes=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", err, sizeof err), 0);
	CHECK_INT(c->nsizes, 16);
	cfg_free(c);

	/* a line longer than the reader's buffer: an error on that line, and
	 * the lines after it are still read as lines */
	memset(line, 'x', sizeof line - 1);
	line[sizeof line - 1] = 0;
	{
		char text[sizeof line + 128];
		snprintf(text, sizeof text, "[download]\nuser_agent = %s\nretries = 7\nbogus = 1\n", line);
		p = write_ini("long.ini", text);
	}
	c = cfg_new();
	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	CHECK(strstr(err, "long.ini:2: line longer than") != NULL);
	CHECK(strstr(err, "long.ini:4: unknown key \"bogus\"") != NULL);
	CHECK_INT(c->retries, 7);
	cfg_free(c);

	/* a NUL byte: that line is an error saying so (it was "line longer than
	 * 198 bytes", as the NUL hid the newline), the next line still reads */
	{
		static const char text[] = "[download]\nretries = 1\0junk\ntimeout = 9\n";
		char path[600];
		FILE *fp;
		snprintf(path, sizeof path, "%s/nul.ini", tmpdir);
		CHECK((fp = fopen(path, "w")) != NULL);
		if (fp) {
			CHECK(fwrite(text, 1, sizeof text - 1, fp) == sizeof text - 1);
			fclose(fp);
		}
		c = cfg_new();
		CHECK_INT(cfg_load(c, path, err, sizeof err), -1);
		CHECK(strstr(err, "nul.ini:2: a NUL byte in the line") != NULL);
		CHECK(strstr(err, "longer") == NULL);
		CHECK_INT(c->timeout, 9);
		cfg_free(c);
	}

	/* a key set twice in the file: an error naming both lines (the last
	 * one used to win silently); a section opened twice is one section */
	p = write_ini("twice.ini", "[download]\nretries = 1\n[resize]\nworkers = 2\n[download]\ntimeout = 5\n"
	              "retries = 2\n");
	c = cfg_new();
	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	CHECK(strstr(err, "twice.ini:7: download.retries is set twice (first on line 2)") != NULL);
	CHECK_INT(c->retries, 1);
	CHECK_INT(c->timeout, 5);
	cfg_free(c);
	p = write_ini("once.ini", "[download]\nretries = 1\n[resize]\nworkers = 2\n[download]\ntimeout = 5\n");
	c = cfg_new();
	CHECK_INT(cfg_load(c, p, err, sizeof err), 0);
	CHECK_INT(c->retries, 1);
	CHECK_INT(c->timeout, 5);
	cfg_free(c);

	/* -c thumbd.ini, no directory in the name: paths relative to the
	 * current directory, which is that file's */
	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	write_ini("plain.ini", "[paths]\noutgoing = out\n");
	CHECK_INT(chdir(tmpdir), 0);
	c = cfg_new();
	CHECK_INT(cfg_load(c, "plain.ini", err, sizeof err), 0);
	snprintf(want, sizeof want, "%s/out", tmpdir);
	CHECK_STR(c->outgoing, want);
	cfg_free(c);

	/* the default config: $THUMBD_CONFIG, then ./config/thumbd.ini */
	setenv("THUMBD_CONFIG", "/some/where.ini", 1);
	CHECK_STR(cfg_default_path(err, sizeof err), "/some/where.ini");
	unsetenv("THUMBD_CONFIG");
	CHECK_INT(mkdir("config", 0755), 0);
	write_ini("config/thumbd.ini", "[download]\n");
	CHECK_STR(cfg_default_path(err, sizeof err), "config/thumbd.ini");
	CHECK_INT(unlink("config/thumbd.ini"), 0);
	if (access(SYSCONFDIR "/thumbd/thumbd.ini", F_OK) != 0) {
		CHECK(cfg_default_path(err, sizeof err) == NULL);
		CHECK(strstr(err, "no config file found") != NULL);
		CHECK(strstr(err, "(use -c FILE)") != NULL);
	}
	CHECK_INT(chdir(cwd), 0);
}

/* The file as editors write it: a byte order mark, indented keys, a list
 * value over several lines; and paths that would mix logs with the data. */
static void
test_layout_and_places(void)
{
	cfg *c;
	char err[CFG_ERRLEN];
	const char *p;

	/* a BOM hides nothing: the misspelt section is still reported */
	c = cfg_new();
	p = write_ini("bom.ini", "\xEF\xBB\xBF[downlaod]\nconnections = 0\n");
	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	CHECK(strstr(err, "bom.ini:1: unknown section [downlaod]") != NULL);
	cfg_free(c);

	/* indented keys are keys; an indented line of a list continues it */
	c = cfg_new();
	p = write_ini("indent.ini", "[download]\n  connections = 8\n  per_host = 4\n"
	              "  [daemon]\n  watch = /a\n      /b /c\n  ; a comment\n      /d\n  retry_kept = 5\n");
	CHECK_INT(cfg_load(c, p, err, sizeof err), 0);
	CHECK_INT(c->connections, 8);
	CHECK_INT(c->per_host, 4);
	CHECK_INT(c->nwatch, 4);
	CHECK(c->nwatch == 4 && strcmp(c->watch[0], "/a") == 0 && strcmp(c->watch[3], "/d") == 0);
	CHECK_INT(c->retry_kept_ms, 5000);
	cfg_free(c);

	/* ... and for a one-value key the error says what happened */
	c = cfg_new();
	p = write_ini("indent2.ini", "[download]\nconnections = 8\n    16\n");
	CHECK_INT(cfg_load(c, p, err, sizeof err), -1);
	CHECK(strstr(err, "indent2.ini:3: an indented line continues the value of download.connections") != NULL);
	cfg_free(c);

	/* logs/ neither in incoming/ (the daemon would take its files for
	 * images) nor in outgoing/ (published); the metrics file likewise */
	c = cfg_new();
	CHECK_INT(cfg_set(c, "paths.incoming=/tmp/x-in", err, sizeof err), 0);
	CHECK_INT(cfg_set(c, "paths.outgoing=/tmp/x-out", err, sizeof err), 0);
	CHECK_INT(cfg_set(c, "paths.logs=/tmp/x-in/", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), -1);
	CHECK(strstr(err, "paths.logs and paths.incoming must be different directories") != NULL);
	CHECK_INT(cfg_set(c, "paths.logs=/tmp/x-out", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), -1);
	CHECK(strstr(err, "paths.logs and paths.outgoing must be different directories") != NULL);
	CHECK_INT(cfg_set(c, "paths.logs=/tmp/x-logs", err, sizeof err), 0);
	CHECK_INT(cfg_set(c, "daemon.metrics=/tmp/x-in/t.prom", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), -1);
	CHECK(strstr(err, "daemon.metrics: /tmp/x-in/t.prom is in paths.incoming or paths.outgoing") != NULL);
	CHECK_INT(cfg_set(c, "daemon.metrics=t.prom", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), 0);

	/* a CA bundle that cannot be read fails here, not every https URL */
	CHECK_INT(cfg_set(c, "download.ca_file=/nonexistent/ca.pem", err, sizeof err), 0);
	CHECK_INT(cfg_finish(c, err, sizeof err), -1);
	CHECK(strstr(err, "download.ca_file: cannot read /nonexistent/ca.pem: No such file or directory") != NULL);
	cfg_free(c);

	/* numbers outside every range are said to be so, in the user's words */
	c = cfg_new();
	CHECK_INT(cfg_set(c, "download.retry_delay=999999999", err, sizeof err), -1);
	CHECK(strstr(err, "999999999 s is out of range") != NULL);
	CHECK_INT(cfg_set(c, "download.retry_delay=-1", err, sizeof err), -1);
	CHECK(strstr(err, "-1 s is out of range") != NULL);
	CHECK_INT(cfg_set(c, "download.connections=-1", err, sizeof err), -1);
	CHECK(strstr(err, "-1 is out of range (1..1024)") != NULL);
	CHECK_INT(cfg_set(c, "download.max_bytes=8796093022208K", err, sizeof err), -1);
	CHECK(strstr(err, "8796093022208K is out of range") != NULL);
	CHECK_INT(cfg_set(c, "thumbnails.sizes=64, 1111111111111111111111111111111111111111", err, sizeof err), -1);
	CHECK(strstr(err, "width 1111111111111111111111111111111111111111 is out of range (1..8192)") != NULL);
	CHECK_INT(cfg_set(c, "thumbnails.sizes=-5", err, sizeof err), -1);
	CHECK(strstr(err, "width -5 is out of range (1..8192)") != NULL);
	cfg_free(c);
}

int
main(void)
{
	char cmd[128];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_defaults();
	test_default_paths();
	test_shipped_config();
	test_values();
	test_errors();
	test_set();
	test_daemon_keys();
	test_edges();
	test_layout_and_places();
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	CHECK_INT(system(cmd), 0);
	return CHECK_DONE();
}
