"""Request bodies to and from JSON: parsed with the hostile-input checks, written back compactly.

:func:`decode_body` refuses, with a 400 and before vLLM sees the body, what vLLM would either
answer with a 500 or read differently from another parser: bytes that are not UTF-8 JSON, nesting
deeper than ``server.max_json_depth``, and a key repeated in one object (which of the two values
counts depends on the parser). jiter (a dependency of the ``openai`` package vLLM requires) checks
the bytes, the duplicates, integers longer than Python's ``int`` reads (4300 digits) and a fixed
nesting bound of about 200 levels in one pass; the configured depth is then checked on the parsed
value. Otherwise the result is what vLLM's ``json.loads`` reads: NaN and Infinity are accepted
as Python's parser accepts them; lone surrogate escapes (``"\\ud800"``), which are no text at
all, are refused. A changed body is written back with msgspec, or with :mod:`json` when it held
NaN or Infinity (msgspec would write them as null).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import jiter

from vl_serve.server.errors import RequestError

try:
    import msgspec.json as _msgspec_json
except ImportError:  # pragma: no cover
    _msgspec_json = None  # type: ignore[assignment]

_POSITION = re.compile(r" at line \d+ column \d+$")
_PARSER_DEPTH: Final = 200  # jiter's own nesting bound
_JITER: Final[dict[str, Any]] = {"catch_duplicate_keys": True, "cache_mode": "keys"}


def _refusal(exc: ValueError, max_depth: int) -> RequestError:
    text = str(exc)
    position = _POSITION.search(text)
    where = position.group(0) if position else ""
    if text.startswith("Detected duplicate key"):
        return RequestError(
            400,
            f"The request body repeats a key in one JSON object{where}; send each key once.",
            None,
            "duplicate_json_key",
        )
    if text.startswith("recursion limit exceeded"):
        return _too_deep_error(min(max_depth, _PARSER_DEPTH))
    reason = text[: position.start()] if position else text
    return RequestError(
        400,
        f"The request body is not valid UTF-8 JSON: {reason[:120]}{where}.",
        None,
        "invalid_json",
    )


def _too_deep_error(limit: int) -> RequestError:
    return RequestError(
        400,
        f"The request body nests arrays and objects more than {limit} levels deep "
        "(server.max_json_depth).",
        None,
        "json_too_deep",
    )


def _too_deep(value: Any, levels: int) -> bool:
    """Whether the container ``value`` nests more than ``levels`` containers deep (itself one)."""
    levels -= 1
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if (kind is dict or kind is list) and (levels == 0 or _too_deep(item, levels)):
            return True
    return False


def decode_body(body: bytes, max_depth: int) -> tuple[Any, bool]:
    """(parsed body, whether msgspec may write it back). Raises RequestError (400) for a body that
    is not UTF-8 JSON, nests deeper than ``max_depth`` or repeats a key in one object."""
    finite = True
    try:
        value = jiter.from_json(body, allow_inf_nan=False, **_JITER)
    except ValueError:
        # NaN or Infinity, which msgspec would write back as null, or a refusal.
        finite = False
        try:
            value = jiter.from_json(body, allow_inf_nan=True, **_JITER)
        except ValueError as exc:
            raise _refusal(exc, max_depth) from None
    if type(value) in (dict, list) and _too_deep(value, max_depth):
        raise _too_deep_error(max_depth)
    return value, finite


def encode_body(req: dict[str, Any], fast: bool) -> bytes:
    """Compact JSON of ``req``; ``fast`` (no NaN or Infinity in it) lets msgspec write it."""
    if fast and _msgspec_json is not None:
        try:
            out: bytes = _msgspec_json.encode(req)
            return out
        except Exception:  # something the media hook added that msgspec does not take
            pass
    return json.dumps(req, ensure_ascii=False, separators=(",", ":")).encode()
