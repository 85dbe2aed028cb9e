/*
 * webpio: WebP decode and encode through libwebp (+ libwebpdemux).
 *
 * libwebp reports errors by status code, so there is no setjmp here.  The
 * decoder writes straight into our img (external memory), which is sized
 * from WebPGetFeatures only after the max_pixels check, so a hostile
 * header never gets a buffer.  Stills may be shrunk on load with libwebp's
 * own area-averaging scaler, by powers of two like JPEG's DCT scaling, so
 * the resampler sees the same kind of input from both.  Animations yield
 * their first frame composited on the full canvas (WebPAnimDecoder), the
 * frame a browser would show before it starts playing.  EXIF orientation
 * and the ICC profile come from the VP8X container's EXIF and ICCP chunks
 * (libwebpdemux); the profile goes up in meta->icc.
 *
 * A file shorter than its RIFF header says is reported as truncated,
 * whatever libwebp made of it: the demuxer behind animations only knows
 * that it cannot parse the file ("bad animation").  One exception: a file
 * that lacks only the pad byte after an odd-sized last chunk (some
 * encoders and cut uploads) has every byte of its picture, which browsers
 * show; libwebp refuses it, so it is decoded from a copy with the byte
 * put back, as a JPEG without its EOI is (README, Failures).
 *
 * libwebp allocates its encoder output with WebPMalloc, which is not
 * guaranteed to be malloc, so the encoded bytes are copied into a buffer
 * the caller can free().
 */
#include "codec.h"
#include "exif.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>
#include <webp/encode.h>

#define WEBP_MAX_DIM 16383

static const char *status_text(VP8StatusCode st)
{
	switch (st) {
	case VP8_STATUS_OK:                  return "ok";
	case VP8_STATUS_OUT_OF_MEMORY:       return "out of memory";
	case VP8_STATUS_INVALID_PARAM:       return "invalid parameter";
	case VP8_STATUS_BITSTREAM_ERROR:     return "bitstream error";
	case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
	case VP8_STATUS_SUSPENDED:           return "suspended";
	case VP8_STATUS_USER_ABORT:          return "aborted";
	case VP8_STATUS_NOT_ENOUGH_DATA:     return "not enough data";
	}
	return "unknown error";
}

static void status_error(VP8StatusCode st, char *err, size_t errlen)
{
	if (st == VP8_STATUS_NOT_ENOUGH_DATA)
		snprintf(err, errlen, "truncated WebP");
	else if (st == VP8_STATUS_OUT_OF_MEMORY)
		snprintf(err, errlen, "out of memory");
	else
		snprintf(err, errlen, "corrupt WebP: %s", status_text(st));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The RIFF header declares more bytes than there are. */
static int riff_short(const uint8_t *buf, size_t len)
{
	return len >= 12 && (uint64_t)le32(buf + 4) + 8 > len;
}

/* The RIFF header declares one byte more than there is, and that byte is
 * the pad after an odd-sized last chunk that ends the file. */
static int pad_missing(const uint8_t *buf, size_t len)
{
	size_t off = 12;

	if (len < 12 || (uint64_t)le32(buf + 4) + 8 != (uint64_t)len + 1)
		return 0;
	while (len - off >= 8) {
		uint64_t end = (uint64_t)off + 8 + le32(buf + off + 4);

		if (end == len)
			return (le32(buf + off + 4) & 1) != 0;
		if (end >= len)
			return 0;
		off = (size_t)end + (end & 1);
	}
	return 0;
}

/* EXIF and ICCP live in VP8X chunks: the orientation (1 when none) and
 * the profile into meta.  A file the demuxer cannot parse simply has
 * neither; the decoder will judge the pixels. */
static int webp_meta(const uint8_t *buf, size_t len, img_meta *meta)
{
	WebPData wd = { buf, len };
	WebPDemuxer *dmx = WebPDemux(&wd);
	WebPChunkIterator it;
	uint32_t flags;
	int orient = 1;

	if (dmx == NULL)
		return 1;
	flags = WebPDemuxGetI(dmx, WEBP_FF_FORMAT_FLAGS);
	if ((flags & EXIF_FLAG) && WebPDemuxGetChunk(dmx, "EXIF", 1, &it)) {
		/* exif_orientation accepts both with and without "Exif\0\0". */
		orient = exif_orientation(it.chunk.bytes, it.chunk.size);
		WebPDemuxReleaseChunkIterator(&it);
	}
	if ((flags & ICCP_FLAG) && WebPDemuxGetChunk(dmx, "ICCP", 1, &it)) {
		if (it.chunk.size > IMG_ICC_MAX)
			meta->icc_note = "ICC profile larger than 4 MB";
		else if (it.chunk.size > 0 && (meta->icc = malloc(it.chunk.size)) == NULL)
			meta->icc_note = "out of memory";
		else if (it.chunk.size > 0) {
			memcpy(meta->icc, it.chunk.bytes, it.chunk.size);
			meta->icc_len = it.chunk.size;
		}
		WebPDemuxReleaseChunkIterator(&it);
	}
	WebPDemuxDelete(dmx);
	return orient;
}

static int decode_animation(const uint8_t *buf, size_t len, const WebPBitstreamFeatures *f,
                            const img_decode_opts *o, img *out, char *err, size_t errlen)
{
	WebPData wd = { buf, len };
	WebPAnimDecoderOptions opts;
	WebPAnimDecoder *dec = NULL;
	WebPAnimInfo info;
	uint8_t *frame;
	int ts, y, rc = -1;

	if (!WebPAnimDecoderOptionsInit(&opts)) {
		snprintf(err, errlen, "corrupt WebP: library version mismatch");
		goto out;
	}
	/* WebPAnimDecoder keeps two RGBA canvases (the frame and the one
	 * before it), a frame may decode through a canvas-sized ARGB buffer
	 * (lossless), and we copy one out: four canvases in all */
	if (codec_reserve(o, 16 * (uint64_t)f->width * (uint64_t)f->height, err, errlen) != 0)
		goto out;
	opts.color_mode = MODE_RGBA;
	opts.use_threads = 0;           /* the caller already runs one decode per worker */
	dec = WebPAnimDecoderNew(&wd, &opts);
	if (dec == NULL || !WebPAnimDecoderGetInfo(dec, &info)) {
		snprintf(err, errlen, "corrupt WebP: bad animation");
		goto out;
	}
	if (info.canvas_width < 1 || info.canvas_height < 1 ||
	    info.canvas_width > WEBP_MAX_DIM || info.canvas_height > WEBP_MAX_DIM) {
		snprintf(err, errlen, "corrupt WebP: canvas %ux%u",
		         (unsigned)info.canvas_width, (unsigned)info.canvas_height);
		goto out;
	}
	if (!WebPAnimDecoderGetNext(dec, &frame, &ts)) {
		snprintf(err, errlen, "corrupt WebP: bad first frame");
		goto out;
	}
	if (img_alloc(out, (int)info.canvas_width, (int)info.canvas_height, 4) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (y = 0; y < out->h; y++)
		memcpy(out->px + (size_t)y * out->stride,
		       frame + (size_t)y * info.canvas_width * 4, (size_t)out->w * 4);
	rc = 0;
out:
	WebPAnimDecoderDelete(dec);     /* NULL-safe */
	return rc;
}

static int decode_still(const uint8_t *buf, size_t len, const WebPBitstreamFeatures *f,
                        int orient, const img_decode_opts *o, img *out,
                        char *err, size_t errlen)
{
	WebPDecoderConfig cfg;
	VP8StatusCode st;
	int w = f->width, h = f->height, k = 1, channels = f->has_alpha ? 4 : 3, rc = -1;

	if (!WebPInitDecoderConfig(&cfg)) {
		snprintf(err, errlen, "corrupt WebP: library version mismatch");
		goto out;
	}
	if (o->min_width > 0) {
		/* Largest power of two that keeps the displayed width >= min_width. */
		int shown = orient >= 5 ? h : w;
		while (k < 1024 && (shown + 2 * k - 1) / (2 * k) >= o->min_width)
			k *= 2;
	}
	if (k > 1) {
		w = (w + k - 1) / k;
		h = (h + k - 1) / k;
		cfg.options.use_scaling = 1;
		cfg.options.scaled_width = w;
		cfg.options.scaled_height = h;
	}
	/* our image; libwebp decodes a lossless picture through a full-size
	 * ARGB buffer and the alpha of a lossy one into a full-size plane,
	 * whatever the scale; the rest of its state is a few rows */
	if (codec_reserve(o, (uint64_t)w * (uint64_t)h * (uint64_t)channels
	                     + (uint64_t)f->width * (uint64_t)f->height * (f->format == 2 ? 4u : f->has_alpha ? 1u : 0u)
	                     + 64 * (uint64_t)f->width * 4, err, errlen) != 0)
		goto out;
	if (img_alloc(out, w, h, channels) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	cfg.output.colorspace = channels == 4 ? MODE_RGBA : MODE_RGB;
	cfg.output.is_external_memory = 1;
	cfg.output.u.RGBA.rgba = out->px;
	cfg.output.u.RGBA.stride = (int)out->stride;
	cfg.output.u.RGBA.size = out->stride * (size_t)out->h;
	st = WebPDecode(buf, len, &cfg);
	WebPFreeDecBuffer(&cfg.output);     /* external memory: frees nothing of ours */
	if (st != VP8_STATUS_OK) {
		status_error(st, err, errlen);
		goto out;
	}
	rc = 0;
out:
	return rc;
}

int webpio_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
                  img *out, img_meta *meta, char *err, size_t errlen)
{
	WebPBitstreamFeatures f;
	VP8StatusCode st;
	uint8_t *padded = NULL;
	int orient, rc = -1;

	memset(out, 0, sizeof *out);
	meta->orientation = 1;
	meta->width = meta->height = 0;
	meta->icc = NULL;
	meta->icc_len = 0;
	meta->icc_note = NULL;

	if (pad_missing(buf, len)) {
		if (!(padded = malloc(len + 1))) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		memcpy(padded, buf, len);
		padded[len++] = 0;
		buf = padded;
	}
	st = WebPGetFeatures(buf, len, &f);
	if (st != VP8_STATUS_OK) {
		status_error(st, err, errlen);
		goto out;
	}
	if (f.width < 1 || f.height < 1) {
		snprintf(err, errlen, "corrupt WebP: %dx%d", f.width, f.height);
		goto out;
	}
	if (o->max_pixels != 0 && (uint64_t)f.width * (uint64_t)f.height > o->max_pixels) {
		snprintf(err, errlen, "too large: %dx%d > max_pixels", f.width, f.height);
		goto out;
	}
	orient = webp_meta(buf, len, meta);
	if (f.has_animation)
		rc = decode_animation(buf, len, &f, o, out, err, errlen);
	else
		rc = decode_still(buf, len, &f, orient, o, out, err, errlen);
	if (rc == 0) {
		meta->orientation = orient;
		meta->width = f.width;          /* the canvas, for animations */
		meta->height = f.height;
	}
out:
	if (rc != 0) {
		if (strncmp(err, "corrupt WebP", 12) == 0 && riff_short(buf, len))
			snprintf(err, errlen, "truncated WebP");
		img_release(out);
		img_meta_release(meta);
		meta->icc_note = NULL;
	}
	free(padded);
	return rc;
}

/* gray -> RGB, gray+alpha -> RGBA: libwebp's simple API wants colour. */
static uint8_t *expand_gray(const img *im)
{
	int oc = im->channels == 1 ? 3 : 4, x, y;
	uint8_t *buf = malloc((size_t)im->w * (size_t)im->h * (size_t)oc);

	if (buf == NULL)
		return NULL;
	for (y = 0; y < im->h; y++) {
		const uint8_t *s = im->px + (size_t)y * im->stride;
		uint8_t *d = buf + (size_t)y * (size_t)im->w * (size_t)oc;
		for (x = 0; x < im->w; x++, s += im->channels, d += oc) {
			d[0] = d[1] = d[2] = s[0];
			if (oc == 4)
				d[3] = s[1];
		}
	}
	return buf;
}

int webpio_encode(const img *im, int quality, uint8_t **out, size_t *outlen,
                  char *err, size_t errlen)
{
	uint8_t *tmp = NULL, *enc = NULL;
	const uint8_t *src;
	size_t n = 0;
	int stride, alpha, rc = -1;
	float q = (float)(quality < 0 ? 0 : quality > 100 ? 100 : quality);

	*out = NULL;
	*outlen = 0;
	if (im->w > WEBP_MAX_DIM || im->h > WEBP_MAX_DIM) {
		snprintf(err, errlen, "too large for WebP: %dx%d", im->w, im->h);
		goto out;
	}
	alpha = im->channels == 2 || im->channels == 4;
	if (im->channels <= 2) {
		tmp = expand_gray(im);
		if (tmp == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		src = tmp;
		stride = im->w * (alpha ? 4 : 3);
	} else {
		src = im->px;
		stride = (int)im->stride;
	}

	n = alpha ? WebPEncodeRGBA(src, im->w, im->h, stride, q, &enc)
	          : WebPEncodeRGB(src, im->w, im->h, stride, q, &enc);
	if (n == 0) {
		snprintf(err, errlen, "cannot encode WebP");
		goto out;
	}
	*out = malloc(n);
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memcpy(*out, enc, n);
	*outlen = n;
	rc = 0;
out:
	WebPFree(enc);
	free(tmp);
	return rc;
}
