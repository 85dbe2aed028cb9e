/*
 * icc: embedded ICC profiles to sRGB through Little CMS 2.  What and why
 * in include/icc.h; how here.
 *
 * Why after the resize.  A transform costs per pixel; applied to the
 * thumbnails (the 200-px one, the narrower ones being made from it) it
 * touches some 40,000 pixels instead of the millions of a decode, which is
 * what vipsthumbnail does too.  Resampling before the transform mixes
 * values in the source's encoding rather than sRGB's; both are gamma
 * encodings of nearly the same shape, and the difference is far below a
 * level.
 *
 * sRGB detection.  lcms2 would happily build an sRGB -> sRGB transform
 * and shift some values by a level, and the check must be cheap and exact
 * about what it lets through, so it reads the profile rather than running
 * pixels: a matrix-shaper RGB profile (no A2B/D2B tables, which lcms2
 * would prefer over the matrix) whose three colorants are within
 * SRGB_XYZ_TOL of lcms2's own sRGB's, whose white point is D50 (ICC v4)
 * or D65 (v2 profiles record the display's white there), and whose three
 * tone curves, read back through the inverse sRGB curve, land within half
 * a level of where they started at each of the 256 codes.  A gray profile
 * is sRGB gray when its one curve passes the same test.  Every sRGB
 * profile of the shared corpus passes (HP/Microsoft's v2, sRGB2014, the
 * "sRGB Gamut with sRGB Transfer" v4 of Ultra HDR files, two more); Adobe
 * RGB, Display P3, ProPhoto and Apple's Generic RGB do not.
 *
 * Cache.  ICC_CACHE entries per thread, least recently used replaced, each
 * the answer for one (profile bytes, pixel layout): a transform, "sRGB, do
 * nothing", or "unusable, and why".  An entry keeps a copy of the bytes it
 * was made from and a hit compares them, so two profiles that share a hash
 * can never share a transform (the hash only spares most of the compares).
 * The copies together stay within ICC_CACHE_BYTES, the oldest entries
 * going first to make room: eight distinct 4 MB profiles held 33 MB per
 * worker for its life, outside resize.decode_memory; now at most 4 MB of
 * copies (photos' profiles are 0.5-4 KB, a SWOP CMYK one 557 KB) plus the
 * transforms (a few hundred KB each at most).
 *
 * Allocations.  lcms2 reads a table's size from the tag and allocates
 * (and zeroes) it before reading the entries, which a short profile then
 * does not have: a 276-byte CMYK profile whose lut16 A2B0 claims 80 grid
 * points had it allocate 236 MB and spend 0.9 s, an RGB one 97 MB, for
 * every image, outside resize.decode_memory.  Everything lcms2 legitimately
 * holds comes from a profile of at most IMG_ICC_MAX bytes (its copy, its
 * tables widened from 8 to 16 bits, a transform's precalculated grid of
 * 17^4 or 33^3 points), so each thread's context has a memory plugin that
 * refuses any single allocation over ICC_ALLOC_MAX: such a profile is
 * "ICC profile lcms2 cannot use", found in microseconds.
 */
#include "icc.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <lcms2.h>
#include <lcms2_plugin.h>

#define ICC_CACHE 8
#define ICC_CACHE_BYTES IMG_ICC_MAX         /* profile copies one thread's cache holds */
#define ICC_ALLOC_MAX (4 * IMG_ICC_MAX)     /* one lcms2 allocation; the file comment says why */
#define SRGB_XYZ_TOL 0.0015     /* colorants: s15.16 rounding and Bradford variants are ~1e-4 */
#define WHITE_TOL 0.003
#define TRC_TOL (0.5 / 255)     /* a curve's worst code, in sRGB-encoded units */

struct icc_xform {
	uint8_t *bytes;         /* the profile (copy); NULL: a free slot */
	size_t len;
	uint64_t hash;
	icc_layout lay;
	cmsHTRANSFORM xf;       /* NULL: nothing to apply */
	const char *why;        /* with xf NULL: why not (NULL: the profile is sRGB) */
	uint64_t used;          /* tick of the last lookup that hit it */
};

typedef struct cache {
	cmsContext ctx;
	cmsHPROFILE srgb, gray;         /* the output profiles, made when first needed */
	cmsToneCurve *srgb_inv;         /* linear -> sRGB-encoded, for the comparisons */
	uint64_t tick;
	struct icc_xform e[ICC_CACHE];
} cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_key_ok;

/* lcms2 reports trouble here; thumbd turns a refusal into "no profile". */
static void quiet(cmsContext ctx, cmsUInt32Number code, const char *text)
{
	(void)ctx;
	(void)code;
	(void)text;
}

/* lcms2's allocator for our contexts: malloc, with ICC_ALLOC_MAX per block. */
static void *mem_malloc(cmsContext ctx, cmsUInt32Number size)
{
	(void)ctx;
	return size > ICC_ALLOC_MAX ? NULL : malloc(size);
}

static void mem_free(cmsContext ctx, void *p)
{
	(void)ctx;
	free(p);
}

static void *mem_realloc(cmsContext ctx, void *p, cmsUInt32Number size)
{
	(void)ctx;
	return size > ICC_ALLOC_MAX ? NULL : realloc(p, size);
}

static cmsPluginMemHandler mem_plugin = {
	{ cmsPluginMagicNumber, LCMS_VERSION, cmsPluginMemHandlerSig, NULL },
	mem_malloc, mem_free, mem_realloc, NULL, NULL, NULL,
};

static void entry_clear(struct icc_xform *e)
{
	if (e->xf)
		cmsDeleteTransform(e->xf);
	free(e->bytes);
	memset(e, 0, sizeof *e);
}

static void cache_free(void *p)
{
	cache *c = p;

	if (c == NULL)
		return;
	for (int i = 0; i < ICC_CACHE; i++)
		entry_clear(&c->e[i]);
	if (c->srgb)
		cmsCloseProfile(c->srgb);
	if (c->gray)
		cmsCloseProfile(c->gray);
	if (c->srgb_inv)
		cmsFreeToneCurve(c->srgb_inv);
	if (c->ctx)
		cmsDeleteContext(c->ctx);
	free(c);
}

static void cache_key_init(void)
{
	cache_key_ok = pthread_key_create(&cache_key, cache_free) == 0;
}

static cache *cache_get(void)
{
	cache *c;

	pthread_once(&cache_once, cache_key_init);
	if (!cache_key_ok)
		return NULL;
	if ((c = pthread_getspecific(cache_key)) != NULL)
		return c;
	if ((c = calloc(1, sizeof *c)) == NULL)
		return NULL;
	if ((c->ctx = cmsCreateContext(&mem_plugin, NULL)) == NULL || pthread_setspecific(cache_key, c) != 0) {
		cache_free(c);
		return NULL;
	}
	cmsSetLogErrorHandlerTHR(c->ctx, quiet);
	return c;
}

void icc_thread_done(void)
{
	cache *c;

	pthread_once(&cache_once, cache_key_init);
	if (!cache_key_ok || (c = pthread_getspecific(cache_key)) == NULL)
		return;
	pthread_setspecific(cache_key, NULL);
	cache_free(c);
}

/* Bytes of the profile copies c holds. */
static size_t cache_held(const cache *c)
{
	size_t n = 0;

	for (int i = 0; i < ICC_CACHE; i++)
		n += c->e[i].len;       /* 0 in a free slot */
	return n;
}

/* The least recently used entry in use; only called while some is. */
static struct icc_xform *cache_oldest(cache *c)
{
	struct icc_xform *o = NULL;

	for (int i = 0; i < ICC_CACHE; i++)
		if (c->e[i].bytes && (o == NULL || c->e[i].used < o->used))
			o = &c->e[i];
	return o;
}

size_t icc_cache_bytes(void)
{
	cache *c;

	pthread_once(&cache_once, cache_key_init);
	if (!cache_key_ok || (c = pthread_getspecific(cache_key)) == NULL)
		return 0;
	return cache_held(c);
}

/* FNV-1a, 64 bits: profiles are a few KB, and the bytes are compared anyway. */
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325u;

	while (n--)
		h = (h ^ *p++) * 0x100000001b3u;
	return h;
}

/* IEC 61966-2-1 as lcms2's parametric type 4, and its inverse (type -4). */
static cmsToneCurve *srgb_curve(cmsContext ctx, int inverse)
{
	static const cmsFloat64Number prm[5] = { 2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045 };

	return cmsBuildParametricToneCurve(ctx, inverse ? -4 : 4, prm);
}

/* The output profiles and the comparison curve, made once per thread. */
static int cache_ready(cache *c)
{
	cmsToneCurve *t;

	if (c->srgb && c->gray && c->srgb_inv)
		return 0;
	if (!c->srgb && !(c->srgb = cmsCreate_sRGBProfileTHR(c->ctx)))
		return -1;
	if (!c->srgb_inv && !(c->srgb_inv = srgb_curve(c->ctx, 1)))
		return -1;
	if (!c->gray) {
		/* gray with sRGB's curve and the PCS white: what sRGB does to R=G=B */
		if (!(t = srgb_curve(c->ctx, 0)))
			return -1;
		c->gray = cmsCreateGrayProfileTHR(c->ctx, cmsD50_xyY(), t);
		cmsFreeToneCurve(t);
		if (!c->gray)
			return -1;
	}
	return 0;
}

static int xyz_near(const cmsCIEXYZ *a, const cmsCIEXYZ *b, double tol)
{
	return a && b && fabs(a->X - b->X) <= tol && fabs(a->Y - b->Y) <= tol && fabs(a->Z - b->Z) <= tol;
}

static int trc_is_srgb(const cache *c, cmsHPROFILE p, cmsTagSignature sig)
{
	const cmsToneCurve *t = cmsReadTag(p, sig);

	if (t == NULL)
		return 0;
	for (int i = 0; i <= 255; i++) {
		cmsFloat32Number x = (cmsFloat32Number)i / 255;
		cmsFloat32Number e = cmsEvalToneCurveFloat(c->srgb_inv, cmsEvalToneCurveFloat(t, x));
		if (fabsf(e - x) > (cmsFloat32Number)TRC_TOL)
			return 0;
	}
	return 1;
}

/* 1 when p (an RGB or gray profile) is sRGB to within a level; the file comment says how. */
static int is_srgb(const cache *c, cmsHPROFILE p)
{
	static const cmsTagSignature luts[] = { cmsSigAToB0Tag, cmsSigAToB1Tag, cmsSigAToB2Tag,
	                                        cmsSigDToB0Tag, cmsSigDToB1Tag, cmsSigDToB2Tag };
	const cmsCIEXYZ d50 = { 0.9642, 1.0, 0.8249 }, d65 = { 0.9505, 1.0, 1.0890 };
	const cmsCIEXYZ *wp = cmsReadTag(p, cmsSigMediaWhitePointTag);

	for (size_t i = 0; i < sizeof luts / sizeof luts[0]; i++)
		if (cmsIsTag(p, luts[i]))
			return 0;
	if (wp != NULL && !xyz_near(wp, &d50, WHITE_TOL) && !xyz_near(wp, &d65, WHITE_TOL))
		return 0;
	if (cmsGetColorSpace(p) == cmsSigGrayData)
		return trc_is_srgb(c, p, cmsSigGrayTRCTag);
	return xyz_near(cmsReadTag(p, cmsSigRedColorantTag), cmsReadTag(c->srgb, cmsSigRedColorantTag), SRGB_XYZ_TOL)
	    && xyz_near(cmsReadTag(p, cmsSigGreenColorantTag), cmsReadTag(c->srgb, cmsSigGreenColorantTag), SRGB_XYZ_TOL)
	    && xyz_near(cmsReadTag(p, cmsSigBlueColorantTag), cmsReadTag(c->srgb, cmsSigBlueColorantTag), SRGB_XYZ_TOL)
	    && trc_is_srgb(c, p, cmsSigRedTRCTag)
	    && trc_is_srgb(c, p, cmsSigGreenTRCTag)
	    && trc_is_srgb(c, p, cmsSigBlueTRCTag);
}

/* Fill e (bytes, len, hash, lay set) with the answer for its profile. */
static void entry_build(cache *c, struct icc_xform *e)
{
	static const cmsUInt32Number fin[] = { 0, TYPE_GRAY_8, TYPE_GRAYA_8, TYPE_RGB_8, TYPE_RGBA_8,
	                                       TYPE_CMYK_8, TYPE_CMYK_8_REV };
	cmsColorSpaceSignature want = e->lay <= ICC_GRAYA ? cmsSigGrayData
	                              : e->lay <= ICC_RGBA ? cmsSigRgbData : cmsSigCmykData;
	cmsHPROFILE p = cmsOpenProfileFromMemTHR(c->ctx, e->bytes, (cmsUInt32Number)e->len);
	cmsProfileClassSignature cls;
	cmsColorSpaceSignature pcs;

	if (p == NULL) {
		e->why = "unreadable ICC profile";
		return;
	}
	cls = cmsGetDeviceClass(p);
	pcs = cmsGetPCS(p);
	if (cmsGetColorSpace(p) != want)
		e->why = want == cmsSigGrayData ? "ICC profile not for gray pixels"
		         : want == cmsSigRgbData ? "ICC profile not for RGB pixels" : "ICC profile not for CMYK pixels";
	else if ((cls != cmsSigInputClass && cls != cmsSigDisplayClass && cls != cmsSigOutputClass
	          && cls != cmsSigColorSpaceClass) || (pcs != cmsSigXYZData && pcs != cmsSigLabData))
		e->why = "ICC profile of a kind that cannot be applied";
	else if (cache_ready(c) != 0)
		e->why = "out of memory";
	else if (e->lay <= ICC_RGBA && is_srgb(c, p))
		e->why = NULL;          /* nothing to do */
	else {
		int gray = e->lay <= ICC_GRAYA;
		cmsUInt32Number fout = e->lay == ICC_GRAY ? TYPE_GRAY_8 : e->lay == ICC_GRAYA ? TYPE_GRAYA_8
		                       : e->lay == ICC_RGBA ? TYPE_RGBA_8 : TYPE_RGB_8;
		cmsUInt32Number flags = e->lay == ICC_GRAYA || e->lay == ICC_RGBA ? cmsFLAGS_COPY_ALPHA : 0;
		e->xf = cmsCreateTransformTHR(c->ctx, p, fin[e->lay], gray ? c->gray : c->srgb, fout,
		                              INTENT_RELATIVE_COLORIMETRIC, flags);
		if (e->xf == NULL)
			e->why = "ICC profile lcms2 cannot use";
	}
	cmsCloseProfile(p);     /* a transform keeps what it needs */
}

const icc_xform *icc_lookup(const uint8_t *profile, size_t len, icc_layout lay, const char **why)
{
	const char *dummy;
	struct icc_xform *e, *victim;
	uint64_t h;
	cache *c;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (profile == NULL || len == 0 || lay < ICC_GRAY || lay > ICC_CMYK_INVERTED)
		return NULL;
	if (len > IMG_ICC_MAX) {
		*why = "ICC profile larger than 4 MB";
		return NULL;
	}
	if ((c = cache_get()) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	h = fnv1a(profile, len);
	c->tick++;
	victim = &c->e[0];
	for (int i = 0; i < ICC_CACHE; i++) {
		e = &c->e[i];
		if (e->bytes && e->hash == h && e->lay == lay && e->len == len
		    && memcmp(e->bytes, profile, len) == 0) {
			e->used = c->tick;
			*why = e->why;
			return e->xf ? e : NULL;
		}
		if (!e->bytes ? victim->bytes != NULL : victim->bytes && e->used < victim->used)
			victim = e;
	}
	entry_clear(victim);
	while (cache_held(c) + len > ICC_CACHE_BYTES)
		entry_clear(cache_oldest(c));
	if ((victim->bytes = malloc(len)) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	memcpy(victim->bytes, profile, len);
	victim->len = len;
	victim->hash = h;
	victim->lay = lay;
	victim->used = c->tick;
	entry_build(c, victim);
	*why = victim->why;
	return victim->xf ? victim : NULL;
}

void icc_apply(const icc_xform *x, const void *in, void *out, size_t n)
{
	/* n is a row: far below lcms2's 32-bit pixel count */
	cmsDoTransform(x->xf, in, out, (cmsUInt32Number)n);
}

int icc_to_srgb(img *im, const uint8_t *profile, size_t len, const char **why)
{
	const icc_xform *x;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (im == NULL || im->px == NULL || im->channels < 1 || im->channels > 4 || profile == NULL || len == 0)
		return 0;
	if ((x = icc_lookup(profile, len, (icc_layout)im->channels, why)) == NULL)
		return 0;
	for (int y = 0; y < im->h; y++) {
		uint8_t *row = im->px + (size_t)y * im->stride;
		icc_apply(x, row, row, (size_t)im->w);
	}
	return 1;
}
