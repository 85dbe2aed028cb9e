/*
 * thumb: decode once, resize per width, encode, write.
 *
 * The decoder may shrink on load (JPEG DCT scaling, WebP scaled decoding,
 * PNG averaged in boxes as its rows stream in) but always leaves at least
 * three times the largest width, so the
 * Lanczos-3 pass still does the real filtering.  Three, not the usual two:
 * libjpeg's scaled IDCT works block by block and aliases fine texture, and
 * at 2x that showed (SSIM 0.978 against a full-size Lanczos on a sand-dune
 * photo, below vipsthumbnail); at 3x it does not (0.999), and the time is
 * the same, since entropy decoding, not the IDCT, is what costs.  The picture is resized in its stored
 * orientation and only the small result is rotated, which costs nothing and
 * gives the same pixels.  Heights come from the full-size dimensions the
 * header declared, not from the shrunk decode, so they do not depend on
 * which shortcut the decoder took.  A decode shrunk by k ends in a part
 * column and row when k does not divide the size (libjpeg pads the last
 * DCT block, the PNG box pass averages what is left), so it is resized as
 * the W / k pixels the picture spans, not its ceil(W / k) whole ones: those
 * stretched the thumbnail by up to a decoded pixel (a fine pattern 3001
 * px wide came out 4.7 levels off on average, 0.1 now).
 *
 * Widths are made widest first, and a narrower one starts from an earlier
 * result when that is still at least three times its size (64 and 32 from
 * the 200): the first pass over the full decode is most of the resampling
 * cost, and a Lanczos-3 result that much larger holds everything the
 * smaller one can show (SSIM against a direct resize: see bench/NOTES.md).
 * Not when that result was enlarged (a source narrower than the widest
 * width): it holds no more than the source, and its ringing would reach the
 * smaller thumbnail, which at the source's own width would no longer be the
 * source's pixels.
 *
 * Colour: an embedded ICC profile (img_meta icc) is applied to each result
 * made from the decode, right after its resize (icc.c: a few thousand
 * pixels instead of the decode's millions, the transform cached per
 * worker); a result made from an earlier one is sRGB already.  No profile
 * is written: the thumbnails are untagged sRGB.  A profile the decoder or
 * lcms2 could not use is one WARNING line naming the input, and the
 * picture is made as if it had none.
 */
#include "thumb.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bigmem.h"
#include "fsutil.h"
#include "icc.h"
#include "img.h"
#include "log.h"
#include "resample.h"

int
thumb_height(int W, int H, int w)
{
	uint64_t h = (2 * (uint64_t)H * (uint64_t)w + (uint64_t)W) / (2 * (uint64_t)W);

	return h < 1 ? 1 : h > 0x7fffffff ? 0x7fffffff : (int)h;
}

/* "not an image (text/html)" when the server said what it sent. */
static void
not_an_image(const job *j, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	const char *other = img_sniff_other(buf, len);
	size_t n;

	if (len == 0) {
		snprintf(err, errlen, "empty file");
	} else if (other) {
		snprintf(err, errlen, "unsupported format: %s", other);
	} else if (j->ctype && *j->ctype && strncasecmp(j->ctype, "image/", 6) != 0) {
		n = strcspn(j->ctype, "; \t");
		snprintf(err, errlen, "not an image (%.*s)", (int)(n > 100 ? 100 : n), j->ctype);
	} else {
		snprintf(err, errlen, "not an image (unrecognised data)");
	}
}

/*
 * The decode memory budget (resize.decode_memory), shared by every worker:
 * a decoder reserves its footprint once it knows it (img_decode_opts
 * reserve) and the worker gives it back when the decode is over.  A
 * reservation waits while others hold memory and it would pass the limit;
 * with nothing held it always goes ahead, so one image larger than the
 * whole budget still gets decoded, alone.
 */
static pthread_mutex_t budget_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t budget_cv = PTHREAD_COND_INITIALIZER;
static uint64_t budget_used;

/* The one rule: a decode may start when nothing is held, or when it fits
 * beside what is.  Call with budget_mu held. */
static int
budget_fits_locked(uint64_t limit, uint64_t bytes)
{
	return !limit || budget_used == 0 || budget_used + bytes <= limit;
}

typedef struct reservation {
	uint64_t limit, held;
	uint64_t *defer;        /* non-NULL: give up instead of waiting, say how much */
	int deferred;
} reservation;

static int
budget_reserve(void *arg, uint64_t bytes)
{
	reservation *r = arg;

	if (!r->limit || r->held)
		return 0;
	pthread_mutex_lock(&budget_mu);
	if (r->defer && !budget_fits_locked(r->limit, bytes)) {
		pthread_mutex_unlock(&budget_mu);
		*r->defer = bytes;
		r->deferred = 1;
		return -1;
	}
	while (!budget_fits_locked(r->limit, bytes))
		pthread_cond_wait(&budget_cv, &budget_mu);
	budget_used += bytes;
	r->held = bytes;
	pthread_mutex_unlock(&budget_mu);
	return 0;
}

int
thumb_budget_fits(const cfg *c, uint64_t bytes)
{
	int fits;

	pthread_mutex_lock(&budget_mu);
	fits = budget_fits_locked(c->decode_memory, bytes);
	pthread_mutex_unlock(&budget_mu);
	return fits;
}

static void
budget_release(reservation *r)
{
	if (!r->held)
		return;
	pthread_mutex_lock(&budget_mu);
	budget_used -= r->held;
	r->held = 0;
	pthread_cond_broadcast(&budget_cv);
	pthread_mutex_unlock(&budget_mu);
}

int
thumb_make(const cfg *c, const job *j, uint64_t *defer, char *err, size_t errlen)
{
	reservation mem = { .limit = c->decode_memory, .defer = defer };
	img_decode_opts dopt = { .max_pixels = c->max_pixels, .reserve = budget_reserve, .reserve_arg = &mem };
	img_encode_opts eopt = { c->jpeg_quality, c->webp_quality, c->png_level };
	img src = { 0 }, shown = { 0 }, res[CFG_MAX_SIZES] = { { 0 } };
	int order[CFG_MAX_SIZES];
	img_meta meta = { .orientation = 1 };
	img_format in_fmt, out_fmt;
	uint8_t *buf = NULL, *enc = NULL;
	size_t len, enclen;
	char outs[CFG_MAX_SIZES][NAME_MAX_OUT + 32];
	int written = 0, rc = -1, W, H, maxw = 0;

	if (fsu_read_file(j->src, c->max_bytes, &buf, &len, err, errlen) < 0)
		goto out;
	if ((in_fmt = img_sniff(buf, len)) == IMG_UNKNOWN) {
		not_an_image(j, buf, len, err, errlen);
		goto out;
	}
	for (int i = 0; i < c->nsizes; i++)
		if (c->sizes[i] > maxw)
			maxw = c->sizes[i];
	dopt.min_width = THUMB_DECODE_MARGIN * maxw;
	if (img_decode(buf, len, &dopt, &src, &meta, err, errlen) < 0) {
		budget_release(&mem);
		if (mem.deferred)
			rc = THUMB_DEFERRED;
		goto out;
	}
	budget_release(&mem);
	bigmem_free(buf);
	buf = NULL;
	if (meta.icc_note)
		log_msg(LOG_WARNING, "%s: %s ignored", j->url, meta.icc_note);
	/* displayed size of the full picture */
	W = meta.orientation >= 5 ? meta.height : meta.width;
	H = meta.orientation >= 5 ? meta.width : meta.height;
	out_fmt = c->format == IMG_UNKNOWN ? in_fmt : c->format;

	/* widest first, so each later width can start from an earlier result */
	for (int i = 0; i < c->nsizes; i++)
		order[i] = i;
	for (int i = 1; i < c->nsizes; i++)
		for (int k = i; k > 0 && c->sizes[order[k]] > c->sizes[order[k - 1]]; k--) {
			int t = order[k];
			order[k] = order[k - 1];
			order[k - 1] = t;
		}
	for (int n = 0; n < c->nsizes; n++) {
		int i = order[n], w = c->sizes[i], h = thumb_height(W, H, w);
		int sw = meta.orientation >= 5 ? h : w, sh = meta.orientation >= 5 ? w : h;
		const img *from = &src;
		img *out = &res[n];
		char e2[IMG_ERRLEN];

		if (h > THUMB_MAX_EDGE || (uint64_t)w * (uint64_t)h > c->max_pixels) {
			snprintf(err, errlen, "thumbnail too large: %dx%d (picture is %dx%d)", w, h, W, H);
			goto out;
		}
		/* only a reduction may stand in for the decode (file comment) */
		for (int k = 0; k < n; k++)
			if (res[k].px && (uint64_t)res[k].w >= (uint64_t)THUMB_DECODE_MARGIN * (uint64_t)sw
			    && (uint64_t)res[k].h >= (uint64_t)THUMB_DECODE_MARGIN * (uint64_t)sh
			    && res[k].w <= src.w && res[k].h <= src.h)
				from = &res[k];
		double span_w = from->w, span_h = from->h;
		if (from == &src && meta.shrink > 1) {
			/* the decode's last column and row may be part boxes */
			span_w = (double)meta.width / meta.shrink;
			span_h = (double)meta.height / meta.shrink;
		}
		if (resample_resize_span(from, span_w, span_h, out, sw, sh)) {
			snprintf(err, errlen, "out of memory resizing to %dx%d", w, h);
			goto out;
		}
		if (from == &src && meta.icc) {
			const char *why;
			if (icc_to_srgb(out, meta.icc, meta.icc_len, &why) == 0) {
				if (why)
					log_msg(LOG_WARNING, "%s: %s ignored", j->url, why);
				img_meta_release(&meta);        /* the same answer for every width */
			}
		}
		if (meta.orientation >= 2 && meta.orientation <= 8) {
			/* rotate a copy: the stored orientation may still feed a smaller width */
			if (img_alloc(&shown, out->w, out->h, out->channels) != 0
			    || (memcpy(shown.px, out->px, (size_t)out->h * out->stride), 0)
			    || img_orient(&shown, meta.orientation) < 0) {
				snprintf(err, errlen, "out of memory rotating");
				goto out;
			}
			out = &shown;
		}
		if (img_encode(out, out_fmt, &eopt, &enc, &enclen, e2, sizeof e2) < 0) {
			snprintf(err, errlen, "%s", e2);
			goto out;
		}
		img_release(&shown);
		snprintf(outs[written], sizeof outs[written], "%s_%d.%s", j->stem, w, img_format_ext(out_fmt));
		if (fsu_write_atomic(c->outgoing, outs[written], enc, enclen, err, errlen) < 0)
			goto out;
		written++;
		free(enc);
		enc = NULL;
	}
	rc = written;
out:
	if (rc == -1)   /* all or nothing: a failed job leaves no thumbnails behind */
		for (int i = 0; i < written; i++) {
			char path[4096 + NAME_MAX_OUT + 32];
			snprintf(path, sizeof path, "%s/%s", c->outgoing, outs[i]);
			unlink(path);
		}
	bigmem_free(buf);
	free(enc);
	img_release(&src);
	img_meta_release(&meta);
	img_release(&shown);
	for (int i = 0; i < c->nsizes; i++)
		img_release(&res[i]);
	return rc;
}
