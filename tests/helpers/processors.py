"""What a model's HF image processor makes of an image, loaded the way vLLM's loader loads it."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps


def as_vllm_loads(data: bytes) -> Image.Image:
    """The image vLLM's loader hands the processor: opened, EXIF orientation applied, RGB."""
    img = Image.open(io.BytesIO(data))
    img = ImageOps.exif_transpose(img) or img
    return img.convert("RGB")


@functools.cache
def image_processor(model_dir: Path) -> Any:
    """The image processor of the model in ``model_dir``, as transformers loads it for vLLM."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(model_dir))


def image_tokens(model_dir: Path, data: bytes) -> int:
    """The image's placeholder tokens: its ``image_grid_thw`` over the merge window."""
    proc = image_processor(model_dir)
    grid = proc(images=[as_vllm_loads(data)], return_tensors="pt")["image_grid_thw"][0]
    t, h, w = (int(v) for v in grid)
    return t * h * w // (proc.merge_size**2)
