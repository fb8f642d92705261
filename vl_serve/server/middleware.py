"""ASGI middleware in front of vLLM's API server: FastDeploy/Qianfan dialect and media preparation.

vLLM loads it with ``--middleware vl_serve.server.middleware.DialectMiddleware``: a class goes to
``app.add_middleware(cls)``, which makes it the outermost user middleware, in front of vLLM's
CORS, API-key and scaling middleware. It is plain ASGI, not BaseHTTPMiddleware.

What it costs is kept out of the way of ordinary traffic:

* Everything but ``POST /v1/chat/completions`` and ``POST /v1/completions`` with a JSON body goes
  straight to vLLM, untouched and unbuffered, except that an error answer to a POST (status 400
  or more, JSON body) is held and scrubbed like the middleware's own errors: no memory address,
  traceback line or server path (:func:`vl_serve.server.errors.scrub_error_body`).
* The request body is read lazily, when vLLM's endpoint asks for it, so requests that vLLM turns
  away first (wrong API key, unknown route) cost nothing and never trigger a media fetch. It is
  parsed only when a byte check finds a dialect key or an image/video item
  (:func:`vl_serve.server.dialect.scan_markers`), and re-serialised only when something changed.
  Malformed JSON goes on untouched: vLLM answers it.
* Responses: with ``reasoning.response_field: reasoning`` nothing is rewritten. Otherwise a
  non-streaming 200 JSON body gets ``reasoning_content`` by byte splicing (Content-Length is
  recomputed), and SSE chunks are only touched when their bytes contain ``"reasoning":``
  (:mod:`vl_serve.server.reasoning_content`).

vLLM's own error answers to chat/completions requests are scrubbed the same way. Two kinds never
pass through here: the 500 that vLLM's catch-all ``Exception`` handler writes (Starlette runs it
outside every user middleware) and error events inside a stream already started; vLLM sanitises
both itself (``sanitize_message``). A refused request gets vLLM's error shape
(:func:`vl_serve.server.errors.error_body`): the middleware makes the body read fail (so vLLM
does no work) and sends its own error in place of whatever vLLM answers to that.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from types import ModuleType
from typing import Any

# vLLM imports this module while it builds the app, so the media path is imported then too: its
# start-up heap is frozen for the garbage collector (vLLM's lifespan hook), and no request pays
# for the import.
from vl_serve import media as media_module
from vl_serve import runtime
from vl_serve.server import dialect, reasoning_content
from vl_serve.server.asgi import (
    DONE,
    ASGIApp,
    ErrorScrub,
    HeldBody,
    Message,
    Receive,
    Scope,
    Send,
    feed_held,
    is_json_error,
    media_type,
    route_path,
)
from vl_serve.server.errors import DialectError, error_body, scrub_error_body
from vl_serve.server.jsonbody import decode_body, encode_body

logger = logging.getLogger(__name__)


class _Rejected(Exception):
    """Raised from the body read of a refused request; the error response replaces vLLM's."""


class DialectMiddleware:
    """Pure ASGI middleware: ``DialectMiddleware(app)``; ``settings`` defaults to runtime's."""

    def __init__(self, app: ASGIApp, settings: dict[str, Any] | None = None) -> None:
        if settings is None:
            settings = runtime.settings()
        self.app = app
        self.settings = settings
        reasoning = settings.get("reasoning") or {}
        self.reasoning_parser: str | None = reasoning.get("parser")
        field = reasoning.get("response_field", "both")
        # None: leave responses alone; True: add reasoning_content; False: rename to it.
        self.add_alias: bool | None = None if field == "reasoning" else field == "both"
        # The media preparation step (tests put a stand-in here, or None to leave media alone).
        self.media: ModuleType | None = media_module

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path == dialect.CHAT_PATH:
            chat = True
        elif path == dialect.COMPLETIONS_PATH:
            chat = False
        else:
            await self.app(scope, receive, ErrorScrub(send))
            return
        if media_type(scope["headers"]) != b"application/json":
            await self.app(scope, receive, ErrorScrub(send))  # vLLM refuses it (400)
            return
        await _Exchange(self, scope, receive, send, chat).run()

    async def rewrite_body(self, body: bytes, chat: bool) -> bytes | None:
        """The body to pass on, or None to pass the original. Raises DialectError."""
        check_dialect, has_media = dialect.scan_markers(body)
        media = self.media if chat and has_media else None
        if not check_dialect and media is None:
            return None
        req, fast = decode_body(body)
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
                raise DialectError(
                    str(getattr(exc, "message", "") or "Invalid media in the request."),
                    getattr(exc, "param", None),
                    int(getattr(exc, "status", 400)),
                ) from exc
        return encode_body(req, fast) if changed else None


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
        self.error: DialectError | None = None
        self.error_sent = False
        self.started = False
        self.rewriter: reasoning_content.SSERewriter | None = None
        self.held: HeldBody | None = None  # a whole JSON answer to rewrite or scrub
        self.scrub = ErrorScrub(send)  # send_plain's way out: error answers scrubbed

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
        except DialectError as exc:
            self.error = exc
            raise _Rejected from None
        except Exception:
            logger.exception("vl-serve middleware failed to prepare a request")
            self.error = DialectError("Internal error while preparing the request.", None, 500)
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
        status, body = error_body(self.error.status, self.error.message, self.error.param)
        self.started = self.error_sent = True
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await self.raw_send({"type": "http.response.start", "status": status, "headers": headers})
        await self.raw_send({"type": "http.response.body", "body": body, "more_body": False})

    # send_plain and send return the next layer's awaitable instead of being coroutines
    # themselves (see vl_serve.server.asgi): the caller's ``await`` runs it.
    def send_plain(self, message: Message) -> Awaitable[None]:
        if self.error is not None:  # vLLM's answer to the failed body read: ours replaces it
            if not self.error_sent and message["type"] == "http.response.start":
                return self.send_error()
            return DONE
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
                    return DONE
            else:
                pos = body.find(b'"reasoning":')
                if pos < 0:
                    return self.raw_send(message)
                body = reasoning_content.rewrite_reasoning_at(body, pos, rewriter.both)
            message["body"] = body
            return self.raw_send(message)
        if self.error is not None:
            return self.send_plain(message)
        kind = message["type"]
        if kind == "http.response.body":
            if self.held is not None:
                return feed_held(self, message)
        elif kind == "http.response.start":
            self.started = True
            if message.get("status") == 200:
                content_type = media_type(message.get("headers", ()))
                assert self.mw.add_alias is not None
                if content_type == b"text/event-stream":
                    self.rewriter = reasoning_content.SSERewriter(self.mw.add_alias)
                elif content_type == b"application/json":
                    self.held = HeldBody(self.raw_send, message, self._rewrite_whole)
                    return DONE
            elif is_json_error(message):
                self.held = HeldBody(self.raw_send, message, scrub_error_body)
                return DONE
        return self.raw_send(message)

    def _rewrite_whole(self, body: bytes) -> bytes:
        """A non-streaming 200 JSON answer with ``reasoning_content`` added or renamed."""
        assert self.mw.add_alias is not None
        return reasoning_content.rewrite_reasoning(body, self.mw.add_alias)
