"""vl-serve's own Prometheus metrics (``vl_serve:*``), served on vLLM's /metrics.

They live in prometheus_client's default registry, which vLLM's /metrics serves with one API-server
process. With several (``api_server_count`` > 1) vLLM sets ``PROMETHEUS_MULTIPROC_DIR`` before it
starts them, so every value here is kept in that directory and vLLM's /metrics adds up the files
of all processes (prometheus_client's multiprocess mode): a counter counts the requests of every
process. The two gauges say how the processes are taken together: ``draining`` is 1 when any
live process drains, ``ready`` 1 only when every live one is ready.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

_SECONDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BYTES: Final = tuple(float(2**n) for n in range(10, 29, 2))  # 1 KiB .. 256 MiB

MEDIA_ITEMS: Final = Counter(
    "vl_serve:media_items",
    "Media items accepted in requests, by modality (image, video) and source (http, data, file).",
    ["modality", "source"],
)
MEDIA_FETCH_SECONDS: Final = Histogram(
    "vl_serve:media_fetch_seconds",
    "Time to fetch one media item over HTTP(S), connection to last byte.",
    buckets=_SECONDS,
)
MEDIA_FETCH_BYTES: Final = Histogram(
    "vl_serve:media_fetch_bytes",
    "Size of one media item fetched over HTTP(S), in bytes.",
    buckets=_BYTES,
)
MEDIA_DECODE_SECONDS: Final = Histogram(
    "vl_serve:media_decode_seconds",
    "Time to decode and check one media item (image or video container and frames).",
    buckets=_SECONDS,
)
REFUSALS: Final = Counter(
    "vl_serve:refusals",
    "Requests vl-serve refused, by the error code of the answer (media_too_large, ...).",
    ["code"],
)
REQUESTS: Final = Counter(
    "vl_serve:requests",
    "Generation requests answered 200, by request dialect (openai, fastdeploy, qianfan, tutorial).",
    ["dialect"],
)
THINKING_REQUESTS: Final = Counter(
    "vl_serve:thinking_requests",
    "Generation requests answered 200 that switched thinking on or off explicitly.",
    ["thinking"],
)
ADMISSION_REJECTIONS: Final = Counter(
    "vl_serve:admission_rejections",
    "Generation requests refused because the server had max_inflight_requests in flight.",
)
DRAINING: Final = Gauge(
    "vl_serve:draining",
    "1 while the server drains after SIGTERM (no new requests), else 0.",
    multiprocess_mode="livemax",
)
READY: Final = Gauge(
    "vl_serve:ready",
    "1 while /ready answers 200 (the engine was seen generating), else 0.",
    multiprocess_mode="livemin",
)


def refused(code: object) -> None:
    """Count one refusal answered with ``code``."""
    REFUSALS.labels(code=str(code)).inc()


def served(dialect: object, thinking: object) -> None:
    """Count one generation request answered 200 (dialect absent: OpenAI's)."""
    REQUESTS.labels(dialect=str(dialect or "openai")).inc()
    if thinking is True or thinking is False:
        THINKING_REQUESTS.labels(thinking="on" if thinking else "off").inc()
