/* Unit tests: recycled download files (spare.c), on a real directory. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "name.h"
#include "spare.h"

static char dir[] = "/tmp/thumbd-test-spare-XXXXXX";

static char *
path_of(const char *name)
{
	static char p[512];

	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

static int
exists(const char *name)
{
	struct stat st;

	return stat(path_of(name), &st) == 0;
}

static long
size_of(const char *name)
{
	struct stat st;

	return stat(path_of(name), &st) == 0 ? (long)st.st_size : -1;
}

/* A download: a file at name holding text. */
static void
download(spares *s, const char *name, const char *text)
{
	int fd = spares_open(s, path_of(name));

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK_INT(write(fd, text, strlen(text)), (long long)strlen(text));
	CHECK_INT(ftruncate(fd, (off_t)strlen(text)), 0);
	close(fd);
}

int
main(void)
{
	char sp0[64], sp1[64], cmd[600];
	spares *s;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(sp0, sizeof sp0, NAME_SPARE_PREFIX "0");
	snprintf(sp1, sizeof sp1, NAME_SPARE_PREFIX "1");

	s = spares_new(dir, 2);
	CHECK(s != NULL);
	if (!s)
		return CHECK_DONE();

	/* finished downloads become spares, up to the pool's size */
	download(s, "a.jpg", "aaaaaaaa");
	download(s, "b.jpg", "bbbb");
	download(s, "c.jpg", "cc");
	CHECK_INT(spares_put(s, path_of("a.jpg")), 0);
	CHECK_INT(spares_put(s, path_of("b.jpg")), 0);
	CHECK_INT(spares_put(s, path_of("c.jpg")), 0);
	CHECK(!exists("a.jpg") && !exists("b.jpg") && !exists("c.jpg"));
	CHECK(exists(sp0) && exists(sp1));      /* the third went: the pool holds two */

	/* the next download is a spare, old bytes and all, cut by its writer */
	download(s, "d.jpg", "d");
	CHECK_INT(size_of("d.jpg"), 1);
	CHECK(exists(sp0) != exists(sp1));      /* one of the two was taken */

	/* retired: the spare left is deleted now, and no file is kept again */
	spares_retire(s);
	CHECK(!exists(sp0) && !exists(sp1));
	CHECK_INT(spares_put(s, path_of("d.jpg")), 0);
	CHECK(!exists("d.jpg"));
	CHECK(!exists(sp0) && !exists(sp1));
	/* a download after all (a retry, say) still gets a file of its own */
	download(s, "e.jpg", "eee");
	CHECK_INT(size_of("e.jpg"), 3);
	CHECK_INT(spares_put(s, path_of("e.jpg")), 0);
	CHECK(!exists("e.jpg") && !exists(sp0) && !exists(sp1));
	spares_retire(s);                       /* twice is harmless */
	spares_free(s);
	spares_retire(NULL);
	spares_free(NULL);

	/* the directory is empty: nothing left behind */
	snprintf(cmd, sizeof cmd, "rmdir %s", dir);
	CHECK_INT(system(cmd), 0);
	return CHECK_DONE();
}
