"""Image headers read without Pillow: the format from the magic bytes, the size from the header.

A size read here is checked against the limits before Pillow sees the image, so a decompression
bomb is refused before a single pixel is decoded. :func:`header_size` reads any supported format
loosely (a first guard); :func:`exact_size` reads regular JPEG and PNG headers exactly as Pillow
would, so such an image needs no Pillow at all for its header check.
"""

from __future__ import annotations

import struct

IMAGE_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


def sniff_image(data: bytes) -> str | None:
    """The image format (a key of :data:`IMAGE_MIME`) from the first bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height from the image header alone (None if the header is not readable)."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            w, h = struct.unpack_from(">II", data, 16)
            return w, h
        if fmt == "GIF":
            w, h = struct.unpack_from("<HH", data, 6)
            return w, h
        if fmt == "BMP":
            if struct.unpack_from("<I", data, 14)[0] == 12:
                w, h = struct.unpack_from("<HH", data, 18)
                return w, h
            w, h = struct.unpack_from("<ii", data, 18)
            return abs(w), abs(h)
        if fmt == "WEBP":
            kind = data[12:16]
            if kind == b"VP8 ":
                w, h = struct.unpack_from("<HH", data, 26)
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if kind == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
        if fmt == "JPEG":
            pos = 2
            while pos + 4 <= len(data):
                if data[pos] != 0xFF:
                    return None
                marker = data[pos + 1]
                if marker == 0xFF:
                    pos += 1
                    continue
                if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                    pos += 2
                    continue
                length = struct.unpack_from(">H", data, pos + 2)[0]
                if marker in _SOF:
                    h, w = struct.unpack_from(">HH", data, pos + 5)
                    return w, h
                if marker == 0xDA:
                    return None
                pos += 2 + length
    except struct.error:
        return None
    return None


# JPEG markers that Pillow reads as one length-prefixed segment (its MARKER table's Skip, APP,
# COM, DQT and SOF handlers). Everything else (fill bytes, RST/TEM markers, junk between segments,
# DNL, JPG/JPGn, ...) is irregular: :func:`exact_size` leaves those headers to Pillow.
_JPEG_SEGMENTS = frozenset({0xC4, 0xCC, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)}) | _SOF
_PNG_SIGNATURE_IHDR = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"


def exact_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) exactly as Pillow's open of ``data`` would report it, or None.

    Only for regular JPEG and PNG headers, complete within ``data`` up to the first pixel data:
    a JPEG whose segments from SOI to SOS are all length-prefixed ones (:data:`_JPEG_SEGMENTS`),
    back to back, with exactly one SOF of 8-bit samples and 1, 3 or 4 components; a PNG whose
    chunks up to the first IDAT hold exactly one IHDR, the first. Pillow walks such a header
    segment by segment as this does and takes its size from the same SOF or IHDR (it would take
    the last of several, hence "exactly one"). Anything else returns None: Pillow decides then.
    A None is never an answer about the image, only "ask Pillow".
    """
    n = len(data)
    if fmt == "JPEG":
        pos, size = 2, None
        while pos + 4 <= n:
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xDA:
                return size
            if marker not in _JPEG_SEGMENTS:
                return None
            end = pos + 2 + ((data[pos + 2] << 8) | data[pos + 3])
            if end < pos + 4 or end > n:
                return None
            if marker in _SOF:
                # length, precision, height, width, components: Pillow refuses other precisions
                # and component counts, so those are its to answer.
                if size is not None or end < pos + 10 or data[pos + 4] != 8:
                    return None
                if data[pos + 9] not in (1, 3, 4):
                    return None
                size = ((data[pos + 7] << 8) | data[pos + 8], (data[pos + 5] << 8) | data[pos + 6])
            pos = end
        return None
    if fmt == "PNG" and n >= 41 and data.startswith(_PNG_SIGNATURE_IHDR):
        w, h = struct.unpack_from(">II", data, 16)
        pos = 33  # signature, IHDR's length, type, 13 bytes of data and CRC
        while pos + 8 <= n:
            kind = data[pos + 4 : pos + 8]
            if kind == b"IDAT":
                return w, h
            if kind == b"IHDR":
                return None
            pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
        return None
    return None
