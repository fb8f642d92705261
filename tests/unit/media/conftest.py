"""Fixtures of the media unit tests: sample files and loopback media hosts.

Network tests only ever reach the HTTP hosts started here on 127.0.0.0/8 (127.0.0.1 and
127.0.0.2); refused URLs naming other addresses are refused before any connection is tried.
Tests that need the loopback media host allow it explicitly in their settings.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import pytest

from tests.helpers.media_files import image_bytes, pixel_bomb_png, video_bytes
from tests.helpers.media_hosts import MediaHost
from tests.helpers.media_requests import JPEG, PNG
from tests.helpers.photos import photo_jpeg


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    return {
        "img.png": PNG,
        "img.jpg": JPEG,
        "img.bmp": image_bytes("BMP"),
        "img.webp": image_bytes("WEBP"),
        "img.gif": image_bytes("GIF"),
        "big.png": image_bytes("PNG", (1024, 1024)),
        "tiny.png": image_bytes("PNG", (1, 1)),
        "wide.png": image_bytes("PNG", (2100, 10)),
        "img.tiff": image_bytes("TIFF"),
        "truncated.png": image_bytes("PNG", (256, 256), (1, 2, 3))[:300],
        "truncated.jpg": photo_jpeg(256, 192)[:6000],  # the header whole, the scan cut
        "garbage.png": b"\x89PNG\r\n\x1a\n" + os.urandom(2000),
        "text.txt": b"hello, I am not an image",
        "bomb.png": pixel_bomb_png(),
        "video.mp4": video_bytes("mp4"),
        "video.webm": video_bytes("webm"),
        "frame0.png": image_bytes("PNG", (64, 48), (10, 10, 10)),
        "frame1.jpg": image_bytes("JPEG", (64, 48), (90, 90, 90)),
        "frame2.png": image_bytes("PNG", (64, 48), (180, 180, 180)),
        "frame_odd.png": image_bytes("PNG", (32, 32)),
    }


# ------------------------------------------------------------------------------------------
# Loopback HTTP servers


@pytest.fixture(scope="module")
def server(samples: dict[str, bytes]) -> Iterator[MediaHost]:
    srv = MediaHost(samples, gzip_body=zlib.compress(PNG))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def server2(samples: dict[str, bytes]) -> Iterator[MediaHost]:
    """A second host (127.0.0.2) for per-host and cross-host cases."""
    try:
        srv = MediaHost(samples, host="127.0.0.2", gzip_body=zlib.compress(PNG))
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")
    yield srv
    srv.close()
