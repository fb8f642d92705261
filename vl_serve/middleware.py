"""ASGI middleware in front of vLLM's API server: FastDeploy/Qianfan dialect and media preparation.

vLLM loads it with ``--middleware vl_serve.middleware.DialectMiddleware`` (0.26 and 0.32 alike:
a class goes to ``app.add_middleware(cls)``, which makes it the outermost user middleware, in
front of vLLM's CORS, API-key and scaling middleware). It is plain ASGI, not BaseHTTPMiddleware.

Cost model, so that it stays invisible in benchmarks:

* Everything but ``POST /v1/chat/completions`` and ``POST /v1/completions`` with a JSON body goes
  straight to vLLM, untouched and unbuffered, except that an error answer to a POST (status 400
  or more, JSON body) is held and scrubbed like the middleware's own errors: no memory address,
  traceback line or server path (``dialect.scrub_error_body``).
* The request body is read lazily, when vLLM's endpoint asks for it, so requests that vLLM turns
  away first (wrong API key, unknown route) cost nothing and never trigger a media fetch. It is
  parsed only when a byte check finds a dialect key or an image/video item (``dialect``), and
  re-serialised only when something changed. Malformed JSON goes on untouched: vLLM answers it.
* Responses: with ``reasoning.response_field: reasoning`` nothing is rewritten. Otherwise a
  non-streaming 200 JSON body gets ``reasoning_content`` by byte splicing (Content-Length is
  recomputed), and SSE chunks are only touched when their bytes contain ``"reasoning":``.

vLLM's own error answers to chat/completions requests are scrubbed the same way. Two kinds never
pass through here: the 500 that vLLM's catch-all ``Exception`` handler writes (Starlette runs it
outside every user middleware) and error events inside a stream already started; vLLM 0.32
sanitises both itself (``sanitize_message``). A refused
request gets vLLM's error shape, ``{"error": {"message", "type", "param", "code"}}``:
the middleware makes the body read fail (so vLLM does no work) and sends its own error in place
of whatever vLLM answers to that.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from types import ModuleType
from typing import Any

from vl_serve import dialect

try:  # a vLLM dependency (0.26 and 0.32); about twice as fast as json both ways
    import msgspec.json as _msgspec_json
except ImportError:  # pragma: no cover
    _msgspec_json = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UNSET: Any = object()


class _Rejected(Exception):
    """Raised from the body read of a refused request; the error response replaces vLLM's."""


def _route_path(scope: Scope) -> str:
    """The path as Starlette's router sees it (``root_path`` removed)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _is_json_error(start: Message) -> bool:
    """Whether a response start begins an error answer with a JSON body (to be scrubbed)."""
    if start.get("status", 200) < 400:
        return False
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _with_length(start: Message, length: int) -> Message:
    value = str(length).encode()
    start["headers"] = [
        (name, value if name.lower() == b"content-length" else v)
        for name, v in start.get("headers", ())
    ]
    return start


class _ErrorScrub:
    """``send`` for requests the middleware does not otherwise touch: an error answer with a JSON
    body is held until complete and passed through :func:`dialect.scrub_error_body`; every other
    message goes straight on."""

    __slots__ = ("parts", "send", "start")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.parts: list[bytes] | None = None

    async def __call__(self, message: Message) -> None:
        parts = self.parts
        if parts is not None and message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert self.start is not None
            body = dialect.scrub_error_body(b"".join(parts))
            self.parts = None
            await self.send(_with_length(self.start, len(body)))
            message["body"] = body
            await self.send(message)
            return
        if message["type"] == "http.response.start" and _is_json_error(message):
            self.start = message
            self.parts = []
            return
        await self.send(message)


def _decode(body: bytes) -> tuple[Any, bool]:
    """(parsed body or None, whether msgspec parsed it). Same result as vLLM's ``json.loads``."""
    if _msgspec_json is not None:
        try:
            return _msgspec_json.decode(body), True
        except Exception:  # NaN, Infinity, a BOM, lone surrogates: json.loads accepts those
            pass
    try:
        return json.loads(body), False
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None, False


def _encode(req: dict[str, Any], fast: bool) -> bytes:
    if fast and _msgspec_json is not None:
        try:
            out: bytes = _msgspec_json.encode(req)
            return out
        except Exception:  # something the media hook added that msgspec does not take
            pass
    try:
        return json.dumps(req, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes: keep them escaped
        return json.dumps(req, separators=(",", ":")).encode()


class DialectMiddleware:
    """Pure ASGI middleware: ``DialectMiddleware(app)``; ``settings`` defaults to runtime's."""

    def __init__(self, app: ASGIApp, settings: dict[str, Any] | None = None) -> None:
        if settings is None:
            from vl_serve import runtime

            settings = runtime.settings()
        self.app = app
        self.settings = settings
        reasoning = settings.get("reasoning") or {}
        self.reasoning_parser: str | None = reasoning.get("parser")
        field = reasoning.get("response_field", "both")
        # None: leave responses alone; True: add reasoning_content; False: rename to it.
        self.add_alias: bool | None = None if field == "reasoning" else field == "both"
        self._media: Any = _UNSET
        # Import the media path now, while vLLM builds the app: its start-up heap is then frozen
        # for the garbage collector (vLLM's lifespan hook), and no request pays for the import.
        self.media_module()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        if path == dialect.CHAT_PATH:
            chat = True
        elif path == dialect.COMPLETIONS_PATH:
            chat = False
        else:
            await self.app(scope, receive, _ErrorScrub(send))
            return
        if not _is_json(scope["headers"]):
            await self.app(scope, receive, _ErrorScrub(send))  # vLLM refuses it (400)
            return
        await _Exchange(self, scope, receive, send, chat).run()

    def media_module(self) -> ModuleType | None:
        """``vl_serve.media`` if it is installed, else None (imported once)."""
        if self._media is _UNSET:
            try:
                self._media = importlib.import_module("vl_serve.media")
            except ModuleNotFoundError as exc:
                if exc.name != "vl_serve.media":
                    raise
                self._media = None
        media: ModuleType | None = self._media
        return media

    async def rewrite_body(self, body: bytes, chat: bool) -> bytes | None:
        """The body to pass on, or None to pass the original. Raises DialectError."""
        check_dialect, has_media = dialect.scan_markers(body)
        media = self.media_module() if chat and has_media else None
        if not check_dialect and media is None:
            return None
        req, fast = _decode(body)
        if not isinstance(req, dict):
            return None  # malformed JSON or not an object: vLLM answers it
        changed = False
        if check_dialect:
            changed = dialect.rewrite_request(
                req, chat=chat, reasoning_parser=self.reasoning_parser
            )
        if media is not None:
            try:
                changed = bool(await media.prepare_request(req, self.settings)) or changed
            except media.MediaError as exc:
                raise dialect.DialectError(
                    str(getattr(exc, "message", "") or "Invalid media in the request."),
                    getattr(exc, "param", None),
                    int(getattr(exc, "status", 400)),
                ) from exc
        return _encode(req, fast) if changed else None


class _Exchange:
    """One chat/completions request: lazy body rewrite, error substitution, response rewrite."""

    __slots__ = (
        "body_read",
        "chat",
        "error",
        "error_sent",
        "mw",
        "pending_start",
        "raw_receive",
        "raw_send",
        "rewriter",
        "scope",
        "scrub",
        "started",
        "whole",
    )

    def __init__(
        self, mw: DialectMiddleware, scope: Scope, receive: Receive, send: Send, chat: bool
    ) -> None:
        self.mw = mw
        self.scope = scope
        self.raw_receive = receive
        self.raw_send = send
        self.chat = chat
        self.body_read = False
        self.error: dialect.DialectError | None = None
        self.error_sent = False
        self.started = False
        self.pending_start: Message | None = None
        self.rewriter: dialect.SSERewriter | None = None
        self.whole: list[bytes] | None = None
        self.scrub = False  # the held body is an error answer: scrub it, do not rewrite it

    async def run(self) -> None:
        rewrite_responses = self.chat and self.mw.add_alias is not None
        send = self.send if rewrite_responses else self.send_plain
        try:
            await self.mw.app(self.scope, self.receive, send)
        except Exception:
            if self.error is None:
                raise
            # The failed body read came back up as an exception: the error below answers it.
        if self.error is not None and not self.started:
            await self.send_error()

    # --- request ---

    async def receive(self) -> Message:
        if self.body_read:
            return await self.raw_receive()
        chunks: list[bytes] = []
        while True:
            message = await self.raw_receive()
            if message["type"] != "http.request":  # disconnected before the body was complete
                self.body_read = True
                return message
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.body_read = True
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            new_body = await self.mw.rewrite_body(body, self.chat)
        except dialect.DialectError as exc:
            self.error = exc
            raise _Rejected from None
        except Exception:
            logger.exception("vl-serve middleware failed to prepare a request")
            self.error = dialect.DialectError(
                "Internal error while preparing the request.", None, 500
            )
            raise _Rejected from None
        if new_body is not None:
            body = new_body
            self._set_content_length(len(body))
        return {"type": "http.request", "body": body, "more_body": False}

    def _set_content_length(self, length: int) -> None:
        headers = self.scope["headers"]
        self.scope["headers"] = [
            (name, str(length).encode() if name == b"content-length" else value)
            for name, value in headers
        ]

    # --- response ---

    async def send_error(self) -> None:
        assert self.error is not None
        status, body = dialect.error_body(self.error.status, self.error.message, self.error.param)
        self.started = self.error_sent = True
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await self.raw_send({"type": "http.response.start", "status": status, "headers": headers})
        await self.raw_send({"type": "http.response.body", "body": body, "more_body": False})

    async def send_plain(self, message: Message) -> None:
        if self.error is not None:  # vLLM's answer to the failed body read: ours replaces it
            if not self.error_sent and message["type"] == "http.response.start":
                await self.send_error()
            return
        if message["type"] == "http.response.start":
            self.started = True
            if _is_json_error(message):
                self._hold(message, scrub=True)
                return
        elif self.whole is not None:
            await self._send_whole(message)
            return
        await self.raw_send(message)

    def _hold(self, start: Message, *, scrub: bool) -> None:
        self.pending_start = start
        self.whole = []
        self.scrub = scrub

    async def send(self, message: Message) -> None:
        rewriter = self.rewriter
        if rewriter is not None and message["type"] == "http.response.body":
            # The hot path: one SSE event per message, most without reasoning.
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if rewriter.tail or not more or not body.endswith(b"\n\n"):
                body = rewriter.feed(body, more)
                if not body and more:
                    return
            else:
                pos = body.find(b'"reasoning":')
                if pos < 0:
                    await self.raw_send(message)
                    return
                body = dialect.rewrite_reasoning_at(body, pos, rewriter.both)
            message["body"] = body
            await self.raw_send(message)
            return
        if self.error is not None:
            await self.send_plain(message)
            return
        kind = message["type"]
        if kind == "http.response.body":
            if self.whole is not None:
                await self._send_whole(message)
                return
        elif kind == "http.response.start":
            self.started = True
            if message.get("status") == 200:
                content_type = b""
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        content_type = value.split(b";", 1)[0].strip().lower()
                        break
                assert self.mw.add_alias is not None
                if content_type == b"text/event-stream":
                    self.rewriter = dialect.SSERewriter(self.mw.add_alias)
                elif content_type == b"application/json":
                    self._hold(message, scrub=False)
                    return
            elif _is_json_error(message):
                self._hold(message, scrub=True)
                return
        await self.raw_send(message)

    async def _send_whole(self, message: Message) -> None:
        """Buffer a JSON body (a non-streaming answer, or an error answer); rewrite or scrub it
        and fix Content-Length at the end."""
        assert self.whole is not None and self.pending_start is not None
        self.whole.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.whole)
        if self.scrub:
            new_body = dialect.scrub_error_body(body)
        else:
            assert self.mw.add_alias is not None
            new_body = dialect.rewrite_reasoning(body, self.mw.add_alias)
        start = self.pending_start
        if new_body is not body:
            _with_length(start, len(new_body))
        self.whole = None
        self.pending_start = None
        await self.raw_send(start)
        message["body"] = new_body
        await self.raw_send(message)
