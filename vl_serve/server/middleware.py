"""ASGI middleware in front of vLLM's API server: FastDeploy/Qianfan dialect and media preparation.

vLLM loads it with ``--middleware vl_serve.server.middleware.DialectMiddleware`` (0.26 and 0.32 alike:
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
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from types import ModuleType
from typing import Any

from vl_serve.server import dialect

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


class _Done:
    """An awaitable that is already complete: what a hot-path ``send`` returns for a message it
    swallows (``await`` on it does nothing)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        return
        yield  # (a generator that finishes at once)


_DONE = _Done()


class _Rejected(Exception):
    """Raised from the body read of a refused request; the error response replaces vLLM's."""


def _route_path(scope: Scope) -> str:
    """The path as Starlette's router sees it (``root_path`` removed)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def _media_type(headers: Any) -> bytes:
    """The Content-Type's media type, lower case, without parameters (b"" when absent)."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type
    return b""


def _is_json_error(start: Message) -> bool:
    """Whether a response start begins an error answer with a JSON body (to be scrubbed)."""
    return start.get("status", 200) >= 400 and (
        _media_type(start.get("headers", ())) == b"application/json"
    )


class _HeldBody:
    """A response start held back with its body until the body is complete; then both go out,
    the body passed through ``transform`` (Content-Length fixed when it changed)."""

    __slots__ = ("parts", "send", "start", "transform")

    def __init__(self, send: Send, start: Message, transform: Callable[[bytes], bytes]) -> None:
        self.send = send
        self.start = start
        self.transform = transform
        self.parts: list[bytes] = []

    async def feed(self, message: Message) -> bool:
        """Take one ``http.response.body`` message; True once the whole answer has gone out."""
        self.parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return False
        body = b"".join(self.parts)
        new_body = self.transform(body)
        start = self.start
        if new_body is not body:
            length = str(len(new_body)).encode()
            start["headers"] = [
                (name, length if name.lower() == b"content-length" else value)
                for name, value in start.get("headers", ())
            ]
        await self.send(start)
        message["body"] = new_body
        await self.send(message)
        return True


class _ErrorScrub:
    """``send`` for requests the middleware does not otherwise touch: an error answer with a JSON
    body is held until complete and passed through :func:`dialect.scrub_error_body`; every other
    message goes straight on."""

    __slots__ = ("held", "send")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.held: _HeldBody | None = None

    # A plain function returning the awaitable, not a coroutine: this sits on every streamed
    # chunk's way out, and a coroutine layer per message costs more than the checks themselves.
    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if self.held is not None and kind == "http.response.body":
            return _feed_held(self, message)
        if kind == "http.response.start" and _is_json_error(message):
            self.held = _HeldBody(self.send, message, dialect.scrub_error_body)
            return _DONE
        return self.send(message)


async def _feed_held(owner: _ErrorScrub | _Exchange, message: Message) -> None:
    """Pass one body message to ``owner.held``; forget it once the whole answer has gone out."""
    assert owner.held is not None
    if await owner.held.feed(message):
        owner.held = None


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
        if _media_type(scope["headers"]) != b"application/json":
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
        "held",
        "mw",
        "raw_receive",
        "raw_send",
        "rewriter",
        "scope",
        "scrub",
        "started",
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
        self.rewriter: dialect.SSERewriter | None = None
        self.held: _HeldBody | None = None  # a whole JSON answer to rewrite or scrub
        self.scrub = _ErrorScrub(send)  # send_plain's way out: error answers scrubbed

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

    def receive(self) -> Awaitable[Message]:
        if self.body_read:
            return self.raw_receive()
        return self._read_body()

    async def _read_body(self) -> Message:
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

    # send_plain and send return the next layer's awaitable instead of being coroutines
    # themselves (see _ErrorScrub.__call__): the caller's ``await`` runs it.
    def send_plain(self, message: Message) -> Awaitable[None]:
        if self.error is not None:  # vLLM's answer to the failed body read: ours replaces it
            if not self.error_sent and message["type"] == "http.response.start":
                return self.send_error()
            return _DONE
        if message["type"] == "http.response.start":
            self.started = True
        return self.scrub(message)

    def send(self, message: Message) -> Awaitable[None]:
        rewriter = self.rewriter
        if rewriter is not None and message["type"] == "http.response.body":
            # The hot path: one SSE event per message, most without reasoning.
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if rewriter.tail or not more or not body.endswith(b"\n\n"):
                body = rewriter.feed(body, more)
                if not body and more:
                    return _DONE
            else:
                pos = body.find(b'"reasoning":')
                if pos < 0:
                    return self.raw_send(message)
                body = dialect.rewrite_reasoning_at(body, pos, rewriter.both)
            message["body"] = body
            return self.raw_send(message)
        if self.error is not None:
            return self.send_plain(message)
        kind = message["type"]
        if kind == "http.response.body":
            if self.held is not None:
                return _feed_held(self, message)
        elif kind == "http.response.start":
            self.started = True
            if message.get("status") == 200:
                content_type = _media_type(message.get("headers", ()))
                assert self.mw.add_alias is not None
                if content_type == b"text/event-stream":
                    self.rewriter = dialect.SSERewriter(self.mw.add_alias)
                elif content_type == b"application/json":
                    self.held = _HeldBody(self.raw_send, message, self._rewrite_whole)
                    return _DONE
            elif _is_json_error(message):
                self.held = _HeldBody(self.raw_send, message, dialect.scrub_error_body)
                return _DONE
        return self.raw_send(message)

    def _rewrite_whole(self, body: bytes) -> bytes:
        """A non-streaming 200 JSON answer with ``reasoning_content`` added or renamed."""
        assert self.mw.add_alias is not None
        return dialect.rewrite_reasoning(body, self.mw.add_alias)
