"""
imginfo: format and dimensions from the bytes of a JPEG, PNG or WebP file,
no imaging library.  Also a structural completeness check (to catch half
written outputs) and a tiny PNG decoder for thumbnails (8-bit, any colour
type, non-interlaced or Adam7) used to compare pixels.

    info(data) -> ("JPEG" | "PNG" | "WEBP", width, height)   ValueError if unknown/corrupt
"""

import struct
import zlib

# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = {m for m in range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))   # TEM, RST0..7 (SOI handled apart)


def info(data):
    if data[:3] == b"\xff\xd8\xff":
        return ("JPEG",) + jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ("PNG",) + png_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("WEBP",) + webp_size(data)
    raise ValueError("unknown format (first bytes %r)" % data[:12])


def jpeg_size(data):
    """(w, h) from the first SOFn segment, walking the marker segments."""
    i, n = 2, len(data)
    while True:
        if i >= n:
            raise ValueError("JPEG: no SOF before end of data")
        if data[i] != 0xFF:
            raise ValueError("JPEG: expected a marker at offset %d" % i)
        while i < n and data[i] == 0xFF:      # fill bytes
            i += 1
        if i >= n:
            raise ValueError("JPEG: truncated marker")
        m = data[i]
        i += 1
        if m in _JPEG_STANDALONE or m == 0xD8:
            continue
        if m == 0xD9:
            raise ValueError("JPEG: EOI before SOF")
        if m == 0xDA:
            raise ValueError("JPEG: SOS before SOF")
        if i + 2 > n:
            raise ValueError("JPEG: truncated segment length")
        seglen = struct.unpack(">H", data[i:i + 2])[0]
        if seglen < 2:
            raise ValueError("JPEG: bad segment length %d" % seglen)
        if m in _JPEG_SOF:
            if i + 7 > n or seglen < 8:
                raise ValueError("JPEG: truncated SOF")
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            if w == 0 or h == 0:
                raise ValueError("JPEG: zero dimension in SOF")
            return w, h
        i += seglen


def jpeg_sof_marker(data):
    """The SOFn marker byte (0xC0 baseline, 0xC2 progressive, ...)."""
    i, n = 2, len(data)
    while i < n:
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        m = data[i]
        i += 1
        if m in _JPEG_STANDALONE or m == 0xD8:
            continue
        if m in (0xD9, 0xDA) or i + 2 > n:
            break
        if m in _JPEG_SOF:
            return m
        i += struct.unpack(">H", data[i:i + 2])[0]
    raise ValueError("JPEG: no SOF")


def png_size(data):
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("PNG: no IHDR")
    w, h = struct.unpack(">II", data[16:24])
    if w == 0 or h == 0:
        raise ValueError("PNG: zero dimension")
    return w, h


def webp_size(data):
    if len(data) < 30:
        raise ValueError("WebP: too short")
    fourcc = data[12:16]
    p = data[20:]
    if fourcc == b"VP8 ":
        if p[3:6] != b"\x9d\x01\x2a":
            raise ValueError("WebP: bad VP8 start code")
        w, h = struct.unpack("<HH", p[6:10])
        return w & 0x3FFF, h & 0x3FFF
    if fourcc == b"VP8L":
        if p[0] != 0x2F:
            raise ValueError("WebP: bad VP8L signature")
        b = int.from_bytes(p[1:5], "little")
        return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
    if fourcc == b"VP8X":
        w = int.from_bytes(p[4:7], "little") + 1
        h = int.from_bytes(p[7:10], "little") + 1
        return w, h
    raise ValueError("WebP: unknown first chunk %r" % fourcc)


def png_chunks(data):
    """[(type, payload)] with every CRC checked; ValueError on damage."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("PNG: bad signature")
    out, i, n = [], 8, len(data)
    while i < n:
        if i + 12 > n:
            raise ValueError("PNG: truncated chunk header at %d" % i)
        ln = struct.unpack(">I", data[i:i + 4])[0]
        typ = data[i + 4:i + 8]
        if i + 12 + ln > n:
            raise ValueError("PNG: truncated %r chunk" % typ)
        payload = data[i + 8:i + 8 + ln]
        crc = struct.unpack(">I", data[i + 8 + ln:i + 12 + ln])[0]
        if zlib.crc32(typ + payload) & 0xFFFFFFFF != crc:
            raise ValueError("PNG: bad CRC in %r chunk" % typ)
        out.append((typ, payload))
        i += 12 + ln
        if typ == b"IEND":
            break
    if not out or out[-1][0] != b"IEND":
        raise ValueError("PNG: no IEND")
    return out


def complete(data):
    """None if the file is structurally whole, else a reason (catches partial writes)."""
    try:
        fmt = info(data)[0]
        if fmt == "JPEG":
            if data[-2:] != b"\xff\xd9":
                return "JPEG does not end with EOI"
        elif fmt == "PNG":
            png_chunks(data)
        else:
            riff = struct.unpack("<I", data[4:8])[0]
            if riff + 8 != len(data):
                return "WebP RIFF size %d + 8 != file size %d" % (riff, len(data))
    except ValueError as e:
        return str(e)
    return None


def png_decode(data):
    """-> (w, h, channels, rows) with rows a list of bytes objects, 8 bits per sample.
    Palette images are expanded to RGB(A).  Enough for thumbd's own outputs."""
    chunks = png_chunks(data)
    ihdr = chunks[0][1]
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", ihdr)
    if depth != 8:
        raise ValueError("PNG: only 8-bit decoding is supported (depth %d)" % depth)
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(b"".join(p for t, p in chunks if t == b"IDAT"))
    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                  (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        img = [bytearray(w * ch) for _ in range(h)]
        pos = 0
        for x0, y0, dx, dy in passes:
            pw = (w - x0 + dx - 1) // dx if w > x0 else 0
            ph = (h - y0 + dy - 1) // dy if h > y0 else 0
            if pw == 0 or ph == 0:
                continue
            rows, pos = _unfilter(raw, pos, pw, ph, ch)
            for r, row in enumerate(rows):
                y = y0 + r * dy
                for c in range(pw):
                    x = x0 + c * dx
                    img[y][x * ch:(x + 1) * ch] = row[c * ch:(c + 1) * ch]
        rows = [bytes(r) for r in img]
    else:
        rows, _ = _unfilter(raw, 0, w, h, ch)
    if ctype == 3:
        pal = next(p for t, p in chunks if t == b"PLTE")
        trns = next((p for t, p in chunks if t == b"tRNS"), None)
        outc = 4 if trns else 3
        new = []
        for row in rows:
            o = bytearray()
            for idx in row:
                o += pal[idx * 3:idx * 3 + 3]
                if trns:
                    o.append(trns[idx] if idx < len(trns) else 255)
            new.append(bytes(o))
        rows, ch = new, outc
    return w, h, ch, rows


def _unfilter(raw, pos, w, h, ch):
    stride = w * ch
    prev = bytearray(stride)
    rows = []
    for _ in range(h):
        ft = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if ft == 1:
            for i in range(ch, stride):
                line[i] = (line[i] + line[i - ch]) & 255
        elif ft == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif ft == 3:
            for i in range(stride):
                left = line[i - ch] if i >= ch else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ft == 4:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        elif ft != 0:
            raise ValueError("PNG: bad filter type %d" % ft)
        rows.append(bytes(line))
        prev = line
    return rows, pos
