"""The refusals of the media path: one item's Refusal, and the request's error the client sees.

The code that fetches and checks bytes does not know where in the request an item sits, so it
raises :class:`Refusal` with a reason and a code; the request code turns that into the request
path's one error type, :class:`~vl_serve.server.errors.RequestError` (named :data:`MediaError`
here), with the item's place (``messages[0].content[2]``) as its ``param`` and the refusal's
code as its ``code``. Neither ever carries a URL, a server path, an exception's text or a
traceback.
"""

from __future__ import annotations

from vl_serve.server.errors import RequestError

# The request path's one error type, under the name the media code and its callers use.
MediaError = RequestError


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
