"""What a model's HF processors make of an image or a video, loaded the way vLLM's loader loads it."""

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


@functools.cache
def processor(model_dir: Path) -> Any:
    """The model's HF processor (tokenizer, image and video processors), as vLLM loads it."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(model_dir))


def video_frames(data: bytes, indices: list[int]) -> Any:
    """Frames ``indices`` of a video file as RGB arrays (OpenCV, the decoder vLLM uses)."""
    import os
    import tempfile

    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "video.mp4")
        with open(path, "wb") as fh:
            fh.write(data)
        cap = cv2.VideoCapture(path)
        try:
            frames = []
            for index in indices:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = cap.read()
                assert ok, index
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            cap.release()
    return np.stack(frames)


def video_tokens(model_dir: Path, frames: Any, metadata: dict[str, Any]) -> int:
    """The prompt tokens of one video part (``<|vision_start|><|video_pad|><|vision_end|>`` as
    the processor expands it, per-frame times included) for ``frames`` with vLLM's ``metadata``
    (fps, frames_indices, total_num_frames, duration): the frames are used as given."""
    from transformers.video_utils import VideoMetadata

    out = processor(model_dir)(
        text="<|vision_start|><|video_pad|><|vision_end|>",
        videos=[frames],
        video_metadata=[VideoMetadata(**metadata)],
        do_sample_frames=False,
        return_tensors="np",
    )
    return len(out["input_ids"][0])
