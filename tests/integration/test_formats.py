"""thumbnails.format and thumbnails.sizes overrides, and EXIF orientation
checked on the pixels (outputs forced to PNG and decoded here)."""

import os
import subprocess
import sys

import common as C
import imginfo

# (corpus path, source format, displayed W, H)
SAMPLES = [
    ("photos/hopper_128x128.jpg", "JPEG", 128, 128),
    ("edge/png_rgba_photo_500x500.png", "PNG", 500, 500),     # real alpha channel
    ("edge/webp_lossy.webp", "WEBP", 128, 128),
    ("photos/frangipani_480x360.jpg", "JPEG", 480, 360),
]


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _format_run(t, target, ext_fmt):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        rc, out, err = wd.run_urls([srv.url(p) for p, *_ in SAMPLES],
                                   "--set", "thumbnails.format=%s" % target)
        t.eq(rc, 0, "format=%s: exit status 0 (stderr: %s; failed: %s)" % (target, err[-800:], wd.failed()))
        expected = []
        for p, _, W, H in SAMPLES:
            C.check_thumbs(t, wd, stem(p), ext_fmt, W, H, what="format=%s %s" % (target, p))
            expected += C.thumb_names(stem(p), ext_fmt)
        t.eq(sorted(wd.thumbs()), sorted(expected), "format=%s: exactly the expected files" % target)
        return wd.outgoing


def test_format_webp(t):
    _format_run(t, "webp", "WEBP")


def test_format_png_keeps_alpha(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        rc, out, err = wd.run_urls([srv.url(p) for p, *_ in SAMPLES], "--set", "thumbnails.format=png")
        t.eq(rc, 0, "format=png: exit status 0 (stderr: %s; failed: %s)" % (err[-800:], wd.failed()))
        expected = []
        for p, _, W, H in SAMPLES:
            C.check_thumbs(t, wd, stem(p), "PNG", W, H, what="format=png %s" % p)
            expected += C.thumb_names(stem(p), "PNG")
        t.eq(sorted(wd.thumbs()), sorted(expected), "format=png: exactly the expected files")
        p = os.path.join(wd.outgoing, "png_rgba_photo_500x500_64.png")
        if t.check(os.path.isfile(p), "RGBA source gave a PNG thumbnail"):
            with open(p, "rb") as f:
                data = f.read()
            ctype = data[25] if len(data) > 25 else None
            t.check(ctype in (4, 6) or b"tRNS" in data,
                    "PNG thumbnail of an RGBA source keeps its alpha (IHDR colour type %r)" % ctype)


def test_format_jpeg_from_alpha(t):
    _format_run(t, "jpeg", "JPEG")


def test_sizes_override(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    with C.serve(cdir) as srv, C.Workdir() as wd:
        rc, out, err = wd.run_urls([srv.url(p) for p, *_ in SAMPLES], "--set", "thumbnails.sizes=50,100")
        t.eq(rc, 0, "sizes=50,100: exit status 0 (stderr: %s)" % err[-800:])
        expected = []
        for p, fmt, W, H in SAMPLES:
            C.check_thumbs(t, wd, stem(p), fmt, W, H, sizes=(50, 100), what="sizes=50,100 %s" % p)
            expected += C.thumb_names(stem(p), fmt, (50, 100))
        t.eq(sorted(wd.thumbs()), sorted(expected), "sizes=50,100: exactly those widths, nothing else")


# -- orientation, on the pixels ---------------------------------------------

def _gray(path):
    with open(path, "rb") as f:
        w, h, ch, rows = imginfo.png_decode(f.read())
    g = []
    for row in rows:
        if ch >= 3:
            g.append([(row[i] * 299 + row[i + 1] * 587 + row[i + 2] * 114) // 1000
                      for i in range(0, w * ch, ch)])
        else:
            g.append([row[i] for i in range(0, w * ch, ch)])
    return g


def _transforms(g):
    """The 8 orientations of a 2-D list, identity first."""
    def flip_h(a):
        return [r[::-1] for r in a]

    def transpose(a):
        return [list(c) for c in zip(*a)]
    out, a = [], g
    for _ in range(4):
        out += [a, flip_h(a)]
        a = flip_h(transpose(a))      # rotate 90
    return out


def _diff(a, b):
    """Mean absolute difference after removing each picture's mean brightness
    (Landscape_1.jpg has no ICC profile, 2..8 have one: same picture, other levels)."""
    if len(a) != len(b) or len(a[0]) != len(b[0]):
        return None
    n = len(a) * len(a[0])
    ma = sum(map(sum, a)) / n
    mb = sum(map(sum, b)) / n
    return sum(abs((x - ma) - (y - mb)) for ra, rb in zip(a, b) for x, y in zip(ra, rb)) / n


def test_exif_orientation_pixels(t):
    """All eight Landscape_N.jpg show the same upright picture; the WebP with
    orientation 6 shows upright hopper.  The thumbnail must match the
    reference better than any other rotation or flip of the reference."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    jpgs = ["edge/jpeg_exif_orientation_%d.jpg" % i for i in range(1, 9)]
    others = ["edge/webp_exif_orientation_6.webp", "photos/hopper_128x128.jpg"]
    with C.serve(cdir) as srv, C.Workdir() as wd:
        rc, out, err = wd.run_urls([srv.url(p) for p in jpgs + others],
                                   "--set", "thumbnails.format=png", "--set", "thumbnails.sizes=64")
        t.eq(rc, 0, "orientation run: exit status 0 (stderr: %s)" % err[-800:])
        pairs = [(p, jpgs[0]) for p in jpgs[1:]] + [(others[0], others[1])]
        for p, ref in pairs:
            fp = os.path.join(wd.outgoing, stem(p) + "_64.png")
            fr = os.path.join(wd.outgoing, stem(ref) + "_64.png")
            if not t.check(os.path.isfile(fp) and os.path.isfile(fr), "%s: PNG thumbnails exist" % p):
                continue
            try:
                g, r = _gray(fp), _gray(fr)
            except Exception as e:
                t.fail("%s: thumbnail decodes: %s" % (p, e))
                continue
            ds = [_diff(g, x) for x in _transforms(r)]
            ident = ds[0]
            if not t.check(ident is not None, "%s: same size as the reference thumbnail" % p):
                continue
            rest = [d for d in ds[1:] if d is not None]
            t.check(rest and ident < 0.35 * min(rest),
                    "%s: upright like the reference (mean abs diff %.1f; other orientations %s)"
                    % (p, ident, ", ".join("%.1f" % d for d in rest)))


def test_decode_memory_budget(t):
    """resize.decode_memory: progressive JPEGs hold every DCT coefficient while
    they decode; with a budget too small for two at once, a worker puts its
    image aside and does others first, and nothing is lost or failed."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    prog = os.path.join(cdir, "edge", "jpeg_progressive_2268x1512.jpg")
    small = os.path.join(cdir, "photos", "hopper_128x128.jpg")
    # Two decodes overlap only while both workers get a core at once; with
    # the rest of the suite running beside it (TSan) one run can go by
    # without it, so up to three runs, each checked in full, must show it.
    put_aside = False
    for _ in range(3):
        with C.Workdir({"resize.workers": 2, "resize.decode_memory": 1}) as wd:
            files = []
            for i in range(8):
                for src, tag in ((prog, "p"), (small, "s")):
                    dst = os.path.join(wd.cwd, "%s%d.jpg" % (tag, i))
                    with open(src, "rb") as f, open(dst, "wb") as o:
                        o.write(f.read())
                    files.append(dst)
            rc, out, err = wd.run("--files", *files, timeout=120)
            t.eq(rc, 0, "decode_memory=1: exit status 0 (stderr: %s; failed: %s)" % (err[-800:], wd.failed()))
            t.eq(wd.failed(), [], "decode_memory=1: no failure")
            expected = []
            for f in files:
                expected += C.thumb_names(stem(f), "JPEG")
            t.eq(sorted(wd.thumbs()), sorted(expected), "decode_memory=1: every image has its 3 thumbnails")
            log = "\n".join(wd.log_lines() or [])
            # 8 progressive decodes on 2 workers overlap: at least one was put aside
            if "more than resize.decode_memory leaves now" in log:
                put_aside = True
                break
    t.check(put_aside, "decode_memory=1: a decode that did not fit was put aside (logged)")


def test_jpeg_metadata_in_place(t):
    """A JPEG whose EXIF (orientation 6) comes after 600 APP2 markers of
    64 KB each (39 MB of them) and an APP1 that is not EXIF: the orientation
    is still found and applied, and the markers are not copied while the
    file decodes (libjpeg's saved markers took the peak memory to twice the
    file's size)."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with open(os.path.join(cdir, "edge", "jpeg_exif_orientation_6.jpg"), "rb") as f:
        src = f.read()
    junk = b"\xff\xe2\xff\xff" + b"J" * 65533
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    app1 = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    with C.Workdir() as wd:
        big = os.path.join(wd.cwd, "big.jpg")
        with open(big, "wb") as o:
            o.write(src[:2] + app1 + junk * 600 + src[2:])
        size = os.path.getsize(big)
        # a Python of its own, whose only child is thumbd: its children's
        # peak RSS is thumbd's
        probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
                 "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        p = subprocess.run([sys.executable, "-c", probe, C.thumbd_path(), "-c", wd.config, "--files", big],
                           cwd=wd.cwd, capture_output=True, timeout=120)
        rc, kb = (int(x) for x in p.stdout.split()[-2:])
        t.eq(rc, 0, "39 MB of APP2 markers: exit status 0 (%s)" % p.stderr[-300:])
        C.check_thumbs(t, wd, "big", "JPEG", 600, 450, what="39 MB of APP2 markers, then EXIF orientation 6")
        if "/san-" not in C.thumbd_path():      # sanitizers' shadow memory: no RSS to compare
            t.check(kb * 1024 < size + 32 * 2**20,
                    "39 MB of APP2 markers: peak RSS %d MB, not much over the file's %d MB"
                    % (kb // 1024, size // 2**20))
