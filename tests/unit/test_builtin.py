"""The embedded tiny models: the registry (names, cache, build once; fake builders) and, built for
real, the real families' token ids and configs in them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vl_serve import builtin
from vl_serve.builtin import ernie45_vl, ernie45_vl_pt, qwen3_vl, registry
from vl_serve.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VL_SERVE_CACHE", str(tmp_path))
    return tmp_path / "models"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every builder with a fast fake that writes a config.json; the names it built."""
    done: list[str] = []

    def fake(name: str) -> Any:
        def build(out: Path) -> None:
            time.sleep(0.05)  # long enough for concurrent callers to meet at the lock
            done.append(name)
            (out / "config.json").write_text(json.dumps({"name": name}))

        return build

    monkeypatch.setattr(registry, "builder", fake)
    return done


def test_every_name_resolves_to_its_builder() -> None:
    assert registry.builder("tiny-qwen3-vl") is qwen3_vl.build_tiny_qwen3_vl
    assert registry.builder("tiny-ernie45-vl") is ernie45_vl.build_tiny_ernie45_vl
    assert registry.builder("tiny-ernie45-vl-pt") is ernie45_vl_pt.build_tiny_ernie45_vl_pt
    assert list(builtin.BUILDERS) == ["tiny-qwen3-vl", "tiny-ernie45-vl", "tiny-ernie45-vl-pt"]


def test_package_re_exports_what_the_benchmarks_and_tests_import() -> None:
    assert builtin.build_qwen_tokenizer is qwen3_vl.build_qwen_tokenizer
    assert builtin.save_qwen3_vl_processor is qwen3_vl.save_qwen3_vl_processor
    assert builtin.ensure_built is registry.ensure_built
    assert builtin.model_dir is registry.model_dir
    assert callable(ernie45_vl.build_ernie_tokenizer)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"VL_SERVE_CACHE": "/c"}, "/c/models", id="vl-serve-cache"),
        pytest.param({"XDG_CACHE_HOME": "/x"}, "/x/vl-serve/models", id="xdg"),
        pytest.param({"HOME": "/h"}, "/h/.cache/vl-serve/models", id="home"),
    ],
)
def test_cache_root(env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VL_SERVE_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert registry.cache_root() == Path(expected)


def test_model_dir_names_the_version_and_refuses_unknown_names(cache: Path) -> None:
    assert (
        registry.model_dir("tiny-qwen3-vl") == cache / f"tiny-qwen3-vl-v{registry.BUILDER_VERSION}"
    )
    with pytest.raises(ConfigError) as info:
        registry.model_dir("tiny-nope")
    assert "model = 'builtin:tiny-nope'" in info.value.line()
    assert "tiny-qwen3-vl, tiny-ernie45-vl, tiny-ernie45-vl-pt" in info.value.line()


def test_ensure_built_builds_once_and_records_how(cache: Path, builds: list[str]) -> None:
    assert registry.describe("tiny-qwen3-vl")["built"] is False
    path = registry.ensure_built("tiny-qwen3-vl")
    assert registry.ensure_built("tiny-qwen3-vl") == path == registry.model_dir("tiny-qwen3-vl")
    assert builds == ["tiny-qwen3-vl"]
    meta = json.loads((path / "vl_serve_builtin.json").read_text())
    assert meta == {
        "name": "tiny-qwen3-vl",
        "builder_version": registry.BUILDER_VERSION,
        "seed": 1234,
    }
    assert registry.describe("tiny-qwen3-vl") == {
        "name": "tiny-qwen3-vl",
        "path": str(path),
        "built": True,
    }


def test_concurrent_first_uses_build_once(cache: Path, builds: list[str]) -> None:
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(registry.ensure_built("tiny-ernie45-vl")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == ["tiny-ernie45-vl"] and len(set(paths)) == 1 and len(paths) == 4


def test_a_failed_build_leaves_nothing_behind(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        def build(out: Path) -> None:
            (out / "config.json").write_text("{}")
            raise RuntimeError("builder failed")

        return build

    monkeypatch.setattr(registry, "builder", broken)
    with pytest.raises(RuntimeError, match="builder failed"):
        registry.ensure_built("tiny-qwen3-vl")
    assert not registry.model_dir("tiny-qwen3-vl").exists()
    assert [p.name for p in cache.iterdir()] == [f"tiny-qwen3-vl-v{registry.BUILDER_VERSION}.lock"]


# --- the real models' facts in the tiny ones (these build the real tiny models) ---

QWEN_REAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<think>": 151667,
    "</think>": 151668,
}
ERNIE_REAL_IDS = {
    "<unk>": 0,
    "<s>": 1,
    "</s>": 2,
    "<|begin_of_sentence|>": 100273,
    "<|IMAGE_PLACEHOLDER|>": 100295,
    "<|LOC_0|>": 100297,
    "<|LOC_1000|>": 101297,
    "<|IMAGE_START|>": 101304,
    "<|IMAGE_END|>": 101305,
    "<|VIDEO_START|>": 101306,
    "<|VIDEO_END|>": 101307,
}


def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from vl_serve_plugins.ernie import pt

    pt.register()
    return AutoTokenizer.from_pretrained(builtin.ensure_built(name), trust_remote_code=False)


@pytest.mark.parametrize(
    ("name", "ids", "vocab"),
    [
        pytest.param("tiny-qwen3-vl", QWEN_REAL_IDS, 151936, id="qwen3-vl"),
        pytest.param("tiny-ernie45-vl", ERNIE_REAL_IDS, 103424, id="ernie45-vl"),
        pytest.param("tiny-ernie45-vl-pt", ERNIE_REAL_IDS, 103424, id="ernie45-vl-pt"),
    ],
)
def test_special_tokens_have_the_real_ids(name: str, ids: dict[str, int], vocab: int) -> None:
    tok = _tokenizer(name)
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    config = json.loads((builtin.ensure_built(name) / "config.json").read_text())
    assert config.get("text_config", config)["vocab_size"] == vocab
    assert len(tok) <= vocab
    # The think tags are ordinary added tokens: they survive skip_special_tokens.
    think = [tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")]
    eos = tok.convert_tokens_to_ids("<|im_end|>" if "qwen" in name else "</s>")
    assert tok.decode([*think, eos], skip_special_tokens=True) == "<think></think>"


def test_the_tiny_models_are_the_real_configs_scaled_down() -> None:
    from vl_serve import model_table

    sizes = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}
    sizes |= {"num_key_value_heads", "head_dim", "rope_scaling", "rope_parameters", "depth"}
    sizes |= {"out_hidden_size", "deepstack_visual_indexes", "num_heads", "moe_intermediate_size"}
    sizes |= {"moe_k", "moe_num_experts", "mlp_layer_types"}
    for real, tiny in [
        (qwen3_vl.QWEN3_VL_4B_TEXT, qwen3_vl.TINY_TEXT),
        (qwen3_vl.QWEN3_VL_4B_VISION, qwen3_vl.TINY_VISION),
        (ernie45_vl.ERNIE_28B_TEXT, ernie45_vl.TINY_TEXT),
        (ernie45_vl.ERNIE_28B_VISION, ernie45_vl.TINY_VISION),
    ]:
        assert set(tiny) == set(real)
        assert {k: v for k, v in tiny.items() if k not in sizes} == {
            k: v for k, v in real.items() if k not in sizes
        }
    # The planner's published facts agree with the configs the tiny models derive from.
    for model, text, vision in [
        ("Qwen/Qwen3-VL-4B-Instruct", qwen3_vl.QWEN3_VL_4B_TEXT, qwen3_vl.QWEN3_VL_4B_VISION),
        ("baidu/ERNIE-4.5-VL-28B-A3B-PT", ernie45_vl.ERNIE_28B_TEXT, ernie45_vl.ERNIE_28B_VISION),
    ]:
        entry = model_table.PUBLISHED[model]["config"]
        for key, value in entry["text_config"].items():
            assert text[key] == value, (model, key)
        for key, value in entry["vision_config"].items():
            assert vision[key] == value, (model, key)


def test_the_pt_replica_has_the_native_models_weights() -> None:
    from safetensors import safe_open

    def tensors(name: str) -> dict[str, Any]:
        path = builtin.ensure_built(name) / "model.safetensors"
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118

    native, pt = tensors("tiny-ernie45-vl"), tensors("tiny-ernie45-vl-pt")
    assert any(k.startswith("vision_model.") for k in pt)
    assert not any(k.startswith("model.vision_model.") for k in pt)
    assert {k.removeprefix("model.") if "vision_model" in k else k for k in native} == set(pt)
    key = "vision_model.patch_embed.proj.weight"
    assert bool((native["model." + key] == pt[key]).all())
