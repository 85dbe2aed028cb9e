/*
 * icc: embedded ICC profiles applied with Little CMS 2, so that every
 * thumbnail is sRGB, the space a browser assumes for an untagged image.
 *
 * The decoders hand the profile up in img_meta (img.h); thumb.c converts
 * the thumbnails after the resize, and jpegio.c converts CMYK scanlines
 * itself.  Transforms are relative colorimetric without black point
 * compensation, the defaults of vips_thumbnail (intent "relative",
 * black_point_compensation false); for the matrix-shaper RGB profiles of
 * photos every intent gives the same numbers.
 *
 * A profile that would leave the pixels as they are (an sRGB profile under
 * any of its names and versions: same colorants, white point and tone
 * curves as lcms2's built-in sRGB) is not applied at all: the many photos
 * tagged sRGB keep byte-identical thumbnails and cost nothing.
 *
 * Every answer is cached per thread (a pthread key; the key's destructor
 * frees the cache when the thread exits), keyed by a hash of the profile
 * bytes and the pixel layout and confirmed by comparing the bytes, so a
 * catalogue whose photos share one profile builds its transform once per
 * worker; the copies of the bytes it keeps for that stay within 4 MB.  Each thread has its own lcms2 context (cmsCreateContext) and
 * makes every profile and transform in it with the THR functions: no lcms2
 * state is shared between threads, and no lock is taken.
 */
#ifndef THUMBD_ICC_H
#define THUMBD_ICC_H

#include <stddef.h>
#include <stdint.h>

#include "img.h"

/* Pixel layouts a transform reads; the first four are img channel counts
 * and are converted in place to the same layout (alpha copied), the CMYK
 * ones give 3-byte RGB. */
typedef enum {
	ICC_GRAY = 1,
	ICC_GRAYA = 2,
	ICC_RGB = 3,
	ICC_RGBA = 4,
	ICC_CMYK,               /* ink, 0 = none */
	ICC_CMYK_INVERTED,      /* Adobe (Photoshop) JPEG: 255 = no ink */
} icc_layout;

typedef struct icc_xform icc_xform;

/*
 * The transform to sRGB of pixels in layout lay tagged with profile (len
 * bytes), made on first use and kept in this thread's cache; valid until
 * this thread's next icc_lookup.  NULL when there is nothing to apply:
 * *why is then NULL for a profile that is sRGB already, or a short reason
 * ("unreadable ICC profile", "a CMYK ICC profile on RGB pixels", ...) for
 * one lcms2 cannot use, which the caller should treat as no profile.
 */
const icc_xform *icc_lookup(const uint8_t *profile, size_t len, icc_layout lay, const char **why);

/* Transform n pixels from in to out (in place when the layout keeps its
 * size: gray, RGB, with or without alpha). */
void icc_apply(const icc_xform *x, const void *in, void *out, size_t n);

/*
 * im (1..4 channels) from the colour space of profile to sRGB, in place.
 * 1 converted, 0 nothing to do (no profile, an sRGB one, or one that
 * cannot be used: then *why, if why is not NULL, says why).
 */
int icc_to_srgb(img *im, const uint8_t *profile, size_t len, const char **why);

/* Bytes of profile copies this thread's cache holds (at most IMG_ICC_MAX). */
size_t icc_cache_bytes(void);

/* Frees this thread's cache now; the next lookup starts a new one.  Threads
 * need not call it (their cache goes when they exit). */
void icc_thread_done(void);

#endif
