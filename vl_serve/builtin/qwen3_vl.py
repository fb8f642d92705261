"""The embedded tiny Qwen3-VL (``builtin:tiny-qwen3-vl``): tokenizer, weights and processor.

Qwen3-VL-4B-Instruct's published config with only the sizes scaled down (2 text layers 64 wide,
a 2-block vision tower; seeded random weights), a tokenizer with Qwen's special, think and tool
tokens at their real ids in its 151936-id vocabulary, and a reduced Qwen3-VL chat template, so
vLLM runs its real Qwen3-VL code path end to end without a download and clients that hard-code
Qwen's ids work. benchmarks/gpu/make_model.py reuses the tokenizer, processor and the 4B config
for a full-size dummy model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vl_serve.builtin.common import save_random_model, train_byte_bpe

# Qwen3-VL's added tokens at their ids (Qwen/Qwen3-VL-4B-Instruct's tokenizer_config.json,
# added_tokens_decoder): the first 14 are special, the rest are ordinary added tokens (they survive
# decoding, as the think and tool tags must). Its BPE vocabulary has ids 0..151642 and the model's
# embedding 151936 rows.
QWEN_VOCAB_SIZE = 151936
QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_ADDED = [
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]
QWEN_FIRST_ADDED_ID = 151643  # <|endoftext|>; </think> is 151668
QWEN_IDS = {t: QWEN_FIRST_ADDED_ID + i for i, t in enumerate(QWEN_SPECIAL + QWEN_ADDED)}

# Qwen3-VL chat template, reduced, covering the three prompt shapes of Qwen's templates:
# enable_thinking false closes an empty think block in the prompt (hybrid/Instruct), true opens
# one (Thinking: the model continues inside it), unset leaves thinking to the model. Images and
# videos become vision pads; tool calls; earlier turns' reasoning is stripped from history.
QWEN3_VL_CHAT_TEMPLATE = r"""{%- set image_count = namespace(value=0) -%}
{%- set video_count = namespace(value=0) -%}
{%- macro render_content(content) -%}
{%- if content is string -%}{{ content }}
{%- else -%}{%- for item in content -%}
{%- if item.type == 'image' or 'image' in item or 'image_url' in item -%}<|vision_start|><|image_pad|><|vision_end|>
{%- elif item.type == 'video' or 'video' in item or 'video_url' in item -%}<|vision_start|><|video_pad|><|vision_end|>
{%- elif 'text' in item -%}{{ item.text }}
{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- for message in messages -%}
{%- if message.role == 'assistant' -%}
{%- set text = render_content(message.content) if message.content is not none else '' -%}
{%- if '</think>' in text -%}{%- set text = text.split('</think>')[-1].lstrip('\n') -%}{%- endif -%}
<|im_start|>assistant
{{ text }}
{%- if message.tool_calls -%}{%- for call in message.tool_calls -%}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments if call.function.arguments is string else call.function.arguments | tojson }}}
</tool_call>
{%- endfor -%}{%- endif -%}<|im_end|>
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ render_content(message.content) }}
</tool_response><|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ render_content(message.content) }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% elif enable_thinking is defined and enable_thinking %}<think>
{% endif -%}
{%- endif -%}"""

# The tokenizer's training words (the corpus is seeded: the vocabulary is the same every build).
_CORPUS_WORDS = (
    "the a an of to and in is it that for on with as this was are be by at or from image video "
    "picture photo frame color red green blue yellow black white cat dog car tree house person "
    "answer question think reason step first second then so because therefore yes no maybe hello "
    "world model vision language serve request response token text number one two three four five "
    "six seven eight nine ten zero left right top bottom center small large"
)


def build_qwen_tokenizer(out: Path, vocab_size: int = 1024) -> dict[str, int]:
    """Train a byte-level BPE of ``vocab_size`` tokens and lay it out as Qwen3-VL's tokenizer:
    the special and added tokens at their real ids, :data:`QWEN_VOCAB_SIZE` ids in all.
    Returns the ids of the special and added tokens."""
    from transformers import PreTrainedTokenizerFast

    from vl_serve.builtin.common import place_tokens

    special = set(QWEN_SPECIAL)
    tok = place_tokens(
        train_byte_bpe(_CORPUS_WORDS.split(), vocab_size=vocab_size),
        QWEN_VOCAB_SIZE,
        {t: (i, t in special) for t, i in QWEN_IDS.items()},
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL,
        clean_up_tokenization_spaces=False,
        model_max_length=262144,
    )
    fast.chat_template = QWEN3_VL_CHAT_TEMPLATE
    fast.save_pretrained(out)
    # Processors look these up by name.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(
        tokenizer_class="Qwen2TokenizerFast",
        image_token="<|image_pad|>",
        video_token="<|video_pad|>",
        vision_start_token="<|vision_start|>",
        vision_end_token="<|vision_end|>",
    )
    cfg_path.write_text(json.dumps(cfg, indent=2))
    ids = {t: fast.convert_tokens_to_ids(t) for t in QWEN_IDS}
    if ids != QWEN_IDS:
        raise RuntimeError(f"Qwen token ids moved: {ids}")
    return ids


# Qwen/Qwen3-VL-4B-Instruct's config.json (text_config and vision_config as published).
QWEN3_VL_4B_TEXT: dict[str, Any] = {
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "attention_bias": False,
    "max_position_embeddings": 262144,
    "rope_scaling": {
        "rope_type": "default",
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    },
    "rope_theta": 5000000,
    "tie_word_embeddings": True,
    "vocab_size": QWEN_VOCAB_SIZE,
}
QWEN3_VL_4B_VISION: dict[str, Any] = {
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "in_channels": 3,
    "hidden_act": "gelu_pytorch_tanh",
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "out_hidden_size": 2560,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [5, 11, 17],
}
# The tiny model: the same config with only the sizes scaled down (head_dim 32 has 16 rotary
# pairs, split [6, 5, 5] across t/h/w as the real [24, 20, 20] splits 64; one deepstack level).
TINY_TEXT: dict[str, Any] = {
    **QWEN3_VL_4B_TEXT,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "rope_scaling": {"rope_type": "default", "mrope_section": [6, 5, 5], "mrope_interleaved": True},
}
TINY_VISION: dict[str, Any] = {
    **QWEN3_VL_4B_VISION,
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,
    "deepstack_visual_indexes": [1],
}


def qwen3_vl_config(text: dict[str, Any], vision: dict[str, Any]) -> dict[str, Any]:
    """A Qwen3-VL config.json (as published) for the given text and vision shapes."""
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "text_config": {
            **text,
            "model_type": "qwen3_vl_text",
            "dtype": "bfloat16",
            "bos_token_id": QWEN_IDS["<|endoftext|>"],
            "eos_token_id": QWEN_IDS["<|im_end|>"],
        },
        "vision_config": {**vision, "model_type": "qwen3_vl"},
        "image_token_id": QWEN_IDS["<|image_pad|>"],
        "video_token_id": QWEN_IDS["<|video_pad|>"],
        "vision_start_token_id": QWEN_IDS["<|vision_start|>"],
        "vision_end_token_id": QWEN_IDS["<|vision_end|>"],
        "tie_word_embeddings": text["tie_word_embeddings"],
        "dtype": "bfloat16",
    }


def build_tiny_qwen3_vl(out: Path) -> None:
    """Qwen3-VL-4B-Instruct's architecture scaled to 2 text layers 64 wide and a 2-block vision
    tower; its real tokenizer layout (151936 ids, tied embeddings): about 10M parameters, nearly
    all of them the embedding."""
    from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = build_qwen_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    published = qwen3_vl_config(TINY_TEXT, TINY_VISION)
    text = dict(published["text_config"])
    # transformers' config takes rope_theta inside rope_parameters.
    text["rope_parameters"] = {**text.pop("rope_scaling"), "rope_theta": text.pop("rope_theta")}
    config = Qwen3VLConfig(**{**published, "text_config": text})
    save_random_model(
        Qwen3VLForConditionalGeneration,
        config,
        out,
        bos=ids["<|endoftext|>"],
        eos=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad=ids["<|endoftext|>"],
    )

    # Pixel budget: 64x64 .. 256x256 per image (a 64x64 image is 16 patches -> 4 tokens); the
    # real processor's is 256x256 .. 4096x4096, scaled down with the model.
    save_qwen3_vl_processor(out, tokenizer, min_pixels=64 * 64, max_pixels=256 * 256)


def save_qwen3_vl_processor(out: Path, tokenizer: Any, *, min_pixels: int, max_pixels: int) -> None:
    """Qwen3-VL's image/video processors (16 px patches, 2x2 merge) and chat template."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
    )
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": 64 * 64, "longest_edge": 8 * 128 * 128},
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        fps=2,
        max_frames=16,
        cap_pixels_per_frame=True,  # qwen-vl-utils' per-frame budget (transformers' future default)
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
