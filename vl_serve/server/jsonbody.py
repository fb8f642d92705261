"""Request bodies to and from JSON: msgspec where it reads them as vLLM's ``json.loads`` does.

msgspec is a vLLM dependency and quicker than :mod:`json` both ways; what it refuses (NaN,
Infinity, a BOM, lone surrogates), :mod:`json` reads, so the result is always what vLLM would have
parsed from the original body.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import msgspec.json as _msgspec_json
except ImportError:  # pragma: no cover
    _msgspec_json = None  # type: ignore[assignment]


def decode_body(body: bytes) -> tuple[Any, bool]:
    """(parsed body or None, whether msgspec parsed it). Same result as vLLM's ``json.loads``."""
    if _msgspec_json is not None:
        try:
            return _msgspec_json.decode(body), True
        except Exception:  # NaN, Infinity, a BOM, lone surrogates: json.loads accepts those
            pass
    try:
        return json.loads(body), False
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None, False


def encode_body(req: dict[str, Any], fast: bool) -> bytes:
    """Compact JSON of ``req``; ``fast`` (msgspec decoded it) lets msgspec write it too."""
    if fast and _msgspec_json is not None:
        try:
            out: bytes = _msgspec_json.encode(req)
            return out
        except Exception:  # something the media hook added that msgspec does not take
            pass
    try:
        return json.dumps(req, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes: keep them escaped
        return json.dumps(req, separators=(",", ":")).encode()
