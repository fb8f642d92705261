"""The ``reasoning_content`` response rewrite: a byte splice on vLLM's JSON and SSE output.

vLLM answers with a ``"reasoning":`` key; FastDeploy/Qianfan clients read ``reasoning_content``.
The key is renamed or, for ``both``, repeated under the new name right after it, copying the
value's bytes (``null`` or a JSON string) without parsing the document. vLLM writes compact JSON
(``json.dumps(separators=(",", ":"))`` and pydantic's ``model_dump_json``), which this relies on:
a key is recognised right after ``{`` or ``,``. vLLM never writes ``reasoning_content`` in
responses, so no duplicate key can arise.
"""

from __future__ import annotations

from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Final

KEY: Final = b'"reasoning":'
_OPEN_KEY: Final = b'{"reasoning":'
_NEXT_KEY: Final = b',"reasoning":'
_OPEN_ALIAS: Final = b'{"reasoning_content":'
_NEXT_ALIAS: Final = b',"reasoning_content":'
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
    string.
    """
    pos = buf.find(KEY)
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
        start = pos + len(KEY)
        if pos and buf[pos - 1] in _KEY_PRECEDERS:
            end = find(b'"', start + 1) + 1 if buf.startswith(b'"', start) else 0
            if end and buf[end - 2] == _BACKSLASH:  # an escape before the quote: scan exactly
                end = _string_end_slow(buf, start)
            elif not end and buf.startswith(b"null", start):
                end = start + 4
            if end > 0:
                parts += (buf[last:end], _NEXT_ALIAS, buf[start:end])
                last = start = end
        pos = find(KEY, start)
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
        """The rewritten complete events of ``chunk`` (with what was held back before it)."""
        if self.tail:
            chunk = self.tail + chunk
            self.tail = b""
        if more and not chunk.endswith(b"\n\n"):
            cut = chunk.rfind(b"\n\n")
            cut = 0 if cut < 0 else cut + 2
            self.tail = chunk[cut:]
            chunk = chunk[:cut]
        return rewrite_reasoning(chunk, self.both)
