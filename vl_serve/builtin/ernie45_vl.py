"""The embedded tiny ERNIE-4.5-VL (``builtin:tiny-ernie45-vl``): tokenizer, weights and processor.

The tokenizer is a byte-level BPE trained on a small seeded corpus (the real one is a
SentencePiece model with byte fallback; what matters here is the token inventory), plus
ERNIE-4.5-VL's added tokens with the real kinds: the sentence, image and video markers are special
tokens, while the think / response / tool-call tags are ordinary added tokens, so they survive
``skip_special_tokens`` and show up in the decoded text as they do with the real tokenizer. The
reasoning-parser tests use the tokenizer alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from vl_serve.builtin.common import save_random_model, train_byte_bpe

ERNIE_SPECIAL = [
    "<unk>",
    "<s>",
    "</s>",
    "<|begin_of_sentence|>",
    "<|end_of_sentence|>",
    "<|IMAGE_PLACEHOLDER|>",
    "<|IMAGE_START|>",
    "<|IMAGE_END|>",
    "<|VIDEO_START|>",
    "<|VIDEO_END|>",
    "<|image@placeholder|>",
    "<|video@placeholder|>",
]
ERNIE_ADDED = ["<think>", "</think>", "<response>", "</response>", "<tool_call>", "</tool_call>"]

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


# transformers' native Ernie4_5_VLMoeProcessor needs a ``video_token`` on the tokenizer; the
# tiny model adds one (last, so the ids of the tokens above do not move).
VIDEO_PLACEHOLDER = "<|VIDEO_PLACEHOLDER|>"


def build_ernie_tokenizer(
    out: Path, vocab_size: int = 1024, *, video_token: bool = False
) -> dict[str, int]:
    """Write a HF tokenizer folder to ``out``; return the ids of the special and added tokens.

    ``video_token`` adds ``<|VIDEO_PLACEHOLDER|>`` (a special token, after all the others) and
    names it the tokenizer's ``video_token``, as transformers' native ERNIE processor requires.
    """
    from transformers import PreTrainedTokenizerFast

    tok = train_byte_bpe(_WORDS_TEXT.split(), seed=4511, vocab_size=vocab_size, lines=2000)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        cls_token="<|begin_of_sentence|>",
        sep_token="<|end_of_sentence|>",
        additional_special_tokens=ERNIE_SPECIAL[3:],
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
    )
    fast.add_tokens(ERNIE_ADDED, special_tokens=False)
    extra = [VIDEO_PLACEHOLDER] if video_token else []
    if extra:
        fast.add_special_tokens({"additional_special_tokens": ERNIE_SPECIAL[3:] + extra})
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
    return {t: fast.convert_tokens_to_ids(t) for t in ERNIE_SPECIAL + ERNIE_ADDED + extra}


def build_tiny_ernie45_vl(out: Path) -> None:
    """A 2-layer ERNIE-4.5-VL (one dense layer, one MoE layer with 4 text + 4 vision experts)
    with a 2-block vision tower, from transformers' native classes: about 400k parameters.

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
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "max_position_embeddings": 32768,
            "moe_intermediate_size": [32, 16],
            "moe_k": 2,
            "moe_num_experts": 4,
            "moe_num_shared_experts": 1,
            "mlp_layer_types": ["dense", "sparse"],
            # [h, w, t] in rotary frequency pairs: head_dim 32 has 16.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 500000.0,
                "mrope_section": [6, 6, 4],
            },
            "tie_word_embeddings": False,
            "bos_token_id": ids["<s>"],
            "eos_token_id": ids["</s>"],
            "pad_token_id": ids["<unk>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_merge_size": 2,
        },
        image_token_id=ids["<|IMAGE_PLACEHOLDER|>"],
        video_token_id=ids[VIDEO_PLACEHOLDER],
        image_start_token_id=ids["<|IMAGE_START|>"],
        image_end_token_id=ids["<|IMAGE_END|>"],
        video_start_token_id=ids["<|VIDEO_START|>"],
        video_end_token_id=ids["<|VIDEO_END|>"],
        tie_word_embeddings=False,
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
