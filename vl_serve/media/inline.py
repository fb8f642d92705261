"""Inline ``data:`` URL images in vLLM's own form: checked from their header, passed on as sent.

The most common media item is a base64 image in an OpenAI ``image_url`` part. Its size is known
from the length of its base64 text, and its format and dimensions from the header at its start,
so neither the whole base64 text nor the pixels are decoded here, and the request body is not
rebuilt. An image over the served model's pixel budget takes the full path instead, where it is
presized (:mod:`vl_serve.media.presize`). vLLM decodes the image once, as it would without vl-serve, and answers bad base64 or a
truncated pixel stream with its own 400. Anything unusual goes to the full check instead.
"""

from __future__ import annotations

import binascii
from typing import Any

from vl_serve.media.errors import Refusal, refused, too_large
from vl_serve.media.headers import exact_size, header_size
from vl_serve.media.images import check_image_header
from vl_serve.media.parts import Item
from vl_serve.media.settings import Context, image_limits
from vl_serve.media.sources import parse_data_url

# Base64 characters decoded to check a data: URL image's header (48 KiB of image): enough for
# every PNG/GIF/BMP/WebP header and for JPEGs whose EXIF/ICC blocks are not larger than that.
# Decoding costs time in proportion to the characters, so it goes in steps: _QUICK_HEAD_CHARS
# (1 KiB of image: a PNG's header, a plain JPEG's tables up to its scan) settles regular JPEG/PNG
# headers exactly or not at all (no Pillow); then _FIRST_HEAD_CHARS (3 KiB of image), which holds
# the whole header of most other images; only when that does not settle it, the rest of
# _HEAD_CHARS.
_HEAD_CHARS = 64 * 1024
_FIRST_HEAD_CHARS = 4 * 1024
_QUICK_HEAD_CHARS = 1376


def keep_data_url_image(source: Any, ctx: Context) -> bool:
    """Whether a ``data:`` URL image may go on to vLLM exactly as the client sent it.

    Anything unusual (whitespace in the base64 text, a type that is not image/*, a header longer
    than ``_HEAD_CHARS``) returns False: the full check then decodes and re-encodes it. An image
    over the limits raises a :class:`Refusal`.
    """
    if not isinstance(source, str) or source[:5].lower() != "data:":
        return False
    mime, start = parse_data_url(source)
    if not mime.startswith("image/"):
        return False
    n = len(source) - start
    if n % 4 or " " in source or "\n" in source or "\r" in source or "\t" in source:
        return False
    padding = 2 if source.endswith("==") else 1 if source.endswith("=") else 0
    max_bytes = ctx.cfg.max_item_bytes
    if n // 4 * 3 - padding > max_bytes:
        raise too_large("decoded base64 item", max_bytes, "max_item_bytes")
    limits = image_limits(ctx.cfg)
    for chars in (_QUICK_HEAD_CHARS, _FIRST_HEAD_CHARS, _HEAD_CHARS):
        head_chars = min(n, chars)
        try:
            head = binascii.a2b_base64(source[start : start + head_chars], strict_mode=True)
        except (binascii.Error, ValueError):
            return False  # the full check says what is wrong with it
        complete = head_chars == n
        if chars == _QUICK_HEAD_CHARS and not complete:
            fmt = check_image_header(head, limits, complete=False, exact_only=True)
            if fmt is not None:
                return _within_budget(head, fmt, ctx)
            continue
        fmt = check_image_header(head, limits, complete=complete)
        if fmt is not None:
            return _within_budget(head, fmt, ctx)
        if complete:
            break
    return False


def _within_budget(head: bytes, fmt: str, ctx: Context) -> bool:
    """Whether the processor keeps this image's size (else it is presized: the full path)."""
    if ctx.budget is None:
        return True
    dims = exact_size(head, fmt) or header_size(head, fmt)
    return dims is not None and ctx.budget.presize(*dims, fmt) is None


def kept_as_sent(found: Item, ctx: Context) -> bool:
    """Whether ``found`` is an inline image that goes on to vLLM untouched (checked here, in the
    caller's turn of the event loop: no task, no thread, no yield to other requests)."""
    part = found.part
    if (
        found.modality != "image"
        or found.resize is not None
        or part.get("type") != "image_url"  # the form vLLM reads itself (not qwen-vl-utils')
        or not isinstance(part.get("image_url"), dict)
    ):
        return False
    try:
        return keep_data_url_image(found.source, ctx)
    except Refusal as refusal:
        raise refused(found.where, refusal) from None
