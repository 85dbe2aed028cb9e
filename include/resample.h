/*
 * resample: separable Lanczos-3 scaling of an img, with alpha premultiplied
 * while filtering so transparent pixels do not bleed their colour.
 */
#ifndef THUMBD_RESAMPLE_H
#define THUMBD_RESAMPLE_H

#include "img.h"

/* The Lanczos-3 kernel: sinc(x) * sinc(x/3) for |x| < 3, else 0. */
double resample_lanczos3(double x);

/*
 * Resize src into a newly allocated dst of dst_w x dst_h (>= 1 each), same
 * channel count.  Works for reduction and enlargement.  0 / -1 (bad size or
 * out of memory; dst is then left empty).
 */
int resample_resize(const img *src, img *dst, int dst_w, int dst_h);

/*
 * The same, for a source whose picture spans span_w x span_h of its pixels
 * (src->w - 1 < span_w <= src->w, likewise h): a decode shrunk on load by k
 * has ceil(W / k) columns, the last one covering only the part of a box or
 * DCT block left over, so the picture is W / k of them wide.  Mapping the
 * output onto that span, not onto whole pixels, keeps it from being
 * stretched and shifted by up to a pixel of the decode.  -1 also for a
 * span out of that range.
 */
int resample_resize_span(const img *src, double span_w, double span_h, img *dst, int dst_w, int dst_h);

/* The loops in use: "avx2" when the CPU has it, else "sse2" (x86-64), or
 * "portable".  THUMBD_SIMD=sse2 in the environment keeps AVX2 off (the
 * tests compare both with the portable loops); same output either way. */
const char *resample_isa(void);
/* For the tests: "sse2" or "avx2" from now on; -1 when this CPU or build
 * cannot.  Not thread-safe: call before any resize runs. */
int resample_force_isa(const char *isa);

#endif
