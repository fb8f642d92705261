"""The one ASGI middleware vLLM is given: operations, access control, then the request middleware.

vLLM adds each ``--middleware`` class with ``app.add_middleware(cls)``, and Starlette builds it as
``cls(app)``. One entry keeps the order fixed in code (access decides before anything reads a
body) instead of in the order of repeated flags, which vLLM's parser also reports as duplicates.
"""

from __future__ import annotations

from typing import Any

from vl_serve.server.access import AccessMiddleware
from vl_serve.server.asgi import ASGIApp
from vl_serve.server.middleware import DialectMiddleware
from vl_serve.server.ops import OpsMiddleware


class ServerStack:
    """``ServerStack(app)`` is ``OpsMiddleware(AccessMiddleware(DialectMiddleware(app)))``.

    Operations (request ids, /ready, drain, admission) come first so that every answer, a
    refusal of the access check included, carries the request id, and an overloaded or draining
    server refuses before anything else is done.
    """

    def __new__(cls, app: ASGIApp, settings: dict[str, Any] | None = None) -> Any:
        inner = AccessMiddleware(DialectMiddleware(app, settings), settings)
        return OpsMiddleware(inner, settings)
