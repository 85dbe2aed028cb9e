/*
 * codec: the three format modules behind img_decode()/img_encode().
 * Implemented in src/jpegio.c (libjpeg-turbo), src/pngio.c (libpng) and
 * src/webpio.c (libwebp + libwebpdemux); one header because the three share
 * one contract, spelled out in img.h:
 *  - decode: check the declared dimensions against o->max_pixels before
 *    allocating; return 8-bit gray/gray+alpha/RGB/RGBA; report EXIF
 *    orientation (1 when none) without applying it, and the embedded ICC
 *    profile in meta->icc (at most IMG_ICC_MAX bytes; a larger or broken
 *    one is left out with a note, never an error); errors per decode,
 *    never abort the process; no uninitialised pixel ever reaches out.
 *  - encode: from any 1..4 channel img into a malloc'd buffer.
 * The "name" of each is only ever used by img.c.
 */
#ifndef THUMBD_CODEC_H
#define THUMBD_CODEC_H

#include "img.h"

/* The decode memory budget (img_decode_opts reserve), asked once a decoder
 * knows what it will hold: 0, or -1 with err "deferred" (thumb.c puts the
 * image aside).  In img.c, for all three. */
int codec_reserve(const img_decode_opts *o, uint64_t bytes, char *err, size_t errlen);

int jpegio_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
                  img *out, img_meta *meta, char *err, size_t errlen);
int jpegio_encode(const img *im, int quality, uint8_t **out, size_t *outlen,
                  char *err, size_t errlen);
/* A malloc'd copy of a JPEG stream without the AC scans (SOS with Ss > 0)
 * of the components whose id is not marked in need_ac, every other segment
 * kept; NULL when the stream does not parse cleanly to its EOI or has no
 * such scan to drop.  For 1/8 decodes (jpegio.c); public for the tests. */
uint8_t *jpegio_dc_scans(const uint8_t *buf, size_t len, const uint8_t need_ac[256],
                         size_t *outlen);

int pngio_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
                 img *out, img_meta *meta, char *err, size_t errlen);
int pngio_encode(const img *im, int level, uint8_t **out, size_t *outlen,
                 char *err, size_t errlen);

int webpio_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
                  img *out, img_meta *meta, char *err, size_t errlen);
int webpio_encode(const img *im, int quality, uint8_t **out, size_t *outlen,
                  char *err, size_t errlen);

#endif
