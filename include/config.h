/*
 * config: thumbd's settings, from defaults, then the INI file (inih), then
 * --set SECTION.KEY=VALUE overrides, validated as a whole.
 *
 * struct cfg is public and read-only after cfg_finish(): it is plain data
 * that every module reads, and there is nothing to hide behind accessors.
 */
#ifndef THUMBD_CONFIG_H
#define THUMBD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "img.h"

#define CFG_MAX_SIZES 16
#define CFG_ERRLEN 4096

typedef struct cfg {
	char *file;             /* the config file read, as given */
	char *incoming, *outgoing, *logs;       /* NULL until cfg_load or cfg_finish */

	int connections, per_host;
	int per_host_start;     /* a host's first window; it opens up to per_host (fetch.c) */
	long connect_timeout, timeout;          /* seconds */
	long low_speed_limit, low_speed_time;   /* bytes/s, seconds */
	uint64_t max_bytes;
	int max_redirects;
	char *user_agent;
	char *ca_file;          /* extra CA bundle, NULL = the system store */
	int retries;            /* retries after the first attempt, transient failures only */
	long retry_delay_ms;    /* backoff base */
	long max_retry_wait_ms; /* cap on backoff and Retry-After */
	long host_delay_ms;     /* spacing of request starts per host */
	int host_max_failures;  /* consecutive failures that pause a host (fetch.c); 0 = never */

	int workers;            /* 0 in the file = online CPUs; resolved by cfg_finish */
	uint64_t decode_memory; /* bytes all workers' decoders may hold at once; 0 = no limit */

	int sizes[CFG_MAX_SIZES];
	int nsizes;
	img_format format;      /* IMG_UNKNOWN = same as the source */
	int jpeg_quality, webp_quality, png_level;

	uint64_t max_pixels;

	/* [daemon] */
	char **watch;           /* NULL-terminated list files / directories, or NULL */
	int nwatch;
	enum { CFG_LOG_AUTO, CFG_LOG_FILE, CFG_LOG_STDERR } log_target;
	char *metrics;          /* as written (relative to logs), NULL = off */
	char *metrics_path;     /* resolved by cfg_finish, NULL = off */
	long metrics_interval_ms;
	long retry_kept_ms;     /* a kept list entry is tried again after this, doubling (fetch.c); 0 = next start */
} cfg;

/* Defaults only (the paths.* are filled in by cfg_load or cfg_finish); NULL
 * when out of memory. */
cfg *cfg_new(void);
void cfg_free(cfg *c);

/*
 * Read an INI file over the current values.  Every problem is reported, one
 * per line, as "file:line: message" into err ("file: message" when not even
 * its first line can be read, e.g. a directory); returns 0 when there was
 * none, -1 otherwise.  Relative paths
 * in the file are resolved against the file's directory, and so are the
 * defaults (../incoming, ../outgoing, ../logs) of paths.* not yet set.
 */
int cfg_load(cfg *c, const char *path, char *err, size_t errlen);

/* Apply one "section.key=value" override; relative paths are taken from the
 * current directory.  0 / -1 with the message in err. */
int cfg_set(cfg *c, const char *assignment, char *err, size_t errlen);

/* Resolve automatic values (workers; paths.* no file set, against the
 * current directory).  0 / -1. */
int cfg_finish(cfg *c, char *err, size_t errlen);

/*
 * The config file to use when -c is not given: $THUMBD_CONFIG, then
 * ./config/thumbd.ini (the source tree), then SYSCONFDIR/thumbd/thumbd.ini.
 * Returns a static string, or NULL when none exists (err lists the places).
 */
const char *cfg_default_path(char *err, size_t errlen);

#endif
