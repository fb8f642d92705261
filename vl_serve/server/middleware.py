"""ASGI middleware in front of vLLM's API server: body limits and checks, dialect, media policy.

vLLM adds it as a ``--middleware`` class (behind the access check, :mod:`vl_serve.server.stack`),
in front of vLLM's CORS and scaling middleware (vLLM's own API-key check is off: the access check
replaces it). It is plain ASGI, not
BaseHTTPMiddleware. Every request body on every route meets the same rules; which route takes
which shape is in :mod:`vl_serve.server.shapes`:

* POST/PUT/PATCH: the body may be at most ``media.max_request_bytes``. A larger Content-Length is
  answered with a 413 before anything is read; a chunked body is counted while it arrives and
  refused as soon as it passes the limit (:mod:`vl_serve.server.limits`).
* A body that is not an upload form is read as JSON: not UTF-8 JSON, nested deeper than
  ``server.max_json_depth`` or with a key repeated in one object, it gets a 400
  (:mod:`vl_serve.server.jsonbody`); ``n`` and ``best_of`` over ``server.max_n`` /
  ``server.max_best_of`` get a 400 naming the field, and so do the few wrongly typed fields that
  vLLM would answer with Python's words or a 500 (:mod:`vl_serve.server.fields`).
* Chat-shaped bodies (``messages``) get the FastDeploy/Qianfan dialect rewrite
  (:mod:`vl_serve.server.dialect`) and vl-serve's media checks (:mod:`vl_serve.media`);
  completion-shaped bodies get the dialect; on every other route a body carrying media is refused.
  A byte check (:func:`vl_serve.server.dialect.scan_markers`) skips the dialect and media steps
  for bodies that cannot need them, and a body goes on as the same bytes unless something changed.
* The body is read when vLLM's endpoint asks for it (:mod:`vl_serve.server.exchange`), so requests
  that vLLM turns away before reading it cost nothing.
* Answers: an error answer with a JSON body is held and scrubbed, on every route: no memory
  address, traceback line, server path or Python type wording, and always vLLM's error shape
  (:mod:`vl_serve.server.errors`); ``GET /v1/models`` gets each card's ``root`` set to its id
  (:mod:`vl_serve.server.model_cards`). Chat completion answers get ``reasoning_content`` unless
  ``reasoning.response_field: reasoning`` (:mod:`vl_serve.server.reasoning_content`).

An exception that vLLM has no handler for is answered here with a 500 and one log line, before the
answer started; error events inside a stream already started are vLLM's own, sanitised by vLLM
(``sanitize_message``). A refused request gets vLLM's error shape with a string ``code``
(:class:`vl_serve.server.errors.RequestError`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final

# vLLM imports this module while it builds the app, so the media path is imported then too: its
# start-up heap is frozen for the garbage collector (vLLM's lifespan hook), and no request pays
# for the import.
from vl_serve import media as media_module
from vl_serve import runtime
from vl_serve.server import dialect, fields, tutorial
from vl_serve.server.asgi import ASGIApp, ErrorScrub, Receive, Scope, Send, route_path
from vl_serve.server.clients import Clients
from vl_serve.server.errors import RequestError
from vl_serve.server.exchange import Exchange, send_error
from vl_serve.server.jsonbody import decode_body, encode_body
from vl_serve.server.limits import Limits, content_length
from vl_serve.server.model_cards import MODELS_PATH, without_paths
from vl_serve.server.shapes import CHAT, COMPLETION, EITHER, MEDIA_ROUTE, OTHER, shape_of

_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})


class DialectMiddleware:
    """Pure ASGI middleware: ``DialectMiddleware(app)``; ``settings`` defaults to runtime's."""

    def __init__(self, app: ASGIApp, settings: dict[str, Any] | None = None) -> None:
        if settings is None:
            settings = runtime.settings()
        self.app = app
        self.settings = settings
        self.limits = Limits(settings)
        self.clients = Clients(settings)
        reasoning = settings.get("reasoning") or {}
        self.reasoning_parser: str | None = reasoning.get("parser")
        field = reasoning.get("response_field", "both")
        # None: leave responses alone; True: add reasoning_content; False: rename to it.
        self.add_alias: bool | None = None if field == "reasoning" else field == "both"
        # The media preparation step (tests put a stand-in here, or None to leave media alone).
        self.media: ModuleType | None = media_module
        media_module.settings.budget(settings)  # the model's image budget, read once, now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = self.clients.enter(scope, send)
        if entry.reply is not None:
            await tutorial.answer_json(send, 200, entry.reply)
            return
        scope, send = entry.scope, entry.send
        method = scope["method"]
        if method in _WITH_BODY:
            length = content_length(scope["headers"])
            if length is not None and length > self.limits.max_body:
                await send_error(send, self.limits.too_large())
                return
            exchange = Exchange(self, scope, receive, send, shape_of(route_path(scope)))
            exchange.client = entry
            await exchange.run()
        elif method == "GET" and route_path(scope) == MODELS_PATH:
            await self.app(scope, receive, ErrorScrub(send, without_paths))
        else:
            await self.app(scope, receive, ErrorScrub(send))

    async def prepare_body(self, body: bytes, exchange: Exchange) -> bytes | None:
        """The body to pass on, or None to pass the original. Raises RequestError."""
        req, fast = decode_body(body, self.limits.max_depth)
        kind = exchange.shape.kind
        if not isinstance(req, dict):
            if kind == OTHER:
                return None  # vLLM answers it
            raise RequestError(400, "The request body must be a JSON object.", None, "invalid_type")
        fields.check_any(req)
        self.limits.check_caps(req)
        if kind == EITHER:
            kind = CHAT if "messages" in req else COMPLETION
            exchange.chat = kind == CHAT
        check_dialect, has_media = dialect.scan_markers(body)
        media = self.media
        changed = False
        if kind == OTHER:
            if media is not None and (has_media or req.get("features")):
                changed = media.refuse_unread_media(req, self.settings, MEDIA_ROUTE)
            return encode_body(req, fast) if changed else None
        chat = kind == CHAT
        if chat:
            fields.check_chat(req)
        else:
            fields.check_completion(req)
        changed = self.clients.prepare(req, exchange.client)
        rewritten = check_dialect and dialect.rewrite_request(
            req, chat=chat, reasoning_parser=self.reasoning_parser
        )
        changed = self.clients.settle(req, exchange, chat, rewritten) or rewritten or changed
        if media is not None and has_media:
            if chat:
                changed = bool(await media.prepare_request(req, self.settings)) or changed
            else:
                changed = media.sanitize_mm_kwargs(req, self.settings) or changed
        return encode_body(req, fast) if changed else None
