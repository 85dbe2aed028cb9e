/*
 * img: the decoded picture that travels between the codecs, the resampler
 * and the writer, plus the one entry point each way (decode / encode).
 *
 * struct img is deliberately public: it is plain data (a pixel buffer and
 * its geometry), read in inner loops by resample.c and the codecs, and an
 * accessor per field would cost more than it hides.  Everything that owns
 * resources (decoders, encoders) stays behind functions.
 *
 * Pixels are always 8 bits per sample, rows top to bottom, channels
 * interleaved: 1 = gray, 2 = gray+alpha, 3 = RGB, 4 = RGBA.  Alpha is
 * straight (not premultiplied) at this interface.
 *
 * Error convention (shared by every codec): functions return 0 on success
 * and -1 on failure, with a short, specific reason in err ("truncated JPEG",
 * "too large: 80000x80000 > max_pixels").  The reason never names the file:
 * the caller knows the input and prefixes it.
 */
#ifndef THUMBD_IMG_H
#define THUMBD_IMG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
	IMG_UNKNOWN = 0,
	IMG_JPEG,
	IMG_PNG,
	IMG_WEBP,
} img_format;

typedef struct img {
	int w, h;
	int channels;           /* 1..4, see above */
	size_t stride;          /* bytes per row, >= w * channels */
	uint8_t *px;            /* owned; released by img_release() */
} img;

typedef struct img_decode_opts {
	uint64_t max_pixels;    /* declared w*h above this is refused before any pixel buffer exists */
	int min_width;          /* shrink-on-load floor: a decoder may return a smaller image (JPEG DCT
	                           scaling, WebP scaled decode, PNG box averages) as long as its
	                           *displayed* width (after EXIF orientation) stays >= min_width;
	                           0 = always full size */
	/* Called at most once, after the header is read and before the big
	 * buffers exist, with the bytes the decoder is about to hold; may block
	 * (a memory budget shared by the workers).  Non-zero: give up, the
	 * decode fails with "deferred".  NULL = no budget. */
	int (*reserve)(void *arg, uint64_t bytes);
	void *reserve_arg;
} img_decode_opts;

typedef struct img_encode_opts {
	int jpeg_quality;       /* 1..100 */
	int webp_quality;       /* 0..100 */
	int png_level;          /* zlib level 0..9 */
} img_encode_opts;

/* Largest embedded ICC profile a decoder returns; a larger one is ignored
 * (icc_note says so) and the picture is decoded as if it had none.  Real
 * profiles are 0.5-4 KB, CMYK ones up to a few hundred. */
#define IMG_ICC_MAX ((size_t)4 << 20)

/* What a decoder learned from the header, besides the pixels. */
typedef struct img_meta {
	int orientation;        /* EXIF orientation 1..8 (1 when absent or unreadable), not yet applied */
	int width, height;      /* full size as stored, before any shrink on load */
	/* Shrink on load by whole boxes (JPEG DCT scaling, PNG box averages):
	 * pixel i of the decode stands for stored pixels [i*shrink, (i+1)*shrink),
	 * the last column and row for what is left, so the picture spans
	 * width / shrink of the decode's ceil(width / shrink) columns.  1: none,
	 * or a decode scaled to exactly its size (WebP). */
	int shrink;
	/* The embedded ICC profile (JPEG APP2, PNG iCCP, WebP ICCP) the pixels
	 * are in, not yet applied: malloc'd, owned by meta, freed by
	 * img_meta_release.  NULL when the file has none, when it was ignored
	 * (icc_note), and for a CMYK JPEG, whose decoder applies it itself. */
	uint8_t *icc;
	size_t icc_len;
	/* Why a profile in the file is not in icc (static text: "ICC profile
	 * larger than 4 MB", "unreadable ICC profile", ...), for a warning;
	 * NULL otherwise.  Decoding never fails over a profile. */
	const char *icc_note;
} img_meta;

#define IMG_ERRLEN 160

/* Format from the first bytes (magic numbers only; never the name or a MIME type). */
img_format img_sniff(const uint8_t *buf, size_t len);
/* For error messages about formats we recognise but do not read: "GIF", "TIFF", ... or NULL. */
const char *img_sniff_other(const uint8_t *buf, size_t len);
const char *img_format_name(img_format f);      /* "JPEG", "PNG", "WebP" */
const char *img_format_ext(img_format f);       /* "jpg", "png", "webp" */

/* Allocate w x h x channels; 0 / -1 (overflow or out of memory). px is zeroed. */
int img_alloc(img *im, int w, int h, int channels);
/* The same, not zeroed: only for a writer that fills every row or fails
 * (the JPEG decoder), since zeroing a large decode costs more than the
 * rest of a small image's bookkeeping. */
int img_alloc_rows(img *im, int w, int h, int channels);
/* Free the pixels; accepts NULL and an img that was never allocated (px == NULL). */
void img_release(img *im);
/* Free meta's ICC profile (icc = NULL, icc_len = 0); accepts NULL. */
void img_meta_release(img_meta *meta);

/*
 * Decode buf (sniffed) into out.  meta receives the EXIF orientation and the
 * full stored size; the pixels are NOT rotated yet, so the caller can resize
 * first and rotate the small result (img_orient), and the embedded ICC
 * profile, to be applied to the result too (icc_to_srgb, icc.h): release
 * it with img_meta_release.  meta is overwritten, not released, first.
 * On failure meta is {1, 0, 0}, without a profile.
 */
int img_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
               img *out, img_meta *meta, char *err, size_t errlen);

/* Apply EXIF orientation 1..8 in place (may swap w and h).  0 / -1 (out of memory). */
int img_orient(img *im, int orientation);

/* Encode into a malloc'd buffer (*out, *outlen), caller frees.  Alpha is kept where the
 * format has it; JPEG has none, so alpha is flattened over white. */
int img_encode(const img *im, img_format fmt, const img_encode_opts *o,
               uint8_t **out, size_t *outlen, char *err, size_t errlen);

#endif
