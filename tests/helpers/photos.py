"""Synthetic photo-like images, made in memory from a seed: gradients, texture and hard edges.

Resizing a flat colour proves nothing about a resize, so these carry what photos carry: smooth
gradients, fine noise (sensor texture) and sharp-edged shapes. The same seed gives the same
pixels. :func:`photo_jpeg` can tag an EXIF orientation, as phone cameras do.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def photo(width: int, height: int, seed: int = 0, noise: float = 6.0) -> Image.Image:
    """An RGB ``width`` x ``height`` photo-like image; ``noise``: the texture's strength."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy = x / max(1, width - 1), y / max(1, height - 1)
    base = np.stack(
        [
            120 + 90 * fx + 20 * np.sin(fy * 7.0),
            60 + 120 * fy + 25 * np.cos(fx * 5.0),
            200 - 110 * fx * fy,
        ],
        axis=-1,
    )
    texture = rng.normal(0.0, noise, (height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    texture = np.repeat(np.repeat(texture, 4, axis=0), 4, axis=1)[:height, :width]
    pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    unit = max(4, min(width, height) // 12)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width - unit)), int(rng.integers(0, height - unit))
        size = int(rng.integers(unit, 3 * unit))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x0 + size, y0 + size // 2), fill=color)
        else:
            draw.ellipse((x0, y0, x0 + size, y0 + size), outline=color, width=max(2, unit // 8))
    return img


def photo_jpeg(
    width: int,
    height: int,
    seed: int = 0,
    orientation: int | None = None,
    quality: int = 90,
    noise: float = 6.0,
) -> bytes:
    """:func:`photo` as a JPEG; with ``orientation``, the stored pixels are ``width`` x
    ``height`` and an EXIF orientation tag says how to turn them upright."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    photo(width, height, seed, noise).save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def photo_png(width: int, height: int, seed: int = 0) -> bytes:
    """:func:`photo` as a PNG."""
    buf = io.BytesIO()
    photo(width, height, seed).save(buf, "PNG", compress_level=1)
    return buf.getvalue()
