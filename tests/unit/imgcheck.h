/*
 * imgcheck: what the codec tests compare pictures with, in one place
 * (test_codec, test_jpeg_dc and test_png_chunks each had a copy).
 */
#ifndef THUMBD_IMGCHECK_H
#define THUMBD_IMGCHECK_H

#include <string.h>

#include "img.h"

/* Equal size, channels and samples (strides may differ). */
static inline int
same_pixels(const img *a, const img *b)
{
	if (a->w != b->w || a->h != b->h || a->channels != b->channels)
		return 0;
	for (int y = 0; y < a->h; y++)
		if (memcmp(a->px + (size_t)y * a->stride, b->px + (size_t)y * b->stride,
		           (size_t)a->w * (size_t)a->channels) != 0)
			return 0;
	return 1;
}

#endif
