"""Finding the media items of a chat request, reading their options, and counting them.

Each content part in an OpenAI form (``image_url``/``video_url``/``audio_url``, Responses-style
``input_image``) or a qwen-vl-utils form (``{"type": "image"}``, ``{"type": "video"}`` with
``fps``, ``nframes`` and pixel budgets) becomes one :class:`Item`: where it is, what it is, where
its bytes come from and what the request asks of it. A part is read as vLLM reads it: one without
a ``type``, or with a ``uuid``, by the first media key vLLM looks for. ``messages`` is one
conversation, or a list of them (``/v1/chat/completions/batch``), each a prompt of its own.
Options are checked here and counts are checked against ``limit_mm_per_prompt`` (per prompt) and
``media.max_items_per_request`` (per request), before any fetch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vl_serve.config import MediaConfig
from vl_serve.media.errors import bad
from vl_serve.media.images import Resize
from vl_serve.media.kwargs import MAX_SAMPLED_FRAMES, number, processor_value
from vl_serve.media.unread import VLLM_PART_KEYS

_DETAIL = ("auto", "low", "high")
_MODALITY_NAMES = {"image": "images", "video": "videos", "audio": "audio items"}
# The keys a part without a type (or with a uuid) is read by: vLLM's, then qwen-vl-utils' own.
_KEYS_IN_ORDER = (*VLLM_PART_KEYS, "image", "video")
# Types that are vl-serve's own (qwen-vl-utils forms): rewritten to vLLM's, uuid or not.
_OWN_TYPES = ("image", "video")


@dataclass
class Item:
    """One media part of the request, and where to put what replaces it."""

    where: str
    modality: str  # image | video | audio
    content: list[Any]
    index: int
    part: dict[str, Any]
    source: Any  # URL/path string, list of frame sources, or None (uuid-only reference)
    qwen: bool = False  # qwen-vl-utils form: bare local paths are allowed
    resize: Resize | None = None
    fps: float | None = None
    nframes: int | None = None
    prompt: int = 0  # which conversation of a batch request
    # Where the frames sampled here from a video file sit in it (vLLM's video metadata).
    video_metadata: dict[str, Any] | None = None


def _url_field(value: Any, where: str, key: str) -> tuple[Any, Any]:
    """(url, detail) of an OpenAI ``image_url``-style field (string or object)."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        return value.get("url"), value.get("detail")
    if value is None:
        return None, None
    raise bad(where, f"'{key}' must be a URL string or an object with 'url'")


def _positive_int(part: dict[str, Any], key: str, where: str, high: int) -> int | None:
    if part.get(key) is None:
        return None
    return int(number(part[key], f"{where}.{key}", integer=True, low=1, high=high))


def part_type(part: dict[str, Any]) -> Any:
    """The type a part is read as: its ``type``, or as vLLM reads one without (or with a uuid)."""
    ptype = part.get("type")
    if ptype is None or (part.get("uuid") is not None and ptype not in _OWN_TYPES):
        return next((key for key in _KEYS_IN_ORDER if key in part), None)
    return ptype


def _classify(part: dict[str, Any], where: str, cfg: MediaConfig) -> Item | None:
    ptype = part_type(part)

    def item(modality: str, source: Any, **kw: Any) -> Item:
        return Item(where, modality, [], 0, part, source, **kw)

    if ptype == "image_url":
        url, detail = _url_field(part.get("image_url"), where, "image_url")
        return item("image", url, resize=_detail(detail, where, cfg))
    if ptype == "input_image":
        if part.get("file_id") is not None:
            raise bad(where, "input_image with file_id is not supported; send image_url")
        url, detail = _url_field(part.get("image_url"), where, "image_url")
        return item("image", url, resize=_detail(detail or part.get("detail"), where, cfg))
    if ptype == "video_url":
        url, _detail_unused = _url_field(part.get("video_url"), where, "video_url")
        return item("video", url)
    if ptype == "audio_url":
        url, _detail_unused = _url_field(part.get("audio_url"), where, "audio_url")
        return item("audio", url)
    if ptype == "image":
        source = part.get("image", part.get("image_url"))
        if isinstance(source, dict):
            source = source.get("url")
        high = cfg.max_image_pixels
        resize = Resize(
            max_pixels=_positive_int(part, "max_pixels", where, 1 << 40),
            min_pixels=_positive_int(part, "min_pixels", where, high),
            width=_positive_int(part, "resized_width", where, high),
            height=_positive_int(part, "resized_height", where, high),
        )
        return item("image", source, qwen=True, resize=resize or None)
    if ptype == "video":
        return _classify_video(part, where, cfg)
    if ptype in ("image_embeds", "image_pil"):
        return item("image", None)
    if ptype == "video_embeds":
        return item("video", None)
    if ptype in ("input_audio", "audio_embeds"):
        return item("audio", None)
    return None


def _classify_video(part: dict[str, Any], where: str, cfg: MediaConfig) -> Item:
    for key in ("video_start", "video_end", "total_pixels"):
        if part.get(key) is not None:
            raise bad(where, f"'{key}' is not supported for videos")
    source = part.get("video", part.get("video_url"))
    if isinstance(source, dict):
        source = source.get("url")
    fps = None
    if part.get("fps") is not None:  # samples a video file; a list of frames has no time base
        fps = float(processor_value("fps", part["fps"], f"{where}.fps", cfg))
    nframes = _positive_int(part, "nframes", where, MAX_SAMPLED_FRAMES)
    if nframes is not None and nframes < 2:
        raise bad(where, "nframes must be at least 2")
    frame_pixels = cfg.max_video_frame_pixels
    resize = Resize(
        max_pixels=_positive_int(part, "max_pixels", where, 1 << 40),
        min_pixels=_positive_int(part, "min_pixels", where, frame_pixels),
        width=_positive_int(part, "resized_width", where, frame_pixels),
        height=_positive_int(part, "resized_height", where, frame_pixels),
    )
    return Item(
        where, "video", [], 0, part, source, qwen=True, resize=resize or None, fps=fps,
        nframes=nframes,
    )  # fmt: skip


def _detail(detail: Any, where: str, cfg: MediaConfig) -> Resize | None:
    if detail is None or detail == "auto":
        return None
    if detail not in _DETAIL:
        raise bad(where, "detail must be 'auto', 'low' or 'high'", "invalid_parameter")
    if detail == "low":
        return Resize(max_pixels=cfg.low_detail_max_pixels)
    if cfg.high_detail_max_pixels is not None:
        return Resize(max_pixels=cfg.high_detail_max_pixels)
    return None


def find_items(body: dict[str, Any], cfg: MediaConfig) -> list[Item]:
    """The media items of every message's content list, in order."""
    items: list[Item] = []
    messages = body.get("messages")
    if not isinstance(messages, list):
        return items
    for mi, message in enumerate(messages):
        if isinstance(message, list):  # the batch route: a list of conversations
            for mj, inner in enumerate(message):
                _message_items(inner, f"messages[{mi}][{mj}]", mi, cfg, items)
        else:
            _message_items(message, f"messages[{mi}]", 0, cfg, items)
    return items


def _message_items(
    message: Any, where: str, prompt: int, cfg: MediaConfig, items: list[Item]
) -> None:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return
    for ci, part in enumerate(content):
        if not isinstance(part, dict) or (part.get("type") == "text" and "uuid" not in part):
            continue
        found = _classify(part, f"{where}.content[{ci}]", cfg)
        if found is not None:
            found.content, found.index, found.prompt = content, ci, prompt
            items.append(found)


def check_counts(items: list[Item], cfg: MediaConfig, settings: dict[str, Any]) -> None:
    """Refuse the first item over ``limit_mm_per_prompt`` or ``media.max_items_per_request``."""
    limits = settings.get("limit_mm_per_prompt") or {}
    seen: dict[tuple[int, str], int] = {}
    for n, found in enumerate(items, 1):
        key = (found.prompt, found.modality)
        seen[key] = seen.get(key, 0) + 1
        limit = limits.get(found.modality)
        if isinstance(limit, dict):  # vLLM's {"count": n, ...} form
            limit = limit.get("count")
        if isinstance(limit, int) and seen[key] > limit:
            name = _MODALITY_NAMES[found.modality]
            raise bad(
                found.where,
                f"too many {name} in one request: at most {limit} "
                f"(limit_mm_per_prompt.{found.modality})",
                "too_many_media_items",
            )
        if n > cfg.max_items_per_request:
            raise bad(
                found.where,
                f"too many media items in one request: at most {cfg.max_items_per_request} "
                "(media.max_items_per_request)",
                "too_many_media_items",
            )
