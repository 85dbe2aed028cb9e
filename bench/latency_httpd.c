/*
 * latency_httpd: the loopback HTTP/1.1 server of `make bench`'s end-to-end
 * sections.  Binds 127.0.0.1 only.
 *
 *   latency_httpd --root DIR [--delay SECS] [--port N] [--port-file F]
 *
 * GET /img/<copy>-<name>  waits --delay seconds (WAN latency, per request),
 *                         then answers with DIR/<name>; keep-alive.  <copy>
 *                         is any prefix without '-', so one file is served
 *                         under many names.
 * anything else           404 at once.
 *
 * Prints "http://127.0.0.1:PORT/" once listening; serves until SIGTERM.
 *
 * Why C: the server runs on the same two cores as the tool it serves, and a
 * remote server's CPU is not on the client's machine.  The Python asyncio
 * server before it took 0.13-0.17 CPU-seconds per end-to-end run and
 * 0.3-0.65 per run of 2,000 small URLs, out of what thumbd's workers had.
 * Shape: one epoll loop; every file read once into one buffer with its
 * response header; one delay for every request, so the requests waiting
 * form a FIFO that is also the order in which they fall due.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IN_MAX 8192             /* a request head larger than this is refused */
#define MAX_FILE (256L << 20)

static const char not_found[] =
	"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
	"Server: thumbd-bench/1\r\n\r\nnot found\n";
static const char bad_request[] =
	"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

typedef struct file {
	char *name;
	char *resp;             /* header + body */
	size_t len;
} file;

enum { READING, WAITING, WRITING };

typedef struct conn {
	int fd, state, close_after;
	int off_epoll;          /* taken out while WAITING after a hang-up or error */
	size_t inlen, used;     /* bytes in in[]; of which the current request's */
	const char *out;
	size_t outlen, off;
	long long due;          /* ms, while WAITING */
	struct conn *qnext;
	char in[IN_MAX];
} conn;

static file *files;
static size_t nfiles;
static int ep;
static long long delay_ms;
static conn *qhead, *qtail;
static volatile sig_atomic_t stop;

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const file *)a)->name, ((const file *)b)->name);
}

static const char *
ctype(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")))
		return "image/jpeg";
	if (dot && !strcasecmp(dot, ".png"))
		return "image/png";
	if (dot && !strcasecmp(dot, ".webp"))
		return "image/webp";
	return "application/octet-stream";
}

/* Every regular file of root not starting with '.', read into memory. */
static int
load(const char *root)
{
	DIR *d = opendir(root);
	struct dirent *de;
	size_t cap = 0;

	if (!d) {
		fprintf(stderr, "latency_httpd: %s: %s\n", root, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		char path[4096], head[256];
		struct stat sb;
		int fd, hl;
		file *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", root, de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > MAX_FILE) {
			close(fd);
			continue;
		}
		if (nfiles == cap) {
			cap = cap ? 2 * cap : 64;
			if (!(files = realloc(files, cap * sizeof *files)))
				goto oom;
		}
		f = &files[nfiles];
		hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
		              "Content-Length: %lld\r\nServer: thumbd-bench/1\r\n\r\n",
		              ctype(de->d_name), (long long)sb.st_size);
		f->len = (size_t)hl + (size_t)sb.st_size;
		if (!(f->resp = malloc(f->len)) || !(f->name = strdup(de->d_name)))
			goto oom;
		memcpy(f->resp, head, (size_t)hl);
		for (size_t off = (size_t)hl; off < f->len;) {
			ssize_t n = read(fd, f->resp + off, f->len - off);
			if (n <= 0) {
				fprintf(stderr, "latency_httpd: cannot read %s\n", path);
				close(fd);
				closedir(d);
				return -1;
			}
			off += (size_t)n;
		}
		close(fd);
		nfiles++;
	}
	closedir(d);
	qsort(files, nfiles, sizeof *files, by_name);
	return 0;
oom:
	fprintf(stderr, "latency_httpd: out of memory\n");
	closedir(d);
	return -1;
}

static void
watch(conn *c, unsigned events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	epoll_ctl(ep, c->off_epoll ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
	c->off_epoll = 0;
}

static void
drop(conn *c)
{
	close(c->fd);           /* also leaves the epoll set */
	free(c);
}

static int serve(conn *c);

/* Send what is left of the answer; then the next request, if any.
 * -1: c was closed and freed. */
static int
flush_out(conn *c)
{
	while (c->off < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->off, c->outlen - c->off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (c->state != WRITING)
				watch(c, EPOLLOUT);
			c->state = WRITING;
			return 0;
		}
		if (n <= 0) {
			drop(c);
			return -1;
		}
		c->off += (size_t)n;
	}
	if (c->close_after) {
		drop(c);
		return -1;
	}
	memmove(c->in, c->in + c->used, c->inlen - c->used);
	c->inlen -= c->used;
	c->used = 0;
	if (c->state != READING)
		watch(c, EPOLLIN);
	c->state = READING;
	return serve(c);
}

static int
answer(conn *c, const char *resp, size_t len)
{
	c->out = resp;
	c->outlen = len;
	c->off = 0;
	return flush_out(c);
}

/* A whole request head in c->in, if there is one: answer it, or queue it
 * for the delay.  -1: c was closed and freed. */
static int
serve(conn *c)
{
	char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4), *sp, *path, *q;
	file key, *f = NULL;

	if (!end) {
		if (c->inlen == sizeof c->in) {
			c->close_after = 1;
			return answer(c, bad_request, sizeof bad_request - 1);
		}
		return 0;
	}
	*end = '\0';
	c->used = (size_t)(end - c->in) + 4;
	c->close_after = strcasestr(c->in, "connection: close") != NULL;
	if (!(sp = strchr(c->in, ' '))) {
		c->close_after = 1;
		return answer(c, bad_request, sizeof bad_request - 1);
	}
	path = sp + 1;
	path[strcspn(path, " ?\r\n")] = '\0';
	if (!strncmp(path, "/img/", 5) && (q = strchr(path + 5, '-'))) {
		key.name = q + 1;
		f = bsearch(&key, files, nfiles, sizeof *files, by_name);
	}
	if (!f)
		return answer(c, not_found, sizeof not_found - 1);
	c->out = f->resp;
	c->outlen = f->len;
	c->off = 0;
	c->state = WAITING;
	watch(c, 0);
	c->qnext = NULL;
	if (qtail)
		qtail->qnext = c;
	else
		qhead = c;
	qtail = c;
	c->due = now_ms() + delay_ms;
	return 0;
}

static void
on_readable(conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			drop(c);
			return;
		}
		c->inlen += (size_t)n;
		if (serve(c) < 0 || c->state != READING || c->inlen == sizeof c->in)
			return;
	}
}

int
main(int argc, char **argv)
{
	const char *root = NULL, *port_file = NULL;
	double delay = 0.1;
	int port = 0, lfd, one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof sa;
	struct sigaction act = { .sa_handler = on_signal };
	struct epoll_event ev = { .events = EPOLLIN }, evs[256];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--root") && i + 1 < argc)
			root = argv[++i];
		else if (!strcmp(argv[i], "--delay") && i + 1 < argc)
			delay = atof(argv[++i]);
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--port-file") && i + 1 < argc)
			port_file = argv[++i];
		else
			root = NULL, i = argc;
	}
	if (!root || delay < 0 || port < 0 || port > 65535) {
		fprintf(stderr, "usage: latency_httpd --root DIR [--delay SECS] [--port N] [--port-file F]\n");
		return 2;
	}
	delay_ms = (long long)(delay * 1000 + 0.5);
	if (load(root) < 0)
		return 1;
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((unsigned short)port);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0
	    || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
	    || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0
	    || getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0
	    || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		fprintf(stderr, "latency_httpd: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
		return 1;
	}
	ev.data.ptr = NULL;     /* NULL: the listening socket */
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	port = ntohs(sa.sin_port);
	if (port_file) {
		char tmp[4096];
		FILE *pf;
		snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
		if (!(pf = fopen(tmp, "w")) || fprintf(pf, "%d\n", port) < 0 || fclose(pf) != 0
		    || rename(tmp, port_file) < 0) {
			fprintf(stderr, "latency_httpd: cannot write %s\n", port_file);
			return 1;
		}
	}
	printf("http://127.0.0.1:%d/\n", port);
	fflush(stdout);

	while (!stop) {
		long long now = now_ms(), wait = -1;
		int n;

		while (qhead && qhead->due <= now) {
			conn *c = qhead;
			if (!(qhead = c->qnext))
				qtail = NULL;
			flush_out(c);
		}
		if (qhead)
			wait = qhead->due - now;
		if ((n = epoll_wait(ep, evs, (int)(sizeof evs / sizeof *evs), (int)wait)) < 0) {
			if (errno == EINTR)
				continue;
			perror("latency_httpd: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			conn *c = evs[i].data.ptr;
			if (!c) {
				int fd;
				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct epoll_event cev = { .events = EPOLLIN };
					if (!(c = calloc(1, sizeof *c))) {
						close(fd);
						continue;
					}
					c->fd = fd;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					cev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				}
			} else if (c->state == WRITING) {
				flush_out(c);
			} else if (c->state == READING) {
				on_readable(c);
			} else if (!c->off_epoll) {
				/* WAITING: only a hang-up or an error is reported; it
				 * would be reported again and again until the answer
				 * is due, which then fails and closes the connection */
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				c->off_epoll = 1;
			}
		}
	}
	return 0;
}
