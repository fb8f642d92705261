"""Published config facts of the presets' models, for planning without a download.

Each entry holds the fields of the model's published ``config.json`` (``config``),
``preprocessor_config.json`` (``image``) and ``video_preprocessor_config.json`` (``video``) that
``vl-serve plan`` reads, under their published names and with their published values;
:func:`source` names them. A local folder or the Hugging Face cache, when it has the model, is
read instead (vl_serve.model_facts). ERNIE-4.5-VL's remote-code (-PT) ``config.json`` is written
in transformers' native layout (``text_config`` / ``vision_config``), which vLLM reads through
vl-serve's ERNIE adapter.
"""

from __future__ import annotations

from typing import Any

# Qwen3-VL's vision tower of the 8B and larger models (SigLIP-2 shaped, 27 blocks).
_QWEN3_VL_VISION_LARGE = {
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [8, 16, 24],
}
_QWEN3_VL_IMAGE = {"size": {"longest_edge": 16777216, "shortest_edge": 65536}}
_QWEN3_VL_VIDEO = {"size": {"longest_edge": 25165824, "shortest_edge": 4096}, "max_frames": 768}
_ERNIE_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_merge_size": 2,
}
_ERNIE_IMAGE = {"size": {"shortest_edge": 3136, "longest_edge": 4842768}}
_ERNIE_VIDEO = {"size": {"shortest_edge": 234416, "longest_edge": 937664}, "max_frames": 180}
_ERNIE_NOTE = (
    "the -PT files in transformers' native layout: moe_layer_start_index as mlp_layer_types' "
    "first sparse layer, vision embed_dim and mlp_ratio as hidden_size and intermediate_size, "
    "min_pixels/max_pixels as size; video values are the -PT processor's video defaults "
    "(transformers' Ernie4_5_VLMoeVideoProcessor has the same)"
)

PUBLISHED: dict[str, dict[str, Any]] = {
    "Qwen/Qwen3-VL-4B-Instruct": {
        "config": {
            "model_type": "qwen3_vl",
            "dtype": "bfloat16",
            "tie_word_embeddings": True,
            "text_config": {
                "hidden_size": 2560,
                "intermediate_size": 9728,
                "num_hidden_layers": 36,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "vocab_size": 151936,
                "max_position_embeddings": 262144,
                "tie_word_embeddings": True,
            },
            "vision_config": {
                **_QWEN3_VL_VISION_LARGE,
                "depth": 24,
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "out_hidden_size": 2560,
                "deepstack_visual_indexes": [5, 11, 17],
            },
        },
        "image": _QWEN3_VL_IMAGE,
        "video": _QWEN3_VL_VIDEO,
    },
    "Qwen/Qwen3-VL-8B-Thinking": {
        "config": {
            "model_type": "qwen3_vl",
            "dtype": "bfloat16",
            "tie_word_embeddings": False,
            "text_config": {
                "hidden_size": 4096,
                "intermediate_size": 12288,
                "num_hidden_layers": 36,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "vocab_size": 151936,
                "max_position_embeddings": 262144,
                "tie_word_embeddings": False,
            },
            "vision_config": {**_QWEN3_VL_VISION_LARGE, "out_hidden_size": 4096},
        },
        "image": _QWEN3_VL_IMAGE,
        "video": _QWEN3_VL_VIDEO,
    },
    "Qwen/Qwen3-VL-235B-A22B-Instruct": {
        "config": {
            "model_type": "qwen3_vl_moe",
            "dtype": "bfloat16",
            "tie_word_embeddings": False,
            "text_config": {
                "hidden_size": 4096,
                "intermediate_size": 12288,
                "moe_intermediate_size": 1536,
                "num_experts": 128,
                "num_experts_per_tok": 8,
                "decoder_sparse_step": 1,
                "mlp_only_layers": [],
                "num_hidden_layers": 94,
                "num_attention_heads": 64,
                "num_key_value_heads": 4,
                "head_dim": 128,
                "vocab_size": 151936,
                "max_position_embeddings": 262144,
                "tie_word_embeddings": False,
            },
            "vision_config": {**_QWEN3_VL_VISION_LARGE, "out_hidden_size": 4096},
        },
        "image": _QWEN3_VL_IMAGE,
        "video": _QWEN3_VL_VIDEO,
    },
    "Qwen/Qwen2.5-VL-7B-Instruct": {
        "config": {
            "model_type": "qwen2_5_vl",
            "torch_dtype": "bfloat16",
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "max_position_embeddings": 128000,
            "tie_word_embeddings": False,
            "vision_config": {
                "depth": 32,
                "hidden_size": 1280,
                "intermediate_size": 3420,
                "num_heads": 16,
                "in_chans": 3,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "out_hidden_size": 3584,
            },
        },
        "image": {"min_pixels": 3136, "max_pixels": 12845056},
        "video": {},
    },
    "baidu/ERNIE-4.5-VL-28B-A3B-PT": {
        "config": {
            "model_type": "ernie4_5_vl_moe",
            "torch_dtype": "bfloat16",
            "tie_word_embeddings": True,
            "text_config": {
                "hidden_size": 2560,
                "intermediate_size": 12288,
                "num_hidden_layers": 28,
                "num_attention_heads": 20,
                "num_key_value_heads": 4,
                "head_dim": 128,
                "vocab_size": 103424,
                "max_position_embeddings": 131072,
                "tie_word_embeddings": True,
                "moe_num_experts": 64,
                "moe_intermediate_size": [1536, 512],
                "moe_k": 6,
                "moe_num_shared_experts": 2,
                "mlp_layer_types": ["dense"] + ["sparse"] * 27,
            },
            "vision_config": _ERNIE_VISION,
        },
        "image": _ERNIE_IMAGE,
        "video": _ERNIE_VIDEO,
        "note": _ERNIE_NOTE,
    },
    "baidu/ERNIE-4.5-VL-424B-A47B-PT": {
        "config": {
            "model_type": "ernie4_5_vl_moe",
            "torch_dtype": "bfloat16",
            "tie_word_embeddings": False,
            "text_config": {
                "hidden_size": 8192,
                "intermediate_size": 28672,
                "num_hidden_layers": 54,
                "num_attention_heads": 64,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "vocab_size": 103424,
                "max_position_embeddings": 131072,
                "tie_word_embeddings": False,
                "moe_num_experts": 64,
                "moe_intermediate_size": [3584, 1536],
                "moe_k": 8,
                "moe_num_shared_experts": 0,
                "mlp_layer_types": ["dense"] * 3 + ["sparse"] * 51,
            },
            "vision_config": _ERNIE_VISION,
        },
        "image": _ERNIE_IMAGE,
        "video": _ERNIE_VIDEO,
        "note": _ERNIE_NOTE,
    },
    "openbmb/MiniCPM-V-2_6": {
        "config": {
            "model_type": "minicpmv",
            "version": 2.6,
            "torch_dtype": "bfloat16",
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 151666,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": False,
            "query_num": 64,
            "vision_config": {
                "hidden_size": 1152,
                "intermediate_size": 4304,
                "num_hidden_layers": 27,
                "num_attention_heads": 16,
                "image_size": 980,
                "patch_size": 14,
            },
        },
        "image": {"max_slice_nums": 9, "scale_resolution": 448, "image_feature_size": 64},
        "video": {},
    },
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": {
        "config": {
            "model_type": "llama4",
            "torch_dtype": "bfloat16",
            "text_config": {
                "hidden_size": 5120,
                "intermediate_size": 8192,
                "intermediate_size_mlp": 16384,
                "num_hidden_layers": 48,
                "num_attention_heads": 40,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "vocab_size": 202048,
                "num_local_experts": 16,
                "num_experts_per_tok": 1,
                "interleave_moe_layer_step": 1,
                "max_position_embeddings": 10485760,
                "attention_chunk_size": 8192,
                "tie_word_embeddings": False,
            },
            "vision_config": {
                "hidden_size": 1408,
                "intermediate_size": 5632,
                "num_hidden_layers": 34,
                "num_attention_heads": 16,
                "image_size": 336,
                "patch_size": 14,
                "pixel_shuffle_ratio": 0.5,
                "projector_input_dim": 4096,
                "projector_output_dim": 4096,
                "vision_output_dim": 4096,
            },
        },
        "image": {"max_patches": 16, "size": {"height": 336, "width": 336}},
        "video": {},
    },
}


def _fields(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}: {_fields(value)}" if key.endswith("_config") else key
        for key, value in values.items()
    )


def source(model: str) -> str:
    """Where the facts of ``model`` come from: its published files and the fields read from each."""
    entry = PUBLISHED[model]
    files = [f"config.json ({_fields(entry['config'])})"]
    if entry["image"]:
        files.append(f"preprocessor_config.json ({_fields(entry['image'])})")
    if entry["video"]:
        files.append(f"video_preprocessor_config.json ({_fields(entry['video'])})")
    note = f"; {entry['note']}" if "note" in entry else ""
    return f"source: {model}'s published " + ", ".join(files) + note
