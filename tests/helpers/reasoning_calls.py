"""Reasoning requests against a real server: one split helper for streamed and non-streamed answers,
and the rows of the shared case table that the tiny ERNIE template renders."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.helpers.reasoning_cases import CASES, ERNIE45_VL, ReasoningCase
from tests.helpers.vlserver import VLServer


def split_answer(server: VLServer, body: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(reasoning, content, usage) of one request, streamed or not."""
    if not body["stream"]:
        resp = httpx.post(server.url("/v1/chat/completions"), json=body, timeout=120)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        msg = data["choices"][0]["message"]
        return msg.get("reasoning"), msg.get("content"), data["usage"]
    reasoning, content = [], []
    usage: dict[str, Any] = {}
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=120) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                reasoning.append(choice["delta"].get("reasoning") or "")
                content.append(choice["delta"].get("content") or "")
    return "".join(reasoning) or None, "".join(content) or None, usage


GEN_PROMPT = {True: ERNIE45_VL.gen_open, False: ERNIE45_VL.gen_closed, None: ERNIE45_VL.gen_plain}


def _renderable(case: ReasoningCase) -> bool:
    if case.parser != "ernie45_vl" or set(case.chat_template_kwargs) - {"enable_thinking"}:
        return False
    if case.id.endswith("unicode") or "truncated" in case.id:
        return False
    return case.prompt.endswith(GEN_PROMPT[case.chat_template_kwargs.get("enable_thinking")])


ERNIE_E2E_CASES = [c for c in CASES if _renderable(c)]
