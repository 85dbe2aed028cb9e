/*
 * test_exif: exif_orientation() on hand-built TIFF blocks, both byte
 * orders, and on the hostile shapes a downloaded file can take (short,
 * lying offsets and counts, bit flips).  The hostile cases matter most
 * under ASan: a read past the buffer fails the run even when the returned
 * value happens to be right.
 */
#include "check.h"
#include "exif.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TIFF_SHORT 3
#define TIFF_LONG 4
#define TIFF_ASCII 2

static void put16(uint8_t *p, int le, unsigned v)
{
	if (le) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
	else    { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
}

static void put32(uint8_t *p, int le, uint32_t v)
{
	if (le) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }
	else    { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
}

/*
 * A TIFF header plus IFD0 with three entries: 0x010f (Make), then
 * Orientation (the tag under test, second so the walk must step over an
 * entry), then 0x0131 (Software).  Returns the length written into buf
 * (which must hold 64 bytes); prefix adds "Exif\0\0" in front.
 */
static size_t make_tiff(uint8_t *buf, int le, int prefix, unsigned type, uint32_t count,
                        unsigned value)
{
	uint8_t *t = buf;
	size_t n = 0;

	memset(buf, 0, 64);
	if (prefix) {
		memcpy(buf, "Exif\0\0", 6);
		t = buf + 6;
		n = 6;
	}
	t[0] = t[1] = le ? 'I' : 'M';
	put16(t + 2, le, 42);
	put32(t + 4, le, 8);                /* IFD0 right after the header */
	put16(t + 8, le, 3);
	/* entry 0: Make, ASCII, 4 bytes "Cam\0" inline */
	put16(t + 10, le, 0x010f); put16(t + 12, le, TIFF_ASCII); put32(t + 14, le, 4);
	memcpy(t + 18, "Cam", 4);
	/* entry 1: Orientation */
	put16(t + 22, le, 0x0112); put16(t + 24, le, type); put32(t + 26, le, count);
	if (type == TIFF_LONG)
		put32(t + 30, le, value);
	else
		put16(t + 30, le, value);
	/* entry 2: Software, ASCII "x\0" */
	put16(t + 34, le, 0x0131); put16(t + 36, le, TIFF_ASCII); put32(t + 38, le, 2);
	t[42] = 'x';
	put32(t + 46, le, 0);               /* no next IFD */
	return n + 50;
}

static void test_valid(void)
{
	uint8_t b[64];
	int le, prefix;
	unsigned v;

	for (le = 0; le <= 1; le++)
		for (prefix = 0; prefix <= 1; prefix++)
			for (v = 1; v <= 8; v++) {
				size_t n = make_tiff(b, le, prefix, TIFF_SHORT, 1, v);
				CHECK_INT(exif_orientation(b, n), v);
			}
	/* LONG is off-spec but seen in the wild; accepted. */
	CHECK_INT(exif_orientation(b, make_tiff(b, 1, 0, TIFF_LONG, 1, 6)), 6);
	CHECK_INT(exif_orientation(b, make_tiff(b, 0, 0, TIFF_LONG, 1, 8)), 8);
}

static void test_out_of_range(void)
{
	uint8_t b[64];

	CHECK_INT(exif_orientation(b, make_tiff(b, 1, 0, TIFF_SHORT, 1, 0)), 1);
	CHECK_INT(exif_orientation(b, make_tiff(b, 1, 0, TIFF_SHORT, 1, 9)), 1);
	CHECK_INT(exif_orientation(b, make_tiff(b, 0, 1, TIFF_SHORT, 1, 0xffff)), 1);
	CHECK_INT(exif_orientation(b, make_tiff(b, 1, 0, TIFF_ASCII, 1, 6)), 1);  /* wrong type */
	CHECK_INT(exif_orientation(b, make_tiff(b, 1, 0, TIFF_SHORT, 0, 6)), 1);  /* count 0 */
}

static void test_malformed(void)
{
	uint8_t b[64];
	size_t n, cut;
	int bad;

	CHECK_INT(exif_orientation(NULL, 0), 1);
	CHECK_INT(exif_orientation(NULL, 100), 1);
	CHECK_INT(exif_orientation((const uint8_t *)"", 0), 1);
	CHECK_INT(exif_orientation((const uint8_t *)"Exif\0\0", 6), 1);

	/* Every truncation must stay inside the buffer (ASan watches) and the
	 * value is only found once the whole Orientation entry is present. */
	n = make_tiff(b, 0, 1, TIFF_SHORT, 1, 6);
	bad = 0;
	for (cut = 0; cut <= n; cut++) {
		/* heap copy of exactly cut bytes, so ASan sees any over-read */
		uint8_t *h = malloc(cut ? cut : 1);
		int r;
		memcpy(h, b, cut);
		r = exif_orientation(h, cut);
		if (cut < 6 + 34 ? r != 1 : r != 6)
			bad++;
		free(h);
	}
	CHECK_INT(bad, 0);

	/* bad byte-order mark, bad magic */
	n = make_tiff(b, 1, 0, TIFF_SHORT, 1, 6);
	b[0] = 'X';
	CHECK_INT(exif_orientation(b, n), 1);
	n = make_tiff(b, 1, 0, TIFF_SHORT, 1, 6);
	put16(b + 2, 1, 43);
	CHECK_INT(exif_orientation(b, n), 1);
	/* mixed byte order: "II" with a big-endian 42 */
	n = make_tiff(b, 0, 0, TIFF_SHORT, 1, 6);
	b[0] = b[1] = 'I';
	CHECK_INT(exif_orientation(b, n), 1);

	/* IFD offset past the end, inside the header, and near 2^32 */
	n = make_tiff(b, 1, 0, TIFF_SHORT, 1, 6);
	put32(b + 4, 1, (uint32_t)n);
	CHECK_INT(exif_orientation(b, n), 1);
	put32(b + 4, 1, 2);
	CHECK_INT(exif_orientation(b, n), 1);
	put32(b + 4, 1, 0xfffffffeu);
	CHECK_INT(exif_orientation(b, n), 1);

	/* entry count larger than the data: walks only what exists */
	n = make_tiff(b, 1, 0, TIFF_SHORT, 1, 6);
	put16(b + 8, 1, 200);
	CHECK_INT(exif_orientation(b, n), 6);
	/* an absurd count is refused outright */
	put16(b + 8, 1, 0xffff);
	CHECK_INT(exif_orientation(b, n), 1);
	/* count 1 hides the Orientation entry */
	put16(b + 8, 1, 1);
	CHECK_INT(exif_orientation(b, n), 1);
}

/* Random bit flips: any answer in 1..8 is fine, a crash or over-read is not. */
static void test_mutations(void)
{
	uint8_t b[64];
	uint32_t seed = 12345;
	int i, bad = 0;

	for (i = 0; i < 20000; i++) {
		size_t n = make_tiff(b, i & 1, (i >> 1) & 1, TIFF_SHORT, 1, 1 + (unsigned)(i % 8));
		uint8_t *h = malloc(n);
		int k, r;
		for (k = 0; k < 3; k++) {
			seed = seed * 1103515245u + 12345u;
			b[(seed >> 8) % n] ^= (uint8_t)(1u << ((seed >> 4) & 7));
		}
		memcpy(h, b, n);
		r = exif_orientation(h, n);
		if (r < 1 || r > 8)
			bad++;
		free(h);
	}
	CHECK_INT(bad, 0);
}

int main(void)
{
	test_valid();
	test_out_of_range();
	test_malformed();
	test_mutations();
	return CHECK_DONE();
}
