/*
 * fetch: the curl multi loop.  See include/fetch.h for what it does; here
 * is how, and why.
 *
 * Threads.  Only the thread in fetch_run() touches curl handles.  Other
 * threads reach it through two thread-safe doors: fetch_wakeup() (a worker
 * popped a job, so the queue has room again) and fetch_stop(); both set
 * state and call curl_multi_wakeup(), which interrupts curl_multi_poll().
 *
 * Backpressure.  A transfer may start only while in_flight + queued is below
 * the queue's capacity, i.e. every running transfer has a queue slot
 * reserved.  So a finished download can always be handed over without
 * waiting, the loop never blocks on the workers, and when the workers fall
 * behind new transfers simply stop starting while running ones go on.
 *
 * Politeness.  libcurl's CURLMOPT_MAX_HOST_CONNECTIONS counts connections,
 * not requests (HTTP/2 multiplexes many requests on one), so the per-host
 * cap is kept here by counting requests per host name.  A URL whose host is
 * saturated waits in a small deferred list (bounded, FIFO) and the list is
 * not read further while that is full: memory stays bounded by what is in
 * flight, deferred or queued, never by the list's length.
 *
 * File lifecycle.  incoming/<name>.part while streaming; renamed to
 * incoming/<name> only after curl reports success with a 2xx status (curl
 * itself fails a body shorter than its Content-Length); unlinked on any
 * failure.  The .part name never reaches a worker.
 */
#include "fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "job.h"
#include "log.h"

typedef struct host {
	struct host *next;
	int active;             /* requests in flight */
	char name[];
} host;

typedef struct xfer {
	struct xfer *prev, *next;       /* in fetch.running while in flight */
	CURL *easy;
	fetch *f;
	host *host;
	char *url;
	char *part, *final;     /* incoming/<name>.part, incoming/<name> */
	int fd;
	long port;              /* from the URL, for messages */
	uint64_t bytes;
	int too_large, write_errno;
	struct timespec started;
	char name[NAME_MAX_OUT];
	char errbuf[CURL_ERROR_SIZE];
} xfer;

struct fetch {
	const cfg *c;
	urllist *lists;
	names *reg;
	jobq *q;
	stats *st;
	CURLM *multi;
	CURLU *urlh;            /* reused parser for host names */
	host *hosts;
	xfer *running;          /* transfers in flight, to abandon on stop */
	xfer **deferred;
	int ndeferred, max_deferred;
	int in_flight;
	int lists_done;
	atomic_int stop;
	long done_ok;
	struct timespec t0;
};

static double
since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

fetch *
fetch_new(const cfg *c, urllist *lists, names *reg, jobq *q, stats *st, char *err, size_t errlen)
{
	fetch *f = calloc(1, sizeof *f);

	if (!f)
		goto oom;
	f->c = c;
	f->lists = lists;
	f->reg = reg;
	f->q = q;
	f->st = st;
	f->max_deferred = c->connections * 4;
	if (!(f->deferred = calloc((size_t)f->max_deferred, sizeof *f->deferred)))
		goto oom;
	if (!(f->multi = curl_multi_init()) || !(f->urlh = curl_url())) {
		snprintf(err, errlen, "cannot initialise libcurl");
		goto fail;
	}
	curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->connections);
	curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->per_host);
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	/* keep a connection per slot alive for reuse between transfers */
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)c->connections);
	return f;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	fetch_free(f);
	return NULL;
}

static void xfer_free(xfer *x);

void
fetch_free(fetch *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->ndeferred; i++)
		xfer_free(f->deferred[i]);
	while (f->hosts) {
		host *h = f->hosts;
		f->hosts = h->next;
		free(h);
	}
	free(f->deferred);
	curl_url_cleanup(f->urlh);
	if (f->multi)
		curl_multi_cleanup(f->multi);
	free(f);
}

void
fetch_stop(fetch *f)
{
	atomic_store(&f->stop, 1);
	curl_multi_wakeup(f->multi);
}

void
fetch_wakeup(void *arg)
{
	fetch *f = arg;

	curl_multi_wakeup(f->multi);
}

/* --- hosts ------------------------------------------------------------- */

static host *
host_get(fetch *f, const char *name)
{
	host *h;
	size_t len = strlen(name);

	for (h = f->hosts; h; h = h->next)
		if (strcmp(h->name, name) == 0)
			return h;
	if (!(h = calloc(1, sizeof *h + len + 1)))
		return NULL;
	memcpy(h->name, name, len + 1);
	h->next = f->hosts;
	f->hosts = h;
	return h;
}

/* Forget a host nobody uses or waits for, so the list stays as short as
 * the set of hosts in flight or deferred. */
static void
host_forget_if_idle(fetch *f, host *h)
{
	host **pp;

	if (h->active > 0)
		return;
	for (int i = 0; i < f->ndeferred; i++)
		if (f->deferred[i]->host == h)
			return;
	for (pp = &f->hosts; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			free(h);
			return;
		}
}

static void
host_release(fetch *f, host *h)
{
	h->active--;
	host_forget_if_idle(f, h);
}

/* --- transfers ----------------------------------------------------------- */

static void
xfer_free(xfer *x)
{
	if (!x)
		return;
	if (x->fd >= 0)
		close(x->fd);
	if (x->easy)
		curl_easy_cleanup(x->easy);
	free(x->url);
	free(x->part);
	free(x->final);
	free(x);
}

/* Record the failure and remove the partial file. */
static void
xfer_fail(fetch *f, xfer *x, const char *reason)
{
	if (x->part)
		unlink(x->part);
	log_failure(x->url, reason);
	STAT_ADD(f->st, failed, 1);
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	xfer *x = arg;
	size_t len = size * nmemb, off = 0;

	/* counted on decoded bytes, whatever Content-Length said */
	if (x->bytes + len > x->f->c->max_bytes) {
		x->too_large = 1;
		return 0;
	}
	while (off < len) {
		ssize_t n = write(x->fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			x->write_errno = errno;
			return 0;
		}
		off += (size_t)n;
	}
	x->bytes += len;
	STAT_ADD(x->f->st, bytes, (long long)len);
	return len;
}

/* Build an xfer for a URL read from a list: parse it, name it. */
static xfer *
xfer_new(fetch *f, const char *url, int *duplicate)
{
	xfer *x = NULL;
	char *hostname = NULL, *port = NULL, err[256], stem[NAME_STEM_MAX + 1], ext[NAME_EXT_MAX + 1];
	CURLUcode uc;
	size_t plen;
	int r;

	*duplicate = 0;
	uc = curl_url_set(f->urlh, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc == CURLUE_OK)
		uc = curl_url_get(f->urlh, CURLUPART_HOST, &hostname, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(f->urlh, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	if (uc != CURLUE_OK) {
		snprintf(err, sizeof err, "invalid URL: %s", curl_url_strerror(uc));
		log_failure(url, err);
		STAT_ADD(f->st, failed, 1);
		goto out;
	}
	name_from_url(url, stem, ext);
	if (!(x = calloc(1, sizeof *x)))
		goto oom;
	x->fd = -1;
	x->f = f;
	x->port = strtol(port, NULL, 10);
	r = names_claim(f->reg, url, stem, x->name, err, sizeof err);
	if (r == 1) {
		*duplicate = 1;
		log_msg(LOG_INFO, "duplicate %s: already in this run, done once", url);
		STAT_ADD(f->st, duplicates, 1);
		goto drop;
	}
	if (r < 0) {
		log_failure(url, err);
		STAT_ADD(f->st, failed, 1);
		goto drop;
	}
	plen = strlen(f->c->incoming) + strlen(x->name) + strlen(ext) + 8;
	x->url = strdup(url);
	x->final = malloc(plen);
	x->part = malloc(plen);
	if (!x->url || !x->final || !x->part || !(x->host = host_get(f, hostname)))
		goto oom;
	snprintf(x->final, plen, "%s/%s%s%s", f->c->incoming, x->name, *ext ? "." : "", ext);
	snprintf(x->part, plen, "%s.part", x->final);
	goto out;
oom:
	log_failure(url, "out of memory");
	STAT_ADD(f->st, failed, 1);
drop:
	xfer_free(x);
	x = NULL;
out:
	curl_free(hostname);
	curl_free(port);
	return x;
}

static int
xfer_start(fetch *f, xfer *x)
{
	const cfg *c = f->c;
	CURL *e;
	char reason[512];

	x->fd = open(x->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (x->fd < 0) {
		snprintf(reason, sizeof reason, "cannot create %s: %s", x->part, strerror(errno));
		goto fail;
	}
	if (!(e = x->easy = curl_easy_init())) {
		snprintf(reason, sizeof reason, "cannot create a transfer (libcurl)");
		goto fail;
	}
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)c->max_redirects);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->connect_timeout);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, c->timeout);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->low_speed_time);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_bytes);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
	/* HTTP/2 over TLS when the server offers it: later transfers to that
	 * host multiplex on its connection.  No CURLOPT_PIPEWAIT: it makes every
	 * new transfer wait for a host's pending response, which serialises a
	 * host that answers slowly or closes connections (curl issue 15838). */
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
		snprintf(reason, sizeof reason, "cannot start the transfer (libcurl)");
		goto fail;
	}
	clock_gettime(CLOCK_MONOTONIC, &x->started);
	x->next = f->running;
	if (f->running)
		f->running->prev = x;
	f->running = x;
	x->host->active++;
	f->in_flight++;
	STAT_ADD(f->st, in_flight, 1);
	return 0;
fail:
	xfer_fail(f, x, reason);
	host_forget_if_idle(f, x->host);
	xfer_free(x);
	return -1;
}

static void
describe_failure(const xfer *x, CURLcode rc, long code, char *out, size_t outlen)
{
	const cfg *c = x->f->c;
	double connect = 0, total = 0;
	curl_off_t clen = -1;

	curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME, &connect);
	curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &total);
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	if (x->too_large) {
		snprintf(out, outlen, "too large: more than %llu bytes (max_bytes)",
		         (unsigned long long)c->max_bytes);
		return;
	}
	if (x->write_errno) {
		snprintf(out, outlen, "cannot write %s: %s", x->part, strerror(x->write_errno));
		return;
	}
	switch (rc) {
	case CURLE_OK:
		if (code < 200 || code >= 300)
			snprintf(out, outlen, "HTTP %ld", code);
		else
			snprintf(out, outlen, "empty body (HTTP %ld)", code);
		return;
	case CURLE_HTTP_RETURNED_ERROR:
		snprintf(out, outlen, "HTTP %ld", code);
		return;
	case CURLE_FILESIZE_EXCEEDED:
		snprintf(out, outlen, "too large: Content-Length %lld > max_bytes %llu",
		         (long long)clen, (unsigned long long)c->max_bytes);
		return;
	case CURLE_OPERATION_TIMEDOUT:
		if (connect <= 0)
			snprintf(out, outlen, "connect timeout after %ld s", c->connect_timeout);
		else if (total + 0.5 >= (double)c->timeout)
			snprintf(out, outlen, "timeout after %ld s", c->timeout);
		else
			snprintf(out, outlen, "stalled: under %ld bytes/s for %ld s",
			         c->low_speed_limit, c->low_speed_time);
		return;
	case CURLE_TOO_MANY_REDIRECTS:
		snprintf(out, outlen, "too many redirects (max_redirects %d)", c->max_redirects);
		return;
	case CURLE_UNSUPPORTED_PROTOCOL:
		snprintf(out, outlen, "redirect to a non-http(s) URL refused");
		return;
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(out, outlen, "cannot resolve host %s", x->host->name);
		return;
	case CURLE_COULDNT_CONNECT: {
		long oserr = 0;
		curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
		snprintf(out, outlen, "cannot connect to %s port %ld: %s", x->host->name, x->port,
		         oserr ? strerror((int)oserr) : x->errbuf);
		return;
	}
	case CURLE_PARTIAL_FILE:
		snprintf(out, outlen, "truncated body: got %llu of %lld bytes",
		         (unsigned long long)x->bytes, (long long)clen);
		return;
	default:
		snprintf(out, outlen, "%s%s%s", curl_easy_strerror(rc),
		         x->errbuf[0] ? ": " : "", x->errbuf);
		return;
	}
}

/* Take x out of the multi handle and the running list. */
static void
running_remove(fetch *f, xfer *x)
{
	curl_multi_remove_handle(f->multi, x->easy);
	if (x->prev)
		x->prev->next = x->next;
	else
		f->running = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
	f->in_flight--;
	STAT_ADD(f->st, in_flight, -1);
}

/* A transfer ended: hand the file to the workers or record why not. */
static void
xfer_done(fetch *f, xfer *x, CURLcode rc)
{
	long code = 0;
	char *ctype = NULL, reason[512];
	job *j;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ctype);
	running_remove(f, x);
	if (close(x->fd) < 0 && !x->write_errno && rc == CURLE_OK)
		x->write_errno = errno;
	x->fd = -1;
	if (rc != CURLE_OK || code < 200 || code >= 300 || x->bytes == 0 || x->write_errno) {
		describe_failure(x, rc, code, reason, sizeof reason);
		xfer_fail(f, x, reason);
		goto out;
	}
	if (rename(x->part, x->final) < 0) {
		snprintf(reason, sizeof reason, "cannot rename %s: %s", x->part, strerror(errno));
		xfer_fail(f, x, reason);
		goto out;
	}
	/* room is reserved for every transfer in flight (see top), so this
	 * push only fails when the queue was closed under us */
	if (!(j = job_new(x->url, x->final, ctype, 1, x->name)) || jobq_push(f->q, j) < 0) {
		job_free(j);
		unlink(x->final);
		log_failure(x->url, "internal error: resize queue unavailable");
		STAT_ADD(f->st, failed, 1);
		goto out;
	}
	f->done_ok++;
	STAT_ADD(f->st, downloaded, 1);
	log_msg(LOG_INFO, "downloaded %s -> %s (%llu bytes, %.2f s)", x->url, x->final,
	        (unsigned long long)x->bytes, since(&x->started));
out:
	host_release(f, x->host);
	xfer_free(x);
}

/* --- the loop ----------------------------------------------------------- */

/* The next URL from the lists as an xfer, or NULL when they are exhausted.
 * Unusable lines are recorded and skipped here. */
static xfer *
next_from_lists(fetch *f)
{
	const char *line, *reason;
	int duplicate;
	xfer *x;

	for (;;) {
		switch (urllist_next(f->lists, &line, &reason)) {
		case URLLIST_END:
			f->lists_done = 1;
			return NULL;
		case URLLIST_ERROR:
			log_msg(LOG_ERROR, "%s", reason);
			STAT_ADD(f->st, failed, 1);
			continue;
		case URLLIST_BAD:
			STAT_ADD(f->st, urls, 1);
			log_failure(line, reason);
			STAT_ADD(f->st, failed, 1);
			continue;
		case URLLIST_URL:
			STAT_ADD(f->st, urls, 1);
			if ((x = xfer_new(f, line, &duplicate)))
				return x;
			continue;
		}
	}
}

/* First deferred transfer whose host has room again, removed from the list. */
static xfer *
take_deferred(fetch *f)
{
	for (int i = 0; i < f->ndeferred; i++) {
		xfer *x = f->deferred[i];
		if (x->host->active < f->c->per_host) {
			memmove(&f->deferred[i], &f->deferred[i + 1],
			        (size_t)(f->ndeferred - i - 1) * sizeof *f->deferred);
			f->ndeferred--;
			return x;
		}
	}
	return NULL;
}

static void
start_transfers(fetch *f)
{
	size_t cap = jobq_capacity(f->q);

	while (f->in_flight < f->c->connections
	       && (size_t)f->in_flight + jobq_len(f->q) < cap) {
		xfer *x = take_deferred(f);
		if (!x) {
			if (f->lists_done || f->ndeferred >= f->max_deferred)
				return;
			if (!(x = next_from_lists(f)))
				return;
			if (x->host->active >= f->c->per_host) {
				f->deferred[f->ndeferred++] = x;
				continue;
			}
		}
		xfer_start(f, x);
	}
}

/* Stop: every transfer in flight or deferred is abandoned and recorded. */
static void
abandon_all(fetch *f)
{
	while (f->running) {
		xfer *x = f->running;
		running_remove(f, x);
		xfer_fail(f, x, "interrupted before the download finished");
		host_release(f, x->host);
		xfer_free(x);
	}
	for (int i = 0; i < f->ndeferred; i++) {
		xfer_fail(f, f->deferred[i], "interrupted before the download started");
		xfer_free(f->deferred[i]);
	}
	f->ndeferred = 0;
}

int
fetch_run(fetch *f)
{
	int running = 0, rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &f->t0);
	for (;;) {
		CURLMsg *m;
		int left;

		if (atomic_load(&f->stop)) {
			abandon_all(f);
			break;
		}
		start_transfers(f);
		if (f->in_flight == 0 && f->lists_done && f->ndeferred == 0)
			break;
		if (curl_multi_poll(f->multi, NULL, 0, 1000, NULL) != CURLM_OK
		    || curl_multi_perform(f->multi, &running) != CURLM_OK) {
			log_msg(LOG_ERROR, "libcurl multi loop failed");
			rc = -1;
			atomic_store(&f->stop, 1);
			continue;
		}
		while ((m = curl_multi_info_read(f->multi, &left))) {
			xfer *x = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			xfer_done(f, x, m->data.result);
		}
	}
	log_msg(LOG_INFO, "downloaded %ld images in %.2f seconds", f->done_ok, since(&f->t0));
	return rc;
}
