"""The embedded tiny Qwen3-VL (``builtin:tiny-qwen3-vl``): tokenizer, weights and processor.

A real Qwen3-VL architecture at toy size (2 text layers, a 2-block vision tower, seeded random
weights), with a tokenizer that has Qwen's special and think/tool tokens and a reduced Qwen3-VL
chat template, so vLLM runs its real Qwen3-VL code path end to end without a download.
benchmarks/gpu/make_model.py reuses the tokenizer and processor for a full-size dummy model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vl_serve.builtin.common import save_random_model, train_byte_bpe

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
# Added as ordinary (non-special) tokens, as in Qwen3's tokenizer: they survive decoding.
QWEN_ADDED = [
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]

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
    """Train a byte-level BPE with Qwen's special tokens; return the ids of the special tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = train_byte_bpe(_CORPUS_WORDS.split(), vocab_size=vocab_size)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    fast.add_tokens(QWEN_ADDED, special_tokens=False)
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
    return {t: fast.convert_tokens_to_ids(t) for t in QWEN_SPECIAL + QWEN_ADDED}


def build_tiny_qwen3_vl(out: Path) -> None:
    """A 2-layer Qwen3-VL with a 2-block vision tower: about 300k parameters."""
    from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = build_qwen_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    vocab = len(tokenizer)
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 500000.0,
                "mrope_section": [6, 5, 5],
                "mrope_interleaved": True,
            },
            "tie_word_embeddings": False,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    save_random_model(
        Qwen3VLForConditionalGeneration,
        config,
        out,
        bos=ids["<|endoftext|>"],
        eos=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad=ids["<|endoftext|>"],
    )

    # Pixel budget: 64x64 .. 256x256 per image (a 64x64 image is 16 patches -> 4 tokens).
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
