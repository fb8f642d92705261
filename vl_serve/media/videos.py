"""Checking one video file before the model sees it, and decoding a few of its frames.

:func:`check_video` reads the container header (MP4/MOV or WebM/Matroska, nothing decoded) and
holds its frame size, frame count and duration against the limits. Only a video that passed may
then have frames decoded (:func:`decode_frames`, OpenCV), which also says where they sit in the
video (:class:`Sampled`): the figures vLLM's own OpenCV loader reports for the frames it samples,
so that the model is told their real times. Everything here is blocking and CPU-bound: run it in a
worker thread.
"""

from __future__ import annotations

import bisect
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from vl_serve.media.containers import (
    VideoInfo,
    VideoLimits,
    check_frame_pixels,
    check_limits,
    sniff_video,
)
from vl_serve.media.errors import Refusal
from vl_serve.media.mp4 import parse_mp4
from vl_serve.media.webm import parse_webm

# OpenCV's seek (cap_ffmpeg_impl.hpp, CvCapture_FFMPEG::seek) goes to the keyframe at or before
# 16 frames ahead of the target and decodes forward from there: a seek costs at least 16 frame
# decodes, more when that keyframe is further back.
_SEEK_BACK = 16


@dataclass(frozen=True)
class Sampled:
    """Frames decoded from a video file, and where they sit in it.

    ``fps`` is OpenCV's frame rate of the stream (the container's, where OpenCV has none; None
    where neither knows one), ``indices`` the frame numbers decoded, ``total`` the frames they
    were spread over.
    """

    frames: list[bytes]
    fps: float | None
    indices: list[int]
    total: int

    def metadata(self) -> dict[str, Any] | None:
        """vLLM's video metadata for these frames, keyed as ``media_io_kwargs["video"]`` takes
        it: what vLLM's OpenCV loader reports when it samples the same frames itself. None
        without a frame rate: no times to tell."""
        if self.fps is None:
            return None
        return {
            "fps": self.fps,
            "frames_indices": list(self.indices),
            "total_num_frames": self.total,
            "duration": self.total / self.fps,
        }


def _step_over(position: int, index: int, keyframes: tuple[int, ...] | None) -> bool:
    """Whether reaching frame ``index`` from ``position`` (the next frame a read returns) decodes
    fewer frames with grab() than with a seek (``keyframes``: the container's table, if any)."""
    if index < position:
        return False
    seek_cost = _SEEK_BACK
    if keyframes:
        last = bisect.bisect_right(keyframes, max(0, index - _SEEK_BACK)) - 1
        seek_cost = index - (keyframes[last] if last >= 0 else 0)
    return index - position <= seek_cost


def check_video(data: bytes, limits: VideoLimits) -> VideoInfo:
    """The container's figures of a supported video within the limits; else a Refusal."""
    kind = sniff_video(data)
    if kind is None:
        raise Refusal("the video is not in a supported format (MP4 or WebM)")
    try:
        info = parse_mp4(data) if kind == "mp4" else parse_webm(data)
    except Refusal:
        raise
    except Exception:
        info = None
    if info is None or info.frames <= 0 or info.width <= 0 or info.height <= 0:
        raise Refusal(f"the video's {kind.upper()} header could not be read (truncated or corrupt)")
    check_limits(info, limits)
    return info


def even_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)``, first and last included (n <= total)."""
    if n >= total:
        return list(range(total))
    if n <= 1:
        return [0]
    step = (total - 1) / (n - 1)
    return [round(i * step) for i in range(n)]


def decode_frames(data: bytes, info: VideoInfo, n: int, limits: VideoLimits) -> Sampled:
    """JPEG bytes of ``n`` frames spread evenly over a video already passed by :func:`check_video`.

    The bytes go to a file in a private temporary folder (OpenCV reads files only); only the
    sampled frames are converted to pixels (``retrieve``), short gaps are stepped over with
    ``grab`` where that decodes fewer frames than a seek would, the others sought; the capture is released and the folder deleted
    whatever happens.
    """
    import cv2  # vLLM's own video decoder: imported only when a video is sampled here

    with tempfile.TemporaryDirectory(prefix="vl-serve-video-") as tmp:  # mode 0700
        path = os.path.join(tmp, f"video.{info.container}")
        with open(path, "wb") as fh:
            fh.write(data)
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        try:
            return _read_frames(cv2, cap, info, n, limits)
        finally:
            cap.release()


def _read_frames(cv2: Any, cap: Any, info: VideoInfo, n: int, limits: VideoLimits) -> Sampled:
    corrupt = Refusal(f"the video's {info.container.upper()} frames could not be decoded")
    if not cap.isOpened():
        raise corrupt
    # The stream must agree with the container's header.
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    check_frame_pixels(w, h, limits)
    total = info.frames
    decodable = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if 0 < decodable < total:
        total = decodable
    fps: float | None = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not (fps and math.isfinite(fps) and fps > 0):  # OpenCV knows no rate: the container's
        fps = info.frames / info.seconds if info.seconds > 0 else None
    indices = even_indices(total, min(n, total))
    out: list[bytes] = []
    position = 0  # the frame the next read() returns
    for index in indices:
        if not _step_over(position, index, info.keyframes):
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        else:
            while position < index:  # decoded, never converted to pixels
                if not cap.grab():
                    raise corrupt
                position += 1
        ok, frame = cap.read()
        if not ok or frame is None:
            raise corrupt
        position = index + 1
        check_frame_pixels(frame.shape[1], frame.shape[0], limits)
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise corrupt
        out.append(encoded.tobytes())
    return Sampled(out, fps, indices, total)
