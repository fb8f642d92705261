"""vl-serve's patches of vLLM (vl_serve_plugins/patches.py): each still applies and is still needed.

"Applies": the code a patch fixes or stands in for is still the code it was written against.
"Needed": unpatched vLLM still behaves the way the patch describes. A test of one release's code
skips on other releases, naming the ones it was checked on.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

import vl_serve_plugins
from tests.helpers.reasoning_cases import CASES
from vl_serve.builtin import build_qwen_tokenizer
from vl_serve_plugins import patches


def verified_only(name: str) -> pytest.MarkDecorator:
    """Skip unless the installed vLLM is a release patch ``name`` was checked against."""
    release = patches.vllm_release()
    checked = patches.VERIFIED[name]
    return pytest.mark.skipif(
        release not in checked,
        reason=f"{name} was checked against vLLM {', '.join(checked)}, not {release}",
    )


def test_importing_the_patches_imports_no_vllm() -> None:
    code = (
        "import sys, vl_serve_plugins.patches\n"
        "loaded = [m for m in sys.modules if m.startswith('vllm')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- ERNIE-4.5-VL's rotary embedding on CPU ----------------------------------------------------


def _ernie_rope() -> Any:
    """A small ERNIE-4.5-VL rotary embedding, built as vLLM builds it with custom ops on."""
    from vllm.config import CompilationConfig, VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )

    config = VllmConfig(compilation_config=CompilationConfig(custom_ops=["all"]))
    with set_current_vllm_config(config):
        return Ernie4_5_VLRotaryEmbedding(
            8, 8, 64, 10000.0, False, torch.float32, mrope_section=[1, 1, 2]
        )


def _rope_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    positions = torch.arange(6).reshape(3, 2)  # (t, h, w) positions of two tokens
    query = torch.randn(2, 16, generator=generator)
    key = torch.randn(2, 8, generator=generator)
    return positions, query, key


@verified_only("ernie45_vl_rope_cpu")
def test_rope_cpu_patch_still_applies() -> None:
    """The inherited forward_cpu passes ``offsets`` on; ERNIE's forward_native takes none."""
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )
    from vllm.model_executor.layers.rotary_embedding.mrope import MRotaryEmbedding

    assert "self.forward_native(positions, query, key, offsets)" in inspect.getsource(
        MRotaryEmbedding.forward_cpu
    )
    native = inspect.signature(Ernie4_5_VLRotaryEmbedding.forward_native).parameters
    assert list(native) == ["self", "positions", "query", "key"]
    own = Ernie4_5_VLRotaryEmbedding.__dict__.get("forward_cpu")
    assert own is None or getattr(own, "_vl_serve_patch", None) == "ernie45_vl_rope_cpu"


@verified_only("ernie45_vl_rope_cpu")
def test_rope_cpu_patch_still_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpatched, the CPU forward pass of ERNIE's rotary embedding raises TypeError."""
    from vllm.model_executor.layers.rotary_embedding.ernie45_vl_rope import (
        Ernie4_5_VLRotaryEmbedding,
    )

    if "forward_cpu" in Ernie4_5_VLRotaryEmbedding.__dict__:  # patched earlier in this process
        monkeypatch.delattr(Ernie4_5_VLRotaryEmbedding, "forward_cpu")
    rope = _ernie_rope()
    with pytest.raises(TypeError, match=r"forward_native\(\) takes from 3 to 4 positional"):
        rope(*_rope_inputs())


def test_rope_cpu_patch_gives_the_native_result() -> None:
    """Patched (or fixed upstream), the CPU forward pass works and equals the native path."""
    patches.apply_ernie45_vl_rope_cpu()
    assert not patches.apply_ernie45_vl_rope_cpu()  # a second call does nothing
    assert not patches.ernie45_vl_rope_cpu_needed()
    rope = _ernie_rope()
    positions, query, key = _rope_inputs()
    out_query, out_key = rope(positions, query.clone(), key.clone())
    want_query, want_key = rope.forward_native(positions, query.clone(), key.clone())
    assert torch.equal(out_query, want_query) and torch.equal(out_key, want_key)
    assert not torch.equal(out_query, query)  # (the positions did rotate something)


# --- the per-delta fast path in vLLM's DelegatingParser.parse_delta ----------------------------

CASE = next(c for c in CASES if c.reasoning and c.content and c.parser == "qwen3_vl")


@pytest.fixture(scope="module")
def qwen_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("qwen-tok")
    build_qwen_tokenizer(path)
    vl_serve_plugins.register()
    return AutoTokenizer.from_pretrained(path)


def _stream(tok: Any, parse_delta: Any) -> Iterator[Any]:
    """Stream CASE one token per delta through ``parse_delta`` of a parser vLLM would build."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.parser.parser_manager import ParserManager

    parser_cls = ParserManager.get_parser(reasoning_parser_name=CASE.parser, tokenizer=tok)
    assert parser_cls is not None
    parser = parser_cls(tok, None, chat_template_kwargs=dict(CASE.chat_template_kwargs))
    request = ChatCompletionRequest(
        model="tiny",
        messages=[{"role": "user", "content": "What is 2+2?"}],
        chat_template_kwargs=CASE.chat_template_kwargs or None,
        stream=True,
    )
    prompt_ids = tok.encode(CASE.prompt, add_special_tokens=False)
    out_ids = tok.encode(CASE.output, add_special_tokens=False)
    sent = ""
    for i, tid in enumerate(out_ids):
        text = tok.decode(out_ids[: i + 1])
        finished = i == len(out_ids) - 1
        yield parse_delta(parser, text[len(sent) :], [tid], request, prompt_ids, finished=finished)
        sent = text


def _vllm_parse_delta() -> Any:
    from vllm.parser.abstract_parser import DelegatingParser

    method = DelegatingParser.parse_delta
    return getattr(method, "__wrapped__", method)


def _count_advance(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from vllm.parser.abstract_parser import StreamState

    calls: list[Any] = []
    advance = StreamState.advance
    monkeypatch.setattr(StreamState, "advance", lambda s, *a: calls.append(a) or advance(s, *a))
    return calls


@verified_only("fast_parse_delta")
def test_fast_parse_delta_still_applies() -> None:
    """vLLM's parse_delta and StreamState are the source the fast path was checked against."""
    release = patches.vllm_release()
    assert patches.parse_delta_digests() == patches._PARSE_DELTA_VERIFIED[release], (
        "vLLM's DelegatingParser.parse_delta or StreamState changed: check that the fast path in "
        "vl_serve_plugins/patches.py still does what it does, then update _PARSE_DELTA_VERIFIED"
    )


@verified_only("fast_parse_delta")
def test_fast_parse_delta_still_needed(qwen_tokenizer: Any, monkeypatch: Any) -> None:
    """vLLM's own parse_delta runs its whole orchestration (StreamState.advance) every delta."""
    calls = _count_advance(monkeypatch)
    deltas = list(_stream(qwen_tokenizer, _vllm_parse_delta()))
    assert len(deltas) > 4
    assert len(calls) == len(deltas)


@verified_only("fast_parse_delta")
def test_fast_parse_delta_is_taken(qwen_tokenizer: Any, monkeypatch: Any) -> None:
    """The first parser built turns the fast path on; StreamState.advance then runs only for the
    first and the last delta."""
    from vllm.parser.abstract_parser import DelegatingParser

    list(_stream(qwen_tokenizer, _vllm_parse_delta()))  # builds a parser
    assert getattr(DelegatingParser.parse_delta, "_vl_serve_fast", False)
    assert "fast_parse_delta" in patches._applied
    assert not patches.fast_parse_delta_applies()  # applied once

    calls = _count_advance(monkeypatch)
    deltas = list(_stream(qwen_tokenizer, lambda p, *a, **k: p.parse_delta(*a, **k)))
    assert len(deltas) > 4
    assert len(calls) == 2
