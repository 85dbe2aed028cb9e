/*
 * test_resample_simd: the SSE2 and AVX2 loops of resample.c against its
 * portable loops, bit for bit (AVX2 where this CPU has it).  The portable build of the same file is compiled
 * into this test under other names (RESAMPLE_PORTABLE), and both run on
 * random images of every channel count, reductions and enlargements, odd
 * and even tap counts, widths that leave SIMD tails.
 */
#define RESAMPLE_PORTABLE
#define resample_resize portable_resize
#define resample_resize_span portable_resize_span
#define resample_lanczos3 portable_lanczos3
#define resample_isa portable_isa
#define resample_force_isa portable_force_isa
#include "../../src/resample.c"
#undef resample_resize
#undef resample_resize_span
#undef resample_lanczos3
#undef resample_isa
#undef resample_force_isa
#undef RESAMPLE_PORTABLE

#include <stdio.h>
#include <stdlib.h>

#include "check.h"

/* the SIMD build, from resample.o */
int resample_resize(const img *src, img *dst, int dst_w, int dst_h);
const char *resample_isa(void);
int resample_force_isa(const char *isa);

static unsigned long long rng = 20261123;

static unsigned
rnd(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)(rng >> 33) % n;
}

/* Every size and channel count through the SIMD build and the portable
 * one; the number of images compared. */
static int
compare_all(const char *isa)
{
	static const int sizes[][4] = {
		{ 800, 450, 200, 113 }, { 800, 450, 64, 36 }, { 201, 133, 32, 21 }, { 37, 23, 200, 124 },
		{ 1000, 7, 13, 3 }, { 5, 300, 3, 17 }, { 640, 480, 641, 479 }, { 97, 61, 96, 60 },
		{ 1, 1, 3, 3 }, { 3, 2, 1, 1 }, { 1023, 641, 200, 125 }, { 45, 1200, 7, 200 },
	};
	int compared = 0;

	for (int ch = 1; ch <= 4; ch++)
		for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
			img src = { 0 }, a = { 0 }, b = { 0 };
			const int *z = sizes[s];
			if (img_alloc(&src, z[0], z[1], ch) != 0) {
				CHECK(!"out of memory");
				continue;
			}
			for (int y = 0; y < src.h; y++)
				for (size_t x = 0; x < (size_t)src.w * (size_t)ch; x++)
					src.px[(size_t)y * src.stride + x] = (uint8_t)(rnd(4) ? rnd(256) : rnd(2) * 255);
			int ra = resample_resize(&src, &a, z[2], z[3]);
			int rb = portable_resize(&src, &b, z[2], z[3]);
			CHECK_INT(ra, 0);
			CHECK_INT(rb, 0);
			if (ra == 0 && rb == 0) {
				int same = a.w == b.w && a.h == b.h;
				for (int y = 0; same && y < a.h; y++)
					same = memcmp(a.px + (size_t)y * a.stride, b.px + (size_t)y * b.stride,
					              (size_t)a.w * (size_t)ch) == 0;
				if (!same)
					fprintf(stderr, "%s differs: %d channels, %dx%d -> %dx%d\n", isa, ch,
					        z[0], z[1], z[2], z[3]);
				CHECK(same);
				compared++;
			}
			img_release(&src);
			img_release(&a);
			img_release(&b);
		}
	return compared;
}

int
main(void)
{
	CHECK_INT(resample_force_isa("sse2"), 0);
	CHECK(strcmp(resample_isa(), "sse2") == 0);
	CHECK_INT(compare_all("sse2"), 48);
	if (__builtin_cpu_supports("avx2")) {
		CHECK_INT(resample_force_isa("avx2"), 0);
		CHECK(strcmp(resample_isa(), "avx2") == 0);
		CHECK_INT(compare_all("avx2"), 48);
	} else {
		/* say so rather than pass quietly: this CPU tests SSE2 only */
		printf("no AVX2 on this CPU: AVX2 loops not compared\n");
		CHECK_INT(resample_force_isa("avx2"), -1);
	}
	return CHECK_DONE();
}
