"""The served model's image size rule, so an oversized image is resized once, here, to its target.

vLLM's HF processor resizes every image to a size of its own (Qwen2-VL, Qwen2.5-VL and Qwen3-VL:
transformers' ``smart_resize``, sides a multiple of ``patch_size * merge_size``, pixels within
``min_pixels``/``max_pixels``). For an image over that budget vLLM would decode all of it and
then resize it; vl-serve instead decodes it at a reduced JPEG scale and resizes it once to the
processor's own target, computed with the processor's own function, so the processor finds it at
its target and leaves it alone: the same image tokens, a fraction of the work.

The :class:`Budget` comes from the model's ``preprocessor_config.json`` (or the
``image_processor`` of ``processor_config.json``) and the deployment's ``mm_processor_kwargs``,
read once per server. Families whose rule is not modelled here (MiniCPM-V slicing, Llama-4 tiles,
ERNIE-4.5-VL's adapter, anything unknown) get no budget: their images go on untouched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# model_type -> the processor's resize rule (transformers' own function, imported on first use).
_QWEN_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"})
# Qwen2VLImageProcessor.size, used where a config names no size.
_QWEN_DEFAULT_SIZE = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the Qwen processors' resample
PRESIZED_FORMATS = frozenset({"JPEG"})


def _qwen_smart_resize() -> Callable[..., tuple[int, int]]:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    return smart_resize


@dataclass(frozen=True)
class Budget:
    """The image size rule of the served model's processor (BICUBIC resampling, as Qwen's)."""

    factor: int
    min_pixels: int
    max_pixels: int

    def fit(
        self, width: int, height: int, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> tuple[int, int] | None:
        """(width, height) the processor resizes a ``width`` x ``height`` image to, with the
        given pixel bounds (default: the budget's; never above the budget's maximum), or None
        when that target is not one the processor keeps as it is (then leave the image alone)."""
        lo = self.min_pixels if min_pixels is None else min_pixels
        hi = self.max_pixels if max_pixels is None else min(max_pixels, self.max_pixels)
        lo = min(lo, hi)
        resize = _qwen_smart_resize()
        try:
            th, tw = resize(height, width, factor=self.factor, min_pixels=lo, max_pixels=hi)
            kept = resize(
                th, tw, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
            )
        except ValueError:  # aspect ratio over 200: the processor refuses it itself
            return None
        return (tw, th) if kept == (th, tw) else None

    def presize(self, width: int, height: int, fmt: str) -> tuple[int, int] | None:
        """The processor's target for an image over the budget, else None (leave it alone).

        Only JPEGs: their DCT-domain scaling is what makes the work smaller. Any other format
        decodes at full size here as in vLLM, and a second encode and decode would only add to
        it (a 1080p screenshot PNG: TTFT x1.3-1.4 against bare vLLM when presized)."""
        if fmt not in PRESIZED_FORMATS or width * height <= self.max_pixels:
            return None
        return self.fit(width, height)


def _image_processor_config(model_dir: str) -> dict[str, Any] | None:
    for name, key in (
        ("preprocessor_config.json", None),
        ("processor_config.json", "image_processor"),
    ):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            data = data.get(key) if key else data
            if isinstance(data, dict):
                return data
    return None


def _model_dir(model: str) -> str | None:
    if os.path.isdir(model):
        return model
    try:  # a hub id: the files vLLM downloaded before the API server started
        from huggingface_hub import snapshot_download

        return str(snapshot_download(model, local_files_only=True))
    except Exception:
        return None


def qwen_budget(
    processor: dict[str, Any], mm_kwargs: dict[str, Any] | None = None
) -> Budget | None:
    """A Qwen-VL image processor's budget from its config and the deployment's kwargs, as
    transformers' ``Qwen2VLImageProcessor.__init__`` reads them (``size``, then the older
    ``min_pixels``/``max_pixels``, each overridden by ``mm_processor_kwargs``)."""
    kwargs = dict(mm_kwargs or {})
    size = dict(kwargs.get("size") or processor.get("size") or _QWEN_DEFAULT_SIZE)
    lo, hi = size.get("shortest_edge"), size.get("longest_edge")
    for source in (processor, kwargs):
        lo = source.get("min_pixels", lo)
        hi = source.get("max_pixels", hi)
    patch, merge = processor.get("patch_size"), processor.get("merge_size")
    resample = processor.get("resample", _BICUBIC)
    values = (lo, hi, patch, merge)
    if not all(isinstance(v, int) and v > 0 for v in values) or resample != _BICUBIC:
        return None
    assert isinstance(patch, int) and isinstance(merge, int)
    assert isinstance(lo, int) and isinstance(hi, int)
    if processor.get("do_resize") is False or lo > hi:
        return None
    _qwen_smart_resize()  # imported now, at start-up, rather than on the first image (seconds)
    return Budget(factor=patch * merge, min_pixels=lo, max_pixels=hi)


def model_budget(model: str | None, mm_kwargs: dict[str, Any] | None = None) -> Budget | None:
    """The budget of the model at ``model`` (a folder or a downloaded hub id), or None."""
    if not model:
        return None
    try:
        folder = _model_dir(model)
        if folder is None:
            return None
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
        if model_type not in _QWEN_TYPES:
            return None
        processor = _image_processor_config(folder)
        if processor is None:
            return None
        return qwen_budget(processor, mm_kwargs)
    except Exception as exc:  # an unreadable model folder: no presizing, vLLM decides
        logger.warning("image presizing is off: the model's processor config could not be read "
                       "(%s)", type(exc).__name__)  # fmt: skip
        return None


def settings_budget(settings: dict[str, Any]) -> Budget | None:
    """The budget for a server's settings (``model`` and ``mm_processor_kwargs``), or None when
    ``media.presize`` is off or the model's rule is not modelled."""
    media = settings.get("media") or {}
    if media.get("presize") is False:
        return None
    model = settings.get("model") or {}
    if not isinstance(model, dict):
        return None
    kwargs = model.get("mm_processor_kwargs")
    return model_budget(model.get("path"), kwargs if isinstance(kwargs, dict) else None)
