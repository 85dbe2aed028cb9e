#!/usr/bin/env python3
"""
SSIM and PSNR of thumbnails against a fair reference (BENCH.md section 1).

Reference: Pillow resize(LANCZOS) of the full-size decode, EXIF-transposed,
converted to sRGB through its embedded ICC profile when it has one (ImageCms,
relative colorimetric, as thumbd and vipsthumbnail do; an image without one
is taken as sRGB), no pre-shrink, made at exactly the size of the thumbnail
being judged (tools may round a height differently by one pixel; each is
judged at its own size).
Both images are compared as 8-bit RGB (grayscale replicated), data range 255,
skimage.metrics.structural_similarity (default 7x7 window, channel_axis=2) and
peak_signal_noise_ratio.

Needs python3-pil, python3-skimage, python3-numpy (Debian's /usr/bin/python3).

    python3 bench/quality.py CORPUS_DIR TOOL=DIR [TOOL=DIR ...]

where each DIR holds <stem>_200.png for every CORPUS_DIR/<stem>.jpg.
"""

import io
import os
import sys

import numpy as np
from PIL import Image, ImageCms, ImageOps
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def srgb(im):
    """im as 8-bit sRGB: through its embedded ICC profile when it has one."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im.convert("RGB")
    try:
        prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, prof, ImageCms.createProfile("sRGB"), outputMode="RGB",
                                         renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError):
        return im.convert("RGB")       # a profile Little CMS refuses: as thumbd, no profile


class Reference:
    def __init__(self):
        self._full = {}
        self._cache = {}

    def get(self, path, size):
        key = (path, size)
        if key not in self._cache:
            full = self._full.get(path)
            if full is None:
                with Image.open(path) as im:
                    full = srgb(ImageOps.exif_transpose(im))
                self._full = {path: full}          # one full decode kept at a time
            self._cache[key] = np.asarray(full.resize(size, Image.LANCZOS), dtype=np.uint8)
        return self._cache[key]


def score(ref, out):
    ssim = structural_similarity(ref, out, channel_axis=2, data_range=255)
    psnr = peak_signal_noise_ratio(ref, out, data_range=255)
    return float(ssim), float(psnr)


def evaluate(corpus_files, tool_dirs, width=200):
    """corpus_files: list of paths; tool_dirs: {tool: dir}.
    -> {tool: {stem: (ssim, psnr) or None when missing}}"""
    ref = Reference()
    res = {t: {} for t in tool_dirs}
    for path in corpus_files:           # outer loop on images: one full decode each
        stem = os.path.splitext(os.path.basename(path))[0]
        for tool, d in tool_dirs.items():
            p = os.path.join(d, "%s_%d.png" % (stem, width))
            if not os.path.exists(p):
                res[tool][stem] = None
                continue
            with Image.open(p) as im:
                out = np.asarray(im.convert("RGB"), dtype=np.uint8)
            r = ref.get(path, (out.shape[1], out.shape[0]))
            res[tool][stem] = score(r, out)
    return res


def summary(scores):
    vals = [v for v in scores.values() if v is not None]
    if not vals:
        return None
    s = [v[0] for v in vals]
    p = [v[1] for v in vals if np.isfinite(v[1])]
    return {"ssim_mean": float(np.mean(s)), "ssim_min": float(np.min(s)),
            "psnr_mean": float(np.mean(p)) if p else float("inf"),
            "psnr_min": float(np.min(p)) if p else float("inf"),
            "n": len(vals), "missing": sum(1 for v in scores.values() if v is None)}


def main():
    corpus = sys.argv[1]
    tools = dict(a.split("=", 1) for a in sys.argv[2:])
    files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus) if f.endswith(".jpg"))
    res = evaluate(files, tools)
    for t, sc in res.items():
        print(t, summary(sc))


if __name__ == "__main__":
    main()
