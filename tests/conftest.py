"""Shared fixtures: media files and a media HTTP server on 127.0.0.1 (never any other address)."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


def png_bytes(
    width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def mp4_bytes(frames: int = 8, size: int = 64, fps: float = 4.0) -> bytes:
    """A small MP4 (mp4v) made locally with OpenCV, the decoder vLLM uses on CPU."""
    import tempfile

    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/clip.mp4"
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
        for i in range(frames):
            frame = np.full((size, size, 3), (i * 30) % 256, dtype=np.uint8)
            writer.write(frame)
        writer.release()
        return Path(path).read_bytes()


def data_url(payload: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


def image_part(url: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url}}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class MediaServer:
    """Static files from ``root`` over HTTP on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "red.png").write_bytes(png_bytes(64, 64, (220, 20, 20)))
    (root / "big.png").write_bytes(png_bytes(192, 192, (20, 20, 220)))
    return root


@pytest.fixture(scope="module")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    server = MediaServer(media_dir)
    yield server
    server.close()
