"""Request limits applied before vLLM: the body size while it is received, and the n/best_of caps.

The body limit is ``media.max_request_bytes``. A ``Content-Length`` over it is answered at once,
nothing read; a chunked body is counted as it arrives and reading stops as soon as the count
passes the limit, so vLLM never sees part of a body. ``n`` and ``best_of`` are capped by
``server.max_n`` and ``server.max_best_of`` wherever a JSON body carries them, read the way
pydantic's lax mode reads an integer (``"1000"`` and ``1000.0`` count as 1000).
"""

from __future__ import annotations

from typing import Any, Final

from vl_serve.config import ServerConfig
from vl_serve.media.settings import body_too_large, max_request_bytes
from vl_serve.server.asgi import Message, Receive
from vl_serve.server.errors import RequestError

# The capped fields and the server setting of each.
CAPPED: Final = (("n", "max_n"), ("best_of", "max_best_of"))


class Limits:
    """The limits of one server, read once from its settings."""

    __slots__ = ("caps", "max_body", "max_depth", "settings")

    def __init__(self, settings: dict[str, Any]) -> None:
        server = ServerConfig.model_validate(settings.get("server") or {})
        self.settings = settings
        self.max_body: int = max_request_bytes(settings)
        self.max_depth: int = server.max_json_depth
        self.caps = tuple((field, getattr(server, name), name) for field, name in CAPPED)

    def too_large(self) -> RequestError:
        """The 413 for a body over ``media.max_request_bytes``."""
        return body_too_large(self.settings)

    def check_caps(self, req: dict[str, Any]) -> None:
        """Refuse ``n`` or ``best_of`` over its cap."""
        for field, cap, name in self.caps:
            value = req.get(field)
            if value is None:
                continue
            number = _lax_number(value)
            if number is not None and number > cap:
                raise RequestError(
                    400,
                    f"`{field}` must be at most {cap} (server.{name}).",
                    field,
                    "integer_above_max_value",
                )


def _lax_number(value: Any) -> float | None:
    """``value`` as a number the way pydantic's lax mode could read it; None if it cannot."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)  # also " 7 ", "1_000", "1e3"
        except ValueError:
            return None
    return None


def content_length(headers: Any) -> int | None:
    """The request's Content-Length, None when absent or unreadable."""
    for name, value in headers:
        if len(name) == 14 and name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, limits: Limits) -> bytes | Message:
    """The whole request body, or the message that ended it early (a disconnect).

    Raises the 413 as soon as the bytes received pass the limit; nothing more is read.
    """
    limit = limits.max_body
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise limits.too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
