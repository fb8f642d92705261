"""Video items: a file checked and passed on, or sampled into frames; a list of frames checked.

A video file without ``fps``/``nframes``/pixel options goes to vLLM as checked. With them it is
sampled here, as qwen-vl-utils samples (only the needed frames decoded), and the frames resized
like images; a list of frames (URLs, paths or vLLM's ``data:video/jpeg;base64,<f1>,<f2>,...``)
is sampled to ``nframes`` and every frame checked as an image. Either way the result is vLLM's
frame-list form, so no per-request ``mm_processor_kwargs`` are needed.

vLLM gives a frame list the times of a 1 fps video of those frames alone unless the request's
``media_io_kwargs["video"]`` says otherwise, and Qwen3-VL writes those times into the prompt. So
for frames sampled here from a file, :func:`request_video_kwargs` sets them to where the frames
sit in the file: its frame rate, the frame numbers, its frame count and duration, as vLLM's
OpenCV loader reports them when it samples a file itself. Those kwargs apply to every video of
the request, so they are set only when every video of the request is a file sampled here and
all of them have the same figures; otherwise (two files sampled to different frames, a file
next to a list of frames or a file passed on as it came) none are set and the frames keep vLLM's
default times, as a client's own list of frames always does.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from vl_serve.config import MediaConfig
from vl_serve.media.containers import VideoInfo, VideoLimits
from vl_serve.media.errors import Refusal, refused, too_large
from vl_serve.media.images import CheckedImage, check_image
from vl_serve.media.parts import Item
from vl_serve.media.settings import Context, image_limits
from vl_serve.media.sources import b64, base64_fits, data_url, decode_base64, load, parse_data_url
from vl_serve.media.videos import check_video, decode_frames, even_indices
from vl_serve.media.workers import gather, in_thread
from vl_serve.server import metrics

_DEFAULT_FPS = 2.0  # qwen-vl-utils' FPS: a video file resized without fps/nframes
_FPS_MIN_FRAMES = 4  # qwen-vl-utils' FPS_MIN_FRAMES


async def video(found: Item, ctx: Context) -> dict[str, Any]:
    """The ``video_url`` part that replaces a video item."""
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
    data, _mime = await load(
        found.source,
        ctx,
        bare_paths=found.qwen,
        max_bytes=ctx.video_bytes,
        size_field=ctx.video_field,
    )
    limits = VideoLimits(
        cfg.max_video_frame_pixels, cfg.min_image_side, cfg.max_video_frames, cfg.max_video_seconds
    )
    with metrics.MEDIA_DECODE_SECONDS.time():
        info = await in_thread(check_video, data, limits)
    if found.fps is None and found.nframes is None and found.resize is None:
        return {"type": "video_url", "video_url": {"url": await data_url(info.mime, data)}}
    # Sampled and resized here, into the frame-list form: no per-request processor kwargs.
    n = _file_nframes(found, info, cfg)
    with metrics.MEDIA_DECODE_SECONDS.time():
        sampled = await in_thread(decode_frames, data, info, n, limits)
    del data
    part = await _frame_list(found, sampled.frames, _as_is, ctx)
    found.video_metadata = sampled.metadata()
    return part


def request_video_kwargs(items: list[Item]) -> dict[str, Any] | None:
    """The request's ``media_io_kwargs`` telling vLLM where sampled frames sit, or None.

    Set only when every video item of the request was sampled here from a file and all of them
    have the same figures (the kwargs apply to every video of the request). ``num_frames`` is
    the count sent: vLLM's loader reads that many frames of the list (its default, or a server
    ``num_frames`` it drops once a request sets ``fps``, could be fewer).
    """
    videos = [found.video_metadata for found in items if found.modality == "video"]
    first = videos[0] if videos else None
    if first is None or any(other != first for other in videos[1:]):
        return None
    return {"video": {**first, "num_frames": len(first["frames_indices"])}}


def _file_nframes(found: Item, info: VideoInfo, cfg: MediaConfig) -> int:
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


async def _frames(found: Item, sources: list[Any], ctx: Context, *, inline: bool) -> dict[str, Any]:
    """A list of frames: counted, sampled to ``nframes``, each loaded within the video's bytes."""
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

    async def load_frame(source: Any) -> bytes:
        if inline:
            if not isinstance(source, str):
                raise Refusal("the frame is not base64 text")
            data = await in_thread(
                decode_base64, source, cfg.max_item_bytes, "max_item_bytes", "frame"
            )
        else:
            data, _mime = await load(
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

    return await _frame_list(found, sources, load_frame, ctx)


async def _frame_list(
    found: Item, sources: list[Any], load_frame: Callable[[Any], Awaitable[bytes]], ctx: Context
) -> dict[str, Any]:
    """Check (and resize) each frame; vLLM's ``data:video/jpeg;base64,<f1>,<f2>,...`` form."""
    limits = image_limits(ctx.cfg, frame=True)

    async def one(i: int, source: Any) -> CheckedImage:
        where = f"{found.where}.video[{i}]"
        try:
            data = await load_frame(source)
            return await in_thread(check_image, data, limits, found.resize, "frame")
        except Refusal as refusal:
            raise refused(where, refusal) from None

    frames = await gather([one(i, s) for i, s in enumerate(sources)])
    sizes = {(f.width, f.height) for f in frames}
    if len(sizes) > 1:
        raise Refusal("the frames of a video must all have the same width and height")
    encoded = ",".join(await in_thread(lambda: [b64(f.data) for f in frames]))
    return {"type": "video_url", "video_url": {"url": f"data:video/jpeg;base64,{encoded}"}}
