"""The reasoning/content splitter: one state machine over a model's output, streamed or whole.

Splitting is text-driven, with token ids as the trigger: a delta whose ids hold no marker token
is classified in O(1) by the current state; markers are located in the text only when their id
arrived. Text may lag its ids (stop-string hold-back, incomplete UTF-8), so a marker whose id came
but whose text has not is waited for, holding back at most ``len(marker) - 1`` characters.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol


class MarkerSpec(Protocol):
    """The marker tokens of a parser class (what :class:`MarkerTables` reads of it)."""

    @property
    def parser_name(self) -> str: ...
    @property
    def start_token(self) -> str: ...
    @property
    def end_token(self) -> str: ...
    @property
    def response_start_token(self) -> str | None: ...
    @property
    def response_end_token(self) -> str | None: ...
    @property
    def turn_boundary_tokens(self) -> tuple[str, ...]: ...


class State(enum.IntEnum):
    """Where in the model's output the splitter is."""

    UNDECIDED = 0  # nothing generated yet and no think block opened: the model may open one
    REASONING = 1
    AFTER_THINK = 2  # after </think> (or </response>): newlines dropped until the answer starts
    # Inside ERNIE's <response>...</response>: content, the wrapper and its newlines dropped.
    RESPONSE = 3
    CONTENT = 4  # the answer proper: all content, handed back to vLLM in streaming


class Splitter:
    """One pass over one model output: text in, (reasoning, content) out.

    The same state machine serves streaming and non-streaming, so both give the same split.
    """

    __slots__ = ("held", "out_c", "out_r", "partial", "pending", "started", "state", "t", "thought")

    # It holds the parser's tables, not the parser: no reference cycle, so a request's parsers
    # (vLLM builds two) are freed when the request ends, not by the next garbage collection.
    def __init__(self, tables: MarkerTables, state: State) -> None:
        self.t = tables
        self.state = state
        self.thought = state is State.REASONING
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
            if self.state is State.CONTENT:
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
            if self.state is State.REASONING:
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
        if state is State.REASONING:
            self.out_r += text
        elif state is State.CONTENT:
            self.out_c += text
        elif state is State.AFTER_THINK:
            text = text.lstrip("\n")
            if text:
                self.state = State.CONTENT
                self.out_c += text
        elif state is State.UNDECIDED:
            text = self.held + text
            if text.isspace():
                self.held = text
            else:
                self.held = ""
                self.state = State.CONTENT
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
            if state is State.REASONING:
                return  # a repeated <think> inside reasoning is dropped
            if state is State.UNDECIDED:
                self.held = ""
                self.state = State.REASONING
                self.thought = True
                return
        elif marker == t.end_token:
            if state is State.REASONING or state is State.UNDECIDED:
                self.state = State.AFTER_THINK
                self.thought = True
                return
            if state is State.AFTER_THINK:
                return  # a duplicate </think> is dropped
        elif marker == t.response_start_token:
            if state is State.AFTER_THINK:
                self.state = State.RESPONSE
                self.started = False
                return
        elif marker == t.response_end_token and state is State.RESPONSE:
            self.held = ""
            self.state = State.AFTER_THINK
            return
        self.plain(marker)


def _prefix_overlap(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


class MarkerTables:
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

    def __init__(self, parser: MarkerSpec, tokenizer: Any) -> None:
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
_TABLES: dict[tuple[type, int], MarkerTables] = {}


def marker_tables(parser: MarkerSpec, tokenizer: Any) -> MarkerTables:
    """The tables of ``parser``'s class for ``tokenizer``, worked out once per pair."""
    key = (type(parser), id(tokenizer))
    tables = _TABLES.get(key)
    if tables is None:
        tables = _TABLES[key] = MarkerTables(parser, tokenizer)
    return tables


_regex_cache: dict[tuple[str, ...], re.Pattern[str]] = {}


def _marker_regex(markers: tuple[str, ...]) -> re.Pattern[str]:
    pattern = _regex_cache.get(markers)
    if pattern is None:
        pattern = re.compile("(" + "|".join(re.escape(m) for m in markers) + ")")
        _regex_cache[markers] = pattern
    return pattern
