"""Frames sampled from a video file reach vLLM with the times vLLM's own loader would give them.

vl-serve samples a file itself when a request sets ``fps``/``nframes`` and hands vLLM a list of
frames; the request's ``media_io_kwargs["video"]`` then carry the file's frame rate, the frame
numbers, its frame count and duration. These tests hold those figures against vLLM's own video
loaders run in-process on the same bytes, feed them through vLLM's frame-list loader, and check
when a request gets them at all (they apply to every video of the request).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageStat

from tests.helpers.media_files import video_bytes
from tests.helpers.media_requests import chat, data_url, image_part, run, settings, video_part

# 40 frames at 2 fps (20 s), frame i a flat gray of (i * 12) % 256.
CLIP_FRAMES, CLIP_FPS = 40, 2.0
TIMING_KEYS = ("fps", "frames_indices", "total_num_frames", "duration")


@pytest.fixture(scope="module")
def clip() -> bytes:
    return video_bytes("mp4", frames=CLIP_FRAMES, fps=CLIP_FPS, size=(64, 48))


def vllm_loads(backend: str, data: bytes, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Frames and metadata from vLLM's own video loader ``backend`` (OpenCV decoding)."""
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY

    frames, metadata = VIDEO_LOADER_REGISTRY.load(backend).load_bytes(data, **kwargs)
    return np.asarray(frames), metadata


def sampled(clip: bytes, **fields: Any) -> tuple[list[Image.Image], dict[str, Any]]:
    """The frames vl-serve sends for the clip with ``fields``, and the request's video kwargs."""
    body = chat({"type": "video", "video": data_url("video/mp4", clip), **fields})
    assert run(body, settings()) is True
    url = body["messages"][0]["content"][1]["video_url"]["url"]
    frames = [Image.open(io.BytesIO(base64.b64decode(e))) for e in url.split(",")[1:]]
    return frames, body["media_io_kwargs"]["video"]


# (vl-serve's part fields, vLLM loader, its kwargs): each pair picks the same frames. vLLM's
# generic loader spreads num_frames with np.linspace(dtype=int) (rounding down), qwen-vl-utils
# and vl-serve round to the nearest frame, as vLLM's Qwen3-VL loader does with fps; the rows
# are counts where both land on the same frames.
SAME_FRAMES = [
    pytest.param({"nframes": 4}, "opencv", {"num_frames": 4}, id="nframes-4"),
    pytest.param({"nframes": 14}, "opencv", {"num_frames": 14}, id="nframes-14"),
    pytest.param({"nframes": 2}, "opencv", {"num_frames": 2}, id="nframes-2"),
    pytest.param({"fps": 0.5}, "qwen3_vl", {"fps": 0.5}, id="fps-0.5-qwen3-vl"),
    pytest.param({"fps": 1.0}, "qwen3_vl", {"fps": 1.0}, id="fps-1-qwen3-vl"),
    pytest.param({"fps": 0.1}, "qwen3_vl", {"fps": 0.1}, id="fps-0.1-at-least-4"),
]


@pytest.mark.parametrize(("fields", "backend", "kwargs"), SAME_FRAMES)
def test_metadata_is_what_vllms_loader_gives(
    clip: bytes, fields: dict[str, Any], backend: str, kwargs: dict[str, Any]
) -> None:
    frames, timing = sampled(clip, **fields)
    their_frames, theirs = vllm_loads(backend, clip, **kwargs)
    assert {k: timing[k] for k in TIMING_KEYS} == {k: theirs[k] for k in TIMING_KEYS}
    assert timing["num_frames"] == len(frames) == len(their_frames)
    assert (timing["fps"], timing["total_num_frames"]) == (CLIP_FPS, CLIP_FRAMES)
    # The same frames, not only the same numbers: each one's gray level matches vLLM's.
    ours = [ImageStat.Stat(f.convert("L")).mean[0] for f in frames]
    vllms = [float(f.mean()) for f in their_frames]
    assert all(abs(a - b) < 4 for a, b in zip(ours, vllms, strict=True)), (ours, vllms)


def test_vllms_frame_list_loader_reads_the_metadata(clip: bytes) -> None:
    """Through vLLM's own merge of server and request kwargs and its frame-list loader, the
    frames keep their figures; a server's smaller num_frames does not cut the list."""
    from vllm.multimodal.media.image import ImageMediaIO
    from vllm.multimodal.media.video import VideoMediaIO

    body = chat({"type": "video", "video": data_url("video/mp4", clip), "nframes": 8})
    run(body, settings())
    url = body["messages"][0]["content"][1]["video_url"]["url"]
    media_type, _, payload = url.removeprefix("data:").partition(";base64,")
    for server in ({}, {"num_frames": 2}, {"num_frames": 32, "fps": 4}):
        merged = VideoMediaIO.merge_kwargs(server, body["media_io_kwargs"]["video"])
        io_ = VideoMediaIO(ImageMediaIO(image_mode="RGB"), **merged)
        frames, metadata = io_.load_base64(media_type, payload).media
        assert len(frames) == 8, server
        assert metadata["frames_indices"] == [0, 6, 11, 17, 22, 28, 33, 39], server
        assert (metadata["fps"], metadata["total_num_frames"]) == (CLIP_FPS, CLIP_FRAMES)
        assert metadata["duration"] == CLIP_FRAMES / CLIP_FPS
        assert metadata["do_sample_frames"] is False  # the frames are used as they are


def two_videos(clip: bytes, first: dict[str, Any], second: Any) -> dict[str, Any]:
    body = chat({"type": "video", "video": data_url("video/mp4", clip), **first})
    body["messages"][0]["content"].append(second)
    return body


def file_part(clip: bytes, **fields: Any) -> dict[str, Any]:
    return {"type": "video", "video": data_url("video/mp4", clip), **fields}


# (what goes next to a file sampled with nframes 4, whether the request gets the kwargs)
NEIGHBOURS = [
    pytest.param(None, True, id="alone"),
    pytest.param("image", True, id="next-to-an-image"),
    pytest.param({"nframes": 4}, True, id="same-figures-twice"),
    pytest.param({"nframes": 6}, False, id="other-frame-numbers"),
    pytest.param("frame-list", False, id="next-to-a-list-of-frames"),
    pytest.param("as-sent", False, id="next-to-a-file-passed-on"),
]


@pytest.mark.parametrize(("neighbour", "kwargs_set"), NEIGHBOURS)
def test_request_kwargs_only_when_every_video_shares_them(
    clip: bytes, neighbour: Any, kwargs_set: bool
) -> None:
    body = chat(file_part(clip, nframes=4))
    parts = body["messages"][0]["content"]
    if neighbour == "image":
        parts.append(image_part(data_url("image/png", _png())))
    elif neighbour == "frame-list":
        parts.append({"type": "video", "video": [data_url("image/png", _png())] * 2})
    elif neighbour == "as-sent":
        parts.append(video_part(data_url("video/mp4", clip)))
    elif isinstance(neighbour, dict):
        parts.append(file_part(clip, **neighbour))
    assert run(body, settings({"video": 2, "image": 1})) is True
    if kwargs_set:
        assert body["media_io_kwargs"]["video"]["frames_indices"] == [0, 13, 26, 39]
    else:
        assert "media_io_kwargs" not in body


def test_lists_of_frames_keep_vllms_default_times() -> None:
    frames = [data_url("image/png", _png())] * 4
    for part in (
        {"type": "video", "video": frames},
        {"type": "video", "video": frames, "nframes": 2},
        video_part("data:video/jpeg;base64," + ",".join(f.split(",", 1)[1] for f in frames)),
    ):
        body = chat(part)
        run(body, settings())
        assert "media_io_kwargs" not in body, part


def test_webm_sampled_frames_get_their_figures() -> None:
    webm = video_bytes("webm", frames=20, fps=10.0, size=(64, 48))
    body = chat({"type": "video", "video": data_url("video/webm", webm), "nframes": 4})
    run(body, settings())
    timing = body["media_io_kwargs"]["video"]
    _frames, theirs = vllm_loads("opencv", webm, num_frames=4)
    assert timing["fps"] == theirs["fps"] == 10.0
    assert timing["frames_indices"] == [0, 6, 13, 19]
    assert timing["total_num_frames"] == theirs["total_num_frames"] == 20


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (80, 80, 80)).save(buf, "PNG")
    return buf.getvalue()
