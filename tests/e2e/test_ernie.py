"""ERNIE-4.5-VL end to end without remote code: the tiny model from transformers' native classes.

``builtin:tiny-ernie45-vl`` has transformers' native config (``model_type: ernie4_5_vl_moe``) and
processor (``Ernie4_5_VLMoeProcessor``), a dense and an MoE layer (text + vision experts) and a
2-block vision tower. vLLM serves it through vl-serve's ERNIE adapter (``vl_serve_plugins.ernie``)
with ``trust_remote_code: false``. Random weights answer noise: outputs are forced with
``structured_outputs`` (also inside the reasoning part: ``enable_in_reasoning``), and prompt token
counts are checked exactly against the chat template plus the vision tokens each item expands to.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.helpers.media_files import data_url, image_part, mp4_bytes, png_bytes
from tests.helpers.reasoning_calls import ERNIE_E2E_CASES, split_answer
from tests.helpers.reasoning_cases import ReasoningCase
from tests.helpers.vlserver import VLServer, reasoning_config, running

pytestmark = pytest.mark.e2e

MODEL = "tiny-ernie45-vl"
FORCED = "hello world 42"
# Vision tokens per item: a 64x64 image resizes to 56x56 = 4x4 patches of 14, merged 2x2 -> 4;
# the 8-frame 64x64 clip is 8 x 4x4 patches, merged 2x2 and 2 frames -> 16.
IMAGE_64_TOKENS = 4
VIDEO_8x64_TOKENS = 16


@pytest.fixture(scope="module")
def allowed_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vlserve-ernie-") as root:
        (Path(root) / "red.png").write_bytes(png_bytes(64, 64))
        yield Path(root)


@pytest.fixture(scope="module")
def server(allowed_dir: Path) -> Iterator[VLServer]:
    config = reasoning_config(
        "ernie45_vl",
        model="builtin:tiny-ernie45-vl",
        served_model_name=MODEL,
        trust_remote_code=False,
        media={"allowed_local_media_path": str(allowed_dir)},
    )
    with running(config, name="ernie") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: VLServer) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from vl_serve.builtin import ensure_built

    return AutoTokenizer.from_pretrained(ensure_built("tiny-ernie45-vl"))


def chat(client: openai.OpenAI, content: Any, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],
        max_tokens=kw.pop("max_tokens", 4),
        temperature=0,
        **kw,
    )


def expected_prompt_tokens(tokenizer: Any, content: Any, vision_tokens: list[int]) -> int:
    """The rendered prompt's length once each placeholder expands to its vision tokens."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True
    )
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return len(ids) + sum(n - 1 for n in vision_tokens)


def test_served_without_remote_code_through_the_adapter(server: VLServer) -> None:
    from vl_serve.builtin import ensure_built

    config = json.loads((ensure_built("tiny-ernie45-vl") / "config.json").read_text())
    assert config["model_type"] == "ernie4_5_vl_moe"  # transformers' native format
    assert "spatial_conv_size" not in config
    log = server.log_text()
    assert "trust_remote_code=False" in log
    assert "Ernie4_5_VLMoeForConditionalGeneration" in log


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
        kwargs = {"enable_thinking": False}
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, **kwargs
        )
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert resp.usage.prompt_tokens == len(ids)
        # The grammar admits any spelling of FORCED, so at least its shortest one, plus eos.
        assert resp.usage.completion_tokens >= len(tokenizer(FORCED)["input_ids"]) + 1
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
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
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FORCED
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_image_base64_and_file(client: openai.OpenAI, tokenizer: Any, allowed_dir: Path) -> None:
    sources = {"base64": data_url(png_bytes(64, 64)), "file": (allowed_dir / "red.png").as_uri()}
    for name, url in sources.items():
        content = [image_part(url), {"type": "text", "text": "What colour is this?"}]
        resp = chat(client, content, extra_body={"structured_outputs": {"regex": "red"}})
        assert resp.choices[0].message.content == "red" or resp.choices[0].message.reasoning
        expected = expected_prompt_tokens(tokenizer, content, [IMAGE_64_TOKENS])
        assert resp.usage.prompt_tokens == expected, name


def test_bigger_image_costs_more(client: openai.OpenAI, tokenizer: Any) -> None:
    # 200x120 -> 196x112 = 14x8 patches -> 28 tokens; over the 224x224 budget images shrink.
    content = [image_part(data_url(png_bytes(200, 120))), {"type": "text", "text": "Describe."}]
    resp = chat(client, content)
    assert resp.usage.prompt_tokens == expected_prompt_tokens(tokenizer, content, [28])


def test_two_images_then_third_rejected(client: openai.OpenAI, tokenizer: Any) -> None:
    one, two = data_url(png_bytes(64, 64)), data_url(png_bytes(64, 64, (0, 99, 0)))
    content = [image_part(one), image_part(two), {"type": "text", "text": "Compare."}]
    resp = chat(client, content)
    assert resp.usage.prompt_tokens == expected_prompt_tokens(
        tokenizer, content, [IMAGE_64_TOKENS] * 2
    )
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, [image_part(one)] * 3)
    err = info.value.body
    assert isinstance(err, dict)
    assert "at most 2" in err["message"] and "limit_mm_per_prompt.image" in err["message"]


def test_video_mp4(client: openai.OpenAI, tokenizer: Any) -> None:
    video = {"type": "video_url", "video_url": {"url": data_url(mp4_bytes(), "video/mp4")}}
    content = [video, {"type": "text", "text": "What happens?"}]
    resp = chat(client, content, extra_body={"structured_outputs": {"regex": "nothing"}})
    assert resp.usage.prompt_tokens == expected_prompt_tokens(
        tokenizer, content, [VIDEO_8x64_TOKENS]
    )
    # A second video is over limit_mm_per_prompt.video (1).
    with pytest.raises(openai.BadRequestError):
        chat(client, [video, video])


def test_image_and_video_together(client: openai.OpenAI, tokenizer: Any) -> None:
    video = {"type": "video_url", "video_url": {"url": data_url(mp4_bytes(), "video/mp4")}}
    content = [image_part(data_url(png_bytes(64, 64))), video, {"type": "text", "text": "And?"}]
    resp = chat(client, content)
    assert resp.usage.prompt_tokens == expected_prompt_tokens(
        tokenizer, content, [IMAGE_64_TOKENS, VIDEO_8x64_TOKENS]
    )


# --- reasoning split, forced (the shared case table's ERNIE rows the tiny template renders) ---

E2E_CASES = ERNIE_E2E_CASES


@pytest.fixture(scope="module")
def marker_bias(tokenizer: Any) -> dict[str, int]:
    """Make the forced output use the marker tokens (as a real model does), not spelled chars."""
    markers = ["<think>", "</think>", "<response>", "</response>", "<tool_call>", "</tool_call>"]
    return {str(tokenizer.convert_tokens_to_ids(m)): 100 for m in markers}


def test_reasoning_cases_exist() -> None:
    assert len(E2E_CASES) >= 4, [c.id for c in E2E_CASES]


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
    }
    if case.chat_template_kwargs:
        body["chat_template_kwargs"] = dict(case.chat_template_kwargs)
    if stream:
        body["stream_options"] = {"include_usage": True}
    reasoning, content, usage = split_answer(server, body)
    assert (reasoning, content) == (case.reasoning, case.content)
    details = usage.get("completion_tokens_details") or {}
    if case.reasoning:
        assert details.get("reasoning_tokens", 0) > 0, usage
    else:
        assert not details.get("reasoning_tokens"), usage
