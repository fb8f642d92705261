"""The media benchmark's workloads: the generated media, the deployments and each request body.

Every workload is one chat request shape (a short text prompt and one media item), sent alike to
vl-serve and to bare vLLM except where the two take per-request video sampling differently:
vl-serve reads qwen-vl-utils' ``nframes`` on the video part, bare vLLM reads
``media_io_kwargs.video.num_frames`` (allowed by ``--trust-request-mm-kwargs``). A deployment is
the config every server of a cohort runs: the model's own image budget, or a ~1 MP one set
through ``mm_processor_kwargs`` (both arms get it through the argv).

The media are generated from fixed seeds (same bytes every run): a 4032x3024 photo-like JPEG
(gradients, low-frequency texture and sensor-like noise, quality 92, about 4 MB), a 1920x1080
screenshot-like PNG (flat panels and text), a 640x480 JPEG and a 10 s 1280x720 MP4 (MPEG-4 part
2 from OpenCV, which vLLM's OpenCV video loader decodes).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Deployments: config keys every variant of a cohort gets on top of the benchmark's media section.
ONE_MP_PIXELS = 1003520  # 980 merged 32x32 patches of Qwen3-VL
DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "model": {},
    "1mp": {"mm_processor_kwargs": {"max_pixels": ONE_MP_PIXELS}},
}
# The media section of every deployment: the loopback media host reachable, items up to 32 MiB.
MEDIA_SECTION: dict[str, Any] = {
    "allowed_networks": ["127.0.0.1/32"],
    "max_item_bytes": 32 * 2**20,
    "max_request_bytes": 64 * 2**20,
}
VIDEO_FRAMES = 8  # frames sampled per request in the per-request sampling workload
PROMPT = "Describe this briefly."


@dataclass(frozen=True)
class Workload:
    name: str
    deployment: str  # a key of DEPLOYMENTS
    media: str  # the file's name on the media host (generate)
    kind: str  # "image" or "video"
    inline: bool = False  # base64 data: URL instead of the host's URL
    frames: int | None = None  # per-request sampling: frames per video
    description: str = ""
    scale: int = 1  # requests per round: this many times --requests (quick items get more)


WORKLOADS = {
    w.name: w
    for w in (
        Workload("photo-url", "model", "photo.jpg", "image", description="4032x3024 JPEG by URL"),
        Workload(
            "photo-b64", "model", "photo.jpg", "image", True, description="the photo as data: URL"
        ),
        Workload("photo-url-1mp", "1mp", "photo.jpg", "image", description="photo, 1 MP budget"),
        Workload("photo-b64-1mp", "1mp", "photo.jpg", "image", True, description="data: URL, 1 MP"),
        Workload(
            "screenshot-url", "model", "screen.png", "image", description="1920x1080 PNG", scale=2
        ),
        Workload(
            "small-url", "model", "small.jpg", "image", description="640x480 JPEG by URL", scale=3
        ),
        Workload("video-url", "model", "clip.mp4", "video", description="10 s 720p MP4 by URL"),
        Workload(
            "video-url-frames",
            "model",
            "clip.mp4",
            "video",
            frames=VIDEO_FRAMES,
            description=f"the MP4, {VIDEO_FRAMES} frames per request",
        ),
    )
}
SMOKE_WORKLOADS = ["photo-url", "video-url-frames"]
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".mp4": "video/mp4"}


def select(names: str | None, *, smoke: bool) -> list[Workload]:
    """The workloads of a comma list (default: all, or the smoke set), in table order."""
    if not names:
        wanted = SMOKE_WORKLOADS if smoke else list(WORKLOADS)
    else:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
    if unknown := [n for n in wanted if n not in WORKLOADS]:
        raise ValueError(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS.values() if w.name in wanted]


def by_deployment(workloads: list[Workload]) -> dict[str, list[Workload]]:
    """The workloads grouped by the deployment they run on, in DEPLOYMENTS order."""
    out = {d: [w for w in workloads if w.deployment == d] for d in DEPLOYMENTS}
    return {d: ws for d, ws in out.items() if ws}


def config_overrides(deployment: str, config: dict[str, Any]) -> dict[str, Any]:
    """Top-level config keys for ``deployment``: the media section (merged into the config's
    own) and the deployment's keys."""
    media = {**(config.get("media") or {}), **MEDIA_SECTION}
    return {"media": media, **DEPLOYMENTS[deployment]}


def data_url(path: Path) -> str:
    mime = CONTENT_TYPES[path.suffix]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def body(
    w: Workload, model: str, base_url: str, inline: str | None, *, bare: bool, max_tokens: int
) -> dict[str, Any]:
    """The streaming chat request of ``w`` (``inline``: the item's data: URL for inline ones)."""
    url = inline if w.inline and inline else f"{base_url}/{w.media}"
    part: dict[str, Any]
    extra: dict[str, Any] = {}
    if w.kind == "image":
        part = {"type": "image_url", "image_url": {"url": url}}
    elif w.frames is None:
        part = {"type": "video_url", "video_url": {"url": url}}
    elif bare:  # vLLM's own per-request way
        part = {"type": "video_url", "video_url": {"url": url}}
        extra = {"media_io_kwargs": {"video": {"num_frames": w.frames}}}
    else:  # qwen-vl-utils' video part, which vl-serve samples itself
        part = {"type": "video", "video": url, "nframes": w.frames}
    return {
        "model": model,
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}, part]}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }


def bare_argv(argv: list[str]) -> list[str]:
    """Bare vLLM's argv with its own media fetching allowed for the loopback host (vl-serve's
    argv allows no domain: vl-serve fetches) and per-request media_io_kwargs trusted."""
    from vl_serve.argv import NO_FETCH_DOMAIN

    out = ["127.0.0.1" if a == NO_FETCH_DOMAIN else a for a in argv]
    if "127.0.0.1" not in out:
        out += ["--allowed-media-domains", "127.0.0.1"]
    flag = "--trust-request-mm-kwargs"  # vl-serve's argv has it already (vl-serve is the gate)
    return out if flag in out else [*out, flag]


# --- the media, generated --------------------------------------------------------------------


def _photo(width: int, height: int, seed: int, noise: float) -> bytes:
    import cv2
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [
            x / width * 200 + 30,
            y / height * 180 + 40,
            (x + y) / (width + height) * 150 + 60,
        ],
        axis=-1,
    )
    texture = rng.normal(0, 30, (height // 32, width // 32, 3)).astype(np.float32)
    img += cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, noise, (height, width, 3)).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _screenshot(width: int = 1920, height: int = 1080, seed: int = 2) -> bytes:
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (width, height), (246, 246, 248))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, width, 48), fill=(40, 44, 52))
    draw.rectangle((0, 48, 280, height), fill=(225, 228, 232))
    words = [
        "the",
        "of",
        "serve",
        "model",
        "image",
        "token",
        "request",
        "stream",
        "vision",
        "config",
        "media",
        "frame",
    ]
    for top in range(70, height - 20, 22):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 16)))
        draw.text((300, top), line, fill=(20, 20, 20))
        if top % 3 == 0:
            draw.text((16, top), rng.choice(words).title(), fill=(60, 60, 90))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _clip(
    path: Path, width: int = 1280, height: int = 720, fps: int = 30, seconds: int = 10
) -> None:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MPEG-4 video here")
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(fps * seconds):
        t = i / fps
        frame = np.stack(
            [
                (x / width * 255 + 40 * t) % 256,
                (y / height * 255 + 25 * t) % 256,
                np.full_like(x, 128 + 100 * np.sin(t)),
            ],
            axis=-1,
        ).astype(np.uint8)
        cx = int((0.1 + 0.8 * (t / seconds)) * width)
        cv2.circle(frame, (cx, height // 2), 80, (255, 255, 255), -1)
        cv2.putText(frame, f"{t:5.2f}s", (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 0, 0), 3)
        writer.write(frame)
    writer.release()


def generate(folder: Path, names: set[str]) -> dict[str, Path]:
    """Write the media named in ``names`` (``Workload.media`` values) into ``folder``; their
    paths."""
    makers = {
        "photo.jpg": lambda p: p.write_bytes(_photo(4032, 3024, seed=1, noise=8)),
        "screen.png": lambda p: p.write_bytes(_screenshot()),
        "small.jpg": lambda p: p.write_bytes(_photo(640, 480, seed=3, noise=8)),
        "clip.mp4": _clip,
    }
    out = {}
    for name in sorted(names):
        path = folder / name
        makers[name](path)
        out[name] = path
    return out
