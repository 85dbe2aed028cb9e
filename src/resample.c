/*
 * resample: separable Lanczos-3, the hot path of every thumbnail.
 *
 * Shape of the work.  Each axis gets a table (made for the call, or kept
 * from an earlier call on the same thread with the same sizes): for every
 * output index the first source tap, the tap count, and the weights in
 * 14-bit fixed point, normalised so they sum to exactly 1 (a flat image
 * stays flat, bit for bit).  Taps outside the image are dropped and the rest
 * renormalised, so borders neither wrap nor darken.  Reductions stretch the
 * kernel by the scale factor (support 3*s); enlargements use it as is.
 *
 * Both passes stream through one output row at a time, so memory is a ring
 * of the source rows the vertical filter needs plus a few row buffers, never
 * a second full-size image:
 *
 *   vertical first (the usual thumbnail: both axes shrink):
 *     source rows -> V filter -> int16 row -> H filter -> output row
 *   horizontal first (chosen when it is cheaper, e.g. tall enlargements):
 *     source row -> H filter -> ring of int16 rows -> V filter -> output row
 *
 * The order comes from a cost estimate (taps times samples per pass), with
 * the horizontal pass weighted heavier because the vertical one vectorises
 * across the whole row while the horizontal one walks interleaved channels.
 *
 * Precision: between passes samples are int16 with 6 fraction bits (scale
 * 64), so 8-bit banding never appears and Lanczos overshoot (up to ~1.5x)
 * still fits; accumulators are int32 (|sample| * sum|w| < 2^31 with room to
 * spare).  Only the last step rounds and clamps to 0..255, so ringing is
 * clamped, never wrapped.
 *
 * Alpha (2 and 4 channels): colour is premultiplied (kept at 14 bits, so
 * faint pixels keep their precision) before any filtering and divided back
 * at the end through a reciprocal table (no per-pixel division).  Fully
 * transparent pixels therefore contribute nothing, and alpha 0 gives colour 0.
 *
 * Opaque sources filtered vertically first read the caller's uint8 rows
 * directly (the common JPEG case: no conversion copy at all).
 *
 * Speed: almost all the time is the first (vertical) pass over the full
 * source, 6 taps per source sample.  On x86 it uses SSE2 pmaddwd, two taps
 * per instruction; elsewhere fixed-size blocks that gcc -O2 vectorises.
 * Nothing is allocated or divided per pixel; the rest is scalar but runs on
 * rows already shrunk once.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "resample.h"

#define WBITS 14                        /* weight fraction bits */
#define WONE (1 << WBITS)
#define IBITS 6                         /* fraction bits of int16 intermediates */
/* Larger sides are refused as absurd: no decoder we use gets there, and it
 * bounds every table and row buffer below. */
#define MAX_SIDE (1 << 20)
#define RING_BUDGET (64.0 * 1024 * 1024)       /* bytes, see resample_resize */

typedef struct axis {
	int n_in;               /* source size (0: no table) */
	double span;            /* source pixels the picture spans (n_in - 1 < span <= n_in) */
	int n_out;
	int stride;             /* weights per output in w (>= every count) */
	int maxtaps;            /* largest count actually used */
	int *start;             /* first source index per output */
	int *count;             /* taps per output */
	int16_t *w;             /* n_out * stride, each run sums to WONE */
} axis;

static const double pi = 3.14159265358979323846;

double resample_lanczos3(double x)
{
	x = fabs(x);
	if (x == 0.0)
		return 1.0;
	if (x >= 3.0)
		return 0.0;
	double px = pi * x;
	return 3.0 * sin(px) * sin(px / 3.0) / (px * px);
}

/*
 * The kernel for the weight tables comes from a table sampled every
 * 1/KSTEPS with linear interpolation in between, not from sin(): the
 * tables of one thumbnail need tens of thousands of kernel values, which
 * took 6% of a run of small images.  The interpolation error is below
 * 1e-6, a thousand times finer than the 14-bit weights it feeds.
 */
#define KSTEPS 2048
static float ktab[3 * KSTEPS + 2];
static pthread_once_t ktab_once = PTHREAD_ONCE_INIT;

static void ktab_init(void)
{
	for (int i = 0; i < 3 * KSTEPS + 2; i++)
		ktab[i] = (float)resample_lanczos3((double)i / KSTEPS);
}

static double kernel(double x)
{
	x = fabs(x) * KSTEPS;
	if (x >= 3.0 * KSTEPS)
		return 0.0;
	int i = (int)x;
	double f = x - i;
	return ktab[i] + (ktab[i + 1] - ktab[i]) * f;
}

static void axis_free(axis *ax)
{
	free(ax->start);
	free(ax->count);
	free(ax->w);
	ax->start = ax->count = NULL;
	ax->w = NULL;
	ax->n_in = 0;
}

/* 0 / -1 (out of memory).  The out pixels share span source pixels
 * evenly; a last pixel only partly inside span counts for that part, at
 * the middle of it (a part box holds the mean of the pixels it has). */
static int axis_init(axis *ax, int in, double span, int out)
{
	double scale = span / out;
	double fs = scale > 1.0 ? scale : 1.0;
	double support = 3.0 * fs;
	double *d = NULL;
	int rc = -1;

	/* At most ceil(2 * support) + 1 integers lie strictly inside
	 * (center - support, center + support), and never more than in. */
	double bound = ceil(2.0 * support) + 1.0;
	int stride = bound < in ? (int)bound : in;
	/* a multiple of 4: the vertical filter reads weights in pairs, the
	 * AVX2 horizontal one four at a time (the extra weights stay 0) */
	stride = (stride + 3) & ~3;

	memset(ax, 0, sizeof *ax);
	ax->n_in = in;
	ax->span = span;
	ax->n_out = out;
	ax->stride = stride;
	ax->start = malloc((size_t)out * sizeof *ax->start);
	ax->count = malloc((size_t)out * sizeof *ax->count);
	if ((size_t)out > SIZE_MAX / sizeof(int16_t) / (size_t)stride)
		goto out;
	ax->w = calloc((size_t)out * (size_t)stride, sizeof *ax->w);
	d = malloc((size_t)stride * sizeof *d);
	if (!ax->start || !ax->count || !ax->w || !d)
		goto out;

	pthread_once(&ktab_once, ktab_init);
	for (int i = 0; i < out; i++) {
		double center = (i + 0.5) * scale - 0.5;
		int lo = (int)floor(center - support) + 1;
		int hi = (int)ceil(center + support) - 1;
		if (lo < 0)
			lo = 0;
		if (hi > in - 1)
			hi = in - 1;
		int n = hi - lo + 1;
		if (n > stride)         /* cannot happen (see bound); keeps w in range */
			n = stride;

		double sum = 0.0;
		int big = 0;
		for (int k = 0; k < n; k++) {
			double at = lo + k, cover = 1.0;
			if (lo + k == in - 1 && span < in) {
				/* a part pixel: weighed by its share, at its middle */
				cover = span - (in - 1);
				at = in - 1.5 + cover / 2.0;
			}
			d[k] = kernel((at - center) / fs) * cover;
			sum += d[k];
			if (d[k] > d[big])
				big = k;
		}
		int16_t *w = ax->w + (size_t)i * (size_t)stride;
		if (sum < 1e-6) {
			/* Not reachable with a centre inside the image; nearest tap
			 * rather than a division by ~0 if it ever were. */
			w[big] = WONE;
		} else {
			/* Round each weight, then give the rounding residue to the
			 * largest one, so the run sums to exactly WONE. */
			int isum = 0;
			for (int k = 0; k < n; k++) {
				/* lround's rounding (half away from 0), without the call */
				double v = d[k] / sum * WONE;
				w[k] = (int16_t)(v >= 0.0 ? (int)(v + 0.5) : -(int)(0.5 - v));
				isum += w[k];
			}
			w[big] = (int16_t)(w[big] + (WONE - isum));
		}
		ax->start[i] = lo;
		ax->count[i] = n;
		if (n > ax->maxtaps)
			ax->maxtaps = n;
	}
	rc = 0;
out:
	free(d);
	if (rc != 0)
		axis_free(ax);
	return rc;
}

/*
 * Tables are kept per thread for the next call: a catalogue's pictures come
 * in a few sizes, and each picture's widths ask for the same few tables
 * every time (making them was 2% of the instructions of a run of small
 * images).  Up to AXIS_KEEP of them, least recently used out first, none
 * over AXIS_KEEP_BYTES of weights (those are made and freed per call).  Per
 * thread, so there is no lock; a thread's tables go when it ends.
 */
#define AXIS_KEEP 8
_Static_assert(AXIS_KEEP > 1, "resample_resize holds two kept tables at once");
#define AXIS_KEEP_BYTES (256 * 1024)

typedef struct axis_keep {
	axis ax[AXIS_KEEP];             /* n_in 0: an empty slot */
	unsigned long used[AXIS_KEEP];  /* clock at the last use */
	unsigned long clock;
} axis_keep;

static pthread_key_t keep_key;
static pthread_once_t keep_once = PTHREAD_ONCE_INIT;
static int keep_ok;

static void keep_free(void *p)
{
	axis_keep *k = p;

	for (int i = 0; i < AXIS_KEEP; i++)
		axis_free(&k->ax[i]);
	free(k);
}

static void keep_init(void)
{
	keep_ok = pthread_key_create(&keep_key, keep_free) == 0;
}

/* This thread's kept tables, NULL if they cannot be had (then none are). */
static axis_keep *keep_get(void)
{
	axis_keep *k;

	pthread_once(&keep_once, keep_init);
	if (!keep_ok)
		return NULL;
	if ((k = pthread_getspecific(keep_key)) == NULL && (k = calloc(1, sizeof *k)) != NULL
	    && pthread_setspecific(keep_key, k) != 0) {
		free(k);
		k = NULL;
	}
	return k;
}

/* The table for in (spanning span) -> out: a kept one, or *tmp (the
 * caller axis_free()s it, which is harmless when it was kept instead);
 * NULL: out of memory. */
static const axis *axis_get(int in, double span, int out, axis *tmp)
{
	axis_keep *k = keep_get();
	int old = 0;

	memset(tmp, 0, sizeof *tmp);
	if (k != NULL)
		for (int i = 0; i < AXIS_KEEP; i++) {
			if (k->ax[i].n_in == in && k->ax[i].span == span && k->ax[i].n_out == out) {
				k->used[i] = ++k->clock;
				return &k->ax[i];
			}
			if (k->used[i] < k->used[old])
				old = i;
		}
	if (axis_init(tmp, in, span, out) != 0)
		return NULL;
	if (k == NULL || (size_t)out * (size_t)tmp->stride * sizeof *tmp->w > AXIS_KEEP_BYTES)
		return tmp;
	axis_free(&k->ax[old]);
	k->ax[old] = *tmp;
	k->used[old] = ++k->clock;
	memset(tmp, 0, sizeof *tmp);
	return &k->ax[old];
}

/*
 * Vertical filter: acc[x] = sum_k w[k] * rows[k][x] for x < width.  Two
 * input types: uint8 straight from the caller's image, int16 from our ring.
 *
 * This loop is nearly all of a thumbnail's time (6 taps per source sample),
 * so on x86 it is written with SSE2 (baseline on x86-64, no dispatch needed)
 * rather than left to the auto-vectoriser: pmaddwd takes two taps per
 * instruction on interleaved row pairs, which gcc and clang never find on
 * their own.  Measured on a 4000-wide RGB row set: 2x the auto-vectorised
 * loop at -O2, and 6x at -O3 (where gcc's own version gets slower).  The
 * portable loops below are the same arithmetic, kept for other targets and
 * for the tests (build with -DRESAMPLE_PORTABLE); their fixed-size VBLK
 * block is what lets gcc -O2's "very cheap" vectoriser take them (no
 * epilogue, no alias checks thanks to restrict).
 *
 * Pairs: the caller passes n + 1 row pointers (rows[n] a valid duplicate)
 * and w[n] == 0 when n is odd (axis strides are even), so the last pair
 * needs no special case.
 */
#if defined(__SSE2__) && !defined(RESAMPLE_PORTABLE)
#include <emmintrin.h>
#define VSIMD 16                        /* samples per SSE2 block */

static __m128i pair_weight(const int16_t *w)
{
	int32_t pr;
	memcpy(&pr, w, sizeof pr);      /* w[0] low half, w[1] high: little-endian */
	return _mm_set1_epi32(pr);
}

static size_t vblocks_u8(const uint8_t *const *rows, const int16_t *w, int n,
                         size_t width, int32_t *acc)
{
	const __m128i z = _mm_setzero_si128();
	size_t x0 = 0;
	for (; x0 + VSIMD <= width; x0 += VSIMD) {
		__m128i a0 = z, a1 = z, a2 = z, a3 = z;
		for (int k = 0; k < n; k += 2) {
			__m128i ww = pair_weight(w + k);
			__m128i r0 = _mm_loadu_si128((const __m128i *)(rows[k] + x0));
			__m128i r1 = _mm_loadu_si128((const __m128i *)(rows[k + 1] + x0));
			__m128i lo = _mm_unpacklo_epi8(r0, r1);
			__m128i hi = _mm_unpackhi_epi8(r0, r1);
			a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi8(lo, z), ww));
			a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi8(lo, z), ww));
			a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi8(hi, z), ww));
			a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi8(hi, z), ww));
		}
		_mm_storeu_si128((__m128i *)(acc + x0), a0);
		_mm_storeu_si128((__m128i *)(acc + x0 + 4), a1);
		_mm_storeu_si128((__m128i *)(acc + x0 + 8), a2);
		_mm_storeu_si128((__m128i *)(acc + x0 + 12), a3);
	}
	return x0;
}

static size_t vblocks_s16(const int16_t *const *rows, const int16_t *w, int n,
                          size_t width, int32_t *acc)
{
	const __m128i z = _mm_setzero_si128();
	size_t x0 = 0;
	for (; x0 + VSIMD <= width; x0 += VSIMD) {
		__m128i a0 = z, a1 = z, a2 = z, a3 = z;
		for (int k = 0; k < n; k += 2) {
			__m128i ww = pair_weight(w + k);
			const int16_t *p0 = rows[k] + x0, *p1 = rows[k + 1] + x0;
			__m128i r0 = _mm_loadu_si128((const __m128i *)p0);
			__m128i r1 = _mm_loadu_si128((const __m128i *)p1);
			__m128i s0 = _mm_loadu_si128((const __m128i *)(p0 + 8));
			__m128i s1 = _mm_loadu_si128((const __m128i *)(p1 + 8));
			a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi16(r0, r1), ww));
			a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi16(r0, r1), ww));
			a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi16(s0, s1), ww));
			a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi16(s0, s1), ww));
		}
		_mm_storeu_si128((__m128i *)(acc + x0), a0);
		_mm_storeu_si128((__m128i *)(acc + x0 + 4), a1);
		_mm_storeu_si128((__m128i *)(acc + x0 + 8), a2);
		_mm_storeu_si128((__m128i *)(acc + x0 + 12), a3);
	}
	return x0;
}
#else
#define VBLK 32                         /* samples per portable block */

static size_t vblocks_u8(const uint8_t *const *rows, const int16_t *restrict w, int n,
                         size_t width, int32_t *restrict acc)
{
	size_t x0 = 0;
	for (; x0 + VBLK <= width; x0 += VBLK) {
		int32_t blk[VBLK] = { 0 };
		for (int k = 0; k < n; k++) {
			const uint8_t *restrict r = rows[k] + x0;
			int32_t wk = w[k];
			for (int j = 0; j < VBLK; j++)
				blk[j] += wk * r[j];
		}
		memcpy(acc + x0, blk, sizeof blk);
	}
	return x0;
}

static size_t vblocks_s16(const int16_t *const *rows, const int16_t *restrict w, int n,
                          size_t width, int32_t *restrict acc)
{
	size_t x0 = 0;
	for (; x0 + VBLK <= width; x0 += VBLK) {
		int32_t blk[VBLK] = { 0 };
		for (int k = 0; k < n; k++) {
			const int16_t *restrict r = rows[k] + x0;
			int32_t wk = w[k];
			for (int j = 0; j < VBLK; j++)
				blk[j] += wk * r[j];
		}
		memcpy(acc + x0, blk, sizeof blk);
	}
	return x0;
}
#endif

/* Whole blocks first, then the last width % block samples one by one. */
static void vtail_u8(const uint8_t *const *rows, const int16_t *restrict w, int n,
                     size_t x, size_t width, int32_t *restrict acc)
{
	for (; x < width; x++) {
		int32_t a = 0;
		for (int k = 0; k < n; k++)
			a += w[k] * rows[k][x];
		acc[x] = a;
	}
}

static void vfilter_u8(const uint8_t *const *rows, const int16_t *restrict w, int n,
                       size_t width, int32_t *restrict acc)
{
	vtail_u8(rows, w, n, vblocks_u8(rows, w, n, width, acc), width, acc);
}

static size_t vblocks_s16_any(const int16_t *const *rows, const int16_t *w, int n,
                              size_t width, int32_t *acc);

static void vfilter_s16(const int16_t *const *rows, const int16_t *restrict w, int n,
                        size_t width, int32_t *restrict acc)
{
	for (size_t x = vblocks_s16_any(rows, w, n, width, acc); x < width; x++) {
		int32_t a = 0;
		for (int k = 0; k < n; k++)
			a += w[k] * rows[k][x];
		acc[x] = a;
	}
}

/*
 * Horizontal filter over interleaved channels.  Written once with the
 * channel count as a parameter and instantiated per count below, so each
 * copy has its accumulators in registers and no per-tap channel loop.
 */
static inline void hfilter_n(const int16_t *restrict in, const axis *ax, int ch,
                             int32_t *restrict out)
{
	const int16_t *w = ax->w;
	for (int i = 0; i < ax->n_out; i++, w += ax->stride, out += ch) {
		const int16_t *restrict p = in + (size_t)ax->start[i] * (size_t)ch;
		int n = ax->count[i];
		int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
		for (int k = 0; k < n; k++, p += ch) {
			int32_t wk = w[k];
			a0 += wk * p[0];
			if (ch > 1)
				a1 += wk * p[1];
			if (ch > 2)
				a2 += wk * p[2];
			if (ch > 3)
				a3 += wk * p[3];
		}
		out[0] = a0;
		if (ch > 1)
			out[1] = a1;
		if (ch > 2)
			out[2] = a2;
		if (ch > 3)
			out[3] = a3;
	}
}

static void hfilter1(const int16_t *restrict in, const axis *ax, int32_t *restrict out)
{
	hfilter_n(in, ax, 1, out);
}

static void hfilter2(const int16_t *restrict in, const axis *ax, int32_t *restrict out)
{
	hfilter_n(in, ax, 2, out);
}

#if !defined(__SSE2__) || defined(RESAMPLE_PORTABLE)
static void hfilter3(const int16_t *restrict in, const axis *ax, int32_t *restrict out)
{
	hfilter_n(in, ax, 3, out);
}

static void hfilter4(const int16_t *restrict in, const axis *ax, int32_t *restrict out)
{
	hfilter_n(in, ax, 4, out);
}
#endif

#if defined(__SSE2__) && !defined(RESAMPLE_PORTABLE)
/*
 * RGB and RGBA on SSE2: two taps per pmaddwd.  Pixels k and k+1 are loaded
 * as four samples each and interleaved sample by sample, so one multiply-add
 * against the weight pair gives the four channel sums of both taps (with
 * RGB the fourth lane is the next pixel's red, and is dropped).  An odd
 * count's last pair has weight 0 for its second tap (axis strides are
 * even), which may lie past the row: row buffers carry HPAD zeroed samples.
 * Same integer sums as hfilter_n, so the same output bit for bit.
 */
static void hfilter_simd(const int16_t *restrict in, const axis *ax, int ch, int32_t *restrict out)
{
	const int16_t *w = ax->w;
	for (int i = 0; i < ax->n_out; i++, w += ax->stride, out += ch) {
		const int16_t *p = in + (size_t)ax->start[i] * (size_t)ch;
		int n = ax->count[i];
		__m128i acc = _mm_setzero_si128();
		int32_t r[4];
		for (int k = 0; k < n; k += 2, p += 2 * ch) {
			__m128i a = _mm_loadl_epi64((const __m128i *)p);
			__m128i b = _mm_loadl_epi64((const __m128i *)(p + ch));
			acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), pair_weight(w + k)));
		}
		_mm_storeu_si128((__m128i *)r, acc);
		out[0] = r[0];
		out[1] = r[1];
		out[2] = r[2];
		if (ch == 4)
			out[3] = r[3];
	}
}
#define HPAD 16
#else
#define HPAD 0
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(RESAMPLE_PORTABLE)
/*
 * AVX2, chosen at run time (resample_isa): the same sums, twice as wide.
 * Compiled for AVX2 function by function (target attribute), so the rest
 * of the program still runs on any x86-64.
 */
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#define AVX2 __attribute__((target("avx2")))

/*
 * Vertical pass over uint8 rows straight into the int16 row the horizontal
 * pass reads, 32 samples per block: the int32 sums never go to memory.
 * cvtepu8 widens 16 samples of each row; interleaving the two rows of a
 * tap pair works within 128-bit lanes, so the four accumulators hold
 * samples {0-3|8-11}, {4-7|12-15}, {16-19|24-27}, {20-23|28-31}, and
 * packs (saturating, like narrow's clamp), which also works within lanes,
 * puts each pair back in order.  Returns the samples done; the caller
 * finishes the tail.
 */
AVX2 static size_t vblocks_u8_s16_avx2(const uint8_t *const *rows, const int16_t *w, int n,
                                       size_t width, int shift, int16_t *out)
{
	const __m256i half = _mm256_set1_epi32(1 << (shift - 1));
	const __m128i sh = _mm_cvtsi32_si128(shift);
	size_t x0 = 0;
	for (; x0 + 32 <= width; x0 += 32) {
		__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
		for (int k = 0; k < n; k += 2) {
			int32_t pr;
			memcpy(&pr, w + k, sizeof pr);
			__m256i ww = _mm256_set1_epi32(pr);
			const uint8_t *p0 = rows[k] + x0, *p1 = rows[k + 1] + x0;
			__m256i r0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p0));
			__m256i r1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p1));
			__m256i s0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p0 + 16)));
			__m256i s1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p1 + 16)));
			a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(r0, r1), ww));
			a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(r0, r1), ww));
			a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi16(s0, s1), ww));
			a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi16(s0, s1), ww));
		}
		a0 = _mm256_sra_epi32(_mm256_add_epi32(a0, half), sh);
		a1 = _mm256_sra_epi32(_mm256_add_epi32(a1, half), sh);
		a2 = _mm256_sra_epi32(_mm256_add_epi32(a2, half), sh);
		a3 = _mm256_sra_epi32(_mm256_add_epi32(a3, half), sh);
		/* packs(a0, a1): {0-3, 4-7 | 8-11, 12-15}: already in order */
		_mm256_storeu_si256((__m256i *)(out + x0), _mm256_packs_epi32(a0, a1));
		_mm256_storeu_si256((__m256i *)(out + x0 + 16), _mm256_packs_epi32(a2, a3));
	}
	return x0;
}

/* vblocks_s16 at 16 samples a row per step, int32 sums as before. */
AVX2 static size_t vblocks_s16_avx2(const int16_t *const *rows, const int16_t *w, int n,
                                    size_t width, int32_t *acc)
{
	size_t x0 = 0;
	for (; x0 + 16 <= width; x0 += 16) {
		__m256i a0 = _mm256_setzero_si256(), a1 = a0;
		for (int k = 0; k < n; k += 2) {
			int32_t pr;
			memcpy(&pr, w + k, sizeof pr);
			__m256i ww = _mm256_set1_epi32(pr);
			__m256i r0 = _mm256_loadu_si256((const __m256i *)(rows[k] + x0));
			__m256i r1 = _mm256_loadu_si256((const __m256i *)(rows[k + 1] + x0));
			a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(r0, r1), ww));
			a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(r0, r1), ww));
		}
		/* a0 = {0-3 | 8-11}, a1 = {4-7 | 12-15} */
		_mm256_storeu_si256((__m256i *)(acc + x0), _mm256_permute2x128_si256(a0, a1, 0x20));
		_mm256_storeu_si256((__m256i *)(acc + x0 + 8), _mm256_permute2x128_si256(a0, a1, 0x31));
	}
	return x0;
}

/*
 * Horizontal pass for RGB and RGBA, four taps per step: the low lane takes
 * taps k, k+1 and the high lane k+2, k+3, as hfilter_simd does with two.
 * Each lane is one unaligned load starting at its first tap's pixel, and
 * one byte shuffle lays its two pixels' samples out in pairs for pmaddwd.
 * Strides are multiples of 4 with zero weights past the count, and row
 * buffers carry HPAD zeroed samples for the reads past the last tap.
 */
AVX2 static void hfilter_avx2(const int16_t *restrict in, const axis *ax, int ch,
                              int32_t *restrict out)
{
	const __m256i lanes = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
	/* int16 samples s0..s7 of a lane -> (s0,s0+ch), (s1,s1+ch), ... */
	const __m256i pairs = ch == 3
		? _mm256_setr_epi8(0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11, 6, 7, 12, 13,
		                   0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11, 6, 7, 12, 13)
		: _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
		                   0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
	const int16_t *w = ax->w;
	for (int i = 0; i < ax->n_out; i++, w += ax->stride, out += ch) {
		const int16_t *p = in + (size_t)ax->start[i] * (size_t)ch;
		int n = ax->count[i];
		__m256i acc = _mm256_setzero_si256();
		int32_t r[4];
		for (int k = 0; k < n; k += 4, p += 4 * ch) {
			__m256i v = _mm256_loadu2_m128i((const __m128i *)(p + 2 * ch), (const __m128i *)p);
			__m256i ww = _mm256_permutevar8x32_epi32(
				_mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(w + k))), lanes);
			acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(v, pairs), ww));
		}
		__m128i sum = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
		_mm_storeu_si128((__m128i *)r, sum);
		out[0] = r[0];
		out[1] = r[1];
		out[2] = r[2];
		if (ch == 4)
			out[3] = r[3];
	}
}
#endif

/* Which loops run: AVX2 where the CPU has it, else SSE2 (or portable). */
static int use_avx2 = -1;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void isa_init(void)
{
#ifdef HAVE_AVX2_PATH
	const char *e = getenv("THUMBD_SIMD");
	__builtin_cpu_init();
	use_avx2 = __builtin_cpu_supports("avx2") && !(e && strcmp(e, "sse2") == 0);
#else
	use_avx2 = 0;
#endif
}

int resample_force_isa(const char *isa)
{
	pthread_once(&isa_once, isa_init);
	if (strcmp(isa, "sse2") == 0) {
		use_avx2 = 0;
		return 0;
	}
#ifdef HAVE_AVX2_PATH
	if (strcmp(isa, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
		use_avx2 = 1;
		return 0;
	}
#endif
	return -1;
}

const char *resample_isa(void)
{
	pthread_once(&isa_once, isa_init);
#if defined(__SSE2__) && !defined(RESAMPLE_PORTABLE)
	return use_avx2 ? "avx2" : "sse2";
#else
	return "portable";
#endif
}

static void hfilter(const int16_t *restrict in, const axis *ax, int ch, int32_t *restrict out)
{
	switch (ch) {
	case 1: hfilter1(in, ax, out); break;
	case 2: hfilter2(in, ax, out); break;
#if defined(__SSE2__) && !defined(RESAMPLE_PORTABLE)
	default:
#ifdef HAVE_AVX2_PATH
		if (use_avx2) {
			hfilter_avx2(in, ax, ch, out);
			break;
		}
#endif
		hfilter_simd(in, ax, ch, out);
		break;
#else
	case 3: hfilter3(in, ax, out); break;
	default: hfilter4(in, ax, out); break;
#endif
	}
}

/* int32 accumulator -> int16 intermediate: drop `shift` bits with rounding.
 * The clamp never bites for real weights; it keeps the int16 store defined.
 * Runs once per full-width row, hence the constant-length blocks gcc -O2
 * will vectorise, and a scalar tail. */
#define CBLK 16

static inline int16_t narrow(int32_t acc, int32_t half, int shift)
{
	int32_t v = (acc + half) >> shift;
	v = v < INT16_MIN ? INT16_MIN : v;
	v = v > INT16_MAX ? INT16_MAX : v;
	return (int16_t)v;
}

static void to_s16(const int32_t *restrict acc, size_t n, int shift, int16_t *restrict out)
{
	int32_t half = 1 << (shift - 1);
	size_t x0 = 0;
	for (; x0 + CBLK <= n; x0 += CBLK)
		for (int j = 0; j < CBLK; j++)
			out[x0 + j] = narrow(acc[x0 + j], half, shift);
	for (; x0 < n; x0++)
		out[x0] = narrow(acc[x0], half, shift);
}

static size_t vblocks_s16_any(const int16_t *const *rows, const int16_t *w, int n,
                              size_t width, int32_t *acc)
{
#ifdef HAVE_AVX2_PATH
	if (use_avx2)
		return vblocks_s16_avx2(rows, w, n, width, acc);
#endif
	return vblocks_s16(rows, w, n, width, acc);
}

/* The direct path's vertical pass: uint8 rows in, the int16 row out. */
static void vfilter_u8_s16(const uint8_t *const *rows, const int16_t *restrict w, int n,
                           size_t width, int shift, int32_t *restrict acc, int16_t *restrict out)
{
	size_t x = 0;

#ifdef HAVE_AVX2_PATH
	if (use_avx2)
		x = vblocks_u8_s16_avx2(rows, w, n, width, shift, out);
#endif
	/* what AVX2 left (all of it without AVX2) goes through the int32 row */
	if (x == 0)
		vfilter_u8(rows, w, n, width, acc);
	else
		vtail_u8(rows, w, n, x, width, acc);
	to_s16(acc + x, width - x, shift, out + x);
}

/*
 * Source row -> int16 intermediates.  Opaque samples go to scale 64.  With
 * alpha, colour becomes c * a / 4 (0..16256): that is premultiplied colour
 * at scale 63.75, close enough to 64 to share the headroom, and it needs no
 * division by 255 (the un-premultiply below cancels the factor exactly).
 * Alpha itself goes to scale 64 like any other sample.
 */
static inline void load_alpha_n(const uint8_t *restrict src, int w, int ch,
                                int16_t *restrict out)
{
	int ac = ch - 1;
	for (int x = 0; x < w; x++, src += ch, out += ch) {
		int32_t a = src[ac];
		for (int c = 0; c < ac; c++)
			out[c] = (int16_t)((src[c] * a + 2) >> 2);
		out[ac] = (int16_t)(a << IBITS);
	}
}

#ifdef VSIMD
/*
 * The same for 16 samples at a time, since with alpha this conversion costs
 * as much as the filter: each pixel's alpha is spread over its lanes, the
 * alpha lane itself multiplied by 256 instead, so one 16-bit multiply and
 * shift serve colour (c * a >> 2) and alpha (a << 6) alike.  c * a fits
 * unsigned 16 bits, hence the logical shift.
 */
static size_t load_alpha_sse2(const uint8_t *src, size_t n, int ch, int16_t *out)
{
	const __m128i z = _mm_setzero_si128(), two = _mm_set1_epi16(2);
	const __m128i amask = ch == 4 ? _mm_set_epi16(-1, 0, 0, 0, -1, 0, 0, 0)
	                              : _mm_set_epi16(-1, 0, -1, 0, -1, 0, -1, 0);
	const __m128i a256 = _mm_and_si128(amask, _mm_set1_epi16(256));
	size_t x = 0;
	for (; x + 16 <= n; x += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(src + x));
		__m128i h[2] = { _mm_unpacklo_epi8(v, z), _mm_unpackhi_epi8(v, z) };
		for (int i = 0; i < 2; i++) {
			__m128i m = ch == 4
				? _mm_shufflehi_epi16(_mm_shufflelo_epi16(h[i], 0xff), 0xff)
				: _mm_shufflehi_epi16(_mm_shufflelo_epi16(h[i], 0xf5), 0xf5);
			m = _mm_or_si128(_mm_andnot_si128(amask, m), a256);
			__m128i r = _mm_srli_epi16(_mm_add_epi16(_mm_mullo_epi16(h[i], m), two), 2);
			_mm_storeu_si128((__m128i *)(out + x + 8 * (size_t)i), r);
		}
	}
	return x;
}
#endif

static void load_row(const uint8_t *restrict src, int w, int ch, int16_t *restrict out)
{
	size_t n = (size_t)w * (size_t)ch;
	if (ch == 2 || ch == 4) {
		size_t done = 0;
#ifdef VSIMD
		done = load_alpha_sse2(src, n, ch, out);
#endif
		if (ch == 2)
			load_alpha_n(src + done, w - (int)(done / 2), 2, out + done);
		else
			load_alpha_n(src + done, w - (int)(done / 4), 4, out + done);
	} else {
		for (size_t x = 0; x < n; x++)
			out[x] = (int16_t)(src[x] << IBITS);
	}
}

/* Both passes done: accumulators are at scale 2^(WBITS + IBITS). */
#define OBITS (WBITS + IBITS)

static inline uint8_t to_u8(int32_t acc)
{
	int32_t v = (acc + (1 << (OBITS - 1))) >> OBITS;
	v = v < 0 ? 0 : v;
	v = v > 255 ? 255 : v;
	return (uint8_t)v;
}

/* In CBLK blocks, as to_s16, so that gcc -O2 vectorises it: it runs on
 * every output sample, and the plain loop was 4% of the instructions of a
 * run of small images. */
static void finish_plain(const int32_t *restrict acc, size_t n, uint8_t *restrict out)
{
	size_t x0 = 0;
	for (; x0 + CBLK <= n; x0 += CBLK)
		for (int j = 0; j < CBLK; j++)
			out[x0 + j] = to_u8(acc[x0 + j]);
	for (; x0 < n; x0++)
		out[x0] = to_u8(acc[x0]);
}

/*
 * Un-premultiply.  The divisor is the filtered alpha *before* its clamp to
 * 255: where alpha rings past opaque next to a transparent edge, colour and
 * alpha overshoot together and the ratio is still the true colour, while
 * dividing by the clamped 255 would brighten a halo into the edge.  Alpha
 * goes to quarter steps (q) and is divided through a reciprocal table made
 * once per call, so there is no division per pixel; quarter steps keep the
 * colour error under half a level wherever alpha is 64 or more.
 */
#define QBITS 2                         /* fraction bits of q */
#define QMAX (512 << QBITS)             /* table size: alpha up to 2x opaque */

static void recip_init(uint32_t *recip)
{
	/* Colour channels end at p = c * a (see load_row: scale 63.75 * 4 *
	 * 255/255), alpha at q = 4 * a, so c = 4 p / q = p * recip[q] >> 28. */
	recip[0] = 0;
	for (uint32_t q = 1; q < QMAX; q++)
		recip[q] = (uint32_t)(((1u << 30) + q / 2) / q);
}

static void finish_alpha(const int32_t *restrict acc, int w, int ch,
                         const uint32_t *restrict recip, uint8_t *restrict out)
{
	int ac = ch - 1;
	for (int x = 0; x < w; x++, acc += ch, out += ch) {
		int32_t a = (acc[ac] + (1 << (OBITS - 1))) >> OBITS;
		int32_t q = (acc[ac] + (1 << (OBITS - QBITS - 1))) >> (OBITS - QBITS);
		a = a < 0 ? 0 : a;
		a = a > 255 ? 255 : a;
		q = q < 0 ? 0 : q;
		q = q > QMAX - 1 ? QMAX - 1 : q;
		out[ac] = (uint8_t)a;
		for (int c = 0; c < ac; c++) {
			/* p = c * a; not clamped above, since it overshoots
			 * along with alpha (see above) */
			int32_t p = (acc[c] + (1 << (OBITS - 9))) >> (OBITS - 8);
			p = p < 0 ? 0 : p;
			uint64_t v = a ? ((uint64_t)p * recip[q] + (1u << 27)) >> 28 : 0;
			out[c] = (uint8_t)(v > 255 ? 255 : v);
		}
	}
}

/* a * b into *r unless it overflows size_t. */
static int mul_size(size_t a, size_t b, size_t *r)
{
	if (b != 0 && a > SIZE_MAX / b)
		return -1;
	*r = a * b;
	return 0;
}

int resample_resize(const img *src, img *dst, int dst_w, int dst_h)
{
	if (!src)
		return resample_resize_span(src, 0.0, 0.0, dst, dst_w, dst_h);
	return resample_resize_span(src, src->w, src->h, dst, dst_w, dst_h);
}

int resample_resize_span(const img *src, double span_w, double span_h, img *dst, int dst_w, int dst_h)
{
	axis ah_tmp = { 0 }, av_tmp = { 0 };
	const axis *ah, *av;
	int16_t *ring = NULL, *row16 = NULL;
	int32_t *vacc = NULL, *hacc = NULL;
	const uint8_t **rows8 = NULL;
	const int16_t **rows16 = NULL;
	uint32_t recip[QMAX];
	int rc = -1;

	if (!dst || dst == src)
		return -1;
	memset(dst, 0, sizeof *dst);
	if (!src || !src->px || src->channels < 1 || src->channels > 4
	    || src->w < 1 || src->h < 1 || src->w > MAX_SIDE || src->h > MAX_SIDE
	    || dst_w < 1 || dst_h < 1 || dst_w > MAX_SIDE || dst_h > MAX_SIDE
	    || src->stride < (size_t)src->w * (size_t)src->channels
	    || !(span_w > src->w - 1 && span_w <= src->w && span_h > src->h - 1 && span_h <= src->h))
		return -1;

	int ch = src->channels;
	int alpha = ch == 2 || ch == 4;
	size_t sw = (size_t)src->w * (size_t)ch;     /* samples per source row */
	size_t dw = (size_t)dst_w * (size_t)ch;      /* samples per output row */

	pthread_once(&isa_once, isa_init);
	/* av's lookup cannot push out ah's kept table: that one was used
	 * last, and the least recently used of AXIS_KEEP > 1 goes */
	if (!(ah = axis_get(src->w, span_w, dst_w, &ah_tmp)) || !(av = axis_get(src->h, span_h, dst_h, &av_tmp)))
		goto out;

	/* Work estimate per order; doubles, since the products can pass 2^53
	 * only for absurd sizes and then any answer is fine. */
	double th = ah->maxtaps, tv = av->maxtaps;
	double v_first = (double)sw * dst_h * tv + 3.0 * (double)dw * dst_h * th;
	double h_first = 3.0 * (double)src->h * dw * th + (double)dw * dst_h * tv;
	int hfirst = h_first < v_first;
	/* With alpha, vertical first keeps a ring of R full-width int16 rows;
	 * a huge vertical reduction of a wide image (R in the thousands) would
	 * make that gigabytes, while the other order's ring is output-wide. */
	if (!hfirst && alpha && tv * (double)sw * sizeof(int16_t) > RING_BUDGET)
		hfirst = 1;
	/* Opaque + vertical first: the ring is the caller's rows themselves. */
	int direct = !hfirst && !alpha;
	size_t ringw = hfirst ? dw : sw;
	int R = av->maxtaps;

	size_t ringn;
	if (mul_size(ringw, (size_t)R, &ringn) != 0
	    || ringn > SIZE_MAX / sizeof *ring)
		goto out;
	if (!direct && !(ring = malloc(ringn * sizeof *ring)))
		goto out;
	row16 = calloc(sw + HPAD, sizeof *row16);     /* HPAD: see hfilter_simd */
	vacc = malloc(ringw * sizeof *vacc);
	hacc = malloc(dw * sizeof *hacc);
	rows8 = malloc(((size_t)R + 1) * sizeof *rows8);
	rows16 = malloc(((size_t)R + 1) * sizeof *rows16);
	if (!row16 || !vacc || !hacc || !rows8 || !rows16)
		goto out;
	if (img_alloc(dst, dst_w, dst_h, ch) != 0)
		goto out;

	if (alpha)
		recip_init(recip);

	int next = 0;   /* first source row not yet in the ring */
	for (int i = 0; i < dst_h; i++) {
		int s = av->start[i], n = av->count[i];
		const int16_t *w = av->w + (size_t)i * (size_t)av->stride;
		uint8_t *drow = dst->px + (size_t)i * dst->stride;

		if (direct) {
			for (int k = 0; k < n; k++)
				rows8[k] = src->px + (size_t)(s + k) * src->stride;
			rows8[n] = rows8[n - 1];
			vfilter_u8_s16(rows8, w, n, sw, WBITS - IBITS, vacc, row16);
		} else {
			/* Windows only move forward, so a row is loaded once and a
			 * ring of R (the widest window) rows always holds the
			 * current one. */
			if (next < s)
				next = s;
			for (; next < s + n; next++) {
				const uint8_t *srow = src->px + (size_t)next * src->stride;
				int16_t *slot = ring + (size_t)(next % R) * ringw;
				if (hfirst) {
					load_row(srow, src->w, ch, row16);
					hfilter(row16, ah, ch, hacc);
					to_s16(hacc, dw, WBITS, slot);
				} else {
					load_row(srow, src->w, ch, slot);
				}
			}
			for (int k = 0; k < n; k++)
				rows16[k] = ring + (size_t)((s + k) % R) * ringw;
			rows16[n] = rows16[n - 1];
			vfilter_s16(rows16, w, n, ringw, vacc);
			if (!hfirst)
				to_s16(vacc, sw, WBITS, row16);
		}

		const int32_t *fin = vacc;
		if (!hfirst) {
			hfilter(row16, ah, ch, hacc);
			fin = hacc;
		}
		if (alpha)
			finish_alpha(fin, dst_w, ch, recip, drow);
		else
			finish_plain(fin, dw, drow);
	}
	rc = 0;
out:
	if (rc != 0)
		img_release(dst);
	axis_free(&ah_tmp);
	axis_free(&av_tmp);
	free(ring);
	free(row16);
	free(vacc);
	free(hacc);
	free(rows8);
	free(rows16);
	return rc;
}
