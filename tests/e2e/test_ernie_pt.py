"""ERNIE-4.5-VL in the published ``-PT`` layout, served with ``trust_remote_code: false``.

``builtin:tiny-ernie45-vl-pt`` has the files ``baidu/ERNIE-4.5-VL-28B-A3B-PT`` ships (flat config
with ``model_type: ernie4_5_moe_vl`` and ``auto_map``, SentencePiece ``tokenizer.model`` with
``added_tokens.json`` and ``tokenizer_class: Ernie4_5_VLTokenizer``, ``preprocessor_config.json``
naming ``Ernie_45T_VLProcessor``) and none of its Python files: the server can only start if
vl-serve's adapter stands in for the remote config, tokenizer and processor. One server: text,
image and video with exact prompt token counts, the reasoning split streamed and not, and the
slow tokenizer's decoding of added tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.helpers.media_files import data_url, image_part, mp4_bytes, png_bytes
from tests.helpers.reasoning_calls import ERNIE_E2E_CASES as E2E_CASES
from tests.helpers.reasoning_calls import split_answer
from tests.helpers.reasoning_cases import ReasoningCase
from tests.helpers.vlserver import VLServer, reasoning_config, running

pytestmark = pytest.mark.e2e

MODEL = "tiny-ernie45-vl-pt"
FORCED = "hello world 42"


@pytest.fixture(scope="module")
def folder() -> Path:
    from vl_serve.builtin import ensure_built

    return ensure_built("tiny-ernie45-vl-pt")


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[VLServer]:
    config = reasoning_config(
        "ernie45_vl",
        model="builtin:tiny-ernie45-vl-pt",
        served_model_name=MODEL,
        trust_remote_code=False,
    )
    with running(config, name="ernie-pt") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: VLServer) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    from vl_serve_plugins.ernie import pt

    pt.register()
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


def chat(client: openai.OpenAI, content: Any, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],
        max_tokens=kw.pop("max_tokens", 4),
        temperature=0,
        **kw,
    )


def prompt_tokens(tokenizer: Any, content: Any, vision: list[int], **kwargs: Any) -> int:
    """The rendered prompt's length once each placeholder expands to its vision tokens."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, **kwargs
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    return len(ids) + sum(n - 1 for n in vision)


def test_the_folder_is_the_pt_layout_and_is_served_without_remote_code(
    folder: Path, server: VLServer
) -> None:
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "ernie4_5_moe_vl" and "text_config" not in config
    assert config["auto_map"]["AutoConfig"].startswith("configuration_ernie_45t_vl.")
    assert config["moe_num_experts"] == [4, 4] and "spatial_conv_size" in config
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "Ernie4_5_VLTokenizer" and "auto_map" in tok
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["processor_class"] == "Ernie_45T_VLProcessor"
    assert {"tokenizer.model", "added_tokens.json", "special_tokens_map.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert not list(folder.glob("*.py"))  # nothing there to execute
    assert "trust_remote_code=False" in server.log_text()


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_text_forced_output_and_usage(client: openai.OpenAI, tokenizer: Any, stream: bool) -> None:
    content = "Say hello."
    extra = {
        "structured_outputs": {"regex": FORCED},
        "chat_template_kwargs": {"enable_thinking": False},
    }
    if not stream:
        resp = chat(client, content, max_tokens=16, extra_body=extra)
        assert resp.choices[0].message.content == FORCED
        assert resp.choices[0].finish_reason == "stop"
        expected = prompt_tokens(tokenizer, content, [], enable_thinking=False)
        assert resp.usage.prompt_tokens == expected
        return
    chunks = list(
        chat(
            client,
            content,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FORCED
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        # 64x64 -> 56x56 = 4x4 patches of 14, merged 2x2; 200x120 -> 196x112 = 14x8 -> 28.
        pytest.param(64, 64, 4, id="64x64"),
        pytest.param(200, 120, 28, id="200x120"),
    ],
)
def test_image(client: openai.OpenAI, tokenizer: Any, width: int, height: int, tokens: int) -> None:
    content = [image_part(data_url(png_bytes(width, height))), {"type": "text", "text": "Colour?"}]
    resp = chat(client, content, extra_body={"structured_outputs": {"regex": "red"}})
    assert resp.usage.prompt_tokens == prompt_tokens(tokenizer, content, [tokens])


def test_video_and_image_together(client: openai.OpenAI, tokenizer: Any) -> None:
    # The 8-frame 64x64 clip: 8 x 4x4 patches, merged 2x2 and 2 frames -> 16 tokens.
    video = {"type": "video_url", "video_url": {"url": data_url(mp4_bytes(), "video/mp4")}}
    resp = chat(client, [video, {"type": "text", "text": "What happens?"}])
    assert resp.usage.prompt_tokens == prompt_tokens(
        tokenizer, [video, {"type": "text", "text": "What happens?"}], [16]
    )
    both = [image_part(data_url(png_bytes(64, 64))), video, {"type": "text", "text": "And?"}]
    resp = chat(client, both)
    assert resp.usage.prompt_tokens == prompt_tokens(tokenizer, both, [4, 16])


def test_the_real_ids_are_accepted(client: openai.OpenAI, tokenizer: Any) -> None:
    # </s> and <|end_of_sentence|> as ERNIE clients hard-code them; <|IMAGE_START|> at 101304.
    assert tokenizer.convert_tokens_to_ids("<|IMAGE_START|>") == 101304
    resp = chat(client, "Hi", extra_body={"stop_token_ids": [2, 100272]})
    assert resp.choices[0].finish_reason in {"stop", "length"}


@pytest.fixture(scope="module")
def marker_bias(tokenizer: Any) -> dict[str, int]:
    markers = ["<think>", "</think>", "<response>", "</response>", "<tool_call>", "</tool_call>"]
    return {str(tokenizer.convert_tokens_to_ids(m)): 100 for m in markers}


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("case", E2E_CASES, ids=[c.id for c in E2E_CASES])
def test_reasoning_split_forced(
    server: VLServer, case: ReasoningCase, stream: bool, marker_bias: dict[str, int]
) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "max_tokens": 200,
        "temperature": 0,
        "stream": stream,
        "logit_bias": marker_bias,
        "structured_outputs": {"regex": re.escape(case.output)},
        # The -PT tokenizer is a slow (SentencePiece) one, as published: vLLM's slow detokenizer
        # puts a space on each side of an added token (<think>, <tool_call>) unless asked not to.
        "spaces_between_special_tokens": False,
    }
    if case.chat_template_kwargs:
        body["chat_template_kwargs"] = dict(case.chat_template_kwargs)
    if stream:
        body["stream_options"] = {"include_usage": True}
    reasoning, content, usage = split_answer(server, body)
    assert (reasoning, content) == (case.reasoning, case.content)
    details = usage.get("completion_tokens_details") or {}
    assert bool(details.get("reasoning_tokens")) == bool(case.reasoning), usage


def test_slow_tokenizer_spacing_of_added_tokens(
    server: VLServer, marker_bias: dict[str, int]
) -> None:
    """vLLM decodes a slow tokenizer's added tokens with a space on each side by default (as for
    the published -PT tokenizer); ``spaces_between_special_tokens: false`` keeps the text exact."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 40,
        "temperature": 0,
        "chat_template_kwargs": {"enable_thinking": False},
        "structured_outputs": {"regex": re.escape("a <tool_call> b")},
        "logit_bias": marker_bias,
    }
    texts = []
    for spaces in (True, False):
        _, content, _ = split_answer(
            server, {**body, "stream": False, "spaces_between_special_tokens": spaces}
        )
        texts.append(content)
    assert texts[1] == "a <tool_call> b"
    assert texts[0] != texts[1] and texts[0].split() == texts[1].split()
