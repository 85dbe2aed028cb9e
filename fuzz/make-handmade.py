#!/usr/bin/env python3
"""Write the hand-made hostile inputs in tests/fuzz-regress/handmade/.

Each is a tiny file aimed at one limit or one bounds check; the unit test
tests/unit/test_fuzz_regress.c replays them (format from the extension:
.jpg .png .webp, and .exif for a bare TIFF/EXIF block).  A name containing
"toolarge" must be refused with "too large" (max_pixels, from the header).
Rerun after changing this script; the files are committed, this is how they
were made.  The JPEG ones are patched copies of tests/demo/images/hopper_128x128.jpg.
"""
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fuzz-regress", "handmade")
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def chunk(tag, data, length=None):
    n = len(data) if length is None else length
    return struct.pack(">I", n) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def ihdr(w, h, depth=8, color=0, interlace=0):
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace))


def png(*chunks):
    return PNG_SIG + b"".join(chunks) + chunk(b"IEND", b"")


def gray1x1():
    return chunk(b"IDAT", zlib.compress(b"\x00\x80"))


def tiff_be(ifd_off, entries=(), next_ifd=0, tail=b""):
    body = b"MM\x00\x2a" + struct.pack(">I", ifd_off)
    ifd = struct.pack(">H", len(entries))
    for tag, typ, count, val in entries:
        ifd += struct.pack(">HHI", tag, typ, count) + val
    ifd += struct.pack(">I", next_ifd)
    return body + ifd + tail


def webp(*chunks):
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wchunk(tag, data):
    return tag + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")


def u24(v):
    return struct.pack("<I", v)[:3]


def vp8x(flags, w, h):
    return wchunk(b"VP8X", bytes([flags, 0, 0, 0]) + u24(w - 1) + u24(h - 1))


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {}
    # ---- PNG ----
    files["png_toolarge_50000x50000.png"] = png(ihdr(50000, 50000, 8, 6), gray1x1())
    files["png_width_over_libpng_limit.png"] = png(ihdr(0x1000001, 1), gray1x1())
    files["png_zero_dims.png"] = png(ihdr(0, 0), gray1x1())
    files["png_2048x2048_tiny_idat.png"] = png(ihdr(2048, 2048, 8, 2), gray1x1())
    files["png_chunk_len_2g.png"] = PNG_SIG + ihdr(1, 1) + chunk(b"tEXt", b"a\x00b", 0x7FFFFFF0)
    files["png_palette_without_plte.png"] = png(ihdr(1, 1, 8, 3), gray1x1())
    files["png_16bit_gray_alpha_interlaced_short.png"] = png(
        ihdr(64, 64, 16, 4, 1), chunk(b"IDAT", zlib.compress(b"\x00" * 300)))
    files["png_idat_expands_1mb.png"] = png(ihdr(1, 1), chunk(b"IDAT", zlib.compress(b"\x00" * (1 << 20), 9)))
    files["png_iccp_9mb.png"] = png(ihdr(1, 1), chunk(b"iCCP", b"p\x00\x00" + zlib.compress(b"\x00" * (9 << 20), 9)),
                                    gray1x1())
    files["png_exif_ifd_past_end.png"] = png(ihdr(1, 1), gray1x1(), chunk(b"eXIf", tiff_be(0xFFFFFF00)))
    files["png_exif_ifd_at_last_bytes.png"] = png(ihdr(1, 1), gray1x1(),
                                                  chunk(b"eXIf", b"MM\x00\x2a" + struct.pack(">I", 8) + b"\x00\x05"))
    # ---- JPEG (patched hopper) ----
    with open(os.path.join(ROOT, "tests", "demo", "images", "hopper_128x128.jpg"), "rb") as f:
        hop = f.read()
    sof = hop.index(b"\xff\xc0")

    def dims(b, w, h):
        return b[:sof + 5] + struct.pack(">HH", h, w) + b[sof + 9:]

    files["jpeg_toolarge_sof_65535x65535.jpg"] = dims(hop, 65535, 65535)
    files["jpeg_toolarge_sof_65000x65000.jpg"] = dims(hop, 65000, 65000)
    files["jpeg_toolarge_sof_4096x4096.jpg"] = dims(hop, 4096, 4096)
    files["jpeg_sof_0x0.jpg"] = dims(hop, 0, 0)
    files["jpeg_sof_2048x2048_data_for_128.jpg"] = dims(hop, 2048, 2048)
    files["jpeg_cut_after_sof.jpg"] = hop[:sof + 19]
    files["jpeg_cut_in_scan.jpg"] = hop[:len(hop) // 2]

    def app1(tiff):
        d = b"Exif\x00\x00" + tiff
        return b"\xff\xe1" + struct.pack(">H", len(d) + 2) + d

    files["jpeg_exif_ifd_past_end.jpg"] = hop[:2] + app1(tiff_be(0xFFFFFFF0)) + hop[2:]
    files["jpeg_exif_ifd_loops_to_itself.jpg"] = hop[:2] + app1(
        tiff_be(8, [(0x010F, 2, 4, b"abc\x00")], next_ifd=8)) + hop[2:]
    files["jpeg_exif_count_65535.jpg"] = hop[:2] + app1(b"II*\x00\x08\x00\x00\x00\xff\xff") + hop[2:]
    # ---- WebP (the 1x1 lossy frame of the shared corpus' webp_1x1.webp, rebuilt) ----
    vp8 = bytes.fromhex("f002009d012a0100010000470885858885848802020275aa03f803fa020d4d1800fefef3587ffe6066dd8a3bffe606fffcd05e125bafffccbc00")
    files["webp_vp8x_canvas_16384x16384_frame_1x1.webp"] = webp(vp8x(0, 16384, 16384), wchunk(b"VP8 ", vp8))
    huge = bytearray(vp8)
    huge[6:10] = struct.pack("<HH", 16383, 16383)
    files["webp_toolarge_vp8_16383x16383.webp"] = webp(wchunk(b"VP8 ", bytes(huge)))
    files["webp_toolarge_vp8x_and_vp8_16383x16383.webp"] = webp(vp8x(0, 16383, 16383), wchunk(b"VP8 ", bytes(huge)))
    # VP8L header: signature 0x2f, then 14-bit width-1, 14-bit height-1, alpha bit, 3-bit version
    vp8l = bytes([0x2F]) + struct.pack("<I", 16383 | 16383 << 14) + b"\x00" * 8
    files["webp_toolarge_vp8l_16384x16384.webp"] = webp(wchunk(b"VP8L", vp8l))
    files["webp_vp8x_canvas_3x3_frame_1x1.webp"] = webp(vp8x(0, 3, 3), wchunk(b"VP8 ", vp8))
    big = bytearray(vp8)
    big[6:10] = struct.pack("<HH", 2, 2)
    files["webp_vp8x_canvas_1x1_frame_2x2.webp"] = webp(vp8x(0, 1, 1), wchunk(b"VP8 ", bytes(big)))
    r = bytearray(webp(wchunk(b"VP8 ", vp8)))
    r[4:8] = struct.pack("<I", 0xFFFFFFF0)
    files["webp_riff_size_4g.webp"] = bytes(r)
    files["webp_header_only.webp"] = webp(b"VP8 ")
    anmf = u24(50) + u24(50) + u24(0) + u24(0) + u24(100) + b"\x00" + wchunk(b"VP8 ", vp8)
    files["webp_anim_frame_outside_canvas.webp"] = webp(vp8x(0x02, 1, 1), wchunk(b"ANIM", b"\x00" * 6),
                                                        wchunk(b"ANMF", anmf))
    files["webp_anim_no_frames.webp"] = webp(vp8x(0x02, 4, 4), wchunk(b"ANIM", b"\x00" * 6))
    files["webp_exif_ifd_past_end.webp"] = webp(vp8x(0x08, 1, 1), wchunk(b"VP8 ", vp8),
                                                wchunk(b"EXIF", tiff_be(0x7FFFFFFF)))
    # ---- bare EXIF / TIFF blocks ----
    files["exif_ifd_past_end.exif"] = tiff_be(0xFFFFFFFF)
    files["exif_ifd_at_last_2_bytes.exif"] = b"II*\x00\x08\x00\x00\x00\x01\x00"
    files["exif_loop_next_ifd_self.exif"] = tiff_be(8, [(0x0100, 3, 1, b"\x00\x01\x00\x00")], next_ifd=8)
    files["exif_orientation_9.exif"] = tiff_be(8, [(0x0112, 3, 1, b"\x00\x09\x00\x00")])
    files["exif_orientation_count_0.exif"] = tiff_be(8, [(0x0112, 3, 0, b"\x00\x06\x00\x00")])
    files["exif_entry_cut.exif"] = tiff_be(8, [(0x0112, 3, 1, b"\x00\x06\x00\x00")])[:20]
    files["exif_prefix_only.exif"] = b"Exif\x00\x00"
    files["exif_count_65535.exif"] = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x00" * 24
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("%d files in %s" % (len(files), OUT))


if __name__ == "__main__":
    main()
