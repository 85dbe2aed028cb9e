/*
 * test_png_chunks: what pngio.c lets libpng do with the ancillary chunks
 * thumbd never reads.  A zTXt or iTXt chunk is a zlib stream libpng would
 * inflate whole (a 12 MB file of them kept a worker busy for 40 s), so
 * the test counts the bytes zlib inflates during a decode, through an
 * inflate() of its own that libpng's calls resolve to (the executable's
 * definition comes first) and that hands on to zlib's: deterministic where
 * a time limit would not be.  With text chunks skipped, a decode inflates
 * its image data and nothing more, wherever the chunks sit (before the
 * image data, read by png_read_info, or after it, by png_read_end), and
 * the pixels are those of the same picture without them.
 * The PNGs are written here with libpng itself.
 */
#define _GNU_SOURCE     /* RTLD_NEXT */
#include "check.h"
#include "imgcheck.h"
#include "img.h"

#include <dlfcn.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zlib.h>

/* ---- counting what zlib inflates ---- */

static unsigned long long inflated;

int inflate(z_streamp strm, int flush)
{
	static int (*real)(z_streamp, int);
	uInt before = strm->avail_out;
	int rc;

	if (real == NULL) {
		*(void **)&real = dlsym(RTLD_NEXT, "inflate");
		if (real == NULL)
			abort();
	}
	rc = real(strm, flush);
	inflated += before - strm->avail_out;
	return rc;
}

/* ---- PNGs with text ---- */

struct mem {
	uint8_t *buf;
	size_t len, cap;
};

static void mem_write(png_structp png, png_bytep data, size_t n)
{
	struct mem *m = png_get_io_ptr(png);

	if (m->len + n > m->cap) {
		size_t cap = (m->len + n) * 2;
		uint8_t *b = realloc(m->buf, cap);
		if (b == NULL)
			png_error(png, "out of memory");
		m->buf = b;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, data, n);
	m->len += n;
}

static void mem_flush(png_structp png)
{
	(void)png;
}

#define W 64
#define H 48
#define TEXT_BYTES (1u << 20)
#define NTEXT 4                 /* of each kind, before and after the image data */

/* Written out of make_png, whose setjmp would make gcc warn about these
 * loops' counters. */
#ifdef __GNUC__
__attribute__((noinline))
#endif
static void fill_texts(png_text *t, char *text, int n)
{
	static const int kinds[3] = { PNG_TEXT_COMPRESSION_zTXt, PNG_ITXT_COMPRESSION_zTXt,
	                              PNG_TEXT_COMPRESSION_NONE };

	memset(t, 0, (size_t)n * sizeof *t);
	for (int i = 0; i < n; i++) {
		t[i].compression = kinds[i % 3];
		t[i].key = (char *)(i % 3 == 0 ? "Comment" : i % 3 == 1 ? "Description" : "Title");
		/* tEXt is not compressed: a shorter one keeps the file small */
		t[i].text = text;
		t[i].text_length = i % 3 == 2 ? 1000 : TEXT_BYTES;
		t[i].lang = (char *)"";
		t[i].lang_key = (char *)"";
	}
}

#ifdef __GNUC__
__attribute__((noinline))
#endif
static void fill_rows(uint8_t *px, png_bytep *rows)
{
	for (int y = 0; y < H; y++) {
		rows[y] = px + (size_t)y * W * 3;
		for (int x = 0; x < W * 3; x++)
			rows[y][x] = (uint8_t)(x * 5 + y * 3);
	}
}

/* A W x H RGB PNG, with 3 * NTEXT text chunks (zTXt, iTXt, tEXt) before
 * and after its image data when texts is set; NULL on failure. */
static uint8_t *make_png(int texts, size_t *len)
{
	static uint8_t px[W * H * 3];
	static png_bytep rows[H];
	static png_text t[3 * NTEXT];
	static struct mem m;
	static char *text;
	png_structp png;
	png_infop info;

	memset(&m, 0, sizeof m);
	if ((text = calloc(TEXT_BYTES + 1, 1)) == NULL)
		return NULL;
	memset(text, 'a', TEXT_BYTES);
	fill_rows(px, rows);
	fill_texts(t, text, 3 * NTEXT);
	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	info = png ? png_create_info_struct(png) : NULL;
	if (info == NULL || setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		free(m.buf);
		free(text);
		return NULL;
	}
	png_set_write_fn(png, &m, mem_write, mem_flush);
	png_set_IHDR(png, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
	             PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	if (texts)
		png_set_text(png, info, t, 3 * NTEXT);
	png_write_info(png, info);
	png_write_image(png, rows);
	/* png_write_end writes the texts not yet written: none; set them again */
	if (texts) {
		png_free_data(png, info, PNG_FREE_TEXT, -1);
		png_set_text(png, info, t, 3 * NTEXT);
	}
	png_write_end(png, texts ? info : NULL);
	png_destroy_write_struct(&png, &info);
	free(text);
	*len = m.len;
	return m.buf;
}

/* Chunks of type name in a PNG. */
static int count_chunks(const uint8_t *buf, size_t len, const char *name)
{
	int n = 0;

	for (size_t pos = 8; pos + 12 <= len; ) {
		size_t c = (size_t)buf[pos] << 24 | (size_t)buf[pos + 1] << 16
		           | (size_t)buf[pos + 2] << 8 | buf[pos + 3];
		n += memcmp(buf + pos + 4, name, 4) == 0;
		pos += c + 12;
	}
	return n;
}

static void test_text_not_inflated(void)
{
	img_decode_opts o = { .max_pixels = 1000000 };
	img plain = { 0 }, texty = { 0 };
	img_meta meta;
	char err[IMG_ERRLEN];
	size_t plen = 0, tlen = 0;
	uint8_t *p = make_png(0, &plen), *t = make_png(1, &tlen);
	unsigned long long image_bytes, text_bytes;

	CHECK(p != NULL && t != NULL);
	if (p == NULL || t == NULL)
		goto out;
	/* the chunks are there, before and after the image data */
	CHECK_INT(count_chunks(t, tlen, "zTXt"), 2 * NTEXT);
	CHECK_INT(count_chunks(t, tlen, "iTXt"), 2 * NTEXT);
	CHECK_INT(count_chunks(t, tlen, "tEXt"), 2 * NTEXT);
	CHECK_INT(count_chunks(p, plen, "zTXt") + count_chunks(p, plen, "tEXt"), 0);

	inflated = 0;
	CHECK_INT(img_decode(p, plen, &o, &plain, &meta, err, sizeof err), 0);
	img_meta_release(&meta);
	image_bytes = inflated;
	CHECK(image_bytes >= (unsigned long long)H * (1 + W * 3));

	inflated = 0;
	CHECK_INT(img_decode(t, tlen, &o, &texty, &meta, err, sizeof err), 0);
	img_meta_release(&meta);
	text_bytes = inflated - image_bytes;
	if (inflated != image_bytes)
		fprintf(stderr, "  text chunks: %llu bytes inflated beyond the image data's %llu\n",
		        text_bytes, image_bytes);
	CHECK(inflated == image_bytes);
	CHECK(same_pixels(&plain, &texty));
out:
	img_release(&plain);
	img_release(&texty);
	free(p);
	free(t);
}

int main(void)
{
	test_text_not_inflated();
	return CHECK_DONE();
}
