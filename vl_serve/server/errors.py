"""Error answers of the request path: the one error type, vLLM's error body, message scrubbing.

A refused request gets vLLM's own error shape, ``{"error": {"message", "type", "param", "code"}}``,
so that clients see one format whether vLLM or vl-serve refused it; vl-serve's refusals carry a
machine-readable string ``code`` (``media_too_large``, ``json_too_deep``). Every message that
reaches a client, ours or vLLM's, is scrubbed first: no memory address, traceback line or server
path, and none of Python's own wording for a value of the wrong type
(:mod:`vl_serve.server.wording`).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Final

from vl_serve.server.wording import client_message


class RequestError(Exception):
    """A request the server refuses, safe to show the client as it is.

    ``status`` is the HTTP status, ``param`` the field it is about (``messages[0].content[2]``)
    and ``code`` the machine-readable reason; without one, the status's generic code is used.
    """

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code or _DEFAULT_CODES.get(status, "invalid_request")

    def body(self) -> tuple[int, bytes]:
        """(status, body) of the answer to send."""
        return error_body(self.status, self.message, self.param, self.code)


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
_DEFAULT_CODES: Final = {413: "request_too_large", 500: "internal_error"}
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


def error_body(
    status: int, message: str, param: str | None = None, code: str | int | None = None
) -> tuple[int, bytes]:
    """(status, body) of vLLM's ErrorResponse shape: ``{"error": {message, type, param, code}}``.

    ``code`` defaults to the status, as vLLM writes it.
    """
    if not 400 <= status <= 599:
        status = 400
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    err_type = _ERROR_TYPES.get(status, phrase)
    info = {
        "message": sanitize(message),
        "type": err_type,
        "param": param,
        "code": status if code is None else code,
    }
    return status, json.dumps({"error": info}, ensure_ascii=False, separators=(",", ":")).encode()


def scrub_error_body(body: bytes, status: int = 400) -> bytes:
    """An error response body (of ``status``) made fit for a client.

    vLLM builds some messages from exception text (Pillow's ``cannot identify image file
    <_io.BytesIO object at 0x...>``, Python's ``'NoneType' object is not iterable``), so its
    answers get the same scrubbing as ours, and Python's wording is replaced by a sentence about
    the request. Starlette's ``{"detail": "..."}`` and a bare ``{"error": "..."}`` are rewritten
    to vLLM's error shape, so that every error answer has the one shape. Returns ``body`` itself
    when nothing changed or it is not a JSON object.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict):
        return body
    error = doc.get("error")
    if isinstance(error, str) or (error is None and isinstance(doc.get("detail"), str)):
        return error_body(status, client_message(error or doc["detail"]))[1]
    changed = False
    for holder in (doc, error):
        if isinstance(holder, dict) and isinstance(holder.get("message"), str):
            clean = sanitize(client_message(holder["message"]))
            if clean != holder["message"]:
                holder["message"] = clean
                changed = True
    if not changed:
        return body
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
