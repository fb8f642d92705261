"""Other servers' clients met in the middleware: model names, Qianfan, the tutorial's shapes."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from vl_serve.server import qianfan, tutorial
from vl_serve.server.dialect import answer_directly
from vl_serve.server.errors import RequestError
from vl_serve.server.middleware import DialectMiddleware
from vl_serve.server.model_names import ModelNames

MSG = [{"role": "user", "content": "hi"}]
CONTENT = "It is 4."
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "tiny",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": CONTENT}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def compact(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# --- model names ----------------------------------------------------------------------------

NAMES = [
    pytest.param("lenient", {"model": "null"}, {"model": "tiny"}, id="lenient-null"),
    pytest.param("lenient", {"model": "default"}, {"model": "tiny"}, id="lenient-default"),
    pytest.param("lenient", {"model": "tiny"}, {"model": "tiny"}, id="lenient-served"),
    pytest.param("lenient", {"model": "other"}, {"model": "other"}, id="lenient-unknown-to-vllm"),
    pytest.param("lenient", {}, {}, id="lenient-no-model"),
    pytest.param("strict", {"model": "null"}, {"model": "null"}, id="strict-null-to-vllm"),
    pytest.param("strict", {"model": "tiny"}, {"model": "tiny"}, id="strict-served"),
]


@pytest.mark.parametrize(("policy", "req", "expected"), NAMES)
def test_model_names(policy: str, req: dict[str, Any], expected: dict[str, Any]) -> None:
    changed = req != expected
    req = dict(req)
    assert ModelNames(policy, "tiny").apply(req) is changed
    assert req == expected


def test_strict_model_names_require_the_field() -> None:
    with pytest.raises(RequestError) as err:
        ModelNames("strict", "tiny").apply({"messages": MSG})
    assert (err.value.status, err.value.param, err.value.code) == (
        400,
        "model",
        "missing_parameter",
    )


# --- Qianfan fields --------------------------------------------------------------------------

QIANFAN_OK = [
    pytest.param({"penalty_score": 1.5}, {"repetition_penalty": 1.5}, [], id="penalty-mapped"),
    pytest.param(
        {"penalty_score": 2, "repetition_penalty": 1.1},
        {"repetition_penalty": 1.1},
        [],
        id="penalty-native-wins",
    ),
    pytest.param({"web_search": {"enable": False}}, {}, [], id="search-off-dropped"),
    pytest.param({"web_search": None}, {}, [], id="search-null-dropped"),
    pytest.param({"user_id": "u1", "safety": {}}, {}, ["user_id", "safety"], id="ignored"),
    pytest.param({"max_completion_tokens": 9}, {"max_completion_tokens": 9}, [], id="openai-kept"),
]


@pytest.mark.parametrize(("extra", "expected", "ignored"), QIANFAN_OK)
def test_qianfan_fields(
    extra: dict[str, Any], expected: dict[str, Any], ignored: list[str]
) -> None:
    req = copy.deepcopy({"messages": MSG, **extra})
    assert qianfan.rewrite_request(req) == ignored
    assert req == {"messages": MSG, **expected}


QIANFAN_REFUSED = [
    pytest.param(
        {"web_search": {"enable": True}}, "web_search", "unsupported_parameter", id="search"
    ),
    pytest.param({"web_search": "yes"}, "web_search", "invalid_type", id="search-type"),
    pytest.param({"penalty_score": 3}, "penalty_score", "invalid_parameter", id="penalty-range"),
    pytest.param({"penalty_score": True}, "penalty_score", "invalid_parameter", id="penalty-bool"),
    pytest.param({"penalty_score": "1"}, "penalty_score", "invalid_parameter", id="penalty-str"),
]


@pytest.mark.parametrize(("extra", "param", "code"), QIANFAN_REFUSED)
def test_qianfan_fields_refused(extra: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(RequestError) as err:
        qianfan.rewrite_request({"messages": MSG, **extra})
    assert (err.value.status, err.value.param, err.value.code) == (400, param, code)


# --- structured output: a direct answer --------------------------------------------------------

DIRECT = [
    pytest.param({"response_format": {"type": "json_object"}}, True, id="json_object"),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {}}}, True, id="schema"
    ),
    pytest.param({"structured_outputs": {"regex": "a+"}}, True, id="structured_outputs"),
    pytest.param({"response_format": {"type": "text"}}, False, id="text"),
    pytest.param({}, False, id="no-grammar"),
    pytest.param(
        {"structured_outputs": {"regex": "a"}, "chat_template_kwargs": {"enable_thinking": True}},
        False,
        id="thinking-asked",
    ),
    pytest.param(
        {"structured_outputs": {"regex": "a"}, "chat_template_kwargs": {"enable_thinking": None}},
        False,
        id="explicit-null-leaves-it-to-the-model",
    ),
]


@pytest.mark.parametrize(("extra", "changed"), DIRECT)
def test_answer_directly(extra: dict[str, Any], changed: bool) -> None:
    req = copy.deepcopy({"messages": MSG, **extra})
    assert answer_directly(req, "qwen3_vl", None) is changed
    if changed:
        assert req["chat_template_kwargs"] == {"enable_thinking": False}
    grammar = {"messages": MSG, "structured_outputs": {"regex": "a"}}
    assert not answer_directly(dict(grammar), "ernie45_vl", None)
    assert not answer_directly(dict(grammar), "qwen3_vl", True)  # the server default decides


# --- tutorial shapes (pure) ------------------------------------------------------------------


def test_tutorial_answer_shapes() -> None:
    body = compact(ANSWER)
    assert json.loads(tutorial.add_response(body)) == {**ANSWER, "response": CONTENT}
    assert tutorial.add_response(body).startswith(body[:-1])  # vLLM's bytes kept
    assert json.loads(tutorial.generate_answer(body)) == {"response": CONTENT}
    no_content = {**ANSWER, "choices": [{"index": 0, "message": {"content": None}}]}
    assert json.loads(tutorial.add_response(compact(no_content)))["response"] == ""
    for other in (b"not json", b'{"data": []}'):
        assert tutorial.add_response(other) is other
        assert tutorial.generate_answer(other) is other


# --- through the middleware ------------------------------------------------------------------


def settings(**clients: Any) -> dict[str, Any]:
    return {
        "reasoning": {"parser": None, "default_enable_thinking": None, "response_field": "both"},
        "media": {},
        "limit_mm_per_prompt": None,
        "served_model_name": "tiny",
        "clients": clients,
    }


class App:
    """Stands in for vLLM: records what reaches it and answers ``status`` with ``body``."""

    def __init__(self, status: int = 200, body: bytes = b"", media: bytes = b"application/json"):
        self.status, self.body, self.media = status, body, media
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        if scope["method"] == "POST":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        self.seen.append((scope["path"], body))
        headers = [(b"content-type", self.media), (b"content-length", b"%d" % len(self.body))]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def call(
    mw: DialectMiddleware,
    method: str,
    path: str,
    body: Any = None,
    info: dict[str, Any] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    raw = b"" if body is None else compact(body)
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))],
    }
    if info is not None:
        scope["vl_serve"] = info
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(mw(scope, receive, send))
    start = sent[0]
    out = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start.get("headers", ())), out


@pytest.mark.parametrize(("status", "word"), [(200, "healthy"), (503, "unhealthy")])
def test_health_is_json_with_vllms_status(status: int, word: str) -> None:
    mw = DialectMiddleware(App(status, b"", b"text/plain"), settings=settings())
    got, headers, body = call(mw, "GET", "/health")
    assert got == status
    assert json.loads(body) == {"status": word, "model": "tiny"}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == b"%d" % len(body)


def test_root_is_answered_here() -> None:
    app = App()
    info: dict[str, Any] = {}
    status, _, body = call(DialectMiddleware(app, settings=settings()), "GET", "/", info=info)
    assert status == 200 and json.loads(body)["model"] == "tiny"
    assert app.seen == []
    assert info == {"dialect": "tutorial"}


def test_qianfan_route_reaches_vllms_chat_route() -> None:
    app = App(body=compact(ANSWER))
    info: dict[str, Any] = {}
    req = {"model": "ernie", "messages": MSG, "penalty_score": 1.2, "user_id": "u"}
    status, headers, body = call(
        DialectMiddleware(app, settings=settings()), "POST", "/v2/chat/completions", req, info
    )
    assert status == 200
    path, seen = app.seen[0]
    assert path == "/v1/chat/completions"
    assert json.loads(seen) == {"model": "ernie", "messages": MSG, "repetition_penalty": 1.2}
    assert headers[b"warning"] == b'299 vl-serve "ignored Qianfan field(s): user_id"'
    assert json.loads(body)["choices"][0]["message"]["content"] == CONTENT
    assert info == {"dialect": "qianfan", "thinking": None}
    status, _, _ = call(DialectMiddleware(App(), settings=settings()), "GET", "/v2/models")
    assert status == 200


def test_qianfan_search_refused_before_vllm() -> None:
    app = App(body=compact(ANSWER))
    req = {"messages": MSG, "web_search": {"enable": True}}
    status, _, body = call(
        DialectMiddleware(app, settings=settings()), "POST", "/v2/chat/completions", req
    )
    assert status == 400 and json.loads(body)["error"]["param"] == "web_search"
    assert app.seen == []


def test_generate_answers_response_only() -> None:
    app = App(body=compact(ANSWER))
    mw = DialectMiddleware(app, settings=settings())
    status, _, body = call(mw, "POST", "/generate", {"messages": MSG, "max_tokens": 5})
    assert (status, json.loads(body)) == (200, {"response": CONTENT})
    assert app.seen[0][0] == "/v1/chat/completions"
    status, _, body = call(mw, "POST", "/generate", {"messages": MSG, "stream": True})
    assert status == 400 and json.loads(body)["error"]["param"] == "stream"


@pytest.mark.parametrize("on", [True, False], ids=["response_field", "switched_off"])
def test_top_level_response_switch(on: bool) -> None:
    mw = DialectMiddleware(App(body=compact(ANSWER)), settings=settings(response_field=on))
    status, _, body = call(mw, "POST", "/v1/chat/completions", {"messages": MSG})
    assert status == 200
    assert json.loads(body) == ({**ANSWER, "response": CONTENT} if on else ANSWER)


DIALECTS = [
    pytest.param({"model": "null", "messages": MSG}, "tiny", "fastdeploy", None, id="null"),
    pytest.param({"messages": MSG, "enable_thinking": True}, None, "fastdeploy", True, id="switch"),
    pytest.param({"model": "tiny", "messages": MSG}, "tiny", "openai", None, id="openai"),
    pytest.param(
        {"messages": MSG, "chat_template_kwargs": {"enable_thinking": False}},
        None,
        "openai",
        False,
        id="openai-off",
    ),
]


@pytest.mark.parametrize(("req", "model", "dialect", "thinking"), DIALECTS)
def test_model_name_and_dialect_noted(
    req: dict[str, Any], model: str | None, dialect: str, thinking: bool | None
) -> None:
    app = App(body=compact(ANSWER))
    info: dict[str, Any] = {}
    call(DialectMiddleware(app, settings=settings()), "POST", "/v1/chat/completions", req, info)
    assert json.loads(app.seen[0][1]).get("model") == model
    assert info == {"dialect": dialect, "thinking": thinking}


def test_strict_names_refuse_a_missing_model() -> None:
    app = App(body=compact(ANSWER))
    mw = DialectMiddleware(app, settings=settings(model_names="strict"))
    status, _, body = call(mw, "POST", "/v1/chat/completions", {"messages": MSG})
    assert status == 400 and json.loads(body)["error"]["code"] == "missing_parameter"
    status, _, _ = call(mw, "POST", "/v1/chat/completions", {"model": "null", "messages": MSG})
    assert status == 200 and json.loads(app.seen[0][1])["model"] == "null"  # vLLM decides
