/* Unit tests: one image file -> its thumbnails (thumb.c), on real files and codecs. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bigmem.h"
#include "check.h"
#include "config.h"
#include "fsutil.h"
#include "img.h"
#include "job.h"
#include "resample.h"
#include "thumb.h"

static char dir[] = "/tmp/thumbd-test-thumb-XXXXXX";

static int
count_files(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
		else if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n += 1000;      /* a leftover temp file */
	closedir(d);
	return n;
}

/* A w x h RGB gradient written as PNG to dir/name. */
static void
write_png(const char *name, int w, int h)
{
	img im = { 0 };
	img_encode_opts eo = { 85, 80, 1 };
	uint8_t *enc = NULL;
	size_t len;
	char err[IMG_ERRLEN];

	CHECK_INT(img_alloc(&im, w, h, 3), 0);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w * 3; x++)
			im.px[(size_t)y * im.stride + (size_t)x] = (uint8_t)((x + y) & 255);
	CHECK_INT(img_encode(&im, IMG_PNG, &eo, &enc, &len, err, sizeof err), 0);
	CHECK_INT(fsu_write_atomic(dir, name, enc, len, err, sizeof err), 0);
	free(enc);
	img_release(&im);
}

/* A w x h RGB checkerboard of single pixels (the sharpest detail there is)
 * written as PNG to dir/name; its pixels in *im. */
static void
write_checker_png(const char *name, int w, int h, img *im)
{
	img_encode_opts eo = { 85, 80, 1 };
	uint8_t *enc = NULL;
	size_t len;
	char err[IMG_ERRLEN];

	CHECK_INT(img_alloc(im, w, h, 3), 0);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			memset(im->px + (size_t)y * im->stride + 3 * (size_t)x, (x + y) % 2 ? 230 : 20, 3);
	CHECK_INT(img_encode(im, IMG_PNG, &eo, &enc, &len, err, sizeof err), 0);
	CHECK_INT(fsu_write_atomic(dir, name, enc, len, err, sizeof err), 0);
	free(enc);
}

static void
check_output(const cfg *c, const char *name, img_format fmt, int w, int h)
{
	char path[512], err[IMG_ERRLEN];
	uint8_t *buf = NULL;
	size_t len;
	img im = { 0 };
	img_meta m;

	snprintf(path, sizeof path, "%s/%s", c->outgoing, name);
	CHECK_INT(fsu_read_file(path, 1 << 24, &buf, &len, err, sizeof err), 0);
	if (!buf)
		return;
	CHECK_INT(img_sniff(buf, len), fmt);
	CHECK_INT(img_decode(buf, len, NULL, &im, &m, err, sizeof err), 0);
	img_meta_release(&m);
	CHECK_INT(im.w, w);
	CHECK_INT(im.h, h);
	img_release(&im);
	bigmem_free(buf);
}

/*
 * A picture shrunk on load whose size is not a multiple of the box (PNG box
 * averages) or of the DCT scale (JPEG) ends in a part column and row; its
 * 200-px thumbnail must still be the full-size picture's, not one stretched
 * over the part pixel.  pattern 0: a vertical ramp (1201 x 7: the 200 x 1
 * result is the ramp's middle), 1: a horizontal wave of period 90 px
 * (1801 x 31), whose phase a stretch shifts by up to two source pixels at
 * the right edge.  The reference is a resize of the full-size decode.
 */
static void
check_part_box(cfg *c, img_format fmt, int pattern, double max_mean, int max_diff)
{
	int w = pattern ? 1801 : 1201, h = pattern ? 31 : 7;
	const char *name = fmt == IMG_PNG ? "part.png" : "part.jpg";
	img im = { 0 }, full = { 0 }, want = { 0 }, got = { 0 };
	img_encode_opts eo = { 100, 80, 1 };
	img_meta m;
	uint8_t *enc = NULL, *buf = NULL;
	size_t len;
	char err[IMG_ERRLEN], path[512];
	job *j;

	CHECK_INT(img_alloc(&im, w, h, 3), 0);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			double v = pattern ? 128.0 + 100.0 * sin(2.0 * M_PI * x / 90.0) : 255.0 * y / (h - 1);
			memset(im.px + (size_t)y * im.stride + 3 * (size_t)x, (int)(v + 0.5), 3);
		}
	CHECK_INT(img_encode(&im, fmt, &eo, &enc, &len, err, sizeof err), 0);
	CHECK_INT(fsu_write_atomic(dir, name, enc, len, err, sizeof err), 0);
	CHECK_INT(img_decode(enc, len, NULL, &full, &m, err, sizeof err), 0);
	img_meta_release(&m);
	CHECK_INT(resample_resize(&full, &want, 200, thumb_height(w, h, 200)), 0);

	snprintf(path, sizeof path, "%s/%s", dir, name);
	c->format = IMG_PNG;
	c->sizes[0] = 200;
	c->nsizes = 1;
	j = job_new("http://h/part", path, NULL, 1, "part");
	CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), 1);
	job_free(j);
	snprintf(path, sizeof path, "%s/part_200.png", c->outgoing);
	CHECK_INT(fsu_read_file(path, 1 << 24, &buf, &len, err, sizeof err), 0);
	CHECK_INT(img_decode(buf, len, NULL, &got, &m, err, sizeof err), 0);
	img_meta_release(&m);
	CHECK(got.px && want.px && got.w == want.w && got.h == want.h && got.channels == 3);
	if (got.px && want.px && got.w == want.w && got.h == want.h && got.channels == 3) {
		double sum = 0;
		int worst = 0;
		for (int y = 0; y < got.h; y++)
			for (int x = 0; x < got.w * 3; x++) {
				int d = abs(got.px[(size_t)y * got.stride + x] - want.px[(size_t)y * want.stride + x]);
				sum += d;
				worst = d > worst ? d : worst;
			}
		double mean = sum / ((double)got.w * got.h * 3);
		if (!(mean <= max_mean && worst <= max_diff))
			fprintf(stderr, "part box, %s pattern %d: mean |diff| %.2f, max %d\n",
			        img_format_name(fmt), pattern, mean, worst);
		CHECK(mean <= max_mean);
		CHECK(worst <= max_diff);
	}
	unlink(path);
	img_release(&im);
	img_release(&full);
	img_release(&want);
	img_release(&got);
	free(enc);
	bigmem_free(buf);
}

int
main(void)
{
	cfg *c = cfg_new();
	char src[256], err[512], out[256];
	job *j;

	/* round(H * w / W), half up, never 0 */
	CHECK_INT(thumb_height(1920, 1080, 200), 113);   /* 112.5 -> 113 */
	CHECK_INT(thumb_height(640, 427, 200), 133);     /* 133.4 */
	CHECK_INT(thumb_height(940, 2, 32), 1);          /* 0.07 -> at least 1 */
	CHECK_INT(thumb_height(6, 1024, 200), 34133);    /* enlarged */
	CHECK_INT(thumb_height(4000, 6000, 64), 96);

	if (!c || !mkdtemp(dir))
		return 1;
	snprintf(out, sizeof out, "%s/out", dir);
	CHECK_INT(fsu_mkdirs(out, err, sizeof err), 0);
	free(c->outgoing);
	c->outgoing = strdup(out);
	write_png("src.png", 300, 100);
	snprintf(src, sizeof src, "%s/src.png", dir);

	/* every width, format of the source, file kept (thumb never deletes) */
	j = job_new("http://h/src.png", src, "image/png", 1, "src");
	CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), 3);
	check_output(c, "src_32.png", IMG_PNG, 32, 11);
	check_output(c, "src_64.png", IMG_PNG, 64, 21);
	check_output(c, "src_200.png", IMG_PNG, 200, 67);
	CHECK_INT(access(src, F_OK), 0);
	CHECK_INT(count_files(out), 3);

	/* format override */
	c->format = IMG_WEBP;
	CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), 3);
	check_output(c, "src_200.webp", IMG_WEBP, 200, 67);
	job_free(j);

	/* a source narrower than the widest width: its own width is the source
	 * itself, not a reduction of the enlarged 200 (which rings) */
	{
		img want = { 0 }, got = { 0 };
		img_meta m;
		uint8_t *buf = NULL;
		size_t len;
		char path[512];

		write_checker_png("checker.png", 32, 32, &want);
		snprintf(src, sizeof src, "%s/checker.png", dir);
		c->format = IMG_PNG;
		j = job_new("http://h/checker.png", src, NULL, 1, "checker");
		CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), 3);
		job_free(j);
		snprintf(path, sizeof path, "%s/checker_32.png", out);
		CHECK_INT(fsu_read_file(path, 1 << 24, &buf, &len, err, sizeof err), 0);
		CHECK_INT(img_decode(buf, len, NULL, &got, &m, err, sizeof err), 0);
		img_meta_release(&m);
		CHECK(got.px && got.w == 32 && got.h == 32 && got.channels == 3
		      && memcmp(got.px, want.px, (size_t)32 * want.stride) == 0);
		img_release(&got);
		img_release(&want);
		bigmem_free(buf);
		CHECK_INT(count_files(out), 9);
		c->format = IMG_WEBP;
	}

	/* all or nothing: a 2 x 400 source gives 16 x 3200 at width 16 (fine for
	 * WebP) but 100 x 20000 at width 100, over WebP's 16383 limit: the job
	 * fails and leaves no file behind */
	write_png("tall.png", 2, 400);
	snprintf(src, sizeof src, "%s/tall.png", dir);
	c->sizes[0] = 16;
	c->sizes[1] = 100;
	c->nsizes = 2;
	j = job_new("http://h/tall.png", src, NULL, 1, "tall");
	CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "WebP") != NULL);
	CHECK_INT(count_files(out), 9);         /* only the earlier nine */
	job_free(j);

	/* not an image: the server's Content-Type makes the reason */
	CHECK_INT(fsu_write_atomic(dir, "page.jpg", "<html>nope</html>", 17, err, sizeof err), 0);
	snprintf(src, sizeof src, "%s/page.jpg", dir);
	j = job_new("http://h/page.jpg", src, "text/html; charset=utf-8", 1, "page");
	CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), -1);
	CHECK_STR(err, "not an image (text/html)");
	job_free(j);
	j = job_new("http://h/page.jpg", src, NULL, 1, "page");
	CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), -1);
	CHECK_STR(err, "not an image (unrecognised data)");
	job_free(j);

	/* a missing source names the file */
	j = job_new("/nonexistent.png", "/nonexistent.png", NULL, 0, "x");
	CHECK_INT(thumb_make(c, j, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "/nonexistent.png") != NULL);
	job_free(j);

	check_part_box(c, IMG_PNG, 0, 0.5, 1);
	check_part_box(c, IMG_PNG, 1, 0.5, 2);
	check_part_box(c, IMG_JPEG, 0, 1.5, 2);     /* the scaled IDCT rounds a level off */
	check_part_box(c, IMG_JPEG, 1, 1.5, 2);

	snprintf(err, sizeof err, "rm -rf %s", dir);
	CHECK_INT(system(err), 0);
	cfg_free(c);
	return CHECK_DONE();
}
