/*
 * img: format sniffing, the pixel buffer's life cycle, EXIF orientation,
 * and the dispatch from img_decode()/img_encode() to the codec modules.
 *
 * Sniffing looks at magic bytes only: a server's Content-Type and a URL's
 * extension are both routinely wrong, while the first bytes are what the
 * decoders will actually see.  Formats we recognise but do not read get a
 * name (img_sniff_other) so a failure says "unsupported format: GIF"
 * rather than the vaguer "not an image"; HTML and other text deliberately
 * get no name, leaving "not an image" for the caller to refine with the
 * HTTP Content-Type it knows.
 *
 * img_orient makes a new buffer rather than rotating in place: it runs on
 * the small resized image, so the copy is cheap, and one loop body then
 * serves all eight orientations for any channel count.
 */
#include "img.h"
#include "bigmem.h"
#include "codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What img_decode/img_encode use when the caller passes no options:
 * refuse anything beyond 100 MP, full size, middling qualities. */
#define DEFAULT_MAX_PIXELS 100000000u
#define DEFAULT_JPEG_QUALITY 85
#define DEFAULT_WEBP_QUALITY 80
#define DEFAULT_PNG_LEVEL 6

/* An SVG may open with a long comment or DOCTYPE before its <svg> tag. */
#define SVG_SCAN 4096

img_format img_sniff(const uint8_t *buf, size_t len)
{
	static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

	if (buf == NULL)
		return IMG_UNKNOWN;
	if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
		return IMG_JPEG;
	if (len >= 8 && memcmp(buf, png_sig, 8) == 0)
		return IMG_PNG;
	if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0)
		return IMG_WEBP;
	return IMG_UNKNOWN;
}

/* memmem is a GNU/BSD extension; this is all we need of it. */
static int has_bytes(const uint8_t *buf, size_t len, const char *needle)
{
	size_t n = strlen(needle), i;

	for (i = 0; n <= len && i <= len - n; i++)
		if (memcmp(buf + i, needle, n) == 0)
			return 1;
	return 0;
}

/* ISO-BMFF ("ftyp" box): AVIF and HEIF share the container and differ by
 * brand; "mif1"/"msf1" are generic, so the compatible brands decide. */
static const char *sniff_ftyp(const uint8_t *buf, size_t len)
{
	uint32_t boxlen;
	size_t end, i;

	if (len < 16 || memcmp(buf + 4, "ftyp", 4) != 0)
		return NULL;
	boxlen = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	end = boxlen < len ? boxlen : len;
	/* major brand at 8, minor version at 12, compatible brands from 16 */
	for (i = 8; i + 4 <= end; i += 4) {
		const uint8_t *b = buf + i;
		if (i == 12)
			continue;
		if (memcmp(b, "avif", 4) == 0 || memcmp(b, "avis", 4) == 0)
			return "AVIF";
	}
	for (i = 8; i + 4 <= end; i += 4) {
		const uint8_t *b = buf + i;
		if (i == 12)
			continue;
		if (memcmp(b, "heic", 4) == 0 || memcmp(b, "heix", 4) == 0 ||
		    memcmp(b, "hevc", 4) == 0 || memcmp(b, "hevx", 4) == 0 ||
		    memcmp(b, "heim", 4) == 0 || memcmp(b, "heis", 4) == 0 ||
		    memcmp(b, "mif1", 4) == 0 || memcmp(b, "msf1", 4) == 0)
			return "HEIF";
	}
	return NULL;        /* MP4, QuickTime, ...: a video, not an image */
}

/* Text that starts with '<': an image only if it is SVG. */
static const char *sniff_markup(const uint8_t *buf, size_t len)
{
	size_t i = 0;

	if (len >= 3 && buf[0] == 0xef && buf[1] == 0xbb && buf[2] == 0xbf)
		i = 3;      /* UTF-8 byte order mark */
	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
		i++;
	if (i >= len || buf[i] != '<')
		return NULL;
	if (has_bytes(buf + i, len - i < SVG_SCAN ? len - i : SVG_SCAN, "<svg"))
		return "SVG";
	return NULL;
}

const char *img_sniff_other(const uint8_t *buf, size_t len)
{
	static const uint8_t jxl_box[12] = { 0, 0, 0, 0x0c, 'J', 'X', 'L', ' ', 0x0d, 0x0a, 0x87, 0x0a };
	static const uint8_t jp2_box[12] = { 0, 0, 0, 0x0c, 'j', 'P', ' ', ' ', 0x0d, 0x0a, 0x87, 0x0a };
	const char *name;

	if (buf == NULL)
		return NULL;
	if (len >= 6 && (memcmp(buf, "GIF87a", 6) == 0 || memcmp(buf, "GIF89a", 6) == 0))
		return "GIF";
	if (len >= 4 && (memcmp(buf, "II*\0", 4) == 0 || memcmp(buf, "MM\0*", 4) == 0))
		return "TIFF";
	if (len >= 4 && (memcmp(buf, "II+\0", 4) == 0 || memcmp(buf, "MM\0+", 4) == 0))
		return "BigTIFF";
	/* "BM" alone is too weak; the 14-byte file header's reserved words are 0. */
	if (len >= 14 && buf[0] == 'B' && buf[1] == 'M' &&
	    buf[6] == 0 && buf[7] == 0 && buf[8] == 0 && buf[9] == 0)
		return "BMP";
	if (len >= 6 && buf[0] == 0 && buf[1] == 0 && (buf[2] == 1 || buf[2] == 2) &&
	    buf[3] == 0 && (buf[4] | buf[5]) != 0)
		return buf[2] == 1 ? "ICO" : "CUR";
	if ((len >= 2 && buf[0] == 0xff && buf[1] == 0x0a) ||
	    (len >= 12 && memcmp(buf, jxl_box, 12) == 0))
		return "JPEG XL";
	if ((len >= 12 && memcmp(buf, jp2_box, 12) == 0) ||
	    (len >= 4 && buf[0] == 0xff && buf[1] == 0x4f && buf[2] == 0xff && buf[3] == 0x51))
		return "JPEG 2000";
	if ((name = sniff_ftyp(buf, len)) != NULL)
		return name;
	if (len >= 4 && memcmp(buf, "8BPS", 4) == 0)
		return "PSD";
	if (len >= 4 && memcmp(buf, "qoif", 4) == 0)
		return "QOI";
	if (len >= 4 && buf[0] == 0x76 && buf[1] == 0x2f && buf[2] == 0x31 && buf[3] == 0x01)
		return "OpenEXR";
	if (len >= 5 && memcmp(buf, "%PDF-", 5) == 0)
		return "PDF";
	return sniff_markup(buf, len);
}

const char *img_format_name(img_format f)
{
	switch (f) {
	case IMG_JPEG: return "JPEG";
	case IMG_PNG:  return "PNG";
	case IMG_WEBP: return "WebP";
	case IMG_UNKNOWN: break;
	}
	return "unknown";
}

const char *img_format_ext(img_format f)
{
	switch (f) {
	case IMG_JPEG: return "jpg";
	case IMG_PNG:  return "png";
	case IMG_WEBP: return "webp";
	case IMG_UNKNOWN: break;
	}
	return "bin";
}

static int alloc_px(img *im, int w, int h, int channels, int zero)
{
	size_t stride;

	if (im == NULL)
		return -1;
	memset(im, 0, sizeof *im);
	if (w < 1 || h < 1 || channels < 1 || channels > 4)
		return -1;
	/* w and channels are small positive ints, so this product cannot wrap
	 * a size_t; stride * h can on 32-bit hosts.  PTRDIFF_MAX, not
	 * SIZE_MAX, is the real ceiling: larger objects break pointer
	 * subtraction, and malloc refuses them anyway. */
	stride = (size_t)w * (size_t)channels;
	if ((size_t)h > (size_t)PTRDIFF_MAX / stride)
		return -1;
	im->px = bigmem_alloc((size_t)h * stride, zero);
	if (im->px == NULL)
		return -1;
	im->w = w;
	im->h = h;
	im->channels = channels;
	im->stride = stride;
	return 0;
}

int img_alloc(img *im, int w, int h, int channels)
{
	return alloc_px(im, w, h, channels, 1);
}

int img_alloc_rows(img *im, int w, int h, int channels)
{
	return alloc_px(im, w, h, channels, 0);
}

void img_release(img *im)
{
	if (im == NULL)
		return;
	bigmem_free(im->px);
	memset(im, 0, sizeof *im);
}

void img_meta_release(img_meta *meta)
{
	if (meta == NULL)
		return;
	free(meta->icc);
	meta->icc = NULL;
	meta->icc_len = 0;
}

int codec_reserve(const img_decode_opts *o, uint64_t bytes, char *err, size_t errlen)
{
	if (o->reserve && o->reserve(o->reserve_arg, bytes) != 0) {
		snprintf(err, errlen, "deferred");
		return -1;
	}
	return 0;
}

int img_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
               img *out, img_meta *meta, char *err, size_t errlen)
{
	img_decode_opts def = { .max_pixels = DEFAULT_MAX_PIXELS };
	img_meta meta_dummy;
	int rc = -1;
	img_format f;
	const char *other;

	if (out != NULL)
		memset(out, 0, sizeof *out);
	if (meta == NULL)
		meta = &meta_dummy;
	meta->orientation = 1;
	meta->width = meta->height = 0;
	meta->shrink = 1;
	meta->icc = NULL;
	meta->icc_len = 0;
	meta->icc_note = NULL;
	if (o == NULL)
		o = &def;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL) {
		snprintf(err, errlen, "bad arguments");
		goto out;
	}
	if (buf == NULL || len == 0) {
		snprintf(err, errlen, "empty file");
		goto out;
	}

	f = img_sniff(buf, len);
	switch (f) {
	case IMG_JPEG:
		rc = jpegio_decode(buf, len, o, out, meta, err, errlen);
		break;
	case IMG_PNG:
		rc = pngio_decode(buf, len, o, out, meta, err, errlen);
		break;
	case IMG_WEBP:
		rc = webpio_decode(buf, len, o, out, meta, err, errlen);
		break;
	case IMG_UNKNOWN:
		other = img_sniff_other(buf, len);
		if (other != NULL)
			snprintf(err, errlen, "unsupported format: %s", other);
		else
			snprintf(err, errlen, "not an image");
		break;
	}
out:
	if (rc != 0) {
		img_release(out);
		img_meta_release(meta);
		meta->orientation = 1;
		meta->width = meta->height = 0;
		meta->shrink = 1;
		meta->icc_note = NULL;
	}
	return rc;
}

int img_orient(img *im, int orientation)
{
	img dst = { 0 };
	int x, y, sx = 0, sy = 0, dw, dh, w, h, rc = -1;
	size_t ch;

	if (im == NULL || im->px == NULL)
		return -1;
	if (orientation < 2 || orientation > 8)
		return 0;       /* 1 or garbage: leave the pixels as stored */

	w = im->w;
	h = im->h;
	ch = (size_t)im->channels;
	dw = orientation >= 5 ? h : w;
	dh = orientation >= 5 ? w : h;
	if (img_alloc(&dst, dw, dh, im->channels) != 0)
		goto out;

	for (y = 0; y < dh; y++) {
		uint8_t *d = dst.px + (size_t)y * dst.stride;
		for (x = 0; x < dw; x++, d += ch) {
			/* Where the displayed pixel (x, y) lives in the stored image. */
			switch (orientation) {
			case 2: sx = w - 1 - x; sy = y;         break;  /* mirror left-right */
			case 3: sx = w - 1 - x; sy = h - 1 - y; break;  /* rotate 180 */
			case 4: sx = x;         sy = h - 1 - y; break;  /* mirror top-bottom */
			case 5: sx = y;         sy = x;         break;  /* transpose */
			case 6: sx = y;         sy = h - 1 - x; break;  /* rotate 90 clockwise */
			case 7: sx = w - 1 - y; sy = h - 1 - x; break;  /* transverse */
			case 8: sx = w - 1 - y; sy = x;         break;  /* rotate 90 counter-clockwise */
			}
			memcpy(d, im->px + (size_t)sy * im->stride + (size_t)sx * ch, ch);
		}
	}

	img_release(im);
	*im = dst;
	rc = 0;
out:
	return rc;
}

int img_encode(const img *im, img_format fmt, const img_encode_opts *o,
               uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
	img_encode_opts def = { DEFAULT_JPEG_QUALITY, DEFAULT_WEBP_QUALITY, DEFAULT_PNG_LEVEL };
	int rc = -1;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || outlen == NULL) {
		snprintf(err, errlen, "bad arguments");
		goto out;
	}
	*out = NULL;
	*outlen = 0;
	if (o == NULL)
		o = &def;
	if (im == NULL || im->px == NULL || im->w < 1 || im->h < 1 ||
	    im->channels < 1 || im->channels > 4 ||
	    im->stride < (size_t)im->w * (size_t)im->channels) {
		snprintf(err, errlen, "bad image");
		goto out;
	}

	switch (fmt) {
	case IMG_JPEG:
		rc = jpegio_encode(im, o->jpeg_quality, out, outlen, err, errlen);
		break;
	case IMG_PNG:
		rc = pngio_encode(im, o->png_level, out, outlen, err, errlen);
		break;
	case IMG_WEBP:
		rc = webpio_encode(im, o->webp_quality, out, outlen, err, errlen);
		break;
	case IMG_UNKNOWN:
		snprintf(err, errlen, "cannot encode to an unknown format");
		break;
	}
out:
	return rc;
}
