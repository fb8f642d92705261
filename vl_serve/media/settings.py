"""The ``media`` section of the server settings, parsed once, and the limits that follow from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vl_serve.config import MediaConfig
from vl_serve.media.errors import MediaError, mib
from vl_serve.media.images import ImageLimits
from vl_serve.media.policy import FetchPolicy
from vl_serve.media.presize import Budget, settings_budget

# The parsed media section per settings dict: a server has one for its whole life, so each
# request would otherwise validate the same dict again. Keyed by the section's identity, and it
# is kept alive here so that identity cannot be reused.
_PARSED: dict[int, tuple[Any, MediaConfig, FetchPolicy]] = {}
_PARSED_MAX = 32


def parsed(settings: dict[str, Any]) -> tuple[MediaConfig, FetchPolicy]:
    """The validated media config of ``settings`` and the fetch policy it sets."""
    raw = settings.get("media")
    hit = _PARSED.get(id(raw))
    if hit is not None and hit[0] is raw:
        return hit[1], hit[2]
    cfg = MediaConfig.model_validate(raw or {})
    policy = FetchPolicy.from_config(cfg)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[id(raw)] = (raw, cfg, policy)
    return cfg, policy


# The served model's image budget per settings dict, read from the model's files once (the
# middleware asks for it when it is built, before the first request).
_BUDGETS: dict[int, tuple[Any, Budget | None]] = {}


def budget(settings: dict[str, Any]) -> Budget | None:
    """The served model's image budget (:mod:`vl_serve.media.presize`), or None: no presizing."""
    hit = _BUDGETS.get(id(settings))
    if hit is not None and hit[0] is settings:
        return hit[1]
    found = settings_budget(settings)
    if len(_BUDGETS) >= _PARSED_MAX:
        _BUDGETS.clear()
    _BUDGETS[id(settings)] = (settings, found)
    return found


def config(settings: dict[str, Any]) -> MediaConfig:
    """The validated media config of ``settings``."""
    return parsed(settings)[0]


def max_request_bytes(settings: dict[str, Any]) -> int:
    """Largest request body the middleware should read (``media.max_request_bytes``)."""
    return config(settings).max_request_bytes


def body_too_large(settings: dict[str, Any]) -> MediaError:
    """The error for a request body over ``media.max_request_bytes`` (stop reading, send it)."""
    limit = config(settings).max_request_bytes
    return MediaError(
        413,
        f"the request body is larger than the {mib(limit)} limit (media.max_request_bytes); "
        "send large images and videos as URLs",
        None,
        "request_too_large",
    )


@dataclass
class Context:
    """What every item of one request is checked against: the media config and fetch policy."""

    cfg: MediaConfig
    policy: FetchPolicy
    budget: Budget | None = None  # the served model's image budget: images over it are presized

    @property
    def video_bytes(self) -> int:
        return self.cfg.max_video_bytes or self.cfg.max_item_bytes

    @property
    def video_field(self) -> str:
        return "max_video_bytes" if self.cfg.max_video_bytes else "max_item_bytes"


def image_limits(cfg: MediaConfig, frame: bool = False) -> ImageLimits:
    """The limits of an image, or of one frame of a video when ``frame``."""
    if frame:
        return ImageLimits(
            cfg.max_video_frame_pixels,
            cfg.min_image_side,
            cfg.max_image_aspect_ratio,
            "max_video_frame_pixels",
        )
    return ImageLimits(cfg.max_image_pixels, cfg.min_image_side, cfg.max_image_aspect_ratio)
