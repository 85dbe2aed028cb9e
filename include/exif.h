/*
 * exif: the one EXIF tag thumbd needs, Orientation (0x0112), read from a
 * TIFF structure with every offset bounds-checked and the IFD walk capped,
 * because the bytes come from strangers.
 */
#ifndef THUMBD_EXIF_H
#define THUMBD_EXIF_H

#include <stddef.h>
#include <stdint.h>

/* buf: a TIFF header ("II*\0" / "MM\0*") onwards, optionally preceded by
 * "Exif\0\0".  Returns 1..8; 1 when absent, out of range or malformed. */
int exif_orientation(const uint8_t *buf, size_t len);

#endif
