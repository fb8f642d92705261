"""Error answers of the request path: the one error type, vLLM's error body, message scrubbing.

A refused request gets vLLM's own error shape, ``{"error": {"message", "type", "param", "code"}}``,
so that clients see one format whether vLLM or vl-serve refused it. Every message that reaches a
client, ours or vLLM's, is scrubbed first: no memory address, traceback line or server path.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Final


class DialectError(Exception):
    """A request the server refuses: becomes ``{"error": {...}}`` with ``status``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


# The exception class names of OpenAI's clients, as vLLM uses them in ``error.type``.
_ERROR_TYPES: Final = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
_MAX_MESSAGE: Final = 1000
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_TRACEBACK = re.compile(r'\n?\s*File "[^"]+", line \d+, in \S+(\n\s+.*)?')
_TRACEBACK_HEAD = re.compile(r"\n?\s*Traceback \(most recent call last\):")
_PATH = re.compile(r"/(?:home|usr|opt|var|tmp|root|lib|mnt|srv|work|proc|etc)(?:/[\w.\-]+)+")


def sanitize(message: str) -> str:
    """Strip what must never reach a client: addresses, traceback lines, server paths."""
    message = _ADDRESS.sub("", message)
    message = _TRACEBACK_HEAD.sub("", message)
    message = _TRACEBACK.sub("", message)
    message = _PATH.sub("<path>", message).strip()
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message or "Invalid request."


def error_body(status: int, message: str, param: str | None = None) -> tuple[int, bytes]:
    """(status, body) of vLLM's ErrorResponse shape: ``{"error": {message, type, param, code}}``."""
    if not 400 <= status <= 599:
        status = 400
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    err_type = _ERROR_TYPES.get(status, phrase)
    info = {"message": sanitize(message), "type": err_type, "param": param, "code": status}
    return status, json.dumps({"error": info}, ensure_ascii=False, separators=(",", ":")).encode()


def scrub_error_body(body: bytes) -> bytes:
    """An error response body from vLLM with every ``message`` passed through :func:`sanitize`.

    vLLM builds some messages from exception text (Pillow's ``cannot identify image file
    <_io.BytesIO object at 0x...>``, say), so its answers get the same scrubbing as ours.
    Returns ``body`` itself when nothing changed or it is not a JSON object.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict):
        return body
    changed = False
    for holder in (doc, doc.get("error")):
        if isinstance(holder, dict) and isinstance(holder.get("message"), str):
            clean = sanitize(holder["message"])
            if clean != holder["message"]:
                holder["message"] = clean
                changed = True
    if not changed:
        return body
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
