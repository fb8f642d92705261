"""Checking media bytes before the model sees them: format, size in pixels, frames, duration.

Images: the format is sniffed from the magic bytes (JPEG, PNG, BMP, WEBP, GIF only) and the size
read from the header, so a decompression bomb is refused before a single pixel is decoded: JPEG
and PNG headers of the regular form are walked here exactly as Pillow walks them
(:func:`exact_size`), every other header goes through Pillow's lazy open. Images within the limits are then decoded once (JPEGs at 1/8 scale) so truncated
or corrupt data is refused here with a clear message rather than deep inside the model processor.

Videos: MP4/MOV and WebM/Matroska containers are parsed in pure Python (box and EBML element
headers only, nothing decoded) for frame size, frame count and duration. Only a video that passed
those checks may then have a few of its frames decoded (:func:`decode_frames`, OpenCV).

Everything here is blocking and CPU-bound: run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from vl_serve.media.fetch import Refusal

IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF")
IMAGE_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
_FORMATS_TEXT = "JPEG, PNG, BMP, WEBP or GIF"


def sniff_image(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height from the image header alone (None if the header is not readable)."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            w, h = struct.unpack_from(">II", data, 16)
            return w, h
        if fmt == "GIF":
            w, h = struct.unpack_from("<HH", data, 6)
            return w, h
        if fmt == "BMP":
            if struct.unpack_from("<I", data, 14)[0] == 12:
                w, h = struct.unpack_from("<HH", data, 18)
                return w, h
            w, h = struct.unpack_from("<ii", data, 18)
            return abs(w), abs(h)
        if fmt == "WEBP":
            kind = data[12:16]
            if kind == b"VP8 ":
                w, h = struct.unpack_from("<HH", data, 26)
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if kind == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
        if fmt == "JPEG":
            pos = 2
            while pos + 4 <= len(data):
                if data[pos] != 0xFF:
                    return None
                marker = data[pos + 1]
                if marker == 0xFF:
                    pos += 1
                    continue
                if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                    pos += 2
                    continue
                length = struct.unpack_from(">H", data, pos + 2)[0]
                if marker in _SOF:
                    h, w = struct.unpack_from(">HH", data, pos + 5)
                    return w, h
                if marker == 0xDA:
                    return None
                pos += 2 + length
    except struct.error:
        return None
    return None


# JPEG markers that Pillow reads as one length-prefixed segment (its MARKER table's Skip, APP,
# COM, DQT and SOF handlers). Everything else (fill bytes, RST/TEM markers, junk between segments,
# DNL, JPG/JPGn, ...) is irregular: :func:`exact_size` leaves those headers to Pillow.
_JPEG_SEGMENTS = frozenset({0xC4, 0xCC, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)}) | _SOF
_PNG_SIGNATURE_IHDR = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"


def exact_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) exactly as Pillow's open of ``data`` would report it, or None.

    Only for regular JPEG and PNG headers, complete within ``data`` up to the first pixel data:
    a JPEG whose segments from SOI to SOS are all length-prefixed ones (:data:`_JPEG_SEGMENTS`),
    back to back, with exactly one SOF of 8-bit samples and 1, 3 or 4 components; a PNG whose
    chunks up to the first IDAT hold exactly one IHDR, the first. Pillow walks such a header
    segment by segment as this does and takes its size from the same SOF or IHDR (it would take
    the last of several, hence "exactly one"). Anything else returns None: Pillow decides then.
    A None is never an answer about the image, only "ask Pillow" (about 20 us per image).
    """
    n = len(data)
    if fmt == "JPEG":
        pos, size = 2, None
        while pos + 4 <= n:
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xDA:
                return size
            if marker not in _JPEG_SEGMENTS:
                return None
            end = pos + 2 + ((data[pos + 2] << 8) | data[pos + 3])
            if end < pos + 4 or end > n:
                return None
            if marker in _SOF:
                # length, precision, height, width, components: Pillow refuses other precisions
                # and component counts, so those are its to answer.
                if size is not None or end < pos + 10 or data[pos + 4] != 8:
                    return None
                if data[pos + 9] not in (1, 3, 4):
                    return None
                size = ((data[pos + 7] << 8) | data[pos + 8], (data[pos + 5] << 8) | data[pos + 6])
            pos = end
        return None
    if fmt == "PNG" and n >= 41 and data.startswith(_PNG_SIGNATURE_IHDR):
        w, h = struct.unpack_from(">II", data, 16)
        pos = 33  # signature, IHDR's length, type, 13 bytes of data and CRC
        while pos + 8 <= n:
            kind = data[pos + 4 : pos + 8]
            if kind == b"IDAT":
                return w, h
            if kind == b"IHDR":
                return None
            pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
        return None
    return None


def sniff_video(data: bytes) -> str | None:
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    return None


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    min_side: int
    max_aspect: float
    pixels_field: str = "max_image_pixels"


@dataclass(frozen=True)
class Resize:
    """What the request asks of one image's size (all optional)."""

    max_pixels: int | None = None
    min_pixels: int | None = None
    width: int | None = None
    height: int | None = None

    def __bool__(self) -> bool:
        values = (self.max_pixels, self.min_pixels, self.width, self.height)
        return any(v is not None for v in values)


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    mime: str
    width: int
    height: int


def _check_dims(w: int, h: int, limits: ImageLimits, what: str) -> None:
    if w * h > limits.max_pixels:
        raise Refusal(
            f"the {what} is {w}x{h} = {w * h} pixels, over the limit of {limits.max_pixels} "
            f"pixels (media.{limits.pixels_field})",
            code="media_too_large",
        )
    if min(w, h) < limits.min_side:
        raise Refusal(
            f"the {what} is {w}x{h}; each side must be at least {limits.min_side} pixels "
            "(media.min_image_side)"
        )
    if max(w, h) / min(w, h) > limits.max_aspect:
        raise Refusal(
            f"the {what} is {w}x{h}; its sides may differ by a factor of at most "
            f"{limits.max_aspect:g} (media.max_image_aspect_ratio)"
        )


def _target_size(w: int, h: int, resize: Resize, limits: ImageLimits) -> tuple[int, int] | None:
    if resize.width is not None or resize.height is not None:
        tw = resize.width or max(1, round(w * (resize.height or h) / h))
        th = resize.height or max(1, round(h * (resize.width or w) / w))
    else:
        scale = 1.0
        if resize.max_pixels is not None and w * h > resize.max_pixels:
            scale = math.sqrt(resize.max_pixels / (w * h))
        elif resize.min_pixels is not None and w * h < resize.min_pixels:
            scale = math.sqrt(min(resize.min_pixels, limits.max_pixels) / (w * h))
        if scale == 1.0:
            return None
        tw, th = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
    if (tw, th) == (w, h):
        return None
    _check_dims(tw, th, limits, "requested image size")
    return tw, th


def _bomb(limits: ImageLimits, what: str) -> Refusal:
    return Refusal(
        f"the {what} has more pixels than the limit of {limits.max_pixels} "
        f"(media.{limits.pixels_field})",
        code="media_too_large",
    )


def check_image_header(
    head: bytes,
    limits: ImageLimits,
    *,
    complete: bool,
    what: str = "image",
    exact_only: bool = False,
) -> str | None:
    """Header-only check of an encoded image whose first bytes are ``head`` (all of it when
    ``complete``): a supported format, within the size limits, a header Pillow can read (or,
    for regular JPEG/PNG headers, one walked as Pillow would: :func:`exact_size`).

    Returns the format, or None when ``head`` is too short to tell (check the whole image with
    ``check_image`` then). No pixel is decoded: vLLM decodes them once, and answers a truncated
    or corrupt pixel stream itself with a 400 ("Failed to load image: ...").
    """
    fmt = sniff_image(head)
    if fmt is None:
        if complete or len(head) >= 32:
            raise Refusal(f"the {what} is not in a supported image format ({_FORMATS_TEXT})")
        return None
    dims = exact_size(head, fmt)
    if dims is not None:
        _check_dims(*dims, limits, what)
        _check_pillow_bomb(*dims, limits, what)
        return fmt
    if exact_only:
        return None
    dims = header_size(head, fmt)
    if dims is not None:
        _check_dims(*dims, limits, what)  # before Pillow sees it
    try:
        with Image.open(io.BytesIO(head), formats=[fmt]) as im:
            w, h = im.size  # Pillow parses the header only
    except Image.DecompressionBombError:
        raise _bomb(limits, what) from None
    except Exception:
        if complete:
            raise Refusal(f"the {what} data is truncated or corrupt ({fmt})") from None
        return None  # the header goes on past ``head`` (a big EXIF/ICC block, say)
    _check_dims(w, h, limits, what)
    return fmt


def _check_pillow_bomb(w: int, h: int, limits: ImageLimits, what: str) -> None:
    """Pillow's own decompression-bomb check (twice ``Image.MAX_IMAGE_PIXELS``), which its open
    would have made and vLLM's will make: only reached when media.max_image_pixels is above it."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and max(1, w) * max(1, h) > 2 * limit:
        raise _bomb(limits, what)


def check_image(
    data: bytes, limits: ImageLimits, resize: Resize | None = None, what: str = "image"
) -> CheckedImage:
    """Validate one encoded image; downscale/upscale it when ``resize`` asks for another size."""
    fmt = check_image_header(data, limits, complete=True, what=what)
    assert fmt is not None  # complete=True: refused rather than undecided
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            w, h = im.size
            target = _target_size(w, h, resize, limits) if resize else None
            if target is None:
                if fmt == "JPEG":
                    im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
                im.load()
                return CheckedImage(data, IMAGE_MIME[fmt], w, h)
            im.load()
            return _reencode(im, fmt, target)
    except Refusal:
        raise
    except Image.DecompressionBombError:
        raise _bomb(limits, what) from None
    except Exception:
        raise Refusal(f"the {what} data is truncated or corrupt ({fmt})") from None


def _reencode(im: Image.Image, fmt: str, size: tuple[int, int]) -> CheckedImage:
    img: Image.Image = ImageOps.exif_transpose(im) or im
    if img.size != im.size:  # rotated by EXIF: the target follows the rotation
        size = (size[1], size[0])
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if fmt == "JPEG" and not has_alpha:
        img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
        out_fmt, kwargs = "JPEG", {"quality": 95}
    else:
        img = img.convert("RGBA" if has_alpha else "RGB")
        out_fmt, kwargs = "PNG", {"compress_level": 1}
    img = img.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, out_fmt, **kwargs)
    return CheckedImage(buf.getvalue(), IMAGE_MIME[out_fmt], size[0], size[1])


# --------------------------------------------------------------------------------------------
# Video containers


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

    @property
    def mime(self) -> str:
        return "video/mp4" if self.container == "mp4" else "video/webm"


def check_video(data: bytes, limits: VideoLimits) -> VideoInfo:
    kind = sniff_video(data)
    if kind is None:
        raise Refusal("the video is not in a supported format (MP4 or WebM)")
    try:
        info = _parse_mp4(data) if kind == "mp4" else _parse_mkv(data)
    except Refusal:
        raise
    except Exception:
        info = None
    if info is None or info.frames <= 0 or info.width <= 0 or info.height <= 0:
        raise Refusal(f"the video's {kind.upper()} header could not be read (truncated or corrupt)")
    w, h = info.width, info.height
    if w * h > limits.max_frame_pixels:
        raise Refusal(
            f"the video's frames are {w}x{h} = {w * h} pixels, over the limit of "
            f"{limits.max_frame_pixels} pixels (media.max_video_frame_pixels)",
            code="media_too_large",
        )
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
    return info


def even_indices(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)``, first and last included (n <= total)."""
    if n >= total:
        return list(range(total))
    if n <= 1:
        return [0]
    step = (total - 1) / (n - 1)
    return [round(i * step) for i in range(n)]


def decode_frames(data: bytes, info: VideoInfo, n: int, limits: VideoLimits) -> list[bytes]:
    """JPEG bytes of ``n`` frames spread evenly over a video already passed by :func:`check_video`.

    The bytes go to a file in a private temporary folder (OpenCV reads files only), frames are
    sought by index and decoded one at a time; the capture is released and the folder deleted
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


def _read_frames(cv2: Any, cap: Any, info: VideoInfo, n: int, limits: VideoLimits) -> list[bytes]:
    corrupt = Refusal(f"the video's {info.container.upper()} frames could not be decoded")
    if not cap.isOpened():
        raise corrupt
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def check(w: int, h: int) -> None:  # the stream must agree with the container's header
        if w * h > limits.max_frame_pixels:
            raise Refusal(
                f"the video's frames are {w}x{h} = {w * h} pixels, over the limit of "
                f"{limits.max_frame_pixels} pixels (media.max_video_frame_pixels)",
                code="media_too_large",
            )

    check(w, h)
    total = info.frames
    decodable = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if 0 < decodable < total:
        total = decodable
    out: list[bytes] = []
    position = 0  # the frame the next read() returns
    for index in even_indices(total, min(n, total)):
        if index != position:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        if not ok or frame is None:
            raise corrupt
        position = index + 1
        check(frame.shape[1], frame.shape[0])
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise corrupt
        out.append(encoded.tobytes())
    return out


# MP4 / QuickTime: ISO base media file format boxes.

_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex", b"edts"}
_MAX_BOXES = 200_000


def _boxes(data: bytes, start: int, end: int) -> Any:
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            # A box running past the end: truncated file. Stop, keeping what was read.
            yield kind, pos + header, end, True
            return
        yield kind, pos + header, pos + size, False
        pos += size


@dataclass
class _Track:
    track_id: int = 0
    handler: bytes = b""
    width: float = 0.0
    height: float = 0.0
    timescale: int = 0
    duration: int = 0
    samples: int = 0


def _parse_mp4(data: bytes) -> VideoInfo | None:
    tracks: list[_Track] = []
    movie_timescale = 0
    movie_duration = 0
    fragment_duration = 0
    fragment_samples: dict[int, int] = {}
    count = 0

    def walk(start: int, end: int, track: _Track | None, traf_id: list[int]) -> None:
        nonlocal movie_timescale, movie_duration, fragment_duration, count
        for kind, body, stop, _truncated in _boxes(data, start, end):
            count += 1
            if count > _MAX_BOXES:
                raise Refusal("the video's MP4 header has too many boxes")
            if kind == b"trak":
                t = _Track()
                tracks.append(t)
                walk(body, stop, t, traf_id)
            elif kind == b"traf":
                walk(body, stop, track, [0])
            elif kind in _MP4_CONTAINERS:
                walk(body, stop, track, traf_id)
            elif kind == b"mvhd":
                version = data[body]
                if version == 1:
                    movie_timescale, movie_duration = struct.unpack_from(">IQ", data, body + 20)
                else:
                    movie_timescale, movie_duration = struct.unpack_from(">II", data, body + 12)
            elif kind == b"mehd":
                fmt = ">Q" if data[body] == 1 else ">I"
                fragment_duration = struct.unpack_from(fmt, data, body + 4)[0]
            elif kind == b"tkhd" and track is not None:
                version = data[body]
                off = body + (20 if version == 1 else 12)
                track.track_id = struct.unpack_from(">I", data, off)[0]
                wh = body + (88 if version == 1 else 76)
                w, h = struct.unpack_from(">II", data, wh)
                track.width, track.height = w / 65536, h / 65536
            elif kind == b"hdlr" and track is not None:
                track.handler = data[body + 8 : body + 12]
            elif kind == b"mdhd" and track is not None:
                if data[body] == 1:
                    track.timescale, track.duration = struct.unpack_from(">IQ", data, body + 20)
                else:
                    track.timescale, track.duration = struct.unpack_from(">II", data, body + 12)
            elif kind == b"stsd" and track is not None:
                # First sample entry; visual entries carry the coded width/height.
                entry = body + 8
                if entry + 36 <= stop:
                    w, h = struct.unpack_from(">HH", data, entry + 32)
                    track.width = max(track.width, float(w))
                    track.height = max(track.height, float(h))
            elif kind in (b"stsz", b"stz2") and track is not None:
                track.samples = struct.unpack_from(">I", data, body + 8)[0]
            elif kind == b"tfhd":
                traf_id[0] = struct.unpack_from(">I", data, body + 4)[0]
            elif kind == b"trun":
                n = struct.unpack_from(">I", data, body + 4)[0]
                fragment_samples[traf_id[0]] = fragment_samples.get(traf_id[0], 0) + n

    walk(0, len(data), None, [0])
    if not tracks:
        return None  # no complete moov box: truncated or not a movie
    video = next((t for t in tracks if t.handler == b"vide"), None)
    if video is None:
        raise Refusal("the video file has no video track")
    frames = video.samples + fragment_samples.get(video.track_id, 0)
    if video.timescale and video.duration and video.duration != 0xFFFFFFFF:
        seconds = video.duration / video.timescale
    elif movie_timescale and (fragment_duration or movie_duration):
        seconds = (fragment_duration or movie_duration) / movie_timescale
    else:
        seconds = 0.0
    return VideoInfo("mp4", int(video.width), int(video.height), frames, seconds)


# WebM / Matroska: EBML elements.

_EBML_HEADER, _DOCTYPE = 0x1A45DFA3, 0x4282
_SEGMENT, _INFO, _TRACKS, _CLUSTER = 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675
_TIMECODE_SCALE, _DURATION = 0x2AD7B1, 0x4489
_TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE, _VIDEO = 0xAE, 0xD7, 0x83, 0xE0
_PIXEL_WIDTH, _PIXEL_HEIGHT = 0xB0, 0xBA
_CLUSTER_TIMECODE, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK = 0xE7, 0xA3, 0xA0, 0xA1
_UNKNOWN = -1
_MAX_ELEMENTS = 2_000_000


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    first = data[pos]
    if first == 0:
        raise ValueError("bad EBML vint")
    length = 8 - first.bit_length() + 1
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    all_ones = value == (1 << (8 - length)) - 1 and not keep_marker
    for i in range(1, length):
        b = data[pos + i]
        value = (value << 8) | b
        all_ones = all_ones and b == 0xFF
    if all_ones:
        return _UNKNOWN, pos + length
    return value, pos + length


def _uint(data: bytes, start: int, end: int) -> int:
    return int.from_bytes(data[start:end], "big") if end > start else 0


def _parse_mkv(data: bytes) -> VideoInfo | None:
    n = len(data)
    state: dict[str, Any] = {
        "doctype": "",
        "scale": 1_000_000,
        "duration": 0.0,
        "tracks": {},  # number -> (type, width, height)
        "blocks": {},  # track number -> frames
        "cluster_tc": 0,
        "last_tc": 0,
        "count": 0,
    }

    def element(pos: int, end: int) -> tuple[int, int, int]:
        eid, p = _vint(data, pos, keep_marker=True)
        size, p = _vint(data, p, keep_marker=False)
        stop = end if size == _UNKNOWN else min(p + size, end)
        if size == _UNKNOWN and eid == _CLUSTER:
            stop = -1  # unknown size: its children follow at the segment's level
        return eid, p, stop

    def count() -> None:
        state["count"] += 1
        if state["count"] > _MAX_ELEMENTS:
            raise Refusal("the video's WebM structure has too many elements")

    def block(p: int, stop: int) -> None:
        track, q = _vint(data, p, keep_marker=False)
        if q + 3 > stop:
            return
        rel = struct.unpack_from(">h", data, q)[0]
        flags = data[q + 2]
        frames = data[q + 3] + 1 if flags & 0x06 and q + 3 < stop else 1
        state["blocks"][track] = state["blocks"].get(track, 0) + frames
        state["last_tc"] = max(state["last_tc"], state["cluster_tc"] + rel)

    def track_entry(p: int, stop: int) -> None:
        number, kind, width, height = 0, 0, 0, 0
        while p < stop:
            count()
            eid, body, end = element(p, stop)
            if eid == _TRACK_NUMBER:
                number = _uint(data, body, end)
            elif eid == _TRACK_TYPE:
                kind = _uint(data, body, end)
            elif eid == _VIDEO:
                q = body
                while q < end:
                    vid, vbody, vend = element(q, end)
                    if vid == _PIXEL_WIDTH:
                        width = _uint(data, vbody, vend)
                    elif vid == _PIXEL_HEIGHT:
                        height = _uint(data, vbody, vend)
                    q = vend
            p = end
        state["tracks"][number] = (kind, width, height)

    def segment(p: int, stop: int) -> None:
        while p < stop:
            count()
            eid, body, end = element(p, stop)
            if eid == _INFO:
                q = body
                while q < end:
                    iid, ibody, iend = element(q, end)
                    if iid == _TIMECODE_SCALE:
                        state["scale"] = _uint(data, ibody, iend) or 1_000_000
                    elif iid == _DURATION:
                        fmt = ">f" if iend - ibody == 4 else ">d"
                        state["duration"] = struct.unpack_from(fmt, data, ibody)[0]
                    q = iend
                p = end
            elif eid == _TRACKS:
                q = body
                while q < end:
                    tid, tbody, tend = element(q, end)
                    if tid == _TRACK_ENTRY:
                        track_entry(tbody, tend)
                    q = tend
                p = end
            elif eid == _CLUSTER:
                state["cluster_tc"] = 0
                if end < 0:
                    p = body  # unknown size: walk its children here until the next cluster
                else:
                    cluster(body, end)
                    p = end
            elif eid == _CLUSTER_TIMECODE:
                state["cluster_tc"] = _uint(data, body, end)
                p = end
            elif eid == _SIMPLE_BLOCK:
                block(body, end)
                p = end
            elif eid == _BLOCK_GROUP:
                group(body, end)
                p = end
            else:
                p = end

    def group(p: int, stop: int) -> None:
        while p < stop:
            count()
            eid, body, end = element(p, stop)
            if eid == _BLOCK:
                block(body, end)
            p = end

    def cluster(p: int, stop: int) -> None:
        while p < stop:
            count()
            eid, body, end = element(p, stop)
            if eid == _CLUSTER_TIMECODE:
                state["cluster_tc"] = _uint(data, body, end)
            elif eid == _SIMPLE_BLOCK:
                block(body, end)
            elif eid == _BLOCK_GROUP:
                group(body, end)
            p = end

    pos = 0
    while pos < n:
        try:
            eid, body, end = element(pos, n)
        except IndexError:
            break
        if eid == _EBML_HEADER:
            q = body
            while q < end:
                hid, hbody, hend = element(q, end)
                if hid == _DOCTYPE:
                    state["doctype"] = data[hbody:hend].rstrip(b"\0").decode("ascii", "replace")
                q = hend
        elif eid == _SEGMENT:
            with contextlib.suppress(IndexError):  # truncated at the end: keep what was read
                segment(body, end)
        pos = end
    if state["doctype"] not in ("webm", "matroska"):
        return None
    video = [(num, w, h) for num, (kind, w, h) in state["tracks"].items() if kind == 1]
    if not video:
        raise Refusal("the video file has no video track")
    number, width, height = video[0]
    frames = state["blocks"].get(number, 0)
    scale = state["scale"]
    seconds = state["duration"] * scale / 1e9
    if seconds <= 0:
        seconds = state["last_tc"] * scale / 1e9
    return VideoInfo("webm", int(width), int(height), int(frames), float(seconds))
