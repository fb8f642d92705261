"""The MP4 / QuickTime header walked in pure Python: frame size, frame count and duration.

Only box headers and the few boxes that carry these figures are read (ISO base media file
format); nothing is decoded. Fragmented files count the samples of their ``trun`` boxes. A box
running past the end (a truncated file) stops the walk, keeping what was read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from vl_serve.media.containers import VideoInfo
from vl_serve.media.errors import Refusal

_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex", b"edts"}
_MAX_BOXES = 200_000


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, bool]]:
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
    keyframes: tuple[int, ...] | None = None  # stss: the sync samples, 0-based


def parse_mp4(data: bytes) -> VideoInfo | None:
    """The video track's figures, or None when there is no complete ``moov`` box."""
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
            elif kind == b"stss" and track is not None:
                n = min(struct.unpack_from(">I", data, body + 4)[0], (stop - body - 8) // 4)
                numbers = struct.unpack_from(f">{max(0, n)}I", data, body + 8)
                track.keyframes = tuple(sorted(v - 1 for v in numbers if v > 0))
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
    keyframes = video.keyframes if frames == video.samples else None  # fragments: unknown
    return VideoInfo("mp4", int(video.width), int(video.height), frames, seconds, keyframes)
