"""One request with a body through the middleware: lazy checked read, error substitution, answer.

The body is read when vLLM's endpoint first asks for it, so a request that vLLM turns away first
(wrong API key, unknown route) costs nothing. It is read whole, counted against the body limit as
it arrives, checked and, where something changed, re-serialised, and handed to vLLM as one
message. A refused request makes that read fail (vLLM does no work); whatever vLLM answers to
the failed read is replaced by the refusal. Answers are scrubbed when they are errors and, on
routes that answer with chat completions, get ``reasoning_content``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from vl_serve.server import metrics, reasoning_content
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
    hold_error,
    is_json_error,
    media_type,
)
from vl_serve.server.errors import RequestError
from vl_serve.server.limits import Limits, read_body
from vl_serve.server.shapes import CHAT, Shape

logger = logging.getLogger(__name__)

# Bodies the middleware does not read as JSON: the upload forms FastAPI parses itself.
_FORMS = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class Middleware(Protocol):
    """What an exchange needs of the middleware (:class:`~vl_serve.server.middleware.DialectMiddleware`)."""

    app: ASGIApp
    limits: Limits
    add_alias: bool | None

    async def prepare_body(self, body: bytes, exchange: Exchange) -> bytes | None: ...


class _Rejected(Exception):
    """Raised from the body read of a refused request; the error response replaces vLLM's."""


async def send_error(send: Send, error: RequestError) -> None:
    """Answer with ``error``; a 413 also closes the connection, so the rest is never read."""
    metrics.refused(error.code)
    status, body = error.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Exchange:
    """One POST/PUT/PATCH request: lazy body checks, error substitution, answer rewrite."""

    __slots__ = (
        "body_read",
        "chat",
        "client",
        "error",
        "error_sent",
        "held",
        "json",
        "mw",
        "raw_receive",
        "raw_send",
        "rewriter",
        "scope",
        "scrub",
        "shape",
        "started",
    )

    def __init__(
        self, mw: Middleware, scope: Scope, receive: Receive, send: Send, shape: Shape
    ) -> None:
        self.mw = mw
        self.scope = scope
        self.raw_receive = receive
        self.raw_send = send
        self.shape = shape
        # Whether answers are chat completions; set again from the body on "either" routes.
        self.chat = shape.kind == CHAT
        self.json = media_type(scope.get("headers", ())) not in _FORMS
        self.body_read = False
        self.error: RequestError | None = None
        self.error_sent = False
        self.started = False
        self.rewriter: reasoning_content.SSERewriter | None = None
        self.held: HeldBody | None = None  # a whole JSON answer to rewrite or scrub
        self.scrub = ErrorScrub(send)  # send_plain's way out: error answers scrubbed
        # How the client is met (vl_serve.server.clients.Entry): its answer rewrite, if any.
        self.client: Any = None

    async def run(self) -> None:
        finish = getattr(self.client, "finish", None)
        rewrite_answers = self.shape.answers and (self.mw.add_alias is not None or finish)
        send = self.send if rewrite_answers else self.send_plain
        try:
            await self.mw.app(self.scope, self.receive, send)
        except Exception as exc:
            if self.error is None:
                if self.started:
                    raise
                # vLLM has no handler for it (an AttributeError on a body it did not expect):
                # answered here, with one log line rather than the traceback of every such request.
                logger.warning("vLLM failed on a request: %s", type(exc).__name__)
                logger.debug("vLLM failed on a request", exc_info=True)
                self.error = RequestError(500, "Internal error while serving the request.")
            # Otherwise the failed body read came back up as an exception: the error answers it.
        if self.error is not None and not self.started:
            await self.send_error()

    # --- request ---

    def receive(self) -> Awaitable[Message]:
        if self.body_read:
            return self.raw_receive()
        return self._read_body()

    async def _read_body(self) -> Message:
        self.body_read = True
        try:
            body = await read_body(self.raw_receive, self.mw.limits)
            if not isinstance(body, bytes):  # disconnected before the body was complete
                return body
            new_body = await self.mw.prepare_body(body, self) if self.json and body else None
        except RequestError as exc:
            self.error = exc
            raise _Rejected from None
        except Exception as exc:
            # One line: a client must not be able to fill the log with tracebacks.
            logger.warning("vl-serve could not prepare a request: %s", type(exc).__name__)
            logger.debug("vl-serve could not prepare a request", exc_info=True)
            self.error = RequestError(500, "Internal error while preparing the request.")
            raise _Rejected from None
        if new_body is not None:
            body = new_body
            self._set_content_length(len(body))
        return {"type": "http.request", "body": body, "more_body": False}

    def _set_content_length(self, length: int) -> None:
        # A chunked request has no Content-Length; vLLM reads the body to its end either way.
        headers = self.scope["headers"]
        self.scope["headers"] = [
            (name, str(length).encode() if name == b"content-length" else value)
            for name, value in headers
        ]

    # --- response ---

    async def send_error(self) -> None:
        assert self.error is not None
        self.started = self.error_sent = True
        await send_error(self.raw_send, self.error)

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
        if self.error is not None or not self.chat:
            return self.send_plain(message)
        kind = message["type"]
        if kind == "http.response.body":
            if self.held is not None:
                return feed_held(self, message)
        elif kind == "http.response.start":
            self.started = True
            if message.get("status") == 200:
                content_type = media_type(message.get("headers", ()))
                add_alias = self.mw.add_alias
                if content_type == b"text/event-stream":
                    if add_alias is not None:
                        self.rewriter = reasoning_content.SSERewriter(add_alias)
                elif content_type == b"application/json":
                    self.held = HeldBody(self.raw_send, message, self._rewrite_whole)
                    return DONE
            elif is_json_error(message):
                self.held = hold_error(self.raw_send, message)
                return DONE
        return self.raw_send(message)

    def _rewrite_whole(self, body: bytes) -> bytes:
        """A non-streaming 200 JSON answer with ``reasoning_content`` added or renamed, then
        reshaped for the client (``Entry.finish``)."""
        if self.mw.add_alias is not None:
            body = reasoning_content.rewrite_reasoning(body, self.mw.add_alias)
        finish = getattr(self.client, "finish", None)
        return finish(body) if finish is not None else body
