"""vLLM's own parallelism under vl-serve: tensor and data parallel ranks, and a Ray cluster.

Tensor parallel serves the tiny ERNIE-4.5-VL, a model only vl-serve's plugin registers with vLLM
(vl_serve_plugins.ernie): an answer means each tensor-parallel worker loaded the plugin. Data
parallel serves the tiny Qwen3-VL (vLLM's CPU build fails MoE models such as ERNIE under data
parallel: README, Deploy), one API server per rank. The answer is forced with structured outputs
and split by the plugin's reasoning parser, streamed and not.

On a Ray cluster this test starts here (a head and a second node process), the same config with
``distributed_executor_backend: ray``: where vLLM's platform runs Ray it must answer the same way;
vLLM's CPU build refuses Ray ("current platform cpu does not support ray"), and the test checks
that refusal, so it fails the day the CPU build runs Ray and the answer can be required.
Pipeline parallelism is left out: vLLM's CPU build starts with pipeline_parallel_size 2 but fails
the first request (README, Deploy).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import ray_cluster
from tests.helpers.reasoning_cases import CASES, ReasoningCase
from tests.helpers.vlserver import VLServer, free_port, reasoning_config, running

pytestmark = pytest.mark.e2e

# vLLM's CPU workers bind their OpenMP threads one NUMA node each unless told: this host has
# one node, so each rank gets a core of its own.
BIND = {"VLLM_CPU_OMP_THREADS_BIND": "0|1"}
ERNIE, QWEN = ("tiny-ernie45-vl", "ernie45_vl"), ("tiny-qwen3-vl", "qwen3_vl")
# scenario -> ((model, parser), parallelism)
SCENARIOS: dict[str, tuple[tuple[str, str], dict[str, Any]]] = {
    "tensor_parallel_size-2": (ERNIE, {"tensor_parallel_size": 2}),
    "data_parallel_size-2": (QWEN, {"data_parallel_size": 2}),
}


def _case(parser: str) -> ReasoningCase:
    (case,) = [c for c in CASES if c.id == f"{parser}-template_opened_think"]
    return case


def _config(model: str, parser: str, **fields: Any) -> dict[str, Any]:
    return reasoning_config(
        parser,
        model=f"builtin:{model}",
        served_model_name=model,
        trust_remote_code=False,
        env=BIND,
        **fields,
    )


@functools.cache
def _marker_bias(model: str) -> dict[str, int]:
    """The forced output uses the marker tokens (as a real model does), not spelled characters."""
    from transformers import AutoTokenizer

    from vl_serve.builtin import ensure_built

    tokenizer = AutoTokenizer.from_pretrained(ensure_built(model))
    return {str(tokenizer.convert_tokens_to_ids(m)): 100 for m in ("<think>", "</think>")}


def _split(server: VLServer, model: str, case: ReasoningCase, stream: bool) -> tuple[Any, Any]:
    """(reasoning, content) of the case's forced output, streamed or not."""
    body: dict[str, Any] = {
        "logit_bias": _marker_bias(model),
        "model": model,
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "max_tokens": 200,
        "temperature": 0,
        "stream": stream,
        "structured_outputs": {"regex": re.escape(case.output)},
        "chat_template_kwargs": dict(case.chat_template_kwargs),
    }
    url = server.url("/v1/chat/completions")
    if not stream:
        resp = httpx.post(url, json=body, timeout=120)
        assert resp.status_code == 200, resp.text
        msg = resp.json()["choices"][0]["message"]
        return msg.get("reasoning"), msg.get("content")
    reasoning, content = [], []
    with httpx.stream("POST", url, json=body, timeout=120) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    reasoning.append(choice["delta"].get("reasoning") or "")
                    content.append(choice["delta"].get("content") or "")
    return "".join(reasoning) or None, "".join(content) or None


@pytest.fixture(scope="module", params=list(SCENARIOS), ids=list(SCENARIOS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[VLServer, str, ReasoningCase]]:
    (model, parser), parallel = SCENARIOS[request.param]
    with running(_config(model, parser, **parallel), name=request.param) as srv:
        yield srv, model, _case(parser)


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_parallel_ranks_answer_through_the_plugins(
    served: tuple[VLServer, str, ReasoningCase], stream: bool
) -> None:
    server, model, case = served
    assert _split(server, model, case, stream) == (case.reasoning, case.content)


def _platform_runs_ray() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.ray_device_key)


def test_ray_cluster_with_tensor_parallel_2() -> None:
    model, parser = ERNIE
    case = _case(parser)
    config = _config(model, parser, tensor_parallel_size=2, distributed_executor_backend="ray")
    with ray_cluster.running(nodes=2) as cluster:
        assert cluster.alive_nodes() == 2
        env = {"RAY_ADDRESS": cluster.address}
        if _platform_runs_ray():
            with running(config, env=env, name="ray") as srv:
                for stream in (False, True):
                    assert _split(srv, model, case, stream) == (case.reasoning, case.content)
            return
        # vLLM's refusal: the server exits, its log says why.
        assert "current platform cpu does not support ray" in _exit_log(config, env)


def _exit_log(config: dict[str, Any], env: dict[str, str], timeout_s: float = 420) -> str:
    """The whole log of a vl-serve that must exit on its own (killed whole if it does not)."""
    with tempfile.TemporaryDirectory(prefix="vlserve-ray-") as tmp:
        path = Path(tmp) / "config.yaml"
        port = {"host": "127.0.0.1", "port": free_port()}
        path.write_text(yaml.safe_dump({**config, "server": {**config["server"], **port}}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "vl_serve.cli", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    return out.decode(errors="replace")
