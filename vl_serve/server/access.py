"""Deny-by-default access control in front of every route of vLLM's server.

It comes right after the operations layer in the one middleware vLLM is given
(:mod:`vl_serve.server.stack`, :mod:`vl_serve.server.ops`): it
decides before vl-serve's request middleware and vLLM's CORS and scaling layers see a request. vLLM's own ``--api-key`` check does not serve: it guards only the path prefixes ``/v1``,
``/v2``, ``/inference`` and ``/cohere`` (so /invocations, /tokenize, /metrics, the dev routes and
the rest are open), lets every OPTIONS through, reads only ``Authorization`` and takes one key
from the environment.

The decision, on ``scope["path"]`` with ``root_path`` removed as Starlette's router does (never on
the URL rebuilt from the Host header):

1. a path not in canonical form, or a method and path that :mod:`vl_serve.server.routes` does not
   classify -> 404; a route of a group that ``server.open_routes`` does not open -> 404 naming
   the switch;
2. a CORS preflight (OPTIONS with Access-Control-Request-Method) for an open route -> passes
   (vLLM's CORS middleware answers it);
3. probes (/health, /ready) -> pass; /metrics -> passes with ``server.open_metrics``, else needs
   an API key or the metrics token; every other route needs an API key;
4. without any key or token configured there is no credential check, and closed routes stay
   closed.

A key comes as ``Authorization: Bearer <key>`` (any case of the scheme) or ``x-api-key: <key>``.
Each is hashed and compared with ``hmac.compare_digest`` against the digest of every accepted
key, with no early exit, so neither which key matched nor its length shows in the timing. Keys
are read once, at construction, from the variables the settings name; the settings hold only the
names. Refusals are vLLM's error shape with a string code (``invalid_api_key``, ``route_closed``)
and never echo what the client sent. A websocket is refused by closing it before the accept
(code 1008). A request let through reaches vLLM with the original ``receive`` and ``send``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import Any

from vl_serve import runtime
from vl_serve.server import metrics
from vl_serve.server.asgi import ASGIApp, Receive, Scope, Send, route_path
from vl_serve.server.errors import RequestError
from vl_serve.server.routes import METRICS, OPEN_GROUPS, PROBE, WEBSOCKET, Route, classify

_AUTH_MESSAGE = (
    "Missing or invalid API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
)
_METRICS_MESSAGE = (
    "Missing or invalid API key or metrics token: send it as 'Authorization: Bearer <token>'."
)


def not_found() -> RequestError:
    return RequestError(404, "Not found.", code="route_closed")


def closed(route: Route) -> RequestError:
    message = (
        f"{route.method} {route.template} is closed on this server; add '{route.group}' "
        "to server.open_routes in the vl-serve config to open it."
    )
    return RequestError(404, message, code="route_closed")


def key_env_names(value: str | list[str] | None) -> list[str]:
    """``server.api_key_env`` (one name, a list of names or null) as a list of names."""
    return [value] if isinstance(value, str) else list(value or [])


def read_digests(names: Iterable[str], field: str) -> list[bytes]:
    """The SHA-256 of the secret in each named variable; a missing or empty one is an error
    (failing to start beats serving without the key the config asks for)."""
    digests = []
    for name in names:
        secret = os.environ.get(name)
        if not secret:
            raise RuntimeError(f"{field}: environment variable {name} is not set or empty")
        digests.append(hashlib.sha256(secret.encode()).digest())
    return digests


def credentials(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """What the client sent as a key: the bearer token and the ``x-api-key`` value (first of each)."""
    bearer: bytes | None = None
    api_key: bytes | None = None
    for name, value in headers:
        if bearer is None and name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            bearer = token.strip() if scheme.lower() == b"bearer" else b""
        elif api_key is None and name == b"x-api-key":
            api_key = value.strip()
    return [token for token in (bearer, api_key) if token]


def matches(sent: list[bytes], digests: list[bytes]) -> bool:
    """Whether any credential sent is one of the keys; every pair is compared, no early exit."""
    found = False
    for token in sent:
        digest = hashlib.sha256(token).digest()
        for key in digests:
            found |= hmac.compare_digest(digest, key)
    return found


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name == wanted:
            return value
    return None


class AccessMiddleware:
    """Pure ASGI middleware: ``AccessMiddleware(app)``; ``settings`` defaults to runtime's."""

    def __init__(self, app: ASGIApp, settings: dict[str, Any] | None = None) -> None:
        if settings is None:
            settings = runtime.settings()
        server = settings.get("server") or {}
        self.app = app
        names = key_env_names(server.get("api_key_env"))
        self.keys = read_digests(names, "server.api_key_env")
        token = server.get("metrics_token_env")
        token_digests = read_digests([token] if token else [], "server.metrics_token_env")
        # /metrics: open, or the API keys and the metrics token (None: nothing to check).
        self.metrics_keys: list[bytes] | None = None
        if not server.get("open_metrics") and (self.keys or token_digests):
            self.metrics_keys = self.keys + token_digests
        self.open_groups = OPEN_GROUPS | frozenset(server.get("open_routes") or ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            refusal = self.check(scope)
            if refusal is not None:
                await refuse(refusal, kind, send)
                return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> RequestError | None:
        """Why the request may not reach vLLM; None when it may."""
        headers = scope.get("headers", ())
        method = WEBSOCKET if scope["type"] == "websocket" else scope["method"]
        preflight = None
        if method == "OPTIONS":
            preflight = _header(headers, b"access-control-request-method")
            if preflight is not None:
                method = preflight.decode("latin-1").strip().upper()
        route = classify(method, route_path(scope))
        if route is None:
            return not_found()
        if route.group not in self.open_groups:
            return closed(route)
        if preflight is not None or route.group == PROBE:
            return None
        if route.group == METRICS:
            needed, message = self.metrics_keys, _METRICS_MESSAGE
        else:
            needed, message = self.keys or None, _AUTH_MESSAGE
        if needed is None or matches(credentials(headers), needed):
            return None
        return RequestError(401, message, code="invalid_api_key")


async def refuse(refusal: RequestError, kind: str, send: Send) -> None:
    """Answer a refused request: an error body, or a websocket closed before its accept."""
    if kind == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    metrics.refused(refusal.code)
    status, body = refusal.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
