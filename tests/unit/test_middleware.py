"""DialectMiddleware: FastDeploy/Qianfan request and response rewrites, without vLLM.

A small FastAPI app stands in for vLLM's server: same routes, a pydantic request model that
allows extra keys, vLLM-shaped error handlers, compact JSON and ``data: {...}\\n\\n`` SSE events.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import types
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.testclient import TestClient

from vl_serve import runtime
from vl_serve.server import dialect, errors
from vl_serve.server.dialect import rewrite_request
from vl_serve.server.errors import RequestError
from vl_serve.server.middleware import DialectMiddleware
from vl_serve.server.reasoning_content import SSERewriter, rewrite_reasoning
from vl_serve.server.wording import client_message

REASONING = 'Step "one": \\ back\\\\slash, 中文, and "reasoning":"not a key" \U0001f600'
CONTENT = 'The answer: {"reasoning":null} stays as text.'


def settings(field: str = "both", parser: str | None = "qwen3_vl") -> dict[str, Any]:
    return {
        "reasoning": {"parser": parser, "default_enable_thinking": None, "response_field": field},
        "media": {},
        "limit_mm_per_prompt": None,
        "served_model_name": "tiny",
    }


def compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# --- request rewrites (pure) --------------------------------------------------------------------

MSG = [{"role": "user", "content": "hi"}]

ACCEPTED = [
    pytest.param(
        {"enable_thinking": True},
        {"chat_template_kwargs": {"enable_thinking": True}},
        id="top_level",
    ),
    pytest.param(
        {"enable_thinking": False, "chat_template_kwargs": {"enable_thinking": True, "x": 1}},
        {"chat_template_kwargs": {"enable_thinking": False, "x": 1}},
        id="top_level_beats_template_kwargs",
    ),
    pytest.param(
        {"metadata": {"enable_thinking": False}},
        {"chat_template_kwargs": {"enable_thinking": False}},
        id="metadata",
    ),
    pytest.param(
        {"metadata": {"enable_thinking": False, "user": "u1"}},
        {"metadata": {"user": "u1"}, "chat_template_kwargs": {"enable_thinking": False}},
        id="metadata_other_keys_kept",
    ),
    pytest.param(
        {"metadata": {"enable_thinking": True}, "enable_thinking": False},
        {"chat_template_kwargs": {"enable_thinking": False}},
        id="top_level_beats_metadata",
    ),
    pytest.param(
        {"metadata": {"enable_thinking": True}, "chat_template_kwargs": {"enable_thinking": False}},
        {"chat_template_kwargs": {"enable_thinking": True}},
        id="metadata_beats_template_kwargs",
    ),
    pytest.param(
        {"enable_thinking": None, "metadata": {"enable_thinking": False}},
        {"chat_template_kwargs": {"enable_thinking": False}},
        id="null_means_unset",
    ),
    pytest.param({"enable_thinking": None}, {}, id="null_only"),
    pytest.param({"reasoning_max_tokens": 128}, {"thinking_token_budget": 128}, id="budget"),
    pytest.param({"reasoning_max_tokens": 0}, {"thinking_token_budget": 0}, id="budget_zero"),
    pytest.param(
        {"reasoning_max_tokens": 64, "thinking_token_budget": 10},
        {"thinking_token_budget": 64},
        id="budget_beats_native",
    ),
    pytest.param(
        {"metadata": {"reasoning_max_tokens": 32}},
        {"thinking_token_budget": 32},
        id="budget_in_metadata",
    ),
    pytest.param(
        {"reasoning_max_tokens": 8, "metadata": {"reasoning_max_tokens": 32}},
        {"thinking_token_budget": 8},
        id="budget_top_level_beats_metadata",
    ),
    pytest.param(
        {"enable_thinking": True, "reasoning_max_tokens": 16, "chat_template_kwargs": None},
        {"chat_template_kwargs": {"enable_thinking": True}, "thinking_token_budget": 16},
        id="both_fields",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), ACCEPTED)
def test_request_rewrite_accepted(extra: dict[str, Any], expected: dict[str, Any]) -> None:
    req = copy.deepcopy({"messages": MSG, **extra})
    assert rewrite_request(req, chat=True, reasoning_parser="qwen3_vl") is True
    assert req == {"messages": MSG, **expected}


UNCHANGED = [
    pytest.param({}, id="plain"),
    pytest.param({"metadata": {"user": "u"}}, id="openai_metadata"),
    pytest.param({"metadata": None}, id="null_metadata"),
    pytest.param({"chat_template_kwargs": {"enable_thinking": False}}, id="native_kwargs"),
    pytest.param({"thinking_token_budget": 5}, id="native_budget"),
]


@pytest.mark.parametrize("extra", UNCHANGED)
def test_request_rewrite_unchanged(extra: dict[str, Any]) -> None:
    req = copy.deepcopy({"messages": MSG, **extra})
    assert rewrite_request(req, chat=True, reasoning_parser="qwen3_vl") is False
    assert req == {"messages": MSG, **extra}


def test_budget_dropped_without_reasoning_parser() -> None:
    # vLLM refuses thinking_token_budget when no reasoning parser is configured.
    req = {"messages": MSG, "reasoning_max_tokens": 100, "enable_thinking": True}
    assert rewrite_request(req, chat=True, reasoning_parser=None)
    assert req == {"messages": MSG, "chat_template_kwargs": {"enable_thinking": True}}


def test_completions_drop_thinking_switch_and_map_budget() -> None:
    req = {
        "prompt": "x",
        "enable_thinking": True,
        "metadata": {"enable_thinking": False},
        "reasoning_max_tokens": 5,
    }
    assert rewrite_request(req, chat=False, reasoning_parser="qwen3_vl")
    assert req == {"prompt": "x", "thinking_token_budget": 5}


REFUSED = [
    pytest.param({"enable_thinking": "yes"}, "enable_thinking", "must be a boolean", id="str"),
    pytest.param({"enable_thinking": 1}, "enable_thinking", "must be a boolean", id="int"),
    pytest.param({"metadata": 5}, "metadata", "must be an object", id="metadata_int"),
    pytest.param(
        {"metadata": ["enable_thinking"]}, "metadata", "must be an object", id="metadata_list"
    ),
    pytest.param(
        {"metadata": {"enable_thinking": "no"}},
        "metadata.enable_thinking",
        "must be a boolean",
        id="metadata_str",
    ),
    pytest.param(
        {"reasoning_max_tokens": -1},
        "reasoning_max_tokens",
        "must be an integer",
        id="budget_negative",
    ),
    pytest.param(
        {"reasoning_max_tokens": "100"},
        "reasoning_max_tokens",
        "must be an integer",
        id="budget_str",
    ),
    pytest.param(
        {"reasoning_max_tokens": 1.5},
        "reasoning_max_tokens",
        "must be an integer",
        id="budget_float",
    ),
    pytest.param(
        {"reasoning_max_tokens": True},
        "reasoning_max_tokens",
        "must be an integer",
        id="budget_bool",
    ),
    pytest.param(
        {"reasoning_max_tokens": 2**40},
        "reasoning_max_tokens",
        "must be an integer",
        id="budget_huge",
    ),
    pytest.param(
        {"metadata": {"reasoning_max_tokens": -5}},
        "metadata.reasoning_max_tokens",
        "must be an integer",
        id="metadata_budget",
    ),
    pytest.param(
        {"enable_thinking": True, "chat_template_kwargs": "x"},
        "chat_template_kwargs",
        "must be an object",
        id="bad_template_kwargs",
    ),
]


@pytest.mark.parametrize(("extra", "param", "message"), REFUSED)
def test_request_rewrite_refused(extra: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(RequestError) as info:
        req = copy.deepcopy({"messages": MSG, **extra})
        rewrite_request(req, chat=True, reasoning_parser="qwen3_vl")
    assert info.value.param == param
    assert info.value.status == 400
    assert info.value.code == "invalid_parameter"
    assert message in info.value.message


def padded(extra: dict[str, Any], quotes: int, blob: int) -> bytes:
    """A body with ``quotes`` short strings and a ``blob``-byte string before ``extra``'s keys."""
    messages = [{"role": "user", "content": "w"} for _ in range(quotes // 8)]
    messages.append({"role": "user", "content": "A" * blob})
    return compact({"messages": messages, **extra})


SCANS = [
    pytest.param(b'{"messages":[],"enable_thinking":true}', (True, False), id="small_dialect"),
    pytest.param(b'{"messages":[],"metadata":{}}', (True, False), id="small_metadata"),
    pytest.param(
        b'{"messages":[{"content":"say \\"enable_thinking\\""}]}',
        (False, False),
        id="escaped_text_is_not_a_key",
    ),
    pytest.param(
        compact({"messages": [{"content": [{"type": "image_url"}]}]}),
        (False, True),
        id="small_media",
    ),
    pytest.param(
        compact({"messages": [{"content": [{"type": "input_audio"}]}]}),
        (False, True),
        id="small_audio",
    ),
    pytest.param(
        compact({"messages": [], "mm_processor_kwargs": {}}), (False, True), id="small_mm_kwargs"
    ),
    pytest.param(padded({}, 8, 100_000), (False, False), id="big_plain"),
    pytest.param(padded({"reasoning_max_tokens": 5}, 8, 100_000), (True, False), id="big_hops"),
    pytest.param(
        padded({"metadata": {"enable_thinking": True}}, 400, 100_000),
        (True, False),
        id="big_many_quotes_then_regex",
    ),
    pytest.param(
        padded({"x": [{"type": "video"}]}, 400, 30_000),
        (False, True),
        id="many_quotes_media_at_end",
    ),
    # A \u escape can spell any key: every such body gets the real parse.
    pytest.param(
        b'{"messages":[],"\\u0065nable_thinking":true}', (True, True), id="unicode_escape"
    ),
    pytest.param(
        compact({"messages": [{"content": "a\nb\tc" * 100 + "\u00e9"}]}).replace(
            "é".encode(), b"\\u00e9"
        ),
        (True, True),
        id="unicode_escape_after_many_escapes",
    ),
    # An escaped backslash followed by "u" is text, not an escape.
    pytest.param(
        compact({"messages": [{"content": "C:\\users " + "A" * 100_000}]}),
        (False, False),
        id="escaped_backslash_then_u",
    ),
]


@pytest.mark.parametrize(("body", "expected"), SCANS)
def test_scan_markers(body: bytes, expected: tuple[bool, bool]) -> None:
    assert dialect.scan_markers(body) == expected


# --- response rewrites (pure) -------------------------------------------------------------------


def add_alias(obj: Any, both: bool) -> Any:
    """Reference transform on parsed JSON: the reasoning key of messages/deltas."""
    if isinstance(obj, list):
        return [add_alias(item, both) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "reasoning":
            if both:
                out[key] = value
            out["reasoning_content"] = value
        else:
            out[key] = add_alias(value, both)
    return out


def message_body(reasoning: str | None, n: int = 1) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {
                "role": "assistant",
                "content": CONTENT,
                "refusal": None,
                "reasoning": reasoning,
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
        }
        for i in range(n)
    ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "tiny",
        "choices": choices,
        "usage": {
            "prompt_tokens": 3,
            "total_tokens": 9,
            "completion_tokens": 6,
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }


@pytest.mark.parametrize("both", [True, False], ids=["both", "reasoning_content"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(message_body(REASONING), id="reasoning"),
        pytest.param(message_body(None), id="null"),
        pytest.param(message_body("x\\", n=3), id="three_choices_trailing_backslash"),
        pytest.param(message_body(""), id="empty"),
    ],
)
def test_rewrite_reasoning_matches_json_transform(body: dict[str, Any], both: bool) -> None:
    raw = compact(body)
    assert rewrite_reasoning(raw, both) == compact(add_alias(body, both))


def test_rewrite_reasoning_leaves_other_bytes() -> None:
    raw = compact({"choices": [{"message": {"content": CONTENT}}]})
    assert rewrite_reasoning(raw, True) is raw
    # Not keys: a key ending in an escaped quote, and a value that is neither null nor a string.
    odd = compact({"x": {'a"reasoning': 1}, "reasoning": 5, "list": ["reasoning", {"k": 1}]})
    assert b'"reasoning":' in odd
    assert rewrite_reasoning(odd, True) is odd


def sse(events: list[dict[str, Any]], keep_alive: bool = True) -> bytes:
    out = b"".join(b"data: " + compact(event) + b"\n\n" for event in events)
    if keep_alive:
        out = b": keep-alive\n\n" + out
    return out + b"data: [DONE]\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None}
    if finish:
        choice["finish_reason"] = finish
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "tiny",
        "choices": [choice],
    }


STREAM_EVENTS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning": 'Step "1"'}),
    chunk({"reasoning": "\\\\ and 中文"}),
    chunk({"reasoning": REASONING}),
    chunk({"content": CONTENT}),
    chunk({"content": "."}, finish="stop"),
]


def expected_stream(both: bool) -> bytes:
    return sse([add_alias(event, both) for event in STREAM_EVENTS])


def feed_all(parts: list[bytes], both: bool) -> list[bytes]:
    rewriter = SSERewriter(both)
    return [rewriter.feed(part, i < len(parts) - 1) for i, part in enumerate(parts)]


@pytest.mark.parametrize("both", [True, False], ids=["both", "reasoning_content"])
def test_sse_every_two_way_split(both: bool) -> None:
    stream = sse(STREAM_EVENTS)
    want = expected_stream(both)
    for cut in range(len(stream) + 1):
        assert b"".join(feed_all([stream[:cut], stream[cut:]], both)) == want, cut


@pytest.mark.parametrize("both", [True, False], ids=["both", "reasoning_content"])
def test_sse_byte_by_byte_and_random_splits(both: bool) -> None:
    stream = sse(STREAM_EVENTS)
    want = expected_stream(both)
    assert b"".join(feed_all([stream[i : i + 1] for i in range(len(stream))], both)) == want
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert b"".join(feed_all(parts, both)) == want


def test_sse_whole_events_pass_through_as_is() -> None:
    rewriter = SSERewriter(True)
    event = b"data: " + compact(chunk({"content": "x"})) + b"\n\n"
    assert rewriter.feed(event, True) is event
    merged = sse(STREAM_EVENTS[:3], keep_alive=False)
    assert rewriter.feed(merged, True) == sse(
        [add_alias(e, True) for e in STREAM_EVENTS[:3]], keep_alive=False
    )


def test_error_body_shape_and_sanitising() -> None:
    status, body = errors.error_body(
        400,
        'bad <object at 0x7f00deadbeef> in /work/main/vl_serve/media.py\n  File "/x.py", line 3, in f',
        "messages",
    )
    err = json.loads(body)
    assert status == 400
    assert set(err) == {"error"}
    assert err["error"]["type"] == "BadRequestError"
    assert err["error"]["code"] == 400
    assert err["error"]["param"] == "messages"
    for leak in ("0x7f", "/work/", "File ", "line 3"):
        assert leak not in err["error"]["message"]
    assert errors.error_body(403, "no")[1].count(b"PermissionDeniedError") == 1
    assert errors.error_body(99, "odd")[0] == 400


# --- through ASGI, with a vLLM-like app ---------------------------------------------------------


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    messages: list[Any]
    stream: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    thinking_token_budget: int | None = None


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt: str


# A vLLM error built from exception text: Pillow's, for an image it cannot identify.
LEAKY_MESSAGE = (
    "Failed to load image: cannot identify image file <_io.BytesIO object at 0x7f3c2a1b9e50> "
    "(/usr/lib/python3/site-packages/vllm/multimodal/image.py)\nTraceback (most recent call "
    'last):\n  File "/usr/lib/python3/site-packages/PIL/Image.py", line 3498, in open\n'
    "    raise UnidentifiedImageError(msg)"
)


def vllm_like_app() -> FastAPI:
    app = FastAPI()
    app.state.seen = []

    def error(status: int, message: str) -> JSONResponse:
        phrase = HTTPStatus(status).phrase
        info = {"message": message, "type": phrase, "param": None, "code": status}
        return JSONResponse({"error": info}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, f"{len(exc.errors())} validation errors")

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest, raw: Request) -> Any:
        app.state.seen.append(await raw.body())
        if getattr(request, "user", None) == "leak":
            return error(400, LEAKY_MESSAGE)
        if request.stream:

            async def events() -> Iterator[bytes]:  # type: ignore[misc]
                yield b": keep-alive\n\n"
                for event in STREAM_EVENTS:
                    yield b"data: " + compact(event) + b"\n\n"
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(message_body(REASONING, n=2))

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest, raw: Request) -> Any:
        app.state.seen.append(await raw.body())
        if request.prompt == "leak":
            return error(400, LEAKY_MESSAGE)
        return JSONResponse({"choices": [{"index": 0, "text": "ok", "reasoning": None}]})

    @app.post("/tokenize")
    async def tokenize(raw: Request) -> Any:
        app.state.seen.append(await raw.body())
        if b"leak" in app.state.seen[-1]:
            return error(500, LEAKY_MESSAGE)
        return JSONResponse({"tokens": [1], "reasoning": "untouched"})

    return app


def fake_media() -> types.ModuleType:
    module = types.ModuleType("vl_serve.media")
    module.calls = []  # type: ignore[attr-defined]

    async def prepare_request(body: dict[str, Any], settings: dict[str, Any]) -> bool:
        module.calls.append(body)  # type: ignore[attr-defined]
        changed = False
        for message in body.get("messages", []):
            for item in message.get("content", []) if isinstance(message, dict) else []:
                if not isinstance(item, dict) or item.get("type") != "image":
                    continue
                if item["image"] == "http://blocked.example/x.png":
                    raise RequestError(
                        403,
                        "Domain blocked.example is not allowed.",
                        "messages.0.content.0",
                        "domain_not_allowed",
                    )
                if item["image"] == "boom":
                    raise RuntimeError("bug at 0x7f0012345678 in /work/main/vl_serve/media.py")
                url = item.pop("image")
                item.update(type="image_url", image_url={"url": url})
                changed = True
        return changed

    module.prepare_request = prepare_request  # type: ignore[attr-defined]
    return module


def client(
    field: str = "both", media: types.ModuleType | None = None, parser: str | None = "qwen3_vl"
) -> tuple[TestClient, FastAPI, DialectMiddleware]:
    inner = vllm_like_app()
    mw = DialectMiddleware(inner, settings=settings(field, parser))
    mw.media = media
    return TestClient(mw), inner, mw


def assert_error(
    resp: Any, status: int, param: str | None, fragment: str, code: str | int | None = None
) -> None:
    """An OpenAI-shaped error; ``code`` None: vLLM's own answer (the status as its code)."""
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert int(resp.headers["content-length"]) == len(resp.content)
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == (status if code is None else code)
    assert body["error"]["param"] == param
    assert fragment in body["error"]["message"]
    for leak in ("Traceback", "0x7f", "/work/", ".py"):
        assert leak not in body["error"]["message"]


def wording_wrong_type() -> str:
    return client_message("'int' object is not iterable")


SCRUBBED = [
    # (body, scrubbed body or None for "the same bytes object")
    (
        {"error": {"message": "x at 0x7f00aa in /usr/lib/a.py", "type": "T", "param": None}},
        {"error": {"message": "x in <path>", "type": "T", "param": None}},
    ),
    (
        {"object": "error", "message": "bad <obj at 0xdeadbeef>"},
        {"object": "error", "message": "bad <obj>"},
    ),
    ({"error": {"message": "The model `x` does not exist.", "code": 404}}, None),
    # Starlette's and vLLM's bare error shapes become vLLM's error shape.
    (
        {"detail": "Not Found"},
        {"error": {"message": "Not Found", "type": "BadRequestError", "param": None, "code": 400}},
    ),
    (
        {"error": "Unauthorized"},
        {
            "error": {
                "message": "Unauthorized",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
    ),
    # Python's own wording for a wrongly typed value becomes a sentence about the request.
    (
        {"error": {"message": "'NoneType' object is not iterable", "code": 400}},
        {"error": {"message": wording_wrong_type(), "code": 400}},
    ),
    ([1, 2], None),
]


@pytest.mark.parametrize(("doc", "expected"), SCRUBBED)
def test_scrub_error_body(doc: Any, expected: Any) -> None:
    body = compact(doc)
    out = errors.scrub_error_body(body)
    if expected is None:
        assert out is body
    else:
        assert json.loads(out) == expected
    assert errors.scrub_error_body(b"not json {") == b"not json {"


@pytest.mark.parametrize(
    ("path", "body", "field", "status"),
    [
        ("/v1/chat/completions", {"messages": MSG, "user": "leak"}, "both", 400),
        ("/v1/chat/completions", {"messages": MSG, "user": "leak", "stream": True}, "both", 400),
        ("/v1/chat/completions", {"messages": MSG, "user": "leak"}, "reasoning_content", 400),
        ("/v1/chat/completions", {"messages": MSG, "user": "leak"}, "reasoning", 400),
        ("/v1/completions", {"prompt": "leak"}, "both", 400),
        ("/tokenize", {"prompt": "leak"}, "both", 500),
    ],
    ids=["chat", "chat-stream", "chat-rename", "chat-field-reasoning", "completions", "other-path"],
)
def test_asgi_vllm_errors_are_scrubbed(
    path: str, body: dict[str, Any], field: str, status: int
) -> None:
    tc, inner, _ = client(field)
    resp = tc.post(path, json=body)
    assert_error(resp, status, None, "Failed to load image: cannot identify image file")
    assert "<path>" in resp.json()["error"]["message"]
    assert len(inner.state.seen) == 1  # vLLM's answer, scrubbed: not one of ours
    ok = tc.post(path, json={**body, "user": "fine", "prompt": "fine"})
    assert ok.status_code == 200  # and the server goes on


def test_asgi_request_rewrite_reaches_the_app() -> None:
    tc, inner, _ = client()
    body = {"messages": MSG, "metadata": {"enable_thinking": False}, "reasoning_max_tokens": 9}
    resp = tc.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    seen = json.loads(inner.state.seen[-1])
    assert seen == {
        "messages": MSG,
        "chat_template_kwargs": {"enable_thinking": False},
        "thinking_token_budget": 9,
    }


def test_asgi_body_without_markers_is_the_same_bytes() -> None:
    tc, inner, _ = client()
    raw = b'{"messages":[{"role":"user","content":"hi"}],"temperature":0}'
    tc.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert inner.state.seen[-1] == raw


@pytest.mark.parametrize(("extra", "param", "message"), REFUSED)
def test_asgi_refused_requests_get_openai_400(
    extra: dict[str, Any], param: str, message: str
) -> None:
    tc, inner, _ = client()
    resp = tc.post("/v1/chat/completions", json={"messages": MSG, **extra})
    assert_error(resp, 400, param, message, "invalid_parameter")
    assert resp.json()["error"]["type"] == "BadRequestError"
    assert inner.state.seen == []  # vLLM never got to work on it


def test_asgi_json_that_only_python_json_reads() -> None:
    # NaN is not JSON, but vLLM's json.loads takes it: the rewrite must keep it.
    tc, inner, _ = client()
    raw = b'{"messages":[],"temperature":NaN,"enable_thinking":false}'
    tc.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert inner.state.seen[-1] == (
        b'{"messages":[],"temperature":NaN,"chat_template_kwargs":{"enable_thinking":false}}'
    )


def test_asgi_malformed_json_is_refused_before_the_app() -> None:
    tc, inner, _ = client()
    raw = b'{"messages": [], "enable_thinking": tru'
    resp = tc.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(resp, 400, None, "not valid UTF-8 JSON", "invalid_json")
    assert inner.state.seen == []


def test_asgi_body_of_another_content_type_is_checked_all_the_same() -> None:
    # vLLM refuses the content type on its JSON routes, but routes that read JSON without
    # looking at it exist (the dev routes): the same checks hold whatever the header says.
    tc, inner, _ = client()
    raw = b'{"messages": [], "enable_thinking": "yes"}'
    resp = tc.post("/v1/chat/completions", content=raw, headers={"content-type": "text/plain"})
    assert_error(resp, 400, "enable_thinking", "boolean", "invalid_parameter")
    assert inner.state.seen == []


@pytest.mark.parametrize("field", ["both", "reasoning_content", "reasoning"])
def test_asgi_non_streaming_response(field: str) -> None:
    tc, _, _ = client(field)
    resp = tc.post("/v1/chat/completions", json={"messages": MSG, "enable_thinking": True})
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content)
    got = resp.json()
    want = message_body(REASONING, n=2)
    if field != "reasoning":
        want = add_alias(want, field == "both")
    want["response"] = CONTENT  # the tutorial clients' field (clients.response_field)
    assert got == want
    assert list(got["choices"][0]["message"]) == list(want["choices"][0]["message"])


@pytest.mark.parametrize("field", ["both", "reasoning_content", "reasoning"])
def test_asgi_streaming_response(field: str) -> None:
    tc, _, _ = client(field)
    with tc.stream("POST", "/v1/chat/completions", json={"messages": MSG, "stream": True}) as resp:
        data = b"".join(resp.iter_bytes())
    want = sse(STREAM_EVENTS) if field == "reasoning" else expected_stream(field == "both")
    assert data == want


def test_asgi_completions_and_other_paths() -> None:
    tc, inner, _ = client()
    resp = tc.post(
        "/v1/completions", json={"prompt": "x", "reasoning_max_tokens": 3, "enable_thinking": False}
    )
    assert resp.status_code == 200
    assert json.loads(inner.state.seen[-1]) == {"prompt": "x", "thinking_token_budget": 3}
    assert "reasoning_content" not in resp.text  # no chat message on this route
    raw = b'{"prompt": "x", "enable_thinking": null}'
    resp = tc.post("/tokenize", content=raw, headers={"content-type": "application/json"})
    assert resp.json() == {"tokens": [1], "reasoning": "untouched"}  # answers not rewritten
    assert json.loads(inner.state.seen[-1]) == {"prompt": "x"}  # the dialect: a completion body


def test_asgi_media_hook() -> None:
    media = fake_media()
    tc, inner, _ = client(media=media)
    item = {"type": "image", "image": "http://ok.example/a.png"}
    resp = tc.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [item]}]})
    assert resp.status_code == 200
    seen = json.loads(inner.state.seen[-1])
    assert seen["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "http://ok.example/a.png"},
    }

    blocked = {"type": "image", "image": "http://blocked.example/x.png"}
    resp = tc.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": [blocked]}]}
    )
    assert_error(resp, 403, "messages.0.content.0", "not allowed", "domain_not_allowed")
    assert resp.json()["error"]["type"] == "PermissionDeniedError"

    resp = tc.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": [{"type": "image", "image": "boom"}]}]},
    )
    assert_error(resp, 500, None, "Internal error", "internal_error")
    assert len(inner.state.seen) == 1

    calls = len(media.calls)  # type: ignore[attr-defined]
    tc.post("/v1/chat/completions", json={"messages": MSG})
    assert len(media.calls) == calls  # type: ignore[attr-defined]  # no media bytes: no call


def test_asgi_auth_answers_before_any_parsing_or_fetching() -> None:
    media = fake_media()
    inner = vllm_like_app()

    @inner.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Any:
        if request.headers.get("authorization") != "Bearer k":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return await call_next(request)

    mw = DialectMiddleware(inner, settings=settings())
    mw.media = media
    tc = TestClient(mw)
    bad = {
        "messages": [{"role": "user", "content": [{"type": "image", "image": "http://a/b"}]}],
        "enable_thinking": "yes",
    }
    assert tc.post("/v1/chat/completions", json=bad).status_code == 401
    assert media.calls == []  # type: ignore[attr-defined]
    resp = tc.post("/v1/chat/completions", json=bad, headers={"authorization": "Bearer k"})
    assert_error(resp, 400, "enable_thinking", "boolean", "invalid_parameter")


def test_add_middleware_like_vllm_reads_runtime_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.ENV, runtime.encode(settings("reasoning_content")))
    runtime.settings.cache_clear()
    try:
        app = vllm_like_app()
        app.add_middleware(DialectMiddleware)  # what vLLM does with --middleware
        resp = TestClient(app).post("/v1/chat/completions", json={"messages": MSG})
        message = resp.json()["choices"][0]["message"]
        assert "reasoning" not in message and message["reasoning_content"] == REASONING
    finally:
        runtime.settings.cache_clear()


# --- ASGI edge cases, driven by hand ------------------------------------------------------------


def drive(
    mw: DialectMiddleware,
    body_parts: list[bytes],
    path: str = "/v1/chat/completions",
    root_path: str = "",
) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": root_path,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(sum(map(len, body_parts))).encode()),
        ],
    }
    incoming = [
        {"type": "http.request", "body": part, "more_body": i < len(body_parts) - 1}
        for i, part in enumerate(body_parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(mw(scope, receive, send))
    return sent


def raw_app(parts: list[bytes], content_type: bytes, seen: list[Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((body, dict(scope["headers"])))
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(sum(map(len, parts))).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, part in enumerate(parts):
            await send(
                {"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1}
            )

    return app


def test_raw_asgi_split_request_and_split_json_response() -> None:
    seen: list[Any] = []
    body = compact(message_body(REASONING))
    parts = [body[:7], body[7:100], body[100:]]
    mw = DialectMiddleware(raw_app(parts, b"application/json", seen), settings=settings())
    request = compact({"messages": MSG, "enable_thinking": False})
    sent = drive(mw, [request[:5], request[5:]])
    got_body, got_headers = seen[0]
    assert json.loads(got_body)["chat_template_kwargs"] == {"enable_thinking": False}
    assert got_headers[b"content-length"] == str(len(got_body)).encode()
    start, *bodies = sent
    out = b"".join(m["body"] for m in bodies)
    assert out == compact({**add_alias(message_body(REASONING), True), "response": CONTENT})
    assert dict(start["headers"])[b"content-length"] == str(len(out)).encode()


def test_raw_asgi_streaming_keeps_one_message_per_event() -> None:
    seen: list[Any] = []
    events = [b"data: " + compact(event) + b"\n\n" for event in STREAM_EVENTS]
    mw = DialectMiddleware(raw_app(events, b"text/event-stream", seen), settings=settings())
    sent = drive(mw, [compact({"messages": MSG, "stream": True})])
    bodies = [m["body"] for m in sent[1:]]
    assert len(bodies) == len(events)
    assert bodies[0] is events[0]  # untouched chunks are the very same bytes
    assert b"".join(bodies) == expected_stream(True).removeprefix(b": keep-alive\n\n").removesuffix(
        b"data: [DONE]\n\n"
    )


def test_raw_asgi_root_path_and_unrelated_paths() -> None:
    seen: list[Any] = []
    mw = DialectMiddleware(raw_app([b"{}"], b"application/json", seen), settings=settings())
    request = compact({"messages": MSG, "enable_thinking": True})
    for path in ("/api/v1/chat/completions", "/api/v1/chat/completions/batch"):
        drive(mw, [request], path=path, root_path="/api")
        assert json.loads(seen[-1][0])["chat_template_kwargs"] == {"enable_thinking": True}
    for path in ("/api/v1/chat/completionsX", "/api/v1/responses"):
        drive(mw, [request], path=path, root_path="/api")
        assert seen[-1][0] == request  # no dialect on routes of other shapes
