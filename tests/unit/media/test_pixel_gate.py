"""The bound on decoded pixels in flight: a burst of large images queues, first come first served."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.photos import photo_jpeg
from vl_serve.media.workers import MAX_PIXELS_IN_FLIGHT, PixelGate, pixels_of


def test_images_over_the_bound_wait_in_order() -> None:
    async def main() -> list[str]:
        gate = PixelGate(100)
        order: list[str] = []

        async def job(name: str, pixels: int, hold: asyncio.Event) -> None:
            share = await gate.acquire(pixels)
            order.append(name)
            assert gate.used <= gate.capacity
            await hold.wait()
            gate.release(share)

        holds = {name: asyncio.Event() for name in "abcd"}
        tasks = [
            asyncio.ensure_future(job("a", 60, holds["a"])),
            asyncio.ensure_future(job("b", 60, holds["b"])),  # waits for a
            asyncio.ensure_future(job("c", 10, holds["c"])),  # fits, but queues behind b
            asyncio.ensure_future(job("d", 500, holds["d"])),  # more than the bound: all of it
        ]
        await asyncio.sleep(0)
        assert order == ["a"]
        holds["a"].set()
        await asyncio.sleep(0.01)
        assert order == ["a", "b", "c"]
        holds["b"].set()
        holds["c"].set()
        await asyncio.sleep(0.01)
        assert order == ["a", "b", "c", "d"] and gate.used == 100
        holds["d"].set()
        await asyncio.gather(*tasks)
        assert gate.used == 0
        return order

    asyncio.run(main())


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def main() -> None:
        gate = PixelGate(10)
        first = await gate.acquire(10)
        waiter = asyncio.ensure_future(gate.acquire(5))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.release(first)
        assert gate.used == 0
        assert await gate.acquire(10) == 10

    asyncio.run(main())


def test_an_image_counts_its_header_pixels() -> None:
    assert pixels_of(photo_jpeg(640, 480)) == 640 * 480
    assert 0 < pixels_of(b"not an image") <= MAX_PIXELS_IN_FLIGHT
