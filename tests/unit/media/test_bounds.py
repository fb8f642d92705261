"""Time, concurrency and memory bounds: slow hosts, bombs and oversized items fail fast."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

import pytest

from tests.helpers.media_hosts import MediaHost
from tests.helpers.media_requests import (
    BOMB_MSG,
    LOOPBACK,
    MB,
    chat,
    data_url,
    image_part,
    refused,
    run,
    settings,
)
from vl_serve.media import MediaError, prepare_request

# ------------------------------------------------------------------------------------------
# Time bounds and concurrency


def test_silent_and_dripping_hosts_fail_within_the_bound(server: MediaHost) -> None:
    st = settings(read_timeout_s=0.5, fetch_timeout_s=1.5, **LOOPBACK)
    for path in ("silent", "drip"):
        t0 = time.monotonic()
        err = refused(chat(image_part(server.url(path))), st)
        elapsed = time.monotonic() - t0
        assert err.code == "media_fetch_timeout", err.message
        assert elapsed < 2.5, (path, elapsed)


def test_slow_host_does_not_delay_other_requests(server: MediaHost, server2: MediaHost) -> None:
    st = settings(
        read_timeout_s=3,
        fetch_timeout_s=3,
        max_concurrent_fetches=3,
        max_fetches_per_host=2,
        **LOOPBACK,
    )

    async def scenario() -> tuple[float, list[Any]]:
        slow = [
            asyncio.create_task(prepare_request(chat(image_part(server.url("silent"))), st))
            for _ in range(6)
        ]
        await asyncio.sleep(0.2)  # the slow host now holds its slots; more are queued
        t0 = time.monotonic()
        body = chat(image_part(server2.url("img.png")))
        await prepare_request(body, st)
        fast = time.monotonic() - t0
        results = await asyncio.gather(*slow, return_exceptions=True)
        return fast, results

    fast, results = asyncio.run(scenario())
    assert fast < 0.5, fast
    assert all(isinstance(r, MediaError) and r.code == "media_fetch_timeout" for r in results)


# ------------------------------------------------------------------------------------------
# Bombs and oversized downloads: refused fast, memory flat


def _measure(body: dict[str, Any], st: dict[str, Any]) -> tuple[MediaError, float, int, int]:
    import psutil

    rss0 = psutil.Process().memory_info().rss
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(MediaError) as info:
            run(body, st)
        elapsed = time.monotonic() - t0
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss = psutil.Process().memory_info().rss - rss0
    return info.value, elapsed, peak, rss


def test_pixel_bomb_refused_fast_with_flat_memory(
    server: MediaHost, samples: dict[str, bytes]
) -> None:
    bomb = samples["bomb.png"]
    for label, url in [
        ("http", server.url("bomb.png")),
        ("data", data_url("image/png", bomb)),
    ]:
        err, elapsed, peak, rss = _measure(chat(image_part(url)), settings(**LOOPBACK))
        print(
            f"\npixel bomb ({label}): {len(bomb) / 1024:.0f} KB file, 20000x20000 = 400 MP; "
            f"refused in {elapsed * 1000:.1f} ms, tracemalloc peak {peak / MB:.2f} MB, "
            f"RSS delta {rss / MB:.1f} MB"
        )
        assert BOMB_MSG in err.message
        assert elapsed < 1.0
        # Decoding it would allocate 400 MB (mode "1" is a byte per pixel).
        assert peak < 8 * MB


def test_oversized_download_refused_fast_with_flat_memory(server: MediaHost) -> None:
    for path in ("big", "big-cl"):
        server.sent_big = 0
        body = chat(image_part(server.url(f"{path}?bytes={100 * MB}")))
        err, elapsed, peak, rss = _measure(body, settings(**LOOPBACK))
        time.sleep(0.2)
        print(
            f"\noversized download ({path}, 100 MB offered, 10 MB limit): refused in "
            f"{elapsed * 1000:.1f} ms, tracemalloc peak {peak / MB:.2f} MB, RSS delta "
            f"{rss / MB:.1f} MB, server got rid of {server.sent_big / MB:.1f} MB"
        )
        assert err.status == 413
        assert elapsed < 1.0
        assert peak < 25 * MB  # the limit plus a chunk, never the whole 100 MB
        assert server.sent_big < 40 * MB  # we stopped reading: the server could not send it all


def test_oversized_base64_refused_before_decoding() -> None:
    payload = "A" * (100 * MB)
    body = chat(image_part("data:image/png;base64," + payload))
    err, elapsed, peak, _rss = _measure(body, settings())
    print(
        f"\noversized base64 (75 MB decoded): refused in {elapsed * 1000:.1f} ms, "
        f"tracemalloc peak {peak / MB:.2f} MB"
    )
    assert err.status == 413 and elapsed < 1.0 and peak < 8 * MB
