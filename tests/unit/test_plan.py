"""`vl-serve plan`: weights, KV cache and media tokens of a config against its GPU, without vLLM.

The figures of both embedded tiny models are checked against vLLM's own in
tests/e2e/test_plan_vllm.py; here: every preset fits the GPU it names with its model's shipped
facts, the arithmetic (KV blocks, TP/PP split, FP8), the changes offered when a config does not
fit, where the facts are read from, and the command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vl_serve import builtin, cli, model_facts, model_table
from vl_serve import config as vl_config
from vl_serve.errors import ConfigError
from vl_serve.gpu_config import GIB, GpuConfig, parse_size
from vl_serve.plan import ALLOWANCE_BYTES, Target, check_warning, compute, facts_for, plan
from vl_serve.plan_weights import pp_split

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "deploy" / "configs").glob("*.yaml"))
QWEN3_4B = "Qwen/Qwen3-VL-4B-Instruct"


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Plan with the shipped facts, never with whatever this machine's HF cache holds."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("VL_SERVE_API_KEY", "x")
    return cache


def _cfg(**fields: Any) -> vl_config.VLServeConfig:
    return vl_config.from_dict({"model": QWEN3_4B, **fields})


def _plan(cfg: vl_config.VLServeConfig, gpu: str | None = None, **target: Any) -> Any:
    tgt = Target.of(GpuConfig(name=gpu, **target)) if gpu else Target.of(cfg.gpu)
    return plan(cfg, model_facts.find(cfg.model), tgt)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_names_its_gpu_and_fits_it(path: Path) -> None:
    cfg = vl_config.load(path)
    assert cfg.gpu.named and cfg.gpu.count, f"{path.name} names no gpu"
    result = _plan(cfg)
    assert result.source.startswith(f"source: {cfg.model}'s published config.json")
    assert result.fits is True, result.reasons
    assert result.max_full_sequences >= 1
    assert result.gpus <= (cfg.gpu.count or result.gpus)
    assert check_warning(cfg) is None


def test_the_4b_facts_are_the_gpu_kit_model() -> None:
    sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
    import make_model

    entry = model_table.PUBLISHED[QWEN3_4B]["config"]
    for key, value in entry["text_config"].items():
        assert make_model.TEXT_4B.get(key, value) == value, key
    assert entry["text_config"]["vocab_size"] == make_model.VOCAB_SIZE
    for key, value in entry["vision_config"].items():
        assert make_model.VISION_4B[key] == value, key


def test_tiny_qwen_weights_are_its_checkpoint_plus_vllms_vocabulary_padding() -> None:
    from safetensors import safe_open

    cfg = vl_config.from_dict({"model": "builtin:tiny-qwen3-vl"})
    facts = facts_for(cfg, build=True)
    path = builtin.ensure_built("tiny-qwen3-vl") / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        stored = sum(f.get_tensor(k).numel() * 2 for k in f.keys())  # noqa: SIM118 - bf16
    vocab, hidden = facts.text["vocab_size"], facts.text["hidden_size"]
    padding = (-vocab % 64) * hidden * 2 * 2  # embedding and untied head, bf16
    assert plan(cfg, facts, None).weights_bytes == stored + padding


def test_kv_bytes_per_token_blocks_and_sequences() -> None:
    cfg = _cfg(max_model_len=1000, vllm_args={"kv_cache_memory_bytes": 2**30})
    result = _plan(cfg)
    per_token = 2 * 36 * 8 * 128 * 2  # K and V x layers x KV heads x head size x bf16
    assert result.kv_bytes_per_token == result.kv_bytes_per_token_per_gpu == per_token
    blocks = 2**30 // (128 * per_token)  # no GPU named: vLLM's CPU block of 128
    assert result.kv_tokens == blocks * 128
    assert result.max_full_sequences == blocks // 8  # 1000 tokens take 8 blocks of 128
    assert result.fits is True  # memory itself is not checked without a GPU


def test_memory_left_after_weights_and_allowance_is_the_kv_cache() -> None:
    result = _plan(_cfg(gpu_memory_utilization=0.5), "H100-80GB")
    memory = 81559 * 2**20
    expected = int(memory * 0.5) - result.weights_bytes_per_gpu - ALLOWANCE_BYTES
    assert result.kv_cache_bytes_per_gpu == expected
    assert result.kv_tokens == expected // (16 * result.kv_bytes_per_token) * 16


def test_tensor_and_pipeline_parallel_split() -> None:
    one = _plan(vl_config.load(REPO / "deploy/configs/qwen3-vl-235b-a22b-multinode.yaml"))
    cfg = _cfg(tensor_parallel_size=4, pipeline_parallel_size=2)
    split, whole = _plan(cfg, "H100-80GB"), _plan(_cfg(), "H100-80GB")
    assert split.weights_bytes == whole.weights_bytes
    assert whole.weights_bytes / 8 < split.weights_bytes_per_gpu < whole.weights_bytes / 6
    # 8 KV heads over 4 ranks, 18 of the 36 layers per stage.
    assert split.kv_bytes_per_token_per_gpu == whole.kv_bytes_per_token // 8
    # 4 KV heads over 8 ranks: each rank keeps one head (vLLM replicates them).
    assert one.kv_bytes_per_token_per_gpu == 2 * 47 * 1 * 128 * 2


@pytest.mark.parametrize("layers,pp", [(94, 2), (36, 5), (10, 4), (7, 3), (48, 1)])
def test_pp_split_is_vllms(layers: int, pp: int) -> None:
    from vllm.distributed.utils import get_pp_indices

    expected = [end - start for start, end in (get_pp_indices(layers, r, pp) for r in range(pp))]
    assert pp_split(layers, pp) == expected


def test_fp8_weights_and_kv_cache() -> None:
    base = _plan(_cfg(), "H100-80GB")
    fp8 = _plan(_cfg(quantization="fp8", vllm_args={"kv_cache_dtype": "fp8"}), "H100-80GB")
    assert fp8.kv_bytes_per_token * 2 == base.kv_bytes_per_token
    # Linear weights halve; embeddings, norms and the vision tower stay bf16.
    assert base.weights_bytes * 0.5 < fp8.weights_bytes < base.weights_bytes * 0.6


def test_a_config_that_does_not_fit_gets_single_changes_that_do() -> None:
    cfg = vl_config.from_dict({"model": "Qwen/Qwen3-VL-8B-Thinking", "max_model_len": 32768})
    result = _plan(cfg, "L4")
    assert result.fits is False and result.reasons
    fields = [c["field"] for c in result.changes]
    assert fields == [
        "max_model_len",
        "vllm_args.kv_cache_dtype",
        "quantization",
        "tensor_parallel_size",
    ]
    for change in result.changes:
        key, value = change["field"], change["value"]
        if key.startswith("vllm_args."):
            update: dict[str, Any] = {"vllm_args": {key.removeprefix("vllm_args."): value}}
        else:
            update = {key: value}
        changed = _plan(cfg.model_copy(update=update), "L4")
        assert changed.fits is True
        assert changed.kv_tokens == change["kv_tokens"]


def test_weights_alone_too_big_and_too_few_gpus() -> None:
    big = _plan(vl_config.load(REPO / "deploy/configs/ernie-4.5-vl-424b-a47b.yaml"), "A100-40GB")
    assert big.fits is False and "exceed" in big.reasons[0]
    assert all(c["field"] == "tensor_parallel_size" for c in big.changes)
    few = _plan(_cfg(tensor_parallel_size=2), "H100-80GB", count=1)
    assert few.fits is False and "need 2 GPUs" in few.reasons[-1]


def test_worst_request_media_tokens() -> None:
    # Qwen3-VL: a 16 Mpx budget per image (16384 tokens of 32x32 px), 10 items per request at most.
    result = _plan(_cfg(max_model_len=32768, limit_mm_per_prompt={"image": 10, "video": 2}))
    assert (result.media.image, result.media.video) == (16384, 12288)
    assert (result.media.images, result.media.videos) == (10, 0)
    assert not result.media_fits
    small = _plan(
        _cfg(
            limit_mm_per_prompt={"image": 2, "video": 1},
            mm_processor_kwargs={"max_pixels": 1280 * 32 * 32},
        )
    )
    assert (small.media.image, small.media.video) == (1280, 640)
    assert small.media.request == 2 * 1280 + 640 and small.media_fits
    qwen25 = _plan(vl_config.load(REPO / "deploy/configs/qwen2.5-vl-7b-instruct.yaml"))
    assert qwen25.media.image == 1280  # its mm_processor_kwargs.max_pixels, 28x28 px per token
    assert qwen25.media.video == 16 * 1280  # 32 frames, two per token row


def test_facts_from_the_hub_cache_and_a_local_folder(_empty_hub_cache: Path) -> None:
    published = model_table.PUBLISHED[QWEN3_4B]
    snapshot = _empty_hub_cache / "models--Qwen--Qwen3-VL-4B-Instruct" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    config = json.loads(json.dumps(published["config"]))
    config["text_config"]["num_hidden_layers"] = 2
    (snapshot / "config.json").write_text(json.dumps(config))
    (snapshot / "preprocessor_config.json").write_text(json.dumps(published["image"]))
    found = model_facts.find(QWEN3_4B)
    assert found.text["num_hidden_layers"] == 2 and str(snapshot) in found.source
    assert model_facts.find(str(snapshot)).text["num_hidden_layers"] == 2
    # A layout the planner does not read falls back to the shipped facts of a preset's model.
    (snapshot / "config.json").write_text(json.dumps({"model_type": "someone_remote_vl"}))
    assert model_facts.find(QWEN3_4B).source.startswith("source: Qwen/Qwen3-VL-4B-Instruct's")


def test_unknown_model_names_where_it_looked() -> None:
    with pytest.raises(ConfigError) as err:
        model_facts.find("someone/unknown-vl")
    assert "Hugging Face cache" in err.value.fix and QWEN3_4B in err.value.fix


def test_gpu_field() -> None:
    assert ALLOWANCE_BYTES == 2 * GIB and "allowance\n    of 2 GiB" in (GpuConfig.__doc__ or "")
    assert _cfg(gpu={"name": "h100-80gb"}).gpu.memory_bytes() == 81559 * 2**20
    assert _cfg(gpu={"name": "MI300X", "memory_gib": 192}).gpu.memory_bytes() == 192 * GIB
    assert not _cfg().gpu.named and Target.of(_cfg().gpu) is None
    with pytest.raises(ConfigError, match="unknown GPU 'MI300X'"):
        _cfg(gpu={"name": "MI300X"})
    with pytest.raises(ConfigError, match="count needs a GPU"):
        _cfg(gpu={"count": 2})
    assert parse_size("80GiB") == 80 * GIB and parse_size("81559MiB") == 81559 * 2**20
    assert parse_size("80 GB") == 80 * 10**9 and parse_size("1024") == 1024
    with pytest.raises(ValueError):
        parse_size("lots")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.run(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = str(REPO / "deploy/configs/qwen3-vl-8b-thinking.yaml")
    code, out, _ = _run(["plan", preset, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["fits"] is True and data["gpu"]["name"] == "A100-40GB"
    for key in ("weights_bytes", "kv_bytes_per_token", "kv_tokens", "max_full_sequences"):
        assert isinstance(data[key], int), key
    assert data["allowance_bytes_per_gpu"] == ALLOWANCE_BYTES
    code, out, _ = _run(["plan", "--config", preset, "--gpu", "L4"], capsys)
    assert code == 1 and "verdict: does not fit" in out and "fits with quantization: fp8" in out
    code, out, _ = _run(["plan", preset, "--gpu-memory", "80GiB"], capsys)
    assert code == 0 and "verdict: fits" in out and "2.00 GiB allowance" in out
    code, _, err = _run(["plan", preset, "--gpu", "TPU"], capsys)
    assert code == 2 and "unknown GPU" in err
    code, _, err = _run(["plan", preset, "--gpu", "L4", "--gpu-memory", "1GiB"], capsys)
    assert code == 2 and "not allowed with" in err


def test_check_warns_when_the_named_gpu_is_too_small(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load((REPO / "deploy/configs/qwen3-vl-8b-thinking.yaml").read_text())
    data["gpu"] = {"name": "L4"}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = _run(["check", str(path)], capsys)
    assert code == 0 and out.strip().endswith(": ok")
    assert "warning:" in err and "does not fit L4" in err and "vl-serve plan" in err


def test_tiny_default_config_plans_without_a_gpu() -> None:
    cfg = vl_config.load(cli.default_config())
    result = compute(cfg, facts_for(cfg, build=True), None)
    assert result.block_size == 128 and result.kv_tokens == 128 * 2**20 // 256
    assert result.fits is True and result.media_fits


def test_the_pt_layout_is_planned_as_the_native_one() -> None:
    """builtin:tiny-ernie45-vl-pt is builtin:tiny-ernie45-vl in the -PT layout: the same plan."""
    figures = ("weights_bytes", "kv_bytes_per_token", "kv_tokens", "max_full_sequences")
    plans = []
    for name in ("tiny-ernie45-vl", "tiny-ernie45-vl-pt"):
        cfg = vl_config.from_dict({"model": f"builtin:{name}", "trust_remote_code": False})
        result = plan(cfg, facts_for(cfg, build=True), None)
        plans.append(([getattr(result, f) for f in figures], result.media))
    assert plans[0] == plans[1]
    # The published -PT config.json's fields, read natively, are the shipped facts' values.
    from vl_serve.model_facts_pt import pt_as_native

    remote = {
        "model_type": "ernie4_5_moe_vl",
        "hidden_size": 2560,
        "intermediate_size": 12288,
        "num_hidden_layers": 28,
        "num_attention_heads": 20,
        "num_key_value_heads": 4,
        "vocab_size": 103424,
        "moe_num_experts": [64, 64],
        "moe_intermediate_size": [1536, 512],
        "moe_layer_start_index": [1, 1],
        "moe_layer_end_index": [29, 28],
        "moe_k": 6,
        "moe_num_shared_experts": 2,
        "spatial_conv_size": 2,
        "temporal_conv_size": 2,
        "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16},
    }
    native, image, _ = pt_as_native(remote, {"min_pixels": 3136, "max_pixels": 4842768})
    shipped = model_table.PUBLISHED["baidu/ERNIE-4.5-VL-28B-A3B-PT"]
    for key in remote.keys() & shipped["config"]["text_config"].keys() - {"moe_num_experts"}:
        assert native["text_config"][key] == shipped["config"]["text_config"][key], key
    assert (
        native["text_config"]["mlp_layer_types"]
        == shipped["config"]["text_config"]["mlp_layer_types"]
    )
    assert (
        native["text_config"]["moe_num_experts"] == 64 and native["text_config"]["head_dim"] == 128
    )
    for key, value in native["vision_config"].items():
        assert shipped["config"]["vision_config"][key] == value, key
    assert image == shipped["image"]
