/*
 * fuzz_common: the one-input path shared by the libFuzzer targets in fuzz/
 * and by tests/unit/test_fuzz_regress.c, so a saved crasher is replayed
 * through exactly the code that found it.
 *
 * One input = what a worker does with a downloaded file, shrunk:
 *   sniff + decode (small max_pixels, a min_width picked from the input's
 *   last byte to exercise shrink-on-load) -> checksum every pixel ->
 *   Lanczos resize to W x round(h*W/w), W = 32 mostly, else 1, 7 or 200
 *   (also from the last byte: reductions and enlargements) -> the embedded
 *   ICC profile applied (lcms2; a broken one ignored) -> EXIF
 *   orientation -> encode to the same format -> decode that output again.
 *
 * Each target must reach its own decoder even from random bytes, so input
 * that does not sniff as the target's format gets the format's magic
 * prepended.  PNG chunk CRCs are recomputed (unless the control byte says
 * not to): otherwise nearly every mutation would die in libpng's CRC check
 * and the fuzzer would never get past it.
 *
 * Besides "no crash, no leak" (the sanitizers' job) the path checks the
 * codec contract of img.h/codec.h and reports a breach as FUZZ_BROKEN:
 * a failed decode must say why (non-empty err) and leave out empty; a
 * successful one must return sane geometry within max_pixels, respect
 * min_width, and be re-encodable.  The fuzz targets abort on FUZZ_BROKEN;
 * the unit test counts it as a failure.
 *
 * Header-only (static inline) because it is compiled into two kinds of
 * program with different build rules; nothing here is thumbd API.
 */
#ifndef THUMBD_FUZZ_COMMON_H
#define THUMBD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "exif.h"
#include "icc.h"
#include "img.h"
#include "resample.h"

#define FUZZ_MAX_PIXELS (4u << 20)     /* 4 MP: big enough for real files, small enough to be fast */
#define FUZZ_THUMB_MAX_H 1024          /* a 1 x 4M image would otherwise ask for a 32 x 128M thumbnail */

enum { FUZZ_OK = 0, FUZZ_REFUSED = -1, FUZZ_BROKEN = -2 };

/* Standard CRC-32 (poly 0xedb88320), bitwise: PNG chunk CRCs only, on
 * inputs of a few KB, so speed does not matter and zlib need not be linked. */
static inline uint32_t fuzz_crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	size_t i;
	int k;

	for (i = 0; i < n; i++) {
		c ^= p[i];
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
	}
	return c ^ 0xffffffffu;
}

static inline uint32_t fuzz_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Rewrite the CRC of every complete chunk after the 8-byte signature. */
static inline void fuzz_png_fix_crcs(uint8_t *buf, size_t len)
{
	size_t pos = 8;

	while (pos + 12 <= len) {
		uint32_t n = fuzz_be32(buf + pos);
		uint32_t c;
		if (n > len - pos - 12)
			break;
		c = fuzz_crc32(buf + pos + 4, (size_t)n + 4);
		buf[pos + 8 + n] = (uint8_t)(c >> 24);
		buf[pos + 9 + n] = (uint8_t)(c >> 16);
		buf[pos + 10 + n] = (uint8_t)(c >> 8);
		buf[pos + 11 + n] = (uint8_t)c;
		pos += (size_t)n + 12;
	}
}

/*
 * A copy of data that sniffs as fmt: data itself if it already does,
 * else the magic followed by data.  Always a fresh malloc of the exact
 * size, so ASan sees any read past the end.  NULL when out of memory.
 */
static inline uint8_t *fuzz_with_magic(img_format fmt, const uint8_t *data, size_t size,
                                       size_t *outlen)
{
	static const uint8_t jpeg_magic[3] = { 0xff, 0xd8, 0xff };
	static const uint8_t png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	uint8_t webp_magic[12] = { 'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P' };
	const uint8_t *magic = NULL;
	size_t mlen = 0;
	uint8_t *buf;

	if (img_sniff(data, size) != fmt) {
		switch (fmt) {
		case IMG_JPEG: magic = jpeg_magic; mlen = sizeof jpeg_magic; break;
		case IMG_PNG:  magic = png_magic;  mlen = sizeof png_magic;  break;
		case IMG_WEBP: {
			/* RIFF size: everything after the size field. */
			uint32_t rs = size > 0xfffffff0u ? 0xfffffff0u : (uint32_t)size + 4;
			webp_magic[4] = (uint8_t)rs;
			webp_magic[5] = (uint8_t)(rs >> 8);
			webp_magic[6] = (uint8_t)(rs >> 16);
			webp_magic[7] = (uint8_t)(rs >> 24);
			magic = webp_magic;
			mlen = sizeof webp_magic;
			break;
		}
		case IMG_UNKNOWN: break;
		}
	}
	buf = malloc(mlen + size + 1);     /* +1: malloc(0) may return NULL */
	if (buf == NULL)
		return NULL;
	if (mlen > 0)
		memcpy(buf, magic, mlen);
	if (size > 0)
		memcpy(buf + mlen, data, size);
	*outlen = mlen + size;
	return buf;
}

/* Read every pixel byte into one sum; the caller branches on it, so
 * valgrind (or MSan) reports an uninitialised pixel right there, at the
 * stage that produced it.  ASan cannot see those. */
static inline unsigned fuzz_checksum(const img *im)
{
	unsigned sum = 0;
	size_t rowbytes = (size_t)im->w * (size_t)im->channels, i;
	int y;

	for (y = 0; y < im->h; y++) {
		const uint8_t *row = im->px + (size_t)y * im->stride;
		for (i = 0; i < rowbytes; i++)
			sum = sum * 31 + row[i];
	}
	return sum;
}

static inline int fuzz_img_sane(const img *im)
{
	return im->px != NULL && im->w >= 1 && im->h >= 1 && im->channels >= 1 &&
	       im->channels <= 4 && im->stride >= (size_t)im->w * (size_t)im->channels;
}

/*
 * The decoder path for one input of format fmt.  FUZZ_OK: decoded and
 * re-encoded; FUZZ_REFUSED: the decoder said no, with a reason in err;
 * FUZZ_BROKEN: a contract breach, described in err.
 */
static inline int fuzz_decode_one(img_format fmt, const uint8_t *data, size_t size,
                                  char *err, size_t errlen)
{
	img_decode_opts dopts = { .max_pixels = FUZZ_MAX_PIXELS };
	img_encode_opts eopts = { 75, 75, 1 };
	img im = { 0 }, small = { 0 }, back = { 0 };
	img_meta meta = { .orientation = 0, .width = -1, .height = -1 }, meta2 = { .orientation = 1 };
	uint8_t *buf = NULL, *enc = NULL;
	size_t len = 0, enclen = 0;
	unsigned ctl = size > 0 ? data[size - 1] : 0;
	char err2[IMG_ERRLEN];
	int rc = FUZZ_BROKEN, tw, th, shown_w, full_shown_w;
	volatile int odd = 0;

	err[0] = '\0';
	/* Control byte: bits 0-1 choose min_width, bits 2-3 the thumbnail width. */
	dopts.min_width = (int[]){ 0, 16, 48, 200 }[ctl & 3];
	tw = (int[]){ 32, 1, 7, 200 }[(ctl >> 2) & 3];

	buf = fuzz_with_magic(fmt, data, size, &len);
	if (buf == NULL) {
		snprintf(err, errlen, "fuzz: out of memory");
		goto out;
	}
	if (fmt == IMG_PNG && !(ctl & 0x80))
		fuzz_png_fix_crcs(buf, len);
	if (img_sniff(buf, len) != fmt) {
		snprintf(err, errlen, "fuzz: input does not sniff as %s", img_format_name(fmt));
		goto out;
	}

	if (img_decode(buf, len, &dopts, &im, &meta, err, errlen) != 0) {
		if (err[0] == '\0') {
			snprintf(err, errlen, "decode failed without a reason");
			goto out;
		}
		if (im.px != NULL || im.w != 0 || meta.orientation != 1 || meta.width != 0 || meta.icc != NULL) {
			snprintf(err, errlen, "failed decode left output or meta behind");
			goto out;
		}
		rc = FUZZ_REFUSED;
		goto out;
	}
	if (!fuzz_img_sane(&im)) {
		snprintf(err, errlen, "decode returned a bad img %dx%d ch %d", im.w, im.h, im.channels);
		goto out;
	}
	if (meta.orientation < 1 || meta.orientation > 8 || meta.width < im.w ||
	    meta.height < im.h || (uint64_t)meta.width * (uint64_t)meta.height > FUZZ_MAX_PIXELS) {
		snprintf(err, errlen, "bad meta: %dx%d orientation %d for %dx%d",
		         meta.width, meta.height, meta.orientation, im.w, im.h);
		goto out;
	}
	/* Shrink-on-load may not go below min_width (displayed). */
	shown_w = meta.orientation >= 5 ? im.h : im.w;
	full_shown_w = meta.orientation >= 5 ? meta.height : meta.width;
	if (shown_w < (dopts.min_width < full_shown_w ? dopts.min_width : full_shown_w)) {
		snprintf(err, errlen, "shrunk to %d below min_width %d", shown_w, dopts.min_width);
		goto out;
	}
	if (fuzz_checksum(&im) == 1)   /* the branch is the check; the value is arbitrary */
		odd = 1;

	th = (int)(((int64_t)im.h * tw * 2 + im.w) / (2 * (int64_t)im.w));
	th = th < 1 ? 1 : th > FUZZ_THUMB_MAX_H ? FUZZ_THUMB_MAX_H : th;
	if (resample_resize(&im, &small, tw, th) != 0) {
		snprintf(err, errlen, "resize %dx%d -> %dx%d failed", im.w, im.h, tw, th);
		goto out;
	}
	if (meta.icc_len > IMG_ICC_MAX || (meta.icc == NULL) != (meta.icc_len == 0)) {
		snprintf(err, errlen, "bad meta: ICC profile %p of %zu bytes", (void *)meta.icc, meta.icc_len);
		goto out;
	}
	icc_to_srgb(&small, meta.icc, meta.icc_len, NULL);
	if (img_orient(&small, meta.orientation) != 0) {
		snprintf(err, errlen, "orient %d failed", meta.orientation);
		goto out;
	}
	if (fuzz_checksum(&small) == 1)
		odd = 1;
	if (img_encode(&small, fmt, &eopts, &enc, &enclen, err2, sizeof err2) != 0) {
		snprintf(err, errlen, "encode failed: %.100s", err2);
		goto out;
	}
	/* What we write, we must be able to read back, at the same size, untagged. */
	if (img_decode(enc, enclen, NULL, &back, &meta2, err2, sizeof err2) != 0 ||
	    back.w != small.w || back.h != small.h || meta2.icc != NULL) {
		snprintf(err, errlen, "re-decode of our own %s failed: %.100s", img_format_name(fmt), err2);
		goto out;
	}
	if (fuzz_checksum(&back) == 1)
		odd = 1;
	(void)odd;
	rc = FUZZ_OK;
out:
	img_meta_release(&meta);
	img_meta_release(&meta2);
	img_release(&im);
	img_release(&small);
	img_release(&back);
	free(enc);
	free(buf);
	return rc;
}

/* EXIF: any bytes in, 1..8 out. */
static inline int fuzz_exif_one(const uint8_t *data, size_t size, char *err, size_t errlen)
{
	uint8_t *buf = malloc(size + 1);
	int o, rc = FUZZ_BROKEN;

	err[0] = '\0';
	if (buf == NULL) {
		snprintf(err, errlen, "fuzz: out of memory");
		return rc;
	}
	if (size > 0)
		memcpy(buf, data, size);
	o = exif_orientation(buf, size);
	if (o < 1 || o > 8)
		snprintf(err, errlen, "exif_orientation returned %d", o);
	else
		rc = FUZZ_OK;
	free(buf);
	return rc;
}

/* For the libFuzzer entry points: abort (a reported crash, input saved) on a breach. */
static inline void fuzz_require(int rc, const char *err)
{
	if (rc == FUZZ_BROKEN) {
		fprintf(stderr, "fuzz contract breach: %s\n", err);
		abort();
	}
}

#endif
