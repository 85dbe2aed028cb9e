/*
 * test_jpeg_dc: the AC-scan shortcut of jpegio.c.  A progressive JPEG
 * decoded at 1/8 comes from a copy without the AC scans of its components
 * that have a 1x1 IDCT there; these tests hold it to what that promises:
 *  - jpegio_dc_scans() drops exactly the AC scans of the components not
 *    marked as needed, keeps everything else of a well-formed stream, and
 *    gives up (NULL) on anything else: baseline, truncated, garbage;
 *  - img_decode()'s pixels equal a plain libjpeg decode of the whole file
 *    at the same scale, bit for bit, for every sampling (with 4:2:0 the
 *    chroma AC scans stay: libjpeg scales chroma up with a 2x2 IDCT), gray,
 *    restart markers, corpus files;
 *  - a truncated progressive file still fails as "truncated JPEG", and so
 *    does one closed early by an EOI, unless the scans it lacks are the
 *    very ones the copy drops;
 *  - a component decoded from DC scans alone is held in a 64th of its full
 *    coefficient array (the decode's reserved footprint says so), its
 *    pixels still the full decode's, for pictures of several row groups,
 *    Huffman and arithmetic coded.
 * Pictures are made here with libjpeg itself (noise and edges, so the AC
 * scans carry real data), plus the progressive files of the shared corpus.
 */
#include "check.h"
#include "imgcheck.h"
#include "codec.h"
#include "img.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

static unsigned long long rng = 20261201;

static unsigned
rnd(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)(rng >> 33) % n;
}

struct fail {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
};

static void
fail_exit(j_common_ptr ci)
{
	longjmp(((struct fail *)ci->err)->jb, 1);
}

static void
quiet(j_common_ptr ci, int level)
{
	(void)ci;
	(void)level;
}

/* A w x h picture of comps channels: noise and edges.  Not inlined into
 * make_jpeg, whose setjmp would make gcc warn about these loops' counters. */
#ifdef __GNUC__
__attribute__((noinline))
#endif
static uint8_t *
make_pixels(int w, int h, int comps)
{
	uint8_t *px = malloc((size_t)w * (size_t)h * (size_t)comps);

	if (!px)
		return NULL;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < comps; c++) {
				int v = ((x / 7 + y / 11) & 1) ? 200 : 40;     /* edges */
				v += (x * 3 + y * (c + 1)) % 50 + (int)rnd(40) - 20;       /* gradient, noise */
				px[((size_t)y * (size_t)w + (size_t)x) * (size_t)comps + (size_t)c] =
					(uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
	return px;
}

/* A w x h picture (gray when comps == 1) as JPEG: h/v sampling of the
 * first component, progressive or not (2: progressive with arithmetic
 * coding), restart interval in MCU rows. */
static uint8_t *
make_jpeg(int w, int h, int comps, int hs, int vs, int progressive, int restart, unsigned long *len)
{
	struct jpeg_compress_struct ci;
	struct fail e;
	unsigned char *out = NULL;
	uint8_t *px = make_pixels(w, h, comps), *volatile keep = px;

	if (!px)
		return NULL;
	ci.err = jpeg_std_error(&e.pub);
	e.pub.error_exit = fail_exit;
	if (setjmp(e.jb)) {
		jpeg_destroy_compress(&ci);
		free(keep);
		return NULL;
	}
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &out, len);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = comps;
	ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 90, TRUE);
	ci.comp_info[0].h_samp_factor = hs;
	ci.comp_info[0].v_samp_factor = vs;
	if (progressive)
		jpeg_simple_progression(&ci);
	ci.arith_code = progressive == 2;
	ci.restart_in_rows = restart;
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW r = px + (size_t)ci.next_scanline * (size_t)w * (size_t)comps;
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	free(px);
	return out;
}

/* The reference: libjpeg on the whole stream at 1/denom, nothing else set
 * but the output colour space thumbd asks for. */
static int
plain_decode(const uint8_t *buf, size_t len, int denom, img *out)
{
	struct jpeg_decompress_struct ci;
	struct fail e;
	img *volatile o = out;

	memset(out, 0, sizeof *out);
	ci.err = jpeg_std_error(&e.pub);
	e.pub.error_exit = fail_exit;
	e.pub.emit_message = quiet;
	if (setjmp(e.jb)) {
		jpeg_destroy_decompress(&ci);
		img_release(o);
		return -1;
	}
	jpeg_create_decompress(&ci);
	jpeg_mem_src(&ci, buf, (unsigned long)len);
	jpeg_read_header(&ci, TRUE);
	ci.out_color_space = ci.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
	ci.scale_num = 1;
	ci.scale_denom = (unsigned)denom;
	jpeg_start_decompress(&ci);
	if (img_alloc(out, (int)ci.output_width, (int)ci.output_height, ci.output_components) != 0)
		longjmp(e.jb, 1);
	while (ci.output_scanline < ci.output_height) {
		JSAMPROW r = out->px + (size_t)ci.output_scanline * out->stride;
		jpeg_read_scanlines(&ci, &r, 1);
	}
	jpeg_finish_decompress(&ci);
	jpeg_destroy_decompress(&ci);
	return 0;
}

/* SOS segments: DC ones (Ss = 0), AC ones, and AC ones holding component id. */
static void
count_scans(const uint8_t *b, size_t len, int id, int *dc, int *ac, int *ac_id)
{
	*dc = *ac = *ac_id = 0;
	for (size_t i = 2; i + 5 < len; i++)
		if (b[i] == 0xFF && b[i + 1] == 0xDA) {
			size_t ns = b[i + 4];
			if (i + 5 + 2 * ns >= len)
				continue;
			if (b[i + 5 + 2 * ns] == 0) {
				(*dc)++;
				continue;
			}
			(*ac)++;
			for (size_t c = 0; c < ns; c++)
				if (b[i + 5 + 2 * c] == id)
					(*ac_id)++;
		}
}

static uint64_t reserved;

static int
note_reserve(void *arg, uint64_t bytes)
{
	(void)arg;
	reserved = bytes;
	return 0;
}

/* img_decode at 1/8 (min_width 1 on a wide picture) against the reference;
 * the bytes the decode reserved are left in reserved. */
static void
check_identical(const char *what, const uint8_t *buf, size_t len)
{
	img_decode_opts o = { .max_pixels = 0, .min_width = 1, .reserve = note_reserve };
	img a = { 0 }, b = { 0 };
	img_meta m;
	char err[IMG_ERRLEN] = "";
	int ra = img_decode(buf, len, &o, &a, &m, err, sizeof err);
	int rb = plain_decode(buf, len, 8, &b);

	img_meta_release(&m);

	if (ra != 0)
		fprintf(stderr, "%s: %s\n", what, err);
	CHECK_INT(ra, 0);
	CHECK_INT(rb, 0);
	if (ra == 0 && rb == 0) {
		int same = same_pixels(&a, &b);
		if (!same)
			fprintf(stderr, "%s: pixels differ from the full decode\n", what);
		CHECK(same);
	}
	img_release(&a);
	img_release(&b);
}

static void
test_synthetic(void)
{
	static const struct { int comps, hs, vs, restart; const char *name; } kinds[] = {
		{ 3, 1, 1, 0, "4:4:4" }, { 3, 2, 1, 0, "4:2:2" }, { 3, 2, 2, 0, "4:2:0" },
		{ 1, 1, 1, 0, "gray" }, { 3, 1, 1, 2, "4:4:4 restart" }, { 3, 2, 1, 3, "4:2:2 restart" },
	};

	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		unsigned long plen = 0, blen = 0;
		uint8_t *prog = make_jpeg(803, 517, kinds[k].comps, kinds[k].hs, kinds[k].vs, 1,
		                          kinds[k].restart, &plen);
		uint8_t *base = make_jpeg(803, 517, kinds[k].comps, kinds[k].hs, kinds[k].vs, 0,
		                          kinds[k].restart, &blen);
		char what[64];
		size_t n = 0;
		uint8_t *dc;
		int d0, a0, d1, a1;

		CHECK(prog != NULL && base != NULL);
		if (!prog || !base) {
			free(prog);
			free(base);
			continue;
		}
		/* the copy: every DC scan, no AC scan, shorter */
		static const uint8_t none[256];
		uint8_t chroma[256] = { 0 };
		chroma[2] = chroma[3] = 1;      /* libjpeg's component ids: Y 1, Cb 2, Cr 3 */
		dc = jpegio_dc_scans(prog, plen, none, &n);
		CHECK(dc != NULL);
		if (dc) {
			int y0, y1;
			count_scans(prog, plen, 1, &d0, &a0, &y0);
			count_scans(dc, n, 1, &d1, &a1, &y1);
			CHECK(a0 > 0);
			CHECK_INT(d1, d0);
			CHECK_INT(a1, 0);
			CHECK(n < plen);
			CHECK(dc[n - 2] == 0xFF && dc[n - 1] == 0xD9);
		}
		free(dc);
		/* chroma needed: only the luma AC scans go */
		if (kinds[k].comps == 3) {
			dc = jpegio_dc_scans(prog, plen, chroma, &n);
			CHECK(dc != NULL);
			if (dc) {
				int y0, y1, c0, c1, cb0, cb1;
				count_scans(prog, plen, 1, &d0, &a0, &y0);
				count_scans(dc, n, 1, &d1, &a1, &y1);
				count_scans(prog, plen, 2, &d0, &c0, &cb0);
				count_scans(dc, n, 2, &d1, &c1, &cb1);
				CHECK(y0 > 0);
				CHECK_INT(y1, 0);
				CHECK(cb0 > 0);
				CHECK_INT(cb1, cb0);
				CHECK_INT(a1, a0 - y0);
			}
			free(dc);
		}
		/* baseline: one scan holding DC and AC, nothing to drop */
		CHECK(jpegio_dc_scans(base, blen, none, &n) == NULL);

		snprintf(what, sizeof what, "progressive %s", kinds[k].name);
		check_identical(what, prog, plen);
		snprintf(what, sizeof what, "baseline %s", kinds[k].name);
		check_identical(what, base, blen);

		/* cut anywhere after the first scan: never a copy, and the decode
		 * fails as it would without the shortcut */
		{
			int copies = 0, decoded = 0, tried = 0;
			for (size_t cut = plen / 10; cut < plen - 2; cut += plen / 10 + 1) {
				img im = { 0 };
				img_meta m;
				img_decode_opts o = { .min_width = 1 };
				char err[IMG_ERRLEN];
				uint8_t *c = jpegio_dc_scans(prog, cut, none, &n);
				if (c)
					copies++;
				free(c);
				if (img_decode(prog, cut, &o, &im, &m, err, sizeof err) == 0)
					decoded++;
				img_meta_release(&m);
				img_release(&im);
				tried++;
			}
			CHECK(tried >= 5);
			CHECK_INT(copies, 0);
			CHECK_INT(decoded, 0);
		}
		free(prog);
		free(base);
	}
}

/* 1203x1100: 138 block rows, two full groups of 64 and a part. */
static void
test_dc_footprint(void)
{
	static const struct { int comps, hs, vs, prog; const char *name; uint64_t lo, hi; } kinds[] = {
		/* every component DC-only: 151x138 blocks each, 8.0 MB as full arrays */
		{ 3, 1, 1, 1, "4:4:4", 150000, 400000 },
		{ 3, 2, 1, 1, "4:2:2", 100000, 300000 },
		{ 1, 1, 1, 1, "gray", 30000, 150000 },
		{ 3, 1, 1, 2, "4:4:4 arithmetic", 150000, 400000 },
		/* chroma keeps its AC (2x2 IDCT): 2 x 76x69 blocks, 1.34 MB in full;
		 * the luma's 152x138 would add 2.7 MB */
		{ 3, 2, 2, 1, "4:2:0", 1340000, 1600000 },
		{ 3, 2, 2, 2, "4:2:0 arithmetic", 1340000, 1600000 },
	};

	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		unsigned long plen = 0;
		uint8_t *prog = make_jpeg(1203, 1100, kinds[k].comps, kinds[k].hs, kinds[k].vs,
		                          kinds[k].prog, 0, &plen);

		CHECK(prog != NULL);
		if (!prog)
			continue;
		reserved = 0;
		check_identical(kinds[k].name, prog, plen);
		if (reserved < kinds[k].lo || reserved > kinds[k].hi)
			fprintf(stderr, "%s: footprint %llu, expected %llu..%llu\n", kinds[k].name,
			        (unsigned long long)reserved, (unsigned long long)kinds[k].lo,
			        (unsigned long long)kinds[k].hi);
		CHECK(reserved >= kinds[k].lo && reserved <= kinds[k].hi);
		free(prog);
	}
}

/* A progressive file cut at the start of a scan and closed with an EOI
 * lacks the coefficients of its later scans without ever running dry:
 * it must fail as truncated at full size (every coefficient counts), and
 * at 1/8 either fail so or give the whole file's pixels (the missing scans
 * were AC scans the copy drops anyway); both happen.  Arithmetic coding
 * too, whose decoder meets a marker without a word. */
static void
test_early_eoi(void)
{
	static const struct { int hs, vs, prog; const char *name; } kinds[] = {
		{ 1, 1, 1, "4:4:4" }, { 2, 2, 1, "4:2:0" },
		{ 1, 1, 2, "4:4:4 arithmetic" }, { 2, 2, 2, "4:2:0 arithmetic" },
	};

	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		unsigned long plen = 0;
		uint8_t *prog = make_jpeg(203, 117, 3, kinds[k].hs, kinds[k].vs, kinds[k].prog, 0, &plen);
		uint8_t *cut = malloc(plen + 2);
		img ref = { 0 };
		int scans = 0, full_bad = 0, whole = 0, failed = 0, wrong = 0;

		CHECK(prog != NULL && cut != NULL);
		CHECK(prog != NULL && plain_decode(prog, plen, 8, &ref) == 0);
		for (size_t i = 4; prog && cut && i + 1 < plen; i++) {
			if (prog[i] != 0xFF || prog[i + 1] != 0xDA || scans++ == 0)
				continue;       /* from the second scan on */
			img im = { 0 };
			img_meta m;
			char err[IMG_ERRLEN];
			img_decode_opts full = { .min_width = 0 }, eighth = { .min_width = 1 };

			memcpy(cut, prog, i);
			cut[i] = 0xFF;
			cut[i + 1] = 0xD9;
			if (img_decode(cut, i + 2, &full, &im, &m, err, sizeof err) == 0
			    || strcmp(err, "truncated JPEG") != 0)
				full_bad++;
			img_meta_release(&m);
			img_release(&im);
			if (img_decode(cut, i + 2, &eighth, &im, &m, err, sizeof err) != 0)
				*(strcmp(err, "truncated JPEG") == 0 ? &failed : &wrong) += 1;
			else
				*(same_pixels(&im, &ref) ? &whole : &wrong) += 1;
			img_meta_release(&m);
			img_release(&im);
		}
		if (full_bad || wrong || !whole || !failed)
			fprintf(stderr, "%s cut before a scan, then EOI: %d of %d wrong at full size; "
			        "at 1/8 %d whole, %d truncated, %d wrong\n", kinds[k].name, full_bad,
			        scans - 1, whole, failed, wrong);
		CHECK(scans > 5);
		CHECK_INT(full_bad, 0);
		CHECK_INT(wrong, 0);
		CHECK(whole > 0);
		CHECK(failed > 0);
		img_release(&ref);
		free(cut);
		free(prog);
	}
}

static void
test_garbage(void)
{
	static const uint8_t none[256];
	uint8_t junk[4096] = { 0 };
	size_t n;
	int copies = 0;

	CHECK(jpegio_dc_scans(junk, 0, none, &n) == NULL);
	CHECK(jpegio_dc_scans((const uint8_t *)"\xff\xd8\xff\xd9", 4, none, &n) == NULL);
	for (int round = 0; round < 2000; round++) {
		size_t len = 4 + rnd(sizeof junk - 4);
		junk[0] = 0xFF;
		junk[1] = 0xD8;
		for (size_t i = 2; i < len; i++)
			junk[i] = rnd(3) ? (uint8_t)rnd(256) : 0xFF;
		uint8_t *c = jpegio_dc_scans(junk, len, none, &n);
		if (c && (n > len || c[0] != 0xFF || c[1] != 0xD8))
			copies += 1000;     /* a copy must never outgrow or lose the SOI */
		else if (c)
			copies++;
		free(c);
	}
	CHECK(copies < 1000);
}

static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0
	    && (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, f) == (size_t)n)
		*len = (size_t)n;
	else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static void
test_corpus(void)
{
	const char *corpus = getenv("THUMBD_CORPUS");
	static const char *files[] = {
		"edge/jpeg_progressive_2268x1512.jpg", "edge/jpeg_1x1_progressive.jpg",
	};

	if (!corpus || !*corpus)
		corpus = "../shared/corpus";
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[1024];
		size_t len;
		uint8_t *buf;

		snprintf(path, sizeof path, "%s/%s", corpus, files[i]);
		buf = slurp(path, &len);
		if (!buf)
			fprintf(stderr, "cannot read %s\n", path);
		CHECK(buf != NULL);       /* a missing corpus fails, never skips */
		if (buf)
			check_identical(files[i], buf, len);
		free(buf);
	}
}

int
main(void)
{
	test_synthetic();
	test_dc_footprint();
	test_early_eoi();
	test_garbage();
	test_corpus();
	return CHECK_DONE();
}
