/*
 * fuzz_exif: libFuzzer target for exif_orientation (src/exif.c), the TIFF
 * walker fed by JPEG APP1, PNG eXIf and WebP EXIF chunks.  Any input, with
 * or without the "Exif\0\0" prefix, must give 1..8 without reading out of
 * bounds.  Build and run: make fuzz; make fuzz-run FUZZ_TARGET=fuzz_exif.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[IMG_ERRLEN];

	fuzz_require(fuzz_exif_one(data, size, err, sizeof err), err);
	return 0;
}
