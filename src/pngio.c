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
 * way), which bounds every chunk buffer by the input's own size.  Image
 * data is bounded by the declared size, except that libpng would inflate
 * whatever IDAT data follows the last row to its end: pdec_read refuses
 * more than the last row and PNG_IDAT_TAIL of it, counting the IDAT
 * chunks' data alone (libpng says what it reads: png_get_io_state), so
 * that the 12 bytes around each chunk's cannot make a valid file of tiny
 * IDAT chunks look long (one of 1-byte chunks is 13 times its data).  CRC
 * errors in critical chunks stay errors (libpng's default): a damaged IDAT
 * is a damaged picture.
 *
 * A file that ends at a chunk boundary, or inside its IEND, lacks nothing
 * but IEND if its image data is all there, as with a JPEG without its EOI
 * (jpegio.c): such files are read as if the rest of IEND followed
 * (pdec_read serves it), and libpng still judges the image data: rows
 * and the zlib stream's end and checksum.  Image data that is cut short
 * is then a "Not enough image data" error after the made-up IEND, and
 * reported as "truncated PNG".  A file cut inside any other chunk stays
 * truncated: part of a chunk is not a chunk, and libpng would read on.
 *
 * Every input is normalised to 8-bit gray, gray+alpha, RGB or RGBA, with
 * tRNS becoming a real alpha channel.  An iCCP profile (which libpng has
 * inflated and checked against the colour type) goes up in meta->icc;
 * gAMA, cHRM and sRGB chunks are not read.
 *
 * Chunks nobody reads are skipped unparsed (png_set_keep_unknown_chunks
 * with PNG_HANDLE_CHUNK_NEVER works for known chunks too): libpng would
 * inflate every zTXt and iTXt, and copy every tEXt, sPLT, pCAL and sCAL
 * into its info struct, for nothing; 1,500 zTXt chunks of 8 KB, each
 * inflating to 8 MB, kept a worker busy for 40 s.  What is used (PLTE,
 * tRNS, iCCP, eXIf) or may bear on it (gAMA, cHRM and sRGB, which libpng
 * checks an iCCP against) is read as before.
 *
 * Shrink on load.  zlib has no cheap way to skip pixels, but nothing forces
 * us to hold them: a non-interlaced PNG is read one row at a time and
 * box-averaged by an integer factor k straight into the image we return,
 * k as large as keeps the displayed width >= min_width (the same floor the
 * JPEG and WebP decoders honour, so the Lanczos pass still does the real
 * filtering).  Memory is then the small image, one row and one row of sums
 * instead of the whole picture, and the resampler reads k*k times fewer
 * samples.  With alpha the colour sums are weighted by alpha (what
 * averaging premultiplied samples gives), so fully transparent pixels lend
 * no colour to their neighbours.  The displayed width depends on the EXIF
 * orientation, which libpng may only read after the last row (eXIf may
 * follow IDAT) and may still drop (a bad CRC, a malformed header); so when
 * pdec_scan, which walks every chunk anyway, sees an eXIf chunk, k keeps
 * the shorter side >= min_width, right for either answer.  Adam7 images
 * arrive in passes that each cover the whole picture, so they are decoded
 * whole.
 */
#include "codec.h"
#include "exif.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* libpng's own per-dimension cap; max_pixels is the real limit. */
#define PNG_MAX_DIM (1u << 24)
#define PNG_CHUNK_MAX (8u << 20)
#define PNG_OUT_CHUNK 65536
/* Compressed image data libpng may read beyond that of the rows (see
 * pdec_read): the end of the zlib stream and the rest of libpng's 8 KB
 * read buffer fit many times over, and 64 KB inflate in a fifth of a
 * second even at zlib's best ratio (1032:1). */
#define PNG_IDAT_TAIL 65536

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

/* Ancillary chunks libpng would parse and keep for nothing (file comment). */
static const png_byte png_unused[] = "tEXt\0zTXt\0iTXt\0sPLT\0pCAL\0sCAL";

struct pdec {
	struct perr e;                  /* first: png_get_error_ptr gives us this */
	png_structp png;
	png_infop info;
	const uint8_t *buf;
	size_t len, pos;                /* pos may run past len into the IEND */
	size_t iend_missing;            /* bytes of IEND the file lacks (pdec_scan) */
	int has_exif;                   /* pdec_scan met an eXIf chunk */
	uint64_t rows_total, rows_read; /* rows libpng reads, all passes; read so far */
	uint64_t idat_read;             /* bytes of IDAT chunk data read so far */
	int in_last_row;                /* the last row has begun ... */
	uint64_t last_row;              /* ... when idat_read was this */
	size_t tail_max;                /* IDAT data the last row and the tail may take */
	png_bytep *rows;                /* whole decode: row pointers into out */
	png_bytep row;                  /* shrinking decode: one source row */
	uint32_t *col;                  /* ... and its column sums over a box row */
};

static const uint8_t png_iend[12] = { 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82 };

#ifndef PNG_IO_STATE_SUPPORTED
#error "pngio.c needs libpng's png_get_io_state"
#endif
#define PNG_TYPE_IDAT ((png_uint_32)'I' << 24 | (png_uint_32)'D' << 16 | 'A' << 8 | 'T')

static void pdec_read(png_structp png, png_bytep data, size_t n)
{
	struct pdec *d = png_get_io_ptr(png);
	size_t from_buf;

	if (n > d->len + d->iend_missing - d->pos) {
		d->e.truncated = 1;
		png_error(png, "unexpected end of data");
	}
	/* libpng inflates whatever image data follows the last row, to its
	 * end and for nothing, inside that row's png_read_row: a 1 MB file
	 * kept a worker busy for 3 s, and max_bytes of it would for minutes */
	if ((png_get_io_state(png) & PNG_IO_MASK_LOC) == PNG_IO_CHUNK_DATA
	    && png_get_io_chunk_type(png) == PNG_TYPE_IDAT) {
		if (d->in_last_row && d->idat_read + n - d->last_row > d->tail_max)
			png_error(png, "image data goes on after the last row");
		d->idat_read += n;
	}
	from_buf = d->pos < d->len ? (n < d->len - d->pos ? n : d->len - d->pos) : 0;
	if (from_buf > 0)
		memcpy(data, d->buf + d->pos, from_buf);
	if (from_buf < n)       /* the made-up rest of IEND (see the file comment) */
		memcpy(data + from_buf, png_iend + 12 - d->iend_missing + (d->pos + from_buf - d->len),
		       n - from_buf);
	d->pos += n;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* 0, or -1 when a chunk before IEND runs past the end of the input (see
 * the file comment).  Sets *iend_missing to the bytes of IEND missing
 * when the input ends at a chunk boundary or inside IEND (12: all of it),
 * and *has_exif when an eXIf chunk comes before IEND. */
static int pdec_scan(const uint8_t *buf, size_t len, size_t *iend_missing, int *has_exif,
                     char *err, size_t errlen)
{
	size_t pos = 8;         /* after the signature, which img_sniff checked */

	*iend_missing = 0;
	*has_exif = 0;
	for (;;) {
		if (len - pos < sizeof png_iend && memcmp(buf + pos, png_iend, len - pos) == 0) {
			*iend_missing = sizeof png_iend - (len - pos);
			break;
		}
		if (len - pos < 8)
			break;          /* a cut chunk header: truncated, says pdec_read */
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
		if (memcmp(buf + pos + 4, "eXIf", 4) == 0)
			*has_exif = 1;
		pos += (size_t)n + 12;
	}
	return 0;
}

/* Largest k with ceil(shown / k) >= min_width, the rounding libjpeg and
 * libwebp use for their scaled sizes.  Capped (a 600-px floor reaches it
 * only past 150,000 px) so that a column's sums fit 32 bits (k * 255 *
 * 255) and the divisions of div_round stay exact. */
#define BOX_MAX 256

static png_uint_32 box_factor(png_uint_32 shown, int min_width)
{
	png_uint_32 k;

	if (min_width <= 0)
		return 1;
	k = min_width == 1 ? shown : (shown - 1) / (png_uint_32)(min_width - 1);
	return k < 1 ? 1 : k > BOX_MAX ? BOX_MAX : k;
}

/* Add one source row to the column sums of its box row: a plain add per
 * sample, which vectorises; with alpha (2 and 4 channels) colour is
 * weighted by it.  At most BOX_MAX rows go into a sum: 32 bits hold it. */
static inline void col_add_n(const uint8_t *restrict row, size_t w, int ch, uint32_t *restrict col)
{
	if (ch == 1 || ch == 3) {
		size_t i = 0, n = w * (size_t)ch;
#ifdef __SSE2__
		/* gcc -O2 leaves this loop scalar (its "very cheap" vectoriser
		 * wants a known trip count), and it touches every sample */
		const __m128i z = _mm_setzero_si128();
		for (; i + 16 <= n; i += 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)(row + i));
			__m128i lo = _mm_unpacklo_epi8(v, z), hi = _mm_unpackhi_epi8(v, z);
			__m128i *c = (__m128i *)(col + i);
			_mm_storeu_si128(c, _mm_add_epi32(_mm_loadu_si128(c), _mm_unpacklo_epi16(lo, z)));
			_mm_storeu_si128(c + 1, _mm_add_epi32(_mm_loadu_si128(c + 1), _mm_unpackhi_epi16(lo, z)));
			_mm_storeu_si128(c + 2, _mm_add_epi32(_mm_loadu_si128(c + 2), _mm_unpacklo_epi16(hi, z)));
			_mm_storeu_si128(c + 3, _mm_add_epi32(_mm_loadu_si128(c + 3), _mm_unpackhi_epi16(hi, z)));
		}
#endif
		for (; i < n; i++)
			col[i] += row[i];
		return;
	}
	/* written out per channel: gcc -O2 kept the loop over c, at a third
	 * of the time of an RGBA decode */
	for (size_t x = 0; x < w; x++, row += ch, col += ch) {
		uint32_t a = row[ch - 1];
		col[0] += row[0] * a;
		if (ch == 4) {
			col[1] += row[1] * a;
			col[2] += row[2] * a;
		}
		col[ch - 1] += a;
	}
}

/* Constant channel counts, so the compiler unrolls and vectorises each. */
static void col_add(const uint8_t *row, size_t w, int ch, uint32_t *col)
{
	switch (ch) {
	case 1: col_add_n(row, w, 1, col); break;
	case 2: col_add_n(row, w, 2, col); break;
	case 3: col_add_n(row, w, 3, col); break;
	default: col_add_n(row, w, 4, col); break;
	}
}

/*
 * (s + d/2) / d in integers, rounded half up, as s * (1/d) in doubles: the
 * division per sample took a third of a shrinking decode.  Exact here:
 * s / d + 1/2 is either an integer or at least 1/d away from one below it,
 * and with d < 2^24 (BOX_MAX^2 * 255) that gap, 6e-8, dwarfs both the 1e-9
 * nudge that lifts an exact integer over the product's rounding error and
 * that error itself (about 255 * 2^-52).  The tests compare every sample
 * with the integer formula.
 */
static inline uint8_t div_round(uint64_t s, double inv)
{
	return (uint8_t)((double)s * inv + (0.5 + 1e-9));
}

/* One output row from the column sums of rows source rows, which it
 * clears: boxes of k columns (the last may be narrower), rounded to
 * nearest; colour is the alpha-weighted mean, 0 where the whole box is
 * transparent (as the resampler leaves it). */
static inline void box_emit_n(uint32_t *col, png_uint_32 w, png_uint_32 ow, int ch, png_uint_32 k,
                              png_uint_32 rows, uint8_t *out)
{
	const uint32_t *p = col;
	double inv = 1.0 / ((double)k * rows);

	for (png_uint_32 ox = 0; ox < ow; ox++, out += ch) {
		png_uint_32 bw = k;
		uint64_t s[4] = { 0, 0, 0, 0 };

		if (ox == ow - 1) {
			bw = w - ox * k;
			inv = 1.0 / ((double)bw * rows);
		}
		for (png_uint_32 x = 0; x < bw; x++, p += ch) {
			s[0] += p[0];
			if (ch > 1)
				s[1] += p[1];
			if (ch > 2)
				s[2] += p[2];
			if (ch > 3)
				s[3] += p[3];
		}
		if (ch == 1 || ch == 3) {
			for (int c = 0; c < ch; c++)
				out[c] = div_round(s[c], inv);
		} else if (s[ch - 1] == 0) {
			memset(out, 0, (size_t)ch);
		} else {
			double ainv = 1.0 / (double)s[ch - 1];
			for (int c = 0; c < ch - 1; c++)
				out[c] = div_round(s[c], ainv);
			out[ch - 1] = div_round(s[ch - 1], inv);
		}
	}
	memset(col, 0, (size_t)w * (size_t)ch * sizeof *col);
}

static void box_emit(uint32_t *col, png_uint_32 w, png_uint_32 ow, int ch, png_uint_32 k,
                     png_uint_32 rows, uint8_t *out)
{
	switch (ch) {
	case 1: box_emit_n(col, w, ow, 1, k, rows, out); break;
	case 2: box_emit_n(col, w, ow, 2, k, rows, out); break;
	case 3: box_emit_n(col, w, ow, 3, k, rows, out); break;
	default: box_emit_n(col, w, ow, 4, k, rows, out); break;
	}
}

/* The rows of a non-interlaced image, k x k boxes averaged into out. */
static void pdec_rows_boxed(struct pdec *d, png_uint_32 w, png_uint_32 h, int ch,
                            png_uint_32 k, img *out)
{
	png_uint_32 y, inbox = 0, oy = 0;

	for (y = 0; y < h; y++) {
		png_read_row(d->png, d->row, NULL);
		col_add(d->row, w, ch, d->col);
		if (++inbox == k || y == h - 1) {
			box_emit(d->col, w, (png_uint_32)out->w, ch, k, inbox,
			         out->px + (size_t)oy++ * out->stride);
			inbox = 0;
		}
	}
}

/* libpng's read_row_fn, called once a row has been read (skipped Adam7
 * rows do not count): marks where the last row begins. */
static void pdec_row_done(png_structp png, png_uint_32 row, int pass)
{
	struct pdec *d = png_get_io_ptr(png);

	(void)row;
	(void)pass;
	if (++d->rows_read + 1 == d->rows_total) {
		d->in_last_row = 1;
		d->last_row = d->idat_read;
	}
}

/* The iCCP profile into meta->icc, or a note why not; after png_read_info
 * (iCCP must come before IDAT).  libpng drops one it finds malformed. */
static void pdec_icc(png_structp png, png_infop info, img_meta *meta)
{
	png_charp name;
	png_bytep prof;
	png_uint_32 n = 0;
	int comp;

	if (!(png_get_iCCP(png, info, &name, &comp, &prof, &n) & PNG_INFO_iCCP) || n == 0)
		return;
	if (n > IMG_ICC_MAX)
		meta->icc_note = "ICC profile larger than 4 MB";
	else if ((meta->icc = malloc(n)) == NULL)
		meta->icc_note = "out of memory";
	else {
		memcpy(meta->icc, prof, n);
		meta->icc_len = n;
	}
}

static int pdec_run(struct pdec *d, const img_decode_opts *o, img *out,
                    img_meta *meta, char *err, size_t errlen)
{
	png_structp png = d->png;
	png_infop info = d->info;
	png_uint_32 w, h, i, k = 1, ow, oh;
	png_bytep exif = NULL;
	png_uint_32 exif_len = 0;
	int color, depth, channels;
	uint64_t bytes;
	size_t rowbytes;

	png_set_read_fn(png, d, pdec_read);
	png_set_user_limits(png, PNG_MAX_DIM, PNG_MAX_DIM);
	png_set_chunk_malloc_max(png, PNG_CHUNK_MAX);
	png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, png_unused,
	                            (int)(sizeof png_unused / 5));
	png_read_info(png, info);

	w = png_get_image_width(png, info);
	h = png_get_image_height(png, info);
	if (o->max_pixels != 0 && (uint64_t)w * h > o->max_pixels) {
		snprintf(err, errlen, "too large: %ux%u > max_pixels", (unsigned)w, (unsigned)h);
		return -1;
	}
	meta->width = (int)w;           /* both <= PNG_MAX_DIM */
	meta->height = (int)h;
	pdec_icc(png, info, meta);
	/* the last row as stored (before our transforms) with its filter
	 * byte, twice: deflate's worst case (stored blocks) is barely over
	 * once; then the tail */
	d->tail_max = 2 * (png_get_rowbytes(png, info) + 1) + PNG_IDAT_TAIL;

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
	rowbytes = png_get_rowbytes(png, info);
	if (png_get_bit_depth(png, info) != 8 || channels < 1 || channels > 4 ||
	    rowbytes != (size_t)w * (size_t)channels) {
		snprintf(err, errlen, "unsupported PNG: colour type %d, depth %d", color, depth);
		return -1;
	}
	if (png_get_interlace_type(png, info) == PNG_INTERLACE_NONE) {
		k = box_factor(d->has_exif && h < w ? h : w, o->min_width);
		d->rows_total = h;
	} else {
		for (int p = 0; p < 7; p++)
			if (PNG_PASS_COLS(w, p) > 0)
				d->rows_total += PNG_PASS_ROWS(h, p);
	}
	png_set_read_status_fn(png, pdec_row_done);
	if (d->rows_total <= 1) {
		d->in_last_row = 1;
		d->last_row = d->idat_read;
	}

	ow = (w + k - 1) / k;
	meta->shrink = (int)k;
	oh = (h + k - 1) / k;

	/* what we are about to hold: the image, and either its row pointers
	 * or one row and a row of sums; plus libpng's two rows and zlib's
	 * window, which it holds whatever we do */
	bytes = (uint64_t)ow * oh * (uint64_t)channels + 2 * (uint64_t)rowbytes + 65536;
	bytes += k > 1 ? rowbytes + (uint64_t)rowbytes * sizeof *d->col : (uint64_t)h * sizeof *d->rows;
	if (codec_reserve(o, bytes, err, errlen) != 0)
		return -1;

	if (k > 1) {
		if (img_alloc_rows(out, (int)ow, (int)oh, channels) != 0 ||
		    (d->row = malloc(rowbytes)) == NULL ||
		    (d->col = calloc(rowbytes, sizeof *d->col)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		pdec_rows_boxed(d, w, h, channels, k, out);
	} else {
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
	}
	/* Up to IEND (perhaps made up): catches image data that goes on
	 * after the rows, a chunk cut after them, and picks up an eXIf that
	 * was written after IDAT. */
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
		/* past the file's end, the only error is image data cut short */
		if (d->e.truncated || d->pos > d->len)
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
	meta->icc = NULL;
	meta->icc_len = 0;
	meta->icc_note = NULL;
	d.buf = buf;
	d.len = len;
	if (pdec_scan(buf, len, &d.iend_missing, &d.has_exif, err, errlen) != 0)
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
	free(d.row);
	free(d.col);
	if (rc != 0) {
		img_release(out);
		img_meta_release(meta);
		meta->orientation = 1;
		meta->width = meta->height = 0;
		meta->icc_note = NULL;
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
