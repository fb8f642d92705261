"""Sampling a video file decodes the right frames, whether it steps over a gap or seeks past it."""

from __future__ import annotations

import base64
import io
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tests.helpers.media_requests import chat, data_url, part_of, run, settings
from vl_serve.media.videos import _step_over, even_indices

FRAMES = 200  # at 25 fps: 8 s; frame i is a flat gray of i


def numbered_video(ext: str) -> bytes:
    import cv2
    import numpy as np

    fourcc = {"mp4": "mp4v", "webm": "VP80"}[ext]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"v.{ext}")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 25.0, (64, 48))
        for i in range(FRAMES):
            writer.write(np.full((48, 64, 3), i, np.uint8))
        writer.release()
        return Path(path).read_bytes()


@pytest.mark.parametrize("ext", ["mp4", "webm"])
@pytest.mark.parametrize(
    "nframes",
    [
        pytest.param(2, id="seek-past-a-long-gap"),
        pytest.param(8, id="step-over-short-gaps"),
        pytest.param(32, id="step-over-every-few"),
    ],
)
def test_sampled_frames_are_the_chosen_ones(ext: str, nframes: int) -> None:
    mime = f"video/{ext}"
    body = chat({"type": "video", "video": data_url(mime, numbered_video(ext)), "nframes": nframes})
    assert run(body, settings(max_video_frame_images=32)) is True
    url = part_of(body)["video_url"]["url"]
    frames = [Image.open(io.BytesIO(base64.b64decode(e))) for e in url.split(",")[1:]]
    grays = [ImageStat.Stat(f.convert("L")).mean[0] for f in frames]
    expected = even_indices(FRAMES, nframes)
    assert all(abs(g - e) <= 3 for g, e in zip(grays, expected, strict=True)), (grays, expected)


@pytest.mark.parametrize(
    ("position", "index", "keyframes", "step"),
    [
        pytest.param(10, 10, None, True, id="next-frame"),
        pytest.param(10, 26, None, True, id="within-a-seek's-own-16"),
        pytest.param(10, 27, None, False, id="past-it-seek"),
        pytest.param(20, 5, None, False, id="backwards-seek"),
        pytest.param(10, 60, (0, 250), True, id="long-gop-no-keyframe-between"),
        pytest.param(10, 60, (0, 30), False, id="keyframe-between-seek"),
        pytest.param(10, 40, (0, 30), True, id="keyframe-too-close-to-help"),
    ],
)
def test_step_over_or_seek(
    position: int, index: int, keyframes: tuple[int, ...] | None, step: bool
) -> None:
    assert _step_over(position, index, keyframes) is step


def test_mp4_keyframe_table_is_read() -> None:
    from vl_serve.media.mp4 import parse_mp4

    info = parse_mp4(numbered_video("mp4"))
    assert info is not None and info.frames == FRAMES
    # The writer's sync samples (stss), as 0-based frame indices: some frames, not all.
    assert info.keyframes is not None and info.keyframes[0] == 0
    assert list(info.keyframes) == sorted(set(info.keyframes))
    assert set(info.keyframes) < set(range(FRAMES))
