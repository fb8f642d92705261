"""The refusals of the media path: one item's Refusal, and the MediaError the client sees.

The code that fetches and checks bytes does not know where in the request an item sits, so it
raises :class:`Refusal` with a reason and a code; the request code turns that into the one
:class:`MediaError` the client sees, with the item's place (``messages[0].content[2]``) as its
``param``. Neither ever carries a URL, a server path, an exception's text or a traceback.
"""

from __future__ import annotations

from typing import Any


class MediaError(Exception):
    """A request refused because of its media; safe to show the client as it is."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI-style error body."""
        kind = "RequestEntityTooLarge" if self.status == 413 else "BadRequestError"
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code or self.status,
            }
        }


class Refusal(Exception):
    """One media item refused; the caller adds where in the request it is."""

    def __init__(self, reason: str, status: int = 400, code: str = "invalid_media") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code


def refused(where: str, refusal: Refusal) -> MediaError:
    """The request's error for an item refused at ``where``."""
    return MediaError(refusal.status, f"{where}: {refusal.reason}", where, refusal.code)


def bad(where: str, reason: str, code: str = "invalid_media") -> MediaError:
    """A 400 for the part of the request at ``where``."""
    return MediaError(400, f"{where}: {reason}", where, code)


def mib(n: int) -> str:
    """A byte count as a short human figure (10 MB, 512 KB)."""
    if n >= 1024 * 1024:
        value, unit = n / (1024 * 1024), "MB"
    elif n >= 1024:
        value, unit = n / 1024, "KB"
    else:
        return f"{n} bytes"
    return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def too_large(what: str, limit: int, field_name: str) -> Refusal:
    """A 413 refusal naming the byte limit and its ``media.`` field."""
    return Refusal(
        f"the {what} is larger than the {mib(limit)} limit (media.{field_name})",
        status=413,
        code="media_too_large",
    )
