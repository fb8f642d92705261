"""Embedded tiny random-weight models (``model: builtin:<name>``).

They let ``make serve`` and the tests run vLLM end to end with no download: a real architecture,
a real tokenizer and processor, a few hundred KB of seeded random weights. Each is built on first
use into the user's cache dir (``$XDG_CACHE_HOME/vl-serve/models/<name>-<version>``) atomically,
so concurrent first uses are safe; later uses are a directory lookup.

Random weights make garbage text: tests force output with ``structured_outputs`` and assert on
token counts, status codes and forced text.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vl_serve.errors import ConfigError

# Bump when a builder's output changes, so caches rebuild.
BUILDER_VERSION = "4"
SEED = 1234

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

_CORPUS_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "this",
    "was",
    "are",
    "be",
    "by",
    "at",
    "or",
    "from",
    "image",
    "video",
    "picture",
    "photo",
    "frame",
    "color",
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "cat",
    "dog",
    "car",
    "tree",
    "house",
    "person",
    "answer",
    "question",
    "think",
    "reason",
    "step",
    "first",
    "second",
    "then",
    "so",
    "because",
    "therefore",
    "yes",
    "no",
    "maybe",
    "hello",
    "world",
    "model",
    "vision",
    "language",
    "serve",
    "request",
    "response",
    "token",
    "text",
    "number",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "zero",
    "left",
    "right",
    "top",
    "bottom",
    "center",
    "small",
    "large",
]


def _corpus(words: list[str], seed: int, lines: int) -> Iterator[str]:
    import random

    rng = random.Random(seed)
    for _ in range(lines):
        line = [rng.choice(words) for _ in range(rng.randint(3, 16))]
        yield " ".join(line) + rng.choice([".", "?", "!", ",", ":", " 42", " 3.14", "\n", "\n\n"])
    yield "".join(chr(c) for c in range(32, 127))
    yield '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def train_byte_bpe(
    words: list[str], *, seed: int = SEED, vocab_size: int = 1024, lines: int = 3000
) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on a seeded corpus of ``words``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(_corpus(words, seed, lines), trainer=trainer)
    return tok


def build_qwen_tokenizer(out: Path, vocab_size: int = 1024) -> dict[str, int]:
    """Train a byte-level BPE with Qwen's special tokens; return the ids of the special tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = train_byte_bpe(_CORPUS_WORDS, vocab_size=vocab_size)
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


def save_random_model(
    model_cls: Any, config: Any, out: Path, *, bos: int, eos: list[int], pad: int
) -> None:
    """Seeded random weights for ``config`` (bf16, safetensors) and a generation config."""
    import torch
    from transformers import GenerationConfig

    config.architectures = [model_cls.__name__]
    torch.manual_seed(SEED)
    model = model_cls(config).to(torch.bfloat16).eval()
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad).save_pretrained(out)


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


BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-qwen3-vl": build_tiny_qwen3_vl,
    "tiny-ernie45-vl": lambda out: _tiny_ernie().build_tiny_ernie45_vl(out),
}


def _tiny_ernie() -> Any:
    from vl_serve.builtin import (
        ernie45_vl as tiny_ernie,  # it imports this module: import at call time
    )

    return tiny_ernie


def cache_root() -> Path:
    base = os.environ.get("VL_SERVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vl-serve"
    )
    return Path(base) / "models"


def model_dir(name: str) -> Path:
    """Where a builtin model lives (whether or not it is built yet)."""
    if name not in BUILDERS:
        raise ConfigError(
            "model",
            f"builtin:{name}",
            f"unknown builtin model; choose one of: {', '.join(BUILDERS)}",
        )
    return cache_root() / f"{name}-v{BUILDER_VERSION}"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(name: str) -> Path:
    """Build the builtin model once (seeded, deterministic); return its folder."""
    target = model_dir(name)
    if (target / "config.json").exists():
        return target
    with _lock(target.with_suffix(".lock")):
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            BUILDERS[name](tmp)
            (tmp / "vl_serve_builtin.json").write_text(
                json.dumps({"name": name, "builder_version": BUILDER_VERSION, "seed": SEED})
            )
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def describe(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "path": str(model_dir(name)),
        "built": (model_dir(name) / "config.json").exists(),
    }
