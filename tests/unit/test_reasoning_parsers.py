"""vl-serve's reasoning parsers, driven the way vLLM's chat serving code drives them.

Streaming goes through vLLM's own ``Parser.parse_delta`` (the object the server holds per request)
with deltas made by the tokenizers ``DecodeStream`` that vLLM's detokenizer uses, optionally with
the text held back as vLLM does for stop strings; non-streaming through ``Parser.parse``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tokenizers.decoders import DecodeStream
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.parser.parser_manager import ParserManager
from vllm.reasoning import ReasoningParserManager

import vl_serve_plugins
from tests.helpers.reasoning_cases import CASES, ReasoningCase
from vl_serve.builtin import build_qwen_tokenizer
from vl_serve.builtin.ernie45_vl import build_ernie_tokenizer
from vl_serve_plugins.reasoning.ernie45_vl import Ernie45VLReasoningParser
from vl_serve_plugins.reasoning.qwen3_vl import Qwen3VLReasoningParser

# (token ids per delta, characters of text held back until the end: vLLM's stop-string buffer)
DELTA_SHAPES = [(1, 0), (2, 0), (3, 0), (5, 0), (10_000, 0), (1, 6), (4, 3)]


@pytest.fixture(scope="session")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    qwen_dir = tmp_path_factory.mktemp("qwen-tok")
    ernie_dir = tmp_path_factory.mktemp("ernie-tok")
    build_qwen_tokenizer(qwen_dir)
    build_ernie_tokenizer(ernie_dir)
    vl_serve_plugins.register()
    return {
        "qwen3_vl": AutoTokenizer.from_pretrained(qwen_dir),
        "ernie45_vl": AutoTokenizer.from_pretrained(ernie_dir),
    }


def _request(case: ReasoningCase, stream: bool) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="tiny",
        messages=[{"role": "user", "content": "What is 2+2?"}],
        chat_template_kwargs=case.chat_template_kwargs or None,
        stream=stream,
    )


def _parser_cls(tok: Any, **kwargs: Any) -> Any:
    parser_cls = ParserManager.get_parser(tokenizer=tok, **kwargs)
    assert parser_cls is not None
    return parser_cls


def _parser(case: ReasoningCase, tok: Any, tool_parser: str | None = None) -> Any:
    parser_cls = _parser_cls(tok, tool_parser_name=tool_parser, reasoning_parser_name=case.parser)
    # As ChatCompletionServing._make_parser builds it.
    return parser_cls(tok, None, chat_template_kwargs=dict(case.chat_template_kwargs))


def _deltas(
    tok: Any, prompt_ids: list[int], out_ids: list[int], per_delta: int, holdback: int
) -> Iterator[tuple[str, list[int], bool]]:
    """(delta_text, delta_token_ids, finished) as vLLM's output processor produces them."""
    try:  # primed with the prompt, as vLLM does
        stream = DecodeStream(ids=prompt_ids, skip_special_tokens=True)
    except TypeError:  # older tokenizers
        stream = DecodeStream(skip_special_tokens=True)
    text, sent = "", 0
    for start in range(0, len(out_ids), per_delta):
        ids = out_ids[start : start + per_delta]
        for tid in ids:
            text += stream.step(tok.backend_tokenizer, tid) or ""
        finished = start + per_delta >= len(out_ids)
        upto = len(text) if finished else max(sent, len(text) - holdback)
        yield text[sent:upto], ids, finished
        sent = upto


def _join(parts: list[str]) -> str | None:
    return "".join(parts) or None


def _stream(
    case: ReasoningCase, tok: Any, per_delta: int, holdback: int, tool_parser: str | None = None
) -> tuple[str | None, str | None, Any]:
    parser = _parser(case, tok, tool_parser)
    request = _request(case, stream=True)
    prompt_ids = tok.encode(case.prompt, add_special_tokens=False)
    out_ids = tok.encode(case.output, add_special_tokens=False)
    reasoning: list[str] = []
    content: list[str] = []
    for text, ids, finished in _deltas(tok, prompt_ids, out_ids, per_delta, holdback):
        msg = parser.parse_delta(
            delta_text=text,
            delta_token_ids=ids,
            request=request,
            prompt_token_ids=prompt_ids,
            finished=finished,
        )
        if msg is not None:
            reasoning.append(msg.reasoning or "")
            content.append(msg.content or "")
    return _join(reasoning), _join(content), parser


def _check_split(case: ReasoningCase, tok: Any, tool_parser: str | None = None) -> None:
    """The one helper: streamed in every delta shape and not streamed, the same expected split."""
    expected = (case.reasoning, case.content)
    out_ids = tok.encode(case.output, add_special_tokens=False)
    n_reasoning = len(tok.encode(case.reasoning, add_special_tokens=False)) if case.reasoning else 0

    # Non-streaming as vLLM's chat serving does it: the parser sees the prompt only through
    # is_reasoning_end (resolve_reasoning_ended) and the no-op set_prompt_token_ids.
    parser = _parser(case, tok, tool_parser)
    prompt_ids = tok.encode(case.prompt, add_special_tokens=False)
    parser.is_reasoning_end(prompt_ids)
    parser.set_prompt_token_ids(prompt_ids)
    reasoning, content, _calls = parser.parse(case.output, _request(case, stream=False))
    assert (reasoning, content) == expected, "non-streaming"
    assert parser.reasoning_parser.count_reasoning_tokens(out_ids) == n_reasoning

    for per_delta, holdback in DELTA_SHAPES:
        reasoning, content, parser = _stream(case, tok, per_delta, holdback, tool_parser)
        shape = f"streaming, {per_delta} ids per delta, {holdback} chars held back"
        assert (reasoning, content) == expected, shape
        counted = parser.reasoning_parser.count_reasoning_tokens(tuple(out_ids))
        assert counted == n_reasoning, shape


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_split(case: ReasoningCase, tokenizers: dict[str, Any]) -> None:
    _check_split(case, tokenizers[case.parser])


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id) for c in CASES if c.id.endswith(("_think", "wrapper"))]
)
def test_split_with_legacy_tool_parser(case: ReasoningCase, tokenizers: dict[str, Any]) -> None:
    # With a classic tool parser vLLM passes the whole previous/current text and ids each delta.
    _check_split(case, tokenizers[case.parser], tool_parser="hermes")


# Without a thinking mode and without a think block the engine's gate cannot tell an answer from
# reasoning that has not closed yet, so those rows are left out here. For the requests where it
# matters (structured output) vl-serve writes enable_thinking false: see the structured rows and
# test_direct_answer_is_held_to_the_grammar_at_once.
GATE_CASES = [
    c
    for c in CASES
    if not (c.reasoning is None and c.template == "instruct" and not c.chat_template_kwargs)
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in GATE_CASES])
def test_structured_output_gate_agrees(case: ReasoningCase, tokenizers: dict[str, Any]) -> None:
    """The engine's structured-output gate opens right where the reasoning ends."""
    tok = tokenizers[case.parser]
    parser_cls = ReasoningParserManager.get_reasoning_parser(case.parser)
    gate = parser_cls(tokenizer=tok, chat_template_kwargs=dict(case.chat_template_kwargs))
    prompt_ids = tok.encode(case.prompt, add_special_tokens=False)
    out_ids = tok.encode(case.output, add_special_tokens=False)
    opened_at: int | None = 0 if gate.is_reasoning_end(prompt_ids) else None
    all_ids = list(prompt_ids)
    for i, tid in enumerate(out_ids):
        all_ids.append(tid)
        if opened_at is None and gate.is_reasoning_end_streaming(all_ids, [tid]):
            opened_at = i + 1
    if case.reasoning is None:
        assert opened_at == 0
    elif gate.end_token_id in out_ids:
        assert opened_at == out_ids.index(gate.end_token_id) + 1
    else:
        assert opened_at is None


def test_end_marker_text_split_across_deltas(tokenizers: dict[str, Any]) -> None:
    tok = tokenizers["qwen3_vl"]
    parser = Qwen3VLReasoningParser(tok, chat_template_kwargs={"enable_thinking": True})
    end = parser.end_token_id
    abc = tok.encode("abc", add_special_tokens=False)
    nl = tok.encode("\n\n", add_special_tokens=False)
    ans = tok.encode("Ans", add_special_tokens=False)
    # The ids of </think> arrive with "</thi"; "nk>" follows with the next delta's text.
    first = parser.extract_reasoning_streaming("", "", "abc</thi", [], [], [*abc, end])
    assert (first.reasoning, first.content) == ("abc", None)
    assert not parser.has_engine_confirmed_reasoning_end()
    second = parser.extract_reasoning_streaming("", "", "nk>\n\nAns", [], [], [*nl, *ans])
    assert (second.reasoning, second.content) == (None, "Ans")
    assert parser.has_engine_confirmed_reasoning_end()
    assert parser.extract_content_ids([*nl, *ans]) == [*nl, *ans]


def test_tool_call_after_think_reaches_tool_parser(tokenizers: dict[str, Any]) -> None:
    case = next(c for c in CASES if c.id == "qwen3_vl-tool_call_after_think")
    tok = tokenizers["qwen3_vl"]
    parser_cls = _parser_cls(
        tok, tool_parser_name="hermes", reasoning_parser_name="qwen3_vl", enable_auto_tools=True
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    request = ChatCompletionRequest(
        model="tiny",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=tools,
        tool_choice="auto",
        chat_template_kwargs={"enable_thinking": True},
    )
    kwargs = {"enable_thinking": True}
    parser = parser_cls(tok, request.tools, chat_template_kwargs=kwargs)
    reasoning, content, calls = parser.parse(case.output, request, enable_auto_tools=True)
    assert reasoning == "I need the weather.\n"
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]
    assert not content

    request.stream = True
    prompt_ids = tok.encode(case.prompt, add_special_tokens=False)
    out_ids = tok.encode(case.output, add_special_tokens=False)
    for per_delta in (1, 3):
        parser = parser_cls(tok, request.tools, chat_template_kwargs=kwargs)
        streamed_reasoning, names, arguments = "", [], ""
        for text, ids, finished in _deltas(tok, prompt_ids, out_ids, per_delta, 0):
            msg = parser.parse_delta(text, ids, request, prompt_ids, finished=finished)
            if msg is None:
                continue
            assert not (msg.content or "").strip(), msg
            streamed_reasoning += msg.reasoning or ""
            for call in msg.tool_calls:
                names += [call.function.name] if call.function.name else []
                arguments += call.function.arguments or ""
        assert streamed_reasoning == reasoning
        assert names == ["get_weather"]
        assert json.loads(arguments) == {"city": "Paris"}


def test_register_makes_parsers_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vl_serve_plugins, "_registered", False)
    for name in vl_serve_plugins.REASONING_PARSERS:
        monkeypatch.delitem(ReasoningParserManager.lazy_parsers, name, raising=False)
        monkeypatch.delitem(ReasoningParserManager.reasoning_parsers, name, raising=False)
    with pytest.raises(KeyError):
        ReasoningParserManager.get_reasoning_parser("qwen3_vl")
    vl_serve_plugins.register()
    assert ReasoningParserManager.get_reasoning_parser("qwen3_vl") is Qwen3VLReasoningParser
    assert ReasoningParserManager.get_reasoning_parser("ernie45_vl") is Ernie45VLReasoningParser


def test_plugin_import_imports_nothing() -> None:
    code = (
        "import sys, vl_serve_plugins\n"
        "loaded = [m for m in sys.modules if m.startswith(('vllm', 'vl_serve_plugins.'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_special_markers_are_kept_in_the_text() -> None:
    from tokenizers import Tokenizer, models

    vocab = {"<unk>": 0, "a": 1, "<think>": 2, "</think>": 3}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        unk_token="<unk>",
        additional_special_tokens=["<think>", "</think>"],
    )
    request = ChatCompletionRequest(model="tiny", messages=[{"role": "user", "content": "a"}])
    assert request.skip_special_tokens
    Qwen3VLReasoningParser(tok).adjust_request(request)
    assert not request.skip_special_tokens


@pytest.mark.parametrize(
    ("parser_cls", "name"),
    [(Qwen3VLReasoningParser, "qwen3_vl"), (Ernie45VLReasoningParser, "ernie45_vl")],
)
def test_tokenizer_without_think_end_fails_fast(parser_cls: type, name: str) -> None:
    from tokenizers import Tokenizer, models

    vocab = {"<unk>": 0, "a": 1, "<think>": 2, "<response>": 3, "</response>": 4}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), unk_token="<unk>"
    )
    with pytest.raises(ValueError, match=rf"'{name}'.*</think>"):
        parser_cls(tok)
    vl_serve_plugins.register()  # (also when this test runs alone)
    # vLLM also builds the parser once at server start-up, naming the CLI flag.
    with pytest.raises(TypeError, match=rf"--reasoning-parser {name}.*</think>"):
        ParserManager.get_parser(reasoning_parser_name=name, tokenizer=tok)


# --- the fast path in vLLM's DelegatingParser.parse_delta gives vLLM's answers -------------------
# (vl_serve_plugins/patches.py; tests/unit/test_patches.py checks that it applies and is taken.)


def _vllm_parse_delta() -> Any:
    """vLLM's own DelegatingParser.parse_delta (the one the fast path stands in for)."""
    from vllm.parser.abstract_parser import DelegatingParser

    method = DelegatingParser.parse_delta
    return getattr(method, "__wrapped__", method)


def _stream_events(case: ReasoningCase, tok: Any, per_delta: int, holdback: int, **kw: Any) -> Any:
    """Every parse_delta result as the JSON vLLM would send, with the parser's state after each."""
    parse_delta = kw.pop("parse_delta", None)
    parser = _parser(case, tok)
    request = _request(case, stream=True)
    request.include_reasoning = kw.pop("include_reasoning", True)
    prompt_ids = tok.encode(case.prompt, add_special_tokens=False)
    out_ids = tok.encode(case.output, add_special_tokens=False)
    events = []
    for text, ids, finished in _deltas(tok, prompt_ids, out_ids, per_delta, holdback):
        args = (text, ids, request, prompt_ids)
        if parse_delta is None:
            msg = parser.parse_delta(*args, finished=finished)
        else:
            msg = parse_delta(parser, *args, finished=finished)
        state = parser._stream_state
        events.append(
            (
                None if msg is None else msg.model_dump_json(exclude_unset=True),
                state.reasoning_ended,
                state.previous_text,
                parser.reasoning_parser.has_engine_confirmed_reasoning_end(),
            )
        )
    return events


@pytest.mark.parametrize("include_reasoning", [True, False], ids=["reasoning", "no-reasoning"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_fast_parse_delta_matches_vllms(
    case: ReasoningCase, include_reasoning: bool, tokenizers: dict[str, Any]
) -> None:
    """Delta for delta, the same JSON and the same parser state as vLLM's own parse_delta."""
    tok = tokenizers[case.parser]
    for per_delta, holdback in DELTA_SHAPES:
        ours = _stream_events(case, tok, per_delta, holdback, include_reasoning=include_reasoning)
        theirs = _stream_events(
            case,
            tok,
            per_delta,
            holdback,
            include_reasoning=include_reasoning,
            parse_delta=_vllm_parse_delta(),
        )
        assert ours == theirs, f"{per_delta} ids per delta, {holdback} chars held back"


def test_per_tokenizer_tables_are_built_once_and_never_shared(tokenizers: dict[str, Any]) -> None:
    """vLLM builds two parsers per chat request: the marker tables are worked out once per
    parser class and tokenizer, and a parser for another tokenizer gets that one's ids."""
    from tokenizers import Tokenizer, models

    qwen = tokenizers["qwen3_vl"]
    first, second = Qwen3VLReasoningParser(qwen), Qwen3VLReasoningParser(qwen)
    assert first._marker_ids is second._marker_ids
    assert first._stream is not second._stream  # per-request state stays per parser
    ids = {qwen.convert_tokens_to_ids(t) for t in ("<think>", "</think>")}
    assert first._marker_ids == ids

    vocab = {"<unk>": 0, "a": 1, "</think>": 2, "<think>": 3}
    other = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), unk_token="<unk>"
    )
    parser = Qwen3VLReasoningParser(other)
    assert parser._marker_strings == {3: "<think>", 2: "</think>"}
    assert (parser.start_token_id, parser.end_token_id) == (3, 2)
    assert Qwen3VLReasoningParser(qwen)._marker_ids == ids


# Every parser, each with the prompt opening the think block and with the model opening it.
_FREED_CASES = [c for c in CASES if c.id.endswith(("-template_opened_think", "-model_opens_think"))]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in _FREED_CASES])
def test_a_finished_requests_parsers_are_freed_without_the_garbage_collector(
    case: ReasoningCase, tokenizers: dict[str, Any]
) -> None:
    """vLLM builds two parsers per chat request: neither may sit in a reference cycle (freed
    only by a garbage collection, whose passes then grow with the request rate)."""
    import gc
    import weakref

    tok = tokenizers[case.parser]
    prompt_ids = tok.encode(case.prompt, add_special_tokens=False)
    out_ids = tok.encode(case.output, add_special_tokens=False)
    gc.collect()
    gc.disable()
    try:
        parser = _parser(case, tok)  # vLLM's DelegatingParser around vl-serve's
        request = _request(case, stream=True)
        for text, ids, finished in _deltas(tok, prompt_ids, out_ids, 1, 0):
            parser.parse_delta(text, ids, request, prompt_ids, finished=finished)
        ours = parser.reasoning_parser
        ours.extract_reasoning(case.output, _request(case, stream=False))  # non-streaming too
        refs = [weakref.ref(parser), weakref.ref(ours)]
        del parser, ours
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()


UNDECIDED_DIRECT = [
    c
    for c in CASES
    if c.parser == "qwen3_vl"
    and c.reasoning is None
    and not c.chat_template_kwargs
    and c.prompt.endswith("<|im_start|>assistant\n")  # the template left thinking open
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in UNDECIDED_DIRECT])
def test_direct_answer_is_held_to_the_grammar_at_once(
    case: ReasoningCase, tokenizers: dict[str, Any]
) -> None:
    """A structured-output request without a switch: the middleware turns thinking off, and the
    engine's gate then holds the whole answer to the grammar (from the first token)."""
    from vl_serve.server.dialect import answer_directly

    req: dict[str, Any] = {"messages": [], "response_format": {"type": "json_object"}}
    assert answer_directly(req, "qwen3_vl", None)
    tok = tokenizers[case.parser]
    parser_cls = ReasoningParserManager.get_reasoning_parser(case.parser)
    gate = parser_cls(tokenizer=tok, chat_template_kwargs=req["chat_template_kwargs"])
    prompt_ids = tok.encode(case.prompt, add_special_tokens=False)
    assert gate.is_reasoning_end(prompt_ids)
    # Without the rewrite the gate waits for a </think> that a direct answer never writes.
    undecided = parser_cls(tokenizer=tok, chat_template_kwargs={})
    out_ids = tok.encode(case.output, add_special_tokens=False)
    assert not undecided.is_reasoning_end(prompt_ids)
    assert not undecided.is_reasoning_end_streaming(prompt_ids + out_ids, out_ids)
