"""ERNIE-4.5-VL checkpoints in the published ``-PT`` layout, loaded without remote code.

A ``baidu/ERNIE-4.5-VL-*-PT`` folder names three remote-code classes: its config
(``model_type: ernie4_5_moe_vl``, one flat config that vLLM's ERNIE model reads as it is), its
tokenizer (``Ernie4_5_VLTokenizer``, SentencePiece ``tokenizer.model`` plus ``added_tokens.json``)
and its processor (``Ernie_45T_VLProcessor`` in ``preprocessor_config.json``). This module stands
in for the first two under the same names, registered with transformers by :func:`register`, so
``AutoConfig`` and ``AutoTokenizer`` resolve them with ``trust_remote_code`` off; for the
processor, vl-serve's ERNIE adapter builds transformers' native image and video processors from
the folder's ``preprocessor_config.json`` (:func:`media_processor`). None of the folder's Python
files is imported.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

MODEL_TYPE = "ernie4_5_moe_vl"
REMOTE_PROCESSOR = "Ernie_45T_VLProcessor"
# Ernie_45T_VLProcessor's video arguments and defaults (transformers' native video processor has
# the same pixel and frame defaults).
VIDEO_DEFAULTS = {
    "video_min_pixels": 299 * 28 * 28,
    "video_max_pixels": 1196 * 28 * 28,
    "video_min_frames": 16,
    "video_max_frames": 180,
}


class Ernie45VLPTVisionConfig(PretrainedConfig):
    """The -PT config's ``vision_config`` as attributes (depth, embed_dim, mlp_ratio, ...)."""

    model_type = "ernie4_5_moe_vl_vision"


class Ernie45VLPTConfig(PretrainedConfig):
    """The -PT ``config.json`` as published: flat text fields, ``moe_*`` as ``[text, vision]``."""

    model_type = MODEL_TYPE
    sub_configs = {"vision_config": Ernie45VLPTVisionConfig}  # noqa: RUF012 - transformers' hook

    def __init__(self, vision_config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        rope_theta = kwargs.pop("rope_theta", 500000.0)
        kwargs.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": rope_theta})
        self.vision_config = Ernie45VLPTVisionConfig(**(vision_config or {}))
        super().__init__(**kwargs)


class Ernie4_5_VLTokenizer(SentencePieceBackend):
    """The -PT tokenizer (named as the folder names it): SentencePiece pieces, then the added tokens at their ids; decoding
    joins pieces with SentencePiece and keeps special tokens as they are."""

    # transformers reads both from the class.
    vocab_files_names = {"vocab_file": "tokenizer.model"}  # noqa: RUF012
    model_input_names = ["input_ids", "attention_mask"]  # noqa: RUF012

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        out, pieces = "", list[str]()
        special = set(self.all_special_tokens)
        for token in tokens:
            if token in special:
                out += self.sp_model.decode(pieces) + token
                pieces = []
            else:
                pieces.append(token)
        return out + self.sp_model.decode(pieces)


def is_pt_folder(path: str | Path) -> bool:
    """True when ``path`` is a local -PT folder whose processor is the remote one."""
    config = Path(path) / "preprocessor_config.json"
    if not config.is_file():
        return False
    return bool(json.loads(config.read_text()).get("processor_class") == REMOTE_PROCESSOR)


class PTMediaProcessor:
    """What vl-serve's adapter uses of a processor: native image and video processors with the
    -PT folder's pixel limits, patch and merge sizes, mean and std, and the tokenizer."""

    def __init__(self, image_processor: Any, video_processor: Any, tokenizer: Any) -> None:
        self.image_processor = image_processor
        self.video_processor = video_processor
        self.tokenizer = tokenizer
        self.chat_template = getattr(tokenizer, "chat_template", None)


@lru_cache(maxsize=4)
def _processors(path: str) -> tuple[Any, Any]:
    from transformers import Ernie4_5_VLMoeImageProcessor, Ernie4_5_VLMoeVideoProcessor

    pre = json.loads((Path(path) / "preprocessor_config.json").read_text())
    common = {
        key: pre[key]
        for key in ("image_mean", "image_std", "rescale_factor", "do_normalize", "do_rescale")
        if key in pre
    }
    patch, merge = pre.get("patch_size", 14), pre.get("merge_size", 2)
    image = Ernie4_5_VLMoeImageProcessor(
        size={"shortest_edge": pre["min_pixels"], "longest_edge": pre["max_pixels"]},
        patch_size=patch,
        merge_size=merge,
        **common,
    )
    # The remote processor's video defaults unless the folder names its own.
    video = Ernie4_5_VLMoeVideoProcessor(
        size={
            "shortest_edge": pre.get("video_min_pixels", VIDEO_DEFAULTS["video_min_pixels"]),
            "longest_edge": pre.get("video_max_pixels", VIDEO_DEFAULTS["video_max_pixels"]),
        },
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=pre.get("temporal_conv_size", 2),
        min_frames=pre.get("video_min_frames", VIDEO_DEFAULTS["video_min_frames"]),
        max_frames=pre.get("video_max_frames", VIDEO_DEFAULTS["video_max_frames"]),
        draw_on_frames=False,  # timestamps need a font file
        **common,
    )
    return image, video


def media_processor(path: str | Path, tokenizer: Any) -> PTMediaProcessor:
    """The media processors for the -PT folder at ``path`` (built once per folder)."""
    image, video = _processors(str(path))
    return PTMediaProcessor(image, video, tokenizer)


def register() -> None:
    """Make the -PT config and tokenizer classes resolvable by name without remote code."""
    AutoConfig.register(MODEL_TYPE, Ernie45VLPTConfig, exist_ok=True)
    AutoTokenizer.register(Ernie45VLPTConfig, tokenizer_class=Ernie4_5_VLTokenizer, exist_ok=True)
