/*
 * test_resample: the Lanczos-3 resampler against its own definition.
 *
 * The fixed-point code is checked against a plain double-precision version
 * written here (same pixel-centre convention, same edge renormalisation, no
 * rounding between passes), so a wrong tap window, a lost shift or a
 * swapped order shows up as a number, not as "looks fine".  The rest pins the
 * properties a thumbnailer depends on: flat stays flat, transparent colour
 * never bleeds, borders do not wrap, odd sizes work, bad sizes are refused,
 * and the weight tables a thread keeps between calls give the same pixels
 * as tables made afresh.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "img.h"
#include "resample.h"

static uint32_t rng_state = 12345u;

static uint32_t rng(void)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return rng_state >> 8;
}

/* An image with `pad` spare bytes per row, so stride != w * channels is exercised. */
static int mk(img *im, int w, int h, int ch, size_t pad)
{
	im->w = w;
	im->h = h;
	im->channels = ch;
	im->stride = (size_t)w * (size_t)ch + pad;
	im->px = calloc((size_t)h, im->stride);
	return im->px ? 0 : -1;
}

static uint8_t *at(const img *im, int x, int y)
{
	return im->px + (size_t)y * im->stride + (size_t)x * (size_t)im->channels;
}

/* ---- double reference ------------------------------------------------- */

/* Weights of output i on one axis: the same convention the header promises. */
static int ref_weights(int in, int out, int i, int *lo_out, double *wts)
{
	double scale = (double)in / out;
	double fs = scale > 1.0 ? scale : 1.0;
	double support = 3.0 * fs;
	double center = (i + 0.5) * scale - 0.5;
	double sum = 0.0;
	int lo = -1, n = 0;

	/* every source index strictly within the support, inside the image */
	for (int j = 0; j < in && j < center + support; j++) {
		if (j <= center - support)
			continue;
		if (lo < 0)
			lo = j;
		wts[n] = resample_lanczos3((j - center) / fs);
		sum += wts[n++];
	}
	for (int k = 0; k < n; k++)
		wts[k] /= sum;
	*lo_out = lo;
	return n;
}

/* Full resize in doubles; out holds dw*dh*ch straight-alpha values 0..255. */
static void ref_resize(const img *src, int dw, int dh, double *out)
{
	int sw = src->w, sh = src->h, ch = src->channels;
	int alpha = ch == 2 || ch == 4;
	double *in = malloc(sizeof(double) * (size_t)sw * sh * ch);
	double *mid = malloc(sizeof(double) * (size_t)dw * sh * ch);
	double *res = malloc(sizeof(double) * (size_t)dw * dh * ch);
	int maxn = 6 * (sw > sh ? sw : sh) + 8;
	double *wts = malloc(sizeof(double) * (size_t)maxn);

	for (int y = 0; y < sh; y++)
		for (int x = 0; x < sw; x++) {
			const uint8_t *p = at(src, x, y);
			double a = alpha ? p[ch - 1] / 255.0 : 1.0;
			for (int c = 0; c < ch; c++) {
				double v = p[c];
				if (alpha && c < ch - 1)
					v *= a;
				in[((size_t)y * sw + x) * ch + c] = v;
			}
		}
	for (int y = 0; y < sh; y++)
		for (int x = 0; x < dw; x++) {
			int lo, n = ref_weights(sw, dw, x, &lo, wts);
			for (int c = 0; c < ch; c++) {
				double s = 0.0;
				for (int k = 0; k < n; k++)
					s += wts[k] * in[((size_t)y * sw + lo + k) * ch + c];
				mid[((size_t)y * dw + x) * ch + c] = s;
			}
		}
	for (int y = 0; y < dh; y++) {
		int lo, n = ref_weights(sh, dh, y, &lo, wts);
		for (int x = 0; x < dw; x++)
			for (int c = 0; c < ch; c++) {
				double s = 0.0;
				for (int k = 0; k < n; k++)
					s += wts[k] * mid[((size_t)(lo + k) * dw + x) * ch + c];
				res[((size_t)y * dw + x) * ch + c] = s;
			}
	}
	for (size_t p = 0; p < (size_t)dw * dh; p++) {
		double a = alpha ? res[p * ch + ch - 1] : 255.0;
		for (int c = 0; c < ch; c++) {
			double v = res[p * ch + c];
			if (alpha && c < ch - 1)
				v = a > 0.0 ? v * 255.0 / a : 0.0;
			out[p * ch + c] = v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v;
		}
	}
	free(in);
	free(mid);
	free(res);
	free(wts);
}

/* ---- tests -------------------------------------------------------------- */

static void test_kernel(void)
{
	CHECK(resample_lanczos3(0.0) == 1.0);
	for (int i = 1; i <= 2; i++) {
		CHECK(fabs(resample_lanczos3(i)) < 1e-12);
		CHECK(fabs(resample_lanczos3(-i)) < 1e-12);
	}
	CHECK(resample_lanczos3(3.0) == 0.0);
	CHECK(resample_lanczos3(-3.0) == 0.0);
	CHECK(resample_lanczos3(3.0001) == 0.0);
	CHECK(resample_lanczos3(7.5) == 0.0);
	CHECK(resample_lanczos3(-100.0) == 0.0);
	const double xs[] = { 0.1, 0.5, 0.77, 1.3, 2.2, 2.99 };
	for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
		CHECK(resample_lanczos3(xs[i]) == resample_lanczos3(-xs[i]));
	/* 3 sin(pi/2) sin(pi/6) / (pi/2)^2 = 6 / pi^2 */
	CHECK(fabs(resample_lanczos3(0.5) - 0.6079271018540267) < 1e-12);
	/* 3 sin(3pi/2) sin(pi/2) / (3pi/2)^2 = -4 / (3 pi^2): the first negative lobe */
	CHECK(fabs(resample_lanczos3(1.5) + 0.13509491152311703) < 1e-12);
	CHECK(resample_lanczos3(2.5) > 0.0);
}

static void test_constant(void)
{
	static const int sizes[][4] = {
		{ 37, 23, 5, 7 }, { 5, 7, 37, 23 }, { 100, 80, 33, 80 }, { 1, 1, 3, 3 },
		{ 13, 1, 40, 3 }, { 64, 64, 64, 64 }, { 300, 10, 7, 50 }, { 2, 300, 50, 7 },
	};
	static const uint8_t vals[] = { 0, 1, 77, 128, 254, 255 };
	for (int ch = 1; ch <= 4; ch++)
		for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
			for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
				img src, dst;
				if (mk(&src, sizes[s][0], sizes[s][1], ch, 3) != 0)
					continue;
				/* alpha 255 or 180: the premultiply round trip must be exact too */
				uint8_t px[4] = { vals[v], (uint8_t)(255 - vals[v]), (uint8_t)(vals[v] / 2 + 60), 180 };
				if (ch == 2)
					px[1] = v & 1 ? 255 : 180;
				for (int y = 0; y < src.h; y++)
					for (int x = 0; x < src.w; x++)
						memcpy(at(&src, x, y), px, (size_t)ch);
				int rc = resample_resize(&src, &dst, sizes[s][2], sizes[s][3]);
				CHECK_INT(rc, 0);
				int bad = 0;
				for (int y = 0; rc == 0 && y < dst.h; y++)
					for (int x = 0; x < dst.w; x++)
						bad += memcmp(at(&dst, x, y), px, (size_t)ch) != 0;
				if (bad)
					fprintf(stderr, "constant ch=%d %dx%d->%dx%d v=%d: %d bad pixels\n", ch,
					        sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], vals[v], bad);
				CHECK_INT(bad, 0);
				img_release(&dst);
				free(src.px);
			}
}

/* Smooth gradient plus noise: exercises both the ringing and the flat parts. */
static void fill_test_image(img *im)
{
	for (int y = 0; y < im->h; y++)
		for (int x = 0; x < im->w; x++)
			for (int c = 0; c < im->channels; c++) {
				int v = (x * 255 / im->w + y * 128 / im->h + c * 40) % 256;
				if ((rng() & 3) == 0)
					v = (int)(rng() & 255);
				at(im, x, y)[c] = (uint8_t)v;
			}
}

static void compare_ref(int sw, int sh, int ch, int dw, int dh)
{
	img src, dst;
	if (mk(&src, sw, sh, ch, 7) != 0)
		return;
	fill_test_image(&src);
	int alpha = ch == 2 || ch == 4;
	if (alpha)  /* keep some fully transparent pixels in */
		for (int y = 0; y < sh; y++)
			for (int x = 0; x < sw; x++)
				if ((x / 5 + y / 3) % 4 == 0)
					at(&src, x, y)[ch - 1] = 0;
	double *ref = malloc(sizeof(double) * (size_t)dw * dh * ch);
	int rc = resample_resize(&src, &dst, dw, dh);
	CHECK_INT(rc, 0);
	if (rc == 0 && ref) {
		ref_resize(&src, dw, dh, ref);
		double maxerr = 0.0, sum = 0.0;
		size_t cnt = 0;
		for (int y = 0; y < dh; y++)
			for (int x = 0; x < dw; x++) {
				const uint8_t *p = at(&dst, x, y);
				const double *r = ref + ((size_t)y * dw + x) * ch;
				for (int c = 0; c < ch; c++) {
					/* Straight colour under faint alpha is amplified noise
					 * (255/a per unit); judge it only where it is visible. */
					if (alpha && c < ch - 1 && r[ch - 1] < 64.0)
						continue;
					double e = fabs(p[c] - r[c]);
					maxerr = e > maxerr ? e : maxerr;
					sum += e;
					cnt++;
				}
			}
		double mean = cnt ? sum / cnt : 0.0;
		if (maxerr > 1.0 || mean > 0.35)
			fprintf(stderr, "ref ch=%d %dx%d->%dx%d: max %.3f mean %.3f\n",
			        ch, sw, sh, dw, dh, maxerr, mean);
		CHECK(maxerr <= 1.0);
		CHECK(mean <= 0.35);
		CHECK(cnt > 0);
	}
	free(ref);
	img_release(&dst);
	free(src.px);
}

static void test_reference(void)
{
	static const int pairs[][4] = {
		{ 97, 61, 23, 17 },     /* reduce both */
		{ 40, 30, 97, 71 },     /* enlarge both */
		{ 120, 20, 31, 45 },    /* width reduced, height enlarged */
		{ 30, 200, 60, 25 },    /* width enlarged, height reduced */
		{ 6, 100, 50, 900 },    /* tall enlargement: horizontal pass first */
		{ 800, 3, 200, 1 },     /* strip */
		{ 64, 64, 64, 64 },     /* identity */
		{ 333, 250, 200, 150 }, /* thumbnail-like, non-integer factor */
	};
	for (int ch = 1; ch <= 4; ch++)
		for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
			compare_ref(pairs[i][0], pairs[i][1], ch, pairs[i][2], pairs[i][3]);
}

/* Same size in and out must reproduce the image bit for bit. */
static void test_identity(void)
{
	for (int ch = 1; ch <= 4; ch++) {
		img src, dst;
		if (mk(&src, 29, 17, ch, 1) != 0)
			continue;
		fill_test_image(&src);
		if (ch == 2 || ch == 4)  /* faint alpha cannot round-trip colour exactly */
			for (int y = 0; y < src.h; y++)
				for (int x = 0; x < src.w; x++)
					at(&src, x, y)[ch - 1] |= 0x80;
		CHECK_INT(resample_resize(&src, &dst, 29, 17), 0);
		int bad = 0;
		for (int y = 0; dst.px && y < 17; y++)
			bad += memcmp(at(&dst, 0, y), at(&src, 0, y), (size_t)29 * ch) != 0;
		CHECK_INT(bad, 0);
		img_release(&dst);
		free(src.px);
	}
}

static void test_alpha(void)
{
	static const int sizes[][2] = { { 13, 7 }, { 90, 31 }, { 20, 20 }, { 7, 50 } };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		img src, dst;
		/* RGBA: left half opaque red, right half transparent green. */
		if (mk(&src, 40, 20, 4, 0) != 0)
			return;
		for (int y = 0; y < 20; y++)
			for (int x = 0; x < 40; x++) {
				static const uint8_t red[4] = { 255, 0, 0, 255 }, green[4] = { 0, 255, 0, 0 };
				memcpy(at(&src, x, y), x < 20 ? red : green, 4);
			}
		CHECK_INT(resample_resize(&src, &dst, sizes[s][0], sizes[s][1]), 0);
		int green = 0, notred = 0, leaked = 0;
		for (int y = 0; dst.px && y < dst.h; y++)
			for (int x = 0; x < dst.w; x++) {
				const uint8_t *p = at(&dst, x, y);
				green += p[1] != 0;
				if (p[3] >= 32)
					notred += p[0] < 250 || p[2] != 0;
				if (p[3] == 0)
					leaked += p[0] || p[1] || p[2];
			}
		CHECK_INT(green, 0);
		CHECK_INT(notred, 0);
		CHECK_INT(leaked, 0);
		if (dst.px) {
			CHECK_INT(at(&dst, 0, 0)[3], 255);
			CHECK_INT(at(&dst, dst.w - 1, dst.h - 1)[3], 0);
		}
		img_release(&dst);
		free(src.px);

		/* Gray+alpha: the opaque half's gray must come back unchanged
		 * wherever there is alpha to speak of, ringing or not. */
		if (mk(&src, 40, 20, 2, 0) != 0)
			return;
		for (int y = 0; y < 20; y++)
			for (int x = 0; x < 40; x++) {
				at(&src, x, y)[0] = x < 20 ? 200 : 50;
				at(&src, x, y)[1] = x < 20 ? 255 : 0;
			}
		CHECK_INT(resample_resize(&src, &dst, sizes[s][0], sizes[s][1]), 0);
		int off = 0;
		for (int y = 0; dst.px && y < dst.h; y++)
			for (int x = 0; x < dst.w; x++) {
				const uint8_t *p = at(&dst, x, y);
				if (p[1] >= 32)
					off += abs(p[0] - 200) > 2;
				else if (p[1] == 0)
					off += p[0] != 0;
			}
		CHECK_INT(off, 0);
		img_release(&dst);
		free(src.px);
	}
}

static void test_odd_sizes(void)
{
	img src, dst;

	/* 1x1 -> 32x32 */
	if (mk(&src, 1, 1, 3, 0) == 0) {
		memcpy(src.px, "\x0a\x80\xf0", 3);
		CHECK_INT(resample_resize(&src, &dst, 32, 32), 0);
		CHECK_INT(dst.w, 32);
		CHECK_INT(dst.h, 32);
		CHECK_INT(dst.channels, 3);
		int bad = 0;
		for (int y = 0; dst.px && y < 32; y++)
			for (int x = 0; x < 32; x++)
				bad += memcmp(at(&dst, x, y), "\x0a\x80\xf0", 3) != 0;
		CHECK_INT(bad, 0);
		img_release(&dst);
		free(src.px);
	}

	/* 940x2 -> 200x1 */
	if (mk(&src, 940, 2, 3, 0) == 0) {
		fill_test_image(&src);
		CHECK_INT(resample_resize(&src, &dst, 200, 1), 0);
		CHECK_INT(dst.w, 200);
		CHECK_INT(dst.h, 1);
		img_release(&dst);
		free(src.px);
	}

	/* 6x1024 -> 200x34133: a large enlargement, gray ramp down the column */
	if (mk(&src, 6, 1024, 1, 0) == 0) {
		for (int y = 0; y < 1024; y++)
			memset(at(&src, 0, y), y / 4, 6);
		CHECK_INT(resample_resize(&src, &dst, 200, 34133), 0);
		CHECK_INT(dst.w, 200);
		CHECK_INT(dst.h, 34133);
		if (dst.px) {
			CHECK_INT(at(&dst, 0, 0)[0], 0);
			CHECK_INT(at(&dst, 199, 34132)[0], 255);
			/* rows are flat (the source is flat across) and the column rises */
			int flat = 0, fall = 0;
			for (int y = 0; y < 34133; y += 7) {
				const uint8_t *r = at(&dst, 0, y);
				for (int x = 1; x < 200; x++)
					flat += r[x] != r[0];
				if (y >= 7)
					fall += r[0] + 1 < at(&dst, 0, y - 7)[0];
			}
			CHECK_INT(flat, 0);
			CHECK_INT(fall, 0);
		}
		img_release(&dst);
		free(src.px);
	}

	/* exact requested sizes, every channel count, reduction and enlargement */
	static const int sz[][4] = { { 50, 40, 1, 1 }, { 50, 40, 200, 3 }, { 3, 200, 64, 32 }, { 1, 7, 1, 2 } };
	for (int ch = 1; ch <= 4; ch++)
		for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
			if (mk(&src, sz[i][0], sz[i][1], ch, 0) != 0)
				continue;
			fill_test_image(&src);
			CHECK_INT(resample_resize(&src, &dst, sz[i][2], sz[i][3]), 0);
			CHECK_INT(dst.w, sz[i][2]);
			CHECK_INT(dst.h, sz[i][3]);
			CHECK_INT(dst.channels, ch);
			CHECK(dst.stride >= (size_t)sz[i][2] * ch);
			img_release(&dst);
			free(src.px);
		}
}

/* A left-to-right ramp: any wraparound would put bright pixels on the left. */
static void test_ramp(void)
{
	static const int widths[] = { 64, 200, 700, 31 };
	for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
		img src, dst;
		if (mk(&src, 256, 4, 1, 0) != 0)
			return;
		for (int y = 0; y < 4; y++)
			for (int x = 0; x < 256; x++)
				at(&src, x, y)[0] = (uint8_t)x;
		CHECK_INT(resample_resize(&src, &dst, widths[i], 3), 0);
		if (dst.px) {
			int dips = 0;
			for (int y = 0; y < dst.h; y++)
				for (int x = 1; x < dst.w; x++)
					dips += at(&dst, x, y)[0] + 1 < at(&dst, x - 1, y)[0];
			CHECK_INT(dips, 0);
			CHECK(at(&dst, 0, 0)[0] <= 256 / widths[i] + 4);
			CHECK(at(&dst, dst.w - 1, 0)[0] >= 255 - 256 / widths[i] - 4);
		}
		img_release(&dst);
		free(src.px);
	}
}

static void test_refuse(void)
{
	img src, dst;
	if (mk(&src, 10, 10, 3, 0) != 0)
		return;
	CHECK_INT(resample_resize(&src, &dst, 0, 5), -1);
	CHECK(dst.px == NULL);
	CHECK_INT(resample_resize(&src, &dst, 5, -1), -1);
	CHECK_INT(resample_resize(&src, &dst, 1 << 30, 5), -1);
	CHECK_INT(resample_resize(&src, &dst, 5, 1 << 30), -1);
	CHECK(dst.px == NULL);
	CHECK_INT(resample_resize(&src, &src, 5, 5), -1);
	CHECK(src.px != NULL);
	CHECK_INT(resample_resize(NULL, &dst, 5, 5), -1);
	CHECK_INT(resample_resize(&src, NULL, 5, 5), -1);
	src.channels = 5;
	CHECK_INT(resample_resize(&src, &dst, 5, 5), -1);
	src.channels = 3;
	src.stride = 29;        /* shorter than a row */
	CHECK_INT(resample_resize(&src, &dst, 5, 5), -1);
	src.stride = 30;
	src.w = 0;
	CHECK_INT(resample_resize(&src, &dst, 5, 5), -1);
	src.w = 10;
	CHECK_INT(resample_resize(&src, &dst, 5, 5), 0);
	img_release(&dst);
	free(src.px);
}

/* ---- weight tables kept per thread -------------------------------------- */

typedef struct resize_job {
	const img *src;
	int w, h;
	img out;
	int rc;
} resize_job;

static void *resize_on_new_thread(void *arg)
{
	resize_job *j = arg;

	j->rc = resample_resize(j->src, &j->out, j->w, j->h);
	return NULL;
}

/*
 * One thread resizes two sources to many sizes, twice over: the same source
 * size to other outputs, the same outputs from another source size, more
 * tables than a thread keeps (so some are dropped and made again), and one
 * too large to keep.  Each result must equal the one a new thread makes,
 * whose tables are all made afresh: a table found under the wrong key, or
 * one overwritten while still kept, changes pixels.
 */
static void test_kept_tables(void)
{
	static const int outs[][2] = {
		{ 100, 60 }, { 60, 100 }, { 100, 100 }, { 37, 199 }, { 199, 37 },
		{ 150, 9 }, { 9, 150 }, { 299, 199 }, { 64, 64 }, { 32, 21 },
		{ 30000, 2 },   /* 30000 x 8 weights: over what is kept */
		{ 100, 60 },
	};
	img src[2];

	if (mk(&src[0], 300, 200, 3, 0) != 0 || mk(&src[1], 200, 300, 4, 3) != 0) {
		CHECK(0);
		return;
	}
	fill_test_image(&src[0]);
	fill_test_image(&src[1]);
	for (int round = 0; round < 2; round++)
		for (int s = 0; s < 2; s++)
			for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
				resize_job fresh = { .src = &src[s], .w = outs[i][0], .h = outs[i][1], .rc = -1 };
				img here;
				pthread_t t;

				CHECK_INT(resample_resize(&src[s], &here, outs[i][0], outs[i][1]), 0);
				CHECK_INT(pthread_create(&t, NULL, resize_on_new_thread, &fresh), 0);
				pthread_join(t, NULL);
				CHECK_INT(fresh.rc, 0);
				int same = here.px && fresh.out.px && here.stride == fresh.out.stride;
				for (int y = 0; same && y < here.h; y++)
					same = memcmp(here.px + (size_t)y * here.stride,
					              fresh.out.px + (size_t)y * fresh.out.stride,
					              (size_t)here.w * (size_t)here.channels) == 0;
				if (!same)
					fprintf(stderr, "kept tables: %dx%d -> %dx%d differs (round %d)\n",
					        src[s].w, src[s].h, outs[i][0], outs[i][1], round);
				CHECK(same);
				img_release(&here);
				img_release(&fresh.out);
			}
	free(src[0].px);
	free(src[1].px);
}

int main(void)
{
	test_kernel();
	test_constant();
	test_reference();
	test_identity();
	test_alpha();
	test_odd_sizes();
	test_ramp();
	test_refuse();
	test_kept_tables();
	return CHECK_DONE();
}
