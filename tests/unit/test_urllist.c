/* Unit tests: URL list reading (urllist.c). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "urllist.h"

static char path1[] = "/tmp/thumbd-test-list1-XXXXXX", path2[] = "/tmp/thumbd-test-list2-XXXXXX";
static char path3[] = "/tmp/thumbd-test-list3-XXXXXX", path4[] = "/tmp/thumbd-test-list4-XXXXXX";
static char dir1[] = "/tmp/thumbd-test-listdir-XXXXXX";

static void
fill(char *tmpl, const char *text, size_t len)
{
	int fd = mkstemp(tmpl);

	CHECK(fd >= 0);
	CHECK(write(fd, text, len) == (ssize_t)len);
	close(fd);
}

static void
expect(urllist *l, urllist_kind kind, const char *want_line)
{
	const char *line = NULL, *reason = NULL;
	urllist_kind k = urllist_next(l, &line, &reason);

	CHECK_INT(k, kind);
	if (want_line)
		CHECK_STR(line, want_line);
}

int
main(void)
{
	static const char list1[] =
		"# a comment\n\n   \n  http://a.example/1.jpg  \r\n\thttps://b.example/2.png\t\n"
		"ftp://c.example/3.jpg\nhello\nHTTP://D.EXAMPLE/4.webp\nhttp://\n   # indented comment\n"
		"http://e.example/no-newline-at-end";
	char *big = malloc(URLLIST_LINE_MAX * 2 + 64);
	char *paths[3];
	char err[256];
	urllist *l;
	size_t n;

	fill(path1, list1, sizeof list1 - 1);
	/* a line longer than the cap is reported, not held, and the next line still reads */
	strcpy(big, "http://x.example/");
	n = strlen(big);
	memset(big + n, 'a', URLLIST_LINE_MAX * 2);
	n += URLLIST_LINE_MAX * 2;
	memcpy(big + n, "\nhttp://f.example/5.jpg\n", 25);
	fill(path2, big, strlen(big));
	free(big);

	paths[0] = path1;
	paths[1] = path2;
	l = urllist_open(paths, 2, err, sizeof err);
	CHECK(l != NULL);
	if (l) {
		expect(l, URLLIST_URL, "http://a.example/1.jpg");
		expect(l, URLLIST_URL, "https://b.example/2.png");
		expect(l, URLLIST_BAD, "ftp://c.example/3.jpg");
		expect(l, URLLIST_BAD, "hello");
		expect(l, URLLIST_URL, "HTTP://D.EXAMPLE/4.webp");
		expect(l, URLLIST_BAD, "http://");
		expect(l, URLLIST_URL, "http://e.example/no-newline-at-end");
		expect(l, URLLIST_BAD, NULL);
		expect(l, URLLIST_URL, "http://f.example/5.jpg");
		expect(l, URLLIST_END, NULL);
		expect(l, URLLIST_END, NULL);
		urllist_close(l);
	}

	paths[2] = "/nonexistent/list.txt";
	CHECK(urllist_open(paths, 3, err, sizeof err) == NULL);
	CHECK(strstr(err, "/nonexistent/list.txt") != NULL);

	/* a UTF-8 byte order mark (Windows Notepad) is skipped at the start of
	 * each file, with CRLF; anywhere else it is part of the line */
	{
		static const char bom1[] = "\xef\xbb\xbfhttp://a.example/bom.jpg\r\n\xef\xbb\xbfhttp://a.example/2.jpg\r\n",
		                  bom2[] = "\xef\xbb\xbf# a comment after the mark\nhttps://b.example/3.jpg";
		fill(path3, bom1, sizeof bom1 - 1);
		fill(path4, bom2, sizeof bom2 - 1);
	}
	paths[0] = path3;
	paths[1] = path4;
	l = urllist_open(paths, 2, err, sizeof err);
	CHECK(l != NULL);
	if (l) {
		expect(l, URLLIST_URL, "http://a.example/bom.jpg");
		expect(l, URLLIST_BAD, "\xef\xbb\xbfhttp://a.example/2.jpg");
		expect(l, URLLIST_URL, "https://b.example/3.jpg");
		expect(l, URLLIST_END, NULL);
		urllist_close(l);
	}
	{
		char line[] = "\xef\xbb\xbf  http://c.example/4.jpg ", mid[] = "\xef\xbb\xbfhttp://c.example/5.jpg";
		const char *got = NULL, *why = NULL;
		CHECK_INT(urllist_line(line, sizeof line - 1, 1, 0, &got, &why), URLLIST_URL);
		CHECK_STR(got, "http://c.example/4.jpg");
		CHECK_INT(urllist_line(mid, sizeof mid - 1, 0, 0, &got, &why), URLLIST_BAD);
	}

	/* a NUL byte does not end the line early (the URL before it would be
	 * fetched instead): the line is refused whole, its NULs shown as DEL;
	 * around the text NULs are blanks (a list cut by a crash can end in
	 * zeros), and a comment with one is still a comment */
	{
		static const char nul[] = "http://a.example/x.jpg\0.png\n  http://a.example/y.jpg \0z\n"
		                          "\0http://a.example/x.jpg\0\n#\0comment\n \0\n\0\0\0";
		paths[0] = path3;
		unlink(path3);
		strcpy(path3 + strlen(path3) - 6, "XXXXXX");
		fill(path3, nul, sizeof nul - 1);
		l = urllist_open(paths, 1, err, sizeof err);
		CHECK(l != NULL);
		if (l) {
			const char *line = NULL, *reason = NULL;
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_BAD);
			CHECK_STR(line, "http://a.example/x.jpg\x7f.png");
			CHECK_STR(reason, "invalid URL: a NUL byte in the line");
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_BAD);
			CHECK_STR(line, "http://a.example/y.jpg \x7fz");
			expect(l, URLLIST_URL, "http://a.example/x.jpg");
			expect(l, URLLIST_END, NULL);
			urllist_close(l);
		}
	}

	/* lines over URLLIST_LINE_MAX: a comment or a blank line is skipped
	 * however long (its first non-blank byte may lie past the buffer); a
	 * long URL is BAD under a key that is not a URL (a short one that is
	 * its first 80 bytes stays a URL), differs from line to line past the
	 * buffer and is the same for the same text (trimmed, CRLF or not); a
	 * line with only blanks past the buffer is an ordinary line */
	{
		static const char host[] = "http://x.example/";
		char *text = malloc(16 * 10000), *p = text, shortu[81], *k1 = NULL;
		const char *line = NULL, *reason = NULL;
		char want[128];

		*p++ = '#';
		p = (char *)memset(p, 'c', 9000) + 9000;
		*p++ = '\n';
		p = (char *)memset(p, ' ', 9000) + 9000;
		*p++ = '\n';
		p = (char *)memset(p, ' ', URLLIST_LINE_MAX + 8) + URLLIST_LINE_MAX + 8;
		p += sprintf(p, "# x\n");
		for (int i = 0; i < 3; i++) {
			p += sprintf(p, "%s", host);
			p = (char *)memset(p, 'a', 9000) + 9000;
			p += sprintf(p, "%s", i == 0 ? "/1.jpg\n" : i == 1 ? "/2.jpg\r\n" : "/1.jpg  \r\n");
		}
		snprintf(shortu, sizeof shortu, "%s%063d", host, 0);
		p += sprintf(p, "%s?", shortu);
		p = (char *)memset(p, 'q', 9000) + 9000;
		p += sprintf(p, "\n%s\n%s", shortu, host);
		p = (char *)memset(p, 'a', 8000) + 8000;
		p += sprintf(p, ".jpg");
		p = (char *)memset(p, ' ', 500) + 500;
		*p++ = '\n';
		unlink(path3);
		strcpy(path3 + strlen(path3) - 6, "XXXXXX");
		fill(path3, text, (size_t)(p - text));
		paths[0] = path3;
		l = urllist_open(paths, 1, err, sizeof err);
		CHECK(l != NULL);
		if (l) {
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_BAD);
			CHECK(line && strncmp(line, host, sizeof host - 1) == 0);
			snprintf(want, sizeof want, " ... (%zu bytes, hash ", sizeof host - 1 + 9000 + 6);
			CHECK(line && strstr(line, want) != NULL && strlen(line) < 200);
			CHECK_STR(reason, "line too long");
			k1 = line ? strdup(line) : NULL;
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_BAD);
			CHECK(line && k1 && strcmp(line, k1) != 0);
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_BAD);
			CHECK(line && k1 && strcmp(line, k1) == 0);
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_BAD);
			snprintf(want, sizeof want, "%s ... (", shortu);
			CHECK(line && strncmp(line, want, strlen(want)) == 0);
			expect(l, URLLIST_URL, shortu);
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_URL);
			CHECK(line && strlen(line) == sizeof host - 1 + 8000 + 4);
			expect(l, URLLIST_END, NULL);
			urllist_close(l);
		}
		free(k1);
		free(text);
	}

	/* an image given where a list belongs ("thumbd photo.jpg") is refused
	 * up front, saying what it is, not read as lines of binary */
	{
		static const char jpeg[] = "\xff\xd8\xff\xe0\0\x10JFIF\0\x01\nhttp://a.example/x.jpg\n";
		static const char gif[] = "GIF89a\x01\0\x01\0\nhttp://a.example/y.jpg\n";
		static const char text[] = "http://a.example/z.jpg\n";
		static const struct { const char *bytes; size_t len; const char *says; } cases[] = {
			{ jpeg, sizeof jpeg - 1, "an image (JPEG), not a URL list; for local images: thumbd --files" },
			{ gif, sizeof gif - 1, "an image (GIF), not a URL list" },
			{ text, sizeof text - 1, NULL },
		};
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			char img[] = "/tmp/thumbd-test-listimg-XXXXXX";
			fill(img, cases[i].bytes, cases[i].len);
			paths[0] = img;
			err[0] = 0;
			l = urllist_open(paths, 1, err, sizeof err);
			if (cases[i].says) {
				CHECK(l == NULL);
				CHECK(strstr(err, img) == err);
				CHECK(strstr(err, cases[i].says) != NULL);
			} else {
				CHECK(l != NULL);
				if (l)
					expect(l, URLLIST_URL, "http://a.example/z.jpg");
			}
			urllist_close(l);
			unlink(img);
		}
	}

	/* standard input redirected from an image or a directory is refused up
	 * front too, naming it; from a list file it is read from its start */
	{
		static const char jpeg[] = "\xff\xd8\xff\xe0\0\x10JFIF\0\x01\n";
		static const char text[] = "http://a.example/stdin.jpg\n";
		char img[] = "/tmp/thumbd-test-liststdin-XXXXXX", *dash[1] = { "-" };
		int saved = dup(STDIN_FILENO), fd;
		fill(img, jpeg, sizeof jpeg - 1);
		for (int i = 0; i < 3; i++) {
			if (i == 2) {
				unlink(img);
				strcpy(img + strlen(img) - 6, "XXXXXX");
				fill(img, text, sizeof text - 1);
			}
			fd = open(i == 1 ? "/tmp" : img, O_RDONLY);
			CHECK(fd >= 0 && dup2(fd, STDIN_FILENO) == STDIN_FILENO);
			close(fd);
			err[0] = 0;
			l = urllist_open(dash, 1, err, sizeof err);
			if (i < 2) {
				CHECK(l == NULL);
				CHECK_STR(err, i == 0 ? "standard input: an image (JPEG), not a URL list; "
				                        "for local images: thumbd --files"
				                      : "standard input: cannot read URL list: Is a directory");
			} else {
				CHECK(l != NULL);
				if (l)
					expect(l, URLLIST_URL, "http://a.example/stdin.jpg");
			}
			urllist_close(l);
		}
		dup2(saved, STDIN_FILENO);
		close(saved);
		unlink(img);
	}

	/* a pipe whose writer pauses: a whole line is read, a part of one is
	 * kept and URLLIST_WAIT returned (with the descriptor to poll) instead
	 * of waiting for the rest, which then completes it; the writer's close
	 * ends the list */
	{
		int pfd[2];
		char dev[64];
		CHECK(pipe(pfd) == 0);
		snprintf(dev, sizeof dev, "/dev/fd/%d", pfd[0]);
		paths[0] = dev;
		l = urllist_open(paths, 1, err, sizeof err);
		CHECK(l != NULL);
		if (l) {
			const char *line = NULL, *reason = NULL;
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_WAIT);
			CHECK(urllist_fd(l) >= 0);
			CHECK(write(pfd[1], "http://p.example/1.jpg\nhttp://p.example/2", 41) == 41);
			expect(l, URLLIST_URL, "http://p.example/1.jpg");
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_WAIT);
			CHECK(write(pfd[1], ".jpg\n", 5) == 5);
			expect(l, URLLIST_URL, "http://p.example/2.jpg");
			CHECK_INT(urllist_next(l, &line, &reason), URLLIST_WAIT);
			CHECK(write(pfd[1], "http://p.example/3.jpg", 22) == 22);   /* no newline, then EOF */
			close(pfd[1]);
			expect(l, URLLIST_URL, "http://p.example/3.jpg");
			expect(l, URLLIST_END, NULL);
			CHECK_INT(urllist_fd(l), -1);
			urllist_close(l);
		} else {
			close(pfd[1]);
		}
		close(pfd[0]);
	}

	/* a directory is refused up front, like a missing file, naming it */
	CHECK(mkdtemp(dir1) != NULL);
	paths[0] = path3;
	paths[1] = dir1;
	CHECK(urllist_open(paths, 2, err, sizeof err) == NULL);
	CHECK(strstr(err, dir1) != NULL);
	CHECK(strstr(err, "cannot read URL list: Is a directory") != NULL);

	/* a read error says what the system said (reading /proc/self/mem at
	 * offset 0 fails with EIO) */
	paths[0] = "/proc/self/mem";
	l = urllist_open(paths, 1, err, sizeof err);
	CHECK(l != NULL);
	if (l) {
		const char *line = NULL, *reason = NULL;
		CHECK_INT(urllist_next(l, &line, &reason), URLLIST_ERROR);
		CHECK(reason && strstr(reason, "/proc/self/mem: read error: Input/output error") != NULL);
		expect(l, URLLIST_END, NULL);
		urllist_close(l);
	}

	CHECK_INT(urllist_is_http("http://h/x"), 1);
	CHECK_INT(urllist_is_http("https://h"), 1);
	CHECK_INT(urllist_is_http("file:///etc/passwd"), 0);
	CHECK_INT(urllist_is_http("http:///x"), 0);
	CHECK_INT(urllist_is_http("gopher://h/"), 0);
	urllist_close(NULL);
	unlink(path1);
	unlink(path2);
	unlink(path3);
	unlink(path4);
	rmdir(dir1);
	return CHECK_DONE();
}
