"""vl-serve's ERNIE-4.5-VL adapter without a server: config normalisation, registration.

Its rotary-embedding patch is tested in test_patches.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# The remote-code config.json of baidu/ERNIE-4.5-VL-28B-A3B-PT (the fields vLLM reads).
REMOTE_28B = {
    "architectures": ["Ernie4_5_VLMoeForConditionalGeneration"],
    "model_type": "ernie4_5_moe_vl",
    "hidden_size": 2560,
    "intermediate_size": 12288,
    "num_hidden_layers": 28,
    "num_attention_heads": 20,
    "num_key_value_heads": 4,
    "moe_num_experts": [64, 64],
    "moe_intermediate_size": [1536, 512],
    "moe_layer_start_index": [1, 1],
    "moe_layer_end_index": [29, 28],
    "moe_k": 6,
    "spatial_conv_size": 2,
    "temporal_conv_size": 2,
    "pixel_hidden_size": 1280,
    "im_patch_id": 100295,
    "freq_allocation": 20,
    "vision_config": {"depth": 32, "embed_dim": 1280, "hidden_size": 1280, "mlp_ratio": 4},
}


def _tiny_native_config() -> Any:
    from transformers import Ernie4_5_VLMoeConfig

    return Ernie4_5_VLMoeConfig(
        text_config={
            "vocab_size": 100,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "moe_intermediate_size": [32, 16],
            "moe_num_experts": 4,
            "mlp_layer_types": ["dense", "sparse", "sparse", "sparse"],
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5e5,
                "mrope_section": [6, 6, 4],
            },
        },
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2},
        image_token_id=7,
    )


def test_native_config_gets_the_flat_fields_vllm_reads() -> None:
    from vl_serve_plugins.ernie.config import is_native, normalize_config

    cfg = _tiny_native_config()
    assert is_native(cfg)
    assert normalize_config(cfg) is cfg
    assert cfg.hidden_size == 64 and cfg.num_hidden_layers == 4 and cfg.head_dim == 32
    assert cfg.moe_num_experts == [4, 4] and cfg.moe_intermediate_size == [32, 16]
    assert (cfg.moe_layer_start_index, cfg.moe_layer_end_index) == ([1, 1], [3, 3])
    assert cfg.moe_layer_interval == 1
    assert cfg.freq_allocation == 4  # the t section of mrope_section [h, w, t]
    assert (cfg.spatial_conv_size, cfg.temporal_conv_size, cfg.pixel_hidden_size) == (2, 2, 32)
    assert cfg.im_patch_id == 7
    assert cfg.vision_config.embed_dim == 32 and cfg.vision_config.mlp_ratio == 2.0
    assert not is_native(cfg)
    assert normalize_config(cfg).moe_num_experts == [4, 4]  # idempotent


def test_remote_format_config_is_left_alone() -> None:
    from transformers import PretrainedConfig

    from vl_serve_plugins.ernie.config import is_native, normalize_config

    cfg = PretrainedConfig(**REMOTE_28B)
    before = cfg.to_dict()
    assert not is_native(cfg)
    assert normalize_config(cfg).to_dict() == before


def test_unmappable_moe_layout_is_refused() -> None:
    from vl_serve_plugins.ernie.config import _moe_layer_range

    assert _moe_layer_range(["dense", "sparse", "dense", "sparse"]) == (1, 3, 2)
    with pytest.raises(ValueError, match="no equivalent"):
        _moe_layer_range(["sparse", "dense", "dense", "sparse", "sparse"])


def test_registered_under_vllms_architecture_name() -> None:
    from vllm import ModelRegistry

    import vl_serve_plugins

    vl_serve_plugins.register()
    cls = ModelRegistry._try_load_model_cls("Ernie4_5_VLMoeForConditionalGeneration")
    assert cls is not None
    assert cls.__module__ == "vl_serve_plugins.ernie.model"


def test_tiny_model_is_native_format() -> None:
    import json

    from vl_serve.builtin import BUILDERS, ensure_built

    assert "tiny-ernie45-vl" in BUILDERS
    path: Path = ensure_built("tiny-ernie45-vl")
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "ernie4_5_vl_moe" and "spatial_conv_size" not in config
    assert json.loads((path / "processor_config.json").read_text())


def test_pt_layout_loads_without_remote_code_and_gets_native_media_processors() -> None:
    from transformers import AutoConfig

    from vl_serve.builtin import ensure_built
    from vl_serve_plugins.ernie import pt
    from vl_serve_plugins.ernie.config import is_native, normalize_config

    pt.register()
    path = ensure_built("tiny-ernie45-vl-pt")
    assert pt.is_pt_folder(path) and not pt.is_pt_folder(ensure_built("tiny-ernie45-vl"))
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    assert type(config) is pt.Ernie45VLPTConfig and not is_native(config)
    assert normalize_config(config) is config  # the flat fields are vLLM's already
    assert config.moe_num_experts == [4, 4] and config.vision_config.embed_dim == 32
    assert config.rope_parameters["rope_theta"] == 500000.0
    media = pt.media_processor(path, tokenizer=None)
    assert dict(media.image_processor.size) == {"shortest_edge": 3136, "longest_edge": 50176}
    assert (media.image_processor.patch_size, media.image_processor.merge_size) == (14, 2)
    assert media.video_processor.temporal_patch_size == 2
