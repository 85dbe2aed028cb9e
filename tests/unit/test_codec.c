/*
 * test_codec: img.c and the three codecs against the shared corpus and
 * against synthetic pictures.
 *
 * The corpus is found through THUMBD_CORPUS, else ../shared/corpus from
 * the repository root (where the runner starts us).  A missing corpus is
 * a failure, never a skip: a green run must mean the decoders really saw
 * those files.  Every file in edge/ and broken/ must have a row in the
 * expectation table below, so a file added to the corpus without saying
 * what it should do also fails the run.
 *
 * Loops over many inputs (truncations, mutations) count their own bad
 * cases and make one CHECK, so the pass count stays readable.
 */
#include "check.h"
#include "imgcheck.h"
#include "img.h"
#include "resample.h"

#include <dirent.h>
#include <setjmp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>          /* LIBJPEG_TURBO_VERSION_NUMBER */

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *corpus;

/* ---- helpers ---- */

static uint8_t *slurp(const char *rel, size_t *len)
{
	char path[1024];
	FILE *f;
	uint8_t *buf = NULL;
	long n;

	*len = 0;
	snprintf(path, sizeof path, "%s/%s", corpus, rel);
	f = fopen(path, "rb");
	if (f == NULL)
		goto out;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)n + 1);        /* +1: a zero-byte file still gets a buffer */
	if (buf == NULL)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out;
	}
	*len = (size_t)n;
out:
	if (f != NULL)
		fclose(f);
	if (buf == NULL)
		fprintf(stderr, "cannot read %s\n", path);
	return buf;
}

/* img_decode, keeping only the orientation from the header facts. */
static int decode_orient(const uint8_t *buf, size_t len, const img_decode_opts *o, img *im,
                         int *orient, char *err, size_t errlen)
{
	img_meta m;
	int rc = img_decode(buf, len, o, im, &m, err, errlen);

	*orient = m.orientation;
	img_meta_release(&m);
	return rc;
}

/* What the last decode_file() learned from the header. */
static img_meta last_meta;

/* Decode a corpus file; -2 when the file itself cannot be read. */
static int decode_file(const char *rel, uint64_t max_pixels, int min_width,
                       img *im, int *orient, char *err)
{
	img_decode_opts o = { .max_pixels = max_pixels, .min_width = min_width };
	size_t len;
	uint8_t *buf = slurp(rel, &len);
	int rc;

	memset(im, 0, sizeof *im);
	*orient = 0;
	err[0] = '\0';
	if (buf == NULL) {
		snprintf(err, IMG_ERRLEN, "cannot read file");
		return -2;
	}
	rc = img_decode(buf, len, &o, im, &last_meta, err, IMG_ERRLEN);
	*orient = last_meta.orientation;
	img_meta_release(&last_meta);   /* profiles: test_icc */
	free(buf);
	return rc;
}

static int starts_with(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

static const uint8_t *pix(const img *im, int x, int y)
{
	return im->px + (size_t)y * im->stride + (size_t)x * (size_t)im->channels;
}

/* Mean absolute difference over all samples of two same-shaped images. */
static double mean_abs_diff(const img *a, const img *b)
{
	double sum = 0;
	int x, y, c;

	if (a->w != b->w || a->h != b->h || a->channels != b->channels)
		return 1e9;
	for (y = 0; y < a->h; y++)
		for (x = 0; x < a->w; x++)
			for (c = 0; c < a->channels; c++)
				sum += abs((int)pix(a, x, y)[c] - (int)pix(b, x, y)[c]);
	return sum / ((double)a->w * a->h * a->channels);
}

/* Mean of channel c over the box [x0,x1) x [y0,y1). */
static double box_mean(const img *im, int c, int x0, int y0, int x1, int y1)
{
	double sum = 0;
	int x, y;

	for (y = y0; y < y1; y++)
		for (x = x0; x < x1; x++)
			sum += pix(im, x, y)[c];
	return sum / ((double)(x1 - x0) * (y1 - y0));
}

/* ---- the corpus must be there ---- */

static int test_corpus_present(void)
{
	size_t len;
	uint8_t *m = slurp("MANIFEST.tsv", &len);
	int ok = m != NULL && len > 0;

	CHECK(ok);
	if (!ok)
		fprintf(stderr, "corpus not found at %s (set THUMBD_CORPUS)\n", corpus);
	free(m);
	return ok;
}

/* ---- sniffing ---- */

static void test_sniff(void)
{
	static const uint8_t jpeg[] = { 0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F' };
	static const uint8_t png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13 };
	static const uint8_t webp[] = "RIFF\x24\0\0\0WEBPVP8 ";
	static const uint8_t wav[] = "RIFF\x24\0\0\0WAVEfmt ";
	static const uint8_t gif[] = "GIF89a\x01\0\x01\0";
	static const uint8_t tiff_le[] = "II*\0\x08\0\0\0";
	static const uint8_t tiff_be[] = "MM\0*\0\0\0\x08";
	static const uint8_t html[] = "<!DOCTYPE html>\n<html><body>404</body></html>";
	static const uint8_t svg[] = "\xef\xbb\xbf<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
	static const uint8_t avif[] = "\0\0\0\x1c" "ftypavif\0\0\0\0avifmif1miaf";
	static const uint8_t heic[] = "\0\0\0\x18" "ftypheic\0\0\0\0mif1heic";
	static const uint8_t mp4[] = "\0\0\0\x18" "ftypisom\0\0\0\0isomiso2";
	static const uint8_t jxl[] = { 0xff, 0x0a, 0xfa, 0x1f };
	static const uint8_t pdf[] = "%PDF-1.7\n";
	static const uint8_t bmp[] = "BM\x36\0\0\0\0\0\0\0\x36\0\0\0";

	CHECK_INT(img_sniff(jpeg, sizeof jpeg), IMG_JPEG);
	CHECK_INT(img_sniff(png, sizeof png), IMG_PNG);
	CHECK_INT(img_sniff(webp, sizeof webp - 1), IMG_WEBP);
	CHECK_INT(img_sniff(wav, sizeof wav - 1), IMG_UNKNOWN);
	CHECK_INT(img_sniff(gif, sizeof gif - 1), IMG_UNKNOWN);
	CHECK_INT(img_sniff(tiff_le, sizeof tiff_le - 1), IMG_UNKNOWN);
	CHECK_INT(img_sniff(html, sizeof html - 1), IMG_UNKNOWN);
	CHECK_INT(img_sniff(jpeg, 0), IMG_UNKNOWN);
	CHECK_INT(img_sniff(NULL, 0), IMG_UNKNOWN);
	CHECK_INT(img_sniff(jpeg, 2), IMG_UNKNOWN);         /* too short to tell */
	CHECK_INT(img_sniff(png, 7), IMG_UNKNOWN);
	CHECK_INT(img_sniff(webp, 11), IMG_UNKNOWN);

	CHECK_STR(img_sniff_other(gif, sizeof gif - 1), "GIF");
	CHECK_STR(img_sniff_other(tiff_le, sizeof tiff_le - 1), "TIFF");
	CHECK_STR(img_sniff_other(tiff_be, sizeof tiff_be - 1), "TIFF");
	CHECK_STR(img_sniff_other(svg, sizeof svg - 1), "SVG");
	CHECK_STR(img_sniff_other(avif, sizeof avif - 1), "AVIF");
	CHECK_STR(img_sniff_other(heic, sizeof heic - 1), "HEIF");
	CHECK_STR(img_sniff_other(jxl, sizeof jxl), "JPEG XL");
	CHECK_STR(img_sniff_other(pdf, sizeof pdf - 1), "PDF");
	CHECK_STR(img_sniff_other(bmp, sizeof bmp - 1), "BMP");
	/* HTML, video, sound and nothing at all get no name: "not an image" */
	CHECK(img_sniff_other(html, sizeof html - 1) == NULL);
	CHECK(img_sniff_other(mp4, sizeof mp4 - 1) == NULL);
	CHECK(img_sniff_other(wav, sizeof wav - 1) == NULL);
	CHECK(img_sniff_other(NULL, 0) == NULL);
	CHECK(img_sniff_other(gif, 0) == NULL);

	CHECK_STR(img_format_name(IMG_JPEG), "JPEG");
	CHECK_STR(img_format_name(IMG_PNG), "PNG");
	CHECK_STR(img_format_name(IMG_WEBP), "WebP");
	CHECK_STR(img_format_ext(IMG_JPEG), "jpg");
	CHECK_STR(img_format_ext(IMG_PNG), "png");
	CHECK_STR(img_format_ext(IMG_WEBP), "webp");
	CHECK(img_format_name(IMG_UNKNOWN) != NULL);
	CHECK(img_format_ext(IMG_UNKNOWN) != NULL);
}

static void test_decode_errors_inline(void)
{
	static const uint8_t gif[] = "GIF89a\x01\0\x01\0";
	static const uint8_t html[] = "<html><body>not found</body></html>";
	img_decode_opts o = { .max_pixels = 1000000 };
	img im;
	img_meta meta = { .orientation = 0, .width = 7, .height = 7 };
	char err[IMG_ERRLEN];

	CHECK_INT(img_decode((const uint8_t *)"", 0, &o, &im, &meta, err, sizeof err), -1);
	CHECK_STR(err, "empty file");
	CHECK(im.px == NULL);
	CHECK_INT(meta.orientation, 1);
	CHECK_INT(meta.width, 0);
	CHECK_INT(img_decode(NULL, 0, &o, &im, &meta, err, sizeof err), -1);
	CHECK_STR(err, "empty file");
	CHECK_INT(img_decode(gif, sizeof gif - 1, &o, &im, &meta, err, sizeof err), -1);
	CHECK_STR(err, "unsupported format: GIF");
	CHECK_INT(img_decode(html, sizeof html - 1, &o, &im, &meta, err, sizeof err), -1);
	CHECK_STR(err, "not an image");
	/* a small error buffer truncates, never overflows */
	CHECK_INT(img_decode(gif, sizeof gif - 1, &o, &im, &meta, err, 8), -1);
	CHECK_STR(err, "unsuppo");
}

/* ---- img_alloc / img_release ---- */

static void test_alloc(void)
{
	img im;
	size_t i;
	int zero = 1;

	CHECK_INT(img_alloc(&im, 7, 5, 3), 0);
	CHECK_INT(im.w, 7);
	CHECK_INT(im.h, 5);
	CHECK_INT(im.channels, 3);
	CHECK(im.stride >= 21);
	for (i = 0; i < im.stride * 5; i++)
		if (im.px[i] != 0)
			zero = 0;
	CHECK(zero);
	img_release(&im);
	CHECK(im.px == NULL);
	img_release(&im);           /* twice is fine */
	img_release(NULL);

	CHECK_INT(img_alloc(&im, 0, 5, 3), -1);
	CHECK(im.px == NULL);
	CHECK_INT(img_alloc(&im, 5, -1, 3), -1);
	CHECK_INT(img_alloc(&im, 5, 5, 0), -1);
	CHECK_INT(img_alloc(&im, 5, 5, 5), -1);
	/* beyond PTRDIFF_MAX bytes (or a wrapped size_t on 32-bit): refused
	 * before calloc is asked */
	CHECK_INT(img_alloc(&im, 0x7fffffff, 0x7fffffff, 4), -1);
	CHECK(im.px == NULL);
}

/* ---- every corpus file in edge/ and broken/ ---- */

struct expect {
	const char *name;       /* under edge/ or broken/ */
	int w, h, channels, orient;     /* when the decode must succeed */
	const char *err;        /* else: the reason must start with this */
};

/* max_pixels for the table: keeps the 99.6 MP file out, the rest in. */
#define TABLE_MAX_PIXELS 50000000u

static const struct expect expects[] = {
	{ "edge/jpeg_12bit_149x227.jpg", 0, 0, 0, 0, "unsupported JPEG: 12-bit precision" },
	{ "edge/jpeg_1x1_progressive.jpg", 1, 1, 3, 1, NULL },
	{ "edge/jpeg_420_2268x1512.jpg", 2268, 1512, 3, 1, NULL },
	{ "edge/jpeg_422_2268x1512.jpg", 2268, 1512, 3, 1, NULL },
	{ "edge/jpeg_444_2268x1512.jpg", 2268, 1512, 3, 1, NULL },
	{ "edge/jpeg_arithmetic_227x149.jpg", 227, 149, 3, 1, NULL },
	{ "edge/jpeg_cmyk_adobe_icc_388x218.jpg", 388, 218, 3, 1, NULL },
	{ "edge/jpeg_exif_orientation_1.jpg", 600, 450, 3, 1, NULL },
	{ "edge/jpeg_exif_orientation_2.jpg", 600, 450, 3, 2, NULL },
	{ "edge/jpeg_exif_orientation_3.jpg", 600, 450, 3, 3, NULL },
	{ "edge/jpeg_exif_orientation_4.jpg", 600, 450, 3, 4, NULL },
	{ "edge/jpeg_exif_orientation_5.jpg", 450, 600, 3, 5, NULL },
	{ "edge/jpeg_exif_orientation_6.jpg", 450, 600, 3, 6, NULL },
	{ "edge/jpeg_exif_orientation_7.jpg", 450, 600, 3, 7, NULL },
	{ "edge/jpeg_exif_orientation_8.jpg", 450, 600, 3, 8, NULL },
	{ "edge/jpeg_grayscale_800x533.jpg", 800, 533, 1, 1, NULL },
	{ "edge/jpeg_huge_9643x10328.jpg", 0, 0, 0, 0, "too large: 9643x10328 > max_pixels" },
	{ "edge/jpeg_icc_prophoto_1680x1050.jpg", 1680, 1050, 3, 1, NULL },
	{ "edge/jpeg_progressive_2268x1512.jpg", 2268, 1512, 3, 1, NULL },
	{ "edge/jpeg_restart_markers_1024x631.jpg", 1024, 631, 3, 1, NULL },
	{ "edge/jpeg_ycck_adobe_510x532.jpg", 510, 532, 3, 1, NULL },
	{ "edge/png_16bit_photo_icc_149x227.png", 149, 227, 3, 1, NULL },
	{ "edge/png_1x1.png", 1, 1, 3, 1, NULL },
	{ "edge/png_adam7_interlaced.png", 32, 32, 3, 1, NULL },
	{ "edge/png_gray_1bit.png", 32, 32, 1, 1, NULL },
	{ "edge/png_gray_8bit.png", 32, 32, 1, 1, NULL },
	{ "edge/png_gray_alpha_8bit.png", 32, 32, 2, 1, NULL },
	{ "edge/png_palette_8bit.png", 32, 32, 3, 1, NULL },
	{ "edge/png_palette_trns.png", 32, 32, 4, 1, NULL },
	{ "edge/png_rgb_16bit.png", 32, 32, 3, 1, NULL },
	{ "edge/png_rgba_16bit.png", 32, 32, 4, 1, NULL },
	{ "edge/png_rgba_8bit.png", 32, 32, 4, 1, NULL },
	{ "edge/png_rgba_photo_500x500.png", 500, 500, 4, 1, NULL },
	{ "edge/png_tall_6x1024.png", 6, 1024, 3, 1, NULL },
	{ "edge/png_wide_940x2.png", 940, 2, 3, 1, NULL },
	{ "edge/unsupported_animated.gif", 0, 0, 0, 0, "unsupported format: GIF" },
	{ "edge/unsupported_photo.tiff", 0, 0, 0, 0, "unsupported format: TIFF" },
	{ "edge/webp_1x1.webp", 1, 1, 3, 1, NULL },
	{ "edge/webp_animated_10_frames.webp", 370, 285, 4, 1, NULL },
	{ "edge/webp_exif_orientation_6.webp", 128, 128, 3, 6, NULL },
	{ "edge/webp_lossless.webp", 512, 512, 3, 1, NULL },
	{ "edge/webp_lossless_alpha.webp", 1000, 307, 4, 1, NULL },
	{ "edge/webp_lossy.webp", 128, 128, 3, 1, NULL },
	{ "edge/webp_lossy_alpha.webp", 300, 300, 4, 1, NULL },
	{ "broken/bad_crc_idat.png", 0, 0, 0, 0, "corrupt PNG: IDAT: CRC error" },
	{ "broken/bomb_50000x50000.png", 0, 0, 0, 0, "too large: 50000x50000 > max_pixels" },
	{ "broken/html_named_as.jpg", 0, 0, 0, 0, "not an image" },
	{ "broken/random_bytes.jpg", 0, 0, 0, 0, "not an image" },
	{ "broken/truncated_half.jpg", 0, 0, 0, 0, "truncated JPEG" },
	{ "broken/truncated_half.png", 0, 0, 0, 0, "truncated PNG" },
	{ "broken/truncated_half.webp", 0, 0, 0, 0, "truncated WebP" },
	{ "broken/truncated_in_header.jpg", 0, 0, 0, 0, "truncated JPEG" },
	{ "broken/zero_bytes.jpg", 0, 0, 0, 0, "empty file" },
};

static const struct expect *find_expect(const char *name)
{
	size_t i;

	for (i = 0; i < NELEM(expects); i++)
		if (strcmp(expects[i].name, name) == 0)
			return &expects[i];
	return NULL;
}

static void check_one(const struct expect *e)
{
	img im;
	int orient, rc;
	char err[IMG_ERRLEN];

	rc = decode_file(e->name, TABLE_MAX_PIXELS, 0, &im, &orient, err);
	if (e->err == NULL) {
		if (rc != 0)
			fprintf(stderr, "  %s: %s\n", e->name, err);
		CHECK_INT(rc, 0);
		CHECK_INT(im.w, e->w);
		CHECK_INT(im.h, e->h);
		CHECK_INT(im.channels, e->channels);
		CHECK_INT(orient, e->orient);
		CHECK_INT(last_meta.width, e->w);       /* full size, no shrink asked */
		CHECK_INT(last_meta.height, e->h);
		CHECK(im.px != NULL && im.stride >= (size_t)im.w * (size_t)im.channels);
	} else {
		if (!starts_with(err, e->err))
			fprintf(stderr, "  %s: got \"%s\", expected \"%s...\"\n", e->name, err, e->err);
		CHECK_INT(rc, -1);
		CHECK(starts_with(err, e->err));
		CHECK(im.px == NULL);
		CHECK_INT(orient, 1);
	}
	img_release(&im);
}

static void test_corpus_dir(const char *sub)
{
	char path[1024], name[600];
	DIR *d;
	struct dirent *de;
	int files = 0;

	snprintf(path, sizeof path, "%s/%s", corpus, sub);
	d = opendir(path);
	CHECK(d != NULL);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		const struct expect *e;
		if (de->d_name[0] == '.')
			continue;
		snprintf(name, sizeof name, "%s/%s", sub, de->d_name);
		e = find_expect(name);
		if (e == NULL)
			fprintf(stderr, "  %s: no expectation in test_codec.c\n", name);
		CHECK(e != NULL);
		if (e != NULL)
			check_one(e);
		files++;
	}
	closedir(d);
	CHECK(files > 5);
}

/* Every table row must also exist on disk (a renamed file is a failure). */
static void test_table_complete(void)
{
	size_t i, len;
	int missing = 0;

	for (i = 0; i < NELEM(expects); i++) {
		uint8_t *b = slurp(expects[i].name, &len);
		if (b == NULL)
			missing++;
		free(b);
	}
	CHECK_INT(missing, 0);
}

/* ---- limits and shrink-on-load ---- */

static void test_limits_and_shrink(void)
{
	img im;
	int orient;
	char err[IMG_ERRLEN];

	/* JPEG 1/4 DCT scaling: 1920/8 = 240 < 400 <= 1920/4 */
	CHECK_INT(decode_file("photos/cardinal_bird_1920x1080.jpg", 50000000u, 400, &im, &orient, err), 0);
	CHECK_INT(im.w, 480);
	CHECK_INT(im.h, 270);
	/* the header's full size is reported whatever the shrink */
	CHECK_INT(last_meta.width, 1920);
	CHECK_INT(last_meta.height, 1080);
	img_release(&im);
	/* min_width 0: full size */
	CHECK_INT(decode_file("photos/cardinal_bird_1920x1080.jpg", 50000000u, 0, &im, &orient, err), 0);
	CHECK_INT(im.w, 1920);
	CHECK_INT(im.h, 1080);
	img_release(&im);
	/* min_width above the width: no scaling */
	CHECK_INT(decode_file("photos/cardinal_bird_1920x1080.jpg", 50000000u, 5000, &im, &orient, err), 0);
	CHECK_INT(im.w, 1920);
	img_release(&im);
	/* 1/2 exactly at the limit: 1920/2 = 960 >= 960 */
	CHECK_INT(decode_file("photos/cardinal_bird_1920x1080.jpg", 50000000u, 960, &im, &orient, err), 0);
	CHECK_INT(im.w, 960);
	img_release(&im);

	/* Orientation 6: the displayed width is the stored height (3024), so
	 * 1/8 (378) is too small and 1/4 is chosen; judging by the stored
	 * width (4032/8 = 504) would wrongly pick 1/8. */
	CHECK_INT(decode_file("photos/iphone_xs_orient6_4032x3024.jpg", 50000000u, 400, &im, &orient, err), 0);
	CHECK_INT(im.w, 1008);
	CHECK_INT(im.h, 756);
	CHECK_INT(orient, 6);
	img_release(&im);

	/* The huge flat JPEG: refused by max_pixels, accepted above it and
	 * then decoded at 1/8 without ever holding 300 MB. */
	CHECK_INT(decode_file("edge/jpeg_huge_9643x10328.jpg", 99000000u, 0, &im, &orient, err), -1);
	CHECK_STR(err, "too large: 9643x10328 > max_pixels");
	CHECK_INT(decode_file("edge/jpeg_huge_9643x10328.jpg", 100000000u, 1000, &im, &orient, err), 0);
	CHECK_INT(im.w, 1206);
	CHECK_INT(im.h, 1291);
	img_release(&im);

	/* WebP scaled decode, also by displayed (rotated) width: 2736/4 = 684 */
	CHECK_INT(decode_file("photos/building_nikon_p7000_orient6_3648x2736.webp", 50000000u, 400, &im, &orient, err), 0);
	CHECK_INT(im.w, 912);
	CHECK_INT(im.h, 684);
	CHECK_INT(orient, 6);
	img_release(&im);
	CHECK_INT(decode_file("edge/webp_lossless_alpha.webp", 50000000u, 300, &im, &orient, err), 0);
	CHECK_INT(im.w, 500);
	CHECK_INT(im.h, 154);
	CHECK_INT(im.channels, 4);
	img_release(&im);

	/* max_pixels is inclusive: exactly w*h passes, one less fails */
	CHECK_INT(decode_file("edge/webp_lossless.webp", 512u * 512u, 0, &im, &orient, err), 0);
	img_release(&im);
	CHECK_INT(decode_file("edge/webp_lossless.webp", 512u * 512u - 1, 0, &im, &orient, err), -1);
	CHECK_STR(err, "too large: 512x512 > max_pixels");
	CHECK_INT(decode_file("edge/png_rgba_photo_500x500.png", 1000, 0, &im, &orient, err), -1);
	CHECK_STR(err, "too large: 500x500 > max_pixels");
	CHECK_INT(decode_file("edge/png_rgba_photo_500x500.png", 250000, 0, &im, &orient, err), 0);
	img_release(&im);
	/* PNG shrinks by whole boxes: ceil(500 / 5) = 100 >= 100, 500 / 6 < 100 */
	CHECK_INT(decode_file("edge/png_rgba_photo_500x500.png", 250000, 100, &im, &orient, err), 0);
	CHECK_INT(im.w, 100);
	CHECK_INT(im.h, 100);
	CHECK_INT(im.channels, 4);
	img_release(&im);
	/* ... but Adam7 arrives in passes over the whole picture: full size */
	CHECK_INT(decode_file("edge/png_adam7_interlaced.png", 250000, 8, &im, &orient, err), 0);
	CHECK_INT(im.w, 32);
	img_release(&im);

	CHECK_INT(decode_file("photos/iphone_xs_orient6_4032x3024.jpg", 10000000u, 0, &im, &orient, err), -1);
	CHECK_STR(err, "too large: 4032x3024 > max_pixels");
}

/* ---- colour sanity for CMYK/YCCK ---- */

static void test_cmyk(void)
{
	img im, ref;
	int orient;
	char err[IMG_ERRLEN];
	double r, g, b;

	/* A flat tint of about 40% cyan, 18% yellow, no black: a pale mint,
	 * through its SWOP profile (153, 214, 214), test_icc checks exactly.
	 * Read uninverted it would come out a dark purple near (102, 1, 45). */
	CHECK_INT(decode_file("edge/jpeg_cmyk_adobe_icc_388x218.jpg", 50000000u, 0, &im, &orient, err), 0);
	if (im.px != NULL) {
		r = box_mean(&im, 0, 0, 0, im.w, im.h);
		g = box_mean(&im, 1, 0, 0, im.w, im.h);
		b = box_mean(&im, 2, 0, 0, im.w, im.h);
		CHECK(r > 130 && r < 175);
		CHECK(g > 195 && g < 235);
		CHECK(b > 190 && b < 230);
	}
	img_release(&im);

	/* The YCCK file is a crop of the same flower as jpeg_420 (checked by
	 * eye): mostly pale pink petals, a yellow disc right of centre. */
	CHECK_INT(decode_file("edge/jpeg_ycck_adobe_510x532.jpg", 50000000u, 0, &im, &orient, err), 0);
	CHECK_INT(decode_file("edge/jpeg_420_2268x1512.jpg", 50000000u, 0, &ref, &orient, err), 0);
	if (im.px != NULL && ref.px != NULL) {
		double lum = (box_mean(&im, 0, 0, 0, im.w, im.h) + box_mean(&im, 1, 0, 0, im.w, im.h) +
		              box_mean(&im, 2, 0, 0, im.w, im.h)) / 3;
		double lum_ref = (box_mean(&ref, 0, 0, 0, ref.w, ref.h) + box_mean(&ref, 1, 0, 0, ref.w, ref.h) +
		                  box_mean(&ref, 2, 0, 0, ref.w, ref.h)) / 3;
		/* yellow disc: red and green high, blue low (inverted: blue) */
		r = box_mean(&im, 0, 420, 300, 470, 360);
		g = box_mean(&im, 1, 420, 300, 470, 360);
		b = box_mean(&im, 2, 420, 300, 470, 360);
		CHECK(r > 180 && g > 140 && b < 110);
		/* the same disc in the 4:2:0 version */
		r = box_mean(&ref, 0, 1290, 800, 1350, 860);
		g = box_mean(&ref, 1, 1290, 800, 1350, 860);
		b = box_mean(&ref, 2, 1290, 800, 1350, 860);
		CHECK(r > 180 && g > 140 && b < 110);
		/* pale petals dominate the crop: brighter than the whole scene */
		CHECK(lum > 150);
		CHECK(lum > lum_ref);
		/* petals are pink: red above green on average */
		CHECK(box_mean(&im, 0, 0, 0, im.w, im.h) > box_mean(&im, 1, 0, 0, im.w, im.h));
	}
	img_release(&im);
	img_release(&ref);
}

/* ---- EXIF orientation: synthetic, exact ---- */

/* Where stored pixel (sx, sy) of a w x h image is displayed, per the EXIF
 * definitions; written "forwards" so it does not mirror img.c's code. */
static void displayed_at(int orientation, int w, int h, int sx, int sy, int *dx, int *dy)
{
	switch (orientation) {
	default:
	case 1: *dx = sx;         *dy = sy;         break;
	case 2: *dx = w - 1 - sx; *dy = sy;         break;
	case 3: *dx = w - 1 - sx; *dy = h - 1 - sy; break;
	case 4: *dx = sx;         *dy = h - 1 - sy; break;
	case 5: *dx = sy;         *dy = sx;         break;
	case 6: *dx = h - 1 - sy; *dy = sx;         break;  /* 90 clockwise */
	case 7: *dx = h - 1 - sy; *dy = w - 1 - sx; break;
	case 8: *dx = sy;         *dy = w - 1 - sx; break;  /* 90 counter-clockwise */
	}
}

static void fill_ids(img *im)
{
	int x, y, c;

	for (y = 0; y < im->h; y++)
		for (x = 0; x < im->w; x++)
			for (c = 0; c < im->channels; c++)
				im->px[(size_t)y * im->stride + (size_t)x * (size_t)im->channels + (size_t)c] =
					(uint8_t)(y * 16 + x + 40 * c);
}

static void test_orient_synthetic(void)
{
	int ch, o, x, y;
	img im;

	for (ch = 1; ch <= 4; ch++) {
		for (o = 1; o <= 8; o++) {
			int bad = 0, W, H;
			if (img_alloc(&im, 5, 3, ch) != 0) {
				CHECK(0);
				continue;
			}
			fill_ids(&im);
			CHECK_INT(img_orient(&im, o), 0);
			W = o >= 5 ? 3 : 5;
			H = o >= 5 ? 5 : 3;
			CHECK_INT(im.w, W);
			CHECK_INT(im.h, H);
			CHECK_INT(im.channels, ch);
			if (im.w == W && im.h == H) {
				for (y = 0; y < 3; y++)
					for (x = 0; x < 5; x++) {
						int dx, dy, c;
						displayed_at(o, 5, 3, x, y, &dx, &dy);
						for (c = 0; c < ch; c++)
							if (pix(&im, dx, dy)[c] != (uint8_t)(y * 16 + x + 40 * c))
								bad++;
					}
			}
			CHECK_INT(bad, 0);
			img_release(&im);
		}
	}

	/* One case by hand.  Stored 3x2:   A B C      rotated 90 clockwise
	 *                                  D E F  ->  D A / E B / F C        */
	if (img_alloc(&im, 3, 2, 1) == 0) {
		memcpy(im.px, "ABC", 3);
		memcpy(im.px + im.stride, "DEF", 3);
		CHECK_INT(img_orient(&im, 6), 0);
		CHECK_INT(im.w, 2);
		CHECK_INT(im.h, 3);
		CHECK(memcmp(pix(&im, 0, 0), "DA", 2) == 0);
		CHECK(memcmp(pix(&im, 0, 1), "EB", 2) == 0);
		CHECK(memcmp(pix(&im, 0, 2), "FC", 2) == 0);
		img_release(&im);
	}
	/* 1 and out-of-range values leave the image alone */
	if (img_alloc(&im, 3, 2, 1) == 0) {
		memcpy(im.px, "ABCDEF", 6);
		CHECK_INT(img_orient(&im, 1), 0);
		CHECK_INT(img_orient(&im, 0), 0);
		CHECK_INT(img_orient(&im, 9), 0);
		CHECK_INT(im.w, 3);
		CHECK(memcmp(im.px, "ABCDEF", 6) == 0);
		img_release(&im);
	}
}

/* ---- EXIF orientation: the eight corpus samples ---- */

/* Pearson correlation of two same-shaped images over all samples.
 * Orientation 1 lacks the ICC profile the other seven carry, so its raw
 * values are ~13 levels brighter; correlation ignores such a tone shift
 * but not a wrong rotation. */
static double correlation(const img *a, const img *b)
{
	double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, n;
	int x, y, c;

	if (a->w != b->w || a->h != b->h || a->channels != b->channels)
		return -2;
	n = (double)a->w * a->h * a->channels;
	for (y = 0; y < a->h; y++)
		for (x = 0; x < a->w; x++)
			for (c = 0; c < a->channels; c++) {
				double u = pix(a, x, y)[c], v = pix(b, x, y)[c];
				sa += u; sb += v; saa += u * u; sbb += v * v; sab += u * v;
			}
	return (sab - sa * sb / n) / sqrt((saa - sa * sa / n) * (sbb - sb * sb / n));
}

static void test_orient_corpus(void)
{
	img ref, ref2, im, raw3;
	int orient, n;
	char name[128], err[IMG_ERRLEN];

	CHECK_INT(decode_file("edge/jpeg_exif_orientation_1.jpg", 50000000u, 0, &ref, &orient, err), 0);
	CHECK_INT(orient, 1);
	CHECK_INT(decode_file("edge/jpeg_exif_orientation_2.jpg", 50000000u, 0, &ref2, &orient, err), 0);
	CHECK_INT(img_orient(&ref2, orient), 0);
	for (n = 2; n <= 8; n++) {
		double r, d;
		snprintf(name, sizeof name, "edge/jpeg_exif_orientation_%d.jpg", n);
		CHECK_INT(decode_file(name, 50000000u, 0, &im, &orient, err), 0);
		CHECK_INT(orient, n);
		CHECK_INT(img_orient(&im, orient), 0);
		CHECK_INT(im.w, 600);
		CHECK_INT(im.h, 450);
		r = correlation(&ref, &im);
		/* 2..8 share an ICC profile, so they can be compared directly */
		d = mean_abs_diff(&ref2, &im);
		if (r < 0.95 || d >= 6)
			fprintf(stderr, "  orientation %d: correlation %.3f, mean abs diff %.2f\n", n, r, d);
		CHECK(r >= 0.95);
		CHECK(d < 6);
		img_release(&im);
	}
	/* the metrics can tell: orientation 3 left unrotated is far off */
	CHECK_INT(decode_file("edge/jpeg_exif_orientation_3.jpg", 50000000u, 0, &raw3, &orient, err), 0);
	CHECK(correlation(&ref, &raw3) < 0.5);
	CHECK(mean_abs_diff(&ref2, &raw3) > 20);
	img_release(&raw3);
	img_release(&ref);
	img_release(&ref2);

	/* shrink-on-load and rotation together: 1/2 then rotate */
	CHECK_INT(decode_file("edge/jpeg_exif_orientation_8.jpg", 50000000u, 300, &im, &orient, err), 0);
	CHECK_INT(im.w, 225);
	CHECK_INT(im.h, 300);
	CHECK_INT(img_orient(&im, orient), 0);
	CHECK_INT(im.w, 300);
	CHECK_INT(im.h, 225);
	img_release(&im);
}

/* ---- round trips ---- */

/* Smooth gradients (what lossy codecs are good at), odd sizes, and an
 * alpha channel that never reaches 0 (lossy WebP may rewrite the colour
 * under fully transparent pixels). */
static int make_gradient(img *im, int w, int h, int ch)
{
	int x, y;

	if (img_alloc(im, w, h, ch) != 0)
		return -1;
	for (y = 0; y < h; y++)
		for (x = 0; x < w; x++) {
			uint8_t *p = im->px + (size_t)y * im->stride + (size_t)x * (size_t)ch;
			/* each colour channel runs its own way, so a swap shows */
			int r = 20 + 200 * x / (w - 1), g = 20 + 200 * y / (h - 1);
			int b = 220 - 100 * x / (w - 1) - 100 * y / (h - 1);
			int a = 128 + 127 * y / (h - 1);
			if (ch <= 2) {
				p[0] = (uint8_t)r;
				if (ch == 2)
					p[1] = (uint8_t)a;
			} else {
				p[0] = (uint8_t)r;
				p[1] = (uint8_t)g;
				p[2] = (uint8_t)b;
				if (ch == 4)
					p[3] = (uint8_t)a;
			}
		}
	return 0;
}

/* What a decoder should hand back for src after a format that has no
 * alpha (flatten over white) or no gray (expand to RGB). */
static int expected_after(const img *src, int out_ch, img *exp)
{
	int x, y, c;

	if (img_alloc(exp, src->w, src->h, out_ch) != 0)
		return -1;
	for (y = 0; y < src->h; y++)
		for (x = 0; x < src->w; x++) {
			const uint8_t *s = pix(src, x, y);
			uint8_t *d = exp->px + (size_t)y * exp->stride + (size_t)x * (size_t)out_ch;
			int has_alpha = src->channels == 2 || src->channels == 4;
			int a = has_alpha ? s[src->channels - 1] : 255;
			int colour = src->channels >= 3 ? 3 : 1;
			int keep_alpha = out_ch == 2 || out_ch == 4;
			int nc = keep_alpha ? out_ch - 1 : out_ch;
			for (c = 0; c < nc; c++) {
				int v = s[colour == 3 ? c : 0];
				if (!keep_alpha && has_alpha)
					v = (v * a + 255 * (255 - a) + 127) / 255;
				d[c] = (uint8_t)v;
			}
			if (keep_alpha)
				d[nc] = (uint8_t)a;
		}
	return 0;
}

struct rt_case {
	img_format fmt;
	int in_ch, out_ch;
	double max_mean;        /* mean abs diff allowed */
	int max_abs;            /* worst single sample allowed */
};

static void test_round_trips(void)
{
	static const struct rt_case cases[] = {
		{ IMG_PNG, 1, 1, 0, 0 }, { IMG_PNG, 2, 2, 0, 0 },
		{ IMG_PNG, 3, 3, 0, 0 }, { IMG_PNG, 4, 4, 0, 0 },
		/* at quality 95 on smooth gradients: measured means below 1.1,
		 * worst samples below 8; the margins absorb library versions */
		{ IMG_JPEG, 1, 1, 1.0, 8 }, { IMG_JPEG, 2, 1, 1.0, 8 },
		{ IMG_JPEG, 3, 3, 2.0, 20 }, { IMG_JPEG, 4, 3, 2.0, 20 },
		{ IMG_WEBP, 1, 3, 2.5, 20 }, { IMG_WEBP, 2, 4, 2.5, 20 },
		{ IMG_WEBP, 3, 3, 2.5, 20 }, { IMG_WEBP, 4, 4, 2.5, 20 },
	};
	img_encode_opts eo = { 95, 95, 6 };
	img_decode_opts dopt = { .max_pixels = 1000000 };
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		const struct rt_case *k = &cases[i];
		img src = { 0 }, dec = { 0 }, exp = { 0 };
		uint8_t *enc = NULL;
		size_t enclen = 0;
		int orient = 0, x, y, c, worst = 0;
		char err[IMG_ERRLEN];
		double d;

		if (make_gradient(&src, 67, 45, k->in_ch) != 0 ||
		    expected_after(&src, k->out_ch, &exp) != 0) {
			CHECK(0);
			goto next;
		}
		CHECK_INT(img_encode(&src, k->fmt, &eo, &enc, &enclen, err, sizeof err), 0);
		CHECK(enc != NULL && enclen > 0);
		if (enc == NULL)
			goto next;
		CHECK_INT(img_sniff(enc, enclen), k->fmt);
		CHECK_INT(decode_orient(enc, enclen, &dopt, &dec, &orient, err, sizeof err), 0);
		CHECK_INT(dec.w, 67);
		CHECK_INT(dec.h, 45);
		CHECK_INT(dec.channels, k->out_ch);
		CHECK_INT(orient, 1);
		if (dec.px == NULL || dec.channels != k->out_ch || dec.w != 67 || dec.h != 45)
			goto next;
		d = mean_abs_diff(&exp, &dec);
		for (y = 0; y < dec.h; y++)
			for (x = 0; x < dec.w; x++)
				for (c = 0; c < dec.channels; c++) {
					int e = abs((int)pix(&exp, x, y)[c] - (int)pix(&dec, x, y)[c]);
					if (e > worst)
						worst = e;
				}
		if (d > k->max_mean || worst > k->max_abs)
			fprintf(stderr, "  round trip %s %d->%d ch: mean %.2f, worst %d\n",
			        img_format_name(k->fmt), k->in_ch, k->out_ch, d, worst);
		CHECK(d <= k->max_mean);
		CHECK(worst <= k->max_abs);
next:
		free(enc);
		img_release(&src);
		img_release(&dec);
		img_release(&exp);
	}
}

/* An img whose stride is wider than its pixels (as a crop would make). */
static void test_padded_stride(void)
{
	img src = { 0 }, padded = { 0 }, dec = { 0 };
	img_encode_opts eo = { 90, 90, 6 };
	uint8_t *enc = NULL;
	size_t enclen = 0;
	int orient, y;
	char err[IMG_ERRLEN];

	if (make_gradient(&src, 31, 9, 4) != 0 || img_alloc(&padded, 40, 9, 4) != 0) {
		CHECK(0);
		goto out;
	}
	padded.w = 31;              /* same buffer, now 9 spare pixels per row */
	for (y = 0; y < 9; y++)
		memcpy(padded.px + (size_t)y * padded.stride, pix(&src, 0, y), 31 * 4);
	CHECK_INT(img_encode(&padded, IMG_PNG, &eo, &enc, &enclen, err, sizeof err), 0);
	CHECK_INT(decode_orient(enc, enclen, NULL, &dec, &orient, err, sizeof err), 0);
	CHECK(mean_abs_diff(&src, &dec) == 0);
	img_release(&dec);
	free(enc);
	enc = NULL;
	CHECK_INT(img_encode(&padded, IMG_WEBP, &eo, &enc, &enclen, err, sizeof err), 0);
	CHECK_INT(decode_orient(enc, enclen, NULL, &dec, &orient, err, sizeof err), 0);
	CHECK(mean_abs_diff(&src, &dec) < 4);
	img_release(&dec);
	free(enc);
	enc = NULL;
	CHECK_INT(img_encode(&padded, IMG_JPEG, &eo, &enc, &enclen, err, sizeof err), 0);
	CHECK_INT(decode_orient(enc, enclen, NULL, &dec, &orient, err, sizeof err), 0);
	CHECK_INT(dec.w, 31);
out:
	free(enc);
	img_release(&src);
	img_release(&padded);
	img_release(&dec);
}

static void test_encode_errors(void)
{
	img im = { 0 };
	img_encode_opts eo = { 90, 90, 6 };
	uint8_t *enc = (uint8_t *)&eo;      /* must be reset to NULL on failure */
	size_t enclen = 1;
	char err[IMG_ERRLEN];

	CHECK_INT(img_encode(&im, IMG_PNG, &eo, &enc, &enclen, err, sizeof err), -1);
	CHECK(enc == NULL);
	CHECK(err[0] != '\0');
	if (img_alloc(&im, 16384, 1, 3) == 0) {
		CHECK_INT(img_encode(&im, IMG_WEBP, &eo, &enc, &enclen, err, sizeof err), -1);
		CHECK_STR(err, "too large for WebP: 16384x1");
		CHECK(enc == NULL);
		/* PNG and JPEG take it */
		CHECK_INT(img_encode(&im, IMG_PNG, &eo, &enc, &enclen, err, sizeof err), 0);
		free(enc);
		CHECK_INT(img_encode(&im, IMG_JPEG, &eo, &enc, &enclen, err, sizeof err), 0);
		free(enc);
		img_release(&im);
	}
	if (img_alloc(&im, 4, 4, 3) == 0) {
		CHECK_INT(img_encode(&im, IMG_UNKNOWN, &eo, &enc, &enclen, err, sizeof err), -1);
		CHECK(enc == NULL);
		/* NULL options: defaults */
		CHECK_INT(img_encode(&im, IMG_JPEG, NULL, &enc, &enclen, err, sizeof err), 0);
		free(enc);
		img_release(&im);
	}
}

/* ---- PNG eXIf ---- */

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	size_t i;
	int k;

	for (i = 0; i < n; i++) {
		c ^= p[i];
		for (k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
	}
	return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Copy png with an eXIf chunk (big-endian TIFF, Orientation = orient)
 * spliced in at byte offset at. */
static uint8_t *png_with_exif(const uint8_t *png, size_t len, size_t at, int orient, size_t *outlen)
{
	static const uint8_t tiff_tmpl[26] = {
		'M', 'M', 0, 42, 0, 0, 0, 8,            /* header, IFD0 at 8 */
		0, 1,                                   /* one entry */
		0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0,   /* Orientation SHORT x1 */
		0, 0, 0, 0,                             /* no next IFD */
	};
	uint8_t chunk[12 + sizeof tiff_tmpl];
	uint8_t *out;

	memcpy(chunk + 4, "eXIf", 4);
	memcpy(chunk + 8, tiff_tmpl, sizeof tiff_tmpl);
	chunk[8 + 19] = (uint8_t)orient;
	put_be32(chunk, sizeof tiff_tmpl);
	put_be32(chunk + 8 + sizeof tiff_tmpl, crc32_png(chunk + 4, 4 + sizeof tiff_tmpl));
	out = malloc(len + sizeof chunk);
	if (out == NULL)
		return NULL;
	memcpy(out, png, at);
	memcpy(out + at, chunk, sizeof chunk);
	memcpy(out + at + sizeof chunk, png + at, len - at);
	*outlen = len + sizeof chunk;
	return out;
}

static void test_png_exif(void)
{
	img src = { 0 }, dec = { 0 };
	img_encode_opts eo = { 90, 90, 6 };
	uint8_t *enc = NULL, *withx;
	size_t enclen = 0, xlen;
	int orient;
	char err[IMG_ERRLEN];

	if (make_gradient(&src, 20, 10, 3) != 0 ||
	    img_encode(&src, IMG_PNG, &eo, &enc, &enclen, err, sizeof err) != 0) {
		CHECK(0);
		goto out;
	}
	/* right after IHDR (8-byte signature + 25-byte IHDR chunk) */
	withx = png_with_exif(enc, enclen, 33, 6, &xlen);
	CHECK(withx != NULL);
	if (withx != NULL) {
		CHECK_INT(decode_orient(withx, xlen, NULL, &dec, &orient, err, sizeof err), 0);
		CHECK_INT(orient, 6);
		CHECK_INT(dec.w, 20);
		img_release(&dec);
		free(withx);
	}
	/* after IDAT, just before the 12-byte IEND: found by png_read_end */
	withx = png_with_exif(enc, enclen, enclen - 12, 8, &xlen);
	CHECK(withx != NULL);
	if (withx != NULL) {
		CHECK_INT(decode_orient(withx, xlen, NULL, &dec, &orient, err, sizeof err), 0);
		CHECK_INT(orient, 8);
		img_release(&dec);
		free(withx);
	}
out:
	free(enc);
	img_release(&src);
}

/* ---- JPEG processes libjpeg does not implement ---- */

static void test_jpeg_unsupported_sof(void)
{
	/* valid files, not corrupt ones: the reason says what they are */
	static const struct { uint8_t sof; const char *reason; } cases[] = {
		{ 0xc5, "unsupported JPEG: hierarchical (SOF5)" },
		{ 0xc7, "unsupported JPEG: hierarchical (SOF7)" },
#if LIBJPEG_TURBO_VERSION_NUMBER < 3000000      /* 3.0 decodes lossless */
		{ 0xc3, "unsupported JPEG: lossless (SOF3)" },
		{ 0xcb, "unsupported JPEG: lossless (SOF11)" },
#endif
	};
	img src = { 0 }, im = { 0 };
	img_meta meta;
	uint8_t *enc = NULL;
	size_t len = 0, i;
	char err[IMG_ERRLEN];

	if (make_gradient(&src, 16, 16, 3) != 0 ||
	    img_encode(&src, IMG_JPEG, NULL, &enc, &len, err, sizeof err) != 0) {
		CHECK(0);
		goto out;
	}
	for (i = 2; i + 1 < len && !(enc[i] == 0xff && enc[i + 1] == 0xc0); i++)
		;
	CHECK(i + 1 < len);
	for (size_t c = 0; c < NELEM(cases) && i + 1 < len; c++) {
		enc[i + 1] = cases[c].sof;
		CHECK_INT(img_decode(enc, len, NULL, &im, &meta, err, sizeof err), -1);
		CHECK_STR(err, cases[c].reason);
		img_release(&im);
	}
out:
	free(enc);
	img_release(&src);
}

/* ---- JPEG chroma subsampled 4x: DCT scaling must leave it enough ---- */

struct enc_fail {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
};

static void enc_fail_exit(j_common_ptr ci)
{
	longjmp(((struct enc_fail *)ci->err)->jb, 1);
}

/* rgb (3 channels) as a YCbCr JPEG, quality 95, the luma sampled hs x vs
 * (chroma 1x1); a malloc'd buffer, NULL on failure.  volatile: changed
 * after setjmp, read after the longjmp. */
static uint8_t *jpeg_sampled(const img *rgb, int hs, int vs, unsigned long *len)
{
	struct jpeg_compress_struct ci;
	struct enc_fail e;
	unsigned char *volatile out = NULL;
	unsigned char *buf = NULL;

	*len = 0;
	ci.err = jpeg_std_error(&e.pub);
	e.pub.error_exit = enc_fail_exit;
	if (setjmp(e.jb)) {
		jpeg_destroy_compress(&ci);
		free(out);
		return NULL;
	}
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &buf, len);
	out = buf;
	ci.image_width = (JDIMENSION)rgb->w;
	ci.image_height = (JDIMENSION)rgb->h;
	ci.input_components = 3;
	ci.in_color_space = JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 95, TRUE);
	ci.comp_info[0].h_samp_factor = hs;
	ci.comp_info[0].v_samp_factor = vs;
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW r = rgb->px + (size_t)ci.next_scanline * rgb->stride;
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	out = buf;
	jpeg_destroy_compress(&ci);
	return out;
}

/*
 * Red and blue stripes 48 px wide (across when hs < vs) on 1200x800, the
 * picture of the review: in a 50-px thumbnail one period is 4 px, which the luma at
 * 1/8 (150 px, the 3x floor) holds, but 4:1:1 chroma at 1/8 keeps only 38
 * samples across and the stripes came out a muddle of violet (mean error
 * 16-23 per channel at 4800 px).  The thumbnail from the scaled decode
 * must stay close to one from the full-size decode, both made by our own
 * resampler; 4:2:0 and 4:2:2, whose chroma libjpeg scales well enough
 * (4:2:0 with a 2x2 IDCT), keep their 1/8 decode.
 */
static void test_jpeg_sparse_chroma(void)
{
	static const struct { int hs, vs, width_at_150; double max_err; } cases[] = {
		{ 4, 1, 300, 3.0 }, { 1, 4, 300, 3.0 }, { 4, 2, 150, 3.0 },
		{ 2, 2, 150, 3.0 }, { 2, 1, 150, 3.0 }, { 1, 2, 150, 3.0 },
	};
	char err[IMG_ERRLEN];

	for (size_t c = 0; c < NELEM(cases); c++) {
		int across = cases[c].hs < cases[c].vs;
		img src = { 0 }, full = { 0 }, scaled = { 0 }, a = { 0 }, b = { 0 };
		img_meta meta;
		unsigned long len = 0;
		uint8_t *jpg = NULL;
		img_decode_opts o0 = { .max_pixels = 50000000u }, o150 = { .max_pixels = 50000000u, .min_width = 150 };

		CHECK_INT(img_alloc(&src, 1200, 800, 3), 0);
		for (int y = 0; y < src.h; y++)
			for (int x = 0; x < src.w; x++) {
				uint8_t *p = src.px + (size_t)y * src.stride + (size_t)x * 3;
				int red = ((across ? y : x) / 48) % 2 == 0;
				p[0] = red ? 200 : 40;
				p[1] = 40;
				p[2] = red ? 40 : 200;
			}
		jpg = jpeg_sampled(&src, cases[c].hs, cases[c].vs, &len);
		CHECK(jpg != NULL);
		if (jpg != NULL) {
			CHECK_INT(img_decode(jpg, len, &o0, &full, &meta, err, sizeof err), 0);
			img_meta_release(&meta);
			CHECK_INT(img_decode(jpg, len, &o150, &scaled, &meta, err, sizeof err), 0);
			img_meta_release(&meta);
			CHECK_INT(scaled.w, cases[c].width_at_150);
		}
		if (full.px != NULL && scaled.px != NULL
		    && resample_resize(&full, &a, 50, 33) == 0 && resample_resize(&scaled, &b, 50, 33) == 0) {
			double d = mean_abs_diff(&a, &b);
			if (d > cases[c].max_err)
				fprintf(stderr, "  %dx%d stripes: thumbnail of the %d-px decode %.2f from the full one's\n",
				        cases[c].hs, cases[c].vs, scaled.w, d);
			CHECK(d <= cases[c].max_err);
		} else {
			CHECK(0);
		}
		free(jpg);
		img_release(&src);
		img_release(&full);
		img_release(&scaled);
		img_release(&a);
		img_release(&b);
	}
}

/* ---- PNG image data past the last row ---- */

/* A w x h 8-bit gray PNG (interlace 0 or 1) whose zlib stream, written as
 * stored blocks, holds the rows (filter 0, value 7) and then extra zero
 * bytes: data libpng would inflate to its end after the last row.  The
 * stream goes in IDAT chunks of split bytes each (0: one chunk). */
static uint8_t *png_extra_idat(uint32_t w, uint32_t h, int interlace, size_t extra,
                               size_t split, size_t *outlen)
{
	static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	static const int x0[7] = { 0, 4, 0, 2, 0, 1, 0 }, y0[7] = { 0, 0, 4, 0, 2, 0, 1 };
	static const int dx[7] = { 8, 8, 4, 4, 2, 2, 1 }, dy[7] = { 8, 8, 8, 4, 4, 2, 2 };
	size_t nraw = 0, nz, n = 0, i;
	uint8_t *raw, *out;
	uint32_t a = 1, b = 0;

	/* the raw rows: each pass's (or the image's) rows, filter byte first */
	raw = malloc((size_t)(w + 1) * h * 2 + extra);
	if (raw == NULL)
		return NULL;
	for (int p = 0; p < (interlace ? 7 : 1); p++) {
		uint32_t pw = interlace ? (w > (uint32_t)x0[p] ? (w - x0[p] + dx[p] - 1) / dx[p] : 0) : w;
		uint32_t ph = interlace ? (h > (uint32_t)y0[p] ? (h - y0[p] + dy[p] - 1) / dy[p] : 0) : h;
		for (uint32_t y = 0; pw && y < ph; y++) {
			raw[nraw++] = 0;
			memset(raw + nraw, 7, pw);
			nraw += pw;
		}
	}
	memset(raw + nraw, 0, extra);
	nraw += extra;
	for (i = 0; i < nraw; i++) {
		a = (a + raw[i]) % 65521;
		b = (b + a) % 65521;
	}
	nz = 2 + nraw + 5 * (nraw / 65535 + 1) + 4;
	if (split == 0 || split > nz)
		split = nz;
	out = malloc(8 + 25 + 12 * ((nz + split - 1) / split) + nz + nz + 12);
	if (out == NULL) {
		free(raw);
		return NULL;
	}
	memcpy(out, sig, 8);
	n = 8;
	put_be32(out + n, 13);
	memcpy(out + n + 4, "IHDR", 4);
	put_be32(out + n + 8, w);
	put_be32(out + n + 12, h);
	out[n + 16] = 8;                /* depth */
	out[n + 17] = 0;                /* gray */
	out[n + 18] = out[n + 19] = 0;
	out[n + 20] = (uint8_t)interlace;
	put_be32(out + n + 21, crc32_png(out + n + 4, 17));
	n += 25;
	size_t idat = n, z = n + 8;
	memcpy(out + n + 4, "IDAT", 4);
	out[z++] = 0x78;
	out[z++] = 0x01;
	for (i = 0; i < nraw; ) {
		size_t len = nraw - i > 65535 ? 65535 : nraw - i;
		out[z++] = i + len == nraw;     /* BFINAL, stored */
		out[z++] = (uint8_t)len;
		out[z++] = (uint8_t)(len >> 8);
		out[z++] = (uint8_t)~len;
		out[z++] = (uint8_t)(~len >> 8);
		memcpy(out + z, raw + i, len);
		z += len;
		i += len;
	}
	put_be32(out + z, b << 16 | a);
	z += 4;
	/* the stream, written at idat + 8 and sl bytes long, goes in chunks:
	 * moved up by the room their headers and CRCs take, then down again
	 * chunk by chunk (each lands before what is still to be moved) */
	size_t sl = z - idat - 8, nch = (sl + split - 1) / split, from = idat + 12 * nch;
	memmove(out + from, out + idat + 8, sl);
	n = idat;
	for (size_t k = 0; k < nch; k++) {
		size_t cl = k + 1 < nch ? split : sl - k * split;
		put_be32(out + n, (uint32_t)cl);
		memcpy(out + n + 4, "IDAT", 4);
		memmove(out + n + 8, out + from + k * split, cl);
		put_be32(out + n + 8 + cl, crc32_png(out + n + 4, cl + 4));
		n += cl + 12;
	}
	put_be32(out + n, 0);
	memcpy(out + n + 4, "IEND", 4);
	put_be32(out + n + 8, crc32_png(out + n + 4, 4));
	*outlen = n + 12;
	free(raw);
	return out;
}

static void test_png_extra_idat(void)
{
	/* a few bytes past the rows are tolerated (as libpng does); a stream
	 * that goes on for long is refused, as a PNG of either layout */
	/* the same in IDAT chunks of one byte each, which are as valid:
	 * the limit counts image data, not the 12 bytes around each chunk's */
	static const struct { uint32_t w, h; int interlace; size_t extra, split; int rc; } cases[] = {
		{ 4, 4, 0, 0, 0, 0 }, { 4, 4, 0, 1000, 0, 0 }, { 4, 4, 0, 300000, 0, -1 },
		{ 4, 1, 0, 300000, 0, -1 }, { 9, 9, 1, 0, 0, 0 }, { 9, 9, 1, 300000, 0, -1 },
		{ 1, 1, 1, 300000, 0, -1 },
		{ 15000, 4, 0, 0, 1, 0 }, { 15000, 4, 0, 1000, 1, 0 }, { 15000, 4, 0, 300000, 1, -1 },
		{ 15000, 1, 0, 0, 1, 0 }, { 4, 4, 0, 300000, 1, -1 }, { 3000, 9, 1, 0, 1, 0 },
		{ 3000, 9, 1, 300000, 1, -1 }, { 15000, 4, 0, 0, 7, 0 },
	};
	img_decode_opts o = { .max_pixels = 1000000 };
	char err[IMG_ERRLEN];

	for (size_t c = 0; c < NELEM(cases); c++) {
		img im = { 0 };
		img_meta meta;
		size_t len;
		uint8_t *png = png_extra_idat(cases[c].w, cases[c].h, cases[c].interlace, cases[c].extra,
		                              cases[c].split, &len);

		CHECK(png != NULL);
		if (png == NULL)
			continue;
		if (img_decode(png, len, &o, &im, &meta, err, sizeof err) != cases[c].rc)
			fprintf(stderr, "  %ux%u interlace %d, %zu bytes past the rows, IDAT split %zu: %s\n",
			        cases[c].w, cases[c].h, cases[c].interlace, cases[c].extra, cases[c].split,
			        cases[c].rc == 0 ? err : "accepted");
		CHECK_INT(im.px != NULL ? 0 : -1, cases[c].rc);
		if (cases[c].rc == 0)
			CHECK(im.px != NULL && im.w == (int)cases[c].w && im.px[0] == 7);
		else
			CHECK_STR(err, "corrupt PNG: image data goes on after the last row");
		img_release(&im);
		free(png);
	}
}

/* ---- PNG shrink on load: k x k box averages ---- */

static uint64_t reserved_bytes;

static int note_reserve(void *arg, uint64_t bytes)
{
	(void)arg;
	reserved_bytes = bytes;
	return 0;
}

/* The box average of full over the k x k block at (ox, oy), in integers:
 * plain means rounded half up; with alpha, colour weighted by alpha (0
 * where the block is all transparent) and alpha the plain mean. */
static void box_ref(const img *full, int k, int ox, int oy, uint8_t *out)
{
	int ch = full->channels, alpha = ch == 2 || ch == 4;
	uint64_t s[4] = { 0, 0, 0, 0 }, n = 0;

	for (int y = oy * k; y < full->h && y < (oy + 1) * k; y++)
		for (int x = ox * k; x < full->w && x < (ox + 1) * k; x++) {
			const uint8_t *p = full->px + (size_t)y * full->stride + (size_t)x * (size_t)ch;
			for (int c = 0; c < ch; c++)
				s[c] += alpha && c < ch - 1 ? (uint64_t)p[c] * p[ch - 1] : p[c];
			n++;
		}
	for (int c = 0; c < ch; c++) {
		uint64_t d = alpha && c < ch - 1 ? s[ch - 1] : n;
		out[c] = d ? (uint8_t)((s[c] + d / 2) / d) : 0;
	}
}

/* Largest k with ceil(shown / k) >= m, by trying every k (up to 256). */
static int box_k(int shown, int m)
{
	int k = 1;

	for (int t = 2; t <= 256; t++)
		if ((shown + t - 1) / t >= m)
			k = t;
	return k;
}

/* Random pixels (alpha from a few fixed levels, 0 and 255 among them, so
 * transparent boxes happen), encoded as PNG, decoded at full size and with
 * min_width m: the small decode must have ceil(w / k) x ceil(h / k) pixels,
 * each equal to box_ref, and must reserve less than the full decode. */
static int png_box_case(int w, int h, int ch, int m, int orient, unsigned *seed)
{
	static const uint8_t alphas[] = { 0, 0, 1, 37, 128, 254, 255, 255 };
	img src = { 0 }, full = { 0 }, small = { 0 };
	img_encode_opts eo = { 90, 90, 1 };
	img_decode_opts o = { .max_pixels = 100000000, .reserve = note_reserve };
	uint8_t *enc = NULL, *png = NULL, want[4];
	size_t enclen = 0, pnglen;
	uint64_t full_bytes;
	char err[IMG_ERRLEN];
	int bad = 1, k, o1, o2;

	if (img_alloc(&src, w, h, ch) != 0)
		goto out;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w * ch; x++) {
			*seed = *seed * 1103515245u + 12345u;
			src.px[(size_t)y * src.stride + (size_t)x] = (uint8_t)(*seed >> 16);
			if ((ch == 2 || ch == 4) && x % ch == ch - 1)
				src.px[(size_t)y * src.stride + (size_t)x] = alphas[(*seed >> 24) & 7];
		}
	if (img_encode(&src, IMG_PNG, &eo, &enc, &enclen, err, sizeof err) != 0)
		goto out;
	png = orient != 1 ? png_with_exif(enc, enclen, enclen - 12, orient, &pnglen) : enc;
	if (orient == 1)
		pnglen = enclen;
	if (png == NULL)
		goto out;
	reserved_bytes = 0;
	if (decode_orient(png, pnglen, &o, &full, &o1, err, sizeof err) != 0)
		goto out;
	full_bytes = reserved_bytes;
	o.min_width = m;
	reserved_bytes = 0;
	if (decode_orient(png, pnglen, &o, &small, &o2, err, sizeof err) != 0 || o1 != orient || o2 != orient)
		goto out;
	/* with an eXIf chunk the shorter side counts, whatever it says */
	k = box_k(orient != 1 && h < w ? h : w, m);
	if (small.w != (w + k - 1) / k || small.h != (h + k - 1) / k || small.channels != ch ||
	    full.w != w || memcmp(full.px, src.px, (size_t)h * src.stride) != 0)
		goto out;
	if (reserved_bytes == 0 || full_bytes == 0 || (k > 2 && reserved_bytes >= full_bytes))
		goto out;
	/* no shrink: the pixels as stored, transparent ones' colour included */
	if (k == 1 && memcmp(small.px, full.px, (size_t)h * full.stride) != 0)
		goto out;
	for (int y = 0; k > 1 && y < small.h; y++)
		for (int x = 0; x < small.w; x++) {
			box_ref(&full, k, x, y, want);
			if (memcmp(want, small.px + (size_t)y * small.stride + (size_t)x * (size_t)ch, (size_t)ch) != 0)
				goto out;
		}
	bad = 0;
out:
	if (bad)
		fprintf(stderr, "png box case %dx%d ch %d min_width %d orientation %d failed\n", w, h, ch, m, orient);
	if (png != enc)
		free(png);
	free(enc);
	img_release(&src);
	img_release(&full);
	img_release(&small);
	return bad;
}

static void test_png_box(void)
{
	unsigned seed = 7;
	int bad = 0;

	for (int ch = 1; ch <= 4; ch++) {
		bad += png_box_case(37, 23, ch, 10, 1, &seed);      /* k 4: edge boxes 1 wide, 3 tall */
		bad += png_box_case(37, 23, ch, 37, 1, &seed);      /* k 1: no shrink */
		bad += png_box_case(64, 64, ch, 16, 1, &seed);      /* k 4, even */
		bad += png_box_case(40, 9, ch, 11, 1, &seed);       /* k 3: 4 would give 10 < 11 */
		bad += png_box_case(41, 9, ch, 21, 1, &seed);       /* k 2: ceil(41 / 2) = 21 */
		bad += png_box_case(300, 7, ch, 2, 1, &seed);       /* k 256 (cap), 2 x 1 out */
		bad += png_box_case(120, 50, ch, 20, 6, &seed);     /* eXIf: k from the shorter side, 2 */
		bad += png_box_case(120, 50, ch, 20, 3, &seed);     /* ... rotated or not */
		bad += png_box_case(50, 120, ch, 20, 6, &seed);     /* ... here the width, 2 */
		bad += png_box_case(120, 50, ch, 20, 1, &seed);     /* no eXIf: the width, 6 */
	}
	CHECK_INT(bad, 0);
	/* every sample 255 and alpha 255: a 255-sample k*k box must stay 255
	 * (the reciprocal path must not round it down) */
	{
		img src = { 0 }, small = { 0 };
		img_encode_opts eo = { 90, 90, 1 };
		img_decode_opts o = { .max_pixels = 100000000, .min_width = 3 };
		uint8_t *enc = NULL;
		size_t enclen = 0, n255 = 0;
		char err[IMG_ERRLEN];
		int orient;

		if (img_alloc(&src, 255, 255, 4) == 0) {
			memset(src.px, 255, (size_t)255 * src.stride);
			if (img_encode(&src, IMG_PNG, &eo, &enc, &enclen, err, sizeof err) == 0 &&
			    decode_orient(enc, enclen, &o, &small, &orient, err, sizeof err) == 0)
				for (size_t i = 0; i < (size_t)small.h * small.stride; i++)
					n255 += small.px[i] == 255;
		}
		CHECK_INT(small.w, 3);
		CHECK_INT(n255, 3 * 3 * 4);
		free(enc);
		img_release(&src);
		img_release(&small);
	}
}

/* What each decoder asks of the memory budget: at least its pixels, and
 * for a shrunk decode well under what the full picture would take. */
static uint64_t reserved_for(const char *rel, int min_width, img *im)
{
	img_decode_opts o = { .max_pixels = 100000000, .min_width = min_width, .reserve = note_reserve };
	uint8_t *buf;
	size_t len;
	char err[IMG_ERRLEN];
	int orient;

	memset(im, 0, sizeof *im);
	reserved_bytes = 0;
	if ((buf = slurp(rel, &len)) == NULL)
		return 0;
	if (decode_orient(buf, len, &o, im, &orient, err, sizeof err) != 0) {
		fprintf(stderr, "%s: %s\n", rel, err);
		reserved_bytes = 0;
	}
	free(buf);
	return reserved_bytes;
}

static void test_reserve(void)
{
	static const struct { const char *rel; int min_width, w, h; uint64_t full; } cases[] = {
		{ "edge/png_rgba_photo_500x500.png", 0, 500, 500, 0 },
		{ "edge/png_rgba_photo_500x500.png", 100, 100, 100, 500 * 500 * 4 },
		{ "edge/png_adam7_interlaced.png", 8, 32, 32, 0 },
		{ "photos/building_nikon_p7000_orient6_3648x2736.webp", 400, 912, 684, 3648u * 2736u * 3 },
		{ "photos/tree_1024x772.webp", 0, 1024, 772, 0 },
		{ "edge/webp_lossless_alpha.webp", 0, 0, 0, 0 },
		{ "edge/webp_animated_10_frames.webp", 0, 370, 285, 0 },
		{ "photos/cardinal_bird_1920x1080.jpg", 240, 240, 135, 1920u * 1080u * 3 },
	};
	img im;

	for (size_t i = 0; i < NELEM(cases); i++) {
		uint64_t got = reserved_for(cases[i].rel, cases[i].min_width, &im);
		uint64_t px = (uint64_t)im.w * (uint64_t)im.h * (uint64_t)im.channels;
		int ok = im.px != NULL && got >= px && (cases[i].w == 0 || (im.w == cases[i].w && im.h == cases[i].h))
		         && (cases[i].full == 0 || got < cases[i].full / 4);
		if (!ok)
			fprintf(stderr, "reserve %s min_width %d: %dx%d, %llu bytes\n", cases[i].rel,
			        cases[i].min_width, im.w, im.h, (unsigned long long)got);
		CHECK(ok);
		img_release(&im);
	}
	/* a lossless WebP goes through a full-size ARGB buffer: counted */
	reserved_for("edge/webp_lossless_alpha.webp", 0, &im);
	CHECK(reserved_bytes >= (uint64_t)im.w * (uint64_t)im.h * 8);
	img_release(&im);
	/* an animation: four canvases */
	reserved_for("edge/webp_animated_10_frames.webp", 0, &im);
	CHECK(reserved_bytes >= 16u * 370u * 285u);
	img_release(&im);
}

/* ---- hostile input: every prefix, random damage ---- */

/* Contract on any input: success gives a sane image, failure gives no
 * pixels, orientation 1 and a reason.  Returns 1 when it was broken. */
static int contract_broken(const uint8_t *buf, size_t len, int *failed, char err[IMG_ERRLEN])
{
	img_decode_opts o = { .max_pixels = 4000000 };
	img im;
	int orient = 0, rc, broken;

	rc = decode_orient(buf, len, &o, &im, &orient, err, IMG_ERRLEN);
	if (rc == 0)
		broken = im.px == NULL || im.w < 1 || im.h < 1 || im.channels < 1 ||
		         im.channels > 4 || orient < 1 || orient > 8;
	else
		broken = rc != -1 || im.px != NULL || orient != 1 || err[0] == '\0';
	*failed = rc != 0;
	img_release(&im);
	return broken;
}

/*
 * JPEG metadata is read from the file's bytes (jpegio.c): an ICC profile in
 * APP2 chunks is put together by sequence number whatever their order; a
 * repeated or missing number, or counts that disagree, are malformed (the
 * rules of libjpeg's jpeg_read_icc_profile); over 4 MB in all is too large;
 * the EXIF is the first APP1 that says "Exif", wherever it comes.
 */
static size_t put_seg(uint8_t *o, int marker, const char *id, size_t idlen, int seq, int count,
                      const uint8_t *data, size_t n)
{
	size_t h = idlen + (seq >= 0 ? 2 : 0), len = 2 + h + n;

	o[0] = 0xff;
	o[1] = (uint8_t)marker;
	o[2] = (uint8_t)(len >> 8);
	o[3] = (uint8_t)len;
	memcpy(o + 4, id, idlen);
	if (seq >= 0) {
		o[4 + idlen] = (uint8_t)seq;
		o[5 + idlen] = (uint8_t)count;
	}
	memcpy(o + 4 + h, data, n);
	return 2 + len;
}

static void icc_case(const char *what, const uint8_t *jpg, size_t jlen, const int *seqs,
                     const int *counts, int nseg, size_t part, const char *note)
{
	uint8_t *buf = malloc(jlen + (size_t)nseg * (part + 32) + 64), prof[65000];
	img_decode_opts o = { .max_pixels = 50000000u };
	img im;
	img_meta meta;
	char err[IMG_ERRLEN];
	size_t n = 2;

	for (size_t i = 0; i < sizeof prof; i++)
		prof[i] = (uint8_t)(i * 7 + i / 251);
	memcpy(buf, jpg, 2);
	for (int k = 0; k < nseg; k++) {
		int seq = seqs[k];
		/* chunk seq holds bytes (seq-1)*part ..., so the whole is prof in order */
		n += put_seg(buf + n, 0xe2, "ICC_PROFILE", 12, seq, counts[k],
		             prof + (size_t)(seq > 0 ? seq - 1 : 0) * part, part);
	}
	memcpy(buf + n, jpg + 2, jlen - 2);
	CHECK_INT(img_decode(buf, n + jlen - 2, &o, &im, &meta, err, sizeof err), 0);
	if (note == NULL) {
		int same = meta.icc != NULL && meta.icc_len == (size_t)nseg * part &&
		           memcmp(meta.icc, prof, meta.icc_len) == 0;
		if (!same)
			fprintf(stderr, "  %s: profile of %zu bytes, note %s\n", what, meta.icc_len,
			        meta.icc_note ? meta.icc_note : "none");
		CHECK(same);
	} else {
		CHECK(meta.icc == NULL);
		CHECK_STR(meta.icc_note ? meta.icc_note : "(none)", note);
	}
	img_meta_release(&meta);
	img_release(&im);
	free(buf);
}

static void test_jpeg_metadata(void)
{
	img src;
	img_encode_opts eo = { .jpeg_quality = 85 };
	uint8_t *jpg = NULL, *buf;
	size_t len = 0, n;
	char err[IMG_ERRLEN];
	static const int order[] = { 2, 3, 1 }, three[] = { 3, 3, 3 }, dup[] = { 1, 2, 2 },
	                 gap[] = { 1, 3 }, mixed[] = { 3, 3, 4 }, zero[] = { 0 }, one[] = { 1 };

	CHECK_INT(img_alloc(&src, 24, 16, 3), 0);
	memset(src.px, 128, (size_t)src.stride * src.h);
	CHECK_INT(img_encode(&src, IMG_JPEG, &eo, &jpg, &len, err, sizeof err), 0);
	img_release(&src);
	if (jpg == NULL)
		return;
	icc_case("chunks 2, 3, 1", jpg, len, order, three, 3, 20000, NULL);
	icc_case("chunk 2 twice", jpg, len, dup, three, 3, 20000, "malformed ICC profile markers");
	icc_case("chunk 2 missing", jpg, len, gap, three, 2, 20000, "malformed ICC profile markers");
	icc_case("counts 3 and 4", jpg, len, order, mixed, 3, 20000, "malformed ICC profile markers");
	icc_case("count 0", jpg, len, one, zero, 1, 100, "malformed ICC profile markers");

	/* 65 chunks of 65,000 bytes: over 4 MB */
	buf = malloc(len + 65 * 65100);
	n = 2;
	memcpy(buf, jpg, 2);
	static uint8_t chunk[65000];
	for (int k = 1; k <= 65; k++)
		n += put_seg(buf + n, 0xe2, "ICC_PROFILE", 12, k, 65, chunk, sizeof chunk);
	memcpy(buf + n, jpg + 2, len - 2);
	{
		img_decode_opts o = { .max_pixels = 50000000u };
		img im;
		img_meta meta;
		CHECK_INT(img_decode(buf, n + len - 2, &o, &im, &meta, err, sizeof err), 0);
		CHECK(meta.icc == NULL);
		CHECK_STR(meta.icc_note ? meta.icc_note : "(none)", "ICC profile larger than 4 MB");
		img_meta_release(&meta);
		img_release(&im);
	}

	/* EXIF after an XMP APP1 and junk: orientation 6 found */
	{
		static const uint8_t xmp[] = "http://ns.adobe.com/xap/1.0/";
		/* big-endian TIFF, IFD0 with one entry: Orientation (0x0112), SHORT, 1, value 6 */
		static const uint8_t tiff[] = { 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
		                                0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0 };
		img_decode_opts o = { .max_pixels = 50000000u };
		img im;
		img_meta meta;
		n = 2;
		n += put_seg(buf + n, 0xe1, (const char *)xmp, sizeof xmp, -1, 0, chunk, 100);
		n += put_seg(buf + n, 0xe2, "JUNK", 4, -1, 0, chunk, 60000);
		n += put_seg(buf + n, 0xe1, "Exif\0", 6, -1, 0, tiff, sizeof tiff);
		n += put_seg(buf + n, 0xe1, "Exif\0", 6, -1, 0, tiff, 8);  /* a second: not read */
		memcpy(buf + n, jpg + 2, len - 2);
		CHECK_INT(img_decode(buf, n + len - 2, &o, &im, &meta, err, sizeof err), 0);
		CHECK_INT(meta.orientation, 6);
		img_meta_release(&meta);
		img_release(&im);
	}
	free(buf);
	free(jpg);
}

static void test_truncations(void)
{
	static const char *files[] = {
		"edge/jpeg_arithmetic_227x149.jpg", "edge/jpeg_1x1_progressive.jpg",
		"edge/png_adam7_interlaced.png", "edge/png_palette_trns.png",
		"edge/webp_lossy.webp", "edge/webp_exif_orientation_6.webp",
		"edge/webp_animated_10_frames.webp",
	};
	size_t i, cut, len;
	char err[IMG_ERRLEN], want[32];

	for (i = 0; i < NELEM(files); i++) {
		uint8_t *buf = slurp(files[i], &len);
		int broken = 0, accepted = 0, failed, misnamed = 0;
		CHECK(buf != NULL);
		if (buf == NULL)
			continue;
		snprintf(want, sizeof want, "truncated %s", img_format_name(img_sniff(buf, len)));
		for (cut = 0; cut < len; cut++) {
			/* an exact-size heap copy, so ASan catches any over-read */
			uint8_t *h = malloc(cut ? cut : 1);
			memcpy(h, buf, cut);
			broken += contract_broken(h, cut, &failed, err);
			accepted += !failed;
			/* past the first chunk or marker, a cut file is called so */
			if (failed && cut >= 64 && strcmp(err, want) != 0) {
				if (misnamed++ < 3)
					fprintf(stderr, "  %s cut at %zu: %s\n", files[i], cut, err);
			}
			free(h);
		}
		CHECK_INT(misnamed, 0);
		/* no prefix of a file is a complete picture, but for a
		 * Huffman-coded JPEG lacking only (part of) its EOI marker, and a
		 * PNG only (part of) its IEND chunk (test_missing_end) */
		int whole = strcmp(files[i], "edge/jpeg_1x1_progressive.jpg") == 0 ? 2
		            : strstr(files[i], ".png") != NULL ? 12 : 0;
		if (broken || accepted != whole)
			fprintf(stderr, "  %s: %d prefixes broke the contract, %d accepted\n",
			        files[i], broken, accepted);
		CHECK_INT(broken, 0);
		CHECK_INT(accepted, whole);
		free(buf);
	}
}

/*
 * Decode the first `cut` bytes of buf: a whole picture equal to ref when
 * whole_expected (counted in *whole), else a failure named `want` (an
 * acceptance is counted in *early).  1 when it failed for another reason.
 */
static int try_cut(const char *what, const uint8_t *buf, size_t len, size_t cut,
                   const img_decode_opts *o, const img *ref, int whole_expected,
                   const char *want, int *whole, int *early)
{
	uint8_t *h = malloc(cut ? cut : 1);     /* exact size: ASan sees any over-read */
	img im;
	img_meta meta;
	char err[IMG_ERRLEN];
	int rc, wrong = 0;

	memcpy(h, buf, cut);
	rc = img_decode(h, cut, o, &im, &meta, err, sizeof err);
	if (whole_expected) {
		*whole += rc == 0 && same_pixels(ref, &im);
	} else {
		*early += rc == 0;
		wrong = rc != 0 && strcmp(err, want) != 0;
		if (rc == 0 || wrong)
			fprintf(stderr, "  %s cut at %zu of %zu: %s\n", what, cut, len,
			        rc == 0 ? "accepted" : err);
	}
	img_meta_release(&meta);
	img_release(&im);
	free(h);
	return wrong;
}

/*
 * A PNG that lacks only its IEND chunk, or part of it, has every pixel: it
 * decodes, to the whole file's pixels.  So does one cut at the boundary
 * of a chunk after its image data.  One cut anywhere in its image data,
 * or at a boundary between two IDAT chunks, is truncated.
 */
static void check_iend_cuts(const char *what, const uint8_t *buf, size_t len, int min_width,
                            int samples, int boundaries)
{
	img_decode_opts o = { .max_pixels = 50000000u, .min_width = min_width };
	img ref;
	img_meta meta;
	char err[IMG_ERRLEN];
	size_t pos = 8, last_idat = 0;
	int whole = 0, early = 0, wrong = 0, idat_cuts = 0;

	CHECK_INT(img_decode(buf, len, &o, &ref, &meta, err, sizeof err), 0);
	img_meta_release(&meta);
	while (pos + 12 <= len && memcmp(buf + pos + 4, "IEND", 4) != 0) {
		size_t n = (size_t)buf[pos] << 24 | buf[pos + 1] << 16 | buf[pos + 2] << 8 | buf[pos + 3];
		if (memcmp(buf + pos + 4, "IDAT", 4) == 0)
			last_idat = pos + n + 12;
		pos += n + 12;
	}
	CHECK(last_idat > 0 && pos + 12 == len);
	/* at every chunk boundary, inside IEND, and a sample of the rest */
	for (size_t cut = 9; cut < len; cut++) {
		int boundary = 0;
		for (size_t p = 8; p + 12 <= len; ) {
			size_t n = (size_t)buf[p] << 24 | buf[p + 1] << 16 | buf[p + 2] << 8 | buf[p + 3];
			if (p == cut)
				boundary = 1;
			p += n + 12;
		}
		if (!boundary && cut < pos && (cut * 7919) % (len / (size_t)samples + 1) != 0)
			continue;
		int all = cut >= last_idat && (boundary || cut >= pos);
		idat_cuts += boundary && !all;
		wrong += try_cut(what, buf, len, cut, &o, &ref, all, "truncated PNG", &whole, &early);
	}
	CHECK(whole >= 12);
	CHECK_INT(early, 0);
	CHECK_INT(wrong, 0);
	CHECK_INT(idat_cuts, boundaries);       /* chunk boundaries before the image data's end */
	img_release(&ref);
}

static void test_png_missing_iend(void)
{
	size_t len;
	uint8_t *buf;

	buf = slurp("photos/kodim23_768x512.png", &len);
	CHECK(buf != NULL);
	if (buf != NULL)
		check_iend_cuts("kodim23", buf, len, 200, 40, 5); /* rows boxed as they come */
	free(buf);
	buf = slurp("edge/png_adam7_interlaced.png", &len);
	CHECK(buf != NULL);
	if (buf != NULL)
		check_iend_cuts("adam7", buf, len, 0, 40, 2);
	free(buf);
}

/*
 * A JPEG that lacks only its EOI marker (or its last byte) has every pixel:
 * it decodes, to exactly the whole file's pixels.  One byte less is a
 * truncated file, whose missing data libjpeg would fill with grey: every
 * such cut fails, whether it lands in the last MCUs of a baseline scan,
 * between restart intervals, inside a progressive file's last scans or
 * between two of its scans.  Tried: the last `tail` prefixes of buf, then
 * `samples` more spread over the rest.
 */
static void check_eoi_cuts(const char *what, const uint8_t *buf, size_t len, int min_width,
                           size_t tail, size_t samples)
{
	img_decode_opts o = { .max_pixels = 50000000u, .min_width = min_width };
	img ref;
	img_meta meta;
	char err[IMG_ERRLEN];
	int whole = 0, early = 0, wrong = 0;

	CHECK(len > 300 && buf[len - 2] == 0xff && buf[len - 1] == 0xd9);
	if (len <= 300 || tail >= len - 5)
		tail = len - 5;
	CHECK_INT(img_decode(buf, len, &o, &ref, &meta, err, sizeof err), 0);
	img_meta_release(&meta);
	for (size_t k = 1; k <= tail; k++)
		wrong += try_cut(what, buf, len, len - k, &o, &ref, k <= 2, "truncated JPEG",
		                 &whole, &early);
	for (size_t k = 0; k < samples; k++)
		wrong += try_cut(what, buf, len, 5 + (len - tail - 5) * k / samples, &o, &ref, 0,
		                 "truncated JPEG", &whole, &early);
	if (whole != 2)
		fprintf(stderr, "  %s: %d of the 2 EOI-less prefixes decoded whole\n", what, whole);
	CHECK_INT(whole, 2);
	CHECK_INT(early, 0);
	CHECK_INT(wrong, 0);
	img_release(&ref);
}

static void test_jpeg_missing_eoi(void)
{
	static const struct {
		const char *file;
		int min_width;
		size_t tail, samples;
	} cases[] = {
		{ "edge/jpeg_1x1_progressive.jpg", 0, (size_t)-1, 0 },  /* every prefix */
		{ "edge/jpeg_restart_markers_1024x631.jpg", 200, 24, 12 },
		{ "edge/jpeg_grayscale_800x533.jpg", 200, 24, 12 },
		/* at 1/8, with its EOI decoded from the DC scans alone; without,
		 * as it is (a cut cannot be parsed to its end): every scan */
		{ "edge/jpeg_progressive_2268x1512.jpg", 200, 8, 8 },
		{ "edge/jpeg_420_2268x1512.jpg", 200, 24, 12 },
	};
	img_encode_opts eo = { .jpeg_quality = 85 };
	img src;
	uint8_t *jpg = NULL;
	size_t len = 0;
	char err[IMG_ERRLEN];

	/* a small baseline file of our own encoder: every prefix */
	CHECK_INT(img_alloc(&src, 61, 43, 3), 0);
	for (int y = 0; y < src.h; y++)
		for (int x = 0; x < src.w * 3; x++)
			src.px[(size_t)y * src.stride + x] = (uint8_t)(x * 7 + y * 13 + (x * y) % 31);
	CHECK_INT(img_encode(&src, IMG_JPEG, &eo, &jpg, &len, err, sizeof err), 0);
	if (jpg != NULL)
		check_eoi_cuts("encoded 61x43", jpg, len, 0, (size_t)-1, 0);
	free(jpg);
	img_release(&src);

	for (size_t i = 0; i < NELEM(cases); i++) {
		uint8_t *buf = slurp(cases[i].file, &len);
		CHECK(buf != NULL);
		if (buf != NULL)
			check_eoi_cuts(cases[i].file, buf, len, cases[i].min_width, cases[i].tail,
			               cases[i].samples);
		free(buf);
	}

	/* arithmetic coding leaves no trace of missing data: no EOI, no picture */
	uint8_t *buf = slurp("edge/jpeg_arithmetic_227x149.jpg", &len);
	CHECK(buf != NULL && len > 2);
	if (buf != NULL && len > 2) {
		img im;
		img_meta meta;
		img_decode_opts o = { .max_pixels = 50000000u };
		CHECK_INT(img_decode(buf, len - 2, &o, &im, &meta, err, sizeof err), -1);
		CHECK_STR(err, "truncated JPEG");
		img_meta_release(&meta);
		img_release(&im);
	}
	free(buf);
}

/* Offsets in buf of every marker 0xFF m (lo <= m <= hi), at most max. */
static size_t find_markers(const uint8_t *buf, size_t len, int lo, int hi, size_t *at, size_t max)
{
	size_t n = 0;

	for (size_t i = 2; i + 1 < len && n < max; i++)
		if (buf[i] == 0xff && buf[i + 1] >= lo && buf[i + 1] <= hi)
			at[n++] = i;
	return n;
}

/*
 * A JPEG cut short and then closed with an EOI marker (as a cut upload
 * that something "repaired" is) lacks pixels as much as one without: libjpeg
 * fills the rest grey all the same, only its source never runs dry.  Each
 * cut of buf in `cuts` (plus `samples` more spread over it) gets an EOI:
 * it must fail as truncated, or, where the scale leaves the missing data
 * unused (an AC scan of a component decoded from its DC alone), decode to
 * exactly the whole file's pixels (returned: how many did).  A cut in a
 * marker segment may fail for another reason ("Bogus marker length"), but
 * those in entropy-coded data are "truncated JPEG" (some must be).
 */
static int check_eoi_closed(const char *what, const uint8_t *buf, size_t len, int min_width,
                            const size_t *cuts, size_t ncuts, size_t samples)
{
	img_decode_opts o = { .max_pixels = 50000000u, .min_width = min_width };
	img ref;
	img_meta meta;
	char err[IMG_ERRLEN];
	uint8_t *h = malloc(len + 2);
	int whole = 0, bad = 0, failed = 0;

	CHECK_INT(img_decode(buf, len, &o, &ref, &meta, err, sizeof err), 0);
	img_meta_release(&meta);
	for (size_t k = 0; h != NULL && k < ncuts + samples; k++) {
		size_t cut = k < ncuts ? cuts[k] : 5 + (len - 8) * (k - ncuts) / samples;
		img im;
		int rc;

		if (cut < 5 || cut > len - 3)
			continue;
		memcpy(h, buf, cut);
		h[cut] = 0xff;
		h[cut + 1] = 0xd9;
		rc = img_decode(h, cut + 2, &o, &im, &meta, err, sizeof err);
		if (rc == 0 && same_pixels(&ref, &im))
			whole++;
		else if (rc != 0)
			failed += strcmp(err, "truncated JPEG") == 0;
		else if (bad++ < 3)
			fprintf(stderr, "  %s cut at %zu of %zu, then EOI: accepted, other pixels\n",
			        what, cut, len);
		img_meta_release(&meta);
		img_release(&im);
	}
	CHECK(h != NULL);
	CHECK(failed > 0);
	CHECK_INT(bad, 0);
	free(h);
	img_release(&ref);
	return whole;
}

static void test_jpeg_closed_early(void)
{
	img_encode_opts eo = { .jpeg_quality = 85 };
	img src;
	uint8_t *buf = NULL;
	size_t len = 0, at[64], n;
	char err[IMG_ERRLEN];

	/* baseline, our own encoder's: every cut */
	CHECK_INT(img_alloc(&src, 61, 43, 3), 0);
	for (int y = 0; y < src.h; y++)
		for (int x = 0; x < src.w * 3; x++)
			src.px[(size_t)y * src.stride + x] = (uint8_t)(x * 7 + y * 13 + (x * y) % 31);
	CHECK_INT(img_encode(&src, IMG_JPEG, &eo, &buf, &len, err, sizeof err), 0);
	if (buf != NULL)
		CHECK_INT(check_eoi_closed("encoded 61x43", buf, len, 0, NULL, 0, len), 0);
	free(buf);
	img_release(&src);

	/* restart markers: cut mid-interval and right before an RSTn */
	if ((buf = slurp("edge/jpeg_restart_markers_1024x631.jpg", &len)) != NULL) {
		n = find_markers(buf, len, 0xd0, 0xd7, at, NELEM(at));
		CHECK(n > 4);
		CHECK_INT(check_eoi_closed("restart markers", buf, len, 200, at, n, 12), 0);
	}
	free(buf);
	if ((buf = slurp("edge/jpeg_1x1_progressive.jpg", &len)) != NULL)
		CHECK_INT(check_eoi_closed("1x1 progressive", buf, len, 0, NULL, 0, len), 0);
	free(buf);

	/* progressive, cut inside scans and between them (at a DHT or SOS):
	 * at 1/2 every scan counts; at 1/8 the luma's AC scans do not */
	if ((buf = slurp("edge/jpeg_progressive_2268x1512.jpg", &len)) != NULL) {
		n = find_markers(buf, len, 0xc4, 0xc4, at, NELEM(at));
		n += find_markers(buf, len, 0xda, 0xda, at + n, NELEM(at) - n);
		CHECK(n > 8);
		CHECK_INT(check_eoi_closed("progressive at 1/2", buf, len, 1000, at, n, 8), 0);
		CHECK(check_eoi_closed("progressive at 1/8", buf, len, 200, at, n, 8) > 0);
	}
	free(buf);
}

/*
 * A WebP that lacks only the pad byte after its odd-sized last chunk has
 * every byte of its picture: it decodes, to the padded file's pixels.  Two
 * bytes short, or one short of an even-sized last chunk, is truncated.
 * The corpus's lossless file ends on an odd chunk; the others get an odd
 * metadata chunk appended (ICMT, which decoders skip).
 */
static void check_pad_cut(const char *what, const uint8_t *buf, size_t len, int min_width)
{
	img_decode_opts o = { .max_pixels = 50000000u, .min_width = min_width };
	img ref;
	img_meta meta;
	char err[IMG_ERRLEN];
	int whole = 0, early = 0, wrong = 0;

	CHECK_INT(img_decode(buf, len, &o, &ref, &meta, err, sizeof err), 0);
	img_meta_release(&meta);
	wrong += try_cut(what, buf, len, len - 1, &o, &ref, 1, "truncated WebP", &whole, &early);
	wrong += try_cut(what, buf, len, len - 2, &o, &ref, 0, "truncated WebP", &whole, &early);
	wrong += try_cut(what, buf, len, len - 3, &o, &ref, 0, "truncated WebP", &whole, &early);
	if (whole != 1)
		fprintf(stderr, "  %s: the file without its pad byte did not decode whole\n", what);
	CHECK_INT(whole, 1);
	CHECK_INT(early, 0);
	CHECK_INT(wrong, 0);
	img_release(&ref);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void test_webp_missing_pad(void)
{
	static const char *odd_added[] = {
		"edge/webp_lossy.webp", "edge/webp_exif_orientation_6.webp",
		"edge/webp_animated_10_frames.webp", "edge/webp_lossy_alpha.webp",
	};
	size_t len;
	uint8_t *buf = slurp("edge/webp_lossless_alpha.webp", &len);

	CHECK(buf != NULL && len > 20 && (buf[16] & 1) == 1);    /* VP8L, odd, the only chunk */
	if (buf != NULL) {
		check_pad_cut("webp_lossless_alpha", buf, len, 0);
		check_pad_cut("webp_lossless_alpha at 200", buf, len, 200);
	}
	free(buf);
	for (size_t i = 0; i < NELEM(odd_added); i++) {
		uint8_t *big;
		if ((buf = slurp(odd_added[i], &len)) == NULL || !(big = malloc(len + 14))) {
			CHECK(0);
			free(buf);
			continue;
		}
		memcpy(big, buf, len);
		memcpy(big + len, "ICMT\5\0\0\0thumb\0", 14);   /* 5 bytes and the pad */
		put_le32(big + 4, (uint32_t)(len + 14 - 8));
		check_pad_cut(odd_added[i], big, len + 14, 64);
		/* the unchanged file, one byte short: its last chunk is even */
		int whole = 0, early = 0;
		CHECK_INT(try_cut(odd_added[i], buf, len, len - 1, &(img_decode_opts){ .max_pixels = 50000000u },
		                  NULL, 0, "truncated WebP", &whole, &early), 0);
		CHECK_INT(early, 0);
		free(big);
		free(buf);
	}
}

static void test_mutations(void)
{
	static const char *files[] = {
		"edge/jpeg_arithmetic_227x149.jpg", "edge/jpeg_exif_orientation_6.jpg",
		"edge/png_palette_trns.png", "edge/png_adam7_interlaced.png",
		"edge/webp_lossy.webp", "edge/webp_lossless_alpha.webp",
		"edge/webp_animated_10_frames.webp",
	};
	uint32_t seed = 20250101;
	size_t i, len;
	char err[IMG_ERRLEN];
	int it, k;

	for (i = 0; i < NELEM(files); i++) {
		uint8_t *buf = slurp(files[i], &len);
		int broken = 0, failed;
		CHECK(buf != NULL);
		if (buf == NULL)
			continue;
		for (it = 0; it < 150; it++) {
			uint8_t *h = malloc(len);
			memcpy(h, buf, len);
			for (k = 0; k < 1 + it % 8; k++) {
				seed = seed * 1103515245u + 12345u;
				/* half the damage lands in the first 512 bytes: the headers */
				size_t at = (seed >> 1) % (k % 2 ? len : (len < 512 ? len : 512));
				seed = seed * 1103515245u + 12345u;
				h[at] = (uint8_t)(seed >> 16);
			}
			broken += contract_broken(h, len, &failed, err);
			free(h);
		}
		CHECK_INT(broken, 0);
		free(buf);
	}
}

int main(void)
{
	corpus = getenv("THUMBD_CORPUS");
	if (corpus == NULL || corpus[0] == '\0')
		corpus = "../shared/corpus";

	test_sniff();
	test_decode_errors_inline();
	test_alloc();
	test_orient_synthetic();
	test_round_trips();
	test_padded_stride();
	test_encode_errors();
	test_png_exif();
	test_png_extra_idat();
	test_jpeg_unsupported_sof();
	test_jpeg_sparse_chroma();
	test_png_box();
	if (test_corpus_present()) {
		test_table_complete();
		test_corpus_dir("edge");
		test_corpus_dir("broken");
		test_limits_and_shrink();
		test_reserve();
		test_cmyk();
		test_orient_corpus();
		test_truncations();
		test_jpeg_missing_eoi();
		test_jpeg_closed_early();
		test_jpeg_metadata();
		test_png_missing_iend();
		test_webp_missing_pad();
		test_mutations();
	}
	return CHECK_DONE();
}
