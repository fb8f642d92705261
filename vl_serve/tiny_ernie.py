"""A tiny ERNIE-4.5-VL-like tokenizer, for tests and the tiny ERNIE model.

A byte-level BPE trained on a small deterministic corpus (the real tokenizer is a SentencePiece
model with byte fallback; what matters here is the token inventory), plus ERNIE-4.5-VL's added
tokens with the real kinds: the sentence, image and video markers are special tokens, while the
think / response / tool-call tags are ordinary added tokens, so they survive
``skip_special_tokens`` and show up in the decoded text as they do with the real tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def build_ernie_tokenizer(out: Path, vocab_size: int = 1024) -> dict[str, int]:
    """Write a HF tokenizer folder to ``out``; return the ids of the special and added tokens."""
    from transformers import PreTrainedTokenizerFast

    from vl_serve.builtin_models import train_byte_bpe

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
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return {t: fast.convert_tokens_to_ids(t) for t in ERNIE_SPECIAL + ERNIE_ADDED}
