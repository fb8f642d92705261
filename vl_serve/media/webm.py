"""The WebM / Matroska header walked in pure Python: frame size, frame count and duration.

Only EBML element headers and the few elements that carry these figures are read; frames are
counted from the block headers of each cluster, nothing is decoded. A cluster of unknown size has
its children walked at the segment's level. A file cut off at the end keeps what was read.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

from vl_serve.media.containers import VideoInfo
from vl_serve.media.errors import Refusal

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


def parse_webm(data: bytes) -> VideoInfo | None:
    """The first video track's figures, or None when the EBML doctype is not WebM/Matroska."""
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
