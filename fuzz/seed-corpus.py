#!/usr/bin/env python3
"""Fill build/fuzz-corpus/<target>/ with seeds (never committed: build/ is ignored).

Sources, by magic bytes (never by name): ../shared/corpus/{edge,broken,photos}
(or $THUMBD_CORPUS), tests/demo/images, fuzz/seeds/<target>/ and the saved
regressions in tests/fuzz-regress/.  Files larger than FUZZ_MAXLEN are cut
to that length (libFuzzer would cut them anyway; a cut progressive JPEG
still carries its first scans).  fuzz_exif gets the EXIF blocks found in
JPEG APP1 segments and WebP EXIF chunks.  Existing corpus files are kept, so
a later campaign resumes from what the last one found.
"""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.environ.get("THUMBD_CORPUS", os.path.join(ROOT, "..", "shared", "corpus"))
MAXLEN = int(os.environ.get("FUZZ_MAXLEN", "65536"))


def sniff(b):
    if b[:3] == b"\xff\xd8\xff":
        return "fuzz_jpeg"
    if b[:8] == b"\x89PNG\r\n\x1a\n":
        return "fuzz_png"
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return "fuzz_webp"
    return None


def jpeg_exif(b):
    i = 2
    while i + 4 <= len(b) and b[i] == 0xFF:
        m, n = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if m == 0xE1 and b[i + 4:i + 10] == b"Exif\0\0":
            yield b[i + 4:i + 2 + n]
        if m == 0xDA:
            break
        i += 2 + n


def webp_exif(b):
    i = 12
    while i + 8 <= len(b):
        tag, n = b[i:i + 4], struct.unpack("<I", b[i + 4:i + 8])[0]
        if tag == b"EXIF":
            yield b[i + 8:i + 8 + n]
        i += 8 + n + (n & 1)


def files():
    dirs = [os.path.join(CORPUS, d) for d in ("edge", "broken", "photos")]
    dirs += [os.path.join(ROOT, "tests", "demo", "images")]
    dirs += [os.path.join(ROOT, "fuzz", "seeds", d) for d in ("fuzz_jpeg", "fuzz_png", "fuzz_webp", "fuzz_exif")]
    regress = os.path.join(ROOT, "tests", "fuzz-regress")
    if os.path.isdir(regress):
        dirs += [os.path.join(regress, d) for d in sorted(os.listdir(regress))]
    for d in dirs:
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                p = os.path.join(d, name)
                if os.path.isfile(p):
                    yield d, name, p


def main(targets):
    out = {t: os.path.join(ROOT, "build", "fuzz-corpus", t) for t in targets}
    for d in out.values():
        os.makedirs(d, exist_ok=True)
    counts = dict.fromkeys(targets, 0)

    def put(t, name, data):
        if t in out:
            with open(os.path.join(out[t], name), "wb") as f:
                f.write(data[:MAXLEN])
            counts[t] += 1

    for d, name, p in files():
        with open(p, "rb") as f:
            b = f.read()
        tag = os.path.basename(d) + "_" + name
        seed_dir = os.path.basename(d)
        t = sniff(b)
        if seed_dir == "fuzz_exif" or name.endswith(".exif"):
            put("fuzz_exif", tag, b)
            continue
        if seed_dir.startswith("fuzz_") and seed_dir != t:
            put(seed_dir, tag, b)      # a regression that did not sniff: the target prepends magic
            continue
        if t:
            put(t, tag, b)
        ex = jpeg_exif(b) if t == "fuzz_jpeg" else webp_exif(b) if t == "fuzz_webp" else ()
        for k, e in enumerate(ex):
            put("fuzz_exif", "%s.exif%d" % (tag, k), e)
    for t in targets:
        print("%s: %d seeds added (%d files)" % (t, counts[t], len(os.listdir(out[t]))))


if __name__ == "__main__":
    main(sys.argv[1:] or ["fuzz_jpeg", "fuzz_png", "fuzz_webp", "fuzz_exif"])
