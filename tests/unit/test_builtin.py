"""The embedded tiny models' registry without building a real model: names, cache, build once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vl_serve import builtin
from vl_serve.builtin import ernie45_vl, qwen3_vl, registry
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
    assert list(builtin.BUILDERS) == ["tiny-qwen3-vl", "tiny-ernie45-vl"]


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
    assert "tiny-qwen3-vl, tiny-ernie45-vl" in info.value.line()


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
