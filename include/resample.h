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

#endif
