"""The embedded tiny models by name: where each is cached, and building it once, safely.

``model: builtin:<name>`` names one of :data:`BUILDERS`. A model is built on first use into the
user's cache dir (``$VL_SERVE_CACHE`` or ``$XDG_CACHE_HOME/vl-serve``, then
``models/<name>-v<version>``): built in a temporary folder and renamed into place under a file
lock, so concurrent first uses build it once and nobody sees a half-written folder. Later uses are
a directory lookup. Builders are named by "module:function" and imported only to build.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vl_serve.builtin.common import SEED
from vl_serve.errors import ConfigError

# Bump when a builder's output changes, so caches rebuild.
BUILDER_VERSION = "5"

# Public names (used in configs as builtin:<name>): treat a rename as breaking.
BUILDERS: dict[str, str] = {
    "tiny-qwen3-vl": "vl_serve.builtin.qwen3_vl:build_tiny_qwen3_vl",
    "tiny-ernie45-vl": "vl_serve.builtin.ernie45_vl:build_tiny_ernie45_vl",
    "tiny-ernie45-vl-pt": "vl_serve.builtin.ernie45_vl_pt:build_tiny_ernie45_vl_pt",
}


def builder(name: str) -> Callable[[Path], None]:
    """The function that writes model ``name`` into a folder (imports its module)."""
    module, _, func = BUILDERS[name].partition(":")
    built: Callable[[Path], None] = getattr(importlib.import_module(module), func)
    return built


def cache_root() -> Path:
    base = os.environ.get("VL_SERVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vl-serve"
    )
    return Path(base) / "models"


def model_dir(name: str) -> Path:
    """Where a builtin model lives (whether or not it is built yet)."""
    if name not in BUILDERS:
        raise ConfigError(
            "model",
            f"builtin:{name}",
            f"unknown builtin model; choose one of: {', '.join(BUILDERS)}",
        )
    return cache_root() / f"{name}-v{BUILDER_VERSION}"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(name: str) -> Path:
    """Build the builtin model once (seeded, deterministic); return its folder."""
    target = model_dir(name)
    if (target / "config.json").exists():
        return target
    with _lock(target.with_suffix(".lock")):
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            builder(name)(tmp)
            (tmp / "vl_serve_builtin.json").write_text(
                json.dumps({"name": name, "builder_version": BUILDER_VERSION, "seed": SEED})
            )
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def describe(name: str) -> dict[str, Any]:
    """Name, cache folder and whether it is built yet, without building it."""
    return {
        "name": name,
        "path": str(model_dir(name)),
        "built": (model_dir(name) / "config.json").exists(),
    }
