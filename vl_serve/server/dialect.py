"""FastDeploy / Qianfan request dialect: which bodies to look into, and their fields in vLLM's terms.

Pure functions, no I/O. ``scan_markers`` looks at the raw bytes so that most bodies are neither
rewritten nor searched for media; ``rewrite_request`` works on a parsed JSON body:

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
* On completion-shaped routes (``/v1/completions``) there is no chat template: the thinking switch is checked and dropped,
  the budget is mapped.
* Badly typed values raise :class:`~vl_serve.server.errors.RequestError` (a 400 naming the field,
  code ``invalid_parameter``).

A structured-output request (``response_format`` of type ``json_schema``/``json_object``, or
``structured_outputs``) that leaves thinking unset is answered directly under a parser whose
templates leave thinking to the model (``qwen3_vl``): ``enable_thinking: false`` is written for
it (:func:`answer_directly`). vLLM holds the grammar back until the reasoning part ends, and with
thinking unset an Instruct or hybrid prompt gives no sign of whether the model will open one, so
without the switch a direct answer would never be held to the grammar. A template that always
opens ``<think>`` (Thinking) still does, and its answer after ``</think>`` is held to it. A
request that sends ``chat_template_kwargs: {enable_thinking: null}`` (or a server default)
leaves thinking to the model: the grammar then holds from the end of a reasoning part only.

The response side (``reasoning_content``) is in :mod:`vl_serve.server.reasoning_content`.
"""

from __future__ import annotations

import re
from typing import Any, Final

from vl_serve.server.errors import RequestError

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
# memchr beats any scan of every byte there. Bodies with many quotes go on with the regex, and so
# do small ones, where the regex alone is cheaper (benchmarks/middleware_microbench.py).
_HOP_MIN_SIZE: Final = 24 * 1024
_HOP_MAX_QUOTES: Final = 48

# Largest budget passed on: vLLM keeps budgets in int32 tensors.
_MAX_BUDGET: Final = 2**31 - 1

_MISSING: Final[Any] = object()


def _may_have_unicode_escape(body: bytes) -> bool:
    """Whether ``body`` has a backslash followed by ``u``, hopping from backslash to backslash with
    the one-byte search (memchr) rather than searching for the two bytes."""
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


def _invalid(message: str, param: str) -> RequestError:
    return RequestError(400, message, param, "invalid_parameter")


def _bool_field(value: Any, param: str) -> Any:
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return value
    raise _invalid(f"`{param}` must be a boolean (true or false).", param)


def _budget_field(value: Any, param: str) -> Any:
    if value is None:
        return _MISSING
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_BUDGET:
        return value
    raise _invalid(
        f"`{param}` must be an integer between 0 and {_MAX_BUDGET} (tokens of reasoning).", param
    )


def rewrite_request(req: dict[str, Any], *, chat: bool, reasoning_parser: str | None) -> bool:
    """Normalise the dialect fields of a parsed request in place; True if anything changed.

    Raises RequestError for badly typed dialect fields.
    """
    changed = False
    meta_think = meta_budget = _MISSING
    meta = req.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise _invalid("`metadata` must be an object.", "metadata")
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
            raise _invalid("`chat_template_kwargs` must be an object.", "chat_template_kwargs")
    if budget is not _MISSING and reasoning_parser:
        req["thinking_token_budget"] = budget
    return changed


# Parsers whose model families' templates leave thinking to the model when no switch is given.
_UNDECIDED_PARSERS: Final = frozenset({"qwen3_vl"})
_GRAMMAR_FORMATS: Final = frozenset({"json_schema", "json_object", "structural_tag"})


def _asks_for_grammar(req: dict[str, Any]) -> bool:
    fmt = req.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in _GRAMMAR_FORMATS:
        return True
    outputs = req.get("structured_outputs")
    return isinstance(outputs, dict) and any(v is not None for v in outputs.values())


def answer_directly(
    req: dict[str, Any], reasoning_parser: str | None, default_thinking: bool | None
) -> bool:
    """Turn thinking off for a structured-output chat request that leaves it unset (see the
    module docstring); True if the request changed."""
    if reasoning_parser not in _UNDECIDED_PARSERS or default_thinking is not None:
        return False
    kwargs = req.get("chat_template_kwargs")
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict) or "enable_thinking" in kwargs:
        return False  # an explicit null leaves thinking to the model, grammar or not
    if not _asks_for_grammar(req):
        return False
    kwargs["enable_thinking"] = False
    req["chat_template_kwargs"] = kwargs
    return True
