"""ERNIE-4.5-VL's published ``-PT`` config layout read as transformers' native one, for the planner.

A ``baidu/ERNIE-4.5-VL-*-PT`` ``config.json`` is flat (text fields at the top, ``moe_*`` as
``[text, vision]`` pairs, ``moe_layer_start_index`` / ``moe_layer_end_index``, a vision config
with ``embed_dim`` / ``mlp_ratio``) and its ``preprocessor_config.json`` has ``min_pixels`` /
``max_pixels``; the planner computes from the native layout (``model_type: ernie4_5_vl_moe``,
``text_config`` / ``vision_config``, ``mlp_layer_types``, processor ``size``), which this module
writes from them. The video limits are the remote processor's unless the folder names its own.
"""

from __future__ import annotations

from typing import Any

PT_MODEL_TYPE = "ernie4_5_moe_vl"
_TEXT = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "moe_k",
    "moe_num_shared_experts",
    "tie_word_embeddings",
)
# Ernie_45T_VLProcessor's video defaults.
_VIDEO = {"video_min_pixels": 299 * 28 * 28, "video_max_pixels": 1196 * 28 * 28}
_VIDEO_MAX_FRAMES = 180


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple) else value


def pt_as_native(
    config: dict[str, Any], pre: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(config, image processor, video processor) of a -PT folder in the native layout."""
    text = {key: config[key] for key in _TEXT if key in config}
    layers = int(config["num_hidden_layers"])
    text["head_dim"] = (
        config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    )
    text["moe_num_experts"] = int(_first(config.get("moe_num_experts") or 0))
    text["moe_intermediate_size"] = config.get("moe_intermediate_size")
    start = int(_first(config.get("moe_layer_start_index", layers)))
    end = int(_first(config.get("moe_layer_end_index", layers - 1)))
    interval = int(config.get("moe_layer_interval") or 1)
    text["mlp_layer_types"] = [
        "sparse"
        if text["moe_num_experts"] and start <= i <= end and (i + 1) % interval == 0
        else "dense"
        for i in range(layers)
    ]
    vision_pt = config.get("vision_config") or {}
    embed = int(vision_pt.get("embed_dim") or vision_pt.get("hidden_size") or 0)
    vision = {
        "depth": vision_pt.get("depth"),
        "hidden_size": embed,
        "intermediate_size": int(embed * float(vision_pt.get("mlp_ratio") or 4)),
        "num_heads": vision_pt.get("num_heads"),
        "in_channels": vision_pt.get("in_channels", 3),
        "patch_size": vision_pt.get("patch_size", 14),
        "spatial_merge_size": config.get("spatial_conv_size", 2),
        "temporal_merge_size": config.get("temporal_conv_size", 2),
    }
    native = {
        "model_type": "ernie4_5_vl_moe",
        "torch_dtype": config.get("torch_dtype") or config.get("dtype") or "bfloat16",
        "tie_word_embeddings": config.get("tie_word_embeddings", True),
        "text_config": text,
        "vision_config": vision,
    }
    image = {
        "size": {"shortest_edge": pre.get("min_pixels"), "longest_edge": pre.get("max_pixels")}
    }
    video = {
        "size": {
            "shortest_edge": pre.get("video_min_pixels", _VIDEO["video_min_pixels"]),
            "longest_edge": pre.get("video_max_pixels", _VIDEO["video_max_pixels"]),
        },
        "max_frames": pre.get("video_max_frames", _VIDEO_MAX_FRAMES),
    }
    return native, image, video
