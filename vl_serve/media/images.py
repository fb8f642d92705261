"""Checking one encoded image before the model sees it: format, size in pixels, and its size.

The format and size come from the header (:mod:`vl_serve.media.headers`, else Pillow's lazy
open), so an image over the limits is refused before any pixel is decoded. An image that needs no
change goes on as it came, checked from its header only: vLLM decodes it once and answers a
truncated or corrupt pixel stream with its own 400. An image is decoded here only to change its
size: when the request asks for another size, or when it is over the served model's pixel budget
(:mod:`vl_serve.media.presize`). Then it is decoded at the smallest JPEG DCT scale (1/2, 1/4,
1/8) that is still at least the target, turned upright by its EXIF orientation as vLLM's loader
does, resized once with the processor's resampling and re-encoded. Everything here is blocking
and CPU-bound: run it in a worker thread.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image

from vl_serve.media.errors import Refusal
from vl_serve.media.headers import IMAGE_MIME, exact_size, header_size, sniff_image
from vl_serve.media.presize import Budget

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


def _target_size(
    w: int, h: int, resize: Resize | None, limits: ImageLimits, budget: Budget | None, fmt: str
) -> tuple[int, int] | None:
    """The size to resize a ``w`` x ``h`` (upright) image to, or None to leave it as it is.

    With a budget, the request's pixel bounds and sizes go through the processor's own rule, so
    the result is one the processor keeps; without one, the image is scaled to the bounds.
    """
    if not resize:
        return budget.presize(w, h, fmt) if budget is not None else None
    if resize.width is not None or resize.height is not None:
        tw = resize.width or max(1, round(w * (resize.height or h) / h))
        th = resize.height or max(1, round(h * (resize.width or w) / w))
        fitted = budget.fit(tw, th) if budget is not None else None
        return _changed(fitted or (tw, th), w, h, limits)
    low = None if resize.min_pixels is None else min(resize.min_pixels, limits.max_pixels)
    if budget is not None:
        fitted = budget.fit(w, h, low, resize.max_pixels)
        if fitted is not None:
            return _changed(fitted, w, h, limits)
    scale = 1.0
    if resize.max_pixels is not None and w * h > resize.max_pixels:
        scale = math.sqrt(resize.max_pixels / (w * h))
    elif low is not None and w * h < low:
        scale = math.sqrt(low / (w * h))
    if scale == 1.0:
        return None
    return _changed((max(1, math.floor(w * scale)), max(1, math.floor(h * scale))), w, h, limits)


def _changed(
    target: tuple[int, int] | None, w: int, h: int, limits: ImageLimits
) -> tuple[int, int] | None:
    if target is None or target == (w, h):
        return None
    _check_dims(*target, limits, "requested image size")
    return target


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


# EXIF orientation (tag 0x0112) -> the transpose that turns the image upright, as Pillow's
# ImageOps.exif_transpose (which vLLM's loader applies) does; 5 to 8 swap width and height.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Formats resized here; others (GIF: palettes, animation) go on to vLLM as they came.
_RESIZED = ("JPEG", "PNG", "WEBP", "BMP")


def check_image(
    data: bytes,
    limits: ImageLimits,
    resize: Resize | None = None,
    what: str = "image",
    budget: Budget | None = None,
) -> CheckedImage:
    """Check one encoded image from its header; resize it when ``resize`` asks for another size
    or it is over ``budget``, the served model's processor budget. Otherwise ``data`` goes on as
    it came."""
    fmt = check_image_header(data, limits, complete=True, what=what)
    assert fmt is not None  # complete=True: refused rather than undecided
    mime = IMAGE_MIME[fmt]
    dims = exact_size(data, fmt)
    if dims is not None and not resize and (budget is None or budget.presize(*dims, fmt) is None):
        return CheckedImage(data, mime, *dims)  # nothing to change: no Pillow at all
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            w, h = im.size
            if fmt not in _RESIZED and not resize:
                return CheckedImage(data, mime, w, h)
            # Read before any pixel, as vLLM's loader reads it.
            orientation = _orientation(im)
            upright = (h, w) if orientation >= 5 else (w, h)
            target = _target_size(*upright, resize, limits, budget, fmt)
            if target is None:
                return CheckedImage(data, mime, w, h)
            return _resized(im, fmt, target, orientation)
    except Refusal:
        raise
    except Image.DecompressionBombError:
        raise _bomb(limits, what) from None
    except Exception:
        raise Refusal(f"the {what} data is truncated or corrupt ({fmt})") from None


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1  # vLLM's loader ignores an unreadable EXIF block too
    return value if value in _UPRIGHT else 1


def _resized(im: Image.Image, fmt: str, size: tuple[int, int], orientation: int) -> CheckedImage:
    """``im`` decoded (JPEG: at the smallest DCT scale still >= ``size``), upright, resized once
    to ``size`` (upright width, height) and re-encoded.

    An opaque JPEG stays a JPEG at quality 95 without chroma subsampling (4:4:4): against the
    processor's own resize of the original its PSNR is about 39-43 dB, where Pillow's default
    4:2:0 gives 31-35 dB, at a tenth of a lossless file's bytes. Any other source (PNG, WebP,
    BMP: screenshots, drawings, alpha) is first converted to RGB by vLLM's own conversion (alpha
    over white), which is what the processor would see, and written as an uncompressed BMP:
    lossless, and about 3 ms to write and read per megapixel where PNG takes 70 ms; its 3 bytes
    per pixel only travel inside the process, to vLLM.
    """
    if fmt == "JPEG":
        im.draft(im.mode, (size[1], size[0]) if orientation >= 5 else size)
    im.load()
    img: Image.Image = im.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else im
    if fmt == "JPEG" and img.mode in ("RGB", "L"):
        out_fmt, kwargs = "JPEG", {"quality": 95, "subsampling": 0}
    else:
        from vllm.multimodal.image import convert_image_mode

        img = convert_image_mode(img, "RGB")
        out_fmt, kwargs = "BMP", {}
    img = img.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, out_fmt, **kwargs)
    return CheckedImage(buf.getvalue(), IMAGE_MIME[out_fmt], size[0], size[1])
