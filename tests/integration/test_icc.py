"""Embedded ICC profiles are applied: corpus photos in Display P3, Adobe RGB
(1998), ProPhoto, Apple's Generic RGB and a CMYK (SWOP) profile come out as
sRGB thumbnails, checked against Pillow's ImageCms (icc_ref.py); photos
tagged sRGB keep their numbers; none of them is a warning in the log."""

import json
import os
import subprocess
import sys

import common as C

HERE = os.path.dirname(os.path.abspath(__file__))

# corpus path, profile applied (not sRGB)
FILES = [
    ("photos/iphone_xs_orient6_4032x3024.jpg", True),     # Display P3, orientation 6
    ("photos/rocket_640x427.jpg", True),                  # Adobe RGB (1998)
    ("edge/jpeg_exif_orientation_2.jpg", True),           # Generic RGB, orientation 2
    ("edge/jpeg_icc_prophoto_1680x1050.jpg", True),       # ProPhoto RGB
    ("edge/jpeg_cmyk_adobe_icc_388x218.jpg", True),       # U.S. Web Coated (SWOP) v2
    ("photos/iguana_100x68.jpg", False),                  # sRGB IEC61966-2.1, enlarged
    ("photos/keong_macan_500x500.png", False),            # iCCP sRGB
    ("photos/flower2_300x225.webp", False),               # ICCP sRGB IEC61966-2.1
    ("edge/png_rgba_photo_500x500.png", False),           # iCCP sRGB, alpha
]
TOLERANCE = 4           # levels, per channel, of an 8 x 8 cell's mean
APART = 8               # a non-sRGB profile ignored would be at least this far off


def pillow_python():
    """An interpreter that has PIL.ImageCms: this one, else Debian's."""
    for py in (sys.executable, "/usr/bin/python3"):
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "from PIL import ImageCms"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0:
            return py
    return None


def test_icc_profiles_applied(t):
    cdir = C.corpus(t)
    if cdir is None:
        return
    py = pillow_python()
    if not t.check(py is not None, "Pillow with ImageCms for the references (python3-pil, make deps)"):
        return
    with C.Workdir() as wd:
        srcs = [os.path.join(cdir, p) for p, _ in FILES]
        rc, out, err = wd.run("--files", *srcs, timeout=180)
        t.eq(rc, 0, "exit status 0 (stderr: %s; failed: %s)" % (err[-800:], wd.failed()))
        pairs = []
        for p, _ in FILES:
            stem, ext = os.path.splitext(os.path.basename(p))
            thumb = os.path.join(wd.outgoing, "%s_200%s" % (stem, ext))
            if t.check(os.path.isfile(thumb), "%s: 200-px thumbnail written" % p):
                pairs += [os.path.join(cdir, p), thumb]
        r = subprocess.run([py, os.path.join(HERE, "icc_ref.py")] + pairs,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        if not t.eq(r.returncode, 0, "icc_ref.py ran (%s)" % r.stderr.decode(errors="replace")[-800:]):
            return
        res = iter(json.loads(line) for line in r.stdout.decode().splitlines())
        for (p, applied), src in zip(FILES, pairs[0::2]):
            got = next(res)
            t.check(got["profile"] is not None, "%s: the source has a profile (Pillow)" % p)
            t.check(got["managed"] <= TOLERANCE,
                    "%s (%s): thumbnail within %d levels of the colour-managed reference (off by %d; "
                    "by %s from the unmanaged one)" % (p, got["profile"], TOLERANCE, got["managed"],
                                                       got["unmanaged"]))
            if applied and got["unmanaged"] is not None:
                # the test can tell: ignoring this profile would fail it
                t.check(got["unmanaged"] >= APART,
                        "%s: thumbnail %d levels from the unmanaged reference (>= %d)"
                        % (p, got["unmanaged"], APART))
        log = "\n".join(wd.log_lines() or [])
        t.check("ICC" not in log, "no ICC warning in the log: %s" % [
            line for line in (wd.log_lines() or []) if "ICC" in line])


def test_icc_broken_profile_ignored(t):
    """A JPEG whose APP2 ICC_PROFILE holds garbage is thumbnailed as if it had
    no profile, with one WARNING naming the input."""
    cdir = C.corpus(t)
    if cdir is None:
        return
    with open(os.path.join(cdir, "photos", "hopper_128x128.jpg"), "rb") as f:
        data = f.read()
    junk = bytes((i * 37 + 11) & 255 for i in range(600))
    seg = b"ICC_PROFILE\0\x01\x01" + junk
    bad = data[:2] + b"\xff\xe2" + (len(seg) + 2).to_bytes(2, "big") + seg + data[2:]
    with C.Workdir() as wd:
        good_p = os.path.join(wd.cwd, "good.jpg")
        bad_p = os.path.join(wd.cwd, "bad.jpg")
        with open(good_p, "wb") as f:
            f.write(data)
        with open(bad_p, "wb") as f:
            f.write(bad)
        rc, out, err = wd.run("--files", good_p, bad_p, timeout=60)
        t.eq(rc, 0, "garbage profile: exit status 0 (stderr: %s)" % err[-800:])
        for w in C.DEFAULT_SIZES:
            a = os.path.join(wd.outgoing, "good_%d.jpg" % w)
            b = os.path.join(wd.outgoing, "bad_%d.jpg" % w)
            t.check(os.path.isfile(b) and os.path.isfile(a) and C.sha256_file(a) == C.sha256_file(b),
                    "garbage profile: %d-px thumbnail identical to the untagged one" % w)
        warn = [line for line in (wd.log_lines() or []) if "ICC" in line]
        t.check(len(warn) == 1 and "WARNING" in warn[0] and bad_p in warn[0]
                and "unreadable ICC profile" in warn[0],
                "garbage profile: one WARNING naming the input (%s)" % warn)
