/*
 * test_icc: embedded ICC profiles (icc.c, the three decoders, thumb.c).
 *
 * Synthetic pictures get a profile spliced into the file the encoders
 * wrote (JPEG APP2 "ICC_PROFILE", PNG iCCP, WebP VP8X + ICCP), then go
 * through thumb_make like a download, and the thumbnail's pixels are
 * checked against what the colours must become in sRGB.  The non-sRGB
 * profile is Adobe RGB (1998) made by lcms2 in memory (its primaries,
 * D65, gamma 563/256); the expected colours are Pillow's ImageCms
 * (profileToProfile, relative colorimetric) for the same colours with the
 * Adobe RGB (1998) profile of the corpus's rocket_640x427.jpg, worked out
 * once and written down here, so the check does not lean on the code
 * under test.  Then: an sRGB-tagged picture gives the same bytes as the
 * untagged one, a broken or oversized profile is ignored (the picture
 * still succeeds), and the corpus profiles are told apart (sRGB ones left
 * alone, Display P3 / Adobe / ProPhoto / Generic RGB applied, the CMYK
 * file converted in the decoder).
 */
#include "bigmem.h"
#include "check.h"
#include "config.h"
#include "fsutil.h"
#include "icc.h"
#include "img.h"
#include "job.h"
#include "thumb.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <lcms2.h>

static const char *corpus;
static char dir[] = "/tmp/thumbd-test-icc-XXXXXX";
static char outdir[600];
static cfg *conf;

/* Four stripes, 64 px each, of these colours (as stored, in the profile's space). */
static const uint8_t stripes[4][3] = { { 200, 60, 40 }, { 40, 180, 70 }, { 60, 80, 200 }, { 230, 210, 50 } };
/* ... and what Pillow's ImageCms makes of them from Adobe RGB (1998). */
static const uint8_t stripes_srgb[4][3] = { { 231, 57, 34 }, { 0, 181, 57 }, { 46, 79, 205 }, { 238, 211, 3 } };

/* ---- profiles ---- */

static uint8_t *profile_bytes(cmsHPROFILE p, size_t *len)
{
	cmsUInt32Number n = 0;
	uint8_t *b = NULL;

	if (p && cmsSaveProfileToMem(p, NULL, &n) && (b = malloc(n)) && cmsSaveProfileToMem(p, b, &n)) {
		*len = n;
	} else {
		free(b);
		b = NULL;
		*len = 0;
	}
	if (p)
		cmsCloseProfile(p);
	return b;
}

static uint8_t *adobe_rgb(size_t *len)
{
	cmsCIExyY d65;
	cmsCIExyYTRIPLE prim = { { 0.64, 0.33, 1 }, { 0.21, 0.71, 1 }, { 0.15, 0.06, 1 } };
	cmsToneCurve *g = cmsBuildGamma(NULL, 563.0 / 256);
	cmsToneCurve *trc[3] = { g, g, g };
	uint8_t *b;

	cmsWhitePointFromTemp(&d65, 6504);
	b = profile_bytes(cmsCreateRGBProfile(&d65, &prim, trc), len);
	cmsFreeToneCurve(g);
	return b;
}

static uint8_t *gray_gamma22(size_t *len)
{
	cmsToneCurve *g = cmsBuildGamma(NULL, 2.2);
	uint8_t *b = profile_bytes(cmsCreateGrayProfile(cmsD50_xyY(), g), len);

	cmsFreeToneCurve(g);
	return b;
}

/* ---- files with a profile spliced in ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_le(uint8_t *p, uint32_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A profile of a few hundred bytes whose A2B0 is a lut16 (mft2) of inch
 * inputs and g grid points a side, with no table data after the input
 * curves: the class and colour space lcms2 takes, the tables it cannot
 * read.  b holds 512 bytes; returns the length. */
static size_t lut_claims(uint8_t *b, const char *space, int inch, int g)
{
	uint8_t *t = b + 144;
	size_t n = 52 + (size_t)inch * 4 + 64;

	memset(b, 0, 512);
	put_be32(b + 8, 0x02100000);
	memcpy(b + 12, "prtr", 4);
	memcpy(b + 16, space, 4);
	memcpy(b + 20, "Lab ", 4);
	memcpy(b + 36, "acsp", 4);
	put_be32(b + 68, 0xf6d6);               /* D50 */
	put_be32(b + 72, 0x10000);
	put_be32(b + 76, 0xd32d);
	put_be32(b + 128, 1);
	memcpy(b + 132, "A2B0", 4);
	put_be32(b + 136, 144);
	put_be32(b + 140, (uint32_t)n);
	memcpy(t, "mft2", 4);
	t[8] = (uint8_t)inch;
	t[9] = 3;
	t[10] = (uint8_t)g;
	for (int i = 0; i < 3; i++)
		put_be32(t + 12 + 16 * i, 0x10000);     /* identity matrix */
	t[49] = 2;                              /* 2-entry input and output curves */
	t[51] = 2;
	for (size_t i = 52; i < n; i += 2)
		t[i] = 0x80;
	put_be32(b, (uint32_t)(144 + n));
	return 144 + n;
}

/* JPEG: APP2 "ICC_PROFILE" segments (65519 bytes of profile each) after
 * SOI and the JFIF APP0. */
static uint8_t *jpeg_with_icc(const uint8_t *jpg, size_t len, const uint8_t *icc, size_t ilen,
                              size_t *outlen)
{
	size_t at = 2, chunks = (ilen + 65518) / 65519, o;
	uint8_t *out;

	if (len > 4 && jpg[2] == 0xff && jpg[3] == 0xe0)
		at = 4 + ((size_t)jpg[4] << 8 | jpg[5]);
	out = malloc(len + chunks * 18 + ilen);
	if (!out)
		return NULL;
	memcpy(out, jpg, at);
	o = at;
	for (size_t i = 0; i < chunks; i++) {
		size_t n = ilen - i * 65519 > 65519 ? 65519 : ilen - i * 65519;
		out[o] = 0xff;
		out[o + 1] = 0xe2;
		out[o + 2] = (uint8_t)((n + 16) >> 8);
		out[o + 3] = (uint8_t)(n + 16);
		memcpy(out + o + 4, "ICC_PROFILE", 12);
		out[o + 16] = (uint8_t)(i + 1);
		out[o + 17] = (uint8_t)chunks;
		memcpy(out + o + 18, icc + i * 65519, n);
		o += 18 + n;
	}
	memcpy(out + o, jpg + at, len - at);
	*outlen = o + len - at;
	return out;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
	}
	return c ^ 0xffffffffu;
}

static uint32_t adler32_of(const uint8_t *p, size_t n)
{
	uint32_t a = 1, b = 0;

	for (size_t i = 0; i < n; i++) {
		a = (a + p[i]) % 65521;
		b = (b + a) % 65521;
	}
	return b << 16 | a;
}

/* PNG: an iCCP chunk after IHDR, the profile in stored (uncompressed)
 * deflate blocks, which every inflater reads. */
static uint8_t *png_with_icc(const uint8_t *png, size_t len, const uint8_t *icc, size_t ilen,
                             size_t *outlen)
{
	size_t blocks = ilen / 65535 + 1, data = 4 + 1 + 2 + blocks * 5 + ilen + 4, o = 33;
	uint8_t *out = malloc(len + 12 + data), *d;

	if (!out)
		return NULL;
	memcpy(out, png, 33);                   /* signature + IHDR */
	put_be32(out + o, (uint32_t)data);
	memcpy(out + o + 4, "iCCPicc\0\0", 9); /* type, name "icc", NUL, method 0 */
	d = out + o + 13;
	*d++ = 0x78;                            /* zlib: deflate, 32K window */
	*d++ = 0x01;
	for (size_t b = 0, left = ilen; b < blocks; b++) {
		size_t n = left > 65535 ? 65535 : left;
		*d++ = b + 1 == blocks;         /* BFINAL, BTYPE 00 */
		put_le(d, (uint32_t)n, 2);
		put_le(d + 2, (uint32_t)(n ^ 0xffff), 2);
		memcpy(d + 4, icc + (ilen - left), n);
		d += 4 + n;
		left -= n;
	}
	put_be32(d, adler32_of(icc, ilen));
	put_be32(out + o + 8 + data, crc32_of(out + o + 4, data + 4));
	o += 12 + data;
	memcpy(out + o, png + 33, len - 33);
	*outlen = o + len - 33;
	return out;
}

/* WebP: a simple (VP8) file rewrapped as VP8X with an ICCP chunk. */
static uint8_t *webp_with_icc(const uint8_t *webp, size_t len, int w, int h,
                              const uint8_t *icc, size_t ilen, size_t *outlen)
{
	size_t pad = ilen & 1, total = 12 + 18 + 8 + ilen + pad + (len - 12);
	uint8_t *out = calloc(1, total), *p;

	if (!out || len < 20 || memcmp(webp + 12, "VP8 ", 4) != 0) {
		free(out);
		return NULL;
	}
	memcpy(out, "RIFF", 4);
	put_le(out + 4, (uint32_t)(total - 8), 4);
	memcpy(out + 8, "WEBPVP8X", 8);
	put_le(out + 16, 10, 4);
	out[20] = 0x20;                         /* ICC profile flag */
	put_le(out + 24, (uint32_t)(w - 1), 3);
	put_le(out + 27, (uint32_t)(h - 1), 3);
	p = out + 30;
	memcpy(p, "ICCP", 4);
	put_le(p + 4, (uint32_t)ilen, 4);
	memcpy(p + 8, icc, ilen);
	p += 8 + ilen + pad;
	memcpy(p, webp + 12, len - 12);
	*outlen = total;
	return out;
}

/* The stripes (or gray level 30; alpha 128 where there is alpha), encoded as fmt,
 * with icc spliced in when not NULL; written to dir/name. */
static void write_src(const char *name, img_format fmt, int channels, const uint8_t *icc, size_t ilen)
{
	img im = { 0 };
	img_encode_opts eo = { 95, 100, 1 };
	uint8_t *enc = NULL, *tagged = NULL;
	size_t len = 0, tlen = 0;
	char err[IMG_ERRLEN];

	CHECK_INT(img_alloc(&im, 256, 64, channels), 0);
	for (int y = 0; y < im.h; y++)
		for (int x = 0; x < im.w; x++) {
			uint8_t *p = im.px + (size_t)y * im.stride + (size_t)x * (size_t)channels;
			if (channels <= 2)
				p[0] = 30;
			else
				memcpy(p, stripes[x / 64], 3);
			if (channels == 2 || channels == 4)
				p[channels - 1] = 128;
		}
	CHECK_INT(img_encode(&im, fmt, &eo, &enc, &len, err, sizeof err), 0);
	if (icc == NULL)
		tagged = enc, tlen = len, enc = NULL;
	else if (fmt == IMG_JPEG)
		tagged = jpeg_with_icc(enc, len, icc, ilen, &tlen);
	else if (fmt == IMG_PNG)
		tagged = png_with_icc(enc, len, icc, ilen, &tlen);
	else
		tagged = webp_with_icc(enc, len, im.w, im.h, icc, ilen, &tlen);
	CHECK(tagged != NULL);
	if (tagged)
		CHECK_INT(fsu_write_atomic(dir, name, tagged, tlen, err, sizeof err), 0);
	free(enc);
	free(tagged);
	img_release(&im);
}

/* thumb_make on dir/name; the thumbnails' stem is stem. */
static int thumbs(const char *name, const char *stem)
{
	char src[700], err[512];
	job *j;
	int rc;

	snprintf(src, sizeof src, "%s/%s", dir, name);
	j = job_new(src, src, NULL, 0, stem);
	rc = thumb_make(conf, j, NULL, err, sizeof err);
	if (rc != 3)
		fprintf(stderr, "  %s: %s\n", name, err);
	job_free(j);
	return rc;
}

static uint8_t *read_out(const char *name, size_t *len)
{
	char path[800], err[512];
	uint8_t *buf = NULL;

	snprintf(path, sizeof path, "%s/%s", outdir, name);
	if (fsu_read_file(path, 1 << 24, &buf, len, err, sizeof err) != 0)
		return NULL;
	return buf;
}

/* The decoded thumbnail outgoing/name. */
static int decode_out(const char *name, img *im)
{
	size_t len;
	uint8_t *buf = read_out(name, &len);
	img_meta m;
	char err[IMG_ERRLEN];
	int rc = -1;

	memset(im, 0, sizeof *im);
	if (buf) {
		rc = img_decode(buf, len, NULL, im, &m, err, sizeof err);
		CHECK(m.icc == NULL);           /* written untagged */
		img_meta_release(&m);
	}
	bigmem_free(buf);
	return rc;
}

/* 1 when two outputs hold the same bytes. */
static int same_file(const char *a, const char *b)
{
	size_t la = 0, lb = 0;
	uint8_t *x = read_out(a, &la), *y = read_out(b, &lb);
	int same = x && y && la == lb && memcmp(x, y, la) == 0;

	bigmem_free(x);
	bigmem_free(y);
	return same;
}

/* The worst channel difference of the stripe centres of a 200-px
 * thumbnail of the stripes from want (rows of 3). */
static int stripes_off(const img *im, const uint8_t want[4][3])
{
	int worst = 999;

	if (im->px == NULL || im->w != 200 || im->channels < 3)
		return worst;
	worst = 0;
	for (int s = 0; s < 4; s++) {
		const uint8_t *p = im->px + (size_t)(im->h / 2) * im->stride
		                   + (size_t)(s * 50 + 25) * (size_t)im->channels;
		for (int c = 0; c < 3; c++) {
			int d = abs((int)p[c] - (int)want[s][c]);
			if (d > worst)
				worst = d;
		}
	}
	return worst;
}

/* ---- the tests ---- */

/* Each decoder hands the profile up as it is in the file. */
static void test_decoders_return_profile(const uint8_t *icc, size_t ilen)
{
	static const struct { img_format f; const char *name; } fmts[] = {
		{ IMG_JPEG, "dec.jpg" }, { IMG_PNG, "dec.png" }, { IMG_WEBP, "dec.webp" },
	};

	for (size_t i = 0; i < 3; i++) {
		char path[700], err[IMG_ERRLEN];
		uint8_t *buf = NULL;
		size_t len = 0;
		img im = { 0 };
		img_meta m;

		write_src(fmts[i].name, fmts[i].f, 3, icc, ilen);
		snprintf(path, sizeof path, "%s/%s", dir, fmts[i].name);
		CHECK_INT(fsu_read_file(path, 1 << 24, &buf, &len, err, sizeof err), 0);
		CHECK_INT(img_decode(buf, len, NULL, &im, &m, err, sizeof err), 0);
		CHECK(m.icc != NULL && m.icc_len == ilen && memcmp(m.icc, icc, ilen) == 0);
		CHECK(m.icc_note == NULL);
		img_meta_release(&m);
		CHECK(m.icc == NULL && m.icc_len == 0);
		img_release(&im);
		/* a failed decode leaves no profile behind */
		CHECK_INT(img_decode(buf, len / 2, NULL, &im, &m, err, sizeof err), -1);
		CHECK(m.icc == NULL && m.icc_len == 0);
		bigmem_free(buf);
	}
}

/* Adobe RGB stripes in JPEG, PNG and WebP: the thumbnails hold the sRGB
 * colours, not the stored numbers. */
static void test_adobe_to_srgb(const uint8_t *icc, size_t ilen)
{
	static const struct { img_format f; const char *name, *stem; int tol; } fmts[] = {
		/* lossy: the saturated stripes do not come back exact from YCbCr */
		{ IMG_JPEG, "adobe.jpg", "adobe_jpg", 6 },
		{ IMG_PNG, "adobe.png", "adobe_png", 1 },
		{ IMG_WEBP, "adobe.webp", "adobe_webp", 6 },
	};
	char name[100];
	img im;

	/* the stored numbers are far from the answer: the check can tell */
	CHECK(stripes_off(&(img){ .w = 200, .h = 1, .channels = 3, .stride = 600,
	                          .px = (uint8_t[600]){ 0 } }, stripes_srgb) > 30);
	conf->format = IMG_PNG;
	for (size_t i = 0; i < 3; i++) {
		write_src(fmts[i].name, fmts[i].f, 3, icc, ilen);
		CHECK_INT(thumbs(fmts[i].name, fmts[i].stem), 3);
		snprintf(name, sizeof name, "%s_200.png", fmts[i].stem);
		CHECK_INT(decode_out(name, &im), 0);
		int off = stripes_off(&im, stripes_srgb);
		if (off > fmts[i].tol)
			fprintf(stderr, "  %s: stripes off by %d\n", fmts[i].name, off);
		CHECK(off <= fmts[i].tol);
		img_release(&im);
		/* the narrower ones too (made from the 200, not converted twice) */
		snprintf(name, sizeof name, "%s_64.png", fmts[i].stem);
		CHECK_INT(decode_out(name, &im), 0);
		if (im.px) {
			const uint8_t *p = im.px + (size_t)(im.h / 2) * im.stride + 8 * 3;   /* stripe 0 */
			CHECK(abs(p[0] - 231) <= fmts[i].tol + 1 && abs(p[1] - 57) <= fmts[i].tol + 1
			      && abs(p[2] - 34) <= fmts[i].tol + 1);
		}
		img_release(&im);
	}

	/* RGBA: colour converted, alpha untouched */
	write_src("adobe_rgba.png", IMG_PNG, 4, icc, ilen);
	CHECK_INT(thumbs("adobe_rgba.png", "adobe_rgba"), 3);
	CHECK_INT(decode_out("adobe_rgba_200.png", &im), 0);
	CHECK_INT(im.channels, 4);
	CHECK(stripes_off(&im, stripes_srgb) <= 1);
	if (im.px)
		CHECK_INT(im.px[(size_t)(im.h / 2) * im.stride + 3], 128);
	img_release(&im);

	/* and with the profile taken out again, the stored numbers come back:
	 * the conversion is the profile's doing */
	write_src("plain.png", IMG_PNG, 3, NULL, 0);
	CHECK_INT(thumbs("plain.png", "plain"), 3);
	CHECK_INT(decode_out("plain_200.png", &im), 0);
	CHECK(stripes_off(&im, stripes) <= 1);
	img_release(&im);
}

/* A gray picture (and gray + alpha) with a gamma 2.2 gray profile stays
 * gray, its level moved to sRGB gray's: 255 * srgb((30/255)^2.2), about 24. */
static void test_gray(void)
{
	size_t glen;
	uint8_t *g = gray_gamma22(&glen);
	double lin = pow(30 / 255.0, 2.2);
	double want = 255 * (lin <= 0.0031308 ? 12.92 * lin : 1.055 * pow(lin, 1 / 2.4) - 0.055);
	img im;

	CHECK(g != NULL);
	if (!g)
		return;
	write_src("gray.png", IMG_PNG, 1, g, glen);
	CHECK_INT(thumbs("gray.png", "gray"), 3);
	CHECK_INT(decode_out("gray_200.png", &im), 0);
	CHECK_INT(im.channels, 1);
	if (im.px) {
		CHECK(fabs(im.px[(size_t)(im.h / 2) * im.stride + 100] - want) <= 1.0);
		CHECK(abs(im.px[(size_t)(im.h / 2) * im.stride + 100] - 30) >= 4);     /* it moved */
	}
	img_release(&im);
	/* gray + alpha: the level as above, alpha untouched */
	write_src("graya.png", IMG_PNG, 2, g, glen);
	CHECK_INT(thumbs("graya.png", "graya"), 3);
	CHECK_INT(decode_out("graya_200.png", &im), 0);
	CHECK_INT(im.channels, 2);
	if (im.px) {
		CHECK(fabs(im.px[(size_t)(im.h / 2) * im.stride + 200] - want) <= 1.0);
		CHECK_INT(im.px[(size_t)(im.h / 2) * im.stride + 201], 128);
	}
	img_release(&im);
	free(g);
}

/* sRGB-tagged pictures give the bytes of untagged ones, whatever the
 * profile's flavour: lcms2's own v4 sRGB, and the HP/Microsoft v2 one of
 * the corpus (from iguana_100x68.jpg). */
static void test_srgb_untouched(void)
{
	static const struct { img_format f; const char *ext; } fmts[] = {
		{ IMG_JPEG, "jpg" }, { IMG_PNG, "png" }, { IMG_WEBP, "webp" },
	};
	static const int widths[3] = { 32, 64, 200 };
	size_t slen = 0, hlen = 0;
	uint8_t *srgb = profile_bytes(cmsCreate_sRGBProfile(), &slen), *hp = NULL;
	char path[700], err[IMG_ERRLEN], a[100], b[100], c[100];
	uint8_t *buf = NULL;
	size_t len;
	img im = { 0 };
	img_meta m = { 0 };

	snprintf(path, sizeof path, "%s/photos/iguana_100x68.jpg", corpus);
	if (fsu_read_file(path, 1 << 24, &buf, &len, err, sizeof err) == 0
	    && img_decode(buf, len, NULL, &im, &m, err, sizeof err) == 0) {
		hp = m.icc;
		hlen = m.icc_len;
		m.icc = NULL;
	}
	bigmem_free(buf);
	img_release(&im);
	CHECK(srgb != NULL && hp != NULL && hlen == 3144);
	if (!srgb || !hp)
		goto out;

	conf->format = IMG_UNKNOWN;     /* the source's format */
	for (size_t i = 0; i < 3; i++) {
		int same = 1;
		snprintf(a, sizeof a, "plain.%s", fmts[i].ext);
		snprintf(b, sizeof b, "srgb.%s", fmts[i].ext);
		snprintf(c, sizeof c, "hp.%s", fmts[i].ext);
		write_src(a, fmts[i].f, 3, NULL, 0);
		write_src(b, fmts[i].f, 3, srgb, slen);
		write_src(c, fmts[i].f, 3, hp, hlen);
		CHECK_INT(thumbs(a, "u_plain"), 3);
		CHECK_INT(thumbs(b, "u_srgb"), 3);
		CHECK_INT(thumbs(c, "u_hp"), 3);
		for (int k = 0; k < 3; k++) {
			snprintf(a, sizeof a, "u_plain_%d.%s", widths[k], fmts[i].ext);
			snprintf(b, sizeof b, "u_srgb_%d.%s", widths[k], fmts[i].ext);
			snprintf(c, sizeof c, "u_hp_%d.%s", widths[k], fmts[i].ext);
			same &= same_file(a, b) && same_file(a, c);
		}
		if (!same)
			fprintf(stderr, "  sRGB-tagged %s: thumbnails differ from the untagged ones\n", fmts[i].ext);
		CHECK(same);
	}
	/* the same answer straight from icc_lookup, for RGB and RGBA */
	{
		const char *why = "x";
		CHECK(icc_lookup(srgb, slen, ICC_RGB, &why) == NULL && why == NULL);
		why = "x";
		CHECK(icc_lookup(hp, hlen, ICC_RGBA, &why) == NULL && why == NULL);
	}
out:
	free(srgb);
	free(hp);
}

/* A profile lcms2 refuses, or one too large, is no profile: the picture
 * succeeds with the bytes of the untagged one. */
static void test_broken_profiles(const uint8_t *icc, size_t ilen)
{
	static const struct { img_format f; const char *ext; } fmts[] = {
		{ IMG_JPEG, "jpg" }, { IMG_PNG, "png" }, { IMG_WEBP, "webp" },
	};
	uint8_t junk[600], *bad = malloc(ilen), *big = calloc(1, IMG_ICC_MAX + 1);
	char a[100], b[100];
	const char *why;

	CHECK(bad != NULL && big != NULL);
	if (!bad || !big)
		goto out;
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	/* a header libpng accepts (size, 'acsp', RGB, XYZ, tag table inside)
	 * over tags whose contents are garbage: lcms2 opens it lazily and
	 * fails when the transform reads the tags */
	memcpy(bad, icc, ilen);
	for (size_t i = 132 + 12 * (size_t)(bad[128] << 24 | bad[129] << 16 | bad[130] << 8 | bad[131]);
	     i < ilen; i++)
		bad[i] = 0xA5;
	why = NULL;
	CHECK(icc_lookup(bad, ilen, ICC_RGB, &why) == NULL && why != NULL);
	why = NULL;
	CHECK(icc_lookup(junk, sizeof junk, ICC_RGB, &why) == NULL && why != NULL
	      && strcmp(why, "unreadable ICC profile") == 0);
	why = NULL;
	CHECK(icc_lookup(icc, ilen, ICC_GRAY, &why) == NULL && why != NULL);    /* RGB profile, gray pixels */

	conf->format = IMG_UNKNOWN;
	for (size_t i = 0; i < 3; i++) {
		snprintf(a, sizeof a, "plain.%s", fmts[i].ext);
		write_src(a, fmts[i].f, 3, NULL, 0);
		CHECK_INT(thumbs(a, "b_plain"), 3);
		snprintf(b, sizeof b, "bad.%s", fmts[i].ext);
		write_src(b, fmts[i].f, 3, bad, ilen);
		CHECK_INT(thumbs(b, "b_bad"), 3);
		snprintf(a, sizeof a, "b_plain_200.%s", fmts[i].ext);
		snprintf(b, sizeof b, "b_bad_200.%s", fmts[i].ext);
		CHECK(same_file(a, b));
		if (fmts[i].f != IMG_PNG) {     /* libpng itself drops this one */
			snprintf(b, sizeof b, "junk.%s", fmts[i].ext);
			write_src(b, fmts[i].f, 3, junk, sizeof junk);
			CHECK_INT(thumbs(b, "b_junk"), 3);
			snprintf(b, sizeof b, "b_junk_200.%s", fmts[i].ext);
			CHECK(same_file(a, b));
		}
	}

	/* over IMG_ICC_MAX: not returned, a note says why, the decode succeeds */
	{
		char path[700], err[IMG_ERRLEN];
		uint8_t *buf = NULL;
		size_t len;
		img im = { 0 };
		img_meta m;

		memcpy(big, icc, ilen);
		write_src("big.jpg", IMG_JPEG, 3, big, IMG_ICC_MAX + 1);
		snprintf(path, sizeof path, "%s/big.jpg", dir);
		CHECK_INT(fsu_read_file(path, 1 << 24, &buf, &len, err, sizeof err), 0);
		CHECK_INT(img_decode(buf, len, NULL, &im, &m, err, sizeof err), 0);
		CHECK(m.icc == NULL && m.icc_note != NULL && strstr(m.icc_note, "4 MB") != NULL);
		img_meta_release(&m);
		img_release(&im);
		bigmem_free(buf);
		CHECK_INT(thumbs("big.jpg", "b_big"), 3);
		CHECK(same_file("b_plain_200.jpg", "b_big_200.jpg"));
	}
out:
	free(bad);
	free(big);
}

/* A profile that claims tables far larger than itself is refused without
 * lcms2 allocating them: a CMYK lut16 of 80^4 grid points had it zero
 * 236 MB (0.9 s), an RGB one of 255^3 97 MB, per image.  Run first, while
 * the process's peak RSS is still low. */
static void test_lut_claims(void)
{
	static const struct { const char *space; int inch, g; icc_layout lay; } p[] = {
		{ "CMYK", 4, 80, ICC_CMYK }, { "RGB ", 3, 255, ICC_RGB },
	};
	uint8_t b[512];
	struct rusage r0, r1;

	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
		const char *why = NULL;
		size_t n = lut_claims(b, p[i].space, p[i].inch, p[i].g);

		getrusage(RUSAGE_SELF, &r0);
		CHECK(icc_lookup(b, n, p[i].lay, &why) == NULL && why != NULL);
		getrusage(RUSAGE_SELF, &r1);
		if (r1.ru_maxrss - r0.ru_maxrss > 32 << 10)
			fprintf(stderr, "  a %zu-byte %s profile: peak RSS up %ld MB\n", n, p[i].space,
			        (r1.ru_maxrss - r0.ru_maxrss) >> 10);
		CHECK(r1.ru_maxrss - r0.ru_maxrss <= 32 << 10);        /* KB */
	}
}

/* The corpus's profiles: which are sRGB, which get applied. */
static void test_corpus_profiles(void)
{
	static const struct { const char *path; int applied; } files[] = {
		{ "photos/iphone_xs_orient6_4032x3024.jpg", 1 },      /* Display P3 */
		{ "photos/rocket_640x427.jpg", 1 },                   /* Adobe RGB (1998) */
		{ "edge/jpeg_exif_orientation_2.jpg", 1 },            /* Generic RGB */
		{ "edge/jpeg_icc_prophoto_1680x1050.jpg", 1 },        /* ProPhoto RGB */
		{ "photos/hubble_deep_field_1000x872.jpg", 0 },       /* sRGB IEC61966-2.1 */
		{ "photos/ultrahdr_gainmap_3840x2160.jpg", 0 },       /* sRGB Gamut with sRGB Transfer (v4) */
		{ "edge/png_16bit_photo_icc_149x227.png", 0 },        /* sRGB2014 */
		{ "edge/png_rgba_photo_500x500.png", 0 },             /* sRGB */
		{ "photos/keong_macan_500x500.png", 0 },              /* sRGB */
		{ "photos/flower2_300x225.webp", 0 },                 /* sRGB IEC61966-2.1 */
	};
	img_decode_opts o = { .max_pixels = 100000000, .min_width = 600 };

	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[700], err[IMG_ERRLEN];
		uint8_t *buf = NULL;
		size_t len;
		img im = { 0 };
		img_meta m = { 0 };
		const char *why = "x";

		snprintf(path, sizeof path, "%s/%s", corpus, files[i].path);
		CHECK_INT(fsu_read_file(path, 1 << 26, &buf, &len, err, sizeof err), 0);
		CHECK_INT(img_decode(buf, len, &o, &im, &m, err, sizeof err), 0);
		CHECK(m.icc != NULL);
		if (m.icc) {
			int applied = icc_lookup(m.icc, m.icc_len, (icc_layout)im.channels, &why) != NULL;
			if (applied != files[i].applied)
				fprintf(stderr, "  %s: profile %s\n", files[i].path,
				        applied ? "applied, but it is sRGB" : "not applied");
			CHECK_INT(applied, files[i].applied);
			CHECK(why == NULL);
		}
		img_meta_release(&m);
		img_release(&im);
		bigmem_free(buf);
	}
}

/* The CMYK JPEG goes through its SWOP profile in the decoder: the flat
 * pale tint is (153, 214, 214) for Pillow's ImageCms (relative
 * colorimetric); the naive formula made it (155, 255, 213).  Its
 * profile is used up there, not handed on. */
static void test_cmyk_profile(void)
{
	char path[700], err[IMG_ERRLEN];
	uint8_t *buf = NULL;
	size_t len;
	img im = { 0 };
	img_meta m = { 0 };

	snprintf(path, sizeof path, "%s/edge/jpeg_cmyk_adobe_icc_388x218.jpg", corpus);
	CHECK_INT(fsu_read_file(path, 1 << 24, &buf, &len, err, sizeof err), 0);
	CHECK_INT(img_decode(buf, len, NULL, &im, &m, err, sizeof err), 0);
	CHECK(m.icc == NULL && m.icc_note == NULL);
	if (im.px && im.channels == 3) {
		double s[3] = { 0, 0, 0 };
		for (int y = 0; y < im.h; y++)
			for (int x = 0; x < im.w; x++)
				for (int c = 0; c < 3; c++)
					s[c] += im.px[(size_t)y * im.stride + 3 * (size_t)x + (size_t)c];
		for (int c = 0; c < 3; c++)
			s[c] /= (double)im.w * im.h;
		if (fabs(s[0] - 153) > 3 || fabs(s[1] - 214) > 3 || fabs(s[2] - 214) > 3)
			fprintf(stderr, "  CMYK mean (%.1f, %.1f, %.1f), expected (153, 214, 214)\n", s[0], s[1], s[2]);
		CHECK(fabs(s[0] - 153) <= 3 && fabs(s[1] - 214) <= 3 && fabs(s[2] - 214) <= 3);
	}
	img_meta_release(&m);
	img_release(&im);
	bigmem_free(buf);
}

/* The cache: the same profile twice is the same transform; more profiles
 * than it holds still give right answers. */
static void test_cache(const uint8_t *icc, size_t ilen)
{
	const icc_xform *x1, *x2;
	uint8_t *copy = malloc(ilen);

	CHECK(copy != NULL);
	if (!copy)
		return;
	memcpy(copy, icc, ilen);
	x1 = icc_lookup(icc, ilen, ICC_RGB, NULL);
	x2 = icc_lookup(copy, ilen, ICC_RGB, NULL);
	CHECK(x1 != NULL && x1 == x2);
	CHECK(icc_lookup(icc, ilen, ICC_RGBA, NULL) != x1);     /* another layout, another entry */
	for (int g = 0; g < 20; g++) {          /* evict it many times over */
		size_t n;
		cmsToneCurve *t = cmsBuildGamma(NULL, 1.5 + g * 0.05);
		uint8_t *p = profile_bytes(cmsCreateGrayProfile(cmsD50_xyY(), t), &n);
		cmsFreeToneCurve(t);
		CHECK(p != NULL && icc_lookup(p, n, ICC_GRAY, NULL) != NULL);
		free(p);
	}
	{
		img im = { 0 };
		CHECK_INT(img_alloc(&im, 4, 1, 3), 0);
		for (int s = 0; s < 4; s++)
			memcpy(im.px + 3 * s, stripes[s], 3);
		CHECK_INT(icc_to_srgb(&im, copy, ilen, NULL), 1);
		int worst = 0;
		for (int s = 0; s < 4; s++)
			for (int c = 0; c < 3; c++)
				if (abs(im.px[3 * s + c] - stripes_srgb[s][c]) > worst)
					worst = abs(im.px[3 * s + c] - stripes_srgb[s][c]);
		CHECK(worst <= 1);
		img_release(&im);
	}
	/* large profiles (the Adobe one padded to 1.5 MB, eight different
	 * last bytes): still applied, and the copies kept stay within 4 MB */
	{
		size_t big = 3 << 19;
		uint8_t *p = calloc(1, big);
		const icc_xform *x = NULL;
		CHECK(p != NULL);
		if (p) {
			memcpy(p, icc, ilen);
			put_be32(p, (uint32_t)big);
			for (int i = 0; i < 8; i++) {
				p[big - 1] = (uint8_t)(i + 1);
				CHECK((x = icc_lookup(p, big, ICC_RGB, NULL)) != NULL);
				CHECK(icc_cache_bytes() <= IMG_ICC_MAX);
			}
			CHECK(icc_lookup(p, big, ICC_RGB, NULL) == x);  /* the newest is still a hit */
		}
		free(p);
	}
	free(copy);
	icc_thread_done();
	CHECK(icc_cache_bytes() == 0);
	icc_thread_done();      /* twice: a no-op */
	CHECK(icc_lookup(icc, ilen, ICC_RGB, NULL) != NULL);   /* a new cache */
}

int main(void)
{
	size_t ilen = 0;
	uint8_t *adobe = adobe_rgb(&ilen);
	char err[512];

	corpus = getenv("THUMBD_CORPUS");
	if (corpus == NULL || corpus[0] == '\0')
		corpus = "../shared/corpus";
	conf = cfg_new();
	if (!conf || !adobe || !mkdtemp(dir))
		return 1;
	snprintf(outdir, sizeof outdir, "%s/out", dir);
	CHECK_INT(fsu_mkdirs(outdir, err, sizeof err), 0);
	free(conf->outgoing);
	conf->outgoing = strdup(outdir);

	test_lut_claims();
	test_decoders_return_profile(adobe, ilen);
	test_adobe_to_srgb(adobe, ilen);
	test_gray();
	test_srgb_untouched();
	test_broken_profiles(adobe, ilen);
	test_corpus_profiles();
	test_cmyk_profile();
	test_cache(adobe, ilen);

	snprintf(err, sizeof err, "rm -rf %s", dir);
	CHECK_INT(system(err), 0);
	free(adobe);
	cfg_free(conf);
	icc_thread_done();
	return CHECK_DONE();
}
