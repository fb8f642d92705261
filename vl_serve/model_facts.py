"""A model's config.json and processor configs, from a local folder, the HF cache or the table.

``vl-serve plan`` needs the architecture (layers, heads, experts, vocabulary, vision tower) and
the processor's pixel limits. They are read from the model's own files where this machine has
them: a local folder, a built embedded model, or the Hugging Face hub cache. Without them, the
presets' models fall back to the published values shipped in :mod:`vl_serve.model_table`.
ERNIE-4.5-VL's ``-PT`` layout is read as the native one (:mod:`vl_serve.model_facts_pt`).
Nothing here downloads anything or imports torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vl_serve import model_table
from vl_serve.errors import ConfigError
from vl_serve.model_facts_pt import PT_MODEL_TYPE, pt_as_native

# model_type -> the family the planner computes (vl_serve.plan_weights, vl_serve.plan_media).
FAMILIES = {
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "ernie4_5_vl_moe": "ernie45_vl",
    "minicpmv": "minicpmv",
    "llama4": "llama4",
}


@dataclass(frozen=True)
class ModelFacts:
    """What the planner knows of one model: its config.json, processor configs and their source."""

    model: str
    config: dict[str, Any]
    image: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def family(self) -> str:
        return FAMILIES[str(self.config.get("model_type"))]

    @property
    def text(self) -> dict[str, Any]:
        """The language model's fields (``text_config``, or the top level where they sit there)."""
        text = self.config.get("text_config")
        return text if isinstance(text, dict) else self.config

    @property
    def vision(self) -> dict[str, Any]:
        vision = self.config.get("vision_config")
        return vision if isinstance(vision, dict) else {}

    @property
    def tied(self) -> bool:
        """Whether the output head shares the input embedding's weights."""
        value = self.text.get("tie_word_embeddings", self.config.get("tie_word_embeddings"))
        return bool(value)

    @property
    def torch_dtype(self) -> str:
        text = self.text
        for holder in (self.config, text):
            for key in ("dtype", "torch_dtype"):
                if isinstance(holder.get(key), str):
                    return str(holder[key])
        return "bfloat16"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_folder(folder: Path, model: str) -> ModelFacts | None:
    """The facts in a model folder (config.json and processor configs), or None without one.

    transformers writes the image and video processors either in ``processor_config.json``
    (nested) or in ``preprocessor_config.json`` and ``video_preprocessor_config.json``.
    """
    config = _read_json(folder / "config.json")
    if config is None:
        return None
    if config.get("model_type") == PT_MODEL_TYPE:
        native = pt_as_native(config, _read_json(folder / "preprocessor_config.json") or {})
        source = f"source: {folder}'s -PT config.json and preprocessor_config.json"
        return ModelFacts(model, *native, source)
    processor = _read_json(folder / "processor_config.json") or {}
    image = processor.get("image_processor") or _read_json(folder / "preprocessor_config.json")
    video = processor.get("video_processor") or _read_json(
        folder / "video_preprocessor_config.json"
    )
    return ModelFacts(
        model,
        config,
        image or {},
        video or {},
        f"source: {folder}'s config.json and processor configs",
    )


def hub_cache() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def cached_snapshot(model: str) -> Path | None:
    """The cached snapshot of a hub model (the one ``refs/main`` names, else the newest)."""
    repo = hub_cache() / ("models--" + model.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if (snapshot / "config.json").is_file():
            return snapshot
    snapshots = sorted(
        (p for p in (repo / "snapshots").glob("*") if (p / "config.json").is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    return snapshots[-1] if snapshots else None


def published(model: str) -> ModelFacts | None:
    """The shipped facts of a preset's model, or None for a model the table does not have."""
    entry = model_table.PUBLISHED.get(model)
    if entry is None:
        return None
    return ModelFacts(
        model, entry["config"], entry["image"], entry["video"], model_table.source(model)
    )


def find(model: str, folder: Path | None = None) -> ModelFacts:
    """The facts of ``model``: ``folder`` (or the model as a local path), the HF cache, the table.

    A ConfigError names what was looked at when none has them, or when the files found are of an
    architecture the planner does not compute and the table has no entry to use instead.
    """
    tried: list[str] = []
    candidates: list[Path] = []
    if folder is not None:
        candidates.append(folder)
    elif Path(model).expanduser().is_dir():
        candidates.append(Path(model).expanduser())
    else:
        snapshot = cached_snapshot(model)
        if snapshot is not None:
            candidates.append(snapshot)
        tried.append(f"the Hugging Face cache ({hub_cache()})")
    unread = None
    for path in candidates:
        facts = read_folder(path, model)
        if facts is None:
            tried.append(f"{path} (no config.json)")
            continue
        model_type = str(facts.config.get("model_type"))
        if model_type in FAMILIES:
            return facts
        unread = f"model_type {model_type!r}"
        tried.append(f"{path} ({unread})")
    shipped = published(model)
    if shipped is not None:
        return shipped
    what = (
        f"the planner does not read {unread}; planned models: {', '.join(sorted(FAMILIES))}"
        if unread
        else "put its config.json and preprocessor_config.json in a local folder and name it"
    )
    raise ConfigError(
        "model",
        model,
        f"no model facts found (looked at {'; '.join(tried) or 'nothing'}; shipped facts: "
        f"{', '.join(model_table.PUBLISHED)}); {what}",
    )
