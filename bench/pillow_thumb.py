#!/usr/bin/env python3
"""
The original's resize method, one process per image (BENCH.md section 1):
Image.open, then resize((w, h), LANCZOS) from the full-size image for each width.

    python3 bench/pillow_thumb.py OUTDIR FORMAT IMAGE      FORMAT: jpg (q85) or png

Heights are round(H * w / W) like thumbd (the course truncates; for the quality
comparison every tool should target the same size).  Only the 200-px width is
written when FORMAT is png (the quality pass).
"""

import os
import sys

from PIL import Image


def main():
    out, fmt, path = sys.argv[1], sys.argv[2], sys.argv[3]
    stem = os.path.splitext(os.path.basename(path))[0]
    img = Image.open(path)
    widths = [200] if fmt == "png" else [32, 64, 200]
    for w in widths:
        h = max(1, round(img.size[1] * w / img.size[0]))
        t = img.resize((w, h), Image.LANCZOS)
        if fmt == "png":
            t.save(os.path.join(out, "%s_%d.png" % (stem, w)))
        else:
            t.save(os.path.join(out, "%s_%d.jpg" % (stem, w)), quality=85)


if __name__ == "__main__":
    main()
