"""Media files for tests, made locally (Pillow, OpenCV), and a static file server on 127.0.0.1."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import os
import struct
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

from PIL import Image


def png_bytes(
    width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def mp4_bytes(frames: int = 8, size: int = 64, fps: float = 4.0) -> bytes:
    """A small MP4 (mp4v) made locally with OpenCV, the decoder vLLM uses on CPU."""
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


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), color: Any = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    if fmt == "GIF":
        frames = [Image.new("RGB", size, color), Image.new("RGB", size, (0, 0, 255))]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    else:
        Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def pixel_bomb_png(side: int = 20_000) -> bytes:
    """A valid PNG of a ``side`` x ``side`` 1-bit image: tens of KB that decode to 400 MP."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def video_bytes(
    ext: str, frames: int = 20, fps: float = 10.0, size: tuple[int, int] = (64, 48)
) -> bytes:
    """A small MP4 (mp4v) or WebM (VP8) of ``frames`` grey frames, made locally with OpenCV."""
    import cv2
    import numpy as np

    fourcc = {"mp4": "mp4v", "webm": "VP80"}[ext]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"v.{ext}")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        for i in range(frames):
            writer.write(np.full((size[1], size[0], 3), (i * 12) % 256, np.uint8))
        writer.release()
        return Path(path).read_bytes()
