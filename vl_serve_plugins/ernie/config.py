"""Map transformers' native ERNIE-4.5-VL config onto the flat fields vLLM's model reads.

vLLM's ``Ernie4_5_VLMoeForConditionalGeneration`` was written against the remote-code config
(``baidu/ERNIE-4.5-VL-*-PT`` with ``trust_remote_code``): one flat config with the text fields at
the top level, ``moe_*`` as ``[text, vision]`` pairs, ``spatial_conv_size`` /
``temporal_conv_size`` / ``pixel_hidden_size`` / ``im_patch_id``, and a vision config with
``embed_dim`` / ``mlp_ratio``. transformers' native ``Ernie4_5_VLMoeConfig`` (model_type
``ernie4_5_vl_moe``) nests the same information in ``text_config`` / ``vision_config``.

:func:`normalize_config` adds the flat fields to a native config, in place and idempotently; a
remote-format config (it already has ``spatial_conv_size``) is left untouched.
"""

from __future__ import annotations

from typing import Any

# Text fields vLLM's language model reads from the top-level config.
_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "use_bias",
    "rope_parameters",
    "moe_k",
    "moe_num_shared_experts",
    "moe_norm_min",
)


def is_native(config: Any) -> bool:
    """True for transformers' native config (nested, no remote-code flat fields)."""
    return getattr(config, "text_config", None) is not None and not hasattr(
        config, "spatial_conv_size"
    )


def _moe_layer_range(mlp_layer_types: list[str]) -> tuple[int, int, int]:
    """(start, end, interval) of the sparse layers, as vLLM's decoder selects them."""
    sparse = [i for i, kind in enumerate(mlp_layer_types) if kind == "sparse"]
    if not sparse:
        # vLLM builds MoE layers only when start <= idx <= end: an empty range.
        return len(mlp_layer_types), len(mlp_layer_types) - 1, 1
    start, end = sparse[0], sparse[-1]
    interval = sparse[1] - sparse[0] if len(sparse) > 1 else 1
    expected = [i for i in range(start, end + 1) if (i + 1) % interval == 0]
    if expected != sparse:
        raise ValueError(
            f"mlp_layer_types {mlp_layer_types} has no equivalent in vLLM's ERNIE-4.5-VL "
            "(sparse layers must be every `interval`-th layer between a start and an end)"
        )
    return start, end, interval


def normalize_config(config: Any) -> Any:
    """Add the remote-code fields vLLM reads to a native config; return ``config``."""
    if not is_native(config):
        return config
    text = config.text_config
    vision = config.vision_config
    for name in _TEXT_FIELDS:
        if hasattr(text, name):
            setattr(config, name, getattr(text, name))
    experts = int(text.moe_num_experts or 0)
    config.moe_num_experts = [experts, experts]
    inter = text.moe_intermediate_size
    config.moe_intermediate_size = list(inter) if isinstance(inter, list | tuple) else [inter] * 2
    start, end, interval = _moe_layer_range(list(text.mlp_layer_types))
    config.moe_layer_start_index = [start, start]
    config.moe_layer_end_index = [end, end]
    config.moe_layer_interval = interval
    config.use_moe = experts > 0
    rope = dict(text.rope_parameters or {})
    section = rope.get("mrope_section") or [22, 22, 20]
    # Native mrope_section is [h, w, t] in rotary frequency pairs; vLLM takes t as freq_allocation.
    config.freq_allocation = int(section[2])
    config.spatial_conv_size = vision.spatial_merge_size
    config.temporal_conv_size = vision.temporal_merge_size
    config.use_temporal_conv = True
    config.pixel_hidden_size = vision.hidden_size
    config.im_patch_id = config.image_token_id
    vision.embed_dim = vision.hidden_size
    vision.mlp_ratio = vision.intermediate_size / vision.hidden_size
    return config
