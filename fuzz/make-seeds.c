/*
 * make-seeds: writes the tiny JPEG seeds in fuzz/seeds/fuzz_jpeg/ with
 * libjpeg itself, one per decoder path the shared corpus only has in
 * large files (CMYK, YCCK, progressive, arithmetic, restart markers,
 * 4:4:4 and 4:2:2, grayscale, an odd width after DCT scaling).  Seeds, not tests: run by hand,
 *   cc -Iinclude fuzz/make-seeds.c -ljpeg -o build/make-seeds && build/make-seeds fuzz/seeds/fuzz_jpeg
 * and commit what it writes.  Not part of `make` or `make fuzz`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct seed {
	const char *name;
	J_COLOR_SPACE in, out;
	int comps, progressive, arith, restart, h1, v1;
	int w, h;               /* 0: 24 x 16 */
};

static int write_seed(const char *dir, const struct seed *s)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char row[128 * 4];
	JSAMPROW r = row;
	char path[512];
	FILE *f;
	int x, y, c, w = s->w ? s->w : 24, h = s->h ? s->h : 16;

	snprintf(path, sizeof path, "%s/%s", dir, s->name);
	f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_stdio_dest(&ci, f);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = s->comps;
	ci.in_color_space = s->in;
	jpeg_set_defaults(&ci);
	jpeg_set_colorspace(&ci, s->out);
	jpeg_set_quality(&ci, 50, TRUE);
	ci.comp_info[0].h_samp_factor = s->h1;
	ci.comp_info[0].v_samp_factor = s->v1;
	if (s->progressive)
		jpeg_simple_progression(&ci);
	ci.arith_code = s->arith ? TRUE : FALSE;
	ci.restart_interval = (unsigned)s->restart;
	jpeg_start_compress(&ci, TRUE);
	for (y = 0; y < h; y++) {
		for (x = 0; x < w; x++)
			for (c = 0; c < s->comps; c++)
				row[x * s->comps + c] = (unsigned char)(x * 10 + y * 7 + c * 60);
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	return fclose(f);
}

int main(int argc, char **argv)
{
	static const struct seed seeds[] = {
		{ "baseline_420.jpg",    JCS_RGB,       JCS_YCbCr,     3, 0, 0, 0, 2, 2, 0, 0 },
		{ "baseline_444.jpg",    JCS_RGB,       JCS_YCbCr,     3, 0, 0, 0, 1, 1, 0, 0 },
		{ "baseline_422.jpg",    JCS_RGB,       JCS_YCbCr,     3, 0, 0, 0, 2, 1, 0, 0 },
		{ "gray.jpg",            JCS_GRAYSCALE, JCS_GRAYSCALE, 1, 0, 0, 0, 1, 1, 0, 0 },
		{ "rgb_no_ycc.jpg",      JCS_RGB,       JCS_RGB,       3, 0, 0, 0, 1, 1, 0, 0 },
		{ "cmyk.jpg",            JCS_CMYK,      JCS_CMYK,      4, 0, 0, 0, 1, 1, 0, 0 },
		{ "ycck.jpg",            JCS_CMYK,      JCS_YCCK,      4, 0, 0, 0, 2, 2, 0, 0 },
		{ "progressive.jpg",     JCS_RGB,       JCS_YCbCr,     3, 1, 0, 0, 2, 2, 0, 0 },
		{ "progressive_cmyk.jpg", JCS_CMYK,     JCS_CMYK,      4, 1, 0, 0, 1, 1, 0, 0 },
		{ "arithmetic.jpg",      JCS_RGB,       JCS_YCbCr,     3, 0, 1, 0, 2, 2, 0, 0 },
		{ "arith_progressive.jpg", JCS_RGB,     JCS_YCbCr,     3, 1, 1, 0, 2, 2, 0, 0 },
		{ "restart_1.jpg",       JCS_RGB,       JCS_YCbCr,     3, 0, 0, 1, 2, 2, 0, 0 },
		/* 1/4 DCT scaling: 25 px, odd, where SIMD padding reached the pixels */
		{ "baseline_444_100x68.jpg", JCS_RGB,   JCS_YCbCr,     3, 0, 0, 0, 1, 1, 100, 68 },
	};
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: make-seeds DIR\n");
		return 2;
	}
	for (i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
		if (write_seed(argv[1], &seeds[i]) != 0) {
			fprintf(stderr, "make-seeds: cannot write %s\n", seeds[i].name);
			return 1;
		}
	return 0;
}
