"""The most vision tokens one image or video can become, and the worst request a config admits.

Per item, the counts follow vLLM's own processing info for each family (the largest image the
processor's pixel limit allows, e.g. ``size.longest_edge`` or ``max_pixels``, overridden by
``mm_processor_kwargs``), and a video has as many frames as vLLM's loader reads (``num_frames``
of ``media_io_kwargs``, 32 by default) within the processor's ``max_frames``. The worst request
fills ``limit_mm_per_prompt`` (vLLM's default 999 per modality) within vl-serve's
``media.max_items_per_request``, largest items first. Counts are the placeholder tokens the vision
encoder fills; the few marker tokens around each item (and Qwen3-VL's timestamps) are text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vl_serve.config import VLServeConfig
from vl_serve.model_facts import ModelFacts

VLLM_DEFAULT_LIMIT = 999
VLLM_DEFAULT_FRAMES = 32  # vLLM's VideoMediaIO num_frames
MAX_ASPECT = 200  # Qwen2-VL processors refuse more extreme aspect ratios


@dataclass(frozen=True)
class MediaTokens:
    image: int  # tokens of the largest image (0: the model takes no images)
    video: int  # tokens of the largest video
    images: int  # images the worst request carries
    videos: int

    @property
    def request(self) -> int:
        return self.image * self.images + self.video * self.videos


def _limit(limits: dict[str, int] | None, modality: str) -> int:
    return (limits or {}).get(modality, VLLM_DEFAULT_LIMIT)


def _pixels(cfg: VLServeConfig, processor: dict[str, Any], key: str) -> int | None:
    """The processor's pixel limit ``key`` (``max_pixels``, ``min_pixels``), as overridden."""
    size_key = {"max_pixels": "longest_edge", "min_pixels": "shortest_edge"}[key]
    kwargs = cfg.mm_processor_kwargs or {}
    if key in kwargs:
        return int(kwargs[key])
    size = kwargs.get("size") or processor.get("size") or {}
    if size_key in size:
        return int(size[size_key])
    return int(processor[key]) if key in processor else None


def _most_features(units: int) -> int:
    """The most merged patches an image of at most ``units`` merged patches has, at an aspect
    ratio the processor accepts (vLLM's ``get_image_size_with_most_features``)."""
    for seq in range(units, 0, -1):
        short = next(d for d in range(math.isqrt(seq), 0, -1) if seq % d == 0)
        if seq // short / short <= MAX_ASPECT:
            return seq
    return 0


def _frames(cfg: VLServeConfig, video: dict[str, Any]) -> int:
    io = (cfg.media_io_kwargs or {}).get("video") or {}
    frames = int(io.get("num_frames") or VLLM_DEFAULT_FRAMES)
    if frames < 0:  # -1: every frame of the video, bounded by vl-serve's frame limit
        frames = cfg.media.max_video_frames
    return min(frames, int(video.get("max_frames") or frames))


def _qwen(f: ModelFacts, cfg: VLServeConfig, *, total_budget: bool) -> tuple[int, int]:
    v = f.vision
    unit, temporal = (
        int(v["patch_size"]) * int(v["spatial_merge_size"]),
        int(v["temporal_patch_size"]),
    )
    image_pixels = _pixels(cfg, f.image, "max_pixels") or 0
    image = _most_features(image_pixels // unit**2)
    video_pixels = _pixels(cfg, f.video or f.image, "max_pixels") or image_pixels
    if total_budget:  # Qwen3-VL: the budget covers all frames (vLLM counts 2 frames at it)
        return image, _most_features(video_pixels // temporal // unit**2)
    groups = -(-_frames(cfg, f.video) // temporal)
    return image, groups * _most_features(video_pixels // unit**2)


def _ernie(f: ModelFacts, cfg: VLServeConfig) -> tuple[int, int]:
    v = f.vision
    unit = int(v["patch_size"]) * int(v["spatial_merge_size"])

    def square(pixels: int) -> int:  # the processor resizes the largest image to a square
        return (math.isqrt(pixels) // unit) ** 2

    image = square(_pixels(cfg, f.image, "max_pixels") or 0)
    frame = square(_pixels(cfg, f.video or f.image, "max_pixels") or 0)
    groups = max(_frames(cfg, f.video) // int(v.get("temporal_merge_size") or 2), 1)
    return image, groups * frame


def _minicpmv(f: ModelFacts, cfg: VLServeConfig) -> tuple[int, int]:
    query = int(f.config.get("query_num") or f.image.get("image_feature_size") or 64)
    slices = int((cfg.mm_processor_kwargs or {}).get("max_slice_nums") or f.image["max_slice_nums"])
    return (slices + 1) * query, _frames(cfg, f.video) * query


def _llama4(f: ModelFacts, cfg: VLServeConfig) -> tuple[int, int]:
    v = f.vision
    tile = int(
        (int(v["image_size"]) // int(v["patch_size"])) ** 2 * float(v["pixel_shuffle_ratio"]) ** 2
    )
    tiles = int(
        (cfg.mm_processor_kwargs or {}).get("max_patches") or f.image.get("max_patches") or 1
    )
    return (tiles + (1 if tiles > 1 else 0)) * tile, 0  # tiles and a global view


def media_tokens(facts: ModelFacts, cfg: VLServeConfig) -> MediaTokens:
    """The largest image and video of ``facts`` under ``cfg``, and the worst request's items."""
    family = facts.family
    if family == "qwen3_vl":
        image, video = _qwen(facts, cfg, total_budget=True)
    elif family == "qwen2_5_vl":
        image, video = _qwen(facts, cfg, total_budget=False)
    elif family == "ernie45_vl":
        image, video = _ernie(facts, cfg)
    elif family == "minicpmv":
        image, video = _minicpmv(facts, cfg)
    else:
        image, video = _llama4(facts, cfg)
    room = cfg.media.max_items_per_request
    counts = {"image": 0, "video": 0}
    for modality, tokens in sorted({"image": image, "video": video}.items(), key=lambda kv: -kv[1]):
        if tokens:
            counts[modality] = min(_limit(cfg.limit_mm_per_prompt, modality), room)
            room -= counts[modality]
    return MediaTokens(image, video, counts["image"], counts["video"])
