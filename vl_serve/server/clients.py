"""Clients of other servers, met where they differ: routes, model names, per-client fields, answers.

:meth:`Clients.enter` runs first for every HTTP request (it sees the path before anything else):
it serves the tutorial's ``GET /`` itself, gives ``GET /health`` its JSON body
(:mod:`vl_serve.server.tutorial`), maps Qianfan's ``/v2`` routes (:mod:`vl_serve.server.qianfan`)
and ``POST /generate`` onto vLLM's own, and says how a non-streamed chat answer is reshaped.
:meth:`Clients.prepare` runs on each parsed chat or completion body: the model-name policy
(:mod:`vl_serve.server.model_names`), Qianfan's fields on its routes, and ``/generate``'s
one-answer rule. The dialect each request speaks (``openai``, ``fastdeploy``, ``qianfan``,
``tutorial``) and its thinking switch are written to ``scope["vl_serve"]`` when there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from vl_serve.server import dialect, qianfan, tutorial
from vl_serve.server.asgi import Message, Scope, Send, route_path
from vl_serve.server.errors import RequestError
from vl_serve.server.model_names import PLACEHOLDERS, ModelNames
from vl_serve.server.shapes import CHAT_PATH

OPENAI: Final = "openai"
FASTDEPLOY: Final = "fastdeploy"
QIANFAN: Final = "qianfan"
TUTORIAL: Final = "tutorial"
GENERATE_PATH: Final = "/generate"


def note(scope: Scope, key: str, value: Any) -> None:
    """Write ``key`` into the request's info dict, when the outer layer gave it one."""
    info = scope.get("vl_serve")
    if isinstance(info, dict):
        info[key] = value


def _with_path(scope: Scope, path: str) -> Scope:
    """A copy of ``scope`` that reaches ``path`` (below the same ``root_path``)."""
    full = scope.get("root_path", "") + path
    return {**scope, "path": full, "raw_path": full.encode()}


class Entry:
    """How one request is met: the scope and ``send`` to go on with, and what to do with it."""

    __slots__ = ("dialect", "finish", "ignored", "one_answer", "raw_send", "reply", "scope", "send")

    def __init__(self, scope: Scope, send: Send, dialect: str | None = None) -> None:
        self.scope = scope
        self.send = send
        self.raw_send = send
        self.dialect = dialect  # None: decided from the body
        self.finish: Callable[[bytes], bytes] | None = None  # non-streamed 200 answer rewrite
        self.reply: bytes | None = None  # answered here with this JSON body
        self.ignored: list[str] = []  # Qianfan fields ignored (Warning header)
        self.one_answer = False  # /generate: no streaming

    def send_with_warning(self, message: Message) -> Any:
        if message["type"] == "http.response.start" and self.ignored:
            headers = list(message.get("headers", ()))
            headers.append(qianfan.warning_header(self.ignored))
            message["headers"] = headers
        return self.raw_send(message)


class Clients:
    """The client-compatibility settings of one server (``clients`` and the served name)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        section = settings.get("clients") or {}
        self.served: str | None = settings.get("served_model_name")
        self.names = ModelNames(section.get("model_names", "lenient"), self.served)
        self.response_field: bool = section.get("response_field", True)
        reasoning = settings.get("reasoning") or {}
        self.reasoning_parser: str | None = reasoning.get("parser")
        self.default_thinking: bool | None = reasoning.get("default_enable_thinking")

    def enter(self, scope: Scope, send: Send) -> Entry:
        entry = self._entry(scope, send)
        if entry.dialect is not None:
            note(scope, "dialect", entry.dialect)
        return entry

    def _entry(self, scope: Scope, send: Send) -> Entry:
        method, path = scope["method"], route_path(scope)
        if path == "/health" and method == "GET":
            return Entry(scope, tutorial.HealthBody(send, self.served))
        if path == "/" and method == "GET":
            entry = Entry(scope, send, TUTORIAL)
            entry.reply = tutorial.root_body(self.served)
            return entry
        target = qianfan.ROUTES.get((method, path))
        if target is not None:
            entry = Entry(_with_path(scope, target), send, QIANFAN)
            entry.send = entry.send_with_warning
            if target == CHAT_PATH and self.response_field:
                entry.finish = tutorial.add_response
            return entry
        if path == GENERATE_PATH and method == "POST":
            entry = Entry(_with_path(scope, CHAT_PATH), send, TUTORIAL)
            entry.finish = tutorial.generate_answer
            entry.one_answer = True
            return entry
        entry = Entry(scope, send)
        if path == CHAT_PATH and method == "POST" and self.response_field:
            entry.finish = tutorial.add_response
        return entry

    def prepare(self, req: dict[str, Any], entry: Entry | None) -> bool:
        """Rewrite a parsed chat or completion body in place; True if anything changed."""
        placeholder = req.get("model") in PLACEHOLDERS
        changed = self.names.apply(req)
        if entry is None:
            return changed
        if entry.dialect == QIANFAN:
            before = list(req)
            entry.ignored = qianfan.rewrite_request(req)
            changed = changed or list(req) != before
        elif entry.one_answer and req.get("stream"):
            raise RequestError(
                400,
                "POST /generate answers with one JSON object; send `stream: true` to "
                "/v1/chat/completions instead.",
                "stream",
                "invalid_parameter",
            )
        elif entry.dialect is None and placeholder:
            entry.dialect = FASTDEPLOY
        return changed

    def settle(self, req: dict[str, Any], exchange: Any, chat: bool, rewritten: bool) -> bool:
        """After the dialect rewrite: the structured-output rule (:func:`dialect.answer_directly`),
        and the request's dialect and thinking switch noted; True if the body changed."""
        changed = chat and dialect.answer_directly(
            req, self.reasoning_parser, self.default_thinking
        )
        entry = exchange.client
        name = entry.dialect if entry is not None else None
        scope = exchange.scope
        note(scope, "dialect", name or (FASTDEPLOY if rewritten else OPENAI))
        kwargs = req.get("chat_template_kwargs")
        thinking = kwargs.get("enable_thinking") if isinstance(kwargs, dict) else None
        if not isinstance(thinking, bool):
            thinking = self.default_thinking if chat else None
        note(scope, "thinking", thinking)
        return changed
