"""What a video container's header says (:class:`VideoInfo`), and the limits a video must meet.

The MP4/MOV and WebM/Matroska headers are walked by :mod:`vl_serve.media.mp4` and
:mod:`vl_serve.media.webm`; :func:`check_limits` holds the figures they report against the
``media`` settings, before any frame is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from vl_serve.media.errors import Refusal


@dataclass(frozen=True)
class VideoLimits:
    max_frame_pixels: int
    min_side: int
    max_frames: int
    max_seconds: float


@dataclass
class VideoInfo:
    container: str
    width: int = 0
    height: int = 0
    frames: int = 0
    seconds: float = 0.0
    keyframes: tuple[int, ...] | None = None  # frame indices a decoder can start at, if known

    @property
    def mime(self) -> str:
        return "video/mp4" if self.container == "mp4" else "video/webm"


def sniff_video(data: bytes) -> str | None:
    """The container ("mp4" or "webm") from the first bytes, or None."""
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    return None


def check_frame_pixels(w: int, h: int, limits: VideoLimits) -> None:
    """Refuse frames of ``w`` x ``h`` over ``media.max_video_frame_pixels``."""
    if w * h > limits.max_frame_pixels:
        raise Refusal(
            f"the video's frames are {w}x{h} = {w * h} pixels, over the limit of "
            f"{limits.max_frame_pixels} pixels (media.max_video_frame_pixels)",
            code="media_too_large",
        )


def check_limits(info: VideoInfo, limits: VideoLimits) -> None:
    """Refuse a video whose frame size, frame count or duration is over the limits."""
    w, h = info.width, info.height
    check_frame_pixels(w, h, limits)
    if min(w, h) < limits.min_side:
        raise Refusal(
            f"the video's frames are {w}x{h}; each side must be at least {limits.min_side} "
            "pixels (media.min_image_side)"
        )
    if info.frames > limits.max_frames:
        raise Refusal(
            f"the video has {info.frames} frames, over the limit of {limits.max_frames} "
            "(media.max_video_frames)",
            code="media_too_large",
        )
    if info.seconds > limits.max_seconds:
        raise Refusal(
            f"the video lasts {info.seconds:.1f} s, over the limit of {limits.max_seconds:g} s "
            "(media.max_video_seconds)",
            code="media_too_large",
        )
