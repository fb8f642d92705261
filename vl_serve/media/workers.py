"""Where blocking media work runs (threads off the event loop, one per core), and its bounds.

Pillow and OpenCV release the GIL while they decode, resize and encode, so a thread per core
(at least 2) decodes that many images at once while the event loop keeps serving streams. The
memory those decodes hold is bounded by :data:`MAX_PIXELS_IN_FLIGHT`: an image waits for its
share (its header's width x height, at most the whole bound) before its thread starts, so a
burst of large images queues instead of holding a full frame each. 64 MP is about 190 MiB of
RGB pixels per API-server process, plus the encoded bytes: four 4096 x 4096 images at once.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from vl_serve.media.headers import exact_size, header_size, sniff_image

_T = TypeVar("_T")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 2


_EXECUTOR = ThreadPoolExecutor(max_workers=max(2, _cores()), thread_name_prefix="vl-serve-media")

MAX_PIXELS_IN_FLIGHT = 64 * 1024 * 1024
# The share of an image whose header gives no size (it is checked against the limits first).
_UNKNOWN_PIXELS = 16 * 1024 * 1024


async def in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a media worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, fn, *args)


class PixelGate:
    """A first-come first-served bound on decoded pixels in flight (one event loop's)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, pixels: int) -> int:
        """Wait for ``pixels`` (at most the capacity); returns the share to release."""
        share = min(max(1, pixels), self.capacity)
        if not self._waiting and self.used + share <= self.capacity:
            self.used += share
            return share
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (share, future)
        self._waiting.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(share)  # granted as it was cancelled
            else:
                self._waiting.remove(entry)
            raise
        return share

    def release(self, share: int) -> None:
        self.used -= share
        while self._waiting and self.used + self._waiting[0][0] <= self.capacity:
            share, future = self._waiting.popleft()
            if not future.done():
                self.used += share
                future.set_result(None)


PIXELS = PixelGate(MAX_PIXELS_IN_FLIGHT)


def pixels_of(data: bytes) -> int:
    """Width x height from an encoded image's header, or a default share when it has none."""
    fmt = sniff_image(data[:32])
    dims = None if fmt is None else exact_size(data, fmt) or header_size(data, fmt)
    return dims[0] * dims[1] if dims else _UNKNOWN_PIXELS


async def in_image_thread(pixels: int, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a media worker thread once ``pixels`` fit in the bound."""
    share = await PIXELS.acquire(pixels)
    try:
        return await in_thread(fn, *args)
    finally:
        PIXELS.release(share)


async def gather(coros: list[Awaitable[_T]]) -> list[_T]:
    """Run concurrently; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
