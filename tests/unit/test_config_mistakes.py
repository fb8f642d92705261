"""Every config mistake reported, one line each: the schema, vllm_args, API-key variables.

vl-serve refuses in vllm_args every vLLM flag it sets itself or through a field (one row each
below), and a file with several mistakes gives one ``error:`` line per mistake through
``vl-serve check``. Nothing here starts vLLM; vLLM's argument parser is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vl_serve import cli, launch
from vl_serve import config as config_mod
from vl_serve.argv import DIRECT_FIELDS, OWNED, build_argv, vllm_parser
from vl_serve.errors import ConfigError


def _cfg(**data: Any) -> config_mod.VLServeConfig:
    return config_mod.from_dict({"model": "Qwen/Qwen3-VL-4B-Instruct", **data}, "x.yaml")


# Every vLLM destination vl-serve owns, one row each: (vllm_args key, a value, the pointer printed).
OWNED_ROWS = [
    pytest.param("config", "x.yaml", "this vl-serve YAML", id="config"),
    pytest.param("api_key", "sk-x", "'server.api_key_env'", id="api_key"),
    pytest.param("middleware", "m:M", "vl-serve sets this itself", id="middleware"),
    pytest.param("hf_token", "hf_x", "set HF_TOKEN in the server's environment", id="hf_token"),
    pytest.param("enable_mm_embeds", True, "past vl-serve's media checks", id="mm_embeds"),
    pytest.param("shutdown_timeout", 5, "'server.drain_timeout'", id="shutdown_timeout"),
    pytest.param(
        "enable_request_id_headers", True, "echoes it on every answer", id="request_id_headers"
    ),
    pytest.param("allowed_media_domains", ["a.example"], "'media.allowed_domains'", id="domains"),
    pytest.param(
        "allowed_local_media_path", "/srv", "'media.allowed_local_media_path'", id="local"
    ),
    pytest.param("trust_request_mm_kwargs", True, "'media.trust_request_mm_kwargs'", id="trust-mm"),
    pytest.param("reasoning_parser", "qwen3", "'reasoning.parser'", id="reasoning_parser"),
    pytest.param("served_model_name", "x", "'served_model_name'", id="served_model_name"),
    pytest.param("host", "0.0.0.0", "'server.host'", id="host"),
    pytest.param("port", 9000, "'server.port'", id="port"),
    pytest.param("model", "m", "'model'", id="model"),
    pytest.param("model_tag", "m", "'model'", id="model_tag"),
    pytest.param("trust_remote_code", True, "'trust_remote_code'", id="trust_remote_code"),
    pytest.param("mm_processor_kwargs", {"fps": 1}, "'mm_processor_kwargs'", id="mm_processor"),
    pytest.param("media_io_kwargs", {"video": {}}, "'media_io_kwargs'", id="media_io_kwargs"),
    pytest.param("tensor_parallel_size", 2, "'tensor_parallel_size'", id="tp"),
    pytest.param("pipeline_parallel_size", 2, "'pipeline_parallel_size'", id="pp"),
    pytest.param("data_parallel_size", 2, "'data_parallel_size'", id="dp"),
    pytest.param("distributed_executor_backend", "mp", "'distributed_executor_backend'", id="deb"),
    pytest.param("max_model_len", 4096, "'max_model_len'", id="max_model_len"),
    pytest.param("max_num_seqs", 4, "'max_num_seqs'", id="max_num_seqs"),
    pytest.param("gpu_memory_utilization", 0.5, "'gpu_memory_utilization'", id="gpu_mem"),
    pytest.param("dtype", "half", "'dtype'", id="dtype"),
    pytest.param("quantization", "fp8", "'quantization'", id="quantization"),
    pytest.param("limit_mm_per_prompt", {"image": 1}, "'limit_mm_per_prompt'", id="limit_mm"),
]


@pytest.mark.parametrize(("key", "value", "pointer"), OWNED_ROWS)
def test_owned_vllm_args_are_refused_with_a_pointer(key: str, value: Any, pointer: str) -> None:
    for spelling in (key, key.replace("_", "-")):
        cfg = _cfg(vllm_args={spelling: value})
        with pytest.raises(ConfigError) as info:
            build_argv(cfg, cfg.model)
        (line,) = info.value.lines()
        assert line.startswith(f"<config>: vllm_args.{spelling} = {value!r}: ")
        assert pointer in line


@pytest.mark.parametrize(
    ("name", "pointer"),
    [
        ("VLLM_API_KEY", "server.api_key_env"),
        ("HF_TOKEN", "set it in the server's environment"),
        ("HUGGING_FACE_HUB_TOKEN", "set it in the server's environment"),
    ],
)
def test_a_secret_in_the_env_section_is_refused(name: str, pointer: str) -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(env={"VLLM_CPU_KVCACHE_SPACE": "1", name: "sk-in-the-file"})
    (line,) = info.value.lines()
    assert line.startswith(f"x.yaml: env.{name} = ") and pointer in line
    assert "sk-in-the-file" not in line


# A value other than the default for each field that maps onto the vLLM flag of its name.
DIRECT_VALUES = {
    "tensor_parallel_size": 2,
    "pipeline_parallel_size": 2,
    "data_parallel_size": 2,
    "distributed_executor_backend": "mp",
    "max_model_len": 4096,
    "max_num_seqs": 4,
    "gpu_memory_utilization": 0.5,
    "dtype": "half",
    "quantization": "fp8",
    "limit_mm_per_prompt": {"image": 1},
}


def test_owned_table_covers_every_flag_vl_serve_sets() -> None:
    """Each vLLM destination a full config changes is owned (refused in vllm_args), bar the one
    vllm_args may extend; and the table above has a row for every owned key."""
    cfg = _cfg(
        **DIRECT_VALUES,
        served_model_name=["a", "b"],
        trust_remote_code=True,
        mm_processor_kwargs={"fps": 1},
        media_io_kwargs={"image": {"a": 1}},
        server={"host": "0.0.0.0", "port": 9000},
        reasoning={"parser": "qwen3", "default_enable_thinking": True},
        media={"allowed_local_media_path": "/srv", "trust_request_mm_kwargs": True},
    )
    parser = vllm_parser()
    got, base = vars(parser.parse_args(build_argv(cfg, "m"))), vars(parser.parse_args(["m"]))
    changed = {dest for dest in got if got[dest] != base[dest]}
    assert changed - set(OWNED) == {"default_chat_template_kwargs"}
    assert {row.values[0] for row in OWNED_ROWS} == set(OWNED)
    assert set(DIRECT_VALUES) == set(DIRECT_FIELDS)


def test_vllm_args_values_and_chat_template_kwargs_pass_through() -> None:
    cfg = _cfg(
        reasoning={"default_enable_thinking": False},
        vllm_args={"seed": -1, "default-chat-template-kwargs": {"a": 1}},
    )
    args = vllm_parser().parse_args(build_argv(cfg, cfg.model))
    assert args.seed == -1  # a negative number is a value, not a flag
    assert args.default_chat_template_kwargs == {"a": 1, "enable_thinking": False}


def test_every_vllm_args_mistake_is_reported() -> None:
    cfg = _cfg(vllm_args={"no_such_flag": 1, "port": 1, "config": "x.yaml", "block_size": "huge"})
    with pytest.raises(ConfigError) as info:
        build_argv(cfg, cfg.model)
    fields = [m.field for m in info.value.mistakes]
    assert fields == ["vllm_args.no_such_flag", "vllm_args.port", "vllm_args.config", "vllm_args"]
    assert "invalid int value: 'huge'" in info.value.lines()[-1]


# A YAML tree with several mistakes -> the field of each line, in order.
MANY_BAD = [
    pytest.param(
        {"max_num_seqs": 0, "dtype": "fp64", "server": {"prot": 1}},
        ["max_num_seqs", "dtype", "server.prot"],
        id="three-fields",
    ),
    pytest.param(
        {"max_model_len": "${NOPE_VAR}", "max_num_seqs": 0, "env": {"A": "${NOPE_VAR_2}"}},
        ["max_model_len", "env.A", "max_num_seqs"],  # unset variables first, not re-reported
        id="interpolation-and-bound",
    ),
    pytest.param({"served_model_name": 5}, ["served_model_name"], id="union-one-line"),
    pytest.param(
        {"server": {"api_key_env": 7, "port": 0}},
        ["server.port", "server.api_key_env"],
        id="nested-union",
    ),
    pytest.param(
        {"model": None, "media": {"max_redirects": 11}},
        ["model", "media.max_redirects"],
        id="null-and-bound",
    ),
]


@pytest.mark.parametrize(("data", "fields"), MANY_BAD)
def test_every_schema_mistake_is_reported(
    data: dict[str, Any], fields: list[str], monkeypatch: Any
) -> None:
    monkeypatch.delenv("NOPE_VAR", raising=False)
    monkeypatch.delenv("NOPE_VAR_2", raising=False)
    with pytest.raises(ConfigError) as info:
        _cfg(**data)
    assert [m.field for m in info.value.mistakes] == fields
    lines = info.value.lines()
    assert all(line.startswith(f"x.yaml: {f}") for line, f in zip(lines, fields, strict=True))
    assert str(info.value) == "\n".join(lines)


def test_union_mistake_lists_what_the_field_accepts() -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(served_model_name=5)
    assert info.value.lines() == [
        "x.yaml: served_model_name = 5: Input should be a valid string or a valid list"
    ]


def test_missing_field_names_no_value() -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.from_dict({}, "x.yaml")
    assert info.value.lines() == ["x.yaml: model: Field required"]


def test_every_missing_secret_is_reported(monkeypatch: Any) -> None:
    for name in ("NOPE_KEY_A", "NOPE_KEY_B", "NOPE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    server = {"api_key_env": ["NOPE_KEY_A", "NOPE_KEY_B"], "metrics_token_env": "NOPE_TOKEN"}
    with pytest.raises(ConfigError) as info:
        launch.check_secrets(_cfg(server=server))
    assert [(m.field, m.value) for m in info.value.mistakes] == [
        ("server.api_key_env", "NOPE_KEY_A"),
        ("server.api_key_env", "NOPE_KEY_B"),
        ("server.metrics_token_env", "NOPE_TOKEN"),
    ]


@pytest.fixture
def _own_log_handlers() -> Iterator[None]:
    """cli.run() attaches a stderr handler once per process; drop it with this test's stderr."""
    log = logging.getLogger("vl_serve")
    before = list(log.handlers)
    yield
    log.handlers[:] = before


# A config file with several mistakes, extra arguments -> the start of each `error:` line, in order.
MANY = [
    pytest.param(
        "model: x\nmax_num_seqs: 0\nserver: {prot: 1}\nvllm_args: {config: x.yaml}\n",
        [],
        ["max_num_seqs = 0: ", "server.prot = 1: unknown field", "vllm_args.config = 'x.yaml': "],
        id="three-mistakes",
    ),
    pytest.param(
        "model: x\ndtype: fp64\nvllm_args: {port: 1}\n",
        [],
        ["dtype = 'fp64': ", "vllm_args.port = 1: set this with the field 'server.port'"],
        id="schema-and-vllm-args",
    ),
    pytest.param(
        "model: x\nmax_num_seqs: 0\nserver: {api_key_env: NOPE_KEY}\nvllm_args: {bogus: 1}\n",
        [],
        ["max_num_seqs = 0: ", "vllm_args.bogus = 1: Unknown vLLM argument", "server.api_key_env"],
        id="schema-vllm-args-and-secret",
    ),
    pytest.param(
        "model: x\nserver: {api_key_env: NOPE_KEY}\nvllm_args: {api_key: k, bogus: 1}\n",
        [],
        ["server.api_key_env = 'NOPE_KEY'", "vllm_args.api_key = 'k'", "vllm_args.bogus = 1"],
        id="valid-schema-secret-and-vllm-args",
    ),
    pytest.param(
        "model: ${NOPE_MODEL}\nmax_num_seqs: 0\n",
        [],
        ["model = '${NOPE_MODEL}': environment variable", "max_num_seqs = 0"],
        id="unset-variable-and-bound",
    ),
    pytest.param(
        "model: x\nmax_num_seqs: 0\n", ["--port", "0"], ["max_num_seqs", "--port = 0"], id="port"
    ),
]


@pytest.mark.parametrize(("text", "extra", "starts"), MANY)
@pytest.mark.usefixtures("_own_log_handlers")
def test_check_prints_one_line_per_mistake(
    text: str,
    extra: list[str],
    starts: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    monkeypatch.delenv("NOPE_MODEL", raising=False)
    path = tmp_path / "many.yaml"
    path.write_text(text)
    code = cli.run(["check", str(path), *extra])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == len(starts), err
    for line, start in zip(lines, starts, strict=True):
        source = "<command line>" if start.startswith("--") else str(path)
        assert line.startswith(f"error: {source}: {start}"), line
