/*
 * pngio: PNG decode and encode through libpng 1.6.
 *
 * libpng reports errors by longjmp to the jmp_buf inside its png_struct.
 * As in jpegio.c, setjmp sits in a "guarded" function without locals that
 * calls the "run" function doing the work (whose locals die with the
 * jump), and every resource lives in a state struct owned by the public
 * function, which frees it all on one exit path.  Our error and
 * read callbacks record what went wrong (message, or "ran out of input")
 * so the reason can be specific.
 *
 * Limits: the declared size is checked against max_pixels right after
 * IHDR (png_read_info), before any row exists, so a tiny file declaring
 * 50000x50000 costs nothing; per-chunk allocations are capped too, since
 * a hostile iCCP or zTXt could otherwise ask for a lot of memory.  libpng
 * allocates an uncompressed chunk (tEXt, unknown) at its declared length
 * before reading it, up to 2 GB, whatever the input holds; so before libpng
 * runs, pdec_scan walks the chunk list up to IEND and refuses a chunk that
 * claims more bytes than are left (the file is truncated or lying either
 * way), which bounds every chunk buffer by the input's own size.  CRC
 * errors in critical chunks stay errors (libpng's default): a damaged IDAT
 * is a damaged picture.
 *
 * Every input is normalised to 8-bit gray, gray+alpha, RGB or RGBA, with
 * tRNS becoming a real alpha channel.  There is no shrink-on-load: zlib
 * has no cheap way to skip pixels.
 */
#include "codec.h"
#include "exif.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

/* libpng's own per-dimension cap; max_pixels is the real limit. */
#define PNG_MAX_DIM (1u << 24)
#define PNG_CHUNK_MAX (8u << 20)
#define PNG_OUT_CHUNK 65536

/* ---- shared error handling ---- */

struct perr {
	char msg[128];
	int truncated;
};

static void perr_error(png_structp png, png_const_charp msg)
{
	struct perr *e = png_get_error_ptr(png);

	snprintf(e->msg, sizeof e->msg, "%s", msg);
	png_longjmp(png, 1);
}

static void perr_warning(png_structp png, png_const_charp msg)
{
	(void)png;      /* ancillary-chunk trouble: not worth failing over */
	(void)msg;
}

/* ---- decode ---- */

struct pdec {
	struct perr e;                  /* first: png_get_error_ptr gives us this */
	png_structp png;
	png_infop info;
	const uint8_t *buf;
	size_t len, pos;
	png_bytep *rows;
};

static void pdec_read(png_structp png, png_bytep data, size_t n)
{
	struct pdec *d = png_get_io_ptr(png);

	if (n > d->len - d->pos) {
		d->e.truncated = 1;
		png_error(png, "unexpected end of data");
	}
	memcpy(data, d->buf + d->pos, n);
	d->pos += n;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* 0, or -1 when a chunk before IEND runs past the end of the input (see
 * the file comment).  A missing IEND is left to libpng to judge. */
static int pdec_scan(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	size_t pos = 8;         /* after the signature, which img_sniff checked */

	while (pos + 8 <= len) {
		uint32_t n = be32(buf + pos);
		if (n > PNG_UINT_31_MAX) {
			snprintf(err, errlen, "corrupt PNG: chunk length %lu out of range", (unsigned long)n);
			return -1;
		}
		if (n > len - pos - 8 || len - pos - 8 - n < 4) {
			snprintf(err, errlen, "truncated PNG");
			return -1;
		}
		if (memcmp(buf + pos + 4, "IEND", 4) == 0)
			break;
		pos += (size_t)n + 12;
	}
	return 0;
}

static int pdec_run(struct pdec *d, const img_decode_opts *o, img *out,
                    img_meta *meta, char *err, size_t errlen)
{
	png_structp png = d->png;
	png_infop info = d->info;
	png_uint_32 w, h, i;
	png_bytep exif = NULL;
	png_uint_32 exif_len = 0;
	int color, depth, channels;

	png_set_read_fn(png, d, pdec_read);
	png_set_user_limits(png, PNG_MAX_DIM, PNG_MAX_DIM);
	png_set_chunk_malloc_max(png, PNG_CHUNK_MAX);
	png_read_info(png, info);

	w = png_get_image_width(png, info);
	h = png_get_image_height(png, info);
	if (o->max_pixels != 0 && (uint64_t)w * h > o->max_pixels) {
		snprintf(err, errlen, "too large: %ux%u > max_pixels", (unsigned)w, (unsigned)h);
		return -1;
	}
	meta->width = (int)w;           /* both <= PNG_MAX_DIM */
	meta->height = (int)h;

	color = png_get_color_type(png, info);
	depth = png_get_bit_depth(png, info);
	if (color == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(png);
	if (png_get_valid(png, info, PNG_INFO_tRNS))
		png_set_tRNS_to_alpha(png);
	if (depth == 16)
		png_set_scale_16(png);      /* rounds, where strip_16 truncates */
	png_set_interlace_handling(png);    /* png_read_image then runs all Adam7 passes */
	png_read_update_info(png, info);

	channels = png_get_channels(png, info);
	if (png_get_bit_depth(png, info) != 8 || channels < 1 || channels > 4 ||
	    png_get_rowbytes(png, info) != (size_t)w * (size_t)channels) {
		snprintf(err, errlen, "unsupported PNG: colour type %d, depth %d", color, depth);
		return -1;
	}
	if (img_alloc(out, (int)w, (int)h, channels) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->rows = malloc((size_t)h * sizeof *d->rows);
	if (d->rows == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < h; i++)
		d->rows[i] = out->px + (size_t)i * out->stride;
	png_read_image(png, d->rows);
	/* Up to IEND: catches a file cut right after its pixels, and picks up
	 * an eXIf that was written after IDAT. */
	png_read_end(png, info);

	if (png_get_eXIf_1(png, info, &exif_len, &exif) & PNG_INFO_eXIf)
		meta->orientation = exif_orientation(exif, exif_len);
	return 0;
}

/* The only frame a longjmp lands in; see the file comment. */
static int pdec_guarded(struct pdec *d, const img_decode_opts *o, img *out,
                        img_meta *meta, char *err, size_t errlen)
{
	if (setjmp(png_jmpbuf(d->png))) {
		if (d->e.truncated)
			snprintf(err, errlen, "truncated PNG");
		else
			snprintf(err, errlen, "corrupt PNG: %s", d->e.msg);
		return -1;
	}
	return pdec_run(d, o, out, meta, err, errlen);
}

int pngio_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
                 img *out, img_meta *meta, char *err, size_t errlen)
{
	struct pdec d;
	int rc = -1;

	memset(&d, 0, sizeof d);
	memset(out, 0, sizeof *out);
	meta->orientation = 1;
	meta->width = meta->height = 0;
	d.buf = buf;
	d.len = len;
	if (pdec_scan(buf, len, err, errlen) != 0)
		goto out;

	d.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d.e, perr_error, perr_warning);
	if (d.png == NULL || (d.info = png_create_info_struct(d.png)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = pdec_guarded(&d, o, out, meta, err, errlen);
out:
	if (d.png != NULL)
		png_destroy_read_struct(&d.png, d.info != NULL ? &d.info : NULL, NULL);
	free(d.rows);
	if (rc != 0) {
		img_release(out);
		meta->orientation = 1;
		meta->width = meta->height = 0;
	}
	return rc;
}

/* ---- encode ---- */

struct penc {
	struct perr e;                  /* first: png_get_error_ptr gives us this */
	png_structp png;
	png_infop info;
	uint8_t *buf;
	size_t cap, len;
	png_bytep *rows;
};

static void penc_write(png_structp png, png_bytep data, size_t n)
{
	struct penc *p = png_get_io_ptr(png);

	if (n > p->cap - p->len) {
		size_t cap = p->cap ? p->cap : PNG_OUT_CHUNK;
		uint8_t *nb;
		while (n > cap - p->len) {
			if (cap > SIZE_MAX / 2)
				png_error(png, "output too large");
			cap *= 2;
		}
		nb = realloc(p->buf, cap);
		if (nb == NULL)
			png_error(png, "out of memory");
		p->buf = nb;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, data, n);
	p->len += n;
}

static void penc_flush(png_structp png)
{
	(void)png;      /* memory needs no flushing */
}

static int penc_run(struct penc *p, const img *im, int level, char *err, size_t errlen)
{
	static const int types[5] = { 0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
	                              PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA };
	int y;

	p->rows = malloc((size_t)im->h * sizeof *p->rows);
	if (p->rows == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (y = 0; y < im->h; y++)
		p->rows[y] = im->px + (size_t)y * im->stride;  /* libpng only reads them */

	png_set_write_fn(p->png, p, penc_write, penc_flush);
	png_set_compression_level(p->png, level < 0 ? 0 : level > 9 ? 9 : level);
	png_set_IHDR(p->png, p->info, (png_uint_32)im->w, (png_uint_32)im->h, 8,
	             types[im->channels], PNG_INTERLACE_NONE,
	             PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(p->png, p->info);
	png_write_image(p->png, p->rows);
	png_write_end(p->png, NULL);
	return 0;
}

static int penc_guarded(struct penc *p, const img *im, int level, char *err, size_t errlen)
{
	if (setjmp(png_jmpbuf(p->png))) {
		snprintf(err, errlen, "cannot encode PNG: %s", p->e.msg);
		return -1;
	}
	return penc_run(p, im, level, err, errlen);
}

int pngio_encode(const img *im, int level, uint8_t **out, size_t *outlen,
                 char *err, size_t errlen)
{
	struct penc p;
	int rc = -1;

	memset(&p, 0, sizeof p);
	*out = NULL;
	*outlen = 0;

	p.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &p.e, perr_error, perr_warning);
	if (p.png == NULL || (p.info = png_create_info_struct(p.png)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = penc_guarded(&p, im, level, err, errlen);
	if (rc == 0) {
		*out = p.buf;
		*outlen = p.len;
		p.buf = NULL;
	}
out:
	if (p.png != NULL)
		png_destroy_write_struct(&p.png, p.info != NULL ? &p.info : NULL);
	free(p.buf);
	free(p.rows);
	return rc;
}
