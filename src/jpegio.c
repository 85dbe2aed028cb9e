/*
 * jpegio: JPEG decode and encode through libjpeg-turbo's jpeglib.h API.
 *
 * libjpeg reports errors by calling error_exit, which must not return, so
 * each decode/encode owns an error manager that longjmps back into that
 * one call.  To keep setjmp honest (C11 7.13.2.1: locals changed after
 * setjmp are indeterminate after longjmp), setjmp lives in a tiny
 * "guarded" function with no locals of its own, the work in a "run"
 * function it calls, and every resource in a state struct owned by the
 * public function's frame, which releases it all on its single exit path.
 * Hence no volatile anywhere: nothing a longjmp could clobber is read.
 *
 * Decoding checks the declared size against max_pixels straight after the
 * header, before libjpeg allocates anything large, then uses libjpeg's DCT
 * scaling (1/2, 1/4, 1/8) to shrink on load: the cheapest possible resize.
 * The scale is picked so that the luma keeps min_width samples across the
 * displayed width, and every other component at least half that, across
 * and down (jdec_scale): chroma subsampled 2x, as in 4:2:0 and 4:2:2,
 * always does (libjpeg even decodes 4:2:0 chroma with a 2x2 IDCT at 1/8),
 * but 4:1:1 or 1x4 chroma decoded at the luma's scale kept a quarter, less
 * than the thumbnail's own width (stripes of colour came out violet), and
 * there the decode is larger.
 * A truncated file is an error, not a grey-filled picture: libjpeg only
 * warns when its source runs dry, then feeds itself a made-up EOI and
 * fills what is missing with grey.  Running dry is not enough to refuse a
 * file, though: many real files (cameras, scanners, uploads cut by a
 * byte or two) lack only their EOI marker, and every pixel is there.  So
 * the warning is noted and the verdict comes after the decode
 * (jdec_complete): a Huffman decoder that ran out of bits in mid-scan
 * says so with a second warning (JWRN_HIT_MARKER), and a progressive
 * file must have had every coefficient its output reads refined to the
 * last bit (coef_bits 0).  Neither needs the source to run dry: a file
 * cut short and closed with an EOI (or any marker in mid-scan) leaves the
 * same grey gap, so both are checked for every file.  Arithmetic-coded
 * and multi-scan sequential files leave no such trace (hitting a marker
 * is legal in arithmetic coding), so for them running dry stays an error,
 * and a cut one closed with an EOI cannot be told from a whole one.
 * CMYK/YCCK are converted to RGB here, because nothing downstream knows
 * about four-channel ink: through the file's CMYK ICC profile with lcms2
 * when it has a usable one (icc.c, a transform cached per thread; the
 * pixels are then sRGB and the profile is not handed on), otherwise
 * naively.  Any other profile (APP2 "ICC_PROFILE" markers, put together
 * by jdec_meta_scan from the file's own bytes) goes up in meta->icc.
 *
 * libjpeg-turbo's SIMD upsampling and colour conversion work in whole
 * vectors and read the padding past the end of its sample rows, which it
 * never initialises; with DCT scaling to an odd width (100x68 4:4:4 at 1/4
 * gives 25 px) that padding reached the last column of our output
 * (valgrind: one sample per row undefined with SIMD, none with
 * JSIMD_FORCENONE=1).  So the decoder's alloc_sarray is wrapped to hand out
 * zeroed rows, padding included: a few row buffers per decode, and no byte
 * of an earlier heap user can ever reach a thumbnail.
 *
 * AC scans skipped.  At 1/8 scale libjpeg's IDCT reads nothing but the DC
 * coefficient of a component whose scaled block size is 1 (luma always;
 * chroma too unless it is subsampled vertically, which libjpeg makes up
 * for with a 2x2 IDCT).  In a progressive file the AC coefficients of such
 * a component come in scans of their own, which then cannot change one
 * output pixel, yet they are most of its bytes and of its decode time (4.2
 * of the 4.5 MB of one 5120x2880 wallpaper; bench/NOTES.md).  So the file
 * is decoded from a copy without them (jpegio_dc_scans), with block
 * smoothing off, and the pixels are the full decode's, bit for bit
 * (test_jpeg_dc compares them).  A stream that does not parse cleanly to
 * its EOI is decoded as it is, so a truncated or corrupt file fails
 * exactly as before.
 *
 * Coefficient arrays.  A progressive (or other multi-scan) file is decoded
 * into an array of every DCT coefficient of the picture, 128 bytes per 8x8
 * block per component, whatever the output scale: 88 MB for a 5120x2880
 * 4:4:4 photo.  libjpeg would malloc it (mapped and faulted in 4 KB at a
 * time) and then zero it; its memory manager's three virtual-array methods
 * for coefficient blocks are replaced here by ones that keep the array in
 * one bigmem block (huge pages, already zero): 1.28 s -> 0.6 s for the
 * benchmark corpus (bench/NOTES.md).  libjpeg's own arrays could live on
 * disk, which ours never do; the whole array is what it would hold in
 * memory anyway, and resize.decode_memory already accounts for it.
 *
 * DC-only arrays.  A component decoded from the DC-scans copy never has
 * more than coefficient 0 of a block written (libjpeg refuses a DC scan
 * with Se > 0 and an AC scan of more than one component before decoding
 * it, and the copy holds no AC scan of such a component) or read (the 1x1
 * IDCT; block smoothing is off).  Its array is therefore laid out 64 rows
 * deep in the space of one: row r of a group of 64 starts 2 * (r % 64)
 * bytes into the group's block row, so the coefficient 0s of the 64 rows
 * sit side by side in each 128-byte block and nothing else is ever
 * touched.  1.4 MB instead of 88 MB for a 5120x2880 4:4:4 photo: the
 * largest block of the benchmark corpus, and faulting in and zeroing such
 * arrays was a quarter of its CPU time (bench/NOTES.md).  Even a write to
 * another coefficient could not leave the block (one block of padding at
 * the end): at worst wrong pixels, never memory out of bounds.
 *
 * Encoding writes into our own growable buffer rather than jpeg_mem_dest:
 * jpeg_mem_dest keeps its grown buffer private until term_destination, so
 * a failure mid-encode would leak it.
 */
#include "codec.h"
#include "bigmem.h"
#include "exif.h"
#include "icc.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* Progressive "scan bombs" (thousands of tiny scans, each a full pass
 * over the coefficients) cost CPU out of all proportion to their size;
 * libjpeg-turbo's own tools guard with a scan limit, and real encoders
 * emit a few dozen scans at most. */
#define JPEG_MAX_SCANS 500

#define JPEG_OUT_CHUNK 65536

struct jerr {
	struct jpeg_error_mgr pub;      /* first, so cinfo->err can be cast back */
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
	int code;                       /* msg_code of the fatal error */
	int ran_dry;                    /* the source ended before an EOI */
	int hit_marker;                 /* entropy data ended mid-scan */
	int too_many_scans;
};

static void jerr_exit(j_common_ptr cinfo)
{
	struct jerr *e = (struct jerr *)cinfo->err;

	e->code = cinfo->err->msg_code;
	(*cinfo->err->format_message)(cinfo, e->msg);
	longjmp(e->jb, 1);
}

static void jerr_emit(j_common_ptr cinfo, int level)
{
	struct jerr *e = (struct jerr *)cinfo->err;

	/* level < 0 is a warning.  The two that can mean invented pixels are
	 * noted for jdec_complete.  Other warnings (extraneous bytes, odd
	 * markers) are common in camera files and harmless, so they are
	 * ignored, and trace messages are never wanted.  JWRN_HIT_MARKER comes
	 * from the Huffman decoders alone (an arithmetic decoder that meets a
	 * marker is within the standard and says nothing). */
	if (level >= 0)
		return;
	if (cinfo->err->msg_code == JWRN_JPEG_EOF)
		e->ran_dry = 1;
	else if (cinfo->err->msg_code == JWRN_HIT_MARKER)
		e->hit_marker = 1;
	cinfo->err->num_warnings++;
	/* already known to be truncated: stop decoding grey */
	if (cinfo->is_decompressor &&
	    (e->hit_marker || (e->ran_dry && ((j_decompress_ptr)cinfo)->arith_code)))
		longjmp(e->jb, 1);
}

static void jerr_output(j_common_ptr cinfo)
{
	(void)cinfo;    /* never print to stderr from a library routine */
}

static void jerr_init(struct jerr *e)
{
	jpeg_std_error(&e->pub);
	e->pub.error_exit = jerr_exit;
	e->pub.emit_message = jerr_emit;
	e->pub.output_message = jerr_output;
}

static void jerr_describe(const struct jerr *e, const char *verb, char *err, size_t errlen)
{
	if (e->ran_dry || e->hit_marker)    /* whatever libjpeg made of the early end */
		snprintf(err, errlen, "truncated JPEG");
	else if (e->too_many_scans)
		snprintf(err, errlen, "corrupt JPEG: more than %d scans", JPEG_MAX_SCANS);
	else if (e->code == JERR_IMAGE_TOO_BIG)     /* libjpeg's own cap, met in the header */
		snprintf(err, errlen, "too large: more than %d pixels a side", e->pub.msg_parm.i[0]);
	else if (e->code == JERR_BAD_PRECISION)
		snprintf(err, errlen, "unsupported JPEG: %d-bit precision", e->pub.msg_parm.i[0]);
	else if (e->code == JERR_SOF_UNSUPPORTED)   /* a valid file of a process libjpeg lacks */
		snprintf(err, errlen, "unsupported JPEG: %s (SOF%d)",
		         e->pub.msg_parm.i[0] == 0xc3 || e->pub.msg_parm.i[0] == 0xcb ? "lossless"
		         : e->pub.msg_parm.i[0] == 0xc8 ? "JPEG extension" : "hierarchical",
		         e->pub.msg_parm.i[0] - 0xc0);
	else if (e->code == JERR_OUT_OF_MEMORY)
		snprintf(err, errlen, "out of memory");
	else
		snprintf(err, errlen, "%s JPEG: %s", verb, e->msg);
}

/* ---- decode ---- */

/* Row padding we zero: a multiple of libjpeg-turbo's own (32 bytes). */
#define JPEG_ROW_ALIGN 64

typedef JSAMPARRAY (*alloc_sarray_fn)(j_common_ptr, int, JDIMENSION, JDIMENSION);

/* A whole-image coefficient array ("Coefficient arrays" above),
 * handed to libjpeg as its opaque jvirt_barray_ptr. */
struct coefarr {
	JBLOCKROW mem;                  /* bigmem block, zeroed */
	JBLOCKARRAY rows;               /* row pointers into mem (libjpeg's image pool) */
	JDIMENSION nrows, blocksperrow, maxaccess;
};

/* Rows of a DC-only array that share one row's blocks (file comment). */
#define DC_ROWS ((JDIMENSION)(sizeof(JBLOCK) / sizeof(JCOEF)))

/* Block rows of memory that rows block rows of a component take. */
static JDIMENSION coef_depth(JDIMENSION rows, int dc_only)
{
	return dc_only ? (rows + DC_ROWS - 1) / DC_ROWS : rows;
}

struct jdec {
	struct jpeg_decompress_struct cinfo;    /* first, so a j_common_ptr can be cast back */
	struct jerr je;
	struct jpeg_progress_mgr progress;
	alloc_sarray_fn alloc_sarray;           /* libjpeg's, wrapped by jdec_alloc_sarray */
	void (*realize)(j_common_ptr);          /* libjpeg's, called by jdec_realize */
	int created;
	JSAMPLE *row;                   /* scratch row for CMYK */
	const icc_xform *cmyk_xf;       /* CMYK -> sRGB through the file's profile, or NULL: naive */
	uint8_t *dc;                    /* the DC-scans copy being decoded, if any */
	uint8_t dc_only[MAX_COMPONENTS];        /* by component index, with dc */
	struct coefarr arr[MAX_COMPONENTS];     /* one per component at most */
	int narr;
};

/* libjpeg's alloc_sarray with the rows widened to JPEG_ROW_ALIGN and
 * zeroed; see the file comment. */
static JSAMPARRAY jdec_alloc_sarray(j_common_ptr cinfo, int pool_id,
                                    JDIMENSION samplesperrow, JDIMENSION numrows)
{
	struct jdec *d = (struct jdec *)cinfo;
	JDIMENSION w, r;
	JSAMPARRAY a;

	if (samplesperrow > (JDIMENSION)-1 - JPEG_ROW_ALIGN)
		ERREXIT(cinfo, JERR_WIDTH_OVERFLOW);
	w = (samplesperrow + JPEG_ROW_ALIGN - 1) / JPEG_ROW_ALIGN * JPEG_ROW_ALIGN;
	a = d->alloc_sarray(cinfo, pool_id, w, numrows);
	for (r = 0; r < numrows; r++)
		memset(a[r], 0, (size_t)w * sizeof(JSAMPLE));
	return a;
}

static jvirt_barray_ptr jdec_request_barray(j_common_ptr cinfo, int pool_id, boolean pre_zero,
                                            JDIMENSION blocksperrow, JDIMENSION numrows,
                                            JDIMENSION maxaccess)
{
	struct jdec *d = (struct jdec *)cinfo;
	struct coefarr *a;

	(void)pre_zero;         /* every array starts zeroed */
	if (pool_id != JPOOL_IMAGE)
		ERREXIT1(cinfo, JERR_BAD_POOL_ID, pool_id);
	if (d->narr >= MAX_COMPONENTS)
		ERREXIT(cinfo, JERR_VIRTUAL_BUG);
	a = &d->arr[d->narr++];
	memset(a, 0, sizeof *a);
	a->nrows = numrows;
	a->blocksperrow = blocksperrow;
	a->maxaccess = maxaccess;
	return (jvirt_barray_ptr)(void *)a;
}

static void jdec_realize(j_common_ptr cinfo)
{
	struct jdec *d = (struct jdec *)cinfo;

	d->realize(cinfo);      /* whatever libjpeg itself was asked for */
	for (int i = 0; i < d->narr; i++) {
		struct coefarr *a = &d->arr[i];
		/* libjpeg asks for one array per component, in their order */
		int dc_only = d->dc_only[i] && i < d->cinfo.num_components
		              && a->nrows >= d->cinfo.comp_info[i].height_in_blocks
		              && a->blocksperrow >= d->cinfo.comp_info[i].width_in_blocks;
		JDIMENSION deep = coef_depth(a->nrows, dc_only);
		size_t bytes;

		if (a->mem)
			continue;
		if (a->blocksperrow == 0 || a->nrows == 0
		    || (uint64_t)a->nrows * a->blocksperrow > SIZE_MAX / 2 / sizeof(JBLOCK))
			ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 11);
		a->rows = (JBLOCKARRAY)(*cinfo->mem->alloc_small)(cinfo, JPOOL_IMAGE,
		                                                  a->nrows * sizeof(JBLOCKROW));
		bytes = ((size_t)deep * a->blocksperrow + (dc_only ? 1 : 0)) * sizeof(JBLOCK);
		if (!(a->mem = bigmem_alloc(bytes, 1)))
			ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 11);
		for (JDIMENSION r = 0; r < a->nrows; r++)
			if (dc_only)
				a->rows[r] = (JBLOCKROW)(void *)((uint8_t *)a->mem
				             + (size_t)(r / DC_ROWS) * a->blocksperrow * sizeof(JBLOCK)
				             + (size_t)(r % DC_ROWS) * sizeof(JCOEF));
			else
				a->rows[r] = a->mem + (size_t)r * a->blocksperrow;
	}
}

static JBLOCKARRAY jdec_access_barray(j_common_ptr cinfo, jvirt_barray_ptr ptr,
                                      JDIMENSION start_row, JDIMENSION num_rows,
                                      boolean writable)
{
	struct coefarr *a = (struct coefarr *)(void *)ptr;

	(void)writable;
	if (!a->mem || start_row > a->nrows || num_rows > a->nrows - start_row
	    || num_rows > a->maxaccess)
		ERREXIT(cinfo, JERR_BAD_VIRTUAL_ACCESS);
	return a->rows + start_row;
}

static void jdec_progress(j_common_ptr cinfo)
{
	struct jerr *e = (struct jerr *)cinfo->err;

	if (cinfo->is_decompressor &&
	    ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
		e->too_many_scans = 1;
		longjmp(e->jb, 1);
	}
}

/* The marker of the segment at buf[*i], fill 0xFFs skipped (*i moves to
 * the marker's own 0xFF), with in *seg its length field, 0 for a marker
 * without one (SOI, EOI, RSTn, TEM); -1 when no marker is there or its
 * segment runs past the end. */
static int jseg_at(const uint8_t *buf, size_t len, size_t *i, size_t *seg)
{
	uint8_t m;

	while (*i + 1 < len && buf[*i] == 0xFF && buf[*i + 1] == 0xFF)
		(*i)++;
	if (*i + 1 >= len || buf[*i] != 0xFF || (m = buf[*i + 1]) == 0x00)
		return -1;
	*seg = 0;
	if (m == 0xD8 || m == 0xD9 || m == 0x01 || (m >= 0xD0 && m <= 0xD7))
		return m;
	if (*i + 4 > len || (*seg = (size_t)buf[*i + 2] << 8 | buf[*i + 3]) < 2 || *i + 2 + *seg > len)
		return -1;
	return m;
}

/*
 * Metadata, read from the file's own bytes rather than from markers saved
 * by libjpeg: jpeg_save_markers keeps a copy of every APP1 and APP2 up to
 * the first scan and between scans, so a file of 46 MB of APP2 markers took
 * 103 MB to decode; here the EXIF is parsed in place and only the ICC
 * profile (at most IMG_ICC_MAX) is copied.  The walk stops at the first
 * SOS, where EXIF and ICC segments belong, and at anything malformed
 * (libjpeg judges the file).  The ICC rules are jpeg_read_icc_profile's:
 * "ICC_PROFILE\0", a sequence number 1..count, the same count in every
 * marker, each number once.
 */
#define ICC_HEAD 14
#define ICC_MAX_MARKERS 255

struct jmeta {
	const uint8_t *exif;            /* the first "Exif\0\0" APP1 */
	size_t exif_len;
	const uint8_t *icc[ICC_MAX_MARKERS + 1];        /* by sequence number */
	size_t icc_len[ICC_MAX_MARKERS + 1];
	int icc_count, icc_bad;
	size_t icc_total;
};

static void jdec_meta_scan(const uint8_t *buf, size_t len, struct jmeta *jm)
{
	size_t i = 2, seg;
	int m;

	memset(jm, 0, sizeof *jm);
	while ((m = jseg_at(buf, len, &i, &seg)) >= 0 && m != 0xDA && m != 0xD9 && m != 0xD8) {
		if (seg == 0) {                 /* RSTn, TEM: no length */
			i += 2;
			continue;
		}
		const uint8_t *p = buf + i + 4;
		size_t n = seg - 2;
		if (m == 0xE1 && !jm->exif && n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
			jm->exif = p;
			jm->exif_len = n;
		} else if (m == 0xE2 && n >= ICC_HEAD && memcmp(p, "ICC_PROFILE", 12) == 0) {
			int seq = p[12], count = p[13];
			if (jm->icc_count == 0)
				jm->icc_count = count;
			if (count == 0 || count != jm->icc_count || seq < 1 || seq > count || jm->icc[seq])
				jm->icc_bad = 1;
			else {
				jm->icc[seq] = p + ICC_HEAD;
				jm->icc_len[seq] = n - ICC_HEAD;
			}
			jm->icc_total += n - ICC_HEAD;
		}
		i += 2 + seg;
	}
}

/* The ICC profile into meta->icc, or a note why not. */
static void jdec_icc(const struct jmeta *jm, img_meta *meta)
{
	size_t o = 0;

	if (jm->icc_count == 0 && !jm->icc_bad)
		return;
	if (jm->icc_total > IMG_ICC_MAX) {
		meta->icc_note = "ICC profile larger than 4 MB";
		return;
	}
	if (jm->icc_bad || jm->icc_total == 0)
		goto bad;
	for (int k = 1; k <= jm->icc_count; k++)
		if (!jm->icc[k])
			goto bad;
	if (!(meta->icc = malloc(jm->icc_total))) {
		meta->icc_note = "out of memory";
		return;
	}
	for (int k = 1; k <= jm->icc_count; k++) {
		memcpy(meta->icc + o, jm->icc[k], jm->icc_len[k]);
		o += jm->icc_len[k];
	}
	meta->icc_len = o;
	return;
bad:
	meta->icc_note = "malformed ICC profile markers";
}

/* ink values 0..255 -> RGB; see the file comment for why Adobe differs. */
static void cmyk_to_rgb(const JSAMPLE *in, uint8_t *out, JDIMENSION w, int adobe)
{
	JDIMENSION x;

	for (x = 0; x < w; x++, in += 4, out += 3) {
		unsigned c = in[0], m = in[1], y = in[2], k = in[3];
		if (!adobe) {
			c = 255 - c;
			m = 255 - m;
			y = 255 - y;
			k = 255 - k;
		}
		/* Adobe files store inverted ink, so c*k/255 is (1-C)(1-K). */
		out[0] = (uint8_t)((c * k + 127) / 255);
		out[1] = (uint8_t)((m * k + 127) / 255);
		out[2] = (uint8_t)((y * k + 127) / 255);
	}
}

/* The end of the entropy-coded data that starts at i: the first marker
 * (0xFF, then neither a stuffed 0x00 nor RSTn, fill 0xFFs included in the
 * data), or 0 when the stream ends first. */
static size_t scan_end(const uint8_t *buf, size_t len, size_t i)
{
	for (;;) {
		const uint8_t *ff = memchr(buf + i, 0xFF, len - i);
		if (!ff || (size_t)(ff - buf) + 1 >= len)
			return 0;
		i = (size_t)(ff - buf);
		uint8_t m = buf[i + 1];
		if (m != 0x00 && m != 0xFF && (m < 0xD0 || m > 0xD7))
			return i;
		i += m == 0xFF ? 1 : 2;
	}
}

uint8_t *jpegio_dc_scans(const uint8_t *buf, size_t len, const uint8_t need_ac[256],
                         size_t *outlen)
{
	uint8_t *out = NULL;
	size_t i = 2, o = 2;
	int dc = 0, ac = 0;

	if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8 || !(out = malloc(len)))
		goto fail;
	memcpy(out, buf, 2);
	for (;;) {
		size_t seg, end;
		int m = jseg_at(buf, len, &i, &seg);

		if (m < 0)
			goto fail;
		if (m == 0xD9) {                /* EOI: done */
			if (!dc || !ac)
				goto fail;      /* nothing to gain */
			out[o++] = 0xFF;
			out[o++] = 0xD9;
			*outlen = o;
			return out;
		}
		if (seg == 0)
			goto fail;              /* no length: not where a segment belongs */
		end = i + 2 + seg;
		if (m == 0xDA) {                /* SOS: header, then its entropy-coded data */
			size_t ns = buf[i + 4];
			if (seg != 6 + 2 * ns || (end = scan_end(buf, len, end)) == 0)
				goto fail;
			int drop = buf[i + 5 + 2 * ns] != 0;    /* Ss > 0: an AC scan */
			for (size_t c = 0; c < ns; c++)
				if (need_ac[buf[i + 5 + 2 * c]])
					drop = 0;
			if (drop) {
				ac++;
				i = end;
				continue;
			}
			dc++;
		}
		memcpy(out + o, buf + i, end - i);
		o += end - i;
		i = end;
	}
fail:
	free(out);
	return NULL;
}

/*
 * The scale denominator: the largest of 8, 4, 2 that leaves the luma
 * min_width samples across the displayed width (orient 5..8 swap the axes)
 * and every component half that across and half the matching height down
 * (see the file comment); 1 when none does.  Leaves ci at that scale.
 */
static unsigned jdec_scale(j_decompress_ptr ci, int orient, int min_width)
{
	int swap = orient >= 5;
	uint64_t shown = swap ? ci->image_height : ci->image_width;
	uint64_t other = swap ? ci->image_width : ci->image_height;
	uint64_t want = (uint64_t)min_width;     /* > 0 */
	unsigned denom;

	for (denom = 8; denom > 1; denom /= 2) {
		int ok = (shown + denom - 1) / denom >= want;
		ci->scale_num = 1;
		ci->scale_denom = denom;
		jpeg_calc_output_dimensions(ci);
		for (int i = 0; ok && i < ci->num_components; i++) {
			jpeg_component_info *c = &ci->comp_info[i];
			uint64_t across = swap ? c->downsampled_height : c->downsampled_width;
			uint64_t down = swap ? c->downsampled_width : c->downsampled_height;
			ok = 2 * across >= want && 2 * down * shown >= want * other;
		}
		if (ok)
			break;
	}
	ci->scale_num = 1;
	ci->scale_denom = denom;
	return denom;
}

/* After jpeg_read_header and the scale: 1 when some component's output
 * comes from its DC coefficients alone (see the file comment); need_ac
 * then marks, by component id, those that still need their AC scans. */
static int jdec_ac_droppable(j_decompress_ptr ci, uint8_t need_ac[256])
{
	int any = 0;

	if (!ci->progressive_mode || ci->scale_denom != 8 || ci->scale_num != 1)
		return 0;
	jpeg_calc_output_dimensions(ci);
	memset(need_ac, 0, 256);
	for (int i = 0; i < ci->num_components; i++) {
		jpeg_component_info *c = &ci->comp_info[i];
		if (c->component_id < 0 || c->component_id > 255)
			return 0;
		if (c->DCT_scaled_size == 1)
			any = 1;
		else
			need_ac[c->component_id] = 1;
	}
	return any;
}

/*
 * Bytes a decode will hold: the output image, and for a progressive (or
 * otherwise multi-scan) file every DCT coefficient of the full-size
 * picture, 128 bytes per 8x8 block per component, whatever the output
 * scale (a 5120x2880 progressive 4:4:4 photo needs 88 MB of them), but a
 * 64th of that for a DC-only component (see the file comment).
 */
static uint64_t jdec_footprint(struct jdec *d, int channels)
{
	j_decompress_ptr ci = &d->cinfo;
	uint64_t n;

	jpeg_calc_output_dimensions(ci);
	n = (uint64_t)ci->output_width * ci->output_height * (uint64_t)channels;
	if (jpeg_has_multiple_scans(ci))
		for (int i = 0; i < ci->num_components; i++)
			n += (uint64_t)ci->comp_info[i].width_in_blocks
			     * coef_depth(ci->comp_info[i].height_in_blocks, d->dc_only[i]) * sizeof(JBLOCK);
	return n;
}

/*
 * Were all the pixels in the file?  A progressive file must have refined
 * to its last bit every coefficient the output reads: only the DC of a
 * component whose IDCT is 1x1 (the DC-scans copy has no more, on purpose),
 * all of them otherwise, whether or not its source ran dry, since an early
 * EOI leaves the same gap.  A source that ran dry may only have lacked the
 * EOI marker (see the file comment), which nothing but a Huffman decoder's
 * JWRN_HIT_MARKER or those coefficients can vouch for.  Asked before
 * jpeg_finish_decompress, which frees coef_bits; a JWRN_HIT_MARKER is
 * checked after it.
 */
static int jdec_complete(j_decompress_ptr ci, int ran_dry)
{
	if (ci->progressive_mode) {
		if (ci->coef_bits == NULL)
			return 0;
		for (int c = 0; c < ci->num_components; c++) {
			int need = ci->comp_info[c].DCT_scaled_size == 1 ? 1 : DCTSIZE2;
			for (int k = 0; k < need; k++)
				if (ci->coef_bits[c][k] != 0)
					return 0;
		}
	}
	if (!ran_dry)
		return 1;
	return !ci->arith_code && (ci->progressive_mode || !jpeg_has_multiple_scans(ci));
}

static int jdec_run(struct jdec *d, const uint8_t *buf, size_t len,
                    const img_decode_opts *o, img *out, img_meta *meta,
                    char *err, size_t errlen)
{
	j_decompress_ptr ci = &d->cinfo;
	int orient, channels, cmyk = 0, complete;
	unsigned denom = 1;
	struct jmeta jm;

	jpeg_create_decompress(ci);
	d->created = 1;
	d->alloc_sarray = ci->mem->alloc_sarray;
	ci->mem->alloc_sarray = jdec_alloc_sarray;
	d->realize = ci->mem->realize_virt_arrays;
	ci->mem->request_virt_barray = jdec_request_barray;
	ci->mem->realize_virt_arrays = jdec_realize;
	ci->mem->access_virt_barray = jdec_access_barray;
	d->progress.progress_monitor = jdec_progress;
	ci->progress = &d->progress;
	jpeg_mem_src(ci, buf, (unsigned long)len);
	jpeg_read_header(ci, TRUE);

	if (o->max_pixels != 0 &&
	    (uint64_t)ci->image_width * ci->image_height > o->max_pixels) {
		snprintf(err, errlen, "too large: %ux%u > max_pixels",
		         (unsigned)ci->image_width, (unsigned)ci->image_height);
		return -1;
	}
	jdec_meta_scan(buf, len, &jm);
	orient = jm.exif ? exif_orientation(jm.exif, jm.exif_len) : 1;
	meta->width = (int)ci->image_width;     /* JPEG caps both at 65535 */
	meta->height = (int)ci->image_height;
	jdec_icc(&jm, meta);

	switch (ci->jpeg_color_space) {
	case JCS_GRAYSCALE:
		ci->out_color_space = JCS_GRAYSCALE;
		channels = 1;
		break;
	case JCS_CMYK:
	case JCS_YCCK:
		/* libjpeg turns YCCK into CMYK itself; the rest is ours. */
		ci->out_color_space = JCS_CMYK;
		channels = 3;
		cmyk = 1;
		if (meta->icc != NULL) {
			/* libjpeg hands Adobe files' ink over as stored: inverted */
			const char *why;
			d->cmyk_xf = icc_lookup(meta->icc, meta->icc_len,
			                        ci->saw_Adobe_marker ? ICC_CMYK_INVERTED : ICC_CMYK, &why);
			if (d->cmyk_xf == NULL)
				meta->icc_note = why;
			img_meta_release(meta);         /* the pixels will be sRGB either way */
		}
		break;
	default:
		ci->out_color_space = JCS_RGB;
		channels = 3;
		break;
	}

	if (o->min_width > 0)
		denom = jdec_scale(ci, orient, o->min_width);
	ci->scale_num = 1;
	ci->scale_denom = denom;
	meta->shrink = (int)denom;
	uint8_t need_ac[256];
	if (jdec_ac_droppable(ci, need_ac)) {
		J_COLOR_SPACE cs = ci->out_color_space;
		size_t n;
		if ((d->dc = jpegio_dc_scans(buf, len, need_ac, &n)) != NULL) {
			/* the same file without its AC scans: start it over */
			jpeg_abort_decompress(ci);
			jpeg_mem_src(ci, d->dc, (unsigned long)n);
			jpeg_read_header(ci, TRUE);
			ci->out_color_space = cs;
			ci->scale_num = 1;
			ci->scale_denom = denom;
			ci->do_block_smoothing = FALSE;
			/* need_ac marks every id with a component whose IDCT is
			 * larger than 1x1, so a component is DC-only exactly when
			 * its id is unmarked (libjpeg gives a scan naming an id to
			 * the first component of that id) */
			for (int i = 0; i < ci->num_components && i < MAX_COMPONENTS; i++)
				d->dc_only[i] = !need_ac[ci->comp_info[i].component_id];
		}
	}
	if (codec_reserve(o, jdec_footprint(d, channels), err, errlen) != 0)
		return -1;

	jpeg_start_decompress(ci);
	if (ci->output_components != (cmyk ? 4 : channels)) {
		snprintf(err, errlen, "unsupported JPEG: %d components", ci->output_components);
		return -1;
	}
	if (ci->output_width > 0x7fffffff || ci->output_height > 0x7fffffff ||
	    img_alloc_rows(out, (int)ci->output_width, (int)ci->output_height, channels) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (cmyk) {
		d->row = malloc((size_t)ci->output_width * 4);
		if (d->row == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}

	while (ci->output_scanline < ci->output_height) {
		uint8_t *dst = out->px + (size_t)ci->output_scanline * out->stride;
		JSAMPROW r = cmyk ? d->row : dst;
		if (jpeg_read_scanlines(ci, &r, 1) != 1) {
			/* Only a suspending source returns 0; ours never suspends. */
			snprintf(err, errlen, "truncated JPEG");
			return -1;
		}
		if (d->cmyk_xf)
			icc_apply(d->cmyk_xf, d->row, dst, ci->output_width);
		else if (cmyk)
			cmyk_to_rgb(d->row, dst, ci->output_width, ci->saw_Adobe_marker);
	}
	complete = jdec_complete(ci, d->je.ran_dry);
	jpeg_finish_decompress(ci);
	if (d->je.hit_marker || !complete) {
		snprintf(err, errlen, "truncated JPEG");
		return -1;
	}
	meta->orientation = orient;
	return 0;
}

/* The only frame a longjmp lands in: it has no locals to lose, and
 * jdec_run's locals are dead once it has been jumped out of. */
static int jdec_guarded(struct jdec *d, const uint8_t *buf, size_t len,
                        const img_decode_opts *o, img *out, img_meta *meta,
                        char *err, size_t errlen)
{
	if (setjmp(d->je.jb)) {
		jerr_describe(&d->je, "corrupt", err, errlen);
		return -1;
	}
	return jdec_run(d, buf, len, o, out, meta, err, errlen);
}

int jpegio_decode(const uint8_t *buf, size_t len, const img_decode_opts *o,
                  img *out, img_meta *meta, char *err, size_t errlen)
{
	struct jdec d;
	int rc;

	memset(&d, 0, sizeof d);
	memset(out, 0, sizeof *out);
	meta->orientation = 1;
	meta->width = meta->height = 0;
	meta->icc = NULL;
	meta->icc_len = 0;
	meta->icc_note = NULL;
	jerr_init(&d.je);
	d.cinfo.err = &d.je.pub;

	rc = jdec_guarded(&d, buf, len, o, out, meta, err, errlen);

	if (d.created)
		jpeg_destroy_decompress(&d.cinfo);
	for (int i = 0; i < d.narr; i++)
		bigmem_free(d.arr[i].mem);
	free(d.row);
	free(d.dc);
	if (rc != 0) {
		img_release(out);
		img_meta_release(meta);
		meta->orientation = 1;
		meta->width = meta->height = 0;
		meta->icc_note = NULL;
	}
	return rc;
}

/* ---- encode ---- */

struct jdst {
	struct jpeg_destination_mgr pub;    /* first, so cinfo->dest can be cast back */
	uint8_t *buf;
	size_t cap, len;
};

static void jdst_init(j_compress_ptr cinfo)
{
	struct jdst *m = (struct jdst *)cinfo->dest;

	m->buf = malloc(JPEG_OUT_CHUNK);
	if (m->buf == NULL)
		ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 0);
	m->cap = JPEG_OUT_CHUNK;
	m->pub.next_output_byte = m->buf;
	m->pub.free_in_buffer = m->cap;
}

/* Called when the buffer is full (free_in_buffer is then 0). */
static boolean jdst_grow(j_compress_ptr cinfo)
{
	struct jdst *m = (struct jdst *)cinfo->dest;
	uint8_t *nb;

	if (m->cap > SIZE_MAX / 2)
		ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 1);
	nb = realloc(m->buf, m->cap * 2);
	if (nb == NULL)
		ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 1);
	m->buf = nb;
	m->pub.next_output_byte = nb + m->cap;
	m->pub.free_in_buffer = m->cap;
	m->cap *= 2;
	return TRUE;
}

static void jdst_term(j_compress_ptr cinfo)
{
	struct jdst *m = (struct jdst *)cinfo->dest;

	m->len = m->cap - m->pub.free_in_buffer;
}

struct jenc {
	struct jpeg_compress_struct cinfo;
	struct jerr je;
	struct jdst dst;
	int created;
	JSAMPLE *row;           /* alpha-flattened row */
};

/* Straight alpha over white: v*a + 255*(1-a), in 0..255 fixed point. */
static uint8_t over_white(unsigned v, unsigned a)
{
	return (uint8_t)((v * a + 255 * (255 - a) + 127) / 255);
}

static int jenc_run(struct jenc *e, const img *im, int quality, char *err, size_t errlen)
{
	j_compress_ptr ci = &e->cinfo;
	int gray = im->channels <= 2, x;

	jpeg_create_compress(ci);
	e->created = 1;
	e->dst.pub.init_destination = jdst_init;
	e->dst.pub.empty_output_buffer = jdst_grow;
	e->dst.pub.term_destination = jdst_term;
	ci->dest = &e->dst.pub;

	ci->image_width = (JDIMENSION)im->w;
	ci->image_height = (JDIMENSION)im->h;
	ci->input_components = gray ? 1 : 3;
	ci->in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(ci);      /* colour defaults to YCbCr 4:2:0 */
	jpeg_set_quality(ci, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
	ci->optimize_coding = TRUE;

	if (im->channels == 2 || im->channels == 4) {
		e->row = malloc((size_t)im->w * (size_t)ci->input_components);
		if (e->row == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}

	jpeg_start_compress(ci, TRUE);
	while (ci->next_scanline < ci->image_height) {
		const uint8_t *src = im->px + (size_t)ci->next_scanline * im->stride;
		JSAMPROW r;
		if (im->channels == 2) {
			for (x = 0; x < im->w; x++)
				e->row[x] = over_white(src[2 * x], src[2 * x + 1]);
			r = e->row;
		} else if (im->channels == 4) {
			for (x = 0; x < im->w; x++) {
				const uint8_t *p = src + 4 * (size_t)x;
				e->row[3 * x] = over_white(p[0], p[3]);
				e->row[3 * x + 1] = over_white(p[1], p[3]);
				e->row[3 * x + 2] = over_white(p[2], p[3]);
			}
			r = e->row;
		} else {
			r = (JSAMPROW)src;  /* libjpeg only reads it; the API lacks const */
		}
		jpeg_write_scanlines(ci, &r, 1);
	}
	jpeg_finish_compress(ci);
	return 0;
}

/* As jdec_guarded. */
static int jenc_guarded(struct jenc *e, const img *im, int quality, char *err, size_t errlen)
{
	if (setjmp(e->je.jb)) {
		jerr_describe(&e->je, "cannot encode", err, errlen);
		return -1;
	}
	return jenc_run(e, im, quality, err, errlen);
}

int jpegio_encode(const img *im, int quality, uint8_t **out, size_t *outlen,
                  char *err, size_t errlen)
{
	struct jenc e;
	int rc;

	memset(&e, 0, sizeof e);
	*out = NULL;
	*outlen = 0;
	jerr_init(&e.je);
	e.cinfo.err = &e.je.pub;

	if (im->w > JPEG_MAX_DIMENSION || im->h > JPEG_MAX_DIMENSION) {
		snprintf(err, errlen, "too large for JPEG: %dx%d", im->w, im->h);
		rc = -1;
		goto out;
	}
	rc = jenc_guarded(&e, im, quality, err, errlen);
	if (rc == 0) {
		*out = e.dst.buf;       /* hand over: it came from malloc */
		*outlen = e.dst.len;
		e.dst.buf = NULL;
	}
out:
	if (e.created)
		jpeg_destroy_compress(&e.cinfo);
	free(e.dst.buf);
	free(e.row);
	return rc;
}
