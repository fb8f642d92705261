"""Where blocking media work runs (a few threads, off the event loop), and items run together."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")

# Decoding and file reads run here, a few at a time, so the event loop keeps serving streams.
_EXECUTOR = ThreadPoolExecutor(
    max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="vl-serve-media"
)


async def in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a media worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, fn, *args)


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
