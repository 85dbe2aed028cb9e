/* Unit tests: fsutil's durable replace, atomic write and directory lock, on a real directory. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"

static char dir[] = "/tmp/thumbd-test-fsutil-XXXXXX";

static char *
path_of(const char *name)
{
	static char p[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof p[i], "%s/%s", dir, name);
	return p[i];
}

/* The file's text (up to 255 bytes), or "(none)". */
static const char *
text_of(const char *name)
{
	static char buf[256];
	FILE *fp = fopen(path_of(name), "r");
	size_t n;

	if (!fp)
		return "(none)";
	n = fread(buf, 1, sizeof buf - 1, fp);
	buf[n] = 0;
	fclose(fp);
	return buf;
}

/* Entries in the directory, "." and ".." aside. */
static int
entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	if (d)
		closedir(d);
	return n;
}

static void
write_text(const char *name, const char *text)
{
	FILE *fp = fopen(path_of(name), "w");

	CHECK(fp != NULL);
	if (fp) {
		fputs(text, fp);
		fclose(fp);
	}
}

int
main(void)
{
	char err[512] = "";
	fsu_replace *r;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}

	/* commit: the new text replaces the old, no temp file is left */
	write_text("list.tsv", "old\n");
	r = fsu_replace_begin(path_of("list.tsv"), err, sizeof err);
	CHECK(r != NULL);
	if (r) {
		/* the temp file is hidden and beside the target, the target untouched */
		CHECK(access(path_of(".list.tsv.tmp"), F_OK) == 0);
		CHECK_STR(text_of("list.tsv"), "old\n");
		fputs("new\n", fsu_replace_stream(r));
		CHECK_INT(fsu_replace_commit(r, err, sizeof err), 0);
	}
	CHECK_STR(text_of("list.tsv"), "new\n");
	CHECK_INT(entries(), 1);

	/* a dot-file keeps its one dot: .names -> .names.tmp */
	r = fsu_replace_begin(path_of(".names"), err, sizeof err);
	CHECK(r != NULL);
	CHECK(access(path_of(".names.tmp"), F_OK) == 0);
	fsu_replace_abort(r);
	/* abort: nothing was created, the temp file is gone */
	CHECK_INT(access(path_of(".names"), F_OK), -1);
	CHECK_INT(entries(), 1);
	fsu_replace_abort(NULL);

	/* a commit that cannot rename (the target is a directory that is not
	 * empty) fails naming the temp file, removes it, keeps the target */
	CHECK_INT(mkdir(path_of("d"), 0755), 0);
	write_text("d/x", "x");
	r = fsu_replace_begin(path_of("d"), err, sizeof err);
	CHECK(r != NULL);
	if (r) {
		fputs("text\n", fsu_replace_stream(r));
		err[0] = 0;
		CHECK_INT(fsu_replace_commit(r, err, sizeof err), -1);
		CHECK(strstr(err, "cannot rename ") == err);
		CHECK(strstr(err, ".d.tmp") != NULL);
	}
	CHECK_INT(access(path_of(".d.tmp"), F_OK), -1);
	CHECK_STR(text_of("d/x"), "x");

	/* begin in a directory that does not exist: NULL, the path named */
	err[0] = 0;
	CHECK(fsu_replace_begin(path_of("nope/f"), err, sizeof err) == NULL);
	CHECK(strstr(err, "cannot create ") == err && strstr(err, "nope/.f.tmp") != NULL);

	/* fsu_write_atomic: the whole text or the old file, no temp left */
	CHECK_INT(fsu_write_atomic(dir, "t.jpg", "abc", 3, err, sizeof err), 0);
	CHECK_STR(text_of("t.jpg"), "abc");
	CHECK_INT(access(path_of(".t.jpg.tmp"), F_OK), -1);

	/* fsu_lock_dir: a directory is held by one descriptor at a time
	 * (flock belongs to the open file, so a second open conflicts even in
	 * this process), nothing is written in it, and closing releases it */
	int n0 = entries(), l1, l2;
	l1 = fsu_lock_dir(dir, "outgoing", err, sizeof err);
	CHECK(l1 >= 0);
	err[0] = 0;
	l2 = fsu_lock_dir(dir, "outgoing", err, sizeof err);
	CHECK_INT(l2, -1);
	CHECK(strstr(err, dir) == err && strstr(err, "is the outgoing directory of another running thumbd") != NULL);
	CHECK_INT(entries(), n0);
	if (l1 >= 0)
		close(l1);
	l2 = fsu_lock_dir(dir, "logs", err, sizeof err);
	CHECK(l2 >= 0);
	if (l2 >= 0)
		close(l2);
	err[0] = 0;
	CHECK_INT(fsu_lock_dir(path_of("nope"), "logs", err, sizeof err), -1);
	CHECK(strstr(err, "cannot open ") == err);

	snprintf(err, sizeof err, "rm -rf %s", dir);
	if (system(err) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return CHECK_DONE();
}
