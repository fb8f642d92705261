"""Micro-benchmark of DialectMiddleware: what it adds per request and per streamed SSE chunk.

Runs in-process against a no-op ASGI app (no vLLM, no sockets) and writes
benchmarks/results/middleware_microbench.json. Figures are microseconds per call, best of
repeats (the least disturbed by other load on the machine):

- ``request``: the byte check and the dialect rewrite of a request with two 48 KiB data-URL
  images, and the whole ASGI round trip through the middleware (``asgi_*``; ``asgi_bare_app_*``
  is the no-op app alone, so the difference is what the middleware adds; media preparation off);
- ``sse_chunk``: the middleware's send path per chunk of a 200 text/event-stream response, by
  ``reasoning.response_field`` (``bare_send_us``: the same call without the middleware);
- ``media_one_inline_image``: ``vl_serve.media`` per request with one inline image by format
  and size: ``kept_us`` for a data: URL in vLLM's image_url form (checked from its length and
  header, passed on as sent), ``full_check_us`` for the same image in qwen-vl-utils' form
  (decoded, checked, re-encoded), ``vllm_decode_us`` for vLLM's own decode of it;
- with ``--with-vllm``, vLLM's own request validation and chunk serialisation, for scale.

    .venv/bin/python benchmarks/middleware_microbench.py [--quick] [--with-vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import io
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vl_serve.server.dialect import rewrite_request, scan_markers
from vl_serve.server.exchange import Exchange
from vl_serve.server.jsonbody import decode_body, encode_body
from vl_serve.server.middleware import DialectMiddleware
from vl_serve.server.reasoning_content import SSERewriter, rewrite_reasoning
from vl_serve.server.shapes import shape_of

RESULTS = Path(__file__).resolve().parent / "results" / "middleware_microbench.json"
SETTINGS = {
    "reasoning": {"parser": "qwen3_vl", "default_enable_thinking": None, "response_field": "both"},
    "media": {},
    "limit_mm_per_prompt": None,
    "served_model_name": "bench",
}
CHAT = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "root_path": ""}


def compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def chat_request(image_bytes: int, dialect: bool) -> bytes:
    """A streamed chat request with two base64 data-URL images of ``image_bytes`` bytes each."""
    url = "data:image/png;base64," + base64.b64encode(os.urandom(image_bytes)).decode()
    images = [{"type": "image_url", "image_url": {"url": url}} for _ in range(2)]
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


def per_await_us(fn: Callable[[], Awaitable[Any]], number: int, repeat: int) -> float:
    """``per_call_us`` for a coroutine function, awaited in one event loop."""

    async def timed() -> list[float]:
        samples = []
        for _ in range(repeat):
            start = time.perf_counter_ns()
            for _ in range(number):
                await fn()
            samples.append((time.perf_counter_ns() - start) / number / 1000)
        return samples

    return round(min(asyncio.run(timed())), 3)


async def _discard(message: Any) -> None:
    return None


async def downstream(scope: Any, receive: Any, send: Any) -> None:
    """The no-op app: reads the body, answers 200 ``{}``."""
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


def asgi_us(app: Any, body: bytes, number: int, repeat: int) -> float:
    """One POST /v1/chat/completions through ``app`` (the middleware, or the no-op app)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {**CHAT, "headers": headers}

    async def once() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Any:
            return messages.pop() if messages else {"type": "http.disconnect"}

        await app(scope, receive, _discard)

    return per_await_us(once, number, repeat)


def stream_chunk_us(chunk: bytes, field: str | None, number: int, repeat: int) -> float:
    """Per chunk: the middleware's send path for an SSE response with ``response_field``
    ``field`` (None: the bare send, no middleware); the response start is not timed."""
    message = {"type": "http.response.body", "body": chunk, "more_body": True}
    if field is None:
        return per_await_us(lambda: _discard(message), number, repeat)
    settings = {**SETTINGS, "reasoning": {**SETTINGS["reasoning"], "response_field": field}}
    mw = DialectMiddleware(downstream, settings=settings)
    exchange = Exchange(mw, {}, _discard, _discard, shape_of(CHAT["path"]))
    send = exchange.send if mw.add_alias is not None else exchange.send_plain
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
    }
    asyncio.run(send(start))
    return per_await_us(lambda: send(dict(message)), number, repeat)


def noise_image(side: int, fmt: str) -> bytes:
    """A ``side`` x ``side`` RGB noise image (the worst case for its encoded size)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def media_costs(number: int, repeat: int, with_vllm: bool) -> dict[str, Any]:
    """``vl_serve.media.prepare_request`` per request with one inline image, by format and size."""
    from vl_serve import media
    from vl_serve.config import MediaConfig

    settings = {**SETTINGS, "media": MediaConfig().model_dump(mode="json")}
    loop = asyncio.new_event_loop()

    def cost(part: dict[str, Any], n: int) -> float:
        body = {"model": "bench", "messages": [{"role": "user", "content": [part]}]}

        def once() -> Any:  # one request, as the middleware's event loop would run it
            body["messages"][0]["content"] = [dict(part)]
            return loop.run_until_complete(media.prepare_request(body, settings))

        return per_call_us(once, n, repeat)

    out: dict[str, Any] = {}
    for fmt, side in (("JPEG", 64), ("JPEG", 448), ("PNG", 448), ("JPEG", 1280), ("PNG", 1280)):
        data = noise_image(side, fmt)
        mime = f"image/{fmt.lower()}"
        b64 = base64.b64encode(data).decode()
        n = max(5, number // (10 if side < 1000 else 50))
        entry = {
            "image_bytes": len(data),
            "kept_us": cost({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64}"}}, n),
            "full_check_us": cost({"type": "image", "image": f"data:{mime};base64,{b64}"}, max(3, n // 4)),
        }  # fmt: skip
        if with_vllm:
            from vllm.multimodal.media.image import ImageMediaIO

            decode = functools.partial(ImageMediaIO().load_base64, mime, b64)
            entry["vllm_decode_us"] = per_call_us(decode, max(3, n // 4), repeat)
        out[f"{fmt.lower()}_{side}x{side}"] = entry
    loop.close()
    return out


def vllm_yardsticks(body: bytes, number: int, chunk_number: int, repeat: int) -> dict[str, float]:
    """vLLM's own work on the same inputs: parse+validate the request, serialise one chunk."""
    from vllm.entrypoints.generate.base.protocol import DeltaMessage
    from vllm.entrypoints.openai.chat_completion.protocol import (
        ChatCompletionRequest,
        ChatCompletionResponseStreamChoice,
        ChatCompletionStreamResponse,
    )

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

    def validate() -> Any:
        return ChatCompletionRequest.model_validate(json.loads(body))

    return {
        "vllm_validate_two_images_us": per_call_us(validate, number, repeat),
        "vllm_serialise_chunk_us": per_call_us(serialise, chunk_number, repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    parser.add_argument("--image-kib", type=int, default=48, help="raw size of each image")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--with-vllm", action="store_true", help="also time vLLM's own work")
    args = parser.parse_args()
    number, repeat = (200, 3) if args.quick else (2000, 7)
    big, sse = max(20, number // 20), number * 10

    plain = chat_request(args.image_kib * 1024, dialect=False)
    with_dialect = chat_request(args.image_kib * 1024, dialect=True)
    mw = DialectMiddleware(downstream, settings=SETTINGS)
    mw.media = None  # media preparation is timed alone (media_one_inline_image)

    def parse_rewrite_encode() -> bytes:
        req, fast = decode_body(with_dialect, 64)
        rewrite_request(req, chat=True, reasoning_parser="qwen3_vl")
        return encode_body(req, fast)

    hi = {"model": "bench", "messages": [{"role": "user", "content": "Hi"}]}
    small, small_dialect = compact(hi), compact({**hi, "enable_thinking": True})
    no_reasoning = sse_chunk({"content": " word"})
    with_reasoning = sse_chunk({"reasoning": " a thought"})
    quoted = sse_chunk({"reasoning": ' a "quoted" thought'})
    request = {
        "two_images_body_bytes": len(with_dialect),
        "byte_check_two_images_us": per_call_us(lambda: scan_markers(plain), number, repeat),
        "rewrite_two_images_us": per_call_us(parse_rewrite_encode, big, repeat),
        "asgi_bare_app_two_images_us": asgi_us(downstream, plain, big, repeat),
        "asgi_plain_two_images_us": asgi_us(mw, plain, big, repeat),
        "asgi_dialect_two_images_us": asgi_us(mw, with_dialect, big, repeat),
        "asgi_bare_app_small_us": asgi_us(downstream, small, number, repeat),
        "asgi_plain_small_us": asgi_us(mw, small, number, repeat),
        "asgi_dialect_small_us": asgi_us(mw, small_dialect, number, repeat),
    }
    chunks = {
        "chunk_bytes_without_reasoning": len(no_reasoning),
        "chunk_bytes_with_reasoning": len(with_reasoning),
        "bare_send_us": stream_chunk_us(no_reasoning, None, sse, repeat),
        "send_without_reasoning_both_us": stream_chunk_us(no_reasoning, "both", sse, repeat),
        "send_with_reasoning_both_us": stream_chunk_us(with_reasoning, "both", sse, repeat),
        "send_with_reasoning_rename_us": stream_chunk_us(
            with_reasoning, "reasoning_content", sse, repeat
        ),
        "send_with_reasoning_field_reasoning_us": stream_chunk_us(
            with_reasoning, "reasoning", sse, repeat
        ),
        "send_with_quoted_reasoning_both_us": stream_chunk_us(quoted, "both", sse, repeat),
        "rewrite_reasoning_only_us": per_call_us(
            lambda: rewrite_reasoning(with_reasoning, True), sse, repeat
        ),
        "sse_feed_without_reasoning_us": per_call_us(
            lambda: SSERewriter(True).feed(no_reasoning, True), sse, repeat
        ),
    }
    media_per_image = media_costs(number, repeat, args.with_vllm)
    if args.with_vllm:
        yard = vllm_yardsticks(plain, big, sse, repeat)
        request["vllm_validate_two_images_us"] = yard["vllm_validate_two_images_us"]
        chunks["vllm_serialise_chunk_us"] = yard["vllm_serialise_chunk_us"]
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
            "asgi_* run the whole middleware around a no-op ASGI app, media preparation off; "
            "asgi_bare_app_* is that app alone.",
            "send_* is the middleware's per-chunk send path for a 200 text/event-stream response; "
            "bare_send_us is the same call without the middleware.",
            "media_one_inline_image: vl_serve.media per request with one image (see the script).",
        ],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
