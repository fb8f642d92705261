"""Chat request bodies and media settings for the media unit tests, and checks on the answers."""

from __future__ import annotations

import asyncio
import base64
import re
import struct
import zlib
from typing import Any

import pytest

from tests.helpers.media_files import image_bytes
from vl_serve.config import MediaConfig
from vl_serve.media import MediaError, prepare_request

MB = 1024 * 1024
LOOPBACK: dict[str, Any] = {"allowed_networks": ["127.0.0.0/8"]}
BOMB_MSG = "20000x20000 = 400000000 pixels, over the limit of 16777216 pixels"


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def decode_data_url(url: str) -> bytes:
    assert url.startswith("data:"), url[:40]
    return base64.b64decode(url.split(",", 1)[1])


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")


def settings(limit_mm: dict[str, int] | None = None, **media: Any) -> dict[str, Any]:
    return {
        "media": MediaConfig(**media).model_dump(mode="json"),
        "limit_mm_per_prompt": limit_mm,
    }


def chat(*parts: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "describe"}, *parts]}],
    }


def image_part(url: str, detail: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": url}
    if detail is not None:
        inner["detail"] = detail
    return {"type": "image_url", "image_url": inner}


def video_part(url: str) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}}


def run(body: dict[str, Any], st: dict[str, Any]) -> bool:
    return asyncio.run(prepare_request(body, st))


def refused(body: dict[str, Any], st: dict[str, Any]) -> MediaError:
    with pytest.raises(MediaError) as info:
        run(body, st)
    err = info.value
    assert_clean(err.message)
    return err


def assert_clean(message: str) -> None:
    """Error text shows no traceback, memory address, server path or exception repr."""
    assert "Traceback" not in message
    assert not re.search(r"0x[0-9a-fA-F]{6,}", message), message
    assert "/tmp" not in message and "site-packages" not in message, message
    assert "Error(" not in message and " object at " not in message, message


def part_of(body: dict[str, Any], index: int = 1) -> dict[str, Any]:
    return body["messages"][0]["content"][index]


def segment_at(data: bytes, marker: int) -> tuple[int, int]:
    """(start, end) of the first JPEG segment with ``marker`` (walked from SOI)."""
    pos = 2
    while data[pos + 1] != marker:
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return pos, pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]


def jpeg_two_sofs(first: tuple[int, int], last: tuple[int, int]) -> bytes:
    """A JPEG header with two SOF segments: Pillow (and vLLM) take the size of the last one."""
    data = image_bytes("JPEG", first)
    start, end = segment_at(data, 0xC0)
    sof = bytearray(data[start:end])
    struct.pack_into(">HH", sof, 5, last[1], last[0])
    return data[:end] + bytes(sof) + data[end:]


def png_two_ihdrs(first: tuple[int, int], last: tuple[int, int]) -> bytes:
    """A PNG with a second IHDR chunk before its IDAT: Pillow takes the size of the last one."""
    data = image_bytes("PNG", first)
    ihdr = bytearray(data[12:29])
    struct.pack_into(">II", ihdr, 4, *last)
    chunk = data[8:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return data[:33] + chunk + data[33:]
