"""Multimodal inputs of chat requests, checked and made safe before vLLM sees them.

:func:`prepare_request` is called by the request middleware for every ``/v1/chat/completions``
body. It

* accepts OpenAI parts (``image_url``/``video_url``/``audio_url``, url as a string or
  ``{"url", "detail"}``; Responses-style ``input_image``) and qwen-vl-utils / seed parts
  (``{"type": "image", "image": ...}``, ``{"type": "video", "video": <url or list of frames>,
  "fps", "nframes", "min_pixels", "max_pixels"}``) and rewrites them to vLLM's OpenAI forms;
* counts items against ``limit_mm_per_prompt`` and ``media.max_items_per_request`` before any
  fetch;
* gets every item's bytes under the rules of :mod:`vl_serve.media.fetch` (public http(s) hosts,
  ``file://`` inside one folder, base64 ``data:``), checks them with :mod:`vl_serve.media.probe`
  (format, pixels, frames, duration) and hands vLLM the checked bytes as a ``data:`` URL, so vLLM
  itself never fetches a user's URL or reads a user's path;
* applies ``detail: "low" | "high"`` and per-image ``min_pixels``/``max_pixels``/``resized_*`` by
  resizing that image (a per-image pixel budget: it changes the image's token count);
* applies per-video ``fps``/``nframes``/``min_pixels``/``max_pixels``/``resized_*`` itself: a
  video file is sampled (only the needed frames decoded, with OpenCV) into vLLM's frame-list
  form ``data:video/jpeg;base64,<frame>,<frame>,...`` and the frames resized like images, so no
  per-request ``mm_processor_kwargs`` are needed; client ``mm_processor_kwargs`` are accepted
  only for a few keys, within bounds.

Refusals raise :class:`MediaError` (status 400, or 413 for byte sizes) whose message names the
item (``messages[0].content[2]``) and the limit, never a URL, a path or an exception's text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import os
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from vl_serve.config import MediaConfig
from vl_serve.media.fetch import (
    FetchPolicy,
    Refusal,
    base64_fits,
    decode_base64,
    fetch_http,
    local_path,
    mib,
    parse_data_url,
    read_local,
    too_large,
)
from vl_serve.media.probe import (
    CheckedImage,
    ImageLimits,
    Resize,
    VideoInfo,
    VideoLimits,
    check_image,
    check_image_header,
    check_video,
    decode_frames,
    even_indices,
)

__all__ = [
    "MediaError",
    "body_too_large",
    "max_request_bytes",
    "prepare_request",
    "sanitize_mm_kwargs",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Decoding and file reads run here, off the event loop, a few at a time.
_EXECUTOR = ThreadPoolExecutor(
    max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="vl-serve-media"
)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_DETAIL = ("auto", "low", "high")
_MAX_SAMPLED_FRAMES = 768  # qwen-vl-utils' VIDEO_MAX_FRAMES
_MAX_FPS = 60.0
_DEFAULT_FPS = 2.0  # qwen-vl-utils' FPS: a video file resized without fps/nframes
_FPS_MIN_FRAMES = 4  # qwen-vl-utils' FPS_MIN_FRAMES
_PROCESSOR_KEYS = ("fps", "num_frames", "min_pixels", "max_pixels")
_MODALITY_NAMES = {"image": "images", "video": "videos", "audio": "audio items"}


class MediaError(Exception):
    """A request refused because of its media; safe to show the client as it is."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI-style error body."""
        kind = "RequestEntityTooLarge" if self.status == 413 else "BadRequestError"
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code or self.status,
            }
        }


def _refused(where: str, refusal: Refusal) -> MediaError:
    return MediaError(refusal.status, f"{where}: {refusal.reason}", where, refusal.code)


def _bad(where: str, reason: str, code: str = "invalid_media") -> MediaError:
    return MediaError(400, f"{where}: {reason}", where, code)


# The parsed media section per settings dict: a server has one for its whole life, so each
# request would otherwise validate the same dict again (a few microseconds). Keyed by the
# section's identity, and it is kept alive here so that identity cannot be reused.
_PARSED: dict[int, tuple[Any, MediaConfig, FetchPolicy]] = {}
_PARSED_MAX = 32


def _parsed(settings: dict[str, Any]) -> tuple[MediaConfig, FetchPolicy]:
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


def _config(settings: dict[str, Any]) -> MediaConfig:
    return _parsed(settings)[0]


def max_request_bytes(settings: dict[str, Any]) -> int:
    """Largest request body the middleware should read (``media.max_request_bytes``)."""
    return _config(settings).max_request_bytes


def body_too_large(settings: dict[str, Any]) -> MediaError:
    """The error for a request body over ``media.max_request_bytes`` (stop reading, send it)."""
    limit = _config(settings).max_request_bytes
    return MediaError(
        413,
        f"the request body is larger than the {mib(limit)} limit (media.max_request_bytes); "
        "send large images and videos as URLs",
        None,
        "request_too_large",
    )


# --------------------------------------------------------------------------------------------
# Client-supplied processor kwargs


def _number(
    value: Any, where: str, *, integer: bool, low: float, high: float, exclusive_low: bool = False
) -> int | float:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)):
        kind = "an integer" if integer else "a number"
        raise _bad(where, f"must be {kind}", "invalid_parameter")
    too_low = value <= low if exclusive_low else value < low
    if too_low or value > high:
        bound = f"> {low:g}" if exclusive_low else f">= {low:g}"
        raise _bad(where, f"must be {bound} and <= {high:g}", "invalid_parameter")
    return value


def _processor_value(key: str, value: Any, where: str, cfg: MediaConfig) -> int | float:
    if key == "fps":
        return _number(value, where, integer=False, low=0, high=_MAX_FPS, exclusive_low=True)
    if key == "num_frames":
        return _number(value, where, integer=True, low=1, high=_MAX_SAMPLED_FRAMES)
    high = max(cfg.max_image_pixels, cfg.max_video_frame_pixels)
    return _number(value, where, integer=True, low=1, high=high)


def _sanitize(body: dict[str, Any], cfg: MediaConfig) -> bool:
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
        raise MediaError(400, "mm_processor_kwargs must be an object", "mm_processor_kwargs")
    for key, value in kwargs.items():
        where = f"mm_processor_kwargs.{key}"
        if key not in _PROCESSOR_KEYS:
            raise MediaError(
                400,
                f"{where} is not accepted by this server (accepted: {', '.join(_PROCESSOR_KEYS)})",
                where,
                "invalid_parameter",
            )
        _processor_value(key, value, where, cfg)
    if not kwargs:
        del body["mm_processor_kwargs"]
        changed = True
    return changed


def sanitize_mm_kwargs(body: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Check client ``mm_processor_kwargs``/``media_io_kwargs`` on any route that takes them.

    Only ``fps``, ``num_frames``, ``min_pixels`` and ``max_pixels`` are accepted, within bounds;
    ``media_io_kwargs`` is refused. Needed wherever vLLM runs with ``--trust-request-mm-kwargs``.
    Returns True if the body changed (empty values removed).
    """
    return _sanitize(body, _config(settings))


# --------------------------------------------------------------------------------------------
# Finding the media items


@dataclass
class _Item:
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


def _url_field(value: Any, where: str, key: str) -> tuple[Any, Any]:
    """(url, detail) of an OpenAI ``image_url``-style field (string or object)."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        return value.get("url"), value.get("detail")
    if value is None:
        return None, None
    raise _bad(where, f"'{key}' must be a URL string or an object with 'url'")


def _positive_int(part: dict[str, Any], key: str, where: str, high: int) -> int | None:
    if part.get(key) is None:
        return None
    return int(_number(part[key], f"{where}.{key}", integer=True, low=1, high=high))


def _classify(part: dict[str, Any], where: str, cfg: MediaConfig) -> _Item | None:
    ptype = part.get("type")

    def item(modality: str, source: Any, **kw: Any) -> _Item:
        return _Item(where, modality, [], 0, part, source, **kw)

    if ptype == "image_url" or (ptype is None and "image_url" in part):
        url, detail = _url_field(part.get("image_url"), where, "image_url")
        return item("image", url, resize=_detail(detail, where, cfg))
    if ptype == "input_image":
        if part.get("file_id") is not None:
            raise _bad(where, "input_image with file_id is not supported; send image_url")
        url, detail = _url_field(part.get("image_url"), where, "image_url")
        return item("image", url, resize=_detail(detail or part.get("detail"), where, cfg))
    if ptype == "video_url" or (ptype is None and "video_url" in part):
        url, _detail_unused = _url_field(part.get("video_url"), where, "video_url")
        return item("video", url)
    if ptype == "audio_url" or (ptype is None and "audio_url" in part):
        url, _detail_unused = _url_field(part.get("audio_url"), where, "audio_url")
        return item("audio", url)
    if ptype == "image" or (ptype is None and "image" in part):
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
    if ptype == "video" or (ptype is None and "video" in part):
        return _classify_video(part, where, cfg)
    if ptype in ("image_embeds", "image_pil"):
        return item("image", None)
    if ptype == "video_embeds":
        return item("video", None)
    if ptype in ("input_audio", "audio_embeds"):
        return item("audio", None)
    return None


def _classify_video(part: dict[str, Any], where: str, cfg: MediaConfig) -> _Item:
    for key in ("video_start", "video_end", "total_pixels"):
        if part.get(key) is not None:
            raise _bad(where, f"'{key}' is not supported for videos")
    source = part.get("video", part.get("video_url"))
    if isinstance(source, dict):
        source = source.get("url")
    fps = None
    if part.get("fps") is not None:  # samples a video file; a list of frames has no time base
        fps = float(_processor_value("fps", part["fps"], f"{where}.fps", cfg))
    nframes = _positive_int(part, "nframes", where, _MAX_SAMPLED_FRAMES)
    if nframes is not None and nframes < 2:
        raise _bad(where, "nframes must be at least 2")
    frame_pixels = cfg.max_video_frame_pixels
    resize = Resize(
        max_pixels=_positive_int(part, "max_pixels", where, 1 << 40),
        min_pixels=_positive_int(part, "min_pixels", where, frame_pixels),
        width=_positive_int(part, "resized_width", where, frame_pixels),
        height=_positive_int(part, "resized_height", where, frame_pixels),
    )
    return _Item(
        where, "video", [], 0, part, source, qwen=True, resize=resize or None, fps=fps,
        nframes=nframes,
    )  # fmt: skip


def _detail(detail: Any, where: str, cfg: MediaConfig) -> Resize | None:
    if detail is None or detail == "auto":
        return None
    if detail not in _DETAIL:
        raise _bad(where, "detail must be 'auto', 'low' or 'high'", "invalid_parameter")
    if detail == "low":
        return Resize(max_pixels=cfg.low_detail_max_pixels)
    if cfg.high_detail_max_pixels is not None:
        return Resize(max_pixels=cfg.high_detail_max_pixels)
    return None


def _find_items(body: dict[str, Any], cfg: MediaConfig) -> list[_Item]:
    items: list[_Item] = []
    messages = body.get("messages")
    if not isinstance(messages, list):
        return items
    for mi, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for ci, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") == "text":
                continue
            where = f"messages[{mi}].content[{ci}]"
            found = _classify(part, where, cfg)
            if found is not None:
                found.content, found.index = content, ci
                items.append(found)
    return items


def _check_counts(items: list[_Item], cfg: MediaConfig, settings: dict[str, Any]) -> None:
    limits = settings.get("limit_mm_per_prompt") or {}
    seen: dict[str, int] = {}
    for n, found in enumerate(items, 1):
        seen[found.modality] = seen.get(found.modality, 0) + 1
        limit = limits.get(found.modality)
        if isinstance(limit, dict):  # vLLM's {"count": n, ...} form
            limit = limit.get("count")
        if isinstance(limit, int) and seen[found.modality] > limit:
            name = _MODALITY_NAMES[found.modality]
            raise _bad(
                found.where,
                f"too many {name} in one request: at most {limit} "
                f"(limit_mm_per_prompt.{found.modality})",
                "too_many_media_items",
            )
        if n > cfg.max_items_per_request:
            raise _bad(
                found.where,
                f"too many media items in one request: at most {cfg.max_items_per_request} "
                "(media.max_items_per_request)",
                "too_many_media_items",
            )


# --------------------------------------------------------------------------------------------
# Getting and checking one item


@dataclass
class _Ctx:
    cfg: MediaConfig
    policy: FetchPolicy

    @property
    def video_bytes(self) -> int:
        return self.cfg.max_video_bytes or self.cfg.max_item_bytes

    @property
    def video_field(self) -> str:
        return "max_video_bytes" if self.cfg.max_video_bytes else "max_item_bytes"


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, fn, *args)


async def _load(
    source: Any, ctx: _Ctx, *, bare_paths: bool, max_bytes: int, size_field: str
) -> tuple[bytes, str]:
    """(bytes, declared media type or '') of one URL / path, within ``max_bytes``."""
    if not isinstance(source, str) or not source[:64].strip():
        raise Refusal("the media item has no URL")
    if source[:5].lower() != "data:":  # data: URLs stay uncopied until their size is known
        source = source.strip()
    lower = source[:8].lower()
    if lower.startswith("data:"):
        mime, start = parse_data_url(source)
        data = await _in_thread(decode_base64, source, max_bytes, size_field, "item", start)
        return data, mime
    if lower.startswith(("http://", "https://")):
        return await fetch_http(source, ctx.policy, max_bytes, size_field), ""
    if lower.startswith("file:"):
        path = local_path(source, is_url=True)
    elif bare_paths and not _SCHEME.match(source):
        path = local_path(source, is_url=False)
    else:
        raise Refusal("only http, https, data and file URLs are accepted")
    root = ctx.cfg.allowed_local_media_path
    return await _in_thread(read_local, path, root, max_bytes, size_field), ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _data_url(mime: str, data: bytes) -> str:
    encoded = await _in_thread(_b64, data) if len(data) > 256 * 1024 else _b64(data)
    return f"data:{mime};base64,{encoded}"


def _image_limits(cfg: MediaConfig, frame: bool = False) -> ImageLimits:
    if frame:
        return ImageLimits(
            cfg.max_video_frame_pixels,
            cfg.min_image_side,
            cfg.max_image_aspect_ratio,
            "max_video_frame_pixels",
        )
    return ImageLimits(cfg.max_image_pixels, cfg.min_image_side, cfg.max_image_aspect_ratio)


# Base64 characters decoded to check a data: URL image's header (48 KiB of image): enough for
# every PNG/GIF/BMP/WebP header and for JPEGs whose EXIF/ICC blocks are not larger than that.
# Decoding costs about 3 ns a character, so it goes in steps: _QUICK_HEAD_CHARS (1 KiB of
# image: a PNG's header, a plain JPEG's tables up to its scan) settles regular JPEG/PNG headers
# exactly or not at all (no Pillow); then _FIRST_HEAD_CHARS (3 KiB of image), which holds the
# whole header of most other images; only when that does not settle it, the rest of _HEAD_CHARS.
_HEAD_CHARS = 64 * 1024
_FIRST_HEAD_CHARS = 4 * 1024
_QUICK_HEAD_CHARS = 1376


def _keep_data_url_image(source: Any, ctx: _Ctx) -> bool:
    """Whether a ``data:`` URL image may go on to vLLM exactly as the client sent it.

    The cheap path for the most common inline form: its size is known from the length of its
    base64 text, and its format and dimensions from the header at its start, so neither the
    whole base64 text nor the pixels are decoded here, and the request body is not rebuilt.
    vLLM decodes the image once, as it would without vl-serve, and answers bad base64 or a
    truncated pixel stream with its own 400. Anything unusual (whitespace in the base64 text, a
    type that is not image/*, a header longer than ``_HEAD_CHARS``) returns False: the full
    check then decodes and re-encodes it.
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
    limits = _image_limits(ctx.cfg)
    for chars in (_QUICK_HEAD_CHARS, _FIRST_HEAD_CHARS, _HEAD_CHARS):
        head_chars = min(n, chars)
        try:
            head = binascii.a2b_base64(source[start : start + head_chars], strict_mode=True)
        except (binascii.Error, ValueError):
            return False  # the full check says what is wrong with it
        complete = head_chars == n
        if chars == _QUICK_HEAD_CHARS and not complete:
            if check_image_header(head, limits, complete=False, exact_only=True) is not None:
                return True
            continue
        if check_image_header(head, limits, complete=complete) is not None:
            return True
        if complete:
            break
    return False


def _kept_as_sent(found: _Item, ctx: _Ctx) -> bool:
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
        return _keep_data_url_image(found.source, ctx)
    except Refusal as refusal:
        raise _refused(found.where, refusal) from None


async def _image(found: _Item, ctx: _Ctx) -> dict[str, Any] | None:
    data, _mime = await _load(
        found.source,
        ctx,
        bare_paths=found.qwen,
        max_bytes=ctx.cfg.max_item_bytes,
        size_field="max_item_bytes",
    )
    checked = await _in_thread(check_image, data, _image_limits(ctx.cfg), found.resize)
    return {"type": "image_url", "image_url": {"url": await _data_url(checked.mime, checked.data)}}


async def _audio(found: _Item, ctx: _Ctx) -> dict[str, Any]:
    data, mime = await _load(
        found.source,
        ctx,
        bare_paths=False,
        max_bytes=ctx.cfg.max_item_bytes,
        size_field="max_item_bytes",
    )
    if not mime.startswith("audio/"):
        mime = "audio/wav" if data[:4] == b"RIFF" else "audio/mpeg"
    return {"type": "audio_url", "audio_url": {"url": await _data_url(mime, data)}}


async def _video(found: _Item, ctx: _Ctx) -> dict[str, Any]:
    cfg = ctx.cfg
    if isinstance(found.source, list):
        return await _frames(found, found.source, ctx, inline=False)
    if isinstance(found.source, str) and found.source[:16].lower().startswith("data:video/jpeg"):
        # vLLM's own frame-list form: data:video/jpeg;base64,<frame>,<frame>,...
        url = found.source.strip()
        _mime, start = parse_data_url(url)
        limit = ctx.video_bytes
        if not base64_fits(url, limit, start):
            raise too_large("decoded base64 video", limit, ctx.video_field)
        return await _frames(found, url[start:].split(","), ctx, inline=True)
    data, _mime = await _load(
        found.source,
        ctx,
        bare_paths=found.qwen,
        max_bytes=ctx.video_bytes,
        size_field=ctx.video_field,
    )
    limits = VideoLimits(
        cfg.max_video_frame_pixels, cfg.min_image_side, cfg.max_video_frames, cfg.max_video_seconds
    )
    info = await _in_thread(check_video, data, limits)
    if found.fps is None and found.nframes is None and found.resize is None:
        return {"type": "video_url", "video_url": {"url": await _data_url(info.mime, data)}}
    # Sampled and resized here, into the frame-list form: no per-request processor kwargs.
    n = _file_nframes(found, info, cfg)
    decoded = await _in_thread(decode_frames, data, info, n, limits)
    del data
    return await _frame_list(found, decoded, _as_is, ctx)


def _file_nframes(found: _Item, info: VideoInfo, cfg: MediaConfig) -> int:
    """Frames to sample from a video file, as qwen-vl-utils' smart_nframes counts them.

    ``nframes`` wins; else ``fps`` (default 2) over the duration, at least 4 and rounded down to
    an even count. Never more than the video's frames or media.max_video_frame_images.
    """
    cap = min(info.frames, cfg.max_video_frame_images)
    if found.nframes is not None:
        return min(found.nframes, cap)
    fps = found.fps or _DEFAULT_FPS
    wanted = info.seconds * fps if info.seconds > 0 else float(info.frames)
    n = math.floor(min(max(wanted, _FPS_MIN_FRAMES), cap))
    return max(1, n - n % 2)


async def _as_is(data: bytes) -> bytes:
    return data


async def _frames(found: _Item, sources: list[Any], ctx: _Ctx, *, inline: bool) -> dict[str, Any]:
    cfg = ctx.cfg
    if not sources:
        raise Refusal("the video has no frames")
    if len(sources) > cfg.max_video_frame_images:
        raise Refusal(
            f"the video has {len(sources)} frame images, over the limit of "
            f"{cfg.max_video_frame_images} (media.max_video_frame_images)",
            code="media_too_large",
        )
    if found.nframes is not None and found.nframes < len(sources):
        sources = [sources[i] for i in even_indices(len(sources), found.nframes)]
    budget = [ctx.video_bytes]

    async def load(source: Any) -> bytes:
        if inline:
            if not isinstance(source, str):
                raise Refusal("the frame is not base64 text")
            data = await _in_thread(
                decode_base64, source, cfg.max_item_bytes, "max_item_bytes", "frame"
            )
        else:
            data, _mime = await _load(
                source,
                ctx,
                bare_paths=True,
                max_bytes=cfg.max_item_bytes,
                size_field="max_item_bytes",
            )
        budget[0] -= len(data)
        if budget[0] < 0:
            raise too_large("video (all frames together)", ctx.video_bytes, ctx.video_field)
        return data

    return await _frame_list(found, sources, load, ctx)


async def _frame_list(
    found: _Item, sources: list[Any], load: Callable[[Any], Awaitable[bytes]], ctx: _Ctx
) -> dict[str, Any]:
    """Check (and resize) each frame; vLLM's ``data:video/jpeg;base64,<f1>,<f2>,...`` form."""
    limits = _image_limits(ctx.cfg, frame=True)

    async def one(i: int, source: Any) -> CheckedImage:
        where = f"{found.where}.video[{i}]"
        try:
            data = await load(source)
            return await _in_thread(check_image, data, limits, found.resize, "frame")
        except Refusal as refusal:
            raise _refused(where, refusal) from None

    frames = await _gather([one(i, s) for i, s in enumerate(sources)])
    sizes = {(f.width, f.height) for f in frames}
    if len(sizes) > 1:
        raise Refusal("the frames of a video must all have the same width and height")
    encoded = ",".join(await _in_thread(lambda: [_b64(f.data) for f in frames]))
    return {"type": "video_url", "video_url": {"url": f"data:video/jpeg;base64,{encoded}"}}


async def _gather(coros: list[Awaitable[_T]]) -> list[_T]:
    """Run concurrently; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _process(found: _Item, ctx: _Ctx) -> dict[str, Any] | None:
    if found.source is None:
        if found.part.get("uuid") is not None or found.part.get("type") in (
            "image_embeds",
            "image_pil",
            "video_embeds",
            "input_audio",
            "audio_embeds",
        ):
            return None  # nothing to fetch: vLLM's cached item, embeddings or inline audio
        raise _bad(found.where, "the media item has no URL")
    handler: Callable[[_Item, _Ctx], Awaitable[dict[str, Any] | None]] = {
        "image": _image,
        "video": _video,
        "audio": _audio,
    }[found.modality]
    try:
        new = await handler(found, ctx)
    except MediaError:
        raise
    except Refusal as refusal:
        raise _refused(found.where, refusal) from None
    except Exception:
        logger.exception("media item %s could not be processed", found.where)
        raise _bad(found.where, f"the {found.modality} could not be read") from None
    if new is not None and found.part.get("uuid") is not None:
        new["uuid"] = found.part["uuid"]
    return new


async def prepare_request(body: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Check and rewrite the media of one chat completion request in place.

    Returns True if ``body`` changed. Raises :class:`MediaError` for a refused request; every
    limit is checked before any model work, and counts before any fetch.
    """
    cfg, policy = _parsed(settings)
    changed = _sanitize(body, cfg)
    items = _find_items(body, cfg)
    _check_counts(items, cfg, settings)
    if not items:
        return changed
    ctx = _Ctx(cfg, policy)
    items = [found for found in items if not _kept_as_sent(found, ctx)]
    if not items:  # the common case: nothing awaited, the request never yields the event loop
        return changed
    if len(items) == 1:
        results = [await _process(items[0], ctx)]
    else:
        results = await _gather([_process(found, ctx) for found in items])
    for found, new in zip(items, results, strict=True):
        if new is not None:
            found.content[found.index] = new
            changed = True
    return changed
