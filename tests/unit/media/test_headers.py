"""exact_size, the JPEG/PNG header walk that stands in for Pillow's open."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.helpers.media_requests import (
    JPEG,
    PNG,
    jpeg_two_sofs,
    png_two_ihdrs,
    segment_at,
)


def _pillow_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            return im.size
    except Exception:
        return None


def _encoded_variants() -> list[tuple[str, bytes]]:
    out = []
    for size in [(64, 48), (1, 1), (3, 700), (640, 480)]:
        for mode in ("RGB", "L", "CMYK"):
            for kw in ({}, {"progressive": True}, {"exif": b"Exif\x00\x00" + bytes(300)}):
                buf = io.BytesIO()
                Image.new(mode, size, 90).save(buf, "JPEG", **kw)
                out.append(("JPEG", buf.getvalue()))
        for mode in ("RGB", "RGBA", "L", "P", "1"):
            for kw in ({}, {"icc_profile": bytes(600)}, {"optimize": True}):
                buf = io.BytesIO()
                Image.new(mode, size).save(buf, "PNG", **kw)
                out.append(("PNG", buf.getvalue()))
    return out


def test_exact_size_reads_every_regular_header_as_pillow_does() -> None:
    from vl_serve.media.headers import exact_size

    for fmt, data in _encoded_variants():
        assert exact_size(data, fmt) == _pillow_size(data, fmt), (fmt, data[:40].hex())


# fmt: off
IRREGULAR = [
    # (format, bytes): headers exact_size leaves to Pillow
    pytest.param("JPEG", jpeg_two_sofs((16, 16), (5000, 5000)), id="two-sofs"),
    pytest.param("PNG", png_two_ihdrs((16, 16), (5000, 5000)), id="two-ihdrs"),
    pytest.param("JPEG", JPEG[:2] + b"\xff" + JPEG[2:], id="fill-byte"),
    pytest.param("JPEG", JPEG[:2] + b"\xff\xd0" + JPEG[2:], id="rst-marker"),
    pytest.param("JPEG", JPEG[:segment_at(JPEG, 0xDB)[0]] + b"\x00" + JPEG[segment_at(JPEG, 0xDB)[0]:], id="junk-byte"),
    pytest.param("JPEG", JPEG[:segment_at(JPEG, 0xC0)[1] - 1], id="cut-in-sof"),
    pytest.param("JPEG", JPEG[:segment_at(JPEG, 0xDA)[0]], id="no-sos"),
    pytest.param("PNG", PNG[:40], id="png-cut-before-idat"),
]
# fmt: on


@pytest.mark.parametrize(("fmt", "data"), IRREGULAR)
def test_exact_size_leaves_irregular_headers_to_pillow(fmt: str, data: bytes) -> None:
    from vl_serve.media.headers import exact_size

    assert exact_size(data, fmt) is None


def test_exact_size_never_disagrees_with_pillow_on_mutated_headers() -> None:
    """Random byte edits near the start of real headers: whenever exact_size gives a size,
    Pillow's open gives the same one or fails (and then vLLM refuses the image itself)."""
    import random

    from vl_serve.media.headers import exact_size

    rng = random.Random(5)
    bases = _encoded_variants()
    accepted = 0
    for _ in range(4000):
        fmt, base = rng.choice(bases)
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(2, min(len(data), 400))
            edit = rng.random()
            if edit < 0.5:
                data[i] = rng.randrange(256)
            elif edit < 0.75:
                marker = rng.choice([0xC0, 0xC2, 0xFF, 0xD0, 0x00, 0xDA, 0xE1])
                data[i:i] = bytes([0xFF, marker]) + bytes(rng.randrange(12))
            else:
                del data[i : i + rng.randrange(1, 8)]
        size = exact_size(bytes(data), fmt)
        if size is not None:
            accepted += 1
            pillow = _pillow_size(bytes(data), fmt)
            assert pillow in (None, size), (fmt, size, pillow, bytes(data[:80]).hex())
