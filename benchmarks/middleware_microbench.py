"""Micro-benchmark of DialectMiddleware: what it adds per request and per streamed SSE chunk.

Runs in-process against a no-op ASGI app (no vLLM, no sockets) and writes
benchmarks/results/middleware_microbench.json. Figures are microseconds, best of repeats.

    .venv/bin/python benchmarks/middleware_microbench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vl_serve.server.dialect import (
    SSERewriter,
    rewrite_reasoning,
    rewrite_request,
    scan_markers,
)
from vl_serve.server.middleware import DialectMiddleware, _decode, _encode

RESULTS = Path(__file__).resolve().parent / "results" / "middleware_microbench.json"
SETTINGS = {
    "reasoning": {"parser": "qwen3_vl", "default_enable_thinking": None, "response_field": "both"},
    "media": {},
    "limit_mm_per_prompt": None,
    "served_model_name": "bench",
}


def compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def chat_request(image_bytes: int, dialect: bool) -> bytes:
    """A chat request with two base64 data-URL images of ``image_bytes`` raw bytes each."""
    images = [
        {
            "type": "image_url",
            "image_url": {
                "url": "data:image/png;base64," + base64.b64encode(os.urandom(image_bytes)).decode()
            },
        }
        for _ in range(2)
    ]
    text = {"type": "text", "text": "Compare the two pictures."}
    body: dict[str, Any] = {
        "model": "bench",
        "messages": [{"role": "user", "content": [*images, text]}],
        "max_tokens": 64,
        "stream": True,
    }
    if dialect:
        body.update(enable_thinking=False, metadata={"enable_thinking": True})
        body["reasoning_max_tokens"] = 256
    return compact(body)


def sse_chunk(delta: dict[str, Any]) -> bytes:
    event = {
        "id": "chatcmpl-0123456789abcdef",
        "object": "chat.completion.chunk",
        "created": 1750000000,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
    }
    return b"data: " + compact(event) + b"\n\n"


def per_call_us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter_ns() - start) / number / 1000)
    return round(min(samples), 3)


async def per_request_us(mw: DialectMiddleware, body: bytes, number: int, repeat: int) -> float:
    """Whole ASGI round trip through the middleware (app reads the body, answers 200 JSON)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def send(message: Any) -> None:
        return None

    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive(messages: list[Any] = messages) -> Any:
                return messages.pop() if messages else {"type": "http.disconnect"}

            scope = {
                "type": "http",
                "method": "POST",
                "path": "/v1/chat/completions",
                "root_path": "",
                "headers": headers,
            }
            await mw(scope, receive, send)
        samples.append((time.perf_counter_ns() - start) / number / 1000)
    return round(min(samples), 3)


async def downstream(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


async def stream_chunk_us(chunk: bytes, both: bool | None, number: int, repeat: int) -> float:
    """Per chunk cost of the middleware's send path for an SSE response (start excluded)."""
    from vl_serve.server.middleware import _Exchange

    field = "reasoning" if both is None else ("both" if both else "reasoning_content")
    settings = {**SETTINGS, "reasoning": {**SETTINGS["reasoning"], "response_field": field}}
    mw = DialectMiddleware(downstream, settings=settings)

    async def raw_send(message: Any) -> None:
        return None

    exchange = _Exchange(mw, {}, raw_send, raw_send, True)  # type: ignore[arg-type]
    send = exchange.send if mw.add_alias is not None else exchange.send_plain
    start_message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
    }
    await send(start_message)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(number):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        samples.append((time.perf_counter_ns() - t0) / number / 1000)
    return round(min(samples), 3)


async def bare_send_us(chunk: bytes, number: int, repeat: int) -> float:
    async def raw_send(message: Any) -> None:
        return None

    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in range(number):
            await raw_send({"type": "http.response.body", "body": chunk, "more_body": True})
        samples.append((time.perf_counter_ns() - t0) / number / 1000)
    return round(min(samples), 3)


def noise_image(side: int, fmt: str) -> bytes:
    """A ``side`` x ``side`` RGB noise image (the worst case for its encoded size)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def vllm_decoder(mime: str, b64: str) -> Callable[[], Any]:
    """vLLM's own decode of a base64 image (what its API server does with a data: URL)."""
    from vllm.multimodal.media.image import ImageMediaIO

    io_ = ImageMediaIO()
    return lambda: io_.load_base64(mime, b64)


def media_costs(number: int, repeat: int, with_vllm: bool) -> dict[str, Any]:
    """``vl_serve.media`` per request with one inline image, by format and size.

    ``kept_us``: a ``data:`` URL in vLLM's own ``image_url`` form, checked from its length and
    header and passed on as sent (the common case). ``full_check_us``: the same image in
    qwen-vl-utils' ``{"type": "image"}`` form, which is decoded, checked and re-encoded for vLLM.
    ``vllm_decode_us`` (``--with-vllm``): vLLM's own base64 + pixel decode of it, for scale.
    """
    from vl_serve import media

    settings = {**SETTINGS, "media": media.MediaConfig().model_dump(mode="json")}
    loop = asyncio.new_event_loop()

    def cost(part: dict[str, Any], n: int) -> float:
        body = {"model": "bench", "messages": [{"role": "user", "content": [part]}]}

        def once() -> Any:
            body["messages"][0]["content"] = [dict(part)]
            return loop.run_until_complete(media.prepare_request(body, settings))

        return per_call_us(once, n, repeat)

    out: dict[str, Any] = {}
    for fmt, side in (("JPEG", 64), ("JPEG", 448), ("PNG", 448), ("JPEG", 1280), ("PNG", 1280)):
        data = noise_image(side, fmt)
        url = f"data:image/{fmt.lower()};base64," + base64.b64encode(data).decode()
        n = max(5, number // (10 if side < 1000 else 50))
        entry = {
            "image_bytes": len(data),
            "kept_us": cost({"type": "image_url", "image_url": {"url": url}}, n),
            "full_check_us": cost({"type": "image", "image": url}, max(3, n // 4)),
        }
        if with_vllm:
            entry["vllm_decode_us"] = per_call_us(
                vllm_decoder(f"image/{fmt.lower()}", url.split(",", 1)[1]), max(3, n // 4), repeat
            )
        out[f"{fmt.lower()}_{side}x{side}"] = entry
    loop.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    parser.add_argument("--image-kib", type=int, default=48, help="raw size of each image")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--with-vllm",
        action="store_true",
        help="also time vLLM's own request validation and chunk serialisation, as a yardstick",
    )
    args = parser.parse_args()
    number, repeat = (200, 3) if args.quick else (2000, 7)
    big_number = max(20, number // 20)

    plain = chat_request(args.image_kib * 1024, dialect=False)
    with_dialect = chat_request(args.image_kib * 1024, dialect=True)
    mw = DialectMiddleware(downstream, settings=SETTINGS)
    mw._media = None  # media fetching is vl_serve.media's cost, not measured here

    def parse_rewrite_encode() -> bytes:
        req, fast = _decode(with_dialect)
        rewrite_request(req, chat=True, reasoning_parser="qwen3_vl")
        return _encode(req, fast)

    small = compact({"model": "bench", "messages": [{"role": "user", "content": "Hi"}]})
    small_dialect = compact(
        {"model": "bench", "messages": [{"role": "user", "content": "Hi"}], "enable_thinking": True}
    )
    no_reasoning = sse_chunk({"content": " word"})
    with_reasoning = sse_chunk({"reasoning": " a thought"})
    with_quoted_reasoning = sse_chunk({"reasoning": ' a "quoted" thought'})

    loop = asyncio.new_event_loop()
    run = loop.run_until_complete
    request = {
        "two_images_body_bytes": len(with_dialect),
        "byte_check_two_images_us": per_call_us(lambda: scan_markers(plain), number, repeat),
        "rewrite_two_images_us": per_call_us(parse_rewrite_encode, big_number, repeat),
        "asgi_bare_app_two_images_us": run(per_request_us_bare(plain, big_number, repeat)),
        "asgi_plain_two_images_us": run(per_request_us(mw, plain, big_number, repeat)),
        "asgi_dialect_two_images_us": run(per_request_us(mw, with_dialect, big_number, repeat)),
        "asgi_bare_app_small_us": run(per_request_us_bare(small, number, repeat)),
        "asgi_plain_small_us": run(per_request_us(mw, small, number, repeat)),
        "asgi_dialect_small_us": run(per_request_us(mw, small_dialect, number, repeat)),
    }
    sse_number = number * 10
    chunks = {
        "chunk_bytes_without_reasoning": len(no_reasoning),
        "chunk_bytes_with_reasoning": len(with_reasoning),
        "bare_send_us": run(bare_send_us(no_reasoning, sse_number, repeat)),
        "send_without_reasoning_both_us": run(
            stream_chunk_us(no_reasoning, True, sse_number, repeat)
        ),
        "send_with_reasoning_both_us": run(
            stream_chunk_us(with_reasoning, True, sse_number, repeat)
        ),
        "send_with_reasoning_rename_us": run(
            stream_chunk_us(with_reasoning, False, sse_number, repeat)
        ),
        "send_with_reasoning_field_reasoning_us": run(
            stream_chunk_us(with_reasoning, None, sse_number, repeat)
        ),
        "send_with_quoted_reasoning_both_us": run(
            stream_chunk_us(with_quoted_reasoning, True, sse_number, repeat)
        ),
        "rewrite_reasoning_only_us": per_call_us(
            lambda: rewrite_reasoning(with_reasoning, True), sse_number, repeat
        ),
        "sse_feed_without_reasoning_us": per_call_us(
            lambda: SSERewriter(True).feed(no_reasoning, True), sse_number, repeat
        ),
    }
    loop.close()
    media_per_image = media_costs(number, repeat, args.with_vllm)
    if args.with_vllm:
        request["vllm_validate_two_images_us"], chunks["vllm_serialise_chunk_us"] = vllm_yardsticks(
            plain, big_number, number * 10, repeat
        )
    result = {
        "benchmark": "middleware_microbench",
        "unit": "microseconds per call, best of repeats (timeit-style: least disturbed by other load)",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "request": request,
        "sse_chunk": chunks,
        "media_one_inline_image": media_per_image,
        "notes": [
            "asgi_* run the whole middleware around a no-op ASGI app; asgi_bare_app_* is that app "
            "alone, so the difference is what the middleware adds.",
            "asgi_* run with media preparation (vl_serve.media) disabled; "
            "media_one_inline_image times it alone, per request with one image: kept_us for a "
            "data: URL in vLLM's image_url form (checked from its length and header, passed on "
            "as sent), full_check_us for the same image in qwen-vl-utils' form (decoded, checked, "
            "re-encoded), vllm_decode_us for vLLM's own decode of it (--with-vllm).",
            "send_* is the middleware's per-chunk send path for a 200 text/event-stream response; "
            "bare_send_us is the same call without the middleware.",
        ],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def vllm_yardsticks(
    body: bytes, number: int, chunk_number: int, repeat: int
) -> tuple[float, float]:
    """vLLM's own work on the same inputs: parse+validate the request, serialise one chunk."""
    from vllm.entrypoints.openai.chat_completion.protocol import (
        ChatCompletionRequest,
        ChatCompletionResponseStreamChoice,
        ChatCompletionStreamResponse,
    )

    try:
        from vllm.entrypoints.generate.base.protocol import DeltaMessage  # 0.32
    except ImportError:
        from vllm.entrypoints.openai.engine.protocol import DeltaMessage  # 0.26

    def validate() -> Any:
        return ChatCompletionRequest.model_validate(json.loads(body))

    def serialise() -> str:
        delta = DeltaMessage(reasoning=' a "quoted" thought')
        choice = ChatCompletionResponseStreamChoice(index=0, delta=delta, logprobs=None)
        response = ChatCompletionStreamResponse(
            id="chatcmpl-0123456789abcdef",
            object="chat.completion.chunk",
            created=1750000000,
            model="bench",
            choices=[choice],
        )
        return "data: " + response.model_dump_json(exclude_unset=True) + "\n\n"

    return per_call_us(validate, number, repeat), per_call_us(serialise, chunk_number, repeat)


async def per_request_us_bare(body: bytes, number: int, repeat: int) -> float:
    async def send(message: Any) -> None:
        return None

    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive(messages: list[Any] = messages) -> Any:
                return messages.pop() if messages else {"type": "http.disconnect"}

            scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
            await downstream(scope, receive, send)
        samples.append((time.perf_counter_ns() - start) / number / 1000)
    return round(min(samples), 3)


if __name__ == "__main__":
    main()
