"""Config -> argv, without a server: schema validation, interpolation, vLLM's parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vl_serve import config as config_mod
from vl_serve import launch
from vl_serve.argv import build_argv, vllm_parser
from vl_serve.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [
    *sorted((REPO / "deploy" / "configs").glob("*.yaml")),
    REPO / "vl_serve" / "configs" / "tiny-cpu.yaml",
]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate_and_parse_with_vllm(path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("VL_SERVE_API_KEY", "sk-test-not-printed")
    cfg = config_mod.load(path)
    plan = launch.prepare(cfg, build=False)
    args = vllm_parser().parse_args(plan.argv)
    assert args.model_tag == launch.model_path(cfg, build=False)
    if cfg.max_model_len:
        assert args.max_model_len == cfg.max_model_len
    if cfg.limit_mm_per_prompt:
        assert dict(args.limit_mm_per_prompt) == cfg.limit_mm_per_prompt
    assert args.port == cfg.server.port


def _cfg(**data: Any) -> config_mod.VLServeConfig:
    return config_mod.from_dict({"model": "Qwen/Qwen3-VL-4B-Instruct", **data}, "x.yaml")


def test_fields_map_to_vllm_flags() -> None:
    cfg = _cfg(
        tensor_parallel_size=8,
        max_model_len=32768,
        max_num_seqs=32,
        quantization="fp8",
        limit_mm_per_prompt={"image": 10, "video": 3},
        mm_processor_kwargs={"video_max_frames": 30},
        distributed_executor_backend="ray",
        reasoning={"parser": "qwen3", "default_enable_thinking": False},
        media={"allowed_domains": ["example.com"], "allowed_local_media_path": "/srv/media"},
        vllm_args={"enforce_eager": True, "enable-prefix-caching": False},
    )
    args = vllm_parser().parse_args(build_argv(cfg, cfg.model))
    assert args.tensor_parallel_size == 8
    assert args.max_model_len == 32768
    assert args.quantization == "fp8"
    assert dict(args.limit_mm_per_prompt) == {"image": 10, "video": 3}
    # FastDeploy's video_max_frames is vLLM's video loader num_frames.
    assert args.mm_processor_kwargs is None
    assert args.media_io_kwargs == {"video": {"num_frames": 30}}
    assert args.distributed_executor_backend == "ray"
    assert args.reasoning_parser == "qwen3"
    assert args.default_chat_template_kwargs == {"enable_thinking": False}
    # vLLM fetches nothing itself: the middleware fetches, checks and inlines every item.
    assert args.allowed_media_domains == ["media.invalid"]
    assert args.allowed_local_media_path in (None, "")
    assert args.enforce_eager is True
    assert args.enable_prefix_caching is False
    assert args.middleware == ["vl_serve.server.stack.ServerStack"]


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_vllm_always_trusts_request_kwargs_the_middleware_gates(trusted: bool) -> None:
    """vl-serve sets media_io_kwargs for the videos it samples, so vLLM takes request kwargs
    either way; media.trust_request_mm_kwargs is the middleware's switch (vl_serve.media.kwargs)."""
    cfg = _cfg(media={"trust_request_mm_kwargs": trusted})
    argv = build_argv(cfg, cfg.model)
    assert argv.count("--trust-request-mm-kwargs") == 1
    assert vllm_parser().parse_args(argv).trust_request_mm_kwargs is True


BAD = [
    pytest.param({"max_num_seqs": 0}, "max_num_seqs", "greater than or equal to 1", id="bound"),
    pytest.param({"tensor_paralel_size": 2}, "tensor_paralel_size", "unknown field", id="typo"),
    pytest.param({"server": {"prot": 1}}, "server.prot", "allowed here: api_key_env", id="nested"),
    pytest.param({"server": {"port": 70000}}, "server.port", "65535", id="port"),
    pytest.param({"quantization": "wint4"}, "quantization", "'awq'", id="wint4"),
    pytest.param({"quantization": "wint8"}, "quantization", "experts_int8", id="wint8"),
    pytest.param({"dtype": "fp64"}, "dtype", "bfloat16", id="dtype"),
    pytest.param({"limit_mm_per_prompt": {"imgs": 1}}, "limit_mm_per_prompt", "image", id="mm"),
    pytest.param({"model": "baidu/ERNIE-4.5-VL-424B-A47B-Paddle"}, "<root>", "-PT", id="paddle"),
    pytest.param({"media": {"allowed_local_media_path": "rel/dir"}}, "media", "absolute", id="rel"),
]


@pytest.mark.parametrize(("data", "field", "fix"), BAD)
def test_bad_config_names_field_value_and_fix(data: dict[str, Any], field: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(**data)
    line = info.value.line()
    assert line.startswith(f"x.yaml: {field}")
    assert fix in line
    assert "\n" not in line


VLLM_ARGS_BAD = [
    pytest.param({"no_such_flag": 1}, "Unknown vLLM argument 'no_such_flag'", id="unknown"),
    pytest.param({"max_model_len": 10}, "field 'max_model_len'", id="owned"),
    pytest.param({"api-key": "x"}, "server.api_key_env", id="owned-secret"),
    pytest.param({"port": 1}, "server.port", id="owned-port"),
    pytest.param({"block_size": "huge"}, "vLLM rejects", id="bad-value"),
    pytest.param(
        {"lora_modules": ["a=b", "--api-key", "k"]}, "read '--api-key' as a flag", id="flag-in-list"
    ),
    pytest.param({"chat_template": "--config=x.yaml"}, "read '--config=x.yaml'", id="flag-value"),
    pytest.param({"default_chat_template_kwargs": "x"}, "must be a mapping", id="template-kwargs"),
]


@pytest.mark.parametrize(("vllm_args", "message"), VLLM_ARGS_BAD)
def test_vllm_args_checked_against_vllm_parser(vllm_args: dict[str, Any], message: str) -> None:
    cfg = _cfg(vllm_args=vllm_args)
    with pytest.raises(ConfigError) as info:
        build_argv(cfg, cfg.model)
    assert message in info.value.line()


def test_interpolation(monkeypatch: Any) -> None:
    monkeypatch.setenv("MODEL_DIR", "/models/qwen")
    monkeypatch.delenv("UNSET_PORT", raising=False)
    cfg = config_mod.from_dict(
        {"model": "${MODEL_DIR}/vl", "server": {"port": "${UNSET_PORT:-9001}"}}, "x.yaml"
    )
    assert cfg.model == "/models/qwen/vl"
    assert cfg.server.port == 9001
    with pytest.raises(ConfigError, match=r"x.yaml: model = '\$\{NOPE_VAR\}'.*NOPE_VAR is not set"):
        config_mod.from_dict({"model": "${NOPE_VAR}"}, "x.yaml")


LOAD_BAD = [
    pytest.param("model: [unclosed\n", "line 2", "fix the YAML syntax", id="yaml-syntax"),
    pytest.param("- a\n- b\n", "<root>", "must be a YAML mapping", id="not-a-mapping"),
    pytest.param(
        "model: m\nmedia:\n  allowed_domains: [ok.example, '${NOPE_VAR_2}']\n",
        "media.allowed_domains[1]",
        "NOPE_VAR_2 is not set",
        id="interpolation-path",
    ),
    pytest.param(
        "model: m\nmedia: {max_redirect: 1}\n", "media.max_redirect", "max_redirects", id="typo"
    ),
]


@pytest.mark.parametrize(("text", "field", "fix"), LOAD_BAD)
def test_load_errors_name_file_field_and_fix(
    text: str, field: str, fix: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("NOPE_VAR_2", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert info.value.line().startswith(f"{path}: {field}")
    assert fix in info.value.line()
