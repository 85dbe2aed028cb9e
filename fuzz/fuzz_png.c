/*
 * fuzz_png: libFuzzer target for the PNG decode path (src/pngio.c via
 * img_decode), then resize, orient and PNG encode; see fuzz_common.h.
 * Build and run: make fuzz; make fuzz-run FUZZ_TARGET=fuzz_png.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[IMG_ERRLEN];

	fuzz_require(fuzz_decode_one(IMG_PNG, data, size, err, sizeof err), err);
	return 0;
}
