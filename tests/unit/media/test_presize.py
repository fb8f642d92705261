"""Presizing: the processor gets the same image tokens and nearly the same pixels, for less work.

Each row runs transformers' own Qwen-VL image processor (as vLLM runs it: the image loaded the
way vLLM's loader loads it, EXIF orientation applied) on the original image and on what vl-serve
hands on, and compares ``image_grid_thw`` (the image's tokens) and ``pixel_values`` (PSNR).
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

from tests.helpers.media_requests import chat, data_url, decode_data_url, part_of, run, settings
from tests.helpers.photos import photo_jpeg, photo_png
from tests.helpers.processors import as_vllm_loads, image_tokens
from vl_serve.builtin.registry import model_dir
from vl_serve.media.images import ImageLimits, check_image
from vl_serve.media.presize import Budget, model_budget, qwen_budget

LIMITS = ImageLimits(max_pixels=4096 * 4096, min_side=10, max_aspect=200.0)
MIN_PSNR_DB = 35.0

# The processors' settings: the tiny models' (vl_serve/builtin/qwen3_vl.py), Qwen3-VL's and
# Qwen2.5-VL's published preprocessor configs.
TINY = {
    "patch_size": 16,
    "merge_size": 2,
    "size": {"shortest_edge": 64 * 64, "longest_edge": 256 * 256},
}
QWEN3 = {
    "patch_size": 16, "merge_size": 2, "temporal_patch_size": 2, "image_mean": [0.5] * 3,
    "image_std": [0.5] * 3, "size": {"shortest_edge": 65536, "longest_edge": 16777216},
}  # fmt: skip
QWEN25 = {"patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12845056}
ONE_MP = {"max_pixels": 1003520}  # a deployment's mm_processor_kwargs


@functools.cache
def image(name: str) -> bytes:
    if name == "4032x3024.jpg":
        return photo_jpeg(4032, 3024, seed=1)
    if name == "3024x4032-exif.jpg":  # stored landscape, shown portrait (orientation 6)
        return photo_jpeg(4032, 3024, seed=2, orientation=6)
    if name == "1920x1080.png":
        return photo_png(1920, 1080, seed=3)
    return photo_jpeg(640, 480, seed=4)


def processor(config: dict[str, Any], mm_kwargs: dict[str, Any]) -> Qwen2VLImageProcessor:
    return Qwen2VLImageProcessor(**{**config, **mm_kwargs})


def psnr(a: torch.Tensor, b: torch.Tensor, std: list[float]) -> float:
    """PSNR in dB of two pixel_values tensors, on the [0, 1] scale the processor normalised."""
    scale = torch.tensor(std, dtype=torch.float32).repeat_interleave(a.shape[-1] // len(std))
    mse = float((((a - b) * scale) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


CASES = [
    # image, processor settings, deployment kwargs, presized
    ("4032x3024.jpg", TINY, {}, True),
    ("3024x4032-exif.jpg", TINY, {}, True),
    ("1920x1080.png", TINY, {}, False),  # not a JPEG: goes on as it came
    ("640x480.jpg", TINY, {}, True),
    ("4032x3024.jpg", QWEN3, ONE_MP, True),
    ("3024x4032-exif.jpg", QWEN3, ONE_MP, True),
    ("1920x1080.png", QWEN3, ONE_MP, False),
    ("640x480.jpg", QWEN3, ONE_MP, False),
    ("4032x3024.jpg", QWEN25, {}, False),
    ("1920x1080.png", QWEN25, {}, False),
    ("4032x3024.jpg", QWEN25, ONE_MP, True),
    ("3024x4032-exif.jpg", QWEN25, ONE_MP, True),
    ("1920x1080.png", QWEN25, ONE_MP, False),
]


def _id(case: tuple[str, dict[str, Any], dict[str, Any], bool]) -> str:
    name, config, kwargs, _ = case
    family = {id(TINY): "tiny", id(QWEN3): "qwen3", id(QWEN25): "qwen2.5"}[id(config)]
    return f"{name}-{family}" + ("-1mp" if kwargs else "")


@pytest.mark.parametrize(("name", "config", "kwargs", "presized"), CASES, ids=map(_id, CASES))
def test_same_tokens_and_close_pixels(
    name: str, config: dict[str, Any], kwargs: dict[str, Any], presized: bool
) -> None:
    budget = qwen_budget(config, kwargs)
    assert budget is not None
    original = image(name)
    checked = check_image(original, LIMITS, budget=budget)
    assert (checked.data != original) is presized
    proc = processor(config, kwargs)
    want = proc(images=[as_vllm_loads(original)], return_tensors="pt")
    got = proc(images=[as_vllm_loads(checked.data)], return_tensors="pt")
    assert got["image_grid_thw"].tolist() == want["image_grid_thw"].tolist()
    if presized:
        # Already at the processor's target: its own resize keeps the size.
        _, gh, gw = want["image_grid_thw"][0].tolist()
        patch = config["patch_size"]
        assert (checked.width, checked.height) == (gw * patch, gh * patch)
        value = psnr(got["pixel_values"], want["pixel_values"], list(proc.image_std))
        print(f"{_id((name, config, kwargs, presized))}: PSNR {value:.1f} dB")
        assert value >= MIN_PSNR_DB, value


def test_alpha_png_is_flattened_like_vllm_and_kept_lossless() -> None:
    rgba = Image.new("RGBA", (800, 600), (10, 200, 30, 0))
    rgba.paste((200, 10, 10, 255), (100, 100, 400, 300))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    budget = qwen_budget(TINY)
    assert budget is not None
    assert check_image(buf.getvalue(), LIMITS, budget=budget).data == buf.getvalue()  # not presized
    from vl_serve.media.images import Resize

    checked = check_image(buf.getvalue(), LIMITS, Resize(max_pixels=60_000), budget=budget)
    out = Image.open(io.BytesIO(checked.data))
    assert (out.format, out.mode, checked.mime) == ("BMP", "RGB", "image/bmp")
    # vLLM fills transparency with white before the processor sees it.
    assert out.getpixel((2, 2)) == (255, 255, 255)
    assert out.getpixel((out.width // 2 - 20, out.height // 2 - 20)) == (200, 10, 10)


def test_tiny_model_budget_is_read_from_its_files() -> None:
    folder = model_dir("tiny-qwen3-vl")
    assert model_budget(str(folder)) == Budget(factor=32, min_pixels=4096, max_pixels=65536)
    assert model_budget(str(folder), {"max_pixels": 32768}) == Budget(32, 4096, 32768)


@pytest.mark.parametrize(
    ("config", "kwargs", "expected"),
    [
        pytest.param(QWEN3, ONE_MP, Budget(32, 65536, 1003520), id="qwen3-size-and-kwargs"),
        pytest.param(QWEN25, {}, Budget(28, 3136, 12845056), id="qwen2.5-min-max-pixels"),
        pytest.param(
            {"patch_size": 14, "merge_size": 2}, {}, Budget(28, 3136, 1003520), id="default-size"
        ),
        pytest.param({**QWEN3, "resample": 2}, {}, None, id="other-resample-untouched"),
        pytest.param({**QWEN3, "do_resize": False}, {}, None, id="no-resize-untouched"),
        pytest.param(
            {"size": {"shortest_edge": 1, "longest_edge": 2}}, {}, None, id="no-patch-size"
        ),
    ],
)
def test_budget_from_processor_settings(
    config: dict[str, Any], kwargs: dict[str, Any], expected: Budget | None
) -> None:
    assert qwen_budget(config, kwargs) == expected


@pytest.mark.parametrize(
    ("model_type", "presized"),
    [("qwen3_vl", True), ("qwen2_5_vl", True), ("minicpmv", False), ("llama4", False)],
)
def test_only_modelled_families_get_a_budget(
    tmp_path: Any, model_type: str, presized: bool
) -> None:
    (tmp_path / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
    (tmp_path / "preprocessor_config.json").write_text('{"patch_size": 16, "merge_size": 2}')
    assert (model_budget(str(tmp_path)) is not None) is presized


@pytest.mark.parametrize("presize", [True, False], ids=["presize-on", "presize-off"])
def test_inline_image_over_the_budget_is_presized(presize: bool) -> None:
    """A base64 photo over the budget goes the presizing path; one within it goes on as sent."""
    big, small = image("640x480.jpg"), photo_jpeg(200, 150, seed=5)
    st = settings(presize=presize)
    st["model"] = {"path": str(model_dir("tiny-qwen3-vl")), "mm_processor_kwargs": None}
    body = chat(
        {"type": "image_url", "image_url": {"url": data_url("image/jpeg", big)}},
        {"type": "image_url", "image_url": {"url": data_url("image/jpeg", small)}},
    )
    run(body, st)
    first = decode_data_url(part_of(body, 1)["image_url"]["url"])
    second = decode_data_url(part_of(body, 2)["image_url"]["url"])
    assert second == small
    if presize:
        assert Image.open(io.BytesIO(first)).size == (
            288,
            192,
        )  # smart_resize(480, 640, 32, 4096, 65536)
    else:
        assert first == big


def test_request_pixel_budget_uses_the_processor_rounding() -> None:
    """max_pixels on an item gives the processor's own size for that budget (one resize)."""
    budget = qwen_budget(QWEN3, ONE_MP)
    assert budget is not None
    from vl_serve.media.images import Resize

    checked = check_image(image("640x480.jpg"), LIMITS, Resize(max_pixels=100_000), budget=budget)
    assert (checked.width, checked.height) == (352, 256)  # smart_resize(480, 640, 32, max 1e5)
    assert np.asarray(Image.open(io.BytesIO(checked.data))).shape == (256, 352, 3)


@pytest.mark.parametrize("name", ["4032x3024.jpg", "3024x4032-exif.jpg", "640x480.jpg"])
def test_tiny_model_processor_counts_the_same_tokens(name: str) -> None:
    """The tiny model's own processor (loaded from its folder, as vLLM loads it) agrees."""
    folder = model_dir("tiny-qwen3-vl")
    budget = model_budget(str(folder))
    assert budget is not None
    checked = check_image(image(name), LIMITS, budget=budget)
    assert checked.data != image(name)
    assert image_tokens(folder, checked.data) == image_tokens(folder, image(name))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_upright_like_vllm(orientation: int) -> None:
    data = photo_jpeg(640, 480, seed=6, orientation=orientation)
    budget = qwen_budget(TINY)
    assert budget is not None
    checked = check_image(data, LIMITS, budget=budget)
    upright = as_vllm_loads(data)
    assert (checked.width, checked.height) == budget.presize(*upright.size, "JPEG")
    want = np.asarray(upright.resize((checked.width, checked.height), Image.Resampling.BICUBIC))
    got = np.asarray(as_vllm_loads(checked.data))
    mse = float(((got.astype(float) - want) ** 2).mean())
    assert 10 * math.log10(255**2 / mse) >= MIN_PSNR_DB
