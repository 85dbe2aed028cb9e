#!/usr/bin/env python3
"""
icc_ref: colour-managed references for test_icc.py, with Pillow's ImageCms
(Little CMS underneath).  Not a test module: test_icc.py runs it with an
interpreter that has Pillow (the integration suite itself is standard
library only).

    icc_ref.py SOURCE THUMBNAIL [SOURCE THUMBNAIL ...]

prints one JSON object per pair: {"profile": description or null,
"managed": D, "unmanaged": D}, where D is the largest difference (0..255,
any channel) between the thumbnail and a reference, compared as 8 x 8
cells of mean colour (box-averaged, so resampling details do not count and
colour does).  The reference is the full image, EXIF-transposed, turned
into sRGB through its embedded profile (relative colorimetric, as thumbd
and vipsthumbnail do; no profile: taken as sRGB), then resized to the
thumbnail's size with LANCZOS; "unmanaged" skips the profile (null for
CMYK, which has no sensible unmanaged reading).
"""

import io
import json
import sys

from PIL import Image, ImageCms, ImageOps

Image.MAX_IMAGE_PIXELS = None
SRGB = ImageCms.createProfile("sRGB")
GRID = 8


def to_srgb(im):
    """im as 8-bit sRGB RGB through its embedded profile; (image, profile description or None)."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im.convert("RGB"), None
    prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    out = ImageCms.profileToProfile(im, prof, SRGB, outputMode="RGB",
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return out, ImageCms.getProfileDescription(prof).strip()


def cells(im):
    return list(im.convert("RGB").resize((GRID, GRID), Image.BOX).getdata())


def worst(a, b):
    return max(abs(x - y) for pa, pb in zip(cells(a), cells(b)) for x, y in zip(pa, pb))


def main(args):
    for src, thumb in zip(args[0::2], args[1::2]):
        with Image.open(thumb) as t:
            t.load()
            size = t.size
            with Image.open(src) as im:
                im = ImageOps.exif_transpose(im)
                managed, desc = to_srgb(im)
                res = {"profile": desc,
                       "managed": worst(t, managed.resize(size, Image.LANCZOS)),
                       "unmanaged": None if im.mode == "CMYK"
                       else worst(t, im.convert("RGB").resize(size, Image.LANCZOS))}
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
