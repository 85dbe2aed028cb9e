/*
 * test_fuzz_regress: replay every saved hostile input through the fuzz
 * targets' own path (fuzz/fuzz_common.h), so a crash the fuzzer once found
 * stays found, in the plain build and under `make test SANITIZE=...`.
 *
 * tests/fuzz-regress/<target>/ holds minimised crashers of build/fuzz/<target>
 * (fuzz_jpeg, fuzz_png, fuzz_webp, fuzz_exif); handmade/ holds inputs aimed
 * at one limit each (fuzz/make-handmade.py), their format taken from the
 * extension.  Every input must come back cleanly: decoded and re-encoded,
 * or refused with a reason.  A "toolarge" handmade input must be refused
 * as "too large" (max_pixels, judged from the header).  No directory or
 * no files is a failure: a test that replays nothing proves nothing.
 * Runs with cwd = the repository root (tests/run.sh sees to it).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "../../fuzz/fuzz_common.h"

#define REGRESS_DIR "tests/fuzz-regress"
#define REGRESS_MAX_INPUT (4u << 20)

enum kind { K_NONE, K_JPEG, K_PNG, K_WEBP, K_EXIF };

static enum kind kind_of_dir(const char *d)
{
	if (strcmp(d, "fuzz_jpeg") == 0) return K_JPEG;
	if (strcmp(d, "fuzz_png") == 0)  return K_PNG;
	if (strcmp(d, "fuzz_webp") == 0) return K_WEBP;
	if (strcmp(d, "fuzz_exif") == 0) return K_EXIF;
	return K_NONE;
}

static enum kind kind_of_name(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot == NULL)
		return K_NONE;
	if (strcmp(dot, ".jpg") == 0)  return K_JPEG;
	if (strcmp(dot, ".png") == 0)  return K_PNG;
	if (strcmp(dot, ".webp") == 0) return K_WEBP;
	if (strcmp(dot, ".exif") == 0) return K_EXIF;
	return K_NONE;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = malloc(REGRESS_MAX_INPUT + 1);
	if (buf != NULL) {
		n = fread(buf, 1, REGRESS_MAX_INPUT + 1, f);
		if (ferror(f) || n > REGRESS_MAX_INPUT) {
			free(buf);
			buf = NULL;
		} else {
			*len = n;
		}
	}
	fclose(f);
	return buf;
}

static void replay(const char *path, const char *name, enum kind k)
{
	static const img_format fmts[] = { IMG_UNKNOWN, IMG_JPEG, IMG_PNG, IMG_WEBP, IMG_UNKNOWN };
	char err[IMG_ERRLEN];
	uint8_t *buf;
	size_t len = 0;
	int rc;

	buf = slurp(path, &len);
	CHECK(buf != NULL);
	if (buf == NULL) {
		fprintf(stderr, "  cannot read %s\n", path);
		return;
	}
	if (k == K_EXIF)
		rc = fuzz_exif_one(buf, len, err, sizeof err);
	else
		rc = fuzz_decode_one(fmts[k], buf, len, err, sizeof err);
	if (rc != FUZZ_OK && rc != FUZZ_REFUSED)
		fprintf(stderr, "  %s: %s\n", path, err);
	CHECK(rc == FUZZ_OK || rc == FUZZ_REFUSED);
	if (rc == FUZZ_REFUSED)
		CHECK(err[0] != '\0');
	if (strstr(name, "toolarge") != NULL) {
		if (rc != FUZZ_REFUSED || strstr(err, "too large") == NULL)
			fprintf(stderr, "  %s: expected \"too large\", got rc %d \"%s\"\n", path, rc, err);
		CHECK(rc == FUZZ_REFUSED && strstr(err, "too large") != NULL);
	}
	free(buf);
}

/* Replays the regular files of one directory; returns how many. */
static int replay_dir(const char *dir)
{
	char sub[512], path[1024];
	enum kind dk = kind_of_dir(dir), k;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int n = 0;

	snprintf(sub, sizeof sub, "%s/%s", REGRESS_DIR, dir);
	d = opendir(sub);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", sub, de->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		k = dk != K_NONE ? dk : kind_of_name(de->d_name);
		if (k == K_NONE) {
			fprintf(stderr, "  %s: cannot tell the target from the directory or the extension\n", path);
			CHECK(k != K_NONE);
			continue;
		}
		replay(path, de->d_name, k);
		n++;
	}
	closedir(d);
	return n;
}

int main(void)
{
	struct dirent *de;
	DIR *d;
	int total = 0, handmade = 0;

	d = opendir(REGRESS_DIR);
	CHECK(d != NULL);
	if (d == NULL) {
		fprintf(stderr, "  %s: missing (run from the repository root)\n", REGRESS_DIR);
		return CHECK_DONE();
	}
	while ((de = readdir(d)) != NULL) {
		int n;
		if (de->d_name[0] == '.')
			continue;
		n = replay_dir(de->d_name);
		if (strcmp(de->d_name, "handmade") == 0)
			handmade = n;
		total += n;
	}
	closedir(d);
	fprintf(stderr, "  replayed %d inputs (%d hand-made)\n", total, handmade);
	CHECK(handmade > 0);
	CHECK(total > 0);
	return CHECK_DONE();
}
