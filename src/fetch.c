/*
 * fetch: the curl multi loop.  See include/fetch.h for what it does; here
 * is how, and why.
 *
 * Threads.  Only the thread in fetch_run() touches curl handles.  Other
 * threads reach it through thread-safe doors: fetch_wakeup() (a worker
 * popped a job, so the queue has room again), fetch_stop() and a few
 * more; each sets state and writes to an eventfd the loop waits on.
 *
 * Event loop.  libcurl's multi_socket API on one epoll set: curl says
 * which sockets to watch for what (on_socket) and when it next needs the
 * clock (on_timer), and is called for just the sockets that are ready.
 * curl_multi_poll + curl_multi_perform, the simpler API, visits every
 * transfer on every wakeup and polls each one's socket again (one poll()
 * system call per transfer); with 128 transfers in flight that was 65,000
 * polls for 2,000 small downloads and a sixth of all of thumbd's CPU time
 * in this thread (bench/NOTES.md).  The cost now follows the events, not
 * the number of transfers in flight.
 *
 * Backpressure.  A transfer may start only while in_flight + queued is below
 * the queue's capacity, i.e. every running transfer has a queue slot
 * reserved.  So a finished download can always be handed over without
 * waiting, the loop never blocks on the workers, and when the workers fall
 * behind new transfers simply stop starting while running ones go on.
 *
 * Pending.  A URL that cannot start now waits in one small FIFO: its host
 * has a window's worth of requests in flight, or must be left alone for a
 * while (host_delay spacing, a Retry-After, a retry's backoff).  A waiting
 * retry holds no connection and no curl handle; its time is folded into
 * the poll timeout, so nothing sleeps.  The lists are not read further
 * while the FIFO is nearly full (room is kept for the retries of every
 * transfer in flight): memory stays bounded by what is in flight, pending
 * or queued, never by the length of a list.
 *
 * Politeness.  libcurl's CURLMOPT_MAX_HOST_CONNECTIONS counts connections,
 * not requests (HTTP/2 multiplexes many requests on one), so the per-host
 * cap is kept here by counting requests per host.  A host here is a name
 * and a port, one server, as in curl's own connection limits: its window,
 * its Retry-After and its pause describe that server's queue, its answers
 * and whether it is up, and a dead service on one port says nothing about
 * another on the same machine (keyed by name alone, one refused port
 * paused a healthy one).  Only host_delay, the user's spacing of requests
 * to a site, counts every port of a name.
 *
 * Pause.  A host that answers nothing (refused or dropped connections,
 * timeouts before a status line, a name that does not resolve) to
 * host_max_failures attempts in a row, or whose last host_max_failures
 * URLs each failed all their attempts, is paused instead of hammered: its
 * URLs fail at once, with a reason state.c takes as not final, so the next
 * run does them.  A transient answer that will be retried counts neither
 * way: a burst of 429s or 503s is a host that is up and asks for time,
 * which Retry-After, the backoff and the window give it (counted, 60 URLs
 * answered 429 once each paused the host after ten and failed all 60).
 * An answer that ends a URL, a success or a 404, shows the host up and
 * clears the count.  A failure at a host a redirect led to is that host's:
 * it counts neither way for the list URL's host, which answered.  A pause
 * lasts max_retry_wait (at least a second);
 * then one request at a time probes the host: a success lifts the pause,
 * a counted failure starts another cool-down.  So the daemon gets over an
 * outage by itself, and a reload (SIGHUP) lifts every pause at once.
 *
 * Per-host window.  A far server with many small files needs many requests
 * in flight (2,000 URLs at 200 ms each, 8 at a time, is 50 s), but a fixed
 * large number is rude to a small one.  So each host starts at
 * per_host_start requests and, like TCP's congestion window, opens for
 * every answer that came back while the window was in use: by two while
 * the recent time to first byte (a moving average) is within a quarter of
 * the host's fastest, tripling per round trip (doubling, as TCP does, left
 * the workers short of images for the first second of 2,000 small URLs:
 * 0.2 s slower, bench/NOTES.md); by one while it is within twice the
 * fastest plus 20 ms; up to per_host.  An average above that holds the
 * window: the host is queueing our requests, more would only queue
 * longer.  A sign of overload (408, 429, 502-504, a timeout, a refused or
 * reset connection) halves it, once per window's worth of requests, since
 * the answers to requests already in flight report the same overload; from
 * then on it opens by one per window's worth of answers only (TCP's
 * congestion avoidance), so a host that has shown its limit is probed
 * gently instead of overrun again.
 *
 * File lifecycle.  incoming/.thumbd-part.<name> while streaming; renamed to
 * incoming/.thumbd.<name> only after curl reports success with a 2xx status (curl
 * itself fails a body shorter than its Content-Length); unlinked on a final
 * failure.  A retry appends to the temp file with a Range request when the
 * server said it can (Accept-Ranges, no Content-Encoding) and gave a
 * validator for If-Range (a strong ETag, else Last-Modified), so a changed
 * file is never stitched onto an old beginning; without one it starts over.
 * Downloads are dot-files so that in incoming/, the hand-off folder of the
 * daemon, every visible file is an image some other program put there.
 * A 206 is taken only as the answer to such a Range: one to a request
 * without it is a part of the file, refused at its first byte.
 *
 * Stalls.  low_speed_limit/low_speed_time is checked here (check_stalls),
 * not by curl: curl's check counts the wait for the first byte too, and
 * that wait is download.timeout's, after a redirect too (the window
 * starts at the final answer's status line, not the 302's).  Junk where
 * a status line belongs, on a connection kept alive from an earlier
 * transfer, is taken for what that transfer left behind: the request goes
 * again on a new connection.
 *
 * Daemon mode (a watch instead of lists).  The loop never runs dry: it
 * waits on the inotify descriptor together with curl's sockets.  Each entry
 * carries a watch ticket that goes back to watch_done() when the URL has
 * ended: at once when skipped or failed here, through the job's on_end hook
 * when a worker is done with it.  Workers cannot call into the watch (it is
 * this thread's), so they leave tickets in a small locked array and wake
 * the loop; an abandoned transfer's ticket never goes back, so its line is
 * read again after a restart.  Nor does the ticket of a failure that
 * failed.tsv could not take (a full disk), or of one that is this
 * machine's and not the URL's (a write error, a paused host): not an
 * outcome is not ended.  Such an entry is kept (ticket_end, watch_keep):
 * the watch hands it out again after daemon.retry_kept, doubling per entry
 * up to an hour, and it goes the way of a line just read (name, state,
 * host), so a running daemon gets over a full disk or an outage by itself;
 * with retry_kept 0 it waits for the next start.
 */
#include "fetch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "job.h"
#include "fsutil.h"
#include "hashset.h"
#include "log.h"
#include "monotime.h"
#include "spare.h"

#define REASON_LEN 512

/* curl's receive buffer per transfer (its default is 16 KB).  libcurl 7.88
 * polls a socket before each read of it: 300 MB of photos at 16 KB took
 * 19,000 poll()s and as many recv()s, at 128 KB 2,700 and 2,400, and the
 * fetch thread's CPU time, which comes out of the workers' cores, went
 * from 0.40-0.45 s to 0.34-0.35 s (bench/NOTES.md).  Memory: up to 128 KB
 * per transfer in flight. */
#define FETCH_RECV_BUFFER (128L * 1024)

/* What on_body gathers before a write() to incoming/.  libcurl hands a
 * body on 16 KB at a time whatever its buffer, and a write per piece (and
 * ext4's work per small write) came to a sixth of this thread's time on
 * 300 MB of photos: 20,000 writes, 3,600 in 128 KB pieces, 0.08 s less
 * system time per run (bench/NOTES.md).  A body under 128 KB is one
 * write.  Memory: 128 KB per transfer while its body arrives, freed when
 * it ends. */
#define FETCH_WRITE_BUFFER ((size_t)128 * 1024)

/* A ticket a worker gave back; local: the job failed because of this
 * machine (job.h on_end), url then its URL (malloc'd), for the retry. */
typedef struct ended_ticket {
	uint64_t ticket;
	int local;
	char *url;
} ended_ticket;

typedef struct host {
	struct host *prev, *next;       /* fetch.hosts, newest first */
	struct host *chain;             /* fetch.bucket[hash of name] */
	uint64_t hash;          /* hash_str(name) */
	int active;             /* requests in flight */
	int waiting;            /* pending transfers for this host */
	int fails;              /* consecutive failures that count towards a pause (see the top) */
	int paused;             /* 0, or the fails that paused it (for messages) */
	long long resume_at;    /* ms: while paused, the cool-down ends; then one request probes */
	int window;             /* requests it may have in flight now (see the top), <= per_host */
	int credit;             /* answers towards the next +1 once halved */
	long long starts;       /* requests started so far */
	long long cut_seq;      /* starts when the window was last halved; 0 = never */
	long long best_ttfb;    /* us: fastest time to first byte seen; 0 = none yet */
	long long ttfb;         /* us: recent time to first byte (moving average) */
	long long not_before;   /* ms: no request starts before (Retry-After) */
	long long last_start;   /* ms: for host_delay */
	char last_reason[160];
	long port;              /* with name, what a host is: one server (see the top) */
	char name[];
} host;

typedef struct xfer {
	struct xfer *prev, *next;       /* in fetch.running while in flight */
	CURL *easy;
	struct curl_slist *headers;
	fetch *f;
	host *host;
	char *url;
	char *part, *final;     /* incoming/.thumbd-part.<name>, incoming/.thumbd.<name> (name.h) */
	int fd;
	uint8_t *wbuf;          /* body bytes not yet written to fd */
	size_t wlen;
	long port;              /* from the URL, for messages */
	int attempts;           /* started so far */
	long long seq;          /* its host's starts when this attempt started */
	long long not_before;   /* ms: backoff of the next attempt */
	uint64_t bytes;         /* in the temp file */
	uint64_t resume_from;   /* this attempt asked for bytes from here */
	int too_large, write_errno;
	int status;             /* status code of the last status line (each response has one) */
	int unasked_206;        /* a 206 to a request without Range: its body was refused */
	int answered;           /* a response has begun: the low-speed check applies */
	int hop;                /* this response is a redirect curl follows, or a 1xx: not the answer */
	int stalled;            /* cut by check_stalls */
	int fresh;              /* next attempt on a new connection (junk on a reused one) */
	uint64_t rx;            /* bytes received this attempt, headers and body */
	uint64_t ls_rx;         /* ... when the low-speed window began */
	long long ls_at;        /* ms: when it began */
	int can_resume;         /* last response: Accept-Ranges: bytes, no Content-Encoding */
	char validator[128];    /* ETag or Last-Modified of the first response, for If-Range */
	char crange[80];        /* Content-Range of the last response, for messages */
	long long hdr_clen;     /* its Content-Length, -1 without: curl's is gone after FILESIZE_EXCEEDED */
	struct timespec started;
	char name[NAME_MAX_OUT];
	long long claim;        /* f->claims when its name was claimed */
	uint64_t ticket;        /* daemon: the watch entry this URL came from */
	int has_ticket;
	int again;              /* a retry of a kept entry (watch_tries): see xfer_fail */
	char errbuf[CURL_ERROR_SIZE];
} xfer;

struct fetch {
	const cfg *c;
	urllist *lists;
	names *reg;
	state *done;
	jobq *q;
	stats *st;
	CURLM *multi;
	int epfd;               /* curl's sockets, the wakeup eventfd, the watch */
	int wakefd;             /* eventfd: other threads' nudges (fetch_nudge) */
	int list_fd;            /* a piped list armed in epfd (one shot) while it has no line, else -1 */
	long long timer_at;     /* ms: curl wants CURL_SOCKET_TIMEOUT then; -1 = no timer */
	CURLU *urlh;            /* reused parser for host names */
	host *hosts, *oldest;   /* every host known (see hosts_trim), newest first */
	host **bucket;          /* ... by the hash of its name: all its ports in one chain */
	size_t nbuckets, nhosts;
	size_t trim_at;         /* hosts_trim looks again past this many */
	xfer *running;          /* transfers in flight */
	xfer **pending;         /* FIFO of transfers waiting to start */
	int npending, max_pending, read_limit;
	int in_flight;
	int lists_done;
	long long claims;       /* names claimed so far */
	long long claims_synced;        /* ... of which the registry holds on disk */
	atomic_int stop;
	watch *w;               /* daemon mode; NULL for a one-shot run */
	spares *spares;         /* recycled incoming files (see spare.h) */
	const cfg *_Atomic next_c; /* a reload: adopted at the top of the loop */
	const cfg *_Atomic hazard; /* the config this round of the loop reads */
	atomic_long beats;      /* loop iterations, for the watchdog */
	atomic_long w_sources, w_outstanding; /* watch_counts, published for main */
	long long last_save;    /* ms, last watch_save */
	long long last_stall_check; /* ms, last check_stalls */
	pthread_mutex_t ended_mu;
	ended_ticket *ended;    /* tickets of jobs the workers finished */
	size_t nended, capended;
	long done_ok;
	unsigned long long rng;
	struct timespec t0;
};

/* curl: watch socket s for what (CURL_POLL_*).  A socket curl closed
 * has left the epoll set by itself, so its number may come back as a new
 * socket: ADD and MOD each fall back on the other. */
static int
on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	fetch *f = userp;
	struct epoll_event ev = { 0 };

	(void)easy;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(f->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (epoll_ctl(f->epfd, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT
	    && epoll_ctl(f->epfd, EPOLL_CTL_ADD, s, &ev) < 0) {
		log_msg(LOG_ERROR, "cannot watch a socket: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* curl: call CURL_SOCKET_TIMEOUT in timeout_ms (0: at once; -1: never). */
static int
on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	fetch *f = userp;

	(void)multi;
	f->timer_at = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
	return 0;
}

/* Any thread: wake the loop.  An eventfd counts, so nudges never block
 * and many of them are one wakeup. */
static void
fetch_nudge(fetch *f)
{
	uint64_t one = 1;

	if (write(f->wakefd, &one, sizeof one) < 0) {
		/* EAGAIN: the counter is full, the loop is woken anyway */
	}
}

static int
epoll_add(int epfd, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* A piped list has no whole line yet: wake the loop once it is readable.
 * One shot, so a list left unread while there is no room to take from it
 * cannot keep waking the loop; and f->list_fd is set only while armed, so
 * its number, once the list is closed and the number reused by one of
 * curl's sockets, is never taken for the list (closing a descriptor takes
 * it out of the epoll set).  Where it cannot be armed, the loop's wait of
 * at most a second reads it again. */
static void
list_arm(fetch *f, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.fd = fd };

	if (fd < 0)
		return;
	if (epoll_ctl(f->epfd, EPOLL_CTL_MOD, fd, &ev) == 0
	    || (errno == ENOENT && epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) == 0))
		f->list_fd = fd;
}

/* libcurl honours the proxy variables as curl(1) does (http_proxy in lower
 * case only, https_proxy, all_proxy, no_proxy, either case for the last
 * three): say in the log which are set, since every request goes there. */
static void
log_proxies(void)
{
	static const char *const vars[] = {
		"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY",
	};
	char line[1024] = "";
	size_t off = 0;
	const char *v;

	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		if ((v = getenv(vars[i])) && *v && off < sizeof line)
			off += (size_t)snprintf(line + off, sizeof line - off, " %s=%s", vars[i], v);
	if (off)
		log_msg(LOG_INFO, "proxy settings from the environment:%s", line);
}

fetch *
fetch_new(const cfg *c, urllist *lists, watch *w, names *reg, state *done, jobq *q,
          stats *st, char *err, size_t errlen)
{
	fetch *f = calloc(1, sizeof *f);

	if (!f)
		goto oom;
	f->epfd = f->wakefd = f->list_fd = -1;
	f->timer_at = -1;
	f->c = c;
	atomic_init(&f->next_c, c);
	atomic_init(&f->hazard, c);
	pthread_mutex_init(&f->ended_mu, NULL);
	f->lists = lists;
	f->w = w;
	f->reg = reg;
	f->done = done;
	f->q = q;
	f->st = st;
	f->read_limit = c->connections * 4;
	f->max_pending = f->read_limit + c->connections;
	f->rng = (unsigned long long)mono_ms() * 6364136223846793005ULL ^ (unsigned long long)getpid();
	if (!(f->pending = calloc((size_t)f->max_pending, sizeof *f->pending))
	    || !(f->spares = spares_new(c->incoming, (int)jobq_capacity(q) + c->connections)))
		goto oom;
	if (!(f->multi = curl_multi_init()) || !(f->urlh = curl_url())) {
		snprintf(err, errlen, "cannot initialise libcurl");
		goto fail;
	}
	if ((f->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0
	    || (f->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0
	    || epoll_add(f->epfd, f->wakefd) < 0
	    || (w && epoll_add(f->epfd, watch_fd(w)) < 0)) {
		snprintf(err, errlen, "cannot set up the event loop: %s", strerror(errno));
		goto fail;
	}
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->connections);
	curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->per_host);
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	/* keep a connection per slot alive for reuse between transfers */
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)c->connections);
	log_proxies();
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
	for (int i = 0; i < f->npending; i++)
		xfer_free(f->pending[i]);
	while (f->hosts) {
		host *h = f->hosts;
		f->hosts = h->next;
		free(h);
	}
	free(f->bucket);
	free(f->pending);
	for (size_t i = 0; i < f->nended; i++)
		free(f->ended[i].url);
	free(f->ended);
	pthread_mutex_destroy(&f->ended_mu);
	spares_free(f->spares);
	curl_url_cleanup(f->urlh);
	if (f->multi)
		curl_multi_cleanup(f->multi);
	if (f->epfd >= 0)
		close(f->epfd);
	if (f->wakefd >= 0)
		close(f->wakefd);
	free(f);
}

void
fetch_stop(fetch *f)
{
	atomic_store(&f->stop, 1);
	fetch_nudge(f);
}

void
fetch_wakeup(void *arg)
{
	fetch *f = arg;

	fetch_nudge(f);
}

void
fetch_set_config(fetch *f, const cfg *c)
{
	atomic_store(&f->next_c, c);
	fetch_nudge(f);
}

int
fetch_uses(fetch *f, const cfg *c)
{
	return atomic_load(&f->hazard) == c || atomic_load(&f->next_c) == c;
}

void
fetch_watch_counts(fetch *f, long *sources, long *outstanding)
{
	*sources = atomic_load(&f->w_sources);
	*outstanding = atomic_load(&f->w_outstanding);
}

long
fetch_heartbeat(fetch *f)
{
	long b = atomic_load(&f->beats);

	fetch_nudge(f);         /* so the next call sees a new beat if the loop is alive */
	return b;
}

/* --- tickets (daemon) ---------------------------------------------------- */

static watch_ticket
ticket_unpack(uint64_t v)
{
	watch_ticket t = { (uint32_t)(v >> 32), (uint32_t)v };

	return t;
}

static uint64_t
ticket_pack(watch_ticket t)
{
	return (uint64_t)t.src << 32 | t.seq;
}

/* The entry of ticket t has ended, or, with keep, has not: a failure of
 * this machine (a write error, a full disk, a paused host:
 * state_reason_is_final() is 0) or one failed.tsv could not take is no
 * outcome of the URL, so its ticket stays out: its list's offset is not
 * committed past it and a directory list stays where it is.  The watch
 * hands it out again after daemon.retry_kept (doubling per entry, up to an
 * hour; watch_keep), and it takes the same way as a line just read; with
 * retry_kept 0, past the watch's cap or once stopping, the next start
 * reads it again and tries it, as a one-shot run would.  A hand-off
 * image's ticket (src 0) is kept the same way: the worker left its file in
 * incoming/ (its only copy), and the watch hands it out again, or the next
 * start lists it.  what: the URL (or a bad line, with its reason; an
 * image's path), for the log and the retry, or NULL. */
static void
ticket_end(fetch *f, watch_ticket t, int keep, const char *what, const char *reason)
{
	const char *entry = t.src ? "its list entry" : "the image";
	long long in;

	if (!keep) {
		watch_done(f->w, t);
		return;
	}
	in = watch_keep(f->w, t, what, reason, atomic_load(&f->stop) ? 0 : f->c->retry_kept_ms);
	if (in > 0)
		log_msg(LOG_WARNING, "%s: %s is kept, tried again in %g s", what, entry, in / 1000.0);
	else
		log_msg(LOG_WARNING, "%s: %s is kept, the next start does it again",
		        what ? what : "a failed job", entry);
}

/* A worker finished a job: any thread.  local: see ticket_end; url: the
 * job's, copied when local. */
static void
job_ended(void *arg, uint64_t ticket, int local, const char *url)
{
	fetch *f = arg;
	char *copy = local && url ? strdup(url) : NULL;
	int ok = 1;

	pthread_mutex_lock(&f->ended_mu);
	if (f->nended == f->capended) {
		size_t cap = f->capended ? f->capended * 2 : 64;
		ended_ticket *v = realloc(f->ended, cap * sizeof *v);
		if (v) {
			f->ended = v;
			f->capended = cap;
		} else {
			ok = 0;
		}
	}
	if (ok)
		f->ended[f->nended++] = (ended_ticket){ ticket, local, copy };
	pthread_mutex_unlock(&f->ended_mu);
	if (!ok) {  /* the line comes again after a restart; nothing is lost */
		free(copy);
		log_msg(LOG_WARNING, "out of memory noting a finished entry");
	}
	fetch_nudge(f);
}

void
fetch_collect(fetch *f)
{
	ended_ticket *v;
	size_t n;

	if (!f || !f->w)
		return;
	pthread_mutex_lock(&f->ended_mu);
	v = f->ended;
	n = f->nended;
	f->ended = NULL;
	f->nended = f->capended = 0;
	pthread_mutex_unlock(&f->ended_mu);
	for (size_t i = 0; i < n; i++) {
		ticket_end(f, ticket_unpack(v[i].ticket), v[i].local, v[i].url, NULL);
		free(v[i].url);
	}
	free(v);
}

/* --- hosts ------------------------------------------------------------- */

/*
 * Hosts are found through a hash table of their names (a list of URLs on
 * 20,000 hosts made a walk of the list per URL 28% of a 13 s run), and
 * one remembered without a request of its own (only for its failures, a
 * Retry-After, or a pause whose cool-down is over, which a new entry's
 * first request probes as well) is forgotten once HOSTS_IDLE_MAX newer
 * hosts are known: a list with a dead host per URL then holds a bounded
 * table, not one entry per URL.
 */
#define HOSTS_IDLE_MAX 4096

/* The chain of the hosts whose names hash to hash. */
static host **
host_bucket(const fetch *f, uint64_t hash)
{
	return &f->bucket[hash & (f->nbuckets - 1)];
}

/* Take h out of the list and its chain, and free it. */
static void
host_drop(fetch *f, host *h)
{
	host **pp;

	for (pp = host_bucket(f, h->hash); *pp != h; pp = &(*pp)->chain)
		;
	*pp = h->chain;
	if (h->prev)
		h->prev->next = h->next;
	else
		f->hosts = h->next;
	if (h->next)
		h->next->prev = h->prev;
	else
		f->oldest = h->prev;
	f->nhosts--;
	free(h);
}

/* No request of its own in flight or waiting. */
static int
host_idle(const host *h)
{
	return h->active == 0 && h->waiting == 0;
}

/* Paused and still cooling down: its URLs fail at once. */
static int
host_cooling(const host *h)
{
	return h->paused && mono_ms() < h->resume_at;
}

/* Forget the oldest idle hosts beyond HOSTS_IDLE_MAX (see above), down
 * to three quarters of it; when too few are idle, look again only after a
 * quarter of it more, so the walks cost O(1) per host added. */
static void
hosts_trim(fetch *f)
{
	size_t keep = HOSTS_IDLE_MAX - HOSTS_IDLE_MAX / 4;
	host *h = f->oldest, *newer;

	if (f->nhosts <= HOSTS_IDLE_MAX || f->nhosts <= f->trim_at)
		return;
	for (; h && f->nhosts > keep; h = newer) {
		newer = h->prev;
		if (host_idle(h) && !host_cooling(h))
			host_drop(f, h);
	}
	f->trim_at = f->nhosts + HOSTS_IDLE_MAX / 4;
}

static int
hosts_grow(fetch *f)
{
	size_t n = f->nbuckets ? 2 * f->nbuckets : 64;
	host **b = calloc(n, sizeof *b);

	if (!b)
		return -1;
	for (host *h = f->hosts; h; h = h->next) {
		h->chain = b[h->hash & (n - 1)];
		b[h->hash & (n - 1)] = h;
	}
	free(f->bucket);
	f->bucket = b;
	f->nbuckets = n;
	return 0;
}

static host *
host_get(fetch *f, const char *name, long port)
{
	host *h;
	size_t len = strlen(name);
	uint64_t hash = hash_str(name);

	if (f->nbuckets)
		for (h = *host_bucket(f, hash); h; h = h->chain)
			if (h->port == port && strcmp(h->name, name) == 0)
				return h;
	hosts_trim(f);
	if (f->nhosts >= f->nbuckets && hosts_grow(f) < 0)
		return NULL;
	if (!(h = calloc(1, sizeof *h + len + 1)))
		return NULL;
	memcpy(h->name, name, len + 1);
	h->port = port;
	h->hash = hash;
	h->window = f->c->per_host_start;
	h->next = f->hosts;
	if (f->hosts)
		f->hosts->prev = h;
	else
		f->oldest = h;
	f->hosts = h;
	h->chain = *host_bucket(f, hash);
	*host_bucket(f, hash) = h;
	f->nhosts++;
	return h;
}

/* Requests h may have in flight now.  per_host is checked here, not only
 * when the window grows, so a reloaded config takes effect at once.  A
 * paused host past its cool-down gets one: the probe (see the top). */
static int
host_limit(const fetch *f, const host *h)
{
	if (h->paused)
		return 1;
	return h->window < f->c->per_host ? h->window : f->c->per_host;
}

/* The latest request start to any port of h's name, for host_delay. */
static long long
site_last_start(const fetch *f, const host *h)
{
	long long t = h->last_start;

	/* every port of the name is in h's chain */
	for (const host *o = *host_bucket(f, h->hash); o; o = o->chain)
		if (o != h && o->last_start > t && strcmp(o->name, h->name) == 0)
			t = o->last_start;
	return t;
}

/* A failure that counts towards a pause (see the top): reason is why. */
static void
host_failed(fetch *f, host *h, const char *reason)
{
	long long cool = f->c->max_retry_wait_ms > 1000 ? f->c->max_retry_wait_ms : 1000;

	h->fails++;
	snprintf(h->last_reason, sizeof h->last_reason, "%.*s", (int)sizeof h->last_reason - 1, reason);
	/* requests in flight when it was paused end during the cool-down:
	 * they say nothing new */
	if (!f->c->host_max_failures || h->fails < f->c->host_max_failures || host_cooling(h))
		return;
	if (!h->paused) {
		h->paused = h->fails;
		log_msg(LOG_WARNING, "host %s:%ld paused for %lld s after %d consecutive failures (last: %s)",
		        h->name, h->port, cool / 1000, h->fails, reason);
	} else {
		log_msg(LOG_INFO, "host %s:%ld still failing, paused for another %lld s (last: %s)",
		        h->name, h->port, cool / 1000, reason);
	}
	h->resume_at = mono_ms() + cool;
}

/* The host answered for good (a success, a 404), or a reload says to try
 * it again (why, for the log): it is up. */
static void
host_up(host *h, const char *why)
{
	if (h->paused)
		log_msg(LOG_INFO, "host %s:%ld %s: pause lifted", h->name, h->port, why);
	h->fails = h->paused = 0;
	h->resume_at = 0;
}

/* An answer came back (not an overload sign): open the window when the
 * host kept up while the window was in use.  Called after the request left
 * h->active. */
static void
host_answered(fetch *f, host *h, CURL *easy)
{
	curl_off_t pre = 0, first = 0;
	long redirects = 0;
	long long ttfb;

	/* after redirects curl adds up the times of every hop, some of them
	 * maybe on other hosts: no sample of this host's */
	if (curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK
	    && curl_easy_getinfo(easy, CURLINFO_STARTTRANSFER_TIME_T, &first) == CURLE_OK
	    && curl_easy_getinfo(easy, CURLINFO_REDIRECT_COUNT, &redirects) == CURLE_OK
	    && redirects == 0 && first > 0 && first >= pre) {
		ttfb = (long long)(first - pre);
		if (!h->best_ttfb || ttfb < h->best_ttfb)
			h->best_ttfb = ttfb;
		/* half the last sample, half the history: one answer that
		 * jumped the host's queue does not count as the queue gone */
		h->ttfb = h->ttfb ? (h->ttfb + ttfb) / 2 : ttfb;
	}
	/* in use: it held this request and had as many again waiting
	 * (answers come in bursts, so h->active alone undercounts) */
	if (h->active + 1 + h->waiting < h->window || h->window >= f->c->per_host
	    || h->ttfb > 2 * h->best_ttfb + 20000)
		return;
	if (!h->cut_seq) {            /* never halved: see the top */
		h->window += h->ttfb <= h->best_ttfb + h->best_ttfb / 4 ? 2 : 1;
	} else if (++h->credit >= h->window) {
		h->credit = 0;
		h->window++;
	}
}

/* An answer or failure that says the host is overloaded: halve its window,
 * once for all the requests that were in flight when it was last halved.
 * 1 when this one was already accounted for by an earlier halving. */
static int
host_overloaded(fetch *f, host *h, const xfer *x)
{
	int was = host_limit(f, h);

	if (x->seq <= h->cut_seq)
		return 1;
	h->cut_seq = h->starts;
	h->window = was > 1 ? was / 2 : 1;
	h->credit = 0;
	if (h->window != was) {
		STAT_ADD(f->st, host_overloads, 1);
		log_msg(LOG_INFO, "host %s seems overloaded: %d requests at once to it, was %d",
		        h->name, h->window, was);
	}
	return 0;
}

/* Lift every pause (a reload). */
static void
hosts_resume(fetch *f)
{
	for (host *h = f->hosts; h; h = h->next)
		if (h->paused)
			host_up(h, "reloaded");
}

/* Forget a host that holds no state worth keeping, so the list stays about
 * as long as the set of hosts in flight, pending, paused or held back. */
static void
host_forget_if_idle(fetch *f, host *h)
{
	if (!host_idle(h) || h->paused || h->fails > 0 || h->not_before > mono_ms()
	    || (f->c->host_delay_ms && h->last_start + f->c->host_delay_ms > mono_ms()))
		return;
	host_drop(f, h);
}

/* --- transfers ----------------------------------------------------------- */

/* An IPv4 or IPv6 address (curl's host part keeps IPv6's brackets). */
static int
is_address(const char *name)
{
	unsigned char a[16];
	char v6[INET6_ADDRSTRLEN + 8];
	size_t n = strlen(name);

	if (inet_pton(AF_INET, name, a) == 1)
		return 1;
	if (n < 3 || name[0] != '[' || name[n - 1] != ']' || n - 2 >= sizeof v6)
		return 0;
	memcpy(v6, name + 1, n - 2);
	v6[n - 2] = '\0';
	return inet_pton(AF_INET6, v6, a) == 1;
}

static void
xfer_free(xfer *x)
{
	if (!x)
		return;
	if (x->fd >= 0)
		close(x->fd);
	free(x->wbuf);
	if (x->easy)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	free(x->url);
	free(x->part);
	free(x->final);
	free(x);
}

/* Final failure: record it, remove the partial file, forget the transfer. */
static void
xfer_fail(fetch *f, xfer *x, const char *reason)
{
	int unrecorded;

	if (x->part)
		unlink(x->part);
	/* a kept entry stays kept either way (state_record_failure) */
	unrecorded = state_record_failure(x->url, reason, x->again) < 0;
	stats_fail(f->st, reason);
	if (x->has_ticket && f->w)
		ticket_end(f, ticket_unpack(x->ticket), unrecorded || !state_reason_is_final(reason), x->url,
		           NULL);
	x->has_ticket = 0;
	host_forget_if_idle(f, x->host);
	xfer_free(x);
}

/* What on_body holds back goes to the file (a failure in write_errno). */
static void
xfer_flush(xfer *x)
{
	if (x->wlen > 0 && !x->write_errno && fsu_write_all(x->fd, x->wbuf, x->wlen) < 0)
		x->write_errno = errno;
	x->wlen = 0;
	free(x->wbuf);
	x->wbuf = NULL;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	xfer *x = arg;
	size_t len = size * nmemb;

	x->rx += len;
	/* 206 is the answer to a Range; without one it is a part, however
	 * complete it may look, and is never written as the whole body */
	if (x->status == 206 && x->resume_from == 0) {
		x->unasked_206 = 1;
		return 0;
	}
	/* counted on decoded bytes, whatever Content-Length said */
	if (x->bytes + len > x->f->c->max_bytes) {
		x->too_large = 1;
		return 0;
	}
	if (!x->wbuf)
		x->wbuf = malloc(FETCH_WRITE_BUFFER);   /* none: written as it comes */
	if (x->wlen + len > FETCH_WRITE_BUFFER) {
		if (fsu_write_all(x->fd, x->wbuf, x->wlen) < 0)
			goto fail;
		x->wlen = 0;
	}
	if (x->wbuf && len <= FETCH_WRITE_BUFFER) {
		memcpy(x->wbuf + x->wlen, data, len);
		x->wlen += len;
	} else if (fsu_write_all(x->fd, data, len) < 0) {
		goto fail;
	}
	x->bytes += len;
	STAT_ADD(x->f->st, bytes, (long long)len);
	return len;
fail:
	x->write_errno = errno;
	return 0;
}

/* Header value of line if it is "name: value", trimmed into out. */
static int
header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name), v;

	if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return 0;
	line += n + 1;
	len -= n + 1;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	v = len < outlen - 1 ? len : outlen - 1;
	memcpy(out, line, v);
	out[v] = 0;
	return 1;
}

/* Remember what a retry needs to resume: ranges, encoding, a validator.
 * Every response (redirects, 1xx) starts over, so the last one counts. */
static size_t
on_header(char *line, size_t size, size_t nmemb, void *arg)
{
	xfer *x = arg;
	size_t len = size * nmemb;
	char v[128];
	const char *sp;

	x->rx += len;
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		x->can_resume = 0;
		if (x->resume_from == 0)
			x->validator[0] = 0;
		x->crange[0] = 0;
		x->hdr_clen = -1;
		sp = memchr(line, ' ', len);
		x->status = sp ? (int)strtol(sp + 1, NULL, 10) : 0;
		x->hop = x->status >= 100 && x->status < 200;
		if (!x->answered) {     /* the low-speed window starts here (check_stalls) */
			x->answered = 1;
			x->ls_at = mono_ms();
			x->ls_rx = x->rx;
		}
	} else if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
		/* the end of a response's headers: after a redirect (or a 1xx)
		 * the answer is still to come, and its wait is the timeout's
		 * alone, as the first one's was: the window starts again at the
		 * next status line */
		if (x->hop)
			x->answered = 0;
	} else if (x->status >= 300 && x->status < 400 && header_value(line, len, "Location", v, sizeof v)) {
		x->hop = 1;     /* followed: CURLOPT_FOLLOWLOCATION */
	} else if (header_value(line, len, "Content-Range", x->crange, sizeof x->crange)) {
		/* kept for the message of an unasked 206 */
	} else if (header_value(line, len, "Content-Length", v, sizeof v)) {
		char *end;
		long long n = strtoll(v, &end, 10);
		x->hdr_clen = end != v && *end == 0 && n >= 0 ? n : -1;
	} else if (header_value(line, len, "Accept-Ranges", v, sizeof v)) {
		if (x->can_resume != -1)        /* a Content-Encoding before it rules */
			x->can_resume = strcasecmp(v, "bytes") == 0 ? 1 : 0;
	} else if (header_value(line, len, "Content-Encoding", v, sizeof v)) {
		if (strcasecmp(v, "identity") != 0)
			x->can_resume = -1;     /* ranges would count encoded bytes */
	} else if (x->resume_from == 0 && header_value(line, len, "ETag", v, sizeof v)) {
		/* a weak tag cannot guard a range (RFC 9110 13.1.5), a cut one
		 * would never match */
		if (strncmp(v, "W/", 2) != 0 && strlen(v) < sizeof v - 1)
			snprintf(x->validator, sizeof x->validator, "%s", v);
	} else if (x->resume_from == 0 && !x->validator[0]
	           && header_value(line, len, "Last-Modified", v, sizeof v) && strlen(v) < sizeof v - 1) {
		snprintf(x->validator, sizeof x->validator, "%s", v);
	}
	return len;
}

/* A list line that cannot be fetched (reason says why): recorded in
 * failed.tsv, unless an earlier run recorded it already ("failed before")
 * or this one did (a duplicate), so that, like a URL that failed, it has
 * one line there.  A line too long comes as its key (urllist_line), the
 * same in every run, so it is found there too.  -1 when the failure could not be recorded. */
static int
fail_line(fetch *f, const char *line, const char *reason)
{
	int rc;

	switch (state_failed_before(f->done, line)) {
	case 1:
		log_msg(LOG_INFO, "failed before %s: see failed.tsv (--retry-failed to try again)", line);
		STAT_ADD(f->st, failed_before, 1);
		state_failed_now(f->done, line);        /* a second copy is a duplicate */
		return 0;
	case 2:
		log_msg(LOG_INFO, "duplicate %s: failed once in this run", line);
		STAT_ADD(f->st, duplicates, 1);
		return 0;
	}
	rc = log_failure(line, reason);
	stats_fail(f->st, reason);
	if (rc == 0)
		state_failed_now(f->done, line);
	return rc;
}

/* Build an xfer for a URL read from a list: parse it, name it, and skip it
 * when this or an earlier run already has its outcome.  t: its watch
 * ticket (daemon), else NULL.  NULL when skipped or failed; *keep = 1 when
 * that failure is no outcome of the URL (see ticket_end): it could not be
 * recorded, or it is this machine's (the name registry could not be
 * written, out of memory). */
static xfer *
xfer_new(fetch *f, const char *url, const watch_ticket *t, int *keep)
{
	xfer *x = NULL;
	char *hostname = NULL, *port = NULL, err[256], stem[NAME_STEM_MAX + 1], ext[NAME_EXT_MAX + 1];
	CURLUcode uc;
	size_t plen;
	int r;

	uc = curl_url_set(f->urlh, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc == CURLUE_OK)
		uc = curl_url_get(f->urlh, CURLUPART_HOST, &hostname, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(f->urlh, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	if (uc != CURLUE_OK) {
		snprintf(err, sizeof err, "invalid URL: %s", curl_url_strerror(uc));
		*keep = fail_line(f, url, err) < 0;
		goto out;
	}
	/* DNS names are case-insensitive: EXAMPLE.com is example.com's window,
	 * pause and Retry-After, not a host of its own */
	for (char *p = hostname; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	name_from_url(url, stem, ext);
	if (!(x = calloc(1, sizeof *x)))
		goto oom;
	x->fd = -1;
	x->f = f;
	x->port = strtol(port, NULL, 10);
	r = names_claim(f->reg, url, stem, x->name, err, sizeof err);
	/* the daemon: a duplicate only while the first is still out; seen
	 * again after that, the state below decides (done when its
	 * thumbnails exist, again when they were deleted) */
	if (r == 1 && (!t || watch_busy(f->w, url, *t))) {
		log_msg(LOG_INFO, "duplicate %s: already %s, done once", url, t ? "in flight" : "in this run");
		STAT_ADD(f->st, duplicates, 1);
		goto drop;
	}
	if (r < 0) {
		*keep = log_failure(url, err) < 0 || !state_reason_is_final(err);
		stats_fail(f->st, err);
		goto drop;
	}
	x->claim = ++f->claims;
	switch (state_lookup(f->done, f->c, url, x->name)) {
	case STATE_DONE:
		log_msg(LOG_INFO, "already done %s: thumbnails %s_* exist", url, x->name);
		STAT_ADD(f->st, already_done, 1);
		goto drop;
	case STATE_FAILED:
		log_msg(LOG_INFO, "failed before %s: see failed.tsv (--retry-failed to try again)", url);
		STAT_ADD(f->st, failed_before, 1);
		goto drop;
	case STATE_NEW:
		break;
	}
	/* named by the stem alone, which is this URL's only (see name.h) */
	plen = strlen(f->c->incoming) + strlen(x->name) + sizeof NAME_PART_PREFIX + 2;
	x->url = strdup(url);
	x->final = malloc(plen);
	x->part = malloc(plen);
	if (!x->url || !x->final || !x->part || !(x->host = host_get(f, hostname, x->port)))
		goto oom;
	snprintf(x->final, plen, "%s/" NAME_OWN_PREFIX "%s", f->c->incoming, x->name);
	snprintf(x->part, plen, "%s/" NAME_PART_PREFIX "%s", f->c->incoming, x->name);
	goto out;
oom:
	*keep = 1;      /* not final either way */
	log_failure(url, "out of memory");
	stats_fail(f->st, "out of memory");
drop:
	xfer_free(x);
	x = NULL;
out:
	curl_free(hostname);
	curl_free(port);
	return x;
}

/* Start (or restart) a transfer.  On failure it is recorded and freed. */
static void
xfer_start(fetch *f, xfer *x)
{
	const cfg *c = f->c;
	CURL *e;
	char reason[REASON_LEN];
	int resume = x->bytes > 0 && x->can_resume == 1 && x->validator[0];

	x->resume_from = resume ? x->bytes : 0;
	if (!resume)
		x->bytes = 0;
	/* a first attempt takes a recycled file; a retry reuses its own temp file */
	x->fd = x->attempts == 0 ? spares_open(f->spares, x->part)
	        : open(x->part, O_WRONLY | O_CREAT | O_CLOEXEC | (resume ? O_APPEND : O_TRUNC), 0644);
	if (x->fd < 0) {
		snprintf(reason, sizeof reason, "cannot create %s: %s", x->part, strerror(errno));
		goto fail;
	}
	if (!(e = x->easy = curl_easy_init())) {
		snprintf(reason, sizeof reason, "cannot create a transfer (libcurl)");
		goto fail;
	}
	x->too_large = x->write_errno = x->status = x->unasked_206 = 0;
	x->answered = x->stalled = 0;
	x->hdr_clen = -1;
	x->rx = 0;
	x->crange[0] = x->errbuf[0] = 0;
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* An address needs no lookup, so no entry in curl's DNS cache, which
	 * is scanned whole on every lookup: 20,000 URLs on as many addresses
	 * took 7.0 s with their entries, 2.7 s without. */
	if (is_address(x->host->name))
		curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)c->max_redirects);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->connect_timeout);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, c->timeout);
	/* no CURLOPT_LOW_SPEED_*: curl's check also runs while the server
	 * thinks, before the first byte; low_speed_* is for the body, so
	 * check_stalls does it from the first byte of the response on */
	if (x->fresh)
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_bytes);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, FETCH_RECV_BUFFER);
	if (c->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	/* HTTP/2 over TLS when the server offers it: later transfers to that
	 * host multiplex on its connection.  No CURLOPT_PIPEWAIT: it makes every
	 * new transfer wait for a host's pending response, which serialises a
	 * host that answers slowly or closes connections (curl issue 15838). */
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	if (resume) {
		char ifrange[160];
		curl_easy_setopt(e, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->resume_from);
		snprintf(ifrange, sizeof ifrange, "If-Range: %s", x->validator);
		curl_slist_free_all(x->headers);
		x->headers = curl_slist_append(NULL, ifrange);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
		log_msg(LOG_INFO, "resuming %s at byte %llu", x->url, (unsigned long long)x->resume_from);
	}
	if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
		snprintf(reason, sizeof reason, "cannot start the transfer (libcurl)");
		goto fail;
	}
	clock_gettime(CLOCK_MONOTONIC, &x->started);
	x->attempts++;
	x->next = f->running;
	if (f->running)
		f->running->prev = x;
	f->running = x;
	x->host->active++;
	x->seq = ++x->host->starts;
	x->host->last_start = mono_ms();
	f->in_flight++;
	STAT_ADD(f->st, in_flight, 1);
	return;
fail:
	xfer_fail(f, x, reason);
}

/* Take x out of the multi handle and the running list; its curl handle and
 * file are released (a retry makes new ones). */
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
	x->host->active--;
	f->in_flight--;
	STAT_ADD(f->st, in_flight, -1);
}

typedef enum { OUTCOME_OK, OUTCOME_TRANSIENT, OUTCOME_PERMANENT } outcome;

/* The host and port curl tried last: the list's URL's, or those of the
 * Location a redirect led to, so that a failure to resolve or connect names
 * the host that failed, not the one that redirected.  Fetch thread only (it
 * uses the shared parser). */
static void
tried_host(const xfer *x, char *name, size_t namelen, long *port)
{
	CURLU *u = x->f->urlh;
	char *url = NULL, *h = NULL, *p = NULL;

	snprintf(name, namelen, "%s", x->host->name);
	*port = x->port;
	if (curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || !url)
		return;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK
	    && curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK
	    && curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		snprintf(name, namelen, "%s", h);
		*port = strtol(p, NULL, 10);
	}
	curl_free(h);
	curl_free(p);
}

/* libcurl takes a proxy from the environment (http_proxy, https_proxy,
 * all_proxy, no_proxy) and, when it cannot reach it, says so only in its
 * message, which names the proxy's host and port: "Failed to connect to
 * H port P ...".  A host or port there other than the one tried (name,
 * port: tried_host) is the proxy's. */
static int
via_proxy(const xfer *x, const char *name, long port)
{
	char shown[256];
	size_t n = strlen(name);
	long shown_port;

	if (sscanf(x->errbuf, "Failed to connect to %255s port %ld", shown, &shown_port) != 2)
		return 0;
	if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {      /* IPv6 literal: curl prints it bare */
		name++;
		n -= 2;
	}
	return shown_port != port || strlen(shown) != n || strncasecmp(shown, name, n) != 0;
}

/* The server's bytes did not start with a status line (curl: "Received
 * HTTP/0.9 when not allowed").  curl gives that error the code it gives a
 * refused protocol, so only its message tells the two apart. */
static int
not_http(const xfer *x, CURLcode rc)
{
	return rc == CURLE_UNSUPPORTED_PROTOCOL && strstr(x->errbuf, "HTTP/0.9") != NULL;
}

/* Headers past curl's limits, a remote's doing that a retry meets again.
 * curl 7.88 keeps a header line in a buffer capped at 100 KB
 * (CURL_MAX_HTTP_HEADER) and reports a longer one as CURLE_OUT_OF_MEMORY,
 * "Out of memory", told from a real allocation failure by when it
 * happened: after the answer began, before any of its body (1).  Debian's
 * 7.88.1, like curl 8.3, also caps all of an answer's headers at 300 KB:
 * CURLE_RECV_ERROR, "Too large response headers: N > 307200" (2).  0: neither. */
static int
headers_too_large(const xfer *x, CURLcode rc)
{
	curl_off_t first = 0;

	if (rc == CURLE_RECV_ERROR && strstr(x->errbuf, "Too large response headers") != NULL)
		return 2;
	return rc == CURLE_OUT_OF_MEMORY && x->bytes == x->resume_from
	       && curl_easy_getinfo(x->easy, CURLINFO_STARTTRANSFER_TIME_T, &first) == CURLE_OK
	       && first > 0;
}

/* A chunked body whose chunk sizes are not hex (curl: "Illegal or missing
 * hexadecimal sequence in chunked-encoding", "Malformed encoding found in
 * chunked-encoding"): the server's encoder, which will do it again.  A cut
 * connection is CURLE_PARTIAL_FILE instead. */
static int
bad_chunked(const xfer *x, CURLcode rc)
{
	return rc == CURLE_RECV_ERROR && strstr(x->errbuf, "chunked-encoding") != NULL;
}

static outcome
classify(const xfer *x, CURLcode rc, long code)
{
	if (x->too_large || x->write_errno)
		return OUTCOME_PERMANENT;       /* a retry would hit the same limit or disk */
	if (x->unasked_206 || headers_too_large(x, rc) || bad_chunked(x, rc))
		return OUTCOME_PERMANENT;       /* the server's answer to this request */
	switch (rc) {
	case CURLE_OK:
		/* a 206 without a body never reached on_body */
		if (code >= 200 && code < 300 && x->bytes > 0 && !(code == 206 && x->resume_from == 0))
			return OUTCOME_OK;
		return OUTCOME_PERMANENT;
	case CURLE_HTTP_RETURNED_ERROR:
		switch (code) {
		case 408: case 429: case 500: case 502: case 503: case 504:
			return OUTCOME_TRANSIENT;
		default:
			return OUTCOME_PERMANENT;
		}
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return OUTCOME_TRANSIENT;
	default:
		return OUTCOME_PERMANENT;
	}
}

/* Failures that say "too many requests", not "bad URL": they halve the
 * host's window.  A 500 is the application's error, not the load. */
static int
overload_sign(CURLcode rc, long code)
{
	switch (rc) {
	case CURLE_HTTP_RETURNED_ERROR:
		return code == 408 || code == 429 || (code >= 502 && code <= 504);
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
		return 1;
	default:
		return 0;
	}
}

static void
describe_failure(const xfer *x, CURLcode rc, long code, char *out, size_t outlen)
{
	const cfg *c = x->f->c;
	double pretransfer = 0;
	curl_off_t clen = -1;
	long connect_code = 0, port;
	char name[256];

	/* pretransfer, not connect time: on a reused connection the connect
	 * time is 0 although the request was sent */
	curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME, &pretransfer);
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
	if (x->unasked_206 || (rc == CURLE_OK && code == 206 && x->resume_from == 0)) {
		snprintf(out, outlen, "HTTP 206 Partial Content to a request without Range%s%s%s",
		         x->crange[0] ? " (Content-Range: " : "", x->crange, x->crange[0] ? ")" : "");
		return;
	}
	if (bad_chunked(x, rc)) {
		snprintf(out, outlen, "malformed chunked encoding: %s", x->errbuf);
		return;
	}
	switch (headers_too_large(x, rc)) {
	case 1:
		snprintf(out, outlen, "response headers too large (a line over 100 KB)");
		return;
	case 2:
		snprintf(out, outlen, "response headers too large (over 300 KB in all)");
		return;
	}
	if (rc != CURLE_OK && curl_easy_getinfo(x->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code) == CURLE_OK
	    && connect_code >= 300) {
		snprintf(out, outlen, "the proxy answered HTTP %ld to CONNECT", connect_code);
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
		/* curl reports the length as -1 once it refused it: the header's */
		if (clen < 0)
			clen = x->hdr_clen;
		if (clen < 0)
			snprintf(out, outlen, "too large: more than %llu bytes (max_bytes)",
			         (unsigned long long)c->max_bytes);
		else
			snprintf(out, outlen, "too large: Content-Length %lld > max_bytes %llu",
			         (long long)(clen + (curl_off_t)x->resume_from), (unsigned long long)c->max_bytes);
		return;
	case CURLE_OPERATION_TIMEDOUT:
		if (x->stalled)
			snprintf(out, outlen, "stalled: under %ld bytes/s for %ld s",
			         c->low_speed_limit, c->low_speed_time);
		else if (pretransfer <= 0)      /* curl cuts a connect at the smaller of the two */
			snprintf(out, outlen, "connect timeout after %ld s",
			         c->timeout > 0 && c->timeout < c->connect_timeout ? c->timeout : c->connect_timeout);
		else if (!x->answered)
			snprintf(out, outlen, "no response in %ld s", c->timeout);
		else
			snprintf(out, outlen, "timeout after %ld s", c->timeout);
		return;
	case CURLE_TOO_MANY_REDIRECTS:
		snprintf(out, outlen, "too many redirects (max_redirects %d)", c->max_redirects);
		return;
	case CURLE_UNSUPPORTED_PROTOCOL: {
		long redirects = 0;
		curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_COUNT, &redirects);
		if (not_http(x, rc))
			snprintf(out, outlen, "not an HTTP response (no status line)");
		else if (redirects > 0)     /* curl refuses the scheme once it follows the Location */
			snprintf(out, outlen, "redirect to a non-http(s) URL refused");
		else
			snprintf(out, outlen, "unsupported protocol: %s",
			         x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		return;
	}
	case CURLE_COULDNT_RESOLVE_HOST:
		tried_host(x, name, sizeof name, &port);
		snprintf(out, outlen, "cannot resolve host %s", name);
		return;
	case CURLE_COULDNT_CONNECT: {
		long oserr = 0;
		curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
		tried_host(x, name, sizeof name, &port);
		if (via_proxy(x, name, port))
			snprintf(out, outlen, "cannot connect to the proxy: %s", x->errbuf);
		else
			snprintf(out, outlen, "cannot connect to %s port %ld: %s", name, port,
			         oserr ? strerror((int)oserr) : x->errbuf);
		return;
	}
	case CURLE_PARTIAL_FILE:
		/* no Content-Length (chunked): there is no "of" to tell */
		if (clen < 0)
			snprintf(out, outlen, "truncated body: connection closed after %llu bytes",
			         (unsigned long long)x->bytes);
		else if (x->can_resume < 0)     /* decoded bytes are no measure of the wire's length */
			snprintf(out, outlen, "truncated body: connection closed before the %lld bytes of its "
			         "Content-Length (content-encoded)", (long long)clen);
		else
			snprintf(out, outlen, "truncated body: got %llu of %lld bytes",
			         (unsigned long long)x->bytes, (long long)(clen + (curl_off_t)x->resume_from));
		return;
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		snprintf(out, outlen, "connection closed: %s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		return;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
		snprintf(out, outlen, "TLS: %s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		return;
	default:
		snprintf(out, outlen, "%s%s%s", curl_easy_strerror(rc),
		         x->errbuf[0] ? ": " : "", x->errbuf);
		return;
	}
}

/* Queue x to start later (a retry's backoff, or its host is busy). */
static void
pending_add(fetch *f, xfer *x)
{
	f->pending[f->npending++] = x;
	x->host->waiting++;
}

static xfer *
pending_take(fetch *f, int i)
{
	xfer *x = f->pending[i];

	memmove(&f->pending[i], &f->pending[i + 1], (size_t)(f->npending - i - 1) * sizeof *f->pending);
	f->npending--;
	x->host->waiting--;
	return x;
}

/* Backoff before attempt n+1: retry_delay * 2^(n-1), times 0.5..1.5, capped. */
static long long
backoff_ms(fetch *f, int n)
{
	double d = (double)f->c->retry_delay_ms;

	for (int i = 1; i < n && d < 1e9; i++)
		d *= 2;
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	d *= 0.5 + (double)(f->rng % 1000) / 1000.0;
	if (d > (double)f->c->max_retry_wait_ms)
		d = (double)f->c->max_retry_wait_ms;
	return (long long)d;
}

/* x cannot go on because its host is paused.  Not its outcome: the reason
 * is one state.c takes as not final, so the next run tries it again, and
 * metrics.c counts it in the class of what paused the host. */
static void
fail_paused(fetch *f, xfer *x)
{
	char reason[REASON_LEN];

	snprintf(reason, sizeof reason, "host %s:%ld paused after %d consecutive failures (last: %s)",
	         x->host->name, x->host->port, x->host->paused, x->host->last_reason);
	xfer_fail(f, x, reason);
}

/* A transfer ended: hand the file to the workers, retry it, or record why not. */
static void
xfer_done(fetch *f, xfer *x, CURLcode rc)
{
	long code = 0;
	curl_off_t retry_after = 0;
	char *ctype = NULL, reason[REASON_LEN], final[REASON_LEN + 32];
	host *h = x->host;
	outcome oc;
	double dt;
	job *j;
	int absorbed = 0, elsewhere = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ctype);
	curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
	running_remove(f, x);
	xfer_flush(x);
	/* a recycled file may be longer than this body: cut it to what was
	 * written (also what a resumed retry appends to) */
	if (ftruncate(x->fd, (off_t)x->bytes) < 0 && !x->write_errno && rc == CURLE_OK)
		x->write_errno = errno;
	if (close(x->fd) < 0 && !x->write_errno && rc == CURLE_OK)
		x->write_errno = errno;
	x->fd = -1;

	if (rc == CURLE_RANGE_ERROR && x->resume_from > 0) {
		/* the server sent the whole body instead of the rest: start over */
		log_msg(LOG_INFO, "%s: range not honoured, starting over", x->url);
		x->can_resume = 0;
		x->attempts--;
		goto again;
	}
	if (not_http(x, rc) && !x->fresh) {
		long conns = 1;
		curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &conns);
		if (conns == 0) {
			/* junk on a kept-alive connection is most likely what an
			 * earlier answer left behind (more body than it announced,
			 * sent late, after curl had pooled the connection), not
			 * this URL's answer.  curl closes a connection that read
			 * junk; the retry, uncounted like curl's own on a reused
			 * connection that died, takes a new one */
			log_msg(LOG_INFO, "%s: not an HTTP response on a reused connection, "
			        "trying a new connection", x->url);
			x->fresh = 1;
			x->attempts--;
			goto again;
		}
	}
	oc = classify(x, rc, code);
	if (oc != OUTCOME_OK) {
		/* failed at a host a redirect led to: that one's failure says
		 * nothing of h, which answered (see the top: only a host that
		 * answers nothing is paused) */
		char tname[256];
		long tport;
		tried_host(x, tname, sizeof tname, &tport);
		elsewhere = tport != h->port || strcasecmp(tname, h->name) != 0;
	}
	/* a burst of "busy" answers to one window is one event: only its first
	 * counts towards pausing the host (host_max_failures), or a host that
	 * answers 503 to what exceeds its capacity would be taken for dead.
	 * Only a failure that may pass is a sign of load: one classify calls
	 * permanent (headers too large, bad chunking) is the answer itself */
	if (oc == OUTCOME_TRANSIENT && overload_sign(rc, code) && !elsewhere)
		absorbed = host_overloaded(f, h, x) && rc == CURLE_HTTP_RETURNED_ERROR;
	else if (code > 0)
		host_answered(f, h, x->easy);
	if (oc == OUTCOME_OK) {
		host_up(h, "answers again");
		if (rename(x->part, x->final) < 0) {
			snprintf(reason, sizeof reason, "cannot rename %s: %s", x->part, strerror(errno));
			goto fail;
		}
		/* the name must be durable before a worker writes files under
		 * it.  One sync covers every claim before it, and a download is
		 * claimed a round trip or more before it ends, so this syncs
		 * about once per round trip, not once per download: each
		 * fdatasync stops this loop for a disk write (2,000 small
		 * files: 0.13 s of this thread's CPU, bench/NOTES.md) */
		if (x->claim > f->claims_synced) {
			names_sync(f->reg);
			f->claims_synced = f->claims;
		}
		/* room is reserved for every transfer in flight (see top), so this
		 * push only fails when the queue was closed under us */
		if ((j = job_new(x->url, x->final, ctype, 1, x->name))) {
			j->recycle = f->spares;
			if (x->has_ticket) {
				j->on_end = job_ended;
				j->end_arg = f;
				j->ticket = x->ticket;
				j->again = x->again;
			}
		}
		if (!j || jobq_push(f->q, j) < 0) {
			job_free(j);
			unlink(x->final);
			snprintf(reason, sizeof reason, "internal error: resize queue unavailable");
			goto fail;
		}
		dt = mono_since(&x->started);
		f->done_ok++;
		STAT_ADD(f->st, downloaded, 1);
		stats_observe(&f->st->download, dt);
		log_msg(LOG_INFO, "downloaded %s -> %s (%llu bytes, %.2f s, attempt %d)", x->url, x->final,
		        (unsigned long long)x->bytes, dt, x->attempts);
		x->has_ticket = 0;      /* the job's now */
		host_forget_if_idle(f, h);
		xfer_free(x);
		return;
	}

	describe_failure(x, rc, code, reason, sizeof reason);
	if (oc == OUTCOME_TRANSIENT) {
		long long now = mono_ms();
		int last = x->attempts > f->c->retries;
		/* no status line: the host may be down, each attempt counts; an
		 * answer counts only once retries could not get past it (see
		 * the top: a storm of busy answers is not a dead host) */
		if (!elsewhere && (code == 0 || (last && !absorbed)))
			host_failed(f, h, reason);
		if (retry_after > 0) {
			long long wait = (long long)retry_after * 1000;
			if (wait > f->c->max_retry_wait_ms)
				wait = f->c->max_retry_wait_ms;
			if (now + wait > h->not_before)
				h->not_before = now + wait;
			log_msg(LOG_INFO, "%s: Retry-After %lld s, holding host %s for %lld ms", x->url,
			        (long long)retry_after, h->name, wait);
		}
		if (!last && atomic_load(&f->stop)) {
			/* stopping: it had retries left, so no outcome yet;
			 * abandoned like the transfers in flight (abandon_all),
			 * the next run does it */
			log_msg(LOG_INFO, "%s: %s; stopping, left for the next run", x->url, reason);
			STAT_ADD(f->st, abandoned, 1);
			unlink(x->part);
			host_forget_if_idle(f, h);
			xfer_free(x);
			return;
		}
		if (!last && host_cooling(h)) {
			/* it had retries left: not an outcome of its own */
			fail_paused(f, x);
			return;
		}
		if (!last) {
			x->not_before = now + backoff_ms(f, x->attempts);
			log_msg(LOG_INFO, "retry %d of %d for %s in %lld ms: %s", x->attempts,
			        f->c->retries, x->url, x->not_before - now, reason);
			STAT_ADD(f->st, retries, 1);
			goto again;
		}
	} else if (rc == CURLE_COULDNT_RESOLVE_HOST) {
		if (!elsewhere)
			host_failed(f, h, reason);      /* no such host, maybe for now */
	} else if (!x->write_errno) {
		host_up(h, "answers again");    /* it answered; it is the URL that is bad */
	}
fail:
	if (x->attempts > 1) {
		snprintf(final, sizeof final, "%s (after %d attempts)", reason, x->attempts);
		xfer_fail(f, x, final);
	} else {
		xfer_fail(f, x, reason);
	}
	return;
again:
	curl_easy_cleanup(x->easy);
	x->easy = NULL;
	pending_add(f, x);
}

/* --- the loop ----------------------------------------------------------- */

/* How often check_stalls looks, in ms: a stall is cut at most about this
 * much after low_speed_time. */
#define STALL_CHECK_MS 500

/* low_speed_limit / low_speed_time, from the first byte of the response
 * on: a transfer that got fewer than limit x time bytes in a window of
 * time seconds is cut; the window moves on each time it got them.  Not
 * curl's CURLOPT_LOW_SPEED_*, which also counts the wait for the first
 * byte: a server that takes 25 s to make an image would fail as
 * "stalled" under the default 20 s although timeout is 60 (aria2, too,
 * checks its lowest speed on the body only).  The wait for the answer is
 * the timeout's alone.  One pass over the transfers in flight, every
 * STALL_CHECK_MS: curl's own check woke the loop every second per
 * transfer. */
static void
check_stalls(fetch *f)
{
	long long now = mono_ms(), window = f->c->low_speed_time * 1000;
	uint64_t quota = (uint64_t)f->c->low_speed_limit * (uint64_t)f->c->low_speed_time;
	xfer *x, *next;

	if (now - f->last_stall_check < STALL_CHECK_MS)
		return;
	f->last_stall_check = now;
	for (x = f->running; x; x = next) {
		next = x->next;         /* xfer_done takes x out of the list */
		if (!x->answered)
			continue;
		if (x->rx - x->ls_rx >= quota) {
			x->ls_at = now;
			x->ls_rx = x->rx;
		} else if (now - x->ls_at >= window) {
			x->stalled = 1;
			xfer_done(f, x, CURLE_OPERATION_TIMEDOUT);
		}
	}
}

/* An image another program put into incoming/ (daemon): straight to the
 * queue, named after its file like --files does.  When it cannot be queued
 * the failure is recorded and its ticket ended, unless that failure is this
 * machine's or cannot be recorded: then the file stays and its ticket is
 * kept (ticket_end), as a worker's local failure does. */
static void
handoff(fetch *f, const char *path, watch_ticket t)
{
	char stem[NAME_STEM_MAX + 1], ext[NAME_EXT_MAX + 1], uniq[NAME_MAX_OUT], err[256];
	struct stat sb;
	job *j = NULL;
	int rc;

	if (lstat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		watch_done(f->w, t);    /* gone already (a later arrival has its own event) */
		return;
	}
	STAT_ADD(f->st, urls, 1);
	name_from_path(path, stem, ext);
	/* 1 = the same file name was handed off before in this run: a new
	 * picture under an old name, made again under the same name */
	rc = names_claim(f->reg, path, stem, uniq, err, sizeof err);
	if (rc >= 0 && names_sync(f->reg) < 0) {
		snprintf(err, sizeof err, "cannot sync the name registry");
		rc = -1;
	}
	if (rc >= 0 && (j = job_new(path, path, NULL, 1, uniq))) {
		j->on_end = job_ended;
		j->end_arg = f;
		j->ticket = ticket_pack(t);
		j->handoff = 1;
		j->hdev = sb.st_dev;
		j->hino = sb.st_ino;
		j->hctim = sb.st_ctim;
		j->again = watch_tries(f->w, t) > 0;
		if (jobq_push(f->q, j) == 0) {
			log_msg(LOG_INFO, "handed off %s", path);
			return;
		}
		snprintf(err, sizeof err, "internal error: resize queue unavailable");
	} else if (rc >= 0) {
		snprintf(err, sizeof err, "out of memory");
	}
	job_free(j);
	stats_fail(f->st, err);
	rc = state_record_failure(path, err, watch_tries(f->w, t) > 0);
	if (rc < 0 || !state_reason_is_final(err)) {
		ticket_end(f, t, 1, path, NULL);        /* the image stays */
		return;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		log_msg(LOG_WARNING, "cannot delete %s: %s", path, strerror(errno));
	watch_done(f->w, t);
}

/* The next URL from the lists or the watch as an xfer, or NULL when there
 * is none now (lists: exhausted).  Unusable lines are recorded and skipped
 * here, and so are hand-off images (queued directly). */
static xfer *
next_from_lists(fetch *f)
{
	const char *line, *reason;
	watch_ticket t;
	xfer *x;
	int keep = 0;

	while (f->w) {
		switch (watch_next(f->w, &line, &reason, &t)) {
		case WATCH_NONE:
			return NULL;
		case WATCH_BAD:
			STAT_ADD(f->st, urls, 1);
			ticket_end(f, t, fail_line(f, line, reason) < 0, line, reason);
			continue;
		case WATCH_IMAGE:
			handoff(f, line, t);
			/* it took a queue slot: check for room again */
			if ((size_t)f->in_flight + jobq_len(f->q) >= jobq_capacity(f->q))
				return NULL;
			continue;
		case WATCH_URL:
			STAT_ADD(f->st, urls, 1);
			if ((x = xfer_new(f, line, &t, &keep))) {
				x->ticket = ticket_pack(t);
				x->has_ticket = 1;
				x->again = watch_tries(f->w, t) > 0;
				return x;
			}
			ticket_end(f, t, keep, line, NULL);    /* skipped or failed at once */
			keep = 0;
			continue;
		}
	}
	for (;;) {
		switch (urllist_next(f->lists, &line, &reason)) {
		case URLLIST_END:
			f->lists_done = 1;
			return NULL;
		case URLLIST_WAIT:
			list_arm(f, urllist_fd(f->lists));
			return NULL;
		case URLLIST_ERROR:
			log_msg(LOG_ERROR, "%s", reason);
			stats_fail(f->st, reason);
			continue;
		case URLLIST_BAD:
			STAT_ADD(f->st, urls, 1);
			fail_line(f, line, reason);
			continue;
		case URLLIST_URL:
			STAT_ADD(f->st, urls, 1);
			if ((x = xfer_new(f, line, NULL, &keep)))
				return x;
			continue;
		}
	}
}

/* When may x start?  -1: not now, its host is paused and cooling down;
 * else a time in ms, which may be in the past. */
static long long
start_time(const fetch *f, const xfer *x)
{
	const host *h = x->host;
	long long t = x->not_before, last;

	if (host_cooling(h))
		return -1;
	if (h->not_before > t)
		t = h->not_before;
	last = f->c->host_delay_ms ? site_last_start(f, h) : 0;
	if (last && last + f->c->host_delay_ms > t)
		t = last + f->c->host_delay_ms;
	return t;
}

/* Room to take another entry from the lists or the watch: a queue slot
 * for every transfer (see the top), the FIFO not nearly full. */
static int
can_read(const fetch *f)
{
	return f->npending < f->read_limit && f->in_flight < f->c->connections
	       && (size_t)f->in_flight + jobq_len(f->q) < jobq_capacity(f->q);
}

/* URLs read from the lists per turn of the loop while anything is in
 * flight (see start_transfers), and while nothing is: entries that end at
 * once (a paused host's, already done, a round of kept entries coming
 * due) would else be read all in one turn, and the loop, its heartbeat
 * and the offsets it saves wait meanwhile (70,000 of a paused host: 3 s;
 * each round of their retries as long again). */
#define READ_TURN 16
#define READ_TURN_IDLE 1024

/* Start what may start now; returns the poll timeout in ms until the first
 * pending transfer becomes startable by time alone (-1: none). */
static long long
start_transfers(fetch *f)
{
	size_t cap = jobq_capacity(f->q);
	long long now = mono_ms(), next = -1;
	int read = 0;

	for (int i = 0; i < f->npending;) {
		xfer *x = f->pending[i];
		long long t = start_time(f, x);
		if (t < 0) {
			fail_paused(f, pending_take(f, i));
			continue;
		}
		if (f->in_flight >= f->c->connections || (size_t)f->in_flight + jobq_len(f->q) >= cap)
			return next;
		if (t > now) {
			if (next < 0 || t - now < next)
				next = t - now;
		} else if (x->host->active < host_limit(f, x->host)) {
			xfer_start(f, pending_take(f, i));
			continue;
		}
		i++;
	}
	while (!f->lists_done && can_read(f)) {
		xfer *x = next_from_lists(f);
		long long t;
		if (!x)
			break;
		t = start_time(f, x);
		if (t < 0) {
			fail_paused(f, x);
		} else if (t > now || x->host->active >= host_limit(f, x->host)) {
			if (t > now && (next < 0 || t - now < next))
				next = t - now;
			pending_add(f, x);
		} else {
			xfer_start(f, x);
		}
		/* Reading ahead costs a name claim on disk per URL, and
		 * what is in flight waits meanwhile: a transfer started is
		 * only queued in curl until the loop gives it a turn (to
		 * connect, then to send).  So the lists are read in short
		 * turns, and the first requests go out at once. */
		if (++read >= READ_TURN && (f->in_flight > 0 || read >= READ_TURN_IDLE))
			return 0;
	}
	return next;
}

/* Stop: transfers in flight and pending are abandoned, not recorded: they
 * have no outcome yet, and the next run does them. */
static void
abandon_all(fetch *f)
{
	long n = 0;

	while (f->running) {
		xfer *x = f->running;
		running_remove(f, x);
		unlink(x->part);
		xfer_free(x);
		n++;
	}
	while (f->npending > 0) {
		xfer *x = pending_take(f, f->npending - 1);
		unlink(x->part);
		xfer_free(x);
		n++;
	}
	STAT_ADD(f->st, abandoned, n);
	if (n)
		log_msg(LOG_WARNING, "interrupted: %ld transfers abandoned, the next run does them", n);
}

/* One wait of the loop: up to wait ms for curl's sockets, a nudge or the
 * watch, then curl is told what happened.  0 / -1 (curl failed). */
static int
loop_wait(fetch *f, long long wait)
{
	struct epoll_event ev[64];
	int n, running;
	long long now = mono_ms();

	if (f->timer_at >= 0 && (wait < 0 || f->timer_at - now < wait))
		wait = f->timer_at > now ? f->timer_at - now : 0;
	n = epoll_wait(f->epfd, ev, (int)(sizeof ev / sizeof ev[0]), (int)wait);
	if (n < 0 && errno != EINTR) {
		log_msg(LOG_ERROR, "epoll_wait: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int fd = ev[i].data.fd, mask = 0;
		if (fd == f->wakefd) {
			uint64_t v;
			if (read(f->wakefd, &v, sizeof v) < 0) {
				/* EAGAIN: another read took it; nothing to do */
			}
			continue;
		}
		if (f->w && fd == watch_fd(f->w)) {
			if (watch_handle(f->w) < 0)
				return -1;
			continue;
		}
		if (fd == f->list_fd) {
			f->list_fd = -1;        /* disarmed by its one shot; start_transfers reads it */
			continue;
		}
		if (ev[i].events & EPOLLIN)
			mask |= CURL_CSELECT_IN;
		if (ev[i].events & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (ev[i].events & (EPOLLERR | EPOLLHUP))
			mask |= CURL_CSELECT_ERR;
		if (curl_multi_socket_action(f->multi, fd, mask, &running) != CURLM_OK)
			return -1;
	}
	if (f->timer_at >= 0 && mono_ms() >= f->timer_at) {
		f->timer_at = -1;       /* curl may set a new one from inside */
		if (curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
			return -1;
	}
	return 0;
}

int
fetch_run(fetch *f)
{
	const cfg *prev_c = NULL;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &f->t0);
	for (;;) {
		long long wait, next;
		CURLMsg *m;
		int left;

		atomic_fetch_add(&f->beats, 1);
		/* a reload: published before use, so main frees an old config
		 * only once this loop has let go of it (fetch_uses) */
		do {
			f->c = atomic_load(&f->next_c);
			atomic_store(&f->hazard, f->c);
		} while (atomic_load(&f->next_c) != f->c);
		if (f->c != prev_c) {
			/* a reload (SIGHUP) is the operator's word that things
			 * changed: paused hosts are tried again at once */
			if (prev_c)
				hosts_resume(f);
			prev_c = f->c;
		}
		if (atomic_load(&f->stop)) {
			abandon_all(f);
			break;
		}
		if (f->w) {
			long a, b;
			fetch_collect(f);
			watch_counts(f->w, &a, &b);
			atomic_store(&f->w_sources, a);
			atomic_store(&f->w_outstanding, b);
			if (mono_ms() - f->last_save >= 1000) {
				char err[256];
				if (watch_save(f->w, err, sizeof err) < 0)
					log_msg(LOG_WARNING, "%s", err);
				f->last_save = mono_ms();
			}
		}
		wait = start_transfers(f);
		if (!f->w && f->in_flight == 0 && f->lists_done && f->npending == 0)
			break;
		/* one-shot: a safety net of a second; daemon: idle means asleep
		 * (the watch, a worker, a signal or the watchdog wake it) */
		if (wait < 0 || wait > (f->w ? 60000 : 1000))
			wait = f->w ? 60000 : 1000;
		if (f->in_flight > 0 && wait > STALL_CHECK_MS)
			wait = STALL_CHECK_MS;      /* check_stalls */
		/* a followed file's grace period, a kept entry's retry: work
		 * that only watch_next() takes, so only while there is room
		 * for it (a due one would else make every wait 0 until then) */
		if (f->w && can_read(f) && (next = watch_timeout(f->w)) >= 0 && next < wait)
			wait = next;
		if (loop_wait(f, wait) < 0) {
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
		/* after the finished ones are out: a body that just completed
		 * is never cut as a stall */
		check_stalls(f);
	}
	names_sync(f->reg);
	log_msg(LOG_INFO, "downloaded %ld images in %.2f seconds", f->done_ok, mono_since(&f->t0));
	/* Nothing more to download, while the workers may have a full queue
	 * ahead of them: free what only downloads need now, on this thread,
	 * rather than after the last thumbnail (20 ms of unlinks and closes
	 * at the end of 200 photos, bench/NOTES.md). */
	spares_retire(f->spares);
	curl_multi_cleanup(f->multi);
	f->multi = NULL;
	return rc;
}
