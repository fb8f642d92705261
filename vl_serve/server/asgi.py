"""ASGI plumbing of the middleware: message types, header checks, held bodies, error scrubbing.

The ``send`` wrappers here sit on every streamed chunk's way out. They are plain callables that
return the next layer's awaitable (or :data:`DONE` for a message they swallow) rather than
coroutines: a coroutine layer per message would cost more than the checks themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any, Protocol

from vl_serve.server.errors import scrub_error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Done:
    """An awaitable that is already complete (``await`` on it does nothing)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        return
        yield  # (a generator that finishes at once)


# What a ``send`` wrapper returns for a message it swallows.
DONE = _Done()


def route_path(scope: Scope) -> str:
    """The path as Starlette's router sees it (``root_path`` removed)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root) :]
    return path


def media_type(headers: Any) -> bytes:
    """The Content-Type's media type, lower case, without parameters (b"" when absent)."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"content-type":
            kind: bytes = value.split(b";", 1)[0].strip().lower()
            return kind
    return b""


def is_json_error(start: Message) -> bool:
    """Whether a response start begins an error answer with a JSON body (to be scrubbed)."""
    return start.get("status", 200) >= 400 and (
        media_type(start.get("headers", ())) == b"application/json"
    )


def hold_error(send: Send, start: Message) -> HeldBody:
    """The error answer that ``start`` begins, held to be scrubbed (:func:`scrub_error_body`)."""
    return HeldBody(send, start, functools.partial(scrub_error_body, status=start["status"]))


class HeldBody:
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


class Holder(Protocol):
    """Something that may be holding a response back: ``held`` is None when it is not."""

    held: HeldBody | None


async def feed_held(owner: Holder, message: Message) -> None:
    """Pass one body message to ``owner.held``; forget it once the whole answer has gone out."""
    held = owner.held
    assert held is not None
    if await held.feed(message):
        owner.held = None


class ErrorScrub:
    """``send`` for requests the middleware does not otherwise touch: an error answer with a JSON
    body is held until complete and passed through :func:`scrub_error_body`, and so is a 200 JSON
    answer through ``ok`` when one is given; every other message goes straight on."""

    __slots__ = ("held", "ok", "send")

    def __init__(self, send: Send, ok: Callable[[bytes], bytes] | None = None) -> None:
        self.send = send
        self.ok = ok
        self.held: HeldBody | None = None

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if self.held is not None and kind == "http.response.body":
            return feed_held(self, message)
        if kind == "http.response.start":
            if is_json_error(message):
                self.held = hold_error(self.send, message)
                return DONE
            if (
                self.ok is not None
                and message.get("status") == 200
                and media_type(message.get("headers", ())) == b"application/json"
            ):
                self.held = HeldBody(self.send, message, self.ok)
                return DONE
        return self.send(message)
