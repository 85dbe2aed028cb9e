/*
 * exif: find Orientation (0x0112) in IFD0 of a TIFF structure.
 *
 * The bytes come straight from downloaded files, so the reader trusts
 * nothing: every read goes through rd16/rd32 with an explicit bounds check,
 * only IFD0 is looked at (no chain of "next IFD" links to loop on), and the
 * entry count is capped.  Anything odd yields 1, the "do nothing" value,
 * because a wrong rotation is a cosmetic problem while a failed thumbnail
 * over a broken EXIF block would be a needless one.
 */
#include "exif.h"

#include <string.h>

/* IFD0 of real cameras has a few dozen entries; a few hundred is generous
 * and keeps a hostile count from turning into a long scan. */
#define EXIF_MAX_ENTRIES 512

#define TIFF_SHORT 3
#define TIFF_LONG  4
#define TAG_ORIENTATION 0x0112

static unsigned rd16(const uint8_t *p, int le)
{
	return le ? (unsigned)p[0] | (unsigned)p[1] << 8
	          : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t rd32(const uint8_t *p, int le)
{
	return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
	          : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int exif_orientation(const uint8_t *buf, size_t len)
{
	int le;
	uint32_t ifd;
	unsigned n, i;

	if (buf == NULL)
		return 1;
	if (len >= 6 && memcmp(buf, "Exif\0\0", 6) == 0) {
		buf += 6;
		len -= 6;
	}
	if (len < 8)
		return 1;
	if (buf[0] == 'I' && buf[1] == 'I')
		le = 1;
	else if (buf[0] == 'M' && buf[1] == 'M')
		le = 0;
	else
		return 1;
	if (rd16(buf + 2, le) != 42)
		return 1;

	ifd = rd32(buf + 4, le);
	if (ifd < 8 || ifd > len - 2)
		return 1;
	n = rd16(buf + ifd, le);
	if (n > EXIF_MAX_ENTRIES)
		return 1;

	for (i = 0; i < n; i++) {
		/* ifd <= len - 2 and i < 512 keep this sum far from overflow. */
		size_t off = (size_t)ifd + 2 + (size_t)i * 12;
		const uint8_t *e;
		unsigned tag, type, v;
		uint32_t count;

		if (off > len || len - off < 12)
			break;
		e = buf + off;
		tag = rd16(e, le);
		if (tag != TAG_ORIENTATION)
			continue;
		type = rd16(e + 2, le);
		count = rd32(e + 4, le);
		if (count < 1)
			return 1;
		/* The value fits in the entry's 4-byte field, left-justified. */
		if (type == TIFF_SHORT)
			v = rd16(e + 8, le);
		else if (type == TIFF_LONG)     /* off-spec but seen from some writers */
			v = (unsigned)rd32(e + 8, le);
		else
			return 1;
		return v >= 1 && v <= 8 ? (int)v : 1;
	}
	return 1;
}
