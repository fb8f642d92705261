"""The embedded tiny ERNIE-4.5-VL (``builtin:tiny-ernie45-vl``): tokenizer, weights and processor.

ERNIE-4.5-VL-28B-A3B's config in transformers' native layout with only the sizes scaled down.
The tokenizer is a byte-level BPE trained on a small seeded corpus (the real one is a
SentencePiece model with byte fallback; ``builtin:tiny-ernie45-vl-pt`` has one) laid out as the
real 103424-id vocabulary: the sentence, image, video and grounding markers are special tokens
at their real ids, the think / response / tool-call tags ordinary added tokens, so they survive
``skip_special_tokens`` and show up in the decoded text as they do with the real tokenizer. The
reasoning-parser tests use the tokenizer alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vl_serve.builtin.common import save_random_model, train_byte_bpe

# ERNIE-4.5-VL's tokens at their ids. From the ERNIE-4.5 tokenizer's published files: <unk>,
# <s>, </s> 0-2 and <|begin_of_sentence|> 100273 (SentencePiece pieces); the added vision, grounding
# and audio markers 100295-101309 (PaddlePaddle/ERNIE's ERNIE-4.5-VL tokenizer added_tokens.json,
# the ids transformers' Ernie4_5_VLMoeConfig defaults to); <|VIDEO_PLACEHOLDER|> 103367,
# transformers' native video_token_id, one past the -PT tokenizer's last id. The embedding has
# 103424 rows. Tokens whose ids no published file gives follow ASR_END (ERNIE_PLACED).
ERNIE_VOCAB_SIZE = 103424
ERNIE_FIRST = ("<unk>", "<s>", "</s>")
ERNIE_SPECIAL_IDS: dict[str, int] = {
    "<unk>": 0,
    "<s>": 1,
    "</s>": 2,
    "<|end_of_sentence|>": 100272,
    "<|begin_of_sentence|>": 100273,
    "<|IMAGE_PLACEHOLDER|>": 100295,
    "<|AUDIO_PLACEHOLDER|>": 100296,
    **{f"<|LOC_{i}|>": 100297 + i for i in range(1001)},
    "<|LOC_BEGIN|>": 101298,
    "<|LOC_END|>": 101299,
    "<|LOC_SEP|>": 101300,
    "<|CROP_COL_SEP|>": 101301,
    "<|CROP_ROW_SEP|>": 101302,
    "<|IMAGE_SEP|>": 101303,
    "<|IMAGE_START|>": 101304,
    "<|IMAGE_END|>": 101305,
    "<|VIDEO_START|>": 101306,
    "<|VIDEO_END|>": 101307,
    "<|ASR_START|>": 101308,
    "<|ASR_END|>": 101309,
}
# The prompt placeholders (special) and the think / response / tool-call tags (ordinary added
# tokens: they survive ``skip_special_tokens`` and show in the decoded text, as with the real
# tokenizer), after ASR_END.
ERNIE_PLACED_SPECIAL = ["<|image@placeholder|>", "<|video@placeholder|>"]
ERNIE_ADDED = ["<think>", "</think>", "<response>", "</response>", "<tool_call>", "</tool_call>"]
ERNIE_PLACED = {t: 101310 + i for i, t in enumerate(ERNIE_PLACED_SPECIAL + ERNIE_ADDED)}
# ERNIE-4.5-VL's chat format, reduced: "User: ...\nAssistant: ..." turns, images as placeholders,
# enable_thinking=true opens the think block in the prompt, false closes an empty one.
ERNIE45_VL_CHAT_TEMPLATE = r"""{%- set image_count = namespace(value=0) -%}
{%- macro render_content(content) -%}
{%- if content is string -%}{{ content }}
{%- else -%}{%- for item in content -%}
{%- if item.type in ['image', 'image_url'] -%}{%- set image_count.value = image_count.value + 1 -%}
Picture {{ image_count.value }}:<|IMAGE_START|><|image@placeholder|><|IMAGE_END|>
{%- elif item.type in ['video', 'video_url'] -%}Video:<|VIDEO_START|><|video@placeholder|><|VIDEO_END|>
{%- elif 'text' in item -%}{{ item.text }}
{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
<|begin_of_sentence|>
{%- for message in messages -%}
{%- if message.role == 'system' -%}{{ render_content(message.content) }}
{% elif message.role == 'user' -%}User: {{ render_content(message.content) }}
{% elif message.role == 'assistant' -%}
{%- set text = render_content(message.content) if message.content is not none else '' -%}
{%- if '</think>' in text -%}{%- set text = text.split('</think>')[-1].lstrip('\n') -%}{%- endif -%}
Assistant: {{ text }}<|end_of_sentence|>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}Assistant: {% if enable_thinking is defined and enable_thinking is false -%}
<think>

</think>

{% elif enable_thinking is defined and enable_thinking -%}<think>
{% endif -%}
{%- endif -%}"""

_WORDS_TEXT = (
    "the a of to and in is it that for on with this are be at or from image video picture frame "
    "color red blue green cat dog car tree house person answer question think reason step first "
    "then so because therefore yes no hello world model vision response user assistant number "
    "one two three four five left right top bottom small large weather city Paris"
)


# transformers' native Ernie4_5_VLMoeProcessor needs a ``video_token`` on the tokenizer.
VIDEO_PLACEHOLDER = "<|VIDEO_PLACEHOLDER|>"
VIDEO_PLACEHOLDER_ID = 103367


def ernie_token_ids(*, video_token: bool = False) -> dict[str, int]:
    """Every placed token's id (the video placeholder only with ``video_token``)."""
    ids = {**ERNIE_SPECIAL_IDS, **ERNIE_PLACED}
    if video_token:
        ids[VIDEO_PLACEHOLDER] = VIDEO_PLACEHOLDER_ID
    return ids


def build_ernie_tokenizer(
    out: Path, vocab_size: int = 1024, *, video_token: bool = False
) -> dict[str, int]:
    """Write a HF tokenizer folder to ``out`` with ERNIE-4.5-VL's token layout (103424 ids);
    return the ids of the special and added tokens.

    ``video_token`` adds ``<|VIDEO_PLACEHOLDER|>`` at 103367 and names it the tokenizer's
    ``video_token``, as transformers' native ERNIE processor requires.
    """
    from transformers import PreTrainedTokenizerFast

    from vl_serve.builtin.common import place_tokens

    ids = ernie_token_ids(video_token=video_token)
    tok = place_tokens(
        train_byte_bpe(
            _WORDS_TEXT.split(), seed=4511, vocab_size=vocab_size, lines=2000, first=ERNIE_FIRST
        ),
        ERNIE_VOCAB_SIZE,
        {t: (i, t not in ERNIE_ADDED) for t, i in ids.items()},
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        cls_token="<|begin_of_sentence|>",
        sep_token="<|end_of_sentence|>",
        additional_special_tokens=[t for t in ids if t not in ERNIE_ADDED and t not in ERNIE_FIRST],
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
    )
    fast.chat_template = ERNIE45_VL_CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(
        image_token="<|IMAGE_PLACEHOLDER|>",
        image_start_token="<|IMAGE_START|>",
        image_end_token="<|IMAGE_END|>",
        video_start_token="<|VIDEO_START|>",
        video_end_token="<|VIDEO_END|>",
    )
    if video_token:
        cfg["video_token"] = VIDEO_PLACEHOLDER
    cfg_path.write_text(json.dumps(cfg, indent=2))
    got = {t: fast.convert_tokens_to_ids(t) for t in ids}
    if got != ids:
        raise RuntimeError(f"ERNIE token ids moved: {set(got.items()) - set(ids.items())}")
    return got


# baidu/ERNIE-4.5-VL-28B-A3B-PT's shape in transformers' native layout (the defaults of
# transformers' Ernie4_5_VLMoeConfig, whose docs name that checkpoint).
ERNIE_28B_TEXT: dict[str, Any] = {
    "vocab_size": ERNIE_VOCAB_SIZE,
    "hidden_size": 2560,
    "intermediate_size": 12288,
    "num_hidden_layers": 28,
    "num_attention_heads": 20,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "use_bias": False,
    "max_position_embeddings": 131072,
    "moe_intermediate_size": [1536, 512],
    "moe_k": 6,
    "moe_num_experts": 64,
    "moe_num_shared_experts": 2,
    "moe_norm_min": 1e-12,
    "mlp_layer_types": ["dense"] + ["sparse"] * 27,
    # [h, w, t] in rotary frequency pairs: head_dim 128 has 64.
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 500000.0,
        "mrope_section": [22, 22, 20],
    },
    "tie_word_embeddings": True,
}
ERNIE_28B_VISION: dict[str, Any] = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_heads": 16,
    "hidden_act": "quick_gelu",
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_merge_size": 2,
}
# The tiny model: the same with only the sizes scaled down (4 text + 4 vision experts, 2 routed
# per token; head_dim 32 has 16 rotary pairs).
TINY_TEXT: dict[str, Any] = {
    **ERNIE_28B_TEXT,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "moe_intermediate_size": [32, 16],
    "moe_k": 2,
    "moe_num_experts": 4,
    "mlp_layer_types": ["dense", "sparse"],
    "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0, "mrope_section": [6, 6, 4]},
}
TINY_VISION: dict[str, Any] = {
    **ERNIE_28B_VISION,
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
}


def build_tiny_ernie45_vl(out: Path) -> None:
    """ERNIE-4.5-VL-28B-A3B's architecture scaled to 2 layers 64 wide (one dense layer, one MoE
    layer with 4 text + 4 vision experts) and a 2-block vision tower, from transformers' native
    classes, with the real token layout (103424 ids, tied embeddings).

    Saved as transformers saves it (its reverse weight conversion writes the remote checkpoints'
    weight names) with the native config (``model_type: ernie4_5_vl_moe``) and processor, so
    vLLM serves it only through vl-serve's ERNIE adapter, without remote code.
    """
    from transformers import (
        AutoTokenizer,
        Ernie4_5_VLMoeConfig,
        Ernie4_5_VLMoeForConditionalGeneration,
        Ernie4_5_VLMoeImageProcessor,
        Ernie4_5_VLMoeProcessor,
        Ernie4_5_VLMoeVideoProcessor,
    )

    ids = build_ernie_tokenizer(out, video_token=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = Ernie4_5_VLMoeConfig(
        text_config={
            **TINY_TEXT,
            "bos_token_id": ids["<s>"],
            "eos_token_id": ids["</s>"],
            "pad_token_id": ids["<unk>"],
        },
        vision_config=TINY_VISION,
        image_token_id=ids["<|IMAGE_PLACEHOLDER|>"],
        video_token_id=ids[VIDEO_PLACEHOLDER],
        image_start_token_id=ids["<|IMAGE_START|>"],
        image_end_token_id=ids["<|IMAGE_END|>"],
        video_start_token_id=ids["<|VIDEO_START|>"],
        video_end_token_id=ids["<|VIDEO_END|>"],
        tie_word_embeddings=True,
    )
    save_random_model(
        Ernie4_5_VLMoeForConditionalGeneration,
        config,
        out,
        bos=ids["<s>"],
        eos=[ids["</s>"], ids["<|end_of_sentence|>"]],
        pad=ids["<unk>"],
    )
    # Pixel budget 56x56 .. 224x224 per image (a 64x64 image -> 4x4 patches -> 4 tokens); videos
    # the same per frame, two frames per token row (temporal merge).
    size = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
    processor = Ernie4_5_VLMoeProcessor(
        image_processor=Ernie4_5_VLMoeImageProcessor(size=size, patch_size=14, merge_size=2),
        video_processor=Ernie4_5_VLMoeVideoProcessor(
            size=size,
            patch_size=14,
            merge_size=2,
            temporal_patch_size=2,
            min_frames=2,
            max_frames=16,
            draw_on_frames=False,  # timestamps need a font file; none is embedded
        ),
        tokenizer=tokenizer,
        chat_template=ERNIE45_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
