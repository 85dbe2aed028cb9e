/*
 * config: defaults, INI file, --set overrides; see include/config.h.
 *
 * One table describes every key (section, name, type, bounds, where it is
 * stored), so the INI handler, --set and the error messages cannot drift
 * apart; the known sections are the table's too.  inih does the lexing; we feed it through our own line reader so we
 * know the line number of every key (Debian's inih is built without
 * INI_HANDLER_LINENO) and can reject unknown [section] headers even when
 * they hold no keys.  inih also takes a NULL from the reader for the end of
 * the file, so the reader remembers a read error (a directory given as the
 * file fails its first read with EISDIR) and cfg_load reports it: a config
 * that could not be read whole is never taken for a shorter one.
 *
 * paths.* default to ../incoming, ../outgoing and ../logs, resolved against
 * the config file's directory like a relative value written in it: the
 * layout of the source tree (config/ beside incoming/, outgoing/, logs/),
 * so leaving a key out of config/thumbd.ini changes nothing and a file
 * without [paths] writes to the same place whatever the current directory.
 * They stay NULL until the file's directory is known (cfg_load); a cfg that
 * read no file gets them relative to the current directory (cfg_finish),
 * like --set values.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { T_PATH, T_OPTPATH, T_PATHS, T_INT, T_BYTES, T_SECS, T_STR, T_OPTSTR, T_SIZES, T_FORMAT,
               T_LOG } key_type;

typedef struct key_def {
	const char *section, *name;
	key_type type;
	long long min, max;
	size_t off;             /* offsetof into struct cfg */
	int width;              /* sizeof the integer field (T_INT) */
} key_def;

#define F(field) offsetof(cfg, field)
#define W(field) (int)sizeof(((cfg *)0)->field)
static const key_def keys[] = {
	{ "paths", "incoming", T_PATH, 0, 0, F(incoming), 0 },
	{ "paths", "outgoing", T_PATH, 0, 0, F(outgoing), 0 },
	{ "paths", "logs", T_PATH, 0, 0, F(logs), 0 },
	{ "download", "connections", T_INT, 1, 1024, F(connections), W(connections) },
	{ "download", "per_host", T_INT, 1, 1024, F(per_host), W(per_host) },
	{ "download", "per_host_start", T_INT, 1, 1024, F(per_host_start), W(per_host_start) },
	{ "download", "connect_timeout", T_INT, 1, 3600, F(connect_timeout), W(connect_timeout) },
	{ "download", "timeout", T_INT, 1, 86400, F(timeout), W(timeout) },
	{ "download", "low_speed_limit", T_INT, 0, 1LL << 30, F(low_speed_limit), W(low_speed_limit) },
	{ "download", "low_speed_time", T_INT, 1, 3600, F(low_speed_time), W(low_speed_time) },
	{ "download", "max_bytes", T_BYTES, 1, 1LL << 40, F(max_bytes), 0 },
	{ "download", "max_redirects", T_INT, 0, 50, F(max_redirects), W(max_redirects) },
	{ "download", "user_agent", T_STR, 0, 0, F(user_agent), 0 },
	{ "download", "ca_file", T_OPTPATH, 0, 0, F(ca_file), 0 },
	{ "download", "retries", T_INT, 0, 20, F(retries), W(retries) },
	{ "download", "retry_delay", T_SECS, 0, 3600000, F(retry_delay_ms), 0 },
	{ "download", "max_retry_wait", T_SECS, 0, 3600000, F(max_retry_wait_ms), 0 },
	{ "download", "host_delay", T_SECS, 0, 3600000, F(host_delay_ms), 0 },
	{ "download", "host_max_failures", T_INT, 0, 1000000, F(host_max_failures), W(host_max_failures) },
	{ "resize", "workers", T_INT, 0, 256, F(workers), W(workers) },
	{ "resize", "decode_memory", T_BYTES, 0, 1LL << 40, F(decode_memory), 0 },
	{ "thumbnails", "sizes", T_SIZES, 1, 8192, F(sizes), 0 },
	{ "thumbnails", "format", T_FORMAT, 0, 0, F(format), 0 },
	{ "thumbnails", "jpeg_quality", T_INT, 1, 100, F(jpeg_quality), W(jpeg_quality) },
	{ "thumbnails", "webp_quality", T_INT, 0, 100, F(webp_quality), W(webp_quality) },
	{ "thumbnails", "png_level", T_INT, 0, 9, F(png_level), W(png_level) },
	{ "image", "max_pixels", T_BYTES, 1, 1LL << 40, F(max_pixels), 0 },
	{ "daemon", "watch", T_PATHS, 0, 0, F(watch), 0 },
	{ "daemon", "log", T_LOG, 0, 0, F(log_target), 0 },
	{ "daemon", "metrics", T_OPTSTR, 0, 0, F(metrics), 0 },
	{ "daemon", "metrics_interval", T_SECS, 100, 3600000, F(metrics_interval_ms), 0 },
	{ "daemon", "retry_kept", T_SECS, 0, 3600000, F(retry_kept_ms), 0 },
};
#undef F
#undef W
#define NKEYS (sizeof keys / sizeof keys[0])

cfg *
cfg_new(void)
{
	cfg *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	/* incoming, outgoing, logs: NULL until default_paths() */
	c->user_agent = strdup("thumbd/" THUMBD_VERSION);
	c->metrics = strdup("thumbd.prom");
	if (!c->user_agent || !c->metrics) {
		cfg_free(c);
		return NULL;
	}
	c->connections = 128;
	c->per_host = 128;
	c->per_host_start = 8;
	c->connect_timeout = 10;
	c->timeout = 60;
	c->low_speed_limit = 1024;
	c->low_speed_time = 20;
	c->max_bytes = 50ULL << 20;
	c->max_redirects = 5;
	c->retries = 3;
	c->retry_delay_ms = 1000;
	c->max_retry_wait_ms = 60000;
	c->host_delay_ms = 0;
	c->host_max_failures = 10;
	c->workers = 0;
	c->decode_memory = 128ULL << 20;
	c->sizes[0] = 32;
	c->sizes[1] = 64;
	c->sizes[2] = 200;
	c->nsizes = 3;
	c->format = IMG_UNKNOWN;
	c->jpeg_quality = 85;
	c->webp_quality = 80;
	c->png_level = 6;
	c->max_pixels = 100000000ULL;
	c->log_target = CFG_LOG_AUTO;
	c->metrics_interval_ms = 5000;
	c->retry_kept_ms = 60000;
	return c;
}

static void
free_paths(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void
cfg_free(cfg *c)
{
	if (!c)
		return;
	free(c->file);
	free(c->incoming);
	free(c->outgoing);
	free(c->logs);
	free(c->user_agent);
	free(c->ca_file);
	free_paths(c->watch);
	free(c->metrics);
	free(c->metrics_path);
	free(c);
}

static const key_def *
find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* The sections are those of the key table: index of the first key of
 * section s, or -1. */
static int
section_index(const char *s)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, s) == 0)
			return (int)i;
	return -1;
}

static int
known_section(const char *s)
{
	return section_index(s) >= 0;
}

/* "paths, download, ...": every section, in the table's order, into buf. */
static const char *
section_list(char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < NKEYS && off < len; i++) {
		int n;
		if (section_index(keys[i].section) != (int)i)
			continue;       /* not the section's first key */
		n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", keys[i].section);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}

/* Integer with an optional K/M/G/T suffix (powers of 1024, "iB"/"B" allowed).
 * -1 not a number, -2 a number too large for any key (said as out of range,
 * not as "not a number"). */
static int
parse_number(const char *v, int allow_suffix, long long *out)
{
	char *end;
	long long n;
	int shift = 0, overflow = 0;

	errno = 0;
	if (*v == '-' && isdigit((unsigned char)v[1]))
		return -2;      /* a number, below every key's range */
	if (!isdigit((unsigned char)*v))
		return -1;
	n = strtoll(v, &end, 10);
	if (errno == ERANGE)
		overflow = 1;
	else if (errno)
		return -1;
	if (allow_suffix && *end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		case 'T': shift = 40; break;
		default: return -1;
		}
		end++;
		if (toupper((unsigned char)*end) == 'I')
			end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
	}
	if (*end)
		return -1;
	if (overflow || (shift && n > (LLONG_MAX >> shift)))
		return -2;
	*out = n << shift;
	return 0;
}

/* Seconds with up to three decimals ("0.25") into milliseconds.  -1 not
 * a number, -2 a number outside every key's range (negative, or past
 * 10^8 s). */
static int
parse_seconds(const char *v, long long *ms)
{
	long long whole = 0, frac = 0;
	int digits = 0, big = 0;
	const char *p = v;

	if (*p == '-' && (isdigit((unsigned char)p[1]) || p[1] == '.'))
		big = 1, p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole <= 100000000)
			whole = whole * 10 + (*p - '0');
		if (whole > 100000000)
			big = 1;
	}
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++)
			if (digits < 3) {
				frac = frac * 10 + (*p - '0');
				digits++;
			}
	}
	if (*p)
		return -1;
	if (big)
		return -2;
	while (digits++ < 3)
		frac *= 10;
	*ms = whole * 1000 + frac;
	return 0;
}

static char *
resolve_path(const char *base_dir, const char *v)
{
	char *p;
	size_t n;

	if (v[0] == '/' || !base_dir)
		return strdup(v);
	n = strlen(base_dir) + strlen(v) + 2;
	if (!(p = malloc(n)))
		return NULL;
	snprintf(p, n, "%s/%s", base_dir, v);
	return p;
}

/* The paths.* neither the file nor --set gave, against base_dir (NULL =
 * the current directory).  0 / -1 when out of memory. */
static int
default_paths(cfg *c, const char *base_dir)
{
	if (!c->incoming && !(c->incoming = resolve_path(base_dir, "../incoming")))
		return -1;
	if (!c->outgoing && !(c->outgoing = resolve_path(base_dir, "../outgoing")))
		return -1;
	if (!c->logs && !(c->logs = resolve_path(base_dir, "../logs")))
		return -1;
	return 0;
}

/* Store value v for key k.  Returns NULL on success, else a static-ish
 * message written into msg. */
static const char *
set_value(cfg *c, const key_def *k, const char *v, const char *base_dir,
          char *msg, size_t msglen)
{
	char *base = (char *)c + k->off;
	long long n;
	int rc;

	switch (k->type) {
	case T_OPTPATH:
		if (!*v) {
			free(*(char **)base);
			*(char **)base = NULL;
			return NULL;
		}
		/* FALLTHROUGH */
	case T_PATH:
	case T_STR: {
		char *s;
		if (!*v) {
			snprintf(msg, msglen, "must not be empty");
			return msg;
		}
		s = k->type == T_STR ? strdup(v) : resolve_path(base_dir, v);
		if (!s)
			return "out of memory";
		free(*(char **)base);
		*(char **)base = s;
		return NULL;
	}
	case T_OPTSTR: {
		char *s = *v ? strdup(v) : NULL;
		if (*v && !s)
			return "out of memory";
		free(*(char **)base);
		*(char **)base = s;
		return NULL;
	}
	case T_PATHS: {
		/* whitespace-separated; each resolved like a single path */
		size_t cnt = 0, cap = 4;
		char **list = calloc(cap + 1, sizeof *list);
		const char *p = v;
		if (!list)
			return "out of memory";
		while (*p) {
			size_t len;
			char item[4096];
			p += strspn(p, " \t");
			if (!(len = strcspn(p, " \t")))
				break;
			if (len >= sizeof item) {
				free_paths(list);
				snprintf(msg, msglen, "a path longer than %zu bytes", sizeof item - 1);
				return msg;
			}
			memcpy(item, p, len);
			item[len] = 0;
			p += len;
			if (cnt == cap) {
				char **bigger = realloc(list, (cap * 2 + 1) * sizeof *list);
				if (!bigger) {
					free_paths(list);
					return "out of memory";
				}
				list = bigger;
				cap *= 2;
			}
			if (!(list[cnt] = resolve_path(base_dir, item))) {
				free_paths(list);
				return "out of memory";
			}
			list[++cnt] = NULL;
		}
		free_paths(*(char ***)base);
		*(char ***)base = list;
		c->nwatch = (int)cnt;
		return NULL;
	}
	case T_LOG:
		if (strcmp(v, "auto") == 0)
			c->log_target = CFG_LOG_AUTO;
		else if (strcmp(v, "file") == 0)
			c->log_target = CFG_LOG_FILE;
		else if (strcmp(v, "stderr") == 0)
			c->log_target = CFG_LOG_STDERR;
		else {
			snprintf(msg, msglen, "\"%s\" is not auto, file or stderr", v);
			return msg;
		}
		return NULL;
	case T_INT:
	case T_BYTES:
		if ((rc = parse_number(v, k->type == T_BYTES, &n)) == -2) {
			snprintf(msg, msglen, "%s is out of range (%lld..%lld)", v, k->min, k->max);
			return msg;
		}
		if (rc < 0) {
			snprintf(msg, msglen, "\"%s\" is not a %s", v,
			         k->type == T_BYTES ? "number (K, M, G suffixes allowed)" : "whole number");
			return msg;
		}
		if (n < k->min || n > k->max) {
			snprintf(msg, msglen, "%s is out of range (%lld..%lld)", v, k->min, k->max);
			return msg;
		}
		if (k->type == T_BYTES)
			*(uint64_t *)base = (uint64_t)n;
		else if (k->width == (int)sizeof(int))
			*(int *)base = (int)n;
		else
			*(long *)base = (long)n;
		return NULL;
	case T_SECS:
		if ((rc = parse_seconds(v, &n)) == -1) {
			snprintf(msg, msglen, "\"%s\" is not a number of seconds (e.g. 2 or 0.25)", v);
			return msg;
		}
		if (rc < 0 || n < k->min || n > k->max) {
			snprintf(msg, msglen, "%s s is out of range (%g..%g s)", v, k->min / 1000.0, k->max / 1000.0);
			return msg;
		}
		*(long *)base = (long)n;
		return NULL;
	case T_SIZES: {
		int sizes[CFG_MAX_SIZES], count = 0;
		const char *p = v;
		while (*p) {
			char item[32];
			size_t len;
			while (*p == ' ' || *p == '\t')
				p++;
			len = strcspn(p, ",");
			while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
				len--;
			if (len > 0 && len < sizeof item) {
				memcpy(item, p, len);
				item[len] = 0;
			}
			if (len >= sizeof item && strspn(p, "0123456789") >= len) {
				snprintf(msg, msglen, "width %.*s is out of range (%lld..%lld)", (int)len, p,
				         k->min, k->max);
				return msg;
			}
			rc = len > 0 && len < sizeof item ? parse_number(item, 0, &n) : -1;
			if (rc == -2) {
				snprintf(msg, msglen, "width %s is out of range (%lld..%lld)", item, k->min, k->max);
				return msg;
			}
			if (rc < 0) {
				snprintf(msg, msglen, "\"%s\" is not a comma-separated list of widths", v);
				return msg;
			}
			if (n < k->min || n > k->max) {
				snprintf(msg, msglen, "width %lld is out of range (%lld..%lld)", n, k->min, k->max);
				return msg;
			}
			for (int i = 0; i < count; i++)
				if (sizes[i] == n) {
					snprintf(msg, msglen, "width %lld is listed twice", n);
					return msg;
				}
			if (count == CFG_MAX_SIZES) {
				snprintf(msg, msglen, "more than %d widths", CFG_MAX_SIZES);
				return msg;
			}
			sizes[count++] = (int)n;
			p += strcspn(p, ",");
			if (*p == ',' && !*++p) {
				snprintf(msg, msglen, "\"%s\" ends with a comma", v);
				return msg;
			}
		}
		if (count == 0) {
			snprintf(msg, msglen, "needs at least one width");
			return msg;
		}
		memcpy(c->sizes, sizes, sizeof sizes);
		c->nsizes = count;
		return NULL;
	}
	case T_FORMAT:
		if (strcmp(v, "source") == 0)
			c->format = IMG_UNKNOWN;
		else if (strcmp(v, "jpeg") == 0 || strcmp(v, "jpg") == 0)
			c->format = IMG_JPEG;
		else if (strcmp(v, "png") == 0)
			c->format = IMG_PNG;
		else if (strcmp(v, "webp") == 0)
			c->format = IMG_WEBP;
		else {
			snprintf(msg, msglen, "\"%s\" is not one of source, jpeg, png, webp", v);
			return msg;
		}
		return NULL;
	}
	return "internal error: unknown key type";
}

/* --- INI file ---------------------------------------------------------- */

typedef struct load_ctx {
	cfg *c;
	FILE *fp;
	const char *path;
	char *base_dir;
	int line;
	int read_errno;         /* the read that failed, 0 = none (inih saw EOF) */
	int errors;
	int set_on[NKEYS];      /* line that set each key, 0 = not set in this file */
	int cont;               /* this line is indented: more of the last key's value */
	char *value;            /* the last key's value so far, for such a line */
	char *err;
	size_t errlen, erroff;
} load_ctx;

static void
add_error(load_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
add_error(load_ctx *x, const char *fmt, ...)
{
	va_list ap;
	int n;

	x->errors++;
	if (x->erroff + 1 >= x->errlen)
		return;
	/* line 0: about the file as a whole */
	if (x->line)
		n = snprintf(x->err + x->erroff, x->errlen - x->erroff, "%s%s:%d: ",
		             x->erroff ? "\n" : "", x->path, x->line);
	else
		n = snprintf(x->err + x->erroff, x->errlen - x->erroff, "%s%s: ",
		             x->erroff ? "\n" : "", x->path);
	if (n > 0 && x->erroff + (size_t)n < x->errlen) {
		x->erroff += (size_t)n;
		va_start(ap, fmt);
		n = vsnprintf(x->err + x->erroff, x->errlen - x->erroff, fmt, ap);
		va_end(ap);
	}
	if (n > 0)
		x->erroff += (size_t)n;
	if (x->erroff >= x->errlen)
		x->erroff = x->errlen - 1;
}

/* inih calls this once per physical line before parsing it, so counting here
 * gives the line number of the key the handler sees next.  Section headers
 * are checked here too: inih reports a section only along with a key. */
static char *
read_line(char *buf, int size, void *stream)
{
	load_ctx *x = stream;
	char *s, *e;
	int ch = 0, n = 0, nul = 0, too_long = 0;

	/* getc, not fgets: a NUL byte would hide the rest of the line (and
	 * its newline) from inih */
	while ((ch = getc(x->fp)) != EOF) {
		if (ch == '\n') {
			buf[n++] = '\n';      /* n <= size - 2 here: room for it and the NUL */
			break;
		}
		if (n < size - 2)
			buf[n++] = (char)ch;
		else
			too_long = 1;
		nul |= ch == 0;
	}
	buf[n] = 0;
	if (ch == EOF && ferror(x->fp)) {
		/* NULL is the end of the file to inih; a read error is kept
		 * for cfg_load to report */
		x->read_errno = errno ? errno : EIO;
		return NULL;
	}
	if (ch == EOF && n == 0 && !too_long)
		return NULL;
	x->line++;
	if (too_long || nul) {
		/* inih's line buffer is fixed; a longer line would be split
		 * into bogus ones, and a NUL would cut the line short: drop it
		 * whole and say so */
		if (too_long)
			add_error(x, "line longer than %d bytes", size - 2);
		else
			add_error(x, "a NUL byte in the line (is this a text file?)");
		buf[0] = 0;
		return buf;
	}
	s = buf;
	if (x->line == 1 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;         /* a UTF-8 byte order mark (Notepad): inih skips it too */
	for (; *s == ' ' || *s == '\t'; s++)
		;
	/* inih takes an indented line after a key for more of that key's
	 * value.  An indented "key = value" or [section] is what it looks
	 * like: unindented here.  Any other indented line continues the value,
	 * which on_key allows only for daemon.watch (a list). */
	x->cont = 0;
	if (s > buf && *s && *s != ';' && *s != '#' && *s != '\r' && *s != '\n') {
		if (*s == '[' || strchr(s, '=') || strchr(s, ':'))
			memmove(buf, s, strlen(s) + 1);
		else
			x->cont = 1;
		s = buf;
	}
	if (*s == '[' && (e = strchr(s, ']'))) {
		char name[64], known[128];
		size_t len = (size_t)(e - s - 1);
		if (len < sizeof name) {
			memcpy(name, s + 1, len);
			name[len] = 0;
			if (!known_section(name))
				add_error(x, "unknown section [%s] (known: %s)", name,
				          section_list(known, sizeof known));
		} else {
			add_error(x, "unknown section (name too long)");
		}
	}
	return buf;
}

static int
on_key(void *user, const char *section, const char *name, const char *value)
{
	load_ctx *x = user;
	const key_def *k;
	char msg[256];
	const char *e;

	if (!*section) {
		char known[128];
		add_error(x, "key \"%s\" before any [section] (known: %s)", name,
		          section_list(known, sizeof known));
		return 1;
	}
	if (!known_section(section))
		return 1;       /* the [section] line was reported by read_line */
	if (!(k = find_key(section, name))) {
		add_error(x, "unknown key \"%s\" in [%s]", name, section);
		return 1;
	}
	if (x->cont) {
		/* inih hands the line over as the last key's value again */
		char *more;
		if (k->type != T_PATHS || !x->value) {
			add_error(x, "an indented line continues the value of %s.%s, which takes one value "
			          "(a key starts at the beginning of a line or has \"=\")", section, name);
			return 1;
		}
		size_t n = strlen(x->value) + strlen(value) + 2;
		if (!(more = malloc(n))) {
			add_error(x, "out of memory");
			return 1;
		}
		snprintf(more, n, "%s %s", x->value, value);
		free(x->value);
		x->value = more;
		if ((e = set_value(x->c, k, x->value, x->base_dir, msg, sizeof msg)))
			add_error(x, "%s.%s: %s", section, name, e);
		return 1;
	}
	/* the last one would win, and the first would look in force to
	 * whoever reads the file from the top */
	if (x->set_on[k - keys]) {
		add_error(x, "%s.%s is set twice (first on line %d)", section, name, x->set_on[k - keys]);
		return 1;
	}
	x->set_on[k - keys] = x->line;
	free(x->value);
	x->value = strdup(value);
	if ((e = set_value(x->c, k, value, x->base_dir, msg, sizeof msg)))
		add_error(x, "%s.%s: %s", section, name, e);
	return 1;
}

static char *
dir_of(const char *path)
{
	char *copy = strdup(path), *slash, *abs = NULL;

	if (!copy)
		return NULL;
	slash = strrchr(copy, '/');
	if (!slash)
		strcpy(copy, ".");
	else if (slash == copy)
		slash[1] = 0;
	else
		*slash = 0;
	abs = realpath(copy, NULL);
	if (!abs)
		return copy;
	free(copy);
	return abs;
}

int
cfg_load(cfg *c, const char *path, char *err, size_t errlen)
{
	load_ctx x = { .c = c, .path = path, .err = err, .errlen = errlen };
	int rc = -1, r, last;

	err[0] = 0;
	if (!(x.fp = fopen(path, "r"))) {
		snprintf(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
		goto out;
	}
	if (!(x.base_dir = dir_of(path))) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	free(c->file);
	if (!(c->file = strdup(path)))
		goto out;
	r = ini_parse_stream(read_line, &x, on_key, &x);
	last = x.line;
	if (r > 0) {
		x.line = r;     /* inih's first bad line, not the last one read */
		add_error(&x, "syntax error (expected [section], key = value or a ; comment)");
	} else if (r < 0) {
		add_error(&x, "cannot parse (out of memory)");
	}
	if (x.read_errno) {
		/* the line that could not be read; the file when none was */
		x.line = last ? last + 1 : 0;
		add_error(&x, "cannot read config file: %s", strerror(x.read_errno));
	}
	if (default_paths(c, x.base_dir) < 0) {
		x.line = 0;
		add_error(&x, "out of memory");
	}
	rc = x.errors ? -1 : 0;
out:
	if (x.fp)
		fclose(x.fp);
	free(x.base_dir);
	free(x.value);
	return rc;
}

int
cfg_set(cfg *c, const char *assignment, char *err, size_t errlen)
{
	char section[64], name[64], msg[256];
	const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
	const key_def *k;
	const char *e;

	if (!dot || !eq || dot > eq || (size_t)(dot - assignment) >= sizeof section
	    || (size_t)(eq - dot - 1) >= sizeof name) {
		snprintf(err, errlen, "--set %s: expected SECTION.KEY=VALUE", assignment);
		return -1;
	}
	memcpy(section, assignment, (size_t)(dot - assignment));
	section[dot - assignment] = 0;
	memcpy(name, dot + 1, (size_t)(eq - dot - 1));
	name[eq - dot - 1] = 0;
	if (!(k = find_key(section, name))) {
		snprintf(err, errlen, "--set %s: unknown key %s.%s", assignment, section, name);
		return -1;
	}
	if ((e = set_value(c, k, eq + 1, NULL, msg, sizeof msg))) {
		snprintf(err, errlen, "--set %s: %s.%s: %s", assignment, section, name, e);
		return -1;
	}
	return 0;
}

/* The same directory under two spellings?  Directories that do not exist
 * yet compare by name. */
static int
same_dir(const char *a, const char *b)
{
	char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
	const char *x = ra ? ra : a, *y = rb ? rb : b;
	size_t lx = strlen(x), ly = strlen(y);
	int same;

	while (lx > 1 && x[lx - 1] == '/')
		lx--;
	while (ly > 1 && y[ly - 1] == '/')
		ly--;
	same = lx == ly && memcmp(x, y, lx) == 0;
	free(ra);
	free(rb);
	return same;
}

/* "incoming" or "outgoing" when dir is that directory of c, else NULL. */
static const char *
data_dir(const cfg *c, const char *dir)
{
	return same_dir(dir, c->incoming) ? "incoming" : same_dir(dir, c->outgoing) ? "outgoing" : NULL;
}

int
cfg_finish(cfg *c, char *err, size_t errlen)
{
	const char *clash;

	if (default_paths(c, NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* incoming/ is thumbd's scratch space, cleaned at start; outgoing/ is
	 * the product; sharing one directory would mix the two */
	if (same_dir(c->incoming, c->outgoing)) {
		snprintf(err, errlen, "%s: paths.incoming and paths.outgoing must be different directories (both %s)",
		         c->file ? c->file : "config", c->incoming);
		return -1;
	}
	/* logs/ beside them, not in them: the daemon takes any file in
	 * incoming/ for a hand-off image (its own log and metrics included),
	 * and outgoing/ is published as it is (failed.tsv names every URL) */
	if ((clash = data_dir(c, c->logs))) {
		snprintf(err, errlen, "%s: paths.logs and paths.%s must be different directories (both %s)",
		         c->file ? c->file : "config", clash, c->logs);
		return -1;
	}
	/* curl would fail every https URL with it, each recorded as that URL's failure */
	if (c->ca_file && access(c->ca_file, R_OK) != 0) {
		snprintf(err, errlen, "%s: download.ca_file: cannot read %s: %s", c->file ? c->file : "config",
		         c->ca_file, strerror(errno));
		return -1;
	}
	if (c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n < 1 ? 1 : n > 256 ? 256 : (int)n;
	}
	free(c->metrics_path);
	c->metrics_path = NULL;
	if (c->metrics) {
		size_t n = strlen(c->logs) + strlen(c->metrics) + 2;
		if (!(c->metrics_path = malloc(n))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		snprintf(c->metrics_path, n, "%s/%s", c->metrics[0] == '/' ? "" : c->logs, c->metrics);
		if (c->metrics[0] == '/')
			memmove(c->metrics_path, c->metrics_path + 1, strlen(c->metrics_path));
		char *slash = strrchr(c->metrics_path, '/'), *dir = NULL;
		size_t dlen = slash == c->metrics_path ? 1 : (size_t)(slash - c->metrics_path);
		if (slash && !(dir = strndup(c->metrics_path, dlen))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		clash = dir ? data_dir(c, dir) : NULL;
		free(dir);
		if (clash) {
			snprintf(err, errlen, "%s: daemon.metrics: %s is in paths.incoming or paths.outgoing; "
			         "it must be elsewhere (by default it is in paths.logs)",
			         c->file ? c->file : "config", c->metrics_path);
			return -1;
		}
	}
	return 0;
}

const char *
cfg_default_path(char *err, size_t errlen)
{
	static const char *const fixed[] = { "config/thumbd.ini", SYSCONFDIR "/thumbd/thumbd.ini" };
	const char *env = getenv("THUMBD_CONFIG");

	if (env && *env)
		return env;
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (access(fixed[i], R_OK) == 0)
			return fixed[i];
	snprintf(err, errlen, "no config file found: tried $THUMBD_CONFIG, ./%s and %s (use -c FILE)",
	         fixed[0], fixed[1]);
	return NULL;
}
