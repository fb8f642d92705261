"""FastDeploy / Qianfan request and response dialect, as pure functions (no I/O).

Request side (``rewrite_request``), on a parsed JSON body:

* thinking switch: top-level ``enable_thinking`` > ``metadata.enable_thinking`` >
  ``chat_template_kwargs.enable_thinking`` (FastDeploy's own order: the request's fields override
  the template kwargs). The winner is written to ``chat_template_kwargs.enable_thinking``, which
  vLLM hands to the chat template and to the reasoning parser. ``null`` means "not given".
* ``reasoning_max_tokens`` (top-level > ``metadata``) becomes vLLM's ``thinking_token_budget``
  (it overrides one the request also set). vLLM refuses a budget when no reasoning parser is
  configured, so without one the field is accepted and dropped, as FastDeploy does for models
  that do not think.
* The dialect keys are removed; ``metadata`` is removed when nothing else is left in it. Other
  ``metadata`` keys are OpenAI's free-form metadata: vLLM ignores them, so they stay.
* On ``/v1/completions`` there is no chat template: the thinking switch is checked and dropped,
  the budget is mapped.
* Badly typed values raise ``DialectError`` (an OpenAI-shaped 400 naming the field).

Response side (``rewrite_reasoning``), on raw JSON bytes: vLLM's ``"reasoning":`` key is renamed
to ``"reasoning_content":`` or, for ``both``, repeated under that name right after it, copying
the value's bytes (``null`` or a JSON string) without parsing the document. vLLM writes compact
JSON (``json.dumps(separators=(",", ":"))`` and pydantic's ``model_dump_json``), which this relies
on: a key is recognised right after ``{`` or ``,``.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any, Final

CHAT_PATH: Final = "/v1/chat/completions"
COMPLETIONS_PATH: Final = "/v1/completions"

# A body is parsed only when one of these follows a quote in its bytes. The dialect keys end in
# a quote (a key, not text: quotes inside strings are escaped). The media markers are what
# vl_serve.media acts on: image/video/audio parts (OpenAI, qwen-vl-utils and Responses forms) and
# client mm_processor_kwargs / media_io_kwargs.
_DIALECT_AFTER_QUOTE: Final = (b'enable_thinking"', b'reasoning_max_tokens"', b'metadata"')
_MEDIA_AFTER_QUOTE: Final = (
    b"image",
    b"video",
    b"audio",
    b"input_image",
    b"input_audio",
    b'mm_processor_kwargs"',
    b'media_io_kwargs"',
)
_AFTER_QUOTE: Final = _DIALECT_AFTER_QUOTE + _MEDIA_AFTER_QUOTE
_MARKERS: Final = re.compile(
    b'"(?:' + b"|".join(re.escape(marker) for marker in _AFTER_QUOTE) + b")"
)
# Big bodies are mostly one or two long strings (base64 images): hopping from quote to quote with
# memchr beats any scan of every byte there. Bodies with many quotes go on with the regex. Below
# about 24 KiB the regex alone is cheaper (a 4.7 KB request with one small image: 2.5 us against
# 7.8 us of hopping over its 42 quotes; equal near 30 KB).
_HOP_MIN_SIZE: Final = 24 * 1024
_HOP_MAX_QUOTES: Final = 48

# Largest budget passed on: vLLM keeps budgets in int32 tensors.
_MAX_BUDGET: Final = 2**31 - 1
_QUOTE: Final = 0x22

_MISSING: Final[Any] = object()


class DialectError(Exception):
    """A request the server refuses: becomes ``{"error": {...}}`` with ``status``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def _may_have_unicode_escape(body: bytes) -> bool:
    """Whether ``body`` has a backslash followed by ``u`` (hopping from backslash to backslash:
    ``b"\\u" in body`` is a two-byte search, several times slower than memchr on big bodies)."""
    find = body.find
    i = find(b"\\")
    hops = _HOP_MAX_QUOTES
    while i >= 0:
        if body[i + 1 : i + 2] == b"u":
            return True
        hops -= 1
        if not hops:  # text full of escapes: search the rest in one go
            return b"\\u" in body[i:]
        i = find(b"\\", i + 2)
    return False


def scan_markers(body: bytes) -> tuple[bool, bool]:
    """Cheap check of a raw body: (could hold a dialect field, could hold media for vl_serve.media)."""
    if _may_have_unicode_escape(body):
        # A JSON escape can spell any key ("\u0069mage_url"): only a real parse can tell.
        return True, True
    dialect = media = False
    start = 0
    if len(body) >= _HOP_MIN_SIZE:
        find = body.find
        startswith = body.startswith
        hops = _HOP_MAX_QUOTES
        i = find(b'"')
        while i >= 0:
            i += 1
            if startswith(_AFTER_QUOTE, i):
                if startswith(_MEDIA_AFTER_QUOTE, i):
                    media = True
                else:
                    dialect = True
            hops -= 1
            if not hops:
                start = i
                break
            i = find(b'"', i)
        else:
            return dialect, media
    for match in _MARKERS.findall(body, start):
        if match[1:].startswith(_MEDIA_AFTER_QUOTE):
            media = True
        else:
            dialect = True
    return dialect, media


def _bool_field(value: Any, param: str) -> Any:
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return value
    raise DialectError(f"`{param}` must be a boolean (true or false).", param)


def _budget_field(value: Any, param: str) -> Any:
    if value is None:
        return _MISSING
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_BUDGET:
        return value
    raise DialectError(
        f"`{param}` must be an integer between 0 and {_MAX_BUDGET} (tokens of reasoning).", param
    )


def rewrite_request(req: dict[str, Any], *, chat: bool, reasoning_parser: str | None) -> bool:
    """Normalise the dialect fields of a parsed request in place; True if anything changed.

    Raises DialectError for badly typed dialect fields.
    """
    changed = False
    meta_think = meta_budget = _MISSING
    meta = req.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise DialectError("`metadata` must be an object.", "metadata")
        if "enable_thinking" in meta:
            meta_think = _bool_field(meta.pop("enable_thinking"), "metadata.enable_thinking")
            changed = True
        if "reasoning_max_tokens" in meta:
            meta_budget = _budget_field(
                meta.pop("reasoning_max_tokens"), "metadata.reasoning_max_tokens"
            )
            changed = True
        if changed and not meta:
            del req["metadata"]

    think = meta_think
    if "enable_thinking" in req:
        value = _bool_field(req.pop("enable_thinking"), "enable_thinking")
        if value is not _MISSING:
            think = value
        changed = True
    budget = meta_budget
    if "reasoning_max_tokens" in req:
        value = _budget_field(req.pop("reasoning_max_tokens"), "reasoning_max_tokens")
        if value is not _MISSING:
            budget = value
        changed = True

    if chat and think is not _MISSING:
        kwargs = req.get("chat_template_kwargs")
        if kwargs is None:
            req["chat_template_kwargs"] = {"enable_thinking": think}
        elif isinstance(kwargs, dict):
            kwargs["enable_thinking"] = think
        else:
            raise DialectError("`chat_template_kwargs` must be an object.", "chat_template_kwargs")
    if budget is not _MISSING and reasoning_parser:
        req["thinking_token_budget"] = budget
    return changed


# --- errors -------------------------------------------------------------------------------------

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
    <_io.BytesIO object at 0x...>`` in vLLM 0.26, say), so its answers get the same scrubbing as
    ours. Returns ``body`` itself when nothing changed or it is not a JSON object.
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


# --- response rewriting -------------------------------------------------------------------------

_KEY: Final = b'"reasoning":'
_OPEN_KEY: Final = b'{"reasoning":'
_NEXT_KEY: Final = b',"reasoning":'
_OPEN_ALIAS: Final = b'{"reasoning_content":'
_NEXT_ALIAS: Final = b',"reasoning_content":'
_COMMA_ALIAS: Final = b',"reasoning_content":'
_KEY_PRECEDERS: Final = frozenset(b"{,")
_BACKSLASH: Final = 0x5C


def _string_end_slow(buf: bytes, start: int) -> int:
    """End (exclusive) of the JSON string whose opening quote is at ``start``, or -1."""
    try:
        text = buf[start + 1 :].decode()
        end = scanstring(text, 0, False)[1]
    except ValueError:  # unterminated, or not UTF-8
        return -1
    return start + 1 + len(text[:end].encode())


def rewrite_reasoning(buf: bytes, both: bool) -> bytes:
    """Add (``both``) or rename to ``"reasoning_content"`` every ``"reasoning"`` key in ``buf``.

    ``buf`` is compact JSON (what vLLM writes) or a run of complete SSE events. Returns ``buf``
    itself when there is nothing to do. A key counts only right after ``{`` or ``,``: inside a
    JSON string its quote would be escaped. ``both`` copies the value when it is ``null`` or a
    string. vLLM (0.26 to 0.32) never writes ``reasoning_content`` in responses, so no duplicate
    key can arise.
    """
    pos = buf.find(_KEY)
    if pos < 0:
        return buf
    return rewrite_reasoning_at(buf, pos, both)


def rewrite_reasoning_at(buf: bytes, pos: int, both: bool) -> bytes:
    """``rewrite_reasoning`` for a ``buf`` whose first ``"reasoning":`` is at ``pos``."""
    if not both:
        return buf.replace(_OPEN_KEY, _OPEN_ALIAS).replace(_NEXT_KEY, _NEXT_ALIAS)
    parts: list[bytes] = []
    last = 0
    find = buf.find
    while pos >= 0:
        start = pos + 12  # len(_KEY)
        if pos and buf[pos - 1] in _KEY_PRECEDERS:
            end = find(b'"', start + 1) + 1 if buf.startswith(b'"', start) else 0
            if end and buf[end - 2] == _BACKSLASH:  # an escape before the quote: scan exactly
                end = _string_end_slow(buf, start)
            elif not end and buf.startswith(b"null", start):
                end = start + 4
            if end > 0:
                parts += (buf[last:end], _COMMA_ALIAS, buf[start:end])
                last = start = end
        pos = find(_KEY, start)
    if not parts:
        return buf
    parts.append(buf[last:])
    return b"".join(parts)


class SSERewriter:
    """Rewrites a stream of SSE bytes that may split or merge events arbitrarily.

    Complete events (up to the last blank line) are rewritten and passed on; a partial tail waits
    for the rest. vLLM writes one whole event per body message, so the tail is normally empty and
    a chunk without ``"reasoning":`` is passed on as the same bytes object.
    """

    __slots__ = ("both", "tail")

    def __init__(self, both: bool) -> None:
        self.both = both
        self.tail = b""

    def feed(self, chunk: bytes, more: bool) -> bytes:
        if self.tail:
            chunk = self.tail + chunk
            self.tail = b""
        if more and not chunk.endswith(b"\n\n"):
            cut = chunk.rfind(b"\n\n")
            cut = 0 if cut < 0 else cut + 2
            self.tail = chunk[cut:]
            chunk = chunk[:cut]
        return rewrite_reasoning(chunk, self.both)
