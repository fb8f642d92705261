"""The embedded tiny ERNIE-4.5-VL in the published ``-PT`` layout (``builtin:tiny-ernie45-vl-pt``).

The files ``baidu/ERNIE-4.5-VL-28B-A3B-PT`` ships, at toy size: a flat ``config.json``
(``model_type: ernie4_5_moe_vl``, ``moe_*`` as ``[text, vision]``, ``auto_map`` naming the remote
classes), a SentencePiece ``tokenizer.model`` with ``added_tokens.json``,
``special_tokens_map.json`` and ``tokenizer_config.json`` (``tokenizer_class:
Ernie4_5_VLTokenizer``, the chat template), ``preprocessor_config.json`` (``processor_class:
Ernie_45T_VLProcessor``, ``min_pixels`` / ``max_pixels``), ``generation_config.json`` and the
weights under the -PT names (``model.*``, ``vision_model.*``). The remote ``*.py`` files are not
shipped: with ``trust_remote_code: false`` nothing imports them, and vl-serve's ERNIE adapter
stands in for them (:mod:`vl_serve_plugins.ernie.pt`). Same architecture, token ids and weights
as ``builtin:tiny-ernie45-vl``; only the layout differs.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

from vl_serve.builtin.common import _corpus
from vl_serve.builtin.ernie45_vl import (
    _WORDS_TEXT,
    ERNIE45_VL_CHAT_TEMPLATE,
    ERNIE_ADDED,
    TINY_TEXT,
    TINY_VISION,
    build_tiny_ernie45_vl,
    ernie_token_ids,
)

# The SentencePiece model's pieces end here; the added tokens start at <|IMAGE_PLACEHOLDER|>.
PIECES = 100295
_REMOTE = {
    "config": "configuration_ernie_45t_vl.Ernie4_5_VLMoEConfig",
    "model": "modeling_ernie_45t_vl.Ernie4_5_VLMoeForConditionalGeneration",
    "tokenizer": "tokenization_ernie_45t_vl.Ernie4_5_VLTokenizer",
    "processor": "processing_ernie_45t_vl.Ernie_45T_VLProcessor",
    "image_processor": "processing_ernie_45t_vl.Ernie_45T_VLImageProcessor",
}


def _sentencepiece(ids: dict[str, int]) -> bytes:
    """A seeded SentencePiece BPE with byte fallback, padded to :data:`PIECES` pieces: <unk>,
    <s>, </s> first, the tokens of ``ids`` below PIECES at their ids, placeholders elsewhere."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_corpus(_WORDS_TEXT.split(), seed=4511, lines=2000),
        model_writer=model,
        model_type="bpe",
        vocab_size=700,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",  # keep newlines and spaces as they are
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    proto = pb.ModelProto()  # type: ignore[attr-defined]  # generated protobuf module
    proto.ParseFromString(model.getvalue())
    fixed = {i: t for t, i in ids.items() if len(proto.pieces) <= i < PIECES}
    while len(proto.pieces) < PIECES:
        i = len(proto.pieces)
        piece = proto.pieces.add()
        piece.piece = fixed.get(i, f"<|x{i}|>")
        piece.score = 0.0
        piece.type = pb.ModelProto.SentencePiece.USER_DEFINED  # type: ignore[attr-defined]
    return bytes(proto.SerializeToString())


def _weights(out: Path) -> None:
    """The tiny ERNIE's weights (same seed) under the -PT names: the vision tower top-level."""
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_ernie45_vl(Path(tmp))
        tensors = load_file(str(Path(tmp) / "model.safetensors"))
    renamed = {
        (k.removeprefix("model.") if k.startswith("model.vision_model.") else k): v
        for k, v in tensors.items()
    }
    save_file(renamed, str(out / "model.safetensors"), metadata={"format": "pt"})


def _config(ids: dict[str, int]) -> dict[str, Any]:
    """The -PT flat config.json for the tiny shape."""
    text, vision = TINY_TEXT, TINY_VISION
    experts, layers = text["moe_num_experts"], text["num_hidden_layers"]
    first_sparse = text["mlp_layer_types"].index("sparse")
    rope = text["rope_parameters"]
    return {
        "architectures": ["Ernie4_5_VLMoeForConditionalGeneration"],
        "auto_map": {
            "AutoConfig": _REMOTE["config"],
            "AutoModel": _REMOTE["model"],
            "AutoModelForCausalLM": _REMOTE["model"],
        },
        "model_type": "ernie4_5_moe_vl",
        "torch_dtype": "bfloat16",
        **{
            key: text[key]
            for key in (
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "hidden_act",
                "rms_norm_eps",
                "use_bias",
                "max_position_embeddings",
                "moe_k",
                "moe_num_shared_experts",
                "moe_norm_min",
                "tie_word_embeddings",
            )
        },
        "rope_theta": rope["rope_theta"],
        "moe_num_experts": [experts, experts],
        "moe_intermediate_size": list(text["moe_intermediate_size"]),
        "moe_layer_start_index": [first_sparse, first_sparse],
        "moe_layer_end_index": [layers - 1, layers - 1],
        "moe_layer_interval": 1,
        "moe_gate": "topk",
        "use_moe": True,
        "freq_allocation": rope["mrope_section"][2],
        "spatial_conv_size": vision["spatial_merge_size"],
        "temporal_conv_size": vision["temporal_merge_size"],
        "use_temporal_conv": True,
        "pixel_hidden_size": vision["hidden_size"],
        "im_patch_id": ids["<|IMAGE_PLACEHOLDER|>"],
        "image_start_token_id": ids["<|IMAGE_START|>"],
        "image_end_token_id": ids["<|IMAGE_END|>"],
        "video_start_token_id": ids["<|VIDEO_START|>"],
        "video_end_token_id": ids["<|VIDEO_END|>"],
        "bos_token_id": ids["<s>"],
        "eos_token_id": ids["</s>"],
        "pad_token_id": ids["<unk>"],
        "vision_config": {
            "depth": vision["depth"],
            "embed_dim": vision["hidden_size"],
            "hidden_size": vision["hidden_size"],
            "hidden_act": vision["hidden_act"],
            "mlp_ratio": vision["intermediate_size"] / vision["hidden_size"],
            "num_heads": vision["num_heads"],
            "in_channels": vision["in_channels"],
            "patch_size": vision["patch_size"],
            "spatial_merge_size": vision["spatial_merge_size"],
        },
    }


def _tokenizer(out: Path, ids: dict[str, int]) -> None:
    from vl_serve_plugins.ernie.pt import Ernie4_5_VLTokenizer

    (out / "tokenizer.model").write_bytes(_sentencepiece(ids))
    added = {t: i for t, i in sorted(ids.items(), key=lambda item: item[1]) if i >= PIECES}
    if list(added.values()) != list(range(PIECES, PIECES + len(added))):
        raise RuntimeError("the added tokens must follow the SentencePiece pieces without a gap")
    special = [t for t in added if t not in ERNIE_ADDED]
    tok = Ernie4_5_VLTokenizer(
        vocab_file=str(out / "tokenizer.model"),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        cls_token="<|begin_of_sentence|>",
        sep_token="<|end_of_sentence|>",
        additional_special_tokens=special,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tok.add_tokens(ERNIE_ADDED, special_tokens=False)
    got = {t: tok.convert_tokens_to_ids(t) for t in ids}
    if got != ids:
        raise RuntimeError(f"ERNIE -PT token ids moved: {set(got.items()) - set(ids.items())}")
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        cfg = json.loads((Path(tmp) / "tokenizer_config.json").read_text())
    cfg.update(
        tokenizer_class="Ernie4_5_VLTokenizer",
        auto_map={"AutoTokenizer": [_REMOTE["tokenizer"], None]},
        chat_template=ERNIE45_VL_CHAT_TEMPLATE,
        padding_side="right",
    )
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
    (out / "added_tokens.json").write_text(json.dumps(added, ensure_ascii=False))
    names = ("unk_token", "bos_token", "eos_token", "pad_token", "cls_token", "sep_token")
    special_map: dict[str, Any] = {name: cfg[name] for name in names if name in cfg}
    special_map["additional_special_tokens"] = special
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, ensure_ascii=False))


def build_tiny_ernie45_vl_pt(out: Path) -> None:
    """Write the -PT layout of the tiny ERNIE-4.5-VL into ``out``."""
    ids = ernie_token_ids()
    _tokenizer(out, ids)
    (out / "config.json").write_text(json.dumps(_config(ids), indent=2) + "\n")
    _weights(out)
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": 0})
    )
    # Pixel budget 56x56 .. 224x224 per image and video frame, as builtin:tiny-ernie45-vl's; the
    # real processor's is 56x56 .. about 2200x2200 (frames 484x484 .. 968x968), scaled down.
    (out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "processor_class": "Ernie_45T_VLProcessor",
                "image_processor_type": "Ernie_45T_VLImageProcessor",
                "auto_map": {
                    "AutoProcessor": _REMOTE["processor"],
                    "AutoImageProcessor": _REMOTE["image_processor"],
                },
                "do_convert_rgb": True,
                "do_normalize": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "min_pixels": 56 * 56,
                "max_pixels": 224 * 224,
                "merge_size": 2,
                "patch_size": 14,
                "resample": 3,
                "rescale_factor": 1 / 255,
                "temporal_conv_size": 2,
                "video_min_pixels": 56 * 56,
                "video_max_pixels": 224 * 224,
                "video_min_frames": 2,
                "video_max_frames": 16,
            },
            indent=2,
        )
    )
