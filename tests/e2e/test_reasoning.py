"""Reasoning split and the FastDeploy/Qianfan dialect through the real server (tiny Qwen3-VL).

Each row of the shared case table is rendered by the template it names, sent with the request
(``trust_request_chat_template``): ``thinking`` always opens ``<think>`` (Qwen3-VL-Thinking),
``instruct`` never has a think block, ``hybrid`` is the tiny model's own template
(``enable_thinking: true`` opens ``<think>``, ``false`` closes an empty block, unset leaves
thinking to the model). The output is forced with ``structured_outputs`` (applied inside the
reasoning part too: ``structured_outputs_config.enable_in_reasoning``) and checked streamed and
not streamed against the same expected split, in both field names. The structured-output rows
run on a second server with vLLM's default gate (grammar held back until the reasoning ends),
where only vl-serve's direct-answer rule holds a direct answer to the grammar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.reasoning_cases import CASES, QWEN3_VL, ReasoningCase
from tests.helpers.vlserver import VLServer, reasoning_config, running, tiny_config

pytestmark = pytest.mark.e2e

MODEL = "tiny-qwen3-vl"

# The generation prompt the tiny (hybrid) template renders for each thinking switch.
GEN_PROMPT = {True: QWEN3_VL.gen_open, False: QWEN3_VL.gen_closed, None: QWEN3_VL.gen_plain}
# What the Thinking and Instruct templates render, whatever the switch.
FIXED_GEN_PROMPT = {"thinking": QWEN3_VL.gen_open, "instruct": QWEN3_VL.gen_plain}
_GEN_START = "{%- if add_generation_prompt -%}"


def _renderable(case: ReasoningCase) -> bool:
    if case.parser != "qwen3_vl" or set(case.chat_template_kwargs) - {"enable_thinking"}:
        return False
    if case.id.endswith(
        "unicode"
    ):  # the tiny byte-level vocabulary has no such merges; unit-tested
        return False
    gen = FIXED_GEN_PROMPT.get(case.template)
    if gen is None:
        gen = GEN_PROMPT[case.chat_template_kwargs.get("enable_thinking")]
    return case.prompt.endswith(gen)


E2E_CASES = [c for c in CASES if _renderable(c) and not c.structured]
STRUCTURED_CASES = [c for c in CASES if _renderable(c) and c.structured]


@pytest.fixture(scope="module")
def templates() -> dict[str, str]:
    """The chat template each case names: the tiny model's own (hybrid) and its two variants."""
    from transformers import AutoTokenizer

    from vl_serve.builtin import ensure_built

    hybrid = AutoTokenizer.from_pretrained(ensure_built("tiny-qwen3-vl")).chat_template
    assert hybrid.count(_GEN_START) == 1
    head = hybrid.split(_GEN_START)[0]

    def fixed(gen: str) -> str:
        return head + _GEN_START + "{{ " + repr(gen) + " }}{%- endif -%}"

    return {"hybrid": hybrid, **{name: fixed(gen) for name, gen in FIXED_GEN_PROMPT.items()}}


@pytest.fixture(scope="module")
def server() -> Iterator[VLServer]:
    config = reasoning_config(
        "qwen3_vl",
        served_model_name=[MODEL, "null"],  # FastDeploy's client sends model="null"
        reasoning={"response_field": "both"},
        vllm_args={"trust_request_chat_template": True},
    )
    with running(config, name="reasoning") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: VLServer) -> openai.OpenAI:
    return server.client()


@pytest.fixture(scope="module")
def marker_bias() -> dict[str, int]:
    """logit_bias that makes the forced output use the marker tokens, as a real model does.

    A grammar can spell "<think>" from single characters as well as with the one added token;
    a random model picks either. Real models emit the token, and parsers (vLLM's too) detect
    markers in a stream by token id: the bias makes the forced output do the same.
    """
    from transformers import AutoTokenizer

    from vl_serve.builtin import ensure_built

    tok = AutoTokenizer.from_pretrained(ensure_built("tiny-qwen3-vl"))
    markers = ["<think>", "</think>", "<tool_call>", "</tool_call>"]
    return {str(tok.convert_tokens_to_ids(m)): 100 for m in markers}


def _request(
    case: ReasoningCase, *, stream: bool, bias: dict[str, int], templates: dict[str, str]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "chat_template": templates[case.template],
        "logit_bias": bias,
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "max_tokens": 200,
        "temperature": 0,
        "stream": stream,
        "structured_outputs": {"regex": re.escape(case.output)},
    }
    if case.chat_template_kwargs:
        body["chat_template_kwargs"] = dict(case.chat_template_kwargs)
    else:
        # Thinking left to the model explicitly: the forced output is not a direct answer.
        body["chat_template_kwargs"] = {"enable_thinking": None}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _split(server: VLServer, body: dict[str, Any]) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(reasoning, reasoning_content, content, usage) for one request, streamed or not."""
    if not body["stream"]:
        resp = httpx.post(server.url("/v1/chat/completions"), json=body, timeout=120)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        msg = data["choices"][0]["message"]
        assert "reasoning_content" in msg  # FastDeploy clients read it, null included
        return msg.get("reasoning"), msg["reasoning_content"], msg.get("content"), data["usage"]
    reasoning, mirrored, content = [], [], []
    usage: dict[str, Any] = {}
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=120) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                delta = choice["delta"]
                assert ("reasoning" in delta) == ("reasoning_content" in delta), delta
                reasoning.append(delta.get("reasoning") or "")
                mirrored.append(delta.get("reasoning_content") or "")
                content.append(delta.get("content") or "")
    return "".join(reasoning) or None, "".join(mirrored) or None, "".join(content) or None, usage


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("case", E2E_CASES, ids=[c.id for c in E2E_CASES])
def test_case_table_through_server(
    server: VLServer,
    case: ReasoningCase,
    stream: bool,
    marker_bias: dict[str, int],
    templates: dict[str, str],
) -> None:
    body = _request(case, stream=stream, bias=marker_bias, templates=templates)
    reasoning, mirrored, content, usage = _split(server, body)
    assert (reasoning, content) == (case.reasoning, case.content)
    assert mirrored == reasoning
    details = usage.get("completion_tokens_details") or {}
    if case.reasoning:
        assert details.get("reasoning_tokens", 0) > 0, usage
        assert details["reasoning_tokens"] < usage["completion_tokens"] or case.content is None
    else:
        assert not details.get("reasoning_tokens"), usage


CUT_SWITCHES = [
    pytest.param("hybrid", {"enable_thinking": True}, id="switch_on"),
    pytest.param("thinking", None, id="no_switch_thinking_template"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize(("template", "kwargs"), CUT_SWITCHES)
def test_cut_by_max_tokens_inside_thinking(
    server: VLServer,
    stream: bool,
    template: str,
    kwargs: dict[str, Any] | None,
    marker_bias: dict[str, int],
    templates: dict[str, str],
) -> None:
    """Cut by max_tokens before </think>: all reasoning, streamed and not, also when the
    template opened <think> and the request has no switch (Qwen3-VL-Thinking's default)."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Think hard."}],
        "max_tokens": 6,
        "temperature": 0,
        "logit_bias": marker_bias,
        "stream": stream,
        "chat_template": templates[template],
        "structured_outputs": {"regex": "(thinking more )+</think>done"},
    }
    if kwargs is not None:
        body["chat_template_kwargs"] = kwargs
    if stream:
        body["stream_options"] = {"include_usage": True}
        reasoning, mirrored, content, usage = _split(server, body)
    else:
        data = httpx.post(server.url("/v1/chat/completions"), json=body, timeout=120).json()
        choice = data["choices"][0]
        assert choice["finish_reason"] == "length"
        message, usage = choice["message"], data["usage"]
        reasoning, mirrored, content = (
            message["reasoning"],
            message["reasoning_content"],
            message["content"],
        )
    assert reasoning is not None and reasoning.startswith("thinking"), (reasoning, content)
    assert mirrored == reasoning
    assert content is None
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 6


# The three request forms of the thinking switch reach the chat template: the prompt grows by
# "<think>\n" (on) or "<think>\n\n</think>\n\n" (off) over the unset prompt.
SWITCH_FORMS = [
    pytest.param(lambda v: {"enable_thinking": v}, id="top-level"),
    pytest.param(lambda v: {"metadata": {"enable_thinking": v}}, id="metadata"),
    pytest.param(
        lambda v: {"chat_template_kwargs": {"enable_thinking": v}}, id="chat_template_kwargs"
    ),
]


def _prompt_tokens(client: openai.OpenAI, extra: dict[str, Any]) -> int:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=1,
        temperature=0,
        extra_body=extra,
    )
    return int(resp.usage.prompt_tokens)


@pytest.mark.parametrize("form", SWITCH_FORMS)
def test_enable_thinking_in_every_request_form(client: openai.OpenAI, form: Any) -> None:
    unset = _prompt_tokens(client, {})
    on = _prompt_tokens(client, form(True))
    off = _prompt_tokens(client, form(False))
    assert unset < on < off


def test_thinking_off_answer_is_content_streamed_and_not(server: VLServer) -> None:
    for form in ({"enable_thinking": False}, {"metadata": {"enable_thinking": False}}):
        for stream in (False, True):
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 40,
                "temperature": 0,
                "stream": stream,
                "structured_outputs": {"regex": "The answer is 4\\."},
                **form,
            }
            reasoning, mirrored, content, _ = _split(server, body)
            assert (reasoning, mirrored, content) == (None, None, "The answer is 4.")


def test_fastdeploy_client_unchanged(server: VLServer, marker_bias: dict[str, int]) -> None:
    """FastDeploy's ERNIE-4.5-VL client: openai.Client(api_key="null"), streams, reads delta.content."""
    client = openai.Client(base_url=server.url("/v1"), api_key="null", max_retries=0)
    stream = client.chat.completions.create(
        model="null",  # as FastDeploy's client sends it: FastDeploy serves one model whatever the name
        messages=[{"role": "user", "content": "Rewrite a poem"}],
        stream=True,
        max_tokens=60,
        temperature=0,
        logit_bias=marker_bias,
        extra_body={
            "chat_template_kwargs": {"enable_thinking": True},
            "structured_outputs": {"regex": "short thought</think>poem"},
        },
    )
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert (reasoning, content) == ("short thought", "poem")


def test_fastdeploy_curl_without_model(server: VLServer) -> None:
    """FastDeploy's curl example sends no model at all."""
    body = {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 3}
    resp = httpx.post(server.url("/v1/chat/completions"), json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] == 3


BAD_DIALECT = [
    pytest.param({"enable_thinking": "yes"}, "enable_thinking", id="enable_thinking-str"),
    pytest.param({"metadata": 5}, "metadata", id="metadata-int"),
    pytest.param({"metadata": {"enable_thinking": 1}}, "metadata.enable_thinking", id="meta-int"),
    pytest.param({"reasoning_max_tokens": -1}, "reasoning_max_tokens", id="budget-negative"),
    pytest.param({"reasoning_max_tokens": "many"}, "reasoning_max_tokens", id="budget-str"),
]


@pytest.mark.parametrize(("extra", "param"), BAD_DIALECT)
def test_bad_dialect_fields_get_openai_400(
    server: VLServer, extra: dict[str, Any], param: str
) -> None:
    for stream in (False, True):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            "stream": stream,
            **extra,
        }
        resp = httpx.post(server.url("/v1/chat/completions"), json=body, timeout=60)
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert set(err) >= {"message", "type", "param", "code"}
        assert err["param"] == param
        assert "Traceback" not in err["message"] and " at 0x" not in err["message"]
    # The server keeps serving.
    assert httpx.get(server.url("/health")).status_code == 200


BUDGET_FORMS = [
    pytest.param({"reasoning_max_tokens": 4}, id="top-level"),
    pytest.param({"metadata": {"reasoning_max_tokens": 4}}, id="metadata"),
]


@pytest.mark.parametrize("form", BUDGET_FORMS)
def test_reasoning_max_tokens_maps_to_thinking_budget(
    server: VLServer, form: dict[str, Any]
) -> None:
    """The budget closes the thinking part after at most 4 tokens; without it the random model
    thinks through all 30 tokens."""

    def ask(extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Think."}],
            "max_tokens": 30,
            "temperature": 0,
            "enable_thinking": True,
            **extra,
        }
        resp = httpx.post(server.url("/v1/chat/completions"), json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        return data["choices"][0]["message"], data["usage"]

    msg, usage = ask({})
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 30, usage
    assert msg["content"] is None
    msg, usage = ask(form)
    assert 0 < usage["completion_tokens_details"]["reasoning_tokens"] <= 4, usage
    assert msg["reasoning"] and msg["reasoning_content"] == msg["reasoning"]
    # Generation went on past the forced </think> (its text may be tokens that decode to nothing).
    assert usage["completion_tokens"] > usage["completion_tokens_details"]["reasoning_tokens"]


def test_fast_stream_path_is_on_in_the_server(client: openai.OpenAI, server: VLServer) -> None:
    """The API server built the parser at start-up, which turned on the per-delta fast path
    (plugins/patches.py) in vLLM's own process; the streamed rows above ran through it."""
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=False
    )
    assert "fast per-delta path in vLLM's DelegatingParser.parse_delta is on" in server.log_text()


# --- structured output with vLLM's default gate (a second server) -----------------------------


@pytest.fixture(scope="module")
def direct_server() -> Iterator[VLServer]:
    """qwen3_vl with the grammar held back until the reasoning ends (vLLM's default)."""
    config = tiny_config(
        reasoning={"parser": "qwen3_vl"}, vllm_args={"trust_request_chat_template": True}
    )
    with running(config, name="reasoning-direct") as srv:
        yield srv


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("case", STRUCTURED_CASES, ids=[c.id for c in STRUCTURED_CASES])
def test_structured_output_without_a_switch(
    direct_server: VLServer, case: ReasoningCase, stream: bool, templates: dict[str, str]
) -> None:
    """No thinking switch, a grammar: a direct answer (Instruct, hybrid) is held to it from its
    first token; a Thinking template's answer after ``</think>`` (forced at once with a logit
    bias here: the grammar does not steer the reasoning part on this server, so the row's
    reasoning is empty)."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is 2+2? Answer in JSON."}],
        "max_tokens": 60,
        "temperature": 0,
        "stream": stream,
        "chat_template": templates[case.template],
        "structured_outputs": {"regex": re.escape(str(case.content))},
    }
    if case.template == "thinking":
        from transformers import AutoTokenizer

        from vl_serve.builtin import ensure_built

        tok = AutoTokenizer.from_pretrained(ensure_built("tiny-qwen3-vl"))
        body["logit_bias"] = {str(tok.convert_tokens_to_ids("</think>")): 100}
    if stream:
        body["stream_options"] = {"include_usage": True}
    reasoning, mirrored, content, usage = _split(direct_server, body)
    assert content == case.content
    assert reasoning is None and mirrored is None
    assert not (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
