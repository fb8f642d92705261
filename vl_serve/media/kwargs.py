"""Client processor kwargs (``mm_processor_kwargs``, ``media_io_kwargs``) and numbers, in bounds.

vLLM always runs with ``--trust-request-mm-kwargs`` (vl-serve sets a request's
``media_io_kwargs`` itself, to tell vLLM where the frames it sampled sit in their video), so this
is the gate in its place, on every route whose body may carry them: a client's
``mm_processor_kwargs`` are refused unless ``media.trust_request_mm_kwargs`` is set, and then only
``fps``, ``num_frames``, ``min_pixels`` and ``max_pixels`` are accepted, within bounds; a client's
``media_io_kwargs`` are always refused. The same bounds apply to the per-item options read by
:mod:`vl_serve.media.parts`.
"""

from __future__ import annotations

import math
from typing import Any

from vl_serve.config import MediaConfig
from vl_serve.media.errors import MediaError, bad
from vl_serve.media.settings import config

MAX_SAMPLED_FRAMES = 768  # qwen-vl-utils' VIDEO_MAX_FRAMES
_MAX_FPS = 60.0
_PROCESSOR_KEYS = ("fps", "num_frames", "min_pixels", "max_pixels")


def number(
    value: Any, where: str, *, integer: bool, low: float, high: float, exclusive_low: bool = False
) -> int | float:
    """``value`` if it is a finite number (an int when ``integer``) within the bounds; else a 400."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)):
        kind = "an integer" if integer else "a number"
        raise bad(where, f"must be {kind}", "invalid_parameter")
    too_low = value <= low if exclusive_low else value < low
    if too_low or value > high:
        bound = f"> {low:g}" if exclusive_low else f">= {low:g}"
        raise bad(where, f"must be {bound} and <= {high:g}", "invalid_parameter")
    return value


def processor_value(key: str, value: Any, where: str, cfg: MediaConfig) -> int | float:
    """``value`` of the processor kwarg ``key``, checked against that key's bounds."""
    if key == "fps":
        return number(value, where, integer=False, low=0, high=_MAX_FPS, exclusive_low=True)
    if key == "num_frames":
        return number(value, where, integer=True, low=1, high=MAX_SAMPLED_FRAMES)
    high = max(cfg.max_image_pixels, cfg.max_video_frame_pixels)
    return number(value, where, integer=True, low=1, high=high)


def sanitize(body: dict[str, Any], cfg: MediaConfig) -> bool:
    """Check the body's processor kwargs in place; True if empty values were removed."""
    changed = False
    if "media_io_kwargs" in body:
        if body["media_io_kwargs"]:
            raise MediaError(
                400,
                "media_io_kwargs is not accepted by this server; set fps / nframes on the "
                "video item instead",
                "media_io_kwargs",
                "invalid_parameter",
            )
        del body["media_io_kwargs"]
        changed = True
    kwargs = body.get("mm_processor_kwargs")
    if kwargs is None:
        if "mm_processor_kwargs" in body:
            del body["mm_processor_kwargs"]
            changed = True
        return changed
    if not isinstance(kwargs, dict):
        raise MediaError(
            400, "mm_processor_kwargs must be an object", "mm_processor_kwargs", "invalid_parameter"
        )
    if kwargs and not cfg.trust_request_mm_kwargs:
        raise MediaError(
            400,
            "Per-request mm_processor_kwargs are disabled on this server because they can change "
            "multimodal preprocessing resource usage; set fps / nframes / min_pixels / max_pixels "
            "on the media item instead",
            "mm_processor_kwargs",
            "invalid_parameter",
        )
    for key, value in kwargs.items():
        where = f"mm_processor_kwargs.{key}"
        if key not in _PROCESSOR_KEYS:
            raise MediaError(
                400,
                f"{where} is not accepted by this server (accepted: {', '.join(_PROCESSOR_KEYS)})",
                where,
                "invalid_parameter",
            )
        processor_value(key, value, where, cfg)
    if not kwargs:
        del body["mm_processor_kwargs"]
        changed = True
    return changed


def sanitize_mm_kwargs(body: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Check client ``mm_processor_kwargs``/``media_io_kwargs`` on any route that takes them.

    ``mm_processor_kwargs`` only where ``media.trust_request_mm_kwargs`` is set, and then only
    ``fps``, ``num_frames``, ``min_pixels`` and ``max_pixels``, within bounds; ``media_io_kwargs``
    never. vLLM runs with ``--trust-request-mm-kwargs``: this is the check in its place.
    Returns True if the body changed (empty values removed).
    """
    return sanitize(body, config(settings))
