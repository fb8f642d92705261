"""Request bodies on every route: size limit, hostile JSON, n/best_of caps, media per route, codes.

A raw ASGI app stands in for vLLM: it reads the whole body, records it and answers 200 ``{}``, so
a refusal shows as an error that only the middleware gives (the app saw nothing). Each table row
is sent as a plain and as a streaming request (``"stream": true``): a refusal comes back the same,
an OpenAI-shaped JSON error with a string ``code``, before any work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers.media_files import data_url, png_bytes
from vl_serve.server.middleware import DialectMiddleware

LIMIT = 64 * 1024
IMAGE = data_url(png_bytes(64, 64))
USER = [{"role": "user", "content": "hi"}]


def settings(**media: Any) -> dict[str, Any]:
    return {
        "reasoning": {"parser": None, "default_enable_thinking": None, "response_field": "both"},
        "media": {"max_request_bytes": LIMIT, **media},
        "limit_mm_per_prompt": {"image": 1},
        "served_model_name": "tiny",
        "server": {"max_n": 8, "max_best_of": 8, "max_json_depth": 64},
    }


class FakeVLLM:
    """The stand-in for vLLM: records what reached it; a few paths answer like vLLM does."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.reads = 0  # receive() calls that reached the app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        body = b""
        if scope["method"] != "GET":
            while True:
                message = await receive()
                self.reads += 1
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        self.seen.append((path, body))
        status: int = 200
        answer: dict[str, Any] = {}
        if path == "/crash":
            raise AttributeError("'int' object has no attribute 'get'")
        if path == "/v1/models":
            card = {"id": "tiny", "object": "model", "root": "/srv/models/tiny-v4", "parent": None}
            answer = {"object": "list", "data": [card]}
        elif path == "/wording":
            status = 400
            message = "'NoneType' object is not iterable"
            answer = {
                "error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}
            }
        elif path == "/detail":
            status, answer = 400, {"detail": "There was an error parsing the body"}
        raw = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw, "more_body": False})


def client(**media: Any) -> tuple[TestClient, FakeVLLM]:
    app = FakeVLLM()
    return TestClient(DialectMiddleware(app, settings=settings(**media))), app


def post(tc: TestClient, path: str, body: bytes) -> Any:
    return tc.post(path, content=body, headers={"content-type": "application/json"})


def assert_refused(
    resp: Any, status: int, code: str | int, param: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code, err
    assert err["param"] == param, err
    for leak in ("Traceback", "/srv/", "/work/", ".py", "object is not", "0x"):
        assert leak not in err["message"]
    return dict(err)


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def as_json(doc: dict[str, Any]) -> Callable[[bool], bytes]:
    return lambda stream: json.dumps({**doc, "stream": stream}).encode()


def raw(text: bytes) -> Callable[[bool], bytes]:
    """A body given as bytes, ``"stream"`` added as its first key."""
    return lambda stream: b'{"stream":' + (b"true" if stream else b"false") + b"," + text[1:]


def image_part(url: str = IMAGE) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def two_images() -> list[dict[str, Any]]:
    return [{"role": "user", "content": [image_part(), image_part()]}]


# fmt: off
REFUSED = [
    # Hostile JSON, on every kind of route.
    pytest.param(
        "/v1/chat/completions",
        raw(b'{"metadata":{},"messages":' + nested(1000).encode() + b"}"),
        400,
        "json_too_deep",
        None,
        id="deep_1000_with_metadata",
    ),
    pytest.param(
        "/v1/chat/completions",
        raw(b'{"messages":[{"role":"user","content":[' + nested(70, '{"type":"image_url"}').encode() + b"]}]}"),
        400,
        "json_too_deep",
        None,
        id="deep_with_image_part",
    ),
    pytest.param("/invocations", raw(b'{"x":' + nested(65).encode() + b"}"), 400, "json_too_deep", None, id="deep_65_invocations"),
    pytest.param("/v1/responses", raw(b'{"x":' + nested(300).encode() + b"}"), 400, "json_too_deep", None, id="deep_300_responses"),
    pytest.param("/tokenize", raw(b'{"prompt":"a","x":' + nested(200).encode() + b"}"), 400, "json_too_deep", None, id="deep_tokenize"),
    pytest.param("/v1/chat/completions", raw(b'{"messages":[{"role":"user","content":"\xff"}]}'), 400, "invalid_json", None, id="invalid_utf8"),
    pytest.param("/v1/completions", raw(b'{"prompt":"\\ud800"}'), 400, "invalid_json", None, id="lone_surrogate"),
    pytest.param("/v1/chat/completions", raw(b'{"messages":[],"max_tokens":1' + b"0" * 5000 + b"}"), 400, "invalid_json", None, id="int_5000_digits"),
    pytest.param("/v1/chat/completions", raw(b'{"messages":[],"messages":[]}'), 400, "duplicate_json_key", None, id="duplicate_top_key"),
    pytest.param("/v1/responses", raw(b'{"input":[{"role":"user","role":"system"}]}'), 400, "duplicate_json_key", None, id="duplicate_nested_key"),
    pytest.param("/v1/chat/completions", raw(b'{"messages":[}'), 400, "invalid_json", None, id="malformed"),
    # Wrong types that vLLM answers with Python's words or a 500.
    pytest.param("/v1/chat/completions", as_json({"messages": None}), 400, "invalid_type", "messages", id="messages_null"),
    pytest.param("/invocations", as_json({"messages": 5}), 400, "invalid_type", "messages", id="invocations_messages_int"),
    pytest.param("/v1/chat/completions", as_json({"messages": USER, "structured_outputs": 5}), 400, "invalid_type", "structured_outputs", id="structured_outputs_int"),
    pytest.param("/v1/completions", as_json({"prompt": "x", "structured_outputs": "x"}), 400, "invalid_type", "structured_outputs", id="completion_structured_outputs"),
    pytest.param("/v1/chat/completions", as_json({"messages": USER, "tools": [{"type": "function"}], "tool_choice": {"type": "function", "function": {"name": "f"}}}), 400, "invalid_type", "tools[0].function.name", id="tools_without_function"),
    pytest.param("/v1/chat/completions", lambda stream: b"[1, 2]", 400, "invalid_type", None, id="top_level_array"),
    pytest.param("/v1/chat/completions", as_json({"messages": USER, "model": "m" * 10_000}), 400, "invalid_parameter", "model", id="model_name_10k"),
    # n and best_of, on every route that could take them.
    pytest.param("/v1/chat/completions", as_json({"messages": USER, "n": 1000}), 400, "integer_above_max_value", "n", id="n_1000"),
    pytest.param("/v1/chat/completions", as_json({"messages": USER, "n": "1000"}), 400, "integer_above_max_value", "n", id="n_as_string"),
    pytest.param("/v1/completions", as_json({"prompt": "x", "best_of": 9}), 400, "integer_above_max_value", "best_of", id="best_of_9"),
    pytest.param("/invocations", as_json({"prompt": "x", "n": 9.0}), 400, "integer_above_max_value", "n", id="invocations_n_float"),
    pytest.param("/v1/chat/completions/batch", as_json({"messages": [USER], "n": 64}), 400, "integer_above_max_value", "n", id="batch_n"),
    pytest.param("/v1/chat/completions/render", as_json({"messages": USER, "n": 64}), 400, "integer_above_max_value", "n", id="render_n"),
    # The media policy on every chat-shaped route (limit_mm_per_prompt.image is 1 here).
    pytest.param("/v1/chat/completions", as_json({"messages": two_images()}), 400, "too_many_media_items", "messages[0].content[1]", id="chat_two_images"),
    pytest.param("/tokenize", as_json({"messages": two_images()}), 400, "too_many_media_items", "messages[0].content[1]", id="tokenize_two_images"),
    pytest.param("/invocations", as_json({"messages": two_images()}), 400, "too_many_media_items", "messages[0].content[1]", id="invocations_two_images"),
    pytest.param("/v1/chat/completions/render", as_json({"messages": two_images()}), 400, "too_many_media_items", "messages[0].content[1]", id="render_two_images"),
    pytest.param("/v1/chat/completions/batch", as_json({"messages": [USER, two_images()]}), 400, "too_many_media_items", "messages[1][0].content[1]", id="batch_second_prompt"),
    pytest.param("/v1/chat/completions", as_json({"messages": [{"role": "user", "content": [image_part("http://127.0.0.1/a.png")]}]}), 400, "media_host_not_allowed", "messages[0].content[0]", id="chat_loopback_url"),
    pytest.param("/v1/chat/completions", as_json({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "uuid": "u", "image_url": "http://127.0.0.1/a.png"}]}]}), 400, "media_host_not_allowed", "messages[0].content[0]", id="text_part_with_uuid_read_as_image"),
    # Routes whose media shapes vl-serve does not read: any media is refused.
    pytest.param("/v1/responses", as_json({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": IMAGE}]}]}), 400, "media_not_supported", "input[0].content[0]", id="responses_input_image"),
    pytest.param("/v1/messages", as_json({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}), 400, "media_not_supported", "messages[0].content[0]", id="anthropic_image_block"),
    pytest.param("/v1/messages/count_tokens", as_json({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": [{"type": "image", "source": {}}]}]}]}), 400, "media_not_supported", "messages[0].content[0].content[0]", id="anthropic_tool_result_image"),
    pytest.param("/v1/systemone", as_json({"images": ["http://example.com/a.png"], "state": "s"}), 400, "media_not_supported", "images", id="systemone_images"),
    pytest.param("/pooling", as_json({"messages": [{"role": "user", "content": [{"image_url": {"url": IMAGE}}]}]}), 400, "media_not_supported", "messages[0].content[0]", id="pooling_typeless_part"),
    pytest.param("/v1/score", as_json({"data_1": {"content": [{"type": "video_url", "video_url": {"url": "x"}}]}}), 400, "media_not_supported", "data_1.content[0]", id="score_video"),
    pytest.param("/inference/v1/generate", as_json({"token_ids": [1], "features": {"kwargs_data": ["AAAA"]}}), 400, "media_not_supported", "features", id="token_in_features"),
    pytest.param("/v1/responses", as_json({"input": "x", "mm_processor_kwargs": {"bogus": 1}}), 400, "invalid_parameter", "mm_processor_kwargs", id="responses_processor_kwargs"),
    pytest.param("/v1/completions", raw(b'{"prompt":"x","mm\\u005fprocessor_kwargs":{"fps":1}}'), 400, "invalid_parameter", "mm_processor_kwargs", id="escaped_processor_kwargs_key"),
]
# fmt: on

# A body of each route whose vLLM request model takes mm_processor_kwargs / media_io_kwargs
# (chat, batch, render, completions, responses, tokenize, pooling, embeddings, score, rerank,
# classify), and of routes whose models do not (Anthropic messages, token-in generate): vLLM
# runs with --trust-request-mm-kwargs, so the middleware is the one gate on all of them.
# fmt: off
KWARGS_ROUTES = [
    pytest.param("/v1/chat/completions", {"messages": USER}, id="chat"),
    pytest.param("/v1/chat/completions/batch", {"messages": [USER, USER]}, id="chat_batch"),
    pytest.param("/v1/chat/completions/render", {"messages": USER}, id="chat_render"),
    pytest.param("/v1/completions", {"prompt": "x"}, id="completions"),
    pytest.param("/v1/completions/render", {"prompt": "x"}, id="completions_render"),
    pytest.param("/invocations", {"messages": USER}, id="invocations_chat"),
    pytest.param("/invocations", {"prompt": "x"}, id="invocations_prompt"),
    pytest.param("/tokenize", {"messages": USER}, id="tokenize_chat"),
    pytest.param("/tokenize", {"prompt": "x"}, id="tokenize_prompt"),
    pytest.param("/v1/responses", {"input": "x"}, id="responses"),
    pytest.param("/pooling", {"messages": USER}, id="pooling_chat"),
    pytest.param("/pooling", {"input": "x"}, id="pooling"),
    pytest.param("/v1/embeddings", {"input": "x"}, id="embeddings"),
    pytest.param("/v1/score", {"data_1": "a", "data_2": "b"}, id="score"),
    pytest.param("/v1/rerank", {"query": "a", "documents": ["b"]}, id="rerank"),
    pytest.param("/classify", {"input": "x"}, id="classify"),
    pytest.param("/v1/messages", {"max_tokens": 1, "messages": USER}, id="anthropic_messages"),
    pytest.param("/inference/v1/generate", {"token_ids": [1]}, id="token_in_generate"),
]
# fmt: on
CLIENT_KWARGS = [
    pytest.param("mm_processor_kwargs", {"fps": 1}, False, id="processor_untrusted"),
    pytest.param("mm_processor_kwargs", {"fps": 1}, True, id="processor_trusted"),
    pytest.param("media_io_kwargs", {"video": {"fps": 1}}, False, id="media_io_untrusted"),
    pytest.param("media_io_kwargs", {"video": {"fps": 1}}, True, id="media_io_trusted"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("key", "value", "trusted"), CLIENT_KWARGS)
@pytest.mark.parametrize(("path", "doc"), KWARGS_ROUTES)
def test_client_mm_kwargs_on_every_route(
    path: str, doc: dict[str, Any], key: str, value: dict[str, Any], trusted: bool, stream: bool
) -> None:
    """mm_processor_kwargs reach vLLM only under media.trust_request_mm_kwargs, media_io_kwargs
    never: the same answer on every route, before vLLM reads the body."""
    tc, app = client(trust_request_mm_kwargs=trusted)
    sent = as_json({**doc, key: value})(stream)
    resp = post(tc, path, sent)
    if key == "mm_processor_kwargs" and trusted:
        assert resp.status_code == 200, resp.text
        assert [(p, json.loads(b)[key]) for p, b in app.seen] == [(path, value)]
        return
    err = assert_refused(resp, 400, "invalid_parameter", key)
    assert app.seen == []
    wording = "disabled on this server" if key == "mm_processor_kwargs" else "not accepted"
    assert wording in err["message"], err


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("path", "body", "status", "code", "param"), REFUSED)
def test_refused_before_vllm(
    path: str,
    body: Callable[[bool], bytes],
    status: int,
    code: str,
    param: str | None,
    stream: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tc, app = client()
    with caplog.at_level(logging.INFO, logger="vl_serve"):
        resp = post(tc, path, body(stream))
    assert_refused(resp, status, code, param)
    assert app.seen == []  # vLLM did no work on it
    assert [r for r in caplog.records if r.name.startswith("vl_serve")] == []  # nothing logged
    assert post(tc, path, b'{"prompt": "x"}').status_code == 200  # and the server goes on


# fmt: off
PASSED = [
    pytest.param("/v1/chat/completions", as_json({"messages": USER, "x": json.loads(nested(63))}), id="depth_64"),
    pytest.param("/v1/chat/completions", as_json({"messages": USER, "n": 8, "best_of": "8"}), id="n_at_cap"),
    pytest.param("/v1/chat/completions", as_json({"messages": [{"role": "user", "content": [image_part()]}]}), id="one_image"),
    pytest.param("/v1/chat/completions/batch", as_json({"messages": [[{"role": "user", "content": [image_part()]}]] * 2}), id="batch_one_image_each"),
    pytest.param("/v1/responses", as_json({"input": "x", "text": {"format": {"type": "json_schema", "schema": {"properties": {"image_url": {"type": "string"}, "image": {"type": "string"}}}}}}), id="responses_schema_named_image"),
    pytest.param("/v1/responses", lambda stream: b"[1]", id="other_route_non_object"),
    pytest.param("/v1/chat/completions", raw(b'{"messages":[],"temperature":NaN}'), id="nan_as_vllm_reads_it"),
]
# fmt: on


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("path", "body"), PASSED)
def test_passed_to_vllm_unchanged(path: str, body: Callable[[bool], bytes], stream: bool) -> None:
    tc, app = client()
    sent = body(stream)
    resp = post(tc, path, sent)
    assert resp.status_code == 200, resp.text
    assert app.seen == [(path, sent)]


def test_error_codes_of_vllm_answers_and_python_wording() -> None:
    tc, _ = client()
    err = assert_refused(post(tc, "/wording", b"{}"), 400, 400)
    assert "wrong type" in err["message"]
    err = assert_refused(post(tc, "/detail", b"{}"), 400, 400)
    assert err["message"] == "There was an error parsing the body"


def test_unhandled_vllm_exception_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    tc, _ = client()
    with caplog.at_level(logging.DEBUG, logger="vl_serve"):
        resp = post(tc, "/crash", b'{"structured_outputs": {}}')
    assert_refused(resp, 500, "internal_error")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert "\n" not in warnings[0].getMessage()


def test_models_list_has_no_server_path() -> None:
    tc, _ = client()
    resp = tc.get("/v1/models")
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert resp.json()["data"][0]["root"] == "tiny"
    assert "/srv/" not in resp.text


# --- the body limit, driven by hand -------------------------------------------------------------


def drive(
    mw: DialectMiddleware, parts: list[bytes], headers: list[tuple[bytes, bytes]], path: str
) -> tuple[list[dict[str, Any]], int]:
    """(messages sent, request messages taken) for one POST whose body arrives as ``parts``."""
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": headers}
    incoming = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    taken = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(mw(scope, receive, send))
    return sent, taken


CHUNK = b" " * 1024
JSON = (b"content-type", b"application/json")
FORM = (b"content-type", b"multipart/form-data; boundary=x")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/audio/transcriptions", "/x"])
@pytest.mark.parametrize("content_type", [JSON, FORM], ids=["json", "form"])
def test_body_limit_chunked(path: str, content_type: tuple[bytes, bytes]) -> None:
    app = FakeVLLM()
    mw = DialectMiddleware(app, settings=settings(max_request_bytes=4096))
    parts = [b'{"messages":[]' + CHUNK] + [CHUNK] * 99 + [b"}"]
    sent, taken = drive(mw, parts, [content_type, (b"transfer-encoding", b"chunked")], path)
    start, body = sent
    assert start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    err = json.loads(body["body"])["error"]
    assert err["code"] == "request_too_large" and "media.max_request_bytes" in err["message"]
    assert taken == 4  # stopped at the chunk that passed 4 KiB: nothing read past the limit
    assert app.seen == []  # no part of the body reached vLLM


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/audio/transcriptions"])
def test_body_limit_content_length(path: str) -> None:
    app = FakeVLLM()
    mw = DialectMiddleware(app, settings=settings(max_request_bytes=4096))
    sent, taken = drive(mw, [CHUNK * 5], [JSON, (b"content-length", b"5120")], path)
    assert sent[0]["status"] == 413 and taken == 0 and app.seen == []  # answered before reading
    sent, taken = drive(mw, [CHUNK * 4], [JSON, (b"content-length", b"4096")], path)
    assert sent[0]["status"] != 413


def test_chunked_body_within_limit_reaches_vllm_whole() -> None:
    app = FakeVLLM()
    mw = DialectMiddleware(app, settings=settings(max_request_bytes=4096))
    body = json.dumps({"messages": USER, "pad": "x" * 3000}).encode()
    parts = [body[i : i + 100] for i in range(0, len(body), 100)]
    sent, _ = drive(mw, parts, [JSON, (b"transfer-encoding", b"chunked")], "/v1/chat/completions")
    assert sent[0]["status"] == 200
    assert app.seen == [("/v1/chat/completions", body)] and app.reads == 1  # one message


@pytest.mark.parametrize(
    ("path", "body", "alias"),
    [
        pytest.param("/invocations", {"messages": USER}, True, id="invocations_chat"),
        pytest.param("/invocations", {"prompt": "x"}, False, id="invocations_completion"),
        pytest.param("/v1/chat/completions/batch", {"messages": [USER]}, True, id="batch"),
        pytest.param("/tokenize", {"messages": USER}, False, id="tokenize"),
    ],
)
def test_reasoning_content_on_routes_answering_chat_completions(
    path: str, body: dict[str, Any], alias: bool
) -> None:
    answer = b'{"choices":[{"index":0,"message":{"content":"a","reasoning":"r"}}]}'

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    resp = TestClient(DialectMiddleware(app, settings=settings())).post(path, json=body)
    message = resp.json()["choices"][0]["message"]
    assert ("reasoning_content" in message) is alias and message["reasoning"] == "r"
