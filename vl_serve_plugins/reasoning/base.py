"""Base of vl-serve's reasoning parsers: vLLM's thinking parser, robust to VL chat templates.

vLLM's serving layer wraps a reasoning parser in a ``Parser``; per request it

1. calls ``is_reasoning_end(prompt_ids)``: True means the chat template already closed the think
   block, so the whole answer is content and the parser is never asked to split it;
2. otherwise calls ``adjust_initial_state_from_prompt(prompt_ids)`` once, then per streamed delta
   ``extract_reasoning_streaming`` followed by ``has_engine_confirmed_reasoning_end()`` (because
   these parsers set ``engine_based_streaming``); once that is True it hands the rest of the stream
   to the tool parser, or passes it through as content, and stops calling the reasoning parser;
3. for a non-streamed reply calls ``extract_reasoning(text, request)``;
4. ``count_reasoning_tokens(output_ids)`` for ``usage.completion_tokens_details``.

The engine core (structured outputs) builds its own instance per request with the same
``chat_template_kwargs`` and calls ``is_reasoning_end(prompt_ids)`` and, per decode step,
``is_reasoning_end_streaming(all_ids, delta_ids)``.

Why ``engine_based_streaming``: the parser keeps its own state and never reads
``previous_text``/``previous_token_ids``, and then vLLM stops re-concatenating the whole output on
every delta when no (legacy) tool parser is configured. It also lets the stream go on through this
parser after ``</think>`` until the answer proper starts, which is what strips ERNIE's
``<response>`` wrapper in streaming as well.

The split itself, the same for streaming and non-streaming, is :mod:`.splitter`'s state machine.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, ClassVar

from vllm.entrypoints.generate.base.protocol import DeltaMessage
from vllm.reasoning.basic_parsers import BaseThinkingReasoningParser

from vl_serve_plugins.patches import apply_reasoning_patches
from vl_serve_plugins.reasoning.splitter import Splitter, State, marker_tables

__all__ = ["DeltaMessage", "VLThinkingReasoningParser"]

# How far back from the end of the prompt to look for the generation prompt's think markers.
_PROMPT_TAIL = 32


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
        # The first parser is built at server start-up (vLLM checks the tokenizer with it).
        apply_reasoning_patches()
        # vLLM builds two parsers per chat request (one to check the prompt, one for the
        # stream): what depends only on the class and the tokenizer is worked out once.
        tables = marker_tables(self, tokenizer)
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
        self._stream = Splitter(self._tables, self._initial_state())
        self._thought: bool | None = None  # whether the last parsed output had reasoning
        self._gate_opened: bool | None = None  # the structured-output gate saw <think> opened

    # -- configuration --------------------------------------------------------------------------

    @classmethod
    def _thinking_from_kwargs(cls, chat_template_kwargs: Mapping[str, Any]) -> bool | None:
        value = chat_template_kwargs.get("enable_thinking")
        return None if value is None else bool(value)

    def _initial_state(self) -> State:
        if self._prompt_marker == self.start_token_id:
            return State.REASONING  # the template opened the think block
        if self._prompt_marker == self.end_token_id or self.thinking is False:
            return State.CONTENT
        return State.REASONING if self.thinking else State.UNDECIDED

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
        # vLLM calls this with the prompt only (frontend and structured-output engine). On the
        # non-streaming path it is the one place the frontend's parser sees the prompt (vLLM's
        # DelegatingParser.set_prompt_token_ids passes it nowhere), so the marker is kept here
        # for extract_reasoning, as adjust_initial_state_from_prompt keeps it when streaming.
        marker = self._prompt_think_marker(input_ids)
        self._remember_prompt_marker(marker)
        if marker is not None:
            return marker == self.end_token_id
        return self.thinking is False

    def adjust_initial_state_from_prompt(self, prompt_token_ids: Sequence[int]) -> None:
        self._remember_prompt_marker(self._prompt_think_marker(prompt_token_ids))

    def _remember_prompt_marker(self, marker: int | None) -> None:
        """Start from what the prompt says, unless this parser has already parsed output."""
        s = self._stream
        if self._thought is None and not s.out_r and not s.out_c:
            self._prompt_marker = marker
            self._stream = Splitter(self._tables, self._initial_state())

    # -- streaming ----------------------------------------------------------------------------

    def is_reasoning_end_streaming(
        self, input_ids: Sequence[int], delta_ids: Iterable[int]
    ) -> bool:
        # Structured-output gate, per decode step: only the new ids are looked at, and once the
        # prompt's own marker (``input_ids`` starts with the prompt): a template that opened the
        # think block whatever the switch (Thinking) is reasoning until ``</think>``.
        opened = self._gate_opened
        if opened is None:
            delta = list(delta_ids)
            ids = list(input_ids[-(len(delta) + _PROMPT_TAIL) :])
            marker = self._prompt_think_marker(ids[: len(ids) - len(delta)])
            opened = self._gate_opened = marker == self.start_token_id
            delta_ids = delta
        return (self.thinking is False and not opened) or self.end_token_id in delta_ids

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
            if s.state is State.REASONING:
                return DeltaMessage(reasoning=delta_text) if delta_text else None
            if s.state is State.CONTENT:
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
        return self._stream.state is State.CONTENT

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
        return input_ids if self._stream.state is State.CONTENT else []

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
            state = State.REASONING
        elif marker == self.end_token_id or thinking is False:
            self._thought = False
            return None, model_output or None
        else:
            # Mode unknown, prompt unseen: a </think> before any <think> means the template
            # opened the block; otherwise the model may open one itself or just answer.
            end_at = model_output.find(self.end_token)
            start_at = model_output.find(self.start_token)
            opened = end_at >= 0 and not 0 <= start_at < end_at
            state = State.REASONING if opened else State.UNDECIDED
        s = Splitter(self._tables, state)
        s.feed_text(model_output)
        s.finish()
        self._thought = s.thought
        return s.out_r or None, s.out_c or None

    # -- usage --------------------------------------------------------------------------------

    def count_reasoning_tokens(self, token_ids: Sequence[int]) -> int:
        thought = self._thought
        if thought is None:  # nothing parsed yet: decide from the ids
            state = self._initial_state()
            thought = state is State.REASONING or (
                state is State.UNDECIDED and bool(token_ids) and token_ids[0] == self.start_token_id
            )
        if not thought or not token_ids:
            return 0
        try:
            end = token_ids.index(self.end_token_id)
        except ValueError:
            end = len(token_ids)
        return end - operator.countOf(islice(token_ids, end), self.start_token_id)
