"""Checking one encoded image before the model sees it: format, size in pixels, readability.

The format and size come from the header (:mod:`vl_serve.media.headers`, else Pillow's lazy
open), so an image over the limits is refused before any pixel is decoded. An image within them is
then decoded once (JPEGs at 1/8 scale) so truncated or corrupt data is refused here with a clear
message rather than deep inside the model processor, and resized when the request asks for another
size. Everything here is blocking and CPU-bound: run it in a worker thread.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps

from vl_serve.media.errors import Refusal
from vl_serve.media.headers import IMAGE_MIME, exact_size, header_size, sniff_image

_FORMATS_TEXT = "JPEG, PNG, BMP, WEBP or GIF"


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    min_side: int
    max_aspect: float
    pixels_field: str = "max_image_pixels"


@dataclass(frozen=True)
class Resize:
    """What the request asks of one image's size (all optional)."""

    max_pixels: int | None = None
    min_pixels: int | None = None
    width: int | None = None
    height: int | None = None

    def __bool__(self) -> bool:
        values = (self.max_pixels, self.min_pixels, self.width, self.height)
        return any(v is not None for v in values)


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    mime: str
    width: int
    height: int


def _check_dims(w: int, h: int, limits: ImageLimits, what: str) -> None:
    if w * h > limits.max_pixels:
        raise Refusal(
            f"the {what} is {w}x{h} = {w * h} pixels, over the limit of {limits.max_pixels} "
            f"pixels (media.{limits.pixels_field})",
            code="media_too_large",
        )
    if min(w, h) < limits.min_side:
        raise Refusal(
            f"the {what} is {w}x{h}; each side must be at least {limits.min_side} pixels "
            "(media.min_image_side)"
        )
    if max(w, h) / min(w, h) > limits.max_aspect:
        raise Refusal(
            f"the {what} is {w}x{h}; its sides may differ by a factor of at most "
            f"{limits.max_aspect:g} (media.max_image_aspect_ratio)"
        )


def _target_size(w: int, h: int, resize: Resize, limits: ImageLimits) -> tuple[int, int] | None:
    if resize.width is not None or resize.height is not None:
        tw = resize.width or max(1, round(w * (resize.height or h) / h))
        th = resize.height or max(1, round(h * (resize.width or w) / w))
    else:
        scale = 1.0
        if resize.max_pixels is not None and w * h > resize.max_pixels:
            scale = math.sqrt(resize.max_pixels / (w * h))
        elif resize.min_pixels is not None and w * h < resize.min_pixels:
            scale = math.sqrt(min(resize.min_pixels, limits.max_pixels) / (w * h))
        if scale == 1.0:
            return None
        tw, th = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
    if (tw, th) == (w, h):
        return None
    _check_dims(tw, th, limits, "requested image size")
    return tw, th


def _bomb(limits: ImageLimits, what: str) -> Refusal:
    return Refusal(
        f"the {what} has more pixels than the limit of {limits.max_pixels} "
        f"(media.{limits.pixels_field})",
        code="media_too_large",
    )


def check_image_header(
    head: bytes,
    limits: ImageLimits,
    *,
    complete: bool,
    what: str = "image",
    exact_only: bool = False,
) -> str | None:
    """Header-only check of an encoded image whose first bytes are ``head`` (all of it when
    ``complete``): a supported format, within the size limits, a header Pillow can read (or,
    for regular JPEG/PNG headers, one walked as Pillow would: :func:`exact_size`).

    Returns the format, or None when ``head`` is too short to tell (check the whole image with
    ``check_image`` then). No pixel is decoded: vLLM decodes them once, and answers a truncated
    or corrupt pixel stream itself with a 400 ("Failed to load image: ...").
    """
    fmt = sniff_image(head)
    if fmt is None:
        if complete or len(head) >= 32:
            raise Refusal(f"the {what} is not in a supported image format ({_FORMATS_TEXT})")
        return None
    dims = exact_size(head, fmt)
    if dims is not None:
        _check_dims(*dims, limits, what)
        _check_pillow_bomb(*dims, limits, what)
        return fmt
    if exact_only:
        return None
    dims = header_size(head, fmt)
    if dims is not None:
        _check_dims(*dims, limits, what)  # before Pillow sees it
    try:
        with Image.open(io.BytesIO(head), formats=[fmt]) as im:
            w, h = im.size  # Pillow parses the header only
    except Image.DecompressionBombError:
        raise _bomb(limits, what) from None
    except Exception:
        if complete:
            raise Refusal(f"the {what} data is truncated or corrupt ({fmt})") from None
        return None  # the header goes on past ``head`` (a big EXIF/ICC block, say)
    _check_dims(w, h, limits, what)
    return fmt


def _check_pillow_bomb(w: int, h: int, limits: ImageLimits, what: str) -> None:
    """Pillow's own decompression-bomb check (twice ``Image.MAX_IMAGE_PIXELS``), which its open
    would have made and vLLM's will make: only reached when media.max_image_pixels is above it."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and max(1, w) * max(1, h) > 2 * limit:
        raise _bomb(limits, what)


def check_image(
    data: bytes, limits: ImageLimits, resize: Resize | None = None, what: str = "image"
) -> CheckedImage:
    """Validate one encoded image; downscale/upscale it when ``resize`` asks for another size."""
    fmt = check_image_header(data, limits, complete=True, what=what)
    assert fmt is not None  # complete=True: refused rather than undecided
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            w, h = im.size
            target = _target_size(w, h, resize, limits) if resize else None
            if target is None:
                if fmt == "JPEG":
                    im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
                im.load()
                return CheckedImage(data, IMAGE_MIME[fmt], w, h)
            im.load()
            return _reencode(im, fmt, target)
    except Refusal:
        raise
    except Image.DecompressionBombError:
        raise _bomb(limits, what) from None
    except Exception:
        raise Refusal(f"the {what} data is truncated or corrupt ({fmt})") from None


def _reencode(im: Image.Image, fmt: str, size: tuple[int, int]) -> CheckedImage:
    img: Image.Image = ImageOps.exif_transpose(im) or im
    if img.size != im.size:  # rotated by EXIF: the target follows the rotation
        size = (size[1], size[0])
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if fmt == "JPEG" and not has_alpha:
        img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
        out_fmt, kwargs = "JPEG", {"quality": 95}
    else:
        img = img.convert("RGBA" if has_alpha else "RGB")
        out_fmt, kwargs = "PNG", {"compress_level": 1}
    img = img.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, out_fmt, **kwargs)
    return CheckedImage(buf.getvalue(), IMAGE_MIME[out_fmt], size[0], size[1])
