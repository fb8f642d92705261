"""`vl-serve plan`'s figures against vLLM's own, for both embedded tiny models (one server each).

KV cache: the server is started from the config the planner reads (``kv_cache_memory_bytes``
128 MiB); the tokens and the concurrency vLLM logs when it sizes its KV cache ("CPU KV cache size:
N tokens, Maximum concurrency for L tokens per request: Cx"), and the blocks it reports in
``vllm:cache_config_info`` on /metrics, must equal the plan's ``kv_tokens`` and
``max_full_sequences``.

Weights: vLLM's CPU worker logs no weight size (``Model loading took X GiB`` is the GPU runner's,
in hundredths of a GiB), and after loading it repacks linear weights for its CPU kernels, so the
parameters a loaded CPU model keeps depend on the CPU. The plan is compared with what vLLM's own
model class allocates for the same arguments: the model built by vLLM's ``initialize_model`` on
the meta device, in a subprocess, from the argv vl-serve gives ``vllm serve``, with vLLM's own
per-item maximum of image (and Qwen3-VL video) tokens from its processing info.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.vlserver import REPO, VLServer, tiny_config
from vl_serve import config as vl_config
from vl_serve.plan import Plan, facts_for, plan

pytestmark = pytest.mark.e2e

# The embedded ERNIE-4.5-VL served without remote code, as tests/e2e/test_ernie.py serves it.
MODELS = {
    "tiny-qwen3-vl": tiny_config(),
    "tiny-ernie45-vl": tiny_config(
        model="builtin:tiny-ernie45-vl",
        served_model_name="tiny-ernie45-vl",
        trust_remote_code=False,
    ),
}
KV_LINE = re.compile(
    r"(?:CPU|GPU) KV cache size: ([\d,]+) tokens, "
    r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x"
)
BLOCKS = re.compile(r'vllm:cache_config_info\{[^}]*num_gpu_blocks="(\d+)"')

# Run by a fresh interpreter: vLLM's model for the config file argv[1], built on the meta device.
VLLM_ALLOCATION = """
import json, sys, tempfile
import torch
from vllm.config import set_current_vllm_config
from vllm.distributed import ensure_model_parallel_initialized, init_distributed_environment
from vllm.engine.arg_utils import EngineArgs
from vllm.model_executor.model_loader.utils import initialize_model
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.plugins import load_general_plugins
from vllm.utils.torch_utils import set_default_torch_dtype
from vl_serve import config, launch
from vl_serve.argv import vllm_parser

load_general_plugins()
args = vllm_parser().parse_args(launch.prepare(config.load(sys.argv[1])).argv)
args.model = args.model_tag
vllm_config = EngineArgs.from_cli_args(args).create_engine_config()
model_config = vllm_config.model_config
with set_current_vllm_config(vllm_config):
    init_distributed_environment(1, 0, f"file://{tempfile.mktemp()}", 0, "gloo")
    ensure_model_parallel_initialized(1, 1)
    with set_default_torch_dtype(model_config.dtype), torch.device("meta"):
        model = initialize_model(vllm_config=vllm_config)
    info = MULTIMODAL_REGISTRY.get_processing_info(model_config)
    per_item = info.get_mm_max_tokens_per_item(model_config.max_model_len, {"image": 1, "video": 1})
print(json.dumps({
    "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
    "per_item": dict(per_item),
}))
"""


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def planned(model: str) -> Plan:
    cfg = vl_config.from_dict(MODELS[model])
    return plan(cfg, facts_for(cfg, build=True), None)


@pytest.fixture(scope="module")
def server(model: str) -> Iterator[VLServer]:
    srv = VLServer(MODELS[model], name=f"plan-{model}")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def allocation(model: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("plan") / "config.yaml"
    path.write_text(yaml.safe_dump(MODELS[model]))
    done = subprocess.run(
        [sys.executable, "-c", VLLM_ALLOCATION, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_kv_tokens_and_concurrency_are_what_vllm_logs(server: VLServer, planned: Plan) -> None:
    found = KV_LINE.search(server.log_text())
    assert found, "vLLM's KV cache size line is missing:\n" + server.log_tail()
    tokens, max_len, concurrency = (found.group(i) for i in (1, 2, 3))
    assert int(tokens.replace(",", "")) == planned.kv_tokens
    assert int(max_len.replace(",", "")) == planned.max_model_len
    assert math.floor(float(concurrency)) == planned.max_full_sequences


def test_kv_blocks_are_what_vllm_reports_on_metrics(server: VLServer, planned: Plan) -> None:
    metrics = httpx.get(server.url("/metrics"), timeout=10).text
    found = BLOCKS.search(metrics)
    assert found, "vllm:cache_config_info has no num_gpu_blocks"
    assert int(found.group(1)) * planned.block_size == planned.kv_tokens


def test_weight_bytes_are_what_vllm_allocates(allocation: dict[str, Any], planned: Plan) -> None:
    assert planned.weights_bytes == planned.weights_bytes_per_gpu == allocation["weights_bytes"]


def test_largest_media_items_are_vllms(
    model: str, allocation: dict[str, Any], planned: Plan
) -> None:
    assert planned.media.image == allocation["per_item"]["image"]
    if model == "tiny-qwen3-vl":  # ERNIE's video maximum in vLLM fills the context instead
        assert planned.media.video == allocation["per_item"]["video"]


def test_the_tiny_configs_fit(planned: Plan) -> None:
    assert planned.fits is True and planned.media_fits
