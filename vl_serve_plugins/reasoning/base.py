"""Shared machinery of vl-serve's reasoning parsers (vLLM 0.26 to 0.32).

vLLM's serving layer wraps a reasoning parser in a ``Parser``; per request it

1. calls ``is_reasoning_end(prompt_ids)``: True means the chat template already closed the think
   block, so the whole answer is content and the parser is never asked to split it;
2. otherwise calls ``adjust_initial_state_from_prompt(prompt_ids)`` once, then per streamed delta
   ``extract_reasoning_streaming`` followed by ``has_engine_confirmed_reasoning_end()`` (because
   these parsers set ``engine_based_streaming``); once that is True it hands the rest of the stream
   to the tool parser, or passes it through as content, and stops calling the reasoning parser;
3. for a non-streamed reply calls ``extract_reasoning(text, request)``;
4. 0.32 only: ``count_reasoning_tokens(output_ids)`` for ``usage.completion_tokens_details``.

The engine core (structured outputs) builds its own instance per request with the same
``chat_template_kwargs`` and calls ``is_reasoning_end(prompt_ids)`` and, per decode step,
``is_reasoning_end_streaming(all_ids, delta_ids)``.

Why ``engine_based_streaming``: the parser keeps its own state and never reads
``previous_text``/``previous_token_ids``, and then vLLM stops re-concatenating the whole output on
every delta when no (legacy) tool parser is configured. It also lets the stream go on through this
parser after ``</think>`` until the answer proper starts, which is what strips ERNIE's
``<response>`` wrapper in streaming as well.

Splitting is text-driven, with token ids as the trigger: a delta whose ids hold no marker token
is classified in O(1) by the current state; markers are located in the text only when their id
arrived. Text may lag its ids (stop-string hold-back, incomplete UTF-8), so a marker whose id came
but whose text has not is waited for, holding back at most ``len(marker) - 1`` characters.
"""

from __future__ import annotations

import enum
import operator
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, ClassVar

from vllm.reasoning.basic_parsers import BaseThinkingReasoningParser

# The only import that moved between the supported vLLM versions.
try:  # vLLM 0.32
    from vllm.entrypoints.generate.base.protocol import DeltaMessage
except ImportError:  # vLLM 0.26
    from vllm.entrypoints.openai.engine.protocol import DeltaMessage

__all__ = ["DeltaMessage", "VLThinkingReasoningParser"]

# How far back from the end of the prompt to look for the generation prompt's think markers.
_PROMPT_TAIL = 32


class _State(enum.IntEnum):
    UNDECIDED = 0  # nothing generated yet and no think block opened: the model may open one
    REASONING = 1
    AFTER_THINK = 2  # after </think> (or </response>): newlines dropped until the answer starts
    RESPONSE = (
        3  # inside ERNIE's <response>...</response>: content, wrapper and its newlines dropped
    )
    CONTENT = 4  # the answer proper: all content, handed back to vLLM in streaming


class _Splitter:
    """One pass over one model output: text in, (reasoning, content) out.

    The same state machine serves streaming and non-streaming, so both give the same split.
    """

    __slots__ = ("held", "out_c", "out_r", "partial", "pending", "started", "state", "t", "thought")

    # It holds the parser's tables, not the parser: no reference cycle, so a request's parsers
    # (vLLM builds two) are freed when the request ends, not by the next garbage collection.
    def __init__(self, tables: _Tables, state: _State) -> None:
        self.t = tables
        self.state = state
        self.thought = state is _State.REASONING
        self.pending: deque[str] = deque()  # markers whose id arrived but whose text has not
        self.partial = ""  # held-back text that may be the start of pending[0]
        self.held = ""  # held-back whitespace (UNDECIDED) or newlines (RESPONSE)
        self.started = False  # RESPONSE: first non-newline character seen
        self.out_r = ""
        self.out_c = ""

    # -- input --------------------------------------------------------------------------------

    def feed_marked(self, text: str, marker_ids: Iterable[int]) -> None:
        """Streaming: ``text`` is the delta text; ``marker_ids`` the marker ids among its ids."""
        strings = self.t.marker_strings
        self.pending.extend(strings[i] for i in marker_ids)
        text = self.partial + text
        self.partial = ""
        while self.pending:
            if self.state is _State.CONTENT:
                # The answer started: markers are plain text from here on.
                self.pending.clear()
                break
            marker = self.pending[0]
            at = text.find(marker)
            if at < 0:
                keep = _prefix_overlap(text, marker)
                if keep:
                    self.partial = text[-keep:]
                    text = text[:-keep]
                break
            self.plain(text[:at])
            self.marker(marker)
            self.pending.popleft()
            text = text[at + len(marker) :]
        self.plain(text)

    def feed_text(self, text: str) -> None:
        """Non-streaming: every occurrence of a marker string is a marker."""
        pieces = self.t.marker_re.split(text)
        self.plain(pieces[0])
        for i in range(1, len(pieces), 2):
            self.marker(pieces[i])
            self.plain(pieces[i + 1])

    def finish(self) -> None:
        """End of output: release whatever was held back."""
        self.pending.clear()
        partial, self.partial = self.partial, ""
        self.plain(partial)
        held, self.held = self.held, ""
        if held:
            if self.state is _State.REASONING:
                self.out_r += held
            else:
                self.out_c += held

    def take(self) -> tuple[str, str]:
        out = (self.out_r, self.out_c)
        self.out_r = self.out_c = ""
        return out

    # -- state machine ------------------------------------------------------------------------

    def plain(self, text: str) -> None:
        if not text:
            return
        state = self.state
        if state is _State.REASONING:
            self.out_r += text
        elif state is _State.CONTENT:
            self.out_c += text
        elif state is _State.AFTER_THINK:
            text = text.lstrip("\n")
            if text:
                self.state = _State.CONTENT
                self.out_c += text
        elif state is _State.UNDECIDED:
            text = self.held + text
            if text.isspace():
                self.held = text
            else:
                self.held = ""
                self.state = _State.CONTENT
                self.out_c += text
        else:  # RESPONSE
            if not self.started:
                text = text.lstrip("\n")
                if not text:
                    return
                self.started = True
            body = text.rstrip("\n")
            if body:
                self.out_c += self.held + body
                self.held = text[len(body) :]
            else:
                self.held += text

    def marker(self, marker: str) -> None:
        t = self.t
        state = self.state
        if marker == t.start_token:
            if state is _State.REASONING:
                return  # a repeated <think> inside reasoning is dropped
            if state is _State.UNDECIDED:
                self.held = ""
                self.state = _State.REASONING
                self.thought = True
                return
        elif marker == t.end_token:
            if state is _State.REASONING or state is _State.UNDECIDED:
                self.state = _State.AFTER_THINK
                self.thought = True
                return
            if state is _State.AFTER_THINK:
                return  # a duplicate </think> is dropped
        elif marker == t.response_start_token:
            if state is _State.AFTER_THINK:
                self.state = _State.RESPONSE
                self.started = False
                return
        elif marker == t.response_end_token and state is _State.RESPONSE:
            self.held = ""
            self.state = _State.AFTER_THINK
            return
        self.plain(marker)


def _prefix_overlap(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


class _Tables:
    """What a parser class needs of one tokenizer: marker ids and strings, the marker regex."""

    __slots__ = (
        "boundary_ids",
        "end_token",
        "marker_ids",
        "marker_re",
        "marker_strings",
        "markers_special",
        "response_end_token",
        "response_start_token",
        "start_token",
        "tokenizer",
        "vocab",
    )

    def __init__(self, parser: VLThinkingReasoningParser, tokenizer: Any) -> None:
        vocab = tokenizer.get_vocab()
        needed = [parser.start_token, parser.end_token]
        needed += [t for t in (parser.response_start_token, parser.response_end_token) if t]
        missing = [t for t in needed if t not in vocab]
        if missing:
            raise ValueError(
                f"reasoning parser {parser.parser_name!r} ({type(parser).__name__}) needs the "
                f"token(s) {', '.join(missing)}, which the model's tokenizer lacks"
            )
        self.start_token: str = parser.start_token
        self.end_token: str = parser.end_token
        self.response_start_token: str | None = parser.response_start_token
        self.response_end_token: str | None = parser.response_end_token
        self.tokenizer = tokenizer  # kept alive, so that its id() (the cache key) stays its own
        self.vocab = vocab
        self.marker_strings: dict[int, str] = {vocab[t]: t for t in needed}
        self.marker_ids = frozenset(self.marker_strings)
        self.marker_re = _marker_regex(tuple(needed))
        self.boundary_ids = frozenset(vocab[t] for t in parser.turn_boundary_tokens if t in vocab)
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        self.markers_special = not special.isdisjoint(self.marker_ids)


# (parser class, id(tokenizer)) -> its tables. A server has one tokenizer; tests build a few.
_TABLES: dict[tuple[type, int], _Tables] = {}


class VLThinkingReasoningParser(BaseThinkingReasoningParser):
    """``<think>...</think>`` reasoning, robust to the ways VL chat templates start a reply.

    Subclasses set the class attributes; nothing else is meant to differ between models.
    """

    # Public registry name, used in error messages.
    parser_name: ClassVar[str] = ""
    start_token: str = "<think>"
    end_token: str = "</think>"
    # Optional wrapper around the answer (ERNIE): dropped from content with its newlines.
    response_start_token: str | None = None
    response_end_token: str | None = None
    # Tokens that start or end a chat turn: the prompt is searched for the generation prompt's
    # think markers back to the nearest of these only, so earlier turns' reasoning is ignored.
    turn_boundary_tokens: ClassVar[tuple[str, ...]] = ()
    # Thinking mode when chat_template_kwargs do not say: None = decide from the prompt/output.
    default_thinking: ClassVar[bool | None] = None

    engine_based_streaming = True
    # vLLM's DelegatingParser.parse_delta may take its fast path for this parser (patches.py).
    vl_serve_fast_stream: ClassVar[bool] = True

    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        if not _patched:
            _patch_vllm()
        # vLLM builds two parsers per chat request (one to check the prompt, one for the
        # stream): what depends only on the class and the tokenizer is worked out once.
        tables = _TABLES.get((type(self), id(tokenizer)))
        if tables is None:
            tables = _Tables(self, tokenizer)
            _TABLES[(type(self), id(tokenizer))] = tables
        self._tables = tables
        self.__dict__["vocab"] = tables.vocab  # the base class's cached ``vocab``
        super().__init__(tokenizer, *args, **kwargs)
        self._marker_strings = tables.marker_strings
        self._marker_ids = tables.marker_ids
        self._marker_re = tables.marker_re
        self._boundary_ids = tables.boundary_ids
        # A special marker vanishes from the text with skip_special_tokens (see adjust_request).
        self._markers_special = tables.markers_special

        ctk = kwargs.get("chat_template_kwargs") or {}
        self.thinking: bool | None = self._thinking_from_kwargs(ctk)
        if self.thinking is None:
            self.thinking = self.default_thinking
        self._prompt_marker: int | None = None  # set by adjust_initial_state_from_prompt
        self._stream = _Splitter(self._tables, self._initial_state())
        self._thought: bool | None = None  # whether the last parsed output had reasoning

    # -- configuration --------------------------------------------------------------------------

    @classmethod
    def _thinking_from_kwargs(cls, chat_template_kwargs: Mapping[str, Any]) -> bool | None:
        value = chat_template_kwargs.get("enable_thinking")
        return None if value is None else bool(value)

    def _initial_state(self) -> _State:
        if self._prompt_marker == self.start_token_id:
            return _State.REASONING  # the template opened the think block
        if self._prompt_marker == self.end_token_id or self.thinking is False:
            return _State.CONTENT
        return _State.REASONING if self.thinking else _State.UNDECIDED

    def _prompt_think_marker(self, prompt_ids: Sequence[int]) -> int | None:
        """The last think marker of the generation prompt, ignoring earlier turns."""
        start, end, boundaries = self.start_token_id, self.end_token_id, self._boundary_ids
        for tid in reversed(prompt_ids[-_PROMPT_TAIL:]):
            if tid in (start, end):
                return tid
            if tid in boundaries:
                return None
        return None

    def adjust_request(self, request: Any) -> Any:
        if self._markers_special and getattr(request, "skip_special_tokens", False):
            request.skip_special_tokens = False
        return request

    # -- prompt -------------------------------------------------------------------------------

    def is_reasoning_end(self, input_ids: Sequence[int]) -> bool:
        # vLLM calls this with the prompt only (frontend and structured-output engine).
        marker = self._prompt_think_marker(input_ids)
        if marker is not None:
            return marker == self.end_token_id
        return self.thinking is False

    def adjust_initial_state_from_prompt(self, prompt_token_ids: Sequence[int]) -> None:
        self._prompt_marker = self._prompt_think_marker(prompt_token_ids)
        if not self._stream.out_r and not self._stream.out_c:
            self._stream = _Splitter(self._tables, self._initial_state())

    # -- streaming ----------------------------------------------------------------------------

    def is_reasoning_end_streaming(
        self, input_ids: Sequence[int], delta_ids: Iterable[int]
    ) -> bool:
        # Structured-output gate, per decode step: only the new ids are looked at.
        return self.thinking is False or self.end_token_id in delta_ids

    def extract_reasoning_streaming(
        self,
        previous_text: str,
        current_text: str,
        delta_text: str,
        previous_token_ids: Sequence[int],
        current_token_ids: Sequence[int],
        delta_token_ids: Sequence[int],
    ) -> DeltaMessage | None:
        s = self._stream
        markers = self._marker_ids
        if len(delta_token_ids) == 1:
            hit = delta_token_ids[0] in markers
        else:
            hit = not markers.isdisjoint(delta_token_ids)
        if not hit and not s.pending and not s.partial:
            # Fast path: the delta is entirely in the current state.
            if s.state is _State.REASONING:
                return DeltaMessage(reasoning=delta_text) if delta_text else None
            if s.state is _State.CONTENT:
                return DeltaMessage(content=delta_text) if delta_text else None
            s.plain(delta_text)
        else:
            ids = [t for t in delta_token_ids if t in markers] if hit else ()
            s.feed_marked(delta_text, ids)
        self._thought = s.thought
        reasoning, content = s.take()
        if not reasoning and not content:
            return None
        return DeltaMessage(reasoning=reasoning or None, content=content or None)

    def has_engine_confirmed_reasoning_end(self) -> bool:
        return self._stream.state is _State.CONTENT

    def finish_streaming(self) -> DeltaMessage | None:
        s = self._stream
        s.finish()
        reasoning, content = s.take()
        if not reasoning and not content:
            return None
        return DeltaMessage(reasoning=reasoning or None, content=content or None)

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        # vLLM calls this with the delta in which the answer starts.
        end = self.end_token_id
        if end in input_ids:
            return input_ids[input_ids.index(end) + 1 :]
        return input_ids if self._stream.state is _State.CONTENT else []

    # -- non-streaming ------------------------------------------------------------------------

    def extract_reasoning(self, model_output: str, request: Any) -> tuple[str | None, str | None]:
        thinking = self.thinking
        ctk = getattr(request, "chat_template_kwargs", None)
        if ctk:
            from_request = self._thinking_from_kwargs(ctk)
            if from_request is not None:
                thinking = from_request
        marker = self._prompt_marker  # known only if this instance also saw the prompt
        if marker == self.start_token_id or (marker is None and thinking):
            state = _State.REASONING
        elif marker == self.end_token_id or thinking is False:
            self._thought = False
            return None, model_output or None
        else:
            # Mode unknown, prompt unseen: a </think> before any <think> means the template
            # opened the block; otherwise the model may open one itself or just answer.
            end_at = model_output.find(self.end_token)
            start_at = model_output.find(self.start_token)
            opened = end_at >= 0 and not 0 <= start_at < end_at
            state = _State.REASONING if opened else _State.UNDECIDED
        s = _Splitter(self._tables, state)
        s.feed_text(model_output)
        s.finish()
        self._thought = s.thought
        return s.out_r or None, s.out_c or None

    # -- usage --------------------------------------------------------------------------------

    def count_reasoning_tokens(self, token_ids: Sequence[int]) -> int:
        thought = self._thought
        if thought is None:  # nothing parsed yet: decide from the ids
            state = self._initial_state()
            thought = state is _State.REASONING or (
                state is _State.UNDECIDED
                and bool(token_ids)
                and token_ids[0] == self.start_token_id
            )
        if not thought or not token_ids:
            return 0
        try:
            end = token_ids.index(self.end_token_id)
        except ValueError:
            end = len(token_ids)
        return end - operator.countOf(islice(token_ids, end), self.start_token_id)


_patched = False


def _patch_vllm() -> None:
    """Once per process, when the first parser is built (vLLM builds one at start-up to check the
    tokenizer): the streaming fast path of ``patches.apply_fast_parse_delta``."""
    global _patched
    _patched = True
    import logging

    from vl_serve_plugins.patches import apply_fast_parse_delta

    log = logging.getLogger("vllm.plugins.vl_serve")
    try:
        applied = apply_fast_parse_delta()
    except Exception:  # a speed-up only: vLLM's own method keeps working
        log.warning("vl-serve: fast per-delta path not applied", exc_info=True)
        return
    if applied:
        log.info("vl-serve: fast per-delta path in vLLM's DelegatingParser.parse_delta is on")


_regex_cache: dict[tuple[str, ...], re.Pattern[str]] = {}


def _marker_regex(markers: tuple[str, ...]) -> re.Pattern[str]:
    pattern = _regex_cache.get(markers)
    if pattern is None:
        pattern = re.compile("(" + "|".join(re.escape(m) for m in markers) + ")")
        _regex_cache[markers] = pattern
    return pattern
